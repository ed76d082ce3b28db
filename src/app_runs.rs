//! `App`'s run and tool methods: the toolbox a run gets, one-off tool calls, answering a paused run, resuming
//! an interrupted one, replaying and forking a run from its log.
//!
//! The toolbox is built once per `App` (the built-in tools and any added later, such as an MCP server's) and
//! shared by every run. The memory tools reach memory through [`AppMemoryPort`], which opens memory on first
//! use, so `keel tools list` does not load the embedding model.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::error::{AppError, ErrorKind};
use crate::llm::{ChatMessage, Role};
use crate::memory::ItemSpec;
use crate::orchestration::events::{RunEvent, StoredEvent, UserAnswer};
use crate::orchestration::journal;
use crate::orchestration::recall::MemoryAccess;
use crate::orchestration::runner::{self, ResumeError, Services};
use crate::orchestration::state::{Pending, RunState};
use crate::orchestration::{Limits, RunMode, TurnEvent, TurnResult, UserRequest};
use crate::store::MemoryKind;
use crate::tools::memory::{MemoryHit, MemoryPort};
use crate::tools::{self, Tool, ToolError, ToolSpec, Toolbox};
use crate::{App, GenerationSettings};

/// The folder the files tools work in, inside the data dir.
pub const FILES_DIR: &str = "files";

/// The MCP servers to connect, in the data dir: `[[servers]]` tables with `name`, `command`, `args`, `env`,
/// `effect` (see `tools::mcp::McpServerConfig`).
pub const MCP_CONFIG: &str = "mcp.toml";

const MCP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
struct McpFile {
    #[serde(default)]
    servers: Vec<tools::mcp::McpServerConfig>,
}

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

/// A run re-folded from its log without calling any model or tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    pub run_id: i64,
    pub events: Vec<StoredEvent>,
    /// The state after the last event.
    pub state: RunState,
    /// Every prefix of the log folded to a state whose step count never decreased (a sanity check of the fold).
    pub consistent: bool,
    /// The status and token totals the store's projection holds agree with the fold.
    pub matches_projection: bool,
}

/// Memory for the memory tools, opened on first use.
pub struct AppMemoryPort {
    app: App,
    provenance: String,
}

impl MemoryPort for AppMemoryPort {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<MemoryHit>, String> {
        let r = self.app.memory_search(query, limit).map_err(|e| e.message)?;
        Ok(r.hits
            .into_iter()
            .map(|h| MemoryHit { id: h.item.id, kind: h.item.kind.as_str().into(), text: h.item.text, source: h.item.source, score: h.fused })
            .collect())
    }

    fn save(&self, text: &str) -> Result<i64, String> {
        let memory = self.app.memory(&mut |_| {}).map_err(|e| e.message)?;
        let spec = ItemSpec { kind: MemoryKind::Fact, text: text.to_owned(), source: "tool".into(), provenance: self.provenance.clone(), pinned: false };
        memory.add(&self.app.inner.store, &spec).map(|i| i.id).map_err(|e| e.to_string())
    }

    fn exists(&self, id: i64) -> bool {
        self.app.inner.store.memory_get(id).is_ok_and(|i| !i.deleted)
    }
}

