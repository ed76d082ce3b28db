//! Keel's own forward pass for llama-architecture GGUF models: the weights read by candle's GGUF reader and laid
//! out for `keel_kernels::quant`, activations quantized once per layer input, Q/K/V and gate/up each one product,
//! and a KV cache written in place.
//!
//! candle's `quantized_llama` is the reference this engine is tested against (`tests/integration/engine.rs`);
//! the hot path is this module and the kernels. A [`State`] is one sequence's KV cache and buffers: the model
//! is shared, states are many (see [`cache`]).

pub mod cache;
pub mod saved;

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;
use keel_kernels::llama::{self as k, AttnShape};
use keel_kernels::quant::{matmul, GgmlType, Q8Act, QMatrix};

/// The quantisation types the engine's kernels read.
pub const SUPPORTED_TYPES: &[&str] = &["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"];

/// Why a model's tensors cannot run on the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("tensor `{tensor}` is of type {ty}; Keel's embedded engine runs {}", SUPPORTED_TYPES.join(", "))]
    UnsupportedType { tensor: String, ty: String },
    #[error("{0}")]
    Shape(String),
    #[error("reading tensor `{tensor}`: {reason}")]
    Read { tensor: String, reason: String },
}

/// The model's hyper-parameters.
#[derive(Debug, Clone)]
pub struct Config {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ff: usize,
    pub vocab: usize,
    pub eps: f32,
    pub context: usize,
}

impl Config {
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Bytes of K and V for one position over all layers.
    pub fn kv_bytes_per_position(&self) -> usize {
        2 * self.layers * self.kv_dim() * std::mem::size_of::<u16>()
    }
}

/// Matrices computed as one product, each with the offset of its rows in the output.
struct Fused(Vec<(QMatrix, usize)>);

impl Fused {
    fn parts(&self) -> Vec<(&QMatrix, usize)> {
        self.0.iter().map(|(m, o)| (m, *o)).collect()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    qkv: Fused,
    wo: QMatrix,
    gate_up: Fused,
    down: QMatrix,
}

/// A loaded model.
pub struct Engine {
    pub config: Config,
    embed: QMatrix,
    /// `None`: the output layer is the embedding (tied weights).
    output: Option<QMatrix>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
    /// The rotary frequencies `θ_i`; each pass computes the angles of its own positions.
    theta: Vec<f32>,
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

/// One sequence: the tokens whose K and V are cached, the caches, and the forward pass's buffers (grown, never
/// shrunk, so a step allocates nothing once the first has run).
#[derive(Default)]
pub struct State {
    pub tokens: Vec<u32>,
    /// K and V per layer as f16 bits (as llama.cpp keeps them): half the memory, and half the bytes attention
    /// reads per position.
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    /// Positions the caches have room for.
    capacity: usize,
    x: Vec<f32>,
    act: Q8Act,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    tmp: Vec<f32>,
    gu: Vec<f32>,
    scores: Vec<f32>,
    /// The rotary angles' cosines and sines of this pass's positions (`head_dim / 2` per position).
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Logits of the last forward pass: one row of `vocab` per returned position.
    pub logits: Vec<f32>,
}

impl State {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Forgets every position from `len` on (their K and V are overwritten by the next pass).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Bytes of the KV caches held.
    pub fn kv_bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|c| c.capacity() * 2).sum()
    }

    /// The length of the longest common prefix of the cached tokens and `ids`.
    pub fn common_prefix(&self, ids: &[u32]) -> usize {
        self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count()
    }

    /// A state holding the first `len` positions of this one (for keeping a shared prefix while another
    /// sequence continues from it).
    pub fn prefix_copy(&self, config: &Config, len: usize) -> State {
        let len = len.min(self.len());
        let kv = config.kv_dim();
        let mut s = State { tokens: self.tokens[..len].to_vec(), ..State::default() };
        s.reserve(config, len);
        for l in 0..config.layers {
            s.k[l][..len * kv].copy_from_slice(&self.k[l][..len * kv]);
            s.v[l][..len * kv].copy_from_slice(&self.v[l][..len * kv]);
        }
        s
    }

