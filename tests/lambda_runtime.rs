//! A real Lambda function, end to end.
//!
//! The test process plays Lambda: a Runtime API server on 127.0.0.1 (the
//! `/2018-06-01/runtime/invocation/next`, `/response` and `/error`
//! endpoints) and the X-Ray daemon (a UDP socket, `AWS_XRAY_DAEMON_ADDRESS`).
//! The function is the real `lambda_runtime` 1.x crate, run in a child
//! process (this test binary again, with `LAMBDA_RUNTIME_CHILD` set), set up as
//! the README tells a user to: `tracing_xray::layer()` (Lambda mode from
//! `LAMBDA_TASK_ROOT`, the daemon from `AWS_XRAY_DAEMON_ADDRESS`),
//! `TracingLayer`, `XrayFlushLayer` outermost, `Runtime::run`.
//!
//! Each datagram is attributed to the invocation whose window it arrived in:
//! the server drains the UDP socket (loopback delivers a datagram into the
//! receiver's queue before `send` returns) each time the function asks for
//! its next event, or posts a response or an error, so "arrived before the
//! function asked for its next event" is exact, not timing-dependent.
#![cfg(feature = "tower")]

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Set (to a scenario name) in the child process: it is the function.
const CHILD: &str = "LAMBDA_RUNTIME_CHILD";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The Runtime API and the daemon (the test process)
// ---------------------------------------------------------------------------

/// What the "Lambda service" saw, in order.
#[derive(Debug, Clone)]
enum Entry {
    /// The function asked for its next event (`GET .../invocation/next`).
    Next,
    /// `POST .../invocation/{id}/response`.
    Response { id: String, body: String },
    /// `POST .../invocation/{id}/error` (or `/init/error`, id `init`).
    Error { id: String, body: String },
    /// A datagram that reached the daemon's socket.
    Doc(Value),
    /// Any other request (an instance metadata or ECS metadata call).
    Other(String),
}

#[derive(Clone, Debug)]
struct Event {
    id: String,
    /// `Lambda-Runtime-Trace-Id`.
    trace: Option<String>,
    payload: Value,
}

struct State {
    queue: VecDeque<Event>,
    log: Vec<(Instant, Entry)>,
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    udp: UdpSocket,
}

impl Shared {
    /// Moves every datagram already queued on the daemon's socket into the log.
    fn drain(&self, state: &mut State) {
        let mut buf = vec![0u8; 70_000];
        loop {
            match self.udp.recv(&mut buf) {
                Ok(n) => state.log.push((
                    Instant::now(),
                    Entry::Doc(common::parse_datagram(&buf[..n])),
                )),
                Err(_) => return,
            }
        }
    }

    fn record(&self, entry: Entry) {
        let mut st = self.state.lock().unwrap();
        self.drain(&mut st);
        st.log.push((Instant::now(), entry));
        self.cv.notify_all();
    }
}

