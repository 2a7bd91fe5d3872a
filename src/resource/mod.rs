//! Resource detection (SPEC §6): what the application runs on, for the
//! segment's `origin` and the resource blocks of its `aws` object.
//!
//! Detection runs once, on one named background thread started by
//! [`spawn`], with a short timeout per HTTP call and a bound on the whole.
//! The worker reads the result through a [`ResourceSlot`] without waiting:
//! segments finished before detection ends simply go out without the
//! fields. Every detector decides from environment variables and files
//! first, and makes no network call when its environment is absent.

// Until the builder and the worker use `spawn` and `Resource`; remove then.

mod beanstalk;
mod ec2;
mod ecs;
mod eks;
mod lambda;
#[cfg(test)]
mod testutil;

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::limits::MAX_STRING_CHARS;

pub(crate) use lambda::LambdaInfo;

/// `origin` of an application on an EC2 instance.
pub(crate) const ORIGIN_EC2: &str = "AWS::EC2::Instance";
/// `origin` of a container in an ECS task (EC2 and Fargate launch types).
pub(crate) const ORIGIN_ECS: &str = "AWS::ECS::Container";
/// `origin` of a container in an EKS (Kubernetes) pod.
pub(crate) const ORIGIN_EKS: &str = "AWS::EKS::Container";
/// `origin` of an Elastic Beanstalk environment.
pub(crate) const ORIGIN_BEANSTALK: &str = "AWS::ElasticBeanstalk::Environment";

/// The timeout of one HTTP call to a metadata service (connect to last
/// byte).
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// The bound on the whole detection; a call never outlives it.
pub(crate) const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_millis(1500);
/// The name of the detection thread.
pub(crate) const THREAD_NAME: &str = "tracing-xray-resource";
/// The most read from one metadata answer or one file.
const MAX_READ_BYTES: u64 = 64 * 1024;

/// The version of rustc the crate was built with (for example `1.82.0`),
/// for the segment's `service.runtime_version`; `unknown` if the build
/// script could not ask rustc.
pub(crate) fn runtime_version() -> &'static str {
    env!("TRACING_XRAY_RUSTC_VERSION")
}

/// Which resource detectors run when the layer starts.
///
/// The detectors find what the application runs on (an EC2 instance, an
/// ECS or EKS container, an Elastic Beanstalk environment, a Lambda
/// function), so that the X-Ray service map shows the node's type (the
/// segment's `origin`) and the console links to the instance, task or pod
/// (the `aws.ec2`, `aws.ecs`, `aws.eks`, `aws.elastic_beanstalk` and
/// `aws.cloudwatch_logs` blocks). Sampling rules can match on that type.
///
/// Detection runs once, on a background thread, and never delays a
/// segment: until it finishes, segments go out without these fields. Each
/// detector looks at environment variables and files first and makes no
/// network call when its environment is absent; HTTP calls to the instance
/// and task metadata services time out after 300 ms, and the whole
/// detection after 1.5 s.
///
/// All detectors are on by default; switch single ones off, or start from
/// [`Detectors::none`].
///
/// ```
/// use tracing_xray::Detectors;
///
/// // Everything but EC2 (for example, to never touch the instance metadata service).
/// let detectors = Detectors::default().with_ec2(false);
/// # drop(detectors);
///
/// // Only Elastic Beanstalk.
/// let detectors = Detectors::none().with_elastic_beanstalk(true);
/// # drop(detectors);
/// ```
#[derive(Clone, Debug)]
#[must_use = "detectors do nothing until they are given to the builder"]
pub struct Detectors {
    ec2: bool,
    ecs: bool,
    eks: bool,
    elastic_beanstalk: bool,
    lambda: bool,
    probe: Probe,
}

impl Default for Detectors {
    /// All detectors on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default();
    /// # drop(detectors);
    /// ```
    fn default() -> Self {
        Detectors {
            ec2: true,
            ecs: true,
            eks: true,
            elastic_beanstalk: true,
            lambda: true,
            probe: Probe::default(),
        }
    }
}

impl Detectors {
    /// No detector: segments carry no `origin` and no resource blocks
    /// (`aws.xray` and `service` are still written).
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::none();
    /// # drop(detectors);
    /// ```
    pub fn none() -> Self {
        Detectors {
            ec2: false,
            ecs: false,
            eks: false,
            elastic_beanstalk: false,
            lambda: false,
            probe: Probe::default(),
        }
    }

