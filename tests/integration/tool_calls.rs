//! The embedded SmolLM2 under constrained decoding, on the committed tool-needing prompts
//! (`tests/evals/tools/prompts.jsonl`): every tool call it emits parses and validates against the tool's input
//! schema. Which tool it chose is the model's share, reported in `test-output/tool_calls.json`, not asserted.

use std::sync::Arc;

use keel::eval::tool_calls;
use keel::{App, GenerationSettings, OpenOptions};

use super::common::{models_dir, repo};

#[test]
fn every_tool_call_of_the_embedded_model_parses_and_validates() {
    let home = tempfile::tempdir().unwrap();
    let app = App::open(OpenOptions { home: home.path().to_owned(), models_dir: models_dir() }).unwrap();
    let model = app.local_model(&mut |_| {}).unwrap();
    let toolbox = app.toolbox();
    let prompts = tool_calls::load_prompts(&repo().join("tests/evals/tools/prompts.jsonl")).unwrap();
    assert!(prompts.len() >= 30);
    let settings = GenerationSettings { max_tokens: 160, ..Default::default() };
    let report = tool_calls::run(Arc::clone(&model).as_ref(), &toolbox, &prompts, &settings, &mut |_, _| {}).unwrap();
    let out = repo().join("test-output");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("tool_calls.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!(
        "{} prompts: {} tool calls, {} valid, right tool {}, {} answers, {} questions; p50 {} ms p95 {} ms",
        report.prompts, report.tool_calls, report.valid_tool_calls, report.right_tool, report.answers, report.asks, report.p50_ms, report.p95_ms
    );
    let broken: Vec<_> = report.results.iter().filter(|r| r.action == "invalid").collect();
    assert!(broken.is_empty(), "tool calls that broke the contract: {broken:#?}");
    assert!(report.tool_calls >= prompts.len() / 2, "the model called a tool for only {} of {} prompts", report.tool_calls, report.prompts);
}

/// Constrained decoding must never lead the model into a dead end: from every viable prefix of the real action
/// schema, some byte keeps it viable (or it is complete). Random walks over a byte alphabet that covers JSON's
/// structure, escapes, numbers and UTF-8 (every printable ASCII byte and a few UTF-8 ones) check that.
#[test]
fn the_action_constraint_has_no_dead_ends() {
    use keel::llm::constrain::{JsonConstraint, Verdict};
    use keel::orchestration::{action, RunMode};
    let home = tempfile::tempdir().unwrap();
    let app = App::open(OpenOptions { home: home.path().to_owned(), models_dir: home.path().join("models") }).unwrap();
    let specs = app.toolbox().specs();
    let alphabet: Vec<u8> = (0x20u8..0x7F).chain([b'\n', 0xC3, 0xA9, 0xE6, 0x97, 0xA5]).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for mode in [RunMode::React, RunMode::Plan] {
        for compose in [false, true] {
            let schema = action::action_schema(mode, &specs, compose);
            let c = JsonConstraint::new(&schema);
            for walk in 0..40 {
                let mut text: Vec<u8> = Vec::new();
                for _ in 0..300 {
                    if c.check(&text) == Verdict::Complete {
                        break;
                    }
                    let viable: Vec<u8> = alphabet
                        .iter()
                        .copied()
                        .filter(|b| {
                            let mut t = text.clone();
                            t.push(*b);
                            c.check(&t) != Verdict::Dead
                        })
                        .collect();
                    assert!(!viable.is_empty(), "{mode:?} walk {walk}: a dead end after {:?}", String::from_utf8_lossy(&text));
                    // Prefer structure over long strings, so that walks reach nested parts of the schema.
                    let structural: Vec<u8> = viable.iter().copied().filter(|b| b"{}[]\":,".contains(b)).collect();
                    let pool = if !structural.is_empty() && next() % 3 != 0 { &structural } else { &viable };
                    text.push(pool[(next() % pool.len() as u64) as usize]);
                }
            }
        }
    }
}
