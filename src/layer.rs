//! [`XrayLayer`]: the `tracing_subscriber::Layer` and its hot path.
//!
//! Per span: one boxed [`SpanData`] in the registry's extensions (the box is
//! reused from spans the worker has finished with, see [`crate::recycle`]),
//! created with its ids in `on_new_span`; fields recorded into a local
//! vector before any extensions lock is taken; at `on_close` the finished
//! span's box is pushed into its trace's [`TraceBuf`] (no lookup of its
//! parent), and the root's close hands the whole list to the worker with a
//! `try_send`; the worker rebuilds the tree from the spans' parent ids.
//! `on_enter`/`on_exit` are not used: a span lasts from creation to close
//! however often an async task polls it.
//!
//! The sampling decision is taken once per trace, at the root, as late as
//! possible. Children of an unsampled root store nothing at all: their ids
//! go into a lock-free memo ([`crate::unsampled`]), so that their own
//! children and their close skip the registry's extensions.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Sender, TrySendError};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::assemble::Top;
use crate::clock::Instant;
use crate::config::Config;
use crate::handle::{Counters, XrayHandle};
use crate::header::{Sampled, TraceHeader};
use crate::id::{SegmentId, TraceId};
use crate::recycle::RecycleRx;
use crate::sampling::{Sampler, SamplingRequest};
use crate::span_data::{
    Ancestry, Anchor, Decision, ErrorRecord, EventRecord, FieldStr, FieldValue, FieldVisitor,
    Fields, MAX_FIELD_BYTES, MAX_PRECURSORS, Role, SpanData, TraceBuf, debug_string,
};
use crate::span_list::SpanList;
use crate::unsampled::UnsampledIds;
use crate::worker::Message;

thread_local! {
    static SUPPRESSED: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread's last new span with a parent was in an
    /// unsampled trace. Requests are mostly all sampled or all not, so
    /// while this holds, a new span asks the memo about the current span
    /// before looking up its own parent. Only a hint: a wrong guess costs
    /// one lookup, never a wrong answer.
    static IN_UNSAMPLED: Cell<bool> = const { Cell::new(false) };
    /// The spans entered while this thread's panic unwinds (by a `Drop`),
    /// innermost last: their exit is the `Drop`'s, not the unwinding's.
    static ENTERED_WHILE_PANICKING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Whether `ENTERED_WHILE_PANICKING` may hold a span: one entered in a
    /// `Drop` during the unwinding may be exited after it (kept in a
    /// thread-local), and is forgotten then.
    static ANY_ENTERED_WHILE_PANICKING: Cell<bool> = const { Cell::new(false) };
}

/// At most this many spans entered during one unwinding are remembered
/// ([`XrayLayer::on_enter`]); past it, a span exited in a `Drop` may be
/// marked as one the panic went through.
const MAX_ENTERED_WHILE_PANICKING: usize = 64;

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

pub(crate) fn suppressed() -> bool {
    SUPPRESSED.with(Cell::get)
}

/// Threads waiting for a root's decision another thread is taking (its
/// `deciding` flag set, its sampler running unlocked), and how they are
/// woken: the decider notifies only when someone waits, so that the common
/// case (no one) costs one atomic read.
static DECISION_WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static DECISION_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
static DECISION_MADE: std::sync::Condvar = std::sync::Condvar::new();

/// Waits, holding no span's lock, until a decision is taken (any root's:
/// the caller checks its own again) or a short while passes.
pub(crate) fn wait_for_a_decision() {
    DECISION_WAITERS.fetch_add(1, Ordering::SeqCst);
    let guard = DECISION_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = DECISION_MADE.wait_timeout(guard, std::time::Duration::from_millis(10));
    DECISION_WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Wakes the threads waiting for a decision (after the root's lock is
/// released).
fn decision_made() {
    if DECISION_WAITERS.load(Ordering::SeqCst) > 0 {
        drop(
            DECISION_LOCK
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        DECISION_MADE.notify_all();
    }
}

/// The name of the span `lambda_runtime` opens around each invocation, and
/// its field holding the invocation's trace header.
pub(crate) const LAMBDA_INVOKE_SPAN: &str = "Lambda runtime invoke";
const LAMBDA_TRACE_FIELD: &str = "xrayTraceId";
/// The field convention that continues an incoming trace.
pub(crate) const TRACE_HEADER_FIELD: &str = "xray.trace_header";

pub(crate) struct LayerInner {
    /// Its spans' [`SpanData::owner`] ([`crate::owners`]).
    pub(crate) tag: u8,
    pub(crate) tx: Sender<Message>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) max_held: usize,
    /// Bytes of finished spans an open trace holds before it streams them
    /// ([`crate::config::max_held_bytes`]).
    pub(crate) max_held_bytes: usize,
    /// The queue's bound in bytes of finished spans.
    pub(crate) max_queued_bytes: u64,
    pub(crate) sampler: Arc<dyn Sampler>,
    pub(crate) cfg: Arc<Config>,
    /// Running in AWS Lambda: Lambda owns the segment (SPEC §3.3).
    pub(crate) lambda: bool,
    /// Record non-error events as metadata.
    pub(crate) events: bool,
    /// Span memory the worker emptied, for new spans to reuse.
    pub(crate) recycle: RecycleRx,
    /// Open children of unsampled traces (they hold no data).
    pub(crate) unsampled_spans: UnsampledIds,
    /// Open spans a panic unwound through (see [`XrayLayer::on_exit`]),
    /// marked a fault as they close.
    pub(crate) unwound_spans: crate::unsampled::UnwoundIds,
    /// Open spans holding a "not sampled" decision (roots).
    pub(crate) unsampled_roots: UnsampledIds,
    /// Another `XrayLayer` shares this layer's subscriber (found as the
    /// subscriber is built, in `on_layer`). Then a span this layer is told of
    /// may be the other's, hidden from this one by a per-layer filter
    /// (tracing-subscriber calls a filtered layer for such a span when an
    /// event is dispatched inside another layer's callback,
    /// tokio-rs/tracing#2704): the shortcut for children of unsampled traces
    /// checks the span, and marks it as this layer's ([`UnsampledOf`]).
    pub(crate) shares_subscriber: AtomicBool,
}

/// Reaches a span's X-Ray data from a [`Dispatch`] (used by
/// [`crate::XraySpanExt`]): the layer is not generic over the subscriber, so
/// this function pointer, made in `on_layer` where the subscriber type is
/// known, does the typed lookup.
#[derive(Clone, Copy)]
pub(crate) struct WithContext(pub(crate) WithContextFn);

/// `with_context::<S>` for the subscriber type the layer was added to.
pub(crate) type WithContextFn = fn(&Dispatch, &Id, Lookup, &mut dyn FnMut(Found<'_>));

/// Which data a [`WithContext`] lookup wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The span's own data only.
    Own,
    /// The span's own data, a root still undecided decided first (a
    /// request's end, `end_now`).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    OwnDecided,
    /// The span's data, else its nearest traced ancestor's, plus the
    /// incoming header of the trace's root.
    Nearest,
    /// [`Lookup::Nearest`], a root still undecided decided first (a
    /// header for a downstream call).
    NearestDecided,
}

/// What a [`WithContext`] lookup found.
pub(crate) struct Found<'a> {
    pub(crate) data: &'a mut SpanData,
    pub(crate) inner: &'a LayerInner,
    pub(crate) incoming: Option<TraceHeader>,
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
    pub(crate) with_context: Option<WithContext>,
}

impl fmt::Debug for XrayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XrayLayer")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl XrayLayer {
    /// Whether the layer is on and in AWS Lambda mode.
    #[cfg(feature = "tower")]
    pub(crate) fn in_lambda_mode(&self) -> bool {
        self.inner.as_ref().is_some_and(|inner| inner.lambda)
    }

    /// A cloneable handle to flush, shut down, and read the counters.
    ///
    /// Take it before the layer moves into the subscriber.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("job").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(xray.stats().documents_exported, 1);
    /// ```
    pub fn handle(&self) -> XrayHandle {
        self.handle.clone()
    }

    /// Whether the layer records anything (`false` when switched off by
    /// `AWS_XRAY_SDK_ENABLED=false` (or `0`, `no`, `n`, `f`, `off`) or
    /// `AWS_XRAY_SDK_DISABLED=true`).
    ///
    /// ```
    /// # unsafe { std::env::remove_var("AWS_XRAY_SDK_DISABLED") };
    /// // SAFETY: no other thread of this program reads the environment yet.
    /// unsafe { std::env::set_var("AWS_XRAY_SDK_ENABLED", "false") };
    /// assert!(!tracing_xray::builder().build().is_enabled());
    ///
    /// // SAFETY: as above.
    /// unsafe { std::env::remove_var("AWS_XRAY_SDK_ENABLED") };
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(tracing_xray::export::NoopExporter)
    ///     .build();
    /// assert!(layer.is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }
}

/// The mark a child of an unsampled trace carries when its layer shares its
/// subscriber with another ([`LayerInner::shares_subscriber`]): its layer's
/// tag. A lookup from outside the layer's callbacks (`XraySpanExt`) walks
/// the registry's parents, every layer's spans among them; above a marked
/// span only its own layer's data counts, not another layer's span in
/// between.
#[derive(Clone, Copy, Debug)]
struct UnsampledOf(u8);

/// The span itself if it holds X-Ray data, else its nearest traced ancestor.
///
/// With `owner_of`, only the data of one layer counts above the first span
/// without data that names its layer: by an [`UnsampledOf`] mark, else by
/// `owner_of` (which finds the layer whose memo holds an id). Without it,
/// any layer's data counts.
fn traced_self_or_ancestor<'a, S>(
    span: SpanRef<'a, S>,
    owner_of: Option<&dyn Fn(&Id) -> u8>,
) -> Option<SpanRef<'a, S>>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut span = span;
    let mut owner = 0;
    loop {
        let found = {
            let ext = span.extensions();
            match ext.get::<Box<SpanData>>() {
                Some(d) => owner == 0 || d.owner == owner,
                None => {
                    if let (0, Some(owner_of)) = (owner, owner_of) {
                        owner = match ext.get::<UnsampledOf>() {
                            Some(mark) => mark.0,
                            None => owner_of(&span.id()),
                        };
                    }
                    false
                }
            }
        };
        if found {
            return Some(span);
        }
        span = span.parent()?;
    }
}

/// The span whose subsegment stands for `span`: `span` itself, unless it
/// is folded into an AWS SDK operation's subsegment (the SDK's internal
/// spans, the interceptor's; see `assemble::merged_spans`), whose span is
/// then the operation of the call it belongs to: the nearest above it. A
/// header naming `span` would name an id no document holds.
///
/// With `fold_all` (the SDK's internal spans folded, the default), so is
/// any other span inside an operation (an interceptor's or HTTP
/// connector's of the application's): its header names the operation too.
/// Otherwise only the AWS SDK's spans (and the interceptor's) can be
/// folded, and an operation is found among them: the walk stops at the
/// first span that is none of theirs, so that a header costs the same at
/// any depth (see `tests/xray_header_depth.rs`).
fn aws_call_of<'a, S>(span: SpanRef<'a, S>, fold_all: bool) -> SpanRef<'a, S>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let is_sdk_span = |meta: &tracing_core::Metadata<'_>| is_sdk_target(meta.target());
    if !is_sdk_span(span.metadata()) {
        let under_sdk = fold_all
            && span
                .extensions()
                .get::<Box<SpanData>>()
                .is_some_and(|d| d.ancestry.under_sdk());
        if !under_sdk {
            return span;
        }
        // Inside an SDK call: the call of its nearest SDK span above.
        let mut next = span.parent();
        while let Some(s) = next {
            if is_sdk_span(s.metadata()) {
                return aws_call_of(s, fold_all);
            }
            next = s.parent();
        }
        return span;
    }
    let owner = span
        .extensions()
        .get::<Box<SpanData>>()
        .map_or(0, |d| d.owner);
    // The nearest operation, the span itself included: a call made inside
    // another (the credentials provider's STS call inside a DynamoDB call's
    // attempt) is a subsegment of its own (see `assemble::is_own_call`).
    // The interceptor's span is merged into the SDK's operation above it;
    // below another interceptor span, it is a call of its own.
    let kind = |s: &SpanRef<'a, S>| {
        s.extensions()
            .get::<Box<SpanData>>()
            .filter(|d| d.owner == owner && crate::assemble::is_aws_operation(d))
            .map(|d| crate::assemble::is_interceptor_span(d))
    };
    let span_is_interceptor = match kind(&span) {
        Some(false) => return span,
        Some(true) => true,
        None => false,
    };
    let mut interceptor = None;
    let mut next = span.parent();
    while let Some(s) = next.filter(|a| is_sdk_span(a.metadata())) {
        let is_interceptor = match kind(&s) {
            Some(false) => return s,
            Some(true) => true,
            None => false,
        };
        next = s.parent();
        if is_interceptor {
            if span_is_interceptor {
                return span;
            }
            if let Some(below) = interceptor {
                return below;
            }
            interceptor = Some(s);
        }
    }
    interceptor.unwrap_or(span)
}

