//! The server layer: one root span (an X-Ray segment) per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::http::header::HeaderValue;
use ::http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::Span;

use crate::header::{Sampled, TraceHeader};
use crate::http::{header_name, header_text};
use crate::layer::LAMBDA_INVOKE_SPAN;
use crate::span_ext::XraySpanExt;

/// A [`tower_layer::Layer`] for HTTP servers: each request becomes the root
/// span of an X-Ray segment (named after the layer's service name).
///
/// In AWS Lambda (`lambda_http`), a request served inside `lambda_runtime`'s
/// `Lambda runtime invoke` span is a child of it instead: a subsegment of the
/// invocation's function segment, in the invocation's trace (the request's
/// own header is not read; Lambda's decides), also in `run_concurrent` mode.
///
/// - The incoming `X-Amzn-Trace-Id` continues the caller's trace (its
///   `Root`, `Parent` and `Sampled`); a missing or malformed header starts a
///   fresh trace. Parsing is lenient: a damaged pair (say, one with bytes
///   past ASCII) is dropped and the rest kept.
/// - The response carries `X-Amzn-Trace-Id: Root=<trace id>`, plus
///   `Sampled=<decision>` when the request asked with `Sampled=?`
///   (as the X-Ray SDKs answer). A header the inner service set itself is kept.
/// - The status is recorded as `http.response.status_code`, from which the
///   segment's `error` (4xx), `throttle` (429) and `fault` (5xx) follow.
///   A service that returns an error, or panics, makes the segment a fault
///   (a panic's exception reads `panicked`; the panic itself goes on).
///
/// The span is named `http.server` and created at `INFO` level, with target
/// `tracing_xray::tower::server`, with the fields listed in the
/// [module docs](crate::tower#span-fields). A subscriber's filter must let
/// it through (`warn,myapp=info` does not: add `tracing_xray=info`), or the
/// caller's header is not continued. The span ends when the response head is
/// ready, so streaming the body is not timed; but a span that an inner layer
/// keeps open over the body holds its trace open too: tower-http's
/// `TraceLayer` keeps its `request` span in the body, and with it inside,
/// the segment lasts until the body is sent.
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
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = XrayServerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (span, requested) = request_span(&request);
        let inner = {
            let _enter = span.enter();
            let _fault = super::FaultOnPanic::new(&span);
            self.inner.call(request)
        };
        XrayServerFuture {
            inner,
            span: Some(span),
            requested,
        }
    }
}

/// The root span of a request, and whether the caller asked for the
/// sampling decision (`Sampled=?`).
fn request_span<B>(request: &Request<B>) -> (Span, bool) {
    let headers = request.headers();
    let uri = request.uri();
    let incoming = headers.get(header_name()).map(header_text);
    // In AWS Lambda (`lambda_http`), the request is served inside the
    // invocation's span: a child of its facade, in the invocation's trace.
    let current = Span::current();
    let invocation = current
        .metadata()
        .is_some_and(|m| m.name() == LAMBDA_INVOKE_SPAN);
    let (parent, incoming) = if invocation {
        (current.id(), None)
    } else {
        (None, incoming)
    };
    let requested = incoming
        .as_deref()
        .is_some_and(|h| TraceHeader::parse(h).sampled() == Sampled::Requested);
    let authority = super::authority_of(uri, headers);
    let host = authority.as_ref().map(|a| a.host().to_owned());
    // Scheme, host, port and path only: no query (see `request_url`).
    let full = authority.map(|a| super::request_url(uri.scheme_str(), &a, uri.path()));
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
        server.address = host.as_deref(),
        user_agent.original = super::user_agent(headers),
        // `http.client_ip`, not `client.address`: the address comes from
        // the X-Forwarded-For header, not the socket, and X-Ray says so
        // (`x_forwarded_for: true`).
        http.client_ip = client,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
        xray.trace_header = incoming.as_deref(),
    );
    (span, requested)
}

pin_project! {
    /// The response future of [`XrayServer`].
    ///
    /// The request's segment ends when it completes.
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
    /// let response = future.await.unwrap();
    /// let header = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    /// assert!(header.starts_with("Root=1-"), "{header}");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct XrayServerFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        requested: bool,
    }
}

impl<F, R, E> Future for XrayServerFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _enter = this.span.as_ref().map(Span::enter);
            let _fault = this.span.as_ref().map(super::FaultOnPanic::new);
            ready!(this.inner.poll(cx))
        };
        let Some(span) = this.span.take() else {
            return Poll::Ready(result);
        };
        match result {
            Ok(mut response) => {
                span.record("http.response.status_code", response.status().as_u16());
                respond_with_trace(&span, *this.requested, &mut response);
                Poll::Ready(Ok(response))
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                Poll::Ready(Err(e))
            }
        }
        // `span` drops here: the segment ends with the response head.
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
    use super::super::client::tests::{capture, now, Ok200};
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
