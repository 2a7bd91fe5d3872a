//! Races: one trace built on many threads while parts of it stream out,
//! with flushes and shutdowns in between. Every span carries a unique `n`
//! field (`metadata.tracing.n`), so that the tree received can be checked
//! against the tree made.
//!
//! Races found: spans of an AWS SDK call held back while a long-lived root
//! streamed left without their call, or were lost in Lambda, when another
//! thread streamed in between (the hold-back now happens under the trace
//! buffer's lock); a Lambda flush could return before a top-level span
//! another thread had taken was queued (each top-level span now has a
//! buffer of its own).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{Dispatch, Level};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

const WAIT: Duration = Duration::from_secs(10);

fn builder(exporter: &InMemoryExporter) -> tracing_xray::Builder {
    tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_queue_capacity(1 << 16)
        .with_exporter(exporter.clone())
}

/// One (sub)segment as received.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    parent: Option<String>,
    n: Option<u64>,
    independent: bool,
    value: Value,
}

/// Flattens every document; panics on an id sent twice.
fn nodes_of(docs: &[Value]) -> HashMap<String, Node> {
    let mut nodes = HashMap::new();
    for doc in docs {
        let mut stack: Vec<(&Value, Option<String>, bool)> = vec![(doc, None, true)];
        while let Some((v, parent, top)) = stack.pop() {
            let id = v["id"].as_str().expect("id").to_owned();
            if let Some(subs) = v["subsegments"].as_array() {
                for s in subs {
                    stack.push((s, Some(id.clone()), false));
                }
            }
            let mut own = v.clone();
            own.as_object_mut().unwrap().remove("subsegments");
            let node = Node {
                name: v["name"].as_str().unwrap_or("").to_owned(),
                parent: if top {
                    v["parent_id"].as_str().map(str::to_owned)
                } else {
                    parent
                },
                n: v["metadata"]["tracing"]["n"].as_u64(),
                independent: top && v.get("type").is_some(),
                value: own,
            };
            if let Some(old) = nodes.insert(id.clone(), node) {
                panic!("id {id} sent twice ({})", old.name);
            }
        }
    }
    nodes
}

/// Independent subsegments whose `parent_id` names no document sent
/// (`known`: ids sent by others, Lambda's function segment).
fn dangling(nodes: &HashMap<String, Node>, known: &[&str]) -> Vec<String> {
    nodes
        .values()
        .filter(|x| x.independent)
        .filter_map(|x| x.parent.clone())
        .filter(|p| !nodes.contains_key(p) && !known.contains(&p.as_str()))
        .collect()
}

/// Of the `try_attempt` spans made (2 per call), how many surely reached
/// no document: a call with `aws.retries = 1` folded both; any other call
/// at most one; each one sent on its own counts once.
fn attempts_lost(nodes: &HashMap<String, Node>) -> i64 {
    let calls = nodes.values().filter(|x| x.name == "DynamoDB").count() as i64;
    let full = nodes
        .values()
        .filter(|x| x.name == "DynamoDB" && x.value["aws"]["retries"] == 1)
        .count() as i64;
    let stray = nodes.values().filter(|x| x.name == "try_attempt").count() as i64;
    2 * calls - 2 * full - (calls - full) - stray
}

/// The received tree as `n` -> parent's `n`; panics on an `n` sent twice.
fn tree_of(nodes: &HashMap<String, Node>) -> BTreeMap<u64, Option<u64>> {
    let mut tree = BTreeMap::new();
    for node in nodes.values() {
        let Some(n) = node.n else { continue };
        let parent = node
            .parent
            .as_ref()
            .and_then(|p| nodes.get(p))
            .and_then(|p| p.n);
        assert!(tree.insert(n, parent).is_none(), "span n={n} sent twice");
    }
    tree
}

/// The spans a test made: `n` -> parent's `n`.
#[derive(Clone, Default)]
struct Model(Arc<Mutex<BTreeMap<u64, Option<u64>>>>, Arc<AtomicU64>);

