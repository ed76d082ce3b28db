//! Soak: Keel under a long workload keeps its resident memory and per-turn latency flat, and its database size
//! proportional to what it holds.
//!
//! In this process, on the scripted backend and the real embedder: a memory of `KEEL_SOAK_ITEMS` generated
//! items (restored from an export file, so embedded in batches), then `KEEL_SOAK_TURNS` ReAct turns (a
//! calculator call and an answer, each turn with its memory recall and the guard), twenty to a conversation;
//! every 50 turns a document is imported and the previous one's chunks deleted, and a fact added and deleted.
//! Each tenth of the turns records the resident memory at its end (VmRSS), its turns' p50 and p95 latency,
//! the database's size and what it holds. `scripts/soak.sh` runs 10,000 turns over 100,000 items and writes the
//! report (`test-output/soak/report.md`, the curves as CSV); CI runs a small one. At full size the last
//! tenth's resident memory and p95 must be within 10% of the first's; at CI's size, where the suite's other
//! tests share the cores and resident memory still climbs through the first few hundred turns, it must not
//! double and latency is only reported.

use std::sync::Arc;
use std::time::Instant;

use keel::llm::scripted::{ScriptRule, ScriptedBackend};
use keel::llm::GenerationSettings;
use keel::orchestration::{Limits, RunMode};
use keel::{App, ExportedItem, MemoryKind, OpenOptions, RunOptions};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number"))).unwrap_or(default)
}

