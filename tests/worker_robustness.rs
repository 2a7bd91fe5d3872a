//! The worker and the handle survive what callers and exporters throw at
//! them: timeouts of any size, exporters that panic in any method, a
//! shutdown that could not even be queued, an `init` that found a global
//! subscriber already set.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::FlushError;
use tracing_xray::export::{Document, ExportOutcome, Exporter, InMemoryExporter};

/// Runs `f` with a layer (every trace sampled) on `exporter` as the default
/// subscriber of this thread; returns the handle.
fn with_layer(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    exporter: impl Exporter,
    f: impl FnOnce(&tracing_xray::XrayHandle),
) -> tracing_xray::XrayHandle {
    let builder = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter);
    let layer = configure(builder).build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || f(&xray));
    xray
}

/// Computes its deadline as `Instant::now() + timeout`, as exporters do
/// (`HttpExporter::flush` among them): the timeout the worker passes on
/// must not overflow an `Instant` either.
struct DeadlineFromTimeout {
    inner: InMemoryExporter,
    flushes: Arc<AtomicUsize>,
}

impl Exporter for DeadlineFromTimeout {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.inner.export(batch)
    }
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        let deadline = Instant::now() + timeout;
        assert!(deadline > Instant::now());
        self.flushes.fetch_add(1, Ordering::SeqCst);
        ExportOutcome::default()
    }
}

#[test]
fn flush_and_shutdown_accept_any_timeout() {
    let inner = InMemoryExporter::new();
    let flushes = Arc::new(AtomicUsize::new(0));
    let exporter = DeadlineFromTimeout {
        inner: inner.clone(),
        flushes: flushes.clone(),
    };
    let xray = with_layer(
        |b| b,
        exporter,
        |xray| {
            info_span!("first").in_scope(|| {});
            assert_eq!(xray.flush(Duration::MAX), Ok(()));
            info_span!("second").in_scope(|| {});
            assert_eq!(xray.flush(Duration::from_secs(u64::MAX / 2)), Ok(()));
        },
    );
    assert_eq!(inner.len(), 2);
    assert_eq!(xray.shutdown(Duration::from_secs(u64::MAX / 2)), Ok(()));
    // Flushed twice, then shut down (the default `shutdown` flushes).
    assert_eq!(flushes.load(Ordering::SeqCst), 3);
    assert_eq!(
        xray.shutdown(Duration::MAX),
        Err(FlushError::AlreadyShutdown)
    );
    assert_eq!(xray.flush(Duration::MAX), Err(FlushError::AlreadyShutdown));
    assert_eq!(xray.stats().documents_failed, 0);
}

/// Blocks in `export` until the test says so, after telling it that it has
/// started.
struct Gated {
    inner: InMemoryExporter,
    entered: mpsc::Sender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    shutdowns: Arc<AtomicUsize>,
}

impl Gated {
    fn new(
        inner: &InMemoryExporter,
    ) -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>, Arc<AtomicUsize>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let gated = Gated {
            inner: inner.clone(),
            entered: entered_tx,
            release: Arc::new(Mutex::new(release_rx)),
            shutdowns: shutdowns.clone(),
        };
        (gated, entered_rx, release_tx, shutdowns)
    }
}

impl Exporter for Gated {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let _ = self.entered.send(());
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(5));
        self.inner.export(batch)
    }
    fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        ExportOutcome::default()
    }
}

#[test]
fn flush_without_a_limit_waits_for_a_busy_worker() {
    let inner = InMemoryExporter::new();
    let (gated, entered, release, _) = Gated::new(&inner);
    let xray = with_layer(
        |b| b,
        gated,
        |_| {
            info_span!("slow").in_scope(|| {});
        },
    );
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    let flusher = {
        let xray = xray.clone();
        std::thread::spawn(move || xray.flush(Duration::MAX))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!flusher.is_finished(), "flush returned before the export");
    release.send(()).unwrap();
    assert_eq!(flusher.join().unwrap(), Ok(()));
    assert_eq!(inner.len(), 1);
}