impl Model {
    fn next(&self, parent: Option<u64>) -> u64 {
        let n = self.1.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.lock().unwrap().insert(n, parent);
        n
    }
    fn get(&self) -> BTreeMap<u64, Option<u64>> {
        self.0.lock().unwrap().clone()
    }
}

fn diff(made: &BTreeMap<u64, Option<u64>>, got: &BTreeMap<u64, Option<u64>>) -> String {
    let missing: Vec<_> = made
        .keys()
        .filter(|k| !got.contains_key(k))
        .take(8)
        .collect();
    let wrong: Vec<_> = made
        .iter()
        .filter(|(k, p)| got.get(k).is_some_and(|g| g != *p))
        .take(8)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !made.contains_key(k))
        .take(8)
        .collect();
    format!(
        "made {} got {}; missing {missing:?}; wrong parent {wrong:?}; extra {extra:?}",
        made.len(),
        got.len()
    )
}

/// Runs `f` on `threads` threads, each with `dispatch` as its default, and
/// joins them within `WAIT` (never hangs the test run).
fn on_threads(threads: usize, dispatch: &Dispatch, f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..threads {
        let d = dispatch.clone();
        let f = f.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tracing::dispatcher::with_default(&d, || {
                    f(t);
                    // The last handle to a span the closure holds closes it
                    // here, where this subscriber is the default.
                    drop(f);
                })
            }));
            let _ = tx.send(r.is_ok());
        });
    }
    drop(tx);
    let deadline = Instant::now() + WAIT;
    for _ in 0..threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(true) => {}
            Ok(false) => panic!("a thread panicked"),
            Err(_) => panic!("threads did not finish within {WAIT:?} (deadlock?)"),
        }
    }
}

