//! Local sampling rules (SPEC §4.1): the X-Ray rules file, versions 1 and 2.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::reservoir::Reservoir;
use super::wildcard::Pattern;
use super::{Rate, Sampler, SamplingDecision, SamplingRequest, epoch_seconds};

/// Sampling by a local rules file: rules in file order, the first match wins,
/// otherwise the default rule. A rule samples up to `fixed_target` requests
/// each second (its reservoir), then a fraction `rate` of the rest.
///
/// [`LocalRules::default()`] is X-Ray's built-in rule set: no rules, default
/// `fixed_target` 1 and `rate` 0.05, that is the first request of each second
/// plus 5 % of the others.
///
/// Matching is case-insensitive with `*` (any run of characters) and `?` (one
/// character). An attribute missing from the [`SamplingRequest`] matches any
/// pattern. Version 1 files name the host pattern `service_name`; it is
/// matched against the request's `host`, as in every X-Ray SDK.
///
/// Clones share their reservoirs.
///
/// ```
/// use tracing_xray::sampling::{LocalRules, Sampler, SamplingRequest};
///
/// let rules = LocalRules::from_json(r#"{
///     "version": 2,
///     "default": { "fixed_target": 1, "rate": 0.05 },
///     "rules": [
///         { "description": "no health checks",
///           "host": "*", "http_method": "GET", "url_path": "/health",
///           "fixed_target": 0, "rate": 0.0 }
///     ]
/// }"#)?;
/// let health = SamplingRequest::new().with_http_method("get").with_url_path("/health");
/// assert!(!rules.sample(&health).is_sampled());
/// # Ok::<(), tracing_xray::sampling::SamplingRulesError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LocalRules {
    inner: Arc<RuleSet>,
}

#[derive(Debug)]
struct RuleSet {
    rules: Box<[LocalRule]>,
    default: Target,
}

#[derive(Debug)]
struct LocalRule {
    host: Pattern,
    http_method: Pattern,
    url_path: Pattern,
    target: Target,
}

/// A rule's reservoir and rate.
#[derive(Debug)]
struct Target {
    fixed_target: u64,
    rate: Rate,
    reservoir: Reservoir,
}

impl Target {
    fn new(fixed_target: u64, rate: f64) -> Self {
        Target {
            fixed_target,
            rate: Rate::new(rate),
            reservoir: Reservoir::new(),
        }
    }

    fn decide(&self, now_sec: u64) -> bool {
        self.reservoir.try_take(now_sec, self.fixed_target) || self.rate.coin()
    }
}

impl LocalRule {
    fn matches(&self, request: &SamplingRequest<'_>) -> bool {
        self.host.matches_optional(request.host)
            && self.http_method.matches_optional(request.http_method)
            && self.url_path.matches_optional(request.url_path)
    }
}

impl Default for LocalRules {
    /// X-Ray's default rule: 1 request a second, then 5 %.
    ///
    /// ```
    /// use tracing_xray::sampling::{LocalRules, Sampler, SamplingRequest};
    ///
    /// let rules = LocalRules::default();
    /// // A fresh reservoir: the first request of the second is sampled.
    /// assert!(rules.sample(&SamplingRequest::new()).is_sampled());
    /// ```
    fn default() -> Self {
        LocalRules {
            inner: Arc::new(RuleSet {
                rules: Box::new([]),
                default: Target::new(1, 0.05),
            }),
        }
    }
}

impl LocalRules {
    /// Parses a rules document (version 1 or 2).
    ///
    /// Errors name the problem: not JSON, a missing or unsupported `version`,
    /// a missing or invalid `default`, or the index of the invalid rule and
    /// what is wrong with it (a missing field, a negative `fixed_target`, a
    /// `rate` outside `0..=1`, `host` in a version 1 rule or `service_name` in
    /// a version 2 rule).
    ///
    /// ```
    /// use tracing_xray::sampling::{LocalRules, SamplingRulesError};
    ///
    /// let error = LocalRules::from_json(r#"{"version": 2, "rules": []}"#).unwrap_err();
    /// assert!(matches!(error, SamplingRulesError::MissingDefault));
    /// ```
    ///
    /// # Errors
    ///
    /// The text is not JSON, or not a valid rules document: the
    /// [`SamplingRulesError`] says which part and why.
    pub fn from_json(json: &str) -> Result<Self, SamplingRulesError> {
        // A byte order mark (editors on Windows write one) is not JSON.
        let json = json.strip_prefix('\u{feff}').unwrap_or(json);
        let value: Value = serde_json::from_str(json).map_err(|e| SamplingRulesError::Json {
            message: e.to_string(),
        })?;
        parse_document(&value).map(|set| LocalRules {
            inner: Arc::new(set),
        })
    }

