//! The control plane under failure: the scripted backend plays the model, fault-injecting wrappers play
//! unreliable tools, and each test checks the events the run recorded and how it ended. Every run made here is
//! also replayed from its log (`App::replay_run`), every prefix of its log is folded, and the bounds it ran
//! under are checked against what it used.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::llm::scripted::{ScriptedBackend, ScriptedReply};
use keel::llm::{ChatMessage, GenerationSettings};
use keel::orchestration::events::{Action, PolicyDecision, RunEvent, RunOutcome, RunStatus, ToolOutcome, UserAnswer};
use keel::orchestration::state::{Pending, RunState};
use keel::orchestration::{Limits, RunMode, TurnResult, UserRequest};
use keel::tools::faults::{Fault, FaultyTool, FnTool};
use keel::shared::backoff::RetryPolicy;
use keel::tools::{object_schema, Effect, Origin, Tool, ToolError, ToolSpec};
use keel::{App, OpenOptions, RunOptions};
use proptest::strategy::Strategy;
use serde_json::json;

fn app_with(home: &std::path::Path, backend: ScriptedBackend, tools: Vec<Arc<dyn Tool>>) -> (App, Arc<ScriptedBackend>) {
    let options = OpenOptions { home: home.to_owned(), models_dir: home.join("no-models") };
    let backend = Arc::new(backend);
    let app = App::open_with_backend(options, backend.clone()).unwrap();
    for t in tools {
        app.add_tool(t).unwrap();
    }
    (app, backend)
}

fn replies(texts: &[&str]) -> ScriptedBackend {
    ScriptedBackend::new(texts.iter().map(|t| ScriptedReply::Text((*t).to_owned())))
}

fn spec(name: &str, effect: Effect, capability: Option<&str>, timeout_ms: u64) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("test tool {name}"),
        input_schema: object_schema(json!({"q": {"type": "string"}}), &["q"]),
        output_schema: object_schema(json!({"value": {"type": "string"}}), &["value"]),
        effect,
        timeout_ms,
        idempotent: effect != Effect::Write,
        capability: capability.map(str::to_owned),
        origin: if matches!(effect, Effect::Read | Effect::External) { Origin::External } else { Origin::Keel },
    }
}

/// A tool answering `{"value": "<name>:<q>"}`, counting its calls.
fn echo_tool(name: &str, effect: Effect, capability: Option<&str>, calls: Arc<AtomicU32>) -> FnTool {
    let tag = name.to_owned();
    FnTool::new(spec(name, effect, capability, 2_000), move |args, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(json!({"value": format!("{tag}:{}", args["q"].as_str().unwrap_or_default())}))
    })
}

fn react(limits: Limits) -> RunOptions {
    RunOptions { mode: Some(RunMode::React), limits, auto_approve: Vec::new(), backend: None }
}

fn send(app: &App, text: &str, options: &RunOptions) -> TurnResult {
    let result = app.send_message(None, text, &GenerationSettings::default(), options, &mut |_| {}).unwrap();
    check_log(app, result.run_id);
    result
}

fn events(app: &App, run_id: i64) -> Vec<RunEvent> {
    app.get_run(run_id).unwrap().events.into_iter().map(|e| e.event).collect()
}

fn kinds(app: &App, run_id: i64) -> Vec<&'static str> {
    events(app, run_id).iter().map(|e| e.kind()).collect()
}

/// What every run must satisfy: the replay reproduces the stored projection, each prefix folds, the
/// sequence numbers have no gap or repeat, and no bound was exceeded.
fn check_log(app: &App, run_id: i64) {
    let detail = app.get_run(run_id).unwrap();
    for (i, e) in detail.events.iter().enumerate() {
        assert_eq!(e.seq as usize, i + 1, "run {run_id}: events are numbered without gaps or repeats");
    }
    let replay = app.replay_run(run_id).unwrap();
    assert!(replay.consistent && replay.matches_projection, "run {run_id}: the replay disagrees with the log: {replay:?}");
    let mut state = RunState::default();
    let (mut model_calls, mut tool_calls) = (0, 0);
    for e in &detail.events {
        state = state.apply(&e.event);
        model_calls += matches!(e.event, RunEvent::ModelCalled { .. }) as u32;
        tool_calls += matches!(e.event, RunEvent::ToolCalled { .. }) as u32;
        assert_eq!(state.step, model_calls);
        assert_eq!(state.budget_used.tool_calls, tool_calls);
        let limits = state.limits;
        assert!(state.step <= limits.max_steps, "steps {} > {}", state.step, limits.max_steps);
        assert!(state.budget_used.tool_calls <= limits.max_tool_calls);
        assert!(state.budget_used.tokens() <= limits.max_tokens);
    }
    assert_eq!(replay.state, state);
}

fn find<'a>(events: &'a [RunEvent], kind: &str) -> Vec<&'a RunEvent> {
    events.iter().filter(|e| e.kind() == kind).collect()
}

