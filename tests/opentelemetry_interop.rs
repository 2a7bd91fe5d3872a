//! One trace id across OpenTelemetry instrumentation and tracing-xray in the
//! same process (feature `opentelemetry`, SPEC §3.4).
#![cfg(feature = "opentelemetry")]

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::opentelemetry::{
    XrayPropagator, context_from_header, header_from_context, header_from_span_context,
    span_context_from_header,
};
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::{SegmentId, TraceHeader, TraceId, XraySpanExt};

/// Runs `f` under a tracing-xray subscriber; returns the traces sent.
fn with_xray(f: impl FnOnce()) -> Vec<Value> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    xray.flush(Duration::from_secs(5)).unwrap();
    exporter.traces()
}

#[test]
fn otel_span_inside_a_tracing_span_shares_its_trace() {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("interop");
    let mut otel = None;
    let mut call_id = None;
    let traces = with_xray(|| {
        let root = info_span!("handle");
        root.in_scope(|| {
            let call = info_span!("call_with_otel_client");
            let header = call.xray_header().unwrap();
            call_id = header.parent();
            let parent =
                Context::new().with_remote_span_context(span_context_from_header(&header).unwrap());
            let mut span = tracer.start_with_context("otel-op", &parent);
            otel = Some(span.span_context().clone());
            span.end();
        });
    });
    let otel = otel.unwrap();
    assert_eq!(traces.len(), 1);
    let seg = &traces[0];
    assert_eq!(
        TraceId::try_from(otel.trace_id()).unwrap().to_string(),
        seg["trace_id"],
        "one trace id"
    );
    assert!(otel.is_sampled(), "the sampled X-Ray parent is followed");
    assert_eq!(
        call_id.unwrap().to_string(),
        seg["subsegments"][0]["id"],
        "the OpenTelemetry span's parent is the tracing subsegment"
    );
}

#[test]
fn tracing_root_continues_an_otel_trace() {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("interop");
    let mut edge = tracer.start("edge");
    let sc = edge.span_context().clone();
    edge.end();
    let traces = with_xray(|| {
        let root = info_span!("handle");
        root.set_xray_parent(&header_from_span_context(&sc).unwrap());
        root.in_scope(|| info_span!("work").in_scope(|| {}));
    });
    assert_eq!(traces.len(), 1);
    let seg = &traces[0];
    assert_eq!(
        seg["trace_id"],
        TraceId::try_from(sc.trace_id()).unwrap().to_string()
    );
    assert_eq!(
        seg["parent_id"],
        SegmentId::try_from(sc.span_id()).unwrap().to_string()
    );
    assert_eq!(
        seg["trace_id"].as_str().unwrap().replace('-', "")[1..],
        sc.trace_id().to_string(),
        "1-xxxxxxxx-yyyy… is the same 32 hex digits"
    );
}

#[test]
fn header_survives_an_otel_hop_between_two_xray_services() {
    // Service 1 (tracing-xray) calls service 2 (OpenTelemetry + XrayPropagator),
    // which calls service 3 (tracing-xray).
    let propagator = XrayPropagator::new();
    let mut to_otel = None;
    let first = with_xray(|| {
        let root = info_span!("service1");
        root.in_scope(|| {
            let call = info_span!("call_service2");
            to_otel = call.xray_header();
        });
    });
    let to_otel = to_otel.unwrap();

    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("service2");
    let carrier = HashMap::from([("x-amzn-trace-id".to_owned(), to_otel.to_string())]);
    let cx = propagator.extract(&carrier);
    let span = tracer.start_with_context("service2", &cx);
    let otel_id = span.span_context().span_id();
    let cx = cx.with_span(span);
    let mut out = HashMap::new();
    propagator.inject_context(&cx, &mut out);
    let to_third = TraceHeader::parse(&out["x-amzn-trace-id"]);

    let third = with_xray(|| {
        let root = info_span!("service3");
        root.set_xray_parent(&to_third);
    });
    assert_eq!(first[0]["trace_id"], third[0]["trace_id"]);
    assert_eq!(third[0]["trace_id"], to_otel.root().unwrap().to_string());
    assert_eq!(
        third[0]["parent_id"],
        SegmentId::try_from(otel_id).unwrap().to_string()
    );
}

