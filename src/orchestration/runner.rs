//! The turn loop, a function over explicit state: fold the run's events into a [`RunState`], look at what is
//! pending, do that one thing, commit the event that records it, and go round again — until the run finishes or
//! pauses for the user.
//!
//! Because the next action is decided from the folded state alone, a run started here, a run resumed after a
//! crash and a run continued after the user's answer all go through the same loop. Each event is committed
//! through the store before the observer hears of it and before anything acts on it. A store failure ends the
//! turn with an error (nothing more can be recorded); a model or tool failure goes through the fallbacks (retry
//! with backoff, an alternative tool, the error reported to the model, asking the user) and, when none is left,
//! ends the run as `Partial` with what was found, or `Failed` — never with an invented answer.

use std::time::{Duration, Instant};

use super::action;
use super::context;
use super::events::{Action, FailureKind, Limit, PolicyDecision, RunEvent, RunOutcome, ToolOutcome, UserAnswer};
use super::journal;
use super::policy;
use super::recall::{self, MemoryAccess};
use super::routed;
use super::state::{ErrorClass, Pending, RunState, ToolCallState};
use super::verify;
use super::{Limits, RunMode, TurnEvent, TurnResult, UserRequest};
use crate::llm::{Backend, BackendError, CancelFlag, ChatMessage, ChatRequest, Completion, GenerationSettings, Role, StopReason};
use crate::store::{Store, StoreError};
use crate::tools::memory::MemoryPort;
use crate::interface::guard::Screen;
use crate::interface::{Accepted, Then};
use crate::tools::{ToolError, Toolbox};

/// What a run works with: where it is recorded, the model, the tools and (for verification) memory.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub store: &'a Store,
    pub backend: &'a dyn Backend,
    pub toolbox: &'a Toolbox,
    pub memory: &'a MemoryAccess<'a>,
    pub memory_port: Option<&'a dyn MemoryPort>,
    /// The guard that checks the user's message, tools' outputs and recalled memories; `None` checks nothing
    /// (tests of the bare loop).
    pub screen: Option<&'a dyn Screen>,
}

/// One turn to run: the user's message as the front door accepted it, the conversation so far (ending with
/// that message) and its settings.
pub struct Turn<'a> {
    pub conversation_id: i64,
    pub run_id: i64,
    pub input: &'a Accepted,
    pub conversation: &'a [ChatMessage],
    pub settings: &'a GenerationSettings,
    pub limits: Limits,
    pub mode: RunMode,
    /// Tools the user's policy lets run without asking.
    pub auto_approve: Vec<String>,
}

/// The event that starts a run (committed with the run itself, see `Store::begin_turn_with_event`).
pub fn started_event(backend: &dyn Backend, toolbox: &Toolbox, conversation_id: i64, turn: &Turn<'_>) -> RunEvent {
    let info = backend.info();
    let tools = if turn.mode.uses_tools() { toolbox.specs().into_iter().map(|s| s.name).collect() } else { Vec::new() };
    RunEvent::RunStarted {
        conversation_id,
        input: turn.input.text.clone(),
        members: backend.members(),
        backend: info.name,
        model: info.model,
        max_steps: turn.limits.max_steps,
        settings: turn.settings.clone(),
        mode: turn.mode,
        limits: Some(turn.limits),
        tools,
        auto_approve: turn.auto_approve.clone(),
    }
}

