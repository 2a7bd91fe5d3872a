//! The HTTP/1.1 server (`src/http.rs`, routed by `src/server.rs`) against RFC 9110/9112:
//! pipelined bytes, HEAD refusals, 405's `Allow`, the `Host` rule. Each test failed
//! before its fix (found by an adversarial review). Every console is on 127.0.0.1:0.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `request` in one write and reads until the server closes: the bytes read, and
/// the error that ended the read (a reset), if any.
fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, Option<std::io::Error>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// The status line and the header lines of a response, and what follows its empty line.
fn split(response: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..end]);
    (
        head.split("\r\n").map(str::to_owned).collect(),
        response[end + 4..].to_vec(),
    )
}

fn status(head: &[String]) -> u16 {
    head[0].split(' ').nth(1).unwrap().parse().unwrap()
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// bytes that follow the request head (pipelined requests, which RFC 9112 §9.3.2
/// allows a client to send) are left unread when the connection is closed, so the
/// kernel answers the close with a TCP reset: the client gets `ECONNRESET` instead of the
/// end of the response and, for a large response, loses its tail (the reset discards
/// what was still queued). RFC 9112 §9.6 (tear-down): a server that closes after a
/// response should half-close and keep reading ("lingering close") so that the client can
/// read the whole response. `serve_connection` lingers only when a declared body is
/// unread (`Request::body_unread`), never for bytes past the head; its own doc comment
/// on `linger` gives the reason it must ("closing a socket with unread bytes resets the
/// connection, and the client may lose the answer").
#[test]
fn pipelined_requests_after_the_first_do_not_reset_its_response_away() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    // One trace whose export is about 2 MB.
    let id = "1-5f000000-000000000000000000000001";
    let doc = format!(
        r#"{{"trace_id":"{id}","id":"0000000000000001","name":"svc","start_time":1.0,"end_time":2.0,"metadata":{{"default":{{"big":"{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (code, body) = common::http(addr, "POST", "/api/import", doc.as_bytes());
    assert_eq!(code, 200, "{body}");

    // The request, and 100 more pipelined behind it (about 7 KB), in one write.
    let one = format!("GET /api/traces/{id} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for attempt in 0..3 {
        let (out, error) = exchange(addr, one.repeat(101).as_bytes());
        let (head, body) = split(&out);
        assert_eq!(status(&head), 200, "{head:?}");
        let declared: usize = header(&head, "Content-Length").unwrap().parse().unwrap();
        assert!(
            error.is_none() && body.len() == declared,
            "attempt {attempt}: {} of {declared} body bytes, then {error:?}",
            body.len()
        );
    }
    console.shutdown();
}

/// a `HEAD` request the server refuses after parsing its request line (here `417`
/// for an unknown `Expect`, and `411` for a chunked `Transfer-Encoding`) is answered with
/// content. RFC 9110 §9.3.2: "the server MUST NOT send content in the response" to HEAD;
/// RFC 9112 §6.3: a response to HEAD ends with its header section, so a client reads the
/// bytes after it as the start of the next response. (`serve_connection` answers every
/// `parse_head` refusal with `head_only = false`, although the method is known by then.)
#[test]
fn a_refused_head_request_gets_no_content() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    for (request, expected) in [
        (
            format!("HEAD /api/stats HTTP/1.1\r\nHost: {addr}\r\nExpect: something\r\n\r\n"),
            417,
        ),
        (
            format!(
                "HEAD /api/stats HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            411,
        ),
    ] {
        let (out, _) = exchange(addr, request.as_bytes());
        let (head, content) = split(&out);
        assert_eq!(status(&head), expected, "{head:?}");
        assert!(
            content.is_empty(),
            "a {expected} to HEAD carries {} bytes of content: {:?}",
            content.len(),
            String::from_utf8_lossy(&content)
        );
    }
    console.shutdown();
}

/// `405 Method Not Allowed` is sent without an `Allow` header. RFC 9110 §15.5.6:
/// "The origin server MUST generate an Allow header field in a 405 response containing a
/// list of the target resource's currently supported methods." (`server::respond`'s
/// fallback arm.)
#[test]
fn a_405_response_carries_allow() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    for request in [
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
        format!("DELETE /api/stats HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("PUT /api/import HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
    ] {
        let (out, _) = exchange(addr, request.as_bytes());
        let (head, _) = split(&out);
        assert_eq!(status(&head), 405, "{request:?}: {head:?}");
        assert!(
            header(&head, "Allow").is_some(),
            "{request:?}: a 405 without Allow: {head:?}"
        );
    }
    console.shutdown();
}

/// an HTTP/1.1 request without a `Host` header, or with two, is served (`200`).
/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any request message
/// that contains more than one Host header field line". `parse_head` never looks at Host.
#[test]
fn an_http11_request_without_exactly_one_host_is_400() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    for request in [
        "GET /api/stats HTTP/1.1\r\n\r\n".to_owned(),
        format!("GET /api/stats HTTP/1.1\r\nHost: {addr}\r\nHost: example.com\r\n\r\n"),
    ] {
        let (out, _) = exchange(addr, request.as_bytes());
        let (head, _) = split(&out);
        assert_eq!(status(&head), 400, "{request:?}: {head:?}");
    }
    // An HTTP/1.0 request may omit it.
    let (out, _) = exchange(addr, b"GET /api/stats HTTP/1.0\r\n\r\n");
    assert_eq!(status(&split(&out).0), 200);
    console.shutdown();
}

/// A console on a loopback address answers only requests addressed to this machine: a
/// web page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) reads no
/// trace, and a page of another site posts nothing to the API. Its own pages, the SDKs
/// and `curl` pass.
#[test]
fn a_console_on_loopback_refuses_requests_for_other_sites() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    let port = addr.port();
    for (request, expected) in [
        (format!("GET /api/stats HTTP/1.1\r\nHost: {addr}\r\n\r\n"), 200),
        (format!("GET /api/stats HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"), 200),
        (format!("GET /api/stats HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"), 403),
        (
            format!(
                "POST /api/import HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Length: 2\r\n\r\n[]"
            ),
            403,
        ),
    ] {
        let (response, _) = exchange(addr, request.as_bytes());
        let (head, _) = split(&response);
        assert_eq!(status(&head), expected, "{request}");
    }
}

/// Every answer tells the browser not to sniff its type nor let another site frame it.
#[test]
fn every_answer_refuses_sniffing_and_framing() {
    let console = common::start(Default::default());
    let addr = console.http_addr();
    for path in ["/", "/traces", "/api/stats", "/map.svg", "/nowhere"] {
        let (response, _) = exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        );
        let (head, _) = split(&response);
        assert_eq!(
            header(&head, "X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(&head, "X-Frame-Options"), Some("DENY"), "{path}");
        assert_eq!(
            header(&head, "Content-Security-Policy"),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
    }
}