    /// EC2: when the machine looks like an EC2 instance
    /// (`/sys/hypervisor/uuid` starts with `ec2`,
    /// `/sys/devices/virtual/dmi/id/board_asset_tag` starts with `i-`,
    /// `/sys/devices/virtual/dmi/id/sys_vendor` is `Amazon EC2`, or
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` is set), reads the instance
    /// identity document from the instance metadata service (IMDSv2, falling
    /// back to IMDSv1) and writes `aws.ec2` (`instance_id`,
    /// `availability_zone`, `instance_size`, `ami_id`), `aws.account_id` and
    /// origin `AWS::EC2::Instance`. `AWS_EC2_METADATA_DISABLED=true` switches
    /// it off; `AWS_EC2_METADATA_SERVICE_ENDPOINT` (or
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`) moves the endpoint
    /// (plain `http://` only). Default on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default().with_ec2(false);
    /// # drop(detectors);
    /// ```
    pub fn with_ec2(mut self, enabled: bool) -> Self {
        self.ec2 = enabled;
        self
    }

    /// ECS: when `ECS_CONTAINER_METADATA_URI_V4` (else
    /// `ECS_CONTAINER_METADATA_URI`) is set, reads the container metadata
    /// and writes `aws.ecs` (`container` = host name, `container_id`,
    /// `container_arn`), the awslogs log group in `aws.cloudwatch_logs`, and
    /// origin `AWS::ECS::Container` (EC2 and Fargate launch types). Default
    /// on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default().with_ecs(false);
    /// # drop(detectors);
    /// ```
    pub fn with_ecs(mut self, enabled: bool) -> Self {
        self.ecs = enabled;
        self
    }

    /// EKS: when the Kubernetes service-account token file exists and
    /// `KUBERNETES_SERVICE_HOST` is set, writes `aws.eks` (`pod` = host
    /// name, `container_id` from the cgroup, `cluster_name` from
    /// `EKS_CLUSTER_NAME` when set) and origin `AWS::EKS::Container`. Makes
    /// no network call. Default on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default().with_eks(false);
    /// # drop(detectors);
    /// ```
    pub fn with_eks(mut self, enabled: bool) -> Self {
        self.eks = enabled;
        self
    }

    /// Elastic Beanstalk: reads `/var/elasticbeanstalk/xray/environment.conf`
    /// into `aws.elastic_beanstalk` (`environment_name`, `version_label`,
    /// `deployment_id`) with origin `AWS::ElasticBeanstalk::Environment`.
    /// Makes no network call. Default on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default().with_elastic_beanstalk(false);
    /// # drop(detectors);
    /// ```
    pub fn with_elastic_beanstalk(mut self, enabled: bool) -> Self {
        self.elastic_beanstalk = enabled;
        self
    }

    /// Lambda: recognises a Lambda function from `LAMBDA_TASK_ROOT`, as the
    /// layer's Lambda mode does. Lambda writes the function's segment itself,
    /// so no origin and no resource block is added, and the other detectors
    /// are skipped. Default on.
    ///
    /// ```
    /// let detectors = tracing_xray::Detectors::default().with_lambda(false);
    /// # drop(detectors);
    /// ```
    pub fn with_lambda(mut self, enabled: bool) -> Self {
        self.lambda = enabled;
        self
    }

    fn any(&self) -> bool {
        self.ec2 || self.ecs || self.eks || self.elastic_beanstalk || self.lambda
    }
}

/// Test overrides: where files are read, how the environment is looked up,
/// the EC2 endpoint and the timeouts.
#[cfg(test)]
impl Detectors {
    pub(crate) fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.probe.root = root.into();
        self
    }

    pub(crate) fn with_env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.probe.env = Env::Map(Arc::new(map));
        self
    }

    pub(crate) fn with_ec2_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.probe.ec2_endpoint = Some(endpoint.into());
        self
    }

    pub(crate) fn with_timeouts(mut self, call: Duration, total: Duration) -> Self {
        self.probe.call_timeout = call;
        self.probe.total_timeout = total;
        self
    }
}

/// Where detection looks. Tests replace the file-system root, the
/// environment and the EC2 endpoint, so they run in parallel and never
/// leave the loopback interface.
#[derive(Clone, Debug)]
struct Probe {
    root: PathBuf,
    env: Env,
    /// Used when `AWS_EC2_METADATA_SERVICE_ENDPOINT` is not set.
    ec2_endpoint: Option<String>,
    call_timeout: Duration,
    total_timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            root: PathBuf::from("/"),
            env: Env::Process,
            ec2_endpoint: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
        }
    }
}

