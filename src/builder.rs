//! [`Builder`]: configures and builds an [`XrayLayer`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{
    Config, DEFAULT_MAX_HELD_SUBSEGMENTS, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_STREAMING_THRESHOLD, MAX_QUEUE_CAPACITY, MIN_MAX_QUEUED_BYTES, disabled_by_env,
    env_tracing_name,
};
use crate::export::{Exporter, UdpExporter};
use crate::handle::{Counters, Shared, XrayGuard, XrayHandle};
use crate::layer::{LayerInner, XrayLayer};
use crate::model::Service;

/// The timeout [`XrayGuard`] gives the final flush when it is dropped.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(tracing_xray::DEFAULT_SHUTDOWN_TIMEOUT, Duration::from_secs(5));
/// ```
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures an [`XrayLayer`]. Start with [`crate::builder()`].
///
/// Every setting has a default suited to the one-line setup; the standard
/// X-Ray environment variables apply on top:
/// `AWS_XRAY_DAEMON_ADDRESS` and `AWS_XRAY_TRACING_NAME` win over code, as in
/// every official SDK, and `AWS_XRAY_SDK_ENABLED=false` /
/// `AWS_XRAY_SDK_DISABLED=true` build a layer that does nothing.
///
/// ```
/// use std::time::Duration;
/// use tracing_xray::export::InMemoryExporter;
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_service_name("orders")
///     .with_service_version("1.4.2")
///     .with_exporter(exporter.clone())
///     .with_queue_capacity(10_000)
///     .with_streaming_threshold(50)
///     .build();
/// # drop(layer);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    service_name: Option<String>,
    service_version: Option<String>,
    exporter: Option<Box<dyn Exporter>>,
    queue_capacity: usize,
    max_queued_bytes: usize,
    streaming_threshold: usize,
    max_held_subsegments: usize,
    detectors: crate::Detectors,
    sampler: Option<Arc<dyn crate::sampling::Sampler>>,
    lambda: Option<bool>,
    events: bool,
    pub(crate) fields: crate::fields::FieldOptions,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("custom_exporter", &self.exporter.is_some())
            .field("queue_capacity", &self.queue_capacity)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("streaming_threshold", &self.streaming_threshold)
            .field("max_held_subsegments", &self.max_held_subsegments)
            .field("detectors", &self.detectors)
            .field("custom_sampler", &self.sampler.is_some())
            .field("lambda", &self.lambda)
            .field("events", &self.events)
            .field("fields", &self.fields)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            service_name: None,
            service_version: None,
            exporter: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            streaming_threshold: DEFAULT_STREAMING_THRESHOLD,
            max_held_subsegments: DEFAULT_MAX_HELD_SUBSEGMENTS,
            detectors: crate::Detectors::default(),
            sampler: None,
            lambda: None,
            events: false,
            fields: Default::default(),
        }
    }
}

