//! A model-based property test of the trees the layer builds.
//!
//! Random programs, run on two threads, open roots and children (contextual
//! or with an explicit parent, some hidden from the layer by a per-layer
//! filter), enter and exit them (a span of one trace entered inside
//! another's, a span entered on both threads), log ERROR events, and drop
//! their handles in any order and on either thread. Every span carries its
//! index; the sampler keeps the traces whose root has an even index, unless
//! the root continues an upstream trace whose header decides. A model
//! computes what the registry decides (a contextual span's parent is the
//! span its thread entered last) and what X-Ray should then receive: every
//! visible span of a sampled trace exactly once, under its nearest visible
//! ancestor, marked `fault` when an ERROR event was logged in it, and
//! nothing of an unsampled trace. Tiny streaming thresholds, in some cases,
//! make the layer split traces into independent subsegments, which must land
//! under the right parent. Programs also ask spans for the header of a
//! downstream call (`xray_header`: the trace's decision, Root and Parent)
//! and continue upstream traces on roots not yet decided
//! (`set_xray_parent`).
//!
//! This is where the layer's shortcuts for unsampled traces (the memo of
//! unsampled spans, the thread's hint that it is in unsampled traces) would
//! show a wrong answer: a sampled span dropped, or attached to the wrong
//! trace, or an unsampled one sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tracing::span::EnteredSpan;
use tracing::{Span, info_span};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::{Sampled, TraceHeader, XraySpanExt};

/// A layer that sees every span, so that spans hidden from tracing-xray
/// still exist in the registry (as they do beside a `fmt` layer).
struct SeesEverything;
impl<S: tracing::Subscriber> Layer<S> for SeesEverything {}

#[derive(Clone, Debug)]
enum Op {
    /// A span with no parent; with a trace header (`xray.trace_header`),
    /// `Sampled=1` or `Sampled=0`, that decides instead of the sampler.
    Root { hidden: bool, header: Option<bool> },
    /// A span whose parent is the current span (`None`), or one of the
    /// spans opened so far (the index modulo their number), when its
    /// handle is still held.
    Child {
        explicit: Option<usize>,
        hidden: bool,
    },
    /// Enters one of the spans opened so far (if held and not entered).
    Enter(usize),
    /// Exits the span entered last.
    Exit,
    /// Drops the handle of one of the spans opened so far.
    Drop(usize),
    /// Logs an ERROR event in the current span.
    Error,
    /// Runs the next operations on the other thread (spans, entered spans
    /// and current span are per thread; handles are shared).
    Switch,
    /// Asks for the header of a downstream call made in one of the spans
    /// opened so far (`XraySpanExt::xray_header`), which decides its trace.
    /// For a hidden span, that of its nearest visible ancestor.
    Header(usize),
    /// Continues an upstream trace with `Sampled=1` or `Sampled=0` on one
    /// of the spans opened so far (`XraySpanExt::set_xray_parent`): only a
    /// root not decided yet takes it.
    SetParent(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Root { hidden: false, header: None }),
        1 => any::<bool>().prop_map(|s| Op::Root { hidden: false, header: Some(s) }),
        1 => Just(Op::Root { hidden: true, header: None }),
        8 => (proptest::option::of(any::<usize>()), proptest::bool::weighted(0.2))
            .prop_map(|(explicit, hidden)| Op::Child { explicit, hidden }),
        4 => any::<usize>().prop_map(Op::Enter),
        2 => Just(Op::Exit),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::Error),
        2 => Just(Op::Switch),
        1 => any::<usize>().prop_map(Op::Header),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, s)| Op::SetParent(i, s)),
    ]
}

/// What the model knows of a span: whether the layer sees it, and the
/// parent the registry gives it.
struct ModelSpan {
    hidden: bool,
    /// The upstream trace a root continues (its `Sampled` flag), from a
    /// header it was opened with or given before it was decided.
    header: Option<bool>,
    /// A root's sampling decision has been taken: at its first visible
    /// descendant, or when a header was asked for in its trace.
    decided: bool,
    parent: Option<usize>,
    /// An ERROR event was logged in it.
    fault: bool,
}

