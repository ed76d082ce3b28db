//! `RunState`: what a run is, computed as a pure fold of its events.
//!
//! Nothing here is stored: the event log is the truth and the state is derived from it, so a run read back from
//! SQLite, replayed, or resumed has exactly the state it had when its last event was committed.

use serde::Serialize;

use super::events::{RunEvent, RunOutcome, StoredEvent};

/// The state of one run after some prefix of its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunState {
    /// The number of model calls made so far.
    pub step: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The text of the last model reply.
    pub last_reply: Option<String>,
    /// Set once the run has finished.
    pub outcome: Option<RunOutcome>,
    /// True between a `ModelCalled` and its `ModelReplied`: the run was inside a model call.
    pub awaiting_model: bool,
    /// Memory items this run saved, and the ones its context used.
    pub memories_saved: Vec<i64>,
    pub memories_used: Vec<i64>,
}

impl RunState {
    /// Folds one event into the state.
    pub fn apply(mut self, event: &RunEvent) -> RunState {
        match event {
            RunEvent::RunStarted { .. } | RunEvent::MemoryUnavailable { .. } => {}
            RunEvent::MemorySaved { item_id, .. } => self.memories_saved.push(*item_id),
            RunEvent::MemoryRetrieved { candidates, .. } => {
                self.memories_used = candidates
                    .iter()
                    .filter(|c| c.decision == crate::memory::retrieve::CandidateDecision::Kept)
                    .map(|c| c.item_id)
                    .collect();
            }
            RunEvent::ModelCalled { step, .. } => {
                self.step = *step;
                self.awaiting_model = true;
            }
            RunEvent::ModelReplied { text, prompt_tokens, completion_tokens, .. } => {
                self.prompt_tokens += prompt_tokens;
                self.completion_tokens += completion_tokens;
                self.last_reply = Some(text.clone());
                self.awaiting_model = false;
            }
            RunEvent::RunFinished { outcome, .. } => {
                self.outcome = Some(outcome.clone());
                self.awaiting_model = false;
            }
        }
        self
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> RunState {
        events.into_iter().fold(RunState::default(), |s, e| s.apply(&e.event))
    }
}