impl Builder {
    /// The segment name: the service as the X-Ray service map shows it.
    /// Default: the executable's file name. `AWS_XRAY_TRACING_NAME` overrides
    /// it, as in every official SDK (whitespace around its value ignored).
    /// Characters X-Ray does not allow in a name are removed, and a name
    /// left empty gives way to the next one: the environment's to this one,
    /// this one to the executable's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_service_name("orders")
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("place_order").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(exporter.traces()[0]["name"], "orders");
    /// ```
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The application version written in the segment's `service.version`
    /// (for example `env!("CARGO_PKG_VERSION")`), cut to X-Ray's 250
    /// characters for a string: it goes into every segment.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_service_version("1.4.2")
    /// #   .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("request").in_scope(|| {});
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // ... once a trace has been exported:
    /// assert_eq!(exporter.traces()[0]["service"]["version"], "1.4.2");
    /// ```
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        let mut version = version.into();
        version.truncate(
            crate::limits::truncate_chars(&version, crate::limits::MAX_STRING_CHARS).len(),
        );
        // An empty version is none (X-Ray omits empty fields).
        self.service_version = (!version.is_empty()).then_some(version);
        self
    }

    /// Where documents go. Default: [`UdpExporter::from_env`] (the X-Ray
    /// daemon at `AWS_XRAY_DAEMON_ADDRESS`, else `127.0.0.1:2000`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new(); // clones share their documents
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(exporter.len(), 1);
    /// ```
    pub fn with_exporter(mut self, exporter: impl Exporter) -> Self {
        self.exporter = Some(Box::new(exporter));
        self
    }

    /// How many finished traces may wait for the worker. Past it, traces are
    /// dropped and counted ([`crate::Stats::traces_dropped`]), never blocking
    /// the application. Default 4096; at least 1, at most 1,048,576 (the
    /// queue's slots are allocated when the layer is built, so a larger
    /// value, `usize::MAX` meant as "unbounded" included, is cut to that).
    ///
    /// ```
    /// // A service that finishes bursts of many small traces.
    /// let layer = tracing_xray::builder().with_queue_capacity(50_000).build();
    /// assert_eq!(layer.handle().stats().traces_dropped, 0);
    /// ```
    pub fn with_queue_capacity(mut self, traces: usize) -> Self {
        self.queue_capacity = traces.clamp(1, MAX_QUEUE_CAPACITY);
        self
    }

    /// How much memory the finished traces waiting for the worker may hold,
    /// in bytes: the spans, what their fields, events and errors hold, and
    /// the room their lists keep (spans are held 16 to a block, so a trace
    /// of one span counts as 16). This is an estimate, within a small factor
    /// of the heap they use. Past it, traces are dropped and counted
    /// ([`crate::Stats::traces_dropped`]) as when the queue is full, so that
    /// a worker held up (a slow HTTP exporter, a stalled host) never lets
    /// traces with large fields grow the application's memory. Default 64 MiB; at least 1 MiB. An open
    /// trace streams its finished subsegments once they hold 1 MiB, or a
    /// quarter of this bound if that is less, so that what it sends at once
    /// fits; a single span larger than the bound is dropped.
    ///
    /// ```
    /// // A service on a small instance: at most 16 MiB waiting.
    /// let layer = tracing_xray::builder()
    ///     .with_max_queued_bytes(16 << 20)
    ///     .build();
    /// assert_eq!(layer.handle().stats().traces_dropped, 0);
    /// ```
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes.max(MIN_MAX_QUEUED_BYTES);
        self
    }

    /// The subsegment count above which a document's completed subtrees are
    /// sent as independent subsegments. Default 100 (the Java and Node SDKs').
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_streaming_threshold(2)
    /// #   .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("batch").in_scope(|| {
    ///         for _ in 0..3 {
    ///             tracing::info_span!("item").in_scope(|| {});
    ///         }
    ///     });
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert!(exporter.len() > 1); // the segment, and subsegments sent on their own
    /// assert_eq!(exporter.traces()[0]["subsegments"].as_array().unwrap().len(), 3);
    /// // The segment's own document keeps 2 of them.
    /// let segment = exporter.json_documents().into_iter().find(|d| d.get("type").is_none()).unwrap();
    /// assert_eq!(segment["subsegments"].as_array().unwrap().len(), 2);
    /// ```
    pub fn with_streaming_threshold(mut self, subsegments: usize) -> Self {
        self.streaming_threshold = subsegments.max(1);
        self
    }

    /// How many finished spans one open trace may hold in memory before they
    /// are streamed as independent subsegments, so that a long-lived root
    /// never grows without bound. Default 1000. Whatever their number, an
    /// open trace holding more than 1 MiB of them (large fields) streams
    /// them too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_max_held_subsegments(2)
    /// #   .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    /// let job = tracing::info_span!("long_running_job");
    /// for _ in 0..3 {
    ///     job.in_scope(|| tracing::info_span!("step").in_scope(|| {}));
    /// }
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert!(!exporter.is_empty()); // sent while `job` is still open
    /// ```
    pub fn with_max_held_subsegments(mut self, subsegments: usize) -> Self {
        self.max_held_subsegments = subsegments.max(1);
        self
    }

    /// Which environments to detect (EC2, ECS, EKS, Elastic Beanstalk,
    /// Lambda) for the segment's `origin` and `aws` resource blocks. All on
    /// by default; detection runs once, on a background thread, and never
    /// delays a segment.
    ///
    /// ```
    /// use tracing_xray::Detectors;
    /// let layer = tracing_xray::builder()
    ///     .with_detectors(Detectors::default().with_ec2(false))
    ///     .build();
    /// # drop(layer);
    /// ```
    pub fn with_detectors(mut self, detectors: crate::Detectors) -> Self {
        self.detectors = detectors;
        self
    }

    /// Decides which traces are recorded, at the root of each trace, when the
    /// incoming trace header holds no decision. Default: X-Ray's default
    /// rule, [`LocalRules::default()`](crate::sampling::LocalRules): the
    /// first request of each second and 5 % of the others.
    ///
    /// ```
    /// use tracing_xray::sampling::{AlwaysSample, LocalRules};
    ///
    /// let everything = tracing_xray::builder().with_sampler(AlwaysSample).build();
    /// let rules = LocalRules::from_json(r#"{"version": 2,
    ///     "default": {"fixed_target": 1, "rate": 0.1},
    ///     "rules": [{"description": "health checks", "host": "*", "http_method": "GET",
    ///                "url_path": "/health", "fixed_target": 0, "rate": 0.0}]}"#).unwrap();
    /// let filtered = tracing_xray::builder().with_sampler(rules).build();
    /// # drop((everything, filtered));
    /// ```
    pub fn with_sampler(mut self, sampler: impl crate::sampling::Sampler) -> Self {
        self.sampler = Some(Arc::new(sampler));
        self
    }

    /// Lambda mode: no segment is sent (Lambda sends the function segment);
    /// top-level spans become independent subsegments of the invocation's
    /// facade. Default: on when `LAMBDA_TASK_ROOT` is set (and not blank).
    /// Whatever this says, a layer built where `LAMBDA_TASK_ROOT` is set
    /// touches `/tmp/.aws-xray/initialized`, as the Go and Python SDKs do.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_lambda(true)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     // The span `lambda_runtime` opens around each invocation:
    ///     let header = "Root=1-5759e988-bd862e3fe1be46a994272793;\
    ///                   Parent=53995c3f42cd8ad8;Sampled=1";
    ///     let invoke = tracing::info_span!("Lambda runtime invoke", xrayTraceId = header);
    ///     invoke.in_scope(|| tracing::info_span!("handler").in_scope(|| {}));
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// let doc = &exporter.json_documents()[0];
    /// assert_eq!(doc["type"], "subsegment");
    /// assert_eq!(doc["parent_id"], "53995c3f42cd8ad8"); // the function's segment, sent by Lambda
    /// ```
    pub fn with_lambda(mut self, lambda: bool) -> Self {
        self.lambda = Some(lambda);
        self
    }

    /// Records the events inside each sampled span as metadata (ERROR
    /// events too, which mark the span a fault with an exception whether
    /// this is on or off): `metadata.tracing.events`, a list of `{time, level, target, message, fields…}`, at most 32 per
    /// span (the rest counted in [`crate::Stats::events_dropped`] and in the
    /// span's `metadata.tracing_xray.events_dropped`).
    /// Default: off (events cost time and document space).
    ///
    /// ```
    /// let layer = tracing_xray::builder().with_events(true).build();
    /// # drop(layer);
    /// ```
    pub fn with_events(mut self, record: bool) -> Self {
        self.events = record;
        self
    }

    /// Builds the layer and starts its worker thread.
    ///
    /// Never fails: an invalid `AWS_XRAY_DAEMON_ADDRESS` is reported on
    /// standard error and the address given in code is used (that of
    /// [`UdpExporter::new`](crate::export::UdpExporter::new), else the
    /// default `127.0.0.1:2000`); if the worker thread
    /// cannot be started, the layer is built switched off.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = tracing_xray::builder().with_service_name("api").build();
    /// let xray = layer.handle(); // to flush before exiting
    /// let _default = tracing_subscriber::registry().with(layer).set_default();
    /// assert!(xray.is_enabled());
    /// ```
    pub fn build(self) -> XrayLayer {
        if disabled_by_env() {
            return disabled();
        }
        crate::clock::warm_up();
        crate::config::mark_lambda_function();
        let exporter = match self.exporter {
            Some(e) => e,
            None => Box::new(UdpExporter::from_env().unwrap_or_else(|err| {
                crate::stderr_line(format_args!(
                    "tracing-xray: {err}; sending to the default 127.0.0.1:2000"
                ));
                UdpExporter::default()
            })),
        };
        // Sanitized once: the segment's name, and what sampling rules match.
        let service_name = crate::config::service_name(
            env_tracing_name().as_deref(),
            self.service_name.as_deref(),
        );
        let cfg = Config {
            service_name,
            service: Service {
                version: self.service_version,
                runtime: "rust",
                runtime_version: Some(crate::resource::runtime_version()),
            },
            streaming_threshold: self.streaming_threshold,
            fields: self.fields,
            resource: crate::resource::spawn(self.detectors),
        };
        let cfg = Arc::new(cfg);
        let (tx, rx) = crossbeam_channel::bounded(self.queue_capacity);
        // Emptied span memory travels back for new spans to reuse.
        let (recycle_tx, recycle_rx) = crate::recycle::channel();
        let counters = Arc::new(Counters::default());
        let worker = match crate::worker::spawn(
            cfg.clone(),
            exporter,
            rx.clone(),
            recycle_tx,
            counters.clone(),
        ) {
            Ok(w) => w,
            Err(err) => {
                crate::stderr_line(format_args!(
                    "tracing-xray: cannot start the worker thread ({err}); tracing is off"
                ));
                return disabled();
            }
        };
        let shared = Arc::new(Shared {
            tx: tx.clone(),
            rx,
            counters: counters.clone(),
            shut_down: AtomicU8::new(crate::handle::RUNNING),
            worker: Mutex::new(Some(worker)),
        });
        XrayLayer {
            inner: Some(crate::owners::register(|tag| LayerInner {
                tag,
                tx,
                counters,
                max_held: self.max_held_subsegments,
                max_held_bytes: crate::config::max_held_bytes(self.max_queued_bytes),
                max_queued_bytes: self.max_queued_bytes as u64,
                sampler: self
                    .sampler
                    .unwrap_or_else(|| Arc::new(crate::sampling::LocalRules::default())),
                cfg,
                lambda: self.lambda.unwrap_or_else(crate::config::lambda_by_env),
                events: self.events,
                recycle: recycle_rx,
                unsampled_spans: Default::default(),
                unwound_spans: Default::default(),
                unsampled_roots: Default::default(),
                shares_subscriber: AtomicBool::new(false),
            })),
            handle: XrayHandle {
                shared: Some(shared),
            },
            with_context: None,
        }
    }

    /// Builds the layer, installs `registry().with(layer)` as the global
    /// default subscriber, and returns a guard that flushes and shuts down
    /// when dropped. If a global subscriber is already set, it is kept, a
    /// message is printed on standard error, and tracing-xray is off: the
    /// layer's worker is stopped at once (its exporter shut down) and the
    /// guard's handle is a disabled one ([`XrayHandle::is_enabled`] is
    /// `false`, `flush` and `shutdown` return `Ok` at once, the stats stay
    /// zero).
    ///
    /// Apps that also want other layers (`fmt`, filters) compose
    /// [`Builder::build`] with `tracing_subscriber::registry()` themselves.
    ///
    /// ```
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let guard = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .init();
    /// tracing::info_span!("job").in_scope(|| {});
    /// drop(guard); // at the end of `main`: flushes and shuts down
    /// assert_eq!(exporter.len(), 1);
    /// ```
    pub fn init(self) -> XrayGuard {
        match self.install() {
            Installed::Yes(guard) => guard,
            Installed::Off(guard, err) => {
                crate::stderr_line(format_args!(
                    "tracing-xray: off (AWS_XRAY_SDK_*); `init`: {}",
                    err.inner
                ));
                guard
            }
            Installed::WithoutLog(guard, err) => {
                crate::stderr_line(format_args!(
                    "tracing-xray: installed, but `log` records are not forwarded: {err}"
                ));
                guard
            }
            Installed::No(err) => {
                crate::stderr_line(format_args!("tracing-xray: {err}; tracing-xray is off"));
                XrayGuard {
                    handle: XrayHandle { shared: None },
                    timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                }
            }
        }
    }

    /// Like [`init`](Self::init), but says so when tracing-xray could not be
    /// installed (a global subscriber is already set) instead of printing
    /// it: the layer's worker is then already stopped. As
    /// tracing-subscriber's `try_init`, except that a `log` logger set
    /// elsewhere is no error here: tracing-xray is installed, only `log`
    /// records are not forwarded to it.
    ///
    /// ```
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let guard = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(exporter.clone())
    ///     .try_init()?;
    /// tracing::info_span!("job").in_scope(|| {});
    /// drop(guard);
    /// assert_eq!(exporter.len(), 1);
    ///
    /// // A second one finds the first installed.
    /// let err = tracing_xray::builder().try_init().unwrap_err();
    /// assert!(err.to_string().starts_with("not installed as the global subscriber"));
    /// # Ok::<(), tracing_xray::TryInitError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A global default subscriber is already set.
    pub fn try_init(self) -> Result<XrayGuard, TryInitError> {
        match self.install() {
            Installed::Yes(guard) | Installed::WithoutLog(guard, _) => Ok(guard),
            Installed::No(err) | Installed::Off(_, err) => Err(err),
        }
    }

    fn install(self) -> Installed {
        use tracing_subscriber::layer::SubscriberExt;
        let layer = self.build();
        let handle = layer.handle();
        let guard = |handle| XrayGuard {
            handle,
            timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        };
        // Whether the layer was installed shows in whether it is still alive:
        // `try_init` also fails when the global subscriber was set but the
        // `log` bridge was not (tracing-subscriber's `tracing-log` feature,
        // turned on by another crate, and a `log` logger already set).
        let alive = layer.inner.as_ref().map(Arc::downgrade);
        let Err(err) = tracing_subscriber::registry().with(layer).try_init() else {
            return Installed::Yes(guard(handle));
        };
        let err = TryInitError { inner: err };
        match alive {
            // Switched off by the environment: nothing to stop, and no
            // telling whether the (empty) subscriber was installed.
            None => Installed::Off(guard(handle), err),
            Some(alive) if alive.upgrade().is_none() => {
                // Nothing can reach the layer: stop its worker now, not when
                // the guard drops.
                let _ = handle.shutdown(DEFAULT_SHUTDOWN_TIMEOUT);
                Installed::No(err)
            }
            Some(_) => Installed::WithoutLog(guard(handle), err),
        }
    }
}

