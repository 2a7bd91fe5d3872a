//! A per-second reservoir in one atomic word.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hands out at most `capacity` tokens per epoch second.
///
/// The state is `second << 32 | used` in one `AtomicU64`, updated with a
/// compare-and-swap loop: no lock, no allocation. Seconds are truncated to 32
/// bits (enough until 2106; after that they wrap, which only resets once).
#[derive(Debug, Default)]
pub(crate) struct Reservoir {
    state: AtomicU64,
}

impl Reservoir {
    pub(crate) const fn new() -> Self {
        Reservoir {
            state: AtomicU64::new(0),
        }
    }

    /// Takes one token for `now_sec` if fewer than `capacity` were taken in
    /// that second.
    pub(crate) fn try_take(&self, now_sec: u64, capacity: u64) -> bool {
        if capacity == 0 {
            return false;
        }
        let capacity = capacity.min(u64::from(u32::MAX));
        let sec = now_sec as u32;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (held_sec, used) = ((current >> 32) as u32, current & 0xFFFF_FFFF);
            let next = if starts_new_second(held_sec, sec) {
                (u64::from(sec) << 32) | 1
            } else if used < capacity {
                current + 1
            } else {
                return false;
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A thread that read the clock just before a second boundary must not reset
/// a reservoir another thread already moved to the next second (that would
/// hand out a second allowance). A larger backwards jump (the wall clock was
/// set back) does start over, so the reservoir never stalls.
fn starts_new_second(held: u32, now: u32) -> bool {
    held != now && held.wrapping_sub(now) != 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn capacity_per_second() {
        let r = Reservoir::new();
        assert!(r.try_take(100, 2));
        assert!(r.try_take(100, 2));
        assert!(!r.try_take(100, 2));
        assert!(r.try_take(101, 2));
        assert!(r.try_take(101, 2));
        assert!(!r.try_take(101, 2));
    }

    #[test]
    fn zero_capacity_never_gives() {
        let r = Reservoir::new();
        assert!(!r.try_take(5, 0));
        assert!(!r.try_take(6, 0));
    }

    #[test]
    fn a_slightly_stale_reader_does_not_reset() {
        let r = Reservoir::new();
        assert!(r.try_take(10_001, 1));
        // A thread that read 10 000 just before the boundary.
        assert!(!r.try_take(10_000, 1));
        // The clock set back by an hour starts over.
        assert!(r.try_take(10_001 - 3600, 1));
    }

    #[test]
    fn capacity_may_change_between_calls() {
        let r = Reservoir::new();
        assert!(r.try_take(7, 1));
        assert!(!r.try_take(7, 1));
        assert!(r.try_take(7, 3));
        assert!(r.try_take(7, 3));
        assert!(!r.try_take(7, 3));
    }

    #[test]
    fn concurrent_takers_get_exactly_capacity() {
        let r = Arc::new(Reservoir::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || (0..10_000).filter(|_| r.try_take(42, 1000)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
