//! The background worker: one named std thread that owns the exporter.
//!
//! The application side only ever does a `try_send` of a finished span tree.
//! Here the trees become documents ([`crate::assemble`]) and go to the
//! exporter in batches. Flush and shutdown requests travel through the same
//! FIFO queue, so a flush reply proves that everything queued before it was
//! handed to the exporter.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::assemble::{Assembler, CarriedException, Top};
use crate::config::Config;
use crate::export::{Document, ExportError, ExportOutcome, Exporter};
use crate::fields::user_below_segment;
use crate::forest::Rebuild;
use crate::handle::Counters;
use crate::id::{SegmentId, TraceId};
use crate::layer::SuppressGuard;
use crate::recycle::RecycleTx;
use crate::span_list::SpanList;

/// How many documents one `export` call gets at most.
const MAX_BATCH_DOCUMENTS: usize = 256;
/// How many bytes of documents one `export` call gets at most (a document
/// past it still goes, in the batch it completes). The documents of a batch
/// are freed together once exported: past glibc's trim threshold (128 KiB),
/// freeing that much at once shrinks the worker's heap, and the next batch
/// grows it again, a page fault per 4 KiB page (72k page faults for 200k
/// 10-child traces in the benchmarks, against 1.3–2.9k with this bound).
/// Below it, the batches reuse the same memory.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// The exporter's shutdown timeout when the queue closes without a shutdown
/// request (every layer and handle dropped).
const IMPLICIT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a list of spans handed to [`Worker::pack`] is of its trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parts {
    /// The root and what it held (`parts_follow`: sealed, more to come).
    Root { parts_follow: bool },
    /// Finished spans of a trace whose root is open, or sent already.
    Detached,
}

pub(crate) enum Message {
    /// A finished trace: its spans in close order, the root last. With
    /// `parts_follow`, a root sent before its span closed (sealed): spans of
    /// the trace ending later follow as `Detached`, within one annotation
    /// budget.
    Trace {
        spans: SpanList,
        top: Top,
        parts_follow: bool,
    },
    /// Finished spans of a trace still open (a long-lived root, or a Lambda
    /// invocation): each subtree whose parent is not among them leaves as an
    /// independent subsegment of that parent.
    Detached { spans: SpanList },
    /// The open root of a trace sent in parts closed (a segment sent with
    /// its response, a Lambda invocation): none of its parts follows, what
    /// the worker keeps for them goes. Not a trace: never counted.
    Ended { trace_id: TraceId, root: SegmentId },
    /// Replied to with whether the exporter settled every document it was
    /// handed (an HTTP exporter whose API did not answer in time holds some).
    Flush {
        reply: Sender<bool>,
        deadline: Instant,
    },
    Shutdown {
        reply: Sender<bool>,
        deadline: Instant,
    },
}

impl Message {
    pub(crate) fn span_count(&self) -> usize {
        match self {
            Message::Trace { spans, .. } | Message::Detached { spans } => spans.len(),
            _ => 0,
        }
    }

    /// About how much memory its spans hold, their lists' spare room
    /// included (the queue's bound in bytes; see [`SpanList::memory`]).
    pub(crate) fn span_bytes(&self) -> usize {
        match self {
            Message::Trace { spans, .. } | Message::Detached { spans } => spans.memory(),
            _ => 0,
        }
    }
}

/// How long the worker waits, once it has emptied the queue, before it
/// blocks on it again. While it waits it is not parked on the queue, so the
/// application threads' sends wake nobody: a root's close is a few atomic
/// operations instead of a futex call into the kernel (measured on the
/// 2-core VM, with a request every 20 to 100 µs: 10 to 17 µs of the
/// application thread per request without this wait, 5 to 10 µs with it),
/// and the worker takes traces in batches. `flush` and `shutdown` unpark the
/// worker, so they are answered at once; traces are exported at most 1 ms
/// later; the queue (4,096 traces by default) holds far more than a thread
/// finishes in that time.
const LINGER: Duration = Duration::from_millis(1);

/// Traces sent in parts whose annotation counts the worker remembers at
/// once (24 bytes each, and the map's room); past it, one trace's count is
/// forgotten for each new one. An entry goes when its trace's root closes
/// ([`Message::Ended`]) or arrives.
const MAX_PARTED_TRACES: usize = 16 * 1024;

/// Open traces sent in parts whose users and waiting exceptions the worker
/// remembers at once (a user's text and up to [`MAX_CARRIED_EXCEPTIONS`]
/// exceptions each); past it, one trace's are forgotten for each new one.
const MAX_WAITING_TRACES: usize = 1024;

/// Exceptions of subtrees sent early that one span waits for, at most
/// (a span keeps 8 exceptions of its own).
const MAX_CARRIED_EXCEPTIONS: usize = 64;

