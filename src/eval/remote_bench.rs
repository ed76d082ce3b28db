//! `keel bench remote`: time to first token and tokens/s through Keel's remote backend against the same server
//! called with the official `openai` Python client (tests/fixtures/llama/bench_client.py), the same prompts,
//! in rounds that alternate which goes first, so both see the same machine. Keel's overhead is the difference
//! of the medians.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::llm::remote::RemoteBackend;
use crate::llm::{Backend, CancelFlag, ChatMessage, GenerationSettings, Role};

/// The same prompts as bench_client.py's built-in ones.
pub const PROMPTS: [&str; 4] = [
    "Say hello in one short sentence.",
    "List three colours, separated by commas.",
    "Explain in two sentences what a compiler does.",
    "Write a haiku about the sea.",
];

/// One request's figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sample {
    pub prompt_index: usize,
    pub ttft_ms: f64,
    pub total_ms: f64,
    pub completion_tokens: u32,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub name: String,
    pub samples: Vec<Sample>,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub tokens_per_s_p50: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteBenchReport {
    pub base_url: String,
    pub model: String,
    pub rounds: u32,
    pub max_tokens: u32,
    pub keel: Side,
    pub peer: Side,
    /// Keel's median time to first token minus the client's.
    pub ttft_overhead_ms: f64,
    /// Keel's median TTFT over the client's.
    pub ttft_ratio: f64,
    /// Keel's median tokens/s over the client's.
    pub tokens_per_s_ratio: f64,
    /// Within 5 % or 5 ms of the client's median TTFT.
    pub within_target: bool,
}

/// How to run the peer: the Python with `openai` and the client script.
pub struct Peer {
    pub python: PathBuf,
    pub script: PathBuf,
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn side(name: &str, samples: Vec<Sample>) -> Side {
    let mut ttft: Vec<f64> = samples.iter().map(|s| s.ttft_ms).collect();
    let mut tps: Vec<f64> = samples.iter().map(|s| s.tokens_per_s).collect();
    Side { name: name.into(), ttft_p50_ms: percentile(&mut ttft, 0.5), ttft_p95_ms: percentile(&mut ttft, 0.95), tokens_per_s_p50: percentile(&mut tps, 0.5), samples }
}

fn keel_round(backend: &RemoteBackend, max_tokens: u32) -> Result<Vec<Sample>, String> {
    let settings = GenerationSettings { max_tokens, temperature: 0.0, ..GenerationSettings::default() };
    let mut out = Vec::new();
    for (i, prompt) in PROMPTS.iter().enumerate() {
        let messages = [ChatMessage::new(Role::User, *prompt)];
        let start = Instant::now();
        let mut first = None;
        let reply = backend
            .chat(&messages, &settings, &CancelFlag::default(), &mut |_| {
                first.get_or_insert_with(Instant::now);
            })
            .map_err(|e| e.to_string())?;
        let total = start.elapsed().as_secs_f64();
        let ttft = first.map_or(total, |f| (f - start).as_secs_f64());
        out.push(Sample {
            prompt_index: i,
            ttft_ms: ttft * 1000.0,
            total_ms: total * 1000.0,
            completion_tokens: reply.completion_tokens,
            tokens_per_s: reply.completion_tokens as f64 / total,
        });
    }
    Ok(out)
}

fn peer_round(peer: &Peer, base_url: &str, model: &str, max_tokens: u32) -> Result<Vec<Sample>, String> {
    let out = Command::new(&peer.python)
        .arg(&peer.script)
        .args(["--base-url", base_url, "--model", model, "--runs", "1", "--max-tokens", &max_tokens.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", peer.python.display()))?;
    if !out.status.success() {
        return Err(format!("the openai client failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str::<Sample>(l).map_err(|e| format!("unreadable client line {l:?}: {e}")))
        .collect()
}

/// Runs `rounds` rounds (after one warm-up of each), alternating which side goes first.
pub fn run(
    backend: &RemoteBackend,
    peer: &Peer,
    rounds: u32,
    max_tokens: u32,
    on_progress: &mut dyn FnMut(u32, u32),
) -> Result<RemoteBenchReport, String> {
    let config = backend.config();
    let (base_url, model) = (config.base_url.clone(), config.model.clone());
    keel_round(backend, max_tokens)?;
    peer_round(peer, &base_url, &model, max_tokens)?;
    let (mut keel, mut client) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        on_progress(r, rounds);
        if r % 2 == 0 {
            keel.extend(keel_round(backend, max_tokens)?);
            client.extend(peer_round(peer, &base_url, &model, max_tokens)?);
        } else {
            client.extend(peer_round(peer, &base_url, &model, max_tokens)?);
            keel.extend(keel_round(backend, max_tokens)?);
        }
    }
    on_progress(rounds, rounds);
    let keel = side("keel", keel);
    let peer = side("openai-python", client);
    let overhead = keel.ttft_p50_ms - peer.ttft_p50_ms;
    Ok(RemoteBenchReport {
        base_url,
        model,
        rounds,
        max_tokens,
        ttft_overhead_ms: overhead,
        ttft_ratio: keel.ttft_p50_ms / peer.ttft_p50_ms,
        tokens_per_s_ratio: keel.tokens_per_s_p50 / peer.tokens_per_s_p50,
        within_target: overhead <= 5.0 || overhead <= 0.05 * peer.ttft_p50_ms,
        keel,
        peer,
    })
}
