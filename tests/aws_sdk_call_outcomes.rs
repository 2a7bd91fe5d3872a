//! AWS SDK calls whose outcome the interceptor did not see whole (real SDK
//! clients against local fake endpoints on 127.0.0.1): a call dropped by a
//! timeout is a fault; a large `PutItem` still names its table; with the
//! SDK's internal spans kept, the retries are still counted; a call refused
//! before serialization is named after its service, and one that failed
//! before signing has its region; the response's length and a Lambda
//! function's failure are recorded. Each test failed on a773d3f, or on an
//! earlier fix of this file's; the comment above it tells the defect as it
//! was found.
#![cfg(feature = "aws-sdk")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;

/// One request as the fake endpoint saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

#[allow(dead_code)]
impl Seen {
    /// The values of header `name` (lowercase), in order.
    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }
}

/// What the endpoint answers: status, headers, body; or `None`: no answer
/// (the connection is held until the client closes it, 10 s at most).
type Answer = Option<(u16, Vec<(String, String)>, String)>;

/// A plain HTTP/1.1 endpoint, one thread per connection, each answer
/// closing its connection.
struct Endpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    fn start(answer: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let record = record.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let Some(req) = read_request(&mut stream) else {
                        return;
                    };
                    let n = {
                        let mut seen = record.lock().unwrap();
                        seen.push(req.clone());
                        seen.len()
                    };
                    match answer(n, &req) {
                        Some((0, _, _)) => {}
                        Some((status, headers, body)) => {
                            let mut out = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str("\r\n");
                            out.push_str(&body);
                            let _ = stream.write_all(out.as_bytes());
                        }
                        None => {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            let _ = stream.read(&mut [0u8; 1]);
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Endpoint { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(Seen {
                    head,
                    body: buf[end + 4..end + 4 + length].to_vec(),
                });
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn json_answer(status: u16, request_id: Option<&str>, body: &str) -> Answer {
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/x-amz-json-1.0".to_owned(),
    )];
    if let Some(id) = request_id {
        headers.push(("x-amzn-requestid".to_owned(), id.to_owned()));
    }
    Some((status, headers, body.to_owned()))
}

/// A DynamoDB client's configuration for `endpoint`: static credentials,
/// retries 10 ms apart.
fn base_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(10)),
        )
}

/// A DynamoDB client with the `XrayInterceptor`.
fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        base_config(endpoint)
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
            .build(),
    )
}

fn get_order(
    c: &aws_sdk_dynamodb::Client,
    table: &str,
) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
    c.get_item()
        .table_name(table)
        .key("id", AttributeValue::S("o-1".into()))
}

/// Runs `body` (no span around it) on a current-thread runtime under a
/// layer behind `filter`, sampling with `sampler`; returns every document
/// sent, schema-checked.
fn run<F: std::future::Future<Output = ()>>(
    filter: LevelFilter,
    sampler: impl tracing_xray::sampling::Sampler,
    body: impl FnOnce() -> F,
) -> (Vec<Value>, InMemoryExporter) {
    run_with(filter, sampler, |b| b, body)
}

fn run_with<F: std::future::Future<Output = ()>>(
    filter: LevelFilter,
    sampler: impl tracing_xray::sampling::Sampler,
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    body: impl FnOnce() -> F,
) -> (Vec<Value>, InMemoryExporter) {
    let exporter = InMemoryExporter::new();
    let layer = configure(tracing_xray::builder())
        .with_service_name("svc")
        .with_detectors(Detectors::none())
        .with_sampler(sampler)
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let _default = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .set_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(body());
    drop(rt);
    xray.flush(Duration::from_secs(10)).unwrap();
    let schema = common::schema();
    let docs = exporter.json_documents();
    for doc in &docs {
        common::assert_schema_valid(&schema, doc);
    }
    (docs, exporter)
}

fn always() -> tracing_xray::sampling::AlwaysSample {
    tracing_xray::sampling::AlwaysSample
}

/// The one trace sent when `body` runs inside a root span `handler`.
fn handler_trace<F: std::future::Future<Output = ()>>(
    filter: LevelFilter,
    body: impl FnOnce() -> F,
) -> Value {
    use tracing::Instrument;
    let (_, exporter) = run(filter, always(), || {
        body().instrument(tracing::info_span!("handler"))
    });
    let mut traces = exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    traces.remove(0)
}

