//! Power loss: Keel's durability contract (ARCHITECTURE.md, "Durability") checked by simulated power cuts.
//!
//! Each cut runs one mixed workload in a fresh data dir, in this process, on SQLite through the power-cut VFS
//! (`power_loss/vfs.rs`): memory edits (add, edit, pin, delete), a ReAct run that calculates, appends a line to
//! a ledger outside Keel (a write that is not safe to repeat) and saves a memory, a document import, and a
//! second run. The power goes at the n-th write, truncate or sync of Keel's SQLite files, n drawn from the seed
//! over the operations an uncut workload makes (a tenth of the draws fall after its end); the writes not yet
//! synced are then kept, lost, torn or trashed. Keel opens the data dir again, and the oracles check:
//! - the database is not corrupt (`PRAGMA integrity_check`), and Keel opens it;
//! - every event the run reported is in the log, as reported, up to the last durable commit (a durable event,
//!   or any later durable write); past that the log is a prefix of what was reported, plus at most the one
//!   event whose commit the cut interrupted;
//! - a memory edit that returned is there; the one the cut interrupted is there whole or not at all;
//! - an import that returned is there; no document is half there or there twice;
//! - the ledger holds a line only if the log holds the call that wrote it (the call is durable before the
//!   tool runs), and after the restart each run ends with the uncut run's answer, with the ledger line written
//!   once, or twice only when the user approved repeating a call whose outcome was unknown;
//! - every live memory item is found by BM25 and by vector search after the restart.
//!
//! `KEEL_POWER_CUTS` (default 60) and `KEEL_POWER_SEED` are set by `scripts/power_cuts.sh`, which runs any
//! number and reproduces one (`--seed S --cuts 1`); the suite's script clears them.

mod vfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::llm::scripted::{ScriptRule, ScriptedBackend};
use keel::llm::GenerationSettings;
use keel::orchestration::events::{RunEvent, RunStatus, UserAnswer};
use keel::orchestration::{Limits, RunMode, TurnEvent};
use keel::tools::faults::FnTool;
use keel::tools::{object_schema, Effect, Origin, ToolSpec};
use keel::{App, MemoryKind, OpenOptions, RunOptions};
use serde_json::{json, Value};

use vfs::Rng;

const RUN_A: &str = "Work out the power question, log it and remember it";
const RUN_B: &str = "Work out the second power question";
const SAVED: &str = "The power question's answer is 42";
const FACT: &str = "Ada's boat is called Kestrel";
const FACT_EDITED: &str = "Ada's boat is called Osprey";
const NOTE: &str = "A note about the harbour crane, soon deleted";

fn rules() -> Vec<ScriptRule> {
    let rule = |when: &str, reply: Value| ScriptRule { when: when.into(), reply: reply.to_string(), delay_ms: 0 };
    vec![
        rule(RUN_A, json!({"tool": "calculator", "arguments": {"expression": "6*7"}})),
        rule("\"result\":\"42\"", json!({"tool": "ledger_append", "arguments": {"q": "run-a"}})),
        rule("tool=\"ledger_append\" status=\"ok\"", json!({"tool": "memory_save", "arguments": {"text": SAVED}})),
        rule("tool=\"memory_save\" status=\"ok\"", json!({"answer": "Done: 42, logged and remembered."})),
        rule(RUN_B, json!({"tool": "calculator", "arguments": {"expression": "17+26"}})),
        rule("\"result\":\"43\"", json!({"answer": "17 + 26 = 43."})),
    ]
}

/// A tool with an effect in the world that is not safe to repeat: it appends `q` to a ledger file.
fn ledger_tool(ledger: PathBuf) -> FnTool {
    let spec = ToolSpec {
        name: "ledger_append".into(),
        description: "appends a line to the ledger".into(),
        input_schema: object_schema(json!({"q": {"type": "string"}}), &["q"]),
        output_schema: object_schema(json!({"value": {"type": "string"}}), &["value"]),
        effect: Effect::Write,
        timeout_ms: 10_000,
        idempotent: false,
        capability: None,
        origin: Origin::Keel,
    };
    FnTool::new(spec, move |args, _| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&ledger).unwrap();
        writeln!(f, "{}", args["q"].as_str().unwrap_or_default()).unwrap();
        f.sync_all().unwrap();
        Ok(json!({"value": "logged"}))
    })
}

