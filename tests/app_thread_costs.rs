//! What hostile or unusual use costs the application's threads, found by a
//! hunt of the hot path; each test failed before its fix: bytes of a `log`
//! record's target and file that the streaming threshold and the queue's
//! bound did not count, a failed request's or call's error text built whole
//! before being cut (and a `Display` that fails panicking the request), and
//! events and error events past what a span keeps (32, 8) formatted anyway,
//! an event's error value with its sources.
//!
//! Memory is measured with this binary's own counting allocator (the whole
//! heap), so the tests run one at a time (`common::serial`); counts of work
//! are taken with values whose `Debug` counts its calls. No timing. (The
//! tower layers' tests need the `tower` feature; `scripts/test` enables
//! every feature.)
#![cfg(feature = "tower")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

/// A global allocator counting the bytes the heap holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes unchanged to `System`; the counting touches no
// pointer or layout.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            std::alloc::System.alloc(layout)
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            std::alloc::System.dealloc(ptr, layout)
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        unsafe {
            LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
            std::alloc::System.realloc(ptr, layout, new)
        }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The bytes the heap holds.
fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// A dispatch of the layer (every trace sampled, no resource detection,
/// events recorded if `events`) over a registry, its handle and exporter.
fn dispatch(
    events: bool,
) -> (
    tracing::Dispatch,
    tracing_xray::XrayHandle,
    InMemoryExporter,
) {
    let out = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_events(events)
        .with_exporter(out.clone())
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    (tracing::Dispatch::new(subscriber), xray, out)
}

// ---------------------------------------------------------------------------
// Uncounted bytes of an ERROR `log` record

