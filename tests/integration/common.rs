//! Shared test helpers: temporary data dirs, the fetched model files, and running the `keel` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding the fetched model files. Tests that need the real model fail (never skip) without it:
/// the test script runs `keel models fetch` into it first.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("KEEL_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("KEEL_MODELS_DIR is not set: run the suite with `scripts/test.sh`, which fetches the models into it")
    });
    let gguf = dir.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.exists(), "{} is missing: run `KEEL_MODELS_DIR={} keel models fetch`", gguf.display(), dir.display());
    dir
}

pub fn gguf_path() -> PathBuf {
    models_dir().join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A `keel` command with its own data dir and the shared models.
pub fn keel(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.env("KEEL_HOME", home).env("KEEL_MODELS_DIR", models_dir()).env_remove("KEEL_MODELS_MANIFEST");
    cmd.stdin(Stdio::null());
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
