//! The vector side of retrieval: every live item's normalised embedding in one contiguous f32 matrix, searched
//! by brute force, and derived from SQLite at open (kept in step by the memory layer after each commit).
//!
//! Scanning 10^5 × 384 f32 values is bound by memory bandwidth (150 MB a query), so the scan runs over an int8
//! copy of the matrix (one scale per row; a quarter of the bytes) and only the best `RERANK × k` rows are
//! scored again exactly in f32. Quantisation error moves a cosine by well under 0.01, far less than the gap
//! between the k-th and the `RERANK × k`-th candidate, so the result is the exact top k (a test checks it).
//! The int8 scan is `keel_kernels::int8` (AVX2 `vpmaddubsw`, keeping the shortlist as it goes); at 100,000
//! rows it is split over up to four threads.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Vectors {
    dim: usize,
    ids: Vec<i64>,
    data: Vec<f32>,
    /// `data` in int8, row `i` scaled by `scales[i]` (`x ≈ q · scale`).
    quantised: Vec<i8>,
    scales: Vec<f32>,
    row_of: HashMap<i64, usize>,
}

/// Candidates rescored exactly per wanted result.
pub const RERANK: usize = 8;

/// From this many rows the scan is split over threads (under it, starting them costs more than it saves).
const PARALLEL_FROM: usize = 20_000;

use keel_kernels::int8::{self, quantise};

/// Dot product in 8 independent lanes, which the compiler turns into SIMD.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

impl Vectors {
    pub fn new(dim: usize) -> Vectors {
        Vectors { dim, ..Default::default() }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes held by the matrix and its id map (for the resident-memory report).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() * 4
            + self.quantised.capacity()
            + self.scales.capacity() * 4
            + self.ids.capacity() * 8
            + self.row_of.capacity() * 24
    }

    pub fn upsert(&mut self, id: i64, v: &[f32]) {
        assert_eq!(v.len(), self.dim, "embedding of the wrong size for item {id}");
        let row = match self.row_of.get(&id) {
            Some(&row) => row,
            None => {
                let row = self.ids.len();
                self.row_of.insert(id, row);
                self.ids.push(id);
                self.data.resize((row + 1) * self.dim, 0.0);
                self.quantised.resize((row + 1) * self.dim, 0);
                self.scales.push(0.0);
                row
            }
        };
        let span = row * self.dim..(row + 1) * self.dim;
        self.data[span.clone()].copy_from_slice(v);
        self.scales[row] = quantise(v, &mut self.quantised[span]);
    }

    /// Gives back the spare capacity growth left (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.quantised.shrink_to_fit();
        self.scales.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.row_of.shrink_to_fit();
    }

    pub fn remove(&mut self, id: i64) {
        let Some(row) = self.row_of.remove(&id) else { return };
        let last = self.ids.len() - 1;
        if row != last {
            let moved = self.ids[last];
            self.ids[row] = moved;
            self.data.copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.quantised.copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.scales[row] = self.scales[last];
            self.row_of.insert(moved, row);
        }
        self.ids.pop();
        self.scales.pop();
        self.data.truncate(last * self.dim);
        self.quantised.truncate(last * self.dim);
    }

    pub fn get(&self, id: i64) -> Option<&[f32]> {
        self.row_of.get(&id).map(|&row| &self.data[row * self.dim..(row + 1) * self.dim])
    }

    pub fn contains(&self, id: i64) -> bool {
        self.row_of.contains_key(&id)
    }

    /// The `k` most similar items to `query` (normalised), best first, as `(id, cosine)`.
    pub fn top_k(&self, query: &[f32], k: usize) -> Vec<(i64, f32)> {
        if k == 0 || self.ids.is_empty() {
            return Vec::new();
        }
        let n = self.ids.len();
        let mut q8 = vec![0i8; self.dim];
        quantise(query, &mut q8);
        // The best `RERANK × k` rows by their int8 scores, each thread over its own share of the rows.
        let shortlist = (k * RERANK).min(n);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4);
        let scan = |rows: std::ops::Range<usize>| int8::top_rows(&self.quantised, &self.scales, &q8, self.dim, rows, shortlist);
        let mut rows: Vec<(f32, u32)> = if threads > 1 && n >= PARALLEL_FROM {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                let parts: Vec<_> = (0..n).step_by(per).map(|first| s.spawn(move || scan(first..(first + per).min(n)))).collect();
                parts.into_iter().flat_map(|p| p.join().expect("a vector scan thread panicked")).collect()
            })
        } else {
            scan(0..n)
        };
        if rows.len() > shortlist {
            rows.select_nth_unstable_by(shortlist - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            rows.truncate(shortlist);
        }
        // Exact cosines for the shortlist.
        let mut exact: Vec<(i64, f32)> = rows
            .into_iter()
            .map(|(_, row)| {
                let row = row as usize;
                (self.ids[row], dot(&self.data[row * self.dim..(row + 1) * self.dim], query))
            })
            .collect();
        let cmp = |a: &(i64, f32), b: &(i64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = k.min(exact.len());
        if k < exact.len() {
            exact.select_nth_unstable_by(k - 1, cmp);
            exact.truncate(k);
        }
        exact.sort_by(cmp);
        exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(seed: &mut u64, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// The int8 prefilter with exact rescoring returns exactly what a full f32 scan returns.
    #[test]
    fn top_k_equals_the_exact_scan() {
        let mut seed = 42u64;
        let mut m = Vectors::new(384);
        let rows: Vec<Vec<f32>> = (0..30_000).map(|_| random_unit(&mut seed, 384)).collect();
        for (i, r) in rows.iter().enumerate() {
            m.upsert(i as i64 * 3, r);
        }
        m.remove(9);
        for _ in 0..20 {
            let q = random_unit(&mut seed, 384);
            let mut exact: Vec<(i64, f32)> =
                rows.iter().enumerate().filter(|(i, _)| *i != 3).map(|(i, r)| (i as i64 * 3, dot(r, &q))).collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            exact.truncate(50);
            assert_eq!(m.top_k(&q, 50), exact);
        }
    }
}
