//! The one extension the layer keeps per span, and the visitor that fills it.
//!
//! Field values are stored typed (never pre-rendered JSON) with their
//! `&'static str` names; routing them to annotations, metadata and the
//! http/sql/aws blocks happens later, on the worker thread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use tracing_core::Metadata;
use tracing_core::field::{Field, Visit};

use crate::clock::Instant;
use crate::id::{SegmentId, TraceId};
use crate::limits::truncate_bytes;
use crate::span_list::SpanList;

/// Emptied span boxes a thread keeps for its next spans (see [`keep_box`]).
const MAX_SPARE_BOXES: usize = 32;

thread_local! {
    /// Boxes of spans this thread closed, their value moved into a trace's
    /// list: at most [`MAX_SPARE_BOXES`] (9 KiB), freed with the thread.
    static SPARE_BOXES: RefCell<Vec<Box<MaybeUninit<SpanData>>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the box of a span whose value has moved out for this thread's next
/// span ([`SpanData::boxed`]), or frees it when the thread keeps enough.
/// The box stays on the thread that used it last, in its cache; taking it
/// back costs a few instructions, the allocator's own thread cache (glibc's
/// `tcache`) about a hundred more per span.
pub(crate) fn keep_box(emptied: Box<MaybeUninit<SpanData>>) {
    let _ = SPARE_BOXES.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < MAX_SPARE_BOXES {
                spare.push(emptied);
            }
        }
    });
}

/// Drops a span that is not sent (an unsampled root, a Lambda facade) and
/// keeps its box for this thread's next span ([`keep_box`]): most requests
/// are unsampled, and each would otherwise cost a `malloc` and a `free`.
pub(crate) fn discard(span: Box<SpanData>) {
    let raw = Box::into_raw(span);
    // SAFETY: `raw` comes from `Box::into_raw`, so it points to a valid,
    // initialized `SpanData` owned here; it is dropped in place exactly once
    // and never read again. The box is then rebuilt as a
    // `Box<MaybeUninit<SpanData>>` (same layout, the same allocation), whose
    // contents are only ever written again whole (`Box::write` in
    // `SpanData::boxed`); were `drop_in_place` to unwind, the allocation
    // would leak, never be freed twice.
    unsafe {
        std::ptr::drop_in_place(raw);
        keep_box(Box::from_raw(raw.cast::<MaybeUninit<SpanData>>()));
    }
}

/// How many exceptions one span records; later ones are counted, not kept.
pub(crate) const MAX_ERRORS_PER_SPAN: usize = 8;
/// How many `source()` links of one error are kept (the rest are counted).
pub(crate) const MAX_ERROR_SOURCES: usize = 8;
/// How far past [`MAX_ERROR_SOURCES`] a `source()` chain is followed to
/// count what was left out (an exception's `skipped`).
const MAX_SKIPPED_COUNTED: u32 = 1_000;
/// Longest string kept from one field value, in bytes (the document limit is
/// 64 KB anyway; this bounds what a single hostile field can hold in memory).
pub(crate) const MAX_FIELD_BYTES: usize = 64 * 1024;

/// The field of tracing-opentelemetry's span status.
const OTEL_STATUS_CODE: &str = "otel.status_code";

/// The wall-clock time of the trace's first span, paired with the monotonic
/// instant it was read at. Every span of the trace places itself on the wall
/// clock through it, so durations come from the monotonic clock and children
/// always nest inside their parents.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anchor {
    pub(crate) wall_micros: u64,
    pub(crate) at: Instant,
}

impl Anchor {
    pub(crate) fn now() -> (Self, u32) {
        let at = Instant::now();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (
            Anchor {
                wall_micros: since.as_micros() as u64,
                at,
            },
            since.as_secs() as u32,
        )
    }

    /// Epoch microseconds of `t` (never before the anchor), its offset
    /// [`corrected`](crate::clock::corrected) to the OS clock's rate.
    pub(crate) fn micros(&self, t: Instant) -> u64 {
        let offset = crate::clock::corrected(t.saturating_duration_since(self.at));
        // Rounded: a correction of a few nanoseconds must not take away a
        // whole microsecond.
        self.wall_micros + ((offset.as_nanos() + 500) / 1000).min(u64::MAX.into()) as u64
    }
}

/// Strings up to this many bytes are stored inline, without an allocation.
const INLINE_STR_BYTES: usize = 22;

/// A recorded string: short ones (methods, paths, table names) inline, so
/// that recording them allocates nothing; longer ones on the heap.
#[derive(Clone)]
pub(crate) enum FieldStr {
    Inline(InlineStr),
    Heap(Box<str>),
}

/// The bytes of a short `str`. Its fields are private to this module and
/// only [`FieldStr::new`] fills them, from a whole `&str`: they always hold
/// valid UTF-8, which [`FieldStr::as_str`] relies on.
#[derive(Clone)]
pub(crate) struct InlineStr {
    len: u8,
    bytes: [u8; INLINE_STR_BYTES],
}

