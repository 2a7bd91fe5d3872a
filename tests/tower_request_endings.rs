//! How `XrayServerLayer` ends a request's segment in the less common
//! endings: a body ended by its trailers (gRPC) is no cancellation; the
//! spans an inner layer or the handler keeps (tower-http's `request`, an
//! instrumented handler) end within the segment when the body fails, the
//! client abandons the request, or the service fails; a panic caught by a
//! layer outside stays a fault, not a cancellation; `OPTIONS *` keeps its
//! host in the URL. Each test failed on a773d3f, or on an earlier fix of this
//! file's; the comment above it tells the defect as it was found.
#![cfg(feature = "tower")]

mod common;
#[path = "support/http.rs"]
mod http_support;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use http_support::*;
use hyper::body::{Bytes, Frame};
use serde_json::Value;
use tracing_xray::sampling::AlwaysSample;

/// [`common::traces_on_runtime`], sampling everything.
fn run<F, Fut>(n: usize, body: F) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::traces_on_runtime(AlwaysSample, n, body)
}

/// Which of `spans` ended after `end` (their segment's), and by how much.
fn ended_after(end: f64, spans: &[&Value]) -> Vec<String> {
    spans
        .iter()
        .filter(|s| s["end_time"].as_f64().unwrap() > end)
        .map(|s| {
            format!(
                "{} by {:.0} µs",
                s["name"],
                (s["end_time"].as_f64().unwrap() - end) * 1e6
            )
        })
        .collect()
}

/// A body of data then trailers, as gRPC (and any HTTP response with
/// trailers) sends, whose `is_end_stream` is the trait's default (`false`),
/// as for `http_body_util::StreamBody` or a hand-written body.
fn data_then_trailers(grpc_status: &'static str) -> ([(&'static str, &'static str); 1], AxumBody) {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", grpc_status.parse().unwrap());
    let frames = Frames::new(vec![
        Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")),
        Frame::trailers(trailers),
    ]);
    ([("trailer", "grpc-status")], AxumBody::new(frames))
}

/// A user serves gRPC-style responses (a 200 whose body ends with trailers,
/// `grpc-status: 0`: success) behind `XrayServerLayer`; the client receives
/// the whole body and its trailers. They should get a successful segment:
/// `XrayBody`'s docs: "When the body ends (its last frame, ...) ... the span
/// closes"; trailers are a body's last frame (http-body: "trailers ... the
/// final frame"). Instead hyper drops the body after the trailers frame
/// without polling it again (hyper h1 `dispatch.rs`: `is_trailers()` →
/// `clear_body`; h2 the same), `XrayBody` did not count the trailers as the
/// end (it asks `inner.is_end_stream()`, false here), and its `drop` marks
/// the request `error` with "the client went away before the response body
/// was sent".
#[test]
fn a_body_ended_by_its_trailers_is_no_cancellation() {
    let traces = run(1, || async {
        let addr = serve(Router::new().route(
            "/shop.Cart/Get",
            axum::routing::post(|| async { data_then_trailers("0") }),
        ))
        .await;
        let request = Request::post(format!("http://{addr}/shop.Cart/Get"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Empty::new())
            .unwrap();
        let response = http_client().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        assert!(body.trailers().is_some(), "the trailers went out");
        assert_eq!(
            &body.to_bytes()[..],
            b"\0\0\0\0\x02hi",
            "the whole body went out"
        );
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let segment = &traces[0];
    assert_eq!(segment["http"]["response"]["status"], 200, "{segment:#}");
    assert!(
        segment.get("error").is_none() && segment.get("cause").is_none(),
        "a served request, not a cancelled one: {segment:#}"
    );
}

/// A body that sends one chunk, then fails 100 ms later (a database cursor
/// that broke half-way through an export).
struct Failing {
    sent: bool,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Failing {
    fn new() -> Self {
        Failing {
            sent: false,
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
    }
}

impl hyper::body::Body for Failing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            return std::task::Poll::Ready(Some(Err(std::io::Error::other("cursor lost"))));
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"row 1\n")))))
    }
}

