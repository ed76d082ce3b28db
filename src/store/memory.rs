//! Memory items and imported documents: the source of truth the memory layer's indexes are derived from.
//!
//! Every change to `memory_items` bumps the `generation` counter in `memory_meta` in the same transaction and
//! stamps the item with it, so a derived index that remembers the generation it reflects can catch up with
//! exactly what it missed. A document and all its chunks are inserted in one transaction: an import killed
//! half way leaves whole documents or nothing. Embeddings are stored as little-endian f32 blobs tagged with the
//! model that made them.

use std::collections::HashMap;

use rusqlite::{params, params_from_iter, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    Fact,
    Preference,
    Note,
    Episode,
    DocumentChunk,
}

impl MemoryKind {
    pub const ALL: [MemoryKind; 5] =
        [MemoryKind::Fact, MemoryKind::Preference, MemoryKind::Note, MemoryKind::Episode, MemoryKind::DocumentChunk];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Fact => "fact",
            MemoryKind::Preference => "preference",
            MemoryKind::Note => "note",
            MemoryKind::Episode => "episode",
            MemoryKind::DocumentChunk => "document_chunk",
        }
    }

    /// Accepts `document_chunk`, `document-chunk` and `document chunk`.
    pub fn parse(s: &str) -> Option<MemoryKind> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        MemoryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One memory item as the front ends see it (the embedding itself stays in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MemoryItem {
    #[ts(type = "number")]
    pub id: i64,
    pub kind: MemoryKind,
    pub text: String,
    /// Where it came from: `chat`, the path of an imported file, `cli`, `desktop`, `import`.
    pub source: String,
    /// Who vouches for it: `user` (typed by the user), `document`, `assistant`, `tool`, `web`.
    pub provenance: String,
    pub pinned: bool,
    #[ts(type = "number")]
    pub created_ms: i64,
    #[ts(type = "number")]
    pub updated_ms: i64,
    pub deleted: bool,
    #[ts(type = "number | null")]
    pub document_id: Option<i64>,
    pub embedding_model: Option<String>,
}

/// A filtered page of items, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct MemoryQuery {
    pub kind: Option<MemoryKind>,
    pub source: Option<String>,
    pub include_deleted: bool,
    pub offset: u32,
    pub limit: u32,
}

impl Default for MemoryQuery {
    fn default() -> Self {
        MemoryQuery { kind: None, source: None, include_deleted: false, offset: 0, limit: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MemoryPage {
    pub items: Vec<MemoryItem>,
    pub total: u32,
    pub offset: u32,
}

/// An item to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub kind: MemoryKind,
    pub text: String,
    pub source: String,
    pub provenance: String,
    pub pinned: bool,
    pub embedding: Option<Vec<f32>>,
    pub embedding_model: Option<String>,
    /// Kept when restoring an export; `None` means now.
    pub created_ms: Option<i64>,
    pub deleted: bool,
    /// The imported document a restored chunk belongs to: its row is made (or found by content hash) and the
    /// chunk linked to it, so that importing the same file again is still recognised as a duplicate.
    pub document: Option<DocumentLink>,
}

/// A chunk's document, as an export carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentLink {
    pub path: String,
    pub content_hash: String,
    pub title: String,
    /// The document's chunk count.
    pub chunks: u32,
    /// This chunk's place in it.
    pub chunk_index: u32,
}

/// A document and its chunks (already embedded), inserted together.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentInsert {
    pub path: String,
    pub content_hash: String,
    pub title: String,
    pub chunks: Vec<NewItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedDocument {
    pub id: i64,
    pub item_ids: Vec<i64>,
}

/// A live item's vector, for the in-memory matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub id: i64,
    pub embedding: Vec<f32>,
}

/// sha256 of a text, hex: how duplicates are recognised.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Which items without an embedding of the current model [`Store::memory_unembedded`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unembedded {
    /// Items with no embedding at all (a document whose import is still embedding it).
    pub missing: bool,
    /// Items embedded by another model.
    pub foreign: bool,
}

impl Unembedded {
    pub const ALL: Unembedded = Unembedded { missing: true, foreign: true };
    pub const MISSING: Unembedded = Unembedded { missing: true, foreign: false };
    pub const FOREIGN: Unembedded = Unembedded { missing: false, foreign: true };
}

pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    (bytes.len() % 4 == 0).then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

const ITEM_COLUMNS: &str = "id, kind, text, source, provenance, pinned, created_ms, updated_ms, deleted_ms, \
    document_id, embedding_model";

