//! The `http_fetch` tool: one GET of a public web address, off unless the user turns it on.
//!
//! A model that can make HTTP requests from the user's machine can be talked (by a page it read, say) into
//! reaching what only that machine can reach: the router's admin page, a service on localhost, the cloud metadata
//! endpoint. So the tool reaches public addresses only, and checks that where it cannot be fooled: every address a
//! name resolves to is checked inside the connector's resolver (`PublicOnlyResolver`), so a name that resolves
//! (or re-resolves, by DNS rebinding) to a private address is never connected to; IP literals, which skip the
//! resolver, are checked before the request and at every redirect. Proxies are off, as a proxy would resolve names
//! where these checks cannot see.
//!
//! The tool holds only whether it is enabled. Each call builds its own client: the client's timeout is the call's
//! remaining time, and the record of why a connection was refused belongs to that one call.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::Url;
use serde_json::{json, Value};

use super::{object_schema, CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

/// How much of a body a call returns when it does not say.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
/// The most of a body a call may ask for: more would not fit a context window anyway.
pub const MAX_BYTES: u64 = 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT_MS: u64 = 15_000;
const TOOL: &str = "http_fetch";
const DISABLED_REASON: &str =
    "HTTP fetch is off; turn it on in Settings (or `keel tools call` with KEEL_HTTP_FETCH=1)";

type BoxError = Box<dyn StdError + Send + Sync>;
/// Why the current call's connection or redirect was refused, set by the resolver or the redirect policy (whose
/// own errors reach the caller wrapped in reqwest's) and read once the request fails.
type RefusalSlot = Arc<Mutex<Option<String>>>;

/// True for addresses HTTP fetch must not reach: loopback, unspecified, link-local (the cloud metadata endpoint
/// 169.254.169.254 among them), private, carrier-grade NAT, multicast, broadcast and reserved ranges, in IPv4 or
/// IPv6, including IPv4 addresses written as IPv6 (`::ffff:127.0.0.1`).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        // 0.0.0.0/8, "this network": Linux connects 0.x.y.z to the local host.
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT: the provider's side of the user's network.
        || (a == 100 && (64..=127).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments, and 198.18.0.0/15, benchmarking: never public hosts.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    // An IPv4 address in IPv6 clothing reaches the same host as the IPv4 address, so it is judged as one.
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7, unique local (the IPv6 private range).
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local, and fec0::/10, the deprecated site-local range.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated) or NAT64
/// (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(v4),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones.
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(v4),
        _ => None,
    }
}

/// A host that is, or resolves to, an address HTTP fetch must not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForbiddenAddress {
    pub host: String,
    pub ip: IpAddr,
}

impl std::fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host == self.ip.to_string() {
            write!(f, "{} is a private or local address; HTTP fetch only reaches public addresses", self.ip)
        } else {
            write!(
                f,
                "{} resolves to a private or local address ({}); HTTP fetch only reaches public addresses",
                self.host, self.ip
            )
        }
    }
}

impl StdError for ForbiddenAddress {}

/// Decides on what a name resolved to. Every address must be public, not just the first: the connector may try
/// any of them, and a rebinding attacker chooses which.
pub fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), ForbiddenAddress> {
    match addrs.iter().find(|addr| is_forbidden(addr.ip())) {
        Some(addr) => Err(ForbiddenAddress { host: host.to_owned(), ip: addr.ip() }),
        None => Ok(()),
    }
}

/// Why `url` may not be fetched, judging what can be judged without resolving a name: the scheme, and the host
/// when it is an IP literal.
fn refusal_for(url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "the {}: scheme is refused; HTTP fetch reaches http:// and https:// addresses only",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str() else {
        return Some("the URL has no host; give an address like https://example.com/page".into());
    };
    // IPv6 literals keep their brackets here; the URL parser has already turned the odd IPv4 spellings (decimal,
    // hexadecimal, octal, `127.1`) into dotted form.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) if is_forbidden(ip) => Some(ForbiddenAddress { host: ip.to_string(), ip }.to_string()),
        _ => None,
    }
}

fn parse_url(url: &str) -> Result<Url, ToolError> {
    let parsed = Url::parse(url).map_err(|e| ToolError::Failed {
        tool: TOOL.into(),
        message: format!("{url:?} is not a URL ({e}); give a full address like https://example.com/page"),
    })?;
    match refusal_for(&parsed) {
        Some(reason) => Err(ToolError::Refused { tool: TOOL.into(), reason }),
        None => Ok(parsed),
    }
}