/// Whether a span of this target is the AWS SDK's (its runtime's, a service
/// crate's) or the interceptor's: the spans an SDK operation's subsegment
/// can fold in. The first byte settles it for nearly every other target.
#[inline]
fn is_sdk_target(target: &str) -> bool {
    match target.as_bytes().first() {
        Some(b'a') => target.starts_with("aws_smithy") || target.starts_with("aws_sdk"),
        Some(b't') => target == crate::fields::AWS_SDK_TARGET,
        _ => false,
    }
}

/// Of the finished spans a long-lived trace is about to stream
/// (`streamed`), takes out those inside an AWS SDK call still in progress:
/// the subtrees whose top's parent is still open (not among them) and is,
/// or is inside, an SDK span, each with that parent, which it waits for
/// (see [`crate::span_data::HeldBack`]). Sent now, they would be
/// subsegments of their own, or name as parent a span that is folded and
/// never sent; kept, they leave with their operation and fold into it.
/// Only up to half the trace's bounds on what it holds, counting what it
/// holds back already (`held`: spans, bytes), whole subtrees in the order
/// they ended: past that the rest leave now (as the SDK's internal spans do
/// when no operation span folds them), so that a trace still streams and
/// holds no more than before.
fn hold_back_sdk_work(
    streamed: &mut SpanList,
    (held_spans, held_bytes): (usize, usize),
    inner: &LayerInner,
) -> Option<crate::span_data::ToHold> {
    use std::collections::{HashMap, HashSet};
    if !streamed.iter().any(|s| s.ancestry.under_sdk()) {
        return None;
    }
    let ids: HashSet<SegmentId> = streamed.iter().map(|s| s.id).collect();
    // Each span held back, and the top of its subtree; each top, and its
    // parent, still open, which it waits for.
    let mut top_of: HashMap<SegmentId, SegmentId> = HashMap::new();
    let mut waits_for: HashMap<SegmentId, SegmentId> = HashMap::new();
    // A parent ends after its children, so it comes later in the list: from
    // the end, a subtree's top is met first. Spans that ended on other
    // threads in between can break that order, hence the passes until
    // nothing changes (one, nearly always).
    loop {
        let mut changed = false;
        for i in (0..streamed.len()).rev() {
            let s = streamed.get(i);
            let Some(parent) = s.parent_seg else { continue };
            if top_of.contains_key(&s.id) {
                continue;
            }
            let top = if s.ancestry.under_sdk() && !ids.contains(&parent) {
                waits_for.insert(s.id, parent);
                Some(s.id)
            } else {
                top_of.get(&parent).copied()
            };
            if let Some(top) = top {
                top_of.insert(s.id, top);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if top_of.is_empty() {
        return None;
    }
    // What each subtree holds, its tops in the order they ended.
    let mut subtrees: Vec<(SegmentId, usize, usize)> = Vec::new();
    let mut place: HashMap<SegmentId, usize> = HashMap::new();
    for s in streamed.iter() {
        if let Some(top) = top_of.get(&s.id) {
            let i = *place.entry(*top).or_insert_with(|| {
                subtrees.push((*top, 0, 0));
                subtrees.len() - 1
            });
            subtrees[i].1 += 1;
            subtrees[i].2 += s.held_bytes();
        }
    }
    let (max_spans, max_bytes) = (inner.max_held / 2, inner.max_held_bytes / 2);
    let (mut spans, mut bytes) = (held_spans, held_bytes);
    let mut kept = HashSet::new();
    for (top, n, b) in subtrees {
        if spans + n > max_spans || bytes + b > max_bytes {
            break;
        }
        spans += n;
        bytes += b;
        kept.insert(top);
    }
    if kept.is_empty() {
        return None;
    }
    let to_hold = streamed.split_off_where(|s| top_of.get(&s.id).is_some_and(|t| kept.contains(t)));
    let waits_for = to_hold.iter().map(|s| waits_for[&top_of[&s.id]]).collect();
    Some((to_hold, waits_for))
}

/// Remembers the new span `span` (`id`) as a child of an unsampled trace;
/// when another layer shares the subscriber, or when `mark` says so (the
/// memo had lost its parent), marks it as this layer's.
fn remember_unsampled_child<S>(inner: &LayerInner, id: &Id, span: &SpanRef<'_, S>, mark: bool)
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    inner.unsampled_child(id);
    if mark || inner.shares_subscriber.load(Ordering::Relaxed) {
        unless_poisoned(|| {
            let mut ext = span.extensions_mut();
            if ext.get_mut::<UnsampledOf>().is_none() {
                ext.insert(UnsampledOf(inner.tag));
            }
        });
    }
}

/// The span an event's data goes to: the event's span or its nearest traced
/// ancestor. A child of an unsampled trace (in the memo) has none, known
/// without walking up to its root.
fn traced_event_span<'a, S>(
    ctx: &'a Context<'_, S>,
    event: &Event<'_>,
    inner: &LayerInner,
) -> Option<SpanRef<'a, S>>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut span = ctx.event_span(event)?;
    // The callback's context shows this layer's spans only: no other
    // layer's data to pass over. A child of an unsampled trace the memo
    // holds, or this layer marked, stops the walk.
    loop {
        if inner.unsampled_spans.contains(&span.id()) {
            return None;
        }
        {
            let ext = span.extensions();
            if ext.get::<Box<SpanData>>().is_some() {
                drop(ext);
                return Some(span);
            }
            if ext.get::<UnsampledOf>().is_some_and(|m| m.0 == inner.tag) {
                return None;
            }
        }
        span = span.parent()?;
    }
}

/// What a new span inherits from its nearest traced ancestor.
struct Inherited {
    /// The registry id of the span inherited from.
    from: Id,
    seg: SegmentId,
    trace_id: TraceId,
    sampled: bool,
    anchor: Anchor,
    facade: bool,
    /// The span inherited from is, or is inside, an AWS SDK span.
    under_sdk: bool,
    trace: Option<Arc<TraceBuf>>,
}

impl Inherited {
    #[inline]
    fn from(from: Id, d: &SpanData) -> Self {
        let sampled = d.sampled();
        Inherited {
            from,
            seg: d.id,
            trace_id: d.trace_id,
            sampled,
            anchor: d.anchor,
            facade: d.role == Role::Facade,
            under_sdk: d.ancestry.under_sdk() || is_sdk_target(d.meta.target()),
            trace: if sampled { d.trace.clone() } else { None },
        }
    }
}

/// The buffer of a Lambda invocation's top-level span: its subtree leaves
/// as it ends, in a buffer of its own, so that concurrent calls of the
/// invocation never wait in, nor take from, one another's.
#[cold]
#[inline(never)]
fn top_level_buffer(facade: &TraceBuf, inner: &LayerInner) -> Arc<TraceBuf> {
    Arc::new(facade.part(inner.spare_buffer()))
}

/// What [`inherit`] passed on its way up.
#[derive(Default)]
struct Walk {
    /// Spans without data (children of an unsampled trace the memo lost)
    /// lay between the new span and its nearest traced ancestor.
    passed: bool,
    /// The walk stopped at a child of an unsampled trace this layer marked
    /// ([`UnsampledOf`]), before any traced ancestor: `inherit` gives none.
    marked: bool,
}

/// Finds the nearest traced ancestor of a new span with one read lock in
/// the common case; a root still undecided decides now, at its first child.
/// The walk stops early at a child of an unsampled trace this layer marked:
/// one made when the memo had lost its parent (see `on_new_span`), so that
/// a memo overrun by many requests in flight never costs a walk up to the
/// root for every span.
fn inherit<S>(
    parent: Option<SpanRef<'_, S>>,
    inner: &LayerInner,
    walk: &mut Walk,
) -> Option<Inherited>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut ancestor = parent?;
    loop {
        {
            // A lock another layer's panic poisoned (the application having
            // caught it) is read in vain: the new span is not traced, as
            // below a marked span.
            let Some(ext) = unless_poisoned(|| ancestor.extensions()) else {
                walk.marked = true;
                return None;
            };
            match ext.get::<Box<SpanData>>() {
                Some(d) if d.decision != Decision::Pending => {
                    return Some(Inherited::from(ancestor.id(), d));
                }
                Some(_) => {}
                None => {
                    if ext.get::<UnsampledOf>().is_some_and(|m| m.0 == inner.tag) {
                        walk.marked = true;
                        return None;
                    }
                    drop(ext);
                    ancestor = ancestor.parent()?;
                    walk.passed = true;
                    continue;
                }
            }
        }
        // Undecided: decided now, once, with no lock of the root held while
        // the sampler runs (or by the thread already deciding it); then
        // read again. (Never suppressed here: `new_span` returns first.)
        if !settle_decision(&ancestor, inner) {
            walk.marked = true;
            return None;
        }
    }
}

fn first_str<'a>(fields: &'a [(&'static str, FieldValue)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        fields.iter().rev().find_map(|(name, v)| match v {
            FieldValue::Str(s) if name == k => Some(s.as_str()),
            _ => None,
        })
    })
}

/// What the sampler sees of a root ([`LayerInner::sampling_input`]).
struct SamplingInput {
    host: Option<FieldStr>,
    method: Option<FieldStr>,
    path: Option<FieldStr>,
    span_name: &'static str,
}

/// The request a root's fields describe, for the sampler. Each part comes
/// from the first of its keys that is present (the first listed for `host`
/// is `http.host`, then `server.address` or `net.host.name`, then `host`;
/// `server.port` or `net.host.port` joins the first two as a `Host` header
/// does), and a key recorded
/// twice gives its last value. The path is the request's own (X-Ray's
/// `url_path`, Go's `r.URL.Path`): `url.path`, `http.target`, `uri` (the
/// path of an absolute one, as HTTP/2 requests have), the path of `url.full`
/// or `http.url`, and only then the route template `http.route`.
#[derive(Debug, Default, PartialEq)]
struct RequestFields<'a> {
    host: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    /// `server.port` / `net.host.port`: OpenTelemetry splits the `Host`
    /// header into it and `server.address`, which the sampler sees joined
    /// again (see [`RequestFields::host_header`]).
    port: Option<i64>,
    /// `url.scheme` / `http.scheme`, which says whether `port` is the
    /// default one.
    scheme: Option<&'a str>,
    /// Whether `host` came from a field that `port` completes (`http.host`,
    /// `server.address`, `net.host.name`, as the document's URL joins
    /// them; not an absolute URL's authority, which keeps its own port).
    host_is_name: bool,
    /// Whether a field that can make the root a call (its kind, namespace,
    /// a database or an RPC system) is there: then
    /// [`conventions::is_call`](crate::fields::conventions::is_call) says.
    may_be_call: bool,
}