    /// Room for `positions` in the caches, grown in steps of 64 positions.
    fn reserve(&mut self, config: &Config, positions: usize) {
        if self.k.len() != config.layers {
            self.k = vec![Vec::new(); config.layers];
            self.v = vec![Vec::new(); config.layers];
            self.capacity = 0;
        }
        if positions > self.capacity {
            let capacity = positions.div_ceil(64) * 64;
            for c in self.k.iter_mut().chain(self.v.iter_mut()) {
                c.resize(capacity * config.kv_dim(), 0);
                c.shrink_to_fit();
            }
            self.capacity = capacity;
        }
    }

    /// The raw caches of the first `len` positions, layer by layer (K then V), for saving.
    pub fn kv_slices(&self, config: &Config, len: usize) -> impl Iterator<Item = &[u16]> {
        let n = len * config.kv_dim();
        self.k.iter().zip(&self.v).flat_map(move |(k, v)| [&k[..n], &v[..n]])
    }

    /// A state from saved caches (as [`State::kv_slices`] gives them).
    pub fn from_saved(config: &Config, tokens: Vec<u32>, mut read: impl FnMut(&mut [u16]) -> std::io::Result<()>) -> std::io::Result<State> {
        let len = tokens.len();
        let n = len * config.kv_dim();
        let mut s = State { tokens, ..State::default() };
        s.reserve(config, len);
        for l in 0..config.layers {
            read(&mut s.k[l][..n])?;
            read(&mut s.v[l][..n])?;
        }
        Ok(s)
    }
}

fn ggml_type(name: &str, dtype: GgmlDType) -> Result<GgmlType, EngineError> {
    Ok(match dtype {
        GgmlDType::Q4_0 => GgmlType::Q4_0,
        GgmlDType::Q4_1 => GgmlType::Q4_1,
        GgmlDType::Q5_0 => GgmlType::Q5_0,
        GgmlDType::Q8_0 => GgmlType::Q8_0,
        GgmlDType::Q4K => GgmlType::Q4K,
        GgmlDType::Q6K => GgmlType::Q6K,
        other => return Err(EngineError::UnsupportedType { tensor: name.to_owned(), ty: format!("{other:?}").to_uppercase().replace("Q4K", "Q4_K") }),
    })
}

/// The quantisation types of a file's weight matrices that the engine cannot run, as `(tensor, type)`; checked
/// before any tensor is read, so a refused file costs no load.
pub fn unsupported_tensors(content: &Content) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = content
        .tensor_infos
        .iter()
        .filter(|(name, info)| name.ends_with(".weight") && info.shape.dims().len() == 2)
        .filter_map(|(name, info)| ggml_type(name, info.ggml_dtype).err().map(|_| (name.clone(), type_name(info.ggml_dtype))))
        .collect();
    out.sort();
    out
}

/// ggml's name of a type (`Q4_K`, `F16` …).
pub fn type_name(dtype: GgmlDType) -> String {
    let raw = format!("{dtype:?}").to_uppercase();
    match raw.strip_suffix('K') {
        Some(head) if head.starts_with('Q') => format!("{head}_K"),
        _ => raw,
    }
}

