//! `keel memory …`: add, list, search, show, edit, rm, restore, pin, import, export, episodes and reindex, each
//! with `--json`.
//!
//! Memory opens on first use with progress on stderr (it may rebuild its index or embed items first); what it
//! did is said there too, so stdout holds only the command's result.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel::{
    App, AppError, CandidateDecision, ErrorKind, ImportReport, IndexReport, LoadProgress, MemoryItem, MemoryKind, MemoryPage, MemoryQuery,
    Retrieval, RetrievalCandidate,
};

use crate::output::{self, Human, Shown, Text};
use crate::progress::stage_printer;

#[derive(Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub command: MemoryCommand,
    /// CPU threads for embedding (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Remember something: a fact (default), preference or note.
    Add {
        /// The text; `-` reads it from stdin.
        text: String,
        #[arg(long, default_value = "fact")]
        kind: String,
        #[arg(long)]
        json: bool,
    },
    /// Items, newest first (pinned ones on top).
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Include deleted items.
        #[arg(long)]
        deleted: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long)]
        json: bool,
    },
    /// Hybrid search (BM25 + vectors, fused), bounded as the agent's retrieval is; shows every score.
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        limit: u32,
        /// Also list the candidates that were dropped, with why.
        #[arg(long)]
        explain: bool,
        #[arg(long)]
        json: bool,
    },
    /// One item, with the runs that used it.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Replace an item's text (re-embedded and re-indexed).
    Edit {
        id: i64,
        /// The new text; `-` reads it from stdin.
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an item (restorable with `keel memory restore ID`).
    Rm {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Undo a delete.
    Restore {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Pin an item (or unpin it with --off).
    Pin {
        id: i64,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        json: bool,
    },
    /// Import documents (.txt, .md, .pdf, .html files and folders), or restore a `keel memory export` (.jsonl).
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Every item and its metadata as JSON lines (to a file, or stdout).
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Include the embeddings (large; without them they are recomputed on import).
        #[arg(long)]
        embeddings: bool,
        #[arg(long)]
        json: bool,
    },
    /// Whether a short summary of each conversation (an episode) is saved after every answer: `on`, `off`, or
    /// nothing to show the setting. Off until the user turns it on.
    Episodes {
        #[arg(value_parser = ["on", "off"])]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the search indexes from the database.
    Reindex {
        /// Recompute every embedding too.
        #[arg(long)]
        embeddings: bool,
        #[arg(long)]
        json: bool,
    },
}

impl MemoryCommand {
    pub fn json(&self) -> bool {
        match self {
            MemoryCommand::Add { json, .. }
            | MemoryCommand::List { json, .. }
            | MemoryCommand::Search { json, .. }
            | MemoryCommand::Show { json, .. }
            | MemoryCommand::Edit { json, .. }
            | MemoryCommand::Rm { json, .. }
            | MemoryCommand::Restore { json, .. }
            | MemoryCommand::Pin { json, .. }
            | MemoryCommand::Import { json, .. }
            | MemoryCommand::Export { json, .. }
            | MemoryCommand::Episodes { json, .. }
            | MemoryCommand::Reindex { json, .. } => *json,
        }
    }
}

fn kind(s: &str) -> Result<MemoryKind, AppError> {
    MemoryKind::parse(s).ok_or_else(|| {
        AppError::new(
            ErrorKind::InvalidInput,
            format!("unknown memory kind {s:?}"),
            Some("use fact, preference, note, episode or document_chunk".into()),
        )
    })
}

/// The text argument, or stdin for `-`; only checked to be UTF-8 here (`App` normalises it).
fn text_arg(text: String) -> Result<String, AppError> {
    if text != "-" {
        return Ok(text);
    }
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
        .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
    Ok(App::decode_input(&buf)?.to_owned())
}

fn open_memory(app: &App) -> Result<(), AppError> {
    let mut show = stage_printer();
    let (_, report) = app.memory_with_report(&mut |p: LoadProgress| show(&p.stage, p.done, p.total))?;
    if let Some(r) = report.as_ref().filter(|r| r.rebuilt.is_some() || r.embedded > 0) {
        eprintln!(
            "memory: {} items; {} embedded; index {}",
            r.items,
            r.embedded,
            r.rebuilt.as_deref().map(|w| format!("rebuilt ({w})")).unwrap_or_else(|| "up to date".into())
        );
    }
    if let Some(r) = report.filter(|r| r.pending > 0) {
        eprintln!(
            "memory: {} document chunks are not embedded yet (found by their words until then); run the same `keel memory import` again, or `keel memory reindex`, to embed them",
            r.pending
        );
    }
    Ok(())
}

impl Human for MemoryItem {
    fn human(&self) -> Text {
        let mut text = Text::new();
        let flags = format!("{}{}", if self.pinned { " pinned" } else { "" }, if self.deleted { " deleted" } else { "" });
        text.line(format!("#{} [{}]{} {}", self.id, self.kind.as_str(), flags, self.source));
        text.line(format!("    {}", self.text.replace('\n', "\n    ")));
        text
    }
}

impl Human for MemoryPage {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for item in &self.items {
            text.extend(item.human());
        }
        text.note(format!("[{} of {} items]", self.items.len(), self.total));
        text
    }
}

impl Human for IndexReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("{} items indexed, {} embedded, in {} ms", self.items, self.embedded, self.duration_ms));
        if self.pending > 0 {
            text.note(format!("{} items are not embedded yet", self.pending));
        }
        text
    }
}

