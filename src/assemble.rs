//! Finished span trees → X-Ray documents (worker thread only).
//!
//! Children are serialized before their parent (an explicit stack, so deep
//! trees cannot overflow the worker's stack). A parent keeps as many
//! children embedded as fit both the byte limit and the subsegment-count
//! threshold; the others leave as independent subsegment documents
//! (`type`, `trace_id`, `parent_id`), largest first, exactly as the official
//! SDKs stream completed subtrees (SPEC §2.3). A span whose own data is too
//! large is trimmed (its largest metadata values first) and marked.
//!
//! Most subsegments are only a name, times and fields without a convention;
//! those are written straight from the span
//! ([`crate::json::write_plain_subsegment`]), without the [`Entity`] the
//! others are built into first. A differential test holds both paths to the
//! same bytes.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::clock::Instant;
use crate::config::Config;
use crate::export::{Document, DocumentKind, MAX_DOCUMENT_BYTES};
use crate::fields::conventions::{self, may_have_meaning};
use crate::fields::{
    AWS_SDK_TARGET, Conventions, PRESIGNED_FIELD, TRACING_NAMESPACE, TraceBudget, route,
};
use crate::forest::Forest;
use crate::id::{SegmentId, TraceId};
use crate::limits::{
    MAX_ANNOTATIONS_PER_TRACE, MAX_STRING_CHARS, sanitize_name, truncate_chars, truncate_chars_cow,
};
use crate::model::{Cause, Entity, EpochSeconds, Exception, MetaValue, StackFrame, XrayInfo};
use crate::span_data::{FieldValue, MAX_ERRORS_PER_SPAN, SpanData};

/// Room kept in every embedded subtree for the fields an independent
/// subsegment adds (`"type":"subsegment","trace_id":…,"parent_id":…,`).
const INDEPENDENT_PREFIX_RESERVE: usize = 128;
const EMBED_LIMIT: usize = MAX_DOCUMENT_BYTES - INDEPENDENT_PREFIX_RESERVE;

/// The metadata namespace where the crate marks what it changed.
pub(crate) const CRATE_NAMESPACE: &str = "tracing_xray";

/// Room kept for the mark a trimmed span carries:
/// `,"tracing_xray":{"trimmed":true,"metadata_dropped":[]}`, and the commas
/// and braces the dropped entries leave behind.
const TRIM_MARKER_BYTES: usize = 96;

/// How many of the exceptions below a span that its own do not name stay
/// for its ancestors to name (the latest): the list stays short however
/// many spans of a subtree failed.
const MAX_EXCEPTIONS_PASSED_UP: usize = 64;

/// How many dropped entries (metadata, annotations) a trimmed span names
/// (the rest are dropped all the same).
const MAX_NAMED_DROPS: usize = 16;

/// Which of some entries to drop, the largest first, to free at least
/// `excess` bytes of a document and the room their names take in the mark.
/// `sizes` holds each entry's bytes and its place in the caller's list;
/// gives the places to drop, sorted, and the first [`MAX_NAMED_DROPS`]
/// names (`name_of` a place).
fn largest_first(
    mut sizes: Vec<(usize, usize)>,
    excess: usize,
    name_of: impl Fn(usize) -> String,
) -> (Vec<usize>, Vec<MetaValue<'static>>) {
    sizes.sort_unstable_by_key(|&(bytes, _)| std::cmp::Reverse(bytes));
    let (mut freed, mut need) = (0, excess);
    let mut drop = Vec::new();
    let mut names = Vec::new();
    for (bytes, place) in sizes {
        if freed >= need {
            break;
        }
        freed += bytes;
        drop.push(place);
        if names.len() < MAX_NAMED_DROPS {
            let name = name_of(place);
            // Quotes and a comma, escapes aside (the fallback covers them).
            need += name.len() + 3;
            names.push(MetaValue::Str(Cow::Owned(name)));
        }
    }
    drop.sort_unstable();
    (drop, names)
}

/// How many events a span's metadata lists (`tracing.events`).
fn event_count(metadata: &crate::model::Metadata<'_>) -> usize {
    metadata
        .entries()
        .iter()
        .filter(|(ns, _)| ns == TRACING_NAMESPACE)
        .flat_map(|(_, entries)| entries.entries())
        .map(|(key, value)| match value {
            MetaValue::List(events) if key == "events" => events.len(),
            _ => 0,
        })
        .sum()
}

/// Drops metadata entries, the largest first, until they free at least
/// `excess` bytes of the document (see [`largest_first`]), and names them
/// (`namespace.key`). This crate's own entries (its counts) stay. The
/// span's events (`tracing.events`, with `with_events(true)`) count one by
/// one (`tracing.events[i]`): a large event costs the span no other; an
/// events list left empty goes too.
fn drop_largest_metadata(
    metadata: &mut crate::model::Metadata<'_>,
    excess: usize,
    scratch: &mut String,
) -> Vec<MetaValue<'static>> {
    // Every entry's (namespace, key) and every event's (namespace, key,
    // event), in order; its place is its index.
    let mut places: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let mut sizes = Vec::new();
    for (n, (ns, entries)) in metadata.entries().iter().enumerate() {
        if ns == CRATE_NAMESPACE {
            continue;
        }
        for (k, (key, value)) in entries.entries().iter().enumerate() {
            match value {
                MetaValue::List(events) if ns == TRACING_NAMESPACE && key == "events" => {
                    for (e, event) in events.iter().enumerate() {
                        // The comma between two events.
                        sizes.push((
                            crate::json::meta_value_len(scratch, event) + 1,
                            places.len(),
                        ));
                        places.push((n, k, Some(e)));
                    }
                }
                _ => {
                    // The comma between two entries.
                    sizes.push((
                        crate::json::meta_entry_len(scratch, key, value) + 1,
                        places.len(),
                    ));
                    places.push((n, k, None));
                }
            }
        }
    }
    let (drop, names) = largest_first(sizes, excess, |place| {
        let (n, k, event) = places[place];
        let (ns, entries) = &metadata.entries()[n];
        let key = &entries.entries()[k].0;
        match event {
            Some(e) => format!("{ns}.{key}[{e}]"),
            None => format!("{ns}.{key}"),
        }
    });
    let mut drop: Vec<(usize, usize, Option<usize>)> =
        drop.into_iter().map(|place| places[place]).collect();
    drop.sort_unstable();
    for (n, (_, entries)) in metadata.entries_mut().iter_mut().enumerate() {
        for (k, (_, value)) in entries.entries_mut().iter_mut().enumerate() {
            if let MetaValue::List(events) = value {
                let mut e = 0;
                events.retain(|_| {
                    let keep = drop.binary_search(&(n, k, Some(e))).is_err();
                    e += 1;
                    keep
                });
            }
        }
        let mut k = 0;
        entries.retain(|(_, value)| {
            let emptied = matches!(value, MetaValue::List(events) if events.is_empty())
                && drop
                    .iter()
                    .any(|&(dn, dk, e)| dn == n && dk == k && e.is_some());
            let keep = !emptied && drop.binary_search(&(n, k, None)).is_err();
            k += 1;
            keep
        });
    }
    metadata.retain(|(_, entries)| !entries.is_empty());
    names
}

/// Drops annotations, the largest first, until they free at least `excess`
/// bytes of the document (see [`largest_first`]), and names them.
fn drop_largest_annotations(
    annotations: &mut crate::model::Annotations<'_>,
    excess: usize,
    scratch: &mut String,
) -> Vec<MetaValue<'static>> {
    let sizes = annotations
        .0
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            (
                crate::json::annotation_entry_len(scratch, key, value) + 1,
                i,
            )
        })
        .collect();
    let (drop, names) = largest_first(sizes, excess, |i| annotations.0[i].0.to_string());
    let mut i = 0;
    annotations.0.retain(|_| {
        let keep = drop.binary_search(&i).is_err();
        i += 1;
        keep
    });
    names
}

/// What to do with the top of a tree.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Top {
    /// A segment (the root of a trace in this service).
    Segment,
    /// An independent subsegment of `parent` (streamed children, Lambda).
    Subsegment { parent: SegmentId },
}

/// Counts of what assembly changed, merged into the handle's stats.
#[derive(Debug, Default)]
pub(crate) struct AssemblyCounts {
    pub(crate) streamed_subsegments: u64,
    pub(crate) trimmed_spans: u64,
    pub(crate) annotations_demoted: u64,
    pub(crate) exceptions_dropped: u64,
    pub(crate) events_dropped: u64,
}

