//! The ledger: every span or document the layer accepts is either delivered
//! or counted lost in `stats()`, exactly once, through every loss path at
//! once (a tiny queue, failing, slow, holding and panicking exporters,
//! streaming, splitting, trimming, flushes and shutdowns racing producers,
//! Lambda, `HttpExporter` against a flaky API).
//!
//! The tests introduced as "A user ..." were findings of a hunt: each says
//! what a user saw before its fix, and what is expected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{Dispatch, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportError, ExportOutcome, Exporter};
use tracing_xray::{Builder, XrayHandle};

mod common;

/// A sampled-everything layer on `exporter`, configured by `configure`.
fn dispatch_with(
    exporter: impl Exporter,
    configure: impl FnOnce(Builder) -> Builder,
) -> (XrayHandle, Dispatch) {
    let builder = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample);
    let layer = configure(builder).with_exporter(exporter).build();
    let xray = layer.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    (xray, dispatch)
}

/// The tests of this file one at a time: the soak reads the process's RSS.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Panics of the test's own exporters are expected: not printed.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some("tracing-xray") {
                default(info);
            }
        }));
    });
}

/// How many (sub)segments a document holds, its top included.
fn entities(doc: &str) -> u64 {
    let v: Value = serde_json::from_str(doc).expect("document is JSON");
    let mut n = 0;
    let mut stack = vec![&v];
    while let Some(e) = stack.pop() {
        n += 1;
        if let Some(subs) = e["subsegments"].as_array() {
            stack.extend(subs.iter());
        }
    }
    n
}

/// What an exporter was handed, shared with the test.
#[derive(Clone, Default)]
struct Seen {
    docs: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicU64>,
}

impl Seen {
    fn record(&self, batch: &[Document]) {
        let mut docs = self.docs.lock().unwrap();
        docs.extend(batch.iter().map(|d| d.as_str().to_owned()));
    }
    fn documents(&self) -> usize {
        self.docs.lock().unwrap().len()
    }
    fn spans(&self) -> u64 {
        self.docs.lock().unwrap().iter().map(|d| entities(d)).sum()
    }
    /// Independent subsegment documents.
    fn independent(&self) -> u64 {
        let docs = self.docs.lock().unwrap();
        docs.iter()
            .filter(|d| d.starts_with(r#"{"type":"subsegment""#))
            .count() as u64
    }
    /// (Sub)segments marked trimmed.
    fn trimmed(&self) -> u64 {
        let docs = self.docs.lock().unwrap();
        let mut n = 0;
        for d in docs.iter() {
            let v: Value = serde_json::from_str(d).unwrap();
            let mut stack = vec![&v];
            while let Some(e) = stack.pop() {
                if e["metadata"]["tracing_xray"]["trimmed"] == Value::Bool(true) {
                    n += 1;
                }
                if let Some(subs) = e["subsegments"].as_array() {
                    stack.extend(subs.iter());
                }
            }
        }
        n
    }
}

// ---------------------------------------------------------------------------
// documents an exporter still holds at shutdown vanish uncounted.
// ---------------------------------------------------------------------------

/// A batching exporter (as the `Exporter::flush` rustdoc example, `Held`)
/// whose destination does not answer in time at shutdown: it cannot settle
/// what it holds within the timeout, and reports nothing for those.
struct HoldsAtShutdown {
    seen: Seen,
    held: Vec<Document>,
}

impl Exporter for HoldsAtShutdown {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.seen.record(&batch);
        self.held.extend(batch);
        ExportOutcome::default() // reported by `flush`
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        // The destination did not answer in time: nothing settled.
        ExportOutcome::default()
    }
}

/// A user writes a batching exporter like the `Exporter::flush` rustdoc
/// example (`Held`: documents kept in `export`, sent in `flush`), keeping
/// the trait's default `shutdown` (which calls `flush`). Its destination
/// stops answering, so `flush` cannot settle what it holds. `XrayHandle::
/// flush` correctly says `Err(Timeout)` ("Documents it still holds when it
/// returns ... make `XrayHandle::flush` return `FlushError::Timeout`"). Then
/// the user shuts down: `shutdown` returns `Ok(())`, the worker drops the
/// exporter and the three documents it held with it, and `stats()` shows
/// them neither exported nor failed (`documents_exported +
/// documents_failed` = 0 for 3 handed over); no warning either
/// (`report_at_shutdown` only looks at failed and dropped). Expected: the
/// worker knows the number (`handed - settled`, the same figure it writes
/// off as failed when an exporter panics), so documents still unreported
/// when the exporter is dropped are counted in `documents_failed`, and
/// `shutdown` returns `Err(Timeout)` as `flush` does (README: losses are
/// "counted ... in `stats()`"; `Stats::documents_failed`; `shutdown`
/// "Exports everything already finished"). Cause: `Worker::run`'s
/// `Control::Shutdown` arm replies `true` and returns without comparing
/// `handed` and `settled`; the implicit end (every handle dropped) likewise.
#[test]
fn documents_an_exporter_holds_at_shutdown_are_counted_failed() {
    let _serial = serial();
    let seen = Seen::default();
    let exporter = HoldsAtShutdown {
        seen: seen.clone(),
        held: Vec::new(),
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..3 {
            info_span!("request").in_scope(|| {});
        }
    });
    assert!(
        xray.flush(Duration::from_millis(500)).is_err(),
        "flush reports the held documents"
    );
    let shutdown = xray.shutdown(Duration::from_millis(500));
    let stats = xray.stats();
    let handed = seen.documents() as u64;
    assert_eq!(handed, 3);
    assert_eq!(
        (
            stats.documents_exported + stats.documents_failed,
            shutdown.is_err()
        ),
        (handed, true),
        "documents dropped with the exporter at shutdown are counted, and \
         shutdown says it did not finish; stats: {stats:?}, shutdown: {shutdown:?}"
    );
}

// ---------------------------------------------------------------------------
// The combined ledger: every loss path at once.
// ---------------------------------------------------------------------------

