//! `keel eval run`: whole tasks through the real stack, each in a fresh, throwaway data dir (its own memory, files
//! folder and runs; the user's data is never touched), on a chosen backend, through the same `App` path as a chat
//! turn, judged from what happened (`judge`). Faults are injected at the tool seam (`tools::faults`).
//!
//! The report gives per task pass/fail with the reasons and run ids, and per category and in total: task success,
//! pass^k (every one of k repeats passed) and pass@k (any did), tool selection accuracy, argument validity,
//! recovery rate on tasks with faults, latency p50/p95 per turn, and tokens per task.

pub mod html;
pub mod judge;
pub mod tasks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use ts_rs::TS;

use crate::tools::faults::Fault;
use crate::tools::ToolError;
use tasks::{FaultMode, FaultSpec, Task, TaskError, Times};

/// How long a `slow` fault holds a call back: this, or half the tool's timeout when that is shorter (a call held
/// past its timeout is the `timeout` mode).
pub const SLOW_MS: u64 = 3_000;
/// How long a backend `timeout` fault waits before failing as a timeout.
pub const BACKEND_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The suite: a JSONL file, or `mine` for the user's own (see `App::user_suite`).
    pub tasks_file: PathBuf,
    /// The backend profile (`None`: the default).
    pub backend: Option<String>,
    pub repeat: u32,
    pub limit: Option<usize>,
    pub category: Option<String>,
    /// Keep each attempt's runs (their events) in the report, so a failed one opens in the Inspector after its
    /// throwaway data dir is gone (the desktop's Evaluation view).
    pub keep_runs: bool,
}

/// One attempt at a task.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Attempt {
    pub passed: bool,
    /// Why each failed expectation failed.
    pub failures: Vec<String>,
    #[ts(type = "number[]")]
    pub run_ids: Vec<i64>,
    pub answer: String,
    pub tools_called: Vec<String>,
    /// Tool calls whose arguments reached the tool (valid against its schema) and those the contract refused.
    pub valid_calls: u32,
    pub rejected_calls: u32,
    #[ts(type = "number[]")]
    pub turn_ms: Vec<u64>,
    #[ts(type = "number")]
    pub tokens: u64,
    /// A failure of the harness itself (the data dir, the backend), not of the task.
    pub error: Option<String>,
    /// For an attacked task: whether the attacker got what they wanted.
    pub attack_succeeded: Option<bool>,
    /// For a task with `expect_no_fabrication`: whether the answer invented the failed tool's value.
    pub fabricated: Option<bool>,
    /// What Keel did about failures and how the run ended (see `judge::Observed::path`).
    pub path: Vec<String>,
    /// The runs' model and tool calls on a time line.
    pub spans: Vec<judge::Span>,
    /// The runs themselves, with `Options::keep_runs` (else empty and left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<crate::orchestration::journal::RunDetail>>")]
    pub runs: Vec<crate::orchestration::journal::RunDetail>,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct TaskReport {
    pub id: String,
    pub category: String,
    pub line: usize,
    pub attempts: Vec<Attempt>,
}

impl TaskReport {
    fn passes(&self) -> usize {
        self.attempts.iter().filter(|a| a.passed).count()
    }
}

/// Totals over a set of tasks.
#[derive(Debug, Clone, Serialize, Default, TS)]
pub struct Totals {
    pub category: String,
    pub tasks: usize,
    pub attempts: usize,
    /// Passed attempts over all attempts.
    pub success: f64,
    /// Tasks whose every attempt passed, over tasks.
    pub pass_hat_k: f64,
    /// Tasks with at least one passed attempt, over tasks.
    pub pass_at_k: f64,
    /// Of the attempts whose task names the tool to use, those that used it.
    pub tool_selection_accuracy: Option<f64>,
    /// Calls valid against their schema over all calls.
    pub argument_validity: Option<f64>,
    /// Of the attempts at tasks with a fault, those that passed.
    pub recovery_rate: Option<f64>,
    /// Of the attempts at tasks with `expect_no_fabrication`, those whose answer invented the failed tool's value.
    pub fabrication_rate: Option<f64>,
    #[ts(type = "number | null")]
    pub latency_p50_ms: Option<u64>,
    #[ts(type = "number | null")]
    pub latency_p95_ms: Option<u64>,
    /// The same per step: each model call and each tool call.
    #[ts(type = "number | null")]
    pub step_p50_ms: Option<u64>,
    #[ts(type = "number | null")]
    pub step_p95_ms: Option<u64>,
    pub tokens_per_task: f64,
    /// Attempts where code routed the call (`Routed` in their path), and their turn latency.
    pub routed_attempts: usize,
    #[ts(type = "number | null")]
    pub routed_p50_ms: Option<u64>,
    #[ts(type = "number | null")]
    pub routed_p95_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "AgentReport")]
