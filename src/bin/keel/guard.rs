//! `keel guard`: JSON lines in, one verdict line out per input line, in order, for batch evaluation and
//! scripts. A line that cannot be read (not UTF-8, not JSON, no `text`, an unknown `source`) gets
//! `{"line": N, "error": …}` and the rest go on. Lines are checked in batches so the embedder works in bulk.

use std::io::{BufRead, Write};
use std::time::Instant;

use clap::Args;
use keel::interface::guard::Source;
use keel::{App, AppError, ErrorKind};
use serde_json::{json, Value};

#[derive(Args)]
pub struct GuardArgs {
    /// Skip the similarity layer and the intent centroids (no embedding model needed; much faster).
    #[arg(long)]
    patterns_only: bool,
    /// Lines checked together.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

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

pub fn run(args: GuardArgs) -> Result<(), AppError> {
    let app = App::open_default()?;
    let started = Instant::now();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut n, mut lines, mut bad) = (0usize, 0usize, 0usize);
    // Whether a progress line (loading the model) is showing, to end it before the summary.
    let mut progress = false;
    let mut buf = Vec::new();
    loop {
        let mut batch: Vec<Line> = Vec::new();
        let mut eof = false;
        while batch.len() < args.batch.max(1) {
            buf.clear();
            if input.read_until(b'\n', &mut buf).map_err(err)? == 0 {
                eof = true;
                break;
            }
            n += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(read_line(n, line));
        }
        let items: Vec<(String, Source)> =
            batch.iter().filter_map(|l| if let Line::Item(t, s) = l { Some((t.clone(), *s)) } else { None }).collect();
        let mut reports = app
            .guard_texts(&items, args.patterns_only, &mut |p| {
                progress = true;
                eprint!("\r\x1b[2K{} {}/{}", p.stage, p.done, p.total)
            })?
            .into_iter();
        for line in batch {
            let value = match line {
                Line::Item(..) => serde_json::to_value(reports.next().expect("one report per item")).map_err(err)?,
                Line::Bad(v) => {
                    bad += 1;
                    v
                }
            };
            lines += 1;
            serde_json::to_writer(&mut out, &value).map_err(err)?;
            out.write_all(b"\n").map_err(err)?;
        }
        out.flush().map_err(err)?;
        if eof {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{lines} lines ({bad} unreadable) in {secs:.2} s: {:.0} lines/s", lines as f64 / secs.max(1e-9));
    Ok(())
}
