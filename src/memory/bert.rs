//! The BERT encoder behind Keel's embeddings (all-MiniLM-L6-v2), in candle, laid out for CPU throughput.
//!
//! The arithmetic is BERT's (absolute positions, post-norm layers, exact erf GELU); what differs from
//! `candle_transformers::models::bert` is the layout, which is where a CPU spends its time:
//! - every dense layer is one matrix product over all the batch's tokens at once, `(tokens, in) × (in, out)`, with
//!   the weights transposed once at load (no per-text broadcast products, no strided right-hand side);
//!   query, key and value are one product with their weights stacked, and the 1/√d of attention is folded into
//!   the query weights;
//! - attention is one fused CPU op: per text and head, `QKᵀ`, softmax and `·V` run on one thread over the text's
//!   real tokens only (padding keys would get zero weight anyway; padded rows feed nothing that is pooled),
//!   reading Q, K and V in place from the stacked product and writing the heads straight into their columns;
//! - a dense layer's output buffer starts as its bias (and, before a layer norm, bias plus residual), filled in
//!   one parallel pass, and the product is added onto it, so neither needs a pass of its own and the buffer is
//!   never zeroed; GELU and layer norm are then in place, with an `exp` that vectorises and row kernels
//!   compiled for AVX2 when the CPU has it.
//!
//! Dense products go through [`super::sgemm`] (the `keel-kernels` crate: OpenBLAS's sgemm when the build has
//! it, the `gemm` crate otherwise), split by rows over Keel's threads; each attention head's two small products
//! use that crate's register-tiled AVX2/FMA kernels (a general sgemm otherwise). Weights still load through
//! candle's `VarBuilder`, and every step is a candle op on candle tensors.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, InplaceOp1, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::sgemm;
use serde::Deserialize;

/// The parts of a BERT `config.json` the encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A dense layer's weights, transposed to `(input, output)` row-major.
struct Weights {
    data: Vec<f32>,
    input: usize,
    output: usize,
}

impl Weights {
    fn from(t: Tensor) -> candle_core::Result<Weights> {
        let (input, output) = t.dims2()?;
        Ok(Weights { data: t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, input, output })
    }
}

struct Layer {
    /// `(hidden, 3·hidden)`: query (pre-scaled by 1/√d), key and value, transposed.
    qkv_w: Weights,
    qkv_b: Vec<f32>,
    out_w: Weights,
    out_b: Vec<f32>,
    attn_norm: Norm,
    up_w: Weights,
    up_b: Vec<f32>,
    down_w: Weights,
    down_b: Vec<f32>,
    ffn_norm: Norm,
}

pub struct Bert {
    /// Word-piece embeddings as f16 (`vocab × hidden`): a third of the model's bytes, read only by row, at half
    /// the memory; the rounding moves a text's vector by a cosine of about 1e-6.
    word: Vec<half::f16>,
    /// Position embeddings with the token-type-0 embedding added (Keel's texts are one segment).
    position: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    max_positions: usize,
    eps: f32,
}

fn vec1(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1()
}

fn norm(vb: &VarBuilder, size: usize) -> candle_core::Result<Norm> {
    // Older checkpoints name them weight/bias, TF ports gamma/beta.
    let (g, b) = if vb.contains_tensor("weight") { ("weight", "bias") } else { ("gamma", "beta") };
    Ok(Norm { gamma: vec1(vb.get(size, g)?)?, beta: vec1(vb.get(size, b)?)? })
}

/// A PyTorch `Linear` (`weight` is `(out, in)`) as `(in, out)` plus its bias.
fn dense(vb: &VarBuilder, input: usize, output: usize, scale: f64) -> candle_core::Result<(Tensor, Vec<f32>)> {
    let w = (vb.get((output, input), "weight")? * scale)?;
    let b = (vb.get(output, "bias")? * scale)?;
    Ok((w.t()?.contiguous()?, vec1(b)?))
}

