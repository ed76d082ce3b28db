//! The turn loop with the scripted backend: events are committed in order before they are published, a stop or
//! a failure is recorded as the run's outcome, and conversations and runs survive a restart.

use std::sync::Arc;

use keel::llm::scripted::{ScriptedBackend, ScriptedReply};
use keel::llm::GenerationSettings;
use keel::orchestration::events::{RunEvent, RunOutcome, RunStatus};
use keel::orchestration::TurnEvent;
use keel::{App, ErrorKind, OpenOptions};

fn scripted_app(home: &std::path::Path, replies: Vec<ScriptedReply>) -> App {
    scripted_app_with(home, ScriptedBackend::new(replies))
}

fn scripted_app_with(home: &std::path::Path, backend: ScriptedBackend) -> App {
    let options = OpenOptions { home: home.to_owned(), models_dir: home.join("no-models") };
    App::open_with_backend(options, Arc::new(backend)).unwrap()
}

/// The kinds of a run's events; every run a test looks at this way is also replayed from its log, which must
/// reproduce the stored projection.
fn kinds(app: &App, run_id: i64) -> Vec<&'static str> {
    let replay = app.replay_run(run_id).unwrap();
    assert!(replay.consistent && replay.matches_projection, "run {run_id}: {replay:?}");
    app.get_run(run_id).unwrap().events.iter().map(|e| e.event.kind()).collect()
}

#[test]
fn a_turn_records_its_steps_in_order_and_commits_each_before_publishing_it() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("Paris is the capital.".into())]);
    let db = home.path().join("keel.sqlite3");
    let mut published = Vec::new();
    let mut tokens = String::new();
    let result = app
        .send_message(None, "What is the capital of France?", &GenerationSettings::default(), &keel::RunOptions::default(), &mut |e| match e {
            TurnEvent::Step { event } => {
                // Read the event back through a separate connection: it must already be committed.
                let conn = rusqlite::Connection::open(&db).unwrap();
                let kind: String = conn
                    .query_row("SELECT kind FROM run_events WHERE run_id = ?1 AND seq = ?2", (event.run_id, event.seq), |r| r.get(0))
                    .expect("a published event is already committed");
                assert_eq!(kind, event.event.kind());
                published.push(event.seq);
            }
            TurnEvent::Token { text } => tokens.push_str(&text),
            _ => {}
        })
        .unwrap();
    assert_eq!(result.answer, "Paris is the capital.");
    assert_eq!(tokens, "Paris is the capital.");
    assert_eq!(result.outcome, Some(RunOutcome::Answered));
    assert_eq!(published, vec![1, 2, 3, 4, 5]);
    assert_eq!(kinds(&app, result.run_id), ["RunStarted", "MemoryUnavailable", "ModelCalled", "ModelReplied", "RunFinished"]);
    let detail = app.get_run(result.run_id).unwrap();
    assert_eq!(detail.run.status, RunStatus::Answered);
    assert_eq!(detail.run.completion_tokens, 4);
    match &detail.events[4].event {
        RunEvent::RunFinished { answer, completion_tokens, .. } => {
            assert_eq!(answer.as_deref(), Some("Paris is the capital."));
            assert_eq!(*completion_tokens, 4);
        }
        other => panic!("last event is {other:?}"),
    }
}

#[test]
fn conversations_and_runs_survive_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let (conversation_id, runs) = {
        let app = scripted_app(home.path(), vec![ScriptedReply::Text("One.".into()), ScriptedReply::Text("Two.".into())]);
        let s = GenerationSettings::default();
        let first = app.send_message(None, "first question", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
        let second = app.send_message(Some(first.conversation_id), "second question", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(first.conversation_id, second.conversation_id);
        (first.conversation_id, vec![first.run_id, second.run_id])
    };
    let app = scripted_app(home.path(), vec![]);
    let list = app.list_conversations().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].title, "first question");
    assert_eq!(list[0].message_count, 4);
    let detail = app.get_conversation(conversation_id).unwrap();
    let texts: Vec<_> = detail.messages.iter().map(|m| (m.role.as_str(), m.content.as_str(), m.run_id)).collect();
    assert_eq!(
        texts,
        [
            ("user", "first question", Some(runs[0])),
            ("assistant", "One.", Some(runs[0])),
            ("user", "second question", Some(runs[1])),
            ("assistant", "Two.", Some(runs[1])),
        ]
    );
    for id in runs {
        assert_eq!(kinds(&app, id), ["RunStarted", "MemoryUnavailable", "ModelCalled", "ModelReplied", "RunFinished"]);
    }
}

