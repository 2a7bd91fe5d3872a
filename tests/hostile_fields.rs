//! Hostile field input through the conventions: 10,000 recorded values,
//! keys with every invalid character, 1 MB strings, NaN and infinities, 200
//! annotations. Every document is valid, under the size limit, and what was
//! cut is counted.

mod common;

use std::time::Duration;

use tracing::{field::Empty, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::{InMemoryExporter, MAX_DOCUMENT_BYTES};
use tracing_xray::Detectors;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn hostile_fields_give_valid_bounded_documents_and_counts() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("hostile\t<svc>?")
        .with_detectors(Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_indexed_fields(&["tenant id!"])
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let huge = "é".repeat(512 * 1024); // 1 MiB of UTF-8
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let root = info_span!(
            "req",
            "annotation. \t\n\\\"<>?;*()!$~^{}[]|`'é名" = 1_i64,
            "annotation." = 2_i64,
            "tenant id!" = "t",
            "http.request.method" = huge.as_str(),
            "url.full" = huge.as_str(),
            "http.response.status_code" = f64::NAN,
            "xray.name" = "\u{0}\u{1f}",
            "enduser.id" = huge.as_str(),
            nan = f64::NAN,
            inf = f64::INFINITY,
            "annotation.neg_inf" = f64::NEG_INFINITY,
            n = Empty,
        );
        root.in_scope(|| {
            // 10,000 values recorded on one span.
            for i in 0..10_000_u64 {
                root.record("n", i);
            }
            // 200 annotations over 10 spans of 20 each: X-Ray indexes 50.
            for _ in 0..10 {
                info_span!(
                    "annotated",
                    "annotation.a00" = 0,
                    "annotation.a01" = 1,
                    "annotation.a02" = 2,
                    "annotation.a03" = 3,
                    "annotation.a04" = 4,
                    "annotation.a05" = 5,
                    "annotation.a06" = 6,
                    "annotation.a07" = 7,
                    "annotation.a08" = 8,
                    "annotation.a09" = 9,
                    "annotation.a10" = 10,
                    "annotation.a11" = 11,
                    "annotation.a12" = 12,
                    "annotation.a13" = 13,
                    "annotation.a14" = 14,
                    "annotation.a15" = 15,
                    "annotation.a16" = 16,
                    "annotation.a17" = 17,
                    "annotation.a18" = 18,
                    "annotation.a19" = 19,
                )
                .in_scope(|| {});
            }
            info_span!(
                "sql",
                "db.system" = huge.as_str(),
                "db.user" = huge.as_str(),
                "server.address" = huge.as_str(),
                "db.query.text" = huge.as_str(),
            )
            .in_scope(|| {});
            info_span!(
                "DynamoDB.GetItem",
                "rpc.system" = "aws-api",
                "rpc.service" = huge.as_str(),
                "rpc.method" = huge.as_str(),
                "aws.dynamodb.table_names" = huge.as_str(),
            )
            .in_scope(|| {});
        });
    });
    xray.flush(Duration::from_secs(30)).unwrap();

    let schema = common::schema();
    let docs = exporter.documents();
    assert!(!docs.is_empty());
    for doc in &docs {
        assert!(doc.len() <= MAX_DOCUMENT_BYTES, "{} bytes", doc.len());
        let value: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
        common::assert_schema_valid(&schema, &value);
    }
    let trace = &exporter.traces()[0];
    let total_annotations = annotations_in(trace);
    assert_eq!(total_annotations, 50);
    let stats = xray.stats();
    // 200 + the root's 2 (one key was empty, one of no usable character:
    // metadata, uncounted) - 50 kept.
    assert_eq!(stats.annotations_demoted, 200 + 2 - 50, "{stats:?}");
    // Huge http, sql and aws strings are cut to 250 characters where they
    // are written: no span is left to trim (trimming: udp_end_to_end.rs).
    assert_eq!(stats.spans_trimmed, 0, "{stats:?}");
    assert_eq!(stats.traces_dropped, 0);
    eprintln!(
        "hostile: {} documents, largest {} bytes, {stats:?}",
        docs.len(),
        docs.iter().map(|d| d.len()).max().unwrap()
    );
}

