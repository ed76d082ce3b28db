//! `App`'s backends: the embedded model (`local`), remote profiles for OpenAI-compatible servers (stored in
//! SQLite without their keys, which live in the OS keyring), the default backend, and fallback chains.
//!
//! A run names a backend (or gets the default). A profile with a fallback list becomes a
//! [`FallbackChain`]: the profile first, then each named backend (their own fallbacks are not followed). Remote
//! backends are built once per profile and key, and rebuilt when either changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::status::ModelState;
use super::{lock, App};
use crate::error::{AppError, ErrorKind};
use crate::llm::chain::FallbackChain;
use crate::llm::local::LocalModel;
use crate::llm::remote::{ApiKey, RemoteBackend, RemoteConfig};
use crate::llm::{Backend, BackendError, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion};
use crate::secrets::{self, KeyringError};
use crate::store::BackendRow;

/// The embedded model's backend name.
pub const LOCAL: &str = "local";
const DEFAULT_SETTING: &str = "default_backend";
const DEFAULT_CONTEXT_WINDOW: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Local,
    Remote,
    /// The deterministic test backend (`KEEL_SCRIPTED_BACKEND`) standing in for the embedded model.
    Scripted,
}

/// Whether a backend's key is in the keyring. The key itself never leaves it except into a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Set,
    NotSet,
    /// The keyring could not be asked (see the view's `key_message`).
    Unavailable,
    NotNeeded,
}

/// What the user edits: a remote OpenAI-compatible profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackendProfile {
    pub name: String,
    /// The API root, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    /// Connect and read timeout.
    pub timeout_secs: u32,
    /// Retries of a request that failed in a retryable way (connection, 429, 5xx).
    pub max_retries: u32,
    /// Backends tried in order when this one fails.
    pub fallback: Vec<String>,
    /// The server model's window in tokens (the API does not say); 4096 when absent.
    #[serde(default)]
    #[ts(optional)]
    pub context_window: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackendView {
    pub name: String,
    pub kind: BackendKind,
    pub base_url: Option<String>,
    pub model: String,
    pub key: KeyState,
    /// Why the key state is unavailable, and what to do.
    pub key_message: Option<String>,
    pub is_default: bool,
    pub timeout_secs: u32,
    pub max_retries: u32,
    pub fallback: Vec<String>,
    pub context_window: u32,
}

/// The result of `keel backends test`: can Keel reach the server, and does it have the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackendTest {
    pub name: String,
    pub ok: bool,
    #[ts(type = "number")]
    pub latency_ms: u64,
    pub models: Vec<String>,
    pub model_found: Option<bool>,
    pub message: String,
    pub hint: Option<String>,
}

/// Remote backends by profile name, with the profile and key fingerprint they were built from: rebuilt when
/// either changes.
#[derive(Default)]
pub(super) struct RemoteCache {
    built: Mutex<HashMap<String, (BackendRow, Option<String>, Arc<RemoteBackend>)>>,
}

fn invalid(message: String, hint: &str) -> AppError {
    AppError::new(ErrorKind::InvalidInput, message, Some(hint.into()))
}

fn unknown(name: &str) -> AppError {
    AppError::new(
        ErrorKind::NotFound,
        format!("there is no backend named {name:?}"),
        Some("`keel backends list` shows them; add one with `keel backends add NAME --base-url URL --model MODEL`".into()),
    )
}