/// README, "Limits, enforced so the host app never pays" / "Bounded
/// memory": "A long-lived root holds at most 1,000 finished subsegments, or
/// 1 MiB of them [...] before streaming them" (and README line 130: "past
/// 1,000 finished subsegments or 1 MiB of them, they are streamed").
///
/// Before the fix: an ERROR `log` record forwarded by tracing-log
/// (`log::error!(target: t, ..)`, whose event carries `log.target`, `log.file`
/// and `log.line` fields) keeps the record's target and file as the
/// exception's location in `ErrorRecord::target` / `ErrorRecord::location`,
/// cut only at 64 KiB each (`EventVisitor::record_str`, src/layer.rs), but
/// `ErrorRecord::heap_bytes` (src/span_data.rs) counts neither. The
/// streaming threshold (`held_bytes > max_held_bytes`, src/layer.rs `close`)
/// therefore never sees them: 32 finished children of an open root, each with
/// 8 such errors of a 64 KiB target, hold 16 MiB on the application's heap
/// (measured: 16.8 MB) while the root's trace counts under 100 KB of them
/// and streams nothing. The same uncounted bytes escape the queue's bound in
/// bytes (`Message::span_bytes`): with `with_max_queued_bytes(1 MiB)` and the
/// exporter held up, 64 one-span traces with such errors were all queued,
/// none dropped, holding 34 MB. What is sent of each target is 250
/// characters (its stack label, tests/hostile_fields.rs).
///
/// Reproduction: a long-lived root; 32 children, each with 8
/// `log::error!(target: <64 KiB string>, "failed")`; measure the heap while the
/// root is open.
#[test]
fn a_long_lived_root_streams_before_holding_over_1_mib_of_log_error_locations() {
    let _s = common::serial();
    // Forwards `log` records to the current `tracing` dispatcher.
    let _ = tracing_log::LogTracer::init();
    let (d, xray, out) = dispatch(false);
    let target = "t".repeat(64 * 1024);
    let held = tracing::dispatcher::with_default(&d, || {
        let root = info_span!("job");
        // Warm the pools (recycled lists, spare boxes).
        root.in_scope(|| info_span!("warm").in_scope(|| tracing::error!("warm")));
        let before = live();
        for _ in 0..32 {
            info_span!(parent: &root, "step").in_scope(|| {
                for _ in 0..8 {
                    tracing_log::log::error!(target: target.as_str(), "failed");
                }
            });
        }
        // Whatever streamed has left the queue: what stays is the root's.
        xray.flush(Duration::from_secs(5)).unwrap();
        let held = live() - before;
        drop(root);
        held
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    // Control: the `log` records did reach the layer, as exceptions.
    let exceptions: usize = out
        .json_documents()
        .iter()
        .flat_map(|doc| {
            common::walk(doc)
                .into_iter()
                .map(|(_, n)| n.clone())
                .collect::<Vec<_>>()
        })
        .map(|n| n["cause"]["exceptions"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(exceptions >= 32 * 8, "only {exceptions} exceptions sent");
    // The promised 1 MiB, and as much again for bookkeeping.
    assert!(
        held <= 2 << 20,
        "an open root holds {held} bytes of finished subsegments (32 children, 8 ERROR log \
         records each with a 64 KiB target) without streaming them; at most 1 MiB promised"
    );
}

// ---------------------------------------------------------------------------
// A tower service's error text, formatted whole on the application thread

/// An error whose `Display` is `len` bytes, written in 1 KiB pieces (an
/// error quoting a response body); while it is formatted it notes the
/// largest heap growth since it was made.
struct HugeText {
    len: usize,
    base: isize,
    peak: Arc<AtomicIsize>,
}

impl HugeText {
    fn new(len: usize, peak: &Arc<AtomicIsize>) -> Self {
        HugeText {
            len,
            base: live(),
            peak: peak.clone(),
        }
    }
}

impl std::fmt::Display for HugeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let piece = "x".repeat(1024);
        for _ in 0..self.len / 1024 {
            f.write_str(&piece)?;
            self.peak.fetch_max(live() - self.base, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A tower service that fails every call with a [`HugeText`] error of
/// `len` bytes.
#[derive(Clone)]
struct FailsWithHugeText {
    len: usize,
    peak: Arc<AtomicIsize>,
}

impl<B> tower_service::Service<http::Request<B>> for FailsWithHugeText {
    type Response = http::Response<String>;
    type Error = HugeText;
    type Future = std::future::Ready<Result<Self::Response, HugeText>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), HugeText>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Err(HugeText::new(self.len, &self.peak)))
    }
}

/// 16 MiB: the error text of the tests below.
const HUGE_TEXT: usize = 16 << 20;

/// README, "Bounded memory": "Field values are cut at 64 KiB each as they
/// are recorded (a bound on memory)"; tests/host_protection.rs
/// (`a_huge_error_text_is_cut_while_it_is_formatted`) holds a `&dyn Error`
/// field to it: formatted into a bounded string, never whole.
///
/// Before the fix: when the service under `XrayServerLayer` fails,
/// `XrayServerFuture::poll` (src/tower/server.rs:455) records
/// `span.record("otel.status_message", e.to_string())`: the error's whole
/// text is built in one `String` on the application thread (16 MiB here,
/// more while the `String` doubles) and only then cut to 64 KiB by the
/// layer's visitor. It does so whatever the trace's decision: an unsampled
/// request pays it too.
///
/// Reproduction: `XrayServerLayer::new().layer(svc)` where `svc` fails with
/// an error whose `Display` writes 16 MiB in 1 KiB pieces, noting the heap.
#[test]
fn a_failed_requests_error_text_is_cut_while_it_is_formatted() {
    use tower_layer::Layer;
    let peak = heap_peak_of_a_failure(
        |service| tracing_xray::tower::XrayServerLayer::new().layer(service),
        "http://example.com/orders",
        false,
    );
    assert!(
        peak < 1 << 20,
        "formatting a failed request's 16 MiB error text grew the heap by {peak} bytes \
         (its value is cut at 64 KiB)"
    );
}

/// How much the heap grew, at its peak, while a request through
/// `wrap(FailsWithHugeText)` failed (inside a span `handle_order` if
/// `in_span`, as a client's call is made).
fn heap_peak_of_a_failure<S>(
    wrap: impl FnOnce(FailsWithHugeText) -> S,
    url: &str,
    in_span: bool,
) -> isize
where
    S: tower_service::Service<http::Request<String>>,
{
    let _s = common::serial();
    let (d, xray, _out) = dispatch(false);
    let peak = Arc::new(AtomicIsize::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&d, || {
        let mut service = wrap(FailsWithHugeText {
            len: HUGE_TEXT,
            peak: peak.clone(),
        });
        let request = http::Request::get(url).body(String::new()).unwrap();
        let call = || rt.block_on(service.call(request));
        let outcome = if in_span {
            info_span!("handle_order").in_scope(call)
        } else {
            call()
        };
        assert!(outcome.is_err());
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    peak.load(Ordering::SeqCst)
}

/// The same promise, for a call through `XrayClientLayer` that fails with an
/// error type that is neither tower's `BoxError` nor `std::io::Error` (the
/// documented case "of another type, the text alone", rustdoc of
/// `XrayClientFuture`; hyper-util's plain `Client` error is one).
///
/// Before the fix: `XrayClientFuture::poll` (src/tower/client.rs:345)
/// records `span.record("otel.status_message", error.to_string())`: the
/// whole text is built first (16 MiB here), then cut to 64 KiB.
#[test]
fn a_failed_calls_error_text_is_cut_while_it_is_formatted() {
    use tower_layer::Layer;
    let peak = heap_peak_of_a_failure(
        |service| tracing_xray::tower::XrayClientLayer::new().layer(service),
        "http://inventory.internal/items",
        true,
    );
    assert!(
        peak < 1 << 20,
        "formatting a failed call's 16 MiB error text grew the heap by {peak} bytes \
         (its value is cut at 64 KiB)"
    );
}

/// An error whose `Display` fails (`Err(fmt::Error)`), as a `Display` that
/// forwards a failing inner formatter's result does.
struct FailingDisplay;

impl std::fmt::Display for FailingDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream failed: ")?;
        Err(std::fmt::Error)
    }
}

/// A tower service that fails every call with [`FailingDisplay`].
#[derive(Clone)]
struct FailsWithFailingDisplay;

impl<B> tower_service::Service<http::Request<B>> for FailsWithFailingDisplay {
    type Response = http::Response<String>;
    type Error = FailingDisplay;
    type Future = std::future::Ready<Result<Self::Response, FailingDisplay>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), FailingDisplay>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Err(FailingDisplay))
    }
}

