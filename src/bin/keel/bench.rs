//! `keel bench …`: Keel's speed and quality with their peers side by side in the same run — decoding
//! (llama-cpp-python), retrieval quality, memory speed (sentence-transformers, FTS5 + numpy), the
//! orchestrator's own overhead, and the remote backend (the official `openai` client).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel::app::evals::RemoteBenchOptions;
use keel::eval::bench::{DecodeBenchOptions, DecodeBenchReport};
use keel::eval::memory_bench::{MemoryBenchOptions, MemoryBenchReport};
use keel::eval::overhead::OverheadReport;
use keel::eval::remote_bench::{Peer, RemoteBenchReport};
use keel::eval::retrieval::RetrievalReport;
use keel::{App, AppError, ErrorKind};

use crate::output::{self, Human, Shown, Text};
use crate::progress::Spinner;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt processing and decode speed of the embedded model, with llama-cpp-python on the same GGUF.
    Decode(DecodeArgs),
    /// Retrieval quality (nDCG@10, recall@10) of BM25, vectors and hybrid on a judged retrieval set.
    Retrieval(RetrievalArgs),
    /// Embedding throughput, hybrid search latency, reindex time and memory, with peers side by side.
    Memory(MemoryBenchArgs),
    /// The orchestrator's own overhead per step (commit, fold, validation), two SQLite commit modes side by side.
    Orchestration(OrchestrationArgs),
    /// Time to first token and tokens/s through Keel's remote backend against the official `openai` Python
    /// client on the same server and prompts.
    Remote(RemoteBenchArgs),
}

impl BenchCommand {
    pub fn json(&self) -> bool {
        match self {
            BenchCommand::Decode(a) => a.json,
            BenchCommand::Retrieval(a) => a.json,
            BenchCommand::Memory(a) => a.json,
            BenchCommand::Orchestration(a) => a.json,
            BenchCommand::Remote(a) => a.json,
        }
    }
}

