//! Tidy checks (after rust-analyzer's `tidy.rs`): the layer rules of ARCHITECTURE.md hold in the code, every
//! source file opens with a `//!` header saying why it exists, and nothing temporary is left behind.
//!
//! Each rule is a function over source texts, so that besides checking the repository it is shown catching a
//! violation planted in a few lines of made-up source (the `*_is_caught` tests): a rule that cannot fail is
//! no rule.

use std::collections::{BTreeMap, BTreeSet};
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

/// The files below `dir` of the repository, as (path relative to `dir`, text).
fn sources(dir: &str) -> Vec<(String, String)> {
    let root = repo().join(dir);
    rust_files(&root)
        .into_iter()
        .map(|p| (p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// A line without its comment (a `//` that is not inside a string literal on that line).
fn code(line: &str) -> &str {
    let mut in_str = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
            b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A file's code without comments, and without its `#[cfg(test)] mod tests` block at the end (tests may build
/// what the product may not, e.g. events for a fold).
fn product_code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end].lines().map(code).collect::<Vec<_>>().join("\n")
}

/// For each layer, the modules of `crate::` it must not use.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("interface", &["orchestration", "store", "llm", "models", "trace", "eval", "memory", "tools", "app"]),
    ("llm", &["orchestration", "store", "interface", "models", "trace", "eval", "memory", "tools", "app"]),
    ("store", &["orchestration", "llm", "interface", "models", "trace", "eval", "memory", "tools", "app"]),
    // The model library reads GGUF headers with the loader's own validation (`llm::local::read_header`) and
    // takes the backends' `CancelFlag`; `llm` knows nothing of `models`, so the two stay acyclic.
    ("models", &["orchestration", "store", "interface", "trace", "eval", "memory", "tools", "app"]),
    ("memory", &["orchestration", "llm", "models", "trace", "eval", "tools", "app"]),
    ("tools", &["orchestration", "store", "llm", "interface", "models", "trace", "eval", "memory", "app"]),
    ("orchestration", &["models", "trace", "eval", "app"]),
    ("trace", &["store", "llm", "models", "eval", "memory", "app"]),
    ("eval", &["app"]),
    // The leaf every layer may use: it uses none of them.
    ("shared", &["app", "interface", "orchestration", "store", "llm", "models", "trace", "eval", "memory", "tools", "secrets"]),
];

fn layer_violations(files: &[(String, String)]) -> Vec<String> {
    let mut violations = Vec::new();
    for (path, text) in files {
        let Some((layer, forbidden)) = FORBIDDEN.iter().find(|(layer, _)| path.starts_with(&format!("{layer}/"))) else { continue };
        for (n, line) in text.lines().enumerate() {
            for module in *forbidden {
                if code(line).contains(&format!("crate::{module}")) {
                    violations.push(format!("{path}:{}: {layer} uses crate::{module}", n + 1));
                }
            }
        }
    }
    violations
}

#[test]
fn layers_use_only_what_they_may() {
    let violations = layer_violations(&sources("src"));
    assert!(violations.is_empty(), "layer rules broken:\n{}", violations.join("\n"));
}

#[test]
fn a_layer_using_what_it_may_not_is_caught() {
    let planted = [("llm/local.rs".to_string(), "//! x\nuse crate::store::Store;\n// crate::memory in a comment is fine\n".to_string())];
    assert_eq!(layer_violations(&planted), ["llm/local.rs:2: llm uses crate::store"]);
}

/// Outside orchestration nothing builds a `RunEvent`: a `RunEvent::Variant { … }` or `RunEvent::Variant(…)`
/// that is not a pattern (patterns outside orchestration always end their fields with `..`).
fn run_event_constructions(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        if path.starts_with("orchestration/") {
            continue;
        }
        let code = product_code(text);
        let mut from = 0;
        while let Some(at) = code[from..].find("RunEvent::") {
            let start = from + at;
            from = start + "RunEvent::".len();
            let rest = &code[from..];
            let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..name_len];
            if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            let after = rest[name_len..].trim_start();
            let (open, close) = match after.chars().next() {
                Some('{') => ('{', '}'),
                Some('(') => ('(', ')'),
                _ => continue,
            };
            let body_start = code.len() - after.len();
            let mut depth = 0;
            let mut end = body_start;
            for (i, c) in code[body_start..].char_indices() {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth -= 1;
                    if depth == 0 {
                        end = body_start + i;
                        break;
                    }
                }
            }
            if !code[body_start..end].contains("..") {
                let line = code[..start].lines().count().max(1);
                found.push(format!("{path}:{line}: builds RunEvent::{name}"));
            }
        }
    }
    found
}

