//! The bounded trace store: documents grouped by trace, oldest traces evicted first.
//!
//! Each document is kept as its raw text plus an [`Entity`] summary. A document with the
//! same id as one already stored replaces it (an in-progress segment followed by the
//! complete one), except that a late in-progress copy never overwrites a complete one.
//! Streamed (independent) subsegments stay separate documents and are grafted into their
//! parent when the trace is [assembled](Trace::assemble).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::model::Entity;

/// Fixed bookkeeping bytes charged per stored document, on top of its text and summary:
/// its slot in its trace's list and its entry in the trace's index by id (whose copy of
/// the id is charged apart), with room for both to grow.
pub const DOC_OVERHEAD: usize = 128;
/// Fixed bookkeeping bytes charged per stored trace.
pub const TRACE_OVERHEAD: usize = 128;
/// Deepest nesting at which streamed subsegments are grafted into their parent; deeper
/// ones are shown apart, flat. The trees are walked recursively (assembly, timeline, map,
/// drop), and a chain of streamed subsegments could otherwise nest as deep as the store
/// holds documents and overflow a thread's stack, which aborts the console. Embedded
/// subsegments are already bounded by the JSON parser's nesting limit.
pub const MAX_DEPTH: usize = 64;

/// How much a console keeps: past either bound, the oldest traces are evicted.
///
/// ```
/// use xray_console::Limits;
///
/// let small = Limits { max_traces: 100, max_bytes: 8 * 1024 * 1024 };
/// assert_eq!(Limits::default().max_traces, 1_000);
/// # drop(small);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most traces kept (default 1,000).
    pub max_traces: usize,
    /// Most bytes kept, counting the documents' text, their summaries and the bookkeeping
    /// per document (a fixed overhead and a copy of its id) and per trace (default 64 MiB).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_traces: 1_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One stored document.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The document text, exactly as received.
    pub raw: String,
    /// Its summary.
    pub entity: Entity,
    /// Bytes charged for it.
    pub bytes: usize,
}

/// All documents of one trace.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace id.
    pub id: String,
    /// Segments and independent subsegments, in arrival order.
    pub docs: Vec<Doc>,
    /// Where each document's id is in `docs`. Finding an earlier copy of a document is
    /// then one lookup, where a scan of `docs` made a trace sent in n documents (a long
    /// one streaming its subsegments apart) cost n² to store. Documents are only ever
    /// added or replaced in place, so positions stay valid.
    index: HashMap<String, usize>,
    /// Bytes charged for the trace and its documents.
    pub bytes: usize,
}

/// What the store did with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new document.
    Added,
    /// Replaced an earlier copy with the same id.
    Replaced,
    /// An in-progress copy arrived after the complete one and was ignored.
    StaleIgnored,
}

/// Store counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Documents accepted (added or replacing).
    pub documents: u64,
    /// Documents that replaced an earlier copy.
    pub replaced: u64,
    /// Late in-progress copies ignored.
    pub stale_ignored: u64,
    /// Traces ever created.
    pub traces_created: u64,
    /// Traces evicted to stay under the bounds.
    pub traces_evicted: u64,
    /// Bytes freed by eviction.
    pub bytes_evicted: u64,
}

/// The bounded store.
#[derive(Debug, Default)]
pub struct Store {
    limits: Limits,
    traces: HashMap<String, Trace>,
    order: VecDeque<String>,
    bytes: usize,
    stats: StoreStats,
}

