//! [`XrayLayer`]: the `tracing_subscriber::Layer` and its hot path.
//!
//! Per span: one [`SpanData`] in the registry's extensions, created with its
//! ids in `on_new_span`; fields recorded into a local vector before any
//! extensions lock is taken; at `on_close` the finished span moves into its
//! nearest traced ancestor, and a root's close hands the whole tree to the
//! worker with a `try_send`. `on_enter`/`on_exit` are not used: a span lasts
//! from creation to close however often an async task polls it.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::Layer;

use crate::assemble::Top;
use crate::handle::{Counters, XrayHandle};
use crate::id::{SegmentId, TraceId};
use crate::span_data::{debug_string, Anchor, ErrorRecord, FieldVisitor, SpanData};
use crate::worker::Message;

thread_local! {
    static SUPPRESSED: Cell<bool> = const { Cell::new(false) };
}

/// While alive, spans and events of the current thread are invisible to every
/// `XrayLayer` (the worker and the pollers hold one for their whole life).
pub(crate) struct SuppressGuard {
    previous: bool,
}

impl SuppressGuard {
    pub(crate) fn enter() -> Self {
        SuppressGuard {
            previous: SUPPRESSED.with(|s| s.replace(true)),
        }
    }
}

impl Drop for SuppressGuard {
    fn drop(&mut self) {
        let previous = self.previous;
        SUPPRESSED.with(|s| s.set(previous));
    }
}

fn suppressed() -> bool {
    SUPPRESSED.with(Cell::get)
}

pub(crate) struct LayerInner {
    pub(crate) tx: Sender<Message>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) max_held: usize,
}

/// The `tracing_subscriber::Layer` that turns spans into X-Ray segments.
///
/// Build one with [`crate::layer()`] or [`crate::builder()`]. The layer is not
/// generic over the subscriber, so it can be stored (or kept in an `Option`)
/// like any value.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let layer = tracing_xray::builder()
///     .with_service_name("checkout")
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// let xray = layer.handle();
/// let _default = tracing_subscriber::registry().with(layer).set_default();
/// tracing::info_span!("handle_request").in_scope(|| {});
/// xray.flush(std::time::Duration::from_secs(1)).unwrap();
/// ```
pub struct XrayLayer {
    pub(crate) inner: Option<Arc<LayerInner>>,
    pub(crate) handle: XrayHandle,
}

impl fmt::Debug for XrayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XrayLayer")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl XrayLayer {
    /// A cloneable handle to flush, shut down, and read the counters.
    pub fn handle(&self) -> XrayHandle {
        self.handle.clone()
    }

    /// Whether the layer records anything (`false` when switched off by
    /// `AWS_XRAY_SDK_ENABLED=false` or `AWS_XRAY_SDK_DISABLED=true`).
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }
}

/// The nearest ancestor of `span` (itself excluded) that this layer traces.
/// Almost always the direct parent; the walk beyond it is the rare case.
fn traced_ancestor<'a, S>(span: &SpanRef<'a, S>) -> Option<SpanRef<'a, S>>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let parent = span.parent()?;
    if parent.extensions().get::<SpanData>().is_some() {
        return Some(parent);
    }
    parent
        .scope()
        .skip(1)
        .find(|s| s.extensions().get::<SpanData>().is_some())
}

/// What a new span inherits from its nearest traced ancestor.
struct Inherited {
    span: Id,
    trace_id: TraceId,
    sampled: bool,
    anchor: Anchor,
}

fn inherit<S>(span: &SpanRef<'_, S>) -> Option<Inherited>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let from = |s: &SpanRef<'_, S>| {
        s.extensions().get::<SpanData>().map(|d| Inherited {
            span: s.id(),
            trace_id: d.trace_id,
            sampled: d.sampled,
            anchor: d.anchor,
        })
    };
    let parent = span.parent()?;
    // One lock on the direct parent in the common case.
    from(&parent).or_else(|| parent.scope().skip(1).find_map(|s| from(&s)))
}

