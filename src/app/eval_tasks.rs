//! `keel eval run`: each task of a suite in a throwaway data dir of its own, through the same `App` path as a
//! chat turn, on the backend this `App` would use (so a loaded embedded model is shared, not reloaded), judged by
//! `eval::agent::judge`. The user's data dir is never touched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::runs::{RunOptions, FILES_DIR};
use super::{App, OpenOptions};
use crate::error::{AppError, ErrorKind};
use crate::eval::agent::judge::{attack_succeeded, judge, Observed};
use crate::eval::agent::tasks::{self, Task};
use crate::eval::agent::{self, Attempt, Options, Report, TaskReport};
use crate::llm::{Backend, GenerationSettings};
use crate::orchestration::events::{RunEvent, UserAnswer};
use crate::orchestration::UserRequest;

/// The largest file the run read that a saved test case carries as a fixture.
const MAX_FIXTURE_BYTES: usize = 64 * 1024;

/// What the user says about an answer to make it a test case (the desktop's "Save as test case").
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, ts_rs::TS)]
pub struct TestCaseRequest {
    #[ts(type = "number")]
    pub run_id: i64,
    /// Text a right answer contains (each item).
    #[serde(default)]
    pub answer_contains: Vec<String>,
    /// The tool the run should have used.
    #[serde(default)]
    #[ts(optional)]
    pub expect_tool: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub note: Option<String>,
}

/// A test case appended to the user's suite.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct SavedTestCase {
    pub id: String,
    /// The suite file, and the task's line in it.
    pub path: String,
    pub line: usize,
    #[ts(type = "unknown")]
    pub task: serde_json::Value,
}

/// Where an evaluation is: what it is doing, and how many attempts of how many are done.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct EvalProgress {
    pub stage: String,
    #[ts(type = "number")]
    pub done: u64,
    #[ts(type = "number")]
    pub total: u64,
}

/// The user's own suite, relative to the data dir.
pub const USER_SUITE: &str = "evals/mine.jsonl";
/// How many times one turn may pause for the simulated user before it is left waiting.
const MAX_PAUSES: usize = 4;
/// What the simulated user says to a question, unless the task says otherwise.
const DEFAULT_REPLY: &str = "I don't know more than I said; do what you can without it.";

impl App {
    /// Runs a suite (`options.tasks_file`, one task per line), reporting `(stage, done, total)`. Lines that are
    /// not valid tasks are listed in the report's `errors`; the others run.
    pub fn evaluate_tasks(&self, options: &Options, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Report, AppError> {
        let mine;
        let path = if options.tasks_file.as_os_str() == "mine" {
            mine = self.user_suite();
            &mine
        } else {
            &options.tasks_file
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            AppError::new(ErrorKind::InvalidInput, format!("cannot read the tasks file {}: {e}", path.display()), Some("give a JSONL file of tasks with --tasks".into()))
        })?;
        let names: Vec<String> = self.list_tools().into_iter().map(|s| s.name).collect();
        let (mut parsed, errors) = tasks::parse(&text, &names);
        if let Some(c) = &options.category {
            parsed.retain(|(_, t)| &t.category == c);
        }
        if let Some(n) = options.limit {
            parsed.truncate(n);
        }
        let backend = self.backend_of(options.backend.as_deref())?;
        let repeat = options.repeat.max(1);
        let total = (parsed.len() as u64) * repeat as u64;
        let mut done = Vec::new();
        let mut count = 0;
        for (line, task) in parsed {
            let mut attempts = Vec::new();
            for k in 0..repeat {
                on_progress(&format!("task {} (attempt {}/{repeat})", task.id, k + 1), count, total);
                attempts.push(self.attempt(&task, backend.clone(), options.keep_runs));
                count += 1;
            }
            let report = TaskReport { id: task.id.clone(), category: task.category.clone(), line, attempts };
            done.push((task, report));
        }
        on_progress("done", total, total);
        Ok(agent::report(&path.display().to_string(), &backend.info().name, repeat, errors, done))
    }

