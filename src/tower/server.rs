//! The server layer: one root span (an X-Ray segment) per request.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::http::header::HeaderValue;
use ::http::{Method, Request, Response, StatusCode};
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use crate::header::{Sampled, TraceHeader};
use crate::http::{header_name, header_text};
use crate::layer::LAMBDA_INVOKE_SPAN;
use crate::span_ext::XraySpanExt;

/// A [`tower_layer::Layer`] for HTTP servers: each request becomes the root
/// span of an X-Ray segment (named after the layer's service name).
///
/// In AWS Lambda (`lambda_http`), a request served inside `lambda_runtime`'s
/// `Lambda runtime invoke` span (directly, or inside another span in it,
/// such as `lambda_runtime`'s own OpenTelemetry layer's) is a child of the
/// span it is served in instead: a subsegment in the invocation's trace,
/// below its function segment (the request's own header is not read;
/// Lambda's decides), also in `run_concurrent` mode.
///
/// - The incoming `X-Amzn-Trace-Id` continues the caller's trace (its
///   `Root`, `Parent` and `Sampled`); a missing or malformed header starts a
///   fresh trace. Parsing is lenient: a damaged pair (say, one with bytes
///   past ASCII) is dropped and the rest kept.
/// - The response carries `X-Amzn-Trace-Id: Root=<trace id>`, plus
///   `Sampled=<decision>` when the request asked with `Sampled=?`
///   (as the X-Ray SDKs answer). A header the inner service set itself is kept.
/// - The caller's address (`http.request.client_ip`) is the first
///   `X-Forwarded-For` entry (with `x_forwarded_for: true`), else the
///   connection's peer when the request's extensions hold its
///   [`SocketAddr`] (a tower service cannot see the socket: with axum's
///   `into_make_service_with_connect_info::<SocketAddr>()`, a
///   `map_request` outside this layer copies `ConnectInfo`'s address in, as
///   the example below does).
/// - The status is recorded as `http.response.status_code`, from which the
///   segment's `error` (4xx), `throttle` (429) and `fault` (5xx) follow.
///   A service that returns an error, or panics, makes the segment a fault
///   (the exception is the error's text, which is why the service's error
///   type must implement `Display`, as tower's and hyper's errors do; a
///   panic's exception reads `panicked`; the panic itself goes on).
///
/// The span is named `http.server` and created at `INFO` level, with target
/// `tracing_xray::tower::server`, with the fields listed in the
/// [module docs](crate::tower#span-fields). A subscriber's filter must let
/// it through (`warn,myapp=info` does not: add `tracing_xray=info`), or the
/// caller's header is not continued.
///
/// The span lasts until the response is sent, body included, as in the X-Ray
/// SDKs: the response's body is an [`XrayBody`], which ends the span when
/// the body ends and keeps the span current while the body is produced, so
/// the spans of a streamed body are subsegments of the request's segment.
/// A request dropped before its response is sent (the client went away; a
/// timeout placed outside this layer) is an `error`, with an exception
/// saying so, as a client's 499 would be: put a timeout layer *inside* this
/// one for its answer (tower-http's `TimeoutLayer`: 408) to be recorded.
///
/// # With tower-http's `TraceLayer`
///
/// Put this layer *outside* any other layer that opens a span, such as
/// tower-http's `TraceLayer`: its span is always a root (outside Lambda), so
/// a span opened before it becomes a separate trace of its own, which does
/// not continue the caller's header. In axum the layer added last is the
/// outermost:
///
/// ```
/// use std::time::Duration;
/// use axum::{body::Body, routing::get, Router};
/// use tower_http::trace::TraceLayer;
/// use tower_service::Service;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::tower::XrayServerLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let exporter = tracing_xray::export::InMemoryExporter::new();
/// # let layer = tracing_xray::builder()
/// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
/// #     .with_exporter(exporter.clone())
/// #     .build();
/// # let xray = layer.handle();
/// # let _default = tracing_subscriber::registry().with(layer).set_default();
/// let mut app = Router::new()
///     .route("/orders", get(|| async { "ok" }))
///     .layer(TraceLayer::new_for_http()) // inner: its `request` span, a subsegment
///     .layer(XrayServerLayer::new()); // outermost: the segment
/// let request = http::Request::get("/orders")
///     .header("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
///     .body(Body::empty())
///     .unwrap();
/// std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(&mut app, cx))
///     .await
///     .unwrap();
/// app.call(request).await.unwrap();
///
/// xray.flush(Duration::from_secs(1)).unwrap();
/// let traces = exporter.traces();
/// assert_eq!(traces.len(), 1); // `.layer()` the other way round: 2 traces
/// assert_eq!(traces[0]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
/// assert_eq!(traces[0]["parent_id"], "53995c3f42cd8ad8");
/// assert_eq!(traces[0]["subsegments"][0]["name"], "request");
/// # }
/// ```
///
/// # The caller's address with axum
///
/// Callers that reach the server directly (no proxy to add
/// `X-Forwarded-For`, as behind a Network Load Balancer) are known by the
/// connection's address, which axum gives as `ConnectInfo`:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use axum::extract::{ConnectInfo, Request};
/// use axum::{middleware, routing::get, Router};
/// use tracing_xray::tower::XrayServerLayer;
///
/// # async fn run() {
/// let app = Router::new()
///     .route("/orders", get(|| async { "ok" }))
///     .layer(XrayServerLayer::new())
///     // Outside the X-Ray layer: the peer's address, where it looks.
///     .layer(middleware::map_request(
///         |ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request| async move {
///             request.extensions_mut().insert(peer);
///             request
///         },
///     ));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await.unwrap();
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
///     .await
///     .unwrap();
/// # }
/// ```
///
/// # Any tower service
///
/// ```no_run
/// # async fn run() {
/// use std::convert::Infallible;
/// use tower_layer::Layer;
/// use tracing_xray::tower::XrayServerLayer;
///
/// // Any `Service<http::Request<B>, Response = http::Response<R>>`: a hyper
/// // service adapted to tower, an axum `Router`, a tonic server...
/// #[derive(Clone)]
/// struct Hello;
/// impl tower_service::Service<http::Request<String>> for Hello {
///     type Response = http::Response<String>;
///     type Error = Infallible;
///     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
///     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
///         std::task::Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _: http::Request<String>) -> Self::Future {
///         std::future::ready(Ok(http::Response::new("hello".to_owned())))
///     }
/// }
///
/// let service = XrayServerLayer::new().layer(Hello);
/// // serve `service` with your server of choice
/// # drop(service);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct XrayServerLayer {
    _private: (),
}

