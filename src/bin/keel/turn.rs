//! A turn on the terminal, shared by `keel ask`, `keel chat` and the `keel runs` commands that continue a run:
//! the run options (`--mode`, `--allow`, the bounds, `--backend`), the answer streamed as it is written, the
//! approval prompt, and how a turn's end reads.
//!
//! A run that pauses for the user (a side-effecting call to approve, a question) is asked about on the terminal
//! when there is one; otherwise the command prints what the run waits for and exits with code 3, and
//! `keel runs answer` continues it later, also after a restart.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, ValueEnum};
use keel::{
    App, AppError, ErrorKind, FailureKind, GenerationSettings, Limits, RunMode, RunOptions, RunOutcome, TurnEvent, TurnResult, UserAnswer,
    UserRequest,
};

use crate::output::Text;

/// Exit code of a command whose run waits for the user.
pub const EXIT_WAITING: i32 = 3;

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Chosen from the message: tasks that need tools get ReAct, anything else chat.
    Auto,
    Chat,
    React,
    Plan,
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// Let this side-effecting tool run without asking (repeatable). Untrusted content in the context still asks.
    #[arg(long = "allow", value_name = "TOOL")]
    allow: Vec<String>,
    #[arg(long, default_value_t = Limits::default().max_steps)]
    max_steps: u32,
    #[arg(long, default_value_t = Limits::default().max_tool_calls)]
    max_tool_calls: u32,
    /// The most prompt + completion tokens of the whole run.
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    max_run_tokens: u32,
    #[arg(long, default_value_t = Limits::default().max_wall_ms)]
    max_wall_ms: u64,
    #[arg(long, default_value_t = Limits::default().tool_timeout_ms)]
    tool_timeout_ms: u64,
    /// The backend to run on: `local` (the embedded model) or a profile from `keel backends list`
    /// (default: `keel backends default`).
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Print each step of the run to stderr as soon as it is recorded, one JSON line each (`{"seq", "event",
    /// …}`, the form `keel runs show` lists in JSON), for programs that follow a run.
    #[arg(long)]
    events: bool,
}

impl RunArgs {
    /// `on_event`, and with `--events` each recorded step printed to stderr first.
    pub fn observe(&self, mut on_event: impl FnMut(TurnEvent)) -> impl FnMut(TurnEvent) {
        let events = self.events;
        move |event| {
            if let (true, TurnEvent::Step { event: stored }) = (events, &event) {
                if let Ok(line) = serde_json::to_string(stored) {
                    // One write per line, so a line on stderr is whole or absent.
                    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
                }
            }
            on_event(event)
        }
    }

    pub fn options(&self) -> RunOptions {
        let mode = match self.mode {
            ModeArg::Auto => None,
            ModeArg::Chat => Some(RunMode::Chat),
            ModeArg::React => Some(RunMode::React),
            ModeArg::Plan => Some(RunMode::Plan),
        };
        RunOptions {
            mode,
            limits: Limits {
                max_steps: self.max_steps,
                max_tool_calls: self.max_tool_calls,
                max_tokens: self.max_run_tokens,
                max_wall_ms: self.max_wall_ms,
                tool_timeout_ms: self.tool_timeout_ms,
                ..Limits::default()
            },
            auto_approve: self.allow.clone(),
            backend: self.backend.clone(),
        }
    }

    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }
}

/// Whether the last turn's answer went to stdout as it was written (a chat run), or is still to be printed (a run
/// with tools, whose streamed tokens are JSON actions).
static STREAMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The answer, when the turn did not stream it (a run with tools); empty when it is already on the terminal.
pub fn unstreamed_answer(result: &TurnResult) -> String {
    if STREAMED.load(std::sync::atomic::Ordering::SeqCst) { String::new() } else { result.answer.clone() }
}

