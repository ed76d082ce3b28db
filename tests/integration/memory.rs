//! Memory end to end through `keel::App` with the real embedding model: saving from chat, the bounded memory
//! section of a turn, edit/delete/restore, document import (all four formats, deduplicated), export and restore,
//! and a deleted index folder rebuilt with the same results.

use std::path::Path;
use std::sync::Arc;

use keel::llm::scripted::{ScriptedBackend, ScriptedReply};
use keel::llm::{GenerationSettings, Role};
use keel::orchestration::events::RunEvent;
use keel::orchestration::recall::SECTION_HEADER;
use keel::{App, CandidateDecision, MemoryKind, MemoryQuery, OpenOptions};

use crate::common;

fn app_with(home: &Path, backend: Arc<ScriptedBackend>) -> App {
    let options = OpenOptions { home: home.to_owned(), models_dir: common::models_dir() };
    App::open_with_backend(options, backend).unwrap()
}

fn replies(n: usize) -> Arc<ScriptedBackend> {
    Arc::new(ScriptedBackend::new((0..n).map(|i| ScriptedReply::Text(format!("Reply {i}.")))))
}

fn system_prompt(backend: &ScriptedBackend, call: usize) -> String {
    let seen = backend.seen();
    let first = &seen[call][0];
    assert_eq!(first.role, Role::System);
    first.content.clone()
}

fn retrieved(app: &App, run_id: i64) -> Vec<keel::RecordedCandidate> {
    app.get_run(run_id)
        .unwrap()
        .events
        .into_iter()
        .find_map(|e| match e.event {
            RunEvent::MemoryRetrieved { candidates, .. } => Some(candidates),
            _ => None,
        })
        .expect("the run records its retrieval")
}