/// Keeps in `users` the user a part of a trace sent before its root ended
/// names (see [`user_below_segment`]), for the root's segment: the first
/// part's that names one.
fn remember_user_below(users: &mut HashMap<(TraceId, SegmentId), String>, spans: &SpanList) {
    // A Lambda invocation's parts: its segment is Lambda's, never packed here.
    let Some(key) = spans.root.map(|root| (spans.get(0).trace_id, root)) else {
        return;
    };
    if users.contains_key(&key) || spans.iter().any(|s| s.ancestry.parent_is_facade()) {
        return;
    }
    if let Some(user) = user_below_segment(spans.iter()) {
        // Bounded: forgetting costs a segment its user, never memory.
        make_room(users, MAX_WAITING_TRACES);
        users.insert(key, user);
    }
}

/// Makes room in `map` for one more entry, at most `bound` in all: past it,
/// one entry (any) is forgotten. Only one: the others are of traces still
/// open, whose later parts need them.
fn make_room<K: Copy + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, bound: usize) {
    if map.len() >= bound {
        if let Some(key) = map.keys().next().copied() {
            map.remove(&key);
        }
    }
}

pub(crate) fn spawn(
    cfg: Arc<Config>,
    exporter: Box<dyn Exporter>,
    rx: Receiver<Message>,
    recycle: RecycleTx,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tracing-xray".into())
        .spawn(move || Worker::new(cfg, exporter, rx, recycle, counters).run())
}

struct Worker {
    cfg: Arc<Config>,
    exporter: Box<dyn Exporter>,
    rx: Receiver<Message>,
    recycle: RecycleTx,
    /// JSON buffers reused from trace to trace.
    spare_json: Vec<String>,
    rebuild: Rebuild,
    counters: Arc<Counters>,
    /// Bytes of the queued spans handled so far (see [`Message::span_bytes`]).
    bytes_done: u64,
    warned_drop: AtomicBool,
    warned_failure: bool,
    warned_next_poll: bool,
    warned_pack: bool,
    /// Annotations already indexed by the parts sent of traces still open
    /// (see [`Worker::pack`]), at most [`MAX_PARTED_TRACES`] of them.
    annotations_used: HashMap<TraceId, usize>,
    /// The user named below the segment by parts of traces sent while
    /// their roots were open, until the root arrives, at most
    /// [`MAX_WAITING_TRACES`] of them.
    users_below: HashMap<(TraceId, SegmentId), String>,
    /// The exceptions of subtrees sent in parts while an ancestor was open,
    /// by that ancestor (the subtree's parent), until it is packed: it
    /// names them as its exceptions' causes. Bounded as `users_below`.
    exceptions_below: HashMap<(TraceId, SegmentId), Vec<CarriedException>>,
    /// Documents handed to [`Exporter::export`], ever.
    ///
    /// With `settled`, what a panicking exporter loses: an exporter reports
    /// each document it was handed once, delivered or failed, in the outcome
    /// of `export` or of a later `poll`, `flush` or `shutdown` (it may hold
    /// documents in between). `handed - settled` are the documents it holds,
    /// unreported. When any of its calls panics, those are counted as failed
    /// and settled: the documents of the batch being exported, and any it
    /// held. Should an exporter that survived its panic report some of them
    /// later anyway, they are counted twice (the loss is never hidden); and
    /// `settled` never passes `handed`, so that such late reports cannot
    /// hide documents handed over since.
    handed: u64,
    /// Documents the exporter reported (delivered or failed) or that were
    /// written off when it panicked; at most `handed`.
    settled: u64,
}

enum Control {
    Flush(Sender<bool>, Instant),
    Shutdown(Sender<bool>, Instant),
}

impl Worker {
    fn new(
        cfg: Arc<Config>,
        exporter: Box<dyn Exporter>,
        rx: Receiver<Message>,
        recycle: RecycleTx,
        counters: Arc<Counters>,
    ) -> Self {
        Worker {
            cfg,
            exporter,
            rx,
            recycle,
            spare_json: Vec::new(),
            rebuild: Rebuild::default(),
            counters,
            bytes_done: 0,
            warned_drop: AtomicBool::new(false),
            warned_failure: false,
            warned_next_poll: false,
            warned_pack: false,
            annotations_used: HashMap::new(),
            users_below: HashMap::new(),
            exceptions_below: HashMap::new(),
            handed: 0,
            settled: 0,
        }
    }