#[test]
fn only_orchestration_builds_run_events() {
    let mut files = sources("src");
    files.extend(sources("src-tauri/src").into_iter().map(|(p, t)| (format!("src-tauri/{p}"), t)));
    let found = run_event_constructions(&files);
    assert!(found.is_empty(), "run events are built only in orchestration (lifecycle.rs, runner.rs):\n{}", found.join("\n"));
}

#[test]
fn a_run_event_built_outside_orchestration_is_caught() {
    let planted = [
        ("app/runs.rs".to_string(), "//! x\nfn f() {\n    let e = RunEvent::RunCancelled {\n        reason: \"x\".into(),\n    };\n}\n".to_string()),
        ("trace/mod.rs".to_string(), "//! x\nfn g(e: &RunEvent) { if let RunEvent::RunCancelled { .. } = e {} }\n".to_string()),
        ("orchestration/runner.rs".to_string(), "//! x\nfn h() { RunEvent::RunCancelled { reason: String::new() }; }\n".to_string()),
    ];
    assert_eq!(run_event_constructions(&planted), ["app/runs.rs:3: builds RunEvent::RunCancelled"]);
}

/// The module a file is: `a/b.rs` is `a::b`, `a/mod.rs` is `a`, `lib.rs` the crate root (`""`).
fn module_of(path: &str) -> String {
    let p = path.trim_end_matches(".rs");
    let p = p.strip_suffix("/mod").unwrap_or(p);
    if p == "lib" {
        String::new()
    } else {
        p.replace('/', "::")
    }
}

/// `use` statements' paths with their brace groups expanded: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let path = path.trim();
    let Some(open) = path.find('{') else { return vec![path.split(" as ").next().unwrap_or(path).trim().to_string()] };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(p)).map(|p| format!("{prefix}{p}").replace("::self", "")).collect()
}

/// The modules each module uses (by `crate::`, `super::` and `use` paths), resolved to the deepest module of
/// `modules`; a module's use of its own ancestors or descendants is not counted (a parent re-exporting its
/// children, a child using its parent's items).
fn module_graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    let resolve = |path: &str| -> Option<String> {
        let segments: Vec<&str> = path.split("::").collect();
        (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|m| modules.contains(m))
    };
    let related = |a: &str, b: &str| a.is_empty() || b.is_empty() || a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let me = module_of(path);
        let parent = if path.ends_with("mod.rs") || path == "lib.rs" {
            me.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default()
        } else {
            me.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default()
        };
        let code = product_code(text);
        let mut paths = Vec::new();
        for statement in code.split(';') {
            let s = statement.trim();
            let s = s.strip_prefix("pub ").unwrap_or(s);
            let s = s.strip_prefix("pub(crate) ").unwrap_or(s);
            if let Some(rest) = s.strip_prefix("use ") {
                paths.extend(expand(rest));
            }
        }
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("crate::") || word.starts_with("super::") {
                paths.push(word.trim_end_matches(':').to_string());
            }
        }
        for p in paths {
            let absolute = if let Some(rest) = p.strip_prefix("crate::") {
                rest.to_string()
            } else if let Some(rest) = p.strip_prefix("super::") {
                if parent.is_empty() { rest.to_string() } else { format!("{parent}::{rest}") }
            } else {
                continue;
            };
            if let Some(target) = resolve(&absolute) {
                if !related(&me, &target) {
                    graph.entry(me.clone()).or_default().insert(target);
                }
            }
        }
    }
    graph
}

/// Import loops: each set of two or more modules that reach each other (Tarjan's strongly connected
/// components), named with one loop through it.
fn import_loops(files: &[(String, String)]) -> Vec<String> {
    let graph = module_graph(files);
    let nodes: Vec<&String> = graph.keys().chain(graph.values().flatten()).collect::<BTreeSet<_>>().into_iter().collect();
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut loops = BTreeSet::new();
    for a in &nodes {
        let component: BTreeSet<&String> = nodes.iter().copied().filter(|b| reach[a].contains(*b) && reach[*b].contains(*a)).collect();
        if component.len() > 1 {
            loops.insert(component.into_iter().cloned().collect::<Vec<_>>().join(" ↔ "));
        }
    }
    loops.into_iter().collect()
}

