//! The finished spans of one trace, by value, in fixed-size chunks.
//!
//! A trace's spans are written on the application thread as each closes,
//! then read on the worker. Held by value one after the other, the worker
//! reads them where they are (no pointer to chase per span); held in chunks
//! of [`CHUNK`] spans rather than one vector, the list grows without ever
//! copying the spans it holds (a vector of 101 spans would have copied 35 KB
//! on its way there). An emptied list keeps its chunks, so a recycled list
//! (see [`crate::recycle`]) takes a trace of the same size without
//! allocating.

use std::mem::MaybeUninit;

use crate::span_data::{SpanData, keep_box};

/// Spans per chunk: 16 spans of at most 280 bytes, 4.4 KiB.
pub(crate) const CHUNK: usize = 16;

/// The finished spans of a trace, in the order they were pushed.
#[derive(Debug, Default)]
pub(crate) struct SpanList {
    /// Every chunk has a capacity of [`CHUNK`]; the first `len / CHUNK`
    /// are full, the next one holds the rest, and the chunks after it are
    /// empty (kept from an earlier, bigger trace).
    chunks: Vec<Vec<SpanData>>,
    len: usize,
    /// The spans' [`SpanData::held_bytes`], summed as they are pushed.
    bytes: usize,
    /// Set on a part of a trace sent while its root is open: the
    /// annotations the root will take, kept for it (see
    /// [`TraceBuf::root_annotations`](crate::span_data::TraceBuf)).
    pub(crate) root_annotations: u8,
    /// Set on a part of a trace sent while its root is open: the root's id
    /// (see [`TraceBuf::root`](crate::span_data::TraceBuf)).
    pub(crate) root: Option<crate::id::SegmentId>,
    /// Set with `root` on a part taken after the root's segment was sent
    /// (the tower server layer sends it with the response): its spans'
    /// exceptions have no parent left to name them.
    pub(crate) root_sent: bool,
    /// Set on the parts of a trace sent while its root is open, and on its
    /// root's list (see [`Parted`](crate::span_data::Parted)).
    pub(crate) parted: Option<std::sync::Arc<crate::span_data::Parted>>,
}

impl SpanList {
    /// An empty list, allocating nothing until the first push.
    pub(crate) fn new() -> Self {
        SpanList::default()
    }

    /// How many spans it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// About how much memory its spans hold (see [`SpanData::held_bytes`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The memory it holds: its spans' (see [`SpanList::bytes`]), and the
    /// room its chunks keep for more. A trace of one span holds a whole
    /// chunk of [`CHUNK`] spans; a recycled list, the chunks of an earlier
    /// trace. This is what the queue's byte bound counts.
    pub(crate) fn memory(&self) -> usize {
        let room = (self.chunks.len() * CHUNK).saturating_sub(self.len);
        self.bytes
            + room * std::mem::size_of::<SpanData>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<SpanData>>()
    }