/// Runs `round` (numbered from 1) until `seconds` have passed or `max`
/// rounds have run; each pushes what went wrong in it, if anything, to
/// `failures`. Panics with the first 8 bad rounds.
fn rounds(seconds: u64, max: usize, mut round: impl FnMut(usize, &mut Vec<String>)) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut n = 0;
    while n < max && started.elapsed() < Duration::from_secs(seconds) {
        n += 1;
        round(n, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {n} rounds bad:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

/// `common::sdk_get_item` under `parent` (on any thread): the operation
/// carries `n`, its 7 internal spans none.
fn sdk_get_item(parent: &tracing::Span, n: u64) {
    parent.in_scope(|| common::sdk_get_item(Some(n)));
}

// ------------------------------------------------------------------ 1

/// README "Limits": "the spans inside an AWS SDK call still in progress
/// wait for it (up to half those bounds), so that they fold into its
/// subsegment". Here at most 2 calls are in progress at once (14 internal
/// spans, under half of 40), while other threads' spans make the long-lived
/// root stream what it holds. No SDK internal span may leave on its own,
/// and every call keeps `aws.retries = 1`.
#[test]
fn sdk_spans_stay_folded_when_streaming_runs_on_several_threads() {
    fold_rounds(2, 4);
}

/// The same with only two threads: one making SDK calls, one other spans.
#[test]
fn sdk_spans_stay_folded_with_one_other_thread_streaming() {
    fold_rounds(1, 1);
}

fn fold_rounds(sdk_threads: usize, fillers: usize) {
    let started = Instant::now();
    let mut failures = Vec::new();
    for round in 0..60 {
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter).with_max_held_subsegments(40).build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let model = Model::default();
        let ops = Arc::new(Mutex::new(Vec::new()));
        let root_n = model.next(None);
        let root = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("batch", n = root_n)
        });
        let shared_root = root.clone();
        let m = model.clone();
        let o = ops.clone();
        on_threads(sdk_threads + fillers, &dispatch, move |t| {
            for _ in 0..150 {
                if t < sdk_threads {
                    let n = m.next(Some(root_n));
                    o.lock().unwrap().push(n);
                    sdk_get_item(&shared_root, n);
                } else {
                    let n = m.next(Some(root_n));
                    let s = tracing::info_span!(parent: &shared_root, "work", n = n);
                    let c = m.next(Some(n));
                    tracing::info_span!(parent: &s, "step", n = c).in_scope(|| {});
                }
            }
        });
        tracing::dispatcher::with_default(&dispatch, || drop(root));
        xray.flush(WAIT).unwrap();
        let nodes = nodes_of(&exporter.json_documents());
        let stray: Vec<_> = nodes
            .values()
            .filter(|n| n.n.is_none())
            .map(|n| format!("{} (parent {:?})", n.name, n.parent))
            .collect();
        let no_retries: Vec<u64> = nodes
            .values()
            .filter(|x| x.name == "DynamoDB" && x.value["aws"]["retries"] != 1)
            .filter_map(|x| x.n)
            .collect();
        let tree = tree_of(&nodes);
        let made = model.get();
        let dangling = dangling(&nodes, &[]);
        let lost = attempts_lost(&nodes);
        if lost > 0 {
            failures.push(format!(
                "round {round}: at least {lost} try_attempt spans lost"
            ));
        }
        if !stray.is_empty() || !no_retries.is_empty() || tree != made || !dangling.is_empty() {
            failures.push(format!(
                "round {round}: {} SDK internal spans sent on their own, e.g. {:?}; \
                 {} name a parent never sent; calls without aws.retries=1: {:?}; {}",
                stray.len(),
                &stray[..stray.len().min(3)],
                dangling.len(),
                &no_retries[..no_retries.len().min(5)],
                diff(&made, &tree)
            ));
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad rounds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ 2

const INVOKE_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// README "AWS Lambda" / `with_lambda`: each top-level span of an
/// invocation leaves as soon as it ends, and "In AWS Lambda, flush at the
/// end of every invocation" (Lambda may freeze the process right after).
/// A handler whose work ends on several threads at once (tasks spawned
/// `in_current_span`, each a top-level span) and then flushes: `flush`
/// returning Ok must mean the span that ended on this very thread before
/// the call was exported.
#[test]
fn lambda_flush_after_a_top_level_span_ends_includes_it() {
    lambda_flush_rounds(false, 0);
}

/// The same while an SDK call is in progress in another top-level span, so
/// that each top-level span's end holds some of its spans back.
#[test]
fn lambda_flush_with_an_sdk_call_in_progress_includes_the_span() {
    lambda_flush_rounds(true, 0);
}

/// The same while an SDK call holds 400 finished internal spans back (under
/// half of the default 1,000): each top-level span's end then spends a
/// while sorting them out between taking the trace's spans and sending
/// them. A thread whose own top-level span was taken by another thread's
/// end returns at once, and its flush must still wait for that span.
#[test]
fn lambda_flush_while_sdk_spans_are_held_back_includes_the_span() {
    lambda_flush_rounds(false, 400);
}

fn lambda_flush_rounds(sdk: bool, held: usize) {
    let started = Instant::now();
    let exporter = InMemoryExporter::new();
    let layer = builder(&exporter).with_lambda(true).build();
    let xray = layer.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let missed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(4) && rounds < 400 {
        rounds += 1;
        let invoke = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("Lambda runtime invoke", xrayTraceId = INVOKE_HEADER)
        });
        // An SDK call in progress (its own top-level span) whose finished
        // internal spans wait for it.
        let call = tracing::dispatcher::with_default(&dispatch, || {
            (held > 0).then(|| {
                let top = tracing::info_span!(parent: &invoke, "calls");
                let op = tracing::span!(
                    target: "aws_sdk_dynamodb::operation::get_item",
                    parent: &top,
                    Level::DEBUG,
                    "DynamoDB.GetItem",
                    "rpc.service" = "DynamoDB",
                    "rpc.method" = "GetItem",
                    "rpc.system" = "aws-api",
                );
                for _ in 0..held {
                    tracing::span!(target: common::SDK_ORCHESTRATOR, parent: &op, Level::DEBUG, "try_attempt")
                        .in_scope(|| {});
                }
                (top, op)
            })
        });
        let threads = 4;
        let barrier = Arc::new(Barrier::new(threads - usize::from(sdk)));
        let inv = invoke.clone();
        let x = xray.clone();
        let e = exporter.clone();
        let miss = missed.clone();
        let base = rounds as u64 * 1_000_000;
        on_threads(threads, &dispatch, move |t| {
            let n = base + t as u64 * 1000;
            if sdk && t == threads - 1 {
                let top = tracing::info_span!(parent: &inv, "calls", n = n);
                for i in 1..=40u64 {
                    sdk_get_item(&top, n + i);
                }
                return;
            }
            let top = tracing::info_span!(parent: &inv, "part", n = n);
            for c in 1..=30u64 {
                tracing::info_span!(parent: &top, "piece", n = n + c).in_scope(|| {});
            }
            barrier.wait();
            drop(top);
            let flushed = x.flush(WAIT);
            let sent = e
                .json_documents()
                .iter()
                .any(|d| d["metadata"]["tracing"]["n"].as_u64() == Some(n));
            if flushed.is_ok() && !sent {
                miss.lock()
                    .unwrap()
                    .push(format!("round {rounds}: span n={n}"));
            }
        });
        tracing::dispatcher::with_default(&dispatch, || {
            drop(call);
            drop(invoke)
        });
        xray.flush(WAIT).unwrap();
        exporter.reset();
    }
    let missed = missed.lock().unwrap();
    assert!(
        missed.is_empty(),
        "{} of {} flushes returned Ok before the span their thread ended was exported: {:?}",
        missed.len(),
        rounds * 4,
        &missed[..missed.len().min(5)]
    );
}

