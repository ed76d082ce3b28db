//! A run's life around the loop: beginning a turn, closing the runs a stopped process left in flight, stopping
//! a run that waits, replaying a log and forking a run from one of its steps.
//!
//! Like the loop itself (`runner.rs`), everything here is events appended to a run's log: nothing outside
//! orchestration builds a [`RunEvent`] (the tidy test keeps it so).

use serde::Serialize;

use super::events::{RunEvent, RunOutcome, RunStatus, StoredEvent, UserAnswer};
use super::journal;
use super::runner::{self, Services, Turn};
use super::state::{Pending, RunState};
use super::UserRequest;
use crate::store::{self, Store, StoreError};

/// Records a new run and its user message in one transaction with the run's `RunStarted`, so no run is ever on
/// disk unstarted, and fills in the turn's conversation and run ids. `conversation_id: None` starts a new
/// conversation; `backend_choice` is the backend the user picked for it (`None`: the default).
pub fn begin_turn(
    store: &Store,
    services: &Services<'_>,
    conversation_id: Option<i64>,
    backend_choice: Option<&str>,
    turn: &mut Turn<'_>,
) -> Result<(), StoreError> {
    let first = |conv: i64| Some(journal::encode(&runner::started_event(services.backend, services.toolbox, conv, turn)));
    let (conversation_id, run_id) = store.begin_turn_with_event(conversation_id, &turn.input.text, backend_choice, &first)?;
    turn.conversation_id = conversation_id;
    turn.run_id = run_id;
    Ok(())
}

/// Runs left `running` by a process that stopped mid-run are marked `interrupted` (`RunInterrupted`), to be
/// resumed from their log (`keel runs resume`, or the desktop at start). A run that stopped inside a
/// side-effecting call that is not safe to repeat is not left to a resume: whether the call happened is
/// unknown, so it is recorded as such and the run waits for the user's decision. A run whose log cannot be
/// decoded is closed as `Stopped`, rather than keeping Keel from starting.
pub fn close_interrupted_runs(store: &Store) -> Result<(), StoreError> {
    for run_id in store.runs_with_status("running")? {
        let Ok(detail) = journal::load(store, run_id) else {
            let reason = "interrupted: Keel stopped before this run finished, and its log cannot be read";
            journal::append(store, run_id, &finished(RunOutcome::Stopped { reason: reason.into() }, 0, &RunState::default()))?;
            continue;
        };
        let state = RunState::fold(&detail.events);
        journal::append(store, run_id, &RunEvent::RunInterrupted { reason: "Keel stopped while this run was in flight".into() })?;
        if let Pending::InTool { call } = &state.pending {
            if let Some(events) = call.unknown_outcome() {
                for event in &events {
                    journal::append(store, run_id, event)?;
                }
            }
        }
    }
    Ok(())
}

/// Closes a paused or interrupted run as stopped by the user, keeping what its tools had found. False when
/// the run is in neither state.
pub fn stop_idle_run(store: &Store, run_id: i64) -> Result<bool, StoreError> {
    let detail = journal::load(store, run_id)?;
    if !matches!(detail.run.status, RunStatus::AwaitingUser | RunStatus::Interrupted) {
        return Ok(false);
    }
    let state = RunState::fold(&detail.events);
    let reason = "stopped by the user";
    journal::append(store, run_id, &RunEvent::RunCancelled { reason: reason.into() })?;
    let duration_ms = (store::now_ms() - detail.run.started_ms).max(0) as u64;
    journal::append(store, run_id, &finished(RunOutcome::Stopped { reason: reason.into() }, duration_ms, &state))?;
    Ok(true)
}

fn finished(outcome: RunOutcome, duration_ms: u64, state: &RunState) -> RunEvent {
    let budget = state.budget_used;
    RunEvent::RunFinished {
        outcome,
        answer: None,
        duration_ms,
        prompt_tokens: budget.prompt_tokens,
        completion_tokens: budget.completion_tokens,
    }
}

/// What a paused run waits for, if it waits.
pub fn waiting_for(store: &Store, run_id: i64) -> Result<Option<UserRequest>, StoreError> {
    let detail = journal::load(store, run_id)?;
    Ok(RunState::fold(&detail.events).pending.user_request(run_id))
}

