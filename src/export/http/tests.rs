//! Unit tests against a scripted fake of the API on 127.0.0.1 (the tests
//! against moto are in `tests/http_moto.rs`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::*;
use crate::export::DocumentKind;
use crate::id::{SegmentId, TraceId};

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn documents(&self) -> Vec<String> {
        self.body["TraceSegmentDocuments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Reply = (u16, String);

/// A log writer into a shared buffer.
struct Captured(Arc<Mutex<Vec<u8>>>);

/// Runs `f` with its `tracing` events written as text, and returns them.
fn with_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    let captured = Arc::new(Mutex::new(Vec::new()));
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || Captured(writer.clone()))
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    (result, logs)
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
type Script = Box<dyn FnMut(&Seen) -> Reply + Send>;

/// A fake X-Ray API: answers each request from a script (default: accept
/// everything), one connection per request.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Fake {
    fn start() -> Fake {
        Fake::with_script(None)
    }

    fn with_script(mut script: Option<Script>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replies: Arc<Mutex<VecDeque<Reply>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (seen2, replies2) = (seen.clone(), replies.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                seen2.lock().unwrap().push(req.clone());
                let queued = replies2.lock().unwrap().pop_front();
                let (status, body) = match (queued, script.as_mut()) {
                    (Some(r), _) => r,
                    (None, Some(s)) => s(&req),
                    (None, None) => (200, r#"{"UnprocessedTraceSegments":[]}"#.into()),
                };
                let _ = write!(
                    &stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Fake {
            addr,
            seen,
            replies,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn reply(&self, status: u16, body: &str) {
        self.replies
            .lock()
            .unwrap()
            .push_back((status, body.to_owned()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
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
    Some(Seen {
        path,
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

fn doc(n: usize) -> Document {
    let trace_id = TraceId::new();
    let id = SegmentId::new();
    let json = format!(
        r#"{{"name":"doc-{n}","id":"{id}","trace_id":"{trace_id}","start_time":1.0,"end_time":2.0}}"#
    );
    Document::new(json, DocumentKind::Segment, trace_id, id)
}

fn docs(n: usize) -> Vec<Document> {
    (0..n).map(doc).collect()
}

/// A document of exactly `bytes` bytes of JSON, padded with an annotation.
fn doc_of(n: usize, bytes: usize) -> Document {
    let trace_id = TraceId::new();
    let id = SegmentId::new();
    let json = |pad: &str| {
        format!(
            r#"{{"name":"doc-{n}","id":"{id}","trace_id":"{trace_id}","start_time":1.0,"end_time":2.0,"annotations":{{"pad":"{pad}"}}}}"#
        )
    };
    let pad = "x".repeat(bytes - json("").len());
    let doc = Document::new(json(&pad), DocumentKind::Segment, trace_id, id);
    assert_eq!(doc.len(), bytes);
    doc
}

/// The id of each document a request carried.
fn ids_in(seen: &Seen) -> Vec<String> {
    seen.documents()
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The backlog's byte total, checked against its documents.
fn backlog_bytes(e: &HttpExporter) -> usize {
    assert_eq!(
        e.backlog.bytes(),
        e.backlog.recount(),
        "the byte total drifted"
    );
    e.backlog.bytes()
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";

fn builder(fake: &Fake) -> HttpExporterBuilder {
    HttpExporter::builder()
        .with_region("us-west-2")
        .with_endpoint(fake.url())
        .with_static_credentials("AKIDEXAMPLE", SECRET, Some(TOKEN.into()))
        .with_connect_timeout(Duration::from_millis(500))
        .with_read_timeout(Duration::from_millis(1000))
        .with_retry_backoff(Duration::from_millis(10), Duration::from_millis(40))
}

fn failures_of(outcome: &ExportOutcome) -> Vec<String> {
    outcome
        .failures
        .iter()
        .map(|f| format!("{:?}", f.error))
        .collect()
}

#[test]
fn defaults_are_pinned() {
    let b = HttpExporterBuilder::default();
    assert_eq!(b.settings.batch_delay, Duration::from_secs(1));
    assert_eq!(b.settings.backlog_capacity, 10_000);
    assert_eq!(b.settings.backlog_max_bytes, 32 << 20);
    assert_eq!(b.settings.connect_timeout, Duration::from_secs(3));
    assert_eq!(b.settings.read_timeout, Duration::from_secs(10));
    assert_eq!(b.settings.backoff_initial, Duration::from_millis(200));
    assert_eq!(b.settings.backoff_max, Duration::from_secs(30));
    assert_eq!(b.settings.auth_retry_interval, Duration::from_secs(60));
    assert_eq!(MAX_BATCH_DOCUMENTS, 50);
}

#[test]
fn default_endpoint_is_the_regional_one() {
    let e = HttpExporter::builder()
        .with_region("ap-southeast-2")
        .with_static_credentials("A", "B", None)
        .build()
        .unwrap();
    assert_eq!(
        e.url(),
        "https://xray.ap-southeast-2.amazonaws.com/TraceSegments"
    );
    assert_eq!(e.region(), "ap-southeast-2");
}

/// Regions outside the `aws` partition have their own DNS suffix (as in the
/// X-Ray daemon and the AWS SDKs' partition table).
#[test]
fn default_endpoint_follows_the_partition() {
    for (region, url) in [
        ("cn-north-1", "https://xray.cn-north-1.amazonaws.com.cn"),
        (
            "cn-northwest-1",
            "https://xray.cn-northwest-1.amazonaws.com.cn",
        ),
        ("us-gov-west-1", "https://xray.us-gov-west-1.amazonaws.com"),
        ("us-iso-east-1", "https://xray.us-iso-east-1.c2s.ic.gov"),
        (
            "us-isob-east-1",
            "https://xray.us-isob-east-1.sc2s.sgov.gov",
        ),
        (
            "us-isof-south-1",
            "https://xray.us-isof-south-1.csp.hci.ic.gov",
        ),
        (
            "eu-isoe-west-1",
            "https://xray.eu-isoe-west-1.cloud.adc-e.uk",
        ),
        ("eusc-de-east-1", "https://xray.eusc-de-east-1.amazonaws.eu"),
    ] {
        let e = HttpExporter::builder()
            .with_region(region)
            .with_static_credentials("A", "B", None)
            .build()
            .unwrap();
        assert_eq!(e.url(), format!("{url}/TraceSegments"), "{region}");
    }
}

#[test]
fn invalid_settings_are_errors() {
    let b = || HttpExporter::builder().with_static_credentials("A", "B", None);
    assert!(matches!(
        b().with_region("us-east-1/../x").build(),
        Err(HttpExporterError::InvalidRegion(_))
    ));
    for bad in [
        "ftp://x",
        "xray.amazonaws.com",
        "https://u:p@x.com",
        "https://x.com/path",
        "https://x.com?q",
    ] {
        assert!(
            matches!(
                b().with_region("us-east-1").with_endpoint(bad).build(),
                Err(HttpExporterError::InvalidEndpoint(_))
            ),
            "{bad}"
        );
    }
    let e = b()
        .with_region("us-east-1")
        .with_endpoint("http://127.0.0.1:4566/")
        .build()
        .unwrap();
    assert_eq!(e.url(), "http://127.0.0.1:4566/TraceSegments");
}

#[test]
fn debug_output_never_shows_secrets() {
    let fake = Fake::start();
    let b = builder(&fake);
    let shown = format!("{b:?} {b:#?}");
    let mut e = b.build().unwrap();
    let _ = e.export(docs(1));
    let shown = format!(
        "{shown} {e:?} {e:#?} {:?} {:?}",
        e.stats_handle(),
        HttpExporterError::MissingCredentials
    );
    assert!(shown.contains("Static"), "{shown}");
    for secret in [SECRET, TOKEN, "AKIDEXAMPLE"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // A provider's credentials are not shown either.
    let p = HttpExporter::builder().with_credentials_provider(Credentials::new(
        "AKIDEXAMPLE",
        SECRET,
        Some(TOKEN.into()),
        None,
        "test",
    ));
    let shown = format!("{p:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
}

#[test]
fn server_messages_are_scrubbed_of_secrets() {
    let fake = Fake::start();
    fake.reply(
        403,
        &format!(
            r#"{{"__type":"InvalidSignatureException","message":"canonical: x-amz-security-token:{TOKEN} key {SECRET}"}}"#
        ),
    );
    let mut e = builder(&fake).build().unwrap();
    let mut outcome = e.export(docs(1));
    outcome.merge(e.flush(Duration::from_secs(2)));
    let text = failures_of(&outcome).join(" ");
    assert!(text.contains("Unauthorized"), "{text}");
    assert!(text.contains("InvalidSignatureException"), "{text}");
    assert!(!text.contains(TOKEN) && !text.contains(SECRET), "{text}");
}

#[test]
fn waits_for_the_batch_delay_then_sends_one_signed_batch() {
    let fake = Fake::start();
    let mut e = builder(&fake)
        .with_batch_delay(Duration::from_millis(200))
        .build()
        .unwrap();
    let sent = docs(3);
    let expected: Vec<String> = sent.iter().map(|d| d.as_str().to_owned()).collect();
    let outcome = e.export(sent);
    assert_eq!(outcome.delivered, 0, "sent before the delay");
    assert!(fake.seen().is_empty());
    let at = e.next_poll().expect("a deadline");
    let wait = at.saturating_duration_since(Instant::now());
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    // Polled at an instant known to be before the deadline (whatever the
    // time the machine takes between two lines).
    let now = Instant::now();
    if at > now {
        assert_eq!(e.poll(now).delivered, 0, "too early");
    }
    thread::sleep(wait);
    let outcome = e.poll(Instant::now());
    assert_eq!(outcome.delivered, 3);
    assert!(e.next_poll().is_none());
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/TraceSegments");
    assert_eq!(seen[0].documents(), expected);
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].header("x-amz-security-token"), Some(TOKEN));
    let auth = seen[0].header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/us-west-2/xray/aws4_request"),
        "{auth}"
    );
    let stats = e.stats_handle().snapshot();
    assert_eq!((stats.requests, stats.documents_delivered), (1, 3));
}

#[test]
fn full_batches_go_at_once_in_fifties() {
    let fake = Fake::start();
    let mut e = builder(&fake).build().unwrap();
    let outcome = e.export(docs(120));
    assert_eq!(outcome.delivered, 100);
    let sizes: Vec<usize> = fake.seen().iter().map(|s| s.documents().len()).collect();
    assert_eq!(sizes, [50, 50]);
    let outcome = e.flush(Duration::from_secs(2));
    assert_eq!(outcome.delivered, 20);
    assert_eq!(e.stats_handle().snapshot().largest_batch, 50);
}

#[test]
fn throttling_and_server_errors_are_retried_with_backoff() {
    let fake = Fake::start();
    fake.reply(
        429,
        r#"{"__type":"ThrottlingException","message":"slow down"}"#,
    );
    fake.reply(500, r#"{"__type":"InternalFailure"}"#);
    fake.reply(400, r#"{"__type":"ThrottlingException"}"#);
    let mut e = builder(&fake)
        .with_batch_delay(Duration::ZERO)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut outcome = e.export(docs(5));
    assert!(outcome.failures.is_empty());
    while outcome.delivered < 5 && started.elapsed() < Duration::from_secs(5) {
        let at = e.next_poll().expect("a retry is scheduled");
        thread::sleep(at.saturating_duration_since(Instant::now()));
        outcome.merge(e.poll(Instant::now()));
    }
    assert_eq!(outcome.delivered, 5, "{:?}", failures_of(&outcome));
    assert!(outcome.failures.is_empty());
    let seen = fake.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.documents() == seen[0].documents()));
    assert_eq!(e.stats_handle().snapshot().retries, 3);
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let ms = Duration::from_millis;
    for attempt in 1..10 {
        for random in [0, 1, 12345, u64::MAX] {
            let d = backoff(ms(100), ms(1000), attempt, random);
            let ceiling = (ms(100) * 2u32.pow(attempt - 1)).min(ms(1000));
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt} {d:?}");
        }
    }
    assert_ne!(
        backoff(ms(100), ms(1000), 3, 1),
        backoff(ms(100), ms(1000), 3, 99_999_999)
    );
    assert_eq!(backoff(ms(100), ms(1000), 1000, 0), ms(500));
    // A half-ceiling of `u64::MAX` nanoseconds or more: no overflow.
    for random in [0, 1, u64::MAX - 1, u64::MAX] {
        let d = backoff(Duration::MAX, Duration::MAX, 1, random);
        assert!(d >= Duration::MAX / 2, "{d:?}");
        let d = backoff(Duration::from_secs(11 * 3600), Duration::MAX, 22, random);
        assert!(d >= Duration::from_secs(11 * 3600), "{d:?}");
    }
}

#[test]
fn unprocessed_documents_are_retried_when_retryable_and_failed_otherwise() {
    let docs = docs(3);
    let (a, b) = (docs[0].id().to_string(), docs[1].id().to_string());
    let fake = Fake::start();
    fake.reply(
        200,
        &format!(
            r#"{{"UnprocessedTraceSegments":[
                {{"Id":"{a}","ErrorCode":"InternalFailure","Message":"try again"}},
                {{"Id":"{b}","ErrorCode":"MissingParam","Message":"Missing end_time"}}]}}"#
        ),
    );
    let mut e = builder(&fake).build().unwrap();
    let mut outcome = e.export(docs.clone());
    outcome.merge(e.flush(Duration::from_secs(2)));
    assert_eq!(outcome.delivered, 2, "{:?}", failures_of(&outcome));
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].document.id(), docs[1].id());
    assert!(
        matches!(&outcome.failures[0].error, ExportError::Rejected(m) if m.contains("MissingParam")),
        "{:?}",
        outcome.failures[0].error
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].documents(), [docs[0].as_str()]);
    assert_eq!(e.stats_handle().snapshot().unprocessed, 2);
}

#[test]
fn an_unprocessed_document_fails_after_three_attempts() {
    let fake = Fake::with_script(Some(Box::new(|seen: &Seen| {
        let id = serde_json::from_str::<serde_json::Value>(&seen.documents()[0]).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (
            200,
            format!(
                r#"{{"UnprocessedTraceSegments":[{{"Id":"{id}","ErrorCode":"InternalFailure"}}]}}"#
            ),
        )
    })));
    let mut e = builder(&fake).build().unwrap();
    let mut outcome = e.export(docs(1));
    outcome.merge(e.flush(Duration::from_secs(2)));
    assert_eq!(outcome.delivered, 0);
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(fake.seen().len(), 3);
}

/// `UnprocessedTraceSegments` entries that name no document of the batch (no
/// `Id`, or an id of none of its documents) still say that documents were not
/// taken: as many of the batch's other documents fail in their place, none
/// is counted delivered for them or retried, and the first such entry is
/// logged once, with its error code. A repeated entry for a named document
/// fails nothing more.
#[test]
fn unprocessed_entries_naming_no_document_are_not_counted_delivered() {
    let docs = docs(5);
    let b = docs[1].id().to_string();
    let fake = Fake::start();
    fake.reply(
        200,
        &format!(
            r#"{{"UnprocessedTraceSegments":[
                {{"ErrorCode":"InternalFailure","Message":"no id"}},
                {{"Id":"0123456789abcdef","ErrorCode":"InvalidTraceId","Message":"who"}},
                {{"Id":"{b}","ErrorCode":"MissingParam","Message":"Missing end_time"}},
                {{"Id":"{b}","ErrorCode":"MissingParam","Message":"again"}}]}}"#
        ),
    );
    fake.reply(
        200,
        r#"{"UnprocessedTraceSegments":[{"ErrorCode":"ThrottledException"}]}"#,
    );
    let mut e = builder(&fake).build().unwrap();
    let ((first, second), logs) = with_logs(|| {
        let mut first = e.export(docs.clone());
        first.merge(e.flush(Duration::from_secs(2)));
        let mut second = e.export(self::docs(3));
        second.merge(e.flush(Duration::from_secs(2)));
        (first, second)
    });

    assert_eq!(first.delivered, 2, "{:?}", failures_of(&first));
    let failed: Vec<SegmentId> = first.failures.iter().map(|f| f.document.id()).collect();
    assert_eq!(failed, [docs[1].id(), docs[4].id(), docs[3].id()]);
    let why = failures_of(&first).join(" ");
    for part in ["MissingParam", "InternalFailure", "no Id", "InvalidTraceId"] {
        assert!(why.contains(part), "{part} in {why}");
    }
    assert_eq!((second.delivered, second.failures.len()), (2, 1));
    assert_eq!(fake.seen().len(), 2, "none retried");
    let stats = e.stats_handle().snapshot();
    assert_eq!((stats.unprocessed, stats.documents_delivered), (4, 4));

    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("without naming any of the batch"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("InternalFailure"),
        "{logs}"
    );
}

/// A call that delivers nothing, every document throttled in
/// `UnprocessedTraceSegments`, is throttling all the same: the backoff grows
/// from one such answer to the next instead of starting over at its first
/// step each time.
#[test]
fn all_documents_throttled_grows_the_backoff() {
    let fake = Fake::with_script(Some(Box::new(|seen: &Seen| {
        let unprocessed: Vec<String> = seen
            .documents()
            .iter()
            .map(|d| {
                let id = serde_json::from_str::<serde_json::Value>(d).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                format!(r#"{{"Id":"{id}","ErrorCode":"ThrottledException"}}"#)
            })
            .collect();
        (
            200,
            format!(
                r#"{{"UnprocessedTraceSegments":[{}]}}"#,
                unprocessed.join(",")
            ),
        )
    })));
    let mut e = builder(&fake).build().unwrap();
    let outcome = e.export(docs(50));
    assert!(outcome.failures.is_empty());
    assert_eq!((fake.seen().len(), e.failures_in_row), (1, 1));
    thread::sleep(Duration::from_millis(60));
    let outcome = e.poll(Instant::now());
    assert!(outcome.failures.is_empty());
    assert_eq!((fake.seen().len(), e.failures_in_row), (2, 2));
}

#[test]
fn refused_credentials_fail_fast_and_are_not_retried_in_a_storm() {
    let fake = Fake::with_script(Some(Box::new(|_: &Seen| {
        (
            403,
            r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#.into(),
        )
    })));
    let mut e = builder(&fake).build().unwrap();
    let mut outcome = ExportOutcome::default();
    for _ in 0..10 {
        outcome.merge(e.export(docs(60)));
        outcome.merge(e.flush(Duration::from_secs(1)));
    }
    assert_eq!(outcome.delivered, 0);
    assert_eq!(outcome.failures.len(), 600);
    assert!(outcome.failures.iter().all(
        |f| matches!(&f.error, ExportError::Unauthorized(m) if m.contains("UnrecognizedClient"))
    ));
    assert_eq!(fake.seen().len(), 1, "one request, then fail fast");
    assert_eq!(e.stats_handle().snapshot().auth_failures, 1);
    assert!(e.next_poll().is_none());
}

#[test]
fn after_the_auth_retry_interval_one_batch_tries_again() {
    let fake = Fake::start();
    fake.reply(403, r#"{"__type":"AccessDeniedException"}"#);
    let mut e = builder(&fake)
        .with_auth_retry_interval(Duration::from_millis(400))
        .build()
        .unwrap();
    let outcome = e.flush(Duration::from_secs(1));
    assert!(outcome.failures.is_empty());
    let mut outcome = e.export(docs(50));
    assert_eq!(outcome.failures.len(), 50);
    // Within the interval even on a loaded machine.
    outcome = e.export(docs(50));
    assert_eq!(outcome.failures.len(), 50, "still blocked");
    thread::sleep(Duration::from_millis(420));
    outcome = e.export(docs(50));
    assert_eq!(outcome.delivered, 50, "{:?}", failures_of(&outcome));
    assert_eq!(fake.seen().len(), 2);
}

#[test]
fn a_provider_with_new_credentials_gets_one_immediate_retry() {
    use aws_credential_types::provider::future;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct Rotating(AtomicUsize);
    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                None,
                "test",
            )))
        }
    }

    let fake = Fake::with_script(Some(Box::new(|seen: &Seen| {
        if seen.header("authorization").unwrap().contains("AKID0/") {
            (403, r#"{"__type":"ExpiredTokenException"}"#.into())
        } else {
            (200, "{}".into())
        }
    })));
    let mut e = HttpExporter::builder()
        .with_region("us-west-2")
        .with_endpoint(fake.url())
        .with_credentials_provider(Rotating(AtomicUsize::new(0)))
        .build()
        .unwrap();
    let mut outcome = e.export(docs(2));
    outcome.merge(e.flush(Duration::from_secs(2)));
    assert_eq!(outcome.delivered, 2, "{:?}", failures_of(&outcome));
    assert_eq!(fake.seen().len(), 2);
}