/// A user follows `XrayServerLayer`'s docs (tower-http's `TraceLayer`
/// inside it: its `request` span "a subsegment") and streams an export whose
/// body fails half-way. `XrayBody`'s own comment: the inner body is "dropped
/// as the body ends, before the span is: a span an inner layer keeps in it
/// (tower-http's `TraceLayer`) ends first" (the ordinary end does so since
/// tests/http_edges.rs `the_trace_layers_subsegment_ends_within_its_segment`).
/// On a failing body `XrayBody::poll_frame` (`Some(Err(_))` arm) ends the
/// segment (`end_now`) while the inner body, and the `request` span it
/// holds, is still alive: the segment leaves first and `request`, closed
/// when hyper drops the body, ends after its own segment (sent on its own,
/// drawn as work that outlived the request).
#[test]
fn the_trace_layers_subsegment_ends_within_a_failed_bodys_segment() {
    let traces = run(3, || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/export",
                axum::routing::get(|| async { AxumBody::new(Failing::new()) }),
            )
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(tracing_xray::tower::XrayServerLayer::new());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = http_client();
        for _ in 0..3 {
            let request = Request::get(format!("http://{addr}/export"))
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await.unwrap();
            assert!(
                response.into_body().collect().await.is_err(),
                "the body was cut"
            );
        }
    });
    assert_eq!(traces.len(), 3, "{traces:#?}");
    let mut late = Vec::new();
    for segment in &traces {
        assert_eq!(segment["fault"], true, "{segment:#}");
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

/// A user follows `XrayServerLayer`'s docs (tower-http's `TraceLayer`
/// inside it) with a slow handler whose work runs in a span of its own
/// (`load_report`, as `#[instrument]` makes it); the client gives up after
/// 300 ms and hyper drops the request's future. README: "A request dropped
/// before its response is sent (the client went away ...) is an `error`";
/// the segment should end then, with its subsegments (`request`, and
/// `load_report` under it) inside it, as for any finished request (and as
/// `XrayBody` takes care to drop the inner body, holding `request`, first).
/// Instead `XrayServerFuture`'s `PinnedDrop` (src/tower/server.rs,
/// `cancelled` → `end_now`) ends and sends the segment while the inner
/// future, holding tower-http's `request` span and the handler's, is still
/// alive (a pinned struct's fields drop after its `drop`): both subsegments
/// end after their segment, and are sent after it, on their own.
#[test]
fn the_subsegments_of_a_request_its_client_abandons_end_within_its_segment() {
    let traces = run(1, || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/report",
                axum::routing::get(|| {
                    tracing::Instrument::instrument(
                        async {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            "late"
                        },
                        tracing::info_span!("load_report"),
                    )
                }),
            )
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(tracing_xray::tower::XrayServerLayer::new());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = http_client();
        let request = Request::get(format!("http://{addr}/report"))
            .body(Empty::new())
            .unwrap();
        let outcome =
            tokio::time::timeout(Duration::from_millis(300), client.request(request)).await;
        assert!(outcome.is_err(), "the client gave up");
        drop(client); // closes the connection
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let segment = &traces[0];
    assert_eq!(segment["error"], true, "{segment:#}");
    let end = segment["end_time"].as_f64().unwrap();
    let request = &segment["subsegments"][0];
    assert_eq!(request["name"], "request", "{segment:#}");
    let load = &request["subsegments"][0];
    assert_eq!(load["name"], "load_report", "{segment:#}");
    let late = ended_after(end, &[request, load]);
    assert!(
        late.is_empty(),
        "ended after their segment: {late:?} in {segment:#}"
    );
}

/// A tower service that fails every request after 50 ms of work in a span
/// of its own (`query_orders`, as an `#[instrument]`ed handler would), as a
/// database-backed service whose error hyper turns into a closed
/// connection.
#[derive(Clone)]
struct FailingService;

impl<B> tower_service::Service<Request<B>> for FailingService {
    type Response = http::Response<http_body_util::Full<Bytes>>;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        Box::pin(tracing::Instrument::instrument(
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("database unreachable"))
            },
            tracing::info_span!("query_orders"),
        ))
    }
}

