//! The embedding model's weights read one tensor at a time from its `model.safetensors`, so that loading never
//! holds the whole file and all the tensors made from it at once (the peak was twice the model).
//!
//! A backend for candle's `VarBuilder`: the header (names, dtypes, shapes, byte ranges) is read at open; each
//! tensor's bytes are read when the model asks for it, checked against its shape, and converted to the dtype asked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};

struct Entry {
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

pub struct SafetensorsFile {
    path: PathBuf,
    file: Mutex<File>,
    data_start: u64,
    entries: HashMap<String, Entry>,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {reason}", path.display()))
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> candle_core::Result<SafetensorsFile> {
        let mut file = File::open(path).map_err(|e| err(path, e))?;
        let size = file.metadata().map_err(|e| err(path, e))?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|e| err(path, e))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > size.saturating_sub(8) || header_len > 100 << 20 {
            return Err(err(path, "not a safetensors file (its header length is out of range)"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| err(path, e))?;
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| err(path, format!("unreadable header: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, v) in json {
            if name == "__metadata__" {
                continue;
            }
            let bad = || err(path, format!("tensor `{name}` has a malformed entry"));
            let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(bad)?.to_owned();
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(bad)?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            let offsets = v.get("data_offsets").and_then(|o| o.as_array()).ok_or_else(bad)?;
            let (start, end) = match offsets.as_slice() {
                [a, b] => (a.as_u64().ok_or_else(bad)?, b.as_u64().ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            if start > end || data_start + end > size {
                return Err(err(path, format!("tensor `{name}` lies outside the file")));
            }
            entries.insert(name, Entry { dtype, shape, start, end });
        }
        Ok(SafetensorsFile { path: path.to_owned(), file: Mutex::new(file), data_start, entries })
    }

    /// A tensor read in pieces of 1 MiB, each converted as it comes: the file's bytes are never held whole. An
    /// f16 tensor asked of an f32 file is converted value by value too (never held as f32 first).
    fn read(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| err(&self.path, format!("no tensor `{name}`")))?;
        let n: usize = e.shape.iter().product();
        let width = match e.dtype.as_str() {
            "F32" => 4,
            "F16" | "BF16" => 2,
            other => return Err(err(&self.path, format!("tensor `{name}` is {other}; F32, F16 and BF16 are supported"))),
        };
        if (e.end - e.start) as usize != n * width {
            return Err(err(&self.path, format!("tensor `{name}` has {} bytes for {n} values", e.end - e.start)));
        }
        let value = |b: &[u8]| -> f32 {
            match width {
                4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                _ if e.dtype == "F16" => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            }
        };
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.seek(SeekFrom::Start(self.data_start + e.start)).map_err(|x| err(&self.path, x))?;
        let mut buf = vec![0u8; (1 << 20) / width * width];
        let mut left = n * width;
        let mut each = |sink: &mut dyn FnMut(f32)| -> candle_core::Result<()> {
            while left > 0 {
                let take = left.min(buf.len());
                f.read_exact(&mut buf[..take]).map_err(|x| err(&self.path, x))?;
                buf[..take].chunks_exact(width).for_each(|b| sink(value(b)));
                left -= take;
            }
            Ok(())
        };
        let t = if dtype == DType::F16 {
            let mut values: Vec<half::f16> = Vec::with_capacity(n);
            each(&mut |v| values.push(half::f16::from_f32(v)))?;
            Tensor::from_vec(values, e.shape.clone(), dev)?
        } else {
            let mut values: Vec<f32> = Vec::with_capacity(n);
            each(&mut |v| values.push(v))?;
            Tensor::from_vec(values, e.shape.clone(), dev)?.to_dtype(dtype)?
        };
        Ok(t)
    }
}

impl candle_nn::var_builder::SimpleBackend for SafetensorsFile {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.read(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(err(&self.path, format!("tensor `{name}` is {:?}, the model expects {:?}", t.shape(), s)));
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}
