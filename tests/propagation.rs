//! Continuing incoming traces and handing them on: `XraySpanExt`, the
//! `xray.trace_header` field, and where the sampling decision is taken.

mod common;

use std::sync::Arc;

use tracing::info_span;
use tracing_xray::sampling::{
    AlwaysSample, LocalRules, NeverSample, Sampler, SamplingDecision, SamplingRequest,
};
use tracing_xray::{Sampled, TraceHeader, XraySpanExt};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const PARENT: &str = "53995c3f42cd8ad8";
const REVIEW_LINEAGE: &str = "a87bd80c:1|68fd508a:5|c512fbe3:2";

fn run(
    sampler: impl Sampler,
    f: impl FnOnce(),
) -> (Vec<serde_json::Value>, tracing_xray::XrayHandle) {
    common::run_in_memory(|b| b.with_sampler(sampler), f)
}

#[test]
fn incoming_header_continues_the_trace_and_is_handed_on() {
    let incoming = TraceHeader::parse(&format!(
        "Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5;Self=1-abc"
    ));
    let mut outgoing = None;
    let (traces, _) = run(NeverSample, || {
        let root = info_span!("handle");
        root.set_xray_parent(&incoming);
        root.in_scope(|| {
            let call = info_span!("call_downstream");
            outgoing = call.xray_header();
        });
    });
    assert_eq!(
        traces.len(),
        1,
        "Sampled=1 wins over a sampler that says no"
    );
    let seg = &traces[0];
    assert_eq!(seg["trace_id"], ROOT);
    assert_eq!(seg["parent_id"], PARENT);
    let out = outgoing.unwrap();
    assert_eq!(out.root().unwrap().to_string(), ROOT);
    assert_eq!(
        out.parent().unwrap().to_string(),
        seg["subsegments"][0]["id"]
    );
    assert_eq!(out.sampled(), Sampled::Yes);
    assert_eq!(out.extra("Lineage"), Some("a87bd80c:1|68fd508a:5"));
    assert_eq!(out.extra("Self"), None);
    assert_eq!(
        out.to_string(),
        format!(
            "Root={ROOT};Parent={};Sampled=1;Lineage=a87bd80c:1|68fd508a:5",
            seg["subsegments"][0]["id"].as_str().unwrap()
        )
    );
}

#[test]
fn trace_header_field_continues_a_trace_without_code() {
    let header = format!("Root={ROOT};Parent={PARENT};Sampled=1");
    let (traces, _) = run(NeverSample, || {
        info_span!("handle", xray.trace_header = %header).in_scope(|| {});
    });
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["trace_id"], ROOT);
    assert_eq!(traces[0]["parent_id"], PARENT);
    assert!(
        traces[0]["metadata"]["tracing"]
            .get("xray.trace_header")
            .is_none()
    );
}

#[test]
fn trace_header_field_recorded_late_continues_the_trace() {
    // `Empty` at creation, recorded before the first child: as with
    // `set_xray_parent`, the root continues the caller's trace.
    let header = format!("Root={ROOT};Parent={PARENT};Sampled=1");
    let (traces, _) = run(NeverSample, || {
        let root = info_span!("handle", xray.trace_header = tracing::field::Empty);
        root.record("xray.trace_header", header.as_str());
        root.in_scope(|| {
            info_span!("child", xray.trace_header = %header).in_scope(|| {});
        });
    });
    assert_eq!(
        traces.len(),
        1,
        "Sampled=1 wins over a sampler that says no"
    );
    assert_eq!(traces[0]["trace_id"], ROOT);
    assert_eq!(traces[0]["parent_id"], PARENT);
    // Never sent as a field, on the root or on a child.
    let text = traces[0].to_string();
    assert!(!text.contains("xray.trace_header"), "{text}");

    // The caller's Sampled=0 is honoured the same way.
    let (traces, xray) = run(AlwaysSample, || {
        let root = info_span!("handle", xray.trace_header = tracing::field::Empty);
        root.record(
            "xray.trace_header",
            format!("Root={ROOT};Parent={PARENT};Sampled=0").as_str(),
        );
        root.in_scope(|| info_span!("child").in_scope(|| {}));
    });
    assert!(traces.is_empty());
    assert_eq!(xray.stats().traces_queued, 0);

    // After the decision (here: the first child), recording it changes nothing.
    let (traces, _) = run(AlwaysSample, || {
        let root = info_span!("handle", xray.trace_header = tracing::field::Empty);
        root.in_scope(|| info_span!("child").in_scope(|| {}));
        root.record("xray.trace_header", header.as_str());
    });
    assert_eq!(traces.len(), 1);
    assert_ne!(traces[0]["trace_id"], ROOT);
    assert!(!traces[0].to_string().contains("xray.trace_header"));
}