/// `next_poll` panics every time it is asked.
struct PanicsInNextPoll {
    inner: InMemoryExporter,
    asked: Arc<AtomicUsize>,
}

impl Exporter for PanicsInNextPoll {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.inner.export(batch)
    }
    fn next_poll(&self) -> Option<Instant> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        panic!("next_poll bug");
    }
}

#[test]
fn panicking_next_poll_does_not_stop_the_worker() {
    let inner = InMemoryExporter::new();
    let asked = Arc::new(AtomicUsize::new(0));
    let exporter = PanicsInNextPoll {
        inner: inner.clone(),
        asked: asked.clone(),
    };
    let xray = with_layer(
        |b| b,
        exporter,
        |xray| {
            info_span!("first").in_scope(|| {});
            assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
            info_span!("second").in_scope(|| {});
        },
    );
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    assert_eq!(inner.len(), 2);
    assert!(asked.load(Ordering::SeqCst) >= 2);
    let stats = xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (2, 0));
    assert_eq!(xray.shutdown(Duration::from_secs(5)), Ok(()));
}

/// Runs `f` with a layer on a [`Gated`] exporter, a queue of one trace, the
/// worker holding trace `a` in `export` and trace `b` filling the queue;
/// `f` gets the handle and the sender that lets one export finish.
fn with_a_full_queue(
    f: impl FnOnce(&tracing_xray::XrayHandle, &mpsc::Sender<()>),
) -> (tracing_xray::XrayHandle, InMemoryExporter, Arc<AtomicUsize>) {
    let inner = InMemoryExporter::new();
    let (gated, entered, release, shutdowns) = Gated::new(&inner);
    let xray = with_layer(
        |b| b.with_queue_capacity(1),
        gated,
        |xray| {
            info_span!("a").in_scope(|| {});
            entered.recv_timeout(Duration::from_secs(5)).unwrap();
            info_span!("b").in_scope(|| {});
            assert_eq!(xray.stats().traces_dropped, 0, "b is queued");
            f(xray, &release);
        },
    );
    (xray, inner, shutdowns)
}

#[test]
fn shutdown_that_could_not_be_queued_can_be_retried() {
    let (xray, inner, shutdowns) = with_a_full_queue(|xray, release| {
        assert_eq!(
            xray.shutdown(Duration::from_millis(50)),
            Err(FlushError::Timeout(Duration::from_millis(50)))
        );
        // Not shut down: the handle and the layer still work.
        release.send(()).unwrap(); // a
        release.send(()).unwrap(); // b
        assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
        info_span!("c").in_scope(|| {});
        release.send(()).unwrap(); // c
        assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    });
    assert_eq!(inner.len(), 3);
    assert_eq!(shutdowns.load(Ordering::SeqCst), 0);
    assert_eq!(xray.shutdown(Duration::from_secs(5)), Ok(()));
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    assert_eq!(
        xray.shutdown(Duration::from_secs(5)),
        Err(FlushError::AlreadyShutdown)
    );
    assert_eq!(xray.stats().traces_dropped, 0);
}

#[test]
fn concurrent_shutdowns_shut_down_once() {
    for _ in 0..20 {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Exporter for Counted {
            fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
                ExportOutcome::delivered(batch.len())
            }
            fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
                self.0.fetch_add(1, Ordering::SeqCst);
                ExportOutcome::default()
            }
        }
        let xray = tracing_xray::builder()
            .with_detectors(tracing_xray::Detectors::none())
            .with_exporter(Counted(shutdowns.clone()))
            .build()
            .handle();
        let results: Vec<_> = (0..4)
            .map(|_| {
                let xray = xray.clone();
                std::thread::spawn(move || xray.shutdown(Duration::from_secs(5)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(FlushError::AlreadyShutdown)))
        );
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    }
}

/// Holds every document until `flush`, `shutdown` or `poll` sends them;
/// panics in the method named by `panics_in`, after taking the documents.
struct Holding {
    held: Vec<Document>,
    panics_in: &'static str,
    polled: mpsc::Sender<()>,
}

