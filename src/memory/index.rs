//! BM25 over memory items with tantivy: a derived index, rebuilt from SQLite whenever it is missing, corrupt or
//! behind.
//!
//! One document per live item: its id (indexed and a fast field) and its text, analysed with tantivy's English
//! stemmer (`en_stem`: split on non-alphanumerics, lower-case, Porter/Snowball stem). Every commit carries the
//! store generation it reflects as its payload, so on start the memory layer knows whether it has missed
//! anything. The text itself is not stored: SQLite has it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

#[derive(Debug, thiserror::Error)]
#[error("the search index at {path} {what}: {reason}")]
pub struct IndexError {
    pub path: PathBuf,
    pub what: &'static str,
    pub reason: String,
}

impl IndexError {
    fn says_disk_full(reason: &str) -> bool {
        reason.contains("No space left on device") || reason.contains("StorageFull") || reason.contains("os error 28")
    }

    /// The index could not be written because its disk is full.
    pub fn is_disk_full(&self) -> bool {
        Self::says_disk_full(&self.reason)
    }
}

pub struct TextIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    /// Serialises this process's writers; tantivy's lock file serialises processes.
    writing: Mutex<()>,
    id: Field,
    text: Field,
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", INDEXED | FAST);
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer("en_stem").set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    (b.build(), id, text)
}

