//! `keel bench decode`: prompt-processing and decode speed and time to first token of the embedded model, with
//! llama-cpp-python on the same GGUF, the same prompt and the same thread count measured in the same run.
//!
//! Keel's side runs in this process; the peer is `benches/peers/llama_cpp_decode.py`, run with the Python that
//! has llama-cpp-python installed. Both report medians over their runs; the report gives Keel/peer ratios
//! (above 1 means Keel is faster for throughputs, slower for time to first token).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::error::AppError;
use crate::llm::local::LocalModel;

#[derive(Debug, Clone)]
pub struct DecodeBenchOptions {
    pub model_path: PathBuf,
    pub prompt: String,
    pub threads: usize,
    pub runs: u32,
    pub decode_tokens: u32,
    /// The peer's interpreter and script; `None` measures Keel alone.
    pub peer: Option<(String, PathBuf)>,
}

/// One implementation's figures, in the same shape as the peer script's JSON.
#[derive(Debug, Clone, Serialize)]
pub struct ImplFigures {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub threads: usize,
    pub prompt_tokens: u64,
    pub decode_tokens: u64,
    pub runs: u64,
    pub pp_tok_s_median: f64,
    pub decode_tok_s_median: f64,
    pub ttft_ms_median: f64,
    pub load_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Keel's prompt-processing tokens/s over the peer's.
    pub pp_tok_s: f64,
    /// Keel's decode tokens/s over the peer's.
    pub decode_tok_s: f64,
    /// Keel's time to first token over the peer's (below 1 is faster).
    pub ttft_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeBenchReport {
    pub keel: ImplFigures,
    pub peer: Option<ImplFigures>,
    pub ratios: Option<Ratios>,
    /// Why the peer could not be measured, when it could not.
    pub peer_error: Option<String>,
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn decode(options: &DecodeBenchOptions, on_progress: &mut dyn FnMut(&str)) -> Result<DecodeBenchReport, AppError> {
    on_progress("keel: loading the model");
    let load_started = Instant::now();
    let model = LocalModel::load(&options.model_path, &mut |_, _| {})?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let prompt = model.tokenizer().encode(&options.prompt)?;
    // One warm-up run, not counted, as the peer does.
    model.bench_generate(&prompt, options.decode_tokens.min(8))?;
    let (mut pp, mut dec, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..options.runs {
        on_progress(&format!("keel: run {}/{}", run + 1, options.runs));
        let t = model.bench_generate(&prompt, options.decode_tokens)?;
        pp.push(prompt.len() as f64 / (t.prompt_ms / 1e3));
        dec.push((options.decode_tokens.saturating_sub(1)) as f64 / (t.decode_ms / 1e3));
        ttft.push(t.ttft_ms);
    }
    drop(model);
    let keel = ImplFigures {
        implementation: "keel (candle)".into(),
        threads: options.threads,
        prompt_tokens: prompt.len() as u64,
        decode_tokens: options.decode_tokens as u64,
        runs: options.runs as u64,
        pp_tok_s_median: median(&mut pp),
        decode_tok_s_median: median(&mut dec),
        ttft_ms_median: median(&mut ttft),
        load_ms,
    };

    let (peer, peer_error) = match &options.peer {
        None => (None, None),
        Some((python, script)) => {
            on_progress("peer: llama-cpp-python");
            match run_peer(python, script, options) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e)),
            }
        }
    };
    let ratios = peer.as_ref().map(|p| Ratios {
        pp_tok_s: keel.pp_tok_s_median / p.pp_tok_s_median,
        decode_tok_s: keel.decode_tok_s_median / p.decode_tok_s_median,
        ttft_ms: keel.ttft_ms_median / p.ttft_ms_median,
    });
    Ok(DecodeBenchReport { keel, peer, ratios, peer_error })
}

fn run_peer(python: &str, script: &std::path::Path, options: &DecodeBenchOptions) -> Result<ImplFigures, String> {
    let prompt_file = std::env::temp_dir().join(format!("keel-bench-prompt-{}.txt", std::process::id()));
    std::fs::write(&prompt_file, &options.prompt).map_err(|e| format!("cannot write {}: {e}", prompt_file.display()))?;
    let output = Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(&options.model_path)
        .args(["--threads", &options.threads.to_string()])
        .arg("--prompt-file")
        .arg(&prompt_file)
        .args(["--max-tokens", &options.decode_tokens.to_string()])
        .args(["--runs", &options.runs.to_string()])
        .arg("--json")
        .output();
    let _ = std::fs::remove_file(&prompt_file);
    let output = output.map_err(|e| format!("cannot run {python} {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the peer exited with {}: {}; install it with `pip install -r benches/peers/requirements.txt`",
            output.status,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("the peer's output is not JSON: {e}"))?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| format!("the peer's JSON lacks `{k}`"));
    Ok(ImplFigures {
        implementation: format!(
            "llama-cpp-python {}",
            v.get("version").and_then(|x| x.as_str()).unwrap_or("?")
        ),
        threads: num("threads")? as usize,
        prompt_tokens: num("prompt_tokens")? as u64,
        decode_tokens: num("decode_tokens")? as u64,
        runs: num("runs")? as u64,
        pp_tok_s_median: num("pp_tok_s_median")?,
        decode_tok_s_median: num("decode_tok_s_median")?,
        ttft_ms_median: num("ttft_ms_median")?,
        load_ms: num("load_ms")?,
    })
}
