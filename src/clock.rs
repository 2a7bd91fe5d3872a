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
//! The calibration's rate differs from the OS clock's by 13-216 parts per
//! million on the project's VM, varying from process to process (a 2.5 s
//! span measured 0.4 ms long in a busy test process): uncorrected, a day-long
//! root's end would be seconds off. So the worker
//! measures that rate against the OS monotonic clock, over the whole life
//! of the process ([`recalibrate`]), and offsets are converted with it
//! ([`corrected`]), off the application's threads: the error falls as the
//! process lives. A rate that changes moves what is converted after the
//! change against what was before: a child streamed in the process's first
//! second, before the first measure, can be placed up to its offset times
//! the rate's error (at most about 0.2 ms here) apart from its parent sent
//! later.
//! Timeouts, deadlines and polling use `std::time::Instant`.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A reading of the span clock.
pub(crate) type Instant = quanta::Instant;

/// One reading of each clock, taken together at the first [`warm_up`] (or
/// since the two clocks last jumped apart), that [`recalibrate`] measures
/// from, and the correction it last took.
static CALIBRATION: Mutex<Calibration> = Mutex::new(Calibration {
    base: None,
    accepted: None,
});

struct Calibration {
    base: Option<(Instant, std::time::Instant)>,
    accepted: Option<i64>,
}

/// How much longer the OS clock measures an interval than the span clock,
/// in parts per billion: the last correction taken.
static CORRECTION_PPB: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// The correction a worker converts its batch with (see [`begin_batch`]).
    static BATCH_PPB: Cell<Option<i64>> = const { Cell::new(None) };
}

/// A correction past this is no calibration error (a suspended machine
/// whose counter kept running, a clock that jumped): it is not taken.
const MAX_CORRECTION_PPB: i64 = 1_000_000;

/// A measure this far from the correction taken before (50 ppm), a few
/// seconds into it, says the clocks jumped apart (a suspended machine):
/// measured again from there, the correction taken before kept meanwhile.
const JUMP_PPB: i64 = 50_000;

/// Two readings taken together further apart than this (the thread was
/// preempted between them) would skew the rate measured from them.
const MAX_READ_GAP: Duration = Duration::from_micros(2);

/// Calibrates the clock (about a millisecond, once per process) so that the
/// application's first span does not pay for it, and takes the readings
/// [`recalibrate`] measures from.
pub(crate) fn warm_up() {
    let _ = Instant::now();
    let mut calibration = CALIBRATION.lock().unwrap_or_else(|e| e.into_inner());
    if calibration.base.is_none() {
        calibration.base = Some(base());
    }
}

/// The best of a few [`together`] readings (the closest together).
fn base() -> (Instant, std::time::Instant) {
    let mut best = together();
    for _ in 0..10 {
        if best.2 <= MAX_READ_GAP {
            break;
        }
        let next = together();
        if next.2 < best.2 {
            best = next;
        }
    }
    (best.0, best.1)
}

/// A reading of the span clock, the OS clock's reading at the same moment
/// (the middle of two taken around it), and how far apart those two were.
fn together() -> (Instant, std::time::Instant, Duration) {
    let before = std::time::Instant::now();
    let ours = Instant::now();
    let after = std::time::Instant::now();
    let gap = after.duration_since(before);
    (ours, before + gap / 2, gap)
}

/// Measures the span clock's rate against the OS monotonic clock since
/// [`warm_up`] (once at least a second has passed), for [`corrected`]: the
/// error is the few microseconds between the readings over the time since,
/// so it falls as the process lives (about 1 ppm after 2 s, 0.001 ppm after
/// an hour). Three clock reads: the worker calls it (through
/// [`begin_batch`]) before each batch it serializes.
fn recalibrate() {
    // Another worker (another layer) is at it: its measure will do.
    let Ok(mut calibration) = CALIBRATION.try_lock() else {
        return;
    };
    let Some((ours_then, os_then)) = calibration.base else {
        return;
    };
    let (ours_now, os_now, gap) = together();
    if gap > MAX_READ_GAP {
        return; // preempted: measured again at the next batch
    }
    let ours = ours_now.saturating_duration_since(ours_then);
    let os = os_now.saturating_duration_since(os_then);
    match next_step(correction_ppb(ours, os), calibration.accepted, os) {
        Step::Take(ppb) => {
            calibration.accepted = Some(ppb);
            CORRECTION_PPB.store(ppb, Ordering::Relaxed);
        }
        Step::Rebase => calibration.base = Some((ours_now, os_now)),
        Step::Wait => {}
    }
}

/// What [`recalibrate`] does with a measure.
#[derive(Debug, PartialEq)]
enum Step {
    /// Take this correction.
    Take(i64),
    /// The clocks jumped apart: measure again from now on.
    Rebase,
    /// Too soon to tell: keep the correction taken before.
    Wait,
}

