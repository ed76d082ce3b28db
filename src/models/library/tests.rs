//! Tests of the model library: GGUF inspection, adding, listing and deleting models.

use super::*;
use std::time::{Duration, SystemTime};

/// A minimal GGUF v3 file with one 2x4 F32 tensor. Layout (all little-endian):
///
/// ```text
/// "GGUF"                      magic, 4 bytes
/// 3u32                        version
/// 1u64                        tensor count
/// 3u64                        metadata entry count
/// metadata entries            key (u64 length + UTF-8), value type u32 (8 = string, 4 = u32), value
///                             (a string is a u64 length + UTF-8):
///                               general.architecture = <architecture>, general.name = "tiny",
///                               <architecture>.context_length = 256u32
/// tensor info                 name (u64 length + UTF-8) "token_embd.weight", dimension count 2u32,
///                             dimensions 4u64 2u64 (innermost first), ggml type 0u32 (F32),
///                             offset 0u64 (from the start of the data section)
/// zero padding                to a multiple of 32 bytes (the default `general.alignment`)
/// tensor data                 8 F32 values, 32 bytes
/// ```
fn tiny_gguf(architecture: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    const STRING: u32 = 8;
    const U32: u32 = 4;
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&3u64.to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend_from_slice(&STRING.to_le_bytes());
    string(&mut out, architecture);
    string(&mut out, "general.name");
    out.extend_from_slice(&STRING.to_le_bytes());
    string(&mut out, "tiny");
    string(&mut out, &format!("{architecture}.context_length"));
    out.extend_from_slice(&U32.to_le_bytes());
    out.extend_from_slice(&256u32.to_le_bytes());
    string(&mut out, "token_embd.weight");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.resize(out.len().div_ceil(32) * 32, 0);
    for i in 0..8u8 {
        out.extend_from_slice(&f32::from(i).to_le_bytes());
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn a_tiny_llama_gguf_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tiny.gguf", &tiny_gguf("llama"));
    let info = inspect(&path).unwrap();
    assert_eq!(info.name, "tiny.gguf");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.quantisation, "F32");
    assert_eq!(info.context_length, Some(256));
    assert_eq!(info.parameters, Some(8));
    assert_eq!(info.gguf_version, 3);
    assert_eq!(info.size_bytes, fs::metadata(&path).unwrap().len());
    assert_eq!(info.checksum, ChecksumState::Unchecked);
}

