//! Memory: what Keel remembers, and retrieving only what helps.
//!
//! SQLite (the `store`) holds the items and their embeddings and is committed first. Two derived indexes are
//! held here: tantivy for BM25 (`index`, on disk in `memory-index/`) and the vector matrix (`vectors`, in
//! memory). Both are brought up to date by one catch-up, [`Memory::catch_up`], which reads the items changed
//! since the generation each index reflects; it runs after every write and before every search, so changes made
//! by another Keel process on the same data dir are seen too. At open, an index that is missing, corrupt, of
//! another schema or inconsistent with SQLite (generation or count) is rebuilt with progress, and items whose
//! embedding is missing or from another model are re-embedded. Nothing here knows of orchestration.

pub mod bert;
pub mod embed;
pub mod index;
pub mod ingest;
pub mod retrieve;
pub use keel_kernels::sgemm;
pub mod vectors;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::{DocumentInsert, MemoryItem, MemoryKind, NewItem, Store, StoreError, Unembedded};
use embed::{EmbedError, Embedder};
use index::{IndexError, TextIndex};
use retrieve::{Retrieval, RetrievalCandidate, RetrieveOptions};
use vectors::Vectors;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Invalid(String),
}

/// Progress of open, reindex and import work: `done` of `total` in the named stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ImportProgress {
    pub stage: String,
    pub file: Option<String>,
    pub files_done: u32,
    pub files_total: u32,
    pub chunks_done: u32,
    pub chunks_total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ImportError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
pub struct ImportReport {
    pub files_seen: u32,
    pub documents_added: u32,
    /// Documents whose content was already imported (same sha256).
    pub documents_skipped: u32,
    pub chunks_added: u32,
    pub cancelled: bool,
    pub errors: Vec<ImportError>,
    /// Chunks committed (found by their words) whose embeddings are still to be computed, after a cancel:
    /// the next import computes them (or the next start, when there are at most [`OPEN_EMBED_LIMIT`]).
    #[serde(default)]
    pub chunks_pending: u32,
}

/// What opening or reindexing did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndexReport {
    pub items: u64,
    pub embedded: u64,
    /// Items still without an embedding: more than [`OPEN_EMBED_LIMIT`] left by an import, at open.
    #[serde(default)]
    pub pending: u64,
    /// Why the text index was rebuilt, if it was.
    pub rebuilt: Option<String>,
    pub caught_up: u64,
    pub duration_ms: u64,
}

/// A new item as the user or the agent gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSpec {
    pub kind: MemoryKind,
    pub text: String,
    pub source: String,
    pub provenance: String,
    pub pinned: bool,
}

pub struct Memory {
    embedder: Embedder,
    index_dir: PathBuf,
    index: RwLock<TextIndex>,
    vectors: RwLock<Vectors>,
    /// The store generation the vector matrix reflects.
    vectors_generation: Mutex<i64>,
}

/// Items per embedding commit when re-embedding.
const EMBED_COMMIT: usize = 256;

/// At open, chunks an import left without embeddings are embedded when there are at most this many (about a
/// minute's work); more (a big import cancelled) would hold every start for as long as the import had left, so
/// they wait for the import to be run again or `keel memory reindex`, found by their words meanwhile.
pub const OPEN_EMBED_LIMIT: u64 = 2_048;