struct Packed {
    id: SegmentId,
    json: String,
    count: usize,
    /// Levels of spans in `json`: 1 for a span without embedded children.
    height: usize,
}

/// Longest exception message kept, in characters: eight long messages
/// then still fit in a document, with their stacks and source chains.
const MAX_EXCEPTION_MESSAGE_CHARS: usize = 1000;

/// The most levels of spans one document embeds: a deeper subtree leaves as
/// an independent subsegment. Each level nests JSON twice (`subsegments`,
/// then the subsegment's object), and JSON parsers cap nesting (serde_json
/// at 128 levels, X-Ray's own tools too), so a document of a 150-deep call
/// chain would otherwise be unreadable.
const MAX_EMBED_DEPTH: usize = 32;

/// The target of tower-http's `DefaultOnFailure` events: a response its
/// classifier calls failed (a 5xx, or a gRPC error inside a 200).
const TOWER_HTTP_FAILURE_TARGET: &str = "tower_http::trace::on_failure";

pub(crate) struct Assembler<'c> {
    cfg: &'c Config,
    trace_id: TraceId,
    budget: TraceBudget,
    pub(crate) out: Vec<Document>,
    pub(crate) counts: AssemblyCounts,
    /// Emptied JSON buffers of children already spliced into their parent,
    /// reused for the next spans (kept by the worker across traces).
    pub(crate) spare: Vec<String>,
    /// The exceptions of the subtrees packed so far that an ancestor may
    /// name as its exception's cause: a hash of the message, the id, and
    /// when it was recorded.
    exceptions: Vec<(u64, SegmentId, Instant)>,
    /// Where the span being packed starts in `exceptions`: its
    /// descendants' come after.
    exceptions_mark: usize,
    /// The fields of the whole list, counted once for all its trees (see
    /// [`Assembler::reserve_for_top`]).
    list_fields: Option<usize>,
    /// The user a span below the segment named, for a segment whose root
    /// names none (see [`Assembler::set_user_below`]).
    user_below: Option<String>,
    /// A client call with no traced parent is being packed: the segment
    /// around it ([`caller_segment`]) keeps its `otel.name`.
    packing_root_call: bool,
    /// The SDK's `try_attempt` spans below the AWS SDK operation being
    /// packed, when they are kept as subsegments of their own (not folded
    /// in, where [`Assembler::entity`] counts them): its attempts.
    kept_attempts: u64,
    /// The exceptions of subtrees sent in earlier parts of the trace (a
    /// long-lived root streaming its finished subsegments), by the span
    /// they were below: that span names them as its exceptions' causes as
    /// if they were packed with it (see [`Assembler::carry_exceptions`]).
    carried: Vec<(SegmentId, CarriedException)>,
}

/// An exception an ancestor may name as its cause (see
/// [`Assembler::exceptions`]): a hash of its message, its id, and when it
/// was recorded.
pub(crate) type CarriedException = (u64, SegmentId, Instant);

/// JSON buffers up to this capacity are reused; larger ones are freed.
const MAX_SPARE_BUFFER: usize = 16 * 1024;
/// At most this many JSON buffers are kept for reuse.
const MAX_SPARE_BUFFERS: usize = 256;
/// A new JSON buffer's capacity: a typical span's document fits.
const JSON_BUFFER: usize = 1024;

impl<'c> Assembler<'c> {
    /// An assembler for one trace, reusing the JSON buffers in `spare`.
    pub(crate) fn new(cfg: &'c Config, trace_id: TraceId, spare: Vec<String>) -> Self {
        Assembler {
            cfg,
            trace_id,
            budget: TraceBudget::default(),
            out: Vec::new(),
            counts: AssemblyCounts::default(),
            spare,
            exceptions: Vec::new(),
            exceptions_mark: 0,
            list_fields: None,
            user_below: None,
            packing_root_call: false,
            kept_attempts: 0,
            carried: Vec::new(),
        }
    }

    /// The exceptions of subtrees of this trace sent earlier, by the span
    /// they were below (see [`Assembler::carried`]).
    pub(crate) fn carry_exceptions(&mut self, carried: Vec<(SegmentId, CarriedException)>) {
        self.carried = carried;
    }

    /// The exceptions of the tree just packed that its parent, packed in a
    /// later part, may name as causes: its top's own.
    pub(crate) fn top_exceptions(&self) -> &[CarriedException] {
        &self.exceptions
    }

    /// Adds to the exceptions below the span just entered those of its
    /// subtrees sent in earlier parts.
    fn enter_carried(&mut self, span: SegmentId) {
        if self.carried.is_empty() {
            return;
        }
        let exceptions = &mut self.exceptions;
        self.carried.retain(|(below, exception)| {
            let mine = *below == span;
            if mine {
                exceptions.push(*exception);
            }
            !mine
        });
    }

    /// The user a span below the segment named (`enduser.id`,
    /// `xray.user`): the segment's, unless its root names one. X-Ray has a
    /// user only on segments.
    pub(crate) fn set_user_below(&mut self, user: Option<String>) {
        self.user_below = user;
    }

    /// Counts `n` annotations as already indexed in this trace (by parts of
    /// it sent earlier).
    pub(crate) fn set_annotations_used(&mut self, n: usize) {
        self.budget.annotations = n;
    }

    /// Keeps `n` annotations for the trace's root, which is still open (this
    /// is a part sent before it ends).
    pub(crate) fn hold_for_root(&mut self, n: usize) {
        self.budget.held_for_root = n;
    }

    /// Annotations indexed in this trace so far.
    /// Gives back the places of `n` annotations a trim dropped.
    fn refund_annotations(&mut self, n: usize) {
        self.budget.annotations = self.budget.annotations.saturating_sub(n);
    }

    pub(crate) fn annotations_used(&self) -> usize {
        self.budget.annotations
    }

    /// An empty JSON buffer.
    fn buffer(&mut self) -> String {
        self.spare
            .pop()
            .unwrap_or_else(|| String::with_capacity(JSON_BUFFER))
    }

    /// Keeps an emptied buffer for reuse.
    fn recycle(&mut self, mut json: String) {
        if json.capacity() <= MAX_SPARE_BUFFER && self.spare.len() < MAX_SPARE_BUFFERS {
            json.clear();
            self.spare.push(json);
        }
    }

