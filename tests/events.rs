//! Events inside spans: ERROR events always mark the span; other events are
//! recorded as metadata only on request, bounded.

mod common;

use serde_json::Value;

use tracing_xray::sampling::AlwaysSample;

fn run(events: bool, f: impl FnOnce()) -> (Vec<serde_json::Value>, tracing_xray::Stats) {
    let (traces, xray) =
        common::run_in_memory(|b| b.with_sampler(AlwaysSample).with_events(events), f);
    (traces, xray.stats())
}

#[test]
fn events_are_not_sent_by_default() {
    let (traces, _) = run(false, || {
        tracing::info_span!("r").in_scope(|| tracing::info!(n = 1, "hello"));
    });
    assert!(traces[0]["metadata"]["tracing"].get("events").is_none());
    assert!(traces[0].get("fault").is_none());
}

#[test]
fn events_on_request_are_metadata_with_their_time_and_bounded() {
    let (traces, stats) = run(true, || {
        tracing::info_span!("r").in_scope(|| {
            for i in 0..40_u64 {
                tracing::info!(i, level = "shadowed", "tick");
            }
            tracing::warn!(code = 7, "careful");
        });
    });
    let seg = &traces[0];
    let events = seg["metadata"]["tracing"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 32);
    assert_eq!(stats.events_dropped, 9);
    // Before the fix, only the counter said so: the document itself did not.
    assert_eq!(
        seg["metadata"]["tracing_xray"]["events_dropped"], 9,
        "the span says how many of its events it left out"
    );
    let first = &events[0];
    assert_eq!(first["message"], "tick");
    assert_eq!(first["i"], 0);
    assert_eq!(
        first["level"], "INFO",
        "a field cannot shadow the event's level"
    );
    assert_eq!(first["field.level"], "shadowed", "nor is it lost");
    assert_eq!(first["target"], "events");
    let t = first["time"].as_f64().unwrap();
    assert!(t >= seg["start_time"].as_f64().unwrap() && t <= seg["end_time"].as_f64().unwrap());
}

/// Fields named like the record's own keys keep their values, beside them.
#[test]
fn event_fields_named_time_level_or_target_are_kept_beside_the_records_own() {
    let (traces, _) = run(true, || {
        tracing::info_span!("r").in_scope(|| {
            tracing::info!(time = 2.5_f64, target = "prod", level = 3_u64, "deployed");
        });
    });
    let event = &traces[0]["metadata"]["tracing"]["events"][0];
    assert_eq!(event["message"], "deployed");
    assert_eq!(event["field.time"], 2.5);
    assert_eq!(event["field.target"], "prod");
    assert_eq!(event["field.level"], 3);
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["target"], "events");
    assert_ne!(event["time"], 2.5);
}

#[test]
fn error_event_with_an_error_value_links_its_sources() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("could not load config")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let (traces, _) = run(false, || {
        tracing::info_span!("r").in_scope(|| {
            let e = Outer(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ));
            tracing::error!(error = &e as &dyn std::error::Error, "startup failed");
        });
    });
    let seg = &traces[0];
    assert_eq!(seg["fault"], true);
    let ex = seg["cause"]["exceptions"].as_array().unwrap();
    assert_eq!(ex.len(), 3, "{ex:#?}");
    assert_eq!(ex[0]["message"], "startup failed");
    assert_eq!(ex[1]["message"], "could not load config");
    assert_eq!(ex[2]["message"], "no such file");
    assert_eq!(ex[0]["cause"], ex[1]["id"]);
    assert_eq!(ex[1]["cause"], ex[2]["id"]);
}

#[test]
fn a_long_error_message_is_cut_not_the_other_exceptions() {
    let (traces, stats) = run(false, || {
        tracing::info_span!("r").in_scope(|| {
            for i in 0..7 {
                tracing::error!("short {i}");
            }
            tracing::error!("{}", "x".repeat(70_000));
        });
    });
    let exceptions = traces[0]["cause"]["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 8, "every exception is kept");
    assert!(
        exceptions
            .iter()
            .all(|e| !e["stack"].as_array().unwrap().is_empty())
    );
    let long = exceptions[7]["message"].as_str().unwrap();
    assert_eq!(long.chars().count(), 1000, "cut to 1,000 characters");
    assert_eq!(stats.spans_trimmed, 0, "no need to trim the span");
}

#[derive(Debug)]
struct NotFound;

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("order 7 not found")
    }
}

impl std::error::Error for NotFound {}

#[tracing::instrument(err)]
fn load_order() -> Result<(), NotFound> {
    Err(NotFound)
}

#[tracing::instrument(err(Debug))]
fn load_order_debug() -> Result<(), NotFound> {
    Err(NotFound)
}