impl FieldStr {
    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= INLINE_STR_BYTES {
            let mut bytes = [0; INLINE_STR_BYTES];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            FieldStr::Inline(InlineStr {
                len: s.len() as u8,
                bytes,
            })
        } else {
            FieldStr::Heap(s.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            FieldStr::Inline(inline) => {
                let bytes = &inline.bytes[..usize::from(inline.len)];
                debug_assert!(std::str::from_utf8(bytes).is_ok());
                // SAFETY: an `InlineStr` is only made by `FieldStr::new`,
                // which copies every byte of a `&str` (so `len` ends on a
                // char boundary); its fields are private to this module and
                // never modified afterwards, so the bytes are valid UTF-8.
                // Skipping the re-validation matters: the worker reads every
                // string field of every span.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            FieldStr::Heap(s) => s,
        }
    }
}

impl std::ops::Deref for FieldStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for FieldStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for FieldStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl From<String> for FieldStr {
    fn from(s: String) -> Self {
        if s.len() <= INLINE_STR_BYTES {
            FieldStr::new(&s)
        } else {
            FieldStr::Heap(s.into_boxed_str())
        }
    }
}

/// A span's fields, in the order recorded. The first four are stored
/// inline: most spans record no more, and a span then costs no allocation
/// for its fields (whose memory the worker would free on another thread).
pub(crate) type Fields = smallvec::SmallVec<[(&'static str, FieldValue); 4]>;

/// The heap memory of a span's or an event's fields (see
/// [`SpanData::held_bytes`]).
fn fields_bytes(fields: &Fields) -> usize {
    spilled_bytes(fields) + fields.iter().map(|(_, v)| value_bytes(v)).sum::<usize>()
}

/// The heap array of fields past their inline room, if they spilled.
#[inline]
fn spilled_bytes(fields: &Fields) -> usize {
    if fields.spilled() {
        fields.capacity() * std::mem::size_of::<(&'static str, FieldValue)>()
    } else {
        0
    }
}

/// The heap memory of one field value: a long string's, a 128-bit number's.
#[inline]
pub(crate) fn value_bytes(v: &FieldValue) -> usize {
    match v {
        FieldValue::Str(FieldStr::Heap(s)) => s.len(),
        FieldValue::I128(_) | FieldValue::U128(_) => 16,
        _ => 0,
    }
}

/// A typed field value as `tracing` gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Str(FieldStr),
    I64(i64),
    U64(u64),
    /// Boxed: rare, and inline they would double the value's alignment.
    I128(Box<i128>),
    U128(Box<u128>),
    F64(f64),
    Bool(bool),
}

/// An error recorded on a span: a field holding a `dyn Error`, or an
/// ERROR-level event inside it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorRecord {
    /// The field name, or `None` for an event.
    pub(crate) field: Option<&'static str>,
    /// The error's `Display`, or the event's message.
    pub(crate) message: String,
    /// The `source()` chain, outermost first, at most
    /// [`MAX_ERROR_SOURCES`] of it.
    pub(crate) sources: Vec<String>,
    /// How many sources below the last of `sources` were left out.
    pub(crate) sources_skipped: u32,
    /// Where an event came from (`file:line`) and its target: its
    /// callsite's, or for a `log` record forwarded by tracing-log, the
    /// record's own (its `log.file`, `log.line` and `log.target` fields).
    pub(crate) location: Option<(Cow<'static, str>, u32)>,
    pub(crate) target: Option<Cow<'static, str>>,
    /// When it was recorded: an exception is only ever caused by one
    /// recorded before it (see `Assembler::link_to_descendants`).
    pub(crate) at: Instant,
}

impl ErrorRecord {
    /// About how much memory it holds (see [`SpanData::held_bytes`]).
    fn heap_bytes(&self) -> usize {
        let owned = |s: &Cow<'static, str>| match s {
            Cow::Owned(s) => s.len(),
            Cow::Borrowed(_) => 0,
        };
        std::mem::size_of::<ErrorRecord>()
            + self.message.len()
            + self
                .sources
                .iter()
                .map(|s| std::mem::size_of::<String>() + s.len())
                .sum::<usize>()
            + self.location.as_ref().map_or(0, |(file, _)| owned(file))
            + self.target.as_ref().map_or(0, owned)
    }
}

/// The sampling decision of a trace. A root starts `Pending` and is decided
/// as late as possible (its first child, its close, or a request for its
/// header), so that `set_xray_parent` and fields recorded after creation
/// (the request's method and path) can still inform it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Pending,
    Sampled,
    NotSampled,
}

/// How a root is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A segment, or (for a child) an ordinary subsegment.
    Span,
    /// A Lambda facade: never sent; its children leave as independent
    /// subsegments as soon as they end.
    Facade,
    /// A root sent as an independent subsegment of `parent_id` (a Lambda
    /// function's top-level span outside any `Lambda runtime invoke` span).
    Independent,
}

/// How many non-error events one span keeps when events are recorded.
pub(crate) const MAX_EVENTS_PER_SPAN: usize = 32;

/// A non-error event recorded inside a span (only with
/// `Builder::with_events(true)`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventRecord {
    pub(crate) at: Instant,
    pub(crate) meta: &'static Metadata<'static>,
    pub(crate) fields: Fields,
}

/// What only some spans hold: kept out of line, because a smaller
/// [`SpanData`] is cheaper to write on the application thread and to hand
/// to the worker, and most spans have none of this.
#[derive(Debug, Default)]
pub(crate) struct Rare {
    /// Roots only: the matched sampling rule, for `aws.xray.sampling_rule_name`.
    pub(crate) rule_name: Option<Arc<str>>,
    /// Roots only, until sampled (then [`TraceBuf::incoming`]): the incoming
    /// trace header, whose extra keys are passed on.
    pub(crate) incoming: Option<crate::TraceHeader>,
    pub(crate) errors: Vec<ErrorRecord>,
    pub(crate) errors_dropped: u32,
    /// The error fields whose error was dropped (past the bound): recorded
    /// again, an error of one of them replaces the one counted, and is not
    /// counted again.
    pub(crate) dropped_error_fields: Vec<&'static str>,
    /// Non-error events, when recorded; `events_dropped` counts the excess.
    pub(crate) events: Vec<EventRecord>,
    pub(crate) events_dropped: u32,
    /// Siblings this span follows from (`Span::follows_from`), for
    /// `precursor_ids`; at most [`MAX_PRECURSORS`].
    pub(crate) precursors: Vec<SegmentId>,
    /// When the (sub)segment ended, if before its span closed: the tower
    /// layers end a request's when its response is sent, though work it
    /// spawned (`in_current_span`) keeps the span open.
    pub(crate) ended: Option<Instant>,
    /// When each of the fields an exception's text comes from
    /// ([`TEXT_FIELDS`]) was last given a text after the span began: the
    /// time of the exception it gives.
    pub(crate) text_at: [Option<Instant>; TEXT_FIELDS.len()],
}

impl Rare {
    /// Field `key`'s dropped error, counted, is replaced by a new value:
    /// it is no longer counted.
    fn forget_dropped_error(&mut self, key: &str) {
        if let Some(i) = self.dropped_error_fields.iter().position(|f| *f == key) {
            self.dropped_error_fields.swap_remove(i);
            self.errors_dropped = self.errors_dropped.saturating_sub(1);
        }
    }
}

/// The fields an exception's text comes from (see [`Rare::text_at`]).
pub(crate) const TEXT_FIELDS: [&str; 4] = [
    "exception.message",
    "error.message",
    "otel.status_message",
    "otel.status_description",
];

