//! MCP servers over stdio, as Keel tools: each tool a Model Context Protocol server lists becomes a [`Tool`]
//! named `{server}.{tool}`.
//!
//! [`connect`] starts the server's process, does the MCP `initialize` handshake and lists its tools (every
//! page); [`McpServer::tools`] turns them into Keel tools whose input schema is the server's `inputSchema` and
//! whose result is `{"content": [...], "structured": ..., "is_error": false}` (see [`output_schema`]). The MCP
//! client is the `rmcp` crate, which is async; Keel's core is synchronous and runs each tool call on a thread of
//! its own, so every server owns a small tokio runtime (one worker) that carries its client and its process,
//! and a call blocks its thread on that runtime while it waits.
//!
//! State: per server, the runtime, the running client (until [`McpServer::shutdown`] or drop), a handle to send
//! requests, and the last bytes the process wrote to stderr (shown when it fails to start or dies). The tools
//! share this connection, so a tool outlives its `McpServer` harmlessly: once the server is shut down its calls
//! fail as [`ToolError::Transient`].
//!
//! What the server says about its tools (annotations such as `readOnlyHint`) is a hint from a program Keel does
//! not control, so it decides nothing: the effect comes from the user's [`McpServerConfig`], and no MCP tool is
//! taken as idempotent.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock, Implementation, JsonObject,
    ProtocolVersion,
};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService};
use rmcp::{Peer, ServiceError, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;
use tokio::runtime::Runtime;

use super::{CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

mod stdio;

use stdio::{ChildTransport, Dropped, OVERSIZE_CODE};

/// The longest one MCP tool call may take (the caller may give less).
pub const TIMEOUT_MS: u64 = 30_000;
/// How often a waiting call looks at its context's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a shutdown waits for the server to exit after its stdin is closed, before the process is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long a failed start waits for the last of the server's stderr, which often says why it failed.
const STDERR_SETTLE: Duration = Duration::from_millis(300);
/// How much of the server's stderr is kept: enough for a Python traceback's last lines.
const STDERR_TAIL_BYTES: usize = 2048;
/// How many of its last stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 6;

/// The only variables of Keel's environment a server inherits (the MCP Python SDK's list): the rest may hold
/// secrets (API keys, tokens) that a third-party server has no business reading. `McpServerConfig::env` adds
/// what a server needs beyond these.
#[cfg(not(windows))]
const INHERITED_ENV: &[&str] = &["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];
#[cfg(windows)]
const INHERITED_ENV: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
];

/// One MCP server the user configured: a program that speaks MCP on its stdin and stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerConfig {
    /// The server's name in Keel: its tools are called `{name}.{tool}`.
    pub name: String,
    /// The program to start (looked up on `PATH` when it has no slash).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables set for the server on top of the few it inherits (see `INHERITED_ENV`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// What calling its tools can do; `External` unless the user says otherwise.
    #[serde(default = "external")]
    pub effect: Effect,
}

fn external() -> Effect {
    Effect::External
}

impl McpServerConfig {
    /// A server with no extra environment whose tools count as `External`.
    pub fn new(name: impl Into<String>, command: impl Into<String>, args: Vec<String>) -> McpServerConfig {
        McpServerConfig { name: name.into(), command: command.into(), args, env: Vec::new(), effect: Effect::External }
    }
}

/// Why an MCP server could not be connected. Messages name the server and only its program, never its arguments
/// or environment, which may hold secrets; `stderr` is the end of what the server printed, often the real reason.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The process could not be started (no such program, not executable).
    #[error("cannot start the MCP server {server} (`{command}`): {source}; check that the program exists and runs")]
    Spawn {
        server: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The process started but the `initialize` exchange failed: it exited, or it is not an MCP server.
    #[error(
        "the MCP server {server} did not complete the MCP handshake: {reason}{}; check that `{command}` with its \
         arguments starts an MCP server on stdio",
        stderr_note(.stderr)
    )]
    Handshake { server: String, command: String, reason: String, stderr: String },
    /// The handshake passed but listing the tools failed.
    #[error(
        "the MCP server {server} could not list its tools: {reason}{}; check that it is a working MCP server",
        stderr_note(.stderr)
    )]
    Protocol { server: String, reason: String, stderr: String },
    /// Starting, the handshake and the tool list together took longer than allowed.
    #[error(
        "the MCP server {server} did not start within {after_ms} ms{}; check that `{command}` starts an MCP server \
         on stdio, or allow it longer",
        stderr_note(.stderr)
    )]
    Timeout { server: String, command: String, after_ms: u64, stderr: String },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (its stderr ended with: {stderr})")
    }
}

