//! A hand-written JSON writer for the fixed segment schema of [`crate::model`]
//! (worker thread only).
//!
//! It writes exactly the bytes that `serde_json::to_writer` writes for the
//! same [`Entity`] (the serde derives stay as the reference, checked by a
//! differential test): the same keys in the same order, the same omission of
//! empty fields, the same escapes and the same numbers. The Assembler relies
//! on that length to split documents, so "the same bytes" is the contract,
//! not just "the same JSON value".
//!
//! What makes it cheaper than the serde path: keys are literal bytes (never
//! escaped at run time), strings are scanned eight bytes at a time for the
//! few bytes that need an escape and copied in runs, integers go through
//! `itoa`, ids are written as hex directly, and epoch seconds are written as
//! digits (`seconds.micros`) without float formatting wherever that is
//! exactly what the float formatting would print.

use std::fmt::Write as _;

use crate::id::{SegmentId, TraceId};
use crate::model::{
    AnnotationValue, Annotations, Aws, BlockContent, Cause, Entity, EpochSeconds, Exception, Http,
    MetaValue, Metadata, Service, Sql, StackFrame, XrayInfo, non_finite_name,
};
use crate::span_data::FieldValue;

/// Appends the JSON document of `e` to `out`.
pub(crate) fn write_entity(out: &mut String, e: &Entity<'_>) {
    out.push('{');
    if let Some(kind) = e.kind {
        out.push_str("\"type\":");
        string(out, kind);
        out.push(',');
    }
    out.push_str("\"name\":");
    string(out, &e.name);
    out.push_str(",\"id\":");
    match e.id {
        Some(id) => segment_id(out, id),
        None => out.push_str("null"),
    }
    if let Some(trace_id) = e.trace_id {
        out.push_str(",\"trace_id\":");
        self::trace_id(out, trace_id);
    }
    if let Some(parent) = e.parent_id {
        out.push_str(",\"parent_id\":");
        segment_id(out, parent);
    }
    out.push_str(",\"start_time\":");
    epoch_seconds(out, e.start_time);
    if let Some(end) = e.end_time {
        out.push_str(",\"end_time\":");
        epoch_seconds(out, end);
    }
    if e.in_progress {
        out.push_str(",\"in_progress\":true");
    }
    if let Some(ns) = e.namespace {
        out.push_str(",\"namespace\":");
        string(out, ns);
    }
    if let Some(origin) = e.origin {
        out.push_str(",\"origin\":");
        string(out, origin);
    }
    if let Some(user) = &e.user {
        out.push_str(",\"user\":");
        string(out, user);
    }
    if let Some(service) = e.service {
        out.push_str(",\"service\":");
        self::service(out, service);
    }
    if let Some(h) = e.http.get().filter(|h| !h.is_empty()) {
        out.push_str(",\"http\":");
        http(out, h);
    }
    if let Some(a) = e.aws.get().filter(|a| !a.is_empty()) {
        out.push_str(",\"aws\":");
        aws(out, a);
    }
    if let Some(q) = e.sql.get().filter(|q| !q.is_empty()) {
        out.push_str(",\"sql\":");
        sql(out, q);
    }
    if e.error {
        out.push_str(",\"error\":true");
    }
    if e.throttle {
        out.push_str(",\"throttle\":true");
    }
    if e.fault {
        out.push_str(",\"fault\":true");
    }
    if let Some(c) = &e.cause {
        out.push_str(",\"cause\":");
        cause(out, c);
    }
    if !e.annotations.is_empty() {
        out.push_str(",\"annotations\":");
        annotations(out, &e.annotations);
    }
    if !e.metadata.is_empty() {
        out.push_str(",\"metadata\":");
        metadata(out, &e.metadata);
    }
    if !e.precursor_ids.is_empty() {
        out.push_str(",\"precursor_ids\":[");
        for (i, id) in e.precursor_ids.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            segment_id(out, *id);
        }
        out.push(']');
    }
    out.push('}');
}

