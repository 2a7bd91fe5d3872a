//! [`XrayInterceptor`]: what the AWS SDK for Rust's own spans do not say
//! (feature `aws-sdk`).
//!
//! Without it, the SDK's per-operation spans (`DynamoDB.GetItem` with
//! `rpc.system = "aws-api"`) already become one `aws` subsegment per call,
//! named after the service, with `aws.operation` and the retry count. Those
//! spans are at DEBUG level: enable them for the SDK's crates, for example
//! `EnvFilter::new("info,aws_smithy_runtime=debug,aws_sdk_dynamodb=debug")`
//! (folded internals cost nothing in the document, but they are spans).
//!
//! The interceptor adds, per call, an INFO-level span (target
//! `tracing_xray::aws_sdk`) that is merged into that subsegment (or becomes
//! it, when the SDK's DEBUG spans are filtered out), carrying:
//! - `aws.request_id` (`x-amzn-RequestId` / `x-amz-request-id`) of the
//!   last attempt's response, and S3's extended request id (`x-amz-id-2`)
//!   as `id_2`,
//! - the resources the call names, as the official SDKs record them:
//!   DynamoDB's `aws.table_name` (`aws.table_names` for a batch operation
//!   over several tables), SQS's `aws.queue_url`, SNS's `aws.topic_arn`,
//!   S3's `aws.bucket_name`, and Lambda's `aws.function_name` and
//!   `aws.invocation_type`,
//! - `aws.region` (from the request's SigV4 credential scope, else the
//!   client's configured region),
//! - `http.response.status` and `content_length` of the last attempt
//!   (none when it got no response) and `aws.retries` (the attempts made,
//!   less one),
//! - a Lambda function's failure, `aws.function_error` (`Unhandled`,
//!   `Handled`: the response's `X-Amz-Function-Error`, which comes with a
//!   200), as the official SDKs record it,
//! - the other request and response parameters the official SDKs record
//!   (their whitelists), under their names in the `aws` block: DynamoDB's
//!   (`consistent_read`, `consumed_capacity`, `count`, ...), SQS's
//!   (`message_id`, `message_count`, ..., `GetQueueUrl`'s answer as the
//!   call's `queue_url`), Lambda's (`log_type`, `qualifier`,
//!   `status_code`) and S3's (`key`, `version_id`, `prefix`, `copy_source`;
//!   the bucket, recorded as the span field `aws.s3.bucket`, is read from
//!   the URL of an AWS endpoint, or from what the URL adds to a configured
//!   `endpoint_url` (LocalStack, MinIO, a custom domain, PrivateLink), and
//!   never from the host of an access point, an Outpost or Object Lambda:
//!   through a configured endpoint in the virtual-hosted style, a bucket
//!   named as theirs, `{name}-{12 digits}`, is not named either), in one
//!   field, `xray.aws.parameters`,
//! - the last attempt's error flags: 4xx → `error`, throttling →
//!   `throttle`, 5xx or no response → `fault`, and the call's error as an
//!   exception: a service's as one `remote` exception of its code and
//!   message (as the official SDKs record it: an XML body's text
//!   unescaped; S3's error in a `200` too; a `HEAD`'s, without a body, of
//!   its status's reason, `NotFound`), any other with the SDK error's
//!   `source()` chain,
//! - the outgoing `X-Amzn-Trace-Id` header, whose `Parent` is that
//!   subsegment, so that traced services (Lambda, SQS, SNS, ...) join the
//!   trace.
//!
//! A presign (S3's `presigned()`) calls nothing: it has no subsegment, and
//! the request it makes, sent later by someone else, gets no trace header.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use tracing::field::Empty;

use crate::aws_parameters::PARAMETERS_FIELD;
use crate::header::{HEADER_NAME, TraceHeader};

mod parameters;

use parameters::Picked;

/// An AWS SDK interceptor that completes each call's `aws` subsegment and
/// propagates the trace downstream.
///
/// Register it on a client's config:
///
/// ```
/// use tracing_xray::aws_sdk::XrayInterceptor;
///
/// # fn config<B>(builder: B) -> B { builder }
/// // let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
/// //     .interceptor(XrayInterceptor::new())
/// //     .build();
/// let interceptor = XrayInterceptor::new().with_trace_header(true);
/// # drop(interceptor);
/// ```
#[derive(Debug, Clone)]
pub struct XrayInterceptor {
    trace_header: bool,
}

impl Default for XrayInterceptor {
    fn default() -> Self {
        XrayInterceptor { trace_header: true }
    }
}

impl XrayInterceptor {
    /// An interceptor that also sends the `X-Amzn-Trace-Id` header.
    ///
    /// ```
    /// let interceptor = tracing_xray::aws_sdk::XrayInterceptor::new();
    /// # drop(interceptor);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to add the `X-Amzn-Trace-Id` header to each request (default
    /// `true`). A header already present is kept when it belongs to another
    /// trace; one of the call's own trace (in AWS Lambda, the SDK's recursion
    /// detection copies the invocation's header, whose `Parent` is the
    /// function's segment) is replaced by the call's, keeping its extra keys
    /// such as `Lineage`.
    ///
    /// ```
    /// let interceptor = tracing_xray::aws_sdk::XrayInterceptor::new().with_trace_header(false);
    /// # drop(interceptor);
    /// ```
    #[must_use]
    pub fn with_trace_header(mut self, yes: bool) -> Self {
        self.trace_header = yes;
        self
    }
}

/// The call's span, kept in the operation's config bag from the first hook
/// to the last.
#[derive(Debug, Clone)]
struct CallSpan(Arc<Call>);

/// A call in flight: its span, and whether its last hook ran. Dropped
/// before that (the operation's future dropped: a timeout, a `select!`),
/// the call is a fault whose exception says it was cancelled, as the tower
/// client layer records a dropped call.
#[derive(Debug)]
struct Call {
    span: tracing::Span,
    finished: AtomicBool,
    /// Whether the region the request was signed for was recorded.
    region: AtomicBool,
    /// What a call dropped before its end records: the attempts made, and
    /// the last one's response, if it had one and no attempt started since.
    last: Mutex<Last>,
}

/// See [`Call::last`].
#[derive(Debug, Default)]
struct Last {
    attempts: Option<u32>,
    answered: Option<Answered>,
}

