//! The live layers, by the tag their spans carry ([`SpanData::owner`]).
//!
//! [`crate::XraySpanExt`] reaches a span's data through the subscriber,
//! which finds only its outermost `XrayLayer`. Several layers with disjoint
//! per-layer filters (one per service or exporter) share one subscriber: a
//! span's sampling decision, trace buffer and configuration are its own
//! layer's, found here by its tag.
//!
//! Tags are 1 to 255 (a byte in every span's data), reused once their layer
//! is gone. Past 255 layers alive at once, a layer gets tag 0: its spans
//! are looked up as before, through the outermost layer.
//!
//! [`SpanData::owner`]: crate::span_data::SpanData::owner

use std::sync::{Arc, Mutex, Weak};

use crate::layer::LayerInner;

/// Slot `tag - 1` holds the layer of `tag`.
static OWNERS: Mutex<Vec<Weak<LayerInner>>> = Mutex::new(Vec::new());

/// Tags a byte can hold (0 is "none").
const MAX_TAGS: usize = u8::MAX as usize;

/// Builds a layer with `make(tag)`, under a tag no live layer holds.
pub(crate) fn register(make: impl FnOnce(u8) -> LayerInner) -> Arc<LayerInner> {
    let mut owners = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
    let free = owners.iter().position(|w| w.strong_count() == 0);
    let slot = match free {
        Some(i) => Some(i),
        None if owners.len() < MAX_TAGS => {
            owners.push(Weak::new());
            Some(owners.len() - 1)
        }
        None => None,
    };
    let Some(slot) = slot else {
        return Arc::new(make(0));
    };
    let tag = u8::try_from(slot + 1).unwrap_or(0);
    let inner = Arc::new(make(tag));
    owners[slot] = Arc::downgrade(&inner);
    inner
}

/// The live layer of `tag` (not 0).
pub(crate) fn get(tag: u8) -> Option<Arc<LayerInner>> {
    let owners = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
    owners.get(usize::from(tag).checked_sub(1)?)?.upgrade()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Arc<LayerInner> {
        let layer = crate::builder()
            .with_exporter(crate::export::NoopExporter)
            .build();
        layer.inner.clone().unwrap()
    }

    #[test]
    fn tags_name_live_layers_and_are_reused() {
        let a = layer();
        let b = layer();
        assert_ne!(a.tag, 0);
        assert_ne!(a.tag, b.tag);
        assert!(Arc::ptr_eq(&get(a.tag).unwrap(), &a));
        assert!(Arc::ptr_eq(&get(b.tag).unwrap(), &b));
        let tag = a.tag;
        drop(a);
        assert!(get(tag).is_none(), "gone with its layer");
        assert!(get(0).is_none());
    }
}
