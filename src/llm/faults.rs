//! A backend that fails on purpose, for `keel eval run`'s `"tool": "@backend"` faults and tests: an error, a 429,
//! a call that never answers in time, a reply that is not what was asked for, or a slow one. Once its plan is used
//! up it passes calls through. Never used on the product path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, BackendError, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion, StopReason};

/// One injected behaviour, used for one call.
#[derive(Debug, Clone)]
pub enum BackendFault {
    /// Fail with this inference error.
    Error(String),
    /// Fail as a server that answers 429.
    RateLimit,
    /// Answer nothing for this long (or until cancelled), then fail as a timeout.
    Hang(Duration),
    /// Reply with this text instead of the model's.
    Reply(String),
    /// Answer correctly, this much later.
    Latency(Duration),
}

pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: Mutex<VecDeque<BackendFault>>,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>, plan: impl IntoIterator<Item = BackendFault>) -> FaultyBackend {
        FaultyBackend { inner, plan: Mutex::new(plan.into_iter().collect()) }
    }

    fn wait(cancel: &CancelFlag, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if cancel.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Backend for FaultyBackend {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }

    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        self.inner.count_prompt_tokens(messages)
    }

    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        let fault = self.plan.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let name = self.inner.info().name;
        let remote = |kind, status, message: &str| BackendError::Remote {
            backend: name.clone(),
            kind,
            status,
            message: message.to_owned(),
            hint: "an injected fault (keel eval run)".into(),
        };
        match fault {
            None => self.inner.reply(request, cancel, on_text),
            Some(BackendFault::Error(m)) => Err(BackendError::Inference(m)),
            Some(BackendFault::RateLimit) => Err(remote(super::remote::RemoteErrorKind::RateLimited, Some(429), "rate limited (429)")),
            Some(BackendFault::Hang(d)) => {
                Self::wait(cancel, d);
                Err(remote(super::remote::RemoteErrorKind::Timeout, None, "no answer within the timeout"))
            }
            Some(BackendFault::Reply(text)) => {
                on_text(&text);
                let tokens = text.split_whitespace().count() as u32;
                Ok(Completion {
                    text,
                    prompt_tokens: self.inner.count_prompt_tokens(request.messages).unwrap_or(0),
                    cached_prompt_tokens: 0,
                    completion_tokens: tokens,
                    stop: StopReason::Eos,
                    ttft_ms: Some(0),
                    prompt_ms: 0,
                    duration_ms: 0,
                    answered_by: None,
                    fell_back: Vec::new(),
                })
            }
            Some(BackendFault::Latency(d)) => {
                if !Self::wait(cancel, d) {
                    return Err(BackendError::Inference("cancelled during an injected delay".into()));
                }
                self.inner.reply(request, cancel, on_text)
            }
        }
    }
}
