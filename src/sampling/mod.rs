//! Sampling: deciding, once per trace, whether it is recorded and sent.
//!
//! A [`Sampler`] looks at a few attributes of the incoming request
//! ([`SamplingRequest`]) and returns a [`SamplingDecision`]. The crate ships:
//!
//! - [`AlwaysSample`] and [`NeverSample`];
//! - [`RateSampler`], a fixed probability;
//! - [`LocalRules`], the X-Ray local rules file (versions 1 and 2). Its
//!   [`Default`] is X-Ray's default rule: the first request of every second
//!   plus 5 % of the others;
//! - [`CentralizedSampler`], the rules and quotas of the X-Ray service, fetched
//!   through the X-Ray daemon by a background thread, with [`LocalRules`] as
//!   the fallback.
//!
//! ```
//! use tracing_xray::sampling::{LocalRules, Sampler, SamplingRequest};
//!
//! let sampler = LocalRules::default();
//! let request = SamplingRequest::new().with_http_method("GET").with_url_path("/health");
//! let _sampled: bool = sampler.sample(&request).is_sampled();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod centralized;
mod local;
mod reservoir;
mod wildcard;

pub use centralized::{CentralizedSampler, CentralizedSamplerBuilder};
pub use local::{LocalRules, SamplingRulesError};

/// What a [`Sampler`] knows about the request that starts a trace.
///
/// Every attribute is optional. An absent attribute matches any rule pattern
/// (the behaviour of the Go, Python, Node and .NET SDKs), except
/// `resource_arn` and `attributes`, which only centralized rules use and which
/// must be present to match a rule that constrains them.
///
/// Build one with [`SamplingRequest::new`] and the `with_*` methods; the
/// struct is `#[non_exhaustive]` so that attributes can be added later.
///
/// ```
/// use tracing_xray::sampling::SamplingRequest;
///
/// let request = SamplingRequest::new()
///     .with_host("api.example.com")
///     .with_http_method("POST")
///     .with_url_path("/orders")
///     .with_service_name("orders")
///     .with_service_type("AWS::EC2::Instance");
/// assert_eq!(request.url_path, Some("/orders"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplingRequest<'a> {
    /// The HTTP `Host` header.
    pub host: Option<&'a str>,
    /// The HTTP method, such as `GET`.
    pub http_method: Option<&'a str>,
    /// The URL path, without the query string.
    pub url_path: Option<&'a str>,
    /// The service (segment) name.
    pub service_name: Option<&'a str>,
    /// The origin of the service, such as `AWS::EC2::Instance`.
    pub service_type: Option<&'a str>,
    /// The ARN of the resource that runs the service (centralized rules only).
    pub resource_arn: Option<&'a str>,
    /// Request attributes as key/value pairs (centralized rules only).
    pub attributes: &'a [(&'a str, &'a str)],
    /// The name of the root span that starts the trace (its `xray.name` /
    /// `otel.name` aside), for a custom sampler that tells a background job
    /// from a request by it. X-Ray's rules do not match on it.
    pub span_name: Option<&'a str>,
}

impl<'a> SamplingRequest<'a> {
    /// A request with no attributes (it matches every rule that does not
    /// constrain a resource ARN or attributes).
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// assert_eq!(SamplingRequest::new().host, None);
    /// ```
    pub const fn new() -> Self {
        SamplingRequest {
            host: None,
            http_method: None,
            url_path: None,
            service_name: None,
            service_type: None,
            resource_arn: None,
            attributes: &[],
            span_name: None,
        }
    }

    /// Sets the HTTP `Host` header.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// assert_eq!(SamplingRequest::new().with_host("example.com").host, Some("example.com"));
    /// ```
    #[must_use]
    pub const fn with_host(mut self, host: &'a str) -> Self {
        self.host = Some(host);
        self
    }

    /// Sets the HTTP method.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// assert_eq!(SamplingRequest::new().with_http_method("GET").http_method, Some("GET"));
    /// ```
    #[must_use]
    pub const fn with_http_method(mut self, method: &'a str) -> Self {
        self.http_method = Some(method);
        self
    }

    /// Sets the URL path (without the query string).
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// assert_eq!(SamplingRequest::new().with_url_path("/a").url_path, Some("/a"));
    /// ```
    #[must_use]
    pub const fn with_url_path(mut self, path: &'a str) -> Self {
        self.url_path = Some(path);
        self
    }

