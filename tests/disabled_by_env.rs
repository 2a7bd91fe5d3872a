//! `AWS_XRAY_SDK_DISABLED=true` builds a layer that records and sends nothing.

use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

#[test]
fn sdk_disabled_switches_everything_off() {
    std::env::set_var("AWS_XRAY_SDK_DISABLED", "TRUE");
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter.clone())
        .build();
    assert!(!layer.is_enabled());
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("request", annotation.x = 1).in_scope(|| {
            tracing::error!("boom");
        });
    });
    xray.flush(Duration::from_secs(1)).unwrap();
    xray.shutdown(Duration::from_secs(1)).unwrap();
    assert!(exporter.is_empty());
    assert_eq!(xray.stats(), tracing_xray::Stats::default());
}