    // Never inlined into the thread's closure: `scripts/bench-instructions`
    // counts the worker's instructions by this function's name.
    #[inline(never)]
    fn run(mut self) {
        // Nothing this thread does (our own diagnostics, the exporter's
        // sockets and clients and their `tracing` events) is traced by us.
        let _suppress = SuppressGuard::enter();
        crate::handle::mark_worker_thread(&self.counters);
        loop {
            let first = match self.next_poll() {
                Some(at) => match self.rx.recv_deadline(at) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.call("poll", |e| e.poll(Instant::now()));
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut batch = Vec::new();
            let mut control = self.handle(first, &mut batch);
            let mut bytes = batch.iter().map(Document::len).sum::<usize>();
            let mut drained = false;
            while control.is_none() && batch.len() < MAX_BATCH_DOCUMENTS && bytes < MAX_BATCH_BYTES
            {
                let before = batch.len();
                match self.rx.try_recv() {
                    Ok(m) => {
                        control = self.handle(m, &mut batch);
                        bytes += batch[before..].iter().map(Document::len).sum::<usize>();
                    }
                    Err(_) => {
                        drained = true;
                        break;
                    }
                }
            }
            // The batch's spans are serialized and their lists handed back:
            // their bytes leave the queue's bound before the export, which
            // may take seconds (an HTTP exporter retrying).
            self.publish_bytes_done();
            if !batch.is_empty() {
                self.handed += batch.len() as u64;
                self.call("export", move |e| e.export(batch));
            }
            self.warn_drops();
            match control {
                // Let traces gather instead of being woken for each one.
                None if drained => std::thread::park_timeout(LINGER),
                None => {}
                Some(Control::Flush(reply, deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.call("flush", |e| e.flush(left));
                    // What the exporter still holds goes on in the
                    // background, but the flush did not finish.
                    let _ = reply.send(self.handed == self.settled);
                }
                Some(Control::Shutdown(reply, deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.call("shutdown", |e| e.shutdown(left));
                    let settled = self.write_off_held();
                    // Closed before the reply: once `shutdown` returns, what
                    // finishes is counted dropped by the layer, and what
                    // reached the queue meanwhile by the handle.
                    self.close_queue();
                    self.report_at_shutdown();
                    let _ = reply.send(settled);
                    return;
                }
            }
        }
        self.call("shutdown", |e| e.shutdown(IMPLICIT_SHUTDOWN_TIMEOUT));
        self.write_off_held();
        self.report_at_shutdown();
    }

    /// After the exporter's `shutdown`: the documents it was handed and never
    /// reported (a batch it still held when its API stopped answering) go
    /// with it, counted as failed. Whether there were none.
    fn write_off_held(&mut self) -> bool {
        let lost = self.handed - self.settled;
        if lost == 0 {
            return true;
        }
        self.settled = self.handed;
        Counters::add(&self.counters.documents_failed, lost);
        tracing::warn!(
            target: "tracing_xray",
            lost,
            "the exporter shut down holding documents it never reported; counted as failed"
        );
        false
    }

    fn handle(&mut self, msg: Message, batch: &mut Vec<Document>) -> Option<Control> {
        self.bytes_done += msg.span_bytes() as u64;
        match msg {
            Message::Trace {
                spans,
                top,
                parts_follow,
            } => {
                self.pack_guarded(spans, top, Parts::Root { parts_follow }, batch);
                None
            }
            Message::Detached { spans } => {
                // The tops of a detached batch all leave as independent
                // subsegments (`top` only applies to a span without parent).
                self.pack_guarded(spans, Top::Segment, Parts::Detached, batch);
                None
            }
            Message::Ended { trace_id, root } => {
                self.forget_parts(trace_id, root);
                None
            }
            Message::Flush { reply, deadline } => Some(Control::Flush(reply, deadline)),
            Message::Shutdown { reply, deadline } => Some(Control::Shutdown(reply, deadline)),
        }
    }

    /// Forgets what the parts of a trace whose root closed left for parts
    /// that will not come (see [`Message::Ended`]).
    fn forget_parts(&mut self, trace_id: TraceId, root: SegmentId) {
        if !self.annotations_used.is_empty() {
            self.annotations_used.remove(&trace_id);
        }
        if !self.users_below.is_empty() {
            self.users_below.remove(&(trace_id, root));
        }
        if !self.exceptions_below.is_empty() {
            self.exceptions_below.retain(|(t, _), _| *t != trace_id);
        }
    }

    /// [`Worker::pack`], kept from taking the worker down: were packing ever
    /// to panic (a bug), that trace's spans are dropped and counted, logged
    /// once, and the worker goes on.
    fn pack_guarded(&mut self, spans: SpanList, top: Top, parts: Parts, batch: &mut Vec<Document>) {
        let count = spans.len() as u64;
        let packed = catch_unwind(AssertUnwindSafe(|| self.pack(spans, top, parts, batch)));
        // Here, not in `pack`: a huge trace frees the scratch space it grew
        // even when packing it panicked.
        self.rebuild.trim();
        if let Err(payload) = packed {
            crate::panics::discard(payload);
            self.counters.queued_trace_dropped(count);
            if !self.warned_pack {
                self.warned_pack = true;
                tracing::error!(
                    target: "tracing_xray",
                    "tracing-xray failed to serialize a trace (a bug: please report it); \
                     it is dropped and counted, and the worker goes on"
                );
            }
        }
    }

    /// Rebuilds the trees of a flat list of finished spans, packs them into
    /// documents, and recycles the emptied buffer for the application.
    ///
    /// A trace sent in parts (`detached`: a long-lived root streaming what it
    /// holds, Lambda's subsegments) keeps one annotation budget across them:
    /// the count so far waits in `annotations_used` until the root arrives.
    fn pack(&mut self, spans: SpanList, top: Top, parts: Parts, batch: &mut Vec<Document>) {
        if spans.is_empty() {
            return;
        }
        let detached = parts == Parts::Detached;
        // Parts before or after this one keep the trace's annotation count.
        let budget_goes_on = detached || parts == (Parts::Root { parts_follow: true });
        let trace_id = spans.get(0).trace_id;
        let forest = self.rebuild.forest(&spans);
        #[cfg(test)]
        if tests::PANIC_IN_PACK.with(std::cell::Cell::get) {
            panic!("injected by a test");
        }
        let spare = std::mem::take(&mut self.spare_json);
        let mut asm = Assembler::new(&self.cfg, trace_id, spare);
        let earlier = if self.annotations_used.is_empty() {
            None
        } else if budget_goes_on {
            self.annotations_used.get(&trace_id).copied()
        } else {
            self.annotations_used.remove(&trace_id)
        };
        asm.set_annotations_used(earlier.unwrap_or(0));
        if detached {
            asm.hold_for_root(usize::from(spans.root_annotations));
            remember_user_below(&mut self.users_below, &spans);
        } else {
            // The root closes last: the list's last span.
            let root = spans.get(spans.len() - 1);
            let earlier = if self.users_below.is_empty() || root.parent_seg.is_some() {
                None
            } else {
                self.users_below.remove(&(trace_id, root.id))
            };
            asm.set_user_below(earlier.or_else(|| user_below_segment(spans.iter())));
        }
        if !self.exceptions_below.is_empty() {
            // Spans of this list below which earlier parts were sent.
            let carried = spans
                .iter()
                .filter_map(|s| {
                    self.exceptions_below
                        .remove(&(trace_id, s.id))
                        .map(|e| (s.id, e))
                })
                .flat_map(|(id, exceptions)| exceptions.into_iter().map(move |e| (id, e)))
                .collect();
            asm.carry_exceptions(carried);
        }
        let tops = forest.tops();
        for &node in tops {
            let node_top = match forest.span(node).parent_seg {
                Some(parent) => Top::Subsegment { parent },
                None => top,
            };
            asm.pack(forest, node, node_top);
            // A subtree sent before its parent (a part of a long-lived
            // root, or of a segment sent with its response while work it
            // spawned goes on): its exceptions wait for the parent. Not for
            // a parent already sent (the segment sent with its response),
            // nor a Lambda function's segment (Lambda's).
            let top_span = forest.span(node);
            let parent_sent = |parent| {
                top_span.ancestry.parent_is_facade()
                    || (spans.root_sent && spans.root == Some(parent))
            };
            if let Some(parent) = top_span.parent_seg.filter(|&p| !parent_sent(p)) {
                let exceptions = asm.top_exceptions();
                if !exceptions.is_empty() {
                    if !self.exceptions_below.contains_key(&(trace_id, parent)) {
                        // Bounded: forgetting costs a cause link, never memory.
                        make_room(&mut self.exceptions_below, MAX_WAITING_TRACES);
                    }
                    let waiting = self.exceptions_below.entry((trace_id, parent)).or_default();
                    let room = MAX_CARRIED_EXCEPTIONS.saturating_sub(waiting.len());
                    waiting.extend(exceptions.iter().take(room).copied());
                }
            }
        }
        if detached {
            // One independent document per top (`streamed_subsegments`
            // counts those the assembler splits off below them).
            Counters::add(&self.counters.subsegments_streamed, tops.len() as u64);
        }
        if budget_goes_on && asm.annotations_used() > 0 {
            if !self.annotations_used.contains_key(&trace_id) {
                // Bounded: forgetting means a later part of that trace may
                // index up to 50 annotations again, never that memory grows.
                make_room(&mut self.annotations_used, MAX_PARTED_TRACES);
            }
            self.annotations_used
                .insert(trace_id, asm.annotations_used());
        }
        self.spare_json = finish(&self.counters, asm, batch);
        self.recycle.buffer(spans);
    }

    /// Runs an exporter call and counts its outcome. A panicking exporter
    /// loses the documents it had not reported yet (counted as failed: see
    /// [`Worker::handed`]), never the worker.
    fn call(&mut self, method: &'static str, f: impl FnOnce(&mut dyn Exporter) -> ExportOutcome) {
        let exporter = &mut *self.exporter;
        match catch_unwind(AssertUnwindSafe(|| f(exporter))) {
            // The outcome's errors are the exporter's too: their `Display`
            // (logged) or `Drop` may panic here, outside its call. Counted
            // before either runs; the worker goes on.
            Ok(outcome) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.account(outcome))) {
                    crate::panics::discard(payload);
                }
            }
            Err(payload) => {
                crate::panics::discard(payload);
                let lost = self.handed - self.settled;
                self.settled = self.handed;
                Counters::add(&self.counters.documents_failed, lost);
                tracing::error!(
                    target: "tracing_xray",
                    method,
                    lost,
                    "the exporter panicked; the documents it had not reported are counted as failed"
                );
            }
        }
    }