/// Records every document, fails every fifth, keeps some for its next call,
/// panics now and then (losing what it holds, as the worker expects), and
/// is slow.
struct Chaotic {
    seen: Seen,
    held: Vec<Document>,
    panic_every: u64,
}

impl Chaotic {
    fn settle(&mut self, mut batch: Vec<Document>, hold_some: bool) -> ExportOutcome {
        let call = self.seen.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.seen.record(&batch);
        if call.is_multiple_of(7) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.panic_every > 0 && call.is_multiple_of(self.panic_every) {
            self.held.clear();
            panic!("chaotic exporter, call {call}");
        }
        let mut all = std::mem::take(&mut self.held);
        if hold_some && batch.len() > 1 {
            self.held = batch.split_off(batch.len() / 2);
        }
        all.extend(batch);
        let mut outcome = ExportOutcome::default();
        for (i, doc) in all.into_iter().enumerate() {
            if (call as usize + i).is_multiple_of(5) {
                outcome.fail(doc, ExportError::Rejected("every fifth".into()));
            } else {
                outcome.delivered += 1;
            }
        }
        outcome
    }
}

impl Exporter for Chaotic {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.settle(batch, true)
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        self.settle(Vec::new(), false)
    }
    fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
        self.settle(Vec::new(), false)
    }
}

/// One of a few trace shapes; returns how many spans it made.
fn one_trace(kind: usize, i: usize) -> u64 {
    match kind % 6 {
        0 => {
            let root = info_span!("small", i);
            let _g = root.enter();
            for c in 0..(i % 5) {
                info_span!("child", c).in_scope(|| {});
            }
            1 + (i % 5) as u64
        }
        1 => {
            // Deeper than 32 levels: split by depth.
            fn nest(d: usize) -> u64 {
                if d == 0 {
                    return 0;
                }
                info_span!("level", d).in_scope(|| 1 + nest(d - 1))
            }
            info_span!("deep").in_scope(|| 1 + nest(40))
        }
        2 => {
            // Wide: split by count.
            info_span!("wide").in_scope(|| {
                for c in 0..60 {
                    info_span!("leaf", c).in_scope(|| {});
                }
            });
            61
        }
        3 => {
            // Long-lived root: streams past the held bound.
            let root = info_span!("long_lived");
            for c in 0..35 {
                info_span!(parent: &root, "job", c).in_scope(|| {});
            }
            drop(root);
            36
        }
        4 => {
            // A span too large for one document: trimmed.
            let big = "x".repeat(60_000);
            info_span!("big_root").in_scope(|| {
                info_span!("big", metadata.a = big.as_str(), metadata.b = big.as_str())
                    .in_scope(|| {});
            });
            2
        }
        _ => {
            // Nested children under a long-lived root, streamed in subtrees.
            let root = info_span!("batch");
            for c in 0..8 {
                let mid = info_span!(parent: &root, "mid", c);
                for g in 0..3 {
                    info_span!(parent: &mid, "leaf", g).in_scope(|| {});
                }
            }
            drop(root);
            1 + 8 * 4
        }
    }
}

/// Runs producers on `threads` threads until `stop`; the spans they made.
fn produce(
    dispatch: &Dispatch,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..threads)
        .map(|t| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut made = 0;
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        made += one_trace(i, i / 6);
                        i += 1;
                    }
                    made
                })
            })
        })
        .collect()
}

