//! The crash torture harness: real `keel` processes driven through mixed workloads and killed with SIGKILL at
//! points drawn from a seed, then restarted, with oracles that can fail.
//!
//! Workloads (each kill gets a fresh data dir, so a kill reproduces from its seed alone):
//! - `react`: a ReAct run on the scripted backend that calculates, saves a memory and writes a file (both
//!   idempotent), appends a line to a ledger through a real MCP server (`echo.append`: not idempotent), calculates
//!   again and answers, every side effect allowed by the standing policy. `keel ask --events` prints each step
//!   as it is recorded. Killed after its k-th printed event plus a delay, then restarted: resumed, or (killed
//!   inside the append) asked about and approved. Half the runs (drawn from the seed) start on a remote backend
//!   that is down (a loopback port nothing listens on), whose fallback is the scripted model: every model call
//!   fails over, and every reply in the log, before and after the kill, says which backend failed before it.
//! - `import`: `keel memory import` of four documents, killed after a drawn delay, then imported again.
//!
//! Oracles, checked after every kill:
//! - every event `keel` printed before the kill is in the log, as printed; the log read right after the kill is
//!   a prefix of the log after the restart, event for event;
//! - the run ends with the uninterrupted run's answer; the file holds what was written; the memory was saved
//!   exactly once; the ledger has exactly one line, unless the user approved repeating an append whose outcome
//!   was unknown (then two, and counted);
//! - a write call that was in flight (called, never returned) and is not idempotent is never run again without
//!   the user's approval: the run waits for the user, with the unknown outcome recorded;
//! - the saved memory is found by BM25 and by vector search (its own text as the query: cosine ≈ 1);
//! - no document is half imported or imported twice, after the kill and after the restart, and each is found.
//! - `memory` (`torture_memory.rs`): memory edits and a reindex killed mid-way: what each command acknowledged
//!   is there, the one in flight whole or not at all, every item found by both searches, and the indexes equal
//!   a rebuild from SQLite.
//! - `download` (`torture_download.rs`): `keel models download` of the real SmolLM2 file from a paced loopback
//!   server, killed mid-way and run again: a model in place is always whole and pinned, a partial file a prefix
//!   of the real one, and the re-run fetches only the missing bytes.
//!
//! `KEEL_TORTURE_KILLS` (kills per workload; default 50 of `react` and `import`, 20 of `memory` and `download`,
//! so CI runs 140), `KEEL_TORTURE_SEED` and
//! `KEEL_TORTURE_WORKLOAD` (one of the above) are set by `scripts/torture.sh`, which also reproduces one kill:
//! `scripts/torture.sh --seed S --workload W --kills 1` (each kill prints its seed and point). The suite's
//! script clears them, so CI always runs the defaults.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{keel, stderr, stdout};

const ANSWER: &str = "Done: 42 saved, the note written, and 43.";
const MEMORY: &str = "The answer to the torture question is 42";
const NOTE: &str = "forty-two";
/// The file the MCP tool `echo.append` appends a line to: a side effect that is not idempotent.
const LEDGER: &str = "ledger.txt";
/// How long `echo.append` takes, its line written halfway.
const APPEND_PAUSE_MS: u64 = 120;