    /// The exporter's [`Exporter::next_poll`]; a panic there counts as `None`
    /// (no timer), and is logged the first time only: it is asked at every
    /// turn of the loop.
    fn next_poll(&mut self) -> Option<Instant> {
        let exporter = &*self.exporter;
        match catch_unwind(AssertUnwindSafe(|| exporter.next_poll())) {
            Ok(at) => at,
            Err(payload) => {
                crate::panics::discard(payload);
                if !self.warned_next_poll {
                    self.warned_next_poll = true;
                    tracing::error!(
                        target: "tracing_xray",
                        "the exporter panicked in next_poll; taken as no timer \
                         (further panics there are not logged)"
                    );
                }
                None
            }
        }
    }

    fn account(&mut self, outcome: ExportOutcome) {
        let c = &self.counters;
        let failed = outcome.failures.len() as u64;
        Counters::add(&c.documents_exported, outcome.delivered as u64);
        Counters::add(&c.documents_failed, failed);
        // Never past `handed`: reports for documents already written off
        // must not hide documents handed over since.
        let reported = (outcome.delivered as u64).saturating_add(failed);
        self.settled = self.settled.saturating_add(reported).min(self.handed);
        if let Some(first) = outcome.failures.first() {
            if !self.warned_failure {
                self.warned_failure = true;
                warn_failure(&first.error);
            }
        }
        // One at a time: an error whose `Drop` panics would otherwise panic
        // again while the rest are dropped, and abort the process.
        for failure in outcome.failures {
            crate::panics::drop_contained(failure);
        }
    }

