//! Documents at their limits: assembly, splitting, streaming, trimming.
//! Every trace made here goes through one checker ([`check_trace`]) that
//! holds the invariants of README "How spans map to X-Ray" / "Limits" and
//! SPEC §1 and §2.1 on every datagram.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::{InMemoryExporter, UdpExporter};
use tracing_xray::sampling::AlwaysSample;

const WAIT: Duration = Duration::from_secs(10);
const MAX_DATAGRAM: usize = 64_000;

// ---------------------------------------------------------------- running

/// Runs `body` under a sampled layer sending to a real UDP socket on
/// 127.0.0.1; returns every datagram (as many as the layer counts exported)
/// and the stats.
fn run_udp(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    body: impl FnOnce(),
) -> (Vec<Vec<u8>>, tracing_xray::Stats) {
    let daemon = common::Daemon::start();
    let builder = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(1 << 16)
        .with_exporter(UdpExporter::to_address(daemon.addr));
    let layer = configure(builder).build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    xray.flush(WAIT).unwrap();
    let stats = xray.stats();
    let sent = stats.documents_exported as usize;
    let datagrams = daemon.wait_for(sent, WAIT);
    assert_eq!(datagrams.len(), sent, "datagrams lost on 127.0.0.1");
    assert_eq!(stats.documents_failed, 0);
    check_stats(&datagrams, &stats);
    (datagrams, stats)
}

/// The same with the public in-memory exporter; documents are given with
/// the daemon header so that one checker reads both.
fn run_mem(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    body: impl FnOnce(),
) -> (Vec<Vec<u8>>, tracing_xray::Stats) {
    let exporter = InMemoryExporter::new();
    let builder = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(1 << 16)
        .with_exporter(exporter.clone());
    let layer = configure(builder).build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    xray.flush(WAIT).unwrap();
    let stats = xray.stats();
    let docs = exporter
        .documents()
        .into_iter()
        .map(|d| format!("{}{}", common::DATAGRAM_HEADER, d.as_str()).into_bytes())
        .collect::<Vec<_>>();
    assert_eq!(docs.len() as u64, stats.documents_exported);
    check_stats(&docs, &stats);
    (docs, stats)
}

/// `stats().subsegments_streamed` counts the independent subsegment
/// documents sent (rustdoc of `Stats`).
fn check_stats(datagrams: &[Vec<u8>], stats: &tracing_xray::Stats) {
    let independent = datagrams
        .iter()
        .filter(|d| common::parse_datagram(d).get("type").is_some())
        .count() as u64;
    assert_eq!(stats.subsegments_streamed, independent, "{stats:?}");
}

// ---------------------------------------------------------------- model

/// The spans a test made: each has a unique `n` field; its parent's `n`.
#[derive(Clone, Default)]
struct Model(Arc<Mutex<BTreeMap<u64, Option<u64>>>>);

impl Model {
    fn add(&self, n: u64, parent: Option<u64>) {
        assert!(self.0.lock().unwrap().insert(n, parent).is_none());
    }
    fn get(&self) -> BTreeMap<u64, Option<u64>> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- checker

/// Parses JSON refusing duplicate object keys (serde_json's `Value` keeps
/// the last silently; X-Ray's parser is not obliged to).
fn no_duplicate_keys(text: &str) -> Result<(), String> {
    use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
    struct Seed;
    struct V;
    impl<'de> DeserializeSeed<'de> for Seed {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(V)
        }
    }
    impl<'de> Visitor<'de> for V {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("json")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Seed)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut keys = HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if !keys.insert(k.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {k:?}")));
                }
                map.next_value_seed(Seed)?;
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Seed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// One (sub)segment as sent.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    parent: Option<String>,
    start: f64,
    end: f64,
    n: Option<u64>,
    /// Its own fields, without its embedded children.
    value: Value,
}

/// Everything sent for one trace.
#[derive(Debug)]
struct Checked {
    nodes: HashMap<String, Node>,
    segment_id: String,
}

