//! `App`'s evaluations and benchmarks, and the small conversions the front ends need before they call `App`.
//!
//! Each method here supplies what only `App` has (the data dir, the models dir, the loaded models, the
//! toolbox) to one function of `crate::eval` (or `crate::trace`), so that the CLI calls `App` alone. The
//! measuring is done in `eval/`; nothing here decides a figure. It owns no state.

use std::path::{Path, PathBuf};

use super::status::LoadProgress;
use super::App;
use crate::error::{AppError, ErrorKind};
use crate::eval::bench::{DecodeBenchOptions, DecodeBenchReport};
use crate::eval::guard::{GuardEvalReport, IntentEvalReport};
use crate::eval::memory_bench::{MemoryBenchOptions, MemoryBenchReport};
use crate::eval::overhead::OverheadReport;
use crate::eval::remote_bench::{Peer, RemoteBenchReport};
use crate::eval::retrieval::RetrievalReport;
use crate::eval::tool_calls::ToolCallReport;
use crate::interface::combiner::Combiner;
use crate::interface::lexical::Lexical;
use crate::llm::remote::{RemoteBackend, RemoteConfig};
use crate::llm::GenerationSettings;
use crate::trace::StepRow;

/// The most tokens of one reply in `keel eval tools`: room for a tool call, not for an essay.
const TOOL_EVAL_MAX_TOKENS: u32 = 160;

/// A server and model for `keel bench remote`, and the peer client measured beside Keel on it.
pub struct RemoteBenchOptions {
    /// The API root, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    pub rounds: u32,
    pub max_tokens: u32,
    pub peer: Peer,
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorKind::Internal, e.to_string(), None)
}

impl App {
    /// Bytes a front end read (an argument, stdin) as the text it may hand to `App`: refused when they are not
    /// UTF-8 (with the offset of the first bad byte) or are blank, before any model is loaded. Normalising is
    /// `App::send_message`'s (once, at the front door), never the front end's.
    pub fn decode_input(bytes: &[u8]) -> Result<&str, AppError> {
        let text = crate::interface::utf8(bytes)?;
        if text.trim().is_empty() {
            return Err(crate::interface::Rejected::Empty.into());
        }
        Ok(text)
    }

    /// A run's steps as timeline rows (kind, when, how long, tokens), read from its event log.
    pub fn timeline(&self, run_id: i64) -> Result<Vec<StepRow>, AppError> {
        Ok(crate::trace::timeline(&self.get_run(run_id)?.events))
    }

