//! Centralized sampling (SPEC §4.3): rules and quotas from the X-Ray service,
//! fetched through the daemon's TCP proxy (§2.4) by one background thread.
//!
//! The application threads only read a snapshot of the rule set
//! (`RwLock<Option<Arc<RuleSet>>>`, held for the match, never across I/O)
//! and update per-rule atomics. The poller builds a new rule set off-lock and
//! swaps it in; same-named rules keep their state (`Arc<RuleState>`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::reservoir::Reservoir;
use super::wildcard::Pattern;
use super::{
    Clock, LocalRules, Rate, Sampler, SamplingDecision, SamplingRequest, SystemClock, epoch_seconds,
};
use crate::DaemonAddress;
use crate::layer::SuppressGuard;

/// Rules are fetched at start and then every `RULES_INTERVAL` + up to
/// `RULES_JITTER`.
const RULES_INTERVAL: Duration = Duration::from_secs(300);
const RULES_JITTER: Duration = Duration::from_secs(5);
/// Targets (statistics out, quotas in) every `TARGETS_INTERVAL` + up to
/// `TARGETS_JITTER`.
const TARGETS_INTERVAL: Duration = Duration::from_secs(10);
const TARGETS_JITTER: Duration = Duration::from_millis(100);
/// Rules not refreshed for this long are dropped in favour of the fallback.
const RULES_TTL_SECS: u64 = 3600;
/// Default per-rule reporting interval until a target sets one.
const DEFAULT_TARGET_INTERVAL_SECS: u64 = 10;
/// Default timeout of each request to the proxy.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the background thread sleeps between two looks at the schedule
/// (bounds the effect of a wall-clock jump).
const MAX_THREAD_WAIT: Duration = Duration::from_secs(1);
/// Largest response body read from the proxy.
const MAX_BODY_BYTES: u64 = 1 << 20;
const DEFAULT_RULE_NAME: &str = "Default";
const THREAD_NAME: &str = "tracing-xray-sampling";

/// Sampling by the rules defined in the X-Ray console, with the reservoir
/// quotas the X-Ray service assigns to this process.
///
/// A background thread (named `tracing-xray-sampling`) talks to the X-Ray
/// daemon's TCP proxy: it fetches the rules at start and every 5 minutes
/// (`GetSamplingRules`), and every 10 seconds reports how many requests each
/// rule matched and sampled and receives the rule's quota and rate
/// (`GetSamplingTargets`). [`Sampler::sample`] never waits for it.
///
/// A request is decided by the first matching rule in priority order (the
/// `Default` rule last): from the rule's quota while it is valid, otherwise
/// by borrowing one request a second, and then by the rule's fixed rate.
/// Until rules are loaded, when they are more than an hour old, or when no
/// rule matches, the fallback [`LocalRules`] decide (X-Ray's default rule
/// unless set). Decisions made by a centralized rule carry its name
/// ([`SamplingDecision::rule_name`]).
///
/// Dropping the sampler stops the thread; [`shutdown`](Self::shutdown)
/// stops it and waits for it.
///
/// ```no_run
/// use tracing_xray::sampling::{CentralizedSampler, Sampler, SamplingRequest};
///
/// let sampler = CentralizedSampler::builder()
///     .with_proxy_address("127.0.0.1:2000".parse().unwrap())
///     .start()?;
/// let decision = sampler.sample(&SamplingRequest::new().with_url_path("/orders"));
/// if let Some(rule) = decision.rule_name() {
///     println!("decided by rule {rule}");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct CentralizedSampler {
    shared: Arc<Shared>,
    worker: Mutex<Option<Worker>>,
}

/// Configures a [`CentralizedSampler`].
///
/// ```
/// use std::time::Duration;
/// use tracing_xray::sampling::{CentralizedSampler, LocalRules, SystemClock};
///
/// let sampler = CentralizedSampler::builder()
///     .with_proxy_address("127.0.0.1:2000".parse().unwrap())
///     .with_fallback(LocalRules::default())
///     .with_clock(SystemClock)
///     .with_request_timeout(Duration::from_secs(1))
///     .build_manual(); // no thread: call `poll_once` yourself, or use `start()`
/// # drop(sampler);
/// ```
#[must_use]
pub struct CentralizedSamplerBuilder {
    proxy: Option<SocketAddr>,
    fallback: LocalRules,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl fmt::Debug for CentralizedSamplerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CentralizedSamplerBuilder")
            .field("proxy", &self.proxy)
            .field("fallback", &self.fallback)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The defaults of [`CentralizedSampler::builder`].
///
/// ```
/// use tracing_xray::sampling::CentralizedSamplerBuilder;
///
/// let builder = CentralizedSamplerBuilder::default();
/// # drop(builder);
/// ```
impl Default for CentralizedSamplerBuilder {
    fn default() -> Self {
        CentralizedSampler::builder()
    }
}

impl CentralizedSamplerBuilder {
    /// The daemon's TCP address (its sampling proxy), unless
    /// `AWS_XRAY_DAEMON_ADDRESS` holds a valid address: its `tcp` part wins
    /// over code, as it does for [`UdpExporter::new`](crate::export::UdpExporter::new)
    /// and in every official SDK, so that rules come from the daemon the
    /// segments go to.
    ///
    /// Without either, `127.0.0.1:2000`. An invalid `AWS_XRAY_DAEMON_ADDRESS`
    /// is reported on standard error (naming the problem) and ignored.
    ///
    /// ```
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let builder = CentralizedSampler::builder()
    ///     .with_proxy_address("169.254.79.2:2000".parse().unwrap());
    /// # drop(builder);
    /// ```
    pub fn with_proxy_address(mut self, address: SocketAddr) -> Self {
        self.proxy = Some(address);
        self
    }

