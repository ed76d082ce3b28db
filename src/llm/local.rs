//! The embedded backend: a GGUF chat model run on the CPU by Keel's engine (`llm::engine`).
//!
//! It owns the loaded weights, the tokenizer and chat template read from the same file, and a pool of KV states
//! (`engine::cache`): a call computes only the part of its prompt that no cached state already holds, so a run's
//! next step and a conversation's next turn start from the shared prefix. Loading validates the file first
//! (magic, version, tensor table against the file size, architecture, quantisation types) so that a damaged or
//! foreign file is a clear [`LoadError`], never a panic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::constrain::{JsonConstraint, Verdict, MAX_CLOSING};
use super::engine::cache::{Checkout, Pool};
use super::engine::saved::{self, SavedStates};
use super::engine::{Engine, Logits, State};
use super::stream::TextStream;
use super::template::ChatTemplate;
use super::tokenizer::GgufTokenizer;
use super::{Backend, BackendError, BackendInfo, CancelFlag, ChatMessage, ChatRequest, Completion, GenerationSettings, StopReason};

/// Architectures candle's `quantized_llama` runs (the model manager refuses other files with this list).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// How many of the most recent tokens the repeat penalty looks at.
const REPEAT_LAST_N: usize = 64;

/// Why a GGUF file could not be loaded. Each names the file; the caller adds the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a GGUF model file ({reason})")]
    NotGguf { path: PathBuf, reason: String },
    #[error("{path} is truncated: its tensors need {needed} bytes but the file has {actual}")]
    Truncated { path: PathBuf, needed: u64, actual: u64 },
    #[error("{path} is a `{architecture}` model; Keel's embedded backend runs: {}", SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{path}: {source}")]
    Tokenizer { path: PathBuf, source: BackendError },
    #[error("{path} could not be loaded: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path} cannot run on Keel's embedded engine: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

/// Timings of one benchmark generation, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BenchTiming {
    /// Processing the whole prompt in one batch.
    pub prompt_ms: f64,
    /// Prompt processing plus choosing the first token.
    pub ttft_ms: f64,
    /// Generating the tokens after the first.
    pub decode_ms: f64,
}

/// A loaded GGUF chat model.
pub struct LocalModel {
    file_name: String,
    engine: Engine,
    /// KV states of earlier calls, for their shared prefixes.
    pool: Mutex<Pool>,
    /// One generation at a time (they would only compete for the same cores).
    busy: Mutex<()>,
    /// Where the shared prefixes' states are kept on disk, once the model's sha256 is known.
    saved: Mutex<Option<SavedStates>>,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    context_window: u32,
    /// Each token's bytes, for constrained decoding; built on first use.
    token_bytes: std::sync::OnceLock<Vec<Option<Vec<u8>>>>,
}

/// Reports bytes read while candle loads the tensors, for a real progress bar.
struct ProgressReader<'a, R> {
    inner: R,
    total: u64,
    on_progress: &'a mut dyn FnMut(u64, u64),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        Ok(n)
    }
}

impl<R: Seek> Seek for ProgressReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(pos)?;
        if at < self.total {
            (self.on_progress)(at, self.total);
        }
        Ok(at)
    }
}

