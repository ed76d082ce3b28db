//! The model library: the chat models Keel can run, built-in and user-added, and what each GGUF file holds.
//!
//! Built-in models come from the manifest and live in their own folders (`keel models fetch` puts them there).
//! User models live in `<models root>/user/`, one `.gguf` file each, next to a `<file>.sha256` sidecar (in
//! `sha256sum`'s format) written when the file was added or downloaded, and the same `.verified` stamp (size +
//! mtime) the built-in files use. Listing therefore hashes nothing: a file whose stamp still matches is verified,
//! one that changed since shows as unchecked until [`verify`] hashes it again.
//!
//! Every file is read through [`read_header`](crate::llm::local::read_header), the validation the loader itself runs
//! (magic, tensor table against the file size), and its architecture is checked against the loader's list, so a model
//! this module accepts is one `LocalModel::load` will not refuse for its format. A file that fails is listed apart with
//! the reason rather than hidden, and a file that is not GGUF at all is named for what it is (a zip, JSON, an HTML
//! page, a safetensors file…), because that is usually the mistake: a wrong link or the wrong format of the right
//! model.
//!
//! Downloads (`library/download.rs`) go through a `.partial` file that a later call resumes.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, VersionedMagic};
use candle_core::quantized::GgmlDType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use super::{is_unwritable, sha256_file, Manifest, ModelError, ModelDir};
use crate::llm::local::{read_header_from, LoadError, SUPPORTED_ARCHITECTURES};

mod download;

pub use download::{download, DownloadProgress};

/// The folder under the models root that holds the user's own models.
pub const USER_DIR: &str = "user";

/// What Keel knows of one GGUF model file, as the model list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ModelInfo {
    /// The file name, which is also the name `delete` takes.
    pub name: String,
    pub path: String,
    #[ts(type = "number")]
    pub size_bytes: u64,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: String,
    /// The weights' quantisation, e.g. `Q4_1`: the most common type, by element count, of the 2-D tensors
    /// (the weight matrices; norms and biases stay F32 in every quantisation), else `general.file_type`'s name.
    pub quantisation: String,
    /// `{architecture}.context_length`, in tokens.
    pub context_length: Option<u32>,
    /// The sum of the tensors' element counts.
    #[ts(type = "number | null")]
    pub parameters: Option<u64>,
    pub gguf_version: u32,
    pub checksum: ChecksumState,
    /// A model of the manifest (fetched by `keel models fetch`), not one the user added.
    pub builtin: bool,
    /// The sha256 the file is checked against: the manifest's pin, or the one recorded when the file was added.
    pub sha256: Option<String>,
    /// The model the `local` backend runs (set by the app, which knows the choice; false here).
    #[serde(default)]
    pub in_use: bool,
}

/// Whether a model file is known to be the bytes it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumState {
    /// The file hashed to its known sha256 and has not changed since (same size and mtime as then).
    Verified,
    /// The file's size or sha256 differs from the known one.
    Mismatch,
    /// No sha256 is known for the file (it was put into the folder by hand).
    Unpinned,
    /// A sha256 is known but the file changed since it was last hashed; [`verify`] checks it.
    Unchecked,
}

/// A model file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BrokenModel {
    pub name: String,
    pub path: String,
    /// What is wrong and the fix, in one line.
    pub error: String,
}

/// Every model file Keel knows: the usable ones, built-in first, and the ones that failed inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
    pub broken: Vec<BrokenModel>,
}

