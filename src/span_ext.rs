//! [`XraySpanExt`]: continue an incoming trace on a span, and read its
//! trace id or the header to send downstream.

use crate::header::TraceHeader;
use crate::id::TraceId;
use crate::layer::{Found, Lookup, WithContext};

/// X-Ray propagation on [`tracing::Span`], in the manner of
/// tracing-opentelemetry's `OpenTelemetrySpanExt`.
///
/// The methods reach the [`XrayLayer`](crate::XrayLayer) through the
/// subscriber; a `tracing_subscriber::reload::Layer` hides it from them
/// (there [`xray_header`](XraySpanExt::xray_header) returns `None` and
/// [`set_xray_parent`](XraySpanExt::set_xray_parent) does nothing), while
/// spans are still traced: continue an incoming trace with the
/// `xray.trace_header` field instead.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::{TraceHeader, XraySpanExt};
/// use tracing_xray::export::InMemoryExporter;
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_exporter(exporter.clone())
///     .build();
/// let xray = layer.handle();
/// let _guard = tracing_subscriber::registry().with(layer).set_default();
///
/// // A server continues the caller's trace...
/// let incoming = TraceHeader::parse(
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
/// );
/// let request = tracing::info_span!("handle");
/// request.set_xray_parent(&incoming);
/// // ...and hands it on to the next service.
/// let outgoing = request.in_scope(|| {
///     let call = tracing::info_span!("call_inventory");
///     call.xray_header().unwrap()
/// });
/// assert_eq!(outgoing.root(), incoming.root());
/// drop(request);
/// xray.flush(Duration::from_secs(1)).unwrap();
///
/// let segment = &exporter.traces()[0];
/// assert_eq!(segment["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
/// assert_eq!(segment["parent_id"], "53995c3f42cd8ad8");
/// assert_eq!(outgoing.parent().unwrap().to_string(), segment["subsegments"][0]["id"]);
/// ```
///
/// The trait is sealed: only [`tracing::Span`] implements it, so that
/// methods can be added to it without breaking anyone.
pub trait XraySpanExt: sealed::Sealed {
    /// Makes this span, a root with no child yet, the segment of an incoming
    /// trace: `trace_id` = the header's Root, `parent_id` = its Parent, and
    /// its `Sampled` decision (`?` or none: the sampler decides). An invalid
    /// Root leaves the fresh trace id in place.
    ///
    /// It only acts while the root's sampling decision is still open: on a
    /// child span, or once the decision is taken (at the first child, by a
    /// call to [`xray_header`](XraySpanExt::xray_header), or by an earlier
    /// `set_xray_parent` with `Sampled=1` or `Sampled=0`), it does nothing,
    /// since spans may already carry the trace id in their headers. The
    /// `xray.trace_header` field, recorded at creation or later, does the
    /// same. It returns whether the span took the header: `false` when it
    /// did nothing, or when no `XrayLayer` traces the span.
    ///
    /// The caller's decision wins over the layer's sampler:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::{export::InMemoryExporter, Sampled, TraceHeader, XraySpanExt};
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    ///
    /// let incoming = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
    /// let request = tracing::info_span!("handle_request");
    /// assert!(request.set_xray_parent(&incoming));
    /// assert_eq!(request.xray_header().unwrap().root(), incoming.root());
    /// assert_eq!(request.xray_header().unwrap().sampled(), Sampled::No);
    /// // Decided: a second header is not taken.
    /// assert!(!request.set_xray_parent(&TraceHeader::parse("Sampled=1")));
    /// drop(request);
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert!(exporter.is_empty());
    /// ```
    fn set_xray_parent(&self, header: &TraceHeader) -> bool;

    /// The X-Ray trace id of this span's trace, without taking the sampling
    /// decision (which [`xray_header`](XraySpanExt::xray_header) takes): for
    /// a log line, before the root's request fields the sampler reads are
    /// all recorded. `None` when no `XrayLayer` traces the span or any of
    /// its ancestors. A span a global filter disabled (no subscriber saw
    /// it) gives the current span's, as [`xray_header`](XraySpanExt::xray_header)
    /// does. While a root's decision is open, a header given to it
    /// ([`set_xray_parent`](XraySpanExt::set_xray_parent), the
    /// `xray.trace_header` field) still replaces its trace id.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::{TraceHeader, XraySpanExt};
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    ///
    /// let request = tracing::info_span!("handle_request", url.path = tracing::field::Empty);
    /// request.set_xray_parent(&TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793"));
    /// let trace_id = request.xray_trace_id().unwrap();
    /// assert_eq!(trace_id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
    /// // The sampler has not decided yet: it will see the path.
    /// request.record("url.path", "/orders");
    /// assert!(tracing::Span::none().xray_trace_id().is_none());
    /// ```
    fn xray_trace_id(&self) -> Option<TraceId>;

