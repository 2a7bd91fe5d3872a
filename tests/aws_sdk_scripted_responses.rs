//! Real `aws-sdk-s3` clients with `XrayInterceptor`, answered by an
//! in-process connector with scripted responses (no server, no network):
//! what the interceptor records compared with what the official X-Ray SDKs
//! send for the same calls. Each test was a finding of a hunt of the
//! interceptor against the official SDKs: its comment says what was sent
//! before the fix, the evidence, and what is sent now.
#![cfg(all(feature = "aws-sdk", feature = "tower"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use serde_json::Value;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;

/// A request as the connector saw it: URI and headers (lowercase names).
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct SeenRequest {
    uri: String,
    headers: Vec<(String, String)>,
}

#[allow(dead_code)]
impl SeenRequest {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A scripted answer: status, headers, body.
type Scripted = (u16, Vec<(&'static str, String)>, String);

/// An in-process connector: answers request `n` (1-based) with `script(n)`.
#[derive(Clone)]
struct Connector {
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    script: Arc<dyn Fn(usize) -> Scripted + Send + Sync>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    fn new(script: impl Fn(usize) -> Scripted + Send + Sync + 'static) -> Connector {
        Connector {
            seen: Arc::default(),
            script: Arc::new(script),
        }
    }

    fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(SeenRequest {
                uri: request.uri().to_owned(),
                headers: request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                    .collect(),
            });
            seen.len()
        };
        let (status, headers, body) = (self.script)(n);
        if status == 0 {
            // No response: the connection was reset.
            return HttpConnectorFuture::ready(Err(
                aws_smithy_runtime_api::client::result::ConnectorError::io(Box::new(
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
                )),
            ));
        }
        let mut response = HttpResponse::new(
            status.try_into().unwrap(),
            SdkBody::from(body.clone().into_bytes()),
        );
        response
            .headers_mut()
            .insert("content-length", body.len().to_string());
        for (k, v) in headers {
            response.headers_mut().append(k, v);
        }
        HttpConnectorFuture::ready(Ok(response))
    }
}

/// Runs `body` inside a root span `handler` under a layer behind `filter`
/// sampling with `sampler`; returns every document sent (schema-checked).
fn run<F: std::future::Future<Output = ()>>(
    filter: LevelFilter,
    sampler: impl tracing_xray::sampling::Sampler,
    body: impl FnOnce() -> F,
) -> Vec<Value> {
    run_with(filter, sampler, |b| b, body)
}

fn run_with<F: std::future::Future<Output = ()>>(
    filter: LevelFilter,
    sampler: impl tracing_xray::sampling::Sampler,
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    body: impl FnOnce() -> F,
) -> Vec<Value> {
    use tracing::Instrument;
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
    rt.block_on(body().instrument(tracing::info_span!("handler")));
    drop(rt);
    xray.flush(Duration::from_secs(10)).unwrap();
    let schema = common::schema();
    let docs = exporter.json_documents();
    for doc in &docs {
        common::assert_schema_valid(&schema, doc);
    }
    docs
}

fn aws_nodes(docs: &[Value]) -> Vec<Value> {
    docs.iter()
        .flat_map(common::walk)
        .map(|(_, n)| n.clone())
        .filter(|n| n["namespace"] == "aws")
        .collect()
}

fn always() -> tracing_xray::sampling::AlwaysSample {
    tracing_xray::sampling::AlwaysSample
}

// ---------------------------------------------------------------------------
// AWS SDK interceptor
// ---------------------------------------------------------------------------

/// An S3 `PutObject` answered 200 with `x-amz-request-id: REQ-1` and
/// `x-amz-id-2: EXT-2` (S3's extended request id, which AWS support asks
/// for together with the request id).
///
/// Before the fix: the call's `aws` block has `request_id` but no `id_2`; the
/// interceptor never reads `x-amz-id-2` (no `id_2` anywhere in `src/`).
///
/// Evidence: aws-xray-sdk-python `ext/boto_utils.py` `aws_meta_processor`
/// ("for service like S3 that returns special request id in response
/// headers": `aws_meta['id_2'] = resp_meta['HTTPHeaders']['x-amz-id-2']`);
/// aws-xray-sdk-node `lib/segments/attributes/aws.js` (`if
/// (res.extendedRequestId && serviceName === 's3') this.id_2 =
/// res.extendedRequestId;`); aws-xray-sdk-java's SDK v2 `TracingInterceptor`
/// reads the same header (`extractExtendedRequestIdFromHttp`,
/// `EntityHeaderKeys.AWS.EXTENDED_REQUEST_ID_HEADER = "x-amz-id-2"`) into
/// the `aws` block. The interceptor's rustdoc describes its `aws` block as
/// what "the official SDKs record".
///
/// Now: `aws.id_2 = "EXT-2"` beside `aws.request_id = "REQ-1"`.
#[test]
fn s3_extended_request_id_is_recorded_as_id_2() {
    let connector = Connector::new(|_| {
        (
            200,
            vec![
                ("x-amz-request-id", "REQ-1".to_owned()),
                ("x-amz-id-2", "EXT-2".to_owned()),
                ("etag", "\"abc\"".to_owned()),
            ],
            String::new(),
        )
    });
    let c = connector.clone();
    let docs = run(LevelFilter::INFO, always(), || async move {
        let s3 = {
            let connector = c.clone();
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .credentials_provider(Credentials::new(
                        "AKIDTEST", "secret", None, None, "test",
                    ))
                    .endpoint_url("http://127.0.0.1:9")
                    .force_path_style(true)
                    .http_client(http_client_fn(move |_, _| {
                        SharedHttpConnector::new(connector.clone())
                    }))
                    .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                    .build(),
            )
        };
        s3.put_object()
            .bucket("photos")
            .key("cat.jpg")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"meow"))
            .send()
            .await
            .unwrap();
    });
    let calls = aws_nodes(&docs);
    assert_eq!(calls.len(), 1, "{docs:#?}");
    let aws = &calls[0]["aws"];
    assert_eq!(aws["operation"], "PutObject", "{aws:#}");
    assert_eq!(aws["request_id"], "REQ-1", "{aws:#}");
    assert_eq!(
        aws.get("id_2"),
        Some(&Value::from("EXT-2")),
        "aws.id_2: {aws:#}"
    );
}

