//! The run's event log: every step of a run is one [`RunEvent`], committed to SQLite before anyone acts on it.
//!
//! These are boundary types: they are stored (as versioned JSON), printed by `keel runs show --json` and sent to
//! the UI, whose TypeScript types are generated from them. Adding a variant makes the compiler show every place
//! that must decide what to do with it.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::interface::guard::{Reason, Source, Verdict};
use crate::llm::{BackendFailure, GenerationSettings, StopReason};
use crate::memory::retrieve::{CandidateDecision, RetrievalCandidate};
use crate::store::MemoryKind;
use crate::tools::{Effect, ToolError};

use super::{Limits, RunMode};

/// The version of the stored event payloads. Bump it, and teach `store` to read the old one, when an existing
/// variant changes shape.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind")]
pub enum RunEvent {
    /// The run began: what was asked, of which backend, under which limits.
    RunStarted {
        #[ts(type = "number")]
        conversation_id: i64,
        input: String,
        /// The backend's name as shown (a fallback chain's members joined by " → ").
        backend: String,
        /// The backends tried in order (the chain's members; absent in older logs): a resumed run starts again
        /// on the first.
        #[serde(default)]
        members: Vec<String>,
        model: String,
        max_steps: u32,
        settings: GenerationSettings,
        /// How the run works (chat, ReAct, plan-then-execute); absent in logs from before tools: chat.
        #[serde(default)]
        mode: RunMode,
        /// Every bound of the run; absent in older logs, where only `max_steps` applied.
        #[serde(default)]
        limits: Option<Limits>,
        /// The tools offered to the model.
        #[serde(default)]
        tools: Vec<String>,
        /// Tools the user's policy lets run without asking (side-effecting ones otherwise ask).
        #[serde(default)]
        auto_approve: Vec<String>,
    },
    /// The guard checked a text entering the run and the policy decided what to do with it. `origin` names the
    /// text: `message` (the user's), `tool:<call id>` (a tool's output) or `memory:<item id>`.
    InputChecked {
        origin: String,
        source: Source,
        verdict: Verdict,
        score: f32,
        reasons: Vec<Reason>,
        action: GuardAction,
        explanation: String,
    },
    /// The user asked Keel to remember something ("remember that …"); the item was committed before this event.
    MemorySaved {
        #[ts(type = "number")]
        item_id: i64,
        memory_kind: MemoryKind,
        text: String,
        provenance: String,
    },
    /// Memory was searched for this turn: every candidate with its scores and why it was kept or dropped. Only
    /// kept ones went into the context, within `token_budget`.
    MemoryRetrieved {
        query: String,
        threshold: f32,
        token_budget: u32,
        tokens_used: u32,
        #[ts(type = "number")]
        duration_ms: u64,
        candidates: Vec<RecordedCandidate>,
    },
    /// Memory could not be used for this turn (no embedding model, say); the turn went on without it.
    MemoryUnavailable { reason: String },
    /// The orchestrator assembled a context window and called the model.
    ModelCalled {
        step: u32,
        backend: String,
        prompt_tokens: u32,
        /// How many chat messages went into the window.
        messages: u32,
        /// How many of the oldest messages were left out to fit the window (whole messages, never cut).
        dropped_messages: u32,
        /// Memory items in the window's memory section (0: the window has no memory section).
        #[serde(default)]
        memory_items: u32,
    },
    /// The model finished replying (or was stopped).
    ModelReplied {
        step: u32,
        text: String,
        prompt_tokens: u32,
        /// Prompt tokens whose KV state was reused from an earlier call rather than computed (the embedded
        /// engine's prefix cache); absent in logs from before it.
        #[serde(default)]
        #[ts(as = "Option<u32>", optional)]
        cached_prompt_tokens: u32,
        completion_tokens: u32,
        #[ts(type = "number")]
        duration_ms: u64,
        #[ts(type = "number | null")]
        ttft_ms: Option<u64>,
        stop: StopReason,
        /// The backend that produced the reply (a fallback chain's member); absent in logs from before chains.
        #[serde(default)]
        answered_by: Option<String>,
        /// The chain's backends that failed before it, and why.
        #[serde(default)]
        fell_back: Vec<BackendFailure>,
    },
    /// The model's reply, read as an action under its contract (a tool call validated against the tool's input
    /// schema, a plan, a question for the user, or the answer).
    ActionParsed { step: u32, action: Action },
    /// The reply broke the contract; `reprompt` says whether the model gets one constrained second chance.
    ActionRejected { step: u32, error: String, reprompt: bool },
    /// Whether a tool call may go ahead: within budget, allowed by policy, or in need of the user's approval.
    PolicyChecked { call_id: String, tool: String, effect: Effect, decision: PolicyDecision, reason: String },
    /// The run waits for the user to approve or deny this exact call.
    ApprovalRequested {
        call_id: String,
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
        effect: Effect,
        reason: String,
    },
    /// The run waits for the user to answer a question (the model asked, or a fallback needs a decision).
    UserAsked { question: String },
    /// The user's answer to an approval request or a question.
    UserAnswered { answer: UserAnswer },
    /// One attempt at a tool call begins; committed before the tool runs.
    ToolCalled {
        call_id: String,
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
        attempt: u32,
        effect: Effect,
        idempotent: bool,
        /// Whether what the tool returns is untrusted text (it reads files or memory, fetches, or is an MCP
        /// tool); absent in older logs, where only `External` tools counted.
        #[serde(default)]
        untrusted_output: bool,
    },
    /// The attempt's result, validated against the tool's output schema, or its error class.
    ToolReturned {
        call_id: String,
        tool: String,
        attempt: u32,
        #[ts(type = "number")]
        duration_ms: u64,
        result: ToolOutcome,
    },
    /// A transient failure will be retried after `delay_ms` (exponential backoff, full jitter, or Retry-After).
    RetryScheduled { call_id: String, tool: String, next_attempt: u32, #[ts(type = "number")] delay_ms: u64, reason: String },
    /// No retry or alternative is left: the error goes to the model as the call's result (in plan mode the plan
    /// is replaced).
    ErrorReported { call_id: String, tool: String, error: ToolError },
    /// The call moves to another tool with the same capability.
    AlternativeChosen { call_id: String, from: String, to: String, reason: String },
    /// The model asked for a call it already made with the same arguments: the call is not repeated.
    LoopDetected {
        call_id: String,
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
        times: u32,
    },
    /// A deterministic check of the answer before it is shown (recomputed arithmetic, cited memories exist).
    Verified { check: String, passed: bool, detail: String },
    /// Code, not the model, chose this tool call (`interface::route` from the user's message, or a second step
    /// from the first one's result); the calls follow as `r1`, `r2`…, and the model only phrases the answer from
    /// the results. `answer` is the plain answer stating the result (see `interface::Route`), `then` the step
    /// code takes after this one.
    Routed {
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
        confidence: f32,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        answer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        then: Option<crate::interface::Then>,
    },
    /// A bound was reached; the run ends with what it found.
    LimitReached {
        limit: Limit,
        #[ts(type = "number")]
        used: u64,
        #[ts(type = "number")]
        max: u64,
    },
    /// The user (Stop, Ctrl-C) cancelled the run.
    RunCancelled { reason: String },
    /// Keel stopped while this run was in flight; it can be resumed from its log.
    RunInterrupted { reason: String },
    /// The run continues from its log (after an interruption or the user's answer).
    RunResumed { reason: String },
    /// Keel stopped inside a side-effecting call: whether it happened is unknown, so nothing is retried without
    /// the user's say.
    OutcomeUnknown { call_id: String, tool: String },
    /// The run ended. `answer` is what the user was shown; it is `None` when nothing was produced.
    RunFinished {
        outcome: RunOutcome,
        answer: Option<String>,
        #[ts(type = "number")]
        duration_ms: u64,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

impl RunEvent {
    /// The variant's name, as stored in the `kind` column and shown in the Inspector.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::RunStarted { .. } => "RunStarted",
            RunEvent::MemorySaved { .. } => "MemorySaved",
            RunEvent::InputChecked { .. } => "InputChecked",
            RunEvent::MemoryRetrieved { .. } => "MemoryRetrieved",
            RunEvent::MemoryUnavailable { .. } => "MemoryUnavailable",
            RunEvent::ModelCalled { .. } => "ModelCalled",
            RunEvent::ModelReplied { .. } => "ModelReplied",
            RunEvent::ActionParsed { .. } => "ActionParsed",
            RunEvent::ActionRejected { .. } => "ActionRejected",
            RunEvent::PolicyChecked { .. } => "PolicyChecked",
            RunEvent::ApprovalRequested { .. } => "ApprovalRequested",
            RunEvent::UserAsked { .. } => "UserAsked",
            RunEvent::UserAnswered { .. } => "UserAnswered",
            RunEvent::ToolCalled { .. } => "ToolCalled",
            RunEvent::ToolReturned { .. } => "ToolReturned",
            RunEvent::RetryScheduled { .. } => "RetryScheduled",
            RunEvent::ErrorReported { .. } => "ErrorReported",
            RunEvent::AlternativeChosen { .. } => "AlternativeChosen",
            RunEvent::LoopDetected { .. } => "LoopDetected",
            RunEvent::Verified { .. } => "Verified",
            RunEvent::Routed { .. } => "Routed",
            RunEvent::LimitReached { .. } => "LimitReached",
            RunEvent::RunCancelled { .. } => "RunCancelled",
            RunEvent::RunInterrupted { .. } => "RunInterrupted",
            RunEvent::RunResumed { .. } => "RunResumed",
            RunEvent::OutcomeUnknown { .. } => "OutcomeUnknown",
            RunEvent::RunFinished { .. } => "RunFinished",
        }
    }
}

/// What the model asked for, once its reply was read under the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// The final answer.
    Answer { text: String },
    /// Call one tool; `call_id` names the call in the events that follow.
    ToolCall {
        call_id: String,
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
    },
    /// Ask the user something before going on.
    Ask { question: String },
    /// Plan-then-execute: the steps, each validated before it runs.
    Plan { steps: Vec<PlanStep> },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlanStep {
    Tool {
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
    },
    /// Write the answer from what the steps found.
    Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecision {
    Allow,
    NeedsApproval,
    Refuse,
}

/// The user's reply to whatever the run was waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserAnswer {
    Approve { call_id: String },
    Deny { call_id: String, note: Option<String> },
    Reply { text: String },
}

/// How one tool attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ToolOutcome {
    Ok {
        #[ts(type = "unknown")]
        value: serde_json::Value,
    },
    Err { error: ToolError },
}

