//! The one typed error that crosses to the front ends (CLI JSON, the desktop UI).
//!
//! Each layer has its own `thiserror` enum whose variants are the decisions its caller must make; at the `App`
//! boundary they become an [`AppError`]: a stable machine-readable `kind`, a message that names the thing, and a
//! hint that names the fix. No secret ever goes into one.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What went wrong, for programs: the UI and scripts branch on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The user's input was refused (empty, too long, not UTF-8); nothing was stored.
    InvalidInput,
    /// A model file is absent; `keel models fetch` fixes it.
    ModelMissing,
    /// A model file is present but damaged (wrong size or checksum, unreadable GGUF).
    ModelCorrupt,
    /// Fetching models failed (pip missing, no package index, wrong wheel).
    ModelFetch,
    /// The data dir cannot be written.
    DataDirReadOnly,
    /// The disk is full; what was committed before is intact.
    DiskFull,
    /// The SQLite store failed in another way.
    Store,
    /// The language model backend failed while generating.
    Backend,
    /// The OS keyring (Secret Service) is missing, locked or failing; API keys are kept nowhere else.
    Keyring,
    /// The named conversation or run does not exist.
    NotFound,
    /// A tool call failed (`keel tools call`); the message carries the tool's error class.
    Tool,
    /// Anything else worth reporting as is.
    Internal,
}

/// The error every `App` method returns: kind, message and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, hint: Option<String>) -> Self {
        AppError { kind, message: message.into(), hint }
    }

    pub fn not_found(what: &str, id: i64) -> Self {
        AppError::new(
            ErrorKind::NotFound,
            format!("{what} {id} does not exist"),
            Some(format!("list them with `keel {what}s list`")),
        )
    }
}
