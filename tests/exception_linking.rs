//! How a span's exceptions are assembled where today's review found edge
//! cases: linking an error passed up to its own exception below, the URL
//! secrets of indexed status messages, and the per-span bound beside the
//! errors of spans folded into an AWS SDK operation.

mod common;

use serde_json::Value;
use std::time::Duration;
use tracing::field::Empty;
use tracing::info_span;

fn run(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> (Vec<Value>, tracing_xray::XrayHandle) {
    common::run_in_memory(
        |b| configure(b.with_sampler(tracing_xray::sampling::AlwaysSample)),
        f,
    )
}

fn exceptions(doc: &Value) -> &Vec<Value> {
    doc["cause"]["exceptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no exceptions: {doc:#}"))
}

/// An error passed up links to the exception below it by its text as
/// recorded, before the URL's secrets are cut: two failures whose texts
/// differ only in a URL's query (page=1, page=2) are two errors, and the
/// outer span's error (page 1's) names page 1's exception as its cause (by
/// the scrubbed text, it named the nearest one, page 2's).
#[test]
fn error_passed_up_links_to_its_own_exception_not_a_sibling_differing_in_query() {
    let (traces, _) = run(
        |b| b,
        || {
            info_span!("outer").in_scope(|| {
                info_span!("a").in_scope(|| {
                    tracing::error!("GET https://api.example.com/items?page=1 failed")
                });
                info_span!("b").in_scope(|| {
                    tracing::error!("GET https://api.example.com/items?page=2 failed")
                });
                // The outer function returns a's error.
                tracing::error!("GET https://api.example.com/items?page=1 failed");
            });
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    let subs = doc["subsegments"].as_array().expect("subsegments");
    let id_of = |name: &str| {
        let sub = subs.iter().find(|s| s["name"] == name).unwrap();
        exceptions(sub)[0]["id"].clone()
    };
    let outer = &exceptions(doc)[0];
    assert_eq!(
        outer["cause"],
        id_of("a"),
        "page 1's error links to page 2's exception (b = {}): {doc:#}",
        id_of("b")
    );
}

/// `otel.status_message` indexed by name loses its URL secrets, as it does
/// as the exception's message (the annotation carried the API key).
#[test]
fn indexed_otel_status_message_annotation_has_no_url_secrets() {
    let (traces, _) = run(
        |b| b.with_indexed_fields(&["otel.status_message"]),
        || {
            info_span!(
                "req",
                otel.status_code = "ERROR",
                otel.status_message =
                    "error sending request for url (https://api.example.com/v1?api_key=SECRET1)",
            )
            .in_scope(|| {});
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    assert!(
        !doc.to_string().contains("SECRET1"),
        "the indexed status message keeps the URL's query: {doc:#}"
    );
}

/// The `exception.message` exception counts against its own span's bound
/// of 8, not the errors of the spans folded into an AWS SDK operation
/// (kept, 9 here): the operation's own text, its only error, was dropped.
#[test]
fn aws_operation_exception_message_is_not_dropped_for_its_folded_spans_errors() {
    let (traces, handle) = run(
        |b| b,
        || {
            info_span!("request").in_scope(|| {
                let op = info_span!(
                    "GetItem",
                    rpc.system = "aws-api",
                    rpc.service = "DynamoDB",
                    rpc.method = "GetItem",
                    exception.message = Empty,
                );
                op.in_scope(|| {
                    for a in 0..3 {
                        info_span!("try_attempt").in_scope(|| {
                            for i in 0..3 {
                                tracing::error!(a, i, "attempt {a} error {i}");
                            }
                        });
                    }
                });
                op.record("exception.message", "GetItem failed");
            });
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let op = &traces[0]["subsegments"][0];
    let kept = exceptions(op);
    let own_kept = kept.iter().any(|e| e["message"] == "GetItem failed");
    assert!(
        own_kept,
        "the operation's own exception is dropped (exceptions_dropped = {}, stats {}) \
         while {} exceptions of its folded spans are kept: {op:#}",
        op["metadata"]["tracing_xray"]["exceptions_dropped"],
        handle.stats().exceptions_dropped,
        kept.len()
    );
}

/// The one trace `f` makes.
fn one_trace(f: impl FnOnce()) -> Value {
    let (traces, _) = run(|b| b, f);
    assert_eq!(traces.len(), 1, "{traces:#?}");
    traces.into_iter().next().unwrap()
}

fn sub<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["subsegments"]
        .as_array()
        .expect("subsegments")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {doc:#}"))
}

/// Inner client span logs an error (a retry) and records its failure as
/// `exception.message` (a URL with a query, as reqwest's error text has);
/// the caller's `#[instrument(err)]` logs the same error: linked, both
/// sides matched by the text as recorded (the field's was matched
/// scrubbed, the event's raw: no link).
#[test]
fn field_exception_with_url_query_below_is_linked_from_error_passed_up() {
    assert_field_exception_below_is_linked_from_error_passed_up(
        "error sending request for url (https://api.example.com/v1/items?page=1)",
    );
}

/// A call that logs a retry and records `text` as its `exception.message`,
/// inside a handler that passes `text` up as its error: the handler's
/// exception names the call's field exception.
fn assert_field_exception_below_is_linked_from_error_passed_up(text: &str) {
    let doc = one_trace(|| {
        info_span!("handler").in_scope(|| {
            info_span!("call", exception.message = text)
                .in_scope(|| tracing::error!("attempt 1 timed out"));
            tracing::error!(error = text);
        });
    });
    let inner = exceptions(sub(&doc, "call"))
        .iter()
        .find(|e| e["message"] != "attempt 1 timed out")
        .unwrap_or_else(|| panic!("no field exception: {doc:#}"));
    let outer = &exceptions(&doc)[0];
    assert_eq!(outer["cause"], inner["id"], "{doc:#}");
}

/// The same with a long (over 1,000 characters) message and no URL at
/// all: both matched by their whole text (the field's was matched cut to
/// 1,000 characters).
#[test]
fn long_field_exception_below_is_linked_from_error_passed_up() {
    assert_field_exception_below_is_linked_from_error_passed_up(&"x".repeat(1500));
}

/// The other direction: an error event below, and above a span that logs
/// its own error and carries the error below as `exception.message` (a web
/// framework's root span): the field's exception names the event's.
#[test]
fn field_exception_above_links_to_error_event_below_with_url_query() {
    const TEXT: &str = "GET https://api.example.com/items?page=1 failed";
    let doc = one_trace(|| {
        let root = info_span!("request", exception.message = tracing::field::Empty);
        root.in_scope(|| {
            info_span!("load").in_scope(|| tracing::error!(error = TEXT));
            tracing::error!("handler failed");
        });
        root.record("exception.message", TEXT);
    });
    let inner = &exceptions(sub(&doc, "load"))[0];
    let outer = exceptions(&doc);
    let field_ex = outer
        .iter()
        .find(|e| e["message"] == "GET https://api.example.com/items failed")
        .unwrap_or_else(|| panic!("no field exception: {doc:#}"));
    assert_eq!(field_ex["cause"], inner["id"], "{doc:#}");
}

/// A span whose only exception comes from its `exception.message` field
/// (no error event) is linked too: the error passed up from it names it
/// (such an exception was never offered to its ancestors).
#[test]
fn field_only_exception_below_is_linked_from_error_passed_up() {
    const TEXT: &str = "table orders is missing";
    let doc = one_trace(|| {
        info_span!("handler").in_scope(|| {
            info_span!("call", exception.message = TEXT).in_scope(|| {});
            tracing::error!(error = TEXT);
        });
    });
    let inner = &exceptions(sub(&doc, "call"))[0];
    let outer = &exceptions(&doc)[0];
    assert_eq!(outer["cause"], inner["id"], "{doc:#}");
}

/// SPEC §1.6: `cause` names the parent exception, one already recorded. In
/// a retry loop, the request's own error, logged after attempt 1 failed and
/// before attempt 2 began, used to name attempt 2's (later) exception as
/// its cause: it names attempt 1's.
#[test]
fn an_exception_is_caused_only_by_one_recorded_before_it() {
    let doc = one_trace(|| {
        info_span!("request").in_scope(|| {
            info_span!("attempt_1").in_scope(|| tracing::error!("connection refused"));
            tracing::error!("connection refused");
            info_span!("attempt_2").in_scope(|| tracing::error!("connection refused"));
        });
    });
    let first = &exceptions(sub(&doc, "attempt_1"))[0]["id"];
    let own = &exceptions(&doc)[0];
    assert_eq!(own["message"], "connection refused", "{doc:#}");
    assert_eq!(&own["cause"], first, "{doc:#}");
}

/// A span too big for a document keeps only its first exception. An
/// ancestor's exception used to keep naming a dropped one as its cause: an
/// id in no document of the trace.
#[test]
fn no_cause_names_an_exception_trimmed_away() {
    let long = "é".repeat(1000);
    let long = long.as_str();
    let doc = one_trace(|| {
        info_span!("request").in_scope(|| {
            // 40 annotations of 2,000 bytes: too big even without metadata.
            info_span!(
                "step",
                annotation.k00 = long,
                annotation.k01 = long,
                annotation.k02 = long,
                annotation.k03 = long,
                annotation.k04 = long,
                annotation.k05 = long,
                annotation.k06 = long,
                annotation.k07 = long,
                annotation.k08 = long,
                annotation.k09 = long,
                annotation.k10 = long,
                annotation.k11 = long,
                annotation.k12 = long,
                annotation.k13 = long,
                annotation.k14 = long,
                annotation.k15 = long,
                annotation.k16 = long,
                annotation.k17 = long,
                annotation.k18 = long,
                annotation.k19 = long,
                annotation.k20 = long,
                annotation.k21 = long,
                annotation.k22 = long,
                annotation.k23 = long,
                annotation.k24 = long,
                annotation.k25 = long,
                annotation.k26 = long,
                annotation.k27 = long,
                annotation.k28 = long,
                annotation.k29 = long,
                annotation.k30 = long,
                annotation.k31 = long,
                annotation.k32 = long,
                annotation.k33 = long,
                annotation.k34 = long,
                annotation.k35 = long,
                annotation.k36 = long,
                annotation.k37 = long,
                annotation.k38 = long,
                annotation.k39 = long
            )
            .in_scope(|| {
                tracing::error!("first failure");
                tracing::error!("second failure");
            });
            tracing::error!("second failure");
        });
    });
    let step = sub(&doc, "step");
    assert_eq!(
        step["metadata"]["tracing_xray"]["trimmed"], true,
        "{step:#}"
    );
    let all: Vec<&Value> = common::walk(&doc)
        .into_iter()
        .filter_map(|(_, n)| n["cause"]["exceptions"].as_array())
        .flatten()
        .collect();
    let ids: Vec<&Value> = all.iter().map(|e| &e["id"]).collect();
    for e in &all {
        if let Some(cause) = e.get("cause") {
            assert!(
                ids.contains(&cause),
                "{e} names a cause in no document: {doc:#}"
            );
        }
    }
}

/// A span a panic unwinds through failed: its guard's drop exits it while
/// the thread panics, and it is a fault with the exception `panicked` (the
/// panic's message goes to the panic hook), unless an error of its own
/// says more. The same for a task's span when tokio catches the task's
/// panic (a `JoinError`), and for a Lambda handler's, which the runtime
/// catches. What ran before and after is untouched.
#[test]
fn a_span_a_panic_unwinds_through_is_a_fault() {
    let (traces, _xray) = common::run_in_memory(
        |b| b.with_sampler(tracing_xray::sampling::AlwaysSample),
        || {
            let caught = std::panic::catch_unwind(|| {
                tracing::info_span!("request").in_scope(|| {
                    tracing::info_span!("load").in_scope(|| {});
                    tracing::info_span!("render").in_scope(|| {
                        let _ = tracing::info_span!("said", error.message = "template missing")
                            .entered();
                        panic!("boom");
                    });
                });
            });
            assert!(caught.is_err());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let joined = rt.block_on(async {
                tokio::spawn(tracing::Instrument::instrument(
                    async { panic!("task failed") },
                    tracing::info_span!("task"),
                ))
                .await
            });
            assert!(joined.unwrap_err().is_panic());
            tracing::info_span!("next").in_scope(|| {});
        },
    );
    let by_name = |name: &str| {
        traces
            .iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == name)
            .unwrap_or_else(|| panic!("{name}: {traces:#?}"))
            .clone()
    };
    let request = by_name("request");
    assert_eq!(request["fault"], true, "{request:#}");
    assert_eq!(common::exception_messages(&request), ["panicked"]);
    let subs = request["subsegments"].as_array().unwrap();
    let (load, render) = (&subs[0], &subs[1]);
    assert!(
        load.get("fault").is_none(),
        "ended before the panic: {load:#}"
    );
    assert_eq!(render["fault"], true, "{render:#}");
    let said = &render["subsegments"][0];
    assert_eq!(said["fault"], true, "{said:#}");
    assert_eq!(common::exception_messages(said), ["template missing"]);
    let task = by_name("task");
    assert_eq!(task["fault"], true, "{task:#}");
    let next = by_name("next");
    assert!(
        next.get("fault").is_none() && next.get("cause").is_none(),
        "{next:#}"
    );
}

/// The error `load_order` fails with.
const NOT_FOUND: common::Failure = common::Failure("order 7 not found");

#[tracing::instrument(err)]
fn load_order() -> Result<(), common::Failure> {
    Err(NOT_FOUND)
}

/// Passes `load_order`'s error up without recording it; with `noisy`, it
/// also logs an unrelated ERROR of its own on the way (a fallback that
/// failed too).
#[tracing::instrument]
fn order_service(noisy: bool) -> Result<(), common::Failure> {
    let result = load_order();
    if noisy {
        tracing::error!("price cache unavailable");
    }
    result
}

#[tracing::instrument(err)]
fn get_order(noisy: bool) -> Result<(), common::Failure> {
    order_service(noisy)
}

/// The id of the exception `message` of the span named `name` in `doc`'s
/// tree, and its `cause`.
fn exception_in(doc: &Value, name: &str, message: &str) -> (Value, Value) {
    let span = common::walk(doc)
        .into_iter()
        .map(|(_, n)| n)
        .find(|n| n["name"] == name || n["metadata"]["tracing"]["span_name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc:#}"));
    let e = common::exceptions(span)
        .into_iter()
        .find(|e| e["message"] == message)
        .unwrap_or_else(|| panic!("no exception {message:?} on {name}: {doc:#}"));
    (e["id"].clone(), e["cause"].clone())
}

// Found by the hunt of events and exceptions.
//
// `get_order` -> `order_service` -> `load_order`, the outer and inner ones
// `#[instrument(err)]`; the middle one passes the error up unrecorded and
// logs an unrelated ERROR of its own. Before the fix, a span's exceptions
// replaced, for its ancestors, every exception below it, named or not: the
// middle span's unrelated one hid `load_order`'s, and `get_order`'s
// exception named no cause (with the middle span quiet, it did).
#[test]
fn an_unrelated_error_in_a_middle_span_does_not_break_the_link_of_an_error_passed_up() {
    let quiet = common::capture_documents(
        |b| b,
        || {
            let _ = get_order(false);
        },
    );
    let noisy = common::capture_documents(
        |b| b,
        || {
            let _ = get_order(true);
        },
    );
    // The quiet case: linked across the middle span.
    let (below, _) = exception_in(&quiet.docs[0], "load_order", "order 7 not found");
    let (_, cause) = exception_in(&quiet.docs[0], "get_order", "order 7 not found");
    assert_eq!(cause, below, "{:#}", quiet.docs[0]);
    // The middle span's own, unrelated error breaks it.
    let doc = &noisy.docs[0];
    exception_in(doc, "order_service", "price cache unavailable");
    let (below, _) = exception_in(doc, "load_order", "order 7 not found");
    let (_, cause) = exception_in(doc, "get_order", "order 7 not found");
    assert_eq!(
        cause, below,
        "get_order's exception should name load_order's as its cause: {doc:#}"
    );
}

// ===========================================================================
// Found by the review of the fixes above (the list of exceptions an
// ancestor may name, events' exceptions of credentials). Each test failed
// before its fix; each comment says what happened then: a streamed top's
// own exceptions were cut first from what its parent waits for, a trimmed
// copy of an error passed up took the one below with it, and every
// `[redacted]` credential error was taken for the same error.
// ===========================================================================

const WAIT: Duration = Duration::from_secs(10);

use common::Message as Boom;

/// The exception of message `message` on any (sub)segment named `name`.
fn exception_of(docs: &[Value], name: &str, message: &str) -> Value {
    common::nodes(docs)
        .into_iter()
        .filter(|n| n["name"] == name || n["metadata"]["tracing"]["span_name"] == name)
        .flat_map(common::exceptions)
        .find(|e| e["message"] == message)
        .unwrap_or_else(|| panic!("no exception {message:?} on {name}: {docs:#?}"))
}

// ---------------------------------------------------------------------------
// 1. An error passed up to a long-lived root across streamed parts
// ---------------------------------------------------------------------------

/// A step of a long job: `rows` rows, each rejected with an error of its
/// own (logged, handled), then the step fails.
#[tracing::instrument(err)]
fn step(n: usize, rows: usize) -> Result<(), Boom> {
    for i in 0..rows {
        info_span!("row", i).in_scope(|| tracing::error!("step {n}: row {i} rejected"));
    }
    Err(Boom(format!("step {n} failed")))
}

/// Runs a long-lived `job` root (streaming its finished subtrees) of eight
/// `step`s of `rows` rows each; the job logs the last step's error. Gives
/// the job's exception's `cause` and the id of step 7's exception.
fn job_of_steps(rows: usize) -> (Value, Value) {
    let docs = common::capture_documents_with(
        |b| b.with_max_held_subsegments(2).with_queue_capacity(1 << 16),
        |xray| {
            let job = info_span!("job");
            let mut last = Ok(());
            for n in 0..8 {
                last = job.in_scope(|| step(n, rows));
                xray.flush(WAIT).unwrap();
            }
            job.in_scope(|| {
                if let Err(e) = last {
                    tracing::error!(error = %e);
                }
            });
        },
    )
    .docs;
    let job = docs
        .iter()
        .find(|d| d.get("type").is_none() && d["metadata"]["tracing"]["span_name"] == "job")
        .expect("the job's segment");
    let cause = job["cause"]["exceptions"][0]["cause"].clone();
    let below = exception_of(&docs, "step", "step 7 failed")["id"].clone();
    (cause, below)
}

// What the user does: a long-lived `job` root (with_max_held_subsegments,
// so that its finished steps stream while it runs) runs 8
// `#[instrument(err)]` steps; each step logs an ERROR for each of 8 rows
// it rejects (handled), then fails; the job logs the last step's error.
//
// What happens: the job's exception has no `cause`. With rows that log
// nothing (control, same run otherwise) it names step 7's exception.
//
// What should happen: README (`&dyn Error` row): "an error recorded again
// by the spans it passes up through ... names the one below as its `cause`
// (in another document too: one a long-lived root streamed before it
// ended)". Before 4e25b7f it did, rows or not.
//
// Evidence: since 4e25b7f a span's unnamed exceptions below stay in
// `Assembler::exceptions` (up to 64) and come BEFORE its own, so
// `top_exceptions()` of a streamed step is [its rows' 8 ..., its own].
// `Worker::pack` keeps for the parent at most MAX_CARRIED_EXCEPTIONS = 64
// per waiting parent with `exceptions.iter().take(room)`: the FIRST ones.
// Seven steps fill 63 places with rows' errors and their own; step 7's
// own exception (the one the job names) is cut. A single step with 64 or
// more unrelated errors below it loses its own the same way.
#[test]
fn a_long_jobs_error_still_names_its_streamed_step_whose_rows_logged_errors() {
    let (cause, below) = job_of_steps(0);
    assert_eq!(cause, below, "control: rows logging nothing");
    let (cause, below) = job_of_steps(8);
    assert_eq!(
        cause, below,
        "the job's error should name step 7's exception (sent in an earlier part)"
    );
}

// ---------------------------------------------------------------------------
// 2. An error passed up past a span whose own copy of it was trimmed
// ---------------------------------------------------------------------------

/// An error with a `source()` chain of `depth` messages of about 1,000
/// characters.
#[derive(Debug)]
struct Chain {
    text: String,
    next: Option<Box<Chain>>,
}
impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as _)
    }
}
fn chain(tag: usize, depth: usize) -> Chain {
    let mut c = None;
    for d in (0..depth).rev() {
        c = Some(Box::new(Chain {
            text: format!("{tag}-{d} {}", "c".repeat(990)),
            next: c,
        }));
    }
    *c.unwrap()
}

#[tracing::instrument(err)]
fn read_block() -> Result<(), Boom> {
    Err(Boom("block 7 unreadable".into()))
}

/// Passes `read_block`'s error up (recording it), after logging seven
/// cleanup failures with long source chains: too large for a document,
/// the span keeps only its first exception.
#[tracing::instrument(err)]
fn flush_cache() -> Result<(), Boom> {
    let r = read_block();
    for i in 0..7 {
        let e = chain(i, 9);
        tracing::error!(error = &e as &dyn std::error::Error, "cleanup {i} failed");
    }
    r
}

#[tracing::instrument(err)]
fn save() -> Result<(), Boom> {
    flush_cache()
}

// What the user does: `save` -> `flush_cache` -> `read_block`, all
// `#[instrument(err)]`, the error of `read_block` passed up; `flush_cache`
// also logs seven cleanup failures with long `source()` chains, so that its
// subsegment is trimmed down to its first exception (its copy of
// `block 7 unreadable` goes, counted in `exceptions_dropped`).
//
// What happens: `save`'s exception names no cause, although the exception
// it passes up, `read_block`'s, is sent.
//
// What should happen: the commit's rule: a span's exceptions stand, for its
// ancestors, only for those below that they NAME; the others stay. The
// trimmed copy names nothing any more (it is in no document), so
// `read_block`'s exception should stay for `save` to name (README: "an error
// recorded again by the spans it passes up through ... names the one below
// as its `cause`").
//
// Evidence: `Assembler::link_to_descendants` removes `read_block`'s
// exception from `exceptions` as soon as flush_cache's copy names it;
// `serialize_node` then trims that copy away and removes it too (`gone`),
// without giving back what it named. (Step 4 of the trim also clears the
// kept first exception's `cause`, with the same effect.)
#[test]
fn an_error_passed_up_past_a_span_whose_copy_was_trimmed_names_the_one_below() {
    let c = common::capture_documents(
        |b| b,
        || {
            let _ = save();
        },
    );
    let flush = common::node(&c.docs, "flush_cache");
    assert_eq!(
        flush["metadata"]["tracing_xray"]["trimmed"], true,
        "{flush:#}"
    );
    let below = exception_of(&c.docs, "read_block", "block 7 unreadable");
    let passed = exception_of(&c.docs, "save", "block 7 unreadable");
    assert_eq!(
        passed["cause"], below["id"],
        "save's exception should name read_block's (flush_cache's copy was trimmed): {:#?}",
        c.docs
    );
}

// ---------------------------------------------------------------------------
// 3. Redacted credential errors linked to each other
// ---------------------------------------------------------------------------

// What the user does: a child span logs
// `error!(password = &e as &dyn Error, "db login failed")`, and later its
// parent, for an unrelated failure, `error!(api_key = &other as &dyn Error,
// "partner call refused")`. Both values are credentials' texts: sent as
// `[redacted]` since 4e25b7f.
//
// What happens: the parent's `[redacted]` source exception names the
// child's `[redacted]` source as its `cause`: X-Ray shows the partner's
// revoked key as caused by the database's password failure.
//
// What should happen: two different errors are not linked (README: only
// "an error recorded again by the spans it passes up through" names the one
// below). The assembler links by the text as recorded (`hashes`, "two
// errors that differ only in a URL's query are two errors"); a credential
// error's value recorded on a span field is hashed by its real text.
//
// Evidence: `record_kept_event` (src/layer.rs) replaces an event's
// credential error text by `[redacted]` in the record itself, before the
// worker hashes it (`message_hash(source)` in `Assembler::entity`): every
// credential error logged in an event has the same hash. Before 4e25b7f the
// real texts were hashed (and the texts differ).
#[test]
fn two_unrelated_credential_errors_in_events_are_not_linked_as_cause_and_effect() {
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!("request").in_scope(|| {
                info_span!("db_login").in_scope(|| {
                    let e = common::Failure("password authentication failed for app: hunter2");
                    tracing::error!(password = &e as &dyn std::error::Error, "db login failed");
                });
                let e = common::Failure("key AKIAEXAMPLE revoked");
                tracing::error!(
                    api_key = &e as &dyn std::error::Error,
                    "partner call refused"
                );
            });
        },
    );
    assert!(
        c.raw
            .iter()
            .all(|d| !d.contains("hunter2") && !d.contains("AKIAEXAMPLE")),
        "control: the values are redacted"
    );
    let below: Vec<Value> = common::exceptions(common::node(&c.docs, "db_login"))
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let request = common::node(&c.docs, "request");
    let linked: Vec<Value> = common::exceptions(request)
        .into_iter()
        .filter(|e| below.contains(&e["cause"]))
        .collect();
    assert!(
        linked.is_empty(),
        "the request's unrelated error names db_login's as its cause: {linked:#?}\n{request:#}"
    );
}