impl XrayServerLayer {
    /// The server layer.
    ///
    /// ```
    /// let layer = tracing_xray::tower::XrayServerLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        XrayServerLayer::default()
    }
}

impl<S> Layer<S> for XrayServerLayer {
    type Service = XrayServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XrayServer { inner }
    }
}

/// The service made by [`XrayServerLayer`].
///
/// ```
/// use tower_layer::Layer;
/// use tracing_xray::tower::{XrayServer, XrayServerLayer};
///
/// # #[derive(Clone)] struct MyService;
/// let service: XrayServer<MyService> = XrayServerLayer::new().layer(MyService);
/// # drop(service);
/// ```
#[derive(Clone, Debug)]
pub struct XrayServer<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for XrayServer<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: fmt::Display,
{
    type Response = Response<XrayBody<R>>;
    type Error = S::Error;
    type Future = XrayServerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (span, requested) = request_span(&request);
        let head = request.method() == Method::HEAD;
        let inner = {
            let _enter = span.enter();
            let _fault = super::FaultOnPanic::new(&span);
            self.inner.call(request)
        };
        XrayServerFuture {
            inner: Some(inner),
            span: Some(span),
            requested,
            head,
            in_poll: false,
        }
    }
}

/// Whether `current` is `lambda_runtime`'s invocation span, or, unless the
/// subscriber's `XrayLayer` is not in Lambda mode, a span inside it
/// (another layer's between it and the request: `lambda_runtime`'s own
/// `OpenTelemetryLayer` span, tower-http's `TraceLayer` put outside this
/// one), walking up through the `Registry`. (A layer behind `reload`,
/// hidden from downcasts, is taken to be in Lambda mode; under another
/// subscriber than the `Registry`, only the invocation span itself is
/// recognized.)
fn in_lambda_invocation(current: &Span) -> bool {
    use tracing_subscriber::registry::{LookupSpan, SpanData};
    let is_invocation = |m: &tracing::Metadata<'_>| m.name() == LAMBDA_INVOKE_SPAN;
    if current.metadata().is_some_and(is_invocation) {
        return true;
    }
    let Some(mut id) = current.id() else {
        return false;
    };
    tracing::dispatcher::get_default(|dispatch| {
        // A layer hidden from downcasts (behind `reload`): taken to be in
        // Lambda mode, where an invocation span is found.
        let lambda = dispatch
            .downcast_ref::<crate::XrayLayer>()
            .is_none_or(crate::XrayLayer::in_lambda_mode);
        let Some(registry) = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .filter(|_| lambda)
        else {
            return false;
        };
        while let Some(span) = registry.span_data(&id) {
            if is_invocation(span.metadata()) {
                return true;
            }
            match span.parent() {
                Some(parent) => id = parent.clone(),
                None => return false,
            }
        }
        false
    })
}