#[test]
fn remember_that_saves_a_fact_that_a_later_turn_recalls() {
    let home = tempfile::tempdir().unwrap();
    let backend = replies(2);
    let app = app_with(home.path(), backend.clone());
    let settings = GenerationSettings::default();
    let first = app.send_message(None, "Remember that my dog is called Pixel.", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let saved = app
        .get_run(first.run_id)
        .unwrap()
        .events
        .into_iter()
        .find_map(|e| match e.event {
            RunEvent::MemorySaved { item_id, text, provenance, .. } => Some((item_id, text, provenance)),
            _ => None,
        })
        .expect("a MemorySaved event");
    assert_eq!(saved.1, "my dog is called Pixel");
    assert_eq!(saved.2, "user");
    let item = app.get_memory(saved.0).unwrap();
    assert_eq!(item.kind, MemoryKind::Fact);
    assert_eq!(item.source, "chat");

    let second = app.send_message(None, "What is my dog's name?", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let candidates = retrieved(&app, second.run_id);
    let kept: Vec<_> = candidates.iter().filter(|c| c.decision == CandidateDecision::Kept).collect();
    assert_eq!(kept.len(), 1, "{candidates:?}");
    assert_eq!(kept[0].item_id, saved.0);
    assert!(kept[0].cosine > 0.5 && kept[0].fused > 0.0);
    let prompt = system_prompt(&backend, 1);
    assert!(prompt.contains(SECTION_HEADER) && prompt.contains("my dog is called Pixel"), "{prompt}");
    // The item links back to the run that used it.
    let runs = app.memory_item_runs(saved.0).unwrap();
    assert!(runs.iter().any(|r| r.id == second.run_id));
}

/// Builds `n` short sentences about unrelated everyday topics (none about pets or names).
pub fn unrelated_sentences(n: usize) -> Vec<String> {
    let subjects = ["The warehouse in Leeds", "Our quarterly budget", "The bakery on Main Street", "The orbit of Mars",
        "The river delta", "A copper wire supplier", "The city council", "The new railway timetable", "The tomato harvest",
        "The printing press", "A cloud of interstellar dust", "The tax office", "The chess tournament", "The glacier",
        "Our database migration", "The violin workshop", "The volcano in Iceland", "The bus depot", "The vineyard",
        "The semiconductor fab"];
    let verbs = ["reported", "delayed", "doubled", "reviewed", "shipped", "measured", "repaired", "cancelled",
        "approved", "recorded"];
    let objects = ["forty pallets of steel", "the annual rainfall", "a shipment of flour", "the invoice backlog",
        "its solar panels", "the ticket prices", "three new ovens", "the erosion rate", "the concrete order",
        "a spare gearbox", "the export licence", "the humidity readings", "the seating plan", "the firmware update",
        "the grape yield", "a batch of resistors", "the insurance claim", "the track gauge", "the ink supply",
        "the lava samples"];
    let whens = ["on Monday", "last spring", "in 2019", "after the storm", "before noon"];
    (0..n)
        .map(|i| {
            let s = subjects[i % subjects.len()];
            let v = verbs[(i / subjects.len()) % verbs.len()];
            let o = objects[(i / (subjects.len() * verbs.len())) % objects.len()];
            let w = whens[(i / (subjects.len() * verbs.len() * objects.len())) % whens.len()];
            format!("{s} {v} {o} {w}.")
        })
        .collect()
}

#[test]
fn among_ten_thousand_unrelated_items_nothing_is_retrieved_and_the_window_has_no_memory_section() {
    let home = tempfile::tempdir().unwrap();
    let backend = replies(2);
    let app = app_with(home.path(), backend.clone());
    let sentences = unrelated_sentences(10_000);
    assert_eq!(sentences.iter().collect::<std::collections::HashSet<_>>().len(), 10_000);
    let export = home.path().join("noise.jsonl");
    let lines: Vec<String> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "kind": "note", "text": s, "source": "noise", "provenance": "user",
                "pinned": false, "created_ms": 0, "updated_ms": 0, "deleted": false})
            .to_string()
        })
        .collect();
    std::fs::write(&export, lines.join("\n")).unwrap();
    let restored = app.restore_memory_from(&export, &mut |_| {}).unwrap();
    assert_eq!(restored.added, 10_000);

    let settings = GenerationSettings::default();
    let turn = app.send_message(None, "What is my dog called?", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let candidates = retrieved(&app, turn.run_id);
    assert!(!candidates.is_empty(), "BM25 and vectors always propose candidates");
    assert!(candidates.iter().all(|c| c.decision == CandidateDecision::BelowThreshold), "{:?}", &candidates[..3]);
    assert_eq!(system_prompt(&backend, 0), keel::orchestration::context::SYSTEM_PROMPT);

    // The control: once the fact exists it is found among the same 10,000.
    app.add_memory(MemoryKind::Fact, "My dog is called Pixel.", "test").unwrap();
    let turn = app.send_message(None, "What is my dog called?", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let kept: Vec<_> = retrieved(&app, turn.run_id).into_iter().filter(|c| c.decision == CandidateDecision::Kept).collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].text.contains("Pixel"));
}

#[test]
fn edit_delete_restore_and_pin_keep_search_in_step() {
    let home = tempfile::tempdir().unwrap();
    let app = app_with(home.path(), replies(0));
    let item = app.add_memory(MemoryKind::Preference, "I prefer green tea in the morning", "test").unwrap();
    app.add_memory(MemoryKind::Fact, "The office wifi password is on the fridge", "test").unwrap();
    let hits = |q: &str| app.search_memory(q, 5).unwrap().hits.into_iter().map(|h| h.item.id).collect::<Vec<_>>();
    assert_eq!(hits("what tea do I like"), vec![item.id]);

    let edited = app.edit_memory(item.id, "I prefer strong black coffee in the morning").unwrap();
    assert_eq!(edited.id, item.id);
    assert!(edited.updated_ms >= item.updated_ms);
    assert_eq!(hits("what coffee do I like"), vec![item.id]);
    let r = app.search_memory("coffee", 5).unwrap();
    assert!(r.hits[0].bm25.is_some(), "the edited text is in the BM25 index");

    app.delete_memory(item.id).unwrap();
    assert!(hits("what coffee do I like").is_empty());
    assert!(app.get_memory(item.id).unwrap().deleted);
    app.undelete_memory(item.id).unwrap();
    assert_eq!(hits("what coffee do I like"), vec![item.id]);

    let pinned = app.pin_memory(item.id, true).unwrap();
    assert!(pinned.pinned);
    let page = app.list_memory(&MemoryQuery::default()).unwrap();
    assert_eq!(page.items[0].id, item.id, "pinned items list first");
    assert_eq!(page.total, 2);
}

