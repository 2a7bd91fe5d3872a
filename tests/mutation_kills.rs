//! Tests written to kill mutants that `cargo mutants` found surviving in the
//! small, critical modules (limits, header, daemon address, percent, ids,
//! sampling rules). Each test names the behaviour it pins; the mutant it was
//! written for is in its doc comment.

mod common;

use std::time::Duration;

use tracing_xray::TraceHeader;

/// A year, the longest timeout handed to the HTTP client (`limits.rs`,
/// `LONGEST_HTTP_TIMEOUT`).
const A_YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `with_request_timeout(Duration::MAX)` is cut to exactly a year, and a
/// shorter timeout is kept as given. Kills the `* → +` and `* → /` mutants of
/// `LONGEST_HTTP_TIMEOUT` (`src/limits.rs:24`), which shrink the cut to hours
/// or days.
#[test]
fn sampler_request_timeout_is_cut_to_a_year() {
    use tracing_xray::sampling::CentralizedSampler;

    let debug = |timeout: Duration| {
        format!(
            "{:?}",
            CentralizedSampler::builder().with_request_timeout(timeout)
        )
    };
    let year = format!("timeout: {A_YEAR:?}");
    assert!(
        debug(Duration::MAX).contains(&year),
        "{}",
        debug(Duration::MAX)
    );
    assert!(debug(A_YEAR * 2).contains(&year), "{}", debug(A_YEAR * 2));
    // Up to a year is kept as given (30 days is more than every mutant's cut).
    let month = Duration::from_secs(30 * 24 * 60 * 60);
    assert!(
        debug(month).contains(&format!("timeout: {month:?}")),
        "{}",
        debug(month)
    );
    assert!(debug(A_YEAR).contains(&year), "{}", debug(A_YEAR));
}

/// The HTTP exporter's connect and read timeouts are cut to a year as well
/// (same mutants as above, through the other two users of the constant).
#[cfg(feature = "http")]
#[test]
fn exporter_timeouts_are_cut_to_a_year() {
    use tracing_xray::export::HttpExporter;

    let debug = format!(
        "{:?}",
        HttpExporter::builder()
            .with_connect_timeout(Duration::MAX)
            .with_read_timeout(Duration::MAX)
    );
    assert!(
        debug.contains(&format!("connect_timeout: {A_YEAR:?}")),
        "{debug}"
    );
    assert!(
        debug.contains(&format!("read_timeout: {A_YEAR:?}")),
        "{debug}"
    );
    let month = Duration::from_secs(30 * 24 * 60 * 60);
    let debug = format!(
        "{:?}",
        HttpExporter::builder()
            .with_connect_timeout(month)
            .with_read_timeout(month)
    );
    assert!(
        debug.contains(&format!("connect_timeout: {month:?}")),
        "{debug}"
    );
    assert!(
        debug.contains(&format!("read_timeout: {month:?}")),
        "{debug}"
    );
}