    /// Moves the traces queued behind a shutdown request (they finished
    /// after it) from `traces_queued` to `traces_dropped`, and answers the
    /// flushes queued there: their reply channel closes, so they return
    /// [`crate::FlushError::AlreadyShutdown`] as soon as the exporter's
    /// shutdown is over, without waiting out their timeout.
    fn discard_queued(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            if let Message::Trace { .. } | Message::Detached { .. } = msg {
                self.counters.queued_trace_dropped(msg.span_count() as u64);
                self.bytes_done += msg.span_bytes() as u64;
            }
        }
        self.publish_bytes_done();
    }

    /// Tells the application threads how many queued bytes the worker is
    /// done with: once per batch, not per trace, so that their sends
    /// rarely have to read this cache line back.
    fn publish_bytes_done(&self) {
        self.counters
            .bytes_done
            .store(self.bytes_done, Ordering::Relaxed);
    }

    /// Closes the queue after a shutdown, so that traces finished from now
    /// on are counted as dropped by the layer (it sees
    /// [`Counters::queue_closed`] and does not send them): what was queued
    /// until now is counted here, and what reaches the queue as it closes
    /// by the handle ([`crate::handle::Shared::count_left_in_queue`]).
    fn close_queue(&mut self) {
        self.counters.queue_closed.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.discard_queued();
        drop(std::mem::replace(&mut self.rx, crossbeam_channel::never()));
    }

    fn warn_drops(&self) {
        let dropped = self.counters.traces_dropped.load(Ordering::Relaxed);
        if dropped > 0 && !self.warned_drop.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "tracing_xray",
                dropped,
                "the tracing-xray queue was full: finished traces are being dropped \
                 (see XrayHandle::stats; raise Builder::with_queue_capacity, or \
                 Builder::with_max_queued_bytes for traces with large fields)"
            );
        }
    }

    fn report_at_shutdown(&self) {
        let s = self.counters.snapshot();
        if s.traces_dropped > 0 || s.documents_failed > 0 {
            tracing::warn!(
                target: "tracing_xray",
                traces_dropped = s.traces_dropped,
                spans_dropped = s.spans_dropped,
                documents_failed = s.documents_failed,
                documents_exported = s.documents_exported,
                "tracing-xray shut down with losses"
            );
        }
    }
}

