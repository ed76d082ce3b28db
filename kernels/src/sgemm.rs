//! Dense f32 matrix products for the embedding encoder: `c = a · b`, row-major, split by rows over rayon's
//! threads (the thread count Keel was given), each part one single-threaded product.
//!
//! The kernel is OpenBLAS's `sgemm` when the build found a static OpenBLAS (see `build.rs`), run with one
//! OpenBLAS thread so that its workers never compete with Keel's; the `gemm` crate otherwise. On this project's 2-core AVX2 machine OpenBLAS runs BERT's shapes at 120–145
//! GFLOP/s against the `gemm` crate's 80–110; the rest of the encoder is the same either way.

use rayon::prelude::*;

/// Which kernel this build runs, for benchmarks and diagnostics.
pub const KERNEL: &str = if cfg!(keel_openblas) { "openblas" } else { "gemm" };

#[cfg(keel_openblas)]
mod ffi {
    use std::ffi::c_int;
    pub const ROW_MAJOR: c_int = 101;
    pub const NO_TRANS: c_int = 111;
    pub const TRANS: c_int = 112;
    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn cblas_sgemm(
            order: c_int, trans_a: c_int, trans_b: c_int, m: c_int, n: c_int, k: c_int,
            alpha: f32, a: *const f32, lda: c_int, b: *const f32, ldb: c_int,
            beta: f32, c: *mut f32, ldc: c_int,
        );
        pub fn openblas_set_num_threads(n: c_int);
    }

    /// Every call runs on its caller's thread: Keel parallelises around OpenBLAS, not inside it.
    pub fn one_thread() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: a plain setter, called once before any product.
        ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
    }
}

/// `c (m×n) = a (m×k) · b (k×n)`, all contiguous row-major; `c` is overwritten.
pub fn product(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    products(a, b, c, m, k, n, false)
}

/// `c (m×n) += a (m×k) · b (k×n)`: for a `c` that already holds a bias or a residual, which then costs no pass
/// of its own (and the kernel skips clearing `c`).
pub fn product_onto(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    products(a, b, c, m, k, n, true)
}

fn products(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, onto: bool) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "sgemm: operands do not fit {m}×{k}×{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !onto {
            c.fill(0.0);
        }
        return;
    }
    // One part per thread, in whole rows (a multiple of 8 so that each part's tiles are full).
    let threads = rayon::current_num_threads().max(1);
    let rows = m.div_ceil(threads).next_multiple_of(8).min(m);
    c.par_chunks_mut(rows * n).zip(a.par_chunks(rows * k)).for_each(|(c, a)| part(a, b, c, c.len() / n, k, n, onto));
}

#[cfg(keel_openblas)]
fn part(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, onto: bool) {
    ffi::one_thread();
    let int = |v: usize| std::ffi::c_int::try_from(v).expect("sgemm: a dimension over i32::MAX");
    // SAFETY: the slices hold exactly m×k, k×n and m×n values (checked by `product`), with leading dimensions
    // k, n and n, so every access is in bounds; threaded OpenBLAS builds are safe to call from several threads.
    unsafe {
        ffi::cblas_sgemm(
            ffi::ROW_MAJOR, ffi::NO_TRANS, ffi::NO_TRANS, int(m), int(n), int(k),
            1.0, a.as_ptr(), int(k), b.as_ptr(), int(n), if onto { 1.0 } else { 0.0 }, c.as_mut_ptr(), int(n),
        );
    }
}

#[cfg(not(keel_openblas))]
fn part(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, onto: bool) {
    // SAFETY: as above; the strides are those of contiguous row-major operands.
    unsafe {
        gemm::gemm(
            m, n, k,
            c.as_mut_ptr(), 1, n as isize, onto,
            a.as_ptr(), 1, k as isize,
            b.as_ptr(), 1, n as isize,
            // dst = alpha·dst + beta·lhs·rhs: alpha keeps what is there when adding onto it.
            if onto { 1.0 } else { 0.0 }, 1.0, false, false, false, gemm::Parallelism::None,
        );
    }
}

