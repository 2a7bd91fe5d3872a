//! A small instrumented request handler, traced with tracing-xray and drawn
//! as a timeline in the terminal: no AWS account, no daemon.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use tracing::{info, instrument};
use tracing_subscriber::prelude::*;
use tracing_xray::export::TimelineExporter;

#[derive(Debug)]
struct PaymentError;

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payments API answered 503 Service Unavailable")
    }
}

impl std::error::Error for PaymentError {}

#[instrument(fields(annotation.table = "customers", otel.kind = "client"))]
async fn load_customer(id: &str) -> String {
    tokio::time::sleep(Duration::from_millis(60)).await; // a DynamoDB GetItem
    format!("customer {id}")
}

#[instrument(fields(annotation.bucket = "invoices"))]
async fn fetch_invoice(id: &str) -> Vec<u8> {
    tokio::time::sleep(Duration::from_millis(45)).await; // an S3 GetObject
    vec![0; 16]
}

#[instrument(err)]
async fn call_payments_api(amount_cents: u64) -> Result<(), PaymentError> {
    tokio::time::sleep(Duration::from_millis(2500)).await; // a slow external API
    Err(PaymentError)
}

#[instrument(fields(annotation.customer = %customer_id, metadata.cart_items = 3))]
async fn handle_checkout(customer_id: &str) {
    let (customer, invoice) = tokio::join!(load_customer(customer_id), fetch_invoice("inv-7"));
    info!(%customer, invoice_bytes = invoice.len(), "loaded");
    if let Err(e) = call_payments_api(4_999).await {
        info!(error = %e, "payment failed, order kept for retry");
    }
}

#[tokio::main]
async fn main() {
    let layer = tracing_xray::builder()
        .with_service_name("quickstart")
        // Trace every request (the default samples 1 a second + 5 %).
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(TimelineExporter::stdout())
        .build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    handle_checkout("c-42").await;

    xray.flush(Duration::from_secs(2)).expect("flush");
}
