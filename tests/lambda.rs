//! Lambda (SPEC §3.3): no segment is sent; spans under each invocation's
//! `Lambda runtime invoke` span become independent subsegments of that
//! invocation's facade, even when invocations run concurrently.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::{DocumentKind, InMemoryExporter};
use tracing_xray::Detectors;

#[test]
fn concurrent_invocations_land_under_their_own_facades() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_lambda(true)
        .with_detectors(Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let invocations = [
        (
            "1-6566f1a0-aaaaaaaaaaaaaaaaaaaaaaaa",
            "1111111111111111",
            "1",
        ),
        (
            "1-6566f1a1-bbbbbbbbbbbbbbbbbbbbbbbb",
            "2222222222222222",
            "1",
        ),
        (
            "1-6566f1a2-cccccccccccccccccccccccc",
            "3333333333333333",
            "0",
        ),
    ];
    let barrier = Arc::new(Barrier::new(invocations.len()));
    let threads: Vec<_> = invocations
        .iter()
        .map(|(root, parent, sampled)| {
            let header = format!("Root={root};Parent={parent};Sampled={sampled}");
            let dispatch = dispatch.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let invoke =
                        info_span!("Lambda runtime invoke", requestId = "r", xrayTraceId = %header);
                    invoke.in_scope(|| {
                        barrier.wait(); // all three invocations are open at once
                        info_span!("handler").in_scope(|| {
                            info_span!("query").in_scope(|| {});
                        });
                        barrier.wait();
                    });
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = exporter.documents();
    assert_eq!(docs.len(), 2, "one subsegment tree per sampled invocation");
    for doc in &docs {
        assert_eq!(doc.kind(), DocumentKind::Subsegment);
        let v: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
        assert_eq!(v["type"], "subsegment");
        assert_eq!(v["name"], "handler");
        assert_eq!(v["subsegments"][0]["name"], "query");
        let (root, parent, _) = invocations
            .iter()
            .find(|(r, _, _)| v["trace_id"] == *r)
            .expect("a known trace");
        assert_eq!(v["parent_id"], *parent, "under its own facade ({root})");
        assert!(v.get("origin").is_none());
    }
}

#[test]
fn top_level_span_uses_the_environment_header() {
    std::env::set_var(
        "_X_AMZN_TRACE_ID",
        "Root=1-6566f1a3-dddddddddddddddddddddddd;Parent=4444444444444444;Sampled=1",
    );
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_lambda(true)
        .with_detectors(Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info_span!("handle_event").in_scope(|| {});
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = exporter.json_documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["type"], "subsegment");
    assert_eq!(docs[0]["trace_id"], "1-6566f1a3-dddddddddddddddddddddddd");
    assert_eq!(docs[0]["parent_id"], "4444444444444444");
    assert_eq!(docs[0]["name"], "handle_event");
}
