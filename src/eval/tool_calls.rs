//! `keel eval tools`: the embedded model's tool calls under constrained decoding, on a set of prompts that each
//! need a tool (`tests/evals/tools/prompts.jsonl`).
//!
//! Each prompt is one ReAct step exactly as a run makes it: the system prompt with the tools section, the
//! user's message, and the action schema as the decoding constraint. The reply is read by the runner's own
//! parser. The contract is that every tool call parses and validates; which tool the model chose is its share,
//! reported next to it.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::llm::{Backend, CancelFlag, ChatMessage, GenerationSettings, Role};
use crate::orchestration::action;
use crate::orchestration::context::system_prompt;
use crate::orchestration::events::Action;
use crate::orchestration::RunMode;
use crate::tools::Toolbox;

#[derive(Debug, Clone, Deserialize)]
pub struct ToolPrompt {
    pub prompt: String,
    /// The tool a careful assistant would call.
    pub tool: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolPromptResult {
    pub prompt: String,
    pub expected: String,
    /// `tool_call`, `answer`, `ask`, `cut` (an answer cut at the token limit), or `invalid` (a tool call that
    /// broke the contract).
    pub action: String,
    pub tool: Option<String>,
    pub arguments: Option<serde_json::Value>,
    pub error: Option<String>,
    pub reply: String,
    pub ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolCallReport {
    pub backend: String,
    pub prompts: usize,
    pub tool_calls: usize,
    /// Tool calls that parsed and validated against the tool's input schema.
    pub valid_tool_calls: usize,
    pub right_tool: usize,
    pub answers: usize,
    pub asks: usize,
    /// Answers cut at the token limit (not tool calls).
    pub cut: usize,
    pub invalid: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub results: Vec<ToolPromptResult>,
}

/// Whether a reply's first key is `"tool"`: the model set out to call a tool.
fn began_as_tool_call(reply: &str) -> bool {
    let rest = reply.trim_start().strip_prefix('{').unwrap_or("").trim_start();
    rest.starts_with("\"tool\"")
}

pub fn load_prompts(path: &Path) -> Result<Vec<ToolPrompt>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}

/// Runs every prompt as one ReAct step; `on_progress` hears (done, total).
pub fn run(
    backend: &dyn Backend,
    toolbox: &Toolbox,
    prompts: &[ToolPrompt],
    settings: &GenerationSettings,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<ToolCallReport, String> {
    let specs = toolbox.specs();
    let offered: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let system = system_prompt(None, Some(&action::tools_prompt(RunMode::React, &specs, false)));
    let schema = action::action_schema(RunMode::React, &specs, false);
    let mut results = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let messages = [ChatMessage::new(Role::System, system.clone()), ChatMessage::new(Role::User, p.prompt.clone())];
        let started = Instant::now();
        let completion = backend.chat_json(&messages, settings, &schema, &CancelFlag::default(), &mut |_| {}).map_err(|e| e.to_string())?;
        let ms = started.elapsed().as_millis() as u64;
        let (action, tool, arguments, error) = match action::parse(&completion.text, RunMode::React, false, toolbox, &offered, "c1") {
            Ok(Action::ToolCall { tool, arguments, .. }) => ("tool_call", Some(tool), Some(arguments), None),
            Ok(Action::Answer { .. }) => ("answer", None, None, None),
            Ok(Action::Ask { .. }) => ("ask", None, None, None),
            Ok(Action::Plan { .. }) => ("plan", None, None, None),
            // A reply cut at the token limit inside an answer is not a broken tool call; one that began as a tool
            // call and does not validate is.
            Err(e) if completion.stop == crate::llm::StopReason::MaxTokens && !began_as_tool_call(&completion.text) => ("cut", None, None, Some(e)),
            Err(e) => ("invalid", None, None, Some(e)),
        };
        results.push(ToolPromptResult {
            prompt: p.prompt.clone(),
            expected: p.tool.clone(),
            action: action.into(),
            tool,
            arguments,
            error,
            reply: completion.text,
            ms,
        });
        on_progress(i + 1, prompts.len());
    }
    let count = |a: &str| results.iter().filter(|r| r.action == a).count();
    // A reply that looks like a tool call but broke the contract counts against the contract.
    let invalid = count("invalid");
    let tool_calls = count("tool_call") + invalid;
    let mut ms: Vec<u64> = results.iter().map(|r| r.ms).collect();
    ms.sort_unstable();
    let pct = |q: f64| ms.get(((ms.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    Ok(ToolCallReport {
        backend: backend.info().name,
        prompts: prompts.len(),
        tool_calls,
        valid_tool_calls: count("tool_call"),
        right_tool: results.iter().filter(|r| r.tool.as_deref() == Some(r.expected.as_str())).count(),
        answers: count("answer"),
        asks: count("ask"),
        cut: count("cut"),
        invalid,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        results,
    })
}
