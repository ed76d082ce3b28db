//! The CLI's JSON contract: every `keel … --json` output keeps every field it had before issue 15's
//! restructuring, with the same type, at the same place. Fields may be added; none may be lost or change type.
//!
//! The scenario (`tests/fixtures/cli_contract/scenario.json`) runs each command against one data dir, with the
//! scripted backend playing the model for runs (offline, deterministic) and the real model files for the
//! embedder, evaluations and benchmarks. Each output's shape (its structure without values: object keys and
//! value types, array elements merged) is compared with the shape the pre-change binary gave for the same
//! scenario, recorded in `tests/fixtures/cli_json_shapes.json` by `scripts/cli_json_shapes.py` (run it on the
//! reference binary; never edit the fixture). A `null` is where an optional field is absent, which can depend on
//! the machine (a keyring, a terminal), so `null` is compatible with any type.
//!
//! Covered (with `--json`, plus `keel guard`'s JSON lines): ask (answered, waiting, failed); runs list, show,
//! replay, resume (one, --all), answer, fork; conversations list, show; tools list, call; memory add, list,
//! search, show, edit, pin, rm, restore, episodes, import, export, reindex; backends add, list, test, default,
//! rm; models fetch, verify, list, installed, add, use, rm; eval intent, guard, tools; bench orchestration,
//! memory, retrieval, decode; guard; and the error document of a failed command.
//!
//! Left out, each with why, in [`LEFT_OUT`]; the test fails if a command with `--json` is neither covered nor
//! listed there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::common::{models_dir, repo, stderr, stdout};

/// Commands with `--json` that the scenario does not run, and why that loses no coverage.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "models download",
        "needs an HTTP server; its document is the `ModelInfo` of `models add`, printed by the same `Shown::json_only`",
    ),
    (
        "bench remote",
        "needs an OpenAI-compatible server and the `openai` Python client; its report goes through the same \
         `output::emit` as every other benchmark's",
    ),
];

const GGUF: &str = "smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/cli_contract")
}

// ---- shapes ----

/// The shape of a JSON value: its structure without the values (see `scripts/cli_json_shapes.py`).
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => json!({"null": true}),
        Value::Bool(_) => json!({"bool": true}),
        Value::Number(n) if n.is_f64() => json!({"float": true}),
        Value::Number(_) => json!({"integer": true}),
        Value::String(_) => json!({"string": true}),
        Value::Array(items) => json!({"array": items.iter().map(shape).fold(json!({}), |a, b| merge(&a, &b))}),
        Value::Object(fields) => json!({"object": fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect::<Map<_, _>>()}),
    }
}

/// The shape of values that are sometimes of shape `a` and sometimes of shape `b`.
fn merge(a: &Value, b: &Value) -> Value {
    let mut out = a.as_object().cloned().unwrap_or_default();
    for (kind, detail) in b.as_object().into_iter().flatten() {
        let merged = match (out.get(kind), kind.as_str()) {
            (None, _) => detail.clone(),
            (Some(mine), "array") => merge(mine, detail),
            (Some(mine), "object") => {
                let mut fields = mine.as_object().cloned().unwrap_or_default();
                for (k, v) in detail.as_object().into_iter().flatten() {
                    let m = fields.get(k).map_or_else(|| v.clone(), |f| merge(f, v));
                    fields.insert(k.clone(), m);
                }
                Value::Object(fields)
            }
            (Some(mine), _) => mine.clone(),
        };
        out.insert(kind.clone(), merged);
    }
    Value::Object(out)
}

/// Every way `new` breaks the contract `old` sets at `path`: a field lost, a type changed, an array that had
/// elements and has none.
fn compare(old: &Value, new: &Value, path: &str, problems: &mut Vec<String>) {
    let kinds = |s: &Value| -> Vec<String> { s.as_object().into_iter().flatten().map(|(k, _)| k.clone()).filter(|k| k != "null").collect() };
    let (was, now) = (kinds(old), kinds(new));
    if !was.is_empty() && !now.is_empty() && was != now {
        problems.push(format!("changed: {path} was {}, is now {}", was.join("|"), now.join("|")));
    }
    if !was.is_empty() && now.is_empty() && new.get("null").is_none() {
        problems.push(format!("lost: {path} (was {}, now absent)", was.join("|")));
    }
    if let (Some(o), Some(n)) = (old.get("object").and_then(Value::as_object), new.get("object").and_then(Value::as_object)) {
        for (k, v) in o {
            match n.get(k) {
                Some(w) => compare(v, w, &format!("{path}.{k}"), problems),
                None => problems.push(format!("lost: {path}.{k}")),
            }
        }
    }
    if let (Some(o), Some(n)) = (old.get("array"), new.get("array")) {
        compare(o, n, &format!("{path}[]"), problems);
    }
}

