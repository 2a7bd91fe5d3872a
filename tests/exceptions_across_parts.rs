//! The edges of exceptions across time and documents: spans entered while
//! a panic unwinds and left after it, errors passed up across the parts of
//! a trace sent at different times (a long job's, a segment sent with its
//! response), stack frame paths. Each test was a finding of a review of
//! `tests/exceptions_and_flags.rs`'s fixes: what the user writes, what is
//! promised, what happened.

#![cfg(feature = "tower")]

mod common;

use common::{Captured as Run, capture_documents as run_cfg, exceptions, node, quietly};

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

fn run(f: impl FnOnce()) -> Run {
    run_cfg(|b| b, f)
}

fn fault(n: &Value) -> bool {
    n["fault"].as_bool().unwrap_or(false)
}

// ===========================================================================
// 1. on_enter / on_exit: spans entered while a panic unwinds
// ===========================================================================

/// A span entered during an unwinding and left after it was caught hides a
/// later, real unwinding through the same span: no fault.
///
/// The user keeps a long-lived `session` span; a scope guard's `Drop`
/// (run by a first panic's unwinding) makes the session current again by
/// storing `session.clone().entered()` in a thread-local "current context"
/// that the code resets after `catch_unwind` returned. Later a second panic
/// goes through `session.in_scope(..)` and is caught.
///
/// README: "A span a panic unwinds through ... is a `fault`, with the
/// exception `panicked`". The second panic went through the session's
/// guard; the session comes out without a fault (before this change it was
/// one).
///
/// It was: `on_enter` pushes the session's id into the thread-local
/// `ENTERED_WHILE_PANICKING` during the first unwinding; its exit comes
/// when the thread no longer panics, so `on_exit` never removes it (it
/// only looks while panicking). The stale entry then makes the second
/// unwinding's exit look like a `Drop`'s. Any id left there (it is never
/// cleared when the unwinding ends) hides the next unwinding through a span
/// of that id, another subscriber's on the same thread too.
#[test]
fn a_span_entered_while_unwinding_and_left_later_still_faults_on_a_later_panic() {
    use std::cell::RefCell;
    thread_local!(static CURRENT: RefCell<Option<tracing::span::EnteredSpan>> =
        const { RefCell::new(None) });
    struct MakeCurrent(tracing::Span);
    impl Drop for MakeCurrent {
        fn drop(&mut self) {
            let entered = self.0.clone().entered();
            CURRENT.with(|c| *c.borrow_mut() = Some(entered));
        }
    }
    let r = quietly(|| {
        run(|| {
            let session = info_span!("session");
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let _guard = MakeCurrent(session.clone());
                panic!("first");
            }));
            // The context is reset: the session is left, no panic running.
            drop(CURRENT.with(|c| c.borrow_mut().take()));
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                session.in_scope(|| panic!("second"))
            }));
        })
    });
    let session = node(&r.docs, "session");
    assert!(
        fault(session),
        "the second panic went through the session: {session:#}"
    );
}

// ===========================================================================
// 2. Exceptions carried across the parts of a trace
// ===========================================================================

#[derive(Debug)]
struct Boom(String);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Boom {}

#[tracing::instrument(err)]
async fn fetch_prices() -> Result<(), Boom> {
    Err(Boom("price feed timed out".into()))
}

#[tracing::instrument(err, skip_all)]
async fn refresh_cache(
    fetched: tokio::sync::oneshot::Sender<()>,
    go_on: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), Boom> {
    let result = fetch_prices().await;
    let _ = fetched.send(());
    // The request's response goes out meanwhile.
    let _ = go_on.await;
    result
}

type GoOn = std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>;

/// The tasks a handler spawned, for the test to wait for (their spans have
/// closed once they are done).
type Spawned = std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// Spawns `work` (made in the current span) and keeps its handle in `spawned`.
fn spawn_kept<F>(spawned: &Spawned, work: F)
where
    F: std::future::Future + Send + 'static,
{
    let work = tracing::Instrument::in_current_span(work);
    let task = tokio::spawn(async move {
        work.await;
    });
    spawned.lock().unwrap().push(task);
}

/// Waits until every task in `spawned` is done.
async fn join_spawned(spawned: &Spawned) {
    let tasks = std::mem::take(&mut *spawned.lock().unwrap());
    for task in tasks {
        task.await.unwrap();
    }
}

