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
pub fn assemble(backend: &dyn Backend, conversation: &[ChatMessage], reply_tokens: u32) -> Result<Window, BackendError> {
    let window = backend.info().context_window;
    let mut dropped = 0usize;
    loop {
        let mut messages = Vec::with_capacity(conversation.len() + 1 - dropped);
        messages.push(ChatMessage::new(Role::System, SYSTEM_PROMPT));
        messages.extend_from_slice(&conversation[dropped..]);
        let prompt_tokens = backend.count_prompt_tokens(&messages)?;
        if prompt_tokens + reply_tokens <= window {
            return Ok(Window { messages, prompt_tokens, dropped_messages: dropped as u32 });
        }
        // Keep at least the newest message; if even that does not fit, the model cannot take this turn.
        if dropped + 1 >= conversation.len() {
            return Err(BackendError::ContextOverflow { prompt_tokens: prompt_tokens + reply_tokens, window });
        }
        dropped += 1;
    }
}
