//! Keel's embedded model against llama.cpp: the tokenizer must give llama-cpp-python's ids exactly, and the
//! teacher-forced argmax must agree at ≥ 97.7% of positions. Fixtures come from
//! `tests/fixtures/smollm2/make_fixtures.py` (run by hand; never edited by hand).

use keel::llm::local::{read_header, LoadError, LocalModel};
use keel::llm::tokenizer::GgufTokenizer;
use serde::Deserialize;

use super::common::{gguf_path, repo};

#[derive(Deserialize)]
struct TokenizerFixtures {
    model_sha256: String,
    cases: Vec<TokenizerCase>,
}

#[derive(Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct TeacherForced {
    model_sha256: String,
    sequences: Vec<Sequence>,
}

#[derive(Deserialize)]
struct Sequence {
    ids: Vec<u32>,
    argmax: Vec<u32>,
    margin: Vec<f64>,
}

const PINNED_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = repo().join("tests/fixtures/smollm2").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Writes a measured figure where the test script collects them for the closing report.
fn record(name: &str, value: serde_json::Value) {
    let dir = repo().join("test-output");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&value).unwrap());
}

#[test]
fn tokenizer_gives_llama_cpp_ids_for_every_fixture() {
    let fixtures: TokenizerFixtures = fixture("tokenizer_ids.json");
    assert_eq!(fixtures.model_sha256, PINNED_SHA256);
    assert!(fixtures.cases.len() >= 100, "only {} cases", fixtures.cases.len());
    let (content, _) = read_header(&gguf_path()).unwrap();
    let tokenizer = GgufTokenizer::from_gguf(&content).unwrap();
    let mut mismatches = Vec::new();
    for case in &fixtures.cases {
        let ids = tokenizer.encode(&case.text).unwrap();
        if ids != case.ids {
            mismatches.push(format!("{:?}\n  keel:      {:?}\n  llama.cpp: {:?}", case.text, ids, case.ids));
        }
    }
    record("tokenizer", serde_json::json!({ "cases": fixtures.cases.len(), "mismatches": mismatches.len() }));
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), fixtures.cases.len(), mismatches.join("\n"));
}

#[test]
fn tokenizer_round_trips_text() {
    let (content, _) = read_header(&gguf_path()).unwrap();
    let tokenizer = GgufTokenizer::from_gguf(&content).unwrap();
    for text in ["Hello, world!", "  leading spaces", "naïve café 北京 👩‍👩‍👧", "fn main() {\n\tprintln!(\"{}\", 42);\n}"] {
        assert_eq!(tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(), text);
    }
}

#[test]
fn teacher_forced_argmax_agrees_with_llama_cpp() {
    let fixtures: TeacherForced = fixture("teacher_forced.json");
    assert_eq!(fixtures.model_sha256, PINNED_SHA256);
    let model = LocalModel::load(&gguf_path(), &mut |_, _| {}).unwrap();
    let (mut agree, mut total, mut clear_agree, mut clear_total) = (0usize, 0usize, 0usize, 0usize);
    for seq in &fixtures.sequences {
        let ours = model.teacher_forced_argmax(&seq.ids).unwrap();
        assert_eq!(ours.len(), seq.argmax.len());
        for ((a, b), margin) in ours.iter().zip(&seq.argmax).zip(&seq.margin) {
            total += 1;
            agree += (a == b) as usize;
            // Positions where the reference's top two logits are nearly tied can flip on rounding alone.
            if *margin > 0.1 {
                clear_total += 1;
                clear_agree += (a == b) as usize;
            }
        }
    }
    let rate = agree as f64 / total as f64;
    record(
        "teacher_forced",
        serde_json::json!({ "positions": total, "agree": agree, "rate": rate,
            "clear_positions": clear_total, "clear_agree": clear_agree }),
    );
    eprintln!("teacher-forced argmax agreement: {agree}/{total} = {:.2}%", rate * 100.0);
    assert!(total >= 600, "only {total} positions");
    assert!(rate >= 0.977, "argmax agrees at {agree} of {total} positions ({:.2}%), below 97.7%", rate * 100.0);
}

#[test]
fn a_truncated_gguf_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf_path()).unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = LocalModel::load(&path, &mut |_, _| {}).err().expect("a truncated file must not load");
    assert!(matches!(err, LoadError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("cut.gguf") && err.to_string().contains("truncated"), "{err}");

    // Cut inside the metadata: not even the header can be read.
    std::fs::write(&path, &bytes[..4096]).unwrap();
    let err = LocalModel::load(&path, &mut |_, _| {}).err().unwrap();
    assert!(matches!(err, LoadError::NotGguf { .. }), "{err}");

    std::fs::write(&path, b"this is not a model").unwrap();
    let err = LocalModel::load(&path, &mut |_, _| {}).err().unwrap();
    assert!(matches!(err, LoadError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF"), "{err}");
}

#[test]
fn loading_reports_progress_to_the_end() {
    let mut last = (0, 0);
    let mut calls = 0;
    LocalModel::load(&gguf_path(), &mut |d, t| {
        assert!(d <= t);
        calls += 1;
        last = (d, t);
    })
    .unwrap();
    assert!(calls > 10, "only {calls} progress reports");
    assert_eq!(last.0, last.1);
}