#[test]
fn trace_header_field_recorded_with_debug_still_continues_the_trace() {
    let header = format!("Root={ROOT};Parent={PARENT};Sampled=1");
    let (traces, _) = run(NeverSample, || {
        // `?` (Debug) quotes the string: the quotes are not the header's.
        info_span!("handle", xray.trace_header = ?header.as_str()).in_scope(|| {});
    });
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["trace_id"], ROOT);
    assert_eq!(traces[0]["parent_id"], PARENT);
}

#[test]
fn sampled_zero_sends_nothing_but_still_propagates() {
    let mut headers = Vec::new();
    let (traces, xray) = run(AlwaysSample, || {
        let root = info_span!("handle", annotation.a = 1);
        root.set_xray_parent(&TraceHeader::parse(&format!(
            "Root={ROOT};Parent={PARENT};Sampled=0"
        )));
        root.in_scope(|| {
            let child = info_span!("child");
            child.in_scope(|| {
                headers.push(info_span!("grandchild").xray_header().unwrap());
                tracing::error!("not recorded");
            });
            headers.push(child.xray_header().unwrap());
        });
        headers.push(root.xray_header().unwrap());
    });
    assert!(traces.is_empty());
    assert_eq!(xray.stats().traces_queued, 0, "nothing queued");
    for h in &headers {
        assert_eq!(h.root().unwrap().to_string(), ROOT);
        assert_eq!(h.sampled(), Sampled::No);
        assert!(h.parent().is_some());
    }
}

#[test]
fn malformed_header_starts_a_fresh_trace() {
    let (traces, _) = run(AlwaysSample, || {
        let root = info_span!("handle");
        root.set_xray_parent(&TraceHeader::parse(
            "Root=garbage;Parent=xyz;Sampled=banana;;=",
        ));
        root.in_scope(|| info_span!("child").in_scope(|| {}));
    });
    assert_eq!(traces.len(), 1);
    let trace_id = traces[0]["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 35);
    assert_ne!(trace_id, ROOT);
    assert!(traces[0].get("parent_id").is_none());
}

#[test]
fn set_xray_parent_after_the_first_child_changes_nothing_and_says_so() {
    let header = TraceHeader::parse(&format!("Root={ROOT};Sampled=0"));
    let mut taken = Vec::new();
    let (traces, _) = run(AlwaysSample, || {
        let root = info_span!("handle");
        root.in_scope(|| {
            let child = info_span!("child");
            // Not a root: nothing to continue.
            taken.push(child.set_xray_parent(&header));
        });
        taken.push(root.set_xray_parent(&header));
        // No layer traces a disabled span.
        taken.push(tracing::Span::none().set_xray_parent(&header));
        let fresh = info_span!("handle");
        taken.push(fresh.set_xray_parent(&header));
    });
    assert_eq!(taken, [false, false, false, true]);
    assert_eq!(traces.len(), 1);
    assert_ne!(traces[0]["trace_id"], ROOT);
}

/// `xray_trace_id` reads the trace id (for a log line) and leaves the
/// sampling decision open: the sampler still sees the path recorded after
/// it. (`xray_header` decides then and there: the path would come too late,
/// and a rule on it would not apply.)
#[test]
fn reading_the_trace_id_leaves_the_decision_to_the_request_fields() {
    /// Samples every trace, and keeps the paths it was asked about.
    #[derive(Clone, Default)]
    struct Paths(Arc<std::sync::Mutex<Vec<Option<String>>>>);
    impl Sampler for Paths {
        fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
            let path = request.url_path.map(str::to_owned);
            self.0.lock().unwrap().push(path);
            SamplingDecision::new(true)
        }
    }
    let paths = Paths::default();
    let mut read = None;
    let (traces, _) = run(paths.clone(), || {
        let root = info_span!("request", url.path = tracing::field::Empty);
        read = root.xray_trace_id();
        root.record("url.path", "/orders");
        root.in_scope(|| {
            let work = info_span!("work");
            // A child has its trace's id.
            assert_eq!(work.xray_trace_id(), read);
        });
    });
    assert_eq!(*paths.0.lock().unwrap(), [Some("/orders".to_owned())]);
    assert_eq!(traces.len(), 1);
    assert_eq!(
        traces[0]["trace_id"].as_str(),
        read.map(|t| t.to_string()).as_deref()
    );
    // An unsampled trace's spans have its id too.
    run(NeverSample, || {
        let root = info_span!("request");
        let child = root.in_scope(|| info_span!("work"));
        assert!(child.xray_trace_id().is_some());
        assert_eq!(child.xray_trace_id(), root.xray_trace_id());
    });
}

