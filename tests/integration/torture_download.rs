//! The crash torture harness's `download` workload: `keel models download` of the real SmolLM2 file (98 MB,
//! with its pinned sha256) from a loopback server that paces it over about two seconds, killed with SIGKILL after
//! a drawn delay, then run again (the harness and its other workloads are in `torture.rs`).
//!
//! Oracles, after the kill and after the re-run:
//! - a model file in place is whole and right (every byte), with its sha256 recorded beside it; `keel models
//!   installed` never lists a half-downloaded, unpinned or mismatched model;
//! - a partial file is a prefix of the real file, never longer;
//! - the re-run succeeds and asks only for what is missing: `Range: bytes=<kept>-` when bytes were kept, no
//!   request at all when the file was already in place;
//! - afterwards the model is listed once, verified, with no partial file left.

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{gguf_path, keel, stderr, stdout};
use crate::models_manager::{pinned_sha256, FileServer};

const NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PATH: &str = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

pub(crate) struct Template {
    server: FileServer,
    body: Vec<u8>,
    sha256: String,
}

/// One paced server for every kill of a run (its thread lives as long as the test binary).
pub(crate) fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let body = std::fs::read(gguf_path()).unwrap();
        let server = FileServer::start(PATH, body.clone());
        // 1 MiB every 20 ms: about two seconds for the file, so that kills land all through it.
        server.pace(1 << 20, Duration::from_millis(20));
        Template { server, body, sha256: pinned_sha256() }
    })
}

fn download(home: &Path, models: &Path, t: &Template) -> std::process::Command {
    let mut cmd = keel(home);
    cmd.env("KEEL_MODELS_DIR", models).args(["models", "download", &t.server.url(PATH), "--sha256", &t.sha256, "--json"]);
    cmd
}