    /// Packs span `root` of `forest` (and everything below it) into
    /// documents appended to `out`.
    ///
    /// A client call with no traced parent (an AWS SDK or HTTP client call,
    /// a database query, outside any request: a background job, a command
    /// line tool) is not made the segment itself: a segment describes the
    /// work of this service, and its `http` block the request it *served*.
    /// The call goes as a subsegment of a segment of this service spanning
    /// it, so that the service map draws this service calling the other.
    pub(crate) fn pack(&mut self, forest: Forest<'_>, root: usize, top: Top) {
        let wrap = matches!(top, Top::Segment) && conventions::is_call(forest.span(root));
        struct Frame {
            node: usize,
            next: usize,
            packed: Vec<Packed>,
            /// Inside an AWS SDK operation span (itself included).
            in_op: bool,
            /// Inside an operation: the spans visited instead of its children
            /// (see [`nested_calls`], [`children_past_interceptors`]).
            visit: Vec<usize>,
            /// Where its descendants' exceptions start (see
            /// [`Assembler::exceptions`]).
            mark: usize,
            /// A presign (see [`is_presign`]): no subsegment of its own, the
            /// calls made inside it go to its parent.
            presign: bool,
        }
        let keep_internals = self.cfg.fields.aws_sdk_internal_spans;
        let frame = |node: usize, in_op: bool, mark: usize| {
            let visit = match (in_op, keep_internals) {
                (true, false) => nested_calls(forest, node),
                (true, true) => children_past_interceptors(forest, node),
                (false, _) => Vec::new(),
            };
            let below = if in_op {
                visit.len()
            } else {
                forest.children(node).len()
            };
            Frame {
                node,
                next: 0,
                packed: Vec::with_capacity(below),
                in_op,
                visit,
                mark,
                presign: false,
            }
        };
        let root_is_op = is_aws_operation(forest.span(root));
        // A presign made outside any span of this service: only the calls
        // made inside it (a credentials provider's), each on its own.
        if root_is_op && is_presign(forest, root) {
            // The exceptions of every one of them wait for the presign's
            // parent (see `top_exceptions`); of none, none.
            let mut below = Vec::new();
            for call in nested_calls(forest, root) {
                self.pack(forest, call, top);
                below.append(&mut self.exceptions);
            }
            self.exceptions = below;
            return;
        }
        self.reserve_for_top(forest, root, matches!(top, Top::Segment));
        self.exceptions.clear();
        let mut stack = vec![frame(root, root_is_op, 0)];
        self.enter_carried(forest.span(root).id);
        while let Some(frame_now) = stack.last_mut() {
            // Inside an operation, the SDK's internal spans are folded into
            // it (only the calls made inside it are visited), or with them
            // kept, the interceptor's span is merged into it (what runs
            // inside that span is visited in its place).
            let child = if frame_now.in_op {
                frame_now.visit.get(frame_now.next).copied()
            } else {
                forest.children(frame_now.node).get(frame_now.next).copied()
            };
            if let Some(child) = child {
                frame_now.next += 1;
                let span = forest.span(child);
                let is_op = is_aws_operation(span);
                let mark = self.exceptions.len();
                if is_op && is_presign(forest, child) {
                    // Only the calls made inside it are visited.
                    let visit = nested_calls(forest, child);
                    stack.push(Frame {
                        node: child,
                        next: 0,
                        packed: Vec::with_capacity(visit.len()),
                        in_op: true,
                        visit,
                        mark,
                        presign: true,
                    });
                    continue;
                }
                let in_op = frame_now.in_op || is_op;
                stack.push(frame(child, in_op, mark));
                self.enter_carried(span.id);
                continue;
            }
            let Some(frame) = stack.pop() else { break };
            if frame.presign {
                // Never the top (see above): it has a parent.
                if let Some(parent) = stack.last_mut() {
                    parent.packed.extend(frame.packed);
                }
                continue;
            }
            self.exceptions_mark = frame.mark;
            let is_top = stack.is_empty();
            if is_top {
                self.budget.reserved = 0;
            }
            if is_top && wrap {
                self.packing_root_call = true;
                let call = self.finish(forest, frame.node, frame.packed, None);
                self.packing_root_call = false;
                let segment = caller_segment(forest.span(frame.node));
                let packed = self.finish_node(&segment, &[], vec![call], Some(top));
                self.emit_top(packed, top);
                break;
            }
            let packed = self.finish(forest, frame.node, frame.packed, is_top.then_some(top));
            match stack.last_mut() {
                Some(parent) => parent.packed.push(packed),
                None => self.emit_top(packed, top),
            }
        }
        self.counts.annotations_demoted += std::mem::take(&mut self.budget.annotations_demoted);
    }

    /// Keeps for the top span of `forest`'s tree at `root` the annotations
    /// it will take, before its subsegments (packed first) use the trace's
    /// 50. Only when the tree's fields could reach the limit at all. A
    /// trace sent in parts (a long-lived root streaming its finished
    /// subsegments) keeps the root's in every part, through
    /// [`Assembler::hold_for_root`].
    fn reserve_for_top(&mut self, forest: Forest<'_>, root: usize, is_segment: bool) {
        self.budget.reserved = 0;
        let left = MAX_ANNOTATIONS_PER_TRACE
            .saturating_sub(self.budget.annotations + self.budget.held_for_root);
        // Every field of the list, the tree's and any other's: a bound on
        // the annotations the tree can ask for. Counted once per list (a
        // streamed list holds many trees).
        let fields = *self
            .list_fields
            .get_or_insert_with(|| forest.spans().map(|s| s.fields.len()).sum());
        if fields <= left {
            return;
        }
        // What routing the top span alone indexes (on a scratch entity).
        let top = forest.span(root);
        let mut entity = Entity::default();
        let mut budget = TraceBudget::default();
        route(
            top,
            &mut entity,
            is_segment,
            &mut budget,
            &self.cfg.fields,
            &mut Conventions::default(),
        );
        self.budget.reserved = entity.annotations.0.len().min(left);
    }

    /// An error that travels up through spans that each record it (nested
    /// `#[instrument(err)]` functions, a handler logging what a call
    /// returned) is described at every level. Each of this span's
    /// exceptions with no cause of its own names, as its `cause`, the
    /// exception of the same message nearest below it, as the SDKs link an
    /// exception thrown in a subsegment; the console then shows one error
    /// passing up, not several. This span's exceptions then come after
    /// those below (the latest [`MAX_EXCEPTIONS_PASSED_UP`] of them), so
    /// that an ancestor names the nearest copy of an error passed up (this
    /// span's), or, when this span's copy is trimmed away or it logged
    /// another error of its own, the one below.
    ///
    /// `hashes` are those of the exceptions' messages as recorded, before
    /// their URL secrets are cut (two errors that differ only in a URL's
    /// query are two errors), with when they were recorded: an exception
    /// below recorded later (a retry failing after the failure was logged)
    /// is not its cause.
    fn link_to_descendants(&mut self, cause: &mut Cause<'_>, hashes: &[(u64, Instant)]) {
        let below = self.exceptions_mark.min(self.exceptions.len());
        for (ex, &(hash, at)) in cause.exceptions.iter_mut().zip(hashes) {
            if ex.cause.is_some() {
                continue;
            }
            // Of the same error below, the copy recorded last before this
            // one (the nearest up a chain; a retry's last attempt, not an
            // earlier one a retry loop logged).
            let mut named: Option<(Instant, SegmentId)> = None;
            for &(h, id, then) in &self.exceptions[below..] {
                if h == hash && then <= at && named.is_none_or(|(best, _)| then >= best) {
                    named = Some((then, id));
                }
            }
            if let Some((_, id)) = named {
                ex.cause = Some(id);
            }
        }
        let kept_below = self.exceptions.len() - below;
        if kept_below > MAX_EXCEPTIONS_PASSED_UP {
            self.exceptions
                .drain(below..below + kept_below - MAX_EXCEPTIONS_PASSED_UP);
        }
        for (ex, &(hash, at)) in cause.exceptions.iter().zip(hashes) {
            self.exceptions.push((hash, ex.id, at));
        }
    }

    fn emit_top(&mut self, packed: Packed, top: Top) {
        match top {
            Top::Segment => self.out.push(Document::new(
                packed.json,
                DocumentKind::Segment,
                self.trace_id,
                packed.id,
            )),
            Top::Subsegment { parent } => self.emit_independent(packed, parent),
        }
    }

    fn emit_independent(&mut self, packed: Packed, parent: SegmentId) {
        let mut json = String::with_capacity(packed.json.len() + INDEPENDENT_PREFIX_RESERVE);
        let _ = write!(
            json,
            r#"{{"type":"subsegment","trace_id":"{}","parent_id":"{}","#,
            self.trace_id, parent
        );
        json.push_str(&packed.json[1..]);
        self.recycle(packed.json);
        self.out.push(Document::new(
            json,
            DocumentKind::Subsegment,
            self.trace_id,
            packed.id,
        ));
    }

    /// Serializes span `node` of `forest` around its already packed children.
    fn finish(
        &mut self,
        forest: Forest<'_>,
        node: usize,
        children: Vec<Packed>,
        top: Option<Top>,
    ) -> Packed {
        let keep_internals = self.cfg.fields.aws_sdk_internal_spans;
        let merged = merged_spans(forest, node, keep_internals);
        self.kept_attempts = if keep_internals && is_aws_operation(forest.span(node)) {
            attempts_below(forest, node)
        } else {
            0
        };
        let packed = self.finish_node(forest.span(node), &merged, children, top);
        self.kept_attempts = 0;
        packed
    }

