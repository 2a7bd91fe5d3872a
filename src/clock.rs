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

    /// Monotonic, and in step with the standard clock over a sleep.
    #[test]
    fn measures_what_the_standard_clock_measures() {
        warm_up();
        let (a, std_a) = (Instant::now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let (b, std_b) = (Instant::now(), std::time::Instant::now());
        assert!(b >= a);
        let ours = b.saturating_duration_since(a).as_secs_f64();
        let theirs = std_b.duration_since(std_a).as_secs_f64();
        assert!((ours - theirs).abs() < 0.002, "{ours} s against {theirs} s");
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    }
}
