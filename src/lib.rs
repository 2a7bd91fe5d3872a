//! AWS X-Ray tracing for `tracing`-instrumented applications.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod assemble;
mod builder;
mod config;
mod daemon_address;
mod events;
pub mod export;
mod fields;
mod handle;
mod header;
mod id;
mod layer;
mod limits;
mod model;
mod resource;
pub mod sampling;
mod span_data;
mod span_ext;
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