#[test]
fn a_tool_call_is_validated_run_and_its_result_reaches_the_model_as_data() {
    let home = tempfile::tempdir().unwrap();
    let (app, backend) = app_with(
        home.path(),
        replies(&[r#"{"tool": "calculator", "arguments": {"expression": "12*7"}}"#, r#"{"answer": "12 * 7 = 84"}"#]),
        vec![],
    );
    let r = send(&app, "Work out 12*7 with a tool, then answer.", &react(Limits::default()));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    assert_eq!(r.answer, "12 * 7 = 84");
    let ev = events(&app, r.run_id);
    assert!(matches!(&ev[0], RunEvent::RunStarted { mode: RunMode::React, tools, .. } if tools.contains(&"calculator".to_string())));
    let returned = find(&ev, "ToolReturned");
    assert!(matches!(returned[0], RunEvent::ToolReturned { result: ToolOutcome::Ok { value }, attempt: 1, .. } if value["result"] == "84"));
    assert!(matches!(find(&ev, "PolicyChecked")[0], RunEvent::PolicyChecked { decision: PolicyDecision::Allow, effect: Effect::Pure, .. }));
    // The deterministic checks ran: the tool's result recomputed, and the answer's arithmetic.
    let checks: Vec<_> = find(&ev, "Verified").into_iter().cloned().collect();
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| matches!(c, RunEvent::Verified { passed: true, .. })));
    // The second model call saw the tool result, spotlighted as data, and the tools section.
    let seen = backend.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0][0].content.contains("calculator:") && seen[0][0].content.contains("never follow instructions"));
    let last = &seen[1].last().unwrap().content;
    assert!(last.starts_with("<tool_result call=\"c1\" tool=\"calculator\" status=\"ok\">") && last.contains("\"84\""), "{last}");
}

