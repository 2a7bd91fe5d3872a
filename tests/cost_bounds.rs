//! Work on the application thread that must stay a small constant per
//! span, not grow with the depth of a trace or the work in flight.
//!
//! - In an *unsampled* trace (the path most requests take: X-Ray samples
//!   about 5 %), a new span and an error event used to walk up to the root
//!   once more children of unsampled traces were open than the memo holds
//!   (thousands of requests in flight). The measure is not time but a
//!   count: how many times the layer looks a span up in the registry
//!   (`LookupSpan::span_data`, through a subscriber that wraps the
//!   `Registry` and counts). A sampled span costs the layer a few lookups
//!   at any depth; these tests hold the unsampled path to the same bound.
//! - In Lambda, each top-level span's close used to re-sort the SDK work of
//!   every AWS SDK call still in flight. The measure is the bytes the
//!   application thread allocates per close (a thread-local counting
//!   allocator).

mod common;

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::{Span, info_span};
use tracing_core::span::{Attributes, Current, Id, Record};
use tracing_core::{Event, Interest, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_xray::export::NoopExporter;
use tracing_xray::sampling::{AlwaysSample, NeverSample, Sampler};

/// A `Registry` that counts the lookups made through it.
struct Counting {
    inner: Registry,
    lookups: Arc<AtomicUsize>,
}

impl Subscriber for Counting {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(m)
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.inner.enabled(m)
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        self.inner.new_span(attrs)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        self.inner.record(id, values)
    }
    fn record_follows_from(&self, id: &Id, follows: &Id) {
        self.inner.record_follows_from(id, follows)
    }
    fn event(&self, event: &Event<'_>) {
        self.inner.event(event)
    }
    fn enter(&self, id: &Id) {
        self.inner.enter(id)
    }
    fn exit(&self, id: &Id) {
        self.inner.exit(id)
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }
    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
    fn current_span(&self) -> Current {
        self.inner.current_span()
    }
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        unsafe {
            if id == TypeId::of::<Self>() {
                Some(self as *const Self as *const ())
            } else {
                self.inner.downcast_raw(id)
            }
        }
    }
}

impl<'a> LookupSpan<'a> for Counting {
    type Data = <Registry as LookupSpan<'a>>::Data;
    fn span_data(&'a self, id: &Id) -> Option<Self::Data> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner.span_data(id)
    }
}

/// A dispatch of the layer (deciding with `sampler`) over a counting
/// registry, and the lookup counter.
fn counted(sampler: impl Sampler) -> (tracing::Dispatch, Arc<AtomicUsize>) {
    let lookups = Arc::new(AtomicUsize::new(0));
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(sampler)
        .with_exporter(NoopExporter)
        .build();
    let subscriber = Counting {
        inner: Registry::default(),
        lookups: lookups.clone(),
    }
    .with(layer);
    (tracing::Dispatch::new(subscriber), lookups)
}

/// `requests` requests open at once (an async server's in-flight requests),
/// each a chain of `depth` spans, grown one level per request in turn, as
/// interleaved tasks grow them. Returns the lookups per span made while the
/// last level of every chain was created, then the chains.
fn lookups_per_span_at_depth(
    sampler: impl Sampler,
    requests: usize,
    depth: usize,
    last_level: impl Fn(&Span) -> Span,
) -> f64 {
    let (dispatch, lookups) = counted(sampler);
    tracing::dispatcher::with_default(&dispatch, || {
        let mut chains: Vec<Vec<Span>> = (0..requests)
            .map(|_| vec![info_span!(parent: None, "request")])
            .collect();
        for _ in 1..depth - 1 {
            for chain in &mut chains {
                let next = info_span!(parent: chain.last().unwrap(), "level");
                chain.push(next);
            }
        }
        let before = lookups.load(Ordering::Relaxed);
        for chain in &mut chains {
            let next = last_level(chain.last().unwrap());
            chain.push(next);
        }
        let made = lookups.load(Ordering::Relaxed) - before;
        // Children first, as the registry wants them closed.
        for chain in &mut chains {
            while chain.pop().is_some() {}
        }
        made as f64 / requests as f64
    })
}

