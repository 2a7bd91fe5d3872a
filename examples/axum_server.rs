//! An axum service behind tower-http's `TraceLayer`, traced to X-Ray with no
//! X-Ray-specific code in the handlers: an annotation, a metadata field, an
//! outgoing HTTP call (a `remote` subsegment, with the trace header) and an
//! error path, all written as ordinary `tracing` fields. The request span's
//! `xray.trace_header` field continues the caller's trace (here, the
//! service's own call to `/stock`), as `XrayServerLayer` of the `tower`
//! feature does for services that use it.
//!
//! ```text
//! cargo run --example axum_server          # serves 127.0.0.1:3000, sends to the X-Ray daemon
//! cargo run --example axum_server -- demo  # serves, calls itself, prints the documents
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_http::trace::TraceLayer;
use tracing::{Span, instrument};
use tracing_subscriber::prelude::*;
use tracing_xray::XraySpanExt;
use tracing_xray::export::InMemoryExporter;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

#[derive(Clone)]
struct App {
    client: HttpClient,
    addr: SocketAddr,
}

#[derive(Debug)]
struct OutOfStock(String);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {} is out of stock", self.0)
    }
}

impl std::error::Error for OutOfStock {}

/// `GET /orders/{id}`: an annotation and a metadata field on the request's
/// segment, then a call to the inventory service.
async fn get_order(State(app): State<App>, Path(id): Path<String>) -> Result<String, StatusCode> {
    let span = Span::current();
    span.record("annotation.order_id", id.as_str());
    span.record("metadata.order.items", 3_u64);
    match check_stock(&app, &id).await {
        Ok(()) => Ok(format!("order {id}: ready")),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The outgoing call: `otel.kind = "client"` makes it a `remote` subsegment
/// named after the host; its status fills `http.response`.
#[instrument(
    skip(app),
    fields(
        otel.kind = "client",
        http.request.method = "GET",
        url.full = tracing::field::Empty,
        server.address = "inventory.internal",
        http.response.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    )
)]
async fn check_stock(app: &App, id: &str) -> Result<(), OutOfStock> {
    let span = Span::current();
    let url = format!("http://{}/stock/{id}", app.addr);
    span.record("url.full", url.as_str());
    let mut req = Request::get(url).body(Empty::new()).unwrap();
    // Propagate the trace: Parent = this subsegment.
    if let Some(header) = span.xray_header() {
        req.headers_mut().insert(
            tracing_xray::HEADER_NAME,
            header.to_string().parse().unwrap(),
        );
    }
    let res = app
        .client
        .request(req)
        .await
        .map_err(|_| OutOfStock(id.into()))?;
    let status = res.status();
    span.record("http.response.status_code", status.as_u16());
    let _ = res.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        let err = OutOfStock(id.into());
        span.record("error", &err as &(dyn std::error::Error + 'static));
        Err(err)
    }
}

/// The inventory service (here, the same process): item 0 is out of stock.
async fn stock(Path(id): Path<String>) -> StatusCode {
    if id == "0" {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    }
}

fn router(app: App) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<Body>| {
            tracing::info_span!(
                "request",
                method = %req.method(),
                uri = %req.uri(),
                "user_agent.original" = req.headers().get("user-agent").and_then(|v| v.to_str().ok()),
                // The caller's X-Amzn-Trace-Id, if any: this request joins its trace.
                "xray.trace_header" = req
                    .headers()
                    .get(tracing_xray::HEADER_NAME)
                    .and_then(|v| v.to_str().ok()),
                "http.response.status_code" = tracing::field::Empty,
                "annotation.order_id" = tracing::field::Empty,
                "metadata.order.items" = tracing::field::Empty,
            )
        })
        .on_response(|res: &Response<Body>, _latency: Duration, span: &Span| {
            span.record("http.response.status_code", res.status().as_u16());
        });
    Router::new()
        .route("/orders/{id}", get(get_order))
        .route("/stock/{id}", get(stock))
        .with_state(app)
        .layer(trace)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let demo = std::env::args().nth(1).as_deref() == Some("demo");
    let exporter = InMemoryExporter::new();
    let mut builder = tracing_xray::builder().with_service_name("orders");
    if demo {
        builder = builder
            .with_exporter(exporter.clone())
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(tracing_xray::sampling::AlwaysSample);
    }
    let layer = builder.build();
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    let listener = tokio::net::TcpListener::bind(if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    })
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let app = App {
        client: client.clone(),
        addr,
    };
    let server = tokio::spawn(async move { axum::serve(listener, router(app)).await });
    if !demo {
        eprintln!("listening on http://{addr} (try /orders/7 and /orders/0)");
        let _ = server.await;
        return;
    }
    for id in ["7", "0"] {
        let req = Request::get(format!("http://{addr}/orders/{id}"))
            .header("user-agent", "demo/1.0")
            .body(Empty::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        let _ = res.into_body().collect().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = exporter.json_documents();
    for doc in &docs {
        if doc["http"]["request"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/orders"))
        {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        }
    }
    // The inventory call's own segments joined the callers' traces.
    for doc in &docs {
        if let Some(url) = doc["http"]["request"]["url"]
            .as_str()
            .filter(|u| u.starts_with("/stock"))
        {
            println!(
                "{url}: segment of trace {}, parent {} (the check_stock subsegment)",
                doc["trace_id"], doc["parent_id"]
            );
        }
    }
    server.abort();
}
