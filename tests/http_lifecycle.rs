//! The life of an HTTP request through the tower layers (`XrayServerLayer`,
//! `XrayClientLayer`) with real sockets on 127.0.0.1: cancellations,
//! streamed bodies, sizes, errors, headers, URLs and concurrency.
#![cfg(feature = "tower")]

mod common;
#[path = "support/http.rs"]
mod http_support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::get;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use http_support::*;
use hyper::body::Bytes;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::tower::{XrayClientLayer, XrayServerLayer};

/// [`common::traces_on_runtime`], sampling everything.
fn run<F, Fut>(n: usize, body: F) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::traces_on_runtime(AlwaysSample, n, body)
}

/// A response body of 3 chunks, one every 300 ms (a download, a report,
/// server-sent events). With `span_per_chunk`, each chunk is produced inside
/// a span of its own (`render_chunk`), as an `#[instrument]`ed function
/// producing it would open.
struct SlowBody {
    left: u8,
    span_per_chunk: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl SlowBody {
    fn new(span_per_chunk: bool) -> Self {
        SlowBody {
            left: 3,
            span_per_chunk,
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(300))),
        }
    }
}

impl hyper::body::Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        if self.span_per_chunk {
            tracing::info_span!("render_chunk", chunk = self.left).in_scope(|| {});
        }
        self.sleep = Box::pin(tokio::time::sleep(Duration::from_millis(300)));
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
            b"chunk\n",
        )))))
    }
}

/// A call refused by its server, through a stack that boxes its errors (a
/// timeout layer below `XrayClientLayer`): the exception is hyper-util's
/// `client error (Connect)` and, linked below it, what it hides, the
/// refused connection. Only the first text was recorded.
#[test]
fn a_refused_call_records_the_cause_its_error_hides() {
    let traces = run(1, || async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut client = XrayClientLayer::new().layer(BoxErrors(http_client()));
        let job = tracing::info_span!("nightly_sync");
        let request = Request::get(format!("http://{addr}/inventory?token=secret"))
            .body(Empty::new())
            .unwrap();
        let call = job.in_scope(|| client.call(request));
        let outcome = tracing::Instrument::instrument(call, job.clone()).await;
        assert!(outcome.is_err(), "the connection was refused");
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["fault"], true, "{call:#}");
    let messages = common::exception_messages(call);
    assert_eq!(messages[0], "client error (Connect)", "{call:#}");
    assert!(
        messages[1..]
            .iter()
            .any(|m| m.to_lowercase().contains("connection refused")),
        "{messages:?} in {call:#}"
    );
    assert!(!call.to_string().contains("secret"), "{call:#}");
}

/// A call dropped before its response (a timeout around it gave up) is a
/// failed call, as the X-Ray SDKs record one whose deadline passed (Go's
/// client closes the subsegment with `context deadline exceeded`): a fault
/// whose exception says it was cancelled, lasting until it was dropped.
#[test]
fn a_call_a_timeout_drops_is_a_fault() {
    let traces = run(1, || async {
        // Accepts connections (the kernel's backlog) but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let mut client = XrayClientLayer::new().layer(http_client());
        let job = tracing::info_span!("nightly_sync");
        let request = Request::get(format!("http://{addr}/inventory"))
            .body(Empty::new())
            .unwrap();
        let call = job.in_scope(|| client.call(request));
        let call = tracing::Instrument::instrument(call, job.clone());
        let outcome = tokio::time::timeout(Duration::from_millis(300), call).await;
        assert!(outcome.is_err(), "the call timed out");
        drop(job);
        drop(silent);
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["namespace"], "remote", "{call:#}");
    assert!(
        duration(call) >= 0.25,
        "the call lasted until the timeout: {call:#}"
    );
    assert_eq!(call["fault"], true, "{call:#}");
    let messages = common::exception_messages(call);
    assert!(
        messages.iter().any(|m| m.starts_with("cancelled")),
        "{messages:?} in {call:#}"
    );
    assert!(
        traces[0].get("fault").is_none(),
        "the job itself did not fail"
    );
}

/// A request whose client gives up before the response (its own timeout, a
/// closed page) is dropped by hyper: the segment ends then, as an `error`
/// (the client's, as nginx's 499 "client closed request"), with an exception
/// saying so, not as a success without a status.
#[test]
fn a_request_its_client_abandons_is_an_error() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/report",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        ))
        .await;
        let client = http_client();
        let request = Request::get(format!("http://{addr}/report"))
            .body(Empty::new())
            .unwrap();
        let outcome =
            tokio::time::timeout(Duration::from_millis(300), client.request(request)).await;
        assert!(outcome.is_err(), "the client gave up");
        drop(client); // closes the connection
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/report"));
    assert!(
        duration(segment) < 1.5,
        "the server dropped the request when the client left: {segment:#}"
    );
    assert_eq!(segment["error"], true, "{segment:#}");
    assert!(segment.get("fault").is_none(), "{segment:#}");
    assert!(segment["http"].get("response").is_none(), "{segment:#}");
    let messages = common::exception_messages(segment);
    assert!(
        messages.iter().any(|m| m.contains("cancelled")),
        "{messages:?} in {segment:#}"
    );
}