/// What [`Builder::install`] did.
enum Installed {
    Yes(XrayGuard),
    /// Installed, but the `log` bridge was not (a `log` logger is set).
    WithoutLog(XrayGuard, TryInitError),
    No(TryInitError),
    /// Switched off by the environment, and `try_init` failed: whether the
    /// (empty) subscriber was installed is not known.
    Off(XrayGuard, TryInitError),
}

/// [`Builder::try_init`] could not install tracing-xray: a global default
/// subscriber is already set. tracing-xray is off (its worker stopped).
///
/// ```
/// tracing::subscriber::set_global_default(tracing_subscriber::registry())?;
/// let err = tracing_xray::builder().try_init().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "not installed as the global subscriber: \
///      a global default trace dispatcher has already been set"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TryInitError {
    inner: tracing_subscriber::util::TryInitError,
}

impl std::fmt::Display for TryInitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not installed as the global subscriber: {}", self.inner)
    }
}

impl std::error::Error for TryInitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already is `inner`'s; its source is the next one.
        self.inner.source()
    }
}

fn disabled() -> XrayLayer {
    XrayLayer {
        inner: None,
        handle: XrayHandle { shared: None },
        with_context: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capacity meant as "unbounded" builds a layer (the queue's slots
    /// are allocated up front: it is capped), it does not panic or abort.
    #[test]
    fn a_huge_queue_capacity_is_capped_not_a_panic() {
        for asked in [usize::MAX, usize::MAX / 2, 1 << 40] {
            let layer = crate::builder()
                .with_detectors(crate::Detectors::none())
                .with_exporter(crate::export::NoopExporter)
                .with_queue_capacity(asked)
                .build();
            let inner = layer.inner.as_ref().unwrap();
            assert_eq!(inner.tx.capacity(), Some(MAX_QUEUE_CAPACITY), "{asked}");
            layer.handle().shutdown(Duration::from_secs(5)).unwrap();
        }
        let layer = crate::builder()
            .with_detectors(crate::Detectors::none())
            .with_exporter(crate::export::NoopExporter)
            .with_queue_capacity(0)
            .build();
        assert_eq!(layer.inner.as_ref().unwrap().tx.capacity(), Some(1));
    }
}