fn extras(h: &TraceHeader) -> Vec<(String, String)> {
    h.extras()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `with_extra` charges the pairs already held by `key.len() + value.len()`:
/// after `abc=de` (5 bytes), a pair of exactly the 251 bytes left fits, one
/// more byte does not. Kills `+ → *` in `TraceHeader::with_extra`
/// (`src/header.rs:394`, which would charge 6).
#[test]
fn with_extra_charges_held_pairs_by_their_length() {
    let fits = "v".repeat(250); // "k" + 250 = 251
    let h = TraceHeader::default()
        .with_extra("abc", "de")
        .with_extra("k", &fits);
    assert_eq!(
        extras(&h),
        [("abc".into(), "de".into()), ("k".into(), fits.clone())]
    );
    let too_big = "v".repeat(251);
    let h = TraceHeader::default()
        .with_extra("abc", "de")
        .with_extra("k", &too_big);
    assert_eq!(extras(&h), [("abc".to_owned(), "de".to_owned())]);
}

/// Parsing spends the budget by subtraction: after `a=b` (2 bytes) a pair of
/// 254 bytes still fits, one of 255 does not. Kills `-= → /=` in
/// `push_extra` (`src/header.rs:412`, which leaves 128 after `a=b`) and
/// `-= → +=`.
#[test]
fn parsed_extras_spend_the_budget_by_their_length() {
    let fits = "v".repeat(253); // "c" + 253 = 254
    let h = TraceHeader::parse(&format!("a=b;c={fits}"));
    assert_eq!(
        extras(&h),
        [("a".into(), "b".into()), ("c".into(), fits.clone())]
    );
    let too_big = "v".repeat(254);
    let h = TraceHeader::parse(&format!("a=b;c={too_big}"));
    assert_eq!(extras(&h), [("a".to_owned(), "b".to_owned())]);
}

/// A repeated key gives back exactly what its earlier pair cost: `Baz` + 253
/// bytes spends the whole budget; replacing it by `Baz=x` leaves 252 bytes,
/// so `Foo` + 249 (252) fits and `Foo` + 250 does not. Kills `+ → *` in
/// `push_extra`'s refund (`src/header.rs:408`, which would give back 759).
#[test]
fn a_replaced_extra_refunds_exactly_its_cost() {
    let big = "a".repeat(253);
    let fits = "f".repeat(249);
    let h = TraceHeader::parse(&format!("Baz={big};Baz=x;Foo={fits}"));
    assert_eq!(
        extras(&h),
        [("Baz".into(), "x".into()), ("Foo".into(), fits.clone())]
    );
    let too_big = "f".repeat(250);
    let h = TraceHeader::parse(&format!("Baz={big};Baz=x;Foo={too_big}"));
    assert_eq!(extras(&h), [("Baz".to_owned(), "x".to_owned())]);
}

/// `is_empty` is false as soon as any one part is present (each of the four
/// alone). Kills the `&& → ||` and `== → !=` mutants of
/// `TraceHeader::is_empty` (`src/header.rs:326-328`) for the unit tests,
/// which only ever assert emptiness.
#[test]
fn a_header_with_any_one_part_is_not_empty() {
    use tracing_xray::{Sampled, SegmentId, TraceId};

    assert!(TraceHeader::default().is_empty());
    let root: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    let parent: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    for h in [
        TraceHeader::default().with_root(root),
        TraceHeader::default().with_parent(parent),
        TraceHeader::default().with_sampled(Sampled::No),
        TraceHeader::default().with_sampled(Sampled::Requested),
        TraceHeader::default().with_extra("Lineage", "a87bd80c:1"),
    ] {
        assert!(!h.is_empty(), "{h:?}");
        assert!(!h.to_string().is_empty(), "{h:?}");
    }
}

/// `extra(key)` finds the pair with exactly that key and gives its value.
/// Kills `TraceHeader::extra` → `None` / `Some("")` / `Some("xyzzy")` and
/// `== → !=` in its search (`src/header.rs:310-312`; the unit tests only
/// read `extras()`).
#[test]
fn extra_finds_the_value_of_its_key() {
    let h = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;k1=v1;Lineage=a:1");
    assert_eq!(h.extra("k1"), Some("v1"));
    assert_eq!(h.extra("Lineage"), Some("a:1"));
    assert_eq!(h.extra("lineage"), None);
    assert_eq!(h.extra("Root"), None);
    assert_eq!(TraceHeader::default().extra("k1"), None);
}

/// `with_root` and `with_parent` set (and, with `None`, remove) their part
/// and keep the rest. Kills `with_root → Default::default()` and
/// `with_parent → Default::default()` (`src/header.rs:342`, `:357`).
#[test]
fn with_root_and_with_parent_keep_the_rest() {
    use tracing_xray::{Sampled, SegmentId, TraceId};

    let root: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    let parent: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    let h = TraceHeader::parse("Sampled=1;Lineage=a:1")
        .with_root(root)
        .with_parent(parent);
    assert_eq!(h.root(), Some(root));
    assert_eq!(h.parent(), Some(parent));
    assert_eq!(h.sampled(), Sampled::Yes);
    assert_eq!(
        h.to_string(),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:1"
    );
    let h = h.with_root(None).with_parent(None);
    assert_eq!(h.to_string(), "Sampled=1;Lineage=a:1");
}

/// `TraceHeader::from_lambda_env` reads `_X_AMZN_TRACE_ID`: the header when
/// it holds a valid `Root`, `None` when it does not or is unset. Kills
/// `from_lambda_env → None` and `→ Some(Default::default())`
/// (`src/header.rs:249`). The only test in this file that touches the
/// variable; run in a process of its own (the environment is the process's).
#[test]
fn lambda_header_is_read_from_the_environment() {
    common::run_alone("child_lambda_header_is_read_from_the_environment");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_lambda_header_is_read_from_the_environment() {
    const VAR: &str = "_X_AMZN_TRACE_ID";
    let value = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:1";
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var(VAR, value) };
    let read = TraceHeader::from_lambda_env();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var(VAR, "Parent=53995c3f42cd8ad8;Sampled=1") };
    let without_root = TraceHeader::from_lambda_env();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::remove_var(VAR) };
    let unset = TraceHeader::from_lambda_env();
    assert_eq!(read.map(|h| h.to_string()).as_deref(), Some(value));
    assert_eq!(without_root, None);
    assert_eq!(unset, None);
}

