//! Nothing the HTTP exporter or its client logs, at any level, through
//! `tracing` or through `log`, contains the secret key or the session token;
//! nor does its builder's `Debug` or error hold an endpoint's secrets.
#![cfg(feature = "http")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_xray::export::HttpExporter;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Answers every request with `status` and `body`, one connection each.
fn fake_api(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(&stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut buf = vec![0; len];
            let _ = reader.read_exact(&mut buf);
            let _ = write!(
                &stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn secrets_never_reach_the_logs() {
    tracing_log::LogTracer::init().expect("forward log records to tracing");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    for (status, body) in [
        (200, r#"{"UnprocessedTraceSegments":[]}"#),
        (
            403,
            r#"{"__type":"InvalidSignatureException","message":"The canonical request: x-amz-security-token:FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue"}"#,
        ),
        (500, r#"{"__type":"InternalFailure"}"#),
    ] {
        let exporter = HttpExporter::builder()
            .with_region("us-east-1")
            .with_endpoint(fake_api(status, body))
            .with_static_credentials("AKIDEXAMPLE", SECRET, Some(TOKEN.into()))
            .with_retry_backoff(Duration::from_millis(10), Duration::from_millis(20))
            .build()
            .unwrap();
        let layer = tracing_xray::builder()
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_exporter(exporter)
            .build();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("request").in_scope(|| {});
        });
        let _ = xray.shutdown(Duration::from_millis(500));
        assert_eq!(xray.stats().traces_queued, 1);
    }

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("tracing_xray"),
        "our own events are logged: {text}"
    );
    assert!(
        text.contains("aws_sigv4"),
        "the signer's events are logged: {text}"
    );
    // A wire dump (ureq's TRACE logging) splits text into rows of 16
    // characters: join the rows' text columns too.
    let rows: String = text
        .lines()
        .filter(|l| l.contains("ureq_proto::util"))
        .filter_map(|l| l.get(l.len().saturating_sub(16)..))
        .collect();
    for haystack in [&text, &rows] {
        for secret in [SECRET, TOKEN] {
            assert!(
                !haystack.contains(secret),
                "{secret:?} leaked into:\n{haystack}"
            );
        }
    }
}

// Found by a hunt for secrets (README: "Secrets never appear in `Debug`
// output, errors or `tracing` logs"): `HttpExporter`'s builder echoed an
// endpoint's user info and query in its `Debug` and in the build error.
//
// A user passes an endpoint with credentials in it
// (`with_endpoint("https://AKIA…:secret@xray.…")`, or a proxy URL with a
// `?token=`). The crate rightly refuses it ("user info is not allowed"), but
// `HttpExporterError::InvalidEndpoint`'s text quotes the whole URL, secret
// included (src/export/http.rs `validate_endpoint`), and
// `HttpExporterBuilder`'s `Debug` prints the endpoint as given. An
// application that logs the build error (the rustdoc's own example does
// `Err(e) => eprintln!("{e}")`) writes the secret to its logs.
//
// Found by the reviews of that fix: an endpoint written without its scheme
// (`AKIDEXAMPLE:…@xray-proxy.internal:2000`) was quoted whole, and one whose
// password holds a `#` or a `?` showed the password up to it (cut there as
// if a fragment or query began).
#[test]
fn an_http_exporter_endpoints_secrets_stay_out_of_errors_and_debug() {
    const SECRET: &str = "S3CR3T";
    let mut texts = Vec::new();
    for endpoint in [
        format!("https://AKIDEXAMPLE:{SECRET}-xyz@xray.us-east-1.amazonaws.com"),
        format!("https://xray-proxy.internal?token={SECRET}-xyz"),
        format!("AKIDEXAMPLE:{SECRET}-xyz@xray-proxy.internal:2000"),
        format!("AKIDEXAMPLE:{SECRET}#xyz@xray-proxy.internal:2000"),
        format!("AKIDEXAMPLE:{SECRET}?xyz@xray-proxy.internal:2000"),
    ] {
        let builder = HttpExporter::builder()
            .with_region("us-east-1")
            .with_endpoint(endpoint.clone())
            .with_static_credentials(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
            );
        texts.push(format!("{builder:?}"));
        let err = builder
            .build()
            .expect_err("an endpoint with user info or a query, or no scheme, is refused");
        texts.push(format!("{err}"));
        texts.push(format!("{err:?}"));
    }
    let leaked: Vec<&String> = texts.iter().filter(|t| t.contains(SECRET)).collect();
    assert!(
        leaked.is_empty(),
        "the endpoint's secret is in Debug / error text: {leaked:#?}"
    );
}
