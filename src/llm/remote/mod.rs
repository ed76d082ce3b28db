//! The remote backend: a server that speaks OpenAI's Chat Completions API (llama.cpp's or llama-cpp-python's
//! server, Ollama, LM Studio, vLLM, or a hosted API with a key), over reqwest.
//!
//! Remote servers are unreliable by assumption. Every request has a connect timeout and a read timeout (no byte
//! for that long ends the call), connection failures, 429 and 5xx are retried with full-jitter backoff that honours
//! `Retry-After`, and every failure becomes a [`BackendError::Remote`] whose kind is the decision the caller makes
//! (try the next backend of a fallback chain, or tell the user to fix a key or a model name). Replies stream as
//! Server-Sent Events; tool-call argument deltas are assembled into whole calls. Structured output uses the
//! server's `response_format` when it takes one, and otherwise a schema stated in the prompt, which the caller
//! validates as it does any reply.
//!
//! The API key is an [`ApiKey`]: it has no `Display`, its `Debug` is redacted, and it only ever becomes a
//! sensitive `Authorization` header. It comes from the keyring (see `crate::secrets`), never from a file.
//!
//! `chat` is called on a blocking thread; the backend owns a small tokio runtime and blocks on it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use ts_rs::TS;

use crate::shared::backoff::{self, RetryPolicy};
use wire::{error_message, grammar_friendly, schema_instruction, Chunk, Usage};

use super::{Backend, BackendError, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion, GenerationSettings, StopReason};

/// An API key. Deliberately neither `Display` nor `Serialize`; `Debug` prints no part of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the keyring and the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The validated settings of one remote backend profile.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The profile name, shown in runs and errors.
    pub name: String,
    /// The API root, e.g. `http://127.0.0.1:8080/v1` (a trailing `/` is ignored).
    pub base_url: String,
    pub model: String,
    pub connect_timeout: Duration,
    /// The longest wait for the next byte of a response.
    pub read_timeout: Duration,
    /// Retries after the first attempt of a request that failed in a retryable way.
    pub max_retries: u32,
    /// The window the server's model holds, in tokens (the API does not say).
    pub context_window: u32,
    pub key: Option<ApiKey>,
    /// Why no key could be read (the keyring unavailable or locked), for the hint of a 401.
    pub key_problem: Option<String>,
}

/// What kind of failure a remote call met: the decision it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum RemoteErrorKind {
    /// No connection (refused, DNS, TLS): the server is down or the URL is wrong.
    Unreachable,
    /// Connected, but no answer within the timeout.
    Timeout,
    /// 401 or 403: the key is missing, wrong or lacks access.
    Unauthorized,
    /// 404: the model name (or the URL's path) is wrong.
    NotFound,
    /// 429 after the retries (or a `Retry-After` longer than Keel waits).
    RateLimited,
    /// 5xx after the retries.
    Server,
    /// 400 or 422: the server refused the request (too long a prompt, an option it does not take).
    BadRequest,
    /// The response broke the protocol: a malformed chunk, a stream that ended mid-reply.
    Protocol,
}

/// One tool call of a reply, its argument deltas assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the server sent them (a JSON text; not validated here).
    pub arguments: String,
}

/// A reply with the tool calls the model made.
#[derive(Debug, Clone)]
pub struct ToolReply {
    pub completion: Completion,
    pub tool_calls: Vec<ToolCall>,
}

/// How this server takes structured output; learnt from its first refusal.
const STRUCTURED_UNKNOWN: u8 = 0;
const STRUCTURED_JSON_SCHEMA: u8 = 1;
const STRUCTURED_JSON_OBJECT: u8 = 2;
const STRUCTURED_PROMPT: u8 = 3;

pub struct RemoteBackend {
    config: RemoteConfig,
    client: reqwest::Client,
    /// Always `Some` until dropped (then shut down without waiting).
    runtime: Option<tokio::runtime::Runtime>,
    structured: AtomicU8,
    /// Whether a structured request has succeeded, fixing the form.
    structured_learnt: std::sync::atomic::AtomicBool,
    /// The outcome of checking, once, that the server lists the profile's model.
    model_checked: std::sync::OnceLock<Result<(), BackendError>>,
}