/// Work for one of the two threads a program runs on.
enum Job {
    /// Opens span `n`: a root, a child of `parent`, or (`parent: None`,
    /// `root: false`) a child of the thread's current span.
    New {
        n: usize,
        hidden: bool,
        root: bool,
        header: Option<bool>,
        parent: Option<Span>,
    },
    Enter(Span),
    /// Drops a handle here: the registry closes a span's parent through
    /// the thread's default subscriber (tokio-rs/tracing#1656), so handles
    /// are dropped where `dispatch` is the default, never on the test's
    /// own thread.
    Drop(Span),
    Exit,
    Error,
    /// Exits every span and stops.
    Stop,
}

/// A thread running jobs under `dispatch`: each job answers (with the new
/// span for `New`) before the next one is sent, so a program runs in order.
fn spawn_runner(
    dispatch: tracing::Dispatch,
) -> (
    std::sync::mpsc::Sender<Job>,
    std::sync::mpsc::Receiver<Option<Span>>,
    std::thread::JoinHandle<()>,
) {
    let (jobs, rx) = std::sync::mpsc::channel::<Job>();
    let (tx, replies) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            let mut entered: Vec<EnteredSpan> = Vec::new();
            for job in rx {
                let reply = match job {
                    Job::New {
                        n,
                        hidden,
                        root,
                        header,
                        parent,
                    } => Some(new_span(n, hidden, root, header, parent.as_ref())),
                    Job::Enter(span) => {
                        entered.push(span.entered());
                        None
                    }
                    Job::Drop(span) => {
                        drop(span);
                        None
                    }
                    Job::Exit => {
                        entered.pop();
                        None
                    }
                    Job::Error => {
                        tracing::error!("boom");
                        None
                    }
                    Job::Stop => {
                        while entered.pop().is_some() {}
                        let _ = tx.send(None);
                        return;
                    }
                };
                let _ = tx.send(reply);
            }
        })
    });
    (jobs, replies, thread)
}

/// Whether the trace of `root` is sampled: its upstream header decides,
/// else the sampler (an even index).
fn is_sampled(model: &[ModelSpan], root: usize) -> bool {
    model[root].header.unwrap_or(root.is_multiple_of(2))
}

/// The visible root of span `i`'s trace (`i` itself for a root).
fn root_of(model: &[ModelSpan], i: usize) -> usize {
    let mut root = i;
    while let Some(p) = visible_parent(model, root) {
        root = p;
    }
    root
}

