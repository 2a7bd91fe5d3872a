//! AWS X-Ray distributed tracing for [`tracing`]-instrumented applications,
//! as one [`tracing_subscriber::Layer`].
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry().with(tracing_xray::layer()).init();
//! ```
//!
//! Root spans become X-Ray segments (named after the service), child spans
//! subsegments, span fields annotations and metadata. Finished traces are
//! serialized and sent by one background worker thread, never on the
//! application's threads, to the X-Ray daemon over UDP (`127.0.0.1:2000`, or
//! `AWS_XRAY_DAEMON_ADDRESS`) or to any [`export::Exporter`].
//!
//! # Flushing
//!
//! A global subscriber is never dropped: flush before the program exits, and
//! in AWS Lambda at the end of every invocation, through the layer's
//! [`XrayHandle`] (or keep the guard of [`init`] alive).
//!
//! ```
//! use std::time::Duration;
//! use tracing_subscriber::prelude::*;
//! use tracing_xray::export::InMemoryExporter;
//!
//! let exporter = InMemoryExporter::new();
//! let layer = tracing_xray::builder()
//!     .with_service_name("orders")
//!     .with_sampler(tracing_xray::sampling::AlwaysSample)
//!     .with_exporter(exporter.clone())
//!     .build();
//! let xray = layer.handle();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     let request = tracing::info_span!(
//!         "place_order",
//!         annotation.customer = "c-42",   // indexed: filter traces by it
//!         metadata.items = 3,             // any JSON, not indexed
//!     );
//!     request.in_scope(|| {
//!         tracing::info_span!("charge_card").in_scope(|| {
//!             tracing::error!("card declined"); // marks the subsegment as a fault
//!         });
//!     });
//! });
//! xray.flush(Duration::from_secs(2)).unwrap();
//!
//! let segment = &exporter.traces()[0];
//! assert_eq!(segment["name"], "orders");
//! assert_eq!(segment["annotations"]["customer"], "c-42");
//! assert_eq!(segment["subsegments"][0]["fault"], true);
//! ```
//!
//! # Span fields
//!
//! | field | goes to |
//! |---|---|
//! | `annotation.KEY` | `annotations.KEY` (indexed; keys made filter-safe, strings cut at 1,000 characters, 50 per trace) |
//! | `metadata.KEY`, `metadata.NS.KEY` | `metadata.default.KEY`, `metadata.NS.KEY` |
//! | `xray.name`, `otel.name` | the subsegment's name |
//! | `enduser.id`, `xray.user` | the segment's `user` |
//! | `error = true`, `otel.status_code = "ERROR"` | `fault` |
//! | `xray.trace_header` | continues that incoming trace (root spans) |
//! | a `&dyn Error` value | `fault` and `cause.exceptions` with the `source()` chain |
//! | any other field | `metadata.tracing.FIELD` |
//!
//! An ERROR event inside a span marks it as a fault with the event's
//! message; other events are sent only with [`Builder::with_events`].
//!
//! # Sampling, propagation, Lambda
//!
//! The sampling decision is taken once per trace, at the root: an incoming
//! `Sampled=1`/`0` wins, else the [`sampling::Sampler`] (default: X-Ray's
//! default rule, one request a second plus 5 %). [`XraySpanExt`] continues
//! an incoming [`TraceHeader`] and produces the header for downstream calls.
//! In AWS Lambda, spans become independent subsegments of the invocation's
//! facade (see [`Builder::with_lambda`]).
//!
//! # Limits
//!
//! No document over 64,000 bytes leaves (large traces are split into
//! independent subsegments, oversize spans trimmed and marked); the queue to
//! the worker is bounded (drops are counted in [`Stats`]); the layer never
//! panics and never traces its own worker or exporters.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod assemble;
#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub mod aws_sdk;
mod builder;
mod config;
mod daemon_address;
mod events;
pub mod export;
mod fields;
mod handle;
mod header;
#[cfg(feature = "tower")]
mod http;
mod id;
mod layer;
mod limits;
mod model;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod opentelemetry;
mod resource;
pub mod sampling;
mod span_data;
mod span_ext;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod worker;

pub use builder::{Builder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use daemon_address::{DaemonAddress, DaemonAddressError};
pub use handle::{FlushError, Stats, XrayGuard, XrayHandle};
pub use header::{Sampled, TraceHeader, HEADER_NAME, HEADER_NAME_LOWERCASE};
pub use id::{ParseIdError, SegmentId, TraceId};
pub use layer::XrayLayer;
pub use resource::Detectors;
pub use span_ext::XraySpanExt;

/// A layer configured from the environment, sending to the X-Ray daemon.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry().with(tracing_xray::layer()).init();
/// ```
pub fn layer() -> XrayLayer {
    Builder::default().build()
}

/// A [`Builder`] to configure the layer.
///
/// ```
/// let layer = tracing_xray::builder().with_service_name("api").build();
/// # drop(layer);
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// Installs `registry().with(layer())` as the global subscriber and returns
/// a guard that flushes and shuts the layer down when dropped.
///
/// ```no_run
/// let _xray = tracing_xray::init();
/// ```
pub fn init() -> XrayGuard {
    Builder::default().init()
}
