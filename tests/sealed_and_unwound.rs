//! A request's segment sent with its response while work it spawned goes on
//! (its trace "sealed"): the rest of the trace, the annotation budget, AWS
//! SDK calls in flight, known-length bodies with trailers, and the terminal
//! timeline's late parts; and spans a panic unwound through. Each test was a
//! finding of a review of those changes (it says what a user saw before its
//! fix); `..._whole`, `..._once` and the like were checks that held.
#![cfg(feature = "tower")]

mod common;
#[path = "support/http.rs"]
mod http_support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Full};
use http_support::*;
use hyper::body::Bytes;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::tower::XrayServerLayer;
use tracing_xray::{Detectors, XrayHandle};

fn layer_to(exporter: &InMemoryExporter) -> tracing_xray::XrayLayer {
    tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(exporter.clone())
        .build()
}

/// Runs `body` on a 2-worker runtime under one layer (service `web`, always
/// sampling, to memory); after it, waits `settle`, flushes; returns the
/// exporter and the handle.
fn run_with<F, Fut>(settle: Duration, body: F) -> (InMemoryExporter, XrayHandle)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let exporter = InMemoryExporter::new();
    let layer = layer_to(&exporter);
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = common::runtime_for(&dispatch);
    rt.block_on(body());
    std::thread::sleep(settle);
    xray.flush(Duration::from_secs(2)).unwrap();
    rt.shutdown_timeout(Duration::from_secs(1));
    xray.flush(Duration::from_secs(2)).unwrap();
    (exporter, xray)
}

/// Every subsegment (embedded or not) in `docs`, depth first.
fn all_entities(doc: &Value, out: &mut Vec<Value>) {
    out.push(doc.clone());
    if let Some(subs) = doc["subsegments"].as_array() {
        for s in subs {
            all_entities(s, out);
        }
    }
}

fn entities(docs: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for d in docs {
        all_entities(d, &mut out);
    }
    out
}

/// A tower service from a closure (tower's `service_fn`, without tower).
#[derive(Clone)]
struct Fn_<F>(F);

impl<F, Fut, Req, Resp> Service<Req> for Fn_<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Infallible>>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Fut {
        (self.0)(request)
    }
}

fn named<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| e["name"] == name || e["metadata"]["tracing"]["span_name"] == name)
        .collect()
}

// ---------------------------------------------------------------------------

/// A handler answers with a body of known length that also carries
/// trailers (`Full::new(..).with_trailers(..)`: its size hint is exact, as
/// for any body that knows its length, and trailers follow the data, as
/// gRPC's `grpc-status` does). Behind `XrayServerLayer`, the body now ends
/// at its last data byte: the inner body is dropped before its trailers
/// are polled. The user sees the response reach the client with no
/// trailers at all (a gRPC client then fails the call: "missing
/// grpc-status"), and the trace's `grpc-status` is never read; they should
/// see the inner body's frames unchanged, trailers included.
#[test]
fn trailers_after_a_known_length_body_are_not_dropped() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exporter = InMemoryExporter::new();
    let subscriber = tracing_subscriber::registry().with(layer_to(&exporter));
    let _default = tracing::subscriber::set_default(subscriber);
    rt.block_on(async {
        let mut service = XrayServerLayer::new().layer(Fn_(|_: Request<()>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let body = Full::new(Bytes::from_static(b"\0\0\0\0\0"))
                .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
            Ok::<_, Infallible>(http::Response::new(body))
        }));
        let response = service
            .call(Request::post("/svc.Cart/Get").body(()).unwrap())
            .await
            .unwrap();
        let collected = response.into_body().collect().await.unwrap();
        assert!(
            collected.trailers().is_some(),
            "the body's trailers were dropped by XrayBody"
        );
    });
}