#[test]
fn the_second_turn_sees_the_first_in_its_context() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("a".into()), ScriptedReply::Text("b".into())]);
    let s = GenerationSettings::default();
    let first = app.send_message(None, "one two three", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let second = app.send_message(Some(first.conversation_id), "four", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let called = |run| {
        app.get_run(run)
            .unwrap()
            .events
            .into_iter()
            .find_map(|e| match e.event {
                RunEvent::ModelCalled { messages, .. } => Some(messages),
                _ => None,
            })
            .unwrap()
    };
    // The system prompt and the user message; then system, user, assistant and the new user message.
    assert_eq!(called(first.run_id), 2);
    assert_eq!(called(second.run_id), 4);
}

#[test]
fn stop_ends_the_run_as_stopped_and_keeps_the_partial_answer() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::UntilCancelled("partial words".into())]);
    let canceller = app.clone();
    let mut started = None;
    let result = app
        .send_message(None, "tell me a long story", &GenerationSettings::default(), &keel::RunOptions::default(), &mut |e| match e {
            TurnEvent::Started { run_id, .. } => started = Some(run_id),
            // Stopped once the reply has streamed its words (a fixed delay lost the race on a loaded machine).
            TurnEvent::Token { text } if text.contains("words") => {
                let (c, run_id) = (canceller.clone(), started.expect("the run started before it streamed"));
                std::thread::spawn(move || assert!(c.cancel_run(run_id)));
            }
            _ => {}
        })
        .unwrap();
    assert_eq!(result.outcome, Some(RunOutcome::Stopped { reason: "stopped by the user".into() }));
    assert_eq!(result.answer, "partial words");
    let detail = app.get_run(result.run_id).unwrap();
    assert_eq!(detail.run.status, RunStatus::Stopped);
    assert!(matches!(
        detail.events[3].event,
        RunEvent::ModelReplied { stop: keel::llm::StopReason::Cancelled, .. }
    ));
    assert!(!app.cancel_run(result.run_id), "a finished run is no longer cancellable");
}

#[test]
fn a_failing_backend_is_recorded_as_a_failed_run_and_the_question_is_kept() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::Fail("out of memory".into())]);
    let result = app.send_message(None, "hello", &GenerationSettings::default(), &keel::RunOptions::default(), &mut |_| {}).unwrap();
    match &result.outcome {
        Some(RunOutcome::Failed { error, .. }) => assert!(error.contains("out of memory"), "{error}"),
        other => panic!("outcome {other:?}"),
    }
    assert_eq!(kinds(&app, result.run_id), ["RunStarted", "MemoryUnavailable", "ModelCalled", "RunFinished"]);
    let detail = app.get_conversation(result.conversation_id).unwrap();
    assert_eq!(detail.messages.len(), 1, "the user's question is kept, no answer is invented");
    assert_eq!(detail.messages[0].content, "hello");
}

#[test]
fn refused_input_stores_nothing() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("never".into())]);
    for bad in ["", "   \n", &"x".repeat(keel::interface::MAX_MESSAGE_BYTES + 1)] {
        let err = app.send_message(None, bad, &GenerationSettings::default(), &keel::RunOptions::default(), &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.hint.is_some());
    }
    assert!(app.list_conversations().unwrap().is_empty());
    assert!(app.list_runs(10).unwrap().is_empty());
}

/// What a process killed mid-run leaves behind: a begun turn whose run has only `events`.
fn leave_run_in_flight(home: &std::path::Path, events: &[RunEvent]) {
    let store = keel::store::Store::open(&home.join("keel.sqlite3")).unwrap();
    let (_, run) = store.begin_turn(None, "hi").unwrap();
    for e in events {
        keel::orchestration::journal::append(&store, run, e).unwrap();
    }
}

