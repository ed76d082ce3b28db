//! The entry points of the fuzz targets (`fuzz/`, cargo-fuzz and libFuzzer) and of the test that replays their
//! committed corpora on stable (`tests/integration/fuzz_corpus.rs`). Not part of Keel's API.
//!
//! Each function takes arbitrary bytes and runs one parser of untrusted input through the product's own code:
//! errors are the expected outcome and ignored; a panic, a hang or unbounded memory is a bug. A few targets also
//! assert a property the code promises (normalisation is idempotent, a message's text never becomes a control
//! token), so that a broken promise is a crash too. No target loads model weights; `tokenizer` reads the
//! built-in chat model's metadata (its vocabulary and chat template) from `KEEL_MODELS_DIR`.

#![doc(hidden)]

use std::cell::Cell;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::Stream;
use serde_json::Value;

use crate::interface::guard::{self, Source};
use crate::interface::normalise::{self, Destination};
use crate::llm::local::{encode_messages, read_header_from, LocalModel};
use crate::llm::template::ChatTemplate;
use crate::llm::tokenizer::GgufTokenizer;
use crate::llm::{ChatMessage, Role};
use crate::memory::ingest::{self, Format};
use crate::tools::{self, CallContext, Tool, Toolbox};

/// The GGUF header reader and loader: the model library's `inspect`, the loader (header checks, tokenizer,
/// chat template, tensor types, weights) and, whatever the architecture, the tokenizer and template built
/// from the file's metadata.
pub fn gguf(data: &[u8]) {
    let path = Path::new("fuzz.gguf");
    let _ = crate::models::library::inspect_from(&mut Cursor::new(data), path);
    if let Ok((content, _)) = read_header_from(&mut Cursor::new(data), path) {
        let _ = crate::llm::engine::unsupported_tensors(&content);
        if let Ok(tokenizer) = GgufTokenizer::from_gguf(&content) {
            let _ = tokenizer.encode("Hello <|im_start|>user 12345 héllo\n");
            let _ = tokenizer.encode_plain("Hello <|im_start|>user");
            let _ = tokenizer.decode(&[0, 1, 2, tokenizer.eos_id, u32::MAX]);
            let _ = tokenizer.token_bytes();
        }
        let source = content.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok());
        if let Some(source) = source {
            if let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") {
                let _ = template.render(&[ChatMessage::new(Role::User, "hi")]);
            }
        }
    }
    if let Ok(model) = LocalModel::load_from(Cursor::new(data), path, &mut |_, _| {}) {
        let _ = model.encode_prompt(&[ChatMessage::new(Role::User, "hi")]);
    }
}

/// The built-in chat model's tokenizer and chat template, read once from its GGUF metadata (no weights).
fn chat_model() -> &'static (GgufTokenizer, ChatTemplate, Vec<u32>) {
    static MODEL: OnceLock<(GgufTokenizer, ChatTemplate, Vec<u32>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = std::env::var_os("KEEL_MODELS_DIR")
            .map(PathBuf::from)
            .expect("KEEL_MODELS_DIR must name the fetched models (scripts/fuzz.sh and scripts/test.sh set it)");
        let path = dir.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
        let (content, _) = crate::llm::local::read_header(&path).unwrap_or_else(|e| panic!("{e}"));
        let tokenizer = GgufTokenizer::from_gguf(&content).expect("the built-in model's tokenizer");
        let source = content.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()).expect("a template");
        let token = |id: u32| tokenizer.token_text(id).unwrap_or_default();
        let bos = tokenizer.bos_id.map(token).unwrap_or_default();
        let template = ChatTemplate::new(source, &bos, &token(tokenizer.eos_id)).expect("the built-in template");
        // Control and added tokens: those `token_bytes` has no bytes for.
        let special = tokenizer.token_bytes().iter().enumerate().filter(|(_, b)| b.is_none()).map(|(i, _)| i as u32).collect();
        (tokenizer, template, special)
    })
}

