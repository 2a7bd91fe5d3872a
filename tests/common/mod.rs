//! Helpers shared by the integration tests: a real UDP "daemon" on
//! 127.0.0.1 and the official segment schema.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DATAGRAM_HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";

/// A UDP socket on 127.0.0.1:0 read by a thread that keeps every datagram.
pub struct Daemon {
    pub addr: SocketAddr,
    state: Arc<(Mutex<Vec<Vec<u8>>>, Condvar)>,
}

impl Daemon {
    pub fn start() -> Daemon {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for bursts: loopback drops what the reader has no room for.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        let addr = socket.local_addr().unwrap();
        let state = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let st = state.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            loop {
                let Ok(n) = socket.recv(&mut buf) else { return };
                let (lock, cv) = &*st;
                lock.lock().unwrap().push(buf[..n].to_vec());
                cv.notify_all();
            }
        });
        Daemon { addr, state }
    }

    /// Waits until at least `n` datagrams arrived (or `timeout`), returns all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut got = lock.lock().unwrap();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            got = cv.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }

    /// Every datagram received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.state.0.lock().unwrap().clone()
    }

    /// Datagrams split into header and parsed document, checking the header.
    pub fn documents(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for(n, timeout)
            .iter()
            .map(|d| parse_datagram(d))
            .collect()
    }
}

pub fn parse_datagram(d: &[u8]) -> Value {
    let text = std::str::from_utf8(d).expect("datagram is UTF-8");
    let (header, body) = text.split_once('\n').expect("datagram has a header line");
    assert_eq!(format!("{header}\n"), DATAGRAM_HEADER);
    serde_json::from_str(body).expect("document is JSON")
}

pub fn schema() -> jsonschema::Validator {
    let text = include_str!("../fixtures/schema/segment-schema.json");
    let schema: Value = serde_json::from_str(text).unwrap();
    jsonschema::draft4::new(&schema).expect("official schema compiles")
}

/// Panics with every violation when `doc` does not satisfy the official schema.
pub fn assert_schema_valid(validator: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schema violations: {errors:#?}\nin {doc}"
    );
}

/// Every (sub)segment of a document tree, depth first, with its depth.
pub fn walk(doc: &Value) -> Vec<(usize, &Value)> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, doc)];
    while let Some((d, n)) = stack.pop() {
        out.push((d, n));
        if let Some(subs) = n["subsegments"].as_array() {
            for s in subs.iter().rev() {
                stack.push((d + 1, s));
            }
        }
    }
    out
}

/// Runs `body` under a layer for service `service` (every trace sampled, no
/// resource detection) that sends to a real UDP socket on 127.0.0.1, and
/// returns every document it sent, each checked against the schema: as many
/// as the layer counts exported, so that a test sees them all, not only the
/// first to arrive.
pub fn sent_over_udp(service: &str, body: impl FnOnce()) -> Vec<Value> {
    use tracing_subscriber::prelude::*;
    const WAIT: Duration = Duration::from_secs(10);
    let daemon = Daemon::start();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name(service)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(tracing_xray::export::UdpExporter::to_address(daemon.addr))
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    xray.flush(WAIT).unwrap();
    let sent = xray.stats().documents_exported as usize;
    let docs = daemon.documents(sent, WAIT);
    assert_eq!(docs.len(), sent, "documents lost on 127.0.0.1");
    let validator = schema();
    for doc in &docs {
        assert_schema_valid(&validator, doc);
    }
    docs
}

/// Runs `f` under a layer configured by `configure` (deterministic: no
/// resource detection) with an in-memory exporter, flushes, checks every
/// document against the schema, and returns the traces and the handle.
pub fn run_in_memory(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> (Vec<Value>, tracing_xray::XrayHandle) {
    use tracing_subscriber::prelude::*;
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let builder = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone());
    let layer = configure(builder).build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    xray.flush(Duration::from_secs(5)).unwrap();
    let validator = schema();
    for doc in exporter.json_documents() {
        assert_schema_valid(&validator, &doc);
    }
    (exporter.traces(), xray)
}

/// What a test got from [`capture_documents`].
pub struct Captured {
    /// Each document as sent.
    pub raw: Vec<String>,
    /// The same, parsed.
    pub docs: Vec<Value>,
    pub exporter: tracing_xray::export::InMemoryExporter,
    pub xray: tracing_xray::XrayHandle,
}