/// A handler that spawns `refresh_cache` in the request's span and answers
/// once its `fetch_prices` step failed.
#[derive(Clone)]
struct Spawning(GoOn, Spawned);
impl tower_service::Service<http::Request<String>> for Spawning {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        let go_on = self.0.lock().unwrap().take().unwrap();
        let spawned = self.1.clone();
        Box::pin(async move {
            let (fetched_tx, fetched_rx) = tokio::sync::oneshot::channel();
            spawn_kept(&spawned, refresh_cache(fetched_tx, go_on));
            let _ = fetched_rx.await;
            Ok(http::Response::new("accepted".to_owned()))
        })
    }
}

/// Behind `XrayServerLayer`, work spawned in the request's span passes an
/// error up after the response was sent: its exception does not name the
/// exception below it, which left with the segment.
///
/// The user writes a handler that spawns `refresh_cache` (an
/// `#[instrument(err)]` async fn) with `in_current_span`; it calls
/// `fetch_prices` (`#[instrument(err)]`), which fails before the response
/// goes out, and returns that error after.
///
/// README (`&dyn Error` row): "an error recorded again by the spans it
/// passes up through, as nested `#[instrument(err)]` functions do, names
/// the one below as its `cause` (in another document too ...)"; tower
/// section: the segment leaves with the response "and the task's spans
/// follow as they end, as independent subsegments of it". `fetch_prices`
/// left with the segment (an independent subsegment of the still open
/// `refresh_cache`), `refresh_cache` later: its exception has no `cause`.
///
/// It was: `Worker::pack` (src/worker.rs) keeps a top's exceptions
/// for its parent only for a `Parts::Detached` list; the segment's list
/// sent by `LayerInner::seal` (`Parts::Root { parts_follow: true }`) also
/// holds tops whose parents are still open (`fetch_prices` here), and
/// their exceptions are not kept.
#[test]
fn an_error_passed_up_after_the_response_names_its_cause_sent_with_the_segment() {
    use tower_layer::Layer;
    use tower_service::Service;
    let r = run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (go_tx, go_rx) = tokio::sync::oneshot::channel();
            let go_on = std::sync::Arc::new(std::sync::Mutex::new(Some(go_rx)));
            let spawned = Spawned::default();
            let mut service =
                tracing_xray::tower::XrayServerLayer::new().layer(Spawning(go_on, spawned.clone()));
            let _ = service.call(http::Request::new(String::new())).await;
            // The segment is gone; the task goes on and fails.
            let _ = go_tx.send(());
            join_spawned(&spawned).await;
        });
    });
    let fetch = node(&r.docs, "fetch_prices");
    let refresh = node(&r.docs, "refresh_cache");
    assert_eq!(exceptions(refresh).len(), 1, "{refresh:#}");
    assert_eq!(
        exceptions(refresh)[0]["cause"],
        exceptions(fetch)[0]["id"],
        "refresh_cache's error lost its link to fetch_prices': {:#?}",
        r.docs
    );
}

#[tracing::instrument(err)]
fn l3() -> Result<(), Boom> {
    for i in 0..3 {
        info_span!("io", i).in_scope(|| {});
    }
    Err(Boom("disk full".into()))
}

#[tracing::instrument(err)]
fn l2() -> Result<(), Boom> {
    let r = l3();
    for i in 0..3 {
        info_span!("cleanup", i).in_scope(|| {});
    }
    r
}

fn l1() -> Result<(), Boom> {
    info_span!("plain_mid").in_scope(|| {
        let r = l2();
        for i in 0..3 {
            info_span!("after", i).in_scope(|| {});
        }
        r
    })
}

#[tracing::instrument(err, skip_all)]
async fn audit(started: tokio::sync::oneshot::Sender<()>) -> Result<(), Boom> {
    let _ = started.send(());
    // The response goes out meanwhile.
    tokio::task::yield_now().await;
    Err(Boom("audit log unavailable".into()))
}

/// A handler whose spawned `audit` (made in the request's span) fails
/// after the response went out.
#[derive(Clone)]
struct FailsLater(Spawned);
impl tower_service::Service<http::Request<String>> for FailsLater {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        let spawned = self.0.clone();
        Box::pin(async move {
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            spawn_kept(&spawned, audit(started_tx));
            let _ = started_rx.await;
            Ok(http::Response::new("ok".to_owned()))
        })
    }
}