/// How long an uninterrupted download takes, process start to exit.
pub(crate) fn reference(t: &Template) -> Duration {
    let (home, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let started = Instant::now();
    let out = download(home.path(), models.path(), t).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    started.elapsed()
}

/// The model as `keel models installed --json` lists it: `Err` when the listing fails or lists it twice.
fn listed(home: &Path, models: &Path) -> Result<Option<Value>, String> {
    let out = keel(home).env("KEEL_MODELS_DIR", models).args(["models", "installed", "--json"]).output().unwrap();
    let list: Value = serde_json::from_str(&stdout(&out)).map_err(|e| format!("models installed: {e}: {}", stderr(&out)))?;
    // The built-in model of the same name is missing from this models dir, and listed broken as such.
    let user = models.join("user");
    let downloaded = |m: &&Value| m["name"] == NAME && m["path"].as_str().is_some_and(|p| Path::new(p).starts_with(&user));
    if list["broken"].as_array().is_some_and(|b| b.iter().any(|m| downloaded(&m))) {
        return Err(format!("the model is listed as broken: {list}"));
    }
    let found: Vec<&Value> = list["models"].as_array().into_iter().flatten().filter(downloaded).collect();
    match found[..] {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(format!("the model is listed {} times", found.len())),
    }
}

/// The model in place is whole, right and pinned; a partial file is a prefix of the real one. Returns the
/// partial file's length (0 when there is none) and whether the model is in place.
fn on_disk(models: &Path, t: &Template) -> Result<(u64, bool), String> {
    let user = models.join("user");
    let target = user.join(NAME);
    let in_place = target.exists();
    if in_place {
        if std::fs::read(&target).map_err(|e| e.to_string())? != t.body {
            return Err("the model in place is not the whole, right file".into());
        }
        let sidecar = std::fs::read_to_string(user.join(format!("{NAME}.sha256"))).unwrap_or_default();
        if !sidecar.starts_with(&t.sha256) {
            return Err(format!("the model is in place without its sha256 recorded: {sidecar:?}"));
        }
    }
    let partial = match std::fs::read(user.join(format!("{NAME}.partial"))) {
        Ok(bytes) if bytes.len() > t.body.len() || bytes[..] != t.body[..bytes.len()] => {
            return Err(format!("the partial file ({} bytes) is not a prefix of the real file", bytes.len()))
        }
        Ok(bytes) => bytes.len() as u64,
        Err(_) => 0,
    };
    Ok((partial, in_place))
}

/// One kill of the `download` workload; `Err` names the broken invariant.
pub(crate) fn kill(
    t: &Template,
    reference: Duration,
    below: &mut dyn FnMut(u64) -> u64,
    before_start: &mut u32,
    finished: &mut u32,
) -> Result<String, String> {
    let (home, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (home, models) = (home.path(), models.path());
    let at = Duration::from_millis(below(reference.as_millis() as u64 * 11 / 10));
    let mut child = download(home, models, t).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(at);
    let exited_first = child.try_wait().unwrap().is_some();
    crate::torture::sigkill(&mut child);
    let (kept, in_place) = on_disk(models, t).map_err(|e| format!("after {at:?}, after the kill: {e}"))?;
    let point = format!("after {at:?} ({})", if in_place { "in place".to_owned() } else { format!("{kept} bytes kept") });
    if exited_first {
        *finished += 1;
    } else if kept == 0 && !in_place {
        *before_start += 1;
    }
    match listed(home, models).map_err(|e| format!("{point}: {e}"))? {
        Some(m) if !in_place => return Err(format!("{point}: a model not in place is listed: {m}")),
        // Killed after the rename and before the stamp: its sha256 is recorded, the stamp missing.
        Some(m) if !matches!(m["checksum"].as_str(), Some("verified" | "unchecked")) => {
            return Err(format!("{point}: the model in place is listed as {}", m["checksum"]))
        }
        _ => {}
    }

    let asked = t.server.seen().len();
    let out = download(home, models, t).output().unwrap();
    let info: Value = serde_json::from_str(&stdout(&out)).map_err(|e| format!("{point}: the re-run: {e}: {}", stderr(&out)))?;
    if info["checksum"] != "verified" || info["sha256"] != t.sha256.as_str() {
        return Err(format!("{point}: the re-run gave {info}"));
    }
    let requests = t.server.seen()[asked..].to_vec();
    let wanted = if in_place { None } else { Some((kept > 0).then(|| format!("bytes={kept}-"))) };
    match (&wanted, &requests[..]) {
        (None, []) => {}
        (Some(range), [first, ..]) if &first.range == range && first.target == PATH => {}
        _ => return Err(format!("{point}: the re-run asked for {requests:?}, not only what was missing")),
    }
    let (left, in_place) = on_disk(models, t).map_err(|e| format!("{point}, after the re-run: {e}"))?;
    if left != 0 || !in_place {
        return Err(format!("{point}: after the re-run the model is in place: {in_place}, with {left} partial bytes left"));
    }
    match listed(home, models).map_err(|e| format!("{point}: {e}"))? {
        Some(m) if m["checksum"] == "verified" => Ok(point),
        other => Err(format!("{point}: after the re-run the model is listed as {other:?}")),
    }
}

/// Positive controls: the oracles see a partial file that is not a prefix, one longer than the file, a model in
/// place with a changed byte, and one without its sha256 recorded.
#[test]
fn the_download_oracles_catch_a_wrong_partial_and_a_wrong_or_unpinned_model() {
    let t = template();
    let models = tempfile::tempdir().unwrap();
    let user = models.path().join("user");
    std::fs::create_dir_all(&user).unwrap();
    let partial = user.join(format!("{NAME}.partial"));
    std::fs::write(&partial, &t.body[..4096]).unwrap();
    assert_eq!(on_disk(models.path(), t), Ok((4096, false)));
    let mut changed = t.body[..4096].to_vec();
    changed[100] ^= 1;
    std::fs::write(&partial, &changed).unwrap();
    assert!(on_disk(models.path(), t).unwrap_err().contains("not a prefix"));
    let mut longer = t.body.clone();
    longer.push(0);
    std::fs::write(&partial, &longer).unwrap();
    assert!(on_disk(models.path(), t).unwrap_err().contains("not a prefix"));
    std::fs::remove_file(&partial).unwrap();

    let target = user.join(NAME);
    std::fs::write(&target, &t.body).unwrap();
    assert!(on_disk(models.path(), t).unwrap_err().contains("without its sha256"));
    std::fs::write(user.join(format!("{NAME}.sha256")), format!("{}  {NAME}\n", t.sha256)).unwrap();
    assert_eq!(on_disk(models.path(), t), Ok((0, true)));
    let mut wrong = t.body.clone();
    wrong[t.body.len() / 2] ^= 1;
    std::fs::write(&target, &wrong).unwrap();
    assert!(on_disk(models.path(), t).unwrap_err().contains("not the whole, right file"));
}
