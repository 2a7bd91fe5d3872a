//! The client layer: one `remote` subsegment per outgoing request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

/// A [`tower_layer::Layer`] for HTTP clients: each request gets its own
/// span (`http.client`, `INFO`), a child of the current span, which becomes
/// an X-Ray subsegment with `namespace: "remote"`, named after the remote
/// host (and `http.request.traced: true` when the services called are
/// traced too: see [`XrayClientLayer::with_downstream_traced`]).
///
/// The request is sent with `X-Amzn-Trace-Id` = Root, `Parent` = that
/// subsegment's id, `Sampled` = the trace's decision, plus the extra keys of
/// the incoming header (any header already on the request is replaced). In an
/// unsampled trace nothing is recorded, but the header still goes out with
/// `Sampled=0`. Without an active `XrayLayer` the request is sent unchanged.
///
/// Works with any tower client over `http::Request` (hyper-util's client,
/// tower-http stacks, tonic channels). For reqwest-middleware, whose requests
/// expose the same `http::HeaderMap`, the two calls this layer makes are
/// [`XraySpanExt::xray_header`](crate::XraySpanExt::xray_header) and
/// [`TraceHeader::inject`](crate::TraceHeader::inject).
///
/// ```no_run
/// use tower_layer::Layer;
/// use tracing_xray::tower::XrayClientLayer;
///
/// # #[derive(Clone)] struct HttpClient;
/// // `HttpClient`: any `Service<http::Request<B>, Response = http::Response<R>>`.
/// let client = XrayClientLayer::new().layer(HttpClient);
/// # drop(client);
/// ```
///
/// With hyper-util's client, whose wrapped client no longer has `request()`:
/// send through the `Service` trait (or `tower::ServiceExt::oneshot`). The
/// call's span is a child of the span current when `call` is made:
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use hyper_util::client::legacy::{connect::HttpConnector, Client};
/// use hyper_util::rt::TokioExecutor;
/// use tower_layer::Layer;
/// use tower_service::Service;
/// use tracing_xray::tower::{XrayClient, XrayClientLayer};
///
/// type HttpClient = XrayClient<Client<HttpConnector, Empty<Bytes>>>;
///
/// fn http_client() -> HttpClient {
///     XrayClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http())
/// }
///
/// #[tracing::instrument(skip(client))]
/// async fn check_stock(client: &HttpClient, item: &str) -> Result<bool, Box<dyn std::error::Error>> {
///     let mut client = client.clone();
///     let url = format!("http://inventory.internal/stock/{item}");
///     let request = http::Request::get(url).body(Empty::new())?;
///     std::future::poll_fn(|cx| client.poll_ready(cx)).await?;
///     let response = client.call(request).await?; // sent with X-Amzn-Trace-Id
///     Ok(response.status().is_success())
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct XrayClientLayer {
    downstream_traced: bool,
}

impl XrayClientLayer {
    /// The client layer.
    ///
    /// ```
    /// let layer = tracing_xray::tower::XrayClientLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        XrayClientLayer::default()
    }

    /// Whether the services this client calls are traced with X-Ray too
    /// (they read the `X-Amzn-Trace-Id` sent and send segments of their
    /// own). When they are, each call's subsegment says so
    /// (`http.request.traced: true`), and X-Ray waits for the callee's
    /// segment, naming this subsegment as its parent, before it treats the
    /// trace as complete. Off by default: for a third-party API that
    /// segment never comes, and the trace would look broken. A call whose
    /// connection was refused (a `ConnectionRefused` in its error's
    /// `source()` chain) never reached the callee: it is not marked, as in
    /// the Node SDK.
    ///
    /// ```
    /// use tracing_xray::tower::XrayClientLayer;
    ///
    /// // A client for the company's own services, all traced.
    /// let layer = XrayClientLayer::new().with_downstream_traced(true);
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn with_downstream_traced(mut self, traced: bool) -> Self {
        self.downstream_traced = traced;
        self
    }
}

impl<S> Layer<S> for XrayClientLayer {
    type Service = XrayClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XrayClient {
            inner,
            downstream_traced: self.downstream_traced,
        }
    }
}

/// The service made by [`XrayClientLayer`].
///
/// ```
/// use tower_layer::Layer;
/// use tracing_xray::tower::{XrayClient, XrayClientLayer};
///
/// # #[derive(Clone)] struct HttpClient;
/// let client: XrayClient<HttpClient> = XrayClientLayer::new().layer(HttpClient);
/// # drop(client);
/// ```
#[derive(Clone, Debug)]
pub struct XrayClient<S> {
    inner: S,
    downstream_traced: bool,
}

