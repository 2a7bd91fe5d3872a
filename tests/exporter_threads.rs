//! An exporter that sends from a thread of its own: spans opened on that
//! thread inside `export::untraced` never reach the layer, while one opened
//! there outside it does (the thread is an application thread to the
//! layer). This binary installs a global subscriber, so the sender thread
//! sees it too.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, InMemoryExporter};

enum Job {
    Batch(Vec<Document>),
    Flush(mpsc::Sender<()>),
}

/// Hands batches to a sender thread, which opens a span for each one.
struct Threaded(mpsc::Sender<Job>);

impl Threaded {
    fn new(sink: InMemoryExporter) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || {
                // Outside `untraced` (and once the subscriber is set, with
                // the first job): traced like any application span.
                let Ok(first) = rx.recv() else { return };
                tracing::info_span!("sender_started").in_scope(|| {});
                tracing_xray::export::untraced(|| {
                    let mut sink = sink;
                    for job in std::iter::once(first).chain(rx) {
                        match job {
                            Job::Batch(batch) => {
                                let span = tracing::error_span!("send", docs = batch.len());
                                let _entered = span.enter();
                                tracing::error!("sending");
                                sink.export(batch);
                            }
                            Job::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })
            })
            .unwrap();
        Threaded(tx)
    }
}

impl Exporter for Threaded {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let n = batch.len();
        match self.0.send(Job::Batch(batch)) {
            Ok(()) => ExportOutcome::delivered(n),
            Err(_) => ExportOutcome::default(),
        }
    }

    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        let (done, wait) = mpsc::channel();
        if self.0.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
        ExportOutcome::default()
    }
}

#[test]
fn spans_of_an_untraced_sender_thread_do_not_come_back() {
    let sink = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(Threaded::new(sink.clone()))
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    for i in 0..5 {
        tracing::info_span!("request", i).in_scope(|| {});
        xray.flush(Duration::from_secs(5)).unwrap();
    }
    // Give a (wrong) loop every chance to show itself.
    for _ in 0..3 {
        xray.flush(Duration::from_secs(5)).unwrap();
    }
    let mut names: Vec<String> = sink
        .json_documents()
        .iter()
        .map(|doc| {
            doc["metadata"]["tracing"]["span_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    // The five requests, and the sender's one span made outside `untraced`.
    assert_eq!(
        names,
        [
            "request",
            "request",
            "request",
            "request",
            "request",
            "sender_started"
        ]
    );
    assert_eq!(xray.stats().traces_dropped, 0);
}

/// Found by a review of the hunts' fixes. The wrapper made each *poll*
/// untraced, but the inner future is dropped outside `untraced` when the
/// wrapper is dropped before it completes: a cancelled credentials fetch
/// (a `timeout`/`select!` around it, the task aborted, the application's
/// runtime shutting down with the spawned fetch pending, which is how
/// HttpExporterBuilder's documented `OnRuntime` wrapper ends). Whatever the
/// inner future's destructors do (a span held across an `.await`
/// closed, a cleanup span, an error logged on cancellation) reaches the
/// layer as the application's own work: here a `cleanup` span becomes a
/// trace of the service and an ERROR event inside it a fault. The rustdoc
/// promises "a future whose work this crate's layer never traces": right,
/// nothing exported (the `Box::pin`ned future dropped under `untraced`
/// too).
#[test]
fn a_cancelled_untraced_future_drops_its_work_untraced() {
    struct OnDrop;
    impl Drop for OnDrop {
        fn drop(&mut self) {
            tracing::info_span!("credentials_cleanup").in_scope(|| {
                tracing::error!("credentials fetch cancelled");
            });
        }
    }
    let c = common::capture_documents(
        |b| b,
        || {
            use std::future::Future;
            let mut fetch = Box::pin(tracing_xray::export::untraced_future(async {
                let _guard = OnDrop;
                let span = tracing::info_span!("load_credentials");
                // Held across the await: pending forever.
                std::future::pending::<()>().await;
                drop(span);
            }));
            // Polled once (the work starts, untraced), then cancelled.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fetch.as_mut().poll(&mut cx).is_pending());
            drop(fetch);
            // The application's own work, traced as ever.
            tracing::info_span!("request").in_scope(|| {});
        },
    );
    let names: Vec<&Value> = c
        .docs
        .iter()
        .map(|d| &d["metadata"]["tracing"]["span_name"])
        .collect();
    assert_eq!(names, ["request"], "{:#?}", c.docs);
}
