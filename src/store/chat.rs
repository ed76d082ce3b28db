//! Conversations and their messages.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ConversationSummary {
    #[ts(type = "number")]
    pub id: i64,
    pub title: String,
    #[ts(type = "number")]
    pub created_ms: i64,
    #[ts(type = "number")]
    pub updated_ms: i64,
    pub message_count: u32,
    /// The backend profile its last turn asked for; `None`: the default backend.
    pub backend: Option<String>,
}

/// A stored message. `role` is `system`, `user` or `assistant` (a CHECK constraint holds it to those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub role: String,
    pub content: String,
    /// The run that produced an assistant message, or that a user message started.
    pub run_id: Option<i64>,
    /// The status of that run (`answered`, `stopped`, …), so a reopened conversation still shows how it ended.
    pub run_status: Option<String>,
    pub created_ms: i64,
}

/// A conversation's title: the start of its first message, on one line.
fn title_from(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_CHARS {
        line
    } else {
        let cut: String = line.chars().take(MAX_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

const SUMMARY_SQL: &str = "SELECT c.id, c.title, c.created_ms, c.updated_ms,
        (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id), c.backend
    FROM conversations c";

fn summary(row: &Row) -> rusqlite::Result<ConversationSummary> {
    from_row!(row, ConversationSummary { id, title, created_ms, updated_ms, message_count, backend })
}

fn message(row: &Row) -> rusqlite::Result<MessageRow> {
    from_row!(row, MessageRow { id, conversation_id, role, content, run_id, run_status, created_ms })
}

/// Inserts a message and touches its conversation, inside the caller's transaction.
pub(super) fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    conversation_id: i64,
    role: &str,
    content: &str,
    run_id: Option<i64>,
    now: i64,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO messages (conversation_id, role, content, run_id, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![conversation_id, role, content, run_id, now],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute("UPDATE conversations SET updated_ms = ?2 WHERE id = ?1", params![conversation_id, now])?;
    Ok(id)
}

impl Store {
    /// Starts a turn in one transaction: the conversation (created, titled after the message, when
    /// `conversation_id` is `None`), a run in `running` state, and the user's message linked to it. Returns
    /// `(conversation_id, run_id)`. A crash can leave all of it or none of it.
    pub fn begin_turn(&self, conversation_id: Option<i64>, user_text: &str) -> Result<(i64, i64), StoreError> {
        self.begin_turn_with_event(conversation_id, user_text, None, &|_| None)
    }

    /// [`Store::begin_turn`], committing the run's first event in the same transaction: `first_event` gets the
    /// conversation id and returns `(kind, version, payload)`. A run is then never on disk without its start.
    /// `backend` is the profile the turn asked for (`None`: the default), kept as the conversation's.
    pub fn begin_turn_with_event(
        &self,
        conversation_id: Option<i64>,
        user_text: &str,
        backend: Option<&str>,
        first_event: &dyn Fn(i64) -> Option<(String, u32, String)>,
    ) -> Result<(i64, i64), StoreError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let conversation_id = match conversation_id {
            Some(id) => {
                let exists = tx
                    .query_row("SELECT 1 FROM conversations WHERE id = ?1", [id], |_| Ok(()))
                    .optional()
                    .map_err(|e| self.err(e))?;
                exists.ok_or(StoreError::NotFound { what: "conversation", id })?;
                tx.execute("UPDATE conversations SET backend = ?2 WHERE id = ?1", params![id, backend]).map_err(|e| self.err(e))?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO conversations (title, created_ms, updated_ms, backend) VALUES (?1, ?2, ?2, ?3)",
                    params![title_from(user_text), now, backend],
                )
                .map_err(|e| self.err(e))?;
                tx.last_insert_rowid()
            }
        };
        tx.execute(
            "INSERT INTO runs (conversation_id, status, input, started_ms) VALUES (?1, 'running', ?2, ?3)",
            params![conversation_id, user_text, now],
        )
        .map_err(|e| self.err(e))?;
        let run_id = tx.last_insert_rowid();
        insert_message(&tx, conversation_id, "user", user_text, Some(run_id), now).map_err(|e| self.err(e))?;
        if let Some((kind, version, payload)) = first_event(conversation_id) {
            tx.execute(
                "INSERT INTO run_events (run_id, seq, at_ms, kind, version, payload) VALUES (?1, 1, ?2, ?3, ?4, ?5)",
                params![run_id, now, kind, version, payload],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok((conversation_id, run_id))
    }

    /// Starts a fork of run `parent_run`: a new conversation holding copies of the parent's conversation up to
    /// and including the message that started the parent run (that copy starts the new run), all in one
    /// transaction. Returns the new conversation and run.
    /// `backend` is the profile the fork runs on (`None`: its parent conversation's).
    pub fn begin_fork(&self, parent_run: i64, user_text: &str, backend: Option<&str>) -> Result<(i64, i64), StoreError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let (parent_conversation, parent_backend): (i64, Option<String>) = tx
            .query_row(
                "SELECT r.conversation_id, c.backend FROM runs r JOIN conversations c ON c.id = r.conversation_id WHERE r.id = ?1",
                [parent_run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound { what: "run", id: parent_run })?;
        let rows: Vec<(i64, String, String, Option<i64>)> = {
            let mut stmt = tx
                .prepare("SELECT id, role, content, run_id FROM messages WHERE conversation_id = ?1 ORDER BY id")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([parent_conversation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let end = rows.iter().position(|(_, role, _, run)| role == "user" && *run == Some(parent_run)).map(|i| i + 1).unwrap_or(rows.len());
        tx.execute(
            "INSERT INTO conversations (title, created_ms, updated_ms, backend) VALUES (?1, ?2, ?2, ?3)",
            params![format!("Fork of run {parent_run}: {}", title_from(user_text)), now, backend.or(parent_backend.as_deref())],
        )
        .map_err(|e| self.err(e))?;
        let conversation_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO runs (conversation_id, status, input, started_ms) VALUES (?1, 'running', ?2, ?3)",
            params![conversation_id, user_text, now],
        )
        .map_err(|e| self.err(e))?;
        let run_id = tx.last_insert_rowid();
        for (i, (_, role, content, _)) in rows[..end].iter().enumerate() {
            let run = (i + 1 == end && role == "user").then_some(run_id);
            insert_message(&tx, conversation_id, role, content, run, now).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok((conversation_id, run_id))
    }

    /// Conversations, most recently active first.
    pub fn list_conversations(&self) -> Result<Vec<ConversationSummary>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SUMMARY_SQL} ORDER BY c.updated_ms DESC, c.id DESC")).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], summary).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn conversation(&self, id: i64) -> Result<(ConversationSummary, Vec<MessageRow>), StoreError> {
        let conn = self.conn();
        let conversation = conn
            .query_row(&format!("{SUMMARY_SQL} WHERE c.id = ?1"), [id], summary)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound { what: "conversation", id })?;
        let mut stmt = conn
            .prepare(
                "SELECT m.id, m.conversation_id, m.role, m.content, m.run_id, r.status, m.created_ms
                 FROM messages m LEFT JOIN runs r ON r.id = m.run_id
                 WHERE m.conversation_id = ?1 ORDER BY m.id",
            )
            .map_err(|e| self.err(e))?;
        let messages = stmt.query_map([id], message).map_err(|e| self.err(e))?.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        Ok((conversation, messages))
    }
}

#[cfg(test)]
mod tests {
    use super::title_from;

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(title_from("What is\nthe  capital?"), "What is the capital?");
        let t = title_from(&"word ".repeat(40));
        assert!(t.chars().count() <= 60 && t.ends_with('…'), "{t}");
    }
}
