//! Real datagrams to a real UDP socket on 127.0.0.1, checked field by field
//! and against the official segment schema.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Daemon, assert_schema_valid, schema, walk};
use tracing::{error, info_span};
use tracing_subscriber::prelude::*;
use tracing_xray::export::UdpExporter;

const WAIT: Duration = Duration::from_secs(10);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn multi_level_trace_arrives_as_one_valid_datagram() {
    let daemon = Daemon::start();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name("orders-api")
        .with_service_version("2.1.0")
        .with_exporter(UdpExporter::to_address(daemon.addr))
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let root = info_span!(
            "handle_request",
            annotation.customer = "c-42",
            annotation.priority = 7_i64,
            annotation.vip = true,
            metadata.cart.items = 3_u64,
            metadata.note = "gift",
            route = "/orders",
            ratio = 0.25_f64,
        );
        root.in_scope(|| {
            info_span!("load_order", xray.name = "DynamoDB").in_scope(|| {
                info_span!("deserialize").in_scope(|| {});
            });
            info_span!("charge_card").in_scope(|| {
                error!(attempt = 1, "card declined");
            });
        });
    });
    xray.flush(WAIT).unwrap();

    let datagrams = daemon.wait_for(1, WAIT);
    assert_eq!(datagrams.len(), 1, "one trace, one datagram");
    let raw = std::str::from_utf8(&datagrams[0]).unwrap();
    assert!(raw.starts_with("{\"format\":\"json\",\"version\":1}\n{"));
    let doc = common::parse_datagram(&datagrams[0]);
    assert_schema_valid(&schema(), &doc);

    // The segment.
    assert_eq!(doc["name"], "orders-api");
    assert!(is_hex(doc["id"].as_str().unwrap(), 16));
    let trace_id = doc["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 35);
    assert!(trace_id.starts_with("1-"));
    assert!(is_hex(&trace_id[2..10], 8) && is_hex(&trace_id[11..], 24));
    let epoch = u64::from_str_radix(&trace_id[2..10], 16).unwrap();
    let start = doc["start_time"].as_f64().unwrap();
    assert!(
        (start - epoch as f64).abs() < 2.0,
        "trace id epoch is the start second"
    );
    assert!(doc.get("parent_id").is_none());
    assert!(doc.get("in_progress").is_none());
    assert!(doc.get("fault").is_none(), "the root itself did not fail");
    assert_eq!(doc["annotations"]["customer"], "c-42");
    assert_eq!(doc["annotations"]["priority"], 7);
    assert_eq!(doc["annotations"]["vip"], true);
    assert_eq!(doc["metadata"]["cart"]["items"], 3);
    assert_eq!(doc["metadata"]["default"]["note"], "gift");
    assert_eq!(doc["metadata"]["tracing"]["route"], "/orders");
    assert_eq!(doc["metadata"]["tracing"]["ratio"], 0.25);
    assert_eq!(doc["metadata"]["tracing"]["span_name"], "handle_request");
    assert_eq!(doc["service"]["version"], "2.1.0");
    assert_eq!(doc["service"]["runtime"], "rust");
    assert_eq!(doc["aws"]["xray"]["sdk"], "tracing-xray");
    assert_eq!(doc["aws"]["xray"]["sdk_version"], env!("CARGO_PKG_VERSION"));

    // The subsegments, in close order, with their own children.
    let subs = doc["subsegments"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["name"], "DynamoDB");
    assert_eq!(subs[0]["subsegments"][0]["name"], "deserialize");
    assert_eq!(subs[1]["name"], "charge_card");
    assert_eq!(subs[1]["fault"], true);
    let ex = &subs[1]["cause"]["exceptions"][0];
    assert_eq!(ex["message"], "card declined");
    assert!(is_hex(ex["id"].as_str().unwrap(), 16));
    assert_eq!(ex["stack"][0]["path"], file!());
    for sub in subs {
        // Embedded subsegments carry no trace_id/parent_id/type.
        assert!(sub.get("trace_id").is_none() && sub.get("type").is_none());
    }

    // Timings nest and ids are unique.
    let mut ids = HashSet::new();
    fn check(node: &serde_json::Value) {
        let (s, e) = (
            node["start_time"].as_f64().unwrap(),
            node["end_time"].as_f64().unwrap(),
        );
        assert!(e >= s);
        for c in node["subsegments"].as_array().into_iter().flatten() {
            assert!(c["start_time"].as_f64().unwrap() >= s);
            assert!(c["end_time"].as_f64().unwrap() <= e);
            check(c);
        }
    }
    check(&doc);
    for (_, n) in walk(&doc) {
        assert!(ids.insert(n["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(ids.len(), 4);
    let stats = xray.stats();
    assert_eq!(stats.documents_exported, 1);
    assert_eq!(stats.traces_dropped, 0);
}

/// Checks a burst of datagrams: all arrived, each under the limit, valid,
/// one segment, one trace, every span id exactly once. Returns the documents.
fn check_split_trace(
    daemon: &Daemon,
    xray: &tracing_xray::XrayHandle,
    spans: usize,
) -> Vec<serde_json::Value> {
    xray.flush(WAIT).unwrap();
    let stats = xray.stats();
    let sent = stats.documents_exported as usize;
    assert_eq!(stats.documents_failed, 0);
    let datagrams = daemon.wait_for(sent, WAIT);
    assert_eq!(datagrams.len(), sent, "every datagram arrived");

    let validator = schema();
    let mut ids = HashSet::new();
    let mut segments = 0;
    let mut trace_ids = HashSet::new();
    let mut docs = Vec::new();
    for d in &datagrams {
        assert!(
            d.len() <= 64_000 + common::DATAGRAM_HEADER.len(),
            "datagram of {} bytes",
            d.len()
        );
        let doc = common::parse_datagram(d);
        trace_ids.insert(doc["trace_id"].as_str().unwrap().to_owned());
        if doc.get("type").is_some() {
            assert_eq!(doc["type"], "subsegment");
            assert_eq!(doc["parent_id"].as_str().unwrap().len(), 16);
        } else {
            segments += 1;
        }
        // An independent subsegment carries the fields the schema requires
        // of a segment, so the same schema checks it.
        assert_schema_valid(&validator, &doc);
        for (_, n) in walk(&doc) {
            assert!(
                ids.insert(n["id"].as_str().unwrap().to_owned()),
                "id sent twice"
            );
        }
        docs.push(doc);
    }
    assert_eq!(trace_ids.len(), 1);
    assert_eq!(segments, 1, "one segment document");
    assert_eq!(ids.len(), spans, "every span accounted for");
    // Every parent_id names a span of the trace.
    for doc in &docs {
        if let Some(p) = doc["parent_id"].as_str() {
            assert!(ids.contains(p), "dangling parent {p}");
        }
    }
    docs
}

#[test]
fn trace_of_5000_subsegments_is_streamed_in_valid_datagrams() {
    let daemon = Daemon::start();
    let payload = "p".repeat(200);
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        info_span!("import").in_scope(|| {
            for i in 0..50 {
                info_span!("chunk", i).in_scope(|| {
                    for j in 0..101 {
                        info_span!("row", j, metadata.payload = payload.as_str()).in_scope(|| {});
                    }
                });
            }
        });
    });
    let docs = check_split_trace(&daemon, &xray, 1 + 50 + 50 * 101);
    // 101 rows per chunk exceed the threshold of 100: rows are streamed too.
    assert!(docs.len() > 50, "{} documents", docs.len());
    for doc in &docs {
        assert!(
            walk(doc).len() <= 1 + 100,
            "at most 100 subsegments per document, under its top"
        );
    }
    assert!(xray.stats().subsegments_streamed > 0);
}

#[test]
fn large_metadata_is_split_by_bytes() {
    let daemon = Daemon::start();
    let blob = "b".repeat(20_000);
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        info_span!("render").in_scope(|| {
            for page in 0..60 {
                info_span!("page", page, metadata.html = blob.as_str()).in_scope(|| {});
            }
        });
    });
    let docs = check_split_trace(&daemon, &xray, 61);
    // 60 × 20 KB cannot travel in fewer than 20 documents of 64 KB.
    assert!(docs.len() >= 20, "{} documents", docs.len());
    assert_eq!(xray.stats().spans_trimmed, 0, "nothing had to be trimmed");
}

