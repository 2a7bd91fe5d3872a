//! Percent-decoding (`%XX`), for what travels percent-encoded: the AWS query
//! protocol's form bodies and URI paths (feature `aws-sdk`), gRPC's
//! `grpc-message` (feature `tower`).

/// `text` with its `%XX` escapes decoded (and, in a form, `+` as a space);
/// `None` when that is not UTF-8.
pub(crate) fn decode(text: &str, form: bool) -> Option<String> {
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
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::decode;

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
}
