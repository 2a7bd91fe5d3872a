//! The `X-Amzn-Trace-Id` tracing header: parsing and formatting.
//!
//! Parsing follows the lenient behaviour recommended for new implementations
//! (Go/Java-like, see the crate's X-Ray wire notes): it never fails, keeps every
//! usable part of a damaged header and drops the rest.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use crate::id::{SegmentId, TraceId};

/// The HTTP header that carries X-Ray trace context, as AWS writes it.
///
/// HTTP header names are case-insensitive; use [`HEADER_NAME_LOWERCASE`] with
/// crates (such as `http`) that require lower-case names.
///
/// ```
/// assert_eq!(tracing_xray::HEADER_NAME, "X-Amzn-Trace-Id");
/// ```
pub const HEADER_NAME: &str = "X-Amzn-Trace-Id";

/// [`HEADER_NAME`] in lower case, for HTTP libraries that only accept
/// lower-case (HTTP/2-style) header names.
///
/// ```
/// use tracing_xray::{HEADER_NAME, HEADER_NAME_LOWERCASE};
/// assert!(HEADER_NAME.eq_ignore_ascii_case(HEADER_NAME_LOWERCASE));
/// assert_eq!(HEADER_NAME_LOWERCASE, "x-amzn-trace-id");
/// ```
pub const HEADER_NAME_LOWERCASE: &str = "x-amzn-trace-id";

/// The environment variable in which AWS Lambda publishes the trace header of
/// the current invocation.
const LAMBDA_ENV_VAR: &str = "_X_AMZN_TRACE_ID";

/// Only this many leading bytes of a header are looked at; the part cut by the
/// limit is dropped whole. Real headers are a few hundred bytes at most.
const MAX_PARSE_LEN: usize = 4096;

/// Budget, in bytes of `key.len() + value.len()`, for extra pairs (as the Node
/// SDK). `Root`, `Parent` and `Sampled` do not count.
const EXTRAS_BUDGET: usize = 256;
/// The key Lambda appends for its recursion detection.
const LINEAGE_KEY: &str = "Lineage";

/// Keys with a meaning of their own. `Self` (added by load balancers) is
/// dropped on parse and never forwarded.
const RESERVED_KEYS: [&str; 4] = ["Root", "Parent", "Sampled", "Self"];

/// The sampling decision carried by a trace header (`Sampled=`).
///
/// ```
/// use tracing_xray::{Sampled, TraceHeader};
///
/// assert_eq!(TraceHeader::parse("Sampled=1").sampled(), Sampled::Yes);
/// assert_eq!(TraceHeader::parse("Sampled=0").sampled(), Sampled::No);
/// assert_eq!(TraceHeader::parse("Sampled=?").sampled(), Sampled::Requested);
/// assert_eq!(TraceHeader::parse("Sampled=true").sampled(), Sampled::Unknown);
/// assert_eq!(Sampled::default(), Sampled::Unknown);
/// assert_eq!(Sampled::from(true), Sampled::Yes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sampled {
    /// `Sampled=1`: the trace is recorded.
    Yes,
    /// `Sampled=0`: the trace is not recorded.
    No,
    /// `Sampled=?`: the caller asks the receiver to decide (and to report the
    /// decision back in the response header).
    Requested,
    /// No decision: the key is absent or its value is not `1`, `0` or `?`.
    #[default]
    Unknown,
}

impl Sampled {
    /// The header value for this decision, or `None` for [`Sampled::Unknown`]
    /// (which is written by omitting the key).
    ///
    /// ```
    /// use tracing_xray::Sampled;
    /// assert_eq!(Sampled::Requested.as_header_value(), Some("?"));
    /// assert_eq!(Sampled::Unknown.as_header_value(), None);
    /// ```
    pub fn as_header_value(self) -> Option<&'static str> {
        match self {
            Sampled::Yes => Some("1"),
            Sampled::No => Some("0"),
            Sampled::Requested => Some("?"),
            Sampled::Unknown => None,
        }
    }

    fn from_header_value(value: &str) -> Self {
        match value {
            "1" => Sampled::Yes,
            "0" => Sampled::No,
            "?" => Sampled::Requested,
            _ => Sampled::Unknown,
        }
    }
}

