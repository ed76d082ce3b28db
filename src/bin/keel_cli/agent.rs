//! The CLI's agent commands: `keel tools list|call`, the run-control subcommands of `keel runs` (replay, resume,
//! answer, fork), the run options shared by `ask` and `chat`, and the terminal's approval prompt.
//!
//! A run that pauses for the user (a side-effecting call to approve, a question) is asked about on the terminal
//! when there is one; otherwise the command prints what the run waits for and exits with code 3, and
//! `keel runs answer` continues it later, also after a restart.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand, ValueEnum};
use keel::orchestration::{TurnEvent, TurnResult};
use keel::{App, AppError, ErrorKind, GenerationSettings, Limits, RunMode, RunOptions, UserAnswer, UserRequest};

use super::print_json;

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
}

impl RunArgs {
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

/// While the run waits and a person is at the terminal, asks them and continues the run.
pub fn settle(app: &App, mut result: TurnResult, settings: &GenerationSettings, json: bool) -> Result<TurnResult, AppError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !json;
    while let (Some(request), true) = (result.waiting.clone(), interactive) {
        let answer = ask_terminal(&request)?;
        let mut out = std::io::stdout();
        println!();
        result = app.answer_run(result.run_id, answer, settings, &mut |event| {
            if let TurnEvent::Token { text } = &event {
                let _ = write!(out, "{text}");
                let _ = out.flush();
            }
        })?;
    }
    Ok(result)
}

/// Prints what a paused run waits for and how to answer it.
pub fn report_waiting(result: &TurnResult) {
    if let Some(request) = &result.waiting {
        eprintln!("[run {} waits for you: {}]", result.run_id, describe(request));
        let how = match request {
            UserRequest::Approval { .. } => "--approve or --deny",
            UserRequest::Question { .. } => "--reply TEXT",
        };
        eprintln!("[answer with `keel runs answer {} {how}`]", result.run_id);
    }
}

