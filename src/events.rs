//! Events recorded inside a span (`Builder::with_events`) rendered as
//! metadata on the worker: `metadata.tracing.events = [{time, level, target,
//! message, fields…}]` (a field named `time`, `level` or `target` is
//! `field.time`, `field.level`, `field.target`).

use std::borrow::Cow;

use crate::fields::conventions::{sendable_text, without_secrets};
use crate::fields::{FieldOptions, meta_value};
use crate::layer::LOG_TARGET_FIELD;
use crate::model::{Entity, MetaValue};
use crate::span_data::{EventRecord, FieldValue, SpanData};

/// An event's target: a forwarded `log` record's own (tracing-log's events
/// all have the target `log`).
fn target_of(e: &EventRecord) -> &str {
    e.fields
        .iter()
        .find_map(|(k, v)| match v {
            FieldValue::Str(s) if *k == LOG_TARGET_FIELD => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| e.meta.target())
}

/// The key of an event's field: its name, or for a field named like one of
/// the record's own keys (`time`, `level`, `target`), `field.` and its
/// name, so that neither hides the other.
fn field_key(name: &'static str) -> Cow<'static, str> {
    match name {
        "time" | "level" | "target" => Cow::Owned(format!("field.{name}")),
        _ => Cow::Borrowed(name),
    }
}

/// Whether an event's field is sent: not a query's text unless queries are
/// collected (sqlx logs each statement in an event's `db.statement` and
/// `summary`, the
/// MongoDB driver each command, and its reply, in `command` and `reply`),
/// and not a forwarded record's target (the record's own target).
fn sent(e: &EventRecord, key: &str, options: &FieldOptions) -> bool {
    match key {
        LOG_TARGET_FIELD => false,
        "db.statement" | "db.query.text" => options.collect_sql_queries(),
        // sqlx's summary is the query's first words: literals too.
        "summary" if e.meta.target() == "sqlx::query" => options.collect_sql_queries(),
        "command" | "reply" if e.meta.target().starts_with("mongodb::command") => {
            options.collect_sql_queries()
        }
        _ => true,
    }
}

/// An event's field as it may leave: as a span's would (a URL without its
/// user info, query and fragment, a connection string without its
/// passwords, never a URL's query: [`sendable_text`]), and its message and
/// error text, at any level, without a URL's secrets; `None` for a field
/// that never leaves. A query's text [`sent`] lets through (collected) goes
/// as it is.
fn sendable_value<'a>(key: &str, v: &'a FieldValue) -> Option<MetaValue<'a>> {
    let text = match key {
        "db.statement" | "db.query.text" => return Some(meta_value(v)),
        "message" | "error" => match v {
            FieldValue::Str(s) => without_secrets(s),
            _ => return Some(meta_value(v)),
        },
        _ => sendable_text(key, v)?,
    };
    Some(match (v, text) {
        // A value replaced (a credential header's, of any type).
        (_, Cow::Owned(t)) => MetaValue::Str(Cow::Owned(t)),
        (FieldValue::Str(s), Cow::Borrowed(t)) if t.len() == s.len() => meta_value(v),
        (FieldValue::Str(_), text) => MetaValue::Str(text),
        _ => meta_value(v),
    })
}

pub(crate) fn render<'a>(span: &'a SpanData, entity: &mut Entity<'a>, options: &FieldOptions) {
    let list = span
        .events()
        .iter()
        .map(|e| {
            let micros = span.anchor.micros(e.at);
            let mut object = vec![
                (Cow::Borrowed("time"), MetaValue::F64(micros as f64 / 1e6)),
                (
                    Cow::Borrowed("level"),
                    MetaValue::Str(Cow::Borrowed(e.meta.level().as_str())),
                ),
                (
                    Cow::Borrowed("target"),
                    MetaValue::Str(Cow::Borrowed(target_of(e))),
                ),
            ];
            // One key once. A name given twice (`message = ..` beside a
            // format string) keeps its last value, as a JSON parser reading
            // both would; a field renamed onto another field's name (`time`
            // beside the event's own `field.time`) is renamed again.
            let mut names: Vec<&'static str> = vec![""; object.len()];
            for (k, v) in e.fields.iter().filter(|(k, _)| sent(e, k, options)) {
                let Some(value) = sendable_value(k, v) else {
                    continue;
                };
                let mut key = field_key(k);
                loop {
                    match object.iter().position(|(have, _)| *have == key) {
                        Some(i) if names[i] == *k => {
                            object[i].1 = value;
                            break;
                        }
                        Some(_) => key = Cow::Owned(format!("field.{key}")),
                        None => {
                            object.push((key, value));
                            names.push(k);
                            break;
                        }
                    }
                }
            }
            MetaValue::Object(object)
        })
        .collect();
    crate::fields::put_own(entity, "events", MetaValue::List(list));
}