/// A user bounds a DynamoDB call with `tokio::time::timeout` (the usual way
/// to give up on a future in Rust); the endpoint never answers, so the
/// timeout drops the SDK's future mid-attempt. The call got no response and
/// failed for the application: the `XrayInterceptor` rustdoc says "5xx or no
/// response → `fault`", and README's tower client says "A call a timeout
/// drops is a fault whose exception says it was cancelled" (Go, Java and
/// Python record a cancelled/interrupted AWS call as an exception: fault).
/// Instead the `aws` subsegment is sent as a plain success: no `fault`, no
/// exception, no `retries`, indistinguishable from a call that worked
/// (`read_after_execution`, src/aws_sdk.rs, never runs for a dropped future,
/// and nothing records the outcome when the span stored in the config bag is
/// dropped). With the SDK's DEBUG spans and with the interceptor alone.
#[test]
fn an_sdk_call_dropped_by_a_timeout_is_a_fault() {
    for level in [LevelFilter::INFO, LevelFilter::DEBUG] {
        let ep = Endpoint::start(|_, _| None);
        let url = ep.url();
        let doc = handler_trace(level, || async move {
            let c = dynamodb(&url);
            let r =
                tokio::time::timeout(Duration::from_millis(300), get_order(&c, "orders").send())
                    .await;
            assert!(r.is_err(), "the call is given up");
        });
        assert_eq!(ep.seen().len(), 1, "one attempt was sent");
        let calls = doc["subsegments"].as_array().expect("the call");
        assert_eq!(calls.len(), 1, "{doc:#}");
        let call = &calls[0];
        assert_eq!(call["aws"]["operation"], "GetItem", "{level}: {call:#}");
        assert_eq!(
            call.get("fault"),
            Some(&Value::Bool(true)),
            "{level}: a call given up without a response is sent as a success: {call:#}"
        );
    }
}

/// A user writes a 300 KB item (DynamoDB takes items up to 400 KB) with
/// `PutItem`, through a client with the `XrayInterceptor`. README: the
/// interceptor adds "the resources the call names (DynamoDB's tables, ...,
/// as the official SDKs record them)", and the official SDKs take
/// `TableName` from the request's parameters whatever the item's size. The
/// subsegment has no `aws.table_name`: `record_resources` (src/aws_sdk.rs,
/// `MAX_RESOURCE_BODY` = 256 KiB) skips any DynamoDB request body above
/// 256 KiB entirely, although `TableName` is the body's first key (the
/// bound that `a_large_message_still_names_its_topic_and_queue` lifted for
/// SQS and SNS by scanning a prefix). The same holds for a `BatchWriteItem`
/// (up to 16 MB): its tables are lost.
#[test]
fn a_large_put_item_still_names_its_table() {
    let ep = Endpoint::start(|n, _| json_answer(200, Some(&format!("REQ-{n}")), "{}"));
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = dynamodb(&url);
        c.put_item()
            .table_name("small")
            .item("id", AttributeValue::S("x".repeat(1_000)))
            .send()
            .await
            .unwrap();
        c.put_item()
            .table_name("orders")
            .item("id", AttributeValue::S("o-1".into()))
            .item("blob", AttributeValue::S("x".repeat(300_000)))
            .send()
            .await
            .unwrap();
    });
    let calls = doc["subsegments"].as_array().expect("the calls");
    assert_eq!(calls.len(), 2, "{doc:#}");
    // Control: a small item's call names its table.
    assert_eq!(calls[0]["aws"]["table_name"], "small", "{:#}", calls[0]);
    assert_eq!(
        calls[1]["aws"].get("table_name"),
        Some(&Value::from("orders")),
        "the 300 KB PutItem: {:#}",
        calls[1]["aws"]
    );
}

/// A user enables the SDK's DEBUG spans without the interceptor, and
/// keeps the SDK's internal spans (`with_aws_sdk_internal_spans(true)`) to
/// see where a slow call spends its time. README, "AWS SDK span" row:
/// "`namespace: aws`, named after the service, `aws.operation`; the SDK's
/// internal spans folded in, ... (`with_aws_sdk_internal_spans(true)` keeps
/// them all, as subsegments), `aws.retries`". A `GetItem` answered 500 then
/// 200 has `aws.retries = 1` with the internals folded (the control), but no
/// `retries` at all once they are kept: `Assembler::entity`
/// (src/assemble.rs, the `try_attempt` count over `merged`) counts attempts
/// only among the spans merged into the call, and with internal spans kept
/// `merged_spans` returns only the interceptor's.
#[test]
fn kept_sdk_internal_spans_still_count_retries() {
    let mut retries = Vec::new();
    for keep in [false, true] {
        let ep = Endpoint::start(|n, _| match n {
            1 => json_answer(
                500,
                Some("REQ-1"),
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal error"}"#,
            ),
            _ => json_answer(200, Some("REQ-2"), "{}"),
        });
        let url = ep.url();
        let (_, exporter) = run_with(
            LevelFilter::DEBUG,
            always(),
            |b| b.with_aws_sdk_internal_spans(keep),
            || async move {
                use tracing::Instrument;
                async move {
                    get_order(&plain_dynamodb(&url), "orders")
                        .send()
                        .await
                        .unwrap();
                }
                .instrument(tracing::info_span!("handler"))
                .await
            },
        );
        assert_eq!(ep.seen().len(), 2, "two attempts");
        let traces = exporter.traces();
        let call = &traces[0]["subsegments"][0];
        assert_eq!(call["aws"]["operation"], "GetItem", "{call:#}");
        retries.push((keep, call["aws"].get("retries").cloned()));
    }
    assert_eq!(
        retries,
        [(false, Some(Value::from(1))), (true, Some(Value::from(1)))],
        "(with_aws_sdk_internal_spans, aws.retries)"
    );
}