/// An address with equal endpoints is written `host:port`, otherwise
/// `tcp:… udp:…` with each endpoint in its place. Kills `== → !=` in
/// `DaemonAddress`'s `Display` (`src/daemon_address.rs`), which the unit
/// tests only check by round trip.
#[test]
fn daemon_address_display_forms() {
    use tracing_xray::DaemonAddress;

    assert_eq!(DaemonAddress::default().to_string(), "127.0.0.1:2000");
    let a: DaemonAddress = "10.0.0.1:3000".parse().unwrap();
    assert_eq!(a.to_string(), "10.0.0.1:3000");
    let a: DaemonAddress = "udp:10.0.0.2:2001 tcp:10.0.0.1:2000".parse().unwrap();
    assert_eq!(a.to_string(), "tcp:10.0.0.1:2000 udp:10.0.0.2:2001");
    let a: DaemonAddress = "tcp:[::1]:5 udp:[::1]:5".parse().unwrap();
    assert_eq!(a.to_string(), "[::1]:5");
}

/// Fresh trace ids use all 96 random bits: over 64 ids, the top 32 bits of
/// the random part are not always zero (chance of a false failure: 2^-2048).
/// Kills `<< → >>` in `TraceId::with_epoch` (`src/id.rs`), which would leave
/// only 64 random bits.
#[test]
fn fresh_trace_ids_use_all_96_random_bits() {
    use tracing_xray::TraceId;

    let ids: Vec<TraceId> = (0..64).map(|_| TraceId::new()).collect();
    assert!(ids.iter().any(|id| id.random_part() >> 64 != 0), "{ids:?}");
    assert!(ids.iter().all(|id| id.random_part() < 1 << 96));
}

/// The random part may be any non-zero 96-bit value, the largest included.
/// Kills `> → >=` and `> → ==` in `TraceId::from_parts`, `- → +` in
/// `RANDOM_96_MASK`, and the `to_u128` / `from_u128` mutants (`→ 0`, `→ 1`,
/// `→ None`, `→ Some(Default::default())`, shifts reversed, `| → &`,
/// `& → |`, `& → ^`) (`src/id.rs`).
#[test]
fn the_largest_random_part_is_a_valid_trace_id() {
    use tracing_xray::TraceId;

    let max = (1u128 << 96) - 1;
    let id = TraceId::from_parts(7, max).unwrap();
    assert_eq!(id.to_string(), "1-00000007-ffffffffffffffffffffffff");
    assert_eq!(
        "1-00000007-ffffffffffffffffffffffff".parse::<TraceId>(),
        Ok(id)
    );
    assert_eq!(TraceId::from_parts(7, max + 1), None);
    assert_eq!(TraceId::from_parts(7, 1).unwrap().random_part(), 1);
    assert_eq!(
        TraceId::from_u128(u128::MAX),
        TraceId::from_parts(u32::MAX, max)
    );
    assert_eq!(TraceId::from_u128(u128::MAX).unwrap().to_u128(), u128::MAX);
    // The OpenTelemetry form of an ordinary id, both ways (SPEC §3.4).
    let id: TraceId = "1-8a3c60f7-d188f8fa79d48a391a778fa6".parse().unwrap();
    assert_eq!(id.to_u128(), 0x8a3c60f7_d188f8fa79d48a391a778fa6);
    assert_eq!(
        TraceId::from_u128(0x8a3c60f7_d188f8fa79d48a391a778fa6),
        Some(id)
    );
    assert_eq!(TraceId::from_u128(0x8a3c60f7 << 96), None);
}

/// Segment ids are uniformly random: the mean number of set bits over 4096
/// fresh ids is 32 ± 1 (the standard deviation of the mean is 0.0625). Kills
/// `^ → |` / `^ → &` in the final mix of `next_u64` (`src/id.rs`), which
/// push it to about 48 / 16.
#[test]
fn segment_id_bits_are_balanced() {
    use tracing_xray::SegmentId;

    let n = 4096;
    let ones: u32 = (0..n).map(|_| SegmentId::new().to_u64().count_ones()).sum();
    let mean = f64::from(ones) / f64::from(n);
    assert!((31.0..=33.0).contains(&mean), "mean set bits {mean}");
}

