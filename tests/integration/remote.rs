//! The remote backend against a real OpenAI-compatible server on loopback (llama-cpp-python's server on the
//! pinned SmolLM2 GGUF), with a fault proxy in front of it for what the server cannot be made to do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::llm::remote::{RemoteBackend, RemoteConfig, RemoteErrorKind};
use keel::llm::{Backend, BackendError, CancelFlag, ChatMessage, GenerationSettings, Role, StopReason};
use keel::orchestration::events::RunEvent;
use keel::{App, BackendProfile, OpenOptions, RunMode, RunOptions};
use serde_json::{json, Value};

use super::common;
use super::llama_server::{Fault, FaultProxy, LlamaServer, MODEL};

fn config(base_url: &str, model: &str, retries: u32) -> RemoteConfig {
    RemoteConfig {
        name: "lab".into(),
        base_url: base_url.into(),
        model: model.into(),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
        max_retries: retries,
        context_window: 4096,
        key: None,
        key_problem: None,
    }
}

fn user(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new(Role::User, text)]
}

fn settings(max_tokens: u32) -> GenerationSettings {
    GenerationSettings { max_tokens, ..GenerationSettings::default() }
}

fn remote_kind(e: &BackendError) -> Option<RemoteErrorKind> {
    match e {
        BackendError::Remote { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn the_remote_backend_streams_calls_a_tool_answers_in_json_and_stops_when_cancelled() {
    let server = LlamaServer::start(None);
    let backend = RemoteBackend::new(config(&server.base_url(), MODEL, 1)).unwrap();
    assert_eq!(backend.list_models().unwrap(), vec![MODEL.to_string()]);

    // Streaming: the text arrives in pieces, as it is generated.
    let mut pieces: Vec<String> = Vec::new();
    let reply = backend
        .chat(&user("Write three sentences about the sea."), &settings(40), &CancelFlag::default(), &mut |p| pieces.push(p.to_owned()))
        .unwrap();
    assert!(pieces.len() >= 5, "{pieces:?}");
    assert_eq!(pieces.concat(), reply.text);
    assert_eq!(reply.completion_tokens as usize, pieces.len(), "the server sends one token a chunk and no usage");
    assert!(reply.prompt_tokens > 0);
    let ttft = reply.ttft_ms.expect("a first token");
    assert!(ttft <= reply.duration_ms, "{ttft} > {}", reply.duration_ms);
    assert!(matches!(reply.stop, StopReason::MaxTokens | StopReason::Eos));

    // A tool call: its streamed argument deltas are assembled into one call.
    let tools = vec![json!({"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})];
    let choice = json!({"type": "function", "function": {"name": "get_weather"}});
    let mut deltas = 0;
    let call = backend
        .chat_tools(&user("What is the weather in Paris?"), &settings(60), &tools, choice, &CancelFlag::default(), &mut |_| deltas += 1)
        .unwrap();
    assert_eq!(call.tool_calls.len(), 1, "{:?}", call.tool_calls);
    let made = &call.tool_calls[0];
    assert_eq!(made.name, "get_weather");
    assert!(made.id.starts_with("call_"), "{}", made.id);
    let arguments: Value = serde_json::from_str(&made.arguments).unwrap_or_else(|e| panic!("{e}: {}", made.arguments));
    assert!(arguments["city"].is_string(), "{arguments}");
    assert!(call.completion.completion_tokens > 3, "the arguments came in several deltas");

    // Structured output: this server refuses `json_schema` (a 500) and takes `json_object` with a schema.
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}}, "required": ["answer", "sure"]});
    let reply = backend.chat_json(&user("How many legs does a spider have?"), &settings(40), &schema, &CancelFlag::default(), &mut |_| {}).unwrap();
    let value: Value = serde_json::from_str(&reply.text).unwrap_or_else(|e| panic!("{e}: {}", reply.text));
    assert!(value["answer"].is_i64() && value["sure"].is_boolean(), "{value}");

    // Cancellation: the call returns at once, and closing the stream stops the server generating (it serves
    // one request at a time, so a listing that answers promptly shows the long reply was abandoned).
    let cancel = CancelFlag::default();
    let mut seen = 0;
    let mut cancelled_at = None;
    let reply = backend
        .chat(&user("Tell a very long story about a lighthouse keeper."), &settings(1500), &cancel, &mut |_| {
            seen += 1;
            if seen == 3 {
                cancel.cancel();
                cancelled_at = Some(Instant::now());
            }
        })
        .unwrap();
    let returned_after = cancelled_at.expect("cancelled").elapsed();
    assert_eq!(reply.stop, StopReason::Cancelled);
    assert!(returned_after < Duration::from_secs(2), "{returned_after:?}");
    let asked = Instant::now();
    backend.list_models().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5), "the server was still generating: {:?}", asked.elapsed());

    // A wrong model name: this server would answer it with its one model, so Keel checks the listing first.
    let wrong = RemoteBackend::new(config(&server.base_url(), "gpt-4o", 1)).unwrap();
    let e = wrong.chat(&user("Hello"), &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("has no model \"gpt-4o\"") && e.to_string().contains(MODEL), "{e}");
    assert!(e.hint().unwrap().contains("keel backends test lab"), "{:?}", e.hint());
}

