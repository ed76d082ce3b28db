//! Tools that fail on purpose: a wrapper that injects faults into a real tool, and a tool defined by a closure.
//!
//! Tools are unreliable by assumption; these make the assumption testable. The evaluation harness and the
//! orchestration tests wrap real tools with a fault plan (an error, a timeout, a latency spike, a result that
//! drifts from its schema) and check what the orchestrator recorded and decided. Never used on the product path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{CallContext, Tool, ToolError, ToolSpec};

/// One injected behaviour, used for one call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Pass the call through to the real tool.
    Pass,
    /// Fail with this error.
    Error(ToolError),
    /// Never answer: the toolbox's timeout has to end the call.
    Hang,
    /// Answer correctly, this much later.
    Latency(Duration),
    /// Return this value instead of the tool's (usually one that breaks the output schema).
    Drift(Value),
}

/// A tool with a plan of faults for its next calls; once the plan is used up, calls pass through.
pub struct FaultyTool {
    inner: Arc<dyn Tool>,
    plan: Mutex<VecDeque<Fault>>,
    calls: AtomicU32,
}

impl FaultyTool {
    pub fn new(inner: Arc<dyn Tool>, plan: impl IntoIterator<Item = Fault>) -> FaultyTool {
        FaultyTool { inner, plan: Mutex::new(plan.into_iter().collect()), calls: AtomicU32::new(0) }
    }

    /// How many calls reached this tool (the toolbox refuses invalid arguments before that).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Tool for FaultyTool {
    fn spec(&self) -> &ToolSpec {
        self.inner.spec()
    }

    fn call(&self, args: &Value, cx: &CallContext) -> Result<Value, ToolError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = self.plan.lock().expect("fault plan lock").pop_front().unwrap_or(Fault::Pass);
        match fault {
            Fault::Pass => self.inner.call(args, cx),
            Fault::Error(e) => Err(e),
            Fault::Hang => {
                while !cx.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(ToolError::Cancelled { tool: self.spec().name.clone() })
            }
            Fault::Latency(d) => {
                std::thread::sleep(d);
                self.inner.call(args, cx)
            }
            Fault::Drift(v) => Ok(v),
        }
    }
}

type Body = dyn Fn(&Value, &CallContext) -> Result<Value, ToolError> + Send + Sync;

/// A tool whose behaviour is a closure: for tests that need a tool with a particular contract or effect.
pub struct FnTool {
    spec: ToolSpec,
    body: Box<Body>,
}

impl FnTool {
    pub fn new(spec: ToolSpec, body: impl Fn(&Value, &CallContext) -> Result<Value, ToolError> + Send + Sync + 'static) -> FnTool {
        FnTool { spec, body: Box::new(body) }
    }
}

impl Tool for FnTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, cx: &CallContext) -> Result<Value, ToolError> {
        (self.body)(args, cx)
    }
}
