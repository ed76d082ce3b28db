//! `keel ask` (one question, the answer streamed, or the whole turn as JSON) and `keel chat` (a conversation
//! in the terminal, a line per message), with the generation settings they share.
//!
//! Both read the message as bytes and only check that it is UTF-8 (`App::decode_input`); normalising it,
//! refusing an empty or over-long one and deciding its intent are `App::send_message`'s, once.

use std::ffi::OsString;
use std::io::{IsTerminal, Read};

use clap::Args;
use keel::interface::MAX_MESSAGE_BYTES;
use keel::shared::io::BoundedLine;
use keel::{App, AppError, ErrorKind, GenerationSettings};

use crate::output::{self, Shown};
use crate::progress::load_with_progress;
use crate::turn::{self, RunArgs};

#[derive(Args)]
pub struct GenArgs {
    /// The most tokens in the answer.
    #[arg(long, default_value_t = GenerationSettings::default().max_tokens)]
    max_tokens: u32,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = GenerationSettings::default().temperature)]
    temperature: f64,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long, default_value_t = GenerationSettings::default().repeat_penalty)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = GenerationSettings::default().seed)]
    seed: u64,
    /// CPU threads for inference (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl GenArgs {
    fn settings(&self) -> GenerationSettings {
        if let Some(n) = self.threads {
            crate::set_threads(n);
        }
        GenerationSettings {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        }
    }
}

/// Ctrl-C stops the answer being generated (the run ends as stopped, with what was written); with no answer
/// being generated it quits, as a terminal user expects.
fn stop_runs_on_ctrl_c(app: &App) {
    let app = app.clone();
    let _ = ctrlc::set_handler(move || {
        if app.cancel_all() == 0 {
            std::process::exit(130);
        }
    });
}

/// The most of stdin or of one chat line that is read as a message: well over [`MAX_MESSAGE_BYTES`] (which
/// applies after normalising and trimming), so that only a message that could never be sent is cut off unread.
const MAX_READ_BYTES: usize = 1024 * 1024;

fn too_long(bytes: u64) -> AppError {
    AppError::new(
        ErrorKind::InvalidInput,
        format!("the message is {} or more; the longest message Keel takes is {}", App::size_text(bytes), App::size_text(MAX_MESSAGE_BYTES as u64)),
        Some("import a long text as a document with `keel memory import FILE` and ask about it".into()),
    )
}

/// The message as bytes: from the argument, or stdin for `-` or none (at most [`MAX_READ_BYTES`] of it is
/// read). Bytes, so that invalid UTF-8 is reported with its offset rather than by the argument parser.
fn message_bytes(message: Option<OsString>) -> Result<Vec<u8>, AppError> {
    use std::os::unix::ffi::OsStringExt;
    match message {
        Some(m) if m != "-" => Ok(m.into_vec()),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_READ_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
            if buf.len() > MAX_READ_BYTES {
                return Err(too_long(buf.len() as u64));
            }
            Ok(buf)
        }
    }
}

pub fn ask(message: Option<OsString>, conversation: Option<i64>, gen: &GenArgs, run: &RunArgs, json: bool) -> Result<(), AppError> {
    let bytes = message_bytes(message)?;
    let text = App::decode_input(&bytes)?;
    let settings = gen.settings();
    let app = App::open_default()?;
    if !json && app.needs_local_model(run.backend())? {
        load_with_progress(&app)?;
    }
    stop_runs_on_ctrl_c(&app);
    let result = app.send_message(conversation, text, &settings, &run.options(), &mut run.observe(turn::stream_tokens(!json)))?;
    let result = turn::settle(&app, result, &settings, json)?;
    // The result, failed or not, is the command's output; a failed run is an error exit too.
    output::emit(json, &Shown::new(&result, turn::ended(&result)));
    if result.waiting.is_some() {
        std::process::exit(turn::EXIT_WAITING);
    }
    match turn::failure(&result) {
        Some(e) => output::failed_after_result(json, e),
        None => Ok(()),
    }
}

pub fn chat(conversation: Option<i64>, gen: &GenArgs, run: &RunArgs) -> Result<(), AppError> {
    let settings = gen.settings();
    let app = App::open_default()?;
    if app.needs_local_model(run.backend())? {
        load_with_progress(&app)?;
    }
    stop_runs_on_ctrl_c(&app);
    let mut conversation = conversation;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    eprintln!("Keel chat. Ctrl-C stops an answer; Ctrl-D or /quit leaves; /new starts a new conversation.");
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let report = |e: AppError| eprintln!("error: {}\nhint: {}", e.message, e.hint.unwrap_or_default());
    loop {
        if interactive {
            eprint!("> ");
        }
        let read = App::read_input_line(&mut input, &mut line, MAX_READ_BYTES)
            .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
        match read {
            None => break,
            Some(BoundedLine::TooLong(bytes)) => {
                report(too_long(bytes));
                continue;
            }
            Some(BoundedLine::Line) => {}
        }
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let trimmed = String::from_utf8_lossy(&line).trim().to_owned();
        match trimmed.as_str() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/new" => {
                conversation = None;
                continue;
            }
            _ => {}
        }
        // A bad line is reported and the chat goes on; nothing is lost.
        let text = match App::decode_input(&line) {
            Ok(text) => text,
            Err(e) => {
                report(e);
                continue;
            }
        };
        let sent = app.send_message(conversation, text, &settings, &run.options(), &mut run.observe(turn::stream_tokens(true)));
        match sent.and_then(|r| turn::settle(&app, r, &settings, false)) {
            Ok(result) => {
                conversation = Some(result.conversation_id);
                output::emit(false, &Shown::new(&result, turn::ended(&result)));
            }
            Err(e) => report(e),
        }
    }
    Ok(())
}