/// Checks a profile as the user gave it; `existing` are the other backends' names it may fall back to.
fn validate(p: &BackendProfile, existing: &[String]) -> Result<BackendRow, AppError> {
    let name_ok = !p.name.is_empty() && p.name.len() <= 40 && p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(invalid(format!("backend name {:?} is not allowed", p.name), "use 1 to 40 letters, digits, - or _"));
    }
    if p.name == LOCAL {
        return Err(invalid("\"local\" is the embedded model's name".into(), "choose another name for the remote profile"));
    }
    let url = reqwest::Url::parse(p.base_url.trim())
        .map_err(|e| invalid(format!("base URL {:?} is not a URL ({e})", p.base_url), "give the API root, e.g. http://127.0.0.1:8080/v1"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!("base URL {:?} must be http:// or https:// with a host", p.base_url), "e.g. http://127.0.0.1:8080/v1"));
    }
    // A key written into the URL would end up in SQLite, logs and exports.
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "the base URL must not carry credentials, a query string or a fragment".into(),
            "give the bare API root and store the key with `keel keys set NAME` (it goes to the OS keyring)",
        ));
    }
    if p.model.trim().is_empty() {
        return Err(invalid("the model name is empty".into(), "`keel backends test NAME` lists the server's models"));
    }
    if !(1..=600).contains(&p.timeout_secs) {
        return Err(invalid(format!("timeout {} s is out of range", p.timeout_secs), "use 1 to 600 seconds"));
    }
    if p.max_retries > 10 {
        return Err(invalid(format!("{} retries is too many", p.max_retries), "use 0 to 10"));
    }
    let window = p.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW);
    if !(256..=1_048_576).contains(&window) {
        return Err(invalid(format!("context window {window} is out of range"), "use 256 to 1048576 tokens"));
    }
    let mut fallback = Vec::new();
    for f in &p.fallback {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        if f == p.name {
            return Err(invalid(format!("backend {} cannot fall back to itself", p.name), "name other backends, e.g. local"));
        }
        if f != LOCAL && !existing.iter().any(|e| e == f) {
            return Err(unknown(f));
        }
        if !fallback.iter().any(|x: &String| x == f) {
            fallback.push(f.to_string());
        }
    }
    Ok(BackendRow {
        name: p.name.clone(),
        base_url: p.base_url.trim().trim_end_matches('/').to_string(),
        model: p.model.trim().to_string(),
        timeout_secs: p.timeout_secs,
        max_retries: p.max_retries,
        context_window: window,
        fallback,
    })
}

fn key_state(name: &str) -> (KeyState, Option<String>) {
    match secrets::key(name) {
        Ok(Some(_)) => (KeyState::Set, None),
        Ok(None) => (KeyState::NotSet, None),
        Err(e) => (KeyState::Unavailable, Some(format!("{e}; {}", e.hint()))),
    }
}

impl App {
    /// The backend runs use when they name none: the one set with `set_default_backend`, else `local`.
    pub fn default_backend(&self) -> Result<String, AppError> {
        Ok(self.inner.store.setting(DEFAULT_SETTING)?.unwrap_or_else(|| LOCAL.into()))
    }

    pub fn list_backends(&self) -> Result<Vec<BackendView>, AppError> {
        let default = self.default_backend()?;
        let (kind, model, window) = match &self.inner.local.fixed {
            Some(b) => (BackendKind::Scripted, b.info().model, b.info().context_window),
            None => {
                let (_, file) = self.chat_model()?;
                (BackendKind::Local, self.chosen_model()?.unwrap_or_else(|| file.name.clone()), 8192)
            }
        };
        let mut views = vec![BackendView {
            name: LOCAL.into(),
            kind,
            base_url: None,
            model,
            key: KeyState::NotNeeded,
            key_message: None,
            is_default: default == LOCAL,
            timeout_secs: 0,
            max_retries: 0,
            fallback: Vec::new(),
            context_window: window,
        }];
        for row in self.inner.store.backends()? {
            views.push(self.view(row, &default));
        }
        Ok(views)
    }

    fn view(&self, row: BackendRow, default: &str) -> BackendView {
        let (key, key_message) = key_state(&row.name);
        BackendView {
            is_default: row.name == default,
            name: row.name,
            kind: BackendKind::Remote,
            base_url: Some(row.base_url),
            model: row.model,
            key,
            key_message,
            timeout_secs: row.timeout_secs,
            max_retries: row.max_retries,
            fallback: row.fallback,
            context_window: row.context_window,
        }
    }

