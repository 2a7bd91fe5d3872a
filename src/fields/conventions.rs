//! The field names with an X-Ray meaning: OpenTelemetry semantic conventions
//! (old and new names), tower-http's default span, the AWS SDK for Rust's
//! operation spans, and a few `xray.*` names.
//!
//! | field | goes to |
//! |---|---|
//! | `http.request.method`, `http.method` (tower-http: `method`) | `http.request.method` |
//! | `url.full`, `http.url` | `http.request.url` |
//! | `url.path` + `url.query`, `http.target` (tower-http: `uri`) with `url.scheme`/`http.scheme`, `server.address`/`http.host`/`net.host.name`/`net.peer.name`, `server.port` | `http.request.url` (built) |
//! | `user_agent.original`, `http.user_agent` | `http.request.user_agent` |
//! | `xray.traced = true`, `http.request.traced = true` | `http.request.traced` (subsegments: the callee is instrumented) |
//! | `client.address`, `http.client_ip` (sets `x_forwarded_for`), `net.peer.ip` | `http.request.client_ip` |
//! | `http.response.status_code`, `http.status_code` (tower-http: `status`) | `http.response.status`; 4xx → `error`, 429 → `throttle` + `error`, 5xx → `fault` |
//! | `http.response.content_length`, `http.response_content_length`, `http.response.body.size` | `http.response.content_length` |
//! | `otel.kind = "client"`/`"producer"`, `xray.namespace = "remote"` | `namespace: remote` |
//! | `peer.service` | a remote subsegment's name |
//! | `db.system`/`db.system.name` | `sql.database_type`, `namespace: remote`, name `db@host` |
//! | `db.name`/`db.namespace`, `server.address`, `server.port`, `db.connection_string` | `sql.url` / `sql.connection_string` |
//! | `db.user` | `sql.user` |
//! | `db.query.text`/`db.statement` | `sql.sanitized_query` (opt-in) |
//! | `rpc.system = "aws-api"` + `rpc.service` + `rpc.method` (older SDKs: span `invoke` with `service`, `operation`) | `namespace: aws`, name = the service, `aws.operation` |
//! | `aws.request_id`, `aws.region`/`cloud.region`, `aws.account_id`/`cloud.account.id` | `aws.request_id`, `aws.region`, `aws.account_id` |
//! | `aws.dynamodb.table_names`, `aws.table_name` | `aws.table_name` (`aws.table_names` for several) |
//! | `messaging.destination.name`, `aws.sqs.queue_url`, `messaging.url` | `aws.queue_url` |
//! | `aws.s3.bucket` | `aws.bucket_name` |
//! | `aws.retries` | `aws.retries` |
//! | `xray.throttle = true` | `throttle` + `error` |
//! | `error.type`, `otel.status_message` | an exception's type and message |
//!
//! A field that turns out to be unusable (a method that is a number, a host
//! on a span with no HTTP or SQL meaning) is kept as metadata like any other.

use std::borrow::Cow;
use std::cell::OnceCell;

use super::{as_str, meta_value, put_metadata, FieldOptions, TRACING_NAMESPACE};
use crate::limits::{truncate_chars, MAX_STRING_CHARS};
use crate::model::Entity;
use crate::span_data::{FieldValue, SpanData};

/// Longest query text kept in `sql.sanitized_query`, in characters.
const MAX_QUERY_CHARS: usize = 10_000;

type Slot<'a> = Option<(&'static str, &'a FieldValue)>;

/// What a span is, as far as the field names depend on it: worked out
/// only when a name that depends on it turns up (most spans have none).
pub(crate) struct SpanContext<'s> {
    span: &'s SpanData,
    tower: OnceCell<bool>,
    invoke: OnceCell<bool>,
}

impl<'s> SpanContext<'s> {
    pub(crate) fn of(span: &'s SpanData) -> Self {
        SpanContext {
            span,
            tower: OnceCell::new(),
            invoke: OnceCell::new(),
        }
    }

