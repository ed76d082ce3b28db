//! `App`'s model manager: the GGUF files Keel can run (the pinned built-in one and those the user added or
//! downloaded), with their metadata and checksum state. The work is in `models::manager`; this adds the data
//! dir, progress and cancellation.

use std::path::Path;

use crate::llm::CancelFlag;
use crate::models::manager::{self, DownloadProgress, ModelInfo, ModelList};
use crate::{App, AppError, ErrorKind, LoadProgress, ModelStatus};

/// The setting naming the user model the `local` backend runs (absent: the manifest's chat model).
pub(crate) const LOCAL_MODEL_SETTING: &str = "local_model";

impl App {
    pub fn list_models(&self) -> ModelList {
        let mut list = manager::list(&self.inner.models, &self.inner.manifest);
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
        let list = manager::list(&self.inner.models, &self.inner.manifest);
        let Some(model) = list.models.iter().find(|m| m.name == name) else {
            return Err(AppError::new(
                ErrorKind::NotFound,
                format!("there is no model {name:?}"),
                Some("`keel models installed` lists them; `keel models add PATH` adds one".into()),
            ));
        };
        if !model.builtin {
            let checked = manager::verify(&self.inner.models, name, &mut |_, _| {})?;
            if checked.checksum == crate::models::manager::ChecksumState::Mismatch {
                return Err(AppError::new(
                    ErrorKind::ModelCorrupt,
                    format!("model file {name} no longer matches the sha256 recorded when it was added"),
                    Some(format!("delete it (`keel models rm {name}`) and add or download it again")),
                ));
            }
        }
        // Held so that no load of the previous choice is under way while it changes.
        let _load = self.inner.load_lock.lock().expect("load lock poisoned");
        self.inner.store.set_setting(LOCAL_MODEL_SETTING, (!model.builtin).then_some(name))?;
        *self.inner.local.lock().expect("lock") = None;
        drop(_load);
        Ok(self.model_status())
    }

    /// Copies a GGUF file from disk into the models dir, after checking it is one Keel can run.
    pub fn add_model(&self, path: &Path, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelInfo, AppError> {
        let stage = format!("copying {}", path.display());
        Ok(manager::add(&self.inner.models, path, &mut |done, total| on_progress(LoadProgress { stage: stage.clone(), done, total }))?)
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
        let _one = self.inner.download_lock.try_lock().map_err(|_| {
            AppError::new(
                crate::ErrorKind::InvalidInput,
                "another model download is running",
                Some("wait for it to finish, or cancel it and start this one again".into()),
            )
        })?;
        let cancel = CancelFlag::default();
        *self.inner.download_cancel.lock().expect("lock") = cancel.clone();
        Ok(manager::download(&self.inner.models, url, sha256, name, &cancel, on_progress)?)
    }

    pub fn cancel_download(&self) {
        self.inner.download_cancel.lock().expect("lock").cancel();
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
        Ok(manager::delete(&self.inner.models, &self.inner.manifest, name)?)
    }
}