struct World {
    home: PathBuf,
    docs: Vec<PathBuf>,
    probes: Vec<String>,
    ledger: PathBuf,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let mut docs = Vec::new();
    let mut probes = Vec::new();
    for d in 0..2 {
        let text = (0..4)
            .map(|p| format!("Tide table {d} line {p} records the spring tide at the north quay in month {p}. {}", "The harbour master wrote the heights and the hours in the book by the door. ".repeat(3)))
            .collect::<Vec<_>>()
            .join("\n\n");
        let path = dir.path().join("docs").join(format!("tides-{d}.md"));
        std::fs::write(&path, text).unwrap();
        docs.push(path);
        probes.push(format!("Tide table {d} line 2 records the spring tide at the north quay in month 2."));
    }
    World { ledger: dir.path().join("ledger.txt"), home, docs, probes, _dir: dir }
}

fn open_app(w: &World) -> Result<App, String> {
    let options = OpenOptions { home: w.home.clone(), models_dir: crate::common::models_dir() };
    let app = App::open_with_backend(options, Arc::new(ScriptedBackend::with_rules(rules()))).map_err(|e| format!("open: {e}"))?;
    app.add_tool(Arc::new(ledger_tool(w.ledger.clone()))).map_err(|e| format!("add tool: {e}"))?;
    Ok(app)
}

fn run_options() -> RunOptions {
    RunOptions {
        mode: Some(RunMode::React),
        limits: Limits::default(),
        auto_approve: vec!["ledger_append".into(), "memory_save".into()],
        backend: None,
    }
}

