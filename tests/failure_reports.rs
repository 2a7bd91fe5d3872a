//! How failures are reported, and what they cost: `HttpExporter`'s
//! credentials (an early refresh that hangs past the credentials' expiry, a
//! refusal while the provider is not asked, a provider without credentials
//! or timing out: each named for what it is, each reported), centralized
//! sampling's reports on standard error (under a scoped subscriber only;
//! a broken standard error never stops the sampler), and a custom
//! exporter's own `ExportError::Timeout` (a failure, not a flush that ran
//! out of time). Written as a review of the fixes in a773d3f..2b8307d; each
//! test failed on that code.
#![cfg(feature = "http")]

mod common;
mod sampling_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, HttpExporter};

/// A request the fake API read: its `Authorization` header and when it
/// arrived.
#[derive(Debug, Clone)]
struct Seen {
    authorization: String,
    arrived: SystemTime,
}

/// Reads one request (head and body); `None` at the end of the connection.
fn read_request(reader: &mut BufReader<&TcpStream>) -> Option<Seen> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    if request_line.is_empty() {
        return None;
    }
    let mut len = 0;
    let mut authorization = String::new();
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
            if k.eq_ignore_ascii_case("authorization") {
                authorization = v.trim().to_owned();
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        authorization,
        arrived: SystemTime::now(),
    })
}

