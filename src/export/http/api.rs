//! One `PutTraceSegments` call: the body, the SigV4 signature, and what the
//! answer means.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::{Deserialize, Serialize};
use ureq::http;

/// The service name in the SigV4 credential scope.
pub(crate) const SIGNING_NAME: &str = "xray";
/// The API path of `PutTraceSegments`.
pub(crate) const PUT_TRACE_SEGMENTS_PATH: &str = "/TraceSegments";
/// Server messages are cut to this many characters before they are logged or
/// put into an error.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Serialize)]
struct PutTraceSegments<'a> {
    #[serde(rename = "TraceSegmentDocuments")]
    documents: Vec<&'a str>,
}

/// The JSON body of a `PutTraceSegments` call.
pub(crate) fn body<'a>(documents: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let body = PutTraceSegments {
        documents: documents.collect(),
    };
    // Serializing strings into a Vec cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A signed `POST` of `body` to `url`, ready for ureq.
pub(crate) fn signed_request(
    url: &str,
    region: &str,
    credentials: &Credentials,
    body: Vec<u8>,
    time: SystemTime,
) -> Result<http::Request<Vec<u8>>, String> {
    let mut request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| format!("cannot build the request: {e}"))?;
    sign_request(&mut request, SIGNING_NAME, region, credentials, time)?;
    Ok(request)
}

/// Signs `request` in place with SigV4 (headers `authorization`,
/// `x-amz-date`, and `x-amz-security-token` with a session token).
pub(crate) fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    service: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<(), String> {
    // The key id goes into `authorization`, the token into
    // `x-amz-security-token`: aws-sigv4 panics on a value a header cannot
    // hold (a `\r` or `\n` left by an env or secret file), so refuse first,
    // without showing the value.
    let fits = |v: &str| http::HeaderValue::from_str(v).is_ok();
    if !fits(credentials.access_key_id()) {
        return Err(
            "cannot sign the request: the access key id holds characters \
                    a header cannot carry (a line break?)"
                .into(),
        );
    }
    if !credentials.session_token().is_none_or(fits) {
        return Err(
            "cannot sign the request: the session token holds characters \
                    a header cannot carry (a line break?)"
                .into(),
        );
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers,
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// One entry of `UnprocessedTraceSegments`.
#[derive(Debug, Deserialize)]
pub(crate) struct Unprocessed {
    #[serde(rename = "Id", default)]
    pub(crate) id: Option<String>,
    #[serde(rename = "ErrorCode", default)]
    pub(crate) error_code: Option<String>,
    #[serde(rename = "Message", default)]
    pub(crate) message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PutTraceSegmentsOutput {
    /// Missing or `null`: none (as the AWS SDKs read an optional member).
    #[serde(rename = "UnprocessedTraceSegments", default)]
    unprocessed: Option<Vec<Unprocessed>>,
}

/// An error answer's JSON body: its code (`code`, else `__type`, as the AWS
/// SDKs read them: smithy-rs's generated `parse_error_body` takes
/// `code.or(typ)`) and message (`message` or `Message`). Each read on its
/// own: a member of another type, or both spellings of the message, hide
/// none of the others.
#[derive(Debug, Default)]
struct ErrorBody {
    kind: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    fn parse(body: &str) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body) else {
            return Self::default();
        };
        let text = |key: &str| map.get(key).and_then(serde_json::Value::as_str);
        Self {
            kind: text("code").or_else(|| text("__type")).map(str::to_owned),
            message: text("message")
                .or_else(|| text("Message"))
                .map(str::to_owned),
        }
    }
}

/// What an answer means for the batch.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Accepted, except the listed documents.
    Accepted(Vec<Unprocessed>),
    /// Credentials refused (wrong key or secret, expired token, missing
    /// permission): do not retry with the same credentials.
    Unauthorized(String),
    /// Throttled or a server error: retry the batch after a backoff.
    Retry(String),
    /// The request itself was refused: retrying will not help.
    Rejected(String),
}

const AUTH_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "NotAuthorized",
    "UnauthorizedOperation",
];