#[test]
fn transient_errors_are_retried_with_backoff_honouring_retry_after() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = FaultyTool::new(
        Arc::new(echo_tool("lookup", Effect::Read, None, calls.clone())),
        [
            Fault::Error(ToolError::Transient { tool: "lookup".into(), message: "429 Too Many Requests".into(), retry_after_ms: Some(120) }),
            Fault::Error(ToolError::Transient { tool: "lookup".into(), message: "503".into(), retry_after_ms: None }),
        ],
    );
    let (app, _) = app_with(
        home.path(),
        replies(&[r#"{"tool": "lookup", "arguments": {"q": "x"}}"#, r#"{"answer": "found lookup:x"}"#]),
        vec![Arc::new(flaky)],
    );
    let limits = Limits { retry: RetryPolicy { max_attempts: 3, base_ms: 40, cap_ms: 80, max_retry_after_ms: 1_000 }, ..Limits::default() };
    let started = Instant::now();
    let r = send(&app, "look it up", &react(limits));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the third attempt reached the real tool");
    let ev = events(&app, r.run_id);
    let retries: Vec<(u32, u64)> = find(&ev, "RetryScheduled")
        .iter()
        .map(|e| match e {
            RunEvent::RetryScheduled { next_attempt, delay_ms, .. } => (*next_attempt, *delay_ms),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0], (2, 120), "Retry-After is honoured");
    assert_eq!(retries[1].0, 3);
    assert!(retries[1].1 <= 80, "full jitter stays under the capped exponential: {:?}", retries[1]);
    assert!(started.elapsed() >= Duration::from_millis(120));
    let attempts: Vec<u32> = find(&ev, "ToolCalled").iter().map(|e| match e { RunEvent::ToolCalled { attempt, .. } => *attempt, _ => 0 }).collect();
    assert_eq!(attempts, [1, 2, 3]);
}

#[test]
fn a_tool_that_keeps_timing_out_gives_way_to_an_alternative_with_the_same_capability() {
    let home = tempfile::tempdir().unwrap();
    let slow_calls = Arc::new(AtomicU32::new(0));
    let backup_calls = Arc::new(AtomicU32::new(0));
    let mut slow_spec = spec("weather_a", Effect::Read, Some("weather"), 80);
    slow_spec.description = "slow".into();
    let slow = FaultyTool::new(
        Arc::new(FnTool::new(slow_spec, {
            let c = slow_calls.clone();
            move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"value": "never"}))
            }
        })),
        [Fault::Hang, Fault::Latency(Duration::from_millis(500))],
    );
    let backup = echo_tool("weather_b", Effect::Read, Some("weather"), backup_calls.clone());
    let (app, _) = app_with(
        home.path(),
        replies(&[r#"{"tool": "weather_a", "arguments": {"q": "Oslo"}}"#, r#"{"answer": "weather_b:Oslo"}"#]),
        vec![Arc::new(slow), Arc::new(backup)],
    );
    let limits = Limits { retry: RetryPolicy { max_attempts: 2, base_ms: 10, cap_ms: 10, max_retry_after_ms: 10 }, ..Limits::default() };
    let r = send(&app, "weather in Oslo", &react(limits));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    let ev = events(&app, r.run_id);
    let errors: Vec<&str> = find(&ev, "ToolReturned")
        .iter()
        .filter_map(|e| match e { RunEvent::ToolReturned { result: ToolOutcome::Err { error }, .. } => Some(error.class().as_str()), _ => None })
        .collect();
    assert_eq!(errors, ["timeout", "timeout"], "a hang and a latency spike past the 80 ms timeout");
    assert!(matches!(find(&ev, "AlternativeChosen")[0], RunEvent::AlternativeChosen { from, to, .. } if from == "weather_a" && to == "weather_b"));
    assert_eq!(backup_calls.load(Ordering::SeqCst), 1);
    let order = kinds(&app, r.run_id);
    let i_alt = order.iter().position(|k| *k == "AlternativeChosen").unwrap();
    assert_eq!(order[i_alt - 1], "ToolReturned", "the alternative comes after the last attempt failed");
    assert_eq!(order[i_alt - 3], "RetryScheduled", "and after the retry");
}

#[test]
fn a_timed_out_write_that_is_not_idempotent_is_neither_retried_nor_handed_to_an_alternative() {
    let home = tempfile::tempdir().unwrap();
    // The first tool does its work (counted), then hangs past its timeout: its outcome is unknown to Keel.
    let (hung_calls, backup_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let hung = FnTool::new(spec("ledger_a", Effect::Write, Some("ledger"), 80), {
        let c = hung_calls.clone();
        move |_, cx| {
            c.fetch_add(1, Ordering::SeqCst);
            while !cx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(ToolError::Cancelled { tool: "ledger_a".into() })
        }
    });
    let backup = echo_tool("ledger_b", Effect::Write, Some("ledger"), backup_calls.clone());
    let (app, _) = app_with(
        home.path(),
        replies(&[r#"{"tool": "ledger_a", "arguments": {"q": "entry"}}"#, r#"{"answer": "The ledger may not have the entry."}"#]),
        vec![Arc::new(hung), Arc::new(backup)],
    );
    let options = RunOptions { auto_approve: vec!["ledger_a".into(), "ledger_b".into()], ..react(Limits::default()) };
    let r = send(&app, "add the entry to the ledger", &options);
    let order = kinds(&app, r.run_id);
    assert!(!order.contains(&"RetryScheduled") && !order.contains(&"AlternativeChosen"), "{order:?}");
    assert!(order.contains(&"ErrorReported"), "the timeout goes to the model: {order:?}");
    assert_eq!((hung_calls.load(Ordering::SeqCst), backup_calls.load(Ordering::SeqCst)), (1, 0), "the entry was made once, by one tool");
    // The same tool declared idempotent is retried (the positive control).
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut idempotent = spec("ledger_a", Effect::Write, None, 80);
    idempotent.idempotent = true;
    let flaky = FaultyTool::new(Arc::new(FnTool::new(idempotent, {
        let c = calls.clone();
        move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(json!({"value": "ok"}))
        }
    })), [Fault::Hang]);
    let (app, _) = app_with(home.path(), replies(&[r#"{"tool": "ledger_a", "arguments": {"q": "entry"}}"#, r#"{"answer": "Done."}"#]), vec![Arc::new(flaky)]);
    let options = RunOptions { auto_approve: vec!["ledger_a".into()], ..react(Limits::default()) };
    let r = send(&app, "add the entry to the ledger", &options);
    assert!(kinds(&app, r.run_id).contains(&"RetryScheduled"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the hang never reached the tool; the retry did");
}

#[test]
fn a_latency_spike_within_the_timeout_is_just_slow() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let slowish = FaultyTool::new(Arc::new(echo_tool("lookup", Effect::Read, None, calls)), [Fault::Latency(Duration::from_millis(150))]);
    let (app, _) = app_with(home.path(), replies(&[r#"{"tool": "lookup", "arguments": {"q": "a"}}"#, r#"{"answer": "lookup:a"}"#]), vec![Arc::new(slowish)]);
    let r = send(&app, "look up a", &react(Limits::default()));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    let ev = events(&app, r.run_id);
    assert!(matches!(find(&ev, "ToolReturned")[0], RunEvent::ToolReturned { duration_ms, result: ToolOutcome::Ok { .. }, .. } if *duration_ms >= 150));
    assert!(find(&ev, "RetryScheduled").is_empty());
}

#[test]
fn a_result_that_drifts_from_its_schema_is_an_error_never_data() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let drifting = FaultyTool::new(Arc::new(echo_tool("lookup", Effect::Read, None, calls)), [Fault::Drift(json!({"value": 42, "secret": "DRIFTED"}))]);
    let (app, backend) = app_with(
        home.path(),
        replies(&[r#"{"tool": "lookup", "arguments": {"q": "a"}}"#, r#"{"answer": "The lookup tool is not working."}"#]),
        vec![Arc::new(drifting)],
    );
    let r = send(&app, "look up a", &react(Limits::default()));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    let ev = events(&app, r.run_id);
    assert!(matches!(find(&ev, "ToolReturned")[0], RunEvent::ToolReturned { result: ToolOutcome::Err { error: ToolError::SchemaDrift { .. } }, .. }));
    // Not transient and no alternative: the error is reported to the model, and the drifted value never is.
    assert!(find(&ev, "RetryScheduled").is_empty());
    assert!(matches!(find(&ev, "ErrorReported")[0], RunEvent::ErrorReported { error: ToolError::SchemaDrift { .. }, .. }));
    let shown = backend.seen()[1].last().unwrap().content.clone();
    assert!(shown.contains("status=\"error\"") && shown.contains("schema_drift") && !shown.contains("DRIFTED"), "{shown}");
}

#[test]
fn malformed_arguments_get_one_constrained_reprompt_then_the_user_is_asked() {
    let home = tempfile::tempdir().unwrap();
    let (app, backend) = app_with(
        home.path(),
        replies(&[
            r#"{"tool": "calculator", "arguments": {"expr": "1+1"}}"#,
            r#"{"tool": "calculator", "arguments": "#,
            r#"{"answer": "Hi!"}"#,
        ]),
        vec![],
    );
    let r = send(&app, "compute 1+1 by hand please", &react(Limits::default()));
    assert_eq!(r.outcome, None);
    let Some(UserRequest::Question { question, .. }) = &r.waiting else { panic!("{:?}", r.waiting) };
    assert!(question.contains("rephrase"), "{question}");
    assert_eq!(app.get_run(r.run_id).unwrap().run.status, RunStatus::AwaitingUser);
    let ev = events(&app, r.run_id);
    let rejected: Vec<bool> = find(&ev, "ActionRejected").iter().map(|e| match e { RunEvent::ActionRejected { reprompt, .. } => *reprompt, _ => false }).collect();
    assert_eq!(rejected, [true, false]);
    assert!(find(&ev, "ToolCalled").is_empty(), "an invalid call never reaches the tool");
    // The re-prompt carried the validation error.
    let reprompt = backend.seen()[1].last().unwrap().content.clone();
    assert!(reprompt.starts_with("[Keel]") && reprompt.contains("expression"), "{reprompt}");

    let done = app
        .answer_run(r.run_id, UserAnswer::Reply { text: "just say hi".into() }, &GenerationSettings::default(), &mut |_| {})
        .unwrap();
    check_log(&app, r.run_id);
    assert_eq!(done.outcome, Some(RunOutcome::Answered));
    assert_eq!(done.answer, "Hi!");
    // The reply is part of the conversation, so a reopened chat shows it.
    let messages = app.get_conversation(done.conversation_id).unwrap().messages;
    let texts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["compute 1+1 by hand please", "just say hi", "Hi!"]);
    assert!(messages.iter().all(|m| m.run_id == Some(r.run_id)));
}

#[test]
fn a_model_that_repeats_the_same_call_is_given_the_result_then_made_to_answer_from_it() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let call = r#"{"tool": "lookup", "arguments": {"q": "same"}}"#;
    let answer = r#"{"answer": "It is lookup:same."}"#;
    let (app, backend) = app_with(home.path(), replies(&[call, call, call, answer]), vec![Arc::new(echo_tool("lookup", Effect::Read, None, calls.clone()))]);
    let r = send(&app, "loop", &react(Limits::default()));
    check_log(&app, r.run_id);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a repeated call is not made again");
    assert_eq!(find(&events(&app, r.run_id), "LoopDetected").len(), 2);
    // The first repeat is answered with the earlier result; the second forces an answer from it.
    let seen = backend.seen();
    let after_first = &seen[2].last().unwrap().content;
    assert!(after_first.contains("lookup:same") && after_first.contains("Answer the user"), "{after_first}");
    assert_eq!((r.outcome.clone(), r.answer.as_str()), (Some(RunOutcome::Answered), "It is lookup:same."));
}

#[test]
fn a_model_that_repeats_the_same_call_even_when_made_to_answer_is_stopped_with_what_was_found() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let call = r#"{"tool": "lookup", "arguments": {"q": "same"}}"#;
    let (app, _) = app_with(home.path(), replies(&[call; 8]), vec![Arc::new(echo_tool("lookup", Effect::Read, None, calls.clone()))]);
    let r = send(&app, "loop", &react(Limits::default()));
    check_log(&app, r.run_id);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a repeated call is not made again");
    assert!(matches!(&r.outcome, Some(RunOutcome::Partial { .. })), "{:?}", r.outcome);
    assert!(r.answer.contains("lookup:same"), "the partial answer is what the tool returned: {}", r.answer);
}

#[test]
fn a_model_that_never_stops_calling_tools_meets_each_bound() {
    let endless: Vec<String> = (0..40).map(|i| format!(r#"{{"tool": "calculator", "arguments": {{"expression": "{i}+1"}}}}"#)).collect();
    let endless: Vec<&str> = endless.iter().map(String::as_str).collect();
    let cases = [
        (Limits { max_tool_calls: 3, ..Limits::default() }, "tool calls"),
        (Limits { max_steps: 4, ..Limits::default() }, "steps"),
        (Limits { max_tokens: 1_200, ..Limits::default() }, "tokens"),
    ];
    for (limits, which) in cases {
        let home = tempfile::tempdir().unwrap();
        let (app, _) = app_with(home.path(), replies(&endless), vec![]);
        let r = send(&app, "count forever", &react(limits));
        let ev = events(&app, r.run_id);
        assert!(
            matches!(find(&ev, "LimitReached")[..], [RunEvent::LimitReached { limit, .. }] if limit.as_str() == which),
            "{which}: {:?}",
            find(&ev, "LimitReached")
        );
        // Ended with what the tools found, never an invented answer.
        assert!(matches!(&r.outcome, Some(RunOutcome::Partial { reason }) if reason.contains(which)), "{which}: {:?}", r.outcome);
        assert!(r.answer.contains("calculator(") && r.answer.contains("\"1\""), "{}", r.answer);
    }
}

#[test]
fn the_wall_time_bound_stops_a_run_stuck_in_a_slow_tool() {
    let home = tempfile::tempdir().unwrap();
    let hang = FaultyTool::new(Arc::new(echo_tool("lookup", Effect::Read, None, Arc::default())), [Fault::Hang, Fault::Hang, Fault::Hang]);
    let (app, _) = app_with(home.path(), replies(&[r#"{"tool": "lookup", "arguments": {"q": "a"}}"#]), vec![Arc::new(hang)]);
    let limits = Limits { max_wall_ms: 400, ..Limits::default() };
    let started = Instant::now();
    let r = send(&app, "look up a", &react(limits));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(find(&events(&app, r.run_id), "LimitReached")[..], [RunEvent::LimitReached { limit, .. }] if limit.as_str().starts_with("wall")));
    assert!(matches!(&r.outcome, Some(RunOutcome::Stopped { .. })), "{:?}", r.outcome);
}

fn write_tool(calls: Arc<AtomicU32>) -> FnTool {
    echo_tool("notes_write", Effect::Write, None, calls)
}

#[test]
fn a_side_effecting_call_waits_for_approval_and_runs_only_if_approved() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let script = [r#"{"tool": "notes_write", "arguments": {"q": "buy milk"}}"#, r#"{"answer": "Saved."}"#, r#"{"tool": "notes_write", "arguments": {"q": "sell milk"}}"#, r#"{"answer": "Not saved."}"#];
    let (app, backend) = app_with(home.path(), replies(&script), vec![Arc::new(write_tool(calls.clone()))]);
    let r = send(&app, "note: buy milk", &react(Limits::default()));
    let Some(UserRequest::Approval { call_id, tool, arguments, effect, .. }) = r.waiting.clone() else { panic!("{:?}", r) };
    assert_eq!((tool.as_str(), effect, arguments), ("notes_write", Effect::Write, json!({"q": "buy milk"})));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing runs before the user says so");
    assert_eq!(app.get_run(r.run_id).unwrap().run.status, RunStatus::AwaitingUser);
    let approved = app.answer_run(r.run_id, UserAnswer::Approve { call_id }, &GenerationSettings::default(), &mut |_| {}).unwrap();
    check_log(&app, r.run_id);
    assert_eq!(approved.outcome, Some(RunOutcome::Answered));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let r = send(&app, "note: sell milk", &react(Limits::default()));
    let Some(UserRequest::Approval { call_id, .. }) = r.waiting.clone() else { panic!() };
    let denied = app
        .answer_run(r.run_id, UserAnswer::Deny { call_id, note: Some("not today".into()) }, &GenerationSettings::default(), &mut |_| {})
        .unwrap();
    check_log(&app, r.run_id);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a denied call never runs");
    assert_eq!(denied.answer, "Not saved.");
    assert!(backend.seen().last().unwrap().last().unwrap().content.contains("the user denied this call: not today"));
    // A wrong answer is refused and changes nothing.
    assert!(app.answer_run(r.run_id, UserAnswer::Reply { text: "hm".into() }, &GenerationSettings::default(), &mut |_| {}).is_err());
}

#[test]
fn standing_policy_allows_a_tool_unless_untrusted_content_is_in_the_context() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let web = echo_tool("web_get", Effect::External, None, Arc::default());
    let script = [
        r#"{"tool": "notes_write", "arguments": {"q": "a"}}"#,
        r#"{"answer": "Saved a."}"#,
        r#"{"tool": "web_get", "arguments": {"q": "page"}}"#,
        r#"{"tool": "notes_write", "arguments": {"q": "b"}}"#,
    ];
    let (app, _) = app_with(home.path(), replies(&script), vec![Arc::new(write_tool(calls.clone())), Arc::new(web)]);
    let options = RunOptions { auto_approve: vec!["notes_write".into(), "web_get".into()], ..react(Limits::default()) };
    let r = send(&app, "save a", &options);
    assert_eq!(r.outcome, Some(RunOutcome::Answered), "allowed by policy, no pause");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let r = send(&app, "read the page, then save b", &options);
    let Some(UserRequest::Approval { tool, reason, .. }) = &r.waiting else { panic!("{r:?}") };
    assert_eq!(tool, "notes_write");
    assert!(reason.contains("untrusted content from the output of web_get"), "{reason}");
}

#[test]
fn a_pending_approval_survives_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let script = [r#"{"tool": "notes_write", "arguments": {"q": "x"}}"#, r#"{"answer": "Done."}"#];
    let run_id = {
        let (app, _) = app_with(home.path(), replies(&script), vec![Arc::new(write_tool(calls.clone()))]);
        send(&app, "note x", &react(Limits::default())).run_id
    };
    let (app, _) = app_with(home.path(), replies(&script[1..]), vec![Arc::new(write_tool(calls.clone()))]);
    assert_eq!(app.get_run(run_id).unwrap().run.status, RunStatus::AwaitingUser, "a paused run is not mistaken for an interrupted one");
    let Some(UserRequest::Approval { call_id, .. }) = app.run_waiting(run_id).unwrap() else { panic!() };
    let r = app.answer_run(run_id, UserAnswer::Approve { call_id }, &GenerationSettings::default(), &mut |_| {}).unwrap();
    check_log(&app, run_id);
    assert_eq!(r.answer, "Done.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn stop_is_an_event_and_no_tool_keeps_running_after_it() {
    let home = tempfile::tempdir().unwrap();
    let stopped_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let running = Arc::new(AtomicBool::new(false));
    let tool = FnTool::new(spec("crawl", Effect::Read, None, 60_000), {
        let (stopped_at, running) = (stopped_at.clone(), running.clone());
        move |_, cx| {
            running.store(true, Ordering::SeqCst);
            while !cx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(2));
            }
            *stopped_at.lock().unwrap() = Some(Instant::now());
            Err(ToolError::Cancelled { tool: "crawl".into() })
        }
    });
    let (app, _) = app_with(home.path(), replies(&[r#"{"tool": "crawl", "arguments": {"q": "all"}}"#]), vec![Arc::new(tool)]);
    let canceller = {
        let (app, running) = (app.clone(), running.clone());
        std::thread::spawn(move || {
            while !running.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(50));
            let at = Instant::now();
            assert_eq!(app.cancel_all(), 1);
            at
        })
    };
    let r = send(&app, "crawl everything", &react(Limits::default()));
    let cancelled_at = canceller.join().unwrap();
    assert_eq!(r.outcome, Some(RunOutcome::Stopped { reason: "stopped by the user".into() }));
    assert!(find(&events(&app, r.run_id), "RunCancelled").len() == 1);
    // The tool is told at once; it stops at its next check (within milliseconds here; the bound only guards
    // against a tool that never hears of it, on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(5);
    while stopped_at.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = stopped_at.lock().unwrap().expect("the tool saw the cancellation and stopped");
    assert!(stopped >= cancelled_at);
}

#[test]
fn verification_sends_wrong_arithmetic_back_once_then_marks_the_answer_unverified() {
    let home = tempfile::tempdir().unwrap();
    let (app, backend) = app_with(home.path(), replies(&[r#"{"answer": "17 * 23 = 381"}"#, r#"{"answer": "17 * 23 = 391"}"#]), vec![]);
    let r = send(&app, "what is 17*23 in your head", &react(Limits::default()));
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    assert_eq!(r.answer, "17 * 23 = 391");
    assert!(backend.seen()[1].last().unwrap().content.contains("but it is 391"));

    let (app, _) = app_with(tempfile::tempdir().unwrap().path(), replies(&[r#"{"answer": "2 + 2 = 5"}"#, r#"{"answer": "2 + 2 = 5"}"#]), vec![]);
    let r = send(&app, "what is 2+2 in your head", &react(Limits::default()));
    assert!(matches!(&r.outcome, Some(RunOutcome::Partial { reason }) if reason.contains("verification")), "{:?}", r.outcome);
    assert!(r.answer.contains("Unverified"), "{}", r.answer);
}

#[test]
fn plan_mode_runs_the_validated_plan_and_replans_only_on_failure() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let broken = FaultyTool::new(
        Arc::new(echo_tool("lookup", Effect::Read, None, calls.clone())),
        [Fault::Error(ToolError::Failed { tool: "lookup".into(), message: "no such entry".into() })],
    );
    let plan1 = r#"{"plan": [{"tool": "calculator", "arguments": {"expression": "2*21"}}, {"tool": "lookup", "arguments": {"q": "bad"}}, "answer"]}"#;
    let plan2 = r#"{"plan": [{"tool": "lookup", "arguments": {"q": "good"}}, "answer"]}"#;
    let (app, backend) = app_with(home.path(), replies(&[plan1, plan2, r#"{"answer": "42 and lookup:good"}"#]), vec![Arc::new(broken)]);
    let options = RunOptions { mode: Some(RunMode::Plan), ..RunOptions::default() };
    let r = send(&app, "plan it", &options);
    assert_eq!(r.outcome, Some(RunOutcome::Answered), "{r:?}");
    let ev = events(&app, r.run_id);
    let plans = find(&ev, "ActionParsed").iter().filter(|e| matches!(e, RunEvent::ActionParsed { action: Action::Plan { .. }, .. })).count();
    assert_eq!(plans, 2, "one replan after the failed step");
    let called: Vec<String> = find(&ev, "ToolCalled").iter().map(|e| match e { RunEvent::ToolCalled { call_id, .. } => call_id.clone(), _ => String::new() }).collect();
    assert_eq!(called, ["p1.1", "p1.2", "p2.1"]);
    assert_eq!(backend.seen().len(), 3, "two plans and one answer: the steps themselves need no model call");
    assert!(backend.seen()[2][0].content.contains("The tool steps are done"));

    // With no replan allowed, the failure ends the run with what the first steps found.
    let home = tempfile::tempdir().unwrap();
    let broken = FaultyTool::new(
        Arc::new(echo_tool("lookup", Effect::Read, None, Arc::default())),
        [Fault::Error(ToolError::Failed { tool: "lookup".into(), message: "no such entry".into() })],
    );
    let (app, _) = app_with(home.path(), replies(&[plan1]), vec![Arc::new(broken)]);
    let options = RunOptions { mode: Some(RunMode::Plan), limits: Limits { max_replans: 0, ..Limits::default() }, ..RunOptions::default() };
    let r = send(&app, "plan it", &options);
    assert!(matches!(&r.outcome, Some(RunOutcome::Partial { reason }) if reason.contains("replan")), "{:?}", r.outcome);
    assert!(r.answer.contains("\"42\""), "{}", r.answer);
}

#[test]
fn an_invalid_plan_step_is_rejected_before_anything_runs() {
    let home = tempfile::tempdir().unwrap();
    let bad = r#"{"plan": [{"tool": "calculator", "arguments": {"expression": "1+1"}}, {"tool": "calculator", "arguments": {}}]}"#;
    let (app, _) = app_with(home.path(), replies(&[bad, r#"{"answer": "2"}"#]), vec![]);
    let r = send(&app, "plan", &RunOptions { mode: Some(RunMode::Plan), ..RunOptions::default() });
    let ev = events(&app, r.run_id);
    assert!(matches!(find(&ev, "ActionRejected")[0], RunEvent::ActionRejected { error, reprompt: true, .. } if error.contains("plan step 2")));
    assert!(find(&ev, "ToolCalled").is_empty());
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
}

/// What a process killed inside a tool call leaves: the run's log up to its `ToolCalled`.
fn leave_in_tool(home: &std::path::Path, tool: &str, effect: Effect, idempotent: bool) -> i64 {
    let store = keel::store::Store::open(&home.join("keel.sqlite3")).unwrap();
    let (conv, run) = store.begin_turn(None, "do it").unwrap();
    let call = format!(r#"{{"tool": "{tool}", "arguments": {{"q": "x"}}}}"#);
    let events = [
        RunEvent::RunStarted {
            conversation_id: conv,
            input: "do it".into(),
            backend: "scripted".into(),
            members: vec!["scripted".into()],
            model: "script".into(),
            max_steps: 8,
            settings: GenerationSettings::default(),
            mode: RunMode::React,
            limits: Some(Limits::default()),
            tools: vec![tool.into()],
            auto_approve: vec![tool.into()],
        },
        RunEvent::ModelCalled { step: 1, backend: "scripted".into(), prompt_tokens: 9, messages: 2, dropped_messages: 0, memory_items: 0 },
        RunEvent::ModelReplied { step: 1, text: call, prompt_tokens: 9, cached_prompt_tokens: 0, completion_tokens: 5, duration_ms: 1, ttft_ms: Some(1), stop: keel::llm::StopReason::Eos, answered_by: None, fell_back: vec![] },
        RunEvent::ActionParsed { step: 1, action: Action::ToolCall { call_id: "c1".into(), tool: tool.into(), arguments: json!({"q": "x"}) } },
        RunEvent::PolicyChecked { call_id: "c1".into(), tool: tool.into(), effect, decision: PolicyDecision::Allow, reason: "test".into() },
        RunEvent::ToolCalled { call_id: "c1".into(), tool: tool.into(), arguments: json!({"q": "x"}), attempt: 1, effect, idempotent, untrusted_output: false },
    ];
    for e in &events {
        keel::orchestration::journal::append(&store, run, e).unwrap();
    }
    run
}

#[test]
fn a_run_interrupted_inside_a_side_effect_asks_before_anything_is_retried() {
    let home = tempfile::tempdir().unwrap();
    let run = leave_in_tool(home.path(), "notes_write", Effect::Write, false);
    let calls = Arc::new(AtomicU32::new(0));
    let (app, _) = app_with(home.path(), replies(&[r#"{"answer": "Written."}"#]), vec![Arc::new(write_tool(calls.clone()))]);
    assert_eq!(app.get_run(run).unwrap().run.status, RunStatus::AwaitingUser);
    let ev = events(&app, run);
    assert!(matches!(&ev[ev.len() - 3..], [RunEvent::RunInterrupted { .. }, RunEvent::OutcomeUnknown { .. }, RunEvent::ApprovalRequested { .. }]));
    let Some(UserRequest::Approval { call_id, reason, .. }) = app.run_waiting(run).unwrap() else { panic!() };
    assert!(reason.contains("unknown"), "{reason}");
    assert!(app.resume_run(run, &GenerationSettings::default(), &mut |_| {}).is_err(), "a resume without the answer is refused");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let r = app.answer_run(run, UserAnswer::Approve { call_id }, &GenerationSettings::default(), &mut |_| {}).unwrap();
    check_log(&app, run);
    assert_eq!(r.answer, "Written.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let attempts: Vec<u32> = find(&events(&app, run), "ToolCalled").iter().map(|e| match e { RunEvent::ToolCalled { attempt, .. } => *attempt, _ => 0 }).collect();
    assert_eq!(attempts, [1, 1], "the approved retry is the same call made again");
}

#[test]
fn a_run_interrupted_inside_a_read_only_call_repeats_it_on_resume() {
    let home = tempfile::tempdir().unwrap();
    let run = leave_in_tool(home.path(), "lookup", Effect::Read, true);
    let calls = Arc::new(AtomicU32::new(0));
    let (app, _) = app_with(home.path(), replies(&[r#"{"answer": "lookup:x"}"#]), vec![Arc::new(echo_tool("lookup", Effect::Read, None, calls.clone()))]);
    assert_eq!(app.get_run(run).unwrap().run.status, RunStatus::Interrupted);
    let r = app.resume_run(run, &GenerationSettings::default(), &mut |_| {}).unwrap();
    check_log(&app, run);
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(find(&events(&app, run), "RetryScheduled")[0], RunEvent::RetryScheduled { next_attempt: 2, delay_ms: 0, .. }));
}

#[test]
fn replay_shows_the_same_steps_and_fork_continues_from_a_step() {
    let home = tempfile::tempdir().unwrap();
    let script = [
        r#"{"tool": "calculator", "arguments": {"expression": "6*7"}}"#,
        r#"{"answer": "6 * 7 = 42"}"#,
        r#"{"answer": "Forty-two."}"#,
    ];
    let (app, backend) = app_with(home.path(), replies(&script), vec![]);
    let r = send(&app, "6*7 in your head?", &react(Limits::default()));
    let calls_before = backend.seen().len();
    let replay = app.replay_run(r.run_id).unwrap();
    assert_eq!(backend.seen().len(), calls_before, "a replay calls no model");
    assert_eq!(replay.events, app.get_run(r.run_id).unwrap().events);
    assert_eq!(replay.state.outcome, Some(RunOutcome::Answered));
    assert_eq!(replay.state.tools_used[0].result.as_ref().unwrap()["result"], "42");

    assert!(app.fork_run(r.run_id, 1, None, Some("elsewhere"), &GenerationSettings::default(), &mut |_| {}).is_err());
    let fork = app.fork_run(r.run_id, 1, Some("say it in words"), Some("scripted"), &GenerationSettings::default(), &mut |_| {}).unwrap();
    check_log(&app, fork.run_id);
    assert_ne!(fork.run_id, r.run_id);
    assert_ne!(fork.conversation_id, r.conversation_id, "a fork is a branch of its own");
    assert_eq!(fork.answer, "Forty-two.");
    let seen = backend.seen();
    let last = seen.last().unwrap();
    assert!(last.iter().any(|m| m.content.contains("\"42\"")), "the fork kept step 1's tool result");
    assert_eq!(last.last().unwrap(), &ChatMessage::new(keel::llm::Role::User, "say it in words"));
    // The original run is untouched.
    assert_eq!(app.get_run(r.run_id).unwrap().events.len(), replay.events.len());
}

#[test]
fn every_prefix_of_a_run_folds_to_a_state_whose_pending_step_matches_its_last_event() {
    let home = tempfile::tempdir().unwrap();
    let flaky = FaultyTool::new(
        Arc::new(echo_tool("lookup", Effect::Read, Some("lookup"), Arc::default())),
        [Fault::Error(ToolError::Transient { tool: "lookup".into(), message: "busy".into(), retry_after_ms: Some(1) })],
    );
    let script = [r#"{"tool": "lookup", "arguments": {"q": "a"}}"#, r#"{"answer": "lookup:a"}"#];
    let (app, _) = app_with(home.path(), replies(&script), vec![Arc::new(flaky)]);
    let r = send(&app, "lookup a", &react(Limits::default()));
    let log = app.get_run(r.run_id).unwrap().events;
    for n in 1..=log.len() {
        let state = RunState::fold(&log[..n]);
        let ok = match (&log[n - 1].event, &state.pending) {
            (RunEvent::ModelCalled { .. }, Pending::InModel) => true,
            (RunEvent::ModelReplied { .. }, Pending::Reply { .. }) => true,
            (RunEvent::ToolCalled { .. }, Pending::InTool { .. }) => true,
            (RunEvent::ToolReturned { result: ToolOutcome::Ok { .. }, .. }, Pending::Model { .. }) => true,
            (RunEvent::ToolReturned { result: ToolOutcome::Err { .. }, .. }, Pending::ToolFailed { .. }) => true,
            (RunEvent::RetryScheduled { .. }, Pending::Tool { checked: true, .. }) => true,
            (RunEvent::RunFinished { .. }, Pending::Nothing) => state.outcome.is_some(),
            (RunEvent::ModelCalled { .. } | RunEvent::ModelReplied { .. } | RunEvent::ToolCalled { .. } | RunEvent::ToolReturned { .. } | RunEvent::RetryScheduled { .. } | RunEvent::RunFinished { .. }, _) => false,
            _ => true,
        };
        assert!(ok, "after {:?} the state is pending {:?}", log[n - 1].event.kind(), state.pending);
    }
}

/// Values the property test below draws: what the model says at each step, and what the tool does.
#[derive(Debug, Clone)]
enum Say {
    Call(u8),
    Bad,
    Answer,
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, .. Default::default() })]
    #[test]
    fn any_run_the_runner_records_replays_to_the_same_state_and_keeps_its_bounds(
        says in proptest::collection::vec(proptest::prop_oneof![
            (0u8..4).prop_map(Say::Call), proptest::strategy::Just(Say::Bad), proptest::strategy::Just(Say::Answer)
        ], 1..10),
        faults in proptest::collection::vec(0u8..4, 0..6),
        max_tool_calls in 1u32..6,
        max_steps in 1u32..8,
    ) {
        use proptest::{prop_assert, prop_assert_eq};
        let home = tempfile::tempdir().unwrap();
        let plan = faults.iter().map(|f| match f {
            0 => Fault::Pass,
            1 => Fault::Error(ToolError::Transient { tool: "lookup".into(), message: "busy".into(), retry_after_ms: Some(1) }),
            2 => Fault::Drift(json!({"nope": true})),
            _ => Fault::Error(ToolError::Failed { tool: "lookup".into(), message: "gone".into() }),
        });
        let tool = FaultyTool::new(Arc::new(echo_tool("lookup", Effect::Read, None, Arc::default())), plan);
        let texts: Vec<String> = says.iter().map(|s| match s {
            Say::Call(q) => format!(r#"{{"tool": "lookup", "arguments": {{"q": "{q}"}}}}"#),
            Say::Bad => r#"{"tool": "lookup", "arguments": {}}"#.to_string(),
            Say::Answer => r#"{"answer": "done"}"#.to_string(),
        }).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (app, _) = app_with(home.path(), replies(&texts), vec![Arc::new(tool)]);
        let limits = Limits { max_tool_calls, max_steps, retry: RetryPolicy { base_ms: 1, cap_ms: 2, ..RetryPolicy::default() }, ..Limits::default() };
        let r = send(&app, "go", &react(limits));
        // Paused or finished, never both; a finished run's answer is in the log.
        prop_assert!(r.outcome.is_some() != r.waiting.is_some());
        let replay = app.replay_run(r.run_id).unwrap();
        prop_assert_eq!(replay.state.outcome.clone(), r.outcome.clone());
    }
}

#[test]
fn a_paused_run_can_be_stopped_instead_of_answered() {
    let home = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (app, _) = app_with(home.path(), replies(&[r#"{"tool": "notes_write", "arguments": {"q": "x"}}"#]), vec![Arc::new(write_tool(calls.clone()))]);
    let r = send(&app, "note x", &react(Limits::default()));
    assert!(r.waiting.is_some());
    assert!(app.cancel_run(r.run_id), "a paused run can be stopped");
    check_log(&app, r.run_id);
    assert_eq!(app.get_run(r.run_id).unwrap().run.status, RunStatus::Stopped);
    assert_eq!(&kinds(&app, r.run_id)[kinds(&app, r.run_id).len() - 2..], ["RunCancelled", "RunFinished"]);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(!app.cancel_run(r.run_id), "a finished run has nothing to stop");
    assert!(app.run_waiting(r.run_id).unwrap().is_none());
}
