//! A sampler is the application's code: what it logs while the layer takes a
//! decision must never come back into a lock the layer holds.

use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::XraySpanExt;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::{Sampler, SamplingDecision, SamplingRequest};

/// Logs at ERROR (always recorded by the layer) and DEBUG (recorded with
/// `with_events(true)`) from every decision.
struct LoggingSampler;

impl Sampler for LoggingSampler {
    fn sample(&self, _: &SamplingRequest<'_>) -> SamplingDecision {
        tracing::error!("rules are stale, sampling anyway");
        tracing::debug!("sampled");
        SamplingDecision::sampled()
    }
}

/// Runs `f` on a thread of its own, failing (instead of hanging the whole
/// run) if it has not finished in 20 s.
fn within_20_s(f: impl FnOnce() -> usize + Send + 'static) -> usize {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("deadlocked: the sampler's events came back into a held lock")
}

/// `xray_header()` on a root whose decision is still pending runs the
/// sampler from the application's code (not in a subscriber callback, where
/// tracing drops nested events), with the layer holding the root's lock.
/// With the layer alone, and beside a fmt layer (which reads the span's
/// fields for every event), with events on and off.
#[test]
fn a_sampler_that_logs_never_deadlocks_xray_header() {
    for (events, with_fmt) in [(false, false), (true, false), (false, true), (true, true)] {
        let exported = within_20_s(move || {
            let exporter = InMemoryExporter::new();
            let layer = tracing_xray::builder()
                .with_sampler(LoggingSampler)
                .with_events(events)
                .with_exporter(exporter.clone())
                .build();
            let xray = layer.handle();
            let fmt = with_fmt.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::sink));
            let subscriber = tracing_subscriber::registry().with(layer).with(fmt);
            tracing::subscriber::with_default(subscriber, || {
                let request = tracing::info_span!("request", url.path = "/orders");
                let header = request.in_scope(|| request.xray_header()).unwrap();
                assert_eq!(header.sampled(), tracing_xray::Sampled::Yes);
                // Events after the decision are the application's again.
                request.in_scope(|| tracing::error!("handler failed"));
            });
            xray.flush(Duration::from_secs(5)).unwrap();
            let traces = exporter.traces();
            assert_eq!(traces.len(), 1);
            let exceptions = traces[0]["cause"]["exceptions"].as_array().unwrap();
            assert_eq!(exceptions.len(), 1, "{exceptions:?}");
            assert_eq!(exceptions[0]["message"], "handler failed");
            traces.len()
        });
        assert_eq!(exported, 1, "events {events}, fmt {with_fmt}");
    }
}