/// A fake X-Ray API on 127.0.0.1; `answer` gives each request's status and
/// body. Returns its base URL and the requests it read.
fn fake_api(
    answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (seen, answer) = (seen2.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                while let Some(request) = read_request(&mut reader) {
                    seen.lock().unwrap().push(request.clone());
                    let (status, body) = answer(&request);
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

// What the user does: sends with `HttpExporter` and a credentials provider
// (the aws-config chain: IMDS, ECS, STS session credentials), and flushes
// at the end of each batch. The cached credentials are about to expire (half
// a second left) when the provider, asked again, hangs (the metadata
// service is briefly unreachable).
//
// What they should get: `with_credentials_provider`'s rustdoc: "A provider
// that fails or hangs while the credentials it gave are still valid costs a
// send at most a second (...); meanwhile those credentials are used"
// (`Cache::get`: "If the refresh fails but the cached ones have not expired
// yet, they are used"). Credentials that expired while the provider was
// waited for are not "still valid": the send should be treated as having
// no credentials (a transient failure, retried with backoff, the documents
// kept in the backlog), never be signed with expired ones.
//
// What happened before the fix: `Cache::get` (src/export/http/credentials.rs) decides
// "still valid" against a `now` read BEFORE the early refresh, waits up to a
// second for the hanging provider, then returns the cached credentials
// without looking at their expiry again: the request goes out signed with
// credentials that expired half a second earlier. X-Ray answers 403
// ExpiredTokenException, so the batch fails as `Unauthorized` (documents
// lost, not retried), "the X-Ray API refused our credentials ... the IAM
// permission needed is xray:PutTraceSegments" is logged (sending the user to
// IAM), and every document for the next `auth_retry_interval` (60 s) fails
// unsent, even once the provider answers again.
#[test]
fn credentials_that_expire_during_a_hanging_early_refresh_are_never_sent() {
    let _serial = common::serial();
    let provider = common::FirstThenHangs::new(Duration::from_secs(3));
    let (calls, expiry) = (provider.calls.clone(), provider.expiry.clone());
    let expiry_at_server = expiry.clone();
    // As X-Ray: a request signed with expired session credentials is
    // refused.
    let (url, seen) = fake_api(move |request| {
        let expired = expiry_at_server
            .lock()
            .unwrap()
            .is_some_and(|e| request.arrived > e);
        if request.authorization.contains("AKIDFIRST") && expired {
            (
                403,
                r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#.into(),
            )
        } else {
            (200, r#"{"UnprocessedTraceSegments":[]}"#.into())
        }
    });
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(provider)
        .with_batch_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut docs = common::documents(2);
    let second = docs.pop().unwrap();
    // Control: the first flush fetches the credentials and delivers.
    assert!(exporter.export(docs).failures.is_empty());
    let first = exporter.flush(Duration::from_secs(2));
    assert_eq!(
        first.delivered,
        1,
        "control: {:?}",
        common::failure_texts(&first)
    );
    let expires = expiry.lock().unwrap().expect("the provider was asked");

    // Half a second before they expire, the next batch: the provider is
    // asked again (inside the five minutes before expiry) and hangs.
    let before = expires - Duration::from_millis(500);
    if let Ok(wait) = before.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    assert!(
        SystemTime::now() + Duration::from_millis(300) < expires,
        "control: the machine was too slow to reach the second batch before the expiry"
    );
    assert!(exporter.export(vec![second]).failures.is_empty());
    let outcome = exporter.flush(Duration::from_secs(3));
    assert!(*calls.lock().unwrap() >= 2, "the provider was asked again");
    let margin = Duration::from_millis(250);
    let late: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.authorization.contains("AKIDFIRST") && r.arrived > expires + margin)
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "{} request(s) signed with credentials that had expired (arrived {:?} after the \
         expiry); the document failed with {:?}",
        late.len(),
        late.first()
            .and_then(|r| r.arrived.duration_since(expires).ok()),
        common::failure_texts(&outcome)
    );
}

/// The system clock, telling each time the sampler's own polling thread
/// reads it (once at the start of every poll).
#[derive(Clone)]
struct PollWatch(Arc<Mutex<std::sync::mpsc::Sender<()>>>);

impl tracing_xray::sampling::Clock for PollWatch {
    fn now(&self) -> SystemTime {
        if std::thread::current().name() == Some("tracing-xray-sampling") {
            let _ = self.0.lock().unwrap().send(());
        }
        SystemTime::now()
    }
}

#[test]
#[ignore = "run in a child process by its test"]
fn scoped_subscriber_child() {
    use tracing_xray::sampling::{CentralizedSampler, LocalRules};
    // The application's subscriber, for its main thread only (no global
    // one is ever set).
    let _default = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .set_default();
    tracing::info!("scoped subscriber installed");
    // A port nothing listens on: the connection is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (tx, polls) = std::sync::mpsc::channel();
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(closed)
        .with_fallback(LocalRules::default())
        .with_clock(PollWatch(Arc::new(Mutex::new(tx))))
        .start()
        .expect("thread spawned");
    // The poller's second look at the clock comes after its first poll
    // (the rules fetch at start) has returned.
    for _ in 0..2 {
        polls
            .recv_timeout(Duration::from_secs(10))
            .expect("the sampler polls");
    }
    let layer = tracing_xray::builder()
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(tracing_xray::export::NoopExporter)
        .with_sampler(sampler)
        .build();
    drop(layer);
}

// What the user does: the README's centralized sampling set-up, with the
// daemon's TCP proxy unreachable (the daemon not started, a wrong `tcp:`
// port), in an application that never sets a GLOBAL subscriber: its
// subscriber is scoped (`registry().with(fmt::layer()).set_default()`, as
// `tracing_xray::tower`'s docs write it; or any code in the process ran
// under `tracing::subscriber::with_default` once, a test harness, a
// library).
//
// What they should get: README, "Centralized sampling": "A failed fetch is
// a warning (...). One met before the application has set a global
// subscriber (the first fetch runs at once) is also written on standard
// error." (`without_subscriber_on_stderr`: "Also writes a report on
// standard error while no global subscriber is set".)
//
// What happened before the fix: nothing anywhere. The warning is emitted on the
// sampler's own thread, whose default is the (unset) global dispatcher, so
// it reaches no subscriber; and the standard-error copy is skipped because
// `tracing::dispatcher::has_been_set()` (src/sampling/centralized.rs,
// `without_subscriber_on_stderr`) is true: it is tracing-core's
// `#[doc(hidden)]` flag "a dispatcher has EVER been set", which any scoped
// `set_default` / `with_default` on any thread sets for good (tracing-xray
// itself sets a scoped default for every HttpExporter request and in
// `layer::muted`). Every trace is silently sampled by the fallback rules.
#[test]
fn a_failed_fetch_without_a_global_subscriber_is_written_on_stderr() {
    let (ok, text) = common::run_child("scoped_subscriber_child", &[]);
    assert!(ok, "the child failed:\n{text}");
    assert!(
        text.contains("scoped subscriber installed"),
        "control: the scoped fmt layer writes on standard error:\n{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("sampling rules"),
        "the sampling proxy could not be reached, no global subscriber was ever set, and \
         nothing says so (neither a subscriber nor standard error):\n{text}"
    );
}

#[test]
#[ignore = "run in a child process by its test"]
fn sampler_recovers_child() {
    use sampling_common::{ManualClock, ProxyServer, Reply};
    use tracing_xray::sampling::{CentralizedSampler, Sampler, SamplingRequest};
    const T0: u64 = 1_700_000_000;
    // Panics shown on standard output (standard error may be broken).
    std::panic::set_hook(Box::new(|info| {
        println!(
            "panic on thread {:?}: {info}",
            std::thread::current().name()
        );
    }));
    // The daemon is not ready yet: its proxy answers 500.
    let proxy = ProxyServer::start();
    proxy.reply("/GetSamplingRules", Reply::Status(500, "{}".into()));
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(clock.clone())
        .with_request_timeout(Duration::from_secs(5))
        .start()
        .expect("thread spawned");
    proxy
        .requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the first fetch");
    std::thread::sleep(Duration::from_millis(300));
    // The daemon is up: the console's rule, and five minutes later.
    let rule = serde_json::json!({
        "RuleName": "console-rule", "Priority": 1, "ReservoirSize": 0,
        "FixedRate": 1.0, "Host": "*", "HTTPMethod": "*", "URLPath": "*",
        "ServiceName": "*", "ServiceType": "*", "ResourceARN": "*",
        "Version": 1, "Attributes": {}
    });
    proxy.reply_json(
        "/GetSamplingRules",
        &serde_json::json!({"NextToken": null, "SamplingRuleRecords": [{"SamplingRule": rule}]}),
    );
    clock.set_epoch_seconds(T0 + 306);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let decision = sampler.sample(&SamplingRequest::new());
        if decision.rule_name() == Some("console-rule") {
            println!("console rules in use");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the console's rules never arrived: the sampler stopped polling"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `sampler_recovers_child` with standard error either read, or a
/// pipe whose reader is gone; returns whether it passed and its standard
/// output (and error, when read).
fn run_recovers_child(stderr_closed: bool) -> (bool, String) {
    let mut cmd = common::child_command("sampler_recovers_child");
    if stderr_closed {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        cmd.stderr(writer);
    }
    let process = cmd.spawn().unwrap();
    drop(cmd);
    common::child_outcome(process)
}

// What the user does: the README's centralized sampling set-up
// (`CentralizedSampler::builder().start()?`) in a service whose daemon
// sidecar starts after it (the first fetch fails), run with its standard
// error on a pipe whose reader has gone (a log shipper that exited or
// restarted, `app 2>&1 | logger` after `logger` died: writes fail with
// EPIPE; Rust ignores SIGPIPE).
//
// What they should get: README, "Limits": "Never panics"; "Centralized
// sampling": "Rules are fetched at start and every 5 minutes": once the
// daemon is up, the console's rules are used.
//
// What happened before the fix: the new standard-error copy of the failure report
// (src/sampling/centralized.rs `without_subscriber_on_stderr`) uses
// `eprintln!`, which PANICS when the write fails ("failed printing to
// stderr: Broken pipe"). It runs on the sampler's polling thread, which
// dies: rules are never fetched again, and every trace is sampled by the
// fallback rules for the life of the process, silently (the panic message
// itself goes to the broken stderr). The control run (standard error read)
// shows the same program getting the console's rules.
#[test]
fn a_broken_stderr_does_not_kill_the_sampler_thread() {
    let (ok, text) = run_recovers_child(false);
    assert!(ok, "control (standard error read) failed:\n{text}");
    let (ok, text) = run_recovers_child(true);
    assert!(
        ok,
        "with standard error on a broken pipe, the sampler never got the console's rules \
         once the daemon was up:\n{text}"
    );
}

/// A custom exporter that sends each document itself, in `flush`, with a
/// per-request timeout of its own; the destination does not answer that
/// document, which it reports failed with `ExportError::Timeout` ("The
/// destination did not answer in time") at once.
#[derive(Default)]
struct PerRequestTimeout(Vec<Document>);

impl Exporter for PerRequestTimeout {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.0.extend(batch);
        ExportOutcome::default()
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        for doc in self.0.drain(..) {
            // The collector's 50 ms request timeout passed for this one.
            outcome.fail(
                doc,
                tracing_xray::export::ExportError::Timeout(Duration::from_millis(50)),
            );
        }
        outcome
    }
}

// What the user does: writes their own exporter (README, "Exporters": "your
// own | implement `export::Exporter`"), which sends with a per-request
// timeout and reports a document the destination did not answer as
// `ExportError::Timeout` (its rustdoc: "The destination did not answer in
// time"), then calls `xray.flush(Duration::from_secs(10))`.
//
// What they should get: README, "Flushing": "It returns
// `Err(FlushError::Timeout)` when time ran out"; `FlushError::Timeout`
// reads "tracing-xray flush did not finish within 10s". A document that
// failed (of any other error, `Io(TimedOut)` included) makes the flush
// `Ok`: it was dealt with, and counted in `documents_failed`.
//
// What happened before the fix: since 470a5d8 the worker (src/worker.rs
// `Control::Flush`, `self.timed_out == timed_out`; `Worker::account` counts
// every `ExportError::Timeout`) takes any `Timeout` failure reported by
// `flush`/`shutdown` as "the flush did not finish": this flush returns
// `Err(Timeout(10s))` within milliseconds, nothing held, nothing going on
// in the background (as `XrayHandle::flush`'s docs say of a timeout), so
// a caller that retries, or waits, on a timeout does so for nothing. The
// variant's meaning changed (the `Exporter::flush` rustdoc now reads "given
// up on for lack of time") while `ExportError::Timeout` still documents
// the destination's own timeout. Telling "time ran out" apart from "the
// destination timed out" (the deadline reached, or a marker of its own for
// HttpExporter's give-up) would pass.
#[test]
fn a_destination_timeout_reported_by_a_custom_exporter_is_not_a_flush_timeout() {
    let xray = common::run_sampled(PerRequestTimeout::default(), || {
        tracing::info_span!("request").in_scope(|| {});
    });
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let result = xray.flush(timeout);
    let took = started.elapsed();
    let stats = xray.stats();
    assert_eq!(
        (stats.documents_exported, stats.documents_failed),
        (0, 1),
        "control: the document failed, and is counted: {stats:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "control: flush took {took:?}"
    );
    assert_eq!(
        result,
        Ok(()),
        "flush({timeout:?}) returned after {took:?}, with nothing left to do, and said: {}",
        result
            .as_ref()
            .map_or_else(|e| e.to_string(), |()| String::new())
    );
}

/// What a `fmt` subscriber wrote.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Written {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Runs `f` under a `fmt` subscriber writing here.
    fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        let w = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }
}

/// A provider with no credentials at its first call (the chain finds no
/// source yet: a web identity token file not mounted yet), and static
/// credentials from then on.
#[derive(Debug)]
struct NoneThenSome(Arc<Mutex<usize>>);

impl aws_credential_types::provider::ProvideCredentials for NoneThenSome {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::{error::CredentialsError, future};
        let n = {
            let mut c = self.0.lock().unwrap();
            *c += 1;
            *c
        };
        future::ProvideCredentials::ready(if n == 1 {
            Err(CredentialsError::not_loaded_no_source())
        } else {
            Ok(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "none-then-some",
            ))
        })
    }
}