#[test]
fn no_module_imports_loop() {
    let loops = import_loops(&sources("src"));
    assert!(loops.is_empty(), "modules that import each other:\n{}", loops.join("\n"));
}

#[test]
fn an_import_loop_is_caught() {
    let planted = [
        ("lib.rs".to_string(), "//! x\npub mod interface;\n".to_string()),
        ("interface/mod.rs".to_string(), "//! x\npub mod guard;\npub mod combiner;\n".to_string()),
        ("interface/guard.rs".to_string(), "//! x\nuse super::combiner::{self, Combiner};\n".to_string()),
        ("interface/combiner.rs".to_string(), "//! x\nuse super::{guard::Reason, signals};\n// super::nothing\n".to_string()),
        ("interface/signals.rs".to_string(), "//! x\nuse crate::interface::guard::Source;\n".to_string()),
    ];
    assert_eq!(import_loops(&planted), ["interface::combiner ↔ interface::guard ↔ interface::signals"]);
    // Without the back edges there is no loop; a parent using its child is not one either.
    let clean = [
        ("interface/mod.rs".to_string(), "//! x\npub use guard::Source;\nuse crate::interface::guard::Scan;\n".to_string()),
        ("interface/guard.rs".to_string(), "//! x\nuse super::combiner::Combiner;\nuse super::Door;\n".to_string()),
        ("interface/combiner.rs".to_string(), "//! x\n".to_string()),
    ];
    assert!(import_loops(&clean).is_empty(), "{:?}", import_loops(&clean));
}

/// What a front end must not name: the core's internals (store, model loading, the loop, SQL).
const INTERNALS: &[&str] = &["keel::store", "keel::llm::local", "orchestration::runner", "orchestration::journal", "orchestration::lifecycle", "rusqlite", "candle_"];

/// Front ends reach the core only through `App`: they name its boundary types, but every call goes to an `App`
/// method (a free function of an inner module, `keel::module::function(…)`, is a call past it).
fn front_end_violations(files: &[(String, String)]) -> Vec<String> {
    let mut violations = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let line = code(line);
            for inner in INTERNALS {
                if line.contains(inner) {
                    violations.push(format!("{path}:{}: uses {inner}", n + 1));
                }
            }
            let mut from = 0;
            while let Some(at) = line[from..].find("keel::") {
                let start = from + at;
                let rest = &line[start..];
                let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                let path_text = &rest[..len];
                let last = path_text.rsplit("::").next().unwrap_or("");
                let before_last = path_text.rsplit("::").nth(1).unwrap_or("");
                let called = rest[len..].starts_with('(');
                let is_function = last.starts_with(|c: char| c.is_ascii_lowercase());
                let of_a_module = before_last.starts_with(|c: char| c.is_ascii_lowercase());
                if called && is_function && of_a_module {
                    violations.push(format!("{path}:{}: calls {path_text} instead of an App method", n + 1));
                }
                from = start + len.max(1);
            }
        }
    }
    violations
}

fn front_ends() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = sources("src/bin").into_iter().map(|(p, t)| (format!("src/bin/{p}"), t)).collect();
    files.extend(sources("src-tauri/src").into_iter().map(|(p, t)| (format!("src-tauri/src/{p}"), t)));
    files
}