/// Why a model file could not be inspected, added, deleted or downloaded. Each names the file or URL; `hint`
/// names the fix. URLs are shown without their query string or credentials, which may hold access tokens.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a GGUF model file: {what}")]
    NotGguf { path: PathBuf, what: String },
    #[error("{path} is a damaged GGUF file: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path} is truncated: its tensors need {needed} bytes but the file has {actual}")]
    Truncated { path: PathBuf, needed: u64, actual: u64 },
    #[error("{path} is a `{architecture}` model; Keel's embedded backend runs only: {}", SUPPORTED_ARCHITECTURES.join(", "))]
    Unsupported { path: PathBuf, architecture: String },
    #[error("`{name}` cannot name a model file: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("a model named {name} already exists ({path})")]
    Exists { name: String, path: PathBuf },
    #[error("there is no user model named {name} in {dir}")]
    NotFound { name: String, dir: PathBuf },
    #[error("{name} is a built-in model")]
    BuiltIn { name: String },
    #[error("{url} cannot be downloaded: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("`{value}` is not a sha256: it must be 64 hexadecimal characters")]
    InvalidChecksum { value: String },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error(
        "downloading {url} stopped: {reason}; the {kept} bytes received so far are kept in {partial}, run the same download again to resume"
    )]
    Interrupted { url: String, reason: String, partial: PathBuf, kept: u64 },
    #[error(
        "downloading {url} was cancelled; the {kept} bytes received so far are kept in {partial}, run the same download again to resume"
    )]
    Cancelled { url: String, partial: PathBuf, kept: u64 },
    #[error("the file downloaded from {url} has sha256 {actual}, but {expected} was expected; it was removed")]
    ChecksumMismatch { url: String, expected: String, actual: String },
    #[error("the file downloaded from {url} was removed: {source}")]
    Rejected {
        url: String,
        #[source]
        source: Box<LibraryError>,
    },
}

impl LibraryError {
    /// The fix, in words for the user.
    pub fn hint(&self) -> String {
        match self {
            LibraryError::Io { source, .. } if is_unwritable(source) => {
                "make the models folder writable and free some space, or point KEEL_MODELS_DIR elsewhere".into()
            }
            LibraryError::Io { .. } => "check that the file exists and that Keel may read it".into(),
            LibraryError::NotGguf { .. } => "Keel runs GGUF files (llama.cpp's format): get the model's .gguf build, or convert it with llama.cpp's convert_hf_to_gguf.py".into(),
            LibraryError::Damaged { .. } | LibraryError::Truncated { .. } => {
                "the file is damaged or incomplete: download it again".into()
            }
            LibraryError::Unsupported { .. } => format!(
                "choose a GGUF model whose general.architecture is {}",
                SUPPORTED_ARCHITECTURES.join(" or ")
            ),
            LibraryError::InvalidName { .. } => "give a plain file name ending in .gguf, without folders".into(),
            LibraryError::Exists { .. } => "delete the existing model first, or give this one another name".into(),
            LibraryError::NotFound { .. } => "list the models to see their names".into(),
            LibraryError::BuiltIn { .. } => {
                "built-in models are fetched and verified by `keel models fetch` and cannot be deleted here".into()
            }
            LibraryError::InvalidUrl { .. } => "give the http:// or https:// address of a .gguf file".into(),
            LibraryError::InvalidChecksum { .. } => {
                "copy the sha256 from the model's page (64 hexadecimal characters), or leave it out".into()
            }
            LibraryError::Http { status, .. } => match *status {
                401 | 403 => "the server refused access: the file may need a login, or an access token in the URL",
                404 | 410 => "check the URL: on Hugging Face a file's download link has /resolve/ where its page has /blob/",
                429 | 500..=599 => "the server is busy or failing: try again later",
                _ => "check the URL",
            }
            .into(),
            LibraryError::Interrupted { .. } => {
                "check the network connection, then run the same download again to resume".into()
            }
            LibraryError::Cancelled { .. } => {
                "run the same download again to resume, or delete the model to drop the part downloaded".into()
            }
            LibraryError::ChecksumMismatch { .. } => {
                "check the sha256 against the model's page; the file was removed, so the next download starts over".into()
            }
            LibraryError::Rejected { source, .. } => source.hint(),
        }
    }
}

/// Reads a GGUF file's header, metadata and tensor table (no tensor data) and says what model it is.
///
/// The result knows nothing of checksums (`checksum` is `Unchecked`, `sha256` is `None`, `builtin` is false);
/// [`list`], [`add`] and [`download`] fill those in.
pub fn inspect(path: &Path) -> Result<ModelInfo, LibraryError> {
    let mut file = File::open(path).map_err(|source| LibraryError::Io { path: path.to_owned(), source })?;
    inspect_from(&mut file, path)
}

