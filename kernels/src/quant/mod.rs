//! Quantized matrix products for the embedded chat model: weights in 4- or 8-bit blocks, activations quantized
//! once per layer input to 8 bits (as llama.cpp's q8_0/q8_1), and integer dot products.
//!
//! **Weights** are laid out at load ([`QMatrix::from_ggml`]) in groups of [`ROWS`] rows: for each block of 32
//! columns, the eight rows' scales side by side, then their values interleaved four at a time, so that one 32-byte
//! load holds four values of each of the eight rows and one broadcast of four activation values feeds all eight
//! (`vpmaddubsw`), and the eight lanes of the result are the eight rows' dot products: no horizontal sums, and
//! the activation is read once per group. The bytes per weight are those of the file's type:
//!
//! | file type | layout | values | scales | bytes per 32 weights (file) |
//! |-----------|--------|--------|--------|------------------|
//! | Q4_0      | `Q4H`  | 4-bit  | f16 d, f16 m = −8d (exact) | 20 (18) |
//! | Q4_1      | `Q4H`  | 4-bit  | f16 d, f16 m | 20 (20) |
//! | Q5_0      | `Q8H`  | 5-bit as i8 | f16 d | 34 (22) |
//! | Q4_K      | `Q4F`  | 4-bit  | f32 d·sc, f32 −dmin·m | 24 (18) |
//! | Q8_0      | `Q8H`  | 8-bit  | f16 d | 34 (34) |
//! | Q6_K      | `Q8F2` | 6-bit as i8 | f32 d·sc per 16 | 40 (26.25) |
//!
//! A weight is `d · q + m` (4-bit) or `d · q` (8-bit); an activation block is `da · qa` with `sa = da · Σqa`, so a
//! block's contribution is `d · da · Σ q·qa + m · sa`, the integer sum exact.
//!
//! **Kernels** are chosen at run time: AVX2 (with FMA and F16C) when the CPU has it, else a portable loop that
//! computes the same integers ([`block_dots`] exposes both for the property test). The build never needs
//! `-C target-cpu=native`.
//!
//! **Products** ([`matmul`]) split the row groups over rayon's threads (the one pool of the process) and, within a
//! group, go through up to [`TOKEN_TILE`] tokens per weight block, so a prompt is a tiled matrix product: each
//! weight block is unpacked once per tile of tokens, not once per token.

mod avx2;
mod pack;
mod portable;

pub use pack::{GgmlType, PackError, PackRead};

/// Columns per quantisation block (activations and weights alike).
pub const QK: usize = 32;
/// Rows per interleaved group.
pub const ROWS: usize = 8;
/// Tokens that share one unpacked weight block in a product.
pub const TOKEN_TILE: usize = 32;

/// How a [`QMatrix`] stores its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 4-bit values, f16 scale and offset per row block.
    Q4H,
    /// 4-bit values, f32 scale and offset per row block.
    Q4F,
    /// 8-bit values, f16 scale per row block.
    Q8H,
    /// 8-bit values, f32 scale per 16 values.
    Q8F2,
}

impl Layout {
    /// Bytes of one group's block: eight rows × 32 values and their scales.
    pub const fn group_block_bytes(self) -> usize {
        match self {
            Layout::Q4H => 16 + 16 + 128,
            Layout::Q4F => 32 + 32 + 128,
            Layout::Q8H => 16 + 256,
            Layout::Q8F2 => 32 + 32 + 256,
        }
    }
}

/// A quantized weight matrix (`rows` outputs × `cols` inputs) in Keel's group layout.
pub struct QMatrix {
    pub layout: Layout,
    /// The type it was read from.
    pub source: GgmlType,
    pub rows: usize,
    pub cols: usize,
    data: Vec<u8>,
}

impl QMatrix {
    /// Row groups (the last one padded with zero rows).
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(ROWS)
    }

    pub fn blocks(&self) -> usize {
        self.cols / QK
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn group_block(&self, group: usize, block: usize) -> &[u8] {
        let size = self.layout.group_block_bytes();
        let at = (group * self.blocks() + block) * size;
        &self.data[at..at + size]
    }

    /// Row `row` as f32 (the embedding lookup, and tests).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.rows && out.len() == self.cols, "dequantize_row: row {row} of {}×{}", self.rows, self.cols);
        let (group, lane) = (row / ROWS, row % ROWS);
        for b in 0..self.blocks() {
            portable::dequantize_lane(self.layout, self.group_block(group, b), lane, &mut out[b * QK..(b + 1) * QK]);
        }
    }
}

