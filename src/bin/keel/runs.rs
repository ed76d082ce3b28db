//! `keel runs …`: the recorded runs (list, show) and what can be done with one (replay, resume, answer, fork).
//!
//! A run continued here streams its answer like `keel ask`; one that pauses for the user is asked about on
//! the terminal when there is one, and otherwise exits with code 3 saying how to answer it.

use clap::Subcommand;
use keel::orchestration::events::RunEvent;
use keel::trace::StepRow;
use keel::{App, AppError, ErrorKind, GenerationSettings, Replay, RunDetail, RunSummary, TurnResult, UserAnswer, UserRequest};

use crate::output::{self, Human, Shown, Text};
use crate::turn;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// The most recent runs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One run's steps, read from its event log.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
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

impl RunsCommand {
    pub fn json(&self) -> bool {
        match self {
            RunsCommand::List { json, .. }
            | RunsCommand::Show { json, .. }
            | RunsCommand::Replay { json, .. }
            | RunsCommand::Resume { json, .. }
            | RunsCommand::Answer { json, .. }
            | RunsCommand::Fork { json, .. } => *json,
        }
    }
}

impl Human for Vec<RunSummary> {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for r in self {
            text.line(format!(
                "{:>6}  {:<9} conv {:<5} {:>5}+{:<5} tok  {}",
                r.id,
                r.status.as_str(),
                r.conversation_id,
                r.prompt_tokens,
                r.completion_tokens,
                r.input.chars().take(60).collect::<String>().replace('\n', " ")
            ));
        }
        text
    }
}

/// A run's steps as a table, with its outcome and answer.
fn show_run(detail: &RunDetail, steps: &[StepRow]) -> Text {
    let mut text = Text::new();
    let r = &detail.run;
    text.line(format!("run {} · conversation {} · {}", r.id, r.conversation_id, r.status.as_str()));
    text.line(format!("input: {}", r.input));
    let start = detail.events.first().map(|e| e.at_ms).unwrap_or(0);
    text.line(format!("{:>4}  {:<14} {:>9} {:>9} {:>8} {:>8} {:>10}", "seq", "kind", "at", "took", "prompt", "reused", "completion"));
    for row in steps {
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        text.line(format!(
            "{:>4}  {:<14} {:>6} ms {:>9} {:>8} {:>8} {:>10}",
            row.seq,
            row.kind,
            row.at_ms - start,
            row.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            opt(row.prompt_tokens),
            opt(row.cached_prompt_tokens),
            opt(row.completion_tokens)
        ));
    }
    if let Some(RunEvent::RunFinished { outcome, answer, .. }) = detail.events.last().map(|e| &e.event) {
        text.line(format!("outcome: {}", serde_json::to_string(outcome).unwrap_or_default()));
        if let Some(a) = answer {
            text.line(format!("answer: {a}"));
        }
    }
    text
}

impl Human for Replay {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for e in &self.events {
            text.line(format!("{:>4}  {}", e.seq, serde_json::to_string(&e.event).unwrap_or_default()));
        }
        let state = &self.state;
        text.line(format!(
            "state: step {} · tool calls {} · tokens {} · pending {}",
            state.step,
            state.budget_used.tool_calls,
            state.budget_used.tokens(),
            serde_json::to_string(&state.pending).unwrap_or_default()
        ));
        text.line(format!("outcome: {}", serde_json::to_string(&state.outcome).unwrap_or_default()));
        text.line(format!("consistent: {} · matches the stored projection: {}", self.consistent, self.matches_projection));
        text
    }
}

/// How the end of a continued run reads, after its streamed answer: its outcome and what it waits for.
fn continued(result: &TurnResult) -> Text {
    let mut text = Text::new();
    text.line(turn::unstreamed_answer(result));
    if let Some(outcome) = &result.outcome {
        text.note(format!("[run {} {}]", result.run_id, serde_json::to_string(outcome).unwrap_or_default()));
    }
    text.extend(turn::waiting(result));
    text
}

/// Settles a continued run (asking on the terminal while it waits), shows it, and exits with code 3 if it
/// still waits.
fn finish(app: &App, result: TurnResult, settings: &GenerationSettings, json: bool) -> Result<(), AppError> {
    let result = turn::settle(app, result, settings, json)?;
    output::emit(json, &Shown::new(&result, continued(&result)));
    if result.waiting.is_some() {
        std::process::exit(turn::EXIT_WAITING);
    }
    Ok(())
}

/// The answer the flags give to what the run waits for.
fn answer_from(id: i64, request: Option<UserRequest>, approve: bool, deny: bool, reply: Option<String>, note: Option<String>) -> Result<UserAnswer, AppError> {
    match (request, approve, deny, reply) {
        (Some(UserRequest::Approval { call_id, .. }), true, _, _) => Ok(UserAnswer::Approve { call_id }),
        (Some(UserRequest::Approval { call_id, .. }), _, true, _) => Ok(UserAnswer::Deny { call_id, note }),
        (Some(UserRequest::Question { .. }), _, _, Some(text)) => Ok(UserAnswer::Reply { text }),
        (Some(r), ..) => Err(AppError::new(
            ErrorKind::InvalidInput,
            format!("run {id} waits for: {}", turn::describe(&r)),
            Some("answer an approval with --approve or --deny, a question with --reply TEXT".into()),
        )),
        (None, ..) => Err(AppError::new(ErrorKind::InvalidInput, format!("run {id} is not waiting for an answer"), None)),
    }
}

pub fn run(command: RunsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    let settings = GenerationSettings::default();
    match command {
        RunsCommand::List { limit, json } => output::emit(json, &app.list_runs(limit)?),
        RunsCommand::Show { id, json } => {
            let detail = app.get_run(id)?;
            let text = show_run(&detail, &app.timeline(id)?);
            output::emit(json, &Shown::new(&detail, text));
        }
        RunsCommand::Replay { id, json } => output::emit(json, &app.replay_run(id)?),
        RunsCommand::Resume { id, all, json } => {
            let ids = match (id, all) {
                (Some(id), _) => vec![id],
                (None, true) => app.interrupted_runs()?,
                (None, false) => {
                    return Err(AppError::new(ErrorKind::InvalidInput, "name a run, or pass --all", Some("`keel runs list` shows interrupted runs".into())))
                }
            };
            // Several runs for a script are one JSON document (an array), each run resumed without streaming.
            if json && ids.len() != 1 {
                let mut results = Vec::new();
                for id in ids {
                    results.push(app.resume_run(id, &settings, &mut |_| {})?);
                }
                output::print_json(&results);
                return Ok(());
            }
            for id in ids {
                let result = app.resume_run(id, &settings, &mut turn::stream_tokens(!json))?;
                finish(&app, result, &settings, json)?;
            }
        }
        RunsCommand::Answer { id, approve, deny, reply, note, json } => {
            let answer = answer_from(id, app.run_waiting(id)?, approve, deny, reply, note)?;
            let result = app.answer_run(id, answer, &settings, &mut turn::stream_tokens(!json))?;
            finish(&app, result, &settings, json)?;
        }
        RunsCommand::Fork { id, from_step, message, backend, json } => {
            let result = app.fork_run(id, from_step, message.as_deref(), backend.as_deref(), &settings, &mut turn::stream_tokens(!json))?;
            finish(&app, result, &settings, json)?;
        }
    }
    Ok(())
}
