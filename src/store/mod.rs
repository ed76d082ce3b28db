//! The SQLite store: the one source of truth for conversations, messages, runs and their event logs.
//!
//! One file (`keel.sqlite3` in the data dir) in WAL mode. Writes are `synchronous = FULL` (flushed to disk
//! before the commit returns), except a run's step events, which commit with `synchronous = NORMAL`: committed
//! to the WAL before anyone hears of them, so they survive a crash or kill of the process, and flushed by the
//! next `FULL` commit — the run's pause, its end, a call that is not safe to repeat ([`Projection::Durable`]),
//! or any other write. Step events never run a WAL checkpoint either: the next durable commit does, when the
//! WAL has grown past SQLite's default 1,000 pages. A power cut mid-run can lose the run's latest steps (the run
//! then resumes from the ones that remain); it cannot lose a finished run, an answer, a memory or a call whose
//! effect may have happened, nor corrupt the file (ARCHITECTURE.md, "Durability", is the whole contract, and
//! `tests/integration/power_loss.rs` checks it). This keeps the orchestrator's per-step overhead well under its 2 ms budget
//! (`keel bench orchestration` measures both modes side by side). Write transactions are `IMMEDIATE`: they take the write lock
//! before reading, so two Keel processes on one data dir wait for each other (busy timeout) instead of failing
//! with a stale snapshot. Migrations are numbered by `PRAGMA user_version`. All writes go
//! through the one connection held here; reads share it (a later issue may add read connections).
//! Memory items live here too (`memory.rs`); their derived indexes live in the `memory` layer.

/// A struct from a row whose columns are its fields in the order named: `from_row!(row, RunRow { id, status })`
/// reads column 0 into `id` and column 1 into `status`.
macro_rules! from_row {
    ($row:expr, $ty:ident { $($field:ident),* $(,)? }) => {{
        let mut column = 0..;
        Ok($ty { $($field: $row.get(column.next().unwrap_or_default())?),* })
    }};
}

mod backends;
mod chat;
mod memory;
mod runs;

/// How every write but a run's step events commits: flushed before the commit returns, and the WAL
/// checkpointed into the database once it passes 1,000 pages (SQLite's default).
const DURABLE_PRAGMAS: &str = "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000";

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

pub use backends::BackendRow;
pub use chat::{ConversationSummary, MessageRow};
pub use memory::{
    content_hash, decode_vector, encode_vector, DocumentInsert, ImportedDocument, MemoryItem, MemoryKind, MemoryPage,
    MemoryQuery, NewItem, DocumentLink, StoredVector, Unembedded,
};
pub use runs::{EventRow, Projection, RunRow};

