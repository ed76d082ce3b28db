//! `keel memory …`: add, list, search, show, edit, rm, pin, import, export and reindex, each with `--json`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel::{App, AppError, ErrorKind, LoadProgress, MemoryItem, MemoryKind, MemoryQuery, Retrieval};

use crate::print_json;

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

fn text_arg(text: String) -> Result<String, AppError> {
    if text != "-" {
        return Ok(text);
    }
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
        .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read stdin: {e}"), None))?;
    Ok(keel::interface::accept_bytes(&buf)?.text)
}

/// Progress on stderr: a rewritten line on a terminal, one line per stage otherwise.
fn progress_printer() -> impl FnMut(&str, u64, u64) {
    let tty = std::io::stderr().is_terminal();
    let mut last_stage = String::new();
    let mut last_pct = u64::MAX;
    move |stage: &str, done: u64, total: u64| {
        let pct = if total > 0 { done * 100 / total } else { 100 };
        if tty {
            if pct != last_pct || stage != last_stage {
                eprint!("\r\x1b[2K{stage} {done}/{total} ({pct}%)");
                if done >= total {
                    eprintln!();
                }
            }
        } else if stage != last_stage {
            eprintln!("{stage} ({total})");
        }
        last_stage = stage.to_owned();
        last_pct = pct;
    }
}

fn open_memory(app: &App) -> Result<(), AppError> {
    let mut show = progress_printer();
    let (_, report) = app.memory_with_report(&mut |p: LoadProgress| show(&p.stage, p.done, p.total))?;
    if let Some(r) = report.filter(|r| r.rebuilt.is_some() || r.embedded > 0) {
        eprintln!(
            "memory: {} items; {} embedded; index {}",
            r.items,
            r.embedded,
            r.rebuilt.as_deref().map(|w| format!("rebuilt ({w})")).unwrap_or_else(|| "up to date".into())
        );
    }
    Ok(())
}

fn print_item(item: &MemoryItem) {
    let flags = format!("{}{}", if item.pinned { " pinned" } else { "" }, if item.deleted { " deleted" } else { "" });
    println!("#{} [{}]{} {}", item.id, item.kind.as_str(), flags, item.source);
    println!("    {}", item.text.replace('\n', "\n    "));
}

/// The search result for scripts: per hit its id, text, kind, source and scores, flat.
fn search_json(r: &Retrieval) -> serde_json::Value {
    let flat = |c: &keel::RetrievalCandidate| {
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
        "dropped": r.candidates.iter().filter(|c| c.decision != keel::CandidateDecision::Kept).map(flat).collect::<Vec<_>>(),
    })
}

fn score(s: Option<f32>, rank: Option<u32>) -> String {
    match (s, rank) {
        (Some(s), Some(r)) => format!("{s:.3} (#{r})"),
        (None, Some(r)) => format!("(#{r})"),
        _ => "–".into(),
    }
}