#[test]
fn sampler_sees_method_and_path_even_when_recorded_late() {
    let rules = LocalRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0},
            "rules": [{"description": "no health checks", "host": "*", "http_method": "GET",
                       "url_path": "/health", "fixed_target": 0, "rate": 0.0}]}"#,
    )
    .unwrap();
    let (traces, _) = run(rules, || {
        for path in ["/health", "/orders", "/health?verbose=1"] {
            let root = info_span!(
                "request",
                http.request.method = "GET",
                url.path = tracing::field::Empty
            );
            root.record("url.path", path);
            root.in_scope(|| info_span!("work").in_scope(|| {}));
        }
        // Full URL form.
        info_span!(
            "request",
            http.method = "GET",
            http.url = "http://h:8080/health"
        )
        .in_scope(|| {});
    });
    assert_eq!(traces.len(), 1, "only /orders is traced");
    assert_eq!(traces[0]["http"]["request"]["url"], "/orders");
}

#[test]
fn matched_rule_name_is_written() {
    struct Named;
    impl Sampler for Named {
        fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
            assert_eq!(request.service_name, Some("svc"));
            SamplingDecision::sampled().with_rule_name("Checkout")
        }
    }
    let (traces, _) = run(Arc::new(Named), || info_span!("r").in_scope(|| {}));
    assert_eq!(traces[0]["aws"]["xray"]["sampling_rule_name"], "Checkout");
}

#[test]
fn the_sampler_sees_the_segment_and_span_names_and_an_empty_rule_name_is_left_out() {
    struct Check;
    impl Sampler for Check {
        fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
            // Sanitized, as the segment carries it: rules match what X-Ray shows.
            assert_eq!(request.service_name, Some("my serviceweird"));
            // The root span's own name, for a sampler that tells jobs apart.
            assert_eq!(request.span_name, Some("r"));
            SamplingDecision::sampled().with_rule_name("")
        }
    }
    let (traces, _) = common::run_in_memory(
        |b| {
            b.with_sampler(Arc::new(Check))
                .with_service_name("my service!*(weird)?")
        },
        || info_span!("r").in_scope(|| {}),
    );
    assert_eq!(traces[0]["name"], "my serviceweird");
    let text = traces[0].to_string();
    assert!(!text.contains("sampling_rule_name"), "{text}");
}

/// A root that is a call (a job's request to another service) serves no
/// request: the sampler sees no host, method or path (the callee's), as
/// the SDKs sample such a segment on an empty request. A root serving one
/// shows them.
#[test]
fn the_sampler_sees_no_request_for_a_root_that_is_a_call() {
    /// Host, method and path, as the sampler saw them.
    type Seen = (Option<String>, Option<String>, Option<String>);
    struct Record(std::sync::Mutex<Vec<Seen>>);
    impl Sampler for Record {
        fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
            let own = |s: Option<&str>| s.map(str::to_owned);
            self.0.lock().unwrap().push((
                own(request.host),
                own(request.http_method),
                own(request.url_path),
            ));
            SamplingDecision::sampled()
        }
    }
    let seen = Arc::new(Record(Default::default()));
    run(seen.clone(), || {
        info_span!(
            "call",
            otel.kind = "client",
            http.request.method = "GET",
            url.full = "https://api.example.com/health"
        )
        .in_scope(|| {});
        info_span!(
            "request",
            otel.kind = "server",
            http.request.method = "GET",
            url.full = "https://shop.example.com/cart",
            server.address = "shop.example.com"
        )
        .in_scope(|| {});
    });
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen[0], (None, None, None), "the call: {seen:?}");
    assert_eq!(
        seen[1],
        (
            Some("shop.example.com".to_owned()),
            Some("GET".to_owned()),
            Some("/cart".to_owned())
        )
    );
}