#[derive(Args)]
pub struct DecodeArgs {
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
    prompt_file: PathBuf,
    /// A longer prompt (about 1,000 tokens), measured as a second case; `none` skips it.
    #[arg(long, default_value = "benches/peers/decode_prompt_long.txt")]
    long_prompt_file: String,
    /// The thread counts every case is measured at (besides --threads).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Any GGUF file instead of the configured chat model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The Python that has llama-cpp-python installed.
    #[arg(long, default_value = "python3")]
    peer_python: String,
    #[arg(long, default_value = "benches/peers/llama_cpp_decode.py")]
    peer_script: PathBuf,
    /// Measure Keel alone.
    #[arg(long)]
    no_peer: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RetrievalArgs {
    /// The folder with corpus.jsonl, queries.jsonl and qrels.jsonl (made by tests/evals/retrieval/fetch.py).
    #[arg(long)]
    dataset: PathBuf,
    /// Scratch folder for the evaluation's data dir (kept, so a second run skips embedding the corpus).
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct MemoryBenchArgs {
    /// CPU threads, for Keel and the peers alike.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Item counts to search at, comma-separated.
    #[arg(long, default_value = "10000,100000", value_delimiter = ',')]
    items: Vec<usize>,
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// The Python that has sentence-transformers and numpy (see benches/peers/requirements-memory.txt).
    #[arg(long, default_value = "python3")]
    peer_python: String,
    #[arg(long, default_value = "benches/peers")]
    peers: PathBuf,
    #[arg(long)]
    no_peer: bool,
    /// Scratch folder (default: a temporary one).
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

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

#[derive(Args)]
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

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(command: BenchCommand) -> Result<(), AppError> {
    match command {
        BenchCommand::Decode(args) => decode(&args),
        BenchCommand::Retrieval(args) => retrieval(args),
        BenchCommand::Memory(args) => memory(args),
        BenchCommand::Orchestration(args) => orchestration(&args),
        BenchCommand::Remote(args) => remote(&args),
    }
}

/// The decode figures as a table; `runs` is how many counted runs the medians are of.
fn decode_text(report: &DecodeBenchReport, runs: u32) -> Text {
    let mut text = Text::new();
    text.line(format!("{:<28} {:>8} {:>8} {:>12} {:>12} {:>10}", "implementation", "threads", "prompt", "pp tok/s", "decode tok/s", "ttft ms"));
    for f in std::iter::once(&report.keel).chain(report.peer.as_ref()) {
        text.line(format!(
            "{:<28} {:>8} {:>8} {:>12.1} {:>12.1} {:>10.1}",
            f.implementation, f.threads, f.prompt_tokens, f.pp_tok_s_median, f.decode_tok_s_median, f.ttft_ms_median
        ));
    }
    if let Some(r) = &report.ratios {
        text.line(format!("keel/peer: pp {:.2}x  decode {:.2}x  ttft {:.2}x (medians of {} runs)", r.pp_tok_s, r.decode_tok_s, r.ttft_ms, runs));
    }
    if let Some(e) = &report.peer_error {
        text.line(format!("peer not measured: {e}"));
    }
    text.line(String::new());
    text.line(format!("{:<28} {:>8} {:>8} {:>12} {:>12} {:>10} {:>9}", "case", "threads", "prompt", "pp tok/s", "decode tok/s", "ttft ms", "peak MiB"));
    for c in &report.cases {
        for f in std::iter::once(&c.keel).chain(c.peer.as_ref()) {
            text.line(format!(
                "{:<28} {:>8} {:>8} {:>12.1} {:>12.1} {:>10.1} {:>9}",
                f.implementation,
                f.threads,
                f.prompt_tokens,
                f.pp_tok_s_median,
                f.decode_tok_s_median,
                f.ttft_ms_median,
                f.peak_rss_mb.map(|m| format!("{m:.0}")).unwrap_or_default()
            ));
        }
        if let Some(r) = &c.ratios {
            text.line(format!("  keel/peer: pp {:.2}x  decode {:.2}x  ttft {:.2}x", r.pp_tok_s, r.decode_tok_s, r.ttft_ms));
        }
    }
    if let Some(a) = &report.agent {
        text.line(String::new());
        text.line(format!("agent calls through the KV pool ({} threads): time to first token, median", a.threads));
        for (name, f) in [
            ("first step, nothing cached", &a.first_step),
            ("fresh process, saved prefix", &a.fresh_process),
            ("the run's second step", &a.second_step),
            ("the conversation's next turn", &a.next_turn),
        ] {
            text.line(format!("  {name:<30} {:>8.1} ms  ({} of {} prompt tokens reused)", f.ttft_ms_median, f.reused_tokens, f.prompt_tokens));
        }
    }
    if let Some(m) = &report.memory {
        let mb = |v: Option<f64>| v.map(|v| format!("{v:.0} MiB")).unwrap_or_else(|| "not measured".into());
        text.line(String::new());
        text.line(format!("peak memory of one answer: keel ask {}, llama-cpp-python {}{}", mb(m.keel_ask_peak_rss_mb), mb(m.peer_peak_rss_mb),
            m.ratio.map(|r| format!(" ({r:.2}x)")).unwrap_or_default()));
        if let Some(e) = &m.error {
            text.line(format!("  {e}"));
        }
    }
    text
}

fn decode(args: &DecodeArgs) -> Result<(), AppError> {
    crate::set_threads(args.threads);
    let prompt = std::fs::read_to_string(&args.prompt_file)
        .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read {}: {e}", args.prompt_file.display()), None))?;
    let long_prompt = match args.long_prompt_file.as_str() {
        "none" | "" => None,
        path => Some(std::fs::read_to_string(path).map_err(|e| {
            AppError::new(ErrorKind::InvalidInput, format!("cannot read {path}: {e}"), Some("pass --long-prompt-file none to skip the long prompt".into()))
        })?),
    };
    let app = App::open_default()?;
    let options = DecodeBenchOptions {
        model_path: match &args.model {
            Some(path) => path.clone(),
            None => app.chat_model_path()?,
        },
        long_prompt,
        thread_counts: args.thread_counts.iter().copied().filter(|n| *n > 0).collect(),
        prompt,
        threads: args.threads,
        runs: args.runs.max(1),
        decode_tokens: args.tokens.max(2),
        peer: (!args.no_peer).then(|| (args.peer_python.clone(), args.peer_script.clone())),
    };
    let report = app.bench_decode(&options, &mut |stage| eprintln!("{stage}"))?;
    let text = decode_text(&report, args.runs);
    output::emit(args.json, &Shown::new(report, text));
    Ok(())
}

impl Human for RetrievalReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("{} documents, {} queries ({})", self.documents, self.queries, self.dataset));
        text.line(format!("{:<10} {:>10} {:>10}", "ranking", "nDCG@10", "recall@10"));
        for (name, s) in [("bm25", self.bm25), ("vectors", self.vectors), ("hybrid", self.hybrid)] {
            text.line(format!("{name:<10} {:>10.4} {:>10.4}", s.ndcg_at_10, s.recall_at_10));
        }
        text.line(format!("hybrid ≥ best single ranking on nDCG@10: {}", self.hybrid_at_least_best));
        text
    }
}

fn retrieval(args: RetrievalArgs) -> Result<(), AppError> {
    if let Some(n) = args.threads {
        crate::set_threads(n);
    }
    let app = App::open_default()?;
    let work = args.work.unwrap_or_else(|| std::env::temp_dir().join(format!("keel-bench-retrieval-{}", std::process::id())));
    let mut last = String::new();
    let report = app.evaluate_retrieval(&args.dataset, &work, &mut |stage, done, total| {
        if stage != last || done == total {
            eprintln!("{stage} {done}/{total}");
            last = stage.to_owned();
        }
    })?;
    output::emit(args.json, &report);
    Ok(())
}

