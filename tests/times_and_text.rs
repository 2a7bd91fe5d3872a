//! Times and text end to end: start and end times, event times, trace-id
//! epochs and streamed parts across threads; hostile text in every name and
//! field; and fields whose names meet one another (or the crate's own keys)
//! in the same metadata slot, none of which may be lost silently.

mod common;

use std::time::Duration;

use serde_json::Value;
use tracing::info_span;
use tracing_xray::export::InMemoryExporter;

/// [`common::capture_documents`]: the documents as sent and parsed, and the
/// exporter.
fn run(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> (Vec<String>, Vec<Value>, InMemoryExporter) {
    let got = common::capture_documents(configure, f);
    (got.raw, got.docs, got.exporter)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every (sub)segment has end >= start, and every child nests in its parent.
fn check_nesting(node: &Value) {
    let (s, e) = (f(&node["start_time"]), f(&node["end_time"]));
    assert!(e >= s, "end before start in {node}");
    if let Some(children) = node["subsegments"].as_array() {
        for c in children {
            let (cs, ce) = (f(&c["start_time"]), f(&c["end_time"]));
            assert!(
                cs >= s,
                "child {} starts at {cs} before its parent {} ({s})",
                c["name"],
                node["name"]
            );
            assert!(
                ce <= e,
                "child {} ends at {ce} after its parent {} ({e})",
                c["name"],
                node["name"]
            );
            check_nesting(c);
        }
    }
}

/// Children and grandchildren made on other threads, with events: every
/// (sub)segment ends after it starts, nests in its parent, keeps at most
/// six decimals (never an exponent), and the trace id's epoch is its
/// root's start.
#[test]
fn times_nest_across_threads_keep_microseconds_and_match_the_trace_epoch() {
    let (raw, docs, exporter) = run(
        |b| b.with_events(true),
        || {
            for _ in 0..20 {
                let root = info_span!("root");
                let _g = root.enter();
                let r2 = root.clone();
                let mut hs = Vec::new();
                for i in 0..4 {
                    let r = r2.clone();
                    let d = tracing::dispatcher::get_default(|d| d.clone());
                    hs.push(std::thread::spawn(move || {
                        tracing::dispatcher::with_default(&d, || {
                            let c = info_span!(parent: &r, "child", i);
                            let _e = c.enter();
                            tracing::info!("ev");
                            let g = info_span!("grand");
                            g.in_scope(|| tracing::info!("inner"));
                        })
                    }));
                }
                for h in hs {
                    h.join().unwrap();
                }
                tracing::info!("end");
            }
        },
    );
    assert_eq!(docs.len(), 20);
    for t in exporter.traces() {
        check_nesting(&t);
        let start = f(&t["start_time"]);
        let epoch = u64::from_str_radix(&t["trace_id"].as_str().unwrap()[2..10], 16).unwrap();
        assert_eq!(epoch, start.floor() as u64, "{t}");
    }
    for r in raw {
        // at most 6 decimals in every time
        for key in ["\"start_time\":", "\"end_time\":", "\"time\":"] {
            for (i, _) in r.match_indices(key) {
                let num: String = r[i + key.len()..]
                    .chars()
                    .take_while(|c| {
                        c.is_ascii_digit()
                            || *c == '.'
                            || *c == 'e'
                            || *c == 'E'
                            || *c == '-'
                            || *c == '+'
                    })
                    .collect();
                assert!(!num.contains(['e', 'E']), "{key}{num}");
                if let Some((_, frac)) = num.split_once('.') {
                    assert!(frac.len() <= 6, "{key}{num}");
                }
            }
        }
    }
}

const NASTY: &[&str] = &[
    "",
    " ",
    "\u{3000}\u{3000}",
    "\u{0}",
    "\u{7f}\u{2028}\u{2029}\u{feff}",
    "a\u{301}",
    "\u{1F600}",
    "名前",
    "\\\"/\n\r\t",
    "{}()[]*?;!$~^<>",
    "é",
    "-",
    ".",
    "@",
];

fn long_variants() -> Vec<String> {
    let mut v: Vec<String> = NASTY.iter().map(|s| s.to_string()).collect();
    for s in NASTY {
        v.push(s.repeat(300));
        v.push(format!("{}{}", "a".repeat(199), s));
        v.push(format!("{}{}", "a".repeat(249), s.repeat(3)));
        v.push(format!("{}{}", "a".repeat(999), s.repeat(3)));
        v.push(format!("{}{}", "k".repeat(499), s.repeat(3)));
    }
    v
}

/// Empty, blank, control, bidi, combining, emoji and CJK text, alone and at
/// the 200, 250, 500 and 1,000-character limits, in every name and
/// conventional field: every document is JSON, valid against the schema and
/// under the size limit.
#[test]
fn hostile_text_in_every_field_gives_valid_documents() {
    for s in long_variants() {
        let s2 = s.clone();
        let (_raw, docs, _) = run(
            |b| {
                b.with_events(true)
                    .with_service_version(s.clone())
                    .with_indexed_fields(&["idx"])
            },
            move || {
                let s = s2.as_str();
                let root = info_span!(
                    "root",
                    "xray.name" = s,
                    "enduser.id" = s,
                    "http.request.method" = s,
                    "url.full" = s,
                    "user_agent.original" = s,
                    "http.client_ip" = s,
                    "annotation.a" = s,
                    idx = s,
                    "metadata.ns.k" = s,
                    "error.type" = s,
                    "exception.message" = s,
                    other = s,
                );
                root.in_scope(|| {
                    info_span!(
                        "x",
                        "otel.name" = s,
                        "otel.kind" = "client",
                        "peer.service" = s,
                        "server.address" = s,
                        "url.path" = s,
                        "url.scheme" = s
                    )
                    .in_scope(|| {
                        tracing::error!(error = s, "{s}");
                    });
                    info_span!(
                        "db",
                        "db.system" = s,
                        "db.name" = s,
                        "db.user" = s,
                        "server.address" = s,
                        "db.connection_string" = s
                    )
                    .in_scope(|| {});
                    info_span!(
                        "aws",
                        "rpc.system" = "aws-api",
                        "rpc.service" = s,
                        "rpc.method" = s,
                        "aws.region" = s,
                        "aws.request_id" = s
                    )
                    .in_scope(|| {});
                    info_span!("named", "xray.name" = s, "xray.namespace" = "remote").in_scope(
                        || {
                            tracing::info!(time = s, "{s}");
                        },
                    );
                });
            },
        );
        assert!(!docs.is_empty());
    }
}

/// A long-lived root whose finished children are streamed
/// as independent subsegments before the segment leaves. Every streamed part
/// lies inside the interval of the segment sent after it, and the trace put
/// back together nests.
#[test]
fn streamed_parts_lie_inside_the_segment_sent_after_them() {
    let (_raw, docs, exporter) = run(
        |b| b.with_max_held_subsegments(3).with_streaming_threshold(2),
        || {
            let root = info_span!("root");
            root.in_scope(|| {
                for i in 0..10 {
                    info_span!("c", i).in_scope(|| {
                        info_span!("g").in_scope(|| std::thread::sleep(Duration::from_millis(1)));
                    });
                }
            });
        },
    );
    assert!(docs.len() > 1, "nothing was streamed");
    let seg = docs.iter().find(|d| d.get("type").is_none()).unwrap();
    let (s, e) = (f(&seg["start_time"]), f(&seg["end_time"]));
    for d in &docs {
        if d.get("type").is_some() {
            assert!(f(&d["start_time"]) >= s && f(&d["end_time"]) <= e, "{d}");
        }
        check_nesting(d);
    }
    for t in exporter.traces() {
        check_nesting(&t);
    }
}

/// Every string value anywhere in `doc`.
fn strings(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn contains_string(docs: &[Value], wanted: &str) -> bool {
    let mut all = Vec::new();
    for d in docs {
        strings(d, &mut all);
    }
    all.iter().any(|s| s == wanted)
}

/// Past the trace's 50 annotations, `annotation.order-id` and
/// `annotation.order_id` (one annotation key once sanitized) both move to
/// metadata, each under its own name. Both were put under the sanitized
/// key, the second replacing the first.
#[test]
fn two_demoted_annotations_made_the_same_key_both_survive() {
    let (_raw, docs, _) = run(
        |b| b,
        || {
            fifty_annotations_root!().in_scope(|| {
                info_span!(
                    "child",
                    "annotation.order-id" = "first",
                    "annotation.order_id" = "second",
                )
                .in_scope(|| {});
            });
        },
    );
    let metadata = &docs[0]["subsegments"][0]["metadata"]["default"];
    assert_eq!(metadata["order-id"], "first", "{metadata}");
    assert_eq!(metadata["order_id"], "second", "{metadata}");
}

/// Past the trace's 50 annotations, `annotation.note` moves to metadata,
/// where the span's own `metadata.note` already is: the field keeps its
/// slot and the annotation goes under its full name, whichever comes first.
/// One used to replace the other.
#[test]
fn a_demoted_annotation_and_a_metadata_field_of_the_same_key_both_survive() {
    let (_raw, docs, _) = run(
        |b| b,
        || {
            fifty_annotations_root!().in_scope(|| {
                info_span!(
                    "annotation_first",
                    "annotation.note" = "from_annotation",
                    "metadata.note" = "from_metadata",
                )
                .in_scope(|| {});
                info_span!(
                    "metadata_first",
                    "metadata.default.note" = "from_metadata",
                    "annotation.note" = "from_annotation",
                )
                .in_scope(|| {});
            });
        },
    );
    for sub in docs[0]["subsegments"].as_array().unwrap() {
        let metadata = &sub["metadata"]["default"];
        assert_eq!(metadata["note"], "from_metadata", "{sub}");
        assert_eq!(metadata["annotation.note"], "from_annotation", "{sub}");
    }
    assert!(!contains_string(&docs[1..], "from_annotation"));
}

#[tracing::instrument]
fn ingest(events: u32) {
    tracing::info!("ingesting");
}

/// `#[instrument] fn ingest(events: u32)` with events recorded: the span's
/// events take `metadata.tracing.events`, and its argument `events` is kept
/// as `field.events` (as an event's field named `time` is kept as
/// `field.time`). It was replaced by the events. So is a root's own field
/// named `span_name`, whose key the root's span name takes.
#[test]
fn fields_named_as_the_crates_own_keys_are_kept_beside_them() {
    let (_raw, docs, _) = run(
        |b| b.with_events(true),
        || info_span!("root", span_name = "mine").in_scope(|| ingest(7)),
    );
    let tracing_md = &docs[0]["metadata"]["tracing"];
    assert_eq!(tracing_md["span_name"], "root", "{tracing_md}");
    assert_eq!(tracing_md["field.span_name"], "mine", "{tracing_md}");
    let sub = &docs[0]["subsegments"][0];
    assert_eq!(sub["name"], "ingest");
    let tracing_md = &sub["metadata"]["tracing"];
    assert_eq!(tracing_md["events"][0]["message"], "ingesting", "{sub}");
    assert_eq!(tracing_md["field.events"], 7, "{sub}");
}

/// Fields named `log.*` (`log.group`, OpenTelemetry's `log.iostream`) on a
/// span and an event are the user's: only the four tracing-log adds to a
/// forwarded `log` record (`log.target`, `log.module_path`, `log.file`,
/// `log.line`) are not. Every `log.` field used to be dropped.
#[test]
fn span_and_event_fields_prefixed_log_are_kept() {
    let (_raw, docs, _) = run(
        |b| b.with_events(true),
        || {
            info_span!(
                "root",
                "log.group" = "/app/orders",
                "log.iostream" = "stdout"
            )
            .in_scope(|| {
                tracing::info!("log.stream" = "s-1", "hi");
            });
        },
    );
    let tracing_md = &docs[0]["metadata"]["tracing"];
    let event = &tracing_md["events"][0];
    assert_eq!(event["message"], "hi");
    assert_eq!(
        (
            &tracing_md["log.group"],
            &tracing_md["log.iostream"],
            &event["log.stream"]
        ),
        (
            &Value::from("/app/orders"),
            &Value::from("stdout"),
            &Value::from("s-1")
        ),
        "fields named `log.*` were dropped: {tracing_md}"
    );
}

/// A client call with no traced parent (a segment around
/// its subsegment) nests, and an incoming header's trace id (here with a
/// 1970 epoch, which X-Ray will refuse, as every SDK would send it too) is
/// continued unchanged.
#[test]
fn root_client_call_nests_and_incoming_trace_id_is_kept() {
    let (raw, docs, exporter) = run(
        |b| b.with_events(true),
        || {
            let call = info_span!(
                "GET",
                "otel.kind" = "client",
                "url.full" = "http://inventory.internal/items",
                "http.request.method" = "GET"
            );
            call.in_scope(|| {
                std::thread::sleep(Duration::from_millis(2));
                info_span!("inner").in_scope(|| tracing::info!("x"));
            });
            drop(call);
            let header =
                "Root=1-00000001-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
            info_span!("req", "xray.trace_header" = header)
                .in_scope(|| info_span!("c").in_scope(|| {}));
        },
    );
    assert_eq!(raw.len(), 2);
    for t in exporter.traces() {
        check_nesting(&t);
    }
    assert_eq!(docs[1]["trace_id"], "1-00000001-bd862e3fe1be46a994272793");
}

/// In Lambda mode the top-level span is an independent
/// subsegment of the facade, its name sanitized, its children nested.
#[test]
fn lambda_independent_subsegment_nests_with_a_sanitized_name() {
    let (raw, docs, _) = run(
        |b| b.with_lambda(true).with_events(true),
        || {
            let header =
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
            info_span!("Lambda runtime invoke", requestId = "r", xrayTraceId = %header).in_scope(
                || {
                    std::thread::sleep(Duration::from_millis(2));
                    info_span!("handler", "xray.name" = "名前 handler\u{0}").in_scope(|| {
                        info_span!("step").in_scope(|| tracing::info!("x"));
                    });
                },
            );
        },
    );
    assert_eq!(raw.len(), 1);
    check_nesting(&docs[0]);
    assert_eq!(docs[0]["name"], "名前 handler");
    assert_eq!(docs[0]["parent_id"], "53995c3f42cd8ad8");
}

/// The span clock (`quanta`, the CPU's counter) runs 13-32 parts per million
/// off the OS clock on the project's VM, differently in each process: a
/// span of 2.5 s was sent 30-80 µs longer or shorter than it lasted, and a
/// day-long root's end seconds off. The worker now measures that rate
/// against the OS monotonic clock and places spans with it: a span lasts,
/// to the microsecond, what the OS clock measured around it. (Found by the
/// hunt of long-running processes; a host whose counter happens to run true
/// cannot fail this test.)
#[test]
fn a_long_span_lasts_what_the_os_clock_measures() {
    let mut measured = None;
    let (_, docs, _) = run(
        |b| b,
        || {
            let outer = std::time::Instant::now();
            let span = info_span!("long");
            let inner = span.in_scope(|| {
                let inner = std::time::Instant::now();
                std::thread::sleep(Duration::from_millis(2500));
                inner.elapsed()
            });
            drop(span);
            measured = Some((inner, outer.elapsed()));
        },
    );
    let (inner, outer) = measured.unwrap();
    let sent = f(&docs[0]["end_time"]) - f(&docs[0]["start_time"]);
    // A microsecond of rounding at each end, and the float's precision.
    let slack = 3e-6;
    assert!(
        sent + slack >= inner.as_secs_f64() && sent <= outer.as_secs_f64() + slack,
        "sent {sent:.6} s, the OS clock measured between {:.6} and {:.6} s",
        inner.as_secs_f64(),
        outer.as_secs_f64()
    );
}