/// A key id or session token that cannot go into a header (a `\r` from a
/// CRLF env file, a `\n` from a secret file) fails the batch with an error
/// naming the problem: signing must not panic (with `panic = "abort"` that
/// would end the application), and the secret is not shown.
#[test]
fn credentials_unfit_for_a_header_fail_without_a_panic() {
    let fake = Fake::start();
    for (id, token) in [("AKIDEXAMPLE\r", None), ("AKIDEXAMPLE", Some("TOKEN\n"))] {
        let mut e = builder(&fake)
            .with_static_credentials(id, SECRET, token.map(str::to_owned))
            .build()
            .unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut outcome = e.export(docs(50));
            outcome.merge(e.flush(Duration::from_secs(1)));
            outcome
        }))
        .expect("signing does not panic");
        assert_eq!(outcome.failures.len(), 50);
        let why = failures_of(&outcome).join(" ");
        assert!(why.contains("header"), "{why}");
        assert!(!why.contains("TOKEN") && !why.contains(SECRET), "{why}");
    }
    assert!(fake.seen().is_empty());
}

/// `Duration::MAX` read as "never" / "no limit" (only full batches, never
/// retry refused credentials, no timeout): the exporter must not overflow
/// an `Instant` or a `Duration` and panic on the worker thread.
#[test]
fn settings_of_duration_max_do_not_panic() {
    let fake = Fake::start();
    fake.reply(503, "{}");
    fake.reply(403, r#"{"__type":"AccessDeniedException"}"#);
    let mut e = builder(&fake)
        .with_batch_delay(Duration::MAX)
        .with_auth_retry_interval(Duration::MAX)
        .with_connect_timeout(Duration::MAX)
        .with_read_timeout(Duration::MAX)
        .with_retry_backoff(Duration::from_millis(10), Duration::MAX)
        .build()
        .unwrap();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut outcome = e.export(docs(3));
        let _ = e.next_poll();
        outcome.merge(e.poll(Instant::now()));
        outcome.merge(e.flush(Duration::from_secs(2))); // 503, then 403
        let _ = e.next_poll();
        outcome.merge(e.export(docs(2)));
        let _ = e.next_poll();
        outcome
    }))
    .expect("no overflow");
    assert_eq!(run.failures.len(), 5, "{:?}", failures_of(&run));
    assert_eq!(fake.seen().len(), 2);
}

