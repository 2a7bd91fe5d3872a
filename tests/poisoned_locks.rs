//! Spans whose lock a panic in other code poisoned: the `fmt` layer formats
//! a value given to `span.record` while it holds the span's extensions lock,
//! so a `Debug` that panics there poisons the lock. Found by a review of the
//! first fix (`tests/host_protection.rs` has the first finding): each test
//! but those marked "pinned" failed before its fix; the later ones come from
//! a second review.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use common::PanickyDebug;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

fn builder(out: &InMemoryExporter) -> tracing_xray::Builder {
    tracing_xray::builder()
        .with_service_name("host")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(out.clone())
}

/// `scenario` (whether something panicked) run under the README's set-up:
/// the `fmt` layer, and, `with_xray`, the xray layer beside it (the control
/// without it shows the panic is the xray layer's).
fn under_fmt(with_xray: bool, scenario: fn() -> bool) -> bool {
    let out = InMemoryExporter::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(with_xray.then(|| builder(&out).build()));
    tracing::subscriber::with_default(subscriber, scenario)
}

// ---------------------------------------------------------------------------
// A root span whose lock another layer's panic poisoned lost the rest of its
// trace, and nothing counted it.
//
// The README's set-up (`fmt::layer()` beside the xray layer). A request's
// root span has finished a child (`step`), then `request.record("order",
// debug(value))` with a value whose `Debug` panics, inside a `catch_unwind`
// (a server framework, a job runner). The root's close cannot read its data,
// and the trace's buffer (every finished span of the trace) is in it: no
// document, and every counter of `stats()` stayed 0. Now the loss is
// counted (`spans_lost`), and the README says a root takes its trace with
// it.
// ---------------------------------------------------------------------------
#[test]
fn a_poisoned_root_is_lost_counted() {
    common::run_alone("child_a_poisoned_root_is_lost_counted");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_a_poisoned_root_is_lost_counted() {
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        // Made before: a span made after takes the poisoned slot, where every
        // layer that reads it (`fmt` first) panics (tracing-subscriber's own).
        let next = info_span!("next");
        let inner = info_span!(parent: &next, "inner");
        let caught = common::quietly(|| {
            catch_unwind(|| {
                let request = info_span!("request", order = tracing::field::Empty);
                let _request = request.enter();
                info_span!("step").in_scope(|| {});
                request.record("order", tracing::field::debug(PanickyDebug));
            })
        });
        assert!(caught.is_err(), "the panic is caught");
        // The next trace is whole.
        drop(inner);
        drop(next);
    });
    handle.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_eq!(docs[0]["subsegments"][0]["name"], "inner");
    assert_eq!(handle.stats().spans_lost, 1, "{:?}", handle.stats());
}

// ---------------------------------------------------------------------------
// Found by a review of this stop's fixes: A span poisoned inside a
// `catch_unwind` but owned outside it
// makes the xray layer panic into the application when it is dropped.
//
// The common shape of a job runner: `let job = info_span!("job", detail =
// Empty); let r = catch_unwind(|| { let _e = job.enter(); ...;
// job.record("detail", debug(value)) });` then `job` goes out of scope after
// the error is handled. The `fmt` layer's formatting panics under the span's
// lock (poisoning it); the unwinding only exits the span, so the span closes
// later, when no panic unwinds, and `while_unwinding` is not used: the xray
// layer's `on_close` calls `extensions_mut()`, which panics ("Mutex poisoned:
// PoisonError", tracing-subscriber registry/sharded.rs) out of `drop(job)`,
// in application code outside any `catch_unwind` (in `main`, the process
// dies). With the `fmt` layer alone the same drop is fine (checked first
// below). README, "When a trace never arrives", fifth case: "The span's
// X-Ray data is then lost (standard error says so once) ... the
// application's catching of the panic goes on"; "Configuration" (the
// `AWS_XRAY_CONTEXT_MISSING` paragraph): "the layer never panics".
// ---------------------------------------------------------------------------
#[test]
fn a_span_poisoned_in_a_catch_unwind_closes_later_without_a_panic() {
    /// Records a panicking `Debug` on an entered span inside a
    /// `catch_unwind`, then drops the span after it: whether that drop
    /// panicked.
    fn drop_panics_after_poisoning() -> bool {
        let request = info_span!("request");
        let _request = request.enter();
        let job = info_span!("job", detail = tracing::field::Empty);
        let caught = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _entered = job.enter();
                job.record("detail", tracing::field::debug(PanickyDebug));
            }))
        });
        assert!(caught.is_err(), "the Debug panic is caught");
        common::quietly(|| catch_unwind(AssertUnwindSafe(|| drop(job)))).is_err()
    }

    assert!(
        !under_fmt(false, drop_panics_after_poisoning),
        "control: the fmt layer alone panics on the drop"
    );
    assert!(
        !under_fmt(true, drop_panics_after_poisoning),
        "dropping the poisoned span after the catch_unwind panicked inside the xray layer"
    );
}