struct RuntimeApi {
    addr: SocketAddr,
    daemon: SocketAddr,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    fn start() -> RuntimeApi {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = socket2::SockRef::from(&udp).set_recv_buffer_size(8 << 20);
        udp.set_nonblocking(true).unwrap();
        let daemon = udp.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                log: Vec::new(),
                done: false,
            }),
            cv: Condvar::new(),
            udp,
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sh = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let conn = sh.clone();
                std::thread::spawn(move || {
                    let _ = serve(&conn, stream);
                });
                if sh.state.lock().unwrap().done {
                    return;
                }
            }
        });
        RuntimeApi {
            addr,
            daemon,
            shared,
        }
    }

    fn push(&self, event: Event) {
        let mut st = self.shared.state.lock().unwrap();
        st.queue.push_back(event);
        self.shared.cv.notify_all();
    }

    fn count(&self, f: impl Fn(&Entry) -> bool) -> usize {
        let st = self.shared.state.lock().unwrap();
        st.log.iter().filter(|(_, e)| f(e)).count()
    }

    /// Waits until `pred` holds for the log (or `timeout`).
    fn wait(&self, timeout: Duration, pred: impl Fn(&[(Instant, Entry)]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if pred(&st.log) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.shared.cv.wait_timeout(st, left).unwrap().0;
        }
    }

    fn wait_nexts(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |log| {
            log.iter().filter(|(_, e)| matches!(e, Entry::Next)).count() >= n
        })
    }

    /// The log so far, with every datagram already queued drained into it.
    fn log(&self) -> Vec<(Instant, Entry)> {
        let mut st = self.shared.state.lock().unwrap();
        self.shared.drain(&mut st);
        st.log.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().done = true;
        self.shared.cv.notify_all();
        let _ = TcpStream::connect(self.addr);
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// One HTTP/1.1 connection of the runtime's client (keep-alive).
fn serve(sh: &Shared, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let rest = path.strip_prefix("/2018-06-01/runtime/").unwrap_or(&path);
        if method == "GET" && rest == "invocation/next" {
            let event = {
                let mut st = sh.state.lock().unwrap();
                sh.drain(&mut st);
                st.log.push((Instant::now(), Entry::Next));
                sh.cv.notify_all();
                loop {
                    if st.done {
                        return Ok(());
                    }
                    if let Some(e) = st.queue.pop_front() {
                        break e;
                    }
                    st = sh
                        .cv
                        .wait_timeout(st, Duration::from_millis(200))
                        .unwrap()
                        .0;
                }
            };
            let payload = event.payload.to_string();
            let mut head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 lambda-runtime-aws-request-id: {}\r\n\
                 lambda-runtime-deadline-ms: {}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:orders\r\n",
                event.id,
                epoch_ms() + 60_000
            );
            if let Some(t) = &event.trace {
                head.push_str(&format!("lambda-runtime-trace-id: {t}\r\n"));
            }
            head.push_str(&format!("content-length: {}\r\n\r\n", payload.len()));
            out.write_all(head.as_bytes())?;
            out.write_all(payload.as_bytes())?;
            out.flush()?;
            continue;
        }
        let entry = if let Some(id) = rest
            .strip_prefix("invocation/")
            .and_then(|r| r.strip_suffix("/response"))
        {
            Some(Entry::Response {
                id: id.to_owned(),
                body,
            })
        } else if let Some(id) = rest
            .strip_prefix("invocation/")
            .and_then(|r| r.strip_suffix("/error"))
        {
            Some(Entry::Error {
                id: id.to_owned(),
                body,
            })
        } else if rest == "init/error" {
            Some(Entry::Error {
                id: "init".to_owned(),
                body,
            })
        } else {
            sh.record(Entry::Other(format!("{method} {path}")));
            None
        };
        let answer: &[u8] = match entry {
            Some(e) => {
                sh.record(e);
                b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"status\":\"OK\"}"
            }
            None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        };
        out.write_all(answer)?;
        out.flush()?;
    }
}

// ---------------------------------------------------------------------------
// Trace headers and the function process
// ---------------------------------------------------------------------------

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh `Root` and `Parent`, as Lambda gives each invocation.
fn ids() -> (String, String) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1000;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (
        format!("1-{secs:08x}-{n:024x}"),
        format!("{:016x}", 0xfaca_de00_0000_0000_u64 + n),
    )
}

#[derive(Clone, Debug)]
struct Inv {
    id: String,
    root: String,
    parent: String,
    sampled: bool,
    header: String,
}

fn inv(sampled: bool) -> Inv {
    let (root, parent) = ids();
    let id = format!("req-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let header = format!(
        "Root={root};Parent={parent};Sampled={}",
        if sampled { 1 } else { 0 }
    );
    Inv {
        id,
        root,
        parent,
        sampled,
        header,
    }
}

impl Inv {
    fn event(&self, payload: Value) -> Event {
        Event {
            id: self.id.clone(),
            trace: Some(self.header.clone()),
            payload,
        }
    }
}

/// The function's process: killed (by its own id) when dropped.
struct Function {
    child: Child,
    log: std::path::PathBuf,
}

