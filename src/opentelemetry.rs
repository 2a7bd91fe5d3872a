//! OpenTelemetry interop (feature `opentelemetry`): the X-Ray
//! header as a [`TextMapPropagator`], and id conversions, so an application
//! that mixes OpenTelemetry instrumentation with tracing-xray keeps one trace
//! id.
//!
//! | X-Ray | OpenTelemetry |
//! |---|---|
//! | [`TraceId`] `1-8a3c60f7-d188f8fa79d48a391a778fa6` | `TraceId` `8a3c60f7d188f8fa79d48a391a778fa6` |
//! | [`SegmentId`] `53995c3f42cd8ad8` | `SpanId` `53995c3f42cd8ad8` |
//! | `Sampled=1` | `TraceFlags::SAMPLED` |
//! | `Sampled=0`, `Sampled=?`, no `Sampled` | not sampled (OpenTelemetry has no "decide for me") |
//!
//! The conversions are `From` (X-Ray → OpenTelemetry, always valid) and
//! `TryFrom` (OpenTelemetry → X-Ray, failing with [`ParseIdError`] for an
//! invalid id: all zeros, or a trace id whose low 96 bits are zero):
//!
//! ```
//! use opentelemetry::trace::{SpanId, TraceId as OtelTraceId};
//! use tracing_xray::{SegmentId, TraceId};
//!
//! let xray: TraceId = "1-8a3c60f7-d188f8fa79d48a391a778fa6".parse().unwrap();
//! let otel = OtelTraceId::from(xray);
//! assert_eq!(otel.to_string(), "8a3c60f7d188f8fa79d48a391a778fa6");
//! assert_eq!(TraceId::try_from(otel), Ok(xray));
//! assert!(TraceId::try_from(OtelTraceId::INVALID).is_err());
//!
//! let segment: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
//! assert_eq!(SpanId::from(segment).to_string(), "53995c3f42cd8ad8");
//! assert_eq!(SegmentId::try_from(SpanId::from(segment)), Ok(segment));
//! assert!(SegmentId::try_from(SpanId::INVALID).is_err());
//! ```
//!
//! Handing a trace between the two worlds inside one process goes through
//! [`TraceHeader`]: [`XraySpanExt::xray_header`](crate::XraySpanExt::xray_header)
//! and [`context_from_header`] make an OpenTelemetry parent of a `tracing`
//! span; [`header_from_context`] and
//! [`XraySpanExt::set_xray_parent`](crate::XraySpanExt::set_xray_parent) go
//! the other way. Both keep the header's other pairs (Lambda's `Lineage`,
//! which X-Ray services keep and forward) as the context's baggage, as
//! [`XrayPropagator`] does; [`span_context_from_header`] and
//! [`header_from_span_context`] carry the ids and the decision only.
//!
//! ```
//! use opentelemetry::baggage::BaggageExt;
//! use opentelemetry::Context;
//! use tracing_xray::opentelemetry::{context_from_header, header_from_context};
//! use tracing_xray::TraceHeader;
//!
//! let incoming = TraceHeader::parse(
//!     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1",
//! );
//! let cx = context_from_header(&Context::new(), &incoming);
//! assert_eq!(cx.baggage().get("Lineage").map(|v| v.as_str()), Some("a87bd80c:1"));
//! let back = header_from_context(&cx).unwrap();
//! assert_eq!(back.to_string(), incoming.to_string());
//! ```

use std::sync::OnceLock;

use ::opentelemetry::Context;
use ::opentelemetry::baggage::BaggageExt;
use ::opentelemetry::propagation::text_map_propagator::FieldIter;
use ::opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use ::opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};

use crate::header::{HEADER_NAME_LOWERCASE, Sampled, TraceHeader};
use crate::id::{ParseIdError, SegmentId, TraceId};

impl From<TraceId> for OtelTraceId {
    /// The same 128 bits (see the [module docs](crate::opentelemetry)).
    fn from(id: TraceId) -> Self {
        OtelTraceId::from(id.to_u128())
    }
}

impl TryFrom<OtelTraceId> for TraceId {
    type Error = ParseIdError;

    /// The same 128 bits; fails when the low 96 bits are zero (see the
    /// [module docs](crate::opentelemetry)).
    fn try_from(id: OtelTraceId) -> Result<Self, ParseIdError> {
        TraceId::from_u128(u128::from_be_bytes(id.to_bytes())).ok_or(ParseIdError::TRACE)
    }
}