impl Holding {
    fn send(&mut self, method: &str) -> ExportOutcome {
        let sent = std::mem::take(&mut self.held);
        if method == self.panics_in {
            panic!("{method} bug");
        }
        ExportOutcome::delivered(sent.len())
    }
}

impl Exporter for Holding {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.held.extend(batch);
        ExportOutcome::default()
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        self.send("flush")
    }
    fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
        self.send("shutdown")
    }
    fn next_poll(&self) -> Option<Instant> {
        // Only the exporter that panics in `poll` asks for it.
        (self.panics_in == "poll" && !self.held.is_empty()).then(Instant::now)
    }
    fn poll(&mut self, _now: Instant) -> ExportOutcome {
        let _ = self.polled.send(());
        self.send("poll")
    }
}

fn holding(panics_in: &'static str) -> (Holding, mpsc::Receiver<()>) {
    let (polled, polls) = mpsc::channel();
    let exporter = Holding {
        held: Vec::new(),
        panics_in,
        polled,
    };
    (exporter, polls)
}

#[test]
fn documents_held_by_an_exporter_whose_flush_panics_are_counted() {
    let (exporter, _) = holding("flush");
    let xray = with_layer(
        |b| b,
        exporter,
        |_| {
            info_span!("first").in_scope(|| {});
            info_span!("second").in_scope(|| {});
        },
    );
    // The worker survives, and says what was lost.
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    let stats = xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (0, 2));
    // Counted once: a second flush has nothing outstanding.
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    assert_eq!(xray.stats().documents_failed, 2);
    assert_eq!(xray.shutdown(Duration::from_secs(5)), Ok(()));
    assert_eq!(xray.stats().documents_failed, 2);
}

#[test]
fn documents_held_by_an_exporter_whose_shutdown_panics_are_counted() {
    let (exporter, _) = holding("shutdown");
    let xray = with_layer(
        |b| b,
        exporter,
        |xray| {
            info_span!("delivered").in_scope(|| {});
            assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
            info_span!("lost").in_scope(|| {});
        },
    );
    // `Timeout`, as for documents held by an exporter whose `shutdown`
    // returned (it said `Ok` once, found by an audit of the rustdoc).
    assert_eq!(
        xray.shutdown(Duration::from_secs(5)),
        Err(FlushError::Timeout(Duration::from_secs(5)))
    );
    let stats = xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (1, 1));
}

#[test]
fn documents_held_by_an_exporter_whose_poll_panics_are_counted() {
    let (exporter, polls) = holding("poll");
    let xray = with_layer(
        |b| b,
        exporter,
        |_| {
            info_span!("lost").in_scope(|| {});
        },
    );
    polls.recv_timeout(Duration::from_secs(5)).unwrap();
    // Answered after the panicking `poll` returned.
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    let stats = xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (0, 1));
}

/// Holds the first document in `export`, then panics in the next `export`
/// (having dropped what it held): both documents are counted as failed.
#[test]
fn panicking_export_counts_what_the_exporter_held() {
    struct HoldThenPanic(Vec<Document>, mpsc::Sender<()>);
    impl Exporter for HoldThenPanic {
        fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
            if !self.0.is_empty() {
                self.0.clear();
                panic!("export bug");
            }
            self.0.extend(batch);
            let _ = self.1.send(());
            ExportOutcome::default()
        }
        fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
            ExportOutcome::delivered(std::mem::take(&mut self.0).len())
        }
    }
    let (held_tx, held) = mpsc::channel();
    let xray = with_layer(
        |b| b,
        HoldThenPanic(Vec::new(), held_tx),
        |_| {
            info_span!("held").in_scope(|| {});
            held.recv_timeout(Duration::from_secs(5)).unwrap();
            info_span!("batch").in_scope(|| {});
        },
    );
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    let stats = xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (0, 2));
}

