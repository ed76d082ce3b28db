//! `keel bench decode`: prompt-processing and decode speed and time to first token of the embedded model, with
//! llama-cpp-python on the same GGUF, the same prompt and the same thread count measured in the same run.
//!
//! Keel's side runs in this process; the peer is `benches/peers/llama_cpp_decode.py`, run with the Python that
//! has llama-cpp-python installed. Both report medians over their runs; the report gives Keel/peer ratios
//! (above 1 means Keel is faster for throughputs, slower for time to first token).
//!
//! Besides the main case (the prompt file at `--threads`), `cases` repeats it for every thread count and for the
//! long prompt (about 1,000 tokens), each side by side with the peer; `agent` times the first token of the calls
//! an agent makes (a run's second step, a conversation's next turn, a first step with nothing cached) through
//! the KV pool, with the prompt tokens each reused.

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
    /// A second, longer prompt measured in `cases`.
    pub long_prompt: Option<String>,
    /// The thread counts of `cases`.
    pub thread_counts: Vec<usize>,
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
    /// Peak resident memory of the measuring process, in MiB.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
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
    /// Every prompt at every thread count, side by side.
    pub cases: Vec<Case>,
    /// The agent's calls through the KV pool (Keel alone).
    pub agent: Option<AgentFigures>,
    /// Peak resident memory of one `keel ask` and of llama-cpp-python answering the same prompt.
    pub memory: Option<MemoryFigures>,
}

/// Peak resident memory of one answer, each in its own process.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryFigures {
    pub prompt: String,
    /// `keel ask` in a fresh data dir (the guard's and memory's embedding model included).
    pub keel_ask_peak_rss_mb: Option<f64>,
    pub peer_peak_rss_mb: Option<f64>,
    /// Keel's over the peer's (below 1 uses less).
    pub ratio: Option<f64>,
    pub error: Option<String>,
}

/// One prompt at one thread count.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub threads: usize,
    pub prompt_tokens: u64,
    pub keel: ImplFigures,
    pub peer: Option<ImplFigures>,
    pub ratios: Option<Ratios>,
    pub peer_error: Option<String>,
}

/// Time to first token of an agent's calls, medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct AgentFigures {
    pub threads: usize,
    /// A run's first step with nothing cached, in memory or on disk.
    pub first_step: FirstToken,
    /// The same first step in a fresh process: nothing in memory, the shared prefix's state saved on disk.
    pub fresh_process: FirstToken,
    /// The same run's second step (its prompt extends the first step's with the reply and a tool result).
    pub second_step: FirstToken,
    /// The conversation's next turn.
    pub next_turn: FirstToken,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstToken {
    pub prompt_tokens: u64,
    pub reused_tokens: u64,
    pub ttft_ms_median: f64,
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

/// A rayon pool of `threads` for one measurement (the engine runs its forward pass on the pool it is called from).
fn pool(threads: usize) -> Result<rayon::ThreadPool, AppError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| AppError::new(crate::error::ErrorKind::Internal, format!("cannot start {threads} threads: {e}"), None))
}

/// Keel's figures for one prompt at one thread count.
fn keel_figures(model: &LocalModel, prompt: &[u32], options: &DecodeBenchOptions, threads: usize, load_ms: f64) -> Result<ImplFigures, AppError> {
    let pool = pool(threads)?;
    pool.install(|| -> Result<ImplFigures, AppError> {
        // One warm-up run, not counted, as the peer does.
        model.bench_generate(prompt, options.decode_tokens.min(8))?;
        let (mut pp, mut dec, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let t = model.bench_generate(prompt, options.decode_tokens)?;
            pp.push(prompt.len() as f64 / (t.prompt_ms / 1e3));
            dec.push((options.decode_tokens.saturating_sub(1)) as f64 / (t.decode_ms / 1e3));
            ttft.push(t.ttft_ms);
        }
        Ok(ImplFigures {
            implementation: format!("keel ({})", keel_kernels::quant::kernel()),
            threads,
            prompt_tokens: prompt.len() as u64,
            decode_tokens: options.decode_tokens as u64,
            runs: options.runs as u64,
            pp_tok_s_median: median(&mut pp),
            decode_tok_s_median: median(&mut dec),
            ttft_ms_median: median(&mut ttft),
            load_ms,
            peak_rss_mb: None,
        })
    })
}

fn ratios(keel: &ImplFigures, peer: &ImplFigures) -> Ratios {
    Ratios {
        pp_tok_s: keel.pp_tok_s_median / peer.pp_tok_s_median,
        decode_tok_s: keel.decode_tok_s_median / peer.decode_tok_s_median,
        ttft_ms: keel.ttft_ms_median / peer.ttft_ms_median,
    }
}

