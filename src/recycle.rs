//! Memory the worker hands back to the application threads.
//!
//! A span's data is allocated on the application thread and freed on the
//! worker. Left to the allocator, every span would then cost a `malloc` that
//! misses the thread's cache and a cross-thread `free` contending for the
//! same arena. Instead, the worker empties what it has serialized (span
//! boxes with their heap parts released, and the per-trace span vectors) and
//! sends it back in batches over bounded channels; the application takes
//! from them before allocating. Both channels are bounded and never block:
//! when the application does not take back (few sampled traces), the worker
//! frees the surplus, so pooled memory stays bounded: the channels' batches,
//! plus at most one batch held by each application thread. A span that is
//! not sent (an unsampled root) is blanked where it closes and kept in that
//! thread's batch, within the same bound.

use std::cell::RefCell;

use crossbeam_channel::{Receiver, Sender};
use tracing_core::Metadata;

use crate::clock::Instant;
use crate::id::TraceId;
use crate::span_data::{Anchor, SpanData};

/// Emptied span vectors waiting for new traces.
const POOLED_BUFFERS: usize = 256;
/// Vectors larger than this are freed, not pooled (a one-off huge trace must
/// not pin its memory).
const MAX_POOLED_CAPACITY: usize = 4096;
/// Blank span boxes travel in batches of this many.
const SPAN_BATCH: usize = 64;
/// At most this many batches wait (64 × 64 spans of at most 320 bytes: 1.3 MB).
const POOLED_SPAN_BATCHES: usize = 64;

thread_local! {
    /// Blank span boxes this thread took from the worker's batches (at most
    /// one batch; dropped with the thread).
    static SPARE_SPANS: RefCell<Vec<Box<SpanData>>> = const { RefCell::new(Vec::new()) };
}

/// The application threads' end.
#[derive(Debug)]
pub(crate) struct RecycleRx {
    buffers: Receiver<Vec<Box<SpanData>>>,
    spans: Receiver<Vec<Box<SpanData>>>,
}

/// The worker's end.
#[derive(Debug)]
pub(crate) struct RecycleTx {
    buffers: Sender<Vec<Box<SpanData>>>,
    spans: Sender<Vec<Box<SpanData>>>,
    batch: Vec<Box<SpanData>>,
}

/// A connected pair of ends.
pub(crate) fn channel() -> (RecycleTx, RecycleRx) {
    let (buffers_tx, buffers_rx) = crossbeam_channel::bounded(POOLED_BUFFERS);
    let (spans_tx, spans_rx) = crossbeam_channel::bounded(POOLED_SPAN_BATCHES);
    (
        RecycleTx {
            buffers: buffers_tx,
            spans: spans_tx,
            batch: Vec::new(),
        },
        RecycleRx {
            buffers: buffers_rx,
            spans: spans_rx,
        },
    )
}

impl RecycleRx {
    /// An empty span vector, recycled when one is available.
    pub(crate) fn buffer(&self) -> Vec<Box<SpanData>> {
        self.buffers.try_recv().unwrap_or_default()
    }

    /// A new span (see [`SpanData::new`]) in a box, reusing a blank one when
    /// one is available.
    pub(crate) fn span(
        &self,
        trace_id: TraceId,
        anchor: Anchor,
        start: Instant,
        meta: &'static Metadata<'static>,
    ) -> Box<SpanData> {
        let spare = SPARE_SPANS
            .try_with(|spare| {
                let mut spare = spare.try_borrow_mut().ok()?;
                if spare.is_empty() {
                    *spare = self.spans.try_recv().ok()?;
                }
                spare.pop()
            })
            .ok()
            .flatten();
        match spare {
            Some(mut slot) => {
                slot.renew(trace_id, anchor, start, meta);
                slot
            }
            None => Box::new(SpanData::new(trace_id, anchor, start, meta)),
        }
    }

    /// Keeps the box of a span that is not sent (an unsampled root) for
    /// this thread's next span, when the thread's spare batch has room.
    pub(crate) fn keep(&self, mut span: Box<SpanData>) {
        span.blank();
        let _ = SPARE_SPANS.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPAN_BATCH {
                    spare.push(span);
                }
            }
        });
    }
}

impl RecycleTx {
    /// Offers an emptied span vector back.
    pub(crate) fn buffer(&self, spans: Vec<Box<SpanData>>) {
        debug_assert!(spans.is_empty());
        if spans.capacity() <= MAX_POOLED_CAPACITY {
            let _ = self.buffers.try_send(spans);
        }
    }

