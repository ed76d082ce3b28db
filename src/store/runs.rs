//! Runs and their append-only event logs.
//!
//! `append_event` is the only way a run changes: it commits the event and the run's listed projection (status,
//! token totals) in one transaction, and only then returns the [`StoredEvent`] that the caller may publish.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::{now_ms, Store, StoreError};

/// A run as listed. `status` is a projection of its events, maintained by [`Store::append_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub conversation_id: i64,
    pub status: String,
    pub input: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// One committed event: its kind, payload schema version and JSON payload, opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: u32,
    pub at_ms: i64,
    pub kind: String,
    pub version: u32,
    pub payload: String,
}

/// How an event changes the run's listed projection, committed in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection<'a> {
    Unchanged,
    /// No change to the listing, but flushed to disk before the commit returns, like a pause or an end: the
    /// call of a tool whose effect is not safe to repeat, so that after a power cut Keel still knows the call
    /// was made (and asks before making it again) instead of forgetting it and running it twice.
    Durable,
    AddTokens { prompt: u32, completion: u32 },
    /// The run's status changes without it ending (paused for the user, interrupted, running again).
    Status(&'a str),
    /// The user replied to the run's question: the run goes on, and the reply joins the conversation as the
    /// user's message (linked to the run) in the same transaction.
    Reply { text: &'a str },
    /// The run ends with this status; `answer`, when given, joins the run's conversation as the assistant's
    /// message in the same transaction, so a finished run and its answer are never seen one without the other.
    Finish { status: &'a str, answer: Option<&'a str> },
}

const RUN_SQL: &str =
    "SELECT id, conversation_id, status, input, started_ms, finished_ms, prompt_tokens, completion_tokens FROM runs";

fn run_row(row: &Row) -> rusqlite::Result<RunRow> {
    from_row!(row, RunRow { id, conversation_id, status, input, started_ms, finished_ms, prompt_tokens, completion_tokens })
}

impl Store {
    /// Commits one event to a run's log, with its effect on the run's projection, and returns `(seq, at_ms)`.
    pub fn append_event(
        &self,
        run_id: i64,
        kind: &str,
        version: u32,
        payload: &str,
        projection: Projection<'_>,
    ) -> Result<(u32, i64), StoreError> {
        let at_ms = now_ms();
        let mut conn = self.conn();
        // A step commits to the WAL without a flush and never runs a checkpoint (which flushes the WAL and the
        // database, milliseconds on a laptop disk); a pause or an end flushes everything before it and lets the
        // WAL be checkpointed, so that cost is paid once per run, at a point the user waits at anyway.
        let step = matches!(projection, Projection::Unchanged | Projection::AddTokens { .. }) && !self.fsync_every_event();
        if step {
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0").map_err(|e| self.err(e))?;
        }
        let result = self.append_in(&mut conn, run_id, kind, version, payload, projection, at_ms);
        if step {
            conn.execute_batch(super::DURABLE_PRAGMAS).map_err(|e| self.err(e))?;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn append_in(
        &self,
        conn: &mut rusqlite::Connection,
        run_id: i64,
        kind: &str,
        version: u32,
        payload: &str,
        projection: Projection<'_>,
        at_ms: i64,
    ) -> Result<(u32, i64), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let seq: u32 = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE run_id = ?1")
            .and_then(|mut s| s.query_row([run_id], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        tx.prepare_cached("INSERT INTO run_events (run_id, seq, at_ms, kind, version, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut s| s.execute(params![run_id, seq, at_ms, kind, version, payload]))
            .map_err(|e| self.err(e))?;
        match projection {
            Projection::Unchanged | Projection::Durable => {}
            Projection::AddTokens { prompt, completion } => {
                tx.prepare_cached(
                    "UPDATE runs SET prompt_tokens = prompt_tokens + ?2, completion_tokens = completion_tokens + ?3
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![run_id, prompt, completion]))
                .map_err(|e| self.err(e))?;
            }
            Projection::Status(status) => {
                tx.execute("UPDATE runs SET status = ?2 WHERE id = ?1", params![run_id, status]).map_err(|e| self.err(e))?;
            }
            Projection::Reply { text } => {
                tx.execute("UPDATE runs SET status = 'running' WHERE id = ?1", params![run_id]).map_err(|e| self.err(e))?;
                let conversation_id: i64 = tx
                    .query_row("SELECT conversation_id FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                super::chat::insert_message(&tx, conversation_id, "user", text, Some(run_id), at_ms).map_err(|e| self.err(e))?;
            }
            Projection::Finish { status, answer } => {
                tx.execute("UPDATE runs SET status = ?2, finished_ms = ?3 WHERE id = ?1", params![run_id, status, at_ms])
                    .map_err(|e| self.err(e))?;
                if let Some(answer) = answer {
                    let conversation_id: i64 = tx
                        .query_row("SELECT conversation_id FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
                        .map_err(|e| self.err(e))?;
                    super::chat::insert_message(&tx, conversation_id, "assistant", answer, Some(run_id), at_ms)
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok((seq, at_ms))
    }

    /// The most recent runs first.
    pub fn list_runs(&self, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{RUN_SQL} ORDER BY id DESC LIMIT ?1")).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([limit], run_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Runs still marked `running`: at start, those were in flight when the last process stopped.
    pub fn unfinished_runs(&self) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM runs WHERE status = 'running' ORDER BY id").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Runs a stopped process left in flight (`running`) or that wait for the user, oldest first.
    pub fn runs_with_status(&self, status: &str) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM runs WHERE status = ?1 ORDER BY id").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([status], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn run_started_ms(&self, id: i64) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.query_row("SELECT started_ms FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound { what: "run", id })
    }

    /// The answer a finished run added to its conversation, if any.
    pub fn run_answer(&self, id: i64) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT content FROM messages WHERE run_id = ?1 AND role = 'assistant' ORDER BY id DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// A run and its whole event log, in order.
    pub fn run(&self, id: i64) -> Result<(RunRow, Vec<EventRow>), StoreError> {
        let conn = self.conn();
        let run = conn
            .query_row(&format!("{RUN_SQL} WHERE id = ?1"), [id], run_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound { what: "run", id })?;
        let mut stmt = conn
            .prepare("SELECT seq, at_ms, kind, version, payload FROM run_events WHERE run_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(EventRow { seq: r.get(0)?, at_ms: r.get(1)?, kind: r.get(2)?, version: r.get(3)?, payload: r.get(4)? })
            })
            .map_err(|e| self.err(e))?;
        let events = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        Ok((run, events))
    }
}