/// `#[instrument(err)]` logs `error = %e` (or `?e`) with no message: the
/// exception's message is the error's text, not the event's callsite name.
/// With a message too, the message leads and the error's text follows as
/// its cause, as for a `&dyn Error` value.
#[test]
fn an_error_field_without_error_value_gives_the_exception_its_text() {
    let (traces, _) = run(false, || {
        tracing::info_span!("r").in_scope(|| {
            let _ = load_order();
            let _ = load_order_debug();
            tracing::error!(error = %NotFound, "request failed");
        });
        tracing::info_span!("flagged").in_scope(|| {
            tracing::error!(error = true);
        });
        tracing::info_span!("coded").in_scope(|| {
            tracing::error!(error = 7_i128);
        });
    });
    for name in ["flagged", "coded"] {
        let flagged = traces
            .iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == name)
            .unwrap();
        // A flag or a number, not a text: the event's own name, as without
        // the field.
        let text = flagged["cause"]["exceptions"][0]["message"]
            .as_str()
            .unwrap();
        assert!(text.starts_with("event "), "{flagged:#}");
    }
    let traces: Vec<_> = traces
        .iter()
        .filter(|t| t["metadata"]["tracing"]["span_name"] == "r")
        .cloned()
        .collect();
    let seg = &traces[0];
    let message = |s: &serde_json::Value| s["cause"]["exceptions"][0]["message"].clone();
    let subs = seg["subsegments"].as_array().unwrap();
    assert_eq!(subs[0]["fault"], true);
    assert_eq!(message(&subs[0]), "order 7 not found", "{seg:#}");
    assert_eq!(message(&subs[1]), "NotFound", "{seg:#}");
    let ex = seg["cause"]["exceptions"].as_array().unwrap();
    assert_eq!(ex.len(), 2, "{ex:#?}");
    assert_eq!(ex[0]["message"], "request failed");
    assert_eq!(ex[1]["message"], "order 7 not found");
    assert_eq!(ex[0]["cause"], ex[1]["id"]);
}

