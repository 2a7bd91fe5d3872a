//! [`HttpExporter`]: straight to the X-Ray API (`PutTraceSegments`) over
//! HTTPS, without a daemon.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::{Document, ExportError, ExportOutcome, Exporter};

mod api;
mod backlog;
mod credentials;

use api::Answer;
use backlog::Backlog;
use credentials::{Cache, CredentialsFailure, Source};

/// The most documents one `PutTraceSegments` call carries (the X-Ray
/// daemon's batch size).
///
/// ```
/// assert_eq!(tracing_xray::export::MAX_BATCH_DOCUMENTS, 50);
/// ```
pub const MAX_BATCH_DOCUMENTS: usize = 50;
/// Default of [`HttpExporterBuilder::with_batch_delay`].
const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(1);
/// Default of [`HttpExporterBuilder::with_backlog_capacity`].
const DEFAULT_BACKLOG_CAPACITY: usize = 10_000;
/// Default of [`HttpExporterBuilder::with_backlog_max_bytes`]: 32 MiB. Documents
/// are typically 1 to 3 KB, so the default 10,000 of them fit (the count
/// bound is the one met first), while 10,000 documents of the API's maximum
/// of 64 KB would hold about 640 MB of the application's memory.
const DEFAULT_BACKLOG_MAX_BYTES: usize = 32 << 20;
/// Default of [`HttpExporterBuilder::with_connect_timeout`].
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`HttpExporterBuilder::with_read_timeout`].
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first delay of [`HttpExporterBuilder::with_retry_backoff`].
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// Default longest delay of [`HttpExporterBuilder::with_retry_backoff`].
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default of [`HttpExporterBuilder::with_auth_retry_interval`].
const DEFAULT_AUTH_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// How often a document listed in `UnprocessedTraceSegments` with a
/// retryable error code is sent before it counts as failed.
const MAX_UNPROCESSED_ATTEMPTS: u8 = 3;

/// Retryable failures (the API unavailable or throttling, the credentials
/// provider failing) are logged at most this often, by cause.
const RETRY_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// How many calls one `export` or `poll` makes at most before it gives the
/// worker back (it asks to be polled again at once), so that flush and
/// shutdown requests are never stuck behind a long backlog.
const MAX_CALLS_PER_TURN: usize = 8;
/// The API's per-document limit (64 KB, taken as KiB), for documents an
/// exporter is handed by other code than the worker: the worker's own stay
/// under the stricter [`crate::export::MAX_DOCUMENT_BYTES`], which leaves
/// room for the daemon's datagram header.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The least [`HttpExporterBuilder::with_backlog_max_bytes`]: one document of the
/// largest size the exporter takes, so that any document fits on its own.
const MIN_BACKLOG_MAX_BYTES: usize = MAX_DOCUMENT_BYTES;

/// Sends documents straight to the AWS X-Ray API (`PutTraceSegments`) over
/// HTTPS, signed with SigV4: for hosts without an X-Ray daemon (or CloudWatch
/// agent, or collector).
///
/// Documents are sent in batches of up to 50 (as the daemon does), when a
/// batch is full or [`with_batch_delay`](HttpExporterBuilder::with_batch_delay) after
/// its first document arrived. Throttling, server errors and network errors
/// are retried with exponential backoff and jitter while the documents wait in
/// a backlog bounded both in documents
/// ([`with_backlog_capacity`](HttpExporterBuilder::with_backlog_capacity), default
/// 10,000) and in bytes
/// ([`with_backlog_max_bytes`](HttpExporterBuilder::with_backlog_max_bytes), default
/// 32 MiB), so that an outage of the API holds no more of the application's
/// memory than that: past either bound the oldest documents are dropped and
/// counted ([`HttpStats::backlog_dropped`]).
/// Refused credentials are reported once and counted, not retried in a storm.
///
/// All of this happens on the layer's worker thread, never on an application
/// thread. [`XrayHandle::flush`](crate::XrayHandle::flush) and
/// [`shutdown`](crate::XrayHandle::shutdown) send what they can within their
/// timeout, ignoring the batch delay (a running backoff is waited out if it
/// ends in time, else cut short for one more try); what `flush` could not
/// send stays queued (and `flush` returns
/// [`FlushError::Timeout`](crate::FlushError::Timeout)), what `shutdown`
/// could not send is counted as failed.
///
/// Failures show in [`crate::Stats::documents_failed`] with their
/// [`ExportError`]: `Unauthorized`, `Rejected` (by the API, or listed in
/// `UnprocessedTraceSegments` with a permanent error code, or standing in for
/// an entry there that named no document: see [`HttpStats::unprocessed`]),
/// `Other` wrapping a [`BacklogFull`], or `OutOfTime` at
/// shutdown. [`HttpExporter::stats_handle`] adds the HTTP side (requests,
/// retries, largest batch). The exporter's own diagnostics are `tracing`
/// events with target `tracing_xray`; the HTTP client's logging is silenced
/// during requests, as its wire dump would show the session token.
///
/// The IAM permission needed is `xray:PutTraceSegments` (in the managed policy
/// `AWSXRayDaemonWriteAccess`).
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::HttpExporter;
///
/// // Region and credentials from the environment (AWS_REGION,
/// // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN):
/// let exporter = HttpExporter::builder().build()?;
/// let layer = tracing_xray::builder()
///     .with_service_name("orders")
///     .with_exporter(exporter)
///     .build();
/// tracing_subscriber::registry().with(layer).init();
/// # Ok::<(), tracing_xray::export::HttpExporterError>(())
/// ```
pub struct HttpExporter {
    url: String,
    region: String,
    credentials: Cache,
    agent: ureq::Agent,
    settings: Settings,
    backlog: Backlog,
    /// While set and in the future, nothing is sent (backoff).
    retry_at: Option<Instant>,
    /// Consecutive retryable failures (sets the backoff).
    failures_in_row: u32,
    /// While set and in the future, credentials are known to be refused:
    /// documents fail at once instead of being sent.
    auth_blocked_until: Option<Instant>,
    auth_error: Option<String>,
    /// Whether the current run of authentication failures was logged: by
    /// the API ([`Blame::Api`]), by the credentials provider
    /// ([`Blame::Provider`]).
    auth_reported: [bool; 2],
    /// When retryable failures were last logged (the same): at most once
    /// per [`RETRY_REPORT_INTERVAL`], so that intermittent throttling (an
    /// account near its quota) is not a warning per throttled call.
    retry_reported_at: [Option<Instant>; 2],
    /// Whether a failure (retryable, or a refusal) was logged since the
    /// last accepted call, which then says that documents are accepted
    /// again.
    failure_logged: bool,
    /// Whether refused credentials were already refreshed and retried once
    /// (reset by the next success, a retryable failure, and when sending is
    /// blocked until the next try).
    auth_refresh_tried: bool,
    /// Whether an `UnprocessedTraceSegments` entry naming no document of its
    /// batch was logged (once per exporter; further ones are only counted).
    unnamed_reported: bool,
    shut_down: bool,
    stats: Arc<Counters>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    batch_delay: Duration,
    backlog_capacity: usize,
    backlog_max_bytes: usize,
    connect_timeout: Duration,
    read_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    auth_retry_interval: Duration,
}

