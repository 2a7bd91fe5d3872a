//! The monotonic clock spans and events are timed with.
//!
//! Every span reads it twice (open and close), on the application's thread.
//! [`quanta`] reads the CPU's counter (the invariant TSC on x86_64, the
//! system counter on aarch64), scaled to nanoseconds by a calibration
//! against the OS's monotonic clock, and uses the OS clock itself where no
//! reliable counter exists. On the project's VM a read costs about 9 ns,
//! against about 23 ns for `std::time::Instant::now()`.
//!
//! Only offsets within a trace come from it: each trace pairs one reading
//! with the wall clock when its root opens ([`crate::span_data::Anchor`]).
//! The calibration differs from the OS clock's rate by about a part per
//! million here (0.6 µs per second, measured over 3 s), so a span is placed
//! within microseconds in a trace of seconds, and the error never
//! accumulates over the life of the process.
//! Timeouts, deadlines and polling use `std::time::Instant`.

/// A reading of the span clock.
pub(crate) type Instant = quanta::Instant;

/// Calibrates the clock (about a millisecond, once per process) so that the
/// application's first span does not pay for it.
pub(crate) fn warm_up() {
    let _ = Instant::now();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Monotonic, and in step with the standard clock over a sleep: each
    /// reading is taken between two standard ones, so the measured interval
    /// must fall between the standard clock's inner and outer intervals
    /// whatever preempts the thread in between.
    #[test]
    fn measures_what_the_standard_clock_measures() {
        warm_up();
        let bracket = || {
            let before = std::time::Instant::now();
            let ours = Instant::now();
            (before, ours, std::time::Instant::now())
        };
        let (a0, a, a1) = bracket();
        std::thread::sleep(Duration::from_millis(50));
        let (b0, b, b1) = bracket();
        assert!(b >= a);
        let ours = b.saturating_duration_since(a);
        // 100 µs of slack for the calibration (about 1 ppm) and rounding.
        let slack = Duration::from_micros(100);
        let (inner, outer) = (b0.duration_since(a1), b1.duration_since(a0));
        assert!(
            ours + slack >= inner && ours <= outer + slack,
            "{ours:?} outside {inner:?}..{outer:?}"
        );
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    }
}