/// Runs `f` under a layer named `svc`, sampling every trace, configured by
/// `configure` (no resource detection), with an in-memory exporter;
/// flushes, and checks every document against the official schema and the
/// size limit.
pub fn capture_documents(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> Captured {
    capture_documents_with(configure, |_| f())
}

/// [`capture_documents`], `f` given the layer's handle (to flush between
/// steps, so that the worker has taken what came before).
pub fn capture_documents_with(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(&tracing_xray::XrayHandle),
) -> Captured {
    use tracing_subscriber::prelude::*;
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let builder = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter.clone());
    let layer = configure(builder).build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || f(&xray));
    xray.flush(Duration::from_secs(10)).unwrap();
    let raw: Vec<String> = exporter
        .documents()
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    let validator = schema();
    let docs: Vec<Value> = raw
        .iter()
        .map(|t| serde_json::from_str(t).expect("document is JSON"))
        .collect();
    for (t, d) in raw.iter().zip(&docs) {
        assert!(
            t.len() <= tracing_xray::export::MAX_DOCUMENT_BYTES,
            "{} bytes",
            t.len()
        );
        assert_schema_valid(&validator, d);
    }
    Captured {
        raw,
        docs,
        exporter,
        xray,
    }
}

/// Every (sub)segment of every document.
pub fn nodes(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .flat_map(|d| walk(d).into_iter().map(|(_, n)| n))
        .collect()
}

/// The first (sub)segment named `name` (a segment by its span's name).
pub fn node<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    nodes(docs)
        .into_iter()
        .find(|n| n["name"] == name || n["metadata"]["tracing"]["span_name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {docs:#?}"))
}