/// Whether a long-lived job's error, recorded after `requests` requests
/// were served (each one's spawned work failing after its response), names
/// the exception its streamed subtree sent earlier.
fn job_links_after(requests: usize) -> (Value, Value, usize) {
    use tower_layer::Layer;
    use tower_service::Service;
    let (layer, xray, exporter) = streaming_layer();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let job = info_span!("job");
        // Streamed while the job goes on: l2's exception waits for the job.
        let failed = job.in_scope(l1);
        xray.flush(Duration::from_secs(10)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let spawned = Spawned::default();
            let mut service =
                tracing_xray::tower::XrayServerLayer::new().layer(FailsLater(spawned.clone()));
            for i in 0..requests {
                let _ = service.call(http::Request::new(String::new())).await;
                join_spawned(&spawned).await;
                if i % 100 == 99 {
                    // Nothing dropped by a full queue.
                    xray.flush(Duration::from_secs(10)).unwrap();
                }
            }
        });
        xray.flush(Duration::from_secs(10)).unwrap();
        job.in_scope(|| {
            if let Err(e) = failed {
                tracing::error!(error = %e);
            }
        });
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let docs = exporter.json_documents();
    let audits = docs.iter().filter(|d| d["name"] == "audit").count();
    let job = docs
        .iter()
        .find(|d| d.get("type").is_none() && d["metadata"]["tracing"]["span_name"] == "job")
        .expect("the job's segment")
        .clone();
    let l2 = node(&docs, "l2").clone();
    (
        exceptions(&job)[0]["cause"].clone(),
        exceptions(&l2)[0]["id"].clone(),
        audits,
    )
}

/// A long-lived job's error loses its link to the exception its streamed
/// subtree sent, once the service has served about a thousand requests
/// whose spawned work failed after the response.
///
/// The user runs a background job (a root with
/// `with_max_held_subsegments`, streaming its finished subtrees) in a web
/// service behind `XrayServerLayer`, whose handlers spawn work (an audit
/// write) in the request's span that sometimes fails after the response.
///
/// README (`&dyn Error` row): the error passed up "names the one below as
/// its `cause` (in another document too: one a long-lived root streamed
/// before it ended)"; the bound the commit gives is 1,024 waiting spans.
/// With 10 requests served meanwhile the job's exception names l2's
/// (control); with 1,100 it has no `cause`, although only one span (the
/// job) ever waited for exceptions it could use.
///
/// It was: `Worker::pack` (src/worker.rs) keeps in
/// `exceptions_below` the exceptions of every streamed top with an
/// exception, keyed by its parent, even when that parent already left
/// (the request's segment, sent with the response): those entries are
/// never taken, fill `MAX_PARTED_TRACES`, and the `clear()` at the bound
/// throws away the entries still awaited.
#[test]
fn exceptions_awaited_by_a_long_job_survive_requests_failing_after_their_response() {
    let (cause, below, audits) = job_links_after(10);
    assert_eq!(audits, 10);
    assert_eq!(cause, below, "control: linked after 10 requests");
    let (cause, below, audits) = job_links_after(1100);
    assert_eq!(audits, 1100);
    assert_eq!(
        cause, below,
        "the job's error lost its link after 1,100 requests"
    );
}

// ===========================================================================
// 4. Stack frame paths
// ===========================================================================

