//! Each layer's error as the one [`AppError`] the front ends see: the layer's variants are the decisions, and
//! here each becomes a stable `kind`, its message and the fix.

use super::AppError;
use crate::error::ErrorKind;
use crate::interface::Rejected;
use crate::llm::local::LoadError;
use crate::llm::BackendError;
use crate::memory::MemoryError;
use crate::models::library::LibraryError;
use crate::models::{self, ModelError};
use crate::secrets::KeyringError;
use crate::shared::io::{is_disk_full, is_unwritable};
use crate::store::StoreError;

impl From<Rejected> for AppError {
    fn from(e: Rejected) -> Self {
        AppError::new(ErrorKind::InvalidInput, e.to_string(), Some(e.hint().into()))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        let (kind, hint) = match &e {
            StoreError::ReadOnly { .. } => {
                (ErrorKind::DataDirReadOnly, "make the data dir writable, or point KEEL_HOME at a writable folder")
            }
            StoreError::DiskFull { .. } => (ErrorKind::DiskFull, "free some disk space and try again"),
            StoreError::Io { .. } => {
                (ErrorKind::Store, "check the disk (the system log names the failing device) and try again; what was committed is intact")
            }
            StoreError::NotFound { what, id } => return AppError::not_found(what, *id),
            StoreError::Corrupt { .. } => {
                (ErrorKind::Store, "move the damaged keel.sqlite3 aside (keep it for recovery) and start Keel again")
            }
            StoreError::TooNew { .. } => (ErrorKind::Store, "use the newer Keel that wrote this data dir"),
            StoreError::Decode(_) | StoreError::Sqlite { .. } => (ErrorKind::Store, "report this with the message above"),
        };
        AppError::new(kind, e.to_string(), Some(hint.into()))
    }
}

impl From<ModelError> for AppError {
    fn from(e: ModelError) -> Self {
        if let ModelError::Io { path, source } = &e {
            if is_disk_full(source) {
                let folder = path.parent().unwrap_or(path);
                return AppError::new(
                    ErrorKind::DiskFull,
                    format!("the disk holding {} is full: {e}", folder.display()),
                    Some("free some disk space there (or point KEEL_MODELS_DIR at a disk with room) and run `keel models fetch` again; what was fetched and checked is kept".into()),
                );
            }
        }
        let kind = match &e {
            ModelError::Missing { .. } => ErrorKind::ModelMissing,
            ModelError::Io { source, .. } if is_disk_full(source) => ErrorKind::DiskFull,
            ModelError::Io { source, .. } if is_unwritable(source) => ErrorKind::DataDirReadOnly,
            ModelError::WrongSize { .. } | ModelError::WrongChecksum { .. } | ModelError::Io { .. } => {
                ErrorKind::ModelCorrupt
            }
            ModelError::Fetch(_)
            | ModelError::WheelChecksum { .. }
            | ModelError::WheelContents { .. }
            | ModelError::ManifestInvalid(_) => ErrorKind::ModelFetch,
        };
        AppError::new(kind, e.to_string(), Some(e.hint()))
    }
}

impl From<LibraryError> for AppError {
    fn from(e: LibraryError) -> Self {
        use LibraryError as E;
        let kind = match &e {
            E::Io { source, .. } if is_disk_full(source) => ErrorKind::DiskFull,
            E::Io { source, .. } if is_unwritable(source) => ErrorKind::DataDirReadOnly,
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            E::Io { .. } => ErrorKind::Internal,
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Damaged { .. } | E::Truncated { .. } => ErrorKind::ModelCorrupt,
            E::NotGguf { .. }
            | E::Unsupported { .. }
            | E::InvalidName { .. }
            | E::Exists { .. }
            | E::BuiltIn { .. }
            | E::InvalidUrl { .. }
            | E::InvalidChecksum { .. } => ErrorKind::InvalidInput,
            E::Http { .. } | E::Interrupted { .. } | E::Cancelled { .. } | E::ChecksumMismatch { .. } | E::Rejected { .. } => {
                ErrorKind::ModelFetch
            }
        };
        AppError::new(kind, e.to_string(), Some(e.hint()))
    }
}

impl From<LoadError> for AppError {
    fn from(e: LoadError) -> Self {
        AppError::new(ErrorKind::ModelCorrupt, e.to_string(), Some(models::FETCH_HINT.into()))
    }
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        AppError::new(ErrorKind::Backend, e.to_string(), e.hint())
    }
}

impl From<KeyringError> for AppError {
    fn from(e: KeyringError) -> Self {
        AppError::new(ErrorKind::Keyring, e.to_string(), Some(e.hint()))
    }
}

impl From<MemoryError> for AppError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::Store(s) => s.into(),
            MemoryError::Embed(e) => AppError::new(ErrorKind::ModelCorrupt, e.to_string(), Some(models::FETCH_HINT.into())),
            MemoryError::Index(e) if e.is_disk_full() => AppError::new(
                ErrorKind::DiskFull,
                e.to_string(),
                Some("free some disk space, then run `keel memory reindex`; the index is rebuilt from the database and nothing is lost".into()),
            ),
            MemoryError::Index(e) => AppError::new(
                ErrorKind::Store,
                e.to_string(),
                Some("run `keel memory reindex`; the index is rebuilt from the database and nothing is lost".into()),
            ),
            MemoryError::Invalid(m) => AppError::new(ErrorKind::InvalidInput, m, None),
        }
    }
}
