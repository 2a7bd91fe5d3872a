//! `xray_header()` (what the tower client layer and the AWS SDK interceptor
//! call for every outgoing request, on the application's thread) costs the
//! same at any depth: it walked the span's whole scope up to the root for
//! the root's incoming header.
//!
//! The test compares two measurements taken in the same process (so the
//! machine's speed cancels out): an asymptotic check with 30x of margin on
//! either side, not a speed target.

use std::time::{Duration, Instant};

use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::XraySpanExt;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

/// Runs `f` on a thread with room for a deep recursion, under the current
/// dispatcher.
fn on_big_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || tracing::dispatcher::with_default(&dispatch, f))
        .unwrap()
        .join()
        .unwrap()
}

/// Opens `levels` nested spans and runs `f` in the innermost.
fn nested<R>(levels: usize, f: &mut dyn FnMut() -> R) -> R {
    if levels == 0 {
        return f();
    }
    info_span!("level").in_scope(|| nested(levels - 1, f))
}

/// The fastest of `reps` timings of `calls` `xray_header()` calls on the
/// current span, `depth` spans deep in one sampled trace.
fn header_calls_at_depth(depth: usize, calls: usize, reps: usize) -> Duration {
    on_big_stack(move || {
        nested(depth, &mut || {
            let span = tracing::Span::current();
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..calls {
                        assert!(std::hint::black_box(span.xray_header()).is_some());
                    }
                    t.elapsed()
                })
                .min()
                .unwrap()
        })
    })
}

/// The root's incoming header now travels with the trace's buffer, which
/// every span of a sampled trace holds. Measured (the same 200 calls,
/// fastest of 3, debug): with the walk, depth 1 ≈ 0.4 ms and depth 4,000 ≈
/// 0.5 s (over 1,000x); without it, about 1x.
#[test]
fn xray_header_cost_does_not_grow_with_the_depth_of_the_span() {
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(InMemoryExporter::new())
        .build();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        const CALLS: usize = 200;
        let shallow = header_calls_at_depth(1, CALLS, 3);
        let deep = header_calls_at_depth(4_000, CALLS, 3);
        let ratio = deep.as_secs_f64() / shallow.as_secs_f64().max(1e-9);
        assert!(
            ratio < 30.0,
            "xray_header at depth 4,000 costs {ratio:.0}x what it costs at depth 1 \
             ({shallow:?} vs {deep:?} for {CALLS} calls)"
        );
    });
}
