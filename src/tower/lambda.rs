//! Flushing after each call (AWS Lambda invocations).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::handle::XrayHandle;

/// The flush timeout of [`XrayFlushLayer::new`].
///
/// ```
/// assert_eq!(tracing_xray::tower::DEFAULT_FLUSH_TIMEOUT, std::time::Duration::from_millis(500));
/// ```
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// A [`tower_layer::Layer`] that flushes an [`XrayHandle`] each time a call's
/// future completes, after dropping that future (so the spans it held, such
/// as `lambda_runtime`'s `Lambda runtime invoke` span, are closed first).
///
/// Made for AWS Lambda, which may freeze the process as soon as the runtime
/// asks for the next event: put it outermost on `lambda_runtime`'s
/// `Runtime`, and every invocation's subsegments reach the daemon before the
/// next event is polled (those whose spans ended: work the handler spawned
/// in its span keeps that span, and what it holds, open until the work ends).
/// `lambda_runtime` has already posted the invocation's response by then, so
/// the caller does not wait for the flush.
///
/// The flush is synchronous: it blocks the polling thread for at most the
/// timeout (with the UDP daemon, microseconds). In sequential mode that
/// thread has nothing else to do; with `lambda_runtime`'s `run_concurrent`
/// on a current-thread runtime, the other invocations wait for it too: run
/// concurrent invocations on a multi-thread runtime (`#[tokio::main]`'s
/// default), where they go on on the other threads. Flush errors
/// (a timeout, a shut-down layer) are ignored; the call's own result is
/// returned unchanged.
///
/// ```no_run
/// use lambda_runtime::{layers::TracingLayer, service_fn, Error, LambdaEvent, Runtime};
/// use serde_json::Value;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::tower::XrayFlushLayer;
///
/// async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
///     Ok(event.payload)
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), Error> {
///     let layer = tracing_xray::layer(); // detects Lambda from the environment
///     let xray = layer.handle();
///     tracing_subscriber::registry().with(layer).init();
///     Runtime::new(service_fn(handler))
///         .layer(TracingLayer::new())
///         .layer(XrayFlushLayer::new(xray))
///         .run()
///         .await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct XrayFlushLayer {
    handle: XrayHandle,
    timeout: Duration,
}

impl XrayFlushLayer {
    /// Flushes `handle` after each call, waiting at most
    /// [`DEFAULT_FLUSH_TIMEOUT`].
    ///
    /// ```
    /// use tracing_xray::tower::XrayFlushLayer;
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let flush = XrayFlushLayer::new(layer.handle());
    /// # drop(flush);
    /// ```
    pub fn new(handle: XrayHandle) -> Self {
        XrayFlushLayer {
            handle,
            timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }

    /// Sets the longest wait for each flush.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_xray::tower::XrayFlushLayer;
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let flush = XrayFlushLayer::new(layer.handle()).with_timeout(Duration::from_millis(200));
    /// # drop(flush);
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<S> Layer<S> for XrayFlushLayer {
    type Service = XrayFlush<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XrayFlush {
            inner,
            handle: self.handle.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service made by [`XrayFlushLayer`].
///
/// ```
/// use tower_layer::Layer;
/// use tracing_xray::tower::{XrayFlush, XrayFlushLayer};
///
/// # #[derive(Clone)] struct Handler;
/// let layer = tracing_xray::builder()
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// let service: XrayFlush<Handler> = XrayFlushLayer::new(layer.handle()).layer(Handler);
/// # drop(service);
/// ```
#[derive(Clone, Debug)]
pub struct XrayFlush<S> {
    inner: S,
    handle: XrayHandle,
    timeout: Duration,
}

impl<S, Request> Service<Request> for XrayFlush<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = XrayFlushFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        XrayFlushFuture {
            inner: Some(self.inner.call(request)),
            handle: self.handle.clone(),
            timeout: self.timeout,
        }
    }
}

pin_project! {
    /// The response future of [`XrayFlush`].
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    /// use tracing_xray::tower::{XrayFlushFuture, XrayFlushLayer};
    ///
    /// # use std::convert::Infallible;
    /// # use std::task::{Context, Poll};
    /// # #[derive(Clone)]
    /// # struct Handler;
    /// # impl tower_service::Service<u32> for Handler {
    /// #     type Response = u32;
    /// #     type Error = Infallible;
    /// #     type Future = std::future::Ready<Result<u32, Infallible>>;
    /// #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    /// #         Poll::Ready(Ok(()))
    /// #     }
    /// #     fn call(&mut self, event: u32) -> Self::Future {
    /// #         tracing::info_span!("handler").in_scope(|| std::future::ready(Ok(event * 2)))
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    ///
    /// // `Handler` opens a `handler` span for each event.
    /// let mut service = XrayFlushLayer::new(xray).layer(Handler);
    /// let future: XrayFlushFuture<_> = service.call(21);
    /// assert_eq!(future.await, Ok(42));
    /// assert_eq!(exporter.len(), 1); // flushed as the call completed
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct XrayFlushFuture<F> {
        #[pin]
        inner: Option<F>,
        handle: XrayHandle,
        timeout: Duration,
    }
}

impl<F: Future> Future for XrayFlushFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("XrayFlushFuture polled after completion");
        };
        let output = ready!(inner.poll(cx));
        // Drop the call's future first: the spans it holds close now.
        this.inner.set(None);
        let _ = this.handle.flush(*this.timeout);
        Poll::Ready(output)
    }
}
