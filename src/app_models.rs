//! `App`'s model manager: the GGUF files Keel can run (the pinned built-in one and those the user added or
//! downloaded), with their metadata and checksum state. The work is in `models::manager`; this adds the data
//! dir, progress and cancellation.

use std::path::Path;

use crate::llm::CancelFlag;
use crate::models::manager::{self, DownloadProgress, ModelInfo, ModelList};
use crate::{App, AppError, LoadProgress};

impl App {
    pub fn list_models(&self) -> ModelList {
        manager::list(&self.inner.models, &self.inner.manifest)
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
        let cancel = CancelFlag::default();
        *self.inner.download_cancel.lock().expect("lock") = cancel.clone();
        Ok(manager::download(&self.inner.models, url, sha256, name, &cancel, on_progress)?)
    }

    pub fn cancel_download(&self) {
        self.inner.download_cancel.lock().expect("lock").cancel();
    }

    /// Deletes a model the user added (built-in ones are managed by `keel models fetch`).
    pub fn delete_model(&self, name: &str) -> Result<(), AppError> {
        Ok(manager::delete(&self.inner.models, &self.inner.manifest, name)?)
    }
}
