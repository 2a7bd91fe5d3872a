//! AWS X-Ray distributed tracing for [`tracing`]-instrumented applications,
//! as one [`tracing_subscriber::Layer`].
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry().with(tracing_xray::layer()).init();
//! ```
//!
//! Root spans become X-Ray segments (named after the service), child spans
//! subsegments, span fields annotations and metadata. Finished traces are
//! serialized and sent by one background worker thread, never on the
//! application's threads, to the X-Ray daemon over UDP (`127.0.0.1:2000`, or
//! `AWS_XRAY_DAEMON_ADDRESS`) or to any [`export::Exporter`].
//!
//! # Flushing
//!
//! A global subscriber is never dropped: flush before the program exits, and
//! in AWS Lambda at the end of every invocation, through the layer's
//! [`XrayHandle`] (or keep the guard of [`init`] alive).
//!
//! ```
//! use std::time::Duration;
//! use tracing_subscriber::prelude::*;
//! use tracing_xray::export::InMemoryExporter;
//!
//! let exporter = InMemoryExporter::new();
//! let layer = tracing_xray::builder()
//!     .with_service_name("orders")
//!     .with_sampler(tracing_xray::sampling::AlwaysSample)
//!     .with_exporter(exporter.clone())
//!     .build();
//! let xray = layer.handle();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     let request = tracing::info_span!(
//!         "place_order",
//!         annotation.customer = "c-42",   // indexed: filter traces by it
//!         metadata.items = 3,             // any JSON, not indexed
//!     );
//!     request.in_scope(|| {
//!         tracing::info_span!("charge_card").in_scope(|| {
//!             tracing::error!("card declined"); // marks the subsegment as a fault
//!         });
//!     });
//! });
//! xray.flush(Duration::from_secs(2)).unwrap();
//!
//! let segment = &exporter.traces()[0];
//! assert_eq!(segment["name"], "orders");
//! assert_eq!(segment["annotations"]["customer"], "c-42");
//! assert_eq!(segment["subsegments"][0]["fault"], true);
//! ```
//!
//! # Span fields
//!
//! | you write (span field) | X-Ray gets |
//! |---|---|
//! | `annotation.KEY = v` | `annotations.KEY`: indexed, filterable. Key made `[A-Za-z0-9_]` (at most 500 chars), strings cut at 1,000 chars, numbers and booleans keep their types, NaN/±inf become strings; past 50 per trace they move to metadata (counted in `annotations_demoted`; each document's top keeps its own first, then its subsegments' as its tree is walked: a parent's children in the order they ended, each with its own subtree before the next), as does, uncounted, the second of two names made the same key (`a-b`, `a_b`) |
//! | a field named in `with_indexed_fields(&[..])`, or any simple field with `with_all_fields_indexed(true)` | an annotation |
//! | `metadata.KEY` / `metadata.NS.KEY` | `metadata.default.KEY` / `metadata.NS.KEY` (the namespace `AWS`, the SDKs' reserved `AWS.*`, `tracing_xray`, this crate's own, and `tracing`, where the other fields go, are kept under `default`) |
//! | any other field | `metadata.tracing.FIELD`, with the type `tracing` gave it (dropped with `with_other_fields_as_metadata(false)`, as are the values a convention below has no use for) |
//! | `xray.name` / `otel.name` | the subsegment's name |
//! | `enduser.id`, `xray.user` | the segment's `user` (a numeric id as its digits; on a client call without a traced parent, the segment around it). X-Ray has a user only on segments: on a span below the root (an auth step inside the request) it is the segment's user too, unless the root names one (the first such span to end wins; the span keeps the field in its metadata; in Lambda, with no segment of ours, metadata only) |
//! | `xray.trace_header` | continues that `X-Amzn-Trace-Id` (root spans) |
//! | a `&dyn Error` field, an ERROR event, `error = true`, `otel.status_code = "ERROR"`, `error.type` | `fault` (`error` when the HTTP status is 4xx; no flag when it is below 400: the request succeeded, the error was handled; but a call's error, or a failure tower-http classified, is a fault even below 400; and none with `otel.status_code = "OK"`, final in OpenTelemetry), and `cause.exceptions` with the `source()` chain linked by exception ids (every message without a URL's user info, query or fragment, which an error's text often quotes; 8 sources kept, the last one's `skipped` counting those left out; an error recorded again by the spans it passes up through, as nested `#[instrument(err)]` functions do, names the one below as its `cause`; 8 per span, the rest counted in `stats()` and the span's `metadata.tracing_xray.exceptions_dropped`) |
//! | `error.type` / `exception.type`, `exception.message` / `error.message` / `otel.status_description` (tracing-actix-web, tonic's OpenTelemetry instrumentation, reqwest-tracing, tracing-opentelemetry), `otel.status_message` | on a span without an error value, one exception with that type and message (the message without a URL's user info, query or fragment, or a credential header's value, which an HTTP client's error text carries); `exception.message`, `error.message` and `otel.status_description` make the span a failure as `error.type` does (`otel.status_message` alone does not, and stays metadata); `error.cause_chain`, `exception.details` and `exception.stacktrace` stay metadata, without a URL's secrets either |
//! | `http.request.method` / `http.method` (tower-http: `method`) | `http.request.method` |
//! | `url.full` / `http.url`, or `url.scheme` + `server.address`/`http.host` + `server.port` + `url.path`/`http.target` (tower-http: `uri`) | `http.request.url`: scheme, host, port and path only (user info, query and fragment are never sent; `url.query` is dropped) |
//! | `user_agent.original` / `http.user_agent` | `http.request.user_agent` |
//! | `client.address` / `http.client_ip` (the latter, a forwarded header's value, also sets `x_forwarded_for`) | `http.request.client_ip` |
//! | `http.response.status_code` / `http.status_code` (tower-http: the `status` of its response event) | `http.response.status`; 4xx → `error`, 429 → `throttle` + `error`, 5xx → `fault` |
//! | `rpc.grpc.status_code` (tonic's OpenTelemetry instrumentation; tower-http's `status` for a gRPC response) | the flags of the HTTP status the code stands for (Google's mapping): RESOURCE_EXHAUSTED → `throttle` + `error`, a caller's mistake (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED, ...) → `error`, a server's failure (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, ...) → `fault`; the code itself stays in the metadata |
//! | `http.response.content_length` / `http.response.body.size` | `http.response.content_length` |
//! | `otel.kind = "client"`/`"producer"`, `xray.namespace = "remote"` | `namespace: remote`, named after `peer.service` or the host |
//! | `xray.traced = true` / `http.request.traced = true` | `http.request.traced` (the callee is instrumented) |
//! | `db.system`, `db.name`/`db.namespace`, `db.user`, `server.address`, `server.port`, `db.connection_string` | `sql.database_type`/`url`/`user`/`connection_string` (passwords removed: URL user info, `password`/`pwd`/`token`/… query parameters, `Password=`/`Pwd=` pairs, libpq `password=`, Oracle `user/password@`; an `@` in a file database's path, as in `sqlite:///tmp/a@b.db` or `file:db@2/app.db`, is no user info), `namespace: remote`, named `db@host` (with both `db.name` and `server.address`; else after the one there is, or `db.system`); the `sql` block for an SQL database only (`postgresql`, `mysql`, `mssql`, `other_sql`, …): another (Redis, MongoDB) keeps its fields as metadata; an AWS call (`rpc.system = "aws-api"`) has no `sql` block, whatever its `db.system` (DynamoDB's `dynamodb`) |
//! | `db.query.text` / `db.statement` | `sql.sanitized_query`, only with `with_sql_queries(true)`, or `AWS_XRAY_COLLECT_SQL_QUERIES=true` when the builder does not say |
//! | AWS SDK span (`rpc.system = "aws-api"`, `rpc.service`, `rpc.method`; older `invoke` spans of `aws_smithy_runtime*` targets, with `service`/`operation`) | `namespace: aws`, named after the service (`DynamoDB`, `S3`, ...), `aws.operation`; the SDK's internal spans folded in (`with_aws_sdk_internal_spans(true)` keeps them), `aws.retries`; a call made inside another (the credentials provider's STS call inside a DynamoDB call) a subsegment of its own below it |
//! | `aws.request_id`, `aws.region`/`cloud.region`, `aws.account_id`, `aws.dynamodb.table_names`, `aws.sqs.queue_url` (on an SQS call without it, `messaging.url`, or `messaging.destination.name` if it is a URL; a queue's name there is `queue_name`), `aws.s3.bucket`, `aws.sns.topic.arn`, `faas.invoked_name` (a Lambda function called), `aws.lambda.invocation_type`, `aws.retries` | `aws.request_id`, `region`, `account_id`, `table_name` (`table_names` if several), `queue_url`, `bucket_name`, `topic_arn`, `function_name`, `invocation_type`, `retries`; another messaging system's destination (a Kafka topic) stays metadata |
//! | `xray.throttle = true` | `throttle` + `error` |
//!
//! An ERROR event inside a span marks it as a fault with the event's
//! message (with an HTTP status, the status decides: below 400 the error
//! stays in `cause` and sets no flag, but for a call's own error or a
//! failure tower-http classified); other events are sent only with
//! [`Builder::with_events`].
//!
//! # Sampling, propagation, Lambda
//!
//! The sampling decision is taken once per trace, at the root: an incoming
//! `Sampled=1`/`0` wins, else the [`sampling::Sampler`] (default: X-Ray's
//! default rule, one request a second plus 5 %). [`XraySpanExt`] continues
//! an incoming [`TraceHeader`] and produces the header for downstream calls.
//! In AWS Lambda, spans become independent subsegments of the invocation's
//! facade (see [`Builder::with_lambda`]).
//!
//! # Cargo features
//!
//! None is on by default: the default build is the layer, the worker, the
//! UDP, in-memory and timeline exporters, and the samplers.
//!
//! (The items of a feature are marked with it in these docs.)
//!
//! | feature | adds | public dependency it brings |
//! |---|---|---|
//! | `http` | `export::HttpExporter`: PutTraceSegments over HTTPS (rustls), signed with SigV4, no daemon needed | `aws-credential-types` 1 (`ProvideCredentials`, for `HttpExporterBuilder::with_credentials_provider`) |
//! | `tower` | the `tower` module: server and client layers that continue and propagate `X-Amzn-Trace-Id`, and a flush layer for Lambda | `http` 1, `tower-layer`/`tower-service` 0.3 |
//! | `aws-sdk` | `aws_sdk::XrayInterceptor` for the AWS SDK for Rust | `aws-smithy-runtime-api` 1 |
//! | `opentelemetry` | the `opentelemetry` module: an X-Ray propagator and id conversions | `opentelemetry` 0.33: a new minor release of it is a new minor release of this crate |
//!
//! Always public: [`tracing`], [`tracing_subscriber`] (the [`Layer`] and
//! registry traits) and `serde_json` ([`serde_json::Value`] in
//! [`export::InMemoryExporter`]'s answers).
//!
//! [`Layer`]: tracing_subscriber::Layer
//!
//! # Limits
//!
//! No datagram over 64,000 bytes leaves (large traces are split into
//! independent subsegments, oversize spans trimmed and marked); the queue to
//! the worker is bounded (drops are counted in [`Stats`]); the layer never
//! panics and never traces its own worker or exporters.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
// Every builder-style method is `#[must_use]`, every fallible one says when
// it fails (API guidelines C-FAILURE).
#![warn(clippy::return_self_not_must_use, clippy::missing_errors_doc)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod assemble;
mod aws_parameters;
#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub mod aws_sdk;
mod builder;
mod clock;
mod config;
mod daemon_address;
mod events;
pub mod export;
mod fields;
mod forest;
mod handle;
mod header;
#[cfg(feature = "tower")]
mod http;
mod id;
mod json;
mod layer;
mod limits;
mod model;
mod name_chars;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod opentelemetry;
mod owners;
mod panics;
mod percent;
mod recycle;
mod resource;
pub mod sampling;
mod span_data;
mod span_ext;
mod span_list;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod unsampled;
mod worker;