    /// The rules used until centralized rules are loaded, after they expire,
    /// and for requests no centralized rule matches. Default:
    /// [`LocalRules::default()`].
    ///
    /// ```
    /// use tracing_xray::sampling::{CentralizedSampler, LocalRules};
    ///
    /// let fallback = LocalRules::from_json(
    ///     r#"{"version": 2, "default": {"fixed_target": 5, "rate": 0.1}}"#,
    /// )?;
    /// let builder = CentralizedSampler::builder().with_fallback(fallback);
    /// # drop(builder);
    /// # Ok::<(), tracing_xray::sampling::SamplingRulesError>(())
    /// ```
    pub fn with_fallback(mut self, fallback: LocalRules) -> Self {
        self.fallback = fallback;
        self
    }

    /// The clock for reservoirs, quotas, rule expiry and the polling
    /// schedule. Default: [`SystemClock`](super::SystemClock).
    ///
    /// ```
    /// use tracing_xray::sampling::{CentralizedSampler, SystemClock};
    ///
    /// let builder = CentralizedSampler::builder().with_clock(SystemClock);
    /// # drop(builder);
    /// ```
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The timeout of each request to the proxy, connection included.
    /// Default: 2 seconds; at most a year (`Duration::MAX` is cut to that).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let builder = CentralizedSampler::builder().with_request_timeout(Duration::from_millis(500));
    /// # drop(builder);
    /// ```
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(crate::limits::LONGEST_HTTP_TIMEOUT);
        self
    }

    /// Builds the sampler without a background thread, for you to poll:
    /// nothing is fetched until [`CentralizedSampler::poll_once`] is called;
    /// until then the fallback rules decide. For a test clock, or your own
    /// schedule. Use [`start`](Self::start) for a sampler that polls by
    /// itself. (Not named `build`, so that a sampler that never fetches a
    /// rule cannot be had by habit.)
    ///
    /// ```
    /// use tracing_xray::sampling::{CentralizedSampler, Sampler, SamplingRequest};
    ///
    /// let sampler = CentralizedSampler::builder().build_manual();
    /// // No rules yet: the fallback (1/s + 5 %) decides, without a rule name.
    /// assert_eq!(sampler.sample(&SamplingRequest::new()).rule_name(), None);
    /// ```
    pub fn build_manual(self) -> CentralizedSampler {
        let proxy = proxy_address(self.proxy);
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            // Never route the local daemon through an HTTP(S)_PROXY.
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("tracing-xray/", env!("CARGO_PKG_VERSION")))
            .build();
        CentralizedSampler {
            shared: Arc::new(Shared {
                rules: RwLock::new(None),
                fallback: self.fallback,
                clock: self.clock,
                client_id: client_id(),
                stopping: AtomicBool::new(false),
                poller: Mutex::new(Poller {
                    agent: ureq::Agent::new_with_config(config),
                    base_url: format!("http://{proxy}"),
                    next_rules: UNIX_EPOCH,
                    next_targets: UNIX_EPOCH,
                    rules_failing: Vec::new(),
                    targets_failing: Vec::new(),
                }),
                proxy,
            }),
            worker: Mutex::new(None),
        }
    }

    /// Builds the sampler and starts its polling thread, which fetches the
    /// rules at once. Returns immediately; the fallback rules decide until
    /// the first answer arrives.
    ///
    /// In AWS Lambda (`LAMBDA_TASK_ROOT` set) nothing polls: there each
    /// invocation's trace header decides (SPEC §3.3, as in the Node SDK),
    /// and no daemon runs to answer. Nor does anything poll when the
    /// environment switches X-Ray off (`AWS_XRAY_SDK_ENABLED=false`,
    /// `AWS_XRAY_SDK_DISABLED=true`: "no pollers", SPEC §5): the layer it is
    /// given to does nothing, and its rules would never be asked for.
    ///
    /// ```no_run
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let sampler = CentralizedSampler::builder().start()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start(self) -> io::Result<CentralizedSampler> {
        let sampler = self.build_manual();
        if crate::config::lambda_by_env() || crate::config::disabled_by_env() {
            return Ok(sampler);
        }
        let (stop_tx, stop_rx) = mpsc::channel();
        let shared = Arc::clone(&sampler.shared);
        let handle = thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&shared, &stop_rx))?;
        *lock(&sampler.worker) = Some(Worker {
            _stop: stop_tx,
            handle,
        });
        Ok(sampler)
    }
}

impl CentralizedSampler {
    /// A builder with the defaults: proxy from `AWS_XRAY_DAEMON_ADDRESS` or
    /// `127.0.0.1:2000`, [`LocalRules::default()`] as fallback, the system
    /// clock, 2-second request timeout.
    ///
    /// ```
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let sampler = CentralizedSampler::builder().build_manual();
    /// # drop(sampler);
    /// ```
    pub fn builder() -> CentralizedSamplerBuilder {
        CentralizedSamplerBuilder {
            proxy: None,
            fallback: LocalRules::default(),
            clock: Arc::new(SystemClock),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// One step of the poller at the clock's current time: fetches the rules
    /// if they are due (or a refresh was requested), reports statistics and
    /// fetches targets if they are due. Returns how long until the next step
    /// is due. Failures keep the current state (and so the fallback while no
    /// rules are loaded); they never panic.
    ///
    /// The background thread of [`start`](CentralizedSamplerBuilder::start)
    /// only calls this in a loop. Call it yourself with a sampler from
    /// [`build_manual`](CentralizedSamplerBuilder::build_manual), for example to drive
    /// polling with a test clock.
    ///
    /// ```no_run
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let sampler = CentralizedSampler::builder().build_manual();
    /// let next = sampler.poll_once();
    /// assert!(next <= std::time::Duration::from_secs(306));
    /// ```
    pub fn poll_once(&self) -> Duration {
        self.shared.poll()
    }

    /// The client id reported to X-Ray: 24 lowercase hex digits, random per
    /// sampler.
    ///
    /// ```
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let id = CentralizedSampler::builder().build_manual().client_id().to_owned();
    /// assert_eq!(id.len(), 24);
    /// ```
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The proxy address in use.
    ///
    /// ```
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let address = "127.0.0.1:2999".parse().unwrap();
    /// let sampler = CentralizedSampler::builder().with_proxy_address(address).build_manual();
    /// assert_eq!(sampler.proxy_address(), address);
    /// ```
    pub fn proxy_address(&self) -> SocketAddr {
        self.shared.proxy
    }

    /// Stops the polling thread and waits for it. A request to the proxy in
    /// flight is not interrupted, so this waits at most one request timeout.
    /// Later decisions use the rules already loaded (until they expire) and
    /// then the fallback. Calling it again, or on a sampler without a
    /// thread, does nothing.
    ///
    /// ```
    /// use tracing_xray::sampling::CentralizedSampler;
    ///
    /// let sampler = CentralizedSampler::builder()
    ///     .with_proxy_address("127.0.0.1:9".parse().unwrap())
    ///     .start()?;
    /// sampler.shutdown();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let worker = lock(&self.worker).take();
        if let Some(Worker { _stop, handle }) = worker {
            drop(_stop);
            // The thread only returns (it never panics by design); a panic
            // would already have been reported by the runtime.
            let _ = handle.join();
        }
    }
}

impl Drop for CentralizedSampler {
    /// Tells the thread to stop (it exits after the request in flight, if
    /// any) without waiting for it.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Dropping the sender wakes the thread; the handle detaches.
        drop(lock(&self.worker).take());
    }
}

