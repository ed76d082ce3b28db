//! Incremental detokenisation: turns a growing list of token ids into text pieces that are safe to show.
//!
//! Byte-level BPE tokens can split a UTF-8 character (an emoji is often two or three tokens). A piece is emitted
//! only once the decoded text no longer ends in a replacement character, so the UI never shows a broken glyph.

use super::tokenizer::GgufTokenizer;
use super::BackendError;

pub struct TextStream<'t> {
    tokenizer: &'t GgufTokenizer,
    ids: Vec<u32>,
    /// Everything emitted so far: the text the user saw.
    emitted: String,
    /// Start of the window that is decoded together, and how much of it was already emitted.
    prev_index: usize,
    current_index: usize,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t GgufTokenizer) -> Self {
        TextStream { tokenizer, ids: Vec::new(), emitted: String::new(), prev_index: 0, current_index: 0 }
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, BackendError> {
        let before = self.tokenizer.decode(&self.ids[self.prev_index..self.current_index])?;
        self.ids.push(id);
        let now = self.tokenizer.decode(&self.ids[self.prev_index..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let piece = now[before.len()..].to_owned();
            self.emitted.push_str(&piece);
            self.prev_index = self.current_index;
            self.current_index = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The text emitted so far, exactly as streamed: a character whose last bytes never came (generation
    /// stopped inside it) is left out rather than shown as U+FFFD.
    pub fn text(&self) -> &str {
        &self.emitted
    }
}