/// In Lambda, SDK calls on several threads (each call inside a top-level
/// span of its own) while other top-level spans end: every span made is
/// exported once, under its parent, or counted as dropped; no SDK internal
/// span leaves on its own.
#[test]
fn lambda_sdk_calls_on_many_threads_stay_folded() {
    lambda_sdk_rounds(false);
}

/// The worst of it: in Lambda, an SDK internal span can reach no document at
/// all, and `stats()` counts nothing dropped (at least N `try_attempt`
/// spans are missing: a call with `aws.retries = 1` folded both of its two,
/// any other call at most one, and none was sent on its own).
#[test]
fn lambda_sdk_internal_spans_are_never_lost_uncounted() {
    lambda_sdk_rounds(true);
}

fn lambda_sdk_rounds(lost_only: bool) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut rounds = 0;
    let mut lost_rounds = 0;
    while started.elapsed() < Duration::from_secs(4) && rounds < 200 {
        rounds += 1;
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter).with_lambda(true).build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let model = Model::default();
        let invoke = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("Lambda runtime invoke", xrayTraceId = INVOKE_HEADER)
        });
        let inv = invoke.clone();
        let m = model.clone();
        on_threads(4, &dispatch, move |t| {
            for _ in 0..20 {
                let n = m.next(None);
                let top = tracing::info_span!(parent: &inv, "part", n = n);
                if t < 2 {
                    let op = m.next(Some(n));
                    sdk_get_item(&top, op);
                } else {
                    let c = m.next(Some(n));
                    tracing::info_span!(parent: &top, "piece", n = c).in_scope(|| {});
                }
                drop(top);
            }
        });
        tracing::dispatcher::with_default(&dispatch, || drop(invoke));
        xray.flush(WAIT).unwrap();
        let stats = xray.stats();
        let nodes = nodes_of(&exporter.json_documents());
        let stray = nodes.values().filter(|n| n.n.is_none()).count();
        let no_retries = nodes
            .values()
            .filter(|x| x.name == "DynamoDB" && x.value["aws"]["retries"] != 1)
            .count();
        let tree = tree_of(&nodes);
        let made = model.get();
        let dangling = dangling(&nodes, &["53995c3f42cd8ad8"]).len();
        let lost = attempts_lost(&nodes);
        if lost > 0 {
            lost_rounds += 1;
        }
        let bad = if lost_only {
            lost > stats.spans_dropped as i64
        } else {
            stray > 0 || tree != made || stats.spans_dropped > 0 || dangling > 0
        };
        if bad {
            failures.push(format!(
                "round {rounds}: {stray} SDK internal spans on their own, {dangling} naming a \
                 parent never sent; {no_retries} calls without aws.retries=1; at least {lost} \
                 try_attempt spans neither sent nor counted (dropped {}); {}",
                stats.spans_dropped,
                diff(&made, &tree)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {rounds} rounds bad ({lost_rounds} rounds lost try_attempt spans):\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

// ------------------------------------------------------------------ 3

/// Plain spans (no SDK) of one long-lived root, made on many threads with
/// tiny held bounds and streaming thresholds, while another thread flushes
/// over and over: every span arrives exactly once, under the parent it was
/// made under; `subsegments_streamed` is the number of independent
/// documents; nothing is dropped.
#[test]
fn streaming_with_concurrent_flushes_keeps_the_tree() {
    rounds(5, 200, |round, failures| {
        let max_held = 1 + round % 8;
        let threshold = 1 + round % 5;
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter)
            .with_max_held_subsegments(max_held)
            .with_streaming_threshold(threshold)
            .build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let model = Model::default();
        let root_n = model.next(None);
        let root = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("root", n = root_n)
        });
        let r = root.clone();
        let m = model.clone();
        let x = xray.clone();
        let flush_errors = Arc::new(Mutex::new(Vec::new()));
        let fe = flush_errors.clone();
        on_threads(5, &dispatch, move |t| {
            if t == 0 {
                for _ in 0..20 {
                    if let Err(e) = x.flush(WAIT) {
                        fe.lock().unwrap().push(e);
                    }
                }
                return;
            }
            for _ in 0..30 {
                let a = m.next(Some(root_n));
                let sa = tracing::info_span!(parent: &r, "a", n = a);
                for _ in 0..3 {
                    let b = m.next(Some(a));
                    let sb = tracing::info_span!(parent: &sa, "b", n = b);
                    let c = m.next(Some(b));
                    tracing::info_span!(parent: &sb, "c", n = c).in_scope(|| {});
                    drop(sb);
                }
                drop(sa);
            }
        });
        tracing::dispatcher::with_default(&dispatch, || drop(root));
        xray.flush(WAIT).unwrap();
        let stats = xray.stats();
        let docs = exporter.json_documents();
        let nodes = std::panic::catch_unwind(|| nodes_of(&docs));
        let Ok(nodes) = nodes else {
            failures.push(format!("round {round}: an id sent twice"));
            return;
        };
        let tree = std::panic::catch_unwind(|| tree_of(&nodes));
        let Ok(tree) = tree else {
            failures.push(format!("round {round}: an n sent twice"));
            return;
        };
        let made = model.get();
        let independent = docs.iter().filter(|d| d.get("type").is_some()).count() as u64;
        let dangling = dangling(&nodes, &[]);
        if tree != made
            || !dangling.is_empty()
            || stats.spans_dropped != 0
            || stats.subsegments_streamed != independent
            || stats.documents_exported != docs.len() as u64
            || !flush_errors.lock().unwrap().is_empty()
        {
            failures.push(format!(
                "round {round} (held {max_held}, threshold {threshold}): {}; dangling {}; \
                 {stats:?}; {} docs ({independent} independent); flush errors {:?}",
                diff(&made, &tree),
                dangling.len(),
                docs.len(),
                flush_errors.lock().unwrap()
            ));
        }
    });
}

