//! The 50 annotations a trace indexes, counted once across the documents
//! it leaves in (streamed parts, a segment sent with its response, a
//! Lambda invocation's parts), trims and key names. Each test was a
//! finding of a hunt of document assembly: its comment says what the user
//! does, what is promised, and what happened before its fix.

mod common;

use std::time::Duration;

use tracing::{Level, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

const WAIT: Duration = Duration::from_secs(10);
const ORCH: &str = common::SDK_ORCHESTRATOR;

// The user runs a long-lived root (a job) that streams its finished
// children (`with_max_held_subsegments(2)`) while an AWS SDK call made in it
// is still in progress (its first attempt finished, the call goes on).
// README "Limits": "A trace sent in parts (a long-lived root streaming, ...)
// keeps one count of 50 annotations across its parts". Instead, each part
// streamed while the SDK call's spans are held back leaves without the
// trace's shared count: `SpanList::split_off_where` (src/span_list.rs:99-
// 104) clears the list it splits (`clear(0)`: `parted`, `root_sent`) and
// restores only `root` and `root_annotations`; `hold_back_sdk_work`
// (src/layer.rs:456) splits the part `TraceBuf::stream` then sends (and the
// segment `TraceBuf::seal` sends, for a request's segment). Every such part
// starts from 0 and the trace indexes 80.
#[test]
fn parts_streamed_beside_an_sdk_call_in_progress_keep_the_traces_50_annotations() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_max_held_subsegments(2)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let job = info_span!("job");
        let op = tracing::span!(
            target: "aws_sdk_dynamodb::operation::get_item",
            parent: &job,
            Level::DEBUG,
            "DynamoDB.GetItem",
            "rpc.service" = "DynamoDB",
            "rpc.method" = "GetItem",
            "rpc.system" = "aws-api",
        );
        // The call's first attempt has ended; the call goes on.
        tracing::span!(target: ORCH, parent: &op, Level::DEBUG, "try_attempt", attempt = 1_u64)
            .in_scope(|| {});
        for _ in 0..4 {
            job.in_scope(|| {
                common::step_with_twenty_annotations();
                info_span!("filler").in_scope(|| {});
            });
            xray.flush(WAIT).unwrap();
        }
        drop(op);
        drop(job);
    });
    xray.flush(WAIT).unwrap();
    let docs = exporter.json_documents();
    let validator = common::schema();
    for d in &docs {
        common::assert_schema_valid(&validator, d);
    }
    let indexed = common::annotations_in_docs(&docs);
    let stats = xray.stats();
    assert!(
        indexed <= 50,
        "the trace indexes {indexed} annotations (at most 50); {stats:?}"
    );
    assert_eq!(stats.annotations_demoted, 80 - 50, "{stats:?}");
}

/// A finished child of the current span named `name` carrying 30
/// annotations.
macro_rules! thirty_annotations {
    ($parent:expr, $name:literal) => {
        info_span!(
            parent: $parent,
            $name,
            annotation.k00 = 0, annotation.k01 = 1, annotation.k02 = 2,
            annotation.k03 = 3, annotation.k04 = 4, annotation.k05 = 5,
            annotation.k06 = 6, annotation.k07 = 7, annotation.k08 = 8,
            annotation.k09 = 9, annotation.k10 = 0, annotation.k11 = 1,
            annotation.k12 = 2, annotation.k13 = 3, annotation.k14 = 4,
            annotation.k15 = 5, annotation.k16 = 6, annotation.k17 = 7,
            annotation.k18 = 8, annotation.k19 = 9, annotation.k20 = 0,
            annotation.k21 = 1, annotation.k22 = 2, annotation.k23 = 3,
            annotation.k24 = 4, annotation.k25 = 5, annotation.k26 = 6,
            annotation.k27 = 7, annotation.k28 = 8, annotation.k29 = 9
        )
    };
}

