//! `keel eval run`: each task of a suite in a throwaway data dir of its own, through the same `App` path as a
//! chat turn, on the backend this `App` would use (so a loaded embedded model is shared, not reloaded), judged by
//! `eval::agent::judge`. The user's data dir is never touched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::runs::{RunOptions, FILES_DIR};
use super::{App, OpenOptions};
use crate::error::{AppError, ErrorKind};
use crate::eval::agent::judge::{judge, Observed};
use crate::eval::agent::tasks::{self, Task};
use crate::eval::agent::{self, Attempt, Options, Report, TaskReport};
use crate::llm::{Backend, GenerationSettings};
use crate::orchestration::events::RunEvent;

impl App {
    /// Runs a suite (`options.tasks_file`, one task per line), reporting `(stage, done, total)`. Lines that are
    /// not valid tasks are listed in the report's `errors`; the others run.
    pub fn evaluate_tasks(&self, options: &Options, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Report, AppError> {
        let path = &options.tasks_file;
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
                attempts.push(self.attempt(&task, backend.clone()));
                count += 1;
            }
            let report = TaskReport { id: task.id.clone(), category: task.category.clone(), line, attempts };
            done.push((task, report));
        }
        on_progress("done", total, total);
        Ok(agent::report(&path.display().to_string(), &backend.info().name, repeat, errors, done))
    }

    /// One attempt at a task in a fresh data dir, removed afterwards.
    fn attempt(&self, task: &Task, backend: std::sync::Arc<dyn Backend>) -> Attempt {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let home = std::env::temp_dir().join(format!("keel-eval-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let result = self.attempt_in(task, backend, &home);
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
        })
    }

    fn attempt_in(&self, task: &Task, backend: std::sync::Arc<dyn Backend>, home: &std::path::Path) -> Result<Attempt, AppError> {
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
        if let Some(fault) = task.fault.as_ref().filter(|f| f.tool != "@backend") {
            app.inject_tool_faults(&fault.tool, agent::plan(fault))?;
        }
        let settings = GenerationSettings::default();
        let (mut conversation, mut run_ids, mut turn_ms, mut answer) = (None, Vec::new(), Vec::new(), String::new());
        for (text, new_session) in task.user_turns() {
            if new_session {
                conversation = None;
            }
            let started = Instant::now();
            let result = app.send_message(conversation, text, &settings, &RunOptions::default(), &mut |_| {})?;
            turn_ms.push(started.elapsed().as_millis() as u64);
            conversation = Some(result.conversation_id);
            run_ids.push(result.run_id);
            answer = result.answer;
        }
        let mut runs = Vec::new();
        for id in &run_ids {
            runs.push(app.get_run(*id)?.events);
        }
        let (mut rejected, mut tokens) = (0, 0u64);
        for e in runs.iter().flatten() {
            match &e.event {
                RunEvent::ActionRejected { .. } => rejected += 1,
                RunEvent::RunFinished { prompt_tokens, completion_tokens, .. } => tokens += (*prompt_tokens + *completion_tokens) as u64,
                _ => {}
            }
        }
        let seen = Observed::read(&runs, answer.clone());
        let failures = judge(task, &seen);
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
        })
    }
}