// Shared by the modules below.

/// The message the attempts of the modules below fail with.
const REFUSED: &str = "connection refused";

/// The exception ids of `node`.
fn ids(node: &Value) -> Vec<Value> {
    common::exceptions(node)
        .iter()
        .map(|e| e["id"].clone())
        .collect()
}

/// Every `cause` in `docs` names an exception some document holds.
fn assert_no_dangling(docs: &[Value]) {
    let all: Vec<Value> = common::nodes(docs)
        .into_iter()
        .flat_map(common::exceptions)
        .collect();
    let known: Vec<&Value> = all.iter().map(|e| &e["id"]).collect();
    for e in &all {
        if let Some(c) = e.get("cause") {
            assert!(known.contains(&c), "dangling cause {c} in {e}");
        }
    }
}

// Found by the review of the link changes: which copy of an error below an
// exception names. Before the fix, the copy found last in the list (a
// retry loop's copy of attempt 1, or of attempt 8 past the per-span bound)
// beat the last attempt's own exception, and a field's exception text
// (`exception.message`, recorded after attempt 1) was timed at its span's
// end, so attempt 2, recorded after it, was named as its cause.
mod which_copy_is_named {
    use super::*;

    use common::Failure as Boom;

    /// Every node (segment or subsegment) of `docs` whose name (a segment: its
    /// span's name) is `name`, in document order.
    fn all_named<'a>(docs: &'a [Value], name: &str) -> Vec<&'a Value> {
        common::nodes(docs)
            .into_iter()
            .filter(|n| n["name"] == name || n["metadata"]["tracing"]["span_name"] == name)
            .collect()
    }

    /// The `fetch` subsegment of attempt `n` (its `attempt` argument).
    fn fetch_of(docs: &[Value], n: u64) -> &Value {
        all_named(docs, "fetch")
            .into_iter()
            .find(|f| f.to_string().contains(&format!("\"attempt\":{n}")))
            .unwrap_or_else(|| panic!("no fetch of attempt {n}: {docs:#?}"))
    }

    // ---------------------------------------------------------------------------
    // 1. A retry loop that logged an earlier attempt's failure
    // ---------------------------------------------------------------------------

    #[tracing::instrument(err)]
    fn fetch(attempt: u64) -> Result<(), Boom> {
        Err(Boom(REFUSED))
    }

    /// Retries `fetch` up to `attempts` times, logging (ERROR) each failure it
    /// retries after; the last one is returned, not logged here.
    #[tracing::instrument]
    fn with_retry(attempts: u64) -> Result<(), Boom> {
        let mut n = 1;
        loop {
            match fetch(n) {
                Ok(()) => return Ok(()),
                Err(e) if n < attempts => {
                    tracing::error!(error = %e, attempt = n, "retrying");
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    #[tracing::instrument(err)]
    fn call_partner(attempts: u64) -> Result<(), Boom> {
        with_retry(attempts)
    }

    // What the user does: a common retry helper. `call_partner`
    // (`#[instrument(err)]`) -> `with_retry` (`#[instrument]`, logs an ERROR
    // "retrying" with the error of each attempt it retries after) -> `fetch`
    // (`#[instrument(err)]`), two attempts, both refused; `with_retry` returns
    // attempt 2's error without logging it, `call_partner` logs it.
    //
    // What happens: `call_partner`'s exception names `with_retry`'s copy of
    // attempt 1's failure (recorded before attempt 2 even ran) as its cause.
    //
    // What should happen: the error passed up is attempt 2's; README: "an
    // error recorded again by the spans it passes up through ... names the one
    // below as its cause"; the commit: "an ancestor names the nearest copy of
    // an error passed up". `with_retry` holds no copy of attempt 2's error, so
    // the cause is `fetch` #2's exception. The console shows the caller's
    // failure as caused by the first attempt, a different failure.
    //
    // Evidence: `Assembler::link_to_descendants` searches `exceptions` newest
    // first in LIST order, and a span's own exceptions are pushed after those
    // below: `with_retry`'s "retrying" copy (time t1') comes after fetch #2's
    // (t2 > t1') in the list, so it is found first; the time rule (`then <=
    // at`) only excludes exceptions recorded after the caller's. Picking the
    // matching exception recorded latest (before `at`) names fetch #2.
    #[test]
    fn a_callers_error_names_the_last_attempts_failure_not_a_retry_loops_earlier_copy() {
        let c = common::capture_documents(
            |b| b,
            || {
                let _ = call_partner(2);
            },
        );
        assert_no_dangling(&c.docs);
        let caller = common::node(&c.docs, "call_partner");
        let cause = common::exceptions(caller)[0]["cause"].clone();
        let retry_copies = ids(common::node(&c.docs, "with_retry"));
        let first = ids(fetch_of(&c.docs, 1));
        let last = ids(fetch_of(&c.docs, 2));
        assert!(
            !retry_copies.contains(&cause) && !first.contains(&cause),
            "call_partner's error (attempt 2's) names a copy of attempt 1's failure \
             (with_retry's {retry_copies:?}, fetch #1's {first:?}): cause {cause}, \
             fetch #2's is {last:?}\n{:#?}",
            c.docs
        );
        assert_eq!(cause, last[0], "{:#?}", c.docs);
    }

    /// Retries `fetch` `attempts` times, logging every failure (the last too).
    #[tracing::instrument]
    fn with_logged_retries(attempts: u64) -> Result<(), Boom> {
        let mut last = Ok(());
        for n in 1..=attempts {
            last = fetch(n);
            if let Err(e) = &last {
                tracing::error!(error = %e, attempt = n, "attempt failed");
            }
        }
        last
    }

    #[tracing::instrument(err)]
    fn sync_orders(attempts: u64) -> Result<(), Boom> {
        with_logged_retries(attempts)
    }

    // What the user does: `sync_orders` (`#[instrument(err)]`) ->
    // `with_logged_retries` (logs an ERROR for every failed attempt, 10
    // attempts) -> `fetch` (`#[instrument(err)]`); all refused; the last
    // error is passed up and logged by `sync_orders`.
    //
    // What happens: `with_logged_retries` keeps 8 errors (the per-span bound;
    // attempts 9 and 10 are counted as dropped; each error is "attempt failed"
    // with the error as its source), and `sync_orders`'s exception names the
    // 8th's source, the copy of attempt 8's failure.
    //
    // What should happen: the error passed up is attempt 10's; its copy in the
    // middle span was dropped past the bound, so the nearest copy sent is
    // `fetch` #10's own exception (the same fallback the commit gives for a
    // copy trimmed away). Naming attempt 8's shows the caller failing because
    // of an attempt that was retried twice after.
    //
    // Evidence: same cause as above: list order, not recording time, picks the
    // candidate; the middle span's 8 copies all come after the 10 `fetch`
    // exceptions in `exceptions`.
    #[test]
    fn an_error_whose_middle_copy_was_dropped_past_the_bound_names_its_own_attempt() {
        let c = common::capture_documents(
            |b| b,
            || {
                let _ = sync_orders(10);
            },
        );
        assert_no_dangling(&c.docs);
        let middle = common::node(&c.docs, "with_logged_retries");
        let kept = common::exceptions(middle)
            .iter()
            .filter(|e| e["message"] == "attempt failed")
            .count();
        assert_eq!(kept, 8, "control: the per-span bound: {middle:#}");
        let caller = common::node(&c.docs, "sync_orders");
        let cause = common::exceptions(caller)[0]["cause"].clone();
        let last = ids(fetch_of(&c.docs, 10));
        assert_eq!(
            cause,
            last[0],
            "sync_orders' error (attempt 10's) names {cause}; with_logged_retries' copies are {:?}",
            ids(middle)
        );
    }

    // ---------------------------------------------------------------------------
    // 2. A span's `exception.message` names an exception recorded after it
    // ---------------------------------------------------------------------------

    // What the user does: a client span with `exception.message = Empty`
    // (reqwest-tracing / tracing-opentelemetry style); attempt 1 fails
    // ("connection refused"), the code records that text on the span right
    // away, then falls back to a second attempt, which fails with the same
    // text (not recorded again: the span's status was already set).
    //
    // What happens: the span's exception (from its `exception.message` field)
    // names attempt 2's exception, recorded after the field was.
    //
    // What should happen: SPEC §1.6 / the crate's own rule (doc of
    // `link_to_descendants`): "an exception below recorded later ... is not its
    // cause". The same shape with an ERROR event instead of the field names
    // attempt 1's (`an_exception_is_caused_only_by_one_recorded_before_it` in
    // exception_linking.rs).
    //
    // Evidence: `Assembler::entity` times a field's exception "as of the span's
    // end (a field gives no time of its own)": `node.end`, so every exception
    // below passes the time rule. The layer could keep when the field was
    // recorded (it does for an error value recorded on a span field:
    // `ErrorRecord::at`).
    #[test]
    fn an_exception_message_field_names_no_exception_recorded_after_it() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!("call", exception.message = Empty);
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("exception.message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                });
            },
        );
        assert_no_dangling(&c.docs);
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        assert_eq!(own.len(), 1, "{call:#}");
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            own[0]["cause"], first[0],
            "the field's exception names attempt 2's ({second:?}), recorded after it: {call:#}"
        );
    }
}

