//! Two `XrayLayer`s on disjoint per-layer filters, combined every way
//! tracing-subscriber allows: the header of one layer's unsampled child is
//! its own layer's trace, never that of the other layer's span in between
//! (found by a review: a first fix knew only of layers stacked with `with`).

use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::{AlwaysSample, NeverSample};
use tracing_xray::{Sampled, XrayLayer, XraySpanExt};

mod common;
use common::in_memory_layer;

/// B's root `rb`, inside it A's root `ma`, inside that B's child `cb` (B
/// does not see `ma`): A samples, B does not. `cb`'s header must be B's
/// unsampled trace: a child of an unsampled trace holds no data of its own,
/// and the registry's parents (which a lookup from outside the callbacks
/// walks) pass through A's `ma`.
fn check_header<S>(subscriber: S)
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber, || {
        let rb = tracing::info_span!(target: "b", "rb");
        let _rb = rb.enter();
        let ma = tracing::info_span!(target: "a", "ma");
        let _ma = ma.enter();
        let cb = tracing::info_span!(target: "b", "cb");
        let rb_header = rb.xray_header().unwrap();
        let ma_header = ma.xray_header().unwrap();
        assert_eq!(rb_header.sampled(), Sampled::No);
        assert_eq!(ma_header.sampled(), Sampled::Yes);
        let cb_header = cb.xray_header().unwrap();
        assert_eq!(
            (cb_header.root(), cb_header.sampled()),
            (rb_header.root(), Sampled::No),
            "cb's header {cb_header} is A's trace (ma: {ma_header}), not B's (rb: {rb_header})"
        );
    });
}

fn two() -> (XrayLayer, XrayLayer) {
    let (a_out, b_out) = (InMemoryExporter::new(), InMemoryExporter::new());
    (
        in_memory_layer("a", AlwaysSample, &a_out),
        in_memory_layer("b", NeverSample, &b_out),
    )
}

#[test]
fn stacked_with_with() {
    let (a, b) = two();
    check_header(
        tracing_subscriber::registry()
            .with(a.with_filter(filter_fn(|m| m.target() == "a")))
            .with(b.with_filter(filter_fn(|m| m.target() == "b"))),
    );
}

#[test]
fn side_by_side_in_a_vec() {
    let (a, b) = two();
    let layers: Vec<Box<dyn Layer<_> + Send + Sync>> = vec![
        a.with_filter(filter_fn(|m| m.target() == "a")).boxed(),
        b.with_filter(filter_fn(|m| m.target() == "b")).boxed(),
    ];
    check_header(tracing_subscriber::registry().with(layers));
}

#[test]
fn joined_with_and_then() {
    let (a, b) = two();
    check_header(
        tracing_subscriber::registry().with(
            a.with_filter(filter_fn(|m| m.target() == "a"))
                .and_then(b.with_filter(filter_fn(|m| m.target() == "b"))),
        ),
    );
}

#[test]
fn inner_layer_behind_reload() {
    let (a, b) = two();
    let (a, _handle) = reload::Layer::new(a.with_filter(filter_fn(|m| m.target() == "a")));
    check_header(
        tracing_subscriber::registry()
            .with(a)
            .with(b.with_filter(filter_fn(|m| m.target() == "b"))),
    );
}

/// Overlapping filters (a span both layers see; README: not meant for
/// use): a child of the trace one layer holds unsampled still gets that
/// trace's header.
#[test]
fn overlapping_filters_keep_the_header_of_the_shared_trace() {
    let (a_out, b_out) = (InMemoryExporter::new(), InMemoryExporter::new());
    let a = in_memory_layer("a", NeverSample, &a_out);
    let b = in_memory_layer("b", AlwaysSample, &b_out);
    let subscriber = tracing_subscriber::registry()
        .with(a.with_filter(filter_fn(|m| m.target() != "b")))
        .with(b.with_filter(filter_fn(|m| m.target() != "a")));
    tracing::subscriber::with_default(subscriber, || {
        let s = tracing::info_span!(target: "s", "shared",
            xray.trace_header = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
        let c = tracing::info_span!(target: "b", parent: &s, "c");
        assert_eq!(s.xray_header().unwrap().sampled(), Sampled::No);
        assert!(c.xray_header().is_some(), "c is in s's (unsampled) trace");
    });
}

#[test]
fn with_other_layers_optional_boxed_three_and_outer_reload() {
    use tracing_subscriber::filter::EnvFilter;
    let fa = || filter_fn(|m| m.target() == "a");
    let fb = || filter_fn(|m| m.target() == "b");
    let (a, b) = two();
    check_header(
        tracing_subscriber::registry()
            .with(Some(a.with_filter(fa())))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(EnvFilter::new("trace"))
            .with(b.with_filter(fb()).boxed()),
    );
    // Three layers, the middle one unrelated to the test.
    let (a, b) = two();
    let c = in_memory_layer("c", AlwaysSample, &InMemoryExporter::new());
    check_header(
        tracing_subscriber::registry()
            .with(a.with_filter(fa()))
            .with(b.with_filter(fb()))
            .with(c.with_filter(filter_fn(|m| m.target() == "c"))),
    );
    let (a, b) = two();
    let c = in_memory_layer("c", AlwaysSample, &InMemoryExporter::new());
    check_header(
        tracing_subscriber::registry()
            .with(a.with_filter(fa()))
            .with(c.with_filter(filter_fn(|m| m.target() == "c")))
            .with(b.with_filter(fb())),
    );
    // The outer layer behind reload: its on_layer runs at construction.
    let (a, b) = two();
    let (b, _h) = reload::Layer::new(b.with_filter(fb()));
    check_header(
        tracing_subscriber::registry()
            .with(a.with_filter(fa()))
            .with(b),
    );
}
