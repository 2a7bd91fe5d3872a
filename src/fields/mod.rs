//! Routing of span fields to the parts of an X-Ray document (runs on the
//! worker thread).
//!
//! Applications write ordinary `tracing` fields; the conventions below turn
//! them into annotations, metadata, the `user`, the `http`, `sql` and `aws`
//! blocks, the `namespace`, the error flags and the subsegment name.
//! [`conventions`] holds the OpenTelemetry / tower-http / AWS SDK names.
//!
//! | field | goes to |
//! |---|---|
//! | `xray.name`, `otel.name` | the subsegment's name |
//! | `annotation.KEY` | `annotations.KEY` (key made filter-safe) |
//! | `metadata.KEY` | `metadata.default.KEY` |
//! | `metadata.NS.KEY` | `metadata.NS.KEY` (the namespace `AWS`, the SDKs' reserved `AWS.*`, is kept under `default`) |
//! | `enduser.id`, `xray.user` | the segment's `user` (a numeric id as its digits; on a client call without a traced parent, the segment around it). X-Ray has a user only on segments: on a span below the root (an auth step inside the request) it is the segment's user too, unless the root names one (the first such span to end wins; the span keeps the field in its metadata; in Lambda, with no segment of ours, metadata only) |
//! | `error = true`, `otel.status_code = "ERROR"`, `error.type` | `fault` (`error` with a 4xx status; no flag with a status below 400, or with `otel.status_code = "OK"`) |
//! | a `dyn Error` value | the same, and a `cause.exceptions` entry |
//! | HTTP, SQL, AWS SDK names | see [`conventions`] |
//! | anything else | `metadata.tracing.FIELD` (or nothing, or an annotation: builder options) |

use std::borrow::Cow;

use crate::limits::{
    MAX_ANNOTATION_VALUE_CHARS, MAX_ANNOTATIONS_PER_TRACE, MAX_STRING_CHARS,
    sanitize_annotation_key, truncate_chars,
};
use crate::model::{AnnotationValue, Entity, MetaValue, non_finite_name};
use crate::span_data::{FieldValue, SpanData};

pub(crate) mod conventions;

pub(crate) use conventions::Conventions;

/// Options for how fields are routed (set through
/// [`crate::Builder`] methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldOptions {
    /// Field names always recorded as annotations.
    pub(crate) indexed: std::sync::Arc<[Box<str>]>,
    /// Every field without a convention becomes an annotation.
    pub(crate) index_all: bool,
    /// Fields without a convention go to `metadata.tracing` (else dropped).
    pub(crate) other_fields_as_metadata: bool,
    /// Query text in `sql.sanitized_query`: the builder's choice, if made.
    pub(crate) sql_queries: Option<bool>,
    /// `AWS_XRAY_COLLECT_SQL_QUERIES`, read when the builder was created.
    pub(crate) sql_queries_env: bool,
    /// Keep the AWS SDK's internal spans as subsegments.
    pub(crate) aws_sdk_internal_spans: bool,
}

impl Default for FieldOptions {
    fn default() -> Self {
        FieldOptions {
            indexed: std::sync::Arc::new([]),
            index_all: false,
            other_fields_as_metadata: true,
            sql_queries: None,
            sql_queries_env: env_flag("AWS_XRAY_COLLECT_SQL_QUERIES"),
            aws_sdk_internal_spans: false,
        }
    }
}

impl FieldOptions {
    /// Whether `key` is one of [`with_indexed_fields`](crate::Builder::with_indexed_fields)'s.
    pub(crate) fn is_indexed(&self, key: &str) -> bool {
        self.indexed.iter().any(|name| **name == *key)
    }

