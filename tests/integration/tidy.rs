//! Tidy checks (after rust-analyzer's `tidy.rs`): the layer rules of ARCHITECTURE.md hold in the code, every
//! source file opens with a `//!` header saying why it exists, and nothing temporary is left behind.

use std::path::{Path, PathBuf};

use super::common::repo;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// For each layer, the modules of `crate::` it must not use.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("interface", &["orchestration", "store", "llm", "models", "trace", "eval", "memory", "tools"]),
    ("llm", &["orchestration", "store", "interface", "models", "trace", "eval", "memory", "tools"]),
    ("store", &["orchestration", "llm", "interface", "models", "trace", "eval", "memory", "tools"]),
    // The model manager reads GGUF headers with the loader's own validation (`llm::local::read_header`) and
    // takes the backends' `CancelFlag`; `llm` knows nothing of `models`, so the two stay acyclic.
    ("models", &["orchestration", "store", "interface", "trace", "eval", "memory", "tools"]),
    ("memory", &["orchestration", "llm", "models", "trace", "eval", "tools"]),
    ("tools", &["orchestration", "store", "llm", "interface", "models", "trace", "eval", "memory"]),
    ("orchestration", &["models", "trace", "eval"]),
    ("trace", &["store", "llm", "models", "eval", "memory"]),
];

#[test]
fn layers_use_only_what_they_may() {
    let src = repo().join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        for file in rust_files(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                for module in *forbidden {
                    if line.contains(&format!("crate::{module}")) {
                        violations.push(format!("{}:{}: {layer} uses crate::{module}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "layer rules broken:\n{}", violations.join("\n"));
}

#[test]
fn the_front_ends_hold_no_agent_logic() {
    // The desktop shell and the CLI reach the core through `keel::App` and its boundary types, never its
    // internals: no store, no model loading, no turn loop, no SQL.
    let mut files = rust_files(&repo().join("src-tauri/src"));
    files.push(repo().join("src/bin/keel.rs"));
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for inner in ["keel::store", "keel::llm::local", "orchestration::runner", "orchestration::journal", "rusqlite", "candle_"] {
            if text.contains(inner) {
                violations.push(format!("{} uses {inner}", file.display()));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_source_file_has_a_header_and_no_leftovers() {
    let mut problems = Vec::new();
    for dir in ["src", "src-tauri/src", "tests/integration"] {
        for file in rust_files(&repo().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{}: no `//!` header", file.display()));
            }
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                // Spelled in pieces so that this file does not match itself.
                for bad in [concat!("dbg", "!("), concat!("todo", "!("), concat!("unimplemented", "!(")] {
                    if code.contains(bad) {
                        problems.push(format!("{}:{}: {bad}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