struct Reader<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    on_tensor: &'a mut dyn FnMut(usize, usize),
    done: usize,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn tick(&mut self) {
        self.done += 1;
        (self.on_tensor)(self.done, self.content.tensor_infos.len());
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A tensor's (type, dims, bytes), read straight from the file: one copy, so loading never holds a tensor
    /// twice besides its packed form.
    fn bytes(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>), EngineError> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| EngineError::Shape(format!("the file has no tensor `{name}`")))?;
        let read = |e: std::io::Error| EngineError::Read { tensor: name.into(), reason: e.to_string() };
        let size = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let mut bytes = vec![0u8; size];
        self.reader.seek(std::io::SeekFrom::Start(self.content.tensor_data_offset + info.offset)).map_err(read)?;
        self.reader.read_exact(&mut bytes).map_err(read)?;
        let out = (info.ggml_dtype, info.shape.dims().to_vec(), bytes);
        self.tick();
        Ok(out)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        let (dtype, _, bytes) = self.bytes(name)?;
        let v: Vec<f32> = match dtype {
            GgmlDType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            GgmlDType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(EngineError::UnsupportedType { tensor: name.into(), ty: type_name(other) }),
        };
        if v.len() != len {
            return Err(EngineError::Shape(format!("`{name}` has {} values, {len} expected", v.len())));
        }
        Ok(v)
    }

    /// A matrix's (type, bytes), its dims checked.
    fn raw(&mut self, name: &str, rows: usize, cols: usize) -> Result<(GgmlType, Vec<u8>), EngineError> {
        let (dtype, dims, bytes) = self.bytes(name)?;
        let ty = ggml_type(name, dtype)?;
        if dims != [rows, cols] {
            return Err(EngineError::Shape(format!("`{name}` is {dims:?}, [{rows}, {cols}] expected")));
        }
        Ok((ty, bytes))
    }

    /// One matrix, packed as it is read (eight rows at a time).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, EngineError> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| EngineError::Shape(format!("the file has no tensor `{name}`")))?;
        let ty = ggml_type(name, info.ggml_dtype)?;
        let dims = info.shape.dims().to_vec();
        if dims != [rows, cols] {
            return Err(EngineError::Shape(format!("`{name}` is {dims:?}, [{rows}, {cols}] expected")));
        }
        let read = |e: std::io::Error| EngineError::Read { tensor: name.into(), reason: e.to_string() };
        self.reader.seek(std::io::SeekFrom::Start(self.content.tensor_data_offset + info.offset)).map_err(read)?;
        let reader = &mut *self.reader;
        let m = QMatrix::from_ggml_rows(ty, rows, cols, &mut |buf| reader.read_exact(buf)).map_err(|e| match e {
            keel_kernels::quant::PackRead::Read(e) => read(e),
            keel_kernels::quant::PackRead::Pack(e) => EngineError::Shape(format!("`{name}`: {e}")),
        })?;
        self.tick();
        Ok(m)
    }

    /// Several matrices of the same input width as one product: one matrix when their types agree, else
    /// parts. Rows land at `0`, `rows[0]`, `rows[0] + rows[1]` … of the output.
    fn fused(&mut self, names: &[(&str, usize)], cols: usize) -> Result<Fused, EngineError> {
        let mut raws = Vec::new();
        for (name, rows) in names {
            let (ty, bytes) = self.raw(name, *rows, cols)?;
            raws.push((name.to_string(), ty, *rows, bytes));
        }
        let shape = |name: &str, e: keel_kernels::quant::PackError| EngineError::Shape(format!("`{name}`: {e}"));
        if raws.iter().all(|r| r.1 == raws[0].1) {
            let rows = raws.iter().map(|r| r.2).sum();
            let bytes: Vec<u8> = raws.iter().flat_map(|r| r.3.iter().copied()).collect();
            let m = QMatrix::from_ggml(raws[0].1, rows, cols, &bytes).map_err(|e| shape(&raws[0].0, e))?;
            return Ok(Fused(vec![(m, 0)]));
        }
        let mut parts = Vec::new();
        let mut offset = 0;
        for (name, ty, rows, bytes) in raws {
            parts.push((QMatrix::from_ggml(ty, rows, cols, &bytes).map_err(|e| shape(&name, e))?, offset));
            offset += rows;
        }
        Ok(Fused(parts))
    }
}