impl fmt::Debug for CentralizedSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = read(&self.shared.rules)
            .as_ref()
            .map(|set| set.rules.len() + usize::from(set.default.is_some()));
        f.debug_struct("CentralizedSampler")
            .field("proxy", &self.shared.proxy)
            .field("client_id", &self.shared.client_id)
            .field("rules", &rules)
            .field("running", &lock(&self.worker).is_some())
            .finish_non_exhaustive()
    }
}

impl Sampler for CentralizedSampler {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        self.shared.sample(request)
    }
}

struct Worker {
    /// Dropped to wake and stop the thread.
    _stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

fn run(shared: &Shared, stop: &mpsc::Receiver<()>) {
    loop {
        let wait = shared.poll().min(MAX_THREAD_WAIT);
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
    }
}

struct Shared {
    /// `None` until the first successful rule fetch.
    rules: RwLock<Option<Arc<RuleSet>>>,
    fallback: LocalRules,
    clock: Arc<dyn Clock>,
    client_id: String,
    proxy: SocketAddr,
    stopping: AtomicBool,
    /// Only the poller takes this lock (it is held across I/O).
    poller: Mutex<Poller>,
}

struct Poller {
    agent: ureq::Agent,
    base_url: String,
    next_rules: SystemTime,
    next_targets: SystemTime,
    /// The kinds of rules fetch failure reported since the last success
    /// ([`failure_kind`]).
    rules_failing: Vec<String>,
    /// The same for the targets.
    targets_failing: Vec<String>,
}

impl Shared {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        let now = epoch_seconds(self.clock.now());
        {
            let guard = read(&self.rules);
            if let Some(set) = guard.as_deref() {
                if !set.expired(now) {
                    if let Some(rule) = set.find(request) {
                        return rule.decide(now);
                    }
                }
            }
        }
        self.fallback.sample_at(request, now)
    }

    fn current_rules(&self) -> Option<Arc<RuleSet>> {
        read(&self.rules).clone()
    }

