//! Progress of long work on stderr, never on stdout (which holds only results): a line rewritten in place on
//! a terminal, sparse whole lines otherwise so that logs stay readable.
//!
//! Three shapes, one per kind of work: [`ProgressLine`] for byte counts (model files), [`stage_printer`] for
//! counted stages (memory), and [`load_with_progress`] for loading the embedded model.

use std::io::IsTerminal;

use keel::{App, AppError, LoadProgress};

/// Byte progress of a file: rewritten in place on a terminal, every 25% otherwise.
pub struct ProgressLine {
    tty: bool,
    /// The label and percentage last shown: a line is printed only when one of them changes.
    last: (String, u64),
}

impl ProgressLine {
    pub fn new() -> Self {
        ProgressLine { tty: std::io::stderr().is_terminal(), last: (String::new(), u64::MAX) }
    }

    pub fn show(&mut self, label: &str, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(0);
        let step = if self.tty { pct } else { pct / 25 * 25 };
        if self.last.0 == label && self.last.1 == step {
            return;
        }
        let line = format!("{label}: {step}% ({:.1}/{:.1} MB)", done as f64 / 1e6, total as f64 / 1e6);
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.last = (label.to_owned(), step);
    }

    /// Ends the line with a message that stays.
    pub fn finish(&mut self, message: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{message}");
        self.last = (String::new(), u64::MAX);
    }
}

/// Counted stages (stage, done, total): a rewritten line on a terminal, one line per stage otherwise.
pub fn stage_printer() -> impl FnMut(&str, u64, u64) {
    let tty = std::io::stderr().is_terminal();
    let mut last_stage = String::new();
    let mut last_pct = u64::MAX;
    move |stage: &str, done: u64, total: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if tty {
            if pct != last_pct || stage != last_stage {
                eprint!("\r\x1b[2K{stage} {done}/{total} ({pct}%)");
                if done >= total {
                    eprintln!();
                }
            }
        } else if stage != last_stage {
            eprintln!("{stage} ({total})");
        }
        last_stage = stage.to_owned();
        last_pct = pct;
    }
}

/// A line rewritten in place while on a terminal, and nothing otherwise: for evaluations and benchmarks, whose
/// progress is only company for a person waiting. [`Spinner::end`] ends the line.
pub struct Spinner {
    tty: bool,
}

impl Spinner {
    pub fn new() -> Spinner {
        Spinner { tty: std::io::stderr().is_terminal() }
    }

    pub fn show(&self, line: std::fmt::Arguments) {
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        }
    }

    pub fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Loads the embedded model with a progress line on stderr (only when stderr is a terminal).
pub fn load_with_progress(app: &App) -> Result<(), AppError> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    app.load_model(&mut |p: LoadProgress| {
        if !tty {
            return;
        }
        let pct = (p.done * 100).checked_div(p.total).unwrap_or(0);
        let line = format!("{} {pct:>3}%", p.stage);
        if line != last {
            eprint!("\r\x1b[2K{line}");
            last = line;
        }
    })?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    Ok(())
}
