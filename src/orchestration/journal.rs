//! The typed face of what the store keeps: run event logs as [`RunEvent`]s, runs and conversations as the
//! boundary types the UI and the CLI's JSON show.
//!
//! The store sees events as opaque versioned JSON; this module is the one place that encodes and decodes them,
//! and decides how each event changes the run's listed projection.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::events::{RunEvent, RunStatus, StoredEvent, UserAnswer, EVENT_SCHEMA_VERSION};
use crate::llm::Role;
use crate::store::{ConversationSummary, MessageRow, Projection, RunRow, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RunSummary {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub conversation_id: i64,
    pub status: RunStatus,
    pub input: String,
    #[ts(type = "number")]
    pub started_ms: i64,
    #[ts(type = "number | null")]
    pub finished_ms: Option<i64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RunDetail {
    pub run: RunSummary,
    pub events: Vec<StoredEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Message {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub conversation_id: i64,
    pub role: Role,
    pub content: String,
    /// The run that produced an assistant message, or that a user message started.
    #[ts(type = "number | null")]
    pub run_id: Option<i64>,
    /// How that run ended (or `running`), so a reopened conversation shows a stopped or partial answer as such.
    pub run_status: Option<RunStatus>,
    #[ts(type = "number")]
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ConversationDetail {
    pub conversation: ConversationSummary,
    pub messages: Vec<Message>,
}

/// An event as the store keeps it: `(kind, schema version, JSON payload)`.
pub fn encode(event: &RunEvent) -> (String, u32, String) {
    (event.kind().to_owned(), EVENT_SCHEMA_VERSION, serde_json::to_string(event).expect("run events serialise"))
}

/// Commits an event to its run's log and returns it as stored. A `RunFinished` with an answer also adds the
/// answer to the conversation, in the same transaction.
pub fn append(store: &Store, run_id: i64, event: &RunEvent) -> Result<StoredEvent, StoreError> {
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Decode(e.to_string()))?;
    let projection = match event {
        RunEvent::ModelReplied { prompt_tokens, completion_tokens, .. } => {
            Projection::AddTokens { prompt: *prompt_tokens, completion: *completion_tokens }
        }
        RunEvent::RunFinished { outcome, answer, .. } => {
            Projection::Finish { status: outcome.status().as_str(), answer: answer.as_deref() }
        }
        RunEvent::ApprovalRequested { .. } | RunEvent::UserAsked { .. } => Projection::Status(RunStatus::AwaitingUser.as_str()),
        RunEvent::RunInterrupted { .. } => Projection::Status(RunStatus::Interrupted.as_str()),
        // Committed before the tool runs: once its effect may have happened, a power cut must not lose the call.
        RunEvent::ToolCalled { effect, idempotent: false, .. } if effect.has_side_effects() => Projection::Durable,
        RunEvent::UserAnswered { answer: UserAnswer::Reply { text } } => Projection::Reply { text },
        RunEvent::UserAnswered { .. } | RunEvent::RunResumed { .. } => Projection::Status(RunStatus::Running.as_str()),
        RunEvent::RunStarted { .. }
        | RunEvent::ModelCalled { .. }
        | RunEvent::MemorySaved { .. }
        | RunEvent::MemoryRetrieved { .. }
        | RunEvent::InputChecked { .. }
        | RunEvent::MemoryUnavailable { .. }
        | RunEvent::ActionParsed { .. }
        | RunEvent::ActionRejected { .. }
        | RunEvent::PolicyChecked { .. }
        | RunEvent::ToolCalled { .. }
        | RunEvent::ToolReturned { .. }
        | RunEvent::RetryScheduled { .. }
        | RunEvent::ErrorReported { .. }
        | RunEvent::AlternativeChosen { .. }
        | RunEvent::LoopDetected { .. }
        | RunEvent::Verified { .. }
        | RunEvent::Routed { .. }
        | RunEvent::LimitReached { .. }
        | RunEvent::RunCancelled { .. }
        | RunEvent::OutcomeUnknown { .. } => Projection::Unchanged,
    };
    let (seq, at_ms) = store.append_event(run_id, event.kind(), EVENT_SCHEMA_VERSION, &payload, projection)?;
    Ok(StoredEvent { run_id, seq, at_ms, event: event.clone() })
}

fn summary(row: RunRow) -> RunSummary {
    RunSummary {
        id: row.id,
        conversation_id: row.conversation_id,
        status: RunStatus::parse(&row.status).unwrap_or(RunStatus::Failed),
        input: row.input,
        started_ms: row.started_ms,
        finished_ms: row.finished_ms,
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
    }
}

/// A run with its decoded event log.
pub fn load(store: &Store, run_id: i64) -> Result<RunDetail, StoreError> {
    let (row, rows) = store.run(run_id)?;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        if r.version > EVENT_SCHEMA_VERSION {
            return Err(StoreError::Decode(format!(
                "run {run_id} event {} has schema version {}, newer than this Keel's {EVENT_SCHEMA_VERSION}",
                r.seq, r.version
            )));
        }
        let event = serde_json::from_str(&r.payload)
            .map_err(|e| StoreError::Decode(format!("run {run_id} event {} ({}): {e}", r.seq, r.kind)))?;
        events.push(StoredEvent { run_id, seq: r.seq, at_ms: r.at_ms, event });
    }
    Ok(RunDetail { run: summary(row), events })
}

pub fn list(store: &Store, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
    Ok(store.list_runs(limit)?.into_iter().map(summary).collect())
}

fn message(row: MessageRow) -> Message {
    Message {
        id: row.id,
        conversation_id: row.conversation_id,
        role: Role::parse(&row.role).unwrap_or(Role::User),
        content: row.content,
        run_id: row.run_id,
        run_status: row.run_status.as_deref().and_then(RunStatus::parse),
        created_ms: row.created_ms,
    }
}

pub fn conversation(store: &Store, id: i64) -> Result<ConversationDetail, StoreError> {
    let (conversation, rows) = store.conversation(id)?;
    Ok(ConversationDetail { conversation, messages: rows.into_iter().map(message).collect() })
}