/// An S3 client (path style) reaching the scripted connector, with the
/// interceptor and no retries.
fn s3_client(connector: &Connector) -> aws_sdk_s3::Client {
    s3_client_with(connector, static_credentials())
}

fn static_credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "test")
}

/// [`s3_client`] with `credentials` as its provider.
fn s3_client_with(
    connector: &Connector,
    credentials: impl aws_sdk_s3::config::ProvideCredentials + 'static,
) -> aws_sdk_s3::Client {
    let connector = connector.clone();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .http_client(http_client_fn(move |_, _| {
                SharedHttpConnector::new(connector.clone())
            }))
            .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
            .build(),
    )
}

/// Presigns an S3 `GetObject` (no request leaves: the URL is handed to
/// someone else, a browser, to use later) inside a traced handler. Returns
/// the documents and the presigned request's headers.
fn presign_get_object(filter: LevelFilter) -> (Vec<Value>, Vec<(String, String)>, usize) {
    let connector = Connector::new(|_| (200, vec![], String::new()));
    let c = connector.clone();
    let headers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let h = headers.clone();
    let docs = run(filter, always(), || async move {
        let presigned = s3_client(&c)
            .get_object()
            .bucket("photos")
            .key("cat.jpg")
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                    .unwrap(),
            )
            .await
            .unwrap();
        h.lock().unwrap().extend(
            presigned
                .headers()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())),
        );
    });
    let sent = connector.seen().len();
    let headers = headers.lock().unwrap().clone();
    (docs, headers, sent)
}

