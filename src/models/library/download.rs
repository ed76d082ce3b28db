//! Downloading a GGUF model over HTTP(S) into the user models folder, resumably.
//!
//! Bytes go to `user/<name>.partial`. A call that finds a partial file asks the server for the rest with
//! `Range: bytes=<len>-` and appends only when the server answers 206 for exactly that offset; any other answer
//! starts over from zero. The sha256 covers the whole file (the kept prefix is hashed first, then the stream), and
//! the file becomes `user/<name>` only once its checksum (when one was given) and its GGUF header check out: a
//! wrong file is deleted so that the next try starts clean, while a network failure or a cancel keeps the partial
//! file so that the next call resumes. Run again with the same sha256 after it finished, a download is done
//! without fetching anything (it may have been killed after the file was in place, before it could say so). URLs in errors lose their credentials and query string, which may hold
//! access tokens.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_RANGE, RANGE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use super::{inspect, is_sha256, LibraryError, ModelInfo};
use crate::llm::CancelFlag;
use crate::models::ModelDir;

/// Progress is reported when both this many bytes and `PROGRESS_INTERVAL` have passed since the last report.
const PROGRESS_BYTES: u64 = 64 * 1024;
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const CHUNK: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The blocking client applies its timeout to each read of the body, not to the whole transfer: this is how
/// long a stalled connection is given, however large the file.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How far a download is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DownloadProgress {
    /// The model's file name.
    pub name: String,
    /// Bytes of the file on disk so far, including those an earlier attempt kept.
    #[ts(type = "number")]
    pub downloaded: u64,
    /// The file's size, when the server said it.
    #[ts(type = "number | null")]
    pub total: Option<u64>,
    /// Where this attempt resumed (0 when it started from the beginning).
    #[ts(type = "number")]
    pub resumed_from: u64,
}

/// Downloads the GGUF file at `url` into the user folder as `name` (by default the URL's last path segment),
/// resuming the part an earlier attempt left, and checks it: against `sha256` when given, then as a GGUF file
/// Keel can run. Blocking: call it from a worker thread. Cancelling `cancel` stops between chunks and keeps the
/// part downloaded.
pub fn download(
    store: &ModelDir,
    url: &str,
    sha256: Option<&str>,
    name: Option<&str>,
    cancel: &CancelFlag,
    on_progress: &mut dyn FnMut(DownloadProgress),
) -> Result<ModelInfo, LibraryError> {
    let parsed = Url::parse(url.trim()).map_err(|e| LibraryError::InvalidUrl {
        url: url.split(['?', '#']).next().unwrap_or_default().to_owned(),
        reason: e.to_string(),
    })?;
    let shown = redact(&parsed);
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(LibraryError::InvalidUrl {
            url: shown,
            reason: format!("only http and https are supported, not {}", parsed.scheme()),
        });
    }
    let expected = match sha256.map(|s| s.trim().to_ascii_lowercase()) {
        Some(s) if !is_sha256(&s) => return Err(LibraryError::InvalidChecksum { value: s }),
        other => other,
    };
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => parsed
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| LibraryError::InvalidName {
                name: String::new(),
                reason: format!("{shown} ends with no file name to take; give the model a name"),
            })?,
    };
    if let Some(expected) = &expected {
        if let Some(info) = super::already_installed(store, &name, expected)? {
            on_progress(DownloadProgress { name: info.name.clone(), downloaded: info.size_bytes, total: Some(info.size_bytes), resumed_from: info.size_bytes });
            return Ok(info);
        }
    }
    let (name, target, partial) = super::new_target(store, name)?;
    // reqwest's own messages may quote the URL as given; errors show it redacted.
    let reason =
        |e: &(dyn std::error::Error + 'static)| crate::shared::causes::chain(e).replace(parsed.as_str(), &shown).replace(url, &shown);
    let interrupted = |why: String, kept: u64| LibraryError::Interrupted {
        url: shown.clone(),
        reason: why,
        partial: partial.clone(),
        kept,
    };

    let mut offset = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let client = client_for(&parsed)
        .map_err(|e| interrupted(format!("cannot set up the HTTP client: {}", reason(&e)), offset))?;
    let (response, total) = loop {
        if cancel.is_cancelled() {
            return Err(LibraryError::Cancelled { url: shown.clone(), partial: partial.clone(), kept: offset });
        }
        let mut request = client.get(parsed.clone());
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().map_err(|e| interrupted(reason(&e.without_url()), offset))?;
        let status = response.status().as_u16();
        let range = content_range(response.headers());
        match status {
            206 if offset > 0 => match range {
                Some((Some(start), size)) if start == offset => {
                    let total = size.or_else(|| response.content_length().map(|n| offset + n));
                    break (Some(response), total);
                }
                // Another range than the one asked for: the kept part cannot be trusted to line up.
                _ => offset = 0,
            },
            // The kept part is already the whole file (an earlier attempt stopped after the last byte).
            416 if offset > 0 && matches!(range, Some((None, Some(size))) if size == offset) => {
                break (None, Some(offset))
            }
            416 if offset > 0 => offset = 0,
            // A full answer, whether or not a range was asked for: start over.
            200..=299 => {
                let total = response.content_length();
                offset = 0;
                break (Some(response), total);
            }
            _ => return Err(LibraryError::Http { url: shown.clone(), status }),
        }
    };

    let io = |source| LibraryError::Io { path: partial.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&partial).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = offset;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = file.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            // The partial file shrank since its size was read: nothing to resume from safely.
            return Err(interrupted("the partial file changed while resuming".into(), 0));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    // Drops anything past the offset resumed from (or everything, when starting over).
    file.set_len(offset).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;

    let resumed_from = offset;
    let mut report = |downloaded: u64| {
        on_progress(DownloadProgress { name: name.clone(), downloaded, total, resumed_from });
    };
    let mut downloaded = offset;
    report(downloaded);
    if let Some(mut response) = response {
        let mut last = (downloaded, Instant::now());
        loop {
            if cancel.is_cancelled() {
                let _ = file.sync_all();
                return Err(LibraryError::Cancelled { url: shown.clone(), partial: partial.clone(), kept: downloaded });
            }
            match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    file.write_all(&buf[..n]).map_err(io)?;
                    hasher.update(&buf[..n]);
                    downloaded += n as u64;
                    if downloaded - last.0 >= PROGRESS_BYTES && last.1.elapsed() >= PROGRESS_INTERVAL {
                        report(downloaded);
                        last = (downloaded, Instant::now());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = file.sync_all();
                    return Err(interrupted(reason(&e), downloaded));
                }
            }
        }
    }
    file.sync_all().map_err(io)?;
    drop(file);
    if let Some(total) = total.filter(|t| downloaded < *t) {
        return Err(interrupted(format!("the connection closed after {downloaded} of {total} bytes"), downloaded));
    }
    report(downloaded);

    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected {
        if expected != actual {
            let _ = fs::remove_file(&partial);
            return Err(LibraryError::ChecksumMismatch { url: shown, expected, actual });
        }
    }
    let info = match inspect(&partial) {
        Ok(info) => info,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(LibraryError::Rejected { url: shown, source: Box::new(e) });
        }
    };
    if target.exists() {
        // Kept: once the other file is gone, the same download finishes from it without fetching a byte.
        return Err(LibraryError::Exists { name, path: target });
    }
    super::install(store, &partial, target, name, actual, info)
}