pub use builder::{Builder, DEFAULT_SHUTDOWN_TIMEOUT, TryInitError};
pub use daemon_address::{DaemonAddress, DaemonAddressError};
pub use handle::{FlushError, Stats, XrayGuard, XrayHandle};
pub use header::{HEADER_NAME, HEADER_NAME_LOWERCASE, Sampled, TraceHeader};
pub use id::{ParseIdError, SegmentId, TraceId};
pub use layer::XrayLayer;
pub use resource::Detectors;
pub use span_ext::XraySpanExt;

/// Writes one line on standard error, ignoring a failure (a closed pipe, a
/// full disk): `eprintln!` panics then, and these reports run on the
/// application's threads (inside span callbacks), on the worker's and on the
/// sampler's, none of which a report may take down.
pub(crate) fn stderr_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{args}");
}

// The README's Rust snippets, compiled (and, unless marked `no_run`, run) by
// `cargo test --doc`; its HTTP exporter snippet needs the `http` feature
// (`scripts/test` enables every feature).
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// A layer configured from the environment, sending to the X-Ray daemon.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry().with(tracing_xray::layer()).init();
/// ```
pub fn layer() -> XrayLayer {
    Builder::default().build()
}

/// A [`Builder`] to configure the layer.
///
/// ```
/// let layer = tracing_xray::builder().with_service_name("api").build();
/// # drop(layer);
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// Installs `registry().with(layer())` as the global subscriber and returns
/// a guard that flushes and shuts the layer down when dropped.
///
/// ```no_run
/// let _xray = tracing_xray::init();
/// ```
pub fn init() -> XrayGuard {
    Builder::default().init()
}
