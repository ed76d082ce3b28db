//! Keel's agent core. [`App`] is the one handle both front ends (the `keel` CLI and the desktop shell) use.
//!
//! `App` opens a data dir (`KEEL_HOME`, or the platform data dir), applies the SQLite migrations, finishes the
//! bookkeeping of runs a previous process left in flight, and wires the layers: `interface` checks input,
//! `orchestration` runs the turn, `llm` generates, `store` records. The embedded model is loaded on first use
//! (or on request, with progress) and kept for the life of the `App`.

mod app_backends;
mod app_guard;
mod app_memory;
mod app_models;
mod app_runs;
pub mod error;
pub mod eval;
pub mod interface;
pub mod llm;
pub mod memory;
pub mod models;
pub mod orchestration;
pub mod secrets;
pub mod store;
pub mod tools;
pub mod trace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub use error::{AppError, ErrorKind};
// The boundary types the front ends exchange with `App`, re-exported so that they need nothing deeper.
pub use llm::GenerationSettings;
pub use orchestration::journal::{ConversationDetail, Message, RunDetail, RunSummary};
pub use orchestration::{TurnEvent, TurnResult};
pub use app_backends::{BackendKind, BackendProfile, BackendTest, BackendView, KeyState, LOCAL};
pub use app_guard::{GuardModel, GuardReport};
pub use app_memory::{ExportedItem, RestoreReport, INDEX_DIR};
pub use app_runs::{Replay, RunOptions, FILES_DIR, MCP_CONFIG};
pub use orchestration::events::{Action, RunOutcome as Outcome, UserAnswer};
pub use orchestration::{Limits, RunMode, UserRequest};
pub use tools::{Effect, Origin, ToolError, ToolSpec};
pub use memory::retrieve::{CandidateDecision, Retrieval, RetrievalCandidate};
pub use memory::{ImportError, ImportProgress, ImportReport, IndexReport};
pub use orchestration::events::RecordedCandidate;
pub use store::{ConversationSummary, MemoryItem, MemoryKind, MemoryPage, MemoryQuery};
use llm::local::{LoadError, LocalModel};
use llm::{Backend, BackendError, CancelFlag, ChatMessage};
use models::{FileState, Manifest, ModelError, ModelStore};
use orchestration::events::{RunEvent, RunOutcome};
use orchestration::recall::MemoryAccess;
use orchestration::runner::{self, Services, Turn};
use orchestration::state::{Pending, RunState};
use orchestration::journal;
use store::{Store, StoreError};

