//! The orchestration layer, Keel's control plane: it runs one turn as an explicit, persisted sequence of events.
//!
//! It composes the layers below it (interface-checked input, an `llm` backend, the `store`) and owns no state of
//! its own between calls: a run's state is the fold of its event log ([`state::RunState`]). Every event is
//! committed before it is published to the caller's observer (the UI or the CLI).

pub mod context;
pub mod events;
pub mod journal;
pub mod recall;
pub mod runner;
pub mod state;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use events::{RunOutcome, StoredEvent};

/// Bounds on one run. More join them (tool calls, tokens, wall time) with the tools layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most model calls one run may make.
    pub max_steps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_steps: 8 }
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
    Finished { result: TurnResult },
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
    pub outcome: RunOutcome,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[ts(type = "number")]
    pub duration_ms: u64,
    #[ts(type = "number | null")]
    pub ttft_ms: Option<u64>,
}
