//! A compact summary of an X-Ray segment or subsegment, read from its JSON document.
//!
//! The console keeps the raw document text (for the detail view, export and the raw JSON
//! panel) plus this summary (for the map, the trace list and the filters), so it never
//! holds a full `serde_json::Value` tree per document.

use serde_json::Value;

/// The health of one segment or subsegment, as the service map splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// No error, throttle or fault.
    Ok,
    /// A client error (4xx other than 429): `error: true`.
    Error,
    /// Throttled (429): `throttle: true`.
    Throttle,
    /// A server error (5xx): `fault: true`.
    Fault,
}

impl Health {
    /// The lower-case word used in pages, CSS classes and filter keywords.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Error => "error",
            Health::Throttle => "throttle",
            Health::Fault => "fault",
        }
    }
}

/// An annotation value: X-Ray allows only strings, numbers and booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnValue {
    /// A string value.
    Str(String),
    /// A number value.
    Num(f64),
    /// A boolean value.
    Bool(bool),
}

impl std::fmt::Display for AnnValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnValue::Str(s) => write!(f, "{s}"),
            AnnValue::Num(n) => write!(f, "{n}"),
            AnnValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The `http` block, reduced to what the list and filters show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpSummary {
    /// `http.request.method`.
    pub method: Option<String>,
    /// `http.request.url`.
    pub url: Option<String>,
    /// `http.response.status`.
    pub status: Option<u16>,
    /// `http.request.traced`: the downstream is instrumented.
    pub traced: bool,
}

/// The `aws` block of a subsegment, reduced to what names a downstream resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsSummary {
    /// `aws.operation`.
    pub operation: Option<String>,
    /// `aws.table_name` (DynamoDB).
    pub table_name: Option<String>,
    /// `aws.queue_url` (SQS).
    pub queue_url: Option<String>,
    /// `aws.bucket_name` (S3).
    pub bucket_name: Option<String>,
}

/// A segment or subsegment summary, with its embedded subsegments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entity {
    /// `id` (16 hex digits).
    pub id: String,
    /// `name`.
    pub name: String,
    /// `trace_id` (segments and independent subsegments; nested Python subsegments repeat it).
    pub trace_id: Option<String>,
    /// `start_time`, epoch seconds.
    pub start: f64,
    /// `end_time`, epoch seconds; `None` while in progress.
    pub end: Option<f64>,
    /// `in_progress: true`, or no `end_time`.
    pub in_progress: bool,
    /// `parent_id`.
    pub parent_id: Option<String>,
    /// `type: "subsegment"` at the top of a document.
    pub is_subsegment: bool,
    /// `namespace` (`aws`, `remote`, `local`).
    pub namespace: Option<String>,
    /// `origin` (`AWS::EC2::Instance` ...).
    pub origin: Option<String>,
    /// `error: true`.
    pub error: bool,
    /// `throttle: true`.
    pub throttle: bool,
    /// `fault: true`.
    pub fault: bool,
    /// The `http` block.
    pub http: Option<HttpSummary>,
    /// The `aws` block.
    pub aws: Option<AwsSummary>,
    /// Has an `sql` block.
    pub sql: bool,
    /// `annotations`, in document order.
    pub annotations: Vec<(String, AnnValue)>,
    /// `user`.
    pub user: Option<String>,
    /// Embedded (and, after assembly, grafted streamed) subsegments.
    pub children: Vec<Entity>,
}

/// Why a document could not be read as a segment or subsegment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// Not a JSON object.
    NotAnObject,
    /// A required field is missing or has the wrong type.
    Missing(&'static str),
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocError::NotAnObject => write!(f, "document is not a JSON object"),
            DocError::Missing(k) => write!(f, "missing or invalid `{k}`"),
        }
    }
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn as_time(v: Option<&Value>) -> Option<f64> {
    let t = v?.as_f64()?;
    t.is_finite().then_some(t)
}

impl Entity {
    /// Reads a top-level document (segment or independent subsegment).
    ///
    /// Requires `id`, `name`, `start_time` and `trace_id` (what the schema requires at top
    /// level); everything else is optional and tolerated in any shape.
    pub fn from_document(v: &Value) -> Result<Entity, DocError> {
        let e = Entity::from_value(v)?;
        // An empty trace id is none: no page could name the trace.
        if e.trace_id.as_deref().map_or(true, str::is_empty) {
            return Err(DocError::Missing("trace_id"));
        }
        Ok(e)
    }