/// An attempt's response: its status, request id and whether it throttled.
#[derive(Debug)]
struct Answered {
    status: u16,
    request_id: Option<String>,
    throttled: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Relaxed) {
            let last = std::mem::take(self.last.get_mut().unwrap_or_else(|e| e.into_inner()));
            if let Some(attempts) = last.attempts {
                self.span.record("aws.retries", attempts.saturating_sub(1));
            }
            if let Some(answered) = last.answered {
                self.span
                    .record("http.response.status_code", answered.status);
                if let Some(id) = &answered.request_id {
                    self.span.record("aws.request_id", id.as_str());
                }
                self.span.record("xray.throttle", answered.throttled);
            }
            self.span.record("xray.fault", true);
            self.span.record(
                "otel.status_message",
                "cancelled: the call was dropped before its response arrived",
            );
        }
    }
}

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

fn call_span(cfg: &ConfigBag) -> Option<&tracing::Span> {
    cfg.load::<CallSpan>().map(|c| &c.0.span)
}

/// Error codes the official SDKs count as throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The region of a SigV4 `Authorization` header's credential scope
/// (`AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request`).
/// `None` for SigV4a (`AWS4-ECDSA-P256-SHA256`), whose scope has no region
/// (`AKID/20240101/dynamodb/aws4_request`; the regions are in
/// `X-Amz-Region-Set`), and for any other scheme.
fn region_of_authorization(auth: &str) -> Option<&str> {
    let params = auth.trim_start().strip_prefix("AWS4-HMAC-SHA256 ")?;
    let scope = params.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    parts.next()?; // access key id
    parts.next()?; // date
    parts.next().filter(|r| !r.is_empty())
}

/// A service's error: its code and message.
#[derive(Debug, Clone)]
struct ServiceError {
    code: String,
    message: Option<String>,
}

/// What the last attempt got back, in the operation's config bag, replaced
/// after each attempt and recorded when the call ends. The call's status,
/// throttle, request id and service error are its last attempt's: recorded
/// as each attempt ends, an earlier attempt's would outlive a last one that
/// got no response, or one without a request id (a span's field can be
/// overwritten, never unset), and a call that failed for want of a response
/// would show as throttled, with another attempt's status and request id.
#[derive(Debug, Clone, Default)]
struct LastAttempt {
    /// The attempt's number, 1 for the first (the SDK's
    /// [`RequestAttempts`] as it ended). The SDK counts an attempt before
    /// its backoff: when the operation timeout strikes in the backoff, its
    /// count is one more than the attempts made.
    number: Option<u32>,
    /// The response's status; `None`: no response (the connection failed
    /// or closed, the attempt timed out).
    status: Option<u16>,
    /// The response's request id (`x-amzn-RequestId` / `x-amz-request-id`).
    request_id: Option<String>,
    /// S3's extended request id (`x-amz-id-2`), which AWS support asks for
    /// with the request id: the official SDKs record it as `aws.id_2`.
    id_2: Option<String>,
    /// A 429 or a throttling error code.
    throttled: bool,
    /// The error of an error response.
    error: Option<ServiceError>,
    /// The response body's length (`Content-Length`).
    content_length: Option<u64>,
    /// A Lambda function's failure (`X-Amz-Function-Error`: `Unhandled`,
    /// `Handled`), which comes with a 200.
    function_error: Option<String>,
    /// The parameters of a 2xx response (see [`crate::aws_parameters`]),
    /// recorded if the call succeeded: the SDK may yet fail to read it.
    parameters: Picked,
    /// The queue's URL `GetQueueUrl` answered with (as `parameters`).
    queue_url: Option<String>,
}

/// The parameters of the call's request (see [`crate::aws_parameters`]),
/// read as it was serialized.
#[derive(Debug, Clone, Default)]
struct RequestParameters(Picked);

impl Storable for RequestParameters {
    type Storer = StoreReplace<Self>;
}

impl Storable for LastAttempt {
    type Storer = StoreReplace<Self>;
}

/// The error of an AWS error response: the code from the `x-amzn-ErrorType`
/// header (`Code:uri`), else the body's `__type`/`code` (JSON protocols;
/// DynamoDB writes `com.amazonaws.dynamodb.v20120810#Code`) or `<Code>` (XML
/// protocols), else, for a failure without a body (a response to a
/// `HEAD`), its status's reason (`NotFound`, as the S3 SDK names a
/// `HeadObject`'s 404); the message from the body's `message` or
/// `<Message>`.
fn service_error(status: u16, header: Option<&str>, body: Option<&[u8]>) -> Option<ServiceError> {
    let clean = |c: &str| {
        let c = c.split(':').next().unwrap_or(c);
        c.rsplit('#').next().unwrap_or(c).trim().to_owned()
    };
    let body = body.unwrap_or_default();
    let (code, message) = if body.trim_ascii_start().starts_with(b"{") {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| json.get(k)?.as_str().map(str::to_owned))
        };
        (
            text(&["__type", "code", "Code"]),
            text(&["message", "Message", "errorMessage"]),
        )
    } else {
        let text = std::str::from_utf8(body).unwrap_or_default();
        let tag = |name: &str| {
            let (_, rest) = text.split_once(&format!("<{name}>"))?;
            rest.split_once(&format!("</{name}>"))
                .map(|(v, _)| xml_text(v))
        };
        (tag("Code"), tag("Message"))
    };
    let reason = || {
        let reason = http::StatusCode::from_u16(status)
            .ok()?
            .canonical_reason()?;
        Some(reason.replace([' ', '-'], ""))
    };
    let code = match header.or(code.as_deref()).map(clean) {
        Some(code) => code,
        None if body.trim_ascii().is_empty() && status >= 400 => reason()?,
        None => return None,
    };
    (!code.is_empty()).then_some(ServiceError {
        code,
        message: message.filter(|m| !m.is_empty()),
    })
}