    /// tower-http's `TraceLayer` span (or one shaped like it: `method` and
    /// `uri` fields): the short names `method`, `uri`, `status` count.
    fn tower(&self) -> bool {
        *self.tower.get_or_init(|| {
            let has = |name: &str| self.span.fields.iter().any(|(k, _)| *k == name);
            self.span.meta.target().starts_with("tower_http") || (has("uri") && has("method"))
        })
    }

    /// The older AWS SDK operation span (`invoke`, fields `service`,
    /// `operation`) or smithy's `Operation::invoke` span.
    fn invoke(&self) -> bool {
        *self.invoke.get_or_init(|| {
            self.span.meta.name() == "invoke"
                && self.span.meta.target().starts_with("aws_smithy_runtime")
        })
    }
}

/// The flags an HTTP status sets: 429 is a throttle (and an error), other
/// 4xx an error (the caller's), 5xx a fault (the service's).
fn status_flags(entity: &mut Entity<'_>) {
    match entity.http.response.status {
        Some(429) => {
            entity.throttle = true;
            entity.error = true;
        }
        Some(400..=499) => entity.error = true,
        Some(500..=599) => entity.fault = true,
        _ => {}
    }
}

/// Whether `key` may mean something to [`super::route`]: a name with a
/// convention (on some span), or the `annotation.` / `metadata.` prefix.
/// `false` is certain and cheap (the first byte, one or two prefixes), so
/// that the common field without a meaning skips every name comparison.
pub(crate) fn may_have_meaning(key: &str) -> bool {
    let b = key.as_bytes();
    match b.first() {
        Some(b'a') => b.starts_with(b"annotation.") || b.starts_with(b"aws."),
        Some(b'c') => b.starts_with(b"client.") || b.starts_with(b"cloud."),
        Some(b'd') => b.starts_with(b"db."),
        Some(b'e') => b.starts_with(b"enduser.") || b.starts_with(b"error"),
        Some(b'h') => b.starts_with(b"http."),
        Some(b'm') => b.starts_with(b"metadata.") || b.starts_with(b"messaging.") || b == b"method",
        Some(b'n') => b.starts_with(b"net."),
        Some(b'o') => b.starts_with(b"otel.") || b == b"operation",
        Some(b'p') => b.starts_with(b"peer."),
        Some(b'r') => b.starts_with(b"rpc."),
        Some(b's') => {
            b.starts_with(b"server.")
                || b.starts_with(b"span.")
                || b == b"status"
                || b == b"service"
        }
        Some(b'u') => b.starts_with(b"url.") || b.starts_with(b"user_agent.") || b == b"uri",
        Some(b'x') => b.starts_with(b"xray."),
        _ => false,
    }
}

/// Whether `key` has a convention on a span like `ctx`.
pub(crate) fn is_convention(key: &'static str, ctx: &SpanContext<'_>) -> bool {
    static DUMMY: FieldValue = FieldValue::Bool(false);
    Conventions::default().take(key, &DUMMY, ctx)
}

/// The fields of one (sub)segment that have an X-Ray meaning, collected
/// from its span (and the spans folded into it) before they are applied.
#[derive(Default, Debug)]
pub(crate) struct Conventions<'a> {
    /// `otel.name` (ranks below `xray.name` and derived names).
    pub(crate) name: Option<&'a str>,
    xray_name: Slot<'a>,
    pub(crate) error: bool,
    namespace: Slot<'a>,
    kind: Slot<'a>,
    peer_service: Slot<'a>,
    throttle: Slot<'a>,
    error_type: Slot<'a>,
    error_message: Slot<'a>,
    // HTTP
    method: Slot<'a>,
    url_full: Slot<'a>,
    path: Slot<'a>,
    query: Slot<'a>,
    scheme: Slot<'a>,
    host: Slot<'a>,
    port: Slot<'a>,
    status: Slot<'a>,
    content_length: Slot<'a>,
    user_agent: Slot<'a>,
    client_ip: Slot<'a>,
    traced: Slot<'a>,
    // SQL
    db_system: Slot<'a>,
    db_name: Slot<'a>,
    db_user: Slot<'a>,
    db_statement: Slot<'a>,
    db_connection: Slot<'a>,
    // AWS
    rpc_system: Slot<'a>,
    rpc_service: Slot<'a>,
    rpc_method: Slot<'a>,
    legacy_service: Slot<'a>,
    legacy_operation: Slot<'a>,
    invoke: bool,
    aws_operation: Slot<'a>,
    request_id: Slot<'a>,
    region: Slot<'a>,
    account_id: Slot<'a>,
    queue_url: Slot<'a>,
    table_name: Slot<'a>,
    table_names: Slot<'a>,
    bucket: Slot<'a>,
    retries: Slot<'a>,
    /// Some slot was filled: without one, [`Conventions::apply`] has almost
    /// nothing to do.
    any: bool,
}