#[test]
fn a_trace_sent_in_parts_still_indexes_at_most_50_annotations() {
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        // A long-lived root: its finished children leave in parts of five.
        .with_max_held_subsegments(5)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("root").in_scope(|| {
            for i in 0..100_u64 {
                tracing::info_span!("child", annotation.k = i).in_scope(|| {});
                if i % 10 == 0 {
                    // Let the worker see the parts one by one.
                    xray.flush(Duration::from_secs(5)).unwrap();
                }
            }
        });
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    assert!(exporter.len() > 2, "sent in parts");
    let trace = &exporter.traces()[0];
    let total_annotations = annotations_in(trace);
    assert_eq!(total_annotations, 50);
    assert_eq!(xray.stats().annotations_demoted, 50);
    // One count per independent document, however it came to be split off.
    let independent = exporter
        .documents()
        .iter()
        .filter(|d| d.kind() == tracing_xray::export::DocumentKind::Subsegment)
        .count();
    assert_eq!(xray.stats().subsegments_streamed as usize, independent);
}

#[test]
fn the_segment_keeps_its_annotations_when_its_subsegments_would_use_all_50() {
    let (traces, xray) = common::run_in_memory(
        |b| {
            b.with_sampler(tracing_xray::sampling::AlwaysSample)
                .with_indexed_fields(&["tenant", "route"])
        },
        || {
            tracing::info_span!("request", tenant = "acme", route = "/orders").in_scope(|| {
                for i in 0..60_u64 {
                    tracing::info_span!("step", annotation.k = i).in_scope(|| {});
                }
            });
        },
    );
    let trace = &traces[0];
    // The segment is what users filter traces by: its two come first.
    assert_eq!(trace["annotations"]["tenant"], "acme", "{trace}");
    assert_eq!(trace["annotations"]["route"], "/orders", "{trace}");
    assert_eq!(annotations_in(trace), 50);
    assert_eq!(xray.stats().annotations_demoted, 62 - 50);
}

/// Annotations on every (sub)segment of a trace.
fn annotations_in(trace: &serde_json::Value) -> usize {
    common::walk(trace)
        .iter()
        .map(|(_, n)| n["annotations"].as_object().map_or(0, |a| a.len()))
        .sum()
}

/// The service version goes into every segment: a huge one is cut to
/// X-Ray's 250 characters for a string, so no segment goes over the limit
/// (or loses its metadata to trimming) because of it.
#[test]
fn a_huge_service_version_is_cut_not_sent_in_every_segment() {
    let version = "1.0.0+".to_owned() + &"é".repeat(70_000);
    let (traces, _) = common::run_in_memory(
        |b| {
            b.with_sampler(tracing_xray::sampling::AlwaysSample)
                .with_service_version(version.clone())
        },
        || info_span!("request", metadata.kept = 1).in_scope(|| {}),
    );
    assert_eq!(traces.len(), 1);
    let sent = traces[0]["service"]["version"].as_str().unwrap();
    assert_eq!(sent.chars().count(), 250);
    assert!(version.starts_with(sent));
    assert!(traces[0].to_string().len() <= MAX_DOCUMENT_BYTES);
    assert_eq!(traces[0]["metadata"]["default"]["kept"], 1, "{}", traces[0]);
}

/// A finished child of the current span carrying 20 annotations.
fn step_with_twenty_annotations() {
    tracing::info_span!(
        "step",
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
        annotation.a19 = 9
    )
    .in_scope(|| {});
}

/// A layer streaming a long-lived root's finished children as soon as it
/// holds two, every trace sampled, into memory.
fn streaming_layer(exporter: &tracing_xray::export::InMemoryExporter) -> tracing_xray::XrayLayer {
    tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_max_held_subsegments(1)
        .with_queue_capacity(1 << 16)
        .with_exporter(exporter.clone())
        .build()
}