/// The most `precursor_ids` one span keeps (the rest are left out).
pub(crate) const MAX_PRECURSORS: usize = 32;

/// Everything the layer knows about one span.
#[derive(Debug)]
pub(crate) struct SpanData {
    pub(crate) trace_id: TraceId,
    pub(crate) id: SegmentId,
    /// The upstream parent of a root (from an incoming trace header).
    pub(crate) parent_id: Option<SegmentId>,
    /// The X-Ray id of the nearest traced ancestor (children only).
    pub(crate) parent_seg: Option<SegmentId>,
    /// What it knows of its traced ancestors.
    pub(crate) ancestry: Ancestry,
    /// Where finished spans of this (sampled) trace wait for the root's
    /// close; taken out when the span itself closes.
    pub(crate) trace: Option<Arc<TraceBuf>>,
    pub(crate) decision: Decision,
    pub(crate) role: Role,
    pub(crate) anchor: Anchor,
    pub(crate) start: Instant,
    pub(crate) end: Option<Instant>,
    pub(crate) meta: &'static Metadata<'static>,
    pub(crate) fields: Fields,
    /// The heap memory its field values, events, errors and [`Rare`] part
    /// hold, summed as they are recorded (see [`SpanData::held_bytes`]).
    pub(crate) heap_bytes: u32,
    /// The tag of the layer that made it ([`crate::owners`]; 0: none).
    pub(crate) owner: u8,
    /// What only some spans have (see [`Rare`]), allocated when first needed.
    pub(crate) rare: Option<Box<Rare>>,
}

/// What a span knows of its traced ancestors, in one byte: a span's data
/// fills its cache lines to the byte (see `a_span_stays_small`). And, for a
/// root, whether a thread is taking its decision (the one flag of the byte
/// that is no ancestry's: there is no room for another).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ancestry(u8);

impl Ancestry {
    const FACADE_PARENT: u8 = 1;
    const UNDER_SDK: u8 = 2;
    const MADE_WHILE_PANICKING: u8 = 4;
    const DECIDING: u8 = 8;

    /// A root whose `Pending` decision a thread is taking, its sampler
    /// running with no lock of the root held (see `layer::inherit`):
    /// others wait for it (`layer::wait_for_a_decision`).
    pub(crate) fn deciding(self) -> bool {
        self.0 & Self::DECIDING != 0
    }

    /// See [`Ancestry::deciding`].
    pub(crate) fn set_deciding(&mut self, deciding: bool) {
        if deciding {
            self.0 |= Self::DECIDING;
        } else {
            self.0 &= !Self::DECIDING;
        }
    }

    /// `parent_is_facade`: the nearest traced ancestor is a Lambda facade.
    /// `under_sdk`: a traced ancestor is an AWS SDK span (or the
    /// interceptor's), so that the span may be folded into an SDK
    /// operation's subsegment, and does not leave before that operation
    /// ends (see `layer::hold_back_sdk_work`).
    pub(crate) fn new(parent_is_facade: bool, under_sdk: bool) -> Self {
        Ancestry(
            if parent_is_facade {
                Self::FACADE_PARENT
            } else {
                0
            } | if under_sdk { Self::UNDER_SDK } else { 0 },
        )
    }

    /// The nearest traced ancestor is a Lambda facade.
    pub(crate) fn parent_is_facade(self) -> bool {
        self.0 & Self::FACADE_PARENT != 0
    }

    /// A traced ancestor is an AWS SDK span (or the interceptor's).
    pub(crate) fn under_sdk(self) -> bool {
        self.0 & Self::UNDER_SDK != 0
    }

    /// The span was made while its thread was unwinding a panic (in a
    /// `Drop`): that panic did not go through it.
    pub(crate) fn made_while_panicking(self) -> bool {
        self.0 & Self::MADE_WHILE_PANICKING != 0
    }

    /// See [`Ancestry::made_while_panicking`].
    #[cold]
    pub(crate) fn set_made_while_panicking(&mut self) {
        self.0 |= Self::MADE_WHILE_PANICKING;
    }
}

/// The finished spans of one sampled trace, in close order (a child always
/// before its parent), waiting for the root to close. One per trace (in
/// Lambda, one per top-level span of an invocation: see
/// [`TraceBuf::part`]), shared by its spans: a span's close is a push here,
/// with no lookup of its parent.
///
/// Spans are held by value (see [`SpanList`]), and the worker reads them
/// where they are (see [`crate::forest`]). While open, a span lives in a box
/// of the application thread's own allocator; at its close it is copied
/// here and the box stays with the same thread (see [`keep_box`]), which
/// reuses it for its next span while it is still in its cache. The list
/// comes from, and goes back to, a pool the worker refills with the lists
/// it has emptied (see [`crate::recycle`]).
#[derive(Debug, Default)]
pub(crate) struct TraceBuf {
    finished: Mutex<Finished>,
    /// The annotations the (open) root's fields will take: what the parts
    /// of the trace sent before it ends keep for it (a trace is filtered by
    /// its segment's annotations first).
    pub(crate) root_annotations: std::sync::atomic::AtomicU8,
    /// The root's incoming trace header, whose extra keys every outgoing
    /// call of the trace passes on: reached from any span of the trace
    /// without walking up to the root. Final when the buffer is made (a
    /// root takes a header only until it is decided).
    pub(crate) incoming: Option<crate::TraceHeader>,
    /// The root's id: its segment's, which the parts sent before it ends
    /// belong to (two requests of one distributed trace are two segments).
    pub(crate) root: Option<SegmentId>,
    /// The root's segment was sent before its span closed (a tower
    /// layer's request, ended with its response while work it spawned
    /// keeps its span open): every span of the trace leaves as it ends.
    pub(crate) sealed: std::sync::atomic::AtomicBool,
    /// What the worker keeps between the parts of the trace sent while its
    /// root is open: made as the first part leaves, handed along with each
    /// part and the root's list, and freed with the last of them.
    parted: std::sync::OnceLock<Arc<Parted>>,
}

/// What a [`TraceBuf`] holds, under its lock.
#[derive(Debug, Default)]
struct Finished {
    /// The finished spans not sent yet, in close order.
    spans: SpanList,
    /// The AWS SDK work held back from the parts sent so far; none in
    /// nearly every trace, which allocates nothing for it.
    held: Option<Box<HeldBack>>,
}