impl Engine {
    /// Reads a llama-architecture model, reporting `(tensors_done, tensors_total)`.
    pub fn load<R: Read + Seek>(content: &Content, reader: &mut R, on_tensor: &mut dyn FnMut(usize, usize)) -> Result<Engine, EngineError> {
        let md = |key: &str| content.metadata.get(&format!("llama.{key}"));
        let num = |key: &str| -> Result<usize, EngineError> {
            md(key).and_then(|v| v.to_u32().ok()).map(|v| v as usize).ok_or_else(|| EngineError::Shape(format!("the file's metadata lacks llama.{key}")))
        };
        let dim = num("embedding_length")?;
        let heads = num("attention.head_count")?;
        let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
        let layers = num("block_count")?;
        let ff = num("feed_forward_length")?;
        if md("expert_count").and_then(|v| v.to_u32().ok()).unwrap_or(0) > 1 {
            return Err(EngineError::Shape("mixture-of-experts llama models are not supported by Keel's engine".into()));
        }
        if heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 {
            return Err(EngineError::Shape(format!("{heads} heads over {kv_heads} KV heads do not divide {dim} dimensions")));
        }
        let head_dim = dim / heads;
        let rope_dim = num("rope.dimension_count").unwrap_or(head_dim);
        if rope_dim != head_dim || head_dim % 8 != 0 {
            return Err(EngineError::Shape(format!("a head of {head_dim} dimensions with {rope_dim} rotated is not supported")));
        }
        let eps = md("attention.layer_norm_rms_epsilon").and_then(|v| v.to_f32().ok()).unwrap_or(1e-5);
        let base = md("rope.freq_base").and_then(|v| v.to_f32().ok()).unwrap_or(10000.0);
        let context = num("context_length").unwrap_or(2048);
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| EngineError::Shape("the file has no token_embd.weight".into()))?;
        if let Some((tensor, ty)) = unsupported_tensors(content).into_iter().next() {
            return Err(EngineError::UnsupportedType { tensor, ty });
        }

