//! The live layers, by the tag their spans carry ([`SpanData::owner`]).
//!
//! [`crate::XraySpanExt`] reaches a span's data through the subscriber,
//! which finds only its outermost `XrayLayer`. Several layers with disjoint
//! per-layer filters (one per service or exporter) share one subscriber: a
//! span's sampling decision, trace buffer and configuration are its own
//! layer's, found here by its tag.
//!
//! Tags are 1 to 255 (a byte in every span's data), never given twice.
//! Past 255 layers in the life of the process, a layer gets tag 0: its
//! spans are looked up through the subscriber's outermost layer.
//!
//! [`SpanData::owner`]: crate::span_data::SpanData::owner

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crate::layer::LayerInner;

/// Tags a byte can hold (0 is "none").
const MAX_TAGS: usize = u8::MAX as usize;

/// The layers by tag. A tag is never given twice: a layer swapped out (by a
/// `reload` layer) may leave open spans carrying its tag, which must never
/// lead to another layer. Past 255 layers in the life of the process (a
/// program that rebuilds its layer again and again), a layer gets tag 0.
pub(crate) struct Owners<T> {
    /// Slot `tag - 1` holds the layer of `tag`.
    slots: [OnceLock<Weak<T>>; MAX_TAGS],
    next: AtomicUsize,
}

/// The process's layers.
static OWNERS: Owners<LayerInner> = Owners::new();

impl<T> Owners<T> {
    const fn new() -> Self {
        Owners {
            slots: [const { OnceLock::new() }; MAX_TAGS],
            next: AtomicUsize::new(0),
        }
    }

    /// Builds a layer with `make(tag)`, under a tag of its own.
    fn register(&self, make: impl FnOnce(u8) -> T) -> Arc<T> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(cell) = self.slots.get(slot) else {
            return Arc::new(make(0));
        };
        let tag = u8::try_from(slot + 1).unwrap_or(0);
        let inner = Arc::new(make(tag));
        let _ = cell.set(Arc::downgrade(&inner));
        inner
    }

    /// The live layer of `tag` (not 0). No lock: a load and an upgrade.
    fn get(&self, tag: u8) -> Option<Arc<T>> {
        let slot = usize::from(tag).checked_sub(1)?;
        self.slots.get(slot)?.get()?.upgrade()
    }
}

/// Builds a layer with `make(tag)`, under a tag of its own.
pub(crate) fn register(make: impl FnOnce(u8) -> LayerInner) -> Arc<LayerInner> {
    OWNERS.register(make)
}

/// The live layer of `tag` (not 0).
pub(crate) fn get(tag: u8) -> Option<Arc<LayerInner>> {
    OWNERS.get(tag)
}

/// The tag of a live layer whose memo of unsampled spans holds `id`, or 0.
/// It names the layer of a child of an unsampled trace (which holds no data)
/// for a lookup from outside the callbacks, whatever way the layers were
/// combined. A memo can miss, and ids of another subscriber's spans can
/// match: the caller falls back to any layer's data when this one's leads
/// nowhere.
pub(crate) fn unsampled_owner(id: &tracing_core::span::Id) -> u8 {
    let registered = OWNERS.next.load(Ordering::Relaxed).min(MAX_TAGS);
    (1..=registered)
        .filter_map(|tag| OWNERS.get(u8::try_from(tag).ok()?))
        .find(|layer| layer.unsampled_spans.contains(id))
        .map_or(0, |layer| layer.tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_live_layers_and_are_never_given_twice() {
        let owners = Owners::new();
        let a = owners.register(|tag| tag);
        let b = owners.register(|tag| tag);
        assert_eq!((*a, *b), (1, 2));
        assert!(Arc::ptr_eq(&owners.get(1).unwrap(), &a));
        assert!(Arc::ptr_eq(&owners.get(2).unwrap(), &b));
        drop(a);
        assert!(owners.get(1).is_none(), "gone with its layer");
        // Not given again: a span of the layer gone may still be open.
        let c = owners.register(|tag| tag);
        assert_eq!(*c, 3);
        assert!(owners.get(1).is_none());
        assert!(owners.get(0).is_none());
    }

    #[test]
    fn past_255_layers_a_layer_gets_no_tag() {
        let owners = Owners::new();
        let kept: Vec<_> = (0..MAX_TAGS).map(|_| owners.register(|tag| tag)).collect();
        assert_eq!(**kept.last().unwrap(), 255);
        assert_eq!(*owners.register(|tag| tag), 0);
        assert!(owners.get(0).is_none());
    }
}
