//! The rungs the benchmarks compare, shared by `span.rs` (criterion, wall
//! time) and `instructions.rs` (instruction counts under valgrind): the
//! workload, the reference layers, and one `Dispatch` per rung.

use std::hint::black_box;
use std::time::Duration;

use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// One request: 1 root + `children` children, 3 fields each, one event per
/// child.
pub fn request(children: usize) {
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
/// and kept inline (no allocation). The clock is tracing-xray's own
/// (`quanta`, the CPU's counter: a few ns a read, against about 23 ns for
/// `std::time::Instant`), so that the reference pays for its clock no more
/// than tracing-xray does.
#[derive(Default)]
struct TimedFields {
    start: Option<quanta::Instant>,
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
            start: Some(quanta::Instant::now()),
            ..TimedFields::default()
        };
        attrs.record(&mut data);
        span.extensions_mut().insert(data);
    }

    fn on_close(&self, id: tracing::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let data = span.extensions_mut().remove::<TimedFields>();
        black_box((data.and_then(|d| d.start), quanta::Instant::now()));
    }
}

/// A span as the crate's first issue has a layer keep it: its id, made as
/// it opens, its parent's, its times and fields, and its finished children.
struct TreeNode {
    id: u64,
    parent: u64,
    fields: TimedFields,
    end: Option<quanta::Instant>,
    children: Vec<TreeNode>,
}

/// A span id from a per-thread xorshift generator: the cheapest random id.
fn next_id() -> u64 {
    thread_local!(static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0x2545_f491_4f6c_dd1d) });
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// A reference layer doing only what the crate's first issue prescribes
/// for every span, and nothing of X-Ray's (no sampling, names, limits,
/// headers; nothing sent): one struct per span in the registry's
/// extensions, its id made as it opens, its parent's read from the parent's
/// struct, its fields recorded and its times read with tracing-xray's
/// clock, and, as it closes, the finished span moved into its parent's
/// struct. The root's tree is dropped as the root closes.
struct SpanTreeLayer;
impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanTreeLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<TreeNode>().map(|n| n.id))
            .unwrap_or(0);
        let mut node = TreeNode {
            id: next_id(),
            parent,
            fields: TimedFields {
                start: Some(quanta::Instant::now()),
                ..TimedFields::default()
            },
            end: None,
            children: Vec::new(),
        };
        attrs.record(&mut node.fields);
        span.extensions_mut().insert(node);
    }

    fn on_close(&self, id: tracing::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut node) = span.extensions_mut().remove::<TreeNode>() else {
            return;
        };
        node.end = Some(quanta::Instant::now());
        match span.parent() {
            Some(parent) => {
                if let Some(p) = parent.extensions_mut().get_mut::<TreeNode>() {
                    p.children.push(node);
                }
            }
            None => {
                black_box(node.parent);
                drop(black_box(node));
            }
        }
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

pub fn xray(sampled: bool) -> (tracing_xray::XrayLayer, tracing_xray::XrayHandle) {
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

/// A rung's background thread, flushed between samples (outside the timing)
/// so that no sample inherits the previous one's backlog.
pub enum Flush {
    /// tracing-xray's worker.
    Xray(tracing_xray::XrayHandle),
    /// The OpenTelemetry SDK's batch span processor's thread.
    OtelBatch(opentelemetry_sdk::trace::SdkTracerProvider),
}

impl Flush {
    /// Waits until the background thread has handled everything sent so far.
    pub fn flush(&self) {
        match self {
            Flush::Xray(handle) => handle.flush(Duration::from_secs(60)).unwrap(),
            Flush::OtelBatch(provider) => provider.force_flush().unwrap(),
        }
    }
}

/// Every rung, by name, with the background thread to flush where there is
/// one.
///
/// tracing-opentelemetry runs twice: with the SDK's simple span processor
/// (each span exported on the application thread as it ends, here to an
/// exporter that discards it) and with its batch span processor (each span
/// queued to the SDK's export thread, which discards the batches), the one
/// OpenTelemetry recommends for production and the counterpart of
/// tracing-xray's worker.
pub fn dispatches() -> Vec<(&'static str, Dispatch, Option<Flush>)> {
    use opentelemetry::trace::TracerProvider as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(DiscardSpans)
        .build();
    let tracer = provider.tracer("bench");
    std::mem::forget(provider);
    let batch_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(DiscardSpans)
        .build();
    let batch_tracer = batch_provider.tracer("bench");

    // quanta calibrates its clock at its first read: here, not in a
    // measured request (tracing-xray's layer reads it as it is built).
    black_box(quanta::Instant::now());
    let (sampled, sampled_handle) = xray(true);
    let (unsampled, _) = xray(false);
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_XRAY_SDK_DISABLED", "true") };
    let disabled = tracing_xray::layer();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::remove_var("AWS_XRAY_SDK_DISABLED") };
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
            "registry+span_tree",
            Dispatch::new(tracing_subscriber::registry().with(SpanTreeLayer)),
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
            Some(Flush::Xray(sampled_handle)),
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
        (
            "tracing_opentelemetry_batch",
            Dispatch::new(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(batch_tracer)),
            ),
            Some(Flush::OtelBatch(batch_provider)),
        ),
    ]
}
