//! tracing-xray's integrations where a filter hides some of their spans, in
//! real stacks (aws-sdk-dynamodb with `XrayInterceptor`, hyper's
//! connection-level client behind `XrayClientLayer`) on a multi-threaded
//! tokio runtime. Every server listens on 127.0.0.1; the AWS client talks to
//! a fake DynamoDB with fake static credentials. Found by a hunt; each test
//! failed before its fix.
#![cfg(all(feature = "tower", feature = "aws-sdk"))]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::response::IntoResponse;
use http_body_util::Empty;
use hyper::body::Bytes;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::{AlwaysSample, Sampler};
use tracing_xray::tower::XrayClientLayer;
use tracing_xray::{Detectors, TraceHeader, XrayHandle};

// ---------------------------------------------------------------- harness

struct Harness {
    exporter: InMemoryExporter,
    xray: XrayHandle,
    dispatch: tracing::Dispatch,
}

fn harness_with(
    sampler: impl Sampler + 'static,
    filter: impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static,
) -> Harness {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(Detectors::none())
        .with_sampler(sampler)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle().clone();
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer.with_filter(filter)));
    Harness {
        exporter,
        xray,
        dispatch,
    }
}

fn harness() -> Harness {
    harness_with(AlwaysSample, LevelFilter::INFO)
}

impl Harness {
    /// Runs `f` on a 4-worker multi-thread runtime where every thread has
    /// the harness' subscriber as its default.
    fn run<F: std::future::Future>(&self, f: impl FnOnce() -> F) -> F::Output {
        let d = self.dispatch.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&d);
                std::mem::forget(guard);
            })
            .build()
            .unwrap();
        let _main = tracing::dispatcher::set_default(&self.dispatch);
        let out = rt.block_on(f());
        rt.shutdown_timeout(Duration::from_secs(2));
        out
    }

    /// Every document sent, schema-checked.
    fn documents(&self) -> Vec<Value> {
        self.xray.flush(Duration::from_secs(10)).unwrap();
        let schema = common::schema();
        let docs = self.exporter.json_documents();
        for d in &docs {
            common::assert_schema_valid(&schema, d);
        }
        docs
    }
}

fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    (tokio::net::TcpListener::from_std(l).unwrap(), addr)
}

fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (l, addr) = listener();
    let h = tokio::spawn(async move {
        let _ = axum::serve(l, router).await;
    });
    (addr, h)
}

fn all_nodes(doc: &Value) -> Vec<&Value> {
    common::walk(doc).into_iter().map(|(_, n)| n).collect()
}

// ---------------------------------------------------------------- AWS bits

fn dynamo(endpoint: &str, attempts: u32) -> aws_sdk_dynamodb::Client {
    dynamo_with(endpoint, attempts, true)
}

fn dynamo_with(endpoint: &str, attempts: u32, interceptor: bool) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-3"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(5)),
        );
    let conf = if interceptor {
        conf.interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
    } else {
        conf
    };
    aws_sdk_dynamodb::Client::from_conf(conf.build())
}

