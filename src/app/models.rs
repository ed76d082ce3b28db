//! `App`'s model manager: the GGUF files Keel can run (the pinned built-in one and those the user added or
//! downloaded), with their metadata and checksum state. The work is in `models::library`; this adds the data
//! dir, progress and cancellation.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::status::{LoadProgress, ModelStatus};
use super::{lock, App};
use crate::error::{AppError, ErrorKind};
use crate::llm::CancelFlag;
use crate::models::library::{self, ChecksumState, DownloadProgress, ModelInfo, ModelList};
use crate::models::{self, fetch};

/// The setting naming the user model the `local` backend runs (absent: the manifest's chat model).
pub(crate) const LOCAL_MODEL_SETTING: &str = "local_model";

/// The download in progress: one at a time, and the flag that stops it.
#[derive(Default)]
pub(super) struct DownloadSlot {
    cancel: Mutex<CancelFlag>,
    one: Mutex<()>,
}

impl App {
    /// The manifest's models and the state of each file (no hashing).
    pub fn list_builtin_models(&self) -> Vec<models::ModelListing> {
        models::listing(&self.inner.models, &self.inner.manifest)
    }

    /// Re-hashes every built-in model file; the first bad one is the error.
    pub fn verify_models(&self, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Vec<PathBuf>, AppError> {
        let mut good = Vec::new();
        for m in &self.inner.manifest.models {
            for f in &m.files {
                good.push(self.inner.models.verify(m, f, true, &mut |d, t| on_progress(&f.name, d, t))?);
            }
        }
        Ok(good)
    }

    /// Downloads and verifies the built-in models that are missing or damaged.
    pub fn fetch_models(&self, on_progress: &mut dyn FnMut(&fetch::FetchProgress)) -> Result<Vec<fetch::FetchOutcome>, AppError> {
        Ok(fetch::fetch_all(&self.inner.models, &self.inner.manifest, on_progress)?)
    }

    /// Every model file Keel can run (built-in and the user's), with the one `local` runs marked.
    pub fn list_models(&self) -> ModelList {
        let mut list = library::list(&self.inner.models, &self.inner.manifest);
        let chosen = self.chosen_model().ok().flatten();
        for m in &mut list.models {
            m.in_use = match &chosen {
                Some(name) => !m.builtin && m.name == *name,
                None => m.builtin,
            };
        }
        list
    }

    /// The user model the `local` backend runs, if one was chosen over the built-in one.
    pub(crate) fn chosen_model(&self) -> Result<Option<String>, AppError> {
        Ok(self.inner.store.setting(LOCAL_MODEL_SETTING)?)
    }

    /// Makes `local` run this model: one the user added or downloaded, or the built-in one by its file name. It
    /// is checked (GGUF header, checksum) now, and loaded on the next turn that needs it.
    pub fn use_model(&self, name: &str) -> Result<ModelStatus, AppError> {
        let list = library::list(&self.inner.models, &self.inner.manifest);
        let Some(model) = list.models.iter().find(|m| m.name == name) else {
            return Err(AppError::new(
                ErrorKind::NotFound,
                format!("there is no model {name:?}"),
                Some("`keel models installed` lists them; `keel models add PATH` adds one".into()),
            ));
        };
        if !model.builtin {
            let checked = library::verify(&self.inner.models, name, &mut |_, _| {})?;
            if checked.checksum == ChecksumState::Mismatch {
                return Err(AppError::new(
                    ErrorKind::ModelCorrupt,
                    format!("model file {name} no longer matches the sha256 recorded when it was added"),
                    Some(format!("delete it (`keel models rm {name}`) and add or download it again")),
                ));
            }
        }
        // No load of the previous choice is under way while it changes, and the next turn loads this one.
        self.inner.local.model.reset_after(|| self.inner.store.set_setting(LOCAL_MODEL_SETTING, (!model.builtin).then_some(name)))?;
        Ok(self.model_status())
    }

    /// Copies a GGUF file from disk into the models dir, after checking it is one Keel can run.
    pub fn add_model(&self, path: &Path, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelInfo, AppError> {
        let stage = format!("copying {}", path.display());
        Ok(library::add(&self.inner.models, path, &mut |done, total| on_progress(LoadProgress { stage: stage.clone(), done, total }))?)
    }

    /// Downloads a GGUF file (resuming a partial one), checks its sha256 when given and that it is a GGUF Keel can
    /// run. `cancel_download` stops it, keeping the partial file for the next try.
    pub fn download_model(
        &self,
        url: &str,
        sha256: Option<&str>,
        name: Option<&str>,
        on_progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<ModelInfo, AppError> {
        // One download at a time: two into the same `.partial` file would corrupt it, and Cancel names no download.
        let _one = self.inner.downloads.one.try_lock().map_err(|_| {
            AppError::new(
                ErrorKind::InvalidInput,
                "another model download is running",
                Some("wait for it to finish, or cancel it and start this one again".into()),
            )
        })?;
        let cancel = CancelFlag::default();
        *lock(&self.inner.downloads.cancel) = cancel.clone();
        Ok(library::download(&self.inner.models, url, sha256, name, &cancel, on_progress)?)
    }

    pub fn cancel_download(&self) {
        lock(&self.inner.downloads.cancel).cancel();
    }

    /// Deletes a model the user added (built-in ones are managed by `keel models fetch`). The model `local`
    /// runs is refused: choose another first.
    pub fn delete_model(&self, name: &str) -> Result<(), AppError> {
        if self.chosen_model()?.as_deref() == Some(name) {
            return Err(AppError::new(
                ErrorKind::InvalidInput,
                format!("{name} is the model the local backend runs"),
                Some("choose another first (`keel models use NAME`)".into()),
            ));
        }
        Ok(library::delete(&self.inner.models, &self.inner.manifest, name)?)
    }
}