struct Pending {
    doc: Document,
    /// When it arrived; a batch goes when its first document waited
    /// `with_batch_delay`. Documents put back after a failed send count as due.
    queued_at: Instant,
    /// Sends that ended with the document in `UnprocessedTraceSegments`.
    unprocessed: u8,
}

impl fmt::Debug for HttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExporter")
            .field("url", &self.url)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("settings", &self.settings)
            .field("backlog", &self.backlog.len())
            .field("backlog_bytes", &self.backlog.bytes())
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl HttpExporter {
    /// A builder: region, endpoint, credentials, batching and timeouts.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tracing_xray::export::HttpExporter;
    ///
    /// let exporter = HttpExporter::builder()
    ///     .with_region("eu-west-1")
    ///     .with_batch_delay(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), tracing_xray::export::HttpExporterError>(())
    /// ```
    pub fn builder() -> HttpExporterBuilder {
        HttpExporterBuilder::default()
    }

    /// The URL documents are posted to
    /// (`https://xray.{region}.amazonaws.com/TraceSegments` by default;
    /// `amazonaws.com.cn` in China and the ISO partitions' own suffixes).
    ///
    /// ```
    /// # use tracing_xray::export::HttpExporter;
    /// let exporter = HttpExporter::builder()
    ///     .with_region("us-east-2")
    ///     .with_static_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
    ///     .build()?;
    /// assert_eq!(exporter.url(), "https://xray.us-east-2.amazonaws.com/TraceSegments");
    /// # Ok::<(), tracing_xray::export::HttpExporterError>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The region requests are signed for.
    ///
    /// ```
    /// # use tracing_xray::export::HttpExporter;
    /// let exporter = HttpExporter::builder()
    ///     .with_region("us-east-2")
    ///     .with_static_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
    ///     .build()?;
    /// assert_eq!(exporter.region(), "us-east-2");
    /// # Ok::<(), tracing_xray::export::HttpExporterError>(())
    /// ```
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A handle on this exporter's own counters (requests, retries, largest
    /// batch…), which stays valid after the exporter moved into the layer.
    ///
    /// ```no_run
    /// # use tracing_xray::export::HttpExporter;
    /// let exporter = HttpExporter::builder().build()?;
    /// let http_stats = exporter.stats_handle();
    /// let layer = tracing_xray::builder().with_exporter(exporter).build();
    /// // later
    /// println!("{} PutTraceSegments calls", http_stats.snapshot().requests);
    /// # Ok::<(), tracing_xray::export::HttpExporterError>(())
    /// ```
    pub fn stats_handle(&self) -> HttpStatsHandle {
        HttpStatsHandle {
            counters: self.stats.clone(),
        }
    }

    fn queue(&mut self, docs: impl IntoIterator<Item = Document>, outcome: &mut ExportOutcome) {
        for doc in docs {
            if doc.len() > MAX_DOCUMENT_BYTES {
                let size = doc.len();
                outcome.fail(
                    doc,
                    ExportError::TooLarge {
                        size,
                        limit: MAX_DOCUMENT_BYTES,
                    },
                );
                continue;
            }
            self.backlog.push_back(Pending {
                doc,
                queued_at: Instant::now(),
                unprocessed: 0,
            });
            // After each document, so that the backlog never holds more
            // than its bounds, not even for the length of a large batch.
            self.enforce_bounds(outcome);
        }
    }

    /// Drops the oldest documents while the backlog holds more than its
    /// capacity in documents or its maximum in bytes. Only new documents
    /// grow it: documents put back after a failed send came out of it.
    fn enforce_bounds(&mut self, outcome: &mut ExportOutcome) {
        let capacity = self.settings.backlog_capacity;
        let max_bytes = self.settings.backlog_max_bytes;
        loop {
            let bound = if self.backlog.len() > capacity {
                BacklogBound::Documents(capacity)
            } else if self.backlog.bytes() > max_bytes {
                BacklogBound::Bytes(max_bytes)
            } else {
                return;
            };
            let Some(p) = self.backlog.pop_front() else {
                return;
            };
            if self.stats.backlog_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    target: "tracing_xray",
                    %bound,
                    "the X-Ray API exporter's backlog is full: the oldest documents are being \
                     dropped (further drops are only counted)"
                );
            }
            outcome.fail(p.doc, ExportError::Other(Box::new(BacklogFull { bound })));
        }
    }

    fn auth_blocked(&self, now: Instant) -> bool {
        self.auth_blocked_until.is_some_and(|t| now < t)
    }

    /// Fails every waiting document with the authentication error.
    fn fail_all_unauthorized(&mut self, outcome: &mut ExportOutcome) {
        let why = self
            .auth_error
            .clone()
            .unwrap_or_else(|| "credentials refused".into());
        for p in self.backlog.take_all() {
            outcome.fail(p.doc, ExportError::Unauthorized(why.clone()));
        }
    }

    /// When the next batch should go: now if full, else when its first
    /// document has waited the batch delay.
    fn batch_due_at(&self, now: Instant) -> Option<Instant> {
        let first = self.backlog.front()?;
        if self.backlog.len() >= MAX_BATCH_DOCUMENTS {
            return Some(now);
        }
        Some(crate::handle::deadline_after(
            first.queued_at,
            self.settings.batch_delay,
        ))
    }

    /// Sends due batches, at most [`MAX_CALLS_PER_TURN`].
    fn pump(&mut self, outcome: &mut ExportOutcome) {
        for _ in 0..MAX_CALLS_PER_TURN {
            let now = Instant::now();
            if self.backlog.is_empty() {
                break;
            }
            if self.auth_blocked(now) {
                self.fail_all_unauthorized(outcome);
                break;
            }
            let due = self.batch_due_at(now).is_some_and(|t| t <= now);
            if self.retry_at.is_some_and(|t| now < t) || !due {
                break;
            }
            self.send_batch(None, outcome);
        }
    }

    /// Sends one batch from the front of the backlog; `deadline` bounds the
    /// call (flush and shutdown).
    fn send_batch(&mut self, deadline: Option<Instant>, outcome: &mut ExportOutcome) {
        let batch = self.backlog.take_front(MAX_BATCH_DOCUMENTS);
        let n = batch.len();
        let credentials = match self.credentials.get(self.budget(deadline)) {
            Ok(c) => c,
            Err(CredentialsFailure::Permanent(why)) => {
                self.on_unauthorized(why, Blame::Provider, batch, outcome);
                return;
            }
            Err(CredentialsFailure::Transient(why)) => {
                self.on_retryable(why, Blame::Provider, batch);
                return;
            }
        };
        let body = api::body(batch.iter().map(|p| p.doc.as_str()));
        let request = match api::signed_request(
            &self.url,
            &self.region,
            &credentials,
            body,
            SystemTime::now(),
        ) {
            Ok(r) => r,
            Err(why) => {
                for p in batch {
                    outcome.fail(p.doc, ExportError::Other(why.clone().into()));
                }
                return;
            }
        };
        // What is left after the credentials (a provider may take a while).
        let budget = self.budget(deadline);
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(budget))
            .build();
        Counters::add(&self.stats.requests, 1);
        self.stats
            .largest_batch
            .fetch_max(n as u64, Ordering::Relaxed);
        // ureq's wire-level TRACE logging dumps the raw request, session token
        // included: keep it (and anything else the client logs through
        // `tracing`, or through `log` bridged to it) out of every subscriber.
        let url = &self.url;
        let agent = &self.agent;
        let answer = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || match agent
            .run(request)
        {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let error_type = response
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(1024 * 1024)
                    .read_to_string();
                match text {
                    Ok(text) => api::classify(status, error_type.as_deref(), &text),
                    // A 2xx cut off (a reset, a read timeout, broken framing):
                    // which documents it lists as unprocessed is unknown, and
                    // X-Ray keeps one document per id, so all go again.
                    Err(e) if (200..300).contains(&status) => {
                        Answer::Retry(format!("reading the answer from {url} failed: {e}"))
                    }
                    // Another answer cut off: its header's code, if it has
                    // one, says what it meant; without one, nothing does,
                    // and the AWS SDKs retry an answer they could not read.
                    Err(_) if error_type.is_some() => {
                        api::classify(status, error_type.as_deref(), "")
                    }
                    Err(e) => Answer::Retry(format!(
                        "reading the {status} answer from {url} failed: {e}"
                    )),
                }
            }
            Err(e) => Answer::Retry(format!("request to {url} failed: {e}")),
        });
        match answer {
            Answer::Accepted(unprocessed) => self.on_accepted(batch, unprocessed, outcome),
            Answer::Unauthorized(why) => {
                if !self.auth_refresh_tried && self.credentials.force_refresh(self.budget(deadline))
                {
                    // Fresh credentials: one more try for this batch, at once.
                    self.auth_refresh_tried = true;
                    self.requeue_front(batch);
                    return;
                }
                self.on_unauthorized(why, Blame::Api, batch, outcome)
            }
            Answer::Retry(why) => {
                Counters::add(&self.stats.retries, 1);
                self.on_retryable(why, Blame::Api, batch)
            }
            Answer::Rejected(why) => {
                let why = self.scrub(&why);
                for p in batch {
                    outcome.fail(p.doc, ExportError::Rejected(why.clone()));
                }
            }
        }
    }

    /// The time a request (or a credentials call) may take: the client's
    /// timeouts, within what is left before `deadline`.
    fn budget(&self, deadline: Option<Instant>) -> Duration {
        let budget = self.settings.connect_timeout + self.settings.read_timeout;
        match deadline {
            Some(d) => budget.min(d.saturating_duration_since(Instant::now())),
            None => budget,
        }
    }

    fn scrub(&self, text: &str) -> String {
        api::scrub(text, &self.credentials.secrets())
    }

    /// Puts documents back at the front of the backlog, due at once (only
    /// a backoff holds them back). They were taken from it by the send that
    /// failed, and nothing was queued since, so its bounds still hold.
    fn requeue_front(&mut self, batch: Vec<Pending>) {
        let now = Instant::now();
        let due = now.checked_sub(self.settings.batch_delay).unwrap_or(now);
        for mut p in batch.into_iter().rev() {
            p.queued_at = p.queued_at.min(due);
            self.backlog.push_front(p);
        }
    }

    fn on_accepted(
        &mut self,
        batch: Vec<Pending>,
        unprocessed: Vec<api::Unprocessed>,
        outcome: &mut ExportOutcome,
    ) {
        // Said again only when a failure was: a failure not logged (the
        // interval since the last report not over) ends silently too.
        let was_failing = self.failure_logged;
        self.auth_blocked_until = None;
        self.auth_error = None;
        self.auth_reported = [false; 2];
        self.auth_refresh_tried = false;

        let mut batch: Vec<Option<Pending>> = batch.into_iter().map(Some).collect();
        let mut retry = Vec::new();
        // Entries without an `Id`, or with one that is no document of the
        // batch: a document failed, and the API did not say which.
        let mut unnamed = Vec::new();
        // The ids of the documents answered for so far.
        let mut answered: Vec<&str> = Vec::new();
        for u in &unprocessed {
            let Some(id) = u.id.as_deref() else {
                unnamed.push(u);
                continue;
            };
            let slot = batch
                .iter_mut()
                .find(|p| p.as_ref().is_some_and(|p| p.doc.id().to_string() == id));
            let Some(mut p) = slot.and_then(Option::take) else {
                // A second entry for a document already answered for says
                // nothing more; any other names no document of the batch.
                if !answered.contains(&id) {
                    unnamed.push(u);
                }
                continue;
            };
            answered.push(id);
            Counters::add(&self.stats.unprocessed, 1);
            let code = u.error_code.as_deref().unwrap_or_default();
            p.unprocessed += 1;
            if api::is_retryable_unprocessed(code) && p.unprocessed < MAX_UNPROCESSED_ATTEMPTS {
                retry.push(p);
            } else {
                let message = u.message.as_deref().unwrap_or_default();
                let why = match (code, message) {
                    ("", "") => "listed in UnprocessedTraceSegments, with no error code or \
                                 message"
                        .to_owned(),
                    (code, "") | ("", code) => {
                        format!("listed in UnprocessedTraceSegments: {code}")
                    }
                    (code, message) => {
                        format!("listed in UnprocessedTraceSegments: {code}: {message}")
                    }
                };
                outcome.fail(p.doc, ExportError::Rejected(self.scrub(&why)));
            }
        }
        self.on_unnamed(&mut batch, unnamed, outcome);
        let delivered = batch.iter().flatten().count();
        // Nothing delivered and documents to retry: the API throttles (or
        // fails) document by document, and the backoff goes on growing.
        if delivered > 0 || retry.is_empty() {
            if was_failing {
                tracing::info!(target: "tracing_xray", "the X-Ray API accepts documents again");
            }
            self.failures_in_row = 0;
            self.retry_at = None;
            self.failure_logged = false;
        }
        outcome.delivered += delivered;
        Counters::add(&self.stats.documents_delivered, delivered as u64);
        if !retry.is_empty() {
            self.requeue_front(retry);
            self.set_backoff();
        }
    }

    /// Answers the `UnprocessedTraceSegments` entries of a call that name no
    /// document of its batch: no `Id`, or an id of none of its documents.
    ///
    /// Each such entry says that a document was not taken, without saying
    /// which. So that the call never reports delivered a document the API
    /// said it did not take, as many of the documents that no entry named
    /// fail in their place (the last ones of the batch: which ones is a
    /// guess, how many is not) and count in [`HttpStats::unprocessed`]; the
    /// call then reports delivered at most the batch less its entries. None
    /// is retried, whatever the error code: which one to send again is not
    /// known, and sending them all again would send delivered ones twice.
    /// Entries beyond the documents left can only be repeats: they fail
    /// nothing more. The first such entry is logged as a warning naming its
    /// error code, once per exporter.
    fn on_unnamed(
        &mut self,
        batch: &mut [Option<Pending>],
        unnamed: Vec<&api::Unprocessed>,
        outcome: &mut ExportOutcome,
    ) {
        let Some(first) = unnamed.first() else {
            return;
        };
        if !self.unnamed_reported {
            self.unnamed_reported = true;
            tracing::warn!(
                target: "tracing_xray",
                error_code = %self.scrub(first.error_code.as_deref().unwrap_or_default()),
                entries = unnamed.len(),
                "the X-Ray API listed documents as unprocessed without naming any of the batch \
                 (no Id, or an unknown one): as many of the batch's unnamed documents are \
                 counted failed, not delivered, and none is retried (further such entries are \
                 only counted)"
            );
        }
        // `unnamed` first: `zip` takes a document from the batch only once
        // it has an entry to pair it with.
        let left = batch.iter_mut().rev().filter_map(Option::take);
        for (u, p) in unnamed.iter().zip(left) {
            Counters::add(&self.stats.unprocessed, 1);
            let named = match u.id.as_deref() {
                Some(id) => format!("an Id, {id:?}, of no document of the batch"),
                None => "no Id".to_owned(),
            };
            let why = self.scrub(&format!(
                "{}: {} (the entry had {named}: one document of the batch failed, this one \
                 is counted in its place)",
                u.error_code.as_deref().unwrap_or_default(),
                u.message.as_deref().unwrap_or_default(),
            ));
            outcome.fail(p.doc, ExportError::Rejected(why));
        }
    }

    /// Credentials refused by the API, or none to be had from the provider
    /// (it has none, or is misconfigured).
    fn on_unauthorized(
        &mut self,
        why: String,
        blame: Blame,
        batch: Vec<Pending>,
        outcome: &mut ExportOutcome,
    ) {
        let why = self.scrub(&why);
        Counters::add(&self.stats.auth_failures, 1);
        if !std::mem::replace(&mut self.auth_reported[blame as usize], true) {
            self.failure_logged = true;
            if blame == Blame::Api {
                tracing::error!(
                    target: "tracing_xray",
                    error = %why,
                    url = %self.url,
                    "the X-Ray API refused our credentials; documents fail without being sent \
                     until the next try in {:?} (further refusals are only counted; the IAM \
                     permission needed is xray:PutTraceSegments)",
                    self.settings.auth_retry_interval,
                );
            } else {
                tracing::error!(
                    target: "tracing_xray",
                    error = %why,
                    "no AWS credentials to sign X-Ray API calls with (the provider has none, \
                     or is misconfigured); documents fail without being sent until the next \
                     try in {:?} (further failures are only counted)",
                    self.settings.auth_retry_interval,
                );
            }
        }
        self.auth_blocked_until = Some(crate::handle::deadline_after(
            Instant::now(),
            self.settings.auth_retry_interval,
        ));
        self.auth_error = Some(why.clone());
        // The next try, once the block is over, may ask the provider again
        // if refused: credentials rotated since are picked up.
        self.auth_refresh_tried = false;
        for p in batch {
            outcome.fail(p.doc, ExportError::Unauthorized(why.clone()));
        }
    }

    /// A failure that may pass: the API unavailable, or the credentials
    /// provider failing or not answering (no call made).
    fn on_retryable(&mut self, why: String, blame: Blame, batch: Vec<Pending>) {
        // A refusal before this failure is no longer what holds documents,
        // and the next refusal may ask the provider again.
        self.auth_error = None;
        self.auth_refresh_tried = false;
        let last = &mut self.retry_reported_at[blame as usize];
        if last.is_none_or(|at| at.elapsed() >= RETRY_REPORT_INTERVAL) {
            *last = Some(Instant::now());
            self.failure_logged = true;
            let error = self.scrub(&why);
            match blame {
                Blame::Api => tracing::warn!(
                    target: "tracing_xray",
                    %error,
                    "the X-Ray API is unavailable or throttling; documents wait in the \
                     backlog and are retried with backoff (reported at most once a minute)"
                ),
                Blame::Provider => tracing::warn!(
                    target: "tracing_xray",
                    %error,
                    "the credentials provider failed or did not answer (no call was made); \
                     documents wait in the backlog and are retried with backoff (reported at \
                     most once a minute)"
                ),
            }
        }
        self.requeue_front(batch);
        self.set_backoff();
    }

    fn set_backoff(&mut self) {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let delay = backoff(
            self.settings.backoff_initial,
            self.settings.backoff_max,
            self.failures_in_row,
            crate::id::next_u64(),
        );
        self.retry_at = Some(crate::handle::deadline_after(Instant::now(), delay));
    }

    /// Sends everything waiting, ignoring the batch delay, until
    /// `deadline`. A backoff that ends in time is waited out; one that ends
    /// later is cut short, once: a flush or shutdown tries at least once
    /// before it gives up on the documents (the API may be back).
    fn drain(&mut self, deadline: Instant, outcome: &mut ExportOutcome) {
        let mut cut_short = false;
        loop {
            let now = Instant::now();
            if self.backlog.is_empty() || now >= deadline {
                return;
            }
            if self.auth_blocked(now) {
                self.fail_all_unauthorized(outcome);
                return;
            }
            if let Some(at) = self.retry_at.filter(|&t| now < t) {
                if at < deadline {
                    std::thread::sleep(at - now);
                    continue;
                }
                if cut_short {
                    return;
                }
                cut_short = true;
            }
            self.send_batch(Some(deadline), outcome);
        }
    }
}