#[test]
fn requested_decision_is_taken_by_the_sampler_and_reported() {
    let mut header = None;
    let (traces, _) = run(NeverSample, || {
        let root = info_span!("handle");
        root.set_xray_parent(&TraceHeader::parse(&format!(
            "Root={ROOT};Parent={PARENT};Sampled=?"
        )));
        header = root.xray_header();
    });
    assert!(traces.is_empty());
    assert_eq!(header.unwrap().sampled(), Sampled::No, "`?` is answered");
}

/// Found by a hunt of the public API: a span a global filter disabled
/// (`debug_span!` under an `info` filter, the usual set-up) gave no header
/// (`xray_header()` and `xray_trace_id()` were `None`) inside a traced
/// request, so a user propagating by hand lost the trace downstream; the
/// crate's own tower and AWS SDK integrations already fell back to the
/// current span. It gives the current span's, the traced span the call is
/// made in; `Span::none()` still gives nothing, and so does a disabled span
/// outside any traced one.
#[test]
fn a_span_a_global_filter_disabled_hands_on_the_current_spans_header() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let layer = tracing_xray::builder()
        .with_sampler(AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(tracing_xray::export::NoopExporter)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(LevelFilter::INFO);
    tracing::subscriber::with_default(subscriber, || {
        let outside = tracing::debug_span!("call_outside");
        assert!(outside.is_disabled());
        assert_eq!(outside.xray_header(), None);
        let request = info_span!("handle");
        let expected = request.xray_header().expect("the request is traced");
        request.in_scope(|| {
            let call = tracing::debug_span!("call_downstream");
            assert!(call.is_disabled());
            assert_eq!(call.xray_header(), Some(expected.clone()));
            assert_eq!(call.xray_trace_id(), expected.root());
            assert_eq!(tracing::Span::none().xray_header(), None);
            // Its own data it has none of: it continues no trace.
            assert!(!call.set_xray_parent(&TraceHeader::parse(&format!("Root={ROOT}"))));
        });
    });
}

/// Found by a hunt of propagation. What the user does: continues the caller's trace from the request's
/// header with the `xray.trace_header` field, recording the header map's
/// value with `?` (an `Option<&HeaderValue>` or `Option<String>` has no
/// `Display`): `fields(xray.trace_header = ?headers.get("x-amzn-trace-id"))`.
/// What they should get: README "`xray.trace_header` | continues that
/// `X-Amzn-Trace-Id` (root spans)"; the README accepts a URL field "recorded
/// with `?`, quoted, as `Some("…")`" as the URL alone, and src/layer.rs's
/// `header_field` already strips the quotes `?` adds to a string.
/// What happens: the `Some(…)` wrapping is kept, `Root` is unreadable, the
/// caller's trace is silently not continued (a fresh trace id, no
/// `parent_id`), and the damaged pair `Some("Root` = … is forwarded to
/// downstream services as an extra key.
#[test]
fn trace_header_recorded_with_debug_as_an_option_continues_the_trace() {
    let header: Option<String> = Some(format!("Root={ROOT};Parent={PARENT};Sampled=1"));
    let mut downstream = None;
    let (traces, _) = run(AlwaysSample, || {
        let root = info_span!("handle", xray.trace_header = ?header);
        root.in_scope(|| downstream = info_span!("call").xray_header());
    });
    assert_eq!(traces.len(), 1);
    let downstream = downstream.unwrap();
    assert_eq!(
        traces[0]["trace_id"], ROOT,
        "the caller's trace is not continued; downstream header: {downstream}"
    );
    assert_eq!(traces[0]["parent_id"], PARENT);
    assert_eq!(
        downstream.extras().count(),
        0,
        "junk forwarded: {downstream}"
    );
}