/// Finished subtrees a trace holds back while the span they belong under is
/// still open (an AWS SDK operation's: see `layer::hold_back_sdk_work`),
/// kept apart from the trace's list, each with the span it waits for. A
/// part sent takes with it the subtrees waiting for its spans, and the
/// spans of the other calls in flight are not looked at again: with many
/// calls in flight, each call's end sorted them all again (a cost growing
/// with the square of the calls).
#[derive(Debug, Default)]
pub(crate) struct HeldBack {
    /// By the open span they wait for, the spans of the subtrees waiting
    /// for it, in close order.
    waiting: std::collections::HashMap<SegmentId, Vec<SpanData>>,
    /// How many spans it holds.
    len: usize,
    /// About how much memory they hold (see [`SpanData::held_bytes`]).
    bytes: usize,
}

/// Spans a trace is to hold back (see [`TraceBuf::stream`]): `spans`, in
/// close order, and for each (same index) the open span it waits for.
pub(crate) type ToHold = (SpanList, Vec<SegmentId>);

impl HeldBack {
    /// How many spans it holds, and about how many bytes.
    pub(crate) fn size(held: &Option<Box<HeldBack>>) -> (usize, usize) {
        held.as_ref().map_or((0, 0), |h| (h.len, h.bytes))
    }

    /// Holds `spans`, each waiting for the span beside it.
    fn hold(&mut self, (spans, waits_for): ToHold) {
        for (span, parent) in spans.into_spans().zip(waits_for) {
            self.len += 1;
            self.bytes += span.held_bytes();
            self.waiting.entry(parent).or_default().push(span);
        }
    }

    /// The spans waiting for `id`, which ended.
    fn release(&mut self, id: SegmentId) -> Option<Vec<SpanData>> {
        let spans = self.waiting.remove(&id)?;
        self.len -= spans.len();
        self.bytes -= spans.iter().map(SpanData::held_bytes).sum::<usize>();
        Some(spans)
    }
}

/// What the worker carries from one part of a trace sent while its root is
/// open to the next, and to the root (see `worker::Worker::pack`). It lives
/// with the trace, not on the worker: a trace that ends leaves nothing
/// behind, whatever the number of traces in parts at once. Only the worker
/// locks it (the application's threads only pass it on).
#[derive(Debug, Default)]
pub(crate) struct Parted(pub(crate) Mutex<PartedState>);

/// See [`Parted`].
#[derive(Debug, Default)]
pub(crate) struct PartedState {
    /// Annotations the parts sent so far indexed: the trace's 50 are shared.
    pub(crate) annotations_used: usize,
    /// The user a part names below the segment, for the root's segment.
    pub(crate) user_below: Option<String>,
    /// The exceptions of subtrees sent before their parent, by parent: it
    /// names them as its exceptions' causes.
    pub(crate) exceptions_below:
        std::collections::HashMap<SegmentId, Vec<crate::assemble::CarriedException>>,
}

impl TraceBuf {
    pub(crate) fn new(
        spans: SpanList,
        incoming: Option<crate::TraceHeader>,
        root: SegmentId,
    ) -> Self {
        TraceBuf {
            finished: Mutex::new(Finished { spans, held: None }),
            root_annotations: Default::default(),
            incoming,
            root: Some(root),
            sealed: Default::default(),
            parted: Default::default(),
        }
    }

    /// The trace's [`Parted`], made when first asked for.
    fn parted(&self) -> &Arc<Parted> {
        self.parted.get_or_init(Default::default)
    }

    /// Whether the root's segment was sent before its span closed.
    #[inline]
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The buffer's contents, locked.
    fn finished(&self) -> std::sync::MutexGuard<'_, Finished> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves a finished span out of its box into the trace's list; how
    /// many spans, and about how many bytes (see
    /// [`SpanData::held_bytes`]), the trace now holds, held back or not.
    pub(crate) fn push(&self, span: Box<SpanData>) -> (usize, usize) {
        let mut finished = self.finished();
        finished.spans.push_boxed(span);
        let (len, bytes) = HeldBack::size(&finished.held);
        (finished.spans.len() + len, finished.spans.bytes() + bytes)
    }

