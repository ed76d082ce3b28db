//! A fallback chain: backends tried in order, the next one called when the one before fails (a remote server
//! down or refusing, a stream broken mid-reply). The completion says which backend answered and which failed
//! before it, so the run records it and the Inspector shows it.
//!
//! A member that fails after streaming part of a reply leaves that text in the stream, followed by a line that
//! says it stopped and which member answers instead; the completion is the answering member's alone.
//!
//! The chain's window is the smallest of its members' (any of them may have to take the prompt), and its token
//! count the largest of their counts. A reply the user stopped is not passed on: cancellation ends the chain.

use std::sync::Arc;

use super::{Backend, BackendError, BackendFailure, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion, StopReason};

pub struct FallbackChain {
    name: String,
    members: Vec<Arc<dyn Backend>>,
}

impl FallbackChain {
    /// `members` in the order they are tried; the first is the chain's own backend. Panics on an empty list (a
    /// caller bug: a chain of one is just that backend).
    pub fn new(members: Vec<Arc<dyn Backend>>) -> FallbackChain {
        assert!(!members.is_empty(), "a fallback chain needs at least one backend");
        let name = members.iter().map(|m| m.info().name).collect::<Vec<_>>().join(" → ");
        FallbackChain { name, members }
    }

    fn each(
        &self,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
        call: &mut dyn FnMut(&dyn Backend, &mut dyn FnMut(&str)) -> Result<Completion, BackendError>,
    ) -> Result<Completion, BackendError> {
        let mut failures: Vec<BackendFailure> = Vec::new();
        let mut last = None;
        for (i, member) in self.members.iter().enumerate() {
            let name = member.info().name;
            let mut streamed = false;
            let result = call(member.as_ref(), &mut |piece: &str| {
                streamed |= !piece.is_empty();
                on_text(piece)
            });
            match result {
                Ok(mut completion) => {
                    completion.answered_by.get_or_insert(name);
                    failures.append(&mut completion.fell_back);
                    completion.fell_back = failures;
                    return Ok(completion);
                }
                // A prompt too long for this member is too long for the chain (its window is the smallest).
                Err(e @ BackendError::ContextOverflow { .. }) => return Err(e),
                Err(e) => {
                    if cancel.is_cancelled() {
                        failures.push(BackendFailure { backend: name, error: e.to_string() });
                        break;
                    }
                    // What this member streamed is not the answer: the stream says so before the next one's
                    // text follows it (the recorded reply is the next member's alone).
                    if let (true, Some(next)) = (streamed, self.members.get(i + 1)) {
                        on_text(&format!("\n\n[{name} stopped mid-reply; {} answers instead]\n\n", next.info().name));
                    }
                    failures.push(BackendFailure { backend: name, error: e.to_string() });
                    last = Some(e);
                }
            }
        }
        if cancel.is_cancelled() {
            return Ok(Completion {
                text: String::new(),
                prompt_tokens: 0,
                cached_prompt_tokens: 0,
                completion_tokens: 0,
                stop: StopReason::Cancelled,
                ttft_ms: None,
                prompt_ms: 0,
                duration_ms: 0,
                answered_by: None,
                fell_back: failures,
            });
        }
        let error = last.expect("the chain has members");
        if failures.len() == 1 {
            return Err(error);
        }
        let all = failures.iter().map(|f| format!("{}: {}", f.backend, f.error)).collect::<Vec<_>>().join("; ");
        Err(BackendError::Remote {
            backend: self.name.clone(),
            kind: match &error {
                BackendError::Remote { kind, .. } => *kind,
                _ => super::remote::RemoteErrorKind::Unreachable,
            },
            status: None,
            message: format!("every backend of the chain {} failed ({all})", self.name),
            hint: error.hint().unwrap_or_else(|| "check each backend with `keel backends test NAME`".into()),
        })
    }
}

