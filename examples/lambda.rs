//! An AWS Lambda function traced with tracing-xray, on `lambda_runtime`.
//!
//! ```text
//! cargo lambda build --release --example lambda --features tower
//! ```
//!
//! (Build it like any Rust function, e.g. with cargo-lambda; enable active
//! tracing on the function.)
//!
//! How it fits together:
//!
//! - In Lambda (`LAMBDA_TASK_ROOT` is set) the layer sends no segment of its
//!   own: Lambda sends the function's segment. `lambda_runtime`'s
//!   `TracingLayer` opens a `Lambda runtime invoke` span per invocation whose
//!   `xrayTraceId` field holds the invocation's trace header (checked in
//!   `lambda_runtime` 1.5: `layers/trace.rs`). That span becomes a *facade*
//!   for the function segment, and the spans below it are sent as
//!   independent subsegments of it as soon as they end.
//! - Without that span (a runtime that does not open it, or spans outside
//!   it), the layer falls back to `_X_AMZN_TRACE_ID`, which `lambda_runtime`
//!   1.5 sets before each invocation in the default, sequential mode. In its
//!   concurrent mode (`run_concurrent` with `AWS_LAMBDA_MAX_CONCURRENCY` > 1)
//!   the variable is not set, so keep `TracingLayer` in the stack.
//! - Lambda may freeze the process as soon as the runtime asks for the next
//!   event, so [`XrayFlushLayer`] flushes after each invocation (the response
//!   has already been posted by then: the caller does not wait for it).

use std::time::Duration;

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Error, LambdaEvent, Runtime, service_fn};
use serde_json::{Value, json};
use tracing::instrument;
use tracing_subscriber::prelude::*;
use tracing_xray::tower::XrayFlushLayer;

#[instrument(fields(annotation.table = "orders", otel.kind = "client"))]
async fn load_order(id: &str) -> Value {
    tokio::time::sleep(Duration::from_millis(20)).await; // a DynamoDB GetItem
    json!({ "id": id, "total_cents": 4999 })
}

#[instrument(skip(event), fields(annotation.order = tracing::field::Empty))]
async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let id = event.payload["order_id"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    tracing::Span::current().record("annotation.order", id.as_str());
    let order = load_order(&id).await;
    Ok(json!({ "order": order }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Lambda mode is detected from `LAMBDA_TASK_ROOT`; Lambda also sets
    // `AWS_XRAY_DAEMON_ADDRESS`, which the default UDP exporter reads.
    let layer = tracing_xray::builder().build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    Runtime::new(service_fn(handler))
        // Opens `Lambda runtime invoke` (with `xrayTraceId`) per invocation.
        .layer(TracingLayer::new())
        // Outermost: flush once the invocation (and its spans) is done.
        .layer(XrayFlushLayer::new(xray).with_timeout(Duration::from_millis(300)))
        .run()
        .await
}
