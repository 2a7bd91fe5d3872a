//! Span lists the worker hands back to the application threads.
//!
//! A sampled trace's finished spans wait in one [`SpanList`] until its root
//! closes; the worker empties that list as it serializes the trace. Instead
//! of freeing its chunks (a free of memory another thread allocated) and
//! having the application allocate the next trace's again, the worker sends
//! the emptied list back over a bounded channel, with its chunks, and the
//! application takes from it before allocating. Only the lists travel back,
//! never the memory the spans were opened in: the worker only reads a
//! list's chunks, whereas every cache line it writes is one the application
//! thread must fetch back from the worker's core before it can use it. The
//! channel is bounded and never blocks: when the application does not take
//! back (few sampled traces), the worker frees the surplus.

use crossbeam_channel::{Receiver, Sender};

use crate::span_list::SpanList;

/// Emptied lists waiting for new traces: at most this many, keeping at most
/// [`MAX_POOLED_CHUNKS`] chunks each (64 × 8 chunks of 4.4 KiB: 2.3 MB at
/// worst).
const POOLED_LISTS: usize = 64;
/// Chunks a pooled list keeps (8 × 16 spans); a one-off huge trace must not
/// pin its memory.
const MAX_POOLED_CHUNKS: usize = 8;

/// The application threads' end.
#[derive(Debug)]
pub(crate) struct RecycleRx {
    lists: Receiver<SpanList>,
}

/// The worker's end.
#[derive(Debug)]
pub(crate) struct RecycleTx {
    lists: Sender<SpanList>,
}

/// A connected pair of ends.
pub(crate) fn channel() -> (RecycleTx, RecycleRx) {
    let (tx, rx) = crossbeam_channel::bounded(POOLED_LISTS);
    (RecycleTx { lists: tx }, RecycleRx { lists: rx })
}

impl RecycleRx {
    /// An empty span list, recycled when one is available.
    pub(crate) fn buffer(&self) -> SpanList {
        self.lists.try_recv().unwrap_or_default()
    }
}

impl RecycleTx {
    /// Empties a list the worker is done with and offers it back.
    pub(crate) fn buffer(&self, mut spans: SpanList) {
        spans.clear(MAX_POOLED_CHUNKS);
        if spans.chunks() > 0 {
            let _ = self.lists.try_send(spans);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_data::SpanData;
    use crate::span_list::CHUNK;

    fn list(spans: usize) -> SpanList {
        (0..spans).map(|_| SpanData::for_tests()).collect()
    }

    #[test]
    fn lists_come_back_empty_with_a_bounded_number_of_chunks() {
        let (tx, rx) = channel();
        tx.buffer(list(CHUNK * (MAX_POOLED_CHUNKS + 3)));
        let back = rx.buffer();
        assert!(back.is_empty());
        assert_eq!(back.chunks(), MAX_POOLED_CHUNKS);
        // A list that never held a span has nothing to give back.
        tx.buffer(SpanList::new());
        assert!(rx.lists.is_empty());
        assert_eq!(rx.buffer().chunks(), 0);
    }

    #[test]
    fn pooled_lists_are_bounded() {
        let (tx, rx) = channel();
        for _ in 0..POOLED_LISTS * 2 {
            tx.buffer(list(1));
        }
        assert_eq!(rx.lists.len(), POOLED_LISTS);
    }
}