#[test]
fn the_backlog_drops_the_oldest_past_its_capacity() {
    let mut e = unreachable_builder()
        .with_connect_timeout(Duration::from_millis(200))
        .with_retry_backoff(Duration::from_secs(5), Duration::from_secs(5))
        .with_backlog_capacity(100)
        .build()
        .unwrap();
    let first = docs(80);
    let first_ids: Vec<SegmentId> = first.iter().map(|d| d.id()).collect();
    let mut outcome = e.export(first);
    assert!(outcome.failures.is_empty());
    outcome = e.export(docs(50));
    assert_eq!(outcome.failures.len(), 30);
    let dropped: Vec<SegmentId> = outcome.failures.iter().map(|f| f.document.id()).collect();
    assert_eq!(dropped, first_ids[..30]);
    assert!(outcome.failures.iter().all(|f| matches!(
        &f.error,
        ExportError::Other(e) if e.downcast_ref::<BacklogFull>().map(BacklogFull::bound)
            == Some(BacklogBound::Documents(100))
            && f.error.source().is_none()
            && e.to_string()
            == "dropped: the HTTP exporter's backlog is full (at most 100 documents, \
                with_backlog_capacity)"
    )));
    assert_eq!(e.stats_handle().snapshot().backlog_dropped, 30);
    // Shutdown within a timeout shorter than the backoff: the rest fail.
    let started = Instant::now();
    let outcome = e.shutdown(Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(outcome.failures.len(), 100);
    assert!(matches!(
        outcome.failures[0].error,
        ExportError::OutOfTime(_)
    ));
    let outcome = e.export(docs(1));
    assert!(matches!(
        outcome.failures[0].error,
        ExportError::AlreadyShutdown
    ));
}

#[test]
fn flush_respects_its_timeout_when_the_server_hangs() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let mut e = HttpExporter::builder()
        .with_region("us-west-2")
        .with_endpoint(format!("http://{addr}"))
        .with_static_credentials("A", "B", None)
        .with_read_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let _ = e.export(docs(3));
    let started = Instant::now();
    let outcome = e.flush(Duration::from_millis(400));
    let took = started.elapsed();
    // Bounded by the flush timeout, not by the 30 s read timeout.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(outcome.delivered, 0);
    assert!(outcome.failures.is_empty(), "kept for later");
}