impl<'a> RequestFields<'a> {
    /// One pass over the fields: this runs once per trace, on the
    /// application's thread.
    fn of(fields: &'a [(&'static str, FieldValue)]) -> Self {
        /// The value of the best-ranked key seen so far (0 is best).
        #[derive(Clone, Copy)]
        struct Pick<'a>(Option<(u8, &'a str)>);
        impl<'a> Pick<'a> {
            /// An empty value is none (a request without a Host header
            /// recorded as `""`): it hides no other key.
            fn offer(&mut self, rank: u8, value: &'a str) {
                if !value.is_empty() && self.0.is_none_or(|(best, _)| rank <= best) {
                    self.0 = Some((rank, value));
                }
            }
            fn get(self) -> Option<&'a str> {
                self.0.map(|(_, v)| v)
            }
        }
        let (mut host, mut method, mut path) = (Pick(None), Pick(None), Pick(None));
        let (mut port, mut scheme) = (None, None);
        let mut may_be_call = false;
        for (name, value) in fields {
            if matches!(
                *name,
                "otel.kind"
                    | "span.kind"
                    | "xray.namespace"
                    | "db.system"
                    | "db.system.name"
                    | "rpc.system"
                    | "rpc.service"
                    | "service"
            ) {
                may_be_call = true;
                continue;
            }
            let absent = crate::fields::conventions::is_absent_option(value);
            if matches!(*name, "server.port" | "net.host.port") {
                port = match value {
                    FieldValue::I64(p) => Some(*p),
                    FieldValue::U64(p) => i64::try_from(*p).ok(),
                    FieldValue::Str(p) if !absent => {
                        crate::fields::conventions::unwrapped_text(p.as_str())
                            .parse()
                            .ok()
                    }
                    _ => None,
                };
                continue;
            }
            let FieldValue::Str(value) = value else {
                continue;
            };
            let value = value.as_str();
            // `?None`: no value, whichever key (a host, a method, a path).
            if absent {
                continue;
            }
            // Recorded with `?` (`"GET"`, `Some("/orders")`): the text alone.
            let text = crate::fields::conventions::unwrapped_text(value);
            // An absolute URL (tower-http's `uri` in HTTP/2, an absolute
            // `http.target`): its path, and its authority for the host.
            let absolute = !text.starts_with('/') && text.contains("://");
            match *name {
                "http.host" => host.offer(0, text),
                // OpenTelemetry's name, and its name before v1.21.
                "server.address" | "net.host.name" => host.offer(1, text),
                "host" => host.offer(2, text),
                "url.scheme" | "http.scheme" if !text.is_empty() => scheme = Some(text),
                "http.request.method" => method.offer(0, text),
                "http.method" => method.offer(1, text),
                "method" => method.offer(2, text),
                "url.path" => path.offer(0, text),
                "http.target" if absolute => {
                    path.offer(1, path_of_url(value));
                    host.offer(3, authority_of_url(value));
                }
                "http.target" => path.offer(1, text),
                "uri" if absolute => {
                    path.offer(2, path_of_url(value));
                    host.offer(3, authority_of_url(value));
                }
                "uri" => path.offer(2, text),
                "url.full" => {
                    let (p, h) = path_and_host_of_full_url(value);
                    path.offer(3, p);
                    host.offer(4, h);
                }
                "http.url" => {
                    let (p, h) = path_and_host_of_full_url(value);
                    path.offer(4, p);
                    host.offer(5, h);
                }
                "http.route" => path.offer(5, text),
                _ => {}
            }
        }
        RequestFields {
            host: host.get(),
            method: method.get(),
            path: path.get().map(|p| p.split(['?', '#']).next().unwrap_or(p)),
            port,
            scheme,
            host_is_name: host.0.is_some_and(|(rank, _)| rank <= 1),
            may_be_call,
        }
    }

    /// The host as a `Host` header writes it, which is what the SDKs match
    /// a rule's host against: `host:port` off the scheme's default port,
    /// when the port was recorded apart (OpenTelemetry's `server.address`
    /// and `server.port`, as the document's URL joins them); the host as
    /// recorded otherwise.
    fn host_header(&self) -> Option<std::borrow::Cow<'a, str>> {
        use std::borrow::Cow;
        let host = self.host?;
        let Some(port) = self.port.filter(|_| self.host_is_name) else {
            return Some(Cow::Borrowed(host));
        };
        // The scheme the document's URL takes: as recorded, else `https`
        // on 443 and `http` otherwise.
        let default = match self.scheme {
            Some(s) if s.eq_ignore_ascii_case("https") => port == 443,
            Some(s) if s.eq_ignore_ascii_case("http") => port == 80,
            Some(_) => false,
            None => port == 80 || port == 443,
        };
        // Written as the document's URL writes it (an IPv6 address in
        // brackets), with the port unless the host has its own.
        let mut header = String::with_capacity(host.len() + 8);
        let has_port = crate::fields::conventions::push_host(&mut header, host);
        if default || has_port {
            return Some(Cow::Borrowed(host));
        }
        header.push(':');
        header.push_str(&port.to_string());
        Some(Cow::Owned(header))
    }
}

impl LayerInner {
    fn send(&self, msg: Message) {
        let c = &*self.counters;
        let bytes = msg.span_bytes() as u64;
        // The queue's bound in bytes: what was queued, less what the worker
        // is done with. Its count is read from the worker's cache line only
        // when the figure last seen does not leave room.
        let queued = c.bytes_queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let mut done = c.bytes_done_seen.load(Ordering::Relaxed);
        if queued.saturating_sub(done) > self.max_queued_bytes {
            done = c.bytes_done.load(Ordering::Relaxed);
            c.bytes_done_seen.fetch_max(done, Ordering::Relaxed);
            if queued.saturating_sub(done) > self.max_queued_bytes {
                c.bytes_queued.fetch_sub(bytes, Ordering::Relaxed);
                self.drop_trace(msg);
                return;
            }
        }
        if c.queue_closed.load(Ordering::Relaxed) {
            // Shut down: nobody would take it.
            c.bytes_queued.fetch_sub(bytes, Ordering::Relaxed);
            self.drop_trace(msg);
            return;
        }
        // Counted once in: the worker may take it back out (into
        // `traces_dropped`) before this count, which `Stats` allows for.
        match self.tx.try_send(msg) {
            Ok(()) => Counters::add(&c.traces_queued, 1),
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                c.bytes_queued.fetch_sub(bytes, Ordering::Relaxed);
                self.drop_trace(msg);
            }
        }
    }

    /// Drops a trace (or part of one) the queue has no room for, counted.
    fn drop_trace(&self, msg: Message) {
        self.counters.trace_dropped(msg.span_count() as u64);
        drop(msg);
    }

    /// An empty span buffer, recycled by the worker when it has one.
    fn spare_buffer(&self) -> SpanList {
        self.recycle.buffer()
    }

    /// A new trace's buffer of finished spans (sampled traces only), with
    /// the root's incoming header.
    fn new_trace_buf(&self, incoming: Option<TraceHeader>, root: SegmentId) -> Arc<TraceBuf> {
        Arc::new(TraceBuf::new(self.spare_buffer(), incoming, root))
    }

    /// Sends the segment of `root`, a root whose span stays open (work it
    /// spawned holds it), ended now: as its close would, with the spans of
    /// its trace finished so far. What remains of it is a facade: its
    /// children leave as they end, as independent subsegments of the
    /// segment (as in Lambda), and its own close sends nothing. Nothing for
    /// a span that is not a sampled trace's open root. The root is decided
    /// before (`settle_decision`); one still undecided (asked from inside a
    /// sampler) is left as it is.
    #[cfg(feature = "tower")]
    pub(crate) fn seal(&self, root: &mut SpanData) {
        if root.parent_seg.is_some()
            || root.role == Role::Facade
            || root.decision == Decision::Pending
        {
            return;
        }
        let Some(trace) = root.trace.clone().filter(|_| root.sampled()) else {
            return;
        };
        let mut stub = SpanData::new(root.trace_id, root.anchor, root.start, root.meta);
        stub.id = root.id;
        stub.parent_id = root.parent_id;
        stub.decision = root.decision;
        stub.role = Role::Facade;
        stub.owner = root.owner;
        stub.trace = Some(trace.clone());
        let mut sent = Box::new(std::mem::replace(root, stub));
        sent.trace = None;
        sent.end = Some(sent.ended_at());
        let top = top_of(&sent);
        // Under the buffer's lock: a span of the trace ending meanwhile on
        // another thread either goes out with the segment or streams after
        // it. The AWS SDK's internal spans of a call still running wait for
        // it.
        trace.seal(
            self.spare_buffer(),
            |spans, held| hold_back_sdk_work(spans, held, self),
            |mut spans| {
                spans.push_boxed(sent);
                self.send(Message::Trace {
                    spans,
                    top,
                    parts_follow: true,
                });
            },
        );
    }

    /// Takes a pending root's sampling decision (SPEC §4): the sampler sees
    /// the request's host, method and path from the root's fields, the
    /// service name and its origin.
    #[inline]
    pub(crate) fn decide(&self, root: &mut SpanData) {
        if root.decision == Decision::Pending {
            self.decide_pending(root);
        }
    }

    /// [`LayerInner::decide`] for a root still undecided: the rare part,
    /// kept out of line so that the check above inlines at every close.
    #[inline(never)]
    fn decide_pending(&self, root: &mut SpanData) {
        let input = self.sampling_input(root);
        let decision = self.run_sampler(&input);
        self.apply_decision(root, decision);
    }

    /// What the sampler sees of a root still undecided, copied out of it
    /// (short texts inline, without an allocation), so that the sampler can
    /// run without the root's lock held.
    fn sampling_input(&self, root: &SpanData) -> SamplingInput {
        let mut request_fields = RequestFields::of(&root.fields);
        // A root that is a call (a background job's request to an API)
        // serves no request: its host, method and path are the callee's,
        // which rules written for incoming requests must not match. The
        // SDKs sample such a segment on an empty request too.
        if request_fields.may_be_call && crate::fields::conventions::is_call(root) {
            request_fields = RequestFields::default();
        }
        SamplingInput {
            host: request_fields.host_header().as_deref().map(FieldStr::new),
            method: request_fields.method.map(FieldStr::new),
            path: request_fields.path.map(FieldStr::new),
            span_name: root.meta.name(),
        }
    }

    /// Runs the application's sampler on `input`, with no span's lock held
    /// (see `inherit`, `settle_decision`). What it logs, this layer ignores
    /// (a thread-local flag: nothing global on this path, which every
    /// request takes); other layers see it. A sampler that panics (a bug in
    /// the application's own sampler) samples nothing: the panic would
    /// otherwise unwind out of a layer callback (aborting the process if
    /// that is a `Drop`'s), or out of the application's `xray_header`, and
    /// leave the root marked as being decided. The panic hook has already
    /// reported it.
    fn run_sampler(&self, input: &SamplingInput) -> crate::sampling::SamplingDecision {
        let resource = self.cfg.resource.get();
        let mut request = SamplingRequest::new().with_service_name(&self.cfg.service_name);
        request.host = input.host.as_deref();
        request.http_method = input.method.as_deref();
        request.url_path = input.path.as_deref();
        request.service_type = resource.and_then(|r| r.origin());
        request.span_name = Some(input.span_name);
        let _ignored = SuppressGuard::enter();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.sampler.sample(&request)
        }))
        .unwrap_or_else(|payload| {
            crate::panics::discard(payload);
            crate::sampling::SamplingDecision::new(false)
        })
    }

    /// Takes the sampler's `decision` for `root`.
    fn apply_decision(&self, root: &mut SpanData, decision: crate::sampling::SamplingDecision) {
        root.decision = if decision.is_sampled() {
            Decision::Sampled
        } else {
            Decision::NotSampled
        };
        if let Some(rule) = decision.rule_name_arc().filter(|r| !r.is_empty()) {
            root.rare_mut().rule_name = Some(rule.clone());
        }
        self.prepare(root);
    }

    /// Whether `id` is an open span of an unsampled trace this layer knows
    /// without a lookup.
    #[inline]
    fn in_unsampled_trace(&self, id: &Id) -> bool {
        self.unsampled_spans.contains(id) || self.unsampled_roots.contains(id)
    }

    /// Remembers the new span `id` as a child of an unsampled trace (it
    /// stores nothing), and that this thread is in unsampled traces.
    #[inline]
    fn unsampled_child(&self, id: &Id) {
        self.unsampled_spans.insert(id);
        IN_UNSAMPLED.with(|c| c.set(true));
    }

    /// Continues an incoming trace on `root` while it is a root whose
    /// sampling decision is still open (no child yet, no header asked for, no
    /// decision given): what `set_xray_parent` and the `xray.trace_header`
    /// field do. Later, spans may already carry the trace id: nothing changes.
    /// Whether it did.
    pub(crate) fn continue_trace(&self, root: &mut SpanData, header: &TraceHeader) -> bool {
        let open = root.is_undecided_root();
        if open {
            self.apply_header(root, header);
        }
        open
    }

    /// Continues an incoming trace on a root that has no child yet.
    pub(crate) fn apply_header(&self, root: &mut SpanData, header: &TraceHeader) {
        if let Some(trace_id) = header.root() {
            root.trace_id = trace_id;
            root.parent_id = header.parent();
        }
        root.decision = match header.sampled() {
            Sampled::Yes => Decision::Sampled,
            Sampled::No => Decision::NotSampled,
            _ => Decision::Pending,
        };
        root.rare_mut().incoming = Some(header.clone());
        self.prepare(root);
    }

    /// A sampled root gets its trace buffer; an unsampled one none.
    fn prepare(&self, root: &mut SpanData) {
        match root.decision {
            // A header applied again to a root without children (Lambda's,
            // after the one its `xray.trace_header` field gave): the buffer
            // is made again, so that every span hands on the last one.
            Decision::Sampled
                if root.trace.is_none()
                    || root.rare.as_ref().is_some_and(|r| r.incoming.is_some()) =>
            {
                // Moved, not copied: from now on every span of the trace
                // (the root too) finds it in the buffer.
                let incoming = root.rare.as_mut().and_then(|r| r.incoming.take());
                let trace = self.new_trace_buf(incoming, root.id);
                self.keep_annotations_for(root, &trace);
                root.trace = Some(trace);
            }
            Decision::NotSampled => root.trace = None,
            _ => {}
        }
    }

    /// Tells the parts of `root`'s trace sent before it ends how many
    /// annotations to leave it.
    pub(crate) fn keep_annotations_for(&self, root: &SpanData, trace: &TraceBuf) {
        let n = crate::fields::annotation_fields(root, &self.cfg.fields);
        trace.root_annotations.store(n, Ordering::Relaxed);
    }

    /// The header a downstream call carries: Root, Parent = `span`'s id,
    /// the decision, and the incoming header's extra keys.
    pub(crate) fn outgoing_header(
        &self,
        span: &SpanData,
        incoming: Option<&TraceHeader>,
    ) -> TraceHeader {
        let sampled = Sampled::from(span.sampled());
        let mut header = TraceHeader::new(span.trace_id, Some(span.id), sampled);
        if let Some(incoming) = incoming {
            for (k, v) in incoming.extras() {
                header = header.with_extra(k, v);
            }
        }
        header
    }
}

