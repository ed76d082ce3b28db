//! `keel ask` (one question, the answer streamed, or the whole turn as JSON) and `keel chat` (a conversation
//! in the terminal, a line per message), with the generation settings they share.
//!
//! Both read the message as bytes and only check that it is UTF-8 (`App::decode_input`); normalising it,
//! refusing an empty or over-long one and deciding its intent are `App::send_message`'s, once.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Read};

use clap::Args;
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

/// The message as bytes: from the argument, or stdin for `-` or none. Bytes, so that invalid UTF-8 is reported
/// with its offset rather than by the argument parser.
fn message_bytes(message: Option<OsString>) -> Result<Vec<u8>, AppError> {
    use std::os::unix::ffi::OsStringExt;
    match message {
        Some(m) if m != "-" => Ok(m.into_vec()),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
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
    let result = app.send_message(conversation, text, &settings, &run.options(), &mut turn::stream_tokens(!json))?;
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
    let mut lines = stdin.lock().split(b'\n');
    let report = |e: AppError| eprintln!("error: {}\nhint: {}", e.message, e.hint.unwrap_or_default());
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
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
        let sent = app.send_message(conversation, text, &settings, &run.options(), &mut turn::stream_tokens(true));
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
