//! The stdio transport to an MCP server's process: rmcp's line-delimited JSON-RPC over the child's stdin and
//! stdout, with Keel's answer to a message too large to read.
//!
//! rmcp reads at most [`MAX_MESSAGE_BYTES`] of one message (one line) and drops a longer one as it reads, so
//! memory stays bounded; but the request it answered would then wait for its timeout, and the user would read
//! "timed out" about a server that did answer. [`Oversize`] sits between the pipe and rmcp: it counts each
//! line's length as the bytes pass, keeps the line's first bytes, and when a line that rmcp dropped ends, it
//! adds a JSON-RPC error answer for the same request id (read from those first bytes), which says what
//! happened. A dropped message whose id cannot be read (it is not near the start) is counted instead, and the
//! call that then times out says so.
//!
//! [`ChildTransport`] owns the process (killed if dropped) and shuts it down as the MCP specification says:
//! stdin closed, a grace period to exit, then killed.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::Transport;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The longest message read from a server: rmcp's bound on one line, newline included.
pub const MAX_MESSAGE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;
/// The JSON-RPC error code of Keel's answer for a dropped message (in the range JSON-RPC leaves to
/// implementations).
pub const OVERSIZE_CODE: i32 = -32_099;
/// How much of each line is kept to find its id.
const HEAD_BYTES: usize = 512;

/// What the transport tells the tools: how many oversized messages were dropped without an id to answer, and
/// the size of the last one.
#[derive(Default)]
pub struct Dropped {
    pub count: AtomicU64,
    pub last_bytes: AtomicU64,
}

/// The server's stdout as rmcp reads it, with an error answer added after each line rmcp drops for its size.
pub struct Oversize<R> {
    inner: R,
    /// Bytes of the current line so far, newline included once it comes.
    line: usize,
    head: Vec<u8>,
    /// An error answer to give before anything more.
    answer: Vec<u8>,
    answered: usize,
    /// Bytes read past the end of a dropped line, not yet counted: given after the answer.
    stash: Vec<u8>,
    dropped: Arc<Dropped>,
}

impl<R> Oversize<R> {
    pub fn new(inner: R, dropped: Arc<Dropped>) -> Oversize<R> {
        Oversize { inner, line: 0, head: Vec::new(), answer: Vec::new(), answered: 0, stash: Vec::new(), dropped }
    }

    /// Counts `bytes` into the current line; when a line over the bound ends, prepares its answer and returns
    /// how many of `bytes` came up to and including its newline (the rest is not counted yet).
    fn count(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let end = rest.iter().position(|b| *b == b'\n');
            let piece = &rest[..end.map_or(rest.len(), |i| i + 1)];
            let keep = piece.len().min(HEAD_BYTES.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&piece[..keep]);
            self.line = self.line.saturating_add(piece.len());
            at += piece.len();
            if end.is_some() {
                let size = std::mem::replace(&mut self.line, 0);
                let head = std::mem::take(&mut self.head);
                if size > MAX_MESSAGE_BYTES {
                    match request_id(&head) {
                        Some(id) => {
                            self.answer = oversize_answer(&id, size);
                            self.answered = 0;
                        }
                        None => {
                            self.dropped.count.fetch_add(1, Ordering::Relaxed);
                            self.dropped.last_bytes.store(size as u64, Ordering::Relaxed);
                        }
                    }
                    return Some(at);
                }
            }
        }
        None
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Oversize<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.answered < this.answer.len() {
            let n = buf.remaining().min(this.answer.len() - this.answered);
            buf.put_slice(&this.answer[this.answered..this.answered + n]);
            this.answered += n;
            if this.answered == this.answer.len() {
                this.answer.clear();
                this.answered = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if this.stash.is_empty() {
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        } else {
            let n = buf.remaining().min(this.stash.len());
            buf.put_slice(&this.stash[..n]);
            this.stash.drain(..n);
        }
        let fresh = buf.filled()[before..].to_vec();
        if let Some(upto) = this.count(&fresh) {
            // The bytes after the dropped line's end come after the answer, and are counted then.
            let mut rest = fresh[upto..].to_vec();
            rest.extend_from_slice(&this.stash);
            this.stash = rest;
            buf.set_filled(before + upto);
        }
        Poll::Ready(Ok(()))
    }
}

/// The `id` of a JSON-RPC message from its first bytes: the value of the key `id` at the top level of the
/// object, a number or a string, as JSON text. `None` when it is not among those bytes.
fn request_id(head: &[u8]) -> Option<String> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < head.len() {
        match head[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let end = string_end(head, i)?;
                let key = &head[i + 1..end];
                i = end + 1;
                if depth == 1 && key == b"id" {
                    let mut j = i;
                    while head.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                    if head.get(j) != Some(&b':') {
                        continue;
                    }
                    j += 1;
                    while head.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                    return match head.get(j)? {
                        b'"' => {
                            let end = string_end(head, j)?;
                            Some(String::from_utf8_lossy(&head[j..=end]).into_owned())
                        }
                        b'-' | b'0'..=b'9' => {
                            let len = head[j..].iter().take_while(|b| matches!(b, b'-' | b'0'..=b'9')).count();
                            // A number cut by the end of the head is not known whole.
                            (j + len < head.len()).then(|| String::from_utf8_lossy(&head[j..j + len]).into_owned())
                        }
                        _ => None,
                    };
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote that closes the string opened at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn oversize_answer(id: &str, size: usize) -> Vec<u8> {
    let message = format!(
        "the answer was {size} bytes, over the {} MiB Keel reads from one MCP message, and was dropped unread",
        MAX_MESSAGE_BYTES >> 20
    );
    let error = serde_json::json!({"code": OVERSIZE_CODE, "message": message});
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{error}}}\n").into_bytes()
}

/// The client's side of a server process: rmcp's transport over its pipes, with [`Oversize`] on stdout.
pub struct ChildTransport {
    child: Option<Child>,
    transport: AsyncRwTransport<RoleClient, Oversize<ChildStdout>, ChildStdin>,
    grace: Duration,
}

impl ChildTransport {
    /// Takes the pipes of `child` (spawned with stdin and stdout piped and `kill_on_drop`).
    pub fn new(mut child: Child, dropped: Arc<Dropped>, grace: Duration) -> std::io::Result<ChildTransport> {
        let missing = |what| std::io::Error::other(format!("the server's {what} is not piped"));
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let transport = AsyncRwTransport::new(Oversize::new(stdout, dropped), stdin);
        Ok(ChildTransport { child: Some(child), transport, grace })
    }
}

impl Transport<RoleClient> for ChildTransport {
    type Error = std::io::Error;

    fn name() -> Cow<'static, str> {
        "keel-mcp-stdio".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.transport.send(item)
    }

    fn receive(&mut self) -> impl std::future::Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.transport.receive()
    }

