//! The f32 parts of a llama-architecture forward pass: RMSNorm folded into the activation quantisation, SiLU·mul
//! folded likewise, rotary position embedding, and causal attention over a KV cache with grouped KV heads.
//!
//! Each function is written once as plain loops over eight independent lanes (so no float reduction is
//! reordered) and compiled twice: for AVX2+FMA, chosen at run time, and portable. LLVM vectorises the loops for
//! the target it compiles them for.

use crate::quant::{quantize_row, Q8Act, QK};

/// Whether the AVX2+FMA versions run.
fn fast() -> bool {
    crate::quant::kernel() == "avx2"
}

/// Picks the AVX2+FMA or the portable instance of an `#[inline(always)]` body.
macro_rules! dispatch {
    ($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if fast() {
                    // SAFETY: AVX2 and FMA were detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let n = a.len().min(b.len()) / 8 * 8;
    for (ca, cb) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] = ca[l].mul_add(cb[l], lanes[l]);
        }
    }
    let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for i in n..a.len().min(b.len()) {
        s += a[i] * b[i];
    }
    s
}

#[inline(always)]
fn sum_squares(a: &[f32]) -> f32 {
    dot(a, a)
}

/// e^x, to about 2 ulp over the range softmax uses (x ≤ 0), in plain arithmetic so that it vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // x = n·ln2 + r, |r| ≤ ln2/2; n rounded to nearest by the 1.5·2^23 trick.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5e-1);
    let e = (r * r).mul_add(p, r) + 1.0;
    f32::from_bits(e.to_bits().wrapping_add(((n as i32) << 23) as u32))
}

/// `e^x` of the public API (for the test against `f32::exp`).
pub fn exp_approx(x: f32) -> f32 {
    exp(x)
}

/// One row: `RMSNorm(x) · w` quantized into (`qs`, `d`, `s`); `scratch` holds one row.
#[inline(always)]
fn rms_row_body(x: &[f32], w: &[f32], eps: f32, qs: &mut [i8], d: &mut [f32], s: &mut [f32], scratch: &mut [f32]) {
    let dim = w.len();
    let mean = sum_squares(x) / dim as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for ((o, v), g) in scratch[..dim].iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
    quantize_row(&scratch[..dim], qs, d, s);
}
dispatch!(rms_row(x: &[f32], w: &[f32], eps: f32, qs: &mut [i8], d: &mut [f32], s: &mut [f32], scratch: &mut [f32]) => rms_row_body);

/// One row: `silu(gate) · up` quantized; `gu` holds the gate then the up projection.
#[inline(always)]
fn silu_row_body(gu: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], scratch: &mut [f32]) {
    let ff = gu.len() / 2;
    let (gate, up) = gu.split_at(ff);
    for ((o, g), u) in scratch[..ff].iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
    quantize_row(&scratch[..ff], qs, d, s);
}
dispatch!(silu_row(gu: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], scratch: &mut [f32]) => silu_row_body);

#[inline(always)]
fn plain_row_body(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_row(x, qs, d, s);
}
dispatch!(plain_row(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) => plain_row_body);

/// Quantizes `tokens` rows of `cols` into `act`, row `t` produced by `f(t, qs, d, s, scratch)`; split over
/// rayon's threads when there are enough rows to pay for it.
fn quantize_rows(tokens: usize, cols: usize, act: &mut Q8Act, f: &(dyn Fn(usize, &mut [i8], &mut [f32], &mut [f32], &mut [f32]) + Sync)) {
    use rayon::prelude::*;
    act.shape(tokens, cols);
    let nb = cols / QK;
    let rows = act.qs.par_chunks_mut(cols).zip(act.d.par_chunks_mut(nb)).zip(act.s.par_chunks_mut(nb)).take(tokens).enumerate();
    if tokens >= 8 && rayon::current_num_threads() > 1 {
        rows.with_min_len(4).for_each_init(|| vec![0f32; cols], |scratch, (t, ((qs, d), s))| f(t, qs, d, s, scratch));
    } else {
        let mut scratch = vec![0f32; cols];
        for (t, ((qs, d), s)) in act.qs.chunks_mut(cols).zip(act.d.chunks_mut(nb)).zip(act.s.chunks_mut(nb)).take(tokens).enumerate() {
            f(t, qs, d, s, &mut scratch);
        }
    }
}

