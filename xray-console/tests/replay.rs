//! Replays the captured Python and Node SDK datagrams over real UDP and checks the map,
//! the trace list, the filters, the timelines, export/import and the sampling calls
//! through the HTTP API.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use xray_console::{Console, Limits};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture_datagrams() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "datagram"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6);
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn replayed() -> Console {
    let console = start(Limits::default());
    let udp = sender();
    let datagrams = fixture_datagrams();
    for d in &datagrams {
        udp.send_to(d, console.udp_addr()).unwrap();
    }
    wait_datagrams(&console, datagrams.len() as u64);
    console
}

/// (name, type) -> service object of a GetServiceGraph response.
fn services(graph: &Value) -> BTreeMap<(String, String), Value> {
    graph["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s["Name"].as_str().unwrap().to_owned(),
                    s["Type"].as_str().unwrap().to_owned(),
                ),
                s.clone(),
            )
        })
        .collect()
}

/// (ok, error-other, throttle, fault, total) of a SummaryStatistics object.
fn split(s: &Value) -> (u64, u64, u64, u64, u64) {
    let n = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap();
    (
        n("/OkCount"),
        n("/ErrorStatistics/OtherCount"),
        n("/ErrorStatistics/ThrottleCount"),
        n("/FaultStatistics/TotalCount"),
        n("/TotalCount"),
    )
}

fn edge<'a>(graph: &'a Value, from: &Value, to: &Value) -> &'a Value {
    let to_ref = &to["ReferenceId"];
    let from_ref = from["ReferenceId"].as_u64().unwrap() as usize;
    graph["Services"][from_ref]["Edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| &e["ReferenceId"] == to_ref)
        .unwrap_or_else(|| panic!("no edge {} -> {}", from["Name"], to["Name"]))
}

#[test]
fn captured_sdk_datagrams_build_the_service_map() {
    let console = replayed();
    let addr = console.http_addr();
    let stats = get_json(addr, "/api/stats");
    assert_eq!(stats["intake"]["accepted"], 6);
    assert_eq!(stats["intake"]["rejected"], 0);
    assert_eq!(stats["traces"], 4);

    let graph = get_json(addr, "/api/servicegraph");
    let s = services(&graph);
    let keys: Vec<(&str, &str)> = s.keys().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("client", "client"),
            ("db-query", "Database::SQL"),
            ("orders-api", "service"),
            ("payment-call", "remote"),
        ]
    );
    let client = &s[&("client".into(), "client".into())];
    let api = &s[&("orders-api".into(), "service".into())];
    let db = &s[&("db-query".into(), "Database::SQL".into())];
    let pay = &s[&("payment-call".into(), "remote".into())];

    // Four orders-api segments: Python ok, Python 502 fault, Python streamed ok, Node ok.
    assert_eq!(split(&api["SummaryStatistics"]), (3, 0, 0, 1, 4));
    assert_eq!(api["Root"], true);
    assert_eq!(api["State"], "active");
    // db-query: Python and Node, both fine; payment-call: Python and Node, both faults.
    assert_eq!(split(&db["SummaryStatistics"]), (2, 0, 0, 0, 2));
    assert_eq!(split(&pay["SummaryStatistics"]), (0, 0, 0, 2, 2));
    // Local subsegments (the streamed steps) are not nodes.
    assert!(!s.keys().any(|(n, _)| n.starts_with("step-")));

    // Edges carry the caller's timings.
    assert_eq!(client["Edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        split(&edge(&graph, client, api)["SummaryStatistics"]),
        (3, 0, 0, 1, 4)
    );
    assert_eq!(api["Edges"].as_array().unwrap().len(), 2);
    let e = edge(&graph, api, db);
    assert_eq!(split(&e["SummaryStatistics"]), (2, 0, 0, 0, 2));
    // Python db-query 12.9 ms + Node 11 ms.
    let t = e["SummaryStatistics"]["TotalResponseTime"]
        .as_f64()
        .unwrap();
    assert!((t - (0.2223816 - 0.2093449 + 0.011)).abs() < 1e-4, "{t}");
    assert_eq!(
        split(&edge(&graph, api, pay)["SummaryStatistics"]),
        (0, 0, 0, 2, 2)
    );
    assert!(pay["Edges"].as_array().unwrap().is_empty());

    // The page draws the same nodes as SVG.
    let (status, page) = http(addr, "GET", "/", b"");
    assert_eq!(status, 200);
    for n in ["orders-api", "db-query", "payment-call", "Client", "<svg"] {
        assert!(page.contains(n), "{n}");
    }
    assert!(
        !page.contains("<script"),
        "the map page needs no JavaScript"
    );
    console.shutdown();
}

