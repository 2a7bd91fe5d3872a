//! [`XrayHandle`]: flush, shut down and read the counters of a running layer.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use crate::worker::Message;

/// Why a [`XrayHandle::flush`] or [`XrayHandle::shutdown`] did not complete.
///
/// ```
/// use std::time::Duration;
/// use tracing_xray::FlushError;
///
/// let layer = tracing_xray::builder()
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// let xray = layer.handle();
/// xray.shutdown(Duration::from_secs(1)).unwrap();
/// assert_eq!(xray.flush(Duration::from_secs(1)), Err(FlushError::AlreadyShutdown));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The worker did not finish within the given time. Work already handed
    /// over goes on in the background.
    Timeout(Duration),
    /// The layer was already shut down.
    AlreadyShutdown,
    /// Called on the worker's own thread (from an [`Exporter`]'s code): the
    /// worker cannot wait for itself.
    ///
    /// [`Exporter`]: crate::export::Exporter
    OnWorkerThread,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::Timeout(t) => write!(f, "tracing-xray flush did not finish within {t:?}"),
            FlushError::AlreadyShutdown => f.write_str("tracing-xray was already shut down"),
            FlushError::OnWorkerThread => f.write_str(
                "tracing-xray flush or shutdown called from its own worker thread (an exporter)",
            ),
        }
    }
}

impl std::error::Error for FlushError {}

/// A snapshot of the layer's counters.
///
/// ```
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// let stats = layer.handle().stats();
/// assert_eq!(stats.traces_dropped, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Finished traces (or streamed parts of traces) handed to the worker.
    pub traces_queued: u64,
    /// Finished traces dropped because the queue was full (in traces,
    /// [`crate::Builder::with_queue_capacity`], or in bytes,
    /// [`crate::Builder::with_max_queued_bytes`]) or the worker was
    /// shut down (those still queued behind a shutdown request move here
    /// from `traces_queued`): each finished trace, or part, is counted in
    /// exactly one of the two. After a shutdown, `traces_queued` counts only
    /// what the worker took (a trace that reached the queue as it closed is
    /// moved here by the next `stats` or `shutdown`).
    pub traces_dropped: u64,
    /// Spans in the dropped traces.
    pub spans_dropped: u64,
    /// Documents the exporter reported delivered.
    pub documents_exported: u64,
    /// Documents the exporter reported failed, and those it lost by
    /// panicking (handed to it and not yet reported delivered or failed).
    pub documents_failed: u64,
    /// Independent subsegment documents sent: the parts of traces split to
    /// keep documents within the limits (size, subsegment count, depth), the
    /// finished children a long-lived root streams, and, in Lambda, each
    /// invocation's top-level subsegments (the segment is Lambda's).
    pub subsegments_streamed: u64,
    /// Spans whose own data exceeded the document limit and were trimmed.
    pub spans_trimmed: u64,
    /// Annotations moved to metadata because the trace already had 50.
    pub annotations_demoted: u64,
    /// Errors not recorded because a span already had the maximum (8), the
    /// entries of `cause.exceptions` (an error and each of its sources)
    /// left out of a span trimmed to fit a document, and the errors of
    /// Lambda's `Lambda runtime invoke` span itself, which has no document.
    pub exceptions_dropped: u64,
    /// Events not recorded because a span already had the maximum (each
    /// such span says how many in `metadata.tracing_xray.events_dropped`),
    /// events left out of a span trimmed to fit a document (the first 16
    /// named in its `metadata_dropped`), and those of Lambda's `Lambda runtime
    /// invoke` span itself, which has no document. Only with
    /// [`crate::Builder::with_events`].
    pub events_dropped: u64,
    /// Spans whose data could not be read as they closed, and were lost: a
    /// panic in other code (another layer's: `fmt` formats a value given to
    /// `span.record` under the span's lock) poisoned the span's lock. A
    /// root takes its trace's finished spans with it.
    pub spans_lost: u64,
}

