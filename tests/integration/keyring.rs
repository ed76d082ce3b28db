//! API keys in a real Secret Service (gnome-keyring on a private D-Bus session: scripts/test.sh runs the suite
//! under scripts/with-keyring.sh), a full CLI session against a server that demands the key, and a scan of
//! everything Keel wrote and printed for the key; and the error when no Secret Service is there.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::common::{self, keel};
use super::llama_server::{LlamaServer, MODEL};

fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn run(cmd: &mut Command, transcript: &mut Vec<u8>) -> Output {
    let out = cmd.output().unwrap();
    transcript.extend_from_slice(&out.stdout);
    transcript.extend_from_slice(&out.stderr);
    out
}

fn require_secret_service() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the suite with scripts/test.sh, which runs it under scripts/with-keyring.sh (a private session with gnome-keyring)"
    );
}

/// Every file under `dir` that holds `needle`, binary-safe.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

fn secret_tool_lookup(profile: &str) -> Option<String> {
    let out = Command::new("secret-tool").args(["lookup", "service", "keel", "username", &format!("backend:{profile}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn keys_live_in_the_keyring_and_nowhere_else_after_a_full_session() {
    require_secret_service();
    // A throwaway HOME holding everything Keel may write: its data dir, HOME's config, cache, data and state
    // folders, and its temporary files; the scan covers all of it.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keel = |_: &Path| {
        let mut cmd = self::keel(&data);
        let home = root.path().join("home");
        for (var, sub) in [("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"), ("XDG_STATE_HOME", ".local/state")] {
            std::fs::create_dir_all(home.join(sub)).unwrap();
            cmd.env(var, home.join(sub));
        }
        std::fs::create_dir_all(root.path().join("tmp")).unwrap();
        cmd.env("HOME", &home).env("TMPDIR", root.path().join("tmp"));
        cmd
    };
    let home = &data;
    let key = format!("sk-keel-test-{:016x}", std::process::id() as u64 * 0x9E37_79B9 + 17);
    let server = LlamaServer::start(Some(&key));
    let mut transcript = Vec::new();

    let out = run(keel(home).args(["backends", "add", "lab", "--base-url", &server.base_url(), "--model", MODEL, "--fallback", "local"]), &mut transcript);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Set: from stdin, into the Secret Service (read back with libsecret's own tool).
    let out = with_stdin(keel(home).args(["keys", "set", "lab"]), &format!("{key}\n"));
    transcript.extend_from_slice(&out.stdout);
    transcript.extend_from_slice(&out.stderr);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(secret_tool_lookup("lab").as_deref(), Some(key.as_str()));
    let out = run(keel(home).args(["backends", "list", "--json"]), &mut transcript);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[1]["key"], "set", "{list}");

    // Read: the server demands the key, and a run through it is answered by it.
    let out = run(keel(home).args(["ask", "--backend", "lab", "--mode", "chat", "--max-tokens", "12", "--json", "Say hello."]), &mut transcript);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let turn: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = turn["run_id"].as_i64().unwrap();
    let out = run(keel(home).args(["runs", "show", &run_id.to_string(), "--json"]), &mut transcript);
    let shown = common::stdout(&out);
    assert!(shown.contains("\"answered_by\": \"lab\""), "{shown}");
    let out = run(keel(home).args(["backends", "test", "lab", "--json"]), &mut transcript);
    assert!(out.status.success(), "{}", common::stdout(&out));

    // Replace: the server refuses a wrong key, and the error says how to fix it.
    let out = with_stdin(keel(home).args(["keys", "set", "lab"]), "sk-wrong-key\n");
    transcript.extend_from_slice(&out.stdout);
    transcript.extend_from_slice(&out.stderr);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(secret_tool_lookup("lab").as_deref(), Some("sk-wrong-key"));
    let out = run(keel(home).args(["backends", "test", "lab"]), &mut transcript);
    assert!(!out.status.success());
    assert!(common::stdout(&out).contains("refused the key (HTTP 401"), "{}", common::stdout(&out));
    assert!(common::stderr(&out).contains("keel keys set lab"), "{}", common::stderr(&out));
    let out = with_stdin(keel(home).args(["keys", "set", "lab"]), &format!("{key}\n"));
    transcript.extend_from_slice(&out.stdout);
    transcript.extend_from_slice(&out.stderr);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Memory export and a run export go through the same scan.
    let export = home.join("export.jsonl");
    run(keel(home).args(["memory", "export", "--output"]).arg(&export), &mut transcript);
    run(keel(home).args(["runs", "list", "--json"]), &mut transcript);

    // Delete.
    let out = run(keel(home).args(["keys", "rm", "lab"]), &mut transcript);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(secret_tool_lookup("lab"), None);
    let out = run(keel(home).args(["backends", "list", "--json"]), &mut transcript);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[1]["key"], "not_set");

    // The scan: the whole throwaway HOME (the data dir with SQLite, its WAL, indexes and exports; config, cache,
    // data and state folders; temporary files) and everything Keel printed, stdout and stderr (its log).
    // Positive control: the same scan finds the key planted in a file.
    let planted = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(planted.path().join("deep/er")).unwrap();
    std::fs::write(planted.path().join("deep/er/wal"), [b"\x00\x01".as_slice(), key.as_bytes(), b"\xff"].concat()).unwrap();
    assert_eq!(files_containing(planted.path(), key.as_bytes()).len(), 1, "the scan misses a planted key");
    assert!(data.join("keel.sqlite3").exists(), "the scan covers the data dir Keel wrote");
    let leaks = files_containing(root.path(), key.as_bytes());
    assert!(leaks.is_empty(), "the key was written to {leaks:?}");
    assert!(!transcript.windows(key.len()).any(|w| w == key.as_bytes()), "the key was printed");
    assert!(transcript.windows(10).any(|w| w == b"\"run_id\": "), "the transcript holds the session's output");
}

#[test]
fn without_a_secret_service_keel_says_what_to_install_and_writes_no_key_anywhere() {
    let home = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let no_bus = |cmd: &mut Command| {
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS").env("XDG_RUNTIME_DIR", runtime.path());
    };
    let mut add = keel(home.path());
    no_bus(&mut add);
    assert!(add.args(["backends", "add", "lab", "--base-url", "http://127.0.0.1:9/v1", "--model", MODEL]).output().unwrap().status.success());
    let mut set = keel(home.path());
    no_bus(&mut set);
    let out = with_stdin(set.args(["keys", "set", "lab"]), "sk-never-stored-anywhere\n");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("no OS keyring is available to hold API keys"), "{err}");
    assert!(err.contains("gnome-keyring") && err.contains("never in a file"), "{err}");
    assert!(!err.contains("sk-never-stored-anywhere"));
    let mut list = keel(home.path());
    no_bus(&mut list);
    let out = list.args(["backends", "list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[1]["key"], "unavailable");
    assert!(files_containing(home.path(), b"sk-never-stored-anywhere").is_empty());
}