/// A shutdown while spans of a long-lived root end on many threads (tiny
/// bounds, so that parts stream all the time): every span made is either
/// exported or counted in `spans_dropped`, never both, never neither; the
/// shutdown neither hangs nor panics.
#[test]
fn shutdown_during_streaming_accounts_for_every_span() {
    rounds(5, 200, |round, failures| {
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter)
            .with_max_held_subsegments(1 + round % 6)
            .with_streaming_threshold(1 + round % 3)
            .with_queue_capacity(1 + round % 16)
            .build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let model = Model::default();
        let roots: Vec<(u64, tracing::Span)> = (0..2)
            .map(|_| {
                let n = model.next(None);
                let s = tracing::dispatcher::with_default(&dispatch, || {
                    tracing::info_span!("root", n = n)
                });
                (n, s)
            })
            .collect();
        let rs = roots.clone();
        let m = model.clone();
        let x = xray.clone();
        let shutdown = Arc::new(Mutex::new(None));
        let sd = shutdown.clone();
        on_threads(5, &dispatch, move |t| {
            if t == 0 {
                std::thread::sleep(Duration::from_micros(200 + (round as u64 % 7) * 150));
                *sd.lock().unwrap() = Some(x.shutdown(WAIT));
                return;
            }
            for i in 0..60 {
                let (rn, r) = &rs[(t + i) % rs.len()];
                let a = m.next(Some(*rn));
                let sa = tracing::info_span!(parent: r, "a", n = a);
                let b = m.next(Some(a));
                tracing::info_span!(parent: &sa, "b", n = b).in_scope(|| {});
                drop(sa);
            }
        });
        tracing::dispatcher::with_default(&dispatch, || drop(roots));
        let stats = xray.stats();
        let docs = exporter.json_documents();
        let nodes = match std::panic::catch_unwind(|| nodes_of(&docs)) {
            Ok(n) => n,
            Err(_) => {
                failures.push(format!("round {round}: an id sent twice"));
                return;
            }
        };
        let sent = nodes.values().filter(|x| x.n.is_some()).count() as u64;
        let made = model.get().len() as u64;
        let sd = shutdown.lock().unwrap().clone();
        if std::env::var("HUNT_VERBOSE").is_ok() {
            eprintln!(
                "round {round}: made {made} sent {} dropped {}",
                sent, stats.spans_dropped
            );
        }
        if sent + stats.spans_dropped != made
            || sd != Some(Ok(()))
            || stats.documents_exported != docs.len() as u64
        {
            failures.push(format!(
                "round {round}: made {made}, sent {sent}, counted dropped {}; shutdown {sd:?}; \
                 {stats:?}; {} docs",
                stats.spans_dropped,
                docs.len()
            ));
        }
    });
}

