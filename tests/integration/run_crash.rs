//! Crash recovery with real processes: a multi-step run (`keel ask` with the scripted backend, a calculator, a
//! non-idempotent memory save, another calculation, an answer) is killed with SIGKILL at 20 random points.
//! A kill point is "after the run's k-th event is committed, plus d milliseconds" with k and d drawn from a
//! seeded generator, so the points fall inside the run however fast or slow this machine is today.
//! After each kill a new process resumes it: it must end with the same answer as an uninterrupted run, or (if it
//! was killed inside the memory save, whose outcome is then unknown) wait for the user, and finish once
//! approved. No event may be lost or recorded twice.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{keel, stderr, stdout};

const ANSWER: &str = "Done: 42 saved, and 43.";

fn script(dir: &Path) -> std::path::PathBuf {
    let rules = json!({"rules": [
        {"when": "Work it out", "reply": r#"{"tool": "calculator", "arguments": {"expression": "6*7"}}"#, "delay_ms": 120},
        {"when": "\"result\":\"42\"", "reply": r#"{"tool": "memory_save", "arguments": {"text": "The answer is 42"}}"#, "delay_ms": 120},
        {"when": "tool=\"memory_save\" status=\"ok\"", "reply": r#"{"tool": "calculator", "arguments": {"expression": "42+1"}}"#, "delay_ms": 120},
        {"when": "\"result\":\"43\"", "reply": format!(r#"{{"answer": "{ANSWER}"}}"#), "delay_ms": 120},
    ]});
    let path = dir.join("script.json");
    std::fs::write(&path, rules.to_string()).unwrap();
    path
}

fn keel_scripted(home: &Path, script: &Path) -> std::process::Command {
    let mut cmd = keel(home);
    cmd.env("KEEL_SCRIPTED_BACKEND", script);
    cmd
}

fn ask(home: &Path, script: &Path) -> std::process::Command {
    let mut cmd = keel_scripted(home, script);
    cmd.args(["ask", "--json", "--mode", "react", "--allow", "memory_save", "Work it out and save it"]);
    cmd
}

fn runs(home: &Path, script: &Path) -> Vec<Value> {
    let out = keel_scripted(home, script).args(["runs", "list", "--json", "--limit", "1000"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn events(home: &Path, script: &Path, id: i64) -> Vec<Value> {
    let out = keel_scripted(home, script).args(["runs", "show", &id.to_string(), "--json"]).output().unwrap();
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["events"].as_array().unwrap().clone()
}

/// No event lost or duplicated: contiguous numbering, one start and one finish, each step's model call and each
/// tool attempt recorded once (except a call whose outcome was unknown and that the user chose to run again).
fn check_log(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64().unwrap() as usize, i + 1);
    }
    let kind = |e: &Value| e["event"]["kind"].as_str().unwrap().to_owned();
    let count = |k: &str| events.iter().filter(|e| kind(e) == k).count();
    assert_eq!(count("RunStarted"), 1);
    assert_eq!(count("RunFinished"), 1);
    assert_eq!(kind(events.last().unwrap()), "RunFinished");
    let mut steps: Vec<u64> = events.iter().filter(|e| kind(e) == "ModelCalled").map(|e| e["event"]["step"].as_u64().unwrap()).collect();
    let n = steps.len();
    steps.dedup();
    assert_eq!(steps.len(), n, "a step number was recorded twice");
    let mut attempts: Vec<(String, u64)> = events
        .iter()
        .filter(|e| kind(e) == "ToolCalled")
        .map(|e| (e["event"]["call_id"].as_str().unwrap().to_owned(), e["event"]["attempt"].as_u64().unwrap()))
        .collect();
    let approved_again = count("OutcomeUnknown");
    let total = attempts.len();
    attempts.sort();
    attempts.dedup();
    assert_eq!(total - attempts.len(), approved_again, "a tool attempt was recorded twice");
}

#[test]
fn a_run_killed_at_twenty_random_points_resumes_to_the_same_answer_or_waits_for_the_user() {
    let home = tempfile::tempdir().unwrap();
    let script = script(home.path());

    // The uninterrupted run: its answer and how many events a whole run has.
    let reference = ask(home.path(), &script).output().unwrap();
    assert!(reference.status.success(), "{}\n{}", stdout(&reference), stderr(&reference));
    let v: Value = serde_json::from_str(&stdout(&reference)).unwrap();
    assert_eq!(v["answer"], ANSWER);
    let log = events(home.path(), &script, v["run_id"].as_i64().unwrap());
    check_log(&log);
    let total_events = log.len() as u64;
    let db = rusqlite::Connection::open(home.path().join("keel.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let events_after = |run: i64| -> u64 {
        db.query_row("SELECT count(*) FROM run_events WHERE run_id > ?1", [run], |r| r.get::<_, i64>(0)).unwrap() as u64
    };

    // Pseudo-random kill points over the whole run, reproducible from the seed.
    let mut seed: u64 = 0x5EED_2026;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut resumed, mut asked, mut not_started) = (0, 0, 0);
    for i in 0..20 {
        let known: Vec<i64> = runs(home.path(), &script).iter().map(|r| r["id"].as_i64().unwrap()).collect();
        let last = known.iter().copied().max().unwrap_or(0);
        // After event k (1 = RunStarted; never the last one), then up to one model call's delay more.
        let k = 1 + next() % (total_events - 1);
        let extra = Duration::from_millis(next() % 120);
        let at = format!("event {k} + {extra:?}");
        let mut child = ask(home.path(), &script).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while events_after(last) < k && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(extra);
        let _ = child.kill();
        let _ = child.wait();
        let new: Vec<Value> = runs(home.path(), &script).into_iter().filter(|r| !known.contains(&r["id"].as_i64().unwrap())).collect();
        let Some(run) = new.first() else {
            not_started += 1;
            continue;
        };
        let id = run["id"].as_i64().unwrap();
        // Opening the data dir again (any keel command) recorded the interruption; the status says what is next.
        let status = runs(home.path(), &script).into_iter().find(|r| r["id"] == id).unwrap()["status"].as_str().unwrap().to_owned();
        let out = match status.as_str() {
            "answered" => continue,
            "interrupted" => {
                resumed += 1;
                keel_scripted(home.path(), &script).args(["runs", "resume", &id.to_string(), "--json"]).output().unwrap()
            }
            "awaiting_user" => {
                asked += 1;
                let evs = events(home.path(), &script, id);
                assert!(evs.iter().any(|e| e["event"]["kind"] == "OutcomeUnknown"), "kill {i}: waits without an unknown outcome");
                keel_scripted(home.path(), &script).args(["runs", "answer", &id.to_string(), "--approve", "--json"]).output().unwrap()
            }
            other => panic!("kill {i} at {at}: the run was left {other}"),
        };
        assert!(out.status.success(), "kill {i} at {at}: {}\n{}", stdout(&out), stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["answer"], ANSWER, "kill {i} at {at}");
        check_log(&events(home.path(), &script, id));
    }
    eprintln!("20 kills: {resumed} resumed, {asked} waited for the user, {not_started} before the run began");
    assert!(resumed + asked >= 15, "too few kills landed inside the run: {resumed} resumed, {asked} asked");
}

#[test]
fn runs_replay_and_fork_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    let script = script(home.path());
    let out = ask(home.path(), &script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["run_id"].as_i64().unwrap();
    let replay = keel_scripted(home.path(), &script).args(["runs", "replay", &id.to_string(), "--json"]).output().unwrap();
    let r: Value = serde_json::from_str(&stdout(&replay)).unwrap();
    assert_eq!((r["consistent"].as_bool(), r["matches_projection"].as_bool()), (Some(true), Some(true)), "{r}");
    assert_eq!(r["events"], Value::Array(events(home.path(), &script, id)));
    assert_eq!(r["state"]["budget_used"]["tool_calls"], 3);
    // From step 2 (after the first calculation and the memory save were asked for), the fork goes on alone.
    let fork = keel_scripted(home.path(), &script).args(["runs", "fork", &id.to_string(), "--from-step", "2", "--json"]).output().unwrap();
    assert!(fork.status.success(), "{}\n{}", stdout(&fork), stderr(&fork));
    let f: Value = serde_json::from_str(&stdout(&fork)).unwrap();
    assert_eq!(f["answer"], ANSWER);
    assert_ne!(f["run_id"], id);
    check_log(&events(home.path(), &script, f["run_id"].as_i64().unwrap()));
    let bad = keel_scripted(home.path(), &script).args(["runs", "fork", &id.to_string(), "--from-step", "99", "--json"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