/// Checks what can be checked before any lookup: an http(s) scheme, and a public address when the host is an IP
/// literal. Names are checked at connect time by the resolver.
pub fn check_url(url: &str) -> Result<(), ToolError> {
    parse_url(url).map(|_| ())
}

fn record(slot: &Mutex<Option<String>>, reason: String) {
    // The first refusal is the one that stopped the request.
    if let Ok(mut slot) = slot.lock() {
        if slot.is_none() {
            *slot = Some(reason);
        }
    }
}

/// Resolves names with the system resolver (as the default connector would) and fails the lookup when any
/// address is forbidden, so the connector never gets one to connect to.
struct PublicOnlyResolver {
    refusal: RefusalSlot,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_public(name.as_str().to_owned(), self.refusal.clone()))
    }
}

async fn resolve_public(host: String, refusal: RefusalSlot) -> Result<Addrs, BoxError> {
    let lookup = host.clone();
    // getaddrinfo blocks, so it runs on the runtime's blocking pool (the runtime is the one reqwest's blocking
    // client runs its connections on). Port 0 lets the connector put in the URL's port.
    let addrs: Vec<SocketAddr> = tokio::task::spawn_blocking(move || {
        (lookup.as_str(), 0).to_socket_addrs().map(|found| found.collect::<Vec<_>>())
    })
    .await??;
    if let Err(forbidden) = check_resolved(&host, &addrs) {
        record(&refusal, forbidden.to_string());
        return Err(Box::new(forbidden));
    }
    if addrs.is_empty() {
        return Err(format!("{host} did not resolve to any address").into());
    }
    Ok(Box::new(addrs.into_iter()))
}

/// The `http_fetch` tool.
pub struct HttpFetch {
    spec: ToolSpec,
    enabled: bool,
    /// Tests only: a loopback server the first request may go to, standing in for a public site (nothing else
    /// is exempt, and every redirect is checked as always). `None` in the product.
    test_origin: Option<SocketAddr>,
}

impl HttpFetch {
    /// A disabled tool is still listed (so the model and the user see it exists) but refuses every call.
    pub fn new(enabled: bool) -> HttpFetch {
        let spec = ToolSpec {
            name: TOOL.into(),
            description: "Fetches a public web address with GET and returns the body as text (at most max_bytes). \
                          Local and private network addresses are refused."
                .into(),
            input_schema: object_schema(
                json!({
                    "url": { "type": "string", "format": "uri", "description": "An http:// or https:// address" },
                    "max_bytes": { "type": "integer", "minimum": 1, "maximum": MAX_BYTES, "default": DEFAULT_MAX_BYTES },
                }),
                &["url"],
            ),
            output_schema: object_schema(
                json!({
                    "url": { "type": "string" },
                    "final_url": { "type": "string", "description": "The address after redirects" },
                    "status": { "type": "integer" },
                    "content_type": { "type": ["string", "null"] },
                    "body": { "type": "string" },
                    "bytes": { "type": "integer", "minimum": 0, "description": "Bytes of body returned" },
                    "truncated": { "type": "boolean", "description": "True when the body was longer than max_bytes" },
                }),
                &["url", "final_url", "status", "content_type", "body", "bytes", "truncated"],
            ),
            effect: Effect::External,
            timeout_ms: TIMEOUT_MS,
            // A GET.
            idempotent: true,
            capability: Some("web".into()),
            origin: Origin::Web,
        };
        HttpFetch { spec, enabled, test_origin: None }
    }

    fn timeout(&self, budget: Duration) -> ToolError {
        ToolError::Timeout { tool: TOOL.into(), after_ms: budget.as_millis() as u64 }
    }

    fn transient(&self, message: String, retry_after_ms: Option<u64>) -> ToolError {
        ToolError::Transient { tool: TOOL.into(), message, retry_after_ms }
    }

    fn failed(&self, message: String) -> ToolError {
        ToolError::Failed { tool: TOOL.into(), message }
    }

    /// Maps a failed request: a refusal recorded by the resolver or the redirect policy wins over whatever
    /// reqwest made of it.
    fn request_error(
        &self,
        url: &Url,
        error: reqwest::Error,
        refusal: &Mutex<Option<String>>,
        budget: Duration,
    ) -> ToolError {
        if let Some(reason) = refusal.lock().ok().and_then(|mut slot| slot.take()) {
            return ToolError::Refused { tool: TOOL.into(), reason };
        }
        if error.is_timeout() {
            return self.timeout(budget);
        }
        let error = error.without_url();
        if error.is_builder() || error.is_redirect() {
            return self.failed(format!("{url}: {}", crate::shared::causes::chain(&error)));
        }
        self.transient(format!("cannot fetch {url}: {}", crate::shared::causes::chain(&error)), None)
    }