/// Shuts the layer down, waiting for it. The tests' 5 ms shutdown, made
/// while producers fill the queue, may not even be queued: the worker then
/// runs on, and the exporter holds what it kept for its next call, which
/// never comes. This one is queued (or finds the first one was).
/// Then, the first one queued but not waited for, waits (5 s at most) for
/// the worker to have reported all it handed over.
///
/// This shutdown may say `Timeout`: the chaotic exporter's `shutdown` call
/// may be one of those that panic, losing what it held, which the worker
/// counts failed (and then says the shutdown did not finish). Either way
/// the shutdown was queued: a flush says `AlreadyShutdown`.
fn shut_down_for_sure(xray: &XrayHandle, seen: &Seen) {
    use tracing_xray::FlushError;
    let again = xray.shutdown(Duration::from_secs(10));
    assert!(
        matches!(
            again,
            Ok(()) | Err(FlushError::AlreadyShutdown | FlushError::Timeout(_))
        ),
        "{again:?}"
    );
    let flushed = xray.flush(Duration::from_millis(1));
    assert_eq!(flushed, Err(FlushError::AlreadyShutdown), "after {again:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = xray.stats();
        let reported = stats.documents_exported + stats.documents_failed;
        if reported >= seen.documents() as u64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// Every span made is in a document handed to the exporter or counted
/// dropped; every document handed over is counted exported or failed; with
/// a tiny queue, splitting, streaming, trimming, an exporter that fails,
/// holds and panics, flushes racing with producers, and a short shutdown
/// while they go on.
#[test]
fn every_span_is_handed_over_or_counted_dropped() {
    let _serial = serial();
    quiet_panics();
    let seen = Seen::default();
    let exporter = Chaotic {
        seen: seen.clone(),
        held: Vec::new(),
        panic_every: 29,
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| {
        b.with_queue_capacity(8)
            .with_max_queued_bytes(1 << 20)
            .with_streaming_threshold(20)
            .with_max_held_subsegments(10)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(&dispatch, 3, &stop);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let _ = xray.flush(Duration::from_millis(3));
        let _ = xray.stats();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = xray.shutdown(Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let made: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    shut_down_for_sure(&xray, &seen);
    let stats = xray.stats();
    let handed_docs = seen.documents() as u64;
    let handed_spans = seen.spans();
    eprintln!("made {made}, handed {handed_spans} spans in {handed_docs} docs, {stats:?}");
    assert!(stats.traces_dropped > 0 && stats.documents_failed > 0);
    assert_eq!(
        stats.documents_exported + stats.documents_failed,
        handed_docs,
        "{stats:?}"
    );
    assert_eq!(made, handed_spans + stats.spans_dropped, "{stats:?}");
    assert_eq!(seen.independent(), stats.subsegments_streamed, "{stats:?}");
    assert_eq!(seen.trimmed(), stats.spans_trimmed, "{stats:?}");
    let largest = seen.docs.lock().unwrap().iter().map(String::len).max();
    assert!(largest <= Some(tracing_xray::export::MAX_DOCUMENT_BYTES));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The same ledger in Lambda mode: each invocation's top-level spans leave
/// as independent subsegments as they end (the facade is Lambda's, never
/// sent), with a tiny queue and the chaotic exporter.
#[test]
fn lambda_invocations_are_handed_over_or_counted_dropped() {
    let _serial = serial();
    quiet_panics();
    let seen = Seen::default();
    let exporter = Chaotic {
        seen: seen.clone(),
        held: Vec::new(),
        panic_every: 23,
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| {
        b.with_lambda(true)
            .with_queue_capacity(8)
            .with_streaming_threshold(20)
            .with_max_held_subsegments(10)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut made = 0;
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let header = format!(
                            "Root=1-6566f1a0-{:024x};Parent=1111111111111111;Sampled=1",
                            i + 1
                        );
                        let invoke = info_span!(
                            "Lambda runtime invoke",
                            requestId = "r",
                            xrayTraceId = %header
                        );
                        invoke.in_scope(|| {
                            made += one_trace(i, i / 6);
                            made += one_trace(i + 1, i / 6);
                        });
                        i += 1;
                    }
                    made
                })
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let _ = xray.flush(Duration::from_millis(3));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = xray.shutdown(Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let made: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    shut_down_for_sure(&xray, &seen);
    let stats = xray.stats();
    eprintln!(
        "made {made}, handed {} spans in {} docs, {stats:?}",
        seen.spans(),
        seen.documents()
    );
    assert_eq!(
        stats.documents_exported + stats.documents_failed,
        seen.documents() as u64,
        "{stats:?}"
    );
    assert_eq!(made, seen.spans() + stats.spans_dropped, "{stats:?}");
    assert_eq!(seen.independent(), stats.subsegments_streamed, "{stats:?}");
    assert_eq!(seen.trimmed(), stats.spans_trimmed, "{stats:?}");
}

/// Sums `metadata.tracing_xray.KEY` over every (sub)segment handed over.
fn mark_sum(seen: &Seen, key: &str) -> u64 {
    let docs = seen.docs.lock().unwrap();
    let mut n = 0;
    for d in docs.iter() {
        let v: Value = serde_json::from_str(d).unwrap();
        let mut stack = vec![&v];
        while let Some(e) = stack.pop() {
            n += e["metadata"]["tracing_xray"][key].as_u64().unwrap_or(0);
            if let Some(subs) = e["subsegments"].as_array() {
                stack.extend(subs.iter());
            }
        }
    }
    n
}

/// Records and delivers everything.
struct Record(Seen);

impl Exporter for Record {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.0.record(&batch);
        ExportOutcome::delivered(batch.len())
    }
}

/// `exceptions_dropped` in `stats()` is what the spans themselves say they
/// lost (`metadata.tracing_xray.exceptions_dropped`), through trimming and
/// splitting; `spans_trimmed` is the number of spans marked trimmed.
#[test]
fn exception_and_event_counters_match_the_spans_marks() {
    let _serial = serial();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(Record(seen.clone()), |b| {
        b.with_events(true).with_streaming_threshold(5)
    });
    let big = "e".repeat(20_000);
    tracing::dispatcher::with_default(&dispatch, || {
        for round in 0..4 {
            info_span!("root", round).in_scope(|| {
                for c in 0..(3 + round * 4) {
                    info_span!("child", c).in_scope(|| {
                        for e in 0..(5 + round * 3) {
                            tracing::error!(e, "{}", &big[..(round + 1) * 4_000]);
                        }
                        for e in 0..40 {
                            tracing::info!(e, "event");
                        }
                    });
                }
            });
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let stats = xray.stats();
    eprintln!("{stats:?}");
    assert!(stats.exceptions_dropped > 0 && stats.events_dropped > 0);
    assert_eq!(
        mark_sum(&seen, "exceptions_dropped"),
        stats.exceptions_dropped
    );
    assert_eq!(seen.trimmed(), stats.spans_trimmed);
}

// ---------------------------------------------------------------------------
// a panic payload whose Drop panics takes the worker down.
// ---------------------------------------------------------------------------

/// A panic payload that panics again when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's drop panics too");
        }
    }
}

/// Holds the first batch, then panics with a [`Bomb`] in the next `export`.
struct PanicsWithABomb {
    seen: Seen,
    held: Vec<Document>,
}

impl Exporter for PanicsWithABomb {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.seen.record(&batch);
        let call = self.seen.calls.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            self.held.extend(batch);
            return ExportOutcome::default();
        }
        self.held.clear();
        if call == 1 {
            std::panic::panic_any(Bomb);
        }
        ExportOutcome::delivered(batch.len())
    }
}

/// A user's exporter panics with a payload whose `Drop` panics (an error
/// value carried with `panic_any`, whose `Drop` panics). The README
/// promises: "an exporter that panics, in any of its methods, loses the
/// documents it had not yet reported (counted in
/// `stats().documents_failed`), not the worker, nor does an error of its
/// whose `Display` or `Drop` panics". The worker catches the first panic
/// and counts the documents, then drops the payload in its own frame
/// (`Worker::call`, the `Err(_)` arm): the second panic unwinds out of the
/// worker, which dies. What the user sees: `flush` answers
/// `Err(AlreadyShutdown)` though nobody shut down, and every trace from
/// then on is dropped (counted). Expected: the worker goes on, as for any
/// other panic of the exporter (the payload dropped under `catch_unwind`,
/// or leaked).
#[test]
fn a_panic_payload_whose_drop_panics_leaves_the_worker_running() {
    let _serial = serial();
    quiet_panics();
    let seen = Seen::default();
    let exporter = PanicsWithABomb {
        seen: seen.clone(),
        held: Vec::new(),
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("first").in_scope(|| {});
    });
    let held = xray.flush(Duration::from_secs(2));
    assert!(held.is_err(), "the exporter holds the first document");
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("second").in_scope(|| {}); // its export panics
    });
    let flushed = xray.flush(Duration::from_secs(2));
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("third").in_scope(|| {});
    });
    let after = xray.flush(Duration::from_secs(2));
    let stats = xray.stats();
    assert_eq!(
        stats.documents_exported + stats.documents_failed,
        seen.documents() as u64,
        "{stats:?}"
    );
    assert_eq!(
        (flushed, after, stats.traces_dropped),
        (Ok(()), Ok(()), 0),
        "the worker survives the exporter's panic; {stats:?}"
    );
}