    fn poll(&self) -> Duration {
        // Our diagnostics and the HTTP client's are not traced by our own
        // layer, whichever thread polls.
        let _suppress = SuppressGuard::enter();
        let mut poller = lock(&self.poller);
        let now = self.clock.now();
        let mut refresh = is_due(poller.next_rules, now, RULES_INTERVAL + RULES_JITTER);
        if refresh {
            poller.next_rules = now + RULES_INTERVAL + jitter(RULES_JITTER);
        }
        if is_due(poller.next_targets, now, TARGETS_INTERVAL + TARGETS_JITTER) {
            poller.next_targets = now + TARGETS_INTERVAL + jitter(TARGETS_JITTER);
            // Rules first when both are due, so that targets apply to them.
            if refresh {
                self.refresh_rules(&mut poller, now);
            }
            refresh = self.refresh_targets(&mut poller, now);
        }
        if refresh {
            self.refresh_rules(&mut poller, now);
        }
        let next = poller.next_rules.min(poller.next_targets);
        next.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Fetches the rules and swaps them in. Keeps the old ones on failure.
    fn refresh_rules(&self, poller: &mut Poller, now: SystemTime) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let result = poller
            .post("GetSamplingRules", r#"{"NextToken":null}"#)
            .and_then(|body| {
                serde_json::from_str::<RulesResponse>(&body)
                    .map_err(|e| format!("malformed GetSamplingRules response: {e}"))
            });
        match result {
            Ok(response) => {
                let old = self.current_rules();
                let set = RuleSet::new(response, old.as_deref(), epoch_seconds(now));
                *write(&self.rules) = Some(Arc::new(set));
                poller.rules_failing.clear();
            }
            Err(error) => {
                if report_failure(&mut poller.rules_failing, &error) {
                    tracing::warn!(
                        target: "tracing_xray::sampling",
                        %error,
                        proxy = %self.proxy,
                        "cannot fetch X-Ray sampling rules; using the cached or fallback rules"
                    );
                    without_subscriber_on_stderr(|| {
                        format!(
                            "cannot fetch X-Ray sampling rules from {}: {error}; using the \
                             cached or fallback rules",
                            self.proxy
                        )
                    });
                }
            }
        }
    }

    /// Reports statistics and applies the targets. Returns whether the rules
    /// must be fetched again.
    fn refresh_targets(&self, poller: &mut Poller, now: SystemTime) -> bool {
        let now_sec = epoch_seconds(now);
        let Some(set) = self.current_rules().filter(|set| !set.expired(now_sec)) else {
            return false;
        };
        let documents: Vec<StatisticsDocument<'_>> = set
            .all()
            .filter(|rule| rule.state.due_for_report(now_sec))
            .map(|rule| rule.state.snapshot(&rule.name, &self.client_id, now_sec))
            .collect();
        if documents.is_empty() || self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let body = serde_json::to_string(&TargetsRequest {
            sampling_statistics_documents: documents,
        });
        let result = body
            .map_err(|e| e.to_string())
            .and_then(|body| poller.post("SamplingTargets", &body))
            .and_then(|body| {
                serde_json::from_str::<TargetsResponse>(&body)
                    .map_err(|e| format!("malformed GetSamplingTargets response: {e}"))
            });
        match result {
            Ok(response) => {
                poller.targets_failing.clear();
                set.apply_targets(&response, now_sec)
            }
            Err(error) => {
                if report_failure(&mut poller.targets_failing, &error) {
                    tracing::warn!(
                        target: "tracing_xray::sampling",
                        %error,
                        proxy = %self.proxy,
                        "cannot fetch X-Ray sampling targets; rules fall back to borrowing and their fixed rate"
                    );
                    without_subscriber_on_stderr(|| {
                        format!(
                            "cannot fetch X-Ray sampling targets from {}: {error}; rules fall \
                             back to borrowing and their fixed rate",
                            self.proxy
                        )
                    });
                }
                false
            }
        }
    }
}

/// What a failed fetch is, for telling a new kind of failure from the one
/// already reported: an HTTP status (`http status: 403`), a malformed
/// answer, or no answer (refused, reset, timed out: the daemon not there).
fn failure_kind(error: &str) -> String {
    if let Some(at) = error.find("http status: ") {
        let status: String = error[at..]
            .chars()
            .take("http status: ".len() + 3)
            .collect();
        return status;
    }
    if error.starts_with("malformed") {
        return "malformed".to_owned();
    }
    "no answer".to_owned()
}

/// Whether a failed fetch is reported: the first of each kind since the
/// last success (the daemon not ready at start, then the role lacking a
/// permission), so that kinds taking turns are not reported at every poll.
/// The kinds are few (no answer, a malformed answer, one per HTTP status),
/// and so are the reports and what `reported` holds.
fn report_failure(reported: &mut Vec<String>, error: &str) -> bool {
    let kind = failure_kind(error);
    if reported.contains(&kind) {
        return false;
    }
    reported.push(kind);
    true
}

/// Also writes a report on standard error when no subscriber would see it:
/// the sampler starts, and fetches at once, before the application usually
/// sets its global subscriber (a scoped one, set on another thread, never
/// sees this thread's events either).
fn without_subscriber_on_stderr(message: impl FnOnce() -> String) {
    let nobody = tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if nobody {
        crate::stderr_line(format_args!("tracing-xray: {}", message()));
    }
}

/// Due at or after `next`; also when `next` is further away than one full
/// interval (the wall clock was set back).
fn is_due(next: SystemTime, now: SystemTime, max_interval: Duration) -> bool {
    now >= next || next.duration_since(now).map_or(true, |d| d > max_interval)
}

fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(crate::id::next_u64() % nanos)
}

impl Poller {
    fn post(&self, operation: &str, body: &str) -> Result<String, String> {
        let url = format!("{}/{operation}", self.base_url);
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| format!("POST {url}: {e}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|e| format!("POST {url}: reading the response: {e}"))
    }
}

/// An immutable snapshot of the centralized rules.
struct RuleSet {
    /// By priority, then name; without the default rule.
    rules: Box<[CentralRule]>,
    /// The rule named `Default`, applied last.
    default: Option<CentralRule>,
    /// Epoch second of the successful fetch.
    refreshed_at: u64,
}

impl RuleSet {
    fn new(response: RulesResponse, old: Option<&RuleSet>, now_sec: u64) -> Self {
        let old_states: HashMap<&str, &Arc<RuleState>> = old
            .map(|set| set.all().map(|r| (&*r.name, &r.state)).collect())
            .unwrap_or_default();
        let mut rules = Vec::new();
        let mut default = None;
        for record in response.sampling_rule_records {
            let Some(rule) = record.sampling_rule.and_then(ApiRule::validate) else {
                continue;
            };
            let state = old_states
                .get(rule.name.as_ref())
                .map_or_else(|| Arc::new(RuleState::new()), |s| Arc::clone(s));
            state.set_fixed_rate(rule.fixed_rate);
            let rule = CentralRule::new(rule, state);
            if &*rule.name == DEFAULT_RULE_NAME {
                default = Some(rule.into_catch_all());
            } else {
                rules.push(rule);
            }
        }
        rules.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        RuleSet {
            rules: rules.into_boxed_slice(),
            default,
            refreshed_at: now_sec,
        }
    }

    fn expired(&self, now_sec: u64) -> bool {
        now_sec > self.refreshed_at.saturating_add(RULES_TTL_SECS)
    }

    fn all(&self) -> impl Iterator<Item = &CentralRule> {
        self.rules.iter().chain(self.default.as_ref())
    }

    fn find(&self, request: &SamplingRequest<'_>) -> Option<&CentralRule> {
        self.rules
            .iter()
            .find(|rule| rule.matches(request))
            .or(self.default.as_ref())
    }