/// What [`write_entity`] writes for a subsegment that has nothing but its
/// name, id and times, and `fields` kept as `metadata.tracing` (a span with
/// no field convention, no error and no event: most spans), without
/// building the [`Entity`] first. A key given twice keeps its first place
/// and its last value, as [`Metadata::put`] does. The assembler's
/// differential test holds the two paths to the same bytes.
pub(crate) fn write_plain_subsegment(
    out: &mut String,
    name: &str,
    id: SegmentId,
    start: EpochSeconds,
    end: EpochSeconds,
    fields: &[(&'static str, FieldValue)],
) {
    out.push_str("{\"name\":");
    string(out, name);
    out.push_str(",\"id\":");
    segment_id(out, id);
    out.push_str(",\"start_time\":");
    epoch_seconds(out, start);
    out.push_str(",\"end_time\":");
    epoch_seconds(out, end);
    if !fields.is_empty() {
        out.push_str(",\"metadata\":{\"tracing\":{");
        // Names are `&'static str`s of the callsite: mostly the same
        // pointer when equal, and of another length when not.
        let same = |a: &str, b: &str| a.len() == b.len() && (std::ptr::eq(a, b) || a == b);
        for (i, (key, _)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(k, _)| same(k, key)) {
                continue; // written at its first place
            }
            if i > 0 {
                out.push(',');
            }
            string(out, key);
            out.push(':');
            // The last value given for the key.
            let value = fields[i + 1..]
                .iter()
                .rev()
                .find_map(|(k, v)| same(k, key).then_some(v))
                .unwrap_or(&fields[i].1);
            field_value(out, value);
        }
        out.push_str("}}");
    }
    out.push('}');
}

/// A 128-bit integer: a number when 64 bits hold it, else (beyond what
/// most JSON readers hold exactly) a string, as `MetaValue`'s `Serialize`.
fn wide_signed(out: &mut String, n: i128) {
    match (i64::try_from(n), u64::try_from(n)) {
        (Ok(n), _) => signed(out, n),
        (_, Ok(n)) => unsigned(out, n),
        _ => {
            let _ = write!(out, "\"{n}\"");
        }
    }
}

/// [`wide_signed`] for an unsigned one.
fn wide_unsigned(out: &mut String, n: u128) {
    match u64::try_from(n) {
        Ok(n) => unsigned(out, n),
        Err(_) => {
            let _ = write!(out, "\"{n}\"");
        }
    }
}

/// A field's value as [`meta_value`] writes the [`MetaValue`] made of it.
fn field_value(out: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Str(s) => string(out, s),
        FieldValue::I64(n) => signed(out, *n),
        FieldValue::U64(n) => unsigned(out, *n),
        FieldValue::I128(n) => wide_signed(out, **n),
        FieldValue::U128(n) => wide_unsigned(out, **n),
        FieldValue::F64(f) if f.is_finite() => finite_float(out, *f),
        FieldValue::F64(f) => string(out, non_finite_name(*f)),
        FieldValue::Bool(b) => boolean(out, *b),
    }
}

/// An object whose members are all optional: writes the separators.
struct Object<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> Object<'o> {
    /// Writes `{`.
    fn open(out: &'o mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    /// Starts a member: `key` is the literal `"name":`, already quoted.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push_str(key);
        self.out
    }

    /// A string member, if there is a value.
    fn str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            string(self.key(key), v);
        }
    }

    /// Writes `}`.
    fn close(self) {
        self.out.push('}');
    }
}

/// The `service` block.
fn service(out: &mut String, s: &Service) {
    let mut o = Object::open(out);
    o.str("\"version\":", s.version.as_deref());
    o.str("\"runtime\":", Some(s.runtime));
    o.str("\"runtime_version\":", s.runtime_version);
    o.close();
}

/// The `http` block (not empty).
fn http(out: &mut String, h: &Http<'_>) {
    let mut o = Object::open(out);
    let r = &h.request;
    if r.method.is_some()
        || r.url.is_some()
        || r.user_agent.is_some()
        || r.client_ip.is_some()
        || r.x_forwarded_for.is_some()
        || r.traced.is_some()
    {
        let mut req = Object::open(o.key("\"request\":"));
        req.str("\"method\":", r.method.as_deref());
        req.str("\"url\":", r.url.as_deref());
        req.str("\"user_agent\":", r.user_agent.as_deref());
        req.str("\"client_ip\":", r.client_ip.as_deref());
        if let Some(b) = r.x_forwarded_for {
            boolean(req.key("\"x_forwarded_for\":"), b);
        }
        if let Some(b) = r.traced {
            boolean(req.key("\"traced\":"), b);
        }
        req.close();
    }
    let s = &h.response;
    if s.status.is_some() || s.content_length.is_some() {
        let mut resp = Object::open(o.key("\"response\":"));
        if let Some(status) = s.status {
            unsigned(resp.key("\"status\":"), u64::from(status));
        }
        if let Some(len) = s.content_length {
            signed(resp.key("\"content_length\":"), len);
        }
        resp.close();
    }
    o.close();
}

/// The `aws` block (not empty), resource blocks flattened into it.
fn aws(out: &mut String, a: &Aws<'_>) {
    let mut o = Object::open(out);
    o.str("\"account_id\":", a.account_id.as_deref());
    o.str("\"operation\":", a.operation.as_deref());
    o.str("\"region\":", a.region.as_deref());
    o.str("\"request_id\":", a.request_id.as_deref());
    o.str("\"queue_url\":", a.queue_url.as_deref());
    o.str("\"table_name\":", a.table_name.as_deref());
    if !a.table_names.is_empty() {
        let out = o.key("\"table_names\":");
        out.push('[');
        for (i, name) in a.table_names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, name);
        }
        out.push(']');
    }
    o.str("\"bucket_name\":", a.bucket_name.as_deref());
    o.str("\"topic_arn\":", a.topic_arn.as_deref());
    o.str("\"function_name\":", a.function_name.as_deref());
    o.str("\"invocation_type\":", a.invocation_type.as_deref());
    o.str("\"function_error\":", a.function_error.as_deref());
    if let Some(n) = a.retries {
        unsigned(o.key("\"retries\":"), n);
    }
    // Flattened too.
    for (k, v) in a.parameters.iter().flat_map(|p| p.iter()) {
        let out = o.key("");
        string(out, k);
        out.push(':');
        json_value(out, v);
    }
    // Flattened: the resource blocks are members of `aws` itself.
    if let Some(resource) = a.resource {
        for (k, v) in resource {
            let out = o.key("");
            string(out, k);
            out.push(':');
            json_value(out, v);
        }
    }
    if let Some(x) = &a.xray {
        xray(o.key("\"xray\":"), x);
    }
    o.close();
}