impl Store {
    /// An empty store with these bounds.
    pub fn new(limits: Limits) -> Store {
        Store {
            limits,
            ..Store::default()
        }
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes currently charged: document texts, summaries and bookkeeping.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of traces held.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// One trace.
    pub fn get(&self, id: &str) -> Option<&Trace> {
        self.traces.get(id)
    }

    /// All traces, oldest first.
    pub fn traces(&self) -> impl Iterator<Item = &Trace> {
        self.order.iter().filter_map(|id| self.traces.get(id))
    }

    /// Stores one document (already parsed). `entity.trace_id` must be set.
    pub fn insert(&mut self, raw: String, entity: Entity) -> Outcome {
        let trace_id = entity.trace_id.clone().unwrap_or_default();
        // The id's length once more: the index's key is a copy.
        let bytes = raw.len() + entity.approx_bytes() + entity.id.len() + DOC_OVERHEAD;
        if !self.traces.contains_key(&trace_id) {
            self.stats.traces_created += 1;
            self.bytes += TRACE_OVERHEAD + trace_id.len();
            self.order.push_back(trace_id.clone());
            #[cfg(test)]
            if entity.name == tests::PANIC_MARKER {
                // Half-way through, where a panic leaves the most to repair: the new trace
                // is charged and listed, but not held.
                panic!("injected by a test");
            }
            self.traces.insert(
                trace_id.clone(),
                Trace {
                    id: trace_id.clone(),
                    docs: Vec::new(),
                    index: HashMap::new(),
                    bytes: TRACE_OVERHEAD + trace_id.len(),
                },
            );
        }
        let trace = self
            .traces
            .get_mut(&trace_id)
            .expect("trace inserted above");
        let doc = Doc { raw, entity, bytes };
        let earlier = trace.index.get(&doc.entity.id).map(|&i| {
            #[cfg(test)]
            tests::LOOKED_AT.with(|n| n.set(n.get() + 1));
            &mut trace.docs[i]
        });
        let outcome = match earlier {
            Some(old) if !old.entity.in_progress && doc.entity.in_progress => {
                self.stats.stale_ignored += 1;
                return Outcome::StaleIgnored;
            }
            Some(old) => {
                trace.bytes = trace.bytes - old.bytes + bytes;
                self.bytes = self.bytes - old.bytes + bytes;
                *old = doc;
                self.stats.replaced += 1;
                Outcome::Replaced
            }
            None => {
                trace.bytes += bytes;
                self.bytes += bytes;
                trace.index.insert(doc.entity.id.clone(), trace.docs.len());
                trace.docs.push(doc);
                Outcome::Added
            }
        };
        self.stats.documents += 1;
        self.evict();
        outcome
    }

    /// Restores the bookkeeping after a panic in [`Store::insert`] (a bug) left it half
    /// updated: the order lists each held trace once, each trace's index points at its
    /// documents, every charge is recomputed from the documents held, the counters agree
    /// with them, and the bounds hold again.
    /// Left as it was, a charge for a trace never held would never be freed, and the
    /// store would keep less and less.
    pub fn repair(&mut self) {
        let mut listed = HashSet::new();
        let traces = &self.traces;
        self.order
            .retain(|id| traces.contains_key(id) && listed.insert(id.clone()));
        for id in self.traces.keys() {
            if !listed.contains(id) {
                self.order.push_back(id.clone());
            }
        }
        self.bytes = 0;
        for t in self.traces.values_mut() {
            t.index = t
                .docs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.entity.id.clone(), i))
                .collect();
            t.bytes = TRACE_OVERHEAD + t.id.len() + t.docs.iter().map(|d| d.bytes).sum::<usize>();
            self.bytes += t.bytes;
        }
        self.stats.traces_created = self.stats.traces_evicted + self.traces.len() as u64;
        self.evict();
    }

    /// Checks the byte accounting and the bounds: every trace's charge is
    /// its documents' plus its overhead, the store's is the sum of its
    /// traces', both bounds hold, and every trace created is held or was
    /// counted as evicted.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut sum = 0;
        for t in self.traces() {
            let docs: usize = t.docs.iter().map(|d| d.bytes).sum();
            if t.bytes != docs + TRACE_OVERHEAD + t.id.len() {
                return Err(format!("trace {} charged {} for {docs}", t.id, t.bytes));
            }
            if let Some(d) = t.docs.iter().find(|d| d.bytes < d.raw.len() + DOC_OVERHEAD) {
                return Err(format!("document {} charged {}", d.entity.id, d.bytes));
            }
            let indexed = t
                .docs
                .iter()
                .enumerate()
                .all(|(i, d)| t.index.get(&d.entity.id) == Some(&i));
            if !indexed || t.index.len() != t.docs.len() {
                return Err(format!("trace {} index {:?}", t.id, t.index));
            }
            sum += t.bytes;
        }
        if sum != self.bytes || self.order.len() != self.traces.len() {
            return Err(format!("store charged {} for {sum}", self.bytes));
        }
        if self.len() > self.limits.max_traces || self.bytes > self.limits.max_bytes {
            return Err(format!(
                "{} traces, {} bytes over {:?}",
                self.len(),
                self.bytes,
                self.limits
            ));
        }
        if self.stats.traces_created != self.stats.traces_evicted + self.len() as u64 {
            return Err(format!("{:?} with {} held", self.stats, self.len()));
        }
        Ok(())
    }

    fn evict(&mut self) {
        while self.traces.len() > self.limits.max_traces || self.bytes > self.limits.max_bytes {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            if let Some(t) = self.traces.remove(&id) {
                self.bytes -= t.bytes;
                self.stats.traces_evicted += 1;
                self.stats.bytes_evicted += t.bytes as u64;
            }
        }
    }
}