/// The host and port of an absolute URL, as a `Host` header writes them
/// (no user info); empty when it is not one.
fn authority_of_url(url: &str) -> &str {
    crate::fields::conventions::url_authority_text(crate::fields::conventions::unwrapped_url(url))
        .unwrap_or_default()
}

/// The path and the host of a full URL's field (`url.full`, `http.url`),
/// which may have no scheme (`//user:password@host/path`, RFC 3986 §4.2:
/// its authority without the user info, and the path after it).
fn path_and_host_of_full_url(url: &str) -> (&str, &str) {
    let Some(rest) = crate::fields::conventions::unwrapped_url(url).strip_prefix("//") else {
        return (path_of_url(url), authority_of_url(url));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let path = &rest[end..];
    (if path.starts_with('/') { path } else { "/" }, host)
}

/// The path of an absolute URL (with its query, if any): `/` when the
/// authority is followed by no path (`https://h`, `https://h?q=/x`).
fn path_of_url(url: &str) -> &str {
    // Recorded with `?` (`"https://…"`, `Some("https://…")`): the URL alone.
    let url = crate::fields::conventions::unwrapped_url(url);
    // After the authority as the URL's own scrubbing finds its end (a
    // password may hold a `/`).
    if let Some(rest) = crate::fields::conventions::after_authority(url) {
        return if rest.starts_with('/') { rest } else { "/" };
    }
    // (A `://` after a `/`, `?` or `#` is in the path or query of a
    // relative one: `/go?to=https://h/x`.)
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.contains(['/', '?', '#']) => rest,
        _ => url,
    };
    match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => &rest[i..],
        _ => "/",
    }
}

/// Runs a callback's work `f` while this thread unwinds a panic, under
/// `catch_unwind`. That panic may have started in another layer's code while
/// it held a lock of the span (the `fmt` layer formats a recorded value's
/// `Debug` under the span's extensions lock), leaving the lock poisoned, and
/// the registry's `extensions()` panics on a poisoned lock. Escaping a
/// destructor the unwinding runs (a span's guard, a span), that second
/// panic would abort the process; caught, it costs the span, said once. (So
/// does a recorded value's `Debug` that panics during an unwinding.)
#[cold]
#[inline(never)]
fn while_unwinding(f: impl FnOnce()) {
    unless_poisoned(f);
}

/// `f`, reading a span's data, or `None` when it panicked: a lock of the
/// span that a panic in other code poisoned (another layer's, `fmt`
/// formatting a value under it), the application having caught that panic.
/// Never around user code, whose panics are the application's. Free when
/// nothing panics.
#[inline(always)]
fn unless_poisoned<R>(f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            lost_to_a_poisoned_lock_once();
            None
        }
    }
}

/// Counts a span `XrayLayer::on_close` could not read, and says so once.
#[cold]
#[inline(never)]
fn span_lost(inner: &LayerInner) {
    Counters::add(&inner.counters.spans_lost, 1);
    lost_to_a_poisoned_lock_once();
}

/// Says once, on standard error, that a span was lost (see
/// [`while_unwinding`], `XrayLayer::on_close`); the panic hook has printed
/// the panic itself.
#[cold]
fn lost_to_a_poisoned_lock_once() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::stderr_line(format_args!(
            "tracing-xray: a span's data could not be read or recorded (a panic, caught: a \
             lock of the span that a panic in other code poisoned, or a recorded value's \
             `Debug` during an unwinding): its X-Ray data is lost, counted in \
             `stats().spans_lost` when it closes (this is said once)"
        ));
    }
}