impl Checked {
    fn by_n(&self, n: u64) -> &Node {
        self.nodes
            .values()
            .find(|x| x.n == Some(n))
            .unwrap_or_else(|| panic!("span n={n} not sent"))
    }
    fn segment(&self) -> &Node {
        &self.nodes[&self.segment_id]
    }
    /// The tree as `n` → parent's `n`.
    fn tree(&self) -> BTreeMap<u64, Option<u64>> {
        self.nodes
            .values()
            .filter_map(|x| {
                let n = x.n?;
                let parent = x.parent.as_ref().and_then(|p| self.nodes.get(p)?.n);
                Some((n, parent))
            })
            .collect()
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Checks every datagram of ONE trace (SPEC §1, §2.1; README "Limits"):
/// the header line plus one document, within 64,000 bytes, valid JSON
/// without duplicate keys, valid against the official schema; every id
/// once; every independent subsegment's parent sent; one trace id; one
/// segment; times ordered; children within their parents; at most 32
/// levels per document.
fn check_trace(datagrams: &[Vec<u8>]) -> Checked {
    check_trace_under(datagrams, None)
}

/// [`check_trace`]; in Lambda (`facade`: the function segment's id, which
/// Lambda sends), no segment of ours, and the tops name the facade.
fn check_trace_under(datagrams: &[Vec<u8>], facade: Option<&str>) -> Checked {
    let validator = common::schema();
    let mut nodes: HashMap<String, Node> = HashMap::new();
    let mut trace_ids = HashSet::new();
    let mut segments = Vec::new();
    let mut independents = Vec::new();
    for d in datagrams {
        assert!(
            d.len() <= MAX_DATAGRAM,
            "datagram of {} bytes over {MAX_DATAGRAM}",
            d.len()
        );
        let text = std::str::from_utf8(d).expect("datagram is UTF-8");
        let (header, body) = text.split_once('\n').expect("a header line");
        assert_eq!(format!("{header}\n"), common::DATAGRAM_HEADER);
        assert!(!body.contains('\n'), "one document, one line");
        if let Err(e) = no_duplicate_keys(body) {
            panic!("invalid document ({e}): {}", &body[..body.len().min(2000)]);
        }
        // A document any JSON parser reads: serde_json's default limit.
        let doc: Value = serde_json::from_str(body).expect("JSON within serde_json's limits");
        assert!(doc.is_object());
        common::assert_schema_valid(&validator, &doc);
        let trace_id = doc["trace_id"].as_str().expect("trace_id").to_owned();
        trace_ids.insert(trace_id);
        let top_id = doc["id"].as_str().unwrap().to_owned();
        if doc.get("type").is_some() {
            assert_eq!(doc["type"], "subsegment");
            independents.push((
                top_id.clone(),
                doc["parent_id"].as_str().expect("parent_id").to_owned(),
            ));
        } else {
            segments.push(top_id.clone());
        }
        // Walk the document.
        let mut stack: Vec<(&Value, Option<String>, usize)> = vec![(&doc, None, 0)];
        while let Some((v, parent, depth)) = stack.pop() {
            let id = v["id"].as_str().expect("id").to_owned();
            assert_eq!(id.len(), 16);
            let start = f(&v["start_time"]);
            let end = f(&v["end_time"]);
            assert!(v.get("in_progress").is_none() || v["in_progress"] == false);
            assert!(end >= start, "end {end} before start {start} in {id}");
            let name = v["name"].as_str().unwrap().to_owned();
            assert!(
                !name.is_empty() && name.chars().count() <= 200,
                "name {name:?}"
            );
            let n = v["metadata"]["tracing"]["n"].as_u64();
            if let Some(subs) = v["subsegments"].as_array() {
                assert!(!subs.is_empty(), "an empty subsegments array in {id}");
                for s in subs {
                    stack.push((s, Some(id.clone()), depth + 1));
                }
            }
            assert!(depth < 32, "{} levels in one document", depth + 1);
            let mut own = v.clone();
            if let Some(o) = own.as_object_mut() {
                o.remove("subsegments");
            }
            let node = Node {
                name,
                // A document's top: its parent is named by `parent_id` when it
                // is an independent subsegment (a segment's is upstream).
                parent: if depth == 0 {
                    v["parent_id"]
                        .as_str()
                        .map(str::to_owned)
                        .filter(|_| v.get("type").is_some())
                } else {
                    parent
                },
                start,
                end,
                n,
                value: own,
            };
            assert!(
                nodes.insert(id.clone(), node).is_none(),
                "id {id} sent twice"
            );
        }
    }
    assert_eq!(trace_ids.len(), 1, "one trace id: {trace_ids:?}");
    assert_eq!(
        segments.len(),
        usize::from(facade.is_none()),
        "segment documents"
    );
    for (id, parent) in &independents {
        assert!(
            nodes.contains_key(parent) || Some(parent.as_str()) == facade,
            "independent subsegment {id} names parent {parent}, never sent"
        );
    }
    // Children within their parents (1 µs of rounding).
    for (id, node) in &nodes {
        if let Some((p, parent)) = node.parent.as_ref().and_then(|p| Some((p, nodes.get(p)?))) {
            assert!(
                node.start + 1e-6 >= parent.start && node.end <= parent.end + 1e-6,
                "{id} ({} {}..{}) outside its parent {p} ({} {}..{})",
                node.name,
                node.start,
                node.end,
                parent.name,
                parent.start,
                parent.end
            );
        }
    }
    // Every exception's `cause` names an exception sent in the trace.
    let mut exception_ids = HashSet::new();
    for node in nodes.values() {
        for e in node.value["cause"]["exceptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                exception_ids.insert(e["id"].as_str().unwrap().to_owned()),
                "exception id twice"
            );
        }
    }
    for node in nodes.values() {
        for e in node.value["cause"]["exceptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(c) = e["cause"].as_str() {
                assert!(
                    exception_ids.contains(c),
                    "exception cause {c} names no exception sent"
                );
            }
        }
        if let Some(c) = node.value["cause"].as_str() {
            assert!(
                exception_ids.contains(c),
                "cause {c} names no exception sent"
            );
        }
    }
    Checked {
        segment_id: segments.first().cloned().unwrap_or_default(),
        nodes,
    }
}