#[test]
fn the_fault_proxy_shows_retries_rate_limits_broken_streams_and_malformed_chunks() {
    let server = LlamaServer::start(None);
    let hello = user("Say hello.");

    // 429 with Retry-After: 1, then the server: Keel waits the second it was asked to, then succeeds.
    let proxy = FaultProxy::start(server.port, vec![Fault::Status { status: 429, retry_after: Some("1"), body: r#"{"error": {"message": "slow down"}}"# }]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    let reply = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap();
    assert!(!reply.text.is_empty());
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let waited = seen[1].0 - seen[0].0;
    assert!(waited >= Duration::from_millis(1000), "Retry-After not honoured: {waited:?}");

    // A Retry-After longer than Keel waits: the error at once, saying how long the server asked for.
    let proxy = FaultProxy::start(server.port, vec![Fault::Status { status: 429, retry_after: Some("120"), body: "{}" }]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    let started = Instant::now();
    let e = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::RateLimited), "{e}");
    assert!(e.to_string().contains("asked to wait 120 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Two 503s, then the server: retried with backoff.
    let down = Fault::Status { status: 503, retry_after: None, body: r#"{"error": {"message": "overloaded"}}"# };
    let proxy = FaultProxy::start(server.port, vec![down.clone(), down.clone()]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    assert!(backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).is_ok());
    assert_eq!(proxy.seen.lock().unwrap().len(), 3);
    // …and with no retries left, the server's own message.
    let proxy = FaultProxy::start(server.port, vec![down.clone(), down]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 1)).unwrap();
    let e = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::Server), "{e}");
    assert!(e.to_string().contains("HTTP 503: overloaded"), "{e}");

    // A stream cut in the middle of the reply (after some text was shown): a protocol error, not a retry that
    // would show the text twice.
    let proxy = FaultProxy::start(server.port, vec![Fault::CutAfter(800)]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    let mut shown = String::new();
    let e = backend.chat(&user("Write a long poem about rivers."), &settings(200), &CancelFlag::default(), &mut |p| shown.push_str(p)).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::Protocol), "{e}");
    assert!(!shown.is_empty(), "the cut came after some text");
    assert!(e.to_string().contains("broke off the reply") || e.to_string().contains("closed the stream"), "{e}");
    assert_eq!(proxy.seen.lock().unwrap().len(), 1);

    // Cut inside the first event (the role chunk, before any text): retried, and the second attempt succeeds.
    let proxy = FaultProxy::start(server.port, vec![Fault::CutAfter(100)]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    assert!(backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).is_ok());
    assert_eq!(proxy.seen.lock().unwrap().len(), 2);

    // A malformed chunk: a protocol error that quotes it.
    let proxy = FaultProxy::start(server.port, vec![Fault::Malformed]);
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 0)).unwrap();
    let e = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::Protocol), "{e}");
    assert!(e.to_string().contains("malformed chunk"), "{e}");

    // A hosted API's 404 for a model it does not serve, and a 401 for a bad key: errors that name the fix.
    let proxy = FaultProxy::start(
        server.port,
        vec![
            Fault::Status { status: 404, retry_after: None, body: r#"{"error": {"message": "The model `x` does not exist"}}"# },
            Fault::Status { status: 401, retry_after: None, body: r#"{"error": {"message": "Incorrect API key provided"}}"# },
        ],
    );
    let backend = RemoteBackend::new(config(&proxy.base_url(), MODEL, 2)).unwrap();
    let e = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::NotFound), "{e}");
    let e = backend.chat(&hello, &settings(8), &CancelFlag::default(), &mut |_| {}).unwrap_err();
    assert_eq!(remote_kind(&e), Some(RemoteErrorKind::Unauthorized), "{e}");
    assert!(e.hint().unwrap().contains("keel keys set lab"));
    assert_eq!(proxy.seen.lock().unwrap().len(), 2, "neither is retried");
}