#[test]
fn a_run_left_in_flight_is_marked_interrupted_at_the_next_start_and_resumes_from_its_log() {
    let home = tempfile::tempdir().unwrap();
    leave_run_in_flight(
        home.path(),
        &[RunEvent::ModelCalled { step: 1, backend: "local".into(), prompt_tokens: 10, messages: 2, dropped_messages: 0, memory_items: 0 }],
    );
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("Hello again".into())]);
    let runs = app.list_runs(10).unwrap();
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    let events = app.get_run(runs[0].id).unwrap().events;
    assert!(matches!(&events.last().unwrap().event, RunEvent::RunInterrupted { .. }), "{:?}", events.last());
    // Opening again does not mark it twice.
    drop(app);
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("Hello again".into())]);
    assert_eq!(app.get_run(runs[0].id).unwrap().events.len(), events.len());
    assert_eq!(app.interrupted_runs().unwrap(), vec![runs[0].id]);
    // The model call that was in flight is made again, and the run ends as it would have.
    let result = app.resume_run(runs[0].id, &GenerationSettings::default(), &mut |_| {}).unwrap();
    assert_eq!(result.outcome, Some(RunOutcome::Answered));
    assert_eq!(result.answer, "Hello again");
    let kinds: Vec<&str> = app.get_run(runs[0].id).unwrap().events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(&kinds[events.len()..], ["RunResumed", "ModelCalled", "ModelReplied", "RunFinished"]);
    assert!(app.interrupted_runs().unwrap().is_empty());
}

#[test]
fn the_window_drops_whole_old_messages_and_never_the_newest() {
    use keel::llm::{ChatMessage, Role};
    use keel::orchestration::context::{assemble, SYSTEM_PROMPT};
    let backend = ScriptedBackend::new([]).with_context_window(40);
    let conversation: Vec<ChatMessage> = (0..6)
        .map(|i| ChatMessage::new(if i % 2 == 0 { Role::User } else { Role::Assistant }, format!("message {i} ").repeat(3)))
        .collect();
    let w = assemble(&backend, SYSTEM_PROMPT, &conversation, &[], 10).unwrap();
    assert!(w.dropped_messages > 0);
    assert!(w.prompt_tokens + 10 <= 40);
    assert_eq!(w.messages.last().unwrap(), conversation.last().unwrap());
    assert_eq!(w.messages.len() as u32, 1 + conversation.len() as u32 - w.dropped_messages);
    // Each kept message is whole.
    for m in &w.messages[1..] {
        assert!(conversation.contains(m));
    }
    let huge = vec![ChatMessage::new(Role::User, "word ".repeat(100))];
    assert!(assemble(&backend, SYSTEM_PROMPT, &huge, &[], 10).is_err());
}

#[test]
fn the_token_budget_ends_the_run_as_partial_with_what_was_written() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(home.path(), vec![ScriptedReply::Text("one two three four five".into())]);
    let settings = GenerationSettings { max_tokens: 2, ..Default::default() };
    let result = app.send_message(None, "count", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    assert!(matches!(&result.outcome, Some(RunOutcome::Partial { reason }) if reason.contains("limit of 2 tokens")), "{:?}", result.outcome);
    assert_eq!(result.answer, "one two");
    let messages = app.get_conversation(result.conversation_id).unwrap().messages;
    assert_eq!(messages[1].content, "one two");
    assert_eq!(messages[1].run_status, Some(RunStatus::Partial));
}

