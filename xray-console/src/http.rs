//! A small HTTP/1.1 server on std threads, with every read and write bounded.
//!
//! - One accept thread; each connection is served on a short-lived thread of its own, at
//!   most [`max_http_connections`](crate::Config::max_http_connections) at once. A
//!   connection past that is answered `503` (with `Retry-After: 1`) by the accept thread
//!   and closed.
//! - One request per connection, answered with `Connection: close`.
//! - The request line and headers: at most [`MAX_HEAD`] bytes (else `431`), within
//!   [`HttpDeadlines::head`] (else `408`). Invalid UTF-8 or a malformed line is a `400`,
//!   another HTTP version a `505`, `Transfer-Encoding` a `411` (chunked) or `501`, an
//!   `Expect` other than `100-continue` a `417`.
//! - The body is read only when the handler asks for it ([`Request::body`]), with a bound:
//!   a `Content-Length` over it is a `413`, answered without reading the body (nothing is
//!   ever allocated from a declared length: the buffer grows as bytes arrive).
//!   `Expect: 100-continue` is honoured. The body must arrive within
//!   [`HttpDeadlines::body`] (else `408`).
//! - The response is written in chunks, each with the write timeout of what is left of
//!   [`HttpDeadlines::response`]; a client that never reads costs its own connection
//!   thread that long, and nothing else.
//! - Shutdown sets a flag, wakes the accept thread (a connection to itself), shuts every
//!   open connection's socket down and joins every thread.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request line plus headers, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// After an answer that left part of the request unread (a body no route took, a refused
/// request), how long the connection keeps draining what the client still sends, so that
/// closing it does not reset the answer away (at most the head deadline, if shorter); and
/// how much it drains at most.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// How long a connection whose client declared nothing more waits for bytes it may have
/// sent anyway (pipelined requests) before closing.
const PENDING_LOOK: Duration = Duration::from_millis(20);

/// Bytes written to the socket at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// How long each part of an HTTP exchange may take, on one connection.
///
/// ```
/// use std::time::Duration;
/// use xray_console::HttpDeadlines;
///
/// let d = HttpDeadlines::default();
/// assert_eq!(d.head, Duration::from_secs(5));
/// assert_eq!(d.body, Duration::from_secs(30));
/// assert_eq!(d.response, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpDeadlines {
    /// From the connection's start to the end of its request line and headers
    /// (default 5 s); past it the request is answered `408`.
    pub head: Duration,
    /// From the moment a route asks for the body to its last byte (default 30 s); past
    /// it the request is answered `408`.
    pub body: Duration,
    /// For writing the whole response (default 30 s); past it the connection is closed.
    pub response: Duration,
}

impl Default for HttpDeadlines {
    fn default() -> Self {
        HttpDeadlines {
            head: Duration::from_secs(5),
            body: Duration::from_secs(30),
            response: Duration::from_secs(30),
        }
    }
}

/// What a connection is read from and written to: a `TcpStream`, or a script in tests.
pub(crate) trait Stream: Read + Write {
    /// As [`TcpStream::set_read_timeout`].
    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
    /// As [`TcpStream::set_write_timeout`].
    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
    /// Ends the writing half (the client sees the end of the response).
    fn shutdown_write(&mut self);
}

impl Stream for TcpStream {
    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// The HTTP version of a request, echoed in its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request line and the headers the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The method, as sent (methods are case-sensitive).
    pub(crate) method: String,
    /// The path and query (an absolute-form target is cut to its path).
    pub(crate) target: String,
    pub(crate) version: Version,
    /// The declared body length; a number too large for a `u64` is `u64::MAX`.
    pub(crate) content_length: Option<u64>,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
    /// The `Host` header's value.
    pub(crate) host: Option<String>,
    /// The `Origin` header's value (a browser's, on a cross-origin request
    /// or a `POST`).
    pub(crate) origin: Option<String>,
}

/// A request the server will not serve: the status it answers, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
}

fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

impl Refusal {
    fn response(&self) -> Response {
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_owned())];
        if self.status == 503 {
            headers.push(("Retry-After", "1".to_owned()));
        }
        Response {
            status: self.status,
            headers,
            body: format!("{}\n", self.reason).into_bytes(),
        }
    }
}