/// Panics with a [`Bomb`] for the first request it decides.
struct BombSampler(AtomicBool);

impl tracing_xray::sampling::Sampler for BombSampler {
    fn sample(
        &self,
        _request: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        if !self.0.swap(true, Ordering::SeqCst) {
            std::panic::panic_any(Bomb);
        }
        tracing_xray::sampling::SamplingDecision::new(true)
    }
}

#[test]
#[ignore]
fn sampler_bomb_child() {
    quiet_panics();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(Record(seen.clone()), |b| {
        b.with_sampler(BombSampler(AtomicBool::new(false)))
    });
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tracing::dispatcher::with_default(&dispatch, || {
            info_span!("request").in_scope(|| {
                info_span!("child").in_scope(|| {});
            });
        })
    }));
    assert!(first.is_ok(), "the sampler's panic reached the application");
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("request").in_scope(|| {
            info_span!("child").in_scope(|| {});
        });
    });
    xray.flush(Duration::from_secs(2)).unwrap();
    assert_eq!(seen.documents(), 1);
}

/// A user's own `Sampler` panics with a payload whose `Drop` panics (an
/// error value raised with `panic_any`). The README promises: "A sampler
/// that panics samples nothing: the trace it was deciding is not sent, and
/// the panic never reaches the application". The layer catches the first
/// panic but drops the payload in `LayerInner::decide_pending`
/// (`unwrap_or_else(|_| ..)`), on the application's thread, inside a layer
/// callback while the root span's extensions are locked: the second panic
/// unwinds into the application (here, out of the first child's
/// `info_span!`), or aborts the process. Expected: the request goes on,
/// unsampled, and the next one is traced. Run in a process of its own.
#[test]
fn a_sampler_panic_payload_whose_drop_panics_stays_in_the_layer() {
    common::run_alone("sampler_bomb_child");
}

/// Always asks to be polled now (a timer always due).
struct AlwaysDue(Seen);

impl Exporter for AlwaysDue {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.0.record(&batch);
        ExportOutcome::delivered(batch.len())
    }
    fn next_poll(&self) -> Option<Instant> {
        Some(Instant::now())
    }
    fn poll(&mut self, _now: Instant) -> ExportOutcome {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        ExportOutcome::default()
    }
}

/// An exporter whose timer is always due still gets its documents.
#[test]
fn an_exporter_always_due_still_gets_traces_and_flushes() {
    let _serial = serial();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(AlwaysDue(seen.clone()), |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..100 {
            info_span!("request").in_scope(|| {});
        }
    });
    assert_eq!(xray.flush(Duration::from_secs(2)), Ok(()));
    assert_eq!(seen.documents(), 100);
    xray.shutdown(Duration::from_secs(2)).unwrap();
}

// ---------------------------------------------------------------------------
// The ledger through HttpExporter against a flaky API on 127.0.0.1.
// ---------------------------------------------------------------------------

/// Forwards to an inner exporter, counting what it hands over and what the
/// inner one reports.
#[cfg(feature = "http")]
struct Forward<E> {
    inner: E,
    handed: Arc<AtomicU64>,
    reported: Arc<AtomicU64>,
}

#[cfg(feature = "http")]
impl<E: Exporter> Forward<E> {
    fn count(&self, o: ExportOutcome) -> ExportOutcome {
        self.reported
            .fetch_add((o.delivered + o.failures.len()) as u64, Ordering::SeqCst);
        o
    }
}

#[cfg(feature = "http")]
impl<E: Exporter> Exporter for Forward<E> {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.handed.fetch_add(batch.len() as u64, Ordering::SeqCst);
        let o = self.inner.export(batch);
        self.count(o)
    }
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        let o = self.inner.flush(timeout);
        self.count(o)
    }
    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        let o = self.inner.shutdown(timeout);
        self.count(o)
    }
    fn next_poll(&self) -> Option<Instant> {
        self.inner.next_poll()
    }
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        let o = self.inner.poll(now);
        self.count(o)
    }
}