impl LayerInner {
    fn send(&self, msg: Message, spans: usize) {
        match self.tx.try_send(msg) {
            Ok(()) => Counters::add(&self.counters.traces_queued, 1),
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                Counters::add(&self.counters.traces_dropped, 1);
                Counters::add(&self.counters.spans_dropped, spans as u64);
                drop(msg);
            }
        }
    }
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.inner.is_none() || suppressed() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = inherit(&span);
        let parent_span = parent.as_ref().map(|p| p.span.clone());
        let (trace_id, sampled, anchor, start) = match parent {
            Some(p) => (p.trace_id, p.sampled, p.anchor, Instant::now()),
            None => {
                let (anchor, epoch) = Anchor::now();
                (TraceId::with_epoch(epoch), true, anchor, anchor.at)
            }
        };
        let mut data = SpanData {
            trace_id,
            id: SegmentId::new(),
            parent_id: None,
            parent_span,
            sampled,
            anchor,
            start,
            end: None,
            meta: attrs.metadata(),
            fields: Vec::new(),
            errors: Vec::new(),
            errors_dropped: 0,
            children: Vec::new(),
            held: 0,
        };
        if sampled && !attrs.fields().is_empty() {
            data.fields.reserve(attrs.fields().len());
            let mut errors = Vec::new();
            attrs.record(&mut FieldVisitor {
                fields: &mut data.fields,
                errors: &mut errors,
            });
            for e in errors {
                data.push_error(e);
            }
        }
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.inner.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if !span
            .extensions()
            .get::<SpanData>()
            .is_some_and(|d| d.sampled)
        {
            return;
        }
        // Visit (user code) first, lock after.
        let mut fields = Vec::new();
        let mut errors = Vec::new();
        values.record(&mut FieldVisitor {
            fields: &mut fields,
            errors: &mut errors,
        });
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanData>() {
            data.fields.append(&mut fields);
            for e in errors {
                data.push_error(e);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.inner.is_none() || *event.metadata().level() != Level::ERROR || suppressed() {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let span = if span.extensions().get::<SpanData>().is_some() {
            span
        } else {
            match traced_ancestor(&span) {
                Some(s) => s,
                None => return,
            }
        };
        if !span
            .extensions()
            .get::<SpanData>()
            .is_some_and(|d| d.sampled)
        {
            return;
        }
        let meta = event.metadata();
        let mut visitor = EventVisitor::default();
        event.record(&mut visitor);
        let record = match visitor.error {
            Some(mut record) => {
                if let Some(message) = visitor.message {
                    record
                        .sources
                        .insert(0, std::mem::replace(&mut record.message, message));
                }
                record.location = meta.file().zip(meta.line());
                record.target = Some(meta.target());
                record
            }
            None => ErrorRecord {
                field: None,
                message: visitor.message.unwrap_or_else(|| meta.name().to_owned()),
                sources: Vec::new(),
                location: meta.file().zip(meta.line()),
                target: Some(meta.target()),
            },
        };
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanData>() {
            data.push_error(record);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(inner) = &self.inner else { return };
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        if !data.sampled {
            return;
        }
        data.end = Some(Instant::now());
        if let Some(parent) = data.parent_span.as_ref().and_then(|p| ctx.span(p)) {
            let mut ext = parent.extensions_mut();
            let Some(p) = ext.get_mut::<SpanData>() else {
                return;
            };
            p.held += data.span_count();
            p.children.push(data);
            if p.held > inner.max_held {
                // A long-lived span: stream what it holds instead of growing.
                let children = std::mem::take(&mut p.children);
                let spans = std::mem::replace(&mut p.held, 0);
                let (trace_id, parent) = (p.trace_id, p.id);
                drop(ext);
                inner.send(
                    Message::Detached {
                        trace_id,
                        parent,
                        children,
                    },
                    spans,
                );
            }
            return;
        }
        let spans = data.span_count();
        inner.send(
            Message::Trace {
                root: Box::new(data),
                top: Top::Segment,
            },
            spans,
        );
    }
}

/// Collects an ERROR event's message and any error value it carries.
#[derive(Default)]
struct EventVisitor {
    message: Option<String>,
    error: Option<ErrorRecord>,
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.error.is_none() {
            let mut fields = Vec::new();
            let mut errors = Vec::new();
            FieldVisitor {
                fields: &mut fields,
                errors: &mut errors,
            }
            .record_error(field, value);
            self.error = errors.pop();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(debug_string(value));
        }
    }
}