/// [`inspect`] of an open file (or any reader: the gguf fuzz target reads from memory); `path` names it.
pub(crate) fn inspect_from<R: Read + Seek>(file: &mut R, path: &Path) -> Result<ModelInfo, LibraryError> {
    let io = |source| LibraryError::Io { path: path.to_owned(), source };
    // The first bytes say what a file that is not GGUF is instead, which is a better error than a bad magic.
    let mut head = Vec::with_capacity(64);
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    (&mut *file).take(64).read_to_end(&mut head).map_err(io)?;
    if !head.starts_with(b"GGUF") {
        if let Some(what) = sniff(&head, size) {
            return Err(LibraryError::NotGguf { path: path.to_owned(), what });
        }
    }

    let (content, file_size) = read_header_from(file, path).map_err(|e| from_load_error(path, &head, e))?;
    let architecture =
        content.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().ok_or_else(|| {
            LibraryError::Damaged { path: path.to_owned(), reason: "it has no general.architecture".into() }
        })?;
    if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(LibraryError::Unsupported { path: path.to_owned(), architecture });
    }
    let context_length = content
        .metadata
        .get(&format!("{architecture}.context_length"))
        .and_then(|v| v.to_u64().ok())
        .and_then(|n| u32::try_from(n).ok());
    let parameters = (!content.tensor_infos.is_empty())
        .then(|| content.tensor_infos.values().map(|t| t.shape.elem_count() as u64).sum::<u64>());
    let gguf_version = match content.magic {
        VersionedMagic::GgufV1 => 1,
        VersionedMagic::GgufV2 => 2,
        VersionedMagic::GgufV3 => 3,
    };
    Ok(ModelInfo {
        name: file_name(path),
        path: path.display().to_string(),
        size_bytes: file_size,
        quantisation: quantisation(&content),
        architecture,
        context_length,
        parameters,
        gguf_version,
        checksum: ChecksumState::Unchecked,
        builtin: false,
        sha256: None,
        in_use: false,
    })
}

/// The built-in chat models of the manifest and every `*.gguf` in the user folder. Built-in files are checked
/// with [`ModelDir::verify`], which hashes only a file whose `.verified` stamp is stale; user files are not
/// hashed at all (their stamp decides between `Verified` and `Unchecked`).
pub fn list(store: &ModelDir, manifest: &Manifest) -> ModelList {
    let mut out = ModelList::default();
    for model in manifest.models.iter().filter(|m| m.role == "chat") {
        for file in model.files.iter().filter(|f| has_gguf_extension(&f.name)) {
            let path = store.path_of(model, file);
            let checksum = match store.verify(model, file, false, &mut |_, _| {}) {
                Ok(_) => ChecksumState::Verified,
                Err(ModelError::WrongSize { .. } | ModelError::WrongChecksum { .. }) => ChecksumState::Mismatch,
                Err(e) => {
                    out.broken.push(BrokenModel {
                        name: file.name.clone(),
                        path: path.display().to_string(),
                        error: format!("{e}; {}", e.hint()),
                    });
                    continue;
                }
            };
            match inspect(&path) {
                Ok(info) => {
                    out.models.push(ModelInfo { checksum, builtin: true, sha256: Some(file.sha256.clone()), ..info })
                }
                Err(e) => out.broken.push(broken(&path, &e)),
            }
        }
    }

    let dir = user_dir(store);
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| has_gguf_extension(n) && !n.starts_with('.'))
            .collect(),
        // No user folder yet: no user models.
        Err(_) => Vec::new(),
    };
    names.sort();
    for name in names {
        let path = dir.join(&name);
        match inspect(&path) {
            Ok(info) => {
                let sha256 = read_sidecar(&path);
                let checksum = match &sha256 {
                    None => ChecksumState::Unpinned,
                    Some(sha) if store.stamp_current(&path, sha) => ChecksumState::Verified,
                    Some(_) => ChecksumState::Unchecked,
                };
                out.models.push(ModelInfo { checksum, sha256, ..info });
            }
            Err(e) => out.broken.push(broken(&path, &e)),
        }
    }
    out
}

