//! ECS: the task metadata endpoint the agent announces in
//! `ECS_CONTAINER_METADATA_URI_V4` (else `ECS_CONTAINER_METADATA_URI`), on
//! the EC2 and Fargate launch types alike.

use serde_json::{Map, Value};

use super::{Detected, Http, Method, ORIGIN_ECS, Probe};

pub(super) const URI_V4: &str = "ECS_CONTAINER_METADATA_URI_V4";
pub(super) const URI_V3: &str = "ECS_CONTAINER_METADATA_URI";

/// The metadata endpoint, when the agent set one (plain `http://` only, as
/// the agent always does).
fn metadata_uri(probe: &Probe) -> Option<String> {
    probe
        .var(URI_V4)
        .or_else(|| probe.var(URI_V3))
        .map(|uri| uri.trim().to_owned())
        .filter(|uri| uri.starts_with("http://"))
}

/// `aws.ecs` with `container` (the host name, which ECS sets to the
/// container's), `container_id` (from the cgroup, else the metadata's
/// `DockerId`) and `container_arn`; the awslogs log group in
/// `cloudwatch_logs`; the account from the container ARN. The container is
/// on ECS whenever the endpoint is set: a failing or malformed answer only
/// leaves out what it would have given.
pub(super) fn detect(probe: &Probe, http: &Http) -> Option<Detected> {
    let uri = metadata_uri(probe)?;
    let metadata = http
        .send(Method::Get, &uri, &[])
        .and_then(super::Reply::ok)
        .and_then(|text| match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let text = |m: &Map<String, Value>, key: &str| {
        m.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };

    let mut block = Map::new();
    if let Some(host) = probe.hostname() {
        block.insert("container".into(), host.into());
    }
    let container_id = probe.container_id().or_else(|| text(&metadata, "DockerId"));
    if let Some(id) = container_id {
        block.insert("container_id".into(), id.into());
    }
    let arn = text(&metadata, "ContainerARN");
    if let Some(arn) = &arn {
        block.insert("container_arn".into(), arn.as_str().into());
    }
    // arn:<partition>:ecs:<region>:<account>:container/<id>
    let arn_parts: Vec<&str> = arn
        .as_deref()
        .map_or(Vec::new(), |a| a.split(':').collect());
    let partition = arn_parts.get(1).copied().filter(|p| !p.is_empty());
    let account_id = arn_parts
        .get(4)
        .copied()
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));

    let mut log_groups = Vec::new();
    let awslogs = text(&metadata, "LogDriver").as_deref() == Some("awslogs");
    if let (true, Some(Value::Object(options))) = (awslogs, metadata.get("LogOptions")) {
        if let Some(group) = text(options, "awslogs-group") {
            let mut entry = Map::new();
            let region = text(options, "awslogs-region");
            if let (Some(partition), Some(region), Some(account)) = (partition, region, account_id)
            {
                entry.insert(
                    "arn".into(),
                    format!("arn:{partition}:logs:{region}:{account}:log-group:{group}").into(),
                );
            }
            entry.insert("log_group".into(), group.into());
            log_groups.push(Value::Object(entry));
        }
    }
    Some(Detected {
        origin: Some(ORIGIN_ECS),
        key: "ecs",
        block,
        account_id: account_id.map(str::to_owned),
        log_groups,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::testutil::{Reply, Server, TempRoot, detectors};
    use crate::resource::{Resource, detect as detect_all};

    /// Task metadata v4 container answer (shape from the ECS documentation).
    const CONTAINER: &str = r#"{
        "DockerId": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
        "Name": "curl",
        "DockerName": "ecs-curltest-24-curl-cca48e8dcadd97805600",
        "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
        "Labels": {"com.amazonaws.ecs.cluster": "default"},
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 10, "Memory": 128},
        "Type": "NORMAL",
        "LogDriver": "awslogs",
        "LogOptions": {
            "awslogs-create-group": "true",
            "awslogs-group": "/ecs/metadata",
            "awslogs-region": "us-west-2",
            "awslogs-stream": "ecs/curl/8f03e41243824aea923aca126495f665"
        },
        "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9",
        "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.106"]}]
    }"#;

    const CGROUP_ID: &str = "4c7f8c2f6b1bd4eea4bd8a7af8e5e3bb1f2e0c3ed0b8b0b09e4b5c9a1f2d3e4f";

    fn server(status: u16, body: &'static str) -> Server {
        Server::start(move |req| match req.path.as_str() {
            "/v4/abc" | "/v3/abc" => Reply::Status(status, body.into()),
            _ => Reply::Status(404, String::new()),
        })
    }

    fn root() -> TempRoot {
        let root = TempRoot::new();
        root.write(
            "/proc/sys/kernel/hostname",
            "ip-10-0-2-106.us-west-2.compute.internal\n",
        );
        root
    }

    fn run(root: &TempRoot, env: &[(&str, &str)]) -> Resource {
        detect_all(&detectors(root, env))
    }

    fn fields(r: &Resource) -> Value {
        r.aws_json()
    }

    #[test]
    fn v4_container_metadata() {
        let server = server(200, CONTAINER);
        let root = root();
        let r = run(&root, &[(URI_V4, &format!("{}/v4/abc", server.url()))]);
        assert_eq!(r.origin(), Some(ORIGIN_ECS));
        assert_eq!(
            fields(&r),
            json!({
                "ecs": {
                    "container": "ip-10-0-2-106.us-west-2.compute.internal",
                    "container_id": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
                    "container_arn": "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9"
                },
                "account_id": "111122223333",
                "cloudwatch_logs": [{
                    "log_group": "/ecs/metadata",
                    "arn": "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/metadata"
                }]
            })
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/v4/abc")
        );
    }

    #[test]
    fn v3_when_v4_is_absent_and_hostname_from_env() {
        let server = server(200, CONTAINER);
        let root = TempRoot::new();
        let r = run(
            &root,
            &[
                (URI_V3, &format!("{}/v3/abc", server.url())),
                ("HOSTNAME", "web-1"),
            ],
        );
        assert_eq!(r.origin(), Some(ORIGIN_ECS));
        assert_eq!(r.aws_fields()["ecs"]["container"], "web-1");
        assert_eq!(server.requests()[0].path, "/v3/abc");
    }

    #[test]
    fn cgroup_id_wins_over_docker_id_and_partition_follows_the_arn() {
        const CN: &str = r#"{"DockerId":"cd189a933e5849daa93386466019ab50-2495160603","LogDriver":"awslogs",
            "LogOptions":{"awslogs-group":"app","awslogs-region":"cn-north-1"},
            "ContainerARN":"arn:aws-cn:ecs:cn-north-1:222233334444:container/x"}"#;
        let server = server(200, CN);
        let root = root();
        root.write(
            "/proc/self/cgroup",
            &format!("11:memory:/ecs/task-1/{CGROUP_ID}\n"),
        );
        let r = run(&root, &[(URI_V4, &format!("{}/v4/abc", server.url()))]);
        assert_eq!(r.aws_fields()["ecs"]["container_id"], CGROUP_ID);
        assert_eq!(
            r.aws_fields()["cloudwatch_logs"],
            json!([{"log_group": "app", "arn": "arn:aws-cn:logs:cn-north-1:222233334444:log-group:app"}])
        );
    }

    #[test]
    fn no_awslogs_driver_no_log_group() {
        const OTHER: &str = r#"{"LogDriver":"json-file","LogOptions":{"awslogs-group":"x"},
            "ContainerARN":"arn:aws:ecs:us-west-2:111122223333:container/y"}"#;
        let server = server(200, OTHER);
        let root = root();
        let r = run(&root, &[(URI_V4, &format!("{}/v4/abc", server.url()))]);
        assert_eq!(
            fields(&r),
            json!({
                "ecs": {
                    "container": "ip-10-0-2-106.us-west-2.compute.internal",
                    "container_arn": "arn:aws:ecs:us-west-2:111122223333:container/y"
                },
                "account_id": "111122223333"
            })
        );
    }

    #[test]
    fn failing_or_malformed_metadata_keeps_what_files_give() {
        for (status, body) in [
            (500, CONTAINER),
            (200, "{\"DockerId\":"),
            (200, "[]"),
            (404, ""),
        ] {
            let server = server(status, body);
            let root = root();
            root.write("/proc/self/cgroup", &format!("0::/docker/{CGROUP_ID}\n"));
            let r = run(&root, &[(URI_V4, &format!("{}/v4/abc", server.url()))]);
            assert_eq!(r.origin(), Some(ORIGIN_ECS));
            assert_eq!(
                fields(&r),
                json!({"ecs": {
                    "container": "ip-10-0-2-106.us-west-2.compute.internal",
                    "container_id": CGROUP_ID
                }}),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn unreachable_endpoint_still_means_ecs() {
        let (listener, url) = crate::resource::testutil::silent_listener();
        let root = TempRoot::new();
        let r = run(&root, &[(URI_V4, &format!("{url}/v4/abc"))]);
        drop(listener);
        assert_eq!(r.origin(), Some(ORIGIN_ECS));
        assert_eq!(fields(&r), json!({}));
    }

    #[test]
    fn absent_or_non_http_uri_is_not_ecs() {
        let root = root();
        assert_eq!(run(&root, &[]), Resource::default());
        assert_eq!(
            run(&root, &[(URI_V4, "https://169.254.170.2/v4/abc")]),
            Resource::default()
        );
        assert_eq!(run(&root, &[(URI_V4, "  ")]), Resource::default());
    }
}