/// README, "Never panics, never traces itself", and src/tower/mod.rs:
/// "Tracing never fails a request". A value's `Display` is formatted by the
/// layer's own visitor into a bounded string whose `fmt::Result` is ignored
/// (`span_data::display_string`), so a `Display` returning `Err` costs a
/// cut text, never a panic.
///
/// Before the fix: `XrayServerFuture::poll` (src/tower/server.rs:455)
/// formats the service's error with `e.to_string()`, which panics ("a
/// Display implementation returned an error unexpectedly") when `Display`
/// returns `Err`: the request's future panics inside the X-Ray layer
/// instead of returning the service's error. (`XrayClientFuture::poll`,
/// src/tower/client.rs:345, does the same for a client's error.)
///
/// Reproduction: `XrayServerLayer::new().layer(svc)` where `svc` fails with
/// an error whose `Display` returns `Err(fmt::Error)`.
#[test]
fn a_failed_requests_error_whose_display_fails_does_not_panic_the_request() {
    use tower_layer::Layer;
    use tower_service::Service;
    let _s = common::serial();
    let (d, xray, _out) = dispatch(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcome = tracing::dispatcher::with_default(&d, || {
        let mut server = tracing_xray::tower::XrayServerLayer::new().layer(FailsWithFailingDisplay);
        let request = http::Request::get("http://example.com/orders")
            .body(String::new())
            .unwrap();
        common::quietly(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(server.call(request)).is_err()
            }))
        })
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    match outcome {
        Ok(failed) => assert!(failed, "the service's error is returned"),
        Err(payload) => panic!(
            "the request panicked inside XrayServerLayer: {:?}",
            payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
        ),
    }
}

// ---------------------------------------------------------------------------
// Events and exceptions past their per-span bound

/// A value whose `Debug` counts how many times it is formatted.
struct Counted(Arc<AtomicUsize>);

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fetch_add(1, Ordering::SeqCst);
        f.write_str("value")
    }
}

/// README line 124: with `with_events(true)` a span's events are sent "at
/// most 32 per span"; the rest are only counted (`Stats::events_dropped`).
/// The application thread should pay for the 32 it keeps and a count for
/// the rest: README "Limits, enforced so the host app never pays".
///
/// Before the fix: `record_kept_event` (src/layer.rs) formats every
/// field of every event (`collect_fields(|v| event.record(v))`, each
/// `Debug` value up to 64 KiB, error values with their `source()` chain)
/// and only then asks `SpanData::push_event` (src/span_data.rs), which
/// drops it past the 32nd. On a long-lived span (a worker loop, a
/// connection) logging 1,000 events, the layer formats 1,000 values for the
/// 32 it sends.
///
/// Reproduction: one span, 1,000 `info!(v = ?counted)` in it, counting the
/// `Debug` calls.
#[test]
fn events_past_the_32_a_span_keeps_are_not_formatted() {
    let (formatted, stats) = formatted_in_a_loop(true, |value| tracing::info!(v = ?value));
    let dropped = stats.events_dropped;
    assert_eq!(
        dropped,
        1_000 - 32,
        "control: the events past 32 are dropped"
    );
    assert!(
        formatted <= 64,
        "the layer formatted {formatted} event values on the application thread for the \
         32 events it keeps ({dropped} dropped)"
    );
}