/// `aws.xray`.
fn xray(out: &mut String, x: &XrayInfo<'_>) {
    let mut o = Object::open(out);
    o.str("\"sdk\":", Some(x.sdk));
    o.str("\"sdk_version\":", Some(x.sdk_version));
    o.str("\"sampling_rule_name\":", x.sampling_rule_name);
    o.close();
}

/// The `sql` block (not empty).
fn sql(out: &mut String, s: &Sql<'_>) {
    let mut o = Object::open(out);
    o.str("\"url\":", s.url.as_deref());
    o.str("\"connection_string\":", s.connection_string.as_deref());
    o.str("\"sanitized_query\":", s.sanitized_query.as_deref());
    o.str("\"database_type\":", s.database_type.as_deref());
    o.str("\"database_version\":", s.database_version.as_deref());
    o.str("\"driver_version\":", s.driver_version.as_deref());
    o.str("\"user\":", s.user.as_deref());
    o.str("\"preparation\":", s.preparation);
    o.close();
}

/// The `cause` block.
fn cause(out: &mut String, c: &Cause<'_>) {
    let mut o = Object::open(out);
    o.str("\"working_directory\":", c.working_directory);
    if !c.exceptions.is_empty() {
        let out = o.key("\"exceptions\":");
        out.push('[');
        for (i, ex) in c.exceptions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            exception(out, ex);
        }
        out.push(']');
    }
    o.close();
}

/// One of `cause.exceptions`.
fn exception(out: &mut String, ex: &Exception<'_>) {
    out.push_str("{\"id\":");
    segment_id(out, ex.id);
    // An empty text is no message (SPEC §1.2: empty optional fields are
    // omitted; the SDKs leave it out): `error!("")`, an error that
    // displays as nothing.
    if let Some(m) = ex.message.as_deref().filter(|m| !m.is_empty()) {
        out.push_str(",\"message\":");
        string(out, m);
    }
    if let Some(k) = &ex.kind {
        out.push_str(",\"type\":");
        string(out, k);
    }
    if ex.remote {
        out.push_str(",\"remote\":true");
    }
    if let Some(n) = ex.truncated {
        out.push_str(",\"truncated\":");
        unsigned(out, u64::from(n));
    }
    if let Some(n) = ex.skipped {
        out.push_str(",\"skipped\":");
        unsigned(out, u64::from(n));
    }
    if let Some(id) = ex.cause {
        out.push_str(",\"cause\":");
        segment_id(out, id);
    }
    if !ex.stack.is_empty() {
        out.push_str(",\"stack\":[");
        for (i, frame) in ex.stack.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            stack_frame(out, frame);
        }
        out.push(']');
    }
    out.push('}');
}

/// One frame of an exception's `stack`.
fn stack_frame(out: &mut String, f: &StackFrame<'_>) {
    let mut o = Object::open(out);
    o.str("\"path\":", f.path.as_deref());
    if let Some(line) = f.line {
        unsigned(o.key("\"line\":"), u64::from(line));
    }
    o.str("\"label\":", f.label);
    o.close();
}

/// The `annotations` object.
fn annotations(out: &mut String, a: &Annotations<'_>) {
    out.push('{');
    for (i, (k, v)) in a.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        annotation(out, k, v);
    }
    out.push('}');
}

/// One annotation: `"key":value`.
fn annotation(out: &mut String, k: &str, v: &AnnotationValue<'_>) {
    string(out, k);
    out.push(':');
    match v {
        AnnotationValue::Str(s) => string(out, s),
        AnnotationValue::I64(n) => signed(out, *n),
        AnnotationValue::U64(n) => unsigned(out, *n),
        // serde_json writes a non-finite f64 as `null`.
        AnnotationValue::F64(f) => float_or_null(out, *f),
        AnnotationValue::Bool(b) => boolean(out, *b),
    }
}

/// The bytes an annotation takes in a document (the comma before it not
/// counted), written to `scratch` to be measured.
pub(crate) fn annotation_entry_len(
    scratch: &mut String,
    key: &str,
    value: &AnnotationValue<'_>,
) -> usize {
    scratch.clear();
    annotation(scratch, key, value);
    scratch.len()
}