/// The root span of a request, and whether the caller asked for the
/// sampling decision (`Sampled=?`).
fn request_span<B>(request: &Request<B>) -> (Span, bool) {
    let headers = request.headers();
    let uri = request.uri();
    let incoming = headers.get(header_name()).map(header_text);
    // In AWS Lambda (`lambda_http`), the request is served inside the
    // invocation's span: a child of the span it is served in, in the
    // invocation's trace.
    let current = Span::current();
    let (parent, incoming) = if in_lambda_invocation(&current) {
        (current.id(), None)
    } else {
        (None, incoming)
    };
    let requested = incoming
        .as_deref()
        .is_some_and(|h| TraceHeader::parse(h).sampled() == Sampled::Requested);
    let authority = super::authority_of(uri, headers);
    // The host and port as the client wrote them (no user info): what a
    // sampling rule's `host` matches, as in the X-Ray SDKs, which match the
    // `Host` header (`api.example.com:8080`).
    let host = authority.as_ref().map(|a| match a.port() {
        Some(port) => format!("{}:{}", a.host(), port.as_str()),
        None => a.host().to_owned(),
    });
    // Scheme, host, port and path only: no query (see `request_url`).
    let full = authority.map(|a| super::request_url(uri.scheme_str(), &a, uri.path()));
    // The connection's peer, when the server put its address in the
    // request's extensions: the client, unless a forwarded header names
    // another.
    let peer = request
        .extensions()
        .get::<SocketAddr>()
        // An IPv4 caller of a dual-stack socket, as IPv4.
        .map(|a| a.ip().to_canonical().to_string());
    let client = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let span = tracing::info_span!(
        parent: parent,
        "http.server",
        otel.kind = "server",
        http.request.method = request.method().as_str(),
        url.full = full.as_deref(),
        url.path = uri.path(),
        http.host = host.as_deref(),
        user_agent.original = super::user_agent(headers),
        // `http.client_ip`, not `client.address`: the address comes from
        // the X-Forwarded-For header, not the socket, and X-Ray says so
        // (`x_forwarded_for: true`).
        http.client_ip = client,
        net.peer.ip = peer.as_deref(),
        http.response.status_code = Empty,
        http.response.body.size = Empty,
        rpc.grpc.status_code = Empty,
        error.message = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
        xray.error = Empty,
        xray.fault = Empty,
        xray.trace_header = incoming.as_deref(),
    );
    (span, requested)
}