/// For each token `t`: `RMSNorm(x[t]) · w` quantized into `act` (shaped `tokens × dim` here).
pub fn rms_norm_quantize(x: &[f32], w: &[f32], eps: f32, tokens: usize, act: &mut Q8Act) {
    let dim = w.len();
    quantize_rows(tokens, dim, act, &|t, qs, d, s, scratch| rms_row(&x[t * dim..(t + 1) * dim], w, eps, qs, d, s, scratch));
}

/// For each token: `silu(gate) · up` quantized into `act`, where row `t` of `gu` (stride `stride`) holds the gate
/// at `0..ff` and the up projection at `ff..2ff`.
pub fn silu_mul_quantize(gu: &[f32], stride: usize, ff: usize, tokens: usize, act: &mut Q8Act) {
    quantize_rows(tokens, ff, act, &|t, qs, d, s, scratch| silu_row(&gu[t * stride..t * stride + 2 * ff], qs, d, s, scratch));
}

/// Each row of `x` (`tokens × cols`) quantized as it is.
pub fn quantize(x: &[f32], cols: usize, tokens: usize, act: &mut Q8Act) {
    quantize_rows(tokens, cols, act, &|t, qs, d, s, _| plain_row(&x[t * cols..(t + 1) * cols], qs, d, s));
}

/// Rotary embedding in place, interleaved pairs `(2i, 2i+1)` (llama's GGUF layout): `x` holds `tokens` rows of
/// `stride`, and `heads` heads of `hd` values from `offset`; token `t` is at position `start + t`. `cos`/`sin`
/// hold `hd/2` values per position.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rope_body(x: &mut [f32], stride: usize, offset: usize, heads: usize, hd: usize, tokens: usize, start: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    for t in 0..tokens {
        let (c, s) = (&cos[(start + t) * half..(start + t + 1) * half], &sin[(start + t) * half..(start + t + 1) * half]);
        for h in 0..heads {
            let v = &mut x[t * stride + offset + h * hd..t * stride + offset + (h + 1) * hd];
            for i in 0..half {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                v[2 * i] = a * c[i] - b * s[i];
                v[2 * i + 1] = a * s[i] + b * c[i];
            }
        }
    }
}
dispatch!(rope(x: &mut [f32], stride: usize, offset: usize, heads: usize, hd: usize, tokens: usize, start: usize, cos: &[f32], sin: &[f32]) => rope_body);