/// A retrieval candidate as the run records it: the scores and the decision, with the start of the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RecordedCandidate {
    #[ts(type = "number")]
    pub item_id: i64,
    pub kind: MemoryKind,
    pub source: String,
    /// Who the item's text came from (`user`, `assistant`, `document`, …); absent in older logs: `user`.
    #[serde(default = "user_provenance")]
    pub provenance: String,
    /// Up to 200 characters of the item's text.
    pub text: String,
    pub bm25: Option<f32>,
    pub bm25_rank: Option<u32>,
    pub cosine: f32,
    pub vector_rank: Option<u32>,
    pub fused: f32,
    pub tokens: u32,
    pub decision: CandidateDecision,
    pub reason: String,
}

fn user_provenance() -> String {
    "user".into()
}

impl From<&RetrievalCandidate> for RecordedCandidate {
    fn from(c: &RetrievalCandidate) -> Self {
        let text: String = c.item.text.chars().take(200).collect();
        RecordedCandidate {
            item_id: c.item.id,
            kind: c.item.kind,
            source: c.item.source.clone(),
            provenance: c.item.provenance.clone(),
            text,
            bm25: c.bm25,
            bm25_rank: c.bm25_rank,
            cosine: c.cosine,
            vector_rank: c.vector_rank,
            fused: c.fused,
            tokens: c.tokens,
            decision: c.decision,
            reason: c.reason.clone(),
        }
    }
}