impl<S, B, R> Service<Request<B>> for XrayClient<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: fmt::Display + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = XrayClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let span = call_span(&request, self.downstream_traced);
        if let Some(header) = crate::span_ext::call_header(&span) {
            header.inject(request.headers_mut());
        }
        let inner = {
            let _enter = span.enter();
            let _fault = super::FaultOnPanic::new(&span);
            self.inner.call(request)
        };
        XrayClientFuture {
            inner: Some(inner),
            span: Some(span),
            in_poll: false,
        }
    }
}

fn call_span<B>(request: &Request<B>, downstream_traced: bool) -> Span {
    let headers = request.headers();
    let uri = request.uri();
    // From the URI, else (an origin-form URI, as a connection-level client
    // sends) from the `Host` header, its port included, as the server
    // layer reads it.
    let authority = super::authority_of(uri, headers);
    let host = authority.as_ref().map(|a| a.host().to_owned());
    let full = authority
        .as_ref()
        .map(|authority| super::request_url(uri.scheme_str(), authority, uri.path()));
    tracing::info_span!(
        "http.client",
        otel.kind = "client",
        xray.traced = downstream_traced.then_some(true),
        xray.name = host.as_deref(),
        http.request.method = request.method().as_str(),
        url.full = full.as_deref(),
        url.path = uri.path(),
        server.address = host.as_deref(),
        user_agent.original = super::user_agent(headers),
        http.response.status_code = Empty,
        http.response.body.size = Empty,
        rpc.grpc.status_code = Empty,
        error.message = Empty,
        error = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
        xray.fault = Empty,
    )
}

pin_project! {
    /// The response future of [`XrayClient`].
    ///
    /// The call's subsegment ends when it completes, with the response's status
    /// (and its `Content-Length`), or, when the call fails, as a fault whose
    /// exception is the error (the client's error type must implement
    /// `Display`, as tower's errors do). Of tower's `BoxError` (the error of
    /// a stack with a timeout, retry or buffer layer below this one) and of
    /// `std::io::Error`, the `source()` chain is recorded too, so that
    /// hyper-util's `client error (Connect)` shows the `Connection refused`
    /// below it; of another type, the text alone (a trait asking for
    /// `Error` would leave out `BoxError`, which does not implement it): for
    /// hyper-util's plain `Client`, whose error type is its own, a
    /// `map_err(tower::BoxError::from)` below this layer gives the chain. A
    /// call dropped before it
    /// completes (a timeout around it gave up) is a fault too, whose
    /// exception says it was cancelled, as the X-Ray SDKs record a call
    /// whose deadline passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::tower::{XrayClientFuture, XrayClientLayer};
    ///
    /// # use std::convert::Infallible;
    /// # use std::task::{Context, Poll};
    /// # #[derive(Clone)]
    /// # struct Echo;
    /// # impl tower_service::Service<http::Request<()>> for Echo {
    /// #     type Response = http::Response<()>;
    /// #     type Error = Infallible;
    /// #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    /// #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    /// #         Poll::Ready(Ok(()))
    /// #     }
    /// #     fn call(&mut self, request: http::Request<()>) -> Self::Future {
    /// #         let mut response = http::Response::new(());
    /// #         *response.headers_mut() = request.headers().clone();
    /// #         std::future::ready(Ok(response))
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # let _default = tracing_subscriber::registry().with(layer).set_default();
    /// // `Echo`: a client whose responses carry the request's headers.
    /// let mut client = XrayClientLayer::new().layer(Echo);
    /// let request = http::Request::get("http://inventory.internal/items").body(()).unwrap();
    /// let future: XrayClientFuture<_> =
    ///     tracing::info_span!("handle_order").in_scope(|| client.call(request));
    /// let response = future.await.unwrap();
    /// let sent = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    /// assert!(sent.starts_with("Root=1-") && sent.contains(";Parent="), "{sent}");
    ///
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// let call = &exporter.traces()[0]["subsegments"][0];
    /// assert_eq!(call["name"], "inventory.internal");
    /// assert_eq!(call["http"]["response"]["status"], 200);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct XrayClientFuture<F> {
        // Dropped as it completes, and before the span ends when the
        // future is dropped: a span the inner service keeps in it ends
        // within the call's subsegment (a root call's segment).
        #[pin]
        inner: Option<F>,
        span: Option<Span>,
        // Set while the inner future is polled: still set at the drop, its
        // poll panicked (and the panic was caught outside this future).
        in_poll: bool,
    }

    impl<F> PinnedDrop for XrayClientFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.inner.set(None);
            // Not after a panic of its own poll (caught outside): the
            // panic's own mark stays. A panic elsewhere that drops it (a
            // sibling future of the same task) cancels it.
            if let Some(span) = this.span.take() {
                if !*this.in_poll {
                    span.record("otel.status_code", "ERROR");
                    span.record(
                        "otel.status_message",
                        "cancelled: the call was dropped before its response arrived",
                    );
                }
                // Last: a root's segment leaves here (see `end_now`).
                crate::span_ext::end_now(&span);
            }
        }
    }
}

