//! The model manager on the real SmolLM2 file: adding it from disk and what the list says of it, and downloading
//! it from a loopback HTTP server that honours Range requests and can cut a connection mid-body. An interrupted
//! download resumes where it stopped; a wrong sha256 or a file that is not GGUF is refused and removed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use keel::llm::CancelFlag;
use keel::models::library::{self, ChecksumState, DownloadProgress, LibraryError, ModelInfo};
use keel::models::{sha256_file, Manifest, ModelDir};
use sha2::{Digest, Sha256};

use super::common::{gguf_path, models_dir};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) target: String,
    pub(crate) range: Option<String>,
}

/// A loopback HTTP/1.1 server for one file at one path (404 for any other target), one connection at a time,
/// each closed after its response. `Range: bytes=N-` gets a 206 (a 416 from the end of the file on), and
/// `cut_next_after(n)` makes the next response stop after `n` bytes of body, as a dropped connection would;
/// `pace(n, every)` sends every body `n` bytes at a time, `every` apart, as a slow link would.
pub(crate) struct FileServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    cut: Arc<Mutex<Option<usize>>>,
    pace: Arc<Mutex<Option<(usize, std::time::Duration)>>>,
}

impl FileServer {
    pub(crate) fn start(path: &str, body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(Mutex::new(None));
        let pace = Arc::new(Mutex::new(None));
        let (path, thread_seen, thread_cut, thread_pace) = (path.to_owned(), seen.clone(), cut.clone(), pace.clone());
        // The thread ends with the test binary; it only ever blocks in accept.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up mid-response is no failure of the server's.
                let paced = *thread_pace.lock().unwrap();
                let _ = respond(stream, &path, &body, &thread_seen, &thread_cut, paced);
            }
        });
        FileServer { addr, seen, cut, pace }
    }

    pub(crate) fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    fn cut_next_after(&self, bytes: usize) {
        *self.cut.lock().unwrap() = Some(bytes);
    }

    pub(crate) fn pace(&self, bytes: usize, every: std::time::Duration) {
        *self.pace.lock().unwrap() = Some((bytes.max(1), every));
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(
    mut stream: TcpStream,
    path: &str,
    body: &[u8],
    seen: &Mutex<Vec<Seen>>,
    cut: &Mutex<Option<usize>>,
    paced: Option<(usize, std::time::Duration)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    seen.lock().unwrap().push(Seen { target: target.clone(), range: range.clone() });
    if target != path {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let len = body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (head, from) = match start {
        Some(from) if from >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return stream.write_all(head.as_bytes());
        }
        Some(from) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - from
            ),
            from,
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"),
            0,
        ),
    };
    stream.write_all(head.as_bytes())?;
    let cut_after = cut.lock().unwrap().take();
    let end = cut_after.map_or(len, |n| (from + n).min(len));
    match paced {
        None => stream.write_all(&body[from..end])?,
        Some((n, every)) => {
            for piece in body[from..end].chunks(n) {
                stream.write_all(piece)?;
                std::thread::sleep(every);
            }
        }
    }
    stream.flush()
    // Dropping the stream closes the connection: before Content-Length bytes when the response was cut.
}

pub(crate) fn pinned_sha256() -> String {
    Manifest::builtin().by_role("chat").unwrap().files[0].sha256.clone()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the pinned SmolLM2 file is, as read with the `gguf` Python package (DESIGN.md, "LLM backends").
fn assert_smollm2(info: &ModelInfo) {
    assert_eq!(info.name, SMOLLM2);
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.quantisation, "Q4_1");
    assert_eq!(info.parameters, Some(134_515_008));
    assert_eq!(info.gguf_version, 3);
    assert_eq!(info.size_bytes, 98_362_432);
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    const CUT: usize = 10 << 20;
    let gguf = std::fs::read(gguf_path()).unwrap();
    let target = format!("/models/{SMOLLM2}");
    let server = FileServer::start(&target, gguf.clone());
    let url = server.url(&target);
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let pinned = pinned_sha256();
    let cancel = CancelFlag::default();

    server.cut_next_after(CUT);
    let err = library::download(&store, &url, Some(&pinned), None, &cancel, &mut |_| {}).unwrap_err();
    let partial = library::user_dir(&store).join(format!("{SMOLLM2}.partial"));
    let kept = match &err {
        LibraryError::Interrupted { kept, partial: at, .. } => {
            assert_eq!(at, &partial);
            *kept
        }
        other => panic!("{other:?}"),
    };
    assert!(kept > 0 && kept <= CUT as u64, "kept {kept} bytes");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), kept);
    assert!(err.to_string().contains("run the same download again to resume"), "{err}");
    assert!(err.hint().contains("resume"), "{}", err.hint());

    let mut progress: Vec<DownloadProgress> = Vec::new();
    let info = library::download(&store, &url, Some(&pinned), None, &cancel, &mut |p| progress.push(p)).unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.target == target), "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some(format!("bytes={kept}-").as_str()));
    let first = progress.first().unwrap();
    assert_eq!((first.downloaded, first.total, first.resumed_from), (kept, Some(gguf.len() as u64), kept));
    assert_eq!(progress.last().unwrap().downloaded, gguf.len() as u64);
    assert!(progress.iter().all(|p| p.name == SMOLLM2 && p.resumed_from == kept));

    assert!(!partial.exists());
    let stored = library::user_dir(&store).join(SMOLLM2);
    assert_eq!(sha256_file(&stored, &mut |_, _| {}).unwrap(), pinned);
    assert_eq!(info.sha256.as_deref(), Some(pinned.as_str()));
    assert_eq!(info.checksum, ChecksumState::Verified);
    assert!(!info.builtin);
    assert_smollm2(&info);
}