// What the user does: `HttpExporter` with a credentials provider (the
// aws-config chain) in a pod or task whose credentials are not there yet
// when the first batch goes (the web identity token not mounted yet), and
// whose role, once they are, lacks `xray:PutTraceSegments`: the API answers
// every call 403 AccessDenied.
//
// What they should get: `HttpExporter`'s rustdoc and the README: "Refused
// credentials are reported once and counted": the 403 reported once, with
// "the X-Ray API refused our credentials ... the IAM permission needed is
// xray:PutTraceSegments", the one failure that will not pass by itself (as
// 7098ddd does for sampling: "a failure of another kind than the one
// reported ... so a 403 for the role after the daemon was not ready at
// start is no longer silent").
//
// What happened before the fix: the refusal is never reported. The provider's
// first failure took the one report (1fbc0fa's "no AWS credentials to sign
// X-Ray API calls with", src/export/http.rs `on_unauthorized`), and
// `auth_reported` is reset only by a success (`on_accepted`): every later
// 403 is only counted. The only line the user ever sees says the provider
// had no credentials, which fixed itself; documents fail for good.
#[test]
fn a_refusal_after_a_provider_without_credentials_is_reported() {
    let _serial = common::serial();
    let (url, seen) = fake_api(|_| {
        (
            403,
            r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform: xray:PutTraceSegments"}"#.into(),
        )
    });
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(NoneThenSome(Arc::default()))
        .with_batch_delay(Duration::ZERO)
        .with_auth_retry_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut docs = common::documents(2);
    let second = docs.pop().unwrap();
    let written = Written::default();
    let first = written.during(|| exporter.export(docs));
    assert_eq!(
        first.failures.len(),
        1,
        "{:?}",
        common::failure_texts(&first)
    );
    assert!(
        written.text().contains("no AWS credentials"),
        "control: {}",
        written.text()
    );
    // The block is over; the provider has credentials now, and the API
    // refuses them.
    std::thread::sleep(Duration::from_millis(200));
    let later = written.during(|| exporter.export(vec![second]));
    assert_eq!(
        later.failures.len(),
        1,
        "{:?}",
        common::failure_texts(&later)
    );
    assert!(!seen.lock().unwrap().is_empty(), "control: a call was made");
    let log = written.text();
    assert!(
        log.contains("refused our credentials"),
        "the API refused the credentials (403 AccessDenied) and nothing says so; all the \
         log holds:\n{log}"
    );
}

