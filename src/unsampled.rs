//! A lock-free memo of spans known to belong to unsampled traces, so that
//! the spans of an unsampled request cost almost nothing.
//!
//! Without it, every child of an unsampled trace would read its parent's
//! extensions to learn the decision, and look itself up again when it
//! closes. With it, a child whose parent is remembered here is remembered in
//! turn, and its close is a load and a store.
//!
//! The memo is a fixed array of slots indexed by a hash of the span's
//! [`Id`], each holding one id or 0. It is only ever a shortcut: a miss (an
//! empty slot, or one another span has overwritten) sends the caller down
//! the ordinary path through the registry, which gives the same answer.
//!
//! **Why a hit can be trusted.** The registry reuses an id only after the
//! span holding it has closed. An id enters the memo while its span is open
//! (at its creation, or while a child is being created, which holds the
//! span open), and the span's close removes it if it is still there, before
//! the registry frees the slot. So a slot never holds the id of a closed
//! span, and a hit always names the live span the caller asked about.
//! Orderings: `Release` stores and `Acquire` loads; the happens-before the
//! registry itself establishes between a span's close and the reuse of its
//! id keeps a reader from seeing the value of an earlier span with that id.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_core::span::Id;

/// Slots per memo: 8 KiB. More open unsampled spans than this only means
/// more misses, never a wrong answer.
const SLOTS: usize = 1024;

/// A set of open span ids, see the module docs.
pub(crate) struct UnsampledIds {
    slots: Box<[AtomicU64]>,
}

