//! Spans hidden from the layer by a per-layer filter never cause a panic:
//! children attach to the nearest visible ancestor, or become roots.

use std::time::Duration;

use tracing::info_span;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

fn run(f: impl FnOnce()) -> Vec<serde_json::Value> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name("filtered")
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_filter(filter_fn(|m| !m.name().starts_with("hidden"))));
    tracing::subscriber::with_default(subscriber, f);
    xray.flush(Duration::from_secs(5)).unwrap();
    exporter.traces()
}

#[test]
fn child_of_hidden_span_attaches_to_visible_grandparent() {
    let traces = run(|| {
        info_span!("root").in_scope(|| {
            info_span!("hidden_middle").in_scope(|| {
                info_span!("leaf").in_scope(|| {});
            });
        });
    });
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["metadata"]["tracing"]["span_name"], "root");
    assert_eq!(traces[0]["subsegments"][0]["name"], "leaf");
}

#[test]
fn child_of_hidden_root_becomes_a_root() {
    let traces = run(|| {
        info_span!("hidden_root").in_scope(|| {
            info_span!("a").in_scope(|| {});
            info_span!("b").in_scope(|| {});
            tracing::error!("an error event under a hidden span is ignored");
        });
    });
    let mut names: Vec<_> = traces
        .iter()
        .map(|t| {
            t["metadata"]["tracing"]["span_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert_ne!(traces[0]["trace_id"], traces[1]["trace_id"]);
}

#[test]
fn explicit_parent_and_out_of_order_close_do_not_panic() {
    let traces = run(|| {
        let root = info_span!("root");
        let child = info_span!(parent: &root, "child");
        let orphan = info_span!(parent: None, "orphan");
        drop(root); // kept open by `child`'s reference
        drop(orphan);
        child.in_scope(|| {});
        drop(child);
    });
    assert_eq!(traces.len(), 2);
    let root = traces
        .iter()
        .find(|t| t["metadata"]["tracing"]["span_name"] == "root")
        .unwrap();
    assert_eq!(root["subsegments"][0]["name"], "child");
}

/// Two layers with disjoint per-layer filters (one per service) in one
/// subscriber: `XraySpanExt` reaches a span's own layer, not the outermost
/// one the subscriber finds, so the decision, the trace and the service
/// name are the owner's.
#[test]
fn a_span_of_the_inner_of_two_layers_is_decided_and_sent_by_it() {
    use tracing_xray::sampling::{AlwaysSample, NeverSample};
    use tracing_xray::{Sampled, TraceHeader, XraySpanExt};

    let layer = |name: &str, exporter: &InMemoryExporter| {
        tracing_xray::builder()
            .with_detectors(tracing_xray::Detectors::none())
            .with_service_name(name)
            .with_exporter(exporter.clone())
    };
    let (never, always) = (InMemoryExporter::new(), InMemoryExporter::new());
    let inner = layer("never", &never).with_sampler(NeverSample).build();
    let outer = layer("always", &always).with_sampler(AlwaysSample).build();
    let handles = [inner.handle(), outer.handle()];
    let subscriber = tracing_subscriber::registry()
        .with(inner.with_filter(filter_fn(|m| m.target() == "never")))
        .with(outer.with_filter(filter_fn(|m| m.target() == "always")));
    let continued: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .parse()
            .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        // The inner layer's: its sampler decides (never).
        let job = tracing::info_span!(target: "never", "job");
        assert_eq!(job.xray_header().unwrap().sampled(), Sampled::No);
        drop(job);
        // The inner layer's, continuing a sampled trace: sent by it.
        let request = tracing::info_span!(target: "never", "request");
        request.set_xray_parent(&continued);
        assert_eq!(request.xray_header().unwrap().sampled(), Sampled::Yes);
        drop(request);
        // The outer layer's: its own sampler (always).
        let other = tracing::info_span!(target: "always", "other");
        assert_eq!(other.xray_header().unwrap().sampled(), Sampled::Yes);
    });
    for handle in &handles {
        handle.flush(Duration::from_secs(5)).unwrap();
    }
    let sent = never.json_documents();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["name"], "never");
    assert_eq!(sent[0]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    let sent = always.json_documents();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["name"], "always");
    assert_eq!(sent[0]["metadata"]["tracing"]["span_name"], "other");
}