impl Function {
    fn start(test: &str, scenario: &str, api: &RuntimeApi, env: &[(&str, String)]) -> Function {
        let log = std::env::temp_dir().join(format!(
            "lambda-runtime-{}-{}-{}.log",
            std::process::id(),
            test,
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, scenario)
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "orders")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/27/[$LATEST]0123456789abcdef",
            )
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_XRAY_DAEMON_ADDRESS", api.daemon.to_string())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("_X_AMZN_TRACE_ID")
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .env_remove("AWS_XRAY_SDK_ENABLED")
            .env_remove("AWS_XRAY_SDK_DISABLED")
            .env_remove("AWS_XRAY_TRACING_NAME")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Function {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends the events one at a time, as Lambda does for one environment: each
/// after the function asked for it. Returns the log once the function asked
/// for the event after the last one, and `settle` later.
fn invoke_sequentially(
    api: &RuntimeApi,
    f: &Function,
    events: &[Event],
    settle: Duration,
) -> Vec<(Instant, Entry)> {
    assert!(
        api.wait_nexts(1, WAIT),
        "the function never asked for an event:\n{}",
        f.output()
    );
    for (i, e) in events.iter().enumerate() {
        api.push(e.clone());
        assert!(
            api.wait_nexts(i + 2, WAIT),
            "invocation {i} never completed:\n{}",
            f.output()
        );
    }
    std::thread::sleep(settle);
    api.log()
}

/// The log cut at each `Next`: window 0 is the init phase, window k the
/// k-th invocation (from the event's delivery to the next `Next`).
fn windows(log: &[(Instant, Entry)]) -> Vec<Vec<Entry>> {
    let mut out = vec![Vec::new()];
    for (_, e) in log {
        if matches!(e, Entry::Next) {
            out.push(Vec::new());
        } else {
            out.last_mut().unwrap().push(e.clone());
        }
    }
    out
}

fn docs(entries: &[Entry]) -> Vec<Value> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Doc(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Every (sub)segment name in `docs`, embedded ones included.
fn names(docs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for d in docs {
        for (_, n) in common::walk(d) {
            out.push(n["name"].as_str().unwrap_or("?").to_owned());
        }
    }
    out.sort();
    out
}

/// Every id in `docs`, embedded subsegments included.
fn all_ids(docs: &[Value]) -> HashSet<String> {
    let mut out = HashSet::new();
    for d in docs {
        for (_, n) in common::walk(d) {
            out.insert(n["id"].as_str().unwrap_or("").to_owned());
        }
    }
    out
}

fn brief(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| {
            format!(
                "{} {} parent={} trace={} fault={}",
                d["type"], d["name"], d["parent_id"], d["trace_id"], d["fault"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that `docs` are exactly one invocation's, well formed: each a
/// subsegment document of the invocation's trace, whose parent is the facade
/// (the header's `Parent`) or another subsegment of the same invocation.
fn assert_under_facade(inv: &Inv, docs: &[Value]) {
    let validator = common::schema();
    let ids = all_ids(docs);
    for d in docs {
        common::assert_schema_valid(&validator, d);
        assert_eq!(d["type"], "subsegment", "{d:#}");
        assert_eq!(d["trace_id"], inv.root.as_str(), "{}", brief(docs));
        let parent = d["parent_id"].as_str().unwrap_or("");
        assert!(
            parent == inv.parent || ids.contains(parent),
            "parent {parent} is neither the facade {} nor a subsegment of the invocation:\n{}",
            inv.parent,
            brief(docs)
        );
    }
}

// ---------------------------------------------------------------------------
// The function (the child process)
// ---------------------------------------------------------------------------

mod function {
    use std::time::Duration;

    use lambda_runtime::layers::TracingLayer;
    use lambda_runtime::{Error, LambdaEvent, Runtime, service_fn};
    use serde_json::{Value, json};
    use tracing::{Instrument, info_span, instrument};
    use tracing_subscriber::prelude::*;
    use tracing_xray::tower::XrayFlushLayer;

    #[instrument(fields(annotation.table = "orders", otel.kind = "client"))]
    async fn load_order(n: u64) -> Value {
        tokio::time::sleep(Duration::from_millis(5)).await;
        json!({ "n": n })
    }

    #[instrument(skip(event), fields(annotation.n = tracing::field::Empty, request = %event.context.request_id), err)]
    pub async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
        let p = event.payload;
        let n = p["n"].as_u64().unwrap_or(0);
        tracing::Span::current().record("annotation.n", n);
        let order = load_order(n).await;
        match p["op"].as_str().unwrap_or("ok") {
            "err" => return Err(format!("order {n} failed").into()),
            "panic" => panic!("order {n} panicked"),
            "slow" => {
                let ms = p["ms"].as_u64().unwrap_or(200);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            "spawn" => {
                // Work the invocation starts and does not wait for.
                let ms = p["ms"].as_u64().unwrap_or(200);
                tokio::spawn(
                    async move { tokio::time::sleep(Duration::from_millis(ms)).await }
                        .instrument(info_span!("late_work", annotation.n = n)),
                );
            }
            "call" => {
                // A downstream call's header (what XrayClientLayer or the
                // AWS SDK interceptor would send), and the handler's own.
                use tracing_xray::XraySpanExt;
                let own = tracing::Span::current()
                    .xray_header()
                    .map(|h| h.to_string());
                let call = info_span!(
                    "downstream",
                    otel.kind = "client",
                    server.address = "api.example.com"
                );
                let header = call.xray_header().map(|h| h.to_string());
                drop(call);
                return Ok(json!({ "order": order, "call": header, "own": own }));
            }
            "root_call" => {
                // A call made outside the handler's span (a task spawned
                // without it): a root of its own, with `_X_AMZN_TRACE_ID`.
                info_span!(parent: None, "root_call", otel.kind = "client", server.address = "api.example.com")
                    .in_scope(|| {});
                info_span!(parent: None, "detached").in_scope(|| {
                    info_span!("detached_child").in_scope(|| {});
                });
            }
            "many" => {
                let k = p["k"].as_u64().unwrap_or(250);
                for i in 0..k {
                    info_span!("item", i).in_scope(|| {});
                }
            }
            _ => {}
        }
        Ok(json!({ "order": order }))
    }

    /// A handler without a span of its own: its two steps are the
    /// invocation's top-level spans, 30 annotations each.
    async fn two_step_handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
        let n = event.payload["n"].as_u64().unwrap_or(0);
        async { tokio::time::sleep(Duration::from_millis(2)).await }
            .instrument(info_span!(
                "step_a",
                annotation.a00 = 0,
                annotation.a01 = 1,
                annotation.a02 = 2,
                annotation.a03 = 3,
                annotation.a04 = 4,
                annotation.a05 = 5,
                annotation.a06 = 6,
                annotation.a07 = 7,
                annotation.a08 = 8,
                annotation.a09 = 9,
                annotation.a10 = 10,
                annotation.a11 = 11,
                annotation.a12 = 12,
                annotation.a13 = 13,
                annotation.a14 = 14,
                annotation.a15 = 15,
                annotation.a16 = 16,
                annotation.a17 = 17,
                annotation.a18 = 18,
                annotation.a19 = 19,
                annotation.a20 = 20,
                annotation.a21 = 21,
                annotation.a22 = 22,
                annotation.a23 = 23,
                annotation.a24 = 24,
                annotation.a25 = 25,
                annotation.a26 = 26,
                annotation.a27 = 27,
                annotation.a28 = 28,
                annotation.a29 = 29
            ))
            .await;
        async { tokio::time::sleep(Duration::from_millis(2)).await }
            .instrument(info_span!(
                "step_b",
                annotation.b00 = 0,
                annotation.b01 = 1,
                annotation.b02 = 2,
                annotation.b03 = 3,
                annotation.b04 = 4,
                annotation.b05 = 5,
                annotation.b06 = 6,
                annotation.b07 = 7,
                annotation.b08 = 8,
                annotation.b09 = 9,
                annotation.b10 = 10,
                annotation.b11 = 11,
                annotation.b12 = 12,
                annotation.b13 = 13,
                annotation.b14 = 14,
                annotation.b15 = 15,
                annotation.b16 = 16,
                annotation.b17 = 17,
                annotation.b18 = 18,
                annotation.b19 = 19,
                annotation.b20 = 20,
                annotation.b21 = 21,
                annotation.b22 = 22,
                annotation.b23 = 23,
                annotation.b24 = 24,
                annotation.b25 = 25,
                annotation.b26 = 26,
                annotation.b27 = 27,
                annotation.b28 = 28,
                annotation.b29 = 29
            ))
            .await;
        Ok(json!({ "n": n }))
    }

    pub fn main(scenario: &str) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let result: Result<(), Error> = rt.block_on(async move {
            // As the README: Lambda mode from LAMBDA_TASK_ROOT, the daemon
            // from AWS_XRAY_DAEMON_ADDRESS.
            let layer = tracing_xray::layer();
            let xray = layer.handle();
            tracing_subscriber::registry().with(layer).init();
            // The init phase: before the first invocation.
            info_span!("init", annotation.phase = "init").in_scope(|| {
                info_span!("load_config").in_scope(|| {});
            });
            // An AWS SDK call at cold start (SSM GetParameter), outside any
            // span: elsewhere a segment of the service around it.
            info_span!(
                "GetParameter",
                rpc.system = "aws-api",
                rpc.service = "SSM",
                rpc.method = "GetParameter",
                otel.kind = "client"
            )
            .in_scope(|| {});
            match scenario {
                "flush_layer" => {
                    Runtime::new(service_fn(handler))
                        .layer(TracingLayer::new())
                        .layer(XrayFlushLayer::new(xray).with_timeout(Duration::from_millis(300)))
                        .run()
                        .await
                }
                "two_steps" => {
                    Runtime::new(service_fn(two_step_handler))
                        .layer(TracingLayer::new())
                        .layer(XrayFlushLayer::new(xray).with_timeout(Duration::from_millis(300)))
                        .run()
                        .await
                }
                "workers" => {
                    // `run_concurrent`'s shape without its cargo feature
                    // (not enabled for this crate's dev-dependency): N
                    // polling loops in one process, each in a long-lived
                    // `worker` span, invocations overlapping.
                    let mut tasks = Vec::new();
                    for w in 0..3 {
                        let xray = xray.clone();
                        tasks.push(tokio::spawn(
                            async move {
                                Runtime::new(service_fn(handler))
                                    .layer(TracingLayer::new())
                                    .layer(
                                        XrayFlushLayer::new(xray)
                                            .with_timeout(Duration::from_millis(300)),
                                    )
                                    .run()
                                    .await
                            }
                            .instrument(info_span!("worker", task_id = w)),
                        ));
                    }
                    for t in tasks {
                        t.await.unwrap()?;
                    }
                    Ok(())
                }
                "run_concurrent" => {
                    Runtime::new(service_fn(handler))
                        .layer(TracingLayer::new())
                        .layer(XrayFlushLayer::new(xray).with_timeout(Duration::from_millis(300)))
                        .run_concurrent()
                        .await
                }
                other => panic!("unknown scenario {other}"),
            }
        });
        eprintln!("runtime ended: {result:?}");
        std::process::exit(3);
    }
}

/// In the child process: be the function (never returns). Else false.
fn as_function() -> bool {
    if let Ok(scenario) = std::env::var(CHILD) {
        function::main(&scenario);
    }
    false
}

// ---------------------------------------------------------------------------
// Checks that hold
// ---------------------------------------------------------------------------

/// The README's set-up on the real runtime: every sampled invocation's
/// subsegments go to the daemon under that invocation's facade (a new
/// `Root`/`Parent` each time, from `Lambda-Runtime-Trace-Id`, `Lineage`
/// included), before the function asks for its next event; a `Sampled=0`
/// invocation and the init phase send nothing; the response is posted.
#[test]
fn sequential_invocations_land_under_their_facades_before_next() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "sequential_invocations_land_under_their_facades_before_next",
        "flush_layer",
        &api,
        &[],
    );
    let mut invs = [inv(true), inv(false), inv(true), inv(true)];
    invs[3].header.push_str(";Lineage=a87bd80c:1|68fd508a:5");
    let events: Vec<Event> = invs
        .iter()
        .enumerate()
        .map(|(i, v)| v.event(json!({ "op": "ok", "n": i })))
        .collect();
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    assert!(
        docs(&w[0]).is_empty(),
        "init phase sent: {}",
        brief(&docs(&w[0]))
    );
    for (i, v) in invs.iter().enumerate() {
        let entries = &w[i + 1];
        let sent = docs(entries);
        let responded = entries.iter().any(|e| {
            matches!(e, Entry::Response { id, body } if *id == v.id && body.contains(&format!("\"n\":{i}")))
        });
        assert!(responded, "invocation {i}: no response: {entries:?}");
        if !v.sampled {
            assert!(sent.is_empty(), "Sampled=0 sent: {}", brief(&sent));
            continue;
        }
        assert_eq!(sent.len(), 1, "invocation {i}:\n{}", brief(&sent));
        assert_under_facade(v, &sent);
        assert_eq!(sent[0]["name"], "handler");
        assert_eq!(sent[0]["parent_id"], v.parent.as_str());
        assert_eq!(sent[0]["annotations"]["n"], i);
        assert_eq!(sent[0]["subsegments"][0]["name"], "load_order");
        assert!(sent[0].get("fault").is_none(), "{:#}", sent[0]);
    }
    assert!(docs(w.last().unwrap()).is_empty());
}

/// A handler that returns an error (`#[instrument(err)]`): Lambda gets the
/// error at `/error`, the handler's subsegment is a fault with the message,
/// and the next invocation is unaffected.
#[test]
fn handler_error_is_a_fault_under_its_facade() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "handler_error_is_a_fault_under_its_facade",
        "flush_layer",
        &api,
        &[],
    );
    let invs = [inv(true), inv(true)];
    let events = [
        invs[0].event(json!({ "op": "err", "n": 7 })),
        invs[1].event(json!({ "op": "ok", "n": 8 })),
    ];
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    assert!(
        w[1].iter()
            .any(|e| matches!(e, Entry::Error { id, .. } if *id == invs[0].id))
    );
    let sent = docs(&w[1]);
    assert_eq!(sent.len(), 1, "{}", brief(&sent));
    assert_under_facade(&invs[0], &sent);
    assert_eq!(sent[0]["fault"], true, "{:#}", sent[0]);
    assert!(
        common::exception_messages(&sent[0])
            .iter()
            .any(|m| m.contains("order 7 failed"))
    );
    let sent = docs(&w[2]);
    assert_eq!(sent.len(), 1, "{}", brief(&sent));
    assert_under_facade(&invs[1], &sent);
    assert!(sent[0].get("fault").is_none());
}

/// Work an invocation spawns with its span (`.instrument(info_span!(..))`
/// inside the handler) and that ends during the next invocation: its
/// subsegment, and the handler's it holds back, go out under the first
/// invocation's facade and trace, never the second's; the second
/// invocation's own subsegment is complete and flushed before its `Next`.
#[test]
fn spawned_work_keeps_its_invocation() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "spawned_work_keeps_its_invocation",
        "flush_layer",
        &api,
        &[],
    );
    let invs = [inv(true), inv(true)];
    let events = [
        invs[0].event(json!({ "op": "spawn", "n": 1, "ms": 400 })),
        invs[1].event(json!({ "op": "slow", "n": 2, "ms": 800 })),
    ];
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    let all = docs(&log.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>());
    let first: Vec<Value> = all
        .iter()
        .filter(|d| d["trace_id"] == invs[0].root.as_str())
        .cloned()
        .collect();
    assert_under_facade(&invs[0], &first);
    assert_eq!(
        names(&first),
        ["handler", "late_work", "load_order"],
        "{}",
        brief(&first)
    );
    let second = docs(&w[2]);
    assert!(
        second
            .iter()
            .any(|d| d["trace_id"] == invs[1].root.as_str()),
        "the second invocation's subsegment was not flushed before Next: {}",
        brief(&second)
    );
    let second: Vec<Value> = all
        .iter()
        .filter(|d| d["trace_id"] == invs[1].root.as_str())
        .cloned()
        .collect();
    assert_under_facade(&invs[1], &second);
    assert_eq!(names(&second), ["handler", "load_order"]);
}