/// The exporter of an `init` that was not installed is shut down at once.
struct Closable(Arc<AtomicBool>);

impl Exporter for Closable {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        ExportOutcome::delivered(batch.len())
    }
    fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
        self.0.store(true, Ordering::SeqCst);
        ExportOutcome::default()
    }
}

#[test]
fn init_under_an_existing_global_subscriber_stops_its_worker() {
    // The only global subscriber of this test binary.
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    // A builder whose exporter tells when it was shut down.
    let closable = || {
        let closed = Arc::new(AtomicBool::new(false));
        let builder = tracing_xray::builder()
            .with_detectors(tracing_xray::Detectors::none())
            .with_exporter(Closable(closed.clone()));
        (builder, closed)
    };
    let (builder, closed) = closable();
    let guard = builder.init();
    assert!(!guard.handle().is_enabled(), "the layer was not installed");
    assert!(closed.load(Ordering::SeqCst), "the exporter was shut down");
    assert_eq!(guard.handle().flush(Duration::from_secs(1)), Ok(()));
    drop(guard);

    // `try_init` says so, with the same clean-up.
    let (builder, closed) = closable();
    let err = builder.try_init().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not installed as the global subscriber: "),
        "{err}"
    );
    assert!(closed.load(Ordering::SeqCst), "the exporter was shut down");
}

/// An open trace streams its finished spans before they outgrow the queue's
/// bound in bytes: with the smallest bound (1 MiB), a root whose 30 children
/// hold 40 KB each (1.2 MB) loses nothing, the queue being empty all along.
/// When an open trace streamed only past 1 MiB whatever the bound, the 27
/// spans it held then left as one part over the bound and were dropped.
#[test]
fn an_open_trace_streams_in_parts_that_fit_the_queues_bound_in_bytes() {
    let exporter = InMemoryExporter::new();
    let blob = "x".repeat(40_000);
    let xray = with_layer(
        |b| b.with_max_queued_bytes(1 << 20),
        exporter.clone(),
        |xray| {
            info_span!("consumer_loop").in_scope(|| {
                for i in 0..30 {
                    info_span!("message", i, metadata.body = blob.as_str()).in_scope(|| {
                        // One part at a time in the queue: the bound is
                        // about what one part holds, not what piles up.
                        xray.flush(Duration::from_secs(5)).unwrap();
                    });
                }
            });
        },
    );
    xray.flush(Duration::from_secs(5)).unwrap();
    let stats = xray.stats();
    assert_eq!(
        (stats.traces_dropped, stats.spans_dropped),
        (0, 0),
        "{stats:?}"
    );
    // 40,280 bytes a child: a quarter of 1 MiB is passed by every 7th,
    // which leaves with the 6 before it, one document each: 4 parts of 7.
    // The root's last 2 children (80 KB) do not fit its 64 KB document:
    // one leaves on its own.
    assert_eq!(exporter.documents().len(), 4 * 7 + 2);
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["subsegments"].as_array().unwrap().len(), 30);
}

/// An exporter whose `Drop` takes a while (it joins a thread of its own,
/// closes a connection pool...).
struct SlowToDrop(Duration);

impl Exporter for SlowToDrop {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        ExportOutcome::delivered(batch.len())
    }
}

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        std::thread::sleep(self.0);
    }
}

/// `shutdown` waits at most its timeout, also for the worker to end: the
/// exporter's `Drop` runs there, after the worker replied. Past it, the
/// worker has not finished: `Timeout` (it said `Ok` once, and a caller
/// could exit the process under the exporter's `Drop`; found by an audit of
/// the rustdoc).
#[test]
fn shutdown_waits_at_most_its_timeout_for_the_exporter_to_drop() {
    let xray = tracing_xray::builder()
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(SlowToDrop(Duration::from_secs(3)))
        .build()
        .handle();
    let started = Instant::now();
    assert_eq!(
        xray.shutdown(Duration::from_millis(200)),
        Err(FlushError::Timeout(Duration::from_millis(200)))
    );
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    // A fast `Drop` is waited for: the worker is gone when `shutdown` returns.
    let dropped = Arc::new(AtomicBool::new(false));
    let xray = tracing_xray::builder()
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(Closable(dropped.clone()))
        .build()
        .handle();
    assert_eq!(xray.shutdown(Duration::from_secs(5)), Ok(()));
    assert!(dropped.load(Ordering::SeqCst));
}