/// Looks a span's X-Ray data up through a `Dispatch` of subscriber type `S`
/// ([`while_unwinding`] while the thread unwinds a panic: `XraySpanExt` may
/// be called from a `Drop`).
fn with_context<S>(dispatch: &Dispatch, id: &Id, lookup: Lookup, f: &mut dyn FnMut(Found<'_>))
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    if std::thread::panicking() {
        return while_unwinding(|| look_up::<S>(dispatch, id, lookup, f));
    }
    // Not on the span hot path: a lock another layer's panic poisoned, the
    // application having caught it, finds nothing.
    unless_poisoned(|| look_up::<S>(dispatch, id, lookup, f));
}

/// [`with_context`]'s work.
fn look_up<S>(dispatch: &Dispatch, id: &Id, lookup: Lookup, f: &mut dyn FnMut(Found<'_>))
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    let Some(layer) = dispatch.downcast_ref::<XrayLayer>() else {
        return;
    };
    let (Some(inner), Some(span)) = (layer.inner.as_ref(), subscriber.span(id)) else {
        return;
    };
    let span = match lookup {
        Lookup::Own | Lookup::OwnDecided => span,
        // A child of an unsampled trace holds no data: its layer's data
        // above it, not another layer's span in between (disjoint filters).
        // When that finds none (filters that overlap), any layer's.
        Lookup::Nearest | Lookup::NearestDecided => {
            let id = span.id();
            match traced_self_or_ancestor(span, Some(&crate::owners::unsampled_owner))
                .or_else(|| traced_self_or_ancestor(subscriber.span(&id)?, None))
            {
                Some(s) => aws_call_of(s, !inner.cfg.fields.aws_sdk_internal_spans),
                None => return,
            }
        }
    };
    // A root still undecided is decided first, with no lock of it held
    // while the sampler runs: this may be a subscriber callback (a layer
    // asking for the header in `on_event`), where nothing may wait on the
    // root, nor mute the sampler with a scoped dispatcher.
    if matches!(lookup, Lookup::OwnDecided | Lookup::NearestDecided) {
        // (A poisoned lock: read in vain below too.)
        let _ = settle_decision(&span, inner);
    }
    let mut ext = span.extensions_mut();
    if let Some(data) = ext.get_mut::<Box<SpanData>>() {
        // The root's incoming header (its extra keys travel on): the root's
        // own, or the one its trace's buffer carries, without walking up.
        let incoming = match lookup {
            Lookup::Own | Lookup::OwnDecided => None,
            Lookup::Nearest | Lookup::NearestDecided => data
                .incoming()
                .or_else(|| data.trace.as_ref()?.incoming.as_ref())
                .cloned(),
        };
        // Made by another `XrayLayer` of this subscriber (one behind a
        // per-layer filter): its decisions and trace are that layer's.
        let owner = (data.owner != inner.tag && data.owner != 0)
            .then(|| crate::owners::get(data.owner))
            .flatten();
        f(Found {
            data,
            inner: owner.as_deref().unwrap_or(inner),
            incoming,
        });
    }
}

/// Takes the decision of `span` if it is a root still undecided, once (the
/// sampler asked once per trace: its reservoir, its statistics): the root
/// marked `deciding`, its request copied out, the sampler run with no lock
/// of it held, the answer applied; or waits, holding no lock, for the
/// thread taking it. Unlocked, because what the sampler logs may reach a
/// layer that reads the root (fmt does), and what it records on a span
/// comes here: under the root's lock each would wait on it for ever
/// (nested events are dropped only under a scoped dispatcher), and muting
/// the sampler with a scoped dispatcher panics inside a callback. While
/// marked, a header no longer continues the root. Not from inside a
/// sampler (a header asked there): that root's header says `Sampled=0`.
/// `false` when the root's lock is poisoned (another layer's panic).
fn settle_decision<S>(span: &SpanRef<'_, S>, inner: &LayerInner) -> bool
where
    S: for<'l> LookupSpan<'l>,
{
    if suppressed() {
        return true;
    }
    loop {
        let (input, owner) = {
            let Some(mut ext) = unless_poisoned(|| span.extensions_mut()) else {
                return false;
            };
            let Some(d) = ext.get_mut::<Box<SpanData>>() else {
                return true;
            };
            if d.decision != Decision::Pending {
                return true;
            }
            if d.ancestry.deciding() {
                drop(ext);
                wait_for_a_decision();
                continue;
            }
            d.ancestry.set_deciding(true);
            // Made by another `XrayLayer` of this subscriber: its sampler.
            let owner = (d.owner != inner.tag && d.owner != 0)
                .then(|| crate::owners::get(d.owner))
                .flatten();
            (owner.as_deref().unwrap_or(inner).sampling_input(d), owner)
        };
        let inner = owner.as_deref().unwrap_or(inner);
        let decision = inner.run_sampler(&input);
        {
            let Some(mut ext) = unless_poisoned(|| span.extensions_mut()) else {
                return false;
            };
            if let Some(d) = ext.get_mut::<Box<SpanData>>() {
                d.ancestry.set_deciding(false);
                if d.decision == Decision::Pending {
                    inner.apply_decision(d, decision);
                }
            }
        }
        decision_made();
        return true;
    }
}

/// The callbacks' work, each run by its callback inline, or, while the
/// thread unwinds a panic, by [`while_unwinding`].
impl XrayLayer {
    /// [`Layer::on_new_span`]'s work.
    #[inline(always)]
    fn new_span<S>(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(inner) = &self.inner else { return };
        if suppressed() {
            return;
        }
        // A child of an unsampled trace is known from its parent's id alone,
        // without a lock. An explicit parent's id is free; the current
        // span's costs one lookup, worth it while this thread is in
        // unsampled traces. A memo entry is always a span this layer saw,
        // so a hit is the parent `span.parent()` would find below. The new
        // span is taken to be this layer's own unless another layer shares
        // the subscriber (see `shares_subscriber`); then it is checked.
        // In Lambda, an invocation span is its invocation's root, whatever
        // span the application runs the runtime in.
        let invocation = inner.lambda && attrs.metadata().name() == LAMBDA_INVOKE_SPAN;
        let direct = if invocation {
            None
        } else if attrs.is_contextual() {
            if IN_UNSAMPLED.with(Cell::get) {
                ctx.current_span().id().cloned()
            } else {
                None
            }
        } else {
            attrs.parent().cloned()
        };
        if direct.is_some_and(|p| inner.in_unsampled_trace(&p)) {
            if !inner.shares_subscriber.load(Ordering::Relaxed) {
                inner.unsampled_child(id);
            } else if let Some(span) = ctx.span(id) {
                remember_unsampled_child(inner, id, &span, false);
            }
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        // An entry for a new span's id is stale: a span this layer was told
        // of but never saw close (tokio-rs/tracing#2704, with one xray layer
        // in the subscriber) held that id. Kept, it would make this span
        // pass for a child of an unsampled trace.
        inner.unsampled_spans.remove(id);
        let parent = if invocation { None } else { span.parent() };
        if let Some(p) = &parent {
            if inner.in_unsampled_trace(&p.id()) {
                remember_unsampled_child(inner, id, &span, false);
                return;
            }
            IN_UNSAMPLED.with(|c| c.set(false));
        }
        let mut walk = Walk::default();
        let mut data = match inherit(parent, inner, &mut walk) {
            // Unsampled: nothing stored, nothing recorded. Header lookups
            // find the nearest traced ancestor. Found past a parent without
            // data (the memo had lost it: more children of unsampled traces
            // open than it holds), the span is marked, so that its own
            // children stop there instead of walking up to the root.
            Some(p) if !p.sampled => {
                inner.unsampled_roots.insert(&p.from);
                remember_unsampled_child(inner, id, &span, walk.passed);
                return;
            }
            None if walk.marked => {
                remember_unsampled_child(inner, id, &span, true);
                return;
            }
            Some(p) => {
                let mut data =
                    SpanData::boxed(p.trace_id, p.anchor, Instant::now(), attrs.metadata());
                data.parent_seg = Some(p.seg);
                data.ancestry = Ancestry::new(p.facade, p.under_sdk);
                data.trace = match p.trace {
                    Some(facade) if p.facade => Some(top_level_buffer(&facade, inner)),
                    trace => trace,
                };
                data.decision = Decision::Sampled;
                record_attributes(attrs, &mut data);
                data
            }
            None => {
                let (anchor, epoch) = Anchor::now();
                let mut data = SpanData::boxed(
                    TraceId::with_epoch(epoch),
                    anchor,
                    anchor.at,
                    attrs.metadata(),
                );
                // A root always records its fields: the sampler may need them.
                record_attributes(attrs, &mut data);
                if let Some(i) = data
                    .fields
                    .iter()
                    .position(|(k, _)| *k == TRACE_HEADER_FIELD)
                {
                    let (_, value) = data.fields.remove(i);
                    data.sub_heap_bytes(crate::span_data::value_bytes(&value));
                    if let FieldValue::Str(h) = value {
                        inner.continue_trace(&mut data, &header_field(&h));
                    }
                }
                if inner.lambda {
                    lambda_root(inner, &mut data);
                }
                if data.decision == Decision::NotSampled {
                    inner.unsampled_roots.insert(id);
                }
                data
            }
        };
        data.owner = inner.tag;
        if std::thread::panicking() {
            // Made in a `Drop` run by an unwinding: not a span it went through.
            data.ancestry.set_made_while_panicking();
        }
        // `replace`, not `insert` (which panics when the extension exists):
        // another `XrayLayer` this one could not see when added (side by
        // side in a `Vec`, or behind a `reload` layer) keeps its data.
        let mut ext = span.extensions_mut();
        if let Some(theirs) = ext.replace(data) {
            ext.replace(theirs);
        }
    }

    /// [`Layer::on_follows_from`]'s work.
    #[inline(always)]
    fn follows_from<S>(&self, id: &Id, follows: &Id, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if self.inner.is_none() || suppressed() {
            return;
        }
        let Some(before) = ctx.span(follows) else {
            return;
        };
        let Some((trace_id, parent, precursor)) = before
            .extensions()
            .get::<Box<SpanData>>()
            .map(|d| (d.trace_id, d.parent_seg, d.id))
        else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<Box<SpanData>>() else {
            return;
        };
        if parent.is_none()
            || data.parent_seg != parent
            || data.trace_id != trace_id
            || data.id == precursor
        {
            return;
        }
        let precursors = &mut data.rare_mut().precursors;
        if precursors.len() < MAX_PRECURSORS && !precursors.contains(&precursor) {
            precursors.push(precursor);
        }
    }

    /// [`Layer::on_record`]'s work.
    #[inline(always)]
    fn record<S>(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(inner) = &self.inner else { return };
        if inner.unsampled_spans.contains(id) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if unless_poisoned(|| records(&span)) != Some(true) {
            return;
        }
        // Visit (user code) first, lock after.
        let (fields, errors) = collect_fields(|v| values.record(v));
        unless_poisoned(|| {
            let mut ext = span.extensions_mut();
            if let Some(data) = ext.get_mut::<Box<SpanData>>() {
                for (key, value) in fields {
                    if key == TRACE_HEADER_FIELD {
                        // As at creation; never sent as a field.
                        if let FieldValue::Str(h) = &value {
                            inner.continue_trace(data, &header_field(h));
                        }
                        continue;
                    }
                    data.record_field(key, value);
                }
                for e in errors {
                    data.push_error(e);
                }
            }
        });
    }

    /// [`Layer::on_close`]'s work.
    #[inline(always)]
    fn close<S>(&self, id: Id, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(inner) = &self.inner else { return };
        if inner.unsampled_spans.remove(&id) {
            return;
        }
        // Before any return: the memo never keeps a closed span's id.
        let unwound_here = inner.unwound_spans.remove(&id);
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<Box<SpanData>>() else {
            return;
        };
        if unwound_here {
            unwound(&mut data);
        }
        inner.decide(&mut data);
        if !data.sampled() {
            inner.unsampled_roots.remove(&id);
            crate::span_data::discard(data);
            return;
        }
        if data.role == Role::Facade {
            // Its own events and errors have no document to go to (the
            // segment is Lambda's, or was sent with its response): counted.
            let events = data.events().len() as u64 + u64::from(data.events_dropped());
            let errors = data.errors().len() as u64 + u64::from(data.errors_dropped());
            if events > 0 {
                Counters::add(&inner.counters.events_dropped, events);
            }
            if errors > 0 {
                Counters::add(&inner.counters.exceptions_dropped, errors);
            }
            // A segment sent with its response: what is left of its trace
            // (under a span whose data was lost, whose end streamed
            // nothing; held back for a span whose data was lost) leaves
            // now. Its spans have all ended: nothing waits any more.
            if let Some(trace) = data.trace.take().filter(|t| t.is_sealed()) {
                let spans = trace.take_part(inner.spare_buffer());
                if !spans.is_empty() {
                    inner.send(Message::Detached { spans });
                }
            }
            crate::span_data::discard(data);
            return;
        }
        data.end = Some(data.ended_at());
        let trace = data.trace.take();
        if data.parent_seg.is_some() {
            // A child: one push, no lookup of its parent.
            let Some(trace) = trace else {
                let mut spans = SpanList::new();
                spans.push_boxed(data);
                inner.send(Message::Detached { spans });
                return;
            };
            let facade_child = data.ancestry.parent_is_facade();
            let root_child = data.parent_seg == trace.root;
            let (held, held_bytes) = trace.push(data);
            if facade_child
                || held > inner.max_held
                || held_bytes > inner.max_held_bytes
                || (root_child && trace.is_sealed())
            {
                // Lambda: the function segment is Lambda's, so a top-level
                // subtree leaves as soon as it ends; so does one of a
                // segment sent with its response (made before it was
                // sent; one made after has a buffer of its own, as in
                // Lambda), the AWS SDK work of calls still in flight held
                // back apart (see `span_data::HeldBack`). (Streaming at
                // every span's end would send a part per span.) Otherwise a
                // long-lived root streams what it holds instead of growing.
                trace.stream(
                    inner.spare_buffer(),
                    |spans, held| hold_back_sdk_work(spans, held, inner),
                    |spans| inner.send(Message::Detached { spans }),
                );
            }
            return;
        }
        let top = top_of(&data);
        let mut spans = match trace {
            Some(trace) => trace.take(SpanList::new()),
            None => inner.spare_buffer(),
        };
        spans.push_boxed(data);
        inner.send(Message::Trace {
            spans,
            top,
            parts_follow: false,
        });
    }
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.with_context = Some(WithContext(with_context::<S>));
        // An `XrayLayer` added before this one (the nearest: each finds the
        // one before it, so a chain of them is all marked).
        let below = (&*subscriber as &dyn Subscriber).downcast_ref::<XrayLayer>();
        if let (Some(this), Some(that)) = (&self.inner, below.and_then(|l| l.inner.as_ref())) {
            this.shares_subscriber.store(true, Ordering::Relaxed);
            that.shares_subscriber.store(true, Ordering::Relaxed);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Switched off: nothing to guard (and no frame set up).
        if self.inner.is_none() {
            return;
        }
        if std::thread::panicking() {
            return while_unwinding(|| self.new_span(attrs, id, ctx));
        }
        self.new_span(attrs, id, ctx);
    }

    /// `span.follows_from(&sibling)`: X-Ray's `precursor_ids`, the
    /// subsegments of the same parent that completed before this one, so
    /// only a span of the same trace and the same parent counts.
    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        // Switched off: nothing to guard (and no frame set up).
        if self.inner.is_none() {
            return;
        }
        if std::thread::panicking() {
            return while_unwinding(|| self.follows_from(id, follows, ctx));
        }
        unless_poisoned(|| self.follows_from(id, follows, ctx));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Switched off: nothing to guard (and no frame set up).
        if self.inner.is_none() {
            return;
        }
        if std::thread::panicking() {
            return while_unwinding(|| self.record(id, values, ctx));
        }
        self.record(id, values, ctx);
    }

    /// A span entered while a panic unwinds (by a `Drop`) is remembered, so
    /// that its exit is not taken for the unwinding's (see `on_exit`).
    /// Otherwise nothing: one check per enter.
    #[inline]
    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.inner.is_some() && std::thread::panicking() {
            let _ = ENTERED_WHILE_PANICKING.try_with(|entered| {
                if let Ok(mut entered) = entered.try_borrow_mut() {
                    if entered.len() < MAX_ENTERED_WHILE_PANICKING {
                        entered.push(id.into_u64());
                        ANY_ENTERED_WHILE_PANICKING.set(true);
                    }
                }
            });
        }
    }

    /// A span a panic unwinds through (its guard dropped by the unwinding)
    /// failed: remembered here, lock-free (the unwinding may have started
    /// while a lock of the span was held, poisoning it), and marked a fault
    /// as it closes (`unwound`). Not a span entered during the unwinding (a
    /// `Drop` that enters one exits it too, unless a second panic, caught
    /// in that `Drop`, unwinds through it: it is not marked then). Otherwise
    /// nothing: two checks per exit.
    #[inline]
    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if let Some(inner) = &self.inner {
            if std::thread::panicking() {
                if !entered_while_panicking(id) && !inner.unsampled_spans.contains(id) {
                    inner.unwound_spans.insert(id);
                }
            } else if ANY_ENTERED_WHILE_PANICKING.get() {
                // Entered during an unwinding, exited after it.
                entered_while_panicking(id);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(inner) = &self.inner else { return };
        let tower_http = event
            .metadata()
            .target()
            .starts_with(TOWER_HTTP_TRACE_TARGET);
        let is_error = *event.metadata().level() == Level::ERROR;
        // Most events (INFO and below, with events off) stop here, before
        // the frame the rest needs is set up.
        if tower_http || is_error || inner.events {
            record_event(inner, event, ctx, tower_http, is_error);
        }
    }

    // Always under `catch_unwind`: a span whose lock another layer's panic
    // poisoned (see `while_unwinding`) may close during that unwinding, or
    // later, once the application has caught the panic; reading its data
    // then panics, which must reach neither the application nor a
    // destructor. The span is lost, counted (`Stats::spans_lost`).
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(inner) = &self.inner else { return };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.close(id, ctx))).is_err() {
            span_lost(inner);
        }
    }

    // SAFETY: the pointers returned point to fields of `self` (or `self`
    // itself) of exactly the type whose `TypeId` was asked for, and live as
    // long as `self`; this is the contract of `downcast_raw`, used the same
    // way by tracing-subscriber's own layers and tracing-opentelemetry.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<WithContext>() {
            self.with_context
                .as_ref()
                .map(|w| w as *const WithContext as *const ())
        } else {
            None
        }
    }
}

