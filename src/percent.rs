//! Percent-decoding (`%XX`), for what travels percent-encoded: a URL's query
//! parameter names (read for secrets), the AWS query protocol's form bodies
//! and URI paths (feature `aws-sdk`), gRPC's `grpc-message` (feature
//! `tower`).

use std::borrow::Cow;

/// The bytes `text` stands for: `%XX` escapes decoded (two hex digits; a
/// stray `%` stays), and in a form `+` as a space.
fn decode_bytes(text: &str, form: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        match bytes[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    // Two hex digits: at most 0xff.
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if form => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `text` decoded ([`decode_bytes`]); `None` when that is not UTF-8.
#[cfg(any(feature = "aws-sdk", feature = "tower"))]
pub(crate) fn decode(text: &str, form: bool) -> Option<String> {
    String::from_utf8(decode_bytes(text, form)).ok()
}

/// `text` decoded ([`decode_bytes`]), bytes that are not UTF-8 replaced;
/// borrowed when there is nothing to decode.
pub(crate) fn decode_lossy(text: &str, form: bool) -> Cow<'_, str> {
    if !(text.contains('%') || form && text.contains('+')) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(String::from_utf8_lossy(&decode_bytes(text, form)).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "aws-sdk", feature = "tower"))]
    #[test]
    fn escapes_are_decoded_and_stray_ones_kept() {
        assert_eq!(decode("a+b%2Bc", true).as_deref(), Some("a b+c"));
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode("100%", false).as_deref(), Some("100%"));
        assert_eq!(decode("a%2", false).as_deref(), Some("a%2"));
        assert_eq!(decode("%zz+", false).as_deref(), Some("%zz+"));
        assert_eq!(decode("%C3%A9t%C3%A9", false).as_deref(), Some("été"));
        assert_eq!(decode("%ff", false), None);
    }

    #[test]
    fn lossy_decoding_borrows_what_needs_none() {
        assert_eq!(decode_lossy("pass%77ord+x", true), "password x");
        assert_eq!(decode_lossy("%ff", false), "\u{fffd}");
        assert!(matches!(decode_lossy("a+b", false), Cow::Borrowed("a+b")));
    }
}