/// A one-page PDF whose text is `text` (Helvetica, one line), written by hand so that no tool is needed.
pub fn tiny_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes());
    out
}

#[test]
fn import_reads_all_four_formats_skips_duplicates_and_reports_bad_files() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let d = docs.path();
    std::fs::write(d.join("notes.txt"), "The lighthouse keeper logs the fog horn every evening.").unwrap();
    std::fs::write(d.join("guide.md"), "# Sourdough\n\nFeed the starter with rye flour twice a day.").unwrap();
    std::fs::write(d.join("page.html"), "<html><body><h1>Tides</h1><p>Spring tides follow the full moon.</p><script>var x;</script></body></html>").unwrap();
    std::fs::write(d.join("paper.pdf"), tiny_pdf("Quasars are powered by supermassive black holes.")).unwrap();
    std::fs::write(d.join("broken.pdf"), b"%PDF-1.4 not really").unwrap();
    std::fs::write(d.join("latin1.txt"), b"caf\xe9").unwrap();
    std::fs::create_dir(d.join(".hidden")).unwrap();
    std::fs::write(d.join(".hidden/secret.txt"), "hidden").unwrap();
    std::fs::write(d.join("image.png"), b"\x89PNG").unwrap();
    let app = app_with(home.path(), replies(0));
    let mut seen = Vec::new();
    let report = app.import_documents(&[d.to_owned()], &mut |p| seen.push(p.clone())).unwrap();
    assert_eq!(report.files_seen, 6, "{report:?}");
    assert_eq!(report.documents_added, 4, "{report:?}");
    assert_eq!(report.errors.len(), 2, "{report:?}");
    assert!(report.errors.iter().any(|e| e.path.ends_with("latin1.txt") && e.message.contains("UTF-8")));
    assert!(seen.iter().any(|p| p.stage == "embedding") && seen.last().unwrap().stage == "done");
    assert_eq!(seen.last().unwrap().files_done, 6);

    for (query, needle) in [
        ("fog horn", "lighthouse"),
        ("rye flour starter", "Feed the starter"),
        ("full moon tides", "Spring tides"),
        ("what powers quasars", "black holes"),
    ] {
        let r = app.search_memory(query, 3).unwrap();
        let top = &r.hits.first().unwrap_or_else(|| panic!("no hit for {query}: {:?}", r.candidates)).item;
        assert!(top.text.contains(needle), "{query}: {}", top.text);
        assert_eq!(top.kind, MemoryKind::DocumentChunk);
        assert!(Path::new(&top.source).is_absolute(), "the source is the file's path: {}", top.source);
    }
    let html = app.search_memory("full moon tides", 1).unwrap();
    assert!(!html.hits[0].item.text.contains("var x"), "scripts are not text");

    let again = app.import_documents(&[d.to_owned()], &mut |_| {}).unwrap();
    assert_eq!((again.documents_added, again.documents_skipped), (0, 4));
    assert_eq!(app.list_memory(&MemoryQuery::default()).unwrap().total, 4);
}

