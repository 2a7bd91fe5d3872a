//! Sampled and unsampled requests interleaved on a multi-threaded tokio
//! runtime, with spans created on one thread and closed on another: every
//! sampled trace arrives whole, no unsampled one arrives at all.
//!
//! The layer remembers the open spans of unsampled traces in a lock-free
//! memo keyed by span id (so unsampled children skip the registry's
//! extensions); the registry reuses ids as fast as spans close, so this is
//! where a memo entry outliving its span would show, as a sampled child gone
//! missing or an unsampled span sent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tracing::{Instrument, instrument};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

/// A layer sampling with [`common::EvenPaths`], exporting in memory.
fn even_paths_layer(
    service: &str,
    queue: usize,
) -> (
    tracing_xray::XrayLayer,
    tracing_xray::XrayHandle,
    InMemoryExporter,
) {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(common::EvenPaths)
        .with_service_name(service)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(queue)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    (layer, xray, exporter)
}

#[instrument]
async fn leaf(request: u64, n: u32) {
    tokio::task::yield_now().await;
}

#[instrument]
async fn step(request: u64) {
    leaf(request, 0).await;
    // Created here, finished on whichever thread runs the task.
    let spawned = tokio::spawn(leaf(request, 1).in_current_span());
    tokio::task::yield_now().await;
    spawned.await.unwrap();
}

async fn handle(request: u64) {
    let path = format!("/orders/{request}");
    let root = tracing::info_span!("handle", url.path = %path, annotation.request = request);
    async move {
        step(request).await;
        let spawned = tokio::spawn(step(request).in_current_span());
        spawned.await.unwrap();
        tracing::info_span!("sync_child", request).in_scope(|| {
            tracing::info_span!("grandchild", request).in_scope(|| {});
        });
    }
    .instrument(root)
    .await
}

fn count(doc: &serde_json::Value, names: &mut HashMap<String, usize>) {
    for s in doc["subsegments"].as_array().into_iter().flatten() {
        *names
            .entry(s["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
        count(s, names);
    }
}

#[test]
fn interleaved_sampled_and_unsampled_requests_stay_apart() {
    const REQUESTS: u64 = 4000;
    let (layer, xray, exporter) = even_paths_layer("mixed", 1 << 14);
    // Global, so that every runtime thread sees it (the other test of this
    // binary sets its own for its thread).
    tracing_subscriber::registry().with(layer).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Waves, so that span slots (and their ids) are reused many times.
        for wave in 0..(REQUESTS / 500) {
            let tasks: Vec<_> = (0..500)
                .map(|i| tokio::spawn(handle(wave * 500 + i)))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    xray.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(xray.stats().traces_dropped, 0);

    let traces = exporter.traces();
    let mut seen = HashMap::new();
    for t in &traces {
        let request = t["annotations"]["request"].as_u64().unwrap();
        assert_eq!(request % 2, 0, "unsampled request {request} was sent");
        assert!(
            seen.insert(request, ()).is_none(),
            "request {request} twice"
        );
        let mut names = HashMap::new();
        count(t, &mut names);
        let expected: HashMap<String, usize> = [
            ("step", 2),
            ("leaf", 4),
            ("sync_child", 1),
            ("grandchild", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(names, expected, "request {request}: {t}");
    }
    assert_eq!(seen.len() as u64, REQUESTS / 2, "every sampled request");
}

/// One thread, one request after another: the registry hands the same few
/// span slots out again and again, until their ids repeat (the generation
/// packed in an id wraps after some thousands of reuses), so ids of
/// unsampled spans come back as ids of sampled ones. (A memo entry left
/// behind would drop such a span, unless another id had overwritten it
/// first; the layer's unit tests check that the memo ends empty.)
#[test]
fn ids_reused_across_generations_never_drop_a_sampled_span() {
    const REQUESTS: u64 = 40_000;
    let (layer, xray, exporter) = even_paths_layer("sequential", 1 << 16);
    let subscriber = tracing_subscriber::registry().with(layer);
    let mut ids = HashMap::<u64, usize>::new();
    tracing::subscriber::with_default(subscriber, || {
        for request in 0..REQUESTS {
            let path = format!("/orders/{request}");
            let root =
                tracing::info_span!("handle", url.path = %path, annotation.request = request);
            let _root = root.enter();
            // Three children, an odd number: the ids of sampled and unsampled
            // requests do not fall into separate classes when they repeat.
            for _ in 0..3 {
                let child = tracing::info_span!("child");
                *ids.entry(child.id().unwrap().into_u64()).or_default() += 1;
                child.in_scope(|| tracing::info_span!("grandchild").in_scope(|| {}));
            }
        }
    });
    xray.flush(Duration::from_secs(60)).unwrap();
    // The point of the test: the registry did repeat ids.
    let repeats = ids.values().max().copied().unwrap_or(0);
    assert!(repeats > 1, "no span id was handed out twice");
    eprintln!("span ids handed out up to {repeats} times each");

    let traces = exporter.traces();
    assert_eq!(traces.len() as u64, REQUESTS / 2);
    for t in &traces {
        let request = t["annotations"]["request"].as_u64().unwrap();
        assert_eq!(request % 2, 0, "unsampled request {request} was sent");
        let mut names = HashMap::new();
        count(t, &mut names);
        assert_eq!(names.get("child"), Some(&3), "request {request}: {t}");
        assert_eq!(names.get("grandchild"), Some(&3), "request {request}: {t}");
    }
}