/// A request's handler does work with 30 annotations before answering (a
/// child span), and spawns follow-up work in the request's span
/// (`in_current_span`, as the README shows) whose span has 30 more and
/// ends after the response. X-Ray indexes at most 50 annotations per
/// trace, and the README promises "past 50 per trace they move to
/// metadata". The segment now leaves with the response (`seal`), and the
/// worker's per-trace count goes with it (`annotations_used.remove` for a
/// non-detached part): the later part starts from zero again. The user
/// sees 60 annotations indexed in one trace and `annotations_demoted` 0;
/// they should see 50 indexed and 10 demoted.
#[test]
fn the_50_annotation_budget_holds_across_a_segment_sent_with_its_response() {
    let (exporter, xray) = run_with(Duration::from_millis(600), || async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                tracing::info_span!(
                    "before",
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
                    annotation.b10 = 10,
                    annotation.b11 = 11,
                    annotation.b12 = 12,
                    annotation.b13 = 13,
                    annotation.b14 = 14,
                    annotation.b15 = 15,
                    annotation.b16 = 16,
                    annotation.b17 = 17,
                    annotation.b18 = 18,
                    annotation.b19 = 19,
                    annotation.b20 = 20,
                    annotation.b21 = 21,
                    annotation.b22 = 22,
                    annotation.b23 = 23,
                    annotation.b24 = 24,
                    annotation.b25 = 25,
                    annotation.b26 = 26,
                    annotation.b27 = 27,
                    annotation.b28 = 28,
                    annotation.b29 = 29
                )
                .in_scope(|| {});
                tokio::spawn(tracing::Instrument::in_current_span(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    tracing::info_span!(
                        "after",
                        annotation.a00 = 0,
                        annotation.a01 = 1,
                        annotation.a02 = 2,
                        annotation.a03 = 3,
                        annotation.a04 = 4,
                        annotation.a05 = 5,
                        annotation.a06 = 6,
                        annotation.a07 = 7,
                        annotation.a08 = 8,
                        annotation.a09 = 9,
                        annotation.a10 = 10,
                        annotation.a11 = 11,
                        annotation.a12 = 12,
                        annotation.a13 = 13,
                        annotation.a14 = 14,
                        annotation.a15 = 15,
                        annotation.a16 = 16,
                        annotation.a17 = 17,
                        annotation.a18 = 18,
                        annotation.a19 = 19,
                        annotation.a20 = 20,
                        annotation.a21 = 21,
                        annotation.a22 = 22,
                        annotation.a23 = 23,
                        annotation.a24 = 24,
                        annotation.a25 = 25,
                        annotation.a26 = 26,
                        annotation.a27 = 27,
                        annotation.a28 = 28,
                        annotation.a29 = 29
                    )
                    .in_scope(|| {});
                }));
                "ok"
            }),
        ))
        .await;
        get_all(&http_client(), format!("http://{addr}/orders")).await;
    });
    let docs = exporter.json_documents();
    let all = entities(&docs);
    let indexed: usize = all
        .iter()
        .map(|e| e["annotations"].as_object().map_or(0, |a| a.len()))
        .sum();
    assert_eq!(named(&all, "after").len(), 1, "{docs:#?}");
    assert!(
        indexed <= 50,
        "{indexed} annotations indexed in one trace (demoted: {}): {docs:#?}",
        xray.stats().annotations_demoted
    );
}

