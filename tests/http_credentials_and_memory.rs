//! `HttpExporter` against servers on 127.0.0.1 that rotate credentials or
//! never answer, and its backlog's memory, measured by a counting allocator
//! (this binary's own). Found by a run-based review; each test failed before
//! its fix.
#![cfg(feature = "http")]

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, future};
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, HttpExporter};

#[global_allocator]
static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;

/// One request as the fake server read it.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { headers })
}

type Handler = Arc<dyn Fn(&Request, &TcpStream) + Send + Sync>;

/// A fake X-Ray API on 127.0.0.1: one thread per connection, `handler`
/// writes the answer. Returns its base URL and the requests it read.
fn fake(
    handler: impl Fn(&Request, &TcpStream) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let handler: Handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (seen, handler) = (seen2.clone(), handler.clone());
            std::thread::spawn(move || {
                while let Some(req) = read_request(&stream) {
                    seen.lock().unwrap().push(req.clone());
                    handler(&req, &stream);
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn answer(stream: &TcpStream, status: u16, body: &str) {
    let _ = write!(
        &*stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn accepted(stream: &TcpStream) {
    answer(stream, 200, r#"{"UnprocessedTraceSegments":[]}"#);
}

/// The `Credential=KEY/` part of a request's SigV4 authorization header.
fn key_of(req: &Request) -> String {
    let auth = req.header("authorization").unwrap_or_default();
    let start = auth
        .find("Credential=")
        .map_or(0, |i| i + "Credential=".len());
    auth[start..]
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A provider whose `n`-th call (from 1) gives `keys[n-1]`, and the last
/// key for every later call (credentials rotated behind it).
#[derive(Debug)]
struct Rotating {
    keys: Vec<&'static str>,
    calls: Arc<AtomicUsize>,
}

impl ProvideCredentials for Rotating {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let key = self.keys[n.min(self.keys.len() - 1)];
        future::ProvideCredentials::ready(Ok(Credentials::new(
            key,
            format!("secret-of-{key}"),
            None,
            None,
            "rotating",
        )))
    }
}

/// The README/credentials_provider docs: a provider's credentials are "asked
/// again five minutes before they expire and when the API refuses them".
///
/// Here the provider first gives key A (refused), then, asked again, key B
/// (refused too: say, a key not yet allowed `xray:PutTraceSegments`), and
/// from then on key C, which the API accepts. After the
/// `auth_retry_interval`, "one batch tries again" and, refused again, the
/// provider must be asked again (it would give C and the documents would be
/// delivered). The exporter used to ask the provider again after a refusal
/// only once until the next success: as no success can come with B, it
/// kept sending with B forever, and every document failed as
/// `Unauthorized`.
#[test]
fn refused_credentials_are_asked_again_after_a_refreshed_key_was_refused() {
    let _serial = common::serial();
    let (url, seen) = fake(|req, stream| {
        if key_of(req) == "KEYC" {
            accepted(stream);
        } else {
            answer(
                stream,
                400,
                r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
            );
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(Rotating {
            keys: vec!["KEYA", "KEYB", "KEYC"],
            calls: calls.clone(),
        })
        .with_batch_delay(Duration::ZERO)
        .with_auth_retry_interval(Duration::from_millis(50))
        .with_connect_timeout(Duration::from_millis(500))
        .with_read_timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    let mut outcome = ExportOutcome::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) && outcome.delivered == 0 {
        outcome.merge(exporter.export(common::documents(1)));
        std::thread::sleep(Duration::from_millis(100));
        outcome.merge(exporter.poll(Instant::now()));
    }
    let keys: Vec<String> = seen.lock().unwrap().iter().map(key_of).collect();
    assert!(
        outcome.delivered > 0,
        "after {:?}, {} provider calls, keys sent {:?}: nothing delivered, {} failures, first: {:?}",
        started.elapsed(),
        calls.load(Ordering::SeqCst),
        keys,
        outcome.failures.len(),
        outcome.failures.first().map(|f| f.error.to_string()),
    );
}

/// A future that is ready `delay` after its first poll (a provider doing
/// its work elsewhere: an HTTP call to IMDS or STS on a runtime).
struct ReadyAfter {
    delay: Duration,
    started: Option<Instant>,
    key: &'static str,
}

impl Future for ReadyAfter {
    type Output = aws_credential_types::provider::Result;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed() >= self.delay {
            return Poll::Ready(Ok(Credentials::new(self.key, "secret", None, None, "slow")));
        }
        let waker: Waker = cx.waker().clone();
        let left = self.delay - started.elapsed();
        std::thread::spawn(move || {
            std::thread::sleep(left);
            waker.wake();
        });
        Poll::Pending
    }
}

/// A provider that takes `delay` to answer.
#[derive(Debug)]
struct Slow {
    delay: Duration,
}

impl ProvideCredentials for Slow {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(ReadyAfter {
            delay: self.delay,
            started: None,
            key: "AKIDSLOW",
        })
    }
}

/// `Exporter::flush` "delivers everything queued, giving up after
/// `timeout`", and the README: "`flush`/`shutdown` deliver what they can
/// within their timeout". With a credentials provider that takes 1.5 s and
/// an API that does not answer, `flush(2 s)` must return within about 2 s
/// (the request's own time limit is what is left of the flush's). The
/// request used to get the whole time left *before* the provider was
/// asked, so the flush took the provider's time plus that: about 3.5 s, and
/// the worker replied to `XrayHandle::flush` after the caller gave up.
#[test]
fn flush_with_a_slow_credentials_provider_keeps_to_its_timeout() {
    let _serial = common::serial();
    // Reads the request, never answers.
    let (url, _seen) = fake(|_req, _stream| std::thread::sleep(Duration::from_secs(3600)));
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(Slow {
            delay: Duration::from_millis(1_500),
        })
        .with_batch_delay(Duration::from_secs(60))
        .with_read_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let outcome = exporter.export(common::documents(3));
    assert_eq!(
        outcome.delivered + outcome.failures.len(),
        0,
        "held for the batch delay"
    );

    let timeout = Duration::from_millis(2_000);
    let started = Instant::now();
    let outcome = exporter.flush(timeout);
    let took = started.elapsed();
    assert_eq!(outcome.delivered, 0);
    assert!(
        took < timeout + Duration::from_millis(800),
        "flush({timeout:?}) took {took:?}"
    );
}

/// Keeps the documents the worker hands over, as they are (not cloned).
struct Stash(Arc<Mutex<Vec<Document>>>);

impl Exporter for Stash {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let n = batch.len();
        self.0.lock().unwrap().extend(batch);
        ExportOutcome::delivered(n)
    }
}

/// `HttpExporterBuilder::with_backlog_max_bytes`: "How many bytes of documents
/// (their JSON text) may wait, however many documents that is: the bound on
/// the application's memory that an outage of the API can hold"; the type's
/// docs: the backlog is bounded "so that an outage of the API holds no more
/// of the application's memory than that".
///
/// The bound used to count each document's length while the backlog kept
/// the documents' buffers as the worker made them: a one-span segment of
/// about 310 bytes sat in a 1 KiB buffer, and with `with_backlog_max_bytes(1
/// MiB)` (and a count bound that is not met) the waiting documents held
/// about 4 MiB of the heap. What waits holds about the bound (here at most
/// twice it, which leaves room for the bookkeeping of each document).
#[test]
fn the_backlog_byte_bound_bounds_the_memory_it_holds() {
    let _serial = common::serial();
    // Documents as the worker hands them to its exporter.
    let stash = Arc::new(Mutex::new(Vec::new()));
    let layer = tracing_xray::builder()
        .with_service_name("hunt")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(20_000)
        .with_exporter(Stash(stash.clone()))
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..12_000 {
            tracing::info_span!("op", i).in_scope(|| {});
        }
    });
    xray.shutdown(Duration::from_secs(30)).unwrap();
    drop(dispatch);
    let docs: Vec<Document> = std::mem::take(&mut *stash.lock().unwrap());
    assert_eq!(docs.len(), 12_000);
    let json_bytes: usize = docs.iter().map(Document::len).sum();
    assert!(json_bytes > 3 << 20, "{json_bytes}: past the bound below");

    const BOUND: usize = 1 << 20;
    // Nothing is sent for a minute: the backlog just fills, and drops the
    // oldest past its byte bound.
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint("http://127.0.0.1:9")
        .with_static_credentials("AKID", "SECRET", None)
        .with_batch_delay(Duration::from_secs(60))
        .with_backlog_capacity(1_000_000)
        .with_backlog_max_bytes(BOUND)
        .build()
        .unwrap();
    let stats = exporter.stats_handle();
    let outcome = exporter.export(docs);
    assert_eq!(outcome.delivered, 0);
    drop(outcome); // the documents dropped from the backlog
    let dropped = stats.snapshot().backlog_dropped;
    assert!(dropped > 0, "the byte bound was met");
    // What the exporter holds: the heap it gives back when it goes.
    let with_backlog = common::live_bytes() as usize;
    drop(exporter.shutdown(Duration::ZERO));
    drop(exporter);
    let held = with_backlog.saturating_sub(common::live_bytes() as usize);
    assert!(
        held <= 2 * BOUND,
        "with_backlog_max_bytes({BOUND}) with {} documents waiting: they hold {held} bytes of the heap",
        12_000 - dropped
    );
}

/// An exporter to `url` with static credentials, sending at once.
fn at_once(url: String) -> tracing_xray::export::HttpExporterBuilder {
    HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_static_credentials(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        )
        .with_batch_delay(Duration::ZERO)
}

/// A shutdown whose deadline comes before the running backoff ends tries
/// once more before it gives up: the API may be back. It used to fail the
/// whole backlog without a request (found by a hunt).
#[test]
fn shutdown_during_a_long_backoff_tries_once_more() {
    let _serial = common::serial();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (url, seen) = fake(move |_req, stream| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            answer(stream, 503, "");
        } else {
            accepted(stream);
        }
    });
    let mut exporter = at_once(url)
        .with_retry_backoff(Duration::from_secs(8), Duration::from_secs(8))
        .build()
        .unwrap();
    let first = exporter.export(common::documents(1));
    assert_eq!(
        first.delivered + first.failures.len(),
        0,
        "a 503: retried later"
    );
    let started = Instant::now();
    let last = exporter.shutdown(Duration::from_secs(3));
    assert_eq!(last.delivered, 1, "{:?}", last.failures);
    assert!(last.failures.is_empty());
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A 2xx cut off in its body (here, one naming the document as throttled)
/// says nothing of which documents were taken: the batch goes again (X-Ray
/// keeps one document per id). It used to count them all delivered.
#[test]
fn a_cut_off_2xx_answer_is_retried_not_counted_delivered() {
    let _serial = common::serial();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (url, seen) = fake(move |_req, stream| {
        if counted.fetch_add(1, Ordering::SeqCst) > 0 {
            accepted(stream);
            return;
        }
        let body = r#"{"UnprocessedTraceSegments":[{"ErrorCode":"ThrottledException"}]}"#;
        let _ = write!(
            &*stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            &body[..body.len() - 2]
        );
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let mut exporter = at_once(url)
        .with_retry_backoff(Duration::from_millis(20), Duration::from_millis(40))
        .build()
        .unwrap();
    let mut outcome = exporter.export(common::documents(1));
    assert_eq!(outcome.delivered, 0, "the cut-off answer delivered nothing");
    let started = Instant::now();
    while outcome.delivered == 0 && started.elapsed() < Duration::from_secs(10) {
        let at = exporter.next_poll().expect("a retry is scheduled");
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        outcome.merge(exporter.poll(Instant::now()));
    }
    assert_eq!(outcome.delivered, 1, "{:?}", outcome.failures);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// `flush` says `Timeout` while the exporter still holds documents it could
/// not deliver in time (an API that never answers); they go on in the
/// background. It used to return `Ok(())` with nothing delivered.
#[test]
fn flush_is_a_timeout_while_the_api_has_not_answered() {
    let _serial = common::serial();
    let (url, _seen) = fake(|_req, _stream| std::thread::sleep(Duration::from_secs(3600)));
    // Held for the batch delay: the request is the flush's own.
    let exporter = at_once(url)
        .with_batch_delay(Duration::from_secs(60))
        .with_read_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let xray = common::run_sampled(exporter, || {
        tracing::info_span!("request").in_scope(|| {});
    });
    let timeout = Duration::from_secs(1);
    assert_eq!(
        xray.flush(timeout),
        Err(tracing_xray::FlushError::Timeout(timeout))
    );
    let stats = xray.stats();
    assert_eq!(stats.documents_exported + stats.documents_failed, 0);
}

/// What aws-config's credentials chain does around each provider it tries
/// (`debug_span!("load_credentials", provider = %name)`, then an `info!`),
/// here around a static key, after a yield to the runtime.
#[derive(Debug)]
struct ChainLike;

impl ProvideCredentials for ChainLike {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use tracing::Instrument;
        future::ProvideCredentials::new(async move {
            let span = tracing::debug_span!("load_credentials", provider = "Environment");
            let credentials = async {
                tokio::task::yield_now().await;
                Credentials::new("AKIDEXAMPLE", "secret", None, None, "env")
            }
            .instrument(span)
            .await;
            tracing::info!(provider = "Environment", "loaded credentials");
            Ok(credentials)
        })
    }
}

/// `HttpExporterBuilder`'s documented wrapper for a provider that needs the
/// application's Tokio runtime, as its rustdoc writes it.
#[derive(Debug)]
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    inner: aws_credential_types::provider::SharedCredentialsProvider,
}

impl ProvideCredentials for OnRuntime {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        let inner = self.inner.clone();
        let task = self
            .runtime
            .spawn(tracing_xray::export::untraced_future(async move {
                inner.provide_credentials().await
            }));
        future::ProvideCredentials::new(
            async move { task.await.map_err(CredentialsError::unhandled)? },
        )
    }
}

/// Found by a hunt of async applications. The exporter's credentials,
/// fetched on the application's runtime as `HttpExporterBuilder`'s rustdoc
/// shows, are the exporter's work: README (Limits): "never traces itself".
/// Before the fix the documented wrapper spawned the provider's future as
/// it was, so aws-config's `load_credentials` span became a root on an
/// application thread: each fetch was a trace of the service, sent to
/// X-Ray. The wrapper now spawns it in `export::untraced_future`.
#[test]
fn credentials_fetched_on_the_applications_runtime_are_not_traced() {
    common::run_alone("credentials_fetched_on_the_applications_runtime_are_not_traced_alone");
}

#[test]
#[ignore = "installs a global subscriber: run by its wrapper in a process of its own"]
fn credentials_fetched_on_the_applications_runtime_are_not_traced_alone() {
    let (url, seen) = fake(|_, stream| accepted(stream));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_batch_delay(Duration::ZERO)
        .with_credentials_provider(OnRuntime {
            runtime: rt.handle().clone(),
            inner: aws_credential_types::provider::SharedCredentialsProvider::new(ChainLike),
        })
        .build()
        .unwrap();
    let layer = tracing_xray::builder()
        .with_service_name("orders")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter)
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();
    rt.block_on(async {
        tokio::spawn(async {
            tracing::info_span!("request").in_scope(|| tracing::info_span!("step").in_scope(|| {}));
        })
        .await
        .unwrap();
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    // What the fetch would have traced has finished by the first send: a
    // second flush sends it, if there were one.
    xray.flush(Duration::from_secs(10)).unwrap();
    let stats = xray.stats();
    assert_eq!(stats.traces_queued, 1, "{stats:?}");
    assert_eq!(stats.documents_exported, 1, "{stats:?}");
    assert!(!seen.lock().unwrap().is_empty());
}
