//! tracing-opentelemetry and tracing-xray in the same subscriber (a user
//! migrating from one to the other, or running both): the same span fails,
//! or not, in both; and the `XrayPropagator` reads a header as the official
//! contrib propagators do. Found by the hunt of OpenTelemetry interop; each
//! test failed before its fix.
#![cfg(feature = "opentelemetry")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::opentelemetry::XrayPropagator;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::{Sampled, TraceHeader};

const KEY: &str = "x-amzn-trace-id";

/// Keeps every span the OpenTelemetry SDK exports.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Runs `f` under one subscriber holding both tracing-xray (every trace
/// sampled, in memory) and tracing-opentelemetry (simple processor, in
/// memory), as a user migrating between them has it; returns the X-Ray
/// traces and the OpenTelemetry spans.
fn with_both_layers(f: impl FnOnce()) -> (Vec<Value>, Vec<SpanData>) {
    let spans = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let tracer = provider.tracer("hunt-otel");
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_opentelemetry::layer().with_tracer(tracer));
    tracing::subscriber::with_default(subscriber, f);
    xray.flush(Duration::from_secs(5)).unwrap();
    let _ = provider.force_flush();
    let got = spans.0.lock().unwrap().clone();
    (exporter.traces(), got)
}

/// A repeated `Sampled` whose last value is valid.
///
/// What the user does: an OpenTelemetry service with the `XrayPropagator`
/// receives a header in which `Sampled` appears twice, a damaged value and
/// then a good one (a proxy or an earlier hop appended its own decision):
/// `Root=…;Parent=…;Sampled=a;Sampled=1`.
///
/// What they should get: the caller's trace continued, sampled. The
/// propagator's rustdoc says extract "reads the header leniently
/// (`TraceHeader::parse`)" and accepts it when "`Sampled`, if present, is
/// `1`, `0` or `?`"; `TraceHeader`'s rustdoc: "for a repeated key the last
/// occurrence wins", and `TraceHeader::parse` does read `Sampled=1` here.
/// SPEC §3.2 (duplicate key row): the OTel java/js propagators take the last
/// occurrence, and so they do: java-contrib `AwsXrayPropagator.
/// getContextFromHeader` assigns `isSampled = parseTraceFlag(value)` for each
/// part and only checks it after the loop; js-contrib `AWSXRayPropagator.
/// getSpanContextFromHeader` likewise (`parsedTraceFlags`, checked after the
/// loop). Both return a valid, sampled remote context for this header.
///
/// Before the fix: `sampled_is_valid` (src/opentelemetry.rs) refuses the
/// header when ANY `Sampled` part is not `1`/`0`/`?`, though the parse it
/// hands the header to keeps only the last; the context comes back
/// unchanged, so the OpenTelemetry service starts a new trace and the
/// caller's is broken.
#[test]
fn extract_takes_the_last_sampled_as_the_contrib_propagators_do() {
    let raw =
        "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=a;Sampled=1";
    assert_eq!(
        TraceHeader::parse(raw).sampled(),
        Sampled::Yes,
        "precondition: the crate's own parse takes the last Sampled"
    );
    let cx = XrayPropagator::new().extract(&HashMap::from([(KEY.to_owned(), raw.to_owned())]));
    assert!(
        cx.has_active_span(),
        "the caller's trace was not continued: the header was refused"
    );
    let span = cx.span();
    let sc = span.span_context();
    assert_eq!(
        sc.trace_id().to_string(),
        "8a3c60f7d188f8fa79d48a391a778fa6"
    );
    assert_eq!(sc.span_id().to_string(), "53995c3f42cd8ad8");
    assert!(sc.is_sampled(), "the last Sampled is 1");
}