/// One single-threaded product on strided operands: `c (m×n) = a (m×k) · b (k×n)`, where row `i` of `a` starts
/// at `a + i·lda` (and so on), and with `b_transposed` `b` is read as the transpose of an `(n×k)` matrix.
///
/// # Safety
/// Every row the dimensions and strides name must be inside its allocation, and `c`'s must not overlap the
/// others or be written by another thread meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn strided(
    m: usize, n: usize, k: usize,
    a: *const f32, lda: usize,
    b: *const f32, ldb: usize, b_transposed: bool,
    c: *mut f32, ldc: usize,
) {
    #[cfg(keel_openblas)]
    {
        let int = |v: usize| std::ffi::c_int::try_from(v).expect("sgemm: a dimension over i32::MAX");
        ffi::one_thread();
        let trans_b = if b_transposed { ffi::TRANS } else { ffi::NO_TRANS };
        // SAFETY: the caller's.
        unsafe {
            ffi::cblas_sgemm(
                ffi::ROW_MAJOR, ffi::NO_TRANS, trans_b, int(m), int(n), int(k),
                1.0, a, int(lda), b, int(ldb), 0.0, c, int(ldc),
            );
        }
    }
    #[cfg(not(keel_openblas))]
    {
        let (b_cs, b_rs) = if b_transposed { (ldb as isize, 1) } else { (1, ldb as isize) };
        // SAFETY: the caller's.
        unsafe {
            gemm::gemm(
                m, n, k,
                c, 1, ldc as isize, false,
                a, 1, lda as isize,
                b, b_cs, b_rs,
                0.0, 1.0, false, false, false, gemm::Parallelism::None,
            );
        }
    }
}

/// The row stride of an attention head's score matrix for `r` tokens: `r` rounded up to whole AVX vectors.
pub fn score_stride(r: usize) -> usize {
    r.next_multiple_of(8)
}

/// `avx2` and `fma`, checked once.
fn fma_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One attention head's scores, single-threaded: `s (r×r) = q (r×d) · kᵀ`, where `k` is `(r×d)` and rows of
/// `q`, `k` and `s` are `qs`, `ks` and `rs` (≥ r) values apart. `kt` is scratch space the caller may reuse.
/// Columns `r..rs` of `s` are left with values that mean nothing.
///
/// # Safety
/// As for [`strided`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn attention_scores(
    q: *const f32, qs: usize, k: *const f32, ks: usize, r: usize, d: usize, kt: &mut Vec<f32>, s: *mut f32, rs: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if fma_kernels() && rs.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2 and FMA; the rest is the caller's.
        return unsafe { fma::scores(q, qs, k, ks, r, d, kt, s, rs) };
    }
    // SAFETY: the caller's.
    unsafe { strided(r, r, d, q, qs, k, ks, true, s, rs) }
}

/// One attention head's context, single-threaded: `o (r×d) = p (r×r) · v (r×d)`, with rows `ps`, `vs` and `os`
/// values apart.
///
/// # Safety
/// As for [`strided`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn attention_context(
    p: *const f32, ps: usize, v: *const f32, vs: usize, r: usize, d: usize, o: *mut f32, os: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if fma_kernels() && matches!(d, 8 | 16 | 24 | 32) {
        // SAFETY: as above.
        return unsafe { fma::context(p, ps, v, vs, r, d, o, os) };
    }
    // SAFETY: the caller's.
    unsafe { strided(r, d, r, p, ps, v, vs, false, o, os) }
}

