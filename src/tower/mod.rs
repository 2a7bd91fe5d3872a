//! Tower middleware (feature `tower`): X-Ray for HTTP servers and clients
//! built on the `http` crate's types, and a per-invocation flush for AWS
//! Lambda.
//!
//! | layer | wraps | does |
//! |---|---|---|
//! | [`XrayServerLayer`] | a server's `Service<http::Request<B>>` | starts the request's root span (a segment) from the incoming `X-Amzn-Trace-Id`, answers with the trace id in the response header, records the status |
//! | [`XrayClientLayer`] | a client's `Service<http::Request<B>>` | opens a `remote` subsegment per call and sends the header with `Parent` = that subsegment |
//! | [`XrayFlushLayer`] | any service, such as `lambda_runtime`'s | flushes the [`XrayHandle`](crate::XrayHandle) when each call's future completes |
//!
//! Tracing never fails a request: malformed or missing headers start a fresh
//! trace, and a header that cannot be written is left out.
//!
//! ```
//! use std::time::Duration;
//! use tower_layer::Layer;
//! use tower_service::Service;
//! use tracing_subscriber::prelude::*;
//! use tracing_xray::tower::XrayServerLayer;
//!
//! # use std::convert::Infallible;
//! # use std::task::{Context, Poll};
//! # #[derive(Clone)]
//! # struct Hello;
//! # impl tower_service::Service<http::Request<String>> for Hello {
//! #     type Response = http::Response<String>;
//! #     type Error = Infallible;
//! #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
//! #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//! #         Poll::Ready(Ok(()))
//! #     }
//! #     fn call(&mut self, _: http::Request<String>) -> Self::Future {
//! #         std::future::ready(Ok(http::Response::new("hello".to_owned())))
//! #     }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let exporter = tracing_xray::export::InMemoryExporter::new();
//! let layer = tracing_xray::builder().with_exporter(exporter.clone()).build();
//! let xray = layer.handle();
//! let _default = tracing_subscriber::registry().with(layer).set_default();
//!
//! // `Hello`: any `Service<http::Request<B>, Response = http::Response<R>>`.
//! let mut service = XrayServerLayer::new().layer(Hello);
//! let request = http::Request::builder()
//!     .uri("http://shop.example.com/cart?id=7")
//!     .header("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
//!     .body(String::new())
//!     .unwrap();
//! std::future::poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
//! let response = service.call(request).await.unwrap();
//! assert_eq!(response.headers()["x-amzn-trace-id"], "Root=1-5759e988-bd862e3fe1be46a994272793");
//! drop(response); // sent: the segment ends with the response's body
//!
//! xray.flush(Duration::from_secs(1)).unwrap();
//! let segment = &exporter.traces()[0];
//! assert_eq!(segment["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
//! // Scheme, host and path: the query is never sent.
//! assert_eq!(segment["http"]["request"]["url"], "http://shop.example.com/cart");
//! assert_eq!(segment["http"]["response"]["status"], 200);
//! # }
//! ```
//!
//! # Span fields
//!
//! The layers describe requests with OpenTelemetry's semantic-convention
//! names, so the X-Ray `http` block is filled as for any span that uses them:
//!
//! | field | server span | client span |
//! |---|---|---|
//! | `otel.kind` | `"server"` | `"client"` (X-Ray `namespace: "remote"`) |
//! | `xray.traced` | | `true` with [`XrayClientLayer::with_downstream_traced`] (X-Ray `http.request.traced`) |
//! | `xray.name` | | the remote host (the subsegment's name) |
//! | `http.request.method` | the method | the method |
//! | `url.full` | `scheme://host[:port]/path` when the host is known (no query) | the request URI's scheme, host, port and path, when absolute (no user info or query) |
//! | `url.path` | the path | the path |
//! | `http.host` | the `Host` (or URI) host and port, as the client wrote them (what a sampling rule's `host` matches, as in the X-Ray SDKs) | |
//! | `server.address` | | the URI (or `Host`) host |
//! | `user_agent.original` | `User-Agent` | `User-Agent` |
//! | `http.client_ip` | the first `X-Forwarded-For` entry (X-Ray `client_ip`, with `x_forwarded_for: true`) | |
//! | `net.peer.ip` | the connection's peer, when the request's extensions hold its `SocketAddr` (X-Ray `client_ip` without a forwarded header) | |
//! | `http.response.status_code` | recorded when the response is ready | recorded when the response arrives |
//! | `http.response.body.size` | the `Content-Length`, else the bytes of the body sent | the response's `Content-Length` |
//! | `otel.status_code` | `"ERROR"` when the service returns an error or panics | `"ERROR"` when the call fails, panics, or is dropped before its response |
//! | `otel.status_message` | the error's text, `"panicked"`, or why the request was cancelled | the error's text, `"panicked"`, or `"cancelled: …"` |
//! | `rpc.grpc.status_code`, `error.message` | a gRPC response's `grpc-status` (from its trailers or, trailers-only, its headers) and `grpc-message`: the flags of the HTTP status the code stands for | the same, from a trailers-only response's headers |
//! | `xray.fault` | `true` when the service, or its response body, panics, or the body fails after the head went out (X-Ray `fault`, whatever the status) | `true` when the client panics |
//! | `xray.error` | `true` when the request was cancelled before its response was sent (X-Ray `error`) | |
//! | `xray.trace_header` | the incoming header (continues the trace) | |