/// The lost and changed paths of every recorded shape in `new`.
fn contract_problems(recorded: &Map<String, Value>, new: &BTreeMap<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, old) in recorded {
        match new.get(name) {
            Some(now) => compare(old, now, name, &mut problems),
            None => problems.push(format!("lost: {name} (the scenario no longer produces it)")),
        }
    }
    problems
}

// ---- the scenario ----

fn substitute(text: &str, names: &BTreeMap<String, String>) -> String {
    names.iter().fold(text.to_owned(), |t, (k, v)| t.replace(&format!("{{{k}}}"), v))
}

struct Scenario {
    spec: Value,
    names: BTreeMap<String, String>,
}

impl Scenario {
    fn new(scratch: &Path) -> Scenario {
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("scenario.json")).unwrap()).unwrap();
        let work = scratch.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let models = models_dir();
        let names = BTreeMap::from([
            ("home".to_owned(), scratch.join("home").display().to_string()),
            ("work".to_owned(), work.display().to_string()),
            ("fixtures".to_owned(), fixtures().display().to_string()),
            ("gguf".to_owned(), models.join(GGUF).display().to_string()),
            ("models".to_owned(), models.display().to_string()),
        ]);
        Scenario { spec, names }
    }

    fn command(&self, step: &Value) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.current_dir(repo()).env_remove("KEEL_MODELS_MANIFEST");
        cmd.env("KEEL_HOME", &self.names["home"]).env("KEEL_MODELS_DIR", &self.names["models"]);
        for env in [&self.spec["env"], &step["env"]] {
            for (k, v) in env.as_object().into_iter().flatten() {
                match v.as_str() {
                    Some(v) => cmd.env(k, substitute(v, &self.names)),
                    None => cmd.env_remove(k),
                };
            }
        }
        cmd.args(step["args"].as_array().unwrap().iter().map(|a| substitute(a.as_str().unwrap(), &self.names)));
        cmd
    }

    fn runs(&self, step: &Value) -> usize {
        let mut list = self.command(&json!({"args": ["runs", "list", "--json", "--limit", "1000"], "env": step["env"]}));
        let out = list.stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap().len()
    }

    /// Starts the step and kills it once its run is on record: the run is left interrupted.
    fn interrupt(&self, step: &Value) {
        let before = self.runs(step);
        let mut child = self.command(step).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.runs(step) == before {
            assert!(child.try_wait().unwrap().is_none() && Instant::now() < deadline, "{step}: the run did not start before the process ended");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Runs a step; returns its output (a JSON document, or an array of its JSON lines).
    fn run(&mut self, step: &Value) -> Value {
        let stdin = match (step["stdin"].as_str(), step["stdin_file"].as_str()) {
            (_, Some(file)) => std::fs::read(substitute(file, &self.names)).unwrap(),
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, None) => Vec::new(),
        };
        let mut child = self.command(step).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&stdin).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let expected = step["exit"].as_i64().unwrap_or(0) as i32;
        assert_eq!(out.status.code(), Some(expected), "{}:\n{}\n{}", step["args"], stdout(&out), stderr(&out));
        let doc: Value = if step["jsonl"].as_bool().unwrap_or(false) {
            Value::Array(stdout(&out).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect())
        } else {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{}\n{}", step["args"], stdout(&out), stderr(&out)))
        };
        for (name, pointer) in step["capture"].as_object().into_iter().flatten() {
            let value = doc.pointer(pointer.as_str().unwrap()).unwrap_or_else(|| panic!("{}: no {pointer} in {doc}", step["args"]));
            let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            self.names.insert(name.clone(), text);
        }
        doc
    }
}