// Found by the review of the field timing above: a field's exception took
// the time of the last of the four text fields recorded. Before the fix, an
// `exception.message` recorded after attempt 1, then a summary
// `otel.status_message` recorded at the end, timed the exception at the end,
// and attempt 2 (recorded after the field) was named as its cause.
mod field_times {
    use super::*;

    // What the user does: a client span in the OpenTelemetry conventions'
    // style, `exception.message = Empty, otel.status_code = Empty,
    // otel.status_message = Empty`. Attempt 1 fails ("connection refused"); the
    // code records that text as `exception.message` right away (as the commit's
    // own test does), falls back to attempt 2, which fails with the same text,
    // and at the end sets the span's status: `otel.status_code = "ERROR"`,
    // `otel.status_message = "upstream unavailable"` (a summary, another text).
    //
    // What happens: the span's exception ("connection refused", from
    // `exception.message`, which wins over the status message) names attempt
    // 2's exception as its cause, recorded after the field was: the defect the
    // commit says it fixed, back as soon as any other exception-text field
    // (here the status message, which only goes to metadata) is recorded later.
    //
    // What should happen: the exception is timed when ITS text was recorded
    // (attempt 1's failure), so it names attempt 1's exception, as it does
    // without the status message
    // (`exception_linking::which_copy_is_named::an_exception_message_field_names_no_exception_recorded_after_it`).
    //
    // Evidence: `SpanData::record_field` sets `Rare::message_at` for a record
    // of ANY of exception.message / error.message / otel.status_message /
    // otel.status_description, while the exception's text is
    // `exception_message.or(status_message)` (conventions.rs): the time is the
    // last of the four fields', not the text's.
    #[test]
    fn exception_message_field_is_timed_by_its_own_record_not_a_later_status_message() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!(
                    "call",
                    exception.message = Empty,
                    otel.status_code = Empty,
                    otel.status_message = Empty
                );
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("exception.message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("otel.status_code", "ERROR");
                    call.record("otel.status_message", "upstream unavailable");
                });
            },
        );
        assert_no_dangling(&c.docs);
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        assert_eq!(own.len(), 1, "{call:#}");
        assert_eq!(own[0]["message"], REFUSED, "control: {call:#}");
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            own[0]["cause"], first[0],
            "the exception.message exception names attempt 2's ({second:?}), recorded after it: {call:#}"
        );
    }

    // What the user does: reqwest-tracing's / tracing-opentelemetry's shape:
    // `error.message = Empty, otel.status_description = Empty`. Attempt 1 fails;
    // the code records `error.message` (attempt 1's text); attempt 2 fails with
    // the same text; then `otel.status_description` is set to a summary.
    //
    // What happens / should happen / evidence: as above, with the other two
    // keys: `error.message`'s exception names attempt 2's.
    #[test]
    fn error_message_field_is_timed_by_its_own_record_not_a_later_status_description() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!(
                    "call",
                    error.message = Empty,
                    otel.status_description = Empty
                );
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("error.message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("otel.status_description", "gave up after 2 attempts");
                });
            },
        );
        assert_no_dangling(&c.docs);
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        let field = own
            .iter()
            .find(|e| e["message"] == REFUSED)
            .unwrap_or_else(|| panic!("no field exception: {call:#}"));
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            field["cause"], first[0],
            "the error.message exception names attempt 2's ({second:?}), recorded after it: {call:#}"
        );
    }
}