/// [`recalibrate`]'s choice, from the correction `measured` over `os` of
/// the OS clock since the base (none if too short or too large) and the
/// one taken before.
fn next_step(measured: Option<i64>, accepted: Option<i64>, os: Duration) -> Step {
    let jumped = match (measured, accepted) {
        (Some(ppb), Some(before)) => (ppb - before).abs() > JUMP_PPB,
        (None, _) => os >= Duration::from_secs(1),
        (Some(_), None) => false,
    };
    match measured {
        _ if jumped && os >= Duration::from_secs(3) => Step::Rebase,
        Some(ppb) if !jumped => Step::Take(ppb),
        _ => Step::Wait,
    }
}

/// Before a worker's batch: measures the rate again ([`recalibrate`]) and
/// takes it for every conversion of the batch on this thread, so that the
/// (sub)segments of one document are all placed at one rate, whatever
/// another layer's worker measures meanwhile.
pub(crate) fn begin_batch() {
    recalibrate();
    BATCH_PPB.with(|b| b.set(Some(CORRECTION_PPB.load(Ordering::Relaxed))));
}

/// How much longer `os` is than `ours`, the same interval measured by the
/// two clocks, in parts per billion: none under a second of measure, nor
/// past [`MAX_CORRECTION_PPB`].
fn correction_ppb(ours: Duration, os: Duration) -> Option<i64> {
    if os < Duration::from_secs(1) || ours.is_zero() {
        return None;
    }
    let (ours, os) = (ours.as_nanos() as i128, os.as_nanos() as i128);
    let ppb = i64::try_from((os - ours) * 1_000_000_000 / ours).ok()?;
    (ppb.abs() <= MAX_CORRECTION_PPB).then_some(ppb)
}

/// `offset`, measured by the span clock, as the OS clock measures it: at
/// the rate of this worker's batch, else the last measured.
pub(crate) fn corrected(offset: Duration) -> Duration {
    let ppb = BATCH_PPB
        .with(Cell::get)
        .unwrap_or_else(|| CORRECTION_PPB.load(Ordering::Relaxed));
    corrected_by(offset, ppb)
}

/// `offset` made longer by `ppb` parts per billion (shorter if negative).
fn corrected_by(offset: Duration, ppb: i64) -> Duration {
    if ppb == 0 {
        return offset;
    }
    let nanos = offset.as_nanos() as i128;
    let nanos = nanos + nanos * i128::from(ppb) / 1_000_000_000;
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
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
        // 100 µs of slack for the calibration (up to about 50 ppm,
        // uncorrected here) and rounding.
        let slack = Duration::from_micros(100);
        let (inner, outer) = (b0.duration_since(a1), b1.duration_since(a0));
        assert!(
            ours + slack >= inner && ours <= outer + slack,
            "{ours:?} outside {inner:?}..{outer:?}"
        );
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    }

    #[test]
    fn corrected_offsets_follow_the_measured_rate() {
        let second = Duration::from_secs(1);
        let micros = Duration::from_micros;
        assert_eq!(corrected_by(second, 30_000), second + micros(30));
        assert_eq!(corrected_by(second, -30_000), second - micros(30));
        assert_eq!(corrected_by(Duration::ZERO, 30_000), Duration::ZERO);
        assert_eq!(corrected_by(second, 0), second);
        // Measured: 30 µs more in 1 s by the OS clock is 30,000 ppb...
        assert_eq!(correction_ppb(second, second + micros(30)), Some(30_000));
        assert_eq!(correction_ppb(second + micros(30), second), Some(-29_999));
        // ... not under a second of measure, nor past 0.1 %.
        assert_eq!(correction_ppb(micros(999_999), micros(999_999)), None);
        assert_eq!(correction_ppb(second, second * 2), None);
        // A measure is taken once a second long; one far from the last
        // taken (a suspended machine) is waited on, then measured again.
        let secs = Duration::from_secs;
        assert_eq!(next_step(None, None, micros(500_000)), Step::Wait);
        assert_eq!(next_step(Some(30_000), None, secs(1)), Step::Take(30_000));
        assert_eq!(
            next_step(Some(31_000), Some(30_000), secs(9)),
            Step::Take(31_000)
        );
        assert_eq!(next_step(Some(200_000), Some(30_000), secs(2)), Step::Wait);
        assert_eq!(
            next_step(Some(200_000), Some(30_000), secs(9)),
            Step::Rebase
        );
        assert_eq!(next_step(None, Some(30_000), secs(2)), Step::Wait);
        assert_eq!(next_step(None, None, secs(9)), Step::Rebase);
        // The clocks of this process, over a second.
        let (ours, os) = base();
        std::thread::sleep(Duration::from_secs(1));
        let (ours_now, os_now, _) = together();
        let ppb = correction_ppb(ours_now - ours, os_now - os).unwrap();
        assert!(ppb.abs() < 1_000_000, "{ppb} ppb");
    }
}