    /// A buffer for a part of the same trace that leaves on its own (a
    /// Lambda invocation's top-level span, whose subtree leaves as it ends;
    /// a span opened in a request's span after its segment left): the same
    /// root, incoming header, annotation count and seal, its own spans.
    pub(crate) fn part(&self, spans: SpanList) -> Self {
        TraceBuf {
            finished: Mutex::new(Finished { spans, held: None }),
            root_annotations: std::sync::atomic::AtomicU8::new(
                self.root_annotations
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            incoming: self.incoming.clone(),
            root: self.root,
            // A part made after the root's segment left (a span the
            // request's spawned work opens after the response) says so:
            // the worker keeps no room for the root's annotations, which
            // the segment already counted.
            sealed: self.is_sealed().into(),
            parted: self.parted().clone().into(),
        }
    }

    /// Streams what the trace holds while its root is open: takes every
    /// finished span, with the subtrees held back that waited for one of
    /// them, but those `hold` picks out (told how much is held back
    /// already) to wait for a span still open, and hands the rest to
    /// `send`, all under the buffer's lock. A span of the trace ending
    /// meanwhile on another thread waits: it never finds the list emptied
    /// of spans not yet sent (its own part, and a flush after it, would be
    /// queued before them), and the spans held back are held again before
    /// any span they wait for can end.
    pub(crate) fn stream(
        &self,
        replacement: SpanList,
        hold: impl FnOnce(&mut SpanList, (usize, usize)) -> Option<ToHold>,
        send: impl FnOnce(SpanList),
    ) {
        let mut finished = self.finished();
        let mut taken = self.take_from(&mut finished, replacement, true, false);
        if let Some(to_hold) = hold(&mut taken, HeldBack::size(&finished.held)) {
            finished.held.get_or_insert_default().hold(to_hold);
        }
        // Two children past the limit at once: the second finds the list
        // the first took, and has nothing to send.
        if !taken.is_empty() {
            send(taken);
        }
    }

    /// Takes every finished span, those held back too, as a part of the
    /// trace: what is left of a trace whose segment was sent with its
    /// response, when that request's span closes. Every span of the buffer
    /// has ended then: nothing waits any more.
    pub(crate) fn take_part(&self, replacement: SpanList) -> SpanList {
        let mut finished = self.finished();
        self.take_from(&mut finished, replacement, true, true)
    }

    /// Marks the trace sealed (its root's segment leaves now, its span still
    /// open), takes every finished span but those `hold` picks out (held
    /// back, as in [`TraceBuf::stream`]) and hands them to `send` with the
    /// segment, all under
    /// the buffer's lock: a span ending meanwhile on another thread is
    /// either taken or finds the mark and streams, and then its part is
    /// queued after the segment's (the worker gives a trace's user, and the
    /// room left for its annotations, in the order its parts arrive).
    #[cfg(feature = "tower")]
    pub(crate) fn seal(
        &self,
        replacement: SpanList,
        hold: impl FnOnce(&mut SpanList, (usize, usize)) -> Option<ToHold>,
        send: impl FnOnce(SpanList),
    ) {
        let mut finished = self.finished();
        self.sealed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut taken = self.take_from(&mut finished, replacement, true, false);
        if let Some(to_hold) = hold(&mut taken, HeldBack::size(&finished.held)) {
            finished.held.get_or_insert_default().hold(to_hold);
        }
        send(taken);
    }

    /// Takes every finished span held so far, those held back too: the
    /// root ended, nothing of the trace is open.
    pub(crate) fn take(&self, replacement: SpanList) -> SpanList {
        let mut finished = self.finished();
        self.take_from(&mut finished, replacement, false, true)
    }

    /// The spans of `finished` (this buffer's, locked), with the trace's
    /// marks and its [`Parted`] (made for a `part` sent while the root is
    /// open). In front, the subtrees held back that waited for one of them,
    /// or all of those (`all_held`), each in the order its spans ended and
    /// before the span it belongs under, as the worker reads a list (the
    /// subtrees, each under a span of its own, in any order).
    fn take_from(
        &self,
        finished: &mut Finished,
        replacement: SpanList,
        part: bool,
        all_held: bool,
    ) -> SpanList {
        let mut taken = std::mem::replace(&mut finished.spans, replacement);
        if let Some(held) = finished.held.as_deref_mut().filter(|h| h.len > 0) {
            if all_held {
                let waiting = std::mem::take(&mut held.waiting);
                (held.len, held.bytes) = (0, 0);
                taken.prepend(waiting.into_values().flatten());
            } else {
                let released: Vec<SpanData> = taken
                    .iter()
                    .filter_map(|s| held.release(s.id))
                    .flatten()
                    .collect();
                if !released.is_empty() {
                    taken.prepend(released);
                }
            }
        }
        taken.parted = if part {
            Some(self.parted().clone())
        } else {
            self.parted.get().cloned()
        };
        taken.root_annotations = self
            .root_annotations
            .load(std::sync::atomic::Ordering::Relaxed);
        taken.root = self.root;
        taken.root_sent = self.is_sealed();
        taken
    }
}

impl SpanData {
    /// [`SpanData::new`] in a box of its own: one this thread emptied
    /// before when it has one (see [`keep_box`]), else a new one. It is
    /// written straight into the box (`Box::new(SpanData::new(..))` builds
    /// it on the stack and copies it there: a `memcpy` per span on the
    /// application thread).
    #[inline]
    pub(crate) fn boxed(
        trace_id: TraceId,
        anchor: Anchor,
        start: Instant,
        meta: &'static Metadata<'static>,
    ) -> Box<SpanData> {
        let spare = SPARE_BOXES
            .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten();
        Box::write(
            spare.unwrap_or_else(Box::new_uninit),
            SpanData::new(trace_id, anchor, start, meta),
        )
    }

    /// A new span of trace `trace_id`, started at `start`, with a fresh id.
    #[inline]
    pub(crate) fn new(
        trace_id: TraceId,
        anchor: Anchor,
        start: Instant,
        meta: &'static Metadata<'static>,
    ) -> Self {
        SpanData {
            trace_id,
            id: SegmentId::new(),
            parent_id: None,
            parent_seg: None,
            ancestry: Ancestry::default(),
            trace: None,
            decision: Decision::Pending,
            role: Role::Span,
            anchor,
            start,
            end: None,
            meta,
            fields: Fields::new(),
            heap_bytes: 0,
            owner: 0,
            rare: None,
        }
    }

    /// About how much memory the finished span holds: itself, and what its
    /// fields, events and errors allocated. What the queue's bound in bytes
    /// counts ([`crate::Builder::with_max_queued_bytes`]): an estimate of
    /// the heap, close enough to bound it, never exact. The values' share
    /// is summed as they are recorded ([`SpanData::heap_bytes`]), where the
    /// kind of each is known, rather than by a walk over them at the close.
    #[inline]
    pub(crate) fn held_bytes(&self) -> usize {
        std::mem::size_of::<SpanData>() + self.heap_bytes as usize + spilled_bytes(&self.fields)
    }

    /// A root whose sampling decision is still open: it decides at its
    /// first child, at a request for its header, or at its close.
    pub(crate) fn is_undecided_root(&self) -> bool {
        self.parent_seg.is_none()
            && self.role == Role::Span
            && self.decision == Decision::Pending
            && !self.ancestry.deciding()
    }

    /// When its (sub)segment ends, as it closes: when a tower layer ended
    /// it (its response sent, see [`Rare::ended`]), else now.
    pub(crate) fn ended_at(&self) -> Instant {
        self.rare
            .as_ref()
            .and_then(|r| r.ended)
            .unwrap_or_else(Instant::now)
    }

    pub(crate) fn sampled(&self) -> bool {
        self.decision == Decision::Sampled
    }