/// A DynamoDB client without the interceptor (the SDK's own spans only).
fn plain_dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(base_config(endpoint).build())
}

/// A user's table name comes from configuration and is empty (an unset
/// environment variable), or a required parameter is forgotten: the SDK
/// refuses the call before sending it (its own `GetItemEndpointParamsInterceptor`
/// fails in `read_before_execution`: "table_name was missing"). The call is
/// an `aws` subsegment with its fault, but named `aws_sdk_call` (the
/// interceptor's internal span name) and without `aws.operation`, where
/// README says an AWS call is "named after the service (`DynamoDB`, `S3`,
/// ...), `aws.operation`" (so the service map shows a node "aws_sdk_call").
/// `XrayInterceptor` (src/aws_sdk.rs), registered on the client, records
/// `rpc.service`/`rpc.method` in `read_before_execution` only when the
/// operation's `Metadata` is already in the bag (it is not yet for a
/// client-level interceptor) and otherwise in `read_before_serialization`,
/// which a call refused before serialization never reaches;
/// `read_after_execution`, which always runs and has the `Metadata`, does
/// not record them.
#[test]
fn a_call_refused_before_serialization_is_named_after_its_service() {
    let ep = Endpoint::start(|n, _| json_answer(200, Some(&format!("REQ-{n}")), "{}"));
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = dynamodb(&url);
        let table = String::new(); // `std::env::var("TABLE").unwrap_or_default()`, unset
        let r = get_order(&c, &table).send().await;
        assert!(r.is_err());
        let r = c
            .get_item()
            .key("id", AttributeValue::S("o-1".into()))
            .send()
            .await;
        assert!(r.is_err());
    });
    assert_eq!(ep.seen().len(), 0, "nothing was sent");
    let calls = doc["subsegments"].as_array().expect("the calls");
    assert_eq!(calls.len(), 2, "{doc:#}");
    for call in calls {
        assert_eq!(call["fault"], true, "{call:#}");
        assert_eq!(
            (&call["name"], &call["namespace"], &call["aws"]["operation"]),
            (
                &Value::from("DynamoDB"),
                &Value::from("aws"),
                &Value::from("GetItem")
            ),
            "{call:#}"
        );
    }
}

/// A credentials provider that has none to give (an expired SSO session,
/// a role that cannot be assumed).
#[derive(Debug)]
struct ExpiredCredentials;

impl aws_sdk_dynamodb::config::ProvideCredentials for ExpiredCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "the SSO session has expired",
            ),
        ))
    }
}

/// A user's DynamoDB client (region `us-east-1`, the `XrayInterceptor`)
/// cannot get credentials (an expired SSO session): the call fails before it
/// is signed. The `XrayInterceptor` rustdoc: it records "`aws.region` (from
/// the request's SigV4 credential scope, else the client's configured
/// region)", and the official SDKs record the client's region on every call
/// (Python's `aws_meta_processor`: `region = instance.meta.region_name`,
/// whatever the outcome). The subsegment has its fault, operation and table,
/// but no `region`: `modify_before_transmit` (src/aws_sdk.rs) is the only
/// hook that records it, and a call that fails in identity resolution,
/// endpoint resolution or signing never reaches it (nor does a call refused
/// before serialization).
#[test]
fn a_call_that_failed_before_signing_still_has_its_region() {
    let ep = Endpoint::start(|n, _| json_answer(200, Some(&format!("REQ-{n}")), "{}"));
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = aws_sdk_dynamodb::Client::from_conf(
            dynamodb(&url)
                .config()
                .to_builder()
                .credentials_provider(ExpiredCredentials)
                .build(),
        );
        let r = get_order(&c, "orders").send().await;
        assert!(r.is_err());
    });
    assert_eq!(ep.seen().len(), 0, "nothing was sent");
    let call = &doc["subsegments"][0];
    assert_eq!(call["aws"]["operation"], "GetItem", "{call:#}");
    assert_eq!(call["fault"], true, "{call:#}");
    assert_eq!(
        call["aws"].get("region"),
        Some(&Value::from("us-east-1")),
        "{:#}",
        call["aws"]
    );
}