/// `otel.status_description` in a subscriber holding both layers.
///
/// What the user does: instrumentation written for tracing-opentelemetry
/// marks a failed operation with `otel.status_description = "…"`, the field
/// tracing-opentelemetry 0.34 (the version this crate's tests use) reads as
/// the span's status: `SPAN_STATUS_DESCRIPTION_FIELD => status =
/// Status::error(value)` (tracing-opentelemetry src/layer.rs, `record_str`,
/// lines 33 and 542-543). The user runs tracing-xray beside it.
///
/// What they should get: the same span flagged in X-Ray as in OpenTelemetry.
/// README ("Span fields"): "existing instrumentation (tower-http, the AWS SDK
/// for Rust, OpenTelemetry-style field names) lights up without changes";
/// `otel.status_code = "ERROR"` is a `fault`. README says nothing of
/// `otel.status_description` (it says only that `otel.status_message`, a
/// name tracing-opentelemetry does not read, fails nothing alone).
///
/// Before the fix: the OpenTelemetry span is `Status::Error("db unavailable")`,
/// the X-Ray subsegment has no `fault`, no exception; the field is plain
/// metadata (src/fields/conventions.rs:1939 files it with
/// `otel.status_message`). The failure is invisible in X-Ray. (If this is
/// meant, the README should say that `otel.status_description` alone is not
/// a failure, unlike in tracing-opentelemetry.)
#[test]
fn otel_status_description_is_a_failure_in_both_layers() {
    let (traces, spans) = with_both_layers(|| {
        info_span!("handle").in_scope(|| {
            info_span!("query_orders", otel.status_description = "db unavailable").in_scope(|| {});
        });
    });
    let otel = spans.iter().find(|s| s.name == "query_orders").unwrap();
    assert!(
        matches!(otel.status, Status::Error { .. }),
        "precondition: tracing-opentelemetry reads it as an error: {:?}",
        otel.status
    );
    assert_eq!(traces.len(), 1);
    let sub = &traces[0]["subsegments"][0];
    assert_eq!(sub["name"], "query_orders");
    assert_eq!(
        sub["fault"], true,
        "OpenTelemetry says Error, X-Ray says nothing failed: {sub}"
    );
}

/// `otel.status_code = "OK"` in a subscriber holding both layers.
///
/// What the user does: marks an operation that recovered (an ERROR event
/// logged for a failed first attempt, then a successful retry) as succeeded
/// with `otel.status_code = "OK"`, tracing-opentelemetry's field for the
/// span status.
///
/// What they should get: one meaning for `otel.status_code` in both layers
/// (the brief's question; README: "OpenTelemetry-style field names light up
/// without changes"). In OpenTelemetry, `Ok` is final: the trace API spec
/// says a status set to Ok "SHOULD be considered final and any further
/// attempts to change it SHOULD be ignored", and tracing-opentelemetry 0.34
/// keeps it (an ERROR event sets `Status::error` only while the status is
/// `Unset`: src/layer.rs, `on_event`, lines 1445-1448). The crate already
/// has the idea of a handled error (README: an error with an HTTP status
/// below 400 sets "no flag ...: the request succeeded, the error was
/// handled").
///
/// Before the fix: the OpenTelemetry span is `Status::Ok`; the X-Ray
/// subsegment is a `fault` with the event as its exception, and
/// `otel.status_code` is left in metadata. (The README's row lists the
/// ERROR event's exceptions, and `OK` is not one of them: if this is meant,
/// the README should say that `otel.status_code = "OK"` does not clear a
/// fault, unlike in OpenTelemetry.)
#[test]
fn otel_status_code_ok_is_final_in_both_layers() {
    let (traces, spans) = with_both_layers(|| {
        info_span!("handle").in_scope(|| {
            info_span!("charge_card", otel.status_code = "OK")
                .in_scope(|| tracing::error!("first attempt failed, retried"));
        });
    });
    charge_card_is_ok_in_both(&traces, &spans);
}

/// Panics unless span `charge_card`, the one subsegment of the one trace,
/// is `Ok` to tracing-opentelemetry and no fault to X-Ray.
fn charge_card_is_ok_in_both(traces: &[Value], spans: &[SpanData]) {
    let otel = spans.iter().find(|s| s.name == "charge_card").unwrap();
    assert_eq!(
        otel.status,
        Status::Ok,
        "precondition: tracing-opentelemetry keeps Ok, final"
    );
    assert_eq!(traces.len(), 1);
    let sub = &traces[0]["subsegments"][0];
    assert_eq!(sub["name"], "charge_card");
    assert_eq!(
        sub["fault"],
        Value::Null,
        "OpenTelemetry (and README) say OK is final, X-Ray says fault: {sub}"
    );
}

// Found by the review of the interop fixes (89ba0f2).
//
// A span marked succeeded (`otel.status_code = "OK"`) and later marked failed
// by code that does not know it (`span.record("otel.status_code",
// "ERROR")`): OpenTelemetry keeps `Ok` (its trace API: Ok "SHOULD be
// considered final"; the SDK's `set_status` never lowers it), and so does
// tracing-opentelemetry on an entered span. Before the fix, `Span::record`
// replaced the field and the subsegment was a fault.
#[test]
fn ok_is_final_when_error_is_recorded_after_it() {
    let (traces, spans) = with_both_layers(|| {
        info_span!("handle").in_scope(|| {
            let span = info_span!("charge_card", otel.status_code = tracing::field::Empty);
            span.in_scope(|| {
                span.record("otel.status_code", "OK");
                // ... later, elsewhere in the same request:
                span.record("otel.status_code", "ERROR");
            });
        });
    });
    charge_card_is_ok_in_both(&traces, &spans);
}

