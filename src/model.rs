//! The X-Ray segment document, as serde types (SPEC §1).
//!
//! These types are built by the worker from finished spans and serialized
//! once; empty optional fields are omitted, as every official SDK does.
//! Embedded subsegments are not part of [`Entity`]: the worker serializes
//! children first (it needs their sizes to split oversize traces) and splices
//! them into the parent's JSON text.

use std::borrow::Cow;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use smallvec::SmallVec;

use crate::id::{SegmentId, TraceId};

fn is_false(b: &bool) -> bool {
    !*b
}

fn no_text(text: &Option<Cow<'_, str>>) -> bool {
    text.as_deref().is_none_or(str::is_empty)
}

/// A segment, or a subsegment (embedded or independent).
#[derive(Serialize, Debug, Default)]
pub(crate) struct Entity<'a> {
    /// `"subsegment"` for independent subsegments, absent otherwise.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) name: Cow<'a, str>,
    pub(crate) id: Option<SegmentId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trace_id: Option<TraceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent_id: Option<SegmentId>,
    pub(crate) start_time: EpochSeconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) end_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) in_progress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<&'a Service>,
    #[serde(skip_serializing_if = "Block::is_empty")]
    pub(crate) http: Block<Http<'a>>,
    #[serde(skip_serializing_if = "Block::is_empty")]
    pub(crate) aws: Block<Aws<'a>>,
    #[serde(skip_serializing_if = "Block::is_empty")]
    pub(crate) sql: Block<Sql<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) error: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) throttle: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) fault: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<Cause<'a>>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub(crate) annotations: Annotations<'a>,
    #[serde(skip_serializing_if = "SmallMap::is_empty")]
    pub(crate) metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) precursor_ids: Vec<SegmentId>,
}

/// One of the `http`, `aws` and `sql` blocks, which most entities leave
/// empty: boxed on the first write through it, so that an entity without
/// them stays small (cheap to build, move and drop). Reads of an unwritten
/// block see an empty one.
pub(crate) struct Block<T>(Option<Box<T>>);

/// A block type that [`Block`] can hold.
pub(crate) trait BlockContent: Default {
    /// An empty block, to read through when none was written.
    fn empty<'r>() -> &'r Self
    where
        Self: 'r;

    /// Whether the block has nothing to serialize.
    fn is_empty(&self) -> bool;
}

impl<T> Block<T> {
    /// The block, if it was ever written.
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }
}

impl<T: BlockContent> Block<T> {
    /// Whether the block has nothing to serialize (never written, or empty).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(T::is_empty)
    }
}

impl<T> Default for Block<T> {
    fn default() -> Self {
        Block(None)
    }
}

impl<T> From<T> for Block<T> {
    fn from(value: T) -> Self {
        Block(Some(Box::new(value)))
    }
}

impl<T: BlockContent> std::ops::Deref for Block<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.0 {
            Some(b) => b,
            None => T::empty(),
        }
    }
}

impl<T: BlockContent> std::ops::DerefMut for Block<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: std::fmt::Debug + BlockContent> std::fmt::Debug for Block<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Serialize + BlockContent> Serialize for Block<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// Seconds since the Unix epoch, kept as whole microseconds so that the JSON
/// shows exactly six decimals at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EpochSeconds(pub(crate) u64);

impl EpochSeconds {
    pub(crate) fn from_micros(us: u64) -> Self {
        EpochSeconds(us)
    }
}

impl Serialize for EpochSeconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // 1e6 is exact and the quotient is correctly rounded, so ryu prints
        // the shortest decimal that reads back as the same microsecond.
        s.serialize_f64(self.0 as f64 / 1e6)
    }
}

/// The `service` block.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub(crate) struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    pub(crate) runtime: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runtime_version: Option<&'static str>,
}

