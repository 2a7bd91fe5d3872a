//! A generative model test: random span programs (trees of spans with
//! random names, targets, fields, later `record`s, events, `follows_from`,
//! random close order, AWS SDK shaped spans) run through the layer under
//! random builder settings, each program twice (huge and tiny split
//! thresholds), and every document checked against invariants.
//!
//! `random_span_programs` is deterministic (fixed seed; `HUNT_SEED`,
//! `HUNT_CASES`, `HUNT_MAX` explore further, `HUNT_REDUCE=1` reduces a
//! failure greedily). It allows for what the README documents, and for
//! three known, minor differences left as they are (see its comments): a
//! precursor naming a folded AWS SDK span; a split trace keeping places
//! among the 50 annotations for root fields declared but never recorded;
//! the segment's user when the first span naming one waits inside an SDK
//! call in progress. The plain tests below reproduce two fixed findings.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value as J;
use tracing::Span;
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::{Interest, Kind, Level, Metadata};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;

// ---------------------------------------------------------------------------
// Dynamic callsites: names, targets and field names chosen at run time.

struct DynCs {
    meta: OnceLock<Metadata<'static>>,
}
impl Callsite for DynCs {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        self.meta.get().unwrap()
    }
}

type CsKey = (String, String, u8, Vec<String>, bool);

fn leak(s: &str) -> &'static str {
    static STRS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut m = STRS.get_or_init(Default::default).lock().unwrap();
    if let Some(s) = m.get(s) {
        return s;
    }
    let l: &'static str = Box::leak(s.to_owned().into_boxed_str());
    m.insert(s.to_owned(), l);
    l
}

fn level_of(l: u8) -> Level {
    match l % 5 {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 => Level::INFO,
        3 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

fn callsite(
    name: &str,
    target: &str,
    level: u8,
    fields: &[String],
    event: bool,
) -> &'static Metadata<'static> {
    static CS: OnceLock<Mutex<HashMap<CsKey, &'static DynCs>>> = OnceLock::new();
    let key: CsKey = (name.into(), target.into(), level, fields.to_vec(), event);
    let mut m = CS.get_or_init(Default::default).lock().unwrap();
    if let Some(cs) = m.get(&key) {
        return cs.meta.get().unwrap();
    }
    let cs: &'static DynCs = Box::leak(Box::new(DynCs {
        meta: OnceLock::new(),
    }));
    let names: Vec<&'static str> = fields.iter().map(|f| leak(f)).collect();
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let meta = Metadata::new(
        leak(name),
        leak(target),
        level_of(level),
        Some("tests/hunt_model.rs"),
        Some(1),
        Some("hunt_model"),
        FieldSet::new(names, Identifier(cs)),
        if event { Kind::EVENT } else { Kind::SPAN },
    );
    let _ = cs.meta.set(meta);
    m.insert(key, cs);
    drop(m);
    tracing_core::callsite::register(cs);
    cs.meta.get().unwrap()
}

// ---------------------------------------------------------------------------
// Programs.

#[derive(Debug)]
struct TestError {
    msg: String,
    source: Option<Box<TestError>>,
}
impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}
impl std::error::Error for TestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

#[derive(Clone, Debug)]
enum V {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    I128(i128),
    U128(u128),
    Dbg(String),
    Err(String, u8),
}

fn make_err(msg: &str, depth: u8) -> TestError {
    TestError {
        msg: msg.to_owned(),
        source: (depth > 0).then(|| Box::new(make_err(&format!("{msg}/src{depth}"), depth - 1))),
    }
}