/// Whether span `id` was entered during this thread's unwinding (see
/// [`XrayLayer::on_enter`]), forgetting it.
#[cold]
fn entered_while_panicking(id: &Id) -> bool {
    let id = id.into_u64();
    ENTERED_WHILE_PANICKING
        .try_with(|entered| {
            let Ok(mut entered) = entered.try_borrow_mut() else {
                return false;
            };
            let found = match entered.iter().rposition(|&e| e == id) {
                Some(i) => {
                    entered.remove(i);
                    true
                }
                None => false,
            };
            if entered.is_empty() {
                ANY_ENTERED_WHILE_PANICKING.set(false);
            }
            found
        })
        .unwrap_or(false)
}

/// What a root's document is: a segment, or (a Lambda function's
/// top-level span outside any invocation) an independent subsegment.
fn top_of(root: &SpanData) -> Top {
    match (root.role, root.parent_id) {
        (Role::Independent, Some(parent)) => Top::Subsegment { parent },
        _ => Top::Segment,
    }
}

/// A span a panic unwound through ([`XrayLayer::on_exit`]), as it closes:
/// a fault, with the exception `panicked` unless an error of its own says
/// more (the panic's message is the panic hook's, not here). Not a span
/// made during the unwinding (a `Drop`'s): that panic did not go through it.
#[cold]
#[inline(never)]
fn unwound(data: &mut SpanData) {
    if data.ancestry.made_while_panicking() {
        return;
    }
    data.record_field("xray.fault", FieldValue::Bool(true));
    let said = data.fields.iter().any(|(k, _)| {
        matches!(
            *k,
            "otel.status_message"
                | "otel.status_description"
                | "exception.message"
                | "error.message"
        )
    }) || data.rare.as_ref().is_some_and(|r| !r.errors.is_empty());
    if !said {
        data.record_field(
            "otel.status_message",
            FieldValue::Str(FieldStr::new("panicked")),
        );
    }
}

/// The header an `xray.trace_header` field holds. Recorded with `?`
/// (`Debug`) instead of `%`, a string arrives in quotes that are not the
/// header's, and an `Option` (`?headers.get("x-amzn-trace-id")`: a
/// `HeaderValue` has no `Display`) as `Some("…")`.
fn header_field(text: &str) -> TraceHeader {
    TraceHeader::parse(crate::fields::conventions::unwrapped_text(text))
}

/// Whether `span` holds data this layer still records into (a span of a
/// sampled trace, or a root not decided yet).
fn records<S>(span: &SpanRef<'_, S>) -> bool
where
    S: for<'l> LookupSpan<'l>,
{
    span.extensions()
        .get::<Box<SpanData>>()
        .is_some_and(|d| d.decision != Decision::NotSampled)
}

/// The fields and errors `record` visits with a [`FieldVisitor`]: user
/// `Debug` code runs here, before any extensions lock is taken.
fn collect_fields(record: impl FnOnce(&mut dyn Visit)) -> (Fields, Vec<ErrorRecord>) {
    collect_fields_with(true, record)
}

/// [`collect_fields`], reading error values' `source()` chains or not.
fn collect_fields_with(
    sources: bool,
    record: impl FnOnce(&mut dyn Visit),
) -> (Fields, Vec<ErrorRecord>) {
    let mut fields = Fields::new();
    let mut errors = Vec::new();
    // The values' memory is counted where they are stored (`record_field`,
    // `push_event`).
    record(&mut FieldVisitor {
        fields: &mut fields,
        errors: &mut errors,
        heap: 0,
        sources,
    });
    (fields, errors)
}

/// The part of [`XrayLayer::on_event`] for the events it keeps: a tower-http
/// response, an ERROR event, or any event with events recorded.
#[inline(never)]
fn record_event<S>(
    inner: &LayerInner,
    event: &Event<'_>,
    ctx: Context<'_, S>,
    tower_http: bool,
    is_error: bool,
) where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    if std::thread::panicking() {
        return while_unwinding(|| record_kept_event(inner, event, ctx, tower_http, is_error));
    }
    record_kept_event(inner, event, ctx, tower_http, is_error);
}

/// [`record_event`]'s work.
#[inline(always)]
fn record_kept_event<S>(
    inner: &LayerInner,
    event: &Event<'_>,
    ctx: Context<'_, S>,
    tower_http: bool,
    is_error: bool,
) where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    // Nothing a sampler, the worker or an exporter does reaches a span:
    // a sampler's own HTTP call (tower-http's status event) is not the
    // response of the request it decides.
    if suppressed() {
        return;
    }
    if tower_http {
        record_tower_http_status(event, &ctx, inner);
    }
    if !(is_error || inner.events) {
        return;
    }
    let Some(span) = traced_event_span(&ctx, event, inner) else {
        return;
    };
    if !records(&span) {
        return;
    }
    let meta = event.metadata();
    // Past what a span keeps (32 events, 8 exceptions), an event is counted
    // and not formatted: a loop logging into one span pays for the kept
    // ones only.
    let (keep_event, keep_error) = {
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<Box<SpanData>>() else {
            return;
        };
        (
            inner.events && data.room_for_event(),
            is_error && data.room_for_event_error(),
        )
    };
    if keep_event {
        // Every event, an ERROR one too (also an exception, below), with
        // all its fields: an error value as its text.
        let at = Instant::now();
        // Its fields go out as a span's do, without a URL's, connection
        // string's or credential's secrets: taken out on the worker
        // (`events::render`), an error value's text too. An error value is
        // its text alone: its sources are not read.
        let (mut fields, errors) = collect_fields_with(false, |v| event.record(v));
        for e in errors {
            if let Some(name) = e.field {
                fields.push((name, FieldValue::Str(FieldStr::from(e.message))));
            }
        }
        // A forwarded `log` record: its own target, not tracing-log's.
        if meta.target() == LOG_RECORD_TARGET {
            let mut visitor = EventVisitor::default();
            event.record(&mut visitor);
            if let Some(target) = visitor.log_target {
                fields.push((LOG_TARGET_FIELD, FieldValue::Str(FieldStr::new(&target))));
            }
        }
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<Box<SpanData>>() {
            data.push_event(EventRecord { at, meta, fields });
        }
    }
    if !keep_error {
        return;
    }
    let mut visitor = EventVisitor::default();
    event.record(&mut visitor);
    // A `log` record forwarded by tracing-log comes from one callsite of
    // tracing-log's: its own file, line and target are in its fields.
    let (location, target) = match (visitor.log_file.take(), visitor.log_line) {
        (Some(file), Some(line)) => (
            Some((Cow::Owned(file), line)),
            visitor.log_target.take().map(Cow::Owned),
        ),
        _ => (
            meta.file().map(Cow::Borrowed).zip(meta.line()),
            Some(Cow::Borrowed(meta.target())),
        ),
    };
    let record = match visitor.error {
        Some(mut record) => {
            // The value of a field named as a credential (`password = &e
            // as &dyn Error`): its text is the field's value, never sent.
            if record
                .field
                .is_some_and(crate::fields::conventions::is_credential_field)
            {
                crate::fields::conventions::REDACTED.clone_into(&mut record.message);
                record.sources.clear();
                record.sources_skipped = 0;
            }
            // An event's, not a span field's: never replaced by a field
            // recorded later (see `ErrorRecord::field`).
            record.field = None;
            if let Some(message) = visitor.message {
                record
                    .sources
                    .insert(0, std::mem::replace(&mut record.message, message));
            }
            record.location = location;
            record.target = target;
            record
        }
        None => {
            // `#[instrument(err)]` logs `error = %e` and no message.
            let (message, sources) = match (visitor.message, visitor.error_text) {
                (Some(message), text) => (message, text.into_iter().collect()),
                (None, Some(text)) => (text, Vec::new()),
                (None, None) => (meta.name().to_owned(), Vec::new()),
            };
            ErrorRecord {
                field: None,
                message,
                sources,
                sources_skipped: 0,
                location,
                target,
                at: crate::clock::Instant::now(),
            }
        }
    };
    let mut ext = span.extensions_mut();
    if let Some(data) = ext.get_mut::<Box<SpanData>>() {
        data.push_error(record);
    }
}

/// The target of the events tracing-log makes of `log` records, and the field
/// holding the record's own.
pub(crate) const LOG_RECORD_TARGET: &str = "log";
pub(crate) const LOG_TARGET_FIELD: &str = "log.target";

/// tower-http's `TraceLayer` logs the response status in an event
/// (`DefaultOnResponse`: "finished processing request", `status = 200`)
/// instead of recording it in its span.
const TOWER_HTTP_TRACE_TARGET: &str = "tower_http::trace";

/// Records the `status` of a tower-http response event on the request span
/// as `http.response.status_code`, so the default `TraceLayer` gets its
/// error / throttle / fault flags.
fn record_tower_http_status<S>(event: &Event<'_>, ctx: &Context<'_, S>, inner: &LayerInner)
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    struct Status(Option<u64>);
    impl Visit for Status {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "status" {
                self.0 = Some(value);
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "status" {
                self.0 = u64::try_from(value).ok();
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "status" {
                self.0 = debug_string(value).trim().parse().ok();
            }
        }
    }
    if event.metadata().fields().field("status").is_none() {
        return;
    }
    let mut status = Status(None);
    event.record(&mut status);
    // tower-http logs a gRPC response's `grpc-status` there (`new_for_grpc`):
    // a code below 100, never an HTTP status.
    let (key, code) = match status.0 {
        Some(c @ 100..1000) => ("http.response.status_code", c),
        Some(c @ 0..100) => ("rpc.grpc.status_code", c),
        _ => return,
    };
    let Some(span) = traced_event_span(ctx, event, inner) else {
        return;
    };
    let mut ext = span.extensions_mut();
    if let Some(data) = ext.get_mut::<Box<SpanData>>() {
        if data.decision != Decision::NotSampled {
            data.record_field(key, FieldValue::U64(code));
        }
    }
}

