//! The span hot path, every rung in the same run so that ratios hold on a
//! noisy machine:
//!
//! 1. `registry`: the bare `Registry` (which never frees a closed span without
//!    a layer, tokio-rs/tracing#900, so its time drifts: read it with care);
//! 2. `registry+empty_layer`: the floor any layer pays;
//! 3. `registry+marker_extension`: a layer that inserts one extension per span;
//! 4. `registry+timed_fields`: a reference layer doing the least any layer
//!    that records span timings and fields does: a clock read as the span
//!    opens and another as it closes (tracing-xray's clock), its fields
//!    copied into an extension (no ids, no parent, nothing sent), so the
//!    cost of the work itself is known on this machine;
//! 5. `registry+span_tree`: a reference layer doing what the crate's first
//!    issue prescribes for every span and nothing of X-Ray's: the above,
//!    plus an id made as the span opens, its parent's id read from the
//!    parent's extension, and the finished span moved into its parent's
//!    extension as it closes (no sampling, names, limits, nothing sent);
//! 6. `registry+parent_lookup`: a reference layer doing the least any layer
//!    must do to tell, as each span opens, which trace it belongs to: find
//!    its parent's id (the registry's current span, or the explicit parent),
//!    and nothing else, so the floor of an unsampled request is known;
//! 7. `xray_sampled`: tracing-xray, every trace sampled, no-op exporter;
//! 8. `xray_unsampled`: tracing-xray, every trace decided "not sampled" by
//!    the sampler (ids and headers still propagate);
//! 9. `xray_disabled_by_env`: tracing-xray switched off by `AWS_XRAY_SDK_DISABLED`;
//! 10. `tracing_opentelemetry`: tracing-opentelemetry, discarding exporter
//!     behind the SDK's simple span processor (export on the application
//!     thread);
//! 11. `tracing_opentelemetry_batch`: the same behind the SDK's batch span
//!     processor (export on its own thread, flushed after every sample as
//!     tracing-xray's worker is), OpenTelemetry's production set-up.
//!
//! `sampler_decision` times one decision of the built-in samplers.
//!
//! Workloads: one request = 1 root + N children, 3 fields each, one event per
//! child (N = 10 and 100), back to back; and the 10-child request once every
//! 50 µs (`request_1_root_10_children_every_50us`: only the request timed);
//! the 10-child request on two threads at once
//! (`request_1_root_10_children_on_2_threads`, the rungs without a
//! background thread: what sharing the layer between cores costs).
//! `xray_end_to_end` also counts the worker's serialization and hand-off, by
//! flushing every batch of requests.
//!
//! The two back-to-back workloads are timed twice: by the wall clock, and by
//! the application thread's own CPU clock (`…_app_thread_cpu`). The second
//! is what the targets are about, the cost on the application thread: it
//! leaves out the time the thread spends descheduled, while another process
//! of the host, or the rung's own background thread (tracing-xray's worker,
//! the batch span processor's exporter) runs on its core instead. On a 2-core
//! machine that time is what makes `xray_sampled`'s wall-clock ratio swing
//! between runs; what the background thread does to the caches stays
//! counted.

mod rungs;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

use rungs::{dispatches, request, xray};

/// The CPU time the calling thread has used so far
/// (`CLOCK_THREAD_CPUTIME_ID`, nanosecond resolution on Linux).
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer,
    // which points to a live, writable `timespec` of this frame.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// What a hot-path sample is timed with.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    /// The application thread's CPU time (see the module docs).
    AppThreadCpu,
}

impl Clock {
    fn time(self, work: impl FnOnce()) -> Duration {
        match self {
            Clock::Wall => {
                let start = Instant::now();
                work();
                start.elapsed()
            }
            #[cfg(unix)]
            Clock::AppThreadCpu => {
                let start = thread_cpu_time();
                work();
                thread_cpu_time() - start
            }
            // No per-thread CPU clock here: the group is not run.
            #[cfg(not(unix))]
            Clock::AppThreadCpu => unreachable!(),
        }
    }
}

fn hot_path(c: &mut Criterion) {
    hot_path_timed_by(c, Clock::Wall, "");
}

fn hot_path_app_thread_cpu(c: &mut Criterion) {
    if cfg!(unix) {
        hot_path_timed_by(c, Clock::AppThreadCpu, "_app_thread_cpu");
    }
}