/// A streamed response body (a download, an export, server-sent events) is
/// timed: the segment ends when the body has been sent, as in the X-Ray
/// SDKs (Go's handler segment closes after `ServeHTTP` wrote the body,
/// Node's middleware on the response's `finish`), with the bytes sent as
/// `content_length` (the body had no `Content-Length`). Before, it ended
/// with the response head and lasted a fraction of a millisecond.
#[test]
fn a_streamed_body_is_timed() {
    let waited = Arc::new(Mutex::new(Duration::ZERO));
    let waited2 = waited.clone();
    let traces = run(1, || async move {
        let addr = serve(Router::new().route(
            "/export",
            get(|| async { AxumBody::new(SlowBody::new(false)) }),
        ))
        .await;
        let client = http_client();
        let started = Instant::now();
        let request = Request::get(format!("http://{addr}/export"))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert!(response.headers().get("content-length").is_none());
        response.into_body().collect().await.unwrap();
        *waited2.lock().unwrap() = started.elapsed();
    });
    let client_waited = *waited.lock().unwrap();
    let segment = find(&traces, |t| url_of(t).ends_with("/export"));
    assert!(
        client_waited >= Duration::from_millis(850),
        "{client_waited:?}"
    );
    assert!(
        duration(segment) >= 0.8,
        "the client waited {client_waited:?}, the segment lasted {:.6} s: {segment:#}",
        duration(segment)
    );
    assert_eq!(segment["http"]["response"]["status"], 200, "{segment:#}");
    assert_eq!(
        segment["http"]["response"]["content_length"], 18,
        "3 chunks of 6 bytes: {segment:#}"
    );
    assert!(segment.get("error").is_none() && segment.get("fault").is_none());
}

/// The request's span is current while the body is produced: spans opened
/// for each chunk (an `#[instrument]`ed renderer, a query per page of an
/// export) are subsegments of the request's segment, not traces of their
/// own (before: four traces for one request).
#[test]
fn spans_opened_while_streaming_the_body_are_subsegments() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/export",
            get(|| async { AxumBody::new(SlowBody::new(true)) }),
        ))
        .await;
        let client = http_client();
        let request = Request::get(format!("http://{addr}/export"))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    assert_eq!(traces.len(), 1, "one request, one trace: {traces:#?}");
    let chunks: Vec<_> = traces[0]["subsegments"]
        .as_array()
        .expect("the chunks' spans")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(chunks, ["render_chunk"; 3], "{:#}", traces[0]);
}

/// A client that goes away in the middle of a streamed body leaves a
/// request that was not served: the segment ends then, as an `error` whose
/// exception says so.
#[test]
fn a_body_its_client_abandons_mid_stream_is_an_error() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/export",
            get(|| async { AxumBody::new(SlowBody::new(false)) }),
        ))
        .await;
        let client = http_client();
        let request = Request::get(format!("http://{addr}/export"))
            .body(Empty::new())
            .unwrap();
        let mut body = client.request(request).await.unwrap().into_body();
        // The first chunk, then the client leaves.
        body.frame().await.unwrap().unwrap();
        drop(body);
        drop(client);
        tokio::time::sleep(Duration::from_millis(700)).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/export"));
    assert!(
        duration(segment) < 0.85,
        "ended when the client left: {segment:#}"
    );
    assert_eq!(segment["http"]["response"]["status"], 200, "{segment:#}");
    assert_eq!(segment["error"], true, "{segment:#}");
    let messages = common::exception_messages(segment);
    assert!(
        messages.iter().any(|m| m.contains("went away")),
        "{messages:?} in {segment:#}"
    );
}

