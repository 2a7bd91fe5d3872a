//! tracing-xray's own output, over real UDP, into the local console
//! (`xray-console`): two services, an AWS call and streamed subsegments come
//! back from its JSON API as one trace and one service map.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::UdpExporter;
use tracing_xray::sampling::AlwaysSample;
use tracing_xray::{Detectors, XraySpanExt};
use xray_console::{Config, Console, Limits};

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

fn layer(name: &str, console: &Console) -> (tracing::Dispatch, tracing_xray::XrayHandle) {
    let layer = tracing_xray::builder()
        .with_service_name(name)
        .with_sampler(AlwaysSample)
        .with_detectors(Detectors::none())
        // Small, so that the backend's trace is streamed in parts.
        .with_streaming_threshold(3)
        .with_exporter(UdpExporter::to_address(console.udp_addr()))
        .build();
    let handle = layer.handle();
    (
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

#[test]
fn console_draws_tracing_xray_output() {
    let console = Console::start(Config {
        udp_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        limits: Limits::default(),
        ..Config::default()
    })
    .unwrap();
    let (frontend, front_handle) = layer("frontend", &console);
    let (backend, back_handle) = layer("backend", &console);

    let mut trace_id = String::new();
    tracing::dispatcher::with_default(&frontend, || {
        let request = info_span!(
            "checkout",
            http.request.method = "POST",
            url.full = "http://shop.local/checkout",
            http.response.status_code = 200_u64,
        );
        request.in_scope(|| {
            let call = info_span!(
                "call_backend",
                otel.kind = "client",
                xray.traced = true,
                http.request.method = "GET",
                url.full = "http://backend.local/orders/7",
                http.response.status_code = 500_u64,
            );
            let header = call.xray_header().unwrap();
            trace_id = header.root().unwrap().to_string();
            call.in_scope(|| {
                tracing::dispatcher::with_default(&backend, || {
                    let served = info_span!(
                        "orders",
                        http.request.method = "GET",
                        url.full = "http://backend.local/orders/7",
                        http.response.status_code = 500_u64,
                    );
                    served.set_xray_parent(&header);
                    served.in_scope(|| {
                        info_span!(
                            "DynamoDB.GetItem",
                            rpc.system = "aws-api",
                            rpc.service = "DynamoDB",
                            rpc.method = "GetItem",
                            aws.dynamodb.table_names = "orders",
                        )
                        .in_scope(|| {});
                        for step in 0..4 {
                            info_span!("step", step).in_scope(|| {});
                        }
                    });
                });
            });
        });
    });
    front_handle.flush(Duration::from_secs(5)).unwrap();
    back_handle.flush(Duration::from_secs(5)).unwrap();
    let sent = front_handle.stats().documents_exported + back_handle.stats().documents_exported;
    assert!(
        back_handle.stats().subsegments_streamed > 0,
        "the backend trace was split"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while console.stats().datagrams < sent {
        assert!(
            Instant::now() < deadline,
            "the console did not get {sent} datagrams"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = get_json(console.http_addr(), "/api/stats");
    assert_eq!(stats["intake"]["rejected"], 0, "{stats}");

    // One trace, every part merged.
    let export = get_json(console.http_addr(), &format!("/api/traces/{trace_id}"));
    let segments = export["Traces"][0]["Segments"]
        .as_array()
        .or_else(|| export["Segments"].as_array())
        .unwrap_or_else(|| panic!("no segments in {export}"));
    assert_eq!(segments.len() as u64, sent);
    let timeline = get_json(console.http_addr(), &format!("/api/timeline/{trace_id}"));
    assert_eq!(timeline["partial"], serde_json::json!([]), "{timeline}");
    let rows: usize = timeline["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rows"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows, 2 + 1 + 1 + 4, "every span is a row: {timeline}");

    // The map: client -> frontend -> backend -> the DynamoDB table.
    let graph = get_json(console.http_addr(), "/api/servicegraph");
    let services = graph["Services"].as_array().unwrap();
    let find = |name: &str, kind: &str| {
        services
            .iter()
            .find(|s| s["Name"] == name && s["Type"] == kind)
            .unwrap_or_else(|| panic!("no node ({name}, {kind}) in {graph:#}"))
    };
    let front = find("frontend", "service");
    let back = find("backend", "service");
    let table = find("orders", "AWS::DynamoDB::Table");
    let edge_to = |from: &Value, to: &Value| {
        from["Edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ReferenceId"] == to["ReferenceId"])
    };
    assert!(edge_to(front, back), "frontend -> backend: {graph:#}");
    assert!(edge_to(back, table), "backend -> orders: {graph:#}");
    // The backend answered 500: its node shows a fault.
    assert_eq!(
        back["SummaryStatistics"]["FaultStatistics"]["TotalCount"],
        1
    );
    console.shutdown();
}