/// A big invocation (250 spans, past the streaming threshold): split into
/// several documents, every one of them under the invocation's facade or
/// its handler, all sent before the function asks for the next event.
#[test]
fn big_invocation_is_streamed_under_its_facade() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "big_invocation_is_streamed_under_its_facade",
        "flush_layer",
        &api,
        &[],
    );
    let invs = [inv(true), inv(true)];
    let events = [
        invs[0].event(json!({ "op": "many", "n": 1, "k": 250 })),
        invs[1].event(json!({ "op": "ok", "n": 2 })),
    ];
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    let sent = docs(&w[1]);
    assert!(sent.len() > 1, "{}", brief(&sent));
    assert_under_facade(&invs[0], &sent);
    assert_eq!(names(&sent).iter().filter(|n| *n == "item").count(), 250);
    let sent = docs(&w[2]);
    assert_under_facade(&invs[1], &sent);
    assert_eq!(names(&sent), ["handler", "load_order"]);
}

/// The daemon unreachable (`AWS_XRAY_DAEMON_ADDRESS` at a closed port):
/// invocations cost no more than with a daemon (no flush waits out its
/// timeout), and the function keeps answering.
#[test]
fn unreachable_daemon_costs_nothing_per_invocation() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let f = Function::start(
        "unreachable_daemon_costs_nothing_per_invocation",
        "flush_layer",
        &api,
        &[("AWS_XRAY_DAEMON_ADDRESS", closed.to_string())],
    );
    let invs: Vec<Inv> = (0..8).map(|_| inv(true)).collect();
    let events: Vec<Event> = invs
        .iter()
        .enumerate()
        .map(|(i, v)| v.event(json!({ "op": "ok", "n": i })))
        .collect();
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(50));
    // From each response to the next `Next`: the flush.
    let mut gaps = Vec::new();
    let mut last_response = None;
    for (t, e) in &log {
        match e {
            Entry::Response { .. } => last_response = Some(*t),
            Entry::Next => {
                if let Some(r) = last_response.take() {
                    gaps.push(t.duration_since(r));
                }
            }
            _ => {}
        }
    }
    assert_eq!(gaps.len(), invs.len());
    let worst = gaps.iter().max().unwrap();
    assert!(*worst < Duration::from_millis(250), "{gaps:?}");
}