/// The `metadata` object: namespace → key → value.
fn metadata(out: &mut String, m: &Metadata<'_>) {
    out.push('{');
    for (i, (ns, entries)) in m.entries().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, ns);
        out.push_str(":{");
        for (j, (k, v)) in entries.entries().iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            string(out, k);
            out.push(':');
            meta_value(out, v);
        }
        out.push('}');
    }
    out.push('}');
}

/// The bytes `"key":value`, a metadata entry, takes in a document (the
/// comma before it not counted), written to `scratch` to be measured.
pub(crate) fn meta_entry_len(scratch: &mut String, key: &str, value: &MetaValue<'_>) -> usize {
    scratch.clear();
    string(scratch, key);
    scratch.push(':');
    meta_value(scratch, value);
    scratch.len()
}

/// The bytes a metadata value takes in a document, written to `scratch`
/// to be measured.
pub(crate) fn meta_value_len(scratch: &mut String, value: &MetaValue<'_>) -> usize {
    scratch.clear();
    meta_value(scratch, value);
    scratch.len()
}

/// A metadata value; nested lists and objects are written with an explicit
/// stack, so that no depth of nesting can overflow the worker's stack.
fn meta_value(out: &mut String, v: &MetaValue<'_>) {
    enum Open<'v, 'a> {
        List(std::slice::Iter<'v, MetaValue<'a>>),
        Object(std::slice::Iter<'v, (std::borrow::Cow<'a, str>, MetaValue<'a>)>),
    }
    let mut stack: Vec<(Open<'_, '_>, bool)> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match v {
                MetaValue::Str(s) => string(out, s),
                MetaValue::I64(n) => signed(out, *n),
                MetaValue::U64(n) => unsigned(out, *n),
                MetaValue::I128(n) => wide_signed(out, *n),
                MetaValue::U128(n) => wide_unsigned(out, *n),
                MetaValue::F64(f) if f.is_finite() => finite_float(out, *f),
                MetaValue::F64(f) => string(out, non_finite_name(*f)),
                MetaValue::Bool(b) => boolean(out, *b),
                MetaValue::List(items) => {
                    out.push('[');
                    stack.push((Open::List(items.iter()), true));
                }
                MetaValue::Object(entries) => {
                    out.push('{');
                    stack.push((Open::Object(entries.iter()), true));
                }
            }
        }
        let Some((open, first)) = stack.last_mut() else {
            return;
        };
        let is_first = std::mem::replace(first, false);
        match open {
            Open::List(items) => match items.next() {
                Some(item) => {
                    if !is_first {
                        out.push(',');
                    }
                    next = Some(item);
                }
                None => {
                    out.push(']');
                    stack.pop();
                }
            },
            Open::Object(entries) => match entries.next() {
                Some((k, item)) => {
                    if !is_first {
                        out.push(',');
                    }
                    string(out, k);
                    out.push(':');
                    next = Some(item);
                }
                None => {
                    out.push('}');
                    stack.pop();
                }
            },
        }
    }
}

/// A `serde_json::Value` (the resource blocks), as serde_json writes it.
fn json_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => boolean(out, *b),
        // `Number`'s `Display` is its JSON form (also with arbitrary precision).
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                json_value(out, item);
            }
            out.push('}');
        }
    }
}

/// `true` or `false`.
fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