// ------------------------------------------------------------------ 4

/// `#[instrument]`-style async work on a tokio multi-thread runtime:
/// futures polled on several workers, `tokio::spawn(fut.in_current_span())`
/// inside them, a long-lived root with tiny bounds and a tiny queue (so
/// that parts are dropped): every span made is exported once or counted in
/// `spans_dropped`; those exported sit under the parent they were made
/// under; `traces_queued` matches the documents' parts.
#[test]
fn tokio_tasks_on_many_workers_account_for_every_span() {
    use tracing::Instrument;
    rounds(5, 60, |round, failures| {
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter)
            .with_max_held_subsegments(1 + round % 7)
            .with_streaming_threshold(1 + round % 4)
            .with_queue_capacity(if round % 2 == 0 { 2 } else { 1 << 12 })
            .build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let model = Model::default();
        let dt = dispatch.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            // Every worker keeps this subscriber as its default (a span
            // whose last handle drops elsewhere would leave its parent open:
            // README "When a trace never arrives").
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dt)))
            .enable_all()
            .build()
            .unwrap();
        let m = model.clone();
        let d = dispatch.clone();
        let done = std::sync::mpsc::channel::<()>();
        let tx = done.0.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || {
                rt.block_on(async move {
                    let root_n = m.next(None);
                    let root = tracing::info_span!("root", n = root_n);
                    let mut tasks = Vec::new();
                    for _ in 0..24 {
                        let a = m.next(Some(root_n));
                        let m = m.clone();
                        let fut = async move {
                            for _ in 0..3 {
                                let b = m.next(Some(a));
                                let m2 = m.clone();
                                let inner = async move {
                                    tokio::task::yield_now().await;
                                    let c = m2.next(Some(b));
                                    let t = tokio::spawn(
                                        async move {
                                            tokio::task::yield_now().await;
                                        }
                                        .instrument(tracing::info_span!("c", n = c))
                                        .in_current_span(),
                                    );
                                    let _ = t.await;
                                }
                                .instrument(tracing::info_span!("b", n = b));
                                inner.await;
                            }
                        }
                        .instrument(tracing::info_span!(parent: &root, "a", n = a));
                        tasks.push(tokio::spawn(fut));
                    }
                    drop(root);
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                drop(rt);
            });
            let _ = tx.send(());
        });
        if done.1.recv_timeout(WAIT).is_err() {
            panic!("round {round}: runtime did not finish within {WAIT:?}");
        }
        xray.flush(WAIT).unwrap();
        let stats = xray.stats();
        let docs = exporter.json_documents();
        let nodes = match std::panic::catch_unwind(|| nodes_of(&docs)) {
            Ok(n) => n,
            Err(_) => {
                failures.push(format!("round {round}: an id sent twice"));
                return;
            }
        };
        let tree = match std::panic::catch_unwind(|| tree_of(&nodes)) {
            Ok(t) => t,
            Err(_) => {
                failures.push(format!("round {round}: an n sent twice"));
                return;
            }
        };
        let made = model.get();
        let wrong: Vec<_> = tree
            .iter()
            .filter(|(k, p)| made.get(k) != Some(p) && p.is_some())
            .take(5)
            .collect();
        let sent = tree.len() as u64;
        if std::env::var("HUNT_VERBOSE").is_ok() {
            eprintln!("round {round}: made {} sent {sent} {stats:?}", made.len());
        }
        if sent + stats.spans_dropped != made.len() as u64
            || !wrong.is_empty()
            || (stats.spans_dropped == 0 && tree != made)
            || stats.documents_exported != docs.len() as u64
        {
            failures.push(format!(
                "round {round}: made {} sent {sent} dropped {}; wrong parents {wrong:?}; {}; {stats:?}",
                made.len(),
                stats.spans_dropped,
                diff(&made, &tree)
            ));
        }
    });
}

