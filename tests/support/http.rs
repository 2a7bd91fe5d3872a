//! What the tests of the tower layers over real sockets share: a hyper
//! client, an axum server behind `XrayServerLayer` on 127.0.0.1, a body of
//! given frames, and lookups in the traces they send.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tracing_xray::tower::XrayServerLayer;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// A plain-HTTP hyper client (pooled, keep-alive).
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>()
}

/// Serves `router` behind `XrayServerLayer` (outermost) on 127.0.0.1.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router.layer(XrayServerLayer::new());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `GET url`, its whole body.
pub async fn get_all(client: &HttpClient, url: String) -> Bytes {
    let request = Request::get(url).body(Empty::new()).unwrap();
    let response = client.request(request).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

/// A document's duration in seconds.
pub fn duration(doc: &Value) -> f64 {
    doc["end_time"].as_f64().unwrap() - doc["start_time"].as_f64().unwrap()
}

/// The first of `traces` that `pred` accepts.
pub fn find(traces: &[Value], pred: impl Fn(&Value) -> bool) -> &Value {
    traces
        .iter()
        .find(|t| pred(t))
        .unwrap_or_else(|| panic!("not found in {traces:#?}"))
}

/// A document's `http.request.url`, or "".
pub fn url_of(doc: &Value) -> &str {
    doc["http"]["request"]["url"].as_str().unwrap_or_default()
}

/// A body of the given frames, one at a time.
pub struct Frames(pub std::collections::VecDeque<Frame<Bytes>>);

impl Frames {
    pub fn new(frames: Vec<Frame<Bytes>>) -> Self {
        Frames(frames.into_iter().collect())
    }
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// Boxes its client's errors, as tower's timeout, retry and buffer layers
/// do (`BoxError`), and as the README recommends below `XrayClientLayer`
/// for hyper-util's plain client (`map_err(tower::BoxError::from)`).
#[derive(Clone)]
pub struct BoxErrors<S>(pub S);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<Request<B>> for BoxErrors<S>
where
    S: tower_service::Service<Request<B>>,
    S::Error: std::error::Error + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = self.0.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}