/// A (sub)segment's exceptions (none: empty).
pub fn exceptions(n: &Value) -> Vec<Value> {
    n["cause"]["exceptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Silences the panic hook on this thread while `f` runs (a test that
/// panics on purpose); other tests' panics (their failed assertions) still
/// print.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

/// A root span holding the 50 annotations a trace may index.
#[macro_export]
macro_rules! fifty_annotations_root {
    () => {
        tracing::info_span!(
            "root",
            "annotation.a00" = 0,
            "annotation.a01" = 1,
            "annotation.a02" = 2,
            "annotation.a03" = 3,
            "annotation.a04" = 4,
            "annotation.a05" = 5,
            "annotation.a06" = 6,
            "annotation.a07" = 7,
            "annotation.a08" = 8,
            "annotation.a09" = 9,
            "annotation.a10" = 0,
            "annotation.a11" = 1,
            "annotation.a12" = 2,
            "annotation.a13" = 3,
            "annotation.a14" = 4,
            "annotation.a15" = 5,
            "annotation.a16" = 6,
            "annotation.a17" = 7,
            "annotation.a18" = 8,
            "annotation.a19" = 9,
            "annotation.a20" = 0,
            "annotation.a21" = 1,
            "annotation.a22" = 2,
            "annotation.a23" = 3,
            "annotation.a24" = 4,
            "annotation.a25" = 5,
            "annotation.a26" = 6,
            "annotation.a27" = 7,
            "annotation.a28" = 8,
            "annotation.a29" = 9,
            "annotation.a30" = 0,
            "annotation.a31" = 1,
            "annotation.a32" = 2,
            "annotation.a33" = 3,
            "annotation.a34" = 4,
            "annotation.a35" = 5,
            "annotation.a36" = 6,
            "annotation.a37" = 7,
            "annotation.a38" = 8,
            "annotation.a39" = 9,
            "annotation.a40" = 0,
            "annotation.a41" = 1,
            "annotation.a42" = 2,
            "annotation.a43" = 3,
            "annotation.a44" = 4,
            "annotation.a45" = 5,
            "annotation.a46" = 6,
            "annotation.a47" = 7,
            "annotation.a48" = 8,
            "annotation.a49" = 9,
        )
    };
}

/// A layer named `name` deciding with `sampler` and sending to `out`
/// (no resource detection; a queue roomy enough for stress tests), for
/// tests that build several layers or their own subscriber.
pub fn in_memory_layer(
    name: &str,
    sampler: impl tracing_xray::sampling::Sampler,
    out: &tracing_xray::export::InMemoryExporter,
) -> tracing_xray::XrayLayer {
    tracing_xray::builder()
        .with_service_name(name)
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(sampler)
        .with_queue_capacity(1 << 16)
        .with_exporter(out.clone())
        .build()
}

/// Samples the requests whose URL path ends in an even number (`/orders/4`,
/// `/4`): tests that mix sampled and unsampled traces know which is which.
pub struct EvenPaths;

impl tracing_xray::sampling::Sampler for EvenPaths {
    fn sample(
        &self,
        request: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        use tracing_xray::sampling::SamplingDecision;
        let n: u64 = request
            .url_path
            .and_then(|p| p.rsplit('/').next())
            .and_then(|n| n.parse().ok())
            .expect("the root's url.path reaches the sampler");
        if n.is_multiple_of(2) {
            SamplingDecision::sampled()
        } else {
            SamplingDecision::not_sampled()
        }
    }
}

/// A global allocator counting the bytes the heap holds, for the tests of
/// memory bounds. A test binary installs it with
/// `#[global_allocator] static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;`
/// and reads [`live_bytes`].
pub struct CountingAllocator;

static LIVE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call goes unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counting touches no pointer or layout.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe {
            LIVE_BYTES.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
            std::alloc::System.alloc(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe {
            LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
            std::alloc::System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        unsafe {
            LIVE_BYTES.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
            std::alloc::System.realloc(ptr, layout, new)
        }
    }
}

/// The bytes the heap holds, with [`CountingAllocator`] installed.
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(std::sync::atomic::Ordering::SeqCst) as isize
}

/// The messages of a document's exceptions, in order.
pub fn exception_messages(doc: &Value) -> Vec<&str> {
    doc["cause"]["exceptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no exceptions: {doc:#}"))
        .iter()
        .map(|e| e["message"].as_str().expect("a message"))
        .collect()
}

/// A command running the `#[ignore]`d test `name` of the current test
/// binary alone, with the environment variables a host could set cleared
/// (`AWS_*`, `ECS_*`, `LAMBDA_*`, `_X_AMZN_TRACE_ID`, `KUBERNETES_*`,
/// `RUST_LOG`); its output piped.
pub fn child_command(name: &str) -> std::process::Command {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AWS_")
            || k.starts_with("ECS_")
            || k.starts_with("LAMBDA_")
            || k == "_X_AMZN_TRACE_ID"
            || k.starts_with("KUBERNETES_")
            || k == "RUST_LOG"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Waits for a child started from [`child_command`], killing it after 30 s;
/// whether its one test passed, and its standard output and error.
pub fn child_outcome(mut child: std::process::Child) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("1 passed"), text)
}

/// Runs the `#[ignore]`d test `name` alone ([`child_command`]) with `env`
/// set: whether it passed, and its output.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = child_command(name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    child_outcome(cmd.spawn().unwrap())
}

/// Runs the `#[ignore]`d test `name` of the current test binary in a process
/// of its own (for a test that installs a global subscriber, sets the
/// environment, or may abort); panics with its output if it fails, aborts,
/// or has not finished within 60 s.
pub fn run_alone(name: &str) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} failed ({:?}):\n{text}",
        out.status
    );
}

/// Holds the tests of a binary to one at a time while the guard lives: for
/// the binaries whose tests measure the whole heap (a counting allocator).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `body` under a layer named `svc` that samples every trace and sends
/// to `exporter` (no resource detection); returns its handle, not flushed.
pub fn run_sampled(
    exporter: impl tracing_xray::export::Exporter,
    body: impl FnOnce(),
) -> tracing_xray::XrayHandle {
    use tracing_subscriber::prelude::*;
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter)
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    xray
}

/// The target of the AWS SDK runtime's internal spans.
pub const SDK_ORCHESTRATOR: &str = "aws_smithy_runtime::client::orchestrator";