pub struct Report {
    pub tasks_file: String,
    pub backend: String,
    pub repeat: u32,
    /// Lines that are not valid tasks; the others ran.
    pub errors: Vec<TaskError>,
    pub tasks: Vec<TaskReport>,
    pub categories: Vec<Totals>,
    pub total: Totals,
    /// AgentDojo's three numbers over the attacked tasks and their benign pairs (`None`: no attacked task ran).
    pub attacks: Option<AttackTotals>,
}

/// Utility without and under attack, and targeted attack success.
#[derive(Debug, Clone, Serialize, Default, TS)]
pub struct AttackTotals {
    /// Attacked tasks (each paired with its benign task).
    pub pairs: usize,
    /// Passed attempts at the benign tasks paired with an attack.
    pub utility_without_attack: f64,
    /// Passed attempts at the attacked tasks (the user's task done despite the attack).
    pub utility_under_attack: f64,
    /// Attempts at attacked tasks in which the attacker's side effect or text happened.
    pub targeted_attack_success: f64,
}

/// The attack totals, when attacked tasks and their benign pairs both ran.
pub fn attack_totals(done: &[(Task, TaskReport)]) -> Option<AttackTotals> {
    let attacked: Vec<&(Task, TaskReport)> = done.iter().filter(|(t, _)| t.attack.is_some()).collect();
    let benign_ids: std::collections::BTreeSet<&str> = attacked.iter().filter_map(|(t, _)| t.attack.as_ref().map(|a| a.benign.as_str())).collect();
    let benign: Vec<&Attempt> = done.iter().filter(|(t, _)| benign_ids.contains(t.id.as_str())).flat_map(|(_, r)| &r.attempts).collect();
    let under: Vec<&Attempt> = attacked.iter().flat_map(|(_, r)| &r.attempts).collect();
    if under.is_empty() {
        return None;
    }
    let share = |xs: &[&Attempt], f: &dyn Fn(&Attempt) -> bool| ratio(xs.iter().filter(|a| f(a)).count(), xs.len()).unwrap_or(0.0);
    Some(AttackTotals {
        pairs: attacked.len(),
        utility_without_attack: share(&benign, &|a| a.passed),
        utility_under_attack: share(&under, &|a| a.passed),
        targeted_attack_success: share(&under, &|a| a.attack_succeeded == Some(true)),
    })
}

/// The fault plan for a task's fault on a tool with this timeout: `times` faults, then the real tool.
pub fn plan(spec: &FaultSpec, tool_timeout_ms: u64) -> Vec<Fault> {
    let n = match spec.times {
        Times::First(n) => n as usize,
        // Enough for any run's bounds.
        Times::Always => 1_000,
    };
    let tool = spec.tool.clone();
    let message = spec.message.clone();
    let fault = match spec.mode {
        FaultMode::Error => Fault::Error(ToolError::Failed { tool, message: message.unwrap_or_else(|| "the tool failed".into()) }),
        FaultMode::RateLimit => Fault::Error(ToolError::Transient {
            tool,
            message: message.unwrap_or_else(|| "rate limited (429)".into()),
            retry_after_ms: Some(200),
        }),
        FaultMode::Timeout => Fault::Hang,
        FaultMode::Slow => Fault::Latency(Duration::from_millis(SLOW_MS.min(tool_timeout_ms / 2))),
        FaultMode::MalformedOutput => Fault::Drift(spec.output.clone().unwrap_or_else(|| serde_json::json!("<<garbled output>>"))),
        FaultMode::SchemaDrift => Fault::Drift(spec.output.clone().unwrap_or_else(|| serde_json::json!({ "unexpected": "shape" }))),
    };
    vec![fault; n]
}

