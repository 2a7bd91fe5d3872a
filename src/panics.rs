//! Panics of the application's own code (an exporter, a sampler, an error
//! type) that tracing-xray contains: their payloads are dropped without
//! letting a second panic out.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Drops a caught panic's payload. A payload whose `Drop` panics would
/// otherwise unwind out of the code that contained the first panic (the
/// worker thread, or a layer callback on the application's thread); that
/// second panic is caught too, and its own payload forgotten (a leak of a
/// few bytes, once per such panic) rather than dropped in turn.
pub(crate) fn discard(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Drops `value` (an exporter's error, handed back in an outcome), containing
/// a panic of its `Drop` as [`discard`] does.
pub(crate) fn drop_contained<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        discard(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics when dropped, with a payload that panics when dropped too.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                std::panic::panic_any(Bomb);
            }
        }
    }

    #[test]
    fn a_payload_whose_drop_panics_goes_no_further() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let payload = catch_unwind(|| std::panic::panic_any(Bomb)).unwrap_err();
        discard(payload);
        drop_contained(Bomb);
        drop_contained(vec![Bomb, Bomb]);
        std::panic::set_hook(hook);
    }
}
