//! Routing by code: the tool call a user's message asks for, when the message says exactly what it needs.
//!
//! The rules, in order: one computation in words or symbols goes to the calculator ([`super::arith`]); a
//! question about the calendar goes to the clock ([`super::when`]); a file of the user's files folder named in the
//! message is read (and, for "sum the amount column of expenses.csv", its column is then added up by the
//! calculator); a request for the list of files lists the folder. Each rule claims a message only when it is
//! sure, and says why; anything else is left to the model, as before. A route also carries the plain answer that
//! states the result (its `answer` template), used when the model's own phrasing does not state it.

use serde::{Deserialize, Serialize};

use super::when::{self, DateQuestion};

/// A tool call decided by code, not by the model: the tool, its arguments, how sure the rule is and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Route {
    pub tool: String,
    #[ts(type = "unknown")]
    pub arguments: serde_json::Value,
    pub confidence: f32,
    pub reason: String,
    /// The plain answer, with `{field}` standing for a field of the tool's result (`{@lines}`: the lines of a
    /// file read that match the question; `{@entries}`: the names listed). The model's answer must state each
    /// value; when it does not, this is the answer. `None` for the calculator, whose check is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The step code takes after this call succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<Then>,
}

/// A second step decided by code from the first call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Then {
    /// Add up a column of the file read with the calculator: the column named by one of `words` (or the only
    /// numeric column).
    SumColumn { words: Vec<String> },
}

/// What routing may look at besides the message: the names in the user's files folder (relative paths) and the
/// user's time zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub files: &'a [String],
    pub zone: Option<&'a str>,
}

/// The route for a user's message, or `None` when the rules do not claim it.
pub fn route(text: &str, cx: &Context<'_>) -> Option<Route> {
    if let Some(expression) = super::arith::expression(text) {
        return Some(Route {
            tool: "calculator".into(),
            arguments: serde_json::json!({ "expression": expression }),
            confidence: 0.95,
            reason: format!("the message asks for one computation, read as {expression}"),
            answer: None,
            then: None,
        });
    }
    if let Some(q) = when::question(text) {
        return Some(date_route(q, cx.zone));
    }
    // "Remember that my password is in wifi.txt" is a fact to keep, not a file to read.
    if super::remember_request(text).is_some() {
        return None;
    }
    files_route(text, cx.files)
}

fn date_route(q: DateQuestion, zone: Option<&str>) -> Route {
    let zone = zone.unwrap_or("UTC");
    let (arguments, reason, answer) = match q {
        DateQuestion::Weekday(d) => (
            serde_json::json!({ "at": d.format("%Y-%m-%d").to_string() }),
            format!("the message asks which weekday {d} is"),
            "{=date} is a {weekday}.",
        ),
        DateQuestion::DaysUntil(d) => (
            serde_json::json!({ "at": d.format("%Y-%m-%d").to_string(), "timezone": zone }),
            format!("the message asks how many days there are until (or since) {d}"),
            "{=date}, a {=weekday}, is {@days}.",
        ),
        DateQuestion::TimeIn(z) => (
            serde_json::json!({ "timezone": z }),
            format!("the message asks for the time now in {z}"),
            "In {=timezone} it is {time} on {=weekday} {=date} (UTC{=utc_offset}).",
        ),
        DateQuestion::Today => (
            serde_json::json!({ "timezone": zone }),
            "the message asks for today's date".to_owned(),
            "Today is {weekday} {date} ({=timezone}).",
        ),
        DateQuestion::TimeNow => (
            serde_json::json!({ "timezone": zone }),
            "the message asks for the time now".to_owned(),
            "It is {time} on {=weekday} {=date} ({=timezone}).",
        ),
    };
    Route { tool: "datetime".into(), arguments, confidence: 0.95, reason, answer: Some(answer.into()), then: None }
}

/// Verbs that change a file or ask for something other than its content: a message with one is not a read.
const CHANGES: &[&str] = &[
    "write", "writes", "wrote", "writing", "save", "saved", "saving", "create", "created", "make", "made", "delete", "deleted",
    "deleting", "remove", "removed", "rename", "renamed", "move", "moved", "copy", "copied", "edit", "edited", "change", "changed", "update",
    "updated", "overwrite", "replace", "append", "put", "store", "erase", "erased", "fix", "send", "email", "upload", "uploaded",
    "download", "downloaded", "share", "shared", "print", "printed", "attach", "attached",
];