/// The search result for scripts: per hit its id, text, kind, source and scores, flat.
fn search_json(r: &Retrieval) -> serde_json::Value {
    let flat = |c: &RetrievalCandidate| {
        serde_json::json!({
            "id": c.item.id,
            "text": c.item.text,
            "kind": c.item.kind,
            "source": c.item.source,
            "provenance": c.item.provenance,
            "pinned": c.item.pinned,
            "bm25": c.bm25,
            "bm25_rank": c.bm25_rank,
            "cosine": c.cosine,
            "vector_rank": c.vector_rank,
            "fused": c.fused,
            "tokens": c.tokens,
            "decision": c.decision,
            "reason": c.reason,
        })
    };
    serde_json::json!({
        "query": r.query,
        "limit": r.limit,
        "threshold": r.threshold,
        "token_budget": r.token_budget,
        "tokens_used": r.tokens_used,
        "duration_ms": r.duration_ms,
        "hits": r.hits.iter().map(flat).collect::<Vec<_>>(),
        "dropped": r.candidates.iter().filter(|c| c.decision != CandidateDecision::Kept).map(flat).collect::<Vec<_>>(),
    })
}

fn score(s: Option<f32>, rank: Option<u32>) -> String {
    match (s, rank) {
        (Some(s), Some(r)) => format!("{s:.3} (#{r})"),
        (None, Some(r)) => format!("(#{r})"),
        _ => "–".into(),
    }
}

/// The search result for a person: each hit with its scores, and with `explain` why the others were dropped.
fn search_text(r: &Retrieval, explain: bool) -> Text {
    let mut text = Text::new();
    if r.hits.is_empty() {
        text.line(format!("no memory is relevant to that (threshold: cosine ≥ {:.2})", r.threshold));
    }
    for c in &r.hits {
        text.extend(c.item.human());
        text.line(format!(
            "    bm25 {} · cosine {:.3} {} · fused {:.4} · {} tokens",
            score(c.bm25, c.bm25_rank),
            c.cosine,
            score(None, c.vector_rank),
            c.fused,
            c.tokens
        ));
    }
    if explain {
        for c in r.candidates.iter().filter(|c| c.decision != CandidateDecision::Kept) {
            text.line(format!("  dropped #{}: {}", c.item.id, c.reason));
        }
    }
    text.note(format!("[{} tokens of {} · {} ms]", r.tokens_used, r.token_budget, r.duration_ms));
    text
}

/// What an import did, for a person: per restored export and for the documents, with each skipped file.
fn import_text(restored: &[keel::RestoreReport], report: &ImportReport, documents: bool) -> Text {
    let mut text = Text::new();
    for r in restored {
        text.line(format!("{}: {} items restored, {} already present", r.file, r.added, r.skipped));
    }
    if documents {
        text.line(format!(
            "{} files: {} documents added ({} chunks), {} already imported{}",
            report.files_seen,
            report.documents_added,
            report.chunks_added,
            report.documents_skipped,
            if report.cancelled { "; cancelled (run the same import again to finish it)" } else { "" }
        ));
    }
    if report.chunks_pending > 0 {
        text.note(format!(
            "{} chunks are not embedded yet: they are found by their words now, and by meaning once embedded (run the same import again to embed them)",
            report.chunks_pending
        ));
    }
    for e in &report.errors {
        text.note(format!("skipped: {}", e.message));
    }
    text
}

/// Writes the export to `output` (through a partial file renamed when whole), or to stdout; returns the count.
fn export(app: &App, output: Option<&std::path::Path>, embeddings: bool) -> Result<u64, AppError> {
    match output {
        Some(path) => {
            let tmp = path.with_extension("jsonl.partial");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot create {}: {e}", tmp.display()), None))?;
            let mut w = std::io::BufWriter::new(file);
            let n = app.export_memory(&mut w, embeddings)?;
            drop(w);
            std::fs::rename(&tmp, path).map_err(|e| AppError::new(ErrorKind::Internal, format!("cannot write {}: {e}", path.display()), None))?;
            Ok(n)
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            let n = app.export_memory(&mut lock, embeddings)?;
            lock.flush().ok();
            Ok(n)
        }
    }
}