/// Register-tiled AVX2/FMA kernels for attention's small products (a head is 128×32 at most for Keel's
/// model), where a general sgemm spends much of its time packing operands for so little arithmetic.
#[cfg(target_arch = "x86_64")]
mod fma {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scores(
        q: *const f32, qs: usize, k: *const f32, ks: usize, r: usize, d: usize, kt: &mut Vec<f32>, s: *mut f32, rs: usize,
    ) {
        // kᵀ as d rows of rs values (zero past r), so that a row of scores is a sum of broadcast-times-row.
        kt.clear();
        kt.resize(d * rs, 0.0);
        for j in 0..r {
            for p in 0..d {
                // SAFETY: row j < r of k has d values (the caller's promise).
                kt[p * rs + j] = unsafe { *k.add(j * ks + p) };
            }
        }
        let kt = kt.as_ptr();
        let mut i = 0;
        while i < r {
            let rows = (r - i).min(6);
            let mut j = 0;
            while j < rs {
                let (qi, ktj, sij) = unsafe { (q.add(i * qs), kt.add(j), s.add(i * rs + j)) };
                // SAFETY: rows i..i+rows < r of q and s, columns j..j+8·C ≤ rs of kᵀ and s.
                unsafe {
                    if rs - j >= 16 {
                        score_tile::<2>(rows, qi, qs, ktj, rs, d, sij);
                    } else {
                        score_tile::<1>(rows, qi, qs, ktj, rs, d, sij);
                    }
                }
                j += if rs - j >= 16 { 16 } else { 8 };
            }
            i += rows;
        }
    }

