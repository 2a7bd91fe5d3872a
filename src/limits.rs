//! The spec's limits on names, annotation keys and strings (SPEC §1.2, §1.3, §1.7),
//! and the crate's own on network timeouts.

use std::borrow::Cow;

use crate::name_chars::NAME_CHAR_RANGES;

/// Longest segment or subsegment name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest annotation key, in characters.
pub(crate) const MAX_ANNOTATION_KEY_CHARS: usize = 500;
/// Longest annotation string value, in characters.
pub(crate) const MAX_ANNOTATION_VALUE_CHARS: usize = 1000;
/// Annotations X-Ray indexes per trace.
pub(crate) const MAX_ANNOTATIONS_PER_TRACE: usize = 50;
/// Longest plain string field (`user`, http request strings, sql user), in characters.
pub(crate) const MAX_STRING_CHARS: usize = 250;

/// The longest timeout handed to the HTTP client (the HTTP exporter's
/// connect and read timeouts, the sampling proxy's request timeout): longer
/// ones, up to `Duration::MAX` ("no limit"), are cut to a year, as the
/// client overflows its clock past a few hundred years.
pub(crate) const LONGEST_HTTP_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 60 * 60);

/// Whether the official schema allows `c` in a name: its letters and
/// numbers (the Unicode 8 letters and numbers of the Basic Multilingual
/// Plane, listed in the schema's pattern), space separators and
/// `_ . : / % & # = + - @`.
fn is_name_char(c: char) -> bool {
    // The first range that does not end before `c` holds it, if any does.
    let i = NAME_CHAR_RANGES.partition_point(|&(_, hi)| hi < c);
    NAME_CHAR_RANGES.get(i).is_some_and(|&(lo, _)| lo <= c)
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Cuts `s` to at most `max` characters, on a character boundary.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// [`truncate_chars`] for a string that may be owned: cut in place.
pub(crate) fn truncate_chars_cow(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(truncate_chars(s, max)),
        Cow::Owned(mut s) => {
            s.truncate(truncate_chars(&s, max).len());
            Cow::Owned(s)
        }
    }
}

/// A valid X-Ray name: disallowed characters removed, at most 200 characters,
/// `fallback` when nothing is left.
pub(crate) fn sanitize_name<'a>(name: &'a str, fallback: &'static str) -> Cow<'a, str> {
    // The common case: a short ASCII identifier-like name.
    if !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/%&#=+-@".contains(&b))
    {
        return Cow::Borrowed(name);
    }
    let clean: Cow<'a, str> = if name.chars().all(is_name_char) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.chars().filter(|&c| is_name_char(c)).collect())
    };
    let clean = truncate_chars_cow(clean, MAX_NAME_CHARS);
    if clean.trim().is_empty() {
        Cow::Borrowed(fallback)
    } else {
        clean
    }
}