#[test]
fn rejected_requests_fail_the_batch() {
    let fake = Fake::start();
    fake.reply(
        400,
        r#"{"__type":"InvalidRequestException","message":"nope"}"#,
    );
    let mut e = builder(&fake).build().unwrap();
    let mut outcome = e.export(docs(4));
    outcome.merge(e.flush(Duration::from_secs(1)));
    assert_eq!(outcome.failures.len(), 4);
    assert!(matches!(&outcome.failures[0].error, ExportError::Rejected(m) if m.contains("nope")));
}

#[test]
fn missing_region_and_credentials_are_reported() {
    // The environment may have either; only check the errors' messages.
    assert!(
        HttpExporterError::MissingRegion
            .to_string()
            .contains("AWS_REGION")
    );
    assert!(
        HttpExporterError::MissingCredentials
            .to_string()
            .contains("AWS_ACCESS_KEY_ID")
    );
}

#[test]
fn flush_and_shutdown_accept_any_timeout() {
    let fake = Fake::start();
    let mut e = builder(&fake)
        .with_batch_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    let outcome = e.export(docs(2));
    assert_eq!(outcome.delivered, 0, "held for the batch delay");
    // `Duration::MAX`: as long as it takes, not an `Instant` overflow.
    assert_eq!(e.flush(Duration::MAX).delivered, 2);
    assert_eq!(e.shutdown(Duration::MAX).delivered, 0);
}