/// A user writes an order and its audit record atomically with
/// `TransactWriteItems` (a `Put` on `orders`, then a `Put` of a 300 KB
/// record on `audit`). A small transaction records no table (the control:
/// `record_table_names` reads only a top-level `TableName` or
/// `RequestItems`, and the official SDKs' whitelists have no
/// `TransactWriteItems`); this one is sent with `aws.table_name = "orders"`,
/// as if it wrote to `orders` alone: above 256 KiB, `record_resources`
/// (src/aws_sdk.rs:327-331) takes the first `"TableName"` key found anywhere
/// in the body's first 64 KiB, here the first `Put`'s, nested in
/// `TransactItems`. The same call is described differently by its size,
/// and the table it names is one of two. (Expected: the same `aws` tables
/// as the small transaction.)
#[test]
fn a_large_transaction_is_not_named_after_one_of_its_tables() {
    use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
    let ep = Endpoint::start(|n, _| json_answer(200, Some(&format!("REQ-{n}")), "{}"));
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = dynamodb(&url);
        let item = |table: &str, blob: usize| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .item("id", AttributeValue::S("o-1".into()))
                        .item("blob", AttributeValue::S("x".repeat(blob)))
                        .build()
                        .unwrap(),
                )
                .build()
        };
        for blob in [100, 300_000] {
            c.transact_write_items()
                .transact_items(item("orders", 10))
                .transact_items(item("audit", blob))
                .send()
                .await
                .unwrap();
        }
    });
    let calls = doc["subsegments"].as_array().expect("the calls");
    assert_eq!(calls.len(), 2, "{doc:#}");
    assert_eq!(calls[0]["aws"]["operation"], "TransactWriteItems");
    let tables = |call: &Value| {
        (
            call["aws"].get("table_name").cloned(),
            call["aws"].get("table_names").cloned(),
        )
    };
    assert_eq!(
        tables(&calls[1]),
        tables(&calls[0]),
        "the 300 KB transaction names other tables than the small one: {:#} vs {:#}",
        calls[1]["aws"],
        calls[0]["aws"]
    );
}

/// A user gives a DynamoDB call 2 s (`tokio::time::timeout`); the first
/// attempt gets a 500 (`InternalServerError`, request id `REQ-1`) with
/// `x-amz-retry-after: 4000`, and the timeout strikes while the SDK waits
/// to retry. The `XrayInterceptor` docs: it records "`aws.request_id` ... of
/// the last attempt's response" and "`http.response.status` of the last
/// attempt (none when it got no response)"; the last attempt here got a
/// 500 with its request id (`read_after_attempt` stored them in the bag).
/// The subsegment has the cancellation fault (88bcd28) but neither the
/// status nor the request id (nor the 500's exception): `Call::drop`
/// (src/aws_sdk.rs:122-131) records only the cancellation, and what
/// `read_after_attempt` kept in `LastAttempt` is only recorded by
/// `read_after_execution`, which a dropped call never reaches.
#[test]
fn a_call_dropped_while_waiting_to_retry_keeps_its_last_response() {
    let ep = Endpoint::start(|n, _| match n {
        1 => {
            let mut a = json_answer(
                500,
                Some("REQ-1"),
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal error"}"#,
            );
            if let Some((_, h, _)) = a.as_mut() {
                h.push(("x-amz-retry-after".to_owned(), "4000".to_owned()));
            }
            a
        }
        _ => json_answer(200, Some("REQ-2"), "{}"),
    });
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = aws_sdk_dynamodb::Client::from_conf(
            dynamodb(&url)
                .config()
                .to_builder()
                .retry_config(
                    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                        .with_initial_backoff(Duration::from_secs(4))
                        .with_max_backoff(Duration::from_secs(10)),
                )
                .build(),
        );
        let r = tokio::time::timeout(Duration::from_secs(2), get_order(&c, "orders").send()).await;
        assert!(r.is_err(), "the call is given up");
    });
    assert_eq!(ep.seen().len(), 1, "given up before the retry");
    let call = &doc["subsegments"][0];
    assert_eq!(call["fault"], true, "{call:#}");
    assert_eq!(
        (
            call["http"]["response"].get("status"),
            call["aws"].get("request_id")
        ),
        (Some(&Value::from(500)), Some(&Value::from("REQ-1"))),
        "{call:#}"
    );
}

/// Control for the test above (expected to pass): a call dropped by a
/// timeout mid-attempt is a fault whose exception says it was cancelled.
#[test]
fn control_a_dropped_call_has_a_cancelled_exception() {
    let ep = Endpoint::start(|_, _| None);
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = dynamodb(&url);
        let r =
            tokio::time::timeout(Duration::from_millis(300), get_order(&c, "orders").send()).await;
        assert!(r.is_err());
    });
    let call = &doc["subsegments"][0];
    assert_eq!(call["fault"], true, "{call:#}");
    let messages = common::exception_messages(call);
    assert!(messages[0].contains("cancelled"), "{call:#}");
}

