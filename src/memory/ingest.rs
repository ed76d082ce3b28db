//! Documents into chunks: which files an import takes, their text (plain, Markdown, PDF, HTML) and the chunks
//! that text is split into.
//!
//! Splitting is text-splitter's (Markdown-aware for `.md`): chunks of 400–900 characters on the largest semantic
//! boundary that fits (section, paragraph, sentence, word), with 100 characters of overlap so that a fact cut
//! at a boundary is still whole in one chunk. 900 characters of English is about 200 word pieces, under the
//! embedding model's 256. Identical chunks of one document are kept once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use crate::interface;

pub const CHUNK_MIN_CHARS: usize = 400;
pub const CHUNK_MAX_CHARS: usize = 900;
pub const CHUNK_OVERLAP_CHARS: usize = 100;
/// Files larger than this are refused (a 50 MB text file is almost certainly not a document to remember).
pub const MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Pdf,
    Html,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" => Format::Text,
            "md" | "markdown" => Format::Markdown,
            "pdf" => Format::Pdf,
            "html" | "htm" => Format::Html,
            _ => return None,
        })
    }
}

/// The supported files under `paths` (folders recursively, hidden entries skipped), sorted, each once; and the
/// paths that were given explicitly but cannot be imported, with why.
pub fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Err(e) => refused.push((p.clone(), format!("cannot be read: {e}"))),
            Ok(m) if m.is_dir() => walk(p, &mut files, &mut refused),
            Ok(_) if Format::of(p).is_some() => files.push(p.clone()),
            Ok(_) => refused.push((p.clone(), "is not a .txt, .md, .pdf or .html file".into())),
        }
    }
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    files.sort();
    (files, refused)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, refused: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return refused.push((dir.to_owned(), format!("cannot be listed: {e}"))),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, refused),
            Ok(t) if t.is_file() && Format::of(&path).is_some() => files.push(path),
            _ => {}
        }
    }
}

/// The cleaned text of one file, or why it has none.
pub fn extract(path: &Path) -> Result<String, String> {
    let format = Format::of(path).ok_or("is not a .txt, .md, .pdf or .html file")?;
    let size = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("is {} MB; the limit is {} MB", size / 1_000_000, MAX_FILE_BYTES / 1_000_000));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let text = match format {
        Format::Text | Format::Markdown => String::from_utf8(bytes)
            .map_err(|e| format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))?,
        Format::Html => html2text::config::plain_no_decorate()
            .string_from_read(&bytes[..], usize::MAX / 2)
            .map_err(|e| format!("is not readable HTML: {e}"))?,
        // The PDF parser can panic on malformed files; that is the file's fault, not a reason to stop the import.
        Format::Pdf => std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&bytes))
            .map_err(|_| "is a PDF the parser could not handle".to_string())?
            .map_err(|e| format!("is not a readable PDF: {e}"))?,
    };
    let text = interface::clean_document(&text);
    if text.trim().is_empty() {
        return Err("has no text (a scanned PDF needs OCR first)".into());
    }
    Ok(text)
}

/// The chunks of a document's text, in order, without duplicates.
pub fn chunk(text: &str, format: Format) -> Vec<String> {
    let config = ChunkConfig::new(CHUNK_MIN_CHARS..CHUNK_MAX_CHARS)
        .with_overlap(CHUNK_OVERLAP_CHARS)
        .expect("overlap is smaller than the chunk size");
    let pieces: Vec<String> = match format {
        Format::Markdown => MarkdownSplitter::new(config).chunks(text).map(str::to_owned).collect(),
        _ => TextSplitter::new(config).chunks(text).map(str::to_owned).collect(),
    };
    let mut seen = HashSet::new();
    pieces
        .into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && seen.insert(c.clone()))
        .collect()
}

/// A title for a document: its first non-empty line, shortened, or the file name.
pub fn title(path: &Path, text: &str) -> String {
    let line = text.lines().map(|l| l.trim().trim_start_matches('#').trim()).find(|l| !l.is_empty());
    match line {
        Some(l) if l.chars().count() <= 80 => l.to_owned(),
        Some(l) => format!("{}…", l.chars().take(79).collect::<String>()),
        None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_size_and_overlap() {
        let text = (0..200).map(|i| format!("Sentence number {i} talks about topic {}.", i % 7)).collect::<Vec<_>>().join(" ");
        let chunks = chunk(&text, Format::Text);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.chars().count() <= CHUNK_MAX_CHARS, "chunk of {} chars", c.chars().count());
        }
        // Consecutive chunks share text (the overlap).
        let shared = chunks.windows(2).filter(|w| w[1].contains(w[0].split(". ").last().unwrap_or(""))).count();
        assert!(shared > 0);
    }

    #[test]
    fn duplicate_chunks_are_kept_once() {
        let para = "x".repeat(300);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let chunks = chunk(&text, Format::Text);
        let unique: HashSet<_> = chunks.iter().collect();
        assert_eq!(unique.len(), chunks.len());
    }
}
