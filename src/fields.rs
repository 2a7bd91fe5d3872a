//! Routing of span fields to the parts of an X-Ray document (runs on the
//! worker thread).
//!
//! | field | goes to |
//! |---|---|
//! | `xray.name`, `otel.name` | the subsegment's name |
//! | `annotation.KEY` | `annotations.KEY` (key made filter-safe) |
//! | `metadata.KEY` | `metadata.default.KEY` |
//! | `metadata.NS.KEY` | `metadata.NS.KEY` (`AWS.` namespaces are reserved: kept under `default`) |
//! | `enduser.id`, `xray.user` | the segment's `user` |
//! | `error = true`, `otel.status_code = "ERROR"` | `fault` |
//! | a `dyn Error` value | `fault` and a `cause.exceptions` entry |
//! | anything else | `metadata.tracing.FIELD` |

use std::borrow::Cow;

use crate::limits::{
    sanitize_annotation_key, truncate_chars, MAX_ANNOTATIONS_PER_TRACE, MAX_ANNOTATION_VALUE_CHARS,
    MAX_STRING_CHARS,
};
use crate::model::{non_finite_name, AnnotationValue, Entity, MetaValue};
use crate::span_data::{FieldValue, SpanData};

/// Options for how fields are routed (a `Copy` group, set through
/// [`crate::Builder`] methods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldOptions {}

/// The metadata namespace for fields without a convention.
pub(crate) const TRACING_NAMESPACE: &str = "tracing";

/// Per-trace budgets and the counts of what they cut.
#[derive(Debug, Default)]
pub(crate) struct TraceBudget {
    pub(crate) annotations: usize,
    /// Annotations moved to metadata because the trace already had 50.
    pub(crate) annotations_demoted: u64,
}

fn meta_value(v: &FieldValue) -> MetaValue<'_> {
    match v {
        FieldValue::Str(s) => MetaValue::Str(Cow::Borrowed(s)),
        FieldValue::I64(v) => MetaValue::I64(*v),
        FieldValue::U64(v) => MetaValue::U64(*v),
        FieldValue::I128(v) => MetaValue::I128(*v),
        FieldValue::U128(v) => MetaValue::U128(*v),
        FieldValue::F64(v) => MetaValue::F64(*v),
        FieldValue::Bool(v) => MetaValue::Bool(*v),
    }
}

fn annotation_value(v: &FieldValue) -> AnnotationValue<'_> {
    match v {
        FieldValue::Str(s) => {
            AnnotationValue::Str(Cow::Borrowed(truncate_chars(s, MAX_ANNOTATION_VALUE_CHARS)))
        }
        FieldValue::I64(v) => AnnotationValue::I64(*v),
        FieldValue::U64(v) => AnnotationValue::U64(*v),
        FieldValue::I128(v) => match i64::try_from(*v) {
            Ok(v) => AnnotationValue::I64(v),
            Err(_) => AnnotationValue::Str(Cow::Owned(v.to_string())),
        },
        FieldValue::U128(v) => match u64::try_from(*v) {
            Ok(v) => AnnotationValue::U64(v),
            Err(_) => AnnotationValue::Str(Cow::Owned(v.to_string())),
        },
        FieldValue::F64(v) if v.is_finite() => AnnotationValue::F64(*v),
        FieldValue::F64(v) => AnnotationValue::Str(Cow::Borrowed(non_finite_name(*v))),
        FieldValue::Bool(v) => AnnotationValue::Bool(*v),
    }
}

fn as_str(v: &FieldValue) -> Option<&str> {
    match v {
        FieldValue::Str(s) => Some(s),
        _ => None,
    }
}

fn put_metadata<'a>(
    entity: &mut Entity<'a>,
    ns: Cow<'a, str>,
    key: Cow<'a, str>,
    v: MetaValue<'a>,
) {
    entity.metadata.entry(ns).or_default().insert(key, v);
}

/// Fills `entity` from the span's fields. Returns the name override, if any.
pub(crate) fn route<'a>(
    span: &'a SpanData,
    entity: &mut Entity<'a>,
    is_segment: bool,
    budget: &mut TraceBudget,
    options: &FieldOptions,
) -> Option<&'a str> {
    let _ = options;
    let mut name = None;
    for (key, value) in &span.fields {
        let key: &'static str = key;
        match key {
            "xray.name" | "otel.name" => {
                if let Some(s) = as_str(value) {
                    name = Some(s);
                }
            }
            "enduser.id" | "xray.user" if is_segment => {
                if let Some(s) = as_str(value) {
                    entity.user = Some(Cow::Borrowed(truncate_chars(s, MAX_STRING_CHARS)));
                }
            }
            "error" if matches!(value, FieldValue::Bool(true)) => entity.fault = true,
            "otel.status_code"
                if as_str(value).is_some_and(|s| s.eq_ignore_ascii_case("error")) =>
            {
                entity.fault = true
            }
            _ => {
                if let Some(k) = key.strip_prefix("annotation.") {
                    let Some(k) = sanitize_annotation_key(k) else {
                        continue;
                    };
                    let is_new = !entity.annotations.contains(&k);
                    if is_new && budget.annotations >= MAX_ANNOTATIONS_PER_TRACE {
                        budget.annotations_demoted += 1;
                        put_metadata(entity, Cow::Borrowed("default"), k, meta_value(value));
                        continue;
                    }
                    if entity.annotations.insert(k, annotation_value(value)) {
                        budget.annotations += 1;
                    }
                } else if let Some(rest) = key.strip_prefix("metadata.") {
                    let (ns, k) = match rest.split_once('.') {
                        Some((ns, k)) if !ns.is_empty() && !k.is_empty() => {
                            if ns.starts_with("AWS") {
                                ("default", rest)
                            } else {
                                (ns, k)
                            }
                        }
                        _ => ("default", rest),
                    };
                    put_metadata(
                        entity,
                        Cow::Borrowed(ns),
                        Cow::Borrowed(k),
                        meta_value(value),
                    );
                } else {
                    put_metadata(
                        entity,
                        Cow::Borrowed(TRACING_NAMESPACE),
                        Cow::Borrowed(key),
                        meta_value(value),
                    );
                }
            }
        }
    }
    name
}