/// The fault plan for a `"tool": "@backend"` fault.
pub fn backend_plan(spec: &FaultSpec) -> Vec<crate::llm::faults::BackendFault> {
    use crate::llm::faults::BackendFault;
    let n = match spec.times {
        Times::First(n) => n as usize,
        Times::Always => 1_000,
    };
    let text = |default: &str| match &spec.output {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => default.to_owned(),
    };
    let fault = match spec.mode {
        FaultMode::Error => BackendFault::Error(spec.message.clone().unwrap_or_else(|| "the backend failed".into())),
        FaultMode::RateLimit => BackendFault::RateLimit,
        FaultMode::Timeout => BackendFault::Hang(Duration::from_millis(BACKEND_TIMEOUT_MS)),
        FaultMode::Slow => BackendFault::Latency(Duration::from_millis(SLOW_MS)),
        FaultMode::MalformedOutput => BackendFault::Reply(text(r#"{"tool": "calculator", "argum"#)),
        FaultMode::SchemaDrift => BackendFault::Reply(text(r#"{"tool": 42, "arguments": "none"}"#)),
    };
    vec![fault; n]
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Totals over `reports` (with their tasks, to know which name tools or faults).
pub fn totals(category: &str, reports: &[(&Task, &TaskReport)]) -> Totals {
    let attempts: Vec<(&Task, &Attempt)> = reports.iter().flat_map(|(t, r)| r.attempts.iter().map(move |a| (*t, a))).collect();
    let passed = attempts.iter().filter(|(_, a)| a.passed).count();
    let naming: Vec<&(&Task, &Attempt)> = attempts.iter().filter(|(t, _)| t.expect_tool.is_some() || t.expect_tool_sequence.is_some()).collect();
    let selected = naming
        .iter()
        .filter(|(t, a)| {
            let want: Vec<&String> = t.expect_tool.iter().chain(t.expect_tool_sequence.iter().flatten()).collect();
            want.iter().all(|w| a.tools_called.iter().any(|c| c == *w))
        })
        .count();
    let (valid, rejected) = attempts.iter().fold((0, 0), |(v, r), (_, a)| (v + a.valid_calls as usize, r + a.rejected_calls as usize));
    let faulted: Vec<&(&Task, &Attempt)> = attempts.iter().filter(|(t, _)| t.fault.is_some()).collect();
    let mut turns: Vec<u64> = attempts.iter().flat_map(|(_, a)| a.turn_ms.iter().copied()).collect();
    turns.sort_unstable();
    let routed: Vec<&(&Task, &Attempt)> = attempts.iter().filter(|(_, a)| a.path.iter().any(|p| p == "routed")).collect();
    let mut routed_turns: Vec<u64> = routed.iter().flat_map(|(_, a)| a.turn_ms.iter().copied()).collect();
    routed_turns.sort_unstable();
    let mut steps: Vec<u64> = attempts.iter().flat_map(|(_, a)| a.spans.iter().map(|s| s.end_ms.saturating_sub(s.start_ms))).collect();
    steps.sort_unstable();
    Totals {
        category: category.to_owned(),
        tasks: reports.len(),
        attempts: attempts.len(),
        success: ratio(passed, attempts.len()).unwrap_or(0.0),
        pass_hat_k: ratio(reports.iter().filter(|(_, r)| !r.attempts.is_empty() && r.passes() == r.attempts.len()).count(), reports.len()).unwrap_or(0.0),
        pass_at_k: ratio(reports.iter().filter(|(_, r)| r.passes() > 0).count(), reports.len()).unwrap_or(0.0),
        tool_selection_accuracy: ratio(selected, naming.len()),
        argument_validity: ratio(valid, valid + rejected),
        recovery_rate: ratio(faulted.iter().filter(|(_, a)| a.passed).count(), faulted.len()),
        fabrication_rate: {
            let judged: Vec<bool> = attempts.iter().filter_map(|(_, a)| a.fabricated).collect();
            ratio(judged.iter().filter(|f| **f).count(), judged.len())
        },
        latency_p50_ms: percentile(&turns, 0.5),
        latency_p95_ms: percentile(&turns, 0.95),
        step_p50_ms: percentile(&steps, 0.5),
        step_p95_ms: percentile(&steps, 0.95),
        tokens_per_task: if attempts.is_empty() { 0.0 } else { attempts.iter().map(|(_, a)| a.tokens).sum::<u64>() as f64 / attempts.len() as f64 },
        routed_attempts: routed.len(),
        routed_p50_ms: percentile(&routed_turns, 0.5),
        routed_p95_ms: percentile(&routed_turns, 0.95),
    }
}

/// The report from the tasks and their reports: per category, and in total.
pub fn report(tasks_file: &str, backend: &str, repeat: u32, errors: Vec<TaskError>, done: Vec<(Task, TaskReport)>) -> Report {
    let mut by_category: BTreeMap<&str, Vec<(&Task, &TaskReport)>> = BTreeMap::new();
    for (t, r) in &done {
        by_category.entry(t.category.as_str()).or_default().push((t, r));
    }
    let categories = by_category.iter().map(|(c, rs)| totals(c, rs)).collect();
    let all: Vec<(&Task, &TaskReport)> = done.iter().map(|(t, r)| (t, r)).collect();
    let total = totals("all", &all);
    let attacks = attack_totals(&done);
    Report {
        tasks_file: tasks_file.to_owned(),
        backend: backend.to_owned(),
        repeat,
        errors,
        tasks: done.into_iter().map(|(_, r)| r).collect(),
        categories,
        total,
        attacks,
    }
}
