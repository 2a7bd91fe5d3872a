//! The rungs of `span.rs`, counted in CPU instructions instead of timed:
//! a measure the machine's load does not move, to complement the wall-clock
//! ratios (which swing with whatever else the host runs, most of all for
//! `xray_sampled`, the only rung with a second busy thread, its worker).
//!
//! `scripts/bench-instructions` runs this program under valgrind's
//! callgrind, twice per rung (`N` = 1,000 and 2,000 requests), counting only
//! [`run_requests`] and tracing-xray's worker loop, and divides the
//! difference by 1,000, so that what the first requests pay once cancels
//! out. It reports the application thread's instructions per request and,
//! for `xray_sampled`, the worker's too (the OpenTelemetry batch
//! processor's export thread is not counted).
//!
//! Run alone, it does the work of one rung:
//! `RUNG=xray_sampled N=2000 CHILDREN=10 cargo bench --bench instructions`.
//! Without `RUNG` it lists the rungs and does nothing.

mod rungs;

/// Requests between two flushes of a rung with a background thread: for
/// tracing-xray, the worker then hands the emptied span lists back, so the
/// application thread reuses them as in a steady state; for the
/// OpenTelemetry batch processor, its queue never fills (a full queue drops
/// spans, which would make them cheaper). It costs one flush round trip per
/// this many requests (counted, and small once divided).
const FLUSH_EVERY: u64 = 32;

fn main() {
    let all = rungs::dispatches();
    let Ok(wanted) = std::env::var("RUNG") else {
        println!("rungs (set RUNG, and N requests; see scripts/bench-instructions):");
        for (name, _, _) in &all {
            println!("  {name}");
        }
        return;
    };
    let number = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let requests = number("N", 1000);
    let children = number("CHILDREN", 10) as usize;
    let Some((_, dispatch, flush)) = all.iter().find(|(name, _, _)| *name == wanted) else {
        eprintln!("no rung named {wanted:?}");
        std::process::exit(2);
    };
    tracing::dispatcher::with_default(dispatch, || {
        run_requests(requests, children, flush.as_ref());
    });
}

/// The measured part: what the script counts on the application thread
/// (valgrind's `--toggle-collect` names this function).
#[inline(never)]
fn run_requests(requests: u64, children: usize, flush: Option<&rungs::Flush>) {
    for i in 1..=requests {
        rungs::request(children);
        if let Some(flush) = flush {
            if i % FLUSH_EVERY == 0 {
                flush.flush();
            }
        }
    }
    if let Some(flush) = flush {
        flush.flush();
    }
}