impl fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteBackend").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RemoteBackend {
    pub fn new(config: RemoteConfig) -> Result<RemoteBackend, BackendError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BackendError::Inference(format!("could not set up the HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keel-remote")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Inference(format!("could not start the remote backend's runtime: {e}")))?;
        Ok(RemoteBackend {
            config,
            client,
            runtime: Some(runtime),
            structured: AtomicU8::new(STRUCTURED_UNKNOWN),
            structured_learnt: Default::default(),
            model_checked: std::sync::OnceLock::new(),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the backend")
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }

    fn error(&self, kind: RemoteErrorKind, status: Option<u16>, detail: impl Into<String>) -> BackendError {
        remote_error(&self.config, kind, status, detail.into())
    }

    /// Before the first request: does the server have the profile's model? Some servers (llama-cpp-python's)
    /// answer any model name with the one model they have, so a typo would go unnoticed; the listing tells.
    /// A server without a usable listing is taken at its word. A failure to connect is not remembered.
    fn check_model(&self, cancel: &CancelFlag) -> Result<(), BackendError> {
        if let Some(outcome) = self.model_checked.get() {
            return outcome.clone();
        }
        let listed = self.runtime().block_on(async {
            tokio::select! {
                r = self.fetch_models() => Some(r),
                _ = until_cancelled(cancel) => None,
            }
        });
        // Stopped while asking: the request that follows sees the same flag and returns at once.
        let Some(listed) = listed else { return Ok(()) };
        let outcome = match listed {
            Ok(models) if models.is_empty() || models.iter().any(|m| *m == self.config.model) => Ok(()),
            Ok(models) => Err(self.error(
                RemoteErrorKind::NotFound,
                None,
                format!("has no model \"{}\" (it lists: {})", self.config.model, models.join(", ")),
            )),
            Err(BackendError::Remote { kind: RemoteErrorKind::Unreachable | RemoteErrorKind::Timeout, .. }) => return Ok(()),
            Err(e @ BackendError::Remote { kind: RemoteErrorKind::Unauthorized, .. }) => Err(e),
            Err(_) => Ok(()),
        };
        self.model_checked.get_or_init(|| outcome).clone()
    }

    /// The model ids the server lists at `/models`.
    pub fn list_models(&self) -> Result<Vec<String>, BackendError> {
        self.runtime().block_on(self.fetch_models())
    }

    async fn fetch_models(&self) -> Result<Vec<String>, BackendError> {
        {
            let mut request = self.client.get(self.url("models")).timeout(self.config.read_timeout + self.config.connect_timeout);
            if let Some(header) = self.auth_header() {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            let response = request.send().await.map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| self.transport_error(&e))?;
            if !status.is_success() {
                return Err(self.status_error(status.as_u16(), &body, None));
            }
            #[derive(Deserialize)]
            struct Models {
                data: Vec<ModelId>,
            }
            #[derive(Deserialize)]
            struct ModelId {
                id: String,
            }
            let models: Models = serde_json::from_str(&body)
                .map_err(|e| self.error(RemoteErrorKind::Protocol, None, format!("its model list is not what the API describes ({e})")))?;
            Ok(models.data.into_iter().map(|m| m.id).collect())
        }
    }

    /// A reply that may call the given tools (OpenAI `tools`, each `{"type": "function", "function": {...}}`),
    /// with `tool_choice` as the API takes it (`"auto"`, or an object naming one function).
    pub fn chat_tools(
        &self,
        messages: &[ChatMessage],
        settings: &GenerationSettings,
        tools: &[Value],
        tool_choice: Value,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ToolReply, BackendError> {
        let mut body = self.body(messages, settings);
        body["tools"] = Value::Array(tools.to_vec());
        body["tool_choice"] = tool_choice;
        self.complete(&body, cancel, on_text)
    }

    fn auth_header(&self) -> Option<reqwest::header::HeaderValue> {
        let key = self.config.key.as_ref()?;
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    fn body(&self, messages: &[ChatMessage], settings: &GenerationSettings) -> Value {
        let messages: Vec<Value> = messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect();
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "seed": settings.seed,
        });
        if let Some(p) = settings.top_p {
            body["top_p"] = json!(p);
        }
        body
    }

    /// Sends a chat request (with its retries) and reads the streamed reply.
    fn complete(&self, body: &Value, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<ToolReply, BackendError> {
        self.complete_with(body, self.config.max_retries, cancel, on_text)
    }

    fn complete_with(&self, body: &Value, max_retries: u32, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<ToolReply, BackendError> {
        self.check_model(cancel)?;
        let started = Instant::now();
        self.runtime().block_on(async {
            let mut attempt = 0;
            loop {
                let response = match self.send(body, max_retries, cancel, &mut attempt).await? {
                    Some(r) => r,
                    None => return Ok(cancelled_reply(started)),
                };
                match self.read_stream(response, started, cancel, on_text).await {
                    // A stream that broke before any text was shown is retried like a failed request.
                    Err(StreamFailure { error, emitted: false }) if attempt < max_retries && retryable_kind(&error) => {
                        attempt += 1;
                        if !sleep_or_cancel(backoff(attempt, None), cancel).await {
                            return Ok(cancelled_reply(started));
                        }
                    }
                    Err(failure) => return Err(failure.error),
                    Ok(reply) => return Ok(reply),
                }
            }
        })
    }

    /// Posts the request, retrying connection failures, 429 and 5xx. `None` when the caller cancelled.
    async fn send(&self, body: &Value, max_retries: u32, cancel: &CancelFlag, attempt: &mut u32) -> Result<Option<reqwest::Response>, BackendError> {
        loop {
            let mut request = self.client.post(self.url("chat/completions")).json(body);
            if let Some(header) = self.auth_header() {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            let result = tokio::select! {
                r = request.send() => r,
                _ = until_cancelled(cancel) => return Ok(None),
            };
            let (error, retry_after) = match result {
                Ok(response) if response.status().is_success() => return Ok(Some(response)),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after_ms(response.headers());
                    let text = tokio::select! {
                        t = response.text() => t.unwrap_or_default(),
                        _ = until_cancelled(cancel) => return Ok(None),
                    };
                    (self.status_error(status, &text, retry_after), retry_after)
                }
                Err(e) => (self.transport_error(&e), None),
            };
            if *attempt >= max_retries || !retryable_kind(&error) {
                return Err(error);
            }
            // A server that asks for a longer pause than Keel waits gets the error now, not a frozen turn.
            if retry_after.is_some_and(|ms| ms > MAX_RETRY_AFTER_MS) {
                return Err(error);
            }
            *attempt += 1;
            if !sleep_or_cancel(backoff(*attempt, retry_after), cancel).await {
                return Ok(None);
            }
        }
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        started: Instant,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ToolReply, StreamFailure> {
        let mut events = response.bytes_stream().eventsource();
        let mut assembly = Assembly::default();
        let fail = |error: BackendError, emitted: bool| Err(StreamFailure { error, emitted });
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(self.config.read_timeout, events.next()) => n,
                _ = until_cancelled(cancel) => {
                    // Dropping the stream closes the connection, which tells the server to stop generating.
                    return Ok(assembly.finish(true, started));
                }
            };
            let event = match next {
                Err(_) => {
                    let detail = format!("sent nothing for {} s in the middle of a reply", self.config.read_timeout.as_secs());
                    return fail(self.error(RemoteErrorKind::Timeout, None, detail), assembly.pieces > 0);
                }
                Ok(None) if assembly.finish_reason.is_some() => break,
                Ok(None) => return fail(self.error(RemoteErrorKind::Protocol, None, "closed the stream before the reply was complete"), assembly.pieces > 0),
                Ok(Some(Err(e))) => {
                    let detail = match e {
                        eventsource_stream::EventStreamError::Transport(e) if e.is_timeout() => {
                            let detail = format!("sent nothing for {} s in the middle of a reply", self.config.read_timeout.as_secs());
                            return fail(self.error(RemoteErrorKind::Timeout, None, detail), assembly.pieces > 0);
                        }
                        eventsource_stream::EventStreamError::Transport(e) => format!("broke off the reply: {}", crate::shared::causes::chain(&e)),
                        other => format!("sent a stream that is not valid Server-Sent Events ({other})"),
                    };
                    return fail(self.error(RemoteErrorKind::Protocol, None, detail), assembly.pieces > 0);
                }
                Ok(Some(Ok(event))) => event,
            };
            match assembly.event(&event.data, started, on_text) {
                Ok(true) => break,
                Ok(false) => {}
                Err((kind, detail)) => {
                    let emitted = assembly.pieces > 0;
                    return fail(self.error(kind, None, detail), emitted);
                }
            }
        }
        Ok(assembly.finish(false, started))
    }

    fn status_error(&self, status: u16, body: &str, retry_after: Option<u64>) -> BackendError {
        let mut said = error_message(&serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.chars().take(200).collect())));
        // A server may echo the key it refused ("Incorrect API key provided: sk-…"); it never reaches an error.
        if let Some(key) = self.config.key.as_ref().filter(|k| k.expose().len() >= 4) {
            said = said.replace(key.expose(), "<redacted>");
        }
        let (kind, detail) = match status {
            401 | 403 => (RemoteErrorKind::Unauthorized, format!("refused the key (HTTP {status}: {said})")),
            404 => (RemoteErrorKind::NotFound, format!("has no model \"{}\" or no such API path (HTTP 404: {said})", self.config.model)),
            429 => (
                RemoteErrorKind::RateLimited,
                match retry_after {
                    Some(ms) => format!("is rate-limiting requests and asked to wait {} s (HTTP 429: {said})", ms.div_ceil(1000)),
                    None => format!("is rate-limiting requests (HTTP 429: {said})"),
                },
            ),
            s if s >= 500 => (RemoteErrorKind::Server, format!("failed (HTTP {status}: {said})")),
            s if s >= 400 => (RemoteErrorKind::BadRequest, format!("refused the request (HTTP {status}: {said})")),
            _ => (RemoteErrorKind::Protocol, format!("answered HTTP {status}: {said}")),
        };
        self.error(kind, Some(status), detail)
    }

    fn transport_error(&self, e: &reqwest::Error) -> BackendError {
        let kind = if e.is_timeout() { RemoteErrorKind::Timeout } else { RemoteErrorKind::Unreachable };
        let detail = match kind {
            RemoteErrorKind::Timeout => format!("did not answer in time ({})", crate::shared::causes::chain(e)),
            _ => format!("could not be reached at {} ({})", self.config.base_url, crate::shared::causes::chain(e)),
        };
        self.error(kind, None, detail)
    }

    /// Sends `body` with the schema as the server takes it, learning which form that is from its refusals.
    fn complete_structured(
        &self,
        messages: &[ChatMessage],
        settings: &GenerationSettings,
        schema: &Value,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, BackendError> {
        // Grammar engines expand length bounds into repetitions: llama.cpp's server dies building a grammar for
        // `maxLength: 4000`. Large bounds are left out of what the server constrains; the caller validates
        // the reply against the full schema.
        let schema = &grammar_friendly(schema);
        loop {
            let mode = self.structured.load(Ordering::Relaxed);
            let mut body = self.body(messages, settings);
            match mode {
                STRUCTURED_UNKNOWN | STRUCTURED_JSON_SCHEMA => {
                    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}});
                }
                STRUCTURED_JSON_OBJECT => body["response_format"] = json!({"type": "json_object", "schema": schema}),
                _ => {
                    // Into the system message (many chat templates refuse a second one, or one at the end).
                    let mut with_schema = messages.to_vec();
                    match with_schema.iter_mut().find(|m| m.role == super::Role::System) {
                        Some(system) => system.content = format!("{}\n\n{}", system.content, schema_instruction(schema)),
                        None => with_schema.insert(0, ChatMessage::new(super::Role::System, schema_instruction(schema))),
                    }
                    body = self.body(&with_schema, settings);
                }
            }
            // Until the server has taken a form, a refusal (400/422, the 500 or 501 some servers answer a request
            // they cannot validate with, or a stream that ends before any event) is read as "not this form", and
            // the next form is tried. Overload (503), rate limits and lost connections are not refusals.
            let learning = mode != STRUCTURED_PROMPT && !self.structured_learnt.load(Ordering::Relaxed);
            match self.complete(&body, cancel, on_text) {
                Err(BackendError::Remote { kind, status, .. })
                    if learning
                        && (matches!(kind, RemoteErrorKind::BadRequest | RemoteErrorKind::Protocol)
                            || (kind == RemoteErrorKind::Server && matches!(status, Some(500 | 501)))) =>
                {
                    let next = if mode == STRUCTURED_JSON_OBJECT { STRUCTURED_PROMPT } else { STRUCTURED_JSON_OBJECT };
                    self.structured.store(next, Ordering::Relaxed);
                }
                Ok(reply) => {
                    if reply.completion.stop != StopReason::Cancelled {
                        if mode == STRUCTURED_UNKNOWN {
                            self.structured.store(STRUCTURED_JSON_SCHEMA, Ordering::Relaxed);
                        }
                        self.structured_learnt.store(true, Ordering::Relaxed);
                    }
                    return Ok(reply.completion);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        // Never wait for the runtime's threads (a hung DNS lookup) when a backend is replaced or the app ends.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Backend for RemoteBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo { name: self.config.name.clone(), model: self.config.model.clone(), context_window: self.config.context_window }
    }

    /// An estimate: the API has no tokenizer endpoint. Three bytes a token plus each message's framing
    /// overestimates for English and code with BPE vocabularies, which is the safe side for fitting a window.
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        Ok(messages.iter().map(|m| m.content.len().div_ceil(3) as u32 + 8).sum::<u32>() + 4)
    }

    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        let mut completion = match request.schema {
            Some(schema) => self.complete_structured(request.messages, request.settings, schema, cancel, on_text)?,
            None => self.complete(&self.body(request.messages, request.settings), cancel, on_text)?.completion,
        };
        if completion.prompt_tokens == 0 {
            completion.prompt_tokens = self.count_prompt_tokens(request.messages)?;
        }
        Ok(completion)
    }
}

