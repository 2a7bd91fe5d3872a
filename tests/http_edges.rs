//! The tower layers at the edges of HTTP, with real sockets on 127.0.0.1:
//! bodies of known length, bodies that break after their head, gRPC
//! messages, callers of a dual-stack server, spawned work, tower-http's
//! `TraceLayer` inside. Each test was a finding of a review of the layers'
//! new body handling: it says what a user saw before its fix, and what is
//! expected.
#![cfg(feature = "tower")]

mod common;
#[path = "support/http.rs"]
mod http_support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use http_support::*;
use hyper::body::{Bytes, Frame, SizeHint};
use serde_json::Value;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::tower::XrayServerLayer;

/// Runs `body` on a 2-worker runtime under one layer (service `web`, always
/// sampling, to memory); waits up to `wait` for `n` traces; returns them.
fn run_for<F, Fut>(n: usize, wait: Duration, body: F) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
    rt.block_on(body());
    let deadline = Instant::now() + wait;
    while exporter.traces().len() < n && Instant::now() < deadline {
        xray.flush(Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let traces = exporter.traces();
    rt.shutdown_timeout(Duration::from_secs(1));
    traces
}

fn run<F, Fut>(n: usize, body: F) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_for(n, Duration::from_secs(10), body)
}

/// A body of known length (`size_hint` exact) produced in chunks, that
/// does not override `is_end_stream` (the trait's default, `false`), as a
/// hand-written file or blob body does.
struct KnownLength {
    chunks: std::collections::VecDeque<Bytes>,
    len: u64,
}

impl KnownLength {
    fn new(chunks: &[&'static [u8]]) -> Self {
        KnownLength {
            len: chunks.iter().map(|c| c.len() as u64).sum(),
            chunks: chunks.iter().map(|c| Bytes::from_static(c)).collect(),
        }
    }
}

impl hyper::body::Body for KnownLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// A user's handler returns a body whose length it knows (`size_hint`
/// exact, as a file or blob body reports) without setting `Content-Length`
/// itself; hyper writes that length in the head and, once it has sent that
/// many bytes, drops the body without polling it again (hyper 1.x's h1
/// dispatcher: `can_write_body()` is false). The client receives the whole
/// body. They see every such request marked `error` with the exception "the
/// client went away before the response body was sent"; they should see a
/// successful request (status 200, no error), with `content_length` 10.
#[test]
fn a_body_of_known_length_sent_whole_is_no_cancellation() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/blob",
            get(|| async { AxumBody::new(KnownLength::new(&[b"hello", b"world"])) }),
        ))
        .await;
        let client = http_client();
        let body = get_all(&client, format!("http://{addr}/blob")).await;
        assert_eq!(&body[..], b"helloworld", "the client got it all");
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/blob"));
    assert_eq!(segment["http"]["response"]["status"], 200, "{segment:#}");
    assert!(
        segment.get("error").is_none() && segment.get("cause").is_none(),
        "a body sent whole is no cancellation: {segment:#}"
    );
    assert_eq!(
        segment["http"]["response"]["content_length"], 10,
        "{segment:#}"
    );
}

fn grpc_reply(
    code: &'static str,
    message: &'static str,
) -> ([(&'static str, &'static str); 1], AxumBody) {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.parse().unwrap());
    trailers.insert("grpc-message", message.parse().unwrap());
    let frames = Frames(
        [
            Frame::data(Bytes::from_static(b"\0\0\0\0\0")),
            Frame::trailers(trailers),
        ]
        .into_iter()
        .collect(),
    );
    (
        [("trailer", "grpc-status, grpc-message")],
        AxumBody::new(frames),
    )
}