mod client;
mod lambda;
mod server;

pub use client::{XrayClient, XrayClientFuture, XrayClientLayer};
pub use lambda::{DEFAULT_FLUSH_TIMEOUT, XrayFlush, XrayFlushFuture, XrayFlushLayer};
pub use server::{XrayBody, XrayServer, XrayServerFuture, XrayServerLayer};

use ::http::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderName, USER_AGENT};
use ::http::uri::{Authority, Uri};

/// Marks `span` a fault (`xray.fault`, whatever a status already recorded
/// says; exception `"panicked"`) when dropped by a panic's unwinding that
/// started after it was made: the service it guards (a handler, a client, a
/// response body) panicked, and the span closes as the unwinding drops it.
struct FaultOnPanic<'a> {
    span: &'a tracing::Span,
    was_panicking: bool,
}

impl<'a> FaultOnPanic<'a> {
    fn new(span: &'a tracing::Span) -> Self {
        FaultOnPanic {
            span,
            was_panicking: std::thread::panicking(),
        }
    }
}

impl Drop for FaultOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.was_panicking {
            self.span.record("otel.status_code", "ERROR");
            self.span.record("xray.fault", true);
            self.span.record("otel.status_message", "panicked");
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's authority: the URI's, else the `Host` header's.
fn authority_of(uri: &Uri, headers: &HeaderMap) -> Option<Authority> {
    uri.authority()
        .cloned()
        .or_else(|| header_str(headers, &HOST)?.parse().ok())
}

/// `scheme://host[:port]/path`: what a request's span tells of its URL
/// (SPEC §1.4), without the user info, query and fragment, which can carry
/// credentials, tokens and signatures. Shared by the client and server
/// layers.
fn request_url(scheme: Option<&str>, authority: &Authority, path: &str) -> String {
    let scheme = scheme.unwrap_or("http");
    let host = authority.host();
    // Empty, or the asterisk form (`OPTIONS *`: the server as a whole),
    // which written after the host would name another host.
    let path = if path.starts_with('/') { path } else { "/" };
    match authority.port() {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// Records a gRPC status (`grpc-status`, in a response's trailers, or its
/// headers for a trailers-only response) and its message on `span`: the
/// flags of the HTTP status the code stands for (a gRPC error travels in a
/// 200), and the message as the exception's.
fn record_grpc_status(span: &tracing::Span, headers: &HeaderMap) {
    let Some(code) = header_str(headers, &GRPC_STATUS).and_then(|c| c.trim().parse::<u32>().ok())
    else {
        return;
    };
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        // Percent-encoded (gRPC over HTTP/2: `%20` for a space).
        if let Some(message) = header_str(headers, &GRPC_MESSAGE)
            .filter(|m| !m.is_empty())
            .map(|m| crate::percent::decode(m, false).unwrap_or_else(|| m.to_owned()))
        {
            span.record("error.message", message.as_str());
        }
    }
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// A response's `Content-Length`, when it has one (one value, or the same
/// value repeated).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    // Repeated (in lines of its own, or in one, separated by commas), the
    // same number each time: that length (RFC 9110 §8.6).
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().flat_map(|v| {
        let text = v.to_str().unwrap_or(",");
        text.split(',').map(|l| l.trim().parse::<u64>().ok())
    });
    let length = lengths.next()??;
    lengths.all(|l| l == Some(length)).then_some(length)
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, &USER_AGENT)
}