impl Bert {
    pub fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Bert> {
        if config.hidden_act != "gelu" {
            candle_core::bail!("hidden_act {:?} is not supported (only BERT's exact \"gelu\")", config.hidden_act);
        }
        if config.position_embedding_type != "absolute" {
            candle_core::bail!("position_embedding_type {:?} is not supported (only \"absolute\")", config.position_embedding_type);
        }
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || h % heads != 0 {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
        let emb = vb.pp("embeddings");
        // Read as f16 straight from the file (never held as f32).
        let word = emb.get_with_hints_dtype((config.vocab_size, h), "word_embeddings.weight", Default::default(), DType::F16)?;
        let word: Vec<half::f16> = word.flatten_all()?.to_vec1::<half::f16>()?;
        let pos = emb.get((config.max_position_embeddings, h), "position_embeddings.weight")?;
        let type0 = emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?.narrow(0, 0, 1)?;
        let position = pos.broadcast_add(&type0)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let emb_norm = norm(&emb.pp("LayerNorm"), h)?;
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention");
            let (q_w, q_b) = dense(&att.pp("self.query"), h, h, scale)?;
            let (k_w, k_b) = dense(&att.pp("self.key"), h, h, 1.0)?;
            let (v_w, v_b) = dense(&att.pp("self.value"), h, h, 1.0)?;
            let qkv_w = Weights::from(Tensor::cat(&[q_w, k_w, v_w], 1)?)?;
            let qkv_b = [q_b, k_b, v_b].concat();
            let (out_w, out_b) = dense(&att.pp("output.dense"), h, h, 1.0)?;
            let attn_norm = norm(&att.pp("output.LayerNorm"), h)?;
            let (up_w, up_b) = dense(&l.pp("intermediate.dense"), h, config.intermediate_size, 1.0)?;
            let (down_w, down_b) = dense(&l.pp("output.dense"), config.intermediate_size, h, 1.0)?;
            let ffn_norm = norm(&l.pp("output.LayerNorm"), h)?;
            let (out_w, up_w, down_w) = (Weights::from(out_w)?, Weights::from(up_w)?, Weights::from(down_w)?);
            layers.push(Layer { qkv_w, qkv_b, out_w, out_b, attn_norm, up_w, up_b, down_w, down_b, ffn_norm });
        }
        Ok(Bert {
            word,
            position,
            emb_norm,
            layers,
            hidden: h,
            heads,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Mean-pooled last hidden states of `n` texts of `len` word pieces each (`ids` row-major), where text `i`
    /// has `real[i]` real pieces followed by padding. One `hidden_size` vector per text, not normalised.
    pub fn pooled(&self, ids: &[u32], n: usize, len: usize, real: &[usize]) -> candle_core::Result<Vec<Vec<f32>>> {
        if ids.len() != n * len || real.len() != n || real.iter().any(|&r| r > len) {
            candle_core::bail!("{} ids for {n} texts of {len} pieces ({} lengths)", ids.len(), real.len());
        }
        if len > self.max_positions {
            candle_core::bail!("{len} word pieces is more than the model's {} positions", self.max_positions);
        }
        let h = self.hidden;
        let device = Device::Cpu;
        let vocab = self.word.len() / h;
        let mut rows = Vec::with_capacity(n * len * h);
        for &id in ids {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("word piece {id} is outside the vocabulary of {vocab}");
            }
            rows.extend(self.word[id * h..(id + 1) * h].iter().map(|v| v.to_f32()));
        }
        let x = Tensor::from_vec(rows, (n * len, h), &device)?;
        x.inplace_op1(&EmbedNorm { position: &self.position, len, norm: &self.emb_norm, eps: self.eps })?;
        let mut x = x;
        for layer in &self.layers {
            let qkv = x.apply_op1_no_bwd(&Dense { w: &layer.qkv_w, bias: &layer.qkv_b })?;
            let ctx = qkv.apply_op1_no_bwd(&Attention { width: layer.qkv_b.len(), n, len, heads: self.heads, real })?;
            let att = ctx.apply_op2_no_bwd(&x, &DenseResidual { w: &layer.out_w, bias: &layer.out_b })?;
            att.inplace_op1(&LayerNorm { norm: &layer.attn_norm, eps: self.eps })?;
            let up = att.apply_op1_no_bwd(&Dense { w: &layer.up_w, bias: &layer.up_b })?;
            up.inplace_op1(&Gelu)?;
            let down = up.apply_op2_no_bwd(&att, &DenseResidual { w: &layer.down_w, bias: &layer.down_b })?;
            down.inplace_op1(&LayerNorm { norm: &layer.ffn_norm, eps: self.eps })?;
            x = down;
        }
        let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
        Ok((0..n)
            .map(|t| {
                let mut sum = vec![0f32; h];
                for row in flat[t * len * h..].chunks_exact(h).take(real[t]) {
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
                let count = real[t].max(1) as f32;
                sum.iter_mut().for_each(|s| *s /= count);
                sum
            })
            .collect())
    }
}

/// The contiguous f32 data of a CPU tensor operand.
fn slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("bert op on a non-contiguous tensor") };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// The same, writable, for the ops that work in place (no new buffer, so no fresh pages to fault in).
fn slice_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> candle_core::Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("bert op on a non-contiguous tensor") };
    match storage {
        CpuStorage::F32(v) => Ok(&mut v[start..end]),
        _ => candle_core::bail!("bert op on a tensor that is not f32"),
    }
}