/// A provider that fails in a way that may pass (its endpoint times out):
/// a transient failure, never any credentials.
#[derive(Debug)]
struct TimesOut;

impl aws_credential_types::provider::ProvideCredentials for TimesOut {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::{error::CredentialsError, future};
        future::ProvideCredentials::ready(Err(CredentialsError::provider_timed_out(
            Duration::from_secs(1),
        )))
    }
}

// What the user does: `HttpExporter` with a credentials provider whose
// source is unreachable for a while (IMDS or the ECS credentials endpoint
// timing out), the X-Ray API itself fine.
//
// What they should get: a log that names the failing part. 1fbc0fa made a
// provider with no credentials "logged as such, not as the API refusing
// them (no call is made)", so that the user is not sent looking at the
// wrong thing.
//
// What happened before the fix: a transient provider failure goes through
// `on_retryable` (src/export/http.rs `send_batch`,
// `CredentialsFailure::Transient`), whose one warning says "the X-Ray API
// is unavailable; documents wait in the backlog and are retried with
// backoff", though no call was made and the API was never asked: the user
// looks at the network path to X-Ray, not at the credentials source.
#[test]
fn a_provider_that_times_out_is_not_reported_as_the_api_unavailable() {
    let _serial = common::serial();
    let (url, seen) = fake_api(|_| (200, r#"{"UnprocessedTraceSegments":[]}"#.into()));
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(TimesOut)
        .with_batch_delay(Duration::ZERO)
        .build()
        .unwrap();
    let written = Written::default();
    let outcome = written.during(|| exporter.export(common::documents(1)));
    assert!(
        outcome.failures.is_empty(),
        "control: kept for a retry: {:?}",
        common::failure_texts(&outcome)
    );
    assert!(seen.lock().unwrap().is_empty(), "control: no call was made");
    let log = written.text();
    assert!(!log.is_empty(), "control: something is logged");
    assert!(
        !log.contains("X-Ray API is unavailable"),
        "no call was made (the credentials provider timed out), and the log blames the API:\n{log}"
    );
}

// What the user does: `HttpExporter` with a credentials provider; the
// cached credentials are valid four more minutes, the provider hangs (the
// metadata service unreachable), and the API refuses a call (403: the
// session was revoked, or the role's policy changed).
//
// What they should get: `with_credentials_provider`'s rustdoc (470a5d8):
// "A provider that fails or hangs while the credentials it gave are still
// valid costs a send at most a second (half its time, if less), and is
// asked again 30 seconds later; meanwhile those credentials are used."
//
// What happened before the fix: after the 403, `send_batch` calls
// `Cache::force_refresh(self.budget(deadline))` (src/export/http.rs,
// `Answer::Unauthorized`; src/export/http/credentials.rs `force_refresh`),
// which ignores `early_refresh_after` and the one-second cap: inside the
// 30 s the provider is asked again and waited for the full 5 s
// (`PROVIDER_TIMEOUT`), blocking the worker thread (flushes, the queue) for
// that long, at every `auth_retry_interval`.
#[test]
fn a_refusal_inside_the_no_ask_window_does_not_wait_for_the_hanging_provider() {
    let _serial = common::serial();
    let answered = Arc::new(Mutex::new(0usize));
    let counted = answered.clone();
    let (url, _seen) = fake_api(move |_| {
        let n = {
            let mut c = counted.lock().unwrap();
            *c += 1;
            *c
        };
        if n <= 2 {
            (200, r#"{"UnprocessedTraceSegments":[]}"#.into())
        } else {
            (
                403,
                r#"{"__type":"AccessDeniedException","message":"session revoked"}"#.into(),
            )
        }
    });
    let provider = common::FirstThenHangs::new(Duration::from_secs(4 * 60));
    let calls = provider.calls.clone();
    let mut exporter = HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials_provider(provider)
        .with_batch_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut docs = common::documents(3);
    let third = docs.pop().unwrap();
    let second = docs.pop().unwrap();
    // Control: fetched, delivered.
    assert!(exporter.export(docs).failures.is_empty());
    assert_eq!(exporter.flush(Duration::from_secs(2)).delivered, 1);
    // Control: the early refresh hangs (a second at most), the cached
    // credentials are used, delivered; the provider is not to be asked for
    // 30 s.
    assert!(exporter.export(vec![second]).failures.is_empty());
    let started = Instant::now();
    assert_eq!(exporter.flush(Duration::from_secs(10)).delivered, 1);
    assert!(started.elapsed() < Duration::from_secs(3), "control");
    let asked = *calls.lock().unwrap();
    assert_eq!(asked, 2, "control: asked at start, then once early");

    // Inside those 30 s, the API refuses a call.
    assert!(exporter.export(vec![third]).failures.is_empty());
    let started = Instant::now();
    let outcome = exporter.flush(Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(
        outcome.failures.len(),
        1,
        "control: refused: {:?}",
        common::failure_texts(&outcome)
    );
    assert!(
        took < Duration::from_millis(2500),
        "the send refused with 403 took {took:?}: the hanging provider was asked again \
         ({} calls in all) inside the 30 s it was not to be asked, and waited for past the \
         second a send may cost",
        calls.lock().unwrap()
    );
}

#[cfg(feature = "http")]
mod http_exporter {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    // ---------------------------------------------------------------------------
    // HttpExporter: a refusal inside the 30 s "no-ask" window is not retried
    // with the provider's fresh credentials; the documents are lost.
    // ---------------------------------------------------------------------------

    /// A provider (IMDS, ECS, STS): its first call gives credentials `OLD` that
    /// expire in four minutes (inside the five minutes before expiry in which
    /// the exporter asks again), its second fails at once (a transient error: the
    /// metadata endpoint briefly unreachable), and its later calls give `NEW`
    /// credentials valid for an hour.
    #[derive(Debug)]
    struct HiccupOnce {
        calls: Arc<Mutex<usize>>,
    }

    impl aws_credential_types::provider::ProvideCredentials for HiccupOnce {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            use aws_credential_types::provider::{error::CredentialsError, future};
            use std::time::SystemTime;
            let n = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            let credentials = |id: &str, lifetime: Duration| {
                aws_credential_types::Credentials::new(
                    id,
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    Some("TOKEN".into()),
                    Some(SystemTime::now() + lifetime),
                    "hiccup-once",
                )
            };
            match n {
                1 => future::ProvideCredentials::ready(Ok(credentials(
                    "AKIDOLD",
                    Duration::from_secs(4 * 60),
                ))),
                2 => future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                    "connection reset by the metadata endpoint",
                ))),
                _ => future::ProvideCredentials::ready(Ok(credentials(
                    "AKIDNEW",
                    Duration::from_secs(3600),
                ))),
            }
        }
    }

    /// Reads one request; returns its `Authorization` header (`None` at the end
    /// of the connection).
    fn read_authorization(stream: &TcpStream) -> Option<String> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.is_empty() {
            return None;
        }
        let (mut len, mut auth) = (0, String::new());
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
                } else if k.eq_ignore_ascii_case("authorization") {
                    auth = v.trim().to_owned();
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        Some(auth)
    }

    fn answer(mut stream: &TcpStream, status: u16, body: &str) {
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
    }

    // What the user does: `HttpExporter` with a credentials provider (the
    // aws-config chain on EC2 or ECS). Four minutes before its credentials
    // expire the exporter asks the provider again, and that call fails once
    // (the metadata endpoint reset the connection; since 470a5d8 an early
    // refresh also fails when the provider takes more than a second). Moments
    // later the API refuses the cached credentials (403: the role's sessions
    // were revoked, or the keys rotated out), and the provider, asked now, has
    // fresh ones.
    //
    // What they should get: `HttpExporterBuilder::with_credentials_provider`:
    // credentials are "asked again five minutes before they expire and when the
    // API refuses them"; README: "Refused credentials are reported once and
    // counted, not retried in a storm" (one refresh-and-retry, as before
    // 470a5d8).
    //
    // What happens instead: `Cache::force_refresh`
    // (src/export/http/credentials.rs) refuses to ask the provider for 30 s
    // after the failed early refresh (`early_refresh_after`), so the 403 goes
    // to `on_unauthorized` (src/export/http.rs `send_batch`): the document
    // fails Unauthorized, and every document for the next
    // `with_auth_retry_interval` (60 s by default) fails without being sent,
    // although the provider would have given working credentials at once.
    #[test]
    fn a_refusal_after_a_failed_early_refresh_still_asks_the_provider() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    while let Some(auth) = read_authorization(&stream) {
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push(auth.clone());
                            s.len()
                        };
                        // `OLD` is accepted once, then refused (revoked).
                        if auth.contains("Credential=AKIDNEW/") || n == 1 {
                            answer(&stream, 200, r#"{"UnprocessedTraceSegments":[]}"#);
                        } else {
                            answer(
                                &stream,
                                403,
                                r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#,
                            );
                        }
                    }
                });
            }
        });
        let calls = Arc::new(Mutex::new(0));
        let mut exporter = tracing_xray::export::HttpExporter::builder()
            .with_region("us-east-1")
            .with_endpoint(format!("http://{addr}"))
            .with_credentials_provider(HiccupOnce {
                calls: calls.clone(),
            })
            .with_batch_delay(Duration::ZERO)
            .build()
            .unwrap();
        use tracing_xray::export::Exporter as _;
        let mut docs = common::documents(2);
        let second = docs.pop().unwrap();
        let first = exporter.export(docs);
        assert_eq!(
            first.delivered, 1,
            "control: the first document is delivered"
        );

        let outcome = exporter.export(vec![second]);
        let failures: Vec<String> = outcome
            .failures
            .iter()
            .map(|f| f.error.to_string())
            .collect();
        let calls = *calls.lock().unwrap();
        let requests = requests.lock().unwrap().clone();
        exporter.shutdown(Duration::from_millis(200));
        assert_eq!(
            outcome.delivered, 1,
            "the API refused the cached credentials and the provider was not asked again \
             ({calls} provider calls in all; it would have given fresh ones): the document \
             failed {failures:?}, and so will every document for 60 s; requests: {requests:?}"
        );
    }
}