/// The backlog is bounded in bytes as well as in documents: while the API
/// answers 503, big documents pass the byte bound long before the count
/// bound. The oldest are dropped (counted, failed with the bound's name),
/// the backlog never holds more than the bound, and what it kept is
/// delivered once the API is back.
#[test]
fn the_backlog_drops_the_oldest_past_its_byte_bound() {
    use std::sync::atomic::AtomicBool;

    const DOC: usize = 60_000;
    const MAX: usize = 256 * 1024; // four documents of 60,000 bytes, not five
    let down = Arc::new(AtomicBool::new(true));
    let down2 = down.clone();
    let fake = Fake::with_script(Some(Box::new(move |_: &Seen| {
        if down2.load(Ordering::SeqCst) {
            (503, r#"{"__type":"ServiceUnavailableException"}"#.into())
        } else {
            (200, r#"{"UnprocessedTraceSegments":[]}"#.into())
        }
    })));
    let mut e = builder(&fake)
        .with_batch_delay(Duration::ZERO)
        .with_backlog_max_bytes(MAX)
        .build()
        .unwrap();
    assert_eq!(e.settings.backlog_capacity, 10_000, "far away");

    let sent: Vec<Document> = (0..10).map(|n| doc_of(n, DOC)).collect();
    let ids: Vec<SegmentId> = sent.iter().map(|d| d.id()).collect();
    let ((first, second), logs) = with_logs(|| {
        let first = e.export(sent[..7].to_vec());
        assert_eq!((e.backlog.len(), backlog_bytes(&e)), (4, 4 * DOC));
        let second = e.export(sent[7..].to_vec());
        (first, second)
    });
    assert_eq!(e.backlog.len(), 4);
    assert_eq!(backlog_bytes(&e), 4 * DOC);
    assert!(!fake.seen().is_empty(), "the API was tried");
    assert!(e.retry_at.is_some(), "and is being retried");

    let dropped: Vec<SegmentId> = first
        .failures
        .iter()
        .chain(&second.failures)
        .map(|f| f.document.id())
        .collect();
    assert_eq!(dropped, ids[..6], "the oldest");
    for f in first.failures.iter().chain(&second.failures) {
        match &f.error {
            ExportError::Other(err) => assert_eq!(
                err.to_string(),
                "dropped: the HTTP exporter's backlog is full (at most 262144 bytes of \
                 documents, with_backlog_max_bytes)"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(e.stats_handle().snapshot().backlog_dropped, 6);
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("backlog is full"))
        .collect();
    assert_eq!(warnings.len(), 1, "warned once: {logs}");
    assert!(warnings[0].contains("backlog_max_bytes"), "{logs}");

    // The API is back: the four kept are delivered, in one batch.
    down.store(false, Ordering::SeqCst);
    let outcome = e.flush(Duration::from_secs(5));
    assert_eq!(outcome.delivered, 4, "{:?}", failures_of(&outcome));
    assert!(outcome.failures.is_empty());
    let seen = fake.seen();
    let last = seen.last().unwrap();
    let kept: Vec<String> = ids[6..].iter().map(|id| id.to_string()).collect();
    assert_eq!(ids_in(last), kept);
    assert_eq!((e.backlog.len(), backlog_bytes(&e)), (0, 0));
    let stats = e.stats_handle().snapshot();
    assert_eq!((stats.documents_delivered, stats.backlog_dropped), (4, 6));
}

/// The bound is at least one document of the largest size taken, which
/// then always fits on its own.
#[test]
fn a_document_of_the_largest_size_always_fits_the_byte_bound() {
    let mut e = unreachable_builder()
        .with_batch_delay(Duration::from_secs(60))
        .with_backlog_max_bytes(0)
        .build()
        .unwrap();
    assert_eq!(e.settings.backlog_max_bytes, MAX_DOCUMENT_BYTES);
    let outcome = e.export(vec![doc_of(0, 1_000), doc_of(1, MAX_DOCUMENT_BYTES)]);
    assert_eq!(outcome.failures.len(), 1, "the older one made room");
    assert_eq!(e.backlog.len(), 1);
    assert_eq!(backlog_bytes(&e), MAX_DOCUMENT_BYTES);
}

/// Waits for the retry the exporter has scheduled, and runs it.
fn poll_at_retry(e: &mut HttpExporter) -> ExportOutcome {
    let at = e.next_poll().expect("a retry is scheduled");
    thread::sleep(at.saturating_duration_since(Instant::now()));
    e.poll(Instant::now())
}

/// The byte total stays exact through every way documents leave and come
/// back: a batch taken from the front and put back whole (throttled), part
/// of a batch put back (`UnprocessedTraceSegments` with a retryable code),
/// the rest delivered, and the shutdown that sends what is left.
#[test]
fn the_backlog_byte_total_stays_exact_through_retries() {
    let sent: Vec<Document> = (0..120).map(|n| doc_of(n, 200 + 37 * n)).collect();
    let size = |range: &[Document]| range.iter().map(Document::len).sum::<usize>();
    let (a, b) = (sent[3].id().to_string(), sent[7].id().to_string());
    let fake = Fake::start();
    fake.reply(
        429,
        r#"{"__type":"ThrottlingException","message":"slow down"}"#,
    );
    fake.reply(
        200,
        &format!(
            r#"{{"UnprocessedTraceSegments":[
                {{"Id":"{a}","ErrorCode":"ThrottledException"}},
                {{"Id":"{b}","ErrorCode":"InternalFailure"}}]}}"#
        ),
    );
    // A backoff long enough to look at the backlog between the calls.
    let mut e = builder(&fake)
        .with_retry_backoff(Duration::from_millis(200), Duration::from_millis(200))
        .build()
        .unwrap();

    // The first 50 go at once, are throttled and put back in front.
    let outcome = e.export(sent.clone());
    assert!(outcome.failures.is_empty() && outcome.delivered == 0);
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(e.backlog.len(), 120);
    assert_eq!(backlog_bytes(&e), size(&sent));

    // Sent again: 48 delivered, the two unprocessed put back in front of
    // the 70 that were never sent.
    let outcome = poll_at_retry(&mut e);
    assert_eq!(outcome.delivered, 48, "{:?}", failures_of(&outcome));
    assert_eq!(fake.seen().len(), 2);
    assert_eq!(e.backlog.len(), 72);
    assert_eq!(
        backlog_bytes(&e),
        sent[3].len() + sent[7].len() + size(&sent[50..])
    );
    assert_eq!(e.backlog.front().unwrap().doc.id(), sent[3].id());

    // One more batch goes, then shutdown leaves nothing counted.
    let outcome = poll_at_retry(&mut e);
    assert_eq!(outcome.delivered, 50, "{:?}", failures_of(&outcome));
    assert_eq!(e.backlog.len(), 22);
    assert_eq!(backlog_bytes(&e), size(&sent[98..]));
    let outcome = e.shutdown(Duration::from_secs(5));
    assert_eq!(outcome.delivered, 22, "{:?}", failures_of(&outcome));
    assert_eq!((e.backlog.len(), backlog_bytes(&e)), (0, 0));
    assert_eq!(e.stats_handle().snapshot().documents_delivered, 120);
}

/// An exporter's builder for an endpoint where nothing listens: every send
/// fails and is retried.
fn unreachable_builder() -> HttpExporterBuilder {
    HttpExporter::builder()
        .with_region("us-west-2")
        .with_endpoint(format!("http://127.0.0.1:{}", closed_port()))
        .with_static_credentials("A", "B", None)
}

/// A port on 127.0.0.1 nothing listens on (bound, then released): every
/// connection to it is refused.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
