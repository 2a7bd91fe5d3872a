//! The public types' common traits (Rust API Guidelines C-COMMON-TRAITS,
//! C-SEND-SYNC, C-GOOD-ERR, C-SERDE). Checked at compile time: a missing
//! impl fails the build of this test.

use std::fmt::Debug;

use tracing_xray::export::{
    Document, DocumentKind, ExportError, ExportFailure, ExportOutcome, InMemoryExporter,
    NoopExporter, TimelineExporter, UdpExporter,
};
use tracing_xray::sampling::{
    AlwaysSample, CentralizedSampler, CentralizedSamplerBuilder, LocalRules, NeverSample,
    RateSampler, SamplingDecision, SamplingRequest, SamplingRulesError, SystemClock,
};
use tracing_xray::{
    Builder, DaemonAddress, DaemonAddressError, Detectors, FlushError, ParseIdError, Sampled,
    SegmentId, Stats, TraceHeader, TraceId, XrayGuard, XrayHandle, XrayLayer,
};

/// Compiles only if each type implements its bounds.
macro_rules! assert_all {
    ($($ty:ty: [$($bound:tt)+]),+ $(,)?) => {{
        $({
            fn implements<T: ?Sized + $($bound)+>() {}
            implements::<$ty>();
        })+
    }};
}

// ---------------------------------------------------------------- guards

