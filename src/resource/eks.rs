//! EKS: a Kubernetes pod, recognised from its service-account token and the
//! variables Kubernetes sets. Files and environment only, no network.

use serde_json::{Map, Value};

use super::{Detected, ORIGIN_EKS, Probe};

pub(super) const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Where the cluster's name can be given (the Kubernetes API that knows it
/// needs TLS, which this crate does not bundle).
pub(super) const CLUSTER_NAME_VAR: &str = "EKS_CLUSTER_NAME";

/// `aws.eks` with `pod` (the host name, which Kubernetes sets to the pod's),
/// `cluster_name` (from `EKS_CLUSTER_NAME`) and `container_id` (from the
/// cgroup); with a cluster name, also the Container Insights application
/// log group, as the Java SDK writes it.
pub(super) fn detect(probe: &Probe) -> Option<Detected> {
    if !probe.exists(TOKEN_PATH) || probe.var("KUBERNETES_SERVICE_HOST").is_none() {
        return None;
    }
    let mut block = Map::new();
    if let Some(pod) = probe.hostname() {
        block.insert("pod".into(), pod.into());
    }
    let cluster = probe.var(CLUSTER_NAME_VAR).map(|c| c.trim().to_owned());
    if let Some(cluster) = &cluster {
        block.insert("cluster_name".into(), cluster.as_str().into());
    }
    if let Some(id) = probe.container_id() {
        block.insert("container_id".into(), id.into());
    }
    let log_groups = cluster
        .map(|c| {
            let mut entry = Map::new();
            entry.insert(
                "log_group".into(),
                format!("/aws/containerinsights/{c}/application").into(),
            );
            vec![Value::Object(entry)]
        })
        .unwrap_or_default();
    Some(Detected {
        origin: Some(ORIGIN_EKS),
        key: "eks",
        block,
        account_id: None,
        log_groups,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::testutil::{TempRoot, detectors};
    use crate::resource::{Resource, detect as detect_all};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pod_root() -> TempRoot {
        let root = TempRoot::new();
        root.write(TOKEN_PATH, "eyJhbGciOiJSUzI1NiJ9.e30.sig");
        root.write(
            "/proc/self/cgroup",
            &format!(
                "12:pids:/kubepods/besteffort/pod5e2f0a5c-1d2b-4c3a-9f8e-7d6c5b4a3f2e/{ID}\n11:memory:/kubepods/besteffort/pod5e2f0a5c-1d2b-4c3a-9f8e-7d6c5b4a3f2e/{ID}\n"
            ),
        );
        root
    }

    #[test]
    fn pod_with_cluster_name() {
        let root = pod_root();
        let r = detect_all(&detectors(
            &root,
            &[
                ("KUBERNETES_SERVICE_HOST", "10.100.0.1"),
                ("HOSTNAME", "orders-7d9f8b6c5d-x2k4q"),
                ("EKS_CLUSTER_NAME", "prod"),
            ],
        ));
        assert_eq!(r.origin(), Some(ORIGIN_EKS));
        assert_eq!(
            Value::Object(r.aws_fields().clone()),
            json!({
                "eks": {"pod": "orders-7d9f8b6c5d-x2k4q", "cluster_name": "prod", "container_id": ID},
                "cloudwatch_logs": [{"log_group": "/aws/containerinsights/prod/application"}]
            })
        );
    }

    #[test]
    fn pod_without_cluster_name() {
        let root = pod_root();
        root.write("/proc/sys/kernel/hostname", "orders-7d9f8b6c5d-x2k4q\n");
        let r = detect_all(&detectors(
            &root,
            &[("KUBERNETES_SERVICE_HOST", "10.100.0.1")],
        ));
        assert_eq!(r.origin(), Some(ORIGIN_EKS));
        assert_eq!(
            Value::Object(r.aws_fields().clone()),
            json!({"eks": {"pod": "orders-7d9f8b6c5d-x2k4q", "container_id": ID}})
        );
    }

    #[test]
    fn token_and_kubernetes_env_are_both_needed() {
        let root = pod_root();
        assert_eq!(detect_all(&detectors(&root, &[])), Resource::default());
        let empty = TempRoot::new();
        assert_eq!(
            detect_all(&detectors(
                &empty,
                &[("KUBERNETES_SERVICE_HOST", "10.100.0.1")]
            )),
            Resource::default()
        );
    }
}
