//! Two HTTP services in one process, each with its own `XrayLayer` (its own
//! service name) on its own thread and current-thread runtime: service A
//! handles `/a` by calling service B through `XrayClientLayer`; both serve
//! through `XrayServerLayer`. Documents arrive at a real UDP "daemon".
#![cfg(feature = "tower")]

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service;
use tracing_subscriber::prelude::*;
use tracing_xray::export::UdpExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::tower::{XrayClientLayer, XrayServerLayer};
use tracing_xray::{TraceHeader, XrayHandle};

const WAIT: Duration = Duration::from_secs(10);
const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const EDGE_PARENT: &str = "53995c3f42cd8ad8";

type Body = Full<Bytes>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Sends one HTTP/1 request on a fresh connection and reads the whole body.
async fn send(request: Request<Body>) -> Result<Response<Body>, hyper::Error> {
    let authority = request.uri().authority().expect("absolute URI").as_str();
    let stream = TcpStream::connect(authority).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (parts, body) = sender.send_request(request).await?.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

/// A plain hyper client as a tower service (what `XrayClientLayer` wraps).
#[derive(Clone)]
struct HyperClient;

impl Service<Request<Body>> for HyperClient {
    type Response = Response<Body>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<Response<Body>, hyper::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(send(request))
    }
}

/// The application of each service.
#[derive(Clone)]
enum App {
    /// Calls B at `/b` and answers with B's body.
    A { b: SocketAddr },
    /// Answers with the trace header it received; `/b/fail` answers 503.
    B,
}

impl Service<Request<hyper::body::Incoming>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        match self.clone() {
            App::A { b } => Box::pin(async move {
                // Service B is traced: A's call says so.
                let mut client = XrayClientLayer::new()
                    .with_downstream_traced(true)
                    .layer(HyperClient);
                let rest = request.uri().path().strip_prefix("/a").unwrap_or_default();
                let call = Request::get(format!("http://{b}/b{rest}"))
                    .header("user-agent", "service-a")
                    .body(Body::default())
                    .unwrap();
                let body = match client.call(call).await {
                    Ok(response) => response.into_body().collect().await.unwrap().to_bytes(),
                    Err(e) => Bytes::from(format!("B failed: {e}")),
                };
                Ok(Response::new(Full::new(body)))
            }),
            App::B => {
                let seen = request
                    .headers()
                    .get("x-amzn-trace-id")
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
                let status = if request.uri().path() == "/b/fail" {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                Box::pin(async move {
                    let mut response = Response::new(Full::new(Bytes::from(seen)));
                    *response.status_mut() = status;
                    Ok(response)
                })
            }
        }
    }
}

/// A tower service served by hyper (which calls `call(&self)`).
struct Hyper<S>(S);

impl<S> hyper::service::Service<Request<hyper::body::Incoming>> for Hyper<S>
where
    S: Service<Request<hyper::body::Incoming>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Self::Future {
        self.0.clone().call(request)
    }
}

/// Starts a service on its own thread, runtime and default subscriber.
fn start_service(name: &'static str, daemon: SocketAddr, app: App) -> (SocketAddr, XrayHandle) {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let layer = tracing_xray::builder()
                .with_service_name(name)
                .with_detectors(tracing_xray::Detectors::none())
                .with_sampler(AlwaysSample)
                .with_exporter(UdpExporter::to_address(daemon))
                .build();
            let xray = layer.handle();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send((listener.local_addr().unwrap(), xray)).unwrap();
                    let service = XrayServerLayer::new().layer(app);
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let service = Hyper(service.clone());
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                })
            })
        })
        .unwrap();
    rx.recv().unwrap()
}

struct Services {
    daemon: common::Daemon,
    a: SocketAddr,
    xray: [XrayHandle; 2],
}

impl Services {
    fn start() -> Services {
        let daemon = common::Daemon::start();
        let (b, xray_b) = start_service("service-b", daemon.addr, App::B);
        let (a, xray_a) = start_service("service-a", daemon.addr, App::A { b });
        Services {
            daemon,
            a,
            xray: [xray_a, xray_b],
        }
    }

    /// `GET /a` on service A from an untraced edge: status, headers, body.
    fn get_a(&self, header: Option<HeaderValue>) -> (StatusCode, HeaderMap, String) {
        self.get(header, "/a")
    }

    fn get(&self, header: Option<HeaderValue>, path: &str) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(format!("http://{}{path}", self.a));
        if let Some(h) = header {
            request = request.header("X-Amzn-Trace-Id", h);
        }
        let request = request.body(Body::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let response = runtime.block_on(send(request)).expect("A answers");
        let (parts, body) = response.into_parts();
        let body = runtime.block_on(body.collect()).unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn flush(&self) {
        for x in &self.xray {
            x.flush(WAIT).unwrap();
        }
    }

    /// The documents received, checked against the official schema.
    fn documents(&self, n: usize) -> Vec<Value> {
        self.flush();
        let docs = self.daemon.documents(n, WAIT);
        let validator = common::schema();
        for doc in &docs {
            common::assert_schema_valid(&validator, doc);
        }
        docs
    }
}

fn by_name<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no segment named {name} in {docs:#?}"))
}

/// The value at `pointer`; fails the test when the field mapping did not
/// put it there.
fn mapped<'a>(doc: &'a Value, pointer: &str, field: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("`{field}` not mapped to {pointer}: {doc:#}"))
}

/// `namespace: "remote"`: a client call.
fn is_remote(doc: &Value) -> bool {
    doc["namespace"] == "remote"
}

