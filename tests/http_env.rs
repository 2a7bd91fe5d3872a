//! `HttpExporter::builder()` configured from the environment (its own test
//! binary: it changes environment variables).
#![cfg(feature = "http")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use tracing_xray::export::{HttpExporter, HttpExporterError};

const VARS: [&str; 5] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Accepts one request and sends its head (lowercased) back over `tx`.
fn fake_api() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(&stream);
        let (mut head, mut len) = (String::new(), 0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let _ = write!(
            &stream,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        tx.send(head).unwrap();
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn region_and_credentials_come_from_the_environment() {
    for v in VARS {
        // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
        unsafe { std::env::remove_var(v) };
    }
    let err = HttpExporter::builder().build().unwrap_err();
    assert_eq!(err, HttpExporterError::MissingRegion);

    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_DEFAULT_REGION", "eu-west-3") };
    let err = HttpExporter::builder().build().unwrap_err();
    assert_eq!(err, HttpExporterError::MissingCredentials);

    // Values from a CRLF env file or a secret file keep their line ends:
    // they are trimmed (as the region is, and as the AWS SDK for Java does).
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDFROMENV\r\n") };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret-from-env\r") };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_SESSION_TOKEN", " token-from-env\n") };
    let exporter = HttpExporter::builder().build().unwrap();
    assert_eq!(exporter.region(), "eu-west-3");
    let shown = format!("{exporter:?}");
    assert!(shown.contains("Environment"), "{shown}");
    assert!(!shown.contains("secret-from-env") && !shown.contains("token-from-env"));

    // AWS_REGION wins over AWS_DEFAULT_REGION; the builder wins over both.
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_REGION", "ap-south-1") };
    assert_eq!(
        HttpExporter::builder().build().unwrap().region(),
        "ap-south-1"
    );
    let e = HttpExporter::builder()
        .with_region("us-east-2")
        .build()
        .unwrap();
    assert_eq!(e.region(), "us-east-2");

    // The environment's credentials sign the requests.
    let (url, rx) = fake_api();
    let exporter = HttpExporter::builder().with_endpoint(url).build().unwrap();
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(exporter)
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        layer,
    ));
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info_span!("request").in_scope(|| {});
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(xray.stats().documents_exported, 1);
    let head = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        head.contains("Credential=AKIDFROMENV/") && head.contains("/ap-south-1/xray/aws4_request"),
        "{head}"
    );
    assert!(
        head.contains("x-amz-security-token: token-from-env\r\n"),
        "{head:?}"
    );
    for v in VARS {
        // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
        unsafe { std::env::remove_var(v) };
    }
}
