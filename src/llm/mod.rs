//! Language model backends behind one small trait, and the types a generation request is made of.
//!
//! `llm` knows nothing of runs or orchestration: a backend turns chat messages into a completion, streaming the
//! text as it goes. The local backend (candle on a GGUF file) is the default; the scripted one plays a fixed
//! script for orchestration tests.

pub mod constrain;
pub mod chain;
pub mod local;
pub mod remote;
pub mod engine;
pub mod faults;
pub mod scripted;
pub mod stream;
pub mod template;
pub mod tokenizer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return None,
        })
    }
}

/// One message of the context sent to a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into() }
    }
}

/// Decoding settings. A temperature of 0 means greedy (argmax) decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct GenerationSettings {
    /// The most tokens the model may generate in one reply.
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    /// 1.0 disables it.
    pub repeat_penalty: f32,
    #[ts(type = "number")]
    pub seed: u64,
}

impl GenerationSettings {
    /// Checks that the settings can work with a model whose window holds `window` tokens; the error says which
    /// setting is wrong and what it may be.
    pub fn validate(&self, window: u32) -> Result<(), String> {
        if self.max_tokens == 0 || self.max_tokens >= window {
            return Err(format!("max_tokens is {}; it must be between 1 and {}", self.max_tokens, window.saturating_sub(1)));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!("temperature is {}; it must be 0 (greedy) or more", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p is {p}; it must be above 0 and at most 1"));
            }
        }
        if self.top_k == Some(0) {
            return Err("top_k is 0; it must be at least 1".into());
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(format!("repeat_penalty is {}; it must be above 0 (1 disables it)", self.repeat_penalty));
        }
        Ok(())
    }
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            repeat_penalty: 1.1,
            seed: 299_792_458,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted an end-of-turn token.
    Eos,
    /// The `max_tokens` budget was used up.
    MaxTokens,
    /// The caller cancelled.
    Cancelled,
}

/// What a backend produced for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV state came from an earlier call (computed only `prompt_tokens` minus these).
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub stop: StopReason,
    /// Time from the call to the first generated token.
    pub ttft_ms: Option<u64>,
    /// Prompt processing time alone.
    pub prompt_ms: u64,
    pub duration_ms: u64,
    /// The backend that produced it, when a fallback chain chose among several (else the backend called).
    pub answered_by: Option<String>,
    /// Backends of a fallback chain that failed before the one that answered, in order.
    pub fell_back: Vec<BackendFailure>,
}

/// A backend of a fallback chain that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackendFailure {
    pub backend: String,
    pub error: String,
}

/// A cancellation flag shared between whoever may cancel (UI Stop, Ctrl-C) and the generating thread, with an
/// optional deadline after which it reads as cancelled too (a model call under the run's wall-time bound needs
/// no thread to watch the clock).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag {
    flag: Arc<AtomicBool>,
    deadline: Option<std::time::Instant>,
}

impl CancelFlag {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.deadline.is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// The same flag, also cancelled once `deadline` passes. Cancelling the result cancels this flag too.
    pub fn until(&self, deadline: std::time::Instant) -> CancelFlag {
        CancelFlag { flag: self.flag.clone(), deadline: Some(self.deadline.map_or(deadline, |d| d.min(deadline))) }
    }

    /// True when both are the same flag (clones of one another).
    pub fn same(&self, other: &CancelFlag) -> bool {
        Arc::ptr_eq(&self.flag, &other.flag)
    }
}

/// Describes a backend for the run log and the Inspector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// The backend's kind and profile, e.g. `local`.
    pub name: String,
    /// The model it runs, e.g. the GGUF file name.
    pub model: String,
    /// The context window in tokens.
    pub context_window: u32,
}

/// Why a backend could not produce a completion.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("the prompt needs {prompt_tokens} tokens but the model's context window holds {window}")]
    ContextOverflow { prompt_tokens: u32, window: u32 },
    #[error("the chat template could not be rendered: {0}")]
    Template(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("inference failed: {0}")]
    Inference(String),
    /// A remote server failed; `kind` is the decision it asks for, `hint` the fix to show.
    #[error("{message}")]
    Remote { backend: String, kind: remote::RemoteErrorKind, status: Option<u16>, message: String, hint: String },
}

impl BackendError {
    /// What the user can do about it, when there is something.
    pub fn hint(&self) -> Option<String> {
        match self {
            BackendError::Remote { hint, .. } => Some(hint.clone()),
            BackendError::ContextOverflow { .. } => Some("start a new conversation, or shorten the message".into()),
            _ => None,
        }
    }
}

/// One call to a backend: the messages, the sampling settings and, for a structured reply, the JSON Schema the
/// reply must satisfy (a tool call, a plan, an answer). A backend that can constrain decoding to the schema does;
/// one that cannot generates freely and leaves the caller to validate the reply and re-prompt.
#[derive(Clone, Copy)]
pub struct ChatRequest<'a> {
    pub messages: &'a [ChatMessage],
    pub settings: &'a GenerationSettings,
    pub schema: Option<&'a serde_json::Value>,
}

/// A language model. Called on a blocking thread: generation is CPU work for local models. Three methods to
/// implement; the rest are conveniences over them.
pub trait Backend: Send + Sync {
    fn info(&self) -> BackendInfo;

    /// The number of prompt tokens these messages take once rendered with the chat template.
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError>;

    /// Generates a reply to `request`, calling `on_text` with each new piece of text as soon as it is decoded.
    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError>;

    /// The backends this one tries, in order: a fallback chain's members; a plain backend is its own.
    fn members(&self) -> Vec<String> {
        vec![self.info().name]
    }

    /// A free reply to `messages`.
    fn chat(&self, messages: &[ChatMessage], settings: &GenerationSettings, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        self.reply(&ChatRequest { messages, settings, schema: None }, cancel, on_text)
    }

    /// A reply that must be one JSON value satisfying `schema`.
    fn chat_json(
        &self,
        messages: &[ChatMessage],
        settings: &GenerationSettings,
        schema: &serde_json::Value,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, BackendError> {
        self.reply(&ChatRequest { messages, settings, schema: Some(schema) }, cancel, on_text)
    }
}
