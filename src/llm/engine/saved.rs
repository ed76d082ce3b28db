//! Prefix states kept on disk beside the model, so that even a fresh process starts warm: the KV state of a
//! prompt's shared prefix (the system and tools sections) is written once, and a later process whose prompt
//! starts with the same tokens loads it instead of computing it.
//!
//! A file is named by the sha256 of its token ids, so finding the state for a prompt's prefix is one lookup. It
//! holds a header (the model's sha256, Keel's version and the engine's format, the model's shape, the tokens), the
//! K and V caches as f16, and a sha256 of all that. A file whose checksum, model, version or shape does not match
//! is not used: it is removed, the prefix is computed, and the file written again.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Config, State};

const MAGIC: &[u8; 8] = b"KEELKV01";
/// Bumped whenever the engine's numerics change, so that no state computed differently is reused.
pub const ENGINE_FORMAT: u32 = 2;
/// Prefixes shorter than this are cheaper to compute than to read.
pub const MIN_TOKENS: usize = 16;
/// Files kept per model; the oldest is removed past this.
const MAX_FILES: usize = 8;

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Header {
    keel_version: String,
    engine_format: u32,
    model_sha256: String,
    layers: usize,
    kv_dim: usize,
    tokens: Vec<u32>,
}

/// Why a saved state was not used.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} was computed by another model or Keel version ({reason})")]
    Stale { path: PathBuf, reason: String },
}

/// The saved states of one model file.
#[derive(Debug, Clone)]
pub struct SavedStates {
    dir: PathBuf,
    model_sha256: String,
}

impl SavedStates {
    /// States for the model at `model_path` (whose sha256 is known), kept in `<model file>.kv/`.
    pub fn beside(model_path: &Path, model_sha256: &str) -> SavedStates {
        let mut dir = model_path.as_os_str().to_owned();
        dir.push(".kv");
        SavedStates { dir: PathBuf::from(dir), model_sha256: model_sha256.to_owned() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds the state of exactly these tokens.
    pub fn path_for(&self, tokens: &[u32]) -> PathBuf {
        let mut h = Sha256::new();
        for t in tokens {
            h.update(t.to_le_bytes());
        }
        self.dir.join(format!("{}.kv", &hex::encode(h.finalize())[..32]))
    }

    fn header(&self, config: &Config, tokens: &[u32]) -> Header {
        Header {
            keel_version: env!("CARGO_PKG_VERSION").to_owned(),
            engine_format: ENGINE_FORMAT,
            model_sha256: self.model_sha256.clone(),
            layers: config.layers,
            kv_dim: config.kv_dim(),
            tokens: tokens.to_vec(),
        }
    }

    /// The saved state of exactly `tokens`: `Ok(None)` when there is none; an error (and the file removed) when
    /// it is damaged or stale.
    pub fn load(&self, config: &Config, tokens: &[u32]) -> Result<Option<State>, SavedError> {
        let path = self.path_for(tokens);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SavedError::Io { path, source }),
        };
        let result = self.parse(config, tokens, &path, &bytes);
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result.map(Some)
    }

    fn parse(&self, config: &Config, tokens: &[u32], path: &Path, bytes: &[u8]) -> Result<State, SavedError> {
        let corrupt = |reason: &str| SavedError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
        if bytes.len() < MAGIC.len() + 4 + 32 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a Keel KV state"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("its checksum does not match"));
        }
        let header_len = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
        let header: Header = body
            .get(12..12 + header_len)
            .and_then(|h| serde_json::from_slice(h).ok())
            .ok_or_else(|| corrupt("its header is unreadable"))?;
        let want = self.header(config, tokens);
        if header != want {
            let reason = if header.model_sha256 != want.model_sha256 {
                "model".to_string()
            } else if header.keel_version != want.keel_version || header.engine_format != want.engine_format {
                format!("Keel {} engine format {}", header.keel_version, header.engine_format)
            } else {
                "shape or tokens".to_string()
            };
            return Err(SavedError::Stale { path: path.to_owned(), reason });
        }
        let mut data = &body[12 + header_len..];
        if data.len() != 2 * config.layers * tokens.len() * config.kv_dim() * 2 {
            return Err(corrupt("its caches are not the size its header says"));
        }
        State::from_saved(config, tokens.to_vec(), |out| {
            let (head, rest) = data.split_at(out.len() * 2);
            for (o, b) in out.iter_mut().zip(head.chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]);
            }
            data = rest;
            Ok(())
        })
        .map_err(|e| corrupt(&e.to_string()))
    }

    /// Writes the state's first `len` positions (atomically: a temporary file renamed), keeping at most
    /// [`MAX_FILES`] files.
    pub fn save(&self, config: &Config, state: &State, len: usize) -> Result<PathBuf, SavedError> {
        let tokens = &state.tokens[..len];
        let path = self.path_for(tokens);
        let io = |source| SavedError::Io { path: path.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let header = serde_json::to_vec(&self.header(config, tokens)).expect("a header serialises");
        let mut body = Vec::with_capacity(12 + header.len() + config.kv_bytes_per_position() * len);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&(header.len() as u32).to_le_bytes());
        body.extend_from_slice(&header);
        for slice in state.kv_slices(config, len) {
            for v in slice {
                body.extend_from_slice(&v.to_le_bytes());
            }
        }
        let sum = Sha256::digest(&body);
        // Unique per process and call: two threads saving the same prefix never write one temporary file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).and_then(|_| f.write_all(&sum)).and_then(|_| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.prune();
        Ok(path)
    }

    /// Removes the oldest files past [`MAX_FILES`].
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        while files.len() > MAX_FILES {
            let _ = std::fs::remove_file(files.remove(0).1);
        }
    }

    /// Whether a file exists for exactly these tokens (no validation).
    pub fn has(&self, tokens: &[u32]) -> bool {
        self.path_for(tokens).is_file()
    }
}