/// The end of what the server wrote to stderr, kept by a task that drains the pipe (a full pipe would stall a
/// server that logs).
#[derive(Default)]
struct StderrTail(Mutex<Vec<u8>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend_from_slice(bytes);
        let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
        tail.drain(..excess);
    }

    /// The last few non-empty lines on one line, or "" when the server printed nothing.
    fn last_lines(&self) -> String {
        let tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join(" | ")
    }
}

async fn drain_stderr(mut stderr: ChildStderr, tail: Arc<StderrTail>) {
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buf[..n]),
        }
    }
}

/// What the tools of one server share: the runtime their calls block on and the client they call through.
struct Connection {
    server: String,
    /// `Some` until the connection is dropped, when it is shut down (taken out of the option for that).
    runtime: Option<Runtime>,
    /// Sends requests; stays usable (failing fast) once the client is closed.
    peer: Peer<RoleClient>,
    /// The running client, which owns the process; `None` once closed.
    service: Mutex<Option<RunningService<RoleClient, ClientConfig>>>,
    stderr: Arc<StderrTail>,
    /// Answers too large to read whose request could not be told (see `stdio`).
    dropped: Arc<Dropped>,
}

impl Connection {
    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the connection")
    }

    /// Closes the client: its stdin is closed so that the server exits, and the process is killed if it has not
    /// within the grace period. Idempotent.
    fn close(&self) {
        let Some(mut service) = self.service.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped from inside some async runtime, where blocking would panic: cancel without waiting. The
            // child is killed when this connection's runtime shuts down (it is spawned with kill_on_drop).
            service.cancellation_token().cancel();
            return;
        }
        let _ = self.runtime().block_on(service.close_with_timeout(CLOSE_GRACE));
    }

    /// The error of a call to a server whose process is gone.
    fn exited(&self, tool: &str) -> ToolError {
        ToolError::Transient {
            tool: tool.to_owned(),
            message: format!(
                "the MCP server {} exited or was shut down{}; it must be connected again (restart Keel) before its \
                 tools work",
                self.server,
                stderr_note(&self.stderr.last_lines())
            ),
            retry_after_ms: None,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        if let Some(runtime) = self.runtime.take() {
            // Shutting the runtime down drops what still runs on it, the client's task among them, and with it the
            // child process, which kill_on_drop kills. Waiting for that is not allowed inside an async context.
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(1));
            }
        }
    }
}

/// A connected MCP server and the tools it listed. Dropping it shuts the server down, as [`McpServer::shutdown`]
/// does.
pub struct McpServer {
    connection: Arc<Connection>,
    tools: Vec<Arc<McpTool>>,
}

/// Starts the server, does the MCP handshake and lists its tools, all within `timeout`.
///
/// Call it from a plain thread, not from inside an async runtime: it blocks on the server's own runtime.
pub fn connect(config: &McpServerConfig, timeout: Duration) -> Result<McpServer, McpError> {
    let spawn_error = |source| McpError::Spawn { server: config.name.clone(), command: config.command.clone(), source };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("mcp {}", config.name))
        .enable_all()
        .build()
        .map_err(spawn_error)?;
    let stderr = Arc::new(StderrTail::default());
    let dropped = Arc::new(Dropped::default());
    let started =
        runtime.block_on(async { tokio::time::timeout(timeout, start(config, stderr.clone(), dropped.clone())).await });
    let (service, listed) = match started {
        Ok(Ok(started)) => started,
        Ok(Err(error)) => {
            runtime.shutdown_timeout(Duration::from_secs(1));
            return Err(error);
        }
        Err(_elapsed) => {
            runtime.shutdown_timeout(Duration::from_secs(1));
            return Err(McpError::Timeout {
                server: config.name.clone(),
                command: config.command.clone(),
                after_ms: timeout.as_millis() as u64,
                stderr: stderr.last_lines(),
            });
        }
    };
    let connection = Arc::new(Connection {
        server: config.name.clone(),
        runtime: Some(runtime),
        peer: service.peer().clone(),
        service: Mutex::new(Some(service)),
        stderr,
        dropped,
    });
    let tools = listed
        .into_iter()
        .map(|tool| Arc::new(McpTool::new(&config.name, config.effect, tool, connection.clone())))
        .collect();
    Ok(McpServer { connection, tools })
}