impl Memory {
    /// Loads the embedding model from `model_dir` and brings both indexes in line with the store.
    pub fn open(
        store: &Store,
        model_dir: &Path,
        model_id: &str,
        index_dir: &Path,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(Memory, IndexReport), MemoryError> {
        let started = Instant::now();
        on_progress(Progress { stage: "loading the embedding model", done: 0, total: 1 });
        let embedder = Embedder::load(model_dir, model_id)?;
        crate::shared::io::release_freed_memory();
        on_progress(Progress { stage: "loading the embedding model", done: 1, total: 1 });
        let (index, reason) = match TextIndex::open_or_create(index_dir) {
            Ok(i) => (i, None),
            Err(e) => (TextIndex::recreate(index_dir)?, Some(e.to_string())),
        };
        let memory = Memory {
            vectors: RwLock::new(Vectors::new(embedder.dim())),
            embedder,
            index_dir: index_dir.to_owned(),
            index: RwLock::new(index),
            vectors_generation: Mutex::new(0),
        };
        let mut report = memory.bring_up_to_date(store, reason, false, Some(OPEN_EMBED_LIMIT), on_progress)?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok((memory, report))
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Rebuilds both indexes from SQLite (and re-embeds every item when `embeddings` is set).
    pub fn reindex(&self, store: &Store, embeddings: bool, on_progress: &mut dyn FnMut(Progress)) -> Result<IndexReport, MemoryError> {
        let started = Instant::now();
        let mut report = self.bring_up_to_date(store, Some("requested".into()), embeddings, None, on_progress)?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn bring_up_to_date(
        &self,
        store: &Store,
        mut rebuild: Option<String>,
        all_embeddings: bool,
        missing_limit: Option<u64>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<IndexReport, MemoryError> {
        let model = self.embedder.model_id().to_owned();
        // 1. Embeddings: from another model, missing (unless more than `missing_limit` are), or (on request) all.
        let missing = store.memory_unembedded_count(&model, Unembedded::MISSING)?;
        let which = if missing_limit.is_some_and(|limit| missing > limit) { Unembedded::FOREIGN } else { Unembedded::ALL };
        let never = AtomicBool::new(false);
        let (embedded, _) = self.embed_stored(store, all_embeddings, which, &never, &mut |done, total| {
            on_progress(Progress { stage: "embedding", done, total })
        })?;
        let pending = store.memory_unembedded_count(&model, Unembedded::MISSING)?;
        // 2. The text index: compare, then rebuild or catch up.
        let generation = store.memory_generation()?;
        let live = store.memory_live_count()?;
        if rebuild.is_none() {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            match index.generation() {
                Err(e) => rebuild = Some(e.to_string()),
                Ok(None) if live > 0 => rebuild = Some("the index is new or empty".into()),
                Ok(Some(g)) if g > generation => rebuild = Some(format!("the index is ahead of the store ({g} > {generation})")),
                Ok(Some(g)) if g == generation && index.num_docs() != live => {
                    rebuild = Some(format!("the index has {} items, the store {live}", index.num_docs()))
                }
                _ => {}
            }
        }
        if let Some(reason) = &rebuild {
            let fresh = TextIndex::recreate(&self.index_dir)?;
            let mut after = 0;
            let mut done = 0u64;
            on_progress(Progress { stage: "indexing", done, total: live });
            fresh.fill(
                &mut || {
                    let page = store.memory_live_texts(after, 2000)?;
                    let Some(last) = page.last() else { return Ok(None) };
                    after = last.0;
                    done += page.len() as u64;
                    on_progress(Progress { stage: "indexing", done, total: live });
                    Ok(Some(page))
                },
                generation,
            )??;
            *self.index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            let _ = reason;
        }
        // 3. Vectors: always from SQLite at this point.
        let mut vectors = Vectors::new(self.embedder.dim());
        let mut done = 0u64;
        store.memory_vectors(&model, &mut |page| {
            for v in page {
                if v.embedding.len() == vectors.dim() {
                    vectors.upsert(v.id, &v.embedding);
                }
                done += 1;
            }
            on_progress(Progress { stage: "loading vectors", done, total: live });
        })?;
        vectors.shrink_to_fit();
        *self.vectors.write().unwrap_or_else(|p| p.into_inner()) = vectors;
        *self.vectors_generation.lock().unwrap_or_else(|p| p.into_inner()) = generation;
        // 4. Anything committed meanwhile.
        let caught_up = self.catch_up(store)?;
        Ok(IndexReport { items: live, embedded, pending, rebuilt: rebuild, caught_up, duration_ms: 0 })
    }

    /// Applies every change committed since each index's generation; returns how many items changed.
    pub fn catch_up(&self, store: &Store) -> Result<u64, MemoryError> {
        let generation = store.memory_generation()?;
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.refresh()?;
        let index_generation = index.generation()?.unwrap_or(0);
        let mut vectors_generation = self.vectors_generation.lock().unwrap_or_else(|p| p.into_inner());
        let since = index_generation.min(*vectors_generation);
        if since >= generation {
            return Ok(0);
        }
        let changed = store.memory_changed_since(since)?;
        if index_generation < generation {
            let changes: Vec<(i64, Option<&str>)> =
                changed.iter().map(|(id, text, live)| (*id, live.then_some(text.as_str()))).collect();
            index.apply(&changes, generation)?;
        }
        if *vectors_generation < generation {
            let model = self.embedder.model_id();
            let mut fresh = Vec::new();
            let mut vectors = self.vectors.write().unwrap_or_else(|p| p.into_inner());
            for (id, text, live) in &changed {
                if !live {
                    vectors.remove(*id);
                } else {
                    fresh.push((*id, text.clone()));
                }
            }
            // Embeddings of the live changed items, from the store (computed by whoever wrote them).
            let stored = store.memory_embeddings_of(model, &fresh.iter().map(|f| f.0).collect::<Vec<_>>())?;
            for (id, v) in stored {
                if v.len() == vectors.dim() {
                    vectors.upsert(id, &v);
                }
            }
            *vectors_generation = generation;
        }
        Ok(changed.len() as u64)
    }

    /// Adds one item: embedded, committed, then indexed.
    pub fn add(&self, store: &Store, spec: &ItemSpec) -> Result<MemoryItem, MemoryError> {
        let text = spec.text.trim();
        if text.is_empty() {
            return Err(MemoryError::Invalid("a memory needs some text".into()));
        }
        let embedding = self.embedder.embed_one(text)?;
        let id = store.memory_insert(&[NewItem {
            kind: spec.kind,
            text: text.to_owned(),
            source: spec.source.clone(),
            provenance: spec.provenance.clone(),
            pinned: spec.pinned,
            embedding: Some(embedding),
            embedding_model: Some(self.embedder.model_id().to_owned()),
            created_ms: None,
            deleted: false,
            document: None,
        }])?[0];
        self.catch_up(store)?;
        Ok(store.memory_get(id)?)
    }

    /// Restores items (from an export), computing missing embeddings; items whose text and kind are already
    /// live are skipped. Returns (added, skipped).
    pub fn restore_items(&self, store: &Store, items: Vec<NewItem>, on_progress: &mut dyn FnMut(Progress)) -> Result<(u64, u64), MemoryError> {
        let model = self.embedder.model_id().to_owned();
        let total = items.len() as u64;
        let (mut added, mut skipped) = (0u64, 0u64);
        for chunk in items.chunks(EMBED_COMMIT) {
            let mut batch = Vec::new();
            for item in chunk {
                if !item.deleted && store.memory_has_text(item.kind, &item.text)? {
                    skipped += 1;
                } else {
                    batch.push(item.clone());
                }
            }
            let need: Vec<usize> = batch
                .iter()
                .enumerate()
                .filter(|(_, i)| i.embedding.as_ref().is_none_or(|e| e.len() != self.embedder.dim()) || i.embedding_model.as_deref() != Some(&model))
                .map(|(n, _)| n)
                .collect();
            let texts: Vec<&str> = need.iter().map(|&n| batch[n].text.as_str()).collect();
            for (n, v) in need.iter().zip(self.embedder.embed(&texts)?) {
                batch[*n].embedding = Some(v);
                batch[*n].embedding_model = Some(model.clone());
            }
            store.memory_insert(&batch)?;
            added += batch.len() as u64;
            on_progress(Progress { stage: "restoring", done: added + skipped, total });
        }
        self.catch_up(store)?;
        Ok((added, skipped))
    }

    /// New text for an item: re-embedded and re-indexed, that item only.
    pub fn edit(&self, store: &Store, id: i64, text: &str) -> Result<MemoryItem, MemoryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(MemoryError::Invalid("a memory needs some text; to remove it, delete it".into()));
        }
        store.memory_get(id)?;
        let embedding = self.embedder.embed_one(text)?;
        let item = store.memory_edit(id, text, &embedding, self.embedder.model_id())?;
        self.catch_up(store)?;
        Ok(item)
    }

    pub fn set_pinned(&self, store: &Store, id: i64, pinned: bool) -> Result<MemoryItem, MemoryError> {
        let item = store.memory_set_pinned(id, pinned)?;
        self.catch_up(store)?;
        Ok(item)
    }

    pub fn delete(&self, store: &Store, id: i64) -> Result<MemoryItem, MemoryError> {
        let item = store.memory_delete(id)?;
        self.catch_up(store)?;
        Ok(item)
    }

    pub fn restore(&self, store: &Store, id: i64) -> Result<MemoryItem, MemoryError> {
        let item = store.memory_restore(id)?;
        self.catch_up(store)?;
        Ok(item)
    }

    /// Hybrid retrieval for `query` (see `retrieve`). `count_tokens` measures an item as it would appear in the
    /// context.
    pub fn search(
        &self,
        store: &Store,
        query: &str,
        options: &RetrieveOptions,
        count_tokens: &dyn Fn(&MemoryItem) -> usize,
    ) -> Result<Retrieval, MemoryError> {
        let started = Instant::now();
        let q = self.embedder.embed_one(query)?;
        let mut r = self.search_with_vector(store, query, &q, options, count_tokens)?;
        r.duration_ms = started.elapsed().as_millis() as u64;
        Ok(r)
    }

    /// [`Memory::search`] with the query's embedding already computed.
    pub fn search_with_vector(
        &self,
        store: &Store,
        query: &str,
        q: &[f32],
        options: &RetrieveOptions,
        count_tokens: &dyn Fn(&MemoryItem) -> usize,
    ) -> Result<Retrieval, MemoryError> {
        let started = Instant::now();
        self.catch_up(store)?;
        let bm25 = self.index.read().unwrap_or_else(|p| p.into_inner()).search(query, options.candidates)?;
        let vectors = self.vectors.read().unwrap_or_else(|p| p.into_inner());
        let by_vector = vectors.top_k(q, options.candidates);
        let mut ids: Vec<i64> = bm25.iter().chain(&by_vector).map(|c| c.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let items: std::collections::HashMap<i64, MemoryItem> =
            store.memory_get_many(&ids)?.into_iter().filter(|i| !i.deleted).map(|i| (i.id, i)).collect();
        // A candidate the store no longer has live (deleted by another process a moment ago) is left out.
        let bm25: Vec<(i64, f32)> = bm25.into_iter().filter(|c| items.contains_key(&c.0)).collect();
        let by_vector: Vec<(i64, f32)> = by_vector.into_iter().filter(|c| items.contains_key(&c.0)).collect();
        // Candidates found by their words whose embedding is still to come (a big import still embedding) are
        // embedded now, for this search only, and judged like the rest; there are at most `candidates` of them.
        let missing: Vec<i64> = bm25.iter().map(|c| c.0).filter(|id| vectors.get(*id).is_none()).collect();
        let fresh: std::collections::HashMap<i64, Vec<f32>> = if missing.is_empty() {
            Default::default()
        } else {
            let texts: Vec<&str> = missing.iter().map(|id| items[id].text.as_str()).collect();
            missing.iter().copied().zip(self.embedder.embed(&texts)?).collect()
        };
        let vector_of = |id: i64| vectors.get(id).or_else(|| fresh.get(&id).map(Vec::as_slice));
        let cosine = |id: i64| vector_of(id).map(|v| vectors::dot(v, q)).unwrap_or(0.0);
        let similarity = |a: i64, b: i64| match (vector_of(a), vector_of(b)) {
            (Some(x), Some(y)) => vectors::dot(x, y),
            _ => 0.0,
        };
        let tokens = |id: i64| items.get(&id).map(count_tokens).unwrap_or(0);
        let scored = retrieve::select(&bm25, &by_vector, &cosine, &similarity, &tokens, options);
        let candidates: Vec<RetrievalCandidate> = scored
            .into_iter()
            .filter_map(|s| {
                Some(RetrievalCandidate {
                    item: items.get(&s.id)?.clone(),
                    bm25: s.bm25,
                    bm25_rank: s.bm25_rank,
                    cosine: s.cosine,
                    vector_rank: s.vector_rank,
                    fused: s.fused,
                    tokens: s.tokens as u32,
                    decision: s.decision,
                    reason: s.reason,
                })
            })
            .collect();
        let hits: Vec<RetrievalCandidate> =
            candidates.iter().filter(|c| c.decision == retrieve::CandidateDecision::Kept).cloned().collect();
        Ok(Retrieval {
            query: query.to_owned(),
            limit: options.limit as u32,
            threshold: options.threshold,
            token_budget: options.token_budget as u32,
            tokens_used: hits.iter().map(|h| h.tokens).sum(),
            duration_ms: started.elapsed().as_millis() as u64,
            hits,
            candidates,
        })
    }

    /// BM25 and vector rankings alone (for the retrieval benchmark).
    pub fn rankings(&self, store: &Store, query: &str, k: usize) -> Result<(Vec<(i64, f32)>, Vec<(i64, f32)>), MemoryError> {
        self.catch_up(store)?;
        let q = self.embedder.embed_one(query)?;
        let bm25 = self.index.read().unwrap_or_else(|p| p.into_inner()).search(query, k)?;
        let by_vector = self.vectors.read().unwrap_or_else(|p| p.into_inner()).top_k(&q, k);
        Ok((bm25, by_vector))
    }

    /// An item's vector as the matrix holds it (live items with a current embedding only).
    pub fn vector(&self, id: i64) -> Option<Vec<f32>> {
        self.vectors.read().unwrap_or_else(|p| p.into_inner()).get(id).map(<[f32]>::to_vec)
    }

    /// Bytes held by the vector matrix.
    pub fn vector_bytes(&self) -> usize {
        self.vectors.read().unwrap_or_else(|p| p.into_inner()).heap_bytes()
    }

    /// Imports files and folders as documents. Each document (its row and all its chunks) is one transaction,
    /// committed before any chunk is embedded, so an import stopped at any point leaves whole documents only,
    /// each found by its words at once. Its chunks are then embedded a page at a time, each page committed:
    /// a cancel stops between batches, and what is left is embedded by the next import (or the next start,
    /// if little is left; [`ImportReport::chunks_pending`] says how much). Importing again skips documents
    /// already there (same content sha256), finishes their embeddings and adds the rest.
    pub fn import(
        &self,
        store: &Store,
        paths: &[PathBuf],
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportReport, MemoryError> {
        let (files, refused) = ingest::collect_files(paths);
        let mut report = ImportReport { files_seen: files.len() as u32, ..Default::default() };
        report.errors.extend(refused.into_iter().map(|(p, m)| ImportError { path: p.display().to_string(), message: m }));
        let mut progress = ImportProgress {
            stage: "reading".into(),
            file: None,
            files_done: 0,
            files_total: files.len() as u32,
            chunks_done: 0,
            chunks_total: 0,
        };
        on_progress(&progress);
        // Chunks an earlier import committed but did not embed (it was cancelled or killed) go first.
        let earlier = store.memory_unembedded_count(self.embedder.model_id(), Unembedded::ALL)? as u32;
        if earlier > 0 {
            progress.chunks_total = earlier;
            progress.stage = "embedding".into();
            on_progress(&progress);
            report.cancelled = self
                .embed_stored(store, false, Unembedded::ALL, cancel, &mut |n, _| {
                    progress.chunks_done = n as u32;
                    on_progress(&progress);
                })?
                .1;
        }
        for file in &files {
            if report.cancelled || cancel.load(Ordering::SeqCst) {
                report.cancelled = true;
                break;
            }
            let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone()).display().to_string();
            progress.file = Some(path.clone());
            progress.stage = "reading".into();
            on_progress(&progress);
            let text = match ingest::extract(file) {
                Ok(t) => t,
                Err(message) => {
                    report.errors.push(ImportError { path: path.clone(), message: format!("{path} {message}") });
                    progress.files_done += 1;
                    continue;
                }
            };
            let hash = crate::store::content_hash(&text);
            if store.document_exists(&hash)? {
                report.documents_skipped += 1;
                progress.files_done += 1;
                on_progress(&progress);
                continue;
            }
            let format = ingest::Format::of(file).unwrap_or(ingest::Format::Text);
            progress.stage = "splitting".into();
            on_progress(&progress);
            let chunks = ingest::chunk(&text, format);
            let title = ingest::title(file, &text);
            drop(text);
            if cancel.load(Ordering::SeqCst) {
                report.cancelled = true;
                break;
            }
            let count = chunks.len() as u32;
            progress.stage = "storing".into();
            on_progress(&progress);
            let doc = DocumentInsert {
                path: path.clone(),
                content_hash: hash,
                title,
                chunks: chunks
                    .into_iter()
                    .map(|text| NewItem {
                        kind: MemoryKind::DocumentChunk,
                        text,
                        source: path.clone(),
                        provenance: "document".into(),
                        pinned: false,
                        embedding: None,
                        embedding_model: None,
                        created_ms: None,
                        deleted: false,
                        document: None,
                    })
                    .collect(),
            };
            let inserted = store.document_insert(&doc)?;
            drop(doc);
            match inserted {
                Some(d) => {
                    report.documents_added += 1;
                    report.chunks_added += d.item_ids.len() as u32;
                }
                None => report.documents_skipped += 1,
            }
            // Found by its words from here on.
            self.catch_up(store)?;
            progress.chunks_total += count;
            progress.stage = "embedding".into();
            on_progress(&progress);
            let before = progress.chunks_done;
            report.cancelled = self
                .embed_stored(store, false, Unembedded::ALL, cancel, &mut |n, _| {
                    progress.chunks_done = before + n as u32;
                    on_progress(&progress);
                })?
                .1;
            progress.files_done += 1;
            progress.stage = "indexed".into();
            on_progress(&progress);
        }
        report.chunks_pending = store.memory_unembedded_count(self.embedder.model_id(), Unembedded::MISSING)? as u32;
        progress.stage = if report.cancelled { "cancelled".into() } else { "done".into() };
        progress.file = None;
        on_progress(&progress);
        Ok(report)
    }

    /// Embeds stored items in id order, a page at a time: the live ones `which` says have no embedding of the
    /// current model, or with `all` every live one. Each page is committed, then put in the vector matrix.
    /// `on_progress(done, total)` follows each batch; a set `cancel` stops between batches, keeping what is
    /// done. Returns how many were embedded and whether it was cancelled.
    fn embed_stored(
        &self,
        store: &Store,
        all: bool,
        which: Unembedded,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(u64, bool), MemoryError> {
        let model = self.embedder.model_id();
        // Re-embedding everything is done by tagging nothing as current: embed every live item in id order.
        let total = if all { store.memory_live_count()? } else { store.memory_unembedded_count(model, which)? };
        let (mut after, mut done) = (0, 0u64);
        loop {
            let page = if all {
                store.memory_live_texts(after, EMBED_COMMIT as u32)?
            } else {
                store.memory_unembedded(model, which, after, EMBED_COMMIT as u32)?
            };
            let Some(last) = page.last() else { return Ok((done, false)) };
            after = last.0;
            let mut pairs: Vec<(i64, Vec<f32>)> = Vec::with_capacity(page.len());
            let mut stopped = false;
            for batch in page.chunks(embed::BATCH) {
                if cancel.load(Ordering::SeqCst) {
                    stopped = true;
                    break;
                }
                let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
                pairs.extend(batch.iter().map(|(id, _)| *id).zip(self.embedder.embed(&texts)?));
                on_progress(done + pairs.len() as u64, total);
            }
            // Held across the commit and the matrix update, as `catch_up` holds it: a delete committed meanwhile
            // is either left out of the commit or applied to the matrix after this page.
            let _generation = self.vectors_generation.lock().unwrap_or_else(|p| p.into_inner());
            let stored: std::collections::HashSet<i64> = store.memory_set_embeddings(model, &pairs)?.into_iter().collect();
            let mut vectors = self.vectors.write().unwrap_or_else(|p| p.into_inner());
            for (id, v) in &pairs {
                if stored.contains(id) && v.len() == vectors.dim() {
                    vectors.upsert(*id, v);
                }
            }
            done += pairs.len() as u64;
            if stopped {
                return Ok((done, true));
            }
        }
    }
}

/// A shareable cancel switch for imports.
pub type ImportCancel = Arc<AtomicBool>;