/// Invocations overlapping in one process (three polling loops, each in a
/// long-lived `worker` span, as `run_concurrent` runs them): each
/// invocation's subsegments carry its own trace and facade, whatever
/// invocation ran beside it, and the worker spans send nothing.
#[test]
fn overlapping_invocations_keep_their_own_facades() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "overlapping_invocations_keep_their_own_facades",
        "workers",
        &api,
        &[],
    );
    assert!(api.wait_nexts(3, WAIT), "{}", f.output());
    let invs: Vec<Inv> = (0..9).map(|i| inv(i % 4 != 3)).collect();
    for (i, v) in invs.iter().enumerate() {
        api.push(v.event(json!({ "op": "slow", "n": i, "ms": 150 + 20 * (i % 3) })));
    }
    let done = api.wait(WAIT, |log| {
        log.iter()
            .filter(|(_, e)| matches!(e, Entry::Response { .. }))
            .count()
            == invs.len()
    });
    assert!(done, "{}", f.output());
    assert!(api.wait_nexts(3 + invs.len(), WAIT));
    std::thread::sleep(Duration::from_millis(300));
    let log = api.log();
    let all = docs(&log.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>());
    for (i, v) in invs.iter().enumerate() {
        let mine: Vec<Value> = all
            .iter()
            .filter(|d| d["trace_id"] == v.root.as_str())
            .cloned()
            .collect();
        if !v.sampled {
            assert!(mine.is_empty(), "{}", brief(&mine));
            continue;
        }
        assert_eq!(mine.len(), 1, "invocation {i}: {}", brief(&all));
        assert_under_facade(v, &mine);
        assert_eq!(mine[0]["annotations"]["n"], i, "{:#}", mine[0]);
    }
    let expected = invs.iter().filter(|v| v.sampled).count();
    assert_eq!(all.len(), expected, "{}", brief(&all));
    assert_eq!(api.count(|e| matches!(e, Entry::Error { .. })), 0);
}