/// The counters behind [`Stats`]. Those the application threads write for
/// every trace come first, on a cache line (of 64 or 128 bytes) of their own:
/// were the worker's on the same line, each trace's count would first have
/// to fetch that line back from the worker's core.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub(crate) struct Counters {
    pub(crate) traces_queued: AtomicU64,
    pub(crate) traces_dropped: AtomicU64,
    pub(crate) spans_dropped: AtomicU64,
    /// Bytes of spans ever queued ([`crate::span_data::SpanData::held_bytes`]).
    pub(crate) bytes_queued: AtomicU64,
    /// The worker's [`Counters::bytes_done`] as an application thread last
    /// read it: the queue's bytes are `bytes_queued` less this, at most,
    /// and the worker's line is read only when that passes the bound.
    pub(crate) bytes_done_seen: AtomicU64,
    /// Set by the worker as it stops taking traces (a shutdown, or its
    /// end): from then on the layer drops what finishes, counted, and
    /// whatever reached the queue as it closed is counted by
    /// [`Shared::count_left_in_queue`]. Written once; read by every send.
    pub(crate) queue_closed: AtomicBool,
    _apart: [u64; 10],
    /// Bytes of queued spans the worker is done with (written by it alone,
    /// once per batch).
    pub(crate) bytes_done: AtomicU64,
    pub(crate) documents_exported: AtomicU64,
    pub(crate) documents_failed: AtomicU64,
    pub(crate) subsegments_streamed: AtomicU64,
    pub(crate) spans_trimmed: AtomicU64,
    pub(crate) annotations_demoted: AtomicU64,
    pub(crate) exceptions_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) spans_lost: AtomicU64,
    /// Traces counted in `traces_queued` that were dropped after all (queued
    /// behind a shutdown, or failed to serialize): [`Stats::traces_queued`]
    /// is the difference. Apart, so that both only ever grow, and a reader
    /// never sees the count go back while the queue is full.
    pub(crate) traces_taken_back: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a trace (or a part of one) of `spans` spans dropped.
    pub(crate) fn trace_dropped(&self, spans: u64) {
        Counters::add(&self.traces_dropped, 1);
        Counters::add(&self.spans_dropped, spans);
    }

    /// Counts a trace the worker had taken from the queue as dropped
    /// instead.
    pub(crate) fn queued_trace_dropped(&self, spans: u64) {
        Counters::add(&self.traces_taken_back, 1);
        self.trace_dropped(spans);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            // The take-back may be seen before the send it takes back (the
            // worker took the trace before its sender counted it): never
            // below zero, and right once both are counted.
            traces_queued: get(&self.traces_queued).saturating_sub(get(&self.traces_taken_back)),
            traces_dropped: get(&self.traces_dropped),
            spans_dropped: get(&self.spans_dropped),
            documents_exported: get(&self.documents_exported),
            documents_failed: get(&self.documents_failed),
            subsegments_streamed: get(&self.subsegments_streamed),
            spans_trimmed: get(&self.spans_trimmed),
            annotations_demoted: get(&self.annotations_demoted),
            exceptions_dropped: get(&self.exceptions_dropped),
            events_dropped: get(&self.events_dropped),
            spans_lost: get(&self.spans_lost),
        }
    }
}

/// [`Shared::shut_down`]: no shutdown asked for.
pub(crate) const RUNNING: u8 = 0;
/// A `shutdown` call is queuing its request; it may still time out, and the
/// layer go on.
const SHUTDOWN_CLAIMED: u8 = 1;
/// The shutdown request is queued: the worker stops when it gets to it.
const SHUTDOWN_QUEUED: u8 = 2;

