//! Hostile input over real UDP and TCP: random bytes, 64 KiB datagrams, 100,000 traces,
//! and HTTP clients that lie about their bodies, never finish their requests or never read
//! their responses. The store stays under its bounds (eviction counts are checked; the
//! byte accounting itself is checked by the store's unit tests) and the HTTP server keeps
//! answering.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xray_console::{Config, Console, HttpDeadlines, Limits};

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";

fn doc(trace: u64, pad: usize) -> Vec<u8> {
    let mut d = HEADER.to_vec();
    d.extend_from_slice(
        format!(
            "{{\"trace_id\":\"1-6b06f324-{trace:024x}\",\"id\":\"{:016x}\",\"name\":\"svc-{}\",\"start_time\":1795617572.1,\"end_time\":1795617572.2,\"metadata\":{{\"default\":{{\"pad\":\"{}\"}}}}}}",
            trace + 1,
            trace % 7,
            "x".repeat(pad)
        )
        .as_bytes(),
    );
    d
}

/// Checks the store's bounds and eviction counts, from the outside.
fn check_store(console: &Console, limits: Limits) -> (usize, u64) {
    let st = console.stats();
    assert!(st.traces <= limits.max_traces, "{st:?}");
    assert!(st.bytes <= limits.max_bytes, "{st:?}");
    assert_eq!(
        st.traces_created,
        st.traces_evicted + st.traces as u64,
        "every trace is held or counted as evicted"
    );
    (st.traces, st.traces_evicted)
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn random_bytes_and_64k_datagrams_are_counted_never_fatal() {
    let console = start(Limits::default());
    let udp = sender();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0u64;
    let mut valid = 0u64;
    for i in 0..3000 {
        let len = (rng.next() % 2048) as usize;
        let d = match i % 3 {
            0 => rng.bytes(len),
            1 => [HEADER, &rng.bytes(len)].concat(),
            _ => [
                b"{\"format\":\"json\",\"version\":1}".as_slice(),
                b"\n{\"id\":",
                &rng.bytes(len),
            ]
            .concat(),
        };
        udp.send_to(&d, console.udp_addr()).unwrap();
        sent += 1;
        if sent % 50 == 0 {
            wait_datagrams(&console, sent);
        }
    }
    // The largest IPv4 UDP payload: once as garbage, once as a valid padded document.
    let max = 65_507;
    udp.send_to(&rng.bytes(max), console.udp_addr()).unwrap();
    wait_datagrams(&console, sent + 1);
    let big = doc(1, max - doc(1, 0).len());
    assert_eq!(big.len(), max);
    udp.send_to(&big, console.udp_addr()).unwrap();
    valid += 1;
    // An empty datagram.
    udp.send_to(b"", console.udp_addr()).unwrap();
    sent += 3;
    wait_datagrams(&console, sent);

    let stats = get_json(console.http_addr(), "/api/stats");
    assert_eq!(stats["intake"]["datagrams"], sent);
    assert_eq!(stats["intake"]["accepted"], valid);
    assert_eq!(stats["intake"]["rejected"], sent - valid);
    assert!(stats["intake"]["recent"].as_array().unwrap().len() <= 20);
    assert_eq!(stats["traces"], 1);

    // Garbage on the TCP port, then the pages still answer.
    for junk in [
        &b"\x16\x03\x01\x02\x00garbage\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"",
    ] {
        let mut s = TcpStream::connect(console.http_addr()).unwrap();
        let _ = s.write_all(junk);
    }
    for path in [
        "/",
        "/traces",
        "/api/servicegraph",
        "/trace/nope",
        "/map.svg",
    ] {
        let (status, _) = http(console.http_addr(), "GET", path, b"");
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    let (status, page) = http(console.http_addr(), "GET", "/", b"");
    assert_eq!(status, 200);
    assert!(page.contains("Rejected datagrams"));
    check_store(&console, Limits::default());
    console.shutdown();
}

#[test]
fn many_small_traces_evict_oldest_and_server_keeps_answering() {
    let console = start(Limits::default());
    let addr = console.http_addr();
    // A reader hammers the API while the intake runs.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) && n < 2000 {
                let path = if n % 10 == 0 { "/" } else { "/api/stats" };
                let (status, _) = http(addr, "GET", path, b"");
                assert_eq!(status, 200);
                n += 1;
            }
            n
        })
    };
    let udp = sender();
    let total = 100_000u64;
    for i in 0..total {
        udp.send_to(&doc(i, 0), console.udp_addr()).unwrap();
        if (i + 1) % 100 == 0 {
            wait_datagrams(&console, i + 1);
        }
    }
    wait_datagrams(&console, total);
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);

    let (held, evicted) = check_store(&console, Limits::default());
    assert_eq!(held, 1000);
    assert_eq!(evicted, total - 1000);
    assert_eq!(console.stats().accepted, total);
    // The newest thousand are kept.
    let trace = |i: u64| format!("/api/traces/1-6b06f324-{i:024x}");
    assert_eq!(http(addr, "GET", &trace(total - 1), b"").0, 200);
    assert_eq!(http(addr, "GET", &trace(total - 1000), b"").0, 200);
    assert_eq!(http(addr, "GET", &trace(total - 1001), b"").0, 404);
    let listed = get_json(addr, "/api/traces")["TraceSummaries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 1000);
    if let Some(kib) = rss_kib() {
        assert!(kib < 512 * 1024, "resident memory {kib} KiB");
    }
    console.shutdown();
}

