//! The data dir and the embedded model's state, for the UI's banner and `keel status`; cheap (no hashing, no
//! loading).


use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::App;
use crate::error::{AppError, ErrorKind};
use crate::models::{self, FileState};

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

impl App {
    /// The data dir and the embedded model's state; cheap (no hashing, no loading).
    pub fn status(&self) -> AppStatus {
        AppStatus { data_dir: self.inner.home.display().to_string(), model: self.model_status() }
    }

    pub(super) fn chat_model(&self) -> Result<(&models::ModelEntry, &models::ModelFile), AppError> {
        let entry = self.inner.manifest.by_role("chat").ok_or_else(|| {
            AppError::new(ErrorKind::ModelMissing, "the model manifest names no chat model", None)
        })?;
        let file = entry.files.iter().find(|f| f.name.ends_with(".gguf")).ok_or_else(|| {
            AppError::new(ErrorKind::ModelMissing, format!("model {} has no GGUF file", entry.id), None)
        })?;
        Ok((entry, file))
    }

    pub fn model_status(&self) -> ModelStatus {
        if let Some(b) = &self.inner.local.fixed {
            let info = b.info();
            return status(ModelState::Ready, &info.name, &info.model, "ready", None);
        }
        if let Ok(Some(name)) = self.chosen_model() {
            let path = models::library::user_dir(&self.inner.models).join(&name);
            let state = if self.inner.local.model.get().is_some() {
                (ModelState::Ready, "ready".to_string(), None)
            } else if self.inner.local.model.is_building() {
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
        if self.inner.local.model.get().is_some() {
            return status(ModelState::Ready, &entry.id, &file.name, "ready", None);
        }
        if self.inner.local.model.is_building() {
            return status(ModelState::Loading, &entry.id, &file.name, "loading", None);
        }
        let (state, message) = match self.inner.models.state(entry, file) {
            FileState::Missing => (ModelState::Missing, format!("model file {} is missing (expected at {})", file.name, path.display())),
            FileState::WrongSize => (ModelState::Corrupt, format!("model file {} at {} is truncated or damaged", file.name, path.display())),
            FileState::Verified | FileState::Unverified => return status(ModelState::NotLoaded, &entry.id, &file.name, "not loaded yet", None),
        };
        status(state, &entry.id, &file.name, &message, Some(models::FETCH_HINT.into()))
    }
}

fn status(state: ModelState, model_id: &str, file: &str, message: &str, hint: Option<String>) -> ModelStatus {
    ModelStatus { state, model_id: model_id.into(), file: file.into(), message: message.into(), hint }
}