/// Stack frame paths of the given files, forwarded as `log` records.
fn stack_paths(files: &[&'static str]) -> Vec<String> {
    let r = run(|| {
        info_span!("request").in_scope(|| {
            for &file in files {
                let record = tracing_log::log::Record::builder()
                    .level(tracing_log::log::Level::Error)
                    .target("app")
                    .file(Some(file))
                    .line(Some(7))
                    .args(format_args!("failed"))
                    .build();
                tracing_log::format_trace(&record).unwrap();
            }
        });
    });
    exceptions(&r.docs[0])
        .iter()
        .map(|e| e["stack"][0]["path"].as_str().unwrap().to_owned())
        .collect()
}

/// A Windows path written with forward slashes is sent absolute, the
/// user's name and all.
///
/// The user builds on Windows with a tool that hands rustc paths with `/`
/// (MSYS2/MinGW shells, Bazel, CMake-driven builds), or forwards `log`
/// records of a library whose file is such a path:
/// `C:/Users/alice/app/lib.rs`.
///
/// SPEC 1.6: "stackFrame: `path` (relative file path)"; the change's own
/// docs (`relative_unix_path`): "never a home directory's name". The path
/// leaves as `C:/Users/alice/app/lib.rs`.
///
/// It was: `relative_path` (src/assemble.rs) tells a Windows path by
/// `:\` or a leading `\\` only; `C:/...` neither starts with `/` nor
/// contains `:\`, so it is returned as it is.
#[test]
fn a_windows_path_with_forward_slashes_is_sent_relative() {
    let paths = stack_paths(&["C:/Users/alice/app/lib.rs"]);
    assert_eq!(paths.len(), 1);
    assert!(
        !paths[0].contains("alice") && !paths[0].contains(':'),
        "absolute stack path sent: {paths:?}"
    );
}

/// A source file directly in a home directory is sent with the home
/// directory's name.
///
/// The user runs a single-file program from their home directory
/// (`cargo -Zscript ~/report.rs`, rust-script: `file!()` is then the
/// absolute path of the script), or a library's `log` record names such a
/// file: `/home/alice/report.rs`, `C:\Users\alice\report.rs`.
///
/// SPEC 1.6: "`path` (relative file path)"; the change's docs
/// (`relative_unix_path`): "else its last directory and file name (never a
/// home directory's name)". Both leave as `alice/report.rs`: the user's
/// login name, in every trace.
///
/// It was: `relative_unix_path` (src/assemble.rs) keeps the last
/// directory whatever it is; for a file in a home directory that directory
/// is the home directory.
#[test]
fn a_file_in_a_home_directory_is_sent_without_the_users_name() {
    let paths = stack_paths(&["/home/alice/report.rs", r"C:\Users\alice\report.rs"]);
    assert_eq!(paths.len(), 2);
    let named: Vec<&String> = paths.iter().filter(|p| p.contains("alice")).collect();
    assert!(
        named.is_empty(),
        "the home directory's name sent: {named:?}"
    );
}

const SDK: &str = "tracing_xray::aws_sdk";

/// A layer (service `svc`, sampling everything, to memory) whose
/// long-lived roots stream past 2 finished subsegments; its handle and
/// exporter.
fn streaming_layer() -> (
    tracing_xray::XrayLayer,
    tracing_xray::XrayHandle,
    InMemoryExporter,
) {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(exporter.clone())
        .with_max_held_subsegments(2)
        .build();
    let xray = layer.handle();
    (layer, xray, exporter)
}

/// A presign (the interceptor's span, `xray.aws.presigned = true`) inside
/// a long-lived `job` that streams its finished subtrees; inside it, the
/// credentials provider's calls `services` (each the interceptor's span of
/// an AWS call), the first failing with `failure`. The job then fails with
/// the same error. Returns the documents.
fn presign_in_a_streaming_job(services: &[&str], failure: &str) -> Vec<Value> {
    let (layer, xray, exporter) = streaming_layer();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let job = tracing::info_span!("job");
        job.in_scope(|| {
            let presign = tracing::info_span!(
                target: SDK,
                "aws_sdk_call",
                rpc.system = "aws-api",
                rpc.service = "S3",
                rpc.method = "GetObject",
                xray.aws.presigned = true,
            );
            presign.in_scope(|| {
                for (i, service) in services.iter().enumerate() {
                    let call = tracing::info_span!(
                        target: SDK,
                        "aws_sdk_call",
                        rpc.system = "aws-api",
                        rpc.service = *service,
                        rpc.method = "AssumeRole",
                    );
                    call.in_scope(|| {
                        if i == 0 {
                            tracing::error!(error = %failure);
                        }
                    });
                }
            });
            drop(presign);
            for i in 0..4 {
                tracing::info_span!("step", i).in_scope(|| {});
            }
        });
        // The presign's part has left while the job goes on.
        xray.flush(Duration::from_secs(10)).unwrap();
        job.in_scope(|| tracing::error!(error = %failure));
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    exporter.json_documents()
}

fn job_segment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d.get("type").is_none() && d["metadata"]["tracing"]["span_name"] == "job")
        .unwrap_or_else(|| panic!("the job's segment: {docs:#?}"))
}