#[test]
fn byte_bound_evicts_large_traces() {
    let limits = Limits {
        max_traces: 1000,
        max_bytes: 1024 * 1024,
    };
    let console = start(limits);
    let udp = sender();
    for i in 0..200u64 {
        udp.send_to(&doc(i, 60_000), console.udp_addr()).unwrap();
        if (i + 1) % 2 == 0 {
            wait_datagrams(&console, i + 1);
        }
    }
    wait_datagrams(&console, 200);
    let (held, evicted) = check_store(&console, limits);
    assert!(
        (10..=17).contains(&held),
        "{held} traces of ~60 KB in 1 MiB"
    );
    assert_eq!(evicted, 200 - held as u64);
    let stats = get_json(console.http_addr(), "/api/stats");
    assert!(stats["bytes"].as_u64().unwrap() <= 1024 * 1024);
    assert!(stats["store"]["bytes_evicted"].as_u64().unwrap() > 180 * 60_000);
    console.shutdown();
}

#[test]
fn a_trace_id_cannot_inject_response_headers() {
    // Any sender picks the trace id; the export link puts it in Content-Disposition.
    let console = start(Limits::default());
    let addr = console.http_addr();
    let doc = r#"{"trace_id":"x\r\nX-Injected: yes\r\n\"","id":"a","name":"n","start_time":1,"end_time":2}"#;
    let (status, body) = http(addr, "POST", "/api/import", doc.as_bytes());
    assert_eq!(status, 200, "{body}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /api/traces/x%0D%0AX-Injected:%20yes%0D%0A%22?download=1 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.lines().all(|l| !l.starts_with("X-Injected")), "{head}");
    assert!(
        head.contains(
            "Content-Disposition: attachment; filename=\"trace-x__X-Injected__yes___.json\""
        ),
        "{head}"
    );
    assert!(
        body.contains("X-Injected"),
        "the export itself keeps the id"
    );
    console.shutdown();
}

#[test]
fn a_trace_id_with_a_slash_can_be_opened() {
    // The trace list links to `/trace/{id}` with the id percent-encoded (`/` as `%2F`): the
    // path must be split before it is decoded, or the link is a 404.
    let console = start(Limits::default());
    let addr = console.http_addr();
    let doc = r#"{"trace_id":"a/b","id":"a","name":"n","start_time":1,"end_time":2}"#;
    let (status, body) = http(addr, "POST", "/api/import", doc.as_bytes());
    assert_eq!(status, 200, "{body}");
    let (_, list) = http(addr, "GET", "/traces", b"");
    assert!(list.contains("href=\"/trace/a%2Fb\""), "{list}");
    for path in ["/trace/a%2Fb", "/api/timeline/a%2Fb", "/api/traces/a%2Fb"] {
        let (status, body) = http(addr, "GET", path, b"");
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(http(addr, "GET", "/trace/a/b", b"").0, 404);
    console.shutdown();
}

#[test]
fn a_parent_cycle_over_udp_is_listed_and_marked() {
    // Streamed subsegments whose parents loop (a under b, b under a, and c its own
    // parent), as a broken or hostile sender can send them: every page answers, and the
    // timeline marks them.
    let console = start(Limits::default());
    let addr = console.http_addr();
    let udp = sender();
    let trace = "1-6b06f324-00000000000000000000c7c1";
    let docs = [("a", "b", 0.2), ("b", "a", 0.1), ("c", "c", 0.3)];
    for (id, parent, at) in docs {
        let doc = format!(
            "{{\"trace_id\":\"{trace}\",\"id\":\"{id}\",\"parent_id\":\"{parent}\",\"type\":\"subsegment\",\
             \"name\":\"call {id}\",\"start_time\":{},\"end_time\":1795617573}}",
            1795617572.0 + at
        );
        udp.send_to(&[HEADER, doc.as_bytes()].concat(), console.udp_addr())
            .unwrap();
    }
    wait_datagrams(&console, docs.len() as u64);
    assert_eq!(console.stats().accepted, docs.len() as u64);
    let tl = get_json(addr, &format!("/api/timeline/{trace}"));
    let groups = tl["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{tl}");
    assert_eq!(groups[0]["cycle"], true);
    let rows: Vec<(&str, u64, bool)> = groups[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["depth"].as_u64().unwrap(),
                r["cycle"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("b", 0, true), ("a", 1, true), ("c", 0, true)]);
    let partial = tl["partial"].to_string();
    assert!(
        partial.contains("3 subsegment(s) in 2 parent cycle(s)"),
        "{partial}"
    );
    let list = get_json(addr, "/api/traces?filter=partial");
    assert_eq!(list["TraceSummaries"][0]["name"], "call b", "{list}");
    for path in [format!("/trace/{trace}"), "/traces".into(), "/".into()] {
        let (status, body) = http(addr, "GET", &path, b"");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, page) = http(addr, "GET", &format!("/trace/{trace}"), b"");
    assert_eq!(page.matches(">parent cycle</span>").count(), 3);
    console.shutdown();
}

/// Sends `head` on a connection kept open and reads the start of the answer (empty if
/// none comes within 5 s).
fn send_head(addr: SocketAddr, head: impl AsRef<[u8]>) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_ref()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `GET path`: the status, or `None` if no answer came within `secs` seconds.
fn status_within(addr: SocketAddr, path: &str, secs: u64) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(secs))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// More clients than tiny_http had workers (4).
const CLIENTS: usize = 8;

#[test]
fn a_content_length_of_10_pow_15_does_not_abort_the_process() {
    // The binary, as a child process: tiny_http aborted it allocating the declared body.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xray-console"))
        .args(["--address", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|a| a.trim().trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no HTTP address in {line:?}"));
    assert_eq!(status_within(addr, "/api/stats", 10), Some(200));
    for path in ["/api/stats", "/api/import"] {
        let method = if path == "/api/import" { "POST" } else { "GET" };
        let (conn, answer) = send_head(
            addr,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000000\r\n\r\n"
            ),
        );
        let expected = if method == "POST" {
            "HTTP/1.1 413"
        } else {
            "HTTP/1.1 200"
        };
        assert!(answer.starts_with(expected), "{method}: {answer:?}");
        drop(conn);
    }
    std::thread::sleep(Duration::from_millis(300));
    let exited = child.try_wait().unwrap();
    let answers = status_within(addr, "/api/stats", 5);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(exited, None, "the console ended");
    assert_eq!(answers, Some(200));
}

#[test]
fn content_lengths_past_isize_max_leave_the_server_answering() {
    // tiny_http's worker panicked draining such a body, outside `guarded`.
    let console = start(Limits::default());
    let addr = console.http_addr();
    for _ in 0..CLIENTS {
        let (conn, answer) = send_head(
            addr,
            "GET /api/stats HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551615\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        drop(conn);
    }
    assert_eq!(status_within(addr, "/api/stats", 10), Some(200));
    console.shutdown();
}

#[test]
fn clients_that_never_send_their_declared_body_block_no_one() {
    let console = start(Limits::default());
    let addr = console.http_addr();
    let mut held = Vec::new();
    for path in ["/api/stats", "/api/import"] {
        let method = if path == "/api/import" { "POST" } else { "GET" };
        for _ in 0..CLIENTS / 2 {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"
            )
            .unwrap();
            held.push(s);
        }
    }
    let t = Instant::now();
    assert_eq!(status_within(addr, "/api/stats", 10), Some(200));
    // Not a speed target: served while they wait, not after their bodies'
    // 30 s deadline (a loaded host may take a few seconds).
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    drop(held);
    console.shutdown();
}

#[test]
fn clients_that_never_read_their_response_block_no_one() {
    let console = start(Limits::default());
    let addr = console.http_addr();
    // One trace of about 6 MB, so that its export fills the socket buffers.
    let pad = "x".repeat(60_000);
    let docs: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "{{\"trace_id\":\"1-6b06f324-000000000000000000000001\",\"id\":\"{i:016x}\",\
                 \"name\":\"svc\",\"start_time\":1795617572.1,\"end_time\":1795617572.2,\
                 \"metadata\":{{\"default\":{{\"pad\":\"{pad}\"}}}}}}"
            )
        })
        .collect();
    let (status, body) = http(
        addr,
        "POST",
        "/api/import",
        format!("[{}]", docs.join(",")).as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /api/traces/1-6b06f324-000000000000000000000001 HTTP/1.0\r\n\r\n")
            .unwrap();
        held.push(s); // never read
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_within(addr, "/api/stats", 10), Some(200));
    // Shutdown closes them, though they still have megabytes to take: not
    // a speed target, but well before their responses' 30 s deadline (it
    // took 2.005 s once on a loaded host, against a bound of 2 s).
    let t = Instant::now();
    console.shutdown();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    drop(held);
}

