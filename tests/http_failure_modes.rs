//! What `HttpExporter` does when the API, its endpoint or the credentials
//! provider misbehave (fakes on 127.0.0.1): a shutdown the API never
//! answered is a timeout; a backoff of `Duration::MAX` does not panic; an
//! endpoint with a fragment, no host or an impossible port is refused; a
//! 503 after an old 403 is no refusal; a provider that hangs while its
//! credentials are still valid does not take the whole flush. Each test
//! failed on a773d3f, or on an earlier fix of this file's; the comment above
//! it tells the defect as it was found.
#![cfg(feature = "http")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_xray::FlushError;
use tracing_xray::export::{Exporter, HttpExporter, HttpExporterBuilder, HttpExporterError};

/// Reads one request (head and body) and returns its request line; `None`
/// at the end of the connection.
fn read_request(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    if request_line.is_empty() {
        return None;
    }
    let mut len = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(request_line.trim_end().to_owned())
}

/// A fake X-Ray API on 127.0.0.1: one thread per connection, `handler`
/// writes each answer. Returns its base URL and the request lines it read.
fn fake(handler: impl Fn(&TcpStream) + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (seen, handler) = (seen2.clone(), handler.clone());
            std::thread::spawn(move || {
                while let Some(line) = read_request(&stream) {
                    seen.lock().unwrap().push(line);
                    handler(&stream);
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// A server that accepts connections and never answers (nor closes them).
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

fn answer(stream: &TcpStream, status: u16, body: &str) {
    let _ = write!(
        &*stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// An exporter to `url` with static credentials, sending at once.
fn at_once(url: String) -> HttpExporterBuilder {
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

// The user sends with `HttpExporter` to an X-Ray API (or a VPC endpoint, a
// proxy) that accepts the connection and never answers, and at exit calls
// `xray.shutdown(Duration::from_secs(1))` (or drops the `init()` guard).
// README, "Sending without a daemon": "`flush`/`shutdown` deliver what they
// can within their timeout (...); what is still undelivered then makes them
// return `FlushError::Timeout`, and at a shutdown it is counted in
// `stats().documents_failed`." `flush` does return `Timeout` here
// (tests/http_credentials_and_memory.rs), but `shutdown` returns `Ok(())`
// with the document undelivered (it is counted failed): the program is told
// everything went out. Cause: `HttpExporter::shutdown`
// (src/export/http.rs, `impl Exporter for HttpExporter`) reports what it
// could not send as failed with `ExportError::Timeout`, so the worker
// (src/worker.rs, `Control::Shutdown`: `write_off_held() && lost == 0`)
// sees every document settled and replies `true`.
#[test]
fn shutdown_is_a_timeout_while_the_api_has_not_answered() {
    let _serial = common::serial();
    // Held for the batch delay: the only request is the shutdown's own.
    let exporter = at_once(silent_server())
        .with_batch_delay(Duration::from_secs(60))
        .with_read_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let xray = common::run_sampled(exporter, || {
        tracing::info_span!("request").in_scope(|| {});
    });
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = xray.shutdown(timeout);
    let took = started.elapsed();
    let stats = xray.stats();
    assert!(
        took < Duration::from_secs(3),
        "shutdown({timeout:?}) took {took:?}"
    );
    assert_eq!(
        (stats.documents_exported, stats.documents_failed),
        (0, 1),
        "the document was not delivered, and is counted failed: {stats:?}"
    );
    assert_eq!(
        result,
        Err(FlushError::Timeout(timeout)),
        "shutdown with the only document undelivered (the API never answered) said it finished"
    );
}

// The user builds `HttpExporter::builder().with_retry_backoff(Duration::MAX,
// Duration::MAX)` ("never retry on my own, only at flush"), as they may
// write `Duration::MAX` for `with_batch_delay`, `with_auth_retry_interval`
// and the timeouts, which the exporter takes as "never" / "no limit"
// (src/export/http/tests.rs `settings_of_duration_max_do_not_panic`: "the
// exporter must not overflow an `Instant` or a `Duration` and panic on the
// worker thread"). README: "Never panics". At the first 503 the exporter
// panics instead: `backoff` (src/export/http.rs:689) computes
// `random % (nanos + 1)` with `nanos` = `u64::MAX` (a half-ceiling past
// 584 years): an overflow in a debug build, a remainder by zero in release.
// On the worker this loses the batch and every document the exporter
// held (counted failed), and with `panic = "abort"` ends the application.
// Any initial delay above about 10 hours with no cap does the same after 21
// failures in a row.
#[test]
fn a_retry_backoff_of_duration_max_does_not_panic() {
    let _serial = common::serial();
    let (url, seen) = fake(|stream| answer(stream, 503, r#"{"__type":"ServiceUnavailable"}"#));
    let mut exporter = at_once(url)
        .with_retry_backoff(Duration::MAX, Duration::MAX)
        .build()
        .unwrap();
    let docs = common::documents(2);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let outcome = exporter.export(docs);
        let _ = exporter.next_poll();
        outcome
    }));
    assert_eq!(seen.lock().unwrap().len(), 1, "one request, answered 503");
    let outcome = run.expect("a 503 with a backoff of Duration::MAX panicked the exporter");
    assert_eq!(
        outcome.delivered + outcome.failures.len(),
        0,
        "kept for a later try: {:?}",
        common::failure_texts(&outcome)
    );
}

// The user gives an endpoint with a fragment, here one carrying a token
// (`with_endpoint("http://xray-proxy.internal:2000#token=…")`, or a stray
// `#` pasted with a URL). `HttpExporterError::InvalidEndpoint`: "The
// endpoint is not an `https://` (or `http://`) base URL"; the builder's own
// `Debug` hides an endpoint's fragment as a secret (src/export/http.rs
// `endpoint_shown`: "without its user info, query and fragment (`build`
// refuses them)"); README: "Secrets never appear in `Debug` output, errors
// or `tracing` logs". Instead `build` accepts it (`validate_endpoint` checks
// the path and query, never the fragment) and appends the API path after
// it: the URL is `http://host:port#token=…/TraceSegments`, so every batch is
// POSTed to `/`, where the API has no operation (every document fails, or,
// behind a proxy that answers 200 there, is counted delivered and lost),
// and the built exporter's `Debug` (its `url`), `url()` and
// every logged error quote the fragment's token. Either refusing the
// endpoint or dropping its fragment (posting to `/TraceSegments`) passes.
#[test]
fn an_endpoint_with_a_fragment_is_refused_or_still_posts_to_trace_segments() {
    let _serial = common::serial();
    const TOKEN: &str = "S3CR3T-fragment-token";
    let (url, seen) = fake(|stream| answer(stream, 200, r#"{"UnprocessedTraceSegments":[]}"#));
    let built = at_once(format!("{url}#token={TOKEN}")).build();
    let mut exporter = match built {
        Err(HttpExporterError::InvalidEndpoint(why)) => {
            assert!(!why.contains(TOKEN), "the error shows the token: {why}");
            return;
        }
        Err(other) => panic!("refused, but not as an invalid endpoint: {other:?}"),
        Ok(exporter) => exporter,
    };
    let shown = format!("{exporter:?} {}", exporter.url());
    let outcome = exporter.export(common::documents(1));
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        ["POST /TraceSegments HTTP/1.1"],
        "the endpoint {url}#token=… was accepted, and its batch went elsewhere ({} delivered, \
         failures {:?})",
        outcome.delivered,
        common::failure_texts(&outcome)
    );
    assert!(
        !shown.contains(TOKEN),
        "the endpoint's fragment is in the exporter's Debug / url(): {shown}"
    );
}

// The user mistypes the endpoint: no host (`http://:4566`, a variable left
// empty in `format!("http://{host}:4566")`) or a port out of range
// (`http://127.0.0.1:45660`). `HttpExporterBuilder::build`: "# Errors ...
// the region or endpoint is invalid"; `validate_endpoint` even has a "no
// host" error. Both are accepted (the `http` crate's `Uri` takes an empty
// host and any digits as a port, src/export/http.rs `validate_endpoint`),
// and the mistake only shows as a network error on every send: "the X-Ray
// API is unavailable; documents wait in the backlog and are retried with
// backoff", forever, each document finally failing as "timed out" at
// shutdown or dropped from the full backlog. The build should say the
// endpoint is invalid, as it does for a path or a query.
#[test]
fn an_endpoint_without_a_host_or_with_a_port_out_of_range_is_refused() {
    let _serial = common::serial();
    let mut accepted = Vec::new();
    for endpoint in ["http://:4566", "https://:443", "http://127.0.0.1:99999"] {
        let built = HttpExporter::builder()
            .with_region("us-east-1")
            .with_endpoint(endpoint)
            .with_static_credentials("AKIDEXAMPLE", "secret", None)
            .build();
        match built {
            Err(HttpExporterError::InvalidEndpoint(_)) => {}
            Err(other) => panic!("{endpoint}: refused, but not as an invalid endpoint: {other:?}"),
            Ok(exporter) => accepted.push(exporter.url().to_owned()),
        }
    }
    assert!(
        accepted.is_empty(),
        "endpoints with no host or an impossible port were accepted: {accepted:?}"
    );
}

// The user's credentials were refused once (a 403 `AccessDenied`, say the
// IAM policy was being updated), documents fail as `Unauthorized` for
// `with_auth_retry_interval`, as documented; then the next try finds the
// API throttling or down (503) and the documents wait in the backlog. At
// shutdown, what could not be sent fails as `ExportError::Unauthorized` with
// the old 403's text, though the credentials were not refused by any of the
// calls made for these documents (all answered 503): `ExportError::Timeout`
// is "The destination did not answer in time", `Unauthorized` "The
// destination refused our credentials"; `HttpExporter`'s rustdoc lists the
// failures as "`Unauthorized`, `Rejected` (...), `Other` wrapping a
// `BacklogFull`, or `Timeout` at shutdown". The user is sent to fix IAM when
// the API was unavailable. Cause: `HttpExporter::shutdown`
// (src/export/http.rs, `impl Exporter for HttpExporter`) picks the error
// from `self.auth_error`, which only a success (`on_accepted`) clears, not
// the retryable failures since (`on_retryable`).
#[test]
fn documents_the_api_did_not_take_for_a_503_do_not_fail_as_unauthorized() {
    let _serial = common::serial();
    let calls = Arc::new(Mutex::new(0usize));
    let counted = calls.clone();
    let (url, seen) = fake(move |stream| {
        let n = {
            let mut c = counted.lock().unwrap();
            *c += 1;
            *c
        };
        if n == 1 {
            answer(
                stream,
                403,
                r#"{"__type":"AccessDeniedException","message":"not allowed"}"#,
            );
        } else {
            answer(stream, 503, r#"{"__type":"ServiceUnavailable"}"#);
        }
    });
    let mut exporter = at_once(url)
        .with_auth_retry_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let first = exporter.export(common::documents(1));
    assert!(
        matches!(
            first.failures.first().map(|f| &f.error),
            Some(tracing_xray::export::ExportError::Unauthorized(_))
        ),
        "the 403: {:?}",
        common::failure_texts(&first)
    );
    // The block is over: the next document is sent, and answered 503.
    std::thread::sleep(Duration::from_millis(200));
    let second = exporter.export(common::documents(1));
    assert_eq!(
        second.delivered + second.failures.len(),
        0,
        "kept for a retry"
    );
    let last = exporter.shutdown(Duration::from_millis(500));
    let requests = seen.lock().unwrap().len();
    assert!(requests >= 2, "{requests} requests");
    assert_eq!(last.failures.len(), 1, "{:?}", common::failure_texts(&last));
    assert!(
        !matches!(
            last.failures[0].error,
            tracing_xray::export::ExportError::Unauthorized(_)
        ),
        "a document whose every call was answered 503 failed as: {}",
        last.failures[0].error
    );
}

// The user runs `HttpExporter` with a credentials provider (the aws-config
// chain: IMDS, ECS, STS), and calls `flush(2 s)` at the end of each batch
// or invocation. The cached credentials are still valid for four minutes,
// so the exporter asks the provider again ("asked again five minutes before
// they expire"), and that call hangs (the metadata service is briefly
// unreachable). README: "`flush`/`shutdown` deliver what they can within
// their timeout"; `Cache::get`: "If the refresh fails but the cached ones
// have not expired yet, they are used". Instead the refresh is given the
// whole flush (src/export/http.rs `send_batch`:
// `self.credentials.get(self.budget(deadline))`, and
// src/export/http/credentials.rs `Cache::get` waits for the refresh before
// falling back on the cached credentials), so the request is left no time:
// with the API up and valid credentials in hand, every flush delivers
// nothing and returns a timeout, for as long as the provider hangs (up to
// five minutes; without a deadline, every send waits the provider's 5 s).
#[test]
fn a_hanging_refresh_does_not_keep_valid_cached_credentials_from_a_flush() {
    let _serial = common::serial();
    let (url, seen) = fake(|stream| answer(stream, 200, r#"{"UnprocessedTraceSegments":[]}"#));
    let provider = common::FirstThenHangs::new(Duration::from_secs(4 * 60));
    let calls = provider.calls.clone();
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(provider)
        .with_batch_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    // The first flush: credentials fetched at once, the document delivered.
    let mut docs = common::documents(2);
    let second = docs.pop().unwrap();
    let held = exporter.export(docs);
    assert_eq!(
        held.delivered + held.failures.len(),
        0,
        "held for the batch delay"
    );
    let first = exporter.flush(Duration::from_secs(2));
    assert_eq!(
        first.delivered,
        1,
        "control: {:?}",
        common::failure_texts(&first)
    );

    // The second: the provider is asked again, and hangs.
    let held = exporter.export(vec![second]);
    assert_eq!(
        held.delivered + held.failures.len(),
        0,
        "held for the batch delay"
    );
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let outcome = exporter.flush(timeout);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "flush({timeout:?}) took {took:?}"
    );
    assert!(*calls.lock().unwrap() >= 2, "the provider was asked again");
    assert_eq!(
        outcome.delivered,
        1,
        "flush({timeout:?}) with credentials valid for four more minutes and the API up \
         delivered nothing ({} requests made in all; failures {:?})",
        seen.lock().unwrap().len(),
        common::failure_texts(&outcome)
    );
}

/// A provider that has no credentials (no source configured).
#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded_no_source(),
        ))
    }
}

// A provider with no credentials fails the documents without any call: the
// log says so, rather than that the API refused the credentials (which
// sends the user to IAM policies for a configuration problem).
#[test]
fn a_provider_without_credentials_is_not_reported_as_an_api_refusal() {
    let _serial = common::serial();
    let (url, seen) = fake(|stream| answer(stream, 200, r#"{"UnprocessedTraceSegments":[]}"#));
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(NoCredentials)
        .with_batch_delay(Duration::ZERO)
        .build()
        .unwrap();
    let docs = common::documents(1);
    let written = common::Logs::default();
    let w = written.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let outcome = tracing::subscriber::with_default(subscriber, || exporter.export(docs));
    assert_eq!(
        outcome.failures.len(),
        1,
        "{:?}",
        common::failure_texts(&outcome)
    );
    assert!(seen.lock().unwrap().is_empty(), "no call was made");
    let log = written.text();
    assert!(log.contains("no AWS credentials"), "{log}");
    assert!(!log.contains("refused"), "{log}");
}

/// A provider giving new keys at every call (rotated credentials).
#[derive(Debug, Default)]
struct Rotating(std::sync::atomic::AtomicUsize);

impl aws_credential_types::provider::ProvideCredentials for Rotating {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
            aws_credential_types::Credentials::new(
                format!("AKID{n}"),
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "rotating",
            ),
        ))
    }
}

// The credentials in use are refused (403) and the provider's fresh ones
// tried at once ("asked again ... when the API refuses them"); that try
// finds the API unavailable (503), and the next one, after the backoff, is
// refused again (the fresh keys not valid yet everywhere). The provider is
// asked again then too: one refresh per run of refusals, not one until the
// next success, so the document is delivered once the API takes the newest
// keys, instead of failing as unauthorized.
#[test]
fn a_refusal_after_an_unavailable_api_asks_the_provider_again() {
    let _serial = common::serial();
    let calls = Arc::new(Mutex::new(0usize));
    let counted = calls.clone();
    let (url, _seen) = fake(move |stream| {
        let n = {
            let mut c = counted.lock().unwrap();
            *c += 1;
            *c
        };
        match n {
            1 | 3 => answer(
                stream,
                403,
                r#"{"__type":"UnrecognizedClientException","message":"invalid token"}"#,
            ),
            2 => answer(stream, 503, r#"{"__type":"ServiceUnavailable"}"#),
            _ => answer(stream, 200, r#"{"UnprocessedTraceSegments":[]}"#),
        }
    });
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(Rotating::default())
        .with_batch_delay(Duration::from_secs(60))
        .with_retry_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap();
    let held = exporter.export(common::documents(1));
    assert_eq!(held.delivered + held.failures.len(), 0, "held");
    let outcome = exporter.flush(Duration::from_secs(3));
    assert_eq!(
        (outcome.delivered, common::failure_texts(&outcome)),
        (1, vec![]),
        "after 403, 503, 403 and fresh keys each time, then 200 ({} calls)",
        calls.lock().unwrap()
    );
}

// Found by the review of the exporters' error codes (49f82e6).
//
// An endpoint's 400 body carries both members restJson1 allows for its code,
// with different values (`{"code":"ThrottlingException","__type":"...#
// ValidationException"}`). The AWS SDKs read `code` first (smithy-rs's
// generated `parse_error_body`: `code.or(typ)`, with its unit test
// `code_takes_priority`; aws-sdk-js-v3's `loadRestJsonErrorCode`). Before the
// fix, `ErrorBody::parse` read `__type` first: the permanent
// ValidationException, and the batch was dropped instead of retried.
#[test]
fn error_body_code_wins_over_type_as_the_aws_sdks_read_it() {
    let _serial = common::serial();
    let (url, seen) = fake(|stream| {
        let body = r#"{"code":"ThrottlingException","__type":"com.amazon.coral.validate#ValidationException","message":"Rate exceeded"}"#;
        let _ = write!(
            &*stream,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let mut exporter = at_once(url).build().unwrap();
    let outcome = exporter.export(common::documents(2));
    assert_eq!(seen.lock().unwrap().len(), 1, "one request");
    assert!(
        outcome.failures.is_empty() && outcome.delivered == 0,
        "a ThrottlingException (the body's `code`, which the AWS SDKs read first) was taken for \
         the `__type`'s permanent error and the batch dropped: {:?}",
        common::failure_texts(&outcome)
    );
}

// A 400 whose code is only in its body, and the connection breaks while the
// body is read. The AWS SDKs retry an answer they could not read
// (aws-smithy-runtime's `TransientErrorClassifier`), as this exporter does a
// 2xx cut off. Before the fix, the answer was classified as if its body were
// empty: a 400 without a code, rejected for good, the batch dropped.
#[test]
fn a_4xx_whose_body_is_cut_off_is_retried_not_rejected() {
    let _serial = common::serial();
    let (url, seen) = fake(|stream| {
        let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        // Announces more than it sends, then the connection is gone.
        let _ = write!(
            &*stream,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len() + 100,
            &body[..20]
        );
        let _ = (&*stream).flush();
        let _ = stream.shutdown(Shutdown::Both);
    });
    let mut exporter = at_once(url).build().unwrap();
    let outcome = exporter.export(common::documents(2));
    assert_eq!(seen.lock().unwrap().len(), 1, "one request");
    assert!(
        outcome.failures.is_empty() && outcome.delivered == 0,
        "a 400 whose body broke off (a network failure, the code unread) was taken for a \
         permanent refusal and the batch dropped: {:?}",
        common::failure_texts(&outcome)
    );
}
