//! `App`'s memory methods: the front ends' way into the memory layer.
//!
//! The memory layer is opened on first use (the embedding model loaded and checked against the manifest, the
//! indexes compared with SQLite and rebuilt if needed, with progress) and kept for the life of the `App`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::status::LoadProgress;
use super::{lock, App};
use crate::error::{AppError, ErrorKind};
use crate::interface::{self, guard::Source};
use crate::memory::retrieve::{Retrieval, RetrieveOptions};
use crate::memory::{ImportProgress, ImportReport, IndexReport, ItemSpec, Memory, Progress};
use crate::orchestration::journal::{self, RunSummary};
use crate::store::{DocumentLink, MemoryItem, MemoryKind, MemoryPage, MemoryQuery, NewItem};

/// The folder of the derived BM25 index, inside the data dir.
pub const INDEX_DIR: &str = "memory-index";

/// The longest line a memory export may hold: an item's text is at most 32 KiB, and its embedding and metadata
/// a few more.
const MAX_EXPORT_LINE_BYTES: usize = 1024 * 1024;

/// One line of `keel memory export`: an item, its metadata and (optionally) its embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedItem {
    pub id: i64,
    pub kind: MemoryKind,
    pub text: String,
    pub source: String,
    pub provenance: String,
    pub pinned: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub deleted: bool,
    #[serde(default)]
    pub embedding_model: Option<String>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// For a document chunk: its document (path, content hash, title, chunk count) and its place in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentLink>,
}

/// What restoring an export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub file: String,
    pub added: u64,
    pub skipped: u64,
}

/// The import in progress can be asked to stop.
#[derive(Default)]
pub(super) struct ImportSlot {
    cancel: Arc<AtomicBool>,
}

/// What opening memory did, kept for the caller of [`App::memory_with_report`] that opened it.
#[derive(Default)]
struct Opened(Mutex<Option<IndexReport>>);

fn progress(p: Progress) -> LoadProgress {
    LoadProgress { stage: p.stage.to_owned(), done: p.done, total: p.total }
}