impl Backend for FallbackChain {
    fn info(&self) -> BackendInfo {
        let first = self.members[0].info();
        let window = self.members.iter().map(|m| m.info().context_window).min().unwrap_or(first.context_window);
        BackendInfo { name: self.name.clone(), model: first.model, context_window: window }
    }

    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        let mut most = 0;
        for member in &self.members {
            most = most.max(member.count_prompt_tokens(messages)?);
        }
        Ok(most)
    }

    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        self.each(cancel, on_text, &mut |b, sink| b.reply(request, cancel, sink))
    }

    fn members(&self) -> Vec<String> {
        self.members.iter().flat_map(|m| m.members()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::scripted::ScriptedBackend;
    use crate::llm::GenerationSettings;

    /// A member that fails: `name`, having streamed `words` first.
    struct Failing {
        name: &'static str,
        words: &'static [&'static str],
        error: &'static str,
    }

    const DOWN: Failing = Failing { name: "down", words: &[], error: "connection refused" };
    /// Streams a few words, then breaks.
    const BREAKS: Failing = Failing { name: "breaks", words: &["Once upon", " a"], error: "stream closed" };

    impl Backend for Failing {
        fn info(&self) -> BackendInfo {
            BackendInfo { name: self.name.into(), model: "m".into(), context_window: 1024 }
        }
        fn count_prompt_tokens(&self, _: &[ChatMessage]) -> Result<u32, BackendError> {
            Ok(1)
        }
        fn reply(&self, _: &ChatRequest<'_>, _: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
            self.words.iter().for_each(|w| on_text(w));
            Err(BackendError::Inference(self.error.into()))
        }
    }

    #[test]
    fn the_next_backend_answers_when_the_first_fails_and_the_failure_is_kept() {
        let chain = FallbackChain::new(vec![Arc::new(DOWN), Arc::new(ScriptedBackend::new(vec![crate::llm::scripted::ScriptedReply::Text("hello".into())]))]);
        assert_eq!(chain.info().context_window, 1024.min(ScriptedBackend::new(vec![]).info().context_window));
        let reply = chain.chat(&[ChatMessage::new(crate::llm::Role::User, "hi")], &GenerationSettings::default(), &CancelFlag::default(), &mut |_| {}).unwrap();
        assert_eq!(reply.text, "hello");
        assert_eq!(reply.answered_by.as_deref(), Some("scripted"));
        assert_eq!(reply.fell_back, vec![BackendFailure { backend: "down".into(), error: "inference failed: connection refused".into() }]);
    }

    fn streamed(chain: &FallbackChain) -> (Result<Completion, BackendError>, String) {
        let mut text = String::new();
        let reply = chain.chat(&[ChatMessage::new(crate::llm::Role::User, "hi")], &GenerationSettings::default(), &CancelFlag::default(), &mut |t| text.push_str(t));
        (reply, text)
    }

    /// The partial text of a member that broke is followed in the stream by a line saying so; the reply the
    /// run records is the next member's own.
    #[test]
    fn a_reply_broken_mid_stream_is_marked_before_the_next_backend_streams() {
        let scripted = || Arc::new(ScriptedBackend::new(vec![crate::llm::scripted::ScriptedReply::Text("hello".into())]));
        let (reply, text) = streamed(&FallbackChain::new(vec![Arc::new(BREAKS), scripted()]));
        let reply = reply.unwrap();
        assert_eq!(reply.text, "hello");
        assert_eq!(text, "Once upon a\n\n[breaks stopped mid-reply; scripted answers instead]\n\nhello");
        assert_eq!(reply.fell_back[0].backend, "breaks");

        // A member that failed before streaming anything adds nothing to the stream.
        let (reply, text) = streamed(&FallbackChain::new(vec![Arc::new(DOWN), scripted()]));
        assert_eq!((reply.unwrap().text, text), ("hello".to_string(), "hello".to_string()));

        // The last member has no one to hand over to: its partial text stays as it is, and the chain fails.
        let (reply, text) = streamed(&FallbackChain::new(vec![Arc::new(DOWN), Arc::new(BREAKS)]));
        assert!(reply.is_err());
        assert_eq!(text, "Once upon a");
    }

    #[test]
    fn when_every_backend_fails_the_error_names_each() {
        let chain = FallbackChain::new(vec![Arc::new(DOWN), Arc::new(DOWN)]);
        let e = chain.chat(&[], &GenerationSettings::default(), &CancelFlag::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("every backend of the chain down → down failed"), "{e}");
    }
}