/// Whom a failure to send is due to: the X-Ray API's answer (or its
/// absence), or the credentials provider (before any call).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blame {
    Api = 0,
    Provider = 1,
}

/// Exponential backoff with jitter: a delay drawn from the upper half of
/// `initial * 2^(attempt-1)`, capped at `max`.
fn backoff(initial: Duration, max: Duration, attempt: u32, random: u64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = initial.saturating_mul(1u32 << exp).min(max);
    let half = ceiling / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    // `saturating_add`: a half-ceiling past 584 years (`Duration::MAX` as
    // the cap) is `u64::MAX` nanoseconds.
    let jitter = if nanos == 0 {
        0
    } else {
        random % nanos.saturating_add(1)
    };
    half + Duration::from_nanos(jitter)
}

/// How much of a flush or shutdown timeout the exporter keeps for itself, so
/// that the worker can still reply within the caller's timeout.
fn reply_margin(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(100))
}

impl Exporter for HttpExporter {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        if self.shut_down {
            for doc in batch {
                outcome.fail(doc, ExportError::AlreadyShutdown);
            }
            return outcome;
        }
        self.queue(batch, &mut outcome);
        self.pump(&mut outcome);
        outcome
    }

    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        let deadline = crate::handle::deadline_after(
            Instant::now(),
            timeout.saturating_sub(reply_margin(timeout)),
        );
        self.drain(deadline, &mut outcome);
        outcome
    }

    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        let mut outcome = self.flush(timeout);
        // Refused credentials only while they are known to be refused: a
        // document the API did not answer for since failed for lack of time.
        let why = self
            .auth_error
            .clone()
            .filter(|_| self.auth_blocked(Instant::now()));
        for p in self.backlog.take_all() {
            let error = match &why {
                Some(w) => ExportError::Unauthorized(w.clone()),
                None => ExportError::OutOfTime(timeout),
            };
            outcome.fail(p.doc, error);
        }
        self.shut_down = true;
        outcome
    }

    fn next_poll(&self) -> Option<Instant> {
        let now = Instant::now();
        let due = self.batch_due_at(now)?;
        if self.auth_blocked(now) {
            return Some(now);
        }
        Some(match self.retry_at {
            Some(r) => due.max(r),
            None => due,
        })
    }

    fn poll(&mut self, _now: Instant) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        self.pump(&mut outcome);
        outcome
    }
}