/// The exceptions of calls made inside a presign that tops a streamed part
/// are lost to the cause links, all but the last call's.
///
/// Found by a second review of this stop's fixes. Before the fix: 6992f60 packs a presign at the top of a part as each of its
/// nested calls on its own (`Assembler::pack` recursing once per call).
/// Each `pack` starts with `self.exceptions.clear()`, and the worker reads
/// `asm.top_exceptions()` once, after the presign's `pack` returns, to keep
/// them for the parent packed later (`Parted::exceptions_below`). So only
/// the last nested call's exceptions wait for the parent: here the
/// credentials provider's first call (`STS`) fails with "credentials
/// refused", a second (`SSO`) succeeds, and the job then fails with the
/// same error; the job's exception has no `cause`, while with the first
/// call alone (control, same code path) it names the STS call's exception.
///
/// Evidence: README "an error that travels up … names, as its `cause`, the
/// exception of the same message nearest below it (in another document
/// too: one a long-lived root streamed earlier)"; the calls are the job's
/// children by 6992f60's own rule ("calls made inside a presign … go to the
/// presign's parent").
///
/// Now: the exceptions of every call of the presign wait for its parent,
/// as if the calls were the part's tops themselves.
#[test]
fn exceptions_of_every_call_inside_a_streamed_presign_reach_its_parent() {
    const FAILURE: &str = "credentials refused by STS";
    // Control: one call inside the presign.
    let docs = presign_in_a_streaming_job(&["STS"], FAILURE);
    let sts = common::node(&docs, "STS");
    let job = job_segment(&docs);
    assert_eq!(
        common::exceptions(job)[0]["cause"],
        common::exceptions(sts)[0]["id"],
        "control: one call inside the presign: {docs:#?}"
    );
    // The failing call, then another one.
    let docs = presign_in_a_streaming_job(&["STS", "SSO"], FAILURE);
    let sts = common::node(&docs, "STS");
    let sts_doc = docs
        .iter()
        .find(|d| d["name"] == "STS")
        .unwrap_or_else(|| panic!("STS sent on its own (a streamed part): {docs:#?}"));
    assert_eq!(sts_doc["type"], "subsegment", "{sts_doc:#}");
    let job = job_segment(&docs);
    assert_eq!(
        common::exceptions(job)[0]["cause"],
        common::exceptions(sts)[0]["id"],
        "the job's error names no cause: the STS call's exception, streamed inside a \
         presign followed by another call, was forgotten: {docs:#?}"
    );
}

/// A presign with no call inside it, at the top of a streamed part, hands
/// the exceptions of the part's previous top to its own parent: a span of
/// another branch then names, as its error's cause, an exception that is
/// not below it.
///
/// Found by a second review of this stop's fixes. Before the fix: `Assembler::pack` returns early for a presign at the top (6992f60
/// kept the early return, now looping over its nested calls) before
/// `self.exceptions.clear()`. With no nested call, nothing is packed, and
/// `top_exceptions()` still holds the previous top's exceptions; the worker
/// stores them in `exceptions_below` under the presign's parent. Here
/// `worker_a`'s child `fetch` fails with "upstream timed out" and the
/// presign made in `worker_b` is the next top of the same part; when
/// `worker_b` later fails with the same message, its exception names
/// `fetch`'s as its `cause`, though `fetch` is in `worker_a`'s subtree.
///
/// Evidence: README "names, as its `cause`, the exception of the same
/// message nearest *below* it"; the presign has no subsegment and nothing
/// below it failed.
///
/// Now: `worker_b`'s exception has no cause (a presign without calls
/// carries nothing up).
#[test]
fn an_empty_presign_at_the_top_of_a_part_carries_no_other_branchs_exception() {
    const FAILURE: &str = "upstream timed out";
    let (layer, xray, exporter) = streaming_layer();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let job = tracing::info_span!("job");
        let (a, b) = job.in_scope(|| {
            (
                tracing::info_span!("worker_a"),
                tracing::info_span!("worker_b"),
            )
        });
        a.in_scope(|| {
            tracing::info_span!("fetch").in_scope(|| tracing::error!(error = %FAILURE));
        });
        b.in_scope(|| {
            tracing::info_span!(
                target: SDK,
                "aws_sdk_call",
                rpc.system = "aws-api",
                rpc.service = "S3",
                rpc.method = "GetObject",
                xray.aws.presigned = true,
            )
            .in_scope(|| {});
        });
        job.in_scope(|| {
            for i in 0..4 {
                tracing::info_span!("step", i).in_scope(|| {});
            }
        });
        xray.flush(Duration::from_secs(10)).unwrap();
        b.in_scope(|| tracing::error!(error = %FAILURE));
        drop(b);
        drop(a);
        drop(job);
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let docs = exporter.json_documents();
    let fetch = common::node(&docs, "fetch");
    let fetch_doc = docs
        .iter()
        .find(|d| d["name"] == "fetch")
        .unwrap_or_else(|| panic!("fetch streamed on its own: {docs:#?}"));
    assert_eq!(fetch_doc["type"], "subsegment", "{fetch_doc:#}");
    let worker_b = common::node(&docs, "worker_b");
    let ex = common::exceptions(worker_b);
    assert_eq!(ex.len(), 1, "{worker_b:#}");
    assert!(
        ex[0].get("cause").is_none(),
        "worker_b's error names {} (fetch's exception, in worker_a's subtree: {}) as its \
         cause: {docs:#?}",
        ex[0]["cause"],
        common::exceptions(fetch)[0]["id"]
    );
}