/// An import is committed document by document before any chunk is embedded: cancelled while it embeds, the
/// document is whole and found by its words; the next import finishes the embeddings (and never embeds a chunk
/// deleted meanwhile).
#[test]
fn an_import_cancelled_while_embedding_keeps_the_document_and_the_next_import_finishes_it() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let doc = docs.path().join("harbour.txt");
    let paragraphs: Vec<String> = (0..80)
        .map(|i| format!("Berth {i} of the harbour took the ferry number {} on its {i}th crossing of the season. {}", i * 13, "The tide tables and the crew roster were checked against the log. ".repeat(11)))
        .collect();
    std::fs::write(&doc, paragraphs.join("\n\n") + "\n\nThe harbour master Quillon Abernathy signed off the last page.").unwrap();
    let app = app_with(home.path(), replies(0));
    let canceller = app.clone();
    let mut cancelled_at = None;
    let report = app
        .import_documents(&[doc.clone()], &mut |p| {
            if p.stage == "embedding" && p.chunks_done > 0 && cancelled_at.is_none() {
                cancelled_at = Some(p.chunks_done);
                canceller.cancel_import();
            }
        })
        .unwrap();
    let embedded = cancelled_at.expect("the import reported its embedding");
    assert!(report.cancelled && report.documents_added == 1, "{report:?}");
    assert!(report.chunks_added >= 80, "{report:?}");
    assert_eq!(report.chunks_pending, report.chunks_added - embedded, "{report:?}");
    // Found by its words at once; not yet by meaning.
    let r = app.search_memory("Quillon Abernathy harbour master", 3).unwrap();
    let top = r.hits.first().unwrap_or_else(|| panic!("{:?}", r.candidates));
    assert!(top.item.text.contains("Quillon Abernathy") && top.bm25_rank.is_some() && top.vector_rank.is_none(), "{top:?}");
    // A pending chunk deleted before the next import is never embedded.
    let chunks = app.list_memory(&MemoryQuery { kind: Some(MemoryKind::DocumentChunk), limit: 500, ..MemoryQuery::default() }).unwrap();
    let gone = chunks.items.iter().find(|i| i.text.starts_with("Berth 70 ")).unwrap().id;
    app.delete_memory(gone).unwrap();

    let again = app.import_documents(&[doc], &mut |_| {}).unwrap();
    assert_eq!((again.documents_added, again.documents_skipped, again.chunks_pending, again.cancelled), (0, 1, 0, false), "{again:?}");
    let r = app.search_memory("Quillon Abernathy harbour master", 3).unwrap();
    let top = &r.hits[0];
    assert!(top.item.text.contains("Quillon Abernathy") && top.vector_rank.is_some(), "{top:?}");
    let db = rusqlite::Connection::open(home.path().join("keel.sqlite3")).unwrap();
    let unembedded: Vec<i64> =
        db.prepare("SELECT id FROM memory_items WHERE embedding IS NULL").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(unembedded, vec![gone], "only the deleted chunk has no embedding");
}

/// More chunks left unembedded than a start should spend a minute on: the next start leaves them to the
/// import (it says how many), and a search still finds them by their words and judges them by meaning.
#[test]
fn a_start_does_not_hold_for_a_big_cancelled_import_and_its_chunks_are_still_found() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let doc = docs.path().join("log.txt");
    let lines: Vec<String> = (0..16_000).map(|i| format!("Entry {i}: the pump at station {} read {} kPa on day {}.", i % 97, i * 7 % 1000, i / 40)).collect();
    std::fs::write(&doc, lines.join("\n") + "\nThe harbour master Quillon Abernathy signed off the last page.\n").unwrap();
    let app = app_with(home.path(), replies(0));
    let canceller = app.clone();
    let report = app
        .import_documents(&[doc], &mut |p| {
            if p.stage == "embedding" && p.chunks_done > 0 {
                canceller.cancel_import();
            }
        })
        .unwrap();
    assert!(report.cancelled && report.chunks_pending as u64 > keel::memory::OPEN_EMBED_LIMIT, "{report:?}");
    drop(app);

    let started = std::time::Instant::now();
    let fresh = app_with(home.path(), replies(0));
    let (_, opened) = fresh.memory_with_report(&mut |_| {}).unwrap();
    let opened = opened.unwrap();
    assert_eq!((opened.embedded, opened.pending), (0, report.chunks_pending as u64), "{opened:?}");
    eprintln!("opened in {:?} with {} chunks pending", started.elapsed(), opened.pending);
    let r = fresh.search_memory("Quillon Abernathy harbour master", 3).unwrap();
    let top = r.hits.first().unwrap_or_else(|| panic!("{:?}", r.candidates));
    assert!(top.item.text.contains("Quillon Abernathy") && top.bm25_rank.is_some() && top.cosine > 0.3, "{top:?}");
}