    pub(crate) fn collect_sql_queries(&self) -> bool {
        self.sql_queries.unwrap_or(self.sql_queries_env)
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        .unwrap_or(false)
}

/// Field conventions (see the module table in the crate documentation).
impl crate::Builder {
    /// Records these fields as annotations (indexed, usable in filter
    /// expressions) wherever they appear, besides any block they fill.
    /// Keys are made filter-safe (`[A-Za-z0-9_]`, other characters become
    /// `_`) and X-Ray's limit of 50 annotations per trace applies (the rest
    /// go to metadata, counted in [`crate::Stats`]).
    ///
    /// ```
    /// let layer = tracing_xray::builder()
    ///     .with_indexed_fields(["customer_id", "tenant"])
    ///     .build();
    /// # drop(layer);
    /// // tracing::info_span!("order", customer_id = 42) → annotations.customer_id = 42
    ///
    /// // Names from configuration work as well:
    /// let from_config: Vec<String> = "customer_id,tenant".split(',').map(String::from).collect();
    /// let layer = tracing_xray::builder().with_indexed_fields(&from_config).build();
    /// # drop(layer);
    /// ```
    pub fn with_indexed_fields<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.fields.indexed = names.into_iter().map(|n| n.as_ref().into()).collect();
        self
    }

    /// Records every field that has no other convention as an annotation
    /// instead of metadata (default `false`). The 50-per-trace limit still
    /// applies.
    ///
    /// ```
    /// let layer = tracing_xray::builder().with_all_fields_indexed(true).build();
    /// # drop(layer);
    /// ```
    pub fn with_all_fields_indexed(mut self, yes: bool) -> Self {
        self.fields.index_all = yes;
        self
    }

    /// Whether fields without a convention are kept as metadata under the
    /// `tracing` namespace (default `true`). With `false` they are dropped,
    /// which keeps documents small, and so are the values a convention has
    /// no use for, which would otherwise stay there (a status outside
    /// 100-999, a gRPC status code once its flags are set, a `server.address`
    /// with no URL to go in, ...).
    ///
    /// ```
    /// let layer = tracing_xray::builder()
    ///     .with_other_fields_as_metadata(false)
    ///     .build();
    /// # drop(layer);
    /// ```
    pub fn with_other_fields_as_metadata(mut self, yes: bool) -> Self {
        self.fields.other_fields_as_metadata = yes;
        self
    }

    /// Whether the query text of database spans (`db.query.text`,
    /// `db.statement`) is sent as `sql.sanitized_query`. Off by default,
    /// since queries may hold personal data; without this call the
    /// `AWS_XRAY_COLLECT_SQL_QUERIES=true` environment variable turns it on,
    /// as in the official Java and Node SDKs.
    ///
    /// ```
    /// let layer = tracing_xray::builder().with_sql_queries(true).build();
    /// # drop(layer);
    /// ```
    pub fn with_sql_queries(mut self, yes: bool) -> Self {
        self.fields.sql_queries = Some(yes);
        self
    }

    /// Whether the AWS SDK's internal spans (`try_attempt`, `serialization`,
    /// `deserialization`, ...) stay as subsegments under the call's `aws`
    /// subsegment. By default (`false`) they are folded into it, so that the
    /// trace shows one subsegment per AWS call.
    ///
    /// ```
    /// let layer = tracing_xray::builder()
    ///     .with_aws_sdk_internal_spans(true)
    ///     .build();
    /// # drop(layer);
    /// ```
    pub fn with_aws_sdk_internal_spans(mut self, keep: bool) -> Self {
        self.fields.aws_sdk_internal_spans = keep;
        self
    }
}

/// The target of the spans opened by the AWS SDK interceptor (feature
/// `aws-sdk`); they are merged into the call's `aws` subsegment.
pub(crate) const AWS_SDK_TARGET: &str = "tracing_xray::aws_sdk";

/// The field the interceptor's span sets on a presign (an operation run
/// to sign a request that someone else sends later): no call, so no
/// subsegment (see `assemble::is_presign`).
pub(crate) const PRESIGNED_FIELD: &str = "xray.aws.presigned";

/// The field the interceptor's span sets when the call's error is the
/// service's answer (its exception is `remote`, whatever the status: S3
/// may send one with a `200`).
pub(crate) const SERVICE_ERROR_FIELD: &str = "xray.aws.service_error";

