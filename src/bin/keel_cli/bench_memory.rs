//! `keel bench retrieval` and `keel bench memory`: memory quality and speed, peers side by side.

use std::path::PathBuf;

use clap::Args;
use keel::{App, AppError};

use crate::print_json;

#[derive(Args)]
pub struct RetrievalArgs {
    /// The folder with corpus.jsonl, queries.jsonl and qrels.jsonl (made by tests/evals/retrieval/fetch.py).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Scratch folder for the evaluation's data dir (kept, so a second run skips embedding the corpus).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MemoryBenchArgs {
    /// CPU threads, for Keel and the peers alike.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Item counts to search at, comma-separated.
    #[arg(long, default_value = "10000,100000", value_delimiter = ',')]
    pub items: Vec<usize>,
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// The Python that has sentence-transformers and numpy (see benches/peers/requirements-memory.txt).
    #[arg(long, default_value = "python3")]
    pub peer_python: String,
    #[arg(long, default_value = "benches/peers")]
    pub peers: PathBuf,
    #[arg(long)]
    pub no_peer: bool,
    /// Scratch folder (default: a temporary one).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
}

pub fn retrieval(args: RetrievalArgs) -> Result<(), AppError> {
    if let Some(n) = args.threads {
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    let app = App::open_default()?;
    let (model_dir, model_id) = app.embedding_model_dir(&mut |_| {})?;
    let temp;
    let work = match args.work {
        Some(w) => w,
        None => {
            temp = std::env::temp_dir().join(format!("keel-bench-retrieval-{}", std::process::id()));
            temp.clone()
        }
    };
    let mut last = String::new();
    let report = keel::eval::retrieval::evaluate(&args.dataset, &model_dir, &model_id, &work, &mut |stage, done, total| {
        if stage != last || done == total {
            eprintln!("{stage} {done}/{total}");
            last = stage.to_owned();
        }
    })?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    println!("{} documents, {} queries ({})", report.documents, report.queries, report.dataset);
    println!("{:<10} {:>10} {:>10}", "ranking", "nDCG@10", "recall@10");
    for (name, s) in [("bm25", report.bm25), ("vectors", report.vectors), ("hybrid", report.hybrid)] {
        println!("{name:<10} {:>10.4} {:>10.4}", s.ndcg_at_10, s.recall_at_10);
    }
    println!("hybrid ≥ best single ranking on nDCG@10: {}", report.hybrid_at_least_best);
    Ok(())
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn memory(args: MemoryBenchArgs) -> Result<(), AppError> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string());
    let app = App::open_default()?;
    let (model_dir, model_id) = app.embedding_model_dir(&mut |_| {})?;
    // Without --work, a scratch folder that goes when the benchmark ends, however it ends (it holds a store of
    // every generated item: hundreds of MB at 100,000).
    let scratch = args.work.is_none().then(|| Scratch(std::env::temp_dir().join(format!("keel-bench-memory-{}", std::process::id()))));
    let work = args.work.clone().or_else(|| scratch.as_ref().map(|s| s.0.clone())).unwrap_or_default();
    let options = keel::eval::memory_bench::MemoryBenchOptions {
        model_dir,
        model_id,
        threads: args.threads,
        runs: args.runs.max(1),
        sizes: args.items,
        queries: args.queries.max(1),
        work,
        peer: (!args.no_peer).then(|| (args.peer_python.clone(), args.peers.clone())),
    };
    let report = keel::eval::memory_bench::run(&options, &mut |stage| eprintln!("{stage}"))?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    println!("embedding (batch 32, {} threads, {} products): sentences/s", report.threads, report.matmul_kernel);
    for e in &report.embedding {
        println!("  {:<18} keel {:>8.1}  sentence-transformers {:>8}  ratio {}", e.texts, e.keel_sentences_per_s, opt(e.peer_sentences_per_s), opt(e.ratio));
    }
    println!("hybrid search per query (ms):");
    for s in &report.search {
        println!(
            "  {:>7} items  keel p50 {:.2} p95 {:.2} (with query embedding p50 {:.2})  fts5+numpy p50 {} p95 {}  p95 ratio {}",
            s.items, s.keel_p50_ms, s.keel_p95_ms, s.keel_with_embedding_p50_ms, opt(s.peer_p50_ms), opt(s.peer_p95_ms), opt(s.p95_ratio)
        );
    }
    println!("reindex of {} items: {} ms; RSS {:.0} MB (vector matrix {:.0} MB)", report.reindex_items, report.reindex_ms, report.rss_mb_at_largest, report.vector_matrix_mb);
    for e in &report.peer_errors {
        println!("peer not measured: {e}");
    }
    Ok(())
}
