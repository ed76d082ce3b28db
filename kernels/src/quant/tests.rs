//! The quantized products against their definitions: AVX2 and portable integers equal, products equal to an f64
//! reference over dequantized values, the layouts holding the file's values, and clear errors for bad sizes.

use proptest::prelude::*;

use super::*;

/// Random bytes of `rows × cols` values of `ty`, with sane f16 scales (random bits would give NaN and infinity).
fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let (per, size) = ty.block();
    let mut out = Vec::new();
    let scale = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for _ in 0..rows * cols / per {
        let mut block: Vec<u8> = (0..size).map(|_| next() as u8).collect();
        let s = (next() % 1000) as f32 / 1e4 + 1e-3;
        match ty {
            GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q5_0 => block[0..2].copy_from_slice(&scale(s)),
            GgmlType::Q4_1 => {
                block[0..2].copy_from_slice(&scale(s));
                block[2..4].copy_from_slice(&scale(-s * 7.0));
            }
            GgmlType::Q4K => {
                block[0..2].copy_from_slice(&scale(s / 10.0));
                block[2..4].copy_from_slice(&scale(s / 20.0));
            }
            GgmlType::Q6K => block[208..210].copy_from_slice(&scale(s / 30.0)),
        }
        out.extend(block);
    }
    out
}

fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed ^ 0x9E3779B97F4A7C15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The AVX2 kernel computes exactly the portable kernel's integers, for every layout.
    #[test]
    fn avx2_and_portable_dots_are_the_same_integers(seed in any::<u64>(), act in proptest::collection::vec(-127i8..=127, QK), which in 0usize..6) {
        prop_assume!(avx2::available());
        let ty = GgmlType::ALL[which];
        let cols = ty.block().0;
        let m = QMatrix::from_ggml(ty, 11, cols, &random_matrix(ty, 11, cols, seed)).unwrap();
        let act: [i8; QK] = act.try_into().unwrap();
        for g in 0..m.groups() {
            for b in 0..m.blocks() {
                prop_assert_eq!(block_dots(&m, g, b, &act, false), block_dots(&m, g, b, &act, true));
            }
        }
    }
}

/// The product against an f64 reference over dequantized rows and dequantized activations: it can only differ by
/// float rounding. Tiled (many tokens) and single-token products agree. (That the layouts hold the file's values
/// is `layouts_hold_the_files_values` here, and for the K-quants the engine's comparison with candle.)
#[test]
fn products_match_the_dequantized_reference_for_every_type() {
    for ty in GgmlType::ALL {
        let cols = 2 * ty.block().0.max(64);
        let rows = 21;
        let m = QMatrix::from_ggml(ty, rows, cols, &random_matrix(ty, rows, cols, 7)).unwrap();
        let tokens = TOKEN_TILE + 3;
        let xs = random_values(tokens * cols, 3);
        let mut act = Q8Act::default();
        act.shape(tokens, cols);
        for t in 0..tokens {
            act.set_row(t, &xs[t * cols..(t + 1) * cols]);
        }
        let stride = rows + 5;
        let mut out = vec![f32::NAN; tokens * stride];
        matmul(&[(&m, 2)], &act, &mut out, stride);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            for t in 0..tokens {
                let a: Vec<f64> = (0..cols).map(|i| act.qs[t * cols + i] as f64 * act.d[t * cols / QK + i / QK] as f64).collect();
                let want: f64 = row.iter().zip(&a).map(|(w, x)| *w as f64 * x).sum();
                let got = out[t * stride + 2 + r] as f64;
                let size: f64 = row.iter().zip(&a).map(|(w, x)| (*w as f64 * x).abs()).sum();
                assert!((got - want).abs() <= 1e-5 * size + 1e-6, "{}: row {r} token {t}: {got} vs {want}", ty.name());
            }
        }
        assert!(out[0].is_nan() && out[1].is_nan(), "{}: wrote outside its rows", ty.name());
        // One token at a time gives the same values as the tile.
        let mut one = Q8Act::default();
        one.shape(1, cols);
        one.set_row(0, &xs[(tokens - 1) * cols..]);
        let mut single = vec![0f32; stride];
        matmul(&[(&m, 2)], &one, &mut single, stride);
        assert_eq!(&single[2..2 + rows], &out[(tokens - 1) * stride + 2..(tokens - 1) * stride + 2 + rows]);
    }
}

#[test]
fn a_size_that_does_not_fit_is_an_error_not_a_panic() {
    let e = QMatrix::from_ggml(GgmlType::Q4_1, 4, 64, &[0u8; 10]).err().unwrap();
    assert!(e.to_string().contains("Q4_1"), "{e}");
    let e = QMatrix::from_ggml(GgmlType::Q4K, 4, 64, &[0u8; 10]).err().unwrap();
    assert!(e.to_string().contains("256"), "{e}");
}

#[test]
fn the_exp_approximation_is_within_a_few_ulp() {
    let mut x = -87.0f32;
    while x < 10.0 {
        let (got, want) = (crate::llama::exp_approx(x), x.exp());
        assert!((got - want).abs() <= 4.0 * f32::EPSILON * want + f32::MIN_POSITIVE, "exp({x}) = {got}, want {want}");
        x += 0.0137;
    }
}

/// Blocks written by hand in ggml's formats come back value for value from the group layout: Q8_0 `d·q`, Q4_0
/// `d·(q−8)` with element j in the low nibble of byte j and element j+16 in its high nibble, Q4_1 `d·q + m`,
/// Q5_0 `d·(q−16)` with the fifth bits in a u32.
#[test]
fn layouts_hold_the_files_values() {
    let d = half::f16::from_f32(0.5);
    let m = half::f16::from_f32(-3.0);
    let want_q: Vec<i32> = (0..32).map(|i| (i * 7 + 3) % 32).collect();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0] {
        let mut block = Vec::new();
        block.extend_from_slice(&d.to_le_bytes());
        let expected: Vec<f32> = match ty {
            GgmlType::Q8_0 => {
                block.extend(want_q.iter().map(|q| (*q - 16) as i8 as u8));
                want_q.iter().map(|q| 0.5 * (*q - 16) as f32).collect()
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                if ty == GgmlType::Q4_1 {
                    block.extend_from_slice(&m.to_le_bytes());
                }
                let q: Vec<u8> = want_q.iter().map(|q| (*q % 16) as u8).collect();
                block.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
                q.iter().map(|q| if ty == GgmlType::Q4_0 { 0.5 * (*q as f32 - 8.0) } else { 0.5 * *q as f32 - 3.0 }).collect()
            }
            _ => {
                let qh: u32 = (0..32).filter(|i| want_q[*i] >= 16).map(|i| 1u32 << i).sum();
                block.extend_from_slice(&qh.to_le_bytes());
                let low: Vec<u8> = want_q.iter().map(|q| (*q % 16) as u8).collect();
                block.extend((0..16).map(|j| low[j] | (low[j + 16] << 4)));
                want_q.iter().map(|q| 0.5 * (*q - 16) as f32).collect()
            }
        };
        // Row 3 of five holds the block; the others are zero blocks.
        let size = block.len();
        let mut bytes = vec![0u8; 5 * size];
        bytes[3 * size..4 * size].copy_from_slice(&block);
        let m = QMatrix::from_ggml(ty, 5, 32, &bytes).unwrap();
        let mut row = vec![0f32; 32];
        m.dequantize_row(3, &mut row);
        assert_eq!(row, expected, "{}", ty.name());
    }
}