    /// The header for a downstream call made inside this span: Root,
    /// Parent = this (sub)segment's id, the sampling decision (taken now if
    /// still pending), and the incoming header's extra keys. For a span of
    /// an unsampled trace, Parent is its nearest traced ancestor's id and
    /// `Sampled=0`; a span hidden from the layer (by a per-layer filter)
    /// gives its nearest traced ancestor's header, and one a global filter
    /// disabled (`debug_span!` under an `info` filter: no subscriber saw it,
    /// it has no ancestors) the current span's, the traced span the call is
    /// made in. `None` when no `XrayLayer` traces the span or any of its
    /// ancestors ([`Span::none`](tracing::Span::none) included).
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::{Sampled, XraySpanExt};
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    ///
    /// let call = tracing::info_span!("call_inventory");
    /// let header = call.xray_header().unwrap();
    /// assert!(header.parent().is_some()); // this span's (sub)segment id
    /// assert_eq!(header.sampled(), Sampled::Yes);
    /// // The value to send as `X-Amzn-Trace-Id`:
    /// let value = header.to_string();
    /// assert!(value.starts_with("Root=1-") && value.ends_with(";Sampled=1"), "{value}");
    ///
    /// assert!(tracing::Span::none().xray_header().is_none()); // not traced
    /// ```
    fn xray_header(&self) -> Option<TraceHeader>;
}

fn with_data(span: &tracing::Span, lookup: Lookup, f: &mut dyn FnMut(Found<'_>)) {
    // A span a global filter disabled has no id, and no subscriber knows
    // of it; the span it was made in, the current one, stands in for it
    // (not for `Span::none()`, which no callsite made, nor for the span's
    // own data: `Lookup::Own`).
    if span.is_disabled()
        && !span.is_none()
        && matches!(lookup, Lookup::Nearest | Lookup::NearestDecided)
    {
        let current = tracing::Span::current();
        if !current.is_disabled() {
            return with_data(&current, lookup, f);
        }
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(get) = dispatch.downcast_ref::<WithContext>() {
            (get.0)(dispatch, id, lookup, f);
        }
    });
}

mod sealed {
    /// Implemented by [`tracing::Span`] alone.
    #[allow(unreachable_pub)] // reachable as a supertrait, not nameable
    pub trait Sealed {}

    impl Sealed for tracing::Span {}
}

impl XraySpanExt for tracing::Span {
    fn set_xray_parent(&self, header: &TraceHeader) -> bool {
        let mut taken = false;
        with_data(self, Lookup::Own, &mut |found| {
            taken = found.inner.continue_trace(found.data, header);
        });
        taken
    }

    fn xray_trace_id(&self) -> Option<TraceId> {
        let mut out = None;
        with_data(self, Lookup::Nearest, &mut |found| {
            out = Some(found.data.trace_id)
        });
        out
    }

    fn xray_header(&self) -> Option<TraceHeader> {
        let mut out = None;
        // A root still undecided is decided first (see
        // `layer::settle_decision`), with no lock of it held.
        with_data(self, Lookup::NearestDecided, &mut |found| {
            out = Some(
                found
                    .inner
                    .outgoing_header(found.data, found.incoming.as_ref()),
            );
        });
        out
    }
}

/// Ends `span`'s (sub)segment now, though the span may stay open: what the
/// tower layers do when a request's response is sent (or a call's arrives),
/// so that work the request spawned in its span (`in_current_span`), which
/// keeps the span open, neither stretches the request's time nor holds its
/// segment back: a root's segment is sent now ([`LayerInner::seal`]), and
/// the spawned work's spans follow, subsegments of it, drawn past its end
/// as in the X-Ray SDKs: each span made in the root's span as it ends, with
/// its subtree. Nothing for a span of an unsampled trace.
///
/// [`LayerInner::seal`]: crate::layer::LayerInner::seal
#[cfg(feature = "tower")]
pub(crate) fn end_now(span: &tracing::Span) {
    // Now, not once the root is decided (which may wait for another thread).
    let ended = crate::clock::Instant::now();
    with_data(span, Lookup::OwnDecided, &mut |found| {
        if found.data.decision != crate::span_data::Decision::NotSampled
            && found.data.role != crate::span_data::Role::Facade
        {
            found.data.rare_mut().ended = Some(ended);
            found.inner.seal(found.data);
        }
    });
}

/// The header an outgoing call made in `call_span` carries (the tower client
/// layer's and the AWS SDK interceptor's). When a filter hides the call's own
/// span (a global filter for the application's crates only), the nearest
/// traced span, the current one, is the downstream's parent.
#[cfg(any(feature = "aws-sdk", feature = "tower"))]
pub(crate) fn call_header(call_span: &tracing::Span) -> Option<TraceHeader> {
    // A disabled span gives the current span's (see `with_data`); so does
    // `Span::none()` here.
    if call_span.is_none() {
        tracing::Span::current().xray_header()
    } else {
        call_span.xray_header()
    }
}
