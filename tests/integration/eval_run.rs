//! `keel eval run` on the scripted backend: tasks run in throwaway data dirs and are judged from what happened
//! (a task built to fail is reported failed, with its reason), faults are injected at the tool seam, fixtures are
//! in the files folder, bad lines are errors naming the line and field while the other tasks run, and the user's
//! own data dir is left alone.

use std::sync::Arc;

use keel::eval::agent::Options;
use keel::llm::scripted::{ScriptRule, ScriptedBackend};
use keel::{App, OpenOptions};

use super::common::models_dir;

fn rule(when: &str, reply: &str) -> ScriptRule {
    ScriptRule { when: when.into(), reply: reply.into(), delay_ms: 0 }
}

/// A model that calls the calculator for 12 × 7 (also when given a second chance after a broken reply), reads
/// notes.txt when asked for the code word, and answers from what the tools gave (or says a tool failed).
fn scripted() -> Arc<ScriptedBackend> {
    Arc::new(ScriptedBackend::with_rules(vec![
        rule("status=\"error\"", r#"{"answer": "The calculator failed, so I could not compute it."}"#),
        rule("heron", r#"{"answer": "The code word is heron."}"#),
        rule("\"84\"", r#"{"answer": "12 * 7 = 84"}"#),
        rule("calculator to compute 12 * 7", r#"{"tool": "calculator", "arguments": {"expression": "12*7"}}"#),
        // Keel's feedback after a reply that broke the contract: the second chance.
        rule("Reply with one JSON object as described", r#"{"tool": "calculator", "arguments": {"expression": "12*7"}}"#),
        rule("code word", r#"{"tool": "files_read", "arguments": {"path": "notes.txt"}}"#),
    ]))
}

fn run(app: &App, suite: &str, repeat: u32) -> keel::eval::agent::Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suite.jsonl");
    std::fs::write(&path, suite).unwrap();
    let options = Options { tasks_file: path, backend: None, repeat, limit: None, category: None };
    app.evaluate_tasks(&options, &mut |_, _, _| {}).unwrap()
}

#[test]
fn tasks_are_judged_by_what_happened_under_faults_and_with_fixtures() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open_with_backend(OpenOptions { home: home.path().to_owned(), models_dir: models_dir() }, scripted()).unwrap();
    let suite = [
        r#"{"id": "calc", "category": "tools", "prompt": "Use the calculator to compute 12 * 7.", "expect_tool": "calculator", "expect_number": 84}"#,
        r#"{"id": "calc-fails", "category": "faults", "prompt": "Use the calculator to compute 12 * 7.", "fault": {"tool": "calculator", "mode": "error", "times": "always", "message": "boom"}, "expect_tool_error": true, "expect_recovery": "report-failure", "expect_no_fabrication": true, "expect_number": 84}"#,
        r#"{"id": "control", "category": "tools", "prompt": "Use the calculator to compute 12 * 7.", "expect_answer_contains": "Paris", "expect_no_tool_calls": true}"#,
        r#"{"id": "fixture", "category": "files", "prompt": "Read the file notes.txt and tell me the code word in it.", "fixtures": {"notes.txt": "The code word is heron."}, "expect_tool": "files_read", "expect_answer_contains": "heron", "expect_no_side_effect": true}"#,
    ]
    .join("\n");
    let report = run(&app, &suite, 2);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let task = |id: &str| report.tasks.iter().find(|t| t.id == id).unwrap_or_else(|| panic!("no task {id}"));
    let calc = task("calc");
    assert!(calc.attempts.iter().all(|a| a.passed), "{:?}", calc.attempts);
    assert_eq!(calc.attempts[0].tools_called, ["calculator"]);
    assert!(!calc.attempts[0].run_ids.is_empty());

    // The fault landed: the calculator's calls failed, the answer says so, and 84 is not claimed.
    let fails = task("calc-fails");
    assert!(fails.attempts.iter().all(|a| a.passed), "{:?}", fails.attempts);
    assert!(fails.attempts[0].answer.contains("could not"), "{}", fails.attempts[0].answer);

    // The positive control fails, with the reasons of both expectations.
    let control = task("control");
    assert!(control.attempts.iter().all(|a| !a.passed));
    let reasons = control.attempts[0].failures.join("\n");
    assert!(reasons.contains("expect_answer_contains") && reasons.contains("Paris") && reasons.contains("expect_no_tool_calls"), "{reasons}");

    // The fixture was in the run's files folder: the tool read it.
    assert!(task("fixture").attempts.iter().all(|a| a.passed), "{:?}", task("fixture").attempts);

    // Totals: 3 of 4 tasks pass every time; pass^2 = pass@2 on a deterministic backend.
    assert_eq!(report.total.tasks, 4);
    assert_eq!(report.total.attempts, 8);
    assert!((report.total.success - 0.75).abs() < 1e-9, "{}", report.total.success);
    assert!((report.total.pass_hat_k - 0.75).abs() < 1e-9 && (report.total.pass_at_k - 0.75).abs() < 1e-9);
    assert_eq!(report.total.recovery_rate, Some(1.0));
    assert_eq!(report.categories.iter().map(|c| c.category.as_str()).collect::<Vec<_>>(), ["faults", "files", "tools"]);

    // Nothing of it is in the user's own data dir.
    assert!(app.list_conversations().unwrap().is_empty(), "the evaluation wrote into the user's data dir");
}

#[test]
fn a_bad_line_is_an_error_naming_the_line_and_field_and_the_others_still_run() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open_with_backend(OpenOptions { home: home.path().to_owned(), models_dir: models_dir() }, scripted()).unwrap();
    let suite = [
        r#"{"id": "ok", "category": "tools", "prompt": "Use the calculator to compute 12 * 7.", "expect_number": 84}"#,
        r#"{"id": "broken", "category": "tools", "prompt": "#,
        r#"{"id": "unknown-key", "category": "tools", "prompt": "hi", "expect_magic": true}"#,
        r#"{"id": "unknown-tool", "category": "tools", "prompt": "hi", "expect_tool": "teleport"}"#,
        r#"{"id": "unknown-mode", "category": "faults", "prompt": "hi", "fault": {"tool": "calculator", "mode": "explode"}}"#,
        r#"{"id": "escape", "category": "files", "prompt": "hi", "fixtures": {"../outside.txt": "x"}}"#,
        r#"{"id": "no-prompt", "category": "tools"}"#,
        "",
        r#"{"id": "ok", "category": "tools", "prompt": "again"}"#,
    ]
    .join("\n");
    let report = run(&app, &suite, 1);
    let errors: Vec<(usize, &str)> = report.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        errors,
        [(2, ""), (3, "expect_magic"), (4, "expect_tool"), (5, "fault"), (6, "fixtures"), (7, "prompt"), (9, "id")],
        "{:#?}",
        report.errors
    );
    assert!(report.errors[3].message.contains("explode"), "{}", report.errors[3].message);
    assert!(report.errors[2].message.contains("teleport"), "{}", report.errors[2].message);
    assert_eq!(report.tasks.len(), 1);
    assert!(report.tasks[0].attempts[0].passed, "{:?}", report.tasks[0].attempts);
}

/// Faults of the backend (`"tool": "@backend"`): a first reply of the wrong shape is rejected and the run recovers on the
/// model's second chance; a backend that always fails leaves no answer, and the task fails with the reason.
#[test]
fn backend_faults_land_and_are_judged() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open_with_backend(OpenOptions { home: home.path().to_owned(), models_dir: models_dir() }, scripted()).unwrap();
    let suite = [
        r#"{"id": "garbled-once", "category": "faults", "prompt": "Use the calculator to compute 12 * 7.", "fault": {"tool": "@backend", "mode": "schema-drift", "times": 1}, "expect_recovery": "retry-succeeds", "expect_number": 84}"#,
        r#"{"id": "down", "category": "faults", "prompt": "Use the calculator to compute 12 * 7.", "fault": {"tool": "@backend", "mode": "error", "times": "always", "message": "the server is down"}, "expect_number": 84}"#,
    ]
    .join("\n");
    let report = run(&app, &suite, 1);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let garbled = &report.tasks[0].attempts[0];
    assert!(garbled.passed, "{garbled:?}");
    assert!(garbled.rejected_calls >= 1, "the garbled reply never reached the run: {garbled:?}");
    let down = &report.tasks[1].attempts[0];
    assert!(!down.passed && down.tools_called.is_empty(), "{down:?}");
    assert!(down.failures.iter().any(|f| f.starts_with("expect_number")), "{down:?}");
}