/// Builds an [`HttpExporter`]. Start with [`HttpExporter::builder`].
///
/// - **Region**: [`with_region`](Self::with_region), else `AWS_REGION`, else
///   `AWS_DEFAULT_REGION`.
/// - **Endpoint**: [`with_endpoint`](Self::with_endpoint), else
///   `https://xray.{region}.amazonaws.com` (`.amazonaws.com.cn` in China,
///   the partition's own suffix in the ISO regions).
/// - **Credentials**: [`with_static_credentials`](Self::with_static_credentials) or
///   [`with_credentials_provider`](Self::with_credentials_provider), else
///   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
///   read when [`build`](Self::build) is called.
///
/// The `Debug` output never shows a secret.
///
/// # The `aws-config` credentials chain
///
/// Any [`ProvideCredentials`] works, and credentials are refreshed five
/// minutes before they expire. The exporter polls the provider's future on
/// its own thread without an async runtime, which suits providers that are
/// ready at once or do blocking work. Providers that need a Tokio runtime (the
/// ones of `aws-config`) should run on yours: wrap them so that their work is
/// spawned there, in [`untraced_future`](super::untraced_future) (their spans
/// would otherwise be traces of your service, sent by this exporter).
///
/// ```no_run
/// use aws_credential_types::provider::{
///     error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
/// };
/// use tracing_xray::export::{HttpExporter, untraced_future};
///
/// /// Runs `inner` on a Tokio runtime, for an exporter that has none.
/// #[derive(Debug)]
/// struct OnRuntime {
///     runtime: tokio::runtime::Handle,
///     inner: SharedCredentialsProvider,
/// }
///
/// impl ProvideCredentials for OnRuntime {
///     fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
///     where
///         Self: 'a,
///     {
///         let inner = self.inner.clone();
///         // Untraced: its spans (aws-config's `load_credentials`) are the
///         // exporter's work, not the application's.
///         let task = self
///             .runtime
///             .spawn(untraced_future(async move { inner.provide_credentials().await }));
///         future::ProvideCredentials::new(async move {
///             task.await.map_err(CredentialsError::unhandled)?
///         })
///     }
/// }
///
/// # fn chain() -> SharedCredentialsProvider { unimplemented!() }
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// // With aws-config: let config = aws_config::load_from_env().await;
/// //                  let chain = config.credentials_provider().unwrap();
/// let chain: SharedCredentialsProvider = chain();
/// let exporter = HttpExporter::builder()
///     .with_credentials_provider(OnRuntime { runtime: tokio::runtime::Handle::current(), inner: chain })
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct HttpExporterBuilder {
    region: Option<String>,
    endpoint: Option<String>,
    credentials: Option<Source>,
    settings: Settings,
}