    /// `keel eval guard`: the injection scorer on a guard set (JSON lines), per layer. With `refit` the
    /// lexical layer and the combiner are fitted afresh and the returned fits are the ones measured; otherwise
    /// the committed ones are.
    /// Progress: (stage, done, total).
    pub fn evaluate_guard(
        &self,
        dataset: &Path,
        refit: bool,
        on_progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<(GuardEvalReport, Combiner, Option<Lexical>), AppError> {
        let text = crate::eval::guard::read_set(dataset).map_err(|e| AppError::new(ErrorKind::InvalidInput, e, None))?;
        let items = crate::eval::guard::load(&text)
            .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("{}: {e}", dataset.display()), None))?;
        let model = self.guard_model(&mut |p| on_progress(&p.stage, p.done, p.total))?;
        let texts = crate::eval::guard::texts(&items);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let windows = self.guard_windows(&model, &refs, &mut |d, t| on_progress("embedding the texts' windows", d as u64, t as u64))?;
        crate::eval::guard::evaluate(model.as_ref(), &dataset.display().to_string(), &items, &windows, refit, &mut |stage| {
            on_progress(stage, 0, 0)
        })
        .map_err(internal)
    }

    /// `keel eval intent`: the intent detector on the test split of the committed intent set.
    pub fn evaluate_intent(&self, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<IntentEvalReport, AppError> {
        let model = self.guard_model(&mut |p| on_progress(&p.stage, p.done, p.total))?;
        crate::eval::guard::evaluate_intent(model.as_ref()).map_err(internal)
    }

    /// `keel eval tools`: one ReAct step of the embedded model per prompt of `dataset`, under constrained
    /// decoding. `on_load` hears the model load, `on_prompt` (done, total) the prompts.
    pub fn evaluate_tool_calls(
        &self,
        dataset: &Path,
        on_load: &mut dyn FnMut(LoadProgress),
        on_prompt: &mut dyn FnMut(usize, usize),
    ) -> Result<ToolCallReport, AppError> {
        let prompts = crate::eval::tool_calls::load_prompts(dataset).map_err(|e| AppError::new(ErrorKind::InvalidInput, e, None))?;
        let model = self.local_model(on_load)?;
        let toolbox = self.toolbox();
        let settings = GenerationSettings { max_tokens: TOOL_EVAL_MAX_TOKENS, ..Default::default() };
        crate::eval::tool_calls::run(model.as_ref(), &toolbox, &prompts, &settings, on_prompt).map_err(internal)
    }

    /// `keel bench orchestration`: the orchestrator's own cost per step in two commit modes, on databases in a
    /// scratch folder of the system's temp dir that is removed afterwards (no data dir is opened). Progress:
    /// (mode, run, runs).
    pub fn bench_orchestration(
        steps: u32,
        runs: u32,
        on_progress: &mut dyn FnMut(&str, u32, u32),
    ) -> Result<OverheadReport, AppError> {
        let dir = std::env::temp_dir().join(format!("keel-bench-orchestration-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let report = crate::eval::overhead::run(&dir, steps, runs, on_progress).map_err(internal);
        let _ = std::fs::remove_dir_all(&dir);
        report
    }

    /// `keel bench remote`: time to first token and tokens/s through Keel's remote backend against the peer
    /// client on the same server and prompts (no data dir is opened, and no key is used). Progress: (round,
    /// rounds).
    pub fn bench_remote(options: &RemoteBenchOptions, on_progress: &mut dyn FnMut(u32, u32)) -> Result<RemoteBenchReport, AppError> {
        let config = RemoteConfig {
            name: "bench".into(),
            base_url: options.base_url.trim_end_matches('/').to_string(),
            model: options.model.clone(),
            connect_timeout: std::time::Duration::from_secs(10),
            read_timeout: std::time::Duration::from_secs(120),
            max_retries: 0,
            context_window: 4096,
            key: None,
            key_problem: None,
        };
        let backend = RemoteBackend::new(config)?;
        crate::eval::remote_bench::run(&backend, &options.peer, options.rounds, options.max_tokens, on_progress)
            .map_err(|e| AppError::new(ErrorKind::Backend, e, Some("check the server with `curl BASE_URL/models`".into())))
    }

    /// `keel bench decode`: prompt processing and decode speed of the embedded model's GGUF (the
    /// `options.model_path`, see [`App::chat_model_path`]), with the peer beside it when one is named.
    pub fn bench_decode(&self, options: &DecodeBenchOptions, on_progress: &mut dyn FnMut(&str)) -> Result<DecodeBenchReport, AppError> {
        crate::eval::bench::decode(options, on_progress)
    }

    /// `keel bench memory`: embedding throughput, search latency and reindex time (the model named by
    /// `options.model_dir`, see [`App::embedding_model_dir`]), with the peers beside them when named.
    pub fn bench_memory(&self, options: &MemoryBenchOptions, on_progress: &mut dyn FnMut(&str)) -> Result<MemoryBenchReport, AppError> {
        crate::eval::memory_bench::run(options, on_progress)
    }

    /// `keel bench retrieval`: nDCG@10 and recall@10 of BM25, vectors and hybrid on the judged set in `dataset`,
    /// with the embedding model this `App` uses, in the scratch data dir `work`. Progress: (stage, done, total).
    pub fn evaluate_retrieval(&self, dataset: &Path, work: &Path, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<RetrievalReport, AppError> {
        let (model_dir, model_id): (PathBuf, String) = self.embedding_model_dir(&mut |_| {})?;
        crate::eval::retrieval::evaluate(dataset, &model_dir, &model_id, work, on_progress)
    }
}
