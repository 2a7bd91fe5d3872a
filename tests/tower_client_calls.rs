//! `XrayClientLayer` driven by hyper-util's real client over real sockets
//! on 127.0.0.1, against scripted local servers. Each test was a finding of
//! a hunt of the client layer: its comment says what was sent before the
//! fix, the evidence, and what is sent now.
#![cfg(feature = "tower")]

mod common;
#[path = "support/http.rs"]
mod http_support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use http_support::*;
use hyper::body::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_layer::Layer;
use tower_service::Service;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::tower::XrayClientLayer;

/// [`common::traces_on_runtime`], sampling everything.
fn run<F, Fut>(n: usize, body: F) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::traces_on_runtime(AlwaysSample, n, body)
}

/// A server on 127.0.0.1 that answers every connection's first request
/// with the bytes `reply`, then closes, keeping each request head it read.
async fn scripted(reply: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, heads)
}

/// One call through `XrayClientLayer` (traced downstream or not) to `url`
/// inside a `job` span; the response's whole body, or the error's text.
async fn one_call(url: String, traced: bool) -> Result<(u16, Bytes), String> {
    let mut client = XrayClientLayer::new()
        .with_downstream_traced(traced)
        .layer(http_client());
    let job = tracing::info_span!("job");
    let request = Request::get(url).body(Empty::new()).unwrap();
    let call = job.in_scope(|| client.call(request));
    let response = tracing::Instrument::instrument(call, job.clone())
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Before the fix: with `with_downstream_traced(true)`, a call whose connection
/// is refused is still recorded with `http.request.traced: true`. The
/// request never reached the callee, so the callee's segment, naming this
/// subsegment as its parent, never comes: X-Ray treats the trace as
/// incomplete (broken) for ever, exactly what `with_downstream_traced`'s own
/// rustdoc warns of ("for a third-party API that segment never comes, and
/// the trace would look broken").
///
/// Evidence: aws-xray-sdk-node `packages/core/lib/patchers/http_p.js`
/// (`errorCapturer`): `var madeItToDownstream = (e.code !== 'ECONNREFUSED');
/// subsegment.addRemoteRequestData(this, null, madeItToDownstream &&
/// downstreamXRayEnabled)`: a refused connection is never marked traced.
/// Here the error's `source()` chain (the client's errors boxed, as the
/// README recommends) holds an `io::Error` of kind `ConnectionRefused`.
///
/// Now: a fault with the exception, but no `traced` flag when the
/// connection was refused.
#[test]
fn a_refused_call_is_not_marked_traced_downstream() {
    let traces = run(1, || async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut client = XrayClientLayer::new()
            .with_downstream_traced(true)
            .layer(BoxErrors(http_client()));
        let job = tracing::info_span!("job");
        let request = Request::get(format!("http://{addr}/orders"))
            .body(Empty::new())
            .unwrap();
        let call = job.in_scope(|| client.call(request));
        let outcome = tracing::Instrument::instrument(call, job.clone()).await;
        let error = outcome.expect_err("the connection was refused");
        let mut refused = false;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            source = e.source();
        }
        assert!(
            refused,
            "the chain says the connection was refused: {error:?}"
        );
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["namespace"], "remote", "{call:#}");
    assert_eq!(call["fault"], true, "{call:#}");
    assert!(
        call["http"]["request"].get("traced").is_none(),
        "the callee never got the request, yet X-Ray is told to wait for its segment: {call:#}"
    );
    assert!(
        call["metadata"]["tracing"].get("xray.traced").is_none(),
        "{call:#}"
    );
}