/// Requests served through `XrayServerLayer` (feature `tower`).
#[cfg(feature = "tower")]
mod served {
    use super::*;

    /// A handler served through `XrayServerLayer`: one child span with one
    /// annotation, as a request with an indexed tenant has.
    #[derive(Clone)]
    struct Handler;

    impl tower_service::Service<http::Request<String>> for Handler {
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
            tracing::info_span!("handler", annotation.tenant = "acme").in_scope(|| {});
            std::future::ready(Ok(http::Response::new("ok".to_owned())))
        }
    }

    /// README, the `annotation.KEY` row: "past 50 per trace they [annotations] move to metadata
    /// (counted in `annotations_demoted`)"; SPEC §1.3: X-Ray indexes at most 50
    /// annotations per trace. A long-lived root (a nightly job) streams its
    /// finished children in parts; the worker remembers how many annotations
    /// each such trace has used. Every request served through `XrayServerLayer`
    /// is sent when its response body ends, a part after which its budget goes
    /// on: a request with any annotation left a count behind that nothing
    /// removed (its root's own close sent nothing). After 1,024 ordinary
    /// requests the worker's counts, full of them, were cleared whole, the
    /// job's still open trace's with them: its next part indexed 40 annotations
    /// again, 80 in all, none demoted.
    #[test]
    fn served_requests_make_an_open_trace_forget_its_annotation_count() {
        use http_body_util::BodyExt;
        use tower_layer::Layer;
        use tower_service::Service;

        let exporter = tracing_xray::export::InMemoryExporter::new();
        let layer = streaming_layer(&exporter);
        let xray = layer.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let job = tracing::info_span!("nightly_job");
            // First part: 40 annotations.
            job.in_scope(|| {
                step_with_twenty_annotations();
                step_with_twenty_annotations();
            });
            xray.flush(WAIT).unwrap();
            // Ordinary traffic meanwhile, each request with one annotation.
            let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Handler);
            for i in 0..1100 {
                let request = http::Request::get(format!("http://example.com/orders/{i}"))
                    .body(String::new())
                    .unwrap();
                runtime.block_on(async {
                    let response = service.call(request).await.unwrap();
                    response.into_body().collect().await.unwrap();
                });
            }
            xray.flush(WAIT).unwrap();
            // Second part: 40 more, of which only 10 fit the trace's 50.
            job.in_scope(|| {
                step_with_twenty_annotations();
                step_with_twenty_annotations();
            });
            drop(job);
        });
        xray.flush(WAIT).unwrap();
        let traces = exporter.traces();
        let job = traces
            .iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == "nightly_job")
            .expect("the job's trace");
        let stats = xray.stats();
        assert!(
            annotations_in(job) <= 50,
            "the job's trace indexes {} annotations (X-Ray indexes 50 per trace); \
             annotations_demoted = {}",
            annotations_in(job),
            stats.annotations_demoted
        );
        assert_eq!(stats.annotations_demoted, 30, "{stats:?}");
    }
}