/// The names an invocation of `op` (with `k` items) sends.
fn expected_names(op: &str, k: usize) -> Vec<String> {
    let mut v = vec!["handler".to_owned(), "load_order".to_owned()];
    match op {
        "spawn" => v.push("late_work".to_owned()),
        "call" => v.push("api.example.com".to_owned()),
        "many" => v.extend(std::iter::repeat_n("item".to_owned(), k)),
        _ => {}
    }
    v.sort();
    v
}

/// Many invocations of every kind, sampled and not, in a fixed pseudo-random
/// order; `parallel` events queued at once (the `workers` scenario serves
/// three at a time). Each sampled invocation's subsegments are exactly its
/// own, under its own facade; an unsampled one sends nothing.
fn mixed_invocations(test: &str, scenario: &str, parallel: bool) {
    mixed_invocations_with(test, scenario, parallel, &[]);
}

fn mixed_invocations_with(test: &str, scenario: &str, parallel: bool, env: &[(&str, String)]) {
    let api = RuntimeApi::start();
    let f = Function::start(test, scenario, &api, env);
    let ops = ["ok", "spawn", "call", "err", "many", "slow", "panic"];
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut plan = Vec::new();
    for i in 0..28 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let op = ops[(x % ops.len() as u64) as usize];
        let sampled = !(x >> 8).is_multiple_of(3);
        let k = 3 + (x >> 16) as usize % 5;
        plan.push((inv(sampled), op, k, i));
    }
    let events: Vec<Event> = plan
        .iter()
        .map(|(v, op, k, i)| v.event(json!({ "op": op, "n": i, "k": k, "ms": 60 })))
        .collect();
    let log = if parallel {
        assert!(api.wait_nexts(3, WAIT), "{}", f.output());
        for e in &events {
            api.push(e.clone());
        }
        let n = events.len();
        assert!(
            api.wait(WAIT, |log| {
                log.iter()
                    .filter(|(_, e)| matches!(e, Entry::Response { .. } | Entry::Error { .. }))
                    .count()
                    == n
            }),
            "{}",
            f.output()
        );
        std::thread::sleep(Duration::from_millis(500));
        api.log()
    } else {
        invoke_sequentially(&api, &f, &events, Duration::from_millis(500))
    };
    let all = docs(&log.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>());
    let mut accounted = 0;
    for (v, op, k, i) in &plan {
        let mine: Vec<Value> = all
            .iter()
            .filter(|d| d["trace_id"] == v.root.as_str())
            .cloned()
            .collect();
        accounted += mine.len();
        if !v.sampled {
            assert!(
                mine.is_empty(),
                "unsampled {i} ({op}) sent: {}",
                brief(&mine)
            );
            continue;
        }
        assert_under_facade(v, &mine);
        assert_eq!(
            names(&mine),
            expected_names(op, *k),
            "invocation {i} ({op}): {}",
            brief(&mine)
        );
        let handler = mine.iter().find(|d| d["name"] == "handler").unwrap();
        assert_eq!(handler["annotations"]["n"], *i, "{handler:#}");
        assert_eq!(handler["parent_id"], v.parent.as_str());
    }
    assert_eq!(
        accounted,
        all.len(),
        "documents of no invocation: {}",
        brief(&all)
    );
}