pin_project! {
    /// The response future of [`XrayServer`].
    ///
    /// It completes with the response head; the request's segment goes on
    /// until the response's [`XrayBody`] ends. Dropped before it completes,
    /// it ends the segment as a request cancelled (an `error`).
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::tower::{XrayServerFuture, XrayServerLayer};
    ///
    /// # use std::convert::Infallible;
    /// # use std::task::{Context, Poll};
    /// # #[derive(Clone)]
    /// # struct Hello;
    /// # impl tower_service::Service<http::Request<String>> for Hello {
    /// #     type Response = http::Response<String>;
    /// #     type Error = Infallible;
    /// #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    /// #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    /// #         Poll::Ready(Ok(()))
    /// #     }
    /// #     fn call(&mut self, _: http::Request<String>) -> Self::Future {
    /// #         std::future::ready(Ok(http::Response::new("hello".to_owned())))
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let layer = tracing_xray::builder()
    /// #     .with_exporter(tracing_xray::export::NoopExporter)
    /// #     .build();
    /// # let _default = tracing_subscriber::registry().with(layer).set_default();
    /// let mut service = XrayServerLayer::new().layer(Hello);
    /// let future: XrayServerFuture<_> = service.call(http::Request::new(String::new()));
    /// let response = future.await.unwrap(); // an `http::Response<XrayBody<String>>`
    /// let header = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    /// assert!(header.starts_with("Root=1-"), "{header}");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct XrayServerFuture<F> {
        // Dropped as it completes, and before the span ends when the
        // future is dropped: a span an inner layer or the handler keeps in
        // it (tower-http's `TraceLayer`, an instrumented handler) ends
        // within the request's segment.
        #[pin]
        inner: Option<F>,
        span: Option<Span>,
        requested: bool,
        head: bool,
        // Set while the inner future is polled: still set at the drop, its
        // poll panicked (and the panic was caught outside this future).
        in_poll: bool,
    }

    impl<F> PinnedDrop for XrayServerFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.inner.set(None);
            if let Some(span) = this.span.take() {
                if *this.in_poll {
                    // A panic, caught by a layer outside this one after it
                    // unwound through here: marked a fault as it went.
                    crate::span_ext::end_now(&span);
                } else {
                    cancelled(&span, "the request was cancelled before its response was ready");
                }
            }
        }
    }
}