impl From<bool> for Sampled {
    /// `true` → [`Sampled::Yes`], `false` → [`Sampled::No`].
    fn from(sampled: bool) -> Self {
        if sampled { Sampled::Yes } else { Sampled::No }
    }
}

/// A parsed `X-Amzn-Trace-Id` header: `Root=…;Parent=…;Sampled=…` plus any
/// other `key=value` pairs (such as Lambda's `Lineage`), kept in order so they
/// can be forwarded downstream.
///
/// # Parsing
///
/// [`TraceHeader::parse`] (and [`FromStr`], whose error type is
/// [`Infallible`]) never fail and never panic:
///
/// - the header is split on `;`, each part is trimmed and split at its first
///   `=`; empty parts and parts without `=` are ignored;
/// - `Root`, `Parent`, `Sampled` and `Self` are matched exactly
///   (case-sensitively); for a repeated key the last occurrence wins;
/// - `Root` and `Parent` are validated on their own (see [`TraceId`] and
///   [`SegmentId`]; upper-case hex is accepted and lower-cased) and are absent
///   when invalid; `Sampled` is [`Sampled::Unknown`] unless its value is
///   exactly `1`, `0` or `?`; `Self` is dropped;
/// - every other pair is kept, in order, as an *extra* while the extras fit in
///   256 bytes of key + value (pairs that do not fit are skipped). Pairs with an
///   empty key or value, with characters other than printable ASCII, or whose key
///   looks like a reserved key in another case or with spaces (`root`,
///   `Sampled `; the Node SDK would read those as the real thing) are dropped.
///   A repeated extra key keeps only its last occurrence;
/// - only the first 4 KiB of the input are examined.
///
/// # Formatting
///
/// [`Display`](fmt::Display) writes `Root`, `Parent`, `Sampled`, then the
/// extras, separated by `;`, leaving out whatever is absent (a header holding
/// only a decision is written `Sampled=1`, an empty header as the empty string).
/// The output always parses back to an equal header.
///
/// # Examples
///
/// ```
/// use tracing_xray::{Sampled, SegmentId, TraceHeader, TraceId};
///
/// let incoming = TraceHeader::parse(
///     "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8; Sampled=1; Lineage=a87bd80c:1",
/// );
/// assert_eq!(
///     incoming.root(),
///     Some("1-5759e988-bd862e3fe1be46a994272793".parse::<TraceId>().unwrap())
/// );
/// assert_eq!(incoming.sampled(), Sampled::Yes);
/// assert_eq!(incoming.extra("Lineage"), Some("a87bd80c:1"));
///
/// // The header for a downstream call made from subsegment `53995c3f42cd8ad9`.
/// let subsegment: SegmentId = "53995c3f42cd8ad9".parse().unwrap();
/// let downstream = incoming.clone().with_parent(subsegment);
/// assert_eq!(
///     downstream.to_string(),
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad9;Sampled=1;Lineage=a87bd80c:1"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceHeader {
    root: Option<TraceId>,
    parent: Option<SegmentId>,
    sampled: Sampled,
    extras: Vec<(String, String)>,
}

impl TraceHeader {
    /// A header for trace `root`, with an optional parent (sub)segment id and a
    /// sampling decision, and no extras.
    ///
    /// ```
    /// use tracing_xray::{Sampled, SegmentId, TraceHeader, TraceId};
    ///
    /// let root: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    /// let parent: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    /// let header = TraceHeader::new(root, Some(parent), Sampled::No);
    /// assert_eq!(
    ///     header.to_string(),
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    /// );
    /// ```
    pub fn new(root: TraceId, parent: Option<SegmentId>, sampled: Sampled) -> Self {
        TraceHeader {
            root: Some(root),
            parent,
            sampled,
            extras: Vec::new(),
        }
    }

