//! The embedded chat model: loaded once per `App` (on first use, or on request with progress), after its file
//! is checked: the manifest's sha256 for the built-in model, the sha256 recorded when it was added for one the
//! user chose with `keel models use`.

use std::path::PathBuf;
use std::sync::Arc;

use super::status::ModelStatus;
use super::status::LoadProgress;
use super::{App, Slot};
use crate::error::{AppError, ErrorKind};
use crate::llm::engine::saved::SavedStates;
use crate::llm::local::LocalModel;
use crate::llm::Backend;
use crate::models::library::{self, ChecksumState};

/// The `local` backend's slot: a backend fixed at open time (the scripted one in tests), or the embedded model
/// loaded on first use.
pub(super) struct LocalSlot {
    pub(super) fixed: Option<Arc<dyn Backend>>,
    pub(super) model: Slot<LocalModel>,
}

impl LocalSlot {
    pub(super) fn new(fixed: Option<Arc<dyn Backend>>) -> LocalSlot {
        LocalSlot { fixed, model: Slot::new() }
    }
}

impl App {
    /// Loads the embedded chat model (checking its sha256 first), reporting progress; a no-op once loaded.
    pub fn load_model(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelStatus, AppError> {
        self.local_model(on_progress)?;
        Ok(self.model_status())
    }

    /// The loaded embedded model (loading it if needed), for the `local` backend, benchmarks and reference
    /// checks.
    pub fn local_model(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<Arc<LocalModel>, AppError> {
        self.inner.local.model.get_or_init(|| {
            let chosen = self.chosen_model()?;
            let (entry, file) = self.chat_model()?;
            let mut report = |stage: String, done, total| on_progress(LoadProgress { stage, done, total });
            let (path, file_name, sha256) = match &chosen {
                // A model the user chose: its header and its recorded sha256 (stamped, so hashed only when changed).
                Some(name) => {
                    let verifying = format!("verifying {name}");
                    let info = library::verify(&self.inner.models, name, &mut |d, t| report(verifying.clone(), d, t))?;
                    if info.checksum == ChecksumState::Mismatch {
                        return Err(AppError::new(
                            ErrorKind::ModelCorrupt,
                            format!("model file {name} no longer matches the sha256 recorded when it was added"),
                            Some(format!("delete it (`keel models rm {name}`) and add it again, or `keel models use {}`", file.name)),
                        ));
                    }
                    (PathBuf::from(info.path), name.clone(), info.sha256.clone())
                }
                None => {
                    let verifying = format!("verifying {}", file.name);
                    (self.inner.models.verify(entry, file, false, &mut |d, t| report(verifying.clone(), d, t))?, file.name.clone(), Some(file.sha256.clone()))
                }
            };
            let loading = format!("loading {file_name}");
            let model = LocalModel::load(&path, &mut |d, t| report(loading.clone(), d, t))?;
            // The verified sha256 names the model the saved prefix states were computed by.
            if let Some(sha256) = sha256 {
                model.keep_prefixes(SavedStates::beside(&path, &sha256));
            }
            crate::shared::io::release_freed_memory();
            report("ready".into(), 1, 1);
            Ok(model)
        })
    }

    /// The path of the embedded chat model's GGUF file, verified against the manifest.
    pub fn chat_model_path(&self) -> Result<PathBuf, AppError> {
        let (entry, file) = self.chat_model()?;
        Ok(self.inner.models.verify(entry, file, false, &mut |_, _| {})?)
    }
}