impl<F, R, E> Future for XrayServerFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: fmt::Display,
{
    type Output = Result<Response<XrayBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("XrayServerFuture polled after completion");
        let result = {
            let _enter = this.span.as_ref().map(Span::enter);
            let _fault = this.span.as_ref().map(super::FaultOnPanic::new);
            *this.in_poll = true;
            let result = inner.poll(cx);
            *this.in_poll = false;
            ready!(result)
        };
        // Done: what it keeps (spans included) goes now.
        this.inner.set(None);
        let span = this.span.take();
        match result {
            Ok(mut response) => {
                let mut length = None;
                if let Some(span) = &span {
                    let status = response.status();
                    span.record("http.response.status_code", status.as_u16());
                    length = super::content_length(response.headers());
                    super::record_grpc_status(span, response.headers());
                    if let Some(length) = length {
                        span.record("http.response.body.size", length);
                    }
                    respond_with_trace(span, *this.requested, &mut response);
                }
                // No body goes out after the head of a HEAD request's
                // response, or of a 1xx, 204 or 304: the server drops the
                // body unread, which is no cancellation.
                let status = response.status();
                let bodiless = *this.head
                    || status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED;
                Poll::Ready(Ok(response.map(|inner| XrayBody {
                    inner: Some(inner),
                    span,
                    bytes: 0,
                    length,
                    expected: length,
                    polled: false,
                    bodiless,
                    in_poll: false,
                })))
            }
            Err(e) => {
                if let Some(span) = span {
                    // A fault, with the error's text as its exception (as
                    // the client layer records a failed call; a URL it
                    // quotes leaves without its secrets, as every error
                    // text does, and the handler's error recorded on its
                    // way up, as recorded, is named as its cause).
                    span.record("otel.status_code", "ERROR");
                    // Cut as it is formatted (a service's error can quote a
                    // whole body), and a `Display` that fails is no panic.
                    let text = crate::span_data::display_string(&e);
                    span.record("otel.status_message", text);
                    crate::span_ext::end_now(&span);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

/// Ends `span` as a request that was given up before its response was
/// sent: an `error` (the client's, as a 499 would be), with `why` as its
/// exception. Not while a panic unwinds: the panic's own mark stays.
fn cancelled(span: &Span, why: &str) {
    if !std::thread::panicking() {
        span.record("xray.error", true);
        span.record("otel.status_message", why);
    }
    // Last: the segment leaves here (see `end_now`).
    crate::span_ext::end_now(span);
}

pin_project! {
    /// The body of a response from [`XrayServer`]: the inner service's body,
    /// which ends the request's segment when it ends.
    ///
    /// While the body is polled for its frames, the request's span is the
    /// current span: spans opened to produce a streamed body are
    /// subsegments of the request. When the body ends (its last frame, or,
    /// dropped by the server, all the bytes of its `Content-Length` or exact
    /// size hint sent), the inner body is dropped and the span closes, with
    /// the body's size as
    /// `http.response.content_length` when the response had no
    /// `Content-Length`. A body dropped before its end (the client went
    /// away mid-stream) marks the request an `error`; a body that fails
    /// marks it a fault, whatever the status said.
    ///
    /// It is an [`http_body::Body`] when the inner body is one, with the
    /// same data and error types, so it goes wherever the inner body went
    /// (hyper, axum's `Router::layer`, `lambda_http`).
    ///
    /// ```
    /// use http_body::Body as _;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::tower::{XrayBody, XrayServerLayer};
    ///
    /// # use std::convert::Infallible;
    /// # use std::task::{Context, Poll};
    /// # #[derive(Clone)]
    /// # struct Hello;
    /// # impl tower_service::Service<http::Request<String>> for Hello {
    /// #     type Response = http::Response<String>;
    /// #     type Error = Infallible;
    /// #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    /// #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    /// #         Poll::Ready(Ok(()))
    /// #     }
    /// #     fn call(&mut self, _: http::Request<String>) -> Self::Future {
    /// #         std::future::ready(Ok(http::Response::new("hello".to_owned())))
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let layer = tracing_xray::builder()
    /// #     .with_exporter(tracing_xray::export::NoopExporter)
    /// #     .build();
    /// # let _default = tracing_subscriber::registry().with(layer).set_default();
    /// let mut service = XrayServerLayer::new().layer(Hello);
    /// let response = service.call(http::Request::new(String::new())).await.unwrap();
    /// let body: &XrayBody<String> = response.body();
    /// assert_eq!(body.size_hint().exact(), Some(5)); // "hello"
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct XrayBody<B> {
        // Dropped as the body ends, before the span is: a span an inner
        // layer keeps in it (tower-http's `TraceLayer`) ends first.
        #[pin]
        inner: Option<B>,
        span: Option<Span>,
        // Data bytes polled so far.
        bytes: u64,
        // The response's `Content-Length`.
        length: Option<u64>,
        // The bytes the body is to have: its `Content-Length`, else its
        // exact size hint (which the server sends as one, and stops at).
        expected: Option<u64>,
        polled: bool,
        bodiless: bool,
        // Set while the inner body is polled: still set at the drop, its
        // poll panicked (and the panic was caught outside this body).
        in_poll: bool,
    }

    impl<B> PinnedDrop for XrayBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // The inner body first: a span it keeps ends before this one.
            this.inner.set(None);
            let Some(span) = this.span.take() else { return };
            if *this.in_poll {
                // A panic, caught outside after it unwound through here:
                // marked a fault as it went.
                crate::span_ext::end_now(&span);
                return;
            }
            // Dropped unpolled: the response went out without a body (the
            // server saw it empty, or the request needs none), or whoever
            // took the response did not send it, which is not for this
            // layer to judge. Dropped after all its length: sent.
            // Dropped mid-stream: the client went away.
            let sent = !*this.polled
                || *this.bodiless
                || this.expected.is_some_and(|expected| *this.bytes >= expected);
            if sent {
                finish(&span, *this.length, *this.bytes);
            } else {
                cancelled(&span, "the client went away before the response body was sent");
            }
        }
    }
}

/// Ends `span` with its body sent: its size, when no `Content-Length` gave it.
/// The segment ends now, whatever work the request spawned in its span
/// (see [`end_now`](crate::span_ext::end_now)).
fn finish(span: &Span, length: Option<u64>, bytes: u64) {
    if length.is_none() && bytes > 0 {
        span.record("http.response.body.size", bytes);
    }
    crate::span_ext::end_now(span);
}

impl<B> Body for XrayBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        if !*this.polled {
            *this.polled = true;
            if this.expected.is_none() {
                *this.expected = inner.size_hint().exact();
            }
        }
        let frame = {
            let _enter = this.span.as_ref().map(Span::enter);
            let _fault = this.span.as_ref().map(super::FaultOnPanic::new);
            *this.in_poll = true;
            let frame = inner.as_mut().poll_frame(cx);
            *this.in_poll = false;
            ready!(frame)
        };
        let end = match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.remaining() as u64;
                }
                if let (Some(trailers), Some(span)) = (frame.trailers_ref(), this.span.as_ref()) {
                    super::record_grpc_status(span, trailers);
                }
                // Not at its length: trailers may follow (a server sending
                // the body whole and no more drops it then, see `drop`).
                // Trailers end it: a server drops the body after them
                // without polling it again.
                frame.is_trailers() || inner.is_end_stream()
            }
            Some(Err(_)) => {
                // After the head went out: the response is broken, a fault
                // whatever its status said. The inner body first: a span it
                // keeps ends before this one.
                this.inner.set(None);
                if let Some(span) = this.span.take() {
                    span.record("xray.fault", true);
                    span.record("otel.status_message", "the response body failed");
                    crate::span_ext::end_now(&span);
                }
                false
            }
            None => true,
        };
        if end {
            // The inner body first: a span it keeps ends before this one.
            this.inner.set(None);
            if let Some(span) = this.span.take() {
                finish(&span, *this.length, *this.bytes);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

/// `X-Amzn-Trace-Id: Root=…[;Sampled=…]` on the response (SPEC §3.1).
fn respond_with_trace<R>(span: &Span, requested: bool, response: &mut Response<R>) {
    if response.headers().contains_key(header_name()) {
        return;
    }
    let Some(root) = span.xray_header().and_then(|h| {
        let sampled = if requested {
            h.sampled()
        } else {
            Sampled::Unknown
        };
        Some(TraceHeader::new(h.root()?, None, sampled))
    }) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&root.to_string()) {
        response.headers_mut().insert(header_name(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::tests::{Ok200, capture, now};
    use super::*;

    /// Panics in `call` (synchronous set-up) or while polling.
    struct Panics {
        in_call: bool,
    }

    impl<B> Service<Request<B>> for Panics {
        type Response = Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::PollFn<
            fn(&mut Context<'_>) -> Poll<Result<Response<()>, std::convert::Infallible>>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            assert!(!self.in_call, "the handler failed to start");
            std::future::poll_fn(|_| panic!("the handler failed"))
        }
    }

    /// A handler that panics (with nothing catching it inside the layer)
    /// leaves a segment marked as a fault, whether it panics in `call` or
    /// in its future; the panic itself goes on.
    #[test]
    fn a_panicking_handler_is_a_fault() {
        let (traces, _) = capture(|| {
            for in_call in [true, false] {
                let mut service = XrayServerLayer::new().layer(Panics { in_call });
                let request = Request::get("/cart").body(()).unwrap();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    now(service.call(request))
                }));
                assert!(outcome.is_err(), "the panic is not swallowed");
            }
            // After the panics, a request that completes is no fault.
            let mut service = XrayServerLayer::new().layer(Ok200::default());
            now(service.call(Request::get("/ok").body(()).unwrap())).unwrap();
        });
        assert_eq!(traces.len(), 3);
        for segment in &traces[..2] {
            assert_eq!(segment["fault"], true, "{segment}");
            assert_eq!(
                segment["cause"]["exceptions"][0]["message"], "panicked",
                "{segment}"
            );
        }
        assert!(traces[2].get("fault").is_none(), "{}", traces[2]);
        assert!(traces[2].get("cause").is_none(), "{}", traces[2]);
    }

    /// HTTP allows bytes past ASCII in a header value: a pair holding one
    /// is dropped, and the caller's trace is still continued.
    #[test]
    fn a_pair_with_bytes_past_ascii_does_not_lose_the_callers_trace() {
        let mut value =
            b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Foo=caf"
                .to_vec();
        value.push(0xe9); // Latin-1 'é'
        let value = HeaderValue::from_bytes(&value).unwrap();
        assert!(value.to_str().is_err(), "not visible ASCII");
        let mut headers = ::http::HeaderMap::new();
        headers.insert(header_name(), value.clone());
        let header = TraceHeader::from_headers(&headers).unwrap();
        assert_eq!(
            header.to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        let (traces, _) = capture(|| {
            let mut service = XrayServerLayer::new().layer(Ok200::default());
            let request = Request::get("/cart")
                .header(header_name(), value)
                .body(())
                .unwrap();
            now(service.call(request)).unwrap();
        });
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(traces[0]["parent_id"], "53995c3f42cd8ad8");
    }

    #[test]
    fn the_url_has_no_credentials_query_or_fragment() {
        let (traces, text) = capture(|| {
            let mut service = XrayServerLayer::new().layer(Ok200::default());
            let requests = [
                Request::get("/cart?id=7&token=t0p")
                    .header(::http::header::HOST, "shop.example.com")
                    .body(()),
                Request::get("https://u:pa55word@shop.example.com:8443/cart?token=t0p").body(()),
                Request::get("/health").body(()),
            ];
            for request in requests {
                now(service.call(request.unwrap())).unwrap();
            }
        });
        for secret in ["pa55word", "t0p", "id=7", "u:"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let urls: Vec<_> = traces
            .iter()
            .map(|t| &t["http"]["request"]["url"])
            .collect();
        assert_eq!(
            urls,
            [
                "http://shop.example.com/cart",
                "https://shop.example.com:8443/cart",
                "/health",
            ]
        );
    }

    /// The `http.request` block of the segment one `GET /cart` with `headers`
    /// makes.
    fn request_block(headers: &[(&str, &str)]) -> serde_json::Value {
        let (traces, _) = capture(|| {
            let mut service = XrayServerLayer::new().layer(Ok200::default());
            let mut request = Request::get("/cart");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            now(service.call(request.body(()).unwrap())).unwrap();
        });
        traces[0]["http"]["request"].clone()
    }

    #[test]
    fn a_client_ip_from_x_forwarded_for_is_marked_so() {
        let request = request_block(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        assert_eq!(request["client_ip"], "203.0.113.7", "{request}");
        assert_eq!(request["x_forwarded_for"], true, "{request}");
    }

    #[test]
    fn a_forwarded_port_and_an_empty_user_agent_are_not_sent() {
        let request = request_block(&[
            ("x-forwarded-for", "[2001:db8::7]:51234, 10.0.0.2"),
            ("user-agent", ""),
        ]);
        assert_eq!(request["client_ip"], "2001:db8::7", "{request}");
        assert!(request.get("user_agent").is_none(), "{request}");
    }
}
