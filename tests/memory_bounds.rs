//! The layer's memory bounds, measured with a counting allocator (this
//! binary's own): what an open span or the queue holds stays within what
//! the docs promise.
mod common;

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, NoopExporter};

#[global_allocator]
static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;

/// The documented cap on one stored field value (`MAX_FIELD_BYTES`).
const FIELD_CAP: usize = 64 * 1024;

/// An ERROR event's `message` (or `error`) given as a `&str` is cut at
/// 64 KiB, as a `Debug`/`Display` value is: eight such events of 1 MiB on an
/// open span kept 8 MiB until it closed.
#[test]
fn an_error_events_str_message_is_capped_like_any_field_value() {
    let _serial = common::serial();
    let layer = tracing_xray::builder()
        .with_service_name("hunt")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(NoopExporter)
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let big = "x".repeat(1 << 20);
    let held = tracing::dispatcher::with_default(&dispatch, || {
        let request = tracing::info_span!("request");
        let before = common::live_bytes();
        request.in_scope(|| {
            for _ in 0..8 {
                tracing::error!(message = big.as_str());
            }
        });
        let held = common::live_bytes() - before;
        drop(request);
        held
    });
    xray.shutdown(Duration::from_secs(10)).unwrap();
    // 8 exceptions per span, each value at most 64 KiB, plus bookkeeping.
    let bound = 8 * FIELD_CAP + 64 * 1024;
    assert!(
        held <= bound as isize,
        "an open span holds {held} bytes for 8 ERROR events of 1 MiB &str messages \
         (at most {bound} expected: 8 exceptions of at most 64 KiB)"
    );
}

/// An exporter that blocks in its first `export` until released.
struct Gate {
    entered: mpsc::Sender<()>,
    release: Arc<(Mutex<bool>, Condvar)>,
}

impl Exporter for Gate {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let _ = self.entered.send(());
        let (open, cv) = &*self.release;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        ExportOutcome::delivered(batch.len())
    }
}

/// `with_max_queued_bytes` bounds the memory of the traces waiting for a
/// held-up worker ("an estimate, within a small factor of the heap they
/// use"). A trace of one span holds a whole chunk of 16 spans: counted as
/// its one span, 17 MiB of them waited behind a 1 MiB bound (with the queue
/// raised, as the docs suggest for bursts of small traces).
#[test]
fn the_queued_bytes_bound_bounds_the_memory_of_small_traces() {
    let _serial = common::serial();
    let (entered_tx, entered_rx) = mpsc::channel();
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let max_queued: usize = 1 << 20;
    let layer = tracing_xray::builder()
        .with_service_name("hunt")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(100_000)
        .with_max_queued_bytes(max_queued)
        .with_exporter(Gate {
            entered: entered_tx,
            release: release.clone(),
        })
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (grown, queued) = tracing::dispatcher::with_default(&dispatch, || {
        // The worker takes this one and stays in `export`.
        tracing::info_span!("first").in_scope(|| {});
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the worker reached the exporter");
        let before = common::live_bytes();
        for _ in 0..20_000 {
            tracing::info_span!("job").in_scope(|| {});
        }
        (
            common::live_bytes() - before,
            xray.stats().traces_queued - 1,
        )
    });
    let dropped = xray.stats().traces_dropped;
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    xray.shutdown(Duration::from_secs(10)).unwrap();
    assert!(dropped > 0, "the byte bound was reached");
    // "Within a small factor": allow 4.
    let bound = 4 * max_queued;
    assert!(
        grown <= bound as isize,
        "{queued} one-span traces wait behind a {max_queued}-byte bound and hold {grown} \
         bytes ({} per trace; at most {bound} expected)",
        grown / queued.max(1) as isize
    );
}