/// The contract's durable events: committed with a flush before anyone hears of them.
fn durable(event: &RunEvent) -> bool {
    match event {
        RunEvent::RunFinished { .. }
        | RunEvent::ApprovalRequested { .. }
        | RunEvent::UserAsked { .. }
        | RunEvent::RunInterrupted { .. }
        | RunEvent::UserAnswered { .. }
        | RunEvent::RunResumed { .. } => true,
        RunEvent::ToolCalled { effect, idempotent, .. } => effect.has_side_effects() && !idempotent,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum MemOp {
    Add(&'static str),
    Edit(usize, &'static str),
    Pin(usize),
    Delete(usize),
}

/// (text, pinned, deleted) of the items the workload added, in the order added.
type MemState = Vec<(String, bool, bool)>;

fn apply(state: &MemState, op: &MemOp) -> MemState {
    let mut s = state.clone();
    match op {
        MemOp::Add(t) => s.push(((*t).into(), false, false)),
        MemOp::Edit(i, t) => s[*i].0 = (*t).into(),
        MemOp::Pin(i) => s[*i].1 = true,
        MemOp::Delete(i) => s[*i].2 = true,
    }
    s
}

/// What the workload was told, in order.
#[derive(Default)]
struct Recorder {
    /// Per run: its events as reported, and how many of them a durable commit since covers.
    runs: HashMap<i64, (Vec<Value>, usize)>,
    run_inputs: HashMap<i64, &'static str>,
    memory: MemState,
    ids: Vec<i64>,
    in_flight: Option<MemOp>,
    imported: bool,
    /// The step in progress (or `STEPS` when all are done).
    step: usize,
    /// Which part of the workload the cut landed in.
    phase: &'static str,
}

impl Recorder {
    /// A durable commit: everything reported before it is durable too (the flush covers the whole WAL).
    fn durable_commit(&mut self) {
        for (events, required) in self.runs.values_mut() {
            *required = events.len();
        }
    }

    fn on_event(&mut self, input: &'static str, e: TurnEvent) {
        match e {
            TurnEvent::Started { run_id, .. } => {
                self.runs.entry(run_id).or_default();
                self.run_inputs.insert(run_id, input);
                // The run and the user's message commit durably.
                self.durable_commit();
            }
            TurnEvent::Step { event } => {
                let is_durable = durable(&event.event);
                // As the store writes it (through the text: `to_value` would widen an f32 differently).
                let value = serde_json::from_str(&serde_json::to_string(&event.event).unwrap()).unwrap();
                self.runs.entry(event.run_id).or_default().0.push(value);
                if is_durable {
                    self.durable_commit();
                }
            }
            _ => {}
        }
    }

    fn memory_op(&mut self, app: &App, op: MemOp) -> Result<(), String> {
        self.in_flight = Some(op.clone());
        let item = match &op {
            MemOp::Add(t) => app.add_memory(MemoryKind::Fact, t, "user"),
            MemOp::Edit(i, t) => app.edit_memory(self.ids[*i], t),
            MemOp::Pin(i) => app.pin_memory(self.ids[*i], true),
            MemOp::Delete(i) => app.delete_memory(self.ids[*i]),
        }
        .map_err(|e| format!("{op:?}: {e}"))?;
        if matches!(op, MemOp::Add(_)) {
            self.ids.push(item.id);
        }
        self.memory = apply(&self.memory, &op);
        self.in_flight = None;
        self.durable_commit();
        Ok(())
    }

    fn run(&mut self, app: &App, input: &'static str) -> Result<(), String> {
        app.send_message(None, input, &GenerationSettings::default(), &run_options(), &mut |e| self.on_event(input, e))
            .map_err(|e| format!("run {input:?}: {e}"))?;
        Ok(())
    }
}

/// The workload's steps, after opening the data dir.
const STEPS: usize = 8;

fn phase(step: usize) -> &'static str {
    match step {
        1 => "run A",
        3 => "import",
        7 => "run B",
        STEPS => "after the workload",
        _ => "memory edits",
    }
}

fn step(app: &App, w: &World, rec: &mut Recorder, i: usize) -> Result<(), String> {
    match i {
        0 => rec.memory_op(app, MemOp::Add(FACT)),
        1 => rec.run(app, RUN_A),
        2 => rec.memory_op(app, MemOp::Edit(0, FACT_EDITED)),
        3 => {
            let report = app.import_documents(&w.docs, &mut |_| {}).map_err(|e| format!("import: {e}"))?;
            if !report.errors.is_empty() {
                return Err(format!("import: {:?}", report.errors));
            }
            rec.imported = true;
            rec.durable_commit();
            Ok(())
        }
        4 => rec.memory_op(app, MemOp::Add(NOTE)),
        5 => rec.memory_op(app, MemOp::Pin(0)),
        6 => rec.memory_op(app, MemOp::Delete(1)),
        7 => rec.run(app, RUN_B),
        _ => unreachable!(),
    }
}

/// The workload; stops at the first error (the power cut, the full disk).
fn workload(w: &World, rec: &mut Recorder) -> Result<(), String> {
    rec.phase = "opening";
    let app = open_app(w)?;
    for i in 0..STEPS {
        rec.step = i;
        rec.phase = phase(i);
        step(&app, w, rec, i)?;
    }
    rec.step = STEPS;
    rec.phase = phase(STEPS);
    Ok(())
}

/// The uncut workload's answers by input, and how many operations it made.
struct Reference {
    answers: HashMap<&'static str, String>,
    operations: u64,
}

fn reference() -> Reference {
    vfs::install();
    let w = world();
    vfs::arm(&w.home, None);
    let mut rec = Recorder::default();
    workload(&w, &mut rec).expect("the uncut workload runs");
    let operations = vfs::operations();
    vfs::disarm();
    let app = open_app(&w).unwrap();
    let mut answers = HashMap::new();
    for (run, input) in &rec.run_inputs {
        let detail = app.get_run(*run).unwrap();
        assert_eq!(detail.run.status, RunStatus::Answered, "{input}");
        answers.insert(*input, detail.events.iter().find_map(|e| match &e.event {
            RunEvent::RunFinished { answer, .. } => answer.clone(),
            _ => None,
        }).unwrap());
    }
    assert_eq!(answers.len(), 2);
    assert_eq!(std::fs::read_to_string(&w.ledger).unwrap(), "run-a\n");
    Reference { answers, operations }
}

fn raw_logs(db: &rusqlite::Connection) -> Vec<(i64, String, Vec<Value>)> {
    let mut runs = db.prepare("SELECT id, input FROM runs ORDER BY id").unwrap();
    let runs: Vec<(i64, String)> = runs.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    runs.into_iter()
        .map(|(id, input)| {
            let mut q = db.prepare("SELECT seq, payload FROM run_events WHERE run_id = ?1 ORDER BY seq").unwrap();
            let events: Vec<(u32, String)> = q.query_map([id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
            for (i, (seq, _)) in events.iter().enumerate() {
                assert_eq!(*seq as usize, i + 1, "run {id}: the log has a gap");
            }
            (id, input, events.into_iter().map(|(_, p)| serde_json::from_str(&p).unwrap()).collect())
        })
        .collect()
}

fn tool_called(log: &[Value], tool: &str) -> usize {
    log.iter().filter(|e| e["kind"] == "ToolCalled" && e["tool"] == tool).count()
}

#[derive(Default)]
struct Tally {
    cuts: u32,
    by_phase: HashMap<&'static str, u32>,
    resumed: u32,
    asked: u32,
    kept: u32,
    lost: u32,
    torn: u32,
    trashed: u32,
}

/// Continues every run a stopped Keel left: an interrupted one resumes; one that waits to repeat a
/// `ledger_append` whose outcome is unknown is approved. Each must end with the uncut run's answer. Returns
/// whether a repeat was approved.
fn resume_all(app: &App, logs: &[(i64, String, Vec<Value>)], reference: &Reference, tally: &mut Tally) -> Result<bool, String> {
    let mut approved = false;
    for (run, input, log) in logs {
        let detail = app.get_run(*run).map_err(|e| e.to_string())?;
        let result = match detail.run.status {
            RunStatus::Answered => None,
            RunStatus::Interrupted => {
                if tool_called(log, "ledger_append") > log.iter().filter(|e| e["kind"] == "ToolReturned" && e["tool"] == "ledger_append").count() {
                    return Err(format!("run {run}: ledger_append was in flight, yet the run would resume without asking"));
                }
                tally.resumed += 1;
                Some(app.resume_run(*run, &GenerationSettings::default(), &mut |_| {}))
            }
            RunStatus::AwaitingUser => {
                let call_id = detail.events.iter().rev().find_map(|e| match &e.event {
                    RunEvent::ApprovalRequested { call_id, tool, .. } if tool == "ledger_append" => Some(call_id.clone()),
                    _ => None,
                });
                let unknown = detail.events.iter().any(|e| matches!(&e.event, RunEvent::OutcomeUnknown { tool, .. } if tool == "ledger_append"));
                let (Some(call_id), true) = (call_id, unknown) else {
                    return Err(format!("run {run} waits for the user, but not about a ledger_append whose outcome is unknown"));
                };
                tally.asked += 1;
                approved = true;
                Some(app.answer_run(*run, UserAnswer::Approve { call_id }, &GenerationSettings::default(), &mut |_| {}))
            }
            other => return Err(format!("run {run} was left {other:?}")),
        };
        if let Some(result) = result {
            let result = result.map_err(|e| format!("run {run} does not go on: {e}"))?;
            let expected = reference.answers.get(input.as_str()).ok_or_else(|| format!("unknown run input {input:?}"))?;
            if &result.answer != expected {
                return Err(format!("run {run} answered {:?}, not {expected:?}", result.answer));
            }
        }
    }
    Ok(approved)
}

/// One power cut and its oracles.
fn cut(seed: u64, reference: &Reference, tally: &mut Tally) -> Result<String, String> {
    let mut rng = Rng(seed | 1);
    let cut_at = 1 + rng.below(reference.operations + reference.operations / 10);
    let point = format!("operation {cut_at} of {}", reference.operations);
    let w = world();
    vfs::arm(&w.home, Some(cut_at));
    let mut rec = Recorder::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| workload(&w, &mut rec)));
    if outcome.is_err() {
        return Err(format!("{point}: Keel panicked on the I/O errors of a power cut (in {})", rec.phase));
    }
    // (A workload can also end well after the cut, when only a checkpoint failed after the last commit: the
    // oracles below judge what it was told.)
    if let (Ok(Err(e)), false) = (&outcome, vfs::cut_happened()) {
        return Err(format!("{point}: the workload failed without a power cut: {e}"));
    }
    // The App is gone; a thread it left behind may still be closing its connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        match vfs::power_off(rng.next()) {
            Ok(r) => break r,
            Err(e) if Instant::now() > deadline => return Err(format!("{point}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    tally.cuts += 1;
    *tally.by_phase.entry(rec.phase).or_default() += 1;
    tally.kept += report.kept;
    tally.lost += report.lost;
    tally.torn += report.torn;
    tally.trashed += report.trashed;
    let point = format!("{point} ({}; {} writes kept, {} lost, {} torn, {} trashed)", rec.phase, report.kept, report.lost, report.torn, report.trashed);

    // Oracle: the database is whole.
    let db_path = w.home.join("keel.sqlite3");
    let logs = if db_path.exists() {
        let db = rusqlite::Connection::open(&db_path).map_err(|e| format!("{point}: {e}"))?;
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| format!("{point}: integrity_check: {e}"))?;
        if check != "ok" {
            return Err(format!("{point}: the database is corrupt: {check}"));
        }
        let tables: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'run_events'", [], |r| r.get(0)).unwrap();
        if tables == 1 { raw_logs(&db) } else { Vec::new() }
    } else {
        Vec::new()
    };

    // Oracle: the logs against what was reported.
    let in_db: HashMap<i64, &Vec<Value>> = logs.iter().map(|(id, _, log)| (*id, log)).collect();
    for (run, (reported, required)) in &rec.runs {
        let Some(log) = in_db.get(run) else {
            return Err(format!("{point}: run {run} was reported started but is not in the database"));
        };
        if log.len() < *required {
            return Err(format!("{point}: run {run} lost durable events: {} in the log, {required} were durable", log.len()));
        }
        if log.len() > reported.len() + 1 {
            return Err(format!("{point}: run {run} has {} events, {} were reported", log.len(), reported.len()));
        }
        if let Some(i) = (0..log.len().min(reported.len())).find(|&i| log[i] != reported[i]) {
            return Err(format!("{point}: run {run} event {} differs from what was reported: {} vs {}", i + 1, log[i], reported[i]));
        }
    }
    for (run, _, log) in &logs {
        if !rec.runs.contains_key(run) && !log.is_empty() {
            return Err(format!("{point}: run {run} was never reported started, yet has {} events", log.len()));
        }
    }
    // Oracle: a line in the ledger means the call that wrote it is in the log.
    let ledger_lines = || std::fs::read_to_string(&w.ledger).unwrap_or_default().lines().count();
    let lines_at_cut = ledger_lines();
    let run_a = logs.iter().find(|(_, input, _)| input == RUN_A);
    if lines_at_cut > 0 && run_a.is_none_or(|(_, _, log)| tool_called(log, "ledger_append") == 0) {
        return Err(format!("{point}: the ledger was written, but the call that wrote it is not in the log"));
    }

    // Oracle: memory edits and imports.
    if db_path.exists() {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        let has_memory: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'memory_items'", [], |r| r.get(0)).unwrap();
        let mut state: MemState = Vec::new();
        if has_memory == 1 {
            let mut q = db
                .prepare("SELECT text, pinned, deleted_ms IS NOT NULL FROM memory_items WHERE source = 'user' AND kind = 'fact' ORDER BY id")
                .unwrap();
            state = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
            let docs = crate::torture::documents_state(&w.home);
            if (docs.1, docs.2, docs.3) != (0, 0, 0) {
                return Err(format!("{point}: documents (all, duplicated, partial, duplicated chunks) = {docs:?}"));
            }
            if rec.imported && docs.0 != 2 {
                return Err(format!("{point}: the import returned, yet {} of 2 documents are there", docs.0));
            }
        }
        let allowed = [Some(rec.memory.clone()), rec.in_flight.as_ref().map(|op| apply(&rec.memory, op))];
        if !allowed.iter().flatten().any(|s| *s == state) {
            return Err(format!("{point}: memory is {state:?}; acknowledged {:?}, in flight {:?}", rec.memory, rec.in_flight));
        }
    }

    // Restart: Keel opens the data dir, and each run it left goes on to the uncut run's answer.
    let app = open_app(&w).map_err(|e| format!("{point}: Keel does not open the data dir after the cut: {e}"))?;
    let approved = resume_all(&app, &logs, reference, tally).map_err(|e| format!("{point}: {e}"))?;
    let run_a_done = logs.iter().any(|(_, input, _)| input == RUN_A);
    world_checks(&app, &w, lines_at_cut, run_a_done, approved).map_err(|e| format!("{point}: {e}"))?;
    Ok(point)
}

/// After the restart: the ledger line written once (twice only when a repeat was approved after an unknown
/// outcome), the memory saved once when run A finished, and every live memory item found by both searches.
fn world_checks(app: &App, w: &World, lines_at_cut: usize, run_a_done: bool, approved: bool) -> Result<(), String> {
    let lines = std::fs::read_to_string(&w.ledger).unwrap_or_default().lines().count();
    match (lines, run_a_done, approved) {
        (0, false, _) | (1, true, _) => {}
        (2, true, true) if lines_at_cut >= 1 => {}
        _ => return Err(format!("the ledger has {lines} lines (run A in the log: {run_a_done}, repeat approved: {approved})")),
    }
    // memory_save is idempotent: saved once when run A finished, never twice.
    let db = rusqlite::Connection::open(w.home.join("keel.sqlite3")).unwrap();
    let saved: i64 = db.query_row("SELECT count(*) FROM memory_items WHERE text = ?1 AND deleted_ms IS NULL", [SAVED], |r| r.get(0)).unwrap();
    if saved != run_a_done as i64 {
        return Err(format!("the memory was saved {saved} times (run A in the log: {run_a_done})"));
    }

    // Oracle: every live memory item is found by both searches after the restart.
    let mut q = db.prepare("SELECT id, text FROM memory_items WHERE deleted_ms IS NULL AND kind != 'document_chunk' ORDER BY id").unwrap();
    let mut items: Vec<(i64, String)> = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let docs: i64 = db.query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    for probe in w.probes.iter().take(docs as usize) {
        let id: i64 = db.query_row("SELECT id FROM memory_items WHERE instr(text, ?1) > 0", [probe], |r| r.get(0)).unwrap();
        items.push((id, probe.clone()));
    }
    for (id, text) in items {
        let found = app.search_memory(&text, 5).map_err(|e| format!("search: {e}"))?;
        let hit = found.candidates.iter().find(|c| c.item.id == id);
        // An item searched by its own text has a vector of the current model when its cosine is 1; a probe
        // sentence is one part of its chunk.
        let whole = hit.is_some_and(|h| h.item.text == text);
        if !hit.is_some_and(|h| h.bm25_rank.is_some() && h.vector_rank.is_some() && (!whole || h.cosine > 0.99)) {
            return Err(format!("memory item {id} ({text:?}) is not found by both searches after the restart"));
        }
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// Runs `n` seeded trials, printing each; trial 0 uses `base` itself, so that `scripts/power_cuts.sh --seed S
/// --cuts 1` replays a printed one. Returns the failures.
fn trials(label: &str, n: u64, base: u64, mut trial: impl FnMut(u64) -> Result<String, String>) -> Vec<String> {
    let mut failures = Vec::new();
    for i in 0..n {
        let seed = if i == 0 { base } else { Rng(base ^ i.wrapping_mul(0xA24B_AED4_963E_E407)).next() };
        match trial(seed) {
            Ok(point) => println!("{label} {i}: seed {seed:#x} {point}: ok"),
            Err(e) => {
                println!("{label} {i}: seed {seed:#x} VIOLATION {e}");
                failures.push(format!("seed {seed:#x}: {e}"));
            }
        }
    }
    failures
}

#[test]
fn power_cuts_during_runs_imports_and_memory_edits_keep_the_durability_contract() {
    let cuts = env_u64("KEEL_POWER_CUTS", 60);
    let base = env_u64("KEEL_POWER_SEED", 0x9077_2026);
    let reference = reference();
    let mut tally = Tally::default();
    let started = Instant::now();
    let failures = trials("cut", cuts, base, |seed| cut(seed, &reference, &mut tally));
    let mut phases: Vec<_> = tally.by_phase.iter().collect();
    phases.sort();
    println!(
        "{} power cuts in {:.0?} over {} operations: {phases:?}; after the cut {} runs resumed, {} asked; unsynced writes {} kept, {} lost, {} torn, {} trashed",
        tally.cuts, started.elapsed(), reference.operations, tally.resumed, tally.asked, tally.kept, tally.lost, tally.torn, tally.trashed
    );
    assert!(failures.is_empty(), "{} of {cuts} power cuts broke the contract:\n{}", failures.len(), failures.join("\n"));
    // The cuts reached the work: writes were lost or torn, and cuts landed in runs, imports and memory edits.
    if cuts >= 40 {
        assert!(tally.lost + tally.torn + tally.trashed > 0, "no unsynced write was ever lost");
        for phase in ["run A", "import", "memory edits"] {
            assert!(tally.by_phase.get(phase).is_some_and(|n| *n > 0), "no cut landed in {phase}");
        }
    }
}

/// The VFS's rewind is what the oracles rely on: an unsynced commit is lost when its writes are, and a synced
/// one never is.
#[test]
fn the_power_cut_vfs_loses_unsynced_commits_and_keeps_synced_ones() {
    vfs::install();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite3");
    // Seeds until one loses the unsynced row: each write is lost with some chance, so some seed does.
    let mut lost_seen = false;
    for seed in 1..40u64 {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir.path().join("t.sqlite3-wal"));
        vfs::arm(dir.path(), None);
        {
            let db = rusqlite::Connection::open(&path).unwrap();
            db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (x TEXT);").unwrap();
            db.execute("INSERT INTO t VALUES ('synced')", []).unwrap();
            db.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0").unwrap();
            db.execute("INSERT INTO t VALUES ('unsynced')", []).unwrap();
            // Closing would checkpoint (and sync) the WAL: the power goes first.
            let before = vfs::operations();
            vfs::arm_cut_now();
            assert_eq!(before, vfs::operations());
        }
        vfs::power_off(seed).unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(db.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(), "ok");
        let rows: Vec<String> = db.prepare("SELECT x FROM t").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows[0], "synced", "seed {seed}: a synced commit was lost");
        lost_seen |= rows.len() == 1;
    }
    assert!(lost_seen, "no seed lost the unsynced commit: the VFS rewinds nothing");
}

fn memory_state(w: &World) -> (MemState, Vec<i64>) {
    let db = rusqlite::Connection::open(w.home.join("keel.sqlite3")).unwrap();
    let mut q = db.prepare("SELECT id, text, pinned, deleted_ms IS NOT NULL FROM memory_items WHERE source = 'user' AND kind = 'fact' ORDER BY id").unwrap();
    let rows: Vec<(i64, String, bool, bool)> = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    (rows.iter().map(|(_, t, p, d)| (t.clone(), *p, *d)).collect(), rows.iter().map(|r| r.0).collect())
}

/// A disk that fails from a drawn operation on, without losing power: full (`SQLITE_FULL` on every write) or
/// broken (`SQLITE_IOERR` on every write and sync). The work stops with an error that names the problem,
/// nothing it had been told was committed is lost, and once the disk works again Keel, reopened, completes the
/// workload to the uncut one's end state.
fn disk_fault(seed: u64, reference: &Reference, tally: &mut Tally) -> Result<String, String> {
    let mut rng = Rng(seed | 1);
    let at = 1 + rng.below(reference.operations);
    let full = rng.below(2) == 0;
    let w = world();
    vfs::arm(&w.home, None);
    vfs::fail_from(at, if full { rusqlite::ffi::SQLITE_FULL } else { rusqlite::ffi::SQLITE_IOERR });
    let mut rec = Recorder::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| workload(&w, &mut rec)));
    let failed = vfs::failed();
    // Space is back (the fault is gone).
    vfs::disarm();
    let point = format!("{} from operation {at} of {} ({})", if full { "a full disk" } else { "I/O errors" }, reference.operations, rec.phase);
    let Ok(outcome) = outcome else { return Err(format!("{point}: Keel panicked on the errors")) };
    if let Err(e) = &outcome {
        if failed == 0 {
            return Err(format!("{point}: the workload failed, but not from the fault: {e}"));
        }
        // Oracle: the error names the problem (a full disk, or the file the I/O failed on).
        let named = e.contains("keel.sqlite3") && if full { e.contains(" is full") } else { e.contains("(an I/O error)") };
        if !named {
            return Err(format!("{point}: the error does not name the problem: {e}"));
        }
    }
    *tally.by_phase.entry(rec.phase).or_default() += 1;
    tally.cuts += 1;
    let point = match &outcome {
        Err(e) => format!("{point}, stopped with: {}", e.chars().take(160).collect::<String>()),
        Ok(()) => format!("{point}, finished ({failed} operations failed)"),
    };
    if !w.home.join("keel.sqlite3").exists() {
        return Err(format!("{point}: the database is gone"));
    }
    let db = rusqlite::Connection::open(w.home.join("keel.sqlite3")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if check != "ok" {
        return Err(format!("{point}: the database is corrupt: {check}"));
    }
    let tables: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('run_events', 'memory_items')", [], |r| r.get(0)).unwrap();
    let logs = if tables == 2 { raw_logs(&db) } else { Vec::new() };
    // Oracle: with the power on, every event reported is in the log, as reported.
    for (run, (reported, _)) in &rec.runs {
        let log = logs.iter().find(|(id, _, _)| id == run).map(|(_, _, l)| l.clone()).unwrap_or_default();
        if log.len() < reported.len() || log.len() > reported.len() + 1 || log[..reported.len()] != reported[..] {
            return Err(format!("{point}: run {run} has {} events in the log, {} reported, or they differ", log.len(), reported.len()));
        }
    }
    let (now, ids) = if tables == 2 { memory_state(&w) } else { Default::default() };
    let with_in_flight = rec.in_flight.as_ref().map(|op| apply(&rec.memory, op));
    if now != rec.memory && Some(&now) != with_in_flight.as_ref() {
        return Err(format!("{point}: memory is {now:?}; acknowledged {:?}, in flight {:?}", rec.memory, rec.in_flight));
    }

    let lines_at_fault = std::fs::read_to_string(&w.ledger).unwrap_or_default().lines().count();
    // The disk works again: Keel reopens, goes on with each run it left, and completes the workload.
    let app = open_app(&w).map_err(|e| format!("{point}: Keel does not open the data dir once the disk works: {e}"))?;
    let approved = resume_all(&app, &logs, reference, tally).map_err(|e| format!("{point}: {e}"))?;
    for i in rec.step..STEPS {
        let started = |input: &str| rec.run_inputs.values().any(|x| *x == input);
        match i {
            1 if started(RUN_A) => {}
            7 if started(RUN_B) => {}
            _ if i == rec.step && rec.in_flight.is_some() && Some(&now) == with_in_flight.as_ref() => {
                // The edit the fault interrupted was committed after all.
                rec.memory = now.clone();
                rec.ids = ids.clone();
                rec.in_flight = None;
            }
            _ => step(&app, &w, &mut rec, i).map_err(|e| format!("{point}: step {i} ({}) after the fault: {e}", phase(i)))?,
        }
    }
    let (end, _) = memory_state(&w);
    let expected = [MemOp::Add(FACT), MemOp::Edit(0, FACT_EDITED), MemOp::Add(NOTE), MemOp::Pin(0), MemOp::Delete(1)]
        .iter()
        .fold(MemState::new(), |s, op| apply(&s, op));
    if end != expected {
        return Err(format!("{point}: memory ends as {end:?}, not {expected:?}"));
    }
    if crate::torture::documents_state(&w.home) != (2, 0, 0, 0) {
        return Err(format!("{point}: documents end as {:?}", crate::torture::documents_state(&w.home)));
    }
    let runs = app.list_runs(10).map_err(|e| e.to_string())?;
    if runs.len() != 2 || runs.iter().any(|r| r.status != RunStatus::Answered) {
        return Err(format!("{point}: the runs end as {:?}", runs.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>()));
    }
    world_checks(&app, &w, lines_at_fault, true, approved).map_err(|e| format!("{point}: {e}"))?;
    Ok(point)
}

#[test]
fn a_full_disk_or_io_errors_mid_work_are_named_lose_nothing_and_the_work_completes_after() {
    let faults = env_u64("KEEL_POWER_CUTS", 60).div_ceil(2);
    let base = env_u64("KEEL_POWER_SEED", 0x9077_2026);
    let reference = reference();
    let mut tally = Tally::default();
    let failures = trials("fault", faults, base, |seed| disk_fault(seed, &reference, &mut tally));
    let mut phases: Vec<_> = tally.by_phase.iter().collect();
    phases.sort();
    println!("{} disk faults: {phases:?}; afterwards {} runs resumed, {} asked", tally.cuts, tally.resumed, tally.asked);
    assert!(failures.is_empty(), "{} of {faults} disk faults broke the contract:\n{}", failures.len(), failures.join("\n"));
    if faults >= 20 {
        for phase in ["run A", "import", "memory edits"] {
            assert!(tally.by_phase.get(phase).is_some_and(|n| *n > 0), "no fault landed in {phase}");
        }
    }
}
