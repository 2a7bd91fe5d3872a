//! Edge cases a black-box hunt found the console getting wrong; each test failed before
//! its fix, and its comment says what the README promises, what happened, and the
//! reproduction. Every test drives a console on 127.0.0.1:0 ports through UDP datagrams,
//! its HTTP API or its command line only.

mod common;

use serde_json::{json, Value};

use common::*;
use xray_console::{Console, Limits};

const HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";
const TRACE: &str = "1-6b06f324-0123456789abcdef01234567";

/// Sends documents as daemon datagrams, in order, and waits until all arrived.
fn send(console: &Console, docs: &[Value]) {
    let udp = sender();
    let before = console.stats().datagrams;
    for d in docs {
        let dg = format!("{HEADER}{d}");
        udp.send_to(dg.as_bytes(), console.udp_addr()).unwrap();
        // In order: one at a time.
        wait_datagrams(
            console,
            before + 1 + docs.iter().position(|x| x == d).unwrap() as u64,
        );
    }
}

fn rows(tl: &Value) -> Vec<Value> {
    tl["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rows"].as_array().unwrap().clone())
        .collect()
}

// README, Store: "an in-progress document is replaced by the complete one". An SDK may
// stream a long subsegment as an in-progress independent document (`type: subsegment`),
// then send its segment, complete, with that subsegment embedded (complete). The console
// keys documents only by their top-level id, so the in-progress copy is never replaced:
// the timeline shows the subsegment twice (once complete, once in progress) and the trace
// is marked partial ("1 segment(s) still in progress") though every part is complete.
// Repro: datagram 1 {"type":"subsegment","id":"s1","parent_id":"root","in_progress":true,..}
// datagram 2 {"id":"root",..,"subsegments":[{"id":"s1",..,"end_time":..}]}.
#[test]
fn in_progress_streamed_subsegment_is_not_replaced_by_its_embedded_complete_copy() {
    let console = start(Limits::default());
    let sub_ip = json!({"type":"subsegment","trace_id":TRACE,"id":"5000000000000001",
        "parent_id":"1000000000000001","name":"slow-call","start_time":100.1,"in_progress":true});
    let seg = json!({"trace_id":TRACE,"id":"1000000000000001","name":"api","start_time":100.0,
        "end_time":101.0,"subsegments":[{"id":"5000000000000001","name":"slow-call",
        "start_time":100.1,"end_time":100.9}]});
    send(&console, &[sub_ip, seg]);
    let tl = get_json(console.http_addr(), &format!("/api/timeline/{TRACE}"));
    let s1: Vec<Value> = rows(&tl)
        .into_iter()
        .filter(|r| r["id"] == "5000000000000001")
        .collect();
    assert_eq!(s1.len(), 1, "subsegment drawn {} times: {s1:#?}", s1.len());
    assert_eq!(tl["partial"], json!([]), "complete trace marked partial");
    console.shutdown();
}