#[test]
fn export_then_restore_into_a_fresh_data_dir_keeps_every_item() {
    let home = tempfile::tempdir().unwrap();
    let app = app_with(home.path(), replies(0));
    app.add_memory(MemoryKind::Fact, "The spare key is under the blue flower pot", "test").unwrap();
    let gone = app.add_memory(MemoryKind::Note, "Call the plumber on Thursday", "test").unwrap();
    app.delete_memory(gone.id).unwrap();
    app.pin_memory(1, true).unwrap();
    let mut out = Vec::new();
    assert_eq!(app.export_memory(&mut out, false).unwrap(), 2);
    let file = home.path().join("export.jsonl");
    std::fs::write(&file, &out).unwrap();

    let other = tempfile::tempdir().unwrap();
    let fresh = app_with(other.path(), replies(0));
    let report = fresh.restore_memory_from(&file, &mut |_| {}).unwrap();
    assert_eq!((report.added, report.skipped), (2, 0));
    let all = fresh.list_memory(&MemoryQuery { include_deleted: true, ..MemoryQuery::default() }).unwrap();
    assert_eq!(all.total, 2);
    assert!(all.items.iter().any(|i| i.pinned && i.text.contains("spare key")));
    assert!(all.items.iter().any(|i| i.deleted && i.text.contains("plumber")));
    assert_eq!(fresh.search_memory("where is the spare key", 3).unwrap().hits.len(), 1);
    // Restoring twice adds nothing live twice.
    let again = fresh.restore_memory_from(&file, &mut |_| {}).unwrap();
    assert_eq!(again.skipped, 1);
}

/// A document chunk's export carries its document, and the restore links the chunk to it again: importing the
/// same file after the restore is recognised as a duplicate, as it is in the data dir it came from.
#[test]
fn a_restored_document_is_still_known_to_the_importer() {
    let home = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let doc = docs.path().join("boat.md");
    std::fs::write(&doc, "# The boat\n\nThe dinghy's outboard takes two-stroke fuel mixed at fifty to one.").unwrap();
    let app = app_with(home.path(), replies(0));
    assert_eq!(app.import_documents(&[doc.clone()], &mut |_| {}).unwrap().documents_added, 1);
    app.add_memory(MemoryKind::Fact, "The mooring fee is due in April", "test").unwrap();
    let mut out = Vec::new();
    assert_eq!(app.export_memory(&mut out, true).unwrap(), 2);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let chunk = lines.iter().find(|l| l["kind"] == "document_chunk").unwrap();
    assert_eq!(chunk["document"]["path"], doc.display().to_string());
    assert_eq!(chunk["document"]["chunk_index"], 0);
    assert_eq!(chunk["document"]["chunks"], 1);
    assert!(lines.iter().find(|l| l["kind"] == "fact").unwrap().get("document").is_none(), "a fact has no document");
    let file = home.path().join("export.jsonl");
    std::fs::write(&file, &out).unwrap();

    let other = tempfile::tempdir().unwrap();
    let fresh = app_with(other.path(), replies(0));
    assert_eq!(fresh.restore_memory_from(&file, &mut |_| {}).unwrap().added, 2);
    let restored = fresh.list_memory(&MemoryQuery { kind: Some(MemoryKind::DocumentChunk), ..MemoryQuery::default() }).unwrap();
    assert!(restored.items[0].document_id.is_some(), "{:?}", restored.items[0]);
    let again = fresh.import_documents(&[doc], &mut |_| {}).unwrap();
    assert_eq!((again.documents_added, again.documents_skipped, again.chunks_added), (0, 1, 0), "{again:?}");
    assert_eq!(fresh.list_memory(&MemoryQuery::default()).unwrap().total, 2);
}

