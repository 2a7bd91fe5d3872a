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

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, Sender};

use crate::span_list::SpanList;

/// Emptied lists waiting for new traces: at most this many. Bursts need
/// the room: when the application closes traces faster than the worker
/// serializes them for a while, the queue fills, then the worker catches up
/// and hands back lists faster than the application takes them. With room
/// for 64, a 10-child request made back to back found no list a quarter of
/// the time (and the worker freed as many), so a quarter of the traces
/// allocated their chunk again: 5 to 8 % of the application thread's time.
const POOLED_LISTS: usize = 512;
/// Chunks a pooled list keeps (8 × 16 spans); a one-off huge trace must not
/// pin its memory.
const MAX_POOLED_CHUNKS: usize = 8;
/// Chunks all the waiting lists keep together: 1,024 chunks of 4.4 KiB,
/// 4.4 MiB at most. 512 lists of a 10-child trace (one chunk each), or 146
/// of a 100-child trace (seven).
const MAX_POOLED_TOTAL_CHUNKS: usize = 1024;

/// The application threads' end.
#[derive(Debug)]
pub(crate) struct RecycleRx {
    lists: Receiver<SpanList>,
}

/// The worker's end.
#[derive(Debug)]
pub(crate) struct RecycleTx {
    lists: Sender<SpanList>,
    /// How many chunks each list it sent kept, oldest first, for the lists
    /// that may still be waiting: the channel is first in, first out and
    /// only this end sends, so the lists the application has taken are
    /// the oldest ones. The application thread shares nothing more for
    /// the pool's bound than the channel itself.
    waiting: VecDeque<u8>,
    /// The sum of `waiting`: never less than the chunks the channel holds.
    waiting_chunks: usize,
}

/// A connected pair of ends.
pub(crate) fn channel() -> (RecycleTx, RecycleRx) {
    let (tx, rx) = crossbeam_channel::bounded(POOLED_LISTS);
    let tx = RecycleTx {
        lists: tx,
        waiting: VecDeque::with_capacity(POOLED_LISTS),
        waiting_chunks: 0,
    };
    (tx, RecycleRx { lists: rx })
}

impl RecycleRx {
    /// An empty span list, recycled when one is available.
    pub(crate) fn buffer(&self) -> SpanList {
        self.lists.try_recv().unwrap_or_default()
    }
}

impl RecycleTx {
    /// Empties a list the worker is done with and offers it back, with as
    /// many of its chunks as the pool's bound leaves room for.
    pub(crate) fn buffer(&mut self, mut spans: SpanList) {
        // Forget the lists taken since: the channel's length can only have
        // shrunk after this reading, so `waiting` never counts too few.
        let still_waiting = self.lists.len();
        while self.waiting.len() > still_waiting {
            if let Some(taken) = self.waiting.pop_front() {
                self.waiting_chunks -= usize::from(taken);
            }
        }
        let room = MAX_POOLED_TOTAL_CHUNKS.saturating_sub(self.waiting_chunks);
        spans.clear(MAX_POOLED_CHUNKS.min(room));
        let chunks = spans.chunks();
        if chunks > 0 && self.lists.try_send(spans).is_ok() {
            // At most `MAX_POOLED_CHUNKS`: fits.
            self.waiting.push_back(chunks as u8);
            self.waiting_chunks += chunks;
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
        let (mut tx, rx) = channel();
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
        let (mut tx, rx) = channel();
        for _ in 0..POOLED_LISTS * 2 {
            tx.buffer(list(1));
        }
        assert_eq!(rx.lists.len(), POOLED_LISTS);
    }

    /// The pool's memory bound: however many big traces come back at once,
    /// the waiting lists keep at most `MAX_POOLED_TOTAL_CHUNKS` chunks, and
    /// the room comes back as the application takes lists.
    #[test]
    fn the_pool_keeps_a_bounded_number_of_chunks() {
        let (mut tx, rx) = channel();
        let big = || list(CHUNK * MAX_POOLED_CHUNKS);
        for _ in 0..POOLED_LISTS {
            tx.buffer(big());
        }
        let full = MAX_POOLED_TOTAL_CHUNKS / MAX_POOLED_CHUNKS;
        assert_eq!(rx.lists.len(), full, "a list with no room left is freed");
        assert_eq!(tx.waiting_chunks, MAX_POOLED_TOTAL_CHUNKS);
        // The application takes three lists: room for three more.
        for _ in 0..3 {
            assert_eq!(rx.buffer().chunks(), MAX_POOLED_CHUNKS);
        }
        for _ in 0..4 {
            tx.buffer(big());
        }
        assert_eq!(tx.waiting_chunks, MAX_POOLED_TOTAL_CHUNKS);
        let chunks: Vec<usize> = std::iter::from_fn(|| rx.lists.try_recv().ok())
            .map(|l| l.chunks())
            .collect();
        assert_eq!(chunks.len(), full);
        assert_eq!(chunks.iter().sum::<usize>(), MAX_POOLED_TOTAL_CHUNKS);
        // Emptied, the pool takes lists whole again; small lists fill all
        // of its places.
        for _ in 0..POOLED_LISTS + 5 {
            tx.buffer(list(1));
        }
        assert_eq!(rx.lists.len(), POOLED_LISTS);
        assert_eq!(tx.waiting_chunks, POOLED_LISTS);
    }

    /// A list that finds less room than it holds keeps what fits.
    #[test]
    fn a_list_keeps_what_room_is_left() {
        let (mut tx, rx) = channel();
        let lists = MAX_POOLED_TOTAL_CHUNKS / MAX_POOLED_CHUNKS - 1;
        for _ in 0..lists {
            tx.buffer(list(CHUNK * MAX_POOLED_CHUNKS));
        }
        tx.buffer(list(CHUNK * 3));
        tx.buffer(list(CHUNK * MAX_POOLED_CHUNKS));
        let last: Vec<usize> = std::iter::from_fn(|| rx.lists.try_recv().ok())
            .skip(lists)
            .map(|l| l.chunks())
            .collect();
        assert_eq!(last, [3, MAX_POOLED_CHUNKS - 3]);
    }
}