/// Runs a turn whose run was begun with its `RunStarted` (see [`started_event`]): the memory step, then the loop.
pub fn run_turn(
    services: Services<'_>,
    turn: Turn<'_>,
    cancel: &CancelFlag,
    on_event: &mut dyn FnMut(TurnEvent),
) -> Result<TurnResult, StoreError> {
    let store = services.store;
    on_event(TurnEvent::Started { conversation_id: turn.conversation_id, run_id: turn.run_id });
    let mut run = Run::new(services, turn.run_id, turn.conversation_id, turn.conversation, turn.settings, cancel);
    let begun = journal::load(store, turn.run_id)?;
    for stored in begun.events {
        run.state = std::mem::take(&mut run.state).apply(&stored.event);
        on_event(TurnEvent::Step { event: stored });
    }

    // The user's message, as the front door judged it: a flagged one is recorded with its reasons; a blocked
    // one ends the run here. (Runs without a screen, the bare loop's tests, record nothing.)
    if services.screen.is_some() {
        if let Some(event) = policy::checked(turn.input, "message".into()) {
            run.commit(event, on_event)?;
            if matches!(run.state.pending, Pending::Stop { .. }) {
                // A blocked message: the fold turned the block into a stop, and the loop records the run's end.
                return run.drive(on_event);
            }
        }
    }

    // Memory: a failure here is recorded and the turn goes on without it; a panic inside is a failed run.
    let recalled = match guarded("memory", || Ok(recall::recall(services.memory, store, services.backend, &turn.input.text, services.screen))) {
        Ok(r) => r,
        Err(error) => recall::Recall {
            events: vec![RunEvent::MemoryUnavailable { reason: error.1 }],
            section: None,
            used: Vec::new(),
        },
    };
    for event in recalled.events {
        run.commit(event, on_event)?;
    }
    if !recalled.used.is_empty() {
        store.memory_record_uses(turn.run_id, &recalled.used)?;
    }
    run.memory_section = recalled.section;
    // Code chose the tool from the message: the call is recorded as code's, and the model only phrases the result.
    if let (true, Some(route)) = (turn.mode.uses_tools(), turn.input.route.as_ref()) {
        let event = RunEvent::Routed {
            tool: route.tool.clone(),
            arguments: route.arguments.clone(),
            confidence: route.confidence,
            reason: route.reason.clone(),
            answer: route.answer.clone(),
            then: route.then.clone(),
        };
        run.commit(event, on_event)?;
    }
    run.drive(on_event)
}

/// Continues a run from its log: after an interruption (`answer: None`) or with the user's answer to what it
/// is waiting for. `conversation` is the conversation up to and including the run's own user message.
pub fn resume(
    services: Services<'_>,
    run_id: i64,
    conversation_id: i64,
    conversation: &[ChatMessage],
    settings: &GenerationSettings,
    answer: Option<UserAnswer>,
    cancel: &CancelFlag,
    on_event: &mut dyn FnMut(TurnEvent),
) -> Result<TurnResult, ResumeError> {
    let detail = journal::load(services.store, run_id)?;
    let state = RunState::fold(&detail.events);
    if state.outcome.is_some() {
        return Err(ResumeError::Finished);
    }
    on_event(TurnEvent::Started { conversation_id, run_id });
    let mut run = Run::new(services, run_id, conversation_id, conversation, settings, cancel);
    run.state = state;
    run.memory_section = recall::section_for(services.store, &run.state.memories_used);
    match answer {
        Some(answer) => {
            check_answer(&run.state.pending, &answer)?;
            if run.state.interrupted {
                run.commit(RunEvent::RunResumed { reason: "the user answered".into() }, on_event)?;
            }
            run.commit(RunEvent::UserAnswered { answer }, on_event)?;
        }
        None => {
            if matches!(run.state.pending, Pending::Approval { .. } | Pending::Question { .. }) {
                return Err(ResumeError::NeedsAnswer);
            }
            run.commit(RunEvent::RunResumed { reason: "continued from its log after an interruption".into() }, on_event)?;
        }
    }
    Ok(run.drive(on_event)?)
}

/// Why a run could not be continued.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("the run has already finished")]
    Finished,
    #[error("the run is waiting for the user's answer")]
    NeedsAnswer,
    #[error("the run is not waiting for that answer: {0}")]
    WrongAnswer(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_answer(pending: &Pending, answer: &UserAnswer) -> Result<(), ResumeError> {
    match (pending, answer) {
        (Pending::Approval { call, .. }, UserAnswer::Approve { call_id } | UserAnswer::Deny { call_id, .. }) if *call_id == call.call_id => Ok(()),
        (Pending::Approval { call, .. }, _) => {
            Err(ResumeError::WrongAnswer(format!("it waits for approval of call {} ({})", call.call_id, call.tool)))
        }
        (Pending::Question { .. }, UserAnswer::Reply { text }) if !text.trim().is_empty() => Ok(()),
        (Pending::Question { question }, _) => Err(ResumeError::WrongAnswer(format!("it waits for a reply to: {question}"))),
        _ => Err(ResumeError::WrongAnswer("it is not waiting for the user".into())),
    }
}

/// One invocation of the loop over a run.
struct Run<'a> {
    services: Services<'a>,
    run_id: i64,
    conversation_id: i64,
    conversation: &'a [ChatMessage],
    settings: &'a GenerationSettings,
    cancel: &'a CancelFlag,
    state: RunState,
    memory_section: Option<String>,
    started: Instant,
    ttft_ms: Option<u64>,
}