/// The tokenizer and prompt encoding: the input as text is encoded (with and without control markers) and
/// decoded, and the input as ids decoded. Asserts the promise of `encode_prompt`: whatever a message says, the
/// prompt holds exactly the control tokens the template puts there.
pub fn tokenizer(data: &[u8]) {
    let (tokenizer, template, special) = chat_model();
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = tokenizer.encode(&text) {
        let _ = tokenizer.decode(&ids);
    }
    if let Ok(ids) = tokenizer.encode_plain(&text) {
        assert!(!ids.iter().any(|id| special.contains(id)), "encode_plain made a control token of {text:?}");
        let _ = tokenizer.decode(&ids);
    }
    let ids: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let _ = tokenizer.decode(&ids);

    let controls = |messages: &[ChatMessage]| -> Option<usize> {
        let ids = encode_messages(template, tokenizer, messages).ok()?;
        Some(ids.iter().filter(|id| special.contains(id)).count())
    };
    let messages = |content: &str| {
        vec![ChatMessage::new(Role::System, "You are Keel."), ChatMessage::new(Role::User, content), ChatMessage::new(Role::Assistant, content)]
    };
    if let (Some(with_text), Some(plain)) = (controls(&messages(&text)), controls(&messages("x"))) {
        assert_eq!(with_text, plain, "a message's text changed the prompt's control tokens: {text:?}");
    }
}

/// Normalisation, the guard's pattern layer and windows, the front door's checks, intent rules: everything of
/// `interface` that runs without an embedding model. Asserts that normalisation is idempotent.
pub fn guard_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let once = normalise::normalise(&text, Destination::Model);
    let twice = normalise::normalise(&once.text, Destination::Model);
    assert_eq!(twice.text, once.text, "normalise is not idempotent on {text:?}");
    assert!(twice.changes.is_empty(), "a second normalise changed {:?}: {:?}", once.text, twice.changes);
    let _ = normalise::normalise(&text, Destination::Verbatim);
    let _ = normalise::skeleton(&text);
    let windows = guard::windows(&text);
    assert!(windows.len() <= guard::MAX_WINDOWS, "{} windows", windows.len());
    let scanned = guard::scanned_text(&text, &once.text);
    for source in [Source::User, Source::Document, Source::Web] {
        let _ = guard::pattern_scan(&scanned, source);
        let _ = crate::interface::accept(&text, source);
    }
    let _ = crate::interface::intent::detect(&once.text, None, None);
    let _ = crate::interface::clean_document(&text);
}

/// The calculator's parser and evaluator, on the text and on the expression the router reads in it.
pub fn calculator(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = tools::calculator::evaluate(&text);
    if let Some(expression) = crate::interface::arith::expression(&text) {
        let _ = tools::calculator::evaluate(&expression);
    }
}

/// The remote backend's stream: the bytes arrive in pieces (the first byte sets their size), are parsed as
/// Server-Sent Events, and each event's data goes through the chunk parser and the reply's assembly.
pub fn sse(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else { return };
    let piece = usize::from(first % 64) + 1;
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> = body.chunks(piece).map(|c| Ok(c.to_vec())).collect();
    let mut events = std::pin::pin!(futures_util::stream::iter(pieces).eventsource());
    let mut reply = crate::llm::remote::Assembly::default();
    let started = Instant::now();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // The source stream is always ready, so the parser never waits.
    while let Poll::Ready(Some(event)) = events.as_mut().poll_next(&mut cx) {
        let Ok(event) = event else { return };
        match reply.event(&event.data, started, &mut |_| {}) {
            Ok(false) => {}
            Ok(true) | Err(_) => break,
        }
    }
    let _ = reply.finish(false, started);
}

/// A memory port for the memory tools that remembers nothing.
struct NoMemory;

impl tools::memory::MemoryPort for NoMemory {
    fn search(&self, _query: &str, _limit: u32) -> Result<Vec<tools::memory::MemoryHit>, String> {
        Ok(Vec::new())
    }
    fn save(&self, _text: &str) -> Result<i64, String> {
        Ok(1)
    }
    fn exists(&self, _id: i64) -> bool {
        false
    }
}