/// The segment of one gRPC call to a real server (behind
/// `XrayServerLayer`) answering with `code` and `message` in its trailers.
fn grpc_segment(code: &'static str, message: &'static str) -> Value {
    let traces = run(1, || async move {
        let addr = serve(Router::new().route(
            "/shop.Cart/Get",
            axum::routing::post(move || async move { grpc_reply(code, message) }),
        ))
        .await;
        let client = http_client();
        let request = Request::post(format!("http://{addr}/shop.Cart/Get"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        assert!(body.trailers().is_some());
    });
    find(&traces, |t| url_of(t).ends_with("/Get")).clone()
}

/// A user serves gRPC (tonic) behind `XrayServerLayer`. gRPC sends
/// `grpc-message` percent-encoded (the gRPC HTTP/2 protocol spec:
/// "Status-Message → Percent-Encoded"; tonic encodes spaces and other
/// characters as `%20`...). For `Status::not_found("no such cart")` the
/// trailer reads `grpc-message: no%20such%20cart`. They see the exception
/// message `no%20such%20cart`; they should see `no such cart` (as tonic's
/// own client decodes it).
#[test]
fn a_grpc_message_is_percent_decoded() {
    let segment = grpc_segment("5", "no%20such%20cart%3A%20c-42");
    assert_eq!(segment["error"], true, "{segment:#}");
    assert_eq!(
        common::exception_messages(&segment),
        ["no such cart: c-42"],
        "{segment:#}"
    );
}

/// A gRPC service behind `XrayServerLayer` answers with a code gRPC does
/// not define (`grpc-status: 99`): gRPC's implementations read it as
/// UNKNOWN (tonic's `Code::from_i32`), which stands for HTTP 500. Before
/// the fix, the segment had the exception but no flag (the code stood for
/// no status, so the HTTP 200 said the request succeeded), while the same
/// response through `XrayClientLayer` was a fault. (Found by a hunt.)
#[test]
fn an_undefined_grpc_status_is_a_fault() {
    let segment = grpc_segment("99", "boom%20here");
    assert_eq!(segment["fault"], true, "{segment:#}");
    assert_eq!(
        common::exception_messages(&segment),
        ["boom here"],
        "{segment:#}"
    );
}

/// A user serves axum on a dual-stack socket (`[::]:8080`, the common way
/// to accept both IPv4 and IPv6) and copies `ConnectInfo`'s address into
/// the request's extensions as `XrayServerLayer`'s docs show. An IPv4
/// caller (127.0.0.1 here) arrives as the IPv4-mapped IPv6 address. They
/// see `client_ip: "::ffff:127.0.0.1"`; they should see `127.0.0.1` (the
/// caller's address, as the X-Ray SDKs and an `X-Forwarded-For` header give
/// it; `IpAddr::to_canonical`).
#[test]
fn an_ipv4_caller_of_a_dual_stack_server_is_recorded_as_ipv4() {
    let traces = run(1, || async {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.set_only_v6(false).unwrap();
        socket
            .bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(16).unwrap();
        socket.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(socket.into()).unwrap();
        let port = listener.local_addr().unwrap().port();
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
        get_all(&client, format!("http://127.0.0.1:{port}/orders")).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/orders"));
    assert_eq!(
        segment["http"]["request"]["client_ip"], "127.0.0.1",
        "{segment:#}"
    );
}

/// A user's handler answers at once and spawns follow-up work in the
/// request's span (`tokio::spawn(work.in_current_span())`, the pattern the
/// README now says "does not stretch the segment"). The segment's
/// `end_time` is the response's, but the segment is not *sent* until the
/// spawned work ends: with work of 3 s, a flush 1 s after the response
/// delivers nothing, and for a task that runs for the process's life the
/// request never reaches X-Ray. They should see the segment delivered after
/// the response, as the X-Ray SDKs send it when the response ends (the
/// spawned work's subsegments following on their own).
#[test]
fn a_segment_ended_by_its_response_is_sent_without_waiting_for_spawned_work() {
    let traces = run_for(1, Duration::from_millis(1500), || async {
        let addr = serve(Router::new().route(
            "/orders",
            get(|| async {
                tokio::spawn(tracing::Instrument::in_current_span(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }));
                "ok"
            }),
        ))
        .await;
        let client = http_client();
        get_all(&client, format!("http://{addr}/orders")).await;
    });
    assert_eq!(
        traces.len(),
        1,
        "the request's segment, 1.5 s after its response: {traces:#?}"
    );
}

/// A streamed body: `n` chunks, one every 50 ms.
struct Slow {
    left: u8,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Slow {
    fn new(n: u8) -> Self {
        Slow {
            left: n,
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        }
    }
}

impl hyper::body::Body for Slow {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        self.sleep = Box::pin(tokio::time::sleep(Duration::from_millis(50)));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk\n")))))
    }
}

/// A user follows `XrayServerLayer`'s docs: tower-http's `TraceLayer`
/// inside it (its `request` span, "a subsegment"), and streams a body. The
/// segment's end is now pinned when the inner body reports its end
/// (`XrayBody::poll_frame` → `finish` → `end_now`), but tower-http's
/// `request` span lives in the inner body and closes only when that body is
/// dropped, after. They see the segment's only subsegment end after the
/// segment itself (and the timeline drawing it as work that "outlived" the
/// request, off the critical path); they should see the subsegment within
/// its segment, as before this change (the segment then ended when the
/// inner layer's span closed).
#[test]
fn the_trace_layers_subsegment_ends_within_its_segment() {
    let traces = run(5, || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/export", get(|| async { AxumBody::new(Slow::new(3)) }))
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(XrayServerLayer::new());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = http_client();
        for _ in 0..5 {
            get_all(&client, format!("http://{addr}/export")).await;
        }
    });
    let mut late = Vec::new();
    for segment in &traces {
        let request = &segment["subsegments"][0];
        assert_eq!(request["name"], "request", "{segment:#}");
        let (child, parent) = (
            request["end_time"].as_f64().unwrap(),
            segment["end_time"].as_f64().unwrap(),
        );
        if child > parent {
            late.push(format!("{:.0} µs", (child - parent) * 1e6));
        }
    }
    assert!(
        late.is_empty(),
        "`request` ended after its segment in {} of {} requests, by {late:?}",
        late.len(),
        traces.len()
    );
}

/// A body that sends one chunk, then fails (a database cursor that broke
/// half-way through an export).
struct Failing {
    sent: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Failing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            return Poll::Ready(Some(Err(std::io::Error::other("cursor lost"))));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"row 1\n")))))
    }
}

/// A user streams an export whose body fails half-way (the head, 200, is
/// already sent; hyper then cuts the connection and the client gets an
/// incomplete message). `XrayBody`'s docs say "a body that fails marks it a
/// fault", and the tower module's table "`otel.status_code` = ERROR when ...
/// its body fails". They see a segment with no flag at all (only an
/// exception "the response body failed"): `XrayBody` records
/// `otel.status_code = "ERROR"`, which the conventions ignore on a span
/// whose status is below 400 ("the error was handled"). They should see a
/// fault. (A handler panicking while its body streams is left unflagged the
/// same way: `FaultOnPanic` records the same field.)
#[test]
fn a_body_that_fails_after_a_200_head_is_a_fault() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/export",
            get(|| async {
                AxumBody::new(Failing {
                    sent: false,
                    sleep: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
                })
            }),
        ))
        .await;
        let client = http_client();
        let request = Request::get(format!("http://{addr}/export"))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.into_body().collect().await.is_err(),
            "the client saw the body cut"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let segment = find(&traces, |t| url_of(t).ends_with("/export"));
    assert_eq!(segment["fault"], true, "{segment:#}");
}