/// What [`Conventions::apply`] decided beyond the entity itself.
#[derive(Debug, Default)]
pub(crate) struct Applied<'a> {
    /// The (sub)segment's name, if a convention gives one.
    pub(crate) name: Option<Cow<'a, str>>,
    /// Errors were caused by a downstream service (a client call that got
    /// a response): exceptions are marked `remote`.
    pub(crate) remote: bool,
    /// `error.type` / `otel.status_message`, for an exception when the span
    /// recorded no error value.
    pub(crate) error_type: Option<&'a str>,
    pub(crate) error_message: Option<&'a str>,
}

fn text<'a>(slot: &mut Slot<'a>) -> Option<&'a str> {
    let s = as_str(slot.as_ref()?.1)?;
    *slot = None;
    Some(s)
}

fn int(slot: &mut Slot<'_>) -> Option<i64> {
    let v = match slot.as_ref()?.1 {
        FieldValue::I64(v) => Some(*v),
        FieldValue::U64(v) => i64::try_from(*v).ok(),
        FieldValue::I128(v) => i64::try_from(**v).ok(),
        FieldValue::U128(v) => i64::try_from(**v).ok(),
        FieldValue::F64(v) if v.fract() == 0.0 && v.abs() < 9e15 => Some(*v as i64),
        FieldValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    *slot = None;
    Some(v)
}

fn flag(slot: &mut Slot<'_>) -> bool {
    let v = match slot.as_ref().map(|s| s.1) {
        Some(FieldValue::Bool(b)) => *b,
        Some(FieldValue::Str(s)) => s.eq_ignore_ascii_case("true"),
        _ => return false,
    };
    *slot = None;
    v
}

fn cut(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(truncate_chars(s, MAX_STRING_CHARS))
}

/// The X-Ray service name of an AWS SDK service id: the Rust SDK already
/// uses the official names (`DynamoDB`, `S3`, `SQS`, ...); hand-written
/// spans in other spellings are brought to them.
fn aws_service_name(s: &str) -> &str {
    let s = s.trim();
    let s = s
        .strip_prefix("Amazon")
        .or_else(|| s.strip_prefix("AWS"))
        .filter(|r| !r.is_empty())
        .unwrap_or(s);
    const KNOWN: &[&str] = &[
        "DynamoDB",
        "S3",
        "SQS",
        "SNS",
        "Lambda",
        "Kinesis",
        "STS",
        "EventBridge",
        "SecretsManager",
        "SSM",
        "KMS",
        "SES",
        "SFN",
        "Firehose",
        "CloudWatch",
        "Bedrock",
    ];
    if s.eq_ignore_ascii_case("DynamoDBv2") {
        return "DynamoDB";
    }
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(s))
        .copied()
        .unwrap_or(s)
}

/// `["a", "b"]`, `[a, b]` or `a` → the names.
fn name_list(s: &str) -> Vec<&str> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.split(',')
        .map(|p| p.trim().trim_matches('"').trim())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `scheme://user:password@host/...` → without the password.
fn without_password(url: &str) -> Cow<'_, str> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some((user, _)) = userinfo.split_once(':') {
                return Cow::Owned(format!("{scheme}://{user}@{}", &rest[at + 1..]));
            }
        }
    }
    Cow::Borrowed(url)
}