#[test]
fn oversized_span_is_trimmed_and_marked_never_dropped() {
    let daemon = Daemon::start();
    let big = "z".repeat(40_000);
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        info_span!("root").in_scope(|| {
            info_span!(
                "huge",
                annotation.kept = "yes",
                a = big.as_str(),
                b = big.as_str(),
                small = 1
            )
            .in_scope(|| {});
        });
    });
    let docs = check_split_trace(&daemon, &xray, 2);
    let huge = docs
        .iter()
        .flat_map(|d| {
            walk(d)
                .into_iter()
                .map(|(_, n)| n.clone())
                .collect::<Vec<_>>()
        })
        .find(|n| n["name"] == "huge")
        .expect("the huge span was sent");
    assert_eq!(huge["metadata"]["tracing_xray"]["trimmed"], true);
    // Metadata goes first, the largest value first: one of the two 40 KB
    // values is dropped and named; the other, and the small one, stay.
    let tracing = &huge["metadata"]["tracing"];
    let dropped = &huge["metadata"]["tracing_xray"]["metadata_dropped"];
    assert_eq!(dropped.as_array().map(Vec::len), Some(1), "{dropped}");
    let kept = if dropped[0] == "tracing.a" { "b" } else { "a" };
    assert_eq!(
        dropped[0],
        if kept == "a" {
            "tracing.b"
        } else {
            "tracing.a"
        }
    );
    assert_eq!(tracing[kept].as_str().map(str::len), Some(40_000));
    assert_eq!(tracing["small"], 1, "the small value beside them stays");
    assert_eq!(huge["annotations"]["kept"], "yes", "annotations were kept");
    assert_eq!(xray.stats().spans_trimmed, 1);
}