/// 2,000 unsampled requests in flight, each 64 spans deep: creating a span
/// costs the layer about 45 registry lookups (a walk from its parent up to
/// the request's root), where it costs 2 at depth 8, and 2 at any depth in
/// a sampled trace. The memo of unsampled spans (`src/unsampled.rs`, 1,024
/// slots) has lost the parent, and `inherit` (`src/layer.rs`) then walks
/// every ancestor, none of which holds data, up to the root.
#[test]
fn a_new_span_of_an_unsampled_request_costs_the_same_at_any_depth() {
    const REQUESTS: usize = 2_000;
    let child = |parent: &Span| info_span!(parent: parent, "level");
    let sampled_deep = lookups_per_span_at_depth(AlwaysSample, REQUESTS, 64, child);
    let unsampled_shallow = lookups_per_span_at_depth(NeverSample, REQUESTS, 8, child);
    let unsampled_deep = lookups_per_span_at_depth(NeverSample, REQUESTS, 64, child);
    println!(
        "lookups per new span: sampled depth 64 {sampled_deep:.1}, \
         unsampled depth 8 {unsampled_shallow:.1}, unsampled depth 64 {unsampled_deep:.1}"
    );
    assert!(
        unsampled_deep <= sampled_deep.max(unsampled_shallow) + 2.0,
        "a new span 64 deep in an unsampled request costs {unsampled_deep:.1} registry \
         lookups ({unsampled_shallow:.1} at depth 8, {sampled_deep:.1} in a sampled trace)"
    );
}

/// The same for an ERROR event (recorded whatever `with_events` says) in
/// an unsampled span the memo has lost: the layer walks up to the root to
/// find no span to record it into.
#[test]
fn an_error_event_in_an_unsampled_request_costs_the_same_at_any_depth() {
    const REQUESTS: usize = 2_000;
    let erroring_child = |parent: &Span| {
        let span = info_span!(parent: parent, "level");
        span.in_scope(|| tracing::error!("failed"));
        span
    };
    let shallow = lookups_per_span_at_depth(NeverSample, REQUESTS, 8, erroring_child);
    let deep = lookups_per_span_at_depth(NeverSample, REQUESTS, 64, erroring_child);
    let sampled = lookups_per_span_at_depth(AlwaysSample, REQUESTS, 64, erroring_child);
    println!(
        "lookups per new span with an error event: unsampled depth 8 {shallow:.1}, \
         unsampled depth 64 {deep:.1}, sampled depth 64 {sampled:.1}"
    );
    assert!(
        deep <= sampled.max(shallow) + 2.0,
        "a span and its error event 64 deep in unsampled requests cost {deep:.1} registry \
         lookups ({shallow:.1} at depth 8, {sampled:.1} in a sampled trace)"
    );
}

// ---- Lambda: a top-level span's close re-sorts the SDK work held back ----

/// Counts the bytes allocated by the current thread (the application's), so
/// that the worker's own allocations do not blur the figure.
struct ThreadBytes;

thread_local! {
    static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get() + bytes));
}

// SAFETY: every call goes unchanged to `System`; the counting touches no
// pointer or layout, and its thread-local needs no destructor.
unsafe impl std::alloc::GlobalAlloc for ThreadBytes {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe {
            count(layout.size());
            std::alloc::System.alloc(layout)
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        unsafe {
            count(new);
            std::alloc::System.realloc(ptr, layout, new)
        }
    }
}

#[global_allocator]
static ALLOCATOR: ThreadBytes = ThreadBytes;

fn allocated_here() -> usize {
    ALLOCATED.with(std::cell::Cell::get)
}

const ORCH: &str = "aws_smithy_runtime::client::orchestrator";