/// Splits datagrams of several traces by trace id.
fn by_trace(datagrams: &[Vec<u8>]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for d in datagrams {
        let doc = common::parse_datagram(d);
        out.entry(doc["trace_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(d.clone());
    }
    out
}

// ---------------------------------------------------------------- scenarios

/// Opens a chain of `levels` spans below `parent`, numbered from `first`.
fn chain(model: &Model, first: u64, levels: u64, parent: Option<u64>) {
    if levels == 0 {
        return;
    }
    model.add(first, parent);
    info_span!("level", n = first).in_scope(|| chain(model, first + 1, levels - 1, Some(first)));
}

/// A long-lived root whose children (each with grandchildren) stream out
/// while it is open, under every held limit.
fn long_lived(max_held: usize, threshold: usize) {
    let model = Model::default();
    let m = model.clone();
    let (datagrams, stats) = run_mem(
        |b| {
            b.with_max_held_subsegments(max_held)
                .with_streaming_threshold(threshold)
        },
        move || {
            let root = info_span!("job", n = 0u64);
            m.add(0, None);
            let mut k = 1u64;
            for i in 0..30u64 {
                let c = k;
                k += 1;
                m.add(c, Some(0));
                let child = info_span!(parent: &root, "step", n = c, i);
                for _ in 0..(i % 4) {
                    let g = k;
                    k += 1;
                    m.add(g, Some(c));
                    let gs = info_span!(parent: &child, "sub", n = g);
                    let gg = k;
                    k += 1;
                    m.add(gg, Some(g));
                    info_span!(parent: &gs, "leaf", n = gg).in_scope(|| {});
                }
            }
            drop(root);
        },
    );
    let checked = check_trace(&datagrams);
    assert_eq!(
        checked.tree(),
        model.get(),
        "max_held {max_held} threshold {threshold}"
    );
    for d in &datagrams {
        let doc = common::parse_datagram(d);
        let subs = common::walk(&doc).len() - 1;
        assert!(
            subs <= threshold.max(1),
            "{subs} subsegments in a document, threshold {threshold}"
        );
    }
    assert_eq!(stats.traces_dropped, 0);
}

/// A long-lived root whose children (with grandchildren) stream out while
/// it is open, under held limits and streaming thresholds of 0, 1, small
/// and `usize::MAX`: every document passes the whole checker, no document
/// holds more subsegments than the threshold, and the tree sent is the tree
/// made. (Passes; the model test covers thresholds 1..6 through
/// `InMemoryExporter::traces`, not 0 / `usize::MAX` nor raw documents.)
#[test]
fn a_long_lived_trace_split_every_way_arrives_whole_and_valid() {
    for max_held in [0, 1, 2, 3, 7, 1000, usize::MAX] {
        for threshold in [0, 1, 2, 5, 100, usize::MAX] {
            long_lived(max_held, threshold);
        }
    }
}

/// README "How spans map to X-Ray": `span.follows_from(&sibling)` puts
/// "the sibling's id in `precursor_ids` (a span of the same parent in the
/// same trace; at most 32)". Checked through split and streamed documents:
/// every precursor names a sibling that was sent. (Nothing else in the
/// suite calls `follows_from`; this passes.)
#[test]
fn follows_from_names_sent_siblings_only_through_split_documents() {
    for (max_held, threshold) in [(1000, 100), (1, 1), (3, 2)] {
        let (datagrams, _stats) = run_mem(
            |b| {
                b.with_max_held_subsegments(max_held)
                    .with_streaming_threshold(threshold)
            },
            || {
                let other = info_span!(parent: None, "other_trace", n = 900u64);
                info_span!("root", n = 0u64).in_scope(|| {
                    let earlier: Vec<_> = (1..=40u64).map(|i| info_span!("step", n = i)).collect();
                    let cousin = earlier[0].in_scope(|| info_span!("inner", n = 100u64));
                    let last = info_span!("last", n = 50u64);
                    for e in &earlier {
                        last.follows_from(e);
                    }
                    last.follows_from(&last);
                    last.follows_from(&other);
                    last.follows_from(&cousin);
                    drop(cousin);
                    drop(earlier);
                    last.in_scope(|| {});
                });
                drop(other);
            },
        );
        let traces = by_trace(&datagrams);
        assert_eq!(traces.len(), 2);
        for (_, d) in traces {
            let checked = check_trace(&d);
            if checked.segment().n != Some(0) {
                continue;
            }
            let last = checked.by_n(50);
            let precursors: Vec<&str> = last.value["precursor_ids"]
                .as_array()
                .expect("precursor_ids")
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            assert_eq!(precursors.len(), 32);
            for p in precursors {
                let sibling = &checked.nodes[p];
                assert_eq!(sibling.parent, last.parent, "a sibling");
                assert!(sibling.n.unwrap() <= 32);
            }
        }
    }
}

const ORCH: &str = common::SDK_ORCHESTRATOR;

/// README "How spans map to X-Ray": an AWS SDK span is one `aws`
/// subsegment, "the SDK's internal spans folded in", with `aws.retries`.
/// README "Limits": a long-lived root holds 1,000 finished subsegments
/// before streaming them. A batch job making 150 DynamoDB calls under one
/// root (default settings) crosses 1,000 finished spans in the middle of a
/// call: the SDK's internal spans finished so far must not leave on their
/// own as subsegments.
#[test]
fn aws_sdk_calls_in_a_long_lived_root_keep_their_internal_spans_folded() {
    let model = Model::default();
    let m = model.clone();
    let (datagrams, _stats) = run_udp(
        |b| b,
        move || {
            m.add(0, None);
            info_span!("batch", n = 0u64).in_scope(|| {
                for i in 1..=150u64 {
                    m.add(i, Some(0));
                    common::sdk_get_item(Some(i));
                }
            });
        },
    );
    let checked = check_trace(&datagrams);
    let stray: Vec<&str> = checked
        .nodes
        .values()
        .filter(|n| n.n.is_none())
        .map(|n| n.name.as_str())
        .collect();
    assert!(
        stray.is_empty(),
        "SDK internal spans sent as subsegments: {} of them, e.g. {:?}",
        stray.len(),
        &stray[..stray.len().min(6)]
    );
    for i in 1..=150 {
        let call = checked.by_n(i);
        assert_eq!(call.name, "DynamoDB");
        assert_eq!(call.value["aws"]["retries"], 1, "call {i}: {}", call.value);
    }
    assert_eq!(checked.tree(), model.get());
}

/// An error with a chain of sources, each message `len` characters.
#[derive(Debug)]
struct Chained {
    msg: String,
    next: Option<Box<Chained>>,
}

impl Chained {
    fn new(tag: &str, depth: usize, len: usize) -> Chained {
        let mut e = None;
        for d in (0..depth).rev() {
            let msg = format!("{tag}-{d}-{}", "m".repeat(len));
            e = Some(Box::new(Chained { msg, next: e }));
        }
        *e.unwrap()
    }
}

impl std::fmt::Display for Chained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Chained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|e| e as _)
    }
}