#[cfg(feature = "aws-sdk")]
/// A fake DynamoDB on 127.0.0.1: the first request gets a 500 at once,
/// the next ones `{}` after `delay`.
async fn fake_dynamodb(delay: Duration) -> SocketAddr {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new().route(
        "/",
        axum::routing::post(move || {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move {
                let status = if n == 1 {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    tokio::time::sleep(delay).await;
                    http::StatusCode::OK
                };
                (
                    status,
                    [
                        ("x-amzn-requestid", format!("REQ-{n}")),
                        ("content-type", "application/x-amz-json-1.0".to_owned()),
                    ],
                    "{}",
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[cfg(feature = "aws-sdk")]
fn dynamodb(addr: SocketAddr) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A handler answers at once and sends a DynamoDB call from spawned work
/// in the request's span (fire-and-forget, `in_current_span`; the AWS SDK
/// with `XrayInterceptor`). The call's first attempt fails (500) and is
/// retried; the response goes out while the call is still in progress.
/// Until the call ends, the AWS SDK's internal spans that already ended
/// (`serialization`, the first `try_attempt` and what ran in it,
/// `finally_attempt`) wait in the trace's buffer, to be folded into the
/// call's one `aws` subsegment. `seal` sends everything the buffer holds
/// with the segment: those internal spans leave as 9 subsegments of their
/// own (independent documents whose `parent_id` names the SDK's `try_op`
/// span, which is folded and never sent: a parent no document holds), and
/// the `DynamoDB` subsegment follows later. The user sees, in X-Ray, stray
/// subsegments named after the SDK's internals hanging off a missing
/// parent; they should see the segment and one `DynamoDB` subsegment, as
/// when the call ends before the response (or before 0aded77).
#[cfg(feature = "aws-sdk")]
#[test]
fn an_aws_sdk_call_in_flight_when_the_response_is_sent_stays_one_subsegment() {
    let (exporter, _xray) = run_with(Duration::from_millis(1500), || async {
        let dynamo = fake_dynamodb(Duration::from_millis(400)).await;
        let client = dynamodb(dynamo);
        let addr = serve(Router::new().route(
            "/orders",
            get(move || {
                let client = client.clone();
                async move {
                    tokio::spawn(tracing::Instrument::in_current_span(async move {
                        client
                            .get_item()
                            .table_name("orders")
                            .key(
                                "id",
                                aws_sdk_dynamodb::types::AttributeValue::S("o-1".into()),
                            )
                            .send()
                            .await
                            .unwrap();
                    }));
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    "ok"
                }
            }),
        ))
        .await;
        get_all(&http_client(), format!("http://{addr}/orders")).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    let docs = exporter.json_documents();
    if std::env::var_os("TRACING_XRAY_PRINT").is_some() {
        eprintln!("{}", serde_json::to_string_pretty(&docs).unwrap());
    }
    let schema = common::schema();
    for doc in &docs {
        common::assert_schema_valid(&schema, doc);
    }
    let all = entities(&docs);
    let names: Vec<&str> = all
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "DynamoDB").count(),
        1,
        "{names:?}"
    );
    assert_eq!(all.len(), 2, "the segment and the call only: {names:?}");
    let call = named(&all, "DynamoDB")[0];
    assert_eq!(call["aws"]["retries"], 1, "{call:#}");
}

#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Two services of one process in one trace, drawn with the timeline: the
/// first (`gateway`) ends and is drawn; the second continues its trace
/// (its caller's header: `set_xray_parent`, as the server layer does for
/// an in-process call) and has more subsegments than its segment keeps
/// (`with_streaming_threshold(1)`; the same happens past the default
/// threshold or 64 KB): the assembler sends them as independent
/// subsegments just before the segment. Since 0aded77 the exporter draws
/// any subsegment of a trace it has drawn before "on its own" as
/// `(continued: ended after its parent was drawn)`, though these did not end
/// after anything was drawn: they belong to the segment that follows. The
/// user sees two one-row `step` waterfalls marked "continued", drawn
/// before the second segment, and then that segment (`app`, from the
/// `orders` root) drawn with one step of three; they should see it drawn
/// whole with its three steps (as before 0aded77, when such parts waited for their
/// segment, the case the exporter's own comment names: "a service that
/// called this one, in the same process").
#[test]
fn parts_sent_before_their_own_segment_are_not_drawn_as_continued() {
    use tracing_xray::XraySpanExt;
    let out = Buffer::default();
    let layer = tracing_xray::builder()
        .with_service_name("app")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_streaming_threshold(1)
        .with_exporter(
            tracing_xray::export::TimelineExporter::to_writer(out.clone())
                .ascii()
                .with_width(100),
        )
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let gateway = tracing::info_span!("gateway");
        let header = gateway.xray_header().unwrap();
        gateway.in_scope(|| tracing::info_span!("route").in_scope(|| {}));
        drop(gateway);
        xray.flush(Duration::from_secs(5)).unwrap();
        let orders = tracing::info_span!("orders");
        assert!(orders.set_xray_parent(&header));
        orders.in_scope(|| {
            for name in ["step_a", "step_b", "step_c"] {
                tracing::info_span!("step", step = name).in_scope(|| {});
            }
        });
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains("(continued"),
        "parts of the second segment drawn as continued before it:\n{text}"
    );
}

/// A guard whose `Drop` does traced work of its own: a transaction that
/// rolls back, a pooled connection given back (`release`, a span).
struct Transaction;

impl Drop for Transaction {
    fn drop(&mut self) {
        tracing::info_span!("rollback").in_scope(|| {
            // The rollback itself succeeds.
        });
    }
}

/// A job's code panics while it holds a `Transaction`; the panic is caught
/// above the job (a worker loop's `catch_unwind`). While the panic
/// unwinds, the transaction's `Drop` rolls back in a span of its own,
/// entered and exited there, which fails in no way. `XrayLayer::on_exit`
/// marks every span exited while `std::thread::panicking()`, so the user
/// sees `rollback` as a fault with the exception `panicked` (X-Ray's
/// console shows the clean-up as the failure); they should see only `job`,
/// which the panic unwound through, as a fault (as the tower layers'
/// `FaultOnPanic` does, remembering whether a panic was already under way
/// when the span was entered).
#[test]
fn a_span_a_drop_runs_during_another_panics_unwinding_is_no_fault() {
    let exporter = InMemoryExporter::new();
    let layer = layer_to(&exporter);
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let caught = std::panic::catch_unwind(|| {
            let _job = tracing::info_span!("job").entered();
            let _tx = Transaction;
            panic!("the job failed");
        });
        assert!(caught.is_err());
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let all = entities(&exporter.json_documents());
    let job = named(&all, "job");
    let rollback = named(&all, "rollback");
    assert_eq!((job.len(), rollback.len()), (1, 1), "{all:#?}");
    assert_eq!(
        job[0]["fault"], true,
        "the panic unwound through `job`: {all:#?}"
    );
    assert!(
        rollback[0].get("fault").is_none() && rollback[0].get("cause").is_none(),
        "the rollback did not fail: {:#}",
        rollback[0]
    );
}

/// Runs an axum app (the server layer outermost) drawing to an ASCII
/// timeline; returns what was drawn
/// (one GET of `path`, then `settle`).
fn draw_requests(router: Router, path: &'static str, settle: Duration) -> String {
    let out = Buffer::default();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(
            tracing_xray::export::TimelineExporter::to_writer(out.clone())
                .ascii()
                .with_width(100),
        )
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = common::runtime_for(&dispatch);
    rt.block_on(async move {
        let addr = serve(router).await;
        get_all(&http_client(), format!("http://{addr}{path}")).await;
        tokio::time::sleep(settle).await;
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    rt.shutdown_timeout(Duration::from_secs(1));
    xray.flush(Duration::from_secs(5)).unwrap();

    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

/// A handler spawns a job in a span of its own under the request
/// (`tokio::spawn(job.instrument(info_span!("job")))`), whose first step
/// (`load`) ends before the response and the rest after. `seal` sends
/// `load` with the segment, as an independent subsegment whose parent,
/// `job`, is still open; the timeline finds no place for it in the
/// segment and keeps it waiting for "another segment of this trace",
/// which never comes; `job`, ending later, is drawn on its own as
/// `(continued…)` without it. The user never sees `load` in the terminal;
/// they should see it, under `job`.
#[test]
fn a_step_of_spawned_work_that_ended_before_the_response_is_drawn() {
    let text = draw_requests(
        Router::new().route(
            "/orders",
            get(|| async {
                tokio::spawn(tracing::Instrument::instrument(
                    async {
                        tracing::info_span!("load").in_scope(|| {});
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    },
                    tracing::info_span!("job"),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
                "ok"
            }),
        ),
        "/orders",
        Duration::from_millis(600),
    );
    assert!(text.contains("job"), "{text}");
    assert!(text.contains("load"), "`load` is never drawn:\n{text}");
}

/// The same request as above, in memory: `InMemoryExporter::traces()`
/// ("the trace was sent as several documents... and is seen whole here")
/// puts the trace together from the segment, `load` (sent with the
/// segment, its parent still open) and `job` (sent when it ended).
#[test]
fn in_memory_traces_assemble_a_sealed_trace_whole() {
    let (exporter, _xray) = run_with(Duration::from_millis(600), || async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                tokio::spawn(tracing::Instrument::instrument(
                    async {
                        tracing::info_span!("load").in_scope(|| {});
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    },
                    tracing::info_span!("job"),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
                "ok"
            }),
        ))
        .await;
        get_all(&http_client(), format!("http://{addr}/orders")).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    });
    let schema = common::schema();
    for doc in exporter.json_documents() {
        common::assert_schema_valid(&schema, &doc);
    }
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let job = &traces[0]["subsegments"][0];
    assert_eq!(job["name"], "job", "{traces:#?}");
    assert_eq!(job["subsegments"][0]["name"], "load", "{traces:#?}");
}

/// An axum handler behind `XrayServerLayer` panics (no `CatchPanicLayer`:
/// hyper's connection task dies, tokio catches the panic, the client sees
/// the connection closed). The segment should be a fault with the exception
/// `panicked` (the tower module's table: "`xray.fault`: true when the
/// service ... panics"; `otel.status_message`: "`panicked`"), and no
/// client-side `error`: nothing was cancelled. tokio drops the task's
/// future after its `catch_unwind` returned, when `std::thread::panicking()`
/// is false again, so `XrayServerFuture`'s drop takes it for a cancelled
/// request: it records `xray.error` and overwrites the exception with "the
/// request was cancelled before its response was ready".
#[test]
fn a_handler_that_panics_under_tokio_is_a_panic_not_a_cancellation() {
    let (exporter, _xray) = run_with(Duration::from_millis(200), || async {
        let addr = serve(Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("the handler failed");
                }
                "never"
            }),
        ))
        .await;
        let request = Request::get(format!("http://{addr}/boom"))
            .body(Empty::new())
            .unwrap();
        assert!(http_client().request(request).await.is_err());
    });
    let docs = exporter.json_documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let segment = &docs[0];
    assert_eq!(segment["fault"], true, "{segment:#}");
    assert_eq!(
        common::exception_messages(segment),
        ["panicked"],
        "{segment:#}"
    );
    assert!(
        segment.get("error").is_none(),
        "nothing was cancelled: {segment:#}"
    );
}

/// A value whose `Debug` panics (a bug in the application's type).
struct PanicsInDebug;

impl std::fmt::Debug for PanicsInDebug {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Debug of PanicsInDebug")
    }
}

/// Run by [`a_panic_while_the_fmt_layer_holds_a_spans_lock_does_not_abort`]
/// in a process of its own.
#[test]
#[ignore]
fn poisoned_span_lock_then_exit() {
    let exporter = InMemoryExporter::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer_to(&exporter));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("job", detail = tracing::field::Empty);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _entered = span.enter();
            span.record("detail", tracing::field::debug(PanicsInDebug));
        }));
        assert!(caught.is_err(), "the Debug panic is caught");
        // Not closed here: with std's RwLock its close would meet the
        // poisoned lock too (a plain panic, not an abort; before 0aded77
        // as now).
        std::mem::forget(span);
    });
}