    /// Reads and parses a rules file.
    ///
    /// ```no_run
    /// use tracing_xray::sampling::LocalRules;
    ///
    /// let rules = LocalRules::from_file("/etc/xray/sampling-rules.json")?;
    /// # Ok::<(), tracing_xray::sampling::SamplingRulesError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The file cannot be read ([`SamplingRulesError::Io`], with its path),
    /// or its content is not valid (as [`from_json`](Self::from_json)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SamplingRulesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SamplingRulesError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// The decision at a given epoch second (the centralized sampler's
    /// fallback passes its own clock).
    pub(crate) fn sample_at(
        &self,
        request: &SamplingRequest<'_>,
        now_sec: u64,
    ) -> SamplingDecision {
        let set = &*self.inner;
        let target = set
            .rules
            .iter()
            .find(|rule| rule.matches(request))
            .map_or(&set.default, |rule| &rule.target);
        SamplingDecision::new(target.decide(now_sec))
    }
}

impl Sampler for LocalRules {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        self.sample_at(request, epoch_seconds(SystemTime::now()))
    }
}

/// Why a local sampling rules document was rejected.
///
/// ```
/// use tracing_xray::sampling::{LocalRules, SamplingRulesError};
///
/// let json = r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.05},
///                "rules": [{"host": "*", "http_method": "*", "url_path": "/a", "rate": 0.1}]}"#;
/// match LocalRules::from_json(json) {
///     Err(SamplingRulesError::InvalidRule { index, problem }) => {
///         assert_eq!(index, 0);
///         assert_eq!(problem, "missing `fixed_target`");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SamplingRulesError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The document is not valid JSON.
    Json {
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document is JSON but not an object, or `rules` is not an array.
    Malformed {
        /// What is wrong.
        problem: String,
    },
    /// There is no `default` rule.
    MissingDefault,
    /// The `default` rule is invalid.
    InvalidDefault {
        /// What is wrong.
        problem: String,
    },
    /// There is no `version`.
    MissingVersion,
    /// `version` is neither 1 nor 2.
    UnsupportedVersion {
        /// The value found, as JSON.
        found: String,
    },
    /// A rule of `rules` is invalid.
    InvalidRule {
        /// Its position in `rules`, from 0.
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for SamplingRulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => {
                write!(
                    f,
                    "cannot read sampling rules file {}: {source}",
                    path.display()
                )
            }
            Self::Json { message } => write!(f, "sampling rules are not valid JSON: {message}"),
            Self::Malformed { problem } => write!(f, "malformed sampling rules: {problem}"),
            Self::MissingDefault => f.write_str("sampling rules have no `default` rule"),
            Self::InvalidDefault { problem } => {
                write!(f, "invalid `default` sampling rule: {problem}")
            }
            Self::MissingVersion => f.write_str("sampling rules have no `version` (1 or 2)"),
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "unsupported sampling rules `version` {found} (expected 1 or 2)"
                )
            }
            Self::InvalidRule { index, problem } => {
                write!(f, "invalid sampling rule at index {index}: {problem}")
            }
        }
    }
}

/// `Io`'s message already is its I/O error's, so its source is that error's
/// own: a reporter walking the chain shows each message once.
impl Error for SamplingRulesError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } => source.source(),
            _ => None,
        }
    }
}

const MATCHER_KEYS: [&str; 4] = ["host", "service_name", "http_method", "url_path"];

fn parse_document(value: &Value) -> Result<RuleSet, SamplingRulesError> {
    let malformed = |problem: &str| SamplingRulesError::Malformed {
        problem: problem.to_owned(),
    };
    let doc = value
        .as_object()
        .ok_or_else(|| malformed("the document is not a JSON object"))?;

    let default = match doc.get("default") {
        None | Some(Value::Null) => return Err(SamplingRulesError::MissingDefault),
        Some(default) => parse_default(default)
            .map_err(|problem| SamplingRulesError::InvalidDefault { problem })?,
    };

    let version = match doc.get("version") {
        None | Some(Value::Null) => return Err(SamplingRulesError::MissingVersion),
        Some(v) => match v.as_u64() {
            Some(n @ (1 | 2)) => n,
            _ => {
                return Err(SamplingRulesError::UnsupportedVersion {
                    found: v.to_string(),
                });
            }
        },
    };

    let rules = match doc.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                parse_rule(rule, version)
                    .map_err(|problem| SamplingRulesError::InvalidRule { index, problem })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("`rules` is not an array")),
    };

    Ok(RuleSet {
        rules: rules.into_boxed_slice(),
        default,
    })
}