/// Codes worth another try, whatever the status (the AWS SDKs' throttling
/// and transient error codes).
const THROTTLE_ERRORS: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "LimitExceededException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    // Transient: the AWS SDKs retry these whatever the status.
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The error code of an `__type` value like `com.amazon.coral#ThrottlingException`.
fn short_code(kind: &str) -> &str {
    let kind = kind.rsplit('#').next().unwrap_or(kind);
    kind.split(':').next().unwrap_or(kind)
}

/// Reads a response.
pub(crate) fn classify(status: u16, error_type_header: Option<&str>, body: &str) -> Answer {
    if (200..300).contains(&status) {
        // An empty body stands for `{}`, as in the AWS SDKs; any other that
        // is no `PutTraceSegments` answer (a proxy's page) accepted nothing
        // that can be told: the SDKs fail such a call, and so does this.
        if body.trim().is_empty() {
            return Answer::Accepted(Vec::new());
        }
        return match serde_json::from_str::<PutTraceSegmentsOutput>(body) {
            Ok(out) => Answer::Accepted(out.unprocessed.unwrap_or_default()),
            Err(e) => {
                let start = crate::limits::truncate_chars(body, 100);
                Answer::Rejected(format!(
                    "HTTP {status}, but the answer is no PutTraceSegments answer ({e}): {start:?}"
                ))
            }
        };
    }
    let parsed = ErrorBody::parse(body);
    let code = error_type_header
        .or(parsed.kind.as_deref())
        .map(short_code)
        .map(str::to_owned)
        .or_else(|| xml_tag(body, "Code"));
    let message = parsed
        .message
        .or_else(|| xml_tag(body, "Message"))
        .unwrap_or_default();
    let text = match &code {
        Some(code) => format!("HTTP {status} {code}: {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    let code = code.as_deref().unwrap_or("");
    if status == 401 || status == 403 || AUTH_ERRORS.contains(&code) {
        Answer::Unauthorized(text)
    } else if status == 429 || status == 408 || status >= 500 || THROTTLE_ERRORS.contains(&code) {
        Answer::Retry(text)
    } else {
        Answer::Rejected(text)
    }
}

/// Whether an `UnprocessedTraceSegments` error code is worth another try.
pub(crate) fn is_retryable_unprocessed(code: &str) -> bool {
    let code = code.to_ascii_lowercase();
    [
        "throttl",
        "internal",
        "unavailable",
        "timeout",
        "limitexceeded",
    ]
    .iter()
    .any(|k| code.contains(k))
}

/// The text of the first `<tag>…</tag>` (some AWS front ends answer in XML).
fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_owned())
}