/// The spans aws-sdk-dynamodb 1.x opens for one `GetItem` with one retry,
/// in the current span: the operation span (with the field `n` when given)
/// and its 7 internal spans.
pub fn sdk_get_item(n: Option<u64>) {
    use tracing::Level;
    const ORCH: &str = SDK_ORCHESTRATOR;
    let op = tracing::span!(
        target: "aws_sdk_dynamodb::operation::get_item",
        Level::DEBUG,
        "DynamoDB.GetItem",
        "rpc.service" = "DynamoDB",
        "rpc.method" = "GetItem",
        "sdk_invocation_id" = 4_242_424_u64,
        "rpc.system" = "aws-api",
        n = tracing::field::Empty,
    );
    if let Some(n) = n {
        op.record("n", n);
    }
    op.in_scope(|| {
        tracing::span!(target: ORCH, Level::DEBUG, "apply_configuration").in_scope(|| {});
        tracing::span!(target: ORCH, Level::DEBUG, "try_op").in_scope(|| {
            tracing::span!(target: ORCH, Level::DEBUG, "serialization").in_scope(|| {});
            for i in 1..=2_u64 {
                tracing::span!(target: ORCH, Level::DEBUG, "try_attempt", attempt = i).in_scope(
                    || {
                        tracing::span!(target: ORCH, Level::DEBUG, "deserialization")
                            .in_scope(|| {});
                    },
                );
            }
        });
        tracing::span!(target: ORCH, Level::DEBUG, "finally_op").in_scope(|| {});
    });
}

/// A 2-worker multi-threaded tokio runtime whose threads all use
/// `dispatch` as their default subscriber, and `dispatch` as this thread's
/// default while the guard lives.
pub fn runtime_for(
    dispatch: &tracing::Dispatch,
) -> (tokio::runtime::Runtime, tracing::dispatcher::DefaultGuard) {
    let for_workers = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The worker thread's default for its whole life.
            std::mem::forget(tracing::dispatcher::set_default(&for_workers));
        })
        .build()
        .unwrap();
    (rt, tracing::dispatcher::set_default(dispatch))
}