/// A user runs `fmt` beside the X-Ray layer (the README's setup), and
/// records on an entered span a value whose `Debug` panics, inside a
/// `catch_unwind` (a job runner isolating one job). `fmt` formats the
/// value while it holds the span's extensions lock (std's `RwLock`), so
/// the panic poisons it. As the panic unwinds through the span's guard,
/// the new `XrayLayer::on_exit` (`unwound`) calls `extensions_mut()`,
/// which panics on the poisoned lock ("Mutex poisoned") while the first
/// panic unwinds: the process aborts (`catch_unwind` never returns).
/// Before 0aded77 `on_exit` did nothing and the panic was caught; the user
/// should see the same (the fault mark skipped when the lock is poisoned).
#[test]
fn a_panic_while_the_fmt_layer_holds_a_spans_lock_does_not_abort() {
    common::run_alone("poisoned_span_lock_then_exit");
}

/// Two `XrayLayer`s in one subscriber (each to its own memory), a request
/// whose spawned work outlives its response: the segment and the work's
/// subsegment are each sent once in all, and the work names the segment.
#[test]
fn two_layers_send_a_sealed_trace_once() {
    let (a, b) = (InMemoryExporter::new(), InMemoryExporter::new());
    let (la, lb) = (layer_to(&a), layer_to(&b));
    let (ha, hb) = (la.handle(), lb.handle());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(la).with(lb));
    let (rt, _default) = common::runtime_for(&dispatch);
    rt.block_on(async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                tokio::spawn(tracing::Instrument::in_current_span(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    tracing::info_span!("late").in_scope(|| {});
                }));
                "ok"
            }),
        ))
        .await;
        get_all(&http_client(), format!("http://{addr}/orders")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    ha.flush(Duration::from_secs(2)).unwrap();
    hb.flush(Duration::from_secs(2)).unwrap();
    rt.shutdown_timeout(Duration::from_secs(1));
    let mut docs = a.json_documents();
    docs.extend(b.json_documents());
    let all = entities(&docs);
    assert_eq!(all.len(), 2, "{docs:#?}");
    let late = named(&all, "late")[0];
    let segment = all.iter().find(|e| e["name"] == "web").unwrap();
    assert_eq!(late["parent_id"], segment["id"], "{docs:#?}");
}