/// A field of /proc/self/status: its number (kB for sizes).
fn status_field(name: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn rss_mb() -> f64 {
    status_field("VmRSS:") / 1024.0
}

/// The heap's bytes in use (glibc's accounting: small blocks and mmapped ones), in MB: what a leak grows,
/// as opposed to resident memory, which also holds freed pages the allocator keeps.
fn heap_mb() -> f64 {
    // SAFETY: mallinfo2 has no preconditions; it reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as f64 / 1e6
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn db_bytes(home: &std::path::Path) -> u64 {
    ["keel.sqlite3", "keel.sqlite3-wal"].iter().map(|f| std::fs::metadata(home.join(f)).map(|m| m.len()).unwrap_or(0)).sum()
}

struct Tenth {
    turns: usize,
    rss_mb: f64,
    /// Resident pages mapped from files (the model's weights, the index's segments), part of `rss_mb`.
    file_mb: f64,
    heap_mb: f64,
    threads: f64,
    p50_ms: f64,
    p95_ms: f64,
    db_mb: f64,
    runs: i64,
    events: i64,
    live_items: i64,
}

#[test]
fn a_long_workload_keeps_memory_and_turn_latency_flat() {
    let turns = env_usize("KEEL_SOAK_TURNS", 400).max(10);
    let items = env_usize("KEEL_SOAK_ITEMS", 2_000);
    let full = turns >= 2_000;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let rules = vec![
        ScriptRule { when: "soak question".into(), reply: json!({"tool": "calculator", "arguments": {"expression": "2+3"}}).to_string(), delay_ms: 0 },
        ScriptRule { when: "\"result\":\"5\"".into(), reply: json!({"answer": "The answer is 5."}).to_string(), delay_ms: 0 },
    ];
    let options = OpenOptions { home: home.clone(), models_dir: crate::common::models_dir() };
    let app = App::open_with_backend(options, Arc::new(ScriptedBackend::with_rules(rules))).unwrap();

    // The memory: generated items, restored from an export file (embedded in batches).
    let started = Instant::now();
    let export = dir.path().join("items.jsonl");
    let lines: Vec<String> = keel::eval::memory_bench::generated_items(items)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let item = ExportedItem {
                id: i as i64 + 1,
                kind: MemoryKind::Note,
                text,
                source: "soak".into(),
                provenance: "user".into(),
                pinned: false,
                created_ms: 0,
                updated_ms: 0,
                deleted: false,
                embedding_model: None,
                embedding: None,
                document: None,
            };
            serde_json::to_string(&item).unwrap()
        })
        .collect();
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let restored = app.restore_memory_from(&export, &mut |_| {}).unwrap();
    assert_eq!(restored.added as usize, items);
    println!("soak: {items} items restored in {:.0?}", started.elapsed());

    let options = RunOptions { mode: Some(RunMode::React), limits: Limits::default(), auto_approve: Vec::new(), backend: None };
    let settings = GenerationSettings::default();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let mut conversation = None;
    let mut previous_doc: Vec<i64> = Vec::new();
    let turn = |i: usize, conversation: &mut Option<i64>, previous_doc: &mut Vec<i64>| -> f64 {
        if i % 20 == 0 {
            *conversation = None;
        }
        let t = Instant::now();
        let r = app.send_message(*conversation, &format!("Work out soak question {i}"), &settings, &options, &mut |_| {}).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(r.answer, "The answer is 5.", "turn {i}");
        *conversation = Some(r.conversation_id);
        if i % 50 == 49 {
            // Repeated imports and deletes: a new document in, the previous one's chunks out; a fact in and out.
            let path = docs.join(format!("log-{i}.md"));
            let text = (0..3).map(|p| format!("Soak log {i} part {p}: the pump at station {i} was checked and its pressure noted. {}", "The crew wrote the readings down. ".repeat(8))).collect::<Vec<_>>().join("\n\n");
            std::fs::write(&path, text).unwrap();
            let report = app.import_documents(&[path], &mut |_| {}).unwrap();
            assert_eq!(report.documents_added, 1);
            for id in previous_doc.drain(..) {
                app.delete_memory(id).unwrap();
            }
            let page = app.list_memory(&keel::MemoryQuery { kind: Some(MemoryKind::DocumentChunk), ..Default::default() }).unwrap();
            previous_doc.extend(page.items.iter().filter(|m| !m.deleted).map(|m| m.id));
            let fact = app.add_memory(MemoryKind::Fact, &format!("The soak fact number {i} is temporary"), "user").unwrap();
            app.delete_memory(fact.id).unwrap();
        }
        ms
    };
    // Warm-up: the first turns load the embedder's and the guard's caches.
    for i in 0..20 {
        turn(i, &mut conversation, &mut previous_doc);
    }
    let db = rusqlite::Connection::open(home.join("keel.sqlite3")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let per_tenth = turns / 10;
    let mut tenths = Vec::new();
    let started = Instant::now();
    for t in 0..10 {
        let mut latencies: Vec<f64> = (0..per_tenth).map(|k| turn(20 + t * per_tenth + k, &mut conversation, &mut previous_doc)).collect();
        tenths.push(Tenth {
            turns: 20 + (t + 1) * per_tenth,
            rss_mb: rss_mb(),
            file_mb: status_field("RssFile:") / 1024.0,
            heap_mb: heap_mb(),
            threads: status_field("Threads:"),
            p50_ms: percentile(&mut latencies, 0.5),
            p95_ms: percentile(&mut latencies, 0.95),
            db_mb: db_bytes(&home) as f64 / 1e6,
            runs: count("SELECT count(*) FROM runs"),
            events: count("SELECT count(*) FROM run_events"),
            live_items: count("SELECT count(*) FROM memory_items WHERE deleted_ms IS NULL"),
        });
        println!("soak: tenth {} done, {:.0?}", t + 1, started.elapsed());
    }

    // The report: a table and the curves.
    let out = crate::common::repo().join("test-output/soak");
    std::fs::create_dir_all(&out).unwrap();
    let mut csv = String::from("turns,rss_mb,file_mb,heap_mb,threads,p50_ms,p95_ms,db_mb,runs,events,live_items\n");
    let mut table = String::from(
        "| turns | resident MB | of it file-backed | heap in use MB | threads | p50 ms | p95 ms | database MB | runs | events | live items |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for t in &tenths {
        csv += &format!(
            "{},{:.1},{:.1},{:.1},{},{:.2},{:.2},{:.2},{},{},{}\n",
            t.turns, t.rss_mb, t.file_mb, t.heap_mb, t.threads, t.p50_ms, t.p95_ms, t.db_mb, t.runs, t.events, t.live_items
        );
        table += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            t.turns, t.rss_mb, t.file_mb, t.heap_mb, t.threads, t.p50_ms, t.p95_ms, t.db_mb, t.runs, t.events, t.live_items
        );
    }
    let (first, last) = (&tenths[0], &tenths[9]);
    let rss_ratio = last.rss_mb / first.rss_mb;
    let p95_ratio = last.p95_ms / first.p95_ms;
    // Database size per thing held, first against last tenth: proportional if about the same.
    let held = |t: &Tenth| (t.events + t.live_items) as f64;
    let bytes_per_held = |t: &Tenth| t.db_mb * 1e6 / held(t);
    let report = format!(
        "# Soak\n\n{turns} turns ({} measured after a 20-turn warm-up), {items} restored memory items, a document imported and the previous one deleted every 50 turns; {:.0?} for the turns.\n\n{table}\nLast tenth against first: resident memory x{rss_ratio:.3}, p95 turn latency x{p95_ratio:.3}; database {:.0} bytes per event or live item in the first tenth, {:.0} in the last.\n",
        per_tenth * 10,
        started.elapsed(),
        bytes_per_held(first),
        bytes_per_held(last),
    );
    let name = if full { "report" } else { "report-ci" };
    std::fs::write(out.join(format!("{name}.md")), &report).unwrap();
    std::fs::write(out.join(format!("{name}.csv")), &csv).unwrap();
    println!("{report}");
    let bound = if full { 1.10 } else { 1.50 };
    // At CI's size resident memory still climbs in steps through the first few hundred turns while the heap in
    // use stays flat (fragmentation the allocator settles: x1.2-1.3 over 1,000 turns; x1.05 over 10,000 at full
    // size), so there only a gross leak is caught.
    let rss_bound = if full { 1.10 } else { 2.0 };
    assert!(rss_ratio <= rss_bound, "resident memory grew x{rss_ratio:.3} from the first tenth to the last (bound x{rss_bound})");
    // Latency is held to its bound only at full size, which scripts/soak.sh runs on an idle machine; in the
    // suite other tests share the cores, so there it is reported, not judged.
    assert!(!full || p95_ratio <= bound, "p95 turn latency grew x{p95_ratio:.3} from the first tenth to the last (bound x{bound})");
    assert!(bytes_per_held(last) <= bytes_per_held(first) * bound, "the database grew faster than what it holds");
}
