//! The queue between the application and the worker: bounded, drop-and-count
//! when full, and a flush that loses nothing.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tracing::{Dispatch, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, InMemoryExporter};
use tracing_xray::{Builder, FlushError, XrayHandle};

/// A layer that samples every trace, configured by `configure`, exporting
/// to `exporter`: its handle, and a dispatch to run the test's spans under.
fn dispatch_with(
    exporter: impl Exporter,
    configure: impl FnOnce(Builder) -> Builder,
) -> (XrayHandle, Dispatch) {
    let builder = tracing_xray::builder().with_sampler(tracing_xray::sampling::AlwaysSample);
    let layer = configure(builder).with_exporter(exporter).build();
    let xray = layer.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    (xray, dispatch)
}

/// Blocks in its first `export` until the test releases it.
struct Gated {
    inner: InMemoryExporter,
    gate: Option<Arc<Barrier>>,
}

impl Exporter for Gated {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        if let Some(gate) = self.gate.take() {
            gate.wait(); // the worker is now busy
            gate.wait(); // until the burst is over
        }
        self.inner.export(batch)
    }
}

impl Gated {
    /// A `Gated` exporter, what it lets through, and its gate.
    fn new() -> (Self, InMemoryExporter, Arc<Barrier>) {
        let (inner, gate) = (InMemoryExporter::new(), Arc::new(Barrier::new(2)));
        let gated = Gated {
            inner: inner.clone(),
            gate: Some(gate.clone()),
        };
        (gated, inner, gate)
    }
}

#[test]
fn burst_into_a_tiny_queue_is_received_or_counted() {
    let (gated, inner, gate) = Gated::new();
    let (xray, dispatch) = dispatch_with(gated, |b| b.with_queue_capacity(4));
    let produced = 500;
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("first").in_scope(|| info_span!("child").in_scope(|| {}));
        gate.wait(); // the worker holds the first trace in `export`
        for i in 1..produced {
            info_span!("request", i).in_scope(|| info_span!("child").in_scope(|| {}));
        }
        gate.wait();
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let stats = xray.stats();
    let received = inner.len() as u64;
    assert_eq!(received + stats.traces_dropped, produced, "{stats:?}");
    assert!(
        stats.traces_dropped >= produced - 1 - 4,
        "the queue held at most 4: {stats:?}"
    );
    assert_eq!(stats.spans_dropped, stats.traces_dropped * 2);
    assert_eq!(stats.traces_queued, received);
}

#[test]
fn traces_with_large_fields_are_bounded_in_bytes_not_only_in_number() {
    let (gated, inner, gate) = Gated::new();
    // Room for 4096 traces, but 1 MiB.
    let (xray, dispatch) = dispatch_with(gated, |b| b.with_max_queued_bytes(1 << 20));
    let blob = "x".repeat(40_000);
    // About 160 KB each: four children of 40 KB.
    let big_trace = || {
        info_span!("request").in_scope(|| {
            for _ in 0..4 {
                info_span!("step", metadata.blob = blob.as_str()).in_scope(|| {});
            }
        })
    };
    let produced = 100;
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("first").in_scope(|| {});
        gate.wait(); // the worker holds the first trace in `export`
        for _ in 1..produced {
            big_trace();
        }
        gate.wait();
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let stats = xray.stats();
    let received = inner.traces().len() as u64;
    assert_eq!(received + stats.traces_dropped, produced, "{stats:?}");
    // Each holds 4 x (40,000 + one span) + one span, about 161 KB: 1 MiB
    // takes six of them while the worker is held in the first trace's
    // export. The queue's 4,096 slots were never the limit.
    assert_eq!(received, 1 + 6, "{stats:?}");
    assert_eq!(stats.spans_dropped, stats.traces_dropped * 5);

    // The worker has caught up: the bound has room again.
    let dropped = stats.traces_dropped;
    inner.reset();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..5 {
            big_trace();
            xray.flush(Duration::from_secs(10)).unwrap();
        }
    });
    assert_eq!(inner.traces().len(), 5);
    assert_eq!(xray.stats().traces_dropped, dropped);
}

#[test]
fn flush_delivers_all_ten_thousand_traces() {
    let exporter = InMemoryExporter::new();
    let (xray, dispatch) = dispatch_with(exporter.clone(), |b| b.with_queue_capacity(20_000));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..10_000 {
            info_span!("request", i).in_scope(|| {});
        }
    });
    xray.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(exporter.len(), 10_000);
    assert_eq!(xray.stats().documents_exported, 10_000);
}

#[test]
fn flush_waits_for_traces_queued_behind_a_busy_worker() {
    // A flush issued while the worker is stuck still covers what came before it.
    let (gated, inner, gate) = Gated::new();
    let (xray, dispatch) = dispatch_with(gated, |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("first").in_scope(|| {});
        gate.wait();
        for _ in 0..100 {
            info_span!("queued").in_scope(|| {});
        }
    });
    let flusher = {
        let xray = xray.clone();
        std::thread::spawn(move || xray.flush(Duration::from_secs(10)))
    };
    gate.wait();
    flusher.join().unwrap().unwrap();
    assert_eq!(inner.len(), 101);
}

