//! The vector side of retrieval: every live item's normalised embedding in one contiguous f32 matrix, searched
//! by brute force. Exact, and fast enough to ~10^5 items (an approximate index would sit behind the same
//! methods). Derived from SQLite at open; kept in step by the memory layer after each commit.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Vectors {
    dim: usize,
    ids: Vec<i64>,
    data: Vec<f32>,
    row_of: HashMap<i64, usize>,
}

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
        self.data.capacity() * 4 + self.ids.capacity() * 8 + self.row_of.capacity() * 24
    }

    pub fn upsert(&mut self, id: i64, v: &[f32]) {
        assert_eq!(v.len(), self.dim, "embedding of the wrong size for item {id}");
        match self.row_of.get(&id) {
            Some(&row) => self.data[row * self.dim..(row + 1) * self.dim].copy_from_slice(v),
            None => {
                self.row_of.insert(id, self.ids.len());
                self.ids.push(id);
                self.data.extend_from_slice(v);
            }
        }
    }

    pub fn remove(&mut self, id: i64) {
        let Some(row) = self.row_of.remove(&id) else { return };
        let last = self.ids.len() - 1;
        if row != last {
            let moved = self.ids[last];
            self.ids[row] = moved;
            self.data.copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.row_of.insert(moved, row);
        }
        self.ids.pop();
        self.data.truncate(last * self.dim);
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
        let mut scores = vec![0f32; self.ids.len()];
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4);
        let per = self.ids.len().div_ceil(threads);
        if threads > 1 && self.ids.len() >= 20_000 {
            std::thread::scope(|s| {
                for (t, out) in scores.chunks_mut(per).enumerate() {
                    let data = &self.data[t * per * self.dim..];
                    s.spawn(move || {
                        for (i, o) in out.iter_mut().enumerate() {
                            *o = dot(&data[i * self.dim..(i + 1) * self.dim], query);
                        }
                    });
                }
            });
        } else {
            for (i, o) in scores.iter_mut().enumerate() {
                *o = dot(&self.data[i * self.dim..(i + 1) * self.dim], query);
            }
        }
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        let k = k.min(idx.len());
        let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(self.ids[*a].cmp(&self.ids[*b]));
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
            idx.truncate(k);
        }
        idx.sort_by(cmp);
        idx.into_iter().map(|i| (self.ids[i], scores[i])).collect()
    }
}
