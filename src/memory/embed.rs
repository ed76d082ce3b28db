//! On-device sentence embeddings: all-MiniLM-L6-v2 (BERT) in candle, the way sentence-transformers computes them.
//!
//! Word pieces from the model's own `tokenizer.json` (truncated at 256, the model's limit, padded to the longest
//! text of a batch), a BERT forward pass with the attention mask, mean pooling over the real tokens, then L2
//! normalisation, so a dot product is a cosine. Texts are tokenised a window at a time, texts whose word pieces
//! are the same are run once (every chunk of a long run of digits is `[CLS] [UNK] [SEP]`), and the rest are
//! sorted by length before batching so that short texts do not pay for a long neighbour's padding. The CPU
//! thread count is candle's (`RAYON_NUM_THREADS`).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::bert::{Bert, BertConfig};
use tokenizers::{Tokenizer, TruncationParams};

/// The model's limit in word pieces (`[CLS]` and `[SEP]` included), as sentence-transformers sets it.
pub const MAX_PIECES: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;
/// Texts tokenised together (and searched for identical word pieces), at most this many and this many bytes:
/// bounds the memory the word pieces take (the tokenizer keeps the whole of each text's, truncated part too).
const WINDOW: usize = 1024;
const WINDOW_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model file {path} could not be loaded: {reason}")]
    Load { path: String, reason: String },
    #[error("embedding failed: {0}")]
    Inference(String),
}

pub struct Embedder {
    model: Bert,
    /// Truncating at [`MAX_PIECES`], not padding (batches are padded by [`Embedder::forward`]).
    tokenizer: Tokenizer,
    pad_id: u32,
    /// The same tokenizer without truncation or padding, for counting.
    counter: Tokenizer,
    model_id: String,
    dim: usize,
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> EmbedError {
    EmbedError::Load { path: path.display().to_string(), reason: reason.to_string() }
}

fn infer(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Inference(e.to_string())
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (checksums are the caller's).
    pub fn load(dir: &Path, model_id: &str) -> Result<Embedder, EmbedError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_slice(&std::fs::read(&config_path).map_err(|e| load_err(&config_path, e))?)
            .map_err(|e| load_err(&config_path, e))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| load_err(&tokenizer_path, e))?;
        let mut counter = tokenizer.clone();
        counter.with_truncation(None).map_err(|e| load_err(&tokenizer_path, e))?;
        counter.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_PIECES, ..Default::default() }))
            .map_err(|e| load_err(&tokenizer_path, e))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        // Read rather than mapped (a file changed under a mapping is undefined behaviour), one tensor at a time
        // (so the peak is the model plus one tensor, not the model twice).
        let file = super::weights::SafetensorsFile::open(&weights_path).map_err(|e| load_err(&weights_path, e))?;
        let vb = VarBuilder::from_backend(Box::new(file), DType::F32, device.clone());
        let model = Bert::load(vb, &config).map_err(|e| load_err(&weights_path, e))?;
        Ok(Embedder { model, tokenizer, pad_id, counter, model_id: model_id.to_owned(), dim: config.hidden_size })
    }

    /// The tag stored with every embedding; a different tag means the vector must be recomputed.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Word pieces `text` takes, `[CLS]`/`[SEP]` included, before truncation.
    pub fn count_pieces(&self, text: &str) -> usize {
        self.counter.encode_fast(text, true).map(|e| e.len()).unwrap_or(text.len())
    }

    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed(&[text])?.pop().expect("one text, one vector"))
    }

    /// One normalised vector per text, in the order given.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with_progress(texts, &mut |_, _| {})
    }

    pub fn embed_with_progress(&self, texts: &[&str], on_progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![Vec::new(); texts.len()];
        let mut done = 0;
        let mut windows: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, t) in texts.iter().enumerate() {
            if i > start && (i - start == WINDOW || bytes + t.len() > WINDOW_BYTES) {
                windows.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += t.len();
        }
        if start < texts.len() {
            windows.push(start..texts.len());
        }
        for window in windows {
            let window: Vec<usize> = window.collect();
            let encodings =
                self.tokenizer.encode_batch_fast(window.iter().map(|&i| texts[i]).collect::<Vec<_>>(), true).map_err(infer)?;
            // Each distinct sequence of word pieces once, with the texts it stands for.
            let mut unique: Vec<(&[u32], Vec<usize>)> = Vec::new();
            let mut seen: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
            for (&slot, e) in window.iter().zip(&encodings) {
                let ids = e.get_ids();
                match seen.get(ids) {
                    Some(&u) => unique[u].1.push(slot),
                    None => {
                        seen.insert(ids, unique.len());
                        unique.push((ids, vec![slot]));
                    }
                }
            }
            // Longest first, like sentence-transformers.
            unique.sort_by_key(|(ids, _)| std::cmp::Reverse(ids.len()));
            for batch in unique.chunks(BATCH) {
                let seqs: Vec<&[u32]> = batch.iter().map(|(ids, _)| *ids).collect();
                for ((_, slots), v) in batch.iter().zip(self.forward(&seqs)?) {
                    for &slot in slots {
                        out[slot] = v.clone();
                    }
                    done += slots.len();
                }
                on_progress(done, texts.len());
            }
        }
        Ok(out)
    }

    /// The vectors of sequences of word pieces, padded on the right to the longest.
    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * len);
        let mut real = Vec::with_capacity(seqs.len());
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(self.pad_id, len - s.len()));
            real.push(s.len());
        }
        let pooled = self.model.pooled(&ids, seqs.len(), len, &real).map_err(infer)?;
        Ok(pooled.into_iter().map(normalise).collect())
    }
}

/// L2 normalisation (a zero vector stays zero).
pub fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
