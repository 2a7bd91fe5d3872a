//! A layer behind a per-layer filter is sometimes called for a span its
//! filter disabled: tracing-subscriber does so when an event is dispatched
//! inside another layer's callback under a global subscriber
//! (tokio-rs/tracing#2704), and never calls it at that span's close. A child
//! of an unsampled trace is remembered in a memo without a lookup; such a
//! span must not stay there, or once the registry hands its id out again
//! (after 8,191 reuses of its slot) the span holding it passes for a child of
//! an unsampled trace, and a sampled trace is lost.
//!
//! Each test installs a global subscriber, so runs in a process of its own.

use std::collections::HashSet;
use std::time::Duration;

use tracing::span::{Attributes, Id};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_xray::XrayHandle;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::{Sampler, SamplingDecision, SamplingRequest};

mod common;
use common::{EvenPaths, in_memory_layer};

/// Requests made after the stale entry: enough for its slot's id to come back.
const REQUESTS: u64 = 9_000;

/// Decides "not sampled", logging as it does.
struct LoggingNeverSample;

impl Sampler for LoggingNeverSample {
    fn sample(&self, _: &SamplingRequest<'_>) -> SamplingDecision {
        tracing::info!("deciding");
        SamplingDecision::not_sampled()
    }
}

/// A layer that logs as it hears of a new span (as a layer formatting a
/// field whose `Debug` logs would).
struct LogsOnNewSpan;

impl<S: tracing::Subscriber> Layer<S> for LogsOnNewSpan {
    fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        tracing::info!("new span");
    }
}

/// With the global subscriber installed (the xray layer's filter lets every
/// target but `a` through): makes `c`, a span of target `a` whose parent is
/// an unsampled root of the xray layer's, while the inner layer logs; then
/// `REQUESTS` requests, each with a sampled root, until one of them reuses
/// `c`'s id. Every sampled request must arrive.
fn requests_after_a_hidden_child(xray: &XrayHandle, out: &InMemoryExporter) {
    let stale = {
        let ra = tracing::info_span!(target: "a", "ra");
        let p = tracing::info_span!(target: "b", parent: &ra, "p",
            xray.trace_header = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
        let c = tracing::info_span!(target: "a", parent: &p, "c");
        c.id().unwrap().into_u64()
    };
    // Two unsampled spans first, so that the sampled root takes `c`'s slot.
    let mut reused = None;
    for i in 0..REQUESTS {
        let _pad1 = tracing::info_span!(target: "b", "pad", url.path = "/1");
        let _pad2 = tracing::info_span!(target: "b", "pad", url.path = "/1");
        let root = tracing::info_span!(target: "b", "request", url.path = "/0", annotation.i = i);
        tracing::info_span!(target: "b", parent: &root, "child").in_scope(|| {});
        if root.id().unwrap().into_u64() == stale {
            reused.get_or_insert(i);
        }
    }
    xray.flush(Duration::from_secs(30)).unwrap();
    let reused = reused.expect("the registry handed the stale id out again");
    let sent: HashSet<u64> = out
        .traces()
        .iter()
        .map(|t| t["annotations"]["i"].as_u64().unwrap())
        .collect();
    let missing: Vec<u64> = (0..REQUESTS).filter(|i| !sent.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "sampled requests never sent: {missing:?} (request {reused}'s root reused id {stale:#x})"
    );
}

/// Two xray layers on disjoint filters: the inner one's sampler logs as it
/// decides `ra`, at `c`'s creation; the outer one is then told of `c`.
#[test]
fn two_layers_a_logging_sampler_loses_no_sampled_trace() {
    common::run_alone("two_layers_a_logging_sampler_child");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn two_layers_a_logging_sampler_child() {
    let (a_out, b_out) = (InMemoryExporter::new(), InMemoryExporter::new());
    let a = in_memory_layer("a", LoggingNeverSample, &a_out);
    let b = in_memory_layer("b", EvenPaths, &b_out);
    let b_handle = b.handle();
    tracing_subscriber::registry()
        .with(a.with_filter(filter_fn(|m| m.target() == "a")))
        .with(b.with_filter(filter_fn(|m| m.target() != "a")))
        .init();
    requests_after_a_hidden_child(&b_handle, &b_out);
}

/// One xray layer (the usual set-up), and another layer, filtered to target
/// `a`, that logs as it hears of `c`: the xray layer is then told of `c`.
#[test]
fn one_layer_and_a_logging_layer_lose_no_sampled_trace() {
    common::run_alone("one_layer_and_a_logging_layer_child");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn one_layer_and_a_logging_layer_child() {
    let out = InMemoryExporter::new();
    let xray = in_memory_layer("b", EvenPaths, &out);
    let handle = xray.handle();
    tracing_subscriber::registry()
        .with(LogsOnNewSpan.with_filter(filter_fn(|m| m.target() == "a")))
        .with(xray.with_filter(filter_fn(|m| m.target() != "a")))
        .init();
    requests_after_a_hidden_child(&handle, &out);
}