fn hot_path_timed_by(c: &mut Criterion, clock: Clock, suffix: &str) {
    let rungs = dispatches();
    for children in [10_usize, 100] {
        let mut group = c.benchmark_group(format!("request_1_root_{children}_children{suffix}"));
        for (name, dispatch, flush) in &rungs {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                tracing::dispatcher::with_default(dispatch, || {
                    b.iter_custom(|iters| {
                        let elapsed = clock.time(|| {
                            for _ in 0..iters {
                                request(black_box(children));
                            }
                        });
                        // Outside the timing, after every sample: the worker
                        // catches up, so the queue never carries one sample's
                        // backlog into the next. What is timed is the
                        // application thread alone (`xray_end_to_end` times
                        // the worker too).
                        if let Some(flush) = flush {
                            flush.flush();
                        }
                        elapsed
                    });
                });
            });
        }
        group.finish();
    }
}

/// Busy-waits `d` (a sleep would hand the core to the worker and measure the
/// scheduler).
fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The same requests, one every 50 µs or so instead of back to back: what a
/// busy server looks like, with the worker idle between traces. Only the
/// request is timed (each timing adds two clock reads, the same for every
/// rung).
fn paced(c: &mut Criterion) {
    const GAP: Duration = Duration::from_micros(50);
    let rungs = dispatches();
    let mut group = c.benchmark_group("request_1_root_10_children_every_50us");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for (name, dispatch, flush) in &rungs {
        if !matches!(
            *name,
            "registry+empty_layer"
                | "xray_sampled"
                | "xray_unsampled"
                | "tracing_opentelemetry"
                | "tracing_opentelemetry_batch"
        ) {
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            tracing::dispatcher::with_default(dispatch, || {
                b.iter_custom(|iters| {
                    let mut inside = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        request(black_box(10));
                        inside += start.elapsed();
                        spin(GAP);
                    }
                    inside
                });
            });
            if let Some(flush) = flush {
                flush.flush();
            }
        });
    }
    group.finish();
}

/// The 10-child request on two threads at once, each with its own share of
/// the iterations, timed from the first start to the last end: what the
/// span path costs when the application's threads share the layer (its
/// shared state's cache lines travel between cores). Only the rungs with no
/// background thread: on two cores a worker would compete with the two
/// application threads for the CPU, and its full queue would drop traces,
/// which makes them cheaper.
fn two_threads(c: &mut Criterion) {
    const THREADS: u64 = 2;
    let rungs = dispatches();
    let mut group = c.benchmark_group("request_1_root_10_children_on_2_threads");
    for (name, dispatch, flush) in &rungs {
        if flush.is_some() || *name == "registry" {
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let share = iters.div_ceil(THREADS);
                let start = std::sync::Barrier::new(THREADS as usize + 1);
                let began = std::thread::scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            tracing::dispatcher::with_default(dispatch, || {
                                start.wait();
                                for _ in 0..share {
                                    request(black_box(10));
                                }
                            })
                        });
                    }
                    start.wait();
                    Instant::now()
                });
                // Per request: both threads' requests in the time it took.
                began
                    .elapsed()
                    .mul_f64(iters as f64 / (share * THREADS) as f64)
            });
        });
    }
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let (layer, handle) = xray(true);
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut group = c.benchmark_group("xray_end_to_end");
    for children in [10_usize, 100] {
        group.bench_function(BenchmarkId::new("request_and_worker", children), |b| {
            tracing::dispatcher::with_default(&dispatch, || {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        request(black_box(children));
                    }
                    handle.flush(Duration::from_secs(60)).unwrap();
                    start.elapsed()
                });
            });
        });
    }
    group.finish();
}

fn sampler_decision(c: &mut Criterion) {
    use tracing_xray::sampling::{LocalRules, Sampler, SamplingRequest};
    let request = SamplingRequest::new()
        .with_host("api.example.com")
        .with_http_method("GET")
        .with_url_path("/orders/42")
        .with_service_name("orders");
    let default_rule = LocalRules::default();
    let rules = LocalRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.05}, "rules": [
            {"description": "health", "host": "*", "http_method": "GET", "url_path": "/health", "fixed_target": 0, "rate": 0.0},
            {"description": "admin", "host": "admin.*", "http_method": "*", "url_path": "*", "fixed_target": 1, "rate": 0.5},
            {"description": "orders", "host": "*", "http_method": "*", "url_path": "/orders/*", "fixed_target": 10, "rate": 0.1}]}"#,
    )
    .unwrap();
    let mut group = c.benchmark_group("sampler_decision");
    group.bench_function("local_default_rule", |b| {
        b.iter(|| black_box(default_rule.sample(black_box(&request))))
    });
    group.bench_function("local_three_rules", |b| {
        b.iter(|| black_box(rules.sample(black_box(&request))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = hot_path, hot_path_app_thread_cpu, paced, two_threads, end_to_end, sampler_decision
}
criterion_main!(benches);