/// An XML element's text as it reads: its references to the predefined
/// entities (`&lt;`, `&gt;`, `&amp;`, `&quot;`, `&apos;`) and to characters
/// (`&#60;`, `&#x3C;`) replaced (XML 1.0 §4.1, §4.6). One that names no
/// character is kept as written.
fn xml_text(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let reference = rest.find(';').map(|end| (&rest[1..end], end));
        let character = reference.and_then(|(name, _)| match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let number = name.strip_prefix('#')?;
                let code = match number.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => number.parse().ok()?,
                };
                char::from_u32(code)
            }
        });
        match (character, reference) {
            (Some(c), Some((_, end))) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether an operation's 200 may carry an error: S3 may answer
/// `CopyObject`, `UploadPartCopy` and `CompleteMultipartUpload` with a 200
/// whose body is an `<Error>` (the SDK fails the call with it). Any other
/// 200's body is the call's output (a Lambda function's payload may well
/// be such a document).
fn may_fail_in_a_200(service: &str, operation: &str) -> bool {
    service.eq_ignore_ascii_case("s3")
        && matches!(
            operation,
            "CopyObject" | "UploadPartCopy" | "CompleteMultipartUpload"
        )
}

/// Whether a body is an XML error (see [`may_fail_in_a_200`]). Only the
/// start is looked at: after the XML declaration, the root element.
fn is_xml_error(body: &[u8]) -> bool {
    let mut body = body.trim_ascii_start();
    if body.starts_with(b"<?xml") {
        let Some(end) = body.windows(2).position(|w| w == b"?>") else {
            return false;
        };
        body = body[end + 2..].trim_ascii_start();
    }
    body.starts_with(b"<Error>")
}

/// Whether a request is signed in its query (SigV4's `X-Amz-Signature`):
/// a presigned request, made to be handed on and sent later by someone
/// else, not by this call.
fn is_presigned(uri: &str) -> bool {
    uri.split('#')
        .next()
        .and_then(|u| u.split_once('?'))
        .is_some_and(|(_, query)| {
            query
                .split('&')
                .any(|pair| pair.starts_with("X-Amz-Signature="))
        })
}

/// The largest DynamoDB request body read for the tables it names: the read
/// is on the application's thread, and a batch may be megabytes of items.
const MAX_RESOURCE_BODY: usize = 256 * 1024;

/// What a DynamoDB request names its tables with; the items themselves are
/// skipped, not kept.
#[derive(serde::Deserialize)]
struct DynamoDbTables {
    #[serde(rename = "TableName")]
    table_name: Option<String>,
    #[serde(rename = "RequestItems")]
    request_items: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
}

/// A DynamoDB request's tables, as the official SDKs record them: its
/// `TableName`, or the keys of a batch operation's `RequestItems`.
fn record_table_names(span: &tracing::Span, body: &[u8]) {
    let Ok(tables) = serde_json::from_slice::<DynamoDbTables>(body) else {
        return;
    };
    if let Some(name) = &tables.table_name {
        span.record("aws.table_name", name.as_str());
    } else if let Some(items) = &tables.request_items {
        let names: Vec<&str> = items.keys().map(String::as_str).collect();
        span.record("aws.dynamodb.table_names", names.join(",").as_str());
    }
}

/// How far into a request body SQS's queue or SNS's topic is looked for:
/// the SDKs write it first, and a message may make the body as large as
/// the service takes (256 KiB, more once encoded).
const MAX_RESOURCE_SCAN: usize = 64 * 1024;

/// The whole pairs of a form body's first [`MAX_RESOURCE_SCAN`] bytes.
fn form_prefix(body: &[u8]) -> &[u8] {
    if body.len() <= MAX_RESOURCE_SCAN {
        return body;
    }
    let prefix = &body[..MAX_RESOURCE_SCAN];
    prefix
        .iter()
        .rposition(|&b| b == b'&')
        .map_or(&[][..], |end| &prefix[..end])
}

/// The string value of the first `"key":` in a JSON body's first
/// [`MAX_RESOURCE_SCAN`] bytes (the value itself may go past them). A key
/// inside a string cannot match: its quotes would be escaped.
fn json_string(body: &[u8], key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    let prefix = &body[..body.len().min(MAX_RESOURCE_SCAN)];
    let at = prefix
        .windows(quoted.len())
        .position(|w| w == quoted.as_bytes())?;
    let rest = body[at + quoted.len()..].trim_ascii_start();
    let value = rest.strip_prefix(b":")?.trim_ascii_start();
    let mut values = serde_json::Deserializer::from_slice(value).into_iter::<String>();
    values.next()?.ok()
}

/// The value of `key` in a form-encoded body (`a=1&b=x%3Ay`), decoded: the
/// AWS query protocol's requests (SNS; SQS before its JSON protocol).
fn form_value(body: &[u8], key: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| crate::percent::decode(v, true))?
    })
}

/// The resources a request names, on its call's span, as the official SDKs
/// record them (their parameter whitelists): DynamoDB's tables, SQS's queue
/// URL, SNS's topic ARN, Lambda's function name and invocation type.
fn record_resources(span: &tracing::Span, service: &str, request: &HttpRequest) {
    if service.eq_ignore_ascii_case("dynamodb") {
        match request.body().bytes() {
            Some(body) if body.len() <= MAX_RESOURCE_BODY => record_table_names(span, body),
            // A large item (DynamoDB takes 400 KB): its `TableName`, when
            // the body's first key (as the SDK writes a single-table
            // request), from the start of the body only. A batch or a
            // transaction that large names none: its tables are spread
            // through it.
            Some(body) => {
                let first_key = body
                    .trim_ascii_start()
                    .strip_prefix(b"{")
                    .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"TableName\""));
                if let Some(table) = json_string(body, "TableName").filter(|_| first_key) {
                    span.record("aws.table_name", table.as_str());
                }
            }
            None => {}
        }
    } else if service.eq_ignore_ascii_case("sqs") {
        // The JSON protocol; the query protocol of older SDKs. A message
        // may take the body past any bound: the queue comes first.
        let url = request.body().bytes().and_then(|body| {
            if body.trim_ascii_start().starts_with(b"{") {
                json_string(body, "QueueUrl")
            } else {
                form_value(form_prefix(body), "QueueUrl")
            }
        });
        if let Some(url) = url {
            span.record("aws.sqs.queue_url", url.as_str());
        }
    } else if service.eq_ignore_ascii_case("sns") {
        let arn = request
            .body()
            .bytes()
            .and_then(|body| form_value(form_prefix(body), "TopicArn"));
        if let Some(arn) = arn {
            span.record("aws.sns.topic.arn", arn.as_str());
        }
    } else if service.eq_ignore_ascii_case("lambda") {
        // `/2015-03-31/functions/{FunctionName}/invocations`, and the other
        // operations on one function.
        let uri = request.uri();
        let path = uri.split(['?', '#']).next().unwrap_or_default();
        let path = path.find("://").map_or(path, |scheme| {
            let rest = &path[scheme + 3..];
            rest.find('/').map_or("", |p| &rest[p..])
        });
        let name = path
            .split_once("/functions/")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .filter(|name| !name.is_empty())
            .and_then(|name| crate::percent::decode(name, false));
        if let Some(name) = name {
            span.record("faas.invoked_name", name.as_str());
            if let Some(kind) = request.headers().get("x-amz-invocation-type") {
                span.record("aws.lambda.invocation_type", kind);
            }
        }
    }
}