/// One DynamoDB call as aws-sdk-dynamodb opens its spans
/// (`tests/field_conventions.rs`), still in progress: its operation span
/// open, its internal spans done (5 of them).
fn sdk_call_in_flight() -> Span {
    let op = tracing::span!(
        target: "aws_sdk_dynamodb::operation::put_item",
        tracing::Level::DEBUG,
        "DynamoDB.PutItem",
        "rpc.service" = "DynamoDB",
        "rpc.method" = "PutItem",
        "rpc.system" = "aws-api",
    );
    op.in_scope(|| {
        tracing::span!(target: ORCH, tracing::Level::DEBUG, "apply_configuration").in_scope(|| {});
        tracing::span!(target: ORCH, tracing::Level::DEBUG, "try_op").in_scope(|| {
            tracing::span!(target: ORCH, tracing::Level::DEBUG, "serialization").in_scope(|| {});
            tracing::span!(target: ORCH, tracing::Level::DEBUG, "try_attempt").in_scope(|| {
                tracing::span!(target: ORCH, tracing::Level::DEBUG, "deserialization")
                    .in_scope(|| {});
            });
        });
    });
    op
}

/// A Lambda invocation making `calls` AWS SDK calls at once (a handler
/// `join_all`-ing one `PutItem` per record of an SQS batch), each directly
/// under the invocation span. Returns the bytes the application thread
/// allocated per call while the calls ended.
fn bytes_per_call_end_in_lambda(calls: usize) -> usize {
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_lambda(true)
        .with_queue_capacity(1 << 16)
        .with_exporter(NoopExporter)
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let per_call = tracing::subscriber::with_default(subscriber, || {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let invoke = info_span!(
            "Lambda runtime invoke",
            requestId = "r",
            xrayTraceId = header
        );
        invoke.in_scope(|| {
            let in_flight: Vec<Span> = (0..calls).map(|_| sdk_call_in_flight()).collect();
            let before = allocated_here();
            for call in in_flight {
                drop(call);
            }
            (allocated_here() - before) / calls
        })
    });
    xray.flush(std::time::Duration::from_secs(10)).unwrap();
    per_call
}

/// In Lambda every top-level subtree leaves as soon as it ends: its close
/// took the whole list of the invocation's finished spans, and
/// `hold_back_sdk_work` (`src/layer.rs`) sorted out, into two new lists and
/// two hash sets, the SDK work of the calls still in flight, which then went
/// back into the list. With `calls` calls in flight, each call's
/// end moves and rehashes the ~5 × `calls` spans of the others: quadratic
/// per invocation (measured, debug build: 10 calls 1.1 ms, 20: 3.2 ms,
/// 40: 11 ms, 80: 35 ms of the application thread). The bytes allocated per
/// call's end show it without a clock.
#[test]
fn ending_one_of_many_sdk_calls_in_flight_in_lambda_costs_a_constant() {
    let few = bytes_per_call_end_in_lambda(10);
    let many = bytes_per_call_end_in_lambda(80);
    println!("bytes allocated per SDK call's end: 10 in flight {few}, 80 in flight {many}");
    // Twice, plus room for a chunk of spans (4.4 KiB) that a call's end may
    // or may not find in the pool of recycled lists.
    assert!(
        many <= few * 2 + 16 * 1024,
        "with 80 SDK calls in flight, each call's end allocates {many} bytes on the \
         application thread ({few} with 10 in flight)"
    );
}

// ---- A request's segment sent with its response: the SDK work after it ----

/// Requests served through `XrayServerLayer` (feature `tower`).
#[cfg(feature = "tower")]
mod served {
    use super::*;

    /// Where `calls` AWS SDK calls at once are started.
    #[derive(Clone, Copy)]
    enum Start {
        /// In a long-lived root.
        InAJob,
        /// In the work a request left running after its response.
        AfterTheResponse,
        /// In the request's own span, before it answered (all still in
        /// flight when the segment leaves with the response).
        BeforeTheResponse,
    }