/// A trace with its streamed subsegments grafted into their parents.
#[derive(Debug, Clone, Default)]
pub struct Assembled {
    /// The trace id.
    pub id: String,
    /// Segments (each with its subsegment tree), by start time.
    pub segments: Vec<Entity>,
    /// Independent subsegments whose parent never arrived (trees), by start time.
    pub orphans: Vec<Entity>,
    /// Independent subsegments in or under a parent cycle (a chain of parent_ids that
    /// loops), as trees: each loop is broken at its earliest member, the root of its tree,
    /// whose `parent_id` then lies in its own subtree. By start time.
    pub cycles: Vec<Entity>,
    /// The ids of the independent subsegments on such a loop (not those merely under one).
    pub looped: HashSet<String>,
    /// Streamed subsegments nested deeper than [`MAX_DEPTH`] levels, cut from their
    /// parent and shown apart (trees, each grafted up to [`MAX_DEPTH`] levels deep in
    /// turn), by start time. Each one's `parent_id` is the entity it was cut from.
    pub deep: Vec<Entity>,
    /// Why the trace is partial (in progress, missing parents, parent cycles, clock skew,
    /// nesting too deep); empty if whole.
    pub partial: Vec<String>,
}

/// Which copy of a subsegment sent twice counts (X-Ray keeps one document per id): a
/// complete copy over one in progress, whichever came first; of two alike, the one
/// embedded in its parent's document (SPEC §1: a subsegment streamed while in progress
/// is sent again, finished, inside its parent's).
struct Copies<'a> {
    /// The streamed documents (indexes in `docs`) another copy supersedes.
    superseded: HashSet<usize>,
    /// The ids of embedded copies in progress that a complete streamed copy replaces.
    replaced: HashSet<&'a str>,
}

impl<'a> Copies<'a> {
    fn of(docs: &'a [Doc]) -> Copies<'a> {
        // The subsegments embedded in some document, and whether a copy is complete.
        let mut embedded: HashMap<&str, bool> = HashMap::new();
        for d in docs {
            for c in &d.entity.children {
                c.walk(&mut |e, _| {
                    let complete = embedded.entry(e.id.as_str()).or_insert(false);
                    *complete |= !e.in_progress;
                });
            }
        }
        let mut superseded = HashSet::new();
        let mut replaced = HashSet::new();
        for (i, d) in docs.iter().enumerate() {
            if !d.entity.is_subsegment {
                continue;
            }
            match embedded.get(d.entity.id.as_str()) {
                Some(&complete) if complete || d.entity.in_progress => {
                    superseded.insert(i);
                }
                Some(_) => {
                    replaced.insert(d.entity.id.as_str());
                }
                None => {}
            }
        }
        Copies {
            superseded,
            replaced,
        }
    }

    /// Removes from `e`'s tree the embedded copies in progress a complete streamed copy
    /// replaces. A loop, not a recursion: trees may be deep.
    fn prune(&self, e: &mut Entity) {
        if self.replaced.is_empty() {
            return;
        }
        let mut stack = vec![e];
        while let Some(n) = stack.pop() {
            n.children
                .retain(|c| !(c.in_progress && self.replaced.contains(c.id.as_str())));
            stack.extend(n.children.iter_mut());
        }
    }
}

impl Trace {
    /// The documents that count: each subsegment sent twice once, as [`Trace::assemble`]
    /// draws it (a late in-progress copy is ignored).
    pub fn counted_docs(&self) -> impl Iterator<Item = &Doc> {
        let copies = Copies::of(&self.docs);
        self.docs
            .iter()
            .enumerate()
            .filter(move |(i, _)| !copies.superseded.contains(i))
            .map(|(_, d)| d)
    }