// README, Timeline: "The critical path walks back from the root's end through the child
// that finished last, following downstream segments through their calling subsegment",
// and a trace "is marked partial when ... a child lies outside its parent's time range
// (clock skew)". A downstream segment on another host whose clock runs 2 ms ahead ends
// 2 ms after its calling subsegment. The walk silently drops it (and everything under
// it) from the critical path: the caller's `remote` subsegment is named the bottleneck
// with 90 % of the trace, though 87 % of the time is the SQL query inside the downstream
// service; the trace is not marked partial and no row is marked skewed, so nothing on
// the page says the picture is off. (Any skew above 1e-9 s flips the attribution.)
// Repro: frontend [100.0, 101.0] with remote subsegment `call` [100.05, 100.95];
// backend segment (parent_id = call) [100.06, 100.952] with an sql subsegment
// [100.07, 100.94].
#[test]
fn a_downstream_segment_ending_2ms_after_its_caller_vanishes_from_the_critical_path_silently() {
    let console = start(Limits::default());
    let front = json!({"trace_id":TRACE,"id":"a000000000000001","name":"frontend",
        "start_time":100.0,"end_time":101.0,"subsegments":[{"id":"a000000000000002",
        "name":"backend","namespace":"remote","start_time":100.05,"end_time":100.95,
        "http":{"request":{"method":"GET","url":"http://backend/"},"response":{"status":200}}}]});
    let back = json!({"trace_id":TRACE,"id":"b000000000000001","parent_id":"a000000000000002",
        "name":"backend","start_time":100.06,"end_time":100.952,"subsegments":[{
        "id":"b000000000000002","name":"query","namespace":"remote","sql":{"url":"db"},
        "start_time":100.07,"end_time":100.94}]});
    send(&console, &[front, back]);
    let tl = get_json(console.http_addr(), &format!("/api/timeline/{TRACE}"));
    let path: Vec<&str> = tl["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let followed = path.contains(&"b000000000000001");
    let flagged = !tl["partial"].as_array().unwrap().is_empty()
        || rows(&tl).iter().any(|r| r["skewed"] == true);
    assert!(
        followed || flagged,
        "downstream segment dropped from the critical path without any skew mark: path {path:?}, \
         bottleneck {}, partial {}",
        tl["bottleneck"],
        tl["partial"]
    );
    console.shutdown();
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// README, HTTP server: "A bad or slow client costs its own connection, never the
// console"; a body "declared over 32 MiB is a 413", so bodies up to 32 MiB are taken;
// the store is bounded at 64 MiB, the rejection list at "the latest 20". POST /api/import
// of a 2 MB body `[0,0,0,…]` (1,000,000 non-documents) makes the console build one error
// string per element and echo them all back: a 61 MB answer, and the console's peak RSS
// rose by ~290 MB for this one request (measured on the binary: VmHWM 4 MB -> 293 MB).
// At the allowed 32 MiB that is ~1 GB of answer and several GB of memory per request,
// 64 requests at once. Repro: python3 -c "print('['+','.join(['0']*10**6)+']')" > z.json;
// curl --data-binary @z.json http://127.0.0.1:PORT/api/import | wc -c
#[test]
fn import_of_many_non_documents_answers_and_allocates_30x_its_body() {
    let console = start(Limits::default());
    let n = 1_000_000;
    let mut body = String::with_capacity(2 * n + 2);
    body.push('[');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push('0');
    }
    body.push(']');
    let hwm0 = vm_hwm_kib();
    let (status, answer) = http(console.http_addr(), "POST", "/api/import", body.as_bytes());
    let hwm1 = vm_hwm_kib();
    assert_eq!(status, 400);
    assert!(
        answer.len() <= 1 << 20,
        "a {} byte import was answered with {} bytes (peak RSS of this process rose {} MiB)",
        body.len(),
        answer.len(),
        (hwm1 - hwm0) / 1024
    );
    console.shutdown();
}

// README, Traces: each row of `/traces` links to its timeline `/trace/{id}`. A document
// with `"trace_id": ""` is accepted and listed (a row, counted as a trace), but its link
// `/trace/` is a 404 and `/api/traces/` is the list, so the trace can be neither opened
// nor exported. (It should be either rejected at intake, as a missing trace_id is, or
// reachable.) Repro: {"trace_id":"","id":"e1","name":"n","start_time":1,"end_time":2}.
#[test]
fn a_trace_with_an_empty_trace_id_is_listed_but_its_link_is_a_404() {
    let console = start(Limits::default());
    let d = json!({"trace_id":"","id":"e000000000000001","name":"empty-id","start_time":100.0,
        "end_time":101.0});
    send(&console, &[d]);
    let listed = console.stats().traces;
    if listed == 0 {
        return; // rejected at intake: fine
    }
    let (status, page) = http(console.http_addr(), "GET", "/traces", b"");
    assert_eq!(status, 200);
    let href = page
        .split("class=\"trace-link\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the trace is listed")
        .to_owned();
    let (status, body) = http(console.http_addr(), "GET", &href, b"");
    assert_eq!(
        status, 200,
        "listed trace's link {href:?} answers {status}: {body}"
    );
    console.shutdown();
}

// README, Options: `--max-mib N` (default 64). A large N overflows `N * 1024 * 1024`:
// the debug binary (what `cargo run --bin xray-console` builds) panics with "attempt to
// multiply with overflow" (exit 101) instead of a usage error (exit 2); a release build
// wraps silently (N = 2^44 gives a store bound of 0 bytes: every trace evicted at once).
// Repro: xray-console --address 127.0.0.1:0 --max-mib 17592186044416
#[test]
fn max_mib_overflow_panics_instead_of_a_usage_error() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xray-console"))
        .args(["--address", "127.0.0.1:0", "--max-mib", "17592186044416"])
        .env_remove("AWS_XRAY_DAEMON_ADDRESS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let Some(status) = status else {
        // Still running: it took the value. Then it must not be a zero-byte store.
        child.kill().unwrap();
        let _ = child.wait();
        panic!("started with --max-mib 2^44: its byte bound wrapped (not checkable from outside)");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "exit {status}: {err}");
}

