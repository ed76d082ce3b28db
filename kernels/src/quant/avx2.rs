//! The AVX2 kernels (with FMA and F16C), chosen at run time.

/// Whether this CPU runs the AVX2 kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::env::var_os("KEEL_PORTABLE_KERNELS").is_none()
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn block_dots(_: super::Layout, _: &[u8], _: &[i8; super::QK]) -> ([i32; super::ROWS], [i32; super::ROWS]) {
    unreachable!("AVX2 kernels on a CPU without them")
}

#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn groups(_: &super::QMatrix, _: std::ops::Range<usize>, _: &super::Q8Act, _: *mut f32, _: usize, _: usize) {
    unreachable!("AVX2 kernels on a CPU without them")
}

#[cfg(target_arch = "x86_64")]
pub use imp::*;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::{store, Layout, Q8Act, QMatrix, QK, ROWS, TOKEN_TILE};

    const Q4H: u8 = 0;
    const Q4F: u8 = 1;
    const Q8H: u8 = 2;
    const Q8F2: u8 = 3;

    /// A group block's eight value vectors, ready for `vpmaddubsw`: for the 4-bit layouts the unpacked nibbles
    /// (unsigned), for the 8-bit ones the values themselves (signed; their magnitudes in `abs`).
    struct Unpacked {
        w: [__m256i; 8],
        abs: [__m256i; 8],
    }

    #[inline(always)]
    unsafe fn unpack<const L: u8>(qs: *const u8) -> Unpacked {
        let mut w = [_mm256_setzero_si256(); 8];
        let mut abs = [_mm256_setzero_si256(); 8];
        if L == Q4H || L == Q4F {
            let mask = _mm256_set1_epi8(0x0F);
            for v in 0..4 {
                let raw = _mm256_loadu_si256(qs.add(v * 32) as *const __m256i);
                w[v] = _mm256_and_si256(raw, mask);
                w[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
            }
        } else {
            for c in 0..8 {
                w[c] = _mm256_loadu_si256(qs.add(c * 32) as *const __m256i);
                abs[c] = _mm256_abs_epi8(w[c]);
            }
        }
        Unpacked { w, abs }
    }

    /// The eight rows' integer dot products with one activation block: (all 32 values, or for `Q8F2` the first
    /// 16) and (the second 16 for `Q8F2`).
    #[inline(always)]
    unsafe fn idots<const L: u8>(u: &Unpacked, act: *const i8) -> (__m256i, __m256i) {
        let ones = _mm256_set1_epi16(1);
        let a = |c: usize| _mm256_set1_epi32(std::ptr::read_unaligned(act.add(4 * c) as *const i32));
        if L == Q4H || L == Q4F {
            // |pair| ≤ 2·15·127 = 3,810, and eight of them fit an i16.
            let mut s = _mm256_maddubs_epi16(u.w[0], a(0));
            for c in 1..8 {
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u.w[c], a(c)));
            }
            (_mm256_madd_epi16(s, ones), _mm256_setzero_si256())
        } else if L == Q8H {
            // |pair| ≤ 2·128·127 = 32,512: each goes to i32 on its own.
            let mut s = _mm256_setzero_si256();
            for c in 0..8 {
                let p = _mm256_maddubs_epi16(u.abs[c], _mm256_sign_epi8(a(c), u.w[c]));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
            }
            (s, _mm256_setzero_si256())
        } else {
            // Q6_K's values are within ±32: |pair| ≤ 2·32·127 = 8,128, and four fit an i16.
            let p = |c: usize| _mm256_maddubs_epi16(u.abs[c], _mm256_sign_epi8(a(c), u.w[c]));
            let lo = _mm256_add_epi16(_mm256_add_epi16(p(0), p(1)), _mm256_add_epi16(p(2), p(3)));
            let hi = _mm256_add_epi16(_mm256_add_epi16(p(4), p(5)), _mm256_add_epi16(p(6), p(7)));
            (_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones))
        }
    }

    const fn qs_at(l: u8) -> usize {
        match l {
            Q4H => 32,
            Q4F => 64,
            Q8H => 16,
            _ => 64,
        }
    }

    #[inline(always)]
    unsafe fn scales<const L: u8>(gb: *const u8) -> (__m256, __m256) {
        match L {
            Q4H => (_mm256_cvtph_ps(_mm_loadu_si128(gb as *const __m128i)), _mm256_cvtph_ps(_mm_loadu_si128(gb.add(16) as *const __m128i))),
            Q8H => (_mm256_cvtph_ps(_mm_loadu_si128(gb as *const __m128i)), _mm256_setzero_ps()),
            _ => (_mm256_loadu_ps(gb as *const f32), _mm256_loadu_ps(gb.add(32) as *const f32)),
        }
    }

    fn code(layout: Layout) -> u8 {
        match layout {
            Layout::Q4H => Q4H,
            Layout::Q4F => Q4F,
            Layout::Q8H => Q8H,
            Layout::Q8F2 => Q8F2,
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block_dots(layout: Layout, gb: &[u8], act: &[i8; QK]) -> ([i32; ROWS], [i32; ROWS]) {
        #[inline(always)]
        unsafe fn one<const L: u8>(gb: &[u8], act: &[i8; QK]) -> ([i32; ROWS], [i32; ROWS]) {
            let u = unpack::<L>(gb.as_ptr().add(qs_at(L)));
            let (a, b) = idots::<L>(&u, act.as_ptr());
            let (mut x, mut y) = ([0i32; ROWS], [0i32; ROWS]);
            _mm256_storeu_si256(x.as_mut_ptr() as *mut __m256i, a);
            _mm256_storeu_si256(y.as_mut_ptr() as *mut __m256i, b);
            (x, y)
        }
        match code(layout) {
            Q4H => one::<Q4H>(gb, act),
            Q4F => one::<Q4F>(gb, act),
            Q8H => one::<Q8H>(gb, act),
            _ => one::<Q8F2>(gb, act),
        }
    }

    /// # Safety
    /// As [`super::super::store`]; the CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn groups(m: &QMatrix, groups: std::ops::Range<usize>, x: &Q8Act, out: *mut f32, stride: usize, offset: usize) {
        match code(m.layout) {
            Q4H => run::<Q4H>(m, groups, x, out, stride, offset),
            Q4F => run::<Q4F>(m, groups, x, out, stride, offset),
            Q8H => run::<Q8H>(m, groups, x, out, stride, offset),
            _ => run::<Q8F2>(m, groups, x, out, stride, offset),
        }
    }

    #[inline(always)]
    unsafe fn run<const L: u8>(m: &QMatrix, groups: std::ops::Range<usize>, x: &Q8Act, out: *mut f32, stride: usize, offset: usize) {
        let nb = m.blocks();
        let gbytes = m.layout.group_block_bytes();
        let data = m.data.as_ptr();
        let mut acc = [[0f32; ROWS]; TOKEN_TILE];
        let (qs, xd, xs) = (x.qs.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
        let mut t0 = 0;
        while t0 < x.tokens {
            let tile = TOKEN_TILE.min(x.tokens - t0);
            for g in groups.clone() {
                for a in acc[..tile].iter_mut() {
                    _mm256_storeu_ps(a.as_mut_ptr(), _mm256_setzero_ps());
                }
                let mut gb = data.add(g * nb * gbytes);
                for b in 0..nb {
                    if b + 2 < nb {
                        _mm_prefetch(gb.add(2 * gbytes) as *const i8, _MM_HINT_T0);
                    }
                    let u = unpack::<L>(gb.add(qs_at(L)));
                    let (d8, m8) = scales::<L>(gb);
                    for (t, a) in acc[..tile].iter_mut().enumerate() {
                        let tok = t0 + t;
                        let act = qs.add(tok * x.cols + b * QK);
                        let da = _mm256_set1_ps(*xd.add(tok * nb + b));
                        let (i0, i1) = idots::<L>(&u, act);
                        let mut v = _mm256_loadu_ps(a.as_ptr());
                        v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_mul_ps(d8, da), v);
                        if L == Q4H || L == Q4F {
                            v = _mm256_fmadd_ps(m8, _mm256_set1_ps(*xs.add(tok * nb + b)), v);
                        } else if L == Q8F2 {
                            v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_mul_ps(m8, da), v);
                        }
                        _mm256_storeu_ps(a.as_mut_ptr(), v);
                    }
                    gb = gb.add(gbytes);
                }
                store(out, &acc[..tile], t0, stride, offset, g, m.rows);
            }
            t0 += tile;
        }
    }
}
