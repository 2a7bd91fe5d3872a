//! Runs every vector of `fixtures/header/header-vectors.json` (see the README
//! next to it for attribution).
//!
//! The file records what each SDK does, and the SDKs disagree. Every vector is
//! turned into "what this crate should produce" by one general rule:
//!
//! - a `Root`/`Parent` string the SDK keeps verbatim is expected as
//!   `value.parse().ok()`: invalid ids are *absent* (SPEC §3.2 recommended:
//!   validate each on its own, never fail the whole header); those vectors are
//!   listed as "validated" below;
//!
//! and by explicit `Deviation`s where our recommended lenient behaviour differs
//! from what the vector pins, each with its reason. A deviation must really
//! differ from the SDK's expectation and must be used, so the list cannot go
//! stale.

use std::collections::BTreeSet;

use serde_json::Value;
use tracing_xray::{Sampled, SegmentId, TraceHeader, TraceId};

const FIXTURE: &str = include_str!("fixtures/header/header-vectors.json");

/// What a header parses to, in comparable form. `extras: None` means the
/// vector does not say anything about extra pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    root: Option<TraceId>,
    parent: Option<SegmentId>,
    sampled: Sampled,
    extras: Option<BTreeSet<(String, String)>>,
}

impl Fields {
    fn of(h: &TraceHeader) -> Self {
        Fields {
            root: h.root(),
            parent: h.parent(),
            sampled: h.sampled(),
            extras: Some(
                h.extras()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
        }
    }

    /// Compares, ignoring extras when `self` (the expectation) does not list
    /// them.
    fn matches(&self, actual: &Fields) -> bool {
        self.root == actual.root
            && self.parent == actual.parent
            && self.sampled == actual.sampled
            && (self.extras.is_none() || self.extras == actual.extras)
    }
}

/// An explicit expectation where we deliberately differ from the vector.
struct Deviation {
    section: &'static str,
    /// Prefix of the vector's `parser` (the matrix uses "matrix").
    parser: &'static str,
    input: &'static str,
    ours: Ours,
    why: &'static str,
}

enum Ours {
    Parsed(Fields),
    Header(&'static str),
    TraceIdRejected,
}

const R: &str = "1-5759e988-bd862e3fe1be46a994272793";
const R_OTEL: &str = "1-8a3c60f7-d188f8fa79d48a391a778fa6";
const R_NODE: &str = "1-58ed6027-14afb2e09172c337713486c0";
const P: &str = "53995c3f42cd8ad8";

fn fields(
    root: Option<&str>,
    parent: Option<&str>,
    sampled: Sampled,
    extras: &[(&str, &str)],
) -> Fields {
    Fields {
        root: root.map(|r| r.parse().unwrap()),
        parent: parent.map(|p| p.parse().unwrap()),
        sampled,
        extras: Some(
            extras
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

fn empty() -> Ours {
    Ours::Parsed(fields(None, None, Sampled::Unknown, &[]))
}

fn parsed(
    root: Option<&str>,
    parent: Option<&str>,
    sampled: Sampled,
    extras: &[(&str, &str)],
) -> Ours {
    Ours::Parsed(fields(root, parent, sampled, extras))
}

const NEVER_REJECT: &str = "the SDK rejects the whole header; we never fail a header and keep every valid part (SPEC §3.2 recommended: invalid Root/Parent/Sampled are treated as absent)";
const OTEL_STRICT: &str = "the OTel propagator needs a complete, valid span context; we keep every valid part and treat the invalid one as absent";

fn deviations() -> Vec<Deviation> {
    use Sampled::*;
    let parse = "asserted_parse_vectors";
    let ser = "asserted_serialize_vectors";
    let exec_ser = "executed_serialize_vectors";
    vec![
        // --- asserted parse vectors -------------------------------------------
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-node",
            input: "RoOt=1-58ed6027-14afb2e09172c337713486c0;PaREnT=48af77592b6dd73f;saMpLed=1",
            ours: empty(),
            why: "Node matches reserved keys case-insensitively; we match Root/Parent/Sampled exactly (Go/Java/Python, SPEC §3.2) and, unlike Go/Java/Python, do not forward case variants of reserved keys as extras either (a downstream Node service would read them as the real Root/Parent/Sampled, last one winning)",
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=215748",
            ours: parsed(Some(R), None, Unknown, &[]),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: "asdfhdk=fidksldfj",
            ours: parsed(None, None, Unknown, &[("asdfhdk", "fidksldfj")]),
            why: ".NET requires Root; we keep any valid pair (as Go/Java/Python/Node) so it is forwarded",
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: "asdfhdkfidksldfj",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: ";",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: ";=",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "aws-xray-sdk-dotnet",
            input: "",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "",
            ours: empty(),
            why: NEVER_REJECT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=abcdefghijklmnopabcdefghijklmnop;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa600;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=abcdefghijklmnop;Sampled=0",
            ours: parsed(Some(R_OTEL), None, No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad800;Sampled=0",
            ours: parsed(Some(R_OTEL), None, No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=",
            ours: parsed(Some(R_OTEL), Some(P), Unknown, &[]),
            why: "OTel has no 'unknown' decision and rejects the header; for X-Ray an unrecognised Sampled value means 'no decision' (Go/Java/Python)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=10220",
            ours: parsed(Some(R_OTEL), Some(P), Unknown, &[]),
            why: "OTel has no 'unknown' decision and rejects the header; for X-Ray an unrecognised Sampled value means 'no decision' (Go/Java/Python)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=a",
            ours: parsed(Some(R_OTEL), Some(P), Unknown, &[]),
            why: "OTel has no 'unknown' decision and rejects the header; for X-Ray an unrecognised Sampled value means 'no decision' (Go/Java/Python)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-622422bf-59625fe25708d4660735d8ef",
            ours: parsed(
                Some("1-622422bf-59625fe25708d4660735d8ef"),
                None,
                Unknown,
                &[],
            ),
            why: "OTel needs a Parent for a span context; an X-Ray header with only Root is valid (all X-Ray SDKs)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-0-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Foo=Bar",
            ours: parsed(None, Some(P), Yes, &[("Foo", "Bar")]),
            why: "short epoch parts are a java-contrib-only extension; a Root must have exactly 8 epoch hex digits (SPEC §3.2, .NET, Java SDK, OTel js/go)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-1a-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Foo=Bar",
            ours: parsed(None, Some(P), Yes, &[("Foo", "Bar")]),
            why: "short epoch parts are a java-contrib-only extension; a Root must have exactly 8 epoch hex digits (SPEC §3.2, .NET, Java SDK, OTel js/go)",
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-8a3c60f711-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1--d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=1-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AwsXrayPropagator",
            input: "Root=2-1a2a3a4a-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Foo=Bar",
            ours: parsed(None, Some(P), Yes, &[("Foo", "Bar")]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AWSXRayPropagator (js-contrib)",
            input: "Root=1*8a3c60f7+d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1;Foo=Bar",
            ours: parsed(None, Some(P), Yes, &[("Foo", "Bar")]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AWSXRayPropagator (js-contrib)",
            input: "Root=1-abcdefgh-ijklmnopabcdefghijklmnop;Parent=53995c3f42cd8ad8;Sampled=0",
            ours: parsed(None, Some(P), No, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel AWSXRayPropagator (js-contrib)",
            input: "Root=2-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=53995c3f42cd8ad8;Sampled=1",
            ours: parsed(None, Some(P), Yes, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel xray.Propagator (go-contrib)",
            input: "Root=1-8a3c60f7-d188f8fa79d48a391a778fa6;Parent=0000000000000000;Sampled=1",
            ours: parsed(Some(R_OTEL), None, Yes, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel xray.Propagator (go-contrib)",
            input: "Root=1-82138-1203123;Parent=53995c3f42cd8ad8;Sampled=1",
            ours: parsed(None, Some(P), Yes, &[]),
            why: OTEL_STRICT,
        },
        Deviation {
            section: parse,
            parser: "otel xray.Propagator (go-contrib)",
            input: "Root=5b00000000b000000000000000000000000;Parent=53995c3f42cd8ad8;Sampled=1",
            ours: parsed(None, Some(P), Yes, &[]),
            why: OTEL_STRICT,
        },
        // --- asserted serialise vectors (input = expected_header) ---------------
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-go",
            input: "Parent=foo;Sampled=1",
            ours: Ours::Header("Sampled=1"),
            why: "`foo` is not a segment id (16 hex digits), so a TraceHeader cannot hold it",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-go",
            input: "Root=0-57ff426a-80c11c39b0c928905eb0828d;Parent=foo;Sampled=1;Foo=bar",
            ours: Ours::Header("Sampled=1;Foo=bar"),
            why: "`0-…` (version 0) is not a valid trace id and `foo` not a segment id, so a TraceHeader cannot hold them",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-java",
            input: "Parent=foo;Sampled=1",
            ours: Ours::Header("Sampled=1"),
            why: "`foo` is not a segment id (16 hex digits), so a TraceHeader cannot hold it",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-java",
            input: "Root=1-57ff426a-80c11c39b0c928905eb0828d;Parent=foo;Sampled=1;Foo=bar",
            ours: Ours::Header("Root=1-57ff426a-80c11c39b0c928905eb0828d;Sampled=1;Foo=bar"),
            why: "`foo` is not a segment id (16 hex digits), so a TraceHeader cannot hold it",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=defdfd9912dc5a56; Sampled=1",
            ours: Ours::Header(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=defdfd9912dc5a56;Sampled=1",
            ),
            why: ".NET separates with `; `; we use `;` like Go/Java/Python/Node/OTel (SPEC §3.1)",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793; Sampled=0",
            ours: Ours::Header(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=defdfd9912dc5a56;Sampled=0",
            ),
            why: ".NET separates with `; ` and drops Parent when not sampled; we use `;` and keep Parent like Go/Java/Python/OTel (SPEC §3.1)",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=defdfd9912dc5a56; Sampled=?",
            ours: Ours::Header(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=defdfd9912dc5a56;Sampled=?",
            ),
            why: ".NET separates with `; `; we use `;` like Go/Java/Python/Node/OTel (SPEC §3.1)",
        },
        Deviation {
            section: ser,
            parser: "aws-xray-sdk-dotnet",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=defdfd9912dc5a56",
            ours: Ours::Header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=defdfd9912dc5a56"),
            why: ".NET separates with `; `; we use `;` like Go/Java/Python/Node/OTel (SPEC §3.1)",
        },
        // --- executed serialise vectors (input = actual_header) -----------------
        Deviation {
            section: exec_ser,
            parser: "aws-xray-sdk-go",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;",
            ours: Ours::Header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"),
            why: "Go/Java quirk: an unknown decision still writes an empty element; SPEC §3.1 says omit it",
        },
        Deviation {
            section: exec_ser,
            parser: "aws-xray-sdk-go",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;;Foo=bar",
            ours: Ours::Header(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Foo=bar",
            ),
            why: "Go/Java quirk: an unknown decision still writes an empty element; SPEC §3.1 says omit it",
        },
        Deviation {
            section: exec_ser,
            parser: "aws-xray-sdk-java",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;",
            ours: Ours::Header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"),
            why: "Go/Java quirk: an unknown decision still writes an empty element; SPEC §3.1 says omit it",
        },
        Deviation {
            section: exec_ser,
            parser: "aws-xray-sdk-java",
            input: "Root=1-5759e988-bd862e3fe1be46a994272793;;k1=v1;k2=v2",
            ours: Ours::Header("Root=1-5759e988-bd862e3fe1be46a994272793;k1=v1;k2=v2"),
            why: "Go/Java quirk: an unknown decision still writes an empty element; SPEC §3.1 says omit it",
        },
        // --- trace id vectors ---------------------------------------------------
        Deviation {
            section: "trace_id_vectors",
            parser: "no-op",
            input: "1-00000000-000000000000000000000000",
            ours: Ours::TraceIdRejected,
            why: "the SDKs' all-zero placeholder for unsampled segments is not a real trace id; TraceId rejects a zero random part (a header carrying it has no Root)",
        },
        // --- executed matrix (baseline: the Go result) ---------------------------
        Deviation {
            section: "executed_matrix",
            parser: "matrix",
            input: "RoOt=1-58ed6027-14afb2e09172c337713486c0;PaREnT=48af77592b6dd73f;saMpLed=1",
            ours: empty(),
            why: "Go/Java/Python forward case variants of reserved keys as extras; we drop them because Node (case-insensitive, last wins) would read them downstream as the real Root/Parent/Sampled",
        },
        Deviation {
            section: "executed_matrix",
            parser: "matrix",
            input: "Root=1-58ed6027-14afb2e09172c337713486c0;=48af77592b6dd73f",
            ours: parsed(Some(R_NODE), None, Unknown, &[]),
            why: "a pair with an empty key is malformed and ignored (as Node), not forwarded as `=…` (Go/Java/Python)",
        },
        Deviation {
            section: "executed_matrix",
            parser: "matrix",
            input: ";=",
            ours: empty(),
            why: "a pair with an empty key is malformed and ignored (as Node), not forwarded as `=` (Go/Java)",
        },
    ]
}

struct Runner {
    deviations: Vec<Deviation>,
    used: Vec<bool>,
    ran: usize,
    report: Vec<String>,
}

impl Runner {
    fn deviation(&mut self, section: &str, parser: &str, input: &str) -> Option<usize> {
        let i = self.deviations.iter().position(|d| {
            d.section == section && parser.starts_with(d.parser) && d.input == input
        })?;
        self.used[i] = true;
        Some(i)
    }

    fn note(&mut self, section: &str, parser: &str, input: &str, why: &str) {
        self.report
            .push(format!("[{section}] {parser}: {input:?}\n      -> {why}"));
    }
}

fn sampled_of(v: &Value) -> Sampled {
    match v {
        Value::String(s) if s == "1" => Sampled::Yes,
        Value::String(s) if s == "0" => Sampled::No,
        Value::String(s) if s == "?" => Sampled::Requested,
        Value::Bool(b) => Sampled::from(*b),
        _ => Sampled::Unknown,
    }
}

fn extras_of(v: Option<&Value>) -> Option<BTreeSet<(String, String)>> {
    let map = match v {
        None | Some(Value::Null) => return None,
        Some(v) => v.as_object().expect("extra/baggage is an object"),
    };
    Some(
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
            .collect(),
    )
}

/// The vector's expectation mapped to our model: `None` when the SDK rejects
/// the header. The flag is set when an id string the SDK keeps is not a valid
/// id (we then expect it absent).
fn expected_fields(expected: &Value) -> (Option<Fields>, bool) {
    if expected.is_string() {
        return (None, false); // "invalid…"
    }
    let obj = expected.as_object().expect("expected is an object");
    if obj.contains_key("result") {
        // Node: "empty object (no data key)"
        return (Some(Fields::of(&TraceHeader::default())), false);
    }
    let mut validated = false;
    let (root, parent) = if let Some(otel) = obj.get("otel_trace_id") {
        let hex = otel.as_str().unwrap();
        let root = TraceId::from_u128(u128::from_str_radix(hex, 16).unwrap());
        let span = obj["otel_span_id"].as_str().unwrap();
        (
            root,
            SegmentId::from_u64(u64::from_str_radix(span, 16).unwrap()),
        )
    } else {
        let id = |key: &str| -> Option<String> {
            let s = obj.get(key)?.as_str()?.to_owned();
            Some(s)
        };
        let (root_s, parent_s) = (id("root"), id("parent"));
        let root = root_s.as_deref().and_then(|s| s.parse::<TraceId>().ok());
        let parent = parent_s
            .as_deref()
            .and_then(|s| s.parse::<SegmentId>().ok());
        validated =
            (root_s.is_some() && root.is_none()) || (parent_s.is_some() && parent.is_none());
        (root, parent)
    };
    let extras = extras_of(obj.get("extra").or_else(|| obj.get("baggage")));
    let sampled = obj.get("sampled").map(sampled_of).unwrap_or_default();
    (
        Some(Fields {
            root,
            parent,
            sampled,
            extras,
        }),
        validated,
    )
}

fn check_parse(r: &mut Runner, section: &str, parser: &str, input: &str, expected: &Value) {
    r.ran += 1;
    let ours = Fields::of(&TraceHeader::parse(input));
    let (sdk, validated) = expected_fields(expected);
    if let Some(i) = r.deviation(section, parser, input) {
        let Ours::Parsed(want) = &r.deviations[i].ours else {
            panic!("deviation for {input:?} must be Ours::Parsed");
        };
        assert_eq!(&ours, want, "[{section}] {parser}: {input:?}");
        if let Some(sdk) = &sdk {
            assert!(
                !sdk.matches(&ours),
                "deviation for {input:?} is not needed: {sdk:?}"
            );
        }
        let why = r.deviations[i].why;
        r.note(section, parser, input, why);
        return;
    }
    let sdk = sdk.unwrap_or_else(|| {
        panic!("[{section}] {parser}: {input:?} is rejected by the SDK but has no deviation")
    });
    assert!(
        sdk.matches(&ours),
        "[{section}] {parser}: {input:?}\n  expected {sdk:?}\n  got      {ours:?}"
    );
    if validated {
        r.note(
            section,
            parser,
            input,
            "an invalid Root/Parent kept verbatim by the SDK is absent here (validated on its own)",
        );
    }
}

fn build(fields: &Value) -> TraceHeader {
    let obj = fields.as_object().unwrap();
    let s = |k: &str| obj.get(k).and_then(Value::as_str);
    let mut h = TraceHeader::default()
        .with_root(s("root").and_then(|r| r.parse().ok()))
        .with_parent(s("parent").and_then(|p| p.parse().ok()))
        .with_sampled(obj.get("sampled").map(sampled_of).unwrap_or_default());
    if let Some(hex) = s("otel_trace_id") {
        h = h.with_root(TraceId::from_u128(u128::from_str_radix(hex, 16).unwrap()));
    }
    if let Some(hex) = s("otel_span_id") {
        h = h.with_parent(SegmentId::from_u64(u64::from_str_radix(hex, 16).unwrap()));
    }
    for key in ["extra", "baggage"] {
        if let Some(map) = obj.get(key).and_then(Value::as_object) {
            for (k, v) in map {
                h = h.with_extra(k, v.as_str().unwrap());
            }
        }
    }
    h
}

fn check_serialize(r: &mut Runner, section: &str, parser: &str, fields: &Value, sdk_header: &str) {
    r.ran += 1;
    let h = build(fields);
    let ours = h.to_string();
    assert!(
        !ours.starts_with(';') && !ours.ends_with(';') && !ours.contains(";;"),
        "empty element in {ours:?}"
    );
    assert_eq!(TraceHeader::parse(&ours), h, "round trip of {ours:?}");
    if let Some(i) = r.deviation(section, parser, sdk_header) {
        let Ours::Header(want) = r.deviations[i].ours else {
            panic!("deviation for {sdk_header:?} must be Ours::Header");
        };
        assert_eq!(ours, want, "[{section}] {parser}: {fields}");
        assert_ne!(ours, sdk_header);
        let why = r.deviations[i].why;
        r.note(section, parser, sdk_header, why);
    } else {
        assert_eq!(ours, sdk_header, "[{section}] {parser}: {fields}");
    }
}

fn check_trace_id(r: &mut Runner, parser: &str, input: &str, expected: &Value) {
    r.ran += 1;
    let parsed = input.parse::<TraceId>();
    if let Some(i) = r.deviation("trace_id_vectors", parser, input) {
        assert!(matches!(r.deviations[i].ours, Ours::TraceIdRejected));
        assert!(
            expected.is_object(),
            "deviation for {input:?} is not needed"
        );
        assert!(parsed.is_err(), "{input:?}");
        assert_eq!(TraceHeader::parse(&format!("Root={input}")).root(), None);
        let why = r.deviations[i].why;
        r.note("trace_id_vectors", parser, input, why);
        return;
    }
    match expected {
        Value::String(s) => {
            assert!(s.starts_with("invalid"), "{s}");
            assert!(parsed.is_err(), "{input:?} should be rejected");
        }
        Value::Object(obj) => {
            let id = parsed.unwrap_or_else(|e| panic!("{input:?}: {e}"));
            if let Some(e) = obj.get("epoch_hex") {
                assert_eq!(format!("{:08x}", id.epoch_seconds()), e.as_str().unwrap());
            }
            if let Some(rnd) = obj.get("random_hex") {
                assert_eq!(format!("{:024x}", id.random_part()), rnd.as_str().unwrap());
            }
            if let Some(v) = obj.get("version") {
                assert_eq!(v.as_u64(), Some(1));
            }
            if let Some(s) = obj.get("to_string") {
                assert_eq!(id.to_string(), s.as_str().unwrap());
            }
            if let Some(otel) = obj.get("otel_trace_id") {
                assert_eq!(format!("{:032x}", id.to_u128()), otel.as_str().unwrap());
            }
            // Inside a header the same id is the Root.
            assert_eq!(
                TraceHeader::parse(&format!("Root={input}")).root(),
                Some(id)
            );
        }
        other => panic!("unexpected expectation {other}"),
    }
}

#[test]
fn header_vectors() {
    let doc: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    let deviations = deviations();
    let mut r = Runner {
        used: vec![false; deviations.len()],
        deviations,
        ran: 0,
        report: Vec::new(),
    };
    let section = |name: &str| -> Vec<Value> {
        let v = doc[name]
            .as_array()
            .unwrap_or_else(|| panic!("section {name} missing"))
            .clone();
        assert!(!v.is_empty(), "section {name} has no vectors");
        v
    };
    let mut counts = Vec::new();

    let name = "asserted_parse_vectors";
    let vectors = section(name);
    for v in &vectors {
        let parser = v["parser"].as_str().unwrap();
        check_parse(
            &mut r,
            name,
            parser,
            v["input"].as_str().unwrap(),
            &v["expected"],
        );
    }
    counts.push((name, vectors.len()));

    for name in ["asserted_serialize_vectors", "executed_serialize_vectors"] {
        let vectors = section(name);
        for v in &vectors {
            let parser = v["parser"].as_str().unwrap();
            let header = v
                .get("expected_header")
                .or_else(|| v.get("actual_header"))
                .and_then(Value::as_str)
                .unwrap();
            check_serialize(&mut r, name, parser, &v["fields"], header);
        }
        counts.push((name, vectors.len()));
    }

    let name = "trace_id_vectors";
    let vectors = section(name);
    for v in &vectors {
        check_trace_id(
            &mut r,
            v["parser"].as_str().unwrap(),
            v["input"].as_str().unwrap(),
            &v["expected"],
        );
    }
    counts.push((name, vectors.len()));

    // The matrix: our result must equal the Go SDK's (after id validation),
    // except for listed deviations. Agreement with each SDK is reported.
    let name = "executed_matrix";
    let vectors = section(name);
    let mut agree = std::collections::BTreeMap::<String, usize>::new();
    for row in &vectors {
        let input = row["input"].as_str().unwrap();
        let ours = Fields::of(&TraceHeader::parse(input));
        for (sdk, result) in row["results"].as_object().unwrap() {
            let mapped = match result {
                Value::String(s) if s.starts_with("malformed") => {
                    Some(Fields::of(&TraceHeader::default()))
                }
                other => expected_fields(other).0,
            };
            if mapped.is_some_and(|m| m.matches(&ours)) {
                *agree.entry(sdk.clone()).or_default() += 1;
            }
        }
        check_parse(&mut r, name, "matrix", input, &row["results"]["go"]);
    }
    counts.push((name, vectors.len()));

    let unused: Vec<_> = r
        .deviations
        .iter()
        .zip(&r.used)
        .filter(|(_, used)| !**used)
        .map(|(d, _)| format!("[{}] {}: {:?}", d.section, d.parser, d.input))
        .collect();
    assert!(
        unused.is_empty(),
        "stale deviations (no such vector): {unused:#?}"
    );

    let total: usize = counts.iter().map(|(_, n)| n).sum();
    assert!(
        total > 0 && total == r.ran,
        "ran {} of {total} vectors",
        r.ran
    );
    println!("header vectors run: {total}");
    for (name, n) in &counts {
        println!("  {name}: {n}");
    }
    println!("executed_matrix rows where we agree with each SDK (ids validated): {agree:?}");
    println!(
        "vectors where we deliberately differ from the recorded SDK result ({}):",
        r.report.len()
    );
    for line in &r.report {
        println!("  {line}");
    }
}