fn item(row: &Row) -> rusqlite::Result<MemoryItem> {
    let kind: String = row.get(1)?;
    Ok(MemoryItem {
        id: row.get(0)?,
        kind: MemoryKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("memory kind {kind}").into())
        })?,
        text: row.get(2)?,
        source: row.get(3)?,
        provenance: row.get(4)?,
        pinned: row.get(5)?,
        created_ms: row.get(6)?,
        updated_ms: row.get(7)?,
        deleted: row.get::<_, Option<i64>>(8)?.is_some(),
        document_id: row.get(9)?,
        embedding_model: row.get(10)?,
    })
}

/// Bumps the generation counter inside `tx` and returns the new value.
fn next_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
    tx.query_row("UPDATE memory_meta SET value = value + 1 WHERE key = 'generation' RETURNING value", [], |r| r.get(0))
}

fn insert_item(
    tx: &rusqlite::Transaction<'_>,
    item: &NewItem,
    document: Option<(i64, usize)>,
    generation: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    let document = match (document, &item.document) {
        (Some(d), _) => Some(d),
        (None, Some(link)) => Some((document_row(tx, link, now)?, link.chunk_index as usize)),
        (None, None) => None,
    };
    tx.execute(
        "INSERT INTO memory_items (kind, text, source, provenance, pinned, created_ms, updated_ms, deleted_ms,
            document_id, chunk_index, content_hash, embedding, embedding_model, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            item.kind.as_str(),
            item.text,
            item.source,
            item.provenance,
            item.pinned,
            item.created_ms.unwrap_or(now),
            now,
            item.deleted.then_some(now),
            document.map(|d| d.0),
            document.map(|d| d.1 as i64),
            content_hash(&item.text),
            item.embedding.as_deref().map(encode_vector),
            item.embedding_model,
            generation,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The id of the document `link` names: the row with its content hash, made if there is none.
fn document_row(tx: &rusqlite::Transaction<'_>, link: &DocumentLink, now: i64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO documents (path, content_hash, title, chunks, imported_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(content_hash) DO NOTHING",
        params![link.path, link.content_hash, link.title, link.chunks as i64, now],
    )?;
    tx.query_row("SELECT id FROM documents WHERE content_hash = ?1", [&link.content_hash], |r| r.get(0))
}

impl Store {
    /// Inserts items in one transaction; returns their ids in order.
    pub fn memory_insert(&self, items: &[NewItem]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let generation = next_generation(&tx).map_err(|e| self.err(e))?;
        let now = now_ms();
        let ids = items
            .iter()
            .map(|i| insert_item(&tx, i, None, generation, now))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// A document row and all its chunks, in one transaction. `None` if a document with the same content hash
    /// was already imported (the transaction checks, so two importers cannot both add it).
    pub fn document_insert(&self, doc: &DocumentInsert) -> Result<Option<ImportedDocument>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM documents WHERE content_hash = ?1", [&doc.content_hash], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        if exists.is_some() {
            return Ok(None);
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO documents (path, content_hash, title, chunks, imported_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![doc.path, doc.content_hash, doc.title, doc.chunks.len() as i64, now],
        )
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_rowid();
        let generation = next_generation(&tx).map_err(|e| self.err(e))?;
        let item_ids = doc
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| insert_item(&tx, c, Some((id, i)), generation, now))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(ImportedDocument { id, item_ids }))
    }

    pub fn document_exists(&self, content_hash: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row("SELECT 1 FROM documents WHERE content_hash = ?1", [content_hash], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    /// Applies `change` (an UPDATE of one item, `?1` = id, `?2` = generation, `?3` = now) and returns the item.
    fn memory_change(&self, id: i64, sql: &str, extra: &[&dyn rusqlite::ToSql]) -> Result<MemoryItem, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let generation = next_generation(&tx).map_err(|e| self.err(e))?;
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&id, &generation];
        let now = now_ms();
        values.push(&now);
        values.extend_from_slice(extra);
        let changed = tx.execute(sql, params_from_iter(values)).map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: "memory item", id });
        }
        let item = tx
            .query_row(&format!("SELECT {ITEM_COLUMNS} FROM memory_items WHERE id = ?1"), [id], item)
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(item)
    }

    /// New text and its new embedding, together.
    pub fn memory_edit(&self, id: i64, text: &str, embedding: &[f32], model: &str) -> Result<MemoryItem, StoreError> {
        let hash = content_hash(text);
        let blob = encode_vector(embedding);
        self.memory_change(
            id,
            "UPDATE memory_items SET text = ?4, content_hash = ?5, embedding = ?6, embedding_model = ?7,
                generation = ?2, updated_ms = ?3 WHERE id = ?1",
            &[&text, &hash, &blob, &model],
        )
    }

    pub fn memory_set_pinned(&self, id: i64, pinned: bool) -> Result<MemoryItem, StoreError> {
        self.memory_change(id, "UPDATE memory_items SET pinned = ?4, generation = ?2, updated_ms = ?3 WHERE id = ?1", &[&pinned])
    }

    /// Soft delete: the item leaves every index but stays restorable.
    pub fn memory_delete(&self, id: i64) -> Result<MemoryItem, StoreError> {
        self.memory_change(
            id,
            "UPDATE memory_items SET deleted_ms = ?3, generation = ?2, updated_ms = ?3 WHERE id = ?1",
            &[],
        )
    }

    pub fn memory_restore(&self, id: i64) -> Result<MemoryItem, StoreError> {
        self.memory_change(id, "UPDATE memory_items SET deleted_ms = NULL, generation = ?2, updated_ms = ?3 WHERE id = ?1", &[])
    }

    pub fn memory_get(&self, id: i64) -> Result<MemoryItem, StoreError> {
        self.conn()
            .query_row(&format!("SELECT {ITEM_COLUMNS} FROM memory_items WHERE id = ?1"), [id], item)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound { what: "memory item", id })
    }

    /// The items with these ids (missing ones are left out), in no particular order.
    pub fn memory_get_many(&self, ids: &[i64]) -> Result<Vec<MemoryItem>, StoreError> {
        let conn = self.conn();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = conn
                .prepare(&format!("SELECT {ITEM_COLUMNS} FROM memory_items WHERE id IN ({marks})"))
                .map_err(|e| self.err(e))?;
            let rows = stmt.query_map(params_from_iter(chunk), item).map_err(|e| self.err(e))?;
            for r in rows {
                out.push(r.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }

    pub fn memory_page(&self, q: &MemoryQuery) -> Result<MemoryPage, StoreError> {
        let mut filter = String::from("WHERE 1 = 1");
        let mut values: Vec<String> = Vec::new();
        if !q.include_deleted {
            filter.push_str(" AND deleted_ms IS NULL");
        }
        if let Some(kind) = q.kind {
            values.push(kind.as_str().to_owned());
            filter.push_str(&format!(" AND kind = ?{}", values.len()));
        }
        if let Some(source) = &q.source {
            values.push(source.clone());
            filter.push_str(&format!(" AND source = ?{}", values.len()));
        }
        let conn = self.conn();
        let total: u32 = conn
            .query_row(&format!("SELECT COUNT(*) FROM memory_items {filter}"), params_from_iter(&values), |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM memory_items {filter} ORDER BY pinned DESC, id DESC LIMIT {} OFFSET {}",
            q.limit.min(10_000),
            q.offset
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let items = stmt
            .query_map(params_from_iter(&values), item)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        Ok(MemoryPage { items, total, offset: q.offset })
    }

    /// Distinct sources of live items, for the filter.
    pub fn memory_sources(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT source FROM memory_items WHERE deleted_ms IS NULL ORDER BY source")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(|e| self.err(e))
    }

    pub fn memory_generation(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("SELECT value FROM memory_meta WHERE key = 'generation'", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    pub fn memory_live_count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM memory_items WHERE deleted_ms IS NULL", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Items changed after `generation`, with their current text and whether they are live, in id order.
    pub fn memory_changed_since(&self, generation: i64) -> Result<Vec<(i64, String, bool)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, text, deleted_ms IS NULL FROM memory_items WHERE generation > ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([generation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Up to `limit` live items with id above `after`, in id order: `(id, text)`.
    pub fn memory_live_texts(&self, after: i64, limit: u32) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, text FROM memory_items WHERE deleted_ms IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Up to `limit` live items above `after` whose embedding is missing (with `missing`: a document whose
    /// import is still embedding it) or from another model (with `foreign`).
    pub fn memory_unembedded(&self, model: &str, which: Unembedded, after: i64, limit: u32) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, text FROM memory_items WHERE deleted_ms IS NULL AND id > ?1
                   AND ((embedding IS NULL AND ?4) OR (embedding IS NOT NULL AND embedding_model IS NOT ?2 AND ?5))
                   ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, model, limit, which.missing, which.foreign], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// How many live items [`Store::memory_unembedded`] would give.
    pub fn memory_unembedded_count(&self, model: &str, which: Unembedded) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM memory_items WHERE deleted_ms IS NULL
                   AND ((embedding IS NULL AND ?2) OR (embedding IS NOT NULL AND embedding_model IS NOT ?1 AND ?3))",
                params![model, which.missing, which.foreign],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Stores computed embeddings of live items (no generation bump: the text did not change); returns the ids
    /// stored, which leaves out items deleted meanwhile.
    pub fn memory_set_embeddings(&self, model: &str, vectors: &[(i64, Vec<f32>)]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let mut stored = Vec::with_capacity(vectors.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE memory_items SET embedding = ?2, embedding_model = ?3 WHERE id = ?1 AND deleted_ms IS NULL",
                )
                .map_err(|e| self.err(e))?;
            for (id, v) in vectors {
                if stmt.execute(params![id, encode_vector(v), model]).map_err(|e| self.err(e))? == 1 {
                    stored.push(*id);
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(stored)
    }

    /// Every live item's vector made by `model`, in id order, read in pages through `on_page`.
    pub fn memory_vectors(&self, model: &str, on_page: &mut dyn FnMut(Vec<StoredVector>)) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let page: Vec<StoredVector> = {
                let conn = self.conn();
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, embedding FROM memory_items WHERE deleted_ms IS NULL AND embedding_model = ?1
                           AND embedding IS NOT NULL AND id > ?2 ORDER BY id LIMIT 5000",
                    )
                    .map_err(|e| self.err(e))?;
                let rows = stmt
                    .query_map(params![model, after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                    .map_err(|e| self.err(e))?;
                let mut page = Vec::new();
                for r in rows {
                    let (id, blob) = r.map_err(|e| self.err(e))?;
                    let embedding = decode_vector(&blob)
                        .ok_or_else(|| StoreError::Decode(format!("memory item {id} has a malformed embedding")))?;
                    page.push(StoredVector { id, embedding });
                }
                page
            };
            let Some(last) = page.last() else { return Ok(()) };
            after = last.id;
            on_page(page);
        }
    }

    /// The embeddings by `model` of these items (others are left out).
    pub fn memory_embeddings_of(&self, model: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT embedding FROM memory_items WHERE id = ?1 AND embedding_model = ?2 AND embedding IS NOT NULL")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            let blob: Option<Vec<u8>> = stmt.query_row(params![id, model], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
            if let Some(v) = blob.and_then(|b| decode_vector(&b)) {
                out.push((*id, v));
            }
        }
        Ok(out)
    }

    /// Items in id order above `after` (all, deleted included), with their embeddings: for export.
    pub fn memory_export_page(&self, after: i64, limit: u32) -> Result<Vec<(MemoryItem, Option<Vec<f32>>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {ITEM_COLUMNS}, embedding FROM memory_items WHERE id > ?1 ORDER BY id LIMIT ?2"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok((item(r)?, r.get::<_, Option<Vec<u8>>>(11)?.and_then(|b| decode_vector(&b))))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// The document links of the items in `first..=last` that belong to an imported document (for an export).
    pub fn memory_document_links(&self, first: i64, last: i64) -> Result<HashMap<i64, DocumentLink>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT m.id, d.path, d.content_hash, d.title, d.chunks, m.chunk_index
                 FROM memory_items m JOIN documents d ON d.id = m.document_id
                 WHERE m.id BETWEEN ?1 AND ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![first, last], |r| {
                let link = DocumentLink {
                    path: r.get(1)?,
                    content_hash: r.get(2)?,
                    title: r.get(3)?,
                    chunks: r.get(4)?,
                    chunk_index: r.get::<_, Option<u32>>(5)?.unwrap_or(0),
                };
                Ok((r.get::<_, i64>(0)?, link))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>().map_err(|e| self.err(e))
    }

    /// The oldest live item of `kind` whose text is exactly `text`.
    pub fn memory_find_text(&self, kind: MemoryKind, text: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id FROM memory_items WHERE content_hash = ?1 AND kind = ?2 AND deleted_ms IS NULL AND text = ?3
                 ORDER BY id LIMIT 1",
                params![content_hash(text), kind.as_str(), text],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Whether a live item with exactly this text and kind exists (import of an export skips those).
    pub fn memory_has_text(&self, kind: MemoryKind, text: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM memory_items WHERE content_hash = ?1 AND kind = ?2 AND deleted_ms IS NULL",
                params![content_hash(text), kind.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    /// A memory setting (`memory_meta`), `None` when never set.
    pub fn memory_setting(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row("SELECT value FROM memory_meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_memory_setting(&self, key: &str, value: i64) -> Result<(), StoreError> {
        assert_ne!(key, "generation", "the generation counter is not a setting");
        self.conn()
            .execute(
                "INSERT INTO memory_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The live item of this kind from this source, if any (the episode of a conversation).
    pub fn memory_find_by_source(&self, kind: MemoryKind, source: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id FROM memory_items WHERE kind = ?1 AND source = ?2 AND deleted_ms IS NULL ORDER BY id DESC LIMIT 1",
                params![kind.as_str(), source],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records that a run's context used these items.
    pub fn memory_record_uses(&self, run_id: i64, item_ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        for id in item_ids {
            tx.execute("INSERT OR IGNORE INTO memory_uses (run_id, item_id) VALUES (?1, ?2)", params![run_id, id])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The runs that used an item, newest first.
    pub fn memory_item_run_ids(&self, item_id: i64) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT run_id FROM memory_uses WHERE item_id = ?1 ORDER BY run_id DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([item_id], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(|e| self.err(e))
    }
}
