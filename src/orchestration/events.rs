//! The run's event log: every step of a run is one [`RunEvent`], committed to SQLite before anyone acts on it.
//!
//! These are boundary types: they are stored (as versioned JSON), printed by `keel runs show --json` and sent to
//! the UI, whose TypeScript types are generated from them. Adding a variant makes the compiler show every place
//! that must decide what to do with it.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::llm::{GenerationSettings, StopReason};

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
        backend: String,
        model: String,
        max_steps: u32,
        settings: GenerationSettings,
    },
    /// The orchestrator assembled a context window and called the model.
    ModelCalled {
        step: u32,
        backend: String,
        prompt_tokens: u32,
        /// How many chat messages went into the window.
        messages: u32,
        /// How many of the oldest messages were left out to fit the window (whole messages, never cut).
        dropped_messages: u32,
    },
    /// The model finished replying (or was stopped).
    ModelReplied {
        step: u32,
        text: String,
        prompt_tokens: u32,
        completion_tokens: u32,
        #[ts(type = "number")]
        duration_ms: u64,
        #[ts(type = "number | null")]
        ttft_ms: Option<u64>,
        stop: StopReason,
    },
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
            RunEvent::ModelCalled { .. } => "ModelCalled",
            RunEvent::ModelReplied { .. } => "ModelReplied",
            RunEvent::RunFinished { .. } => "RunFinished",
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
    /// The run failed; `error` says why.
    Failed { error: String },
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

/// A run's status as listed: `running` until its `RunFinished` is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Answered,
    Partial,
    Stopped,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Answered => "answered",
            RunStatus::Partial => "partial",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
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