    fn backend_view(&self, name: &str) -> Result<BackendView, AppError> {
        self.list_backends()?.into_iter().find(|v| v.name == name).ok_or_else(|| unknown(name))
    }

    /// Adds a remote profile, or replaces the one of the same name.
    pub fn save_backend(&self, profile: &BackendProfile) -> Result<BackendView, AppError> {
        let others: Vec<String> = self.inner.store.backends()?.into_iter().map(|b| b.name).filter(|n| *n != profile.name).collect();
        let row = validate(profile, &others)?;
        self.inner.store.save_backend(&row)?;
        self.backend_view(&row.name)
    }

    /// Removes a remote profile and its key. Refused while another profile falls back to it.
    pub fn remove_backend(&self, name: &str) -> Result<(), AppError> {
        if name == LOCAL {
            return Err(invalid("the embedded model (local) cannot be removed".into(), "remove remote profiles only"));
        }
        let rows = self.inner.store.backends()?;
        if !rows.iter().any(|r| r.name == name) {
            return Err(unknown(name));
        }
        if let Some(user) = rows.iter().find(|r| r.fallback.iter().any(|f| f == name)) {
            return Err(invalid(
                format!("backend {} falls back to {name}", user.name),
                &format!("edit {}'s fallback list first (`keel backends add {} … --fallback …`)", user.name, user.name),
            ));
        }
        // The key goes first: a profile removed with its key left behind would leave a secret nobody sees.
        match secrets::delete_key(name) {
            Ok(_) => {}
            Err(KeyringError::Unavailable { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.remove_backend(name)?;
        if self.default_backend()? == name {
            self.inner.store.set_setting(DEFAULT_SETTING, None)?;
        }
        Ok(())
    }

    pub fn set_default_backend(&self, name: &str) -> Result<(), AppError> {
        if name != LOCAL && self.inner.store.backend(name)?.is_none() {
            return Err(unknown(name));
        }
        self.inner.store.set_setting(DEFAULT_SETTING, (name != LOCAL).then_some(name))?;
        Ok(())
    }

    /// Stores the profile's API key in the OS keyring (replacing any), never anywhere else.
    pub fn set_key(&self, name: &str, key: &str) -> Result<BackendView, AppError> {
        if self.inner.store.backend(name)?.is_none() {
            return Err(unknown(name));
        }
        let key = key.trim();
        // It must be sendable as a header: a key that is not would silently go unsent.
        let header_ok = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_ok();
        if key.is_empty() || key.len() > 8192 || key.chars().any(char::is_control) || !header_ok {
            return Err(invalid("the key is empty, too long or has control characters".into(), "paste the key alone, on one line"));
        }
        secrets::set_key(name, &ApiKey::new(key))?;
        self.backend_view(name)
    }

    pub fn remove_key(&self, name: &str) -> Result<BackendView, AppError> {
        if self.inner.store.backend(name)?.is_none() {
            return Err(unknown(name));
        }
        secrets::delete_key(name)?;
        self.backend_view(name)
    }

    /// Connects to the backend: lists the server's models and checks the profile's model is among them.
    pub fn test_backend(&self, name: &str) -> Result<BackendTest, AppError> {
        let started = Instant::now();
        if name == LOCAL {
            let status = self.model_status();
            let ok = !matches!(status.state, ModelState::Missing | ModelState::Corrupt | ModelState::Error);
            return Ok(BackendTest {
                name: name.into(),
                ok,
                latency_ms: started.elapsed().as_millis() as u64,
                models: vec![status.file.clone()],
                model_found: Some(ok),
                message: format!("{}: {}", status.file, status.message),
                hint: status.hint,
            });
        }
        let row = self.inner.store.backend(name)?.ok_or_else(|| unknown(name))?;
        let remote = self.remote(&row)?;
        let listed = remote.list_models();
        let latency_ms = started.elapsed().as_millis() as u64;
        Ok(match listed {
            Ok(models) => {
                let found = models.iter().any(|m| *m == row.model);
                let message = if found {
                    format!("{} answered in {latency_ms} ms and has model {}", row.base_url, row.model)
                } else {
                    format!("{} answered in {latency_ms} ms but has no model {:?}; it has: {}", row.base_url, row.model, models.join(", "))
                };
                let hint = (!found).then(|| format!("set one of those with `keel backends add {name} --base-url {} --model MODEL`", row.base_url));
                BackendTest { name: name.into(), ok: found, latency_ms, models, model_found: Some(found), message, hint }
            }
            Err(e) => BackendTest { name: name.into(), ok: false, latency_ms, models: Vec::new(), model_found: None, hint: e.hint(), message: e.to_string() },
        })
    }

    /// Whether a run on this backend (`None`: the default) may use the embedded model.
    pub fn needs_local_model(&self, name: Option<&str>) -> Result<bool, AppError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => self.default_backend()?,
        };
        if name == LOCAL {
            return Ok(true);
        }
        Ok(self.inner.store.backend(&name)?.is_some_and(|r| r.fallback.iter().any(|f| f == LOCAL)))
    }

    /// The backend a run uses: the named one (`None`: the default), as a fallback chain when it has fallbacks.
    pub(super) fn backend_named(&self, name: Option<&str>) -> Result<Arc<dyn Backend>, AppError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => self.default_backend()?,
        };
        if name == LOCAL || self.inner.local.fixed.as_ref().is_some_and(|b| b.info().name == name) {
            return self.local_or_fixed();
        }
        let row = match self.inner.store.backend(&name)? {
            Some(r) => r,
            // A default that was removed by another process: the embedded model.
            None if self.inner.store.setting(DEFAULT_SETTING)?.as_deref() == Some(name.as_str()) => return self.local_or_fixed(),
            None => return Err(unknown(&name)),
        };
        let first: Arc<dyn Backend> = self.remote(&row)?;
        if row.fallback.is_empty() {
            return Ok(first);
        }
        let mut members = vec![first];
        for f in &row.fallback {
            if f == LOCAL {
                members.push(self.lazy_local());
            } else if let Some(r) = self.inner.store.backend(f)? {
                members.push(self.remote(&r)?);
            }
        }
        Ok(Arc::new(FallbackChain::new(members)))
    }

    /// The backend a recorded run was started on (the first member of its chain), for resuming it; the default
    /// backend when that profile is gone or the log names none.
    pub(super) fn backend_of(&self, started_on: Option<&str>) -> Result<Arc<dyn Backend>, AppError> {
        match self.backend_named(started_on) {
            Ok(b) => Ok(b),
            Err(e) if e.kind == ErrorKind::NotFound => self.backend_named(None),
            Err(e) => Err(e),
        }
    }

    /// The embedded model as a fallback: loaded only if the chain gets to it, so a remote run neither waits for
    /// it nor fails when its file is missing (that is recorded as the fallback's failure instead).
    fn lazy_local(&self) -> Arc<dyn Backend> {
        match &self.inner.local.fixed {
            Some(b) => b.clone(),
            None => Arc::new(LazyLocal { app: self.clone() }),
        }
    }

    fn local_or_fixed(&self) -> Result<Arc<dyn Backend>, AppError> {
        match &self.inner.local.fixed {
            Some(b) => Ok(b.clone()),
            None => Ok(self.local_model(&mut |_| {})?),
        }
    }

    /// The profile's remote backend with its current key, built again when the profile or the key changed.
    fn remote(&self, row: &BackendRow) -> Result<Arc<RemoteBackend>, AppError> {
        // No keyring: the request goes without a key, and a server that needs one says 401, whose hint then says
        // why no key was sent.
        let (key, key_problem) = match secrets::key(&row.name) {
            Ok(key) => (key, None),
            Err(e) => (None, Some(format!("{e}; {}", e.hint()))),
        };
        let fingerprint = key.as_ref().map(|k| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(k.expose().as_bytes()))
        });
        let mut cache = lock(&self.inner.remotes.built);
        if let Some((cached_row, cached_key, backend)) = cache.get(&row.name) {
            if cached_row == row && *cached_key == fingerprint {
                return Ok(backend.clone());
            }
        }
        let config = RemoteConfig {
            name: row.name.clone(),
            base_url: row.base_url.clone(),
            model: row.model.clone(),
            connect_timeout: Duration::from_secs(row.timeout_secs.min(30) as u64),
            read_timeout: Duration::from_secs(row.timeout_secs as u64),
            max_retries: row.max_retries,
            context_window: row.context_window,
            key,
            key_problem,
        };
        let backend = Arc::new(RemoteBackend::new(config)?);
        let replaced = cache.insert(row.name.clone(), (row.clone(), fingerprint, backend.clone()));
        drop(cache);
        drop(replaced);
        Ok(backend)
    }
}