/// A user's DynamoDB client gets the `XrayInterceptor` twice: its config
/// is rebuilt from another client's (`client.config().to_builder()`, which
/// keeps that client's interceptors) and the helper that makes every client
/// adds `.interceptor(XrayInterceptor::new())` again. The call succeeds
/// (200). README: a call is a fault when it failed, and "a call whose future
/// is dropped before its response ... is a fault whose exception says it
/// was cancelled". Nothing was dropped, yet the trace holds a fault
/// "cancelled: the call was dropped before its response arrived": the second
/// interceptor's `read_before_execution` `store_put`s its `CallSpan`
/// (`StoreReplace`) over the first's, whose `Call` is dropped unfinished
/// (src/aws_sdk.rs:122-131 and 413-418). Before 88bcd28 that first span
/// closed silently.
#[test]
fn an_interceptor_added_twice_does_not_make_a_successful_call_a_fault() {
    let ep = Endpoint::start(|n, _| json_answer(200, Some(&format!("REQ-{n}")), "{}"));
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = aws_sdk_dynamodb::Client::from_conf(
            dynamodb(&url)
                .config()
                .to_builder()
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build(),
        );
        get_order(&c, "orders").send().await.unwrap();
    });
    assert_eq!(ep.seen().len(), 1);
    let faults: Vec<&Value> = common::walk(&doc)
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| n.get("fault").is_some() || n.get("cause").is_some())
        .collect();
    assert!(faults.is_empty(), "a successful call has a fault: {doc:#}");
}

/// The first attempt answers 500 (`REQ-1`); the second is never answered.
/// The call is dropped by the caller once the server has seen the second
/// attempt, i.e. while that attempt is in flight.
fn dropped_during_second_attempt() -> Value {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    let ep = Endpoint::start(move |n, _| match n {
        1 => service_error(500, "REQ-1", "InternalServerError", None),
        _ => {
            let _ = tx.lock().unwrap().send(());
            None
        }
    });
    let url = ep.url();
    let rx = Arc::new(Mutex::new(rx));
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let c = dynamodb(&url);
        let send = get_order(&c, "orders").send();
        let second = tokio::task::spawn_blocking(move || {
            rx.lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(8))
                .is_ok()
        });
        tokio::select! {
            r = send => panic!("the call ended: {r:?}"),
            seen = second => assert!(seen.unwrap(), "the second attempt was sent"),
        }
    });
    assert_eq!(ep.seen().len(), 2, "two attempts were sent");
    doc
}

fn service_error(status: u16, id: &str, code: &str, retry_after_ms: Option<u32>) -> Answer {
    let mut a = json_answer(
        status,
        Some(id),
        &format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"m"}}"#),
    );
    if let (Some(ms), Some((_, h, _))) = (retry_after_ms, a.as_mut()) {
        h.push(("x-amz-retry-after".to_owned(), ms.to_string()));
    }
    a
}

/// A user's `GetItem` gets a 500 (`REQ-1`) on its first attempt; the SDK
/// retries, and the second attempt hangs, so the user's
/// `tokio::time::timeout` (or a `select!`) drops the call while that second
/// attempt is in flight. The `XrayInterceptor` rustdoc: "`aws.request_id`
/// ... of the last attempt's response", "`http.response.status` of the last
/// attempt (none when it got no response) and `aws.retries` (the attempts
/// made, less one)"; README: a call dropped "before its response ... is a
/// fault whose exception says it was cancelled" (only one dropped "while it
/// waits to retry keeps its last response's status and request id").
/// Instead the subsegment says `status: 500`, `request_id: "REQ-1"`,
/// `retries: 0` (the first attempt's, as if only one was made), and the
/// cancellation exception is `remote: true` because of that 500: `Call.last`
/// (src/aws_sdk.rs:120-122), set by `read_after_attempt`, is cleared only by
/// an attempt that ended without a response, never when the next attempt
/// starts, and `Call::drop` (src/aws_sdk.rs:133-153) records it. Before
/// 9e3eefd this call had none of them.
#[test]
fn a_call_dropped_during_its_second_attempt_has_not_the_first_attempts_response() {
    let doc = dropped_during_second_attempt();
    let call = &doc["subsegments"][0];
    assert_eq!(call["fault"], true, "{call:#}");
    let exceptions = common::exceptions(call);
    assert!(
        exceptions[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cancelled")),
        "{call:#}"
    );
    assert_eq!(
        (
            call["http"]["response"].get("status"),
            call["aws"].get("request_id"),
            call["aws"].get("retries").filter(|r| r.as_u64() != Some(1)),
            exceptions[0].get("remote"),
        ),
        (None, None, None, None),
        "(status, request_id, retries other than 1, remote) of a call dropped while its \
         second attempt was in flight: {call:#}"
    );
}

/// A user's `GetItem` is throttled (400 `ProvisionedThroughputExceededException`,
/// `REQ-1`, `x-amz-retry-after: 4000`) and the call gives up while the SDK
/// waits to retry (4 s). With the SDK's own `operation_timeout` (1 s) the
/// subsegment is a `throttle` (the control: `read_after_execution` records
/// `LastAttempt.throttled`). With the usual `tokio::time::timeout` (1 s),
/// README: "one dropped while it waits to retry keeps its last response's
/// status and request id", and the `XrayInterceptor` rustdoc: "the last
/// attempt's error flags: 4xx → `error`, throttling → `throttle`". The
/// subsegment keeps the 400 and `error`, but not `throttle`: `Answered`
/// (src/aws_sdk.rs:127-131) has no throttle and `Call::drop`
/// (src/aws_sdk.rs:133-153) never records `xray.throttle`, so a call
/// throttled until its timeout shows no throttling (a 429 would, from its
/// status alone).
#[test]
fn a_throttled_call_dropped_while_waiting_to_retry_is_a_throttle() {
    let mut throttles = Vec::new();
    for sdk_timeout in [true, false] {
        let ep = Endpoint::start(|n, _| match n {
            1 => service_error(
                400,
                "REQ-1",
                "ProvisionedThroughputExceededException",
                Some(4000),
            ),
            _ => json_answer(200, Some("REQ-2"), "{}"),
        });
        let url = ep.url();
        let doc = handler_trace(LevelFilter::INFO, || async move {
            let mut b = dynamodb(&url).config().to_builder().retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_initial_backoff(Duration::from_secs(4))
                    .with_max_backoff(Duration::from_secs(10)),
            );
            if sdk_timeout {
                b = b.timeout_config(
                    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(Duration::from_secs(1))
                        .build(),
                );
            }
            let c = aws_sdk_dynamodb::Client::from_conf(b.build());
            // Without the SDK's timeout, the caller's strikes in the wait
            // (1 s into it); with it, the SDK's first (2 s before the
            // caller's, 3 s before the retry).
            let given = Duration::from_secs(if sdk_timeout { 3 } else { 1 });
            let r = tokio::time::timeout(given, get_order(&c, "orders").send()).await;
            assert!(matches!(r, Err(_) | Ok(Err(_))), "the call is given up");
        });
        assert_eq!(ep.seen().len(), 1, "given up before the retry");
        let call = &doc["subsegments"][0];
        assert_eq!(call["http"]["response"]["status"], 400, "{call:#}");
        assert_eq!(call["aws"]["request_id"], "REQ-1", "{call:#}");
        throttles.push((sdk_timeout, call.get("throttle").cloned()));
    }
    assert_eq!(
        throttles,
        [
            (true, Some(Value::Bool(true))),
            (false, Some(Value::Bool(true)))
        ],
        "(given up by the SDK's operation timeout, throttle)"
    );
}