/// Runs the scenario with the `keel` under test; the shape of each named step's output.
fn scenario_shapes() -> BTreeMap<String, Value> {
    let scratch = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(scratch.path());
    let steps = scenario.spec["steps"].as_array().unwrap().clone();
    let mut shapes = BTreeMap::new();
    for step in &steps {
        if step["interrupt"].as_bool().unwrap_or(false) {
            scenario.interrupt(step);
            continue;
        }
        let doc = scenario.run(step);
        if let Some(name) = step["name"].as_str() {
            assert!(shapes.insert(name.to_owned(), shape(&doc)).is_none(), "two steps are named {name:?}");
        }
    }
    shapes
}

/// The commands (`"memory add"`, …) whose help offers `--json`, found by walking `keel help`.
fn json_commands() -> Vec<String> {
    fn walk(path: &mut Vec<String>, found: &mut Vec<String>) {
        let out = Command::new(env!("CARGO_BIN_EXE_keel")).args(path.iter()).arg("--help").output().unwrap();
        let help = stdout(&out);
        let subcommands: Vec<String> = help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            // A name is indented by two spaces; a wrapped description further.
            .filter(|l| !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .filter(|c| c != "help")
            .collect();
        if subcommands.is_empty() && help.contains("--json") {
            found.push(path.join(" "));
        }
        for c in subcommands {
            path.push(c);
            walk(path, found);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(&mut Vec::new(), &mut found);
    found
}

#[test]
fn every_json_output_keeps_its_pre_change_shape() {
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/cli_json_shapes.json")).unwrap()).unwrap();
    let recorded = recorded["shapes"].as_object().unwrap();
    let shapes = scenario_shapes();

    // Every command with --json is run by the scenario, or left out for a stated reason.
    let covered: Vec<&str> = shapes.keys().map(|name| name.split(" (").next().unwrap()).collect();
    let commands = json_commands();
    assert!(commands.len() > 30, "the help walk found too few commands: {commands:?}");
    let uncovered: Vec<&String> =
        commands.iter().filter(|c| !covered.contains(&c.as_str()) && !LEFT_OUT.iter().any(|(l, _)| l == c)).collect();
    assert!(uncovered.is_empty(), "commands with --json that the scenario does not run: {uncovered:?}");
    for (left, _) in LEFT_OUT {
        assert!(commands.iter().any(|c| c == left), "{left} is left out but has no --json");
    }

    let problems = contract_problems(recorded, &shapes);
    assert!(problems.is_empty(), "the JSON contract is broken:\n{}", problems.join("\n"));
    let unrecorded: Vec<&String> = shapes.keys().filter(|k| !recorded.contains_key(*k)).collect();
    assert!(unrecorded.is_empty(), "steps with no recorded shape (run scripts/cli_json_shapes.py on the reference binary): {unrecorded:?}");
}

#[test]
fn the_shape_check_catches_a_lost_field_and_a_changed_type() {
    let before = json!({"run_id": 1, "outcome": {"status": "answered", "tokens": 3}, "events": [{"seq": 1, "at_ms": 5}, {"seq": 2}], "answer": null});
    let recorded = Map::from_iter([("ask".to_owned(), shape(&before))]);
    let check = |after: Value| contract_problems(&recorded, &BTreeMap::from([("ask".to_owned(), shape(&after))]));

    // Additions, and null for an absent optional field, keep the contract.
    let added = json!({"run_id": 7, "outcome": {"status": "failed", "tokens": 0, "kind": "backend"}, "events": [{"seq": 1, "at_ms": 9, "new": true}], "answer": "hi", "extra": [1]});
    assert_eq!(check(added), Vec::<String>::new());

    // A field removed, at the top and inside array elements, and a type changed.
    let broken = json!({"run_id": "7", "outcome": {"status": "answered"}, "events": [{"seq": 1}], "answer": null});
    assert_eq!(
        check(broken),
        [
            "lost: ask.events[].at_ms",
            "lost: ask.outcome.tokens",
            "changed: ask.run_id was integer, is now string",
        ]
    );
    // An integer become a float, an array become empty, a whole output gone.
    let floated = json!({"run_id": 1.0, "outcome": {"status": "answered", "tokens": 3}, "events": [], "answer": null});
    assert_eq!(check(floated), ["lost: ask.events[] (was object, now absent)", "changed: ask.run_id was integer, is now float"]);
    assert_eq!(contract_problems(&recorded, &BTreeMap::new()), ["lost: ask (the scenario no longer produces it)"]);
}
