//! The tools layer: what the agent can do besides talk, each behind a strict contract.
//!
//! A tool is a [`ToolSpec`] (name, description, JSON Schemas for its arguments and its result, its effect, a
//! timeout, whether a retry is safe, where its result comes from) and a [`Tool::call`]. The [`Toolbox`] holds the tools a run may use and is
//! the one way to call them: it validates the arguments against the input schema before the tool sees them, runs
//! the call on its own thread under the tool's timeout and the caller's cancellation, and validates the result
//! against the output schema (a result that breaks it is [`ToolError::SchemaDrift`], never data). Tools are
//! unreliable by assumption; retries, alternatives and approvals are orchestration's decisions, made on the
//! closed [`ToolError`] classes below. Tools never call the LLM and know nothing of runs.

pub mod calculator;
pub mod clock;
pub mod faults;
pub mod files;
pub mod http;
pub mod mcp;
pub mod memory;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

/// What calling a tool can do to the world; it decides whether the user must approve the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Computes from its arguments alone (calculator, clock).
    Pure,
    /// Reads the user's data (memory search, reading a file).
    Read,
    /// Changes the user's data (saving a memory, writing a file).
    Write,
    /// Reaches outside the machine or into other programs (HTTP, MCP servers).
    External,
}

impl Effect {
    /// `Write` and `External` calls need the user's approval unless the policy allows them.
    pub fn has_side_effects(self) -> bool {
        matches!(self, Effect::Write | Effect::External)
    }
}

/// Where a tool's result comes from. It decides whether the agent may read the result as anything but data:
/// only Keel's own computation is trusted, and only for a tool that neither reads the user's data nor reaches
/// outside (see `orchestration::policy::output_source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Keel computes it from the arguments (calculator, clock) or reports its own action (a file written).
    Keel,
    /// The user's files and documents.
    Document,
    /// The user's memory store.
    Memory,
    /// A web page or web service.
    Web,
    /// Another program: an MCP server, a service. The default for a tool that does not say.
    #[default]
    External,
}

/// A tool's contract, as listed by `keel tools list` and shown to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema the arguments must satisfy.
    #[ts(type = "unknown")]
    pub input_schema: Value,
    /// JSON Schema the result must satisfy.
    #[ts(type = "unknown")]
    pub output_schema: Value,
    pub effect: Effect,
    /// The longest one call may take.
    #[ts(type = "number")]
    pub timeout_ms: u64,
    /// True when calling twice with the same arguments has the same effect as once (safe to retry after a crash).
    pub idempotent: bool,
    /// Tools with the same capability can stand in for each other (an alternative when one keeps failing).
    pub capability: Option<String>,
    /// Where its result comes from (whether it is untrusted text). Missing in a stored spec: external.
    #[serde(default)]
    pub origin: Origin,
}

/// Why a tool call did not produce a valid result. The variants are the decisions the orchestrator makes.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize, TS)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum ToolError {
    #[error("there is no tool named {name:?}; `keel tools list` shows the tools")]
    UnknownTool { name: String },
    #[error("the arguments for {tool} do not match its input schema: {}", errors.join("; "))]
    InvalidArguments { tool: String, errors: Vec<String> },
    #[error("{tool} returned a result that breaks its output schema: {}", errors.join("; "))]
    SchemaDrift { tool: String, errors: Vec<String> },
    #[error("{tool} did not finish within {after_ms} ms")]
    Timeout {
        tool: String,
        #[ts(type = "number")]
        after_ms: u64,
    },
    /// A failure that may pass: a refused connection, a 429 or 5xx, a busy resource.
    #[error("{tool} failed, possibly temporarily: {message}")]
    Transient {
        tool: String,
        message: String,
        /// The server's `Retry-After`, when it gave one.
        #[ts(type = "number | null")]
        retry_after_ms: Option<u64>,
    },
    /// Refused for the user's safety or by policy (a path outside the folder, a private address, a disabled tool).
    #[error("{tool} refused: {reason}")]
    Refused { tool: String, reason: String },
    /// A failure that retrying will not fix (a file that does not exist, a division by zero).
    #[error("{tool} failed: {message}")]
    Failed { tool: String, message: String },
    #[error("{tool} was cancelled")]
    Cancelled { tool: String },
}