/// Runs `ops` on two threads under `dispatch`; returns the model's spans
/// and the headers asked for (the index of the span whose header it is, the
/// header).
fn run(ops: &[Op], dispatch: &tracing::Dispatch) -> (Vec<ModelSpan>, Vec<(usize, TraceHeader)>) {
    let runners = [
        spawn_runner(dispatch.clone()),
        spawn_runner(dispatch.clone()),
    ];
    let ask = |t: usize, job: Job| {
        runners[t].0.send(job).unwrap();
        runners[t].1.recv().unwrap()
    };
    let mut model: Vec<ModelSpan> = Vec::new();
    let mut handles: Vec<Option<Span>> = Vec::new();
    // The spans each thread has entered, in order.
    let mut entered: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut headers = Vec::new();
    let mut t = 0;
    for op in ops {
        match *op {
            Op::Root { hidden, .. } | Op::Child { hidden, .. } => {
                let n = model.len();
                let (parent, root, handle) = match *op {
                    Op::Root { .. } => (None, true, None),
                    Op::Child {
                        explicit: Some(p), ..
                    } => {
                        let p = p % n.max(1);
                        let Some(Some(handle)) = handles.get(p) else {
                            continue;
                        };
                        (Some(p), false, Some(handle.clone()))
                    }
                    _ => (entered[t].last().copied(), false, None),
                };
                let header = match *op {
                    Op::Root { header, .. } => header,
                    _ => None,
                };
                let job = Job::New {
                    n,
                    hidden,
                    root,
                    header,
                    parent: handle,
                };
                let span = ask(t, job).expect("a new span");
                model.push(ModelSpan {
                    hidden,
                    header,
                    decided: header.is_some(),
                    parent,
                    fault: false,
                });
                handles.push(Some(span));
                if !hidden {
                    // A new visible span decides its trace's root.
                    let root = root_of(&model, n);
                    if root != n {
                        model[root].decided = true;
                    }
                }
            }
            Op::Enter(i) => {
                let i = i % model.len().max(1);
                if entered[t].contains(&i) {
                    continue;
                }
                if let Some(Some(handle)) = handles.get(i) {
                    ask(t, Job::Enter(handle.clone()));
                    entered[t].push(i);
                }
            }
            Op::Exit => {
                ask(t, Job::Exit);
                entered[t].pop();
            }
            Op::Error => {
                ask(t, Job::Error);
                // The event's span, for a layer behind a per-layer filter:
                // the span this thread entered last among those it sees.
                if let Some(&i) = entered[t].iter().rev().find(|&&i| !model[i].hidden) {
                    model[i].fault = true;
                }
            }
            Op::Drop(i) => {
                let i = i % model.len().max(1);
                if let Some(handle) = handles.get_mut(i).and_then(Option::take) {
                    ask(t, Job::Drop(handle));
                }
            }
            Op::Switch => t = 1 - t,
            Op::Header(i) => {
                let i = i % model.len().max(1);
                let Some(Some(handle)) = handles.get(i) else {
                    continue;
                };
                let header = handle.xray_header();
                // A span hidden from the layer gives its nearest visible
                // ancestor's header; without one, none.
                let traced = if model[i].hidden {
                    visible_parent(&model, i)
                } else {
                    Some(i)
                };
                let Some(traced) = traced else {
                    assert!(header.is_none(), "span {i} gave {header:?}");
                    continue;
                };
                let root = root_of(&model, traced);
                model[root].decided = true;
                headers.push((traced, header.expect("a traced span has a header")));
            }
            Op::SetParent(i, sampled) => {
                let i = i % model.len().max(1);
                let Some(Some(handle)) = handles.get(i) else {
                    continue;
                };
                handle.set_xray_parent(&TraceHeader::parse(&upstream_header(i, sampled)));
                let takes_it =
                    !model[i].hidden && visible_parent(&model, i).is_none() && !model[i].decided;
                if takes_it {
                    model[i].header = Some(sampled);
                    model[i].decided = true;
                }
            }
        }
    }
    for handle in handles.into_iter().flatten() {
        ask(t, Job::Drop(handle));
    }
    for (jobs, replies, _) in &runners {
        jobs.send(Job::Stop).unwrap();
        replies.recv().unwrap();
    }
    for (_, _, thread) in runners {
        thread.join().unwrap();
    }
    (model, headers)
}

/// The upstream trace a root with a header continues.
const UPSTREAM_PARENT: &str = "53995c3f42cd8ad8";

fn upstream_trace_id(n: usize) -> String {
    format!("1-5759e988-bd862e3fe1be46a9{n:08x}")
}

/// The header of the upstream trace root `n` continues.
fn upstream_header(n: usize, sampled: bool) -> String {
    let trace_id = upstream_trace_id(n);
    format!(
        "Root={trace_id};Parent={UPSTREAM_PARENT};Sampled={}",
        u8::from(sampled)
    )
}

fn new_span(
    n: usize,
    hidden: bool,
    root: bool,
    header: Option<bool>,
    parent: Option<&Span>,
) -> Span {
    let path = format!("/{n}");
    let header = header.map(|sampled| upstream_header(n, sampled));
    let header = header.as_deref();
    match (hidden, root, parent.and_then(Span::id)) {
        (true, false, None) => info_span!("hidden", annotation.model_id = n, url.path = %path),
        (false, false, None) => info_span!("visible", annotation.model_id = n, url.path = %path),
        (true, _, parent) => {
            info_span!(parent: parent, "hidden", annotation.model_id = n, url.path = %path)
        }
        (false, _, parent) => info_span!(
            parent: parent,
            "visible",
            annotation.model_id = n,
            url.path = %path,
            xray.trace_header = header
        ),
    }
}