thread_local! {
    /// On a worker's thread, its layer's counters (`Arc::as_ptr`), telling a
    /// `flush` made by the exporter from one made elsewhere.
    static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as `counters`' layer's worker.
pub(crate) fn mark_worker_thread(counters: &Arc<Counters>) {
    WORKER_OF.with(|w| w.set(Arc::as_ptr(counters) as usize));
}

pub(crate) struct Shared {
    pub(crate) tx: Sender<Message>,
    /// The queue's other end, beside the worker's: what reaches the queue
    /// as the worker stops is taken out here (see
    /// [`Shared::count_left_in_queue`]), never while it runs.
    pub(crate) rx: Receiver<Message>,
    pub(crate) counters: Arc<Counters>,
    /// [`RUNNING`], [`SHUTDOWN_CLAIMED`] or [`SHUTDOWN_QUEUED`].
    pub(crate) shut_down: AtomicU8,
    pub(crate) worker: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Once the worker has stopped taking from the queue, moves the traces
    /// left in it from `traces_queued` to `traces_dropped`, and answers the
    /// flushes left there ([`FlushError::AlreadyShutdown`]). A trace that
    /// finishes just as the worker closes the queue (the layer saw it
    /// open, the worker's last look found it empty) would otherwise stay
    /// counted as queued, and be neither exported nor dropped.
    pub(crate) fn count_left_in_queue(&self) {
        if !self.counters.queue_closed.load(Ordering::Acquire) {
            return;
        }
        while let Ok(msg) = self.rx.try_recv() {
            if let Message::Trace { .. } | Message::Detached { .. } = msg {
                self.counters.queued_trace_dropped(msg.span_count() as u64);
            }
        }
    }

    /// [`FlushError::OnWorkerThread`] when called by this layer's own worker
    /// (its exporter), which would wait for itself.
    fn check_caller(&self) -> Result<(), FlushError> {
        if WORKER_OF.with(std::cell::Cell::get) == Arc::as_ptr(&self.counters) as usize {
            return Err(FlushError::OnWorkerThread);
        }
        Ok(())
    }
}

/// A cloneable handle on a layer's worker: [`flush`](XrayHandle::flush),
/// [`shutdown`](XrayHandle::shutdown) and [`stats`](XrayHandle::stats).
///
/// A global subscriber is never dropped, so a program (and a Lambda function,
/// at the end of every invocation) flushes through this handle.
///
/// Do not call `flush` or `shutdown` from inside a current-thread async
/// runtime's task if that runtime also drives your exporter: they block the
/// calling thread until the worker replies or the timeout passes.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
///
/// let layer = tracing_xray::builder()
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// let xray = layer.handle();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("request").in_scope(|| {});
/// });
/// xray.flush(Duration::from_secs(2)).unwrap();
/// assert_eq!(xray.stats().documents_exported, 1);
/// ```
#[derive(Clone)]
pub struct XrayHandle {
    pub(crate) shared: Option<Arc<Shared>>,
}

impl fmt::Debug for XrayHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XrayHandle")
            .field("enabled", &self.shared.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl XrayHandle {
    /// Waits until every trace finished before this call has been exported
    /// (and the exporter flushed), or `timeout` passes.
    ///
    /// A disabled layer flushes at once. `Duration::MAX` waits as long as it
    /// takes. Called by the layer's own exporter (on the worker's thread),
    /// it returns [`FlushError::OnWorkerThread`] at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1))?;
    /// assert_eq!(exporter.len(), 1); // exported by the time `flush` returns
    /// # Ok::<(), tracing_xray::FlushError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] when the worker did not finish in time, or
    /// the exporter still holds documents it could neither deliver nor give
    /// up on in time (an HTTP API that did not answer): the work goes on in
    /// the background; also when it gave up on some for lack of time
    /// (reported failed with
    /// [`ExportError::OutOfTime`](crate::export::ExportError::OutOfTime)).
    /// [`FlushError::AlreadyShutdown`] after a shutdown,
    /// [`FlushError::OnWorkerThread`] when called from an exporter's code.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.check_caller()?;
        // A shutdown still queuing its request may yet time out (and the
        // layer go on): this flush queues its own, answered either way.
        if shared.shut_down.load(Ordering::Acquire) == SHUTDOWN_QUEUED {
            return Err(FlushError::AlreadyShutdown);
        }
        // A flush whose request cannot be queued in time changes nothing.
        enqueue(shared, timeout, |reply, deadline| Message::Flush {
            reply,
            deadline,
        })?
        .wait()
    }

    /// Exports everything already finished, shuts the exporter down and stops
    /// the worker, waiting at most `timeout`. Traces that finish afterwards
    /// are counted as dropped. A second call returns
    /// [`FlushError::AlreadyShutdown`]. `Duration::MAX` waits as long as it
    /// takes.
    ///
    /// If the request cannot even be queued within `timeout` (the queue is
    /// full behind a busy exporter), this returns [`FlushError::Timeout`] and
    /// nothing changes: the layer goes on, and a later call can shut it down.
    /// A call made while another one is queuing its request returns
    /// [`FlushError::AlreadyShutdown`] (a `flush` made meanwhile is an
    /// ordinary flush). Once the request is queued, the worker shuts down
    /// when it gets to it, whether or not this call waited that long; it then
    /// drops the exporter, and this call waits for that too, within
    /// `timeout`. Called by the layer's own exporter, it returns
    /// [`FlushError::OnWorkerThread`] at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::{export::InMemoryExporter, FlushError};
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    /// tracing::info_span!("before").in_scope(|| {});
    /// xray.shutdown(Duration::from_secs(1)).unwrap();
    /// tracing::info_span!("after").in_scope(|| {});
    ///
    /// assert_eq!(exporter.len(), 1);
    /// assert_eq!(xray.stats().traces_dropped, 1);
    /// assert_eq!(xray.shutdown(Duration::from_secs(1)), Err(FlushError::AlreadyShutdown));
    /// ```
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] when the worker did not finish in time, or the
    /// exporter shut down holding documents it never reported, or gave up on
    /// some for lack of time (reported failed with
    /// [`ExportError::OutOfTime`](crate::export::ExportError::OutOfTime): an HTTP
    /// API that never answered); all are counted in
    /// [`Stats::documents_failed`],
    /// [`FlushError::AlreadyShutdown`] when called again,
    /// [`FlushError::OnWorkerThread`] when called from an exporter's code.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        // Claimed before the request is queued, so that two calls never both
        // queue one; given back if it could not be queued, so that a later
        // call can (the worker never heard of this one).
        shared.check_caller()?;
        if shared
            .shut_down
            .compare_exchange(
                RUNNING,
                SHUTDOWN_CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Err(FlushError::AlreadyShutdown);
        }
        let deadline = deadline_after(Instant::now(), timeout);
        let queued = enqueue(shared, timeout, |reply, deadline| Message::Shutdown {
            reply,
            deadline,
        });
        let pending = match queued {
            Ok(pending) => {
                shared.shut_down.store(SHUTDOWN_QUEUED, Ordering::Release);
                pending
            }
            Err(err) => {
                if let FlushError::Timeout(_) = err {
                    shared.shut_down.store(RUNNING, Ordering::Release);
                }
                return Err(err);
            }
        };
        // `Timeout` also when the worker replied that the exporter shut down
        // holding documents it never reported (counted as failed): it is
        // returning all the same.
        let timeout = pending.timeout;
        let replied = match pending.wait_reply()? {
            true => Ok(()),
            false => Err(FlushError::Timeout(timeout)),
        };
        // The worker replied and is returning: it drops the exporter (whose
        // `Drop` may take a while, it is the application's code) and ends.
        // Joined if that is done in time; else left to end on its own, and
        // the caller told it did not finish in time.
        let worker = shared.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            while !worker.is_finished() {
                let now = Instant::now();
                if now >= deadline {
                    return Err(FlushError::Timeout(timeout));
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
            }
            let _ = worker.join();
        }
        shared.count_left_in_queue();
        replied
    }

    /// The layer's counters (all zero for a disabled layer).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("first").in_scope(|| {});
    ///     tracing::info_span!("second").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// let stats = xray.stats();
    /// assert_eq!(stats.traces_queued, 2);
    /// assert_eq!(stats.documents_exported, 2);
    /// assert_eq!(stats.traces_dropped, 0);
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared
            .as_ref()
            .map(|s| {
                s.count_left_in_queue();
                s.counters.snapshot()
            })
            .unwrap_or_default()
    }

    /// Whether the layer is switched on (not disabled by the environment:
    /// see [`XrayLayer::is_enabled`](crate::XrayLayer::is_enabled)). The
    /// handle of an [`init`](crate::Builder::init) guard is also disabled
    /// when the layer could not be installed as the global subscriber.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_xray::Stats;
    ///
    /// // SAFETY: no other thread of this program reads the environment yet.
    /// unsafe { std::env::set_var("AWS_XRAY_SDK_DISABLED", "true") };
    /// let xray = tracing_xray::builder().build().handle();
    /// assert!(!xray.is_enabled());
    /// assert_eq!(xray.flush(Duration::from_secs(1)), Ok(())); // nothing to do
    /// assert_eq!(xray.stats(), Stats::default());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