/// A flaky X-Ray API: 500s, 429s, partial answers, answers too slow.
#[cfg(feature = "http")]
fn flaky_api() -> (String, Arc<Mutex<std::collections::HashSet<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let acc = accepted.clone();
    let n = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (acc, n) = (acc.clone(), n.clone());
            std::thread::spawn(move || {
                loop {
                    let mut reader = BufReader::new(&stream);
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let ids: Vec<String> = v["TraceSegmentDocuments"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|d| {
                                    let d: Value = serde_json::from_str(d.as_str()?).ok()?;
                                    Some(d["id"].as_str()?.to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let k = n.fetch_add(1, Ordering::SeqCst);
                    let (status, answer) = match k % 6 {
                        0 => (500, "{}".to_owned()),
                        1 => (429, r#"{"__type":"ThrottlingException"}"#.to_owned()),
                        2 if !ids.is_empty() => {
                            let mut a = acc.lock().unwrap();
                            for id in &ids[1..] {
                                a.insert(id.clone());
                            }
                            (
                                200,
                                format!(
                                    r#"{{"UnprocessedTraceSegments":[{{"Id":"{}","ErrorCode":"InternalFailure","Message":"m"}}]}}"#,
                                    ids[0]
                                ),
                            )
                        }
                        3 => {
                            std::thread::sleep(Duration::from_millis(400));
                            (500, "{}".to_owned())
                        }
                        _ => {
                            let mut a = acc.lock().unwrap();
                            a.extend(ids.iter().cloned());
                            (200, r#"{"UnprocessedTraceSegments":[]}"#.to_owned())
                        }
                    };
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                     content-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

/// Through `HttpExporter` and a flaky API, with short flushes racing with
/// producers and a short shutdown: every document handed over is reported
/// once, and none is counted delivered that the API did not take.
#[cfg(feature = "http")]
#[test]
fn http_exporter_ledger_against_a_flaky_api() {
    let _serial = serial();
    let (url, accepted) = flaky_api();
    let http = tracing_xray::export::HttpExporter::builder()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_static_credentials("AKIDEXAMPLE", "secret", None)
        .with_batch_delay(Duration::from_millis(20))
        .with_read_timeout(Duration::from_millis(150))
        .with_retry_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_backlog_capacity(300)
        .build()
        .unwrap();
    let (handed, reported) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let exporter = Forward {
        inner: http,
        handed: handed.clone(),
        reported: reported.clone(),
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| {
        b.with_queue_capacity(16).with_max_held_subsegments(10)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        one_trace(i % 4 + if i % 4 == 1 { 2 } else { 0 }, i);
                        i += 1;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                })
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let _ = xray.flush(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let shutdown = xray.shutdown(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let stats = xray.stats();
    let handed = handed.load(Ordering::SeqCst);
    let accepted = accepted.lock().unwrap().len() as u64;
    eprintln!("shutdown {shutdown:?}, handed {handed}, accepted {accepted}, {stats:?}");
    assert_eq!(
        stats.documents_exported + stats.documents_failed,
        handed,
        "{stats:?}"
    );
    assert_eq!(reported.load(Ordering::SeqCst), handed);
    assert!(stats.documents_exported <= accepted, "{stats:?}");
}

/// Sums the annotations of every (sub)segment handed over.
fn annotations_in(seen: &Seen) -> (u64, Vec<u64>) {
    let docs = seen.docs.lock().unwrap();
    let mut per_trace: std::collections::BTreeMap<String, u64> = Default::default();
    let mut n = 0;
    for d in docs.iter() {
        let v: Value = serde_json::from_str(d).unwrap();
        let trace = v["trace_id"].as_str().unwrap_or_default().to_owned();
        let mut stack = vec![&v];
        while let Some(e) = stack.pop() {
            let k = e["annotations"].as_object().map_or(0, |a| a.len()) as u64;
            n += k;
            *per_trace.entry(trace.clone()).or_default() += k;
            if let Some(subs) = e["subsegments"].as_array() {
                stack.extend(subs.iter());
            }
        }
    }
    (n, per_trace.into_values().collect())
}

/// Every annotation written is indexed or counted demoted, whole, split and
/// streamed; no trace indexes more than 50.
#[test]
fn annotations_are_indexed_or_counted_demoted() {
    let _serial = serial();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(Record(seen.clone()), |b| {
        b.with_streaming_threshold(7).with_max_held_subsegments(9)
    });
    let mut written = 0u64;
    tracing::dispatcher::with_default(&dispatch, || {
        // Whole, then split by count.
        for children in [20u64, 70] {
            info_span!("root", annotation.r1 = 1, annotation.r2 = 2).in_scope(|| {
                for c in 0..children {
                    info_span!("child", annotation.c = c).in_scope(|| {});
                }
            });
            written += 2 + children;
        }
        // A long-lived root streaming its children, nested.
        let root = info_span!(
            "long",
            annotation.r1 = 1,
            annotation.r2 = 2,
            annotation.r3 = 3
        );
        written += 3;
        for c in 0..40u64 {
            let mid = info_span!(parent: &root, "mid", annotation.m = c);
            info_span!(parent: &mid, "leaf", annotation.l = c, annotation.l2 = c).in_scope(|| {});
            drop(mid);
            written += 3;
        }
        drop(root);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let stats = xray.stats();
    let (indexed, per_trace) = annotations_in(&seen);
    eprintln!("written {written}, indexed {indexed} {per_trace:?}, {stats:?}");
    assert!(stats.annotations_demoted > 0);
    assert_eq!(indexed + stats.annotations_demoted, written, "{stats:?}");
    assert!(per_trace.iter().all(|&n| n <= 50), "{per_trace:?}");
}

/// Holds every other batch until the next call or a flush; slow.
struct Batching {
    seen: Seen,
    held: Vec<Document>,
    delivered: Arc<AtomicU64>,
}

impl Exporter for Batching {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        std::thread::sleep(Duration::from_micros(500));
        let call = self.seen.calls.fetch_add(1, Ordering::SeqCst);
        self.held.extend(batch);
        if call.is_multiple_of(2) {
            return ExportOutcome::default();
        }
        self.flush(Duration::ZERO)
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        let sent = std::mem::take(&mut self.held);
        self.seen.record(&sent);
        self.delivered
            .fetch_add(sent.len() as u64, Ordering::SeqCst);
        ExportOutcome::delivered(sent.len())
    }
}

/// A flush that returns `Ok` has had every trace finished before it
/// delivered (by a batching exporter) or counted dropped, with several
/// threads producing and flushing at once through a tiny queue.
#[test]
fn a_successful_flush_leaves_nothing_behind() {
    let _serial = serial();
    let seen = Seen::default();
    let delivered = Arc::new(AtomicU64::new(0));
    let exporter = Batching {
        seen: seen.clone(),
        held: Vec::new(),
        delivered: delivered.clone(),
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| b.with_queue_capacity(2));
    let finished = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (dispatch, xray, finished, delivered, failures) = (
                dispatch.clone(),
                xray.clone(),
                finished.clone(),
                delivered.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..300 {
                        for _ in 0..(i % 4) {
                            info_span!("request", t, i).in_scope(|| {
                                info_span!("child").in_scope(|| {});
                            });
                            finished.fetch_add(1, Ordering::SeqCst);
                        }
                        let before = finished.load(Ordering::SeqCst);
                        if xray.flush(Duration::from_secs(10)).is_ok() {
                            let stats = xray.stats();
                            let accounted = delivered.load(Ordering::SeqCst) + stats.traces_dropped;
                            if accounted < before {
                                failures.lock().unwrap().push((before, accounted, stats));
                            }
                        }
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} flushes left traces behind: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// Blocks in `flush` and `shutdown` far past their timeouts, reporting what
/// it holds only then.
struct Stuck {
    seen: Seen,
    held: Vec<Document>,
}

impl Exporter for Stuck {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.seen.record(&batch);
        self.held.extend(batch);
        ExportOutcome::default()
    }
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        std::thread::sleep(timeout + Duration::from_millis(150));
        ExportOutcome::delivered(std::mem::take(&mut self.held).len())
    }
    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        std::thread::sleep(timeout + Duration::from_millis(150));
        let mut o = ExportOutcome::default();
        for d in std::mem::take(&mut self.held) {
            o.fail(d, ExportError::Timeout(timeout));
        }
        o
    }
}

/// An exporter stuck in `flush` and `shutdown` past their timeouts, with
/// producers going on: the callers time out, and once the worker is done
/// every span is handed over or counted dropped, every document counted.
#[test]
fn an_exporter_stuck_past_its_timeouts_loses_nothing_uncounted() {
    let _serial = serial();
    let seen = Seen::default();
    let exporter = Stuck {
        seen: seen.clone(),
        held: Vec::new(),
    };
    let (xray, dispatch) = dispatch_with(exporter, |b| {
        b.with_queue_capacity(16).with_max_held_subsegments(10)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(&dispatch, 2, &stop);
    let mut timeouts = 0;
    for _ in 0..5 {
        if xray.flush(Duration::from_millis(20)).is_err() {
            timeouts += 1;
        }
    }
    let shutdown = xray.shutdown(Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let made: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    // A shutdown that could not even be queued changed nothing: again.
    let again = xray.shutdown(Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(1500));
    let stats = xray.stats();
    eprintln!("timeouts {timeouts}, shutdown {shutdown:?} then {again:?}, made {made}, {stats:?}");
    assert!(timeouts > 0 && shutdown.is_err());
    assert_eq!(
        stats.documents_exported + stats.documents_failed,
        seen.documents() as u64,
        "{stats:?}"
    );
    assert_eq!(made, seen.spans() + stats.spans_dropped, "{stats:?}");
}

/// A long-lived root streaming while AWS SDK calls are in progress (their
/// spans held back until the call ends, up to half the bounds), with the
/// SDK's internal spans kept: every span is handed over or counted dropped.
#[test]
fn sdk_spans_held_back_while_streaming_are_handed_over_or_counted() {
    let _serial = serial();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(Record(seen.clone()), |b| {
        b.with_max_held_subsegments(12)
            .with_aws_sdk_internal_spans(true)
            .with_queue_capacity(64)
    });
    let mut made = 0u64;
    tracing::dispatcher::with_default(&dispatch, || {
        for round in 0..20usize {
            let root = info_span!("consumer", round);
            made += 1;
            let mut calls = Vec::new();
            for step in 0..60usize {
                if step % 7 == 0 {
                    let op = tracing::info_span!(
                        target: "aws_sdk_dynamodb",
                        parent: &root,
                        "DynamoDB.GetItem",
                        rpc.system = "aws-api",
                        rpc.service = "DynamoDB",
                        rpc.method = "GetItem"
                    );
                    made += 1;
                    calls.push(op);
                }
                // Internal spans of the calls in progress end now and then.
                for op in &calls {
                    if (step + round) % 3 == 0 {
                        tracing::info_span!(target: "aws_smithy_runtime", parent: op, "try_attempt")
                            .in_scope(|| {
                                tracing::info_span!(target: "aws_smithy_runtime", "dispatch")
                                    .in_scope(|| {});
                            });
                        made += 2;
                    }
                }
                // Plain work of the root.
                info_span!(parent: &root, "step", step).in_scope(|| {});
                made += 1;
                // Calls end, oldest first, some late.
                if step % 11 == 10 && !calls.is_empty() {
                    calls.remove(0);
                }
            }
            drop(calls);
            drop(root);
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let stats = xray.stats();
    eprintln!(
        "made {made}, handed {} in {} docs, {stats:?}",
        seen.spans(),
        seen.documents()
    );
    assert_eq!(made, seen.spans() + stats.spans_dropped, "{stats:?}");
    assert_eq!(stats.documents_exported, seen.documents() as u64);
    assert_eq!(seen.independent(), stats.subsegments_streamed, "{stats:?}");
}

/// Two layers with disjoint per-layer filters in one subscriber, their
/// exporters writing to one sink, tiny queues: each layer's ledger holds on
/// its own, and their sum is what the sink got.
#[test]
fn two_layers_sharing_one_sink_keep_their_own_ledgers() {
    use tracing_subscriber::filter::filter_fn;
    let _serial = serial();
    let sink = Seen::default();
    let make = |service: &str| {
        tracing_xray::builder()
            .with_service_name(service)
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_queue_capacity(4)
            .with_max_held_subsegments(5)
            .with_exporter(Record(sink.clone()))
            .build()
    };
    let (a, b) = (make("a"), make("b"));
    let (ha, hb) = (a.handle(), b.handle());
    let subscriber = tracing_subscriber::registry()
        .with(a.with_filter(filter_fn(|m| m.target() == "svc_a")))
        .with(b.with_filter(filter_fn(|m| m.target() == "svc_b")));
    let dispatch = Dispatch::new(subscriber);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let (mut made_a, mut made_b) = (0u64, 0u64);
                    for i in 0..3000usize {
                        if (i + t) % 2 == 0 {
                            let root = tracing::info_span!(target: "svc_a", "req_a");
                            for _ in 0..(i % 12) {
                                tracing::info_span!(target: "svc_a", parent: &root, "c")
                                    .in_scope(|| {});
                            }
                            made_a += 1 + (i % 12) as u64;
                        } else {
                            tracing::info_span!(target: "svc_b", "req_b").in_scope(|| {
                                // A span of the other layer inside: a root of its own there.
                                tracing::info_span!(target: "svc_a", "inner_a").in_scope(|| {});
                                tracing::info_span!(target: "svc_b", "c").in_scope(|| {});
                            });
                            made_a += 1;
                            made_b += 2;
                        }
                    }
                    (made_a, made_b)
                })
            })
        })
        .collect();
    let (mut made_a, mut made_b) = (0, 0);
    for t in threads {
        let (x, y) = t.join().unwrap();
        made_a += x;
        made_b += y;
    }
    ha.flush(Duration::from_secs(5)).unwrap();
    hb.flush(Duration::from_secs(5)).unwrap();
    let (sa, sb) = (ha.stats(), hb.stats());
    let docs = sink.docs.lock().unwrap().clone();
    let spans_of = |svc: &str| -> u64 {
        docs.iter()
            .filter(|d| {
                let v: Value = serde_json::from_str(d).unwrap();
                v["name"] == svc
                    || v["type"] == "subsegment" && {
                        // Streamed parts of `a` (only `a` streams: long-lived roots).
                        svc == "a"
                    }
            })
            .map(|d| entities(d))
            .sum()
    };
    eprintln!("a {made_a} {sa:?}\nb {made_b} {sb:?}");
    assert_eq!(
        sa.documents_exported + sb.documents_exported,
        docs.len() as u64
    );
    assert_eq!(made_a, spans_of("a") + sa.spans_dropped, "{sa:?}");
    assert_eq!(made_b, spans_of("b") + sb.spans_dropped, "{sb:?}");
}

/// Blocks every `export` until released.
struct Blocked(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Exporter for Blocked {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let (lock, cv) = &*self.0;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        ExportOutcome::delivered(batch.len())
    }
}

/// With the worker held up, traces whose spans carry many large events and
/// errors wait within the queue's bound in bytes: the process's memory does
/// not grow with the number of such traces finished.
#[test]
fn events_and_errors_count_in_the_queues_bound_in_bytes() {
    let _serial = serial();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (xray, dispatch) = dispatch_with(Blocked(gate.clone()), |b| {
        b.with_events(true).with_max_queued_bytes(4 << 20)
    });
    let value = "v".repeat(30_000);
    let before = rss_kib();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..1500 {
            info_span!("request", i).in_scope(|| {
                info_span!("child").in_scope(|| {
                    for e in 0..40 {
                        tracing::info!(e, a = value.as_str(), b = value.as_str(), "event");
                    }
                    for e in 0..10 {
                        tracing::error!(e, detail = value.as_str(), "{}", &value[..20_000]);
                    }
                });
            });
        }
    });
    let after = rss_kib();
    let stats = xray.stats();
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    xray.flush(Duration::from_secs(10)).unwrap();
    eprintln!("rss {before} -> {after} KiB, {stats:?}");
    assert!(stats.traces_dropped > 1000, "{stats:?}");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

// ---------------------------------------------------------------------------
// `traces_queued` runs backwards while the queue is full.
// ---------------------------------------------------------------------------

/// A user exports `stats()` to a monitoring system every few seconds, as
/// counters (`traces_queued` is documented as the traces "handed to the
/// worker"). During an incident the worker is held up (a slow API) and the
/// queue is full: the application threads' sends fail and are counted in
/// `traces_dropped`. What the user sees: `traces_queued` goes up and *down*
/// between two readings (a counter reset to any monitoring system, a spike
/// in its rate), and reads more traces handed to the worker than the worker
/// could ever have taken (here more than the queue's capacity plus the one
/// trace in `export`, while the worker took nothing more). Expected: a
/// trace that is dropped is never counted as queued, not even for a moment,
/// so that the counter only grows while the layer runs (the README: "a full
/// queue drops and counts"). Cause: `LayerInner::send` adds to
/// `traces_queued` before `try_send` and takes it back when the queue is
/// full.
#[test]
fn traces_queued_never_goes_back_while_the_queue_is_full() {
    let _serial = serial();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let capacity = 4u64;
    let (xray, dispatch) = dispatch_with(Blocked(gate.clone()), |b| {
        b.with_queue_capacity(capacity as usize)
    });
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("held_in_export").in_scope(|| {});
    });
    std::thread::sleep(Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    while !stop.load(Ordering::Relaxed) {
                        info_span!("request").in_scope(|| {});
                    }
                })
            })
        })
        .collect();
    let (mut backwards, mut most, mut last) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let queued = xray.stats().traces_queued;
        if queued < last {
            backwards += 1;
        }
        most = most.max(queued);
        last = queued;
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let stats = xray.stats();
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    xray.flush(Duration::from_secs(5)).unwrap();
    assert!(stats.traces_dropped > 0);
    assert_eq!(
        (backwards, most.min(capacity + 1)),
        (0, most),
        "traces_queued went backwards {backwards} times and read up to {most} \
         (1 in export + {capacity} queued could be handed over); {stats:?}"
    );
}

/// A small xorshift generator: rounds differ, runs repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Holds documents and reports them from `poll` (a timer), `flush` or
/// `shutdown`; fails some; panics in a method now and then (losing what it
/// holds, as the worker expects); reports everything it holds at shutdown.
struct Timed {
    seen: Seen,
    held: Vec<Document>,
    due: Option<Instant>,
    rng: Rng,
    panic_one_in: u64,
}

impl Timed {
    fn maybe_panic(&mut self, method: &str) {
        if self.panic_one_in > 0 && self.rng.below(self.panic_one_in) == 0 {
            self.held.clear();
            self.due = None;
            panic!("timed exporter panics in {method}");
        }
    }
    fn settle(&mut self) -> ExportOutcome {
        self.due = None;
        let mut o = ExportOutcome::default();
        for d in std::mem::take(&mut self.held) {
            if self.rng.below(4) == 0 {
                o.fail(d, ExportError::Rejected("no".into()));
            } else {
                o.delivered += 1;
            }
        }
        o
    }
}

impl Exporter for Timed {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.seen.record(&batch);
        self.held.extend(batch);
        self.maybe_panic("export");
        if self.rng.below(3) == 0 {
            return self.settle();
        }
        if self.due.is_none() {
            self.due = Some(Instant::now() + Duration::from_micros(self.rng.below(3000)));
        }
        ExportOutcome::default()
    }
    fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
        self.maybe_panic("flush");
        self.settle()
    }
    fn shutdown(&mut self, _timeout: Duration) -> ExportOutcome {
        self.maybe_panic("shutdown");
        self.settle()
    }
    fn next_poll(&self) -> Option<Instant> {
        self.due
    }
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        if self.due.is_some_and(|d| now >= d) {
            self.maybe_panic("poll");
            return self.settle();
        }
        ExportOutcome::default()
    }
}

