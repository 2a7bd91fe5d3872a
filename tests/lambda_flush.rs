//! `XrayFlushLayer` on `lambda_runtime`'s own service stack: each
//! invocation's subsegments are exported, then flushed, before the call's
//! future completes (Lambda may freeze the process right after).
#![cfg(feature = "tower")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Error, LambdaInvocation};
use tower_layer::Layer;
use tower_service::Service;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter};
use tracing_xray::tower::XrayFlushLayer;

#[derive(Debug, PartialEq)]
enum Seen {
    Export(Vec<String>),
    Flush,
}

/// Logs what the worker asks of it, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Exporter for Log {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let n = batch.len();
        let names = batch
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_str(d.as_str()).unwrap();
                format!("{} {} {}", v["name"], v["trace_id"], v["parent_id"])
            })
            .collect();
        self.0.lock().unwrap().push(Seen::Export(names));
        ExportOutcome::delivered(n)
    }

    fn flush(&mut self, _: Duration) -> ExportOutcome {
        self.0.lock().unwrap().push(Seen::Flush);
        ExportOutcome::default()
    }
}

/// The function's handler, as `lambda_runtime` calls it (below its
/// `TracingLayer`).
#[derive(Clone)]
struct Handler;

impl Service<LambdaInvocation> for Handler {
    type Response = ();
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: LambdaInvocation) -> Self::Future {
        let span = info_span!("handler");
        Box::pin(async move {
            let _enter = span.enter();
            info_span!("query").in_scope(|| {});
            Ok(())
        })
    }
}

fn invocation(header: &str) -> LambdaInvocation {
    let mut context = lambda_runtime::Context::default();
    context.request_id = "req".to_owned();
    context.xray_trace_id = Some(header.to_owned());
    LambdaInvocation {
        parts: http::Response::new(()).into_parts().0,
        body: Default::default(),
        context,
    }
}

#[test]
fn each_invocation_is_flushed_before_it_completes() {
    let log = Log::default();
    let layer = tracing_xray::builder()
        .with_lambda(true)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(log.clone())
        .build();
    let xray = layer.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut service = XrayFlushLayer::new(xray)
        .with_timeout(Duration::from_secs(5))
        .layer(TracingLayer::new().layer(Handler));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for (i, header) in [
            "Root=1-6566f1a0-aaaaaaaaaaaaaaaaaaaaaaaa;Parent=1111111111111111;Sampled=1",
            "Root=1-6566f1a1-bbbbbbbbbbbbbbbbbbbbbbbb;Parent=2222222222222222;Sampled=0",
            "Root=1-6566f1a2-cccccccccccccccccccccccc;Parent=3333333333333333;Sampled=1",
        ]
        .into_iter()
        .enumerate()
        {
            runtime.block_on(service.call(invocation(header))).unwrap();
            let seen = log.0.lock().unwrap();
            assert_eq!(
                seen.iter().filter(|s| **s == Seen::Flush).count(),
                i + 1,
                "flushed once per invocation, before it completed: {seen:?}"
            );
        }
    });
    let seen = log.0.lock().unwrap();
    let exported: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Export(d) => Some(d.concat()),
            Seen::Flush => None,
        })
        .collect();
    assert_eq!(
        exported,
        [
            r#""handler" "1-6566f1a0-aaaaaaaaaaaaaaaaaaaaaaaa" "1111111111111111""#,
            r#""handler" "1-6566f1a2-cccccccccccccccccccccccc" "3333333333333333""#,
        ]
    );
    // Each sampled invocation's document came before its own flush.
    assert!(matches!(seen[0], Seen::Export(_)) && seen[1] == Seen::Flush);
    assert_eq!(seen.last(), Some(&Seen::Flush));
}
