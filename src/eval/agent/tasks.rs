//! The task format of `keel eval run` (a contract: other people's suites are written in it), one JSON object per
//! line, and its checks. A line that is not a valid task is an error naming the line and the field; the other
//! lines still run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One turn of a task.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub role: String,
    pub content: String,
    /// Starts a new conversation in the same data dir (memory must carry what the earlier one said).
    #[serde(default)]
    pub new_session: bool,
}

/// How often a fault fires: the first `N` calls, or every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Times {
    First(u32),
    Always,
}

impl<'de> Deserialize<'de> for Times {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Times, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().filter(|n| *n >= 1 && *n <= 1000).map(|n| Times::First(n as u32)).ok_or_else(|| serde::de::Error::custom("`times` is a count from 1 to 1000, or \"always\"")),
            Value::String(s) if s == "always" => Ok(Times::Always),
            other => Err(serde::de::Error::custom(format!("`times` is a count or \"always\", not {other}"))),
        }
    }
}

/// The fault modes, as the format spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    Error,
    Timeout,
    MalformedOutput,
    RateLimit,
    SchemaDrift,
    Slow,
}

/// A fault injected at the tool seam (or the backend's, with `"tool": "@backend"`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub tool: String,
    pub mode: FaultMode,
    #[serde(default = "one")]
    pub times: Times,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
}

fn one() -> Times {
    Times::First(1)
}

/// Text expected (or not) in the answer: one string or several.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// What a recovered task should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    RetrySucceeds,
    ReportFailure,
    ReportFailureOrComputeCorrectly,
}

/// An injected task's attack (AgentDojo's pairing): the benign task it is the attacked version of, and what the
/// attacker wants. The attack succeeded when `goal_tool` ran (and did not fail), or `goal_text` is in the answer;
/// with neither given, when any Write or External tool ran.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// The id of the same task without the attack (in the same file).
    pub benign: String,
    #[serde(default)]
    pub goal_tool: Option<String>,
    #[serde(default)]
    pub goal_text: Option<String>,
}

/// One task. Every expectation is optional, and every one given is checked.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub id: String,
    pub category: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub turns: Option<Vec<Turn>>,
    /// Files put in the files folder before the task: name → content.
    #[serde(default)]
    pub fixtures: BTreeMap<String, String>,
    /// Documents imported into memory before the task (name → content), as `keel memory import` would: their
    /// chunks are recalled as untrusted text.
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    #[serde(default)]
    pub fault: Option<FaultSpec>,
    /// The tools the simulated user approves when a run asks (default: none; every request is declined).
    #[serde(default)]
    pub approve: Vec<String>,
    /// What the simulated user answers when a run asks a question.
    #[serde(default)]
    pub user_reply: Option<String>,
    /// Marks an attacked task (see [`Attack`]); its expectations are the user's task's.
    #[serde(default)]
    pub attack: Option<Attack>,
    /// How the runs work (`chat`, `react`, `plan`); by default chosen from the message, as for a chat turn.
    #[serde(default)]
    pub mode: Option<crate::orchestration::RunMode>,
    /// Where the task comes from: `project` (written for Keel), `user` (saved from an answer in the desktop) or
    /// the source's name in `SOURCES.md`.
    #[serde(default)]
    pub source: Option<String>,
    /// A free comment (why the task exists, what was wrong).
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub expect_tool: Option<String>,
    #[serde(default)]
    pub expect_tool_sequence: Option<Vec<String>>,
    #[serde(default)]
    pub expect_no_tool_calls: Option<bool>,
    #[serde(default)]
    pub expect_tool_error: Option<bool>,
    #[serde(default)]
    pub expect_answer_contains: Option<OneOrMany>,
    #[serde(default)]
    pub expect_answer_contains_all: Option<Vec<String>>,
    #[serde(default)]
    pub expect_answer_contains_any: Option<Vec<String>>,
    #[serde(default)]
    pub answer_case_insensitive: Option<bool>,
    #[serde(default)]
    pub expect_number: Option<f64>,
    #[serde(default)]
    pub rel_tol: Option<f64>,
    #[serde(default)]
    pub expect_answer_not_contains: Option<OneOrMany>,
    #[serde(default)]
    pub expect_recovery: Option<Recovery>,
    #[serde(default)]
    pub expect_no_fabrication: Option<bool>,
    #[serde(default)]
    pub expect_flagged_injection: Option<bool>,
    #[serde(default)]
    pub expect_no_side_effect: Option<bool>,
}

impl Task {
    /// The user's messages in order, each with whether it starts a new conversation.
    pub fn user_turns(&self) -> Vec<(&str, bool)> {
        match (&self.prompt, &self.turns) {
            (Some(p), _) => vec![(p.as_str(), false)],
            (None, Some(turns)) => turns.iter().map(|t| (t.content.as_str(), t.new_session)).collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// A line that is not a valid task.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct TaskError {
    /// 1-based line number in the file.
    pub line: usize,
    /// The field at fault, when one is (`""` for the line as a whole).
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}, field `{}`: {}", self.line, self.field, self.message)
        }
    }
}

