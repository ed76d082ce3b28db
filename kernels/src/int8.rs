//! The vector prefilter's kernel: a query's approximate similarity to every row of an int8 matrix, and the
//! best rows kept as the scan goes, so that no per-row array is built and sorted afterwards.
//!
//! A row is stored as int8 with one f32 scale (`x ≈ q · scale`, see [`quantise`]), a quarter of the bytes of
//! f32. On AVX2 each 32-byte step is `vpmaddubsw` (|query| as u8 times the row with the query's sign moved
//! onto it, pairs summed into i16: at most 2 · 127 · 127 = 32,258, so it never saturates) and `vpmaddwd`
//! (into i32), four rows per pass over the query; elsewhere a portable loop computes the same integers.

use std::ops::Range;

/// `v` as int8 into `out`, scaled so that its largest magnitude is 127; returns the scale.
pub fn quantise(v: &[f32], out: &mut [i8]) -> f32 {
    assert_eq!(v.len(), out.len(), "quantise: {} values into {} bytes", v.len(), out.len());
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// The exact integer dot product of two int8 vectors (portable; the reference the AVX2 kernel must equal).
pub fn dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| *x as i32 * *y as i32).sum()
}

/// The best `keep` rows of `rows` by `dot(row, query) · scale[row]`, as `(approximate score, row)`, unordered.
/// `matrix` holds the rows contiguously, `dim` values each; the query must be quantised by [`quantise`] (its
/// own scale is common to every row and left out). Ties at the cut are broken by the lower row.
pub fn top_rows(matrix: &[i8], scales: &[f32], query: &[i8], dim: usize, rows: Range<usize>, keep: usize) -> Vec<(f32, u32)> {
    assert!(query.len() == dim && rows.end * dim <= matrix.len() && rows.end <= scales.len(), "int8 scan: operands do not fit");
    assert!(rows.end <= u32::MAX as usize, "int8 scan: more rows than a u32 can number");
    let mut best = Best::new(keep);
    if keep == 0 {
        return best.items;
    }
    const BLOCK: usize = 256;
    let mut dots = [0i32; BLOCK];
    let mut first = rows.start;
    while first < rows.end {
        let n = BLOCK.min(rows.end - first);
        dots_block(&matrix[first * dim..(first + n) * dim], query, dim, &mut dots[..n]);
        for (i, d) in dots[..n].iter().enumerate() {
            let row = first + i;
            best.offer(*d as f32 * scales[row], row as u32);
        }
        first += n;
    }
    best.finish()
}

/// The kept candidates: appended while above the current cut, cut back to `keep` when twice as many.
struct Best {
    keep: usize,
    items: Vec<(f32, u32)>,
    /// Scores at or under this cannot make the final `keep` (the lowest kept score at the last cut).
    floor: f32,
}

impl Best {
    fn new(keep: usize) -> Best {
        Best { keep, items: Vec::with_capacity(2 * keep), floor: f32::NEG_INFINITY }
    }