impl<F, R, E> Future for XrayClientFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: fmt::Display + 'static,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("XrayClientFuture polled after completion");
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
        if let Some(span) = this.span.take() {
            match &result {
                Ok(response) => {
                    span.record("http.response.status_code", response.status().as_u16());
                    if let Some(length) = super::content_length(response.headers()) {
                        span.record("http.response.body.size", length);
                    }
                    super::record_grpc_status(&span, response.headers());
                }
                Err(error) => match as_std_error(error) {
                    // A fault whose exception is the error and its sources
                    // (their text without a URL's user info and query).
                    Some(error) => {
                        span.record("error", error);
                        // The request never reached the callee: X-Ray is
                        // not to wait for its segment (as the Node SDK).
                        if refused(error) {
                            span.record("xray.traced", false);
                        }
                    }
                    // A fault, with the error's text as its exception (a
                    // URL it quotes leaves without user info and query, as
                    // the call's own `url` does).
                    None => {
                        span.record("otel.status_code", "ERROR");
                        // Cut as it is formatted; a `Display` that fails
                        // is no panic.
                        let text = crate::span_data::display_string(&error);
                        span.record("otel.status_message", text);
                    }
                },
            }
            // The call ends with its response, whatever work it spawned in
            // its span (see `end_now`).
            crate::span_ext::end_now(&span);
        }
        Poll::Ready(result)
    }
}

