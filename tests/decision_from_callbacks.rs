//! A root's sampling decision taken where nothing may wait on the root nor
//! swap the thread's dispatcher: a header asked from another layer's
//! callback, and a request's end while another thread decides. Found by a
//! review of the root's `deciding` mark (e4f31a1): each test failed on it.

mod common;

#[cfg(feature = "tower")]
use std::future::Future as _;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::{TraceHeader, XraySpanExt};

/// A log-correlation layer: on each `app` event it puts the X-Ray header of
/// the current span in the line (here: keeps it). Its first such event
/// tells `entered` it runs, then waits (at most 5 s) for `go`.
struct HeaderInLogLines {
    entered: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
    header: Arc<Mutex<Option<Option<TraceHeader>>>>,
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for HeaderInLogLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "app" {
            return;
        }
        let mut slot = self.header.lock().unwrap();
        if slot.is_some() {
            return;
        }
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.go.lock().unwrap().recv_timeout(Duration::from_secs(5));
        *slot = Some(tracing::Span::current().xray_header());
    }
}

// The user installs the README's global set-up (`registry().with(xray)
// .with(their_layer).init()`) with a log-correlation layer of their own that
// writes each log line's `X-Amzn-Trace-Id` (`Span::current().xray_header()`)
// — while another thread of the process uses a scoped subscriber for a moment
// (`tracing::subscriber::set_default`, as test harnesses and libraries do).
// Their request logs a line before its first child.
// They should get the header ("The header for a downstream call made inside
// this span: Root, Parent = this (sub)segment's id, the sampling decision
// (taken now if still pending)", `XraySpanExt::xray_header`) and their trace
// (the sampler says "sampled"); "the layer never panics" (README).
// Instead `xray_header` decides the pending root under the root's write lock
// through `muted` (src/span_ext.rs:223 -> src/layer.rs:689-696), i.e.
// `with_default` inside the subscriber's `on_event` callback: that callback
// entered through tracing-core's thread-local path (a scoped default existed
// then), whose `RefCell` it holds borrowed; the other thread's scoped default
// has gone meanwhile, so `muted` sees the global dispatcher, sets a default,
// and `RefCell::replace` panics ("already borrowed"). The panic poisons the
// root's lock: `xray_header` gives `None` and the whole trace is lost. The
// previous review fixed this for a sampler only (`suppressed()`); e4f31a1's
// `deciding` mark would let `xray_header` run the sampler unlocked, unmuted,
// like the first child does, but it still decides under the lock.
#[test]
fn a_layer_asking_for_the_header_in_on_event_under_a_global_subscriber_keeps_the_trace() {
    common::run_alone("child_header_in_on_event_global");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_header_in_on_event_global() {
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let header = Arc::new(Mutex::new(None));
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry()
        .with(layer)
        .with(HeaderInLogLines {
            entered: Mutex::new(entered_tx),
            go: Mutex::new(go_rx),
            header: header.clone(),
        })
        .init();

    // Another thread holds a scoped default while the line is logged...
    let other = common::ScopedElsewhere::hold();
    let (done_tx, done) = mpsc::channel::<()>();
    let app = std::thread::spawn(move || {
        let request = tracing::info_span!("request", url.path = "/orders");
        request.in_scope(|| {
            tracing::info!(target: "app", "handling the order");
            tracing::info_span!("load_order").in_scope(|| {});
        });
        drop(request);
        let _ = done_tx.send(());
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the log line never reached the layer");
    // ...and lets it go while the layer handles the line.
    other.release();
    go.send(()).unwrap();
    done.recv_timeout(Duration::from_secs(10))
        .expect("the request never finished");
    app.join().unwrap();
    xray.flush(Duration::from_secs(5)).unwrap();
    let header = header.lock().unwrap().clone();
    assert!(
        matches!(header, Some(Some(_))),
        "the log layer's xray_header() gave {header:?}"
    );
    assert_eq!(
        exporter.traces().len(),
        1,
        "the sampled trace was lost: {:?}",
        xray.stats()
    );
}

/// Samples everything; its first call tells `entered` it runs, then waits
/// (at most 5 s) for `go`.
#[cfg(feature = "tower")]
struct GatedFirst {
    first: std::sync::atomic::AtomicBool,
    entered: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

#[cfg(feature = "tower")]
impl tracing_xray::sampling::Sampler for GatedFirst {
    fn sample(
        &self,
        _: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        if self.first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self.go.lock().unwrap().recv_timeout(Duration::from_secs(5));
        }
        tracing_xray::sampling::SamplingDecision::sampled()
    }
}

/// A handler that hands work to a background thread in the request's span
/// (the thread opens the request's first child span) and fails at once.
#[cfg(feature = "tower")]
#[derive(Clone)]
struct SpawnsThenFails;

#[cfg(feature = "tower")]
impl tower_service::Service<http::Request<()>> for SpawnsThenFails {
    type Response = http::Response<String>;
    type Error = String;
    type Future = std::future::Ready<Result<http::Response<String>, String>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let span = tracing::Span::current();
        let d = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || {
                tracing::info_span!(parent: &span, "background").in_scope(|| {});
            });
        });
        std::future::ready(Err("inventory unavailable".to_owned()))
    }
}