/// Activations quantized to 8 bits in blocks of 32: per token `cols` values, and per block its scale `d` and
/// `s = d · Σq` (what a block with an offset needs).
#[derive(Default)]
pub struct Q8Act {
    pub tokens: usize,
    pub cols: usize,
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl Q8Act {
    /// Sized for `tokens × cols` (growing the buffers only when they are too small).
    pub fn shape(&mut self, tokens: usize, cols: usize) {
        assert!(cols % QK == 0, "activations of {cols} columns are not whole blocks of {QK}");
        self.tokens = tokens;
        self.cols = cols;
        self.qs.resize(tokens * cols, 0);
        self.d.resize(tokens * cols / QK, 0.0);
        self.s.resize(tokens * cols / QK, 0.0);
    }

    /// Quantizes one token's values (already transformed) into its row.
    pub fn set_row(&mut self, token: usize, values: &[f32]) {
        let (cols, nb) = (self.cols, self.cols / QK);
        quantize_row(values, &mut self.qs[token * cols..(token + 1) * cols], &mut self.d[token * nb..(token + 1) * nb], &mut self.s[token * nb..(token + 1) * nb]);
    }
}

/// `values` as 8-bit blocks: `d = max|x| / 127`, `q = round(x / d)`, `s = d · Σq`.
pub fn quantize_row(values: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((x, q), d), s) in values.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).zip(d.iter_mut()).zip(s.iter_mut()) {
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in q.iter_mut().zip(x) {
            let r = (v * inv).round() as i32;
            *q = r as i8;
            sum += r;
        }
        *d = scale;
        *s = scale * sum as f32;
    }
}

/// Which kernel this process runs.
pub fn kernel() -> &'static str {
    if avx2::available() {
        "avx2"
    } else {
        "portable"
    }
}

/// The integer dot products of one group's block with one activation block: lane `r` is `Σ q[r]·qa` (for `Q8F2`,
/// `halves` gives the two 16-value halves separately: `(first, second)`). `portable` forces the fallback.
pub fn block_dots(m: &QMatrix, group: usize, block: usize, act: &[i8; QK], portable: bool) -> ([i32; ROWS], [i32; ROWS]) {
    let gb = m.group_block(group, block);
    if !portable && avx2::available() {
        // SAFETY: AVX2, FMA and F16C were detected.
        unsafe { avx2::block_dots(m.layout, gb, act) }
    } else {
        portable::block_dots(m.layout, gb, act)
    }
}

/// A pointer that tasks on other threads write disjoint parts of.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only the rows of its own groups (see `matmul`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// `out[t · stride + offset + r] = W[r] · x[t]` for every token `t` of `x` and every row `r` of each matrix, the
/// matrices given with their `offset`s; the products are split by row groups over rayon's threads.
pub fn matmul(parts: &[(&QMatrix, usize)], x: &Q8Act, out: &mut [f32], stride: usize) {
    for (m, offset) in parts {
        assert_eq!(m.cols, x.cols, "matmul: a {}-column matrix times {}-value activations", m.cols, x.cols);
        assert!(offset + m.rows <= stride && x.tokens * stride <= out.len(), "matmul: the output does not fit");
    }
    let total: usize = parts.iter().map(|(m, _)| m.groups()).sum();
    let threads = rayon::current_num_threads().max(1).min(total.max(1));
    let ptr = Out(out.as_mut_ptr());
    let fast = avx2::available();
    let run = |range: std::ops::Range<usize>| {
        let ptr = ptr;
        let mut first = 0;
        for (m, offset) in parts {
            let (lo, hi) = (range.start.max(first), range.end.min(first + m.groups()));
            if lo < hi {
                let groups = lo - first..hi - first;
                // SAFETY: rows of these groups only; AVX2 was detected for the fast path.
                unsafe {
                    if fast {
                        avx2::groups(m, groups, x, ptr.0, stride, *offset)
                    } else {
                        portable::groups(m, groups, x, ptr.0, stride, *offset)
                    }
                }
            }
            first += m.groups();
        }
    };
    if threads <= 1 {
        run(0..total);
        return;
    }
    let chunk = total.div_ceil(threads);
    rayon::scope(|s| {
        for t in 1..threads {
            let range = (t * chunk).min(total)..((t + 1) * chunk).min(total);
            let run = &run;
            s.spawn(move |_| run(range));
        }
        run(0..chunk.min(total));
    });
}

/// Writes a group's results for one tile of tokens: `acc[t][r]` to `out[(t0 + t) · stride + offset + 8g + r]`,
/// rows past the matrix's end skipped.
///
/// # Safety
/// `out` must hold `(t0 + acc.len()) · stride` values, and no other thread may write these rows.
#[inline(always)]
unsafe fn store(out: *mut f32, acc: &[[f32; ROWS]], t0: usize, stride: usize, offset: usize, group: usize, rows: usize) {
    let first = group * ROWS;
    let n = ROWS.min(rows - first);
    for (t, a) in acc.iter().enumerate() {
        let dst = out.add((t0 + t) * stride + offset + first);
        std::ptr::copy_nonoverlapping(a.as_ptr(), dst, n);
    }
}

#[cfg(test)]
mod tests;