/// Presigning an S3 request sends nothing, yet the interceptor writes the
/// current trace's `X-Amzn-Trace-Id` (Parent = a subsegment of this
/// request) into the presigned request's headers, which the application
/// hands on with the URL. Whoever uses the URL later (a browser, hours
/// later, another service) then sends a header naming a trace and a parent
/// that have nothing to do with its request, and S3's segment joins that
/// stale trace.
///
/// Evidence: the header is for "traced services (Lambda, SQS, SNS, ...) [to]
/// join the trace" of the call being made (`aws_sdk` rustdoc); the official
/// SDKs inject it only into requests they transmit (Python's
/// `inject_header` wraps botocore's send, which `generate_presigned_url`
/// never reaches; Node stopped instrumenting presign operations, PR
/// aws/aws-xray-sdk-node#130, because they "don't make service calls").
///
/// Now: a presigned request carries no `X-Amzn-Trace-Id`.
#[test]
fn a_presigned_request_carries_no_trace_header() {
    let (_, headers, sent) = presign_get_object(LevelFilter::INFO);
    assert_eq!(sent, 0, "presigning sends nothing");
    let trace: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k == "x-amzn-trace-id")
        .collect();
    assert!(trace.is_empty(), "presigned request's headers: {headers:?}");
}

/// Presigning an S3 request makes no call, yet the trace gets an `aws`
/// subsegment `S3`/`GetObject` as if S3 had been called (no status, no
/// request id, no error): X-Ray's service map draws a call to S3 that never
/// happened, counted as a success.
///
/// Evidence: aws-xray-sdk-node treated exactly this as a bug and fixed it
/// (PR aws/aws-xray-sdk-node#130, "bugfix: no longer creates pending
/// subsegments for AWS presigned url operations ... these operations don't
/// make service calls", open to a subsegment only "as long as they did not
/// contain the `aws` namespace since they do not actually make remote
/// calls"; again checked for SDK v3 in PR #298: "we'd create subsegments
/// for presigning S3 URLs, even though it's a local request"). Python
/// patches `BaseClient._make_api_call`, which `generate_presigned_url` does
/// not go through (issue aws/aws-xray-sdk-python#79: presigns are not
/// traced). README/rustdoc: one `aws` subsegment per call.
///
/// Now: no `aws` subsegment for a presign.
#[test]
fn a_presign_is_not_recorded_as_an_s3_call() {
    // The interceptor's span alone, and merged into the SDK's operation
    // span (its DEBUG spans enabled).
    for filter in [LevelFilter::INFO, LevelFilter::DEBUG] {
        let (docs, _, sent) = presign_get_object(filter);
        assert_eq!(sent, 0, "presigning sends nothing");
        let calls = aws_nodes(&docs);
        assert!(
            calls.is_empty(),
            "{filter}: aws subsegments for a presign: {calls:#?}"
        );
        // The handler's segment, with nothing of the presign below it.
        assert_eq!(docs.len(), 1, "{docs:#?}");
        assert!(docs[0].get("subsegments").is_none(), "{docs:#?}");
    }
}