/// Holds the values a `ValueSet` borrows.
enum Held {
    S(String),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    I1(i128),
    U1(u128),
    D(tracing::field::DebugValue<String>),
    E(Box<dyn std::error::Error + 'static>),
}
impl V {
    fn hold(&self) -> Held {
        match self {
            V::Str(s) => Held::S(s.clone()),
            V::I64(v) => Held::I(*v),
            V::U64(v) => Held::U(*v),
            V::F64(v) => Held::F(*v),
            V::Bool(v) => Held::B(*v),
            V::I128(v) => Held::I1(*v),
            V::U128(v) => Held::U1(*v),
            V::Dbg(s) => Held::D(tracing::field::debug(s.clone())),
            V::Err(m, d) => Held::E(Box::new(make_err(m, *d))),
        }
    }
}
impl Held {
    fn as_value(&self) -> &dyn Value {
        match self {
            Held::S(s) => s as &dyn Value,
            Held::I(v) => v,
            Held::U(v) => v,
            Held::F(v) => v,
            Held::B(v) => v,
            Held::I1(v) => v,
            Held::U1(v) => v,
            Held::D(v) => v,
            Held::E(e) => e,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Plain,
    SdkOp,
    SmithyInvoke,
    SdkInternal,
}

#[derive(Clone)]
struct SpanSpec {
    parent: Option<usize>,
    shape: Shape,
    name: String,
    target: String,
    level: u8,
    fields: Vec<(String, V)>,
    /// Declared empty, maybe recorded later.
    later: Vec<(String, V)>,
}

impl std::fmt::Debug for SpanSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |v: &V| {
            let t = format!("{v:?}");
            if t.len() > 60 {
                format!(
                    "{}..({} chars)",
                    &t[..t.char_indices().nth(40).map_or(t.len(), |x| x.0)],
                    t.len()
                )
            } else {
                t
            }
        };
        let fs: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect();
        let ls: Vec<String> = self
            .later
            .iter()
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect();
        write!(
            f,
            "\n  parent={:?} {:?} {:?} target={:?} lvl={} fields=[{}] later=[{}]",
            self.parent,
            self.shape,
            self.name,
            self.target,
            self.level % 5,
            fs.join(", "),
            ls.join(", ")
        )
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create,
    Record(usize, usize),
    Event(usize, u8, String, Vec<(String, V)>),
    Follows(usize, usize),
    Drop(usize),
}

#[derive(Clone, Debug)]
struct Settings {
    max_held: usize,
    threshold: usize,
    events: bool,
    all_indexed: bool,
    sql: bool,
    internals: bool,
}

#[derive(Clone, Debug)]
struct Program {
    spans: Vec<SpanSpec>,
    ops: Vec<Op>,
    final_drop: Vec<usize>,
    settings: Settings,
}

const FIELD_POOL: &[&str] = &[
    "annotation.x",
    "annotation.y",
    "annotation.a-b",
    "annotation.a_b",
    "annotation.名",
    "metadata.ns.k",
    "metadata.k",
    "metadata.AWS.k",
    "metadata.tracing_xray.k",
    "metadata.tracing.k",
    "http.request.method",
    "http.method",
    "method",
    "uri",
    "url.full",
    "http.url",
    "url.scheme",
    "server.address",
    "server.port",
    "url.path",
    "http.target",
    "http.route",
    "http.host",
    "http.response.status_code",
    "http.status_code",
    "status",
    "error",
    "error.type",
    "error.message",
    "exception.message",
    "exception.type",
    "otel.status_code",
    "otel.status_message",
    "otel.name",
    "xray.name",
    "otel.kind",
    "xray.namespace",
    "peer.service",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "db.system",
    "db.name",
    "db.namespace",
    "db.user",
    "db.connection_string",
    "db.statement",
    "db.query.text",
    "enduser.id",
    "xray.user",
    "aws.request_id",
    "aws.region",
    "aws.account_id",
    "aws.dynamodb.table_names",
    "aws.sqs.queue_url",
    "messaging.destination.name",
    "aws.s3.bucket",
    "aws.retries",
    "xray.throttle",
    "xray.traced",
    "http.request.traced",
    "user_agent.original",
    "client.address",
    "http.client_ip",
    "http.response.content_length",
    "span_name",
    "message",
    "time",
    "level",
    "target",
    "service",
    "operation",
    "plain",
    "other",
    "summary",
    "command",
    "reply",
    "error.cause_chain",
    "exception.stacktrace",
    "cloud.region",
    "annotation.big",
];

const NAMES: &[&str] = &[
    "op",
    "handler",
    "GetItem",
    "invoke",
    "try_op",
    "try_attempt",
    "serialization",
    "deserialization",
    "",
    " ",
    "a b",
    "名前",
    "ß€𝄞",
    "tab\there",
    "nl\nx",
    "quote\"\\",
    "slash/and:colon@#%&=+-",
    "?;*()!$~^<>",
    "DynamoDB.GetItem",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞",
    "\u{0}\u{1f}\u{7f}\u{85}\u{2028}",
];

const TARGETS: &[&str] = &[
    "app",
    "app::db",
    "tower_http::trace::make_span",
    "h2",
    "aws_config",
    "tracing_xray::aws_sdk",
];
const INTERCEPTOR: &str = "tracing_xray::aws_sdk";
const SDK_OP_TARGET: &str = "aws_sdk_dynamodb::operation::get_item";
const SMITHY_TARGET: &str = "aws_smithy_runtime::client::orchestrator";

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "(?s).{0,12}",
        2 => prop::sample::select(vec![
            "", "aws-api", "AWS-API", "GET", "POST", "DynamoDB", "GetItem", "aws", "remote",
            "client", "ERROR", "503 Service Unavailable", "429", "404 Not Found", "200",
            "http://user:pw@example.com:8080/p/a?q=1#f", "https://example.com", "postgresql",
            "postgres://u:secret@db:5432/x?password=p", "203.0.113.7, 10.0.0.2", "[::1]:80",
            "sqlite:///tmp/a@b.db", "\u{0}\u{1}\u{7f}", "\u{feff}\u{200b}", "true",
        ]).prop_map(String::from),
        1 => (prop::sample::select(vec!["x", "é", "𝄞", "\u{1}", "\"", "\\"]), 0usize..4000)
            .prop_map(|(c, n)| c.repeat(n)),
        1 => (prop::sample::select(vec!["y", "ü", "\u{2028}"]), 20_000usize..70_000)
            .prop_map(|(c, n)| c.repeat(n)),
    ]
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        6 => string_value().prop_map(V::Str),
        2 => any::<i64>().prop_map(V::I64),
        1 => prop::sample::select(vec![0i64, -1, 200, 404, 429, 500, 503, 99999]).prop_map(V::I64),
        1 => any::<u64>().prop_map(V::U64),
        2 => prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e300),
            Just(5e-324),
        ]
        .prop_map(V::F64),
        2 => any::<bool>().prop_map(V::Bool),
        1 => any::<i128>().prop_map(V::I128),
        1 => any::<u128>().prop_map(V::U128),
        1 => "(?s).{0,10}".prop_map(V::Dbg),
        1 => ("(?s).{0,20}", 0u8..12).prop_map(|(m, d)| V::Err(m, d)),
    ]
}

fn field() -> impl Strategy<Value = (String, V)> {
    (prop::sample::select(FIELD_POOL), value()).prop_map(|(k, v)| (k.to_owned(), v))
}

fn dedup(fields: Vec<(String, V)>, taken: &mut HashSet<String>) -> Vec<(String, V)> {
    fields
        .into_iter()
        .filter(|(k, _)| taken.insert(k.clone()))
        .collect()
}