    /// The enabled tool whose first request may go to `origin`, a loopback test server standing in for a public
    /// site: for testing that redirects to private addresses are refused. Never used by the product.
    #[doc(hidden)]
    pub fn with_test_origin(origin: SocketAddr) -> HttpFetch {
        HttpFetch { test_origin: Some(origin), ..HttpFetch::new(true) }
    }

    /// Reads at most `max_bytes` of the body (one more, to know whether there was more), stopping when the call
    /// is cancelled or out of time.
    fn read_body(
        &self,
        response: &mut reqwest::blocking::Response,
        max_bytes: usize,
        cx: &CallContext,
        budget: Duration,
    ) -> Result<(Vec<u8>, bool), ToolError> {
        let mut body = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        while body.len() <= max_bytes {
            if cx.is_cancelled() {
                return Err(self.timeout(budget));
            }
            match response.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut || is_reqwest_timeout(&e) => {
                    return Err(self.timeout(budget))
                }
                Err(e) => return Err(self.transient(format!("reading the body failed: {}", crate::shared::causes::chain(&e)), None)),
            }
        }
        let truncated = body.len() > max_bytes;
        body.truncate(max_bytes);
        Ok((body, truncated))
    }
}

impl Tool for HttpFetch {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, cx: &CallContext) -> Result<Value, ToolError> {
        if !self.enabled {
            return Err(ToolError::Refused { tool: TOOL.into(), reason: DISABLED_REASON.into() });
        }
        let raw = args.get("url").and_then(Value::as_str).unwrap_or_default();
        let max_bytes = args.get("max_bytes").and_then(Value::as_u64).unwrap_or(DEFAULT_MAX_BYTES).clamp(1, MAX_BYTES);
        let url = match (self.test_origin, Url::parse(raw)) {
            (Some(origin), Ok(u)) if u.host_str() == Some(origin.ip().to_string().as_str()) && u.port() == Some(origin.port()) => u,
            _ => parse_url(raw)?,
        };
        let budget = cx.remaining();
        if budget.is_zero() {
            return Err(self.timeout(budget));
        }
        let refusal = RefusalSlot::default();
        let client = build_client(budget, refusal.clone())
            .map_err(|e| self.failed(format!("cannot set up the HTTP client: {}", crate::shared::causes::chain(&e))))?;
        let mut response = match client.get(url.clone()).send() {
            Ok(response) => response,
            Err(e) => return Err(self.request_error(&url, e, &refusal, budget)),
        };
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(self.transient(format!("{url} answered {status}"), retry_after_ms(response.headers())));
        }
        if status.is_client_error() {
            return Err(self.failed(format!("{url} answered {status}")));
        }
        let final_url = response.url().to_string();
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (body, truncated) = self.read_body(&mut response, max_bytes as usize, cx, budget)?;
        Ok(json!({
            "url": raw,
            "final_url": final_url,
            "status": status.as_u16(),
            "content_type": content_type,
            "body": String::from_utf8_lossy(&body),
            "bytes": body.len(),
            "truncated": truncated,
        }))
    }
}

