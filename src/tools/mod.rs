//! The tools layer: what the agent can do besides talk, each behind a strict contract.
//!
//! A tool is a [`ToolSpec`] (name, description, JSON Schemas for its arguments and its result, its effect, a
//! timeout, whether a retry is safe, where its result comes from) and a [`Tool::call`]. The [`Toolbox`] holds the tools a run may use and is
//! the one way to call them: it validates the arguments against the input schema before the tool sees them, runs
//! the call on its own thread under the tool's timeout and the caller's cancellation, and validates the result
//! against the output schema (a result that breaks it is [`ToolError::SchemaDrift`], never data); a result larger
//! than [`MAX_RESULT_BYTES`] has its longest strings cut, with a notice in each ([`fit_result`]). Tools are
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

/// The most a tool's result may take, as JSON: what the event log keeps and the model may be shown. A tool
/// (an MCP server, above all) may answer with far more; its longest strings are then cut ([`fit_result`]). Twice
/// the built-in tools' own caps (a file read or an HTTP body of 1 MiB), so their results are never cut again.
pub const MAX_RESULT_BYTES: usize = 2 * 1024 * 1024;

/// The longest text of a tool's error (its message, each schema error) that is kept.
pub const MAX_ERROR_BYTES: usize = 4096;

/// The bytes `value` takes as compact JSON, counted without writing it anywhere.
pub fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("a Value always serialises");
    count.0
}