    /// Sets the service (segment) name.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// assert_eq!(SamplingRequest::new().with_service_name("svc").service_name, Some("svc"));
    /// ```
    #[must_use]
    pub const fn with_service_name(mut self, name: &'a str) -> Self {
        self.service_name = Some(name);
        self
    }

    /// Sets the service type (origin), such as `AWS::ECS::Container`.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// let request = SamplingRequest::new().with_service_type("AWS::ECS::Container");
    /// assert_eq!(request.service_type, Some("AWS::ECS::Container"));
    /// ```
    #[must_use]
    pub const fn with_service_type(mut self, service_type: &'a str) -> Self {
        self.service_type = Some(service_type);
        self
    }

    /// Sets the ARN of the resource running the service.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// let arn = "arn:aws:ecs:us-east-1:123456789012:container/x";
    /// assert_eq!(SamplingRequest::new().with_resource_arn(arn).resource_arn, Some(arn));
    /// ```
    #[must_use]
    pub const fn with_resource_arn(mut self, arn: &'a str) -> Self {
        self.resource_arn = Some(arn);
        self
    }

    /// Sets the request attributes matched by centralized rules that have
    /// `Attributes`.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// let request = SamplingRequest::new().with_attributes(&[("tenant", "acme")]);
    /// assert_eq!(request.attributes.len(), 1);
    /// ```
    #[must_use]
    pub const fn with_attributes(mut self, attributes: &'a [(&'a str, &'a str)]) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets the name of the root span that starts the trace.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingRequest;
    ///
    /// let request = SamplingRequest::new().with_span_name("nightly_cleanup");
    /// assert_eq!(request.span_name, Some("nightly_cleanup"));
    /// ```
    #[must_use]
    pub const fn with_span_name(mut self, name: &'a str) -> Self {
        self.span_name = Some(name);
        self
    }
}

/// The outcome of [`Sampler::sample`]: whether to record the trace, and the
/// centralized rule that decided (for `aws.xray.sampling_rule_name`).
///
/// ```
/// use tracing_xray::sampling::SamplingDecision;
///
/// let decision = SamplingDecision::sampled().with_rule_name("checkout");
/// assert!(decision.is_sampled());
/// assert_eq!(decision.rule_name(), Some("checkout"));
/// assert!(!SamplingDecision::not_sampled().is_sampled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct SamplingDecision {
    sampled: bool,
    rule_name: Option<Arc<str>>,
}

impl SamplingDecision {
    /// A decision with no rule name.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// assert!(SamplingDecision::new(true).is_sampled());
    /// ```
    pub const fn new(sampled: bool) -> Self {
        SamplingDecision {
            sampled,
            rule_name: None,
        }
    }

    /// "Record this trace".
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// assert!(SamplingDecision::sampled().is_sampled());
    /// ```
    pub const fn sampled() -> Self {
        Self::new(true)
    }

    /// "Do not record this trace".
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// assert!(!SamplingDecision::not_sampled().is_sampled());
    /// ```
    pub const fn not_sampled() -> Self {
        Self::new(false)
    }

    /// Names the rule that made the decision.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// let decision = SamplingDecision::not_sampled().with_rule_name("Default");
    /// assert_eq!(decision.rule_name(), Some("Default"));
    /// ```
    pub fn with_rule_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.rule_name = Some(name.into());
        self
    }

    /// Whether the trace is recorded.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// assert!(SamplingDecision::new(true).is_sampled());
    /// ```
    pub const fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The name of the centralized rule that matched, if any. Local rules and
    /// the simple samplers leave it empty.
    ///
    /// ```
    /// use tracing_xray::sampling::SamplingDecision;
    ///
    /// assert_eq!(SamplingDecision::sampled().rule_name(), None);
    /// ```
    pub fn rule_name(&self) -> Option<&str> {
        self.rule_name.as_deref()
    }

    /// The rule name as a shared string, cheap to clone into a segment.
    pub(crate) fn rule_name_arc(&self) -> Option<&Arc<str>> {
        self.rule_name.as_ref()
    }
}

