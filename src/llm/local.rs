//! The embedded backend: candle's quantized llama running a GGUF file on the CPU.
//!
//! It owns the loaded weights (behind a mutex: one generation at a time, the KV cache is per model), the tokenizer
//! and chat template read from the same file. Loading validates the file first (magic, version, tensor table
//! against the file size, architecture) so that a damaged or foreign file is a clear [`LoadError`], never a panic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;

use super::constrain::{JsonConstraint, Verdict, MAX_CLOSING};
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
    weights: Mutex<ModelWeights>,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    context_window: u32,
    device: Device,
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
    let io = |source| LoadError::Io { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io)?;
    let file_size = file.metadata().map_err(io)?.len();
    let content =
        Content::read(&mut file).map_err(|e| LoadError::NotGguf { path: path.to_owned(), reason: e.to_string() })?;
    // Offsets come from the file: add them with checks, so a damaged header is an error and never an overflow.
    let mut needed = content.tensor_data_offset;
    for t in content.tensor_infos.values() {
        let bytes = (t.shape.elem_count() / t.ggml_dtype.block_size()).checked_mul(t.ggml_dtype.type_size());
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

impl LocalModel {
    /// Loads a GGUF chat model, reporting `(bytes_done, bytes_total)` as the tensors are read.
    pub fn load(path: &Path, on_progress: &mut dyn FnMut(u64, u64)) -> Result<LocalModel, LoadError> {
        let (content, file_size) = read_header(path)?;
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

        let device = Device::Cpu;
        let file = File::open(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
        let mut reader = ProgressReader { inner: file, total: file_size, on_progress };
        let weights_err = |e: candle_core::Error| LoadError::Weights { path: path.to_owned(), reason: e.to_string() };
        let weights = if super::repack::needs_repack(&content) {
            let (content, mut repacked) =
                super::repack::repack(content, &mut reader, &mut |_, _| {}).map_err(weights_err)?;
            ModelWeights::from_gguf(content, &mut repacked, &device).map_err(weights_err)?
        } else {
            ModelWeights::from_gguf(content, &mut reader, &device).map_err(weights_err)?
        };
        (reader.on_progress)(file_size, file_size);
        Ok(LocalModel {
            file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            weights: Mutex::new(weights),
            tokenizer,
            template,
            context_window,
            device,
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
        const OPEN: char = '\u{F8F0}';
        const CLOSE: char = '\u{F8F1}';
        let marked: Vec<ChatMessage> =
            messages.iter().enumerate().map(|(i, m)| ChatMessage::new(m.role, format!("{OPEN}{i}{CLOSE}"))).collect();
        let rendered = self.template.render(&marked)?;
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
        let real = self.template.render(messages)?;
        if substituted != real {
            return self.tokenizer.encode(&real);
        }
        let mut ids = Vec::new();
        for (template, content) in pieces {
            match content {
                Some(i) => {
                    let head = template.trim_end();
                    ids.extend(self.tokenizer.encode(head)?);
                    let plain = format!("{}{}", &template[head.len()..], messages[i].content);
                    ids.extend(self.tokenizer.encode_plain(&plain)?);
                }
                None => ids.extend(self.tokenizer.encode(template)?),
            }
        }
        Ok(ids)
    }

    /// For each position `i`, the argmax of the next-token logits after reading `ids[..=i]`.
    /// Used to check Keel's forward pass against a reference implementation.
    pub fn teacher_forced_argmax(&self, ids: &[u32]) -> Result<Vec<u32>, BackendError> {
        let mut weights = self.lock_weights();
        let mut out = Vec::with_capacity(ids.len());
        for (pos, &id) in ids.iter().enumerate() {
            // Position 0 resets candle's KV cache.
            let logits = self.forward(&mut weights, &[id], pos)?;
            out.push(logits.argmax(0).and_then(|t| t.to_scalar::<u32>()).map_err(infer_err)?);
        }
        Ok(out)
    }

    /// One timed greedy generation for benchmarks: the prompt, then exactly `decode_tokens` tokens (EOS is not
    /// a stop here, so every implementation decodes the same count).
    pub fn bench_generate(&self, prompt: &[u32], decode_tokens: u32) -> Result<BenchTiming, BackendError> {
        if prompt.is_empty() {
            return Err(BackendError::Inference("the benchmark prompt is empty".into()));
        }
        let mut weights = self.lock_weights();
        let started = Instant::now();
        let logits = self.forward(&mut weights, prompt, 0)?;
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut next = logits.argmax(0).and_then(|t| t.to_scalar::<u32>()).map_err(infer_err)?;
        let ttft_ms = started.elapsed().as_secs_f64() * 1e3;
        let decode_started = Instant::now();
        for i in 1..decode_tokens as usize {
            let logits = self.forward(&mut weights, &[next], prompt.len() + i - 1)?;
            next = logits.argmax(0).and_then(|t| t.to_scalar::<u32>()).map_err(infer_err)?;
        }
        let decode_ms = decode_started.elapsed().as_secs_f64() * 1e3;
        Ok(BenchTiming { prompt_ms, ttft_ms, decode_ms })
    }

    /// The weights, also after a panic in an earlier generation: every generation starts its KV cache afresh at
    /// position 0, so nothing a panicking call left behind is read again.
    fn lock_weights(&self) -> std::sync::MutexGuard<'_, ModelWeights> {
        self.weights.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forward(&self, weights: &mut ModelWeights, ids: &[u32], pos: usize) -> Result<Tensor, BackendError> {
        let input = Tensor::new(ids, &self.device).and_then(|t| t.unsqueeze(0)).map_err(infer_err)?;
        weights.forward(&input, pos).and_then(|t| t.squeeze(0)).map_err(infer_err)
    }

    fn sampler(settings: &GenerationSettings) -> LogitsProcessor {
        let sampling = if settings.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = settings.temperature;
            match (settings.top_k, settings.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k: k as usize, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k: k as usize, p, temperature },
            }
        };
        LogitsProcessor::from_sampling(settings.seed, sampling)
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
        let mut weights = self.lock_weights();
        let mut sampler = Self::sampler(settings);
        let mut stream = TextStream::new(&self.tokenizer);
        let mut context = prompt.clone();
        let mut ttft_ms = None;
        let mut logits = self.forward(&mut weights, &prompt, 0)?;
        let prompt_ms = started.elapsed().as_millis() as u64;
        let stop = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            let penalised = if settings.repeat_penalty != 1.0 {
                let from = context.len().saturating_sub(REPEAT_LAST_N);
                candle_transformers::utils::apply_repeat_penalty(&logits, settings.repeat_penalty, &context[from..])
                    .map_err(infer_err)?
            } else {
                logits
            };
            let next = match &constraint {
                None => sampler.sample(&penalised).map_err(infer_err)?,
                Some(c) => match self.constrained_next(c, &penalised, &mut produced, settings.max_tokens as usize - stream.ids().len())? {
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
            logits = self.forward(&mut weights, &[next], context.len() - 1)?;
        };
        Ok(Completion {
            text: stream.text().to_owned(),
            prompt_tokens: prompt.len() as u32,
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
    fn constrained_next(&self, c: &JsonConstraint<'_>, logits: &Tensor, produced: &mut Vec<u8>, left: usize) -> Result<Option<u32>, BackendError> {
        if c.check(produced) == Verdict::Complete {
            return Ok(None);
        }
        let forced = if left <= MAX_CLOSING + 1 { c.shortest_completion(produced).filter(|tail| tail.len() + 1 >= left) } else { None };
        let scores: Vec<f32> = logits.to_dtype(candle_core::DType::F32).and_then(|l| l.to_vec1()).map_err(infer_err)?;
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

fn infer_err(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

/// Used when a GGUF file carries no chat template: ChatML, the most common format for small instruct models.
const CHATML_FALLBACK: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