// Found by the review of the per-slot timing: one time served two fields
// each (`exception.message` / `error.message`, and the two status
// messages), and a folded span's field took the operation span's time.
// Before the fix, a later record of the other field of a pair (a different
// text, or an empty one that gives none) moved the exception's time past
// attempt 2, which was then named as its cause. Each field now has its own
// time, taken from the span that holds it, and an empty value sets none.
mod field_times_by_field {
    use super::*;

    // What the user does: a client span carrying both exception-text
    // conventions, `error.message = Empty, exception.message = Empty` (a
    // per-attempt `error.message` the code keeps up to date, and the
    // `exception.message` of the error the call reports). Attempt 1 fails
    // ("connection refused"); the code records `error.message = "attempt 1:
    // connection refused"` and the call's exception `exception.message =
    // "connection refused"`; attempt 2 fails with the same text; the code
    // records `error.message = "attempt 2: connection refused"`.
    //
    // What happens: the span's exception is "connection refused" (from
    // `exception.message`, the later field in the span's order, which wins the
    // slot), but it is timed by the last record of `error.message` (after
    // attempt 2), so it names attempt 2's exception as its cause: an exception
    // recorded after the text naming it.
    //
    // What should happen: timed by the record of `exception.message` (between
    // the attempts), it names attempt 1's exception.
    //
    // Evidence: `SpanData::record_field` sets `exception_text_at` for
    // "exception.message" | "error.message" alike; `field_message_at(node,
    // true)` reads it whichever field gave the text.
    #[test]
    fn exception_message_is_not_timed_by_a_later_error_message_record() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!("call", error.message = Empty, exception.message = Empty);
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("error.message", "attempt 1: connection refused");
                    call.record("exception.message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("error.message", "attempt 2: connection refused");
                });
            },
        );
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        let field = own
            .iter()
            .find(|e| e["message"] == REFUSED)
            .unwrap_or_else(|| panic!("control: no exception.message exception: {call:#}"));
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            field["cause"], first[0],
            "the exception.message exception (recorded between the attempts) names attempt 2's \
             ({second:?}), recorded after it: {call:#}"
        );
    }

    // What the user does: as above, but the later record is an empty
    // `error.message` (`span.record("error.message", err.to_string())` of an
    // error whose `Display` is empty, or a field cleared). An empty value "is
    // none: it never hides another name's value" (`Conventions::take`), so the
    // text stays `exception.message`'s.
    //
    // What happens: the empty record still sets `exception_text_at`: the
    // exception, whose text was recorded before attempt 2, names attempt 2's.
    //
    // What should happen: it names attempt 1's (a field that gives no text
    // does not time the text).
    #[test]
    fn exception_message_is_not_timed_by_a_later_empty_error_message() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!("call", exception.message = Empty, error.message = Empty);
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("exception.message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("error.message", "");
                });
            },
        );
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        assert_eq!(own.len(), 1, "{call:#}");
        assert_eq!(own[0]["message"], REFUSED, "control: {call:#}");
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            own[0]["cause"], first[0],
            "the exception.message exception names attempt 2's ({second:?}), recorded after it: \
             {call:#}"
        );
    }

    // What the user does: the status pair, no exception text. A span declares
    // `otel.status_description = Empty, otel.status_message = Empty`
    // (tracing-opentelemetry's description, and the message the OpenTelemetry
    // conventions name). Attempt 1 fails; the code records
    // `otel.status_description = "attempt 1 failed"` (marks the failure), then
    // `otel.status_message = "connection refused"`; attempt 2 fails with the
    // same text; the code records `otel.status_description = "gave up after 2
    // attempts"`.
    //
    // What happens: the exception's text is the status message ("connection
    // refused", the later field in the span's order), timed by the last record
    // of `otel.status_description`: it names attempt 2's exception.
    //
    // What should happen: it names attempt 1's.
    //
    // Evidence: `record_field` sets `status_text_at` for both status fields;
    // `field_message_at(node, false)` reads it.
    #[test]
    fn status_message_is_not_timed_by_a_later_status_description_record() {
        let c = common::capture_documents(
            |b| b,
            || {
                let call = info_span!(
                    "call",
                    otel.status_description = Empty,
                    otel.status_message = Empty
                );
                call.in_scope(|| {
                    info_span!("attempt_1").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("otel.status_description", "attempt 1 failed");
                    call.record("otel.status_message", REFUSED);
                    info_span!("attempt_2").in_scope(|| tracing::error!(error = REFUSED));
                    call.record("otel.status_description", "gave up after 2 attempts");
                });
            },
        );
        let call = common::node(&c.docs, "call");
        let own = common::exceptions(call);
        let field = own
            .iter()
            .find(|e| e["message"] == REFUSED)
            .unwrap_or_else(|| panic!("control: no status message exception: {call:#}"));
        let first = ids(common::node(&c.docs, "attempt_1"));
        let second = ids(common::node(&c.docs, "attempt_2"));
        assert_eq!(
            field["cause"], first[0],
            "the status message exception (recorded between the attempts) names attempt 2's \
             ({second:?}), recorded after it: {call:#}"
        );
    }

    // What the user does: an AWS SDK operation span (`rpc.system = "aws-api"`,
    // the SDK's `DynamoDB.GetItem`) with the interceptor's span below it
    // (target `tracing_xray::aws_sdk`, folded into the operation: `merged`),
    // which records `error.type` and `otel.status_message = "connection
    // refused"` and closes; afterwards, still inside the operation, a nested
    // call (`STS.AssumeRole`, its own subsegment) fails with the same text.
    // (The order is built by hand: in the SDK the interceptor records at
    // `read_after_execution`, near the operation's end, so this needs a nested
    // call after it.)
    //
    // What happens: the operation's exception takes its text from the
    // interceptor's field but its time from the OPERATION span
    // (`field_message_at(node, ..)`: the node's `status_text_at`, None, so the
    // node's end), so it names the STS exception, recorded after the
    // interceptor's status message, as its cause.
    //
    // What should happen: a field of a folded span is timed by that span's
    // record (here before the STS call): no cause.
    #[test]
    fn folded_interceptor_status_message_is_timed_by_its_own_record() {
        let c = common::capture_documents(
            |b| b,
            || {
                let op = info_span!(
                    "DynamoDB.GetItem",
                    "rpc.system" = "aws-api",
                    "rpc.service" = "DynamoDB",
                    "rpc.method" = "GetItem"
                );
                op.in_scope(|| {
                    let call = info_span!(
                        target: "tracing_xray::aws_sdk",
                        "aws_sdk_call",
                        "rpc.system" = "aws-api",
                        "error.type" = Empty,
                        "otel.status_message" = Empty
                    );
                    call.record("error.type", "ServiceUnavailable");
                    call.record("otel.status_message", REFUSED);
                    drop(call);
                    info_span!(
                        "STS.AssumeRole",
                        "rpc.system" = "aws-api",
                        "rpc.service" = "STS",
                        "rpc.method" = "AssumeRole"
                    )
                    .in_scope(|| tracing::error!(error = REFUSED));
                });
            },
        );
        let op = common::node(&c.docs, "DynamoDB");
        let own = common::exceptions(op);
        assert_eq!(own.len(), 1, "{op:#}");
        assert_eq!(own[0]["message"], REFUSED, "control: {op:#}");
        let sts = ids(common::node(&c.docs, "STS"));
        assert!(
            own[0].get("cause").is_none(),
            "the interceptor's status message exception names STS's ({sts:?}), recorded after it: \
             {op:#}"
        );
    }
}

