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
//! # Span fields
//!
//! The layers describe requests with OpenTelemetry's semantic-convention
//! names, so the X-Ray `http` block is filled as for any span that uses them:
//!
//! | field | server span | client span |
//! |---|---|---|
//! | `otel.kind` | `"server"` | `"client"` (X-Ray `namespace: "remote"`) |
//! | `xray.traced` | | `true` (X-Ray `http.request.traced`) |
//! | `xray.name` | | the remote host (the subsegment's name) |
//! | `http.request.method` | the method | the method |
//! | `url.full` | `scheme://host/path?query` when the host is known | the request URI when absolute |
//! | `url.path` | the path | the path |
//! | `server.address` | the `Host` (or URI) host | the URI (or `Host`) host |
//! | `user_agent.original` | `User-Agent` | `User-Agent` |
//! | `client.address` | the first `X-Forwarded-For` entry | |
//! | `http.response.status_code` | recorded when the response is ready | recorded when the response arrives |
//! | `otel.status_code` | `"ERROR"` when the service returns an error | `"ERROR"` when the call fails |
//! | `xray.trace_header` | the incoming header (continues the trace) | |

mod client;
mod lambda;
mod server;

pub use client::{XrayClient, XrayClientFuture, XrayClientLayer};
pub use lambda::{XrayFlush, XrayFlushFuture, XrayFlushLayer, DEFAULT_FLUSH_TIMEOUT};
pub use server::{XrayServer, XrayServerFuture, XrayServerLayer};

use ::http::header::{HeaderMap, HeaderName, HOST, USER_AGENT};
use ::http::uri::{Authority, Uri};

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's host: from the URI, else from the `Host` header, without
/// the port.
fn host_of(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(host) = uri.host() {
        return Some(host.to_owned());
    }
    let authority: Authority = header_str(headers, &HOST)?.parse().ok()?;
    Some(authority.host().to_owned())
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, &USER_AGENT)
}