    /// Grafts streamed subsegments into their parents and notes what is partial.
    pub fn assemble(&self) -> Assembled {
        let mut segments = Vec::new();
        let mut pending: HashMap<String, Vec<Entity>> = HashMap::new();
        // The ids in the streamed subsegments: each one's own and those it embeds, for a
        // streamed subsegment's parent may be any of them.
        let mut pending_ids: HashSet<&str> = HashSet::new();
        // Of a subsegment sent twice, only one copy is drawn.
        let copies = Copies::of(&self.docs);
        for (i, d) in self.docs.iter().enumerate() {
            if copies.superseded.contains(&i) {
                continue;
            }
            if d.entity.is_subsegment {
                let parent = d.entity.parent_id.clone().unwrap_or_default();
                d.entity.walk(&mut |e, _| {
                    pending_ids.insert(e.id.as_str());
                });
                let mut e = d.entity.clone();
                copies.prune(&mut e);
                pending.entry(parent).or_default().push(e);
            } else {
                let mut e = d.entity.clone();
                copies.prune(&mut e);
                segments.push(e);
            }
        }
        /// Grafts the pending subsegments under `e` (at nesting `depth`) and, recursively,
        /// under its descendants; at [`MAX_DEPTH`], moves them to `cut` instead.
        fn attach(
            e: &mut Entity,
            depth: usize,
            pending: &mut HashMap<String, Vec<Entity>>,
            cut: &mut Vec<Entity>,
        ) {
            for c in &mut e.children {
                attach(c, depth + 1, pending, cut);
            }
            let Some(mut more) = pending.remove(&e.id) else {
                return;
            };
            if depth >= MAX_DEPTH {
                cut.append(&mut more);
                return;
            }
            for m in &mut more {
                attach(m, depth + 1, pending, cut);
            }
            e.children.extend(more);
            e.children.sort_by(|a, b| a.start.total_cmp(&b.start));
        }
        /// Grafts under each of `roots`, then under each subtree cut from them at
        /// [`MAX_DEPTH`], which goes to `deep` as a tree of its own. A loop, not a
        /// recursion: each tree is at most [`MAX_DEPTH`] deep, however long the chain.
        fn graft(
            roots: &mut [Entity],
            pending: &mut HashMap<String, Vec<Entity>>,
            deep: &mut Vec<Entity>,
        ) {
            let mut cut = Vec::new();
            for r in roots {
                attach(r, 0, pending, &mut cut);
            }
            while let Some(mut c) = cut.pop() {
                attach(&mut c, 0, pending, &mut cut);
                deep.push(c);
            }
        }
        let mut deep = Vec::new();
        graft(&mut segments, &mut pending, &mut deep);
        // What is left has no parent among the segments: find the roots among the orphans.
        let mut orphans: Vec<Entity> = Vec::new();
        let mut rest = Vec::new();
        for (parent, list) in pending.drain() {
            if pending_ids.contains(parent.as_str()) {
                rest.push((parent, list));
            } else {
                orphans.extend(list);
            }
        }
        let mut rest_map: HashMap<String, Vec<Entity>> = rest.into_iter().collect();
        graft(&mut orphans, &mut rest_map, &mut deep);
        // Anything still unattached hangs from a parent cycle: a chain of parents that loops
        // (a's parent is b and b's is a, or a is its own parent). Each loop is broken at its
        // earliest subsegment, which is shown apart with all that hangs under it.
        let mut left: Vec<Entity> = rest_map.into_values().flatten().collect();
        left.sort_by(|a, b| a.start.total_cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
        let n = left.len();
        // Which of them holds each id (its own or one it embeds), and so each one's parent
        // among them (always there: a parent that was grafted took what hangs under it).
        let up: Vec<Option<usize>> = {
            let mut holder: HashMap<&str, usize> = HashMap::new();
            for (i, e) in left.iter().enumerate() {
                e.walk(&mut |x, _| {
                    holder.entry(x.id.as_str()).or_insert(i);
                });
            }
            left.iter()
                .map(|e| {
                    holder
                        .get(e.parent_id.as_deref().unwrap_or_default())
                        .copied()
                })
                .collect()
        };
        // From each one not yet seen, follow the parents until the walk steps on itself
        // (a new loop) or on an earlier walk (none): each one is stepped on once.
        const NEW: u8 = 0;
        const ON_WALK: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![NEW; n];
        let mut looped = vec![false; n];
        let mut head = vec![false; n];
        let mut loops = 0;
        let mut walk = Vec::new();
        for i in 0..n {
            let mut at = Some(i);
            while let Some(j) = at.filter(|&j| state[j] == NEW) {
                #[cfg(test)]
                tests::STEPPED_ON.with(|c| c.set(c.get() + 1));
                state[j] = ON_WALK;
                walk.push(j);
                at = up[j];
            }
            match at {
                Some(j) if state[j] == ON_WALK => {
                    // Around the loop through j: `left` is by start, so the least index
                    // is the earliest member.
                    loops += 1;
                    let (mut k, mut first) = (j, j);
                    loop {
                        #[cfg(test)]
                        tests::STEPPED_ON.with(|c| c.set(c.get() + 1));
                        looped[k] = true;
                        first = first.min(k);
                        match up[k] {
                            Some(p) if p != j => k = p,
                            _ => break,
                        }
                    }
                    head[first] = true;
                }
                Some(_) => {}
                // No parent among them (which cannot be): shown from there all the same.
                None => head[walk.last().copied().unwrap_or(i)] = true,
            }
            for w in walk.drain(..) {
                state[w] = DONE;
            }
        }
        let looped: HashSet<String> = (0..n)
            .filter(|&i| looped[i])
            .map(|i| left[i].id.clone())
            .collect();
        let mut cycles = Vec::new();
        let mut rest_map: HashMap<String, Vec<Entity>> = HashMap::new();
        for (i, e) in left.into_iter().enumerate() {
            if head[i] {
                cycles.push(e);
            } else {
                let parent = e.parent_id.clone().unwrap_or_default();
                rest_map.entry(parent).or_default().push(e);
            }
        }
        graft(&mut cycles, &mut rest_map, &mut deep);
        // Nothing is left (every one leads to a head); were anything, it is still shown.
        cycles.extend(rest_map.into_values().flatten());
        segments.sort_by(|a, b| a.start.total_cmp(&b.start));
        orphans.sort_by(|a, b| a.start.total_cmp(&b.start));
        cycles.sort_by(|a, b| a.start.total_cmp(&b.start));
        deep.sort_by(|a, b| a.start.total_cmp(&b.start));

        let mut partial = Vec::new();
        if !orphans.is_empty() {
            partial.push(format!(
                "{} subsegment(s) whose parent has not arrived",
                orphans.len()
            ));
        }
        if !cycles.is_empty() {
            partial.push(format!(
                "{} subsegment(s) in {loops} parent cycle(s) (parent_ids that lead back to \
                 themselves) are shown apart, each loop from its earliest subsegment",
                looped.len()
            ));
        }
        if segments.is_empty() {
            partial.push("no segment received yet".to_owned());
        }
        if !deep.is_empty() {
            let mut moved = 0;
            for d in &deep {
                d.walk(&mut |_, _| moved += 1);
            }
            let under: HashSet<&str> = deep.iter().filter_map(|d| d.parent_id.as_deref()).collect();
            partial.push(format!(
                "{moved} subsegment(s) nested deeper than {MAX_DEPTH} levels are shown apart, \
                 cut from under {} subsegment(s); the critical path does not follow them",
                under.len()
            ));
        }
        let mut in_progress = 0;
        let mut skew = 0;
        for s in segments.iter().chain(&orphans).chain(&cycles).chain(&deep) {
            s.walk(&mut |e, _| {
                if e.in_progress {
                    in_progress += 1;
                }
                for c in &e.children {
                    let late = match (c.end, e.end) {
                        (Some(ce), Some(pe)) => ce > pe + 1e-6,
                        _ => false,
                    };
                    if c.start + 1e-6 < e.start || late {
                        skew += 1;
                    }
                }
            });
        }
        if in_progress > 0 {
            partial.push(format!("{in_progress} segment(s) still in progress"));
        }
        if skew > 0 {
            partial.push(format!(
                "{skew} subsegment(s) outside their parent's time range (clock skew or late parts)"
            ));
        }
        Assembled {
            id: self.id.clone(),
            segments,
            orphans,
            cycles,
            looped,
            deep,
            partial,
        }
    }
}

impl Assembled {
    /// Every top-level tree: segments, orphans, parent cycles, then the subtrees nested
    /// too deep.
    pub fn roots(&self) -> impl Iterator<Item = &Entity> {
        self.segments
            .iter()
            .chain(&self.orphans)
            .chain(&self.cycles)
            .chain(&self.deep)
    }