/// Whether `error`, or an error of its `source()` chain, is a refused
/// connection.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// A client's error as a `std::error::Error`, whose `source()` chain can be
/// read, when its type is one known to be: tower's `BoxError` (what a
/// stack with a timeout, retry or buffer layer fails with), with or
/// without `Sync`, or `std::io::Error`.
fn as_std_error<E: 'static>(error: &E) -> Option<&(dyn std::error::Error + 'static)> {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let any: &dyn std::any::Any = error;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error + Send>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        return Some(&**boxed);
    }
    any.downcast_ref::<std::io::Error>()
        .map(|e| e as &(dyn std::error::Error + 'static))
}

#[cfg(test)]
pub(super) mod tests {
    use std::convert::Infallible;
    use std::future::Ready;
    use std::time::Duration;

    use tracing_subscriber::prelude::*;

    use super::*;
    use crate::TraceHeader;
    use crate::export::InMemoryExporter;
    use tracing::Level;

    /// Answers 200 at once, keeping the headers of every request (clones
    /// share them).
    #[derive(Clone, Default)]
    pub(crate) struct Ok200(std::sync::Arc<std::sync::Mutex<Vec<::http::HeaderMap>>>);

    impl<B> Service<Request<B>> for Ok200 {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<B>) -> Self::Future {
            self.0.lock().unwrap().push(request.headers().clone());
            std::future::ready(Ok(Response::new(())))
        }
    }

    /// Runs `f` under a layer that samples everything; returns the traces
    /// and the text of every document sent.
    pub(crate) fn capture(f: impl FnOnce()) -> (Vec<serde_json::Value>, String) {
        let exporter = InMemoryExporter::new();
        let layer = crate::builder()
            .with_sampler(crate::sampling::AlwaysSample)
            .with_exporter(exporter.clone())
            .build();
        let xray = layer.handle();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        xray.flush(Duration::from_secs(5)).unwrap();
        let text = exporter.documents().iter().map(|d| d.as_str()).collect();
        (exporter.traces(), text)
    }

    /// Polls a future that is ready at once.
    pub(crate) fn now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("not ready"),
        }
    }

    /// Fails every call, as a client does when the connection is refused.
    struct Refused;

    impl<B> Service<Request<B>> for Refused {
        type Response = Response<()>;
        type Error = std::io::Error;
        type Future = Ready<Result<Response<()>, std::io::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            std::future::ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "http://app:hunter@inventory.internal/stock?token=hunter: connection refused (user@host)",
            )))
        }
    }

    /// A global filter for the application's crates only hides the call's
    /// own span: the header still goes out, its parent the nearest traced
    /// span (here the segment), as the AWS SDK interceptor does.
    #[test]
    fn the_header_goes_out_when_a_filter_hides_the_calls_span() {
        let exporter = InMemoryExporter::new();
        let layer = crate::builder()
            .with_sampler(crate::sampling::AlwaysSample)
            .with_exporter(exporter.clone())
            .build();
        let xray = layer.handle();
        let app_only = tracing_subscriber::filter::Targets::new().with_target("myapp", Level::INFO);
        let downstream = Ok200::default();
        let subscriber = tracing_subscriber::registry().with(layer).with(app_only);
        tracing::subscriber::with_default(subscriber, || {
            let mut client = XrayClientLayer::new().layer(downstream.clone());
            tracing::info_span!(target: "myapp", "handler").in_scope(|| {
                let request = Request::get("http://inventory.internal/stock/7")
                    .body(())
                    .unwrap();
                now(client.call(request)).unwrap();
            });
        });
        xray.flush(Duration::from_secs(5)).unwrap();
        let traces = exporter.traces();
        assert_eq!(traces.len(), 1);
        let segment = &traces[0];
        assert!(segment.get("subsegments").is_none(), "{segment}");
        let sent = downstream.0.lock().unwrap();
        let header = TraceHeader::from_headers(&sent[0]).expect("the trace header is sent");
        assert_eq!(
            header.root().map(|r| r.to_string()).as_deref(),
            segment["trace_id"].as_str()
        );
        assert_eq!(
            header.parent().map(|p| p.to_string()).as_deref(),
            segment["id"].as_str()
        );
        assert_eq!(header.sampled(), crate::Sampled::Yes);
    }

    /// A client whose future panics.
    struct Panics;

    impl<B> Service<Request<B>> for Panics {
        type Response = Response<()>;
        type Error = Infallible;
        type Future =
            std::future::PollFn<fn(&mut Context<'_>) -> Poll<Result<Response<()>, Infallible>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            std::future::poll_fn(|_| panic!("the client failed"))
        }
    }

    /// The subsegment of one call through `client` inside a handler span,
    /// and whether the call failed (`Err` when it panicked: the panic is
    /// caught here, after it went through the layer).
    fn one_call<S>(client: S) -> (serde_json::Value, std::thread::Result<bool>)
    where
        S: Service<Request<()>, Response = Response<()>>,
        S::Error: fmt::Display + 'static,
    {
        let mut outcome = Ok(false);
        let (traces, _) = capture(|| {
            let mut client = XrayClientLayer::new().layer(client);
            tracing::info_span!("handler").in_scope(|| {
                let request = Request::get("http://inventory.internal/stock")
                    .body(())
                    .unwrap();
                outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    now(client.call(request)).is_err()
                }));
            });
        });
        (traces[0]["subsegments"][0].clone(), outcome)
    }

    #[test]
    fn a_panicking_call_is_a_fault() {
        let (call, outcome) = one_call(Panics);
        assert!(outcome.is_err(), "the panic goes on");
        assert_eq!(call["fault"], true, "{call}");
        assert_eq!(
            call["cause"]["exceptions"][0]["message"], "panicked",
            "{call}"
        );
    }

    #[test]
    fn a_failed_call_is_a_fault_with_the_error_text() {
        let (call, outcome) = one_call(Refused);
        assert!(outcome.unwrap(), "the call failed");
        assert_eq!(call["fault"], true, "{call}");
        assert_eq!(
            call["cause"]["exceptions"][0]["message"],
            "http://inventory.internal/stock: connection refused (user@host)",
            "{call}"
        );
        assert!(!call.to_string().contains("hunter"), "{call}");
    }

    #[test]
    fn a_call_is_traced_downstream_only_when_the_layer_says_so() {
        let (traces, _) = capture(|| {
            let mut third_party = XrayClientLayer::new().layer(Ok200::default());
            let mut own = XrayClientLayer::new()
                .with_downstream_traced(true)
                .layer(Ok200::default());
            tracing::info_span!("handler").in_scope(|| {
                let get = || Request::get("http://api.example.com/x").body(()).unwrap();
                now(third_party.call(get())).unwrap();
                now(own.call(get())).unwrap();
            });
        });
        let calls = traces[0]["subsegments"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[0]["http"]["request"].get("traced").is_none(),
            "{}",
            calls[0]
        );
        assert_eq!(calls[1]["http"]["request"]["traced"], true, "{}", calls[1]);
        assert_eq!(calls[0]["namespace"], "remote");
    }

    #[test]
    fn the_url_has_no_credentials_query_or_fragment() {
        let (traces, text) = capture(|| {
            let mut client = XrayClientLayer::new().layer(Ok200::default());
            tracing::info_span!("handler").in_scope(|| {
                for uri in [
                    "https://user:pa55word@api.example.com:8443/v1/x?X-Amz-Signature=abc&token=t0p",
                    "http://inventory.internal?token=t0p",
                ] {
                    now(client.call(Request::get(uri).body(()).unwrap())).unwrap();
                }
            });
        });
        for secret in ["pa55word", "X-Amz-Signature", "t0p", "user:"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let calls = traces[0]["subsegments"].as_array().unwrap();
        let urls: Vec<_> = calls.iter().map(|c| &c["http"]["request"]["url"]).collect();
        assert_eq!(
            urls,
            [
                "https://api.example.com:8443/v1/x",
                "http://inventory.internal/"
            ]
        );
        assert_eq!(calls[0]["name"], "api.example.com");
    }
}
