//! `App`: the one handle the front ends (the `keel` CLI and the desktop shell) hold, and only wiring.
//!
//! `App` opens a data dir (`KEEL_HOME`, or the platform data dir), applies the SQLite migrations, has
//! orchestration close the runs a stopped process left in flight, and hands each request to the layer that
//! does the work. Each concern is one file here, with its own slot in [`Inner`]:
//!
//! | file | concern | slot |
//! |---|---|---|
//! | `status.rs` | the data dir and the embedded model's state | – |
//! | `local_model.rs` | loading the embedded model once, with progress | `local` |
//! | `backends.rs` | remote profiles, the default, fallback chains, keys | `remotes` |
//! | `tools.rs` | the toolbox, MCP servers, one-off tool calls | `tools` |
//! | `runs.rs` | turns, answering, resuming, replaying and forking runs | `runs` |
//! | `memory.rs` | the memory layer, opened on first use | `memory`, `imports` |
//! | `models.rs` | the model files: built-in, added, downloaded | `downloads` |
//! | `guard.rs` | the front door's screen: injection scoring with the embedder | `guard` |
//! | `evals.rs` | the evaluations and benchmarks the CLI runs | – |
//! | `errors.rs` | each layer's error as an [`AppError`] | – |
//!
//! Every slot that is built on first use is a [`Slot`] (one `get_or_init`); every lock in `App` is taken
//! through [`lock`], whose one policy is to carry on after a panic elsewhere (each slot's value is replaced
//! whole, so a panic never leaves one half-written).

pub mod backends;
mod errors;
pub mod eval_tasks;
pub mod evals;
pub mod guard;
mod local_model;
pub mod memory;
mod models;
pub mod runs;
pub mod status;
mod tools;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{AppError, ErrorKind};
use crate::llm::Backend;
use crate::models::{Manifest, ModelDir};
use crate::store::Store;

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
            _ => directories::ProjectDirs::from("", "", "keel").map(|d| d.data_dir().to_owned()).ok_or_else(|| {
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
    models: ModelDir,
    manifest: Manifest,
    local: local_model::LocalSlot,
    remotes: backends::RemoteCache,
    tools: tools::ToolSlot,
    runs: runs::RunRegistry,
    memory: Slot<crate::memory::Memory>,
    imports: memory::ImportSlot,
    downloads: models::DownloadSlot,
    guard: Slot<guard::GuardModel>,
    /// `keel.lock` in the data dir, held shared for the life of the `App`: while any Keel process is alive,
    /// no other can take it exclusively, so none mistakes a live run for an interrupted one.
    _liveness: std::fs::File,
}

impl App {
    /// Reads one line of a front end's input into `buf`, holding at most `max` bytes of it: a longer line is
    /// skipped to its end as it is read ([`crate::shared::io::read_line_bounded`]). `None` at the end.
    pub fn read_input_line(
        input: &mut impl std::io::BufRead,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> std::io::Result<Option<crate::shared::io::BoundedLine>> {
        crate::shared::io::read_line_bounded(input, buf, max)
    }

    /// A size for people, as Keel's messages give it ("16.8 MB").
    pub fn size_text(bytes: u64) -> String {
        crate::shared::io::size(bytes)
    }

    /// Opens the data dir named by the environment. For tests and evaluations only, `KEEL_SCRIPTED_BACKEND`
    /// names a script file (see `llm::scripted::ScriptFile`) that replaces the embedded model.
    pub fn open_default() -> Result<App, AppError> {
        let options = OpenOptions::from_env()?;
        match std::env::var_os("KEEL_SCRIPTED_BACKEND") {
            Some(path) if !path.is_empty() => {
                let backend = crate::llm::scripted::ScriptedBackend::from_file(Path::new(&path))
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
                models: ModelDir::new(options.models_dir),
                manifest,
                local: local_model::LocalSlot::new(fixed_backend),
                remotes: backends::RemoteCache::default(),
                tools: tools::ToolSlot::default(),
                runs: runs::RunRegistry::default(),
                memory: Slot::new(),
                imports: memory::ImportSlot::default(),
                downloads: models::DownloadSlot::default(),
                guard: Slot::new(),
                _liveness: liveness,
            }),
        };
        if alone {
            crate::orchestration::lifecycle::close_interrupted_runs(&app.inner.store)?;
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
}

/// Takes a lock of `App`'s. The one policy: a panic in another holder does not make the slot unusable (each
/// slot's value is replaced whole, never left half-written), so the poison is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A value built on first use and kept: one `get_or_init`, which builds it once however many threads ask.
pub(crate) struct Slot<T> {
    value: Mutex<Option<Arc<T>>>,
    /// Held while the value is being built (and while it is replaced), so it is built once.
    building: Mutex<()>,
    busy: AtomicBool,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Slot<T> {
        Slot { value: Mutex::new(None), building: Mutex::new(()), busy: AtomicBool::new(false) }
    }

    /// The value, if it has been built.
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        lock(&self.value).clone()
    }

    /// The value, built by `init` if it is not there yet; a failed `init` leaves the slot empty.
    pub(crate) fn get_or_init<E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let _one = lock(&self.building);
        if let Some(v) = self.get() {
            return Ok(v);
        }
        // Cleared on the way out, a panicking `init` included, so the slot never reads as building forever.
        struct Busy<'f>(&'f AtomicBool);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        self.busy.store(true, Ordering::SeqCst);
        let built = {
            let _busy = Busy(&self.busy);
            init()
        };
        let v = Arc::new(built?);
        *lock(&self.value) = Some(v.clone());
        Ok(v)
    }

    /// True while `get_or_init` is building the value.
    pub(crate) fn is_building(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Runs `change` with no build under way, then empties the slot: the next `get_or_init` builds anew.
    pub(crate) fn reset_after<R>(&self, change: impl FnOnce() -> R) -> R {
        let _one = lock(&self.building);
        let result = change();
        *lock(&self.value) = None;
        result
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Slot<T> {
        Slot::new()
    }
}

/// Creates the data dir if needed and proves it can be written, so a read-only or full one is one clear error
/// up front rather than a failure half way through a turn.
fn ensure_writable_dir(dir: &Path) -> Result<(), AppError> {
    let fail = |e: std::io::Error| {
        if crate::shared::io::is_disk_full(&e) {
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
