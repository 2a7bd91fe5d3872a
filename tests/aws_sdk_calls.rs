//! Real AWS SDK for Rust clients (DynamoDB, SQS, SNS; plain HTTP) against
//! real AWS-compatible endpoints on 127.0.0.1: moto's server, started by the
//! test with `$TRACING_XRAY_MOTO_PYTHON -m moto.server` (and, for Lambda's
//! `Invoke`, which moto runs in Docker, a local server answering as Lambda
//! does). Each call is one `aws` subsegment named after its service with its
//! operation; with the interceptor (feature `aws-sdk`) also the request id,
//! region, status, retries and error flags, the resources it names, and the
//! outgoing trace header.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use serde_json::Value;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;

/// The python with `moto[server]==5.2.5`: `TRACING_XRAY_MOTO_PYTHON`, else
/// the venv `scripts/moto-server.sh setup` creates. Neither: the test fails.
fn moto_python() -> PathBuf {
    if let Some(py) = std::env::var_os("TRACING_XRAY_MOTO_PYTHON").filter(|v| !v.is_empty()) {
        return PathBuf::from(py);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    panic!(
        "\n\nThis test runs the AWS SDK against moto 5.2.5's DynamoDB on 127.0.0.1. Set it up \
         once with\n\n    export TRACING_XRAY_MOTO_PYTHON=\"$(scripts/moto-server.sh setup)\"\n\n\
         (or point TRACING_XRAY_MOTO_PYTHON at any python with `moto[server]==5.2.5`).\n"
    );
}

/// A moto server on a free 127.0.0.1 port, killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let python = moto_python();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut moto = Moto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&moto.addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "moto not listening after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(endpoint: &str, interceptor: bool) -> aws_sdk_dynamodb::Client {
    let builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    #[cfg(feature = "aws-sdk")]
    let builder = if interceptor {
        builder.interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
    } else {
        builder
    };
    #[cfg(not(feature = "aws-sdk"))]
    let _ = interceptor;
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// `GetItem` of order `o-1` in table `orders`, ready to send.
fn get_order(
    c: &aws_sdk_dynamodb::Client,
) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
    c.get_item()
        .table_name("orders")
        .key("id", AttributeValue::S("o-1".into()))
}

/// Runs `calls` inside a root span `handler` with the layer (behind
/// `filter`: a level, or targets), returns the one trace, schema-checked.
fn trace<F: std::future::Future<Output = ()>>(
    filter: impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static,
    calls: impl FnOnce() -> F,
) -> Value {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(Detectors::none())
        .with_sampler(tracing_xray::sampling::AlwaysSample)
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
    rt.block_on(async {
        use tracing::Instrument;
        calls().instrument(tracing::info_span!("handler")).await;
    });
    drop(rt);
    xray.flush(Duration::from_secs(10)).unwrap();
    let schema = common::schema();
    for doc in exporter.json_documents() {
        common::assert_schema_valid(&schema, &doc);
    }
    let mut traces = exporter.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    traces.remove(0)
}

async fn four_calls(c: aws_sdk_dynamodb::Client) {
    c.create_table()
        .table_name("orders")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    c.put_item()
        .table_name("orders")
        .item("id", AttributeValue::S("o-1".into()))
        .send()
        .await
        .unwrap();
    let got = get_order(&c).send().await.unwrap();
    assert!(got.item.is_some());
    let missing = c
        .get_item()
        .table_name("no-such-table")
        .key("id", AttributeValue::S("x".into()))
        .send()
        .await;
    assert!(missing.is_err());
}

/// The `aws` block of the `n`th call of operation `op` in `doc`.
#[cfg(feature = "aws-sdk")]
fn aws_block(doc: &Value, op: &str, n: usize) -> Value {
    calls(doc)
        .iter()
        .filter(|c| c["aws"]["operation"] == op)
        .nth(n)
        .map(|c| c["aws"].clone())
        .unwrap_or_else(|| panic!("{op} #{n} in {doc:#}"))
}

fn calls(doc: &Value) -> Vec<&Value> {
    let subs = doc["subsegments"].as_array().expect("subsegments");
    subs.iter().collect()
}

/// The SDK's own DEBUG spans alone: one `aws` subsegment per call, internals
/// folded.
#[test]
fn sdk_spans_become_aws_subsegments() {
    let moto = Moto::start();
    let doc = trace(LevelFilter::DEBUG, || {
        four_calls(client(&moto.url(), false))
    });
    let calls = calls(&doc);
    let ops: Vec<_> = calls
        .iter()
        .map(|c| c["aws"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["CreateTable", "PutItem", "GetItem", "GetItem"]);
    for c in &calls {
        assert_eq!(c["name"], "DynamoDB");
        assert_eq!(c["namespace"], "aws");
        assert!(c.get("subsegments").is_none(), "internals folded: {c:#}");
    }
    // The SDK's spans say nothing of the failure's HTTP status.
    assert!(calls[3].get("http").is_none());
}

/// A client of the AWS SDK crate `$sdk` for `$endpoint` (plain HTTP, test
/// credentials, region `$region`), with the `XrayInterceptor`.
#[cfg(feature = "aws-sdk")]
macro_rules! intercepted_client {
    ($sdk:ident, $region:literal, $endpoint:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new($region))
                .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
                .endpoint_url($endpoint)
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build(),
        )
    };
}

#[cfg(feature = "aws-sdk")]
mod with_interceptor {
    use super::*;