fn span_spec() -> impl Strategy<Value = (u8, SpanSpec)> {
    (
        0u8..10,
        prop::sample::select(NAMES),
        prop::sample::select(TARGETS),
        any::<u8>(),
        prop::collection::vec(field(), 0..6),
        prop::collection::vec(field(), 0..3),
        prop::sample::select(vec![
            "try_op",
            "try_attempt",
            "serialization",
            "deserialization",
            "transmit",
            "invoke",
        ]),
    )
        .prop_map(|(shape, name, target, level, fields, later, internal)| {
            let shape = match shape {
                7 => Shape::SdkOp,
                8 => Shape::SmithyInvoke,
                9 => Shape::SdkInternal,
                _ => Shape::Plain,
            };
            let mut taken: HashSet<String> = HashSet::new();
            let mut base = Vec::new();
            let (name, target) = match shape {
                Shape::Plain => (name.to_owned(), target.to_owned()),
                Shape::SdkOp => {
                    base.push(("rpc.system".to_owned(), V::Str("aws-api".into())));
                    base.push(("rpc.service".to_owned(), V::Str("DynamoDB".into())));
                    base.push(("rpc.method".to_owned(), V::Str("GetItem".into())));
                    ("DynamoDB.GetItem".to_owned(), SDK_OP_TARGET.to_owned())
                }
                Shape::SmithyInvoke => {
                    base.push(("service".to_owned(), V::Str("dynamodb".into())));
                    base.push(("operation".to_owned(), V::Str("GetItem".into())));
                    ("invoke".to_owned(), SMITHY_TARGET.to_owned())
                }
                Shape::SdkInternal => (internal.to_owned(), SMITHY_TARGET.to_owned()),
            };
            taken.insert("n".into());
            let mut fields = dedup(base.into_iter().chain(fields).collect(), &mut taken);
            let later = dedup(later, &mut taken);
            if matches!(shape, Shape::SdkOp | Shape::SmithyInvoke) {
                // keep the op fields in front
                fields.truncate(fields.len().max(3));
            }
            (
                0,
                SpanSpec {
                    parent: None,
                    shape,
                    name,
                    target,
                    level,
                    fields,
                    later,
                },
            )
        })
}

fn program(max_spans: usize) -> impl Strategy<Value = Program> {
    (
        prop::collection::vec((span_spec(), any::<u16>(), 0u8..4), 1..max_spans),
        prop::collection::vec(
            (
                0u8..10,
                any::<u16>(),
                any::<u16>(),
                0u8..5,
                "(?s).{0,16}",
                prop::collection::vec(field(), 0..3),
            ),
            0..max_spans * 2,
        ),
        any::<u64>(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(specs, raw_ops, seed, (events, all_indexed, sql, internals))| {
                let n = specs.len();
                let mut spans: Vec<SpanSpec> = Vec::with_capacity(n);
                let mut depth = vec![0usize; n];
                let mut width = vec![0usize; n];
                for (i, ((_, mut spec), r, how)) in specs.into_iter().enumerate() {
                    if i > 0 {
                        let mut p = match how {
                            0 => (r as usize) % i.min(3), // wide near the top
                            1 => (r as usize) % i,        // anywhere
                            _ => i - 1,                   // deep chains
                        };
                        while depth[p] >= 40 || width[p] >= 60 {
                            p = spans[p].parent.unwrap_or(0);
                            if p == 0 {
                                break;
                            }
                        }
                        spec.parent = Some(p);
                        depth[i] = depth[p] + 1;
                        width[p] += 1;
                    }
                    spans.push(spec);
                }
                // Ops: creations in order, interleaved with others.
                let mut ops = Vec::new();
                let mut created = 1usize;
                ops.push(Op::Create);
                for (kind, a, b, lvl, msg, fields) in raw_ops {
                    let pick = |x: u16| (x as usize) % created;
                    match kind {
                        0..=3 if created < n => {
                            ops.push(Op::Create);
                            created += 1;
                        }
                        4 | 5 => ops.push(Op::Record(pick(a), b as usize)),
                        6 | 7 => ops.push(Op::Event(pick(a), lvl, msg, fields)),
                        8 => ops.push(Op::Follows(pick(a), pick(b))),
                        _ => ops.push(Op::Drop(pick(a))),
                    }
                }
                while created < n {
                    ops.push(Op::Create);
                    created += 1;
                }
                // final drop order: a permutation from the seed
                let mut order: Vec<usize> = (0..n).collect();
                let mut s = seed | 1;
                for i in (1..n).rev() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    order.swap(i, (s as usize) % (i + 1));
                }
                Program {
                    spans,
                    ops,
                    final_drop: order,
                    settings: Settings {
                        max_held: 1000,
                        threshold: 100,
                        events,
                        all_indexed,
                        sql,
                        internals,
                    },
                }
            },
        )
}

// ---------------------------------------------------------------------------
// Running.

struct Outcome {
    documents: Vec<String>,
    traces: Vec<J>,
    stats: tracing_xray::Stats,
    /// The `follows_from` calls made (span, precursor).
    #[allow(dead_code)]
    followed: Vec<(usize, usize)>,
}

fn fields_of(spec: &SpanSpec, n: usize) -> Vec<String> {
    let mut names = vec!["n".to_owned()];
    names.extend(spec.fields.iter().map(|(k, _)| k.clone()));
    names.extend(spec.later.iter().map(|(k, _)| k.clone()));
    let _ = n;
    names
}

