//! The X-Ray sampling pattern language (SPEC §4.2): `*` matches zero or more
//! characters, `?` exactly one, everything else itself; no escapes; the whole
//! text must match.

/// Whether `text` matches `pattern`. Sampling always uses
/// `case_insensitive = true`; the case-sensitive mode exists for the shared
/// test vectors.
///
/// Greedy matching that backtracks only to the last `*` seen: O(pattern ×
/// text) in the worst case, no allocation, no recursion.
pub(crate) fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pat, txt) = (pattern.as_bytes(), text.as_bytes());
    if pattern.is_ascii() && text.is_ascii() {
        return match_units(pat, txt, |p, t| {
            p == t || (case_insensitive && p.eq_ignore_ascii_case(&t))
        });
    }
    // Non-ASCII input: the same algorithm over chars. Decoding on the fly
    // keeps it allocation-free.
    match_chars(pattern, text, case_insensitive)
}

fn match_units(pat: &[u8], txt: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        match pat.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(&c) if c == b'?' || eq(c, txt[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            // Let the last `*` swallow one more character and retry.
            Some((sp, st)) => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

fn match_chars(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let next = |s: &str, i: usize| s.get(i..).and_then(|rest| rest.chars().next());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = next(text, t) {
        match next(pattern, p) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(pc) if pc == '?' || chars_equal(pc, tc, case_insensitive) => {
                p += pc.len_utf8();
                t += tc.len_utf8();
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                let skipped = next(text, st).map_or(1, char::len_utf8);
                star = Some((sp, st + skipped));
                p = sp;
                t = st + skipped;
            }
            None => return false,
        }
    }
    pattern[p..].bytes().all(|c| c == b'*')
}

fn chars_equal(a: char, b: char, case_insensitive: bool) -> bool {
    a == b || (case_insensitive && a.to_lowercase().eq(b.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn basics() {
        assert!(wildcard_match("*", "", true));
        assert!(wildcard_match("", "", true));
        assert!(!wildcard_match("", "a", true));
        assert!(wildcard_match("a?c", "abc", true));
        assert!(!wildcard_match("a?c", "ac", true));
        assert!(wildcard_match("*.amazon.com", "moop.AMAZON.com", true));
        assert!(!wildcard_match("*.amazon.com", "moop.AMAZON.com", false));
        assert!(wildcard_match("a*b*c", "aXbYbZc", true));
        assert!(!wildcard_match("a*b*c", "aXbYbZ", true));
        assert!(wildcard_match("**", "", true));
    }

    #[test]
    fn non_ascii() {
        assert!(wildcard_match("ÄB?", "äbç", true));
        assert!(!wildcard_match("ÄB?", "äbç", false));
        assert!(wildcard_match("*ß", "straß", true));
        assert!(wildcard_match("?", "é", true));
        assert!(!wildcard_match("??", "é", true));
        assert!(wildcard_match("*é*", "café au lait", true));
        assert!(wildcard_match("ca*", "CAFÉ", true));
    }

    #[test]
    fn long_inputs_stay_linearish() {
        let text = "ab".repeat(50_000);
        assert!(wildcard_match("a*b", &text, true));
        assert!(!wildcard_match("a*c", &text, true));
        assert!(wildcard_match("*a*b*a*b*a*b*", &text, true));
    }

    /// Every vector of the shared file, in both modes (the integration test
    /// can only reach the case-insensitive mode through `LocalRules`).
    #[test]
    fn shared_vectors() {
        let file: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/sampling/wildcard-vectors.json"
        ))
        .expect("fixture is JSON");
        let vectors = file["vectors"].as_array().expect("vectors array");
        assert_eq!(vectors.len(), 137);
        for v in vectors {
            let pattern = v["pattern"].as_str().expect("pattern");
            let text = v["text"].as_str().expect("text");
            let expected = v["expected"].as_bool().expect("expected");
            let ci = v["case_insensitive"].as_bool().expect("case_insensitive");
            assert_eq!(
                wildcard_match(pattern, text, ci),
                expected,
                "pattern {pattern:?} text {text:?} case_insensitive {ci}"
            );
        }
    }
}