/// However the worker ends (a shutdown, its layer and handles all dropped,
/// a panic), the layer stops queueing traces nobody would take.
impl Drop for Worker {
    fn drop(&mut self) {
        self.counters.queue_closed.store(true, Ordering::SeqCst);
    }
}

/// Counts what the assembler did, queues its documents, and returns its
/// spare JSON buffers.
fn finish(c: &Counters, asm: Assembler<'_>, batch: &mut Vec<Document>) -> Vec<String> {
    Counters::add(&c.subsegments_streamed, asm.counts.streamed_subsegments);
    Counters::add(&c.spans_trimmed, asm.counts.trimmed_spans);
    Counters::add(&c.annotations_demoted, asm.counts.annotations_demoted);
    Counters::add(&c.exceptions_dropped, asm.counts.exceptions_dropped);
    Counters::add(&c.events_dropped, asm.counts.events_dropped);
    batch.extend(asm.out);
    asm.spare
}

fn warn_failure(error: &ExportError) {
    // Rendered here, cut and with a panic contained, rather than by whatever
    // layer formats the event: the error may wrap the exporter's own.
    let error = catch_unwind(AssertUnwindSafe(|| crate::span_data::display_string(error)))
        .unwrap_or_else(|payload| {
            crate::panics::discard(payload);
            "(an error whose Display panicked)".to_owned()
        });
    tracing::warn!(
        target: "tracing_xray",
        %error,
        "tracing-xray could not export a document (further failures are only counted)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Makes [`Worker::pack`] panic on this thread.
        pub(super) static PANIC_IN_PACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A worker with a no-op exporter, driven by hand through `handle` (its
    /// queue and recycling channel are dropped: nothing comes or goes back).
    fn test_worker(counters: Arc<Counters>) -> Worker {
        let (_tx, rx) = crossbeam_channel::bounded(1);
        worker_with(Box::new(crate::export::NoopExporter), rx, counters)
    }

    /// A worker exporting with `exporter`, reading its queue from `rx`.
    fn worker_with(
        exporter: Box<dyn Exporter>,
        rx: Receiver<Message>,
        counters: Arc<Counters>,
    ) -> Worker {
        let (recycle, _recycle_rx) = crate::recycle::channel();
        Worker::new(
            Arc::new(Config {
                service_name: "svc".into(),
                service: Default::default(),
                streaming_threshold: 100,
                fields: Default::default(),
                resource: Default::default(),
            }),
            exporter,
            rx,
            recycle,
            counters,
        )
    }

    /// The bytes of the traces a batch was made of leave the queue's bound
    /// before the batch is exported, however long the export takes.
    #[test]
    fn queued_bytes_are_done_before_the_export() {
        struct DoneAtExport(Arc<Counters>, Arc<std::sync::Mutex<Vec<u64>>>);
        impl Exporter for DoneAtExport {
            fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
                let done = self.0.bytes_done.load(Ordering::Relaxed);
                self.1.lock().unwrap().push(done);
                ExportOutcome::delivered(batch.len())
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(4);
        let spans: SpanList = std::iter::once(crate::span_data::SpanData::for_tests()).collect();
        let bytes = spans.memory() as u64;
        assert!(bytes > 0);
        let top = Top::Segment;
        tx.send(Message::Trace {
            spans,
            top,
            parts_follow: false,
        })
        .unwrap();
        let (reply, done) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        tx.send(Message::Shutdown { reply, deadline }).unwrap();
        let counters = Arc::new(Counters::default());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let exporter = Box::new(DoneAtExport(counters.clone(), seen.clone()));
        worker_with(exporter, rx, counters).run();
        done.recv().unwrap();
        assert_eq!(*seen.lock().unwrap(), [bytes]);
    }

    /// A burst of big traces leaves in several `export` calls, each under
    /// `MAX_BATCH_BYTES` but for the one document that crosses it, and
    /// every document leaves.
    #[test]
    fn a_burst_of_big_traces_is_exported_in_batches_bounded_in_bytes() {
        /// Each batch's bytes, and the largest document seen.
        #[derive(Default)]
        struct Seen {
            batches: Vec<usize>,
            largest: usize,
        }
        struct BatchBytes(Arc<std::sync::Mutex<Seen>>);
        impl Exporter for BatchBytes {
            fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
                let mut seen = self.0.lock().unwrap();
                seen.batches.push(batch.iter().map(Document::len).sum());
                let largest = batch.iter().map(Document::len).max().unwrap_or(0);
                seen.largest = seen.largest.max(largest);
                ExportOutcome::delivered(batch.len())
            }
        }
        const TRACES: usize = 200;
        let (tx, rx) = crossbeam_channel::bounded(TRACES + 1);
        for _ in 0..TRACES {
            let mut span = crate::span_data::SpanData::for_tests();
            let note = crate::span_data::FieldStr::new(&"x".repeat(2000));
            span.fields
                .push(("note", crate::span_data::FieldValue::Str(note)));
            let spans = std::iter::once(span).collect();
            let top = Top::Segment;
            tx.send(Message::Trace {
                spans,
                top,
                parts_follow: false,
            })
            .unwrap();
        }
        let (reply, done) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        tx.send(Message::Shutdown { reply, deadline }).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let counters = Arc::new(Counters::default());
        let exporter = Box::new(BatchBytes(seen.clone()));
        // Everything is queued before the worker starts: it drains the
        // queue in as few calls as its bounds allow, then shuts down.
        worker_with(exporter, rx, counters.clone()).run();
        done.recv().unwrap();
        let seen = seen.lock().unwrap();
        let (batches, one_document) = (&seen.batches, seen.largest);
        assert!(one_document > 2_000, "{one_document}");
        assert!(batches.len() > 1, "{batches:?}");
        // Every batch but the last is filled up to the bound, and past it
        // by less than one document.
        let (last, full) = batches.split_last().unwrap();
        assert!(
            full.iter()
                .all(|&b| (MAX_BATCH_BYTES..MAX_BATCH_BYTES + one_document).contains(&b)),
            "{batches:?}"
        );
        assert!(*last < MAX_BATCH_BYTES + one_document, "{batches:?}");
        assert_eq!(
            counters.documents_exported.load(Ordering::Relaxed),
            TRACES as u64
        );
    }

    #[test]
    fn a_panic_while_packing_drops_that_trace_only() {
        let counters = Arc::new(Counters::default());
        let mut worker = test_worker(counters.clone());
        let trace = || Message::Trace {
            spans: [crate::span_data::SpanData::for_tests()]
                .into_iter()
                .collect(),
            top: Top::Segment,
            parts_follow: false,
        };
        let mut batch = Vec::new();
        PANIC_IN_PACK.with(|p| p.set(true));
        assert!(worker.handle(trace(), &mut batch).is_none());
        PANIC_IN_PACK.with(|p| p.set(false));
        assert!(batch.is_empty());
        let stats = counters.snapshot();
        assert_eq!((stats.traces_dropped, stats.spans_dropped), (1, 1));
        // The worker goes on.
        worker.handle(trace(), &mut batch);
        assert_eq!(batch.len(), 1);
    }

    /// A part of a trace sent while its root is open: one finished child,
    /// with `field`, under a fresh root (a Lambda facade's, with `facade`).
    fn part(field: (&'static str, crate::span_data::FieldValue), facade: bool) -> SpanList {
        let mut span = crate::span_data::SpanData::for_tests();
        span.parent_seg = Some(crate::id::SegmentId::new());
        span.ancestry = crate::span_data::Ancestry::new(facade, false);
        span.fields.push(field);
        let mut spans: SpanList = std::iter::once(span).collect();
        spans.root = Some(crate::id::SegmentId::new());
        spans
    }

    /// Hands `count` parts made by `make` to a worker; the most entries
    /// `memo` (one of its per-trace memos) held meanwhile.
    fn most_remembered(
        count: usize,
        make: impl Fn() -> SpanList,
        memo: impl Fn(&Worker) -> usize,
    ) -> usize {
        let mut worker = test_worker(Arc::new(Counters::default()));
        let mut most = 0;
        for _ in 0..count {
            let mut batch = Vec::new();
            worker.handle(Message::Detached { spans: make() }, &mut batch);
            assert_eq!(batch.len(), 1);
            most = most.max(memo(&worker));
        }
        most
    }

    /// The parts of traces whose root never arrives (Lambda invocations,
    /// roots that never close, roots dropped on a full queue) leave their
    /// annotation counts behind: the memo of them stays bounded.
    #[test]
    fn annotation_counts_of_parted_traces_stay_bounded() {
        let most = most_remembered(
            3 * MAX_PARTED_TRACES,
            || {
                part(
                    ("annotation.k", crate::span_data::FieldValue::U64(1)),
                    false,
                )
            },
            |w| w.annotations_used.len(),
        );
        assert!(most > 0, "the counts are remembered");
        assert!(most <= MAX_PARTED_TRACES, "{most}");
    }

    /// The same for the users parts of open traces name; a Lambda
    /// invocation's parts (whose segment is Lambda's) leave none.
    /// The same for the exceptions parts of open traces wait with for
    /// their parent; a Lambda invocation's parts leave none.
    #[test]
    fn exceptions_of_parted_traces_stay_bounded() {
        let failed = |facade| {
            part(
                (
                    "exception.message",
                    crate::span_data::FieldValue::Str(crate::span_data::FieldStr::new("boom")),
                ),
                facade,
            )
        };
        let most = most_remembered(
            3 * MAX_WAITING_TRACES,
            || failed(false),
            |w| w.exceptions_below.len(),
        );
        assert!(most > 0, "the exceptions are remembered");
        assert!(most <= MAX_WAITING_TRACES, "{most}");
        assert_eq!(
            most_remembered(1, || failed(true), |w| w.exceptions_below.len()),
            0,
            "a Lambda part keeps no exception"
        );
    }

    #[test]
    fn users_named_by_parted_traces_stay_bounded() {
        let alice = |facade| {
            part(
                (
                    "enduser.id",
                    crate::span_data::FieldValue::Str(crate::span_data::FieldStr::new("alice")),
                ),
                facade,
            )
        };
        let most = most_remembered(
            3 * MAX_WAITING_TRACES,
            || alice(false),
            |w| w.users_below.len(),
        );
        assert!(most > 0, "the users are remembered");
        assert!(most <= MAX_WAITING_TRACES, "{most}");

        assert_eq!(
            most_remembered(1, || alice(true), |w| w.users_below.len()),
            0,
            "a Lambda part keeps no user"
        );
    }

    /// A part with an annotation, a user and an exception: it leaves an
    /// entry in each of the worker's memos of open traces.
    fn part_leaving_all(root: crate::id::SegmentId) -> SpanList {
        use crate::span_data::{FieldStr, FieldValue};
        let mut spans = part(("annotation.k", FieldValue::U64(1)), false);
        spans.root = Some(root);
        let mut span = crate::span_data::SpanData::for_tests();
        span.trace_id = spans.get(0).trace_id;
        span.parent_seg = Some(crate::id::SegmentId::new());
        span.fields = vec![
            ("enduser.id", FieldValue::Str(FieldStr::new("alice"))),
            ("exception.message", FieldValue::Str(FieldStr::new("boom"))),
        ]
        .into_iter()
        .collect();
        spans.push(span);
        spans
    }

    /// A trace's root closing ([`Message::Ended`]) takes what its parts
    /// left for later ones: none will come. Another trace's stay.
    #[test]
    fn an_ended_trace_leaves_nothing_behind() {
        let mut worker = test_worker(Arc::new(Counters::default()));
        let (ended_root, open_root) = (crate::id::SegmentId::new(), crate::id::SegmentId::new());
        let ended = part_leaving_all(ended_root);
        let ended_trace = ended.get(0).trace_id;
        let mut batch = Vec::new();
        worker.handle(Message::Detached { spans: ended }, &mut batch);
        worker.handle(
            Message::Detached {
                spans: part_leaving_all(open_root),
            },
            &mut batch,
        );
        let sizes = |w: &Worker| {
            (
                w.annotations_used.len(),
                w.users_below.len(),
                w.exceptions_below.len(),
            )
        };
        assert_eq!(sizes(&worker), (2, 2, 2));
        worker.handle(
            Message::Ended {
                trace_id: ended_trace,
                root: ended_root,
            },
            &mut batch,
        );
        assert_eq!(sizes(&worker), (1, 1, 1));
        assert!(!worker.annotations_used.contains_key(&ended_trace));
    }

    /// Past its bound, a memo forgets one entry for each new one, not all:
    /// the others are of traces still open.
    #[test]
    fn a_full_memo_forgets_one_entry_at_a_time() {
        let mut map: HashMap<u32, ()> = (0..4).map(|k| (k, ())).collect();
        make_room(&mut map, 4);
        assert_eq!(map.len(), 3);
        make_room(&mut map, 4);
        assert_eq!(map.len(), 3, "room already");
    }

    /// A huge trace frees the worker's scratch space even when packing it
    /// panics.
    #[test]
    fn a_huge_trace_that_fails_to_pack_does_not_pin_the_scratch_space() {
        let mut worker = test_worker(Arc::new(Counters::default()));
        let spans = (0..5000)
            .map(|_| crate::span_data::SpanData::for_tests())
            .collect();
        let mut batch = Vec::new();
        PANIC_IN_PACK.with(|p| p.set(true));
        let control = worker.handle(
            Message::Trace {
                spans,
                top: Top::Segment,
                parts_follow: false,
            },
            &mut batch,
        );
        PANIC_IN_PACK.with(|p| p.set(false));
        assert!(control.is_none());
        assert!(batch.is_empty(), "packing panicked: nothing packed");
        assert_eq!(worker.rebuild.scratch_capacity(), 0);
    }
}
