//! A real OpenAI-compatible server for the remote backend's tests: llama-cpp-python's server on the pinned
//! SmolLM2 GGUF (installed by scripts/test.sh into its own venv; see tests/fixtures/llama/README.md), and a
//! small fault proxy that puts in front of it what the server cannot be made to do (429 with Retry-After, a
//! 5xx, a stream cut mid-reply, a malformed chunk).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common;

/// The venv's Python with the pinned llama-cpp-python. Fails, never skips, without it.
pub fn llama_python() -> PathBuf {
    let python = std::env::var_os("KEEL_LLAMA_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("KEEL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/keel"));
        cache.join("llama-venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run the suite with scripts/test.sh, which installs tests/fixtures/llama/requirements.txt into it",
        python.display()
    );
    python
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server process; killed when dropped.
pub struct LlamaServer {
    child: Option<Child>,
    pub port: u16,
    /// When set, every route needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

pub const MODEL: &str = "smollm2";

impl LlamaServer {
    pub fn start(api_key: Option<&str>) -> LlamaServer {
        let python = llama_python();
        for attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.args(["-m", "llama_cpp.server", "--model"])
                .arg(common::gguf_path())
                .args(["--model_alias", MODEL, "--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1", "--interrupt_requests", "False", "--verbose", "False"])
                // PORT and HOST in the environment would override the flags.
                .env_remove("PORT")
                .env_remove("HOST")
                .env_remove("CONFIG_FILE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(key) = api_key {
                cmd.args(["--api_key", key]);
            }
            let child = cmd.spawn().expect("start llama_cpp.server");
            let mut server = LlamaServer { child: Some(child), port, api_key: api_key.map(str::to_owned) };
            if server.wait_ready(Duration::from_secs(60)) {
                return server;
            }
            server.stop();
            eprintln!("llama server did not come up on port {port} (attempt {attempt}); trying another port");
        }
        panic!("llama_cpp.server did not start; run it by hand as tests/fixtures/llama/README.md shows to see why");
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let auth = self.api_key.as_ref().map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
                let _ = write!(s, "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills the server at once (as a crash or a pulled plug would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the proxy does with one request (connections are taken in order; after the plan, it forwards).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Pass the request to the server and its response back.
    Forward,
    /// Answer with this status and body, and `Retry-After` when given.
    Status { status: u16, retry_after: Option<&'static str>, body: &'static str },
    /// Forward, but close the connection after this many bytes of the server's response body (after its headers).
    CutAfter(usize),
    /// Answer a 200 event stream whose second data event is not JSON.
    Malformed,
}

/// A loopback HTTP proxy in front of the server that injects faults by plan. Each request gets its own
/// connection (the proxy answers `Connection: close`).
pub struct FaultProxy {
    pub port: u16,
    /// When each chat request arrived, with the fault it got.
    pub seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl FaultProxy {
    pub fn start(upstream: u16, plan: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let plan = Arc::new(Mutex::new(std::collections::VecDeque::from(plan)));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let (plan, log) = (plan.clone(), log.clone());
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut client) else { return };
                    // The plan is for chat requests; the model listing Keel checks first always goes through.
                    let fault = if request.starts_with(b"POST") { plan.lock().unwrap().pop_front().unwrap_or(Fault::Forward) } else { Fault::Forward };
                    if request.starts_with(b"POST") {
                        log.lock().unwrap().push((Instant::now(), format!("{fault:?}")));
                    }
                    serve(&mut client, &request, upstream, fault)
                });
            }
        });
        FaultProxy { port, seen }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body).
fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // One request per connection: ask the server to close after answering.
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut out: String = head
        .lines()
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&buf[header_end..]);
    Some(out)
}

fn serve(client: &mut TcpStream, request: &[u8], upstream: u16, fault: Fault) {
    match fault {
        Fault::Status { status, retry_after, body } => {
            let retry = retry_after.map(|r| format!("Retry-After: {r}\r\n")).unwrap_or_default();
            let _ = write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Fault::Malformed => {
            let body = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hel\"}, \"finish_reason\": null}]}\n\n\
                        data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \n\n\
                        data: [DONE]\n\n";
            let _ = write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Fault::Forward | Fault::CutAfter(_) => {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            if server.write_all(request).is_err() {
                return;
            }
            let limit = match fault {
                Fault::CutAfter(n) => n,
                _ => usize::MAX,
            };
            // Bytes of the body (after the response's headers) passed on so far; `None` until the headers end.
            let mut body_sent: Option<usize> = None;
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match server.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut bytes = &chunk[..n];
                if body_sent.is_none() {
                    head.extend_from_slice(bytes);
                    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else { continue };
                    if client.write_all(&head[..end]).is_err() {
                        break;
                    }
                    let already = head.len() - end;
                    bytes = &chunk[n - already..n];
                    body_sent = Some(0);
                }
                let sent = body_sent.unwrap_or(0);
                let take = bytes.len().min(limit.saturating_sub(sent));
                if client.write_all(&bytes[..take]).is_err() {
                    break;
                }
                body_sent = Some(sent + take);
                if sent + take >= limit {
                    break;
                }
            }
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}
