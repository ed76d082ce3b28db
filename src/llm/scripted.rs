//! A deterministic backend that plays a fixed script of replies: for orchestration tests, never the product path.
//!
//! Each call takes the next scripted reply; a reply can also be a failure. Text is streamed word by word, and the
//! token count is the number of white-space separated pieces, so tests can assert exact figures.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use super::{Backend, BackendError, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion, StopReason};

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    Text(String),
    /// Fails the call with an inference error carrying this message.
    Fail(String),
    /// Streams this text, then waits until cancelled (to test Stop).
    UntilCancelled(String),
    /// Panics with this message, as a buggy backend might.
    Panic(String),
}

/// A reply chosen by what the model is shown rather than by call order: the first rule whose `when` occurs in
/// the prompt's last message answers. A run resumed in a new process gets the same replies at the same points,
/// which a script played in order cannot promise.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ScriptRule {
    pub when: String,
    pub reply: String,
    /// A pause before the reply, so that a test can interrupt the process mid-call.
    #[serde(default)]
    pub delay_ms: u64,
}

/// A script file (`KEEL_SCRIPTED_BACKEND`): `{"rules": [{"when": …, "reply": …, "delay_ms": …}]}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ScriptFile {
    pub rules: Vec<ScriptRule>,
}

/// How many calls' messages [`ScriptedBackend::seen`] keeps: every test's run fits, and a soak of thousands of
/// turns does not grow by each prompt.
pub const SEEN_CALLS: usize = 256;

pub struct ScriptedBackend {
    replies: Mutex<VecDeque<ScriptedReply>>,
    rules: Vec<ScriptRule>,
    context_window: u32,
    /// The messages of every `chat` call, in order, so tests can check what the model was shown.
    seen: Mutex<Vec<Vec<ChatMessage>>>,
}

impl ScriptedBackend {
    pub fn new(replies: impl IntoIterator<Item = ScriptedReply>) -> Self {
        ScriptedBackend { replies: Mutex::new(replies.into_iter().collect()), rules: Vec::new(), context_window: 4096, seen: Mutex::default() }
    }

    /// A backend that answers by rules (see [`ScriptRule`]).
    pub fn with_rules(rules: Vec<ScriptRule>) -> Self {
        ScriptedBackend { rules, ..ScriptedBackend::new([]) }
    }

    /// Reads a script file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the script {}: {e}", path.display()))?;
        let file: ScriptFile = serde_json::from_str(&text).map_err(|e| format!("the script {} is not valid: {e}", path.display()))?;
        Ok(ScriptedBackend::with_rules(file.rules))
    }

    /// The messages each `chat` call was given, oldest call first (the last [`SEEN_CALLS`] calls).
    pub fn seen(&self) -> Vec<Vec<ChatMessage>> {
        self.seen.lock().expect("seen lock poisoned").clone()
    }

    /// A smaller window, to exercise context assembly.
    pub fn with_context_window(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }
}

fn count(messages: &[ChatMessage]) -> u32 {
    messages.iter().map(|m| m.content.split_whitespace().count() as u32 + 1).sum()
}

impl Backend for ScriptedBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo { name: "scripted".into(), model: "script".into(), context_window: self.context_window }
    }

    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        Ok(count(messages))
    }

    /// The schema of a structured request is not followed: the script's reply is what the test says it is.
    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        let ChatRequest { messages, settings, .. } = *request;
        let started = Instant::now();
        {
            let mut seen = self.seen.lock().expect("seen lock poisoned");
            if seen.len() == SEEN_CALLS {
                seen.remove(0);
            }
            seen.push(messages.to_vec());
        }
        let reply = if self.rules.is_empty() {
            self.replies
                .lock()
                .expect("script lock poisoned")
                .pop_front()
                .ok_or_else(|| BackendError::Inference("the script has no more replies".into()))?
        } else {
            let last = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
            let rule = self
                .rules
                .iter()
                .find(|r| last.contains(&r.when))
                .ok_or_else(|| BackendError::Inference(format!("no script rule matches the last message: {last:.80}")))?;
            let until = Instant::now() + std::time::Duration::from_millis(rule.delay_ms);
            while Instant::now() < until && !cancel.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            ScriptedReply::Text(rule.reply.clone())
        };
        let (text, wait) = match reply {
            ScriptedReply::Fail(msg) => return Err(BackendError::Inference(msg)),
            ScriptedReply::Panic(msg) => panic!("{msg}"),
            ScriptedReply::Text(t) => (t, false),
            ScriptedReply::UntilCancelled(t) => (t, true),
        };
        let mut out = String::new();
        let mut n = 0;
        let mut stop = StopReason::Eos;
        for (i, word) in text.split_whitespace().enumerate() {
            if cancel.is_cancelled() {
                stop = StopReason::Cancelled;
                break;
            }
            if n >= settings.max_tokens {
                stop = StopReason::MaxTokens;
                break;
            }
            let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
            on_text(&piece);
            out.push_str(&piece);
            n += 1;
        }
        if wait && stop == StopReason::Eos {
            while !cancel.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            stop = StopReason::Cancelled;
        }
        Ok(Completion {
            text: out,
            prompt_tokens: count(messages),
            cached_prompt_tokens: 0,
            completion_tokens: n,
            stop,
            ttft_ms: Some(0),
            prompt_ms: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            answered_by: None,
            fell_back: Vec::new(),
        })
    }
}