/// README "Limits": a span too large for a document loses "its largest
/// metadata values first ..., only when that is not enough go the rest of
/// its metadata, then its exceptions' stacks, then its largest annotations
/// (named in `metadata.tracing_xray.annotations_dropped`), then its
/// `http`/`sql` blocks". Exceptions themselves are not on that list, and
/// README "How spans map to X-Ray" counts exceptions that are not sent in
/// `stats().exceptions_dropped`. A span with 8 errors (each with 8 sources,
/// 50 KB together) and 20 annotations of 1,000 characters (20 KB): the
/// largest annotations should go, the exceptions stay.
#[test]
fn an_oversized_span_loses_annotations_before_its_exceptions() {
    let errors: Vec<Chained> = (0..8)
        .map(|i| Chained::new(&format!("e{i}"), 9, 600))
        .collect();
    let v = "v".repeat(1000);
    let (datagrams, stats) = run_udp(
        |b| b,
        || {
            info_span!("root").in_scope(|| {
                let e = |i: usize| &errors[i] as &(dyn std::error::Error + 'static);
                info_span!(
                    "child",
                    e0 = e(0),
                    e1 = e(1),
                    e2 = e(2),
                    e3 = e(3),
                    e4 = e(4),
                    e5 = e(5),
                    e6 = e(6),
                    e7 = e(7),
                    annotation.a00 = v.as_str(),
                    annotation.a01 = v.as_str(),
                    annotation.a02 = v.as_str(),
                    annotation.a03 = v.as_str(),
                    annotation.a04 = v.as_str(),
                    annotation.a05 = v.as_str(),
                    annotation.a06 = v.as_str(),
                    annotation.a07 = v.as_str(),
                    annotation.a08 = v.as_str(),
                    annotation.a09 = v.as_str(),
                    annotation.a10 = v.as_str(),
                    annotation.a11 = v.as_str(),
                    annotation.a12 = v.as_str(),
                    annotation.a13 = v.as_str(),
                    annotation.a14 = v.as_str(),
                    annotation.a15 = v.as_str(),
                    annotation.a16 = v.as_str(),
                    annotation.a17 = v.as_str(),
                    annotation.a18 = v.as_str(),
                    annotation.a19 = v.as_str(),
                )
                .in_scope(|| {});
            });
        },
    );
    let checked = check_trace(&datagrams);
    let child = checked.nodes.values().find(|n| n.name == "child").unwrap();
    let exceptions = child.value["cause"]["exceptions"]
        .as_array()
        .map_or(0, Vec::len);
    let annotations = child.value["annotations"]
        .as_object()
        .map_or(0, |a| a.len());
    let marker = &child.value["metadata"]["tracing_xray"];
    assert_eq!(marker["trimmed"], true);
    assert_eq!(
        exceptions as u64 + stats.exceptions_dropped,
        72,
        "exceptions gone without being counted: {exceptions} sent, {} counted as dropped",
        stats.exceptions_dropped
    );
    assert_eq!(
        exceptions, 72,
        "the exceptions stay; annotations went first ({annotations} kept)"
    );
    assert!(marker["annotations_dropped"].is_array(), "{marker}");
}

/// A client call with no traced parent (README: "a segment of the service
/// around a subsegment for the call") with large metadata, 250 children
/// and an 80-level chain, split and streamed every way: every document
/// valid, the call under the segment, the tree whole. (Passes.)
#[test]
fn a_client_call_root_split_every_way_arrives_whole_and_valid() {
    for (max_held, threshold) in [(1000, 100), (2, 1), (1, 3)] {
        let model = Model::default();
        let m = model.clone();
        let (datagrams, _stats) = run_mem(
            |b| {
                b.with_max_held_subsegments(max_held)
                    .with_streaming_threshold(threshold)
            },
            move || {
                m.add(0, None);
                let big = "b".repeat(30_000);
                info_span!(
                    "call",
                    n = 0u64,
                    otel.kind = "client",
                    peer.service = "other",
                    metadata.x = big.as_str(),
                    metadata.y = big.as_str(),
                    metadata.z = big.as_str()
                )
                .in_scope(|| {
                    for i in 1..=250u64 {
                        m.add(i, Some(0));
                        info_span!("part", n = i).in_scope(|| {});
                    }
                    m.add(1000, Some(0));
                    info_span!("deep", n = 1000u64).in_scope(|| chain(&m, 1001, 80, Some(1000)));
                });
            },
        );
        let checked = check_trace(&datagrams);
        let expected = model.get();
        // The call is a subsegment of a segment of the service around it.
        let seg_n = checked.segment().n;
        assert_eq!(seg_n, None);
        assert_eq!(checked.tree(), expected);
        assert_eq!(
            checked.by_n(0).parent.as_deref(),
            Some(checked.segment_id.as_str())
        );
    }
}

/// README "How spans map to X-Ray", other events with `with_events(true)`:
/// "a field of the same name as one of these is kept as `field.time`,
/// `field.level`, `field.target`". An event that also has a field named
/// `field.time` then gets two `field.time` keys in one JSON object: RFC 8259
/// says names SHOULD be unique, and parsers disagree on which one wins.
#[test]
fn an_events_renamed_field_never_duplicates_a_key() {
    let (datagrams, _stats) = run_mem(
        |b| b.with_events(true),
        || {
            info_span!("root").in_scope(|| {
                tracing::info!(time = 1, "field.time" = 2, "hello");
            });
        },
    );
    check_trace(&datagrams);
}

/// README "How spans map to X-Ray": past 50 annotations per trace they move
/// to metadata, "the segment's own are kept first, then its subsegments' in
/// the order they ended". A long-lived root (a batch job) that records its
/// own annotation once it knows it (`span.record`, as a handler does after
/// authenticating), after 1,000+ finished children with an annotation each
/// have streamed out.
#[test]
fn a_long_lived_roots_annotation_recorded_late_is_kept_first() {
    let (datagrams, stats) = run_mem(
        |b| b,
        || {
            let job = info_span!("job", annotation.outcome = tracing::field::Empty);
            job.in_scope(|| {
                for i in 0..1_100u64 {
                    info_span!("item", annotation.item = i).in_scope(|| {});
                }
            });
            job.record("annotation.outcome", "done");
        },
    );
    let checked = check_trace(&datagrams);
    let seg = checked.segment();
    let total: usize = checked
        .nodes
        .values()
        .map(|n| n.value["annotations"].as_object().map_or(0, |a| a.len()))
        .sum();
    assert!(total <= 50, "{total} annotations indexed");
    assert_eq!(
        seg.value["annotations"]["outcome"], "done",
        "the segment's own annotation: {}",
        seg.value
    );
    assert_eq!(stats.annotations_demoted, 1_100 + 1 - 50);
}

#[derive(Debug)]
struct Boom(String);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Boom {}

#[tracing::instrument(err, fields(n = depth))]
fn failing(depth: u64, msg: &str, pad: &str) -> Result<(), Boom> {
    if depth == 0 {
        return Err(Boom(msg.to_owned()));
    }
    let _s = info_span!("pad", metadata.pad = pad).entered();
    failing(depth - 1, msg, pad)
}

/// Nested `#[instrument(err)]` calls (each level names the one below as its
/// exception's `cause`, README) 40 deep with 40 KB of metadata per level,
/// split by depth, size, count and held limits: every exception `cause` id
/// names an exception that was sent. (Passes.)
#[test]
fn exception_causes_name_sent_exceptions_across_split_documents() {
    for (max_held, threshold) in [(1000, 100), (1, 1), (3, 2)] {
        let pad = "p".repeat(40_000);
        let (datagrams, stats) = run_mem(
            |b| {
                b.with_max_held_subsegments(max_held)
                    .with_streaming_threshold(threshold)
            },
            || {
                info_span!("root").in_scope(|| {
                    let _ = failing(40, &"x".repeat(900), &pad);
                    let _ = failing(5, "small", "");
                });
            },
        );
        check_trace(&datagrams);
        assert_eq!(stats.traces_dropped, 0);
    }
}

/// Values whose JSON escapes are up to six times their length (control
/// characters, quotes) in metadata, annotations, exception messages and
/// source chains: every document stays within 64,000 bytes with its
/// header. (Passes.)
#[test]
fn escaped_characters_count_toward_the_size_limit() {
    let ctl = "\u{1}".repeat(12_000);
    let q = "\"".repeat(40_000);
    let errs: Vec<Chained> = (0..8)
        .map(|i| Chained::new(&format!("\u{2}{i}"), 9, 1000))
        .collect();
    let errs_ctl: Vec<Boom> = (0..8).map(|_| Boom("\u{3}".repeat(2000))).collect();
    let (datagrams, stats) = run_mem(
        |b| b.with_all_fields_indexed(true),
        || {
            info_span!("root").in_scope(|| {
                info_span!("a", metadata.ctl = ctl.as_str(), small = 1).in_scope(|| {});
                info_span!("b", q = q.as_str(), small = 1).in_scope(|| {});
                let e = |i: usize| &errs[i] as &(dyn std::error::Error + 'static);
                let c = |i: usize| &errs_ctl[i] as &(dyn std::error::Error + 'static);
                info_span!(
                    "c",
                    e0 = e(0),
                    e1 = e(1),
                    e2 = e(2),
                    e3 = e(3),
                    e4 = e(4),
                    e5 = e(5),
                    e6 = e(6),
                    e7 = e(7)
                )
                .in_scope(|| {});
                info_span!(
                    "d",
                    e0 = c(0),
                    e1 = c(1),
                    e2 = c(2),
                    e3 = c(3),
                    e4 = c(4),
                    e5 = c(5),
                    e6 = c(6),
                    e7 = c(7),
                    s = ctl.as_str()
                )
                .in_scope(|| {});
            });
        },
    );
    check_trace(&datagrams);
    assert!(stats.spans_trimmed >= 1);
}

/// An `error.type` too long for a document (here 70,000 characters, cut
/// to 64 KiB as it is recorded). The exception's message is cut to 1,000
/// characters, its type is not cut at all, so the span is trimmed: README
/// "Limits" drops, in order, its metadata, its stacks, its annotations, its
/// http/sql blocks, and then (not in README) its whole `cause`. The span
/// loses its small annotation and metadata and its exception (the error it
/// reports), none of them counted in `exceptions_dropped`, when cutting the
/// one oversized string would do (SPEC §1.3: strings ≤ 250 characters
/// unless stated).
#[test]
fn an_oversized_error_type_is_cut_and_the_span_keeps_its_exception() {
    let huge = "T".repeat(70_000);
    let (datagrams, stats) = run_mem(
        |b| b,
        || {
            info_span!("root").in_scope(|| {
                info_span!(
                    "call",
                    error.type = huge.as_str(),
                    exception.message = "boom",
                    annotation.k = "v",
                    metadata.m = "small",
                )
                .in_scope(|| {});
            });
        },
    );
    let checked = check_trace(&datagrams);
    let call = checked.nodes.values().find(|n| n.name == "call").unwrap();
    let v = &call.value;
    assert_eq!(v["fault"], true);
    assert_eq!(
        v["cause"]["exceptions"][0]["message"], "boom",
        "the exception is lost: {v}"
    );
    assert_eq!(v["annotations"]["k"], "v", "{v}");
    assert_eq!(v["metadata"]["default"]["m"], "small", "{v}");
    assert_eq!(stats.exceptions_dropped, 0);
}

/// README "AWS Lambda": "Its top-level spans are sent as independent
/// subsegments (`parent_id` = the facade, `trace_id` = Root) as soon as
/// each ends, the spans inside them embedded". A handler with 1,500
/// children, a 70-level chain and 90 KB of metadata: every document valid,
/// every top under the facade, one trace id, the tree whole. (Passes; the
/// AWS SDK finding above shows in Lambda too.)
#[test]
fn lambda_invocation_at_its_limits() {
    const ROOT: &str = "1-6566f1a1-bbbbbbbbbbbbbbbbbbbbbbbb";
    const FACADE: &str = "2222222222222222";
    let model = Model::default();
    let m = model.clone();
    let (datagrams, _stats) = run_udp(
        |b| b.with_lambda(true),
        move || {
            let header = format!("Root={ROOT};Parent={FACADE};Sampled=1");
            info_span!("Lambda runtime invoke", requestId = "r", xrayTraceId = %header).in_scope(
                || {
                    m.add(0, None);
                    let big = "b".repeat(30_000);
                    info_span!(
                        "handler",
                        n = 0u64,
                        metadata.a = big.as_str(),
                        metadata.b = big.as_str(),
                        metadata.c = big.as_str()
                    )
                    .in_scope(|| {
                        for i in 1..=1500u64 {
                            m.add(i, Some(0));
                            info_span!("child", n = i).in_scope(|| {});
                        }
                        m.add(3000, Some(0));
                        info_span!("deep", n = 3000u64)
                            .in_scope(|| chain(&m, 3001, 70, Some(3000)));
                    });
                    m.add(5000, None);
                    info_span!("second_top", n = 5000u64).in_scope(|| {});
                },
            );
        },
    );
    let checked = check_trace_under(&datagrams, Some(FACADE));
    assert_eq!(checked.tree(), model.get());
    for d in &datagrams {
        assert_eq!(common::parse_datagram(d)["trace_id"], ROOT);
    }
}

// ------------------------------------------------ the order of a span's children

/// The names of `node`'s children, in order.
fn child_names(node: &Value) -> Vec<String> {
    node["subsegments"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One root with five children, `item0` to `item4`, made and closed in
/// turn (a millisecond each: distinct start times), each a little larger
/// than the one before (a `pad` field), so that which children a split
/// keeps in the segment's document (the smallest) does not depend on how
/// long their timestamps print. Returns `traces()`'s one tree and the
/// documents.
fn five_children(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
) -> (Value, Vec<Value>) {
    let exporter = InMemoryExporter::new();
    let layer = configure(
        tracing_xray::builder()
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(AlwaysSample)
            .with_exporter(exporter.clone()),
    )
    .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info_span!("batch").in_scope(|| {
            for i in 0..5 {
                let name = format!("item{i}");
                let pad = "x".repeat(40 * i);
                info_span!("item", xray.name = name.as_str(), pad = pad.as_str())
                    .in_scope(|| std::thread::sleep(Duration::from_millis(1)));
            }
        });
    });
    xray.flush(WAIT).unwrap();
    let mut traces = exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:?}");
    (traces.remove(0), exporter.json_documents())
}

const IN_ORDER: [&str; 5] = ["item0", "item1", "item2", "item3", "item4"];

/// `InMemoryExporter::traces()` gives a span's children in the order they
/// started, whether the trace was sent whole, split by the streaming
/// threshold, or streamed by a long-lived root: a test asserting on
/// `subsegments[0]` must not see another child once its trace crosses a
/// threshold. (Split, they came back `item1, item0, item4, item3, item2`;
/// streamed, `item3, item4, item0, item1, item2`.)
#[test]
fn traces_give_children_in_order_however_the_trace_was_split() {
    let (whole, docs) = five_children(|b| b);
    assert_eq!(docs.len(), 1);
    assert_eq!(child_names(&whole), IN_ORDER);
    let (split, docs) = five_children(|b| b.with_streaming_threshold(2));
    assert!(docs.len() > 1, "the trace was not split");
    assert_eq!(child_names(&split), IN_ORDER);
    let (streamed, docs) = five_children(|b| b.with_max_held_subsegments(2));
    assert!(docs.len() > 1, "nothing was streamed");
    assert_eq!(child_names(&streamed), IN_ORDER);
}

/// The segment document of a split trace keeps the children it holds in
/// their order, as a document not split does: the split picks the largest
/// to send on their own, and used to leave the rest largest first.
#[test]
fn the_kept_children_of_a_split_segment_are_in_order() {
    let (_, docs) = five_children(|b| b.with_streaming_threshold(2));
    let segment = docs
        .iter()
        .find(|d| d.get("type").is_none())
        .expect("the segment document");
    let kept = child_names(segment);
    assert!(kept.len() >= 2, "{kept:?}");
    let mut sorted = kept.clone();
    sorted.sort();
    assert_eq!(kept, sorted, "the segment's own children, largest first");
}

/// What a long-lived root holds back for an AWS SDK span still open is
/// bounded (half its held bounds): an SDK span open for long with many
/// finished children (a runtime span without an operation to fold into,
/// `aws_smithy_runtime=debug` alone) still lets them stream out while it
/// is open, instead of holding them all until it ends.
#[test]
fn spans_held_for_an_open_sdk_span_are_bounded() {
    use tracing::Level;
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_max_held_subsegments(10)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let mut streamed_while_open = 0;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info_span!("job").in_scope(|| {
            tracing::span!(target: ORCH, Level::DEBUG, "try_op").in_scope(|| {
                for i in 0..100_u64 {
                    tracing::span!(target: ORCH, Level::DEBUG, "try_attempt", attempt = i)
                        .in_scope(|| {});
                }
                xray.flush(WAIT).unwrap();
                streamed_while_open = exporter.len();
            });
        });
    });
    xray.flush(WAIT).unwrap();
    assert!(
        streamed_while_open > 0,
        "100 finished spans held until their SDK span ends"
    );
    let trace = &exporter.traces()[0];
    let try_op = &trace["subsegments"][0];
    assert_eq!(try_op["name"], "try_op");
    assert_eq!(try_op["subsegments"].as_array().map_or(0, Vec::len), 100);
}

