//! A trace's finished spans as trees, without moving them.
//!
//! The application thread hands the worker a trace as one [`SpanList`], in
//! close order (a child always before its parent). The worker reads the
//! spans where they are: [`Rebuild`] lists each span's children by index,
//! and the assembler walks that [`Forest`]. Nothing is copied or allocated
//! per span, and the list goes back to the application emptied (see
//! [`crate::recycle`]).

use std::collections::HashMap;

use crate::id::SegmentId;
use crate::span_data::SpanData;
use crate::span_list::SpanList;

/// The trees of one list of spans: the spans, each one's children (indices
/// into the list, in close order), and the tops (the spans whose parent is
/// not in the list: the root, or subtrees of a trace still open).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forest<'a> {
    spans: &'a SpanList,
    /// Span `i`'s children are `children[first[i]..first[i + 1]]`.
    first: &'a [usize],
    children: &'a [usize],
    tops: &'a [usize],
}

impl<'a> Forest<'a> {
    /// Span `i`.
    pub(crate) fn span(&self, i: usize) -> &'a SpanData {
        self.spans.get(i)
    }

    /// The children of span `i`, in close order.
    pub(crate) fn children(&self, i: usize) -> &'a [usize] {
        &self.children[self.first[i]..self.first[i + 1]]
    }

    /// Every span of the list, in close order.
    pub(crate) fn spans(&self) -> impl Iterator<Item = &'a SpanData> + use<'a> {
        self.spans.iter()
    }

    /// The spans without a parent in the list, in close order.
    pub(crate) fn tops(&self) -> &'a [usize] {
        self.tops
    }
}

/// Finds the trees of lists of finished spans. Keeps its scratch space from
/// trace to trace, so that the worker allocates nothing here for a trace of
/// usual size.
#[derive(Debug, Default)]
pub(crate) struct Rebuild {
    parent_of: Vec<Option<usize>>,
    first: Vec<usize>,
    next: Vec<usize>,
    children: Vec<usize>,
    tops: Vec<usize>,
    index: HashMap<SegmentId, usize>,
}

/// Scratch space grown past this many spans is freed after use (see
/// [`Rebuild::trim`]): a one-off huge trace must not pin its memory.
const MAX_KEPT_SCRATCH: usize = 4096;

/// Up to this many spans, parents are found by scanning instead of hashing.
const SMALL_TRACE: usize = 48;

impl Rebuild {
    /// The trees of `spans`, listed in close order (a child always before
    /// its parent).
    pub(crate) fn forest<'a>(&'a mut self, spans: &'a SpanList) -> Forest<'a> {
        let n = spans.len();
        // A parent closes after its children, so it is searched after them:
        // by a scan for a few spans, through an index for many.
        let indexed = n > SMALL_TRACE;
        if indexed {
            self.index.clear();
            self.index
                .extend(spans.iter().enumerate().map(|(i, s)| (s.id, i)));
        }
        self.parent_of.clear();
        // `first[p + 1]` counts p's children first, then becomes offsets.
        self.first.clear();
        self.first.resize(n + 1, 0);
        self.tops.clear();
        for (i, span) in spans.iter().enumerate() {
            let parent = span.parent_seg.and_then(|parent| {
                if indexed {
                    self.index.get(&parent).copied().filter(|&j| j > i)
                } else {
                    (i + 1..n).find(|&j| spans.get(j).id == parent)
                }
            });
            match parent {
                Some(p) => self.first[p + 1] += 1,
                None => self.tops.push(i),
            }
            self.parent_of.push(parent);
        }
        for i in 0..n {
            self.first[i + 1] += self.first[i];
        }
        // Each parent's next free slot, filled in close order.
        self.children.clear();
        self.children.resize(n - self.tops.len(), 0);
        self.next.clear();
        self.next.extend_from_slice(&self.first[..n]);
        for (i, parent) in self.parent_of.iter().enumerate() {
            if let Some(p) = *parent {
                self.children[self.next[p]] = i;
                self.next[p] += 1;
            }
        }
        Forest {
            spans,
            first: &self.first,
            children: &self.children,
            tops: &self.tops,
        }
    }

    /// Frees the scratch space a huge trace grew, once its forest is no
    /// longer needed.
    pub(crate) fn trim(&mut self) {
        // By the size of the last trace (`first` holds one more than its
        // spans), not the capacity: growing amortized, the capacity passes
        // the limit for traces below it (3,072 spans, then 4,096: 6,146),
        // and their scratch space would be freed and grown again.
        if self.first.len() > MAX_KEPT_SCRATCH + 1 {
            *self = Rebuild::default();
        }
    }
}