/// Words that ask for the content of a file.
const READS: &[&str] = &[
    "read", "open", "show", "display", "summarise", "summarize", "summary", "tell", "give", "look", "check", "find", "according", "what", "whats",
    "who", "which", "when", "how", "list", "extract", "quote",
];

/// Words that ask for a column's total.
const SUMS: &[&str] = &["sum", "total", "add"];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['’', '‘'], "'")
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '!' | '(' | ')' | '"' | '`'))
        .map(|w| w.trim_matches(|c: char| matches!(c, '?' | '.' | ':' | '\'' | '*')).to_owned())
        .filter(|w| !w.is_empty())
        .map(|w| w.strip_suffix("'s").map(|s| format!("{s}s")).unwrap_or(w))
        .collect()
}

/// The files of the folder the message names (by relative path or by file name), each once.
fn named_files<'f>(message_words: &[String], files: &'f [String]) -> Vec<&'f str> {
    let mut out: Vec<&str> = Vec::new();
    for f in files {
        let lower = f.to_lowercase();
        let base = lower.rsplit('/').next().unwrap_or(&lower).to_owned();
        // A bare word ("notes", "LICENSE") is not a file name: a file without an extension is matched only by
        // its whole path with a folder in it ("notes/todo").
        let by_base = base.contains('.');
        if !by_base && !lower.contains('/') {
            continue;
        }
        if message_words.iter().any(|w| *w == lower || (by_base && *w == base)) && !out.contains(&f.as_str()) {
            out.push(f);
        }
    }
    out
}

fn files_route(text: &str, files: &[String]) -> Option<Route> {
    let w = words(text);
    if w.len() > 60 {
        return None;
    }
    let named = named_files(&w, files);
    let has = |x: &str| w.iter().any(|y| y == x);
    match named.as_slice() {
        [file] => {
            let file = *file;
            let others: Vec<&String> = w.iter().filter(|x| !x.contains('.') || !file.to_lowercase().ends_with(x.as_str())).collect();
            let sums = SUMS.iter().any(|s| has(s)) && (has("up") || has("sum") || has("total") || has("together") || has("column") || has("amounts"));
            // "Add a row (a total row, a column) to expenses.csv" changes the file: not a total to compute.
            let adds_to_file = has("add") && ["row", "rows", "line", "lines", "entry", "column", "columns"].iter().any(|x| has(x)) && has("to");
            let is_table = [".csv", ".tsv", ".txt"].iter().any(|e| file.to_lowercase().ends_with(e));
            if adds_to_file {
                return None;
            }
            if sums && is_table && !w.iter().any(|x| CHANGES.contains(&x.as_str())) {
                // The column is one of the message's other words; which one is decided against the file's header.
                const NOT_COLUMNS: &[&str] = &[
                    "sum", "total", "add", "up", "the", "of", "in", "column", "a", "an", "all", "what", "whats", "is", "with", "calculator", "use",
                    "using", "please", "read", "and", "together", "me", "tell", "values", "numbers", "file", "from", "for", "can", "you", "get",
                ];
                let words: Vec<String> = others.iter().filter(|x| !NOT_COLUMNS.contains(&x.as_str()) && x.chars().all(char::is_alphanumeric)).map(|x| x.to_string()).collect();
                return Some(Route {
                    tool: "files_read".into(),
                    arguments: serde_json::json!({ "path": file }),
                    confidence: 0.9,
                    reason: format!("the message asks for a column total of {file}, which is in the files folder: read it, then add the column"),
                    answer: None,
                    then: Some(Then::SumColumn { words }),
                });
            }
            let reads = others.iter().any(|x| READS.contains(&x.as_str())) || text.trim_end().ends_with('?');
            if reads && !w.iter().any(|x| CHANGES.contains(&x.as_str())) && !SUMS.iter().any(|s| has(s)) {
                return Some(Route {
                    tool: "files_read".into(),
                    arguments: serde_json::json!({ "path": file }),
                    confidence: 0.9,
                    reason: format!("the message asks about {file}, which is in the files folder"),
                    answer: Some(format!("From {file}: {{@lines}}")),
                    then: None,
                });
            }
            None
        }
        [] => list_request(&w).then(|| Route {
            tool: "files_list".into(),
            arguments: serde_json::json!({}),
            confidence: 0.9,
            reason: "the message asks which files are in the files folder".into(),
            answer: Some("Your files folder has: {@entries}.".into()),
            then: None,
        }),
        _ => None,
    }
}