/// Past the bound on what a long-lived root holds back for AWS SDK calls in
/// progress (half its held bounds), the calls that fit are still held back
/// and fold, whole subtrees in the order they ended; only the rest leave on
/// their own. (It was all or nothing: one span too many and every call in
/// progress lost its internal spans.) Four calls in progress, each with two
/// finished attempts of three spans: 24 spans, 20 held at most.
#[test]
fn past_the_hold_back_bound_the_calls_that_fit_still_fold() {
    use tracing::Level;
    let (datagrams, _) = run_mem(
        |b| b.with_max_held_subsegments(40),
        || {
            let root = info_span!("batch");
            let ops: Vec<tracing::Span> = (0..4_u64)
                .map(|n| {
                    tracing::span!(
                        target: "aws_sdk_dynamodb::operation::get_item",
                        parent: &root,
                        Level::DEBUG,
                        "DynamoDB.GetItem",
                        "rpc.service" = "DynamoDB",
                        "rpc.method" = "GetItem",
                        "rpc.system" = "aws-api",
                        n = n,
                    )
                })
                .collect();
            for op in &ops {
                for attempt in 1..=2_u64 {
                    let a = tracing::span!(target: ORCH, parent: op, Level::DEBUG, "try_attempt", attempt);
                    tracing::span!(target: ORCH, parent: &a, Level::DEBUG, "serialization")
                        .in_scope(|| {});
                    tracing::span!(target: ORCH, parent: &a, Level::DEBUG, "deserialization")
                        .in_scope(|| {});
                }
            }
            // Enough other spans for the root to stream what it holds.
            for _ in 0..41 {
                info_span!(parent: &root, "item").in_scope(|| {});
            }
            drop(ops);
            drop(root);
        },
    );
    let docs: Vec<Value> = datagrams
        .iter()
        .map(|d| common::parse_datagram(d))
        .collect();
    let folded = docs
        .iter()
        .flat_map(common::walk)
        .filter(|(_, s)| s["name"] == "DynamoDB" && s["aws"]["retries"] == 1)
        .count();
    assert!(folded >= 3, "{folded} of 4 calls folded their two attempts");
}