/// The SDK client's largest backoff (its `max_backoff`).
const BACKOFF_MAX: Duration = Duration::from_millis(77);

/// A sleep for the SDK whose backoffs ([`BACKOFF_MAX`] at most, jittered)
/// are none the first time and 10 s the second.
#[derive(Debug, Default)]
struct SecondBackoffIsLong(std::sync::atomic::AtomicUsize);

impl aws_sdk_dynamodb::config::AsyncSleep for SecondBackoffIsLong {
    fn sleep(&self, duration: Duration) -> aws_sdk_dynamodb::config::Sleep {
        // The runtime's other sleeps (timeouts, 100 ms and more) as asked.
        let duration = if duration <= BACKOFF_MAX {
            match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Duration::ZERO,
                _ => Duration::from_secs(10),
            }
        } else {
            duration
        };
        aws_sdk_dynamodb::config::Sleep::new(tokio::time::sleep(duration))
    }
}

/// A user's `GetItem` finds the endpoint closing its connections without
/// an answer (a load balancer resetting them): two attempts, no response,
/// and the call gives up while the SDK waits to send the third. With the
/// SDK's own `operation_timeout` the subsegment has `retries: 1` (the
/// control: `read_after_execution` records `LastAttempt.number`, stored
/// for an attempt without a response too). With `tokio::time::timeout`
/// (README: "one dropped while it waits to retry keeps its last response's
/// status and request id"; the commit: "... request id and retries"; the
/// `XrayInterceptor` rustdoc: "`aws.retries` (the attempts made, less
/// one)") it has no `retries` at all: `read_after_attempt` clears
/// `Call.last` when an attempt got no response (src/aws_sdk.rs:544-546),
/// and `Call::drop` takes the attempt count from `last` only
/// (src/aws_sdk.rs:137-141).
#[test]
fn a_call_dropped_while_waiting_to_retry_after_no_response_counts_its_retries() {
    let mut retries = Vec::new();
    for sdk_timeout in [true, false] {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let tx = Mutex::new(tx);
        // Closed without an answer.
        let ep = Endpoint::start(move |n, _| {
            if n == 2 {
                let _ = tx.lock().unwrap().send(());
            }
            Some((0, Vec::new(), String::new()))
        });
        let url = ep.url();
        let rx = Arc::new(Mutex::new(rx));
        let doc = handler_trace(LevelFilter::INFO, || async move {
            // Backoffs (jittered) made deterministic: none
            // after the first attempt, 10 s after the second.
            let mut b = dynamodb(&url)
                .config()
                .to_builder()
                .retry_config(
                    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(50))
                        .with_max_backoff(BACKOFF_MAX),
                )
                .sleep_impl(aws_sdk_dynamodb::config::SharedAsyncSleep::new(
                    SecondBackoffIsLong::default(),
                ));
            if sdk_timeout {
                // Strikes well into the 10 s wait for the third attempt.
                b = b.timeout_config(
                    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(Duration::from_secs(4))
                        .build(),
                );
            }
            let c = aws_sdk_dynamodb::Client::from_conf(b.build());
            let send = get_order(&c, "orders").send();
            if sdk_timeout {
                assert!(send.await.is_err(), "the operation timeout");
                return;
            }
            let second = tokio::task::spawn_blocking(move || {
                let seen = rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(8))
                    .is_ok();
                // Well into the (10 s) wait for the third attempt.
                std::thread::sleep(Duration::from_millis(1500));
                seen
            });
            tokio::select! {
                r = send => panic!("the call ended: {r:?}"),
                seen = second => assert!(seen.unwrap(), "the second attempt was sent"),
            }
        });
        assert_eq!(ep.seen().len(), 2, "given up before the third attempt");
        let call = &doc["subsegments"][0];
        assert_eq!(call["fault"], true, "{call:#}");
        retries.push((sdk_timeout, call["aws"].get("retries").cloned()));
    }
    assert_eq!(
        retries,
        [(true, Some(Value::from(1))), (false, Some(Value::from(1)))],
        "(given up by the SDK's operation timeout, aws.retries)"
    );
}