fn profile(base_url: &str, fallback: &[&str]) -> BackendProfile {
    BackendProfile {
        name: "lab".into(),
        base_url: base_url.into(),
        model: MODEL.into(),
        timeout_secs: 30,
        max_retries: 1,
        fallback: fallback.iter().map(|s| s.to_string()).collect(),
        context_window: Some(4096),
    }
}

fn replies(app: &App, run_id: i64) -> Vec<(Option<String>, Vec<keel::llm::BackendFailure>)> {
    app.get_run(run_id)
        .unwrap()
        .events
        .into_iter()
        .filter_map(|e| match e.event {
            RunEvent::ModelReplied { answered_by, fell_back, .. } => Some((answered_by, fell_back)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_falls_back_to_the_local_model_when_the_server_stops_mid_run() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open(OpenOptions { home: home.path().to_owned(), models_dir: common::models_dir() }).unwrap();
    let server = Arc::new(Mutex::new(LlamaServer::start(None)));
    let base_url = server.lock().unwrap().base_url();
    app.save_backend(&profile(&base_url, &["local"])).unwrap();
    let options = RunOptions { backend: Some("lab".into()), mode: Some(RunMode::Chat), ..RunOptions::default() };

    // The server answers while it runs.
    let result = app.send_message(None, "Say hello in one short sentence.", &settings(24), &options, &mut |_| {}).unwrap();
    assert!(!result.answer.is_empty(), "{result:?}");
    assert_eq!(replies(&app, result.run_id), vec![(Some("lab".to_string()), vec![])]);
    // The conversation keeps the backend its turn asked for (the chat reopens on it).
    assert_eq!(app.get_conversation(result.conversation_id).unwrap().conversation.backend.as_deref(), Some("lab"));

    // The same run forked from its start onto the embedded model: the branch is answered by `local`.
    let fork = app.fork_run(result.run_id, 0, None, Some("local"), &settings(24), &mut |_| {}).unwrap();
    assert_eq!(replies(&app, fork.run_id), vec![(Some("local".to_string()), vec![])]);
    assert!(app.fork_run(result.run_id, 0, None, Some("nowhere"), &settings(24), &mut |_| {}).is_err());

    // The server is killed while it streams the reply: the local model answers the same step instead.
    let stopper = server.clone();
    let mut tokens = 0;
    let mut streamed = String::new();
    let result = app
        .send_message(Some(result.conversation_id), "Now write a long story about a fox.", &settings(48), &options, &mut |e| {
            if let keel::TurnEvent::Token { text } = e {
                streamed.push_str(&text);
                tokens += 1;
                if tokens == 2 {
                    stopper.lock().unwrap().stop();
                }
            }
        })
        .unwrap();
    assert!(matches!(result.outcome, Some(keel::RunOutcome::Answered | keel::RunOutcome::Partial { .. })), "{:?}", result.outcome);
    assert!(!result.answer.is_empty(), "{result:?}");
    // The stream shows the server's partial reply, says it stopped, then streams the local model's; the
    // answer is the local model's alone.
    let (partial, rest) = streamed.split_once("\n\n[lab stopped mid-reply; local answers instead]\n\n").expect(&streamed);
    assert!(!partial.is_empty(), "{streamed:?}");
    assert_eq!(rest.trim(), result.answer.trim());
    let steps = replies(&app, result.run_id);
    assert_eq!(steps.len(), 1, "{steps:?}");
    let (answered_by, fell_back) = &steps[0];
    assert_eq!(answered_by.as_deref(), Some("local"));
    assert_eq!(fell_back.len(), 1, "{fell_back:?}");
    assert_eq!(fell_back[0].backend, "lab");
    let called = app.get_run(result.run_id).unwrap().events.into_iter().find_map(|e| match e.event {
        RunEvent::ModelCalled { backend, .. } => Some(backend),
        _ => None,
    });
    assert_eq!(called.as_deref(), Some("lab → local"));

    // With the server gone, the next turn falls back at once, and the failure names the address.
    let result = app.send_message(Some(result.conversation_id), "Say goodbye.", &settings(16), &options, &mut |_| {}).unwrap();
    let steps = replies(&app, result.run_id);
    assert_eq!(steps[0].0.as_deref(), Some("local"));
    assert!(steps[0].1[0].error.contains("could not be reached"), "{:?}", steps[0].1);

    // Without a fallback, the run fails with the server's error and its fix.
    app.save_backend(&profile(&base_url, &[])).unwrap();
    let result = app.send_message(None, "Hello?", &settings(8), &options, &mut |_| {}).unwrap();
    match result.outcome {
        Some(keel::RunOutcome::Failed { error, .. }) => assert!(error.contains("could not be reached"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tool_using_run_goes_through_the_remote_backend_with_structured_output() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open(OpenOptions { home: home.path().to_owned(), models_dir: common::models_dir() }).unwrap();
    let server = LlamaServer::start(None);
    app.save_backend(&profile(&server.base_url(), &[])).unwrap();
    app.set_default_backend("lab").unwrap();
    assert!(!app.needs_local_model(None).unwrap());
    let options = RunOptions { mode: Some(RunMode::React), limits: keel::Limits { max_steps: 3, ..Default::default() }, ..RunOptions::default() };
    let result = app.send_message(None, "Use the calculator to find 12 * 7 and tell me.", &settings(96), &options, &mut |_| {}).unwrap();
    let events = app.get_run(result.run_id).unwrap().events;
    let first_call = events.iter().find_map(|e| match &e.event {
        RunEvent::ModelCalled { backend, .. } => Some(backend.clone()),
        _ => None,
    });
    assert_eq!(first_call.as_deref(), Some("lab"));
    // The server constrains every reply to the action schema: each is a JSON object from its first character,
    // and one that is not a valid action was cut at the token limit (llama-cpp-python's grammar lets a string
    // run on, raw line breaks and all, and which path greedy decoding takes depends on the CPU it runs on).
    let all = || events.iter().map(|e| &e.event).collect::<Vec<_>>();
    let replies: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::ModelReplied { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(!replies.is_empty() && replies.iter().all(|r| r.trim_start().starts_with('{')), "{:#?}", all());
    for e in &events {
        if let RunEvent::ActionRejected { error, .. } = &e.event {
            assert!(error.contains("cut at the token limit"), "a schema-constrained reply was rejected for another reason: {error}");
        }
    }
    assert!(events.iter().any(|e| matches!(e.event, RunEvent::ActionParsed { .. })), "{:#?}", all());
}