fn execute(p: &Program) -> Vec<(usize, usize)> {
    let n = p.spans.len();
    let mut handles: Vec<Option<Span>> = (0..n).map(|_| None).collect();
    let mut created = 0usize;
    let mut children_left = vec![0usize; n];
    for s in &p.spans {
        if let Some(q) = s.parent {
            children_left[q] += 1;
        }
    }
    let mut followed = Vec::new();
    for op in &p.ops {
        match op {
            Op::Create => {
                let i = created;
                created += 1;
                let spec = &p.spans[i];
                let names = fields_of(spec, i);
                let meta = callsite(&spec.name, &spec.target, spec.level, &names, false);
                let held: Vec<Held> = std::iter::once(V::U64(i as u64))
                    .chain(spec.fields.iter().map(|(_, v)| v.clone()))
                    .map(|v| v.hold())
                    .collect();
                let mut vals: Vec<Option<&dyn Value>> =
                    held.iter().map(|h| Some(h.as_value())).collect();
                vals.extend(spec.later.iter().map(|_| None));
                let fs = meta.fields();
                let vs = fs.value_set_all(&vals);
                let span = match spec.parent {
                    None => Span::new_root(meta, &vs),
                    Some(q) => {
                        let pid = handles[q].as_ref().expect("parent held").id();
                        children_left[q] -= 1;
                        Span::child_of(pid, meta, &vs)
                    }
                };
                handles[i] = Some(span);
            }
            Op::Record(i, k) => {
                let spec = &p.spans[*i];
                let all: Vec<&(String, V)> = spec.later.iter().chain(spec.fields.iter()).collect();
                if let (Some(h), false) = (&handles[*i], all.is_empty()) {
                    let (key, v) = all[k % all.len()];
                    let held = v.hold();
                    h.record(key.as_str(), held.as_value());
                }
            }
            Op::Event(i, lvl, msg, fields) => {
                if let Some(h) = &handles[*i] {
                    let mut names = vec!["message".to_owned()];
                    let mut taken: HashSet<String> = ["message".to_owned()].into();
                    let fields = dedup(fields.clone(), &mut taken);
                    names.extend(fields.iter().map(|(k, _)| k.clone()));
                    let level = if lvl % 2 == 0 { 0 } else { *lvl };
                    let meta = callsite("event", "app::events", level, &names, true);
                    let held: Vec<Held> = std::iter::once(V::Str(msg.clone()))
                        .chain(fields.iter().map(|(_, v)| v.clone()))
                        .map(|v| v.hold())
                        .collect();
                    let vals: Vec<Option<&dyn Value>> =
                        held.iter().map(|h| Some(h.as_value())).collect();
                    let fs = meta.fields();
                    let vs = fs.value_set_all(&vals);
                    tracing_core::Event::child_of(h.id(), meta, &vs);
                }
            }
            Op::Follows(i, j) => {
                if let (Some(a), Some(b)) = (&handles[*i], &handles[*j]) {
                    a.follows_from(b);
                    followed.push((*i, *j));
                }
            }
            Op::Drop(i) => {
                if children_left[*i] == 0 && *i != 0 {
                    handles[*i] = None;
                }
            }
        }
    }
    for &i in &p.final_drop {
        handles[i] = None;
    }
    followed
}

fn run(p: &Program, tiny: bool) -> Outcome {
    let s = &p.settings;
    let exporter = InMemoryExporter::new();
    let mut b = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter.clone())
        .with_events(s.events)
        .with_all_fields_indexed(s.all_indexed)
        .with_sql_queries(s.sql)
        .with_aws_sdk_internal_spans(s.internals);
    b = if tiny {
        b.with_max_held_subsegments(s.max_held)
            .with_streaming_threshold(s.threshold)
    } else {
        b.with_max_held_subsegments(1 << 30)
            .with_streaming_threshold(1 << 30)
    };
    let layer = b.build();
    let xray = layer.handle();
    let p2 = p.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let followed =
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                execute(&p2)
            });
        let _ = tx.send(followed);
    });
    let followed = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(f) => f,
        Err(e) => panic!("program did not finish: {e:?}"),
    };
    xray.flush(Duration::from_secs(30)).expect("flush in time");
    let documents = exporter
        .documents()
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    let out = Outcome {
        documents,
        traces: exporter.traces(),
        stats: xray.stats(),
        followed,
    };
    let _ = xray.shutdown(Duration::from_secs(5));
    out
}

// ---------------------------------------------------------------------------
// Checking.

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(common::schema)
}

/// The `n` of a (sub)segment, where the layer put it.
fn n_of(node: &J) -> Option<usize> {
    let cands = [
        &node["metadata"]["tracing"]["n"],
        &node["annotations"]["n"],
        &node["metadata"]["default"]["n"],
    ];
    cands.iter().find_map(|v| v.as_u64()).map(|v| v as usize)
}

fn walk<'a>(node: &'a J, parent: Option<&'a J>, out: &mut Vec<(&'a J, Option<&'a J>)>) {
    out.push((node, parent));
    if let Some(subs) = node["subsegments"].as_array() {
        for s in subs {
            walk(s, Some(node), out);
        }
    }
}

fn final_fields(spec: &SpanSpec, ops: &[Op]) -> Vec<(String, V)> {
    let _ = ops;
    let mut f = spec.fields.clone();
    f.extend(spec.later.iter().cloned());
    f
}

/// Whether span `i` may be an AWS operation (conservatively).
fn maybe_op(p: &Program, i: usize) -> bool {
    let s = &p.spans[i];
    let fs = final_fields(s, &p.ops);
    let invoke = s.name == "invoke" && s.target.starts_with("aws_smithy_runtime");
    s.target == INTERCEPTOR
        || fs.iter().any(|(k, v)| match k.as_str() {
            "rpc.system" => matches!(v, V::Str(x) if x.eq_ignore_ascii_case("aws-api")),
            "xray.namespace" => matches!(v, V::Str(x) if x == "aws"),
            "rpc.service" | "service" => invoke,
            _ => false,
        })
}