// Found by the hunt of the README's claims. A span passes an error up (it
// logs the error its child logged) and holds seven long error chains: too
// large for a document, it keeps only its first exception. Before the fix,
// that exception lost its `cause` whatever it named: the copy below it, an
// error passed up, as well as its own sources, dropped.
#[test]
fn a_span_trimmed_to_its_first_exception_keeps_its_link_below() {
    let docs = common::capture_documents(
        |b| b,
        || {
            info_span!("root").in_scope(|| {
                let outer = info_span!(
                    "outer",
                    h1 = Empty,
                    h2 = Empty,
                    h3 = Empty,
                    h4 = Empty,
                    h5 = Empty,
                    h6 = Empty,
                    h7 = Empty
                );
                outer.in_scope(|| {
                    info_span!("inner").in_scope(|| tracing::error!("payment declined"));
                    tracing::error!("payment declined");
                    for (i, f) in ["h1", "h2", "h3", "h4", "h5", "h6", "h7"]
                        .iter()
                        .enumerate()
                    {
                        outer.record(*f, &chain(i, 9) as &dyn std::error::Error);
                    }
                });
            });
        },
    )
    .docs;
    let outer = common::node(&docs, "outer");
    assert_eq!(
        outer["metadata"]["tracing_xray"]["trimmed"], true,
        "{outer:#}"
    );
    let ex = common::exceptions(outer);
    assert_eq!(ex.len(), 1, "{outer:#}");
    assert_eq!(ex[0]["message"], "payment declined");
    let inner = exception_of(&docs, "inner", "payment declined");
    assert_eq!(ex[0]["cause"], inner["id"], "{outer:#}");
}