/// The metadata namespace for fields without a convention.
pub(crate) const TRACING_NAMESPACE: &str = "tracing";

/// Per-trace budgets and the counts of what they cut.
#[derive(Debug, Default)]
pub(crate) struct TraceBudget {
    pub(crate) annotations: usize,
    /// Annotations kept for the top span of the document being packed, so
    /// that its subsegments, packed before it, cannot take them: a trace
    /// is filtered by its segment's annotations (the tenant, the route)
    /// first.
    pub(crate) reserved: usize,
    /// Annotations kept for the root of a trace sent in parts while it is
    /// open: its own, in the part that leaves last.
    pub(crate) held_for_root: usize,
    /// Annotations moved to metadata because the trace already had 50.
    pub(crate) annotations_demoted: u64,
}

pub(crate) fn meta_value(v: &FieldValue) -> MetaValue<'_> {
    match v {
        FieldValue::Str(s) => MetaValue::Str(Cow::Borrowed(s)),
        FieldValue::I64(v) => MetaValue::I64(*v),
        FieldValue::U64(v) => MetaValue::U64(*v),
        FieldValue::I128(v) => MetaValue::I128(**v),
        FieldValue::U128(v) => MetaValue::U128(**v),
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
        FieldValue::I128(v) => match (i64::try_from(**v), u64::try_from(**v)) {
            (Ok(v), _) => AnnotationValue::I64(v),
            (_, Ok(v)) => AnnotationValue::U64(v),
            _ => AnnotationValue::Str(Cow::Owned(v.to_string())),
        },
        FieldValue::U128(v) => match u64::try_from(**v) {
            Ok(v) => AnnotationValue::U64(v),
            Err(_) => AnnotationValue::Str(Cow::Owned(v.to_string())),
        },
        FieldValue::F64(v) if v.is_finite() => AnnotationValue::F64(*v),
        FieldValue::F64(v) => AnnotationValue::Str(Cow::Borrowed(non_finite_name(*v))),
        FieldValue::Bool(v) => AnnotationValue::Bool(*v),
    }
}

pub(crate) fn as_str(v: &FieldValue) -> Option<&str> {
    match v {
        FieldValue::Str(s) => Some(s),
        _ => None,
    }
}

/// Puts one of this crate's own entries (the root's `span_name`, a span's
/// `events`) into the `tracing` namespace, where the span's fields without
/// a convention are: a field of that name already there is kept as
/// `field.NAME` (as an event's field named `time` is), not replaced.
pub(crate) fn put_own<'a>(entity: &mut Entity<'a>, key: &'static str, value: MetaValue<'a>) {
    let entries = entity
        .metadata
        .entry_or_default(Cow::Borrowed(TRACING_NAMESPACE));
    if let Some(theirs) = entries.remove(&Cow::Borrowed(key)) {
        // Prefixed again while the span has a field of that name too.
        let mut aside = format!("field.{key}");
        while entries.entries().iter().any(|(k, _)| *k == aside) {
            aside.insert_str(0, "field.");
        }
        entries.insert(Cow::Owned(aside), theirs);
    }
    entries.insert(Cow::Borrowed(key), value);
}

pub(crate) fn put_metadata<'a>(
    entity: &mut Entity<'a>,
    ns: Cow<'a, str>,
    key: Cow<'a, str>,
    v: MetaValue<'a>,
) {
    entity.metadata.put(ns, key, v);
}

/// Adds an annotation within the trace's budget; past it, the value goes to
/// metadata under `fallback_ns`.
fn annotate<'a>(
    entity: &mut Entity<'a>,
    budget: &mut TraceBudget,
    demoted: &mut Demoted<'a>,
    key: &'a str,
    value: &'a FieldValue,
    fallback_ns: &'static str,
) {
    annotate_as(
        entity,
        budget,
        demoted,
        key,
        fallback_ns,
        || annotation_value(value),
        || meta_value(value),
    );
}