/// What a turn's events do on the terminal: with `show`, a chat run's tokens are written to stdout as they come;
/// a run with tools streams nothing, and `ended` prints its answer whole.
pub fn stream_tokens(show: bool) -> impl FnMut(TurnEvent) {
    use std::sync::atomic::Ordering;
    STREAMED.store(true, Ordering::SeqCst);
    move |event| match &event {
        TurnEvent::Step { event } => match &event.event {
            keel::orchestration::events::RunEvent::RunStarted { mode, .. } => STREAMED.store(!mode.uses_tools(), Ordering::SeqCst),
            // A streamed reply that failed a check is replaced: the replacement is printed whole when the turn ends.
            keel::orchestration::events::RunEvent::Verified { passed: false, check, .. } if check == keel::orchestration::routed::RECALLED_FACT => {
                if STREAMED.swap(false, Ordering::SeqCst) && show {
                    println!("\n[replaced: the reply did not state what you told me]");
                }
            }
            _ => {}
        },
        TurnEvent::Token { text } if show && STREAMED.load(Ordering::SeqCst) => {
            let mut out = std::io::stdout();
            let _ = write!(out, "{text}");
            let _ = out.flush();
        }
        _ => {}
    }
}

/// While the run waits and a person is at the terminal (and no JSON was asked for), asks them and continues
/// the run.
pub fn settle(app: &App, mut result: TurnResult, settings: &GenerationSettings, json: bool) -> Result<TurnResult, AppError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !json;
    while let (Some(request), true) = (result.waiting.clone(), interactive) {
        let answer = ask_terminal(&request)?;
        println!();
        result = app.answer_run(result.run_id, answer, settings, &mut stream_tokens(true))?;
    }
    Ok(result)
}

/// What a paused run waits for and how to answer it (nothing for a run that does not wait).
pub fn waiting(result: &TurnResult) -> Text {
    let mut text = Text::new();
    if let Some(request) = &result.waiting {
        text.note(format!("[run {} waits for you: {}]", result.run_id, describe(request)));
        let how = match request {
            UserRequest::Approval { .. } => "--approve or --deny",
            UserRequest::Question { .. } => "--reply TEXT",
        };
        text.note(format!("[answer with `keel runs answer {} {how}`]", result.run_id));
    }
    text
}

/// How the end of a turn of `keel ask` or `keel chat` reads, after its streamed answer: a partial or stopped
/// outcome, the run's figures, and what it waits for.
pub fn ended(result: &TurnResult) -> Text {
    let mut text = Text::new();
    text.line(unstreamed_answer(result));
    match &result.outcome {
        Some(RunOutcome::Partial { reason }) => {
            text.note(format!("[partial: {reason}]"));
        }
        Some(RunOutcome::Stopped { reason }) => {
            text.note(format!("[stopped: {reason}]"));
        }
        Some(RunOutcome::Answered | RunOutcome::Failed { .. }) | None => {}
    }
    text.note(format!(
        "[run {} · {} prompt + {} completion tokens · {} ms]",
        result.run_id, result.prompt_tokens, result.completion_tokens, result.duration_ms
    ));
    text.extend(waiting(result));
    text
}

/// A run that failed as the error the command exits with: its recorded failure, its kind kept.
pub fn failure(result: &TurnResult) -> Option<AppError> {
    match &result.outcome {
        Some(RunOutcome::Failed { error, kind }) => Some(AppError::new(
            match kind {
                FailureKind::Backend => ErrorKind::Backend,
                FailureKind::Crash => ErrorKind::Internal,
                FailureKind::Tools => ErrorKind::Tool,
                FailureKind::Log => ErrorKind::Store,
            },
            format!("run {} failed: {error}", result.run_id),
            Some(format!("see its steps with `keel runs show {}`", result.run_id)),
        )),
        _ => None,
    }
}

pub fn describe(request: &UserRequest) -> String {
    match request {
        UserRequest::Approval { tool, arguments, effect, reason, .. } => {
            format!("approve {tool}({arguments}) [{effect:?}]? {reason}")
        }
        UserRequest::Question { question, .. } => question.clone(),
    }
}

fn ask_terminal(request: &UserRequest) -> Result<UserAnswer, AppError> {
    let read = || {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
        Ok::<_, AppError>(line.trim().to_owned())
    };
    match request {
        UserRequest::Approval { call_id, .. } => {
            eprint!("\n{} [y/N] ", describe(request));
            let yes = matches!(read()?.to_lowercase().as_str(), "y" | "yes");
            Ok(if yes { UserAnswer::Approve { call_id: call_id.clone() } } else { UserAnswer::Deny { call_id: call_id.clone(), note: None } })
        }
        UserRequest::Question { question, .. } => {
            eprint!("\n{question}\n> ");
            Ok(UserAnswer::Reply { text: read()? })
        }
    }
}
