//! Sends traces straight to the AWS X-Ray API over HTTPS: no daemon.
//!
//! ```text
//! AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
//!     cargo run --example http_exporter --features http
//! ```
//!
//! The credentials need the IAM permission `xray:PutTraceSegments`. Set
//! `XRAY_ENDPOINT` to send elsewhere (a VPC endpoint, or a local fake of the
//! API such as moto):
//!
//! ```text
//! PID=$(scripts/moto-server.sh start 5055)
//! env $(cat target/moto-logs/moto-5055.env) XRAY_ENDPOINT=http://127.0.0.1:5055 \
//!     cargo run --example http_exporter --features http
//! scripts/moto-server.sh stop "$PID"
//! ```

use std::time::Duration;

use tracing::{info, info_span};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_xray::export::HttpExporter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Region and credentials from the environment (AWS_REGION or
    // AWS_DEFAULT_REGION; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    // AWS_SESSION_TOKEN). `with_credentials_provider` takes any
    // `aws_credential_types::provider::ProvideCredentials` instead.
    let mut builder = HttpExporter::builder().with_batch_delay(Duration::from_millis(500));
    if let Ok(endpoint) = std::env::var("XRAY_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    // Without a region or credentials, say which (the error's message, not
    // its `Debug` form, which `?` out of `main` would print).
    let exporter = match builder.build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let http = exporter.stats_handle();
    println!("sending to {}", exporter.url());

    let layer = tracing_xray::builder()
        .with_service_name("http-exporter-example")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter)
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
        .init();

    for order in 0..3 {
        info_span!("checkout", annotation.order = order).in_scope(|| {
            info_span!("reserve_stock").in_scope(|| std::thread::sleep(Duration::from_millis(20)));
            info_span!("charge_card").in_scope(|| std::thread::sleep(Duration::from_millis(30)));
            info!(order, "order placed");
        });
    }

    // Sending happens on the layer's worker thread; before exiting, give it
    // a few seconds to deliver what is left.
    xray.shutdown(Duration::from_secs(5))?;
    let stats = xray.stats();
    let http = http.snapshot();
    println!(
        "{} documents delivered, {} failed ({} PutTraceSegments calls, {} authentication failures)",
        stats.documents_exported, stats.documents_failed, http.requests, http.auth_failures
    );
    Ok(())
}