fn record_attributes(attrs: &Attributes<'_>, data: &mut SpanData) {
    if attrs.fields().is_empty() {
        return;
    }
    data.fields.reserve(attrs.fields().len());
    let mut errors = Vec::new();
    let mut visitor = FieldVisitor {
        fields: &mut data.fields,
        errors: &mut errors,
        heap: 0,
        sources: true,
    };
    attrs.record(&mut visitor);
    let heap = visitor.heap;
    if heap > 0 {
        data.add_heap_bytes(heap);
    }
    // Most spans record no error: skip the loop's set-up and drop.
    if !errors.is_empty() {
        for e in errors {
            data.push_error(e);
        }
    }
}

/// In Lambda, Lambda sends the function segment; a root here is either the
/// `lambda_runtime` invocation span (always a root, even inside a span of the
/// application's; it becomes the facade: id = Parent of the invocation's
/// header) or a top-level span of the function, sent as an
/// independent subsegment of the facade named by `_X_AMZN_TRACE_ID`.
/// Without a usable header nothing is sent (SPEC §3.3).
fn lambda_root(inner: &LayerInner, data: &mut SpanData) {
    let is_invoke = data.meta.name() == LAMBDA_INVOKE_SPAN;
    let header = if is_invoke {
        first_str(&data.fields, &[LAMBDA_TRACE_FIELD]).map(TraceHeader::parse)
    } else {
        None
    }
    .or_else(TraceHeader::from_lambda_env);
    let Some(header) = header.filter(|h| h.root().is_some()) else {
        data.decision = Decision::NotSampled;
        // (A span made before the first invocation, during the function's
        // initialization, has none: not worth a word.)
        if is_invoke {
            lambda_untraced_once("no usable X-Ray header (Root and Parent)");
        }
        return;
    };
    if header.parent().is_none() {
        // Without Parent, the function's segment is unknown: nothing is
        // sent; but Lambda's Root (and its `Lineage`) still go downstream,
        // with `Sampled=0`, as the Python SDK keeps them.
        inner.apply_header(data, &header);
        data.decision = Decision::NotSampled;
        if is_invoke {
            lambda_untraced_once("an X-Ray header without Parent");
        }
        return;
    }
    inner.apply_header(data, &header);
    if data.decision == Decision::Pending {
        // Lambda decides: no decision in the header means not traced.
        data.decision = Decision::NotSampled;
        lambda_untraced_once("an X-Ray header without a decision (Sampled=1 or 0)");
    }
    if is_invoke {
        data.role = Role::Facade;
        // Never sent: its fields hold no place among the trace's 50
        // annotations.
        if let Some(trace) = &data.trace {
            trace.root_annotations.store(0, Ordering::Relaxed);
        }
        if let Some(parent) = header.parent() {
            data.id = parent;
        }
        data.parent_id = None;
    } else {
        data.role = Role::Independent;
    }
}

/// Says once, on standard error (where Lambda's logs are), why a Lambda
/// function's spans are not traced when it is not Lambda's own decision: a
/// function run outside Lambda in Lambda mode (an emulator, a test) would
/// otherwise send nothing without a word. A header with `Sampled=0` (active
/// tracing off, or not sampled) says nothing.
#[cold]
fn lambda_untraced_once(why: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::stderr_line(format_args!(
            "tracing-xray: in Lambda mode, an invocation came with {why}: \
             its spans are not traced (Lambda decides; this is said once)"
        ));
    }
}

/// Longest `log.file` or `log.target` kept from a forwarded `log` record, in
/// bytes: room for the 250 characters sent of it.
const MAX_LOCATION_BYTES: usize = 1024;

/// Collects an ERROR event's message and any error value it carries.
#[derive(Default)]
struct EventVisitor {
    message: Option<String>,
    error: Option<ErrorRecord>,
    /// An `error` field recorded as text (`error = %e`, `error = ?e`: what
    /// `#[instrument(err)]` logs), not as a `&dyn Error` value.
    error_text: Option<String>,
    /// A forwarded `log` record's `log.file`, `log.line` and `log.target`.
    log_file: Option<String>,
    log_line: Option<u32>,
    log_target: Option<String>,
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Cut as any field value is (`record_debug` is, by `debug_string`).
        let text = || crate::limits::truncate_bytes(value, MAX_FIELD_BYTES).to_owned();
        // A record's file and target are sent as names, at most 250
        // characters: kept no longer than that can take.
        let name = || crate::limits::truncate_bytes(value, MAX_LOCATION_BYTES).to_owned();
        match field.name() {
            "message" => self.message = Some(text()),
            "error" => self.error_text = Some(text()),
            "log.file" => self.log_file = Some(name()),
            "log.target" => self.log_target = Some(name()),
            _ => {}
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.error.is_none() {
            let (_, mut errors) = collect_fields(|v| v.record_error(field, value));
            self.error = errors.pop();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(debug_string(value)),
            "error" => self.error_text = Some(debug_string(value)),
            _ => {}
        }
    }

    /// `error = true`: a flag, not a text (not the message `"true"`).
    fn record_bool(&mut self, _: &Field, _: bool) {}

