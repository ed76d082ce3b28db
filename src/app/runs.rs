//! `App`'s runs: a turn from the user's message to its answer, answering a paused run, resuming an interrupted
//! one, stopping, replaying and forking, and the conversations and runs as recorded.
//!
//! The work is orchestration's (`runner` for the loop, `lifecycle` for everything around it); this file finds
//! the backend, the toolbox, memory and the screen a run gets (built in one place, [`App::services`]), and keeps
//! the cancel flags of the runs in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{lock, App};
use crate::error::{AppError, ErrorKind};
use crate::interface::guard::Source;
use crate::interface::{Accepted, Door, Rejected, RouteContext};
use crate::llm::{Backend, CancelFlag, ChatMessage, GenerationSettings, Role};
use crate::memory::Memory;
use crate::orchestration::events::{RunEvent, UserAnswer};
use crate::orchestration::journal::{self, ConversationDetail, RunDetail, RunSummary};
use crate::orchestration::lifecycle::{self, ForkError, Replay};
use crate::orchestration::recall::MemoryAccess;
use crate::orchestration::runner::{self, ResumeError, Services, Turn};
use crate::orchestration::{context, Limits, RunMode, TurnEvent, TurnResult, UserRequest};
use crate::store::ConversationSummary;
use crate::tools::Toolbox;

pub use super::tools::{FILES_DIR, MCP_CONFIG};

/// How a run is to work; every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct RunOptions {
    /// `None`: chosen from the message (a task that needs tools gets ReAct, anything else is chat).
    pub mode: Option<RunMode>,
    pub limits: Limits,
    /// Side-effecting tools the user lets run without asking.
    pub auto_approve: Vec<String>,
    /// The backend profile the run uses (`None`: the default backend).
    #[serde(default)]
    #[ts(optional)]
    pub backend: Option<String>,
}

/// The cancel flags of the runs in flight, by run id.
#[derive(Default)]
pub(super) struct RunRegistry {
    running: Mutex<HashMap<i64, CancelFlag>>,
}

impl RunRegistry {
    /// Runs `f` with a fresh cancel flag registered for `run_id`, and forgets the flag afterwards unless a newer
    /// invocation of the same run (the user answered quickly) has replaced it.
    fn with_flag<T>(&self, run_id: i64, f: impl FnOnce(&CancelFlag) -> T) -> T {
        let cancel = CancelFlag::default();
        lock(&self.running).insert(run_id, cancel.clone());
        let result = f(&cancel);
        let mut running = lock(&self.running);
        if running.get(&run_id).is_some_and(|flag| flag.same(&cancel)) {
            running.remove(&run_id);
        }
        drop(running);
        // A turn's prompts, retrievals and guard windows are freed by now, but glibc keeps the pages in the
        // arena of whichever worker thread freed them: resident memory would climb by a third over the first
        // few hundred turns with the heap in use flat (the soak measures both). Handing them back costs well
        // under a millisecond.
        crate::shared::io::release_freed_memory();
        result
    }
}

/// What a run works with, owned; [`RunParts::services`] lends it to the runner.
struct RunParts {
    backend: Arc<dyn Backend>,
    toolbox: Arc<Toolbox>,
    memory: Result<Arc<Memory>, AppError>,
    port: super::tools::AppMemoryPort,
    screen: super::guard::AppScreen,
}

impl RunParts {
    fn services<'a>(&'a self, store: &'a crate::store::Store, access: &'a MemoryAccess<'a>) -> Services<'a> {
        Services {
            store,
            backend: self.backend.as_ref(),
            toolbox: &self.toolbox,
            memory: access,
            memory_port: Some(&self.port),
            screen: Some(&self.screen),
        }
    }

    fn memory_access(&self) -> MemoryAccess<'_> {
        match &self.memory {
            Ok(m) => MemoryAccess::Available(m.as_ref()),
            Err(e) => MemoryAccess::Unavailable(format!("{} ({})", e.message, e.hint.as_deref().unwrap_or(""))),
        }
    }
}

impl App {
    /// What a run on `backend` gets: the toolbox, memory (or why it is unavailable), the memory tools' port and
    /// the screen (`None`: the one [`App::screen`] builds). The one place these are put together.
    fn services(&self, backend: Arc<dyn Backend>, screen: Option<super::guard::AppScreen>) -> RunParts {
        RunParts {
            backend,
            toolbox: self.toolbox(),
            memory: self.memory(&mut |_| {}),
            port: self.memory_port(),
            screen: screen.unwrap_or_else(|| self.screen()),
        }
    }