/// Many short rounds, each with its own random mix of queue size, bounds,
/// exporter behaviour, producers, flush timeouts and shutdown timing: the
/// ledger holds in every round.
#[test]
fn random_rounds_keep_the_ledger() {
    let _serial = serial();
    quiet_panics();
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < Duration::from_secs(4) {
        round += 1;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ round.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let seen = Seen::default();
        let exporter = Timed {
            seen: seen.clone(),
            held: Vec::new(),
            due: None,
            rng: Rng(rng.next() | 1),
            panic_one_in: [0, 5, 40][rng.below(3) as usize],
        };
        let queue = 1 + rng.below(32) as usize;
        let threshold = 1 + rng.below(40) as usize;
        let held = 1 + rng.below(30) as usize;
        let (xray, dispatch) = dispatch_with(exporter, |b| {
            b.with_queue_capacity(queue)
                .with_streaming_threshold(threshold)
                .with_max_held_subsegments(held)
                .with_max_queued_bytes(1 << 20)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let producers = produce(&dispatch, 1 + rng.below(3) as usize, &stop);
        let run = Duration::from_millis(100 + rng.below(400));
        let begun = Instant::now();
        while begun.elapsed() < run {
            match rng.below(3) {
                0 => {
                    let _ = xray.flush(Duration::from_micros(rng.below(5000)));
                }
                1 => {
                    let _ = xray.clone().stats();
                }
                _ => std::thread::sleep(Duration::from_millis(rng.below(20))),
            }
        }
        let shutdown = xray.shutdown(Duration::from_micros(rng.below(20_000)));
        std::thread::sleep(Duration::from_millis(rng.below(50)));
        stop.store(true, Ordering::Relaxed);
        let made: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        if shutdown != Ok(()) {
            // Not queued in time, or not answered in time: again, to settle.
            let _ = xray.shutdown(Duration::from_secs(10));
        }
        let settle = Instant::now();
        let mut stats = xray.stats();
        while settle.elapsed() < Duration::from_secs(5)
            && (stats.documents_exported + stats.documents_failed != seen.documents() as u64
                || made != seen.spans() + stats.spans_dropped)
        {
            std::thread::sleep(Duration::from_millis(20));
            stats = xray.stats();
        }
        assert_eq!(
            stats.documents_exported + stats.documents_failed,
            seen.documents() as u64,
            "round {round}: {stats:?}"
        );
        assert_eq!(
            made,
            seen.spans() + stats.spans_dropped,
            "round {round}: {stats:?}"
        );
        assert_eq!(
            seen.independent(),
            stats.subsegments_streamed,
            "round {round}"
        );
    }
    eprintln!("{round} rounds");
}

// ---------------------------------------------------------------------------
// an exporter's errors whose Drop panics abort the process.
// ---------------------------------------------------------------------------

/// An exporter error type whose `Drop` panics (a bug in the user's error
/// type, or in something it owns).
#[derive(Debug)]
struct DropPanics;

impl std::fmt::Display for DropPanics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("destination refused")
    }
}