/// A scripted answer: `status`, `headers`, `body`.
fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    Some((
        status,
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body.to_owned(),
    ))
}

const JSON10: (&str, &str) = ("content-type", "application/x-amz-json-1.0");

/// A client of SDK `$sdk` for the endpoint, as `base_config` makes one.
macro_rules! client {
    ($sdk:ident, $endpoint:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
                .endpoint_url($endpoint)
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .retry_config($sdk::config::retry::RetryConfig::disabled())
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build(),
        )
    };
}

fn aws_nodes(doc: &Value) -> Vec<&Value> {
    common::walk(doc)
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| n["namespace"] == "aws")
        .collect()
}

/// A DynamoDB `GetItem` through a client with the `XrayInterceptor`,
/// answered 200 with a 27-byte body (`content-length: 27`).
///
/// Expected: the call's subsegment has `http.response.content_length: 27`
/// beside `http.response.status`. SPEC §1.4 lists `response.content_length`
/// in the `http` block; the official SDKs record it for every AWS call
/// (aws-xray-sdk-java v2 `TracingInterceptor` and aws-xray-sdk-go v2 take it
/// from the response's `Content-Length`; Go v1 `xray/aws.go` from
/// `r.HTTPResponse.ContentLength`); README's conventions table maps
/// `http.response.content_length` to it, and the brief of the interceptor
/// ("adds the request id, region, HTTP status, ...") is the HTTP response's
/// summary.
///
/// Before the fix: `http.response` held only `status`, with the SDK's spans
/// (DEBUG) and with the interceptor alone (INFO): the interceptor read the
/// response's status and request id, never its length. (A gap against the
/// official SDKs rather than a broken promise: README does not list the
/// length among what the interceptor adds.)
#[test]
fn an_aws_call_records_its_responses_content_length() {
    let ep = Endpoint::start(|_, _| {
        answer(
            200,
            &[JSON10, ("x-amzn-requestid", "REQ-1")],
            r#"{"Item":{"id":{"S":"o-1"}}}"#,
        )
    });
    let mut lengths = Vec::new();
    for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
        let url = ep.url();
        let doc = handler_trace(level, || async move {
            get_order(&dynamodb(&url), "o-1").send().await.unwrap();
        });
        let call = &doc["subsegments"][0];
        assert_eq!(call["name"], "DynamoDB", "{level}: {call:#}");
        assert_eq!(call["http"]["response"]["status"], 200, "{level}: {call:#}");
        lengths.push((
            level.to_string(),
            call["http"]["response"].get("content_length").cloned(),
        ));
    }
    assert_eq!(
        lengths,
        [
            ("debug".to_owned(), Some(Value::from(27))),
            ("info".to_owned(), Some(Value::from(27)))
        ],
        "(level, http.response.content_length)"
    );
}