#[cfg(test)]
impl Rebuild {
    /// How many spans the scratch space has room for.
    pub(crate) fn scratch_capacity(&self) -> usize {
        self.first.capacity().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace in close order: `parents[i]` is the index of span `i`'s
    /// parent (always later), or `None`; a parent index past the end names
    /// a span that is not in the list (a subtree of a trace still open).
    fn trace(parents: &[Option<usize>]) -> SpanList {
        let mut spans: Vec<SpanData> = (0..parents.len()).map(|_| SpanData::for_tests()).collect();
        let ids: Vec<SegmentId> = spans.iter().map(|s| s.id).collect();
        for (span, parent) in spans.iter_mut().zip(parents) {
            span.parent_seg = parent.map(|p| ids.get(p).copied().unwrap_or_else(SegmentId::new));
        }
        spans.into_iter().collect()
    }

    fn shape(forest: &Forest<'_>, i: usize) -> String {
        let children: Vec<String> = forest
            .children(i)
            .iter()
            .map(|&c| shape(forest, c))
            .collect();
        format!("({})", children.join(""))
    }

    /// Trees come back whole, each parent's children in close order,
    /// whether parents are found by scanning (small traces) or through the
    /// index (large ones); the scratch space is reused from trace to trace.
    #[test]
    fn finds_the_trees_in_close_order() {
        let mut rebuild = Rebuild::default();
        // 0 and 1 under 2, 2 and 3 under 4 (the root); 5 under a span not
        // in the list.
        let spans = trace(&[Some(2), Some(2), Some(4), Some(4), None, Some(99)]);
        let forest = rebuild.forest(&spans);
        assert_eq!(forest.tops(), &[4, 5]);
        assert_eq!(shape(&forest, 4), "((()())())");
        assert_eq!(forest.children(4), &[2, 3]);
        assert_eq!(forest.children(2), &[0, 1]);
        assert_eq!(shape(&forest, 5), "()");
        assert_eq!(forest.span(4).id, spans.get(4).id);

        // A root with 200 children: the indexed path.
        let mut wide: Vec<Option<usize>> = vec![Some(200); 200];
        wide.push(None);
        let spans = trace(&wide);
        let forest = rebuild.forest(&spans);
        assert_eq!(forest.tops(), &[200]);
        assert_eq!(forest.children(200), (0..200).collect::<Vec<_>>());

        // Back to a small trace: same answers, and the scratch space of the
        // large one is kept for the next.
        let scratch = |r: &Rebuild| (r.first.as_ptr(), r.parent_of.as_ptr());
        let before = scratch(&rebuild);
        let spans = trace(&[Some(1), None]);
        let forest = rebuild.forest(&spans);
        assert_eq!(shape(&forest, 1), "(())");
        rebuild.trim();
        assert_eq!(scratch(&rebuild), before, "reallocated");
        assert!(rebuild.first.capacity() >= 202);
    }

    #[test]
    fn a_one_off_huge_trace_does_not_pin_its_scratch_space() {
        let mut rebuild = Rebuild::default();
        let mut huge: Vec<Option<usize>> = vec![Some(MAX_KEPT_SCRATCH); MAX_KEPT_SCRATCH];
        huge.push(None);
        let spans = trace(&huge);
        let forest = rebuild.forest(&spans);
        assert_eq!(forest.children(MAX_KEPT_SCRATCH).len(), MAX_KEPT_SCRATCH);
        rebuild.trim();
        assert_eq!(rebuild.first.capacity(), 0);
        assert_eq!(rebuild.parent_of.capacity(), 0);
        assert_eq!(rebuild.index.capacity(), 0);
    }

    /// Only a trace past [`MAX_KEPT_SCRATCH`] spans frees the scratch space:
    /// traces of usual size, growing it as they come, keep it.
    #[test]
    fn traces_up_to_the_limit_keep_their_scratch_space() {
        let mut rebuild = Rebuild::default();
        for n in [MAX_KEPT_SCRATCH * 3 / 4, MAX_KEPT_SCRATCH] {
            let mut wide: Vec<Option<usize>> = vec![Some(n - 1); n - 1];
            wide.push(None);
            let spans = trace(&wide);
            let forest = rebuild.forest(&spans);
            assert_eq!(forest.children(n - 1).len(), n - 1);
            rebuild.trim();
            assert!(rebuild.first.capacity() > n, "freed after {n} spans");
            assert!(rebuild.parent_of.capacity() >= n, "freed after {n} spans");
        }
    }

    #[test]
    fn an_empty_list_has_no_trees() {
        let mut rebuild = Rebuild::default();
        let spans = SpanList::new();
        let forest = rebuild.forest(&spans);
        assert!(forest.tops().is_empty());
    }
}
