//! `log` records forwarded to `tracing` by tracing-log's `LogTracer` (what
//! libraries that use the `log` crate produce) all come from one callsite of
//! tracing-log's; an ERROR record's exception still names the file, line and
//! target the record came from. Its own test binary: `LogTracer` is global.

mod common;

use std::time::Duration;

use common::{assert_schema_valid, schema, Daemon};
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::UdpExporter;

#[test]
fn an_error_log_record_is_an_exception_at_the_records_file_and_line() {
    tracing_log::LogTracer::init().expect("forward log records to tracing");
    let daemon = Daemon::start();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(UdpExporter::to_address(daemon.addr))
        .build();
    let xray = layer.handle();
    let line =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            info_span!("handler").in_scope(|| {
                let line = line!() + 1;
                tracing_log::log::error!(target: "billing::client", "card declined");
                line
            })
        });
    xray.flush(Duration::from_secs(10)).unwrap();
    let docs = daemon.documents(1, Duration::from_secs(10));
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_schema_valid(&schema(), &docs[0]);
    let exception = &docs[0]["cause"]["exceptions"][0];
    assert_eq!(docs[0]["fault"], true, "{:#}", docs[0]);
    assert_eq!(exception["message"], "card declined");
    let frame = &exception["stack"][0];
    assert_eq!(frame["path"], "tests/log_records.rs", "{exception:#}");
    assert_eq!(frame["line"], line);
    assert_eq!(frame["label"], "billing::client");
}