impl TextIndex {
    /// Opens the index in `dir`, or creates an empty one if the folder is missing or empty. A folder that holds
    /// something tantivy cannot open is an error; the caller rebuilds.
    pub fn open_or_create(dir: &Path) -> Result<TextIndex, IndexError> {
        let err = |what, e: &dyn std::fmt::Display| IndexError { path: dir.to_owned(), what, reason: e.to_string() };
        let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true);
        let (wanted, id, text) = schema();
        let index = if empty {
            std::fs::create_dir_all(dir).map_err(|e| err("cannot be created", &e))?;
            Index::create_in_dir(dir, wanted).map_err(|e| err("cannot be created", &e))?
        } else {
            let index = Index::open_in_dir(dir).map_err(|e| err("cannot be opened", &e))?;
            if index.schema() != wanted {
                return Err(err("has another schema", &"written by another Keel version"));
            }
            index
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| err("cannot be read", &e))?;
        Ok(TextIndex { dir: dir.to_owned(), index, reader, writing: Mutex::new(()), id, text })
    }

    /// Deletes the folder and starts empty.
    pub fn recreate(dir: &Path) -> Result<TextIndex, IndexError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| IndexError { path: dir.to_owned(), what: "cannot be removed", reason: e.to_string() })?;
        }
        TextIndex::open_or_create(dir)
    }

    fn err(&self, what: &'static str, e: impl std::fmt::Display) -> IndexError {
        let reason = e.to_string();
        // tantivy wraps the OS error in its own text: a full disk is recognised by the OS's words for it.
        let what = if IndexError::says_disk_full(&reason) { "cannot be written because the disk holding it is full" } else { what };
        IndexError { path: self.dir.clone(), what, reason }
    }

    /// The store generation of the last commit, `None` for a new index.
    pub fn generation(&self) -> Result<Option<i64>, IndexError> {
        let metas = self.index.load_metas().map_err(|e| self.err("has unreadable metadata", e))?;
        Ok(metas.payload.and_then(|p| p.parse().ok()))
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// A writer for one batch of changes. Another Keel process may hold tantivy's lock for a moment; it is
    /// waited for (up to 10 s) rather than failed.
    ///
    /// A process killed inside a commit leaves the files it had written (a segment's `<id>.<opstamp>.del`) on
    /// disk but not in `meta.json`. The next commit starts again from the same opstamp, would write a file of the
    /// same name, and tantivy refuses to overwrite it (`FileAlreadyExists`). So before any change, while holding
    /// the lock, tantivy's garbage collection removes every file it manages that no commit refers to.
    fn writer(&self) -> Result<IndexWriter, IndexError> {
        let mut waited = 0;
        loop {
            match self.index.writer_with_num_threads(1, 32_000_000) {
                Ok(w) => {
                    w.garbage_collect_files().wait().map_err(|e| self.err("cannot be cleaned of a killed commit's files", e))?;
                    return Ok(w);
                }
                Err(tantivy::TantivyError::LockFailure(..)) if waited < 200 => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    waited += 1;
                }
                Err(e) => return Err(self.err("cannot be written", e)),
            }
        }
    }

    fn commit(&self, mut writer: IndexWriter, generation: i64) -> Result<(), IndexError> {
        let mut commit = writer.prepare_commit().map_err(|e| self.err("cannot be committed", e))?;
        commit.set_payload(&generation.to_string());
        commit.commit().map_err(|e| self.err("cannot be committed", e))?;
        writer.wait_merging_threads().map_err(|e| self.err("cannot be committed", e))?;
        self.reader.reload().map_err(|e| self.err("cannot be reloaded", e))
    }

    /// Replaces (or removes, when `text` is `None`) the documents of these items, then commits at `generation`.
    pub fn apply(&self, changes: &[(i64, Option<&str>)], generation: i64) -> Result<(), IndexError> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let writer = self.writer()?;
        for (id, text) in changes {
            writer.delete_term(Term::from_field_u64(self.id, *id as u64));
            if let Some(text) = text {
                writer.add_document(doc!(self.id => *id as u64, self.text => *text)).map_err(|e| self.err("cannot be written", e))?;
            }
        }
        self.commit(writer, generation)
    }

    /// Fills an empty index from `next_page` (pages of `(id, text)` until `None`) and commits at `generation`.
    pub fn fill(
        &self,
        next_page: &mut dyn FnMut() -> Result<Option<Vec<(i64, String)>>, crate::store::StoreError>,
        generation: i64,
    ) -> Result<Result<(), crate::store::StoreError>, IndexError> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let writer = self.writer()?;
        loop {
            match next_page() {
                Err(e) => return Ok(Err(e)),
                Ok(None) => break,
                Ok(Some(page)) => {
                    for (id, text) in page {
                        writer
                            .add_document(doc!(self.id => id as u64, self.text => text.as_str()))
                            .map_err(|e| self.err("cannot be written", e))?;
                    }
                }
            }
        }
        self.commit(writer, generation).map(Ok)
    }

    /// Re-reads the last commit (another process may have written one).
    pub fn refresh(&self) -> Result<(), IndexError> {
        self.reader.reload().map_err(|e| self.err("cannot be reloaded", e))
    }

    /// The `k` best items for `query` by BM25, best first. Query syntax errors are forgiven (lenient parsing),
    /// so any user text is a valid query.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(i64, f32)>, IndexError> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parser = QueryParser::for_index(&self.index, vec![self.text]);
        let (q, _) = parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let top = searcher.search(&q, &TopDocs::with_limit(k).order_by_score()).map_err(|e| self.err("cannot be searched", e))?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let ids = searcher.segment_reader(addr.segment_ord).fast_fields().u64("id").map_err(|e| self.err("cannot be searched", e))?;
            if let Some(id) = ids.first(addr.doc_id) {
                out.push((id as i64, score));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    fn copy_index(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for name in files(from) {
            if !name.ends_with(".lock") {
                std::fs::copy(from.join(&name), to.join(&name)).unwrap();
            }
        }
    }

    /// The state a kill inside a commit leaves: the commit's new delete file written and registered as managed,
    /// `meta.json` not yet replaced. It is built exactly: the same index is copied twice, one copy commits, and
    /// the files that commit created are planted in the other with tantivy's record of them.
    #[test]
    fn a_commit_killed_after_writing_its_delete_file_does_not_block_the_next_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, done, killed) = (tmp.path().join("base"), tmp.path().join("done"), tmp.path().join("killed"));
        let index = TextIndex::open_or_create(&base).unwrap();
        index.apply(&[(1, Some("red ladder")), (2, Some("blue barn"))], 1).unwrap();
        drop(index);
        copy_index(&base, &done);
        copy_index(&base, &killed);

        let before = files(&done);
        TextIndex::open_or_create(&done).unwrap().apply(&[(1, None)], 2).unwrap();
        let made: Vec<String> = files(&done).difference(&before).filter(|n| n.ends_with(".del")).cloned().collect();
        assert_eq!(made.len(), 1, "the delete commit writes one delete file: {made:?}");
        std::fs::copy(done.join(&made[0]), killed.join(&made[0])).unwrap();
        let managed = killed.join(".managed.json");
        let mut names: Vec<String> = serde_json::from_slice(&std::fs::read(&managed).unwrap()).unwrap();
        names.push(made[0].clone());
        std::fs::write(&managed, serde_json::to_vec(&names).unwrap()).unwrap();

        // Control: the planted file is the one the next commit wants, and tantivy alone refuses to overwrite it.
        let raw = Index::open_in_dir(&killed).unwrap();
        let mut w: IndexWriter = raw.writer_with_num_threads(1, 32_000_000).unwrap();
        let (_, id, _) = schema();
        w.delete_term(Term::from_field_u64(id, 1));
        let refused = w.commit().expect_err("tantivy overwrites an orphaned delete file").to_string();
        assert!(refused.contains("FileAlreadyExists"), "{refused}");
        drop(w);
        drop(raw);

        let index = TextIndex::open_or_create(&killed).unwrap();
        index.apply(&[(1, None)], 2).unwrap();
        assert_eq!(index.generation().unwrap(), Some(2));
        assert_eq!(index.search("ladder", 5).unwrap(), vec![]);
        assert_eq!(index.search("barn", 5).unwrap().iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
    }
}
