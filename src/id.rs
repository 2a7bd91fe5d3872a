//! X-Ray trace and segment identifiers, generated from a fast per-thread RNG.
//!
//! Identifiers are never derived from [`tracing::Id`]: the registry reuses those
//! slots as soon as a span closes, while X-Ray ids must be unique within a trace.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// An X-Ray trace id: `1-{8 hex digits of epoch seconds}-{24 hex random digits}`.
///
/// # Examples
///
/// ```
/// use tracing_xray::TraceId;
///
/// let id: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
/// assert_eq!(id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
/// assert_eq!(id.epoch_seconds(), 0x5759e988);
///
/// let fresh = TraceId::new();
/// assert_eq!(fresh.to_string().len(), 35);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    epoch: u32,
    /// The 96 random bits: the high 32 here, the low 64 below (kept apart,
    /// rather than in a `u128`, so the id is 16 bytes aligned to 8).
    random_hi: u32,
    random_lo: u64,
}

const RANDOM_96_MASK: u128 = (1u128 << 96) - 1;

impl TraceId {
    /// Creates a fresh trace id stamped with the current wall-clock second.
    ///
    /// ```
    /// use std::time::{SystemTime, UNIX_EPOCH};
    /// use tracing_xray::TraceId;
    ///
    /// let id = TraceId::new();
    /// let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    /// assert!(now.abs_diff(u64::from(id.epoch_seconds())) <= 1);
    /// assert_ne!(id, TraceId::new());
    /// ```
    pub fn new() -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        Self::with_epoch(epoch)
    }

    pub(crate) fn with_epoch(epoch: u32) -> Self {
        loop {
            let random = ((u128::from(next_u64()) << 64) | u128::from(next_u64())) & RANDOM_96_MASK;
            if let Some(id) = TraceId::from_parts(epoch, random) {
                return id;
            }
        }
    }

    /// Builds a trace id from its two parts. Returns `None` when the random part
    /// is zero or wider than 96 bits.
    ///
    /// ```
    /// use tracing_xray::TraceId;
    /// let id = TraceId::from_parts(0x5759e988, 0xbd862e3fe1be46a994272793).unwrap();
    /// assert_eq!(id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
    /// assert!(TraceId::from_parts(1, 0).is_none());
    /// ```
    pub fn from_parts(epoch_seconds: u32, random: u128) -> Option<Self> {
        if random == 0 || random > RANDOM_96_MASK {
            return None;
        }
        Some(TraceId {
            epoch: epoch_seconds,
            random_hi: (random >> 64) as u32,
            random_lo: random as u64,
        })
    }

    /// The epoch-seconds part (the trace's start second, as written by its creator).
    ///
    /// ```
    /// use tracing_xray::TraceId;
    ///
    /// let id: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    /// assert_eq!(id.epoch_seconds(), 1_465_510_280); // 0x5759e988: 2016-06-09 22:11:20 UTC
    /// ```
    pub fn epoch_seconds(&self) -> u32 {
        self.epoch
    }

    /// The 96-bit random part.
    ///
    /// ```
    /// use tracing_xray::TraceId;
    ///
    /// let id: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    /// assert_eq!(id.random_part(), 0xbd862e3fe1be46a994272793);
    /// assert!(TraceId::new().random_part() < 1 << 96);
    /// ```
    pub fn random_part(&self) -> u128 {
        (u128::from(self.random_hi) << 64) | u128::from(self.random_lo)
    }

    /// The id as the 128-bit number that OpenTelemetry and W3C use
    /// (`epoch` in the top 32 bits, the random part below).
    ///
    /// ```
    /// use tracing_xray::TraceId;
    /// let id: TraceId = "1-8a3c60f7-d188f8fa79d48a391a778fa6".parse().unwrap();
    /// assert_eq!(format!("{:032x}", id.to_u128()), "8a3c60f7d188f8fa79d48a391a778fa6");
    /// assert_eq!(TraceId::from_u128(id.to_u128()), Some(id));
    /// ```
    pub fn to_u128(&self) -> u128 {
        (u128::from(self.epoch) << 96) | self.random_part()
    }

    /// The inverse of [`TraceId::to_u128`]; `None` when the low 96 bits are zero.
    ///
    /// ```
    /// use tracing_xray::TraceId;
    ///
    /// let id = TraceId::from_u128(0x5759e988_bd862e3fe1be46a994272793).unwrap();
    /// assert_eq!(id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
    /// assert_eq!(TraceId::from_u128(0x5759e988 << 96), None); // no random part
    /// ```
    pub fn from_u128(value: u128) -> Option<Self> {
        Self::from_parts((value >> 96) as u32, value & RANDOM_96_MASK)
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

/// The eight lowercase hex digits of `v`, most significant first, without
/// the formatting machinery (ids are written for every document): the
/// nibbles are spread one per byte and turned into ASCII all at once.
fn hex8(v: u32) -> [u8; 8] {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // Bytes 10..=15 get `'a' - '0' - 10` more.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

impl TraceId {
    /// The id's text, `1-EEEEEEEE-RRRRRRRRRRRRRRRRRRRRRRRR` (ASCII).
    pub(crate) fn to_ascii(self) -> [u8; 35] {
        let random = self.random_part();
        let mut buf = *b"1-00000000-000000000000000000000000";
        buf[2..10].copy_from_slice(&hex8(self.epoch));
        buf[11..19].copy_from_slice(&hex8((random >> 64) as u32));
        buf[19..27].copy_from_slice(&hex8((random >> 32) as u32));
        buf[27..35].copy_from_slice(&hex8(random as u32));
        buf
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.to_ascii();
        // Only ASCII hex digits and dashes were written.
        f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// The error returned when a string (or, with the `opentelemetry` feature, an
/// OpenTelemetry id) is not a valid X-Ray id.
///
/// ```
/// use tracing_xray::{ParseIdError, SegmentId, TraceId};
///
/// let err: ParseIdError = "5759e988-bd862e3f".parse::<TraceId>().unwrap_err();
/// assert!(err.to_string().starts_with("invalid X-Ray trace id"));
/// let err: ParseIdError = "53995c3f".parse::<SegmentId>().unwrap_err();
/// assert!(err.to_string().starts_with("invalid X-Ray segment id"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIdError {
    kind: &'static str,
}

#[cfg(feature = "opentelemetry")]
impl ParseIdError {
    pub(crate) const TRACE: ParseIdError = ParseIdError { kind: "trace" };
    pub(crate) const SEGMENT: ParseIdError = ParseIdError { kind: "segment" };
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            "trace" => f.write_str(
                "invalid X-Ray trace id: expected `1-` + 8 hex digits + `-` + 24 hex digits, not all zero",
            ),
            _ => f.write_str("invalid X-Ray segment id: expected 16 hex digits, not all zero"),
        }
    }
}

impl std::error::Error for ParseIdError {}

fn parse_hex(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

impl FromStr for TraceId {
    type Err = ParseIdError;

    /// Parses `1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy` (upper-case hex accepted and
    /// normalised to lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = ParseIdError { kind: "trace" };
        let b = s.as_bytes();
        if b.len() != 35 || &b[..2] != b"1-" || b[10] != b'-' {
            return Err(err);
        }
        let epoch = parse_hex(&s[2..10]).ok_or(err.clone())? as u32;
        let random = parse_hex(&s[11..]).ok_or(err.clone())?;
        TraceId::from_parts(epoch, random).ok_or(err)
    }
}

/// A segment or subsegment id: 64 random bits written as 16 lowercase hex digits.
///
/// ```
/// use tracing_xray::SegmentId;
/// let id: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
/// assert_eq!(id.to_string(), "53995c3f42cd8ad8");
/// assert!("0000000000000000".parse::<SegmentId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(NonZeroU64);

impl SegmentId {
    /// Creates a fresh random id (never all zeros).
    ///
    /// ```
    /// use tracing_xray::SegmentId;
    ///
    /// let id = SegmentId::new();
    /// assert_eq!(id.to_string().len(), 16);
    /// assert_ne!(id, SegmentId::new());
    /// ```
    pub fn new() -> Self {
        loop {
            if let Some(v) = NonZeroU64::new(next_u64()) {
                return SegmentId(v);
            }
        }
    }

    /// The id as a number (the OpenTelemetry span id has the same 64 bits).
    ///
    /// ```
    /// use tracing_xray::SegmentId;
    ///
    /// let id: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    /// assert_eq!(id.to_u64(), 0x53995c3f42cd8ad8);
    /// assert_eq!(SegmentId::from_u64(id.to_u64()), Some(id));
    /// ```
    pub fn to_u64(&self) -> u64 {
        self.0.get()
    }

    /// Builds an id from its 64 bits; `None` for zero.
    ///
    /// ```
    /// use tracing_xray::SegmentId;
    ///
    /// let id = SegmentId::from_u64(0x53995c3f42cd8ad8).unwrap();
    /// assert_eq!(id.to_string(), "53995c3f42cd8ad8");
    /// assert_eq!(SegmentId::from_u64(0), None);
    /// ```
    pub fn from_u64(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(SegmentId)
    }
}

impl Default for SegmentId {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentId {
    /// The id's text: 16 lowercase hex digits (ASCII).
    pub(crate) fn to_ascii(self) -> [u8; 16] {
        let v = self.0.get();
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&hex8((v >> 32) as u32));
        buf[8..].copy_from_slice(&hex8(v as u32));
        buf
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.to_ascii();
        f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

impl FromStr for SegmentId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = ParseIdError { kind: "segment" };
        if s.len() != 16 {
            return Err(err);
        }
        let v = parse_hex(s).ok_or(err.clone())? as u64;
        SegmentId::from_u64(v).ok_or(err)
    }
}

impl serde::Serialize for SegmentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buf = self.to_ascii();
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buf = self.to_ascii();
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

/// Reads what [`Serialize`](serde::Serialize) writes: the id's text, as
/// [`FromStr`](std::str::FromStr) parses it.
impl<'de> serde::Deserialize<'de> for SegmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads what [`Serialize`](serde::Serialize) writes: the id's text, as
/// [`FromStr`](std::str::FromStr) parses it.
impl<'de> serde::Deserialize<'de> for TraceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

thread_local! {
    // wyrand state; 0 means "not seeded yet".
    static RNG: Cell<u64> = const { Cell::new(0) };
}

fn seed() -> u64 {
    // `RandomState` is seeded from the OS once per process and then varied per
    // instance, which gives every thread its own unpredictable starting point
    // without a dependency on a RNG crate.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    let v = h.finish();
    if v == 0 { 0x9E37_79B9_7F4A_7C15 } else { v }
}

/// The next 64 random bits from this thread's generator (wyrand: passes
/// BigCrush and PractRand, one multiply per call).
pub(crate) fn next_u64() -> u64 {
    RNG.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed();
        }
        s = s.wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_what_they_write() {
        let trace = TraceId::new();
        let segment = SegmentId::new();
        let text = serde_json::to_string(&(trace, segment)).unwrap();
        let back: (TraceId, SegmentId) = serde_json::from_str(&text).unwrap();
        assert_eq!(back, (trace, segment));
        for bad in [r#""1-abc""#, r#""0000000000000000""#, "7", "null"] {
            assert!(serde_json::from_str::<SegmentId>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<TraceId>(bad).is_err(), "{bad}");
        }
    }
    use std::collections::HashSet;

    #[test]
    fn trace_id_format() {
        let id = TraceId::with_epoch(0x5759e988);
        let s = id.to_string();
        assert_eq!(s.len(), 35);
        assert!(s.starts_with("1-5759e988-"));
        assert!(
            s[11..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(s.parse::<TraceId>().unwrap(), id);
    }

    #[test]
    fn trace_id_uses_current_epoch() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let id = TraceId::new();
        assert!(id.epoch_seconds() >= now && id.epoch_seconds() <= now + 1);
    }

    #[test]
    fn trace_id_rejects_bad_input() {
        for bad in [
            "",
            "1-5759e988-bd862e3fe1be46a99427279",
            "2-5759e988-bd862e3fe1be46a994272793",
            "1-5759e988bbd862e3fe1be46a994272793",
            "1-5759e98g-bd862e3fe1be46a994272793",
            "1-5759e988-000000000000000000000000",
            "1-+759e988-bd862e3fe1be46a994272793",
        ] {
            assert!(bad.parse::<TraceId>().is_err(), "{bad}");
        }
        let upper: TraceId = "1-5759E988-BD862E3FE1BE46A994272793".parse().unwrap();
        assert_eq!(upper.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
    }

    #[test]
    fn ids_are_written_as_std_formatting_writes_them() {
        let mut values = vec![1_u64, 9, 10, 15, 16, 0xa0, u64::MAX, 0x0123_4567_89ab_cdef];
        values.extend((0..10_000).map(|_| super::next_u64()));
        for v in values {
            let Some(id) = SegmentId::from_u64(v) else {
                continue;
            };
            assert_eq!(id.to_string(), format!("{v:016x}"));
            let random = (u128::from(v) << 32 | u128::from(v >> 7)) & ((1 << 96) - 1);
            let epoch = (v >> 13) as u32;
            if let Some(trace) = TraceId::from_parts(epoch, random) {
                assert_eq!(trace.to_string(), format!("1-{epoch:08x}-{random:024x}"));
            }
        }
    }

    #[test]
    fn segment_ids_are_unique_hex_and_nonzero() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = SegmentId::new();
            let s = id.to_string();
            assert_eq!(s.len(), 16);
            assert_ne!(s, "0000000000000000");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(seen.insert(id), "duplicate id {s}");
        }
    }

    #[test]
    fn threads_get_different_streams() {
        let a = std::thread::spawn(next_u64).join().unwrap();
        let b = std::thread::spawn(next_u64).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn segment_id_parse() {
        assert!("53995c3f42cd8ad".parse::<SegmentId>().is_err());
        assert!("53995c3f42cd8adx".parse::<SegmentId>().is_err());
        assert!("+3995c3f42cd8ad8".parse::<SegmentId>().is_err());
        let id: SegmentId = "53995C3F42CD8AD8".parse().unwrap();
        assert_eq!(id.to_string(), "53995c3f42cd8ad8");
    }
}