/// Compiles a row kernel twice, for the build's baseline CPU and for AVX2 (8 lanes instead of SSE's 4), and
/// runs the AVX2 copy when the CPU has it. The body is plain Rust that LLVM vectorises.
macro_rules! row_kernel {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// A float sum in eight interleaved partial sums, which vectorises (a single running sum cannot be
/// reordered, so it would add one value at a time).
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, v)| *a += v);
    }
    acc.iter().sum::<f32>() + tail
}

/// The same for the maximum.
#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, v)| *a = if *v > *a { *v } else { *a });
    }
    acc.iter().copied().fold(tail, f32::max)
}

#[inline(always)]
fn layer_norm_row(row: &mut [f32], norm: &Norm, eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    row.iter_mut().for_each(|v| *v -= mean);
    let mut squares = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        squares.iter_mut().zip(chunk).for_each(|(a, v)| *a += v * v);
    }
    let var = (squares.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *v = *v * inv * g + b;
    }
}

row_kernel! {
    /// Layer norm of each row of `rows`.
    fn norm_rows(rows: &mut [f32], norm: &Norm, eps: f32) {
        for row in rows.chunks_exact_mut(norm.gamma.len()) {
            layer_norm_row(row, norm, eps);
        }
    }
}

row_kernel! {
    /// GELU of every value.
    fn gelu_all(values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v = gelu(*v));
    }
}

row_kernel! {
    /// Softmax of the first `r` scores of each row of `stride`, in place.
    fn softmax_rows(scores: &mut [f32], r: usize, stride: usize) {
        for row in scores.chunks_exact_mut(stride) {
            let row = &mut row[..r];
            let top = max(row);
            row.iter_mut().for_each(|s| *s = exp(*s - top));
            let inv = 1.0 / sum(row);
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }
}

/// `x · w + bias` over all the batch's tokens at once: `(tokens, input)` to `(tokens, output)`. The output starts
/// as the bias, and the product is added onto it.
struct Dense<'a> {
    w: &'a Weights,
    bias: &'a [f32],
}

/// `x · w + bias + residual`, the residual being `(tokens, output)`.
struct DenseResidual<'a> {
    w: &'a Weights,
    bias: &'a [f32],
}