    /// Blanks every span of these trees and offers the boxes back.
    pub(crate) fn trees(&mut self, mut stack: Vec<Box<SpanData>>) {
        while let Some(mut span) = stack.pop() {
            stack.append(&mut span.children);
            span.blank();
            self.batch.push(span);
            if self.batch.len() == SPAN_BATCH {
                let full = std::mem::replace(&mut self.batch, Vec::with_capacity(SPAN_BATCH));
                // Full channel: nobody is taking them back; free this batch.
                let _ = self.spans.try_send(full);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_come_back_blank_and_in_bounded_numbers() {
        let (mut tx, rx) = channel();
        let spans: Vec<Box<SpanData>> = (0..SPAN_BATCH * (POOLED_SPAN_BATCHES + 3))
            .map(|_| Box::new(SpanData::for_tests()))
            .collect();
        let mut root = Box::new(SpanData::for_tests());
        root.children = spans;
        tx.trees(vec![root]);
        // Only the bounded number of batches is kept.
        assert_eq!(rx.spans.len(), POOLED_SPAN_BATCHES);
        let batch = rx.spans.try_recv().unwrap();
        assert_eq!(batch.len(), SPAN_BATCH);
        assert!(batch
            .iter()
            .all(|s| s.fields.is_empty() && s.children.is_empty() && s.trace.is_none()));
        // A box taken back is a new span.
        let fresh = SpanData::for_tests();
        let span = rx.span(fresh.trace_id, fresh.anchor, fresh.start, fresh.meta);
        assert_eq!(span.trace_id, fresh.trace_id);
        assert_ne!(span.id, fresh.id);
        assert_eq!(span.decision, crate::span_data::Decision::Pending);
    }

    #[test]
    fn a_reused_box_keeps_nothing_of_its_previous_span() {
        use crate::span_data::{Decision, ErrorRecord, FieldStr, FieldValue, Role, TraceBuf};
        use std::sync::Arc;

        let (mut tx, rx) = channel();
        // A span with every part filled, as the worker receives it.
        let mut used = Box::new(SpanData::for_tests());
        for i in 0..6 {
            // More than the inline four, one of them on the heap.
            let value = "v".repeat(if i == 0 { 100 } else { 3 });
            used.fields
                .push(("key", FieldValue::Str(FieldStr::new(&value))));
        }
        used.push_error(ErrorRecord {
            field: None,
            message: "boom".into(),
            sources: vec!["cause".into()],
            location: None,
            target: None,
        });
        used.rare_mut().rule_name = Some(Arc::from("rule"));
        used.rare_mut().incoming = Some(crate::TraceHeader::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        ));
        used.trace = Some(Arc::new(TraceBuf::default()));
        used.decision = Decision::Sampled;
        used.role = Role::Independent;
        used.parent_seg = Some(crate::SegmentId::new());
        used.parent_id = Some(crate::SegmentId::new());
        used.parent_is_facade = true;
        used.end = Some(used.start);
        used.children = vec![Box::new(SpanData::for_tests())];
        // Fill a whole batch so that it is sent back.
        let mut root = Box::new(SpanData::for_tests());
        root.children = (0..SPAN_BATCH - 2)
            .map(|_| Box::new(SpanData::for_tests()))
            .collect();
        root.children.push(used);
        tx.trees(vec![root]);
        assert_eq!(rx.spans.len(), 1);

        let fresh = SpanData::for_tests();
        let mut seen = 0;
        for _ in 0..SPAN_BATCH {
            let span = rx.span(fresh.trace_id, fresh.anchor, fresh.start, fresh.meta);
            assert_eq!(span.trace_id, fresh.trace_id);
            assert!(span.fields.is_empty() && !span.fields.spilled());
            assert!(span.errors().is_empty() && span.errors_dropped() == 0);
            assert!(span.events().is_empty() && span.events_dropped() == 0);
            assert!(span.rule_name().is_none() && span.incoming().is_none());
            assert!(span.trace.is_none() && span.children.is_empty());
            assert_eq!(span.decision, Decision::Pending);
            assert_eq!(span.role, Role::Span);
            assert!(span.parent_seg.is_none() && span.parent_id.is_none());
            assert!(!span.parent_is_facade && span.end.is_none());
            seen += usize::from(span.rare.is_some());
        }
        // The out-of-line part of the used span came back with its box.
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_kept_box_serves_this_threads_next_span_and_no_more_than_a_batch_are_kept() {
        // A thread of its own: the spare batch is thread-local.
        std::thread::spawn(|| {
            let (_tx, rx) = channel();
            let fresh = SpanData::for_tests();
            let mut kept = Box::new(SpanData::for_tests());
            kept.fields
                .push(("key", crate::span_data::FieldValue::U64(1)));
            let address = &*kept as *const SpanData;
            rx.keep(kept);
            let span = rx.span(fresh.trace_id, fresh.anchor, fresh.start, fresh.meta);
            assert_eq!(&*span as *const SpanData, address, "the kept box");
            assert!(span.fields.is_empty());
            for _ in 0..SPAN_BATCH * 2 {
                rx.keep(Box::new(SpanData::for_tests()));
            }
            let held = SPARE_SPANS.with(|s| s.borrow().len());
            assert_eq!(held, SPAN_BATCH);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn huge_buffers_are_not_pooled() {
        let (tx, rx) = channel();
        tx.buffer(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        assert_eq!(rx.buffer().capacity(), 0);
        tx.buffer(Vec::with_capacity(8));
        assert!(rx.buffer().capacity() >= 8);
    }
}
