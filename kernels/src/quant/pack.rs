//! Reading ggml's quantized blocks (as stored in a GGUF file) into Keel's group layout.

use half::f16;

use super::{Layout, QMatrix, QK, ROWS};

/// The ggml tensor types Keel's engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl GgmlType {
    pub const ALL: [GgmlType; 6] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K];

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q6K => "Q6_K",
        }
    }

    /// (values per block, bytes per block) in the file.
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q6K => (256, 210),
        }
    }

    fn layout(self) -> Layout {
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 => Layout::Q4H,
            GgmlType::Q4K => Layout::Q4F,
            GgmlType::Q8_0 | GgmlType::Q5_0 => Layout::Q8H,
            GgmlType::Q6K => Layout::Q8F2,
        }
    }
}

/// Why a matrix read row by row could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PackRead {
    #[error(transparent)]
    Pack(PackError),
    #[error("reading the tensor: {0}")]
    Read(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("a {rows}×{cols} {ty} matrix needs {needed} bytes, {actual} were given")]
    Size { ty: &'static str, rows: usize, cols: usize, needed: usize, actual: usize },
    #[error("a {ty} matrix needs a multiple of {block} columns, this one has {cols}")]
    Columns { ty: &'static str, block: usize, cols: usize },
}

/// One row's block of 32 values as decoded from the file.
#[derive(Clone, Copy)]
struct Block {
    q: [i8; QK],
    /// Scale (f16 bits for the H layouts, f32 bits otherwise); for `Q8F2` the first half's.
    d: u32,
    /// Offset (4-bit layouts) or the second half's scale (`Q8F2`), same encoding.
    m: u32,
}

const ZERO: Block = Block { q: [0; QK], d: 0, m: 0 };

fn h(bytes: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn f32_bits(v: f32) -> u32 {
    v.to_bits()
}

/// The 32-value blocks of one row.
fn decode_row(ty: GgmlType, row: &[u8], cols: usize, out: &mut Vec<Block>) {
    out.clear();
    let (per, size) = ty.block();
    for raw in row.chunks_exact(size).take(cols / per) {
        match ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let d = h(raw, 0);
                let (m, qs) = match ty {
                    // (q − 8)·d = q·d + (−8d): multiplying by a power of two is exact in f16.
                    GgmlType::Q4_0 => (f16::from_f32(-8.0 * d.to_f32()), &raw[2..18]),
                    _ => (h(raw, 2), &raw[4..20]),
                };
                let mut q = [0i8; QK];
                for j in 0..16 {
                    q[j] = (qs[j] & 0x0F) as i8;
                    q[j + 16] = (qs[j] >> 4) as i8;
                }
                out.push(Block { q, d: d.to_bits() as u32, m: m.to_bits() as u32 });
            }
            GgmlType::Q5_0 => {
                // (q − 16)·d with q of 5 bits: the four high bits in a u32, the low ones as Q4_0's nibbles.
                let qh = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
                let qs = &raw[6..22];
                let mut q = [0i8; QK];
                for j in 0..16 {
                    q[j] = ((qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4)) as i8 - 16;
                    q[j + 16] = ((qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4)) as i8 - 16;
                }
                out.push(Block { q, d: h(raw, 0).to_bits() as u32, m: 0 });
            }
            GgmlType::Q8_0 => {
                let mut q = [0i8; QK];
                for (o, b) in q.iter_mut().zip(&raw[2..34]) {
                    *o = *b as i8;
                }
                out.push(Block { q, d: h(raw, 0).to_bits() as u32, m: 0 });
            }
            GgmlType::Q4K => {
                let d = h(raw, 0).to_f32();
                let dmin = h(raw, 2).to_f32();
                let scales = &raw[4..16];
                let qs = &raw[16..144];
                let scale_min = |j: usize| -> (u8, u8) {
                    if j < 4 {
                        (scales[j] & 63, scales[j + 4] & 63)
                    } else {
                        ((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
                    }
                };
                for sub in 0..8 {
                    let (sc, mn) = scale_min(sub);
                    let bytes = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
                    let mut q = [0i8; QK];
                    for l in 0..32 {
                        q[l] = if sub % 2 == 0 { bytes[l] & 0x0F } else { bytes[l] >> 4 } as i8;
                    }
                    // ggml: y = (d·sc)·q − dmin·m
                    out.push(Block { q, d: f32_bits(d * sc as f32), m: f32_bits(-(dmin * mn as f32)) });
                }
            }
            GgmlType::Q6K => {
                let ql = &raw[0..128];
                let qh = &raw[128..192];
                let sc = &raw[192..208];
                let d = h(raw, 208).to_f32();
                let mut values = [0i8; 256];
                for half in 0..2 {
                    let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                    for l in 0..32 {
                        let base = 128 * half + l;
                        values[base] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                        values[base + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                        values[base + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                        values[base + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                    }
                }
                for sub in 0..8 {
                    let mut q = [0i8; QK];
                    q.copy_from_slice(&values[32 * sub..32 * sub + 32]);
                    let d0 = d * (sc[2 * sub] as i8) as f32;
                    let d1 = d * (sc[2 * sub + 1] as i8) as f32;
                    out.push(Block { q, d: f32_bits(d0), m: f32_bits(d1) });
                }
            }
        }
    }
}

/// Writes eight rows' blocks into one group block.
fn write_group_block(layout: Layout, rows: &[Block; ROWS], out: &mut [u8]) {
    let (scale_bytes, qs_at) = match layout {
        Layout::Q4H => (2, 32),
        Layout::Q4F => (4, 64),
        Layout::Q8H => (2, 16),
        Layout::Q8F2 => (4, 64),
    };
    for (r, b) in rows.iter().enumerate() {
        out[r * scale_bytes..(r + 1) * scale_bytes].copy_from_slice(&b.d.to_le_bytes()[..scale_bytes]);
        if !matches!(layout, Layout::Q8H) {
            let at = ROWS * scale_bytes + r * scale_bytes;
            out[at..at + scale_bytes].copy_from_slice(&b.m.to_le_bytes()[..scale_bytes]);
        }
        for e in 0..4 {
            match layout {
                Layout::Q4H | Layout::Q4F => {
                    for v in 0..4 {
                        let lo = b.q[4 * v + e] as u8;
                        let hi = b.q[4 * (v + 4) + e] as u8;
                        out[qs_at + v * 32 + r * 4 + e] = lo | (hi << 4);
                    }
                }
                Layout::Q8H | Layout::Q8F2 => {
                    for c in 0..8 {
                        out[qs_at + c * 32 + r * 4 + e] = b.q[4 * c + e] as u8;
                    }
                }
            }
        }
    }
}

impl QMatrix {
    /// A matrix from a GGUF tensor's bytes: `rows` rows of `cols` values each, in ggml's row-major block order.
    pub fn from_ggml(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<QMatrix, PackError> {
        let (per, size) = ty.block();
        let row_bytes = cols / per * size;
        if cols % per == 0 && bytes.len() != rows * row_bytes {
            return Err(PackError::Size { ty: ty.name(), rows, cols, needed: rows * row_bytes, actual: bytes.len() });
        }
        let mut at = 0;
        QMatrix::from_ggml_rows(ty, rows, cols, &mut |buf: &mut [u8]| {
            buf.copy_from_slice(&bytes[at..at + buf.len()]);
            at += buf.len();
            Ok(())
        })
        .map_err(|e| match e {
            PackRead::Pack(e) => e,
            PackRead::Read(_) => unreachable!("reading from memory"),
        })
    }

    /// A matrix read eight rows at a time by `read` (which fills the buffer it is given with the next rows' ggml
    /// bytes): a large tensor is never held whole besides its packed form.
    pub fn from_ggml_rows(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        read: &mut dyn FnMut(&mut [u8]) -> std::io::Result<()>,
    ) -> Result<QMatrix, PackRead> {
        let (per, size) = ty.block();
        if cols % per != 0 {
            return Err(PackRead::Pack(PackError::Columns { ty: ty.name(), block: per, cols }));
        }
        let row_bytes = cols / per * size;
        let layout = ty.layout();
        let blocks = cols / QK;
        let groups = rows.div_ceil(ROWS);
        let gb = layout.group_block_bytes();
        let mut data = vec![0u8; groups * blocks * gb];
        let mut decoded: Vec<Vec<Block>> = (0..ROWS).map(|_| Vec::with_capacity(blocks)).collect();
        let mut chunk = vec![0u8; ROWS * row_bytes];
        for g in 0..groups {
            let here = ROWS.min(rows - g * ROWS);
            read(&mut chunk[..here * row_bytes]).map_err(PackRead::Read)?;
            for (r, d) in decoded.iter_mut().enumerate() {
                let row = g * ROWS + r;
                if row < rows {
                    decode_row(ty, &chunk[r * row_bytes..(r + 1) * row_bytes], cols, d);
                } else {
                    d.clear();
                    d.resize(blocks, ZERO);
                }
            }
            for b in 0..blocks {
                let eight: [Block; ROWS] = std::array::from_fn(|r| decoded[r][b]);
                let at = (g * blocks + b) * gb;
                write_group_block(layout, &eight, &mut data[at..at + gb]);
            }
        }
        Ok(QMatrix { layout, source: ty, rows, cols, data })
    }
}