/// How many times the values `log` logs were formatted, and the stats, when
/// one span logs 1,000 times (events recorded if `events`).
fn formatted_in_a_loop(events: bool, log: impl Fn(&Counted)) -> (usize, tracing_xray::Stats) {
    let _s = common::serial();
    let (d, xray, _out) = dispatch(events);
    let formatted = Arc::new(AtomicUsize::new(0));
    tracing::dispatcher::with_default(&d, || {
        let job = info_span!("job");
        job.in_scope(|| {
            let value = Counted(formatted.clone());
            for _ in 0..1_000 {
                log(&value);
            }
        });
        drop(job);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    (formatted.load(Ordering::SeqCst), xray.stats())
}

/// README, "Limits" and the field table (line 174): exceptions are kept "8
/// per span, the rest counted in `stats()` and the span's
/// `metadata.tracing_xray.exceptions_dropped`".
///
/// Before the fix: every ERROR event is turned into a whole
/// `ErrorRecord` first (`record_kept_event`, src/layer.rs: its message and
/// `error` value formatted by `EventVisitor`, up to 64 KiB each, a `&dyn
/// Error`'s 8 sources too, `Instant::now()`), and only
/// `SpanData::push_error` (src/span_data.rs) finds the span's 8 taken and
/// drops it. A retry loop logging its failure 1,000 times in one span costs
/// 1,000 formatted errors for the 8 sent.
///
/// Reproduction: one span, 1,000 `error!(error = ?counted, "failed")` in
/// it (events off), counting the `Debug` calls.
#[test]
fn error_events_past_the_8_exceptions_a_span_keeps_are_not_formatted() {
    let (formatted, stats) =
        formatted_in_a_loop(false, |value| tracing::error!(error = ?value, "failed"));
    let dropped = stats.exceptions_dropped;
    assert_eq!(
        dropped,
        1_000 - 8,
        "control: the exceptions past 8 are dropped"
    );
    assert!(
        formatted <= 16,
        "the layer formatted {formatted} error values on the application thread for the \
         8 exceptions it keeps ({dropped} dropped)"
    );
}

// ---------------------------------------------------------------------------
// An event's error value: its text sent, its sources formatted all the same

/// An error with `depth` more errors in its `source()` chain; the `Display`
/// of each source counts its calls.
struct Chain {
    depth: usize,
    sources_formatted: Arc<AtomicUsize>,
    is_source: bool,
    source: Option<Box<Chain>>,
}

impl Chain {
    fn new(depth: usize, counter: &Arc<AtomicUsize>, is_source: bool) -> Chain {
        Chain {
            depth,
            sources_formatted: counter.clone(),
            is_source,
            source: (depth > 0).then(|| Box::new(Chain::new(depth - 1, counter, true))),
        }
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_source {
            self.sources_formatted.fetch_add(1, Ordering::SeqCst);
        }
        write!(f, "failure at level {}", self.depth)
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// README line 124: with `with_events(true)`, an event goes to
/// `metadata.tracing.events` "with [...] its fields (an error value as its
/// text [...])": of a `&dyn Error` field of a non-ERROR event (no exception
/// is made of it), only the error's own text is ever sent.
///
/// Before the fix: `record_kept_event` (src/layer.rs) visits the
/// event with the span's `FieldVisitor`, whose `record_error`
/// (src/span_data.rs) formats the error's text and up to 8 of its
/// `source()` errors (each up to 64 KiB) into an `ErrorRecord`; the event
/// keeps `e.message` and throws the sources away. Each `warn!(error = &e as
/// &dyn Error)` with a chain of 8 formats 8 texts that are never used.
///
/// Reproduction: 10 `warn!` events in a span, each with an error whose
/// chain holds 8 sources that count their `Display` calls.
#[test]
fn an_events_error_value_is_sent_as_its_text_without_formatting_its_sources() {
    let _s = common::serial();
    let (d, xray, out) = dispatch(true);
    let sources_formatted = Arc::new(AtomicUsize::new(0));
    tracing::dispatcher::with_default(&d, || {
        let job = info_span!("job");
        job.in_scope(|| {
            for _ in 0..10 {
                let e = Chain::new(8, &sources_formatted, false);
                tracing::warn!(error = &e as &(dyn std::error::Error + 'static), "retrying");
            }
        });
        drop(job);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    let events = docs[0]["metadata"]["tracing"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {docs:#?}"));
    assert_eq!(events.len(), 10, "control: the events are sent");
    assert_eq!(
        events[0]["error"], "failure at level 8",
        "control: the text alone"
    );
    let formatted = sources_formatted.load(Ordering::SeqCst);
    assert_eq!(
        formatted, 0,
        "the layer formatted {formatted} source errors on the application thread for 10 \
         events that send their errors' own text only"
    );
}
