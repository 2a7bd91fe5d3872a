//! `HttpExporter` end to end against moto's X-Ray API on 127.0.0.1, with
//! SigV4 signature checking on (see `support/moto.rs` for the setup).
#![cfg(feature = "http")]

#[path = "support/moto.rs"]
mod moto;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moto::{Moto, REGION};
use tracing_subscriber::prelude::*;
use tracing_xray::XrayHandle;
use tracing_xray::export::{
    Document, ExportOutcome, Exporter, HttpExporter, HttpExporterBuilder, HttpStatsHandle,
};

/// Records every document handed to the wrapped exporter.
struct Tee<E> {
    inner: E,
    seen: Arc<Mutex<Vec<Document>>>,
}

impl<E: Exporter> Exporter for Tee<E> {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        self.seen.lock().unwrap().extend(batch.iter().cloned());
        self.inner.export(batch)
    }
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        self.inner.flush(timeout)
    }
    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        self.inner.shutdown(timeout)
    }
    fn next_poll(&self) -> Option<Instant> {
        self.inner.next_poll()
    }
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        self.inner.poll(now)
    }
}

fn exporter(moto: &Moto) -> HttpExporterBuilder {
    HttpExporter::builder()
        .with_region(REGION)
        .with_endpoint(moto.url())
        .with_static_credentials(&moto.access_key_id, &moto.secret_access_key, None)
        .with_batch_delay(Duration::from_millis(50))
        .with_connect_timeout(Duration::from_millis(500))
        .with_read_timeout(Duration::from_secs(10))
        .with_retry_backoff(Duration::from_millis(50), Duration::from_millis(300))
}

struct Run {
    dispatch: tracing::Dispatch,
    xray: XrayHandle,
    http: HttpStatsHandle,
    seen: Arc<Mutex<Vec<Document>>>,
}

impl Run {
    fn new(builder: HttpExporterBuilder) -> Run {
        let exporter = builder.build().expect("exporter");
        let http = exporter.stats_handle();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let layer = tracing_xray::builder()
            .with_service_name("moto-test")
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_detectors(tracing_xray::Detectors::none())
            .with_queue_capacity(20_000)
            .with_exporter(Tee {
                inner: exporter,
                seen: seen.clone(),
            })
            .build();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        Run {
            dispatch,
            xray,
            http,
            seen,
        }
    }

    /// `n` traces, each a root with two children and an annotation.
    fn traces(&self, n: usize, tag: &str) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            for i in 0..n {
                tracing::info_span!("request", annotation.tag = tag, annotation.n = i as u64)
                    .in_scope(|| {
                        tracing::info_span!("load").in_scope(|| {});
                        tracing::info_span!("save", metadata.rows = 3).in_scope(|| {});
                    });
            }
        });
    }

    /// `n` traces of one span each.
    fn small_traces(&self, n: usize) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            for _ in 0..n {
                tracing::info_span!("tick").in_scope(|| {});
            }
        });
    }

    fn flush(&self, timeout: Duration) {
        let _ = self.xray.flush(timeout);
    }

    fn seen(&self) -> Vec<Document> {
        self.seen.lock().unwrap().clone()
    }
}

fn trace_ids(docs: &[Document]) -> Vec<String> {
    let set: BTreeSet<String> = docs.iter().map(|d| d.trace_id().to_string()).collect();
    set.into_iter().collect()
}

/// trace id → sorted documents.
fn by_trace(docs: &[Document]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in docs {
        map.entry(d.trace_id().to_string())
            .or_default()
            .push(d.as_str().to_owned());
    }
    map.values_mut().for_each(|v| v.sort());
    map
}

fn fetched(moto: &Moto, ids: &[String]) -> BTreeMap<String, Vec<String>> {
    moto.batch_get_traces(ids)
        .into_iter()
        .map(|(id, mut docs)| {
            docs.sort();
            (id, docs)
        })
        .collect()
}

#[test]
fn documents_come_back_from_batch_get_traces_unchanged() {
    let Some(moto) = Moto::start() else { return };
    let run = Run::new(exporter(&moto));
    run.traces(7, "round-trip");
    run.flush(Duration::from_secs(20));

    let sent = run.seen();
    assert_eq!(sent.len(), 7);
    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (7, 0));
    let got = fetched(&moto, &trace_ids(&sent));
    assert_eq!(got, by_trace(&sent));
    // The documents are the layer's, with their subsegments and annotations.
    let doc: serde_json::Value = serde_json::from_str(&got.values().next().unwrap()[0]).unwrap();
    assert_eq!(doc["name"], "moto-test");
    assert_eq!(doc["annotations"]["tag"], "round-trip");
    assert_eq!(doc["subsegments"].as_array().unwrap().len(), 2);
}