/// The response's `Content-Length` goes to `http.response.content_length`,
/// on the server's segment and the client's subsegment (SPEC §1.4; Go, Java
/// and Node record it).
#[test]
fn the_response_content_length_is_recorded() {
    let traces = run(2, || async {
        let addr = serve(Router::new().route("/greeting", get(|| async { "hello" }))).await;
        let mut client = XrayClientLayer::new().layer(http_client());
        let job = tracing::info_span!("job");
        let request = Request::get(format!("http://{addr}/greeting"))
            .body(Empty::new())
            .unwrap();
        let call = job.in_scope(|| client.call(request));
        let response = tracing::Instrument::instrument(call, job).await.unwrap();
        assert_eq!(response.headers()["content-length"], "5");
        response.into_body().collect().await.unwrap();
    });
    let server = find(&traces, |t| {
        t["metadata"]["tracing"]["span_name"] == "http.server"
    });
    let job = find(&traces, |t| t["metadata"]["tracing"]["span_name"] == "job");
    let call = &job["subsegments"][0];
    assert_eq!(call["http"]["response"]["content_length"], 5, "{call:#}");
    assert_eq!(
        server["http"]["response"]["content_length"], 5,
        "{server:#}"
    );
    for doc in [server, call] {
        assert!(
            doc.get("error").is_none() && doc.get("fault").is_none(),
            "{doc:#}"
        );
    }
}

/// A request that spawns work in its span (a receipt e-mail sent after
/// the answer) keeps the span open until the work ends, but its segment ends
/// with the response, as the X-Ray SDKs stamp `end_time` when the response
/// is sent: the request's time is not the background work's. The work's
/// own span is still the segment's subsegment, drawn past its end.
#[test]
fn work_spawned_by_a_request_does_not_stretch_its_segment() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                let work = tracing::info_span!("send_receipt_email");
                tokio::spawn(tracing::Instrument::instrument(
                    tokio::time::sleep(Duration::from_millis(400)),
                    work,
                ));
                "ok"
            }),
        ))
        .await;
        let client = http_client();
        let request = Request::get(format!("http://{addr}/orders"))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/orders"));
    let work = &segment["subsegments"][0];
    assert_eq!(work["name"], "send_receipt_email", "{segment:#}");
    assert!(duration(work) >= 0.35, "{work:#}");
    assert!(
        duration(segment) < 0.2,
        "answered at once, the segment lasts {:.3} s: {segment:#}",
        duration(segment)
    );
    assert!(work["end_time"].as_f64() > segment["end_time"].as_f64());
}