/// How a run ended. A run never ends with an invented answer: when it could not finish it says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Answered,
    /// Something useful was produced but the run could not complete (e.g. the token budget ran out mid-answer).
    Partial { reason: String },
    /// The user or a limit stopped the run.
    Stopped { reason: String },
    /// The run failed; `error` says why and `kind` what failed (older logs: the backend).
    Failed {
        error: String,
        #[serde(default)]
        kind: FailureKind,
    },
}

/// What made a run fail, for the CLI's exit code and the UI's message (they never read the error's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The backend could not answer (unreachable, refused, overloaded, the prompt over its window).
    #[default]
    Backend,
    /// The backend crashed (a panic inside it, caught and recorded).
    Crash,
    /// The run's tools failed and nothing useful was found.
    Tools,
    /// The run's log could not be continued (it has no start).
    Log,
}

impl RunOutcome {
    pub fn status(&self) -> RunStatus {
        match self {
            RunOutcome::Answered => RunStatus::Answered,
            RunOutcome::Partial { .. } => RunStatus::Partial,
            RunOutcome::Stopped { .. } => RunStatus::Stopped,
            RunOutcome::Failed { .. } => RunStatus::Failed,
        }
    }
}

/// What happens to a text the guard checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// Nothing suspicious.
    Allow,
    /// Flagged, shown to the user with its reasons, and the run goes on.
    Warn,
    /// Withheld from the model: the context gets a notice in its place.
    Quarantine,
    /// The run stops before any model call, with the reasons.
    Block,
}

/// Which of a run's bounds ([`super::Limits`]) was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub enum Limit {
    #[serde(rename = "steps")]
    Steps,
    #[serde(rename = "tool calls")]
    ToolCalls,
    #[serde(rename = "tokens")]
    Tokens,
    #[serde(rename = "wall time (ms)")]
    WallTime,
    #[serde(rename = "replans")]
    Replans,
}

impl Limit {
    /// How the limit reads in a sentence ("the run reached its steps limit").
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Steps => "steps",
            Limit::ToolCalls => "tool calls",
            Limit::Tokens => "tokens",
            Limit::WallTime => "wall time (ms)",
            Limit::Replans => "replans",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's status as listed: `running` until its `RunFinished` is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Paused until the user approves a call or answers a question; survives a restart.
    AwaitingUser,
    /// Keel stopped while it was in flight; `keel runs resume` (or the desktop) continues it.
    Interrupted,
    Answered,
    Partial,
    Stopped,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::AwaitingUser => "awaiting_user",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Answered => "answered",
            RunStatus::Partial => "partial",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "awaiting_user" => RunStatus::AwaitingUser,
            "interrupted" => RunStatus::Interrupted,
            "answered" => RunStatus::Answered,
            "partial" => RunStatus::Partial,
            "stopped" => RunStatus::Stopped,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

/// An event as committed: its run, its position in the run's log and when it was committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct StoredEvent {
    #[ts(type = "number")]
    pub run_id: i64,
    pub seq: u32,
    #[ts(type = "number")]
    pub at_ms: i64,
    pub event: RunEvent,
}