/// A client for one call: no proxy, the public-only resolver, redirects re-checked, and the call's time budget.
fn build_client(budget: Duration, refusal: RefusalSlot) -> reqwest::Result<reqwest::blocking::Client> {
    let redirect_refusal = refusal.clone();
    let redirects = Policy::custom(move |attempt| {
        // The first of `previous` is the URL first asked for, not a redirect.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        // Names are left to the resolver; literals and schemes are checked here, as the resolver never sees them.
        match refusal_for(attempt.url()) {
            Some(reason) => {
                record(&redirect_refusal, reason.clone());
                attempt.error(reason)
            }
            None => attempt.follow(),
        }
    });
    reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT.min(budget))
        .timeout(budget)
        .redirect(redirects)
        .dns_resolver(Arc::new(PublicOnlyResolver { refusal }))
        .user_agent(concat!("Keel/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The `Retry-After` delay in milliseconds. Only the delay-seconds form is read: the HTTP-date form would need a
/// date parser Keel does not otherwise carry, and the retry policy's own backoff covers its absence.
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(seconds.saturating_mul(1000))
}

fn is_reqwest_timeout(error: &io::Error) -> bool {
    error.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(reqwest::Error::is_timeout)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Toolbox;

    fn toolbox(enabled: bool) -> Toolbox {
        let mut toolbox = Toolbox::new();
        toolbox.add(Arc::new(HttpFetch::new(enabled))).unwrap();
        toolbox
    }

    fn assert_refused<T: std::fmt::Debug>(result: Result<T, ToolError>, needle: &str) {
        match result {
            Err(ToolError::Refused { reason, .. }) => assert!(reason.contains(needle), "reason {reason:?} lacks {needle:?}"),
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn forbidden_ranges_and_public_addresses() {
        let cases = [
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("::1", true),
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("::", true),
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("192.168.1.1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("255.255.255.255", true),
            ("240.0.0.1", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:192.168.0.1", true),
            ("::127.0.0.1", true),
            ("64:ff9b::10.0.0.1", true),
            ("93.184.216.34", false),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("172.32.0.1", false),
            ("100.128.0.1", false),
            ("2606:4700::1111", false),
            ("2001:4860:4860::8888", false),
            ("::ffff:93.184.216.34", false),
            ("64:ff9b::8.8.8.8", false),
        ];
        for (ip, forbidden) in cases {
            assert_eq!(is_forbidden(ip.parse().unwrap()), forbidden, "{ip}");
        }
    }

    #[test]
    fn check_url_refuses_local_literals_and_other_schemes() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "https://[::ffff:127.0.0.1]:8443/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0:8080/",
        ] {
            assert_refused(check_url(url), "private or local address");
        }
        assert_refused(check_url("file:///etc/passwd"), "file: scheme is refused");
        assert_refused(check_url("ftp://93.184.216.34/"), "scheme is refused");
        assert!(matches!(check_url("not a url"), Err(ToolError::Failed { .. })));
        for url in ["https://example.com/", "http://93.184.216.34/", "https://[2606:4700::1111]/"] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn a_name_with_any_private_address_is_refused() {
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let private: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(check_resolved("example.com", &[public]), Ok(()));
        let refused = check_resolved("evil.example", &[public, private]).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "evil.example resolves to a private or local address (127.0.0.1); HTTP fetch only reaches public addresses"
        );
    }

    #[test]
    fn localhost_is_refused_at_connect_time() {
        let toolbox = toolbox(true);
        let result = toolbox.call("http_fetch", &json!({ "url": "http://localhost:9/" }), None, &|| false);
        assert_refused(result, "localhost resolves to a private or local address");
        let literal = toolbox.call("http_fetch", &json!({ "url": "http://127.0.0.1:9/" }), None, &|| false);
        assert_refused(literal, "127.0.0.1 is a private or local address");
    }

    /// A loopback server that answers every request with a redirect to `location`, counting the requests.
    fn redirecting(location: String) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(stream, "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        (addr, hits)
    }

    #[test]
    fn a_redirect_to_a_private_address_is_refused_before_anything_reaches_it() {
        // The private target: a loopback listener that must never see a connection.
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let port = target.local_addr().unwrap().port();
        for (location, reason) in [
            (format!("http://127.0.0.1:{port}/secret"), "127.0.0.1 is a private or local address"),
            (format!("http://localhost:{port}/secret"), "localhost resolves to a private or local address"),
            (format!("http://[::1]:{port}/secret"), "::1 is a private or local address"),
        ] {
            let (origin, hits) = redirecting(location.clone());
            let mut toolbox = Toolbox::new();
            toolbox.add(Arc::new(HttpFetch::with_test_origin(origin))).unwrap();
            let result = toolbox.call("http_fetch", &json!({ "url": format!("http://{origin}/start") }), None, &|| false);
            assert_refused(result, reason);
            // The fault landed where it was meant to: the first site was asked once, and it redirected.
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "{location}");
            assert!(matches!(target.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock), "{location}: the private address was reached");
        }
        // Positive control: without the exemption the first request itself is refused, so the server is not reached.
        let (origin, hits) = redirecting("http://example.com/".into());
        assert_refused(toolbox(true).call("http_fetch", &json!({ "url": format!("http://{origin}/start") }), None, &|| false), "private or local address");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn a_disabled_tool_refuses_every_call() {
        let result = toolbox(false).call("http_fetch", &json!({ "url": "https://example.com/" }), None, &|| false);
        assert_refused(result, "HTTP fetch is off");
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after_ms(&headers), Some(120_000));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after_ms(&headers), None);
    }
}