/// A request's segment leaves with its response, though work it spawned in
/// its span keeps the span open (before, it waited for that work: for a
/// task as long as the process, for ever). The work's spans follow as they
/// end, as independent subsegments of the segment, those open at the
/// response (`audit`) and those made after it (`send_receipt_email`) alike:
/// one trace, as the X-Ray SDKs send it.
#[test]
fn work_spawned_by_a_request_follows_its_segment() {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (rt, _default) = common::runtime_for(&dispatch);
    let delivered_at_response = rt.block_on(async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                let audit = tracing::info_span!("audit");
                tokio::spawn(tracing::Instrument::in_current_span(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    drop(audit);
                    let email = tracing::info_span!("send_receipt_email");
                    tracing::Instrument::instrument(
                        tokio::time::sleep(Duration::from_millis(100)),
                        email,
                    )
                    .await;
                }));
                "ok"
            }),
        ))
        .await;
        let response = http_client()
            .request(
                Request::get(format!("http://{addr}/orders"))
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        xray.flush(Duration::from_secs(1)).unwrap();
        let delivered = exporter.json_documents();
        tokio::time::sleep(Duration::from_millis(600)).await;
        delivered
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    xray.flush(Duration::from_secs(5)).unwrap();
    // At the response, the segment alone: the work was still running.
    assert_eq!(delivered_at_response.len(), 1, "{delivered_at_response:#?}");
    let segment = &delivered_at_response[0];
    assert!(segment.get("type").is_none(), "a segment: {segment:#}");
    assert!(segment.get("subsegments").is_none(), "{segment:#}");
    // Then the work, each span a subsegment of the segment.
    let schema = common::schema();
    let documents = exporter.json_documents();
    for doc in &documents {
        common::assert_schema_valid(&schema, doc);
    }
    let parts: Vec<(&str, &str)> = documents[1..]
        .iter()
        .map(|d| {
            assert_eq!(d["type"], "subsegment", "{d:#}");
            assert_eq!(d["trace_id"], segment["trace_id"], "{d:#}");
            (
                d["name"].as_str().unwrap(),
                d["parent_id"].as_str().unwrap(),
            )
        })
        .collect();
    let id = segment["id"].as_str().unwrap();
    assert_eq!(
        parts,
        [("audit", id), ("send_receipt_email", id)],
        "{documents:#?}"
    );
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    assert_eq!(traces[0]["subsegments"].as_array().unwrap().len(), 2);
}

/// A caller that reaches the server directly is known by the connection's
/// address (SPEC §1.4: `client_ip` "from socket or first X-Forwarded-For
/// entry"), which axum's `ConnectInfo` gives and a `map_request` copies into
/// the request's extensions (the server layer's docs); a forwarded header
/// still wins, with `x_forwarded_for`.
#[test]
fn the_peer_address_is_the_client_ip_of_a_direct_caller() {
    let traces = run(2, || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/orders", get(|| async { "ok" }))
            .layer(XrayServerLayer::new())
            .layer(axum::middleware::map_request(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
                 mut request: axum::extract::Request| async move {
                    request.extensions_mut().insert(peer);
                    request
                },
            ));
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let client = http_client();
        for forwarded in [None, Some("203.0.113.7")] {
            let mut request = Request::get(format!("http://{addr}/orders"));
            if let Some(ip) = forwarded {
                request = request.header("x-forwarded-for", ip);
            }
            let response = client.request(request.body(Empty::new()).unwrap()).await;
            response.unwrap().into_body().collect().await.unwrap();
        }
    });
    let requests: Vec<_> = traces.iter().map(|t| &t["http"]["request"]).collect();
    let direct = requests
        .iter()
        .find(|r| r.get("x_forwarded_for").is_none())
        .expect("the direct call");
    assert_eq!(direct["client_ip"], "127.0.0.1", "{direct:#}");
    let forwarded = requests
        .iter()
        .find(|r| r["x_forwarded_for"] == true)
        .expect("the forwarded call");
    assert_eq!(forwarded["client_ip"], "203.0.113.7", "{forwarded:#}");
}

/// A gRPC error travels in a 200, its status in the body's trailers: the
/// segment takes the flags of the HTTP status the code stands for (13,
/// INTERNAL: a fault; 5, NOT_FOUND: an error) and the message as its
/// exception, as tower-http's gRPC classifier would have it.
#[test]
fn a_grpc_error_in_the_trailers_flags_the_segment() {
    let traces = run(2, || async {
        // Over HTTP/1.1, trailers named in `Trailer` (and asked for with
        // `TE: trailers`).
        fn grpc(
            code: &'static str,
            message: &'static str,
        ) -> ([(&'static str, &'static str); 1], AxumBody) {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            trailers.insert("grpc-message", message.parse().unwrap());
            let frames = Frames::new(vec![
                hyper::body::Frame::data(Bytes::from_static(b"\0\0\0\0\0")),
                hyper::body::Frame::trailers(trailers),
            ]);
            (
                [("trailer", "grpc-status, grpc-message")],
                AxumBody::new(frames),
            )
        }
        let addr = serve(
            Router::new()
                .route(
                    "/shop.Cart/Add",
                    axum::routing::post(|| async { grpc("13", "database down") }),
                )
                .route(
                    "/shop.Cart/Get",
                    axum::routing::post(|| async { grpc("5", "no such cart") }),
                ),
        )
        .await;
        let client = http_client();
        for method in ["Add", "Get"] {
            let request = Request::post(format!("http://{addr}/shop.Cart/{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers") // or HTTP/1.1 sends no trailers
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap();
            assert!(body.trailers().is_some(), "the trailers went out");
        }
    });
    let add = find(&traces, |t| url_of(t).ends_with("/Add"));
    let get = find(&traces, |t| url_of(t).ends_with("/Get"));
    assert_eq!(add["http"]["response"]["status"], 200, "{add:#}");
    assert_eq!(add["fault"], true, "{add:#}");
    assert_eq!(common::exception_messages(add), ["database down"]);
    assert_eq!(get["error"], true, "{get:#}");
    assert!(get.get("fault").is_none(), "{get:#}");
    assert_eq!(common::exception_messages(get), ["no such cart"]);
}

/// A tower service that fails every request (as a database-backed service
/// whose error type hyper turns into a closed connection).
#[derive(Clone)]
struct FailingService;

impl<B> Service<Request<B>> for FailingService {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        std::future::ready(Err(std::io::Error::other("database unreachable")))
    }
}