// The user's Lambda function indexes `requestId`
// (`with_indexed_fields(&["requestId"])`, to filter its subsegments by the
// invocation's request id) and records 50 annotations in two top-level
// spans of one invocation (30, then 20). README "AWS Lambda": no segment is
// sent, Lambda sends the function segment; README "Limits": the trace
// "keeps one count of 50 annotations across its parts". So all 50 are
// indexed. Instead the `Lambda runtime invoke` span (the facade, never
// sent) keeps a place for its own `requestId` (src/layer.rs:936,
// `keep_annotations_for` runs for the facade too; src/worker.rs:408
// `hold_for_root`), so the second span loses one of its 20 annotations
// to metadata, with a place left empty.
#[test]
fn a_lambda_invocations_facade_keeps_no_place_among_the_50() {
    const ROOT: &str = "1-6566f1a1-bbbbbbbbbbbbbbbbbbbbbbbb";
    const FACADE: &str = "2222222222222222";
    let captured = common::capture_documents(
        |b| b.with_lambda(true).with_indexed_fields(&["requestId"]),
        || {
            let header = format!("Root={ROOT};Parent={FACADE};Sampled=1");
            info_span!("Lambda runtime invoke", requestId = "r-1", xrayTraceId = %header).in_scope(
                || {
                    thirty_annotations!(tracing::Span::current(), "load").in_scope(|| {});
                    common::step_with_twenty_annotations();
                },
            );
        },
    );
    let docs = &captured.docs;
    for d in docs {
        assert_eq!(d["parent_id"], FACADE);
    }
    let stats = captured.xray.stats();
    assert_eq!(
        (common::annotations_in_docs(docs), stats.annotations_demoted),
        (50, 0),
        "(indexed, demoted) of the invocation's 50 annotations; {stats:?}"
    );
}

/// A finished child of the current span carrying 19 annotations.
#[cfg(feature = "tower")]
fn step_with_nineteen_annotations() {
    info_span!(
        "late_step",
        annotation.b00 = 0,
        annotation.b01 = 1,
        annotation.b02 = 2,
        annotation.b03 = 3,
        annotation.b04 = 4,
        annotation.b05 = 5,
        annotation.b06 = 6,
        annotation.b07 = 7,
        annotation.b08 = 8,
        annotation.b09 = 9,
        annotation.b10 = 0,
        annotation.b11 = 1,
        annotation.b12 = 2,
        annotation.b13 = 3,
        annotation.b14 = 4,
        annotation.b15 = 5,
        annotation.b16 = 6,
        annotation.b17 = 7,
        annotation.b18 = 8
    )
    .in_scope(|| {});
}

// The user serves a request through `XrayServerLayer`, indexing its path
// (`with_indexed_fields(&["url.path"])`: 1 annotation on the segment); the
// handler answers at once and leaves work running in the request's span,
// which records 49 annotations after the response (30, 19). README "How
// spans map to X-Ray": the segment leaves with its response and "the task's
// spans follow as independent subsegments of it"; README "Limits": the
// trace "keeps one count of 50 annotations across its parts". So all 50 are
// indexed. Instead every part sent after the segment still keeps a place
// for the root's annotation (src/worker.rs:408 `hold_for_root` whatever
// `root_sent` says), which the segment's own part already counted
// (src/worker.rs:484): one annotation is demoted with a place left empty.
#[cfg(feature = "tower")]
#[test]
fn parts_sent_after_the_segment_keep_no_place_for_its_annotations() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let captured = common::capture_documents(
        |b| b.with_indexed_fields(&["url.path"]),
        || {
            let work = common::serve_and_keep_work(&rt, || info_span!("background"));
            work.in_scope(|| {
                thirty_annotations!(tracing::Span::current(), "step").in_scope(|| {});
                step_with_nineteen_annotations();
            });
            drop(work);
        },
    );
    let docs = &captured.docs;
    let segment = docs.iter().find(|d| d.get("type").is_none()).unwrap();
    assert_eq!(segment["annotations"]["url_path"], "/orders", "{segment:#}");
    let stats = captured.xray.stats();
    assert_eq!(
        (common::annotations_in_docs(docs), stats.annotations_demoted),
        (50, 0),
        "(indexed, demoted) of the trace's 50 annotations; {stats:?}"
    );
}