fn parse_default(value: &Value) -> Result<Target, String> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    if let Some(key) = MATCHER_KEYS.iter().find(|k| obj.contains_key(**k)) {
        return Err(format!(
            "`{key}` is not allowed in the default rule (it matches every request)"
        ));
    }
    target(obj)
}

fn parse_rule(value: &Value, version: u64) -> Result<LocalRule, String> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    let host_key = if version == 1 {
        if obj.contains_key("host") {
            return Err("`host` is not allowed in a version 1 rule \
                        (version 1 names the host pattern `service_name`)"
                .to_owned());
        }
        "service_name"
    } else {
        if obj.contains_key("service_name") {
            return Err(
                "`service_name` is not allowed in a version 2 rule (use `host`)".to_owned(),
            );
        }
        "host"
    };
    Ok(LocalRule {
        host: pattern(obj, host_key)?,
        http_method: pattern(obj, "http_method")?,
        url_path: pattern(obj, "url_path")?,
        target: target(obj)?,
    })
}

fn pattern(obj: &Map<String, Value>, key: &str) -> Result<Pattern, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("missing `{key}`")),
        Some(Value::String(s)) => Ok(Pattern::new(s)),
        Some(other) => Err(format!("`{key}` must be a string, found {other}")),
    }
}

fn target(obj: &Map<String, Value>) -> Result<Target, String> {
    let fixed_target = match obj.get("fixed_target") {
        None | Some(Value::Null) => return Err("missing `fixed_target`".to_owned()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`fixed_target` must be a non-negative integer, found {v}"))?,
    };
    let rate = match obj.get("rate") {
        None | Some(Value::Null) => return Err("missing `rate`".to_owned()),
        Some(v) => v
            .as_f64()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("`rate` must be a number from 0 to 1, found {v}"))?,
    };
    Ok(Target::new(fixed_target, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(rules: &str) -> String {
        format!(
            r#"{{"version": 2, "default": {{"fixed_target": 0, "rate": 0.0}}, "rules": {rules}}}"#
        )
    }

    fn err(json: &str) -> SamplingRulesError {
        LocalRules::from_json(json).expect_err("should be rejected")
    }

    #[test]
    fn a_byte_order_mark_is_not_an_error() {
        let text = "\u{feff}{\"version\": 2, \"default\": {\"fixed_target\": 3, \"rate\": 0.5}}";
        let rules = LocalRules::from_json(text).unwrap();
        assert_eq!(rules.inner.default.fixed_target, 3);
    }

    #[test]
    fn default_is_one_per_second_then_five_percent() {
        let rules = LocalRules::default();
        assert_eq!(rules.inner.default.fixed_target, 1);
        assert_eq!(rules.inner.default.rate.get(), 0.05);
        assert!(rules.inner.rules.is_empty());
        let r = SamplingRequest::new();
        assert!(rules.sample_at(&r, 10).is_sampled());
        let n = 40_000;
        let later = (0..n)
            .filter(|_| rules.sample_at(&r, 10).is_sampled())
            .count();
        assert!((1_600..2_400).contains(&later), "{later}");
        assert!(rules.sample_at(&r, 11).is_sampled());
    }

    #[test]
    fn first_match_wins_and_absent_attributes_match() {
        let rules = LocalRules::from_json(&v2(
            r#"[{"host": "*", "http_method": "POST", "url_path": "/a*", "fixed_target": 0, "rate": 1.0},
                {"host": "*", "http_method": "*", "url_path": "/a*", "fixed_target": 0, "rate": 0.0}]"#,
        ))
        .unwrap();
        let post = SamplingRequest::new()
            .with_http_method("post")
            .with_url_path("/abc");
        let get = SamplingRequest::new()
            .with_http_method("GET")
            .with_url_path("/abc");
        let no_method = SamplingRequest::new().with_url_path("/abc");
        let empty_method = SamplingRequest::new()
            .with_http_method("")
            .with_url_path("/abc");
        assert!(rules.sample_at(&post, 1).is_sampled());
        assert!(!rules.sample_at(&get, 1).is_sampled());
        assert!(rules.sample_at(&no_method, 1).is_sampled());
        assert!(
            rules.sample_at(&empty_method, 1).is_sampled(),
            "empty is absent"
        );
        assert_eq!(rules.sample_at(&post, 1).rule_name(), None);
    }

    #[test]
    fn version_1_matches_service_name_against_host() {
        let rules = LocalRules::from_json(
            r#"{"version": 1, "default": {"fixed_target": 0, "rate": 0.0},
                "rules": [{"service_name": "*.example.com", "http_method": "*", "url_path": "*",
                           "fixed_target": 0, "rate": 1.0}]}"#,
        )
        .unwrap();
        let hit = SamplingRequest::new().with_host("API.example.com");
        let miss = SamplingRequest::new()
            .with_host("example.org")
            .with_service_name("x.example.com");
        assert!(rules.sample_at(&hit, 1).is_sampled());
        assert!(!rules.sample_at(&miss, 1).is_sampled());
    }

    #[test]
    fn reservoir_then_rate() {
        let rules = LocalRules::from_json(&v2(
            r#"[{"host": "*", "http_method": "*", "url_path": "*", "fixed_target": 3, "rate": 0.0}]"#,
        ))
        .unwrap();
        let r = SamplingRequest::new();
        let taken = (0..10)
            .filter(|_| rules.sample_at(&r, 5).is_sampled())
            .count();
        assert_eq!(taken, 3);
        // Clones share the reservoir.
        assert!(!rules.clone().sample_at(&r, 5).is_sampled());
        assert!(rules.sample_at(&r, 6).is_sampled());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("{", "not valid JSON"),
            ("[]", "not a JSON object"),
            (r#"{"version": 2}"#, "no `default` rule"),
            (
                r#"{"version": 2, "default": {"rate": 0.1}}"#,
                "missing `fixed_target`",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1}}"#,
                "missing `rate`",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.1, "url_path": "/"}}"#,
                "`url_path` is not allowed in the default rule",
            ),
            (
                r#"{"default": {"fixed_target": 1, "rate": 0.1}}"#,
                "no `version`",
            ),
            (
                r#"{"version": 3, "default": {"fixed_target": 1, "rate": 0.1}}"#,
                "unsupported sampling rules `version` 3",
            ),
            (
                r#"{"version": "2", "default": {"fixed_target": 1, "rate": 0.1}}"#,
                "unsupported sampling rules `version` \"2\"",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": -1, "rate": 0.1}}"#,
                "`fixed_target` must be a non-negative integer, found -1",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1.5, "rate": 0.1}}"#,
                "`fixed_target` must be a non-negative integer, found 1.5",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1, "rate": -0.1}}"#,
                "`rate` must be a number from 0 to 1, found -0.1",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1, "rate": 2}}"#,
                "`rate` must be a number from 0 to 1, found 2",
            ),
            (
                r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.1}, "rules": {}}"#,
                "`rules` is not an array",
            ),
            (
                &v2("[1]"),
                "invalid sampling rule at index 0: not a JSON object",
            ),
            (
                &v2(r#"[{"host": "*", "http_method": "*", "fixed_target": 1, "rate": 0.1}]"#),
                "index 0: missing `url_path`",
            ),
            (
                &v2(
                    r#"[{"host": 1, "http_method": "*", "url_path": "*", "fixed_target": 1, "rate": 0.1}]"#,
                ),
                "`host` must be a string, found 1",
            ),
            (
                &v2(
                    r#"[{"service_name": "*", "http_method": "*", "url_path": "*", "fixed_target": 1, "rate": 0.1}]"#,
                ),
                "`service_name` is not allowed in a version 2 rule",
            ),
        ];
        for (json, needle) in cases {
            let message = err(json).to_string();
            assert!(
                message.contains(needle),
                "{json}: {message:?} lacks {needle:?}"
            );
        }
        let v1_host = r#"{"version": 1, "default": {"fixed_target": 1, "rate": 0.1},
            "rules": [{"host": "*", "http_method": "*", "url_path": "*", "fixed_target": 1, "rate": 0.1}]}"#;
        assert!(
            err(v1_host)
                .to_string()
                .contains("`host` is not allowed in a version 1 rule")
        );
    }

    #[test]
    fn ignored_keys_and_null_rules() {
        let rules = LocalRules::from_json(
            r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.1, "description": "d"},
                "rules": null, "extra": true}"#,
        )
        .unwrap();
        assert!(rules.inner.rules.is_empty());
    }

    #[test]
    fn from_file_reports_the_path() {
        let e = LocalRules::from_file("/nonexistent/rules.json").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/rules.json"), "{e}");
        let io = std::fs::read_to_string("/nonexistent/rules.json").unwrap_err();
        assert!(e.to_string().ends_with(&format!(": {io}")), "{e}");
    }
}