// ------------------------------------------------------------------ 5

/// `flush` on several threads while another shuts down, spans ending all
/// the while: each flush returns Ok or `AlreadyShutdown` at once, never a
/// timeout (the worker answers every request it took, or the queue is
/// closed), and nothing hangs.
#[test]
fn flushes_racing_a_shutdown_return_promptly() {
    rounds(4, 150, |round, failures| {
        let exporter = InMemoryExporter::new();
        let layer = builder(&exporter)
            .with_max_held_subsegments(2)
            .with_queue_capacity(1 + round % 4)
            .build();
        let xray = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("root"));
        let r = root.clone();
        let x = xray.clone();
        let bad = Arc::new(Mutex::new(Vec::new()));
        let b = bad.clone();
        on_threads(5, &dispatch, move |t| {
            if t == 0 {
                std::thread::sleep(Duration::from_micros(100 * (round as u64 % 10)));
                let t0 = Instant::now();
                let res = x.shutdown(Duration::from_secs(3));
                if res.is_err() || t0.elapsed() > Duration::from_secs(1) {
                    b.lock()
                        .unwrap()
                        .push(format!("shutdown {res:?} in {:?}", t0.elapsed()));
                }
                return;
            }
            for _ in 0..30 {
                tracing::info_span!(parent: &r, "a").in_scope(|| {});
                let t0 = Instant::now();
                let res = x.flush(Duration::from_secs(3));
                let took = t0.elapsed();
                if !matches!(res, Ok(()) | Err(tracing_xray::FlushError::AlreadyShutdown))
                    || took > Duration::from_secs(1)
                {
                    b.lock().unwrap().push(format!("flush {res:?} in {took:?}"));
                }
            }
        });
        tracing::dispatcher::with_default(&dispatch, || drop(root));
        let bad = bad.lock().unwrap();
        if !bad.is_empty() {
            failures.push(format!("round {round}: {:?}", &bad[..bad.len().min(4)]));
        }
        let stats = xray.stats();
        if stats.traces_queued + stats.traces_dropped == 0 {
            failures.push(format!("round {round}: nothing counted {stats:?}"));
        }
    });
}

