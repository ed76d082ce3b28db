//! `keel guard`: JSON lines in, one verdict line out per input line, in order, for batch evaluation and
//! scripts. A line that cannot be read (not UTF-8, not JSON, no `text`, an unknown `source`, longer than
//! [`MAX_LINE_BYTES`]) gets `{"line": N, "error": …}` and the rest go on. Each answer is written and flushed as
//! soon as it is computed, so whatever happens to a later line, the earlier answers are out. A line over the
//! limit is skipped as it is read, never held whole: memory stays bounded whatever the input. The lines already
//! waiting in the input (up to `--batch`) are checked together, their windows embedded in one pass; keel guard
//! never waits for more input before answering the lines it has.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use clap::Args;
use keel::interface::guard::Source;
use keel::shared::io::BoundedLine;
use keel::{App, AppError, ErrorKind};
use serde_json::{json, Value};

#[derive(Args)]
pub struct GuardArgs {
    /// Skip the similarity layer and the intent centroids (no embedding model needed; much faster).
    #[arg(long)]
    patterns_only: bool,
    /// The most lines checked together, their texts embedded in one pass. Only lines already waiting whole in
    /// the input are taken: keel guard never waits for more before answering, so a program can write one line
    /// and wait for its answer, while a file piped in is checked many lines at a time. 1 checks each line alone.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

/// How much of the input is read at once; the lines waiting in it are what a batch takes.
const READ_AHEAD_BYTES: usize = 256 * 1024;

/// The longest line `keel guard` checks: 16 MiB of JSON. A longer one is answered with an error.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

enum Line {
    Item(String, Source),
    Bad(Value),
}

fn read_line(n: usize, bytes: &[u8]) -> Line {
    let bad = |error: String| Line::Bad(json!({"line": n, "error": error}));
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bad("the line is not valid UTF-8".into());
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(format!("the line is not JSON: {e}")),
    };
    let Some(t) = v.get("text").and_then(Value::as_str) else {
        return bad("the line has no \"text\" string".into());
    };
    let source = match v.get("source").and_then(Value::as_str) {
        None => Source::User,
        Some(s) => match Source::parse(s).filter(|s| *s != Source::System) {
            Some(s) => s,
            None => return bad(format!("unknown source {s:?}: use user, document, tool, memory or web")),
        },
    };
    Line::Item(t.to_owned(), source)
}

fn err(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorKind::Internal, e.to_string(), None)
}

/// Writes one answer line and flushes it, so that it is out whatever happens next.
fn answer(out: &mut impl Write, value: &Value) -> Result<(), AppError> {
    serde_json::to_writer(&mut *out, value).map_err(err)?;
    out.write_all(b"\n").map_err(err)?;
    out.flush().map_err(err)
}

pub fn run(args: GuardArgs) -> Result<(), AppError> {
    let app = App::open_default()?;
    let started = Instant::now();
    // Whether a progress line (loading the model, checking) is showing, to end it before the summary.
    let mut progress = false;
    let checker = app.guard_checker(args.patterns_only, &mut |p| {
        progress = true;
        eprint!("\r\x1b[2K{} {}/{}", p.stage, p.done, p.total)
    })?;
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(READ_AHEAD_BYTES, stdin.lock());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut n, mut lines, mut bad, mut batches) = (0usize, 0usize, 0usize, 0usize);
    let mut buf = Vec::new();
    loop {
        let mut batch: Vec<Line> = Vec::new();
        let mut eof = false;
        while batch.len() < args.batch.max(1) {
            // A line more only when it is already there whole: with lines to answer, never wait for input.
            if !batch.is_empty() && !input.buffer().contains(&b'\n') {
                break;
            }
            let Some(read) = App::read_input_line(&mut input, &mut buf, MAX_LINE_BYTES).map_err(err)? else {
                eof = true;
                break;
            };
            n += 1;
            if let BoundedLine::TooLong(bytes) = read {
                let error = format!(
                    "the line is {}; the longest line keel guard checks is {}: split the text into several lines",
                    App::size_text(bytes),
                    App::size_text(MAX_LINE_BYTES as u64)
                );
                batch.push(Line::Bad(json!({"line": n, "error": error})));
                // A long line ends the read-ahead, so its neighbours' answers are not held back behind it.
                break;
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let big = line.len() > 1024 * 1024;
            batch.push(read_line(n, line));
            if big {
                break;
            }
        }
        let total = batch.len();
        batches += usize::from(total > 0);
        let texts: Vec<(&str, Source)> =
            batch.iter().filter_map(|l| if let Line::Item(t, s) = l { Some((t.as_str(), *s)) } else { None }).collect();
        let at: Vec<usize> = batch.iter().enumerate().filter(|(_, l)| matches!(l, Line::Item(..))).map(|(i, _)| i).collect();
        // Answers go out in input order, each as soon as it is computed: an unreadable line's answer once the
        // texts before it have theirs.
        let mut next = 0usize;
        let mut emit = |upto: usize, report: Option<Value>, out: &mut std::io::BufWriter<std::io::StdoutLock>| -> Result<(), AppError> {
            for line in &batch[next..upto] {
                if let Line::Bad(v) = line {
                    bad += 1;
                    answer(out, v)?;
                    lines += 1;
                }
            }
            next = upto;
            if let Some(value) = report {
                answer(out, &value)?;
                lines += 1;
                next += 1;
            }
            if total > 1 && std::io::stderr().is_terminal() {
                progress = true;
                eprint!("\r\x1b[2Kchecked {lines} lines");
            }
            Ok(())
        };
        let mut written: Result<(), AppError> = Ok(());
        checker.check_many(&texts, &mut |i, report| {
            if written.is_ok() {
                written = serde_json::to_value(report).map_err(err).and_then(|v| emit(at[i], Some(v), &mut out));
            }
        });
        written?;
        emit(batch.len(), None, &mut out)?;
        if eof {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{lines} lines ({bad} unreadable) in {secs:.2} s: {:.0} lines/s ({batches} batches)", lines as f64 / secs.max(1e-9));
    Ok(())
}