/// The pairs a header carries besides Root, Parent and Sampled (Lambda's
/// `Lineage`, which "is kept and forwarded") go through an OpenTelemetry
/// service: extract puts them in the context's baggage, inject writes the
/// baggage back, as the Java contrib propagator does
/// (`extract_AdditionalFields`, `inject_WithBaggage`). They were dropped.
#[test]
fn extra_pairs_go_through_an_opentelemetry_hop_as_baggage() {
    use opentelemetry::baggage::{Baggage, BaggageExt};
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    let propagator = XrayPropagator::new();
    let key = "x-amzn-trace-id".to_owned();
    let incoming = "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;\
                    Sampled=1;Lineage=a87bd80c:1|68fd508a:5;Foo=Bar";
    let cx = propagator.extract(&HashMap::from([(key.clone(), incoming.to_owned())]));
    assert!(cx.has_active_span());
    assert_eq!(cx.baggage().get("Foo").map(|v| v.as_str()), Some("Bar"));
    let mut out = HashMap::new();
    propagator.inject_context(&cx, &mut out);
    // Baggage has no order: the pairs may come back in another.
    let forwarded = TraceHeader::parse(&out[&key]);
    assert!(out[&key].starts_with(
        "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;"
    ));
    assert_eq!(forwarded.extra("Lineage"), Some("a87bd80c:1|68fd508a:5"));
    assert_eq!(forwarded.extra("Foo"), Some("Bar"));
    assert_eq!(forwarded.extras().len(), 2, "{}", out[&key]);

    // Baggage of the application's own, reserved keys left out.
    let mut baggage = Baggage::new();
    for (k, v) in [
        ("cat", "meow"),
        ("dog", "bark"),
        ("Root", "x"),
        ("Sampled", "x"),
    ] {
        baggage.insert(k, v);
    }
    let span = SpanContext::new(
        opentelemetry::trace::TraceId::from(0x8a3c60f7d188f8fa79d48a391a778fa6),
        SpanId::from(0x53995c3f42cd8ad8),
        TraceFlags::NOT_SAMPLED,
        false,
        TraceState::NONE,
    );
    let cx = Context::new()
        .with_remote_span_context(span)
        .with_baggage(baggage);
    let mut out = HashMap::new();
    propagator.inject_context(&cx, &mut out);
    let header = TraceHeader::parse(&out[&key]);
    assert_eq!(header.extra("cat"), Some("meow"), "{}", out[&key]);
    assert_eq!(header.extra("dog"), Some("bark"), "{}", out[&key]);
    assert!(out[&key].starts_with(
        "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=0;"
    ));
    assert!(!out[&key].contains("=x"), "{}", out[&key]);
}

/// Baggage is a hash map: which extra pairs fit the header's 256-byte
/// budget used to change from one request to the next for the same context,
/// and Lambda's `Lineage` was sometimes left out. They go in a fixed order,
/// `Lineage` first.
#[test]
fn inject_keeps_the_same_pairs_within_the_budget_lineage_first() {
    use opentelemetry::baggage::{Baggage, BaggageExt};
    let incoming = "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;\
                    Sampled=1;Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2";
    let session = "s".repeat(230);
    let propagator = XrayPropagator::new();
    let mut outputs = std::collections::HashSet::new();
    for _ in 0..64 {
        let mut baggage = Baggage::new();
        baggage.insert("session", session.clone());
        let base = Context::new().with_baggage(baggage);
        let carrier = HashMap::from([("x-amzn-trace-id".to_owned(), incoming.to_owned())]);
        let cx = propagator.extract_with_context(&base, &carrier);
        let mut out = HashMap::new();
        propagator.inject_context(&cx, &mut out);
        outputs.insert(out.remove("x-amzn-trace-id").unwrap());
    }
    assert_eq!(outputs.len(), 1, "{outputs:#?}");
    let header = outputs.into_iter().next().unwrap();
    assert!(
        header.contains("Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2"),
        "{header}"
    );
}