    /// Writes a report into `dir` (`keel eval run --report DIR`): each attempt's runs as `runs/TASK-K.json` (their
    /// whole event logs, since the throwaway data dirs are gone; taken out of `report`), then `report.json` and the
    /// static `report.html`.
    pub fn write_eval_report(&self, report: &mut Report, dir: &std::path::Path) -> Result<(), AppError> {
        let cannot = |what: &std::path::Path, e: String| {
            AppError::new(ErrorKind::Store, format!("cannot write {}: {e}", what.display()), Some("choose a folder you can write to with --report".into()))
        };
        let write = |path: &std::path::Path, body: &[u8]| std::fs::write(path, body).map_err(|e| cannot(path, e.to_string()));
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|e| cannot(&runs, e.to_string()))?;
        for task in &mut report.tasks {
            for (k, attempt) in task.attempts.iter_mut().enumerate() {
                let path = dir.join(agent::html::runs_file(&task.id, k + 1));
                let body = serde_json::to_vec_pretty(&std::mem::take(&mut attempt.runs)).map_err(|e| cannot(&path, e.to_string()))?;
                write(&path, &body)?;
            }
        }
        let json = serde_json::to_vec_pretty(&*report).map_err(|e| cannot(&dir.join("report.json"), e.to_string()))?;
        write(&dir.join("report.json"), &json)?;
        write(&dir.join("report.html"), agent::html::render(report).as_bytes())
    }

    /// The user's own suite (`keel eval run --tasks mine`): the tasks saved from answers, in the data dir.
    pub fn user_suite(&self) -> std::path::PathBuf {
        self.inner.home.join(USER_SUITE)
    }

    /// One attempt at a task in a fresh data dir, removed afterwards.
    fn attempt(&self, task: &Task, backend: std::sync::Arc<dyn Backend>, keep_runs: bool) -> Attempt {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let home = std::env::temp_dir().join(format!("keel-eval-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let result = self.attempt_in(task, backend, &home, keep_runs);
        let _ = std::fs::remove_dir_all(&home);
        result.unwrap_or_else(|e| Attempt {
            passed: false,
            failures: vec![format!("the harness failed: {e}")],
            run_ids: Vec::new(),
            answer: String::new(),
            tools_called: Vec::new(),
            valid_calls: 0,
            rejected_calls: 0,
            turn_ms: Vec::new(),
            tokens: 0,
            error: Some(e.to_string()),
            attack_succeeded: None,
            fabricated: None,
            path: Vec::new(),
            spans: Vec::new(),
            runs: Vec::new(),
        })
    }

    fn attempt_in(&self, task: &Task, backend: std::sync::Arc<dyn Backend>, home: &std::path::Path, keep_runs: bool) -> Result<Attempt, AppError> {
        let backend: std::sync::Arc<dyn Backend> = match &task.fault {
            Some(f) if f.tool == "@backend" => std::sync::Arc::new(crate::llm::faults::FaultyBackend::new(backend, agent::backend_plan(f))),
            _ => backend,
        };
        let app = App::open_with_backend(OpenOptions { home: home.to_owned(), models_dir: self.inner.models.root().to_owned() }, backend)?;
        let files = home.join(FILES_DIR);
        for (name, content) in &task.fixtures {
            let path = files.join(name);
            let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::write(&path, content));
            written.map_err(|e| AppError::new(ErrorKind::Internal, format!("cannot write the fixture {}: {e}", path.display()), None))?;
        }
        if !task.documents.is_empty() {
            let dir = home.join("eval-documents");
            let mut paths = Vec::new();
            for (name, content) in &task.documents {
                let path = dir.join(name);
                let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, content));
                written.map_err(|e| AppError::new(ErrorKind::Internal, format!("cannot write the document {}: {e}", path.display()), None))?;
                paths.push(path);
            }
            app.import_documents(&paths, &mut |_| {})?;
        }
        if let Some(fault) = task.fault.as_ref().filter(|f| f.tool != "@backend") {
            let timeout_ms = self.list_tools().into_iter().find(|s| s.name == fault.tool).map_or(agent::SLOW_MS * 2, |s| s.timeout_ms);
            app.inject_tool_faults(&fault.tool, agent::plan(fault, timeout_ms))?;
        }
        let settings = GenerationSettings::default();
        let (mut conversation, mut run_ids, mut turn_ms, mut answer) = (None, Vec::new(), Vec::new(), String::new());
        for (text, new_session) in task.user_turns() {
            if new_session {
                conversation = None;
            }
            let started = Instant::now();
            let options = RunOptions { mode: task.mode, ..RunOptions::default() };
            let mut result = app.send_message(conversation, text, &settings, &options, &mut |_| {})?;
            // The simulated user: approves the tools the task lists, declines the rest, answers questions with
            // the task's reply; a run that keeps asking is left waiting.
            for _ in 0..MAX_PAUSES {
                let Some(request) = result.waiting.clone() else { break };
                let answer = match request {
                    UserRequest::Approval { call_id, tool, .. } if task.approve.contains(&tool) => UserAnswer::Approve { call_id },
                    UserRequest::Approval { call_id, .. } => {
                        UserAnswer::Deny { call_id, note: Some("declined: the evaluation's user approves only the tools the task lists".into()) }
                    }
                    UserRequest::Question { .. } => UserAnswer::Reply { text: task.user_reply.clone().unwrap_or_else(|| DEFAULT_REPLY.into()) },
                };
                result = app.answer_run(result.run_id, answer, &settings, &mut |_| {})?;
            }
            turn_ms.push(started.elapsed().as_millis() as u64);
            conversation = Some(result.conversation_id);
            run_ids.push(result.run_id);
            answer = result.answer;
        }
        let mut details = Vec::new();
        for id in &run_ids {
            details.push(app.get_run(*id)?);
        }
        let runs: Vec<_> = details.iter().map(|d| d.events.clone()).collect();
        let (mut rejected, mut tokens) = (0, 0u64);
        for e in runs.iter().flatten() {
            match &e.event {
                // A call the contract refused (an unknown tool, or arguments that break the tool's schema); a reply
                // that was no tool call at all is not an argument to judge.
                RunEvent::ActionRejected { error, .. } if error.contains("there is no tool") || error.contains("do not match its input schema") => rejected += 1,
                RunEvent::RunFinished { prompt_tokens, completion_tokens, .. } => tokens += (*prompt_tokens + *completion_tokens) as u64,
                _ => {}
            }
        }
        let seen = Observed::read(&runs, answer.clone());
        let failures = judge(task, &seen);
        let fabricated = (task.expect_no_fabrication == Some(true)).then(|| failures.iter().any(|f| f.starts_with("expect_no_fabrication")));
        Ok(Attempt {
            passed: failures.is_empty(),
            failures,
            run_ids,
            answer,
            tools_called: seen.calls.iter().map(|c| c.tool.clone()).collect(),
            valid_calls: seen.calls.len() as u32,
            rejected_calls: rejected,
            turn_ms,
            tokens,
            error: None,
            attack_succeeded: attack_succeeded(task, &seen),
            fabricated,
            path: seen.path,
            spans: seen.spans,
            runs: if keep_runs { details } else { Vec::new() },
        })
    }

    /// Appends a task made from a run to the user's own suite (`keel eval run --tasks mine`): the conversation's
    /// user messages up to the run's, the files the run read as fixtures, and what the user says a right answer
    /// has (text it contains, or a tool it should have used).
    pub fn save_test_case(&self, request: &TestCaseRequest) -> Result<SavedTestCase, AppError> {
        let invalid = |message: String, hint: &str| AppError::new(ErrorKind::InvalidInput, message, Some(hint.into()));
        let contains: Vec<String> = request.answer_contains.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let tool = request.expect_tool.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if contains.is_empty() && tool.is_none() {
            return Err(invalid("a test case needs what a right answer contains, or the tool it should use".into(), "fill in at least one"));
        }
        if let Some(t) = tool {
            if !self.list_tools().iter().any(|s| s.name == t) {
                return Err(invalid(format!("there is no tool named {t:?}"), "`keel tools list` shows the tools"));
            }
        }
        let detail = self.get_run(request.run_id)?;
        let conversation = self.get_conversation(detail.run.conversation_id)?;
        let mut turns = Vec::new();
        for m in &conversation.messages {
            if m.role == crate::llm::Role::User {
                turns.push(serde_json::json!({ "role": "user", "content": m.content }));
            }
            if m.run_id == Some(request.run_id) {
                break;
            }
        }
        if turns.is_empty() {
            turns.push(serde_json::json!({ "role": "user", "content": detail.run.input }));
        }
        // The files the run read, as they are now (bounded, plain names inside the files folder).
        let mut fixtures = serde_json::Map::new();
        for e in &detail.events {
            if let RunEvent::ToolCalled { tool, arguments, .. } = &e.event {
                let Some(name) = arguments["path"].as_str().filter(|_| tool == "files_read") else { continue };
                let plain = std::path::Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                let path = self.inner.home.join(FILES_DIR).join(name);
                if let (true, Ok(text)) = (plain, std::fs::read_to_string(&path)) {
                    if text.len() <= MAX_FIXTURE_BYTES {
                        fixtures.insert(name.to_owned(), text.into());
                    }
                }
            }
        }
        let path = self.user_suite();
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let base = format!("mine-run-{}", request.run_id);
        let mut id = base.clone();
        for n in 2.. {
            if !existing.lines().any(|l| l.contains(&format!("\"id\":\"{id}\""))) {
                break;
            }
            id = format!("{base}-{n}");
        }
        let mut task = serde_json::json!({ "id": id, "category": "mine", "source": "user" });
        if turns.len() == 1 {
            task["prompt"] = turns[0]["content"].clone();
        } else {
            task["turns"] = turns.into();
        }
        if !fixtures.is_empty() {
            task["fixtures"] = fixtures.into();
        }
        if !contains.is_empty() {
            task["expect_answer_contains"] = contains.into();
            task["answer_case_insensitive"] = true.into();
        }
        if let Some(t) = tool {
            task["expect_tool"] = t.into();
        }
        if let Some(note) = request.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            task["note"] = note.into();
        }
        // The line must read back as a task (the same parser `keel eval run` uses).
        let names: Vec<String> = self.list_tools().into_iter().map(|s| s.name).collect();
        let line_text = task.to_string();
        if let Some(e) = tasks::parse(&line_text, &names).1.first() {
            return Err(AppError::new(ErrorKind::Internal, format!("the saved test case would not parse: {e}"), None));
        }
        let io = |e: std::io::Error| AppError::new(ErrorKind::Store, format!("cannot write {}: {e}", path.display()), Some("check the data dir's permissions and free space".into()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Appended and synced: a crash mid-write can leave at most this one line broken, which `keel eval run`
        // reports by its number while the other tasks run.
        let separator = if !existing.is_empty() && !existing.ends_with('\n') { "\n" } else { "" };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        std::io::Write::write_all(&mut file, format!("{separator}{line_text}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        let line = existing.lines().count() + 1;
        Ok(SavedTestCase { id, path: path.display().to_string(), line, task })
    }
}