    /// Closes stdin so that the server exits; kills it if it has not within the grace period.
    async fn close(&mut self) -> Result<(), Self::Error> {
        let closed = self.transport.close().await;
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(self.grace, child.wait()).await.is_err() {
                child.kill().await?;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_id_is_read_at_the_top_level_only() {
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":17,"result":{"#).as_deref(), Some("17"));
        assert_eq!(request_id(br#"{"jsonrpc": "2.0", "id" : "a\"b", "result""#).as_deref(), Some(r#""a\"b""#));
        // An "id" inside the result is not the message's; a number cut by the end of the head is not known.
        assert_eq!(request_id(br#"{"result":{"id":5,"x":"#), None);
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":12"#), None);
        assert_eq!(request_id(br#"{"text":"\"id\":3","id":4,"#).as_deref(), Some("4"));
    }

    async fn read_through(input: Vec<u8>, chunk: usize) -> (Vec<u8>, Arc<Dropped>) {
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let dropped = Arc::new(Dropped::default());
        let mut guarded = Oversize::new(reader, dropped.clone());
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(chunk) {
                writer.write_all(piece).await.unwrap();
            }
        });
        let mut out = Vec::new();
        let mut buf = vec![0u8; 7919];
        loop {
            let n = guarded.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            // Keep only the small lines and line ends: the oversized one is summarised by its length.
            out.extend_from_slice(&buf[..n]);
        }
        feeder.await.unwrap();
        (out, dropped)
    }

    #[tokio::test]
    async fn an_oversized_line_is_followed_by_an_error_answer_for_its_id_and_nothing_else_changes() {
        let small = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n".to_vec();
        let mut big = br#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":""#.to_vec();
        big.resize(MAX_MESSAGE_BYTES + 10, b'x');
        big.extend_from_slice(b"\"}]}}\n");
        let mut exact = br#"{"jsonrpc":"2.0","id":3,"result":""#.to_vec();
        exact.resize(MAX_MESSAGE_BYTES - 3, b'y');
        exact.extend_from_slice(b"\"}\n");
        assert_eq!(exact.len(), MAX_MESSAGE_BYTES);
        let input = [small.clone(), big.clone(), small.clone(), exact.clone(), small.clone()].concat();
        for chunk in [1 << 20, 8191] {
            let (out, dropped) = read_through(input.clone(), chunk).await;
            let answer = oversize_answer("2", big.len());
            let expected = [small.clone(), big.clone(), answer, small.clone(), exact.clone(), small.clone()].concat();
            assert!(out == expected, "chunk {chunk}: {} bytes out, {} expected", out.len(), expected.len());
            assert_eq!(dropped.count.load(Ordering::Relaxed), 0);
        }
        let answer = String::from_utf8(oversize_answer("2", big.len())).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(answer.trim_end()).unwrap();
        assert_eq!(parsed["id"], 2);
        assert_eq!(parsed["error"]["code"], OVERSIZE_CODE);
        assert!(parsed["error"]["message"].as_str().unwrap().contains(&format!("{} bytes", big.len())));
    }

    #[tokio::test]
    async fn an_oversized_line_without_an_id_in_its_head_is_counted() {
        let mut big = br#"{"jsonrpc":"2.0","result":{"text":""#.to_vec();
        big.resize(MAX_MESSAGE_BYTES + 1, b'z');
        big.extend_from_slice(b"\"},\"id\":9}\n");
        let (out, dropped) = read_through(big.clone(), 1 << 16).await;
        assert_eq!(out, big);
        assert_eq!(dropped.count.load(Ordering::Relaxed), 1);
        assert_eq!(dropped.last_bytes.load(Ordering::Relaxed), big.len() as u64);
    }
}