/// The `http` block (SPEC §1.4).
#[derive(Serialize, Debug, Default)]
pub(crate) struct Http<'a> {
    #[serde(skip_serializing_if = "HttpRequest::is_empty")]
    pub(crate) request: HttpRequest<'a>,
    #[serde(skip_serializing_if = "HttpResponse::is_empty")]
    pub(crate) response: HttpResponse,
}

static EMPTY_HTTP: Http<'static> = Http {
    request: HttpRequest {
        method: None,
        url: None,
        user_agent: None,
        client_ip: None,
        x_forwarded_for: None,
        traced: None,
    },
    response: HttpResponse {
        status: None,
        content_length: None,
    },
};

impl BlockContent for Http<'_> {
    fn empty<'r>() -> &'r Self
    where
        Self: 'r,
    {
        &EMPTY_HTTP
    }

    fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct HttpRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) x_forwarded_for: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traced: Option<bool>,
}

impl HttpRequest<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.url.is_none()
            && self.user_agent.is_none()
            && self.client_ip.is_none()
            && self.x_forwarded_for.is_none()
            && self.traced.is_none()
    }
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct HttpResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_length: Option<i64>,
}

impl HttpResponse {
    pub(crate) fn is_empty(&self) -> bool {
        self.status.is_none() && self.content_length.is_none()
    }
}

/// The `aws` block (SPEC §1.5): the resource blocks of a segment, the call
/// details of an AWS SDK subsegment, and the SDK identification.
#[derive(Serialize, Debug, Default)]
pub(crate) struct Aws<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) operation: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queue_url: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) table_name: Option<Cow<'a, str>>,
    /// Several tables (batch operations), as the official SDKs write them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) table_names: Vec<Cow<'a, str>>,
    /// An S3 bucket (`aws.s3.bucket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bucket_name: Option<Cow<'a, str>>,
    /// An SNS topic (`aws.sns.topic.arn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) topic_arn: Option<Cow<'a, str>>,
    /// A Lambda function called (`faas.invoked_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_name: Option<Cow<'a, str>>,
    /// How it was invoked (`aws.lambda.invocation_type`: `RequestResponse`,
    /// `Event`, `DryRun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) invocation_type: Option<Cow<'a, str>>,
    /// The function called failed (`aws.lambda.function_error`, from the
    /// response's `X-Amz-Function-Error`: `Unhandled`, `Handled`), as the
    /// official SDKs record Lambda's `FunctionError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_error: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<u64>,
    /// The call's parameters the official SDKs record (`consumed_capacity`,
    /// `message_id`, ...: [`crate::aws_parameters`]), flattened.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) parameters: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Resource blocks (`ec2`, `ecs`, `eks`, `elastic_beanstalk`,
    /// `cloudwatch_logs`), already shaped by the resource detector.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) xray: Option<XrayInfo<'a>>,
}

static EMPTY_AWS: Aws<'static> = Aws {
    account_id: None,
    operation: None,
    region: None,
    request_id: None,
    queue_url: None,
    table_name: None,
    table_names: Vec::new(),
    bucket_name: None,
    topic_arn: None,
    function_name: None,
    invocation_type: None,
    function_error: None,
    retries: None,
    parameters: None,
    resource: None,
    xray: None,
};

impl BlockContent for Aws<'_> {
    fn empty<'r>() -> &'r Self
    where
        Self: 'r,
    {
        &EMPTY_AWS
    }

    fn is_empty(&self) -> bool {
        self.account_id.is_none()
            && self.operation.is_none()
            && self.region.is_none()
            && self.request_id.is_none()
            && self.queue_url.is_none()
            && self.table_name.is_none()
            && self.table_names.is_empty()
            && self.bucket_name.is_none()
            && self.topic_arn.is_none()
            && self.function_name.is_none()
            && self.invocation_type.is_none()
            && self.function_error.is_none()
            && self.retries.is_none()
            && self.parameters.as_ref().is_none_or(|m| m.is_empty())
            && self.resource.is_none_or(|m| m.is_empty())
            && self.xray.is_none()
    }
}

