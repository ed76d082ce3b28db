//! The turn loop: append `RunStarted`, then for each step assemble the window, call the model and record what
//! came back, until the model has answered, a limit is reached, the user stops it, or it fails.
//!
//! Each event is committed through the store before the observer hears of it. A store failure ends the turn with
//! an error (nothing more can be recorded); a model failure ends the run as `Failed`, with the reason recorded.

use std::time::Instant;

use super::recall::{self, MemoryAccess};
use super::{context, journal};
use super::events::{RunEvent, RunOutcome};
use super::{Limits, TurnEvent, TurnResult};
use crate::llm::{Backend, BackendError, CancelFlag, ChatMessage, GenerationSettings, StopReason};
use crate::store::{Store, StoreError};

/// One turn to run: the conversation so far (ending with the new user message) and its settings.
pub struct Turn<'a> {
    pub conversation_id: i64,
    pub run_id: i64,
    pub input: &'a str,
    pub conversation: &'a [ChatMessage],
    pub settings: &'a GenerationSettings,
    pub limits: Limits,
    pub memory: MemoryAccess<'a>,
}

pub fn run_turn(
    store: &Store,
    backend: &dyn Backend,
    turn: Turn<'_>,
    cancel: &CancelFlag,
    on_event: &mut dyn FnMut(TurnEvent),
) -> Result<TurnResult, StoreError> {
    let started = Instant::now();
    let info = backend.info();
    let commit = |event: RunEvent, on_event: &mut dyn FnMut(TurnEvent)| -> Result<(), StoreError> {
        let stored = journal::append(store, turn.run_id, &event)?;
        on_event(TurnEvent::Step { event: stored });
        Ok(())
    };
    on_event(TurnEvent::Started { conversation_id: turn.conversation_id, run_id: turn.run_id });
    commit(
        RunEvent::RunStarted {
            conversation_id: turn.conversation_id,
            input: turn.input.to_owned(),
            backend: info.name.clone(),
            model: info.model.clone(),
            max_steps: turn.limits.max_steps,
            settings: turn.settings.clone(),
        },
        on_event,
    )?;

    // Memory: a failure here is recorded and the turn goes on without it; a panic inside is a failed run.
    let recalled = match guarded("memory", || Ok(recall::recall(&turn.memory, store, backend, turn.input))) {
        Ok(r) => r,
        Err(error) => recall::Recall {
            events: vec![RunEvent::MemoryUnavailable { reason: error }],
            section: None,
            used: Vec::new(),
        },
    };
    for event in recalled.events {
        commit(event, on_event)?;
    }
    if !recalled.used.is_empty() {
        store.memory_record_uses(turn.run_id, &recalled.used)?;
    }
    let memory_items = recalled.used.len() as u32;

    let (mut prompt_total, mut completion_total, mut ttft_ms) = (0u32, 0u32, None);
    let mut answer = String::new();
    let mut outcome = RunOutcome::Stopped { reason: format!("the step limit ({}) was reached", turn.limits.max_steps) };
    for step in 1..=turn.limits.max_steps {
        let window = match guarded(&info.name, || context::assemble(backend, turn.conversation, turn.settings.max_tokens, recalled.section.as_deref())) {
            Ok(w) => w,
            Err(error) => {
                outcome = RunOutcome::Failed { error };
                break;
            }
        };
        commit(
            RunEvent::ModelCalled {
                step,
                backend: info.name.clone(),
                prompt_tokens: window.prompt_tokens,
                messages: window.messages.len() as u32,
                dropped_messages: window.dropped_messages,
                memory_items,
            },
            on_event,
        )?;
        let call_started = Instant::now();
        let reply = guarded(&info.name, || {
            backend.chat(&window.messages, turn.settings, cancel, &mut |piece| {
                on_event(TurnEvent::Token { text: piece.to_owned() })
            })
        });
        let completion = match reply {
            Ok(c) => c,
            Err(error) => {
                outcome = RunOutcome::Failed { error };
                break;
            }
        };
        prompt_total += completion.prompt_tokens;
        completion_total += completion.completion_tokens;
        ttft_ms = ttft_ms.or(completion.ttft_ms.map(|t| t + (call_started - started).as_millis() as u64));
        commit(
            RunEvent::ModelReplied {
                step,
                text: completion.text.clone(),
                prompt_tokens: completion.prompt_tokens,
                completion_tokens: completion.completion_tokens,
                duration_ms: completion.duration_ms,
                ttft_ms: completion.ttft_ms,
                stop: completion.stop,
            },
            on_event,
        )?;
        answer = completion.text.trim().to_owned();
        // Without tools every reply is the final answer; the tools layer adds the `ActionParsed` branch here.
        outcome = match completion.stop {
            StopReason::Eos => RunOutcome::Answered,
            StopReason::MaxTokens => RunOutcome::Partial {
                reason: format!("the reply reached the limit of {} tokens", turn.settings.max_tokens),
            },
            StopReason::Cancelled => RunOutcome::Stopped { reason: "stopped by the user".into() },
        };
        break;
    }

    if outcome == RunOutcome::Answered {
        if let Some(event) = recall::save_episode(&turn.memory, store, turn.conversation_id, turn.conversation, &answer) {
            commit(event, on_event)?;
        }
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    commit(
        RunEvent::RunFinished {
            outcome: outcome.clone(),
            answer: (!answer.is_empty()).then(|| answer.clone()),
            duration_ms,
            prompt_tokens: prompt_total,
            completion_tokens: completion_total,
        },
        on_event,
    )?;
    let result = TurnResult {
        conversation_id: turn.conversation_id,
        run_id: turn.run_id,
        answer,
        outcome,
        prompt_tokens: prompt_total,
        completion_tokens: completion_total,
        duration_ms,
        ttft_ms,
    };
    on_event(TurnEvent::Finished { result: result.clone() });
    Ok(result)
}

/// Runs a call into the backend (directly, or through context assembly's token counting). An error, or a panic
/// (a bug in the backend or in candle), becomes the reason the run failed: the run is recorded as such instead of
/// being left looking alive, and the process and other runs go on.
fn guarded<T>(backend: &str, call: impl FnOnce() -> Result<T, BackendError>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("the {backend} backend failed: {e}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("the {backend} backend crashed: {what}"))
        }
    }
}