/// The `(tokens, output)` buffer of a dense layer, every row filled by `init(row index, row)` in parallel: written
/// once, never zeroed first.
fn dense_output(
    x: &[f32],
    w: &Weights,
    bias: &[f32],
    init: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> candle_core::Result<(Vec<f32>, usize)> {
    if w.input == 0 || x.len() % w.input != 0 || bias.len() != w.output {
        candle_core::bail!("bert-dense: {} values are not rows of {} (bias of {})", x.len(), w.input, bias.len());
    }
    let tokens = x.len() / w.input;
    let mut out: Vec<f32> = Vec::with_capacity(tokens * w.output);
    out.spare_capacity_mut()[..tokens * w.output]
        .par_chunks_mut(w.output * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            for (i, row) in rows.chunks_exact_mut(w.output).enumerate() {
                init(task * ROWS_PER_TASK + i, row);
            }
        });
    // SAFETY: every one of the tokens × output values was just written (the chunks cover the whole range).
    unsafe { out.set_len(tokens * w.output) };
    sgemm::product_onto(x, &w.data, &mut out, tokens, w.input, w.output);
    Ok((out, tokens))
}

impl CustomOp1 for Dense<'_> {
    fn name(&self) -> &'static str {
        "bert-dense"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let bias = self.bias;
        let (out, tokens) = dense_output(slice(storage, layout)?, self.w, bias, |_, row| {
            row.iter_mut().zip(bias).for_each(|(v, b)| {
                v.write(*b);
            })
        })?;
        Ok((CpuStorage::F32(out), Shape::from((tokens, self.w.output))))
    }
}

impl CustomOp2 for DenseResidual<'_> {
    fn name(&self) -> &'static str {
        "bert-dense-residual"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, residual) = (slice(s1, l1)?, slice(s2, l2)?);
        let (bias, o) = (self.bias, self.w.output);
        if x.len() / self.w.input.max(1) * o != residual.len() {
            candle_core::bail!("bert-dense-residual: a residual of {} values for {} rows of {o}", residual.len(), x.len() / self.w.input.max(1));
        }
        let (out, tokens) = dense_output(x, self.w, bias, |i, row| {
            row.iter_mut().zip(&residual[i * o..(i + 1) * o]).zip(bias).for_each(|((v, r), b)| {
                v.write(r + b);
            })
        })?;
        Ok((CpuStorage::F32(out), Shape::from((tokens, o))))
    }
}

/// Rows per parallel task for the row-wise ops: big enough that a task is worth its scheduling.
const ROWS_PER_TASK: usize = 16;

/// Word embeddings + position (and type-0) embeddings, then layer norm.
struct EmbedNorm<'a> {
    position: &'a [f32],
    len: usize,
    norm: &'a Norm,
    eps: f32,
}

impl InplaceOp1 for EmbedNorm<'_> {
    fn name(&self) -> &'static str {
        "bert-embed-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let out = slice_mut(storage, layout)?;
        let h = self.norm.gamma.len();
        out.par_chunks_mut(h * ROWS_PER_TASK).enumerate().for_each(|(task, rows)| {
            for (i, row) in rows.chunks_exact_mut(h).enumerate() {
                let position = (task * ROWS_PER_TASK + i) % self.len;
                row.iter_mut().zip(&self.position[position * h..(position + 1) * h]).for_each(|(v, p)| *v += p);
                layer_norm_row(row, self.norm, self.eps);
            }
        });
        Ok(())
    }
}

/// Layer norm, row by row, in place.
struct LayerNorm<'a> {
    norm: &'a Norm,
    eps: f32,
}

impl InplaceOp1 for LayerNorm<'_> {
    fn name(&self) -> &'static str {
        "bert-layer-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let out = slice_mut(storage, layout)?;
        let h = self.norm.gamma.len();
        out.par_chunks_mut(h * ROWS_PER_TASK).for_each(|rows| norm_rows(rows, self.norm, self.eps));
        Ok(())
    }
}

/// BERT's exact (erf) GELU, in place.
struct Gelu;

impl InplaceOp1 for Gelu {
    fn name(&self) -> &'static str {
        "bert-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        slice_mut(storage, layout)?.par_chunks_mut(4096).for_each(gelu_all);
        Ok(())
    }
}

