//! The crash torture harness's `memory` workload: memory edits and a reindex by real `keel` processes, killed
//! with SIGKILL at seeded points (the harness and its other workloads are in `torture.rs`).
//!
//! Each kill copies a data dir holding 120 remembered items and runs, one `keel` command after another: add,
//! edit, pin, delete, `reindex --embeddings` (every vector recomputed), add, edit, each printing its JSON
//! result on success. The whole sequence (its shell and the `keel` in flight) is killed after a drawn delay
//! over the uninterrupted sequence's duration. Oracles:
//! - every command that printed its result is in SQLite; the one in flight is there whole or not at all;
//! - every live item the workload touched, and untouched ones, are found by BM25 and by vector search with a
//!   vector of the current model (searched by their own text: cosine 1);
//! - the derived indexes equal a rebuild from SQLite: the same searches give the same hits, ranks and scores
//!   before and after `keel memory reindex`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{keel, stderr, stdout};

const ITEMS: usize = 120;

#[derive(Clone, Debug)]
enum Op {
    Add(&'static str),
    Edit(i64, &'static str),
    Pin(i64),
    Rm(i64),
    Reindex,
}

fn ops() -> Vec<Op> {
    vec![
        Op::Add("Torture memory one: the blue kettle is kept in the loft above the workshop"),
        Op::Edit(5, "Torture memory edited: item five now says the shed key is under the flat stone"),
        Op::Pin(7),
        Op::Rm(9),
        Op::Reindex,
        Op::Add("Torture memory two: the red ladder leans against the north wall of the barn"),
        Op::Edit(11, "Torture memory edited: item eleven now says the boat trailer needs new bearings"),
    ]
}

fn args(op: &Op) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match op {
        Op::Add(t) => s(&["memory", "add", t, "--json"]),
        Op::Edit(id, t) => s(&["memory", "edit", &id.to_string(), t, "--json"]),
        Op::Pin(id) => s(&["memory", "pin", &id.to_string(), "--json"]),
        Op::Rm(id) => s(&["memory", "rm", &id.to_string(), "--json"]),
        Op::Reindex => s(&["memory", "reindex", "--embeddings", "--json"]),
    }
}

/// (text, pinned, deleted) by id, of every item.
type State = BTreeMap<i64, (String, bool, bool)>;

fn state(home: &Path) -> State {
    let db = rusqlite::Connection::open(home.join("keel.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut q = db.prepare("SELECT id, text, pinned, deleted_ms IS NOT NULL FROM memory_items ORDER BY id").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))).unwrap().map(Result::unwrap).collect()
}

fn apply(s: &State, op: &Op) -> State {
    let mut s = s.clone();
    match op {
        Op::Add(t) => {
            let id = s.keys().max().copied().unwrap_or(0) + 1;
            s.insert(id, ((*t).into(), false, false));
        }
        Op::Edit(id, t) => s.get_mut(id).unwrap().0 = (*t).into(),
        Op::Pin(id) => s.get_mut(id).unwrap().1 = true,
        Op::Rm(id) => s.get_mut(id).unwrap().2 = true,
        Op::Reindex => {}
    }
    s
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The data dir every kill starts from: `ITEMS` generated items, embedded and indexed.
pub(crate) fn template() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("items.jsonl");
    let lines: Vec<String> = keel::eval::memory_bench::generated_items(ITEMS)
        .into_iter()
        .map(|text| serde_json::json!({"id": 0, "kind": "note", "text": text, "source": "torture", "provenance": "user", "pinned": false, "created_ms": 0, "updated_ms": 0, "deleted": false}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = keel(home.path()).args(["memory", "import", "--json"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(&file).unwrap();
    assert_eq!(state(home.path()).len(), ITEMS);
    home
}

/// Starts the sequence in its own process group, each result to `out/<i>.json`.
fn spawn(home: &Path, out: &Path) -> std::process::Child {
    let mut script = String::from("set -e\n");
    for (i, op) in ops().iter().enumerate() {
        let quoted: Vec<String> = args(op).iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        script += &format!("\"$K\" {} > \"$O/{i}.tmp\"\nmv \"$O/{i}.tmp\" \"$O/{i}.json\"\n", quoted.join(" "));
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]).env("K", env!("CARGO_BIN_EXE_keel")).env("O", out);
    cmd.env("KEEL_HOME", home).env("KEEL_MODELS_DIR", crate::common::models_dir()).env_remove("KEEL_MODELS_MANIFEST");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    cmd.spawn().unwrap()
}

fn kill_group(child: &mut std::process::Child) {
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// How long the uninterrupted sequence takes (on a copy of the template).
pub(crate) fn reference(template: &Path) -> Duration {
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    copy_dir(template, home.path());
    let started = Instant::now();
    let status = spawn(home.path(), out.path()).wait().unwrap();
    assert!(status.success(), "the memory workload failed uninterrupted");
    let expected = ops().iter().fold(state(template), |s, op| apply(&s, op));
    assert_eq!(state(home.path()), expected, "the uninterrupted workload's end state");
    started.elapsed()
}

fn search(home: &Path, query: &str) -> Result<Value, String> {
    let out = keel(home).args(["memory", "search", query, "--json", "--limit", "5"]).output().unwrap();
    if !out.status.success() {
        return Err(format!("search {query:?} failed: {}", stderr(&out)));
    }
    serde_json::from_str(&stdout(&out)).map_err(|e| format!("search {query:?}: {e}"))
}

/// Hits as (id, BM25 rank, vector rank, cosine to 4 places).
fn hits(r: &Value) -> Vec<(i64, Value, Value, i64)> {
    r["hits"]
        .as_array()
        .map(|h| h.iter().map(|h| (h["id"].as_i64().unwrap_or(-1), h["bm25_rank"].clone(), h["vector_rank"].clone(), (h["cosine"].as_f64().unwrap_or(0.0) * 1e4).round() as i64)).collect())
        .unwrap_or_default()
}

/// One kill of the `memory` workload; `Err` names the broken invariant.
pub(crate) fn kill(template: &Path, reference: Duration, rng_below: &mut dyn FnMut(u64) -> u64, finished_first: &mut u32) -> Result<String, String> {
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    copy_dir(template, home.path());
    let at = Duration::from_millis(rng_below(reference.as_millis() as u64));
    let mut child = spawn(home.path(), out.path());
    std::thread::sleep(at);
    let exited_first = child.try_wait().unwrap().is_some();
    kill_group(&mut child);
    let ops = ops();
    let acked = (0..ops.len()).take_while(|i| out.path().join(format!("{i}.json")).exists()).count();
    if acked == ops.len() || exited_first {
        *finished_first += 1;
    }
    let in_flight = ops.get(acked).filter(|_| out.path().join(format!("{acked}.tmp")).exists());
    let point = format!("after {at:?}, {acked} of {} commands done{}", ops.len(), in_flight.map(|op| format!(", {op:?} in flight")).unwrap_or_default());
    // Oracle: what was acknowledged is there; the command in flight is there whole or not at all.
    let expected = ops[..acked].iter().fold(state(template), |s, op| apply(&s, op));
    let with_in_flight = in_flight.map(|op| apply(&expected, op));
    let now = state(home.path());
    if now != expected && Some(&now) != with_in_flight.as_ref() {
        let diff: Vec<_> = now.iter().filter(|(id, v)| expected.get(id) != Some(v)).collect();
        return Err(format!("{point}: memory differs from what was acknowledged: {diff:?}"));
    }
    // Oracle: touched and untouched live items are found by both searches, each with its own vector.
    for (id, (text, _, deleted)) in now.iter().filter(|(id, _)| [1, 5, 7, 11, ITEMS as i64, ITEMS as i64 + 1, ITEMS as i64 + 2].contains(*id)) {
        if *deleted {
            continue;
        }
        let r = search(home.path(), text)?;
        let hit = r["hits"].as_array().and_then(|h| h.iter().find(|h| h["id"] == *id).cloned());
        if !hit.is_some_and(|h| h["bm25_rank"].is_number() && h["vector_rank"].is_number() && h["cosine"].as_f64().unwrap_or(0.0) > 0.99) {
            return Err(format!("{point}: item {id} is not found by both searches: {r}"));
        }
    }
    // The deleted item is found by neither.
    if now.get(&9).is_some_and(|v| v.2) {
        let r = search(home.path(), &now[&9].0)?;
        if r["hits"].as_array().is_some_and(|h| h.iter().any(|h| h["id"] == 9)) {
            return Err(format!("{point}: the deleted item 9 is still found"));
        }
    }
    // Oracle: the indexes equal a rebuild from SQLite.
    let queries = ["the shed key under the stone", "the glacier measured the erosion rate", "ladder against the barn"];
    let before: Vec<_> = queries.iter().map(|q| search(home.path(), q).map(|r| hits(&r))).collect::<Result<_, _>>()?;
    let rebuild = keel(home.path()).args(["memory", "reindex", "--json"]).output().unwrap();
    if !rebuild.status.success() {
        return Err(format!("{point}: reindex failed: {}", stderr(&rebuild)));
    }
    let after: Vec<_> = queries.iter().map(|q| search(home.path(), q).map(|r| hits(&r))).collect::<Result<_, _>>()?;
    if before != after {
        return Err(format!("{point}: the indexes differ from a rebuild: {before:?} vs {after:?}"));
    }
    Ok(point)
}