    /// Reads a segment or subsegment object (top-level or embedded).
    pub fn from_value(v: &Value) -> Result<Entity, DocError> {
        if !v.is_object() {
            return Err(DocError::NotAnObject);
        }
        let id = opt_str(v, "id").ok_or(DocError::Missing("id"))?;
        let name = opt_str(v, "name").ok_or(DocError::Missing("name"))?;
        let start = as_time(v.get("start_time")).ok_or(DocError::Missing("start_time"))?;
        let end = as_time(v.get("end_time"));
        let http = v.get("http").filter(|h| h.is_object()).map(|h| {
            let req = h.get("request");
            let status = h
                .pointer("/response/status")
                .and_then(|s| {
                    s.as_u64()
                        .or_else(|| s.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|s| u16::try_from(s).ok());
            HttpSummary {
                method: req.and_then(|r| opt_str(r, "method")),
                url: req.and_then(|r| opt_str(r, "url")),
                status,
                traced: req.map(|r| flag(r, "traced")).unwrap_or(false),
            }
        });
        let aws = v.get("aws").filter(|a| a.is_object()).map(|a| AwsSummary {
            operation: opt_str(a, "operation"),
            table_name: opt_str(a, "table_name"),
            queue_url: opt_str(a, "queue_url"),
            bucket_name: opt_str(a, "bucket_name"),
        });
        let mut annotations = Vec::new();
        if let Some(map) = v.get("annotations").and_then(Value::as_object) {
            for (k, val) in map {
                let val = match val {
                    Value::String(s) => AnnValue::Str(s.clone()),
                    Value::Bool(b) => AnnValue::Bool(*b),
                    Value::Number(n) => match n.as_f64() {
                        Some(n) => AnnValue::Num(n),
                        None => continue,
                    },
                    _ => continue,
                };
                annotations.push((k.clone(), val));
            }
        }
        let mut children = Vec::new();
        if let Some(subs) = v.get("subsegments").and_then(Value::as_array) {
            for s in subs {
                // A broken embedded subsegment is skipped, not fatal for its segment.
                if let Ok(c) = Entity::from_value(s) {
                    children.push(c);
                }
            }
        }
        Ok(Entity {
            id,
            name,
            trace_id: opt_str(v, "trace_id"),
            start,
            end,
            in_progress: flag(v, "in_progress") || end.is_none(),
            parent_id: opt_str(v, "parent_id"),
            is_subsegment: v.get("type").and_then(Value::as_str) == Some("subsegment"),
            namespace: opt_str(v, "namespace"),
            origin: opt_str(v, "origin"),
            error: flag(v, "error"),
            throttle: flag(v, "throttle"),
            fault: flag(v, "fault"),
            http,
            aws,
            sql: v.get("sql").is_some_and(Value::is_object),
            annotations,
            user: opt_str(v, "user"),
            children,
        })
    }

    /// Duration in seconds (0 while in progress).
    pub fn duration(&self) -> f64 {
        self.end.map(|e| (e - self.start).max(0.0)).unwrap_or(0.0)
    }

    /// The health of this entity: the flags, or else the HTTP status.
    pub fn health(&self) -> Health {
        let status = self.http.as_ref().and_then(|h| h.status).unwrap_or(0);
        if self.fault || (500..600).contains(&status) {
            Health::Fault
        } else if self.throttle || status == 429 {
            Health::Throttle
        } else if self.error || (400..500).contains(&status) {
            Health::Error
        } else {
            Health::Ok
        }
    }

    /// Visits this entity and all its descendants, depth first.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Entity, usize)) {
        fn go<'a>(e: &'a Entity, depth: usize, f: &mut impl FnMut(&'a Entity, usize)) {
            f(e, depth);
            for c in &e.children {
                go(c, depth + 1, f);
            }
        }
        go(self, 0, f);
    }

    /// A rough count of the heap and inline bytes this summary holds (for the store's
    /// memory bound).
    pub fn approx_bytes(&self) -> usize {
        let s = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        let mut n = std::mem::size_of::<Entity>()
            + self.id.len()
            + self.name.len()
            + s(&self.trace_id)
            + s(&self.parent_id)
            + s(&self.namespace)
            + s(&self.origin)
            + s(&self.user);
        if let Some(h) = &self.http {
            n += std::mem::size_of::<HttpSummary>() + s(&h.method) + s(&h.url);
        }
        if let Some(a) = &self.aws {
            n += std::mem::size_of::<AwsSummary>()
                + s(&a.operation)
                + s(&a.table_name)
                + s(&a.queue_url)
                + s(&a.bucket_name);
        }
        for (k, v) in &self.annotations {
            n += std::mem::size_of::<(String, AnnValue)>() + k.len();
            if let AnnValue::Str(s) = v {
                n += s.len();
            }
        }
        n + self
            .children
            .iter()
            .map(Entity::approx_bytes)
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_segment_with_children() {
        let v = json!({"trace_id":"1-5f29ab21-d4ebf299219a65bd5c31d6da","id":"88ad1df59cd7a7be",
            "name":"svc","start_time":10.0,"end_time":10.5,"http":{"request":{"method":"GET"},
            "response":{"status":429}},"annotations":{"a":1,"b":"x","c":true,"bad":{"x":1}},
            "subsegments":[{"id":"1","name":"c","start_time":10.1,"end_time":10.2},{"bad":1}]});
        let e = Entity::from_document(&v).unwrap();
        assert_eq!(e.health(), Health::Throttle);
        assert_eq!(e.annotations.len(), 3);
        assert_eq!(e.children.len(), 1);
        assert!(!e.in_progress);
        assert!((e.duration() - 0.5).abs() < 1e-9);
        assert!(e.approx_bytes() > std::mem::size_of::<Entity>() * 2);
    }

    #[test]
    fn requires_top_level_fields() {
        assert_eq!(
            Entity::from_document(&json!({"id":"a","name":"n","start_time":1})),
            Err(DocError::Missing("trace_id"))
        );
        assert_eq!(
            Entity::from_document(&json!([1])),
            Err(DocError::NotAnObject)
        );
        assert_eq!(
            Entity::from_document(&json!({"id":"a","name":"n","trace_id":"t"})),
            Err(DocError::Missing("start_time"))
        );
    }

    #[test]
    fn in_progress_without_end() {
        let e = Entity::from_document(
            &json!({"id":"a","name":"n","trace_id":"t","start_time":1,"in_progress":true}),
        )
        .unwrap();
        assert!(e.in_progress);
        assert_eq!(e.duration(), 0.0);
    }
}