impl std::fmt::Debug for UnsampledIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsampledIds")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for UnsampledIds {
    fn default() -> Self {
        UnsampledIds {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl UnsampledIds {
    fn slot(&self, id: u64) -> &AtomicU64 {
        // Fibonacci hashing: the registry's ids differ in their low bits
        // (slab index) and their high bits (generation).
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros());
        &self.slots[h as usize]
    }

    /// Whether `id` is remembered.
    #[inline]
    pub(crate) fn contains(&self, id: &Id) -> bool {
        let id = id.into_u64();
        self.slot(id).load(Ordering::Acquire) == id
    }

    /// Remembers `id`, which must be the id of an open span, replacing
    /// whatever its slot held.
    #[inline]
    pub(crate) fn insert(&self, id: &Id) {
        let id = id.into_u64();
        self.slot(id).store(id, Ordering::Release);
    }

    /// Forgets `id`; whether it was remembered.
    #[inline]
    pub(crate) fn remove(&self, id: &Id) -> bool {
        let id = id.into_u64();
        let slot = self.slot(id);
        if slot.load(Ordering::Acquire) != id {
            return false;
        }
        // A plain store, no locked operation. Between the load and the store
        // only another span's insert can change the slot (no other span
        // holds `id` while this one is open), and clearing that entry costs
        // that span a miss, never a wrong answer: only entries ever vanish.
        slot.store(0, Ordering::Release);
        true
    }
}

/// The open spans a panic unwound through, marked a fault as they close: a
/// set that never loses an entry. Its slots, as [`UnsampledIds`]', are
/// taken with a compare-and-swap (an occupied slot is never overwritten);
/// an id whose slot another span holds goes to a short list behind a lock.
/// Panics are rare: the list is almost always empty, and a close reads its
/// length alone.
pub(crate) struct UnwoundIds {
    slots: UnsampledIds,
    overflow: std::sync::Mutex<Vec<u64>>,
    overflow_len: std::sync::atomic::AtomicUsize,
}

/// The most ids the list holds (32 KiB): past it a mark is lost, as
/// [`UnwoundIds::insert`] says.
const MAX_OVERFLOW: usize = 4096;

impl std::fmt::Debug for UnwoundIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwoundIds")
            .field("overflow", &self.overflow_len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for UnwoundIds {
    fn default() -> Self {
        UnwoundIds {
            slots: UnsampledIds::default(),
            overflow: std::sync::Mutex::new(Vec::new()),
            overflow_len: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl UnwoundIds {
    /// Remembers `id`, the id of an open span. A mark is lost only when its
    /// slot is taken and the list already holds 4,096 ids: that many spans
    /// a panic went through, open at once.
    pub(crate) fn insert(&self, id: &Id) {
        let raw = id.into_u64();
        let slot = self.slots.slot(raw);
        match slot.compare_exchange(0, raw, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(held) if held == raw => {}
            Err(_) => {
                let mut list = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                if !list.contains(&raw) && list.len() < MAX_OVERFLOW {
                    list.push(raw);
                    self.overflow_len.store(list.len(), Ordering::Release);
                }
            }
        }
    }

    /// Forgets `id`, from its slot and from the list (a span a panic went
    /// through again once its slot was free is in both); whether it was
    /// remembered. Two loads for a span no panic went through, while the
    /// list is empty.
    #[inline]
    pub(crate) fn remove(&self, id: &Id) -> bool {
        let raw = id.into_u64();
        let slot = self.slots.slot(raw);
        // Only this span's close clears `raw`; others only fill an empty
        // slot: the exchange cannot fail once the load saw `raw`.
        let in_slot = slot.load(Ordering::Acquire) == raw
            && slot
                .compare_exchange(raw, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return in_slot;
        }
        let mut list = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = list.iter().position(|&held| held == raw) else {
            return in_slot;
        };
        list.swap_remove(at);
        self.overflow_len.store(list.len(), Ordering::Release);
        true
    }
}

#[cfg(test)]
impl UnsampledIds {
    /// Whether no slot holds an id.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.load(Ordering::Acquire) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets() {
        let memo = UnsampledIds::default();
        let a = Id::from_u64(42);
        assert!(!memo.contains(&a));
        memo.insert(&a);
        assert!(memo.contains(&a));
        assert!(memo.remove(&a));
        assert!(!memo.contains(&a));
        assert!(!memo.remove(&a));
    }

    #[test]
    fn a_collision_is_a_miss_never_a_false_hit() {
        let memo = UnsampledIds::default();
        // Find two ids sharing a slot.
        let a = 1_u64;
        let b = (2..)
            .find(|&b| std::ptr::eq(memo.slot(a), memo.slot(b)))
            .unwrap();
        let (a, b) = (Id::from_u64(a), Id::from_u64(b));
        memo.insert(&a);
        memo.insert(&b);
        assert!(!memo.contains(&a), "overwritten: a miss");
        assert!(memo.contains(&b));
        // a's close must not evict b.
        assert!(!memo.remove(&a));
        assert!(memo.contains(&b));
    }

    #[test]
    fn unwound_ids_keep_every_mark_whatever_the_slots() {
        let memo = UnwoundIds::default();
        // Ids that share a slot: each is kept, and each forgotten alone.
        let slot_of = |id: u64| memo.slots.slot(id) as *const AtomicU64;
        let first = Id::from_u64(1);
        let sharing: Vec<Id> = (2..200_000u64)
            .filter(|&n| slot_of(n) == slot_of(1))
            .take(3)
            .map(Id::from_u64)
            .collect();
        assert_eq!(sharing.len(), 3);
        memo.insert(&first);
        for id in &sharing {
            memo.insert(id);
            memo.insert(id);
        }
        assert!(!memo.remove(&Id::from_u64(1_000_000_007)));
        assert!(memo.remove(&sharing[1]));
        assert!(!memo.remove(&sharing[1]));
        assert!(memo.remove(&first));
        assert!(memo.remove(&sharing[0]));
        assert!(memo.remove(&sharing[2]));
        assert!(!memo.remove(&first));
        assert_eq!(memo.overflow_len.load(Ordering::Relaxed), 0);
        assert!(memo.slots.is_empty());

        // In the list while another held the slot, then in the slot too
        // once it was free (a second panic through a long-lived span): one
        // close forgets both.
        memo.insert(&first);
        memo.insert(&sharing[0]);
        assert!(memo.remove(&first));
        memo.insert(&sharing[0]);
        assert!(memo.remove(&sharing[0]));
        assert!(!memo.remove(&sharing[0]));
        assert_eq!(memo.overflow_len.load(Ordering::Relaxed), 0);
        assert!(memo.slots.is_empty());
    }

    #[test]
    fn ids_spread_over_the_slots() {
        let memo = UnsampledIds::default();
        // Consecutive slab indexes, as a busy registry hands them out.
        let used: std::collections::HashSet<*const AtomicU64> = (1..=SLOTS as u64)
            .map(|i| memo.slot(i) as *const AtomicU64)
            .collect();
        assert!(used.len() > SLOTS / 2, "{} slots used", used.len());
    }
}