/// A run re-folded from its log without calling any model or tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    pub run_id: i64,
    pub events: Vec<StoredEvent>,
    /// The state after the last event.
    pub state: RunState,
    /// Every prefix of the log folded to a state whose step count never decreased (a sanity check of the fold).
    pub consistent: bool,
    /// The status and token totals the store's projection holds agree with the fold.
    pub matches_projection: bool,
}

/// Re-folds a run from its log, calling no model and no tool.
pub fn replay(store: &Store, run_id: i64) -> Result<Replay, StoreError> {
    let detail = journal::load(store, run_id)?;
    let mut state = RunState::default();
    let mut consistent = true;
    for e in &detail.events {
        let next = state.clone().apply(&e.event);
        consistent &= next.step >= state.step && next.budget_used.tool_calls >= state.budget_used.tool_calls;
        state = next;
    }
    let status_agrees = match state.outcome.as_ref().map(RunOutcome::status) {
        Some(s) => s == detail.run.status,
        None => !matches!(detail.run.status, RunStatus::Answered | RunStatus::Failed),
    };
    let matches_projection = status_agrees
        && state.budget_used.prompt_tokens == detail.run.prompt_tokens
        && state.budget_used.completion_tokens == detail.run.completion_tokens;
    Ok(Replay { run_id, events: detail.events, state, consistent, matches_projection })
}

/// A forked run, ready to be continued: its id, and the answer to give it when it waits on a question.
#[derive(Debug)]
pub struct Fork {
    pub run_id: i64,
    pub answer: Option<UserAnswer>,
}

/// Why a run could not be forked.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("run {run_id} has {steps} steps; --from-step must be 0 to {steps}")]
    NoSuchStep { run_id: i64, steps: u32 },
    #[error("step {from_step} of run {run_id} waits for the user; pass --message")]
    NeedsMessage { run_id: i64, from_step: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts a new run from step `from_step` of another: its events up to the end of that step are copied into a
/// new run in a new conversation (a branch holding the parent's conversation up to that run, on `backend` when
/// named), and `message` (if given) becomes the user's word. The caller continues the returned run.
pub fn fork(store: &Store, run_id: i64, from_step: u32, message: Option<&str>, backend: Option<&str>) -> Result<Fork, ForkError> {
    let detail = journal::load(store, run_id)?;
    let steps = detail.events.iter().filter(|e| matches!(e.event, RunEvent::ModelCalled { .. })).count() as u32;
    if from_step > steps {
        return Err(ForkError::NoSuchStep { run_id, steps });
    }
    // Everything before the model call of step `from_step + 1`, less what ended the parent.
    let cut = detail
        .events
        .iter()
        .position(|e| matches!(e.event, RunEvent::ModelCalled { step, .. } if step > from_step))
        .unwrap_or(detail.events.len());
    let kept: Vec<RunEvent> = detail.events[..cut]
        .iter()
        .map(|e| e.event.clone())
        .filter(|e| !matches!(e, RunEvent::RunFinished { .. } | RunEvent::RunCancelled { .. } | RunEvent::LimitReached { .. }))
        .collect();
    let state = kept.iter().fold(RunState::default(), |s, e| s.apply(e));
    let waits = matches!(state.pending, Pending::Approval { .. } | Pending::Question { .. });
    // A fork from inside a pause needs the answer; a fork without a message continues where the copy ends.
    if message.is_none() && waits {
        return Err(ForkError::NeedsMessage { run_id, from_step });
    }
    let (_, new_id) = store.begin_fork(run_id, &detail.run.input, backend)?;
    for event in &kept {
        journal::append(store, new_id, event)?;
    }
    journal::append(store, new_id, &RunEvent::RunInterrupted { reason: format!("forked from run {run_id} at step {from_step}") })?;
    let answer = match message {
        Some(text) if matches!(state.pending, Pending::Question { .. }) => Some(UserAnswer::Reply { text: text.to_owned() }),
        Some(text) => {
            journal::append(store, new_id, &RunEvent::UserAnswered { answer: UserAnswer::Reply { text: text.to_owned() } })?;
            None
        }
        None => None,
    };
    Ok(Fork { run_id: new_id, answer })
}
