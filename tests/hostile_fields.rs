//! Hostile field input through the conventions: 10,000 recorded values,
//! keys with every invalid character, 1 MB strings, NaN and infinities, 200
//! annotations. Every document is valid, under the size limit, and what was
//! cut is counted.

mod common;

use std::time::Duration;

use tracing::{field::Empty, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::{InMemoryExporter, MAX_DOCUMENT_BYTES};

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
                "db.system" = "postgresql",
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
    // are written; but an identifier is never cut into another's name: the
    // DynamoDB call's list of table names stays metadata (cut at 64 KiB as
    // any value), and that one span is trimmed (trimming:
    // udp_end_to_end.rs).
    assert_eq!(stats.spans_trimmed, 1, "{stats:?}");
    let parsed = exporter.json_documents();
    assert!(
        common::nodes(&parsed)
            .iter()
            .all(|n| n["aws"].get("table_name").is_none() && n["aws"].get("table_names").is_none())
    );
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

/// An identifier too long for X-Ray's 250 characters (an SNS topic's ARN:
/// topic names run to 256) is not cut into another one's name: it stays
/// out of the `aws` block, whole in metadata (a review found the resource
/// blocks' ARNs cut that way, and this one too).
#[test]
fn a_long_topic_arn_is_sent_whole_as_metadata_not_cut() {
    let arn = format!("arn:aws:sns:us-east-1:123456789012:{}", "t".repeat(256));
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!("request").in_scope(|| {
                info_span!(
                    "SNS.Publish",
                    "rpc.system" = "aws-api",
                    "rpc.service" = "SNS",
                    "rpc.method" = "Publish",
                    "aws.sns.topic.arn" = arn.as_str(),
                )
                .in_scope(|| {});
            });
        },
    );
    let call = common::node(&c.docs, "SNS");
    assert!(call["aws"].get("topic_arn").is_none(), "{call:#}");
    assert_eq!(
        call["metadata"]["tracing"]["aws.sns.topic.arn"], arn,
        "{call:#}"
    );
}

/// A DynamoDB table name of 252 characters (DynamoDB allows 255).
fn long_table_name() -> String {
    format!("orders_{}", "t".repeat(245))
}

/// The same for a table's name (README, "Limits": "an identifier longer
/// than that ... is not cut into another resource's name"), given the other
/// way, `aws.dynamodb.table_names` with one name, alone or beside the same
/// `aws.table_name`: it was cut at 250 characters into `aws.table_name`,
/// naming another table, a prefix of the real one (found by a review).
#[test]
fn a_long_table_name_is_not_cut_into_another_tables_name() {
    let name = long_table_name();
    for both in [false, true] {
        let c = common::capture_documents(
            |b| b,
            || {
                info_span!("request").in_scope(|| {
                    let call = info_span!(
                        "DynamoDB.GetItem",
                        "rpc.system" = "aws-api",
                        "rpc.service" = "DynamoDB",
                        "rpc.method" = "GetItem",
                        "aws.table_name" = tracing::field::Empty,
                        "aws.dynamodb.table_names" = name.as_str(),
                    );
                    if both {
                        call.record("aws.table_name", name.as_str());
                    }
                    call.in_scope(|| {});
                });
            },
        );
        let call = common::node(&c.docs, "DynamoDB");
        let sent = call["aws"]["table_name"].as_str();
        assert!(
            sent.is_none_or(|s| s == name),
            "a 252-character table name was cut into another table's name \
             ({} characters; both names: {both}): {call:#}",
            sent.map_or(0, |s| s.chars().count())
        );
        assert!(
            call["aws"]["table_names"]
                .as_array()
                .is_none_or(|names| names.iter().all(|n| n == name.as_str())),
            "{call:#}"
        );
        assert_eq!(
            call["metadata"]["tracing"]["aws.dynamodb.table_names"],
            name.as_str(),
            "whole in metadata: {call:#}"
        );
    }
}

/// The same for a queue's URL written under both its names
/// (`aws.sqs.queue_url` and `messaging.url`, as a library moving between
/// conventions does), over 250 characters: the new name stayed whole in
/// metadata, but the old one was cut into `aws.queue_url`, naming another
/// queue (found by a review). Both stay whole as metadata.
#[test]
fn a_long_queue_url_is_not_cut_through_its_old_name() {
    let url = format!(
        "https://sqs.us-east-1.vpce-0123456789abcdef0.example.internal/123456789012/{}",
        "q".repeat(200)
    );
    assert!(url.chars().count() > 250);
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!("request").in_scope(|| {
                info_span!(
                    "SQS.SendMessage",
                    "rpc.system" = "aws-api",
                    "rpc.service" = "SQS",
                    "rpc.method" = "SendMessage",
                    "aws.sqs.queue_url" = url.as_str(),
                    "messaging.url" = url.as_str(),
                )
                .in_scope(|| {});
            });
        },
    );
    let call = common::node(&c.docs, "SQS");
    let sent = call["aws"]["queue_url"].as_str();
    assert!(
        sent.is_none_or(|s| s == url),
        "a {}-character queue URL was sent cut ({} characters), naming another \
         queue: {call:#}",
        url.chars().count(),
        sent.map_or(0, |s| s.chars().count())
    );
    assert_eq!(
        call["metadata"]["tracing"]["aws.sqs.queue_url"], url,
        "{call:#}"
    );
    assert_eq!(
        call["metadata"]["tracing"]["messaging.url"], url,
        "{call:#}"
    );
}

/// The 250 characters are X-Ray's limit on what is sent: a queue's URL
/// whose user info holds a long password fits once the password is
/// removed, and is the queue's URL (a first version measured it with the
/// password, and left it out; found by a review).
#[test]
fn a_queue_url_that_fits_once_its_password_is_removed_is_the_queue_url() {
    let url = format!(
        "https://user:{}@sqs.us-east-1.amazonaws.com/123456789012/orders",
        "p".repeat(200)
    );
    let c = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("root").in_scope(|| {
                tracing::info_span!(
                    "send",
                    rpc.system = "aws-api",
                    rpc.service = "SQS",
                    rpc.method = "SendMessage",
                    messaging.url = url.as_str()
                )
                .in_scope(|| {});
            });
        },
    );
    let sqs = common::node(&c.docs, "SQS");
    assert_eq!(
        sqs["aws"]["queue_url"], "https://user@sqs.us-east-1.amazonaws.com/123456789012/orders",
        "{sqs:#}"
    );
}