/// Whether [`sanitize_annotation_key`] makes a key of `key` (without
/// allocating).
pub(crate) fn makes_annotation_key(key: &str) -> bool {
    truncate_chars(key, MAX_ANNOTATION_KEY_CHARS)
        .bytes()
        .any(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A filter-safe annotation key: `[A-Za-z0-9_]`, other characters become
/// `_`, at most 500 characters. `None` for a key none of whose characters
/// can be in one (empty, `-`, `é`): all of them would be the same key `_`
/// (or `__`...), telling nothing of the field.
pub(crate) fn sanitize_annotation_key(key: &str) -> Option<Cow<'_, str>> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !makes_annotation_key(key) {
        return None;
    }
    let key = truncate_chars(key, MAX_ANNOTATION_KEY_CHARS);
    if key.chars().all(ok) {
        Some(Cow::Borrowed(key))
    } else {
        Some(Cow::Owned(
            key.chars().map(|c| if ok(c) { c } else { '_' }).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_cuts_fall_on_character_boundaries() {
        assert_eq!(truncate_bytes("abc", 5), "abc");
        assert_eq!(truncate_bytes("abc", 2), "ab");
        // "é" is two bytes: a cut inside it keeps the character out.
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(truncate_bytes("aé", 3), "aé");
        assert_eq!(truncate_bytes("名", 2), "");
        assert_eq!(truncate_bytes("", 0), "");
    }

    #[test]
    fn names_keep_allowed_characters() {
        assert_eq!(sanitize_name("GET /users/{id}", "x"), "GET /users/id");
        assert_eq!(sanitize_name("a\tb\nc\\d;e*f", "x"), "abcdef");
        assert_eq!(
            sanitize_name("café-Ünïcödé 名前 ١٢", "x"),
            "café-Ünïcödé 名前 ١٢"
        );
        assert_eq!(sanitize_name("_.:/%&#=+-@", "x"), "_.:/%&#=+-@");
        assert_eq!(sanitize_name("{}()", "fallback"), "fallback");
        assert_eq!(sanitize_name("", "fallback"), "fallback");
        let long = "é".repeat(300);
        assert_eq!(sanitize_name(&long, "x").chars().count(), 200);
    }

    #[test]
    fn names_hold_only_what_the_official_schema_allows() {
        // Alphabetic or numeric to Rust, but not a letter or number to the
        // schema: a circled letter (a symbol), combining marks (a Devanagari
        // vowel sign and virama, an acute accent).
        assert_eq!(sanitize_name("ⓐb", "x"), "b");
        assert_eq!(sanitize_name("नमस्ते", "x"), "नमसत");
        assert_eq!(sanitize_name("e\u{301}", "x"), "e");
        // Beyond the Basic Multilingual Plane the schema lists nothing.
        assert_eq!(sanitize_name("a𝒜", "x"), "a");
    }

    /// The table in `name_chars.rs` is the schema's own list: parsed here
    /// from the copy of the schema in `tests/fixtures`.
    #[test]
    fn the_name_table_is_the_schema_pattern() {
        let text = include_str!("../tests/fixtures/schema/segment-schema.json");
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        let pattern = schema["definitions"]
            .as_object()
            .into_iter()
            .flat_map(|d| d.values())
            .chain([&schema])
            .find_map(|d| d["properties"]["name"]["pattern"].as_str())
            .unwrap();
        let body = pattern
            .strip_prefix("^[")
            .and_then(|p| p.strip_suffix("]{1,200}$"))
            .unwrap();
        // (character, an unescaped `-`)
        let mut tokens = Vec::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next().unwrap() {
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let code = u32::from_str_radix(&hex, 16).unwrap();
                        tokens.push((char::from_u32(code).unwrap(), false));
                    }
                    other => tokens.push((other, false)),
                },
                '-' => tokens.push(('-', true)),
                c => tokens.push((c, false)),
            }
        }
        let mut allowed = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < tokens.len() {
            if i + 2 < tokens.len() && tokens[i + 1].1 {
                allowed.extend(tokens[i].0..=tokens[i + 2].0);
                i += 3;
            } else {
                allowed.insert(tokens[i].0);
                i += 1;
            }
        }
        let table: std::collections::BTreeSet<char> = NAME_CHAR_RANGES
            .iter()
            .flat_map(|&(lo, hi)| lo..=hi)
            .collect();
        assert_eq!(allowed, table);
        assert!(NAME_CHAR_RANGES.windows(2).all(|w| w[0].1 < w[1].0));
        for c in ['a', 'Z', '0', ' ', '-', '@', '名', '١'] {
            assert!(is_name_char(c), "{c}");
        }
        for c in ['*', '(', '\u{301}', 'ⓐ'] {
            assert!(!is_name_char(c), "{c:?}");
        }
    }

    #[test]
    fn annotation_keys_become_filter_safe() {
        assert_eq!(
            sanitize_annotation_key("customer_id").unwrap(),
            "customer_id"
        );
        assert_eq!(
            sanitize_annotation_key("http.status-code").unwrap(),
            "http_status_code"
        );
        assert_eq!(sanitize_annotation_key("é1").unwrap(), "_1");
        assert!(sanitize_annotation_key("é").is_none());
        assert!(sanitize_annotation_key("-.-").is_none());
        assert_eq!(sanitize_annotation_key("_").unwrap(), "_");
        assert!(sanitize_annotation_key("").is_none());
        assert_eq!(
            sanitize_annotation_key(&"k".repeat(600)).unwrap().len(),
            MAX_ANNOTATION_KEY_CHARS
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }
}