#[test]
fn slow_clients_get_408_and_past_the_connection_limit_503() {
    let console = Console::start(Config {
        max_http_connections: 2,
        // Long enough that both slow clients still hold their slots when the
        // third comes, even on a loaded machine.
        http_deadlines: HttpDeadlines {
            head: Duration::from_millis(1_500),
            body: Duration::from_millis(1_500),
            response: Duration::from_secs(5),
        },
        ..loopback()
    })
    .unwrap();
    let addr = console.http_addr();
    let t = Instant::now();
    // A head that never ends, and a body that never comes.
    let mut slow_head = TcpStream::connect(addr).unwrap();
    slow_head
        .write_all(b"GET /api/stats HTTP/1.1\r\nHost:")
        .unwrap();
    let mut slow_body = TcpStream::connect(addr).unwrap();
    slow_body
        .write_all(b"POST /api/import HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n[")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Both slots are taken: the next client is told at once.
    let (_, answer) = send_head(addr, "GET /api/stats HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    for mut s in [slow_head, slow_body] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The slots come back once the slow clients' threads have closed (each lingers a
    // moment for its client's close): a later client is served.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = None;
    while Instant::now() < deadline && status != Some(200) {
        status = status_within(addr, "/api/stats", 5);
        if status != Some(200) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(status, Some(200));
    console.shutdown();
}

#[test]
fn import_with_expect_100_continue_and_limits_on_the_head_and_body() {
    let console = start(Limits::default());
    let addr = console.http_addr();
    // curl sends `Expect: 100-continue` for bodies over 1 KiB, and waits for the 100.
    let doc = br#"{"trace_id":"1-a-1","id":"a","name":"n","start_time":1,"end_time":2}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/import HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        doc.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(doc).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\"imported\": 1"), "{out}");
    // Over the 32 MiB bound: refused without a 100 and unread.
    let (_, answer) = send_head(
        addr,
        "POST /api/import HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 33554433\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // Chunked bodies, 16 KiB of headers, garbage.
    let (_, answer) = send_head(
        addr,
        "POST /api/import HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer:?}");
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(16 * 1024));
    assert!(send_head(addr, &big).1.starts_with("HTTP/1.1 431"));
    assert!(send_head(addr, b"GET /\xff HTTP/1.1\r\n\r\n")
        .1
        .starts_with("HTTP/1.1 400"));
    // HEAD: the headers of the GET, no body.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"HEAD /api/stats HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert!(!head.contains("Content-Length: 0"), "{head}");
    assert_eq!(body, "");
    assert_eq!(status_within(addr, "/api/stats", 5), Some(200));
    console.shutdown();
}

/// A deadline of `Duration::MAX` means none: it used to overflow the `Instant` and panic
/// every connection's thread, so that nothing was ever answered.
#[test]
fn a_deadline_of_duration_max_still_serves_requests() {
    let console = Console::start(Config {
        http_deadlines: HttpDeadlines {
            head: Duration::MAX,
            body: Duration::MAX,
            response: Duration::MAX,
        },
        ..loopback()
    })
    .unwrap();
    assert_eq!(
        status_within(console.http_addr(), "/api/stats", 10),
        Some(200)
    );
    console.shutdown();
}
