//! `RunState`: what a run is, computed as a pure fold of its events.
//!
//! Nothing here is stored: the event log is the truth and the state is derived from it, so a run read back from
//! SQLite, replayed, or resumed has exactly the state it had when its last event was committed. `pending` is
//! the one thing the runner looks at to decide what to do next; every transition of it is an event.

use serde::Serialize;
use serde_json::Value;

use super::events::{Action, GuardAction, PlanStep, PolicyDecision, RunEvent, RunOutcome, StoredEvent, ToolOutcome, UserAnswer};
use super::{Limits, RunMode, UserRequest};
use crate::llm::StopReason;
use crate::tools::{Effect, ToolError, ToolErrorClass};


/// The call id of the tool call code chose from the message.
pub const ROUTED_CALL: &str = "r1";
/// What the run does next.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pending {
    /// Nothing yet (before `RunStarted`) or nothing more (after `RunFinished`).
    #[default]
    Nothing,
    /// Call the model. `compose` is set when a plan's steps are done and only the answer is left to write.
    Model { compose: bool },
    /// A model call was in flight (`ModelCalled` without its `ModelReplied`).
    InModel,
    /// The model replied; the reply is to be read (or, in chat mode, is the answer).
    Reply { text: String, stop: StopReason },
    /// A tool call to make: `checked` once policy allowed it (or the user approved it).
    Tool { call: ToolCallState, checked: bool, delay_ms: u64 },
    /// A tool attempt was in flight (`ToolCalled` without its `ToolReturned`).
    InTool { call: ToolCallState },
    /// The last attempt failed: retry, switch tool, or report the error to the model.
    ToolFailed { call: ToolCallState, error: ToolError },
    /// The model asked the user something; the question is yet to be put.
    Ask { question: String },
    /// Paused: the user must approve or deny this call.
    Approval { call: ToolCallState, reason: String },
    /// Paused: the user must answer.
    Question { question: String },
    /// The model answered; the answer is to be verified, then given.
    Answer { text: String },
    /// Nothing useful can follow: the run ends, partially where something was found.
    GiveUp { reason: String },
    /// A bound or the user stopped the run; `RunFinished` follows.
    Stop { reason: String, partial: bool },
}

impl Pending {
    /// What the user is asked, when the run waits on them.
    pub fn user_request(&self, run_id: i64) -> Option<UserRequest> {
        match self {
            Pending::Approval { call, reason } => Some(UserRequest::Approval {
                run_id,
                call_id: call.call_id.clone(),
                tool: call.tool.clone(),
                arguments: call.arguments.clone(),
                effect: call.effect,
                reason: reason.clone(),
            }),
            Pending::Question { question } => Some(UserRequest::Question { run_id, question: question.clone() }),
            _ => None,
        }
    }
}

/// One tool call as the run tracks it across attempts and alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallState {
    pub call_id: String,
    pub tool: String,
    pub arguments: Value,
    /// The attempt to make next (or in flight): 1 for the first.
    pub attempt: u32,
    pub effect: Effect,
    pub idempotent: bool,
    /// Tools already tried for this call (alternatives are taken from the rest).
    pub tried: Vec<String>,
}

impl ToolCallState {
    /// For a call that was in flight when Keel stopped and is not safe to repeat: the events that say its outcome
    /// is unknown and ask the user whether to run it again. `None` for a call that may simply be repeated.
    pub fn unknown_outcome(&self) -> Option<[RunEvent; 2]> {
        (self.effect.has_side_effects() && !self.idempotent).then(|| {
            [
                RunEvent::OutcomeUnknown { call_id: self.call_id.clone(), tool: self.tool.clone() },
                RunEvent::ApprovalRequested {
                    call_id: self.call_id.clone(),
                    tool: self.tool.clone(),
                    arguments: self.arguments.clone(),
                    effect: self.effect,
                    reason: "Keel stopped during this call, so whether it took effect is unknown. Run it again?".into(),
                },
            ]
        })
    }
}

