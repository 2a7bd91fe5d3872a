//! A real axum server on 127.0.0.1 behind tower-http's `TraceLayer`, hit by
//! a real HTTP client: each request is one segment with its `http` block and
//! the flags its status calls for.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .route(
            "/busy",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        )
}

/// Serves `router` on 127.0.0.1, sends GET requests to `paths` with a real
/// client, and returns one segment per request, keyed by path.
fn exchange(router: Router, paths: &[&str]) -> Vec<(String, Value)> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let _default = tracing_subscriber::registry().with(layer).set_default();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        for path in paths {
            let req = Request::get(format!("http://{addr}{path}"))
                .header("user-agent", "xray-test/1")
                .body(Empty::new())
                .unwrap();
            let res = client.request(req).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        // The server's span closes once the response body is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        while exporter.traces().len() < paths.len() && Instant::now() < deadline {
            xray.flush(Duration::from_secs(1)).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.abort();
    });
    xray.flush(Duration::from_secs(5)).unwrap();

    let schema = common::schema();
    for doc in exporter.json_documents() {
        common::assert_schema_valid(&schema, &doc);
    }
    let traces = exporter.traces();
    assert_eq!(traces.len(), paths.len(), "{traces:#?}");
    traces
        .into_iter()
        .map(|t| {
            let url = t["http"]["request"]["url"].as_str().unwrap().to_owned();
            (url, t)
        })
        .collect()
}

fn flags(doc: &Value) -> (bool, bool, bool) {
    (
        doc["error"] == true,
        doc["throttle"] == true,
        doc["fault"] == true,
    )
}

/// tower-http's defaults as they are: the request part of the `http` block
/// comes from the span's `method` and `uri`; the status is only logged in a
/// DEBUG event (not recorded in the span), so only the ERROR event that
/// `DefaultOnFailure` logs for 5xx marks a fault.
#[test]
fn default_trace_layer() {
    let paths = ["/ok", "/missing", "/busy", "/boom"];
    let docs = exchange(app().layer(TraceLayer::new_for_http()), &paths);
    for (url, doc) in &docs {
        assert_eq!(doc["name"], "web");
        assert_eq!(doc["http"]["request"]["method"], "GET");
        assert!(paths.contains(&url.as_str()), "{url}");
        assert_eq!(doc["metadata"]["tracing"]["span_name"], "request");
        assert_eq!(doc["metadata"]["tracing"]["version"], "HTTP/1.1");
        // The status comes from tower-http's "finished processing request"
        // event, which the layer reads.
        let (status, expect) = match url.as_str() {
            "/ok" => (200, (false, false, false)),
            "/missing" => (404, (true, false, false)),
            "/busy" => (429, (true, true, false)),
            _ => (500, (false, false, true)),
        };
        assert_eq!(doc["http"]["response"]["status"], status, "{url}: {doc:#}");
        assert_eq!(flags(doc), expect, "{url}: {doc:#}");
    }
    let boom = &docs.iter().find(|(u, _)| u == "/boom").unwrap().1;
    assert_eq!(boom["cause"]["exceptions"][0]["message"], "response failed");
}

/// A custom span that records the status itself (OpenTelemetry names).
#[test]
fn trace_layer_recording_the_status() {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<Body>| {
            tracing::info_span!(
                "request",
                method = %req.method(),
                uri = %req.uri(),
                "user_agent.original" = req
                    .headers()
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok()),
                "http.response.status_code" = tracing::field::Empty,
            )
        })
        .on_response(|res: &Response<Body>, _latency: Duration, span: &Span| {
            span.record("http.response.status_code", res.status().as_u16());
        });
    let docs = exchange(app().layer(trace), &["/ok", "/missing", "/busy", "/boom"]);
    let mut seen = Vec::new();
    for (url, doc) in &docs {
        let http = &doc["http"];
        assert_eq!(http["request"]["method"], "GET");
        assert_eq!(http["request"]["user_agent"], "xray-test/1");
        let status = http["response"]["status"].as_u64().unwrap();
        seen.push((url.clone(), status, flags(doc)));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/boom".to_owned(), 500, (false, false, true)),
            ("/busy".to_owned(), 429, (true, true, false)),
            ("/missing".to_owned(), 404, (true, false, false)),
            ("/ok".to_owned(), 200, (false, false, false)),
        ]
    );
}