#[test]
fn two_services_one_trace() {
    let services = Services::start();
    let (status, headers, b_saw) = services.get_a(None);
    assert_eq!(status, StatusCode::OK);

    let docs = services.documents(2);
    assert_eq!(docs.len(), 2, "one segment per service: {docs:#?}");
    let a = by_name(&docs, "service-a");
    let b = by_name(&docs, "service-b");
    assert_eq!(a["trace_id"], b["trace_id"], "one trace");
    assert!(a.get("parent_id").is_none(), "A is the trace's root");

    // A's calling subsegment: remote, traced, and B's parent.
    let call = &a["subsegments"][0];
    assert_eq!(call["name"], "127.0.0.1");
    assert_eq!(b["parent_id"], call["id"]);
    assert!(is_remote(call), "{call:#}");
    assert_eq!(
        mapped(call, "/http/request/traced", "xray.traced"),
        &Value::Bool(true)
    );
    assert_eq!(
        mapped(call, "/http/response/status", "http.response.status_code"),
        200
    );
    assert_eq!(
        mapped(b, "/http/request/method", "http.request.method"),
        "GET"
    );

    // What B received, and what A answered the edge.
    let b_saw = TraceHeader::parse(&b_saw);
    assert_eq!(b_saw.root().unwrap().to_string(), a["trace_id"]);
    assert_eq!(b_saw.parent().unwrap().to_string(), call["id"]);
    assert_eq!(
        b_saw.to_string(),
        format!(
            "Root={};Parent={};Sampled=1",
            a["trace_id"].as_str().unwrap(),
            call["id"].as_str().unwrap()
        )
    );
    assert_eq!(
        headers["x-amzn-trace-id"],
        format!("Root={}", a["trace_id"].as_str().unwrap())
    );
}

#[test]
fn sampled_zero_from_the_edge_propagates_without_documents() {
    let services = Services::start();
    let edge = format!("Root={ROOT};Parent={EDGE_PARENT};Sampled=0;Lineage=a87bd80c:1");
    let (status, headers, b_saw) = services.get_a(Some(HeaderValue::from_str(&edge).unwrap()));
    assert_eq!(status, StatusCode::OK);
    let b_saw = TraceHeader::parse(&b_saw);
    assert_eq!(b_saw.root().unwrap().to_string(), ROOT, "still propagated");
    assert_eq!(b_saw.sampled(), tracing_xray::Sampled::No);
    assert!(b_saw.parent().is_some_and(|p| p.to_string() != EDGE_PARENT));
    assert_eq!(b_saw.extra("Lineage"), Some("a87bd80c:1"));
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT}"));

    // A sampled request afterwards: its two documents are all that arrive.
    let (status, _, _) = services.get_a(None);
    assert_eq!(status, StatusCode::OK);
    let docs = services.documents(2);
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| d["trace_id"] != ROOT), "{docs:#?}");
    assert_eq!(docs[0]["trace_id"], docs[1]["trace_id"]);
}

#[test]
fn malformed_incoming_header_starts_a_fresh_trace() {
    let services = Services::start();
    let bad = [
        HeaderValue::from_static("Root=1-5759e988-zzz;Parent=oops;Sampled=maybe;;=;"),
        HeaderValue::from_static("garbage"),
        HeaderValue::from_bytes(b"Root=\xff\xfe;Parent=\x80").unwrap(),
    ];
    let mut roots = Vec::new();
    for header in bad {
        let (status, headers, b_saw) = services.get_a(Some(header));
        assert_eq!(status, StatusCode::OK, "tracing never fails a request");
        let answered = TraceHeader::parse(headers["x-amzn-trace-id"].to_str().unwrap());
        let root = answered.root().expect("a fresh trace id");
        assert_eq!(TraceHeader::parse(&b_saw).root(), Some(root));
        roots.push(root.to_string());
    }
    let docs = services.documents(6);
    assert_eq!(docs.len(), 6, "{docs:#?}");
    for root in &roots {
        let a = docs
            .iter()
            .find(|d| d["trace_id"] == root.as_str() && d["name"] == "service-a")
            .expect("A's segment of the fresh trace");
        assert!(a.get("parent_id").is_none());
    }
}

#[test]
fn requested_decision_is_answered() {
    let services = Services::start();
    let edge = format!("Root={ROOT};Parent={EDGE_PARENT};Sampled=?");
    let (_, headers, b_saw) = services.get_a(Some(HeaderValue::from_str(&edge).unwrap()));
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT};Sampled=1"));
    assert_eq!(
        TraceHeader::parse(&b_saw).sampled(),
        tracing_xray::Sampled::Yes
    );
    let docs = services.documents(2);
    let a = by_name(&docs, "service-a");
    assert_eq!(a["trace_id"], ROOT);
    assert_eq!(a["parent_id"], EDGE_PARENT);
}

#[test]
fn downstream_fault_is_recorded_on_both_sides() {
    let services = Services::start();
    let (status, _, _) = services.get(None, "/a/fail");
    assert_eq!(status, StatusCode::OK, "A handles B's 503");
    let docs = services.documents(2);
    let a = by_name(&docs, "service-a");
    let b = by_name(&docs, "service-b");
    let call = &a["subsegments"][0];
    for doc in [call, b] {
        assert_eq!(
            mapped(doc, "/http/response/status", "http.response.status_code"),
            503
        );
        assert_eq!(doc["fault"], true, "5xx is a fault: {doc:#}");
    }
    let url = mapped(b, "/http/request/url", "url.full").as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/b/fail"),
        "{url}"
    );
}