    /// Parses a header value leniently (see the [type-level docs](TraceHeader)).
    /// Never fails: unusable parts are simply absent from the result.
    ///
    /// ```
    /// use tracing_xray::{Sampled, TraceHeader};
    ///
    /// let h = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=oops;Sampled=?;Self=1-67891234-12456789abcdef012345678");
    /// assert!(h.root().is_some());
    /// assert_eq!(h.parent(), None); // invalid, treated as absent
    /// assert_eq!(h.sampled(), Sampled::Requested);
    /// assert_eq!(h.extras().count(), 0); // `Self` is dropped
    ///
    /// assert_eq!(TraceHeader::parse("some invalid string"), TraceHeader::default());
    /// ```
    pub fn parse(header: &str) -> Self {
        let mut parsed = TraceHeader::default();
        let pairs = || {
            bounded(header)
                .split(';')
                .filter_map(|part| part.trim().split_once('='))
        };
        // Lambda's `Lineage` (its loop detection), which it appends last,
        // keeps its room in the budget whatever pairs come before it: the
        // last valid one (a repeated key keeps its last occurrence), whose
        // room is given back where it comes; the others are not taken.
        let lineage = pairs()
            .enumerate()
            .filter(|(_, (k, v))| *k == LINEAGE_KEY && valid_extra(k, v))
            .last()
            .map(|(i, (k, v))| (i, k.len() + v.len()))
            .filter(|&(_, cost)| cost <= EXTRAS_BUDGET);
        let mut budget = EXTRAS_BUDGET - lineage.map_or(0, |(_, cost)| cost);
        for (i, (key, value)) in pairs().enumerate() {
            match key {
                "Root" => parsed.root = value.parse().ok(),
                "Parent" => parsed.parent = value.parse().ok(),
                "Sampled" => parsed.sampled = Sampled::from_header_value(value),
                "Self" => {}
                LINEAGE_KEY => {
                    if let Some((_, cost)) = lineage.filter(|&(at, _)| at == i) {
                        budget += cost;
                        parsed.push_extra(key, value, &mut budget);
                    }
                }
                _ => parsed.push_extra(key, value, &mut budget),
            }
        }
        parsed
    }

    /// Reads the trace header of the current AWS Lambda invocation from the
    /// `_X_AMZN_TRACE_ID` environment variable.
    ///
    /// Returns `None` when the variable is unset, not valid Unicode, or holds no
    /// valid `Root` trace id.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    ///
    /// if let Some(header) = TraceHeader::from_lambda_env() {
    ///     // Running inside a Lambda invocation: `root()` is always present.
    ///     assert!(header.root().is_some());
    /// }
    /// ```
    pub fn from_lambda_env() -> Option<Self> {
        from_env_value(std::env::var_os(LAMBDA_ENV_VAR))
    }

    /// The trace id (`Root=`), if present and valid.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// let h = TraceHeader::parse("Root=1-5759E988-BD862E3FE1BE46A994272793");
    /// assert_eq!(h.root().unwrap().to_string(), "1-5759e988-bd862e3fe1be46a994272793");
    /// assert_eq!(TraceHeader::parse("Root=1-5759e988").root(), None);
    /// ```
    pub fn root(&self) -> Option<TraceId> {
        self.root
    }

    /// The id of the calling (sub)segment (`Parent=`), if present and valid.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// let h = TraceHeader::parse("Parent=53995c3f42cd8ad8");
    /// assert_eq!(h.parent().unwrap().to_string(), "53995c3f42cd8ad8");
    /// assert_eq!(TraceHeader::parse("Parent=0000000000000000").parent(), None);
    /// ```
    pub fn parent(&self) -> Option<SegmentId> {
        self.parent
    }

