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