/// Sequential invocations of every kind (errors, panics, spawned work,
/// downstream calls, many spans), sampled and not, on the real runtime.
#[test]
fn mixed_sequential_invocations_keep_their_own_spans() {
    if as_function() {
        return;
    }
    mixed_invocations(
        "mixed_sequential_invocations_keep_their_own_spans",
        "flush_layer",
        false,
    );
}

/// The same, three invocations at a time (the `workers` scenario).
#[test]
fn mixed_overlapping_invocations_keep_their_own_spans() {
    if as_function() {
        return;
    }
    mixed_invocations(
        "mixed_overlapping_invocations_keep_their_own_spans",
        "workers",
        true,
    );
}

/// The real `run_concurrent` (`AWS_LAMBDA_MAX_CONCURRENCY=3`, so no
/// `_X_AMZN_TRACE_ID`; each invocation in the runtime's `worker` span).
/// `run_concurrent` (`AWS_LAMBDA_MAX_CONCURRENCY` = 3, Lambda Managed
/// Instances): no `_X_AMZN_TRACE_ID`, every invocation under its own facade.
#[test]
fn run_concurrent_keeps_each_invocation_under_its_facade() {
    if as_function() {
        return;
    }
    mixed_invocations_with(
        "run_concurrent_keeps_each_invocation_under_its_facade",
        "run_concurrent",
        true,
        &[("AWS_LAMBDA_MAX_CONCURRENCY", "3".to_owned())],
    );
}