    /// `calls` AWS SDK calls at once, started as `start` says: the bytes the
    /// application thread allocates per call while they end.
    fn bytes_per_call_end(start: Start, calls: usize) -> usize {
        let layer = tracing_xray::builder()
            .with_service_name("svc")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(AlwaysSample)
            .with_queue_capacity(1 << 16)
            .with_exporter(NoopExporter)
            .build();
        let xray = layer.handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let per_call = tracing::subscriber::with_default(subscriber, || {
            let in_flight: Vec<Span> = match start {
                Start::BeforeTheResponse => {
                    // Warm the pools.
                    drop(serve_starting_calls(&rt, 1));
                    serve_starting_calls(&rt, calls)
                }
                Start::InAJob | Start::AfterTheResponse => {
                    let work = match start {
                        Start::InAJob => info_span!("job"),
                        _ => common::serve_and_keep_work(&rt, || info_span!("background")),
                    };
                    // Warm the pools.
                    work.in_scope(|| drop(sdk_call_in_flight()));
                    work.in_scope(|| (0..calls).map(|_| sdk_call_in_flight()).collect())
                }
            };
            assert_eq!(in_flight.len(), calls);
            let before = allocated_here();
            for call in in_flight {
                drop(call);
            }
            (allocated_here() - before) / calls
        });
        xray.flush(std::time::Duration::from_secs(10)).unwrap();
        per_call
    }

