//! Trace views for the Inspector and `keel runs show`: a run's steps with the time each took.
//!
//! A step's duration is the event's own `duration_ms` where it has one (a model reply, the whole run), else the
//! time until the next event was committed. Nothing here is stored; it is computed from the event log.

use serde::Serialize;

use crate::orchestration::events::{RunEvent, StoredEvent};

/// One row of a run's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub seq: u32,
    pub kind: &'static str,
    pub at_ms: i64,
    pub duration_ms: Option<u64>,
    pub prompt_tokens: Option<u32>,
    /// Of the prompt tokens, those whose KV state was reused from an earlier call (model replies only).
    pub cached_prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

pub fn timeline(events: &[StoredEvent]) -> Vec<StepRow> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let gap = events.get(i + 1).map(|next| (next.at_ms - e.at_ms).max(0) as u64);
            let (duration_ms, prompt_tokens, completion_tokens) = match &e.event {
                RunEvent::RunStarted { .. } | RunEvent::MemorySaved { .. } | RunEvent::MemoryUnavailable { .. } => {
                    (gap, None, None)
                }
                RunEvent::MemoryRetrieved { duration_ms, tokens_used, .. } => (Some(*duration_ms), Some(*tokens_used), None),
                RunEvent::ModelCalled { prompt_tokens, .. } => (gap, Some(*prompt_tokens), None),
                RunEvent::ModelReplied { duration_ms, prompt_tokens, completion_tokens, .. } => {
                    (Some(*duration_ms), Some(*prompt_tokens), Some(*completion_tokens))
                }
                RunEvent::RunFinished { duration_ms, prompt_tokens, completion_tokens, .. } => {
                    (Some(*duration_ms), Some(*prompt_tokens), Some(*completion_tokens))
                }
                RunEvent::ToolReturned { duration_ms, .. } => (Some(*duration_ms), None, None),
                // The rest are decisions, not work: their time is the gap to the next event.
                _ => (gap, None, None),
            };
            let cached_prompt_tokens = match &e.event {
                RunEvent::ModelReplied { cached_prompt_tokens, .. } => Some(*cached_prompt_tokens),
                _ => None,
            };
            StepRow { seq: e.seq, kind: e.event.kind(), at_ms: e.at_ms, duration_ms, prompt_tokens, cached_prompt_tokens, completion_tokens }
        })
        .collect()
}