// ------------------------------------------------------------------ 6

/// Concurrent Lambda invocations (`run_concurrent`), one per thread, each
/// with its own header, top-level spans ending on helper threads, then a
/// flush: every span lands once, under its own invocation's trace id and
/// function segment, and is exported by the time its invocation's flush
/// returns.
#[test]
fn concurrent_lambda_invocations_keep_their_own_parts() {
    let started = Instant::now();
    let exporter = InMemoryExporter::new();
    let layer = builder(&exporter).with_lambda(true).build();
    let xray = layer.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = bad.clone();
    let e = exporter.clone();
    let x = xray.clone();
    let d = dispatch.clone();
    on_threads(4, &dispatch, move |t| {
        let mut i = 0u64;
        while started.elapsed() < Duration::from_secs(3) && i < 300 {
            i += 1;
            let tag = format!("{:08x}{:08x}{:08x}", t, i, 0xabcd_u32);
            let parent = format!("{:016x}", (t as u64) << 32 | i);
            let header = format!("Root=1-5759e988-{tag};Parent={parent};Sampled=1");
            let invoke =
                tracing::info_span!("Lambda runtime invoke", xrayTraceId = header.as_str());
            let base = (t as u64 * 1_000_000 + i) * 100;
            let helpers: Vec<_> = (0..2u64)
                .map(|h| {
                    let inv = invoke.clone();
                    let d = d.clone();
                    std::thread::spawn(move || {
                        tracing::dispatcher::with_default(&d, || {
                            let n = base + h * 10;
                            let top = tracing::info_span!(parent: &inv, "part", n = n);
                            tracing::info_span!(parent: &top, "piece", n = n + 1).in_scope(|| {});
                            drop(top);
                            drop(inv);
                        })
                    })
                })
                .collect();
            for h in helpers {
                h.join().unwrap();
            }
            drop(invoke);
            if let Err(err) = x.flush(WAIT) {
                b.lock().unwrap().push(format!("flush {err:?}"));
            }
            let docs = e.json_documents();
            let nodes = nodes_of(&docs);
            for h in 0..2u64 {
                let n = base + h * 10;
                let found: Vec<_> = docs
                    .iter()
                    .filter(|d| d["metadata"]["tracing"]["n"].as_u64() == Some(n))
                    .collect();
                if found.len() != 1 {
                    b.lock()
                        .unwrap()
                        .push(format!("n={n} sent {} times", found.len()));
                    continue;
                }
                let d = found[0];
                let trace_ok = d["trace_id"] == format!("1-5759e988-{tag}");
                let parent_ok = d["parent_id"] == parent.as_str();
                // The piece, in the part's document or streamed on its own
                // (another top-level span ended while the part was open).
                let child_ok = nodes
                    .values()
                    .any(|c| c.n == Some(n + 1) && c.parent.as_deref() == d["id"].as_str());
                if !(trace_ok && parent_ok && child_ok) {
                    b.lock().unwrap().push(format!("n={n} misplaced: {d}"));
                }
            }
        }
    });
    let bad = bad.lock().unwrap();
    assert!(
        bad.is_empty(),
        "{} problems: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(xray.stats().spans_dropped, 0);
}
