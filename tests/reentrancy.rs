//! An exporter that itself emits `tracing` spans and events must not feed
//! them back into the layer (no loop, no extra documents), nor when it is
//! dropped. This binary installs a global subscriber, so the worker thread
//! sees it too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter, InMemoryExporter};

struct Chatty {
    inner: InMemoryExporter,
    calls: Arc<AtomicUsize>,
}

impl Exporter for Chatty {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let span = tracing::error_span!("exporter_span", docs = batch.len());
        let _g = span.enter();
        tracing::error!("exporting {} documents", batch.len());
        self.inner.export(batch)
    }
}

/// Closing its connections, as HTTP clients and pools do, opens a span.
impl Drop for Chatty {
    fn drop(&mut self) {
        tracing::info_span!("close_idle_connections").in_scope(|| {});
    }
}

#[test]
fn exporter_events_do_not_come_back() {
    let inner = InMemoryExporter::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(Chatty {
            inner: inner.clone(),
            calls: calls.clone(),
        })
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    for i in 0..5 {
        tracing::info_span!("request", i).in_scope(|| {});
        xray.flush(Duration::from_secs(5)).unwrap();
    }
    // Give a (wrong) loop every chance to show itself.
    xray.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(inner.len(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    for doc in inner.json_documents() {
        assert_eq!(doc["metadata"]["tracing"]["span_name"], "request");
    }

    // Found by a hunt: the exporter was dropped on the worker thread after
    // the worker's guard against tracing itself had ended (a function's
    // parameters, the worker and its exporter, drop after its locals), so
    // the span its `Drop` opens was traced: with the queue closed, counted a
    // dropped trace the application never had (and sent, were the layer
    // still running).
    assert_eq!(xray.shutdown(Duration::from_secs(10)), Ok(()));
    let stats = xray.stats();
    assert_eq!(stats.documents_exported, 5, "{stats:?}");
    assert_eq!(
        (stats.traces_dropped, stats.spans_dropped),
        (0, 0),
        "the exporter's own span was traced: {stats:?}"
    );
    assert_eq!(inner.len(), 5);
}
