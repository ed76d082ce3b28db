//! The interface layer: every inbound text is checked here before anything else sees it.
//!
//! It owns no state. It turns raw bytes or strings into an [`Accepted`] text (valid UTF-8, normalised by
//! [`normalise`], within the size limit) together with a report of what it changed, or refuses them with an
//! [`InputError`] that says why and what to do instead. [`intent`] says what a message asks for and [`guard`]
//! how strongly a text reads as a prompt injection.

pub mod combiner;
pub mod guard;
pub mod intent;
pub mod normalise;

/// The largest chat message accepted, in bytes of UTF-8 after normalisation.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A text that passed the interface checks, with what was changed to make it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub text: String,
    pub changes: Vec<Change>,
}

pub use normalise::Change;

/// Why an inbound text was refused. Nothing is stored when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is {bytes} bytes long, over the limit of {max} bytes")]
    TooLong { bytes: usize, max: usize },
    #[error("the input is not valid UTF-8 (the first bad byte is at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
}

impl InputError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            InputError::Empty => "type a message first",
            InputError::TooLong { .. } => {
                "shorten the message, or save the long text to a file and import it as a document"
            }
            InputError::InvalidUtf8 { .. } => "convert the text to UTF-8 (for example with `iconv -t UTF-8`)",
        }
    }
}

/// Accepts raw bytes, as they arrive from a terminal or a pipe.
pub fn accept_bytes(raw: &[u8]) -> Result<Accepted, InputError> {
    let text = std::str::from_utf8(raw).map_err(|e| InputError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
    accept(text)
}

/// Accepts a chat message: normalised for the model (see [`normalise`]), trimmed, and within the size limit.
pub fn accept(text: &str) -> Result<Accepted, InputError> {
    let normalise::Normalised { text: normalised, mut changes } = normalise::normalise(text, normalise::Destination::Model);
    let trimmed = normalised.trim();
    if trimmed.is_empty() {
        return Err(InputError::Empty);
    }
    if trimmed.len() != normalised.len() {
        changes.push(Change::Trimmed);
    }
    if trimmed.len() > MAX_MESSAGE_BYTES {
        return Err(InputError::TooLong { bytes: trimmed.len(), max: MAX_MESSAGE_BYTES });
    }
    Ok(Accepted { text: trimmed.to_owned(), changes })
}

/// Cleans text that arrives in bulk (an imported document) for the index and the model: normalised like a
/// message, without the size limit (documents are chunked, not sent whole).
pub fn clean_document(text: &str) -> String {
    normalise::normalise(text, normalise::Destination::Model).text
}

/// True when a message reads as a task that needs tools (arithmetic, the time or date, files, a web page), so
/// that the run is offered tools (ReAct); anything else is answered as chat. Rules for the unambiguous cases
/// only; a classifier over the embeddings is the interface issue's work.
pub fn needs_tools(text: &str) -> bool {
    let lower = text.to_lowercase();
    let arithmetic = has_arithmetic(&lower);
    const CUES: &[&str] = &[
        "calculate", "compute", "how much is", "what time", "the time in", "today's date", "what date", "what day",
        "which day", "file", "folder", "http://", "https://", "fetch", "download", "search my memory", "look up",
    ];
    arithmetic || CUES.iter().any(|c| lower.contains(c))
}

/// True when the text holds an arithmetic expression: a digit, an operator, and a digit or a bracket.
pub fn has_arithmetic(lower: &str) -> bool {
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    let b = compact.as_bytes();
    (1..b.len().saturating_sub(1)).any(|i| b"+-*/^%x".contains(&b[i]) && b[i - 1].is_ascii_digit() && (b[i + 1].is_ascii_digit() || b[i + 1] == b'('))
}

/// The fact in a "remember that …" message, if the message is one: the user's words after the request,
/// with a trailing full stop removed. `None` for anything else (including a question about remembering).
pub fn remember_request(text: &str) -> Option<String> {
    const PREFIXES: &[&str] = &["please remember that ", "remember that ", "please remember: ", "remember: "];
    let lower = text.to_lowercase();
    let start = lower.trim_start();
    let offset = lower.len() - start.len();
    let prefix = PREFIXES.iter().find(|p| start.starts_with(*p))?;
    // Lower-casing can change byte lengths outside ASCII; the prefixes are ASCII, so the offsets agree as long
    // as everything before them is ASCII, which `offset` (whitespace) and the prefix are.
    let rest = text.get(offset + prefix.len()..)?.trim().trim_end_matches(['.', '!']).trim();
    (!rest.is_empty() && !rest.ends_with('?')).then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_passes_unchanged() {
        for s in ["Hello", "北京是中国的首都", "مرحبا بالعالم", "👩‍👩‍👧‍👦 family", "tab\tand\nnewline"] {
            let a = accept(s).unwrap();
            assert_eq!(a.text, s);
            assert!(a.changes.is_empty(), "{s:?} changed: {:?}", a.changes);
        }
    }

    #[test]
    fn decomposed_text_is_normalised_to_nfc() {
        let a = accept("Cafe\u{301}").unwrap();
        assert_eq!(a.text, "Café");
        assert_eq!(a.changes, vec![Change::NormalisedNfc]);
    }

    #[test]
    fn controls_are_removed_and_reported() {
        let a = accept("a\u{0}b\u{1b}[31mc").unwrap();
        assert_eq!(a.text, "abc");
        assert_eq!(a.changes, vec![Change::RemovedAnsi { count: 1 }, Change::RemovedControls { count: 1 }]);
    }

    #[test]
    fn empty_and_blank_are_refused() {
        assert_eq!(accept(""), Err(InputError::Empty));
        assert_eq!(accept(" \n\t "), Err(InputError::Empty));
        assert_eq!(accept("\u{0}\u{0}"), Err(InputError::Empty));
    }

    #[test]
    fn over_long_is_refused_with_its_size() {
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(accept(&long), Err(InputError::TooLong { bytes: MAX_MESSAGE_BYTES + 1, max: MAX_MESSAGE_BYTES }));
        assert!(accept(&"x".repeat(MAX_MESSAGE_BYTES)).is_ok());
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        assert_eq!(accept_bytes(b"ok \xff\xfe"), Err(InputError::InvalidUtf8 { valid_up_to: 3 }));
    }
}