/// An S3 `HeadObject` of a missing key: S3 answers 404 with no body (a
/// response to HEAD has none), and the SDK fails the call with its modeled
/// service error `HeadObjectError::NotFound` (code `NotFound`).
///
/// Before the fix: the subsegment's cause is a chain of three (remote) exceptions,
/// typed `error`, `source`, `source` (names of no error type), the first
/// with the message `operation error`, the other two `NotFound`: the
/// interceptor takes a service's code only from the response's
/// `x-amzn-ErrorType` header or its body, finds neither, and records the
/// SDK error's `source()` chain, the treatment its rustdoc reserves for
/// errors that are not the service's.
///
/// Evidence: the `aws_sdk` rustdoc (and README) promise "the call's error as
/// an exception: a service's as one `remote` exception of its code and
/// message (as the official SDKs record it), any other with the SDK error's
/// `source()` chain"; this is a service's error (an `SdkError::ServiceError`
/// with status 404 and code `NotFound`). Python's `_aws_error_handler`
/// records one remote exception (`ClientError`, code `404`) for it; Java
/// v2's `TracingInterceptor` one remote exception of the service
/// exception's type.
///
/// Now: one exception, `remote: true`, of type `NotFound` (the SDK
/// error's code).
#[test]
fn a_head_object_404_is_one_remote_exception() {
    let connector = Connector::new(|_| {
        (
            404,
            vec![("x-amz-request-id", "REQ-404".to_owned())],
            String::new(),
        )
    });
    let c = connector.clone();
    let docs = run(LevelFilter::INFO, always(), || async move {
        let r = s3_client(&c)
            .head_object()
            .bucket("photos")
            .key("cat.jpg")
            .send()
            .await;
        assert!(r.is_err(), "{r:?}");
    });
    let calls = aws_nodes(&docs);
    assert_eq!(calls.len(), 1, "{docs:#?}");
    let call = &calls[0];
    assert_eq!(call["error"], true, "{call:#}");
    assert_eq!(call["aws"]["request_id"], "REQ-404", "{call:#}");
    let ex = common::exceptions(call);
    let shape: Vec<(Value, Value)> = ex
        .iter()
        .map(|e| (e["type"].clone(), e["message"].clone()))
        .collect();
    assert_eq!(ex.len(), 1, "exceptions (type, message): {shape:?}");
    assert_eq!(ex[0]["remote"], true, "{call:#}");
    assert_eq!(ex[0]["type"], "NotFound", "{call:#}");
}

/// An S3 `CopyObject` answered `200 OK` whose body is an `<Error>`
/// (`InternalError`): S3 documents that `CopyObject`, `UploadPartCopy` and
/// `CompleteMultipartUpload` may fail this way after the 200 head went out,
/// and the SDK fails the call with the service's error (`code:
/// InternalError`, S3's message, request id).
///
/// Before the fix: the subsegment is a `fault` whose cause is a chain of three local
/// exceptions (no `remote`), typed `error`, `source`, `source`, with the
/// messages `operation error`, `unhandled error (InternalError)` and a
/// `Debug` dump `Error { code: "InternalError", ... }`: the interceptor
/// reads a service error only from responses of status 300 or more
/// (`read_after_attempt`: `if status >= 300 { service_error(..) }`), so
/// this one falls through to the SDK error's `source()` chain.
///
/// Evidence: the `aws_sdk` rustdoc and README promise "a service's [error]
/// as one `remote` exception of its code and message (as the official SDKs
/// record it)"; botocore raises `ClientError` for these 200 errors and
/// aws-xray-sdk-python's `_aws_error_handler` records it with
/// `add_exception(exception, stack, True)` (remote).
///
/// Now: one exception, `remote: true`, type `InternalError`, message
/// "We encountered an internal error. Please try again.".
#[test]
fn an_s3_error_in_a_200_response_is_one_remote_exception_of_its_code() {
    let connector = Connector::new(|_| {
        (
            200,
            vec![
                ("x-amz-request-id", "REQ-200".to_owned()),
                ("content-type", "application/xml".to_owned()),
            ],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
             <Message>We encountered an internal error. Please try again.</Message>\
             <RequestId>REQ-200</RequestId><HostId>H</HostId></Error>"
                .to_owned(),
        )
    });
    let c = connector.clone();
    let docs = run(LevelFilter::INFO, always(), || async move {
        let r = s3_client(&c)
            .copy_object()
            .bucket("photos")
            .key("copy.jpg")
            .copy_source("photos/cat.jpg")
            .send()
            .await;
        let err = r.expect_err("S3's 200 error fails the call");
        use aws_sdk_s3::error::ProvideErrorMetadata;
        assert_eq!(err.code(), Some("InternalError"));
    });
    let calls = aws_nodes(&docs);
    assert_eq!(calls.len(), 1, "{docs:#?}");
    let call = &calls[0];
    assert_eq!(call["aws"]["request_id"], "REQ-200", "{call:#}");
    assert_eq!(call["fault"], true, "{call:#}");
    let ex = common::exceptions(call);
    let shape: Vec<(Value, Value, Value)> = ex
        .iter()
        .map(|e| (e["type"].clone(), e["remote"].clone(), e["message"].clone()))
        .collect();
    assert_eq!(ex.len(), 1, "exceptions (type, remote, message): {shape:?}");
    assert_eq!(ex[0]["type"], "InternalError", "{call:#}");
    assert_eq!(ex[0]["remote"], true, "{call:#}");
    assert_eq!(
        ex[0]["message"], "We encountered an internal error. Please try again.",
        "{call:#}"
    );
}