/// In Lambda the resource detectors are skipped ("Lambda: nothing: Lambda
/// owns the segment, other detectors are skipped"): with ECS and EC2
/// metadata endpoints in the environment (pointing at the Runtime API
/// server, which logs any other request) and `AWS_EC2_METADATA_DISABLED`
/// unset, the function makes no metadata call.
#[test]
fn no_resource_detection_in_lambda() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let base = format!("http://{}", api.addr);
    let f = Function::start(
        "no_resource_detection_in_lambda",
        "flush_layer",
        &api,
        &[
            ("ECS_CONTAINER_METADATA_URI_V4", format!("{base}/ecs/v4")),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", base.clone()),
            ("AWS_EC2_METADATA_DISABLED", "false".to_owned()),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
        ],
    );
    let v = inv(true);
    let log = invoke_sequentially(
        &api,
        &f,
        &[v.event(json!({ "op": "ok", "n": 1 }))],
        Duration::from_millis(2000),
    );
    let other: Vec<_> = log
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::Other(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(other.is_empty(), "{other:?}");
    let sent = docs(&windows(&log)[1]);
    assert_eq!(sent.len(), 1);
    assert_under_facade(&v, &sent);
    assert!(
        sent[0]
            .get("aws")
            .is_none_or(|a| a.get("ecs").is_none() && a.get("ec2").is_none())
    );
}

/// A handler without a span of its own whose two steps are the
/// invocation's top-level spans (each sent on its own as it ends), 30
/// annotations each: the trace's 50 are shared by both documents, the rest
/// go to metadata ("past 50 per trace they move to metadata").
#[test]
fn annotation_budget_is_the_invocations() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start(
        "annotation_budget_is_the_invocations",
        "two_steps",
        &api,
        &[],
    );
    let invs = [inv(true), inv(true)];
    let events: Vec<Event> = invs
        .iter()
        .enumerate()
        .map(|(i, v)| v.event(json!({ "n": i })))
        .collect();
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    for (i, v) in invs.iter().enumerate() {
        let sent = docs(&w[i + 1]);
        assert_eq!(sent.len(), 2, "{}", brief(&sent));
        assert_under_facade(v, &sent);
        let count = |d: &Value| d["annotations"].as_object().map_or(0, |a| a.len());
        assert_eq!(sent.iter().map(count).sum::<usize>(), 50, "{sent:#?}");
        let b = sent.iter().find(|d| d["name"] == "step_b").unwrap();
        assert_eq!(b["metadata"]["default"]["b29"], 29, "{b:#}");
    }
}

/// A handler that panics (`panic!` inside an `#[instrument]`ed handler run
/// by `lambda_runtime`, which catches the panic and posts it to
/// `/invocation/{id}/error`): its subsegment, which the panic unwound
/// through, is a fault with the exception `panicked` (the panic's message is
/// the runtime's to log, in its facade span). Before, it was sent as a
/// success. The next invocation is clean.
#[test]
fn a_handler_panic_is_a_fault() {
    if as_function() {
        return;
    }
    let api = RuntimeApi::start();
    let f = Function::start("a_handler_panic_is_a_fault", "flush_layer", &api, &[]);
    let invs = [inv(true), inv(true)];
    let events = [
        invs[0].event(json!({ "op": "panic", "n": 5 })),
        invs[1].event(json!({ "op": "ok", "n": 6 })),
    ];
    let log = invoke_sequentially(&api, &f, &events, Duration::from_millis(300));
    let w = windows(&log);
    assert!(
        w[1].iter().any(|e| matches!(e, Entry::Error { id, body } if *id == invs[0].id && body.contains("order 5 panicked"))),
        "Lambda was told of the panic: {:?}",
        w[1]
    );
    let sent = docs(&w[1]);
    assert_eq!(sent.len(), 1, "{}", brief(&sent));
    assert_under_facade(&invs[0], &sent);
    assert_eq!(sent[0]["name"], "handler");
    assert_eq!(
        sent[0]["fault"], true,
        "the panicking handler's subsegment is sent as a success: {:#}",
        sent[0]
    );
    assert_eq!(common::exception_messages(&sent[0]), ["panicked"]);
    let next = docs(&w[2]);
    assert!(
        next.iter().all(|d| d.get("fault").is_none()),
        "{}",
        brief(&next)
    );
}
