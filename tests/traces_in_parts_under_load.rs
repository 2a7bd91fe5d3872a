//! The "trace sent in parts" paths under load, on a multi-threaded
//! runtime: requests through `XrayServerLayer` (in front of an axum
//! `Router`) whose handlers spawn work in the request's span that outlives
//! the response, long-lived roots streaming at the same time, and the
//! invariants of what the exporter received: every span once, at most 50
//! annotations a trace and the demoted count adding up, every `cause` and
//! every independent subsegment's `parent_id` naming what was sent, no
//! document over the limit, counters adding up. (See
//! `tests/traces_in_parts.rs` for each path alone.)
#![cfg(feature = "tower")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::{Instrument, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

const WAIT: Duration = Duration::from_secs(20);

static UID: AtomicU64 = AtomicU64::new(1);

fn uid() -> u64 {
    UID.fetch_add(1, Ordering::Relaxed)
}

/// A finished child of the current span with 30 annotations.
fn step_with_thirty_annotations() {
    info_span!(
        "annotated",
        uid = uid(),
        annotation.a00 = 0,
        annotation.a01 = 1,
        annotation.a02 = 2,
        annotation.a03 = 3,
        annotation.a04 = 4,
        annotation.a05 = 5,
        annotation.a06 = 6,
        annotation.a07 = 7,
        annotation.a08 = 8,
        annotation.a09 = 9,
        annotation.a10 = 0,
        annotation.a11 = 1,
        annotation.a12 = 2,
        annotation.a13 = 3,
        annotation.a14 = 4,
        annotation.a15 = 5,
        annotation.a16 = 6,
        annotation.a17 = 7,
        annotation.a18 = 8,
        annotation.a19 = 9,
        annotation.a20 = 0,
        annotation.a21 = 1,
        annotation.a22 = 2,
        annotation.a23 = 3,
        annotation.a24 = 4,
        annotation.a25 = 5,
        annotation.a26 = 6,
        annotation.a27 = 7,
        annotation.a28 = 8,
        annotation.a29 = 9,
    )
    .in_scope(|| {});
}

#[tracing::instrument(err, fields(uid = uid()))]
fn inner_call(n: u64) -> Result<(), common::Failure> {
    Err(common::Failure("inner call failed"))
}

#[tracing::instrument(err, fields(uid = uid()))]
fn outer_call(n: u64) -> Result<(), common::Failure> {
    inner_call(n)?;
    Ok(())
}

struct Round {
    /// Released once every response was received: the spawned work then
    /// ends after its request's segment was sent.
    release: tokio::sync::watch::Receiver<bool>,
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

async fn handle(Path(i): Path<u64>, State(round): State<Arc<Round>>) -> &'static str {
    step_with_thirty_annotations();
    info_span!(
        "who",
        uid = uid(),
        enduser.id = format!("user-{i}").as_str()
    )
    .in_scope(|| {});
    // Work that outlives the response: `work` stays open, `quick` (its
    // child) ends before the response.
    let work = info_span!("work", uid = uid(), error = Empty);
    work.in_scope(|| info_span!("quick", uid = uid()).in_scope(|| {}));
    let mut release = round.release.clone();
    let a = tokio::spawn(
        async move {
            let _ = release.wait_for(|r| *r).await;
            step_with_thirty_annotations();
            let _ = outer_call(i);
        }
        .instrument(work),
    );
    let mut release = round.release.clone();
    let b = tokio::spawn(
        async move {
            let _ = release.wait_for(|r| *r).await;
            // Made after the segment was sent: a child of the request span.
            info_span!("late", uid = uid()).in_scope(|| {
                step_with_thirty_annotations();
                let _ = outer_call(i);
            });
        }
        .in_current_span(),
    );
    round.handles.lock().unwrap().extend([a, b]);
    "ok"
}

/// A long-lived root streaming its finished children.
async fn job(k: u64) {
    let job = info_span!("job", uid = uid(), annotation.job = k);
    async {
        for _ in 0..6 {
            step_with_thirty_annotations();
            info_span!("job_step", uid = uid()).in_scope(|| {
                let _ = outer_call(k);
            });
            tokio::task::yield_now().await;
        }
    }
    .instrument(job)
    .await;
}

fn layer(exporter: &InMemoryExporter) -> tracing_xray::XrayLayer {
    tracing_xray::builder()
        .with_service_name("stress")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_queue_capacity(1 << 16)
        .with_max_queued_bytes(1 << 30)
        .with_max_held_subsegments(3)
        .with_exporter(exporter.clone())
        .build()
}

