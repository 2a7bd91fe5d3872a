//! `#[instrument]` async functions on a multi-threaded tokio runtime: each
//! span is one subsegment lasting from creation to close, however many polls
//! on however many threads.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tracing::instrument;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

#[instrument]
async fn query_db(request: u32) {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
}

#[instrument]
async fn call_api(request: u32) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    tokio::task::yield_now().await;
}

#[instrument(fields(annotation.request = request))]
async fn handle(request: u32) {
    query_db(request).await;
    let spawned = tokio::spawn(tracing::Instrument::in_current_span(call_api(request)));
    spawned.await.unwrap();
}

#[test]
fn thousand_concurrent_requests_make_thousand_correct_segments() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name("async-svc")
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    // This binary holds this one test: the subscriber is global, so every
    // runtime thread sees it.
    tracing_subscriber::registry().with(layer).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..1000).map(|i| tokio::spawn(handle(i))).collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    xray.flush(Duration::from_secs(10)).unwrap();

    let traces = exporter.traces();
    assert_eq!(traces.len(), 1000, "exactly one segment per request");
    assert_eq!(exporter.len(), 1000, "nothing was streamed separately");
    let validator = common::schema();
    let mut seen = HashMap::new();
    for t in &traces {
        common::assert_schema_valid(&validator, t);
        let request = t["annotations"]["request"].as_u64().unwrap();
        assert!(
            seen.insert(request, ()).is_none(),
            "request {request} twice"
        );
        assert_eq!(t["name"], "async-svc");
        assert_eq!(t["metadata"]["tracing"]["span_name"], "handle");
        let subs = t["subsegments"].as_array().unwrap();
        let mut names: Vec<&str> = subs.iter().map(|s| s["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["call_api", "query_db"]);
        for s in subs {
            // The child's own field says which request it belongs to.
            assert_eq!(s["metadata"]["tracing"]["request"].as_u64(), Some(request));
            let (ps, pe) = (
                t["start_time"].as_f64().unwrap(),
                t["end_time"].as_f64().unwrap(),
            );
            let (cs, ce) = (
                s["start_time"].as_f64().unwrap(),
                s["end_time"].as_f64().unwrap(),
            );
            assert!(ps <= cs && cs <= ce && ce <= pe, "nested timings");
            let min = if s["name"] == "query_db" {
                0.002
            } else {
                0.005
            };
            assert!(ce - cs >= min - 1e-6, "{} lasted {}", s["name"], ce - cs);
        }
    }
    assert_eq!(xray.stats().traces_dropped, 0);
}
