//! Ways the layer could hurt its host application, found by a black-box
//! hunt; each test failed before its fix: a huge error text costing the
//! application its size in memory, a panicking sampler aborting the process,
//! an exporter's error ending the worker.
//!
//! The memory tests measure the whole heap (this binary's counting
//! allocator), so the tests run one at a time (`serial`); those that abort or
//! install a global subscriber run in a process of their own.

use std::error::Error;
use std::fmt;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::{
    Document, ExportError, ExportFailure, ExportOutcome, Exporter, InMemoryExporter,
};
use tracing_xray::sampling::AlwaysSample;

mod common;

#[global_allocator]
static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;

fn builder(out: &InMemoryExporter) -> tracing_xray::Builder {
    tracing_xray::builder()
        .with_service_name("host")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(out.clone())
}

// ---------------------------------------------------------------------------
// Huge error texts

/// An error whose `Display` is `len` bytes long, written in 1 KiB pieces (as
/// an error quoting a response body does), with `depth` such errors in its
/// `source()` chain. While it is formatted it notes the largest heap growth
/// seen since `base`.
struct Huge {
    len: usize,
    base: isize,
    peak: Arc<AtomicIsize>,
    source: Option<Box<Huge>>,
}

impl Huge {
    fn new(len: usize, depth: usize, peak: &Arc<AtomicIsize>) -> Huge {
        Huge {
            len,
            base: 0,
            peak: peak.clone(),
            source: (depth > 0).then(|| Box::new(Huge::new(len, depth - 1, peak))),
        }
    }
}