impl<'a> Run<'a> {
    fn new(
        services: Services<'a>,
        run_id: i64,
        conversation_id: i64,
        conversation: &'a [ChatMessage],
        settings: &'a GenerationSettings,
        cancel: &'a CancelFlag,
    ) -> Run<'a> {
        Run {
            services,
            run_id,
            conversation_id,
            conversation,
            settings,
            cancel,
            state: RunState::default(),
            memory_section: None,
            started: Instant::now(),
            ttft_ms: None,
        }
    }

    /// Commits an event, folds it into the state, then tells the observer.
    fn commit(&mut self, event: RunEvent, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        let stored = journal::append(self.services.store, self.run_id, &event)?;
        self.state = std::mem::take(&mut self.state).apply(&event);
        on_event(TurnEvent::Step { event: stored });
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.state.limits
    }

    fn wall_left(&self) -> Duration {
        Duration::from_millis(self.limits().max_wall_ms).saturating_sub(self.started.elapsed())
    }

    fn drive(mut self, on_event: &mut dyn FnMut(TurnEvent)) -> Result<TurnResult, StoreError> {
        loop {
            if self.state.outcome.is_some() {
                return Ok(self.result(None, on_event));
            }
            if self.cancel.is_cancelled() && !matches!(self.state.pending, Pending::Stop { .. }) {
                self.commit(RunEvent::RunCancelled { reason: "stopped by the user".into() }, on_event)?;
                continue;
            }
            if self.wall_left().is_zero() && !matches!(self.state.pending, Pending::Stop { .. }) {
                let max = self.limits().max_wall_ms;
                self.commit(RunEvent::LimitReached { limit: Limit::WallTime, used: self.started.elapsed().as_millis() as u64, max }, on_event)?;
                continue;
            }
            match self.state.pending.clone() {
                Pending::Nothing => {
                    let outcome = RunOutcome::Failed { error: "the run's log has no RunStarted".into(), kind: FailureKind::Log };
                    self.finish(outcome, None, on_event)?;
                }
                Pending::Model { compose } => {
                    if !(compose && self.follow_route(on_event)?) {
                        self.model_step(compose, on_event)?
                    }
                }
                Pending::InModel => self.model_step(false, on_event)?,
                Pending::Reply { text, stop } => self.read_reply(&text, stop, on_event)?,
                Pending::Answer { text } => self.answer(&text, on_event)?,
                Pending::Ask { question } => self.commit(RunEvent::UserAsked { question }, on_event)?,
                pending @ (Pending::Question { .. } | Pending::Approval { .. }) => {
                    let request = pending.user_request(self.run_id).expect("a question or an approval is a request");
                    return Ok(self.pause(request, on_event));
                }
                Pending::Tool { call, checked: false, .. } => self.check_call(call, on_event)?,
                Pending::Tool { call, checked: true, delay_ms } => self.call_tool(call, delay_ms, on_event)?,
                Pending::InTool { call } => self.interrupted_call(call, on_event)?,
                Pending::ToolFailed { call, error } => self.fallback(call, error, on_event)?,
                Pending::GiveUp { reason } => {
                    if !self.state.asked_for_help && self.state.mode.uses_tools() && self.state.errors.iter().any(|e| e.class == ErrorClass::Contract) {
                        let question = format!(
                            "I could not work out how to do this ({reason}). Could you rephrase the request or tell me how to go on?"
                        );
                        self.commit(RunEvent::UserAsked { question }, on_event)?;
                    } else {
                        let outcome = self.ended_early(reason.clone(), true);
                        let answer = self.partial_answer(&reason).or_else(|| self.failure_report(&reason));
                        self.finish(outcome, answer, on_event)?;
                    }
                }
                Pending::Stop { reason, partial } => {
                    let text = self.partial_answer(&reason);
                    let outcome = if partial && text.is_some() {
                        RunOutcome::Partial { reason: reason.clone() }
                    } else {
                        RunOutcome::Stopped { reason: reason.clone() }
                    };
                    let text = text.or_else(|| self.failure_report(&reason));
                    self.finish(outcome, text, on_event)?;
                }
            }
        }
    }

    /// A bound or a dead end: `Partial` when tools found something, otherwise `Stopped`/`Failed`.
    fn ended_early(&self, reason: String, failed: bool) -> RunOutcome {
        if !self.state.findings().is_empty() {
            RunOutcome::Partial { reason }
        } else if failed {
            RunOutcome::Failed { error: reason, kind: FailureKind::Tools }
        } else {
            RunOutcome::Stopped { reason }
        }
    }

    /// What the user sees when the run could not finish: the last streamed text in chat mode, or what the
    /// tools returned, never an invented answer.
    fn partial_answer(&self, reason: &str) -> Option<String> {
        if !self.state.mode.uses_tools() {
            return self.state.last_reply.as_ref().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        }
        let findings = self.state.findings();
        (!findings.is_empty()).then(|| {
            format!("I could not finish ({reason}). What the tools returned so far:\n{}", findings.iter().map(|f| format!("- {f}")).collect::<Vec<_>>().join("\n"))
        })
    }

    /// When nothing was found and a tool failed: what failed, so the user is never left with no answer at all.
    fn failure_report(&self, reason: &str) -> Option<String> {
        let failed = verify::failed_tools(&self.state);
        (self.state.mode.uses_tools() && !failed.is_empty())
            .then(|| format!("I could not finish ({reason}). {} failed and nothing was found, so no answer is given.", failed.join(", ")))
    }

    fn model_step(&mut self, compose: bool, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        let limits = self.limits();
        if self.state.step >= limits.max_steps {
            return self.commit(RunEvent::LimitReached { limit: Limit::Steps, used: self.state.step.into(), max: limits.max_steps.into() }, on_event);
        }
        let backend = self.services.backend;
        let info = backend.info();
        let mode = self.state.mode;
        let specs: Vec<_> = self.services.toolbox.specs().into_iter().filter(|s| self.state.tools_offered.contains(&s.name)).collect();
        let compose = compose || self.state.composing();
        let tools_section = mode.uses_tools().then(|| action::tools_prompt(mode, &specs, compose));
        let system = context::system_prompt(self.memory_section.as_deref(), tools_section.as_deref());
        let steps = action::history_messages(&self.state.history);
        let window = match guarded(&info.name, || context::assemble(backend, &system, self.conversation, &steps, self.settings.max_tokens)) {
            Ok(w) => w,
            Err((kind, error)) => return self.finish(RunOutcome::Failed { error, kind }, None, on_event),
        };
        // The token bound covers the whole run: the reply gets what is left, and a step that cannot get a useful
        // reply is not started.
        let used = self.state.budget_used.tokens();
        let left = limits.max_tokens.saturating_sub(used).saturating_sub(window.prompt_tokens);
        if left < 16.min(self.settings.max_tokens) || left == 0 {
            return self.commit(
                RunEvent::LimitReached { limit: Limit::Tokens, used: (used + window.prompt_tokens).into(), max: limits.max_tokens.into() },
                on_event,
            );
        }
        let mut settings = self.settings.clone();
        settings.max_tokens = settings.max_tokens.min(left);
        let step = self.state.step + 1;
        self.commit(
            RunEvent::ModelCalled {
                step,
                backend: info.name.clone(),
                prompt_tokens: window.prompt_tokens,
                messages: window.messages.len() as u32,
                dropped_messages: window.dropped_messages + window.dropped_steps,
                memory_items: self.state.memories_used.len() as u32,
            },
            on_event,
        )?;
        let call_started = Instant::now();
        let schema = mode.uses_tools().then(|| action::action_schema(mode, &specs, compose));
        // The user's Stop or the end of the wall-time budget, whichever comes first, stops the call.
        let call_cancel = self.cancel.until(Instant::now() + self.wall_left());
        let reply: Result<Completion, (FailureKind, String)> = guarded(&info.name, || {
            let sink = &mut |piece: &str| on_event(TurnEvent::Token { text: piece.to_owned() });
            backend.reply(&ChatRequest { messages: &window.messages, settings: &settings, schema: schema.as_ref() }, &call_cancel, sink)
        });
        let completion = match reply {
            Ok(c) => c,
            Err((kind, error)) => return self.finish(RunOutcome::Failed { error, kind }, self.partial_answer("the model failed"), on_event),
        };
        self.ttft_ms = self.ttft_ms.or(completion.ttft_ms.map(|t| t + (call_started - self.started).as_millis() as u64));
        self.commit(
            RunEvent::ModelReplied {
                step,
                text: completion.text.clone(),
                prompt_tokens: completion.prompt_tokens,
                cached_prompt_tokens: completion.cached_prompt_tokens,
                completion_tokens: completion.completion_tokens,
                duration_ms: completion.duration_ms,
                ttft_ms: completion.ttft_ms,
                stop: completion.stop,
                answered_by: Some(completion.answered_by.unwrap_or_else(|| info.name.clone())),
                fell_back: completion.fell_back,
            },
            on_event,
        )
    }

    fn read_reply(&mut self, text: &str, stop: StopReason, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        if stop == StopReason::Cancelled {
            if self.cancel.is_cancelled() {
                return self.commit(RunEvent::RunCancelled { reason: "stopped by the user".into() }, on_event);
            }
            let max = self.limits().max_wall_ms;
            return self.commit(RunEvent::LimitReached { limit: Limit::WallTime, used: self.started.elapsed().as_millis() as u64, max }, on_event);
        }
        let mode = self.state.mode;
        if !mode.uses_tools() {
            let mut answer = text.trim().to_owned();
            let outcome = match stop {
                StopReason::MaxTokens => RunOutcome::Partial { reason: format!("the reply reached the limit of {} tokens", self.settings.max_tokens) },
                _ => RunOutcome::Answered,
            };
            // A question about the user that a fact they told Keel answers: the reply must state it.
            if let Some((plain, needs)) = self.recalled_fact() {
                let passed = needs.iter().all(|n| routed::states(&answer, n));
                let detail = if passed { plain.clone() } else { format!("the reply does not state what the user said: {plain}") };
                self.commit(RunEvent::Verified { check: routed::RECALLED_FACT.into(), passed, detail }, on_event)?;
                if !passed {
                    answer = plain;
                }
            }
            if outcome == RunOutcome::Answered {
                if let Some(event) = recall::save_episode(self.services.memory, self.services.store, self.conversation_id, self.conversation, &answer) {
                    self.commit(event, on_event)?;
                }
            }
            return self.finish(outcome, (!answer.is_empty()).then_some(answer), on_event);
        }
        let call_id = format!("c{}", self.state.step);
        let step = self.state.step;
        match action::parse(text, mode, self.state.composing(), self.services.toolbox, &self.state.tools_offered, &call_id) {
            Ok(action) => {
                if matches!(action, Action::Plan { .. }) && self.state.plans > self.limits().max_replans {
                    let (used, max) = (self.state.plans.saturating_sub(1).into(), self.limits().max_replans.into());
                    return self.commit(RunEvent::LimitReached { limit: Limit::Replans, used, max }, on_event);
                }
                self.commit(RunEvent::ActionParsed { step, action }, on_event)
            }
            Err(error) => {
                let error = if stop == StopReason::MaxTokens { format!("{error} (the reply was cut at the token limit)") } else { error };
                let reprompt = !self.state.reprompted;
                self.commit(RunEvent::ActionRejected { step, error, reprompt }, on_event)
            }
        }
    }

    fn answer(&mut self, text: &str, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        if !self.state.verified {
            let mut known: Vec<&str> = self.conversation.iter().map(|m| m.content.as_str()).collect();
            known.extend(self.memory_section.as_deref());
            let checks = verify::checks(text, &self.state, self.services.memory_port, &known, self.question());
            let failures_before = self.state.verification_failures;
            let mut failed = None;
            for c in checks {
                if !c.passed && failed.is_none() {
                    failed = Some((c.check.clone(), c.detail.clone()));
                }
                self.commit(RunEvent::Verified { check: c.check, passed: c.passed, detail: c.detail }, on_event)?;
                if !c.passed {
                    break;
                }
            }
            if let Some((check, detail)) = failed {
                // The routed result is known: an answer that fails a check (does not state it, or states arithmetic
                // that is wrong) is replaced by the plain answer that states it.
                if let Some((expression, result)) = verify::routed_result(&self.state) {
                    let answer = format!("{expression} = {}", result.normalize());
                    return self.answered(&answer, on_event);
                }
                if let Some((answer, _)) = routed::plain_answer(&self.state, self.question()) {
                    return self.answered(&answer, on_event);
                }
                if failures_before >= 1 {
                    // A value invented in place of a failed tool's is not shown at all: the failure is.
                    let answer = if check == verify::UNGROUNDED {
                        let errors: Vec<&str> = self.state.errors.iter().filter(|e| e.class != super::state::ErrorClass::Contract).map(|e| e.message.as_str()).collect();
                        let why = errors.last().copied().unwrap_or("it gave no result");
                        format!(
                            "I could not get that: {} failed ({why}). The model's reply stated a value no tool gave, so it is not shown.",
                            verify::failed_tools(&self.state).join(", ")
                        )
                    } else {
                        format!("{text}\n\n(Unverified: {detail}.)")
                    };
                    return self.finish(RunOutcome::Partial { reason: format!("the answer failed verification: {detail}") }, Some(answer), on_event);
                }
                // The fold hands the failed check back to the model.
                return Ok(());
            }
        }
        self.answered(text, on_event)
    }

    /// The user's message this run answers.
    fn question(&self) -> &'a str {
        self.conversation.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str()).unwrap_or_default()
    }

    /// For a question about the user, the fact they told Keel that answers it, among the memories this run
    /// recalled (see `routed::recalled_fact`).
    fn recalled_fact(&self) -> Option<(String, Vec<routed::Need>)> {
        let question = self.question();
        if self.state.memories_used.is_empty() || !crate::interface::about_the_user(question) {
            return None;
        }
        let items = self.services.store.memory_get_many(&self.state.memories_used).ok()?;
        let facts: Vec<&str> =
            items.iter().filter(|i| i.provenance == "user" && i.kind != crate::store::MemoryKind::DocumentChunk).map(|i| i.text.as_str()).collect();
        routed::recalled_fact(question, &facts)
    }

    /// The step code takes after a routed call succeeded (`Then`), recorded as a second `Routed`; false when
    /// there is none or code cannot take it (the model then goes on from the result, as for any route).
    fn follow_route(&mut self, on_event: &mut dyn FnMut(TurnEvent)) -> Result<bool, StoreError> {
        let Some(Then::SumColumn { words }) = self.state.routed_then.clone() else { return Ok(false) };
        let id = self.state.routed.clone().unwrap_or_default();
        let Some(used) = self.state.tools_used.iter().find(|u| u.call_id == id && u.ok == Some(true)) else { return Ok(false) };
        let path = used.arguments["path"].as_str().unwrap_or_default().to_owned();
        let Some((column, expression)) = used.result.as_ref().and_then(|r| r["content"].as_str()).and_then(|c| routed::sum_column(c, &words)) else {
            return Ok(false);
        };
        let reason = format!("the {column} column of {path} added up, as the message asked");
        let event = RunEvent::Routed { tool: "calculator".into(), arguments: serde_json::json!({ "expression": expression }), confidence: 0.9, reason, answer: None, then: None };
        self.commit(event, on_event)?;
        Ok(true)
    }

    /// Ends the run with this answer, kept as an episode of the conversation (when episodes are on).
    fn answered(&mut self, text: &str, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        if let Some(event) = recall::save_episode(self.services.memory, self.services.store, self.conversation_id, self.conversation, text) {
            self.commit(event, on_event)?;
        }
        self.finish(RunOutcome::Answered, Some(text.to_owned()), on_event)
    }

    /// Loop detection and policy for a call about to be made.
    fn check_call(&mut self, call: ToolCallState, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        let times = self
            .state
            .tools_used
            .iter()
            .filter(|u| u.call_id != call.call_id && u.tool == call.tool && u.arguments == call.arguments)
            .count() as u32;
        if times > 0 && call.attempt == 1 {
            return self.commit(RunEvent::LoopDetected { call_id: call.call_id, tool: call.tool, arguments: call.arguments, times }, on_event);
        }
        let Some(spec) = self.services.toolbox.spec(&call.tool).cloned() else {
            let error = ToolError::UnknownTool { name: call.tool.clone() };
            return self.commit(RunEvent::ErrorReported { call_id: call.call_id, tool: call.tool, error }, on_event);
        };
        let (decision, reason) = policy::check(&spec, &self.state, false);
        self.commit(
            RunEvent::PolicyChecked { call_id: call.call_id.clone(), tool: call.tool.clone(), effect: spec.effect, decision, reason: reason.clone() },
            on_event,
        )?;
        if decision == PolicyDecision::NeedsApproval {
            self.commit(
                RunEvent::ApprovalRequested { call_id: call.call_id, tool: call.tool, arguments: call.arguments, effect: spec.effect, reason },
                on_event,
            )?;
        }
        Ok(())
    }

    fn call_tool(&mut self, call: ToolCallState, delay_ms: u64, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        let limits = self.limits();
        if self.state.budget_used.tool_calls >= limits.max_tool_calls {
            return self.commit(
                RunEvent::LimitReached { limit: Limit::ToolCalls, used: self.state.budget_used.tool_calls.into(), max: limits.max_tool_calls.into() },
                on_event,
            );
        }
        // The backoff pause, cut short by Stop or the wall-time bound.
        let until = Instant::now() + Duration::from_millis(delay_ms).min(self.wall_left());
        while Instant::now() < until && !self.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5).min(until.saturating_duration_since(Instant::now())));
        }
        if self.cancel.is_cancelled() || self.wall_left().is_zero() {
            return Ok(());
        }
        let toolbox = self.services.toolbox;
        let Some(spec) = toolbox.spec(&call.tool).cloned() else {
            let error = ToolError::UnknownTool { name: call.tool.clone() };
            return self.commit(RunEvent::ErrorReported { call_id: call.call_id, tool: call.tool, error }, on_event);
        };
        self.commit(
            RunEvent::ToolCalled {
                call_id: call.call_id.clone(),
                tool: call.tool.clone(),
                arguments: call.arguments.clone(),
                attempt: call.attempt,
                effect: spec.effect,
                idempotent: spec.idempotent,
                untrusted_output: policy::output_source(&spec).is_some(),
            },
            on_event,
        )?;
        let started = Instant::now();
        let timeout = Duration::from_millis(limits.tool_timeout_ms).min(self.wall_left());
        let cancel = self.cancel.clone();
        let result = toolbox.call(&call.tool, &call.arguments, Some(timeout), &|| cancel.is_cancelled());
        let result = match result {
            Ok(value) => ToolOutcome::Ok { value },
            Err(error) => ToolOutcome::Err { error },
        };
        // Untrusted output is checked before the model sees it; flagged output is quarantined.
        let check = match (&result, policy::output_source(&spec), self.services.screen) {
            (ToolOutcome::Ok { value }, Some(source), Some(screen)) => {
                policy::screen_text(screen, &value.to_string(), source, format!("tool:{}", call.call_id))
            }
            _ => None,
        };
        self.commit(
            RunEvent::ToolReturned {
                call_id: call.call_id,
                tool: call.tool,
                attempt: call.attempt,
                duration_ms: started.elapsed().as_millis() as u64,
                result,
            },
            on_event,
        )?;
        match check {
            Some(event) => self.commit(event, on_event),
            None => Ok(()),
        }
    }

    /// A call that was in flight when Keel stopped: repeat it when that is safe, otherwise ask the user.
    fn interrupted_call(&mut self, call: ToolCallState, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        if let Some([unknown, ask]) = call.unknown_outcome() {
            self.commit(unknown, on_event)?;
            return self.commit(ask, on_event);
        }
        self.commit(
            RunEvent::RetryScheduled {
                call_id: call.call_id,
                tool: call.tool,
                next_attempt: call.attempt + 1,
                delay_ms: 0,
                reason: "interrupted; the call is safe to repeat".into(),
            },
            on_event,
        )
    }

    /// The fallbacks for a failed attempt, in order: retry (transient errors, with backoff), an alternative
    /// tool with the same capability (when the tool is at fault), and finally the error reported to the model.
    /// A call that timed out may have done its work before it was stopped: it is repeated (or handed to an
    /// alternative tool) only when that is safe, by the rule a crash uses ([`ToolCallState::unknown_outcome`]):
    /// an idempotent tool, or one without side effects.
    fn fallback(&mut self, call: ToolCallState, error: ToolError, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        if matches!(error, ToolError::Cancelled { .. }) && self.cancel.is_cancelled() {
            return self.commit(RunEvent::RunCancelled { reason: "stopped by the user".into() }, on_event);
        }
        let limits = self.limits();
        let budget_left = self.state.budget_used.tool_calls < limits.max_tool_calls;
        let safe_to_repeat = !matches!(error, ToolError::Timeout { .. }) || call.unknown_outcome().is_none();
        if error.is_transient() && budget_left && safe_to_repeat {
            let seed = (self.run_id as u64).wrapping_mul(31).wrapping_add(u64::from(self.state.budget_used.tool_calls));
            if let Some(delay) = limits.retry.delay(call.attempt + 1, error.retry_after_ms(), seed) {
                if delay < self.wall_left() {
                    return self.commit(
                        RunEvent::RetryScheduled {
                            call_id: call.call_id,
                            tool: call.tool,
                            next_attempt: call.attempt + 1,
                            delay_ms: delay.as_millis() as u64,
                            reason: error.to_string(),
                        },
                        on_event,
                    );
                }
            }
        }
        if error.tool_at_fault() && budget_left && safe_to_repeat {
            let alternative = self
                .services
                .toolbox
                .alternatives(&call.tool)
                .into_iter()
                .find(|t| !call.tried.contains(t) && self.state.tools_offered.contains(t));
            if let Some(to) = alternative {
                return self.commit(
                    RunEvent::AlternativeChosen { call_id: call.call_id, from: call.tool, to, reason: error.to_string() },
                    on_event,
                );
            }
        }
        self.commit(RunEvent::ErrorReported { call_id: call.call_id, tool: call.tool, error }, on_event)
    }

    fn finish(&mut self, outcome: RunOutcome, answer: Option<String>, on_event: &mut dyn FnMut(TurnEvent)) -> Result<(), StoreError> {
        let started_ms = self.services.store.run_started_ms(self.run_id)?;
        let budget = self.state.budget_used;
        self.commit(
            RunEvent::RunFinished {
                outcome,
                answer,
                duration_ms: (crate::store::now_ms() - started_ms).max(0) as u64,
                prompt_tokens: budget.prompt_tokens,
                completion_tokens: budget.completion_tokens,
            },
            on_event,
        )
    }

    fn pause(self, request: UserRequest, on_event: &mut dyn FnMut(TurnEvent)) -> TurnResult {
        on_event(TurnEvent::Paused { request: request.clone() });
        self.result(Some(request), on_event)
    }

    fn result(self, waiting: Option<UserRequest>, on_event: &mut dyn FnMut(TurnEvent)) -> TurnResult {
        let answer = self.services.store.run_answer(self.run_id).ok().flatten().unwrap_or_default();
        let result = TurnResult {
            conversation_id: self.conversation_id,
            run_id: self.run_id,
            answer,
            outcome: self.state.outcome.clone(),
            waiting,
            prompt_tokens: self.state.budget_used.prompt_tokens,
            completion_tokens: self.state.budget_used.completion_tokens,
            duration_ms: self.started.elapsed().as_millis() as u64,
            ttft_ms: self.ttft_ms,
        };
        if result.outcome.is_some() {
            on_event(TurnEvent::Finished { result: result.clone() });
        }
        result
    }
}

/// Runs a call into the backend (directly, or through context assembly's token counting). An error, or a panic
/// (a bug in the backend or in candle), becomes the reason the run failed: the run is recorded as such instead of
/// being left looking alive, and the process and other runs go on.
fn guarded<T>(backend: &str, call: impl FnOnce() -> Result<T, BackendError>) -> Result<T, (FailureKind, String)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err((FailureKind::Backend, format!("the {backend} backend failed: {e}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err((FailureKind::Crash, format!("the {backend} backend crashed: {what}")))
        }
    }
}
