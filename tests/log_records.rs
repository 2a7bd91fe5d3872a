//! `log` records forwarded to `tracing` by tracing-log's `LogTracer` (what
//! libraries that use the `log` crate produce) all come from one callsite of
//! tracing-log's; an ERROR record's exception still names the file, line and
//! target the record came from. Its own test binary: `LogTracer` is global.

mod common;

use tracing::info_span;

/// Forwards `log` records to `tracing`, once for this binary.
fn forward_log_records() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing_log::LogTracer::init().expect("forward log records to tracing"));
}

#[test]
fn an_error_log_record_is_an_exception_at_the_records_file_and_line() {
    forward_log_records();
    let mut line = 0;
    let docs = common::sent_over_udp("svc", || {
        info_span!("handler").in_scope(|| {
            line = line!() + 1;
            tracing_log::log::error!(target: "billing::client", "card declined");
        })
    });
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let exception = &docs[0]["cause"]["exceptions"][0];
    assert_eq!(docs[0]["fault"], true, "{:#}", docs[0]);
    assert_eq!(exception["message"], "card declined");
    let frame = &exception["stack"][0];
    assert_eq!(frame["path"], "tests/log_records.rs", "{exception:#}");
    assert_eq!(frame["line"], line);
    assert_eq!(frame["label"], "billing::client");
}

/// Recorded as events (`with_events(true)`), records below ERROR keep their
/// own target too, not tracing-log's `log` (which every record used to get).
#[test]
fn log_records_recorded_as_events_keep_their_target() {
    forward_log_records();
    let (traces, _) = common::run_in_memory(
        |b| {
            b.with_sampler(tracing_xray::sampling::AlwaysSample)
                .with_events(true)
        },
        || {
            info_span!("request").in_scope(|| {
                tracing_log::log::warn!(target: "app::payments", "retrying");
                tracing_log::log::info!(target: "app::payments", "charged");
            })
        },
    );
    let events = traces[0]["metadata"]["tracing"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", traces[0]));
    assert_eq!(events.len(), 2, "{events:#?}");
    for event in events {
        assert_eq!(event["target"], "app::payments", "{event:#}");
        assert!(event.get("log.target").is_none(), "{event:#}");
    }
}