/// An unsigned integer, as serde_json writes it (`itoa`).
fn unsigned(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// A signed integer, as serde_json writes it (`itoa`).
fn signed(out: &mut String, n: i64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// A finite float as serde_json writes it (the same formatter, `zmij`).
fn finite_float(out: &mut String, f: f64) {
    out.push_str(zmij::Buffer::new().format_finite(f));
}

/// A float as serde_json's `serialize_f64` writes it: `null` when not finite.
fn float_or_null(out: &mut String, f: f64) {
    if f.is_finite() {
        finite_float(out, f);
    } else {
        out.push_str("null");
    }
}

/// Below this many microseconds (2^33 seconds, the year 2242) the `f64`
/// nearest to `micros / 1e6` is less than 4.8e-7 (half its ulp) from that
/// exact decimal, while every other decimal of at most six places is at
/// least 1e-6 from it: the shortest decimal that reads back as the same
/// `f64` (what serde_json prints) is the exact one, trailing zeros cut.
const EXACT_MICROS_LIMIT: u64 = (1 << 33) * 1_000_000;

/// `seconds.micros`, exactly as `serde_json` prints `micros as f64 / 1e6`.
fn epoch_seconds(out: &mut String, t: EpochSeconds) {
    let us = t.0;
    // Below one second the float formatting may switch to `1e-6` forms.
    if !(1_000_000..EXACT_MICROS_LIMIT).contains(&us) {
        finite_float(out, us as f64 / 1e6);
        return;
    }
    let secs = us / 1_000_000;
    // `SSSSSSSSSS.ffffff`: ten places for the seconds (below 2^33), then
    // the decimals. The fraction's eight digits go first (two leading
    // zeros, the first of which the seconds' last digit overwrites, the
    // second the point).
    let mut buf = Aligned([b'0'; 17]);
    let buf = &mut buf.0;
    buf[9..17].copy_from_slice(&digits8((us % 1_000_000) as u32));
    buf[2..10].copy_from_slice(&digits8((secs % 100_000_000) as u32));
    let high = (secs / 100_000_000) as u8; // below 86
    buf[0] = b'0' + high / 10;
    buf[1] = b'0' + high % 10;
    buf[10] = b'.';
    // No leading zeros (one digit stays: `secs` is at least 1), no
    // trailing ones (one decimal stays: `.0`).
    let start = buf[..9].iter().take_while(|&&b| b == b'0').count();
    let mut end = 17;
    while end > 12 && buf[end - 1] == b'0' {
        end -= 1;
    }
    out.push_str(std::str::from_utf8(&buf[start..end]).unwrap_or_default());
}

/// The eight decimal digits of `n` (below 10^8, with leading zeros), all
/// at once: the number is split into 4-digit, then 2-digit, then 1-digit
/// lanes of one word by multiplications by reciprocals (exact in these
/// ranges), and the lanes turned into ASCII together.
fn digits8(n: u32) -> [u8; 8] {
    let x = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    // Each 32-bit lane (below 10^4): lane / 100 and lane % 100.
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    // Each 16-bit lane (below 100): lane / 10 and lane % 10.
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = tens | ((x - tens * 10) << 8);
    (x + 0x3030_3030_3030_3030).to_le_bytes()
}

/// Lowercase hex digits, for `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A stack buffer of ASCII text, word-aligned: `str::from_utf8` checks an
/// aligned slice a word pair at a time, an unaligned one byte by byte.
#[repr(align(8))]
struct Aligned<T>(T);

/// `"` + 16 lowercase hex digits + `"`.
fn segment_id(out: &mut String, id: SegmentId) {
    quoted_ascii(out, &id.to_ascii());
}

/// `"1-EEEEEEEE-RRRRRRRRRRRRRRRRRRRRRRRR"`.
fn trace_id(out: &mut String, id: TraceId) {
    quoted_ascii(out, &id.to_ascii());
}

/// `"` + `ascii` + `"`, for text known to need no escape.
fn quoted_ascii(out: &mut String, ascii: &[u8]) {
    out.push('"');
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
    out.push('"');
}

/// A JSON string: quoted, with `"`, `\` and control characters escaped as
/// serde_json escapes them (`\n`-style where JSON has one, else `\u00XX`).
fn string(out: &mut String, s: &str) {
    if has_escape(s.as_bytes()) {
        escaped_string(out, s);
        return;
    }
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// [`string`] for the strings that do need an escape: runs between the
/// escaped bytes are copied whole.
#[cold]
fn escaped_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 8);
    out.push('"');
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if needs_escape(b) {
            out.push_str(&s[run..i]);
            escape(out, b);
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// `0x01` in every byte of a word.
const LO: u64 = 0x0101_0101_0101_0101;
/// `0x80` (each byte's high bit) in every byte of a word.
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of the word is a control character, `"` or `\`.
fn word_needs_escape(w: u64) -> bool {
    let control = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * u64::from(b'\\'));
    let backslash = b.wrapping_sub(LO) & !b;
    (control | quote | backslash) & HI != 0
}

/// A control character, `"` or `\`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` needs an escape: eight bytes at a time, the
/// last (overlapping) word or half-word covering the tail.
fn has_escape(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word_needs_escape(word_at(bytes, i)) {
                return true;
            }
            i += 8;
        }
        word_needs_escape(word_at(bytes, n - 8))
    } else if n >= 4 {
        // The first and the last four bytes (overlapping), side by side.
        let first = half_word_at(bytes, 0);
        let last = half_word_at(bytes, n - 4);
        word_needs_escape(first | (last << 32))
    } else {
        bytes.iter().any(|&b| needs_escape(b))
    }
}

/// The eight bytes at `i`, as a little-endian word.
fn word_at(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The four bytes at `i`, as the low half of a little-endian word.
fn half_word_at(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0; 4];
    w.copy_from_slice(&bytes[i..i + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// The escape of one byte that needs one, as serde_json writes it.
fn escape(out: &mut String, b: u8) {
    let short = match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x0c => "\\f",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        _ => {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            return;
        }
    };
    out.push_str(short);
}

#[cfg(test)]
mod tests {
    //! Differential tests: the writer against `serde_json` (the serde derives
    //! of `crate::model`), byte for byte.

    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{HttpRequest, HttpResponse, SmallMap};

    fn ours(e: &Entity<'_>) -> String {
        let mut out = String::new();
        write_entity(&mut out, e);
        out
    }

    /// Same bytes as serde_json, and valid JSON that parses to the same value.
    fn check(e: &Entity<'_>) {
        let reference = serde_json::to_string(e).expect("serde_json serializes every entity");
        let written = ours(e);
        let parsed: serde_json::Value =
            serde_json::from_str(&written).unwrap_or_else(|err| panic!("{err}: {written}"));
        let expected: serde_json::Value = serde_json::from_str(&reference).unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(written, reference);
    }

    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "\"quoted\"",
        "back\\slash",
        "\u{0}\u{1}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
        "tab\there, newline\nthere",
        "üñíçødé — ünïcode",
        "emoji 😀🦀 and \u{fffd}",
        "\\u0000 not an escape",
        "</script><!-- -->",
        "exactly8",
        "sixteen bytes!!!",
        "0123456\"",
        "01234567\\",
        "é\u{1b}[31mred\u{1b}[0m",
    ];

    fn hostile() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            4 => any::<char>(),
            2 => prop::sample::select(vec![
                '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{8}', '\u{c}', '\u{1f}', '\u{7f}', 'é',
                '€', '😀', '/', 'a', ' ',
            ]),
            4 => prop::char::range('a', 'z'),
        ];
        prop_oneof![
            1 => prop::sample::select(HOSTILE).prop_map(str::to_owned),
            4 => prop::collection::vec(chars, 0..40).prop_map(|v| v.into_iter().collect()),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            prop::sample::select(vec![
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
                -0.0,
                0.5,
                1e16,
                1e-7,
                f64::MAX,
                f64::MIN_POSITIVE,
                5e-324,
            ]),
        ]
    }

    fn meta_value() -> impl Strategy<Value = MetaValue<'static>> {
        let leaf = prop_oneof![
            hostile().prop_map(|s| MetaValue::Str(Cow::Owned(s))),
            any::<i64>().prop_map(MetaValue::I64),
            any::<u64>().prop_map(MetaValue::U64),
            any::<i128>().prop_map(MetaValue::I128),
            any::<u128>().prop_map(MetaValue::U128),
            float().prop_map(MetaValue::F64),
            any::<bool>().prop_map(MetaValue::Bool),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(MetaValue::List),
                prop::collection::vec((hostile().prop_map(Cow::Owned), inner), 0..6)
                    .prop_map(MetaValue::Object),
            ]
        })
    }

    fn annotation_value() -> impl Strategy<Value = AnnotationValue<'static>> {
        prop_oneof![
            hostile().prop_map(|s| AnnotationValue::Str(Cow::Owned(s))),
            any::<i64>().prop_map(AnnotationValue::I64),
            any::<u64>().prop_map(AnnotationValue::U64),
            float().prop_map(AnnotationValue::F64),
            any::<bool>().prop_map(AnnotationValue::Bool),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            float().prop_map(Value::from),
            hostile().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((hostile(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn micros() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0..2_000_000u64,
            1_000_000_000_000_000..5_000_000_000_000_000u64,
            EXACT_MICROS_LIMIT - 2_000_000..EXACT_MICROS_LIMIT + 2_000_000,
        ]
    }

    fn segment_id() -> impl Strategy<Value = SegmentId> {
        (1..=u64::MAX).prop_map(|v| SegmentId::from_u64(v).unwrap())
    }

    fn opt_str() -> impl Strategy<Value = Option<Cow<'static, str>>> {
        proptest::option::of(hostile().prop_map(Cow::Owned))
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn opt_static() -> impl Strategy<Value = Option<&'static str>> {
        proptest::option::of(hostile().prop_map(leak))
    }

    fn http() -> impl Strategy<Value = Http<'static>> {
        (
            (opt_str(), opt_str(), opt_str(), opt_str()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |((method, url, user_agent, client_ip), xff, traced, status, len)| Http {
                    request: HttpRequest {
                        method,
                        url,
                        user_agent,
                        client_ip,
                        x_forwarded_for: xff,
                        traced,
                    },
                    response: HttpResponse {
                        status,
                        content_length: len,
                    },
                },
            )
    }

    fn aws() -> impl Strategy<Value = Aws<'static>> {
        (
            (opt_str(), opt_str(), opt_str(), opt_str(), opt_str()),
            opt_str(),
            prop::collection::vec(hostile().prop_map(Cow::Owned), 0..3),
            (opt_str(), opt_str(), opt_str(), opt_str(), opt_str()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(prop::collection::vec((hostile(), json_value()), 0..3)),
            proptest::option::of((opt_static(), hostile().prop_map(leak))),
            proptest::option::of(prop::collection::vec((hostile(), json_value()), 0..3)),
        )
            .prop_map(
                |(
                    (account_id, operation, region, request_id, queue_url),
                    table_name,
                    table_names,
                    (bucket_name, topic_arn, function_name, invocation_type, function_error),
                    retries,
                    resource,
                    xray,
                    parameters,
                )| {
                    let resource: Option<&'static serde_json::Map<String, serde_json::Value>> =
                        resource.map(|kv| &*Box::leak(Box::new(kv.into_iter().collect())));
                    Aws {
                        account_id,
                        operation,
                        region,
                        request_id,
                        queue_url,
                        table_name,
                        table_names,
                        bucket_name,
                        topic_arn,
                        function_name,
                        invocation_type,
                        function_error,
                        retries,
                        parameters: parameters.map(|kv| Box::new(kv.into_iter().collect())),
                        resource,
                        xray: xray.map(|(rule, version)| XrayInfo {
                            sdk: "tracing-xray",
                            sdk_version: version,
                            sampling_rule_name: rule,
                        }),
                    }
                },
            )
    }

    fn sql() -> impl Strategy<Value = Sql<'static>> {
        (
            (opt_str(), opt_str(), opt_str(), opt_str()),
            (opt_str(), opt_str(), opt_str()),
            opt_static(),
        )
            .prop_map(
                |((url, conn, query, db_type), (db_ver, drv, user), prep)| Sql {
                    url,
                    connection_string: conn,
                    sanitized_query: query,
                    database_type: db_type,
                    database_version: db_ver,
                    driver_version: drv,
                    user,
                    preparation: prep,
                },
            )
    }

    fn cause() -> impl Strategy<Value = Cause<'static>> {
        let frame = (
            opt_static(),
            proptest::option::of(any::<u32>()),
            opt_static(),
        )
            .prop_map(|(path, line, label)| StackFrame {
                path: path.map(Cow::Borrowed),
                line,
                label,
            });
        let exception = (
            segment_id(),
            opt_str(),
            opt_str(),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(segment_id()),
            prop::collection::vec(frame, 0..3),
        )
            .prop_map(
                |(id, message, kind, remote, truncated, skipped, cause, stack)| Exception {
                    id,
                    message,
                    kind,
                    remote,
                    truncated,
                    skipped,
                    cause,
                    stack,
                },
            );
        (opt_static(), prop::collection::vec(exception, 0..3)).prop_map(
            |(working_directory, exceptions)| Cause {
                working_directory,
                exceptions,
            },
        )
    }

    fn service() -> impl Strategy<Value = &'static Service> {
        (
            proptest::option::of(hostile()),
            hostile().prop_map(leak),
            opt_static(),
        )
            .prop_map(|(version, runtime, runtime_version)| {
                &*Box::leak(Box::new(Service {
                    version,
                    runtime,
                    runtime_version,
                }))
            })
    }

    fn metadata() -> impl Strategy<Value = crate::model::Metadata<'static>> {
        prop::collection::vec(
            (
                hostile(),
                prop::collection::vec((hostile(), meta_value()), 0..5),
            ),
            0..4,
        )
        .prop_map(|namespaces| {
            let mut md = crate::model::Metadata::default();
            for (ns, entries) in namespaces {
                let mut map = SmallMap::default();
                for (k, v) in entries {
                    map.insert(Cow::Owned(k), v);
                }
                md.insert(Cow::Owned(ns), map);
            }
            md
        })
    }

    fn entity() -> impl Strategy<Value = Entity<'static>> {
        let head = (
            proptest::option::of(Just("subsegment")),
            hostile(),
            proptest::option::of(segment_id()),
            proptest::option::of(
                any::<u128>().prop_filter_map("valid trace id", TraceId::from_u128),
            ),
            proptest::option::of(segment_id()),
            micros(),
            proptest::option::of(micros()),
            any::<bool>(),
            opt_static(),
            opt_static(),
            opt_str(),
            proptest::option::of(service()),
        );
        let blocks = (
            proptest::option::of(http()),
            proptest::option::of(aws()),
            proptest::option::of(sql()),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            proptest::option::of(cause()),
            prop::collection::vec((hostile(), annotation_value()), 0..5),
            metadata(),
            prop::collection::vec(segment_id(), 0..3),
        );
        (head, blocks).prop_map(
            |(
                (
                    kind,
                    name,
                    id,
                    trace_id,
                    parent_id,
                    start,
                    end,
                    in_progress,
                    ns,
                    origin,
                    user,
                    svc,
                ),
                (http, aws, sql, (error, throttle, fault), cause, ann, metadata, precursors),
            )| {
                let mut annotations = Annotations::default();
                for (k, v) in ann {
                    annotations.insert(Cow::Owned(k), v);
                }
                Entity {
                    kind,
                    name: Cow::Owned(name),
                    id,
                    trace_id,
                    parent_id,
                    start_time: EpochSeconds::from_micros(start),
                    end_time: end.map(EpochSeconds::from_micros),
                    in_progress,
                    namespace: ns,
                    origin,
                    user,
                    service: svc,
                    // Blocks never written (`None`) or written, maybe empty.
                    http: http.map_or_else(Default::default, Into::into),
                    aws: aws.map_or_else(Default::default, Into::into),
                    sql: sql.map_or_else(Default::default, Into::into),
                    error,
                    throttle,
                    fault,
                    cause,
                    annotations,
                    metadata,
                    precursor_ids: precursors,
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn entities_match_serde_json(e in entity()) {
            check(&e);
        }

        #[test]
        fn strings_match_serde_json(s in hostile()) {
            let mut out = String::new();
            string(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn epoch_seconds_match_serde_json(us in micros()) {
            let mut out = String::new();
            epoch_seconds(&mut out, EpochSeconds::from_micros(us));
            prop_assert_eq!(out, serde_json::to_string(&EpochSeconds::from_micros(us)).unwrap());
        }
    }

    #[test]
    fn hostile_strings_everywhere() {
        for s in HOSTILE {
            let mut md = crate::model::Metadata::default();
            md.entry_or_default(Cow::Borrowed(*s))
                .insert(Cow::Borrowed(*s), MetaValue::Str(Cow::Borrowed(*s)));
            let mut annotations = Annotations::default();
            annotations.insert(Cow::Borrowed(*s), AnnotationValue::Str(Cow::Borrowed(*s)));
            let e = Entity {
                kind: Some("subsegment"),
                name: Cow::Borrowed(*s),
                user: Some(Cow::Borrowed(*s)),
                namespace: Some(s),
                annotations,
                metadata: md,
                ..Default::default()
            };
            check(&e);
        }
    }

    #[test]
    fn every_single_byte_character() {
        for c in (0u32..0x800).filter_map(char::from_u32) {
            for s in [
                c.to_string(),
                format!("abcdefg{c}xyz"),
                format!("{c}{c}{c}{c}{c}{c}{c}{c}{c}"),
            ] {
                let mut out = String::new();
                string(&mut out, &s);
                assert_eq!(out, serde_json::to_string(&s).unwrap(), "{c:?}");
            }
        }
    }

    #[test]
    fn non_finite_floats_and_big_integers() {
        let mut md = crate::model::Metadata::default();
        let ns = md.entry_or_default(Cow::Borrowed("default"));
        for (i, v) in [
            MetaValue::F64(f64::NAN),
            MetaValue::F64(f64::INFINITY),
            MetaValue::F64(f64::NEG_INFINITY),
            MetaValue::F64(-0.0),
            MetaValue::F64(1e300),
            MetaValue::I128(i128::MIN),
            MetaValue::U128(u128::MAX),
            MetaValue::I64(i64::MIN),
            MetaValue::U64(u64::MAX),
            MetaValue::List(vec![MetaValue::F64(f64::NAN), MetaValue::List(vec![])]),
            MetaValue::Object(vec![(Cow::Borrowed("k"), MetaValue::Object(vec![]))]),
        ]
        .into_iter()
        .enumerate()
        {
            ns.insert(Cow::Owned(i.to_string()), v);
        }
        let mut annotations = Annotations::default();
        annotations.insert(Cow::Borrowed("nan"), AnnotationValue::F64(f64::NAN));
        annotations.insert(Cow::Borrowed("inf"), AnnotationValue::F64(f64::INFINITY));
        let e = Entity {
            annotations,
            metadata: md,
            ..Default::default()
        };
        check(&e);
        assert!(ours(&e).contains(r#""0":"NaN","1":"Infinity","2":"-Infinity""#));
    }

    #[test]
    fn deeply_nested_metadata() {
        let mut v = MetaValue::Bool(true);
        for i in 0..100_000 {
            v = if i % 2 == 0 {
                MetaValue::List(vec![v])
            } else {
                MetaValue::Object(vec![(Cow::Borrowed("k"), v)])
            };
        }
        let mut out = String::new();
        super::meta_value(&mut out, &v);
        // Torn down without recursion (before any assertion can unwind).
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                MetaValue::List(items) => stack.extend(items),
                MetaValue::Object(entries) => stack.extend(entries.into_iter().map(|(_, v)| v)),
                _ => {}
            }
        }
        // 50,000 lists `[…]` and 50,000 objects `{"k":…}` around `true`.
        assert_eq!(out.len(), 50_000 * 2 + 50_000 * 6 + 4);
        assert!(out.starts_with(r#"{"k":[{"k":["#), "{}", &out[..20]);
        assert!(out.contains(r#"{"k":[true]}"#) && out.ends_with("]}]}"));
    }

    #[test]
    fn eight_digits() {
        for n in (0..100_000_000u32)
            .step_by(997)
            .chain([0, 9, 10, 99, 100, 9_999, 10_000, 99_999_999])
        {
            assert_eq!(digits8(n), *format!("{n:08}").as_bytes(), "{n}");
        }
    }

    /// Many random instants in the range written without float formatting.
    #[test]
    fn epoch_seconds_sampled() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let check_one = |us: u64| {
            let mut out = String::new();
            epoch_seconds(&mut out, EpochSeconds::from_micros(us));
            assert_eq!(
                out,
                serde_json::to_string(&EpochSeconds::from_micros(us)).unwrap()
            );
        };
        for edge in [
            0,
            1,
            999_999,
            1_000_000,
            1_000_001,
            1_500_000,
            EXACT_MICROS_LIMIT - 1,
            EXACT_MICROS_LIMIT,
            u64::MAX,
        ] {
            check_one(edge);
        }
        for _ in 0..200_000 {
            // xorshift
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check_one(1_000_000 + x % (EXACT_MICROS_LIMIT - 1_000_000));
            check_one(1_700_000_000_000_000 + x % 1_000_000_000_000_000);
        }
    }
}