/// The nearest ancestor of span `i` the layer sees.
fn visible_parent(model: &[ModelSpan], i: usize) -> Option<usize> {
    let mut p = model[i].parent;
    while let Some(j) = p {
        if !model[j].hidden {
            return Some(j);
        }
        p = model[j].parent;
    }
    None
}

/// A sent span's parent index (`None` for a segment) and its `fault` flag.
type Sent = (Option<usize>, bool);

/// What X-Ray should receive: each sent span's index, its parent's, and
/// whether it is marked `fault`.
fn expected(model: &[ModelSpan]) -> BTreeMap<usize, Sent> {
    let mut sent = BTreeMap::new();
    for i in (0..model.len()).filter(|&i| !model[i].hidden) {
        if is_sampled(model, root_of(model, i)) {
            sent.insert(i, (visible_parent(model, i), model[i].fault));
        }
    }
    sent
}

/// What X-Ray received, in the same form.
fn received(traces: &[serde_json::Value]) -> BTreeMap<usize, Sent> {
    fn walk(node: &serde_json::Value, parent: Option<usize>, out: &mut BTreeMap<usize, Sent>) {
        let id = node["annotations"]["model_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no model_id in {node}")) as usize;
        let fault = node["fault"].as_bool().unwrap_or(false);
        assert!(
            out.insert(id, (parent, fault)).is_none(),
            "span {id} sent twice"
        );
        for child in node["subsegments"].as_array().into_iter().flatten() {
            walk(child, Some(id), out);
        }
    }
    let mut out = BTreeMap::new();
    for trace in traces {
        walk(trace, None, &mut out);
    }
    out
}

/// Each header asked for carries its trace's decision and ids: for a
/// sampled trace, Root = the segment's trace id and Parent = the asking
/// span's (sub)segment id; for an unsampled one, `Sampled=0` and the same
/// Root and Parent (the root's id) from every span of the trace. A trace
/// continued from upstream keeps the upstream Root.
fn check_headers(
    model: &[ModelSpan],
    headers: &[(usize, TraceHeader)],
    traces: &[serde_json::Value],
) -> Result<(), TestCaseError> {
    // Each sent span's (sub)segment id and trace id.
    fn walk(node: &serde_json::Value, trace_id: &str, out: &mut BTreeMap<usize, (String, String)>) {
        let n = node["annotations"]["model_id"].as_u64().unwrap() as usize;
        let id = node["id"].as_str().unwrap().to_owned();
        out.insert(n, (id, trace_id.to_owned()));
        for child in node["subsegments"].as_array().into_iter().flatten() {
            walk(child, trace_id, out);
        }
    }
    let mut sent = BTreeMap::new();
    for trace in traces {
        walk(trace, trace["trace_id"].as_str().unwrap(), &mut sent);
    }
    let mut unsampled: BTreeMap<usize, (String, String)> = BTreeMap::new();
    for (i, header) in headers {
        let root = root_of(model, *i);
        let sampled = is_sampled(model, root);
        let root_id = header.root().expect("a Root").to_string();
        let parent = header.parent().expect("a Parent").to_string();
        let expected = if sampled { Sampled::Yes } else { Sampled::No };
        prop_assert_eq!(header.sampled(), expected, "span {}: {}", i, header);
        if model[root].header.is_some() {
            prop_assert_eq!(&root_id, &upstream_trace_id(root), "span {}", i);
        }
        if sampled {
            let (id, trace_id) = &sent[i];
            prop_assert_eq!(&root_id, trace_id, "span {}", i);
            prop_assert_eq!(&parent, id, "span {}", i);
        } else {
            let first = unsampled
                .entry(root)
                .or_insert((root_id.clone(), parent.clone()));
            prop_assert_eq!(&(root_id, parent), &*first, "span {}", i);
        }
    }
    Ok(())
}

/// Where the layer splits traces: tiny thresholds make it send finished
/// subtrees as independent subsegments (before or with their root), which
/// [`InMemoryExporter::traces`] puts back in place. `None`: the default.
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    streaming_threshold: Option<usize>,
    max_held: Option<usize>,
}