/// The built-in tools (their real schemas), and the toolbox holding them.
fn builtin_tools() -> &'static (Vec<Arc<dyn Tool>>, Toolbox) {
    static TOOLS: OnceLock<(Vec<Arc<dyn Tool>>, Toolbox)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let mut all: Vec<Arc<dyn Tool>> =
            vec![Arc::new(tools::calculator::Calculator::new()), Arc::new(tools::clock::Clock::new())];
        all.extend(tools::memory::memory_tools(Arc::new(NoMemory)));
        // Validation never touches the folder; the files tools are not called here.
        all.extend(tools::files::file_tools(std::env::temp_dir().join("keel-fuzz-files")));
        all.push(Arc::new(tools::http::HttpFetch::new(false)));
        let mut toolbox = Toolbox::new();
        for tool in &all {
            toolbox.add(tool.clone()).expect("a built-in tool's schemas compile");
        }
        (all, toolbox)
    })
}

/// Tool arguments: the first byte picks a built-in tool, the rest is its arguments as JSON, validated against
/// its input schema; arguments that pass are given to the tools without side effects (calculator, clock), and
/// the result fitting is run on them.
pub fn tool_args(data: &[u8]) {
    let Some((&first, json)) = data.split_first() else { return };
    let (all, toolbox) = builtin_tools();
    let tool = &all[usize::from(first) % all.len()];
    let name = tool.spec().name.clone();
    let Ok(mut args) = serde_json::from_slice::<Value>(json) else { return };
    if toolbox.validate_arguments(&name, &args).is_ok() && (name == "calculator" || name == "datetime") {
        let _ = tool.call(&args, &CallContext::new(Duration::from_secs(5)));
    }
    let _ = tools::json_len(&args);
    let _ = tools::fit_result(&mut args, usize::from(first) * 4);
}

thread_local! {
    /// Set while the PDF parser runs: the product catches its panics, so they must not end the fuzzer.
    static PARSER_MAY_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Keeps panics quiet while [`PARSER_MAY_PANIC`] is set, and otherwise hands them to the hook already there
/// (libFuzzer's, which aborts; the test harness's).
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PARSER_MAY_PANIC.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// One document importer: text extraction (with the same catch of the parser's panics as the import) and
/// chunking.
fn import(data: &[u8], format: Format, name: &str) {
    let extracted = if format == Format::Pdf {
        install_quiet_hook();
        PARSER_MAY_PANIC.with(|p| p.set(true));
        let result = std::panic::catch_unwind(|| ingest::extract_bytes(data.to_vec(), format));
        PARSER_MAY_PANIC.with(|p| p.set(false));
        // `extract_bytes` catches the parser's own panics; one that gets out of it is Keel's, and a crash.
        match result {
            Ok(r) => r,
            Err(e) => {
                let what = e.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| e.downcast_ref::<String>().cloned());
                panic!("importing a PDF panicked outside the parser: {}", what.unwrap_or_default());
            }
        }
    } else {
        ingest::extract_bytes(data.to_vec(), format)
    };
    if let Ok(text) = extracted {
        let _ = ingest::chunk(&text, format);
        let _ = ingest::title(Path::new(name), &text);
    }
}

pub fn import_pdf(data: &[u8]) {
    import(data, Format::Pdf, "fuzz.pdf");
}

pub fn import_html(data: &[u8]) {
    import(data, Format::Html, "fuzz.html");
}

pub fn import_md(data: &[u8]) {
    import(data, Format::Markdown, "fuzz.md");
}

/// The memory export reader (`keel memory restore`): line by line, bounded lines, each an item whose text
/// goes through the front door.
pub fn memory_export(data: &[u8]) {
    let _ = crate::app::memory::read_export(&mut Cursor::new(data), "fuzz.jsonl");
}

/// The targets by name, for the corpus replay test.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("gguf", gguf),
    ("tokenizer", tokenizer),
    ("guard_text", guard_text),
    ("calculator", calculator),
    ("sse", sse),
    ("tool_args", tool_args),
    ("import_pdf", import_pdf),
    ("import_html", import_html),
    ("import_md", import_md),
    ("memory_export", memory_export),
];