/// The longest `flush` and `shutdown` really wait: about a century. A longer
/// timeout, up to `Duration::MAX` ("as long as it takes"), is cut to this,
/// so that no deadline overflows an `Instant`: neither ours nor the one an
/// exporter computes from the time left that the worker hands it.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `now + timeout`, for any `timeout`: at most [`FOREVER`] away, and closer
/// still on a platform whose `Instant` cannot go that far.
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    let mut wait = timeout.min(FOREVER);
    loop {
        if let Some(deadline) = now.checked_add(wait) {
            return deadline;
        }
        wait /= 2; // ends: `now + 0` is `now`
    }
}

/// A request the worker has queued and will answer.
struct Pending {
    reply: Receiver<bool>,
    deadline: Instant,
    timeout: Duration,
}

/// Queues a request behind every trace already queued (waiting for room
/// until the deadline) and wakes the worker.
fn enqueue(
    shared: &Shared,
    timeout: Duration,
    make: impl FnOnce(Sender<bool>, Instant) -> Message,
) -> Result<Pending, FlushError> {
    let deadline = deadline_after(Instant::now(), timeout);
    if shared.counters.queue_closed.load(Ordering::Acquire) {
        return Err(FlushError::AlreadyShutdown);
    }
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    match shared.tx.send_deadline(make(reply_tx, deadline), deadline) {
        Ok(()) => {}
        Err(SendTimeoutError::Timeout(_)) => return Err(FlushError::Timeout(timeout)),
        Err(SendTimeoutError::Disconnected(_)) => return Err(FlushError::AlreadyShutdown),
    }
    // Queued as the worker stopped: taken back out (its reply then closes,
    // and `wait` answers `AlreadyShutdown` at once).
    std::sync::atomic::fence(Ordering::SeqCst);
    shared.count_left_in_queue();
    // The worker may be waiting for traces to gather (`worker::LINGER`).
    if let Ok(worker) = shared.worker.lock() {
        if let Some(worker) = worker.as_ref() {
            worker.thread().unpark();
        }
    }
    Ok(Pending {
        reply: reply_rx,
        deadline,
        timeout,
    })
}

