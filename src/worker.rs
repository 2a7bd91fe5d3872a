//! The background worker: one named std thread that owns the exporter.
//!
//! The application side only ever does a `try_send` of a finished span tree.
//! Here the trees become documents ([`crate::assemble`]) and go to the
//! exporter in batches. Flush and shutdown requests travel through the same
//! FIFO queue, so a flush reply proves that everything queued before it was
//! handed to the exporter.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::assemble::{Assembler, Top};
use crate::config::Config;
use crate::export::{Document, ExportError, ExportOutcome, Exporter};
use crate::fields::user_below_segment;
use crate::forest::Rebuild;
use crate::handle::Counters;
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

/// Exceptions of subtrees sent early that one span waits for, at most
/// (a span keeps 8 exceptions of its own).
const MAX_CARRIED_EXCEPTIONS: usize = 64;

/// Spans of one trace whose subtrees' exceptions wait for them, at most
/// (see [`PartedState::exceptions_below`](crate::span_data::PartedState)).
const MAX_WAITING_PARENTS: usize = 1024;

/// Keeps the user a part of a trace sent before its root ended names (see
/// [`user_below_segment`]) for the root's segment: the first part's that
/// names one.
fn remember_user_below(user: &mut Option<String>, spans: &SpanList) {
    // A Lambda invocation's parts: its segment is Lambda's, never packed here.
    if user.is_some() || spans.iter().any(|s| s.ancestry.parent_is_facade()) {
        return;
    }
    *user = user_below_segment(spans.iter());
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
        .spawn(move || {
            // Before the worker is made: it, its exporter among them, is
            // dropped inside `run`, after `run`'s own guard has ended (a
            // function's parameters drop after its locals), and an
            // exporter's `Drop` (a client closing its connections) may open
            // spans too.
            let _suppress = SuppressGuard::enter();
            Worker::new(cfg, exporter, rx, recycle, counters).run();
        })
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
    /// Documents the exporter reported failed with [`ExportError::OutOfTime`]
    /// (given up for lack of time), ever: one its `flush` or `shutdown`
    /// reports so makes that flush or shutdown a timeout, although it is
    /// settled.
    out_of_time: u64,
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
            handed: 0,
            settled: 0,
            out_of_time: 0,
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
            // Spans are placed on the wall clock at the span clock's rate
            // as measured so far (see `clock`).
            crate::clock::begin_batch();
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
            // A poll that is due is not put off by traces that keep coming
            // (above, a queue never empty would never let the wait time out).
            if let Some(at) = self.next_poll() {
                let now = Instant::now();
                if now >= at {
                    self.call("poll", |e| e.poll(now));
                }
            }
            self.warn_drops();
            match control {
                // Let traces gather instead of being woken for each one.
                None if drained => std::thread::park_timeout(LINGER),
                None => {}
                Some(Control::Flush(reply, deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let out_of_time = self.out_of_time;
                    self.call("flush", |e| e.flush(left));
                    // What the exporter still holds goes on in the
                    // background, but the flush did not finish; nor did it
                    // when the exporter gave up on documents for lack of
                    // time.
                    let _ =
                        reply.send(self.handed == self.settled && self.out_of_time == out_of_time);
                }
                Some(Control::Shutdown(reply, deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let out_of_time = self.out_of_time;
                    // Documents lost by a panic in `shutdown` were held by
                    // it too.
                    let lost = self.call("shutdown", |e| e.shutdown(left));
                    // Documents the exporter gave up on for lack of time
                    // (`HttpExporter`'s backlog when the API never
                    // answered) are counted failed, and the shutdown did not
                    // finish.
                    let settled =
                        self.write_off_held() && lost == 0 && self.out_of_time == out_of_time;
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
            Message::Flush { reply, deadline } => Some(Control::Flush(reply, deadline)),
            Message::Shutdown { reply, deadline } => Some(Control::Shutdown(reply, deadline)),
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
    /// holds, Lambda's subsegments, the spans of a segment sent with its
    /// response) keeps one annotation budget across them: the count so far
    /// waits in its [`Parted`](crate::span_data::Parted) until the root
    /// arrives, as do the user and the exceptions its parts leave.
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
        // What the trace's earlier parts left (none for most traces).
        let mut parted = spans
            .parted
            .as_deref()
            .map(|p| p.0.lock().unwrap_or_else(PoisonError::into_inner));
        asm.set_annotations_used(parted.as_ref().map_or(0, |p| p.annotations_used));
        if detached {
            // Places for the root's annotations, until its segment has
            // left (its own part counted them then).
            if !spans.root_sent {
                asm.hold_for_root(usize::from(spans.root_annotations));
            }
            if let Some(p) = parted.as_deref_mut() {
                remember_user_below(&mut p.user_below, &spans);
            }
        } else {
            // The root closes last: the list's last span.
            let root = spans.get(spans.len() - 1);
            let earlier = parted
                .as_deref_mut()
                .filter(|_| root.parent_seg.is_none())
                .and_then(|p| p.user_below.take());
            asm.set_user_below(earlier.or_else(|| user_below_segment(spans.iter())));
        }
        if let Some(p) = parted.as_deref_mut() {
            if !p.exceptions_below.is_empty() {
                // Spans of this list below which earlier parts were sent.
                let carried = spans
                    .iter()
                    .filter_map(|s| p.exceptions_below.remove(&s.id).map(|e| (s.id, e)))
                    .flat_map(|(id, exceptions)| exceptions.into_iter().map(move |e| (id, e)))
                    .collect();
                asm.carry_exceptions(carried);
            }
        }
        let tops = forest.tops();
        // Independent subsegment documents: every top but a segment (a
        // subtree whose parent was sent before, or is still open; a Lambda
        // function's root). `streamed_subsegments` counts those the
        // assembler splits off below them.
        let mut independent = 0;
        for &node in tops {
            let node_top = match forest.span(node).parent_seg {
                Some(parent) => Top::Subsegment { parent },
                None => top,
            };
            if matches!(node_top, Top::Subsegment { .. }) {
                independent += 1;
            }
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
            let (Some(parent), Some(p)) = (
                top_span.parent_seg.filter(|&p| !parent_sent(p)),
                parted.as_deref_mut(),
            ) else {
                continue;
            };
            let exceptions = asm.top_exceptions();
            if !exceptions.is_empty() {
                if p.exceptions_below.len() >= MAX_WAITING_PARENTS
                    && !p.exceptions_below.contains_key(&parent)
                {
                    // A parent whose own part was dropped (a full queue)
                    // never takes its entry: bounded, forgetting one costs
                    // a cause link, never memory.
                    if let Some(any) = p.exceptions_below.keys().next().copied() {
                        p.exceptions_below.remove(&any);
                    }
                }
                let waiting = p.exceptions_below.entry(parent).or_default();
                // The latest kept: a top's own exceptions, which its parent
                // names, come after those below it.
                waiting.extend(exceptions.iter().copied());
                if waiting.len() > MAX_CARRIED_EXCEPTIONS {
                    waiting.drain(..waiting.len() - MAX_CARRIED_EXCEPTIONS);
                }
            }
        }
        if independent > 0 {
            Counters::add(&self.counters.subsegments_streamed, independent as u64);
        }
        if let Some(p) = parted.as_deref_mut().filter(|_| budget_goes_on) {
            p.annotations_used = asm.annotations_used();
        }
        drop(parted);
        self.spare_json = finish(&self.counters, asm, batch);
        self.recycle.buffer(spans);
    }

    /// Runs an exporter call and counts its outcome. A panicking exporter
    /// loses the documents it had not reported yet (counted as failed: see
    /// [`Worker::handed`]), never the worker.
    /// How many documents a panic lost (0 without one).
    fn call(
        &mut self,
        method: &'static str,
        f: impl FnOnce(&mut dyn Exporter) -> ExportOutcome,
    ) -> u64 {
        let exporter = &mut *self.exporter;
        match catch_unwind(AssertUnwindSafe(|| f(exporter))) {
            // The outcome's errors are the exporter's too: their `Display`
            // (logged) or `Drop` may panic here, outside its call. Counted
            // before either runs; the worker goes on.
            Ok(outcome) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.account(outcome))) {
                    crate::panics::discard(payload);
                }
                0
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
                lost
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
        let out_of_time = outcome
            .failures
            .iter()
            .filter(|f| matches!(f.error, ExportError::OutOfTime(_)))
            .count();
        self.out_of_time = self.out_of_time.saturating_add(out_of_time as u64);
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
    use crate::id::SegmentId;

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

    /// A part of a trace sent while its root `root` is open, with the
    /// trace's `parted`: one finished child of the root with `fields` (a
    /// Lambda facade's child, with `facade`).
    fn part(
        parted: &Arc<crate::span_data::Parted>,
        root: SegmentId,
        fields: Vec<(&'static str, crate::span_data::FieldValue)>,
        facade: bool,
    ) -> SpanList {
        let mut span = crate::span_data::SpanData::for_tests();
        span.parent_seg = Some(root);
        span.ancestry = crate::span_data::Ancestry::new(facade, false);
        span.fields = fields.into_iter().collect();
        let mut spans: SpanList = std::iter::once(span).collect();
        spans.root = Some(root);
        spans.parted = Some(parted.clone());
        spans
    }

    /// 30 annotations, `annotation.k{from}` and on.
    fn annotations(from: u64) -> Vec<(&'static str, crate::span_data::FieldValue)> {
        (from..from + 30)
            .map(|i| {
                let key: &'static str = Box::leak(format!("annotation.k{i}").into_boxed_str());
                (key, crate::span_data::FieldValue::U64(i))
            })
            .collect()
    }

    /// The parts of one trace share its 50 annotations, the user they name
    /// and the exceptions waiting for their parent, in the trace's own
    /// `Parted`: the worker keeps none of it, so a trace that ends, or
    /// whose root never arrives (a root that never closes, one dropped on a
    /// full queue), leaves nothing behind on the worker, however many
    /// traces are in parts at once.
    #[test]
    fn a_traces_parts_leave_what_later_parts_need_with_the_trace() {
        use crate::span_data::{FieldStr, FieldValue, Parted};
        let mut worker = test_worker(Arc::new(Counters::default()));
        let parted = Arc::new(Parted::default());
        let root = SegmentId::new();
        let mut first = annotations(0);
        first.push(("enduser.id", FieldValue::Str(FieldStr::new("alice"))));
        first.push(("exception.message", FieldValue::Str(FieldStr::new("boom"))));
        let mut batch = Vec::new();
        for fields in [first, annotations(30)] {
            let spans = part(&parted, root, fields, false);
            worker.handle(Message::Detached { spans }, &mut batch);
        }
        assert_eq!(batch.len(), 2);
        assert_eq!(Arc::strong_count(&parted), 1, "the worker keeps none");
        let state = parted.0.lock().unwrap();
        assert_eq!(state.annotations_used, 50, "30, then the 20 left");
        assert_eq!(state.user_below.as_deref(), Some("alice"));
        assert_eq!(state.exceptions_below[&root].len(), 1);
    }

    /// A Lambda invocation's parts (whose segment is Lambda's) share its
    /// annotations, but leave no user and no exception for its segment.
    #[test]
    fn a_lambda_invocations_parts_leave_no_user_and_no_exception() {
        use crate::span_data::{FieldStr, FieldValue, Parted};
        let mut worker = test_worker(Arc::new(Counters::default()));
        let parted = Arc::new(Parted::default());
        let mut fields = annotations(0);
        fields.push(("enduser.id", FieldValue::Str(FieldStr::new("alice"))));
        fields.push(("exception.message", FieldValue::Str(FieldStr::new("boom"))));
        let spans = part(&parted, SegmentId::new(), fields, true);
        worker.handle(Message::Detached { spans }, &mut Vec::new());
        let state = parted.0.lock().unwrap();
        assert_eq!(state.annotations_used, 30);
        assert_eq!(state.user_below, None);
        assert!(state.exceptions_below.is_empty());
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