    /// Earliest start and latest end (or start, for in-progress parts) of all entities.
    pub fn span(&self) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for r in self.roots() {
            r.walk(&mut |e, _| {
                lo = lo.min(e.start);
                hi = hi.max(e.end.unwrap_or(e.start));
            });
        }
        if lo.is_finite() {
            (lo, hi.max(lo))
        } else {
            (0.0, 0.0)
        }
    }

    /// The root segment: the earliest segment without a `parent_id`, else the earliest
    /// segment.
    pub fn root(&self) -> Option<&Entity> {
        self.segments
            .iter()
            .find(|s| s.parent_id.is_none())
            .or_else(|| self.segments.first())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A document with this name makes [`Store::insert`] panic half-way through (a
    /// stand-in for any bug in parsing or storing).
    pub(crate) const PANIC_MARKER: &str = "panic injected by a test";

    thread_local! {
        /// Documents [`Store::insert`] has looked at to find an earlier copy, on this
        /// thread.
        pub(crate) static LOOKED_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        /// Steps [`Trace::assemble`] has taken in its search for parent cycles, on this
        /// thread: along the parents of the subsegments left over, then around each loop
        /// found.
        pub(crate) static STEPPED_ON: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// How many documents an assembled trace shows, and its deepest level.
    fn shown_and_deepest(a: &Assembled) -> (usize, usize) {
        let (mut count, mut deepest) = (0, 0);
        for r in a.roots() {
            r.walk(&mut |_, d| {
                count += 1;
                deepest = deepest.max(d);
            });
        }
        (count, deepest)
    }

    fn put(store: &mut Store, v: serde_json::Value) -> Outcome {
        let e = Entity::from_document(&v).unwrap();
        store.insert(v.to_string(), e)
    }

    /// A streamed subsegment of trace `t`, named after its id.
    fn sub(id: &str, parent: &str, start: f64, end: f64) -> serde_json::Value {
        json!({"trace_id":"t","id":id,"type":"subsegment","parent_id":parent,"name":id,
            "start_time":start,"end_time":end})
    }

    #[test]
    fn in_progress_is_replaced_and_late_copy_ignored() {
        let mut s = Store::new(Limits::default());
        let ip = json!({"trace_id":"t1","id":"a","name":"n","start_time":1.0,"in_progress":true});
        let done = json!({"trace_id":"t1","id":"a","name":"n","start_time":1.0,"end_time":2.0});
        assert_eq!(put(&mut s, ip.clone()), Outcome::Added);
        assert!(s.get("t1").unwrap().assemble().partial[0].contains("in progress"));
        assert_eq!(put(&mut s, done), Outcome::Replaced);
        assert_eq!(put(&mut s, ip), Outcome::StaleIgnored);
        let t = s.get("t1").unwrap();
        assert_eq!(t.docs.len(), 1);
        assert!(t.assemble().partial.is_empty());
        let sum: usize = t.docs.iter().map(|d| d.bytes).sum::<usize>() + TRACE_OVERHEAD + 2;
        assert_eq!(s.bytes(), sum);
    }

    #[test]
    fn streamed_subsegments_are_grafted_and_orphans_kept() {
        let mut s = Store::new(Limits::default());
        for d in [
            sub("c", "b", 1.2, 1.3),
            sub("b", "a", 1.1, 1.5),
            sub("x", "zz", 1.1, 1.5),
            sub("y", "x", 1.1, 1.5),
        ] {
            put(&mut s, d);
        }
        put(
            &mut s,
            json!({"trace_id":"t","id":"a","name":"a","start_time":1.0,"end_time":2.0}),
        );
        let a = s.get("t").unwrap().assemble();
        assert_eq!(a.segments.len(), 1);
        assert_eq!(a.segments[0].children[0].id, "b");
        assert_eq!(a.segments[0].children[0].children[0].id, "c");
        assert_eq!(a.orphans.len(), 1);
        assert_eq!(a.orphans[0].children[0].id, "y");
        assert_eq!(a.partial.len(), 1);
    }

    #[test]
    fn a_parent_embedded_in_an_orphan_is_found() {
        // x's parent never arrives; y's parent is a subsegment embedded in x.
        let mut s = Store::new(Limits::default());
        put(&mut s, sub("y", "x1", 1.2, 1.3));
        let mut x = sub("x", "zz", 1.1, 1.5);
        x["subsegments"] = json!([{"id":"x1","name":"x1","start_time":1.1,"end_time":1.4}]);
        put(&mut s, x);
        let a = s.get("t").unwrap().assemble();
        assert_eq!(a.orphans.len(), 1, "{:?}", a.orphans);
        assert_eq!(a.orphans[0].children[0].children[0].id, "y");
        assert!(
            a.partial[0].starts_with("1 subsegment(s) whose parent has not arrived"),
            "{:?}",
            a.partial
        );
    }

    #[test]
    fn parent_cycles_are_shown_apart_from_their_earliest_member() {
        // a's parent is b and b's is a, with c under a; d is its own parent; e's parent is
        // f1, embedded in f, whose parent is e1, embedded in e. None of them hangs from the
        // segment, and every parent has arrived.
        let mut s = Store::new(Limits::default());
        put(
            &mut s,
            json!({"trace_id":"t","id":"s","name":"s","start_time":1.0,"end_time":2.0}),
        );
        for d in [
            sub("a", "b", 1.2, 2.0),
            sub("b", "a", 1.1, 2.0),
            sub("c", "a", 1.3, 2.0),
            sub("d", "d", 1.6, 2.0),
        ] {
            put(&mut s, d);
        }
        let mut e = sub("e", "f1", 1.4, 2.0);
        e["subsegments"] = json!([{"id":"e1","name":"e1","start_time":1.4,"end_time":2.0}]);
        let mut f = sub("f", "e1", 1.5, 2.0);
        f["subsegments"] = json!([{"id":"f1","name":"f1","start_time":1.5,"end_time":2.0}]);
        put(&mut s, e);
        put(&mut s, f);
        let a = s.get("t").unwrap().assemble();
        assert!(a.orphans.is_empty(), "{:?}", a.orphans);
        assert_eq!(a.segments.len(), 1);
        assert!(a.segments[0].children.is_empty());
        // Each loop is one tree, from its earliest member.
        let tree = |e: &Entity| {
            let mut ids = Vec::new();
            e.walk(&mut |x, depth| ids.push(format!("{depth}{}", x.id)));
            ids.join(" ")
        };
        let trees: Vec<String> = a.cycles.iter().map(tree).collect();
        assert_eq!(trees, ["0b 1a 2c", "0e 1e1 2f 3f1", "0d"]);
        let mut looped: Vec<&str> = a.looped.iter().map(String::as_str).collect();
        looped.sort_unstable();
        assert_eq!(looped, ["a", "b", "d", "e", "f"]);
        assert_eq!(
            a.partial,
            [
                "5 subsegment(s) in 3 parent cycle(s) (parent_ids that lead back to themselves) \
                 are shown apart, each loop from its earliest subsegment"
            ]
        );
        assert_eq!(a.roots().count(), 4);
    }

    /// Stores a segment, `s0`, then `subsegments` as one trace, in a store bounded by
    /// neither count nor bytes; assembles it and draws its timeline on a spawned thread
    /// (default stack), as the HTTP workers do. Checks that every document is shown, none
    /// deeper than [`MAX_DEPTH`], and that each has a row on the timeline. Returns the
    /// assembly and the steps its search for parent cycles took ([`STEPPED_ON`]).
    fn assemble_on_default_stack(
        subsegments: impl IntoIterator<Item = serde_json::Value>,
    ) -> (Assembled, u64) {
        let mut s = Store::new(Limits {
            max_traces: 1,
            max_bytes: usize::MAX,
        });
        put(
            &mut s,
            json!({"trace_id":"t","id":"s0","name":"a","start_time":1.0,"end_time":2.0}),
        );
        let mut n = 1;
        for d in subsegments {
            put(&mut s, d);
            n += 1;
        }
        let trace = s.get("t").unwrap().clone();
        std::thread::spawn(move || {
            STEPPED_ON.with(|c| c.set(0));
            let a = trace.assemble();
            // Read before the timeline assembles the trace again.
            let stepped_on = STEPPED_ON.with(std::cell::Cell::get);
            let (count, deepest) = shown_and_deepest(&a);
            assert_eq!(count, n, "every document is shown");
            assert!(deepest <= MAX_DEPTH, "{deepest}");
            let tl = crate::timeline::build(&trace);
            assert_eq!(tl.groups.iter().map(|g| g.rows.len()).sum::<usize>(), n);
            (a, stepped_on)
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_long_parent_cycle_and_many_short_ones_are_linear_and_shallow() {
        // 30,000 streamed subsegments in one loop (each the parent of the next, the last
        // the parent of the first) and 15,000 loops of two: 60,000 documents, none of them
        // under the segment.
        let (long, pairs) = (30_000, 15_000);
        let (a, stepped_on) = assemble_on_default_stack(
            (0..long)
                .map(|i| sub(&format!("l{i}"), &format!("l{}", (i + 1) % long), 1.0, 2.0))
                .chain((0..pairs).flat_map(|i| {
                    [
                        sub(&format!("p{i}"), &format!("q{i}"), 1.0, 2.0),
                        sub(&format!("q{i}"), &format!("p{i}"), 1.0, 2.0),
                    ]
                })),
        );
        let looped = long + 2 * pairs;
        assert_eq!(a.cycles.len(), 1 + pairs);
        assert_eq!(a.looped.len(), looped);
        assert!(
            a.partial[0].starts_with(&format!(
                "{looped} subsegment(s) in {} parent cycle(s)",
                1 + pairs
            )),
            "{:?}",
            a.partial
        );
        // Linear: each subsegment is stepped on once following parents, and once more
        // going around its loop. Walking the parents from each one in turn until the walk
        // loops would take about 30,000²/2 steps in the long loop alone.
        assert_eq!(stepped_on, 2 * looped as u64, "steps for {looped} looped");
    }

    #[test]
    fn a_long_chain_of_streamed_subsegments_stays_shallow() {
        // 100,000 documents: a segment and a chain of streamed subsegments, each the
        // parent of the next: what a hostile or broken sender can put in one trace.
        let n = 100_000;
        let (a, _) = assemble_on_default_stack(
            (1..n).map(|i| sub(&format!("s{i}"), &format!("s{}", i - 1), 1.0, 2.0)),
        );
        assert!(
            a.partial.iter().any(|p| p.contains("deeper")),
            "{:?}",
            a.partial
        );
    }

    #[test]
    fn inserting_a_trace_streamed_in_many_documents_is_linear() {
        // A trace streamed as 20,000 independent subsegments, in progress, then each sent
        // again complete. Finding an earlier copy by scanning the trace's documents looks
        // at n² of them in all (4·10⁸ here, half a minute); by id, one per replacement.
        let n = 20_000;
        let mut s = Store::new(Limits {
            max_traces: 1,
            max_bytes: usize::MAX,
        });
        let doc = |i: usize, done: bool| {
            let mut d = sub(&format!("{i:016x}"), "root", 1.0, 2.0);
            if !done {
                d.as_object_mut().unwrap().remove("end_time");
                d["in_progress"] = json!(true);
            }
            d
        };
        LOOKED_AT.with(|c| c.set(0));
        for i in 0..n {
            assert_eq!(put(&mut s, doc(i, false)), Outcome::Added);
        }
        for i in 0..n {
            assert_eq!(put(&mut s, doc(i, true)), Outcome::Replaced);
        }
        let looked_at = LOOKED_AT.with(std::cell::Cell::get);
        assert_eq!(looked_at, n as u64, "documents looked at for {n}");
        assert_eq!(s.get("t").unwrap().docs.len(), n);
        s.check().unwrap();
    }

    #[test]
    fn accounting_holds_through_adds_replacements_and_evictions() {
        // A small deterministic PRNG (xorshift64*), so failures reproduce.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut s = Store::new(Limits {
            max_traces: 50,
            max_bytes: 40_000,
        });
        for _ in 0..5_000 {
            let trace = next() % 80;
            let id = next() % 4;
            let pad = "x".repeat((next() % 3_000) as usize);
            let in_progress = next() % 4 == 0;
            let doc = if in_progress {
                json!({"trace_id":format!("t{trace}"),"id":format!("{id}"),"name":"n","start_time":1.0,"in_progress":true,"metadata":{"pad":pad}})
            } else {
                json!({"trace_id":format!("t{trace}"),"id":format!("{id}"),"name":"n","start_time":1.0,"end_time":2.0,"metadata":{"pad":pad}})
            };
            put(&mut s, doc);
            s.check().unwrap();
        }
        let st = s.stats();
        assert!(
            st.replaced > 0 && st.stale_ignored > 0 && st.traces_evicted > 0,
            "{st:?}"
        );
    }

    #[test]
    fn evicts_oldest_by_count_and_bytes() {
        let mut s = Store::new(Limits {
            max_traces: 10,
            max_bytes: 1_000_000,
        });
        for i in 0..25 {
            put(
                &mut s,
                json!({"trace_id":format!("t{i}"),"id":"a","name":"n","start_time":1.0,"end_time":2.0}),
            );
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.stats().traces_evicted, 15);
        assert!(s.get("t14").is_none() && s.get("t15").is_some());
        let total: usize = s.traces().map(|t| t.bytes).sum();
        assert_eq!(total, s.bytes());

        let mut s = Store::new(Limits {
            max_traces: 1000,
            max_bytes: 5_000,
        });
        for i in 0..100 {
            put(
                &mut s,
                json!({"trace_id":format!("t{i}"),"id":"a","name":"n","start_time":1.0,"end_time":2.0}),
            );
            assert!(s.bytes() <= 5_000);
        }
        assert!(s.stats().traces_evicted > 50);
        assert_eq!(
            s.stats().traces_evicted as usize + s.len(),
            s.stats().traces_created as usize
        );
    }
}