/// Where the uninterrupted run printed each tool's `ToolCalled` (1-based event numbers).
#[derive(Clone, Default)]
struct Reference {
    events: u64,
    append_called: u64,
    save_called: u64,
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

fn script(dir: &Path) -> PathBuf {
    let rules = json!({"rules": [
        {"when": "Work out the torture question", "reply": r#"{"tool": "calculator", "arguments": {"expression": "6*7"}}"#, "delay_ms": 40},
        {"when": "\"result\":\"42\"", "reply": json!({"tool": "memory_save", "arguments": {"text": MEMORY}}).to_string(), "delay_ms": 40},
        {"when": "tool=\"memory_save\" status=\"ok\"", "reply": json!({"tool": "files_write", "arguments": {"path": "note.txt", "content": NOTE}}).to_string(), "delay_ms": 40},
        {"when": "tool=\"files_write\" status=\"ok\"", "reply": json!({"tool": "echo.append", "arguments": {"path": dir.join(LEDGER).to_string_lossy(), "line": "entry", "pause_ms": APPEND_PAUSE_MS}}).to_string(), "delay_ms": 40},
        {"when": "tool=\"echo.append\" status=\"ok\"", "reply": r#"{"tool": "calculator", "arguments": {"expression": "42+1"}}"#, "delay_ms": 40},
        {"when": "\"result\":\"43\"", "reply": json!({"answer": ANSWER}).to_string(), "delay_ms": 40},
    ]});
    let path = dir.join("script.json");
    std::fs::write(&path, rules.to_string()).unwrap();
    path
}

fn scripted(home: &Path) -> Command {
    let mut cmd = keel(home);
    cmd.env("KEEL_SCRIPTED_BACKEND", home.join("script.json"));
    cmd
}

/// `keel ask` of the workload's question; on `backend` when given.
fn ask(home: &Path, backend: Option<&str>) -> Command {
    let mut cmd = scripted(home);
    cmd.args(["ask", "--json", "--events", "--mode", "react", "--allow", "memory_save", "--allow", "files_write", "--allow", "echo.append"]);
    if let Some(name) = backend {
        cmd.args(["--backend", name]);
    }
    cmd.arg("Work out the torture question, save it and write the note");
    cmd
}

/// The remote backend the `fallback` kills' runs start on: a loopback port nothing listens on, without
/// retries, falling back to `local` (the scripted model), so that every model call of the run fails over.
const DOWN: &str = "down";

fn add_down_backend(home: &Path) -> Result<(), String> {
    // A port just freed: connecting to it is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let out = scripted(home)
        .args(["backends", "add", DOWN, "--base-url", &url, "--model", "none", "--retries", "0", "--timeout", "5", "--fallback", "local", "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("keel backends add: {}", stderr(&out)));
    }
    Ok(())
}

/// Every model reply of a run on [`DOWN`] came from the scripted model after `down` failed: the injected
/// fault landed on every call, and the log says so.
fn every_reply_fell_back(log: &[(u64, Value)]) -> Result<(), String> {
    let replies: Vec<&Value> = log.iter().map(|(_, e)| e).filter(|e| kind(e) == "ModelReplied").collect();
    if replies.is_empty() {
        return Err("the run has no model reply".into());
    }
    for r in replies {
        let failed = r["fell_back"].as_array().is_some_and(|f| f.len() == 1 && f[0]["backend"] == DOWN);
        if !failed || r["answered_by"] == DOWN || r["answered_by"].is_null() {
            return Err(format!("a reply did not fall back from {DOWN}: {r}"));
        }
    }
    Ok(())
}

/// The run's events straight from SQLite (read-only), as `runs show --json` gives them: `{seq, event}` pairs.
fn log(home: &Path, run: i64) -> Vec<(u64, Value)> {
    let db = rusqlite::Connection::open_with_flags(home.join("keel.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY);
    let Ok(db) = db else { return Vec::new() };
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let Ok(mut stmt) = db.prepare("SELECT seq, payload FROM run_events WHERE run_id = ?1 ORDER BY seq") else { return Vec::new() };
    stmt.query_map([run], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (seq, text) = r.unwrap();
            (seq, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

fn first_run(home: &Path) -> Option<i64> {
    let db = rusqlite::Connection::open_with_flags(home.join("keel.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.query_row("SELECT min(id) FROM runs", [], |r| r.get::<_, Option<i64>>(0)).ok().flatten()
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap_or("")
}

/// Spawns `cmd`, collecting the whole JSON lines it prints on stderr (the `--events` lines) as they come.
fn spawn_watched(cmd: &mut Command) -> (Child, Arc<Mutex<Vec<Value>>>, std::thread::JoinHandle<()>) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pipe = child.stderr.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut line = String::new();
        // Only lines ended by a newline count: a line cut by the kill was not told to anyone.
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.ends_with('\n') {
                if let Ok(v) = serde_json::from_str::<Value>(line.trim_end()) {
                    if v.get("seq").is_some() {
                        sink.lock().unwrap().push(v);
                    }
                }
            }
            line.clear();
        }
    });
    (child, seen, reader)
}

pub(crate) fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every printed event is in the log, as printed, in order.
fn printed_in_log(printed: &[Value], log: &[(u64, Value)]) -> Result<(), String> {
    for (i, p) in printed.iter().enumerate() {
        let Some((seq, event)) = log.get(i) else {
            return Err(format!("event {} was printed but is not in the log ({} events)", i + 1, log.len()));
        };
        if p["seq"].as_u64() != Some(*seq) || &p["event"] != event {
            return Err(format!("printed event {} differs from the log: printed {p}, logged {seq} {event}", i + 1));
        }
    }
    Ok(())
}

/// `before` is a prefix of `after`, event for event; `after` is numbered without gaps and ends with its one
/// `RunFinished`.
fn prefix_and_whole(before: &[(u64, Value)], after: &[(u64, Value)]) -> Result<(), String> {
    if after.len() < before.len() || after[..before.len()] != before[..] {
        let at = before.iter().zip(after).position(|(a, b)| a != b).unwrap_or(after.len().min(before.len()));
        return Err(format!("the log before the kill is not a prefix of the log after (they differ at event {})", at + 1));
    }
    for (i, (seq, _)) in after.iter().enumerate() {
        if *seq != i as u64 + 1 {
            return Err(format!("event numbers have a gap or a repeat at {seq}"));
        }
    }
    let finished = after.iter().filter(|(_, e)| kind(e) == "RunFinished").count();
    if finished != 1 || after.last().is_none_or(|(_, e)| kind(e) != "RunFinished") {
        return Err("the run does not end with exactly one RunFinished".into());
    }
    Ok(())
}

#[test]
fn the_torture_oracles_catch_a_lost_a_changed_and_a_repeated_event() {
    let ev = |seq: u64, kind: &str| (seq, json!({"kind": kind, "step": seq}));
    let log: Vec<(u64, Value)> = vec![ev(1, "RunStarted"), ev(2, "ModelCalled"), ev(3, "ModelReplied"), ev(4, "RunFinished")];
    let printed: Vec<Value> = log[..3].iter().map(|(seq, e)| json!({"seq": seq, "event": e})).collect();
    assert_eq!(printed_in_log(&printed, &log), Ok(()));
    assert_eq!(prefix_and_whole(&log[..2], &log), Ok(()));
    // A printed event that the log lost, or holds otherwise.
    assert!(printed_in_log(&printed, &log[..2]).is_err());
    let mut changed = log.clone();
    changed[1].1["step"] = json!(9);
    assert!(printed_in_log(&printed, &changed).is_err());
    // A log after the restart that rewrote, dropped or repeated an event, or never finished.
    assert!(prefix_and_whole(&log[..3], &changed).is_err());
    assert!(prefix_and_whole(&log[..3], &[log[0].clone(), log[2].clone(), log[3].clone()]).is_err());
    let repeated = vec![log[0].clone(), log[1].clone(), log[1].clone(), log[3].clone()];
    assert!(prefix_and_whole(&log[..1], &repeated).is_err());
    assert!(prefix_and_whole(&log[..2], &log[..3]).is_err());
    // A reply that did not fall back from `down`, or a run without replies, fails the fallback oracle.
    let replied = |fell: Value| vec![(1, json!({"kind": "ModelReplied", "answered_by": "scripted", "fell_back": fell}))];
    assert_eq!(every_reply_fell_back(&replied(json!([{"backend": DOWN, "error": "connection refused"}]))), Ok(()));
    assert!(every_reply_fell_back(&replied(json!([]))).is_err());
    assert!(every_reply_fell_back(&replied(json!([{"backend": "elsewhere", "error": "refused"}]))).is_err());
    assert!(every_reply_fell_back(&[]).is_err());
}

#[derive(Default, Debug)]
struct Tally {
    kills: u32,
    before_start: u32,
    finished_before_kill: u32,
    resumed: u32,
    asked: u32,
    repeated_append_approved: u32,
    /// Runs started on a backend that is down (each model call falling back).
    fallback: u32,
}

/// One kill of the `react` workload; `Err` names the broken invariant.
fn react(seed: u64, reference: &Reference, tally: &mut Tally) -> Result<String, String> {
    let mut rng = Rng::new(seed);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    std::fs::create_dir_all(home.join(keel::FILES_DIR)).unwrap();
    crate::mcp::write_config(home);
    script(home);
    // A quarter of the kills land inside the append (before or after its line is written), a quarter inside the
    // memory save; the rest after any printed event (never the last) plus up to one model call's delay.
    let (k, extra_us) = match rng.below(4) {
        0 => (reference.append_called, rng.below(APPEND_PAUSE_MS * 1000)),
        1 => (reference.save_called, rng.below(40_000)),
        _ => (1 + rng.below(reference.events - 1), rng.below(60_000)),
    };
    let extra = Duration::from_micros(extra_us);
    // Half the runs start on a backend that is down: every model call fails over to the next backend, and the
    // kills land in the fallbacks too.
    let fallback = rng.below(2) == 0;
    if fallback {
        add_down_backend(home)?;
        tally.fallback += 1;
    }
    let point = format!("after event {k} + {extra:?}{}", if fallback { ", every model call failing over" } else { "" });
    let (mut child, seen, reader) = spawn_watched(&mut ask(home, fallback.then_some(DOWN)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.lock().unwrap().len() as u64) < k && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
    std::thread::sleep(extra);
    let exited_first = child.try_wait().unwrap().is_some();
    sigkill(&mut child);
    reader.join().unwrap();
    let printed = seen.lock().unwrap().clone();
    let Some(run) = first_run(home) else {
        tally.before_start += 1;
        if !printed.is_empty() {
            return Err(format!("{point}: {} events were printed but no run is in the database", printed.len()));
        }
        return Ok(format!("{point}: killed before the run began"));
    };
    let before = log(home, run);
    // Oracle: what was printed is in the log, as printed, in order.
    printed_in_log(&printed, &before).map_err(|e| format!("{point}: {e}"))?;
    if exited_first {
        tally.finished_before_kill += 1;
    }
    // Restart: any command opens the data dir and records the interruption; the status says what comes next.
    let list = scripted(home).args(["runs", "list", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_str(&stdout(&list)).map_err(|e| format!("{point}: runs list: {e}: {}", stderr(&list)))?;
    let status = runs.as_array().and_then(|r| r.iter().find(|r| r["id"] == run)).map(|r| r["status"].as_str().unwrap_or("").to_owned());
    // A call of a tool that is not safe to repeat, in flight at the kill: called, never returned.
    let in_flight_append = {
        let called = before.iter().filter(|(_, e)| kind(e) == "ToolCalled" && e["tool"] == "echo.append").count();
        let returned = before.iter().filter(|(_, e)| kind(e) == "ToolReturned" && e["tool"] == "echo.append").count();
        called > returned
    };
    let mut approved_repeat = false;
    let out = match status.as_deref() {
        Some("answered") => None,
        Some("interrupted") => {
            if in_flight_append {
                return Err(format!("{point}: echo.append was in flight, yet the run would resume without asking"));
            }
            tally.resumed += 1;
            Some(scripted(home).args(["runs", "resume", &run.to_string(), "--json"]).output().unwrap())
        }
        Some("awaiting_user") => {
            let now = log(home, run);
            let unknown = now.iter().any(|(_, e)| kind(e) == "OutcomeUnknown" && e["tool"] == "echo.append");
            if !(in_flight_append && unknown) {
                return Err(format!("{point}: waits for the user, but no echo.append was in flight with an unknown outcome"));
            }
            tally.asked += 1;
            approved_repeat = true;
            Some(scripted(home).args(["runs", "answer", &run.to_string(), "--approve", "--json"]).output().unwrap())
        }
        other => return Err(format!("{point}: the run was left {other:?}")),
    };
    if let Some(out) = out {
        let v: Value = serde_json::from_str(&stdout(&out)).map_err(|e| format!("{point}: {e}: {}", stderr(&out)))?;
        if v["answer"] != ANSWER {
            return Err(format!("{point}: the restarted run answered {}", v["answer"]));
        }
    }
    let after = log(home, run);
    // Oracle: the log before the kill is a prefix of the log after, event for event, and the log is whole.
    prefix_and_whole(&before, &after).map_err(|e| format!("{point}: {e}"))?;
    // The resumed run stayed on its backend: with `down`, each reply, before and after the kill, fell back.
    if fallback {
        every_reply_fell_back(&after).map_err(|e| format!("{point}: {e}"))?;
    }
    // memory_save is idempotent (a fact remembered word for word is not saved again): exactly once, always.
    let db = rusqlite::Connection::open(home.join("keel.sqlite3")).unwrap();
    let saved: i64 = db.query_row("SELECT count(*) FROM memory_items WHERE text = ?1 AND deleted_ms IS NULL", [MEMORY], |r| r.get(0)).unwrap();
    if saved != 1 {
        return Err(format!("{point}: the memory was saved {saved} times"));
    }
    // echo.append is not: exactly once, unless the user approved running again a call whose outcome was unknown.
    let lines = std::fs::read_to_string(home.join(LEDGER)).unwrap_or_default().lines().count();
    let calls = after.iter().filter(|(_, e)| kind(e) == "ToolCalled" && e["tool"] == "echo.append").count();
    match (lines, approved_repeat) {
        (1, _) => {}
        (2, true) if calls == 2 => tally.repeated_append_approved += 1,
        _ => return Err(format!("{point}: the ledger has {lines} lines over {calls} calls (approved repeat: {approved_repeat})")),
    }
    // Oracle: the saved memory is found by BM25 and by vector search.
    let search = keel(home).args(["memory", "search", MEMORY, "--json", "--limit", "5"]).output().unwrap();
    let r: Value = serde_json::from_str(&stdout(&search)).map_err(|e| format!("{point}: search: {e}: {}", stderr(&search)))?;
    let hit = r["hits"].as_array().and_then(|h| h.iter().find(|h| h["text"] == MEMORY).cloned());
    match hit {
        Some(h) if h["bm25_rank"].is_number() && h["vector_rank"].is_number() && h["cosine"].as_f64().unwrap_or(0.0) > 0.99 => {}
        _ => return Err(format!("{point}: the saved memory is not found by both searches: {r}")),
    }
    Ok(point)
}

const DOCUMENTS: i64 = 4;

/// The documents of the `import` workload: four of six paragraphs, each paragraph opening with a sentence
/// found nowhere else.
fn write_documents(dir: &Path) -> Vec<String> {
    (0..DOCUMENTS)
        .map(|d| {
            let text = (0..6)
                .map(|p| {
                    format!(
                        "Logbook {d} entry {p} tells of the lighthouse keeper number {d} in winter {p}. {}",
                        "The lamp was trimmed at dusk, the fog bell rung each quarter hour, and the weather written \
                         down in the ledger with the names of passing ships. "
                            .repeat(3)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            std::fs::write(dir.join(format!("logbook-{d}.txt")), &text).unwrap();
            format!("Logbook {d} entry 4 tells of the lighthouse keeper number {d} in winter 4.")
        })
        .collect()
}

/// (documents, duplicated documents, documents missing chunks, duplicated chunks)
pub(crate) fn documents_state(home: &Path) -> (i64, i64, i64, i64) {
    let Ok(db) = rusqlite::Connection::open(home.join("keel.sqlite3")) else { return (0, 0, 0, 0) };
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let q = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0);
    (
        q("SELECT COUNT(*) FROM documents"),
        q("SELECT COUNT(*) FROM (SELECT content_hash FROM documents GROUP BY content_hash HAVING COUNT(*) > 1)"),
        q("SELECT COUNT(*) FROM documents d WHERE d.chunks != (SELECT COUNT(*) FROM memory_items m WHERE m.document_id = d.id)"),
        q("SELECT COUNT(*) FROM (SELECT document_id, chunk_index FROM memory_items WHERE document_id IS NOT NULL
             GROUP BY document_id, chunk_index HAVING COUNT(*) > 1)"),
    )
}

fn import(seed: u64, reference: Duration, tally: &mut Tally) -> Result<String, String> {
    let mut rng = Rng::new(seed);
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let probes = write_documents(docs.path());
    let at = Duration::from_millis(rng.below(reference.as_millis() as u64));
    let point = format!("after {at:?}");
    let mut child = keel(home.path()).args(["memory", "import"]).arg(docs.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(at);
    let exited_first = child.try_wait().unwrap().is_some();
    sigkill(&mut child);
    let (docs_killed, dup, partial, dup_chunks) = documents_state(home.path());
    if (dup, partial, dup_chunks) != (0, 0, 0) {
        return Err(format!("{point}: after the kill: {dup} duplicated, {partial} partial documents, {dup_chunks} duplicated chunks"));
    }
    // Killed while the import ran (loading the model, reading, embedding or committing), or after it ended.
    if exited_first {
        tally.finished_before_kill += 1;
    } else {
        tally.resumed += 1;
    }
    let out = keel(home.path()).args(["memory", "import", "--json"]).arg(docs.path()).output().unwrap();
    let report: Value = serde_json::from_str(&stdout(&out)).map_err(|e| format!("{point}: re-import: {e}: {}", stderr(&out)))?;
    if report["documents"]["documents_skipped"] != docs_killed || report["documents"]["documents_added"] != DOCUMENTS - docs_killed {
        return Err(format!("{point}: {docs_killed} documents were committed before the kill, the re-import says {}", report["documents"]));
    }
    let state = documents_state(home.path());
    if state != (DOCUMENTS, 0, 0, 0) {
        return Err(format!("{point}: after the re-import (documents, duplicated, partial, duplicated chunks) = {state:?}"));
    }
    // The first and the last document: one committed before the kill (when any was), one after.
    for probe in [&probes[0], &probes[probes.len() - 1]] {
        let search = keel(home.path()).args(["memory", "search", probe, "--json", "--limit", "3"]).output().unwrap();
        let r: Value = serde_json::from_str(&stdout(&search)).map_err(|e| format!("{point}: search: {e}"))?;
        let top = &r["hits"][0];
        if !(top["text"].as_str().is_some_and(|t| t.contains(probe.as_str())) && top["bm25_rank"].is_number() && top["vector_rank"].is_number()) {
            return Err(format!("{point}: {probe:?} is not found first by both searches: {r}"));
        }
    }
    Ok(format!("{point} ({docs_killed} of {DOCUMENTS} documents committed)"))
}

/// The kills of one workload: `KEEL_TORTURE_KILLS` of them (default 50; both workloads run in CI, so 100 a
/// run), from `KEEL_TORTURE_SEED`. Kill i > 0 draws its own seed from the base; kill 0 uses the base itself, so
/// that `--seed S --kills 1` replays a printed kill.
fn torture(workload: &str) {
    if std::env::var("KEEL_TORTURE_WORKLOAD").is_ok_and(|w| w != workload) {
        eprintln!("{workload}: not this run's workload");
        return;
    }
    // CI: 50 kills each of the run and import workloads, 20 of the memory workload (whose kills each search and
    // reindex a copied data dir) and 20 of the download workload (each fetches 98 MB over two seconds).
    let kills = env_u64("KEEL_TORTURE_KILLS", if matches!(workload, "memory" | "download") { 20 } else { 50 });
    let base = env_u64("KEEL_TORTURE_SEED", 0x7027_2026);
    // The uninterrupted reference: how many events a whole run prints, or how long a whole import takes.
    let home = tempfile::tempdir().unwrap();
    let memory_template = (workload == "memory").then(crate::torture_memory::template);
    let download_template = (workload == "download").then(crate::torture_download::template);
    let (reference, reference_import) = if let Some(template) = &memory_template {
        (Reference::default(), crate::torture_memory::reference(template.path()))
    } else if let Some(template) = download_template {
        (Reference::default(), crate::torture_download::reference(template))
    } else if workload == "react" {
        std::fs::create_dir_all(home.path().join(keel::FILES_DIR)).unwrap();
        crate::mcp::write_config(home.path());
        script(home.path());
        let (mut child, seen, reader) = spawn_watched(&mut ask(home.path(), None));
        assert!(child.wait().unwrap().success());
        reader.join().unwrap();
        let printed = seen.lock().unwrap().clone();
        let called = |tool: &str| {
            1 + printed.iter().position(|e| e["event"]["kind"] == "ToolCalled" && e["event"]["tool"] == tool).unwrap_or_else(|| panic!("no {tool} call")) as u64
        };
        let reference = Reference { events: printed.len() as u64, append_called: called("echo.append"), save_called: called("memory_save") };
        assert!(reference.events >= 20, "a whole run printed {} events", reference.events);
        (reference, Duration::ZERO)
    } else {
        let docs = tempfile::tempdir().unwrap();
        write_documents(docs.path());
        let started = Instant::now();
        let out = keel(home.path()).args(["memory", "import"]).arg(docs.path()).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        (Reference::default(), started.elapsed())
    };
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for i in 0..kills {
        let seed = if i == 0 { base } else { Rng::new(base ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D)).next() };
        tally.kills += 1;
        let result = match workload {
            "react" => react(seed, &reference, &mut tally),
            "memory" => {
                let mut rng = Rng::new(seed);
                let template = memory_template.as_ref().unwrap().path();
                crate::torture_memory::kill(template, reference_import, &mut |n| rng.below(n), &mut tally.finished_before_kill)
            }
            "download" => {
                let mut rng = Rng::new(seed);
                crate::torture_download::kill(
                    download_template.unwrap(),
                    reference_import,
                    &mut |n| rng.below(n),
                    &mut tally.before_start,
                    &mut tally.finished_before_kill,
                )
            }
            _ => import(seed, reference_import, &mut tally),
        };
        match result {
            Ok(point) => eprintln!("kill {i}: {workload} seed {seed:#x} {point}: ok"),
            Err(e) => {
                eprintln!("kill {i}: {workload} seed {seed:#x}: VIOLATION {e}");
                failures.push(format!("seed {seed:#x}: {e}\n  reproduce: scripts/torture.sh --seed {seed:#x} --workload {workload} --kills 1"));
            }
        }
    }
    eprintln!("{workload}: {tally:?}");
    assert!(failures.is_empty(), "{workload}: {} invariant violations:\n{}", failures.len(), failures.join("\n"));
    // The kills landed where they were meant to: inside the work, not before or after it, for at least a
    // quarter of them (an import's reference time is measured once, on a machine whose load varies).
    let inside = tally.kills - tally.before_start - tally.finished_before_kill;
    assert!(tally.kills < 4 || inside * 4 >= tally.kills, "{workload}: only {inside} of {} kills landed inside the work: {tally:?}", tally.kills);
    // The kills aimed inside the append reached it: a call in flight was asked about at least once.
    assert!(workload != "react" || tally.kills < 20 || tally.asked > 0, "no kill landed inside the append: {tally:?}");
    assert!(workload != "react" || tally.kills < 20 || (tally.fallback > 0 && tally.fallback < tally.kills), "{tally:?}");
}

#[test]
fn torture_react_runs_killed_at_seeded_points_keep_every_invariant() {
    torture("react");
}

#[test]
fn torture_imports_killed_at_seeded_points_keep_every_invariant() {
    torture("import");
}

#[test]
fn torture_memory_edits_and_reindexes_killed_at_seeded_points_keep_every_invariant() {
    torture("memory");
}

#[test]
fn torture_model_downloads_killed_at_seeded_points_keep_every_invariant() {
    torture("download");
}
