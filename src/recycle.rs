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

/// Emptied lists waiting for new traces: at most this many. Bursts need
/// the room: when the application closes traces faster than the worker
/// serializes them for a while, the queue fills, then the worker catches up
/// and hands back lists faster than the application takes them. With room
/// for 64, a 10-child request made back to back found no list a quarter of
/// the time (and the worker freed as many), so a quarter of the traces
/// allocated their chunk again: 5 % of the application thread's time.
const POOLED_LISTS: usize = 512;
/// Chunks a pooled list keeps (8 × 16 spans) while the pool is shallow; a
/// one-off huge trace must not pin its memory.
const MAX_POOLED_CHUNKS: usize = 8;
/// Past this many lists waiting, a list keeps one chunk. A list that kept
/// more was sent when fewer than this many were waiting, all ahead of it,
/// so at most this many hold more than one chunk: the pool holds at most
/// 64 × 8 + 448 × 1 = 960 chunks of 4.4 KiB, 4.2 MiB.
const DEEP_POOL: usize = 64;

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
        // Only the worker sends: the pool can only have shrunk since.
        let keep = if self.lists.len() < DEEP_POOL {
            MAX_POOLED_CHUNKS
        } else {
            1
        };
        spans.clear(keep);
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

    /// The pool's memory bound: past [`DEEP_POOL`] lists waiting, a list
    /// keeps one chunk, so however many big traces come back at once, the
    /// pool holds at most 960 chunks.
    #[test]
    fn a_deep_pool_keeps_one_chunk_a_list() {
        let (tx, rx) = channel();
        let big = || list(CHUNK * MAX_POOLED_CHUNKS);
        for _ in 0..POOLED_LISTS + 10 {
            tx.buffer(big());
        }
        let chunks: Vec<usize> = std::iter::from_fn(|| rx.lists.try_recv().ok())
            .map(|l| l.chunks())
            .collect();
        assert_eq!(chunks.len(), POOLED_LISTS);
        assert!(chunks[..DEEP_POOL].iter().all(|&c| c == MAX_POOLED_CHUNKS));
        assert!(chunks[DEEP_POOL..].iter().all(|&c| c == 1));
        assert_eq!(
            chunks.iter().sum::<usize>(),
            DEEP_POOL * MAX_POOLED_CHUNKS + (POOLED_LISTS - DEEP_POOL)
        );
        // Once the application has taken lists back, lists keep their
        // chunks again.
        tx.buffer(big());
        assert_eq!(rx.buffer().chunks(), MAX_POOLED_CHUNKS);
    }
}