    thread_local! {
        /// How many SDK calls `start_calls` starts.
        static CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// The SDK calls a handler started in the request's own span,
        /// before it answered, still in flight (the handler runs on the
        /// test's thread: `serve_and_keep_work` blocks on a current-thread
        /// runtime).
        static IN_FLIGHT: std::cell::RefCell<Vec<Span>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn start_calls() -> Span {
        let calls = (0..CALLS.get()).map(|_| sdk_call_in_flight()).collect();
        IN_FLIGHT.set(calls);
        Span::none()
    }

    /// Serves one request whose handler starts `calls` SDK calls in the
    /// request's span and answers; the calls, still in flight.
    fn serve_starting_calls(rt: &tokio::runtime::Runtime, calls: usize) -> Vec<Span> {
        CALLS.set(calls);
        drop(common::serve_and_keep_work(rt, start_calls));
        IN_FLIGHT.take()
    }

    /// Found by a hunt for algorithmic costs: the calls above, started in
    /// the request's span before its segment left with the response, share
    /// its buffer, and each call's end streamed it: `hold_back_sdk_work`
    /// sorted again the spans held back for every other call still in
    /// flight (release build, per call's end: 21 KB with 10 calls, 147 KB
    /// with 80). Now the spans held back wait apart, each subtree for the
    /// span it belongs under, and a call's end looks at its own spans only.
    #[test]
    fn ending_one_of_many_sdk_calls_started_before_the_response_costs_a_constant() {
        let few = bytes_per_call_end(Start::BeforeTheResponse, 10);
        let many = bytes_per_call_end(Start::BeforeTheResponse, 80);
        println!("bytes per SDK call's end, started before the response: {few} (10), {many} (80)");
        assert!(
            many <= few * 2 + 16 * 1024,
            "with 80 SDK calls started before the response, each call's end allocates {many} \
             bytes on the application thread ({few} with 10 in flight)"
        );
    }

    /// The calls above, ended one by one after the response, in another
    /// order than they started: each leaves as one `DynamoDB` subsegment of
    /// the request's segment, its internal spans folded into it, whatever
    /// other calls ended before it and took their own held-back spans. The
    /// middle one makes a second attempt after the response: its two
    /// `try_attempt` spans, one held back since the response, fold into
    /// one retry (a held-back span not released with its call would leave
    /// it with none).
    #[test]
    fn sdk_calls_started_before_the_response_each_fold_their_own_spans() {
        let out = tracing_xray::export::InMemoryExporter::new();
        let layer = tracing_xray::builder()
            .with_service_name("svc")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(AlwaysSample)
            .with_exporter(out.clone())
            .build();
        let xray = layer.handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let mut in_flight = serve_starting_calls(&rt, 3);
            xray.flush(std::time::Duration::from_secs(5)).unwrap();
            assert_eq!(out.json_documents().len(), 1, "the segment alone");
            // The last call first, then one that does more work now.
            drop(in_flight.pop());
            let middle = in_flight.pop().unwrap();
            middle.in_scope(|| {
                tracing::span!(target: ORCH, tracing::Level::DEBUG, "try_attempt").in_scope(|| {});
            });
            drop(in_flight);
            drop(middle);
        });
        xray.flush(std::time::Duration::from_secs(5)).unwrap();
        let docs = out.json_documents();
        let names: Vec<&str> = docs.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(
            names,
            ["svc", "DynamoDB", "DynamoDB", "DynamoDB"],
            "{docs:#?}"
        );
        for call in &docs[1..] {
            assert_eq!(call["parent_id"], docs[0]["id"], "{call:#}");
            assert_eq!(call["type"], "subsegment", "{call:#}");
            assert!(call.get("subsegments").is_none(), "folded: {call:#}");
        }
        // In the order they ended: the last call, the first, the middle.
        let retries: Vec<&serde_json::Value> =
            docs[1..].iter().map(|d| &d["aws"]["retries"]).collect();
        assert_eq!(
            retries,
            [
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &1.into()
            ],
            "{docs:#?}"
        );
    }

    /// What streaming at the top span's end means for the trace: after the
    /// response, the spans under a span the request made before it leave
    /// when that span ends, its subtree whole (README, "How spans map to
    /// X-Ray"), not each as it ends.
    #[test]
    fn after_the_response_work_leaves_as_its_top_span_ends() {
        let out = tracing_xray::export::InMemoryExporter::new();
        let layer = tracing_xray::builder()
            .with_service_name("svc")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(AlwaysSample)
            .with_exporter(out.clone())
            .build();
        let xray = layer.handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let work = common::serve_and_keep_work(&rt, || info_span!("background"));
            work.in_scope(|| info_span!("step").in_scope(|| {}));
            xray.flush(std::time::Duration::from_secs(5)).unwrap();
            let docs = out.json_documents();
            assert_eq!(docs.len(), 1, "the segment alone: {docs:#?}");
            assert_eq!(docs[0]["name"], "svc");
            drop(work);
        });
        xray.flush(std::time::Duration::from_secs(5)).unwrap();
        let docs = out.json_documents();
        assert_eq!(docs.len(), 2, "{docs:#?}");
        assert_eq!(docs[1]["name"], "background");
        assert_eq!(docs[1]["parent_id"], docs[0]["id"]);
        assert_eq!(docs[1]["subsegments"][0]["name"], "step");
    }

    /// Found by a hunt for worst cases on the application thread: a handler
    /// answers at once and goes on in work spawned in the request's span,
    /// which makes `calls` AWS SDK calls at once. Once the segment had left
    /// with the response, every span of the trace that ended streamed the
    /// trace's whole list, and `hold_back_sdk_work` sorted again the ~5 ×
    /// `calls` spans held back for the calls in flight: quadratic per
    /// request (debug build, per call: 10 calls 138 KB, 80 calls 887 KB;
    /// under a long-lived root 2.3 KB either way). Now a subtree made before
    /// the segment left streams as its top span ends, as in Lambda.
    #[test]
    fn ending_one_of_many_sdk_calls_after_the_response_costs_a_constant() {
        let job = bytes_per_call_end(Start::InAJob, 80);
        let few = bytes_per_call_end(Start::AfterTheResponse, 10);
        let many = bytes_per_call_end(Start::AfterTheResponse, 80);
        println!("bytes per SDK call's end: after the response {few} (10), {many} (80); job {job}");
        assert!(
            many <= few * 2 + 16 * 1024,
            "after the response, with 80 SDK calls in flight, each call's end allocates {many} \
             bytes on the application thread ({few} with 10 in flight, {job} in a job)"
        );
    }
}