    /// With the interceptor: request id, region, status, and a 4xx service
    /// error as `error` with a remote exception.
    #[test]
    fn interceptor_adds_request_id_region_status_and_errors() {
        let moto = Moto::start();
        let doc = trace(LevelFilter::DEBUG, || four_calls(client(&moto.url(), true)));
        if std::env::var_os("TRACING_XRAY_PRINT").is_some() {
            eprintln!("{doc:#}");
        }
        let calls = calls(&doc);
        assert_eq!(calls.len(), 4, "{doc:#}");
        for (c, (op, status)) in calls.iter().zip([
            ("CreateTable", 200),
            ("PutItem", 200),
            ("GetItem", 200),
            ("GetItem", 400),
        ]) {
            assert_eq!(c["name"], "DynamoDB", "{c:#}");
            assert_eq!(c["namespace"], "aws");
            assert_eq!(c["aws"]["operation"], op);
            assert_eq!(c["aws"]["region"], "us-east-1");
            assert!(
                !c["aws"]["request_id"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{c:#}"
            );
            assert_eq!(c["http"]["response"]["status"], status);
            assert!(c.get("subsegments").is_none());
        }
        let failed = calls[3];
        assert_eq!(failed["error"], true, "{failed:#}");
        assert!(failed.get("fault").is_none());
        let ex = &failed["cause"]["exceptions"];
        assert_eq!(ex[0]["remote"], true, "{failed:#}");
        let text = ex.to_string();
        assert!(text.contains("ResourceNotFound"), "{text}");
        for c in &calls[..3] {
            assert!(
                c.get("error").is_none() && c.get("fault").is_none(),
                "{c:#}"
            );
        }
    }

    /// The resources a call names, as the official SDKs record them: SQS's
    /// queue URL, SNS's topic ARN (from the calls' own request bodies: the
    /// JSON protocol for SQS, the query protocol for SNS).
    #[test]
    fn sqs_and_sns_calls_name_their_queue_and_topic() {
        let moto = Moto::start();
        let endpoint = moto.url();
        let doc = trace(LevelFilter::INFO, || async move {
            let sqs = intercepted_client!(aws_sdk_sqs, "us-east-1", &endpoint);
            let queue = sqs
                .create_queue()
                .queue_name("orders")
                .send()
                .await
                .unwrap();
            let url = queue.queue_url.unwrap();
            sqs.send_message()
                .queue_url(&url)
                .message_body("{\"QueueUrl\":\"not this one\"}")
                .send()
                .await
                .unwrap();
            let sns = intercepted_client!(aws_sdk_sns, "us-east-1", &endpoint);
            let topic = sns.create_topic().name("shipped").send().await.unwrap();
            sns.publish()
                .topic_arn(topic.topic_arn.unwrap())
                .message("order o-1 shipped")
                .send()
                .await
                .unwrap();
        });
        let calls = calls(&doc);
        let ops: Vec<_> = calls
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["aws"]["operation"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ops,
            [
                ("SQS", "CreateQueue"),
                ("SQS", "SendMessage"),
                ("SNS", "CreateTopic"),
                ("SNS", "Publish"),
            ],
            "{doc:#}"
        );
        // CreateQueue names the queue, it has no URL yet.
        assert!(calls[0]["aws"].get("queue_url").is_none(), "{:#}", calls[0]);
        let url = calls[1]["aws"]["queue_url"]
            .as_str()
            .expect("the queue's URL");
        assert!(
            url.starts_with("http://") && url.ends_with("/orders"),
            "{url}"
        );
        assert!(calls[2]["aws"].get("topic_arn").is_none(), "{:#}", calls[2]);
        assert_eq!(
            calls[3]["aws"]["topic_arn"], "arn:aws:sns:us-east-1:123456789012:shipped",
            "{:#}",
            calls[3]
        );
    }

    fn order_event(n: usize) -> String {
        let item = "{\"sku\":\"A-1\",\"qty\":1},";
        let mut s = String::from("{\"items\":[");
        while s.len() + item.len() < n {
            s.push_str(item);
        }
        s.pop();
        s.push_str("]}");
        s
    }

    /// A user publishes order events (JSON of 150 KB; SNS takes 256 KiB) to
    /// an SNS topic and sends them to an SQS queue (250 KB), with the
    /// `XrayInterceptor`. SNS's query protocol percent-encodes every `{`,
    /// `"`, `:` and `,` (3 bytes each), SQS's JSON protocol escapes each
    /// quote, so the request bodies pass the interceptor's 256 KiB read cap
    /// (`MAX_RESOURCE_BODY`), although the topic ARN and the queue URL sit
    /// in the first bytes of the body. They see those calls without
    /// `aws.topic_arn` / `aws.queue_url` (the small messages' calls have
    /// them); they should see the resource on every call, as the official
    /// SDKs record it from the request's parameters whatever the message's
    /// size.
    #[test]
    fn a_large_message_still_names_its_topic_and_queue() {
        let moto = Moto::start();
        let endpoint = moto.url();
        let doc = trace(LevelFilter::INFO, || async move {
            let sns = intercepted_client!(aws_sdk_sns, "us-east-1", &endpoint);
            let topic = sns.create_topic().name("orders").send().await.unwrap();
            sns.publish()
                .topic_arn(topic.topic_arn.unwrap())
                .message(order_event(150_000))
                .send()
                .await
                .unwrap();
            let sqs = intercepted_client!(aws_sdk_sqs, "us-east-1", &endpoint);
            let queue = sqs
                .create_queue()
                .queue_name("orders")
                .send()
                .await
                .unwrap();
            sqs.send_message()
                .queue_url(queue.queue_url.unwrap())
                .message_body(order_event(250_000))
                .send()
                .await
                .unwrap();
        });
        let calls: Vec<&Value> = doc["subsegments"].as_array().unwrap().iter().collect();
        let publish = calls
            .iter()
            .find(|c| c["aws"]["operation"] == "Publish")
            .unwrap_or_else(|| panic!("{doc:#}"));
        let send = calls
            .iter()
            .find(|c| c["aws"]["operation"] == "SendMessage")
            .unwrap_or_else(|| panic!("{doc:#}"));
        assert_eq!(
            (
                publish["aws"]["topic_arn"].as_str(),
                send["aws"]["queue_url"]
                    .as_str()
                    .map(|u| u.ends_with("/orders")),
            ),
            (
                Some("arn:aws:sns:us-east-1:123456789012:orders"),
                Some(true)
            ),
            "Publish: {:#}\nSendMessage: {:#}",
            publish["aws"],
            send["aws"]
        );
    }

    /// Lambda's `Invoke` names the function (its ARN or name, with its
    /// qualifier, decoded from the request's path) and the invocation type,
    /// as the official SDKs record them. Against a local server answering
    /// as Lambda does (moto runs functions in Docker).
    #[test]
    fn a_lambda_invoke_names_its_function_and_invocation_type() {
        use aws_sdk_lambda::types::InvocationType;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = paths.clone();
        let lambda = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(request.uri().path().to_owned());
                (
                    [("x-amzn-requestid", "3c1a2f80-0000-4000-8000-000000000001")],
                    "{}",
                )
            }
        });
        let server = std::thread::spawn(move || {
            rt.block_on(async { axum::serve(listener, lambda).await.unwrap() })
        });
        drop(server);
        let endpoint = format!("http://{addr}");
        let doc = trace(LevelFilter::INFO, || async move {
            let client = intercepted_client!(aws_sdk_lambda, "eu-west-1", &endpoint);
            client
                .invoke()
                .function_name("arn:aws:lambda:eu-west-1:123456789012:function:thumbnailer:live")
                .invocation_type(InvocationType::Event)
                .send()
                .await
                .unwrap();
            client
                .invoke()
                .function_name("resize")
                .qualifier("v2")
                .log_type(aws_sdk_lambda::types::LogType::Tail)
                .send()
                .await
                .unwrap();
        });
        let paths = paths.lock().unwrap().clone();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].contains("%3A"), "the ARN goes encoded: {paths:?}");
        let calls = calls(&doc);
        assert_eq!(calls.len(), 2, "{doc:#}");
        for c in &calls {
            assert_eq!(c["name"], "Lambda", "{c:#}");
            assert_eq!(c["aws"]["operation"], "Invoke", "{c:#}");
        }
        assert_eq!(
            calls[0]["aws"]["function_name"],
            "arn:aws:lambda:eu-west-1:123456789012:function:thumbnailer:live",
            "{:#}",
            calls[0]
        );
        assert_eq!(calls[0]["aws"]["invocation_type"], "Event");
        assert_eq!(calls[1]["aws"]["function_name"], "resize", "{:#}", calls[1]);
        // Not given, not sent (Lambda's default, `RequestResponse`): none.
        assert!(
            calls[1]["aws"].get("invocation_type").is_none(),
            "{:#}",
            calls[1]
        );
        // The parameters the official SDKs record besides: the log type
        // and the qualifier asked for, the status the call got.
        assert_eq!(calls[1]["aws"]["qualifier"], "v2", "{:#}", calls[1]);
        assert_eq!(calls[1]["aws"]["log_type"], "Tail", "{:#}", calls[1]);
        for c in &calls {
            assert_eq!(c["aws"]["status_code"], 200, "{c:#}");
        }
        assert!(calls[0]["aws"].get("qualifier").is_none(), "{:#}", calls[0]);
    }

    /// With only INFO enabled (the SDK's DEBUG spans filtered out), the
    /// interceptor's span is the subsegment.
    #[test]
    fn interceptor_alone_at_info_level() {
        let moto = Moto::start();
        let doc = trace(LevelFilter::INFO, || four_calls(client(&moto.url(), true)));
        let calls = calls(&doc);
        let ops: Vec<_> = calls
            .iter()
            .map(|c| c["aws"]["operation"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["CreateTable", "PutItem", "GetItem", "GetItem"]);
        for c in &calls {
            assert_eq!(c["name"], "DynamoDB");
            assert_eq!(c["namespace"], "aws");
            assert_eq!(c["aws"]["region"], "us-east-1");
        }
        assert_eq!(calls[3]["http"]["response"]["status"], 400);
    }

    /// Against a local endpoint that fails once with 500 and records the
    /// headers it gets: the retry is counted, the trace header names the
    /// call's subsegment as parent.
    #[test]
    fn trace_header_and_retries() {
        use std::sync::{Arc, Mutex};

        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;

        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap| {
                let record = record.clone();
                async move {
                    let mut seen = record.lock().unwrap();
                    seen.push(
                        headers
                            .get("x-amzn-trace-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned(),
                    );
                    let n = seen.len();
                    let status = if n == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    (
                        status,
                        [
                            ("x-amzn-requestid", format!("REQ-{n}")),
                            ("content-type", "application/x-amz-json-1.0".to_owned()),
                        ],
                        "{}",
                    )
                        .into_response()
                }
            }),
        );
        let doc = trace(LevelFilter::DEBUG, || async move {
            let server = serve(listener, app);
            let c = client(&format!("http://{addr}"), true);
            get_order(&c).send().await.unwrap();
            server.abort();
        });
        let call = &doc["subsegments"][0];
        assert_eq!(call["name"], "DynamoDB");
        assert_eq!(call["aws"]["operation"], "GetItem");
        assert_eq!(call["aws"]["retries"], 1, "{call:#}");
        assert_eq!(call["aws"]["request_id"], "REQ-2");
        assert_eq!(call["http"]["response"]["status"], 200);
        assert!(call.get("fault").is_none(), "the call succeeded: {call:#}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let expected = format!(
            "Root={};Parent={};Sampled=1",
            doc["trace_id"].as_str().unwrap(),
            call["id"].as_str().unwrap()
        );
        assert_eq!(seen[0], expected);
        assert_eq!(seen[1], expected);
    }

    /// In Lambda the SDK's recursion detection copies `_X_AMZN_TRACE_ID`
    /// (Parent = the function's segment) onto every request before signing.
    /// The same trace's header is replaced by the call's own (Parent = the
    /// call's subsegment), its extra keys (`Lineage`) kept; another trace's
    /// header is left alone. (`mutate_request` stands in for the recursion
    /// detection interceptor, which reads the process environment.)
    #[test]
    fn a_header_of_the_same_trace_is_replaced_by_the_calls() {
        use tracing_xray::XraySpanExt;

        const OTHER: &str =
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let (listener, app, seen) = header_recording_endpoint();
        let addr = listener.local_addr().unwrap();
        let doc = trace(LevelFilter::DEBUG, || async move {
            let server = serve(listener, app);
            let root = tracing::Span::current()
                .xray_header()
                .unwrap()
                .root()
                .unwrap();
            let lambda =
                format!("Root={root};Parent=1111111111111111;Sampled=1;Lineage=a87bd80c:1");
            let c = client(&format!("http://{addr}"), true);
            for present in [lambda, OTHER.to_owned()] {
                get_order(&c)
                    .customize()
                    .mutate_request(move |r| {
                        r.headers_mut().insert("x-amzn-trace-id", present.clone());
                    })
                    .send()
                    .await
                    .unwrap();
            }
            server.abort();
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            format!(
                "Root={};Parent={};Sampled=1;Lineage=a87bd80c:1",
                doc["trace_id"].as_str().unwrap(),
                doc["subsegments"][0]["id"].as_str().unwrap()
            )
        );
        assert_eq!(seen[1], OTHER);
    }

    /// A request not signed with SigV4 has no credential scope to take the
    /// region from: the client's is recorded. Here a client without
    /// credentials (as for Cognito's or STS's unauthenticated calls), and a
    /// call signed with SigV4a (S3 Multi-Region Access Points, EventBridge
    /// global endpoints), whose scope `AKID/date/service/aws4_request` has
    /// the service where SigV4's has the region (its regions are in
    /// `X-Amz-Region-Set`); the header is the SigV4a signer's, set by hand.
    #[test]
    fn an_unsigned_or_sigv4a_call_records_the_clients_region() {
        const SIGV4A: &str = "AWS4-ECDSA-P256-SHA256 \
            Credential=AKIDEXAMPLE/20240101/dynamodb/aws4_request, \
            SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045022100c2f7e4e8a1";
        let (listener, app, _) = header_recording_endpoint();
        let addr = listener.local_addr().unwrap();
        let doc = trace(LevelFilter::DEBUG, || async move {
            let server = serve(listener, app);
            let config = aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-3"))
                .allow_no_auth()
                .endpoint_url(format!("http://{addr}"))
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build();
            let client = aws_sdk_dynamodb::Client::from_conf(config);
            client.list_tables().send().await.unwrap();
            client
                .list_tables()
                .customize()
                .mutate_request(|r| {
                    r.headers_mut().insert("authorization", SIGV4A);
                    r.headers_mut().insert("x-amz-region-set", "*");
                })
                .send()
                .await
                .unwrap();
            server.abort();
        });
        let calls = calls(&doc);
        assert_eq!(calls.len(), 2, "{doc:#}");
        for call in calls {
            assert_eq!(call["aws"]["operation"], "ListTables");
            assert_eq!(call["aws"]["region"], "eu-west-3", "{doc:#}");
        }
    }

    /// Serves `app` on `listener` from the current tokio runtime, until the
    /// handle is aborted.
    fn serve(
        listener: std::net::TcpListener,
        app: axum::Router,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await })
    }

    /// A local endpoint that answers every request `{}` and records each
    /// request's `X-Amzn-Trace-Id` (empty when there is none).
    #[allow(clippy::type_complexity)]
    fn header_recording_endpoint() -> (
        std::net::TcpListener,
        axum::Router,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;

        let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let record = seen.clone();
        let app =
            axum::Router::new().route(
                "/",
                axum::routing::post(move |headers: HeaderMap| {
                    let header = headers
                        .get("x-amzn-trace-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    record.lock().unwrap().push(header);
                    async move {
                        ([("content-type", "application/x-amz-json-1.0")], "{}").into_response()
                    }
                }),
            );
        (listener, app, seen)
    }

    /// A local endpoint that answers every request with `status` and a
    /// DynamoDB (`awsJson1_0`) error body, without `x-amzn-ErrorType`.
    fn failing_endpoint(status: u16, body: &'static str) -> (std::net::TcpListener, axum::Router) {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || async move {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [
                        ("x-amzn-requestid", "REQ"),
                        ("content-type", "application/x-amz-json-1.0"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
        (listener, app)
    }

    /// DynamoDB names its throttling error in the body's `__type`
    /// (`com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException`),
    /// not in an `x-amzn-ErrorType` header: still a throttle.
    #[test]
    fn throttling_named_in_the_body_is_a_throttle() {
        let (listener, app) = failing_endpoint(
            400,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate exceeded for table"}"#,
        );
        let addr = listener.local_addr().unwrap();
        let doc = trace(LevelFilter::DEBUG, || async move {
            let server = serve(listener, app);
            let c = aws_sdk_dynamodb::Client::from_conf(
                client(&format!("http://{addr}"), true)
                    .config()
                    .to_builder()
                    .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
                    .build(),
            );
            let r = get_order(&c).send().await;
            assert!(r.is_err());
            server.abort();
        });
        let call = &doc["subsegments"][0];
        assert_eq!(call["http"]["response"]["status"], 400, "{call:#}");
        assert_eq!(call["throttle"], true, "{call:#}");
        assert_eq!(call["error"], true, "{call:#}");
        assert!(call.get("fault").is_none(), "{call:#}");
    }

    /// What a [`ScriptedEndpoint`] does with one request.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        /// An answer: status, headers, body.
        Answer(u16, &'static [(&'static str, &'static str)], &'static str),
        /// No answer: the request is read, then the connection closed.
        Close,
        /// No answer: the request is read, then nothing until the client
        /// gives up and closes the connection (5 s at most).
        Hang,
    }

    /// DynamoDB's throttling answer (429, a throttling code in the body, as
    /// the service sends it), with request id `REQ-1`.
    const THROTTLED: Reply = Reply::Answer(
        429,
        &[
            ("x-amzn-requestid", "REQ-1"),
            ("content-type", "application/x-amz-json-1.0"),
        ],
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
    );

    /// A plain HTTP/1.1 endpoint on 127.0.0.1, on a thread of its own, that
    /// plays a script: the n-th request gets the n-th reply, every later
    /// one the last. Each reply closes its connection, so each attempt of
    /// the SDK is a connection of its own. (axum cannot leave a request
    /// unanswered.) Stopped on drop.
    struct ScriptedEndpoint {
        addr: std::net::SocketAddr,
        requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl ScriptedEndpoint {
        fn start(script: &[Reply]) -> ScriptedEndpoint {
            use std::sync::atomic::Ordering;

            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = std::sync::Arc::<std::sync::atomic::AtomicUsize>::default();
            let stop = std::sync::Arc::<std::sync::atomic::AtomicBool>::default();
            let (count, stopped) = (requests.clone(), stop.clone());
            let script = script.to_vec();
            let thread = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let reply = script[n.min(script.len() - 1)];
                    read_request(&mut stream);
                    match reply {
                        Reply::Answer(status, headers, body) => {
                            use std::io::Write;
                            let mut answer = format!(
                                "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (name, value) in headers {
                                answer.push_str(&format!("{name}: {value}\r\n"));
                            }
                            answer.push_str("\r\n");
                            answer.push_str(body);
                            let _ = stream.write_all(answer.as_bytes());
                        }
                        Reply::Close => {}
                        Reply::Hang => {
                            use std::io::Read;
                            // Returns at the client's close (or the read timeout).
                            let _ = stream.read(&mut [0u8; 1]);
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
            });
            ScriptedEndpoint {
                addr,
                requests,
                stop,
                thread: Some(thread),
            }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// How many requests came in.
        fn requests(&self) -> usize {
            self.requests.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Drop for ScriptedEndpoint {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            // Wakes the accept.
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Reads one request, head and `content-length` body, so that closing
    /// the connection afterwards is a clean close (unread bytes would make
    /// it a reset). Gives up after 5 s.
    fn read_request(stream: &mut TcpStream) {
        use std::io::Read;

        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A client of `endpoint` with the interceptor, up to `attempts`
    /// attempts 10 ms apart, each given up after 500 ms, and an operation
    /// timeout so that a test cannot hang.
    fn retrying_client(endpoint: &str, attempts: u32) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::retry::RetryConfig;
        use aws_sdk_dynamodb::config::timeout::TimeoutConfig;

        aws_sdk_dynamodb::Client::from_conf(
            client(endpoint, true)
                .config()
                .to_builder()
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(attempts)
                        .with_initial_backoff(Duration::from_millis(10))
                        .with_max_backoff(Duration::from_millis(10)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_millis(500))
                        .operation_timeout(Duration::from_secs(20))
                        .build(),
                )
                .build(),
        )
    }

    /// One `GetItem` through `c`, which must fail; returns the error's text.
    async fn failing_get_item(c: &aws_sdk_dynamodb::Client) -> String {
        let r = get_order(c).send().await;
        let err = r.expect_err("the call fails");
        aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string()
    }

    /// The first attempt throttled (429, `ThrottlingException`), the last
    /// one without an answer (the connection closed): the call failed for
    /// want of an answer, not for a throttle. The subsegment says so: a
    /// fault with the dispatch error, no `throttle`, no `error`, no status
    /// (the last attempt had none), and two retries. With the SDK's spans
    /// and without (the interceptor's span alone).
    #[test]
    fn a_throttle_before_a_dispatch_failure_is_not_the_outcome() {
        no_throttle_after_an_unanswered_attempt(Reply::Close, 3, "connection closed");
    }

    /// The same, the last attempt timed out (no answer within 500 ms).
    #[test]
    fn a_throttle_before_an_attempt_timeout_is_not_the_outcome() {
        no_throttle_after_an_unanswered_attempt(Reply::Hang, 2, "timeout");
    }

    /// A throttled first attempt, then attempts that get `last` (no
    /// answer), `attempts` in all, the call's error saying `why`.
    fn no_throttle_after_an_unanswered_attempt(last: Reply, attempts: u32, why: &'static str) {
        for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
            let endpoint = ScriptedEndpoint::start(&[THROTTLED, last]);
            let url = endpoint.url();
            let doc = trace(level, || async move {
                let text = failing_get_item(&retrying_client(&url, attempts)).await;
                assert!(text.contains(why), "{text}");
            });
            assert_eq!(endpoint.requests(), attempts as usize);
            let call = &doc["subsegments"][0];
            assert_eq!(call["aws"]["operation"], "GetItem", "{level}: {call:#}");
            assert_eq!(call["aws"]["retries"], attempts - 1, "{level}: {call:#}");
            // The throttling answer's: not the call's.
            assert!(call["aws"].get("request_id").is_none(), "{level}: {call:#}");
            assert!(call.get("throttle").is_none(), "{level}: {call:#}");
            assert!(call.get("error").is_none(), "{level}: {call:#}");
            assert_eq!(call["fault"], true, "{level}: {call:#}");
            assert!(
                call["http"]["response"]["status"].is_null(),
                "{level}: {call:#}"
            );
            let exceptions = call["cause"]["exceptions"].as_array().expect("exceptions");
            let text = serde_json::to_string(exceptions).unwrap();
            assert!(!text.contains("Throttling"), "{level}: {call:#}");
            assert!(text.contains(why), "{level}: {call:#}");
            for ex in exceptions {
                assert!(ex.get("remote").is_none(), "not the service's: {call:#}");
            }
        }
    }

    /// A request id names the response it came with: the call's is its last
    /// attempt's. Here the first attempt's 500 has one, the last attempt's
    /// 503 (from a proxy in front of the service) none: the call has none,
    /// not the first attempt's.
    #[test]
    fn the_request_id_is_the_last_attempts() {
        const INTERNAL_ERROR: Reply = Reply::Answer(
            500,
            &[
                ("x-amzn-requestid", "REQ-1"),
                ("content-type", "application/x-amz-json-1.0"),
            ],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal error"}"#,
        );
        const PROXY_UNAVAILABLE: Reply = Reply::Answer(
            503,
            &[("content-type", "text/html")],
            "<html><body>Service Unavailable</body></html>",
        );
        let endpoint = ScriptedEndpoint::start(&[INTERNAL_ERROR, PROXY_UNAVAILABLE]);
        let url = endpoint.url();
        let doc = trace(LevelFilter::INFO, || async move {
            failing_get_item(&retrying_client(&url, 2)).await;
        });
        assert_eq!(endpoint.requests(), 2);
        let call = &doc["subsegments"][0];
        assert_eq!(call["aws"]["retries"], 1, "{call:#}");
        assert_eq!(call["http"]["response"]["status"], 503, "{call:#}");
        assert_eq!(call["fault"], true, "{call:#}");
        assert!(call["aws"].get("request_id").is_none(), "{call:#}");
    }

    /// The operation timeout strikes in the backoff after a throttled first
    /// attempt: the SDK had already counted the second attempt, which never
    /// started. One attempt, no retry; its 429 is the call's last answer.
    #[test]
    fn an_attempt_that_never_started_is_not_a_retry() {
        use aws_sdk_dynamodb::config::timeout::TimeoutConfig;

        // Throttled, and told to wait 5 s (`x-amz-retry-after`, in ms): the
        // backoff, far beyond the operation timeout.
        const THROTTLED_WAIT: Reply = Reply::Answer(
            429,
            &[
                ("x-amzn-requestid", "REQ-1"),
                ("x-amz-retry-after", "5000"),
                ("content-type", "application/x-amz-json-1.0"),
            ],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
        );
        for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
            let endpoint = ScriptedEndpoint::start(&[THROTTLED_WAIT]);
            let url = endpoint.url();
            let doc = trace(level, || async move {
                let c = aws_sdk_dynamodb::Client::from_conf(
                    client(&url, true)
                        .config()
                        .to_builder()
                        .timeout_config(
                            TimeoutConfig::builder()
                                .operation_timeout(Duration::from_millis(500))
                                .build(),
                        )
                        .build(),
                );
                let text = failing_get_item(&c).await;
                assert!(text.contains("timeout"), "{text}");
            });
            assert_eq!(endpoint.requests(), 1);
            let call = &doc["subsegments"][0];
            assert_eq!(call["aws"]["retries"], 0, "{level}: {call:#}");
            assert_eq!(call["http"]["response"]["status"], 429, "{level}: {call:#}");
            assert_eq!(call["throttle"], true, "{level}: {call:#}");
        }
    }

    /// A service error is one exception, as the official SDKs record it: the
    /// error code as its type, the service's message as its message.
    #[test]
    fn a_service_error_is_its_code_and_message() {
        let moto = Moto::start();
        let doc = trace(LevelFilter::DEBUG, || async {
            let c = client(&moto.url(), true);
            four_calls(c.clone()).await;
            let r = c
                .put_item()
                .table_name("orders")
                .item("id", AttributeValue::S("o-1".into()))
                .condition_expression("attribute_not_exists(id)")
                .send()
                .await;
            assert!(r.is_err());
        });
        let calls = calls(&doc);
        for (call, code, message) in [
            (
                calls[3],
                "ResourceNotFoundException",
                "Requested resource not found",
            ),
            (
                calls[4],
                "ConditionalCheckFailedException",
                "The conditional request failed",
            ),
        ] {
            assert_eq!(call["error"], true, "{call:#}");
            assert_eq!(call["http"]["response"]["status"], 400);
            let ex = call["cause"]["exceptions"].as_array().unwrap();
            assert_eq!(ex.len(), 1, "{call:#}");
            assert_eq!(ex[0]["type"], code, "{call:#}");
            assert_eq!(ex[0]["message"], message, "{call:#}");
            assert_eq!(ex[0]["remote"], true);
        }
    }

    /// DynamoDB calls name their table (`aws.table_name`), batch operations
    /// over several tables all of them (`aws.table_names`), as the official
    /// SDKs record them.
    #[test]
    fn dynamodb_calls_name_their_tables() {
        use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, WriteRequest};

        let moto = Moto::start();
        let doc = trace(LevelFilter::INFO, || async {
            let c = client(&moto.url(), true);
            four_calls(c.clone()).await;
            let put = |id: &str| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .item("id", AttributeValue::S(id.into()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            };
            let _ = c
                .batch_write_item()
                .request_items("orders", vec![put("o-2")])
                .request_items("no-such-table", vec![put("o-3")])
                .send()
                .await;
            let keys = KeysAndAttributes::builder()
                .keys([("id".to_owned(), AttributeValue::S("o-2".into()))].into())
                .build()
                .unwrap();
            c.batch_get_item()
                .request_items("orders", keys)
                .send()
                .await
                .unwrap();
        });
        let calls = calls(&doc);
        assert_eq!(calls.len(), 6, "{doc:#}");
        for c in &calls[..4] {
            assert!(c["aws"].get("table_names").is_none(), "{c:#}");
        }
        assert_eq!(calls[0]["aws"]["table_name"], "orders", "{:#}", calls[0]);
        assert_eq!(calls[2]["aws"]["table_name"], "orders");
        assert_eq!(calls[3]["aws"]["table_name"], "no-such-table");
        let mut names: Vec<_> = calls[4]["aws"]["table_names"]
            .as_array()
            .unwrap_or_else(|| panic!("{:#}", calls[4]))
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["no-such-table", "orders"]);
        assert_eq!(calls[5]["aws"]["table_name"], "orders", "{:#}", calls[5]);
    }

    /// DynamoDB calls, with the SDK's own spans (the interceptor's merged
    /// into each) and without them: the request's and the response's
    /// parameters the official SDKs record (their whitelists), in the `aws`
    /// block under the same names. Before, none was read.
    #[test]
    fn dynamodb_calls_record_their_parameters_as_the_official_sdks_do() {
        use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, Select};

        let moto = Moto::start();
        for level in [LevelFilter::DEBUG, LevelFilter::INFO] {
            let doc = trace(level, || async {
                let c = client(&moto.url(), true);
                let _ = c.delete_table().table_name("orders").send().await;
                four_calls(c.clone()).await;
                c.get_item()
                    .table_name("orders")
                    .key("id", AttributeValue::S("o-1".into()))
                    .consistent_read(true)
                    .projection_expression("id")
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .unwrap();
                c.query()
                    .table_name("orders")
                    .key_condition_expression("id = :id")
                    .expression_attribute_values(":id", AttributeValue::S("o-1".into()))
                    .limit(5)
                    .scan_index_forward(false)
                    .select(Select::AllAttributes)
                    .send()
                    .await
                    .unwrap();
                c.scan().table_name("orders").send().await.unwrap();
                c.list_tables().limit(10).send().await.unwrap();
                let _ = c
                    .get_item()
                    .table_name("no-such-table")
                    .key("id", AttributeValue::S("x".into()))
                    .consistent_read(true)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
            });
            let aws = |op: &str, n: usize| aws_block(&doc, op, n);
            let get = aws("GetItem", 2);
            assert_eq!(get["consistent_read"], true, "{level}: {get:#}");
            assert_eq!(get["projection_expression"], "id", "{get:#}");
            assert_eq!(get["consumed_capacity"]["TableName"], "orders", "{get:#}");
            assert!(
                get["consumed_capacity"]["CapacityUnits"].is_number(),
                "{get:#}"
            );
            assert_eq!(get["table_name"], "orders", "{get:#}");
            let query = aws("Query", 0);
            assert_eq!(query["limit"], 5, "{query:#}");
            assert_eq!(query["scan_index_forward"], false, "{query:#}");
            assert_eq!(query["select"], "ALL_ATTRIBUTES", "{query:#}");
            // Nothing the whitelist leaves out: not the key's value.
            let text = query.to_string();
            assert!(
                !text.contains("o-1") && !text.contains("id = :id"),
                "{query:#}"
            );
            let scan = aws("Scan", 0);
            assert_eq!(
                (&scan["count"], &scan["scanned_count"]),
                (&1.into(), &1.into()),
                "{scan:#}"
            );
            let list = aws("ListTables", 0);
            assert_eq!(list["limit"], 10, "{list:#}");
            assert_eq!(list["table_count"], 1, "{list:#}");
            // A failed call has its request's parameters, none of a response.
            let failed = aws("GetItem", 3);
            assert_eq!(failed["consistent_read"], true, "{failed:#}");
            assert!(failed.get("consumed_capacity").is_none(), "{failed:#}");
            // A call without any has none.
            let plain = aws("GetItem", 0);
            assert!(plain.get("consistent_read").is_none(), "{plain:#}");
        }
    }

    /// SQS calls record the parameters the official SDKs do: the message's
    /// id, its attributes' names and delay, how many messages a batch sent
    /// and a receive got, and `GetQueueUrl`'s answer as the call's queue.
    #[test]
    fn sqs_calls_record_their_parameters_as_the_official_sdks_do() {
        use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

        let moto = Moto::start();
        let endpoint = moto.url();
        let sent_id = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let id = sent_id.clone();
        let doc = trace(LevelFilter::INFO, || async move {
            let sqs = intercepted_client!(aws_sdk_sqs, "us-east-1", &endpoint);
            sqs.create_queue()
                .queue_name("orders")
                .send()
                .await
                .unwrap();
            let url = sqs
                .get_queue_url()
                .queue_name("orders")
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let attribute = |v: &str| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .unwrap()
            };
            let sent = sqs
                .send_message()
                .queue_url(&url)
                .message_body("order o-1")
                .message_attributes("tenant", attribute("acme"))
                .message_attributes("kind", attribute("order"))
                .delay_seconds(0)
                .send()
                .await
                .unwrap();
            *id.lock().unwrap() = sent.message_id.unwrap();
            let entry = |n: &str| {
                SendMessageBatchRequestEntry::builder()
                    .id(n)
                    .message_body(format!("order {n}"))
                    .build()
                    .unwrap()
            };
            sqs.send_message_batch()
                .queue_url(&url)
                .entries(entry("o-2"))
                .entries(entry("o-3"))
                .send()
                .await
                .unwrap();
            let got = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            assert_eq!(got.messages.unwrap_or_default().len(), 3);
            sqs.list_queues()
                .queue_name_prefix("ord")
                .send()
                .await
                .unwrap();
        });
        let aws = |op: &str| aws_block(&doc, op, 0);
        let create = aws("CreateQueue");
        assert_eq!(create["queue_name"], "orders", "{create:#}");
        let get_url = aws("GetQueueUrl");
        assert_eq!(get_url["queue_name"], "orders", "{get_url:#}");
        assert!(
            get_url["queue_url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/orders")),
            "the URL answered is the call's queue: {get_url:#}"
        );
        let send = aws("SendMessage");
        assert_eq!(send["message_id"], *sent_id.lock().unwrap(), "{send:#}");
        assert_eq!(send["delay_seconds"], 0, "{send:#}");
        let mut names: Vec<_> = send["message_attribute_names"]
            .as_array()
            .unwrap_or_else(|| panic!("{send:#}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["kind", "tenant"]);
        assert!(
            !send.to_string().contains("acme"),
            "no attribute's value: {send:#}"
        );
        let batch = aws("SendMessageBatch");
        assert_eq!(
            (
                &batch["message_count"],
                &batch["successful_count"],
                &batch["failed_count"]
            ),
            (&2.into(), &2.into(), &0.into()),
            "{batch:#}"
        );
        let receive = aws("ReceiveMessage");
        assert_eq!(receive["max_number_of_messages"], 10, "{receive:#}");
        assert_eq!(receive["wait_time_seconds"], 0, "{receive:#}");
        assert_eq!(receive["message_count"], 3, "{receive:#}");
        let list = aws("ListQueues");
        assert_eq!(list["queue_name_prefix"], "ord", "{list:#}");
        assert_eq!(list["queue_count"], 1, "{list:#}");
    }

    /// S3 calls record their bucket (`bucket_name`) and, as the official
    /// SDKs do, the object's key, a listing's prefix and a copy's source.
    /// Before, an S3 call named no bucket.
    #[test]
    fn s3_calls_name_their_bucket_and_key() {
        let moto = Moto::start();
        let endpoint = moto.url();
        let doc = trace(LevelFilter::INFO, || async move {
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .credentials_provider(Credentials::new(
                        "AKIDTEST", "secret", None, None, "test",
                    ))
                    .endpoint_url(&endpoint)
                    .force_path_style(true)
                    .http_client(aws_smithy_http_client::Builder::new().build_http())
                    .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                    .build(),
            );
            s3.create_bucket().bucket("photos").send().await.unwrap();
            s3.put_object()
                .bucket("photos")
                .key("cats/tom & jerry.jpg")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"meow"))
                .send()
                .await
                .unwrap();
            let got = s3
                .get_object()
                .bucket("photos")
                .key("cats/tom & jerry.jpg")
                .send()
                .await
                .unwrap();
            assert_eq!(
                got.body.collect().await.unwrap().into_bytes().as_ref(),
                b"meow"
            );
            s3.copy_object()
                .bucket("photos")
                .key("copy.jpg")
                .copy_source("photos/cats/tom%20%26%20jerry.jpg")
                .send()
                .await
                .unwrap();
            s3.list_objects_v2()
                .bucket("photos")
                .prefix("cats/")
                .send()
                .await
                .unwrap();
            s3.list_buckets().send().await.unwrap();
        });
        let aws = |op: &str| aws_block(&doc, op, 0);
        for op in [
            "CreateBucket",
            "PutObject",
            "GetObject",
            "CopyObject",
            "ListObjectsV2",
        ] {
            assert_eq!(aws(op)["bucket_name"], "photos", "{op}: {:#}", aws(op));
        }
        assert!(aws("CreateBucket").get("key").is_none());
        assert_eq!(
            aws("PutObject")["key"],
            "cats/tom & jerry.jpg",
            "{:#}",
            aws("PutObject")
        );
        assert_eq!(aws("GetObject")["key"], "cats/tom & jerry.jpg");
        let copy = aws("CopyObject");
        assert_eq!(copy["key"], "copy.jpg", "{copy:#}");
        assert_eq!(
            copy["copy_source"], "photos/cats/tom & jerry.jpg",
            "{copy:#}"
        );
        let list = aws("ListObjectsV2");
        assert_eq!(list["prefix"], "cats/", "{list:#}");
        assert!(list.get("key").is_none(), "{list:#}");
        let buckets = aws("ListBuckets");
        assert!(buckets.get("bucket_name").is_none(), "{buckets:#}");
    }

    /// An HTTP connector in the process, answering every request `200` and
    /// keeping its URL: an S3 client reaches custom domains (no DNS) with it.
    #[derive(Debug, Clone, Default)]
    struct Canned {
        uris: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl aws_smithy_runtime_api::client::http::HttpConnector for Canned {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
            self.uris.lock().unwrap().push(request.uri().to_owned());
            let mut response = HttpResponse::new(
                200.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            );
            response.headers_mut().insert("x-amz-request-id", "R");
            response.headers_mut().insert("content-length", "0");
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
        }
    }

    /// An S3 client of a configured endpoint (LocalStack, MinIO, a custom
    /// domain, behind a reverse proxy's path or not), in either addressing
    /// style, names the right bucket and key. Before, the endpoint's path was
    /// taken for the bucket (`http://127.0.0.1:9/base/photos/k` recorded
    /// `bucket_name: base`, `key: photos/k`) or the key (`base/k`), and a
    /// custom domain named none. (Found by a hunt.)
    /// A real S3 client of `endpoint` reaching `canned`, with the interceptor.
    fn canned_s3(canned: &Canned, endpoint: &str, path_style: bool) -> aws_sdk_s3::Client {
        use aws_smithy_runtime_api::client::http::{SharedHttpConnector, http_client_fn};
        let connector = canned.clone();
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
                .endpoint_url(endpoint)
                .force_path_style(path_style)
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(connector.clone())
                }))
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build(),
        )
    }

    #[test]
    fn s3_calls_through_a_configured_endpoint_name_their_bucket_and_key() {
        let canned = Canned::default();
        let endpoints = [
            ("http://127.0.0.1:9/base/", true),
            ("http://localhost:9/base/", false),
            ("https://minio.example.com", true),
            ("https://minio.example.com/", false),
            ("http://127.0.0.1:9/base//", true),
        ];
        let connector = canned.clone();
        let doc = trace(LevelFilter::INFO, || async move {
            for (endpoint, path_style) in endpoints {
                let s3 = canned_s3(&connector, endpoint, path_style);
                s3.put_object()
                    .bucket("photos")
                    .key("cats/k")
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .unwrap();
            }
        });
        let uris = canned.uris.lock().unwrap().clone();
        for (uri, sent) in uris.iter().zip([
            "http://127.0.0.1:9/base/photos/cats/k",
            "http://photos.localhost:9/base/cats/k",
            "https://minio.example.com/photos/cats/k",
            "https://photos.minio.example.com/cats/k",
            "http://127.0.0.1:9/base//photos/cats/k",
        ]) {
            assert!(uri.starts_with(sent), "{uri} is not {sent}...");
        }
        for (n, uri) in uris.iter().enumerate() {
            let aws = aws_block(&doc, "PutObject", n);
            assert_eq!(aws["bucket_name"], "photos", "{uri}: {aws:#}");
            assert_eq!(aws["key"], "cats/k", "{uri}: {aws:#}");
        }
    }

    /// Through a configured endpoint, the labels the SDK puts before its host
    /// for an access point's ARN (`myap-123456789012`), or for Object
    /// Lambda's `WriteGetObjectResponse` (the request's route), name no
    /// bucket. Before the fix, each was recorded as the call's bucket (and
    /// `WriteGetObjectResponse` as the key). (Found by a review.)
    #[test]
    fn s3_calls_through_a_configured_endpoint_name_no_made_up_bucket() {
        let canned = Canned::default();
        let s3 = canned_s3(&canned, "https://minio.example.com", false);
        let doc = trace(LevelFilter::INFO, || async move {
            let _ = s3
                .get_object()
                .bucket("arn:aws:s3:us-east-1:123456789012:accesspoint/myap")
                .key("k")
                .send()
                .await;
            let _ = s3
                .write_get_object_response()
                .request_route("route-1")
                .request_token("token")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                .send()
                .await;
        });
        let uris = canned.uris.lock().unwrap().clone();
        assert!(
            uris[0].starts_with("https://myap-123456789012.minio.example.com/k"),
            "{uris:?}"
        );
        assert!(
            uris[1].starts_with("https://route-1.minio.example.com/"),
            "{uris:?}"
        );
        for op in ["GetObject", "WriteGetObjectResponse"] {
            let aws = aws_block(&doc, op, 0);
            assert!(aws.get("bucket_name").is_none(), "{uris:?}: {aws:#}");
            assert!(
                aws.get("key").is_none() || op == "GetObject",
                "{uris:?}: {aws:#}"
            );
        }
    }

    /// With the interceptor's span filtered out (a filter for the
    /// application's crates only, here the layer's only one, so the span is
    /// disabled as under a global `EnvFilter`), the call is still part of
    /// the trace: the header names the nearest traced span.
    #[test]
    fn trace_header_sent_when_the_interceptor_span_is_filtered_out() {
        use tracing_subscriber::filter::Targets;

        let (listener, app, seen) = header_recording_endpoint();
        let addr = listener.local_addr().unwrap();
        let filter = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("tracing_xray", LevelFilter::OFF);
        let doc = trace(filter, || async move {
            let server = serve(listener, app);
            let c = client(&format!("http://{addr}"), true);
            get_order(&c).send().await.unwrap();
            server.abort();
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            format!(
                "Root={};Parent={};Sampled=1",
                doc["trace_id"].as_str().unwrap(),
                doc["id"].as_str().unwrap()
            )
        );
    }
}