    /// The sampling decision (`Sampled=`).
    ///
    /// ```
    /// use tracing_xray::{Sampled, TraceHeader};
    /// assert_eq!(TraceHeader::parse("Sampled=?").sampled(), Sampled::Requested);
    /// assert_eq!(TraceHeader::parse("Root=x").sampled(), Sampled::Unknown);
    /// ```
    pub fn sampled(&self) -> Sampled {
        self.sampled
    }

    /// The extra `key=value` pairs (everything but `Root`, `Parent`, `Sampled`
    /// and `Self`), in header order.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// let h = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;k1=v1;Foo=a=b");
    /// let extras: Vec<(&str, &str)> = h.extras().collect();
    /// assert_eq!(extras, [("k1", "v1"), ("Foo", "a=b")]);
    /// ```
    pub fn extras(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.extras.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of the extra pair `key` (case-sensitive), for example
    /// `Lineage`.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// let h = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:1|68fd508a:5");
    /// assert_eq!(h.extra("Lineage"), Some("a87bd80c:1|68fd508a:5"));
    /// assert_eq!(h.extra("Root"), None);
    /// ```
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true` when the header holds nothing (it then formats as an empty
    /// string).
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// assert!(TraceHeader::parse(";;junk").is_empty());
    /// assert!(!TraceHeader::parse("Sampled=0").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
            && self.parent.is_none()
            && self.sampled == Sampled::Unknown
            && self.extras.is_empty()
    }

    /// Replaces the trace id (`None` removes it).
    ///
    /// ```
    /// use tracing_xray::{TraceHeader, TraceId};
    /// let root: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    /// let h = TraceHeader::default().with_root(root);
    /// assert_eq!(h.to_string(), "Root=1-5759e988-bd862e3fe1be46a994272793");
    /// assert_eq!(h.with_root(None).to_string(), "");
    /// ```
    #[must_use]
    pub fn with_root(mut self, root: impl Into<Option<TraceId>>) -> Self {
        self.root = root.into();
        self
    }

    /// Replaces the parent id (`None` removes it).
    ///
    /// ```
    /// use tracing_xray::{SegmentId, TraceHeader};
    /// let parent: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    /// let h = TraceHeader::parse("Sampled=1").with_parent(parent);
    /// assert_eq!(h.to_string(), "Parent=53995c3f42cd8ad8;Sampled=1");
    /// assert_eq!(h.with_parent(None).to_string(), "Sampled=1");
    /// ```
    #[must_use]
    pub fn with_parent(mut self, parent: impl Into<Option<SegmentId>>) -> Self {
        self.parent = parent.into();
        self
    }

    /// Replaces the sampling decision.
    ///
    /// ```
    /// use tracing_xray::{Sampled, TraceHeader};
    /// let h = TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?");
    /// assert_eq!(
    ///     h.with_sampled(Sampled::Yes).to_string(),
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    /// );
    /// ```
    #[must_use]
    pub fn with_sampled(mut self, sampled: Sampled) -> Self {
        self.sampled = sampled;
        self
    }

    /// Appends an extra `key=value` pair, under the same rules as parsing: an
    /// earlier pair with the same key is removed, and the pair is ignored when
    /// it could not be written faithfully (empty key or value, a character that
    /// is not printable ASCII, `;` anywhere, `=` in the key, a space at the start
    /// of the key or the end of the value, a reserved key such as `Root` in any
    /// case) or when it does not fit the 256-byte budget for extras.
    ///
    /// ```
    /// use tracing_xray::TraceHeader;
    /// let h = TraceHeader::parse("Sampled=1")
    ///     .with_extra("Lineage", "a87bd80c:1")
    ///     .with_extra("root", "ignored")
    ///     .with_extra("bad", "a;b");
    /// assert_eq!(h.to_string(), "Sampled=1;Lineage=a87bd80c:1");
    /// ```
    #[must_use]
    pub fn with_extra(mut self, key: &str, value: &str) -> Self {
        let used: usize = self.extras.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut budget = EXTRAS_BUDGET.saturating_sub(used);
        self.push_extra(key, value, &mut budget);
        self
    }

    /// Adds an extra pair if it is valid and fits in `budget` (which is
    /// updated). A previous pair with the same key is removed first.
    fn push_extra(&mut self, key: &str, value: &str, budget: &mut usize) {
        if !valid_extra(key, value) {
            return;
        }
        if let Some(i) = self.extras.iter().position(|(k, _)| k == key) {
            let (k, v) = self.extras.remove(i);
            *budget += k.len() + v.len();
        }
        let cost = key.len() + value.len();
        if cost <= *budget {
            *budget -= cost;
            self.extras.push((key.to_owned(), value.to_owned()));
        }
    }
}

/// The prefix of `header` that is examined: all of it when short, otherwise the
/// parts that end within the first [`MAX_PARSE_LEN`] bytes.
pub(crate) fn bounded(header: &str) -> &str {
    if header.len() <= MAX_PARSE_LEN {
        return header;
    }
    // `;` is ASCII, so its index is always a char boundary.
    match header.as_bytes()[..=MAX_PARSE_LEN]
        .iter()
        .rposition(|&b| b == b';')
    {
        Some(end) => &header[..end],
        None => "",
    }
}

/// Whether `key=value` can be kept as an extra and written back so that it
/// parses to the same pair.
fn valid_extra(key: &str, value: &str) -> bool {
    let printable = |s: &str| s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b';');
    !key.is_empty()
        && !value.is_empty()
        && printable(key)
        && printable(value)
        && !key.contains('=')
        && !key.starts_with(' ')
        && !value.ends_with(' ')
        && !RESERVED_KEYS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(key.trim()))
}