/// `aws.xray`: which SDK wrote the document.
#[derive(Serialize, Debug, Default)]
pub(crate) struct XrayInfo<'a> {
    pub(crate) sdk: &'static str,
    pub(crate) sdk_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sampling_rule_name: Option<&'a str>,
}

/// The `sql` block (SPEC §1.8).
#[derive(Serialize, Debug, Default)]
pub(crate) struct Sql<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connection_string: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sanitized_query: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) database_type: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) database_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) driver_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preparation: Option<&'static str>,
}

static EMPTY_SQL: Sql<'static> = Sql {
    url: None,
    connection_string: None,
    sanitized_query: None,
    database_type: None,
    database_version: None,
    driver_version: None,
    user: None,
    preparation: None,
};

impl BlockContent for Sql<'_> {
    fn empty<'r>() -> &'r Self
    where
        Self: 'r,
    {
        &EMPTY_SQL
    }

    fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.connection_string.is_none()
            && self.sanitized_query.is_none()
            && self.database_type.is_none()
            && self.database_version.is_none()
            && self.driver_version.is_none()
            && self.user.is_none()
            && self.preparation.is_none()
    }
}

/// The `cause` block (SPEC §1.6). The string form (an exception id recorded
/// elsewhere) is not produced by this crate.
#[derive(Serialize, Debug, Default)]
pub(crate) struct Cause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) working_directory: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) exceptions: Vec<Exception<'a>>,
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct Exception<'a> {
    pub(crate) id: SegmentId,
    /// Left out when empty.
    #[serde(skip_serializing_if = "no_text")]
    pub(crate) message: Option<Cow<'a, str>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) remote: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) truncated: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<SegmentId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stack: Vec<StackFrame<'a>>,
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct StackFrame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) label: Option<&'a str>,
}

/// An annotation value: string, number or boolean only (SPEC §1.7).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnnotationValue<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    /// Always finite: non-finite floats become strings before they get here.
    F64(f64),
    Bool(bool),
}

impl Serialize for AnnotationValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AnnotationValue::Str(v) => s.serialize_str(v),
            AnnotationValue::I64(v) => s.serialize_i64(*v),
            AnnotationValue::U64(v) => s.serialize_u64(*v),
            AnnotationValue::F64(v) => s.serialize_f64(*v),
            AnnotationValue::Bool(v) => s.serialize_bool(*v),
        }
    }
}

/// Annotations in insertion order (a later value for the same key replaces
/// the earlier one), serialized as a JSON object.
#[derive(Debug, Default)]
pub(crate) struct Annotations<'a>(pub(crate) Vec<(Cow<'a, str>, AnnotationValue<'a>)>);