impl From<SegmentId> for SpanId {
    /// The same 64 bits (see the [module docs](crate::opentelemetry)).
    fn from(id: SegmentId) -> Self {
        SpanId::from(id.to_u64())
    }
}

impl TryFrom<SpanId> for SegmentId {
    type Error = ParseIdError;

    /// The same 64 bits; fails for [`SpanId::INVALID`] (see the
    /// [module docs](crate::opentelemetry)).
    fn try_from(id: SpanId) -> Result<Self, ParseIdError> {
        SegmentId::from_u64(u64::from_be_bytes(id.to_bytes())).ok_or(ParseIdError::SEGMENT)
    }
}

/// The remote OpenTelemetry span context a header describes: its `Root` and
/// `Parent`, sampled only for `Sampled=1`. `None` without a valid `Root` and
/// `Parent`.
///
/// ```
/// use opentelemetry::trace::TraceFlags;
/// use tracing_xray::opentelemetry::span_context_from_header;
/// use tracing_xray::TraceHeader;
///
/// let header = TraceHeader::parse(
///     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1",
/// );
/// let cx = span_context_from_header(&header).unwrap();
/// assert_eq!(cx.trace_id().to_string(), "8a3c60f7d188f8fa79d48a391a778fa6");
/// assert_eq!(cx.span_id().to_string(), "53995c3f42cd8ad8");
/// assert_eq!(cx.trace_flags(), TraceFlags::SAMPLED);
/// assert!(cx.is_remote());
///
/// assert!(span_context_from_header(&TraceHeader::parse("Root=1-8a3c60f7-d188f8fa79d48a391a778fa6")).is_none());
/// ```
pub fn span_context_from_header(header: &TraceHeader) -> Option<SpanContext> {
    let (root, parent) = (header.root()?, header.parent()?);
    let flags = if header.sampled() == Sampled::Yes {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    Some(SpanContext::new(
        root.into(),
        parent.into(),
        flags,
        true,
        TraceState::NONE,
    ))
}

/// The X-Ray header for a call made from the span `span_context` describes:
/// `Root`, `Parent` = the span id, `Sampled=1` or `Sampled=0`. `None` for an
/// invalid span context or a trace id X-Ray cannot represent.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
/// use tracing_xray::opentelemetry::header_from_span_context;
///
/// let cx = SpanContext::new(
///     TraceId::from(0x8a3c60f7d188f8fa79d48a391a778fa6),
///     SpanId::from(0x53995c3f42cd8ad8),
///     TraceFlags::NOT_SAMPLED,
///     false,
///     TraceState::NONE,
/// );
/// assert_eq!(
///     header_from_span_context(&cx).unwrap().to_string(),
///     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=0"
/// );
/// assert!(header_from_span_context(&SpanContext::empty_context()).is_none());
/// ```
pub fn header_from_span_context(span_context: &SpanContext) -> Option<TraceHeader> {
    if !span_context.is_valid() {
        return None;
    }
    let root = TraceId::try_from(span_context.trace_id()).ok()?;
    let parent = SegmentId::try_from(span_context.span_id()).ok()?;
    Some(TraceHeader::new(
        root,
        Some(parent),
        Sampled::from(span_context.is_sampled()),
    ))
}

/// The OpenTelemetry context a header describes, on top of `cx`: its remote
/// span context ([`span_context_from_header`]), and its other pairs
/// (Lambda's `Lineage`) added to `cx`'s baggage, as [`XrayPropagator`]
/// extracts them, so that they go on to the next X-Ray service. `cx`
/// unchanged without a valid `Root` and `Parent`.
///
/// ```
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::trace::TraceContextExt;
/// use opentelemetry::Context;
/// use tracing_xray::opentelemetry::context_from_header;
/// use tracing_xray::TraceHeader;
///
/// let header = TraceHeader::parse(
///     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1",
/// );
/// let cx = context_from_header(&Context::new(), &header);
/// assert_eq!(cx.span().span_context().span_id().to_string(), "53995c3f42cd8ad8");
/// assert_eq!(cx.baggage().get("Lineage").map(|v| v.as_str()), Some("a87bd80c:1"));
/// ```
pub fn context_from_header(cx: &Context, header: &TraceHeader) -> Context {
    let Some(span_context) = span_context_from_header(header) else {
        return cx.clone();
    };
    let cx = cx.with_remote_span_context(span_context);
    if header.extras().len() == 0 {
        return cx;
    }
    let mut baggage = ::opentelemetry::baggage::Baggage::new();
    for (key, (value, metadata)) in cx.baggage() {
        baggage.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
    }
    for (key, value) in header.extras() {
        baggage.insert(key.to_owned(), value.to_owned());
    }
    cx.with_baggage(baggage)
}

/// The X-Ray header for a call made from the span of `cx`
/// ([`header_from_span_context`]), with `cx`'s baggage as its other pairs,
/// as [`XrayPropagator`] injects them: those a header cannot hold
/// faithfully, the reserved keys and what passes the pairs' budget are left
/// out, `Lineage` first. `None` for an invalid span context.
///
/// ```
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
/// use opentelemetry::{Context, KeyValue};
/// use tracing_xray::opentelemetry::header_from_context;
///
/// let span = SpanContext::new(
///     TraceId::from(0x8a3c60f7d188f8fa79d48a391a778fa6),
///     SpanId::from(0x53995c3f42cd8ad8),
///     TraceFlags::SAMPLED,
///     true,
///     TraceState::NONE,
/// );
/// let cx = Context::new()
///     .with_remote_span_context(span)
///     .with_baggage([KeyValue::new("Lineage", "a87bd80c:1")]);
/// assert_eq!(
///     header_from_context(&cx).unwrap().to_string(),
///     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1"
/// );
/// ```
pub fn header_from_context(cx: &Context) -> Option<TraceHeader> {
    let span = cx.span();
    let mut header = header_from_span_context(span.span_context())?;
    // In a fixed order (baggage is a hash map), `Lineage` first, so that
    // what fits the budget is the same for the same context: the loop
    // detection of Lambda's `Lineage` before the rest.
    let mut pairs: Vec<(&str, &str)> = cx
        .baggage()
        .iter()
        .map(|(key, (value, _))| (key.as_str(), value.as_str()))
        .collect();
    pairs.sort_unstable_by_key(|&(key, _)| (key != "Lineage", key));
    for (key, value) in pairs {
        header = header.with_extra(key, value);
    }
    Some(header)
}

/// An OpenTelemetry [`TextMapPropagator`] for the `X-Amzn-Trace-Id` header
/// (the carrier key is `x-amzn-trace-id`), as the opentelemetry-contrib AWS
/// X-Ray propagators do.
///
/// - **Inject** writes `Root=…;Parent=…;Sampled=0|1` for the context's span,
///   then the context's baggage as extra `key=value` pairs (those a header
///   can hold, within 256 bytes, in a fixed order: `Lineage` first, then by
///   key), and nothing when the context has no valid span.
/// - **Extract** reads the header leniently ([`TraceHeader::parse`]) and
///   returns the context with a remote parent when `Root` and `Parent` are
///   valid and `Sampled`, if present, is `1`, `0` or `?`; otherwise the
///   context comes back unchanged. Only `Sampled=1` is sampled. Extra pairs
///   (such as Lambda's `Lineage`) become baggage, so that they go on to the
///   next X-Ray service through an OpenTelemetry one; a pair whose key
///   baggage refuses (one holding a space or any of `(),/:;<=>?@[\]{}"`)
///   is lost on the way.
///
/// As the OpenTelemetry contrib propagators for X-Ray (Java) do.
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
/// use opentelemetry::Context;
/// use tracing_xray::opentelemetry::XrayPropagator;
///
/// let propagator = XrayPropagator::new();
/// let mut carrier = HashMap::new();
/// carrier.insert(
///     "x-amzn-trace-id".to_owned(),
///     "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
/// );
/// let cx = propagator.extract(&carrier);
/// let span = cx.span();
/// assert_eq!(span.span_context().trace_id().to_string(), "8a3c60f7d188f8fa79d48a391a778fa6");
///
/// let mut out = HashMap::new();
/// propagator.inject_context(&cx, &mut out);
/// assert_eq!(out["x-amzn-trace-id"], carrier["x-amzn-trace-id"]);
/// ```
///
/// Install it globally with
/// `opentelemetry::global::set_text_map_propagator(XrayPropagator::new())`.
#[derive(Clone, Debug, Default)]
pub struct XrayPropagator {
    _private: (),
}

impl XrayPropagator {
    /// The propagator.
    ///
    /// ```
    /// let propagator = tracing_xray::opentelemetry::XrayPropagator::new();
    /// # drop(propagator);
    /// ```
    pub fn new() -> Self {
        XrayPropagator::default()
    }
}

impl TextMapPropagator for XrayPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(header) = header_from_context(cx) {
            injector.set(HEADER_NAME_LOWERCASE, header.to_string());
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(raw) = extractor.get(HEADER_NAME_LOWERCASE) else {
            return cx.clone();
        };
        if !sampled_is_valid(raw) {
            return cx.clone();
        }
        context_from_header(cx, &TraceHeader::parse(raw))
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [HEADER_NAME_LOWERCASE.to_owned()]))
    }
}

