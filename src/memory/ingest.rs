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
/// Files larger than this are refused. 128 MiB holds a 100 MB log or book dump; the import then holds the
/// text about three times over (read, normalised, chunked), well inside 1 GB.
pub const MAX_FILE_BYTES: u64 = 128 * 1024 * 1024;

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
    extract_bytes(bytes, format)
}

/// The cleaned text of a file's bytes in `format` (the fuzz targets of the importers call this directly).
pub fn extract_bytes(bytes: Vec<u8>, format: Format) -> Result<String, String> {
    let text = match format {
        Format::Text | Format::Markdown => String::from_utf8(bytes)
            .map_err(|e| format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))?,
        Format::Html => html2text::config::plain_no_decorate()
            .string_from_read(&bytes[..], usize::MAX / 2)
            .map_err(|e| format!("is not readable HTML: {e}"))?,
        Format::Pdf if pdf_recurses_without_end(&bytes) => {
            return Err("is a PDF whose pages or drawings refer to themselves (a damaged or hostile file)".into())
        }
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

/// How deep pdf-extract may follow a page's /Parent chain, or XObjects drawing XObjects.
const MAX_PDF_NESTING: usize = 32;

/// Whether pdf-extract would recurse without end on this PDF. It follows a page's /Parent chain for inherited
/// attributes, and runs an XObject's content (`Do`) inside the content drawing it, both recursively and without
/// a limit: a cycle (a page that is its own parent, a form that draws itself) overflows the stack, which no
/// `catch_unwind` catches, and the whole app aborts (found by the import_pdf fuzz target). Conservative: an
/// XObject without resources of its own that draws XObjects counts too, since its names resolve in its caller's.
fn pdf_recurses_without_end(bytes: &[u8]) -> bool {
    use pdf_extract::{content::Content, Dictionary, Document, Object, ObjectId};
    use std::collections::HashMap;
    // A file that does not load is the parser's to report.
    let Ok(mut doc) = Document::load_mem(bytes) else { return false };
    if doc.is_encrypted() {
        let _ = doc.decrypt("");
    }
    let dict_of = |o: &Object| -> Option<Dictionary> {
        match o {
            Object::Reference(id) => doc.get_dictionary(*id).ok().cloned(),
            Object::Dictionary(d) => Some(d.clone()),
            _ => None,
        }
    };
    let dicts = || doc.objects.values().filter_map(|o| match o {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    });
    for dict in dicts() {
        let mut at = dict;
        for steps in 0.. {
            let Some(parent) = at.get(b"Parent").ok().and_then(|p| p.as_reference().ok()) else { break };
            if steps >= MAX_PDF_NESTING {
                return true;
            }
            match doc.get_dictionary(parent) {
                Ok(d) => at = d,
                Err(_) => break,
            }
        }
    }
    // The XObjects a resources dictionary names.
    let xobjects = |resources: &Dictionary| -> Vec<ObjectId> {
        let Some(names) = resources.get(b"XObject").ok().and_then(dict_of) else { return Vec::new() };
        names.iter().filter_map(|(_, v)| v.as_reference().ok()).collect()
    };
    let mut drawn: Vec<ObjectId> =
        dicts().filter_map(|d| d.get(b"Resources").ok().and_then(dict_of)).flat_map(|r| xobjects(&r)).collect();
    // Each XObject's edges: the XObjects its own resources name (it may draw any of them).
    let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    while let Some(id) = drawn.pop() {
        if edges.contains_key(&id) {
            continue;
        }
        let Ok(Object::Stream(stream)) = doc.get_object(id) else { continue };
        let named = match stream.dict.get(b"Resources").ok().and_then(dict_of) {
            Some(resources) => xobjects(&resources),
            None => {
                let content = if stream.filters().is_ok() {
                    stream.decompressed_content().unwrap_or_else(|_| stream.content.clone())
                } else {
                    stream.content.clone()
                };
                if Content::decode(&content).is_ok_and(|c| c.operations.iter().any(|op| op.operator == "Do")) {
                    return true;
                }
                Vec::new()
            }
        };
        drawn.extend(named.iter().copied());
        edges.insert(id, named);
    }
    // The longest chain of XObjects drawing XObjects, a cycle being endless; without recursion, for the same
    // reason as above.
    let mut depth: HashMap<ObjectId, usize> = HashMap::new();
    for &start in edges.keys() {
        if depth.contains_key(&start) {
            continue;
        }
        let mut stack: Vec<(ObjectId, usize)> = vec![(start, 0)];
        while let Some(&(node, next)) = stack.last() {
            let out = &edges[&node];
            if let Some(&child) = out.get(next) {
                stack.last_mut().expect("not empty").1 += 1;
                if stack.iter().any(|(n, _)| *n == child) {
                    return true;
                }
                if edges.contains_key(&child) && !depth.contains_key(&child) {
                    stack.push((child, 0));
                }
            } else {
                let d = 1 + out.iter().filter_map(|c| depth.get(c)).max().copied().unwrap_or(0);
                if d > MAX_PDF_NESTING {
                    return true;
                }
                depth.insert(node, d);
                stack.pop();
            }
        }
    }
    false
}

/// The chunks of a document's text, in order, without duplicates. A run of more than [`CHUNK_MAX_CHARS`]
/// characters without white space (a base64 blob, a minified file, one very long "word") is cut by position
/// into chunks of that size with the usual overlap, and the splitter gets the text around it: its search for
/// a boundary inside such a run takes time quadratic in the run (a 2 MB one-word file took 242 s).
pub fn chunk(text: &str, format: Format) -> Vec<String> {
    let config = || {
        ChunkConfig::new(CHUNK_MIN_CHARS..CHUNK_MAX_CHARS).with_overlap(CHUNK_OVERLAP_CHARS).expect("overlap is smaller than the chunk size")
    };
    let (markdown, plain) = (MarkdownSplitter::new(config()), TextSplitter::new(config()));
    // Slices of `text` until the end: only the chunks kept are copied, once.
    let mut pieces: Vec<&str> = Vec::new();
    for (segment, long) in segments(text) {
        if long {
            cut_by_position(segment, &mut pieces);
            continue;
        }
        for section in sections(segment, SECTION_BYTES) {
            match format {
                Format::Markdown => pieces.extend(markdown.chunks(section)),
                _ => pieces.extend(plain.chunks(section)),
            }
        }
    }
    let mut seen = HashSet::new();
    pieces.into_iter().map(str::trim).filter(|c| !c.is_empty() && seen.insert(*c)).map(str::to_owned).collect()
}

/// The most text handed to the splitter at once. Its time grows faster than the text (10 MB took 3 s, 40 MB
/// 67 s), so a long text is split in sections of about this size, each cut at a paragraph break where there is
/// one: chunks never span two sections, which costs at most one chunk's overlap per section.
const SECTION_BYTES: usize = 256 * 1024;

/// `text` in consecutive sections of at most `max` bytes (more only for a run without any white space, which
/// [`segments`] has already cut out), each ending after the last blank line, else the last line end, else the
/// last white space inside the limit.
fn sections(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut limit = max;
        while !rest.is_char_boundary(limit) {
            limit -= 1;
        }
        let window = &rest[..limit];
        let cut = window
            .rfind("\n\n")
            .map(|i| i + 2)
            .or_else(|| window.rfind('\n').map(|i| i + 1))
            .or_else(|| window.rfind(char::is_whitespace).map(|i| i + window[i..].chars().next().map_or(1, char::len_utf8)))
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

/// Whether `c` continues a word that has no boundary inside it: a letter or a digit of a script that separates
/// words (ideographs, kana and hangul have a word boundary at every character, so text-splitter cuts them
/// itself; white space and punctuation end a word).
fn joins_word(c: char) -> bool {
    c.is_alphanumeric()
        && !matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF)
}

/// `text` as consecutive segments, each marked `true` when it is one word (letters and digits without a
/// boundary, see [`joins_word`]) of more than [`CHUNK_MAX_CHARS`] characters.
fn segments(text: &str) -> Vec<(&str, bool)> {
    // The long runs, as byte ranges.
    let mut long: Vec<(usize, usize)> = Vec::new();
    let (mut run_start, mut run_chars) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        if !joins_word(c) {
            if run_chars > CHUNK_MAX_CHARS {
                long.push((run_start, i));
            }
            run_chars = 0;
        } else {
            if run_chars == 0 {
                run_start = i;
            }
            run_chars += 1;
        }
    }
    if run_chars > CHUNK_MAX_CHARS {
        long.push((run_start, text.len()));
    }
    let mut out = Vec::new();
    let mut at = 0;
    for (start, end) in long {
        if start > at {
            out.push((&text[at..start], false));
        }
        out.push((&text[start..end], true));
        at = end;
    }
    if at < text.len() || out.is_empty() {
        out.push((&text[at..], false));
    }
    out
}