    /// Applies a GetSamplingTargets answer. Returns whether the rules must be
    /// fetched again (changed since our fetch, or statistics rejected with a
    /// 4xx code).
    fn apply_targets(&self, response: &TargetsResponse, now_sec: u64) -> bool {
        for target in &response.sampling_target_documents {
            let Some(name) = target.rule_name.as_deref() else {
                continue;
            };
            if let Some(rule) = self.all().find(|r| &*r.name == name) {
                rule.state.apply(target, now_sec);
            }
        }
        let rejected = response
            .unprocessed_statistics
            .iter()
            .flatten()
            .any(|s| s.error_code.as_deref().is_some_and(|c| c.starts_with('4')));
        let modified = response
            .last_rule_modification
            .is_some_and(|t| t.is_finite() && t >= self.refreshed_at as f64);
        rejected || modified
    }
}

struct CentralRule {
    name: Arc<str>,
    priority: i64,
    reservoir_size: u64,
    host: Pattern,
    http_method: Pattern,
    url_path: Pattern,
    service_name: Pattern,
    service_type: Pattern,
    resource_arn: Pattern,
    attributes: Box<[(Box<str>, Pattern)]>,
    state: Arc<RuleState>,
}

impl CentralRule {
    fn new(rule: ValidRule, state: Arc<RuleState>) -> Self {
        CentralRule {
            name: rule.name,
            priority: rule.priority,
            reservoir_size: rule.reservoir_size,
            host: rule.host,
            http_method: rule.http_method,
            url_path: rule.url_path,
            service_name: rule.service_name,
            service_type: rule.service_type,
            resource_arn: rule.resource_arn,
            attributes: rule.attributes,
            state,
        }
    }

    /// The `Default` rule matches every request, whatever its patterns say
    /// (as in the Go and Java SDKs).
    fn into_catch_all(self) -> Self {
        let any = Pattern::any;
        CentralRule {
            host: any(),
            http_method: any(),
            url_path: any(),
            service_name: any(),
            service_type: any(),
            resource_arn: any(),
            attributes: Box::new([]),
            ..self
        }
    }

    /// Absent (or empty) request attributes match (SPEC §4.2, recommended). A rule
    /// constraining the resource ARN or attributes only matches requests
    /// that carry matching values.
    fn matches(&self, request: &SamplingRequest<'_>) -> bool {
        self.host.matches_optional(request.host)
            && self.http_method.matches_optional(request.http_method)
            && self.url_path.matches_optional(request.url_path)
            && self.service_name.matches_optional(request.service_name)
            && self.service_type.matches_optional(request.service_type)
            && (self.resource_arn.is_any()
                || request
                    .resource_arn
                    .is_some_and(|arn| self.resource_arn.matches(arn)))
            && self.attributes.iter().all(|(key, pattern)| {
                request
                    .attributes
                    .iter()
                    .find(|(k, _)| *k == &**key)
                    .is_some_and(|(_, v)| pattern.matches(v))
            })
    }

    /// SPEC §4.3 "Decision per matched rule".
    fn decide(&self, now_sec: u64) -> SamplingDecision {
        let state = &*self.state;
        state.requests.fetch_add(1, Ordering::Relaxed);
        let quota_ttl = state.quota_ttl.load(Ordering::Relaxed);
        let has_quota = quota_ttl != 0 && now_sec <= quota_ttl;
        let sampled = if has_quota {
            state
                .quota_reservoir
                .try_take(now_sec, state.quota.load(Ordering::Relaxed))
                || state.fixed_rate().coin()
        } else if self.reservoir_size > 0 && state.borrow_reservoir.try_take(now_sec, 1) {
            state.borrowed.fetch_add(1, Ordering::Relaxed);
            return self.decision(true);
        } else {
            state.fixed_rate().coin()
        };
        if sampled {
            state.sampled.fetch_add(1, Ordering::Relaxed);
        }
        self.decision(sampled)
    }

    fn decision(&self, sampled: bool) -> SamplingDecision {
        SamplingDecision::new(sampled).with_rule_name(Arc::clone(&self.name))
    }
}

/// Mutable per-rule state, shared by the application threads (counters,
/// reservoirs) and the poller (targets), and carried over to a same-named
/// rule when the rules are fetched again.
#[derive(Debug)]
struct RuleState {
    /// `f64` bits of the fixed rate (from the rule, then from targets).
    fixed_rate: AtomicU64,
    /// Requests a second while the quota is valid.
    quota: AtomicU64,
    /// Epoch second until which the quota is valid; 0 = no quota.
    quota_ttl: AtomicU64,
    /// Seconds between two reports of this rule.
    interval: AtomicU64,
    /// Epoch second of the last target applied; 0 = never.
    targets_at: AtomicU64,
    requests: AtomicU64,
    sampled: AtomicU64,
    borrowed: AtomicU64,
    quota_reservoir: Reservoir,
    borrow_reservoir: Reservoir,
}

impl RuleState {
    fn new() -> Self {
        RuleState {
            fixed_rate: AtomicU64::new(0f64.to_bits()),
            quota: AtomicU64::new(0),
            quota_ttl: AtomicU64::new(0),
            interval: AtomicU64::new(DEFAULT_TARGET_INTERVAL_SECS),
            targets_at: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            borrowed: AtomicU64::new(0),
            quota_reservoir: Reservoir::new(),
            borrow_reservoir: Reservoir::new(),
        }
    }

    fn fixed_rate(&self) -> Rate {
        Rate::new(f64::from_bits(self.fixed_rate.load(Ordering::Relaxed)))
    }

    fn set_fixed_rate(&self, rate: f64) {
        let rate = Rate::new(rate).get();
        self.fixed_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Matched at least once since the last report, and its interval passed
    /// (or the wall clock was set back past the last report: as in
    /// [`is_due`], the rule is reported at once rather than after the
    /// clock catches up, maybe an hour later).
    fn due_for_report(&self, now_sec: u64) -> bool {
        let last = self.targets_at.load(Ordering::Relaxed);
        self.requests.load(Ordering::Relaxed) > 0
            && (now_sec < last
                || now_sec >= last.saturating_add(self.interval.load(Ordering::Relaxed)))
    }

    /// The counters for a report; resets them.
    ///
    /// A decision counts its request, then its sample or borrow, in two
    /// steps no lock holds together, so a report taken between them would
    /// count the one and not the other, and the next one more samples than
    /// requests. A report never says more were sampled and borrowed than
    /// requested: any excess (a decision caught half counted) is carried
    /// over to the next one, so the totals stay exact.
    fn snapshot<'a>(
        &self,
        name: &'a str,
        client_id: &'a str,
        now_sec: u64,
    ) -> StatisticsDocument<'a> {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let sampled = self.sampled.swap(0, Ordering::Relaxed);
        let borrowed = self.borrowed.swap(0, Ordering::Relaxed);
        let sampled_count = sampled.min(requests);
        let borrow_count = borrowed.min(requests - sampled_count);
        if sampled > sampled_count {
            self.sampled
                .fetch_add(sampled - sampled_count, Ordering::Relaxed);
        }
        if borrowed > borrow_count {
            self.borrowed
                .fetch_add(borrowed - borrow_count, Ordering::Relaxed);
        }
        StatisticsDocument {
            rule_name: name,
            client_id,
            timestamp: now_sec,
            request_count: requests,
            sampled_count,
            borrow_count,
        }
    }

