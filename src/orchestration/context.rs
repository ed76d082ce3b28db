//! Context assembly: what goes into the model's window for a step, and what is left out.
//!
//! The window holds the system prompt (with, when tools are offered, the tools section, then the memory section),
//! then as much of the conversation as fits, then this run's own steps (the model's replies and the tool results).
//! Whole messages are dropped, never cut in the middle: first the oldest conversation messages, then the oldest
//! steps of the run, which are replaced by one note saying how many were left out. The user's current message
//! and the latest step are always kept. What was dropped is recorded in the run.

use crate::llm::{Backend, BackendError, ChatMessage, Role};

/// Keel's system prompt for plain chat.
pub const SYSTEM_PROMPT: &str = "You are Keel, a helpful assistant running privately on the user's computer. \
Answer clearly and concisely.";

/// The messages for one model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub messages: Vec<ChatMessage>,
    pub prompt_tokens: u32,
    /// Conversation messages left out.
    pub dropped_messages: u32,
    /// Steps of this run left out.
    pub dropped_steps: u32,
}

/// The system prompt with its optional sections: the tools section first, the memory section after it. The fixed
/// prompt and the tools section are the same bytes for every call with the same tools, so they are a shared
/// prefix that the embedded model's KV cache computes once; the memory retrieved for each message comes after.
pub fn system_prompt(memory: Option<&str>, tools: Option<&str>) -> String {
    let mut s = SYSTEM_PROMPT.to_owned();
    for section in [tools, memory].into_iter().flatten() {
        s.push_str("\n\n");
        s.push_str(section);
    }
    s
}

/// Fits `conversation` (oldest first, ending with the new user message) and `steps` (this run's history) into
/// the backend's window, leaving room for `reply_tokens`.
pub fn assemble(
    backend: &dyn Backend,
    system: &str,
    conversation: &[ChatMessage],
    steps: &[ChatMessage],
    reply_tokens: u32,
) -> Result<Window, BackendError> {
    let window = backend.info().context_window;
    let build = |dropped: usize, dropped_steps: usize| {
        let mut messages = Vec::with_capacity(conversation.len() + steps.len() + 2 - dropped);
        messages.push(ChatMessage::new(Role::System, system.to_owned()));
        messages.extend_from_slice(&conversation[dropped..]);
        if dropped_steps > 0 {
            messages.push(ChatMessage::new(
                Role::User,
                format!("[Keel] {dropped_steps} earlier steps of this task were left out to fit the context window."),
            ));
        }
        messages.extend_from_slice(&steps[dropped_steps..]);
        messages
    };
    let fits = |dropped: usize, dropped_steps: usize| -> Result<Option<Window>, BackendError> {
        let messages = build(dropped, dropped_steps);
        let prompt_tokens = backend.count_prompt_tokens(&messages)?;
        Ok((prompt_tokens + reply_tokens <= window).then_some(Window {
            messages,
            prompt_tokens,
            dropped_messages: dropped as u32,
            dropped_steps: dropped_steps as u32,
        }))
    };
    if let Some(w) = fits(0, 0)? {
        return Ok(w);
    }
    // Dropping more never needs more tokens, so the fewest drops that fit are found by bisection: a long
    // conversation is rendered and counted O(log n) times, not once per dropped message. The newest message is
    // always kept.
    let newest = conversation.len().saturating_sub(1);
    let Some(mut best) = fits(newest, 0)? else {
        // The conversation alone is not the problem: leave out this run's oldest steps, keeping the latest.
        for dropped_steps in 1..steps.len() {
            if let Some(w) = fits(newest, dropped_steps)? {
                return Ok(w);
            }
        }
        let prompt_tokens = backend.count_prompt_tokens(&build(newest, steps.len().saturating_sub(1)))?;
        return Err(BackendError::ContextOverflow { prompt_tokens: prompt_tokens + reply_tokens, window });
    };
    let (mut lo, mut hi) = (0, newest);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fits(mid, 0)? {
            Some(w) => {
                best = w;
                hi = mid;
            }
            None => lo = mid,
        }
    }
    Ok(best)
}
