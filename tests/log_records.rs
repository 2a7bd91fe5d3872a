//! `log` records forwarded to `tracing` by tracing-log's `LogTracer` (what
//! libraries that use the `log` crate produce) all come from one callsite of
//! tracing-log's; an ERROR record's exception still names the file, line and
//! target the record came from. Its own test binary: `LogTracer` is global.

mod common;

use tracing::info_span;

#[test]
fn an_error_log_record_is_an_exception_at_the_records_file_and_line() {
    tracing_log::LogTracer::init().expect("forward log records to tracing");
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