impl Pending {
    /// Waits for the worker's reply until the deadline.
    fn wait(self) -> Result<(), FlushError> {
        let timeout = self.timeout;
        match self.wait_reply()? {
            true => Ok(()),
            // The exporter holds documents it could not settle in time.
            false => Err(FlushError::Timeout(timeout)),
        }
    }

    /// The worker's reply (whether the exporter settled every document it
    /// was handed), waited for until the deadline.
    fn wait_reply(self) -> Result<bool, FlushError> {
        match self.reply.recv_deadline(self.deadline) {
            Ok(settled) => Ok(settled),
            Err(RecvTimeoutError::Timeout) => Err(FlushError::Timeout(self.timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(FlushError::AlreadyShutdown),
        }
    }
}

/// Flushes and shuts the layer down when dropped. Returned by
/// [`crate::init`]; keep it alive for the whole program (`let _guard = …`,
/// never `let _ = …`, which drops it at once).
///
/// ```no_run
/// let _xray = tracing_xray::init();
/// tracing::info_span!("job").in_scope(|| { /* work */ });
/// // everything is exported when `_xray` goes out of scope
/// ```
#[must_use = "dropping the guard shuts tracing-xray down at once"]
#[derive(Debug)]
pub struct XrayGuard {
    pub(crate) handle: XrayHandle,
    pub(crate) timeout: Duration,
}

impl XrayGuard {
    /// The handle of the guarded layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let guard = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .init();
    /// tracing::info_span!("invocation").in_scope(|| {});
    /// // Flush without shutting down, as at the end of a Lambda invocation:
    /// guard.handle().flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(exporter.len(), 1);
    /// ```
    pub fn handle(&self) -> &XrayHandle {
        &self.handle
    }

    /// How long the shutdown at drop may take (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT), 5 s):
    /// less where the platform kills the process sooner after asking it to
    /// stop (a container's grace period after SIGTERM).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let _xray = tracing_xray::builder()
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .init()
    ///     .with_shutdown_timeout(Duration::from_secs(2));
    /// ```
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Drop for XrayGuard {
    fn drop(&mut self) {
        let _ = self.handle.shutdown(self.timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_threads_counters_have_a_cache_line_of_their_own() {
        use std::mem::offset_of;
        let app_side = offset_of!(Counters, bytes_done_seen) + std::mem::size_of::<AtomicU64>();
        assert!(app_side <= 64);
        for worker_side in [
            offset_of!(Counters, bytes_done),
            offset_of!(Counters, documents_exported),
        ] {
            assert!(worker_side >= 128);
        }
        // The application threads' fields are the first ones.
        for app in [
            offset_of!(Counters, traces_queued),
            offset_of!(Counters, traces_dropped),
            offset_of!(Counters, spans_dropped),
            offset_of!(Counters, bytes_queued),
        ] {
            assert!(app < offset_of!(Counters, bytes_done_seen));
        }
        assert_eq!(std::mem::align_of::<Counters>(), 128);
    }
}