#[test]
fn handles_layers_and_guards_are_send_sync_debug() {
    assert_all!(
        XrayLayer: [Send + Sync + Debug + 'static],
        XrayHandle: [Send + Sync + Debug + Clone + 'static],
        XrayGuard: [Send + Sync + Debug],
        Builder: [Send + Debug + Default],
        Detectors: [Send + Sync + Debug + Clone + Default],
    );
}

#[test]
fn exporters_are_send_and_debug() {
    assert_all!(
        UdpExporter: [Send + Debug + Default],
        InMemoryExporter: [Send + Sync + Debug + Clone + Default],
        NoopExporter: [Send + Sync + Debug + Clone + Copy + Default],
        TimelineExporter: [Send + Debug],
        Document: [Send + Sync + Debug + Clone + PartialEq],
        DocumentKind: [Send + Sync + Debug + Clone + Copy + PartialEq + Eq + std::hash::Hash],
        ExportOutcome: [Send + Sync + Debug + Default],
        ExportFailure: [Send + Sync + Debug],
    );
}

#[test]
fn samplers_are_send_sync_debug() {
    assert_all!(
        AlwaysSample: [Send + Sync + Debug + Clone + Copy + Default],
        NeverSample: [Send + Sync + Debug + Clone + Copy + Default],
        RateSampler: [Send + Sync + Debug + Clone + Copy],
        LocalRules: [Send + Sync + Debug + Clone + Default],
        CentralizedSampler: [Send + Sync + Debug],
        CentralizedSamplerBuilder: [Send + Debug],
        SamplingDecision: [Send + Sync + Debug + Clone + PartialEq],
        SamplingRequest<'static>: [Send + Sync + Debug + Clone + Copy + Default + PartialEq],
        SystemClock: [Send + Sync + Debug + Clone + Copy + Default],
    );
}

#[test]
fn value_types_have_the_common_traits() {
    assert_all!(
        TraceId: [Send + Sync + Debug + Clone + Copy + PartialEq + Eq + std::hash::Hash + Ord + std::fmt::Display + std::str::FromStr],
        SegmentId: [Send + Sync + Debug + Clone + Copy + PartialEq + Eq + std::hash::Hash + Ord + std::fmt::Display + std::str::FromStr],
        TraceHeader: [Send + Sync + Debug + Clone + Default + PartialEq + Eq + std::hash::Hash + std::fmt::Display + std::str::FromStr],
        Sampled: [Send + Sync + Debug + Clone + Copy + Default + PartialEq + Eq + std::hash::Hash],
        DaemonAddress: [Send + Sync + Debug + Clone + Copy + Default + PartialEq + Eq + std::hash::Hash + std::fmt::Display + std::str::FromStr],
        Stats: [Send + Sync + Debug + Clone + Copy + Default + PartialEq + Eq],
    );
}

#[test]
fn error_types_are_std_errors_send_sync_static() {
    assert_all!(
        FlushError: [std::error::Error + Send + Sync + 'static],
        tracing_xray::TryInitError: [std::error::Error + Send + Sync + 'static],
        ExportError: [std::error::Error + Send + Sync + 'static],
        SamplingRulesError: [std::error::Error + Send + Sync + 'static],
        DaemonAddressError: [std::error::Error + Send + Sync + 'static],
        ParseIdError: [std::error::Error + Send + Sync + 'static],
    );
}

#[cfg(feature = "http")]
#[test]
fn http_exporter_types() {
    use tracing_xray::export::{
        BacklogBound, BacklogFull, HttpExporter, HttpExporterBuilder, HttpExporterError, HttpStats,
        HttpStatsHandle,
    };
    assert_all!(
        HttpExporter: [Send + Debug],
        HttpExporterBuilder: [Send + Debug + Default],
        HttpExporterError: [std::error::Error + Send + Sync + 'static + Clone + PartialEq],
        BacklogFull: [std::error::Error + Send + Sync + 'static + Copy + PartialEq],
        BacklogBound: [Send + Sync + Debug + Copy + PartialEq],
        HttpStats: [Send + Sync + Debug + Copy + Default + PartialEq],
        HttpStatsHandle: [Send + Sync + Debug + Clone],
    );
}

#[cfg(feature = "tower")]
#[test]
fn tower_types() {
    use tracing_xray::tower::{
        XrayBody, XrayClient, XrayClientLayer, XrayFlush, XrayFlushLayer, XrayServer,
        XrayServerLayer,
    };
    assert_all!(
        XrayServerLayer: [Send + Sync + Debug + Clone + Default],
        XrayClientLayer: [Send + Sync + Debug + Clone + Default],
        XrayFlushLayer: [Send + Sync + Debug + Clone],
        XrayServer<()>: [Send + Sync + Debug + Clone],
        XrayClient<()>: [Send + Sync + Debug + Clone],
        XrayFlush<()>: [Send + Sync + Debug + Clone],
        // A body goes where its inner body went: `Unpin` too, as
        // `lambda_http` asks of one.
        XrayBody<String>: [Send + Sync + Debug + Unpin],
    );
}

#[cfg(feature = "aws-sdk")]
#[test]
fn aws_sdk_types() {
    use tracing_xray::aws_sdk::XrayInterceptor;
    assert_all!(XrayInterceptor: [Send + Sync + Debug + Clone + Default]);
}

#[cfg(feature = "opentelemetry")]
#[test]
fn opentelemetry_types() {
    use tracing_xray::opentelemetry::XrayPropagator;
    assert_all!(XrayPropagator: [Send + Sync + Debug + Clone + Default]);
}

// ---------------------------------------------------------------- found missing by an API review

/// C-COMMON-TRAITS / consistency: `HttpExporterBuilder` (and `Builder`,
/// `Detectors`) implement `Default`; the centralized sampler's builder has
/// only `CentralizedSampler::builder()`, so `..Default::default()`-style and
/// generic `T: Default` code cannot make one.
#[test]
fn centralized_sampler_builder_is_default() {
    assert_all!(CentralizedSamplerBuilder: [Default]);
}

/// C-SERDE: `TraceId` and `SegmentId` implement `serde::Serialize`
/// unconditionally (an internal need of the JSON writer leaking into the
/// public API, making serde a public dependency without a `serde` feature)
/// but not `Deserialize`: a user who stores an id in a serialized struct can
/// write it and never read it back.
#[test]
fn ids_that_serialize_also_deserialize() {
    assert_all!(
        TraceId: [serde::de::DeserializeOwned],
        SegmentId: [serde::de::DeserializeOwned],
    );
}

/// `Sampler` is implemented for `Arc<S>` and `Box<S>`; `Clock` (the same kind
/// of user-implemented, boxed-by-the-builder trait) only for `Arc<C>`, so a
/// `Box<dyn Clock>` cannot be passed to `with_clock`.
#[test]
fn clock_is_implemented_for_box_like_sampler() {
    assert_all!(
        Box<dyn tracing_xray::sampling::Sampler>: [tracing_xray::sampling::Sampler],
        Box<dyn tracing_xray::sampling::Clock>: [tracing_xray::sampling::Clock],
    );
}