async fn get_item(c: &aws_sdk_dynamodb::Client) -> Result<(), String> {
    c.get_item()
        .table_name("orders")
        .key("id", AttributeValue::S("o-1".into()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A fake DynamoDB on 127.0.0.1: records every request's trace header and
/// answers with `reply(n)` for the n-th request (1-based).
fn fake_dynamo(
    reply: impl Fn(usize) -> (u16, &'static str) + Send + Sync + 'static,
) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let reply = Arc::new(reply);
    let app = Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap| {
            let record = record.clone();
            let reply = reply.clone();
            async move {
                let n = {
                    let mut s = record.lock().unwrap();
                    s.push(
                        headers
                            .get("x-amzn-trace-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned(),
                    );
                    s.len()
                };
                let (status, body) = reply(n);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [
                        ("x-amzn-requestid", format!("REQ-{n}")),
                        ("content-type", "application/x-amz-json-1.0".to_owned()),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let (addr, _h) = serve(app);
    (addr, seen)
}

// ================================================================ bugs

/// One `GetItem` inside a `handler` span (target `myapp`), under `filter`,
/// the interceptor registered; returns the one document and the trace
/// headers the fake DynamoDB received.
fn one_get_item_under(filter: Targets) -> (Value, Vec<String>) {
    let h = harness_with(AlwaysSample, filter);
    let seen = h.run(|| async {
        let (addr, seen) = fake_dynamo(|_| (200, "{}"));
        let c = dynamo(&format!("http://{addr}"), 1);
        get_item(&c)
            .instrument(tracing::info_span!(target: "myapp", "handler"))
            .await
            .unwrap();
        seen.lock().unwrap().clone()
    });
    let mut docs = h.documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    (docs.remove(0), seen)
}

/// README (AWS SDK): "enable them (for example
/// `EnvFilter::new("info,aws_smithy_runtime=debug,aws_sdk_dynamodb=debug,...")`), or, for AWS
/// calls, add `XrayInterceptor` ... it adds ... the outgoing `X-Amzn-Trace-Id` (Parent = the
/// call's subsegment)"; `src/span_ext.rs` `call_header`: "When a filter hides the call's own span
/// (a global filter for the application's crates only), the nearest traced span ... is the
/// downstream's parent". SPEC §3.1: downstream `Parent` = "id of the subsegment making the call".
///
/// It used to: with the SDK's DEBUG spans enabled and a filter for the application's own crates
/// (`warn,myapp=info,aws_smithy_runtime=debug,aws_sdk_dynamodb=debug`, which hides the
/// interceptor's INFO span), the header fell back to `Span::current()`, one of the SDK's internal
/// spans (`try_attempt`), which the assembler folds into the `DynamoDB` subsegment: its `Parent`
/// named an id in no document. The header now names the AWS operation the span folds into.
#[test]
fn aws_header_parent_is_the_calls_subsegment_when_the_interceptor_span_is_filtered() {
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("myapp", LevelFilter::INFO)
        .with_target("aws_smithy_runtime", LevelFilter::DEBUG)
        .with_target("aws_sdk_dynamodb", LevelFilter::DEBUG);
    let (doc, seen) = one_get_item_under(filter);
    let nodes = all_nodes(&doc);
    let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let call = nodes
        .iter()
        .find(|n| n["namespace"] == "aws")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(seen.len(), 1);
    let header = TraceHeader::parse(&seen[0]);
    let parent = header.parent().expect("a Parent").to_string();
    assert!(
        ids.contains(&parent.as_str()),
        "the header sent ({}) names parent {parent}, which is in no document (ids sent: {ids:?})",
        seen[0]
    );
    assert_eq!(parent, call["id"].as_str().unwrap(), "{doc:#}");
}

/// hyper's connection-level client (`hyper::client::conn::http1`) as a tower service: it
/// sends what it is given, and wants origin-form URIs (`/stock/7`) with a `Host` header.
#[derive(Clone)]
struct Conn(Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>>);

impl Conn {
    async fn to(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        Conn(Arc::new(tokio::sync::Mutex::new(sender)))
    }
}

impl Service<Request<Empty<Bytes>>> for Conn {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, hyper::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), hyper::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, r: Request<Empty<Bytes>>) -> Self::Future {
        let s = self.0.clone();
        Box::pin(async move { s.lock().await.send_request(r).await })
    }
}

/// README (span table): "`url.scheme` + `server.address`/`http.host` + `server.port` +
/// `url.path`/`http.target` → `http.request.url`: scheme, host, port and path"; SPEC §1.4:
/// `url` = the request's scheme, host and path (Go's `r.Host`, port included). The server
/// layer takes the authority from the URI, else from the `Host` header, port included
/// (`authority_of`).
///
/// It used to: `XrayClientLayer` took `url.full` only from an absolute URI, and the `Host`
/// header's host without its port, so a call sent with an origin-form URI and
/// `Host: inventory.internal:<port>` (hyper's connection-level client) got
/// `http://inventory.internal/stock/7`: another endpoint than the one called.
#[test]
fn client_call_with_origin_form_uri_keeps_the_host_headers_port() {
    let h = harness();
    let port = h.run(|| async {
        let (addr, _s) =
            serve(Router::new().route("/stock/{id}", axum::routing::get(|| async { "7" })));
        let mut c = XrayClientLayer::new().layer(Conn::to(addr).await);
        async {
            let request = Request::get("/stock/7")
                .header("host", format!("inventory.internal:{}", addr.port()))
                .body(Empty::new())
                .unwrap();
            let r = c.call(request).await.unwrap();
            assert_eq!(r.status(), 200);
        }
        .instrument(tracing::info_span!("handler"))
        .await;
        addr.port()
    });
    let docs = h.documents();
    let call = &docs[0]["subsegments"][0];
    assert_eq!(call["name"], "inventory.internal", "{call:#}");
    assert_eq!(
        call["http"]["request"]["url"],
        format!("http://inventory.internal:{port}/stock/7"),
        "{call:#}"
    );
}