/// The agent's first tokens: a first step from nothing, its second step, and the next turn.
fn agent_figures(model: &LocalModel, system: &str, runs: u32, threads: usize) -> Result<AgentFigures, AppError> {
    use crate::llm::engine::saved::SavedStates;
    use crate::llm::{Backend, CancelFlag, ChatMessage, GenerationSettings, Role};
    let pool = pool(threads)?;
    // Saved prefix states in a scratch folder of this run (the model's own folder is left alone).
    let scratch = std::env::temp_dir().join(format!("keel-bench-kv-{}", std::process::id()));
    let saved = SavedStates::beside(&scratch.join("model.gguf"), "bench");
    model.keep_prefixes(saved.clone());
    let result = pool.install(|| -> Result<AgentFigures, AppError> {
        let ask = ChatMessage::new(Role::User, "What is 12 times 7? Use the calculator if you need it.");
        let first = vec![ChatMessage::new(Role::System, system), ask];
        let (mut a, mut f, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut tokens = [(0u64, 0u64); 4];
        for _ in 0..runs.max(1) {
            let _ = std::fs::remove_dir_all(saved.dir());
            model.clear_cache();
            let p1 = model.encode_prompt(&first)?;
            let shared = model.shared_prefix_len(&first, &p1)?;
            let (ms, reused) = model.bench_first_token(&p1, Some(shared))?;
            a.push(ms);
            tokens[0] = (p1.len() as u64, reused as u64);
            model.clear_cache();
            let (ms, reused) = model.bench_first_token(&p1, Some(shared))?;
            f.push(ms);
            tokens[3] = (p1.len() as u64, reused as u64);
            model.clear_cache();
            let settings = GenerationSettings { max_tokens: 24, ..Default::default() };
            let reply = model.chat(&first, &settings, &CancelFlag::default(), &mut |_| {})?;
            let mut step = first.clone();
            step.push(ChatMessage::new(Role::Assistant, reply.text.clone()));
            let mut turn = step.clone();
            step.push(ChatMessage::new(Role::User, "Tool result (calculator): 84"));
            turn.push(ChatMessage::new(Role::User, "And what is that divided by 4?"));
            for (i, (messages, out)) in [(step, &mut b), (turn, &mut c)].into_iter().enumerate() {
                let p = model.encode_prompt(&messages)?;
                let (ms, reused) = model.bench_first_token(&p, None)?;
                out.push(ms);
                tokens[i + 1] = (p.len() as u64, reused as u64);
            }
        }
        let figure = |(prompt_tokens, reused_tokens): (u64, u64), v: &mut Vec<f64>| FirstToken { prompt_tokens, reused_tokens, ttft_ms_median: median(v) };
        Ok(AgentFigures {
            threads,
            first_step: figure(tokens[0], &mut a),
            fresh_process: figure(tokens[3], &mut f),
            second_step: figure(tokens[1], &mut b),
            next_turn: figure(tokens[2], &mut c),
        })
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Peak resident memory of this process so far, in MiB (`VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn decode(options: &DecodeBenchOptions, on_progress: &mut dyn FnMut(&str)) -> Result<DecodeBenchReport, AppError> {
    on_progress("keel: loading the model");
    let load_started = Instant::now();
    let model = LocalModel::load(&options.model_path, &mut |_, _| {})?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let mut prompts = vec![options.prompt.clone()];
    prompts.extend(options.long_prompt.clone());
    let mut threads: Vec<usize> = options.thread_counts.clone();
    if !threads.contains(&options.threads) {
        threads.push(options.threads);
    }
    let mut cases = Vec::new();
    for &n in &threads {
        for text in &prompts {
            let prompt = model.tokenizer().encode(text)?;
            on_progress(&format!("keel: {} prompt tokens, {n} threads, {} runs", prompt.len(), options.runs));
            let mut keel = keel_figures(&model, &prompt, options, n, load_ms)?;
            keel.peak_rss_mb = peak_rss_mb();
            let (peer, peer_error) = match &options.peer {
                None => (None, None),
                Some((python, script)) => {
                    on_progress(&format!("peer: llama-cpp-python, {} prompt tokens, {n} threads", prompt.len()));
                    match run_peer(python, script, options, text, n) {
                        Ok(p) => (Some(p), None),
                        Err(e) => (None, Some(e)),
                    }
                }
            };
            let ratios = peer.as_ref().map(|p| ratios(&keel, p));
            cases.push(Case { threads: n, prompt_tokens: prompt.len() as u64, keel, peer, ratios, peer_error });
        }
    }
    on_progress(&format!("keel: the agent's calls, {} threads", options.threads));
    let system = options.long_prompt.as_deref().map(agent_system).unwrap_or_else(|| agent_system(&options.prompt));
    let agent = Some(agent_figures(&model, &system, options.runs, options.threads)?);
    drop(model);
    on_progress("memory: one `keel ask` and the peer's answer to the same prompt");
    let memory = Some(memory_figures(options));
    let main = cases
        .iter()
        .find(|c| c.threads == options.threads)
        .cloned()
        .expect("the main thread count is measured");
    Ok(DecodeBenchReport { keel: main.keel, peer: main.peer, ratios: main.ratios, peer_error: main.peer_error, cases, agent, memory })
}

/// Runs `command` and returns its peak resident memory in MiB, read from its `/proc/PID/status` (`VmHWM`, which
/// never falls) every 5 ms until it exits: `ru_maxrss` would include the memory of this process, which a child
/// inherits at exec on Linux.
fn peak_of(mut command: Command) -> Result<f64, String> {
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0f64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
            peak_kb = peak_kb.max(hwm.unwrap_or(0.0));
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    if !status.success() {
        return Err(format!("the process failed ({status})"));
    }
    Ok(peak_kb / 1024.0)
}

/// `keel ask` (this executable, in a scratch data dir) and the peer's `llama_cpp_ask.py` on the same question.
fn memory_figures(options: &DecodeBenchOptions) -> MemoryFigures {
    let prompt = "Explain in two sentences why the sky is blue.".to_string();
    let home = std::env::temp_dir().join(format!("keel-bench-ask-{}", std::process::id()));
    let keel = std::env::current_exe().map_err(|e| e.to_string()).and_then(|exe| {
        let mut c = Command::new(exe);
        c.arg("ask").arg(&prompt).env("KEEL_HOME", &home).env("RAYON_NUM_THREADS", options.threads.to_string());
        peak_of(c)
    });
    let _ = std::fs::remove_dir_all(&home);
    let peer = match &options.peer {
        None => Err("the peer is not measured".to_string()),
        Some((python, script)) => {
            let mut c = Command::new(python);
            c.arg(script.with_file_name("llama_cpp_ask.py"))
                .arg("--model")
                .arg(&options.model_path)
                .args(["--threads", &options.threads.to_string()])
                .args(["--system", crate::orchestration::context::SYSTEM_PROMPT, "--prompt", &prompt]);
            // The peer reports its own peak (VmHWM at its end), sharper than sampling from here.
            c.output()
                .map_err(|e| e.to_string())
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&o.stderr))))
                .and_then(|v| v.get("peak_rss_mb").and_then(|x| x.as_f64()).ok_or_else(|| "no peak_rss_mb in its output".to_string()))
        }
    };
    let error = [keel.as_ref().err().map(|e| format!("keel ask: {e}")), peer.as_ref().err().map(|e| format!("peer: {e}"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let (k, p) = (keel.ok(), peer.ok());
    MemoryFigures {
        prompt,
        keel_ask_peak_rss_mb: k,
        peer_peak_rss_mb: p,
        ratio: k.zip(p).map(|(k, p)| k / p),
        error: (!error.is_empty()).then(|| error.join("; ")),
    }
}

/// A system prompt of the size an agent's system and tools sections have (about 500 tokens), taken from the
/// text of a benchmark prompt with its chat markers removed.
fn agent_system(prompt: &str) -> String {
    let plain: String = prompt.replace("<|im_start|>", "").replace("<|im_end|>", "");
    let words: Vec<&str> = plain.split_whitespace().take(330).collect();
    format!("You are Keel, an assistant with tools. Reply with a tool call or an answer.\n{}", words.join(" "))
}

fn run_peer(python: &str, script: &std::path::Path, options: &DecodeBenchOptions, prompt: &str, threads: usize) -> Result<ImplFigures, String> {
    let prompt_file = std::env::temp_dir().join(format!("keel-bench-prompt-{}.txt", std::process::id()));
    std::fs::write(&prompt_file, prompt).map_err(|e| format!("cannot write {}: {e}", prompt_file.display()))?;
    let output = Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(&options.model_path)
        .args(["--threads", &threads.to_string()])
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
        peak_rss_mb: v.get("peak_rss_mb").and_then(|x| x.as_f64()),
    })
}