/// Spawns the process and runs the handshake and the tool listing (on the server's runtime).
async fn start(
    config: &McpServerConfig,
    stderr: Arc<StderrTail>,
    dropped: Arc<Dropped>,
) -> Result<(RunningService<RoleClient, ClientConfig>, Vec<rmcp::model::Tool>), McpError> {
    let mut command = tokio::process::Command::new(&config.command);
    command.args(&config.args).env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(config.env.iter().map(|(k, v)| (k, v)));
    // However the client ends (a timeout mid-handshake, a runtime shut down with the call in flight), dropping
    // the process handle kills the process, so no server outlives its connection.
    command.kill_on_drop(true).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_error = |source| McpError::Spawn { server: config.name.clone(), command: config.command.clone(), source };
    let mut child = command.spawn().map_err(spawn_error)?;
    let child_stderr = child.stderr.take();
    let transport = ChildTransport::new(child, dropped, CLOSE_GRACE).map_err(spawn_error)?;
    let mut drain = child_stderr.map(|pipe| tokio::spawn(drain_stderr(pipe, stderr.clone())));
    // The stderr of a server that failed to start usually says why; give the drain a moment to read its last words.
    let settle = |drain: Option<tokio::task::JoinHandle<()>>| async move {
        if let Some(mut drain) = drain {
            let _ = tokio::time::timeout(STDERR_SETTLE, &mut drain).await;
        }
    };
    let service = match client_config().serve(transport).await {
        Ok(service) => service,
        Err(error) => {
            settle(drain.take()).await;
            return Err(McpError::Handshake {
                server: config.name.clone(),
                command: config.command.clone(),
                reason: handshake_reason(&error),
                stderr: stderr.last_lines(),
            });
        }
    };
    match service.peer().list_all_tools().await {
        Ok(tools) => Ok((service, tools)),
        Err(error) => {
            settle(drain.take()).await;
            Err(McpError::Protocol {
                server: config.name.clone(),
                reason: error.to_string(),
                stderr: stderr.last_lines(),
            })
        }
    }
}

/// Keel as an MCP client: no optional capabilities (no sampling, roots or elicitation to offer a server).
fn client_config() -> ClientConfig {
    // The `initialize` handshake is offered at the newest version that still has one; protocol versions from
    // `NO_INITIALIZE` on replace it with per-request metadata, which servers of the handshake era do not know. A
    // server that speaks only older versions answers with one of those, as the spec says.
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("keel", env!("CARGO_PKG_VERSION")))
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

fn handshake_reason(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::ConnectionClosed(_) => {
            "the process closed its stdout before answering (it probably exited)".to_owned()
        }
        other => other.to_string(),
    }
}

impl McpServer {
    /// The server's name, as in its tools' names.
    pub fn name(&self) -> &str {
        &self.connection.server
    }

    /// One Keel tool per MCP tool, named `{server}.{tool}`. [`super::Toolbox::add`] compiles their schemas and
    /// refuses a tool whose schema is broken; the caller leaves that one out and reports it.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.iter().map(|t| t.clone() as Arc<dyn Tool>).collect()
    }

    /// Closes the connection: the server's stdin is closed so that it exits, and it is killed if it has not within
    /// a few seconds. Its tools fail as transient from then on.
    pub fn shutdown(self) {
        self.connection.close();
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.connection.close();
    }
}

/// One tool of an MCP server.
struct McpTool {
    spec: ToolSpec,
    /// The tool's name on the server (the spec's name carries the server's prefix).
    remote_name: String,
    connection: Arc<Connection>,
}

/// How waiting for a call ended.
enum Waited {
    Answered(Result<CallToolResult, ServiceError>),
    TimedOut,
    Cancelled,
}

