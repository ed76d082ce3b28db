//! The orchestration layer, Keel's control plane: it runs one turn as an explicit, persisted sequence of events.
//!
//! It composes the layers below it (interface-checked input, an `llm` backend, the `store`) and owns no state of
//! its own between calls: a run's state is the fold of its event log ([`state::RunState`]). Every event is
//! committed before it is published to the caller's observer (the UI or the CLI).

pub mod action;
pub mod context;
pub mod events;
pub mod journal;
pub mod lifecycle;
pub mod policy;
pub mod recall;
pub mod routed;
pub mod runner;
pub mod state;
pub mod verify;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::interface::intent::Intent;
use crate::shared::backoff::RetryPolicy;
use events::{RunOutcome, StoredEvent};

/// Bounds on one run, all recorded in its `RunStarted`. Exhaustion ends the run as `Partial` or `Stopped` with
/// what it found, never with an invented answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Limits {
    /// The most model calls one run may make.
    pub max_steps: u32,
    /// The most tool call attempts (retries included).
    pub max_tool_calls: u32,
    /// The most prompt + completion tokens over all model calls.
    pub max_tokens: u32,
    /// The most wall-clock time the run may take while active (time spent waiting for the user excluded).
    #[ts(type = "number")]
    pub max_wall_ms: u64,
    /// No tool call may take longer than this, whatever its own timeout.
    #[ts(type = "number")]
    pub tool_timeout_ms: u64,
    /// Plan-then-execute: how many times a failed plan may be replaced.
    pub max_replans: u32,
    /// Loop detection: how many times the model may ask for a call it already made (same tool, same arguments)
    /// before the run stops.
    pub max_repeats: u32,
    pub retry: RetryPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 8,
            max_tool_calls: 12,
            max_tokens: 32_768,
            max_wall_ms: 300_000,
            tool_timeout_ms: 30_000,
            max_replans: 2,
            max_repeats: 1,
            retry: RetryPolicy::default(),
        }
    }
}

/// How a run works. Chat is a single reply; ReAct alternates model steps and tool calls; plan-then-execute has
/// the model write a plan that the runner carries out step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
    Chat,
    React,
    Plan,
}

impl RunMode {
    pub fn uses_tools(self) -> bool {
        self != RunMode::Chat
    }

    /// The mode for a message whose mode the user did not choose: a task that needs tools gets ReAct, anything
    /// else is chat.
    pub fn for_intent(intent: Intent) -> RunMode {
        if intent == Intent::Task {
            RunMode::React
        } else {
            RunMode::Chat
        }
    }
}

/// What the caller hears during a turn, in order: `started`, then `token`s and committed `step`s, then
/// `finished`. A `step` is published only after its event is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    Started {
        #[ts(type = "number")]
        conversation_id: i64,
        #[ts(type = "number")]
        run_id: i64,
    },
    Token { text: String },
    Step { event: StoredEvent },
    /// The run is paused until the user answers (`App::answer_run`); it survives a restart.
    Paused { request: UserRequest },
    Finished { result: TurnResult },
}

/// What a paused run is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserRequest {
    /// Approve or deny this exact call.
    Approval {
        #[ts(type = "number")]
        run_id: i64,
        call_id: String,
        tool: String,
        #[ts(type = "unknown")]
        arguments: serde_json::Value,
        effect: crate::tools::Effect,
        reason: String,
    },
    /// Answer this question.
    Question {
        #[ts(type = "number")]
        run_id: i64,
        question: String,
    },
}

/// The end of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TurnResult {
    #[ts(type = "number")]
    pub conversation_id: i64,
    #[ts(type = "number")]
    pub run_id: i64,
    /// What the user was shown (possibly partial; empty when nothing was produced).
    pub answer: String,
    /// How the run ended; `None` while it waits for the user.
    pub outcome: Option<RunOutcome>,
    /// What the run waits for, when it is paused.
    pub waiting: Option<UserRequest>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[ts(type = "number")]
    pub duration_ms: u64,
    #[ts(type = "number | null")]
    pub ttft_ms: Option<u64>,
}
