//! The whole fault matrix: every fault mode of `keel eval run`, fired once and always, on every built-in tool and
//! on the backend, through the real stack on a scripted model that invents a value whenever a tool fails. What
//! Keel did (retry, alternative tool, the error reported, the user asked, verification, how the run ended) must be
//! the committed baseline (`tests/evals/agent/fault_matrix.baseline.json`), and no cell may end with the invented
//! value while the tool never answered. Recovery is Keel's, not the model's: the model here recovers nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel::eval::agent::{Options, Report};
use keel::llm::scripted::{ScriptRule, ScriptedBackend};
use keel::{App, OpenOptions};
use serde_json::json;

use super::common::models_dir;

/// The value the scripted model invents when a tool fails.
const INVENTED: &str = "777777";

const MODES: [&str; 6] = ["error", "timeout", "malformed-output", "rate-limit", "schema-drift", "slow"];

/// Valid arguments for each built-in tool (a new built-in must be added here: the test checks the list is whole).
fn arguments() -> BTreeMap<&'static str, serde_json::Value> {
    BTreeMap::from([
        ("calculator", json!({ "expression": "12*7" })),
        ("datetime", json!({ "timezone": "UTC" })),
        ("memory_search", json!({ "query": "dog" })),
        ("memory_save", json!({ "text": "The matrix test ran." })),
        ("files_read", json!({ "path": "notes.txt" })),
        ("files_list", json!({})),
        ("files_write", json!({ "path": "out.txt", "content": "written by the matrix" })),
        ("http_fetch", json!({ "url": "https://example.com/" })),
    ])
}

fn rule(when: &str, reply: String) -> ScriptRule {
    ScriptRule { when: when.into(), reply, delay_ms: 0 }
}