/// Each ERROR event is an exception of its own, also when it carries an
/// error value in a field named like the span's: only a span field recorded
/// again replaces its exception.
#[test]
fn every_error_event_with_an_error_value_is_an_exception_of_its_own() {
    let (traces, stats) = run(false, || {
        tracing::info_span!("two_events").in_scope(|| {
            for attempt in ["disk full", "connection reset"] {
                let e = common::Failure(attempt);
                tracing::error!(error = &e as &dyn std::error::Error, "attempt failed");
            }
        });
        let own = common::Failure("the span's own");
        tracing::info_span!("field_and_event", error = &own as &dyn std::error::Error).in_scope(
            || {
                let e = common::Failure("the event's");
                tracing::error!(error = &e as &dyn std::error::Error, "event failure");
            },
        );
    });
    let messages = |name: &str| -> Vec<String> {
        let trace = traces
            .iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == name)
            .unwrap();
        trace["cause"]["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    // An event's message, then its error value as the message's source.
    assert_eq!(
        messages("two_events"),
        [
            "attempt failed",
            "disk full",
            "attempt failed",
            "connection reset"
        ]
    );
    assert_eq!(
        messages("field_and_event"),
        ["the span's own", "event failure", "the event's"]
    );
    assert_eq!(stats.exceptions_dropped, 0);
}

/// An ERROR event's exception is the event's: the span's `error` field
/// recorded after it is one more, not a replacement.
#[test]
fn a_span_error_field_recorded_after_an_error_event_does_not_replace_it() {
    let (traces, _) = run(false, || {
        let span = tracing::info_span!("op", error = tracing::field::Empty);
        span.in_scope(|| {
            let e = common::Failure("the event's");
            tracing::error!(error = &e as &dyn std::error::Error, "event failure");
            let own = common::Failure("the span's own");
            span.record("error", &own as &dyn std::error::Error);
        });
    });
    let messages = common::exception_messages(&traces[0]);
    assert_eq!(messages, ["event failure", "the event's", "the span's own"]);
}

/// The documents `f` makes, with events recorded (every trace sampled).
fn with_events(f: impl FnOnce()) -> common::Captured {
    common::capture_documents(|b| b.with_events(true), f)
}

/// The `metadata.tracing.events` of a (sub)segment (none: empty).
fn events_of(n: &Value) -> Vec<Value> {
    n["metadata"]["tracing"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A field value whose `Debug` takes a while the first time it is
/// formatted: it says when it has started, then waits to be released.
struct SlowDebug {
    started: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl std::fmt::Debug for SlowDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(started) = self.started.lock().unwrap().take() {
            started.send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
        }
        f.write_str("SlowDebug")
    }
}

// Found by the hunt of events and exceptions.
//
// A span too large for a document, trimmed, with events: one of 70 KB
// between two small ones, or 32 of 3 KB. Before the fix, the events list
// was one metadata value, the largest, dropped whole: the small events went
// with the large one, and all 32 went where about 20 fit. They now count
// one by one (`tracing.events[1]` in `metadata_dropped`).
#[test]
fn one_huge_event_field_does_not_cost_the_span_its_other_events() {
    let c = with_events(|| {
        tracing::info_span!("request").in_scope(|| {
            tracing::info!("request received");
            tracing::info!(body = %"y".repeat(70_000), "upstream answered");
            tracing::info!("request done");
        });
    });
    let doc = &c.docs[0];
    assert_eq!(doc["metadata"]["tracing_xray"]["trimmed"], true, "{doc:#}");
    let messages: Vec<Value> = events_of(doc)
        .iter()
        .map(|e| e["message"].clone())
        .collect();
    assert!(
        messages.contains(&Value::from("request received"))
            && messages.contains(&Value::from("request done")),
        "the small events were dropped with the large one: {:#}",
        doc["metadata"]
    );
}

// Before the fix, the events a trimmed span left out were named in its
// mark but not counted in `Stats::events_dropped`.
#[test]
fn events_trimmed_away_are_counted() {
    let (traces, stats) = run(true, || {
        tracing::info_span!("batch").in_scope(|| {
            for i in 0..32_u64 {
                tracing::info!(i, row = %"r".repeat(3_000), "row processed");
            }
        });
    });
    let kept = events_of(&traces[0]).len() as u64;
    assert!(kept < 32, "the span was not trimmed: {kept} events kept");
    assert_eq!(stats.spans_trimmed, 1);
    assert_eq!(
        stats.events_dropped,
        32 - kept,
        "{:#}",
        traces[0]["metadata"]["tracing_xray"]
    );
}

/// Found by the hunt of the README's claims. Before the fix, the events
/// past the bound of an AWS SDK internal span folded into its call's
/// subsegment were not counted (the folded spans' dropped errors were).
#[test]
fn events_dropped_in_a_folded_sdk_span_are_counted() {
    let c = with_events(|| {
        tracing::info_span!("r").in_scope(|| {
            tracing::info_span!(
                target: "aws_sdk_dynamodb::operation",
                "GetItem",
                rpc.system = "aws-api",
                rpc.service = "DynamoDB",
                rpc.method = "GetItem"
            )
            .in_scope(|| {
                tracing::debug_span!(
                    target: "aws_smithy_runtime::client::orchestrator",
                    "try_attempt"
                )
                .in_scope(|| {
                    for i in 0..40 {
                        tracing::info!(i, "tick");
                    }
                });
            });
        });
    });
    let call = common::node(&c.docs, "DynamoDB");
    assert!(call.get("subsegments").is_none(), "folded: {call:#}");
    assert_eq!(c.xray.stats().events_dropped, 8);
    // Found by the review of that fix: the call's own mark did not count
    // them (a folded span's dropped exceptions were).
    assert_eq!(
        call["metadata"]["tracing_xray"]["events_dropped"], 8,
        "{call:#}"
    );
}

/// A span within its bound says nothing of dropped events.
#[test]
fn a_span_within_the_bound_has_no_events_dropped_mark() {
    let (traces, stats) = run(true, || {
        tracing::info_span!("r").in_scope(|| tracing::info!("one"));
    });
    assert_eq!(stats.events_dropped, 0);
    assert!(
        traces[0]["metadata"].get("tracing_xray").is_none(),
        "{:#}",
        traces[0]
    );
}

#[test]
fn many_events_too_large_together_are_not_all_dropped() {
    let c = with_events(|| {
        tracing::info_span!("batch").in_scope(|| {
            for i in 0..32_u64 {
                tracing::info!(i, row = %"r".repeat(3_000), "row processed");
            }
        });
    });
    let doc = &c.docs[0];
    let kept = events_of(doc).len();
    assert!(
        kept >= 16,
        "{kept} of 32 events kept, where about 20 fit: {:#}",
        doc["metadata"]["tracing_xray"]
    );
}

// Two threads log into one span; the first event's fields take a while to
// format. Before the fix, an event joined the list when its fields were
// formatted, not at its time: `second` was listed before `first`, whose
// time is the earlier.
#[test]
fn events_recorded_from_two_threads_are_listed_in_the_order_of_their_times() {
    let c = with_events(|| {
        let request = tracing::info_span!("request");
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let slow = SlowDebug {
            started: std::sync::Mutex::new(Some(started_tx)),
            release: std::sync::Mutex::new(release_rx),
        };
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let in_worker = request.clone();
        let worker = std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                in_worker.in_scope(|| tracing::info!(state = ?slow, "first"));
            })
        });
        started_rx.recv().unwrap();
        request.in_scope(|| tracing::info!("second"));
        release_tx.send(()).unwrap();
        worker.join().unwrap();
    });
    let events = events_of(&c.docs[0]);
    assert_eq!(events.len(), 2, "{events:#?}");
    let times: Vec<f64> = events.iter().map(|e| e["time"].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events listed out of the order of their times: {events:#?}"
    );
}