impl McpTool {
    fn new(server: &str, effect: Effect, tool: rmcp::model::Tool, connection: Arc<Connection>) -> McpTool {
        let name = format!("{server}.{}", tool.name);
        let description = match (&tool.description, &tool.title) {
            (Some(description), _) if !description.trim().is_empty() => description.to_string(),
            (_, Some(title)) if !title.trim().is_empty() => title.clone(),
            _ => format!("The tool {} of the MCP server {server}.", tool.name),
        };
        let spec = ToolSpec {
            name,
            description,
            input_schema: Value::Object((*tool.input_schema).clone()),
            output_schema: output_schema(tool.output_schema.as_deref()),
            effect,
            timeout_ms: TIMEOUT_MS,
            idempotent: false,
            capability: None,
            origin: Origin::External,
        };
        McpTool { spec, remote_name: tool.name.into_owned(), connection }
    }

    fn name(&self) -> String {
        self.spec.name.clone()
    }

    /// Keel's result from the server's: an `isError` result is a failure whose message is the result's text.
    fn result(&self, result: CallToolResult) -> Result<Value, ToolError> {
        if result.is_error == Some(true) {
            let text = texts(&result.content);
            let message =
                if text.is_empty() { "the MCP tool reported an error without a message".to_owned() } else { text };
            return Err(ToolError::Failed { tool: self.name(), message });
        }
        let content = serde_json::to_value(&result.content).map_err(|e| ToolError::Failed {
            tool: self.name(),
            message: format!("cannot read the result's content: {e}"),
        })?;
        Ok(json!({
            "content": content,
            "structured": result.structured_content.unwrap_or(Value::Null),
            "is_error": false,
        }))
    }

    fn call_error(&self, error: ServiceError, limit: Duration) -> ToolError {
        let server = &self.connection.server;
        match error {
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => self.connection.exited(&self.spec.name),
            ServiceError::Timeout { .. } => {
                ToolError::Timeout { tool: self.name(), after_ms: limit.as_millis() as u64 }
            }
            ServiceError::Cancelled { .. } => ToolError::Cancelled { tool: self.name() },
            // Keel's own answer for a result too large to read (`stdio::Oversize`).
            ServiceError::McpError(data) if data.code.0 == OVERSIZE_CODE => ToolError::Failed {
                tool: self.name(),
                message: format!(
                    "the MCP server {server} answered, but {}; ask the tool for less (a narrower query, fewer items, \
                     or a page at a time)",
                    data.message
                ),
            },
            // A JSON-RPC error answer: the server refused the request itself (unknown tool, invalid params).
            ServiceError::McpError(data) => ToolError::Failed {
                tool: self.name(),
                message: format!("the MCP server {server} answered with error {data}"),
            },
            other => ToolError::Failed {
                tool: self.name(),
                message: format!("the MCP server {server} did not answer with a tool result: {other}"),
            },
        }
    }
}

impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, cx: &CallContext) -> Result<Value, ToolError> {
        let arguments = match args {
            Value::Object(arguments) => Some(arguments.clone()),
            Value::Null => None,
            _ => {
                return Err(ToolError::InvalidArguments {
                    tool: self.name(),
                    errors: vec!["an MCP tool takes an object of named arguments".into()],
                })
            }
        };
        let connection = &self.connection;
        if connection.peer.is_transport_closed() {
            return Err(connection.exited(&self.spec.name));
        }
        let mut params = CallToolRequestParams::new(self.remote_name.clone());
        params.arguments = arguments;
        let limit = cx.remaining();
        let dropped_before = connection.dropped.count.load(std::sync::atomic::Ordering::Relaxed);
        // Whichever branch loses is dropped: for the call, rmcp then sends the server `notifications/cancelled`
        // (a best-effort notice, so that it stops working on a result nobody will read).
        let waited = connection.runtime().block_on(async {
            tokio::select! {
                biased;
                answered = tokio::time::timeout(limit, connection.peer.call_tool(params)) => match answered {
                    Ok(answered) => Waited::Answered(answered),
                    Err(_elapsed) => Waited::TimedOut,
                },
                () = stop_requested(cx) => {
                    // The context also reads as cancelled once its deadline has passed.
                    if Instant::now() >= cx.deadline { Waited::TimedOut } else { Waited::Cancelled }
                }
            }
        });
        match waited {
            Waited::Answered(Ok(result)) => self.result(result),
            Waited::Answered(Err(error)) => Err(self.call_error(error, limit)),
            Waited::TimedOut if connection.dropped.count.load(std::sync::atomic::Ordering::Relaxed) > dropped_before => {
                let bytes = connection.dropped.last_bytes.load(std::sync::atomic::Ordering::Relaxed);
                Err(ToolError::Failed {
                    tool: self.name(),
                    message: format!(
                        "no answer within {} ms; meanwhile the MCP server {} sent a message of {bytes} bytes, over the \
                         {} MiB Keel reads from one message, which was dropped unread: it was probably this call's \
                         answer; ask the tool for less (a narrower query, fewer items, or a page at a time)",
                        limit.as_millis(),
                        connection.server,
                        stdio::MAX_MESSAGE_BYTES >> 20
                    ),
                })
            }
            Waited::TimedOut => Err(ToolError::Timeout { tool: self.name(), after_ms: limit.as_millis() as u64 }),
            Waited::Cancelled => Err(ToolError::Cancelled { tool: self.name() }),
        }
    }
}