impl Default for HttpExporterBuilder {
    fn default() -> Self {
        HttpExporterBuilder {
            region: None,
            endpoint: None,
            credentials: None,
            settings: Settings {
                batch_delay: DEFAULT_BATCH_DELAY,
                backlog_capacity: DEFAULT_BACKLOG_CAPACITY,
                backlog_max_bytes: DEFAULT_BACKLOG_MAX_BYTES,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                read_timeout: DEFAULT_READ_TIMEOUT,
                backoff_initial: DEFAULT_BACKOFF_INITIAL,
                backoff_max: DEFAULT_BACKOFF_MAX,
                auth_retry_interval: DEFAULT_AUTH_RETRY_INTERVAL,
            },
        }
    }
}

impl fmt::Debug for HttpExporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExporterBuilder")
            .field("region", &self.region)
            // Without its user info, query and fragment (`build` refuses
            // them): a secret written there never reaches a log.
            .field("endpoint", &self.endpoint.as_deref().map(endpoint_shown))
            .field("credentials", &self.credentials)
            .field("settings", &self.settings)
            .finish()
    }
}

impl HttpExporterBuilder {
    /// The AWS region (`us-east-1`, …). Default: `AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`.
    ///
    /// ```
    /// let builder = tracing_xray::export::HttpExporter::builder().with_region("eu-central-1");
    /// # drop(builder);
    /// ```
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The API's base URL, for VPC endpoints, FIPS endpoints and tests.
    /// Default: `https://xray.{region}.amazonaws.com` (with the partition's
    /// suffix outside the `aws` partition). `http://` is accepted
    /// (a local fake of the API); requests are still signed for the region.
    /// [`build`](Self::build) refuses an endpoint with a path, a query, a
    /// fragment or user info, without a host, or with a port outside
    /// 1–65535 ([`HttpExporterError::InvalidEndpoint`]).
    ///
    /// ```
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_endpoint("https://xray-fips.us-east-1.amazonaws.com");
    /// # drop(builder);
    /// ```
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Fixed credentials: an access key, its secret, and a session token for
    /// temporary credentials. Prefer a provider for anything that expires.
    ///
    /// ```no_run
    /// let builder = tracing_xray::export::HttpExporter::builder().with_static_credentials(
    ///     std::env::var("MY_KEY_ID")?,
    ///     std::env::var("MY_SECRET")?,
    ///     None,
    /// );
    /// # drop(builder);
    /// # Ok::<(), std::env::VarError>(())
    /// ```
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            "tracing-xray static credentials",
        );
        self.credentials = Some(Source::Static {
            credentials,
            from_env: false,
        });
        self
    }

    /// Credentials from a provider (any [`ProvideCredentials`], such as the
    /// `aws-config` chain: see the type's docs), asked again five minutes
    /// before they expire and when the API refuses them. A provider that
    /// fails or hangs while the credentials it gave are still valid costs a
    /// send at most two seconds (half its time, if less), and is asked again
    /// 30 seconds later (or, as briefly, when the API refuses them);
    /// meanwhile those credentials are used, until 10 seconds before they
    /// expire. A call may take at most 5 seconds.
    ///
    /// ```
    /// use aws_credential_types::Credentials;
    ///
    /// // `Credentials` is itself a (static) provider:
    /// let creds = Credentials::new("AKIA…", "…", None, None, "example");
    /// let builder = tracing_xray::export::HttpExporter::builder().with_credentials_provider(creds);
    /// # drop(builder);
    /// ```
    pub fn with_credentials_provider(
        mut self,
        provider: impl ProvideCredentials + 'static,
    ) -> Self {
        self.credentials = Some(Source::Provider(SharedCredentialsProvider::new(provider)));
        self
    }

    /// How long the first document of a batch may wait for others before the
    /// batch is sent (a full batch of 50 goes at once). Default 1 s, as the
    /// daemon.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_batch_delay(Duration::from_millis(200));
    /// # drop(builder);
    /// ```
    pub fn with_batch_delay(mut self, delay: Duration) -> Self {
        self.settings.batch_delay = delay;
        self
    }

    /// How many documents may wait (for their batch, or for the API to come
    /// back). Past it the oldest are dropped and counted as failed. Default
    /// 10 000; at least 1. The backlog is bounded in bytes too, by
    /// [`with_backlog_max_bytes`](Self::with_backlog_max_bytes): whichever bound is met
    /// first drops documents, so raising this one alone may change nothing.
    ///
    /// ```
    /// // Room for 50 000 documents of about 2.5 KB.
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_backlog_capacity(50_000)
    ///     .with_backlog_max_bytes(128 << 20);
    /// # drop(builder);
    /// ```
    pub fn with_backlog_capacity(mut self, documents: usize) -> Self {
        self.settings.backlog_capacity = documents.max(1);
        self
    }

    /// How many bytes of documents (the heap their JSON text holds) may
    /// wait, however many documents that is: the bound on the application's
    /// memory that an outage of the API can hold. Past it the oldest are dropped and counted
    /// as failed, as past [`with_backlog_capacity`](Self::with_backlog_capacity).
    /// Default 32 MiB: documents are typically 1 to 3 KB, so the default
    /// 10 000 of them fit, while as many documents of the API's maximum size
    /// (64 KB) would hold about 640 MB. At least 64 KiB, so that a document
    /// of the maximum size always fits.
    ///
    /// ```
    /// // A small container: at most 8 MiB of documents waiting.
    /// let builder = tracing_xray::export::HttpExporter::builder().with_backlog_max_bytes(8 << 20);
    /// # drop(builder);
    /// ```
    pub fn with_backlog_max_bytes(mut self, bytes: usize) -> Self {
        self.settings.backlog_max_bytes = bytes.max(MIN_BACKLOG_MAX_BYTES);
        self
    }

    /// How long establishing a connection (DNS, TCP, TLS) may take. Default
    /// 3 s; at most a year (`Duration::MAX` is cut to that).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_connect_timeout(Duration::from_secs(1));
    /// # drop(builder);
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout.min(crate::limits::LONGEST_HTTP_TIMEOUT);
        self
    }

    /// How long each step of a request may take once connected: sending it,
    /// waiting for the answer's head, reading its body (each step up to this
    /// long). The whole request, connection included, takes at most the
    /// connect timeout plus this one. Default 10 s; at most a year
    /// (`Duration::MAX` is cut to that).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_read_timeout(Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.read_timeout = timeout.min(crate::limits::LONGEST_HTTP_TIMEOUT);
        self
    }

    /// The backoff after throttling, a server error or a network error: the
    /// `n`-th failure in a row waits between half and all of
    /// `min(initial * 2^(n-1), max)`. Default 200 ms to 30 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_retry_backoff(Duration::from_millis(100), Duration::from_secs(10));
    /// # drop(builder);
    /// ```
    pub fn with_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.settings.backoff_initial = initial;
        self.settings.backoff_max = max.max(initial);
        self
    }

    /// After the API refuses the credentials (and a provider has no others),
    /// documents fail at once, without a request, for this long; then one
    /// batch tries again. Default 60 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = tracing_xray::export::HttpExporter::builder()
    ///     .with_auth_retry_interval(Duration::from_secs(300));
    /// # drop(builder);
    /// ```
    pub fn with_auth_retry_interval(mut self, interval: Duration) -> Self {
        self.settings.auth_retry_interval = interval;
        self
    }

    /// Checks the settings and builds the exporter. Nothing is sent yet.
    ///
    /// ```no_run
    /// use tracing_xray::export::{HttpExporter, HttpExporterError};
    ///
    /// match HttpExporter::builder().build() {
    ///     Ok(exporter) => { /* with_exporter(exporter) */ }
    ///     Err(HttpExporterError::MissingRegion) => eprintln!("set AWS_REGION"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// No region was given nor found, the region or endpoint is invalid, or no
    /// credentials were given nor found in the environment (see
    /// [`HttpExporterError`]).
    pub fn build(self) -> Result<HttpExporter, HttpExporterError> {
        let region = match self.region {
            Some(r) => r,
            None => region_from_env().ok_or(HttpExporterError::MissingRegion)?,
        };
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(HttpExporterError::InvalidRegion(region));
        }
        let endpoint = match self.endpoint {
            Some(e) => validate_endpoint(&e)?,
            None => format!("https://xray.{region}.{}", dns_suffix(&region)),
        };
        let source = match self.credentials {
            Some(s) => s,
            None => Source::from_env().ok_or(HttpExporterError::MissingCredentials)?,
        };
        let s = self.settings;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(s.connect_timeout))
            .timeout_resolve(Some(s.connect_timeout))
            .timeout_send_request(Some(s.read_timeout))
            .timeout_send_body(Some(s.read_timeout))
            .timeout_recv_response(Some(s.read_timeout))
            .timeout_recv_body(Some(s.read_timeout))
            .max_redirects(0)
            .user_agent(concat!("tracing-xray/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HttpExporter {
            url: format!("{endpoint}{}", api::PUT_TRACE_SEGMENTS_PATH),
            region,
            credentials: Cache::new(source),
            agent: ureq::Agent::new_with_config(config),
            settings: s,
            backlog: Backlog::default(),
            retry_at: None,
            failures_in_row: 0,
            auth_blocked_until: None,
            auth_error: None,
            auth_reported: [false; 2],
            retry_reported_at: [None; 2],
            failure_logged: false,
            auth_refresh_tried: false,
            unnamed_reported: false,
            shut_down: false,
            stats: Arc::new(Counters::default()),
        })
    }
}

