//! What code does around a call it chose (`interface::route`, `orchestration::routed`), on a scripted model that
//! phrases badly: the answer that does not state the result is replaced by the plain answer from the result, a
//! column total is read and then added by the calculator (two `Routed` calls), a question about the user is
//! answered with what they said, and a routed call that fails for good is reported, never answered from nowhere.

use std::sync::Arc;

use keel::llm::scripted::{ScriptedBackend, ScriptedReply};
use keel::llm::GenerationSettings;
use keel::orchestration::events::{RunEvent, RunOutcome};
use keel::orchestration::{RunMode, TurnResult};
use keel::{App, OpenOptions, RunOptions};

/// The app on a scripted model, with the real embedding model (memory needs it).
fn app(home: &std::path::Path, replies: &[&str]) -> (App, Arc<ScriptedBackend>) {
    let options = OpenOptions { home: home.to_owned(), models_dir: super::common::models_dir() };
    let backend = Arc::new(ScriptedBackend::new(replies.iter().map(|t| ScriptedReply::Text((*t).to_owned()))));
    (App::open_with_backend(options, backend.clone()).unwrap(), backend)
}

fn send(app: &App, text: &str, mode: RunMode) -> (TurnResult, Vec<RunEvent>) {
    let options = RunOptions { mode: Some(mode), ..RunOptions::default() };
    let r = app.send_message(None, text, &GenerationSettings::default(), &options, &mut |_| {}).unwrap();
    let events = app.get_run(r.run_id).unwrap().events.into_iter().map(|e| e.event).collect();
    (r, events)
}

fn routed(events: &[RunEvent]) -> Vec<(String, serde_json::Value)> {
    events.iter().filter_map(|e| if let RunEvent::Routed { tool, arguments, .. } = e { Some((tool.clone(), arguments.clone())) } else { None }).collect()
}

fn checks(events: &[RunEvent]) -> Vec<(String, bool)> {
    events.iter().filter_map(|e| if let RunEvent::Verified { check, passed, .. } = e { Some((check.clone(), *passed)) } else { None }).collect()
}

fn write(home: &std::path::Path, name: &str, text: &str) {
    std::fs::create_dir_all(home.join("files")).unwrap();
    std::fs::write(home.join("files").join(name), text).unwrap();
}

#[test]
fn a_file_named_in_the_message_is_read_by_code_and_an_answer_without_its_content_is_replaced() {
    let home = tempfile::tempdir().unwrap();
    write(home.path(), "order.txt", "Order confirmation\nCustomer: Ada Moreau\nOrder number: 20811\nShipping to: Lisbon\n");
    let (app, backend) = app(home.path(), &[r#"{"answer": "The order number is 55555."}"#, r#"{"answer": "The order number is 20811."}"#]);
    let (r, events) = send(&app, "What is the order number in order.txt?", RunMode::React);
    assert_eq!(routed(&events), vec![("files_read".to_owned(), serde_json::json!({ "path": "order.txt" }))]);
    assert_eq!(checks(&events), vec![("states the routed result".to_owned(), false)]);
    assert_eq!((r.outcome, r.answer.as_str()), (Some(RunOutcome::Answered), "From order.txt: Order number: 20811"));
    assert_eq!(backend.seen().len(), 1, "the plain answer is code's: the model is not asked again");
    // A second question the model answers from the file keeps the model's words.
    let (app, _) = self::app(home.path(), &[r#"{"answer": "It is 20811."}"#]);
    let (r, events) = send(&app, "What is the order number in order.txt?", RunMode::React);
    assert_eq!((checks(&events), r.answer.as_str()), (vec![("states the routed result".to_owned(), true)], "It is 20811."));
}

#[test]
fn a_column_total_is_read_then_added_by_the_calculator() {
    let home = tempfile::tempdir().unwrap();
    write(home.path(), "expenses.csv", "item,amount\ntravel,403\npower,103\nrent,607\nphone,610\n");
    let (app, _) = app(home.path(), &[r#"{"answer": "The total is 1500."}"#]);
    let (r, events) = send(&app, "Sum the amount column of expenses.csv.", RunMode::React);
    assert_eq!(
        routed(&events),
        vec![
            ("files_read".to_owned(), serde_json::json!({ "path": "expenses.csv" })),
            ("calculator".to_owned(), serde_json::json!({ "expression": "403 + 103 + 607 + 610" })),
        ]
    );
    let called: Vec<&str> = events.iter().filter_map(|e| if let RunEvent::ToolCalled { call_id, .. } = e { Some(call_id.as_str()) } else { None }).collect();
    assert_eq!(called, ["r1", "r2"]);
    assert_eq!(r.answer, "403 + 103 + 607 + 610 = 1723");
}

#[test]
fn a_question_about_the_user_is_answered_with_what_they_said() {
    let home = tempfile::tempdir().unwrap();
    let (app, _) = app(home.path(), &["Noted.", "Your dog is called Biscuit."]);
    send(&app, "Remember that my dog is called Pixel.", RunMode::Chat);
    let (r, events) = send(&app, "What is my dog's name?", RunMode::Chat);
    assert_eq!(checks(&events), vec![("states the recalled fact".to_owned(), false)]);
    assert_eq!(r.answer, "You told me: your dog is called Pixel.");
    assert_eq!(r.outcome, Some(RunOutcome::Answered));
    // A question the fact does not answer is left to the model's reply.
    let (app, _) = self::app(home.path(), &["Paris."]);
    let (r, events) = send(&app, "What is the capital of France?", RunMode::Chat);
    assert!(checks(&events).is_empty() && r.answer == "Paris.", "{:?} {}", checks(&events), r.answer);
}

#[test]
fn a_routed_call_that_fails_for_good_is_reported_not_answered() {
    let home = tempfile::tempdir().unwrap();
    // A file that is not UTF-8: files_read fails (not transient), and no tool takes its place.
    std::fs::create_dir_all(home.path().join("files")).unwrap();
    std::fs::write(home.path().join("files/notes.txt"), [0xff, 0xfe, 0x00, 0x35]).unwrap();
    let (app, backend) = app(home.path(), &[r#"{"answer": "The door code is 777777."}"#]);
    let (r, events) = send(&app, "Read notes.txt and tell me the door code in it.", RunMode::React);
    assert_eq!(routed(&events).len(), 1);
    assert!(events.iter().any(|e| matches!(e, RunEvent::ErrorReported { call_id, .. } if call_id == "r1")), "the fault landed on the routed call");
    assert!(backend.seen().is_empty(), "the model is not asked to guess: {:?}", backend.seen());
    assert!(!r.answer.contains("777777") && r.answer.contains("files_read failed"), "{}", r.answer);
}
