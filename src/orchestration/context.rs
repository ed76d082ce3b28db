//! Context assembly: what goes into the model's window for a step, and what is left out.
//!
//! The window holds the system prompt, then as much of the conversation as fits, newest kept. Whole messages are
//! dropped, oldest first, never cut in the middle; how many were dropped is recorded in the run.

use crate::llm::{Backend, BackendError, ChatMessage, Role};

/// Keel's system prompt for plain chat.
pub const SYSTEM_PROMPT: &str = "You are Keel, a helpful assistant running privately on the user's computer. \
Answer clearly and concisely.";

/// The messages for one model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub messages: Vec<ChatMessage>,
    pub prompt_tokens: u32,
    pub dropped_messages: u32,
}

/// Fits `conversation` (oldest first, ending with the new user message) into the backend's window, leaving room
/// for `reply_tokens`.
/// `memory`, when given, is appended to the system prompt (the memory section, already within its budget).
pub fn assemble(
    backend: &dyn Backend,
    conversation: &[ChatMessage],
    reply_tokens: u32,
    memory: Option<&str>,
) -> Result<Window, BackendError> {
    let window = backend.info().context_window;
    let system = match memory {
        Some(section) => format!("{SYSTEM_PROMPT}\n\n{section}"),
        None => SYSTEM_PROMPT.to_owned(),
    };
    let with_system = |dropped: usize| {
        let mut messages = Vec::with_capacity(conversation.len() + 1 - dropped);
        messages.push(ChatMessage::new(Role::System, system.clone()));
        messages.extend_from_slice(&conversation[dropped..]);
        messages
    };
    let fits = |dropped: usize| -> Result<Option<Window>, BackendError> {
        let messages = with_system(dropped);
        let prompt_tokens = backend.count_prompt_tokens(&messages)?;
        Ok((prompt_tokens + reply_tokens <= window).then_some(Window {
            messages,
            prompt_tokens,
            dropped_messages: dropped as u32,
        }))
    };
    if let Some(w) = fits(0)? {
        return Ok(w);
    }
    // Dropping more never needs more tokens, so the fewest drops that fit are found by bisection: a long
    // conversation is rendered and counted O(log n) times, not once per dropped message. The newest message is
    // always kept; if it does not fit alone, the model cannot take this turn.
    let newest = conversation.len().saturating_sub(1);
    let Some(mut best) = fits(newest)? else {
        let prompt_tokens = backend.count_prompt_tokens(&with_system(newest))?;
        return Err(BackendError::ContextOverflow { prompt_tokens: prompt_tokens + reply_tokens, window });
    };
    let (mut lo, mut hi) = (0, newest);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fits(mid)? {
            Some(w) => {
                best = w;
                hi = mid;
            }
            None => lo = mid,
        }
    }
    Ok(best)
}