fn from_env_value(value: Option<std::ffi::OsString>) -> Option<TraceHeader> {
    let header = TraceHeader::parse(value?.to_str()?);
    header.root.is_some().then_some(header)
}

impl FromStr for TraceHeader {
    type Err = Infallible;

    /// Same as [`TraceHeader::parse`]; never fails.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TraceHeader::parse(s))
    }
}

impl fmt::Display for TraceHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(root) = &self.root {
            write!(f, "Root={root}")?;
            sep = ";";
        }
        if let Some(parent) = &self.parent {
            write!(f, "{sep}Parent={parent}")?;
            sep = ";";
        }
        if let Some(sampled) = self.sampled.as_header_value() {
            write!(f, "{sep}Sampled={sampled}")?;
            sep = ";";
        }
        for (key, value) in &self.extras {
            write!(f, "{sep}{key}={value}")?;
            sep = ";";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    const PARENT: &str = "53995c3f42cd8ad8";

    fn root() -> TraceId {
        ROOT.parse().unwrap()
    }

    fn parent() -> SegmentId {
        PARENT.parse().unwrap()
    }

    #[test]
    fn parses_full_header_in_any_order() {
        for input in [
            format!("Root={ROOT};Parent={PARENT};Sampled=1"),
            format!("Sampled=1;Parent={PARENT};Root={ROOT}"),
            format!(" Root={ROOT} ; Parent={PARENT} ;Sampled=1 ;"),
            format!(";;Root={ROOT};;Parent={PARENT};Sampled=1;;"),
        ] {
            let h = TraceHeader::parse(&input);
            assert_eq!(
                h,
                TraceHeader::new(root(), Some(parent()), Sampled::Yes),
                "{input}"
            );
        }
    }

    #[test]
    fn keys_are_case_sensitive_and_case_variants_are_not_forwarded() {
        let h = TraceHeader::parse(&format!("root={ROOT};PARENT={PARENT};sampled=1;self=x"));
        assert!(h.is_empty(), "{h:?}");
        // Spaces around a reserved key: neither interpreted nor forwarded.
        let h = TraceHeader::parse(&format!("Root ={ROOT};Sampled= 1"));
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn invalid_ids_are_absent_without_spoiling_the_rest() {
        let h = TraceHeader::parse("Root=1-5759e988;Parent=215748;Sampled=0;Foo=bar");
        assert_eq!(h.root(), None);
        assert_eq!(h.parent(), None);
        assert_eq!(h.sampled(), Sampled::No);
        assert_eq!(h.extras().collect::<Vec<_>>(), [("Foo", "bar")]);
        assert_eq!(h.to_string(), "Sampled=0;Foo=bar");
    }

    #[test]
    fn upper_case_ids_are_normalised() {
        let h = TraceHeader::parse(&format!(
            "Root={};Parent={}",
            ROOT.to_uppercase(),
            PARENT.to_uppercase()
        ));
        assert_eq!(h.to_string(), format!("Root={ROOT};Parent={PARENT}"));
    }

    #[test]
    fn last_duplicate_wins() {
        let h = TraceHeader::parse(&format!(
            "Root={ROOT};Root=1-00000000-000000000000000000000000;Sampled=1;Sampled=?"
        ));
        assert_eq!(h.root(), None);
        assert_eq!(h.sampled(), Sampled::Requested);
        let h = TraceHeader::parse(&format!("Root=bad;Root={ROOT};Sampled=1;Sampled=x"));
        assert_eq!(h.root(), Some(root()));
        assert_eq!(h.sampled(), Sampled::Unknown);
        let h = TraceHeader::parse("a=1;b=2;a=3");
        assert_eq!(h.extras().collect::<Vec<_>>(), [("b", "2"), ("a", "3")]);
    }

    #[test]
    fn sampled_values() {
        for (value, expected) in [
            ("1", Sampled::Yes),
            ("0", Sampled::No),
            ("?", Sampled::Requested),
            ("", Sampled::Unknown),
            ("true", Sampled::Unknown),
            ("01", Sampled::Unknown),
            (" 1", Sampled::Unknown),
        ] {
            assert_eq!(
                TraceHeader::parse(&format!("Sampled={value}")).sampled(),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn malformed_parts_are_ignored() {
        let h = TraceHeader::parse(&format!(
            "junk;=v;k=;Root={ROOT};Parent;Parent=;Foo=a=b;x=caf\u{e9};y=\tz;Self=abc"
        ));
        assert_eq!(h.root(), Some(root()));
        assert_eq!(h.parent(), None);
        assert_eq!(h.extras().collect::<Vec<_>>(), [("Foo", "a=b")]);
        assert_eq!(h.to_string(), format!("Root={ROOT};Foo=a=b"));
    }

    #[test]
    fn extras_budget_skips_pairs_that_do_not_fit() {
        let big = "a".repeat(253); // "Baz" + 253 = 256 bytes: exactly the budget
        let h = TraceHeader::parse(&format!("Baz={big};Root={ROOT};Foo=bar"));
        assert_eq!(h.extras().collect::<Vec<_>>(), [("Baz", big.as_str())]);
        let h = TraceHeader::parse(&format!("Foo=bar;Baz={big};k=v"));
        assert_eq!(h.extras().collect::<Vec<_>>(), [("Foo", "bar"), ("k", "v")]);
        // Replacing a pair frees its share of the budget.
        let h = TraceHeader::parse(&format!("Baz={big};Baz=x;Foo=bar"));
        assert_eq!(
            h.extras().collect::<Vec<_>>(),
            [("Baz", "x"), ("Foo", "bar")]
        );
        // The builder shares the budget.
        let h = TraceHeader::default()
            .with_extra("Baz", &big)
            .with_extra("k", "v");
        assert_eq!(h.extras().len(), 1);
    }

    #[test]
    fn huge_input_is_bounded() {
        let mut input = format!("Root={ROOT};");
        while input.len() < MAX_PARSE_LEN - 10 {
            input.push_str("x;");
        }
        // A part straddling the limit is dropped whole, later parts are ignored.
        input.push_str("Lineage=");
        input.push_str(&"b".repeat(100));
        input.push_str(";Sampled=1");
        let h = TraceHeader::parse(&input);
        assert_eq!(h.root(), Some(root()));
        assert_eq!(h.extras().len(), 0);
        assert_eq!(h.sampled(), Sampled::Unknown);

        let h = TraceHeader::parse(&"\u{e9}".repeat(1 << 20));
        assert!(h.is_empty());
        let h = TraceHeader::parse(&";".repeat(1 << 20));
        assert!(h.is_empty());
        assert_eq!(bounded(&"é;".repeat(5000)).len() % 3, 2);
    }

    #[test]
    fn display_omits_absent_parts() {
        assert_eq!(TraceHeader::default().to_string(), "");
        assert_eq!(
            TraceHeader::default()
                .with_sampled(Sampled::Yes)
                .to_string(),
            "Sampled=1"
        );
        let h = TraceHeader::new(root(), Some(parent()), Sampled::Unknown);
        assert_eq!(h.to_string(), format!("Root={ROOT};Parent={PARENT}"));
        let h = TraceHeader::new(root(), None, Sampled::Unknown).with_extra("Foo", "bar");
        assert_eq!(h.to_string(), format!("Root={ROOT};Foo=bar"));
        let h = TraceHeader::default()
            .with_extra("k1", "v1")
            .with_extra("k2", "v2");
        assert_eq!(h.to_string(), "k1=v1;k2=v2");
    }

    #[test]
    fn with_extra_rejects_what_parse_would_not_read_back() {
        for (k, v) in [
            ("", "v"),
            ("k", ""),
            ("k=", "v"),
            ("k", "a;b"),
            (" k", "v"),
            ("k", "v "),
            ("k", "line\nbreak"),
            ("k", "caf\u{e9}"),
            ("Self", "v"),
            ("SAMPLED", "1"),
            ("Parent ", "v"),
        ] {
            let h = TraceHeader::default().with_extra(k, v);
            assert!(h.is_empty(), "{k:?}={v:?} accepted");
        }
        // Allowed: '=' in the value, inner spaces, a space after the key.
        let h = TraceHeader::default()
            .with_extra("Foo", "a=b")
            .with_extra("k 2", " v w")
            .with_extra("k3 ", "x");
        assert_eq!(TraceHeader::parse(&h.to_string()), h);
        assert_eq!(h.extras().len(), 3);
    }

    #[test]
    fn from_str_and_lambda_env_value() {
        let h: TraceHeader = format!("Root={ROOT};Parent={PARENT};Sampled=1")
            .parse()
            .unwrap();
        assert_eq!(h.parent(), Some(parent()));

        assert_eq!(from_env_value(None), None);
        assert_eq!(from_env_value(Some("".into())), None);
        assert_eq!(
            from_env_value(Some(format!("Parent={PARENT};Sampled=1").into())),
            None
        );
        let lambda = format!("Root={ROOT};Parent={PARENT};Sampled=0;Lineage=a87bd80c:1");
        let h = from_env_value(Some(lambda.clone().into())).unwrap();
        assert_eq!(h.to_string(), lambda);
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            assert_eq!(
                from_env_value(Some(std::ffi::OsString::from_vec(vec![0xff]))),
                None
            );
        }
    }

    #[test]
    fn sampled_conversions() {
        assert_eq!(Sampled::from(false), Sampled::No);
        for s in [Sampled::Yes, Sampled::No, Sampled::Requested] {
            assert_eq!(Sampled::from_header_value(s.as_header_value().unwrap()), s);
        }
    }
}
