//! The span hot path, every rung in the same run so that ratios hold on a
//! noisy machine:
//!
//! 1. `registry`: the bare `Registry`;
//! 2. `registry+empty_layer`: the floor any layer pays;
//! 3. `registry+marker_extension`: a layer that inserts one extension per span;
//! 4. `registry+timed_fields`: a reference layer doing the least any layer
//!    that records span timings and fields does: a clock read as the span
//!    opens and another as it closes, its fields copied into an extension
//!    (no ids, no parent, nothing sent), so the cost of the work itself is
//!    known on this machine;
//! 5. `registry+parent_lookup`: a reference layer doing the least any layer
//!    must do to tell, as each span opens, which trace it belongs to: find
//!    its parent's id (the registry's current span, or the explicit parent),
//!    and nothing else, so the floor of an unsampled request is known;
//! 6. `xray_sampled`: tracing-xray, every trace sampled, no-op exporter;
//! 7. `xray_unsampled`: tracing-xray, every trace decided "not sampled" by
//!    the sampler (ids and headers still propagate);
//! 8. `xray_disabled_by_env`: tracing-xray switched off by `AWS_XRAY_SDK_DISABLED`;
//! 9. `tracing_opentelemetry`: tracing-opentelemetry, discarding exporter.
//!
//! `sampler_decision` times one decision of the built-in samplers.
//!
//! Workloads: one request = 1 root + N children, 3 fields each, one event per
//! child (N = 10 and 100), back to back; and the 10-child request once every
//! 50 µs (`request_1_root_10_children_every_50us`: only the request timed). `xray_end_to_end` also counts the worker's
//! serialization and hand-off, by flushing every batch of requests.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

fn request(children: usize) {
    let root = tracing::info_span!("request", method = "GET", path = "/orders", attempt = 1_u64);
    let _root = root.enter();
    for i in 0..children {
        let child = tracing::info_span!("query", i, table = "orders", ratio = 0.5_f64);
        let _child = child.enter();
        tracing::info!(rows = i, "query done");
    }
}

struct EmptyLayer;
impl<S: Subscriber> Layer<S> for EmptyLayer {}

struct Marker;
struct MarkerLayer;
impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for MarkerLayer {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        id: &tracing::Id,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Marker);
        }
    }
}

/// A span's start time and up to three fields, the strings cut to 24 bytes
/// and kept inline (no allocation).
#[derive(Default)]
struct TimedFields {
    start: Option<Instant>,
    values: [([u8; 24], u64); 3],
    len: usize,
}

impl TimedFields {
    fn push(&mut self, text: &[u8], number: u64) {
        if let Some((slot_text, slot_number)) = self.values.get_mut(self.len) {
            let n = text.len().min(24);
            slot_text[..n].copy_from_slice(&text[..n]);
            *slot_number = number;
            self.len += 1;
        }
    }
}

impl tracing::field::Visit for TimedFields {
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    fn record_str(&mut self, _: &tracing::field::Field, value: &str) {
        self.push(value.as_bytes(), 0);
    }
    fn record_u64(&mut self, _: &tracing::field::Field, value: u64) {
        self.push(&[], value);
    }
    fn record_f64(&mut self, _: &tracing::field::Field, value: f64) {
        self.push(&[], value.to_bits());
    }
}

struct TimedFieldsLayer;
impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TimedFieldsLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut data = TimedFields {
            start: Some(Instant::now()),
            ..TimedFields::default()
        };
        attrs.record(&mut data);
        span.extensions_mut().insert(data);
    }

    fn on_close(&self, id: tracing::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let data = span.extensions_mut().remove::<TimedFields>();
        black_box((data.and_then(|d| d.start), Instant::now()));
    }
}

/// Finds each new span's parent id, as a layer that must know a span's
/// trace at its creation has to, and keeps nothing.
struct ParentLookupLayer;
impl<S: Subscriber> Layer<S> for ParentLookupLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::Id,
        ctx: Context<'_, S>,
    ) {
        let parent = if attrs.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            attrs.parent().cloned()
        };
        black_box(parent);
    }
}