#[test]
fn files_that_are_not_gguf_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut safetensors = 2u64.to_le_bytes().to_vec();
    safetensors.extend_from_slice(b"{}");
    let cases: [(&str, &[u8], &str); 7] = [
        ("wheel.gguf", b"PK\x03\x04\x14\x00\x00\x00", "zip archive"),
        ("config.gguf", b"{\"architectures\": [\"LlamaForCausalLM\"]}", "JSON"),
        ("page.gguf", b"<!DOCTYPE html><html><body>model</body></html>", "HTML"),
        ("model.safetensors", &safetensors, "safetensors"),
        ("empty.gguf", b"", "empty"),
        ("pointer.gguf", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS"),
        ("notes.gguf", b"just some words", "text file"),
    ];
    for (name, bytes, expected) in cases {
        let path = write(dir.path(), name, bytes);
        match inspect(&path) {
            Err(e @ LibraryError::NotGguf { .. }) => {
                let message = e.to_string();
                assert!(message.contains(name) && message.contains(expected), "{name}: {message}");
                assert!(e.hint().contains("GGUF"), "{name}: {}", e.hint());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // Binary junk that matches nothing known still gets candle's reason.
    let path = write(dir.path(), "junk.gguf", &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(matches!(inspect(&path), Err(LibraryError::NotGguf { .. })));
}

#[test]
fn truncated_and_damaged_ggufs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf("llama");
    // The tensor data cut short: the header reads, the tensor table does not fit the file.
    let path = write(dir.path(), "short.gguf", &bytes[..bytes.len() - 4]);
    match inspect(&path) {
        Err(LibraryError::Truncated { needed, actual, .. }) => {
            assert_eq!((needed, actual), (bytes.len() as u64, bytes.len() as u64 - 4))
        }
        other => panic!("{other:?}"),
    }
    // Cut inside the header (magic, version, tensor count and half the metadata count).
    let path = write(dir.path(), "header.gguf", &bytes[..20]);
    match inspect(&path) {
        Err(e @ LibraryError::Damaged { .. }) => assert!(e.to_string().contains("header.gguf"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unsupported_architecture_names_it_and_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gpt.gguf", &tiny_gguf("gpt2"));
    match inspect(&path) {
        Err(e @ LibraryError::Unsupported { .. }) => {
            let message = e.to_string();
            assert!(message.contains("`gpt2`") && message.contains("llama"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_are_plain_gguf_file_names() {
    for bad in ["", "../x.gguf", "a/b.gguf", "a\\b.gguf", ".hidden.gguf", "model.bin", "a..gguf", "x\n.gguf"] {
        assert!(matches!(check_name(bad), Err(LibraryError::InvalidName { .. })), "{bad:?}");
    }
    for good in ["model.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf", "Model.GGUF"] {
        assert!(check_name(good).is_ok(), "{good:?}");
    }
}

#[test]
fn add_list_verify_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().join("models"));
    let bytes = tiny_gguf("llama");

    // A built-in chat model, fetched and pinned by a manifest.
    fs::create_dir_all(store.root().join("tiny")).unwrap();
    write(&store.root().join("tiny"), "tiny.gguf", &bytes);
    let manifest = Manifest::parse(&format!(
        r#"
        [[model]]
        id = "tiny"
        role = "chat"
        description = "a tiny test model"
        package = "tiny"
        version = "1"
        wheel_sha256 = "unused"
        licence = "MIT"
        [[model.files]]
        name = "tiny.gguf"
        path_in_wheel = "tiny/tiny.gguf"
        size = {}
        sha256 = "{}"
        "#,
        bytes.len(),
        sha(&bytes)
    ))
    .unwrap();

    // Adding copies under the source's name, with progress, and records the sha256.
    let src = write(dir.path(), "mine.gguf", &bytes);
    let mut last = (0, 0);
    let info = add(&store, &src, &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last, (bytes.len() as u64, bytes.len() as u64));
    assert_eq!(info.name, "mine.gguf");
    assert_eq!(info.checksum, ChecksumState::Verified);
    assert_eq!(info.sha256.as_deref(), Some(sha(&bytes).as_str()));
    let stored = user_dir(&store).join("mine.gguf");
    assert_eq!(fs::read(&stored).unwrap(), bytes);
    assert!(fs::read_to_string(with_suffix(&stored, ".sha256")).unwrap().starts_with(&sha(&bytes)));
    assert!(!with_suffix(&stored, ".partial").exists());

    // The same name again is refused; a file that is not GGUF is refused before anything is copied.
    assert!(matches!(add(&store, &src, &mut |_, _| {}), Err(LibraryError::Exists { .. })));
    let junk = write(dir.path(), "junk.gguf", b"{\"not\": \"a model\"}");
    assert!(matches!(add(&store, &junk, &mut |_, _| {}), Err(LibraryError::NotGguf { .. })));
    assert!(!user_dir(&store).join("junk.gguf").exists());
    assert!(!user_dir(&store).join("junk.gguf.partial").exists());

    // A file dropped in by hand is unpinned; one that cannot be read is listed apart.
    write(&user_dir(&store), "manual.gguf", &bytes);
    write(&user_dir(&store), "broken.gguf", b"<html>not found</html>");
    let listed = list(&store, &manifest);
    let names: Vec<_> = listed.models.iter().map(|m| (m.name.as_str(), m.builtin, m.checksum)).collect();
    assert_eq!(
        names,
        [
            ("tiny.gguf", true, ChecksumState::Verified),
            ("manual.gguf", false, ChecksumState::Unpinned),
            ("mine.gguf", false, ChecksumState::Verified),
        ]
    );
    assert_eq!(listed.broken.len(), 1);
    assert_eq!(listed.broken[0].name, "broken.gguf");
    assert!(listed.broken[0].error.contains("HTML"), "{}", listed.broken[0].error);

    // A changed mtime makes the user model unchecked until it is hashed again.
    File::options()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let state = |store: &ModelDir| {
        list(store, &manifest).models.iter().find(|m| m.name == "mine.gguf").map(|m| m.checksum)
    };
    assert_eq!(state(&store), Some(ChecksumState::Unchecked));
    assert_eq!(verify(&store, "mine.gguf", &mut |_, _| {}).unwrap().checksum, ChecksumState::Verified);
    assert_eq!(state(&store), Some(ChecksumState::Verified));
    // Other bytes of the same size: a mismatch.
    let mut other = bytes.clone();
    let last_byte = other.len() - 1;
    other[last_byte] ^= 1;
    fs::write(&stored, &other).unwrap();
    assert_eq!(verify(&store, "mine.gguf", &mut |_, _| {}).unwrap().checksum, ChecksumState::Mismatch);
    assert_eq!(state(&store), Some(ChecksumState::Unchecked));

    // Deleting: only user models, by plain name.
    assert!(matches!(delete(&store, &manifest, "tiny.gguf"), Err(LibraryError::BuiltIn { .. })));
    assert!(matches!(delete(&store, &manifest, "../tiny/tiny.gguf"), Err(LibraryError::InvalidName { .. })));
    assert!(matches!(delete(&store, &manifest, "nope.gguf"), Err(LibraryError::NotFound { .. })));
    delete(&store, &manifest, "mine.gguf").unwrap();
    for leftover in ["mine.gguf", "mine.gguf.sha256", "mine.gguf.verified"] {
        assert!(!user_dir(&store).join(leftover).exists(), "{leftover}");
    }
    assert!(store.root().join("tiny/tiny.gguf").exists());

    // A missing built-in file is listed as broken, with the fix.
    fs::remove_file(store.root().join("tiny/tiny.gguf")).unwrap();
    let listed = list(&store, &manifest);
    assert!(listed.broken.iter().any(|b| b.name == "tiny.gguf" && b.error.contains("keel models fetch")));
}

#[test]
fn a_file_without_the_gguf_extension_is_stored_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().join("models"));
    let src = write(dir.path(), "model.bin", &tiny_gguf("llama"));
    let info = add(&store, &src, &mut |_, _| {}).unwrap();
    assert_eq!(info.name, "model.bin.gguf");
    assert!(user_dir(&store).join("model.bin.gguf").exists());
}