        let mut r = Reader { content, reader, on_tensor, done: 0 };
        let embed = r.matrix("token_embd.weight", vocab, dim)?;
        let output = if r.has("output.weight") { Some(r.matrix("output.weight", vocab, dim)?) } else { None };
        let norm = r.vector("output_norm.weight", dim)?;
        let kv = kv_heads * head_dim;
        // Not `with_capacity(layers)`: the count comes from the file, and 4294967295 layers would abort on the
        // allocation before the first missing tensor could say the file is damaged.
        let mut all = Vec::with_capacity(layers.min(content.tensor_infos.len()));
        for i in 0..layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            all.push(Layer {
                attn_norm: r.vector(&p("attn_norm"), dim)?,
                ffn_norm: r.vector(&p("ffn_norm"), dim)?,
                qkv: r.fused(&[(&p("attn_q"), dim), (&p("attn_k"), kv), (&p("attn_v"), kv)], dim)?,
                wo: r.matrix(&p("attn_output"), dim, dim)?,
                gate_up: r.fused(&[(&p("ffn_gate"), ff), (&p("ffn_up"), ff)], dim)?,
                down: r.matrix(&p("ffn_down"), dim, ff)?,
            });
        }
        // candle's table, value for value: θ_i = 1 / base^(2i/d), angle = position · θ_i in f32.
        let theta: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1f32 / base.powf(i as f32 / head_dim as f32)).collect();
        let config = Config { layers, dim, heads, kv_heads, head_dim, ff, vocab, eps, context };
        Ok(Engine { config, embed, output, norm, layers: all, theta })
    }

    /// Runs `ids` after the state's cached positions; their K and V join the cache, and `state.logits` holds
    /// the logits of the last position or of every one of them.
    pub fn forward(&self, state: &mut State, ids: &[u32], want: Logits) -> Result<(), EngineError> {
        // The whole pass runs on one of rayon's workers, so that each product's split is a cheap fork inside the
        // pool rather than a job injected from outside it and waited for (two thread hand-offs per product).
        if rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward(state, ids, want));
        }
        let c = &self.config;
        let (t, start) = (ids.len(), state.len());
        if t == 0 {
            return Err(EngineError::Shape("a forward pass over no tokens".into()));
        }
        if start + t > c.context {
            return Err(EngineError::Shape(format!("{} positions exceed the model's context of {}", start + t, c.context)));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= c.vocab) {
            return Err(EngineError::Shape(format!("token {bad} is outside the vocabulary of {}", c.vocab)));
        }
        state.reserve(c, start + t);
        let (dim, kv, ff) = (c.dim, c.kv_dim(), c.ff);
        let qkv_stride = dim + 2 * kv;
        let s = state;
        s.x.resize(t * dim, 0.0);
        s.qkv.resize(t * qkv_stride, 0.0);
        s.attn.resize(t * dim, 0.0);
        s.tmp.resize(t * dim, 0.0);
        s.gu.resize(t * 2 * ff, 0.0);
        for (i, &id) in ids.iter().enumerate() {
            self.embed.dequantize_row(id as usize, &mut s.x[i * dim..(i + 1) * dim]);
        }
        // candle's table, value for value: angle = position · θ_i in f32. Only this pass's positions.
        s.cos.clear();
        s.sin.clear();
        for p in start..start + t {
            for th in &self.theta {
                let a = p as f32 * th;
                s.cos.push(a.cos());
                s.sin.push(a.sin());
            }
        }
        for (l, layer) in self.layers.iter().enumerate() {
            k::rms_norm_quantize(&s.x, &layer.attn_norm, c.eps, t, &mut s.act);
            matmul(&layer.qkv.parts(), &s.act, &mut s.qkv, qkv_stride);
            k::rope(&mut s.qkv, qkv_stride, 0, c.heads, c.head_dim, t, 0, &s.cos, &s.sin);
            k::rope(&mut s.qkv, qkv_stride, dim, c.kv_heads, c.head_dim, t, 0, &s.cos, &s.sin);
            for i in 0..t {
                let row = &s.qkv[i * qkv_stride..(i + 1) * qkv_stride];
                let at = (start + i) * kv;
                k::to_f16(&row[dim..dim + kv], &mut s.k[l][at..at + kv]);
                k::to_f16(&row[dim + kv..dim + 2 * kv], &mut s.v[l][at..at + kv]);
            }
            let shape = AttnShape {
                heads: c.heads,
                kv_heads: c.kv_heads,
                head_dim: c.head_dim,
                q_stride: qkv_stride,
                kv_stride: kv,
                out_stride: dim,
                start,
                tokens: t,
            };
            k::attention(&s.qkv, &s.k[l], &s.v[l], shape, &mut s.attn, &mut s.scores);
            k::quantize(&s.attn, dim, t, &mut s.act);
            matmul(&[(&layer.wo, 0)], &s.act, &mut s.tmp, dim);
            k::add(&mut s.x, &s.tmp);
            k::rms_norm_quantize(&s.x, &layer.ffn_norm, c.eps, t, &mut s.act);
            matmul(&layer.gate_up.parts(), &s.act, &mut s.gu, 2 * ff);
            k::silu_mul_quantize(&s.gu, 2 * ff, ff, t, &mut s.act);
            matmul(&[(&layer.down, 0)], &s.act, &mut s.tmp, dim);
            k::add(&mut s.x, &s.tmp);
        }
        let (first, rows) = match want {
            Logits::Last => (t - 1, 1),
            Logits::All => (0, t),
        };
        k::rms_norm_quantize(&s.x[first * dim..], &self.norm, c.eps, rows, &mut s.act);
        s.logits.resize(rows * c.vocab, 0.0);
        matmul(&[(self.output.as_ref().unwrap_or(&self.embed), 0)], &s.act, &mut s.logits, c.vocab);
        s.tokens.extend_from_slice(ids);
        Ok(())
    }
}