#[derive(Debug)]
struct DiscardSpans;
impl opentelemetry_sdk::trace::SpanExporter for DiscardSpans {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn xray(sampled: bool) -> (tracing_xray::XrayLayer, tracing_xray::XrayHandle) {
    let builder = if sampled {
        tracing_xray::builder().with_sampler(tracing_xray::sampling::AlwaysSample)
    } else {
        tracing_xray::builder().with_sampler(tracing_xray::sampling::NeverSample)
    };
    let layer = builder
        .with_detectors(tracing_xray::Detectors::none())
        .with_service_name("bench")
        .with_queue_capacity(1 << 16)
        .with_exporter(tracing_xray::export::NoopExporter)
        .build();
    let handle = layer.handle();
    (layer, handle)
}

fn dispatches() -> Vec<(&'static str, Dispatch, Option<tracing_xray::XrayHandle>)> {
    use opentelemetry::trace::TracerProvider as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(DiscardSpans)
        .build();
    let tracer = provider.tracer("bench");
    std::mem::forget(provider);

    let (sampled, sampled_handle) = xray(true);
    let (unsampled, _) = xray(false);
    std::env::set_var("AWS_XRAY_SDK_DISABLED", "true");
    let disabled = tracing_xray::layer();
    std::env::remove_var("AWS_XRAY_SDK_DISABLED");
    assert!(!disabled.is_enabled());

    vec![
        (
            "registry",
            Dispatch::new(tracing_subscriber::registry()),
            None,
        ),
        (
            "registry+empty_layer",
            Dispatch::new(tracing_subscriber::registry().with(EmptyLayer)),
            None,
        ),
        (
            "registry+marker_extension",
            Dispatch::new(tracing_subscriber::registry().with(MarkerLayer)),
            None,
        ),
        (
            "registry+timed_fields",
            Dispatch::new(tracing_subscriber::registry().with(TimedFieldsLayer)),
            None,
        ),
        (
            "registry+parent_lookup",
            Dispatch::new(tracing_subscriber::registry().with(ParentLookupLayer)),
            None,
        ),
        (
            "xray_sampled",
            Dispatch::new(tracing_subscriber::registry().with(sampled)),
            Some(sampled_handle),
        ),
        (
            "xray_unsampled",
            Dispatch::new(tracing_subscriber::registry().with(unsampled)),
            None,
        ),
        (
            "xray_disabled_by_env",
            Dispatch::new(tracing_subscriber::registry().with(disabled)),
            None,
        ),
        (
            "tracing_opentelemetry",
            Dispatch::new(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(tracer)),
            ),
            None,
        ),
    ]
}

fn hot_path(c: &mut Criterion) {
    let rungs = dispatches();
    for children in [10_usize, 100] {
        let mut group = c.benchmark_group(format!("request_1_root_{children}_children"));
        for (name, dispatch, handle) in &rungs {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                tracing::dispatcher::with_default(dispatch, || {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            request(black_box(children));
                        }
                        let elapsed = start.elapsed();
                        // Outside the timing, after every sample: the worker
                        // catches up, so the queue never carries one sample's
                        // backlog into the next. What is timed is the
                        // application thread alone (`xray_end_to_end` times
                        // the worker too).
                        if let Some(h) = handle {
                            h.flush(Duration::from_secs(30)).unwrap();
                        }
                        elapsed
                    });
                });
            });
        }
        group.finish();
    }
}

/// Busy-waits `d` (a sleep would hand the core to the worker and measure the
/// scheduler).
fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The same requests, one every 50 µs or so instead of back to back: what a
/// busy server looks like, with the worker idle between traces. Only the
/// request is timed (each timing adds two clock reads, the same for every
/// rung).
fn paced(c: &mut Criterion) {
    const GAP: Duration = Duration::from_micros(50);
    let rungs = dispatches();
    let mut group = c.benchmark_group("request_1_root_10_children_every_50us");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for (name, dispatch, handle) in &rungs {
        if !matches!(
            *name,
            "registry+empty_layer" | "xray_sampled" | "xray_unsampled" | "tracing_opentelemetry"
        ) {
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            tracing::dispatcher::with_default(dispatch, || {
                b.iter_custom(|iters| {
                    let mut inside = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        request(black_box(10));
                        inside += start.elapsed();
                        spin(GAP);
                    }
                    inside
                });
            });
            if let Some(h) = handle {
                h.flush(Duration::from_secs(30)).unwrap();
            }
        });
    }
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let (layer, handle) = xray(true);
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut group = c.benchmark_group("xray_end_to_end");
    for children in [10_usize, 100] {
        group.bench_function(BenchmarkId::new("request_and_worker", children), |b| {
            tracing::dispatcher::with_default(&dispatch, || {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        request(black_box(children));
                    }
                    handle.flush(Duration::from_secs(60)).unwrap();
                    start.elapsed()
                });
            });
        });
    }
    group.finish();
}

fn sampler_decision(c: &mut Criterion) {
    use tracing_xray::sampling::{LocalRules, Sampler, SamplingRequest};
    let request = SamplingRequest::new()
        .with_host("api.example.com")
        .with_http_method("GET")
        .with_url_path("/orders/42")
        .with_service_name("orders");
    let default_rule = LocalRules::default();
    let rules = LocalRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.05}, "rules": [
            {"description": "health", "host": "*", "http_method": "GET", "url_path": "/health", "fixed_target": 0, "rate": 0.0},
            {"description": "admin", "host": "admin.*", "http_method": "*", "url_path": "*", "fixed_target": 1, "rate": 0.5},
            {"description": "orders", "host": "*", "http_method": "*", "url_path": "/orders/*", "fixed_target": 10, "rate": 0.1}]}"#,
    )
    .unwrap();
    let mut group = c.benchmark_group("sampler_decision");
    group.bench_function("local_default_rule", |b| {
        b.iter(|| black_box(default_rule.sample(black_box(&request))))
    });
    group.bench_function("local_three_rules", |b| {
        b.iter(|| black_box(rules.sample(black_box(&request))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = hot_path, paced, end_to_end, sampler_decision
}
criterion_main!(benches);