// Found by the second review of the scrubbing, a regression of the change
// that made `otel.status_description` a status message: a span records it,
// then panics. Before the fix, `unwound` took the description for no text
// of the span's own and added `panicked`, which then named the exception
// (the description only metadata); a span's own text says more.
#[test]
fn a_panic_through_a_span_with_a_status_description_keeps_the_description() {
    let captured = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("handle").in_scope(|| {
                let caught = common::quietly(|| {
                    std::panic::catch_unwind(|| {
                        let span = tracing::info_span!(
                            "query",
                            otel.status_description = tracing::field::Empty
                        );
                        let _entered = span.enter();
                        span.record("otel.status_description", "db pool exhausted");
                        panic!("unreachable pool state");
                    })
                });
                assert!(caught.is_err());
            })
        },
    );
    let query = common::node(&captured.docs, "query");
    assert_eq!(query["fault"], true, "{query}");
    let messages: Vec<String> = common::exceptions(query)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        messages,
        ["db pool exhausted"],
        "the status description said more than `panicked`, but `panicked` named the exception: {query}"
    );
}

/// The memo slot an id takes among the 1,024 of the layer's lock-free
/// memos (Fibonacci hashing, as `src/unsampled.rs` does).
fn memo_slot(span: &tracing::Span) -> u64 {
    span.id()
        .unwrap()
        .into_u64()
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> (64 - 10)
}