impl Probe {
    /// An environment variable; empty or blank values count as unset.
    fn var(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.trim().is_empty())
    }

    /// `abs` (an absolute path such as `/proc/self/cgroup`) under the root.
    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn exists(&self, abs: &str) -> bool {
        self.path(abs).is_file()
    }

    /// The start of a text file (at most 64 KiB), or `None` if it cannot be
    /// read or is not UTF-8.
    fn read(&self, abs: &str) -> Option<String> {
        read_limited(&self.path(abs))
    }

    /// The host name: `HOSTNAME`, else `/proc/sys/kernel/hostname`, else
    /// `/etc/hostname` (the container's name on ECS, the pod's on EKS).
    fn hostname(&self) -> Option<String> {
        self.var("HOSTNAME")
            .or_else(|| self.read("/proc/sys/kernel/hostname"))
            .or_else(|| self.read("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    }

    /// The 64-hex-digit id of the container the process runs in, from
    /// `/proc/self/cgroup` (cgroup v1 and systemd scopes) or, for cgroup v2,
    /// from the Docker container paths in `/proc/self/mountinfo`.
    fn container_id(&self) -> Option<String> {
        let from_cgroup = self
            .read("/proc/self/cgroup")
            .and_then(|text| text.lines().find_map(container_id_in_cgroup_line));
        from_cgroup.or_else(|| {
            self.read("/proc/self/mountinfo")
                .and_then(|text| text.lines().find_map(container_id_in_mountinfo_line))
        })
    }
}

fn read_limited(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_READ_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `hierarchy:controllers:path` → the last path component when it is a
/// container id, allowing `docker-`/`cri-containerd-`/`crio-` prefixes and a
/// `.scope` suffix (systemd cgroup driver).
fn container_id_in_cgroup_line(line: &str) -> Option<String> {
    let path = line.splitn(3, ':').nth(2)?;
    let last = path.trim_end().rsplit('/').next()?;
    let last = last.strip_suffix(".scope").unwrap_or(last);
    let id = last.rsplit('-').next()?;
    is_container_id(id).then(|| id.to_owned())
}

/// A mount source such as `/var/lib/docker/containers/<id>/hostname`.
fn container_id_in_mountinfo_line(line: &str) -> Option<String> {
    line.split_whitespace().find_map(|field| {
        let mut parts = field.split('/');
        while let Some(part) = parts.next() {
            if part == "containers" {
                if let Some(id) = parts.next().filter(|id| is_container_id(id)) {
                    return Some(id.to_owned());
                }
            }
        }
        None
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How detectors read environment variables: the process environment, or a
/// fixed map (tests).
#[derive(Clone, Debug, Default)]
enum Env {
    #[default]
    Process,
    #[cfg_attr(not(test), allow(dead_code))]
    Map(Arc<HashMap<String, String>>),
}

impl Env {
    fn get(&self, key: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(key).ok(),
            Env::Map(map) => map.get(key).cloned(),
        }
    }
}

/// A small blocking HTTP client for the metadata services: plain HTTP, no
/// proxy, no redirects, every call bounded by the per-call timeout and by
/// the detection deadline.
struct Http {
    call_timeout: Duration,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Put,
}

/// A metadata service's answer (any status).
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    /// The body of a `200 OK`.
    fn ok(self) -> Option<String> {
        (self.status == 200).then_some(self.body)
    }
}

impl Http {
    fn new(call_timeout: Duration, deadline: Instant) -> Self {
        Http {
            call_timeout,
            deadline,
        }
    }

    /// Sends one request; `None` on any transport error, on timeout, or when
    /// the deadline has passed (then nothing is sent).
    fn send(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Option<Reply> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let budget = self.call_timeout.min(left);
        if budget < Duration::from_millis(1) {
            return None;
        }
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(budget))
            .user_agent(concat!("tracing-xray/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let result = match method {
            Method::Get => {
                let mut req = agent.get(url);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.call()
            }
            Method::Put => {
                let mut req = agent.put(url);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.send_empty()
            }
        };
        let mut response = result.ok()?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_READ_BYTES)
            .read_to_string()
            .ok()?;
        Some(Reply { status, body })
    }
}

/// Leaves out of `map` every string over [`MAX_STRING_CHARS`] characters
/// (SPEC §1.3), and what they leave empty: what the host names is an
/// identifier (a log group's name, an ARN), which cut would name another.
fn without_long_strings(map: &mut Map<String, Value>) {
    map.retain(|_, v| keep(v));
}

/// [`without_long_strings`] for a list.
fn without_long_items(items: &mut Vec<Value>) {
    items.retain_mut(keep);
}

/// Whether `value` stays, once what it holds is without its long strings.
fn keep(value: &mut Value) -> bool {
    match value {
        Value::String(s) => s.chars().nth(MAX_STRING_CHARS).is_none(),
        Value::Array(items) => {
            without_long_items(items);
            true
        }
        Value::Object(map) => {
            without_long_strings(map);
            !map.is_empty()
        }
        _ => true,
    }
}

/// What one detector found.
#[derive(Debug, Default)]
struct Detected {
    origin: Option<&'static str>,
    /// The `aws` key of the block (`ec2`, `ecs`, `eks`, `elastic_beanstalk`).
    key: &'static str,
    block: Map<String, Value>,
    account_id: Option<String>,
    /// `aws.cloudwatch_logs` entries: `{log_group, arn?}`.
    log_groups: Vec<Value>,
}

#[cfg(test)]
impl Resource {
    /// What the resource adds to a segment's `aws` object: its blocks and
    /// the account.
    pub(crate) fn aws_json(&self) -> Value {
        let mut aws = self.aws.clone();
        if let Some(account) = &self.account_id {
            aws.insert("account_id".into(), account.clone().into());
        }
        Value::Object(aws)
    }
}

/// What the application runs on, as it goes into the segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Resource {
    origin: Option<&'static str>,
    aws: Map<String, Value>,
    /// `aws.account_id`: kept apart from the blocks, as a span may give
    /// one too (`cloud.account.id`), and the `aws` object holds one key.
    account_id: Option<String>,
    lambda: Option<LambdaInfo>,
}

impl Resource {
    /// The segment's `origin`: the most specific resource type found
    /// (Elastic Beanstalk > EKS > ECS > EC2), `None` on Lambda or when
    /// nothing was found.
    pub(crate) fn origin(&self) -> Option<&'static str> {
        self.origin
    }

    /// The keys to merge into the segment's `aws` object: any of `ec2`,
    /// `ecs`, `eks`, `elastic_beanstalk` and `cloudwatch_logs`. Empty on
    /// Lambda and when nothing was found.
    pub(crate) fn aws_fields(&self) -> &Map<String, Value> {
        &self.aws
    }

    /// The account the host runs in (`aws.account_id`), when found.
    pub(crate) fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    /// The Lambda function the process runs in, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn lambda(&self) -> Option<&LambdaInfo> {
        self.lambda.as_ref()
    }

    fn add(&mut self, mut found: Detected) {
        // X-Ray's strings hold 250 characters (SPEC §1.3); a log group's
        // name may run to 512.
        without_long_strings(&mut found.block);
        without_long_items(&mut found.log_groups);
        found
            .account_id
            .take_if(|a| a.chars().nth(MAX_STRING_CHARS).is_some());
        // Detectors run from the most to the least specific origin.
        if self.origin.is_none() {
            self.origin = found.origin;
        }
        if !found.block.is_empty() {
            self.aws
                .insert(found.key.to_owned(), Value::Object(found.block));
        }
        if self.account_id.is_none() {
            self.account_id = found.account_id;
        }
        if !found.log_groups.is_empty() {
            if let Value::Array(groups) = self
                .aws
                .entry("cloudwatch_logs")
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                for group in found.log_groups {
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
            }
        }
    }
}