/// A model that calls the cell's tool, answers plainly when it worked, and invents a value when it did not (also
/// when Keel tells it that its answer failed a check, or that a call repeats).
fn model() -> Arc<ScriptedBackend> {
    let invent = format!(r#"{{"answer": "The result is {INVENTED}."}}"#);
    let mut rules = vec![
        rule("status=\"error\"", invent.clone()),
        rule("A check of your answer failed", invent.clone()),
        // Keel's second chance after a reply that broke the contract (the backend's garbled replies).
        rule("[Keel]", r#"{"answer": "The backend answered."}"#.into()),
        rule("status=\"ok\"", r#"{"answer": "Done: the tool answered."}"#.into()),
        rule("not repeated", invent.clone()),
        rule("matrix @backend", r#"{"answer": "The backend answered."}"#.into()),
    ];
    for (tool, args) in arguments() {
        rules.push(rule(&format!("matrix {tool}"), json!({ "tool": tool, "arguments": args }).to_string()));
    }
    Arc::new(ScriptedBackend::with_rules(rules))
}

/// One task per cell: `tool/mode/times`.
fn suite(tool: &str) -> String {
    let mut lines = Vec::new();
    for mode in MODES {
        for times in [json!(1), json!("always")] {
            let id = format!("{tool}/{mode}/{}", times.as_str().map(str::to_owned).unwrap_or_else(|| times.to_string()));
            let task = json!({
                "id": id,
                "category": "fault-matrix",
                "source": "project",
                "mode": "react",
                "prompt": format!("matrix {tool}"),
                "fixtures": { "notes.txt": "The matrix note." },
                "approve": ["files_write", "memory_save", "http_fetch"],
                "fault": { "tool": tool, "mode": mode, "times": times },
            });
            lines.push(task.to_string());
        }
    }
    lines.join("\n")
}

fn run(app: &App, tool: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("matrix.jsonl");
    std::fs::write(&path, suite(tool)).unwrap();
    let options = Options { tasks_file: path, backend: None, repeat: 1, limit: None, category: None, keep_runs: false };
    app.evaluate_tasks(&options, &mut |_, _, _| {}).unwrap()
}

#[test]
fn every_fault_on_every_tool_and_the_backend_gets_the_documented_recovery_and_no_invented_value() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open_with_backend(OpenOptions { home: home.path().to_owned(), models_dir: models_dir() }, model()).unwrap();
    let specs = app.list_tools();
    let mut builtins: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    builtins.sort();
    let covered: Vec<String> = arguments().keys().map(|k| k.to_string()).collect();
    assert_eq!(builtins, covered, "the matrix must cover every built-in tool");

    // One thread per tool: most of the time is spent waiting out timeouts and delays.
    let targets: Vec<String> = covered.iter().cloned().chain(["@backend".to_owned()]).collect();
    let reports: Vec<(String, Report)> = std::thread::scope(|s| {
        let handles: Vec<_> = targets.iter().map(|t| (t.clone(), s.spawn(|| run(&app, t)))).collect();
        handles.into_iter().map(|(t, h)| (t, h.join().expect("a matrix thread panicked"))).collect()
    });

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut broken = Vec::new();
    for (target, report) in &reports {
        assert!(report.errors.is_empty(), "{target}: {:?}", report.errors);
        assert_eq!(report.tasks.len(), MODES.len() * 2, "{target}");
        for task in &report.tasks {
            let a = &task.attempts[0];
            assert!(a.error.is_none(), "{}: the harness failed: {:?}", task.id, a.error);
            seen.insert(task.id.clone(), a.path.join(" > "));
            let mode = task.id.split('/').nth(1).unwrap();
            let once = task.id.ends_with("/1");
            let spans: Vec<_> = a.spans.iter().filter(|s| s.label == format!("tool {target}")).collect();
            // Offline, the real http_fetch refuses every call (it is off unless KEEL_HTTP_FETCH=1, and no address
            // here answers): once the fault is spent, it fails on its own.
            let real_tool_answers = target != "http_fetch";
            if target != "@backend" {
                // The fault landed where it was meant to: the tool was called, and failed (or was slow).
                if spans.is_empty() {
                    broken.push(format!("{}: {target} was never called ({:?})", task.id, a.path));
                    continue;
                }
                if mode == "slow" {
                    if !((spans[0].ok || !real_tool_answers) && spans[0].end_ms - spans[0].start_ms >= 900) {
                        broken.push(format!("{}: the delay did not land, or the slow call failed: {:?}", task.id, spans[0]));
                    }
                } else if spans[0].ok {
                    broken.push(format!("{}: the first call did not fail", task.id));
                }
                let answered_ever = spans.iter().any(|s| s.ok);
                if !answered_ever && a.answer.contains(INVENTED) {
                    broken.push(format!("{}: {target} never answered, yet the answer is {:?}", task.id, a.answer));
                }
                // A transient fault fired once is retried, and the retry gets the tool's answer; but a call that
                // timed out may have done its work, so it is repeated only when that is safe.
                let retried = a.path.iter().any(|p| p == "retried");
                let spec = specs.iter().find(|s| &s.name == target).expect("a built-in tool");
                let safe_to_repeat = spec.idempotent || !spec.effect.has_side_effects();
                let retry_expected = mode == "rate-limit" || (mode == "timeout" && safe_to_repeat);
                if once && retry_expected && !(retried && (answered_ever || !real_tool_answers)) {
                    broken.push(format!("{}: a transient fault fired once was not retried to an answer ({:?})", task.id, a.path));
                }
                if mode == "timeout" && !safe_to_repeat && (retried || spans.len() != 1) {
                    broken.push(format!("{}: a timed-out call that is not safe to repeat was repeated ({:?})", task.id, a.path));
                }
            } else {
                // A backend that fails (an error, a 429, no answer in time) ends the run as failed, with no answer
                // made up; a garbled reply gets one constrained second chance; a slow one is waited for.
                let ended = a.path.last().map(String::as_str);
                let want = match mode {
                    "error" | "rate-limit" | "timeout" => "failed",
                    "slow" => "answered",
                    _ if once => "answered",
                    _ => "failed",
                };
                let garbled_shown = matches!(mode, "malformed-output" | "schema-drift") && want == "answered" && a.answer != "The backend answered.";
                if ended != Some(want) || a.answer.contains(INVENTED) || garbled_shown {
                    broken.push(format!("{}: ended {ended:?} with {:?}, not {want}", task.id, a.answer));
                }
            }
        }
    }
    let table = serde_json::to_string_pretty(&seen).unwrap();
    let baseline: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/evals/agent/fault_matrix.baseline.json")).unwrap()).unwrap();
    let differ: Vec<String> = seen
        .iter()
        .filter(|(k, v)| baseline.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: baseline {:?}, now {v:?}", baseline.get(k)))
        .chain(baseline.keys().filter(|k| !seen.contains_key(*k)).map(|k| format!("{k}: in the baseline, not run")))
        .collect();
    assert!(broken.is_empty(), "{}\n\nall cells:\n{table}", broken.join("\n"));
    assert!(differ.is_empty(), "the recovery differs from the baseline:\n{}\n\nall cells:\n{table}", differ.join("\n"));
}