/// A client with a connect timeout and a stall timeout but no limit on the whole transfer. A loopback URL is never
/// sent through a proxy (which could not reach it).
fn client_for(url: &Url) -> reqwest::Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(STALL_TIMEOUT)
        .user_agent(concat!("Keel/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder.build()
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The URL without credentials, query or fragment (`?…` marks a query left out).
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if url.query().is_some() {
        text.push_str("?…");
    }
    text
}

/// `Content-Range: bytes <first>-<last>/<size>` (or `bytes */<size>`, as a 416 carries) as `(first, size)`; a
/// `*` is `None`.
fn content_range(headers: &HeaderMap) -> Option<(Option<u64>, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let (range, size) = value.strip_prefix("bytes")?.trim_start().split_once('/')?;
    let size: Option<u64> = size.trim().parse().ok();
    let first: Option<u64> = match range.trim() {
        "*" => None,
        r => Some(r.split_once('-')?.0.trim().parse().ok()?),
    };
    Some((first, size))
}


#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_str(value).unwrap());
        content_range(&headers)
    }

    #[test]
    fn content_range_is_read() {
        assert_eq!(range("bytes 100-999/1000"), Some((Some(100), Some(1000))));
        assert_eq!(range("bytes 100-999/*"), Some((Some(100), None)));
        assert_eq!(range("bytes */1000"), Some((None, Some(1000))));
        assert_eq!(range("items 1-2/3"), None);
        assert_eq!(content_range(&HeaderMap::new()), None);
    }

    #[test]
    fn urls_in_errors_lose_credentials_and_query() {
        let url = Url::parse("https://user:secret@example.com/m/model.gguf?token=abc#x").unwrap();
        assert_eq!(redact(&url), "https://example.com/m/model.gguf?…");
        assert!(is_loopback(&Url::parse("http://127.0.0.1:8080/a.gguf").unwrap()));
        assert!(is_loopback(&Url::parse("http://[::1]:8080/a.gguf").unwrap()));
        assert!(!is_loopback(&Url::parse("https://example.com/a.gguf").unwrap()));
    }

    #[test]
    fn bad_requests_are_refused_before_any_network() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelDir::new(dir.path().to_owned());
        let cancel = CancelFlag::default();
        let run = |url: &str, sha: Option<&str>, name: Option<&str>| {
            download(&store, url, sha, name, &cancel, &mut |_| {}).unwrap_err()
        };
        assert!(matches!(run("ftp://example.com/a.gguf", None, None), LibraryError::InvalidUrl { .. }));
        assert!(matches!(run("not a url", None, None), LibraryError::InvalidUrl { .. }));
        assert!(matches!(run("https://example.com/a.gguf", Some("abc"), None), LibraryError::InvalidChecksum { .. }));
        assert!(matches!(run("https://example.com/", None, None), LibraryError::InvalidName { .. }));
        assert!(matches!(run("https://example.com/weights.bin", None, None), LibraryError::InvalidName { .. }));
        assert!(matches!(
            run("https://example.com/a.gguf", None, Some("../escape.gguf")),
            LibraryError::InvalidName { .. }
        ));
        assert!(!dir.path().join("user").exists() || fs::read_dir(dir.path().join("user")).unwrap().next().is_none());
    }
}
