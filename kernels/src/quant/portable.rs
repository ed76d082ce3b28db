//! The portable kernels: the same integers as the AVX2 ones, one value at a time.

use half::f16;

use super::{store, Layout, Q8Act, QMatrix, QK, ROWS, TOKEN_TILE};

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Row `lane`'s value `i` (0..32) of a group block, as stored (4-bit values as 0..15).
#[inline(always)]
fn value(layout: Layout, gb: &[u8], lane: usize, i: usize) -> i32 {
    let (c, e) = (i / 4, i % 4);
    match layout {
        Layout::Q4H | Layout::Q4F => {
            let at = if layout == Layout::Q4H { 32 } else { 64 };
            let byte = gb[at + (c % 4) * 32 + lane * 4 + e];
            if c < 4 {
                (byte & 0x0F) as i32
            } else {
                (byte >> 4) as i32
            }
        }
        Layout::Q8H => gb[16 + c * 32 + lane * 4 + e] as i8 as i32,
        Layout::Q8F2 => gb[64 + c * 32 + lane * 4 + e] as i8 as i32,
    }
}

/// (scale, offset or second scale) of row `lane`.
fn scales(layout: Layout, gb: &[u8], lane: usize) -> (f32, f32) {
    match layout {
        Layout::Q4H => (f16_at(gb, 2 * lane), f16_at(gb, 16 + 2 * lane)),
        Layout::Q4F | Layout::Q8F2 => (f32_at(gb, 4 * lane), f32_at(gb, 32 + 4 * lane)),
        Layout::Q8H => (f16_at(gb, 2 * lane), 0.0),
    }
}

pub fn dequantize_lane(layout: Layout, gb: &[u8], lane: usize, out: &mut [f32]) {
    let (d, m) = scales(layout, gb, lane);
    for (i, o) in out.iter_mut().enumerate() {
        let q = value(layout, gb, lane, i) as f32;
        *o = match layout {
            Layout::Q4H | Layout::Q4F => d * q + m,
            Layout::Q8H => d * q,
            Layout::Q8F2 => (if i < 16 { d } else { m }) * q,
        };
    }
}

pub fn block_dots(layout: Layout, gb: &[u8], act: &[i8; QK]) -> ([i32; ROWS], [i32; ROWS]) {
    let mut first = [0i32; ROWS];
    let mut second = [0i32; ROWS];
    for r in 0..ROWS {
        for (i, a) in act.iter().enumerate() {
            let p = value(layout, gb, r, i) * *a as i32;
            if layout == Layout::Q8F2 && i >= 16 {
                second[r] += p;
            } else {
                first[r] += p;
            }
        }
    }
    (first, second)
}

/// The products of `groups` for every token of `x`, written to `out`.
///
/// # Safety
/// As [`super::store`]: `out` holds every token's row, and these groups' rows are this caller's alone.
pub unsafe fn groups(m: &QMatrix, groups: std::ops::Range<usize>, x: &Q8Act, out: *mut f32, stride: usize, offset: usize) {
    let nb = m.blocks();
    let mut acc = [[0f32; ROWS]; TOKEN_TILE];
    for g in groups {
        let mut t0 = 0;
        while t0 < x.tokens {
            let tile = TOKEN_TILE.min(x.tokens - t0);
            for a in acc[..tile].iter_mut() {
                *a = [0.0; ROWS];
            }
            for b in 0..nb {
                let gb = m.group_block(g, b);
                let sc: [(f32, f32); ROWS] = std::array::from_fn(|r| scales(m.layout, gb, r));
                for (t, a) in acc[..tile].iter_mut().enumerate() {
                    let tok = t0 + t;
                    let at = (tok * x.cols) + b * QK;
                    let act: &[i8; QK] = x.qs[at..at + QK].try_into().unwrap();
                    let (da, sa) = (x.d[tok * nb + b], x.s[tok * nb + b]);
                    let (first, second) = block_dots(m.layout, gb, act);
                    for r in 0..ROWS {
                        let (d, mm) = sc[r];
                        a[r] += match m.layout {
                            Layout::Q4H | Layout::Q4F => first[r] as f32 * (d * da) + mm * sa,
                            Layout::Q8H => first[r] as f32 * (d * da),
                            Layout::Q8F2 => first[r] as f32 * (d * da) + second[r] as f32 * (mm * da),
                        };
                    }
                }
            }
            store(out, &acc[..tile], t0, stride, offset, g, m.rows);
            t0 += tile;
        }
    }
}