/// Server text made safe to log: the given secrets replaced, control
/// characters dropped, cut to a bounded length.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "** redacted **");
        }
    }
    let mut out: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn body_is_a_list_of_json_strings() {
        let body = body(["{\"a\":1}", "{\"b\":\"x\"}"].into_iter());
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"TraceSegmentDocuments":["{\"a\":1}","{\"b\":\"x\"}"]}"#
        );
    }

    #[test]
    fn request_is_signed_for_xray() {
        let creds = Credentials::new("AKIDEXAMPLE", "s3cr3t", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let req = signed_request(
            "https://xray.eu-west-1.amazonaws.com/TraceSegments",
            "eu-west-1",
            &creds,
            b"{}".to_vec(),
            time,
        )
        .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/xray/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(!auth.contains("s3cr3t"));
        assert_eq!(req.headers()["x-amz-date"], "20231114T221320Z");
        assert!(req.headers().get("x-amz-security-token").is_none());
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let creds = Credentials::new("AKID", "secret", Some("TOKEN".into()), None, "test");
        let req = signed_request(
            "https://xray.us-east-1.amazonaws.com/TraceSegments",
            "us-east-1",
            &creds,
            Vec::new(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(req.headers()["x-amz-security-token"], "TOKEN");
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("x-amz-security-token"), "{auth}");
    }

    /// The signature of a request from AWS's SigV4 test suite shape, computed
    /// independently (Python's botocore) for these exact inputs.
    #[test]
    fn signature_is_stable() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let mut req = http::Request::post("https://xray.us-east-1.amazonaws.com/TraceSegments")
            .header("content-type", "application/json")
            .body(br#"{"TraceSegmentDocuments":[]}"#.to_vec())
            .unwrap();
        sign_request(&mut req, "xray", "us-east-1", &creds, time).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert_eq!(auth, EXPECTED_AUTH);
    }

    const EXPECTED_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/xray/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=d5175a685943ede9119b586eb418d872b664db320cf50368d6712679406ecb3f";

    #[test]
    fn answers_are_classified() {
        assert!(matches!(
            classify(200, None, r#"{"UnprocessedTraceSegments":[]}"#),
            Answer::Accepted(v) if v.is_empty()
        ));
        let Answer::Accepted(v) = classify(
            200,
            None,
            r#"{"UnprocessedTraceSegments":[{"Id":"abc","ErrorCode":"InternalFailure","Message":"m"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(v[0].id.as_deref(), Some("abc"));
        assert!(matches!(
            classify(403, None, r#"{"__type":"InvalidSignatureException","message":"bad"}"#),
            Answer::Unauthorized(t) if t.contains("InvalidSignatureException") && t.contains("bad")
        ));
        assert!(matches!(
            classify(
                400,
                Some("UnrecognizedClientException:http://internal"),
                "{}"
            ),
            Answer::Unauthorized(_)
        ));
        assert!(matches!(
            classify(
                400,
                None,
                r#"{"__type":"com.amazon.coral#ThrottlingException"}"#
            ),
            Answer::Retry(_)
        ));
        // The AWS SDKs' throttling and transient codes, whatever the 4xx
        // status; the code also from the body's `code` (read before
        // `__type`, as the SDKs do). Found by the hunt of the exporters.
        for code in [
            "LimitExceededException",
            "BandwidthLimitExceeded",
            "PriorRequestNotComplete",
            "EC2ThrottledException",
            "TransactionInProgressException",
            "RequestTimeout",
            "RequestTimeoutException",
        ] {
            assert!(
                matches!(classify(400, Some(code), "{}"), Answer::Retry(_)),
                "{code}"
            );
        }
        assert!(matches!(
            classify(400, None, r#"{"code":"ThrottlingException","message":"Rate exceeded"}"#),
            Answer::Retry(t) if t.contains("Rate exceeded")
        ));
        // Both spellings of the message, or a numeric `code`, hide
        // neither `__type` nor the message.
        assert!(matches!(
            classify(
                400,
                None,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded","Message":"m"}"#
            ),
            Answer::Retry(t) if t.contains("Rate exceeded")
        ));
        assert!(matches!(
            classify(
                400,
                None,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded","code":400}"#
            ),
            Answer::Retry(t) if t.contains("Rate exceeded")
        ));
        assert!(matches!(classify(429, None, ""), Answer::Retry(_)));
        assert!(matches!(classify(503, None, "<html>"), Answer::Retry(_)));
        assert!(matches!(
            classify(400, None, r#"{"__type":"InvalidRequestException"}"#),
            Answer::Rejected(_)
        ));
        assert!(matches!(
            classify(
                403,
                None,
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error></ErrorResponse>"
            ),
            Answer::Unauthorized(t) if t.contains("SignatureDoesNotMatch")
        ));
    }

    #[test]
    fn unprocessed_codes() {
        assert!(is_retryable_unprocessed("InternalFailure"));
        assert!(is_retryable_unprocessed("ThrottledException"));
        assert!(!is_retryable_unprocessed("MissingParam"));
        assert!(!is_retryable_unprocessed("JSONFormatError"));
    }

    #[test]
    fn scrub_removes_secrets_and_bounds_length() {
        let s = scrub("token=SECRET123 and\nmore", &["SECRET123".into()]);
        assert_eq!(s, "token=** redacted ** and more");
        let long = "x".repeat(1000);
        assert!(scrub(&long, &[]).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
