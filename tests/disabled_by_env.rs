//! `AWS_XRAY_SDK_DISABLED=true` builds a layer that records and sends nothing.

use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

/// Set in the child process the test starts to read what it prints.
const CHILD: &str = "TRACING_XRAY_DISABLED_CHILD";

#[test]
fn sdk_disabled_switches_everything_off() {
    if std::env::var_os(CHILD).is_some() {
        // The child: an app that set its own global subscriber, then calls
        // `init` with tracing-xray switched off by the environment.
        tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
        let guard = tracing_xray::init();
        assert!(!guard.handle().is_enabled());
        return;
    }
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_XRAY_SDK_DISABLED", "TRUE") };
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

    // `init` under an existing global subscriber does not claim to have
    // installed anything.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sdk_disabled_switches_everything_off",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("AWS_XRAY_SDK_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("installed") && stderr.contains("tracing-xray: off"),
        "{stderr}"
    );
}