impl<'a> Annotations<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Inserts or replaces; returns `true` when the key was new.
    pub(crate) fn insert(&mut self, key: Cow<'a, str>, value: AnnotationValue<'a>) -> bool {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            false
        } else {
            self.0.push((key, value));
            true
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `metadata`: namespace → key → any JSON. One namespace (usually
/// `tracing`) and four keys are held inline, in the entity itself.
pub(crate) type Metadata<'a> =
    SmallMap<Cow<'a, str>, MetaEntries<'a>, [(Cow<'a, str>, MetaEntries<'a>); 1]>;

/// The keys of one metadata namespace.
pub(crate) type MetaEntries<'a> = SmallMap<Cow<'a, str>, MetaValue<'a>>;

/// A map kept as a vector in insertion order, serialized as a JSON object.
/// Metadata has a few namespaces of a few keys each (a `tracing` callsite
/// has at most 32 fields): a scan beats a tree. The first entries (four
/// unless `A` says otherwise) live inline: a span's few leftover fields
/// cost no allocation at all.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SmallMap<K, V, A = [(K, V); 4]>(SmallVec<A>)
where
    A: smallvec::Array<Item = (K, V)>;

impl<K, V, A: smallvec::Array<Item = (K, V)>> Default for SmallMap<K, V, A> {
    fn default() -> Self {
        SmallMap(SmallVec::new())
    }
}

/// Key equality for [`SmallMap`]: metadata keys are mostly the same
/// `&'static str` (a field's name, a namespace), so the same pointer and
/// length settle it before any byte is compared.
pub(crate) trait MapKey {
    /// Whether the two keys are equal.
    fn same_key(&self, other: &Self) -> bool;
}

impl MapKey for Cow<'_, str> {
    #[inline]
    fn same_key(&self, other: &Self) -> bool {
        let (a, b) = (self.as_bytes(), other.as_bytes());
        a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
    }
}

impl<'a> Metadata<'a> {
    /// Sets `ns.key` (a later value for the same key wins): the
    /// namespace's entries are found, or started with this one, in one
    /// pass.
    #[inline]
    pub(crate) fn put(&mut self, ns: Cow<'a, str>, key: Cow<'a, str>, value: MetaValue<'a>) {
        for (k, entries) in self.0.iter_mut() {
            if k.same_key(&ns) {
                entries.insert(key, value);
                return;
            }
        }
        self.put_new(ns, key, value);
    }

    /// [`Metadata::put`] for a namespace not there yet.
    #[inline(never)]
    fn put_new(&mut self, ns: Cow<'a, str>, key: Cow<'a, str>, value: MetaValue<'a>) {
        let mut entries = MetaEntries::default();
        entries.0.push((key, value));
        self.0.push((ns, entries));
    }
}

impl<K: MapKey, V, A: smallvec::Array<Item = (K, V)>> SmallMap<K, V, A> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in insertion order.
    pub(crate) fn entries(&self) -> &[(K, V)] {
        &self.0
    }

    /// The entries, mutably, in insertion order.
    pub(crate) fn entries_mut(&mut self) -> &mut [(K, V)] {
        &mut self.0
    }

    /// Keeps the entries `keep` says yes to, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&(K, V)) -> bool) {
        self.0.retain(|entry| keep(entry));
    }

    /// Where `key` is, if present.
    #[inline]
    fn position(&self, key: &K) -> Option<usize> {
        self.0.iter().position(|(k, _)| k.same_key(key))
    }

    /// Inserts or replaces (a later value for a key wins).
    #[inline]
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.position(&key) {
            Some(i) => self.0[i].1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.position(key)?;
        Some(self.0.remove(i).1)
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_some()
    }

    /// The value for `key`, inserted as `V::default()` when absent.
    #[inline]
    pub(crate) fn entry_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.position(&key) {
            Some(i) => i,
            None => self.push_default(key),
        };
        &mut self.0[i].1
    }

    /// Appends `key` with a default value (kept out of the lookup path:
    /// the value may be large).
    #[inline(never)]
    fn push_default(&mut self, key: K) -> usize
    where
        V: Default,
    {
        self.0.push((key, V::default()));
        self.0.len() - 1
    }
}

impl<K: Serialize, V: Serialize, A: smallvec::Array<Item = (K, V)>> Serialize
    for SmallMap<K, V, A>
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A metadata value: any JSON the crate produces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetaValue<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
    List(Vec<MetaValue<'a>>),
    Object(Vec<(Cow<'a, str>, MetaValue<'a>)>),
}

impl Serialize for MetaValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MetaValue::Str(v) => s.serialize_str(v),
            MetaValue::I64(v) => s.serialize_i64(*v),
            MetaValue::U64(v) => s.serialize_u64(*v),
            // JSON numbers beyond 64 bits lose precision in most readers:
            // those are kept exact as strings; the rest (a `u128` from
            // `Duration::as_millis`) are the numbers they are.
            MetaValue::I128(v) => match (i64::try_from(*v), u64::try_from(*v)) {
                (Ok(n), _) => s.serialize_i64(n),
                (_, Ok(n)) => s.serialize_u64(n),
                _ => s.collect_str(v),
            },
            MetaValue::U128(v) => match u64::try_from(*v) {
                Ok(n) => s.serialize_u64(n),
                Err(_) => s.collect_str(v),
            },
            MetaValue::F64(v) => serialize_float(*v, s),
            MetaValue::Bool(v) => s.serialize_bool(*v),
            MetaValue::List(items) => s.collect_seq(items),
            MetaValue::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Finite floats as JSON numbers; NaN and the infinities (which JSON cannot
/// hold) as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`.
pub(crate) fn serialize_float<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(v)
    } else {
        s.serialize_str(non_finite_name(v))
    }
}