// Found by the hunt of the README's claims. An AWS call records its
// failure's text, then a call made inside it (STS) logs the same error,
// then an HTTP connector folded into the call (its fields never sent)
// records a text of its own. Before the fix, the call's exception was
// timed by the connector's later record, and so named STS's exception, one
// recorded after it, as its cause.
#[test]
fn a_calls_exception_text_is_timed_by_its_own_record_not_a_folded_spans() {
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!("r").in_scope(|| {
                let op = info_span!(
                    target: "aws_sdk_dynamodb::operation",
                    "GetItem",
                    rpc.system = "aws-api",
                    rpc.service = "DynamoDB",
                    rpc.method = "GetItem",
                    error.message = Empty,
                );
                op.in_scope(|| {
                    op.record("error.message", "access denied");
                    info_span!(
                        target: "aws_sdk_sts::operation",
                        "AssumeRole",
                        rpc.system = "aws-api",
                        rpc.service = "STS",
                        rpc.method = "AssumeRole",
                    )
                    .in_scope(|| tracing::error!("access denied"));
                    let send = info_span!(target: "app::connector", "send", error.message = Empty);
                    send.in_scope(|| send.record("error.message", "connection reset"));
                });
            });
        },
    );
    let ddb = exception_of(&c.docs, "DynamoDB", "access denied");
    let sts = exception_of(&c.docs, "STS", "access denied");
    assert!(
        !c.raw.iter().any(|r| r.contains("connection reset")),
        "folded"
    );
    assert_ne!(ddb["cause"], sts["id"], "{:#?}", c.docs);
}
