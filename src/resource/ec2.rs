//! EC2: the instance identity document from the instance metadata service
//! (IMDSv2, falling back to IMDSv1). The service is contacted only when
//! files or the environment say the machine is an EC2 instance.

use serde_json::{Map, Value};

use super::{Detected, Http, Method, ORIGIN_EC2, Probe};

pub(super) const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
pub(super) const DEFAULT_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
pub(super) const TOKEN_PATH: &str = "/latest/api/token";
pub(super) const DOCUMENT_PATH: &str = "/latest/dynamic/instance-identity/document";
pub(super) const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
pub(super) const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
/// The token is used at once, for one request.
const TOKEN_TTL_SECONDS: &str = "60";

const HYPERVISOR_UUID: &str = "/sys/hypervisor/uuid";
const BOARD_ASSET_TAG: &str = "/sys/devices/virtual/dmi/id/board_asset_tag";
const SYS_VENDOR: &str = "/sys/devices/virtual/dmi/id/sys_vendor";

/// `AWS_EC2_METADATA_DISABLED=true` (as in the AWS SDKs).
fn disabled(probe: &Probe) -> bool {
    probe
        .var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether the machine looks like an EC2 instance, from files and the
/// environment only: Xen instances have `/sys/hypervisor/uuid` starting
/// with `ec2`; Nitro instances have the instance id as the board asset tag
/// and `Amazon EC2` as the system vendor. An explicit
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` counts too.
pub(super) fn indicated(probe: &Probe) -> bool {
    probe.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").is_some()
        || probe.read(HYPERVISOR_UUID).is_some_and(|uuid| {
            uuid.trim()
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case("ec2"))
        })
        || probe
            .read(BOARD_ASSET_TAG)
            .is_some_and(|tag| tag.trim().starts_with("i-"))
        || probe
            .read(SYS_VENDOR)
            .is_some_and(|vendor| vendor.trim() == "Amazon EC2")
}

/// The metadata service's base URL, without a trailing slash.
fn endpoint(probe: &Probe) -> String {
    let base = probe
        .var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .or_else(|| probe.ec2_endpoint.clone())
        .unwrap_or_else(|| {
            let ipv6 = probe
                .var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6"));
            if ipv6 {
                DEFAULT_ENDPOINT_IPV6
            } else {
                DEFAULT_ENDPOINT
            }
            .to_owned()
        });
    base.trim().trim_end_matches('/').to_owned()
}

pub(super) fn detect(probe: &Probe, http: &Http) -> Option<Detected> {
    if disabled(probe) || !indicated(probe) {
        return None;
    }
    let base = endpoint(probe);
    let document_url = format!("{base}{DOCUMENT_PATH}");
    // IMDSv2: a session token first. Any failure (IMDSv1-only service,
    // timeout, error status) falls back to an IMDSv1 request.
    let token = http
        .send(
            Method::Put,
            &format!("{base}{TOKEN_PATH}"),
            &[(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS)],
        )
        .and_then(super::Reply::ok)
        .map(|t| t.trim().to_owned())
        // A token that cannot be a header value (any byte but visible
        // ASCII) would fail the request before it is sent: IMDSv1 instead.
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
    let headers: &[(&str, &str)] = match &token {
        Some(token) => &[(TOKEN_HEADER, token.as_str())],
        None => &[],
    };
    let document = http.send(Method::Get, &document_url, headers)?.ok()?;
    parse_document(&document)
}

/// The identity document → `aws.ec2` and `aws.account_id`; `None` without
/// an `instanceId`.
fn parse_document(text: &str) -> Option<Detected> {
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let field = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let instance_id = field("instanceId")?;
    let mut block = Map::new();
    block.insert("instance_id".into(), instance_id.into());
    for (from, to) in [
        ("availabilityZone", "availability_zone"),
        ("instanceType", "instance_size"),
        ("imageId", "ami_id"),
    ] {
        if let Some(v) = field(from) {
            block.insert(to.into(), v.into());
        }
    }
    Some(Detected {
        origin: Some(ORIGIN_EC2),
        key: "ec2",
        block,
        account_id: field("accountId").map(str::to_owned),
        log_groups: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::resource::testutil::{Reply, Server, TempRoot, detectors, silent_listener};
    use crate::resource::{Detectors, Resource, detect as detect_all};

    /// A real identity document (values from the AWS documentation).
    pub(crate) const DOCUMENT: &str = r#"{
        "accountId" : "123456789012",
        "architecture" : "x86_64",
        "availabilityZone" : "us-west-2c",
        "billingProducts" : null,
        "devpayProductCodes" : null,
        "marketplaceProductCodes" : null,
        "imageId" : "ami-003634241a8fcdec0",
        "instanceId" : "i-075ad396f12bc325a",
        "instanceType" : "m5.xlarge",
        "kernelId" : null,
        "pendingTime" : "2024-01-15T10:00:00Z",
        "privateIp" : "10.0.0.12",
        "ramdiskId" : null,
        "region" : "us-west-2",
        "version" : "2017-09-30"
    }"#;

    fn expected() -> Value {
        json!({
            "ec2": {
                "instance_id": "i-075ad396f12bc325a",
                "availability_zone": "us-west-2c",
                "instance_size": "m5.xlarge",
                "ami_id": "ami-003634241a8fcdec0"
            },
            "account_id": "123456789012"
        })
    }

    /// IMDSv2: the document only with the token from a PUT.
    fn imds_v2(document: &'static str) -> Server {
        Server::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("PUT", TOKEN_PATH) if req.header(TOKEN_TTL_HEADER).is_some() => {
                Reply::ok("AQAEAtoken==")
            }
            ("GET", DOCUMENT_PATH) if req.header(TOKEN_HEADER) == Some("AQAEAtoken==") => {
                Reply::ok(document)
            }
            ("GET", DOCUMENT_PATH) => Reply::Status(401, String::new()),
            _ => Reply::Status(404, String::new()),
        })
    }

    fn with_endpoint(root: &TempRoot, url: &str) -> Detectors {
        detectors(root, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)])
    }

    fn fields(r: &Resource) -> Value {
        r.aws_json()
    }

    #[test]
    fn imds_v2_token_then_identity_document() {
        let server = imds_v2(DOCUMENT);
        let root = TempRoot::new();
        let r = detect_all(&with_endpoint(&root, &server.url()));
        assert_eq!(r.origin(), Some(ORIGIN_EC2));
        assert_eq!(fields(&r), expected());
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("PUT", TOKEN_PATH)
        );
        assert_eq!(reqs[0].header(TOKEN_TTL_HEADER), Some("60"));
        assert_eq!(reqs[1].header(TOKEN_HEADER), Some("AQAEAtoken=="));
    }

    #[test]
    fn falls_back_to_imds_v1() {
        for token_reply in [403, 404, 405, 500] {
            let server = Server::start(move |req| match req.method.as_str() {
                "PUT" => Reply::Status(token_reply, "no".into()),
                _ if req.header(TOKEN_HEADER).is_none() && req.path == DOCUMENT_PATH => {
                    Reply::ok(DOCUMENT)
                }
                _ => Reply::Status(400, String::new()),
            });
            let root = TempRoot::new();
            let r = detect_all(&with_endpoint(&root, &server.url()));
            assert_eq!(r.origin(), Some(ORIGIN_EC2), "{token_reply}");
            assert_eq!(fields(&r), expected());
            assert_eq!(server.requests().len(), 2);
        }
    }

    #[test]
    fn slow_token_times_out_then_imds_v1() {
        let server = Server::start(|req| match req.method.as_str() {
            "PUT" => Reply::After(Duration::from_secs(2), 200, "late".into()),
            _ => Reply::ok(DOCUMENT),
        });
        let root = TempRoot::new();
        let started = Instant::now();
        let r = detect_all(&with_endpoint(&root, &server.url()));
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(fields(&r), expected());
        let reqs = server.requests();
        assert_eq!(reqs[1].header(TOKEN_HEADER), None);
    }

    #[test]
    fn failing_malformed_or_incomplete_answers_detect_nothing() {
        let bodies: [(u16, &str); 6] = [
            (500, DOCUMENT),
            (200, "{\"instanceId\": \"i-1\""),
            (200, "<html>captive portal</html>"),
            (200, r#"{"accountId":"123456789012","region":"us-west-2"}"#),
            (200, r#"{"instanceId":""}"#),
            (200, r#"["i-075ad396f12bc325a"]"#),
        ];
        for (status, body) in bodies {
            let server = Server::start(move |req| match req.method.as_str() {
                "PUT" => Reply::ok("t"),
                _ => Reply::Status(status, body.into()),
            });
            let root = TempRoot::new();
            let r = detect_all(&with_endpoint(&root, &server.url()));
            assert_eq!(r, Resource::default(), "{status} {body}");
        }
    }

    #[test]
    fn minimal_document_writes_what_it_has() {
        let server = imds_v2(r#"{"instanceId":"i-1"}"#);
        let root = TempRoot::new();
        let r = detect_all(&with_endpoint(&root, &server.url()));
        assert_eq!(r.origin(), Some(ORIGIN_EC2));
        assert_eq!(fields(&r), json!({"ec2": {"instance_id": "i-1"}}));
    }

    #[test]
    fn metadata_disabled_sends_nothing() {
        let server = imds_v2(DOCUMENT);
        let root = TempRoot::new();
        root.write(SYS_VENDOR, "Amazon EC2\n");
        for value in ["true", "TRUE", " True "] {
            let d = detectors(
                &root,
                &[
                    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url().as_str()),
                    ("AWS_EC2_METADATA_DISABLED", value),
                ],
            );
            assert_eq!(detect_all(&d), Resource::default());
        }
        assert!(server.requests().is_empty());
    }

    #[test]
    fn no_call_unless_files_or_env_say_ec2() {
        let server = imds_v2(DOCUMENT);
        let root = TempRoot::new();
        // Non-EC2 values in the same files.
        root.write(HYPERVISOR_UUID, "4d3c5b2a-xen-not-aws\n");
        root.write(BOARD_ASSET_TAG, "Default string\n");
        root.write(SYS_VENDOR, "QEMU\n");
        let d = detectors(&root, &[]).with_ec2_endpoint(server.url());
        assert_eq!(detect_all(&d), Resource::default());
        assert!(server.requests().is_empty());
    }

    #[test]
    fn each_file_indicates_ec2() {
        for (file, content) in [
            (HYPERVISOR_UUID, "ec2e1916-9099-7caf-fd21-012345abcdef\n"),
            (HYPERVISOR_UUID, "EC2E1916-9099-7CAF-FD21-012345ABCDEF\n"),
            (BOARD_ASSET_TAG, "i-075ad396f12bc325a\n"),
            (SYS_VENDOR, "Amazon EC2\n"),
        ] {
            let server = imds_v2(DOCUMENT);
            let root = TempRoot::new();
            root.write(file, content);
            let d = detectors(&root, &[]).with_ec2_endpoint(server.url());
            assert!(indicated(&d.probe), "{file}");
            let r = detect_all(&d);
            assert_eq!(r.origin(), Some(ORIGIN_EC2), "{file} {content}");
            assert_eq!(fields(&r), expected());
        }
    }

    #[test]
    fn endpoint_choice() {
        let root = TempRoot::new();
        let probe = |env: &[(&str, &str)]| detectors(&root, env).probe;
        assert_eq!(endpoint(&probe(&[])), "http://169.254.169.254");
        assert_eq!(
            endpoint(&probe(&[(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
                "IPv6"
            )])),
            "http://[fd00:ec2::254]"
        );
        assert_eq!(
            endpoint(&probe(&[(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://10.1.2.3:8080/"
            )])),
            "http://10.1.2.3:8080"
        );
        assert_eq!(
            endpoint(
                &detectors(&root, &[])
                    .with_ec2_endpoint("http://127.0.0.1:1/")
                    .probe
            ),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn hanging_document_times_out_per_call() {
        let server = Server::start(|req| match req.method.as_str() {
            "PUT" => Reply::ok("t"),
            _ => Reply::Hang,
        });
        let root = TempRoot::new();
        let started = Instant::now();
        assert_eq!(
            detect_all(&with_endpoint(&root, &server.url())),
            Resource::default()
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn unanswered_calls_stop_at_the_deadline() {
        let (_listener, url) = silent_listener();
        let root = TempRoot::new();
        // Per call, token and document would take 2 s together; the
        // deadline stops both at 300 ms.
        let d = with_endpoint(&root, &url)
            .with_timeouts(Duration::from_secs(1), Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(detect_all(&d), Resource::default());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    /// A `200` to the token PUT whose body cannot be a header value (a
    /// control character) falls back to IMDSv1 (SPEC §6); the document
    /// request used to fail in the HTTP client before anything was sent.
    #[test]
    fn a_token_unusable_as_a_header_falls_back_to_imds_v1() {
        const DOCUMENT: &str = r#"{"accountId":"123456789012","availabilityZone":"us-west-2c",
            "imageId":"ami-0","instanceId":"i-075ad396f12bc325a","instanceType":"m5.xlarge"}"#;
        for token in ["AQAE\u{1}token", "AQAEtoken\u{7f}", "AQ\0AE"] {
            let server = Server::start(move |req| match req.method.as_str() {
                "PUT" => Reply::ok(token),
                "GET" if req.path == DOCUMENT_PATH && req.header(TOKEN_HEADER).is_none() => {
                    Reply::ok(DOCUMENT)
                }
                _ => Reply::Status(401, String::new()),
            });
            let root = TempRoot::new();
            let d = detectors(
                &root,
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url().as_str())],
            );
            assert_eq!(detect_all(&d).origin(), Some(ORIGIN_EC2), "token {token:?}");
        }
    }
}