impl App {
    /// The tools every run is offered: calculator, date and time, memory search and save, the files tools in
    /// `files/` of the data dir, HTTP fetch (off unless `KEEL_HTTP_FETCH=1`), and any added with [`App::add_tool`].
    pub fn toolbox(&self) -> Arc<Toolbox> {
        let mut cached = self.inner.toolbox.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cached.as_ref() {
            return t.clone();
        }
        let mut toolbox = Toolbox::new();
        let mut all: Vec<Arc<dyn Tool>> = vec![Arc::new(tools::calculator::Calculator::new()), Arc::new(tools::clock::Clock::new())];
        all.extend(tools::memory::memory_tools(Arc::new(AppMemoryPort { app: self.clone(), provenance: "assistant".into() })));
        all.extend(tools::files::file_tools(self.inner.home.join(FILES_DIR)));
        let http_on = std::env::var("KEEL_HTTP_FETCH").is_ok_and(|v| v == "1");
        all.push(Arc::new(tools::http::HttpFetch::new(http_on)));
        all.extend(self.inner.extra_tools.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
        all.extend(self.mcp_tools());
        for tool in all {
            // A built-in's schemas are fixed and tested; an added tool with a broken schema is left out, and
            // `keel tools list` shows what is there.
            let _ = toolbox.add(tool);
        }
        let toolbox = Arc::new(toolbox);
        *cached = Some(toolbox.clone());
        toolbox
    }

    /// The tools of the MCP servers listed in `mcp.toml` in the data dir, connecting them on first use. A server
    /// that cannot start, or a tool whose schema does not compile, is left out and reported by
    /// [`App::tool_problems`].
    fn mcp_tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut servers = self.inner.mcp.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems = self.inner.tool_problems.lock().unwrap_or_else(|p| p.into_inner());
        if servers.is_none() {
            let path = self.inner.home.join(MCP_CONFIG);
            let configs = match std::fs::read_to_string(&path) {
                Ok(text) => match toml::from_str::<McpFile>(&text) {
                    Ok(f) => f.servers,
                    Err(e) => {
                        problems.push(format!("{} is not valid: {e}", path.display()));
                        Vec::new()
                    }
                },
                Err(_) => Vec::new(),
            };
            // rmcp runs on its own small runtime, which must not be started from inside another (the desktop
            // calls in from Tauri's blocking pool): connect from a plain thread.
            let connected = std::thread::scope(|scope| {
                scope
                    .spawn(|| configs.iter().map(|c| (c.name.clone(), tools::mcp::connect(c, MCP_CONNECT_TIMEOUT))).collect::<Vec<_>>())
                    .join()
                    .unwrap_or_default()
            });
            let mut live = Vec::new();
            for (name, result) in connected {
                match result {
                    Ok(server) => live.push(server),
                    Err(e) => problems.push(format!("MCP server {name}: {e}")),
                }
            }
            *servers = Some(live);
        }
        let mut out = Vec::new();
        for server in servers.as_ref().into_iter().flatten() {
            for tool in server.tools() {
                match Toolbox::new().add(tool.clone()) {
                    Ok(()) => out.push(tool),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        problems.dedup();
        out
    }

    /// Configured tools that could not be offered, and why.
    pub fn tool_problems(&self) -> Vec<String> {
        self.toolbox();
        self.inner.tool_problems.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds a tool for the runs that start from now on (tests' fault-injecting tools, MCP servers' tools); its
    /// schemas are checked first.
    pub fn add_tool(&self, tool: Arc<dyn Tool>) -> Result<(), AppError> {
        Toolbox::new().add(tool.clone()).map_err(|e| AppError::new(ErrorKind::InvalidInput, e.to_string(), None))?;
        self.inner.extra_tools.lock().unwrap_or_else(|p| p.into_inner()).push(tool);
        *self.inner.toolbox.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    pub fn tools_list(&self) -> Vec<ToolSpec> {
        self.toolbox().specs()
    }

    /// Validates and runs one tool outside any run, with the same checks and timeouts as inside one.
    pub fn tools_call(&self, name: &str, arguments: &Value) -> Result<Value, AppError> {
        let toolbox = self.toolbox();
        toolbox.call(name, arguments, None, &|| false).map_err(tool_error)
    }

    pub(crate) fn memory_port(&self) -> AppMemoryPort {
        AppMemoryPort { app: self.clone(), provenance: "assistant".into() }
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
        let detail = journal::load(&self.inner.store, run_id)?;
        let state = RunState::fold(&detail.events);
        Ok(match state.pending {
            Pending::Approval { call, reason } => Some(UserRequest::Approval {
                run_id,
                call_id: call.call_id,
                tool: call.tool,
                arguments: call.arguments,
                effect: call.effect,
                reason,
            }),
            Pending::Question { question } => Some(UserRequest::Question { run_id, question }),
            _ => None,
        })
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
        backend: Option<Arc<dyn crate::llm::Backend>>,
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
                    RunEvent::RunStarted { backend, .. } => Some(backend.clone()),
                    _ => None,
                });
                match started_on {
                    Some(name) => self.backend_of(&name)?,
                    None => self.backend_named(None)?,
                }
            }
        };
        let memory = self.memory(&mut |_| {});
        let access = match &memory {
            Ok(m) => MemoryAccess::Available(m.as_ref()),
            Err(e) => MemoryAccess::Unavailable(e.message.clone()),
        };
        let toolbox = self.toolbox();
        let port = self.memory_port();
        let screen = self.screen();
        let services = Services {
            store: &self.inner.store,
            backend: backend.as_ref(),
            toolbox: &toolbox,
            memory: &access,
            memory_port: Some(&port),
            screen: Some(&screen),
        };
        let cancel = crate::llm::CancelFlag::default();
        self.inner.running.lock().expect("lock").insert(run_id, cancel.clone());
        let result = runner::resume(services, run_id, conversation_id, &conversation, settings, answer, &cancel, on_event);
        self.forget_run(run_id, &cancel);
        result.map_err(|e| match e {
            ResumeError::Store(s) => s.into(),
            other => AppError::new(ErrorKind::InvalidInput, format!("run {run_id} cannot continue: {other}"), Some("`keel runs show ID` shows what it waits for".into())),
        })
    }

    /// Re-folds a run from its log, calling no model and no tool.
    pub fn replay_run(&self, run_id: i64) -> Result<Replay, AppError> {
        let detail = journal::load(&self.inner.store, run_id)?;
        let mut state = RunState::default();
        let mut consistent = true;
        for e in &detail.events {
            let next = state.clone().apply(&e.event);
            consistent &= next.step >= state.step && next.budget_used.tool_calls >= state.budget_used.tool_calls;
            state = next;
        }
        let status = state.outcome.as_ref().map(|o| o.status());
        let matches_projection = match status {
            Some(s) => s == detail.run.status,
            None => !matches!(detail.run.status, crate::orchestration::events::RunStatus::Answered | crate::orchestration::events::RunStatus::Failed),
        } && state.budget_used.prompt_tokens == detail.run.prompt_tokens
            && state.budget_used.completion_tokens == detail.run.completion_tokens;
        Ok(Replay { run_id, events: detail.events, state, consistent, matches_projection })
    }

    /// Starts a new run from step `from_step` of another (on `backend`, when named): its events up to the end of that step are copied into
    /// a new run in a new conversation (a branch holding the parent's conversation up to that run), `message` (if given) is added as the user's word, and the run goes on
    /// from there with the current backend.
    pub fn fork_run(
        &self,
        run_id: i64,
        from_step: u32,
        message: Option<&str>,
        backend: Option<&str>,
        settings: &GenerationSettings,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        let backend_name = backend;
        // An unknown name is refused before anything is copied.
        let backend = backend.map(|name| self.backend_named(Some(name))).transpose()?;
        let detail = journal::load(&self.inner.store, run_id)?;
        let steps = detail.events.iter().filter(|e| matches!(e.event, RunEvent::ModelCalled { .. })).count() as u32;
        if from_step > steps {
            return Err(AppError::new(ErrorKind::InvalidInput, format!("run {run_id} has {steps} steps; --from-step must be 0 to {steps}"), None));
        }
        // Everything before the model call of step `from_step + 1`.
        let cut = detail
            .events
            .iter()
            .position(|e| matches!(e.event, RunEvent::ModelCalled { step, .. } if step > from_step))
            .unwrap_or(detail.events.len());
        let kept: Vec<RunEvent> = detail
            .events[..cut]
            .iter()
            .map(|e| e.event.clone())
            .filter(|e| !matches!(e, RunEvent::RunFinished { .. } | RunEvent::RunCancelled { .. } | RunEvent::LimitReached { .. }))
            .collect();
        let input = detail.run.input.clone();
        let (_, new_id) = self.inner.store.begin_fork(run_id, &input, backend_name)?;
        for event in &kept {
            journal::append(&self.inner.store, new_id, event)?;
        }
        let state = kept.iter().fold(RunState::default(), |s, e| s.apply(e));
        let answer = message.map(|m| UserAnswer::Reply { text: m.to_owned() });
        // A fork from inside a pause needs the answer; a fork without a message continues where the copy ends.
        if answer.is_none() && matches!(state.pending, Pending::Approval { .. } | Pending::Question { .. }) {
            return Err(AppError::new(ErrorKind::InvalidInput, format!("step {from_step} of run {run_id} waits for the user; pass --message"), None));
        }
        journal::append(&self.inner.store, new_id, &RunEvent::RunInterrupted { reason: format!("forked from run {run_id} at step {from_step}") })?;
        match answer {
            Some(a) if matches!(state.pending, Pending::Question { .. }) => self.continue_run(new_id, Some(a), backend, settings, on_event),
            Some(UserAnswer::Reply { text }) => {
                journal::append(&self.inner.store, new_id, &RunEvent::UserAnswered { answer: UserAnswer::Reply { text } })?;
                self.continue_run(new_id, None, backend.clone(), settings, on_event)
            }
            _ => self.continue_run(new_id, None, backend.clone(), settings, on_event),
        }
    }
}

fn tool_error(e: ToolError) -> AppError {
    let hint = match &e {
        ToolError::UnknownTool { .. } => Some("`keel tools list` shows the tools".to_string()),
        ToolError::InvalidArguments { tool, .. } => Some(format!("`keel tools list --json` shows {tool}'s input schema")),
        _ => None,
    };
    let kind = match &e {
        ToolError::UnknownTool { .. } | ToolError::InvalidArguments { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Tool,
    };
    AppError::new(kind, format!("{} [{}]", e, e.class()), hint)
}