/// An S3 error whose XML `<Message>` holds escaped characters (`&quot;`,
/// `&lt;`, `&gt;`, `&amp;`, as any XML text must write `"`, `<`, `>`, `&`).
///
/// Before the fix: the exception's message is the raw XML text, entities and all
/// (`Argument &quot;x-amz-copy-source&quot; ...`): the interceptor cuts the
/// message out of the body between `<Message>` and `</Message>` and never
/// unescapes it, while the SDK's own error (and every official SDK's,
/// which parse the XML) says `Argument "x-amz-copy-source" ...`.
///
/// Evidence: the `aws_sdk` rustdoc: "a service's [error] as one `remote`
/// exception of its code and message (as the official SDKs record it)";
/// XML 1.0 §2.4 (`<` and `&` in character data are always escaped); the
/// SDK's `ProvideErrorMetadata::message()` for this response, asserted
/// below.
///
/// Now: the exception's message is the SDK's, unescaped.
#[test]
fn an_xml_error_message_is_unescaped() {
    const RAW: &str = "Argument &quot;x-amz-copy-source&quot; must be &lt;bucket&gt;/&lt;key&gt; \
                       &amp; URL-encoded";
    const TEXT: &str = "Argument \"x-amz-copy-source\" must be <bucket>/<key> & URL-encoded";
    let connector = Connector::new(|_| {
        (
            400,
            vec![
                ("x-amz-request-id", "REQ-400".to_owned()),
                ("content-type", "application/xml".to_owned()),
            ],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code>\
                 <Message>{RAW}</Message><RequestId>REQ-400</RequestId><HostId>H</HostId></Error>"
            ),
        )
    });
    let c = connector.clone();
    let docs = run(LevelFilter::INFO, always(), || async move {
        let err = s3_client(&c)
            .copy_object()
            .bucket("photos")
            .key("copy.jpg")
            .copy_source("photos/cat.jpg")
            .send()
            .await
            .expect_err("a 400");
        use aws_sdk_s3::error::ProvideErrorMetadata;
        assert_eq!(err.code(), Some("InvalidArgument"));
        assert_eq!(err.message(), Some(TEXT), "the SDK's message");
    });
    let calls = aws_nodes(&docs);
    assert_eq!(calls.len(), 1, "{docs:#?}");
    let call = &calls[0];
    let ex = common::exceptions(call);
    assert_eq!(ex.len(), 1, "{call:#}");
    assert_eq!(ex[0]["type"], "InvalidArgument", "{call:#}");
    assert_eq!(ex[0]["remote"], true, "{call:#}");
    assert_eq!(ex[0]["message"], TEXT, "exception message");
}

/// A credentials provider that, as `aws-config`'s `AssumeRoleProvider` or
/// `WebIdentityTokenCredentialsProvider` does with STS, makes an AWS call
/// of its own (here an S3 `HeadBucket` through a traced client) to get the
/// credentials.
#[derive(Debug)]
struct FetchingCredentials {
    client: aws_sdk_s3::Client,
}

impl aws_sdk_s3::config::ProvideCredentials for FetchingCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            self.client
                .head_bucket()
                .bucket("credentials-bucket")
                .send()
                .await
                .expect("the credentials call");
            Ok(static_credentials())
        })
    }
}