fn describe(request: &UserRequest) -> String {
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

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// Every tool with its schemas and effect.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Validates and runs one tool outside any run, with the same checks, timeouts and errors as inside one.
    Call {
        name: String,
        /// The arguments as a JSON object.
        arguments: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn tools(command: ToolsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ToolsCommand::List { json } => {
            let specs = app.tools_list();
            for problem in app.tool_problems() {
                eprintln!("warning: {problem}");
            }
            if json {
                print_json(&specs);
            } else {
                for s in specs {
                    let timeout = s.timeout_ms;
                    println!("{:<16} {:<9} {:>6} ms  {}", s.name, format!("{:?}", s.effect).to_lowercase(), timeout, s.description);
                }
            }
        }
        ToolsCommand::Call { name, arguments, json } => {
            let args: serde_json::Value = serde_json::from_str(&arguments).map_err(|e| {
                AppError::new(ErrorKind::InvalidInput, format!("the arguments are not valid JSON: {e}"), Some("pass one JSON object, e.g. '{\"expression\": \"2+2\"}'".into()))
            })?;
            let value = app.tools_call(&name, &args)?;
            if json {
                print_json(&value);
            } else {
                println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum RunControl {
    /// Re-folds a run from its log without calling any model or tool, and shows the same steps.
    Replay {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Continues runs that Keel stopped in the middle of (one, or every interrupted run with --all).
    Resume {
        id: Option<i64>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Answers what a paused run waits for, and continues it.
    Answer {
        id: i64,
        #[arg(long, conflicts_with_all = ["deny", "reply"])]
        approve: bool,
        #[arg(long, conflicts_with = "reply")]
        deny: bool,
        #[arg(long)]
        reply: Option<String>,
        /// A note for the model with --deny.
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Starts a new run from step N of a run, optionally with a new message from the user.
    Fork {
        id: i64,
        #[arg(long)]
        from_step: u32,
        #[arg(long)]
        message: Option<String>,
        /// The backend to continue on (default: the current one).
        #[arg(long)]
        backend: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

impl RunControl {
    pub fn json(&self) -> bool {
        match self {
            RunControl::Replay { json, .. } | RunControl::Resume { json, .. } | RunControl::Answer { json, .. } | RunControl::Fork { json, .. } => *json,
        }
    }
}

pub fn run_control(command: RunControl) -> Result<(), AppError> {
    let app = App::open_default()?;
    let settings = GenerationSettings::default();
    let stream = |json: bool| {
        move |event: TurnEvent| {
            if let (TurnEvent::Token { text }, false) = (&event, json) {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
        }
    };
    let finish = |app: &App, result: TurnResult, json: bool| -> Result<(), AppError> {
        let result = settle(app, result, &settings, json)?;
        if json {
            print_json(&result);
        } else {
            println!();
            if let Some(outcome) = &result.outcome {
                eprintln!("[run {} {}]", result.run_id, serde_json::to_string(outcome).unwrap_or_default());
            }
            report_waiting(&result);
        }
        if result.waiting.is_some() {
            std::process::exit(EXIT_WAITING);
        }
        Ok(())
    };
    match command {
        RunControl::Replay { id, json } => {
            let replay = app.replay_run(id)?;
            if json {
                print_json(&replay);
            } else {
                for e in &replay.events {
                    println!("{:>4}  {}", e.seq, serde_json::to_string(&e.event).unwrap_or_default());
                }
                println!("state: step {} · tool calls {} · tokens {} · pending {}", replay.state.step, replay.state.budget_used.tool_calls, replay.state.budget_used.tokens(), serde_json::to_string(&replay.state.pending).unwrap_or_default());
                println!("outcome: {}", serde_json::to_string(&replay.state.outcome).unwrap_or_default());
                println!("consistent: {} · matches the stored projection: {}", replay.consistent, replay.matches_projection);
            }
        }
        RunControl::Resume { id, all, json } => {
            let ids = match (id, all) {
                (Some(id), _) => vec![id],
                (None, true) => app.interrupted_runs()?,
                (None, false) => return Err(AppError::new(ErrorKind::InvalidInput, "name a run, or pass --all", Some("`keel runs list` shows interrupted runs".into()))),
            };
            if json && ids.len() != 1 {
                let mut results = Vec::new();
                for id in ids {
                    results.push(app.resume_run(id, &settings, &mut |_| {})?);
                }
                print_json(&results);
                return Ok(());
            }
            for id in ids {
                let result = app.resume_run(id, &settings, &mut stream(json))?;
                finish(&app, result, json)?;
            }
        }
        RunControl::Answer { id, approve, deny, reply, note, json } => {
            let request = app.run_waiting(id)?;
            let answer = match (request, approve, deny, reply) {
                (Some(UserRequest::Approval { call_id, .. }), true, _, _) => UserAnswer::Approve { call_id },
                (Some(UserRequest::Approval { call_id, .. }), _, true, _) => UserAnswer::Deny { call_id, note },
                (Some(UserRequest::Question { .. }), _, _, Some(text)) => UserAnswer::Reply { text },
                (Some(r), ..) => {
                    return Err(AppError::new(ErrorKind::InvalidInput, format!("run {id} waits for: {}", describe(&r)), Some("answer an approval with --approve or --deny, a question with --reply TEXT".into())))
                }
                (None, ..) => return Err(AppError::new(ErrorKind::InvalidInput, format!("run {id} is not waiting for an answer"), None)),
            };
            let result = app.answer_run(id, answer, &settings, &mut stream(json))?;
            finish(&app, result, json)?;
        }
        RunControl::Fork { id, from_step, message, backend, json } => {
            let result = app.fork_run(id, from_step, message.as_deref(), backend.as_deref(), &settings, &mut stream(json))?;
            finish(&app, result, json)?;
        }
    }
    Ok(())
}