/// Runs the enabled detectors on the calling thread, within the configured
/// total timeout.
fn detect(detectors: &Detectors) -> Resource {
    let probe = &detectors.probe;
    let deadline = Instant::now() + probe.total_timeout;
    if detectors.lambda {
        if let Some(info) = lambda::detect(probe) {
            return Resource {
                lambda: Some(info),
                ..Resource::default()
            };
        }
    }
    let http = Http::new(probe.call_timeout, deadline);
    let mut resource = Resource::default();
    // Most specific first: the first origin found wins. The files-only
    // detectors go before the ones that may make HTTP calls.
    if detectors.elastic_beanstalk {
        if let Some(found) = beanstalk::detect(probe) {
            resource.add(found);
        }
    }
    if detectors.eks {
        if let Some(found) = eks::detect(probe) {
            resource.add(found);
        }
    }
    if detectors.ecs {
        if let Some(found) = ecs::detect(probe, &http) {
            resource.add(found);
        }
    }
    if detectors.ec2 {
        if let Some(found) = ec2::detect(probe, &http) {
            resource.add(found);
        }
    }
    resource
}

/// Starts resource detection on its own thread and returns the slot its
/// result lands in. Never blocks: with no detector enabled (or if the
/// thread cannot start) the slot is filled at once with an empty resource.
pub(crate) fn spawn(detectors: Detectors) -> ResourceSlot {
    let slot = ResourceSlot::default();
    if !detectors.any() {
        slot.fill(Resource::default());
        return slot;
    }
    let filler = FillOnDrop(slot.clone());
    let started = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            // Nothing this thread does (HTTP client included) is traced.
            let _suppress = crate::layer::SuppressGuard::enter();
            // Moved in after the guard, so dropped before it ends (the
            // closure's captures would drop after its locals): a detector's
            // `Drop` is not traced either.
            let (detectors, filler) = (detectors, filler);
            let resource = detect(&detectors);
            filler.0.fill(resource);
        });
    if started.is_err() {
        slot.fill(Resource::default());
    }
    slot
}

/// Fills the slot with an empty resource if the detection thread ends
/// without a result (a panic), so that waiters are released.
struct FillOnDrop(ResourceSlot);

impl Drop for FillOnDrop {
    fn drop(&mut self) {
        self.0.fill(Resource::default());
    }
}