/// A user's service returns an error (README: "fault (5xx; also a handler
/// that panics or returns an error, whose text is the exception)"), behind
/// tower-http's `TraceLayer` inside `XrayServerLayer` as the docs advise.
/// The segment should hold its subsegments (`request`, and the service's
/// `query_orders` under it) within its own end, as for any request served.
/// Instead `XrayServerFuture::poll`'s `Err` arm (src/tower/server.rs) ends
/// and sends the segment (`end_now`) while the inner future it just polled
/// to completion, which still holds tower-http's `request` span (its
/// `ResponseFuture` keeps the span) and the `Instrumented` handler's span,
/// is alive: both end after their segment, and leave after it, on their own.
#[test]
fn the_subsegments_of_a_failed_request_end_within_its_segment() {
    let traces = run(1, || async {
        use tower_layer::Layer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tracing_xray::tower::XrayServerLayer::new()
            .layer(tower_http::trace::TraceLayer::new_for_http().layer(FailingService));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |request| {
                let mut service = service.clone();
                tower_service::Service::call(&mut service, request)
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
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let segment = &traces[0];
    assert_eq!(segment["fault"], true, "{segment:#}");
    let end = segment["end_time"].as_f64().unwrap();
    let request = &segment["subsegments"][0];
    assert_eq!(request["name"], "request", "{segment:#}");
    let query = &request["subsegments"][0];
    assert_eq!(query["name"], "query_orders", "{segment:#}");
    let late = ended_after(end, &[request, query]);
    assert!(
        late.is_empty(),
        "ended after their segment: {late:?} in {segment:#}"
    );
}

/// A panic-catching layer as tower-http's `CatchPanicLayer` is written (its
/// feature is not among this crate's dev-dependencies): each poll of the
/// inner future under `catch_unwind` (`futures`' `CatchUnwind`, which keeps
/// the inner future until it is dropped itself), a panic answered with a
/// 500.
#[derive(Clone)]
struct CatchPanic<S>(S);

struct CatchPanicFuture<F> {
    inner: std::pin::Pin<Box<F>>,
    panicked: bool,
}

impl<S, B, R> tower_service::Service<Request<B>> for CatchPanic<S>
where
    S: tower_service::Service<Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<Option<R>>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        CatchPanicFuture {
            inner: Box::pin(self.0.call(request)),
            panicked: false,
        }
    }
}

impl<F, R, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = Result<http::Response<Option<R>>, E>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        assert!(!self.panicked, "polled after completion");
        let this = &mut *self;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.inner.as_mut().poll(cx)
        })) {
            Ok(poll) => poll.map(|r| r.map(|response| response.map(Some))),
            Err(_) => {
                this.panicked = true;
                let mut response = http::Response::new(None);
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                std::task::Poll::Ready(Ok(response))
            }
        }
    }
}

/// A user puts a panic-catching layer (tower-http's `CatchPanicLayer`,
/// which opens no span) outside `XrayServerLayer`, so that a handler's
/// panic is answered with a 500 instead of a closed connection. The handler
/// panics. README ("HTTP services"): "fault (5xx; also a handler that
/// panics ...)", the server layer's docs: "a panic's exception reads
/// `panicked`". They get the fault, but with the exception "the request was
/// cancelled before its response was ready" in place of `panicked`: the
/// catching layer answered, then dropped the inner future (after the
/// unwinding, as `futures`' `CatchUnwind` does), and `XrayServerFuture`'s
/// `PinnedDrop` (src/tower/server.rs, `cancelled`) took that drop for a
/// client that went away (`xray.error`), overwriting the panic's
/// `otel.status_message`. (A tokio task's panic is fine: tokio drops the
/// future during the unwinding.)
#[test]
fn a_panic_caught_outside_the_layer_is_a_fault_not_a_cancellation() {
    use tower_layer::Layer;
    let captured = common::capture_documents(
        |b| b,
        || {
            let router = Router::new().route(
                "/boom",
                axum::routing::get(|| async {
                    if std::hint::black_box(true) {
                        panic!("handler bug");
                    }
                    "never"
                }),
            );
            let mut service = CatchPanic(tracing_xray::tower::XrayServerLayer::new().layer(router));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let status = common::quietly(|| {
                rt.block_on(async {
                    let request = Request::get("http://shop.example.com/boom")
                        .body(AxumBody::empty())
                        .unwrap();
                    let response = tower_service::Service::call(&mut service, request)
                        .await
                        .unwrap();
                    response.status()
                })
            });
            assert_eq!(status, 500, "the panic was answered");
        },
    );
    let traces = captured.exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let segment = &traces[0];
    assert_eq!(segment["fault"], true, "{segment:#}");
    assert_eq!(
        common::exception_messages(segment),
        ["panicked"],
        "{segment:#}"
    );
    assert!(
        segment.get("error").is_none(),
        "no client went away: {segment:#}"
    );
}