fn region_from_env() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

/// The DNS suffix of the region's partition (the AWS SDKs' partition
/// table): `amazonaws.com` for the `aws` and GovCloud partitions.
fn dns_suffix(region: &str) -> &'static str {
    const PARTITIONS: [(&str, &str); 6] = [
        ("cn-", "amazonaws.com.cn"),
        ("us-isob-", "sc2s.sgov.gov"),
        ("us-isof-", "csp.hci.ic.gov"),
        ("us-iso-", "c2s.ic.gov"),
        ("eu-isoe-", "cloud.adc-e.uk"),
        ("eusc-", "amazonaws.eu"),
    ];
    PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("amazonaws.com", |(_, suffix)| suffix)
}

/// An endpoint as errors and `Debug` show it: without its user info, query
/// and fragment (`build` refuses them), even when it has no scheme
/// (`key:secret@host`): a secret written there must never reach a log.
fn endpoint_shown(url: &str) -> String {
    // The user info first, to the last `@` (a password may hold `?` or `#`),
    // then the query and fragment.
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (hidden, rest) = match rest.rfind('@') {
        Some(at) => ("…@", &rest[at + 1..]),
        None => ("", rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    format!("{scheme}{hidden}{rest}")
}

/// `scheme://host[:port]`, without a trailing slash; `http` or `https`, a
/// host, a port from 1 to 65535 if any, no path, query, fragment or user
/// info.
fn validate_endpoint(url: &str) -> Result<String, HttpExporterError> {
    let shown = endpoint_shown(url);
    let invalid = |why: &str| HttpExporterError::InvalidEndpoint(format!("{shown:?}: {why}"));
    let trimmed = url.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = trimmed.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(invalid("the scheme must be https:// (or http://)")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid("user info is not allowed"));
    }
    // `Uri` takes an empty host (`http://:4566`) and any digits as a port.
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    // The text after the last `:`, unless it ends an IPv6 address (`[::1]`).
    let port = authority
        .as_str()
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|port| !port.ends_with(']'));
    if port.is_some_and(|port| !matches!(port.parse::<u16>(), Ok(1..))) {
        return Err(invalid("the port must be a number from 1 to 65535"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a path or query is not allowed"));
    }
    // `Uri` keeps a fragment in the text: the API's path would follow it.
    if trimmed.contains('#') {
        return Err(invalid("a fragment is not allowed"));
    }
    Ok(trimmed.to_owned())
}

/// Why an [`HttpExporter`] could not be built, or (inside
/// [`ExportError::Other`]) why it dropped a document.
///
/// ```
/// use tracing_xray::export::{HttpExporter, HttpExporterError};
///
/// let err = HttpExporter::builder()
///     .with_region("us-east-1")
///     .with_endpoint("ftp://example.com")
///     .with_static_credentials("AKIA…", "…", None)
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, HttpExporterError::InvalidEndpoint(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpExporterError {
    /// No region: none given, and neither `AWS_REGION` nor
    /// `AWS_DEFAULT_REGION` is set.
    MissingRegion,
    /// The region is not of the form `us-east-1`.
    InvalidRegion(String),
    /// The endpoint is not an `https://` (or `http://`) base URL.
    InvalidEndpoint(String),
    /// No credentials: none given, and `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` are not set.
    MissingCredentials,
}

/// The error of a document an [`HttpExporter`] dropped, the oldest waiting,
/// to make room for a newer one: keeping it would have taken the backlog
/// past one of its bounds. It comes in [`ExportError::Other`] (counted in
/// [`HttpStats::backlog_dropped`]).
///
/// ```
/// use tracing_xray::export::{BacklogBound, BacklogFull, ExportError};
///
/// /// Which bound, when `err` is a document dropped from a full backlog.
/// fn dropped_for(err: &ExportError) -> Option<BacklogBound> {
///     match err {
///         ExportError::Other(e) => e.downcast_ref::<BacklogFull>().map(BacklogFull::bound),
///         _ => None,
///     }
/// }
/// assert_eq!(dropped_for(&ExportError::AlreadyShutdown), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogFull {
    bound: BacklogBound,
}

impl BacklogFull {
    /// The bound that was passed, and its value.
    ///
    /// See [`BacklogFull`] for an example.
    pub fn bound(&self) -> BacklogBound {
        self.bound
    }
}

impl fmt::Display for BacklogFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dropped: the HTTP exporter's backlog is full ({})",
            self.bound
        )
    }
}