/// A cheap, cloneable handle on the detection result.
#[derive(Clone, Default)]
pub(crate) struct ResourceSlot {
    inner: Arc<SlotInner>,
}

#[derive(Default)]
struct SlotInner {
    resource: OnceLock<Resource>,
    done: Mutex<bool>,
    filled: Condvar,
}

impl fmt::Debug for ResourceSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResourceSlot").field(&self.get()).finish()
    }
}

impl ResourceSlot {
    /// A slot already holding `resource` (for tests and for layers built
    /// without detection).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn ready(resource: Resource) -> Self {
        let slot = ResourceSlot::default();
        slot.fill(resource);
        slot
    }

    /// The result, or `None` while detection runs. Never blocks (one atomic
    /// load).
    pub(crate) fn get(&self) -> Option<&Resource> {
        self.inner.resource.get()
    }

    /// Waits up to `timeout` for the result.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn wait(&self, timeout: Duration) -> Option<&Resource> {
        if let Some(r) = self.get() {
            return Some(r);
        }
        let done = self
            .inner
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _done = self
            .inner
            .filled
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        self.get()
    }

    /// Stores the result; later calls are ignored.
    fn fill(&self, resource: Resource) {
        if self.inner.resource.set(resource).is_ok() {
            *self
                .inner
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
            self.inner.filled.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testutil::{Reply, Server, TempRoot, detectors, silent_listener};
    use super::*;

    const DOCUMENT: &str = r#"{"accountId":"123456789012","availabilityZone":"us-west-2c",
        "imageId":"ami-003634241a8fcdec0","instanceId":"i-075ad396f12bc325a","instanceType":"m5.xlarge"}"#;
    const CONTAINER: &str = r#"{"DockerId":"ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
        "LogDriver":"awslogs","LogOptions":{"awslogs-group":"/ecs/orders","awslogs-region":"us-west-2"},
        "ContainerARN":"arn:aws:ecs:us-west-2:123456789012:container/0206b271"}"#;
    const BEANSTALK: &str =
        r#"{"deployment_id":32,"version_label":"v-32","environment_name":"scorekeep"}"#;

    /// Answers as both metadata services: IMDSv2 and the ECS endpoint.
    fn metadata_server() -> Server {
        Server::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("PUT", ec2::TOKEN_PATH) => Reply::ok("tok"),
            ("GET", ec2::DOCUMENT_PATH) if req.header(ec2::TOKEN_HEADER) == Some("tok") => {
                Reply::ok(DOCUMENT)
            }
            ("GET", "/v4/task-1") => Reply::ok(CONTAINER),
            _ => Reply::Status(401, String::new()),
        })
    }

    fn everything(root: &TempRoot, server: &Server) -> Detectors {
        root.write(beanstalk::CONF_PATH, BEANSTALK);
        root.write(eks::TOKEN_PATH, "token");
        detectors(
            root,
            &[
                ("HOSTNAME", "host-1"),
                ("KUBERNETES_SERVICE_HOST", "10.100.0.1"),
                (ecs::URI_V4, &format!("{}/v4/task-1", server.url())),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url()),
            ],
        )
    }

    fn fields(r: &Resource) -> Value {
        r.aws_json()
    }

    #[test]
    fn defaults_are_pinned() {
        assert_eq!(DEFAULT_CALL_TIMEOUT, Duration::from_millis(300));
        assert_eq!(DEFAULT_TOTAL_TIMEOUT, Duration::from_millis(1500));
        assert_eq!(THREAD_NAME, "tracing-xray-resource");
        let d = Detectors::default();
        assert!(d.ec2 && d.ecs && d.eks && d.elastic_beanstalk && d.lambda);
        assert_eq!(d.probe.root, Path::new("/"));
        assert!(matches!(d.probe.env, Env::Process));
        assert_eq!(d.probe.ec2_endpoint, None);
        assert_eq!(d.probe.call_timeout, DEFAULT_CALL_TIMEOUT);
        assert_eq!(d.probe.total_timeout, DEFAULT_TOTAL_TIMEOUT);
        let n = Detectors::none();
        assert!(!(n.ec2 || n.ecs || n.eks || n.elastic_beanstalk || n.lambda));
        assert!(!n.any());
    }

    #[test]
    fn setters_switch_one_detector_each() {
        let d = Detectors::default().with_ec2(false).with_lambda(false);
        assert!(!d.ec2 && d.ecs && d.eks && d.elastic_beanstalk && !d.lambda);
        let d = Detectors::none()
            .with_ecs(true)
            .with_eks(true)
            .with_elastic_beanstalk(true);
        assert!(!d.ec2 && d.ecs && d.eks && d.elastic_beanstalk && !d.lambda);
        assert!(Detectors::none().with_lambda(true).any());
    }

    #[test]
    fn most_specific_origin_wins_and_all_blocks_are_kept() {
        let server = metadata_server();
        let root = TempRoot::new();
        let r = detect(&everything(&root, &server));
        assert_eq!(r.origin(), Some(ORIGIN_BEANSTALK));
        assert_eq!(
            fields(&r),
            json!({
                "elastic_beanstalk": {"environment_name": "scorekeep", "version_label": "v-32", "deployment_id": 32},
                "eks": {"pod": "host-1"},
                "ecs": {
                    "container": "host-1",
                    "container_id": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
                    "container_arn": "arn:aws:ecs:us-west-2:123456789012:container/0206b271"
                },
                "ec2": {
                    "instance_id": "i-075ad396f12bc325a",
                    "availability_zone": "us-west-2c",
                    "instance_size": "m5.xlarge",
                    "ami_id": "ami-003634241a8fcdec0"
                },
                "account_id": "123456789012",
                "cloudwatch_logs": [{
                    "log_group": "/ecs/orders",
                    "arn": "arn:aws:logs:us-west-2:123456789012:log-group:/ecs/orders"
                }]
            })
        );
        assert_eq!(server.requests().len(), 3);
    }

    #[test]
    fn origin_precedence_pairwise() {
        let server = metadata_server();
        let root = TempRoot::new();
        let all = everything(&root, &server);
        let only = |ec2, ecs, eks, eb| {
            let mut d = all.clone();
            (d.ec2, d.ecs, d.eks, d.elastic_beanstalk) = (ec2, ecs, eks, eb);
            detect(&d).origin()
        };
        assert_eq!(only(true, true, true, false), Some(ORIGIN_EKS));
        assert_eq!(only(true, true, false, false), Some(ORIGIN_ECS));
        assert_eq!(only(true, false, false, false), Some(ORIGIN_EC2));
        assert_eq!(only(true, false, false, true), Some(ORIGIN_BEANSTALK));
        assert_eq!(only(false, false, false, false), None);
    }

    #[test]
    fn lambda_skips_everything_else() {
        let server = metadata_server();
        let root = TempRoot::new();
        let mut d = everything(&root, &server);
        if let Env::Map(vars) = &mut d.probe.env {
            let mut vars = (**vars).clone();
            vars.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "orders".into());
            vars.insert("LAMBDA_TASK_ROOT".into(), "/var/task".into());
            d.probe.env = Env::Map(Arc::new(vars));
        }
        let r = detect(&d);
        assert_eq!(r.origin(), None);
        assert!(r.aws_fields().is_empty());
        assert_eq!(
            r.lambda().and_then(|l| l.function_name.as_deref()),
            Some("orders")
        );
        assert!(server.requests().is_empty());
        // With the Lambda detector off, the others run.
        assert_eq!(
            detect(&d.with_lambda(false)).origin(),
            Some(ORIGIN_BEANSTALK)
        );
    }

    #[test]
    fn spawn_with_no_detector_is_ready_at_once() {
        let slot = spawn(Detectors::none());
        assert_eq!(slot.get(), Some(&Resource::default()));
    }

    #[test]
    fn spawn_never_blocks_and_is_bounded_by_the_total_timeout() {
        let (_ecs, ecs_url) = silent_listener();
        let (_imds, imds_url) = silent_listener();
        let root = TempRoot::new();
        root.write(beanstalk::CONF_PATH, BEANSTALK);
        let total = Duration::from_millis(500);
        let d = detectors(
            &root,
            &[
                (ecs::URI_V4, format!("{ecs_url}/v4/x").as_str()),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url.as_str()),
            ],
        )
        .with_timeouts(Duration::from_millis(300), total);

        let started = Instant::now();
        let slot = spawn(d);
        let reader = slot.clone();
        let got = reader.get().cloned();
        let get_took = started.elapsed();
        assert_eq!(got, None, "nothing before detection ends");
        // Not waiting for detection (500 ms), with room for a loaded machine.
        assert!(get_took < Duration::from_millis(250), "{get_took:?}");

        let resource = slot.wait(Duration::from_secs(5)).expect("detection ends");
        let took = started.elapsed();
        assert!(took >= total - Duration::from_millis(20), "{took:?}");
        assert!(took < total + Duration::from_millis(600), "{took:?}");
        // What was found before the deadline is kept; ECS (endpoint set) too.
        assert_eq!(resource.origin(), Some(ORIGIN_BEANSTALK));
        assert_eq!(
            fields(resource),
            json!({"elastic_beanstalk": {"environment_name": "scorekeep", "version_label": "v-32", "deployment_id": 32}})
        );
        assert_eq!(reader.get(), Some(resource));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn spawn_runs_on_a_named_thread() {
        let (_imds, url) = silent_listener();
        let root = TempRoot::new();
        let d = detectors(
            &root,
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str())],
        )
        .with_timeouts(Duration::from_millis(400), Duration::from_millis(800));
        let slot = spawn(d);
        // `comm` holds the first 15 bytes of the thread's name, which the
        // new thread sets itself as it starts: look until it shows.
        let comm = &THREAD_NAME[..15];
        let named = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .any(|name| name.trim_end() == comm)
        };
        let mut seen = named();
        while !seen && slot.get().is_none() {
            std::thread::sleep(Duration::from_millis(5));
            seen = named();
        }
        assert!(seen);
        assert!(slot.get().is_none(), "still running while we looked");
        assert_eq!(
            slot.wait(Duration::from_secs(5)),
            Some(&Resource::default())
        );
    }

    #[test]
    fn slot_fills_once_and_releases_waiters_on_panic() {
        let slot = ResourceSlot::default();
        assert_eq!(slot.wait(Duration::from_millis(10)), None);
        drop(FillOnDrop(slot.clone()));
        assert_eq!(slot.get(), Some(&Resource::default()));
        let other = Resource {
            origin: Some(ORIGIN_EC2),
            ..Resource::default()
        };
        slot.fill(other.clone());
        assert_eq!(slot.get().unwrap().origin(), None, "first result stays");
        assert_eq!(
            ResourceSlot::ready(other).get().unwrap().origin(),
            Some(ORIGIN_EC2)
        );
        assert!(format!("{slot:?}").starts_with("ResourceSlot(Some("));
    }

    #[test]
    fn container_ids_from_cgroup_and_mountinfo() {
        const ID: &str = "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66";
        for line in [
            format!("13:name=systemd:/docker/{ID}"),
            format!("11:memory:/ecs/5a0d5ceddf6c44c1928d367a815d890f/{ID}"),
            format!("12:pids:/kubepods/besteffort/pod5e2f0a5c/{ID}"),
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("1:cpu:/kubepods.slice/kubepods-pod5e2f.slice/cri-containerd-{ID}.scope"),
            format!("5:devices:/crio-{ID}.scope"),
        ] {
            assert_eq!(
                container_id_in_cgroup_line(&line).as_deref(),
                Some(ID),
                "{line}"
            );
        }
        for line in [
            "0::/",
            "4:memory:/process_api/303e52bb481d276ab62acd1b10cbe633",
            "1:cpu:/ecs/task/cd189a933e5849daa93386466019ab50-2495160603",
            "garbage",
            "",
        ] {
            assert_eq!(container_id_in_cgroup_line(line), None, "{line}");
        }
        let mountinfo = format!(
            "620 610 259:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/root rw"
        );
        assert_eq!(
            container_id_in_mountinfo_line(&mountinfo).as_deref(),
            Some(ID)
        );
        assert_eq!(
            container_id_in_mountinfo_line("22 1 0:21 / /proc rw - proc proc rw"),
            None
        );

        let root = TempRoot::new();
        let probe = detectors(&root, &[]).probe;
        assert_eq!(probe.container_id(), None);
        root.write("/proc/self/cgroup", "0::/\n");
        root.write("/proc/self/mountinfo", &format!("{mountinfo}\n"));
        assert_eq!(probe.container_id().as_deref(), Some(ID));
        root.write(
            "/proc/self/cgroup",
            &format!("0::/\n3:cpu:/docker/{}\n", "a".repeat(64)),
        );
        assert_eq!(probe.container_id(), Some("a".repeat(64)));
    }

    #[test]
    fn hostname_sources_in_order() {
        let root = TempRoot::new();
        assert_eq!(detectors(&root, &[]).probe.hostname(), None);
        root.write("/etc/hostname", "from-etc\n");
        assert_eq!(
            detectors(&root, &[]).probe.hostname().as_deref(),
            Some("from-etc")
        );
        root.write("/proc/sys/kernel/hostname", "from-proc\n");
        assert_eq!(
            detectors(&root, &[]).probe.hostname().as_deref(),
            Some("from-proc")
        );
        let env = detectors(&root, &[("HOSTNAME", "from-env")]).probe;
        assert_eq!(env.hostname().as_deref(), Some("from-env"));
    }

    #[test]
    fn runtime_version_is_rustc_s() {
        let v = runtime_version();
        assert!(
            v == "unknown" || v.starts_with(|c: char| c.is_ascii_digit()),
            "{v}"
        );
        assert!(!v.contains(char::is_whitespace), "{v}");
    }

    /// The fields, placed in a segment the way the worker does, pass the
    /// official schema.
    #[test]
    fn segment_with_every_block_is_schema_valid() {
        let server = metadata_server();
        let root = TempRoot::new();
        root.write("/proc/self/cgroup", "0::/\n");
        let r = detect(&everything(&root, &server));
        let Value::Object(mut aws) = fields(&r) else {
            unreachable!()
        };
        aws.insert(
            "xray".into(),
            json!({"sdk": "tracing-xray", "sdk_version": env!("CARGO_PKG_VERSION")}),
        );
        let segment = json!({
            "name": "orders",
            "id": "70de5b6f19ff9a0a",
            "trace_id": "1-581cf771-a006649127e371903a2de979",
            "start_time": 1478293361.271,
            "end_time": 1478293361.449,
            "origin": r.origin(),
            "service": {"version": "1.4.2", "runtime": "rust", "runtime_version": runtime_version()},
            "aws": aws,
        });
        let schema: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/schema/segment-schema.json"
        ))
        .unwrap();
        if let Err(err) = jsonschema::validate(&schema, &segment) {
            panic!("{err}\n{segment:#}");
        }
    }

    /// The layer end to end, with `detectors`: runs `spans` under it (once
    /// detection finished, if `wait`), flushes, and returns what it exported
    /// and whether detection had finished by then.
    fn traced(
        detectors: Detectors,
        wait: bool,
        spans: impl FnOnce(),
    ) -> (crate::export::InMemoryExporter, bool) {
        use tracing_subscriber::prelude::*;
        let exporter = crate::export::InMemoryExporter::new();
        let layer = crate::builder()
            .with_service_name("svc")
            .with_sampler(crate::sampling::AlwaysSample)
            .with_detectors(detectors)
            .with_exporter(exporter.clone())
            .build();
        let slot = layer.inner.as_ref().unwrap().cfg.resource.clone();
        if wait {
            assert!(slot.wait(Duration::from_secs(5)).is_some());
        }
        let xray = layer.handle();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), spans);
        xray.flush(Duration::from_secs(5)).unwrap();
        (exporter, slot.get().is_some())
    }

    /// [`traced`] with one span: segments carry what the detector found once
    /// it finished, and go out without it (never delayed) before. Returns
    /// the first document and whether detection had finished when it arrived.
    fn traced_segment(detectors: Detectors, wait: bool) -> (Value, bool) {
        let (exporter, finished) = traced(detectors, wait, || {
            tracing::info_span!("request").in_scope(|| {});
        });
        (exporter.json_documents().remove(0), finished)
    }

    #[test]
    fn a_span_account_id_and_the_detected_one_make_one_key() {
        let server = metadata_server();
        let root = TempRoot::new();
        let d = detectors(
            &root,
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url())],
        );
        let (exporter, _) = traced(d, true, || {
            tracing::info_span!("request", "cloud.account.id" = "111122223333").in_scope(|| {});
            tracing::info_span!("request").in_scope(|| {});
        });
        let docs = exporter.documents();
        for doc in &docs {
            assert_eq!(doc.as_str().matches("\"account_id\"").count(), 1, "{doc:?}");
        }
        let docs = exporter.json_documents();
        // The span's own wins; without one, the host's.
        assert_eq!(docs[0]["aws"]["account_id"], "111122223333");
        assert_eq!(docs[1]["aws"]["account_id"], "123456789012");
        assert_eq!(docs[0]["aws"]["ec2"]["instance_id"], "i-075ad396f12bc325a");
    }

    #[test]
    fn segments_carry_the_detected_resource() {
        let server = metadata_server();
        let root = TempRoot::new();
        let d = detectors(
            &root,
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url())],
        );
        let (doc, _) = traced_segment(d, true);
        assert_eq!(doc["origin"], "AWS::EC2::Instance");
        assert_eq!(doc["aws"]["account_id"], "123456789012");
        assert_eq!(doc["aws"]["ec2"]["instance_id"], "i-075ad396f12bc325a");
        assert_eq!(doc["aws"]["ec2"]["instance_size"], "m5.xlarge");
        assert_eq!(doc["aws"]["xray"]["sdk"], "tracing-xray");
        assert_eq!(doc["service"]["runtime"], "rust");
        assert_eq!(doc["service"]["runtime_version"], runtime_version());
        let schema: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/schema/segment-schema.json"
        ))
        .unwrap();
        let validator = jsonschema::draft4::new(&schema).unwrap();
        assert!(validator.is_valid(&doc), "{doc}");
    }

    #[test]
    fn a_hanging_detector_never_delays_a_segment() {
        // A metadata service that never answers, and timeouts far longer than
        // the test: the segment must leave while detection still waits.
        let (_listener, url) = silent_listener();
        let root = TempRoot::new();
        let d = detectors(&root, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)])
            .with_timeouts(Duration::from_secs(30), Duration::from_secs(60));
        let (doc, detection_finished) = traced_segment(d, false);
        assert!(
            !detection_finished,
            "the segment went out before detection ended"
        );
        assert!(doc.get("origin").is_none());
        assert!(doc["aws"].get("ec2").is_none());
        assert_eq!(doc["aws"]["xray"]["sdk"], "tracing-xray");
    }
}