// ---------------------------------------------------------------------------
// Pinned, passes. Spans made, recorded, entered, asked for a header, and
// closed in a `Drop` during an unwinding (no lock poisoned), under the
// README's set-up with `fmt` beside the layer and events on: nothing is lost
// or doubled by the new `while_unwinding` paths; the span the panic unwound
// through is a fault (`panicked`), the cleanup span keeps its field, its
// events (the WARN one's URL scrubbed on the worker) and its ERROR event's
// exception, and is not marked `panicked`.
// ---------------------------------------------------------------------------
#[test]
fn pinned_spans_made_in_a_drop_during_an_unwinding_are_whole() {
    use tracing_xray::XraySpanExt;
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let s = info_span!("cleanup", rows = tracing::field::Empty);
            let _g = s.enter();
            s.record("rows", 3);
            assert!(s.xray_header().is_some(), "a header inside the unwinding");
            tracing::warn!(url.full = "https://u:pw@h/x?q=1", "rolling back");
            tracing::error!("rollback failed");
        }
    }
    let out = InMemoryExporter::new();
    let layer = builder(&out).with_events(true).build();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let caught = common::quietly(|| {
            catch_unwind(|| {
                let request = info_span!("request");
                let _request = request.enter();
                let _cleanup = Cleanup;
                panic!("boom");
            })
        });
        assert!(caught.is_err());
    });
    handle.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let root = &docs[0];
    assert_eq!(root["fault"], true);
    assert_eq!(common::exception_messages(root), ["panicked"]);
    let subs = root["subsegments"].as_array().expect("one subsegment");
    assert_eq!(subs.len(), 1, "{root:#}");
    let cleanup = &subs[0];
    assert_eq!(cleanup["name"], "cleanup");
    assert_eq!(common::exception_messages(cleanup), ["rollback failed"]);
    assert_eq!(cleanup["metadata"]["tracing"]["rows"], 3);
    let events = cleanup["metadata"]["tracing"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["url.full"], "https://h/x");
    assert!(!root.to_string().contains("pw@"));
}

/// The work a request leaves running past its response (`XrayServerLayer`),
/// with the fields the tests record on it.
#[cfg(feature = "tower")]
fn background() -> tracing::Span {
    info_span!(
        "background",
        detail = tracing::field::Empty,
        error = tracing::field::Empty
    )
}

/// Every (sub)segment's name, in every document.
#[cfg(feature = "tower")]
fn names(docs: &[serde_json::Value]) -> Vec<String> {
    common::nodes(docs)
        .into_iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// Found by the review, 4 (fb71911, the README's fifth case under "When a trace never
// arrives"). After the application caught the panic that poisoned a span's
// lock, making a child of that span panics inside the xray layer, into the
// application.
//
// A job runner: `let job = info_span!("job", detail = Empty);` then
// `catch_unwind(|| { let _e = job.enter(); job.record("detail",
// debug(value)) })` with a value whose `Debug` panics under `fmt` (the
// README's set-up, `fmt` beside the layer), then, the error handled, it goes
// on in the job's span: `job.in_scope(|| info_span!("cleanup"))`. README,
// fifth case: "The span's X-Ray data is then lost as it closes ... The
// application's catching of the panic goes on."; fb71911 made `on_close`
// safe here, but `on_new_span` reads the parent's extensions (`inherit`) on
// the poisoned lock and panics ("Mutex poisoned"), out of `info_span!` in
// application code outside any `catch_unwind`. With `fmt` alone (checked
// first) the same child is made without a panic: it is the xray layer that
// panics.
// ---------------------------------------------------------------------------
#[test]
fn a_child_of_a_span_poisoned_in_a_catch_unwind_is_made_without_a_panic() {
    common::run_alone("child_a_child_of_a_poisoned_span");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_a_child_of_a_poisoned_span() {
    /// Poisons `job` inside a `catch_unwind`, then makes a child of it
    /// after: whether making (and closing) that child panicked.
    fn child_panics_after_poisoning() -> bool {
        let job = info_span!("job", detail = tracing::field::Empty);
        let caught = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _entered = job.enter();
                job.record("detail", tracing::field::debug(PanickyDebug));
            }))
        });
        assert!(caught.is_err(), "the Debug panic is caught");
        let child = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                drop(info_span!(parent: &job, "cleanup"));
            }))
        });
        common::quietly(|| catch_unwind(AssertUnwindSafe(|| drop(job)))).ok();
        child.is_err()
    }

    assert!(
        !under_fmt(false, child_panics_after_poisoning),
        "control: the fmt layer alone panics"
    );
    assert!(
        !under_fmt(true, child_panics_after_poisoning),
        "making a child of the poisoned span after the catch_unwind panicked inside the xray layer"
    );
}