/// A response: status, headers (`Content-Length` and `Connection` are added), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// What handles a request.
pub(crate) type Handler = dyn Fn(&mut Request<'_>) -> Response + Send + Sync;

/// A request being served: its head, and its body on demand.
pub(crate) struct Request<'a> {
    head: Head,
    stream: &'a mut dyn Stream,
    /// Bytes read past the head (the start of the body).
    early: Vec<u8>,
    body_deadline: Duration,
    /// Body bytes consumed so far (read, or refused as too large: then all of them count
    /// as unread).
    consumed: u64,
    body_taken: bool,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl Request<'_> {
    /// The method (`GET`, `HEAD`, `POST`, …).
    pub(crate) fn method(&self) -> &str {
        &self.head.method
    }

    /// The path and query, as sent.
    pub(crate) fn url(&self) -> &str {
        &self.head.target
    }

    /// Reads the body, at most `max` bytes: a declared length over it is a `413`, without
    /// reading anything. Sends `100 Continue` first when the client waits for it. A
    /// request without `Content-Length` has an empty body, and so has a second call.
    pub(crate) fn body(&mut self, max: u64) -> Result<Vec<u8>, Refusal> {
        if self.body_taken {
            return Ok(Vec::new());
        }
        self.body_taken = true;
        let Some(declared) = self.head.content_length else {
            return Ok(Vec::new());
        };
        if declared > max {
            return Err(refuse(413, "request body too large"));
        }
        let len = usize::try_from(declared).map_err(|_| refuse(413, "request body too large"))?;
        let mut body = std::mem::take(&mut self.early);
        body.truncate(len);
        self.consumed = body.len() as u64;
        let deadline = after(Instant::now(), self.body_deadline);
        if body.len() < len && self.head.expect_continue && self.head.version == Version::Http11 {
            write_all_by(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
                .map_err(|_| refuse(408, "could not send 100 Continue"))?;
        }
        let mut chunk = [0u8; 16 * 1024];
        while body.len() < len {
            let want = (len - body.len()).min(chunk.len());
            match read_by(self.stream, &mut chunk[..want], deadline) {
                Ok(0) => return Err(refuse(400, "request body cut short")),
                Ok(n) => {
                    body.extend_from_slice(&chunk[..n.min(want)]);
                    self.consumed = body.len() as u64;
                }
                Err(e) if is_timeout(&e) => {
                    return Err(refuse(408, "request body not received in time"))
                }
                Err(_) => return Err(refuse(400, "request body cut short")),
            }
        }
        Ok(body)
    }

    /// Whether part of a declared body is still unread.
    fn body_unread(&self) -> bool {
        self.head
            .content_length
            .is_some_and(|declared| declared > self.consumed)
    }
}

/// `from + d`, or as far as an `Instant` goes: a deadline of `Duration::MAX` means none.
fn after(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .or_else(|| from.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(from)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads once into `buf`, giving up at `deadline` (a `TimedOut` error).
fn read_by(s: &mut dyn Stream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => continue, // the deadline check decides
            r => return r,
        }
    }
}

/// Writes all of `data` by `deadline`, in chunks, each with the time left as its timeout.
fn write_all_by(s: &mut dyn Stream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_write_timeout(Some(left))?;
        let n = data.len().min(WRITE_CHUNK);
        match s.write(&data[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => data = data.get(w..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    s.flush()
}

/// The end of the head in `buf` (just past its empty line), if it is there. Lines may end
/// in CRLF or a bare LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// Why no head was read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client went away (or sent nothing at all): nothing to answer.
    Gone,
    /// Answer this and close.
    Refused(Refusal),
}

/// Reads the head into `buf` (which may then hold the start of the body too) and returns
/// its length. Leading empty lines are skipped.
fn read_head(s: &mut dyn Stream, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize, HeadError> {
    let mut chunk = [0u8; 4096];
    let mut scanned: usize = 0;
    loop {
        // Empty lines before the request line are allowed (RFC 9112 §2.2).
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 {
            buf.drain(..blank);
            scanned = 0;
        }
        let from = scanned.saturating_sub(2);
        if let Some(end) = head_end(buf.get(from..).unwrap_or_default()).map(|e| e + from) {
            if end > MAX_HEAD {
                return Err(HeadError::Refused(refuse(431, "request head too large")));
            }
            return Ok(end);
        }
        scanned = buf.len();
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::Refused(refuse(431, "request head too large")));
        }
        let want = (MAX_HEAD + 4 - buf.len()).min(chunk.len());
        match read_by(s, &mut chunk[..want], deadline) {
            Ok(0) if buf.is_empty() => return Err(HeadError::Gone),
            Ok(0) => return Err(HeadError::Refused(refuse(400, "request head cut short"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(want)]),
            // A connection opened ahead of use (browsers do) and never used: just close.
            Err(e) if is_timeout(&e) && buf.is_empty() => return Err(HeadError::Gone),
            Err(e) if is_timeout(&e) => {
                return Err(HeadError::Refused(refuse(
                    408,
                    "request head not received in time",
                )))
            }
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head (request line and headers, up to and including its empty line).
pub(crate) fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|_| refuse(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(refuse(400, "malformed method"));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes().get(5).is_some_and(u8::is_ascii_digit)
            && v.as_bytes().get(6) == Some(&b'.')
            && v.as_bytes().get(7).is_some_and(u8::is_ascii_digit) =>
        {
            return Err(refuse(505, "HTTP version not supported"))
        }
        _ => return Err(refuse(400, "malformed HTTP version")),
    };
    let target = origin_form(target).ok_or(refuse(400, "malformed request target"))?;
    let mut head = Head {
        method: method.to_owned(),
        target,
        version,
        content_length: None,
        expect_continue: false,
        host: None,
        origin: None,
    };
    let mut transfer_encoding: Option<bool> = None; // Some(chunked?)
    let mut hosts = 0;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(refuse(400, "folded header line"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(refuse(400, "malformed header"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(refuse(400, "malformed header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(refuse(400, "control character in a header"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "malformed Content-Length"));
            }
            let n = value.parse::<u64>().unwrap_or(u64::MAX);
            if head.content_length.is_some_and(|m| m != n) {
                return Err(refuse(400, "conflicting Content-Length headers"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked"));
            transfer_encoding = Some(chunked || transfer_encoding == Some(true));
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            head.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(refuse(417, "only `Expect: 100-continue` is understood"));
            }
            head.expect_continue = true;
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; none has two.
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(refuse(
            400,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    match transfer_encoding {
        Some(true) => Err(refuse(
            411,
            "chunked request bodies are not accepted: send a Content-Length",
        )),
        Some(false) => Err(refuse(501, "Transfer-Encoding not supported")),
        None => Ok(head),
    }
}

/// Whether `host` (a `Host` value, or the host of an `Origin`, with or
/// without a port) names this machine's loopback interface: `localhost` or a
/// name under it (RFC 6761), an IPv4 address in `127.0.0.0/8`, or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]` or `[::1]:2000`.
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => {
                return ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|i| name.get(i..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses, on a server bound to a loopback address, a request a browser
/// made for another site: its `Host` is not this machine (a DNS rebinding
/// attack: a page of `evil.example`, its name now resolving to 127.0.0.1,
/// reading the traces), or its `Origin` is a page of another site (posting
/// to the API). SDKs and the console's own pages pass.
fn check_local(head: &Head) -> Result<(), Refusal> {
    if head.host.as_deref().is_some_and(|h| !is_loopback_host(h)) {
        return Err(refuse(
            403,
            "this console only answers requests addressed to localhost (Host)",
        ));
    }
    if let Some(origin) = &head.origin {
        let host = origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
        if !host.is_some_and(is_loopback_host) {
            return Err(refuse(
                403,
                "this console only answers pages served from localhost (Origin)",
            ));
        }
    }
    Ok(())
}

/// The origin form (`/path?query`) of a request target, or `None` if it is malformed.
/// An absolute form (`http://host/path`) is cut to its path; `*` is kept.
fn origin_form(target: &str) -> Option<String> {
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    if target.starts_with('/') || target == "*" {
        return Some(target.to_owned());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        target.get(7..)?
    } else if lower.starts_with("https://") {
        target.get(8..)?
    } else {
        return None;
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let path = rest.get(at..)?;
    Some(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The bytes of a response's status line and headers.
fn response_head(version: Version, r: &Response) -> Vec<u8> {
    let status = if (100..1000).contains(&r.status) {
        r.status
    } else {
        500
    };
    let mut head = format!(
        "{} {status} {}\r\n",
        version.as_str(),
        reason_phrase(status)
    );
    for (name, value) in &r.headers {
        // A header that would end its line early, or name another, is left out.
        let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
        let value_ok = !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        let ours =
            name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection");
        if name_ok && value_ok && !ours {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // No page of the console is for another site to frame (clickjacking), and no
    // answer is to be read as anything but its declared type.
    head.push_str(
        "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
         Content-Security-Policy: frame-ancestors 'none'\r\n",
    );
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    head.into_bytes()
}

/// Writes a response by `deadline`; with `head_only` (a `HEAD` request), no body.
fn write_response(
    s: &mut dyn Stream,
    version: Version,
    r: &Response,
    head_only: bool,
    deadline: Instant,
) -> io::Result<()> {
    let mut head = response_head(version, r);
    if head_only {
        return write_all_by(s, &head, deadline);
    }
    if r.body.len() <= WRITE_CHUNK {
        // One write for a small response.
        head.extend_from_slice(&r.body);
        return write_all_by(s, &head, deadline);
    }
    write_all_by(s, &head, deadline)?;
    write_all_by(s, &r.body, deadline)
}

/// Reads and drops what the client still sends, for a while, after the answer: closing a
/// socket with unread bytes resets the connection, and the client may lose the answer.
/// With `expected` false (nothing more was declared), only bytes already there or about to
/// arrive (pipelined requests) are waited for: a client that sent nothing more costs a
/// brief look, not the whole lingering time.
fn linger(s: &mut dyn Stream, deadlines: &HttpDeadlines, expected: bool) {
    s.shutdown_write();
    let deadline = after(Instant::now(), LINGER.min(deadlines.head));
    let mut chunk = [0u8; 16 * 1024];
    if !expected {
        match read_by(
            s,
            &mut chunk,
            after(Instant::now(), PENDING_LOOK.min(deadlines.head)),
        ) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match read_by(s, &mut chunk, deadline) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Serves one request on a connection: reads its head, calls `handler`, writes the
/// response. Nothing here panics on input; `handler` is the caller's to guard.
/// Serves one request on `s`. `local_only`: the server is bound to a
/// loopback address, and answers only requests addressed to it (see
/// [`check_local`]).
pub(crate) fn serve_connection(
    s: &mut dyn Stream,
    deadlines: &HttpDeadlines,
    local_only: bool,
    handler: &Handler,
) {
    let start = Instant::now();
    let mut buf = Vec::new();
    let refused = |s: &mut dyn Stream, version: Version, r: Refusal, head_only: bool| {
        let _ = write_response(
            s,
            version,
            &r.response(),
            head_only,
            after(Instant::now(), deadlines.response),
        );
        linger(s, deadlines, true);
    };
    let end = match read_head(s, &mut buf, after(start, deadlines.head)) {
        Ok(end) => end,
        Err(HeadError::Gone) => return,
        Err(HeadError::Refused(r)) => return refused(s, Version::Http11, r, false),
    };
    let head = match parse_head(buf.get(..end).unwrap_or_default()) {
        Ok(head) => head,
        // A refused HEAD request gets no content either (RFC 9110 §9.3.2).
        Err(r) => return refused(s, Version::Http11, r, buf.starts_with(b"HEAD ")),
    };
    if local_only {
        if let Err(r) = check_local(&head) {
            let head_only = head.method == "HEAD";
            return refused(s, head.version, r, head_only);
        }
    }
    let early = buf.split_off(end.min(buf.len()));
    let mut req = Request {
        head,
        stream: s,
        early,
        body_deadline: deadlines.body,
        consumed: 0,
        body_taken: false,
    };
    let response = handler(&mut req);
    let head_only = req.head.method == "HEAD";
    let version = req.head.version;
    let unread = req.body_unread();
    let s = req.stream;
    if write_response(
        s,
        version,
        &response,
        head_only,
        after(Instant::now(), deadlines.response),
    )
    .is_ok()
    {
        // Always: besides an unread body, the client may have sent more
        // (pipelined requests) that the head's reads left in the socket.
        linger(s, deadlines, unread);
    }
}

/// The open connections, and how many may be.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    max: usize,
    deadlines: HttpDeadlines,
    /// Bound to a loopback address (see [`check_local`]).
    local_only: bool,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    conns: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frees a connection's slot when its thread ends, however it ends.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Dropping our own join handle (if still there) detaches this thread.
        let _ = self.shared.open().conns.remove(&self.id);
    }
}

/// A running HTTP server: its accept thread and its connections.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and starts the accept thread.
    pub(crate) fn start(
        addr: &str,
        max_connections: usize,
        deadlines: HttpDeadlines,
        handler: Arc<Handler>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            max: max_connections.max(1),
            deadlines,
            local_only: addr.ip().is_loopback(),
            open: Mutex::new(Open::default()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("xray-http-accept".into())
                .spawn(move || accept_loop(&listener, &shared, &handler))?
        };
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks while the server runs (until [`Server::shutdown`] from elsewhere, i.e.
    /// for good).
    pub(crate) fn wait(mut self) {
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, closes the listener and every open connection, and waits for
    /// their threads.
    pub(crate) fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            // Wake the accept thread with a connection of our own.
            let ip = match self.addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let woken = TcpStream::connect_timeout(
                &SocketAddr::new(ip, self.addr.port()),
                Duration::from_secs(2),
            );
            // Without the wake-up the thread would block until the next client: leave it.
            if woken.is_ok() {
                let _ = t.join();
            }
        }
        let conns = std::mem::take(&mut self.shared.open().conns);
        for (stream, _) in conns.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, thread)) in conns {
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, handler: &Arc<Handler>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: let the backlog wait rather than spin.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut open = shared.open();
        if open.conns.len() >= shared.max {
            drop(open);
            busy(stream);
            continue;
        }
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        let id = open.next;
        open.next = open.next.wrapping_add(1);
        open.conns.insert(id, (kept, None));
        drop(open);
        let slot = Slot {
            shared: shared.clone(),
            id,
        };
        let handler = handler.clone();
        let deadlines = shared.deadlines;
        let local_only = shared.local_only;
        let spawned = std::thread::Builder::new()
            .name("xray-http-conn".into())
            .spawn(move || {
                let _slot = slot;
                let mut stream = stream;
                serve_connection(&mut stream, &deadlines, local_only, &*handler);
            });
        match spawned {
            Ok(t) => {
                // Unless the thread is already done (its slot gone), keep its handle so
                // that shutdown can join it.
                if let Some(entry) = shared.open().conns.get_mut(&id) {
                    entry.1 = Some(t);
                }
            }
            Err(_) => {
                // The closure (and its slot, which frees the entry) was dropped.
            }
        }
    }
}

/// Answers `503` on a connection past the limit, without waiting for anything.
fn busy(mut stream: TcpStream) {
    let r = refuse(503, "the console is serving too many connections; retry").response();
    let bytes = [response_head(Version::Http11, &r), r.body].concat();
    if stream.set_nonblocking(true).is_ok() {
        // Read what already came, so that closing does not reset the connection.
        let mut sink = [0u8; 4096];
        for _ in 0..4 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = stream.write(&bytes);
    }
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted connection: reads come from `input` (one chunk per read; when it is
    /// empty, a read times out, or ends if `eof`), writes go to `output`.
    #[derive(Default)]
    struct Script {
        input: VecDeque<Vec<u8>>,
        eof: bool,
        output: Vec<u8>,
        /// `output`'s length at each read: what had been written before it.
        written_before_read: Vec<usize>,
        /// Accept at most this many bytes per write (0: all).
        write_cap: usize,
    }

    impl Script {
        fn new(chunks: &[&[u8]], eof: bool) -> Script {
            Script {
                input: chunks.iter().map(|c| c.to_vec()).collect(),
                eof,
                ..Script::default()
            }
        }
        fn output(&self) -> String {
            String::from_utf8_lossy(&self.output).into_owned()
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.written_before_read.push(self.output.len());
            match self.input.pop_front() {
                Some(mut c) => {
                    let n = c.len().min(buf.len());
                    buf[..n].copy_from_slice(&c[..n]);
                    if n < c.len() {
                        self.input.push_front(c.split_off(n));
                    }
                    Ok(n)
                }
                None if self.eof => Ok(0),
                None => {
                    std::thread::sleep(Duration::from_millis(5));
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = if self.write_cap == 0 {
                buf.len()
            } else {
                buf.len().min(self.write_cap)
            };
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Script {
        fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
            assert!(
                t.is_some_and(|t| !t.is_zero()),
                "a zero timeout is an error"
            );
            Ok(())
        }
        fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
            assert!(
                t.is_some_and(|t| !t.is_zero()),
                "a zero timeout is an error"
            );
            Ok(())
        }
        fn shutdown_write(&mut self) {}
    }

    fn short() -> HttpDeadlines {
        HttpDeadlines {
            head: Duration::from_millis(100),
            body: Duration::from_millis(100),
            response: Duration::from_secs(1),
        }
    }

    /// Serves `script` with a handler that reads the body (up to `max`) for POSTs and
    /// answers what it got.
    fn serve(script: &mut Script, max: u64) {
        let handler = move |req: &mut Request<'_>| {
            let text = if req.method() == "POST" {
                match req.body(max) {
                    Ok(b) => format!("body {}", String::from_utf8_lossy(&b)),
                    Err(r) => {
                        return r.response();
                    }
                }
            } else {
                format!("{} {}", req.method(), req.url())
            };
            Response {
                status: 200,
                headers: vec![("Content-Type", "text/plain".into()), ("X-A", "b".into())],
                body: text.into_bytes(),
            }
        };
        serve_connection(script, &short(), false, &handler);
    }

    fn status_of(out: &str) -> u16 {
        out.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn request_line_and_headers() {
        let h =
            parse_head(b"GET /traces?filter=x HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n\r\n")
                .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/traces?filter=x");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.content_length, Some(12));
        assert!(!h.expect_continue);
        // Bare LF line ends, HTTP/1.0, a header value with UTF-8 in it.
        let h = parse_head("POST /api/import HTTP/1.0\nX-Name: é\n\n".as_bytes()).unwrap();
        assert_eq!((h.method.as_str(), h.version), ("POST", Version::Http10));
        assert_eq!(h.content_length, None);
        // Absolute form is cut to its path.
        let h = parse_head(b"GET http://127.0.0.1:2000/api/stats?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        assert_eq!(h.target, "/api/stats?x=1");
        let h = parse_head(b"GET HTTP://host HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(h.target, "/");
        // Case-insensitive header names; the same length twice is fine.
        let h = parse_head(b"POST / HTTP/1.1\r\nHost: h\r\ncontent-LENGTH: 3\r\nContent-Length: 3\r\nEXPECT: 100-Continue\r\n\r\n")
            .unwrap();
        assert_eq!(h.content_length, Some(3));
        assert!(h.expect_continue);
        // A length past u64 is kept as the largest, to be refused when read.
        let h = parse_head(
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.content_length, Some(u64::MAX));
    }

    #[test]
    fn loopback_hosts_are_recognized() {
        for host in [
            "localhost",
            "LOCALHOST:2000",
            "localhost.",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:2000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:2000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:2000",
            "localhost.evil.example",
            "notlocalhost",
            "10.0.0.1:2000",
            "0.0.0.0:2000",
            "[::2]:2000",
            "[::1]x",
            "[::1",
            "::1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    /// On a loopback address, a browser's request for another site is
    /// refused: DNS rebinding (`Host: evil.example`) or a page of another
    /// site posting to the API (`Origin`). SDKs send neither.
    #[test]
    fn a_loopback_server_refuses_requests_for_other_sites() {
        let handler = |_: &mut Request<'_>| Response {
            status: 200,
            headers: Vec::new(),
            body: b"traces".to_vec(),
        };
        let serve = |head: &str| {
            let mut script = Script::new(&[head.as_bytes()], true);
            serve_connection(&mut script, &short(), true, &handler);
            script.output()
        };
        for ok in [
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:2000\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: localhost:2000\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "POST /api/import HTTP/1.1\r\nHost: 127.0.0.1:2000\r\nOrigin: http://127.0.0.1:2000\r\nContent-Length: 0\r\n\r\n",
            "POST /GetSamplingRules HTTP/1.1\r\nHost: 127.0.0.1:2000\r\nContent-Length: 0\r\n\r\n",
        ] {
            let out = serve(ok);
            assert!(out.starts_with("HTTP/1.") && out.contains(" 200 "), "{ok}: {out}");
            assert!(out.ends_with("traces"), "{ok}: {out}");
        }
        for refused in [
            "GET /api/traces HTTP/1.1\r\nHost: evil.example:2000\r\n\r\n",
            "GET /api/traces HTTP/1.0\r\nHost: evil.example\r\n\r\n",
            "POST /api/import HTTP/1.1\r\nHost: 127.0.0.1:2000\r\nOrigin: https://evil.example\r\nContent-Length: 0\r\n\r\n",
            "POST /api/import HTTP/1.1\r\nHost: 127.0.0.1:2000\r\nOrigin: null\r\nContent-Length: 0\r\n\r\n",
        ] {
            let out = serve(refused);
            assert!(out.contains(" 403 Forbidden\r\n"), "{refused}: {out}");
            assert!(!out.contains("traces"), "{refused}: {out}");
        }
        // Bound elsewhere (`--address 0.0.0.0:2000`, deliberately exposed): served.
        let mut script = Script::new(
            &[b"GET / HTTP/1.1\r\nHost: evil.example:2000\r\n\r\n"],
            true,
        );
        serve_connection(&mut script, &short(), false, &handler);
        assert!(script.output().ends_with("traces"));
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let status = |h: &[u8]| parse_head(h).map(|_| 200).unwrap_or_else(|r| r.status);
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / \r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET noslash HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\n: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: \xff\r\n\r\n",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 4\r\n\r\n"
            ),
            411
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n"),
            417
        );
    }

    #[test]
    fn head_end_takes_crlf_or_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn a_get_is_answered_with_length_type_headers_and_close() {
        let mut s = Script::new(&[b"GET /api/stats?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"], false);
        serve(&mut s, 100);
        assert_eq!(
            s.output(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\n\
             X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
             Content-Security-Policy: frame-ancestors 'none'\r\nContent-Length: 18\r\n\
             Connection: close\r\n\r\nGET /api/stats?a=1"
        );
    }

    #[test]
    fn a_head_request_gets_the_headers_and_no_body() {
        let mut s = Script::new(&[b"HEAD / HTTP/1.0\r\n\r\n"], true);
        serve(&mut s, 100);
        let out = s.output();
        assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 6\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn a_head_split_over_many_reads_with_leading_empty_lines() {
        let mut s = Script::new(
            &[
                b"\r\n",
                b"PO",
                b"ST / HTTP/1.1\r",
                b"\nHost: h\r\nContent-Length: 5\r\n",
                b"\r\nhe",
                b"llo",
            ],
            false,
        );
        serve(&mut s, 100);
        assert!(s.output().ends_with("\r\n\r\nbody hello"), "{}", s.output());
    }

    #[test]
    fn expect_100_continue_is_answered_before_the_body_is_read() {
        let mut s = Script::new(
            &[
                b"POST /api/import HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                b"hello",
            ],
            false,
        );
        serve(&mut s, 100);
        let out = s.output();
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{out}"
        );
        assert!(out.ends_with("body hello"), "{out}");
        // The 100 went out before the read that brought the body.
        assert_eq!(s.written_before_read.get(1), Some(&25));
        // Not when the body came with the head, nor for HTTP/1.0.
        for req in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"[..],
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        ] {
            let mut s = Script::new(&[req], false);
            serve(&mut s, 100);
            assert!(!s.output().contains("100 Continue"), "{}", s.output());
            assert!(s.output().ends_with("body hi"), "{}", s.output());
        }
    }

    #[test]
    fn a_body_over_the_limit_is_413_unread_and_without_100_continue() {
        for len in [
            "101",
            "1000000000000000",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            let head =
                format!("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n");
            let mut s = Script::new(&[head.as_bytes(), b"x"], true);
            serve(&mut s, 100);
            let out = s.output();
            assert!(
                out.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
                "{out}"
            );
            assert!(!out.contains("100 Continue"), "{out}");
            // One read for the head, then the linger's drain (not the body's).
            assert!(s.written_before_read[1..].iter().all(|&w| w == out.len()));
        }
        // A route that reads no body answers a huge declared length all the same.
        let mut s = Script::new(
            &[b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n"],
            true,
        );
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 200);
    }

    #[test]
    fn a_body_that_does_not_come_is_408_and_a_short_one_400() {
        let t = Instant::now();
        let mut s = Script::new(
            &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"],
            false,
        );
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 408, "{}", s.output());
        assert!(t.elapsed() < Duration::from_secs(3));
        let mut s = Script::new(
            &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"],
            true,
        );
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 400, "{}", s.output());
        // No length: an empty body.
        let mut s = Script::new(&[b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"], false);
        serve(&mut s, 100);
        assert!(s.output().ends_with("\r\n\r\nbody "), "{}", s.output());
    }

    #[test]
    fn head_limits_and_deadline() {
        // Over 16 KiB of headers.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let mut s = Script::new(&[big.as_bytes()], false);
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 431, "{}", s.output());
        // Exactly 16 KiB is fine.
        let fits = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD - 32)
        );
        assert_eq!(fits.len(), MAX_HEAD);
        let mut s = Script::new(&[fits.as_bytes()], false);
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 200, "{}", s.output());
        // Endless header bytes, never an empty line, in small pieces.
        let piece = [b'a'; 100];
        let pieces: Vec<&[u8]> = std::iter::once(&b"GET / HTTP/1.1\r\nHost: h\r\nX: "[..])
            .chain(std::iter::repeat(&piece[..]).take(1000))
            .collect();
        let mut s = Script::new(&pieces, false);
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 431, "{}", s.output());
        let before_answer = s.written_before_read.iter().filter(|&&w| w == 0).count();
        assert!(
            before_answer < 200,
            "{before_answer} reads before the answer"
        );
        // A head that stops coming: 408 once the deadline passes.
        let t = Instant::now();
        let mut s = Script::new(&[b"GET / HTTP/1.1\r\nHost:"], false);
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 408, "{}", s.output());
        assert!(t.elapsed() < Duration::from_secs(3));
        // Garbage and invalid UTF-8: 400; nothing at all: no answer.
        for junk in [
            &b"\x16\x03\x01\x02\x00garbage\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: \xc3\x28\r\n\r\n",
        ] {
            let mut s = Script::new(&[junk], true);
            serve(&mut s, 100);
            assert!(
                s.output().starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{}",
                s.output()
            );
        }
        for nothing in [&b""[..], b"\r\n"] {
            let mut s = Script::new(&[nothing], true);
            serve(&mut s, 100);
            assert_eq!(s.output(), "");
        }
        // Cut short mid-head: 400.
        let mut s = Script::new(&[b"GET / HT"], true);
        serve(&mut s, 100);
        assert_eq!(status_of(&s.output()), 400);
    }

    #[test]
    fn a_response_is_written_in_pieces_and_headers_cannot_inject_lines() {
        let body = vec![b'x'; 3 * WRITE_CHUNK + 17];
        let r = Response {
            status: 200,
            headers: vec![
                ("Content-Type", "a".into()),
                ("X-Bad", "a\r\nX-Injected: 1".into()),
                ("Bad Name", "a".into()),
                ("Content-Length", "1".into()),
            ],
            body: body.clone(),
        };
        let mut s = Script {
            write_cap: 1000,
            ..Script::default()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        write_response(&mut s, Version::Http11, &r, false, deadline).unwrap();
        let out = s.output();
        let (head, rest) = out.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: a\r\nX-Content-Type-Options: nosniff\r\n\
                 X-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\n\
                 Content-Length: {}\r\nConnection: close",
                body.len()
            )
        );
        assert_eq!(rest.len(), body.len());
        // A deadline already past writes nothing.
        let mut s = Script::default();
        assert!(write_response(&mut s, Version::Http11, &r, false, Instant::now()).is_err());
        assert!(s.output.is_empty());
    }

    #[test]
    fn a_server_answers_refuses_past_its_limit_and_shuts_down() {
        let handler: Arc<Handler> = Arc::new(|req: &mut Request<'_>| Response {
            status: 200,
            headers: vec![("Content-Type", "text/plain".into())],
            body: req.url().as_bytes().to_vec(),
        });
        // A head deadline long enough that the held connection is still
        // open when `/b` comes, on a loaded machine too.
        let deadlines = HttpDeadlines {
            head: Duration::from_secs(1),
            ..short()
        };
        let server = Server::start("127.0.0.1:0", 1, deadlines, handler).unwrap();
        let addr = server.addr();
        let get = |path: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .unwrap();
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            out
        };
        let open = |n: usize| {
            // The accept thread and the connection threads run on their own: wait
            // for the count (a busy machine may take a while), never past 10 s.
            let t = Instant::now();
            while server.shared.open().conns.len() != n && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(server.shared.open().conns.len(), n);
        };
        assert!(get("/a").ends_with("\r\n\r\n/a"));
        // The first connection's slot is free again...
        open(0);
        // ...and one connection holds the only slot (it sends nothing)...
        let held = TcpStream::connect(addr).unwrap();
        open(1);
        let out = get("/b");
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        assert!(out.contains("Retry-After: 1\r\n"), "{out}");
        // ...until its head deadline.
        open(0);
        assert!(get("/c").ends_with("/c"));
        // Shutdown ends a connection still open, and frees the port.
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET / HT").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        server.shutdown();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(TcpListener::bind(addr).is_ok());
        drop(held);
    }
}