/// Found by a hunt of async applications. README: a span a panic unwinds
/// through (caught above it, as a tokio task's `JoinError`) is a `fault`
/// with the exception `panicked`. Before the fix the layer remembered such
/// a span until its close in a lossy memo of 1,024 slots: another span a
/// panic went through, whose id took the same slot, overwrote the mark,
/// and a long-lived span (a session whose worker task panicked) closed
/// with neither. Here the other span is picked for its slot, so that the
/// test is deterministic.
#[test]
fn a_panic_through_a_long_lived_span_stays_a_fault_whatever_panics_elsewhere() {
    let exporter = InMemoryExporter::new();
    let layer = layer_to(&exporter);
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = common::runtime_for(&dispatch);
    common::quietly(|| {
        rt.block_on(async {
            use tracing::Instrument;
            let session = tracing::info_span!("session");
            let worker = tokio::spawn(async { panic!("worker died") }.instrument(session.clone()));
            assert!(worker.await.is_err());
            let target = memo_slot(&session);
            for tries in 0.. {
                assert!(tries < 10_000_000, "no span id took slot {target}");
                let other = tracing::info_span!("other_request");
                if memo_slot(&other) == target {
                    let task = tokio::spawn(async { panic!("other died") }.instrument(other));
                    assert!(task.await.is_err());
                    break;
                }
            }
            drop(session);
        })
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    xray.flush(Duration::from_secs(10)).unwrap();
    let traces = exporter.traces();
    // The one that panicked, of its name (the spans made to find a slot
    // are traces too).
    let named = |name: &str| -> Value {
        let mut of_name = traces
            .iter()
            .filter(|t| t["metadata"]["tracing"]["span_name"] == name);
        of_name
            .clone()
            .find(|t| t.get("fault").is_some())
            .or_else(|| of_name.next())
            .unwrap_or_else(|| panic!("no {name} in {traces:#?}"))
            .clone()
    };
    assert_eq!(named("other_request")["fault"], true, "{traces:#?}");
    let session = named("session");
    assert_eq!(session["fault"], true, "{session:#}");
    assert_eq!(
        common::exception_messages(&session),
        ["panicked"],
        "{session:#}"
    );
}

/// The annotations of every (sub)segment of `doc`.
fn annotations_in(doc: &Value) -> usize {
    doc["annotations"].as_object().map_or(0, |a| a.len())
        + doc["subsegments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(annotations_in)
            .sum::<usize>()
}

/// Found by a hunt of async applications. README: the 50 annotations of a
/// trace are counted once across its parts, a segment sent with its
/// response included. Here the segment indexes its path (one annotation);
/// work spawned in the request's span opens a span of 50 annotations after
/// the response: 49 fit. Before the fix that late span's part did not know
/// the segment had left, and the worker still kept room for the root's
/// annotation: 48 were indexed, 2 demoted.
#[test]
fn a_span_opened_after_the_response_keeps_no_room_for_the_segment_already_sent() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_indexed_fields(&["url.path"])
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = common::runtime_for(&dispatch);
    let sent = exporter.clone();
    // The spawned work opens its span once the client has the response
    // (so after the segment left), not after a guess at how long that takes.
    let answered = std::sync::Arc::new(tokio::sync::Notify::new());
    let told = answered.clone();
    rt.block_on(async move {
        use tracing::Instrument;
        let app = Router::new().route(
            "/orders",
            get(move || async move {
                tokio::spawn(
                    async move {
                        told.notified().await;
                        crate::fifty_annotations_root!().in_scope(|| {});
                    }
                    .in_current_span(),
                );
                "ok"
            }),
        );
        let addr = serve(app).await;
        get_all(&http_client(), format!("http://{addr}/orders")).await;
        // A permit is kept if the work is not waiting yet.
        answered.notify_one();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sent.len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    xray.flush(Duration::from_secs(10)).unwrap();
    let docs = exporter.json_documents();
    assert_eq!(docs.len(), 2, "the segment, then the late span: {docs:#?}");
    let segment = docs.iter().find(|d| d["type"] != "subsegment").unwrap();
    assert_eq!(annotations_in(segment), 1, "{segment:#}");
    let indexed: usize = docs.iter().map(annotations_in).sum();
    let stats = xray.stats();
    assert_eq!((indexed, stats.annotations_demoted), (50, 1), "{stats:?}");
}

/// Enters `span` and panics, caught: the panic unwinds through it.
fn panic_through(span: &tracing::Span) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _e = span.enter();
        panic!("boom");
    }));
}