/// Found by a review of the presign fix: a presign whose credentials are
/// fetched by a real AWS call made inside it (the SDK resolves them in
/// `try_attempt`, below the presign's operation span). Before the fix,
/// with the SDK's DEBUG spans on, that call, which really went out with a
/// trace header naming its subsegment, was dropped with the presign's
/// subtree. Now the presign has no subsegment, and the calls made inside
/// it go to its parent (README: "a call made inside another … a
/// subsegment of its own"), at any filter level.
#[test]
fn a_call_made_inside_a_presign_is_not_lost_with_it() {
    for filter in [LevelFilter::INFO, LevelFilter::DEBUG] {
        let connector = Connector::new(|_| {
            (
                200,
                vec![("x-amz-request-id", "REQ-CREDS".to_owned())],
                String::new(),
            )
        });
        let c = connector.clone();
        let docs = run(filter, always(), || async move {
            let credentials = FetchingCredentials {
                client: s3_client(&c),
            };
            s3_client_with(&c, credentials)
                .get_object()
                .bucket("photos")
                .key("cat.jpg")
                .presigned(
                    aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                        .unwrap(),
                )
                .await
                .unwrap();
        });
        let seen = connector.seen();
        assert_eq!(seen.len(), 1, "{filter}: the credentials call went out");
        let calls = aws_nodes(&docs);
        let operations: Vec<&Value> = calls.iter().map(|c| &c["aws"]["operation"]).collect();
        assert_eq!(
            operations,
            [&Value::from("HeadBucket")],
            "{filter}: {docs:#?}"
        );
        // Below the handler's segment, named by its trace header.
        assert_eq!(docs.len(), 1, "{filter}: {docs:#?}");
        assert_eq!(docs[0]["subsegments"][0]["aws"]["operation"], "HeadBucket");
        let header = seen[0].header("x-amzn-trace-id");
        let id = calls[0]["id"].as_str().unwrap();
        assert!(
            header.len() == 1 && header[0].contains(&format!("Parent={id}")),
            "{filter}: {header:?} names the call's subsegment {id}"
        );
    }
}

/// Found by a review of the fix for S3's errors in a 200: a Lambda
/// `Invoke` that succeeds with a payload that happens to be an XML error
/// document (a function relaying S3's `<Error><Code>SlowDown</Code>…`).
/// Before the fix every 200 body starting with `<Error>` was read as the
/// service's error, of any service: the call was sent `throttle: true`,
/// though it succeeded. Now only the S3 operations that may fail in a 200
/// (`CopyObject`, `UploadPartCopy`, `CompleteMultipartUpload`) are read so.
#[test]
fn a_lambda_payload_that_looks_like_an_s3_error_does_not_flag_the_call() {
    const PAYLOAD: &str =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let connector = Connector::new(|_| {
        (
            200,
            vec![("x-amzn-requestid", "REQ-L".to_owned())],
            PAYLOAD.to_owned(),
        )
    });
    let c = connector.clone();
    let docs = run(LevelFilter::INFO, always(), || async move {
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(static_credentials())
                .endpoint_url("http://127.0.0.1:9")
                .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(c.clone())
                }))
                .interceptor(tracing_xray::aws_sdk::XrayInterceptor::new())
                .build(),
        );
        let out = lambda
            .invoke()
            .function_name("relay")
            .send()
            .await
            .expect("the invocation succeeds");
        assert_eq!(out.payload().unwrap().as_ref(), PAYLOAD.as_bytes());
    });
    let calls = aws_nodes(&docs);
    assert_eq!(calls.len(), 1, "{docs:#?}");
    let call = &calls[0];
    assert_eq!(call["aws"]["operation"], "Invoke", "{call:#}");
    for flag in ["throttle", "error", "fault", "cause"] {
        assert!(
            call.get(flag).is_none(),
            "a successful Invoke with {flag}: {call:#}"
        );
    }
}