/// Fits `value` in `max` bytes of JSON by cutting its longest strings (each cut on a character boundary and
/// ended with a notice saying how much was cut), halving the length kept until it fits. `Err` with the size
/// when cutting strings cannot make it fit (a result of many small values).
pub fn fit_result(value: &mut Value, max: usize) -> Result<bool, usize> {
    let size = json_len(value);
    if size <= max {
        return Ok(false);
    }
    /// `s` kept to its first `keep` bytes (on a character boundary), with the notice.
    fn cut_string(s: &str, keep: usize, max: usize) -> String {
        let mut at = keep;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let limit = crate::shared::io::size(max as u64);
        format!("{} […] [Keel cut {} here: a tool result is kept to {limit}]", &s[..at], crate::shared::io::size((s.len() - at) as u64))
    }
    /// The JSON size of `v` with its strings longer than `keep` cut, without cutting them.
    fn fitted_len(v: &Value, keep: usize, max: usize) -> usize {
        match v {
            Value::String(s) if s.len() > keep => json_len(&Value::String(cut_string(s, keep, max))),
            // Brackets and a comma between items.
            Value::Array(items) => 2 + items.len().saturating_sub(1) + items.iter().map(|i| fitted_len(i, keep, max)).sum::<usize>(),
            // Braces, a colon per entry and a comma between entries.
            Value::Object(map) => {
                2 + (2 * map.len()).saturating_sub(1)
                    + map.iter().map(|(k, v)| json_len(&Value::String(k.clone())) + fitted_len(v, keep, max)).sum::<usize>()
            }
            _ => json_len(v),
        }
    }
    fn cut(v: &mut Value, keep: usize, max: usize) {
        match v {
            Value::String(s) if s.len() > keep => *s = cut_string(s, keep, max),
            Value::Array(items) => items.iter_mut().for_each(|i| cut(i, keep, max)),
            Value::Object(map) => map.values_mut().for_each(|i| cut(i, keep, max)),
            _ => {}
        }
    }
    let mut keep = max;
    while keep >= 64 {
        if fitted_len(value, keep, max) <= max {
            cut(value, keep, max);
            debug_assert!(json_len(value) <= max);
            return Ok(true);
        }
        keep /= 2;
    }
    Err(size)
}

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

    /// The error with each of its texts cut to [`MAX_ERROR_BYTES`] (a server's error message can be megabytes).
    pub fn bounded(self) -> ToolError {
        fn cut(mut s: String) -> String {
            if s.len() > MAX_ERROR_BYTES {
                let mut at = MAX_ERROR_BYTES;
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                let more = s.len() - at;
                s.truncate(at);
                s.push_str(&format!(" […] ({} more)", crate::shared::io::size(more as u64)));
            }
            s
        }
        match self {
            ToolError::InvalidArguments { tool, errors } => {
                ToolError::InvalidArguments { tool, errors: errors.into_iter().take(20).map(cut).collect() }
            }
            ToolError::SchemaDrift { tool, errors } => ToolError::SchemaDrift { tool, errors: errors.into_iter().take(20).map(cut).collect() },
            ToolError::Transient { tool, message, retry_after_ms } => ToolError::Transient { tool, message: cut(message), retry_after_ms },
            ToolError::Refused { tool, reason } => ToolError::Refused { tool, reason: cut(reason) },
            ToolError::Failed { tool, message } => ToolError::Failed { tool, message: cut(message) },
            other => other,
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
        self.call_unbounded(name, args, timeout, cancelled).map_err(ToolError::bounded)
    }

    fn call_unbounded(
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
        let mut value = result?;
        let errors = schema_errors(&contract.output, &value);
        if !errors.is_empty() {
            return Err(ToolError::SchemaDrift { tool: name.to_owned(), errors });
        }
        match fit_result(&mut value, MAX_RESULT_BYTES) {
            Ok(false) => Ok(value),
            // Cut strings are still strings, but a pattern or an enum in the schema may no longer hold.
            Ok(true) if schema_errors(&contract.output, &value).is_empty() => Ok(value),
            Ok(true) => Err(ToolError::Failed {
                tool: name.to_owned(),
                message: format!("returned more than {} and its result cannot be cut to fit its schema", crate::shared::io::size(MAX_RESULT_BYTES as u64)),
            }),
            Err(size) => Err(ToolError::Failed {
                tool: name.to_owned(),
                message: format!("returned {}; a tool result may take at most {}", crate::shared::io::size(size as u64), crate::shared::io::size(MAX_RESULT_BYTES as u64)),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(output: Value) -> ToolSpec {
        ToolSpec {
            name: "big".into(),
            description: "answers with a lot".into(),
            input_schema: object_schema(json!({}), &[]),
            output_schema: output,
            effect: Effect::Read,
            timeout_ms: 30_000,
            idempotent: true,
            capability: None,
            origin: Origin::default(),
        }
    }

    #[test]
    fn a_fifty_megabyte_result_is_cut_to_the_limit_with_a_notice_and_its_start_intact() {
        let text: String = (0..5_000_000).map(|i| format!("{:09}\n", i)).collect();
        assert_eq!(text.len(), 50_000_000);
        let start = text[..1000].to_owned();
        let tool = faults::FnTool::new(
            spec(object_schema(json!({"text": {"type": "string"}, "n": {"type": "integer"}}), &["text", "n"])),
            move |_, _| Ok(json!({"text": text.clone(), "n": 7})),
        );
        let mut tools = Toolbox::new();
        tools.add(Arc::new(tool)).unwrap();
        let value = tools.call("big", &json!({}), None, &|| false).unwrap();
        assert!(json_len(&value) <= MAX_RESULT_BYTES, "{} bytes", json_len(&value));
        let got = value["text"].as_str().unwrap();
        assert!(got.starts_with(&start) && got.len() > MAX_RESULT_BYTES / 4, "the start is kept, and most of the budget");
        assert!(got.ends_with("a tool result is kept to 2.1 MB]") && got.contains("Keel cut 49.0 MB here"), "{}", &got[got.len() - 120..]);
        assert_eq!(value["n"], 7, "values other than long strings are untouched");
    }

    #[test]
    fn results_that_fit_are_untouched_and_ones_that_cannot_be_cut_are_refused() {
        let mut small = json!({"a": "x".repeat(1000), "b": [1, 2, 3]});
        let before = small.clone();
        assert_eq!(fit_result(&mut small, MAX_RESULT_BYTES), Ok(false));
        assert_eq!(small, before);
        // Many small numbers: no string to cut.
        let mut many = Value::Array((0..600_000).map(|i| json!(i)).collect());
        let size = json_len(&many);
        assert!(size > MAX_RESULT_BYTES);
        assert_eq!(fit_result(&mut many, MAX_RESULT_BYTES), Err(size));
        // A cut lands on a character boundary (three-byte characters: most cut points fall inside one).
        let mut wide = json!({"text": "漢".repeat(1_000_000)});
        assert_eq!(fit_result(&mut wide, MAX_RESULT_BYTES), Ok(true));
        assert!(wide["text"].as_str().unwrap().starts_with("漢漢") && json_len(&wide) <= MAX_RESULT_BYTES);
        // Nested objects and arrays with many small entries and a few long strings: the size planned is the
        // size written, so the result lands under the limit, close to it.
        let mut nested = json!({"content": (0..2000).map(|i| json!({"type": "text", "i": i, "text": if i % 500 == 0 { "ab\"c".repeat(200_000) } else { "x".into() }})).collect::<Vec<_>>(), "k": {}});
        assert_eq!(fit_result(&mut nested, 100_000), Ok(true));
        let len = json_len(&nested);
        assert!(len <= 100_000 && len > 50_000, "{len}");
        // A tool's error message of any size is kept to a few kilobytes.
        let tool = faults::FnTool::new(spec(json!({"type": "object"})), |_, _| Err(ToolError::Failed { tool: "big".into(), message: "é".repeat(1_000_000) }));
        let mut tools = Toolbox::new();
        tools.add(Arc::new(tool)).unwrap();
        match tools.call("big", &json!({}), None, &|| false) {
            Err(ToolError::Failed { message, .. }) => assert!(message.len() < MAX_ERROR_BYTES + 100 && message.ends_with("more)"), "{}", message.len()),
            other => panic!("{other:?}"),
        }
        // Through the toolbox, a result that cannot be cut is a failure naming the size and the limit.
        let tool = faults::FnTool::new(spec(json!({"type": "array"})), |_, _| Ok(Value::Array((0..600_000).map(|i| json!(i)).collect())));
        let mut tools = Toolbox::new();
        tools.add(Arc::new(tool)).unwrap();
        match tools.call("big", &json!({}), None, &|| false) {
            Err(ToolError::Failed { message, .. }) => assert!(message.contains("a tool result may take at most 2.1 MB"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