impl StdError for BacklogFull {}

/// Which of an [`HttpExporter`]'s backlog bounds a document was dropped for
/// (in a [`BacklogFull`]), with the bound's value.
///
/// ```
/// use tracing_xray::export::BacklogBound;
///
/// assert_eq!(
///     BacklogBound::Bytes(32 << 20).to_string(),
///     "at most 33554432 bytes of documents, with_backlog_max_bytes"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BacklogBound {
    /// At most this many documents
    /// ([`HttpExporterBuilder::with_backlog_capacity`]).
    Documents(usize),
    /// At most this many bytes of documents' JSON text
    /// ([`HttpExporterBuilder::with_backlog_max_bytes`]).
    Bytes(usize),
}

impl fmt::Display for BacklogBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BacklogBound::Documents(n) => write!(f, "at most {n} documents, with_backlog_capacity"),
            BacklogBound::Bytes(n) => {
                write!(f, "at most {n} bytes of documents, with_backlog_max_bytes")
            }
        }
    }
}

impl fmt::Display for HttpExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpExporterError::MissingRegion => f.write_str(
                "no AWS region for the X-Ray API: call HttpExporterBuilder::with_region or set AWS_REGION",
            ),
            HttpExporterError::InvalidRegion(r) => write!(f, "invalid AWS region {r:?}"),
            HttpExporterError::InvalidEndpoint(why) => write!(f, "invalid X-Ray endpoint {why}"),
            HttpExporterError::MissingCredentials => f.write_str(
                "no AWS credentials for the X-Ray API: give static credentials or a provider, \
                 or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ),
        }
    }
}