    /// Serializes one node, with the spans folded into it, around its
    /// already packed children.
    fn finish_node(
        &mut self,
        node: &SpanData,
        merged: &[&SpanData],
        mut children: Vec<Packed>,
        top: Option<Top>,
    ) -> Packed {
        let is_segment = matches!(top, Some(Top::Segment));
        // A segment's limit is the whole document; everything else must leave
        // room to become an independent subsegment later.
        let limit = if is_segment {
            MAX_DOCUMENT_BYTES
        } else {
            EMBED_LIMIT
        };
        // The spans folded in keep no id of their own: the outgoing trace
        // header names this one (see `layer::aws_call_of`).
        let id = node.id;
        let own = self.serialize_node(node, id, merged, is_segment, limit);

        const SUBSEGMENTS: usize = r#","subsegments":[]"#.len();
        let mut total = own.len()
            + if children.is_empty() { 0 } else { SUBSEGMENTS }
            + children.iter().map(|c| c.json.len() + 1).sum::<usize>();
        let mut count = 1 + children.iter().map(|c| c.count).sum::<usize>();
        // The threshold counts the subsegments a document holds: its top
        // (this node) is not one of them.
        let threshold = self.cfg.streaming_threshold.max(1).saturating_add(1);
        let too_deep = |c: &Packed| c.height >= MAX_EMBED_DEPTH;
        if total > limit || count > threshold || children.iter().any(too_deep) {
            // A subtree leaves as an independent subsegment when it nests too
            // deep, then the biggest ones while this node is over its limits
            // (fewest documents).
            let mut by_size: Vec<(usize, Packed)> = children.into_iter().enumerate().collect();
            by_size.sort_by_key(|(_, c)| (!too_deep(c), std::cmp::Reverse(c.json.len())));
            let mut kept = Vec::with_capacity(by_size.len());
            for (place, child) in by_size {
                if too_deep(&child) || total > limit || count > threshold {
                    total -= child.json.len() + 1;
                    count -= child.count;
                    self.counts.streamed_subsegments += 1;
                    self.emit_independent(child, id);
                } else {
                    kept.push((place, child));
                }
            }
            // Those kept stay in their order, as in a document not split.
            kept.sort_unstable_by_key(|(place, _)| *place);
            children = kept.into_iter().map(|(_, child)| child).collect();
        }

        if children.is_empty() {
            return Packed {
                id,
                json: own,
                count,
                height: 1,
            };
        }
        let height = 1 + children.iter().map(|c| c.height).max().unwrap_or(0);
        let mut json = if is_segment {
            // The segment's document leaves with the exporter: a buffer of
            // its final size, instead of growing (reallocating) a pooled one
            // that the pool would then lose.
            let mut json = String::with_capacity(total);
            json.push_str(own.strip_suffix('}').unwrap_or(&own));
            self.recycle(own);
            json
        } else {
            let mut json = own;
            json.pop(); // the closing brace
            json.reserve(total - json.len());
            json
        };
        json.push_str(r#","subsegments":["#);
        for (i, child) in children.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&child.json);
        }
        json.push_str("]}");
        for child in children {
            self.recycle(child.json);
        }
        Packed {
            id,
            json,
            count,
            height,
        }
    }

    fn serialize_node(
        &mut self,
        node: &SpanData,
        id: SegmentId,
        merged: &[&SpanData],
        is_segment: bool,
        limit: usize,
    ) -> String {
        if !is_segment && merged.is_empty() {
            if let Some(json) = self.plain_subsegment(node, id) {
                if json.len() <= limit {
                    return json;
                }
                // Too big: the full path trims it.
                self.recycle(json);
            }
        }
        let mut entity = self.entity(node, id, merged, is_segment);
        // The hand-written writer of [`crate::json`]: the same bytes as
        // `serde_json::to_writer`, checked by its differential test.
        let mut json = self.buffer();
        crate::json::write_entity(&mut json, &entity);
        if json.len() <= limit {
            return json;
        }
        // Too big on its own: drop what matters least until it fits. First
        // the largest metadata values, which are what makes a span this
        // big; the small ones beside them stay.
        self.counts.trimmed_spans += 1;
        let events_before = event_count(&entity.metadata);
        let mut scratch = self.buffer();
        let mut metadata_dropped = drop_largest_metadata(
            &mut entity.metadata,
            json.len() - limit + TRIM_MARKER_BYTES,
            &mut scratch,
        );
        // Exceptions the span's own bound left out before trimming began.
        let mut exceptions_dropped = entity
            .metadata
            .entries()
            .iter()
            .find(|(ns, _)| ns == CRATE_NAMESPACE)
            .and_then(|(_, entries)| {
                entries
                    .entries()
                    .iter()
                    .find(|(k, _)| k == "exceptions_dropped")
            })
            .map_or(0, |(_, v)| match v {
                MetaValue::U64(n) => *n,
                _ => 0,
            });
        let mut annotations_dropped = Vec::new();
        let mark = |entity: &mut crate::model::Entity<'_>,
                    metadata_dropped: &[MetaValue<'static>],
                    annotations_dropped: &[MetaValue<'static>],
                    exceptions_dropped: u64| {
            let ns = || Cow::Borrowed(CRATE_NAMESPACE);
            let md = &mut entity.metadata;
            md.put(ns(), Cow::Borrowed("trimmed"), MetaValue::Bool(true));
            for (key, names) in [
                ("metadata_dropped", metadata_dropped),
                ("annotations_dropped", annotations_dropped),
            ] {
                if !names.is_empty() {
                    md.put(ns(), Cow::Borrowed(key), MetaValue::List(names.to_vec()));
                }
            }
            if exceptions_dropped > 0 {
                md.put(
                    ns(),
                    Cow::Borrowed("exceptions_dropped"),
                    MetaValue::U64(exceptions_dropped),
                );
            }
        };
        mark(&mut entity, &metadata_dropped, &[], exceptions_dropped);
        json.clear();
        crate::json::write_entity(&mut json, &entity);
        let exceptions_before: Vec<SegmentId> = entity
            .cause
            .iter()
            .flat_map(|c| c.exceptions.iter().map(|e| e.id))
            .collect();
        // Then, in the order of the README: the rest of the metadata (the
        // crate's own marks stay), the exceptions' stacks, the largest
        // annotations, the `http`/`sql` blocks, all exceptions but the
        // first (counted), and last whatever is left.
        let mut steps = 0;
        while json.len() > limit && steps <= 5 {
            match steps {
                0 => {
                    for (ns, entries) in entity.metadata.entries() {
                        if ns == CRATE_NAMESPACE {
                            continue;
                        }
                        for (key, _) in entries.entries() {
                            if metadata_dropped.len() < MAX_NAMED_DROPS {
                                let name = format!("{ns}.{key}");
                                metadata_dropped.push(MetaValue::Str(Cow::Owned(name)));
                            }
                        }
                    }
                    entity.metadata.retain(|(ns, _)| ns == CRATE_NAMESPACE);
                }
                1 => {
                    if let Some(cause) = &mut entity.cause {
                        for ex in &mut cause.exceptions {
                            ex.stack.clear();
                        }
                    }
                }
                // The largest first, as for metadata.
                2 => {
                    let before = entity.annotations.0.len();
                    annotations_dropped = drop_largest_annotations(
                        &mut entity.annotations,
                        json.len() - limit + TRIM_MARKER_BYTES,
                        &mut scratch,
                    );
                    // Not indexed after all: their places go to later spans.
                    self.refund_annotations(before - entity.annotations.0.len());
                }
                3 => {
                    entity.http = Default::default();
                    entity.sql = Default::default();
                    entity.aws.resource = None;
                    // A list a span recorded itself may be any length (an
                    // SDK call names at most 100 tables): the operation and
                    // the rest of the block stay.
                    entity.aws.table_names.clear();
                    entity.aws.parameters = None;
                    entity.user = None;
                }
                4 => {
                    if let Some(cause) = &mut entity.cause {
                        let gone = cause.exceptions.len().saturating_sub(1);
                        let dropped: Vec<SegmentId> = cause
                            .exceptions
                            .drain(1.min(cause.exceptions.len())..)
                            .map(|e| e.id)
                            .collect();
                        // A cause among those dropped (its own source) goes;
                        // one below (the same error passed up) stays.
                        for ex in &mut cause.exceptions {
                            if ex.cause.is_some_and(|c| dropped.contains(&c)) {
                                ex.cause = None;
                            }
                        }
                        exceptions_dropped += gone as u64;
                        self.counts.exceptions_dropped += gone as u64;
                    }
                }
                _ => {
                    if let Some(cause) = entity.cause.take() {
                        let gone = cause.exceptions.len() as u64;
                        exceptions_dropped += gone;
                        self.counts.exceptions_dropped += gone;
                    }
                    entity.aws = Default::default();
                    for (key, _) in &entity.annotations.0 {
                        if annotations_dropped.len() < MAX_NAMED_DROPS {
                            annotations_dropped.push(MetaValue::Str(Cow::Owned(key.to_string())));
                        }
                    }
                    self.refund_annotations(entity.annotations.0.len());
                    entity.annotations.0.clear();
                }
            }
            mark(
                &mut entity,
                &metadata_dropped,
                &annotations_dropped,
                exceptions_dropped,
            );
            json.clear();
            crate::json::write_entity(&mut json, &entity);
            steps += 1;
        }
        self.recycle(scratch);
        // Events trimmed away are counted with those past the bound.
        self.counts.events_dropped +=
            events_before.saturating_sub(event_count(&entity.metadata)) as u64;
        // The exceptions trimmed away are no ancestor's cause: the ids
        // would name an exception in no document.
        // (Sets: a span folding many others can hold tens of thousands.)
        let kept: std::collections::HashSet<SegmentId> = entity
            .cause
            .iter()
            .flat_map(|c| c.exceptions.iter().map(|e| e.id))
            .collect();
        let gone: std::collections::HashSet<SegmentId> = exceptions_before
            .into_iter()
            .filter(|id| !kept.contains(id))
            .collect();
        if !gone.is_empty() {
            self.exceptions.retain(|(_, id, _)| !gone.contains(id));
        }
        json
    }

    /// The document of a subsegment that is only a name, times and fields
    /// without a convention, sent as recorded (see
    /// [`crate::json::write_plain_subsegment`]), or `None` when the span
    /// needs the full path (a field to scrub among them).
    fn plain_subsegment(&mut self, node: &SpanData, id: SegmentId) -> Option<String> {
        let options = &self.cfg.fields;
        if !options.indexed.is_empty()
            || options.index_all
            || is_interceptor_span(node)
            || !node.errors().is_empty()
            || node.errors_dropped() > 0
            || !node.events().is_empty()
            || node.events_dropped() > 0
            || !node.precursors().is_empty()
            || node.fields.iter().any(|(k, _)| may_have_meaning(k))
        {
            return None;
        }
        let fields: &[_] = if options.other_fields_as_metadata {
            &node.fields
        } else {
            &[]
        };
        // A credential's value, a URL's user info: scrubbed on the full path.
        if !fields
            .iter()
            .all(|(k, v)| crate::fields::sent_as_recorded(k, v))
        {
            return None;
        }
        let (start, end) = times(node);
        let mut json = self.buffer();
        crate::json::write_plain_subsegment(
            &mut json,
            &sanitize_name(node.meta.name(), "span"),
            id,
            start,
            end,
            fields,
        );
        Some(json)
    }

    fn entity<'a>(
        &mut self,
        node: &'a SpanData,
        id: SegmentId,
        merged: &[&'a SpanData],
        is_segment: bool,
    ) -> Entity<'a>
    where
        'c: 'a,
    {
        let cfg: &'a Config = self.cfg;
        let (start, end) = times(node);
        let mut entity = Entity {
            id: Some(id),
            start_time: start,
            end_time: Some(end),
            ..Default::default()
        };
        let mut conv = Conventions::default();
        conv.name_kept_elsewhere = self.packing_root_call;
        route(
            node,
            &mut entity,
            is_segment,
            &mut self.budget,
            &cfg.fields,
            &mut conv,
        );
        let mut attempts = 0u64;
        for m in merged {
            if is_interceptor_span(m) {
                route(
                    m,
                    &mut entity,
                    is_segment,
                    &mut self.budget,
                    &cfg.fields,
                    &mut conv,
                );
            } else if m.meta.name() == "try_attempt" {
                attempts += 1;
            }
        }
        let errors = || {
            std::iter::once(node)
                .chain(merged.iter().copied())
                .flat_map(|n| n.errors().iter())
        };
        let mut errors_dropped: u32 = std::iter::once(node)
            .chain(merged.iter().copied())
            .map(|n| n.errors_dropped())
            .fold(0, u32::saturating_add);
        let has_errors = errors().next().is_some();
        let errored = conventions::Errored {
            any: has_errors,
            classified: errors().any(|e| {
                e.target
                    .as_deref()
                    .is_some_and(|t| t.starts_with(TOWER_HTTP_FAILURE_TARGET))
            }),
        };
        let applied = conv.apply(&mut entity, is_segment, &cfg.fields, errored);
        entity.precursor_ids.extend_from_slice(node.precursors());
        let attempts = attempts.max(self.kept_attempts);
        if attempts > 1 && entity.aws.retries.is_none() {
            entity.aws.retries = Some(attempts - 1);
        }
        if is_segment {
            if entity.user.is_none() {
                entity.user = self.user_below.clone().map(Cow::Owned);
            }
            // Sanitized once, when the layer was built.
            entity.name = Cow::Borrowed(&cfg.service_name);
            entity.trace_id = Some(self.trace_id);
            entity.parent_id = node.parent_id;
            entity.service = Some(&cfg.service);
            if let Some(resource) = cfg.resource.get() {
                entity.origin = resource.origin();
                let fields = resource.aws_fields();
                if !fields.is_empty() {
                    entity.aws.resource = Some(fields);
                }
                // The span's own (`cloud.account.id`) wins: one key.
                if entity.aws.account_id.is_none() {
                    entity.aws.account_id = resource.account_id().map(Cow::Borrowed);
                }
            }
            entity.aws.xray = Some(XrayInfo {
                sdk: "tracing-xray",
                sdk_version: env!("CARGO_PKG_VERSION"),
                // A sampler's own rule names have no bound of their own.
                sampling_rule_name: node
                    .rule_name()
                    .map(|r| truncate_chars(r, MAX_STRING_CHARS)),
            });
            // The root span's own name is kept beside its fields.
            let span_name = applied
                .name
                .clone()
                .unwrap_or(Cow::Borrowed(node.meta.name()));
            crate::fields::put_own(&mut entity, "span_name", MetaValue::Str(span_name));
        } else {
            entity.name = match &applied.name {
                Some(Cow::Borrowed(n)) => sanitize_name(n, "span"),
                Some(Cow::Owned(n)) => Cow::Owned(sanitize_name(n, "span").into_owned()),
                None => sanitize_name(node.meta.name(), "span"),
            };
        }
        if !node.events().is_empty() {
            crate::events::render(node, &mut entity, &self.cfg.fields);
        }
        // Those of the spans folded in too (their events are never sent, but
        // the ones past their bound were no more recorded), as their dropped
        // exceptions are.
        let events_dropped: u64 = std::iter::once(node)
            .chain(merged.iter().copied())
            .map(|n| u64::from(n.events_dropped()))
            .sum();
        if events_dropped > 0 {
            // Said on the span itself.
            self.counts.events_dropped += events_dropped;
            entity.metadata.put(
                Cow::Borrowed(CRATE_NAMESPACE),
                Cow::Borrowed("events_dropped"),
                MetaValue::U64(events_dropped),
            );
        }
        if has_errors {
            let mut cause = Cause::default();
            // Of each exception's message as recorded (see
            // `link_to_descendants`).
            let mut hashes = Vec::new();
            for record in errors() {
                hashes.push((message_hash(&record.message), record.at));
                // An error value of a field named as a credential (`password
                // = &e as &dyn Error`): its text is the field's value.
                let secret = record.field.is_some_and(conventions::is_credential_field);
                let outer = Exception {
                    id: SegmentId::new(),
                    message: Some(exception_message(&record.message, secret)),
                    kind: Some(Cow::Borrowed(truncate_chars(
                        record.field.unwrap_or("error"),
                        MAX_STRING_CHARS,
                    ))),
                    remote: applied.remote,
                    stack: record
                        .location
                        .as_ref()
                        .map(|(path, line)| {
                            vec![StackFrame {
                                path: Some(truncate_chars_cow(
                                    relative_path(path),
                                    MAX_STRING_CHARS,
                                )),
                                line: Some(*line),
                                // A `log` record's target, forwarded by
                                // tracing-log, is any text.
                                label: record
                                    .target
                                    .as_deref()
                                    .map(|t| truncate_chars(t, MAX_STRING_CHARS)),
                            }]
                        })
                        .unwrap_or_default(),
                    ..Default::default()
                };
                cause.exceptions.push(outer);
                // The source() chain: each exception names its cause.
                for source in &record.sources {
                    let id = SegmentId::new();
                    if let Some(prev) = cause.exceptions.last_mut() {
                        prev.cause = Some(id);
                    }
                    hashes.push((message_hash(source), record.at));
                    cause.exceptions.push(Exception {
                        id,
                        message: Some(exception_message(source, secret)),
                        kind: Some(Cow::Borrowed("source")),
                        remote: applied.remote,
                        ..Default::default()
                    });
                }
                if record.sources_skipped > 0 {
                    // The causes of the last source, left out.
                    if let Some(last) = cause.exceptions.last_mut() {
                        last.skipped = Some(record.sources_skipped);
                    }
                }
            }
            // An exception's text recorded as a field (`exception.message`:
            // a web framework's root span) beside the errors recorded as
            // events or values (the handler's): not lost, nor repeated.
            // The type and the message of the span's fields, when they name
            // no exception here, stay metadata.
            let mut type_used = false;
            if let (true, Some(message)) = (applied.exception_text, &applied.error_message) {
                type_used = true;
                let message = truncate_chars(message, MAX_EXCEPTION_MESSAGE_CHARS);
                let repeated = match cause
                    .exceptions
                    .iter_mut()
                    .find(|e| e.message.as_deref() == Some(message))
                {
                    Some(same) => {
                        // The same error: the type, when the fields give
                        // one, is its own (an event's exception is typed
                        // only by where it came from).
                        if let Some(kind) = &applied.error_type {
                            same.kind = Some(kind.clone());
                        }
                        true
                    }
                    None => false,
                };
                if !repeated && node.errors().len() >= MAX_ERRORS_PER_SPAN {
                    // The span's own bound (the spans folded into it keep
                    // theirs) holds for it too: counted as dropped.
                    errors_dropped = errors_dropped.saturating_add(1);
                } else if !repeated {
                    // A field's text: as of when it was recorded after the
                    // span began, else of the span's end.
                    hashes.push((
                        message_hash(applied.error_message_recorded.unwrap_or(message)),
                        field_message_at(node, merged, applied.error_message_key),
                    ));
                    cause.exceptions.push(Exception {
                        id: SegmentId::new(),
                        kind: applied.error_type.clone(),
                        message: Some(Cow::Owned(message.to_owned())),
                        remote: applied.remote,
                        ..Default::default()
                    });
                }
            }
            if cfg.fields.other_fields_as_metadata {
                let unused_type = applied.error_type.filter(|_| !type_used);
                if let (Some(kind), Some(key)) = (unused_type, applied.error_type_key) {
                    entity.metadata.put(
                        Cow::Borrowed(TRACING_NAMESPACE),
                        Cow::Borrowed(key),
                        MetaValue::Str(kind),
                    );
                }
                let unused_message = applied.error_message.clone().filter(|_| !type_used);
                if let (Some(message), Some(key)) = (unused_message, applied.error_message_key) {
                    entity.metadata.put(
                        Cow::Borrowed(TRACING_NAMESPACE),
                        Cow::Borrowed(key),
                        MetaValue::Str(message),
                    );
                }
            }
            self.link_to_descendants(&mut cause, &hashes);
            if errors_dropped > 0 {
                // Counted, and said on the span itself, in metadata: an
                // exception's `skipped` means exceptions left out of its
                // own cause chain, which these are not.
                self.counts.exceptions_dropped += u64::from(errors_dropped);
                entity.metadata.put(
                    Cow::Borrowed(CRATE_NAMESPACE),
                    Cow::Borrowed("exceptions_dropped"),
                    MetaValue::U64(u64::from(errors_dropped)),
                );
            }
            entity.cause = Some(cause);
        } else if applied.error_type.is_some() || applied.error_message.is_some() {
            let mut cause = Cause {
                exceptions: vec![Exception {
                    id: SegmentId::new(),
                    kind: applied.error_type,
                    message: applied.error_message.map(|m| match m {
                        Cow::Borrowed(m) => {
                            Cow::Borrowed(truncate_chars(m, MAX_EXCEPTION_MESSAGE_CHARS))
                        }
                        Cow::Owned(m) => {
                            Cow::Owned(truncate_chars(&m, MAX_EXCEPTION_MESSAGE_CHARS).to_owned())
                        }
                    }),
                    remote: applied.remote,
                    ..Default::default()
                }],
                ..Default::default()
            };
            // Linked like any exception with a message: an error passed up
            // names it.
            if let Some(recorded) = applied.error_message_recorded {
                let at = field_message_at(node, merged, applied.error_message_key);
                self.link_to_descendants(&mut cause, &[(message_hash(recorded), at)]);
            }
            entity.cause = Some(cause);
        }
        entity
    }
}

/// An error value's exception message: [`exception_text`], or `[redacted]`
/// for the value of a field named as a credential (`secret`).
fn exception_message(text: &str, secret: bool) -> Cow<'_, str> {
    if secret {
        Cow::Borrowed(conventions::REDACTED)
    } else {
        exception_text(text)
    }
}