const REQUESTS: u64 = 48;
const JOBS: u64 = 4;

/// One round: `REQUESTS` concurrent requests and `JOBS` long-lived roots.
fn round(rt: &tokio::runtime::Runtime, xray: &tracing_xray::XrayHandle) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let round = Arc::new(Round {
        release: rx,
        handles: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/r/{i}", get(handle))
        .with_state(round.clone())
        .layer(tracing_xray::tower::XrayServerLayer::new());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for k in 0..JOBS {
            tasks.push(tokio::spawn(job(k)));
        }
        let mut requests = Vec::new();
        for i in 0..REQUESTS {
            let mut app = app.clone();
            requests.push(tokio::spawn(async move {
                let request = http::Request::get(format!("http://example.com/r/{i}"))
                    .body(axum::body::Body::empty())
                    .unwrap();
                std::future::poll_fn(|cx| {
                    Service::<http::Request<axum::body::Body>>::poll_ready(&mut app, cx)
                })
                .await
                .unwrap();
                let response = app.call(request).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
            }));
        }
        for r in requests {
            r.await.unwrap();
        }
        tx.send(true).unwrap();
        let handles = std::mem::take(&mut *round.handles.lock().unwrap());
        for h in handles {
            h.await.unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    drop(app);
    xray.flush(WAIT).unwrap();
}

/// Every node of every document, with its trace id.
fn all_nodes(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .flat_map(|d| {
            let trace = d["trace_id"].as_str().unwrap().to_owned();
            common::walk(d)
                .into_iter()
                .map(move |(_, n)| (trace.clone(), n))
        })
        .collect()
}

fn annotation_count(n: &Value) -> usize {
    n["annotations"].as_object().map_or(0, |a| a.len())
}

/// Runs `rounds` rounds and returns the documents and stats.
fn run(rounds: usize) -> (Vec<Value>, tracing_xray::Stats, u64) {
    let exporter = InMemoryExporter::new();
    let layer = layer(&exporter);
    let xray = layer.handle();
    tracing_subscriber::registry().with(layer).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let first = UID.load(Ordering::Relaxed);
    for _ in 0..rounds {
        round(&rt, &xray);
    }
    let made = UID.load(Ordering::Relaxed) - first;
    (exporter.json_documents(), xray.stats(), made)
}

/// Under 4 worker threads, 48 concurrent requests a round (3 rounds) and 4
/// long-lived roots streaming, every invariant holds (see the module docs).
/// It found one broken: `subsegments_streamed`, documented as "Independent
/// subsegment documents sent", missed the spans sent with a request's
/// segment whose parent was still open (`quick`, child of `work`, which the
/// handler's spawned work keeps open): one per request.
#[test]
#[ignore]
fn stress_served_requests_and_streaming_roots_inner() {
    let (docs, stats, made) = run(3);
    let nodes = all_nodes(&docs);
    // Every span made is in exactly one document.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (_, n) in &nodes {
        if let Some(u) = n["metadata"]["tracing"]["uid"].as_u64() {
            *seen.entry(u).or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, made, "every span made is sent");
    assert!(seen.values().all(|&c| c == 1), "no span sent twice");
    // Each request's segment is sent once, with the user its child named.
    let segments: Vec<&Value> = docs.iter().filter(|d| d["type"] != "subsegment").collect();
    assert_eq!(segments.len() as u64, 3 * (REQUESTS + JOBS));
    for d in &segments {
        if let Some(url) = d["http"]["request"]["url"].as_str() {
            let i = url.rsplit('/').next().unwrap();
            assert_eq!(d["user"], format!("user-{i}").as_str(), "{url}");
        }
    }
    // A request's segment leaves before any part of its trace made after
    // it (a span opened after the segment's end, its response), so that the
    // worker gives the segment its user and its room for annotations first.
    let mut segment_seen: HashSet<&str> = HashSet::new();
    let mut later_parts = 0;
    let request_ends: HashMap<&str, f64> = segments
        .iter()
        .filter(|s| s["http"]["request"]["url"].is_string())
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap(),
                s["end_time"].as_f64().unwrap(),
            )
        })
        .collect();
    for d in &docs {
        let trace = d["trace_id"].as_str().unwrap();
        if d["type"] != "subsegment" {
            segment_seen.insert(trace);
        } else if request_ends
            .get(trace)
            .is_some_and(|&end| d["start_time"].as_f64().unwrap() > end)
        {
            later_parts += 1;
            assert!(
                segment_seen.contains(trace),
                "a later part before its segment: {d:#}"
            );
        }
    }
    assert!(later_parts > 0);
    // At most 50 annotations per trace, and the demoted ones add up: a
    // request declares 3 x 30, a job 6 x 30 + 1.
    let mut per_trace: HashMap<String, usize> = HashMap::new();
    for (t, n) in &nodes {
        *per_trace.entry(t.clone()).or_default() += annotation_count(n);
    }
    assert!(per_trace.values().all(|&c| c <= 50), "{per_trace:?}");
    let declared = 3 * (REQUESTS * 90 + JOBS * 181);
    let indexed: usize = per_trace.values().sum();
    assert_eq!(declared - indexed as u64, stats.annotations_demoted);
    // Every cause names an exception of its trace.
    let mut ids: HashMap<&str, HashSet<String>> = HashMap::new();
    for (t, n) in &nodes {
        for e in common::exceptions(n) {
            ids.entry(t.as_str())
                .or_default()
                .insert(e["id"].as_str().unwrap().to_owned());
        }
    }
    let mut causes = 0;
    for (t, n) in &nodes {
        for e in common::exceptions(n) {
            if let Some(c) = e["cause"].as_str() {
                causes += 1;
                assert!(ids[t.as_str()].contains(c), "cause {c} not in trace {t}");
            }
        }
    }
    assert!(causes > 0);
    // Every independent subsegment's parent was sent; no document too big.
    let sent: HashSet<&str> = nodes
        .iter()
        .map(|(_, n)| n["id"].as_str().unwrap())
        .collect();
    let mut subsegment_docs = 0u64;
    for d in &docs {
        assert!(serde_json::to_string(d).unwrap().len() <= 64_000);
        if d["type"] == "subsegment" {
            subsegment_docs += 1;
            assert!(sent.contains(d["parent_id"].as_str().unwrap()), "{d:#}");
        }
    }
    // The counters.
    assert_eq!(stats.documents_exported, docs.len() as u64, "{stats:?}");
    assert_eq!(
        (
            stats.traces_dropped,
            stats.spans_dropped,
            stats.documents_failed
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.traces_queued <= docs.len() as u64, "{stats:?}");
    assert_eq!(
        stats.subsegments_streamed, subsegment_docs,
        "subsegments_streamed counts every independent subsegment document sent \
         ({stats:?})"
    );
}