impl StdError for HttpExporterError {}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    documents_delivered: AtomicU64,
    unprocessed: AtomicU64,
    auth_failures: AtomicU64,
    backlog_dropped: AtomicU64,
    largest_batch: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> HttpStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HttpStats {
            requests: get(&self.requests),
            retries: get(&self.retries),
            documents_delivered: get(&self.documents_delivered),
            unprocessed: get(&self.unprocessed),
            auth_failures: get(&self.auth_failures),
            backlog_dropped: get(&self.backlog_dropped),
            largest_batch: get(&self.largest_batch),
        }
    }
}

/// A cloneable handle on an [`HttpExporter`]'s counters, from
/// [`HttpExporter::stats_handle`].
///
/// ```no_run
/// # use tracing_xray::export::HttpExporter;
/// let exporter = HttpExporter::builder().build()?;
/// let handle = exporter.stats_handle();
/// assert_eq!(handle.snapshot().requests, 0);
/// # Ok::<(), tracing_xray::export::HttpExporterError>(())
/// ```
#[derive(Clone)]
pub struct HttpStatsHandle {
    counters: Arc<Counters>,
}

impl fmt::Debug for HttpStatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpStatsHandle")
            .field(&self.snapshot())
            .finish()
    }
}

impl HttpStatsHandle {
    /// The counters now.
    ///
    /// ```no_run
    /// # use tracing_xray::export::HttpExporter;
    /// # let handle = HttpExporter::builder().build()?.stats_handle();
    /// let stats = handle.snapshot();
    /// assert!(stats.largest_batch <= 50);
    /// # Ok::<(), tracing_xray::export::HttpExporterError>(())
    /// ```
    pub fn snapshot(&self) -> HttpStats {
        self.counters.snapshot()
    }
}

/// An [`HttpExporter`]'s counters. Documents delivered and failed are also
/// in the layer's [`crate::Stats`]; these add the HTTP side.
///
/// ```no_run
/// # use tracing_xray::export::HttpExporter;
/// # let handle = HttpExporter::builder().build()?.stats_handle();
/// let s = handle.snapshot();
/// println!("{} requests, {} retried, {} auth failures", s.requests, s.retries, s.auth_failures);
/// # Ok::<(), tracing_xray::export::HttpExporterError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpStats {
    /// `PutTraceSegments` calls made.
    pub requests: u64,
    /// Calls that failed in a retryable way (throttling, 5xx, network).
    pub retries: u64,
    /// Documents the API accepted.
    pub documents_delivered: u64,
    /// Documents listed in `UnprocessedTraceSegments` (retried or failed).
    ///
    /// An entry that names no document of its batch (no `Id`, or an id of
    /// none of its documents) counts as one document all the same: the API
    /// said one was not taken. As it did not say which, one of the batch's
    /// documents that no entry named is failed in its place (never retried),
    /// so that no more documents are counted delivered than the batch less
    /// its entries. Repeated entries for one document count once; entries
    /// beyond the documents that no entry named (they can only be repeats)
    /// do not count.
    pub unprocessed: u64,
    /// Calls refused for their credentials, and sends that had none (the
    /// credentials provider has none, or is misconfigured: no call made).
    pub auth_failures: u64,
    /// Documents dropped, the oldest first, to make room for newer ones:
    /// keeping them would have taken the backlog past
    /// [`with_backlog_capacity`](HttpExporterBuilder::with_backlog_capacity) documents
    /// or [`with_backlog_max_bytes`](HttpExporterBuilder::with_backlog_max_bytes)
    /// bytes. Each fails with a [`BacklogFull`], which says which bound.
    pub backlog_dropped: u64,
    /// The most documents one call carried (never above 50).
    pub largest_batch: u64,
}

#[cfg(test)]
mod tests;