/// True when the message is a question about the user themself ("what is my dog's name?", "where does my
/// sister live?", "what am I allergic to?"): what they told Keel may answer it.
pub fn about_the_user(text: &str) -> bool {
    let w = words(text);
    const ASKS: &[&str] = &["what", "whats", "who", "whos", "where", "when", "which", "do", "does", "did", "am", "is", "are"];
    let question = text.trim_end().ends_with('?') || w.first().is_some_and(|f| ASKS.contains(&f.as_str()));
    let personal = w.iter().any(|x| ["my", "i", "me", "mine", "im"].contains(&x.as_str()));
    // Asking for advice ("how should I celebrate my wife's birthday?") is not asking what they said.
    const ADVICE: &[&str] = &["how", "should", "could", "can", "would", "why", "recommend", "suggest", "ideas", "idea", "help", "tips", "ways", "best"];
    question && personal && w.len() <= 20 && !w.iter().any(|x| ["you", "your"].contains(&x.as_str()) || ADVICE.contains(&x.as_str()))
}

/// "List my files", "which files do I have?", "what files are in my folder?"
fn list_request(w: &[String]) -> bool {
    const LIST: &[&str] = &[
        "list", "show", "me", "my", "the", "files", "file", "names", "of", "in", "folder", "which", "what", "whats", "do", "i", "have", "are", "there",
        "please", "any", "them", "all", "can", "you", "could", "see", "tell", "is", "inside", "got", "your", "lists", "hey", "and",
    ];
    let asks = w.iter().any(|x| ["list", "show", "which", "what", "whats", "any", "see"].contains(&x.as_str()));
    w.iter().any(|x| x == "files") && asks && w.iter().all(|x| LIST.contains(&x.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(files: &[String]) -> Context<'_> {
        Context { files, zone: Some("Europe/Lisbon") }
    }

    #[test]
    fn a_named_file_is_read_and_a_column_total_is_read_then_added() {
        let files = vec!["order.txt".to_owned(), "expenses-1.csv".to_owned(), "notes/todo.txt".to_owned()];
        let r = route("What is the order number in order.txt?", &cx(&files)).expect("a read");
        assert_eq!((r.tool.as_str(), &r.arguments, r.then.is_none()), ("files_read", &serde_json::json!({ "path": "order.txt" }), true));
        let r = route("Read notes/todo.txt please", &cx(&files)).expect("a read by path");
        assert_eq!(r.arguments["path"], "notes/todo.txt");
        let r = route("Sum the amount column of expenses-1.csv.", &cx(&files)).expect("a total");
        assert_eq!(r.then, Some(Then::SumColumn { words: vec!["amount".into()] }));
        let r = route("What is the total of the amounts in expenses-1.csv? Use the calculator.", &cx(&files)).expect("a total");
        assert_eq!(r.then, Some(Then::SumColumn { words: vec!["amounts".into()] }));
    }

    #[test]
    fn files_that_are_not_there_or_changes_are_left_to_the_model() {
        let files = vec!["order.txt".to_owned(), "notes.txt".to_owned()];
        for message in [
            "What is in budget.txt?",
            "Delete order.txt",
            "Write 'hello' to notes.txt",
            "Rename notes.txt to old.txt",
            "Compare order.txt and notes.txt",
            "Add a total row to expenses-1.csv",
            "I called it order.txt because of the shop",
            "notes",
        ] {
            assert_eq!(route(message, &cx(&files)), None, "{message}");
        }
    }

    #[test]
    fn a_request_for_the_list_is_a_listing() {
        for message in ["List the files in my files folder.", "Which files do I have?", "Do I have any files? List them.", "Show me the names of my files."] {
            assert_eq!(route(message, &cx(&[])).map(|r| r.tool), Some("files_list".into()), "{message}");
        }
        for message in ["Which files should I back up first?", "Files are a pain to organise", "What is a file system?"] {
            assert_eq!(route(message, &cx(&[])), None, "{message}");
        }
    }

    #[test]
    fn calendar_questions_go_to_the_clock_in_the_users_zone() {
        let r = route("What day of the week is 2025-12-25?", &cx(&[])).expect("a weekday");
        assert_eq!((r.tool.as_str(), &r.arguments), ("datetime", &serde_json::json!({ "at": "2025-12-25" })));
        let r = route("What is today's date?", &cx(&[])).expect("today");
        assert_eq!(r.arguments, serde_json::json!({ "timezone": "Europe/Lisbon" }));
    }
}
