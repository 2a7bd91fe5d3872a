//! The X-Ray sampling pattern language (SPEC §4.2): `*` matches zero or more
//! characters, `?` exactly one, everything else itself; no escapes; the whole
//! text must match.

/// A case-insensitive sampling pattern, classified once when the rules are
/// loaded so that the common shapes (`*`, `GET`, `/api/*`, `*.example.com`)
/// are a single comparison on the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    raw: Box<str>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `*`, `**`, ...
    Any,
    /// No wildcard, ASCII.
    Exact,
    /// ASCII literal then one trailing `*`; the literal's length.
    Prefix(usize),
    /// One leading `*` then an ASCII literal.
    Suffix,
    /// Anything else.
    General,
}

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let is_wild = |b: u8| b == b'*' || b == b'?';
        let bytes = pattern.as_bytes();
        let kind = if !bytes.is_empty() && bytes.iter().all(|&b| b == b'*') {
            Kind::Any
        } else if !pattern.is_ascii() {
            Kind::General
        } else {
            match bytes.iter().filter(|&&b| is_wild(b)).count() {
                0 => Kind::Exact,
                1 if bytes[bytes.len() - 1] == b'*' => Kind::Prefix(bytes.len() - 1),
                1 if bytes[0] == b'*' => Kind::Suffix,
                _ => Kind::General,
            }
        };
        Pattern {
            raw: pattern.into(),
            kind,
        }
    }

    /// The `*` pattern.
    pub(crate) fn any() -> Self {
        Pattern::new("*")
    }

    pub(crate) fn is_any(&self) -> bool {
        self.kind == Kind::Any
    }

    /// Whether a request attribute matches: an absent or empty one does,
    /// as in the SDKs (Go's `== ""`, Python's and Node's falsy checks; a
    /// request without a Host header is not a request for the host "").
    pub(crate) fn matches_optional(&self, value: Option<&str>) -> bool {
        value
            .filter(|v| !v.is_empty())
            .is_none_or(|v| self.matches(v))
    }

    /// Case-insensitive match of the whole `text`.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let raw = self.raw.as_bytes();
        // The literal shapes compare ASCII bytes; non-ASCII text takes the
        // general path, where Unicode lower-casing applies (e.g. KELVIN SIGN
        // matches `k`).
        match self.kind {
            Kind::Any => true,
            Kind::Exact if text.is_ascii() => text.as_bytes().eq_ignore_ascii_case(raw),
            Kind::Prefix(n) if text.is_ascii() => text
                .as_bytes()
                .get(..n)
                .is_some_and(|head| head.eq_ignore_ascii_case(&raw[..n])),
            Kind::Suffix if text.is_ascii() => {
                let tail = &raw[1..];
                text.len() >= tail.len()
                    && text.as_bytes()[text.len() - tail.len()..].eq_ignore_ascii_case(tail)
            }
            _ => wildcard_match(&self.raw, text, true),
        }
    }
}

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
    use super::{Pattern, wildcard_match};

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
    fn pattern_shapes_agree_with_the_general_matcher() {
        let patterns = [
            "",
            "*",
            "**",
            "GET",
            "/api/*",
            "*.example.com",
            "a?c",
            "*a*",
            "k",
            "K*",
            "*k",
            "é*",
            "?",
            "/x",
            "*/",
            "a*b",
        ];
        let texts = [
            "",
            "get",
            "GET",
            "Get",
            "/api/",
            "/API/v1",
            "/ap",
            "www.EXAMPLE.com",
            ".example.com",
            "example.com",
            "abc",
            "aXc",
            "k",
            "\u{212a}",
            "\u{212a}x",
            "x\u{212a}",
            "éa",
            "ÉA",
            "/x",
            "/",
            "ab",
            "a/b",
        ];
        for p in patterns {
            let compiled = Pattern::new(p);
            for t in texts {
                assert_eq!(
                    compiled.matches(t),
                    wildcard_match(p, t, true),
                    "{p:?} {t:?}"
                );
            }
        }
        assert!(Pattern::any().is_any());
        assert!(Pattern::new("***").is_any());
        assert!(!Pattern::new("").is_any());
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
