//! AWS X-Ray tracing for `tracing`-instrumented applications.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod id;

pub use id::{ParseIdError, SegmentId, TraceId};