/// [`annotate`] for a text cut of its secrets ([`conventions::sendable_text`]).
fn annotate_scrubbed<'a>(
    entity: &mut Entity<'a>,
    budget: &mut TraceBudget,
    demoted: &mut Demoted<'a>,
    key: &'a str,
    text: String,
) {
    annotate_as(
        entity,
        budget,
        demoted,
        key,
        TRACING_NAMESPACE,
        || {
            AnnotationValue::Str(Cow::Owned(
                truncate_chars(&text, MAX_ANNOTATION_VALUE_CHARS).to_owned(),
            ))
        },
        || MetaValue::Str(Cow::Owned(text.clone())),
    );
}

/// Annotations of one span that go to metadata instead (see
/// [`annotate_as`]): their namespace, the field's own key and the value,
/// put once all the span's fields are in ([`put_demoted`]).
type Demoted<'a> = Vec<(&'static str, &'a str, MetaValue<'a>)>;

/// [`annotate`] with the value given as an annotation and, when it goes to
/// metadata instead, as metadata: past the trace's budget, or when another
/// field of the span made the same annotation key (two names that sanitize
/// alike, `a-b` and `a_b`). Either way under the field's own key, so that
/// two such fields keep two entries.
fn annotate_as<'a>(
    entity: &mut Entity<'a>,
    budget: &mut TraceBudget,
    demoted: &mut Demoted<'a>,
    key: &'a str,
    fallback_ns: &'static str,
    annotation: impl FnOnce() -> AnnotationValue<'a>,
    metadata: impl FnOnce() -> MetaValue<'a>,
) {
    let Some(k) = sanitize_annotation_key(key) else {
        // No character of it can make a key (`annotation.` alone, `-`):
        // metadata.
        demoted.push((fallback_ns, key, metadata()));
        return;
    };
    if entity.annotations.contains(&k) {
        demoted.push((fallback_ns, key, metadata()));
        return;
    }
    if budget.annotations + budget.reserved + budget.held_for_root >= MAX_ANNOTATIONS_PER_TRACE {
        budget.annotations_demoted += 1;
        demoted.push((fallback_ns, key, metadata()));
        return;
    }
    if entity.annotations.insert(k, annotation()) {
        budget.annotations += 1;
    }
}

/// Puts the span's annotations that went to metadata ([`Demoted`]) after
/// its other fields, each in a slot of its own: one the span's own
/// `metadata.KEY` field already holds is left to it, and the annotation goes
/// under its field's full name (`annotation.KEY`) instead of replacing it.
fn put_demoted<'a>(entity: &mut Entity<'a>, demoted: Demoted<'a>) {
    for (ns, key, value) in demoted {
        let taken = entity
            .metadata
            .entries()
            .iter()
            .find(|(have, _)| have == ns)
            .is_some_and(|(_, entries)| entries.contains_key(&Cow::Borrowed(key)));
        let key = if (taken || key.is_empty()) && ns != TRACING_NAMESPACE {
            Cow::Owned(format!("annotation.{key}"))
        } else {
            Cow::Borrowed(key)
        };
        put_metadata(entity, Cow::Borrowed(ns), key, value);
    }
}