    /// Runs one turn: checks the message, records it, runs the agent as `options` say (mode, limits, approval
    /// policy, backend) and streams what happens to `on_event`. Blocking: call it from a worker thread. An input
    /// error or a missing model returns before anything is stored; once the run has started, a failure is
    /// recorded in it and returned as its outcome.
    pub fn send_message(
        &self,
        conversation_id: Option<i64>,
        text: &str,
        settings: &GenerationSettings,
        options: &RunOptions,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        // The front door: the one normalisation of the message, its intent and the guard's verdict on it.
        let screen = self.screen();
        let files = self.file_names();
        let zone = local_zone();
        let accepted = Door::routing(&screen, RouteContext { files: &files, zone: zone.as_deref() }).accept(text, Source::User)?;
        let backend = self.backend_named(options.backend.as_deref())?;
        let parts = self.services(backend, Some(screen));
        check_fits(parts.backend.as_ref(), &accepted, settings)?;
        let store = &self.inner.store;
        let mut conversation: Vec<ChatMessage> = match conversation_id {
            Some(id) => journal::conversation(store, id)?.messages.into_iter().map(|m| ChatMessage::new(m.role, m.content)).collect(),
            None => Vec::new(),
        };
        conversation.push(ChatMessage::new(Role::User, accepted.text.clone()));
        let access = parts.memory_access();
        let services = parts.services(store, &access);
        let mut turn = Turn {
            conversation_id: conversation_id.unwrap_or(0),
            run_id: 0,
            input: &accepted,
            conversation: &conversation,
            settings,
            limits: options.limits,
            mode: options.mode.unwrap_or_else(|| RunMode::for_intent(accepted.intent.intent)),
            auto_approve: options.auto_approve.clone(),
        };
        lifecycle::begin_turn(store, &services, conversation_id, options.backend.as_deref(), &mut turn)?;
        // Backend panics (context assembly included) are caught inside the runner and recorded as a failed run.
        Ok(self.inner.runs.with_flag(turn.run_id, |cancel| runner::run_turn(services, turn, cancel, on_event))?)
    }