/// Raised by a hunt of document assembly: a span recording a list of
/// tables too long for a document (`aws.dynamodb.table_names` written by
/// the application: an SDK call names at most 100) lost, at the last step
/// of its trim, its whole `aws` block (operation included) and its only
/// exception, though "last its exceptions but the first" go. The list goes
/// with the `http`/`sql` blocks; the operation and the exception stay.
#[test]
fn a_table_list_too_long_goes_before_the_operation_and_the_exception() {
    // 258 names of 250 characters: 65 KB, within what a field holds; the
    // document is over 64,000 bytes.
    let names: Vec<String> = (0..258)
        .map(|i| format!("{i:03}{}", "t".repeat(247)))
        .collect();
    let list = serde_json::to_string(&names).unwrap();
    let captured = common::capture_documents(
        |b| b,
        || {
            info_span!("request").in_scope(|| {
                let call = info_span!(
                    "DynamoDB.BatchGetItem",
                    rpc.system = "aws-api",
                    rpc.service = "DynamoDB",
                    rpc.method = "BatchGetItem",
                    aws.dynamodb.table_names = %list,
                );
                call.in_scope(|| {
                    let err = std::io::Error::other("throttled");
                    tracing::error!(error = &err as &dyn std::error::Error, "call failed");
                });
            });
        },
    );
    assert!(captured.raw.iter().all(|d| d.len() <= 64_000));
    let call = common::node(&captured.docs, "DynamoDB");
    assert_eq!(call["aws"]["operation"], "BatchGetItem", "{call}");
    assert!(call["aws"]["table_names"].is_null(), "{call}");
    // The error and its source, as without a trim.
    assert_eq!(common::exceptions(call).len(), 2, "{call}");
    assert_eq!(call["metadata"]["tracing_xray"]["trimmed"], true, "{call}");
}