impl Human for MemoryBenchReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("embedding (batch 32, {} threads, {} products): sentences/s", self.threads, self.matmul_kernel));
        for e in &self.embedding {
            text.line(format!(
                "  {:<18} keel {:>8.1}  sentence-transformers {:>8}  ratio {}",
                e.texts,
                e.keel_sentences_per_s,
                opt(e.peer_sentences_per_s),
                opt(e.ratio)
            ));
        }
        text.line("hybrid search per query (ms):");
        for s in &self.search {
            text.line(format!(
                "  {:>7} items  keel p50 {:.2} p95 {:.2} (with query embedding p50 {:.2})  fts5+numpy p50 {} p95 {}  p95 ratio {}",
                s.items,
                s.keel_p50_ms,
                s.keel_p95_ms,
                s.keel_with_embedding_p50_ms,
                opt(s.peer_p50_ms),
                opt(s.peer_p95_ms),
                opt(s.p95_ratio)
            ));
        }
        text.line(format!(
            "reindex of {} items: {} ms; RSS {:.0} MB (vector matrix {:.0} MB)",
            self.reindex_items, self.reindex_ms, self.rss_mb_at_largest, self.vector_matrix_mb
        ));
        for e in &self.peer_errors {
            text.line(format!("peer not measured: {e}"));
        }
        text
    }
}

fn memory(args: MemoryBenchArgs) -> Result<(), AppError> {
    crate::set_threads(args.threads);
    let app = App::open_default()?;
    let (model_dir, model_id) = app.embedding_model_dir(&mut |_| {})?;
    // Without --work, a scratch folder that goes when the benchmark ends, however it ends (it holds a store of
    // every generated item: hundreds of MB at 100,000).
    let scratch = args.work.is_none().then(|| Scratch(std::env::temp_dir().join(format!("keel-bench-memory-{}", std::process::id()))));
    let work = args.work.clone().or_else(|| scratch.as_ref().map(|s| s.0.clone())).unwrap_or_default();
    let options = MemoryBenchOptions {
        model_dir,
        model_id,
        threads: args.threads,
        runs: args.runs.max(1),
        sizes: args.items,
        queries: args.queries.max(1),
        work,
        peer: (!args.no_peer).then(|| (args.peer_python.clone(), args.peers.clone())),
    };
    output::emit(args.json, &app.bench_memory(&options, &mut |stage| eprintln!("{stage}"))?);
    Ok(())
}

impl Human for OverheadReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for m in &self.modes {
            text.line(format!(
                "{:<62} {:>5} steps  {:.1} events/step  p50 {:>6} µs  p95 {:>6} µs",
                m.commit_mode, m.steps, m.events_per_step, m.step_p50_us, m.step_p95_us
            ));
        }
        text.line(format!("p95 ratio (Keel / every event flushed): {:.2}", self.p95_ratio));
        text
    }
}

fn orchestration(args: &OrchestrationArgs) -> Result<(), AppError> {
    let spinner = Spinner::new();
    let report = App::bench_orchestration(args.steps, args.runs, &mut |mode, done, total| spinner.show(format_args!("{mode}: run {done}/{total}")))?;
    spinner.end();
    output::emit(args.json, &report);
    Ok(())
}

impl Human for RemoteBenchReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for s in [&self.keel, &self.peer] {
            text.line(format!(
                "{:<14} {:>3} requests  TTFT p50 {:>7.1} ms  p95 {:>7.1} ms  {:>6.1} tokens/s p50",
                s.name,
                s.samples.len(),
                s.ttft_p50_ms,
                s.ttft_p95_ms,
                s.tokens_per_s_p50
            ));
        }
        text.line(format!(
            "Keel's TTFT overhead at p50: {:+.1} ms ({:.3}x); tokens/s ratio {:.3}; within 5% or 5 ms: {}",
            self.ttft_overhead_ms,
            self.ttft_ratio,
            self.tokens_per_s_ratio,
            if self.within_target { "yes" } else { "no" }
        ));
        text
    }
}

fn remote(args: &RemoteBenchArgs) -> Result<(), AppError> {
    let python = args.python.clone().or_else(|| std::env::var_os("KEEL_LLAMA_PYTHON").map(PathBuf::from)).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/keel/llama-venv/bin/python")
    });
    let options = RemoteBenchOptions {
        base_url: args.base_url.clone(),
        model: args.model.clone(),
        rounds: args.rounds,
        max_tokens: args.max_tokens,
        peer: Peer { python, script: args.client.clone() },
    };
    let spinner = Spinner::new();
    let report = App::bench_remote(&options, &mut |done, total| spinner.show(format_args!("round {done}/{total}")))?;
    spinner.end();
    output::emit(args.json, &report);
    Ok(())
}