/// Chunks of [`CHUNK_MAX_CHARS`] characters overlapping by [`CHUNK_OVERLAP_CHARS`], cut on character
/// boundaries; the last one ends with the run. Reads the run once, holding only the chunk's bounds.
fn cut_by_position<'a>(run: &'a str, pieces: &mut Vec<&'a str>) {
    let step = CHUNK_MAX_CHARS - CHUNK_OVERLAP_CHARS;
    // The byte offset of every `step`-th character, and of the run's end.
    let mut starts: Vec<usize> = Vec::new();
    let mut chars = 0usize;
    for (i, _) in run.char_indices() {
        if chars % step == 0 {
            starts.push(i);
        }
        chars += 1;
    }
    // A chunk spans CHUNK_MAX_CHARS characters: from one start to CHUNK_OVERLAP_CHARS past the next one.
    let offset_of = |from: usize, n: usize| run[from..].char_indices().nth(n).map_or(run.len(), |(i, _)| from + i);
    for (k, &start) in starts.iter().enumerate() {
        let end = offset_of(start, CHUNK_MAX_CHARS);
        pieces.push(&run[start..end]);
        if end == run.len() || k * step + CHUNK_MAX_CHARS >= chars {
            break;
        }
    }
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
    fn a_run_without_white_space_is_cut_by_position_and_the_text_around_it_is_split_as_usual() {
        let prose = (0..30).map(|i| format!("Sentence number {i} talks about topic {}.", i % 7)).collect::<Vec<_>>().join(" ");
        let blob: String = (0..5_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect::<String>() + "éñ";
        let text = format!("{prose}\n\n{blob}\n\n{prose} The end.");
        let chunks = chunk(&text, Format::Markdown);
        assert!(chunks.iter().all(|c| c.chars().count() <= CHUNK_MAX_CHARS));
        let blob_chunks: Vec<&String> = chunks.iter().filter(|c| !c.contains(' ')).collect();
        // 5,002 characters in steps of 800 with 900-character chunks: 7 chunks, overlapping by 100.
        assert_eq!(blob_chunks.len(), 7);
        for w in blob_chunks.windows(2) {
            assert_eq!(w[0][w[0].len() - CHUNK_OVERLAP_CHARS..], w[1][..CHUNK_OVERLAP_CHARS]);
        }
        assert!(blob_chunks.last().unwrap().ends_with("éñ"));
        // Every character of the text is in some chunk, in order: the chunks less their overlaps rebuild it.
        let rebuilt: String = blob_chunks.iter().enumerate().map(|(i, c)| if i == 0 { c.as_str() } else { &c[CHUNK_OVERLAP_CHARS..] }).collect();
        assert_eq!(rebuilt, blob);
        assert!(chunks.first().unwrap().starts_with("Sentence number 0") && chunks.last().unwrap().ends_with("The end."));
        assert_eq!(segments("short words only"), vec![("short words only", false)]);
        // Chinese prose has no spaces, and is not one word: it is left to the splitter, which cuts at sentences.
        let chinese = "我们在海边散步，看见了许多船只。".repeat(200);
        assert_eq!(segments(&chinese), vec![(chinese.as_str(), false)]);
        assert!(chunk(&chinese, Format::Text).iter().all(|c| c.ends_with('。')));
    }

    #[test]
    fn a_two_megabyte_word_is_chunked_in_linear_time() {
        // Digits of consecutive numbers: no two chunks alike, so none is dropped as a duplicate.
        let mut word = String::new();
        let mut n = 0u64;
        while word.len() < 2_000_000 {
            word.push_str(&n.to_string());
            n += 1;
        }
        let started = std::time::Instant::now();
        let chunks = chunk(&word, Format::Text);
        let step = CHUNK_MAX_CHARS - CHUNK_OVERLAP_CHARS;
        assert_eq!(chunks.len(), (word.len() - CHUNK_MAX_CHARS).div_ceil(step) + 1);
        // text-splitter alone took minutes; cut by position it is milliseconds even unoptimised.
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_long_text_is_split_in_sections_at_paragraph_breaks_and_every_line_is_in_a_chunk() {
        let lines: Vec<String> = (0..16_000).map(|i| format!("Line {i} of the station log reads {} kPa at valve {}.", i * 7 % 1000, i % 53)).collect();
        let text = lines.chunks(5).map(|p| p.join("\n")).collect::<Vec<_>>().join("\n\n");
        assert!(text.len() > 3 * SECTION_BYTES);
        let parts = sections(&text, SECTION_BYTES);
        assert_eq!(parts.concat(), text, "the sections are the text, in order");
        assert!(parts.len() >= 4 && parts.iter().all(|p| p.len() <= SECTION_BYTES));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.ends_with("\n\n")), "cut at paragraph breaks");
        let chunks = chunk(&text, Format::Text);
        assert!(chunks.iter().all(|c| c.chars().count() <= CHUNK_MAX_CHARS));
        let whole: HashSet<&str> = chunks.iter().flat_map(|c| c.lines()).collect();
        assert_eq!(lines.iter().find(|l| !whole.contains(l.as_str())), None, "every line is whole in some chunk");
        // Without blank lines or line ends, a section ends at a space; a text under the limit is one section.
        let words = "word ".repeat(100);
        let cut = sections(&words, 64);
        assert_eq!(cut.concat(), words);
        assert!(cut.iter().all(|p| p.len() <= 64 && p.ends_with(' ')));
        assert_eq!(sections("short", 64), vec!["short"]);
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