#[test]
fn a_deleted_index_folder_is_rebuilt_on_the_next_start_with_the_same_results() {
    let home = tempfile::tempdir().unwrap();
    let queries = ["tea", "what does the cat eat", "train to Glasgow", "birthday"];
    let before = {
        let app = app_with(home.path(), replies(0));
        for t in ["I drink green tea", "The cat eats fish on Fridays", "The train to Glasgow leaves at 9",
            "My sister's birthday is in May", "The boiler was serviced in March"] {
            app.add_memory(MemoryKind::Fact, t, "test").unwrap();
        }
        queries.iter().map(|q| app.search_memory(q, 3).unwrap().hits.iter().map(|h| (h.item.id, h.bm25.is_some())).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    std::fs::remove_dir_all(home.path().join(keel::INDEX_DIR)).unwrap();
    let app = app_with(home.path(), replies(0));
    let (_, report) = app.memory_with_report(&mut |_| {}).unwrap();
    assert!(report.unwrap().rebuilt.is_some());
    let after = queries.iter().map(|q| app.search_memory(q, 3).unwrap().hits.iter().map(|h| (h.item.id, h.bm25.is_some())).collect::<Vec<_>>()).collect::<Vec<_>>();
    assert_eq!(before, after);
    assert!(after.iter().flatten().any(|(_, bm25)| *bm25), "BM25 contributes after the rebuild");
}

#[test]
fn a_corrupt_index_folder_is_rebuilt_and_loses_nothing() {
    let home = tempfile::tempdir().unwrap();
    {
        let app = app_with(home.path(), replies(0));
        app.add_memory(MemoryKind::Fact, "The recycling goes out on Tuesdays", "test").unwrap();
    }
    let dir = home.path().join(keel::INDEX_DIR);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let app = app_with(home.path(), replies(0));
    let (_, report) = app.memory_with_report(&mut |_| {}).unwrap();
    assert!(report.unwrap().rebuilt.is_some());
    let r = app.search_memory("when does recycling go out", 3).unwrap();
    assert_eq!(r.hits.len(), 1);
    assert!(r.hits[0].bm25.is_some());
}

#[test]
fn episodes_are_saved_only_when_the_user_allows_them_and_one_per_conversation() {
    let home = tempfile::tempdir().unwrap();
    let app = app_with(home.path(), replies(3));
    let settings = GenerationSettings::default();
    assert!(!app.memory_episodes().unwrap(), "episodes are off until the user turns them on");
    let first = app.send_message(None, "How do I descale a kettle?", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let episodes = |app: &App| {
        app.list_memory(&MemoryQuery { kind: Some(MemoryKind::Episode), ..MemoryQuery::default() }).unwrap().items
    };
    assert!(episodes(&app).is_empty());

    app.set_memory_episodes(true).unwrap();
    let second = app.send_message(Some(first.conversation_id), "And with vinegar?", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let saved = episodes(&app);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].source, format!("conversation:{}", first.conversation_id));
    assert_eq!(saved[0].provenance, "assistant");
    assert!(saved[0].text.contains("descale a kettle") && saved[0].text.contains("vinegar") && saved[0].text.contains("Reply 1"));
    let kinds: Vec<&str> = app.get_run(second.run_id).unwrap().events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds[kinds.len() - 2..], ["MemorySaved", "RunFinished"]);

    // The next answer updates the same episode instead of adding another.
    app.send_message(Some(first.conversation_id), "Thanks!", &settings, &keel::RunOptions::default(), &mut |_| {}).unwrap();
    let again = episodes(&app);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, saved[0].id);
    assert!(again[0].text.contains("Thanks!"));
}