/// Decides whether a new trace is recorded.
///
/// Called once per trace root (a request whose incoming `X-Amzn-Trace-Id`
/// header carries `Sampled=1` or `Sampled=0` is not asked). Implementations
/// must be cheap and must not block: they run on the application's threads,
/// by whichever thread needs the trace's decision first (the others wait
/// for it), with no lock of any span held. What they log reaches the
/// application's other layers (tracing-xray ignores it); behind
/// `tracing_subscriber::reload`, an event logged while a
/// `reload::Handle::modify` runs can deadlock inside tracing-subscriber, so
/// do not log from a sampler there. Nor should a sampler open spans: the
/// decision of a root without children is taken as it closes, and
/// tracing-subscriber never frees a span closed inside another's close (nor
/// the span around it: see the README's "When a trace never arrives").
///
/// ```
/// use tracing_xray::sampling::{Sampler, SamplingDecision, SamplingRequest};
///
/// /// Records everything except health checks.
/// struct NoHealthChecks;
///
/// impl Sampler for NoHealthChecks {
///     fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
///         SamplingDecision::new(request.url_path != Some("/health"))
///     }
/// }
///
/// let sampler = NoHealthChecks;
/// assert!(!sampler.sample(&SamplingRequest::new().with_url_path("/health")).is_sampled());
/// ```
pub trait Sampler: Send + Sync + 'static {
    /// Decides for one request.
    ///
    /// ```
    /// use tracing_xray::sampling::{AlwaysSample, Sampler, SamplingRequest};
    ///
    /// assert!(AlwaysSample.sample(&SamplingRequest::new()).is_sampled());
    /// ```
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision;
}

impl<S: Sampler + ?Sized> Sampler for Arc<S> {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        (**self).sample(request)
    }
}

impl<S: Sampler + ?Sized> Sampler for Box<S> {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        (**self).sample(request)
    }
}

/// Records every trace.
///
/// ```
/// use tracing_xray::sampling::{AlwaysSample, Sampler, SamplingRequest};
///
/// assert!(AlwaysSample.sample(&SamplingRequest::new()).is_sampled());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlwaysSample;

impl Sampler for AlwaysSample {
    fn sample(&self, _request: &SamplingRequest<'_>) -> SamplingDecision {
        SamplingDecision::sampled()
    }
}

/// Records no trace (unless an incoming header says `Sampled=1`).
///
/// ```
/// use tracing_xray::sampling::{NeverSample, Sampler, SamplingRequest};
///
/// assert!(!NeverSample.sample(&SamplingRequest::new()).is_sampled());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeverSample;

impl Sampler for NeverSample {
    fn sample(&self, _request: &SamplingRequest<'_>) -> SamplingDecision {
        SamplingDecision::not_sampled()
    }
}

/// Records each trace with a fixed probability.
///
/// ```
/// use tracing_xray::sampling::{RateSampler, Sampler, SamplingRequest};
///
/// let sampler = RateSampler::new(0.1);
/// assert_eq!(sampler.rate(), 0.1);
/// let _ = sampler.sample(&SamplingRequest::new());
///
/// // Out-of-range rates are clamped; NaN means 0.
/// assert_eq!(RateSampler::new(7.0).rate(), 1.0);
/// assert_eq!(RateSampler::new(f64::NAN).rate(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSampler {
    rate: Rate,
}

impl RateSampler {
    /// A sampler that records a fraction `rate` of the traces. The rate is
    /// clamped to `0.0..=1.0`; NaN counts as `0.0`.
    ///
    /// ```
    /// use tracing_xray::sampling::RateSampler;
    ///
    /// assert_eq!(RateSampler::new(-1.0).rate(), 0.0);
    /// ```
    pub fn new(rate: f64) -> Self {
        RateSampler {
            rate: Rate::new(rate),
        }
    }

    /// The (clamped) probability.
    ///
    /// ```
    /// use tracing_xray::sampling::RateSampler;
    ///
    /// assert_eq!(RateSampler::new(0.25).rate(), 0.25);
    /// ```
    pub fn rate(&self) -> f64 {
        self.rate.get()
    }
}

impl Sampler for RateSampler {
    fn sample(&self, _request: &SamplingRequest<'_>) -> SamplingDecision {
        SamplingDecision::new(self.rate.coin())
    }
}

/// The source of wall-clock time for the samplers (reservoirs are per epoch
/// second; centralized quotas and polling are scheduled in wall-clock time).
///
/// [`SystemClock`] is the default; tests provide their own to drive time
/// without sleeping.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use tracing_xray::sampling::Clock;
///
/// /// A clock stopped at one instant.
/// struct Frozen(SystemTime);
///
/// impl Clock for Frozen {
///     fn now(&self) -> SystemTime {
///         self.0
///     }
/// }
///
/// let clock = Frozen(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    ///
    /// ```
    /// use tracing_xray::sampling::{Clock, SystemClock};
    ///
    /// let _now = SystemClock.now();
    /// ```
    fn now(&self) -> SystemTime;
}