/// An exception's message as sent: without a URL's user info, query or
/// fragment (an error's text often quotes the URL it failed on), and cut to
/// X-Ray's length.
fn exception_text(text: &str) -> Cow<'_, str> {
    match conventions::without_secrets(text) {
        Cow::Borrowed(t) => Cow::Borrowed(truncate_chars(t, MAX_EXCEPTION_MESSAGE_CHARS)),
        Cow::Owned(t) => Cow::Owned(truncate_chars(&t, MAX_EXCEPTION_MESSAGE_CHARS).to_owned()),
    }
}

/// When field `key`, the one giving a span's exception its text
/// (`exception.message`, ..., of the span or of an interceptor's span folded
/// into it: the spans whose fields are read), was given it: after that span
/// began (`Span::record`), then; given as it began, as of its end.
fn field_message_at(node: &SpanData, merged: &[&SpanData], key: Option<&str>) -> Instant {
    let holder = key
        .and_then(|key| {
            std::iter::once(node)
                .chain(merged.iter().copied().filter(|m| is_interceptor_span(m)))
                .rev()
                .find(|span| span.fields.iter().any(|(k, _)| *k == key))
        })
        .unwrap_or(node);
    key.and_then(|key| holder.text_recorded_at(key))
        .or(holder.end)
        .unwrap_or(holder.start)
}