    // Numbers say nothing an exception message would.
    fn record_i64(&mut self, _: &Field, _: i64) {}
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "log.line" {
            self.log_line = u32::try_from(value).ok();
        }
    }
    fn record_f64(&mut self, _: &Field, _: f64) {}
    fn record_i128(&mut self, _: &Field, _: i128) {}
    fn record_u128(&mut self, _: &Field, _: u128) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracing_subscriber::prelude::*;

    use crate::export::InMemoryExporter;
    use crate::sampling::{Sampler, SamplingDecision, SamplingRequest};

    /// A layer with no resource detection, exporting into memory.
    fn test_layer(sampler: impl Sampler) -> (super::XrayLayer, InMemoryExporter) {
        let exporter = InMemoryExporter::new();
        let layer = crate::builder()
            .with_sampler(sampler)
            .with_detectors(crate::Detectors::none())
            .with_exporter(exporter.clone())
            .build();
        (layer, exporter)
    }

    /// Samples the requests whose `url.path` ends in an even number.
    struct EvenPaths;

    impl Sampler for EvenPaths {
        fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
            let n: u64 = request
                .url_path
                .and_then(|p| p.rsplit('/').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            SamplingDecision::new(n.is_multiple_of(2))
        }
    }

    /// `follows_from` between siblings gives `precursor_ids`; between
    /// spans of different parents or traces, nothing.
    #[test]
    fn follows_from_a_sibling_is_a_precursor() {
        use crate::XraySpanExt;
        let (layer, exporter) = test_layer(crate::sampling::AlwaysSample);
        let xray = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        let (first_id, other_root_child) = tracing::subscriber::with_default(subscriber, || {
            let other_root = tracing::info_span!("other_root");
            let other_child = tracing::info_span!(parent: &other_root, "other_child");
            let root = tracing::info_span!("root");
            let _root = root.enter();
            let first = tracing::info_span!("first");
            let second = tracing::info_span!("second");
            second.follows_from(&first);
            second.follows_from(&first); // once is enough
            second.follows_from(&root); // the parent: no sibling
            second.follows_from(&other_child); // another trace
            let nested = first.in_scope(|| tracing::info_span!("nested"));
            second.follows_from(&nested); // another parent
            second.follows_from(&second); // itself
            let first_id = first.xray_header().and_then(|h| h.parent()).unwrap();
            drop((first, nested));
            second.in_scope(|| {});
            (first_id, other_child.xray_header().and_then(|h| h.parent()))
        });
        xray.flush(Duration::from_secs(10)).unwrap();
        let trace = exporter
            .traces()
            .into_iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == "root")
            .unwrap();
        let children = trace["subsegments"].as_array().unwrap();
        let second = children.iter().find(|c| c["name"] == "second").unwrap();
        assert_eq!(
            second["precursor_ids"],
            serde_json::json!([first_id.to_string()])
        );
        assert!(other_root_child.is_some());
        let first = children.iter().find(|c| c["name"] == "first").unwrap();
        assert!(first.get("precursor_ids").is_none());
    }

    /// A field recorded in a loop, as a long-lived span may do: the span
    /// holds one value, and the document shows the last one.
    #[test]
    fn recording_a_field_again_does_not_grow_the_span() {
        use tracing_subscriber::registry::LookupSpan;

        let (layer, exporter) = test_layer(crate::sampling::AlwaysSample);
        let xray = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        let held = |subscriber: &tracing_subscriber::layer::Layered<
            super::XrayLayer,
            tracing_subscriber::Registry,
        >,
                    id: &tracing::Id| {
            let span = subscriber.span(id).unwrap();
            let ext = span.extensions();
            ext.get::<Box<super::SpanData>>().unwrap().fields.len()
        };
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(
                "connection",
                bytes = tracing::field::Empty,
                peer = "10.0.0.1"
            );
            for n in 0..100_000_u64 {
                span.record("bytes", n);
            }
            let subscriber = dispatch.downcast_ref().unwrap();
            assert_eq!(held(subscriber, &span.id().unwrap()), 2);
        });
        xray.flush(Duration::from_secs(10)).unwrap();
        let doc = &exporter.json_documents()[0];
        assert_eq!(doc["metadata"]["tracing"]["bytes"], 99_999);
        assert_eq!(doc["metadata"]["tracing"]["peer"], "10.0.0.1");
    }

    /// The request the sampler sees: each part from the first of its keys
    /// present, whatever the order the fields came in; a repeated key's
    /// last value; the path of a full URL; no query or fragment.
    #[test]
    fn request_fields_take_each_part_from_its_best_key() {
        use super::{FieldValue, RequestFields};
        use crate::span_data::FieldStr;
        let of = |fields: &[(&'static str, &str)]| {
            let fields: Vec<_> = fields
                .iter()
                .map(|(k, v)| (*k, FieldValue::Str(FieldStr::new(v))))
                .collect();
            let r = RequestFields::of(&fields);
            let own = |v: Option<&str>| v.map(str::to_owned);
            (own(r.host), own(r.method), own(r.path))
        };
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(of(&[]), (None, None, None));
        assert_eq!(
            of(&[
                ("host", "c"),
                ("server.address", "b"),
                ("method", "m3"),
                ("http.route", "/r"),
                ("uri", "/u"),
                ("http.host", "a"),
                ("http.method", "m2"),
            ]),
            (some("a"), some("m2"), some("/u"))
        );
        // The route template is the last resort: X-Ray's `url_path` is the
        // request's own path.
        assert_eq!(
            of(&[("http.route", "/r/{id}")]),
            (None, None, some("/r/{id}"))
        );
        assert_eq!(
            of(&[("http.route", "/r/{id}"), ("url.full", "https://h/r/7?q")]),
            (some("h"), None, some("/r/7"))
        );
        // tower-http's `uri` in HTTP/2 is absolute: its path.
        assert_eq!(
            of(&[("uri", "https://h:8443/orders/42?token=x")]),
            (some("h:8443"), None, some("/orders/42"))
        );
        assert_eq!(
            of(&[("uri", "http://h:1?x=/y")]),
            (some("h:1"), None, some("/"))
        );
        assert_eq!(
            of(&[("uri", "/go?to=https://h/x")]),
            (None, None, some("/go"))
        );
        assert_eq!(
            of(&[("url.full", "/go?to=https://h/x")]),
            (None, None, some("/go"))
        );
        assert_eq!(
            of(&[
                ("url.path", "/a"),
                ("http.target", "/t?q=1"),
                ("url.path", "/b?x#f")
            ]),
            (None, None, some("/b"))
        );
        assert_eq!(
            of(&[
                ("http.url", "https://h/x"),
                ("url.full", "https://h:8/p/q?z")
            ]),
            (some("h:8"), None, some("/p/q"))
        );
        assert_eq!(
            of(&[("url.full", "https://h")]),
            (some("h"), None, some("/"))
        );
        // The host of an absolute URL, as the `Host` header writes it,
        // when no host field says; a method recorded with `?`, unquoted.
        assert_eq!(
            of(&[("uri", "https://u:p@h:8443/orders?x")]),
            (some("h:8443"), None, some("/orders"))
        );
        assert_eq!(
            of(&[("http.target", "http://h/t"), ("server.address", "s")]),
            (some("s"), None, some("/t"))
        );
        assert_eq!(
            of(&[
                ("url.full", "https://h/p"),
                ("http.request.method", "\"GET\"")
            ]),
            (some("h"), some("GET"), some("/p"))
        );
        // A path recorded with `?` from an `Option`: the path alone, and
        // `None` is none (the next key's path is taken).
        assert_eq!(
            of(&[("http.target", "Some(\"/t/7?q=1\")")]),
            (None, None, some("/t/7"))
        );
        assert_eq!(
            of(&[("url.path", "None"), ("http.route", "/r")]),
            (None, None, some("/r"))
        );
        assert_eq!(
            of(&[("uri", "/u"), ("url.full", "https://h/p")]),
            (some("h"), None, some("/u"))
        );
        // Only strings count.
        let fields = [
            ("http.method", FieldValue::U64(1)),
            ("method", FieldValue::Str(FieldStr::new("GET"))),
        ];
        assert_eq!(RequestFields::of(&fields).method, Some("GET"));
    }

    /// The sampler's host from a host and a port recorded apart: as a
    /// `Host` header writes them (the port off the scheme's default, an
    /// IPv6 address in brackets), and a host's own port or an absolute
    /// URL's authority left as they are.
    #[test]
    fn request_fields_join_a_host_and_its_port_as_a_host_header() {
        use super::{FieldValue, RequestFields};
        use crate::span_data::FieldStr;
        let host = |fields: &[(&'static str, &str)], port: Option<FieldValue>| {
            let mut fields: Vec<_> = fields
                .iter()
                .map(|(k, v)| (*k, FieldValue::Str(FieldStr::new(v))))
                .collect();
            fields.extend(port.map(|p| ("server.port", p)));
            RequestFields::of(&fields)
                .host_header()
                .map(|h| h.into_owned())
        };
        let some = |v: &str| Some(v.to_owned());
        let p = |n| Some(FieldValue::I64(n));
        assert_eq!(host(&[("server.address", "h")], p(8080)), some("h:8080"));
        assert_eq!(host(&[("server.address", "h")], p(80)), some("h"));
        assert_eq!(host(&[("server.address", "h")], p(443)), some("h"));
        let https = [("server.address", "h"), ("url.scheme", "HTTPS")];
        assert_eq!(host(&https, p(443)), some("h"));
        assert_eq!(host(&https, p(80)), some("h:80"));
        let ws = [("server.address", "h"), ("url.scheme", "ws")];
        assert_eq!(host(&ws, p(80)), some("h:80"));
        assert_eq!(host(&[("http.host", "h:9")], p(8080)), some("h:9"));
        assert_eq!(
            host(&[("server.address", "::1")], p(8080)),
            some("[::1]:8080")
        );
        assert_eq!(
            host(&[("server.address", "[::1]")], p(8080)),
            some("[::1]:8080")
        );
        assert_eq!(
            host(&[("server.address", "[::1]:9")], p(8080)),
            some("[::1]:9")
        );
        assert_eq!(
            host(&[("net.host.name", "h")], Some(FieldValue::U64(81))),
            some("h:81")
        );
        let text = Some(FieldValue::Str(FieldStr::new("Some(8080)")));
        assert_eq!(host(&[("server.address", "h")], text), some("h:8080"));
        // `host` and an absolute URL's authority take no port of another field.
        assert_eq!(host(&[("host", "h")], p(8080)), some("h"));
        assert_eq!(host(&[("url.full", "http://u:1/p")], p(8080)), some("u:1"));
        assert_eq!(host(&[], p(8080)), None);
    }

    /// The shortcut a new span takes before any lookup (its explicit
    /// parent, or the current span while the thread is in unsampled traces)
    /// answers only for spans of unsampled traces: sampled roots opened
    /// inside unsampled spans, and their children, still arrive whole.
    #[test]
    fn the_memo_shortcut_answers_only_for_unsampled_traces() {
        let (layer, exporter) = test_layer(EvenPaths);
        let inner = layer.inner.clone().unwrap();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            let unsampled = tracing::info_span!("handle", url.path = "/orders/1");
            let _in_unsampled = unsampled.enter();
            // The first child decides the root, then the thread expects
            // unsampled traces: the second one comes from the memo.
            for _ in 0..2 {
                let child = tracing::info_span!("contextual");
                assert!(inner.unsampled_spans.contains(&child.id().unwrap()));
                let grandchild = tracing::info_span!(parent: &child, "explicit");
                assert!(inner.unsampled_spans.contains(&grandchild.id().unwrap()));
            }
            // A sampled root inside the unsampled span, and its children
            // (contextual first, while the thread still expects unsampled
            // traces, then explicit).
            let sampled = tracing::info_span!(parent: None, "handle", url.path = "/orders/2");
            sampled.in_scope(|| {
                let child = tracing::info_span!("contextual");
                assert!(!inner.unsampled_spans.contains(&child.id().unwrap()));
                let _ = tracing::info_span!(parent: &child, "explicit");
            });
            let _ = tracing::info_span!(parent: &sampled, "explicit");
            // Back to the unsampled trace, still known from the memo.
            let child = tracing::info_span!("contextual");
            assert!(inner.unsampled_spans.contains(&child.id().unwrap()));
        });
        xray.flush(Duration::from_secs(10)).unwrap();
        let traces = exporter.traces();
        assert_eq!(traces.len(), 1, "{traces:?}");
        let names = |t: &serde_json::Value| -> Vec<String> {
            t["subsegments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let below = s["subsegments"].as_array().map_or(0, Vec::len);
                    format!("{}+{below}", s["name"].as_str().unwrap())
                })
                .collect()
        };
        assert_eq!(names(&traces[0]), ["contextual+1", "explicit+0"]);
        assert!(inner.unsampled_spans.is_empty());
        assert!(inner.unsampled_roots.is_empty());
    }

    /// Two `XrayLayer`s in one subscriber keep their data in the same
    /// `Box<SpanData>` extension. With disjoint per-layer filters (one
    /// service per target, say) each traces its own spans; where both see a
    /// span, the second insert panicked in the application's first span.
    /// Now the first layer to see a span keeps it (the second still records
    /// an error event into it: it cannot tell the data is not its own
    /// without a check on every span).
    #[test]
    fn two_layers_in_one_subscriber_do_not_panic() {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::filter::filter_fn;
        type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
        let stacked = |first: super::XrayLayer, second: super::XrayLayer| {
            tracing::Dispatch::new(tracing_subscriber::registry().with(first).with(second))
        };
        let side_by_side = |first: super::XrayLayer, second: super::XrayLayer| {
            let layers: Vec<Boxed> = vec![first.boxed(), second.boxed()];
            tracing::Dispatch::new(tracing_subscriber::registry().with(layers))
        };
        for (how, make) in [
            ("stacked", &stacked as &dyn Fn(_, _) -> tracing::Dispatch),
            ("side_by_side", &side_by_side),
        ] {
            let (first, first_out) = test_layer(crate::sampling::AlwaysSample);
            let (second, second_out) = test_layer(crate::sampling::AlwaysSample);
            let (first_handle, second_handle) = (first.handle(), second.handle());
            let dispatch = make(first, second);
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::info_span!("root").in_scope(|| {
                    tracing::info_span!("child").in_scope(|| tracing::error!("boom"));
                });
            });
            first_handle.flush(Duration::from_secs(10)).unwrap();
            second_handle.flush(Duration::from_secs(10)).unwrap();
            let traces = first_out.traces();
            assert_eq!(traces.len(), 1, "{how}: {traces:?}");
            let child = &traces[0]["subsegments"][0];
            assert_eq!(child["name"], "child", "{how}");
            assert_eq!(child["fault"], true, "{how}");
            assert!(second_out.is_empty(), "{how}");
        }
        // Disjoint filters: one trace each, as before.
        let (a, a_out) = test_layer(crate::sampling::AlwaysSample);
        let (b, b_out) = test_layer(crate::sampling::AlwaysSample);
        let (a_handle, b_handle) = (a.handle(), b.handle());
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(a.with_filter(filter_fn(|m| m.target() != "b")))
                .with(b.with_filter(filter_fn(|m| m.target() == "b"))),
        );
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("a").in_scope(|| {
                tracing::info_span!(target: "b", "b").in_scope(|| {
                    tracing::info_span!(target: "b", "b_child").in_scope(|| {});
                });
            });
        });
        a_handle.flush(Duration::from_secs(10)).unwrap();
        b_handle.flush(Duration::from_secs(10)).unwrap();
        let (a_traces, b_traces) = (a_out.traces(), b_out.traces());
        assert_eq!(a_traces.len(), 1, "{a_traces:?}");
        assert!(a_traces[0].get("subsegments").is_none(), "{a_traces:?}");
        assert_eq!(b_traces.len(), 1, "{b_traces:?}");
        assert_eq!(b_traces[0]["metadata"]["tracing"]["span_name"], "b");
        assert_eq!(b_traces[0]["subsegments"][0]["name"], "b_child");
    }

    /// The invariant that makes a memo hit trustworthy: once every span has
    /// closed, on whichever thread, the memos hold no id at all.
    #[test]
    fn no_unsampled_memo_entry_outlives_its_span() {
        let (layer, exporter) = test_layer(EvenPaths);
        let inner = layer.inner.clone().unwrap();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let (tx, rx) = std::sync::mpsc::channel::<tracing::Span>();
        // Spans created here are closed on another thread. It has the same
        // default subscriber: the registry releases a closed span's parent
        // through the closing thread's default, so a thread without it would
        // leave the parents open for ever.
        let closer_dispatch = dispatch.clone();
        let closer = std::thread::spawn(move || {
            tracing::dispatcher::with_default(&closer_dispatch, || {
                for span in rx {
                    drop(span);
                }
            })
        });
        tracing::dispatcher::with_default(&dispatch, || {
            for request in 0..200_u64 {
                let path = format!("/orders/{request}");
                let root = tracing::info_span!("handle", url.path = %path);
                let child = root.in_scope(|| tracing::info_span!("child"));
                let grandchild = child.in_scope(|| tracing::info_span!("grandchild"));
                // Marks a sampled span; found without a walk in an unsampled one.
                grandchild.in_scope(|| tracing::error!("boom"));
                if request % 3 == 0 {
                    // The child outlives its root, on another thread.
                    tx.send(grandchild).unwrap();
                    tx.send(child).unwrap();
                    drop(root);
                } else {
                    drop(grandchild);
                    tx.send(root).unwrap();
                    drop(child);
                }
            }
            // A root decided "not sampled" before it has any child.
            let header =
                crate::TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
            let root = tracing::info_span!("incoming", xray.trace_header = %header);
            root.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
        });
        drop(tx);
        closer.join().unwrap();
        xray.flush(Duration::from_secs(10)).unwrap();
        assert!(
            inner.unsampled_spans.is_empty(),
            "{:?}",
            inner.unsampled_spans
        );
        assert!(
            inner.unsampled_roots.is_empty(),
            "{:?}",
            inner.unsampled_roots
        );
        let traces = exporter.traces();
        assert_eq!(traces.len(), 100, "the even requests");
        for t in &traces {
            let grandchild = &t["subsegments"][0]["subsegments"][0];
            assert_eq!(grandchild["name"], "grandchild", "{t}");
            assert_eq!(grandchild["fault"], true, "{t}");
        }
    }
}