pub fn run(args: MemoryArgs) -> Result<(), AppError> {
    if let Some(n) = args.threads {
        crate::set_threads(n);
    }
    let app = App::open_default()?;
    match args.command {
        MemoryCommand::Add { text, kind: k, json } => {
            let k = kind(&k)?;
            let text = text_arg(text)?;
            open_memory(&app)?;
            output::emit(json, &app.add_memory(k, &text, "cli")?);
        }
        MemoryCommand::List { kind: k, source, deleted, limit, offset, json } => {
            let query = MemoryQuery { kind: k.as_deref().map(kind).transpose()?, source, include_deleted: deleted, offset, limit };
            output::emit(json, &app.list_memory(&query)?);
        }
        MemoryCommand::Search { query, limit, explain, json } => {
            open_memory(&app)?;
            let r = app.search_memory(&query, limit)?;
            output::emit(json, &Shown::new(search_json(&r), search_text(&r, explain)));
        }
        MemoryCommand::Show { id, json } => {
            let item = app.get_memory(id)?;
            let runs = app.memory_item_runs(id)?;
            let mut text = item.human();
            let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
            text.line(format!("    used by runs: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") }));
            output::emit(json, &Shown::new(serde_json::json!({ "item": item, "runs": runs }), text));
        }
        MemoryCommand::Edit { id, text, json } => {
            let text = text_arg(text)?;
            open_memory(&app)?;
            output::emit(json, &app.edit_memory(id, &text)?);
        }
        MemoryCommand::Rm { id, json } => {
            open_memory(&app)?;
            let item = app.delete_memory(id)?;
            output::emit(json, &Shown::line(item, format!("deleted #{id} (undo with `keel memory restore {id}`)")));
        }
        MemoryCommand::Restore { id, json } => {
            open_memory(&app)?;
            output::emit(json, &app.undelete_memory(id)?);
        }
        MemoryCommand::Pin { id, off, json } => {
            open_memory(&app)?;
            output::emit(json, &app.pin_memory(id, !off)?);
        }
        MemoryCommand::Import { paths, json } => {
            open_memory(&app)?;
            let (exports, documents): (Vec<PathBuf>, Vec<PathBuf>) =
                paths.into_iter().partition(|p| p.extension().is_some_and(|e| e == "jsonl"));
            let mut restored = Vec::new();
            for file in &exports {
                let mut show = stage_printer();
                restored.push(app.restore_memory_from(file, &mut |p| show(&p.stage, p.done, p.total))?);
            }
            let report = if documents.is_empty() {
                ImportReport::default()
            } else {
                let app2 = app.clone();
                let _ = ctrlc::set_handler(move || {
                    app2.cancel_import();
                });
                let mut show = stage_printer();
                app.import_documents(&documents, &mut |p| {
                    let stage = format!("{} {}", p.stage, p.file.as_deref().unwrap_or(""));
                    // A big document's embedding is the long part: its progress is counted in chunks.
                    if p.stage == "embedding" {
                        show(&stage, p.chunks_done as u64, p.chunks_total as u64)
                    } else {
                        show(&stage, p.files_done as u64, p.files_total as u64)
                    }
                })?
            };
            let text = import_text(&restored, &report, !documents.is_empty());
            let cancelled = report.cancelled;
            output::emit(json, &Shown::new(serde_json::json!({ "documents": report, "restored": restored }), text));
            if cancelled {
                // With --json the report above is the one document on stdout; the failure is said on stderr.
                return output::failed_after_result(json, AppError::new(
                    ErrorKind::Internal,
                    "the import was cancelled",
                    Some("run the same import again; documents already stored are skipped and their embeddings finished".into()),
                ));
            }
        }
        MemoryCommand::Export { output, embeddings, json } => {
            let n = export(&app, output.as_deref(), embeddings)?;
            // Exported to stdout, the items are the output; to a file, the count is.
            if output.is_some() {
                let mut text = Text::new();
                text.note(format!("{n} items exported"));
                output::emit(json, &Shown::new(serde_json::json!({ "items": n, "file": output }), text));
            }
        }
        MemoryCommand::Episodes { state, json } => {
            let on = match state.as_deref() {
                Some(s) => app.set_memory_episodes(s == "on")?,
                None => app.memory_episodes()?,
            };
            output::emit(json, &Shown::line(serde_json::json!({ "episodes": on }), format!("episodes: {}", if on { "on" } else { "off" })));
        }
        MemoryCommand::Reindex { embeddings, json } => {
            let mut show = stage_printer();
            output::emit(json, &app.reindex_memory(embeddings, &mut |p: LoadProgress| show(&p.stage, p.done, p.total))?);
        }
    }
    Ok(())
}