    fn apply(&self, target: &TargetDocument, now_sec: u64) {
        if let Some(rate) = target.fixed_rate {
            self.set_fixed_rate(rate);
        }
        if let Some(quota) = target.reservoir_quota.and_then(non_negative_whole) {
            self.quota.store(quota, Ordering::Relaxed);
        }
        if let Some(ttl) = target.reservoir_quota_ttl {
            self.quota_ttl
                .store(non_negative_whole(ttl).unwrap_or(0), Ordering::Relaxed);
        }
        if let Some(interval) = target.interval.and_then(non_negative_whole) {
            if interval > 0 {
                self.interval.store(interval, Ordering::Relaxed);
            }
        }
        self.targets_at.store(now_sec, Ordering::Relaxed);
    }
}

fn non_negative_whole(value: f64) -> Option<u64> {
    (value.is_finite() && value >= 0.0).then(|| value.floor() as u64)
}

// ---- The proxy protocol (X-Ray API JSON) ----

#[derive(Deserialize)]
struct RulesResponse {
    #[serde(rename = "SamplingRuleRecords")]
    sampling_rule_records: Vec<RuleRecord>,
}

#[derive(Deserialize)]
struct RuleRecord {
    #[serde(rename = "SamplingRule", default, deserialize_with = "lenient_rule")]
    sampling_rule: Option<ApiRule>,
}

/// A rule that does not read as one (a field of the wrong type) is `None`,
/// left out like an invalid rule, instead of rejecting the whole answer.
fn lenient_rule<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ApiRule>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// A rule as the API returns it; every field optional, and a record that
/// does not read is skipped ([`lenient_rule`]), so one bad rule does not
/// reject the others.
#[derive(Deserialize)]
struct ApiRule {
    #[serde(rename = "RuleName")]
    rule_name: Option<String>,
    #[serde(rename = "Priority")]
    priority: Option<i64>,
    #[serde(rename = "FixedRate")]
    fixed_rate: Option<f64>,
    #[serde(rename = "ReservoirSize")]
    reservoir_size: Option<i64>,
    #[serde(rename = "Host")]
    host: Option<String>,
    #[serde(rename = "HTTPMethod")]
    http_method: Option<String>,
    #[serde(rename = "URLPath")]
    url_path: Option<String>,
    #[serde(rename = "ServiceName")]
    service_name: Option<String>,
    #[serde(rename = "ServiceType")]
    service_type: Option<String>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "Version")]
    version: Option<i64>,
    #[serde(rename = "Attributes")]
    attributes: Option<HashMap<String, String>>,
}

struct ValidRule {
    name: Arc<str>,
    priority: i64,
    fixed_rate: f64,
    reservoir_size: u64,
    host: Pattern,
    http_method: Pattern,
    url_path: Pattern,
    service_name: Pattern,
    service_type: Pattern,
    resource_arn: Pattern,
    attributes: Box<[(Box<str>, Pattern)]>,
}

impl ApiRule {
    /// Keeps rules of version 1 with a name, priority, reservoir size, rate
    /// and all matchers (the Java SDK's check, the strictest of the SDKs).
    fn validate(self) -> Option<ValidRule> {
        if self.version != Some(1) {
            return None;
        }
        let name = self.rule_name.filter(|n| !n.is_empty())?;
        let fixed_rate = self.fixed_rate.filter(|r| r.is_finite())?;
        Some(ValidRule {
            name: name.into(),
            priority: self.priority?,
            fixed_rate,
            reservoir_size: u64::try_from(self.reservoir_size?).ok()?,
            host: Pattern::new(&self.host?),
            http_method: Pattern::new(&self.http_method?),
            url_path: Pattern::new(&self.url_path?),
            service_name: Pattern::new(&self.service_name?),
            service_type: Pattern::new(&self.service_type?),
            resource_arn: Pattern::new(&self.resource_arn?),
            attributes: self
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.into(), Pattern::new(&v)))
                .collect(),
        })
    }
}

#[derive(Serialize)]
struct TargetsRequest<'a> {
    #[serde(rename = "SamplingStatisticsDocuments")]
    sampling_statistics_documents: Vec<StatisticsDocument<'a>>,
}

#[derive(Serialize)]
struct StatisticsDocument<'a> {
    #[serde(rename = "RuleName")]
    rule_name: &'a str,
    #[serde(rename = "ClientID")]
    client_id: &'a str,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "RequestCount")]
    request_count: u64,
    #[serde(rename = "SampledCount")]
    sampled_count: u64,
    #[serde(rename = "BorrowCount")]
    borrow_count: u64,
}

#[derive(Deserialize)]
struct TargetsResponse {
    #[serde(rename = "SamplingTargetDocuments")]
    sampling_target_documents: Vec<TargetDocument>,
    #[serde(rename = "LastRuleModification")]
    last_rule_modification: Option<f64>,
    #[serde(rename = "UnprocessedStatistics")]
    unprocessed_statistics: Option<Vec<UnprocessedStatistics>>,
}

#[derive(Deserialize)]
struct TargetDocument {
    #[serde(rename = "RuleName")]
    rule_name: Option<String>,
    #[serde(rename = "FixedRate")]
    fixed_rate: Option<f64>,
    #[serde(rename = "ReservoirQuota")]
    reservoir_quota: Option<f64>,
    #[serde(rename = "ReservoirQuotaTTL")]
    reservoir_quota_ttl: Option<f64>,
    #[serde(rename = "Interval")]
    interval: Option<f64>,
}