#[test]
fn a_panicking_backend_fails_the_run_and_keel_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app(
        home.path(),
        vec![ScriptedReply::Panic("index out of bounds".into()), ScriptedReply::Text("still here".into())],
    );
    let s = GenerationSettings::default();
    let first = app.send_message(None, "hello", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    assert!(matches!(&first.outcome, Some(RunOutcome::Failed { error, .. }) if error.contains("crashed") && error.contains("index out of bounds")), "{:?}", first.outcome);
    assert_eq!(app.get_run(first.run_id).unwrap().run.status, RunStatus::Failed);
    let second = app.send_message(Some(first.conversation_id), "again", &s, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(second.answer, "still here");
}

#[test]
fn settings_that_cannot_work_and_messages_too_big_for_the_window_are_refused_before_anything_is_stored() {
    let home = tempfile::tempdir().unwrap();
    let app = scripted_app_with(home.path(), ScriptedBackend::new([]).with_context_window(64));
    let bad = [
        GenerationSettings { max_tokens: 0, ..Default::default() },
        GenerationSettings { max_tokens: 64, ..Default::default() },
        GenerationSettings { max_tokens: 8, temperature: f64::NAN, ..Default::default() },
        GenerationSettings { max_tokens: 8, top_k: Some(0), ..Default::default() },
        GenerationSettings { max_tokens: 8, top_p: Some(1.5), ..Default::default() },
    ];
    for settings in bad {
        let err = app.send_message(None, "hi", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{settings:?}: {err:?}");
    }
    let ok = GenerationSettings { max_tokens: 8, ..Default::default() };
    let err = app.send_message(None, &"word ".repeat(200), &ok, &keel::RunOptions::default(), &mut |_| {}).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("does not fit"), "{}", err.message);
    assert!(err.hint.unwrap().contains("import it as a document"));
    assert!(app.list_conversations().unwrap().is_empty());
    assert!(app.list_runs(10).unwrap().is_empty());
}

#[test]
fn a_second_process_does_not_close_the_runs_of_a_live_one() {
    let home = tempfile::tempdir().unwrap();
    let live = scripted_app(home.path(), vec![]);
    // A run in flight in the live process.
    let store = keel::store::Store::open(&home.path().join("keel.sqlite3")).unwrap();
    let (_, run) = store.begin_turn(None, "in flight").unwrap();
    let other = scripted_app(home.path(), vec![]);
    assert_eq!(other.get_run(run).unwrap().run.status, RunStatus::Running, "another live Keel holds the data dir");
    drop(other);
    drop(live);
    let after = scripted_app(home.path(), vec![]);
    assert_eq!(after.get_run(run).unwrap().run.status, RunStatus::Interrupted, "with no Keel alive, the run was interrupted");
}

#[test]
fn an_interrupted_run_keeps_the_text_it_had_produced() {
    let home = tempfile::tempdir().unwrap();
    leave_run_in_flight(
        home.path(),
        &[RunEvent::ModelReplied {
            step: 1,
            text: "Hello the".into(),
            prompt_tokens: 5,
            cached_prompt_tokens: 0,
            completion_tokens: 2,
            duration_ms: 10,
            ttft_ms: Some(3),
            stop: keel::llm::StopReason::Eos,
            answered_by: None,
            fell_back: vec![],
        }],
    );
    // The script is empty: resuming must not call the model, whose reply is already in the log.
    let app = scripted_app(home.path(), vec![]);
    let run = app.list_runs(1).unwrap()[0].clone();
    assert_eq!(run.status, RunStatus::Interrupted);
    let result = app.resume_run(run.id, &GenerationSettings::default(), &mut |_| {}).unwrap();
    assert_eq!(result.answer, "Hello the");
    match &app.get_run(run.id).unwrap().events.last().unwrap().event {
        RunEvent::RunFinished { answer, completion_tokens, outcome, .. } => {
            assert_eq!(answer.as_deref(), Some("Hello the"));
            assert_eq!(*completion_tokens, 2);
            assert_eq!(*outcome, RunOutcome::Answered);
        }
        other => panic!("{other:?}"),
    }
}

/// The front door is one step: a message is normalised exactly once on its way to the model (counted on this
/// thread, where the turn runs), with the pattern guard and with the full one (the embedding model's), and the
/// model sees the normalised text. Before the front door was one step the full guard normalised it again.
#[test]
fn a_message_is_normalised_exactly_once_on_its_way_to_the_model() {
    use keel::interface::normalise::times_called;
    for models in [None, Some(super::common::models_dir())] {
        let home = tempfile::tempdir().unwrap();
        let backend = Arc::new(ScriptedBackend::new(vec![ScriptedReply::Text("Yes.".into())]));
        let models_dir = models.clone().unwrap_or_else(|| home.path().join("no-models"));
        let app = App::open_with_backend(OpenOptions { home: home.path().to_owned(), models_dir }, backend.clone()).unwrap();
        if models.is_some() {
            // Built before counting: the guard's examples are not the message.
            app.guard_model(&mut |_| {}).unwrap();
        }
        let before = times_called();
        let r = app
            .send_message(None, "  Is cafe\u{301} au lait\u{200b} strong?", &GenerationSettings::default(), &keel::RunOptions::default(), &mut |_| {})
            .unwrap();
        assert_eq!(times_called() - before, 1, "models: {models:?}");
        assert_eq!(r.outcome, Some(RunOutcome::Answered));
        let sent = backend.seen().pop().unwrap();
        assert_eq!(sent.last().unwrap().content, "Is café au lait strong?", "models: {models:?}");
    }
}