#[test]
fn long_lived_root_streams_past_a_megabyte_held_however_few_its_children() {
    let exporter = InMemoryExporter::new();
    let (xray, dispatch) = dispatch_with(exporter.clone(), |b| b);
    let blob = "x".repeat(40_000);
    tracing::dispatcher::with_default(&dispatch, || {
        let root = info_span!("consumer_loop");
        root.in_scope(|| {
            // 30 children, far from the 1,000 held by default, but 1.2 MB.
            for i in 0..30 {
                info_span!("message", i, metadata.body = blob.as_str()).in_scope(|| {});
            }
        });
        xray.flush(Duration::from_secs(5)).unwrap();
        // About 40.3 KB a child: the 27th passes 1 MiB, and the 27 held
        // leave; the last 3 wait for the root.
        let streamed = exporter.documents().len();
        assert_eq!(streamed, 27);
        drop(root);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["subsegments"].as_array().unwrap().len(), 30);
}

#[test]
fn long_lived_root_streams_instead_of_growing() {
    let exporter = InMemoryExporter::new();
    let (xray, dispatch) = dispatch_with(exporter.clone(), |b| b.with_max_held_subsegments(10));
    tracing::dispatcher::with_default(&dispatch, || {
        let root = info_span!("consumer_loop");
        root.in_scope(|| {
            for i in 0..105 {
                info_span!("message", i).in_scope(|| {});
            }
        });
        // The root is still open, yet most children already left.
        xray.flush(Duration::from_secs(5)).unwrap();
        let streamed = exporter.documents();
        assert!(streamed.len() >= 99, "{} streamed", streamed.len());
        assert!(
            streamed
                .iter()
                .all(|d| d.kind() == tracing_xray::export::DocumentKind::Subsegment)
        );
        drop(root);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1);
    let children = traces[0]["subsegments"].as_array().unwrap();
    assert_eq!(children.len(), 105, "every child is in the trace");
    let segment: serde_json::Value = exporter
        .documents()
        .iter()
        .find(|d| d.kind() == tracing_xray::export::DocumentKind::Segment)
        .map(|d| serde_json::from_str(d.as_str()).unwrap())
        .unwrap();
    assert!(segment["subsegments"].as_array().map_or(0, Vec::len) <= 10);
}

#[test]
fn shutdown_flushes_then_refuses() {
    let exporter = InMemoryExporter::new();
    let (xray, dispatch) = dispatch_with(exporter.clone(), |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("before").in_scope(|| {});
        xray.shutdown(Duration::from_secs(5)).unwrap();
        info_span!("after").in_scope(|| {});
    });
    assert_eq!(exporter.len(), 1);
    assert_eq!(
        xray.shutdown(Duration::from_secs(1)),
        Err(tracing_xray::FlushError::AlreadyShutdown)
    );
    assert_eq!(
        xray.flush(Duration::from_secs(1)),
        Err(tracing_xray::FlushError::AlreadyShutdown)
    );
    assert_eq!(xray.stats().traces_dropped, 1, "the late trace is counted");
}

/// Traces that finish while a shutdown request waits in the queue (other
/// threads go on working while the guard drops) are not exported: they are
/// counted as dropped, not lost without a trace in `stats()`.
#[test]
fn traces_queued_behind_a_shutdown_are_counted_as_dropped() {
    let (gated, inner, gate) = Gated::new();
    let (xray, dispatch) = dispatch_with(gated, |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("first").in_scope(|| {});
        gate.wait(); // the worker holds the first trace in `export`
        for _ in 0..3 {
            info_span!("before").in_scope(|| {});
        }
        // The request is queued at once (the queue has room); the worker,
        // held in `export`, cannot answer it in time.
        assert_eq!(
            xray.shutdown(Duration::from_millis(50)),
            Err(FlushError::Timeout(Duration::from_millis(50)))
        );
        for _ in 0..3 {
            info_span!("after").in_scope(|| {});
        }
        gate.wait();
    });
    // The worker shuts down when it gets to the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while xray.stats().traces_dropped < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = xray.stats();
    assert_eq!(inner.len(), 4, "{stats:?}");
    assert_eq!(
        (
            stats.traces_queued,
            stats.traces_dropped,
            stats.spans_dropped
        ),
        (4, 3, 3),
        "every finished trace is exported or counted as dropped"
    );
}

#[test]
fn panicking_exporter_loses_its_batch_not_the_worker() {
    struct Flaky(InMemoryExporter, bool);
    impl Exporter for Flaky {
        fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
            if std::mem::replace(&mut self.1, false) {
                panic!("exporter bug");
            }
            self.0.export(batch)
        }
    }
    let inner = InMemoryExporter::new();
    let (xray, dispatch) = dispatch_with(Flaky(inner.clone(), true), |b| b);
    tracing::dispatcher::with_default(&dispatch, || {
        info_span!("lost").in_scope(|| {});
        xray.flush(Duration::from_secs(5)).unwrap();
        info_span!("kept").in_scope(|| {});
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(xray.stats().documents_failed, 1);
}

#[test]
fn init_installs_the_layer_even_when_the_log_bridge_cannot_be() {
    // With tracing-subscriber's `tracing-log` feature (on in these tests),
    // `try_init` also sets a `log` logger, and fails when one is set already,
    // after installing the subscriber: the layer must stay on. (The only
    // global subscriber of this test binary; the other tests set their own
    // for their thread.)
    tracing_log::LogTracer::init().unwrap();
    let exporter = InMemoryExporter::new();
    let guard = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .init();
    assert!(guard.handle().is_enabled());
    info_span!("job").in_scope(|| {});
    guard.handle().flush(Duration::from_secs(5)).unwrap();
    assert_eq!(exporter.len(), 1);
    drop(guard);
}