#[derive(Deserialize)]
struct UnprocessedStatistics {
    #[serde(rename = "ErrorCode")]
    error_code: Option<String>,
}

// ---- Helpers ----

/// 24 lowercase hex digits (96 random bits).
fn client_id() -> String {
    let (a, b) = (crate::id::next_u64(), crate::id::next_u64());
    format!("{a:016x}{:08x}", b as u32)
}

/// The `tcp` address of `AWS_XRAY_DAEMON_ADDRESS`, else the one given in
/// code, else `127.0.0.1:2000`. An invalid variable is reported on standard
/// error: the sampler is usually built before any subscriber that could show
/// a `tracing` event.
fn proxy_address(in_code: Option<SocketAddr>) -> SocketAddr {
    let fallback = || in_code.unwrap_or_else(|| DaemonAddress::default().tcp());
    match DaemonAddress::from_env() {
        Ok(Some(address)) => address.tcp(),
        Ok(None) => fallback(),
        Err(error) => {
            let address = fallback();
            crate::stderr_line(format_args!(
                "tracing-xray: {error}; fetching sampling rules from {address}"
            ));
            address
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_once_per_kind_while_fetches_fail() {
        let mut failing = Vec::new();
        let refused = "POST http://127.0.0.1:2000/GetSamplingRules: io: Connection refused";
        let forbidden = "POST http://127.0.0.1:2000/GetSamplingRules: http status: 403";
        assert!(report_failure(&mut failing, refused));
        assert!(!report_failure(&mut failing, refused));
        assert!(!report_failure(
            &mut failing,
            "POST http://127.0.0.1:2000/GetSamplingRules: timeout: global"
        ));
        assert!(report_failure(&mut failing, forbidden));
        assert!(!report_failure(&mut failing, forbidden));
        assert!(report_failure(
            &mut failing,
            "POST http://127.0.0.1:2000/GetSamplingRules: http status: 500"
        ));
        assert!(report_failure(
            &mut failing,
            "malformed GetSamplingRules response: EOF"
        ));
        // Kinds taking turns: each reported once.
        assert!(!report_failure(&mut failing, refused));
        assert!(!report_failure(&mut failing, forbidden));
        // Past a success, all over again.
        failing.clear();
        assert!(report_failure(&mut failing, refused));
        for status in 500..510 {
            let error = format!("POST x: http status: {status}");
            assert!(report_failure(&mut failing, &error));
            assert!(!report_failure(&mut failing, &error));
        }
    }

    fn api_rule(name: &str, priority: i64, reservoir: i64, rate: f64) -> serde_json::Value {
        serde_json::json!({
            "RuleName": name, "Priority": priority, "ReservoirSize": reservoir,
            "FixedRate": rate, "Host": "*", "HTTPMethod": "*", "URLPath": "*",
            "ServiceName": "*", "ServiceType": "*", "ResourceARN": "*",
            "Version": 1, "Attributes": {}
        })
    }

    fn rules_response(rules: &[serde_json::Value]) -> RulesResponse {
        let records: Vec<_> = rules
            .iter()
            .map(|r| serde_json::json!({ "SamplingRule": r }))
            .collect();
        serde_json::from_value(serde_json::json!({ "SamplingRuleRecords": records })).unwrap()
    }

    fn targets(value: serde_json::Value) -> TargetsResponse {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn rules_are_sorted_filtered_and_default_is_last() {
        let mut bad_version = api_rule("v2", 1, 1, 0.1);
        bad_version["Version"] = 2.into();
        let mut no_host = api_rule("nohost", 1, 1, 0.1);
        no_host.as_object_mut().unwrap().remove("Host");
        let mut negative = api_rule("neg", 1, -1, 0.1);
        negative["ReservoirSize"] = (-1).into();
        let mut wrong_type = api_rule("wrong_type", 1, 1, 0.1);
        wrong_type["Priority"] = "high".into();
        let set = RuleSet::new(
            rules_response(&[
                api_rule("Default", 10000, 1, 0.05),
                api_rule("b", 5, 1, 0.1),
                api_rule("a", 5, 1, 0.1),
                api_rule("first", 1, 1, 0.1),
                bad_version,
                no_host,
                negative,
                wrong_type,
                api_rule("", 1, 1, 0.1),
            ]),
            None,
            100,
        );
        let names: Vec<&str> = set.all().map(|r| &*r.name).collect();
        assert_eq!(names, ["first", "a", "b", "Default"]);
    }

    #[test]
    fn state_carries_over_to_same_named_rules() {
        let old = RuleSet::new(rules_response(&[api_rule("r", 1, 1, 0.5)]), None, 100);
        let _ = old.rules[0].decide(100);
        let new = RuleSet::new(
            rules_response(&[api_rule("r", 1, 1, 0.25), api_rule("s", 2, 1, 0.1)]),
            Some(&old),
            200,
        );
        assert!(Arc::ptr_eq(&old.rules[0].state, &new.rules[0].state));
        assert_eq!(new.rules[0].state.requests.load(Ordering::Relaxed), 1);
        assert_eq!(new.rules[0].state.fixed_rate().get(), 0.25);
        assert_eq!(new.rules[1].state.requests.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn borrow_then_rate_without_quota() {
        let set = RuleSet::new(rules_response(&[api_rule("r", 1, 10, 0.0)]), None, 100);
        let rule = &set.rules[0];
        assert!(rule.decide(100).is_sampled()); // borrowed
        assert!(!rule.decide(100).is_sampled()); // rate 0
        assert!(rule.decide(101).is_sampled()); // one borrow a second
        let stats = rule.state.snapshot("r", "c", 101);
        assert_eq!(
            (stats.request_count, stats.sampled_count, stats.borrow_count),
            (3, 0, 2)
        );
        assert_eq!(rule.state.snapshot("r", "c", 101).request_count, 0);
    }

    #[test]
    fn zero_reservoir_never_borrows() {
        let set = RuleSet::new(rules_response(&[api_rule("r", 1, 0, 0.0)]), None, 100);
        assert!(!set.rules[0].decide(100).is_sampled());
    }

    #[test]
    fn quota_until_ttl_then_borrowing() {
        let set = RuleSet::new(rules_response(&[api_rule("r", 1, 10, 0.0)]), None, 100);
        let refresh = set.apply_targets(
            &targets(serde_json::json!({
                "SamplingTargetDocuments": [
                    {"RuleName": "r", "FixedRate": 0.0, "ReservoirQuota": 2, "ReservoirQuotaTTL": 110.0, "Interval": 5},
                    {"RuleName": "unknown", "FixedRate": 1.0}
                ],
                "LastRuleModification": 50
            })),
            100,
        );
        assert!(!refresh);
        let rule = &set.rules[0];
        assert_eq!(rule.state.interval.load(Ordering::Relaxed), 5);
        let n = (0..5).filter(|_| rule.decide(110).is_sampled()).count();
        assert_eq!(n, 2);
        // TTL passed: borrowing (1/s) again.
        let n = (0..5).filter(|_| rule.decide(111).is_sampled()).count();
        assert_eq!(n, 1);
        let stats = rule.state.snapshot("r", "c", 111);
        assert_eq!(
            (stats.request_count, stats.sampled_count, stats.borrow_count),
            (10, 2, 1)
        );
    }

    #[test]
    fn refresh_signals() {
        let set = RuleSet::new(rules_response(&[api_rule("r", 1, 1, 0.0)]), None, 100);
        let modified = |t: f64| {
            set.apply_targets(
                &targets(
                    serde_json::json!({"SamplingTargetDocuments": [], "LastRuleModification": t}),
                ),
                100,
            )
        };
        assert!(!modified(99.0));
        assert!(modified(100.0));
        assert!(modified(101.0));
        let with_code = |code: &str| {
            set.apply_targets(
                &targets(serde_json::json!({
                    "SamplingTargetDocuments": [],
                    "UnprocessedStatistics": [{"RuleName": "r", "ErrorCode": code}]
                })),
                100,
            )
        };
        assert!(with_code("400"));
        assert!(!with_code("500"));
        assert!(!with_code("200"));
    }

    #[test]
    fn a_report_never_counts_more_sampled_than_requested() {
        let state = RuleState::new();
        // A decision caught between its two counts: the sample is in, the
        // request not yet (or the other way round across two reports).
        state.requests.store(3, Ordering::Relaxed);
        state.sampled.store(4, Ordering::Relaxed);
        state.borrowed.store(1, Ordering::Relaxed);
        let first = state.snapshot("r", "c", 1);
        assert_eq!(
            (first.request_count, first.sampled_count, first.borrow_count),
            (3, 3, 0)
        );
        state.requests.fetch_add(2, Ordering::Relaxed);
        let second = state.snapshot("r", "c", 2);
        assert_eq!(
            (
                second.request_count,
                second.sampled_count,
                second.borrow_count
            ),
            (2, 1, 1),
            "the excess carried over"
        );
        let third = state.snapshot("r", "c", 3);
        assert_eq!(
            (third.request_count, third.sampled_count, third.borrow_count),
            (0, 0, 0)
        );
    }

    #[test]
    fn report_due_after_interval() {
        let state = RuleState::new();
        assert!(!state.due_for_report(100)); // nothing matched
        state.requests.fetch_add(1, Ordering::Relaxed);
        assert!(state.due_for_report(100)); // never reported
        state.targets_at.store(100, Ordering::Relaxed);
        assert!(!state.due_for_report(109));
        assert!(state.due_for_report(110));
    }

    #[test]
    fn rule_set_expires_after_an_hour() {
        let set = RuleSet::new(rules_response(&[]), None, 1000);
        assert!(!set.expired(1000 + 3600));
        assert!(set.expired(1000 + 3601));
    }

    #[test]
    fn default_rule_is_a_catch_all() {
        let mut default = api_rule("Default", 10000, 1, 0.0);
        default["URLPath"] = "/never".into();
        let set = RuleSet::new(rules_response(&[default]), None, 1);
        let request = SamplingRequest::new().with_url_path("/x");
        assert_eq!(set.find(&request).map(|r| &*r.name), Some("Default"));
    }

    #[test]
    fn resource_arn_and_attributes_must_be_present_to_match() {
        let mut rule = api_rule("r", 1, 1, 0.0);
        rule["ResourceARN"] = "arn:aws:ecs:*".into();
        rule["Attributes"] = serde_json::json!({"tenant": "a*"});
        let set = RuleSet::new(rules_response(&[rule]), None, 1);
        let r = &set.rules[0];
        assert!(!r.matches(&SamplingRequest::new()));
        let attrs = [("tenant", "acme")];
        let with_attrs = SamplingRequest::new().with_attributes(&attrs);
        assert!(!r.matches(&with_attrs));
        assert!(r.matches(&with_attrs.with_resource_arn("arn:aws:ecs:x")));
        let other = [("tenant", "zeta")];
        assert!(
            !r.matches(
                &SamplingRequest::new()
                    .with_attributes(&other)
                    .with_resource_arn("arn:aws:ecs:x")
            )
        );
    }

    #[test]
    fn client_id_is_24_lowercase_hex() {
        let id = client_id();
        assert_eq!(id.len(), 24);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(id, client_id());
    }

    #[test]
    fn schedule_handles_clock_jumps() {
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        let max = Duration::from_secs(10);
        assert!(is_due(t, t, max));
        assert!(!is_due(t + Duration::from_secs(5), t, max));
        assert!(is_due(t + Duration::from_secs(500), t, max));
        assert!(jitter(Duration::from_millis(100)) < Duration::from_millis(100));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