    /// The span's [`Rare`] part, created when first needed.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        if self.rare.is_none() {
            self.add_heap_bytes(std::mem::size_of::<Rare>());
        }
        self.rare.get_or_insert_with(Box::default)
    }

    /// Counts `n` more bytes in [`SpanData::heap_bytes`].
    #[inline]
    pub(crate) fn add_heap_bytes(&mut self, n: usize) {
        self.heap_bytes = self
            .heap_bytes
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Counts `n` bytes fewer in [`SpanData::heap_bytes`].
    pub(crate) fn sub_heap_bytes(&mut self, n: usize) {
        self.heap_bytes = self
            .heap_bytes
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Roots only: the matched sampling rule.
    pub(crate) fn rule_name(&self) -> Option<&Arc<str>> {
        self.rare.as_ref()?.rule_name.as_ref()
    }

    /// Roots only, until sampled: the incoming trace header (a sampled
    /// root's is in its trace's buffer, [`TraceBuf::incoming`]).
    pub(crate) fn incoming(&self) -> Option<&crate::TraceHeader> {
        self.rare.as_ref()?.incoming.as_ref()
    }

    /// The errors recorded on the span.
    pub(crate) fn errors(&self) -> &[ErrorRecord] {
        self.rare.as_ref().map_or(&[], |r| &r.errors)
    }

    /// The ids of the siblings this span follows from.
    pub(crate) fn precursors(&self) -> &[SegmentId] {
        self.rare.as_ref().map_or(&[], |r| &r.precursors)
    }

    /// How many errors were counted but not kept.
    pub(crate) fn errors_dropped(&self) -> u32 {
        self.rare.as_ref().map_or(0, |r| r.errors_dropped)
    }

    /// The non-error events recorded in the span.
    pub(crate) fn events(&self) -> &[EventRecord] {
        self.rare.as_ref().map_or(&[], |r| &r.events)
    }

    /// When field `key`, one of [`TEXT_FIELDS`], was last given a text
    /// after the span began (see [`Rare::text_at`]).
    pub(crate) fn text_recorded_at(&self, key: &str) -> Option<Instant> {
        let i = TEXT_FIELDS.iter().position(|f| *f == key)?;
        self.rare.as_ref()?.text_at[i]
    }

    /// How many events were counted but not kept.
    pub(crate) fn events_dropped(&self) -> u32 {
        self.rare.as_ref().map_or(0, |r| r.events_dropped)
    }

    /// Sets a field recorded after the span's creation: a field recorded
    /// again takes the new value in its first place (what the document
    /// shows anyway), so a span whose field is recorded in a loop holds one
    /// value, not one per call.
    /// A value replaces the field's error too, if it held one before. An
    /// `otel.status_code` of `OK` stays: OpenTelemetry's `Ok` is final. An
    /// exception's text field given a text is timed (see [`Rare::text_at`]).
    pub(crate) fn record_field(&mut self, key: &'static str, value: FieldValue) {
        if let Some(i) = TEXT_FIELDS.iter().position(|f| *f == key) {
            // An empty value gives no text (it fills no field).
            if !matches!(&value, FieldValue::Str(s) if s.as_str().is_empty()) {
                self.rare_mut().text_at[i] = Some(Instant::now());
            }
        }
        let added = value_bytes(&value);
        let replaced = match self.fields.iter_mut().find(|(k, _)| *k == key) {
            // OpenTelemetry's `Ok` status is final: a later status does not
            // replace it (as tracing-opentelemetry's spans keep it).
            Some((OTEL_STATUS_CODE, FieldValue::Str(old)))
                if old.as_str().eq_ignore_ascii_case("ok") =>
            {
                return;
            }
            Some(slot) => value_bytes(&std::mem::replace(&mut slot.1, value)),
            None => {
                self.fields.push((key, value));
                0
            }
        };
        self.add_heap_bytes(added);
        self.sub_heap_bytes(replaced);
        if let Some(rare) = self.rare.as_deref_mut() {
            rare.forget_dropped_error(key);
            if let Some(i) = rare.errors.iter().position(|e| e.field == Some(key)) {
                let replaced = rare.errors.remove(i).heap_bytes();
                self.sub_heap_bytes(replaced);
            }
        }
    }

    /// Records an error, or counts it past the per-span bound. A span field
    /// recorded again holds its new value, as any field does: its exception
    /// replaces the one the field gave before (a retry loop recording `error`
    /// per attempt leaves the last attempt's). An event's (`field: None`) is
    /// always one more. A field's error replaces its earlier value too, if
    /// it held one that was not an error.
    pub(crate) fn push_error(&mut self, record: ErrorRecord) {
        let bytes = record.heap_bytes();
        if let Some(field) = record.field {
            if let Some(i) = self.fields.iter().position(|(k, _)| *k == field) {
                let (_, value) = self.fields.remove(i);
                self.sub_heap_bytes(value_bytes(&value));
            }
        }
        if let (Some(field), Some(rare)) = (record.field, self.rare.as_deref_mut()) {
            if let Some(earlier) = rare.errors.iter_mut().find(|e| e.field == Some(field)) {
                let replaced = std::mem::replace(earlier, record).heap_bytes();
                self.add_heap_bytes(bytes);
                self.sub_heap_bytes(replaced);
                return;
            }
        }
        let rare = self.rare_mut();
        let field = record.field;
        if let Some(field) = field.filter(|_| rare.errors.len() >= MAX_ERRORS_PER_SPAN) {
            if rare.dropped_error_fields.contains(&field) {
                // Its earlier error was counted; this one replaces it.
                return;
            }
            rare.dropped_error_fields.push(field);
        } else if let Some(field) = field {
            // Kept now (another field's error made room): its earlier error,
            // dropped, is replaced, no longer counted.
            rare.forget_dropped_error(field);
        }
        if push_bounded(
            &mut rare.errors,
            &mut rare.errors_dropped,
            MAX_ERRORS_PER_SPAN,
            record,
        ) {
            self.add_heap_bytes(bytes);
        }
    }

    /// Whether one more event would be kept; if not, it is counted dropped
    /// now, so that it need not be formatted ([`SpanData::push_event`]
    /// counts it again if the span fills up in between).
    pub(crate) fn room_for_event(&mut self) -> bool {
        match self.rare.as_deref_mut() {
            Some(rare) if rare.events.len() >= MAX_EVENTS_PER_SPAN => {
                rare.events_dropped = rare.events_dropped.saturating_add(1);
                false
            }
            _ => true,
        }
    }

    /// [`SpanData::room_for_event`] for an ERROR event's exception.
    pub(crate) fn room_for_event_error(&mut self) -> bool {
        match self.rare.as_deref_mut() {
            Some(rare) if rare.errors.len() >= MAX_ERRORS_PER_SPAN => {
                rare.errors_dropped = rare.errors_dropped.saturating_add(1);
                false
            }
            _ => true,
        }
    }

    /// Records a non-error event, or counts it past the per-span bound.
    pub(crate) fn push_event(&mut self, record: EventRecord) {
        let bytes = std::mem::size_of::<EventRecord>() + fields_bytes(&record.fields);
        let rare = self.rare_mut();
        if rare.events.len() >= MAX_EVENTS_PER_SPAN {
            rare.events_dropped = rare.events_dropped.saturating_add(1);
            return;
        }
        // In the order of their times: an event of another thread, timed
        // before this one's but listed after it (its fields took longer to
        // format), goes before it (almost always: at the end).
        let place = rare
            .events
            .iter()
            .rposition(|e| e.at <= record.at)
            .map_or(0, |p| p + 1);
        rare.events.insert(place, record);
        self.add_heap_bytes(bytes);
    }
}

/// Pushes `item` while `list` holds fewer than `max`; past that, counts it
/// in `dropped`; whether it was kept.
fn push_bounded<T>(list: &mut Vec<T>, dropped: &mut u32, max: usize, item: T) -> bool {
    if list.len() < max {
        list.push(item);
        true
    } else {
        *dropped = dropped.saturating_add(1);
        false
    }
}

/// Records field values into a plain vector: no lock is held while it runs,
/// since `record_debug` calls user code.
pub(crate) struct FieldVisitor<'a> {
    pub(crate) fields: &'a mut Fields,
    pub(crate) errors: &'a mut Vec<ErrorRecord>,
    /// The heap memory of the values it stored (see
    /// [`SpanData::heap_bytes`]).
    pub(crate) heap: usize,
    /// Whether an error value's `source()` chain is read (not for an
    /// event's fields, which send an error as its text alone).
    pub(crate) sources: bool,
}

fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// A `fmt::Write` that stops storing past [`MAX_FIELD_BYTES`], so that a huge
/// `Debug` output costs formatting time but never unbounded memory.
struct BoundedString(String);

impl fmt::Write for BoundedString {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_FIELD_BYTES.saturating_sub(self.0.len());
        self.0.push_str(truncate_bytes(s, room));
        Ok(())
    }
}

/// Formats `args` into a [`BoundedString`]: cut as it is written.
fn bounded(args: fmt::Arguments<'_>) -> String {
    let mut out = BoundedString(String::new());
    let _ = out.write_fmt(args);
    out.0
}

pub(crate) fn debug_string(value: &dyn fmt::Debug) -> String {
    bounded(format_args!("{value:?}"))
}

/// A value's `Display`, cut as it is formatted, as [`debug_string`] does
/// `Debug`: an error quoting a huge response body costs formatting time,
/// never a string of its size.
pub(crate) fn display_string(value: &dyn fmt::Display) -> String {
    bounded(format_args!("{value}"))
}

/// The fields tracing-log adds to a `log` record it forwards as an event
/// (its target, module, file and line, which the event's metadata stands
/// for): bookkeeping, not user data. Any other `log.` field is the user's.
#[inline(always)]
fn is_log_bookkeeping(name: &str) -> bool {
    match name.strip_prefix("log.") {
        Some(rest) => matches!(rest, "target" | "module_path" | "file" | "line"),
        None => false,
    }
}

