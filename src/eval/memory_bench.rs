//! `keel bench memory`: embedding throughput, hybrid search latency, reindex time and resident memory, with
//! peers side by side in the same run and the same thread count.
//!
//! * Embeddings: the same texts (short sentences, and texts of exactly 128 word pieces) in batches of 32,
//!   Keel's candle MiniLM against sentence-transformers on CPU (`benches/peers/st_embed.py --serve`), their
//!   timed passes alternating so that drift in the machine's load falls on both; medians of the runs.
//! * Search at each size: the same generated items and the same query vectors; Keel's hybrid search (tantivy
//!   BM25 + the vector matrix, RRF, gate, MMR, budget; the query embedding excluded, as the peer gets its
//!   query vectors precomputed) against SQLite FTS5 BM25 + numpy brute-force cosine + RRF
//!   (`benches/peers/fts5_numpy_search.py`). p50/p95 per query.
//! * Reindex: rebuilding the BM25 index and the vector matrix from SQLite at the largest size.
//! * Resident memory (VmRSS) of this process with the largest size open, and the matrix's own bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::error::{AppError, ErrorKind};
use crate::memory::embed::Embedder;
use crate::memory::retrieve::RetrieveOptions;
use crate::memory::Memory;
use crate::store::{encode_vector, MemoryKind, NewItem, Store};

