//! Events recorded inside a span (`Builder::with_events`) rendered as
//! metadata on the worker: `metadata.tracing.events = [{time, level, target,
//! message, fields…}]`.

use std::borrow::Cow;

use crate::fields::TRACING_NAMESPACE;
use crate::model::{Entity, MetaValue};
use crate::span_data::{FieldValue, SpanData};

fn value(v: &FieldValue) -> MetaValue<'_> {
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

pub(crate) fn render<'a>(span: &'a SpanData, entity: &mut Entity<'a>) {
    let list = span
        .events
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
                    MetaValue::Str(Cow::Borrowed(e.meta.target())),
                ),
            ];
            object.extend(
                e.fields
                    .iter()
                    .filter(|(k, _)| !matches!(*k, "time" | "level" | "target"))
                    .map(|(k, v)| (Cow::Borrowed(*k), value(v))),
            );
            MetaValue::Object(object)
        })
        .collect();
    entity
        .metadata
        .entry(Cow::Borrowed(TRACING_NAMESPACE))
        .or_default()
        .insert(Cow::Borrowed("events"), MetaValue::List(list));
}