/// An f16 value (as bits) widened.
#[inline(always)]
fn f16(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// `src` rounded to f16 bits into `dst` (the KV cache's entries).
pub fn to_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "to_f16: {} values into {}", src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if fast() {
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn f16c(src: &[f32], dst: &mut [u16]) {
            use std::arch::x86_64::*;
            let n = src.len() / 8 * 8;
            for i in (0..n).step_by(8) {
                let h = _mm256_cvtps_ph(_mm256_loadu_ps(src.as_ptr().add(i)), _MM_FROUND_TO_NEAREST_INT);
                _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
            }
            for i in n..src.len() {
                dst[i] = half::f16::from_f32(src[i]).to_bits();
            }
        }
        // SAFETY: AVX2 and F16C were detected.
        return unsafe { f16c(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_f32(*s).to_bits();
    }
}

/// `dst[i] += src[i]`.
#[inline(always)]
fn add_body(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
dispatch!(add(dst: &mut [f32], src: &[f32]) => add_body);

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Values per row of the queries.
    pub q_stride: usize,
    /// Values per position in the K and V caches (`kv_heads · head_dim`).
    pub kv_stride: usize,
    /// Values per row of the output.
    pub out_stride: usize,
    /// Position of the first query (the KV cache holds `start + tokens` positions).
    pub start: usize,
    pub tokens: usize,
}

/// One (head, token)'s attention: its row of `out` from its query, over keys `0..=start + t`.
#[inline(always)]
fn attend_body(q: &[f32], k: &[u16], v: &[u16], s: AttnShape, h: usize, t: usize, scores: &mut [f32], out: &mut [f32]) {
    let hd = s.head_dim;
    let g = h / (s.heads / s.kv_heads);
    let qh = &q[t * s.q_stride + h * hd..t * s.q_stride + (h + 1) * hd];
    let n = s.start + t + 1;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut max = f32::NEG_INFINITY;
    for (p, sc) in scores[..n].iter_mut().enumerate() {
        let kp = &k[p * s.kv_stride + g * hd..p * s.kv_stride + (g + 1) * hd];
        let mut lanes = [0f32; 8];
        for (cq, ck) in qh.chunks_exact(8).zip(kp.chunks_exact(8)) {
            for l in 0..8 {
                lanes[l] = cq[l].mul_add(f16(ck[l]), lanes[l]);
            }
        }
        *sc = (((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))) * scale;
        max = max.max(*sc);
    }
    let mut lanes = [0f32; 8];
    let chunks = n / 8 * 8;
    for c in scores[..chunks].chunks_exact_mut(8) {
        for l in 0..8 {
            c[l] = exp(c[l] - max);
            lanes[l] += c[l];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for sc in scores[chunks..n].iter_mut() {
        *sc = exp(*sc - max);
        sum += *sc;
    }
    let inv = 1.0 / sum;
    out.fill(0.0);
    for (p, w) in scores[..n].iter().enumerate() {
        let vp = &v[p * s.kv_stride + g * hd..p * s.kv_stride + (g + 1) * hd];
        let w = w * inv;
        for (o, x) in out.iter_mut().zip(vp) {
            *o = w.mul_add(f16(*x), *o);
        }
    }
}

/// Every `step`-th (head, token) item from `first`, `item = t · heads + h` (interleaved, so that threads share
/// the early tokens, which see few keys, and the late ones alike).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_range(q: &[f32], k: &[u16], v: &[u16], s: AttnShape, items: std::iter::StepBy<std::ops::Range<usize>>, scores: &mut [f32], out: *mut f32) {
    for item in items {
        let (t, h) = (item / s.heads, item % s.heads);
        // SAFETY: each item writes its own head's slice of its own token's row (see `attention`).
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(t * s.out_stride + h * s.head_dim), s.head_dim) };
        #[cfg(target_arch = "x86_64")]
        if s.head_dim % 64 == 0 && fast() {
            // SAFETY: AVX2 and FMA were detected; the slices were checked by `attention`.
            unsafe { avx2::attend(q, k, v, s, h, t, scores, o) };
            continue;
        }
        attend_body(q, k, v, s, h, t, scores, o);
    }
}

/// Attention for one (head, token) with explicit AVX2: scores four keys at a time (one horizontal sum per four),
/// a vectorised exp, and the output held in registers, 64 values at a time, while the values are added up.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::AttnShape;

    /// Eight f16 values widened.
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    #[inline(always)]
    unsafe fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// e^x for eight values, the same algorithm as `super::exp`.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(88.7));
        let magic = _mm256_set1_ps(12_582_912.0);
        let n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), magic), magic);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693_145_75), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5e-1));
        let e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), p, r), _mm256_set1_ps(1.0));
        let shift = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(e), shift))
    }

    /// # Safety
    /// AVX2 and FMA; `head_dim % 64 == 0`; `q`, `k`, `v`, `scores` and `out` hold what `attention` checked.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn attend(q: &[f32], k: &[u16], v: &[u16], s: AttnShape, h: usize, t: usize, scores: &mut [f32], out: &mut [f32]) {
        let hd = s.head_dim;
        let chunks = hd / 8;
        let g = h / (s.heads / s.kv_heads);
        let qh = q.as_ptr().add(t * s.q_stride + h * hd);
        let kb = k.as_ptr().add(g * hd);
        let vb = v.as_ptr().add(g * hd);
        let n = s.start + t + 1;
        let scale = _mm_set1_ps(1.0 / (hd as f32).sqrt());
        let sc = scores.as_mut_ptr();
        // Scores, four keys at a time.
        let mut p = 0;
        while p + 4 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            for c in 0..chunks {
                let qc = _mm256_loadu_ps(qh.add(8 * c));
                a0 = _mm256_fmadd_ps(qc, load8(kb.add(p * s.kv_stride + 8 * c)), a0);
                a1 = _mm256_fmadd_ps(qc, load8(kb.add((p + 1) * s.kv_stride + 8 * c)), a1);
                a2 = _mm256_fmadd_ps(qc, load8(kb.add((p + 2) * s.kv_stride + 8 * c)), a2);
                a3 = _mm256_fmadd_ps(qc, load8(kb.add((p + 3) * s.kv_stride + 8 * c)), a3);
            }
            _mm_storeu_ps(sc.add(p), _mm_mul_ps(hsum4(a0, a1, a2, a3), scale));
            p += 4;
        }
        while p < n {
            let mut a = _mm256_setzero_ps();
            for c in 0..chunks {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(qh.add(8 * c)), load8(kb.add(p * s.kv_stride + 8 * c)), a);
            }
            *sc.add(p) = hsum(a) * (1.0 / (hd as f32).sqrt());
            p += 1;
        }
        // Softmax.
        let mut m8 = _mm256_set1_ps(f32::NEG_INFINITY);
        let whole = n / 8 * 8;
        for i in (0..whole).step_by(8) {
            m8 = _mm256_max_ps(m8, _mm256_loadu_ps(sc.add(i)));
        }
        let mut max = hmax(m8);
        for i in whole..n {
            max = max.max(*sc.add(i));
        }
        let mx = _mm256_set1_ps(max);
        let mut sum8 = _mm256_setzero_ps();
        for i in (0..whole).step_by(8) {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc.add(i)), mx));
            _mm256_storeu_ps(sc.add(i), e);
            sum8 = _mm256_add_ps(sum8, e);
        }
        let mut sum = hsum(sum8);
        for i in whole..n {
            let e = super::exp(*sc.add(i) - max);
            *sc.add(i) = e;
            sum += e;
        }
        let inv = _mm256_set1_ps(1.0 / sum);
        // Values: 64 outputs in registers per pass over the keys.
        let o = out.as_mut_ptr();
        for slab in (0..hd).step_by(64) {
            let mut acc = [_mm256_setzero_ps(); 8];
            for p in 0..n {
                let w = _mm256_set1_ps(*sc.add(p));
                let row = vb.add(p * s.kv_stride + slab);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, load8(row.add(8 * c)), *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(slab + 8 * c), _mm256_mul_ps(*a, inv));
            }
        }
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (head, token) slices.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Causal attention of `tokens` queries (rows of `q`) over the cache `k`/`v` (rows of `kv_stride`), each query `t`
/// seeing positions `0..=start + t`, heads sharing KV heads in groups of `heads / kv_heads`. Split over rayon's
/// threads by (head, token); `scratch` is grown to one score row per thread.
pub fn attention(q: &[f32], k: &[u16], v: &[u16], s: AttnShape, out: &mut [f32], scratch: &mut Vec<f32>) {
    assert!(s.heads % s.kv_heads == 0 && s.head_dim % 8 == 0, "attention: {} heads over {} KV heads of {}", s.heads, s.kv_heads, s.head_dim);
    let positions = s.start + s.tokens;
    assert!(k.len() >= positions * s.kv_stride && v.len() >= positions * s.kv_stride, "attention: the cache holds fewer than {positions} positions");
    assert!(out.len() >= s.tokens * s.out_stride && q.len() >= s.tokens * s.q_stride, "attention: rows do not fit");
    let items = s.heads * s.tokens;
    let threads = rayon::current_num_threads().max(1).min(items);
    scratch.resize(threads * positions, 0.0);
    let out = OutPtr(out.as_mut_ptr());
    let avx = fast();
    let run = move |range: std::iter::StepBy<std::ops::Range<usize>>, scores: &mut [f32]| {
        let out = out;
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast_range(q: &[f32], k: &[u16], v: &[u16], s: AttnShape, items: std::iter::StepBy<std::ops::Range<usize>>, scores: &mut [f32], out: *mut f32) {
                attend_range(q, k, v, s, items, scores, out)
            }
            if avx {
                // SAFETY: AVX2 and FMA were detected.
                return unsafe { fast_range(q, k, v, s, range, scores, out.0) };
            }
        }
        let _ = avx;
        attend_range(q, k, v, s, range, scores, out.0)
    };
    if threads <= 1 {
        run((0..items).step_by(1), &mut scratch[..]);
        return;
    }
    // A few queries (a decode step): each thread takes consecutive heads, so the heads that share a KV head
    // mostly read its cache on one core. Many (a prompt): every thread takes every `threads`-th item, so early
    // tokens (few keys) and late ones (many) are shared out evenly.
    let chunk = items.div_ceil(threads);
    let share = |i: usize| {
        if s.tokens < 2 * threads {
            (i * chunk).min(items)..((i + 1) * chunk).min(items)
        } else {
            i..items
        }
        .step_by(if s.tokens < 2 * threads { 1 } else { threads })
    };
    let mut parts = scratch.chunks_mut(positions);
    let first = parts.next().expect("one part per thread");
    rayon::scope(|sc| {
        for (i, part) in parts.enumerate() {
            let run = &run;
            let items = share(i + 1);
            sc.spawn(move |_| run(items, part));
        }
        run(share(0), first);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The AVX2 attention equals the portable one (to float rounding) for every head and query, with grouped KV
    /// heads, a cached prefix and heads of 64 and 128 values; and both match a plain f64 softmax.
    #[test]
    fn avx2_attention_matches_the_portable_one_and_an_f64_reference() {
        #[cfg(target_arch = "x86_64")]
        for hd in [64, 128] {
            if !fast() {
                return;
            }
            let (heads, kv_heads, start, tokens) = (9, 3, 37, 5);
            let s = AttnShape { heads, kv_heads, head_dim: hd, q_stride: heads * hd, kv_stride: kv_heads * hd, out_stride: heads * hd, start, tokens };
            let q = values(tokens * heads * hd, 1);
            let k: Vec<u16> = values((start + tokens) * kv_heads * hd, 2).iter().map(|x| half::f16::from_f32(*x).to_bits()).collect();
            let v: Vec<u16> = values((start + tokens) * kv_heads * hd, 3).iter().map(|x| half::f16::from_f32(*x).to_bits()).collect();
            let mut scores = vec![0f32; start + tokens];
            for t in 0..tokens {
                for h in 0..heads {
                    let (mut a, mut b) = (vec![0f32; hd], vec![0f32; hd]);
                    attend_body(&q, &k, &v, s, h, t, &mut scores, &mut a);
                    // SAFETY: AVX2 and FMA were detected (`fast`).
                    unsafe { avx2::attend(&q, &k, &v, s, h, t, &mut scores, &mut b) };
                    // f64 reference.
                    let g = h / (heads / kv_heads);
                    let n = start + t + 1;
                    let qh = &q[t * s.q_stride + h * hd..][..hd];
                    let logits: Vec<f64> = (0..n)
                        .map(|p| (0..hd).map(|i| qh[i] as f64 * f16(k[p * s.kv_stride + g * hd + i]) as f64).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let sum: f64 = w.iter().sum();
                    for i in 0..hd {
                        let want: f64 = (0..n).map(|p| w[p] / sum * f16(v[p * s.kv_stride + g * hd + i]) as f64).sum();
                        assert!((a[i] as f64 - want).abs() < 1e-5, "portable: head {h} token {t} value {i}: {} vs {want}", a[i]);
                        assert!((b[i] as f64 - want).abs() < 1e-5, "avx2: head {h} token {t} value {i}: {} vs {want}", b[i]);
                    }
                }
            }
        }
    }
}