impl FieldVisitor<'_> {
    #[inline(always)]
    fn push(&mut self, field: &Field, value: FieldValue) {
        let name = field_name(field);
        if is_log_bookkeeping(name) {
            return;
        }
        // Inlined where the value is made: for most kinds this is 0 at
        // compile time, for a string one test of the branch just taken.
        self.heap += value_bytes(&value);
        self.fields.push((name, value));
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, FieldValue::I128(Box::new(value)));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.push(field, FieldValue::U128(Box::new(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let value = truncate_bytes(value, MAX_FIELD_BYTES);
        self.push(field, FieldValue::Str(FieldStr::new(value)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        let mut sources = Vec::new();
        let mut sources_skipped = 0_u32;
        let mut next = if self.sources { value.source() } else { None };
        while let Some(e) = next {
            if sources.len() < MAX_ERROR_SOURCES {
                sources.push(display_string(e));
            } else if sources_skipped < MAX_SKIPPED_COUNTED {
                // Only counted. A chain that loops back on itself (a
                // faulty `source()`) stops being counted here.
                sources_skipped += 1;
            } else {
                break;
            }
            next = e.source();
        }
        let message = display_string(value);
        self.errors.push(ErrorRecord {
            field: Some(field_name(field)),
            message,
            sources,
            sources_skipped,
            location: None,
            target: None,
            at: Instant::now(),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Str(debug_string(value).into()));
    }
}

#[cfg(test)]
impl SpanData {
    /// A span of a test callsite, for unit tests that need one.
    pub(crate) fn for_tests() -> Self {
        use tracing_core::{Level, callsite::Callsite, metadata::Kind, subscriber::Interest};
        struct TestCallsite;
        impl Callsite for TestCallsite {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        static CALLSITE: TestCallsite = TestCallsite;
        static META: Metadata<'static> = tracing_core::metadata! {
            name: "test",
            target: "tracing_xray",
            level: Level::INFO,
            fields: &[],
            callsite: &CALLSITE,
            kind: Kind::SPAN,
        };
        let (anchor, epoch) = Anchor::now();
        SpanData::new(TraceId::with_epoch(epoch), anchor, anchor.at, &META)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_count_what_fields_events_and_errors_allocate() {
        let mut span = SpanData::for_tests();
        let bare = span.held_bytes();
        assert_eq!(bare, std::mem::size_of::<SpanData>());
        span.record_field("short", FieldValue::Str(FieldStr::new("inline")));
        assert_eq!(span.held_bytes(), bare, "a short string is inline");
        let long = "x".repeat(10_000);
        span.record_field("long", FieldValue::Str(FieldStr::new(&long)));
        assert_eq!(span.held_bytes(), bare + 10_000);
        // Recorded again: the new value's bytes replace the old one's.
        span.record_field("long", FieldValue::Str(FieldStr::new("short now")));
        assert_eq!(span.held_bytes(), bare);
        span.record_field("long", FieldValue::Str(FieldStr::new(&long)));
        let with_field = span.held_bytes();
        span.push_error(ErrorRecord {
            field: None,
            message: "y".repeat(5_000),
            sources: vec!["z".repeat(3_000)],
            sources_skipped: 0,
            location: None,
            target: None,
            at: Instant::now(),
        });
        assert_eq!(
            span.held_bytes(),
            with_field
                + std::mem::size_of::<Rare>()
                + std::mem::size_of::<ErrorRecord>()
                + 5_000
                + std::mem::size_of::<String>()
                + 3_000
        );
        let with_error = span.held_bytes();
        let mut fields = Fields::new();
        fields.push(("body", FieldValue::Str(FieldStr::new(&long))));
        span.push_event(EventRecord {
            at: Instant::now(),
            meta: span.meta,
            fields,
        });
        assert_eq!(
            span.held_bytes(),
            with_error + std::mem::size_of::<EventRecord>() + 10_000
        );
        let mut list = SpanList::new();
        let held = span.held_bytes();
        list.push(span);
        assert_eq!(list.bytes(), held);
        list.clear(1);
        assert_eq!(list.bytes(), 0);
    }

    #[test]
    fn a_field_recorded_again_takes_its_first_place() {
        let mut span = SpanData::for_tests();
        span.record_field("a", FieldValue::U64(0));
        span.record_field("b", FieldValue::Bool(true));
        for i in 1..=10_000 {
            span.record_field("a", FieldValue::U64(i));
        }
        assert_eq!(
            span.fields.as_slice(),
            [
                ("a", FieldValue::U64(10_000)),
                ("b", FieldValue::Bool(true))
            ]
        );
    }

    #[test]
    fn bounded_debug_output() {
        struct Huge;
        impl fmt::Debug for Huge {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..100_000 {
                    f.write_str("é")?;
                }
                Ok(())
            }
        }
        let s = debug_string(&Huge);
        assert!(s.len() <= MAX_FIELD_BYTES);
        assert!(s.len() > MAX_FIELD_BYTES - 4);
    }

    #[test]
    fn field_strings_round_trip_at_the_inline_boundary() {
        let cases = [
            String::new(),
            "GET".to_owned(),
            "é".repeat(11),                 // 22 bytes: inline
            format!("{}a", "é".repeat(11)), // 23 bytes: heap
            "🦀".repeat(5),                 // 20 bytes: inline
            "🦀".repeat(6),                 // 24 bytes: heap
            "x".repeat(INLINE_STR_BYTES),
        ];
        for case in cases {
            let field = FieldStr::new(&case);
            assert_eq!(field.as_str(), case);
            assert_eq!(
                matches!(field, FieldStr::Inline(_)),
                case.len() <= INLINE_STR_BYTES
            );
            assert_eq!(FieldStr::from(case.clone()).as_str(), case);
        }
    }

    /// A span moved into a trace's list keeps everything it owns there,
    /// while its emptied box serves this thread's next span, written anew
    /// (nothing of the moved span is read or dropped through it); a thread
    /// keeps at most [`MAX_SPARE_BOXES`].
    #[test]
    fn a_closed_spans_box_serves_the_threads_next_span() {
        // A thread of its own: the spare boxes are thread-local.
        std::thread::spawn(|| {
            let template = SpanData::for_tests();
            let boxed = || {
                SpanData::boxed(
                    template.trace_id,
                    template.anchor,
                    template.start,
                    template.meta,
                )
            };
            let mut span = boxed();
            let long = "v".repeat(100);
            span.fields
                .push(("key", FieldValue::Str(FieldStr::new(&long))));
            span.push_error(ErrorRecord {
                field: None,
                message: "boom".into(),
                sources: vec!["cause".into()],
                sources_skipped: 0,
                location: None,
                target: None,
                at: Instant::now(),
            });
            let (id, address) = (span.id, &*span as *const SpanData);
            let mut list = SpanList::new();
            list.push_boxed(span);
            let next = boxed();
            assert_eq!(&*next as *const SpanData, address, "the emptied box");
            assert!(next.fields.is_empty() && next.rare.is_none());
            assert_ne!(next.id, id);
            let moved = list.get(0);
            assert_eq!(moved.id, id);
            assert!(matches!(&moved.fields[0].1, FieldValue::Str(s) if **s == *long));
            assert_eq!(moved.errors()[0].sources, ["cause"]);
            drop(next);
            let open: Vec<Box<SpanData>> = (0..MAX_SPARE_BOXES * 2).map(|_| boxed()).collect();
            for span in open {
                list.push_boxed(span);
            }
            assert_eq!(SPARE_BOXES.with(|s| s.borrow().len()), MAX_SPARE_BOXES);
            assert_eq!(list.len(), 1 + MAX_SPARE_BOXES * 2);
        })
        .join()
        .unwrap();
    }

    /// A span that is not sent is dropped (what it owns is freed) and its
    /// box serves this thread's next span.
    #[test]
    fn a_discarded_spans_box_serves_the_threads_next_span() {
        std::thread::spawn(|| {
            let t = SpanData::for_tests();
            let mut span = SpanData::boxed(t.trace_id, t.anchor, t.start, t.meta);
            let owned = std::sync::Arc::new(TraceBuf::default());
            span.trace = Some(owned.clone());
            span.rare_mut().rule_name = Some("rule".into());
            let address = &*span as *const SpanData;
            discard(span);
            assert_eq!(std::sync::Arc::strong_count(&owned), 1, "dropped");
            let next = SpanData::boxed(t.trace_id, t.anchor, t.start, t.meta);
            assert_eq!(&*next as *const SpanData, address, "the same box");
            assert!(next.trace.is_none() && next.rare.is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_span_stays_small() {
        // Every span's data is written on the application thread and read
        // on the worker's core: each cache line counts.
        assert!(std::mem::size_of::<SpanData>() <= 280);
        assert!(std::mem::size_of::<FieldValue>() <= 24);
    }

    #[test]
    fn anchor_places_later_instants_later() {
        let (a, _) = Anchor::now();
        let later = a.at + std::time::Duration::from_micros(1500);
        // 1,500 µs as the OS clock has it: the span clock's offset takes the
        // rate correction the worker measured (in this process, other tests'
        // workers), at most 1,000 ppm: 1.5 µs, 2 once rounded.
        let offset = a.micros(later) - a.wall_micros;
        assert!(offset.abs_diff(1500) <= 2, "{offset}");
        // An instant before the anchor never moves time backwards.
        assert_eq!(a.micros(a.at), a.wall_micros);
    }
}