#[test]
fn an_oversized_span_loses_only_enough_of_its_largest_values() {
    let daemon = Daemon::start();
    // 20 values of 4,000 bytes (one of them 5,000): 81 KB, 17 KB too many.
    let v = "v".repeat(4_000);
    let w = "w".repeat(5_000);
    let v = v.as_str();
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        info_span!(
            "wide",
            f00 = v,
            f01 = v,
            f02 = v,
            f03 = v,
            f04 = v,
            f05 = v,
            f06 = v,
            f07 = v,
            f08 = v,
            f09 = v,
            f10 = v,
            f11 = v,
            f12 = w.as_str(),
            f13 = v,
            f14 = v,
            f15 = v,
            f16 = v,
            f17 = v,
            f18 = v,
            f19 = v,
            small = 1
        )
        .in_scope(|| {});
    });
    let docs = check_split_trace(&daemon, &xray, 1);
    let wide = &docs[0];
    let tracing = wide["metadata"]["tracing"].as_object().unwrap();
    let dropped: Vec<&str> = wide["metadata"]["tracing_xray"]["metadata_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    // The largest first, then as few of the others as make it fit.
    assert_eq!(dropped[0], "tracing.f12", "{dropped:?}");
    assert!((4..=6).contains(&dropped.len()), "{dropped:?}");
    for name in &dropped {
        assert!(!tracing.contains_key(name.strip_prefix("tracing.").unwrap()));
    }
    assert_eq!(
        tracing.len() + dropped.len(),
        // The 21 fields, and the root's own name (`span_name`).
        22,
        "every value kept or named"
    );
    assert_eq!(tracing["small"], 1);
    assert_eq!(xray.stats().spans_trimmed, 1);
}

/// A span too big even without its metadata loses its largest annotations
/// first, as few as make it fit, named in the mark; the small ones stay.
#[test]
fn an_oversized_span_loses_only_enough_of_its_largest_annotations() {
    let daemon = Daemon::start();
    // 32 annotations of 2,000 bytes (1,000 two-byte characters): 64 KB.
    let e = "é".repeat(1_000);
    let e = e.as_str();
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        info_span!(
            "wide",
            annotation.k00 = e,
            annotation.k01 = e,
            annotation.k02 = e,
            annotation.k03 = e,
            annotation.k04 = e,
            annotation.k05 = e,
            annotation.k06 = e,
            annotation.k07 = e,
            annotation.k08 = e,
            annotation.k09 = e,
            annotation.k10 = e,
            annotation.k11 = e,
            annotation.k12 = e,
            annotation.k13 = e,
            annotation.k14 = e,
            annotation.k15 = e,
            annotation.k16 = e,
            annotation.k17 = e,
            annotation.k18 = e,
            annotation.k19 = e,
            annotation.k20 = e,
            annotation.k21 = e,
            annotation.k22 = e,
            annotation.k23 = e,
            annotation.k24 = e,
            annotation.k25 = e,
            annotation.k26 = e,
            annotation.k27 = e,
            annotation.k28 = e,
            annotation.k29 = e,
            annotation.k30 = e,
            annotation.k31 = e,
            annotation.small = 1,
            annotation.tag = "kept"
        )
        .in_scope(|| {});
    });
    let docs = check_split_trace(&daemon, &xray, 1);
    let wide = &docs[0];
    let annotations = wide["annotations"].as_object().unwrap();
    let dropped: Vec<&str> = wide["metadata"]["tracing_xray"]["annotations_dropped"]
        .as_array()
        .unwrap_or_else(|| panic!("{wide}"))
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!((1..=3).contains(&dropped.len()), "{dropped:?}");
    for name in &dropped {
        assert!(name.starts_with('k') && !annotations.contains_key(*name));
    }
    assert_eq!(
        annotations.len() + dropped.len(),
        34,
        "every annotation kept or named"
    );
    assert_eq!(annotations["small"], 1);
    assert_eq!(annotations["tag"], "kept");
    assert_eq!(wide["metadata"]["tracing_xray"]["trimmed"], true);
}

