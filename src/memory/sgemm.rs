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
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "sgemm: operands do not fit {m}×{k}×{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    // One part per thread, in whole rows (a multiple of 8 so that each part's tiles are full).
    let threads = rayon::current_num_threads().max(1);
    let rows = m.div_ceil(threads).next_multiple_of(8).min(m);
    c.par_chunks_mut(rows * n).zip(a.par_chunks(rows * k)).for_each(|(c, a)| part(a, b, c, c.len() / n, k, n));
}

#[cfg(keel_openblas)]
fn part(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    ffi::one_thread();
    let int = |v: usize| std::ffi::c_int::try_from(v).expect("sgemm: a dimension over i32::MAX");
    // SAFETY: the slices hold exactly m×k, k×n and m×n values (checked by `product`), with leading dimensions
    // k, n and n, so every access is in bounds; threaded OpenBLAS builds are safe to call from several threads.
    unsafe {
        ffi::cblas_sgemm(
            ffi::ROW_MAJOR, ffi::NO_TRANS, ffi::NO_TRANS, int(m), int(n), int(k),
            1.0, a.as_ptr(), int(k), b.as_ptr(), int(n), 0.0, c.as_mut_ptr(), int(n),
        );
    }
}

#[cfg(not(keel_openblas))]
fn part(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    // SAFETY: as above; the strides are those of contiguous row-major operands.
    unsafe {
        gemm::gemm(
            m, n, k,
            c.as_mut_ptr(), 1, n as isize, false,
            a.as_ptr(), 1, k as isize,
            b.as_ptr(), 1, n as isize,
            0.0, 1.0, false, false, false, gemm::Parallelism::None,
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
    fn the_build_links_openblas_where_the_setup_installs_it() {
        // scripts/test.sh sets this: a machine the setup script prepared must not fall back to the slower kernel
        // unnoticed (build.rs only warns).
        if std::env::var_os("KEEL_REQUIRE_OPENBLAS").is_some() {
            assert_eq!(KERNEL, "openblas", "OpenBLAS was not linked: is libopenblas-pthread-dev installed?");
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let mut c = vec![f32::NAN; 6];
        product(&[], &[], &mut c, 2, 0, 3);
        assert_eq!(c, vec![0.0; 6]);
    }
}