fn matches(console: &Console, filter: &str) -> bool {
    let v = get_json(
        console.http_addr(),
        &format!("/api/traces?filter={}", enc(filter)),
    );
    v["TraceSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == TRACE)
}

// README, Traces: `responsetime > n`, `duration >= n` with `=`, `!=`, `<`, `<=`, `>`, `>=`.
// `=` and `!=` compare within 1e-9, but `<`, `<=`, `>`, `>=` compare exactly; times are
// epoch seconds, so a 0.5 ms request (100.0 -> 100.0005) has a response time of
// 0.000500000000002. Then `responsetime = 0.0005` matches it, and so does
// `responsetime > 0.0005`, while `responsetime <= 0.0005` does not: one trace is both
// equal to and greater than 0.0005. A boundary filter a user types from what the page
// shows ("0.5 ms") silently drops the trace.
// Repro: {"start_time":100.0,"end_time":100.0005}; /api/traces?filter=responsetime <= 0.0005
#[test]
fn equal_by_filter_eq_but_not_by_le_and_greater_by_gt() {
    let console = start(Limits::default());
    let d = json!({"trace_id":TRACE,"id":"e100000000000001","name":"fast","start_time":100.0,
        "end_time":100.0005});
    send(&console, &[d]);
    assert!(matches(&console, "responsetime = 0.0005"));
    let le = matches(&console, "responsetime <= 0.0005");
    let gt = matches(&console, "responsetime > 0.0005");
    let ge = matches(&console, "duration >= 0.0005");
    assert!(
        le && !gt && ge,
        "responsetime = 0.0005 matches, yet `<= 0.0005` matches: {le}, `> 0.0005` matches: {gt}, \
         duration `>= 0.0005` matches: {ge}"
    );
    console.shutdown();
}

// README, Service map: "Each node shows its average response time ... and a ring split
// into ok / error / throttle / fault". A request still in progress has no response time
// and no outcome yet, but it is counted as a completed OK call of 0 s: one finished 1 s
// request plus one open request show as 2 OK calls averaging 0.5 s (X-Ray's own graph
// leaves in-progress segments out of the statistics). Every long request in flight
// halves the node's average and inflates its ok share.
// Repro: {"id":"a",...,"start_time":100,"end_time":101} and
// {"id":"b",...,"start_time":100,"in_progress":true} in two traces; GET /api/servicegraph.
#[test]
fn an_in_progress_segment_counts_as_an_ok_call_of_zero_seconds_on_the_map() {
    let console = start(Limits::default());
    let done = json!({"trace_id":"1-6b06f324-000000000000000000abc000","id":"0000000000abc000",
        "name":"ip-svc","start_time":100.0,"end_time":101.0});
    let open = json!({"trace_id":"1-6b06f324-000000000000000000abc001","id":"0000000000abc001",
        "name":"ip-svc","start_time":100.0,"in_progress":true});
    send(&console, &[done, open]);
    let g = get_json(console.http_addr(), "/api/servicegraph");
    let svc = g["Services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "ip-svc")
        .expect("node")
        .clone();
    let st = &svc["SummaryStatistics"];
    let avg = st["TotalResponseTime"].as_f64().unwrap() / st["TotalCount"].as_f64().unwrap();
    assert!(
        st["OkCount"] == 1 && (avg - 1.0).abs() < 1e-6,
        "an open request counted as a finished OK call: {st}, average {avg} s"
    );
    console.shutdown();
}

// README, Timeline: "Import (`/import` or `POST /api/import`) takes that format, a
// `BatchGetTraces` response, one document, an array of documents, or daemon datagrams."
// A daemon datagram whose document spans several lines (aws-xray-sdk-go v1.1.0 sends
// `{"format": "json", "version": 1}\n` + an indented document: see
// /work/shared/xray-spec/example-segments/go-sdk-server-segment.udp.txt) is accepted on
// UDP, but the importer splits datagrams on every line: each line of the document is
// rejected ("document is not valid JSON: trailing characters ...") and the import is a
// 400 with nothing imported. Repro: curl --data-binary @go-sdk-server-segment.udp.txt
// http://127.0.0.1:PORT/api/import
#[test]
fn import_rejects_a_multi_line_daemon_datagram_the_udp_intake_accepts() {
    let console = start(Limits::default());
    let datagram = "{\"format\": \"json\", \"version\": 1}\n{\n    \"trace_id\": \"1-5f2aebcc-b475d14618c51eaa28753d37\",\n    \"id\": \"bda182a644eee9b3\",\n    \"name\": \"SampleServer\",\n    \"start_time\": 1596648396.6399446,\n    \"end_time\": 1596648396.6401389,\n    \"http\": {\n        \"request\": {\n            \"method\": \"GET\",\n            \"url\": \"http://localhost:8000/\"\n        },\n        \"response\": {\n            \"status\": 200\n        }\n    }\n}";
    // The same bytes on UDP: stored.
    let udp = sender();
    udp.send_to(datagram.as_bytes(), console.udp_addr())
        .unwrap();
    wait_datagrams(&console, 1);
    assert_eq!(console.stats().traces, 1, "UDP intake takes the datagram");
    // Through the importer, into a second console.
    let other = start(Limits::default());
    let (status, body) = http(
        other.http_addr(),
        "POST",
        "/api/import",
        datagram.as_bytes(),
    );
    assert_eq!(
        status,
        200,
        "import of the same datagram: {}",
        &body[..body.len().min(400)]
    );
    console.shutdown();
    other.shutdown();
}