/// Reads and checks a GGUF file's header, metadata and tensor table without loading any tensor.
pub fn read_header(path: &Path) -> Result<(Content, u64), LoadError> {
    let mut file = File::open(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    read_header_from(&mut file, path)
}

/// [`read_header`] of an open file (or any reader: the gguf fuzz target reads from memory); `path` names it in
/// errors. Reads from the start whatever the reader's position.
pub(crate) fn read_header_from<R: Read + Seek>(file: &mut R, path: &Path) -> Result<(Content, u64), LoadError> {
    let io = |source| LoadError::Io { path: path.to_owned(), source };
    let file_size = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    // candle divides by `general.alignment` after reading the header, so 0 there panics inside `Content::read`
    // (found by the gguf fuzz target): refuse it first.
    if zero_alignment(&mut std::io::BufReader::new(&mut *file)).unwrap_or(false) {
        return Err(LoadError::NotGguf { path: path.to_owned(), reason: "general.alignment is 0".into() });
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let content =
        Content::read(file).map_err(|e| LoadError::NotGguf { path: path.to_owned(), reason: e.to_string() })?;
    // Offsets come from the file: add them with checks, so a damaged header is an error and never an overflow.
    let mut needed = content.tensor_data_offset;
    for t in content.tensor_infos.values() {
        // Not `shape.elem_count()`: its product wraps, and a wrapped count let a tensor of 2^61 elements pass as
        // small, to be allocated whole by the loader (found by the gguf fuzz target).
        let elements = t.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = elements.and_then(|n| (n / t.ggml_dtype.block_size()).checked_mul(t.ggml_dtype.type_size()));
        let end = bytes.and_then(|b| content.tensor_data_offset.checked_add(t.offset)?.checked_add(b as u64));
        needed = needed.max(end.ok_or_else(|| LoadError::NotGguf {
            path: path.to_owned(),
            reason: "a tensor's offset or size is out of range".into(),
        })?);
    }
    if needed > file_size {
        return Err(LoadError::Truncated { path: path.to_owned(), needed, actual: file_size });
    }
    Ok((content, file_size))
}

/// Whether a GGUF header sets `general.alignment` to an integer 0 (in a type candle reads as the alignment).
/// Walks the metadata without allocating; any other damage is an `Err` or `false`, left for candle to report.
/// Every step reads at least one byte, so the walk ends at the end of the file whatever the counts say.
fn zero_alignment<R: Read + Seek>(r: &mut std::io::BufReader<R>) -> std::io::Result<bool> {
    use std::io::BufRead;
    fn bytes<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        r.read_exact(&mut b)?;
        Ok(b)
    }
    fn length<R: Read>(r: &mut R, wide: bool) -> std::io::Result<u64> {
        Ok(if wide { u64::from_le_bytes(bytes(r)?) } else { u32::from_le_bytes(bytes(r)?) as u64 })
    }
    fn skip<R: Read + Seek>(r: &mut std::io::BufReader<R>, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(|_| std::io::Error::other("length out of range"))?;
        r.seek_relative(n)?;
        // Past the end the next read fails; check now so a long array of skips stops at once.
        r.fill_buf().and_then(|b| if b.is_empty() { Err(std::io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) })
    }
    fn skip_value<R: Read + Seek>(r: &mut std::io::BufReader<R>, ty: u32, wide: bool, depth: u32) -> std::io::Result<()> {
        match ty {
            0 | 1 | 7 => skip(r, 1),
            2 | 3 => skip(r, 2),
            4..=6 => skip(r, 4),
            10..=12 => skip(r, 8),
            8 => {
                let n = length(r, wide)?;
                skip(r, n)
            }
            9 if depth < 8 => {
                let inner = u32::from_le_bytes(bytes(r)?);
                let n = length(r, wide)?;
                match inner {
                    0 | 1 | 7 => skip(r, n),
                    2 | 3 => skip(r, n.checked_mul(2).ok_or(std::io::ErrorKind::InvalidData)?),
                    4..=6 => skip(r, n.checked_mul(4).ok_or(std::io::ErrorKind::InvalidData)?),
                    10..=12 => skip(r, n.checked_mul(8).ok_or(std::io::ErrorKind::InvalidData)?),
                    _ => (0..n).try_for_each(|_| skip_value(r, inner, wide, depth + 1)),
                }
            }
            _ => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
    if bytes::<4>(r)? != *b"GGUF" {
        return Ok(false);
    }
    // Version 1 has 32-bit lengths and counts, later versions 64-bit.
    let wide = u32::from_le_bytes(bytes(r)?) >= 2;
    let _tensors = length(r, wide)?;
    let entries = length(r, wide)?;
    for _ in 0..entries {
        let key_len = length(r, wide)?;
        let is_alignment = key_len == 17 && bytes::<17>(r)? == *b"general.alignment";
        if key_len != 17 {
            skip(r, key_len)?;
        }
        let ty = u32::from_le_bytes(bytes(r)?);
        if !is_alignment {
            skip_value(r, ty, wide, 0)?;
            continue;
        }
        let zero = match ty {
            0 | 1 => bytes::<1>(r)? == [0],
            2 | 3 => bytes::<2>(r)? == [0; 2],
            4 | 5 => bytes::<4>(r)? == [0; 4],
            _ => {
                skip_value(r, ty, wide, 0)?;
                false
            }
        };
        if zero {
            return Ok(true);
        }
    }
    Ok(false)
}

impl LocalModel {
    /// Loads a GGUF chat model, reporting `(bytes_done, bytes_total)` as the tensors are read.
    pub fn load(path: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<LocalModel, LoadError> {
        let file = File::open(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
        LocalModel::load_from(file, path, on_progress)
    }

    /// [`LocalModel::load`] from an open file (or any reader: the gguf fuzz target loads from memory); `path`
    /// names it in errors and gives the model its file name.
    pub(crate) fn load_from<R: Read + Seek>(
        mut file: R,
        path: &Path,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<LocalModel, LoadError> {
        let (content, file_size) = read_header_from(&mut file, path)?;
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(LoadError::UnsupportedArchitecture { path: path.to_owned(), architecture });
        }
        let tokenizer =
            GgufTokenizer::from_gguf(&content).map_err(|source| LoadError::Tokenizer { path: path.to_owned(), source })?;
        let token = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or_default();
        let template_source = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| CHATML_FALLBACK.to_owned());
        let template = ChatTemplate::new(&template_source, &token(tokenizer.bos_id), &token(Some(tokenizer.eos_id)))
            .map_err(|source| LoadError::Tokenizer { path: path.to_owned(), source })?;
        let context_window = content
            .metadata
            .get(&format!("{architecture}.context_length"))
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2048);

        let unsupported = super::engine::unsupported_tensors(&content);
        if let Some((tensor, ty)) = unsupported.first() {
            return Err(LoadError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "tensor `{tensor}` is {ty} ({} tensors of unsupported types); the supported quantisation types are {}",
                    unsupported.len(),
                    super::engine::SUPPORTED_TYPES.join(", ")
                ),
            });
        }
        let mut reader = ProgressReader { inner: file, total: file_size, on_progress };
        let engine = Engine::load(&content, &mut reader, &mut |_, _| {}).map_err(|e| match e {
            super::engine::EngineError::UnsupportedType { .. } => LoadError::Unsupported { path: path.to_owned(), reason: e.to_string() },
            _ => LoadError::Weights { path: path.to_owned(), reason: e.to_string() },
        })?;
        (reader.on_progress)(file_size, file_size);
        let context_window = context_window.min(engine.config.context as u32);
        Ok(LocalModel {
            file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            engine,
            pool: Mutex::new(Pool::new(Pool::budget_from_env())),
            busy: Mutex::new(()),
            saved: Mutex::new(None),
            tokenizer,
            template,
            context_window,
            token_bytes: std::sync::OnceLock::new(),
        })
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// The rendered prompt for these messages (what the model sees).
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, BackendError> {
        self.template.render(messages)
    }

    /// The prompt's token ids. The template is rendered with a sentinel in place of each message's content; the
    /// template's own text is tokenized with its control markers, each content as plain text, so a message that
    /// contains `<|im_start|>system` cannot forge a turn. White space that ends a template piece is tokenized
    /// together with the content after it (it holds no marker), so the pieces meet where the pre-tokenizer splits
    /// the whole prompt anyway, and the ids are those of the rendered prompt.
    ///
    /// A template that transforms contents (`| trim`, `.strip()`) would render the sentinels, not the text the
    /// model must see; for such a template the whole rendered prompt is tokenized the ordinary way instead.
    pub fn encode_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, BackendError> {
        encode_messages(&self.template, &self.tokenizer, messages)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// For each position `i`, the argmax of the next-token logits after reading `ids[..=i]`.
    /// Used to check Keel's forward pass against a reference implementation.
    pub fn teacher_forced_argmax(&self, ids: &[u32]) -> Result<Vec<u32>, BackendError> {
        let logits = self.all_logits(ids)?;
        Ok(logits.chunks_exact(self.engine.config.vocab).map(argmax).collect())
    }

    /// The logits after each position of `ids`, read from an empty cache (row `i` after `ids[..=i]`).
    pub fn all_logits(&self, ids: &[u32]) -> Result<Vec<f32>, BackendError> {
        let _busy = self.lock_busy();
        let mut state = State::default();
        self.engine.forward(&mut state, ids, Logits::All).map_err(infer_err)?;
        Ok(state.logits)
    }

    /// One timed greedy generation for benchmarks: the prompt from an empty cache (no reuse), then exactly
    /// `decode_tokens` tokens (EOS is not a stop here, so every implementation decodes the same count).
    pub fn bench_generate(&self, prompt: &[u32], decode_tokens: u32) -> Result<BenchTiming, BackendError> {
        if prompt.is_empty() {
            return Err(BackendError::Inference("the benchmark prompt is empty".into()));
        }
        let _busy = self.lock_busy();
        let mut state = State::default();
        let started = Instant::now();
        self.engine.forward(&mut state, prompt, Logits::Last).map_err(infer_err)?;
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut next = argmax(&state.logits);
        let ttft_ms = started.elapsed().as_secs_f64() * 1e3;
        let decode_started = Instant::now();
        for _ in 1..decode_tokens as usize {
            self.engine.forward(&mut state, &[next], Logits::Last).map_err(infer_err)?;
            next = argmax(&state.logits);
        }
        let decode_ms = decode_started.elapsed().as_secs_f64() * 1e3;
        Ok(BenchTiming { prompt_ms, ttft_ms, decode_ms })
    }

    /// Time to the first token of a greedy reply to `prompt` through the KV pool (as a chat call does, with the
    /// saved prefix states when `shared` gives the prompt's shared prefix), and how many prompt tokens a cached
    /// state held.
    pub fn bench_first_token(&self, prompt: &[u32], shared: Option<usize>) -> Result<(f64, usize), BackendError> {
        let _busy = self.lock_busy();
        let started = Instant::now();
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let (Some(saved), Some(shared)) = (&saved, shared) {
            self.load_saved_prefix(saved, prompt, shared);
        }
        let Checkout { mut state, reused } = self.lock_pool().checkout(&self.engine.config, prompt);
        self.engine.forward(&mut state, &prompt[reused..], Logits::Last).map_err(infer_err)?;
        let _first = argmax(&state.logits);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let (Some(saved), Some(shared)) = (&saved, shared) {
            self.save_prefix(saved, &state, shared);
        }
        self.lock_pool().checkin(state);
        Ok((ms, reused))
    }

    /// Keeps the KV state of every prompt's shared prefix (its system and tools sections) on disk in `saved`, and
    /// starts from it when no state in memory holds that prefix (a fresh process).
    pub fn keep_prefixes(&self, saved: SavedStates) {
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
    }

    /// The tokens of `prompt` that every prompt with the same first (system) message shares: the system message
    /// and the template's text up to the next message's content. 0 without a system message.
    pub fn shared_prefix_len(&self, messages: &[ChatMessage], prompt: &[u32]) -> Result<usize, BackendError> {
        match messages {
            [first, _, ..] if first.role == super::Role::System => {
                let other = self.encode_prompt(&[first.clone(), ChatMessage::new(super::Role::User, "\u{1}")])?;
                Ok(prompt.iter().zip(&other).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1)))
            }
            _ => Ok(0),
        }
    }

    /// Seeds the pool with the saved state of `prompt[..shared]` when no idle state holds that much of it.
    fn load_saved_prefix(&self, saved: &SavedStates, prompt: &[u32], shared: usize) {
        if shared < saved::MIN_TOKENS || self.lock_pool().best_prefix(prompt) >= shared {
            return;
        }
        // A damaged or stale file is removed by `load`, and the prefix computed (and saved) afresh.
        if let Ok(Some(state)) = saved.load(&self.engine.config, &prompt[..shared]) {
            self.lock_pool().seed(state);
        }
    }

    /// Saves the state's first `shared` positions unless that prefix is on disk already. A models folder that
    /// cannot be written only costs the warm start.
    fn save_prefix(&self, saved: &SavedStates, state: &State, shared: usize) {
        if shared >= saved::MIN_TOKENS && state.len() >= shared && !saved.has(&state.tokens[..shared]) {
            let _ = saved.save(&self.engine.config, state, shared);
        }
    }

    /// The KV pool (its budget and idle states), for tests and diagnostics.
    pub fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.lock_pool()
    }

    /// Drops every cached KV state.
    pub fn clear_cache(&self) {
        let budget = self.lock_pool().budget();
        *self.lock_pool() = Pool::new(budget);
    }

    /// Sets the KV pool's budget of idle bytes (evicting at the next check-in).
    pub fn set_cache_budget(&self, bytes: usize) {
        *self.lock_pool() = Pool::new(bytes);
    }

    /// The pool and the busy flag, also after a panic in an earlier generation: a state in use is checked out,
    /// so nothing a panicking call left half-written is in the pool.
    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, ()> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` for greedy decoding (the argmax, without a tensor round trip).
    fn sampler(settings: &GenerationSettings) -> Option<LogitsProcessor> {
        let sampling = if settings.temperature <= 0.0 {
            return None;
        } else {
            let temperature = settings.temperature;
            match (settings.top_k, settings.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k: k as usize, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k: k as usize, p, temperature },
            }
        };
        Some(LogitsProcessor::from_sampling(settings.seed, sampling))
    }
}

impl Backend for LocalModel {
    fn info(&self) -> BackendInfo {
        BackendInfo { name: "local".into(), model: self.file_name.clone(), context_window: self.context_window }
    }

    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<u32, BackendError> {
        Ok(self.encode_prompt(messages)?.len() as u32)
    }

    /// A structured reply is decoded greedily under the schema's token constraint (see `llm::constrain`): at each
    /// step the best token that keeps the reply a viable prefix of a valid value is taken, and generation ends as
    /// soon as the value is complete. Sampling settings other than the repeat penalty do not apply: a tool call is
    /// not the place for randomness.
    fn reply(&self, request: &ChatRequest<'_>, cancel: &CancelFlag, on_text: &mut dyn FnMut(&str)) -> Result<Completion, BackendError> {
        self.generate(request.messages, request.settings, request.schema, cancel, on_text)
    }
}

impl LocalModel {
    fn generate(
        &self,
        messages: &[ChatMessage],
        settings: &GenerationSettings,
        schema: Option<&serde_json::Value>,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, BackendError> {
        let started = Instant::now();
        let constraint = schema.map(JsonConstraint::new);
        let mut produced: Vec<u8> = Vec::new();
        let prompt = self.encode_prompt(messages)?;
        let window = self.context_window as usize;
        if prompt.len() >= window {
            return Err(BackendError::ContextOverflow { prompt_tokens: prompt.len() as u32, window: window as u32 });
        }
        let _busy = self.lock_busy();
        let mut sampler = Self::sampler(settings);
        let mut stream = TextStream::new(&self.tokenizer);
        let mut context = prompt.clone();
        let mut ttft_ms = None;
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let shared = if saved.is_some() { self.shared_prefix_len(messages, &prompt)? } else { 0 };
        if let Some(saved) = &saved {
            self.load_saved_prefix(saved, &prompt, shared);
        }
        let Checkout { mut state, reused } = self.lock_pool().checkout(&self.engine.config, &prompt);
        self.engine.forward(&mut state, &prompt[reused..], Logits::Last).map_err(infer_err)?;
        let prompt_ms = started.elapsed().as_millis() as u64;
        let mut logits = std::mem::take(&mut state.logits);
        let stop = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            if settings.repeat_penalty != 1.0 {
                let from = context.len().saturating_sub(REPEAT_LAST_N);
                apply_repeat_penalty(&mut logits, settings.repeat_penalty, &context[from..]);
            }
            let next = match &constraint {
                None => match sampler {
                    None => argmax(&logits),
                    Some(ref mut s) => {
                        let t = Tensor::from_slice(&logits, logits.len(), &Device::Cpu).map_err(candle_err)?;
                        s.sample(&t).map_err(candle_err)?
                    }
                },
                Some(c) => match self.constrained_next(c, &logits, &mut produced, settings.max_tokens as usize - stream.ids().len())? {
                    Some(id) => id,
                    // The value is complete: the reply ends here, as if the model had said EOS.
                    None => break StopReason::Eos,
                },
            };
            ttft_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
            if self.tokenizer.stop_ids.contains(&next) {
                break StopReason::Eos;
            }
            context.push(next);
            if let Some(piece) = stream.push(next)? {
                on_text(&piece);
            }
            if stream.ids().len() >= settings.max_tokens as usize || context.len() >= window {
                break StopReason::MaxTokens;
            }
            state.logits = logits;
            self.engine.forward(&mut state, &[next], Logits::Last).map_err(infer_err)?;
            logits = std::mem::take(&mut state.logits);
        };
        state.logits = logits;
        if let Some(saved) = &saved {
            self.save_prefix(saved, &state, shared);
        }
        self.lock_pool().checkin(state);
        Ok(Completion {
            text: stream.text().to_owned(),
            prompt_tokens: prompt.len() as u32,
            cached_prompt_tokens: reused as u32,
            completion_tokens: stream.ids().len() as u32,
            stop,
            ttft_ms,
            prompt_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            answered_by: None,
            fell_back: Vec::new(),
        })
    }
}

impl LocalModel {
    /// The best-scoring token that keeps `produced` viable (appending its bytes), or `None` when `produced` is
    /// already a complete value. With `left` tokens of the budget left (this one included), a value that would be
    /// cut is closed instead: once its shortest completion needs all that is left (a byte is at most a token), only
    /// tokens that begin that completion are taken.
    fn constrained_next(&self, c: &JsonConstraint<'_>, scores: &[f32], produced: &mut Vec<u8>, left: usize) -> Result<Option<u32>, BackendError> {
        if c.check(produced) == Verdict::Complete {
            return Ok(None);
        }
        let forced = if left <= MAX_CLOSING + 1 { c.shortest_completion(produced).filter(|tail| tail.len() + 1 >= left) } else { None };
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_unstable_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]));
        let bytes = self.token_bytes.get_or_init(|| self.tokenizer.token_bytes());
        let mut candidate = produced.clone();
        for id in order {
            let Some(Some(piece)) = bytes.get(id as usize) else { continue };
            if piece.is_empty() {
                continue;
            }
            if let Some(tail) = &forced {
                if tail.starts_with(piece) {
                    produced.extend_from_slice(piece);
                    return Ok(Some(id));
                }
                continue;
            }
            candidate.truncate(produced.len());
            candidate.extend_from_slice(piece);
            if c.check(&candidate) != Verdict::Dead {
                produced.extend_from_slice(piece);
                return Ok(Some(id));
            }
        }
        Err(BackendError::Inference(format!(
            "constrained decoding found no token that keeps the reply valid after {:?}",
            String::from_utf8_lossy(produced)
        )))
    }
}

/// [`LocalModel::encode_prompt`] with its template and tokenizer given (the tokenizer fuzz target calls it without
/// loading weights).
pub(crate) fn encode_messages(template: &ChatTemplate, tokenizer: &GgufTokenizer, messages: &[ChatMessage]) -> Result<Vec<u32>, BackendError> {
    const OPEN: char = '\u{F8F0}';
    const CLOSE: char = '\u{F8F1}';
    let marked: Vec<ChatMessage> =
        messages.iter().enumerate().map(|(i, m)| ChatMessage::new(m.role, format!("{OPEN}{i}{CLOSE}"))).collect();
    let rendered = template.render(&marked)?;
    // (template piece, index of the content that follows it)
    let mut pieces: Vec<(&str, Option<usize>)> = Vec::new();
    let mut rest = rendered.as_str();
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len_utf8()..];
        let index = after
            .find(CLOSE)
            .and_then(|end| after[..end].parse::<usize>().ok().map(|i| (i, end)))
            .filter(|(i, _)| *i < messages.len());
        let Some((i, end)) = index else { break };
        pieces.push((&rest[..start], Some(i)));
        rest = &after[end + CLOSE.len_utf8()..];
    }
    pieces.push((rest, None));
    let substituted: String =
        pieces.iter().map(|(t, i)| format!("{t}{}", i.map(|i| messages[i].content.as_str()).unwrap_or(""))).collect();
    let real = template.render(messages)?;
    if substituted != real {
        return tokenizer.encode(&real);
    }
    let mut ids = Vec::new();
    for (template, content) in pieces {
        match content {
            Some(i) => {
                let head = template.trim_end();
                ids.extend(tokenizer.encode(head)?);
                let plain = format!("{}{}", &template[head.len()..], messages[i].content);
                ids.extend(tokenizer.encode_plain(&plain)?);
            }
            None => ids.extend(tokenizer.encode(template)?),
        }
    }
    Ok(ids)
}

fn infer_err(e: super::engine::EngineError) -> BackendError {
    BackendError::Inference(e.to_string())
}

fn candle_err(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

/// The index of the largest value (the first of equals), as candle's argmax.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// candle's repeat penalty, in place: each distinct recent token's logit divided by `penalty` when positive,
/// multiplied when negative.
fn apply_repeat_penalty(logits: &mut [f32], penalty: f32, recent: &[u32]) {
    let mut seen = std::collections::HashSet::new();
    for &id in recent {
        if seen.insert(id) {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l >= 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

/// Used when a GGUF file carries no chat template: ChatML, the most common format for small instruct models.
const CHATML_FALLBACK: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