/// SPEC §2.1: keep datagrams, the daemon header included, within 64,000
/// bytes. A document of up to 64,000 bytes used to leave as a datagram of up
/// to 64,030.
#[test]
fn no_datagram_passes_64000_bytes_with_its_header() {
    let daemon = Daemon::start();
    // Documents of every size from just under the limit to just over it.
    let xray = common::run_sampled(UdpExporter::to_address(daemon.addr), || {
        for n in (63_600..64_100).step_by(25) {
            info_span!("request", metadata.blob = "x".repeat(n).as_str()).in_scope(|| {});
        }
    });
    xray.flush(WAIT).unwrap();
    let datagrams = daemon.wait_for(20, WAIT);
    assert_eq!(datagrams.len(), 20);
    let mut near = 0;
    for d in &datagrams {
        assert!(d.len() <= 64_000, "a datagram of {} bytes", d.len());
        assert_schema_valid(&schema(), &common::parse_datagram(d));
        near += usize::from(d.len() > 63_900);
    }
    assert!(near > 0, "some datagrams come close to the limit");
}

#[test]
fn daemon_down_costs_nothing_and_is_counted() {
    // A port with nobody listening.
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(UdpExporter::to_address(addr))
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..200 {
            info_span!("request").in_scope(|| {});
            // Let the worker and the kernel's ICMP answer interleave.
            std::thread::yield_now();
        }
    });
    xray.flush(WAIT).unwrap();
    let stats = xray.stats();
    assert_eq!(stats.documents_exported + stats.documents_failed, 200);
    assert!(
        stats.documents_failed > 0,
        "refused sends are counted: {stats:?}"
    );
    assert_eq!(stats.traces_dropped, 0);
}

/// One traced request through a layer sending to `exporter`; flushed.
fn one_request(exporter: UdpExporter, name: &'static str) -> tracing_xray::Stats {
    let xray = common::run_sampled(exporter, || {
        info_span!("request", annotation.step = name).in_scope(|| {});
    });
    xray.flush(WAIT).unwrap();
    xray.stats()
}

#[test]
fn ipv6_loopback_daemon_gets_the_datagram() {
    let Ok(daemon) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    let addr = daemon.local_addr().unwrap();
    let stats = one_request(UdpExporter::to_address(addr), "v6");
    assert_eq!(stats.documents_exported, 1, "{stats:?}");
    let mut buf = vec![0; 70_000];
    let n = daemon.recv(&mut buf).unwrap();
    let doc = common::parse_datagram(&buf[..n]);
    assert_eq!(doc["annotations"]["step"], "v6");
}

#[test]
fn a_daemon_that_comes_back_gets_the_next_document() {
    // One exporter, whose socket sees the daemon down, then up: the kernel
    // reports the first datagram's refusal on the second send and does not
    // make that send; the document must still reach the daemon.
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(UdpExporter::to_address(addr))
        .build();
    let xray = layer.handle();
    let _default = tracing_subscriber::registry().with(layer).set_default();
    info_span!("while_down").in_scope(|| {});
    xray.flush(WAIT).unwrap();
    // The daemon (re)starts on its port.
    let daemon = std::net::UdpSocket::bind(addr).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    info_span!("back_up").in_scope(|| {});
    xray.flush(WAIT).unwrap();
    let mut buf = vec![0; 70_000];
    let n = daemon
        .recv(&mut buf)
        .expect("the document sent once the daemon is up");
    let doc = common::parse_datagram(&buf[..n]);
    assert_eq!(doc["metadata"]["tracing"]["span_name"], "back_up");
}