/// What the embedded model is doing, for the UI's banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    Missing,
    Corrupt,
    NotLoaded,
    Loading,
    Ready,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ModelStatus {
    pub state: ModelState,
    pub model_id: String,
    pub file: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Progress of a long operation: `done` of `total` units (bytes for model loading) in the named stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct LoadProgress {
    pub stage: String,
    #[ts(type = "number")]
    pub done: u64,
    #[ts(type = "number")]
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AppStatus {
    pub data_dir: String,
    pub model: ModelStatus,
}

/// Where an `App` keeps its data. Built from the environment by [`OpenOptions::from_env`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub home: PathBuf,
    pub models_dir: PathBuf,
}

impl OpenOptions {
    /// `KEEL_HOME` (or the platform data dir, `~/.local/share/keel` on Linux) and `KEEL_MODELS_DIR` (or
    /// `models/` inside the data dir).
    pub fn from_env() -> Result<OpenOptions, AppError> {
        let home = match std::env::var_os("KEEL_HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h),
            _ => directories::ProjectDirs::from("", "", "keel")
                .map(|d| d.data_dir().to_owned())
                .ok_or_else(|| {
                    AppError::new(
                        ErrorKind::DataDirReadOnly,
                        "no home directory was found for Keel's data",
                        Some("set KEEL_HOME to a writable folder".into()),
                    )
                })?,
        };
        Ok(OpenOptions::at(home))
    }

    /// Data in `home`, models from `KEEL_MODELS_DIR` or `home/models`.
    pub fn at(home: PathBuf) -> OpenOptions {
        let models_dir = match std::env::var_os("KEEL_MODELS_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => home.join("models"),
        };
        OpenOptions { home, models_dir }
    }
}

/// The Keel core: cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    home: PathBuf,
    store: Store,
    models: ModelStore,
    manifest: Manifest,
    /// A backend given at open time (the scripted one in tests); otherwise the embedded model, loaded lazily.
    fixed_backend: Option<Arc<dyn Backend>>,
    local: Mutex<Option<Arc<LocalModel>>>,
    /// Held while the embedded model loads, so it loads once.
    load_lock: Mutex<()>,
    loading: AtomicBool,
    /// The memory layer, opened on first use; `memory_load` makes that happen once.
    memory: Mutex<Option<Arc<memory::Memory>>>,
    memory_load: Mutex<()>,
    /// The guard's embedded exemplars and intent centroids, built on first use.
    guard: Mutex<Option<Arc<app_guard::GuardModel>>>,
    import_cancel: Arc<AtomicBool>,
    /// The tools runs are offered, built on first use; `add_tool` adds to `extra_tools` and clears it.
    toolbox: Mutex<Option<Arc<tools::Toolbox>>>,
    extra_tools: Mutex<Vec<Arc<dyn tools::Tool>>>,
    /// The MCP servers of `mcp.toml`, connected on first use of the toolbox (`None` until then).
    mcp: Mutex<Option<Vec<tools::mcp::McpServer>>>,
    /// Configured tools that could not be offered, and why.
    tool_problems: Mutex<Vec<String>>,
    /// Remote backends by profile name, with the profile and key fingerprint they were built from.
    remotes: Mutex<HashMap<String, (store::BackendRow, Option<String>, Arc<llm::remote::RemoteBackend>)>>,
    /// Stops the model download in progress.
    download_cancel: Mutex<CancelFlag>,
    /// Held by the download in progress.
    download_lock: Mutex<()>,
    /// Cancel flags of the runs in flight.
    running: Mutex<HashMap<i64, CancelFlag>>,
    /// `keel.lock` in the data dir, held shared for the life of the `App`: while any Keel process is alive,
    /// no other can take it exclusively, so none mistakes a live run for an interrupted one.
    _liveness: std::fs::File,
}

impl App {
    /// Opens the data dir named by the environment. For tests and evaluations only, `KEEL_SCRIPTED_BACKEND`
    /// names a script file (see `llm::scripted::ScriptFile`) that replaces the embedded model.
    pub fn open_default() -> Result<App, AppError> {
        let options = OpenOptions::from_env()?;
        match std::env::var_os("KEEL_SCRIPTED_BACKEND") {
            Some(path) if !path.is_empty() => {
                let backend = llm::scripted::ScriptedBackend::from_file(Path::new(&path))
                    .map_err(|e| AppError::new(ErrorKind::InvalidInput, e, Some("fix the script or unset KEEL_SCRIPTED_BACKEND".into())))?;
                App::open_with_backend(options, Arc::new(backend))
            }
            _ => App::open(options),
        }
    }

    pub fn open(options: OpenOptions) -> Result<App, AppError> {
        App::open_with(options, None)
    }

    /// Opens with a fixed backend instead of the embedded model (orchestration tests use the scripted one).
    pub fn open_with_backend(options: OpenOptions, backend: Arc<dyn Backend>) -> Result<App, AppError> {
        App::open_with(options, Some(backend))
    }