/// [`Clock`] reading [`SystemTime::now`].
///
/// ```
/// use tracing_xray::sampling::{Clock, SystemClock};
///
/// assert!(SystemClock.now() > std::time::UNIX_EPOCH);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Whole seconds since the Unix epoch (0 for times before it).
pub(crate) fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A probability in `0.0..=1.0`, with a precomputed threshold for a cheap,
/// allocation-free coin toss.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    value: f64,
    /// `random < threshold` with 53 random bits; `1 << 53` for rate 1.
    threshold: u64,
}

impl Rate {
    const BITS: u32 = 53;

    pub(crate) fn new(rate: f64) -> Self {
        let value = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        // Exact for every value: `value * 2^53` is at most 2^53.
        let threshold = (value * (1u64 << Self::BITS) as f64) as u64;
        Rate { value, threshold }
    }

    pub(crate) fn get(&self) -> f64 {
        self.value
    }

    /// `true` with probability `value`.
    pub(crate) fn coin(&self) -> bool {
        match self.threshold {
            0 => false,
            t if t >= 1 << Self::BITS => true,
            t => (crate::id::next_u64() >> (64 - Self::BITS)) < t,
        }
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_builder_sets_every_field() {
        let attrs = [("a", "b")];
        let r = SamplingRequest::new()
            .with_host("h")
            .with_http_method("m")
            .with_url_path("/p")
            .with_service_name("s")
            .with_service_type("t")
            .with_resource_arn("arn")
            .with_attributes(&attrs);
        assert_eq!(r.host, Some("h"));
        assert_eq!(r.http_method, Some("m"));
        assert_eq!(r.url_path, Some("/p"));
        assert_eq!(r.service_name, Some("s"));
        assert_eq!(r.service_type, Some("t"));
        assert_eq!(r.resource_arn, Some("arn"));
        assert_eq!(r.attributes, &attrs);
        assert_eq!(SamplingRequest::new(), SamplingRequest::default());
    }

    #[test]
    fn decision_accessors() {
        let d = SamplingDecision::sampled().with_rule_name("r");
        assert!(d.is_sampled());
        assert_eq!(d.rule_name(), Some("r"));
        assert_eq!(d.rule_name_arc().map(|a| &**a), Some("r"));
        assert_eq!(SamplingDecision::not_sampled().rule_name(), None);
    }

    #[test]
    fn always_and_never() {
        let r = SamplingRequest::new();
        assert!((0..100).all(|_| AlwaysSample.sample(&r).is_sampled()));
        assert!((0..100).all(|_| !NeverSample.sample(&r).is_sampled()));
    }

    #[test]
    fn rate_is_clamped() {
        assert_eq!(RateSampler::new(-0.5).rate(), 0.0);
        assert_eq!(RateSampler::new(1.5).rate(), 1.0);
        assert_eq!(RateSampler::new(f64::NAN).rate(), 0.0);
        assert_eq!(RateSampler::new(f64::INFINITY).rate(), 1.0);
        assert_eq!(RateSampler::new(0.3).rate(), 0.3);
    }

    #[test]
    fn rate_extremes_are_exact() {
        let r = SamplingRequest::new();
        let one = RateSampler::new(1.0);
        let zero = RateSampler::new(0.0);
        assert!((0..10_000).all(|_| one.sample(&r).is_sampled()));
        assert!((0..10_000).all(|_| !zero.sample(&r).is_sampled()));
    }

    #[test]
    fn rate_is_roughly_respected() {
        let r = SamplingRequest::new();
        let s = RateSampler::new(0.25);
        let n = 100_000;
        let hits = (0..n).filter(|_| s.sample(&r).is_sampled()).count();
        // 0.25 ± 0.01 (more than 7 standard deviations).
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }

    #[test]
    fn samplers_work_through_pointers() {
        let boxed: Box<dyn Sampler> = Box::new(AlwaysSample);
        let shared: Arc<dyn Sampler> = Arc::new(NeverSample);
        assert!(boxed.sample(&SamplingRequest::new()).is_sampled());
        assert!(!shared.sample(&SamplingRequest::new()).is_sampled());
    }

    #[test]
    fn epoch_seconds_of_times() {
        use std::time::Duration;
        assert_eq!(epoch_seconds(UNIX_EPOCH + Duration::from_millis(2500)), 2);
        assert_eq!(epoch_seconds(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
