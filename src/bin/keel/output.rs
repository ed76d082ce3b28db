//! The CLI's one output layer: a command builds one value and hands it to [`emit`], which prints it as one
//! JSON document (`--json`) or as text for a person. No command decides between the two itself.
//!
//! The text form of a value is its [`Human`] rendering: lines for stdout and notes for stderr (totals, warnings,
//! hints), kept in the order they are shown. A value whose text needs more than the value itself (a flag, a
//! second lookup) is paired with its text in a [`Shown`]. Failures go through [`error`]: with `--json` a failure
//! is `{"error": {"kind", "message", "hint"}}` on stdout as well as a message on stderr.

use keel::AppError;
use serde::Serialize;

/// How a value reads to a person.
pub trait Human {
    fn human(&self) -> Text;
}

/// Which stream a line of text goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// A value's text form: lines for stdout and notes for stderr, in the order they are printed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(Vec<(Stream, String)>);

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// A line on stdout (it may hold newlines of its own).
    pub fn line(&mut self, line: impl Into<String>) -> &mut Text {
        self.0.push((Stream::Out, line.into()));
        self
    }

    /// A note on stderr, beside the result rather than part of it.
    pub fn note(&mut self, note: impl Into<String>) -> &mut Text {
        self.0.push((Stream::Err, note.into()));
        self
    }

    /// Adds another text's lines after these.
    pub fn extend(&mut self, other: Text) -> &mut Text {
        self.0.extend(other.0);
        self
    }

    fn print(&self) {
        for (stream, line) in &self.0 {
            match stream {
                Stream::Out => println!("{line}"),
                Stream::Err => eprintln!("{line}"),
            }
        }
    }
}

/// A value with its text form: serialised exactly as the value is, shown as the text.
pub struct Shown<T> {
    value: T,
    text: Text,
}

impl<T: Serialize> Shown<T> {
    pub fn new(value: T, text: Text) -> Shown<T> {
        Shown { value, text }
    }

    /// A value with one line of text.
    pub fn line(value: T, line: impl Into<String>) -> Shown<T> {
        let mut text = Text::new();
        text.line(line);
        Shown { value, text }
    }

    /// A value printed only with `--json`; for a person the command has said what it did already (on stderr,
    /// with its progress).
    pub fn json_only(value: T) -> Shown<T> {
        Shown { value, text: Text::new() }
    }
}

impl<T: Serialize> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T> Human for Shown<T> {
    fn human(&self) -> Text {
        self.text.clone()
    }
}

/// Prints a command's result: its JSON document with `json`, its text otherwise.
pub fn emit<T: Serialize + Human + ?Sized>(json: bool, value: &T) {
    if json {
        print_json(value);
    } else {
        value.human().print();
    }
}

/// Prints a value as the command's one JSON document (pretty, as every `--json` result is).
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("serialisable"));
}

/// Reports a failed command: with `json` the error is the command's JSON document (compact, on one line);
/// the message and its hint always go to stderr.
pub fn error(json: bool, e: &AppError) {
    if json {
        println!("{}", serde_json::json!({ "error": e }));
    }
    eprintln!("error: {}", e.message);
    if let Some(hint) = &e.hint {
        eprintln!("hint: {hint}");
    }
}

/// A failure found in a result already printed (a run that failed): the command's error, except that with
/// `json` the result is already the one document on stdout, so the failure is said on stderr only and the
/// command exits with code 1 at once.
pub fn failed_after_result(json: bool, e: AppError) -> Result<(), AppError> {
    if json {
        eprintln!("error: {}", e.message);
        if let Some(hint) = &e.hint {
            eprintln!("hint: {hint}");
        }
        std::process::exit(1);
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_serialises_as_its_value_and_reads_as_its_text() {
        let shown = Shown::line(serde_json::json!({"removed": "x"}), "removed x");
        assert_eq!(serde_json::to_string(&shown).unwrap(), r#"{"removed":"x"}"#);
        let mut text = Text::new();
        text.line("removed x");
        assert_eq!(shown.human(), text);
        assert_eq!(Shown::json_only(1).human(), Text::new());
    }
}
