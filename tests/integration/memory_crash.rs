//! Nothing is lost when Keel is killed: kill -9 of a real `keel` process during a 1,000-chunk import and during
//! a reindex, then a restart: every committed document is in SQLite exactly once, whole, and search finds it.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, keel};

fn count(db: &Path, sql: &str) -> i64 {
    // The database may not exist yet, or be mid-migration, in the first moments.
    rusqlite::Connection::open(db).and_then(|c| c.query_row(sql, [], |r| r.get(0))).unwrap_or(0)
}

/// Waits until `ready` holds (polling), then kills the child with SIGKILL.
fn kill_when(mut child: Child, ready: impl Fn() -> bool, what: &str) {
    let started = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("keel finished ({status}) before it could be killed during {what}");
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{what} never reached the kill point");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The paragraphs of document `d`: ten of ~700 characters, each opening with a sentence unique to it.
fn document(d: usize) -> Vec<String> {
    (0..10)
        .map(|p| {
            let filler = format!(
                "Entry {p} of ledger {d} records the cargo weights, the harbour fees and the names of the clerks on \
                 duty that week; it was copied by hand twice and checked against the manifest. "
            );
            format!("Ledger {d} paragraph {p} describes the voyage of the ship number {d} in season {p}. {}", filler.repeat(3))
        })
        .collect()
}

fn write_documents(dir: &Path, n: usize) {
    for d in 0..n {
        std::fs::write(dir.join(format!("ledger-{d:03}.txt")), document(d).join("\n\n")).unwrap();
    }
}

fn check_whole_and_unique(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let duplicate_docs: i64 = conn
        .query_row("SELECT COUNT(*) FROM (SELECT content_hash FROM documents GROUP BY content_hash HAVING COUNT(*) > 1)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(duplicate_docs, 0, "a document was imported twice");
    let partial: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM documents d WHERE d.chunks != (SELECT COUNT(*) FROM memory_items m WHERE m.document_id = d.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(partial, 0, "a document is missing chunks");
    let duplicate_chunks: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM (SELECT document_id, chunk_index FROM memory_items WHERE document_id IS NOT NULL
               GROUP BY document_id, chunk_index HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(duplicate_chunks, 0);
    let docs: i64 = conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0)).unwrap();
    let items: i64 = conn.query_row("SELECT COUNT(*) FROM memory_items", [], |r| r.get(0)).unwrap();
    (docs, items)
}

fn search_json(home: &Path, query: &str) -> serde_json::Value {
    let out = keel(home).args(["memory", "search", query, "--limit", "3", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn top_text(home: &Path, query: &str) -> String {
    let r = search_json(home, query);
    r["hits"][0]["text"].as_str().unwrap_or_else(|| panic!("no hit for {query}: {r}")).to_owned()
}

#[test]
fn kill_9_during_a_1000_chunk_import_then_restart_loses_and_duplicates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    write_documents(docs.path(), 100);
    let db = home.path().join("keel.sqlite3");
    let spawn = || -> Child {
        keel(home.path()).args(["memory", "import"]).arg(docs.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    };
    kill_when(spawn(), || count(&db, "SELECT COUNT(*) FROM documents") >= 10, "the import");
    let (docs_after_kill, _) = check_whole_and_unique(&db);
    assert!((10..100).contains(&docs_after_kill), "killed with {docs_after_kill} documents");

    // Restart: the same import finishes the job, skipping what was committed.
    let out = keel(home.path()).args(["memory", "import", "--json"]).arg(docs.path()).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["documents"]["documents_skipped"], docs_after_kill);
    assert_eq!(report["documents"]["documents_added"], 100 - docs_after_kill);
    let (docs_total, items) = check_whole_and_unique(&db);
    assert_eq!(docs_total, 100);
    assert!(items >= 1000, "{items} chunks");
    // Search finds documents from before and after the kill.
    for d in [0, 99] {
        let text = top_text(home.path(), &format!("Ledger {d} paragraph 3 describes the voyage of the ship number {d} in season 3."));
        assert!(text.contains(&format!("Ledger {d} paragraph 3 ")), "{text}");
    }
}

#[test]
fn kill_9_during_a_reindex_then_restart_rebuilds_and_search_finds_everything() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    write_documents(docs.path(), 30);
    let out = keel(home.path()).args(["memory", "import"]).arg(docs.path()).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let db = home.path().join("keel.sqlite3");
    let items = count(&db, "SELECT COUNT(*) FROM memory_items");
    let model: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT embedding_model FROM memory_items WHERE embedding IS NOT NULL LIMIT 1", [], |r| r.get(0))
        .unwrap();
    // Tag every stored vector as another model's, so that the reindex's progress is visible in SQLite (each
    // batch it commits carries the current model) and an item it did not reach is one Keel must embed again.
    let tagged = rusqlite::Connection::open(&db).unwrap().execute("UPDATE memory_items SET embedding_model = 'an-older-model'", []).unwrap();
    assert_eq!(tagged as i64, items);
    let current = format!("SELECT COUNT(*) FROM memory_items WHERE embedding_model = '{model}'");
    let child = keel(home.path()).args(["memory", "reindex", "--embeddings"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Killed once the reindex has committed some of its batches, never before it began or after it ended.
    kill_when(child, || count(&db, &current) > 0, "the reindex");
    let reached = count(&db, &current);
    assert!(reached > 0 && reached < items, "the kill landed outside the reindex: {reached} of {items} re-embedded");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM memory_items"), items);
    // Break the index too, as a kill inside the rebuild would.
    let index = home.path().join(keel::INDEX_DIR);
    let _ = std::fs::remove_file(index.join("meta.json"));
    let text = top_text(home.path(), "Ledger 17 paragraph 4 describes the voyage of the ship number 17 in season 4.");
    assert!(text.contains("Ledger 17 paragraph 4 "), "{text}");
    // The restart embedded what the reindex had not reached: every item has a vector of the current model.
    assert_eq!(count(&db, &current), items, "items left without a vector of {model}");
    // Items from both sides of the kill point are found by BM25 and by vector search, each with its own vector
    // (searched by its whole text: cosine 1).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut q = conn.prepare("SELECT text FROM memory_items ORDER BY id").unwrap();
    let texts: Vec<String> = q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    for i in [0, reached as usize - 1, reached as usize, texts.len() - 1] {
        let r = search_json(home.path(), &texts[i]);
        let hit = r["hits"].as_array().and_then(|h| h.iter().find(|h| h["text"] == texts[i].as_str()).cloned());
        assert!(
            hit.as_ref().is_some_and(|h| h["bm25_rank"].is_number() && h["vector_rank"].is_number() && h["cosine"].as_f64().unwrap_or(0.0) > 0.99),
            "item {i} is not found by both searches: {r}"
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM memory_items"), items);
}
