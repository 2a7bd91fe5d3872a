//! AWS X-Ray tracing for `tracing`-instrumented applications.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod daemon_address;
mod header;
mod id;

pub use daemon_address::{DaemonAddress, DaemonAddressError};
pub use header::{Sampled, TraceHeader, HEADER_NAME, HEADER_NAME_LOWERCASE};
pub use id::{ParseIdError, SegmentId, TraceId};