    fn open_with(options: OpenOptions, fixed_backend: Option<Arc<dyn Backend>>) -> Result<App, AppError> {
        ensure_writable_dir(&options.home)?;
        let lock_path = options.home.join("keel.lock");
        let liveness = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AppError::new(ErrorKind::DataDirReadOnly, format!("cannot open {}: {e}", lock_path.display()), None))?;
        // Only a process that is alone may close runs left in flight: anyone else's are still running.
        let alone = liveness.try_lock().is_ok();
        let store = Store::open(&options.home.join("keel.sqlite3"))?;
        let manifest = Manifest::from_env()?;
        let app = App {
            inner: Arc::new(Inner {
                home: options.home,
                store,
                models: ModelStore::new(options.models_dir),
                manifest,
                fixed_backend,
                local: Mutex::new(None),
                load_lock: Mutex::new(()),
                loading: AtomicBool::new(false),
                running: Mutex::new(HashMap::new()),
                remotes: Mutex::new(HashMap::new()),
                download_cancel: Mutex::new(CancelFlag::default()),
                download_lock: Mutex::new(()),
                toolbox: Mutex::new(None),
                extra_tools: Mutex::new(Vec::new()),
                mcp: Mutex::new(None),
                tool_problems: Mutex::new(Vec::new()),
                memory: Mutex::new(None),
                memory_load: Mutex::new(()),
                guard: Mutex::new(None),
                import_cancel: Arc::new(AtomicBool::new(false)),
                _liveness: liveness,
            }),
        };
        if alone {
            app.close_interrupted_runs()?;
            // From exclusive to shared: other processes may now open the data dir too.
            let _ = app.inner._liveness.unlock();
        }
        app.inner._liveness.lock_shared().map_err(|e| {
            AppError::new(ErrorKind::Internal, format!("cannot lock {}: {e}", lock_path.display()), None)
        })?;
        Ok(app)
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.home
    }

    /// Runs left `running` by a process that stopped mid-run are marked `interrupted` (`RunInterrupted`), to be
    /// resumed from their log (`keel runs resume`, or the desktop at start). A run that stopped inside a
    /// side-effecting call that is not safe to repeat is not left to a resume: whether the call happened is
    /// unknown, so it is recorded as such and the run waits for the user's decision. A run whose log cannot be
    /// decoded is closed as `Stopped`, rather than keeping Keel from starting.
    fn close_interrupted_runs(&self) -> Result<(), AppError> {
        let store = &self.inner.store;
        for run_id in store.runs_with_status("running")? {
            let detail = match journal::load(store, run_id) {
                Ok(detail) => detail,
                Err(_) => {
                    journal::append(
                        store,
                        run_id,
                        &RunEvent::RunFinished {
                            outcome: RunOutcome::Stopped { reason: "interrupted: Keel stopped before this run finished, and its log cannot be read".into() },
                            answer: None,
                            duration_ms: 0,
                            prompt_tokens: 0,
                            completion_tokens: 0,
                        },
                    )?;
                    continue;
                }
            };
            let state = RunState::fold(&detail.events);
            journal::append(store, run_id, &RunEvent::RunInterrupted { reason: "Keel stopped while this run was in flight".into() })?;
            if let Pending::InTool { call } = &state.pending {
                if call.effect.has_side_effects() && !call.idempotent {
                    journal::append(store, run_id, &RunEvent::OutcomeUnknown { call_id: call.call_id.clone(), tool: call.tool.clone() })?;
                    journal::append(
                        store,
                        run_id,
                        &RunEvent::ApprovalRequested {
                            call_id: call.call_id.clone(),
                            tool: call.tool.clone(),
                            arguments: call.arguments.clone(),
                            effect: call.effect,
                            reason: "Keel stopped during this call, so whether it took effect is unknown. Run it again?".into(),
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The data dir and the embedded model's state; cheap (no hashing, no loading).
    pub fn status(&self) -> AppStatus {
        AppStatus { data_dir: self.inner.home.display().to_string(), model: self.model_status() }
    }

    fn chat_model(&self) -> Result<(&models::ModelEntry, &models::ModelFile), AppError> {
        let entry = self.inner.manifest.by_role("chat").ok_or_else(|| {
            AppError::new(ErrorKind::ModelMissing, "the model manifest names no chat model", None)
        })?;
        let file = entry.files.iter().find(|f| f.name.ends_with(".gguf")).ok_or_else(|| {
            AppError::new(ErrorKind::ModelMissing, format!("model {} has no GGUF file", entry.id), None)
        })?;
        Ok((entry, file))
    }

    pub fn model_status(&self) -> ModelStatus {
        if let Some(b) = &self.inner.fixed_backend {
            let info = b.info();
            return status(ModelState::Ready, &info.name, &info.model, "ready", None);
        }
        if let Ok(Some(name)) = self.chosen_model() {
            let path = models::manager::user_dir(&self.inner.models).join(&name);
            let state = if self.inner.local.lock().expect("lock").is_some() {
                (ModelState::Ready, "ready".to_string(), None)
            } else if self.inner.loading.load(Ordering::SeqCst) {
                (ModelState::Loading, "loading".to_string(), None)
            } else if !path.is_file() {
                let hint = Some("choose another with `keel models use NAME`".to_string());
                (ModelState::Missing, format!("model file {name} is missing (expected at {})", path.display()), hint)
            } else {
                (ModelState::NotLoaded, "not loaded yet".to_string(), None)
            };
            return status(state.0, "user", &name, &state.1, state.2);
        }
        let (entry, file) = match self.chat_model() {
            Ok(x) => x,
            Err(e) => return status(ModelState::Error, "", "", &e.message, e.hint),
        };
        let path = self.inner.models.path_of(entry, file);
        if self.inner.local.lock().expect("lock").is_some() {
            return status(ModelState::Ready, &entry.id, &file.name, "ready", None);
        }
        if self.inner.loading.load(Ordering::SeqCst) {
            return status(ModelState::Loading, &entry.id, &file.name, "loading", None);
        }
        match self.inner.models.state(entry, file) {
            FileState::Missing => status(
                ModelState::Missing,
                &entry.id,
                &file.name,
                &format!("model file {} is missing (expected at {})", file.name, path.display()),
                Some(models::FETCH_HINT.into()),
            ),
            FileState::WrongSize => status(
                ModelState::Corrupt,
                &entry.id,
                &file.name,
                &format!("model file {} at {} is truncated or damaged", file.name, path.display()),
                Some(models::FETCH_HINT.into()),
            ),
            FileState::Verified | FileState::Unverified => {
                status(ModelState::NotLoaded, &entry.id, &file.name, "not loaded yet", None)
            }
        }
    }

    /// Loads the embedded chat model (checking its sha256 first), reporting progress; a no-op once loaded.
    pub fn load_model(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelStatus, AppError> {
        self.local_backend(on_progress)?;
        Ok(self.model_status())
    }

    fn local_backend(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<Arc<LocalModel>, AppError> {
        let _guard = self.inner.load_lock.lock().expect("load lock poisoned");
        if let Some(m) = self.inner.local.lock().expect("lock").as_ref() {
            return Ok(m.clone());
        }
        let chosen = self.chosen_model()?;
        let (entry, file) = self.chat_model()?;
        self.inner.loading.store(true, Ordering::SeqCst);
        let result = (|| {
            let mut report = |stage: String, done, total| on_progress(LoadProgress { stage, done, total });
            let (path, file_name) = match &chosen {
                // A model the user chose: its header and its recorded sha256 (stamped, so hashed only when changed).
                Some(name) => {
                    let verifying = format!("verifying {name}");
                    let info = models::manager::verify(&self.inner.models, name, &mut |d, t| report(verifying.clone(), d, t))?;
                    if info.checksum == models::manager::ChecksumState::Mismatch {
                        return Err(AppError::new(
                            ErrorKind::ModelCorrupt,
                            format!("model file {name} no longer matches the sha256 recorded when it was added"),
                            Some(format!("delete it (`keel models rm {name}`) and add it again, or `keel models use {}`", file.name)),
                        ));
                    }
                    (PathBuf::from(info.path), name.clone())
                }
                None => {
                    let verifying = format!("verifying {}", file.name);
                    (self.inner.models.verify(entry, file, false, &mut |d, t| report(verifying.clone(), d, t))?, file.name.clone())
                }
            };
            let loading = format!("loading {file_name}");
            let model = LocalModel::load(&path, &mut |d, t| report(loading.clone(), d, t))?;
            report("ready".into(), 1, 1);
            Ok::<_, AppError>(Arc::new(model))
        })();
        self.inner.loading.store(false, Ordering::SeqCst);
        let model = result?;
        *self.inner.local.lock().expect("lock") = Some(model.clone());
        Ok(model)
    }


    /// Runs one turn: checks the message, records it, runs the agent and streams what happens to `on_event`.
    /// Blocking: call it from a worker thread. An input error or a missing model returns before anything is
    /// stored; once the run has started, a failure is recorded in it and returned as its outcome.
    pub fn send_message(
        &self,
        conversation_id: Option<i64>,
        text: &str,
        settings: &GenerationSettings,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        self.send_message_with(conversation_id, text, settings, &RunOptions::default(), on_event)
    }

    /// [`App::send_message`] with the run's mode, limits and approval policy.
    pub fn send_message_with(
        &self,
        conversation_id: Option<i64>,
        text: &str,
        settings: &GenerationSettings,
        options: &RunOptions,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Result<TurnResult, AppError> {
        let accepted = interface::accept(text)?;
        let backend = self.backend_named(options.backend.as_deref())?;
        let store = &self.inner.store;
        let mut conversation: Vec<ChatMessage> = match conversation_id {
            Some(id) => journal::conversation(store, id)?
                .messages
                .into_iter()
                .map(|m| ChatMessage::new(m.role, m.content))
                .collect(),
            None => Vec::new(),
        };
        conversation.push(ChatMessage::new(llm::Role::User, accepted.text.clone()));
        check_fits(backend.as_ref(), &accepted.text, settings)?;
        let mode = options.mode.unwrap_or_else(|| if interface::needs_tools(&accepted.text) { RunMode::React } else { RunMode::Chat });
        let memory = self.memory(&mut |_| {});
        let access = match &memory {
            Ok(m) => MemoryAccess::Available(m.as_ref()),
            Err(e) => MemoryAccess::Unavailable(format!("{} ({})", e.message, e.hint.as_deref().unwrap_or(""))),
        };
        let toolbox = self.toolbox();
        let port = self.memory_port();
        let screen = self.screen();
        let services = Services {
            store,
            backend: backend.as_ref(),
            toolbox: &toolbox,
            memory: &access,
            memory_port: Some(&port),
            screen: Some(&screen),
        };

        let mut turn = Turn {
            conversation_id: conversation_id.unwrap_or(0),
            run_id: 0,
            input: &accepted.text,
            conversation: &conversation,
            settings,
            limits: options.limits,
            mode,
            auto_approve: options.auto_approve.clone(),
        };
        // The run, its user message and its RunStarted are one transaction: no run is ever on disk unstarted.
        let first = |conv: i64| Some(journal::encode(&runner::started_event(backend.as_ref(), &toolbox, conv, &turn)));
        let (conversation_id, run_id) = store.begin_turn_with_event(conversation_id, &accepted.text, options.backend.as_deref(), &first)?;
        turn.conversation_id = conversation_id;
        turn.run_id = run_id;
        let cancel = CancelFlag::default();
        self.inner.running.lock().expect("lock").insert(run_id, cancel.clone());
        // Backend panics (context assembly included) are caught inside the runner and recorded as a failed run.
        let result = runner::run_turn(services, turn, &cancel, on_event);
        self.forget_run(run_id, &cancel);
        Ok(result?)
    }

    /// Asks a run to stop: one in flight stops at its next step (the runner records `RunCancelled`); one that
    /// waits for the user or was interrupted is closed as stopped at once. True if there was such a run.
    pub fn cancel_run(&self, run_id: i64) -> bool {
        if let Some(flag) = self.inner.running.lock().expect("lock").get(&run_id) {
            flag.cancel();
            return true;
        }
        self.stop_idle_run(run_id).unwrap_or(false)
    }

    /// Closes a paused or interrupted run as stopped by the user, keeping what its tools had found.
    fn stop_idle_run(&self, run_id: i64) -> Result<bool, AppError> {
        let store = &self.inner.store;
        let detail = journal::load(store, run_id)?;
        if !matches!(detail.run.status, orchestration::events::RunStatus::AwaitingUser | orchestration::events::RunStatus::Interrupted) {
            return Ok(false);
        }
        let state = RunState::fold(&detail.events);
        journal::append(store, run_id, &RunEvent::RunCancelled { reason: "stopped by the user".into() })?;
        let budget = state.budget_used;
        journal::append(
            store,
            run_id,
            &RunEvent::RunFinished {
                outcome: RunOutcome::Stopped { reason: "stopped by the user".into() },
                answer: None,
                duration_ms: (store::now_ms() - detail.run.started_ms).max(0) as u64,
                prompt_tokens: budget.prompt_tokens,
                completion_tokens: budget.completion_tokens,
            },
        )?;
        Ok(true)
    }

    /// Forgets a run's cancel flag once its invocation returns, unless a newer invocation of the same run (the
    /// user answered quickly) has replaced it.
    pub(crate) fn forget_run(&self, run_id: i64, cancel: &CancelFlag) {
        let mut running = self.inner.running.lock().expect("lock");
        if running.get(&run_id).is_some_and(|f| f.same(cancel)) {
            running.remove(&run_id);
        }
    }

    /// Cancels every run in flight (Ctrl-C in the CLI); returns how many there were.
    pub fn cancel_all(&self) -> usize {
        let running = self.inner.running.lock().expect("lock");
        for flag in running.values() {
            flag.cancel();
        }
        running.len()
    }

    pub fn list_conversations(&self) -> Result<Vec<ConversationSummary>, AppError> {
        Ok(self.inner.store.list_conversations()?)
    }

    pub fn conversation(&self, id: i64) -> Result<ConversationDetail, AppError> {
        Ok(journal::conversation(&self.inner.store, id)?)
    }

    pub fn list_runs(&self, limit: u32) -> Result<Vec<RunSummary>, AppError> {
        Ok(journal::list(&self.inner.store, limit)?)
    }

    pub fn run(&self, id: i64) -> Result<RunDetail, AppError> {
        Ok(journal::load(&self.inner.store, id)?)
    }

    /// The manifest's models and the state of each file (no hashing).
    pub fn models_list(&self) -> Vec<models::ModelListing> {
        models::listing(&self.inner.models, &self.inner.manifest)
    }

    /// Re-hashes every model file; the first bad one is the error.
    pub fn models_verify(&self, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Vec<PathBuf>, AppError> {
        let mut good = Vec::new();
        for m in &self.inner.manifest.models {
            for f in &m.files {
                good.push(self.inner.models.verify(m, f, true, &mut |d, t| on_progress(&f.name, d, t))?);
            }
        }
        Ok(good)
    }

    /// Downloads and verifies the models that are missing or damaged.
    pub fn models_fetch(
        &self,
        on_progress: &mut dyn FnMut(&models::fetch::FetchProgress),
    ) -> Result<Vec<models::fetch::FetchOutcome>, AppError> {
        Ok(models::fetch::fetch_all(&self.inner.models, &self.inner.manifest, on_progress)?)
    }

    /// The path of the embedded chat model's GGUF file, verified against the manifest.
    pub fn chat_model_path(&self) -> Result<PathBuf, AppError> {
        let (entry, file) = self.chat_model()?;
        Ok(self.inner.models.verify(entry, file, false, &mut |_, _| {})?)
    }

    /// The loaded embedded model (loading it if needed), for benchmarks and reference checks.
    pub fn local_model(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<Arc<LocalModel>, AppError> {
        self.local_backend(on_progress)
    }
}

/// Refuses, before anything is stored, settings that cannot work and a message that cannot fit the model's
/// window even as the conversation's only message.
fn check_fits(backend: &dyn Backend, text: &str, settings: &GenerationSettings) -> Result<(), AppError> {
    let window = backend.info().context_window;
    settings.validate(window).map_err(|e| {
        AppError::new(ErrorKind::InvalidInput, e, Some("change that setting and try again".into()))
    })?;
    let alone = [
        ChatMessage::new(llm::Role::System, orchestration::context::SYSTEM_PROMPT),
        ChatMessage::new(llm::Role::User, text),
    ];
    let tokens = backend.count_prompt_tokens(&alone)?;
    if tokens + settings.max_tokens > window {
        return Err(AppError::new(
            ErrorKind::InvalidInput,
            format!(
                "the message takes {tokens} tokens; with room for a {}-token answer it does not fit the model's \
                 {window}-token window",
                settings.max_tokens
            ),
            Some(interface::InputError::TooLong { bytes: 0, max: 0 }.hint().into()),
        ));
    }
    Ok(())
}

fn status(state: ModelState, model_id: &str, file: &str, message: &str, hint: Option<String>) -> ModelStatus {
    ModelStatus { state, model_id: model_id.into(), file: file.into(), message: message.into(), hint }
}

/// Creates the data dir if needed and proves it can be written, so a read-only or full one is one clear error
/// up front rather than a failure half way through a turn.
fn ensure_writable_dir(dir: &Path) -> Result<(), AppError> {
    const ENOSPC: i32 = 28;
    let fail = |e: std::io::Error| {
        if e.raw_os_error() == Some(ENOSPC) {
            AppError::new(
                ErrorKind::DiskFull,
                format!("the disk holding the data dir {} is full", dir.display()),
                Some("free some disk space and try again".into()),
            )
        } else {
            AppError::new(
                ErrorKind::DataDirReadOnly,
                format!("the data dir {} is not writable: {e}", dir.display()),
                Some("make it writable, or point KEEL_HOME at a writable folder".into()),
            )
        }
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".keel-write-probe");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl From<interface::InputError> for AppError {
    fn from(e: interface::InputError) -> Self {
        AppError::new(ErrorKind::InvalidInput, e.to_string(), Some(e.hint().into()))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        let (kind, hint) = match &e {
            StoreError::ReadOnly { .. } => {
                (ErrorKind::DataDirReadOnly, "make the data dir writable, or point KEEL_HOME at a writable folder")
            }
            StoreError::DiskFull { .. } => (ErrorKind::DiskFull, "free some disk space and try again"),
            StoreError::NotFound { what, id } => return AppError::not_found(what, *id),
            StoreError::Corrupt { .. } => {
                (ErrorKind::Store, "move the damaged keel.sqlite3 aside (keep it for recovery) and start Keel again")
            }
            StoreError::TooNew { .. } => (ErrorKind::Store, "use the newer Keel that wrote this data dir"),
            StoreError::Decode(_) | StoreError::Sqlite { .. } => (ErrorKind::Store, "report this with the message above"),
        };
        AppError::new(kind, e.to_string(), Some(hint.into()))
    }
}

impl From<ModelError> for AppError {
    fn from(e: ModelError) -> Self {
        let kind = match &e {
            ModelError::Missing { .. } => ErrorKind::ModelMissing,
            ModelError::Io { source, .. } if source.raw_os_error() == Some(28) => ErrorKind::DiskFull,
            ModelError::Io { source, .. } if models::is_unwritable(source) => ErrorKind::DataDirReadOnly,
            ModelError::WrongSize { .. } | ModelError::WrongChecksum { .. } | ModelError::Io { .. } => {
                ErrorKind::ModelCorrupt
            }
            ModelError::Fetch(_)
            | ModelError::WheelChecksum { .. }
            | ModelError::WheelContents { .. }
            | ModelError::ManifestInvalid(_) => ErrorKind::ModelFetch,
        };
        AppError::new(kind, e.to_string(), Some(e.hint()))
    }
}

impl From<models::manager::ManagerError> for AppError {
    fn from(e: models::manager::ManagerError) -> Self {
        use models::manager::ManagerError as E;
        let kind = match &e {
            E::Io { source, .. } if source.raw_os_error() == Some(28) => ErrorKind::DiskFull,
            E::Io { source, .. } if models::is_unwritable(source) => ErrorKind::DataDirReadOnly,
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            E::Io { .. } => ErrorKind::Internal,
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Damaged { .. } | E::Truncated { .. } => ErrorKind::ModelCorrupt,
            E::NotGguf { .. }
            | E::Unsupported { .. }
            | E::InvalidName { .. }
            | E::Exists { .. }
            | E::BuiltIn { .. }
            | E::InvalidUrl { .. }
            | E::InvalidChecksum { .. } => ErrorKind::InvalidInput,
            E::Http { .. } | E::Interrupted { .. } | E::Cancelled { .. } | E::ChecksumMismatch { .. } | E::Rejected { .. } => {
                ErrorKind::ModelFetch
            }
        };
        AppError::new(kind, e.to_string(), Some(e.hint()))
    }
}

impl From<LoadError> for AppError {
    fn from(e: LoadError) -> Self {
        AppError::new(ErrorKind::ModelCorrupt, e.to_string(), Some(models::FETCH_HINT.into()))
    }
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        AppError::new(ErrorKind::Backend, e.to_string(), e.hint())
    }
}