impl<'a> Conventions<'a> {
    /// Keeps `value` if `key` has a convention; `false` otherwise.
    pub(crate) fn take(
        &mut self,
        key: &'static str,
        value: &'a FieldValue,
        ctx: &SpanContext<'_>,
    ) -> bool {
        match self.slot(key, ctx) {
            Some(slot) => {
                *slot = Some((key, value));
                self.any = true;
                true
            }
            None => false,
        }
    }

    /// The slot of `key`, if it has a convention on a span like `ctx`.
    fn slot(&mut self, key: &'static str, ctx: &SpanContext<'_>) -> Option<&mut Slot<'a>> {
        // Every name below starts with one of these bytes: most fields
        // without a convention are told apart by it alone.
        if !matches!(
            key.as_bytes().first(),
            Some(b'a' | b'c' | b'd' | b'e' | b'h' | b'm' | b'n' | b'o' | b'p' | b'r')
                | Some(b's' | b'u' | b'x')
        ) {
            return None;
        }
        let slot = match key {
            "xray.name" => &mut self.xray_name,
            "xray.namespace" => &mut self.namespace,
            "otel.kind" | "span.kind" => &mut self.kind,
            "peer.service" => &mut self.peer_service,
            "xray.throttle" => &mut self.throttle,
            "error.type" => &mut self.error_type,
            "otel.status_message" | "otel.status_description" => &mut self.error_message,
            "http.request.method" | "http.method" => &mut self.method,
            "url.full" | "http.url" => &mut self.url_full,
            "url.path" | "http.target" => &mut self.path,
            "url.query" => &mut self.query,
            "url.scheme" | "http.scheme" => &mut self.scheme,
            "server.address" | "http.host" | "net.host.name" | "net.peer.name" => &mut self.host,
            "server.port" | "net.host.port" | "net.peer.port" => &mut self.port,
            "http.response.status_code" | "http.status_code" => &mut self.status,
            "http.response.content_length"
            | "http.response_content_length"
            | "http.response.body.size" => &mut self.content_length,
            "user_agent.original" | "http.user_agent" => &mut self.user_agent,
            "client.address" | "http.client_ip" | "net.peer.ip" => &mut self.client_ip,
            "xray.traced" | "http.request.traced" => &mut self.traced,
            "method" if ctx.tower() => &mut self.method,
            "uri" if ctx.tower() => &mut self.path,
            "status" if ctx.tower() => &mut self.status,
            "db.system" | "db.system.name" => &mut self.db_system,
            "db.name" | "db.namespace" => &mut self.db_name,
            "db.user" => &mut self.db_user,
            "db.statement" | "db.query.text" => &mut self.db_statement,
            "db.connection_string" => &mut self.db_connection,
            "rpc.system" => &mut self.rpc_system,
            "rpc.service" => {
                self.invoke |= ctx.invoke();
                &mut self.rpc_service
            }
            "rpc.method" => &mut self.rpc_method,
            "service" if ctx.invoke() => {
                self.invoke = true;
                &mut self.legacy_service
            }
            "operation" if ctx.invoke() => &mut self.legacy_operation,
            "aws.operation" => &mut self.aws_operation,
            "aws.request_id" | "aws.requestId" | "aws.request.id" => &mut self.request_id,
            "aws.region" | "cloud.region" => &mut self.region,
            "aws.account_id" | "cloud.account.id" => &mut self.account_id,
            "aws.sqs.queue_url" | "messaging.url" | "messaging.destination.name" => {
                &mut self.queue_url
            }
            "aws.table_name" | "aws.dynamodb.table_name" => &mut self.table_name,
            "aws.dynamodb.table_names" => &mut self.table_names,
            "aws.s3.bucket" => &mut self.bucket,
            "aws.retries" => &mut self.retries,
            _ => return None,
        };
        debug_assert!(
            may_have_meaning(key),
            "{key} is missing from may_have_meaning"
        );
        Some(slot)
    }

    fn is_aws(&self) -> bool {
        let rpc_aws = self
            .rpc_system
            .and_then(|(_, v)| as_str(v))
            .is_some_and(|s| s.eq_ignore_ascii_case("aws-api"));
        let explicit = self
            .namespace
            .and_then(|(_, v)| as_str(v))
            .is_some_and(|s| s == "aws");
        rpc_aws
            || explicit
            || (self.invoke && (self.rpc_service.is_some() || self.legacy_service.is_some()))
    }

    /// Fills the `http`, `sql` and `aws` blocks, the namespace and the
    /// flags; keeps what went unused as metadata.
    pub(crate) fn apply(
        &mut self,
        entity: &mut Entity<'a>,
        is_segment: bool,
        options: &FieldOptions,
        errored: bool,
    ) -> Applied<'a> {
        if !self.any {
            return self.apply_plain(entity, is_segment, errored);
        }
        let mut applied = Applied::default();
        let is_aws = self.is_aws();
        let kind = text(&mut self.kind).map(str::to_ascii_lowercase);
        let explicit_ns = match self.namespace.and_then(|(_, v)| as_str(v)) {
            Some(ns @ ("aws" | "remote")) => {
                self.namespace = None;
                Some(ns)
            }
            Some("local") => {
                self.namespace = None;
                None
            }
            _ => None,
        };
        let is_db = self.db_system.is_some();
        let is_remote = explicit_ns == Some("remote")
            || matches!(kind.as_deref(), Some("client" | "producer"))
            || is_db;

        // AWS: the service becomes the name, so the map has one node per service.
        let mut aws_service = None;
        if is_aws {
            self.rpc_system = None;
            aws_service = text(&mut self.rpc_service).or_else(|| text(&mut self.legacy_service));
            let op = text(&mut self.aws_operation)
                .or_else(|| text(&mut self.rpc_method))
                .or_else(|| text(&mut self.legacy_operation));
            entity.aws.operation = op.map(Cow::Borrowed);
        } else if let Some(op) = text(&mut self.aws_operation) {
            entity.aws.operation = Some(Cow::Borrowed(op));
        }
        if let Some(v) = text(&mut self.request_id) {
            entity.aws.request_id = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.region) {
            entity.aws.region = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.account_id) {
            entity.aws.account_id = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.queue_url) {
            entity.aws.queue_url = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.bucket) {
            entity.aws.bucket_name = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.table_name) {
            entity.aws.table_name = Some(Cow::Borrowed(v));
        }
        if let Some(v) = text(&mut self.table_names) {
            let names = name_list(v);
            match names.as_slice() {
                [] => {}
                [one] => entity.aws.table_name = Some(Cow::Borrowed(one)),
                many => entity.aws.table_names = many.iter().map(|n| Cow::Borrowed(*n)).collect(),
            }
        }
        if let Some(n) = int(&mut self.retries) {
            entity.aws.retries = u64::try_from(n).ok();
        }

        // SQL.
        let mut db_label = None;
        if is_db {
            let system = text(&mut self.db_system);
            entity.sql.database_type = system.map(Cow::Borrowed);
            entity.sql.user = text(&mut self.db_user).map(cut);
            let db_name = text(&mut self.db_name);
            let host = self.host.and_then(|(_, v)| as_str(v));
            if let Some(conn) = text(&mut self.db_connection) {
                if conn.contains("://") {
                    entity.sql.url = Some(without_password(conn));
                } else {
                    entity.sql.connection_string = Some(Cow::Borrowed(conn));
                }
            } else if let Some(host) = host {
                self.host = None;
                let mut url = host.to_owned();
                if let Some(port) = int(&mut self.port) {
                    url.push_str(&format!(":{port}"));
                }
                if let Some(db) = db_name {
                    url.push('/');
                    url.push_str(db);
                }
                entity.sql.url = Some(Cow::Owned(url));
            } else if let Some(db) = db_name {
                entity.sql.url = Some(Cow::Borrowed(db));
            }
            if options.collect_sql_queries() {
                if let Some(q) = text(&mut self.db_statement) {
                    entity.sql.sanitized_query =
                        Some(Cow::Borrowed(truncate_chars(q, MAX_QUERY_CHARS)));
                }
            } else {
                // Opted out: the text is dropped, not kept as metadata.
                self.db_statement = None;
            }
            db_label = match (db_name, host) {
                (Some(db), Some(h)) => Some(Cow::Owned(format!("{db}@{h}"))),
                (Some(db), None) => Some(Cow::Borrowed(db)),
                (None, Some(h)) => Some(Cow::Borrowed(h)),
                (None, None) => system.map(Cow::Borrowed),
            };
        } else if !options.collect_sql_queries() {
            self.db_statement = None;
        }

        // HTTP.
        let is_http = self.method.is_some()
            || self.url_full.is_some()
            || self.path.is_some()
            || self.status.is_some()
            || self.content_length.is_some()
            || self.user_agent.is_some()
            || self.client_ip.is_some();
        let mut host_label = None;
        if is_http {
            let req = &mut entity.http.request;
            req.method = text(&mut self.method).map(cut);
            req.user_agent = text(&mut self.user_agent).map(cut);
            // A downstream call to an instrumented service (subsegments only).
            if !is_segment && matches!(self.traced, Some((_, FieldValue::Bool(true)))) {
                req.traced = Some(true);
                self.traced = None;
            }
            let ip_key = self.client_ip.map(|(k, _)| k);
            if let Some(ip) = text(&mut self.client_ip) {
                req.client_ip = Some(cut(ip));
                if is_segment && ip_key == Some("http.client_ip") {
                    req.x_forwarded_for = Some(true);
                }
            }
            let host = self.host.and_then(|(_, v)| as_str(v));
            let url = if let Some(full) = text(&mut self.url_full) {
                Some(Cow::Borrowed(full))
            } else if let Some(path) = self.path.and_then(|(_, v)| as_str(v)) {
                self.path = None;
                let query = text(&mut self.query);
                if path.starts_with("http://") || path.starts_with("https://") {
                    Some(Cow::Borrowed(path))
                } else {
                    let mut url = String::new();
                    if let Some(h) = host {
                        self.build_origin(&mut url, h);
                    }
                    url.push_str(path);
                    if let Some(q) = query.filter(|q| !q.is_empty()) {
                        url.push('?');
                        url.push_str(q.trim_start_matches('?'));
                    }
                    Some(Cow::Owned(url))
                }
            } else if let Some(h) = host {
                let mut url = String::new();
                self.build_origin(&mut url, h);
                url.push('/');
                Some(Cow::Owned(url))
            } else {
                None
            };
            if let Some(url) = &url {
                host_label = match (host, url) {
                    (Some(h), _) => Some(Cow::Borrowed(h)),
                    (None, Cow::Borrowed(u)) => url_host(u).map(Cow::Borrowed),
                    (None, Cow::Owned(u)) => url_host(u).map(|h| Cow::Owned(h.to_owned())),
                };
            }
            if host.is_some() {
                self.host = None;
            }
            req.url = url.map(|u| match u {
                Cow::Borrowed(s) => Cow::Borrowed(truncate_chars(s, MAX_STRING_CHARS)),
                Cow::Owned(s) => Cow::Owned(truncate_chars(&s, MAX_STRING_CHARS).to_owned()),
            });
            if let Some(status) = int(&mut self.status) {
                entity.http.response.status = u16::try_from(status)
                    .ok()
                    .filter(|s| (100..=999).contains(s));
            }
            entity.http.response.content_length = int(&mut self.content_length);
        }

        // Namespace and name.
        if !is_segment {
            entity.namespace = if let Some(ns) = explicit_ns {
                Some(ns)
            } else if is_aws {
                Some("aws")
            } else if is_remote {
                Some("remote")
            } else {
                None
            };
        }
        let peer = if is_remote || is_aws {
            text(&mut self.peer_service)
        } else {
            None
        };
        applied.name = text(&mut self.xray_name)
            .map(Cow::Borrowed)
            .or_else(|| aws_service.map(|s| Cow::Borrowed(aws_service_name(s))))
            .or_else(|| peer.map(Cow::Borrowed))
            .or(if is_remote {
                db_label.or(host_label)
            } else {
                None
            })
            .or_else(|| self.name.map(Cow::Borrowed));

        // Flags: the status says who failed; an error without one is a fault.
        status_flags(entity);
        if flag(&mut self.throttle) {
            entity.throttle = true;
            entity.error = true;
        }
        applied.error_type = text(&mut self.error_type);
        applied.error_message = text(&mut self.error_message);
        let failed = errored || self.error || applied.error_type.is_some();
        if failed && !entity.error && !entity.fault {
            entity.fault = true;
        }
        if !failed {
            applied.error_message = None;
        }
        applied.remote = (is_remote || is_aws) && entity.http.response.status.is_some();

        // Whatever was not used stays visible as metadata.
        if options.other_fields_as_metadata {
            self.leftovers(|key, value| {
                put_metadata(
                    entity,
                    Cow::Borrowed(TRACING_NAMESPACE),
                    Cow::Borrowed(key),
                    meta_value(value),
                );
            });
        }
        applied
    }

    /// [`Conventions::apply`] for a span none of whose fields has a
    /// convention (no slot filled): only `otel.name`, the error flag and
    /// the namespace (none) remain, with the same outcome as the full pass.
    fn apply_plain(&self, entity: &mut Entity<'a>, is_segment: bool, errored: bool) -> Applied<'a> {
        if !is_segment {
            entity.namespace = None;
        }
        status_flags(entity);
        let failed = errored || self.error;
        if failed && !entity.error && !entity.fault {
            entity.fault = true;
        }
        Applied {
            name: self.name.map(Cow::Borrowed),
            remote: false,
            error_type: None,
            error_message: None,
        }
    }

    fn build_origin(&mut self, url: &mut String, host: &str) {
        let port = int(&mut self.port);
        let scheme =
            text(&mut self.scheme).unwrap_or(if port == Some(443) { "https" } else { "http" });
        url.push_str(scheme);
        url.push_str("://");
        url.push_str(host);
        match (scheme, port) {
            (_, None) | ("http", Some(80)) | ("https", Some(443)) => {}
            (_, Some(p)) => url.push_str(&format!(":{p}")),
        }
    }

    /// Calls `f` with each field kept but not used, in slot order.
    fn leftovers(&self, mut f: impl FnMut(&'static str, &'a FieldValue)) {
        let slots = [
            &self.xray_name,
            &self.namespace,
            &self.kind,
            &self.peer_service,
            &self.throttle,
            &self.error_type,
            &self.error_message,
            &self.method,
            &self.url_full,
            &self.path,
            &self.query,
            &self.scheme,
            &self.host,
            &self.port,
            &self.status,
            &self.content_length,
            &self.user_agent,
            &self.client_ip,
            &self.traced,
            &self.db_system,
            &self.db_name,
            &self.db_user,
            &self.db_statement,
            &self.db_connection,
            &self.rpc_system,
            &self.rpc_service,
            &self.rpc_method,
            &self.legacy_service,
            &self.legacy_operation,
            &self.aws_operation,
            &self.request_id,
            &self.region,
            &self.account_id,
            &self.queue_url,
            &self.table_name,
            &self.table_names,
            &self.bucket,
            &self.retries,
        ];
        for &(key, value) in slots.into_iter().flatten() {
            f(key, value);
        }
    }
}