/// The embedded model, loaded on its first call (see `App::lazy_local`).
struct LazyLocal {
    app: App,
}

impl LazyLocal {
    fn loaded(&self) -> Result<Arc<LocalModel>, BackendError> {
        self.app.local_model(&mut |_| {}).map_err(|e| BackendError::Inference(format!("{} ({})", e.message, e.hint.unwrap_or_default())))
    }
}

impl Backend for LazyLocal {
    fn info(&self) -> BackendInfo {
        match self.app.inner.local.model.get() {
            Some(m) => m.info(),
            // SmolLM2's window until the file is read (the manifest's chat model; see DESIGN.md).
            None => BackendInfo { name: LOCAL.into(), model: String::new(), context_window: 8192 },
        }
    }

    /// Counted by the model once it is loaded; before that the chain's other members count.
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        match self.app.inner.local.model.get() {
            Some(m) => m.count_prompt_tokens(messages),
            None => Ok(0),
        }
    }

    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        self.loaded()?.reply(request, cancel, on_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> BackendProfile {
        BackendProfile {
            name: "lab".into(),
            base_url: "http://127.0.0.1:8080/v1/".into(),
            model: "smollm2".into(),
            timeout_secs: 30,
            max_retries: 2,
            fallback: vec!["local".into()],
            context_window: None,
        }
    }

    #[test]
    fn a_valid_profile_is_normalised() {
        let row = validate(&profile(), &[]).unwrap();
        assert_eq!(row.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(row.context_window, DEFAULT_CONTEXT_WINDOW);
        assert_eq!(row.fallback, vec!["local".to_string()]);
    }

    #[test]
    fn profiles_that_would_leak_or_cannot_work_are_refused() {
        let cases: Vec<(Box<dyn Fn(&mut BackendProfile)>, &str)> = vec![
            (Box::new(|p| p.base_url = "http://user:sk-secret@host/v1".into()), "credentials"),
            (Box::new(|p| p.base_url = "http://host/v1?api_key=sk".into()), "query"),
            (Box::new(|p| p.base_url = "http://host/v1#sk".into()), "fragment"),
            (Box::new(|p| p.base_url = "ftp://host/v1".into()), "http"),
            (Box::new(|p| p.name = "local".into()), "embedded"),
            (Box::new(|p| p.name = "a b".into()), "not allowed"),
            (Box::new(|p| p.model = " ".into()), "model name is empty"),
            (Box::new(|p| p.fallback = vec!["lab".into()]), "itself"),
            (Box::new(|p| p.fallback = vec!["nowhere".into()]), "no backend named"),
            (Box::new(|p| p.timeout_secs = 0), "timeout"),
        ];
        for (change, expected) in cases {
            let mut p = profile();
            change(&mut p);
            let e = validate(&p, &[]).unwrap_err();
            assert!(e.message.contains(expected), "{expected}: {}", e.message);
            assert!(!e.message.contains("sk-secret"), "{}", e.message);
        }
    }
}