/// Whether `Sampled`, when the header has it, is `1`, `0` or `?`: the Java,
/// JS and Python contrib propagators refuse a header with another value
/// (`Sampled=`, `Sampled=a`; Go's takes any), where [`TraceHeader::parse`]
/// reads it as no decision.
/// `?` (a caller asking for a decision) is kept as the Go one keeps it, as
/// a context not sampled, so that the trace still continues; the Java, JS
/// and Python ones refuse it, and start another trace.
/// Of a repeated `Sampled`, the last one counts, as [`TraceHeader::parse`]
/// reads it and the Java and JS propagators keep it (of the parts that
/// parse reads: a `Sampled` past its bound is not judged either).
fn sampled_is_valid(raw: &str) -> bool {
    crate::header::bounded(raw)
        .rsplit(';')
        .find_map(|part| match part.trim().split_once('=') {
            Some(("Sampled", value)) => Some(value),
            _ => None,
        })
        .is_none_or(|value| matches!(value, "1" | "0" | "?"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const HEADER: &str =
        "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1";

    fn extract(value: &str) -> Context {
        let carrier = HashMap::from([(HEADER_NAME_LOWERCASE.to_owned(), value.to_owned())]);
        XrayPropagator::new().extract_with_context(&Context::new(), &carrier)
    }

    #[test]
    fn spec_example_maps_both_ways() {
        let cx = extract(HEADER);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id(),
            OtelTraceId::from_hex("8a3c60f7d188f8fa79d48a391a778fa6").unwrap()
        );
        assert_eq!(sc.span_id(), SpanId::from_hex("53995c3f42cd8ad8").unwrap());
        let mut out = HashMap::new();
        XrayPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(
            out,
            HashMap::from([(HEADER_NAME_LOWERCASE.to_owned(), HEADER.to_owned())])
        );
    }

    #[test]
    fn sampled_values() {
        for (sampled, expect) in [("1", true), ("0", false), ("?", false)] {
            let cx = extract(&format!(
                "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled={sampled}"
            ));
            assert_eq!(cx.span().span_context().is_sampled(), expect, "{sampled}");
            assert!(cx.has_active_span());
        }
        let cx = extract("Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8");
        assert!(cx.has_active_span() && !cx.span().span_context().is_sampled());
    }

    #[test]
    fn invalid_headers_leave_the_context_unchanged() {
        for bad in [
            "",
            "garbage",
            // Another `Sampled` (the Java contrib propagator's vectors).
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=x",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=10220",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6",
            "Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=0000000000000000",
            "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
            "Root=2-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa;Parent=53995c3f42cd8ad8",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad",
            "Root=1-8a3c60f7-d188f8fa79d48a391a778fz6;Parent=53995c3f42cd8ad8",
        ] {
            assert!(!extract(bad).has_active_span(), "{bad:?}");
        }
        let empty: HashMap<String, String> = HashMap::new();
        let cx = XrayPropagator::new().extract_with_context(&Context::new(), &empty);
        assert!(!cx.has_active_span());
    }

    #[test]
    fn inject_skips_invalid_contexts() {
        let mut out: HashMap<String, String> = HashMap::new();
        XrayPropagator::new().inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
        // A trace id whose low 96 bits are zero has no X-Ray form.
        let sc = SpanContext::new(
            OtelTraceId::from(1u128 << 100),
            SpanId::from(7),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        XrayPropagator::new()
            .inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fields_names_the_header() {
        let propagator = XrayPropagator::new();
        let fields: Vec<_> = propagator.fields().collect();
        assert_eq!(fields, [HEADER_NAME_LOWERCASE]);
    }

    #[test]
    fn ids_round_trip() {
        for _ in 0..100 {
            let t = TraceId::new();
            assert_eq!(TraceId::try_from(OtelTraceId::from(t)), Ok(t));
            let s = SegmentId::new();
            assert_eq!(SegmentId::try_from(SpanId::from(s)), Ok(s));
        }
    }
}
