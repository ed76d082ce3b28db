//! `keel bench orchestration` (the orchestrator's own per-step cost, two commit modes side by side) and
//! `keel eval tools` (the embedded model's tool calls under constrained decoding).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel::{App, AppError, ErrorKind};

use super::print_json;

#[derive(Args)]
pub struct OrchestrationArgs {
    /// Tool steps per run.
    #[arg(long, default_value_t = 20)]
    steps: u32,
    #[arg(long, default_value_t = 15)]
    runs: u32,
    #[arg(long)]
    json: bool,
}

impl OrchestrationArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(Subcommand)]
pub enum EvalCommand {
    /// One ReAct step of the embedded model per prompt, under constrained decoding: do its tool calls parse and
    /// validate, and does it pick the right tool?
    Tools {
        #[arg(long, default_value = "tests/evals/tools/prompts.jsonl")]
        dataset: PathBuf,
        /// Write the JSON report here too.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The injection scorer on the committed guard set: per layer, the flag threshold chosen on the validation
    /// split at 1% false positives, and detection of direct and indirect injections on the test split.
    Guard {
        #[arg(long, default_value = "tests/evals/guard/guard.jsonl")]
        dataset: PathBuf,
        /// Write the JSON report here too.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fit the combiner afresh on the train split (regularisation and flag threshold chosen on validation),
        /// measure that fit, and write it to FILE (the committed one is src/interface/guard_combiner.json).
        #[arg(long, value_name = "FILE")]
        fit: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The intent detector on the test split of the committed intent set: accuracy and the confusion matrix.
    Intent {
        #[arg(long)]
        json: bool,
    },
}

impl EvalCommand {
    pub fn json(&self) -> bool {
        match self {
            EvalCommand::Tools { json, .. } | EvalCommand::Guard { json, .. } | EvalCommand::Intent { json } => *json,
        }
    }
}

fn err(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorKind::Internal, e.to_string(), None)
}

pub fn orchestration(args: OrchestrationArgs) -> Result<(), AppError> {
    let dir = tempfile_dir()?;
    let tty = std::io::stderr().is_terminal();
    let report = keel::eval::overhead::run(&dir, args.steps, args.runs, &mut |mode, done, total| {
        if tty {
            eprint!("\r\x1b[2K{mode}: run {done}/{total}");
        }
    })
    .map_err(err)?;
    let _ = std::fs::remove_dir_all(&dir);
    if tty {
        eprintln!();
    }
    if args.json {
        print_json(&report);
    } else {
        for m in &report.modes {
            println!(
                "{:<62} {:>5} steps  {:.1} events/step  p50 {:>6} µs  p95 {:>6} µs",
                m.commit_mode, m.steps, m.events_per_step, m.step_p50_us, m.step_p95_us
            );
        }
        println!("p95 ratio (Keel / every event flushed): {:.2}", report.p95_ratio);
    }
    Ok(())
}

/// A scratch folder for the benchmark's databases, removed afterwards.
fn tempfile_dir() -> Result<PathBuf, AppError> {
    let dir = std::env::temp_dir().join(format!("keel-bench-orchestration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(err)?;
    Ok(dir)
}

/// Ends the progress line, writes the report to `out` when given, and prints it as JSON when asked; true
/// when it was printed (otherwise the caller prints its table).
fn emit(report: &impl serde::Serialize, out: Option<&std::path::Path>, json: bool, tty: bool) -> Result<bool, AppError> {
    if tty {
        eprintln!();
    }
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_string_pretty(report).unwrap_or_default()).map_err(err)?;
    }
    if json {
        print_json(report);
    }
    Ok(json)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub fn eval(command: EvalCommand) -> Result<(), AppError> {
    let tty = std::io::stderr().is_terminal();
    let show = move |stage: &str, done: u64, total: u64| {
        if tty {
            eprint!("\r\x1b[2K{stage} {done}/{total}");
        }
    };
    match command {
        EvalCommand::Guard { dataset, out, fit, json } => {
            let app = App::open_default()?;
            let text = std::fs::read_to_string(&dataset)
                .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read {}: {e}", dataset.display()), None))?;
            let items = keel::eval::guard::load(&text).map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("{}: {e}", dataset.display()), None))?;
            let model = app.guard_model(&mut |p| show(&p.stage, p.done, p.total))?;
            let texts = keel::eval::guard::texts(&items);
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let windows = app.guard_windows(&model, &refs, &mut |d, t| show("embedding the texts' windows", d as u64, t as u64))?;
            let (report, combiner) =
                keel::eval::guard::evaluate(&model, &dataset.display().to_string(), &items, &windows, fit.is_some()).map_err(err)?;
            if let Some(path) = &fit {
                let body = serde_json::to_string_pretty(&combiner).map_err(|e| AppError::new(ErrorKind::Internal, e.to_string(), None))? + "\n";
                std::fs::write(path, body)
                    .map_err(|e| AppError::new(ErrorKind::Store, format!("cannot write the fit to {}: {e}", path.display()), None))?;
                eprintln!("fit written to {} (l2 {}, flag threshold {:.4})", path.display(), combiner.l2, combiner.flag);
            }
            if !emit(&report, out.as_deref(), json, tty)? {
                println!("{} ({:?})", report.dataset, report.counts);
                println!("{:<11} {:>9} {:>14} {:>16} {:>9}   {:>17} {:>19}", "layer", "threshold", "direct found", "indirect found", "test FPR", "direct @1% (test)", "indirect @1% (test)");
                for l in &report.layers {
                    println!(
                        "{:<11} {:>9.3} {:>14} {:>16} {:>9}   {:>17} {:>19}",
                        l.layer,
                        l.threshold,
                        pct(l.test_direct_detected),
                        pct(l.test_indirect_detected),
                        pct(l.test_false_positive_rate),
                        pct(l.test_direct_at_1pct),
                        pct(l.test_indirect_at_1pct)
                    );
                }
                println!("thresholds chosen on the validation split at 1% false positives; {} ms", report.duration_ms);
            }
        }
        EvalCommand::Intent { json } => {
            let app = App::open_default()?;
            let model = app.guard_model(&mut |p| show(&p.stage, p.done, p.total))?;
            let report = keel::eval::guard::evaluate_intent(&model).map_err(err)?;
            if tty {
                eprintln!();
            }
            if json {
                print_json(&report);
            } else {
                println!("{} test examples, accuracy {}", report.examples, pct(report.accuracy));
                println!("{:<10} {}", "true \\ got", report.labels.iter().map(|l| format!("{l:>9}")).collect::<String>());
                for (label, row) in report.labels.iter().zip(&report.confusion) {
                    println!("{label:<10} {}", row.iter().map(|c| format!("{c:>9}")).collect::<String>());
                }
                println!("decided by: {:?}", report.decided_by);
            }
        }
        EvalCommand::Tools { dataset, out, json } => {
            let app = App::open_default()?;
            let prompts = keel::eval::tool_calls::load_prompts(&dataset).map_err(|e| AppError::new(ErrorKind::InvalidInput, e, None))?;
            let model = app.local_model(&mut |p| {
                if tty {
                    eprint!("\r\x1b[2K{} {}%", p.stage, if p.total > 0 { p.done * 100 / p.total } else { 0 });
                }
            })?;
            let toolbox = app.toolbox();
            let settings = keel::GenerationSettings { max_tokens: 160, ..Default::default() };
            let report = keel::eval::tool_calls::run(model.as_ref(), &toolbox, &prompts, &settings, &mut |done, total| {
                if tty {
                    eprint!("\r\x1b[2Kprompt {done}/{total}");
                }
            })
            .map_err(err)?;
            if !emit(&report, out.as_deref(), json, tty)? {
                for r in &report.results {
                    println!("{:<12} {:<14} {:<14} {}", r.action, r.expected, r.tool.as_deref().unwrap_or("-"), r.prompt);
                }
                println!(
                    "{} prompts: {} tool calls, {} valid ({}%), right tool {} ({}%), {} answers, {} questions; p50 {} ms, p95 {} ms",
                    report.prompts,
                    report.tool_calls,
                    report.valid_tool_calls,
                    if report.tool_calls > 0 { report.valid_tool_calls * 100 / report.tool_calls } else { 100 },
                    report.right_tool,
                    report.right_tool * 100 / report.prompts.max(1),
                    report.answers,
                    report.asks,
                    report.p50_ms,
                    report.p95_ms
                );
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RemoteBenchArgs {
    /// The server's API root, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    model: String,
    /// Counted rounds (each sends every prompt once through Keel and once through the client), after a warm-up.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// The Python that has the `openai` package (default: $KEEL_LLAMA_PYTHON, else ~/.cache/keel/llama-venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The client script.
    #[arg(long, default_value = "tests/fixtures/llama/bench_client.py")]
    client: PathBuf,
    #[arg(long)]
    json: bool,
}

impl RemoteBenchArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

pub fn remote(args: RemoteBenchArgs) -> Result<(), AppError> {
    use keel::llm::remote::{RemoteBackend, RemoteConfig};
    let python = args.python.clone().or_else(|| std::env::var_os("KEEL_LLAMA_PYTHON").map(PathBuf::from)).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/keel/llama-venv/bin/python")
    });
    let config = RemoteConfig {
        name: "bench".into(),
        base_url: args.base_url.trim_end_matches('/').to_string(),
        model: args.model.clone(),
        connect_timeout: std::time::Duration::from_secs(10),
        read_timeout: std::time::Duration::from_secs(120),
        max_retries: 0,
        context_window: 4096,
        key: None,
        key_problem: None,
    };
    let backend = RemoteBackend::new(config)?;
    let peer = keel::eval::remote_bench::Peer { python, script: args.client.clone() };
    let tty = std::io::stderr().is_terminal();
    let report = keel::eval::remote_bench::run(&backend, &peer, args.rounds, args.max_tokens, &mut |done, total| {
        if tty {
            eprint!("\r\x1b[2Kround {done}/{total}");
        }
    })
    .map_err(|e| AppError::new(ErrorKind::Backend, e, Some("check the server with `curl BASE_URL/models`".into())))?;
    if tty {
        eprintln!();
    }
    if args.json {
        print_json(&report);
        return Ok(());
    }
    for s in [&report.keel, &report.peer] {
        println!(
            "{:<14} {:>3} requests  TTFT p50 {:>7.1} ms  p95 {:>7.1} ms  {:>6.1} tokens/s p50",
            s.name,
            s.samples.len(),
            s.ttft_p50_ms,
            s.ttft_p95_ms,
            s.tokens_per_s_p50
        );
    }
    println!(
        "Keel's TTFT overhead at p50: {:+.1} ms ({:.3}x); tokens/s ratio {:.3}; within 5% or 5 ms: {}",
        report.ttft_overhead_ms,
        report.ttft_ratio,
        report.tokens_per_s_ratio,
        if report.within_target { "yes" } else { "no" }
    );
    Ok(())
}
