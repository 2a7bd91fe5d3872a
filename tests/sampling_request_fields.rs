//! Local sampling rules against the fields real instrumentation gives a
//! root: the rule that matches decides which traces are sent. (Through
//! tower's `Service`, with the `tower` feature.)
#![cfg(feature = "tower")]

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;
use tower_service::Service;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::LocalRules;
use tracing_xray::Detectors;

/// Only `/orders/42` is traced; the default rule traces nothing.
fn rules() -> LocalRules {
    LocalRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
            "rules": [{"host": "*", "http_method": "get", "url_path": "/orders/42",
                       "fixed_target": 0, "rate": 1.0}]}"#,
    )
    .unwrap()
}

/// Sends each request to `app` under the rules above; the paths of the
/// traces sent.
fn traced(app: Router, requests: Vec<Request<Body>>) -> Vec<String> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(rules())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let _default = tracing_subscriber::registry().with(layer).set_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for request in requests {
            let mut app = app.clone();
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await
                .unwrap();
            app.call(request).await.unwrap();
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let mut urls: Vec<String> = exporter
        .traces()
        .iter()
        .map(|t| {
            t["http"]["request"]["url"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    urls.sort();
    urls
}

fn orders() -> Router {
    Router::new().route(
        "/orders/{id}",
        get(|| async {
            tracing::info_span!("load_order").in_scope(|| {});
            "ok"
        }),
    )
}

/// HTTP/2 requests reach a tower service with an absolute URI, which
/// tower-http's `TraceLayer` records as `uri`: the rule sees its path.
#[test]
fn tower_http_absolute_uri_is_matched_by_its_path() {
    let requests = [
        "/orders/42?x=1",
        "https://api.example.com:8443/orders/42?x=1",
    ]
    .into_iter()
    .chain(["https://api.example.com:8443/orders/7"])
    .map(|uri| Request::get(uri).body(Body::empty()).unwrap())
    .collect();
    let urls = traced(orders().layer(TraceLayer::new_for_http()), requests);
    assert_eq!(
        urls,
        ["/orders/42", "https://api.example.com:8443/orders/42"],
        "only the two requests for /orders/42 are traced"
    );
}

/// A span recording both the request's `uri` and axum's matched route as
/// `http.route`: the rule sees the request's path, not the route template.
#[test]
fn the_request_path_wins_over_the_route_template() {
    // What `MatchedPath` gives (axum's `matched-path` feature).
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
        tracing::info_span!(
            "request",
            method = %req.method(),
            uri = %req.uri(),
            "http.route" = "/orders/{id}",
        )
    });
    let app = orders().route_layer(trace);
    let requests = ["/orders/42", "/orders/7"]
        .into_iter()
        .map(|uri| Request::get(uri).body(Body::empty()).unwrap())
        .collect();
    assert_eq!(traced(app, requests), ["/orders/42"]);
}