/// A tool error's class: what the orchestrator decides on (retry, another tool, tell the model, ask the user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolErrorClass {
    UnknownTool,
    InvalidArguments,
    SchemaDrift,
    Timeout,
    Transient,
    Refused,
    Failed,
    Cancelled,
}

impl ToolErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolErrorClass::UnknownTool => "unknown_tool",
            ToolErrorClass::InvalidArguments => "invalid_arguments",
            ToolErrorClass::SchemaDrift => "schema_drift",
            ToolErrorClass::Timeout => "timeout",
            ToolErrorClass::Transient => "transient",
            ToolErrorClass::Refused => "refused",
            ToolErrorClass::Failed => "failed",
            ToolErrorClass::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ToolErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToolError {
    /// A short name of the class, as recorded in runs.
    pub fn class(&self) -> ToolErrorClass {
        match self {
            ToolError::UnknownTool { .. } => ToolErrorClass::UnknownTool,
            ToolError::InvalidArguments { .. } => ToolErrorClass::InvalidArguments,
            ToolError::SchemaDrift { .. } => ToolErrorClass::SchemaDrift,
            ToolError::Timeout { .. } => ToolErrorClass::Timeout,
            ToolError::Transient { .. } => ToolErrorClass::Transient,
            ToolError::Refused { .. } => ToolErrorClass::Refused,
            ToolError::Failed { .. } => ToolErrorClass::Failed,
            ToolError::Cancelled { .. } => ToolErrorClass::Cancelled,
        }
    }

    /// Worth retrying the same call after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, ToolError::Timeout { .. } | ToolError::Transient { .. })
    }

    /// The tool itself misbehaved (as opposed to the call being wrong): another tool with the same capability
    /// may do better.
    pub fn tool_at_fault(&self) -> bool {
        matches!(self, ToolError::Timeout { .. } | ToolError::Transient { .. } | ToolError::SchemaDrift { .. } | ToolError::Failed { .. })
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ToolError::Transient { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

/// What a running call can see: whether it should stop, and by when it must be done.
#[derive(Debug, Clone)]
pub struct CallContext {
    cancel: Arc<AtomicBool>,
    pub deadline: Instant,
}

impl CallContext {
    pub fn new(timeout: Duration) -> CallContext {
        CallContext { cancel: Arc::default(), deadline: Instant::now() + timeout }
    }

    /// True once the call was cancelled or timed out: a long tool checks it and stops.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A tool. `call` gets arguments already validated against the input schema and runs on its own thread.
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    fn call(&self, args: &Value, cx: &CallContext) -> Result<Value, ToolError>;
}

/// Checks `value` against a compiled schema; the errors name the failing location.
struct Contract {
    input: jsonschema::Validator,
    output: jsonschema::Validator,
}

fn schema_errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect()
}

/// A tool whose schemas could not be compiled (an MCP server's broken schema, say); it is left out, not called.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tool {tool} has an invalid {which} schema: {error}")]
pub struct SchemaError {
    pub tool: String,
    pub which: &'static str,
    pub error: String,
}

/// The tools a run (or `keel tools call`) may use, with their compiled contracts.
#[derive(Default)]
pub struct Toolbox {
    tools: BTreeMap<String, (Arc<dyn Tool>, Arc<Contract>)>,
}

impl Toolbox {
    pub fn new() -> Toolbox {
        Toolbox::default()
    }

    /// Adds a tool, compiling its schemas; a tool with the name of one already present replaces it.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<(), SchemaError> {
        let spec = tool.spec();
        let compile = |which: &'static str, schema: &Value| {
            jsonschema::validator_for(schema).map_err(|e| SchemaError { tool: spec.name.clone(), which, error: e.to_string() })
        };
        let contract = Contract { input: compile("input", &spec.input_schema)?, output: compile("output", &spec.output_schema)? };
        self.tools.insert(spec.name.clone(), (tool.clone(), Arc::new(contract)));
        Ok(())
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|(t, _)| t.spec().clone()).collect()
    }

    pub fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name).map(|(t, _)| t.spec())
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Other tools with the same capability as `name`, in name order.
    pub fn alternatives(&self, name: &str) -> Vec<String> {
        let Some(cap) = self.spec(name).and_then(|s| s.capability.clone()) else { return Vec::new() };
        self.tools
            .values()
            .map(|(t, _)| t.spec())
            .filter(|s| s.name != name && s.capability.as_deref() == Some(cap.as_str()))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Checks arguments against the tool's input schema without calling it.
    pub fn validate_arguments(&self, name: &str, args: &Value) -> Result<(), ToolError> {
        let (_, contract) = self.tools.get(name).ok_or_else(|| ToolError::UnknownTool { name: name.to_owned() })?;
        let errors = schema_errors(&contract.input, args);
        if errors.is_empty() { Ok(()) } else { Err(ToolError::InvalidArguments { tool: name.to_owned(), errors }) }
    }

    /// One attempt: validate the arguments, run the call under the tool's timeout (or `timeout`, when shorter),
    /// stop waiting as soon as `cancelled()` says so, and validate the result. A call that times out or is
    /// cancelled is told to stop through its context; its result, if it ever comes, is dropped.
    pub fn call(
        &self,
        name: &str,
        args: &Value,
        timeout: Option<Duration>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Value, ToolError> {
        let (tool, contract) = self.tools.get(name).ok_or_else(|| ToolError::UnknownTool { name: name.to_owned() })?;
        self.validate_arguments(name, args)?;
        let spec = tool.spec();
        let limit = Duration::from_millis(spec.timeout_ms).min(timeout.unwrap_or(Duration::MAX));
        let cx = CallContext::new(limit);
        let (tx, rx) = mpsc::channel();
        let (worker_tool, worker_cx, worker_args) = (tool.clone(), cx.clone(), args.clone());
        std::thread::Builder::new()
            .name(format!("tool {name}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker_tool.call(&worker_args, &worker_cx)));
                let _ = tx.send(result);
            })
            .map_err(|e| ToolError::Failed { tool: name.to_owned(), message: format!("cannot start the call: {e}") })?;
        let stop = |error: ToolError| {
            cx.cancel.store(true, Ordering::SeqCst);
            Err(error)
        };
        let result = loop {
            match rx.recv_timeout(Duration::from_millis(10).min(cx.remaining().max(Duration::from_millis(1)))) {
                // A tool that stopped because its context said so, when the caller did not cancel, stopped at
                // the deadline: that is a timeout, whichever side noticed it first.
                Ok(Ok(Err(ToolError::Cancelled { .. }))) if !cancelled() => {
                    return Err(ToolError::Timeout { tool: name.to_owned(), after_ms: limit.as_millis() as u64 })
                }
                // A tool that timed out at the call's deadline reports the time it had left when it started,
                // which a busy machine makes a little less than the limit: the caller is told the limit.
                Ok(Ok(Err(ToolError::Timeout { .. }))) if Instant::now() >= cx.deadline => {
                    return Err(ToolError::Timeout { tool: name.to_owned(), after_ms: limit.as_millis() as u64 })
                }
                Ok(Ok(result)) => break result,
                Ok(Err(panic)) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    return Err(ToolError::Failed { tool: name.to_owned(), message: format!("the tool crashed: {what}") });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ToolError::Failed { tool: name.to_owned(), message: "the call ended without a result".into() })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancelled() {
                        return stop(ToolError::Cancelled { tool: name.to_owned() });
                    }
                    if Instant::now() >= cx.deadline {
                        return stop(ToolError::Timeout { tool: name.to_owned(), after_ms: limit.as_millis() as u64 });
                    }
                }
            }
        };
        let value = result?;
        let errors = schema_errors(&contract.output, &value);
        if errors.is_empty() { Ok(value) } else { Err(ToolError::SchemaDrift { tool: name.to_owned(), errors }) }
    }
}

/// A JSON Schema for an object with these required properties (and no others): the common case for built-ins.
pub fn object_schema(properties: Value, required: &[&str]) -> Value {
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}