impl std::error::Error for DropPanics {}

impl Drop for DropPanics {
    fn drop(&mut self) {
        panic!("the exporter error's Drop panics");
    }
}

/// Fails every document with a [`DropPanics`] error.
struct FailsWithDropPanics(Seen);

impl Exporter for FailsWithDropPanics {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.0.record(&batch);
        let mut o = ExportOutcome::default();
        for d in batch {
            o.fail(d, ExportError::Other(Box::new(DropPanics)));
        }
        o
    }
}

#[test]
#[ignore]
fn drop_panics_child() {
    quiet_panics();
    let seen = Seen::default();
    let (xray, dispatch) = dispatch_with(FailsWithDropPanics(seen.clone()), |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        // Two traces in one batch: two failures in one outcome.
        info_span!("a").in_scope(|| {});
        info_span!("b").in_scope(|| {});
    });
    let _ = xray.flush(Duration::from_secs(2));
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("c").in_scope(|| {});
    });
    let flushed = xray.flush(Duration::from_secs(2));
    let stats = xray.stats();
    assert_eq!(flushed, Ok(()), "{stats:?}");
    assert_eq!(stats.documents_failed, seen.documents() as u64, "{stats:?}");
}

/// A user's exporter reports failures whose error (`ExportError::Other`
/// holding the user's error type) panics when dropped. The README promises
/// the worker survives "an error of its whose `Display` or `Drop` panics".
/// With one failure per outcome it does; with two or more in one outcome
/// (two traces finished in the same batch), the first error's `Drop` panics
/// while `Worker::account` drops the outcome's `failures`, the `Vec` goes
/// on dropping the others during that unwinding, and the second panic
/// aborts the whole process (Rust aborts on a panic while panicking): the
/// user's application is killed by its tracing exporter. Expected: the
/// process goes on, the documents are counted failed. Run in a process of
/// its own. Cause: `Worker::account` (worker.rs) drops the outcome, errors
/// included, under one `catch_unwind`; each failure would need dropping
/// under its own (or the errors leaked).
#[test]
fn exporter_errors_whose_drop_panics_are_contained() {
    common::run_alone("drop_panics_child");
}