/// A Lambda `Invoke` whose function threw comes back as a 200 with
/// `X-Amz-Function-Error: Unhandled` (the SDK call itself succeeds): the
/// official SDKs record it (`FunctionError` in their AWS whitelist) as
/// `aws.function_error`; the subsegment was a clean 200, the only trace of
/// the failure lost. Now recorded, with the whitelist's other response
/// parameters: `StatusCode` (the HTTP status), SQS's `MessageId` and
/// DynamoDB's `ConsumedCapacity`, read from the response body (before, not
/// recorded).
#[test]
fn a_lambda_functions_failure_is_recorded() {
    let ep = Endpoint::start(|_, s| {
        let head = s.head.to_ascii_lowercase();
        if head.starts_with("post /2015-03-31/functions") {
            answer(
                200,
                &[
                    ("content-type", "application/json"),
                    ("x-amzn-requestid", "REQ-L"),
                    ("x-amz-function-error", "Unhandled"),
                    ("x-amz-executed-version", "$LATEST"),
                ],
                r#"{"errorMessage":"boom","errorType":"Error"}"#,
            )
        } else if head.contains("x-amz-target: amazonsqs") {
            answer(
                200,
                &[JSON10, ("x-amzn-requestid", "REQ-S")],
                r#"{"MD5OfMessageBody":"5d41402abc4b2a76b9719d911017c592","MessageId":"5fea7756-0ea4-451a-a703-a558b933e274"}"#,
            )
        } else {
            answer(
                200,
                &[JSON10, ("x-amzn-requestid", "REQ-D")],
                r#"{"ConsumedCapacity":{"TableName":"orders","CapacityUnits":0.5},"Item":{"id":{"S":"o-1"}}}"#,
            )
        }
    });
    let url = ep.url();
    let doc = handler_trace(LevelFilter::INFO, || async move {
        let lambda = client!(aws_sdk_lambda, &url);
        let out = lambda
            .invoke()
            .function_name("resize")
            .send()
            .await
            .unwrap();
        assert_eq!(out.function_error(), Some("Unhandled"));
        let sqs = client!(aws_sdk_sqs, &url);
        let out = sqs
            .send_message()
            .queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/orders")
            .message_body("hello")
            .send()
            .await
            .unwrap();
        assert!(out.message_id().is_some());
        let out = get_order(&dynamodb(&url), "o-1")
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        assert!(out.consumed_capacity().is_some());
    });
    let calls = aws_nodes(&doc);
    assert_eq!(calls.len(), 3, "{doc:#}");
    let got: Vec<(&str, &str, bool)> = [
        (calls[0], "function_error"),
        (calls[0], "status_code"),
        (calls[1], "message_id"),
        (calls[2], "consumed_capacity"),
    ]
    .into_iter()
    .map(|(c, key)| {
        (
            c["name"].as_str().unwrap_or_default(),
            key,
            c["aws"].get(key).is_some(),
        )
    })
    .collect();
    assert_eq!(
        got,
        [
            ("Lambda", "function_error", true),
            ("Lambda", "status_code", true),
            ("SQS", "message_id", true),
            ("DynamoDB", "consumed_capacity", true),
        ],
        "(service, aws key, recorded): {doc:#}"
    );
    assert_eq!(calls[0]["aws"]["function_error"], "Unhandled", "{doc:#}");
}

/// Found by the review of the parameters' reading. A `Scan` answered with a
/// 200 the SDK cannot read (`Items` is no list): the call fails. Before the
/// fix its subsegment still said `count: 7` and `scanned_count: 9`, read
/// from a response the SDK refused (the official SDKs read parameters from
/// a call's result only).
#[test]
fn a_call_that_failed_on_a_2xx_body_records_none_of_its_response_parameters() {
    let ep = Endpoint::start(|_, _| {
        answer(
            200,
            &[JSON10, ("x-amzn-requestid", "REQ-1")],
            r#"{"Count":7,"ScannedCount":9,"Items":"not a list"}"#,
        )
    });
    for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
        let url = ep.url();
        let doc = handler_trace(level, || async move {
            let r = dynamodb(&url)
                .scan()
                .table_name("orders")
                .limit(5)
                .send()
                .await;
            assert!(r.is_err(), "the SDK refuses the body: {r:?}");
        });
        let call = &doc["subsegments"][0];
        assert!(call["fault"] == true || call["error"] == true, "{call:#}");
        assert_eq!(call["aws"]["limit"], 5, "the request's stay: {call:#}");
        assert!(
            call["aws"].get("count").is_none() && call["aws"].get("scanned_count").is_none(),
            "{level}: {:#}",
            call["aws"]
        );
    }
}

/// Found by the review of the parameters' reading. Before the fix, a call
/// a timeout dropped lost its request's parameters (recorded only as the
/// call ended), though it kept its table.
#[test]
fn a_cancelled_call_keeps_its_request_parameters() {
    for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
        let ep = Endpoint::start(|_, _| None);
        let url = ep.url();
        let doc = handler_trace(level, || async move {
            let c = dynamodb(&url);
            let call = get_order(&c, "orders").consistent_read(true).send();
            let r = tokio::time::timeout(Duration::from_millis(300), call).await;
            assert!(r.is_err(), "the call is given up");
        });
        let call = &doc["subsegments"][0];
        assert_eq!(call["fault"], true, "{call:#}");
        assert_eq!(call["aws"]["table_name"], "orders", "{call:#}");
        assert_eq!(
            call["aws"]["consistent_read"], true,
            "{level}: {:#}",
            call["aws"]
        );
    }
}