/// Calls `flush` and `shutdown` on its own layer's handle from `export`.
struct CallsItsOwnHandle {
    handle: Arc<std::sync::OnceLock<tracing_xray::XrayHandle>>,
    results: mpsc::Sender<[Result<(), FlushError>; 2]>,
}

impl Exporter for CallsItsOwnHandle {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        if let Some(handle) = self.handle.get() {
            let results = [handle.flush(Duration::MAX), handle.shutdown(Duration::MAX)];
            let _ = self.results.send(results);
        }
        ExportOutcome::delivered(batch.len())
    }
}

/// The worker cannot wait for itself: `flush` or `shutdown` called by the
/// exporter, on the worker's thread, returns at once instead of blocking
/// the worker for good.
#[test]
fn flush_and_shutdown_from_the_exporter_return_at_once() {
    let handle = Arc::new(std::sync::OnceLock::new());
    let (results_tx, results) = mpsc::channel();
    let exporter = CallsItsOwnHandle {
        handle: handle.clone(),
        results: results_tx,
    };
    let xray = with_layer(
        |b| b,
        exporter,
        |xray| {
            handle.set(xray.clone()).unwrap();
            info_span!("request").in_scope(|| {});
        },
    );
    let results = results.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        results,
        [
            Err(FlushError::OnWorkerThread),
            Err(FlushError::OnWorkerThread)
        ]
    );
    // Not shut down, and still answering the application.
    assert_eq!(xray.flush(Duration::from_secs(5)), Ok(()));
    assert_eq!(xray.stats().documents_exported, 1);
}

/// A flush made while a shutdown waits for room in a full queue is a
/// flush: that shutdown may yet time out, and the layer go on.
#[test]
fn a_flush_during_a_shutdown_that_times_out_still_flushes() {
    const WAITS: Duration = Duration::from_secs(2);
    let (xray, inner, shutdowns) = with_a_full_queue(|xray, release| {
        let shutting = xray.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let shutdown = std::thread::spawn(move || {
            let started = Instant::now();
            started_tx.send(()).unwrap();
            (started, shutting.shutdown(WAITS), Instant::now())
        });
        let flushing = xray.clone();
        let flush = std::thread::spawn(move || {
            // After the shutdown began, however late its thread ran.
            started_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            (Instant::now(), flushing.flush(Duration::from_secs(10)))
        });
        let (shutdown_started, shut, shutdown_ended) = shutdown.join().unwrap();
        assert_eq!(shut, Err(FlushError::Timeout(WAITS)));
        release.send(()).unwrap(); // a
        release.send(()).unwrap(); // b
        let (flush_started, flushed) = flush.join().unwrap();
        // The case at hand: the flush came while the shutdown waited.
        assert!(shutdown_started < flush_started && flush_started < shutdown_ended);
        assert_eq!(flushed, Ok(()));
    });
    assert_eq!(inner.len(), 2);
    assert_eq!(shutdowns.load(Ordering::SeqCst), 0);
    assert_eq!(xray.shutdown(Duration::from_secs(5)), Ok(()));
}

/// `usize::MAX` as the streaming threshold: never split by count (it was
/// `threshold + 1`, which overflowed).
#[test]
fn a_streaming_threshold_of_usize_max_never_splits() {
    let inner = InMemoryExporter::new();
    let xray = with_layer(
        |b| b.with_streaming_threshold(usize::MAX),
        inner.clone(),
        |_| {
            info_span!("batch").in_scope(|| {
                for _ in 0..3 {
                    info_span!("item").in_scope(|| {});
                }
            });
        },
    );
    xray.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(xray.stats().traces_dropped, 0);
    let documents = inner.json_documents();
    assert_eq!(documents.len(), 1, "{documents:?}");
    assert_eq!(documents[0]["subsegments"].as_array().unwrap().len(), 3);
}