/// The most Keel waits on a server's `Retry-After` before giving up on the request.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

/// At most this many tool calls in one streamed reply. A delta's call index comes from the server and every call
/// up to it is made, so without a bound one index of 4294967295 would exhaust memory (found by fuzzing).
const MAX_STREAMED_TOOL_CALLS: usize = 128;

/// What a streamed reply has said so far. Apart from the reading of the stream so that the SSE fuzz target
/// (`crate::fuzzing::sse`) feeds its events through the same code.
#[derive(Default)]
pub(crate) struct Assembly {
    text: String,
    calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    ttft_ms: Option<u64>,
    pieces: u32,
}

impl Assembly {
    /// Takes one event's data: `Ok(true)` when it ends the reply (`[DONE]`), else the error's kind and detail.
    pub(crate) fn event(&mut self, data: &str, started: Instant, on_text: &mut dyn FnMut(&str)) -> Result<bool, (RemoteErrorKind, String)> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                let shown: String = data.chars().take(120).collect();
                return Err((RemoteErrorKind::Protocol, format!("sent a malformed chunk ({e}): {shown}")));
            }
        };
        if let Some(error) = chunk.error {
            return Err((RemoteErrorKind::Server, format!("reported an error mid-reply: {}", error_message(&error))));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index.unwrap_or(0) == 0) {
            if let Some(content) = choice.delta.content.filter(|c| !c.is_empty()) {
                self.ttft_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
                self.pieces = self.pieces.saturating_add(1);
                on_text(&content);
                self.text.push_str(&content);
            }
            for delta in choice.delta.tool_calls.unwrap_or_default() {
                self.ttft_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
                self.pieces = self.pieces.saturating_add(1);
                let calls = &mut self.calls;
                let index = delta.index.unwrap_or(calls.len().saturating_sub(1) as u32) as usize;
                if index >= MAX_STREAMED_TOOL_CALLS {
                    return Err((
                        RemoteErrorKind::Protocol,
                        format!("sent a tool call numbered {index}; a reply may make at most {MAX_STREAMED_TOOL_CALLS}"),
                    ));
                }
                while calls.len() <= index {
                    calls.push(ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
                }
                let call = &mut calls[index];
                // OpenAI sends the id and name in a call's first delta; some servers (llama-cpp-python) repeat
                // them in every delta.
                if let Some(id) = delta.id.filter(|id| call.id.is_empty() || *id != call.id) {
                    call.id.push_str(&id);
                }
                if let Some(function) = delta.function {
                    if let Some(name) = function.name.filter(|n| *n != call.name) {
                        call.name.push_str(&name);
                    }
                    if let Some(arguments) = function.arguments {
                        call.arguments.push_str(&arguments);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(false)
    }

    /// The reply so far, as the stream ended (or was cancelled).
    pub(crate) fn finish(self, cancelled: bool, started: Instant) -> ToolReply {
        let stop = match (cancelled, self.finish_reason.as_deref()) {
            (true, _) => StopReason::Cancelled,
            (false, Some("length")) => StopReason::MaxTokens,
            _ => StopReason::Eos,
        };
        reply(self.text, self.calls, self.usage, self.pieces, stop, started, self.ttft_ms)
    }
}

struct StreamFailure {
    error: BackendError,
    /// Whether any text reached the caller (then the call cannot be retried without showing text twice).
    emitted: bool,
}

fn reply(
    text: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    pieces: u32,
    stop: StopReason,
    started: Instant,
    ttft_ms: Option<u64>,
) -> ToolReply {
    let completion = Completion {
        text,
        prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
        cached_prompt_tokens: 0,
        // Without usage (a server that ignores `stream_options`), each content delta is about one token.
        completion_tokens: usage.map_or(pieces, |u| u.completion_tokens),
        stop,
        ttft_ms,
        prompt_ms: ttft_ms.unwrap_or(0),
        duration_ms: started.elapsed().as_millis() as u64,
        answered_by: None,
        fell_back: Vec::new(),
    };
    ToolReply { completion, tool_calls }
}

fn cancelled_reply(started: Instant) -> ToolReply {
    reply(String::new(), Vec::new(), None, 0, StopReason::Cancelled, started, None)
}

fn remote_error(config: &RemoteConfig, kind: RemoteErrorKind, status: Option<u16>, detail: String) -> BackendError {
    let name = &config.name;
    let hint = match kind {
        RemoteErrorKind::Unreachable => format!("check that the server is running and that `{}` is its address (`keel backends test {name}`)", config.base_url),
        RemoteErrorKind::Timeout => format!("the server may be overloaded; try again, or raise the profile's timeout (`keel backends add {name} … --timeout SECS`)"),
        RemoteErrorKind::Unauthorized => match &config.key_problem {
            Some(problem) => format!("no key was sent because the keyring could not be read: {problem}"),
            None => format!("store the right key with `keel keys set {name}` (it reads the key from stdin)"),
        },
        RemoteErrorKind::NotFound => format!("`keel backends test {name}` lists the models the server has; set one with `keel backends add {name} --base-url … --model MODEL`"),
        RemoteErrorKind::RateLimited => "wait a little and try again, or use another backend with --backend".to_string(),
        RemoteErrorKind::Server => "the server failed; try again, or use another backend with --backend".to_string(),
        RemoteErrorKind::BadRequest => "shorten the conversation or the reply limit, or check the profile's options".to_string(),
        RemoteErrorKind::Protocol => "the server does not follow the OpenAI Chat Completions API as Keel expects; check its version".to_string(),
    };
    BackendError::Remote { backend: name.clone(), kind, status, message: format!("backend {name} {detail}"), hint }
}

fn retryable_kind(error: &BackendError) -> bool {
    matches!(
        error,
        BackendError::Remote {
            kind: RemoteErrorKind::Unreachable | RemoteErrorKind::Timeout | RemoteErrorKind::RateLimited | RemoteErrorKind::Server | RemoteErrorKind::Protocol,
            ..
        }
    )
}

/// `Retry-After` in milliseconds: delta-seconds or an HTTP date.
fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0) as u64);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0) as u64)
}

/// The pause before retry `attempt` (1 for the first): the server's `Retry-After` when it gave one, else full
/// jitter over 250 ms · 2^(attempt-1), capped at 4 s ([`REMOTE_BACKOFF`]).
fn backoff(attempt: u32, retry_after_ms: Option<u64>) -> Duration {
    REMOTE_BACKOFF.delay(attempt + 1, retry_after_ms, backoff::clock_seed()).unwrap_or_default()
}

/// Retries are counted by the profile's `max_retries`, and a server's `Retry-After` is always honoured.
const REMOTE_BACKOFF: RetryPolicy = RetryPolicy { max_attempts: u32::MAX, base_ms: 250, cap_ms: 4_000, max_retry_after_ms: u64::MAX };

/// Sleeps, unless the caller cancels first; false when cancelled.
async fn sleep_or_cancel(pause: Duration, cancel: &CancelFlag) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => true,
        _ = until_cancelled(cancel) => false,
    }
}

/// Resolves once the flag reads as cancelled (the user's Stop, or the run's deadline).
async fn until_cancelled(cancel: &CancelFlag) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}


mod wire;

#[cfg(test)]
mod tests;