/// The schema, one migration per entry; entry `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: conversations, messages, runs and the run event log.
    "CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        -- A projection of the run's events, kept in the same transaction as the event that changes it.
        status TEXT NOT NULL,
        input TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE run_events (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        version INTEGER NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE INDEX runs_by_conversation ON runs(conversation_id, id);
    CREATE INDEX runs_by_status ON runs(status);",
    // 2: memory. Items are the truth; the tantivy index and the vector matrix are derived from them.
    // `generation` (in memory_meta) counts every change to memory_items; each item keeps the generation of its
    // last change, so a derived index knows what it has missed.
    "CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        chunks INTEGER NOT NULL,
        imported_ms INTEGER NOT NULL
    );
    CREATE TABLE memory_items (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('fact', 'preference', 'note', 'episode', 'document_chunk')),
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        provenance TEXT NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        deleted_ms INTEGER,
        document_id INTEGER REFERENCES documents(id),
        chunk_index INTEGER,
        content_hash TEXT NOT NULL,
        -- Little-endian f32, L2-normalised; NULL until computed.
        embedding BLOB,
        embedding_model TEXT,
        generation INTEGER NOT NULL
    );
    CREATE TABLE memory_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO memory_meta (key, value) VALUES ('generation', 0);
    CREATE TABLE memory_uses (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        item_id INTEGER NOT NULL REFERENCES memory_items(id),
        PRIMARY KEY (run_id, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX memory_by_generation ON memory_items(generation);
    -- The Memory view's order (pinned first, newest first), so a page deep in 100,000 items needs no sort.
    CREATE INDEX memory_by_pin_order ON memory_items(pinned, id);
    CREATE INDEX memory_by_kind ON memory_items(kind, id);
    CREATE INDEX memory_by_source ON memory_items(source, id);
    CREATE INDEX memory_by_hash ON memory_items(content_hash);
    CREATE INDEX memory_uses_by_item ON memory_uses(item_id, run_id);",
    // 3: remote backend profiles (no secrets: keys live in the OS keyring) and small app settings.
    "CREATE TABLE backends (
        name TEXT PRIMARY KEY,
        base_url TEXT NOT NULL,
        model TEXT NOT NULL,
        timeout_secs INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        context_window INTEGER NOT NULL,
        -- JSON array of backend names tried in order when this one fails.
        fallback TEXT NOT NULL DEFAULT '[]',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 4: the backend a conversation's last turn asked for (NULL: the default one), so a reopened chat keeps it.
    "ALTER TABLE conversations ADD COLUMN backend TEXT;",
];

/// Why the store failed. The variants are what a caller can do something about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data dir {path} is not writable: {reason}")]
    ReadOnly { path: PathBuf, reason: String },
    #[error("the disk holding {path} is full; nothing after the last commit was saved")]
    DiskFull { path: PathBuf },
    /// The OS failed a read, write or flush (a failing disk, a removed drive, a network mount gone).
    #[error("the disk holding {path} failed to read or write it (an I/O error); nothing after the last commit was saved")]
    Io { path: PathBuf },
    #[error("{path} is not a Keel database or is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} was written by a newer Keel (schema {found}, this build knows up to {known})")]
    TooNew { path: PathBuf, found: u32, known: u32 },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("stored data could not be read: {0}")]
    Decode(String),
    #[error("database error on {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Flush every run event to disk (`synchronous = FULL`) instead of only pauses and ends; for benchmarks.
    fsync_every_event: std::sync::atomic::AtomicBool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Flush every run event (`true`) or only a run's pauses and end (`false`, the default).
    pub fn set_fsync_every_event(&self, on: bool) {
        self.fsync_every_event.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn fsync_every_event(&self) -> bool {
        self.fsync_every_event.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|e| classify(path, e))?;
        let store = Store { path: path.to_owned(), conn: Mutex::new(conn), fsync_every_event: Default::default() };
        // A newer Keel's database is refused before anything is written to it: switching to WAL rewrites the
        // header, which that Keel would then find changed.
        store.check_version()?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| self.err(e))?;
        // `journal_mode` returns a row; WAL is refused on a read-only file, which is reported as such.
        let mode: String =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::ReadOnly { path: self.path.clone(), reason: format!("journal mode stayed {mode}") });
        }
        conn.execute_batch(DURABLE_PRAGMAS).and_then(|_| conn.execute_batch("PRAGMA foreign_keys = ON;")).map_err(|e| self.err(e))
    }

    /// Reads the schema version (reading writes nothing) and refuses one newer than this Keel knows.
    fn check_version(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| self.err(e))?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| classify(&self.path, e))?;
        let known = MIGRATIONS.len() as u32;
        if version > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, known });
        }
        Ok(())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| classify(&self.path, e))?;
        let known = MIGRATIONS.len() as u32;
        if version > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(&self.path, e))?;
            tx.execute_batch(sql).map_err(|e| classify(&self.path, e))?;
            tx.pragma_update(None, "user_version", i as u32 + 1).map_err(|e| classify(&self.path, e))?;
            tx.commit().map_err(|e| classify(&self.path, e))?;
        }
        Ok(())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll back), so the
        // connection is still good.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        classify(&self.path, e)
    }
}

/// Turns an SQLite error into the decision it calls for.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    if let rusqlite::Error::SqliteFailure(f, ref msg) = e {
        let reason = msg.clone().unwrap_or_else(|| f.to_string());
        match f.code {
            ErrorCode::DiskFull => return StoreError::DiskFull { path },
            ErrorCode::SystemIoFailure => return StoreError::Io { path },
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                return StoreError::ReadOnly { path, reason }
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => return StoreError::Corrupt { path, reason },
            _ => {}
        }
    }
    StoreError::Sqlite { path, source: e }
}