/// The same limit (SPEC §1.3) with no stale count at all: a server holding
/// more than 1,024 long-lived roots open at once (a WebSocket or streaming
/// server with a root per connection) whose finished children stream in
/// parts. The worker's per-trace annotation counts were cleared whole once
/// they reached 1,024 traces, so every open trace's next part started from
/// zero again: each of the 1,100 traces indexed 80 annotations. The README
/// now says how many traces open in parts at once keep their count
/// (16,384); past that, one is forgotten for each new one.
#[test]
fn more_than_1024_open_traces_in_parts_each_index_more_than_50_annotations() {
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let layer = streaming_layer(&exporter);
    let xray = layer.handle();
    const CONNECTIONS: usize = 1100;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let roots: Vec<_> = (0..CONNECTIONS)
            .map(|_| tracing::info_span!("connection"))
            .collect();
        for _ in 0..2 {
            for root in &roots {
                root.in_scope(|| {
                    step_with_twenty_annotations();
                    step_with_twenty_annotations();
                });
            }
            xray.flush(WAIT).unwrap();
        }
    });
    xray.flush(WAIT).unwrap();
    let traces = exporter.traces();
    assert_eq!(traces.len(), CONNECTIONS);
    let over = traces.iter().filter(|t| annotations_in(t) > 50).count();
    let stats = xray.stats();
    assert_eq!(
        over, 0,
        "{over} of {CONNECTIONS} traces index more than 50 annotations; {stats:?}"
    );
    assert_eq!(stats.annotations_demoted, 30 * CONNECTIONS as u64);
}

/// Samples every trace, naming as its rule a 70,000-character name
/// (`SamplingDecision::with_rule_name` takes any string).
struct LongRuleName;

impl tracing_xray::sampling::Sampler for LongRuleName {
    fn sample(
        &self,
        _: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        tracing_xray::sampling::SamplingDecision::sampled().with_rule_name("r".repeat(70_000))
    }
}

/// README, "Limits": "any string without a limit of its own, is cut at
/// 250 characters" (SPEC §1.3). `aws.xray.sampling_rule_name` was not: the
/// segment carried the rule name as the sampler gave it. A long one made
/// every segment it decided too big: the segment was trimmed
/// (`spans_trimmed`), losing its metadata and its annotations, though its
/// own data was small (as a huge service version did, above).
#[test]
fn a_samplers_rule_name_is_cut_to_250_characters() {
    let c = common::capture_documents(
        |b| b.with_sampler(LongRuleName),
        || {
            tracing::info_span!("request", annotation.tenant = "acme").in_scope(|| {});
        },
    );
    let segment = &c.docs[0];
    assert_eq!(
        segment["aws"]["xray"]["sdk"], "tracing-xray",
        "README: every segment carries `aws.xray`: {segment}"
    );
    let rule = segment["aws"]["xray"]["sampling_rule_name"]
        .as_str()
        .map_or(0, |r| r.chars().count());
    assert!(
        rule <= 250,
        "sampling_rule_name of {rule} characters; segment trimmed: {}",
        c.xray.stats().spans_trimmed
    );
    assert_eq!(segment["annotations"]["tenant"], "acme", "{segment}");
    assert_eq!(c.xray.stats().spans_trimmed, 0);
}

const LONG_TARGET: &str = "a_long_module_path::with_many::nested_modules::and_more::and_more::\
and_more::and_more::and_more::and_more::and_more::and_more::and_more::and_more::and_more::\
and_more::and_more::and_more::and_more::and_more::and_more::and_more::and_more::and_more::\
and_more::and_more::and_more::and_more::end";

/// README, "Limits": "An exception's type, like any string without a limit
/// of its own, is cut at 250 characters" (SPEC §1.3). An ERROR event's
/// target becomes its exception's stack frame `label`, and was sent uncut:
/// a 300-character target (a deep module path, or a `log` record's target
/// forwarded by tracing-log, which is any runtime string).
#[test]
fn an_error_events_target_as_stack_label_is_cut_to_250_characters() {
    assert!(LONG_TARGET.chars().count() > 250);
    let c = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("request").in_scope(|| {
                tracing::error!(target: LONG_TARGET, "boom");
            });
        },
    );
    let exceptions = common::exceptions(&c.docs[0]);
    assert!(!exceptions.is_empty(), "{:#}", c.docs[0]);
    for ex in &exceptions {
        for frame in ex["stack"].as_array().into_iter().flatten() {
            for key in ["label", "path"] {
                let n = frame[key].as_str().map_or(0, |s| s.chars().count());
                assert!(n <= 250, "stack frame {key} of {n} characters: {frame}");
            }
        }
    }
}