/// Runs `body` on a multi-threaded runtime (2 workers, see
/// [`runtime_for`]) whose threads all use one `XrayLayer` (service `web`,
/// deciding with `sampler`, sending to memory); waits for `n` traces (10 s
/// at most), checks every document against the official schema and
/// returns the traces.
pub fn traces_on_runtime<S, F, Fut>(sampler: S, n: usize, body: F) -> Vec<Value>
where
    S: tracing_xray::sampling::Sampler,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing_subscriber::prelude::*;
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(sampler)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = runtime_for(&dispatch);
    rt.block_on(body());
    let deadline = Instant::now() + Duration::from_secs(10);
    while exporter.traces().len() < n && Instant::now() < deadline {
        xray.flush(Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    xray.flush(Duration::from_secs(5)).unwrap();
    let schema = schema();
    for doc in exporter.json_documents() {
        assert_schema_valid(&schema, &doc);
    }
    exporter.traces()
}

/// What a `fmt` subscriber wrote (its writer: clone it into
/// `with_writer(move || logs.clone())`).
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error with a fixed message, for a test's `&dyn Error` fields and
/// `#[instrument(err)]` functions.
#[derive(Debug)]
pub struct Failure(pub &'static str);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Failure {}

/// An error with a message made at run time (see [`Failure`]).
#[derive(Debug)]
pub struct Message(pub String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// A value whose `Debug` panics: the `fmt` layer formats a value given to
/// `span.record` while it holds the span's extensions lock, so this panic
/// poisons that lock.
pub struct PanickyDebug;

impl std::fmt::Debug for PanickyDebug {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Debug of a recorded value")
    }
}

/// Serves one request through `XrayServerLayer` (body and all: its segment
/// is sent with the response) to a handler that makes `work()` in the
/// request's span and keeps it open past the response, as work spawned in
/// the request's span does; returns that span.
#[cfg(feature = "tower")]
pub fn serve_and_keep_work(
    rt: &tokio::runtime::Runtime,
    work: fn() -> tracing::Span,
) -> tracing::Span {
    use http_body_util::BodyExt;
    use tower_layer::Layer;
    use tower_service::Service;

    #[derive(Clone)]
    struct Handler {
        work: fn() -> tracing::Span,
        kept: Arc<Mutex<Option<tracing::Span>>>,
    }

    impl Service<http::Request<String>> for Handler {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            *self.kept.lock().unwrap() = Some((self.work)());
            std::future::ready(Ok(http::Response::new("ok".to_owned())))
        }
    }

    let kept = Arc::new(Mutex::new(None));
    let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Handler {
        work,
        kept: kept.clone(),
    });
    let request = http::Request::get("http://example.com/orders")
        .body(String::new())
        .unwrap();
    rt.block_on(async {
        let response = service.call(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    });
    let work = kept.lock().unwrap().take();
    work.expect("work kept")
}

/// `n` real documents, made by the layer (one segment per span `op`), for
/// tests that hand documents to an exporter themselves.
pub fn documents(n: usize) -> Vec<tracing_xray::export::Document> {
    use tracing_subscriber::prelude::*;
    let memory = tracing_xray::export::InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("hunt")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(n.max(4096))
        .with_exporter(memory.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..n {
            tracing::info_span!("op", i).in_scope(|| {});
        }
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let docs = memory.documents();
    assert_eq!(docs.len(), n);
    docs
}

/// The text of each failure an exporter reported.
pub fn failure_texts(outcome: &tracing_xray::export::ExportOutcome) -> Vec<String> {
    outcome
        .failures
        .iter()
        .map(|f| f.error.to_string())
        .collect()
}

/// A credentials provider whose first call gives session credentials (key
/// id `AKIDFIRST`) expiring `lifetime` from then, and whose later calls
/// never answer (an IMDS or STS call that hangs). `calls` counts the calls;
/// `expiry` keeps the expiry it gave.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct FirstThenHangs {
    pub calls: Arc<Mutex<usize>>,
    pub expiry: Arc<Mutex<Option<std::time::SystemTime>>>,
    lifetime: Duration,
}

#[cfg(feature = "http")]
impl FirstThenHangs {
    pub fn new(lifetime: Duration) -> Self {
        FirstThenHangs {
            calls: Arc::default(),
            expiry: Arc::default(),
            lifetime,
        }
    }
}

#[cfg(feature = "http")]
impl aws_credential_types::provider::ProvideCredentials for FirstThenHangs {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::future;
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        if n > 1 {
            return future::ProvideCredentials::new(std::future::pending());
        }
        let expiry = std::time::SystemTime::now() + self.lifetime;
        *self.expiry.lock().unwrap() = Some(expiry);
        future::ProvideCredentials::ready(Ok(aws_credential_types::Credentials::new(
            "AKIDFIRST",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("SESSION-TOKEN".into()),
            Some(expiry),
            "first-then-hangs",
        )))
    }
}

/// Annotations in every (sub)segment of `docs`.
pub fn annotations_in_docs(docs: &[Value]) -> usize {
    nodes(docs)
        .iter()
        .map(|n| n["annotations"].as_object().map_or(0, |a| a.len()))
        .sum()
}

/// A finished child of the current span carrying 20 annotations.
pub fn step_with_twenty_annotations() {
    tracing::info_span!(
        "step",
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
        annotation.a10 = 0,
        annotation.a11 = 1,
        annotation.a12 = 2,
        annotation.a13 = 3,
        annotation.a14 = 4,
        annotation.a15 = 5,
        annotation.a16 = 6,
        annotation.a17 = 7,
        annotation.a18 = 8,
        annotation.a19 = 9
    )
    .in_scope(|| {});
}

/// A scoped (no-op) default dispatcher held on a thread of its own until
/// [`ScopedElsewhere::release`]: what makes tracing-core take its slow path
/// on every thread meanwhile, and drop back to its fast one at release
/// (the window in which a scoped dispatcher swapped inside a callback
/// under a global one panics).
pub struct ScopedElsewhere {
    release: std::sync::mpsc::Sender<()>,
    released: std::sync::mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ScopedElsewhere {
    /// Returns once the other thread holds its scoped default.
    pub fn hold() -> Self {
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let (released_tx, released) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let guard =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            held_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
            drop(guard);
            released_tx.send(()).unwrap();
        });
        held.recv().unwrap();
        ScopedElsewhere {
            release,
            released,
            thread,
        }
    }

    /// Drops the scoped default; returns once it is dropped.
    pub fn release(self) {
        let _ = self.release.send(());
        self.released.recv().unwrap();
        self.thread.join().unwrap();
    }
}
