//! `X-Amzn-Trace-Id` in the `http` crate's [`HeaderMap`] (feature `tower`).

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::header::{HEADER_NAME_LOWERCASE, TraceHeader};

/// [`crate::HEADER_NAME`] as an `http` header name.
pub(crate) const fn header_name() -> HeaderName {
    HeaderName::from_static(HEADER_NAME_LOWERCASE)
}

/// A trace header's value as text for [`TraceHeader::parse`]. HTTP allows
/// bytes past ASCII in a value (obs-text): they become U+FFFD here, so only
/// the pair holding them is malformed, not the whole header.
pub(crate) fn header_text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl TraceHeader {
    /// Reads the `X-Amzn-Trace-Id` header (matched case-insensitively, the
    /// first one when repeated) and parses it leniently
    /// ([`TraceHeader::parse`]).
    ///
    /// `None` when the header is absent or holds nothing usable; a header
    /// with a valid `Root` but a malformed `Parent` still comes back, without
    /// the parent, and a pair holding bytes past ASCII (which HTTP allows in
    /// a value) is dropped alone.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tracing_xray::{Sampled, TraceHeader};
    ///
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(TraceHeader::from_headers(&headers), None);
    ///
    /// headers.insert(
    ///     "X-Amzn-Trace-Id",
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    ///         .parse()
    ///         .unwrap(),
    /// );
    /// let header = TraceHeader::from_headers(&headers).unwrap();
    /// assert_eq!(header.sampled(), Sampled::Yes);
    ///
    /// headers.insert("x-amzn-trace-id", "garbage".parse().unwrap());
    /// assert_eq!(TraceHeader::from_headers(&headers), None);
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceHeader> {
        let value = header_text(headers.get(header_name())?);
        let header = TraceHeader::parse(&value);
        (!header.is_empty()).then_some(header)
    }

    /// Writes this header as `X-Amzn-Trace-Id` into `headers`, replacing any
    /// value already there. An empty header writes nothing.
    ///
    /// For a request, pass `request.headers_mut()`.
    ///
    /// ```
    /// use tracing_xray::{Sampled, SegmentId, TraceHeader, TraceId};
    ///
    /// let root: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
    /// let parent: SegmentId = "53995c3f42cd8ad8".parse().unwrap();
    /// let header = TraceHeader::new(root, Some(parent), Sampled::Yes);
    ///
    /// let mut request = http::Request::new(());
    /// header.inject(request.headers_mut());
    /// assert_eq!(
    ///     request.headers()["x-amzn-trace-id"],
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    /// );
    /// ```
    pub fn inject(&self, headers: &mut HeaderMap) {
        if self.is_empty() {
            return;
        }
        // The parser keeps printable ASCII only, so this cannot fail for a
        // parsed header; should it ever, tracing never breaks the request.
        if let Ok(value) = HeaderValue::from_str(&self.to_string()) {
            headers.insert(header_name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Sampled;

    const FULL: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Lineage=a87bd80c:1";

    #[test]
    fn round_trip_through_a_header_map() {
        let header = TraceHeader::parse(FULL);
        let mut map = HeaderMap::new();
        header.inject(&mut map);
        assert_eq!(map.len(), 1);
        assert_eq!(map["X-Amzn-Trace-Id"], FULL);
        assert_eq!(TraceHeader::from_headers(&map), Some(header));
    }

    #[test]
    fn inject_replaces_and_skips_empty() {
        let mut map = HeaderMap::new();
        map.append(header_name(), HeaderValue::from_static("Root=old"));
        map.append(header_name(), HeaderValue::from_static("Root=older"));
        TraceHeader::default().inject(&mut map);
        assert_eq!(map.get_all(header_name()).iter().count(), 2);
        TraceHeader::parse("Sampled=0").inject(&mut map);
        let all: Vec<_> = map.get_all(header_name()).iter().collect();
        assert_eq!(all, ["Sampled=0"]);
    }

    #[test]
    fn unusable_values_are_none() {
        let mut map = HeaderMap::new();
        map.insert(
            header_name(),
            HeaderValue::from_bytes(b"Root=\xff").unwrap(),
        );
        assert_eq!(TraceHeader::from_headers(&map), None);
        map.insert(header_name(), HeaderValue::from_static(""));
        assert_eq!(TraceHeader::from_headers(&map), None);
        map.insert(header_name(), HeaderValue::from_static("Sampled=?"));
        assert_eq!(
            TraceHeader::from_headers(&map).map(|h| h.sampled()),
            Some(Sampled::Requested)
        );
    }
}