#[test]
fn a_wrong_secret_is_a_counted_authentication_failure() {
    let Some(moto) = Moto::start() else { return };
    let run = Run::new(exporter(&moto).with_static_credentials(
        &moto.access_key_id,
        "not-the-secret",
        None,
    ));
    run.traces(3, "first");
    run.flush(Duration::from_secs(10));
    run.traces(4, "second");
    run.flush(Duration::from_secs(10));

    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (0, 7));
    let http = run.http.snapshot();
    assert_eq!(http.auth_failures, 1, "{http:?}");
    assert_eq!(http.requests, 1, "not retried: {http:?}");
    // Nothing got in.
    let ids = trace_ids(&run.seen());
    assert!(moto.batch_get_traces(&ids).is_empty());
}

#[test]
fn documents_sent_while_moto_is_down_arrive_after_it_returns() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let run = Run::new(exporter(&moto));
    run.traces(1, "before");
    run.flush(Duration::from_secs(10));
    assert_eq!(run.xray.stats().documents_exported, 1);

    moto.stop();
    run.traces(10, "during");
    run.flush(Duration::from_millis(800));
    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (1, 0));
    assert!(run.http.snapshot().retries >= 1);

    moto.restart();
    run.flush(Duration::from_secs(20));
    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (11, 0));
    let during: Vec<Document> = run.seen().into_iter().skip(1).collect();
    assert_eq!(fetched(&moto, &trace_ids(&during)), by_trace(&during));
}

#[test]
fn past_the_backlog_cap_the_oldest_are_dropped_and_counted() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let run = Run::new(exporter(&moto).with_backlog_capacity(20));
    moto.stop();
    run.small_traces(50);
    run.flush(Duration::from_millis(800));
    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (0, 30));
    assert_eq!(run.http.snapshot().backlog_dropped, 30);

    moto.restart();
    run.flush(Duration::from_secs(20));
    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (20, 30));
    let sent = run.seen();
    let (oldest, newest) = sent.split_at(30);
    assert_eq!(fetched(&moto, &trace_ids(newest)), by_trace(newest));
    assert!(moto.batch_get_traces(&trace_ids(oldest)).is_empty());
}

#[test]
fn ten_thousand_traces_arrive_in_batches_of_at_most_50() {
    let Some(moto) = Moto::start() else { return };
    let run = Run::new(exporter(&moto));
    run.small_traces(10_000);
    run.xray
        .shutdown(Duration::from_secs(120))
        .expect("delivered within the timeout");

    let stats = run.xray.stats();
    assert_eq!(stats.traces_dropped, 0);
    assert_eq!(
        (stats.documents_exported, stats.documents_failed),
        (10_000, 0)
    );
    let http = run.http.snapshot();
    assert_eq!(http.largest_batch, 50, "{http:?}");
    assert!(http.requests >= 200, "{http:?}");
    assert_eq!(http.documents_delivered, 10_000);

    let sent: BTreeSet<String> = trace_ids(&run.seen()).into_iter().collect();
    assert_eq!(sent.len(), 10_000);
    let stored: BTreeSet<String> = moto.trace_summary_ids().into_iter().collect();
    assert_eq!(stored, sent);
}

/// Credentials from a provider, close enough to expiry that every batch asks
/// the provider again: all of them sign correctly.
#[test]
fn credentials_from_a_provider_are_refreshed_and_accepted() {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::{ProvideCredentials, future};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    #[derive(Debug)]
    struct ShortLived {
        id: String,
        secret: String,
        calls: Arc<AtomicUsize>,
    }
    impl ProvideCredentials for ShortLived {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                &self.id,
                &self.secret,
                None,
                Some(SystemTime::now() + Duration::from_secs(60)),
                "short-lived",
            )))
        }
    }

    let Some(moto) = Moto::start() else { return };
    let calls = Arc::new(AtomicUsize::new(0));
    let run = Run::new(exporter(&moto).with_credentials_provider(ShortLived {
        id: moto.access_key_id.clone(),
        secret: moto.secret_access_key.clone(),
        calls: calls.clone(),
    }));
    run.traces(3, "provider");
    run.flush(Duration::from_secs(10));
    run.traces(2, "provider");
    run.flush(Duration::from_secs(10));

    let stats = run.xray.stats();
    assert_eq!((stats.documents_exported, stats.documents_failed), (5, 0));
    let requests = run.http.snapshot().requests;
    assert!(requests >= 2, "{requests}");
    assert_eq!(
        calls.load(Ordering::SeqCst) as u64,
        requests,
        "asked again before each request, as expiry is near"
    );
    let sent = run.seen();
    assert_eq!(fetched(&moto, &trace_ids(&sent)), by_trace(&sent));
}