// ---------------------------------------------------------------------------
// Found by the review, 5 (961daf5 with fb71911). After a request's response, the finished
// spans under a span of the request's work stay in the trace's buffer when
// that span's data is lost (its lock poisoned): never sent, nor counted.
//
// A handler behind `XrayServerLayer` answers and leaves work running in a
// span of the request (`background`, made in the request's span before the
// response: `tokio::spawn(work.in_current_span())`). The work finishes a
// step (`step`), then records a value whose `Debug` panics under `fmt`
// inside a `catch_unwind` (a job runner), which poisons `background`'s lock;
// `background` then ends. README, "When a trace never arrives", fifth case:
// "The span's X-Ray data is then lost as it closes ... counted in
// `stats().spans_lost` ... The rest of its trace is sent, but for a root,
// whose trace goes with it." Before 961daf5 `step` streamed as it ended;
// now it waits for its top span, `background`, whose close is lost, so
// `step` stays in the sealed trace's buffer: never sent (no document but the
// segment), and no counter says so (`spans_lost` is 1: `background`).
// ---------------------------------------------------------------------------
#[cfg(feature = "tower")]
#[test]
fn after_the_response_a_step_under_a_poisoned_span_is_still_sent() {
    common::run_alone("child_a_step_under_a_poisoned_span");
}

#[cfg(feature = "tower")]
#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_a_step_under_a_poisoned_span() {
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let xray = layer.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let work = common::serve_and_keep_work(&rt, background);
        work.in_scope(|| info_span!("step").in_scope(|| {}));
        let caught = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _entered = work.enter();
                work.record("detail", tracing::field::debug(PanickyDebug));
            }))
        });
        assert!(caught.is_err(), "the Debug panic is caught");
        drop(work);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    assert_eq!(xray.stats().spans_lost, 1, "{:?}", xray.stats());
    assert!(
        names(&docs).iter().any(|n| n == "step"),
        "the finished step of the poisoned span's work was never sent: {docs:#?}\n{:?}",
        xray.stats()
    );
}

// ---------------------------------------------------------------------------
// Pinned, passes (961daf5). After the response, an error passed up from a
// step of the request's work to the work's span names the step's as its
// `cause`, whether the work's subtree leaves whole (as its top ends) or the
// step streams first (past `with_max_held_subsegments`): README, the `&dyn
// Error` row, "names the one below as its `cause` (in another document
// too ...)".
// ---------------------------------------------------------------------------
#[cfg(feature = "tower")]
#[test]
fn pinned_after_the_response_an_error_passed_up_names_its_cause() {
    #[derive(Debug)]
    struct Boom;
    impl std::fmt::Display for Boom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("prices unavailable")
        }
    }
    impl std::error::Error for Boom {}
    #[tracing::instrument(err)]
    fn fetch_prices() -> Result<(), Boom> {
        Err(Boom)
    }
    for max_held in [1000, 1] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c = common::capture_documents_with(
            |b| b.with_max_held_subsegments(max_held),
            |xray| {
                let work = common::serve_and_keep_work(&rt, background);
                xray.flush(Duration::from_secs(5)).unwrap();
                let r = work.in_scope(|| {
                    info_span!("filler").in_scope(|| {});
                    fetch_prices()
                });
                if let Err(e) = &r {
                    work.record("error", e as &dyn std::error::Error);
                }
                xray.flush(Duration::from_secs(5)).unwrap();
                drop(work);
            },
        );
        assert!(
            max_held == 1000 || c.docs.len() >= 3,
            "past the limit the step streams before its top: {:#?}",
            c.docs
        );
        let traces = c.exporter.traces();
        let fetch = common::node(&traces, "fetch_prices");
        let work = common::node(&traces, "background");
        assert_eq!(common::exceptions(work).len(), 1, "{work:#}");
        assert_eq!(
            common::exceptions(work)[0]["cause"],
            common::exceptions(fetch)[0]["id"],
            "max_held {max_held}: {:#?}",
            c.docs
        );
        assert_eq!(traces.len(), 1, "one trace, assembled: {traces:#?}");
    }
}