#[derive(Debug, Clone)]
pub struct MemoryBenchOptions {
    pub model_dir: PathBuf,
    pub model_id: String,
    pub threads: usize,
    pub runs: u32,
    pub sizes: Vec<usize>,
    pub queries: usize,
    pub work: PathBuf,
    /// Python with sentence-transformers, and the peers folder; `None` measures Keel alone.
    pub peer: Option<(String, PathBuf)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedFigures {
    pub texts: String,
    pub n: usize,
    /// Medians over the runs.
    pub keel_sentences_per_s: f64,
    pub peer_sentences_per_s: Option<f64>,
    /// Keel over the peer (above 1: Keel is faster).
    pub ratio: Option<f64>,
    /// Every run's rate, in order. Keel's and the peer's passes alternate (Keel, peer, Keel, peer, …), so that
    /// a change in the machine's load over the benchmark falls on both alike.
    pub keel_runs: Vec<f64>,
    pub peer_runs: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchFigures {
    pub items: usize,
    pub queries: usize,
    pub keel_p50_ms: f64,
    pub keel_p95_ms: f64,
    /// With the query embedding included (what a user waits for).
    pub keel_with_embedding_p50_ms: f64,
    pub peer_p50_ms: Option<f64>,
    pub peer_p95_ms: Option<f64>,
    /// Keel p95 over the peer's (below 1: Keel is faster).
    pub p95_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryBenchReport {
    pub threads: usize,
    /// The dense-product kernel Keel's encoder ran: "openblas" or "gemm" (see `memory::sgemm`).
    pub matmul_kernel: &'static str,
    pub embedding: Vec<EmbedFigures>,
    pub search: Vec<SearchFigures>,
    pub reindex_items: usize,
    pub reindex_ms: u64,
    pub rss_mb_at_largest: f64,
    pub vector_matrix_mb: f64,
    pub peer_errors: Vec<String>,
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorKind::Internal, e.to_string(), None)
}

/// `n` distinct short sentences about everyday things.
pub fn generated_items(n: usize) -> Vec<String> {
    const SUBJECTS: [&str; 20] = ["The warehouse in Leeds", "Our quarterly budget", "The bakery on Main Street",
        "The orbit of Mars", "The river delta", "A copper wire supplier", "The city council", "The railway timetable",
        "The tomato harvest", "The printing press", "The dust cloud", "The tax office", "The chess tournament",
        "The glacier", "Our database migration", "The violin workshop", "The volcano", "The bus depot",
        "The vineyard", "The semiconductor fab"];
    const VERBS: [&str; 10] =
        ["reported", "delayed", "doubled", "reviewed", "shipped", "measured", "repaired", "cancelled", "approved", "recorded"];
    const OBJECTS: [&str; 20] = ["forty pallets of steel", "the annual rainfall", "a shipment of flour",
        "the invoice backlog", "its solar panels", "the ticket prices", "three new ovens", "the erosion rate",
        "the concrete order", "a spare gearbox", "the export licence", "the humidity readings", "the seating plan",
        "the firmware update", "the grape yield", "a batch of resistors", "the insurance claim", "the track gauge",
        "the ink supply", "the lava samples"];
    (0..n)
        .map(|i| {
            let s = SUBJECTS[i % 20];
            let v = VERBS[(i / 20) % 10];
            let o = OBJECTS[(i / 200) % 20];
            format!("{s} {v} {o} in week {} of year {}.", (i / 4000) % 52 + 1, 1990 + i / (4000 * 52))
        })
        .collect()
}

fn generated_queries(n: usize) -> Vec<String> {
    const Q: [&str; 10] = ["when was the steel shipped", "what happened to the rainfall", "flour delivery from the bakery",
        "who approved the budget", "solar panel repairs", "ticket price changes on the railway", "new ovens",
        "glacier erosion measurements", "the firmware update was cancelled", "grape yield at the vineyard"];
    (0..n).map(|i| format!("{} in week {}", Q[i % 10], i % 52 + 1)).collect()
}

/// Texts of exactly `pieces` word pieces (with [CLS] and [SEP]).
fn texts_of_pieces(embedder: &Embedder, n: usize, pieces: usize) -> Vec<String> {
    let words = "the harbour master wrote a long report about ships cargo tides weather crews repairs and fees";
    let vocab: Vec<&str> = words.split(' ').collect();
    (0..n)
        .map(|i| {
            let mut t = format!("Report {i}:");
            let mut k = i;
            while embedder.count_pieces(&t) < pieces {
                t.push(' ');
                t.push_str(vocab[k % vocab.len()]);
                k = k.wrapping_mul(7).wrapping_add(3) % 1_000_003;
            }
            while embedder.count_pieces(&t) > pieces {
                t.truncate(t.rfind(' ').unwrap_or(0));
            }
            t
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    crate::eval::bench::median(v)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn run_peer(python: &str, script: &Path, args: &[String]) -> Result<serde_json::Value, String> {
    let out = Command::new(python).arg(script).args(args).output().map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{} printed no JSON: {e}", script.display()))
}

/// A peer script started with `--serve`: it loads, prints one JSON line when ready, then runs one timed pass per
/// line it reads and prints `{"sentences_per_s": …}` for each. Dropping it closes its stdin, which ends it.
struct PeerServer {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    script: String,
}

impl PeerServer {
    fn start(python: &str, script: &Path, args: &[String]) -> Result<PeerServer, String> {
        use std::process::Stdio;
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{python}: {e}"))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else { return Err("the peer's pipes were not opened".into()) };
        let mut server = PeerServer { child, stdin: Some(stdin), stdout: std::io::BufReader::new(stdout), script: script.display().to_string() };
        server.line()?;
        Ok(server)
    }

    fn line(&mut self) -> Result<serde_json::Value, String> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(format!("{} stopped (its error is above)", self.script)),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("{} printed {line:?}: {e}", self.script)),
            Err(e) => Err(format!("{}: {e}", self.script)),
        }
    }

    fn pass(&mut self) -> Result<f64, String> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("{} is closed", self.script))?;
        writeln!(stdin, "pass").and_then(|_| stdin.flush()).map_err(|e| format!("{}: {e}", self.script))?;
        let reply = self.line()?;
        reply["sentences_per_s"].as_f64().ok_or_else(|| format!("{} replied {reply} to a pass", self.script))
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        // Closing stdin ends the peer's loop; wait so that it does not outlive the benchmark.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

pub fn run(options: &MemoryBenchOptions, on_progress: &mut dyn FnMut(&str)) -> Result<MemoryBenchReport, AppError> {
    std::fs::create_dir_all(&options.work).map_err(internal)?;
    let mut peer_errors = Vec::new();
    on_progress("loading the embedding model");
    let embedder = Embedder::load(&options.model_dir, &options.model_id).map_err(internal)?;

    // 1. Embedding throughput.
    let mut embedding = Vec::new();
    let sets = [("short sentences", generated_items(256)), ("128-token texts", texts_of_pieces(&embedder, 256, 128))];
    for (name, texts) in &sets {
        on_progress(&format!("embedding {name}"));
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs[..32]).map_err(internal)?;
        // The peer loads once and then runs one pass each time it is asked, between Keel's passes.
        let mut peer = match &options.peer {
            Some((python, dir)) => {
                let file = options.work.join("embed-texts.txt");
                std::fs::write(&file, texts.join("\n")).map_err(internal)?;
                let args = [
                    "--model-dir".into(), options.model_dir.display().to_string(),
                    "--threads".into(), options.threads.to_string(),
                    "--batch-size".into(), "32".into(),
                    "--texts-file".into(), file.display().to_string(),
                    "--serve".into(),
                ];
                match PeerServer::start(python, &dir.join("st_embed.py"), &args) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        peer_errors.push(e);
                        None
                    }
                }
            }
            None => None,
        };
        let (mut keel_runs, mut peer_runs) = (Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let t = Instant::now();
            embedder.embed(&refs).map_err(internal)?;
            keel_runs.push(refs.len() as f64 / t.elapsed().as_secs_f64());
            if let Some(server) = &mut peer {
                match server.pass() {
                    Ok(rate) => peer_runs.push(rate),
                    Err(e) => {
                        peer_errors.push(e);
                        peer = None;
                        peer_runs.clear();
                    }
                }
            }
        }
        let keel = median(&mut keel_runs.clone());
        let peer = (!peer_runs.is_empty()).then(|| median(&mut peer_runs.clone()));
        embedding.push(EmbedFigures {
            texts: name.to_string(),
            n: texts.len(),
            keel_sentences_per_s: keel,
            peer_sentences_per_s: peer,
            ratio: peer.map(|p| keel / p),
            keel_runs,
            peer_runs,
        });
    }

    // 2. Search at each size, on one scratch store grown to each size in turn.
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let items = generated_items(largest);
    let queries = generated_queries(options.queries);
    let query_refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let query_vectors = embedder.embed(&query_refs).map_err(internal)?;
    // A store left by an earlier run with the same generated items is reused (embedding 10^5 items takes a
    // while and is not what is measured) when it holds no more than the smallest size, since the store only
    // grows; anything else is started afresh.
    let reusable = Store::open(&options.work.join("store/keel.sqlite3")).ok().and_then(|s| {
        let n = s.memory_live_count().ok()? as usize;
        let last = s.memory_export_page(n as i64 - 1, 1).ok()?.pop()?.0;
        let smallest = options.sizes.iter().copied().min().unwrap_or(0);
        (n > 0 && n <= smallest && last.text == items[n - 1] && last.embedding_model.as_deref() == Some(&options.model_id))
            .then_some((s, n))
    });
    let (store, mut have) = match reusable {
        Some(x) => x,
        None => {
            let _ = std::fs::remove_dir_all(options.work.join("store"));
            std::fs::create_dir_all(options.work.join("store")).map_err(internal)?;
            (Store::open(&options.work.join("store/keel.sqlite3"))?, 0)
        }
    };
    let mut vectors_file: Vec<u8> = Vec::new();
    store.memory_vectors(&options.model_id, &mut |page| {
        for v in page {
            vectors_file.extend(encode_vector(&v.embedding));
        }
    })?;
    let mut sizes = options.sizes.clone();
    sizes.sort_unstable();
    let mut search = Vec::new();
    let (mut reindex_ms, mut rss, mut matrix_mb) = (0, 0.0, 0.0);
    for &size in &sizes {
        while have < size {
            let end = (have + 2048).min(size);
            let refs: Vec<&str> = items[have..end].iter().map(String::as_str).collect();
            let vs = embedder.embed(&refs).map_err(internal)?;
            for v in &vs {
                vectors_file.extend(encode_vector(v));
            }
            let batch: Vec<NewItem> = refs
                .iter()
                .zip(vs)
                .map(|(t, v)| NewItem {
                    kind: MemoryKind::Note,
                    text: t.to_string(),
                    source: "bench".into(),
                    provenance: "user".into(),
                    pinned: false,
                    embedding: Some(v),
                    embedding_model: Some(options.model_id.clone()),
                    created_ms: None,
                    deleted: false,
                    document: None,
                })
                .collect();
            store.memory_insert(&batch)?;
            have = end;
            on_progress(&format!("embedding bench items {have}/{size}"));
        }
        let index_dir = options.work.join("store/memory-index");
        let (memory, _) = Memory::open(&store, &options.model_dir, &options.model_id, &index_dir, &mut |_| {})?;
        if size == largest {
            on_progress(&format!("reindexing {size} items"));
            let t = Instant::now();
            memory.reindex(&store, false, &mut |_| {})?;
            reindex_ms = t.elapsed().as_millis() as u64;
            rss = rss_mb();
            matrix_mb = memory.vector_bytes() as f64 / 1_048_576.0;
        }
        on_progress(&format!("searching {size} items"));
        let search_options = RetrieveOptions::default();
        let count = |item: &crate::store::MemoryItem| memory.embedder().count_pieces(&item.text);
        for (q, v) in queries.iter().zip(&query_vectors).take(5) {
            memory.search_with_vector(&store, q, v, &search_options, &count)?;
        }
        let mut times = Vec::new();
        for _ in 0..options.runs.max(1) {
            for (q, v) in queries.iter().zip(&query_vectors) {
                let t = Instant::now();
                memory.search_with_vector(&store, q, v, &search_options, &count)?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let mut with_embedding = Vec::new();
        for q in queries.iter().take(20) {
            let t = Instant::now();
            memory.search(&store, q, &search_options, &count)?;
            with_embedding.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (keel_p50, keel_p95) = (percentile(&mut times.clone(), 50.0), percentile(&mut times, 95.0));
        let (mut peer_p50, mut peer_p95) = (None, None);
        if let Some((python, dir)) = &options.peer {
            let db = options.work.join(format!("peer-{size}.sqlite3"));
            let _ = std::fs::remove_file(&db);
            let conn = rusqlite::Connection::open(&db).map_err(internal)?;
            conn.execute_batch("CREATE TABLE bench_items (id INTEGER PRIMARY KEY, text TEXT); BEGIN;").map_err(internal)?;
            {
                let mut stmt = conn.prepare("INSERT INTO bench_items (id, text) VALUES (?1, ?2)").map_err(internal)?;
                for (i, t) in items[..size].iter().enumerate() {
                    stmt.execute(rusqlite::params![i as i64, t]).map_err(internal)?;
                }
            }
            conn.execute_batch("COMMIT;").map_err(internal)?;
            drop(conn);
            let vfile = options.work.join(format!("peer-{size}.f32"));
            std::fs::write(&vfile, &vectors_file[..size * embedder.dim() * 4]).map_err(internal)?;
            let qfile = options.work.join("peer-queries.f32");
            std::fs::write(&qfile, query_vectors.iter().flat_map(|v| encode_vector(v)).collect::<Vec<u8>>()).map_err(internal)?;
            let qtext = options.work.join("peer-queries.txt");
            std::fs::write(&qtext, queries.join("\n")).map_err(internal)?;
            let args = [
                "--db".into(), db.display().to_string(),
                "--vectors".into(), vfile.display().to_string(),
                "--query-vectors".into(), qfile.display().to_string(),
                "--queries-file".into(), qtext.display().to_string(),
                "--k".into(), "10".into(),
                "--runs".into(), options.runs.to_string(),
                "--threads".into(), options.threads.to_string(),
                "--json".into(),
            ];
            match run_peer(python, &dir.join("fts5_numpy_search.py"), &args) {
                Ok(v) => {
                    peer_p50 = v["p50_ms"].as_f64();
                    peer_p95 = v["p95_ms"].as_f64();
                }
                Err(e) => peer_errors.push(e),
            }
        }
        search.push(SearchFigures {
            items: size,
            queries: queries.len(),
            keel_p50_ms: keel_p50,
            keel_p95_ms: keel_p95,
            keel_with_embedding_p50_ms: median(&mut with_embedding),
            peer_p50_ms: peer_p50,
            peer_p95_ms: peer_p95,
            p95_ratio: peer_p95.map(|p| keel_p95 / p),
        });
    }
    Ok(MemoryBenchReport {
        threads: options.threads,
        matmul_kernel: crate::memory::sgemm::KERNEL,
        embedding,
        search,
        reindex_items: largest,
        reindex_ms,
        rss_mb_at_largest: rss,
        vector_matrix_mb: matrix_mb,
        peer_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_peer_runs_one_pass_per_request_and_a_dead_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("peer.py");
        std::fs::write(
            &script,
            "import json, sys\nprint(json.dumps({'ready': True}), flush=True)\n\
             for i, _ in enumerate(sys.stdin):\n    print(json.dumps({'sentences_per_s': 10.0 + i}), flush=True)\n",
        )
        .unwrap();
        let mut peer = PeerServer::start("python3", &script, &[]).unwrap();
        assert_eq!(peer.pass().unwrap(), 10.0);
        assert_eq!(peer.pass().unwrap(), 11.0);
        // Dropping closes its stdin and waits: this returns only if the peer ended.
        drop(peer);

        std::fs::write(&script, "import sys\nsys.exit('no torch here')\n").unwrap();
        let err = PeerServer::start("python3", &script, &[]).err().expect("a peer that exits at start is an error");
        assert!(err.contains("peer.py stopped"), "{err}");
        std::fs::write(&script, "print('hello')\n").unwrap();
        let err = PeerServer::start("python3", &script, &[]).err().expect("a peer that prints no JSON is an error");
        assert!(err.contains("printed \"hello\\n\""), "{err}");
    }
}