#[test]
fn trace_list_filters_and_timelines() {
    let console = replayed();
    let addr = console.http_addr();
    let count = |f: &str| {
        get_json(addr, &format!("/api/traces?filter={}", enc(f)))["TraceSummaries"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(""), 4);
    assert_eq!(count("service(\"payment-call\")"), 2);
    assert_eq!(count("service(\"db-query\") AND fault"), 1);
    assert_eq!(count("fault"), 2);
    assert_eq!(count("!fault"), 2);
    assert_eq!(count("error OR throttle"), 0);
    assert_eq!(count("http.status = 502"), 1);
    assert_eq!(count("http.status = 200 OR http.status = 502"), 3);
    assert_eq!(
        count("annotation.customer = \"acme\" AND annotation.vip = true"),
        2
    );
    assert_eq!(count("annotation.step >= 1"), 1);
    assert_eq!(count("responsetime > 0.005"), 2);
    assert_eq!(count("duration < 0.005 AND NOT partial"), 2);
    assert_eq!(count("http.method = \"POST\""), 1);
    let (status, body) = http(addr, "GET", "/api/traces?filter=service(", b"");
    assert_eq!(status, 400, "{body}");
    let (status, page) = http(addr, "GET", "/traces?filter=service(", b"");
    assert_eq!(status, 200);
    assert!(page.contains("Filter error"));

    // The list shows method, URL, status and annotations.
    let list = get_json(
        addr,
        &format!("/api/traces?filter={}", enc("http.status = 502")),
    );
    let t = &list["TraceSummaries"][0];
    assert_eq!(t["id"], "1-6b06f324-390f5b4da3e0e89bb5ec6c93");
    assert_eq!(t["method"], "POST");
    assert_eq!(t["url"], "http://localhost:8080/orders");
    assert_eq!(t["status"], "fault");

    // Streamed subsegments are merged into their segment.
    let tl = get_json(addr, "/api/timeline/1-6b06f324-33e31871be93b6661bbc4ab7");
    assert_eq!(tl["groups"].as_array().unwrap().len(), 1);
    let rows = tl["groups"][0]["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-api", "step-0", "step-1"]);
    assert!(tl["partial"].as_array().unwrap().is_empty());

    // Node trace: the bottleneck is the db query, with its share of the trace.
    let tl = get_json(addr, "/api/timeline/1-6b06f359-a6abc0ca3e7b8738e9001967");
    assert_eq!(tl["bottleneck"]["name"], "db-query");
    let share = tl["bottleneck"]["share"].as_f64().unwrap();
    assert!((share - 11.0 / 13.0).abs() < 0.01, "{share}");
    let rows = tl["groups"][0]["rows"].as_array().unwrap();
    let pay = rows.iter().find(|r| r["name"] == "payment-call").unwrap();
    assert_eq!(pay["health"], "fault");
    assert_eq!(
        pay["detail"]["cause"]["exceptions"][0]["message"],
        "payment backend unreachable"
    );
    let (status, page) = http(
        addr,
        "GET",
        "/trace/1-6b06f359-a6abc0ca3e7b8738e9001967",
        b"",
    );
    assert_eq!(status, 200);
    assert!(page.contains("Bottleneck: <b>db-query</b>"));
    assert!(
        page.contains("Timeout._onTimeout"),
        "stack frames are shown"
    );
    console.shutdown();
}

