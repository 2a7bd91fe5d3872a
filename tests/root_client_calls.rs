//! A client call with no traced parent (an AWS SDK, HTTP client or database
//! call made outside any request: a background job, a command line tool)
//! goes as a subsegment of a segment of this service spanning it, so that
//! the service map draws this service calling the other one, and the
//! segment's `http` block never describes a request the service did not
//! serve. Real datagrams to a real UDP socket on 127.0.0.1.

mod common;

use serde_json::{Value, json};
use tracing::info_span;
use tracing_xray::XraySpanExt;

/// The documents `body` sends through a layer for service `job`.
fn send(body: impl FnOnce()) -> Vec<Value> {
    common::sent_over_udp("job", body)
}

/// The one segment `docs` hold, and its one subsegment: the call.
fn segment_and_call(docs: &[Value]) -> (&Value, &Value) {
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let segment = &docs[0];
    let subsegments = segment["subsegments"].as_array().expect("the call");
    assert_eq!(subsegments.len(), 1, "{segment:#}");
    (segment, &subsegments[0])
}

/// What every wrapping segment is: this service, the call's times, its
/// own id, and none of the call's blocks.
fn assert_wraps(segment: &Value, call: &Value) {
    assert_eq!(segment["name"], "job");
    assert_ne!(segment["id"], call["id"]);
    assert_eq!(segment["start_time"], call["start_time"]);
    assert_eq!(segment["end_time"], call["end_time"]);
    assert!(segment.get("http").is_none(), "{segment:#}");
    assert!(segment.get("sql").is_none(), "{segment:#}");
    assert!(segment.get("namespace").is_none(), "{segment:#}");
    assert!(segment["aws"].get("operation").is_none(), "{segment:#}");
}

#[test]
fn an_aws_call_outside_any_request_is_a_subsegment_of_this_service() {
    let docs = send(|| {
        info_span!(
            "DynamoDB.GetItem",
            "rpc.system" = "aws-api",
            "rpc.service" = "DynamoDB",
            "rpc.method" = "GetItem",
            "aws.region" = "eu-west-1",
        )
        .in_scope(|| {});
    });
    let (segment, call) = segment_and_call(&docs);
    assert_wraps(segment, call);
    assert_eq!(call["name"], "DynamoDB");
    assert_eq!(call["namespace"], "aws");
    assert_eq!(call["aws"]["operation"], "GetItem");
    assert_eq!(call["aws"]["region"], "eu-west-1");
}

#[test]
fn an_http_client_call_outside_any_request_is_a_remote_subsegment() {
    let mut header = None;
    let docs = send(|| {
        let span = info_span!(
            "GET",
            "otel.kind" = "client",
            "http.request.method" = "GET",
            "url.full" = "https://api.example.com/rates",
            "server.address" = "api.example.com",
            "http.response.status_code" = 503_u64,
        );
        // The header sent downstream names the call as its parent.
        header = span.xray_header();
        span.in_scope(|| {});
    });
    let (segment, call) = segment_and_call(&docs);
    assert_wraps(segment, call);
    assert_eq!(call["namespace"], "remote");
    assert_eq!(call["name"], "api.example.com");
    assert_eq!(
        call["http"],
        json!({"request": {"method": "GET", "url": "https://api.example.com/rates"},
               "response": {"status": 503}})
    );
    assert_eq!(call["fault"], true);
    let header = header.expect("a header");
    assert_eq!(header.parent().unwrap().to_string(), call["id"]);
    assert_eq!(header.root().unwrap().to_string(), segment["trace_id"]);
}

#[test]
fn a_query_outside_any_request_is_a_subsegment_and_its_children_stay_below_it() {
    let docs = send(|| {
        info_span!("query", "db.system" = "postgresql", "db.name" = "shop").in_scope(|| {
            info_span!("decode_rows").in_scope(|| {});
        });
    });
    let (segment, call) = segment_and_call(&docs);
    assert_wraps(segment, call);
    assert_eq!(call["namespace"], "remote");
    assert_eq!(call["sql"]["database_type"], "postgresql");
    assert_eq!(call["subsegments"][0]["name"], "decode_rows");
}

#[test]
fn a_continued_trace_keeps_its_upstream_parent_on_the_segment() {
    let docs = send(|| {
        info_span!(
            "GET",
            "otel.kind" = "client",
            "xray.trace_header" =
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .in_scope(|| {});
    });
    let (segment, call) = segment_and_call(&docs);
    assert_wraps(segment, call);
    assert_eq!(segment["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(segment["parent_id"], "53995c3f42cd8ad8");
    assert!(call.get("parent_id").is_none(), "{call:#}");
}

#[test]
fn a_root_that_is_not_a_call_is_still_the_segment_itself() {
    let docs = send(|| {
        info_span!("nightly_report", "otel.kind" = "internal").in_scope(|| {});
    });
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["name"], "job");
    assert!(docs[0].get("subsegments").is_none(), "{:#}", docs[0]);
    assert_eq!(
        docs[0]["metadata"]["tracing"]["span_name"],
        "nightly_report"
    );
}