/// A hash of an exception's message, to find the same error lower down;
/// of a message already `[redacted]` (a credential's error, logged in an
/// event), one of its own: two such errors are not taken for one.
fn message_hash(message: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    if message == conventions::REDACTED {
        return crate::id::next_u64();
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut h);
    h.finish()
}

/// A span's start and end times (the end never before the start).
fn times(node: &SpanData) -> (EpochSeconds, EpochSeconds) {
    let start = node.anchor.micros(node.start);
    let end = node.end.map_or(start, |e| node.anchor.micros(e)).max(start);
    (
        EpochSeconds::from_micros(start),
        EpochSeconds::from_micros(end),
    )
}

/// The spans folded into span `node` of `forest`: below an AWS SDK
/// operation, every descendant (or, when internals are kept, only the
/// interceptor's spans not under another operation).
fn merged_spans<'a>(forest: Forest<'a>, node: usize, keep_internals: bool) -> Vec<&'a SpanData> {
    let below = forest.children(node);
    if below.is_empty() || !is_aws_operation(forest.span(node)) {
        return Vec::new();
    }
    let inside_interceptor = is_interceptor_span(forest.span(node));
    let mut out = Vec::new();
    let mut stack: Vec<usize> = below.to_vec();
    while let Some(i) = stack.pop() {
        let n = forest.span(i);
        if !keep_internals {
            // A call made inside this one is a subsegment of its own.
            if !is_own_call(n, inside_interceptor) {
                out.push(n);
                stack.extend_from_slice(forest.children(i));
            }
        } else if is_interceptor_span(n) {
            out.push(n);
            // What runs inside it is visited by `pack` (see
            // `children_past_interceptors`).
            stack.extend_from_slice(forest.children(i));
        } else if !is_aws_operation(n) {
            stack.extend_from_slice(forest.children(i));
        }
    }
    // Close order, as the spans would have appeared.
    out.sort_by_key(|n| n.start);
    out
}

/// The SDK's `try_attempt` spans below AWS SDK operation `node` of
/// `forest`, not below another operation (a call made inside this one).
fn attempts_below(forest: Forest<'_>, node: usize) -> u64 {
    let mut attempts = 0;
    let mut stack: Vec<usize> = forest.children(node).to_vec();
    while let Some(i) = stack.pop() {
        let n = forest.span(i);
        if n.meta.name() == "try_attempt" {
            attempts += 1;
        } else if !is_aws_operation(n) {
            stack.extend_from_slice(forest.children(i));
        }
    }
    attempts
}