#[test]
fn stress_served_requests_and_streaming_roots() {
    common::run_alone("stress_served_requests_and_streaming_roots_inner");
}

/// `Stats::subsegments_streamed` counts every independent subsegment
/// document sent, as its doc says. The stress run found one per request
/// missing; alone (one request, current thread): a handler opens `work`,
/// in which `quick` runs and ends, and keeps `work` open (as work spawned
/// in it would) past its response. The segment is sent with the response,
/// and `quick`, whose parent is still open, leaves in the same part as an
/// independent subsegment: it was not counted.
#[test]
fn a_span_sent_with_its_requests_segment_under_an_open_parent_is_counted_as_streamed() {
    use tracing_xray::tower::XrayServerLayer;

    #[derive(Clone)]
    struct Handler(Arc<Mutex<Option<tracing::Span>>>);
    impl Service<http::Request<String>> for Handler {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            let work = info_span!("work");
            work.in_scope(|| info_span!("quick").in_scope(|| {}));
            *self.0.lock().unwrap() = Some(work);
            std::future::ready(Ok(http::Response::new("ok".to_owned())))
        }
    }

    let exporter = InMemoryExporter::new();
    let layer = layer(&exporter);
    let xray = layer.handle();
    let kept = Arc::new(Mutex::new(None));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut service = XrayServerLayer::new().layer(Handler(kept.clone()));
        rt.block_on(async {
            let request = http::Request::get("http://example.com/r/1")
                .body(String::new())
                .unwrap();
            let response = service.call(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        });
        // The spawned work ends: `work` leaves, and the request's span closes.
        drop(kept.lock().unwrap().take());
    });
    xray.flush(WAIT).unwrap();
    let docs = exporter.json_documents();
    let subsegments: Vec<&Value> = docs.iter().filter(|d| d["type"] == "subsegment").collect();
    assert_eq!(docs.len(), 3, "{docs:#?}");
    assert_eq!(
        subsegments.len(),
        2,
        "quick and work, each on its own: {docs:#?}"
    );
    assert_eq!(
        xray.stats().subsegments_streamed,
        2,
        "one per independent subsegment document: {:?}",
        xray.stats()
    );
}