impl fmt::Debug for Huge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Huge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let piece = "x".repeat(1024);
        for _ in 0..self.len / 1024 {
            f.write_str(&piece)?;
            self.peak
                .fetch_max(common::live_bytes() - self.base, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Error for Huge {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn Error + 'static))
    }
}

/// README, "Bounded memory": "Field values are cut at 64 KiB each as they
/// are recorded (a bound on memory)", 8 sources per error; and the queue's
/// byte bound counts "what their fields, events and errors hold" ("an
/// estimate, within a small factor of the heap they use").
///
/// It used to: an error's text and its sources' texts are formatted whole
/// (`to_string()`) and then cut with `String::truncate`, which keeps the
/// whole allocation. An open span holding one `&dyn Error` whose text (and
/// its 8 sources' texts) is 2 MiB holds 9 x 2 MiB = 18 MiB instead of about
/// 9 x 64 KiB, and the queue's byte accounting sees only the 64 KiB cuts
/// (with `with_max_queued_bytes(4 MiB)` and 512 KiB error texts, 33 MB were
/// held by 8 queued traces).
///
/// Reproduction: `span.record("error", &e as &dyn Error)` with a 2 MiB
/// `Display`, then measure the heap while the span is open.
#[test]
fn an_open_span_keeps_no_more_than_the_cut_of_a_huge_error() {
    let _s = common::serial();
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let peak = Arc::new(AtomicIsize::new(0));
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("root", error = tracing::field::Empty);
        tracing::info_span!(parent: &root, "warm").in_scope(|| {});
        let e = Huge::new(2 << 20, 8, &peak);
        let before = common::live_bytes();
        root.record("error", &e as &(dyn Error + 'static));
        let held = common::live_bytes() - before;
        assert!(
            held < 2 << 20,
            "an open span holds {held} bytes for one error (its cut texts: 9 x 64 KiB)"
        );
        drop(root);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
}

/// README: values are cut at 64 KiB "as they are recorded (a bound on
/// memory)"; a `Debug`/`Display` field value is indeed bounded while it is
/// formatted (the control below: formatting stops storing at 64 KiB).
///
/// It used to: a `&dyn Error` field's text is first formatted whole on the
/// application thread (`value.to_string()`, then cut): a 64 MiB error text
/// (an error quoting a huge response body) costs 64 MiB of heap (more, while
/// the `String` doubles) in the middle of a request, where the same value
/// recorded with `?` costs under 1 MiB. Distinct from the test above: an
/// allocation that is cut and shrunk afterwards still peaks here.
///
/// Reproduction: `span.record("error", &e as &dyn Error)` with an error
/// whose `Display` writes 64 MiB in 1 KiB pieces, noting the heap as it goes.
#[test]
fn a_huge_error_text_is_cut_while_it_is_formatted() {
    let _s = common::serial();
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let peak_error = Arc::new(AtomicIsize::new(0));
    let peak_debug = Arc::new(AtomicIsize::new(0));
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!(
            "root",
            error = tracing::field::Empty,
            d = tracing::field::Empty
        );
        tracing::info_span!(parent: &root, "warm").in_scope(|| {});
        // The same value as a `Debug` field: bounded (the control).
        let mut d = Huge::new(64 << 20, 0, &peak_debug);
        d.base = common::live_bytes();
        root.record("d", tracing::field::debug(&d));
        let mut e = Huge::new(64 << 20, 0, &peak_error);
        e.base = common::live_bytes();
        root.record("error", &e as &(dyn Error + 'static));
        drop(root);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let debug_peak = peak_debug.load(Ordering::SeqCst);
    let error_peak = peak_error.load(Ordering::SeqCst);
    assert!(
        debug_peak < 1 << 20,
        "control: the Debug value peaked at {debug_peak} bytes"
    );
    assert!(
        error_peak < 1 << 20,
        "formatting a 64 MiB error text grew the heap by {error_peak} bytes"
    );
}

// ---------------------------------------------------------------------------
// User code that panics

/// A sampler with a bug: it panics.
struct PanickingSampler;

impl tracing_xray::sampling::Sampler for PanickingSampler {
    fn sample(
        &self,
        _: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        panic!("the sampler panics")
    }
}

/// README: "Never panics"; a panic in an exporter is contained, and now a
/// panic in a custom `Sampler` too: the trace it was deciding is not
/// sampled.
///
/// It used to: `XraySpanExt::xray_header` (which the tower client layer
/// and the AWS SDK interceptor call for every outgoing call) runs the
/// sampler while it holds the span's extensions lock in the registry. The
/// panic poisons that lock; as it unwinds, the request's span is dropped,
/// the registry closes it and panics on the poisoned lock ("Mutex
/// poisoned") inside a destructor during unwinding: "panic in a destructor
/// during cleanup", the whole process aborts (SIGABRT).
///
/// Reproduction: `with_sampler(PanickingSampler)`, then
/// `catch_unwind(|| { let r = info_span!("request"); r.xray_header(); })`.
#[test]
fn a_panicking_sampler_in_xray_header_does_not_abort_the_process() {
    common::run_alone("child_panicking_sampler_in_xray_header");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_panicking_sampler_in_xray_header() {
    use tracing_xray::XraySpanExt;
    let out = InMemoryExporter::new();
    let layer = builder(&out).with_sampler(PanickingSampler).build();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        // The sampler's panic stays inside the layer (the panic hook has
        // reported it): the trace is not sampled, and the header says so.
        let header = catch_unwind(|| {
            let request = tracing::info_span!("request");
            request.xray_header()
        })
        .expect("the sampler's panic does not reach the application");
        assert_eq!(header.map(|h| h.sampled()), Some(tracing_xray::Sampled::No));
        // A later trace goes through the same sampler, and the span closes.
        tracing::info_span!("later").in_scope(|| {});
    });
}

/// Found by a hunt for deadlocks: the README's own set-up, `fmt::layer()`
/// beside the xray layer; in a request whose panics are caught (a tokio
/// task, a server framework, a Lambda runtime), `span.record("order",
/// debug(value))` with a value whose `Debug` panics. The `fmt` layer formats
/// the value while it holds the span's extensions lock, so the panic poisons
/// the lock; the unwinding then drops the span, and the xray layer's
/// `on_close` asked the registry for the span's extensions, which panics on
/// a poisoned lock: a panic inside a destructor during the unwinding, and
/// the process aborted (SIGABRT). Without the xray layer, the application
/// catches the panic and goes on. Now the span is lost (said once on
/// standard error), and the rest of its trace is sent.
#[test]
fn a_span_lock_another_layer_poisoned_does_not_abort_the_process() {
    common::run_alone("child_span_lock_poisoned_by_the_fmt_layer");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_span_lock_poisoned_by_the_fmt_layer() {
    use tracing_xray::XraySpanExt;
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let server = tracing::info_span!("server");
        let _server = server.enter();
        let caught = common::quietly(|| {
            catch_unwind(|| {
                let request = tracing::info_span!("request", order = tracing::field::Empty);
                let _request = request.enter();
                /// Asks the request's header (the layer reads its
                /// extensions) while the unwinding drops it. (An event here
                /// would abort in the `fmt` layer, which reads them too.)
                struct AskHeader(tracing::Span);
                impl Drop for AskHeader {
                    fn drop(&mut self) {
                        assert!(self.0.xray_header().is_none());
                    }
                }
                let _ask = AskHeader(request.clone());
                request.record("order", tracing::field::debug(common::PanickyDebug));
            })
        });
        assert!(caught.is_err(), "the panic is caught");
    });
    handle.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_eq!(docs[0]["name"], "host");
    assert!(docs[0].get("subsegments").is_none(), "{:#}", docs[0]);
}

// ---------------------------------------------------------------------------
// The worker

/// An error whose `Display` panics, reported by an exporter.
#[derive(Debug)]
struct PanicDisplay;

impl fmt::Display for PanicDisplay {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Display of the exporter's error")
    }
}

impl Error for PanicDisplay {}

/// Fails its first batch with such an error, then delivers.
struct FailsOnce(bool, InMemoryExporter);

impl Exporter for FailsOnce {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        if std::mem::replace(&mut self.0, true) {
            return self.1.export(batch);
        }
        let mut outcome = ExportOutcome::delivered(0);
        for document in batch {
            outcome.failures.push(ExportFailure {
                document,
                error: ExportError::Other(Box::new(PanicDisplay)),
            });
        }
        outcome
    }
}

/// README: "an exporter that panics, in any of its methods, loses the
/// documents it had not yet reported (counted in `stats().documents_failed`),
/// not the worker"; the setup the README shows has `fmt::layer()` beside the
/// xray layer in the global subscriber.
///
/// It used to: the worker logs the exporter's first failure
/// (`warn!(%error, ..)`) outside its `catch_unwind`. The fmt layer formats
/// the error (the worker's events are hidden only from xray layers), its
/// `Display` panics, and the worker thread dies: every later flush returns
/// `AlreadyShutdown` and every later trace is dropped, for the rest of the
/// process.
///
/// Reproduction: global `registry().with(fmt::layer()).with(xray)`, an
/// exporter whose first `export` returns a failure with
/// `ExportError::Other(Box::new(e))` where `e`'s `Display` panics; one
/// trace, flush; another trace, flush: `Err(AlreadyShutdown)`, nothing sent.
#[test]
fn a_panicking_exporter_error_does_not_stop_the_worker() {
    common::run_alone("child_panicking_exporter_error_does_not_stop_the_worker");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_panicking_exporter_error_does_not_stop_the_worker() {
    let out = InMemoryExporter::new();
    let layer = builder(&out)
        .with_exporter(FailsOnce(false, out.clone()))
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer)
        .init();
    tracing::info_span!("first").in_scope(|| {});
    let first = xray.flush(Duration::from_secs(3));
    tracing::info_span!("second").in_scope(|| {});
    let second = xray.flush(Duration::from_secs(3));
    assert_eq!(
        (second, out.len()),
        (Ok(()), 1),
        "first flush: {first:?}; stats: {:?}",
        xray.stats()
    );
}