/// Copies a GGUF file from disk into the user folder, reporting `(bytes_copied, bytes_total)`.
///
/// The file is inspected first, so nothing is copied for a file Keel could not run. The copy keeps the source's
/// file name (with `.gguf` added when it has another extension, so that the list finds it), goes to a `.partial`
/// file renamed at the end, and is hashed on the way; the sha256 is recorded in the sidecar and the file stamped
/// as verified, so a later change to it shows.
pub fn add(store: &ModelDir, src: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<ModelInfo, LibraryError> {
    let source_name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| LibraryError::InvalidName {
        name: src.display().to_string(),
        reason: "it has no file name in UTF-8".into(),
    })?;
    let name = if has_gguf_extension(source_name) { source_name.to_owned() } else { format!("{source_name}.gguf") };
    check_name(&name)?;
    inspect(src)?;
    let (name, target, partial) = new_target(store, name)?;
    let copied = copy_hashing(src, &partial, on_progress).and_then(|sha| {
        // The copy is what gets stored: check it too, in case the source changed after it was inspected.
        inspect(&partial).map(|info| (sha, info))
    });
    let (sha256, info) = match copied {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    if target.exists() {
        let _ = fs::remove_file(&partial);
        return Err(LibraryError::Exists { name, path: target });
    }
    install(store, &partial, target, name, sha256, info)
}

/// The user model `name` when it is already there and hashes to `expected`: a download run again after it
/// finished (perhaps killed before it could say so) is done, not refused. Its sidecar is (re)written and the file
/// stamped as verified. `None` when there is no such file or it holds other bytes.
fn already_installed(store: &ModelDir, name: &str, expected: &str) -> Result<Option<ModelInfo>, LibraryError> {
    check_name(name)?;
    let target = user_dir(store).join(name);
    if !target.is_file() {
        return Ok(None);
    }
    let actual = file_sha256(&target, &mut |_, _| {})?;
    if actual != expected {
        return Ok(None);
    }
    let info = inspect(&target)?;
    if read_sidecar(&target).as_deref() != Some(expected) {
        write_sidecar(&target, expected)?;
    }
    store.mark_verified(&target, expected);
    let _ = fs::remove_file(with_suffix(&target, ".partial"));
    Ok(Some(ModelInfo { checksum: ChecksumState::Verified, builtin: false, sha256: Some(actual), ..info }))
}

/// Where a new model file goes in the user's folder, and the `.partial` file it is written to first; refused when
/// the name is not allowed or a file of that name is there.
fn new_target(store: &ModelDir, name: String) -> Result<(String, PathBuf, PathBuf), LibraryError> {
    check_name(&name)?;
    let dir = user_dir(store);
    fs::create_dir_all(&dir).map_err(|source| LibraryError::Io { path: dir.clone(), source })?;
    let target = dir.join(&name);
    if target.exists() {
        return Err(LibraryError::Exists { name, path: target });
    }
    let partial = with_suffix(&target, ".partial");
    Ok((name, target, partial))
}

/// Records a checked `.partial` file's sha256 beside its place, then moves it there. In that order, so that a
/// process killed in between leaves either a partial file that the same download finishes, or the model with its
/// sidecar: never a model whose sha256 is not recorded.
fn install(store: &ModelDir, partial: &Path, target: PathBuf, name: String, sha256: String, info: ModelInfo) -> Result<ModelInfo, LibraryError> {
    write_sidecar(&target, &sha256)?;
    fs::rename(partial, &target).map_err(|source| LibraryError::Io { path: target.clone(), source })?;
    store.mark_verified(&target, &sha256);
    Ok(ModelInfo { name, path: target.display().to_string(), checksum: ChecksumState::Verified, builtin: false, sha256: Some(sha256), ..info })
}

/// Deletes a user model: its file, sidecar and stamp, its saved KV prefix states, and the part of an unfinished
/// download of that name.
/// Built-in models are not deleted here: `keel models fetch` owns them.
pub fn delete(store: &ModelDir, manifest: &Manifest, name: &str) -> Result<(), LibraryError> {
    check_name(name)?;
    let dir = user_dir(store);
    let target = dir.join(name);
    let partial = with_suffix(&target, ".partial");
    if !target.is_file() && !partial.is_file() {
        let builtin = manifest.models.iter().flat_map(|m| &m.files).any(|f| f.name == name);
        return Err(if builtin {
            LibraryError::BuiltIn { name: name.to_owned() }
        } else {
            LibraryError::NotFound { name: name.to_owned(), dir }
        });
    }
    // The model file goes first: should a later removal fail, what is left is never a model without its checks.
    for path in [target.clone(), with_suffix(&target, ".sha256"), ModelDir::stamp_path(&target), partial] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LibraryError::Io { path, source }),
        }
    }
    // The engine's saved prefix states of that file (`llm::engine::saved`), derived and never needed without it.
    let _ = fs::remove_dir_all(with_suffix(&target, ".kv"));
    Ok(())
}