/// A download run again after it finished (or after a kill once the file was in place) is done without a byte
/// fetched, and restores a missing sidecar; without a sha256 to compare, the file in place is not taken for it.
#[test]
fn a_finished_download_run_again_is_done_without_fetching() {
    let gguf = std::fs::read(gguf_path()).unwrap();
    let target = format!("/models/{SMOLLM2}");
    let server = FileServer::start(&target, gguf);
    let url = server.url(&target);
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let pinned = pinned_sha256();
    let cancel = CancelFlag::default();
    library::download(&store, &url, Some(&pinned), None, &cancel, &mut |_| {}).unwrap();
    assert_eq!(server.seen().len(), 1);
    let stored = library::user_dir(&store).join(SMOLLM2);
    let sidecar = library::user_dir(&store).join(format!("{SMOLLM2}.sha256"));
    assert!(std::fs::read_to_string(&sidecar).unwrap().starts_with(&pinned));

    let again = library::download(&store, &url, Some(&pinned), None, &cancel, &mut |_| {}).unwrap();
    assert_eq!(server.seen().len(), 1, "a finished download fetched again");
    assert_eq!((again.checksum, again.sha256.as_deref()), (ChecksumState::Verified, Some(pinned.as_str())));
    // The state a kill between the rename and the sidecar left before the sidecar was written first.
    std::fs::remove_file(&sidecar).unwrap();
    let listed = library::list(&store, &Manifest::builtin());
    assert_eq!(listed.models.iter().find(|m| m.name == SMOLLM2).unwrap().checksum, ChecksumState::Unpinned);
    library::download(&store, &url, Some(&pinned), None, &cancel, &mut |_| {}).unwrap();
    assert!(std::fs::read_to_string(&sidecar).unwrap().starts_with(&pinned));
    let listed = library::list(&store, &Manifest::builtin());
    assert_eq!(listed.models.iter().find(|m| m.name == SMOLLM2).unwrap().checksum, ChecksumState::Verified);
    assert_eq!(server.seen().len(), 1);
    // Another sha256, or none: the file in place is not the one asked for, and is left alone.
    let other = "0".repeat(64);
    let err = library::download(&store, &url, Some(&other), None, &cancel, &mut |_| {}).unwrap_err();
    assert!(matches!(err, LibraryError::Exists { .. }), "{err:?}");
    let err = library::download(&store, &url, None, None, &cancel, &mut |_| {}).unwrap_err();
    assert!(matches!(err, LibraryError::Exists { .. }), "{err:?}");
    assert_eq!(sha256_file(&stored, &mut |_, _| {}).unwrap(), pinned);
}

#[test]
fn a_wrong_sha256_is_refused_and_the_file_removed() {
    let body = b"GGUF-shaped bytes that no sha256 pins. ".repeat(1000);
    let server = FileServer::start("/m.gguf", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let wrong = "0".repeat(64);
    let err =
        library::download(&store, &server.url("/m.gguf"), Some(&wrong), None, &CancelFlag::default(), &mut |_| {})
            .unwrap_err();
    match &err {
        LibraryError::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256(&body));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&wrong), "{err}");
    let user = library::user_dir(&store);
    assert!(!user.join("m.gguf").exists());
    assert!(!user.join("m.gguf.partial").exists());
}

#[test]
fn a_download_that_is_not_gguf_is_refused_and_removed() {
    // The classic mistake: the link to the file's web page rather than to the file.
    let page =
        b"<!DOCTYPE html>\n<html><head><title>model.gguf</title></head><body>a model page</body></html>\n".to_vec();
    let server = FileServer::start("/org/repo/blob/main/model.gguf", page);
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let url = server.url("/org/repo/blob/main/model.gguf");
    let err = library::download(&store, &url, None, None, &CancelFlag::default(), &mut |_| {}).unwrap_err();
    match &err {
        LibraryError::Rejected { source, .. } => {
            assert!(matches!(**source, LibraryError::NotGguf { .. }), "{source:?}")
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&url) && message.contains("HTML"), "{message}");
    assert!(err.hint().contains("GGUF"), "{}", err.hint());
    let user = library::user_dir(&store);
    assert!(!user.join("model.gguf").exists());
    assert!(!user.join("model.gguf.partial").exists());
}