pub fn run(args: MemoryArgs) -> Result<(), AppError> {
    if let Some(n) = args.threads {
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    let app = App::open_default()?;
    match args.command {
        MemoryCommand::Add { text, kind: k, json } => {
            let k = kind(&k)?;
            let text = text_arg(text)?;
            open_memory(&app)?;
            let item = app.memory_add(k, &text, "cli")?;
            if json { print_json(&item) } else { print_item(&item) }
        }
        MemoryCommand::List { kind: k, source, deleted, limit, offset, json } => {
            let query = MemoryQuery { kind: k.as_deref().map(kind).transpose()?, source, include_deleted: deleted, offset, limit };
            let page = app.memory_list(&query)?;
            if json {
                print_json(&page)
            } else {
                for item in &page.items {
                    print_item(item);
                }
                eprintln!("[{} of {} items]", page.items.len(), page.total);
            }
        }
        MemoryCommand::Search { query, limit, explain, json } => {
            open_memory(&app)?;
            let r = app.memory_search(&query, limit)?;
            if json {
                print_json(&search_json(&r));
                return Ok(());
            }
            if r.hits.is_empty() {
                println!("no memory is relevant to that (threshold: cosine ≥ {:.2})", r.threshold);
            }
            for c in &r.hits {
                print_item(&c.item);
                println!(
                    "    bm25 {} · cosine {:.3} {} · fused {:.4} · {} tokens",
                    score(c.bm25, c.bm25_rank),
                    c.cosine,
                    score(None, c.vector_rank),
                    c.fused,
                    c.tokens
                );
            }
            if explain {
                for c in r.candidates.iter().filter(|c| c.decision != keel::CandidateDecision::Kept) {
                    println!("  dropped #{}: {}", c.item.id, c.reason);
                }
            }
            eprintln!("[{} tokens of {} · {} ms]", r.tokens_used, r.token_budget, r.duration_ms);
        }
        MemoryCommand::Show { id, json } => {
            let item = app.memory_show(id)?;
            let runs = app.memory_item_runs(id)?;
            if json {
                print_json(&serde_json::json!({ "item": item, "runs": runs }));
            } else {
                print_item(&item);
                let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
                println!("    used by runs: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
            }
        }
        MemoryCommand::Edit { id, text, json } => {
            let text = text_arg(text)?;
            open_memory(&app)?;
            let item = app.memory_edit(id, &text)?;
            if json { print_json(&item) } else { print_item(&item) }
        }
        MemoryCommand::Rm { id, json } => {
            open_memory(&app)?;
            let item = app.memory_delete(id)?;
            if json { print_json(&item) } else { println!("deleted #{id} (undo with `keel memory restore {id}`)") }
        }
        MemoryCommand::Restore { id, json } => {
            open_memory(&app)?;
            let item = app.memory_restore(id)?;
            if json { print_json(&item) } else { print_item(&item) }
        }
        MemoryCommand::Pin { id, off, json } => {
            open_memory(&app)?;
            let item = app.memory_pin(id, !off)?;
            if json { print_json(&item) } else { print_item(&item) }
        }
        MemoryCommand::Import { paths, json } => {
            open_memory(&app)?;
            let (exports, documents): (Vec<PathBuf>, Vec<PathBuf>) =
                paths.into_iter().partition(|p| p.extension().is_some_and(|e| e == "jsonl"));
            let mut restored = Vec::new();
            for file in &exports {
                let mut show = progress_printer();
                restored.push(app.memory_restore_export(file, &mut |p| show(&p.stage, p.done, p.total))?);
            }
            let report = if documents.is_empty() {
                keel::ImportReport::default()
            } else {
                let app2 = app.clone();
                let _ = ctrlc::set_handler(move || {
                    app2.cancel_import();
                });
                let mut show = progress_printer();
                app.memory_import(&documents, &mut |p| {
                    show(&format!("{} {}", p.stage, p.file.as_deref().unwrap_or("")), p.files_done as u64, p.files_total as u64)
                })?
            };
            if json {
                print_json(&serde_json::json!({ "documents": report, "restored": restored }));
            } else {
                for r in &restored {
                    println!("{}: {} items restored, {} already present", r.file, r.added, r.skipped);
                }
                if !documents.is_empty() {
                    println!(
                        "{} files: {} documents added ({} chunks), {} already imported{}",
                        report.files_seen,
                        report.documents_added,
                        report.chunks_added,
                        report.documents_skipped,
                        if report.cancelled { "; cancelled (run the same import again to finish it)" } else { "" }
                    );
                }
                for e in &report.errors {
                    eprintln!("skipped: {}", e.message);
                }
            }
            if report.cancelled {
                return Err(AppError::new(ErrorKind::Internal, "the import was cancelled", Some("run the same import again; finished documents are kept and skipped".into())));
            }
        }
        MemoryCommand::Export { output, embeddings, json } => {
            let n = match &output {
                Some(path) => {
                    let tmp = path.with_extension("jsonl.partial");
                    let file = std::fs::File::create(&tmp).map_err(|e| {
                        AppError::new(ErrorKind::InvalidInput, format!("cannot create {}: {e}", tmp.display()), None)
                    })?;
                    let mut w = std::io::BufWriter::new(file);
                    let n = app.memory_export(&mut w, embeddings)?;
                    drop(w);
                    std::fs::rename(&tmp, path).map_err(|e| {
                        AppError::new(ErrorKind::Internal, format!("cannot write {}: {e}", path.display()), None)
                    })?;
                    n
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    let n = app.memory_export(&mut lock, embeddings)?;
                    lock.flush().ok();
                    n
                }
            };
            if output.is_some() {
                if json {
                    print_json(&serde_json::json!({ "items": n, "file": output }));
                } else {
                    eprintln!("{n} items exported");
                }
            }
        }
        MemoryCommand::Episodes { state, json } => {
            let on = match state.as_deref() {
                Some(s) => app.set_memory_episodes(s == "on")?,
                None => app.memory_episodes()?,
            };
            if json {
                print_json(&serde_json::json!({ "episodes": on }));
            } else {
                println!("episodes: {}", if on { "on" } else { "off" });
            }
        }
        MemoryCommand::Reindex { embeddings, json } => {
            let mut show = progress_printer();
            let report = app.memory_reindex(embeddings, &mut |p: LoadProgress| show(&p.stage, p.done, p.total))?;
            if json {
                print_json(&report)
            } else {
                println!("{} items indexed, {} embedded, in {} ms", report.items, report.embedded, report.duration_ms);
            }
        }
    }
    Ok(())
}