const KEY: &str = "x-amzn-trace-id";
const LINEAGE: &str = "a87bd80c:1|68fd508a:5|c512fbe3:2";
const INCOMING: &str = "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;\
                        Sampled=1;Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2";

/// X-Ray → OpenTelemetry inside one process keeps `Lineage`.
///
/// A tracing-xray service continues an incoming request carrying Lambda's
/// `Lineage`, then calls downstream through an OpenTelemetry-instrumented
/// client, handing the trace over as the module docs say (`xray_header` →
/// `context_from_header` → an OpenTelemetry parent), the `XrayPropagator`
/// injecting the client's header. SPEC §3.1: `Lineage` is kept and
/// forwarded. The handoff the docs first gave (`span_context_from_header`)
/// carried a bare `SpanContext`: the pair was lost (found by a hunt of the
/// OpenTelemetry interop). Without it Lambda's recursion detection no
/// longer sees the loop.
#[test]
fn lineage_survives_the_handoff_from_tracing_xray_to_an_otel_client() {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("otel-client");
    let propagator = XrayPropagator::new();
    let mut xray_call_header = None;
    let mut otel_call_header = None;
    let traces = with_xray(|| {
        let root = info_span!("handle");
        assert!(root.set_xray_parent(&TraceHeader::parse(INCOMING)));
        root.in_scope(|| {
            let call = info_span!("call_with_otel_client");
            let header = call.xray_header().unwrap();
            // The module docs' handoff: an OpenTelemetry parent of the call.
            let parent = context_from_header(&Context::new(), &header);
            let span = tracer.start_with_context("otel-http-client", &parent);
            let cx = parent.with_span(span);
            let mut out = HashMap::new();
            propagator.inject_context(&cx, &mut out);
            xray_call_header = Some(header);
            otel_call_header = out.remove(KEY);
        });
    });
    assert_eq!(traces.len(), 1);
    let xray_call_header = xray_call_header.unwrap();
    assert_eq!(
        xray_call_header.extra("Lineage"),
        Some(LINEAGE),
        "precondition: tracing-xray itself forwards Lineage"
    );
    let otel_call_header = TraceHeader::parse(&otel_call_header.unwrap());
    assert_eq!(
        otel_call_header.root(),
        xray_call_header.root(),
        "one trace"
    );
    assert_eq!(
        otel_call_header.extra("Lineage"),
        Some(LINEAGE),
        "the OpenTelemetry client's header lost Lineage: {otel_call_header}"
    );
}

/// OpenTelemetry → X-Ray inside one process keeps `Lineage`.
///
/// A service whose framework extracts the incoming context with the
/// `XrayPropagator` (which puts `Lineage` into the context's baggage)
/// continues it in tracing-xray as the module docs say
/// (`header_from_context` → `set_xray_parent`): the header tracing-xray
/// gives a downstream call keeps `Lineage`. The handoff the docs first gave
/// (`header_from_span_context`) read only the `SpanContext`, never the
/// baggage, and dropped the pair.
#[test]
fn lineage_survives_the_handoff_from_an_extracted_otel_context_to_tracing_xray() {
    let propagator = XrayPropagator::new();
    let cx = propagator.extract(&HashMap::from([(KEY.to_owned(), INCOMING.to_owned())]));
    assert_eq!(
        cx.baggage().get("Lineage").map(|v| v.as_str()),
        Some(LINEAGE),
        "precondition: extract keeps Lineage as baggage"
    );
    let mut downstream = None;
    let traces = with_xray(|| {
        let root = info_span!("handle");
        let header = header_from_context(&cx).unwrap();
        assert!(root.set_xray_parent(&header));
        root.in_scope(|| {
            downstream = info_span!("call_inventory").xray_header();
        });
    });
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["parent_id"], "53995c3f42cd8ad8");
    let downstream = downstream.unwrap();
    assert_eq!(
        downstream.extra("Lineage"),
        Some(LINEAGE),
        "tracing-xray's downstream header lost Lineage: {downstream}"
    );
}