fn is_below(p: &Program, d: usize, i: usize) -> bool {
    let mut q = p.spans[d].parent;
    while let Some(a) = q {
        if a == i {
            return true;
        }
        q = p.spans[a].parent;
    }
    false
}

fn has_interceptor_below(p: &Program, i: usize) -> bool {
    (0..p.spans.len()).any(|d| p.spans[d].target == INTERCEPTOR && is_below(p, d, i))
}

fn under_interceptor(p: &Program, i: usize) -> bool {
    (0..p.spans.len()).any(|a| p.spans[a].target == INTERCEPTOR && is_below(p, i, a))
}

fn under_sdk_target(p: &Program, i: usize) -> bool {
    let mut q = p.spans[i].parent;
    while let Some(a) = q {
        let t = &p.spans[a].target;
        if t.starts_with("aws_sdk") || t.starts_with("aws_smithy") {
            return true;
        }
        q = p.spans[a].parent;
    }
    false
}

fn under_op(p: &Program, i: usize) -> bool {
    let mut q = p.spans[i].parent;
    while let Some(a) = q {
        if maybe_op(p, a) {
            return true;
        }
        q = p.spans[a].parent;
    }
    false
}

fn check(p: &Program, o: &Outcome) -> Result<(), TestCaseError> {
    let mut docs = Vec::new();
    for d in &o.documents {
        prop_assert!(d.len() <= 63_970, "document of {} bytes", d.len());
        let v: J = serde_json::from_str(d)
            .map_err(|e| TestCaseError::fail(format!("bad JSON {e}: {d}")))?;
        let errors: Vec<String> = validator()
            .iter_errors(&v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        prop_assert!(
            errors.is_empty(),
            "schema: {:?}\nin {}",
            errors,
            &d[..d.len().min(3000)]
        );
        docs.push(v);
    }
    // trace ids
    let tids: HashSet<&str> = docs.iter().filter_map(|d| d["trace_id"].as_str()).collect();
    prop_assert!(tids.len() <= 1, "trace ids {:?}", tids);
    // ids
    let mut nodes = Vec::new();
    for d in &docs {
        walk(d, None, &mut nodes);
    }
    let mut ids: HashMap<&str, &J> = HashMap::new();
    for (n, _) in &nodes {
        let id = n["id"].as_str().unwrap_or_default();
        prop_assert!(ids.insert(id, n).is_none(), "duplicate id {}", id);
    }
    // times
    for (n, parent) in &nodes {
        let st = n["start_time"].as_f64().unwrap();
        if let Some(et) = n["end_time"].as_f64() {
            prop_assert!(et >= st, "end before start: {}", n);
            if let Some(par) = parent {
                let (ps, pe) = (
                    par["start_time"].as_f64().unwrap(),
                    par["end_time"].as_f64(),
                );
                prop_assert!(
                    st >= ps - 1e-6,
                    "child starts before its parent: {} in {}",
                    n["id"],
                    par["id"]
                );
                if let Some(pe) = pe {
                    prop_assert!(
                        et <= pe + 1e-6,
                        "child ends after its parent: {} ({}) in {} ({})",
                        n["id"],
                        et,
                        par["id"],
                        pe
                    );
                }
            }
        } else {
            prop_assert!(
                n["in_progress"] == true,
                "neither end_time nor in_progress: {}",
                n
            );
        }
    }
    for d in &docs {
        if d["type"] == "subsegment" {
            if let Some(par) = ids.get(d["parent_id"].as_str().unwrap_or_default()) {
                let (st, ps) = (
                    d["start_time"].as_f64().unwrap(),
                    par["start_time"].as_f64().unwrap(),
                );
                prop_assert!(
                    st >= ps - 1e-6,
                    "independent subsegment starts before its parent"
                );
                if let (Some(et), Some(pe)) = (d["end_time"].as_f64(), par["end_time"].as_f64()) {
                    prop_assert!(
                        et <= pe + 1e-6,
                        "independent subsegment ends after its parent"
                    );
                }
            }
        }
    }
    // spans found by n
    let mut found: HashMap<usize, usize> = HashMap::new();
    let mut unnamed_trimmed = 0;
    for (node, _) in &nodes {
        match n_of(node) {
            Some(i) => *found.entry(i).or_default() += 1,
            None => {
                if node["metadata"]["tracing_xray"]["trimmed"] == true {
                    unnamed_trimmed += 1;
                }
            }
        }
    }
    for (i, c) in &found {
        prop_assert!(*c == 1, "span n={} sent {} times", i, c);
    }
    // independent subsegments' parents
    for d in &docs {
        if d["type"] == "subsegment" {
            let pid = d["parent_id"].as_str().unwrap_or_default();
            if !ids.contains_key(pid) {
                let i = n_of(d);
                let excused = i.is_some_and(|i| under_op(p, i));
                prop_assert!(
                    excused,
                    "independent subsegment n={:?} names parent {} never sent",
                    i,
                    pid
                );
            }
        }
    }
    // the parent of every (sub)segment id, embedded or independent
    let mut parent_of: HashMap<&str, &str> = HashMap::new();
    for (n, parent) in &nodes {
        if let Some(par) = parent {
            parent_of.insert(n["id"].as_str().unwrap(), par["id"].as_str().unwrap());
        } else if let Some(pid) = n["parent_id"].as_str() {
            parent_of.insert(n["id"].as_str().unwrap(), pid);
        }
    }
    for (n, _) in &nodes {
        for x in n["precursor_ids"].as_array().into_iter().flatten() {
            let x = x.as_str().unwrap();
            // Folding into AWS operations reshapes who is whose sibling.
            let folding = n_of(n).is_none_or(|i| {
                let q = p.spans[i].parent;
                under_op(p, i)
                    || under_interceptor(p, i)
                    || p.spans.iter().enumerate().any(|(d, s)| {
                        s.parent == q
                            && (s.target == INTERCEPTOR || under_op(p, d) || maybe_op(p, d))
                    })
            });
            if ids.contains_key(x) && !folding {
                let me = parent_of.get(n["id"].as_str().unwrap());
                prop_assert!(
                    me == parent_of.get(x),
                    "precursor {} of {} is not its sibling",
                    x,
                    n["id"]
                );
            }
        }
    }
    // precursors
    for (n, parent) in &nodes {
        if let Some(pre) = n["precursor_ids"].as_array() {
            for x in pre {
                let x = x.as_str().unwrap();
                // Known (precursor_naming_a_folded_sdk_span_dangles): a
                // precursor folded into an AWS operation.
                let excused = n_of(n).is_some_and(|i| {
                    let q = p.spans[i].parent;
                    (under_op(p, i) && !p.settings.internals)
                        || p.spans.iter().enumerate().any(|(d, s)| {
                            s.parent == q && (s.target == INTERCEPTOR || under_op(p, d))
                        })
                });
                prop_assert!(ids.contains_key(x) || excused, "precursor {} not sent", x);
                let _ = parent;
            }
        }
    }
    let missing: Vec<usize> = (0..p.spans.len())
        .filter(|i| !found.contains_key(i))
        .filter(|&i| !under_op(p, i) || p.settings.internals)
        // The interceptor's span merges into the operation above it (its
        // fields, `n` included, over the operation's).
        .filter(|&i| !(p.spans[i].target == INTERCEPTOR && under_op(p, i)))
        .filter(|&i| !(maybe_op(p, i) && has_interceptor_below(p, i)))
        // Known (span_under_the_interceptor_span_is_lost_with_internals_kept).
        .filter(|&i| !(p.settings.internals && under_interceptor(p, i)))
        .collect();
    let lost = o.stats.spans_dropped as usize + unnamed_trimmed;
    prop_assert!(
        missing.len() <= lost,
        "spans neither sent, folded nor counted: {:?} (stats {:?})",
        missing,
        o.stats
    );
    Ok(())
}

/// The tree of `traces()` as n -> parent n (nearest ancestor with an n).
fn tree(traces: &[J]) -> HashMap<usize, Option<usize>> {
    fn go(node: &J, up: Option<usize>, out: &mut HashMap<usize, Option<usize>>) {
        let me = n_of(node);
        if let Some(i) = me {
            out.insert(i, up);
        }
        if let Some(subs) = node["subsegments"].as_array() {
            for s in subs {
                go(s, me.or(up), out);
            }
        }
    }
    let mut out = HashMap::new();
    for t in traces {
        go(t, None, &mut out);
    }
    out
}

/// A node's content without what differs from run to run (ids, times)
/// or with the split (`type`, `trace_id`, `parent_id`, children).
fn content(node: &J) -> J {
    let mut c = node.clone();
    if let Some(o) = c.as_object_mut() {
        for k in [
            "id",
            "start_time",
            "end_time",
            "parent_id",
            "type",
            "trace_id",
            "subsegments",
            "precursor_ids",
        ] {
            o.remove(k);
        }
        if let Some(cause) = o.get_mut("cause").and_then(|c| c.as_object_mut()) {
            for e in cause
                .get_mut("exceptions")
                .and_then(|e| e.as_array_mut())
                .into_iter()
                .flatten()
            {
                if let Some(e) = e.as_object_mut() {
                    e.remove("id");
                    e.remove("cause");
                }
            }
        }
        if let Some(ev) = o
            .get_mut("metadata")
            .and_then(|m| m.get_mut("tracing"))
            .and_then(|t| t.get_mut("events"))
            .and_then(|e| e.as_array_mut())
        {
            for e in ev {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    c
}

fn contents(traces: &[J]) -> HashMap<usize, J> {
    let mut out = HashMap::new();
    for t in traces {
        let mut nodes = Vec::new();
        walk(t, None, &mut nodes);
        for (n, _) in nodes {
            if let Some(i) = n_of(n) {
                out.insert(i, content(n));
            }
        }
    }
    out
}

fn check_pair(p: &Program, huge: &Outcome, tiny: &Outcome) -> Result<(), TestCaseError> {
    let (ca, cb) = (contents(&huge.traces), contents(&tiny.traces));
    // When spans of an SDK call left apart in the tiny run (README "Limits":
    // past the hold-back bound), their annotations count in the trace's 50
    // too, and so on: compare contents only where both runs sent the same
    // spans.
    let same_spans = ca.len() == cb.len() && ca.keys().all(|k| cb.contains_key(k));
    for (i, x) in ca.iter().filter(|_| same_spans) {
        // README "Limits": past the hold-back bound, spans inside an SDK
        // call leave as subsegments of their own instead of folding into it,
        // taking their fields and errors with them.
        let apart = (0..p.spans.len()).any(|d| {
            cb.contains_key(&d) && !ca.contains_key(&d) && {
                let mut q = p.spans[d].parent;
                let mut hit = false;
                while let Some(a) = q {
                    if a == *i {
                        hit = true;
                        break;
                    }
                    q = p.spans[a].parent;
                }
                hit
            }
        });
        if apart {
            continue;
        }
        if let Some(y) = cb.get(i) {
            let (mut x, mut y) = (x.clone(), y.clone());
            if huge.stats.annotations_demoted + tiny.stats.annotations_demoted > 0 {
                // Known (split_trace_demotes_annotations_for_root_*): a split
                // trace keeps too many places for its root's annotations;
                // and spans held back in an SDK call are counted later.
                for v in [&mut x, &mut y] {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("annotations");
                        o.remove("metadata");
                    }
                }
            }
            if (0..p.spans.len()).any(|d| under_sdk_target(p, d)) {
                // Known (segment_user_changes_when_the_first_user_span_is_held_back_in_an_sdk_call).
                for v in [&mut x, &mut y] {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("user");
                    }
                }
            }
            let (x, y) = (&x, &y);
            let ann = |t: &[J]| {
                let mut v: Vec<u64> = Vec::new();
                for t in t {
                    let mut nodes = Vec::new();
                    walk(t, None, &mut nodes);
                    v.extend(
                        nodes
                            .iter()
                            .filter_map(|(n, _)| n["annotations"]["n"].as_u64()),
                    );
                    v.push(
                        10_000
                            + nodes
                                .iter()
                                .map(|(n, _)| {
                                    n["annotations"].as_object().map_or(0, |o| o.len()) as u64
                                })
                                .sum::<u64>(),
                    );
                }
                v.sort();
                v
            };
            prop_assert!(
                x == y,
                "span n={} differs:\nhuge {}\ntiny {}\nannotated huge {:?}\nannotated tiny {:?}\nstats {:?} {:?}",
                i,
                x,
                y,
                ann(&huge.traces),
                ann(&tiny.traces),
                huge.stats,
                tiny.stats
            );
        }
    }
    let (a, b) = (tree(&huge.traces), tree(&tiny.traces));
    for i in 0..p.spans.len() {
        let (x, y) = (a.get(&i), b.get(&i));
        if x == y {
            continue;
        }
        if under_op(p, i) || has_interceptor_below(p, i) {
            continue;
        }
        prop_assert!(
            false,
            "span n={} under {:?} with huge thresholds, {:?} with tiny ones",
            i,
            x,
            y
        );
    }
    Ok(())
}

fn case(p: &Program) -> Result<(), TestCaseError> {
    let huge = run(p, false);
    check(p, &huge)?;
    let tiny = run(p, true);
    check(p, &tiny)?;
    if huge.stats.spans_dropped == 0 && tiny.stats.spans_dropped == 0 {
        check_pair(p, &huge, &tiny)?;
    }
    Ok(())
}

fn tiny_settings() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![(1usize..4, 1usize..4), (1usize..12, 1usize..30)]
}

#[test]
fn random_span_programs() {
    let cases: u32 = std::env::var("HUNT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let max: usize = std::env::var("HUNT_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("HUNT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strat = (program(max), tiny_settings()).prop_map(|(mut p, (h, t))| {
        p.settings.max_held = h;
        p.settings.threshold = t;
        p
    });
    match runner.run(&strat, |p| case(&p)) {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, p)) => {
            if std::env::var("HUNT_REDUCE").is_ok() {
                let p = reduce(p);
                for tiny in [false, true] {
                    let o = run(&p, tiny);
                    eprintln!("--- tiny {tiny} {:?}", o.stats);
                    for d in &o.documents {
                        let v: J = serde_json::from_str(d).unwrap();
                        let mut nodes = Vec::new();
                        walk(&v, None, &mut nodes);
                        let desc: Vec<String> = nodes
                            .iter()
                            .map(|(n, _)| {
                                format!(
                                    "{:?}:{:?}{}",
                                    n_of(n),
                                    n["annotations"]
                                        .as_object()
                                        .map(|o| o.keys().cloned().collect::<Vec<_>>())
                                        .unwrap_or_default(),
                                    if n["user"].is_null() {
                                        String::new()
                                    } else {
                                        format!(" user={}", n["user"])
                                    }
                                )
                            })
                            .collect();
                        eprintln!("doc: {}", desc.join(" | "));
                    }
                }
                panic!("reduced: {:?}\n{:?}", case(&p), p);
            }
            panic!("{why}\n{p:?}");
        }
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------
// Findings, as small plain tests.

/// Runs `f` under an always-sampling layer with an in-memory exporter and
/// returns every document sent, parsed.
fn documents_of(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> Vec<J> {
    let exporter = InMemoryExporter::new();
    let layer = configure(
        tracing_xray::builder()
            .with_service_name("svc")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_exporter(exporter.clone()),
    )
    .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    xray.flush(Duration::from_secs(5)).unwrap();
    exporter.json_documents()
}

/// The spans whose `n` is kept as an annotation (not demoted), from the
/// trees of `traces()`.
fn annotated(traces: &[J]) -> Vec<u64> {
    let mut out = Vec::new();
    for t in traces {
        let mut nodes = Vec::new();
        walk(t, None, &mut nodes);
        for (n, _) in nodes {
            if let Some(i) = n["annotations"]["i"].as_u64() {
                out.push(i);
            }
        }
    }
    out.sort();
    out
}

fn sixty_children(threshold: usize, held: usize) -> (Vec<u64>, tracing_xray::Stats) {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_all_fields_indexed(true)
        .with_streaming_threshold(threshold)
        .with_max_held_subsegments(held)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let root = tracing::info_span!("request", i = 1000u64);
        let _r = root.enter();
        for i in 0..60u64 {
            tracing::info_span!("step", i).in_scope(|| {});
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    (annotated(&exporter.traces()), xray.stats())
}

#[test]
fn annotation_budget_same_whether_split_or_not() {
    let (whole, s1) = sixty_children(1 << 20, 1 << 20);
    let (split, s2) = sixty_children(1, 1);
    eprintln!("whole {whole:?} {s1:?}\nsplit {split:?} {s2:?}");
    assert_eq!(whole, split);
}

/// Runs a root (made by `root`) with `children` children with one
/// annotation each, whole or split (streaming thresholds of 1), and
/// returns the annotations sent and `stats().annotations_demoted`.
fn budget_case(split: bool, children: u64, all: bool, root: impl FnOnce() -> Span) -> (usize, u64) {
    let exporter = InMemoryExporter::new();
    let mut b = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_all_fields_indexed(all)
        .with_exporter(exporter.clone());
    if split {
        b = b.with_streaming_threshold(1).with_max_held_subsegments(1);
    }
    let layer = b.build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let root = root();
        let _r = root.enter();
        for i in 0..children {
            tracing::info_span!("step", annotation.i = i).in_scope(|| {});
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let mut nodes = Vec::new();
    let docs = exporter.json_documents();
    for d in &docs {
        walk(d, None, &mut nodes);
    }
    let sent = nodes
        .iter()
        .map(|(n, _)| n["annotations"].as_object().map_or(0, |o| o.len()))
        .sum();
    (sent, xray.stats().annotations_demoted)
}

/// A trace whose root outlives its streamed subsegments keeps places of the
/// 50-annotation budget for the annotations the root's fields will take.
/// With `with_all_fields_indexed(true)`, a root of HTTP convention fields
/// (tower-http-like), none of which is an annotation, took four places: a
/// split trace demoted subsegment annotations that the same trace sent
/// whole kept.
#[test]
fn a_split_trace_keeps_no_annotation_places_for_root_convention_fields() {
    let root = || {
        tracing::info_span!(
            "request",
            http.request.method = "GET",
            url.full = "https://example.com/a",
            user_agent.original = "ua",
            http.response.status_code = 200
        )
    };
    let whole = budget_case(false, 50, true, root);
    let split = budget_case(true, 50, true, root);
    assert_eq!(whole, (50, 0), "whole: (annotations sent, demoted)");
    assert_eq!(split, whole, "split: (annotations sent, demoted)");
}

/// Removes span `k` (a leaf) from the program.
fn without_span(p: &Program, k: usize) -> Program {
    let map = |i: usize| if i > k { i - 1 } else { i };
    let mut q = p.clone();
    q.spans.remove(k);
    for s in &mut q.spans {
        s.parent = s.parent.map(map);
    }
    let mut created = 0;
    q.ops = Vec::new();
    for op in &p.ops {
        let keep = match op {
            Op::Create => {
                created += 1;
                created - 1 != k
            }
            Op::Record(i, _) | Op::Event(i, ..) | Op::Drop(i) => *i != k,
            Op::Follows(i, j) => *i != k && *j != k,
        };
        if keep {
            q.ops.push(match op {
                Op::Create => Op::Create,
                Op::Record(i, x) => Op::Record(map(*i), *x),
                Op::Event(i, l, m, f) => Op::Event(map(*i), *l, m.clone(), f.clone()),
                Op::Drop(i) => Op::Drop(map(*i)),
                Op::Follows(i, j) => Op::Follows(map(*i), map(*j)),
            });
        }
    }
    q.final_drop = p
        .final_drop
        .iter()
        .filter(|&&i| i != k)
        .map(|&i| map(i))
        .collect();
    q
}

/// Greedy reduction of a failing program: drops leaves, fields and ops
/// while it still fails.
fn reduce(mut p: Program) -> Program {
    let fails = |q: &Program| case(q).is_err();
    loop {
        let mut progress = false;
        let mut k = p.spans.len();
        while k > 1 {
            k -= 1;
            if k >= p.spans.len() || p.spans.iter().any(|s| s.parent == Some(k)) {
                continue;
            }
            let q = without_span(&p, k);
            if fails(&q) {
                p = q;
                progress = true;
            }
        }
        for k in 0..p.spans.len() {
            let mut f = 0;
            while f < p.spans[k].fields.len() {
                let mut q = p.clone();
                q.spans[k].fields.remove(f);
                if fails(&q) {
                    p = q;
                    progress = true;
                } else {
                    f += 1;
                }
            }
            let mut f = 0;
            while f < p.spans[k].later.len() {
                let mut q = p.clone();
                q.spans[k].later.remove(f);
                if fails(&q) {
                    p = q;
                    progress = true;
                } else {
                    f += 1;
                }
            }
        }
        let mut o = 0;
        while o < p.ops.len() {
            if matches!(p.ops[o], Op::Create) {
                o += 1;
                continue;
            }
            let mut q = p.clone();
            q.ops.remove(o);
            if fails(&q) {
                p = q;
                progress = true;
            } else {
                o += 1;
            }
        }
        if !progress {
            return p;
        }
    }
}

/// With `with_aws_sdk_internal_spans(true)`, a span whose parent is the
/// `XrayInterceptor`'s span (target `tracing_xray::aws_sdk`, merged into
/// the SDK operation span above it) is a subsegment of that operation. It
/// was neither sent nor counted. (With the default, it is folded into the
/// operation, as documented.)
#[test]
fn a_span_under_the_interceptors_span_is_sent_with_internals_kept() {
    let docs = documents_of(
        |b| b.with_aws_sdk_internal_spans(true),
        || {
            let request = tracing::info_span!("request");
            let _r = request.enter();
            let op = tracing::info_span!(target: "aws_sdk_dynamodb::operation::get_item", "DynamoDB.GetItem",
            rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "GetItem");
            let call = tracing::info_span!(target: "tracing_xray::aws_sdk", parent: &op, "aws_sdk_call", rpc.system = "aws-api");
            tracing::info_span!(parent: &call, "sign_request").in_scope(|| {});
            drop(call);
            drop(op);
        },
    );
    let mut nodes = Vec::new();
    for d in &docs {
        walk(d, None, &mut nodes);
    }
    let names: Vec<&str> = nodes
        .iter()
        .map(|(n, _)| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"sign_request"), "sent: {names:?}");
}
