//! `keel tools list|call` through the real binary: every tool with its contract, one-off calls with the same
//! validation, timeouts and errors as inside a run, and the files and HTTP tools' refusals (paths out of the
//! files folder, private and local addresses, names that resolve to them).

use std::path::Path;

use serde_json::Value;

use crate::common::{keel, stderr, stdout};

fn call(home: &Path, tool: &str, args: &str) -> std::process::Output {
    keel(home).args(["tools", "call", tool, args, "--json"]).env("KEEL_HTTP_FETCH", "1").output().unwrap()
}

fn error_of(out: &std::process::Output) -> Value {
    let v: Value = serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)));
    v["error"].clone()
}

#[test]
fn tools_list_shows_every_tool_with_its_schemas_and_effect() {
    let home = tempfile::tempdir().unwrap();
    let out = keel(home.path()).args(["tools", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tools: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for expected in ["calculator", "datetime", "files_list", "files_read", "files_write", "http_fetch", "memory_save", "memory_search"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for t in &tools {
        assert_eq!(t["input_schema"]["type"], "object", "{t}");
        assert!(t["output_schema"].is_object(), "{t}");
        assert!(["pure", "read", "write", "external"].contains(&t["effect"].as_str().unwrap()));
        assert!(t["timeout_ms"].as_u64().unwrap() > 0);
    }
    let effect = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap()["effect"].as_str().unwrap().to_owned();
    assert_eq!(effect("files_write"), "write");
    assert_eq!(effect("http_fetch"), "external");
    assert_eq!(effect("calculator"), "pure");
    // The human form has one line per tool.
    let text = keel(home.path()).args(["tools", "list"]).output().unwrap();
    assert_eq!(stdout(&text).lines().count(), tools.len());
}

#[test]
fn tools_call_validates_runs_and_reports_errors_by_class() {
    let home = tempfile::tempdir().unwrap();
    let ok = call(home.path(), "calculator", r#"{"expression": "0.1 + 0.2"}"#);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert_eq!(v["result"], "0.3");

    let bad = call(home.path(), "calculator", r#"{"expr": "1"}"#);
    assert_eq!(bad.status.code(), Some(2));
    let e = error_of(&bad);
    assert_eq!(e["kind"], "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("invalid_arguments"), "{e}");

    let unknown = call(home.path(), "teleport", "{}");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(error_of(&unknown)["hint"].as_str().unwrap().contains("keel tools list"));

    let not_json = call(home.path(), "calculator", "{oops");
    assert_eq!(not_json.status.code(), Some(2));

    let zero = call(home.path(), "calculator", r#"{"expression": "1/0"}"#);
    assert_eq!(zero.status.code(), Some(1));
    assert!(error_of(&zero)["message"].as_str().unwrap().contains("division by zero"));

    let paris = call(home.path(), "datetime", r#"{"timezone": "Europe/Paris", "at": "2026-01-15T12:00:00Z"}"#);
    let v: Value = serde_json::from_str(&stdout(&paris)).unwrap();
    assert_eq!(v["utc_offset"], "+01:00", "{v}");
}

#[test]
fn the_files_tools_stay_inside_their_folder() {
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret").unwrap();
    let w = call(home.path(), "files_write", r#"{"path": "notes/a.txt", "content": "hello"}"#);
    assert!(w.status.success(), "{}", stdout(&w));
    assert_eq!(std::fs::read_to_string(home.path().join("files/notes/a.txt")).unwrap(), "hello");
    let r = call(home.path(), "files_read", r#"{"path": "notes/a.txt"}"#);
    let v: Value = serde_json::from_str(&stdout(&r)).unwrap();
    assert_eq!(v["content"], "hello");

    let files = home.path().join("files");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), files.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), files.join("out")).unwrap();
    let secret = outside.path().join("secret.txt");
    let refused = [
        ("files_read", r#"{"path": "../keel.sqlite3"}"#.to_string()),
        ("files_read", r#"{"path": "notes/../../keel.lock"}"#.to_string()),
        ("files_read", format!(r#"{{"path": "{}"}}"#, secret.display())),
        ("files_read", r#"{"path": "/etc/passwd"}"#.to_string()),
        ("files_read", r#"{"path": "link.txt"}"#.to_string()),
        ("files_read", r#"{"path": "out/secret.txt"}"#.to_string()),
        ("files_list", r#"{"path": "out"}"#.to_string()),
        ("files_write", r#"{"path": "out/planted.txt", "content": "x"}"#.to_string()),
        ("files_write", r#"{"path": "../planted.txt", "content": "x"}"#.to_string()),
    ];
    for (tool, args) in &refused {
        let out = call(home.path(), tool, args);
        assert!(!out.status.success(), "{tool} {args} was allowed: {}", stdout(&out));
        let e = error_of(&out);
        assert!(e["message"].as_str().unwrap().contains("[refused]"), "{tool} {args}: {e}");
        assert!(!stdout(&out).contains("top secret"));
    }
    assert!(!outside.path().join("planted.txt").exists());
    assert!(!home.path().join("planted.txt").exists());
}

#[test]
fn http_fetch_refuses_local_and_private_addresses_and_names_that_resolve_to_them() {
    let home = tempfile::tempdir().unwrap();
    for url in [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "file:///etc/passwd",
    ] {
        let out = call(home.path(), "http_fetch", &format!(r#"{{"url": "{url}"}}"#));
        assert!(!out.status.success(), "{url} was fetched");
        let e = error_of(&out);
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("[refused]"), "{url}: {message}");
    }
    // Off by default: without the setting, even a public address is refused, and says how to turn it on.
    let out = keel(home.path()).args(["tools", "call", "http_fetch", r#"{"url": "http://93.184.216.34/"}"#, "--json"]).env_remove("KEEL_HTTP_FETCH").output().unwrap();
    let e = error_of(&out);
    assert!(e["message"].as_str().unwrap().contains("off"), "{e}");
}

/// `keel tools call http_fetch` with this hosts file as the system's (bind-mounted over /etc/hosts in private
/// user, mount and network namespaces: the real getaddrinfo reads it, and nothing can reach a network).
fn call_with_hosts(home: &Path, hosts: &str, url: &str) -> std::process::Output {
    let file = home.join("hosts");
    std::fs::write(&file, hosts).unwrap();
    std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--net", "sh", "-c", r#"mount --bind "$HOSTS" /etc/hosts && exec "$K" "$@""#, "sh"])
        .args(["tools", "call", "http_fetch", &format!(r#"{{"url": "{url}"}}"#), "--json"])
        .env("HOSTS", &file)
        .env("K", env!("CARGO_BIN_EXE_keel"))
        .env("KEEL_HOME", home)
        .env("KEEL_MODELS_DIR", crate::common::models_dir())
        .env("KEEL_HTTP_FETCH", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn http_fetch_refuses_a_name_whose_real_lookup_mixes_public_and_private_answers() {
    let home = tempfile::tempdir().unwrap();
    // The public answer first: a check of the first address alone would let the name through.
    let hosts = "127.0.0.1 localhost\n93.184.216.34 mixed.example\n10.0.0.7 mixed.example\n93.184.216.34 public.example\n";
    let out = call_with_hosts(home.path(), hosts, "http://mixed.example/");
    assert!(!out.status.success(), "mixed.example was fetched: {}", stdout(&out));
    let message = error_of(&out)["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("[refused]") && message.contains("mixed.example") && message.contains("private or local"), "{message}\n{}", stderr(&out));
    // Positive control: the lookup really read the hosts file. A name with only the public answer passes the
    // address check and fails only at connecting (there is no network here), so the refusal above came from
    // the private answer.
    let out = call_with_hosts(home.path(), hosts, "http://public.example/");
    let message = error_of(&out)["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        !out.status.success() && message.contains("tcp connect error") && !message.contains("private or local") && !message.contains("lookup"),
        "{message}\n{}",
        stderr(&out)
    );
}

#[test]
fn http_fetch_refuses_a_name_whose_dns_answer_is_private() {
    // A name resolved through /etc/hosts-free DNS is not available offline, so the resolver decision is checked
    // on the addresses a name could return, as the tool applies it at connect time.
    use keel::tools::http::check_resolved;
    use std::net::SocketAddr;
    let private: Vec<SocketAddr> = vec!["93.184.216.34:80".parse().unwrap(), "10.0.0.7:80".parse().unwrap()];
    assert!(check_resolved("rebind.example", &private).is_err(), "one private answer among public ones is refused");
    for addr in ["127.0.0.1:80", "[::1]:80", "169.254.169.254:80", "192.168.1.1:443", "[fe80::1]:80"] {
        assert!(check_resolved("evil.example", &[addr.parse().unwrap()]).is_err(), "{addr}");
    }
    assert!(check_resolved("example.com", &["93.184.216.34:80".parse().unwrap()]).is_ok());
}