#[test]
fn a_missing_file_is_an_http_error_naming_the_url_without_its_query() {
    let server = FileServer::start("/there.gguf", b"unused".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let url = server.url("/elsewhere.gguf?token=s3cret");
    let err = library::download(&store, &url, None, None, &CancelFlag::default(), &mut |_| {}).unwrap_err();
    match &err {
        LibraryError::Http { url, status: 404 } => assert!(url.ends_with("/elsewhere.gguf?…"), "{url}"),
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn a_partial_file_that_is_already_whole_is_finished_without_fetching_it_again() {
    let body = b"<html>the whole file, kept by an earlier attempt</html>".to_vec();
    let server = FileServer::start("/whole.gguf", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let user = library::user_dir(&store);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("whole.gguf.partial"), &body).unwrap();
    let err = library::download(
        &store,
        &server.url("/whole.gguf"),
        Some(&sha256(&body)),
        None,
        &CancelFlag::default(),
        &mut |_| {},
    )
    .unwrap_err();
    // The server answered 416 for a range from the end; the kept bytes hashed right, and then the GGUF check
    // refused them (they are a web page), so everything the partial file held was used.
    assert_eq!(server.seen()[0].range.as_deref(), Some(format!("bytes={}-", body.len()).as_str()));
    assert!(matches!(err, LibraryError::Rejected { .. }), "{err:?}");
    assert!(!user.join("whole.gguf.partial").exists());
}

#[test]
fn the_real_gguf_is_added_from_disk_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelDir::new(dir.path().to_owned());
    let manifest = Manifest::builtin();
    let mut last = (0, 0);
    let info = library::add(&store, &gguf_path(), &mut |done, total| last = (done, total)).unwrap();
    assert_eq!(last, (98_362_432, 98_362_432));
    assert_smollm2(&info);
    assert!(!info.builtin);
    assert_eq!(info.checksum, ChecksumState::Verified);
    assert_eq!(info.sha256, Some(pinned_sha256()));

    let listed = library::list(&store, &manifest);
    let user: Vec<_> = listed.models.iter().filter(|m| !m.builtin).collect();
    assert_eq!(user, [&info]);
    // This store has no built-in files: the manifest's chat model is listed as broken, with the fix.
    assert!(
        listed.broken.iter().any(|b| b.name == SMOLLM2 && b.error.contains("keel models fetch")),
        "{:?}",
        listed.broken
    );

    // The user's copy has the built-in's name; deleting it deletes the copy.
    library::delete(&store, &manifest, SMOLLM2).unwrap();
    assert!(library::list(&store, &manifest).models.is_empty());
    assert!(matches!(library::delete(&store, &manifest, SMOLLM2), Err(LibraryError::BuiltIn { .. })));
}

#[test]
fn the_built_in_model_is_listed_verified_with_its_header_facts() {
    let store = ModelDir::new(models_dir());
    let listed = library::list(&store, &Manifest::builtin());
    let builtin = listed.models.iter().find(|m| m.builtin).unwrap_or_else(|| panic!("{listed:?}"));
    assert_smollm2(builtin);
    assert_eq!(builtin.checksum, ChecksumState::Verified);
    assert_eq!(builtin.sha256, Some(pinned_sha256()));
    assert_eq!(builtin.path, gguf_path().display().to_string());
}

#[test]
fn the_cli_lists_adds_refuses_and_removes_models() {
    let home = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = super::common::keel(home.path()).env("KEEL_MODELS_DIR", models.path()).args(args).output().unwrap();
        (out.status.success(), super::common::stdout(&out), super::common::stderr(&out))
    };
    // Not a GGUF: refused before anything is copied, saying what the file is.
    let zip = home.path().join("weights.gguf");
    std::fs::write(&zip, b"PK\x03\x04 not a model").unwrap();
    let (ok, _, err) = cli(&["models", "add", zip.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("zip"), "{err}");
    // The real GGUF: added, then listed with its header facts.
    let (ok, out, err) = cli(&["models", "add", gguf_path().to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["architecture"], "llama");
    let (ok, out, _) = cli(&["models", "installed", "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"SmolLM2-135M-Instruct.Q4_1.gguf"), "{names:?}");
    // The added model runs as the local backend, even with the built-in one absent from this models dir.
    let name = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let (ok, _, err) = cli(&["models", "use", name]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&["models", "installed", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["models"][0]["in_use"], true, "{list}");
    let (ok, out, err) = cli(&["ask", "--backend", "local", "--mode", "chat", "--max-tokens", "4", "--json", "Hello"]);
    assert!(ok, "{err}");
    let turn: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (_, shown, _) = cli(&["runs", "show", &turn["run_id"].to_string(), "--json"]);
    assert!(shown.contains(&format!("\"model\": \"{name}\"")), "{shown}");
    // The model in use is not deleted from under the backend.
    let (ok, _, err) = cli(&["models", "rm", name]);
    assert!(!ok && err.contains("the model the local backend runs"), "{err}");
    let (ok, _, err) = cli(&["models", "use", "nowhere.gguf"]);
    assert!(!ok && err.contains("there is no model"), "{err}");
}