/// The host of `scheme://host[:port]/...`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rfind(':') {
        Some(i) if !host.ends_with(']') => &host[..i],
        _ => host,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a filled slot, the short path of `apply` decides exactly what
    /// the full pass decides.
    #[test]
    fn plain_spans_take_the_short_path_to_the_same_result() {
        for (is_segment, errored, error, name, as_metadata) in (0..32).map(|bits: u8| {
            (
                bits & 1 != 0,
                bits & 2 != 0,
                bits & 4 != 0,
                (bits & 8 != 0).then_some("named"),
                bits & 16 != 0,
            )
        }) {
            let options = FieldOptions {
                other_fields_as_metadata: as_metadata,
                ..Default::default()
            };
            let run = |any: bool| {
                let mut conv = Conventions {
                    name,
                    error,
                    any,
                    ..Default::default()
                };
                let mut entity = Entity {
                    name: "x".into(),
                    namespace: Some("stale"),
                    ..Default::default()
                };
                let applied = conv.apply(&mut entity, is_segment, &options, errored);
                (
                    serde_json::to_string(&entity).unwrap(),
                    format!("{applied:?}"),
                )
            };
            assert_eq!(
                run(false),
                run(true),
                "{is_segment} {errored} {error} {name:?}"
            );
        }
    }

    /// Every name with a meaning passes the quick filter of `route`.
    #[test]
    fn quick_filter_keeps_every_name() {
        let names = [
            "aws.account_id",
            "aws.dynamodb.table_name",
            "aws.dynamodb.table_names",
            "aws.operation",
            "aws.region",
            "aws.request.id",
            "aws.requestId",
            "aws.request_id",
            "aws.retries",
            "aws.s3.bucket",
            "aws.sqs.queue_url",
            "aws.table_name",
            "client.address",
            "cloud.account.id",
            "cloud.region",
            "db.connection_string",
            "db.name",
            "db.namespace",
            "db.query.text",
            "db.statement",
            "db.system",
            "db.system.name",
            "db.user",
            "error.type",
            "http.client_ip",
            "http.host",
            "http.method",
            "http.request.method",
            "http.request.traced",
            "http.response.body.size",
            "http.response.content_length",
            "http.response.status_code",
            "http.response_content_length",
            "http.scheme",
            "http.status_code",
            "http.target",
            "http.url",
            "http.user_agent",
            "messaging.destination.name",
            "messaging.url",
            "method",
            "net.host.name",
            "net.host.port",
            "net.peer.ip",
            "net.peer.name",
            "net.peer.port",
            "operation",
            "otel.kind",
            "otel.status_description",
            "otel.status_message",
            "peer.service",
            "rpc.method",
            "rpc.service",
            "rpc.system",
            "server.address",
            "server.port",
            "service",
            "span.kind",
            "status",
            "uri",
            "url.full",
            "url.path",
            "url.query",
            "url.scheme",
            "user_agent.original",
            "xray.name",
            "xray.namespace",
            "xray.throttle",
            "xray.traced",
            // `route`'s own names and prefixes.
            "otel.name",
            "enduser.id",
            "xray.user",
            "error",
            "otel.status_code",
            "annotation.x",
            "metadata.x",
            "metadata.ns.x",
        ];
        for name in names {
            assert!(may_have_meaning(name), "{name}");
        }
        for name in ["i", "table", "path", "attempt", "ratio", "", "x", "errand"] {
            assert!(!may_have_meaning(name), "{name}");
        }
    }

    #[test]
    fn aws_service_names() {
        assert_eq!(aws_service_name("DynamoDB"), "DynamoDB");
        assert_eq!(aws_service_name("AmazonDynamoDBv2"), "DynamoDB");
        assert_eq!(aws_service_name("dynamodb"), "DynamoDB");
        assert_eq!(aws_service_name("AmazonEventBridge"), "EventBridge");
        assert_eq!(aws_service_name("s3"), "S3");
        assert_eq!(aws_service_name("Glacier"), "Glacier");
        assert_eq!(aws_service_name("Amazon"), "Amazon");
    }

    #[test]
    fn lists_and_urls() {
        assert_eq!(name_list(r#"["a", "b"]"#), ["a", "b"]);
        assert_eq!(name_list("[orders]"), ["orders"]);
        assert_eq!(name_list("orders"), ["orders"]);
        assert!(name_list("[]").is_empty());
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/orders"),
            "postgres://app@db:5432/orders"
        );
        assert_eq!(
            without_password("postgres://db/orders"),
            "postgres://db/orders"
        );
        assert_eq!(
            url_host("https://api.example.com:8443/x"),
            Some("api.example.com")
        );
        assert_eq!(url_host("http://u:p@h/x"), Some("h"));
        assert_eq!(url_host("/just/a/path"), None);
    }
}