fn limits() -> impl Strategy<Value = Limits> {
    let small = || proptest::option::of(1..6_usize);
    (small(), small()).prop_map(|(streaming_threshold, max_held)| Limits {
        streaming_threshold,
        max_held,
    })
}

/// Runs `ops` under the layer; checks what X-Ray received against the
/// model, and returns it.
fn check(ops: &[Op], limits: Limits) -> Result<BTreeMap<usize, Sent>, TestCaseError> {
    let exporter = InMemoryExporter::new();
    let mut builder = tracing_xray::builder();
    if let Some(n) = limits.streaming_threshold {
        builder = builder.with_streaming_threshold(n);
    }
    if let Some(n) = limits.max_held {
        builder = builder.with_max_held_subsegments(n);
    }
    let layer = builder
        .with_sampler(common::EvenPaths)
        .with_service_name("model")
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(SeesEverything)
            .with(layer.with_filter(filter_fn(|m| m.name() != "hidden"))),
    );
    let (model, headers) = run(ops, &dispatch);
    xray.flush(Duration::from_secs(10)).unwrap();
    let traces = exporter.traces();
    let received = received(&traces);
    prop_assert_eq!(&received, &expected(&model));
    check_headers(&model, &headers, &traces)?;
    // A root opened with a header continues the upstream trace.
    for trace in &traces {
        let root = trace["annotations"]["model_id"].as_u64().unwrap() as usize;
        if model[root].header.is_some() {
            prop_assert_eq!(&trace["trace_id"], &upstream_trace_id(root));
            prop_assert_eq!(&trace["parent_id"], UPSTREAM_PARENT);
        } else {
            prop_assert!(trace.get("parent_id").is_none(), "{}", trace);
        }
    }
    prop_assert_eq!(xray.stats().traces_dropped, 0);
    Ok(received)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sent_trees_match_the_model(
        ops in proptest::collection::vec(op(), 1..64),
        limits in limits(),
    ) {
        check(&ops, limits)?;
    }
}

/// The cases that matter most, spelled out: a sampled trace's span entered
/// inside an unsampled trace, and the other way round, with contextual and
/// explicit children on both sides.
#[test]
fn traces_entered_inside_each_other_stay_apart() {
    use Op::*;
    // Visible spans: a root (with an upstream decision, or none) and a
    // child (of the current span, or of the span with this index).
    let root = |header| Root {
        hidden: false,
        header,
    };
    let child = |explicit| Child {
        explicit,
        hidden: false,
    };
    let unsampled_then_sampled = [
        root(None), // 0: sampled
        root(None), // 1: unsampled
        Enter(1),
        child(None), // 2: in 1
        Enter(2),
        Enter(0),
        child(None),    // 3: in 0
        child(Some(2)), // 4: in 1
        Exit,
        child(None),    // 5: in 1
        child(Some(0)), // 6: in 0, while 2 (unsampled) is current
        Child {
            explicit: Some(0),
            hidden: true,
        }, // 7: hidden, in 0
        Enter(7),
        child(None), // 8: in 0, under 0
        Error,       // in 2 (7 is hidden): unsampled, nothing sent
        Enter(8),
        Error,               // in 8
        root(Some(true)),    // 9: sampled (the header decides)
        root(Some(false)),   // 10: unsampled (the header decides)
        child(Some(10)),     // 11: in 10
        child(Some(9)),      // 12: in 9
        Header(3),           // 0's trace, Parent = 3
        Header(4),           // 1's trace: Sampled=0
        Header(5),           // the same as 4's
        Header(7),           // hidden: 0's trace, Parent = 0
        SetParent(0, false), // 0 is decided: no effect
    ];
    let sent = check(&unsampled_then_sampled, Limits::default()).unwrap();
    // The model's answer, by hand: trace 0 whole, nothing of trace 1.
    let by_hand = BTreeMap::from([
        (0, (None, false)),
        (3, (Some(0), false)),
        (6, (Some(0), false)),
        (8, (Some(0), true)),
        (9, (None, false)),
        (12, (Some(9), false)),
    ]);
    assert_eq!(sent, by_hand);
}
