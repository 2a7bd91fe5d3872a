//! A shutdown while other threads finish traces flat out: every trace is
//! either exported or counted dropped, none is left counted as queued (a
//! trace that reached the queue just as the worker closed it was, about one
//! round in twenty).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter};

/// Counts the documents it is handed.
#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Exporter for Count {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.0.fetch_add(batch.len() as u64, Ordering::SeqCst);
        ExportOutcome::delivered(batch.len())
    }
}

#[test]
fn every_trace_finished_during_a_shutdown_is_exported_or_counted_dropped() {
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 300 && start.elapsed() < Duration::from_secs(8) {
        rounds += 1;
        let exported = Count::default();
        let layer = tracing_xray::builder()
            .with_service_name("svc")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_queue_capacity(100_000)
            .with_exporter(exported.clone())
            .build();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let produced = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = 3;
        let barrier = Arc::new(Barrier::new(threads + 1));
        let producers: Vec<_> = (0..threads)
            .map(|_| {
                let (dispatch, produced, stop, barrier) = (
                    dispatch.clone(),
                    produced.clone(),
                    stop.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            tracing::info_span!("root").in_scope(|| {});
                            produced.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                        }
                    })
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(Duration::from_micros(100 * (rounds % 10)));
        xray.shutdown(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        let produced = produced.load(Ordering::SeqCst);
        let stats = xray.stats();
        let exported = exported.0.load(Ordering::SeqCst);
        assert_eq!(
            (
                stats.traces_queued,
                stats.traces_queued + stats.traces_dropped
            ),
            (exported, produced),
            "round {rounds}: {produced} produced, {exported} exported, {stats:?}"
        );
    }
}