// The user's step `bulk` records 30 annotations of 1,000 characters of
// non-Latin text each (3 bytes a character: 90 KB), too large for one
// document; its sibling `audit`, ending after it, records 30 small ones.
// README "Limits": the span "is trimmed ... then its largest annotations
// (named in `metadata.tracing_xray.annotations_dropped`)"; README "How
// spans map to X-Ray": annotations move to metadata only "past 50 per
// trace" (`Stats::annotations_demoted`: "Annotations moved to metadata
// because the trace already had 50"). So with the annotations `bulk` had to
// drop (9 of its 30), the trace indexes 50: 21 of `bulk`'s, 29 of
// `audit`'s, 1 demoted. Instead the annotations trimmed away keep their
// places in the trace's count (src/assemble.rs:745-750 drops them from the
// entity; `route` counted them, src/fields/mod.rs:341): `audit` is cut to
// 20 and 10 are counted demoted while the trace indexes 41.
#[test]
fn annotations_trimmed_away_give_their_places_back() {
    let text = "注".repeat(1000);
    let captured = common::capture_documents(
        |b| b,
        || {
            let root = info_span!("request");
            info_span!(
                parent: &root,
                "bulk",
                annotation.t00 = %text, annotation.t01 = %text, annotation.t02 = %text,
                annotation.t03 = %text, annotation.t04 = %text, annotation.t05 = %text,
                annotation.t06 = %text, annotation.t07 = %text, annotation.t08 = %text,
                annotation.t09 = %text, annotation.t10 = %text, annotation.t11 = %text,
                annotation.t12 = %text, annotation.t13 = %text, annotation.t14 = %text,
                annotation.t15 = %text, annotation.t16 = %text, annotation.t17 = %text,
                annotation.t18 = %text, annotation.t19 = %text, annotation.t20 = %text,
                annotation.t21 = %text, annotation.t22 = %text, annotation.t23 = %text,
                annotation.t24 = %text, annotation.t25 = %text, annotation.t26 = %text,
                annotation.t27 = %text, annotation.t28 = %text, annotation.t29 = %text
            )
            .in_scope(|| {});
            thirty_annotations!(&root, "audit").in_scope(|| {});
            drop(root);
        },
    );
    let docs = &captured.docs;
    let bulk = common::node(docs, "bulk");
    let kept = bulk["annotations"].as_object().map_or(0, |a| a.len());
    let dropped = bulk["metadata"]["tracing_xray"]["annotations_dropped"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(bulk["metadata"]["tracing_xray"]["trimmed"], true);
    assert_eq!(kept + dropped, 30, "every annotation of bulk kept or named");
    let audit = common::node(docs, "audit")["annotations"]
        .as_object()
        .map_or(0, |a| a.len());
    let stats = captured.xray.stats();
    assert_eq!(
        (kept + audit, stats.annotations_demoted),
        (50, 30 - audit as u64),
        "(indexed, demoted): {kept} of bulk's, {audit} of audit's; {stats:?}"
    );
}

// The user's long-lived job declares `annotation.order-id` and
// `annotation.order_id` (two names that make one key), and streams
// (`with_max_held_subsegments(1)`) two steps of 30 and 20 annotations
// before it ends. README "How spans map to X-Ray": "the second of two
// names made the same key (`a-b`, `a_b`)" goes to metadata, uncounted; the
// job then indexes 1 annotation and its steps 49 of their 50. Instead the
// parts streamed before the job ends keep 2 places for it (`annotation_
// fields`, src/fields/mod.rs:525-545, counts each declared name, not each
// key), and one place stays empty: 49 indexed, 2 demoted.
#[test]
fn two_names_of_one_annotation_key_on_a_long_lived_root_keep_one_place() {
    let captured = common::capture_documents(
        |b| b.with_max_held_subsegments(1),
        || {
            let job = info_span!("job", annotation.order_id = 7, "annotation.order-id" = 8);
            job.in_scope(|| {
                thirty_annotations!(tracing::Span::current(), "load").in_scope(|| {});
                common::step_with_twenty_annotations();
            });
            drop(job);
        },
    );
    let docs = &captured.docs;
    let job = common::node(docs, "job");
    assert_eq!(job["annotations"]["order_id"], 7, "{job:#}");
    let stats = captured.xray.stats();
    assert_eq!(
        (common::annotations_in_docs(docs), stats.annotations_demoted),
        (50, 1),
        "(indexed, demoted) of the trace's 51 annotations; {stats:?}"
    );
}