/// A server-wide `OPTIONS * HTTP/1.1` (asterisk-form, RFC 9112 §3.2.4: some
/// load balancers' and proxies' health checks, Apache's dummy connections)
/// reaches a service behind `XrayServerLayer`. SPEC §1.4: `url` is
/// "scheme+host+path"; the module docs: `url.full` is
/// "`scheme://host[:port]/path` when the host is known". They get
/// `"url": "http://h.example.com*"`, another host's name (`*` is a legal
/// host character): `request_url` (src/tower/mod.rs) appends the path
/// `*` to the authority as if it began with `/`.
#[test]
fn an_asterisk_form_request_keeps_its_host_in_the_url() {
    use tower_layer::Layer;
    #[derive(Clone)]
    struct Ok200;
    impl tower_service::Service<Request<()>> for Ok200 {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(())))
        }
    }
    let captured = common::capture_documents(
        |b| b,
        || {
            let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Ok200);
            let request = Request::options("*")
                .header("host", "h.example.com")
                .body(())
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let response = tower_service::Service::call(&mut service, request)
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            });
        },
    );
    assert_eq!(captured.docs.len(), 1, "{:#?}", captured.docs);
    let url = captured.docs[0]["http"]["request"]["url"]
        .as_str()
        .expect("a URL")
        .to_owned();
    let uri: http::Uri = url.parse().expect("a URL");
    assert_eq!(
        uri.host(),
        Some("h.example.com"),
        "the URL names another host: {url}"
    );
}

/// A body that sends one data frame, then panics (a bug in the code that
/// produces a streamed response).
struct PanicsMidStream {
    sent: bool,
}

impl http_body::Body for PanicsMidStream {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if !self.sent {
            self.sent = true;
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                bytes::Bytes::from_static(b"first part"),
            ))));
        }
        panic!("the stream's producer failed")
    }
}

#[derive(Clone)]
struct Streams;

impl tower_service::Service<http::Request<()>> for Streams {
    type Response = http::Response<PanicsMidStream>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(PanicsMidStream { sent: false })))
    }
}

/// A user's streamed response body panics mid-stream, and the panic is
/// caught outside the body's poll (as `lambda_runtime` catches a handler's
/// panic around the future in which `lambda_http` collects the response
/// body, or any `catch_unwind` around a body's poll); the body is dropped
/// afterwards, no longer unwinding. The module docs: `xray.fault` is "`true`
/// when the service, or its response body, panics", and the server layer's
/// docs: "a panic's exception reads `panicked`"; 88bcd28 made this hold for
/// a panic caught outside the *future* (`in_poll`). They get the fault, but
/// also `error: true` and the exception "the client went away before the
/// response body was sent" in place of `panicked`: `XrayBody`'s
/// `PinnedDrop` (src/tower/server.rs, the `cancelled` call in its drop) has
/// no `in_poll` of its own and takes the drop for a client that went away,
/// overwriting the panic's `otel.status_message`.
#[test]
fn a_body_panic_caught_outside_stays_a_panic() {
    use http_body_util::BodyExt;
    use std::future::Future;
    use tower_layer::Layer;
    let captured = common::capture_documents(
        |b| b,
        || {
            let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Streams);
            let request = http::Request::get("http://shop.example.com/export")
                .body(())
                .unwrap();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let mut future = Box::pin(tower_service::Service::call(&mut service, request));
            let response = match future.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => r.unwrap(),
                std::task::Poll::Pending => panic!("not ready"),
            };
            drop(future);
            let mut collect = Box::pin(response.into_body().collect());
            let outcome = common::quietly(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = collect.as_mut().poll(&mut cx);
                }))
            });
            assert!(outcome.is_err(), "the body panicked");
            drop(collect); // after the unwinding
        },
    );
    let traces = captured.exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let segment = &traces[0];
    assert_eq!(segment["fault"], true, "{segment:#}");
    assert_eq!(
        (common::exception_messages(segment), segment.get("error")),
        (vec!["panicked"], None),
        "{segment:#}"
    );
}