/// `XrayGuard::with_shutdown_timeout`: the shutdown at the guard's drop
/// waits no longer than asked, here for an exporter stuck in `export` (the
/// default would wait 5 s). In a process of its own: `init` installs the
/// global subscriber.
#[test]
#[ignore]
fn guard_shutdown_timeout_child() {
    let inner = InMemoryExporter::new();
    let (gated, entered, _release, _) = Gated::new(&inner);
    let guard = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(gated)
        .init()
        .with_shutdown_timeout(Duration::from_millis(200));
    info_span!("job").in_scope(|| {});
    // The worker is inside `export`, held there for 5 s.
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    drop(guard);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the guard waited {took:?}");
}

#[test]
fn the_guard_waits_no_longer_than_its_shutdown_timeout() {
    common::run_alone("guard_shutdown_timeout_child");
}

/// A batching exporter as in `Exporter::next_poll`'s example: holds what it
/// is given and reports it from `poll` once its send time has come. Taking
/// in a batch costs it `export_cost` (compressing, writing to a socket).
struct Batching {
    held: Vec<Document>,
    send_at: Option<Instant>,
    delay: Duration,
    export_cost: Duration,
    /// How late past `send_at` the first batch was sent by `poll`.
    first_send_late: Arc<Mutex<Option<Duration>>>,
}

impl Exporter for Batching {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        std::thread::sleep(self.export_cost);
        self.send_at.get_or_insert(Instant::now() + self.delay);
        self.held.extend(batch);
        ExportOutcome::default()
    }
    fn next_poll(&self) -> Option<Instant> {
        self.send_at
    }
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        let Some(at) = self.send_at.filter(|&at| now >= at) else {
            return ExportOutcome::default();
        };
        self.first_send_late.lock().unwrap().get_or_insert(now - at);
        self.send_at = None;
        let sent = std::mem::take(&mut self.held);
        ExportOutcome::delivered(sent.len())
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        self.send_at = None;
        let sent = std::mem::take(&mut self.held);
        ExportOutcome::delivered(sent.len())
    }
}

/// `Exporter::next_poll`: "When the worker should next call
/// [`Exporter::poll`] even if no new document arrives (a batching
/// exporter's send deadline)"; `ExportOutcome`: documents an exporter keeps
/// "are reported by a later call (`export`, [`Exporter::poll`], ...)".
///
/// The worker called `poll` only when its wait on the queue timed out: while
/// the queue was never empty (traces finishing faster than the exporter
/// takes them: a busy service, a slow exporter), `poll` was never called,
/// and a batch due 50 ms after its first document waited as long as the
/// traffic lasted. Found by an audit of the rustdoc's claims.
#[test]
fn poll_is_called_at_its_deadline_while_traces_keep_arriving() {
    let late = Arc::new(Mutex::new(None));
    let exporter = Batching {
        held: Vec::new(),
        send_at: None,
        delay: Duration::from_millis(50),
        export_cost: Duration::from_millis(5),
        first_send_late: late.clone(),
    };
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter)
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    // Traces as fast as this thread makes them, for 1.5 s (the queue, full,
    // drops some: counted, and no matter here).
    tracing::dispatcher::with_default(&dispatch, || {
        let end = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < end {
            tracing::info_span!("request").in_scope(|| {});
        }
    });
    let first_send_late = *late.lock().unwrap();
    let stats = xray.stats();
    xray.shutdown(Duration::from_secs(10)).unwrap();
    assert!(
        first_send_late.is_some_and(|l| l < Duration::from_millis(500)),
        "a batch due 50 ms after its first document was not sent by `poll` \
         within 500 ms of its deadline during 1.5 s of traffic (first send \
         {first_send_late:?} late); stats then: {stats:?}"
    );
}