/// Found by a review of the hunts' fixes (`UnwoundIds`). An id could be
/// held twice: in its slot AND in the
/// overflow list. Span A's slot is held by B (both unwound by a panic), so
/// A goes to the list; B closes, freeing the slot; a second panic unwinds
/// through A (a long-lived span entered again, as a task's span is on each
/// poll) and `insert` takes the now empty slot, never looking at the list.
/// A's close removes the slot entry and returns: the list keeps A's id
/// forever. Consequences: (1) `overflow_len` never goes back to 0, so every
/// span close of the process takes the overflow mutex and scans the list
/// (the hot-path cost the commit says panics alone pay); (2) when the
/// registry gives A's id to a later span (it reuses an id once the span
/// holding it closed: the module's own doc says so), that span, which no
/// panic touched, closes as a `fault` with the exception `panicked`.
/// Right: a span no panic unwound through is no fault (README: only a span
/// a panic unwinds through is); `insert` must not add an id the list
/// already holds to its slot (or `remove` must clear both).
#[test]
fn an_unwound_id_kept_in_slot_and_list_marks_no_later_span_with_its_id() {
    let exporter = InMemoryExporter::new();
    let layer = layer_to(&exporter);
    let xray = layer.handle();
    // Spans named `filler` take ids from the registry but never reach the
    // layer: they walk a slab slot through its generations.
    let filter = tracing_subscriber::filter::filter_fn(|m| m.name() != "filler");
    // Another layer (writing nowhere) wants every span, so that the
    // registry makes the fillers.
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
    let (reused, detail) = tracing::subscriber::with_default(subscriber, || {
        {
            let a = tracing::info_span!("a_session");
            let a_id = a.id().unwrap().into_u64();
            // B: a live span whose id shares A's slot.
            let mut held = Vec::new();
            let b = loop {
                assert!(held.len() < 200_000, "no id took A's slot");
                let s = tracing::info_span!("b_other");
                if memo_slot(&s) == memo_slot(&a) {
                    break s;
                }
                held.push(s);
            };
            drop(held);
            common::quietly(|| {
                panic_through(&b); // B takes the slot
                panic_through(&a); // A goes to the overflow list
                drop(b); // the slot is free again
                panic_through(&a); // A takes the slot too
            });
            drop(a); // A is a fault; the list still holds A's id
            // Walk A's slab slot through its generations until the
            // registry hands out A's id again, to a span no panic touches.
            // The id the registry hands out just before A's (the same slab
            // slot, one generation earlier), found on a first lap of the
            // generations; on the next lap a span made right after it
            // takes A's id.
            let mut before_a = None;
            let mut prev = 0u64;
            let mut reused = false;
            let mut last = 0;
            for _ in 0..2_000_000u32 {
                let f = tracing::info_span!("filler");
                let id = f.id().unwrap().into_u64();
                last = id;
                if before_a.is_none() && id == a_id {
                    before_a = Some(prev);
                } else if before_a == Some(id) {
                    drop(f);
                    let c = tracing::info_span!("c_innocent");
                    reused = c.id().unwrap().into_u64() == a_id;
                    drop(c);
                    break;
                }
                prev = id;
            }
            (reused, format!("a={a_id:#x} last={last:#x}"))
        }
    });
    assert!(
        reused,
        "the registry did not give A's id to a later span: {detail}"
    );
    xray.flush(Duration::from_secs(10)).unwrap();
    let traces = exporter.traces();
    let of = |name: &str| -> Vec<Value> {
        entities(&traces)
            .into_iter()
            .filter(|e| e["name"] == name || e["metadata"]["tracing"]["span_name"] == name)
            .collect()
    };
    let a = of("a_session");
    assert_eq!(a.len(), 1, "{traces:#?}");
    assert_eq!(a[0]["fault"], true, "A is a fault: {:#}", a[0]);
    let c = of("c_innocent");
    assert_eq!(c.len(), 1, "{traces:#?}");
    assert!(
        c[0].get("fault").is_none() && common::exceptions(&c[0]).is_empty(),
        "no panic went through c_innocent, yet: {:#}",
        c[0]
    );
}
