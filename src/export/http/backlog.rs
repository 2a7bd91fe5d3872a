//! The documents waiting to be sent, with the memory they hold kept beside
//! them.
//!
//! Its own module so that the byte total can only change together with the
//! documents: every way in and out of the queue goes through these methods.

use std::collections::VecDeque;

use super::Pending;

/// The [`HttpExporter`](super::HttpExporter)'s backlog: documents in the
/// order they are to be sent, and the heap bytes of their JSON text.
#[derive(Default)]
pub(super) struct Backlog {
    queue: VecDeque<Pending>,
    /// The sum of `doc.heap_bytes()` over `queue`.
    bytes: usize,
}

impl Backlog {
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The heap bytes the documents waiting hold.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The next document to be sent.
    pub(super) fn front(&self) -> Option<&Pending> {
        self.queue.front()
    }

    /// Queues a document behind the others, without the slack of the
    /// buffer it was written into (so that the byte bound bounds memory).
    pub(super) fn push_back(&mut self, mut p: Pending) {
        p.doc.shrink_to_fit();
        self.bytes += p.doc.heap_bytes();
        self.queue.push_back(p);
    }

    /// Puts a document back in front of the others.
    pub(super) fn push_front(&mut self, p: Pending) {
        self.bytes += p.doc.heap_bytes();
        self.queue.push_front(p);
    }

    /// Takes the next document out.
    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        let p = self.queue.pop_front()?;
        self.bytes -= p.doc.heap_bytes();
        Some(p)
    }

    /// Takes out the first `n` documents (fewer if fewer wait).
    pub(super) fn take_front(&mut self, n: usize) -> Vec<Pending> {
        let n = n.min(self.queue.len());
        let taken: Vec<Pending> = self.queue.drain(..n).collect();
        self.bytes -= taken.iter().map(|p| p.doc.heap_bytes()).sum::<usize>();
        taken
    }

    /// Takes out every document, and gives back the memory the queue had
    /// grown to (a long outage can leave it large).
    pub(super) fn take_all(&mut self) -> VecDeque<Pending> {
        self.bytes = 0;
        std::mem::take(&mut self.queue)
    }

    /// The byte total counted again from the documents, for tests to
    /// check it against [`bytes`](Self::bytes).
    #[cfg(test)]
    pub(super) fn recount(&self) -> usize {
        self.queue.iter().map(|p| p.doc.heap_bytes()).sum()
    }
}