// The user serves requests behind `XrayServerLayer`; a handler hands work to
// a background thread in the request's span (its first child span opens
// there) and its future fails at once; the sampler takes a while on that
// first child (here it is held 400 ms).
// The segment should end when the request ended: "The tower server layer
// knows when the response is sent: its segment leaves then" (README), the
// span's end being "when a tower layer ended it (its response sent, see
// `Rare::ended`)" (src/span_data.rs, `ended_at`).
// Instead `end_now` stamps `ended = now` inside its retry loop
// (src/span_ext.rs:258), before `seal` finds the root `deciding` and it waits
// (src/span_ext.rs:267, src/layer.rs:889): every retry moves the end later,
// so the segment's `end_time` is when the other thread's sampler finished,
// not when the request ended.
#[cfg(feature = "tower")]
#[test]
fn a_request_ended_while_its_first_child_decides_keeps_its_end_time() {
    use tower_layer::Layer as _;
    use tower_service::Service as _;

    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_sampler(GatedFirst {
            first: std::sync::atomic::AtomicBool::new(true),
            entered: Mutex::new(entered_tx),
            go: Mutex::new(go_rx),
        })
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    let mut service = tracing_xray::tower::XrayServerLayer::new().layer(SpawnsThenFails);
    let request = http::Request::get("http://api.example.com/orders")
        .body(())
        .unwrap();
    let future = tracing::dispatcher::with_default(&dispatch, || service.call(request));
    entered
        .recv_timeout(Duration::from_secs(5))
        .expect("the sampler never ran at the first child");
    let (done_tx, done) = mpsc::channel();
    let d = dispatch.clone();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            let mut future = std::pin::pin!(future);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let ready = future.as_mut().poll(&mut cx).is_ready();
            let _ = done_tx.send(ready);
        });
    });
    let hold = Duration::from_millis(400);
    std::thread::sleep(hold);
    go.send(()).unwrap();
    assert!(
        done.recv_timeout(Duration::from_secs(8))
            .expect("the request's future never returned"),
        "the request's future was not ready"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exporter.traces().is_empty() && std::time::Instant::now() < deadline {
        xray.flush(Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let traces = exporter.traces();
    assert!(!traces.is_empty(), "no segment: {:?}", xray.stats());
    let segment = &traces[0];
    let took = segment["end_time"].as_f64().unwrap() - segment["start_time"].as_f64().unwrap();
    assert!(
        took < 0.2,
        "the request failed at once, but its segment lasted {:.0} ms (the other thread's sampler \
         was held {hold:?})",
        took * 1e3
    );
}