/// Found by a hunt of propagation. What the user does: a service continues an incoming request whose
/// `X-Amzn-Trace-Id` carries, besides Root/Parent/Sampled, an application's
/// own pair (a 230-byte session token) and then Lambda's `Lineage`, which
/// Lambda appends last; the service calls a downstream service (with the
/// header `xray_header` gives, which XrayClientLayer and the AWS SDK
/// interceptor send).
/// What they should get: SPEC §3.1 "`Lineage=`: appended by Lambda ... keep
/// and forward, never interpret"; README "`Lineage` and other keys are passed
/// on within a 256-byte budget"; and the crate's own rule for that budget in
/// src/opentelemetry.rs `header_from_context`: "`Lineage` first ... the loop
/// detection of Lambda's `Lineage` before the rest" (there, a 230-byte
/// baggage entry beside `Lineage` keeps `Lineage`: tests/opentelemetry_interop.rs
/// `inject_keeps_the_same_pairs_within_the_budget_lineage_first`).
/// What happens: `TraceHeader::parse`, behind every incoming path
/// (XrayServerLayer, `set_xray_parent`, `xray.trace_header`, and
/// `XrayPropagator::extract` too), spends the 256 bytes in header order
/// (src/header.rs `parse` -> `push_extra`): the earlier pair takes the budget
/// and `Lineage` is dropped. The downstream header has the session pair and
/// no `Lineage`, so Lambda's recursion detection no longer sees a loop that
/// goes through this service.
#[test]
fn lineage_is_forwarded_even_after_a_large_pair() {
    const LINEAGE: &str = "a87bd80c:1|68fd508a:5|c512fbe3:2";
    let session = "s".repeat(230);
    let incoming =
        format!("Root={ROOT};Parent={PARENT};Sampled=1;session={session};Lineage={LINEAGE}");
    let mut downstream = None;
    let (traces, _) = run(AlwaysSample, || {
        let root = info_span!("handle");
        assert!(root.set_xray_parent(&tracing_xray::TraceHeader::parse(&incoming)));
        root.in_scope(|| downstream = info_span!("call_next").xray_header());
    });
    assert_eq!(traces.len(), 1);
    let downstream = downstream.unwrap();
    assert_eq!(
        downstream.extra("Lineage"),
        Some(LINEAGE),
        "Lambda's Lineage was dropped from the downstream header: {downstream}"
    );
}

/// Found by a review of the Lineage fix. What the user does: continues an incoming request whose header carries an
/// empty (damaged) `Lineage=` pair from an upstream hop, then an application's
/// 230-byte pair, then the `Lineage` Lambda appends last.
/// What they should get: src/header.rs `parse` (be49fda) "Lambda's `Lineage`
/// ..., which it appends last, keeps its room in the budget whatever pairs
/// come before it"; rustdoc: pairs "with an empty key or value ... are
/// dropped".
/// What happens: the room is reserved for the last valid `Lineage` but given
/// back at the FIRST pair keyed `Lineage` (src/header.rs:239-241), the
/// invalid one, which `push_extra` then rejects; the 230-byte pair eats the
/// room and the real `Lineage` is dropped.
#[test]
fn lineage_after_an_invalid_lineage_keeps_its_room() {
    let session = "s".repeat(230);
    let h = tracing_xray::TraceHeader::parse(&format!(
        "Root={ROOT};Parent={PARENT};Sampled=1;Lineage=;session={session};Lineage={REVIEW_LINEAGE}"
    ));
    assert_eq!(
        h.extra("Lineage"),
        Some(REVIEW_LINEAGE),
        "Lambda's Lineage was dropped: {h}"
    );
}

/// Found by a review of the Lineage fix. What the user does: continues a header in which `Lineage` is repeated (an
/// upstream hop forwarded one, Lambda appended its own last), with a large
/// application pair between them.
/// What they should get: rustdoc of `TraceHeader` "A repeated extra key keeps
/// only its last occurrence"; be49fda: the last `Lineage` "keeps its room in
/// the budget whatever pairs come before it".
/// What happens: the room reserved for the last `Lineage` is released at the
/// first one (src/header.rs:239-241), the large pair takes it, and the last
/// `Lineage` no longer fits: the header ends up with no `Lineage` at all.
#[test]
fn repeated_lineage_keeps_the_last_one_in_its_room() {
    let session = "s".repeat(225);
    let h = tracing_xray::TraceHeader::parse(&format!(
        "Root={ROOT};Parent={PARENT};Sampled=1;Lineage=1111aaaa:1;session={session};Lineage={REVIEW_LINEAGE}"
    ));
    assert_eq!(
        h.extra("Lineage"),
        Some(REVIEW_LINEAGE),
        "Lambda's (last) Lineage was dropped: {h}"
    );
}
