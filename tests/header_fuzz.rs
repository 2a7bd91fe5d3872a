//! Property tests for `TraceHeader`: parsing never panics, formatting is
//! canonical, and valid headers survive a format/parse round trip.

use proptest::prelude::*;
use tracing_xray::{Sampled, SegmentId, TraceHeader, TraceId};

/// Checks what must hold for any parsed header and returns its text.
fn check_canonical(h: &TraceHeader) -> String {
    let text = h.to_string();
    assert!(
        text.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "not printable ASCII: {text:?}"
    );
    assert!(
        !text.starts_with(';') && !text.ends_with(';') && !text.contains(";;"),
        "empty element in {text:?}"
    );
    assert_eq!(&TraceHeader::parse(&text), h, "re-parse of {text:?}");
    assert_eq!(text.is_empty(), h.is_empty());
    assert!(h.extras().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= 256);
    text
}

fn trace_id() -> impl Strategy<Value = TraceId> {
    (any::<u32>(), 1u128..(1u128 << 96)).prop_map(|(e, r)| TraceId::from_parts(e, r).unwrap())
}

fn segment_id() -> impl Strategy<Value = SegmentId> {
    (1u64..).prop_map(|v| SegmentId::from_u64(v).unwrap())
}

fn sampled() -> impl Strategy<Value = Sampled> {
    prop_oneof![
        Just(Sampled::Yes),
        Just(Sampled::No),
        Just(Sampled::Requested),
        Just(Sampled::Unknown),
    ]
}

/// Keys and values that `with_extra` accepts (printable ASCII, no `;`, no `=`
/// in keys, no leading space in keys or trailing space in values).
fn extra() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z_][A-Za-z0-9_. -]{0,15}",
        "[!-:<-~]([ -:<-~]{0,40}[!-:<-~])?",
    )
}

fn valid_header() -> impl Strategy<Value = TraceHeader> {
    (
        proptest::option::of(trace_id()),
        proptest::option::of(segment_id()),
        sampled(),
        proptest::collection::vec(extra(), 0..10),
    )
        .prop_map(|(root, parent, sampled, extras)| {
            extras.iter().fold(
                TraceHeader::default()
                    .with_root(root)
                    .with_parent(parent)
                    .with_sampled(sampled),
                |h, (k, v)| h.with_extra(k, v),
            )
        })
}

/// Single parts of a near-valid header: valid, damaged and junk elements.
fn part() -> impl Strategy<Value = String> {
    let id_chars = "[0-9a-fA-F-]{0,40}";
    prop_oneof![
        trace_id().prop_map(|r| format!("Root={r}")),
        trace_id().prop_map(|r| format!("Root={}", r.to_string().to_uppercase())),
        (trace_id(), 0usize..35).prop_map(|(r, n)| format!("Root={}", &r.to_string()[..n])),
        id_chars.prop_map(|s| format!("Root={s}")),
        segment_id().prop_map(|p| format!("Parent={p}")),
        id_chars.prop_map(|s| format!("Parent={s}")),
        "[01?a ]{0,3}".prop_map(|s| format!("Sampled={s}")),
        "[ -~]{0,40}".prop_map(|s| format!("Self={s}")),
        "[0-9a-f:|]{0,60}".prop_map(|s| format!("Lineage={s}")),
        "(?i:root|parent|sampled|self)[ ]?=[ -:<-~]{0,40}",
        "[ -:<-~]{0,20}=[ -:<-~]{0,40}",
        "[^;]{0,30}",
        Just(String::new()),
        Just("=".to_owned()),
        "[ \t]{0,3}",
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(";"), Just("; "), Just(" ;"), Just(" ; ")]
}

fn near_valid_header() -> impl Strategy<Value = String> {
    proptest::collection::vec((part(), separator()), 0..30).prop_map(|parts| {
        parts
            .into_iter()
            .enumerate()
            .fold(String::new(), |mut s, (i, (p, sep))| {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(&p);
                s
            })
    })
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let h = TraceHeader::parse(&s);
        check_canonical(&h);
        prop_assert_eq!(s.parse::<TraceHeader>().unwrap(), h);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        check_canonical(&TraceHeader::parse(&s));
    }

    #[test]
    fn header_alphabet_never_panics(s in "[=; \tRootParentSampledSelfLineage0-9a-fA-F?-]{0,300}") {
        check_canonical(&TraceHeader::parse(&s));
    }

    #[test]
    fn near_valid_headers_never_panic(s in near_valid_header()) {
        check_canonical(&TraceHeader::parse(&s));
    }

    #[test]
    fn junk_never_spoils_valid_parts(
        root in trace_id(),
        parent in segment_id(),
        decision in sampled(),
        junk in proptest::collection::vec(
            prop_oneof!["[^;=]{0,20}", "[A-Za-z]{1,8}=[ -:<-~]{0,20}", Just(String::new())],
            0..8,
        ),
        sep in separator(),
    ) {
        let mut parts = vec![format!("Root={root}"), format!("Parent={parent}")];
        if let Some(v) = decision.as_header_value() {
            parts.push(format!("Sampled={v}"));
        }
        for (i, j) in junk.into_iter().enumerate() {
            // Keep junk from being a reserved key: those are covered elsewhere.
            if !j.starts_with("Root=") && !j.starts_with("Parent=") && !j.starts_with("Sampled=") {
                parts.insert(i % (parts.len() + 1), j);
            }
        }
        let h = TraceHeader::parse(&parts.join(sep));
        prop_assert_eq!(h.root(), Some(root));
        prop_assert_eq!(h.parent(), Some(parent));
        prop_assert_eq!(h.sampled(), decision);
        check_canonical(&h);
    }

    #[test]
    fn valid_headers_round_trip(h in valid_header()) {
        let text = check_canonical(&h);
        prop_assert_eq!(TraceHeader::parse(&text), h);
    }

    #[test]
    fn huge_inputs_are_bounded(part in part(), n in 1000usize..5000) {
        let s = vec![part.as_str(); n].join(";");
        check_canonical(&TraceHeader::parse(&s));
    }
}