/// The spans below `node` of `forest` that `pick` takes, descending past
/// those it does not (and not below those it takes), in the order they
/// started.
fn first_below(forest: Forest<'_>, node: usize, pick: impl Fn(&SpanData) -> bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack: Vec<usize> = forest.children(node).to_vec();
    while let Some(i) = stack.pop() {
        if pick(forest.span(i)) {
            out.push(i);
        } else {
            stack.extend_from_slice(forest.children(i));
        }
    }
    out.sort_by_key(|&i| forest.span(i).start);
    out
}

/// The calls made inside AWS operation `op` of `forest`, subsegments of
/// their own instead of folded into it (see [`is_own_call`]).
fn nested_calls(forest: Forest<'_>, op: usize) -> Vec<usize> {
    let inside_interceptor = is_interceptor_span(forest.span(op));
    first_below(forest, op, |n| is_own_call(n, inside_interceptor))
}

/// The children of span `node` of `forest` (inside an AWS operation, its
/// internal spans kept), an interceptor's span replaced by its own
/// children: merged into the operation it reports on, it is no subsegment
/// they could go under.
fn children_past_interceptors(forest: Forest<'_>, node: usize) -> Vec<usize> {
    first_below(forest, node, |n| !is_interceptor_span(n))
}

/// Whether span `n`, below an AWS operation (the interceptor's span when
/// `inside_interceptor`), is a call of its own rather than a part of it:
/// another operation (the credentials provider's STS call inside a
/// DynamoDB call's attempt), or, below the interceptor's span, another
/// interceptor span (a nested call the interceptor alone traces). The
/// interceptor's span below the SDK's operation span reports on that
/// operation: it is merged into it.
fn is_own_call(n: &SpanData, inside_interceptor: bool) -> bool {
    is_aws_operation(n) && (inside_interceptor || !is_interceptor_span(n))
}

/// Whether span `node` of `forest`, an AWS SDK operation (see
/// [`is_aws_operation`]), was run to presign a request (S3's
/// `presigned()`): it signs a request that someone else sends later, and
/// calls nothing. It has no subsegment, and no trace header was added (as
/// the official SDKs: Node's creates no subsegment for a presign, Python's
/// traces only the calls it sends). The interceptor's span says so, the
/// operation's own or the one merged into it.
fn is_presign(forest: Forest<'_>, node: usize) -> bool {
    let presigned = |n: &SpanData| {
        is_interceptor_span(n)
            && n.fields
                .iter()
                .any(|(k, v)| *k == PRESIGNED_FIELD && matches!(v, FieldValue::Bool(true)))
    };
    let span = forest.span(node);
    if is_interceptor_span(span) {
        return presigned(span);
    }
    // The interceptor's span of this operation: the first below it, not
    // inside another operation.
    let mut stack: Vec<usize> = forest.children(node).to_vec();
    while let Some(i) = stack.pop() {
        let n = forest.span(i);
        if is_aws_operation(n) {
            if presigned(n) {
                return true;
            }
        } else {
            stack.extend_from_slice(forest.children(i));
        }
    }
    false
}

/// An AWS SDK operation span: `{Service}.{Operation}` with
/// `rpc.system = "aws-api"`, the older `invoke` span of
/// `aws-smithy-runtime`, or the interceptor's own span.
pub(crate) fn is_aws_operation(node: &SpanData) -> bool {
    if is_interceptor_span(node) {
        return true;
    }
    let invoke =
        node.meta.name() == "invoke" && node.meta.target().starts_with("aws_smithy_runtime");
    node.fields.iter().any(|(k, v)| match *k {
        "rpc.system" => matches!(v, FieldValue::Str(s) if s.eq_ignore_ascii_case("aws-api")),
        "xray.namespace" => matches!(v, FieldValue::Str(s) if s.as_str() == "aws"),
        "rpc.service" | "service" => invoke,
        _ => false,
    })
}

/// The segment of this service around a client call with no traced parent
/// (see [`Assembler::pack`]): the call's times, trace, upstream parent and
/// sampling rule, a fresh id, and of its fields only the user (a segment's
/// field, which the call names) and the name it was given.
fn caller_segment(call: &SpanData) -> SpanData {
    let mut segment = SpanData::new(call.trace_id, call.anchor, call.start, call.meta);
    // The user (a segment's field), and the name the span was given, which
    // the segment keeps as its span's (`span_name`): the call's own
    // subsegment is named after the service it calls.
    for (key, value) in &call.fields {
        if matches!(*key, "enduser.id" | "xray.user" | "xray.name" | "otel.name") {
            segment.fields.push((key, value.clone()));
        }
    }
    segment.end = call.end;
    segment.parent_id = call.parent_id;
    segment.decision = call.decision;
    if let Some(rule) = call.rule_name() {
        segment.rare_mut().rule_name = Some(rule.clone());
    }
    segment
}

/// A span opened by the AWS SDK interceptor (feature `aws-sdk`).
pub(crate) fn is_interceptor_span(node: &SpanData) -> bool {
    node.meta.target() == AWS_SDK_TARGET
}

/// Stack frame paths are relative (SPEC §1.6): `file!()` is already relative
/// for the application's own crate; a dependency's absolute path under
/// cargo's registry or git checkouts keeps `crate-x.y.z/src/...`.
fn relative_path(path: &str) -> Cow<'_, str> {
    // A drive (`C:\`, `C:/`) or a share (`\\server\share`).
    let drive = path.len() > 2
        && path.as_bytes()[0].is_ascii_alphabetic()
        && path.as_bytes()[1] == b':'
        && matches!(path.as_bytes()[2], b'\\' | b'/');
    let windows = drive || path.starts_with("\\\\");
    if !path.starts_with('/') && !windows {
        return Cow::Borrowed(path);
    }
    if windows {
        // The same markers, in `/` form.
        return Cow::Owned(relative_unix_path(&path.replace('\\', "/")).to_owned());
    }
    Cow::Borrowed(relative_unix_path(path))
}

/// [`relative_path`] of an absolute path written with `/`: from the crate's
/// directory for a dependency, from `src/` for the application, else its
/// file name (a directory may be a home directory, named after its user).
fn relative_unix_path(path: &str) -> &str {
    for marker in ["/registry/src/", "/git/checkouts/"] {
        if let Some(i) = path.find(marker) {
            let rest = &path[i + marker.len()..];
            // Skip the index (or repository) directory.
            return rest.split_once('/').map_or(rest, |(_, r)| r);
        }
    }
    if let Some((_, r)) = path.rsplit_once("/src/") {
        return &path[path.len() - r.len() - "src/".len()..];
    }
    path.rsplit_once('/').map_or(path, |(_, file)| file)
}

#[cfg(test)]
mod path_tests {
    use super::relative_path;

    #[test]
    fn stack_paths_are_relative() {
        assert_eq!(relative_path("src/main.rs"), "src/main.rs");
        assert_eq!(
            relative_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tower-http-0.6.6/src/trace/on_failure.rs"
            ),
            "tower-http-0.6.6/src/trace/on_failure.rs"
        );
        assert_eq!(
            relative_path("/root/.cargo/git/checkouts/foo-1234/abcdef/src/lib.rs"),
            "abcdef/src/lib.rs"
        );
        assert_eq!(
            relative_path("/home/me/app/src/handler.rs"),
            "src/handler.rs"
        );
        assert_eq!(relative_path("/weird"), "weird");
        assert_eq!(
            relative_path("/home/alice/shared/tests/support.rs"),
            "support.rs"
        );
        assert_eq!(relative_path("/home/alice/report.rs"), "report.rs");
        assert_eq!(relative_path("C:/Users/alice/app/lib.rs"), "lib.rs");
        assert_eq!(relative_path("C:/Users/alice/app/src/lib.rs"), "src/lib.rs");
        assert_eq!(
            relative_path(
                r"C:\Users\alice\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\tower-http-0.6.6\src\trace\on_failure.rs"
            ),
            "tower-http-0.6.6/src/trace/on_failure.rs"
        );
        assert_eq!(
            relative_path(r"C:\Users\alice\app\src\main.rs"),
            "src/main.rs"
        );
        assert_eq!(relative_path(r"C:\x.rs"), "x.rs");
        assert_eq!(relative_path(r"\\server\share\app\lib.rs"), "lib.rs");
    }
}

#[cfg(test)]
mod plain_path_tests {
    use super::*;
    use crate::span_data::FieldStr;
    use proptest::prelude::*;
    use tracing_core::{Level, Metadata, callsite::Callsite, metadata::Kind, subscriber::Interest};