impl App {
    /// The memory layer, opened on first use with progress.
    pub fn memory(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<Arc<Memory>, AppError> {
        Ok(self.memory_with_report(on_progress)?.0)
    }

    /// Like [`App::memory`], with what opening did (`None` if it was already open).
    pub fn memory_with_report(
        &self,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<(Arc<Memory>, Option<IndexReport>), AppError> {
        let opened = Opened::default();
        let memory = self.inner.memory.get_or_init(|| {
            let (dir, model_id) = self.embedding_model_dir(on_progress)?;
            let index = self.inner.home.join(INDEX_DIR);
            let (memory, report) = Memory::open(&self.inner.store, &dir, &model_id, &index, &mut |p| on_progress(progress(p)))?;
            *lock(&opened.0) = Some(report);
            Ok::<_, AppError>(memory)
        })?;
        let report = lock(&opened.0).take();
        Ok((memory, report))
    }

    /// The embedding model's folder, its files verified against the manifest (with progress); with the model id.
    pub fn embedding_model_dir(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<(PathBuf, String), AppError> {
        let entry = self.inner.manifest.by_role("embedding").ok_or_else(|| {
            AppError::new(ErrorKind::ModelMissing, "the model manifest names no embedding model", None)
        })?;
        let mut dir = None;
        for file in &entry.files {
            let stage = format!("verifying {}", file.name);
            let path = self.inner.models.verify(entry, file, false, &mut |d, t| {
                on_progress(LoadProgress { stage: stage.clone(), done: d, total: t })
            })?;
            dir = path.parent().map(Path::to_owned);
        }
        let dir = dir.ok_or_else(|| AppError::new(ErrorKind::ModelMissing, format!("model {} lists no files", entry.id), None))?;
        Ok((dir, entry.id.clone()))
    }

    fn mem(&self) -> Result<Arc<Memory>, AppError> {
        self.memory(&mut |_| {})
    }

    pub fn add_memory(&self, kind: MemoryKind, text: &str, source: &str) -> Result<MemoryItem, AppError> {
        let accepted = interface::accept(text, Source::User)?;
        let spec = ItemSpec { kind, text: accepted.text, source: source.to_owned(), provenance: "user".into(), pinned: false };
        Ok(self.mem()?.add(&self.inner.store, &spec)?)
    }

    pub fn list_memory(&self, query: &MemoryQuery) -> Result<MemoryPage, AppError> {
        Ok(self.inner.store.memory_page(query)?)
    }

    pub fn list_memory_sources(&self) -> Result<Vec<String>, AppError> {
        Ok(self.inner.store.memory_sources()?)
    }

    pub fn get_memory(&self, id: i64) -> Result<MemoryItem, AppError> {
        Ok(self.inner.store.memory_get(id)?)
    }

    /// Hybrid search with the product's bounds (threshold, MMR, token budget); `limit` caps the hits.
    pub fn search_memory(&self, query: &str, limit: u32) -> Result<Retrieval, AppError> {
        let accepted = interface::accept(query, Source::User)?;
        let memory = self.mem()?;
        let options = RetrieveOptions { limit: limit.max(1) as usize, ..RetrieveOptions::default() };
        // Outside a turn there is no chat model to count with; the embedding tokenizer's word pieces are a
        // close, slightly generous stand-in.
        let count = |item: &MemoryItem| memory.embedder().count_pieces(&crate::orchestration::recall::item_line(item));
        Ok(memory.search(&self.inner.store, &accepted.text, &options, &count)?)
    }

    pub fn edit_memory(&self, id: i64, text: &str) -> Result<MemoryItem, AppError> {
        let accepted = interface::accept(text, Source::User)?;
        Ok(self.mem()?.edit(&self.inner.store, id, &accepted.text)?)
    }

    pub fn pin_memory(&self, id: i64, pinned: bool) -> Result<MemoryItem, AppError> {
        Ok(self.mem()?.set_pinned(&self.inner.store, id, pinned)?)
    }

    pub fn delete_memory(&self, id: i64) -> Result<MemoryItem, AppError> {
        Ok(self.mem()?.delete(&self.inner.store, id)?)
    }

    /// Undoes a delete.
    pub fn undelete_memory(&self, id: i64) -> Result<MemoryItem, AppError> {
        Ok(self.mem()?.restore(&self.inner.store, id)?)
    }

    /// Rebuilds the indexes from SQLite (and every embedding, with `embeddings`).
    pub fn reindex_memory(&self, embeddings: bool, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<IndexReport, AppError> {
        let memory = self.memory(on_progress)?;
        Ok(memory.reindex(&self.inner.store, embeddings, &mut |p| on_progress(progress(p)))?)
    }

    /// Imports documents (files and folders). A `.jsonl` file is taken as a `keel memory export` and restored.
    pub fn import_documents(&self, paths: &[PathBuf], on_progress: &mut dyn FnMut(&ImportProgress)) -> Result<ImportReport, AppError> {
        let memory = self.mem()?;
        self.inner.imports.cancel.store(false, Ordering::SeqCst);
        Ok(memory.import(&self.inner.store, paths, &self.inner.imports.cancel, on_progress)?)
    }

    /// Asks a running import to stop after the document in hand (which is then not added); true if one was asked.
    pub fn cancel_import(&self) -> bool {
        !self.inner.imports.cancel.swap(true, Ordering::SeqCst)
    }

    /// Writes every item (deleted ones included, flagged) as JSON lines; returns how many.
    pub fn export_memory(&self, out: &mut dyn Write, with_embeddings: bool) -> Result<u64, AppError> {
        let io = |e: std::io::Error| AppError::new(ErrorKind::Internal, format!("cannot write the export: {e}"), None);
        let mut after = 0;
        let mut n = 0;
        loop {
            let page = self.inner.store.memory_export_page(after, 1000)?;
            let (Some(first), Some(last)) = (page.first(), page.last()) else { break };
            let mut documents = self.inner.store.memory_document_links(first.0.id, last.0.id)?;
            after = last.0.id;
            for (item, embedding) in page {
                let line = ExportedItem {
                    id: item.id,
                    kind: item.kind,
                    text: item.text,
                    source: item.source,
                    provenance: item.provenance,
                    pinned: item.pinned,
                    created_ms: item.created_ms,
                    updated_ms: item.updated_ms,
                    deleted: item.deleted,
                    embedding: if with_embeddings { embedding } else { None },
                    embedding_model: if with_embeddings { item.embedding_model } else { None },
                    document: documents.remove(&item.id),
                };
                serde_json::to_writer(&mut *out, &line).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    /// Restores a `keel memory export` file: items already present (same kind and text) are skipped; missing
    /// embeddings are computed. Lines that are not items are an error naming the line, before anything is added.
    pub fn restore_memory_from(&self, file: &Path, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<RestoreReport, AppError> {
        let f = std::fs::File::open(file).map_err(|e| bad_export(format!("cannot open {}: {e}", file.display())))?;
        let items = read_export(&mut std::io::BufReader::new(f), &file.display().to_string())?;
        let memory = self.mem()?;
        let (added, skipped) = memory.restore_items(&self.inner.store, items, &mut |p| on_progress(progress(p)))?;
        Ok(RestoreReport { file: file.display().to_string(), added, skipped })
    }

    /// Whether a short summary of each conversation (an episode) is saved to memory after every answer.
    pub fn memory_episodes(&self) -> Result<bool, AppError> {
        Ok(self.inner.store.memory_setting(crate::orchestration::recall::EPISODES_SETTING)?.unwrap_or(0) != 0)
    }

    pub fn set_memory_episodes(&self, on: bool) -> Result<bool, AppError> {
        self.inner.store.set_memory_setting(crate::orchestration::recall::EPISODES_SETTING, on as i64)?;
        Ok(on)
    }

    /// The runs whose context used an item, newest first.
    pub fn memory_item_runs(&self, id: i64) -> Result<Vec<RunSummary>, AppError> {
        self.inner.store.memory_get(id)?;
        let mut runs = Vec::new();
        for run_id in self.inner.store.memory_item_run_ids(id)? {
            runs.push(journal::load(&self.inner.store, run_id)?.run);
        }
        Ok(runs)
    }
}

fn bad_export(m: String) -> AppError {
    AppError::new(ErrorKind::InvalidInput, m, Some("pass a file written by `keel memory export`".into()))
}

/// The items of a `keel memory export` file (`name` is how errors name it). Apart from [`App::restore_memory_from`]
/// so that the memory-export fuzz target reads through the same code without a data dir.
pub(crate) fn read_export(reader: &mut impl std::io::BufRead, name: &str) -> Result<Vec<NewItem>, AppError> {
    let bad = bad_export;
    let mut items = Vec::new();
    let mut buf = Vec::new();
    for n in 0.. {
        let read = crate::shared::io::read_line_bounded(reader, &mut buf, MAX_EXPORT_LINE_BYTES)
            .map_err(|e| bad(format!("{name} line {}: {e}", n + 1)))?;
        match read {
            None => break,
            Some(crate::shared::io::BoundedLine::TooLong(bytes)) => {
                return Err(bad(format!(
                    "{name} line {} is {}, longer than any item `keel memory export` writes ({} at most)",
                    n + 1,
                    crate::shared::io::size(bytes),
                    crate::shared::io::size(MAX_EXPORT_LINE_BYTES as u64)
                )))
            }
            Some(crate::shared::io::BoundedLine::Line) => {}
        }
        let line = std::str::from_utf8(&buf).map_err(|e| bad(format!("{name} line {}: not UTF-8: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: ExportedItem = serde_json::from_str(line).map_err(|e| bad(format!("{name} line {}: {e}", n + 1)))?;
        let text = interface::accept(&e.text, Source::User).map_err(|err| bad(format!("{name} line {}: {err}", n + 1)))?.text;
        items.push(NewItem {
            kind: e.kind,
            text,
            source: e.source,
            provenance: e.provenance,
            pinned: e.pinned,
            embedding: e.embedding,
            embedding_model: e.embedding_model,
            created_ms: Some(e.created_ms),
            deleted: e.deleted,
            document: e.document,
        });
    }
    Ok(items)
}