/// Fills `entity` from the span's fields; the fields with an HTTP, SQL or
/// AWS meaning are collected into `conv`, applied later by
/// [`Conventions::apply`] (so that the fields of folded spans can join).
pub(crate) fn route<'a>(
    span: &'a SpanData,
    entity: &mut Entity<'a>,
    is_segment: bool,
    budget: &mut TraceBudget,
    options: &FieldOptions,
    conv: &mut Conventions<'a>,
) {
    let ctx = conventions::SpanContext::of(span);
    let mut demoted = Demoted::new();
    for (key, value) in &span.fields {
        let key: &'static str = key;
        // OpenTelemetry's `Ok` is final: a span marked so did not fail,
        // whatever errors it logged (a retry that worked), as
        // tracing-opentelemetry reads it. Sent as any other field.
        if key == "otel.status_code" && as_str(value).is_some_and(|s| s.eq_ignore_ascii_case("ok"))
        {
            conv.status_ok = true;
        }
        if key == crate::layer::TRACE_HEADER_FIELD {
            // Consumed by the layer on roots (it continues that trace);
            // never sent, on any span, indexed or not.
            continue;
        }
        if options.is_indexed(key) {
            // What may leave of it: a URL without its query, never a
            // query's text (unless collected, in its block).
            match conventions::sendable_text(key, value) {
                Some(Cow::Owned(scrubbed)) => {
                    annotate_scrubbed(entity, budget, &mut demoted, key, scrubbed)
                }
                Some(Cow::Borrowed(text))
                    if as_str(value).is_some_and(|s| s.len() != text.len()) =>
                {
                    annotate_scrubbed(entity, budget, &mut demoted, key, text.to_owned())
                }
                Some(_) => annotate(entity, budget, &mut demoted, key, value, TRACING_NAMESPACE),
                None => {}
            }
            // A field with a meaning has it too: it fills its block, names
            // the span, gives the user or fails the span, as unindexed.
            match key {
                "otel.name" => {
                    if let Some(s) = as_str(value).filter(|s| !s.is_empty()) {
                        conv.name = Some(s);
                    }
                }
                "enduser.id" | "xray.user" if is_segment => {
                    if entity.user.is_none() {
                        entity.user = user_of(value);
                    }
                }
                "error" if matches!(value, FieldValue::Bool(true)) => conv.error = true,
                "otel.status_code"
                    if as_str(value).is_some_and(|s| s.eq_ignore_ascii_case("error")) =>
                {
                    conv.error = true
                }
                "otel.status_description" if as_str(value).is_some_and(|s| !s.is_empty()) => {
                    conv.take(key, value, &ctx);
                    conv.error = true;
                }
                _ => {
                    conv.take(key, value, &ctx);
                }
            }
            continue;
        }
        if !conventions::may_have_meaning(key) {
            // Most fields: none of the names below, no prefix either.
            other_field(entity, budget, &mut demoted, options, key, value);
            continue;
        }
        match key {
            // An empty name is none, as for every convention field.
            "otel.name" => match as_str(value) {
                Some("") => {}
                Some(s) => conv.take_otel_name(s, value),
                None => other_field(entity, budget, &mut demoted, options, key, value),
            },
            "otel.status_code" if as_str(value) == Some("") => {}
            // Left out when empty, as a field with a convention is (an
            // empty value fills no block, and hides no other name's).
            "enduser.id"
            | "xray.user"
            | "error.cause_chain"
            | "exception.details"
            | "exception.stacktrace"
                if as_str(value) == Some("") => {}
            "enduser.id" | "xray.user" if is_segment => match user_of(value) {
                // A second name's other user stays metadata.
                Some(user) if entity.user.as_ref().is_none_or(|u| *u == user) => {
                    entity.user = Some(user)
                }
                _ => other_field(entity, budget, &mut demoted, options, key, value),
            },
            "error" if matches!(value, FieldValue::Bool(true)) => conv.error = true,
            "otel.status_code"
                if as_str(value).is_some_and(|s| s.eq_ignore_ascii_case("error")) =>
            {
                conv.error = true
            }
            // An error status with a description (tracing-opentelemetry):
            // a failure, its text a status message.
            "otel.status_description"
                if as_str(value).is_some_and(|s| !s.is_empty()) && conv.take(key, value, &ctx) =>
            {
                conv.error = true
            }
            _ if conv.take(key, value, &ctx) => {}
            // An error's longer text (reqwest-tracing's cause chain, an
            // exception's details or stack trace) names the URL, query and
            // all: metadata, without its secrets.
            "error.cause_chain" | "exception.details" | "exception.stacktrace" => {
                match conventions::sendable_text(key, value) {
                    // As any other field, but without the URL's secrets.
                    Some(Cow::Owned(scrubbed)) if options.index_all => {
                        annotate_scrubbed(entity, budget, &mut demoted, key, scrubbed)
                    }
                    Some(Cow::Owned(scrubbed)) => {
                        if options.other_fields_as_metadata {
                            put_metadata(
                                entity,
                                Cow::Borrowed(TRACING_NAMESPACE),
                                Cow::Borrowed(key),
                                MetaValue::Str(Cow::Owned(scrubbed)),
                            );
                        }
                    }
                    _ => other_field(entity, budget, &mut demoted, options, key, value),
                }
            }
            _ => {
                if let Some(k) = key.strip_prefix("annotation.") {
                    annotate(entity, budget, &mut demoted, k, value, "default");
                } else if let Some(rest) = key.strip_prefix("metadata.") {
                    let (ns, k) = match rest.split_once('.') {
                        Some((ns, k)) if !ns.is_empty() && !k.is_empty() => {
                            // `AWS.` namespaces are the AWS SDKs' (SPEC
                            // §1.7): here, the namespace `AWS`. This
                            // crate's own (its counts, its trim mark) is
                            // reserved as well, and `tracing`, where the
                            // span's other fields go (one of them could
                            // have the same name).
                            if ns == "AWS"
                                || ns == crate::assemble::CRATE_NAMESPACE
                                || ns == TRACING_NAMESPACE
                            {
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
                    other_field(entity, budget, &mut demoted, options, key, value);
                }
            }
        }
    }
    put_demoted(entity, demoted);
}

/// How many annotations `span`'s fields ask for (at most 50): the ones
/// `annotation.`, the indexed ones, or with `index_all` every field without
/// a convention. Counted over
/// the fields its callsite declares, recorded yet or not: a long-lived
/// root that records its annotation once it knows it (`Empty` until then)
/// keeps its place among the first 50 all the same.
pub(crate) fn annotation_fields(span: &SpanData, options: &FieldOptions) -> u8 {
    // Each key once: the second of two names made the same key (`a-b`,
    // `a_b`) goes to metadata (see `annotate_as`), and a key of no usable
    // character is none.
    let mut keys: smallvec::SmallVec<[Cow<'static, str>; 8]> = smallvec::SmallVec::new();
    for name in span.meta.fields().iter().map(|f| f.name()) {
        let key = match name.strip_prefix("annotation.") {
            Some(key) => key,
            // Any simple field: not one with a convention (the http, sql
            // and aws blocks' names, `metadata.`, ...), which goes
            // elsewhere.
            None if options.is_indexed(name)
                || (options.index_all && !conventions::may_have_meaning(name)) =>
            {
                name
            }
            None => continue,
        };
        if let Some(key) = crate::limits::sanitize_annotation_key(key) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.len().min(MAX_ANNOTATIONS_PER_TRACE) as u8
}

/// A field's value as the segment's `user` (a string): its text, or the
/// digits of a numeric id; `None` for a float or a bool.
/// The user a span below the segment names (`enduser.id`, `xray.user`):
/// X-Ray has a user only on segments, so the first such span's (in the
/// order they ended) becomes its segment's, unless the root names one.
pub(crate) fn user_below_segment<'a>(spans: impl Iterator<Item = &'a SpanData>) -> Option<String> {
    spans
        .filter(|s| s.parent_seg.is_some())
        .find_map(|s| {
            s.fields.iter().find_map(|(key, value)| match *key {
                "enduser.id" | "xray.user" => user_of(value),
                _ => None,
            })
        })
        .map(Cow::into_owned)
}

/// The X-Ray user a field names: none for an empty string (X-Ray omits
/// empty fields), a number, or a flag.
fn user_of(value: &FieldValue) -> Option<Cow<'_, str>> {
    Some(match value {
        FieldValue::Str(s) if s.is_empty() => return None,
        FieldValue::Str(s) => Cow::Borrowed(truncate_chars(s, MAX_STRING_CHARS)),
        FieldValue::I64(n) => Cow::Owned(n.to_string()),
        FieldValue::U64(n) => Cow::Owned(n.to_string()),
        FieldValue::I128(n) => Cow::Owned(n.to_string()),
        FieldValue::U128(n) => Cow::Owned(n.to_string()),
        FieldValue::F64(_) | FieldValue::Bool(_) => return None,
    })
}

/// Whether [`other_field`] sends a field without a convention as it was
/// recorded: its name is no credential's (`password`), and its text holds
/// nothing to scrub (a URL's user info or query, a header's credential).
/// The assembler writes a span straight from its fields only when all of
/// them are.
pub(crate) fn sent_as_recorded(key: &'static str, value: &FieldValue) -> bool {
    if conventions::may_have_meaning(key) {
        return matches!(sendable(key, value), Some(None));
    }
    // What `sendable_text` does with a name of no meaning, the name's part
    // remembered.
    !is_credential_key(key)
        && as_str(value).is_none_or(|s| matches!(conventions::without_secrets(s), Cow::Borrowed(_)))
}

/// What [`other_field`] sends of a field: `None`, nothing; `Some(None)`,
/// its value as recorded; `Some(Some(text))`, that text instead (scrubbed).
fn sendable(key: &str, value: &FieldValue) -> Option<Option<String>> {
    Some(match conventions::sendable_text(key, value)? {
        Cow::Owned(text) => Some(text),
        Cow::Borrowed(text) if as_str(value).is_some_and(|s| s.len() != text.len()) => {
            Some(text.to_owned())
        }
        Cow::Borrowed(_) => None,
    })
}

/// [`conventions::is_credential_field`] of a callsite's field name,
/// remembered by the calling thread (the worker asks about the same few
/// names for every span): a table of 64 entries, by the name's address (a
/// `&'static str` at one address never changes).
fn is_credential_key(key: &'static str) -> bool {
    use std::cell::Cell;
    const SLOTS: usize = 64;
    thread_local! {
        static KNOWN: [Cell<(usize, usize, bool)>; SLOTS] =
            const { [const { Cell::new((0, 0, false)) }; SLOTS] };
    }
    let (at, len) = (key.as_ptr() as usize, key.len());
    let slot = ((at >> 3) ^ len) % SLOTS;
    KNOWN
        .try_with(|known| {
            let (seen_at, seen_len, is) = known[slot].get();
            if seen_at == at && seen_len == len && at != 0 {
                return is;
            }
            let is = conventions::is_credential_field(key);
            known[slot].set((at, len, is));
            is
        })
        .unwrap_or_else(|_| conventions::is_credential_field(key))
}

/// A field without a convention: an annotation (with
/// `with_all_fields_indexed`), else metadata under `tracing` (unless
/// `with_other_fields_as_metadata(false)`).
fn other_field<'a>(
    entity: &mut Entity<'a>,
    budget: &mut TraceBudget,
    demoted: &mut Demoted<'a>,
    options: &FieldOptions,
    key: &'static str,
    value: &'a FieldValue,
) {
    // A field of a known meaning that is no convention on this span (a
    // `uri` off a tower-shaped span): without its secrets all the same.
    let Some(scrubbed) = sendable(key, value) else {
        return;
    };
    if let Some(text) = scrubbed {
        if options.index_all {
            annotate_scrubbed(entity, budget, demoted, key, text);
        } else if options.other_fields_as_metadata {
            put_metadata(
                entity,
                Cow::Borrowed(TRACING_NAMESPACE),
                Cow::Borrowed(key),
                MetaValue::Str(Cow::Owned(text)),
            );
        }
        return;
    }
    if options.index_all {
        annotate(entity, budget, demoted, key, value, TRACING_NAMESPACE);
    } else if options.other_fields_as_metadata {
        put_metadata(
            entity,
            Cow::Borrowed(TRACING_NAMESPACE),
            Cow::Borrowed(key),
            meta_value(value),
        );
    }
}
