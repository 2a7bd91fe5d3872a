//! The layer's memory bounds, measured with a counting allocator (this
//! binary's own): what an open span or the queue holds stays within what
//! the docs promise.
mod common;

use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use tracing::info_span;
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

/// One unit of a long-lived root's work: a step `p` whose 64 failed
/// children stream (a part, whose exceptions wait for `p` to name them as
/// causes) and reaches the worker, then `p` itself, too large for the queue's bound in bytes
/// (1.2 MB of fields, a bound of 1 MiB), dropped and counted as the queue
/// drops any trace or part it has no room for.
fn step_whose_part_is_dropped(big: &str, xray: &tracing_xray::XrayHandle) {
    let p = info_span!(
        "p",
        f00 = big,
        f01 = big,
        f02 = big,
        f03 = big,
        f04 = big,
        f05 = big,
        f06 = big,
        f07 = big,
        f08 = big,
        f09 = big,
        f10 = big,
        f11 = big,
        f12 = big,
        f13 = big,
        f14 = big,
        f15 = big,
        f16 = big,
        f17 = big,
        f18 = big,
        f19 = big
    );
    p.in_scope(|| {
        for _ in 0..64 {
            info_span!("c", exception.message = "boom").in_scope(|| {});
        }
        // The children's part reached the worker (not dropped itself).
        xray.flush(std::time::Duration::from_secs(30)).unwrap();
    });
    drop(p);
}

/// README, "Bounded memory". The exceptions a part of a long-lived trace
/// leaves for its parent wait in the trace's own state until the parent is
/// packed. A parent whose part never reaches the worker (dropped on a full
/// queue, or over the queue's bound in bytes, as here) left its entry (up
/// to 64 exceptions) for as long as the trace lived, with no bound on their
/// number: after 1,100 dropped steps, 1,500 more grew the heap by about
/// 3 MB (a review found it). At most 1,024 parents are waited for.
#[test]
fn exceptions_waiting_for_a_dropped_parent_do_not_pile_up_in_a_long_lived_trace() {
    let _serial = common::serial();
    const WAIT: Duration = Duration::from_secs(30);
    let big = "x".repeat(60_000);
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_max_held_subsegments(63)
        .with_max_queued_bytes(1 << 20)
        .with_exporter(NoopExporter)
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (before, after) = tracing::dispatcher::with_default(&dispatch, || {
        let root = info_span!("connection");
        let _entered = root.enter();
        for _ in 0..1100 {
            step_whose_part_is_dropped(&big, &xray);
        }
        xray.flush(WAIT).unwrap();
        let before = common::live_bytes();
        for _ in 0..1500 {
            step_whose_part_is_dropped(&big, &xray);
        }
        xray.flush(WAIT).unwrap();
        (before, common::live_bytes())
    });
    let stats = xray.stats();
    assert_eq!(
        stats.traces_dropped, 2600,
        "each step's part dropped: {stats:?}"
    );
    let grown = after - before;
    assert!(
        grown < 512 * 1024,
        "an open trace's heap grew by {grown} bytes over 1,500 dropped parts: {stats:?}"
    );
}
