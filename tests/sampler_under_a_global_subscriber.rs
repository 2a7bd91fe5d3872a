//! A sampler that logs, under a global subscriber (the usual set-up; its own
//! test binary). A root decided at its first child runs the sampler while the
//! layer holds the root's lock; tracing drops nested events only under a
//! scoped dispatcher, so the sampler's event used to come back into the
//! layer, which waited on that lock for ever.

use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::{Sampler, SamplingDecision, SamplingRequest};

struct LoggingSampler;

impl Sampler for LoggingSampler {
    fn sample(&self, _: &SamplingRequest<'_>) -> SamplingDecision {
        tracing::error!("rules are stale, sampling anyway");
        SamplingDecision::sampled()
    }
}

#[test]
fn a_logging_sampler_under_a_global_subscriber_does_not_deadlock() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(LoggingSampler)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let request = tracing::info_span!("request");
        // The first child decides the root (its lock held)...
        request.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
        drop(request);
        // ...and a root decided at its close.
        tracing::info_span!("lone").in_scope(|| {});
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("deadlocked: the sampler's event came back into a held lock");
    xray.flush(Duration::from_secs(5)).unwrap();
    let traces = exporter.traces();
    assert_eq!(traces.len(), 2);
    // What the sampler logged went nowhere: no fault on either trace.
    assert!(
        traces.iter().all(|t| t.get("fault").is_none()),
        "{traces:#?}"
    );
}