/// Resolves once the call's context says stop (cancelled, or past its deadline).
async fn stop_requested(cx: &CallContext) {
    while !cx.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

/// The text items of an MCP result, one per line.
fn texts(content: &[ContentBlock]) -> String {
    content.iter().filter_map(ContentBlock::as_text).map(|t| t.text.trim()).collect::<Vec<_>>().join("\n")
}

/// The output schema of an MCP tool as a Keel tool: Keel's result is always
/// `{"content": [MCP content items], "structured": structuredContent or null, "is_error": false}`, and when the
/// server declared an `outputSchema`, `structured` must satisfy it (MCP requires a server that declares one to
/// return conforming structured content), so a server that breaks its own schema is caught as schema drift.
pub fn output_schema(structured: Option<&JsonObject>) -> Value {
    let mut root = Map::new();
    let structured = match structured {
        None => json!({}),
        Some(schema) => {
            let mut schema = schema.clone();
            // A `$ref` such as `#/$defs/Item` (Pydantic writes them) points into the root of the document, which
            // is now this wrapper, so the definitions (and the dialect) move up to it. A schema with its own `$id`
            // is a resource of its own and resolves its references against itself; it stays whole.
            if !schema.contains_key("$id") {
                for key in ["$schema", "$defs", "definitions"] {
                    if let Some(value) = schema.remove(key) {
                        root.insert(key.to_owned(), value);
                    }
                }
            }
            Value::Object(schema)
        }
    };
    root.insert("type".into(), json!("object"));
    root.insert(
        "properties".into(),
        json!({
            "content": { "type": "array", "items": { "type": "object" } },
            "structured": structured,
            "is_error": { "type": "boolean" },
        }),
    );
    root.insert("required".into(), json!(["content", "structured", "is_error"]));
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(schema: &Value, value: &Value) -> bool {
        jsonschema::validator_for(schema).unwrap().is_valid(value)
    }

    #[test]
    fn without_an_output_schema_any_structured_value_passes() {
        let schema = output_schema(None);
        assert!(valid(
            &schema,
            &json!({"content": [{"type": "text", "text": "hi"}], "structured": null, "is_error": false})
        ));
        assert!(!valid(&schema, &json!({"structured": null, "is_error": false})));
    }

    #[test]
    fn a_declared_output_schema_binds_the_structured_value() {
        let declared = json!({"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]});
        let schema = output_schema(declared.as_object());
        assert!(valid(&schema, &json!({"content": [], "structured": {"result": 5}, "is_error": false})));
        assert!(!valid(&schema, &json!({"content": [], "structured": {"result": "five"}, "is_error": false})));
        assert!(!valid(&schema, &json!({"content": [], "structured": null, "is_error": false})));
    }

    #[test]
    fn references_into_the_declared_schemas_definitions_still_resolve() {
        let declared = json!({
            "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        });
        let schema = output_schema(declared.as_object());
        assert!(valid(&schema, &json!({"content": [], "structured": {"items": [{"n": 1}]}, "is_error": false})));
        assert!(!valid(&schema, &json!({"content": [], "structured": {"items": [{"n": "x"}]}, "is_error": false})));
    }

    #[test]
    fn stderr_keeps_only_its_last_lines() {
        let tail = StderrTail::default();
        for i in 0..1000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(tail.last_lines(), "line 994 | line 995 | line 996 | line 997 | line 998 | line 999");
        assert_eq!(StderrTail::default().last_lines(), "");
    }
}