    struct NoCallsite;
    impl Callsite for NoCallsite {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &NAMES[0]
        }
    }
    static CALLSITE: NoCallsite = NoCallsite;

    macro_rules! metas {
        ($($name:expr),* $(,)?) => {
            [$(tracing_core::metadata! {
                name: $name,
                target: "app",
                level: Level::INFO,
                fields: &[],
                callsite: &CALLSITE,
                kind: Kind::SPAN,
            }),*]
        };
    }

    /// Span names the sanitizer keeps, changes, or cuts.
    static NAMES: [Metadata<'static>; 6] = metas![
        "query",
        "GET /orders/{id}",
        "bad<name>\"quoted\"\n",
        "ünïcødé ✓ 名前",
        "",
        "a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-a-very-long-name-end",
    ];

    /// Field names without a convention (some repeated on purpose).
    const KEYS: &[&str] = &[
        "i",
        "table",
        "ratio",
        "rows",
        "key \"q\"\\",
        "ключ",
        "\u{1}ctl",
        "t",
        "i",
        "ratio",
        // Credentials' names: sent `[redacted]`, by the full path.
        "password",
        "api_key",
    ];

    /// Texts the scrubbing changes: sent by the full path.
    const SECRET_TEXTS: &[&str] = &[
        "https://user:pw@host/p",
        "https://host/p?token=t",
        "{\"authorization\": \"Bearer t\"}",
        "Authorization: Basic dXNlcjpwdw==",
        "postgres://app:pw@db/orders",
    ];

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<i64>().prop_map(FieldValue::I64),
            any::<u64>().prop_map(FieldValue::U64),
            any::<i128>().prop_map(|v| FieldValue::I128(Box::new(v))),
            any::<u128>().prop_map(|v| FieldValue::U128(Box::new(v))),
            any::<f64>().prop_map(FieldValue::F64),
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0)
            ]
            .prop_map(FieldValue::F64),
            any::<bool>().prop_map(FieldValue::Bool),
            ".{0,40}".prop_map(|s| FieldValue::Str(FieldStr::new(&s))),
            "[\"\\\\\u{0}-\u{1f}a-z]{0,8}".prop_map(|s| FieldValue::Str(FieldStr::new(&s))),
            proptest::sample::select(SECRET_TEXTS).prop_map(|s| FieldValue::Str(FieldStr::new(s))),
        ]
    }

    fn config(other_fields_as_metadata: bool) -> Config {
        Config {
            service_name: "svc".into(),
            service: Default::default(),
            streaming_threshold: 100,
            fields: crate::fields::FieldOptions {
                other_fields_as_metadata,
                ..Default::default()
            },
            resource: Default::default(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The plain path writes the very bytes of the full path (entity,
        /// then `write_entity`) for every span it takes, and leaves only
        /// spans with a field to scrub to it.
        #[test]
        fn plain_subsegments_match_the_full_path(
            name in 0..NAMES.len(),
            fields in proptest::collection::vec((0..KEYS.len(), value()), 0..8),
            start in 0u64..5_000_000_000_000_000,
            length in 0u64..100_000_000,
            ends in any::<bool>(),
            as_metadata in any::<bool>(),
        ) {
            let cfg = config(as_metadata);
            let mut node = SpanData::for_tests();
            node.meta = &NAMES[name];
            node.anchor.wall_micros = start;
            node.start = node.anchor.at + std::time::Duration::from_micros(length / 3);
            node.end = ends.then(|| node.anchor.at + std::time::Duration::from_micros(length));
            for (k, v) in fields {
                node.fields.push((KEYS[k], v));
            }
            let mut asm = Assembler::new(&cfg, node.trace_id, Vec::new());
            let plain = asm.plain_subsegment(&node, node.id);
            let to_scrub = as_metadata
                && node
                    .fields
                    .iter()
                    .any(|(k, v)| !crate::fields::sent_as_recorded(k, v));
            prop_assert_eq!(plain.is_none(), to_scrub, "a plain span takes the plain path");
            let entity = asm.entity(&node, node.id, &[], false);
            let mut full = String::new();
            crate::json::write_entity(&mut full, &entity);
            for secret in [":pw@", "token=t", "Bearer t", "dXNlcjpwdw"] {
                prop_assert!(!full.contains(secret), "{} in {}", secret, full);
            }
            if let Some(plain) = plain {
                prop_assert_eq!(plain, full);
            }
        }
    }

    /// Keys of the fields of a span too big for a document: metadata,
    /// annotations (some sanitized alike), plain fields.
    const BIG_KEYS: &[&str] = &[
        "metadata.a",
        "metadata.ns.b",
        "metadata.ns.c",
        "annotation.x",
        "annotation.y-1",
        "annotation.y_1",
        "plain",
        "other \"q\"",
        "http.url",
    ];

    fn big_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<u64>().prop_map(FieldValue::U64),
            (0usize..40_000, "[a-z\"\u{1}é]")
                .prop_map(|(n, c)| FieldValue::Str(FieldStr::new(&c.repeat(n)))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Trimming always brings a span under the limit, drops only what
        /// it names (as long as it names all it drops), and what it keeps
        /// is still valid JSON.
        #[test]
        fn a_trimmed_span_fits_and_names_what_it_dropped(
            fields in proptest::collection::vec((0..BIG_KEYS.len(), big_value()), 0..12),
            errors in proptest::collection::vec("[a-z]{0,3000}", 0..4),
            is_segment in any::<bool>(),
        ) {
            let cfg = config(true);
            let mut node = SpanData::for_tests();
            for (k, v) in fields {
                node.fields.push((BIG_KEYS[k], v));
            }
            for message in errors {
                node.push_error(crate::span_data::ErrorRecord {
                    field: None,
                    message,
                    sources: vec!["s".repeat(500)],
                    sources_skipped: 0,
                    location: Some((Cow::Borrowed("src/x.rs"), 1)),
                    target: None,
                    at: crate::clock::Instant::now(),
                });
            }
            let mut asm = Assembler::new(&cfg, node.trace_id, Vec::new());
            let json = asm.serialize_node(&node, node.id, &[], is_segment, MAX_DOCUMENT_BYTES);
            prop_assert!(json.len() <= MAX_DOCUMENT_BYTES, "{} bytes", json.len());
            let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
            let mark = &doc["metadata"]["tracing_xray"];
            if let Some(names) = mark["metadata_dropped"].as_array() {
                prop_assert_eq!(mark["trimmed"].as_bool(), Some(true));
                for name in names {
                    let (ns, key) = name.as_str().unwrap().split_once('.').unwrap();
                    prop_assert!(doc["metadata"][ns].get(key).is_none(), "{} kept", name);
                }
            }
            if let Some(names) = mark["annotations_dropped"].as_array() {
                for name in names {
                    prop_assert!(doc["annotations"].get(name.as_str().unwrap()).is_none());
                }
            }
        }
    }

    #[test]
    fn spans_with_conventions_errors_or_events_take_the_full_path() {
        let cfg = config(true);
        let mut asm = Assembler::new(&cfg, crate::TraceId::new(), Vec::new());
        let with = |f: &dyn Fn(&mut SpanData)| {
            let mut node = SpanData::for_tests();
            node.fields.push(("rows", FieldValue::U64(1)));
            f(&mut node);
            node
        };
        for key in [
            "http.method",
            "annotation.k",
            "metadata.k",
            "error",
            "otel.name",
            "xray.name",
            "db.system",
        ] {
            let node = with(&|n| n.fields.push((key, FieldValue::Bool(true))));
            assert!(asm.plain_subsegment(&node, node.id).is_none(), "{key}");
        }
        let node = with(&|n| {
            n.push_error(crate::span_data::ErrorRecord {
                field: None,
                message: "boom".into(),
                sources: Vec::new(),
                sources_skipped: 0,
                location: None,
                target: None,
                at: crate::clock::Instant::now(),
            })
        });
        assert!(asm.plain_subsegment(&node, node.id).is_none());
        let indexed = Config {
            fields: crate::fields::FieldOptions {
                indexed: std::sync::Arc::new(["rows".into()]),
                ..Default::default()
            },
            ..config(true)
        };
        let mut asm = Assembler::new(&indexed, crate::TraceId::new(), Vec::new());
        let node = with(&|_| {});
        assert!(asm.plain_subsegment(&node, node.id).is_none());
    }
}