/// `Debug` shows the id's text; the parse error names the kind of id.
/// Kills the `Debug` → `Ok(Default::default())` mutants, `ParseIdError`'s
/// `Display` → `Ok(..)` and its deleted `"trace"` arm, and `SegmentId::to_u64`
/// → `0` / `1` (`src/id.rs`).
#[test]
fn id_debug_and_error_messages() {
    use tracing_xray::{SegmentId, TraceId};

    let t: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    assert_eq!(
        format!("{t:?}"),
        "TraceId(1-5759e988-bd862e3fe1be46a994272793)"
    );
    let s: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    assert_eq!(format!("{s:?}"), "SegmentId(53995c3f42cd8ad8)");
    assert_eq!(s.to_u64(), 0x53995c3f42cd8ad8);
    let err = "1-x".parse::<TraceId>().unwrap_err().to_string();
    assert!(err.starts_with("invalid X-Ray trace id"), "{err}");
    let err = "x".parse::<SegmentId>().unwrap_err().to_string();
    assert!(err.starts_with("invalid X-Ray segment id"), "{err}");
}

/// `DaemonAddress::from_env` reads `AWS_XRAY_DAEMON_ADDRESS`: the address it
/// holds, `Ok(None)` when unset or blank, an error when unusable. Kills
/// `from_env → Ok(None)` and `→ Ok(Some(Default::default()))`
/// (`src/daemon_address.rs:214`; the unit tests only call the private
/// `from_env_value`). Run in a process of its own (the environment is the
/// process's).
#[test]
fn daemon_address_is_read_from_the_environment() {
    common::run_alone("child_daemon_address_is_read_from_the_environment");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_daemon_address_is_read_from_the_environment() {
    use tracing_xray::{DaemonAddress, DaemonAddressError};

    const VAR: &str = "AWS_XRAY_DAEMON_ADDRESS";
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var(VAR, "udp:127.0.0.2:2002 tcp:127.0.0.1:2001") };
    let split = DaemonAddress::from_env();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var(VAR, "  ") };
    let blank = DaemonAddress::from_env();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var(VAR, "127.0.0.1") };
    let no_port = DaemonAddress::from_env();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::remove_var(VAR) };
    let unset = DaemonAddress::from_env();
    let split = split.unwrap().unwrap();
    assert_eq!(split.udp(), "127.0.0.2:2002".parse().unwrap());
    assert_eq!(split.tcp(), "127.0.0.1:2001".parse().unwrap());
    assert_eq!(blank, Ok(None));
    assert!(
        matches!(no_port, Err(DaemonAddressError::MissingPort { .. })),
        "{no_port:?}"
    );
    assert_eq!(unset, Ok(None));
}

/// Every bit of a segment id varies: over 256 fresh ids each of the 64 bit
/// positions is set in some and clear in some (chance of a false failure
/// about 2^-248). Kills `>> → <<` in `next_u64`'s final mix (`src/id.rs`),
/// which keeps only the low half of the product, whose lowest bit is always
/// 0.
#[test]
fn every_bit_of_a_segment_id_varies() {
    use tracing_xray::SegmentId;

    let ids: Vec<u64> = (0..256).map(|_| SegmentId::new().to_u64()).collect();
    let any_set = ids.iter().fold(0u64, |acc, v| acc | v);
    let any_clear = ids.iter().fold(0u64, |acc, v| acc | !v);
    assert_eq!(any_set, u64::MAX, "{any_set:064b}");
    assert_eq!(any_clear, u64::MAX, "{any_clear:064b}");
}

/// A rules file error's source is its I/O error's own source (the I/O
/// message is already in the `Display`), so a wrapped cause is reachable and
/// an OS error adds nothing. Kills `source → None` and the deleted `Io` arm
/// of `SamplingRulesError::source` (`src/sampling/local.rs:284-285`).
#[test]
fn sampling_rules_io_error_exposes_the_wrapped_cause() {
    use std::error::Error;
    use tracing_xray::sampling::{LocalRules, SamplingRulesError};

    // `io::Error::source` is its custom error's own source, so the cause
    // that comes out is two levels down: `Deep`, under `Outer`.
    #[derive(Debug)]
    struct Deep;
    impl std::fmt::Display for Deep {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("deep cause")
        }
    }
    impl Error for Deep {}
    #[derive(Debug)]
    struct Outer(Deep);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    let err = SamplingRulesError::Io {
        path: "rules.json".into(),
        source: std::io::Error::other(Outer(Deep)),
    };
    assert_eq!(
        err.source().map(|s| s.to_string()).as_deref(),
        Some("deep cause")
    );
    let missing = LocalRules::from_file("/nonexistent/tracing-xray/rules.json").unwrap_err();
    assert!(
        matches!(missing, SamplingRulesError::Io { .. }),
        "{missing:?}"
    );
    assert!(missing.source().is_none(), "{:?}", missing.source());
}