/// Hashes a user model again, reporting `(bytes_hashed, bytes_total)`, and compares it with the sha256 recorded
/// when it was added: `Verified` (and stamped) or `Mismatch`; `Unpinned` when none was recorded.
pub fn verify(
    store: &ModelDir,
    name: &str,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<ModelInfo, LibraryError> {
    check_name(name)?;
    let dir = user_dir(store);
    let path = dir.join(name);
    if !path.is_file() {
        return Err(LibraryError::NotFound { name: name.to_owned(), dir });
    }
    let info = inspect(&path)?;
    let Some(expected) = read_sidecar(&path) else {
        return Ok(ModelInfo { checksum: ChecksumState::Unpinned, ..info });
    };
    let actual = file_sha256(&path, on_progress)?;
    let checksum = if actual == expected {
        store.mark_verified(&path, &actual);
        ChecksumState::Verified
    } else {
        let _ = fs::remove_file(ModelDir::stamp_path(&path));
        ChecksumState::Mismatch
    };
    Ok(ModelInfo { checksum, sha256: Some(expected), ..info })
}

/// The sha256 of the file at `path`, a failure to read it named by its path.
fn file_sha256(path: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<String, LibraryError> {
    sha256_file(path, on_progress).map_err(|e| match e {
        ModelError::Io { path, source } => LibraryError::Io { path, source },
        other => LibraryError::Io { path: path.to_owned(), source: std::io::Error::other(other.to_string()) },
    })
}

/// The user models' folder.
pub fn user_dir(store: &ModelDir) -> PathBuf {
    store.root().join(USER_DIR)
}

/// Refuses a name that is not a plain `.gguf` file name: it is joined to the user folder, so a separator or a
/// `..` could reach outside it, and a leading dot would hide it.
fn check_name(name: &str) -> Result<(), LibraryError> {
    let refuse = |reason: &str| Err(LibraryError::InvalidName { name: name.to_owned(), reason: reason.to_owned() });
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.contains(['/', '\\']) {
        return refuse("it contains a path separator");
    }
    if name.contains("..") {
        return refuse("it contains `..`");
    }
    if name.starts_with('.') {
        return refuse("it starts with a dot");
    }
    if name.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    if name.len() > 255 {
        return refuse("it is longer than 255 bytes");
    }
    if !has_gguf_extension(name) {
        return refuse("it does not end in .gguf");
    }
    Ok(())
}

fn has_gguf_extension(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `path` with `suffix` appended to its file name (`a.gguf` → `a.gguf.partial`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sha256 recorded next to a user model, if there is a readable one.
fn read_sidecar(path: &Path) -> Option<String> {
    let text = fs::read_to_string(with_suffix(path, ".sha256")).ok()?;
    let sha = text.split_whitespace().next()?.to_ascii_lowercase();
    is_sha256(&sha).then_some(sha)
}

/// Records a user model's sha256 in `sha256sum`'s format, so `sha256sum -c` can check it too.
fn write_sidecar(path: &Path, sha256: &str) -> Result<(), LibraryError> {
    let sidecar = with_suffix(path, ".sha256");
    fs::write(&sidecar, format!("{sha256}  {}\n", file_name(path)))
        .map_err(|source| LibraryError::Io { path: sidecar, source })
}

fn broken(path: &Path, e: &LibraryError) -> BrokenModel {
    BrokenModel { name: file_name(path), path: path.display().to_string(), error: format!("{e}; {}", e.hint()) }
}

/// Copies `src` to `dst`, returning the sha256 of the bytes copied.
fn copy_hashing(src: &Path, dst: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<String, LibraryError> {
    let read_err = |source| LibraryError::Io { path: src.to_owned(), source };
    let write_err = |source| LibraryError::Io { path: dst.to_owned(), source };
    let mut input = File::open(src).map_err(read_err)?;
    let total = input.metadata().map_err(read_err)?.len();
    let mut output = File::create(dst).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    on_progress(0, total);
    loop {
        let n = input.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(write_err)?;
        hasher.update(&buf[..n]);
        done += n as u64;
        on_progress(done, total);
    }
    output.sync_all().map_err(write_err)?;
    Ok(hex::encode(hasher.finalize()))
}

fn from_load_error(path: &Path, head: &[u8], e: LoadError) -> LibraryError {
    match e {
        LoadError::Io { path, source } => LibraryError::Io { path, source },
        LoadError::Truncated { path, needed, actual } => LibraryError::Truncated { path, needed, actual },
        LoadError::NotGguf { path, reason } if head.starts_with(b"GGUF") => {
            LibraryError::Damaged { path, reason: format!("its header cannot be read ({reason})") }
        }
        LoadError::NotGguf { path, reason } => {
            LibraryError::NotGguf { path, what: format!("it does not start with the GGUF magic ({reason})") }
        }
        other => LibraryError::Damaged { path: path.to_owned(), reason: other.to_string() },
    }
}

/// What a file that is not GGUF looks like, from its first bytes and size; `None` when it is not recognised.
fn sniff(head: &[u8], size: u64) -> Option<String> {
    if head.is_empty() {
        return Some("the file is empty".into());
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(
            "it starts with PK: a zip archive (a Python wheel, a PyTorch checkpoint or a .zip), not a GGUF file".into(),
        );
    }
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    if head.len() > 8 && head[8] == b'{' {
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[..8]);
        let len = u64::from_le_bytes(len);
        if len > 1 && len.saturating_add(8) <= size {
            return Some(
                "it is a safetensors file (Hugging Face weights), not a GGUF file: convert it with llama.cpp's convert_hf_to_gguf.py"
                    .into(),
            );
        }
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some("it is a gzip archive: unpack it first".into());
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Some("it is a Python pickle (a PyTorch checkpoint), not a GGUF file".into());
    }
    // The formats llama.cpp used before GGUF, whose magic is a little-endian u32 ("ggml" reads as "lmgg").
    if [b"lmgg", b"tjgg", b"fmgg", b"algg", b"ggml", b"ggjt"].iter().any(|m| head.starts_with(*m)) {
        return Some("it is an old GGML/GGJT model file (llama.cpp's format before GGUF): convert it to GGUF".into());
    }
    let text = head.strip_prefix(&[0xefu8, 0xbb, 0xbf][..]).unwrap_or(head);
    let text = &text[text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len())..];
    if text.starts_with(b"version https://git-lfs") {
        return Some(
            "it is a Git LFS pointer, not the file itself: fetch it with `git lfs pull` or its download link".into(),
        );
    }
    match text.first() {
        Some(b'{') | Some(b'[') => {
            return Some(format!("it starts with `{}`: JSON text (a config file or a server's error reply)", text[0] as char))
        }
        Some(b'<') => {
            return Some(
                "it starts with `<`: an HTML or XML page, likely a web page about the file rather than the file (on Hugging Face, use the /resolve/ link, not /blob/)"
                    .into(),
            )
        }
        _ => {}
    }
    if std::str::from_utf8(head).is_ok_and(|s| s.chars().all(|c| !c.is_control() || c.is_whitespace())) {
        let start: String = String::from_utf8_lossy(head).chars().take(24).collect();
        return Some(format!("it is a text file (it starts with {start:?})"));
    }
    None
}

/// The weights' quantisation: the dtype holding the most elements among 2-D tensors (the matrices; norms and
/// biases are F32 whatever the quantisation), ties to the first name; else `general.file_type`'s name.
fn quantisation(content: &Content) -> String {
    let mut by_dtype: Vec<(GgmlDType, u64)> = Vec::new();
    for t in content.tensor_infos.values().filter(|t| t.shape.dims().len() == 2) {
        let n = t.shape.elem_count() as u64;
        match by_dtype.iter_mut().find(|(d, _)| *d == t.ggml_dtype) {
            Some((_, count)) => *count += n,
            None => by_dtype.push((t.ggml_dtype, n)),
        }
    }
    let most = by_dtype.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| dtype_name(b.0).cmp(dtype_name(a.0))));
    match most {
        Some((dtype, _)) => dtype_name(dtype).to_owned(),
        None => content
            .metadata
            .get("general.file_type")
            .and_then(|v| v.to_u64().ok())
            .and_then(file_type_name)
            .unwrap_or("unknown")
            .to_owned(),
    }
}

/// ggml's names for its tensor types.
fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// llama.cpp's `llama_ftype` names for `general.file_type`.
fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