    /// The files of the files folder, as paths relative to it (at most 2,000, hidden ones left out): what
    /// routing matches a file named in a message against.
    fn file_names(&self) -> Vec<String> {
        let root = self.inner.home.join(FILES_DIR);
        let mut out = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(dir) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if out.len() >= 2000 {
                    return out;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(kind) = entry.file_type() else { continue };
                if name.starts_with('.') || kind.is_symlink() {
                    continue;
                }
                if kind.is_dir() {
                    folders.push(entry.path());
                } else if let Ok(rel) = entry.path().strip_prefix(&root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out
    }

    /// Asks a run to stop: one in flight stops at its next step (the runner records `RunCancelled`); one that
    /// waits for the user or was interrupted is closed as stopped at once. True if there was such a run.
    pub fn cancel_run(&self, run_id: i64) -> bool {
        if let Some(flag) = lock(&self.inner.runs.running).get(&run_id) {
            flag.cancel();
            return true;
        }
        lifecycle::stop_idle_run(&self.inner.store, run_id).unwrap_or(false)
    }

    /// Cancels every run in flight (Ctrl-C in the CLI); returns how many there were.
    pub fn cancel_all(&self) -> usize {
        let running = lock(&self.inner.runs.running);
        for flag in running.values() {
            flag.cancel();
        }
        running.len()
    }

    pub fn list_conversations(&self) -> Result<Vec<ConversationSummary>, AppError> {
        Ok(self.inner.store.list_conversations()?)
    }

    pub fn get_conversation(&self, id: i64) -> Result<ConversationDetail, AppError> {
        Ok(journal::conversation(&self.inner.store, id)?)
    }

    pub fn list_runs(&self, limit: u32) -> Result<Vec<RunSummary>, AppError> {
        Ok(journal::list(&self.inner.store, limit)?)
    }

    pub fn get_run(&self, id: i64) -> Result<RunDetail, AppError> {
        Ok(journal::load(&self.inner.store, id)?)
    }

    /// Answers what a paused run waits for (approve or deny a call, or reply to a question) and continues it.
    pub fn answer_run(
        &self,
        run_id: i64,
        answer: UserAnswer,
        settings: &GenerationSettings,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        self.continue_run(run_id, Some(answer), None, settings, on_event)
    }

    /// Continues a run that Keel stopped in the middle of, from its log.
    pub fn resume_run(&self, run_id: i64, settings: &GenerationSettings, on_event: &mut dyn FnMut(TurnEvent)) -> Result<TurnResult, AppError> {
        self.continue_run(run_id, None, None, settings, on_event)
    }

    /// What a paused run waits for, if it waits.
    pub fn run_waiting(&self, run_id: i64) -> Result<Option<UserRequest>, AppError> {
        Ok(lifecycle::waiting_for(&self.inner.store, run_id)?)
    }

    /// Runs that a stopped Keel left interrupted, oldest first.
    pub fn interrupted_runs(&self) -> Result<Vec<i64>, AppError> {
        Ok(self.inner.store.runs_with_status("interrupted")?)
    }

    /// `backend`: the one to continue on; `None` is the one the run started on (or the default, if it is gone).
    fn continue_run(
        &self,
        run_id: i64,
        answer: Option<UserAnswer>,
        backend: Option<Arc<dyn Backend>>,
        settings: &GenerationSettings,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        let detail = journal::load(&self.inner.store, run_id)?;
        let conversation_id = detail.run.conversation_id;
        // The conversation as the run saw it: every message up to and including the one that started it.
        let messages = journal::conversation(&self.inner.store, conversation_id)?.messages;
        let end = messages.iter().position(|m| m.run_id == Some(run_id) && m.role == Role::User).map(|i| i + 1).unwrap_or(messages.len());
        let conversation: Vec<ChatMessage> = messages[..end].iter().map(|m| ChatMessage::new(m.role, m.content.clone())).collect();
        let backend = match backend {
            Some(b) => b,
            None => {
                let started_on = detail.events.iter().find_map(|e| match &e.event {
                    RunEvent::RunStarted { backend, members, .. } => Some(members.first().unwrap_or(backend).clone()),
                    _ => None,
                });
                self.backend_of(started_on.as_deref())?
            }
        };
        let parts = self.services(backend, None);
        let access = parts.memory_access();
        let services = parts.services(&self.inner.store, &access);
        let result = self.inner.runs.with_flag(run_id, |cancel| {
            runner::resume(services, run_id, conversation_id, &conversation, settings, answer, cancel, on_event)
        });
        result.map_err(|e| match e {
            ResumeError::Store(s) => s.into(),
            other => AppError::new(
                ErrorKind::InvalidInput,
                format!("run {run_id} cannot continue: {other}"),
                Some("`keel runs show ID` shows what it waits for".into()),
            ),
        })
    }

    /// Re-folds a run from its log, calling no model and no tool.
    pub fn replay_run(&self, run_id: i64) -> Result<Replay, AppError> {
        Ok(lifecycle::replay(&self.inner.store, run_id)?)
    }

    /// Starts a new run from step `from_step` of another (on `backend`, when named): its events up to the end of
    /// that step are copied into a new run in a new conversation (a branch holding the parent's conversation up
    /// to that run), `message` (if given) is added as the user's word, and the run goes on from there.
    pub fn fork_run(
        &self,
        run_id: i64,
        from_step: u32,
        message: Option<&str>,
        backend: Option<&str>,
        settings: &GenerationSettings,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        // An unknown backend is refused before anything is copied.
        let chosen = backend.map(|name| self.backend_named(Some(name))).transpose()?;
        let fork = lifecycle::fork(&self.inner.store, run_id, from_step, message, backend).map_err(|e| match e {
            ForkError::Store(s) => s.into(),
            other => AppError::new(ErrorKind::InvalidInput, other.to_string(), None),
        })?;
        self.continue_run(fork.run_id, fork.answer, chosen, settings, on_event)
    }
}

/// Refuses, before anything is stored, settings that cannot work and a message that cannot fit the model's
/// window even as the conversation's only message.
fn check_fits(backend: &dyn Backend, accepted: &Accepted, settings: &GenerationSettings) -> Result<(), AppError> {
    let window = backend.info().context_window;
    settings.validate(window).map_err(|e| AppError::new(ErrorKind::InvalidInput, e, Some("change that setting and try again".into())))?;
    let alone = [ChatMessage::new(Role::System, context::SYSTEM_PROMPT), ChatMessage::new(Role::User, accepted.text.as_str())];
    let tokens = backend.count_prompt_tokens(&alone)?;
    if tokens + settings.max_tokens > window {
        return Err(Rejected::TooManyTokens { tokens, answer: settings.max_tokens, window }.into());
    }
    Ok(())
}

/// The machine's IANA time zone, when it is one the clock knows (`TZ`, then the system's setting).
fn local_zone() -> Option<String> {
    let name = std::env::var("TZ").ok().filter(|z| !z.is_empty()).map(|z| z.trim_start_matches(':').to_owned()).or_else(|| iana_time_zone::get_timezone().ok())?;
    name.parse::<chrono_tz::Tz>().is_ok().then_some(name)
}