/// Records a call's parameters (as one JSON object, bounded) on its span.
fn record_parameters(span: &tracing::Span, picked: &[(&'static str, serde_json::Value)]) {
    if let Some(text) = parameters::to_text(picked) {
        span.record(PARAMETERS_FIELD, text.as_str());
    }
}

/// The value of `key` in a URL's query, decoded.
fn query_value(uri: &str, key: &str) -> Option<String> {
    let query = uri.split('#').next()?.split_once('?')?.1;
    form_value(query.as_bytes(), key)
}

/// Whether the call's parameters are worth reading: its span is traced in a
/// sampled trace (an unsampled one's fields are never sent, and its bodies
/// need not be read).
fn records_parameters(span: &tracing::Span) -> bool {
    use crate::span_ext::XraySpanExt;
    !span.is_disabled()
        && span
            .xray_header()
            .is_some_and(|h| h.sampled() != crate::header::Sampled::No)
}

/// A URL's host and port (without user info) and path (without query or
/// fragment), as written.
fn authority_and_path(url: &str) -> Option<(&str, &str)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = rest
        .find(['/', '?', '#'])
        .map_or((rest, ""), |p| rest.split_at(p));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((authority, path))
}

/// An S3 request's bucket and object key, from its URL and the client's
/// configured endpoint URL (`endpoint_url`, `AWS_ENDPOINT_URL`), if any.
///
/// Of a configured endpoint (LocalStack, MinIO, a custom domain, under a
/// path or not), the SDK's URL is the endpoint's with the bucket put first
/// in its host (virtual-hosted style) or after its path (path style), then
/// the key: both read from what the request's URL adds to the endpoint's.
///
/// Of AWS's own endpoints: the host's first labels in the virtual-hosted
/// style (`bucket.s3.us-east-1.amazonaws.com/key`), else the path's first
/// segment (`s3.us-east-1.amazonaws.com/bucket/key`); without a configured
/// endpoint, also of an IP address or `localhost`, which the SDK addresses
/// in the path style. Of another host: `None`, rather than a wrong bucket.
fn s3_location(uri: &str, endpoint: Option<&str>) -> Option<(String, Option<String>)> {
    if let Some(endpoint) = endpoint {
        return s3_location_at(uri, endpoint);
    }
    let (host, path) = authority_and_path(uri)?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let lower = host.to_ascii_lowercase();
    let aws = [".amazonaws.com", ".amazonaws.com.cn"]
        .iter()
        .any(|d| lower.ends_with(d));
    // An access point's (FIPS, dual-stack and Multi-Region ones too), an
    // Outpost's or an Object Lambda's host names no bucket (the call's is an
    // ARN), a PrivateLink endpoint's may name the endpoint before it.
    if aws
        && ([
            ".s3-accesspoint",
            ".s3-outposts",
            ".s3-object-lambda",
            ".s3-global",
            ".mrap.",
        ]
        .iter()
        .any(|m| lower.contains(m))
            || lower.ends_with(".vpce.amazonaws.com")
            || lower.ends_with(".vpce.amazonaws.com.cn"))
    {
        return None;
    }
    let in_host = if aws {
        [".s3.", ".s3-", ".s3express-"]
            .iter()
            .filter_map(|m| lower.find(m))
            .min()
            .map(|at| &host[..at])
    } else {
        lower.strip_suffix(".localhost").map(|b| &host[..b.len()])
    };
    let (bucket, key) = match in_host {
        Some(bucket) => (bucket.to_owned(), path),
        None if aws || lower == "localhost" || host.parse::<std::net::IpAddr>().is_ok() => {
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            (crate::percent::decode(bucket, false)?, key)
        }
        None => return None,
    };
    bucket_and_key(bucket, key)
}

/// [`s3_location`] of a client with a configured endpoint: `None` when the
/// request's URL is not the endpoint's with a bucket added, or when what
/// the host adds names an access point (`{name}-{account id}`, of an
/// access point's, an Outpost's or Object Lambda's ARN), not a bucket.
fn s3_location_at(uri: &str, endpoint: &str) -> Option<(String, Option<String>)> {
    let (authority, path) = authority_and_path(uri)?;
    let (base_authority, base_path) = authority_and_path(endpoint)?;
    // The endpoint's path as written, then the bucket or the key (after a
    // `/` of their own when the path ends without one).
    let rest = path.strip_prefix(base_path)?;
    let rest = match rest {
        "" => "",
        _ if base_path.ends_with('/') => rest,
        _ => rest.strip_prefix('/')?,
    };
    let (bucket, key) = if authority.eq_ignore_ascii_case(base_authority) {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (crate::percent::decode(bucket, false)?, key)
    } else {
        let at = authority.len().checked_sub(base_authority.len() + 1)?;
        let (bucket, host) = (authority.get(..at)?, authority.get(at..)?);
        let host = host.strip_prefix('.')?;
        if !host.eq_ignore_ascii_case(base_authority) || names_an_access_point(bucket) {
            return None;
        }
        (bucket.to_owned(), rest)
    };
    bucket_and_key(bucket, key)
}

/// Whether the labels the SDK put before an endpoint's host start with an
/// access point's `{name}-{12-digit account id}` (a bucket named so, in the
/// virtual-hosted style, is not told apart: no bucket, rather than a wrong
/// one).
fn names_an_access_point(labels: &str) -> bool {
    let first = labels.split('.').next().unwrap_or_default();
    first.len() > 13
        && first.is_char_boundary(first.len() - 13)
        && first[first.len() - 13..]
            .strip_prefix('-')
            .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
}

/// A bucket named and an object's key, decoded: `None` for no bucket, or a
/// name no bucket has.
fn bucket_and_key(bucket: String, key: &str) -> Option<(String, Option<String>)> {
    if bucket.is_empty() || !fits_identifier(&bucket) {
        return None;
    }
    let key = Some(key)
        .filter(|k| !k.is_empty())
        .and_then(|k| crate::percent::decode(k, false));
    Some((bucket, key))
}

/// A bucket's name (3-63 characters; an access point's alias is longer):
/// what no URL of another shape is taken for.
fn fits_identifier(name: &str) -> bool {
    name.len() <= 255 && !name.contains(['/', '?', '#'])
}

/// An S3 request's bucket, on its call's span, and the parameters the
/// official SDKs record of it: the object's key, its version, a listing's
/// prefix and a copy's source (from the URL and a header, once the endpoint
/// has made the URL whole: before, it holds neither the host nor, in the
/// path style, the bucket).
fn s3_parameters(span: &tracing::Span, request: &HttpRequest, endpoint: Option<&str>) -> Picked {
    let mut picked = Picked::new();
    let text = |v: &str| serde_json::Value::from(crate::limits::truncate_bytes(v, 1024));
    let uri = request.uri();
    if let Some((bucket, key)) = s3_location(uri, endpoint) {
        span.record("aws.s3.bucket", bucket.as_str());
        if let Some(key) = key {
            picked.push(("key", text(&key)));
        }
    }
    if let Some(version) = query_value(uri, "versionId") {
        picked.push(("version_id", text(&version)));
    }
    if let Some(prefix) = query_value(uri, "prefix") {
        picked.push(("prefix", text(&prefix)));
    }
    if let Some(source) = request.headers().get("x-amz-copy-source") {
        let source = crate::percent::decode_lossy(source, false);
        picked.push(("copy_source", text(&source)));
    }
    picked
}

/// The parameters of a request the official SDKs record
/// ([`crate::aws_parameters`]): members of a JSON body (DynamoDB, SQS),
/// Lambda's `Invoke` log type and qualifier (a header and the query); S3's
/// come later ([`s3_parameters`]).
fn request_parameters(md: &Metadata, request: &HttpRequest) -> Picked {
    let mut picked = Picked::new();
    if md.service().eq_ignore_ascii_case("lambda") {
        if md.name() == "Invoke" {
            if let Some(kind) = request.headers().get("x-amz-log-type") {
                let kind = crate::limits::truncate_bytes(kind, 256);
                picked.push(("log_type", serde_json::Value::from(kind)));
            }
            if let Some(qualifier) = query_value(request.uri(), "Qualifier") {
                picked.push(("qualifier", serde_json::Value::from(qualifier)));
            }
        }
    } else if let (Some(op), Some(body)) = (
        crate::aws_parameters::operation(md.service(), md.name()),
        request.body().bytes(),
    ) {
        parameters::pick(body, op.request, &mut picked);
    }
    picked
}

/// The parameters of a successful response the official SDKs record
/// ([`crate::aws_parameters`]), and the queue URL `GetQueueUrl` answered
/// with.
fn response_parameters(
    md: &Metadata,
    status: u16,
    body: Option<&[u8]>,
) -> (Picked, Option<String>) {
    let mut picked = Picked::new();
    let mut queue_url = None;
    if md.service().eq_ignore_ascii_case("lambda") {
        match md.name() {
            "Invoke" => picked.push(("status_code", serde_json::Value::from(status))),
            "InvokeAsync" => picked.push(("status", serde_json::Value::from(status))),
            _ => {}
        }
    } else if let Some(body) = body {
        if let Some(op) = crate::aws_parameters::operation(md.service(), md.name()) {
            parameters::pick(body, op.response, &mut picked);
        }
        if md.name() == "GetQueueUrl" && md.service().eq_ignore_ascii_case("sqs") {
            queue_url = json_string(body, "QueueUrl");
        }
    }
    (picked, queue_url)
}

impl Intercept for XrayInterceptor {
    fn name(&self) -> &'static str {
        "XrayInterceptor"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The interceptor added twice (a client's config rebuilt with
        // `to_builder()` keeps it): one span for the call.
        if cfg.load::<CallSpan>().is_some() {
            return Ok(());
        }
        let span = tracing::info_span!(
            target: "tracing_xray::aws_sdk",
            "aws_sdk_call",
            "rpc.system" = "aws-api",
            "rpc.service" = Empty,
            "rpc.method" = Empty,
            "aws.region" = Empty,
            "aws.request_id" = Empty,
            "aws.table_name" = Empty,
            "aws.dynamodb.table_names" = Empty,
            "aws.sqs.queue_url" = Empty,
            "aws.sns.topic.arn" = Empty,
            "aws.s3.bucket" = Empty,
            "faas.invoked_name" = Empty,
            "aws.lambda.invocation_type" = Empty,
            "aws.lambda.function_error" = Empty,
            "xray.aws.parameters" = Empty,
            "xray.aws.presigned" = Empty,
            "xray.aws.service_error" = Empty,
            "aws.retries" = Empty,
            "http.response.status_code" = Empty,
            "http.response.body.size" = Empty,
            "xray.throttle" = Empty,
            "error" = Empty,
            "error.type" = Empty,
            "xray.fault" = Empty,
            "otel.status_message" = Empty,
        );
        if let Some(md) = cfg.load::<Metadata>() {
            span.record("rpc.service", md.service());
            span.record("rpc.method", md.name());
        }
        cfg.interceptor_state().store_put(CallSpan(Arc::new(Call {
            span,
            finished: Default::default(),
            region: Default::default(),
            last: Default::default(),
        })));
        Ok(())
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Client-level interceptors run before the operation's metadata is
        // in the bag: record the names now.
        if let (Some(span), Some(md)) = (call_span(cfg), cfg.load::<Metadata>()) {
            span.record("rpc.service", md.service());
            span.record("rpc.method", md.name());
        }
        Ok(())
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (Some(span), Some(md)) = (call_span(cfg), cfg.load::<Metadata>()) else {
            return Ok(());
        };
        record_resources(span, md.service(), context.request());
        if !records_parameters(span) {
            return Ok(());
        }
        let request = request_parameters(md, context.request());
        // Now, for a call dropped before it ends (a timeout); again with the
        // response's when it ends.
        record_parameters(span, &request);
        cfg.interceptor_state()
            .store_put(RequestParameters(request));
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The endpoint has made the URL whole by now.
        // (Object Lambda's `WriteGetObjectResponse` names no bucket: its
        // host starts with the request's route.)
        let s3 = cfg.load::<Metadata>().is_some_and(|md| {
            md.service().eq_ignore_ascii_case("s3") && md.name() != "WriteGetObjectResponse"
        });
        let wanted = |span: &&tracing::Span| s3 && records_parameters(span);
        if let Some(picked) = call_span(cfg).filter(wanted).map(|span| {
            let endpoint = cfg.load::<aws_types::endpoint_config::EndpointUrl>();
            let picked = s3_parameters(span, context.request(), endpoint.map(|e| e.0.as_str()));
            record_parameters(span, &picked);
            picked
        }) {
            cfg.interceptor_state().store_put(RequestParameters(picked));
        }
        let Some(span) = call_span(cfg) else {
            return Ok(());
        };
        // A presigned request is not sent by this call: it carries no trace
        // header (whoever sends it later would name this trace), and the
        // call is no call (no subsegment: see `assemble::is_presign`).
        if is_presigned(context.request().uri()) {
            span.record(crate::fields::PRESIGNED_FIELD, true);
            return Ok(());
        }
        let headers = context.request_mut().headers_mut();
        // The region the request is signed for; a request not signed with
        // SigV4 (unsigned, or SigV4a's region set) has the client's.
        if let Some(region) = headers
            .get("authorization")
            .and_then(region_of_authorization)
        {
            span.record("aws.region", region);
        } else if let Some(region) = cfg.load::<aws_types::region::Region>() {
            span.record("aws.region", region.as_ref());
        }
        if let Some(call) = cfg.load::<CallSpan>() {
            call.0.region.store(true, Ordering::Relaxed);
        }
        if self.trace_header {
            if let Some(mut header) = crate::span_ext::call_header(span) {
                // A header of another trace is the caller's: kept. One of this
                // trace (in Lambda, the SDK's recursion detection copies the
                // invocation's, Parent = the function's segment) gets Parent =
                // this call, keeping its extra keys (`Lineage`).
                let present = headers.get(HEADER_NAME).map(TraceHeader::parse);
                if let Some(present) = present {
                    if present.root() != header.root() {
                        return Ok(());
                    }
                    for (key, value) in present.extras() {
                        if header.extra(key).is_none() {
                            header = header.with_extra(key, value);
                        }
                    }
                }
                headers.insert(HEADER_NAME, header.to_string());
            }
        }
        Ok(())
    }

    /// A new attempt: the last one's response is no longer the call's (a
    /// call dropped during this attempt got no response).
    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(call) = cfg.load::<CallSpan>() {
            let mut last = call.0.last.lock().unwrap_or_else(|e| e.into_inner());
            last.answered = None;
            // This attempt counts as made.
            last.attempts = cfg.load::<RequestAttempts>().map(|a| a.attempts());
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if call_span(cfg).is_none() {
            return Ok(());
        }
        let number = cfg.load::<RequestAttempts>().map(|a| a.attempts());
        // No response: nothing of an earlier attempt's may stay.
        let Some(response) = context.response() else {
            if let Some(call) = cfg.load::<CallSpan>() {
                *call.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Last {
                    attempts: number,
                    answered: None,
                };
            }
            cfg.interceptor_state().store_put(LastAttempt {
                number,
                ..LastAttempt::default()
            });
            return Ok(());
        };
        let headers = response.headers();
        let request_id = headers
            .get("x-amzn-requestid")
            .or_else(|| headers.get("x-amz-request-id"))
            .map(str::to_owned);
        let status = response.status().as_u16();
        let body = response.body().bytes();
        let error_in_200 = || {
            cfg.load::<Metadata>()
                .is_some_and(|md| may_fail_in_a_200(md.service(), md.name()))
                && body.is_some_and(is_xml_error)
        };
        let error = if status >= 300 || error_in_200() {
            service_error(status, headers.get("x-amzn-errortype"), body)
        } else {
            None
        };
        let throttled = status == 429
            || error
                .as_ref()
                .is_some_and(|e| THROTTLING_CODES.contains(&e.code.as_str()));
        // Also on the call: one dropped while it waits to retry (a
        // timeout) keeps its last response's status and id.
        if let Some(call) = cfg.load::<CallSpan>() {
            *call.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Last {
                attempts: number,
                answered: Some(Answered {
                    status,
                    request_id: request_id.clone(),
                    throttled,
                }),
            };
        }
        let content_length = headers
            .get("content-length")
            .and_then(|v| v.trim().parse().ok());
        let function_error = headers
            .get("x-amz-function-error")
            .filter(|v| !v.is_empty())
            .map(|v| crate::limits::truncate_bytes(v, 256).to_owned());
        // (The call's span is traced in a sampled trace when its request's
        // parameters were read: the same answer, without asking again.)
        let wanted = cfg.load::<RequestParameters>().is_some();
        let id_2 = headers
            .get("x-amz-id-2")
            .filter(|v| wanted && !v.is_empty())
            .map(|v| crate::limits::truncate_bytes(v, 250).to_owned());
        let (parameters, queue_url) = match cfg.load::<Metadata>() {
            Some(md) if status < 300 && wanted => {
                response_parameters(md, status, response.body().bytes())
            }
            _ => Default::default(),
        };
        cfg.interceptor_state().store_put(LastAttempt {
            number,
            status: Some(status),
            request_id,
            id_2,
            throttled,
            error,
            content_length,
            function_error,
            parameters,
            queue_url,
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<CallSpan>() else {
            return Ok(());
        };
        let span = &call.0.span;
        call.0.finished.store(true, Ordering::Relaxed);
        // A call that failed before it was serialized (a parameter the
        // SDK's own interceptors refused) or signed (no credentials) has
        // its names and the client's region all the same.
        if let Some(md) = cfg.load::<Metadata>() {
            span.record("rpc.service", md.service());
            span.record("rpc.method", md.name());
        }
        if !call.0.region.load(Ordering::Relaxed) {
            if let Some(region) = cfg.load::<aws_types::region::Region>() {
                span.record("aws.region", region.as_ref());
            }
        }
        // The last attempt's outcome is the call's; without a response, no
        // status: the error below is then a fault (as the official SDKs
        // record a call that failed without a response).
        let last = cfg.load::<LastAttempt>();
        if let Some(last) = last {
            // The attempts made (the SDK's count may include one that never
            // started), as Java's interceptor counts transmissions.
            if let Some(number) = last.number {
                span.record("aws.retries", number.saturating_sub(1));
            }
            if let Some(status) = last.status {
                span.record("http.response.status_code", status);
            }
            if let Some(id) = &last.request_id {
                span.record("aws.request_id", id.as_str());
            }
            if let Some(length) = last.content_length {
                span.record("http.response.body.size", length);
            }
            if let Some(failure) = &last.function_error {
                span.record("aws.lambda.function_error", failure.as_str());
            }
            span.record("xray.throttle", last.throttled);
        }
        // The request's parameters, and those of the last response when the
        // call succeeded (a 2xx the SDK could not read is a failure); S3's
        // extended request id whatever the outcome.
        if let Some(last) = last {
            let succeeded = matches!(context.output_or_error(), Some(Ok(_)));
            if let Some(url) = last.queue_url.as_ref().filter(|_| succeeded) {
                span.record("aws.sqs.queue_url", url.as_str());
            }
            let response = if succeeded { &last.parameters[..] } else { &[] };
            if !response.is_empty() || last.id_2.is_some() {
                // The extended request id first: the parameters' room is
                // bounded, and it is what AWS support asks for.
                let mut parameters: Picked = last
                    .id_2
                    .iter()
                    .map(|id_2| ("id_2", id_2.as_str().into()))
                    .collect();
                if let Some(request) = cfg.load::<RequestParameters>() {
                    parameters.extend(request.0.iter().cloned());
                }
                parameters.extend(response.iter().cloned());
                record_parameters(span, &parameters);
            }
        }
        if let Some(Err(err)) = context.output_or_error() {
            // A service's error: its code and message, as the official SDKs
            // record it (the SDK error's chain repeats them).
            match last
                .and_then(|l| l.error.as_ref())
                .filter(|_| err.is_operation_error())
            {
                Some(e) => {
                    span.record(crate::fields::SERVICE_ERROR_FIELD, true);
                    span.record("error.type", e.code.as_str());
                    if let Some(message) = &e.message {
                        span.record("otel.status_message", message.as_str());
                    }
                }
                None => {
                    span.record("error", err as &(dyn StdError + 'static));
                }
            }
        }
        // Close the call's span now, inside the operation's span.
        cfg.interceptor_state().unset::<CallSpan>();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-3/dynamodb/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(region_of_authorization(auth), Some("eu-west-3"));
        assert_eq!(region_of_authorization("Bearer x"), None);
        assert_eq!(region_of_authorization("Credential=AKID/2024"), None);
        assert_eq!(
            region_of_authorization("AWS4-HMAC-SHA256 Credential=AKID/2024"),
            None
        );
        // SigV4a: service where SigV4 has the region; no region at all.
        let sigv4a = "AWS4-ECDSA-P256-SHA256 Credential=AKID/20240101/dynamodb/aws4_request, \
                      SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045";
        assert_eq!(region_of_authorization(sigv4a), None);
    }

    #[test]
    fn form_values_are_decoded() {
        let body =
            b"Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At\
                     &Message=a+b%2Bc&QueueUrl=https%3A%2F%2Fsqs.us-east-1.amazonaws.com%2F1%2Fq";
        assert_eq!(
            form_value(body, "TopicArn").as_deref(),
            Some("arn:aws:sns:us-east-1:1:t")
        );
        assert_eq!(form_value(body, "Message").as_deref(), Some("a b+c"));
        assert_eq!(
            form_value(body, "QueueUrl").as_deref(),
            Some("https://sqs.us-east-1.amazonaws.com/1/q")
        );
        assert_eq!(form_value(body, "Topic"), None);
        // Past the scan: whole pairs only; a JSON key found early, its value
        // read whole.
        let mut big = b"TopicArn=arn%3Aa&Message=".to_vec();
        big.extend(std::iter::repeat_n(b'x', 2 * MAX_RESOURCE_SCAN));
        assert_eq!(
            form_value(form_prefix(&big), "TopicArn").as_deref(),
            Some("arn:a")
        );
        assert_eq!(form_value(form_prefix(&big), "Message"), None);
        let json = br#"{"QueueUrl" : "https://q\/1", "MessageBody": "{\"QueueUrl\":\"no\"}"}"#;
        assert_eq!(
            json_string(json, "QueueUrl").as_deref(),
            Some("https://q/1")
        );
        let late = br#"{"MessageBody": "{\"QueueUrl\":\"no\"}", "QueueUrl": "https://q/2"}"#;
        assert_eq!(
            json_string(late, "QueueUrl").as_deref(),
            Some("https://q/2")
        );
        assert_eq!(json_string(b"{\"QueueUrl\": 7}", "QueueUrl"), None);
        assert_eq!(form_value(b"\xff=1", "x"), None);
    }

    #[test]
    fn s3_bucket_and_key_from_the_url() {
        let at = |uri: &str| s3_location(uri, None);
        let both = |b: &str, k: Option<&str>| Some((b.to_owned(), k.map(str::to_owned)));
        assert_eq!(
            at(
                "https://photos.s3.eu-west-1.amazonaws.com/cats/tom%20%2B%20jerry.jpg?x-id=GetObject"
            ),
            both("photos", Some("cats/tom + jerry.jpg"))
        );
        assert_eq!(
            at("https://my.bucket.s3.amazonaws.com/"),
            both("my.bucket", None)
        );
        assert_eq!(
            at("https://logs.s3-accelerate.amazonaws.com/a"),
            both("logs", Some("a"))
        );
        assert_eq!(
            at("https://b--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com/k"),
            both("b--use1-az4--x-s3", Some("k"))
        );
        assert_eq!(
            at("https://s3.us-east-1.amazonaws.com/photos/a/b?list-type=2"),
            both("photos", Some("a/b"))
        );
        assert_eq!(
            at("https://s3.cn-north-1.amazonaws.com.cn/b"),
            both("b", None)
        );
        assert_eq!(
            at("http://127.0.0.1:5000/photos/k"),
            both("photos", Some("k"))
        );
        assert_eq!(at("http://[::1]:5000/photos"), both("photos", None));
        assert_eq!(
            at("http://localhost:4566/photos/k"),
            both("photos", Some("k"))
        );
        assert_eq!(
            at("http://photos.localhost:4566/k"),
            both("photos", Some("k"))
        );
        // ListBuckets: no bucket. A custom domain: the bucket may be in the
        // host or the path, so none.
        assert_eq!(at("https://s3.us-east-1.amazonaws.com/"), None);
        assert_eq!(at("https://minio.example.com/photos/k"), None);
        // No bucket of its own: an access point's host, an Outpost's; a
        // PrivateLink endpoint, which may name itself before the bucket.
        assert_eq!(
            at("https://myap-123456789012.s3-accesspoint.us-east-1.amazonaws.com/k"),
            None
        );
        assert_eq!(
            at("https://r-1.op-0123.s3-outposts.us-east-1.amazonaws.com/k"),
            None
        );
        assert_eq!(
            at("https://photos.bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com/k"),
            None
        );
        for host in [
            "myap-123456789012.s3-accesspoint-fips.us-east-1.amazonaws.com",
            "mybanner-123456789012.s3-object-lambda-fips.us-east-1.amazonaws.com",
            "mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com",
            "myap-123456789012.s3-accesspoint.dualstack.us-east-1.amazonaws.com",
        ] {
            assert_eq!(at(&format!("https://{host}/k")), None, "{host}");
        }
        assert_eq!(at("not a url"), None);
    }

    #[test]
    fn s3_bucket_and_key_from_a_configured_endpoint() {
        let at = |uri: &str, endpoint: &str| s3_location(uri, Some(endpoint));
        let both = |b: &str, k: Option<&str>| Some((b.to_owned(), k.map(str::to_owned)));
        // Path style, the endpoint under a path of its own (a reverse proxy).
        assert_eq!(
            at(
                "http://127.0.0.1:9/base/photos/k?x-id=PutObject",
                "http://127.0.0.1:9/base/"
            ),
            both("photos", Some("k"))
        );
        assert_eq!(
            at(
                "http://127.0.0.1:9/base/photos/a%2Fb/c",
                "http://127.0.0.1:9/base/"
            ),
            both("photos", Some("a/b/c"))
        );
        // Virtual-hosted style, under a path.
        assert_eq!(
            at(
                "http://photos.localhost:9/base/k",
                "http://localhost:9/base/"
            ),
            both("photos", Some("k"))
        );
        // A custom domain, either style (the URL alone could not tell).
        assert_eq!(
            at(
                "https://minio.example.com/photos/k",
                "https://minio.example.com"
            ),
            both("photos", Some("k"))
        );
        assert_eq!(
            at(
                "https://my.photos.minio.example.com/k",
                "https://MINIO.example.com"
            ),
            both("my.photos", Some("k"))
        );
        // A PrivateLink endpoint, as the user configures it.
        let vpce = "https://bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com";
        assert_eq!(
            at(
                "https://photos.bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com/k",
                vpce
            ),
            both("photos", Some("k"))
        );
        // The endpoint's path as written, `//` too.
        assert_eq!(
            at(
                "http://127.0.0.1:9/base//photos/k",
                "http://127.0.0.1:9/base//"
            ),
            both("photos", Some("k"))
        );
        assert_eq!(
            at("http://127.0.0.1:9/basephotos/k", "http://127.0.0.1:9/base"),
            None
        );
        // An access point's, an Outpost's, Object Lambda's ARN: no bucket.
        for host in [
            "myap-123456789012.minio.example.com",
            "ap-123456789012.op-01234.minio.example.com",
        ] {
            assert_eq!(
                at(&format!("https://{host}/k"), "https://minio.example.com"),
                None,
                "{host}"
            );
        }
        assert_eq!(
            at(
                "https://logs-2024.minio.example.com/k",
                "https://minio.example.com"
            ),
            both("logs-2024", Some("k"))
        );
        // ListBuckets; a URL that is not the endpoint's.
        assert_eq!(
            at("http://127.0.0.1:9/base/", "http://127.0.0.1:9/base/"),
            None
        );
        assert_eq!(
            at(
                "http://127.0.0.1:9/other/photos/k",
                "http://127.0.0.1:9/base"
            ),
            None
        );
        assert_eq!(
            at("http://127.0.0.1:9/basement/k", "http://127.0.0.1:9/base"),
            None
        );
        assert_eq!(at("http://xlocalhost:9/k", "http://localhost:9"), None);
        assert_eq!(at("http://photos.other:9/k", "http://localhost:9"), None);
        assert_eq!(at("http://photos.localhost:9/k", "not a url"), None);
    }

    #[test]
    fn service_error_from_header_or_body() {
        let code = |h, b| service_error(400, h, b).map(|e| e.code);
        let dynamo = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"m"}"#;
        let e = service_error(400, None, Some(dynamo)).unwrap();
        assert_eq!(e.code, "ProvisionedThroughputExceededException");
        assert_eq!(e.message.as_deref(), Some("m"));
        assert_eq!(
            code(Some("ThrottlingException:http://internal"), Some(b"{}")).as_deref(),
            Some("ThrottlingException")
        );
        let xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                    <Message>Rate exceeded</Message></Error></ErrorResponse>";
        let e = service_error(400, None, Some(xml)).unwrap();
        assert_eq!(e.code, "Throttling");
        assert_eq!(e.message.as_deref(), Some("Rate exceeded"));
        assert_eq!(code(None, Some(b"not json")), None);
        // No body (a response to `HEAD`): the status's reason.
        assert_eq!(code(None, None).as_deref(), Some("BadRequest"));
        assert_eq!(
            service_error(404, None, Some(b""))
                .map(|e| e.code)
                .as_deref(),
            Some("NotFound")
        );
        assert_eq!(service_error(200, None, None).map(|e| e.code), None);
        // A 304 (a conditional `GetObject`) is no service's failure.
        assert_eq!(service_error(304, None, None).map(|e| e.code), None);
    }

    #[test]
    fn xml_text_replaces_references() {
        assert_eq!(
            xml_text("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#60;&#x3E;&#x1F600;"),
            "a <b> & \"c\" 'd' <>\u{1F600}"
        );
        // Not a reference: kept as written.
        assert_eq!(xml_text("AT&T &nope; &#xZZ; &"), "AT&T &nope; &#xZZ; &");
    }

    #[test]
    fn an_error_body_and_a_presigned_request_are_recognized() {
        assert!(is_xml_error(
            b"<?xml version=\"1.0\"?>\n<Error><Code>X</Code></Error>"
        ));
        assert!(is_xml_error(b"  <Error></Error>"));
        assert!(!is_xml_error(b"<?xml version=\"1.0\"?><CopyObjectResult/>"));
        assert!(!is_xml_error(b"<?xml version=\"1.0\""));
        assert!(is_presigned(
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"
        ));
        assert!(!is_presigned("https://b.s3.amazonaws.com/k?x-id=GetObject"));
        assert!(!is_presigned(
            "https://b.s3.amazonaws.com/X-Amz-Signature=ab"
        ));
    }
}