    /// Whether it holds no span.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks it keeps (full, partly filled or empty).
    pub(crate) fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Span `i` (in push order).
    pub(crate) fn get(&self, i: usize) -> &SpanData {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The spans, in push order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SpanData> {
        self.chunks.iter().flatten()
    }

    /// The spans, moved out, in push order.
    pub(crate) fn into_spans(self) -> impl Iterator<Item = SpanData> {
        self.chunks.into_iter().flatten()
    }

    /// Moves the spans `pick` says yes to into a new list; both keep push
    /// order, and this list its trace's marks.
    pub(crate) fn split_off_where(&mut self, mut pick: impl FnMut(&SpanData) -> bool) -> SpanList {
        let chunks = self.empty_keeping_marks();
        let mut picked = SpanList::new();
        for span in chunks.into_iter().flatten() {
            if pick(&span) {
                picked.push(span);
            } else {
                self.push(span);
            }
        }
        picked
    }

    /// Puts `spans` before the spans it holds, in their order; the list
    /// keeps its trace's marks.
    pub(crate) fn prepend(&mut self, spans: impl IntoIterator<Item = SpanData>) {
        let chunks = self.empty_keeping_marks();
        for span in spans {
            self.push(span);
        }
        for span in chunks.into_iter().flatten() {
            self.push(span);
        }
    }

    /// Empties the list but for its trace's marks, handing back its chunks.
    fn empty_keeping_marks(&mut self) -> Vec<Vec<SpanData>> {
        let chunks = std::mem::take(&mut self.chunks);
        // All of them: a part that lost `parted` would count its
        // annotations from none, past the trace's 50.
        let (root_annotations, root, root_sent, parted) = (
            self.root_annotations,
            self.root,
            self.root_sent,
            self.parted.take(),
        );
        self.clear(0);
        self.root_annotations = root_annotations;
        self.root = root;
        self.root_sent = root_sent;
        self.parted = parted;
        chunks
    }

    /// Adds a span.
    pub(crate) fn push(&mut self, span: SpanData) {
        self.bytes += span.held_bytes();
        self.chunk_with_room().push(span);
        self.len += 1;
    }

    /// Moves a span out of its box into the list (see
    /// [`SpanList::push`]), copying it once.
    pub(crate) fn push_boxed(&mut self, span: Box<SpanData>) {
        self.bytes += span.held_bytes();
        let chunk = self.chunk_with_room();
        let at = chunk.len();
        debug_assert!(at < chunk.capacity());
        let from = Box::into_raw(span);
        // SAFETY: `from` is a valid, aligned, initialized `SpanData` owned
        // here (it comes from `Box::into_raw`), and `chunk_with_room` returns
        // a chunk with room for one more span past `at`, so the copy writes
        // inside its allocation and the new length covers only initialized
        // spans. The value now lives in the chunk: its box is kept as a
        // `MaybeUninit<SpanData>` (same layout, and what `Box::from_raw`
        // rebuilds is the allocation `Box::into_raw` gave up), so the
        // fields are not dropped twice, and the box is only ever written
        // again whole (`Box::write` in `SpanData::boxed`). This is
        // `chunk.push(*span)` without the extra copy through the stack that
        // rustc makes of it (one `memcpy` per span on the application
        // thread instead of two). `self.len` is counted before the box
        // leaves for `keep_box` (thread-local state, the allocator): the
        // room found for the next span rests on it matching the chunks'
        // lengths, so they must never differ should anything there unwind.
        unsafe {
            std::ptr::copy_nonoverlapping(from, chunk.as_mut_ptr().add(at), 1);
            chunk.set_len(at + 1);
            self.len += 1;
            keep_box(Box::from_raw(from.cast::<MaybeUninit<SpanData>>()));
        }
    }

    /// The chunk the next span goes to, with room for it.
    fn chunk_with_room(&mut self) -> &mut Vec<SpanData> {
        let i = self.len / CHUNK;
        if i == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        &mut self.chunks[i]
    }

    /// Drops every span, keeping at most `keep` chunks for the next trace.
    pub(crate) fn clear(&mut self, keep: usize) {
        for chunk in &mut self.chunks {
            chunk.clear();
        }
        self.chunks.truncate(keep);
        // The table of chunks too: `truncate` keeps its capacity, and a
        // recycled list would pin a huge trace's table (24 bytes per chunk
        // it ever had) for as long as it is recycled. The slack spares a
        // reallocation to lists just past `keep`.
        if self.chunks.capacity() > keep.saturating_mul(2) {
            self.chunks.shrink_to(keep);
        }
        self.len = 0;
        self.root_annotations = 0;
        self.root = None;
        self.root_sent = false;
        self.parted = None;
        self.bytes = 0;
    }
}

impl FromIterator<SpanData> for SpanList {
    fn from_iter<I: IntoIterator<Item = SpanData>>(iter: I) -> Self {
        let mut list = SpanList::new();
        for span in iter {
            list.push(span);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_their_order_across_chunks() {
        let spans: Vec<SpanData> = (0..CHUNK * 2 + 3).map(|_| SpanData::for_tests()).collect();
        let ids: Vec<_> = spans.iter().map(|s| s.id).collect();
        let mut list = SpanList::new();
        for (i, span) in spans.into_iter().enumerate() {
            if i % 2 == 0 {
                list.push(span);
            } else {
                list.push_boxed(Box::new(span));
            }
        }
        assert_eq!(list.len(), CHUNK * 2 + 3);
        assert_eq!(list.chunks(), 3);
        assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(list.get(i).id, *id);
        }
    }

    #[test]
    fn its_memory_counts_the_room_its_chunks_keep() {
        let span = std::mem::size_of::<SpanData>();
        let mut list = SpanList::new();
        assert_eq!(list.memory(), 0);
        list.push(SpanData::for_tests());
        let one = list.bytes();
        let table = list.chunks.capacity() * std::mem::size_of::<Vec<SpanData>>();
        assert_eq!(list.memory(), one + (CHUNK - 1) * span + table);
        // Emptied with its chunks kept (a recycled list): still held.
        let mut list: SpanList = (0..CHUNK * 3).map(|_| SpanData::for_tests()).collect();
        list.clear(usize::MAX);
        assert!(list.memory() >= CHUNK * 3 * span);
    }

    #[test]
    fn a_cleared_list_keeps_its_chunks_and_takes_spans_without_allocating() {
        let mut list: SpanList = (0..CHUNK * 3).map(|_| SpanData::for_tests()).collect();
        let chunk_addresses = |l: &SpanList| -> Vec<*const SpanData> {
            l.chunks.iter().map(|c| c.as_ptr()).collect()
        };
        let before = chunk_addresses(&list);
        list.clear(usize::MAX);
        assert!(list.is_empty() && list.iter().next().is_none());
        for _ in 0..CHUNK * 3 {
            list.push(SpanData::for_tests());
        }
        assert_eq!(chunk_addresses(&list), before, "no chunk reallocated");
        list.clear(1);
        assert_eq!(list.chunks(), 1);
        assert!(list.chunks.iter().all(|c| c.capacity() == CHUNK));
    }

    /// A list emptied after a huge trace keeps `keep` chunks and no more
    /// than a table for about that many: a recycled list (see
    /// [`crate::recycle`]) must not pin 24 bytes per chunk the huge trace
    /// had, for as long as it is recycled.
    #[test]
    fn a_cleared_list_does_not_keep_a_huge_traces_table_of_chunks() {
        let mut list: SpanList = (0..CHUNK * 1000).map(|_| SpanData::for_tests()).collect();
        assert!(list.chunks.capacity() >= 1000);
        list.clear(8);
        assert_eq!(list.chunks(), 8);
        assert!(list.chunks.capacity() <= 16, "{}", list.chunks.capacity());
        // A list that stays within what it keeps is not reallocated.
        let mut list: SpanList = (0..CHUNK * 9).map(|_| SpanData::for_tests()).collect();
        let table = list.chunks.as_ptr();
        list.clear(8);
        assert_eq!(list.chunks.as_ptr(), table);
    }

    #[test]
    fn prepended_spans_come_first_and_the_list_keeps_its_marks() {
        let mut list: SpanList = (0..CHUNK + 2).map(|_| SpanData::for_tests()).collect();
        let root = SpanData::for_tests().id;
        (list.root, list.root_annotations, list.root_sent) = (Some(root), 3, true);
        let front: Vec<SpanData> = (0..CHUNK).map(|_| SpanData::for_tests()).collect();
        let ids: Vec<_> = front.iter().chain(list.iter()).map(|s| s.id).collect();
        let bytes = list.bytes() + front.iter().map(SpanData::held_bytes).sum::<usize>();
        list.prepend(front);
        assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        assert_eq!((list.len(), list.bytes()), (ids.len(), bytes));
        assert_eq!(
            (list.root, list.root_annotations, list.root_sent),
            (Some(root), 3, true)
        );
    }
}