/// Before the fix: a response whose `Content-Length` header is repeated with the
/// same value (`Content-Length: 5` twice, which proxies and some servers
/// emit) is accepted by hyper as a 5-byte body, and the caller reads the 5
/// bytes; but the call's subsegment gets no `http.response.content_length`
/// at all, because `tower::content_length` refuses any repeated header.
///
/// Evidence: RFC 9110 §8.6 lets a recipient treat identical repeated
/// values as that single length, which hyper does here (the body is read
/// whole as 5 bytes); Go's net/http deduplicates identical
/// `Content-Length` values (`transfer.go` `fixLength`), and
/// aws-xray-sdk-go's `xray/client.go` then records
/// `strconv.Atoi(resp.Header.Get("Content-Length"))` = 5. The README's field
/// table promises "the response's `Content-Length`" on the client span.
///
/// Now: `content_length: 5` when every `Content-Length` value is the
/// same number (the length the client itself used).
#[test]
fn a_repeated_identical_content_length_is_still_recorded() {
    let traces = run(1, || async {
        let (addr, _) =
            scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
                .await;
        let outcome = one_call(format!("http://{addr}/greeting"), false).await;
        assert_eq!(
            outcome,
            Ok((200, Bytes::from_static(b"hello"))),
            "hyper took the length as 5"
        );
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["http"]["response"]["status"], 200, "{call:#}");
    assert_eq!(
        call["http"]["response"]["content_length"], 5,
        "the body was 5 bytes by the response's own (repeated) Content-Length: {call:#}"
    );
}

/// Before the fix: a call in flight when its task panics elsewhere (a sibling
/// future of the same `join!` hits a bug) is dropped by the unwinding
/// before its response arrived, yet its subsegment says nothing of it: no
/// status, no `fault`, no exception, the shape of a call that succeeded.
/// `XrayClientFuture`'s `PinnedDrop` skips its "cancelled" mark whenever
/// `std::thread::panicking()`, assuming the panic came through the call
/// (whose `FaultOnPanic` marks it) — here the panic never touched the call.
///
/// Evidence: `XrayClientFuture`'s rustdoc: "A call dropped before it
/// completes (a timeout around it gave up) is a fault too, whose exception
/// says it was cancelled"; README field table: `otel.status_code` is
/// `"ERROR"` when the call "fails, panics, or is dropped before its
/// response". The `in_poll` flag already tells a panic of the call's own
/// poll apart.
///
/// Now: the call is a fault whose exception says it was cancelled (or
/// any failure mark), not a bare success-shaped subsegment.
#[test]
fn a_call_cut_short_by_a_panic_elsewhere_in_its_task_is_not_a_success() {
    let traces = run(1, || async {
        // Accepts connections (the kernel's backlog) but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut client = XrayClientLayer::new().layer(http_client());
            let job = tracing::info_span!("job");
            let request = Request::get(format!("http://{addr}/inventory"))
                .body(Empty::new())
                .unwrap();
            let call = job.in_scope(|| client.call(request));
            let call = tracing::Instrument::instrument(call, job.clone());
            let sibling = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if std::hint::black_box(true) {
                    panic!("a bug in the sibling");
                }
            };
            let _ = tokio::join!(call, sibling);
        });
        let outcome = task.await;
        assert!(outcome.is_err(), "the task panicked");
        drop(silent);
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["namespace"], "remote", "{call:#}");
    assert!(
        call["http"].get("response").is_none(),
        "no response arrived: {call:#}"
    );
    assert_eq!(
        call["fault"], true,
        "the call was dropped before its response, yet looks like a success: {call:#}"
    );
}

/// A `Content-Length: 5, 5` (the same length, combined into one field
/// line) gets no `content_length`, though hyper reads the 5-byte body.
///
/// Found by a second review of this stop's fixes. Before the fix: 4080dde made `tower::content_length` accept "the same value
/// repeated", citing RFC 9110 §8.6, but only as separate field lines:
/// each value is `trim().parse::<u64>()`d whole, so the one line
/// `Content-Length: 5, 5` is no number and the subsegment has no
/// `http.response.content_length`.
///
/// Evidence: RFC 9110 §8.6 describes exactly this form ("a Content-Length
/// header field value consisting of the same decimal value repeated as a
/// comma-separated list (e.g, "Content-Length: 42, 42") … the recipient
/// MUST either reject the message as invalid or replace the duplicated
/// field values with a single valid Content-Length"); hyper does the
/// latter (`headers::content_length_parse_all_values` splits each value on
/// `,`), and the caller reads the body as 5 bytes. The separate-lines case
/// is tests/tower_client_calls.rs
/// `a_repeated_identical_content_length_is_still_recorded`.
///
/// Now: `content_length: 5`, as for two `Content-Length: 5` lines.
#[test]
fn a_content_length_repeated_in_one_line_is_still_recorded() {
    let traces = run(1, || async {
        let (addr, _) = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello").await;
        let mut client = XrayClientLayer::new().layer(http_client());
        let job = tracing::info_span!("job");
        let request = Request::get(format!("http://{addr}/greeting"))
            .body(Empty::new())
            .unwrap();
        let call = job.in_scope(|| client.call(request));
        let response = tracing::Instrument::instrument(call, job.clone())
            .await
            .expect("hyper takes the combined length");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            Bytes::from_static(b"hello"),
            "hyper took the length as 5"
        );
    });
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let call = &traces[0]["subsegments"][0];
    assert_eq!(call["http"]["response"]["status"], 200, "{call:#}");
    assert_eq!(
        call["http"]["response"]["content_length"], 5,
        "the body was 5 bytes by its `Content-Length: 5, 5`: {call:#}"
    );
}
