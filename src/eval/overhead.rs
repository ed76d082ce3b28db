//! `keel bench orchestration`: the orchestrator's own cost per step, measured with the scripted backend (a model
//! that answers instantly) and a tool that returns instantly, so what is left is Keel's: committing the events,
//! folding them, assembling the context, parsing and validating the action and the tool's result, and running
//! the call on its own thread.
//!
//! A step is one model call and one tool call (six events). Each is timed in-process from one `ModelCalled` to
//! the next. Two commit modes run side by side on the same machine: Keel's (step events committed to the WAL
//! without a flush, the run's pauses and end flushed) and every event flushed (`synchronous = FULL`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::llm::scripted::{ScriptedBackend, ScriptedReply};
use crate::llm::{CancelFlag, ChatMessage, GenerationSettings, Role};
use crate::orchestration::events::RunEvent;
use crate::orchestration::recall::MemoryAccess;
use crate::orchestration::runner::{self, Services, Turn};
use crate::orchestration::{journal, lifecycle, Limits, RunMode, TurnEvent};
use crate::store::Store;
use crate::tools::faults::FnTool;
use crate::tools::{object_schema, Effect, Origin, ToolSpec, Toolbox};

#[derive(Debug, Clone, Serialize)]
pub struct ModeFigures {
    pub commit_mode: String,
    pub steps: usize,
    pub events_per_step: f64,
    pub step_p50_us: u64,
    pub step_p95_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub modes: Vec<ModeFigures>,
    /// Keel's mode's p95 over the every-event-flushed mode's p95.
    pub p95_ratio: f64,
}

fn noop_tool() -> FnTool {
    let spec = ToolSpec {
        name: "noop".into(),
        description: "Returns its input.".into(),
        input_schema: object_schema(json!({"n": {"type": "integer", "minimum": 0}}), &["n"]),
        output_schema: object_schema(json!({"n": {"type": "integer"}}), &["n"]),
        effect: Effect::Pure,
        timeout_ms: 5_000,
        idempotent: true,
        capability: None,
        origin: Origin::Keel,
    };
    FnTool::new(spec, |args, _| Ok(json!({"n": args["n"]})))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0)
}

/// Runs `runs` runs of `steps` tool steps in each commit mode, in a fresh database under `dir`.
pub fn run(dir: &Path, steps: u32, runs: u32, on_progress: &mut dyn FnMut(&str, u32, u32)) -> Result<OverheadReport, String> {
    let mut toolbox = Toolbox::new();
    toolbox.add(Arc::new(noop_tool())).map_err(|e| e.to_string())?;
    let mut modes = Vec::new();
    for (label, flush_all) in [("step events to the WAL, flushed at pauses and ends (Keel)", false), ("every event flushed (synchronous = FULL)", true)] {
        let db = dir.join(if flush_all { "full.sqlite3" } else { "keel.sqlite3" });
        let store = Store::open(&db).map_err(|e| e.to_string())?;
        store.set_fsync_every_event(flush_all);
        let mut samples = Vec::new();
        let mut events = 0usize;
        for r in 0..runs {
            let mut replies: Vec<ScriptedReply> =
                (0..steps).map(|i| ScriptedReply::Text(format!(r#"{{"tool": "noop", "arguments": {{"n": {i}}}}}"#))).collect();
            replies.push(ScriptedReply::Text(r#"{"answer": "done"}"#.into()));
            let backend = ScriptedBackend::new(replies).with_context_window(1_000_000);
            let settings = GenerationSettings::default();
            let conversation = [ChatMessage::new(Role::User, "go")];
            let limits = Limits { max_steps: steps + 2, max_tool_calls: steps + 1, max_tokens: u32::MAX, ..Limits::default() };
            let memory = MemoryAccess::Off;
            let services = Services { store: &store, backend: &backend, toolbox: &toolbox, memory: &memory, memory_port: None, screen: None };
            let input = crate::interface::accept("go", crate::interface::guard::Source::User).map_err(|e| e.to_string())?;
            let mut turn = Turn {
                conversation_id: 0,
                run_id: 0,
                input: &input,
                conversation: &conversation,
                settings: &settings,
                limits,
                mode: RunMode::React,
                auto_approve: Vec::new(),
            };
            lifecycle::begin_turn(&store, &services, None, None, &mut turn).map_err(|e| e.to_string())?;
            let run_id = turn.run_id;
            let mut last: Option<Instant> = None;
            let mut run_samples = Vec::new();
            runner::run_turn(services, turn, &CancelFlag::default(), &mut |e| {
                if let TurnEvent::Step { event } = &e {
                    if matches!(event.event, RunEvent::ModelCalled { .. }) {
                        let now = Instant::now();
                        if let Some(prev) = last {
                            run_samples.push((now - prev).as_micros() as u64);
                        }
                        last = Some(now);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
            events += journal::load(&store, run_id).map_err(|e| e.to_string())?.events.len();
            samples.extend(run_samples);
            on_progress(label, r + 1, runs);
        }
        samples.sort_unstable();
        modes.push(ModeFigures {
            commit_mode: label.into(),
            steps: samples.len(),
            events_per_step: events as f64 / (runs as f64 * (steps as f64 + 1.0)),
            step_p50_us: percentile(&samples, 0.5),
            step_p95_us: percentile(&samples, 0.95),
        });
    }
    let p95_ratio = modes[0].step_p95_us as f64 / modes[1].step_p95_us.max(1) as f64;
    Ok(OverheadReport { modes, p95_ratio })
}