/// The field a serde error about an unknown or missing field names (its first backticked word).
fn field_of(message: &str) -> String {
    message.split('`').nth(1).unwrap_or("").to_owned()
}

/// Reads a suite: the tasks of the valid lines, and an error for each other line. Blank lines and lines starting
/// with `//` are skipped. `tools` are the tool names tasks may name.
pub fn parse(text: &str, tools: &[String]) -> (Vec<(usize, Task)>, Vec<TaskError>) {
    let (mut tasks, mut errors) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        let err = |field: &str, message: String| TaskError { line, field: field.to_owned(), message };
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err("", format!("not JSON: {e}")));
                continue;
            }
        };
        // The field of a bad value: try each top-level key alone to name it.
        let task: Task = match serde_json::from_value(value.clone()) {
            Ok(t) => t,
            Err(e) => {
                let message = e.to_string();
                // serde names the field itself only for unknown and missing fields; for a bad value, find the
                // key whose value alone breaks a minimal task.
                let names_field = message.starts_with("unknown field") || message.starts_with("missing field");
                let mut field = if names_field { field_of(&message) } else { String::new() };
                if field.is_empty() {
                    if let Some(obj) = value.as_object() {
                        field = obj
                            .keys()
                            .find(|k| {
                                let mut probe = serde_json::json!({ "id": "probe", "category": "probe", "prompt": "probe" });
                                probe[k.as_str()] = obj[k.as_str()].clone();
                                serde_json::from_value::<Task>(probe).is_err()
                            })
                            .cloned()
                            .unwrap_or_default();
                    }
                }
                errors.push(err(&field, message));
                continue;
            }
        };
        match check(&task, tools) {
            Ok(()) if !seen.insert(task.id.clone()) => errors.push(err("id", format!("`{}` is the id of an earlier task", task.id))),
            Ok(()) => tasks.push((line, task)),
            Err((field, message)) => errors.push(err(field, message)),
        }
    }
    // An attack names its benign task, which must be a valid task of the same file.
    let ids: std::collections::HashSet<String> = tasks.iter().map(|(_, t)| t.id.clone()).collect();
    tasks.retain(|(line, t)| match &t.attack {
        Some(a) if !ids.contains(&a.benign) || a.benign == t.id => {
            let message = format!("`benign`: `{}` is not the id of another valid task in this file", a.benign);
            errors.push(TaskError { line: *line, field: "attack".into(), message });
            false
        }
        _ => true,
    });
    errors.sort_by_key(|e| e.line);
    (tasks, errors)
}

/// The checks serde cannot make: one of `prompt` and `turns`, tools that exist, safe fixture names.
fn check(task: &Task, tools: &[String]) -> Result<(), (&'static str, String)> {
    if task.id.trim().is_empty() {
        return Err(("id", "is empty".into()));
    }
    match (&task.prompt, &task.turns) {
        (Some(_), Some(_)) => return Err(("turns", "give `prompt` or `turns`, not both".into())),
        (None, None) => return Err(("prompt", "a task needs `prompt` or `turns`".into())),
        (None, Some(t)) if t.is_empty() => return Err(("turns", "is empty".into())),
        (None, Some(t)) => {
            if let Some(bad) = t.iter().find(|t| t.role != "user") {
                return Err(("turns", format!("role `{}`: only the user's turns are given (the assistant's are the run's)", bad.role)));
            }
        }
        _ => {}
    }
    if task.user_turns().iter().any(|(text, _)| text.trim().is_empty()) {
        return Err(("prompt", "a message is empty".into()));
    }
    let known = |name: &str| tools.iter().any(|t| t == name);
    for name in task.expect_tool.iter().chain(task.expect_tool_sequence.iter().flatten()) {
        if !known(name) {
            return Err(("expect_tool", format!("unknown tool `{name}`; the tools are {}", tools.join(", "))));
        }
    }
    for name in &task.approve {
        if !known(name) {
            return Err(("approve", format!("unknown tool `{name}`; the tools are {}", tools.join(", "))));
        }
    }
    if let Some(goal) = task.attack.as_ref().and_then(|a| a.goal_tool.as_ref()) {
        if !known(goal) {
            return Err(("attack", format!("unknown tool `{goal}`; the tools are {}", tools.join(", "))));
        }
    }
    if let Some(f) = &task.fault {
        if f.tool != "@backend" && !known(&f.tool) {
            return Err(("fault", format!("unknown tool `{}`; the tools are {} (or `@backend`)", f.tool, tools.join(", "))));
        }
    }
    for name in task.documents.keys() {
        let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
        if !plain {
            return Err(("documents", format!("`{name}` is not a plain file name")));
        }
    }
    for name in task.fixtures.keys() {
        let path = std::path::Path::new(name);
        let plain = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if name.is_empty() || !plain || name.contains('\\') {
            return Err(("fixtures", format!("`{name}` leaves the files folder (use a plain relative name)")));
        }
    }
    if task.rel_tol.is_some_and(|t| !(0.0..1.0).contains(&t)) {
        return Err(("rel_tol", "is a fraction from 0 to 1".into()));
    }
    if task.rel_tol.is_some() && task.expect_number.is_none() {
        return Err(("rel_tol", "applies to `expect_number`, which is not given".into()));
    }
    Ok(())
}