    #[inline(always)]
    fn offer(&mut self, score: f32, row: u32) {
        // A score equal to the floor belongs to a later row than the one at the cut, so it loses the tie.
        if score > self.floor {
            self.items.push((score, row));
            if self.items.len() == 2 * self.keep {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.items.len() > self.keep {
            self.items.select_nth_unstable_by(self.keep - 1, order);
            self.items.truncate(self.keep);
            // The item at `keep - 1` is the worst kept. Rows are offered in order, so a later row with an equal
            // score loses the tie to it.
            self.floor = self.items[self.keep - 1].0;
        }
    }

    fn finish(mut self) -> Vec<(f32, u32)> {
        self.cut();
        self.items
    }
}

/// `out[i] = dot(row i of block, query)`.
fn dots_block(block: &[i8], query: &[i8], dim: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU was checked to have AVX2, the only requirement of `avx2::dots`.
        return unsafe { avx2::dots(block, query, dim, out) };
    }
    for (o, row) in out.iter_mut().zip(block.chunks_exact(dim)) {
        *o = dot(row, query);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::is_x86_feature_detected!("avx2"))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Sums the eight i32 lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// One 32-byte step of `row · query` into `acc`, given `|query|` and the query itself.
    #[inline(always)]
    unsafe fn step(acc: __m256i, row: *const i8, q: __m256i, q_abs: __m256i, ones: __m256i) -> __m256i {
        let r = _mm256_loadu_si256(row as *const __m256i);
        // row · sign(query): zero where the query is zero, so |q| · that = row · q element by element.
        let pairs = _mm256_maddubs_epi16(q_abs, _mm256_sign_epi8(r, q));
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones))
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dots(block: &[i8], query: &[i8], dim: usize, out: &mut [i32]) {
        let steps = dim / 32;
        let tail = steps * 32;
        let ones = _mm256_set1_epi16(1);
        let qp = query.as_ptr();
        let rest = |row: &[i8]| super::dot(&row[tail..], &query[tail..]);
        let mut i = 0;
        while i + 4 <= out.len() {
            let base = block.as_ptr().add(i * dim);
            let (mut a0, mut a1, mut a2, mut a3) =
                (_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256());
            for s in 0..steps {
                let q = _mm256_loadu_si256(qp.add(s * 32) as *const __m256i);
                let q_abs = _mm256_abs_epi8(q);
                a0 = step(a0, base.add(s * 32), q, q_abs, ones);
                a1 = step(a1, base.add(dim + s * 32), q, q_abs, ones);
                a2 = step(a2, base.add(2 * dim + s * 32), q, q_abs, ones);
                a3 = step(a3, base.add(3 * dim + s * 32), q, q_abs, ones);
            }
            for (j, a) in [a0, a1, a2, a3].into_iter().enumerate() {
                let r = i + j;
                out[r] = hsum(a) + rest(&block[r * dim..(r + 1) * dim]);
            }
            i += 4;
        }
        while i < out.len() {
            let base = block.as_ptr().add(i * dim);
            let mut a = _mm256_setzero_si256();
            for s in 0..steps {
                let q = _mm256_loadu_si256(qp.add(s * 32) as *const __m256i);
                a = step(a, base.add(s * 32), q, _mm256_abs_epi8(q), ones);
            }
            out[i] = hsum(a) + rest(&block[i * dim..(i + 1) * dim]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(seed: &mut u64, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed % 255) as i32 - 127) as i8
            })
            .collect()
    }

    /// The AVX2 kernel equals the portable dot product for every width around its 32-byte steps, extreme
    /// values (±127 everywhere, where `vpmaddubsw` would saturate if it could) and zeros included.
    #[test]
    fn block_dots_equal_the_portable_ones() {
        let mut seed = 7u64;
        for dim in [1, 8, 31, 32, 33, 64, 100, 384, 385] {
            for rows in [1, 3, 4, 5, 9] {
                let mut block = bytes(&mut seed, rows * dim);
                let mut query = bytes(&mut seed, dim);
                if rows == 9 {
                    block.iter_mut().for_each(|x| *x = if *x < 0 { -127 } else { 127 });
                    query.iter_mut().enumerate().for_each(|(i, x)| *x = [127, -127, 0][i % 3]);
                }
                let mut out = vec![0; rows];
                dots_block(&block, &query, dim, &mut out);
                let want: Vec<i32> = block.chunks_exact(dim).map(|r| dot(r, &query)).collect();
                assert_eq!(out, want, "dim {dim}, {rows} rows");
            }
        }
    }

    /// The kept rows are exactly the best `keep` by score (lower row first on ties), over a sub-range too.
    #[test]
    fn top_rows_keeps_exactly_the_best() {
        let mut seed = 11u64;
        let dim = 48;
        let n = 3_000;
        let mut matrix = bytes(&mut seed, n * dim);
        // Duplicated rows give tied scores across the cuts.
        let copy = matrix[..dim].to_vec();
        for r in (100..n).step_by(97) {
            matrix[r * dim..(r + 1) * dim].copy_from_slice(&copy);
        }
        let scales: Vec<f32> = (0..n).map(|r| if r % 97 == 3 { 1.0 } else { 1.0 + (r % 5) as f32 * 0.01 }).collect();
        let query = bytes(&mut seed, dim);
        for (range, keep) in [(0..n, 1), (0..n, 40), (250..2_900, 40), (0..n, 5_000), (10..10, 3), (0..n, 0)] {
            let mut got = top_rows(&matrix, &scales, &query, dim, range.clone(), keep);
            got.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut want: Vec<(f32, u32)> =
                range.clone().map(|r| (dot(&matrix[r * dim..(r + 1) * dim], &query) as f32 * scales[r], r as u32)).collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            want.truncate(keep);
            assert_eq!(got, want, "rows {range:?}, keep {keep}");
        }
    }
}