#[test]
fn the_front_ends_only_call_app() {
    let files = front_ends();
    assert!(files.iter().any(|(p, _)| p.starts_with("src/bin/")) && files.iter().any(|(p, _)| p.starts_with("src-tauri/")), "front ends not found");
    let violations = front_end_violations(&files);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn a_front_end_calling_past_app_is_caught() {
    let planted = [(
        "src/bin/keel/runs.rs".to_string(),
        "//! x\nuse keel::{App, RunOutcome};\nfn f(app: &App) {\n    let a = keel::App::open_default();\n    let t = keel::trace::timeline(&d);\n    let s = keel::store::Store::open(p);\n    let o = keel::RunOutcome::Answered;\n}\n".to_string(),
    )];
    assert_eq!(
        front_end_violations(&planted),
        ["src/bin/keel/runs.rs:5: calls keel::trace::timeline instead of an App method", "src/bin/keel/runs.rs:6: uses keel::store"]
    );
}

#[test]
fn every_source_file_has_a_header_and_no_leftovers() {
    let mut problems = Vec::new();
    for dir in ["src", "src-tauri/src", "tests/integration", "kernels/src"] {
        for file in rust_files(&repo().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{}: no `//!` header", file.display()));
            }
            for (n, line) in text.lines().enumerate() {
                // Spelled in pieces so that this file does not match itself.
                for bad in [concat!("dbg", "!("), concat!("todo", "!("), concat!("unimplemented", "!(")] {
                    if code(line).contains(bad) {
                        problems.push(format!("{}:{}: {bad}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_crate_root_is_only_the_module_list() {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).unwrap();
    assert!(lib.lines().count() < 80, "src/lib.rs has {} lines", lib.lines().count());
    let stray: Vec<&str> = lib
        .lines()
        .map(code)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("pub mod ") && !l.starts_with("pub use ") && !l.starts_with("mod "))
        .filter(|l| !l.ends_with(',') && !l.ends_with("};") && !l.ends_with('{'))
        .collect();
    assert!(stray.is_empty(), "src/lib.rs holds more than modules and re-exports: {stray:?}");
    let app_files: Vec<String> = std::fs::read_dir(repo().join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app_"))
        .collect();
    assert!(app_files.is_empty(), "App's wings live in src/app/: {app_files:?}");
}

/// The switches that turn a check off or narrow the suite (`UPDATE_*`, `*_ONLY`) named in `texts`.
fn switches(texts: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for text in texts {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let upper = word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            // SQLite's own constants (`SQLITE_OPEN_READ_ONLY`) are flags, not switches.
            let sqlite = word.starts_with("SQLITE_");
            if upper && !sqlite && ((word.starts_with("UPDATE_") && word.len() > 7) || (word.ends_with("_ONLY") && word.len() > 5)) {
                out.insert(word.to_owned());
            }
        }
    }
    out
}

/// The switches the suite's script does not clear.
fn uncleared_switches(texts: &[String], test_sh: &str) -> Vec<String> {
    let unset: BTreeSet<&str> = test_sh.lines().filter(|l| l.trim_start().starts_with("unset ")).flat_map(|l| l.split_whitespace().skip(1)).collect();
    switches(texts).into_iter().filter(|s| !unset.contains(s.as_str())).collect()
}

fn text_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !["node_modules", "target", ".git", "test-output", "dist"].contains(&name.as_str()) {
                text_files(&path, out);
            }
        } else if ["rs", "sh", "mjs", "ts", "js", "py", "svelte"].iter().any(|e| name.ends_with(&format!(".{e}"))) {
            out.extend(std::fs::read_to_string(&path).ok());
        }
    }
}

#[test]
fn the_suite_script_clears_every_switch_that_turns_a_check_off() {
    let mut texts = Vec::new();
    for dir in ["src", "src-tauri/src", "tests", "scripts", "ui/src", ".ci"] {
        if repo().join(dir).is_dir() {
            text_files(&repo().join(dir), &mut texts);
        }
    }
    let found = switches(&texts);
    // Positive control: the scan sees the switches known to exist.
    assert!(found.contains("UPDATE_BINDINGS") && found.contains("E2E_ONLY"), "{found:?}");
    let test_sh = std::fs::read_to_string(repo().join("scripts/test.sh")).unwrap();
    let left = uncleared_switches(&texts, &test_sh);
    assert!(left.is_empty(), "scripts/test.sh does not unset {left:?}: a stray export would turn a check off in CI");
}

#[test]
fn a_switch_the_suite_does_not_clear_is_caught() {
    // The planted name is built at run time, so that the repository scan above does not find it here.
    let planted = format!("UPDATE_{}", "GOLDEN");
    let texts = vec![format!("if std::env::var_os(\"{planted}\").is_some() {{}}"), "E2E_ONLY=x run".to_owned()];
    assert_eq!(uncleared_switches(&texts, "unset E2E_ONLY\n"), [planted.clone()]);
    assert!(uncleared_switches(&texts, &format!("unset E2E_ONLY {planted}\n")).is_empty());
    assert!(switches(&["OpenFlags::SQLITE_OPEN_READ_ONLY".to_owned()]).is_empty(), "a SQLite flag is no switch");
}