/// A service error is a fault whose exception is the error's text (SPEC
/// §1.6: an error is recorded with its exception), as the client layer
/// records a failed call; before, the segment was a fault with no cause.
#[test]
fn a_service_error_is_a_fault_with_its_text() {
    let traces = run(1, || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = XrayServerLayer::new().layer(FailingService);
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |request| {
                let mut service = service.clone();
                service.call(request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        let request = Request::get(format!("http://{addr}/orders"))
            .body(Empty::new())
            .unwrap();
        assert!(
            http_client().request(request).await.is_err(),
            "connection closed"
        );
    });
    let segment = &traces[0];
    assert_eq!(segment["fault"], true, "{segment:#}");
    assert_eq!(
        common::exception_messages(segment),
        ["database unreachable"],
        "{segment:#}"
    );
}

/// Many concurrent requests on a multi-threaded runtime share one pooled
/// (keep-alive) client: every backend segment's parent is a subsegment of
/// the front segment of its own trace, each front request has its own two
/// calls, and the backend sees `Sampled=1` and a `Parent` = the call.
#[test]
fn concurrent_requests_share_one_pooled_client() {
    let requests = 12;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let traces = run(requests * 3, move || async move {
        let backend = serve(Router::new().route(
            "/b",
            get(move |headers: HeaderMap| {
                let seen = seen2.clone();
                async move {
                    let h = headers["x-amzn-trace-id"].to_str().unwrap().to_owned();
                    seen.lock().unwrap().push(h);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    "b"
                }
            }),
        ))
        .await;
        let client = XrayClientLayer::new()
            .with_downstream_traced(true)
            .layer(http_client());
        let front = serve(Router::new().route(
            "/a",
            get(move || {
                let mut client = client.clone();
                async move {
                    for _ in 0..2 {
                        let request = Request::get(format!("http://{backend}/b?token=t0p"))
                            .body(Empty::new())
                            .unwrap();
                        let response = client.call(request).await.unwrap();
                        response.into_body().collect().await.unwrap();
                    }
                    "a"
                }
            }),
        ))
        .await;
        let c = http_client();
        let mut tasks = Vec::new();
        for _ in 0..requests {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let request = Request::get(format!("http://{front}/a"))
                    .body(Empty::new())
                    .unwrap();
                c.request(request)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(traces.len(), requests * 3);
    let mut calls = std::collections::HashMap::new();
    for t in traces.iter().filter(|t| url_of(t).ends_with("/a")) {
        let subs = t["subsegments"].as_array().unwrap();
        assert_eq!(subs.len(), 2, "{t:#}");
        for s in subs {
            assert_eq!(s["namespace"], "remote");
            assert_eq!(s["http"]["request"]["traced"], true);
            assert_eq!(s["http"]["response"]["status"], 200);
            calls.insert(s["id"].as_str().unwrap().to_owned(), t["trace_id"].clone());
        }
    }
    for t in traces.iter().filter(|t| url_of(t).ends_with("/b")) {
        let parent = t["parent_id"].as_str().unwrap();
        assert_eq!(calls.get(parent), Some(&t["trace_id"]), "{t:#}");
    }
    for h in seen.lock().unwrap().iter() {
        let h = tracing_xray::TraceHeader::parse(h);
        assert_eq!(h.sampled(), tracing_xray::Sampled::Yes);
        assert!(calls.contains_key(&h.parent().unwrap().to_string()));
    }
    assert!(!serde_json::to_string(&traces).unwrap().contains("t0p"));
}

/// Header edge cases at a real server: duplicated headers in differing case
/// (the first wins, as Go's `Header.Get`), a header with only `Parent`
/// (a fresh trace, no foreign `parent_id`), ALB's `Self=` first (dropped,
/// the trace continued), `Sampled=?` answered with the decision (also
/// `Sampled=0` when the sampler says no), and bytes past ASCII.
#[test]
fn incoming_header_edge_cases() {
    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    let answers = Arc::new(Mutex::new(Vec::new()));
    let answers2 = answers.clone();
    let traces = run(5, move || async move {
        let addr = serve(Router::new().route("/x", get(|| async { "x" }))).await;
        let client = http_client();
        let cases: Vec<Vec<(&str, http::HeaderValue)>> = vec![
            vec![
                ("X-AMZN-TRACE-ID", http::HeaderValue::from_str(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1")).unwrap()),
                ("x-amzn-trace-id", http::HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad9;Sampled=1")),
            ],
            vec![("x-amzn-trace-id", http::HeaderValue::from_static("Parent=53995c3f42cd8ad8;Sampled=1"))],
            vec![("x-amzn-trace-id", http::HeaderValue::from_str(&format!("Self=1-67891234-12456789abcdef012345678;Root={ROOT};Parent=53995c3f42cd8ad7;Sampled=1")).unwrap())],
            vec![("x-amzn-trace-id", http::HeaderValue::from_static("Sampled=?"))],
            vec![("x-amzn-trace-id", http::HeaderValue::from_bytes(format!("Root={ROOT};Parent=53995c3f42cd8ad6;Sampled=1;Foo=caf\u{e9}").as_bytes()).unwrap())],
        ];
        for headers in cases {
            let mut request = Request::get(format!("http://{addr}/x"));
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let response = client
                .request(request.body(Empty::new()).unwrap())
                .await
                .unwrap();
            let answer = response.headers()["x-amzn-trace-id"]
                .to_str()
                .unwrap()
                .to_owned();
            answers2.lock().unwrap().push(answer);
        }
    });
    let answers = answers.lock().unwrap().clone();
    let parents: Vec<_> = traces.iter().map(|t| t["parent_id"].clone()).collect();
    assert!(
        parents.contains(&Value::from("53995c3f42cd8ad8")),
        "{parents:?}"
    );
    assert!(
        parents.contains(&Value::from("53995c3f42cd8ad7")),
        "{parents:?}"
    );
    assert!(
        parents.contains(&Value::from("53995c3f42cd8ad6")),
        "{parents:?}"
    );
    assert!(
        !parents.contains(&Value::from("53995c3f42cd8ad9")),
        "{parents:?}"
    );
    assert_eq!(
        parents.iter().filter(|p| p.is_null()).count(),
        2,
        "{parents:?}"
    );
    assert_eq!(answers[0], format!("Root={ROOT}"));
    assert!(answers[3].ends_with(";Sampled=1"), "{answers:?}");
    assert!(
        !answers
            .iter()
            .any(|a| a.contains("Self") || a.contains("Parent"))
    );

    // `Sampled=?` under a sampler that says no is answered `Sampled=0`.
    let answer = Arc::new(Mutex::new(String::new()));
    let answer2 = answer.clone();
    let traces = common::traces_on_runtime(
        tracing_xray::sampling::RateSampler::new(0.0),
        0,
        move || async move {
            let addr = serve(Router::new().route("/x", get(|| async { "x" }))).await;
            let request = Request::get(format!("http://{addr}/x"))
                .header("x-amzn-trace-id", "Sampled=?")
                .body(Empty::new())
                .unwrap();
            let response = http_client().request(request).await.unwrap();
            *answer2.lock().unwrap() = response.headers()["x-amzn-trace-id"]
                .to_str()
                .unwrap()
                .to_owned();
        },
    );
    assert!(traces.is_empty());
    assert!(answer.lock().unwrap().ends_with(";Sampled=0"), "{answer:?}");
}

/// Status flags at a real server: 404 error, 429 throttle+error, 500 fault,
/// 204/304/HEAD no flag.
#[test]
fn status_flags_and_bodiless_responses() {
    use http::StatusCode;
    let traces = run(6, || async {
        let addr = serve(Router::new().route(
            "/s/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(code).unwrap()
                },
            ),
        ))
        .await;
        let client = http_client();
        for (method, code) in [
            ("GET", 404),
            ("GET", 429),
            ("GET", 500),
            ("GET", 204),
            ("GET", 304),
            ("HEAD", 200),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(format!("http://{addr}/s/{code}"))
                .body(Empty::new())
                .unwrap();
            client
                .request(request)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap();
        }
    });
    for t in &traces {
        let status = t["http"]["response"]["status"].as_u64().unwrap();
        let flags = (
            t["error"] == true,
            t["throttle"] == true,
            t["fault"] == true,
        );
        let expect = match status {
            404 => (true, false, false),
            429 => (true, true, false),
            500 => (false, false, true),
            _ => (false, false, false),
        };
        assert_eq!(flags, expect, "{t:#}");
        if t["http"]["request"]["method"] == "HEAD" {
            assert_eq!(status, 200);
        }
    }
}

/// Credentials and queries never reach a document at a real server, for an
/// absolute-form request with user info, a `Host` header with user info, and
/// an IPv6 `Host`; a request without `Host` (HTTP/1.0) records its path.
#[test]
fn request_urls_at_a_real_server() {
    let traces = run(4, || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = serve(Router::new().route("/x", get(|| async { "x" }))).await;
        let raws = [
            "GET http://alice:s3cr3t@shop.example.com:8080/x?token=t0p HTTP/1.1\r\nHost: shop.example.com:8080\r\n\r\n",
            "GET /x?token=t0p HTTP/1.1\r\nHost: bob:s3cr3t@shop.example.com\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: [::1]:9\r\n\r\n",
            "GET /x HTTP/1.0\r\n\r\n",
        ];
        for raw in raws {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1."), "answered");
        }
    });
    let text = serde_json::to_string(&traces).unwrap();
    for secret in ["s3cr3t", "t0p", "alice", "bob"] {
        assert!(!text.contains(secret), "{secret}: {text}");
    }
    let mut urls: Vec<_> = traces.iter().map(url_of).collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "/x",
            "http://[::1]:9/x",
            "http://shop.example.com/x",
            "http://shop.example.com:8080/x"
        ]
    );
}

/// A handler that panics in a real axum server (no `CatchPanicLayer`, with
/// tower-http's `TraceLayer` inside): the segment is a fault with the
/// exception `panicked`, the handler's spans are kept, and the next request
/// on the server is traced normally.
#[test]
fn a_panicking_handler_in_axum() {
    let traces = run(2, || async {
        let addr = serve(
            Router::new()
                .route(
                    "/boom",
                    get(|| async {
                        tracing::info_span!("inner").in_scope(|| {});
                        if std::hint::black_box(true) {
                            panic!("handler bug");
                        }
                        "never"
                    }),
                )
                .route("/ok", get(|| async { "ok" }))
                .layer(tower_http::trace::TraceLayer::new_for_http()),
        )
        .await;
        let client = http_client();
        for path in ["/boom", "/ok"] {
            let request = Request::get(format!("http://{addr}{path}"))
                .body(Empty::new())
                .unwrap();
            let _ = client.request(request).await;
        }
    });
    let boom = find(&traces, |t| url_of(t).ends_with("/boom"));
    assert_eq!(boom["fault"], true);
    assert_eq!(common::exception_messages(boom), ["panicked"]);
    assert_eq!(boom["subsegments"][0]["subsegments"][0]["name"], "inner");
    let ok = find(&traces, |t| url_of(t).ends_with("/ok"));
    assert!(
        ok.get("fault").is_none() && ok.get("cause").is_none(),
        "{ok:#}"
    );
}
