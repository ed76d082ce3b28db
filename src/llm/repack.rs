//! Repacking of quantized weights that candle has no fast CPU kernel for.
//!
//! candle 0.11's CPU `vec_dot` for Q4_1 is a scalar loop, while Q8_0 has an AVX2 kernel: on the pinned SmolLM2
//! Q4_1 file the scalar path runs at a fraction of llama.cpp's speed. At load, every Q4_1 tensor is dequantized
//! and requantized to Q8_0. Q8_0 keeps 8 bits per weight with a per-block scale, so the values the model sees
//! change by far less than the Q4_1 quantisation step (the argmax check against llama.cpp's fixtures covers it),
//! at 1.7x the memory of those tensors. Every other tensor is passed through byte for byte.

use std::io::{Cursor, Read, Seek};

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

/// The data types that are repacked, and what to.
const REPACK: &[(GgmlDType, GgmlDType)] = &[(GgmlDType::Q4_1, GgmlDType::Q8_0)];

/// Whether any tensor of `content` would be repacked.
pub fn needs_repack(content: &Content) -> bool {
    content.tensor_infos.values().any(|t| REPACK.iter().any(|(from, _)| *from == t.ggml_dtype))
}

/// Reads every tensor of `content` from `reader` and returns a content and an in-memory reader in which the slow
/// types are replaced, reporting `(tensors_done, tensors_total)`.
pub fn repack<R: Read + Seek>(
    content: Content,
    reader: &mut R,
    on_progress: &mut dyn FnMut(u64, u64),
) -> candle_core::Result<(Content, Cursor<Vec<u8>>)> {
    let device = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let total = names.len() as u64;
    let mut data = Vec::new();
    let mut infos = std::collections::HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        let info = &content.tensor_infos[name];
        let tensor = info.read(reader, content.tensor_data_offset, &device)?;
        let target = REPACK.iter().find(|(from, _)| *from == info.ggml_dtype).map(|(_, to)| *to);
        let tensor = match target {
            Some(to) => QTensor::quantize(&tensor.dequantize(&device)?, to)?,
            None => tensor,
        };
        // Keep each tensor aligned as GGUF does, so nothing downstream sees a different layout.
        data.resize(data.len().div_ceil(32) * 32, 0);
        let offset = data.len() as u64;
        data.extend_from_slice(&tensor.data()?);
        infos.insert(name.clone(), TensorInfo { ggml_dtype: tensor.dtype(), shape: info.shape.clone(), offset });
        on_progress(i as u64 + 1, total);
    }
    let content = Content { magic: content.magic, metadata: content.metadata, tensor_infos: infos, tensor_data_offset: 0 };
    Ok((content, Cursor::new(data)))
}
