//! MCP servers as tools, against a real server: tests/fixtures/mcp/echo_server.py on the official MCP Python
//! SDK (pinned; scripts/test.sh installs it into a venv). Its tools get Keel's contracts: arguments validated
//! before the server sees them, timeouts, cancellation, `isError` as a failure, a dead server as transient —
//! and in a run they are `External`, so they need the user's approval like any side-effecting tool.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::llm::scripted::{ScriptedBackend, ScriptedReply};
use keel::llm::GenerationSettings;
use keel::orchestration::events::{RunOutcome, UserAnswer};
use keel::orchestration::{RunMode, UserRequest};
use keel::tools::mcp::{connect, McpError, McpServer, McpServerConfig};
use keel::tools::{Effect, ToolError, Toolbox};
use keel::{App, OpenOptions, RunOptions};
use serde_json::{json, Value};

use super::common::{keel, repo, stderr, stdout};

/// The venv's Python with the pinned `mcp` package. Fails, never skips, without it.
fn mcp_python() -> String {
    let python = std::env::var_os("KEEL_MCP_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("KEEL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/keel"));
        cache.join("mcp-venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run the suite with scripts/test.sh, which installs tests/fixtures/mcp/requirements.txt into it",
        python.display()
    );
    python.to_string_lossy().into_owned()
}

fn script() -> String {
    repo().join("tests/fixtures/mcp/echo_server.py").to_string_lossy().into_owned()
}

fn never() -> bool {
    false
}

fn echo_server() -> McpServer {
    connect(&McpServerConfig::new("echo", mcp_python(), vec![script()]), Duration::from_secs(60)).expect("the echo server starts")
}

fn toolbox(server: &McpServer) -> Toolbox {
    let mut toolbox = Toolbox::new();
    for tool in server.tools() {
        toolbox.add(tool).expect("the SDK's schemas compile");
    }
    toolbox
}

#[test]
fn an_mcp_servers_tools_are_called_under_keels_contracts() {
    let server = echo_server();
    let toolbox = toolbox(&server);
    let names: Vec<String> = toolbox.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["echo.add", "echo.append", "echo.big", "echo.crash", "echo.echo", "echo.fail", "echo.slow"]);
    let add = toolbox.spec("echo.add").unwrap();
    assert_eq!((add.effect, add.idempotent), (Effect::External, false));
    assert_eq!(add.input_schema["required"], json!(["a", "b"]));

    let sum = toolbox.call("echo.add", &json!({"a": 2, "b": 3}), None, &never).unwrap();
    assert_eq!(sum["structured"], json!({"result": 5}));
    assert_eq!(sum["is_error"], json!(false));
    assert_eq!(toolbox.call("echo.echo", &json!({"text": "héllo"}), None, &never).unwrap()["structured"], json!({"result": "héllo"}));

    // Arguments that break the server's inputSchema are refused before the server sees them.
    match toolbox.call("echo.add", &json!({"a": "two", "b": 3}), None, &never) {
        Err(ToolError::InvalidArguments { tool, errors }) => {
            assert_eq!(tool, "echo.add");
            assert!(errors.iter().any(|e| e.contains("/a")), "{errors:?}");
        }
        other => panic!("expected invalid arguments, got {other:?}"),
    }

    // isError is a failure carrying the tool's text.
    match toolbox.call("echo.fail", &json!({"message": "boom"}), None, &never) {
        Err(ToolError::Failed { message, .. }) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }

    // Past its time: a timeout; the server is told to stop and stays usable.
    let started = Instant::now();
    assert!(matches!(
        toolbox.call("echo.slow", &json!({"ms": 10_000}), Some(Duration::from_millis(300)), &never),
        Err(ToolError::Timeout { after_ms: 300, .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(toolbox.call("echo.add", &json!({"a": 1, "b": 1}), None, &never).unwrap()["structured"]["result"], 2);

    // Cancelled by the caller.
    let asked = Instant::now();
    let cancel = move || asked.elapsed() > Duration::from_millis(200);
    assert!(matches!(toolbox.call("echo.slow", &json!({"ms": 10_000}), None, &cancel), Err(ToolError::Cancelled { .. })));
    assert!(asked.elapsed() < Duration::from_secs(3));

    // A server that dies mid-call: its tools fail as transient, naming the server.
    assert!(matches!(toolbox.call("echo.crash", &json!({}), None, &never), Err(ToolError::Transient { .. })));
    match toolbox.call("echo.add", &json!({"a": 2, "b": 3}), None, &never) {
        Err(ToolError::Transient { message, .. }) => assert!(message.contains("echo"), "{message}"),
        other => panic!("expected transient, got {other:?}"),
    }
    server.shutdown();
}

#[test]
fn a_server_that_cannot_start_is_named_with_the_reason() {
    let error = connect(&McpServerConfig::new("ghost", "/nonexistent/mcp-server", vec![]), Duration::from_secs(10)).err().unwrap();
    assert!(matches!(error, McpError::Spawn { .. }) && error.to_string().contains("ghost"), "{error}");
    let mute = McpServerConfig::new("mute", mcp_python(), vec!["-c".into(), "import sys; sys.stderr.write('no mcp here\\n')".into()]);
    let error = connect(&mute, Duration::from_secs(20)).err().unwrap();
    assert!(error.to_string().contains("no mcp here"), "{error}");
}

pub(crate) fn write_config(home: &std::path::Path) {
    let config = format!(
        "[[servers]]\nname = \"echo\"\ncommand = {:?}\nargs = [{:?}]\n",
        mcp_python(),
        script()
    );
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join(keel::MCP_CONFIG), config).unwrap();
}

#[test]
fn configured_servers_appear_in_keel_tools_and_their_calls_in_a_run_need_approval() {
    let home = tempfile::tempdir().unwrap();
    write_config(home.path());
    let list = keel(home.path()).args(["tools", "list", "--json"]).output().unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    let tools: Vec<Value> = serde_json::from_str(&stdout(&list)).unwrap();
    let add = tools.iter().find(|t| t["name"] == "echo.add").expect("echo.add is listed");
    assert_eq!(add["effect"], "external");
    let call = keel(home.path()).args(["tools", "call", "echo.add", r#"{"a": 20, "b": 22}"#, "--json"]).output().unwrap();
    assert!(call.status.success(), "{}", stdout(&call));
    let v: Value = serde_json::from_str(&stdout(&call)).unwrap();
    assert_eq!(v["structured"]["result"], 42);
    let bad = keel(home.path()).args(["tools", "call", "echo.add", r#"{"a": 1}"#, "--json"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stdout(&bad));

    // In a run, like a built-in: validated, approved, called, its result given to the model as data.
    let backend = ScriptedBackend::new([
        ScriptedReply::Text(r#"{"tool": "echo.add", "arguments": {"a": 2, "b": 40}}"#.into()),
        ScriptedReply::Text(r#"{"answer": "The server says 42."}"#.into()),
    ]);
    let options = OpenOptions { home: home.path().to_owned(), models_dir: home.path().join("no-models") };
    let app = App::open_with_backend(options, Arc::new(backend)).unwrap();
    let run = RunOptions { mode: Some(RunMode::React), ..RunOptions::default() };
    let r = app.send_message(None, "add them", &GenerationSettings::default(), &run, &mut |_| {}).unwrap();
    let Some(UserRequest::Approval { call_id, tool, effect, .. }) = r.waiting.clone() else { panic!("{r:?}") };
    assert_eq!((tool.as_str(), effect), ("echo.add", Effect::External));
    let done = app.answer_run(r.run_id, UserAnswer::Approve { call_id }, &GenerationSettings::default(), &mut |_| {}).unwrap();
    assert_eq!(done.outcome, Some(RunOutcome::Answered));
    let events = app.get_run(r.run_id).unwrap().events;
    assert!(events.iter().any(|e| matches!(&e.event, keel::orchestration::events::RunEvent::ToolReturned { result: keel::orchestration::events::ToolOutcome::Ok { value }, .. } if value["structured"]["result"] == 42)));
}