#[test]
fn export_import_round_trip_and_late_parts() {
    let console = replayed();
    let id = "1-6b06f324-33e31871be93b6661bbc4ab7";
    let (status, export) = http(
        console.http_addr(),
        "GET",
        &format!("/api/traces/{id}?download=1"),
        b"",
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(v["Traces"][0]["Segments"].as_array().unwrap().len(), 3);

    let other = start(Limits::default());
    let (status, body) = http(other.http_addr(), "POST", "/api/import", export.as_bytes());
    assert_eq!(status, 200, "{body}");
    let a = get_json(console.http_addr(), &format!("/api/timeline/{id}"));
    let b = get_json(other.http_addr(), &format!("/api/timeline/{id}"));
    assert_eq!(a, b);

    // Raw datagrams can be imported too; garbage is refused without harm.
    let go = std::fs::read(Path::new(FIXTURES).join("go-sdk-dynamodb-segment.json")).unwrap();
    let (status, _) = http(other.http_addr(), "POST", "/api/import", &go);
    assert_eq!(status, 200);
    let (status, _) = http(other.http_addr(), "POST", "/api/import", b"\x00\x01nope");
    assert_eq!(status, 400);
    let s = services(&get_json(other.http_addr(), "/api/servicegraph"));
    assert!(s.contains_key(&("xray_sample_table".into(), "AWS::DynamoDB::Table".into())));
    assert!(s.contains_key(&("does_not_exist".into(), "AWS::DynamoDB::Table".into())));
    let missing = &s[&("does_not_exist".into(), "AWS::DynamoDB::Table".into())];
    // The Go SDK marks that failed call (HTTP 400) `fault: true`; the flag wins.
    assert_eq!(split(&missing["SummaryStatistics"]), (0, 0, 0, 1, 1));

    // A subsegment whose parent never arrives, then an in-progress segment replaced by
    // the complete one.
    let udp = sender();
    let orphan = br#"{"format":"json","version":1}
{"trace_id":"1-6b06f324-000000000000000000000001","id":"aaaaaaaaaaaaaaa1","type":"subsegment","parent_id":"ffffffffffffffff","name":"late","start_time":10,"end_time":11}"#;
    let open = br#"{"format":"json","version":1}
{"trace_id":"1-6b06f324-000000000000000000000002","id":"bbbbbbbbbbbbbbb1","name":"svc","start_time":10,"in_progress":true}"#;
    let done = br#"{"format":"json","version":1}
{"trace_id":"1-6b06f324-000000000000000000000002","id":"bbbbbbbbbbbbbbb1","name":"svc","start_time":10,"end_time":10.5}"#;
    for d in [&orphan[..], &open[..]] {
        udp.send_to(d, other.udp_addr()).unwrap();
    }
    wait_datagrams(&other, 2);
    let tl = get_json(
        other.http_addr(),
        "/api/timeline/1-6b06f324-000000000000000000000001",
    );
    assert_eq!(tl["groups"][0]["orphan"], true);
    assert_eq!(tl["partial"].as_array().unwrap().len(), 2);
    let tl = get_json(
        other.http_addr(),
        "/api/timeline/1-6b06f324-000000000000000000000002",
    );
    assert!(tl["partial"][0].as_str().unwrap().contains("in progress"));
    udp.send_to(done, other.udp_addr()).unwrap();
    wait_datagrams(&other, 3);
    let tl = get_json(
        other.http_addr(),
        "/api/timeline/1-6b06f324-000000000000000000000002",
    );
    assert!(tl["partial"].as_array().unwrap().is_empty());
    assert_eq!(
        get_json(other.http_addr(), "/api/stats")["store"]["replaced"],
        1
    );
    other.shutdown();
    console.shutdown();
}

#[test]
fn answers_the_sdk_sampling_calls() {
    let console = start(Limits::default());
    let (status, body) = http(
        console.http_addr(),
        "POST",
        "/GetSamplingRules",
        br#"{"NextToken":null}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let rule = &v["SamplingRuleRecords"][0]["SamplingRule"];
    assert_eq!(rule["FixedRate"], 1.0);
    assert_eq!(rule["RuleName"], "Default");
    assert_eq!(rule["ServiceName"], "*");
    let (status, body) = http(
        console.http_addr(),
        "POST",
        "/SamplingTargets",
        br#"{"SamplingStatisticsDocuments":[{"RuleName":"Default","ClientID":"abc","Timestamp":1,"RequestCount":3,"SampledCount":3,"BorrowCount":0}]}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["SamplingTargetDocuments"][0]["FixedRate"], 1.0);
    assert_eq!(v["SamplingTargetDocuments"][0]["RuleName"], "Default");
    console.shutdown();
}