/// `eˣ` without a libm call, so loops over it vectorise: Cephes' `expf` (range reduction by ln 2 in two parts,
/// a degree-6 polynomial; relative error about 1e-7, like f32 rounding). Inputs are clamped to the range where
/// the result is a normal f32.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round to the nearest integer by the 1.5·2²³ trick (exact for |n| < 2²²): `shifted`'s low mantissa bits then
    // hold n, so 2ⁿ is built from them with integer operations. (An `as i32` cast would saturate, and its
    // branches keep the loop from vectorising.)
    let shifted = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = shifted - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r
        + 5.000_000_1e-1)
        * r
        * r
        + r
        + 1.0;
    p * f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23)
}

/// `x·Φ(x)`, Φ through erf (Abramowitz & Stegun 7.1.26: absolute error under 1.5e-7, about f32's own rounding).
/// Inlined, so the loops over it vectorise.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * exp(-a * a);
    0.5 * x * (1.0 + erf_abs.copysign(z))
}

/// Multi-head self-attention over the stacked `(n·len, 3·hidden)` query/key/value product (bias added), giving
/// `(n·len, hidden)`; padded rows stay zero.
struct Attention<'a> {
    width: usize,
    n: usize,
    len: usize,
    heads: usize,
    real: &'a [usize],
}

/// A pointer that parallel tasks write through, each to its own disjoint cells.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Through a method, so closures capture the whole `Shared` (which is `Sync`), not its raw field.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "bert-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = slice(storage, layout)?;
        let (n, len, heads) = (self.n, self.len, self.heads);
        let w3 = self.width;
        let h = w3 / 3;
        let d = h / heads;
        if qkv.len() != n * len * w3 {
            candle_core::bail!("bert-attention: {} values for {n}×{len}×{w3}", qkv.len());
        }
        let mut out = vec![0f32; n * len * h];
        let dst = Shared(out.as_mut_ptr());
        (0..n * heads).into_par_iter().for_each_init(<(Vec<f32>, Vec<f32>)>::default, |(scores, kt), task| {
            let (t, head) = (task / heads, task % heads);
            let r = self.real[t];
            if r == 0 {
                return;
            }
            let rs = sgemm::score_stride(r);
            scores.clear();
            scores.resize(r * rs, 0.0);
            let base = t * len * w3 + head * d;
            let (q, k, v) = (qkv[base..].as_ptr(), qkv[base + h..].as_ptr(), qkv[base + 2 * h..].as_ptr());
            // SAFETY: every operand pointer and stride stays inside `qkv` (rows t·len .. t·len+r of its three
            // column blocks) or `scores` (r×rs); the destination block (rows of text t, columns of this head) is
            // written by this task only.
            unsafe {
                // scores (r×r) = Q (r×d) · Kᵀ (d×r).
                sgemm::attention_scores(q, w3, k, w3, r, d, kt, scores.as_mut_ptr(), rs);
            }
            softmax_rows(scores, r, rs);
            unsafe {
                // context (r×d) = P (r×r) · V (r×d), written into this head's columns of text t's rows.
                sgemm::attention_context(scores.as_ptr(), rs, v, w3, r, d, dst.at(t * len * h + head * d), h);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n * len, h))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_erf_definition() {
        // Φ(x) from libm's erf, at points across the range GELU sees.
        for i in -420..=420 {
            let x = i as f32 / 100.0;
            let exact = 0.5 * x as f64 * (1.0 + libm_erf(x as f64 / std::f64::consts::SQRT_2));
            assert!((gelu(x) as f64 - exact).abs() < 2e-6 * (1.0 + x.abs() as f64), "gelu({x})");
        }
        // Far out, Φ is 0 or 1 to within 1e-15.
        assert!((gelu(9.0) - 9.0).abs() < 1e-5 && gelu(-9.0).abs() < 1e-5);
    }

    #[test]
    fn exp_matches_the_library_to_f32_precision() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, lib) = (exp(x), x.exp());
            assert!(((ours - lib) / lib).abs() < 5e-7, "exp({x}): {ours} vs {lib}");
        }
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
    }

    /// erf by its Maclaurin series (exact to ~1e-12 in f64 for |z| ≤ 3).
    fn libm_erf(z: f64) -> f64 {
        let mut term = z;
        let mut sum = z;
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