// `#[instrument(err)]` (its error event, the span's exception) beside an
// `otel.status_description`. Before the fix, the description was read as an
// exception's own text and made a second, typeless exception of the one
// failure; as `otel.status_message` is (and as AWS's collector exporter reads
// a status message, `makeCause`: an exception only when there is none), it is
// a status message: metadata beside the exception, the span still failed.
#[test]
fn a_status_description_beside_an_error_adds_no_second_exception() {
    #[tracing::instrument(err, skip_all, fields(otel.status_description, otel.status_message))]
    fn query(field: &'static str) -> Result<(), std::io::Error> {
        tracing::Span::current().record(field, "upstream unavailable");
        Err(std::io::Error::other("connection refused (os error 111)"))
    }
    let (traces, _) = with_both_layers(|| {
        info_span!("handle").in_scope(|| {
            let _ = query("otel.status_message");
            let _ = query("otel.status_description");
        });
    });
    assert_eq!(traces.len(), 1);
    let subs = traces[0]["subsegments"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    let messages = |sub: &Value| -> Vec<String> {
        sub["cause"]["exceptions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        messages(&subs[0]),
        ["connection refused (os error 111)"],
        "precondition: with otel.status_message, one exception: {}",
        subs[0]
    );
    assert_eq!(subs[1]["fault"], true, "{}", subs[1]);
    assert_eq!(
        messages(&subs[1]),
        ["connection refused (os error 111)"],
        "the status description became a second exception of the one failure: {}",
        subs[1]
    );
}

// A header over 4 KiB whose `Sampled` appears again, invalid, past the bytes
// `TraceHeader::parse` reads. Before the fix, `XrayPropagator` judged the
// whole header's last `Sampled` and refused the header that parse reads as
// Root, Parent and `Sampled=1`: the caller's trace was not continued.
#[test]
fn extract_judges_the_sampled_that_trace_header_parse_keeps() {
    let mut raw =
        String::from("Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1");
    let mut i = 0;
    while raw.len() < 4200 {
        raw.push_str(&format!(";k{i}=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"));
        i += 1;
    }
    raw.push_str(";Sampled=x");
    let parsed = TraceHeader::parse(&raw);
    assert_eq!(
        parsed.sampled(),
        Sampled::Yes,
        "precondition: the crate's own parse keeps Sampled=1"
    );
    assert!(parsed.root().is_some() && parsed.parent().is_some());
    let cx = XrayPropagator::new().extract(&HashMap::from([(KEY.to_owned(), raw.clone())]));
    assert!(
        cx.has_active_span(),
        "the header TraceHeader::parse reads as Root+Parent+Sampled=1 was refused by the \
         propagator (it judged a Sampled the parse never reads)"
    );
    assert!(cx.span().span_context().is_sampled());
}

/// Two layers in one subscriber give a span ids of their own: they share a
/// trace only through the caller's header, given to both (found by a hunt
/// of the OpenTelemetry interop: `set_parent` alone, tracing-opentelemetry's
/// idiom, left the X-Ray segment a new trace, and the README's "keeps one
/// trace id" read as if it did not; it now says how). With the header
/// given to both, `set_parent` with what the `XrayPropagator` extracted and
/// `set_xray_parent`, both continue the caller's trace.
#[test]
fn a_header_given_to_both_layers_is_one_trace_in_both() {
    const HEADER: &str =
        "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1";
    let (traces, spans) = with_both_layers(|| {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_xray::XraySpanExt;
        let root = info_span!("handle");
        let carrier = HashMap::from([(KEY.to_owned(), HEADER.to_owned())]);
        let _ = root.set_parent(XrayPropagator::new().extract(&carrier));
        assert!(root.set_xray_parent(&TraceHeader::parse(HEADER)));
        root.in_scope(|| info_span!("inner").in_scope(|| {}));
    });
    let handle = spans
        .iter()
        .find(|s| s.name == "handle")
        .expect("the otel span");
    assert_eq!(
        handle.span_context.trace_id().to_string(),
        "8a3c60f7d188f8fa79d48a391a778fa6"
    );
    assert_eq!(handle.parent_span_id.to_string(), "53995c3f42cd8ad8");
    assert_eq!(traces.len(), 1, "{traces:#?}");
    assert_eq!(traces[0]["trace_id"], "1-8a3c60f7-d188f8fa79d48a391a778fa6");
    assert_eq!(traces[0]["parent_id"], "53995c3f42cd8ad8");
}