/// What this run adds to the model's context, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// The model's own reply.
    Assistant { text: String },
    /// A tool's result or error, as data.
    /// A tool's result; `untrusted` when it is outside text (spotlighted as such in the prompt).
    Observation { call_id: String, tool: String, content: String, ok: bool, untrusted: bool },
    /// The user's answer to a question or an approval.
    User { text: String },
    /// Feedback from the runner (a contract broken, a check failed, a repeated call).
    Feedback { text: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedError {
    pub step: u32,
    pub class: ErrorClass,
    pub message: String,
}

/// What kind of error a run met: the model broke its contract (a reply that is no valid action), or a tool
/// call failed with one of the tools' classes. Serialised as the class's name (`contract`, `timeout`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Contract,
    Tool(ToolErrorClass),
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Contract => "contract",
            ErrorClass::Tool(class) => class.as_str(),
        }
    }
}

impl Serialize for ErrorClass {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Per call: the tool (the last one tried), attempts made and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolUse {
    pub call_id: String,
    pub tool: String,
    pub arguments: Value,
    pub attempts: u32,
    pub effect: Effect,
    /// Whether its output is untrusted text (see `policy::output_source`), as recorded in `ToolCalled`.
    pub untrusted_output: bool,
    pub ok: Option<bool>,
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BudgetUsed {
    pub steps: u32,
    pub tool_calls: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl BudgetUsed {
    pub fn tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The plan being carried out, in plan-then-execute mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanProgress {
    pub steps: Vec<PlanStep>,
    /// The index of the step to run next.
    pub next: usize,
    /// The step whose call is under way.
    pub step_call: Option<String>,
}

/// The state of one run after some prefix of its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunState {
    pub mode: RunMode,
    pub limits: Limits,
    pub tools_offered: Vec<String>,
    pub auto_approve: Vec<String>,
    /// The number of model calls made so far.
    pub step: u32,
    pub history: Vec<HistoryEntry>,
    pub errors: Vec<RecordedError>,
    pub tools_used: Vec<ToolUse>,
    pub budget_used: BudgetUsed,
    pub pending: Pending,
    pub plan: Option<PlanProgress>,
    /// Plans written so far (the first and every replan).
    pub plans: u32,
    /// Set when the last reply broke the contract and was answered with a constrained re-prompt.
    pub reprompted: bool,
    /// The run asked the user to help after the model could not keep the contract.
    pub asked_for_help: bool,
    pub loops: u32,
    pub verification_failures: u32,
    pub verified: bool,
    pub interrupted: bool,
    /// The text of the last model reply.
    pub last_reply: Option<String>,
    /// Set once the run has finished.
    pub outcome: Option<RunOutcome>,
    /// Memory items this run saved, and the ones its context used.
    pub memories_saved: Vec<i64>,
    pub memories_used: Vec<i64>,
    /// The untrusted sources whose text is in the context (a tool's output, a document, a memory not from the
    /// user), named for the approval prompt: while any is present, side effects need the user's approval.
    pub untrusted: Vec<String>,
    /// The last call code chose (`RunEvent::Routed`), by its call id (`r1`, `r2`…).
    pub routed: Option<String>,
    /// The plain answer of the routes so far (the last one's `answer`), and the step code takes after the last
    /// routed call, until it is taken.
    pub routed_answer: Option<String>,
    pub routed_then: Option<crate::interface::Then>,
    /// How many calls code chose in this run.
    pub routes: u32,
}

impl RunState {
    /// Folds one event into the state.
    pub fn apply(mut self, event: &RunEvent) -> RunState {
        match event {
            RunEvent::RunStarted { max_steps, mode, limits, tools, auto_approve, .. } => {
                self.mode = *mode;
                self.limits = limits.unwrap_or(Limits { max_steps: *max_steps, ..Limits::default() });
                self.tools_offered = tools.clone();
                self.auto_approve = auto_approve.clone();
                self.pending = Pending::Model { compose: false };
            }
            RunEvent::MemoryUnavailable { .. } => {}
            RunEvent::MemorySaved { item_id, .. } => self.memories_saved.push(*item_id),
            RunEvent::MemoryRetrieved { candidates, .. } => {
                use crate::memory::retrieve::CandidateDecision;
                self.memories_used = candidates.iter().filter(|c| c.decision == CandidateDecision::Kept).map(|c| c.item_id).collect();
                // A quarantined item was withheld from the model, but something untrusted tried to steer the run:
                // it taints the run like a kept one.
                let reached = candidates.iter().filter(|c| matches!(c.decision, CandidateDecision::Kept | CandidateDecision::Quarantined));
                for c in reached.filter(|c| c.provenance != "user") {
                    let name = match c.kind {
                        crate::store::MemoryKind::DocumentChunk => format!("the document {}", c.source),
                        _ => format!("memory item {} (from {})", c.item_id, c.provenance),
                    };
                    self.taint(name);
                }
            }
            RunEvent::InputChecked { origin, action, explanation, .. } => {
                if *action == GuardAction::Block {
                    self.pending = Pending::Stop { reason: explanation.clone(), partial: false };
                }
                if *action == GuardAction::Quarantine {
                    if let Some(call_id) = origin.strip_prefix("tool:") {
                        for h in self.history.iter_mut() {
                            if let HistoryEntry::Observation { call_id: c, content, .. } = h {
                                if c == call_id {
                                    *content = format!("[Keel withheld this output: {explanation}]");
                                }
                            }
                        }
                    }
                }
            }
            RunEvent::ModelCalled { step, .. } => {
                self.step = *step;
                self.budget_used.steps = *step;
                self.pending = Pending::InModel;
            }
            RunEvent::ModelReplied { text, prompt_tokens, completion_tokens, stop, .. } => {
                self.budget_used.prompt_tokens += prompt_tokens;
                self.budget_used.completion_tokens += completion_tokens;
                self.last_reply = Some(text.clone());
                self.pending = Pending::Reply { text: text.clone(), stop: *stop };
            }
            RunEvent::ActionParsed { action, .. } => {
                if let Some(text) = &self.last_reply {
                    self.history.push(HistoryEntry::Assistant { text: text.clone() });
                }
                self.reprompted = false;
                self.pending = match action {
                    Action::Answer { text } => Pending::Answer { text: text.clone() },
                    Action::Ask { question } => Pending::Ask { question: question.clone() },
                    Action::ToolCall { call_id, tool, arguments } => Pending::Tool {
                        call: self.new_call(call_id, tool, arguments),
                        checked: false,
                        delay_ms: 0,
                    },
                    Action::Plan { steps } => {
                        self.plans += 1;
                        self.plan = Some(PlanProgress { steps: steps.clone(), next: 0, step_call: None });
                        self.next_plan_step()
                    }
                };
            }
            RunEvent::ActionRejected { step, error, reprompt } => {
                if let Some(text) = &self.last_reply {
                    self.history.push(HistoryEntry::Assistant { text: text.clone() });
                }
                self.errors.push(RecordedError { step: *step, class: ErrorClass::Contract, message: error.clone() });
                if *reprompt {
                    self.reprompted = true;
                    self.history.push(HistoryEntry::Feedback { text: error.clone() });
                    self.pending = Pending::Model { compose: false };
                } else {
                    self.pending = Pending::GiveUp { reason: format!("the model's reply broke the contract twice: {error}") };
                }
            }
            RunEvent::PolicyChecked { decision, call_id, reason, effect, .. } => {
                if let Pending::Tool { call, .. } = &mut self.pending {
                    call.effect = *effect;
                }
                match (&mut self.pending, decision) {
                    (Pending::Tool { checked, .. }, PolicyDecision::Allow) => *checked = true,
                    (Pending::Tool { .. }, PolicyDecision::NeedsApproval) => {}
                    (Pending::Tool { call, .. }, PolicyDecision::Refuse) => {
                        let tool = call.tool.clone();
                        self.observe(call_id, &tool, format!("refused: {reason}"), false);
                        self.after_call_failed();
                    }
                    _ => {}
                }
            }
            RunEvent::ApprovalRequested { call_id, reason, .. } => {
                if let Some(call) = self.current_call(call_id) {
                    self.pending = Pending::Approval { call, reason: reason.clone() };
                }
            }
            RunEvent::UserAsked { question } => {
                if matches!(self.pending, Pending::GiveUp { .. }) {
                    self.asked_for_help = true;
                }
                self.pending = Pending::Question { question: question.clone() };
            }
            RunEvent::UserAnswered { answer } => match (answer, std::mem::take(&mut self.pending)) {
                (UserAnswer::Approve { .. }, Pending::Approval { call, .. }) => {
                    self.pending = Pending::Tool { call, checked: true, delay_ms: 0 };
                }
                (UserAnswer::Deny { note, .. }, Pending::Approval { call, .. }) => {
                    let why = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                    self.observe(&call.call_id, &call.tool, format!("the user denied this call{why}"), false);
                    self.after_call_failed();
                }
                (UserAnswer::Reply { text }, _) => {
                    self.history.push(HistoryEntry::User { text: text.clone() });
                    self.pending = Pending::Model { compose: false };
                }
                (_, other) => self.pending = other,
            },
            RunEvent::ToolCalled { call_id, tool, arguments, attempt, effect, idempotent, untrusted_output } => {
                self.budget_used.tool_calls += 1;
                let mut call = self.current_call(call_id).unwrap_or_else(|| ToolCallState {
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    arguments: arguments.clone(),
                    attempt: *attempt,
                    effect: *effect,
                    idempotent: *idempotent,
                    tried: vec![tool.clone()],
                });
                call.attempt = *attempt;
                call.tool = tool.clone();
                call.effect = *effect;
                call.idempotent = *idempotent;
                match self.tools_used.iter_mut().find(|u| u.call_id == *call_id) {
                    Some(u) => {
                        u.tool = tool.clone();
                        u.effect = *effect;
                        u.untrusted_output = *untrusted_output || *effect == Effect::External;
                        u.attempts += 1;
                    }
                    None => self.tools_used.push(ToolUse {
                        call_id: call_id.clone(),
                        tool: tool.clone(),
                        arguments: arguments.clone(),
                        attempts: 1,
                        effect: *effect,
                        untrusted_output: *untrusted_output || *effect == Effect::External,
                        ok: None,
                        result: None,
                    }),
                }
                self.pending = Pending::InTool { call };
            }
            RunEvent::ToolReturned { call_id, tool, result, .. } => {
                let call = self.current_call(call_id);
                match result {
                    ToolOutcome::Ok { value } => {
                        let mut untrusted = None;
                        if let Some(u) = self.tools_used.iter_mut().find(|u| u.call_id == *call_id) {
                            u.ok = Some(true);
                            u.result = Some(value.clone());
                            untrusted = u.untrusted_output.then(|| format!("the output of {}", u.tool));
                        }
                        if let Some(name) = untrusted {
                            self.taint(name);
                        }
                        self.observe(call_id, tool, value.to_string(), true);
                        self.pending = self.after_call_succeeded();
                    }
                    ToolOutcome::Err { error } => {
                        if let Some(u) = self.tools_used.iter_mut().find(|u| u.call_id == *call_id) {
                            u.ok = Some(false);
                        }
                        self.errors.push(RecordedError { step: self.step, class: ErrorClass::Tool(error.class()), message: error.to_string() });
                        if let Some(call) = call {
                            self.pending = Pending::ToolFailed { call, error: error.clone() };
                        }
                    }
                }
            }
            RunEvent::ErrorReported { call_id, tool, error } => {
                self.observe(call_id, tool, format!("error ({}): {error}", error.class()), false);
                self.after_call_failed();
                // A call code chose failed for good (after its retries and alternatives): the run reports it
                // rather than leave the model to guess or to call the same tool again.
                if self.routed.as_deref() == Some(call_id.as_str()) {
                    self.pending = Pending::Stop { reason: format!("{tool} failed: {error}"), partial: true };
                }
            }
            RunEvent::RetryScheduled { call_id, next_attempt, delay_ms, .. } => {
                if let Some(mut call) = self.current_call(call_id) {
                    call.attempt = *next_attempt;
                    self.pending = Pending::Tool { call, checked: true, delay_ms: *delay_ms };
                }
            }
            RunEvent::AlternativeChosen { call_id, to, .. } => {
                if let Some(mut call) = self.current_call(call_id) {
                    call.tool = to.clone();
                    call.attempt = 1;
                    call.tried.push(to.clone());
                    self.pending = Pending::Tool { call, checked: false, delay_ms: 0 };
                }
            }
            RunEvent::LoopDetected { call_id, tool, arguments, times } => {
                self.loops += 1;
                // The repeated call is answered with the earlier result, so the model has what it asked for again.
                let earlier = self.tools_used.iter().rev().find(|u| u.call_id != *call_id && u.tool == *tool && u.arguments == *arguments).and_then(|u| u.result.as_ref());
                let content = match earlier {
                    Some(result) => {
                        let mut shown = result.to_string();
                        if shown.len() > 800 {
                            let cut = (0..=800).rev().find(|i| shown.is_char_boundary(*i)).unwrap_or(0);
                            shown.truncate(cut);
                            shown.push('…');
                        }
                        format!("not repeated: this exact call was already made ({times} times) and returned {shown}. Answer the user from this result now.")
                    }
                    None => format!("not repeated: this exact call was already made ({times} times) and failed; call another tool or answer"),
                };
                self.observe(call_id, tool, content, false);
                // Past the limit: an answer is forced from what the tools returned (the answer-only schema), and
                // only when nothing came back does the run stop.
                self.pending = if self.loops > self.limits.max_repeats + 1 || (self.loops > self.limits.max_repeats && self.findings().is_empty()) {
                    Pending::Stop { reason: "the model kept repeating the same tool call".into(), partial: true }
                } else {
                    Pending::Model { compose: self.loops > self.limits.max_repeats }
                };
            }
            RunEvent::Routed { tool, arguments, answer, then, .. } => {
                self.routes += 1;
                let id = if self.routes == 1 { ROUTED_CALL.to_owned() } else { format!("r{}", self.routes) };
                self.routed = Some(id.clone());
                self.routed_answer = answer.clone();
                self.routed_then = then.clone();
                self.pending = Pending::Tool { call: self.new_call(&id, tool, arguments), checked: false, delay_ms: 0 };
            }
            RunEvent::Verified { passed, detail, .. } => {
                // The checks of one answer come in order and stop at the first failure: the answer is verified
                // only when the last check passed, so the next answer is checked again.
                self.verified = *passed;
                if !passed {
                    self.verification_failures += 1;
                    self.history.push(HistoryEntry::Feedback { text: format!("A check of your answer failed: {detail}") });
                    self.pending = Pending::Model { compose: self.plan.is_some() || self.routed.is_some() };
                }
            }
            RunEvent::LimitReached { limit, used, max } => {
                self.pending = Pending::Stop { reason: format!("the {limit} limit was reached ({used} of {max})"), partial: true };
            }
            RunEvent::RunCancelled { reason } => {
                self.pending = Pending::Stop { reason: reason.clone(), partial: false };
            }
            RunEvent::RunInterrupted { .. } => self.interrupted = true,
            RunEvent::RunResumed { .. } => self.interrupted = false,
            RunEvent::OutcomeUnknown { .. } => {}
            RunEvent::RunFinished { outcome, .. } => {
                self.outcome = Some(outcome.clone());
                self.pending = Pending::Nothing;
            }
        }
        self
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> RunState {
        events.into_iter().fold(RunState::default(), |s, e| s.apply(&e.event))
    }

    /// The call the pending step is about, if it is `call_id`.
    fn current_call(&self, call_id: &str) -> Option<ToolCallState> {
        match &self.pending {
            Pending::Tool { call, .. } | Pending::InTool { call } | Pending::ToolFailed { call, .. } | Pending::Approval { call, .. }
                if call.call_id == call_id =>
            {
                Some(call.clone())
            }
            _ => None,
        }
    }

    fn new_call(&self, call_id: &str, tool: &str, arguments: &Value) -> ToolCallState {
        ToolCallState {
            call_id: call_id.to_owned(),
            tool: tool.to_owned(),
            arguments: arguments.clone(),
            attempt: 1,
            // The runner fills in the tool's real effect when it checks policy; until then, assume the worst.
            effect: Effect::External,
            idempotent: false,
            tried: vec![tool.to_owned()],
        }
    }

    fn taint(&mut self, name: String) {
        if !self.untrusted.contains(&name) {
            self.untrusted.push(name);
        }
    }

    fn observe(&mut self, call_id: &str, tool: &str, content: String, ok: bool) {
        let untrusted = ok && self.tools_used.iter().any(|u| u.call_id == call_id && u.untrusted_output);
        self.history.push(HistoryEntry::Observation { call_id: call_id.to_owned(), tool: tool.to_owned(), content, ok, untrusted });
    }

    /// The next step of the plan, or composing the answer when the plan is done.
    fn next_plan_step(&mut self) -> Pending {
        let plans = self.plans;
        let Some(plan) = self.plan.as_mut() else { return Pending::Model { compose: false } };
        let index = plan.next;
        match plan.steps.get(index) {
            Some(PlanStep::Tool { tool, arguments }) => {
                let call_id = format!("p{plans}.{}", index + 1);
                plan.step_call = Some(call_id.clone());
                let (tool, arguments) = (tool.clone(), arguments.clone());
                Pending::Tool { call: self.new_call(&call_id, &tool, &arguments), checked: false, delay_ms: 0 }
            }
            Some(PlanStep::Answer) | None => Pending::Model { compose: true },
        }
    }

    fn after_call_succeeded(&mut self) -> Pending {
        match self.plan.as_mut() {
            Some(plan) => {
                plan.next += 1;
                self.next_plan_step()
            }
            // After the call code chose, the model only phrases the answer from its result.
            None => Pending::Model { compose: self.routed.is_some() },
        }
    }

    /// A call that could not be made: in plan mode the plan is given up and the model writes a new one (within
    /// the replan limit); in ReAct mode the model sees the error and decides.
    fn after_call_failed(&mut self) {
        self.pending = match self.plan.take() {
            Some(_) if self.plans > self.limits.max_replans => {
                Pending::GiveUp { reason: format!("the plan failed and the replan limit ({}) was reached", self.limits.max_replans) }
            }
            _ => Pending::Model { compose: false },
        };
    }

    /// True when a plan's tool steps are done and only its answer is left to write.
    pub fn composing(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| matches!(p.steps.get(p.next), Some(PlanStep::Answer) | None))
    }

    /// The results found so far, for a partial answer: never invented, only what tools returned.
    pub fn findings(&self) -> Vec<String> {
        self.tools_used
            .iter()
            .filter(|u| u.ok == Some(true))
            .map(|u| format!("{}({}) → {}", u.tool, u.arguments, u.result.as_ref().map(|r| r.to_string()).unwrap_or_default()))
            .collect()
    }
}