pub(crate) fn non_finite_name(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SegmentId {
        s.parse().unwrap()
    }

    #[test]
    fn minimal_segment_omits_empty_fields() {
        let e = Entity {
            name: "svc".into(),
            id: Some(id("70de5b6f19ff9a0a")),
            trace_id: Some("1-581cf771-a006649127e371903a2de979".parse().unwrap()),
            start_time: EpochSeconds::from_micros(1_478_293_361_271_000),
            end_time: Some(EpochSeconds::from_micros(1_478_293_361_449_000)),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"svc","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1478293361.271,"end_time":1478293361.449}"#
        );
    }

    #[test]
    fn independent_subsegment_with_blocks() {
        let mut ann = Annotations::default();
        ann.insert("customer".into(), AnnotationValue::Str("c1".into()));
        ann.insert("n".into(), AnnotationValue::I64(-3));
        let mut md = Metadata::default();
        md.entry_or_default("default".into())
            .insert("nan".into(), MetaValue::F64(f64::NAN));
        let e = Entity {
            kind: Some("subsegment"),
            name: "DynamoDB".into(),
            id: Some(id("0000000000000001")),
            trace_id: Some("1-581cf771-a006649127e371903a2de979".parse().unwrap()),
            parent_id: Some(id("70de5b6f19ff9a0a")),
            start_time: EpochSeconds::from_micros(1_000_000_000_000_001),
            end_time: Some(EpochSeconds::from_micros(1_000_000_000_500_000)),
            namespace: Some("aws"),
            http: Http {
                response: HttpResponse {
                    status: Some(500),
                    content_length: None,
                },
                ..Default::default()
            }
            .into(),
            aws: Aws {
                operation: Some("GetItem".into()),
                table_name: Some("t".into()),
                ..Default::default()
            }
            .into(),
            fault: true,
            annotations: ann,
            metadata: md,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"subsegment","name":"DynamoDB","id":"0000000000000001","trace_id":"1-581cf771-a006649127e371903a2de979","parent_id":"70de5b6f19ff9a0a","start_time":1000000000.000001,"end_time":1000000000.5,"namespace":"aws","http":{"response":{"status":500}},"aws":{"operation":"GetItem","table_name":"t"},"fault":true,"annotations":{"customer":"c1","n":-3},"metadata":{"default":{"nan":"NaN"}}}"#
        );
    }

    #[test]
    fn microsecond_times_round_trip() {
        for us in [
            1_764_085_619_123_456u64,
            1_764_085_619_000_001,
            1_764_085_619_999_999,
            4_102_444_800_000_000,
        ] {
            let s = serde_json::to_string(&EpochSeconds::from_micros(us)).unwrap();
            let back: f64 = s.parse().unwrap();
            assert_eq!((back * 1e6).round() as u64, us, "{s}");
            assert!(s.split('.').nth(1).map_or(0, str::len) <= 6, "{s}");
        }
    }

    #[test]
    fn big_integers_and_non_finite_floats_stay_valid_json() {
        let v = [
            MetaValue::I128(-170141183460469231731687303715884105728),
            MetaValue::U128(u128::MAX),
            MetaValue::F64(f64::INFINITY),
            MetaValue::F64(f64::NEG_INFINITY),
            MetaValue::F64(0.5),
        ];
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(
            s,
            r#"["-170141183460469231731687303715884105728","340282366920938463463374607431768211455","Infinity","-Infinity",0.5]"#
        );
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }
}