    /// A tile of `rows` (1 to 6) score rows by 8·C columns: [`tile`] for that many rows.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn score_tile<const C: usize>(rows: usize, q: *const f32, qs: usize, kt: *const f32, rs: usize, d: usize, s: *mut f32) {
        // SAFETY: the caller's (rows of q and s, 8·C columns of kᵀ and s).
        unsafe {
            match rows {
                6 => tile::<6, C>(q, qs, kt, rs, d, s, rs),
                5 => tile::<5, C>(q, qs, kt, rs, d, s, rs),
                4 => tile::<4, C>(q, qs, kt, rs, d, s, rs),
                3 => tile::<3, C>(q, qs, kt, rs, d, s, rs),
                2 => tile::<2, C>(q, qs, kt, rs, d, s, rs),
                _ => tile::<1, C>(q, qs, kt, rs, d, s, rs),
            }
        }
    }

    /// The one microkernel: `c (R × 8·C) = a (R × steps) · b (steps × 8·C)`, with rows `lda`, `ldb` and `ldc` values
    /// apart, accumulated in registers (R·C of them) and stored once. A score tile is Q rows times kᵀ, a context
    /// tile P rows times V.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(
        a: *const f32, lda: usize, b: *const f32, ldb: usize, steps: usize, c: *mut f32, ldc: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        for p in 0..steps {
            let mut bv = [_mm256_setzero_ps(); C];
            for (col, bv) in bv.iter_mut().enumerate() {
                *bv = unsafe { _mm256_loadu_ps(b.add(p * ldb + 8 * col)) };
            }
            for (row, acc) in acc.iter_mut().enumerate() {
                let av = unsafe { _mm256_broadcast_ss(&*a.add(row * lda + p)) };
                for (acc, bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm256_fmadd_ps(av, *bv, *acc);
                }
            }
        }
        for (row, acc) in acc.iter().enumerate() {
            for (col, acc) in acc.iter().enumerate() {
                unsafe { _mm256_storeu_ps(c.add(row * ldc + 8 * col), *acc) };
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn context(p: *const f32, ps: usize, v: *const f32, vs: usize, r: usize, d: usize, o: *mut f32, os: usize) {
        let mut i = 0;
        while i < r {
            let rows = (r - i).min(2);
            // SAFETY: rows i..i+rows < r of p and o; d columns of v and o.
            unsafe {
                let (pi, oi) = (p.add(i * ps), o.add(i * os));
                match (rows, d) {
                    (2, 32) => tile::<2, 4>(pi, ps, v, vs, r, oi, os),
                    (2, 24) => tile::<2, 3>(pi, ps, v, vs, r, oi, os),
                    (2, 16) => tile::<2, 2>(pi, ps, v, vs, r, oi, os),
                    (2, _) => tile::<2, 1>(pi, ps, v, vs, r, oi, os),
                    (_, 32) => tile::<1, 4>(pi, ps, v, vs, r, oi, os),
                    (_, 24) => tile::<1, 3>(pi, ps, v, vs, r, oi, os),
                    (_, 16) => tile::<1, 2>(pi, ps, v, vs, r, oi, os),
                    _ => tile::<1, 1>(pi, ps, v, vs, r, oi, os),
                }
            }
            i += rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn products_match_the_definition_at_awkward_shapes() {
        // Odd sizes, fewer rows than threads, one row, and a part boundary inside a tile.
        for &(m, k, n) in &[(1, 1, 1), (1, 384, 7), (3, 5, 2), (17, 33, 9), (129, 384, 1152), (300, 1536, 384)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let mut c = vec![f32::NAN; m * n];
            product(&a, &b, &mut c, m, k, n);
            for (i, (got, want)) in c.iter().zip(naive(&a, &b, m, k, n)).enumerate() {
                assert!((*got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "{m}×{k}×{n} [{i}]: {got} vs {want}");
            }
        }
    }

    #[test]
    fn strided_products_read_rows_and_transposes_in_place() {
        // a is columns 1..4 of a 3×6 block, b (transposed) columns 2..4 of a 5×7 block; c lands in a 3×9 block.
        let big_a: Vec<f32> = (0..18).map(|i| i as f32 * 0.5 - 3.0).collect();
        let big_b: Vec<f32> = (0..35).map(|i| (i % 11) as f32 - 4.0).collect();
        let mut big_c = vec![f32::NAN; 27];
        unsafe { strided(3, 5, 3, big_a[1..].as_ptr(), 6, big_b[2..].as_ptr(), 7, true, big_c[4..].as_mut_ptr(), 9) };
        for i in 0..3 {
            for j in 0..5 {
                let want: f32 = (0..3).map(|p| big_a[i * 6 + 1 + p] * big_b[j * 7 + 2 + p]).sum();
                assert!((big_c[4 + i * 9 + j] - want).abs() < 1e-4, "[{i},{j}]");
            }
        }
        // Untransposed, b (3×5) with row stride 7.
        unsafe { strided(3, 5, 3, big_a[1..].as_ptr(), 6, big_b[2..].as_ptr(), 7, false, big_c[4..].as_mut_ptr(), 9) };
        for i in 0..3 {
            for j in 0..5 {
                let want: f32 = (0..3).map(|p| big_a[i * 6 + 1 + p] * big_b[p * 7 + 2 + j]).sum();
                assert!((big_c[4 + i * 9 + j] - want).abs() < 1e-4, "[{i},{j}]");
            }
        }
        // Cells outside c's rows are untouched.
        assert!(big_c[..4].iter().all(|v| v.is_nan()) && big_c[9..13].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn concurrent_small_products_stay_correct() {
        // The attention op calls `strided` from every thread at once with different sizes; a kernel with shared
        // scratch space (Debian's serial OpenBLAS) gets some of these wrong.
        let a: Vec<f32> = (0..130 * 160).map(|i| ((i * 31 % 97) as f32 - 48.0) / 48.0).collect();
        let b: Vec<f32> = (0..130 * 160).map(|i| ((i * 17 % 89) as f32 - 44.0) / 44.0).collect();
        let run = |case: usize| {
            let (r, transposed) = (1 + case * 37 % 130, case % 2 == 0);
            let n = if transposed { r } else { 32 };
            let k = if transposed { 32 } else { r };
            let mut c = vec![f32::NAN; r * n];
            unsafe { strided(r, n, k, a.as_ptr(), 160, b.as_ptr(), 160, transposed, c.as_mut_ptr(), n) };
            c
        };
        // References one at a time, checked against the definition; then the same products on all threads at
        // once, many times over, so that calls overlap (the check is cheap next to a product).
        let cases = 40;
        let reference: Vec<Vec<f32>> = (0..cases).map(run).collect();
        for (case, c) in reference.iter().enumerate() {
            let (r, transposed) = (1 + case * 37 % 130, case % 2 == 0);
            let (n, k) = if transposed { (r, 32) } else { (32, r) };
            for i in 0..r {
                for j in 0..n {
                    let want: f32 =
                        (0..k).map(|p| a[i * 160 + p] * if transposed { b[j * 160 + p] } else { b[p * 160 + j] }).sum();
                    assert!((c[i * n + j] - want).abs() < 1e-3, "case {case} [{i},{j}]: {} vs {want}", c[i * n + j]);
                }
            }
        }
        let wrong = (0..cases * 500).into_par_iter().filter(|it| run(it % cases) != reference[it % cases]).count();
        assert_eq!(wrong, 0, "{wrong} of {} products computed concurrently went wrong ({KERNEL})", cases * 500);
    }

    #[test]
    fn attention_kernels_match_the_definition_for_every_size() {
        // Every token count up to 130 (tile edges at 6 rows, 16 and 8 columns, 2 context rows) and each supported
        // head width, with rows strided inside a wider matrix as in the stacked QKV product.
        let stride = 200;
        let m: Vec<f32> = (0..131 * stride).map(|i| ((i * 29 % 103) as f32 - 51.0) / 51.0).collect();
        let mut kt = Vec::new();
        for d in [8, 16, 24, 32, 12] {
            for r in 1..=130 {
                let (q, k, v) = (&m[3..], &m[40..], &m[100..]);
                let rs = score_stride(r);
                let mut s = vec![f32::NAN; r * rs];
                unsafe { attention_scores(q.as_ptr(), stride, k.as_ptr(), stride, r, d, &mut kt, s.as_mut_ptr(), rs) };
                for i in 0..r {
                    for j in 0..r {
                        let want: f32 = (0..d).map(|p| q[i * stride + p] * k[j * stride + p]).sum();
                        assert!((s[i * rs + j] - want).abs() < 1e-4, "scores d={d} r={r} [{i},{j}]");
                    }
                }
                let mut o = vec![f32::NAN; r * 40];
                unsafe { attention_context(s.as_ptr(), rs, v.as_ptr(), stride, r, d, o.as_mut_ptr(), 40) };
                for i in 0..r {
                    for c in 0..d {
                        let want: f32 = (0..r).map(|j| s[i * rs + j] * v[j * stride + c]).sum();
                        assert!((o[i * 40 + c] - want).abs() < 1e-3 * (1.0 + want.abs()), "context d={d} r={r} [{i},{c}]");
                    }
                    assert!(o[i * 40 + d..(i + 1) * 40].iter().all(|x| x.is_nan()), "context d={d} r={r} wrote past its columns");
                }
            }
        }
    }

    #[test]
    fn the_build_links_openblas_where_the_setup_installs_it() {
        // scripts/test.sh sets this: a machine the setup script prepared must not fall back to the slower kernel
        // unnoticed (build.rs only warns).
        if std::env::var_os("KEEL_REQUIRE_OPENBLAS").is_some() {
            assert_eq!(KERNEL, "openblas", "OpenBLAS was not linked: is libopenblas-pthread-dev installed?");
        }
    }

    #[test]
    fn products_onto_add_to_what_is_there() {
        let (m, k, n) = (37, 20, 11);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let start: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
        let mut c = start.clone();
        product_onto(&a, &b, &mut c, m, k, n);
        for (i, (got, want)) in c.iter().zip(naive(&a, &b, m, k, n)).enumerate() {
            assert_eq!(*got as f64, want + start[i] as f64, "[{i}]");
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let mut c = vec![f32::NAN; 6];
        product(&[], &[], &mut c, 2, 0, 3);
        assert_eq!(c, vec![0.0; 6]);
    }
}
