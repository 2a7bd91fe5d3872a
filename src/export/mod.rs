//! Where finished traces go: the [`Exporter`] trait and the exporters that ship
//! with the crate.
//!
//! The layer never calls an exporter on an application thread. One background
//! worker thread owns the exporter, serializes each finished trace into X-Ray
//! JSON [`Document`]s (splitting it so that no document exceeds the 64 KB
//! limit) and hands them over in batches.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, Instant};

use crate::id::{SegmentId, TraceId};

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http;
mod memory;
mod timeline;
mod udp;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{
    BacklogBound, BacklogFull, HttpExporter, HttpExporterBuilder, HttpExporterError, HttpStats,
    HttpStatsHandle, MAX_BATCH_DOCUMENTS,
};
pub use memory::InMemoryExporter;
pub use timeline::TimelineExporter;
pub use udp::UdpExporter;

/// Runs `f` with the current thread's `tracing` spans and events invisible
/// to every [`XrayLayer`](crate::XrayLayer), as they are on the worker
/// thread.
///
/// For the threads an [`Exporter`] starts itself (a sender, a connection
/// pool): to the layer they are application threads, so without this, a
/// span they open (their own, or one of a library they call) would be
/// traced and exported, and each export would make the next one. Wrap the
/// thread's body in `untraced`. Spans and events made inside `f` are not
/// traced; a span made before, and only entered or closed inside `f`, still
/// is.
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::{Document, ExportError, ExportOutcome, Exporter, InMemoryExporter};
///
/// /// Hands each batch to a sender thread of its own.
/// struct Threaded(mpsc::Sender<Vec<Document>>);
///
/// impl Threaded {
///     fn new(sink: InMemoryExporter) -> Self {
///         let (tx, rx) = mpsc::channel::<Vec<Document>>();
///         std::thread::spawn(move || {
///             tracing_xray::export::untraced(|| {
///                 for batch in rx {
///                     // A library on this thread may open spans: not traced.
///                     let _span = tracing::info_span!("send", docs = batch.len()).entered();
///                     sink.clone().export(batch);
///                 }
///             })
///         });
///         Threaded(tx)
///     }
/// }
///
/// impl Exporter for Threaded {
///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
///         let n = batch.len();
///         match self.0.send(batch) {
///             Ok(()) => ExportOutcome::delivered(n),
///             // The sender thread is gone: every document is reported,
///             // handed back as failed.
///             Err(mpsc::SendError(batch)) => {
///                 let mut outcome = ExportOutcome::default();
///                 for document in batch {
///                     outcome.fail(document, ExportError::AlreadyShutdown);
///                 }
///                 outcome
///             }
///         }
///     }
/// }
///
/// let sink = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_exporter(Threaded::new(sink.clone()))
///     .build();
/// let xray = layer.handle();
/// tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
/// tracing::info_span!("request").in_scope(|| {});
/// xray.flush(Duration::from_secs(1)).unwrap();
/// # for _ in 0..100 {
/// #     if sink.len() > 0 { break; }
/// #     std::thread::sleep(Duration::from_millis(10));
/// # }
/// // The request's segment, and nothing of the sender thread's span.
/// assert_eq!(sink.len(), 1);
/// ```
pub fn untraced<R>(f: impl FnOnce() -> R) -> R {
    let _suppressed = crate::layer::SuppressGuard::enter();
    f()
}

/// A future whose work this crate's layer never traces, whichever thread
/// polls it: [`untraced`] around each of its polls, and around its drop
/// (a future dropped unfinished runs its destructors then). For an exporter's own
/// work that runs on the application's threads, such as a credentials
/// provider spawned on the application's Tokio runtime (see
/// `HttpExporterBuilder`, with the `http` feature): its spans
/// (aws-config's `load_credentials`) would otherwise become traces of the
/// service. Other layers (`fmt`) still see them.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::{InMemoryExporter, untraced_future};
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_exporter(exporter.clone())
///     .build();
/// let xray = layer.handle();
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     runtime.block_on(untraced_future(async {
///         let span = tracing::info_span!("load_credentials");
///         span.in_scope(|| {});
///     }));
/// });
/// xray.flush(Duration::from_secs(1)).unwrap();
/// assert!(exporter.is_empty());
/// ```
pub fn untraced_future<F: std::future::Future>(
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    // Boxed to poll it without unsafe pinning code: a future of this kind
    // (a credentials fetch) is made rarely.
    Untraced(Some(Box::pin(future)))
}

/// [`untraced_future`]'s future: polled, and dropped (a timeout, an
/// aborted task: its destructors' spans), untraced.
struct Untraced<F>(Option<std::pin::Pin<Box<F>>>);

impl<F: std::future::Future> std::future::Future for Untraced<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        match self.0.as_mut() {
            Some(future) => untraced(|| future.as_mut().poll(cx)),
            // Only its drop takes the future out.
            None => std::task::Poll::Pending,
        }
    }
}

impl<F> Drop for Untraced<F> {
    fn drop(&mut self) {
        let future = self.0.take();
        untraced(|| drop(future));
    }
}

/// The largest document (in bytes) the worker ever hands to an exporter.
///
/// X-Ray accepts documents up to 64 KB, and the daemon reads datagrams into a
/// 64 KiB buffer; the SDKs keep a datagram, its header
/// (`{"format":"json","version":1}` and a newline, 30 bytes) included,
/// within 64,000 bytes, and so does this limit: 63,970.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::{InMemoryExporter, MAX_DOCUMENT_BYTES};
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_exporter(exporter.clone())
///     .build();
/// let xray = layer.handle();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let body = "x".repeat(100_000);
///     tracing::info_span!("upload", metadata.body = body.as_str()).in_scope(|| {});
/// });
/// xray.flush(Duration::from_secs(1)).unwrap();
/// assert!(exporter.documents().iter().all(|doc| doc.len() <= MAX_DOCUMENT_BYTES));
/// assert_eq!(xray.stats().spans_trimmed, 1);
/// ```
pub const MAX_DOCUMENT_BYTES: usize = 64_000 - udp::DATAGRAM_HEADER.len();

/// What a [`Document`] holds.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::{DocumentKind, InMemoryExporter};
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_streaming_threshold(1) // split any trace of two subsegments or more
///     .with_exporter(exporter.clone())
///     .build();
/// let xray = layer.handle();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info_span!("batch").in_scope(|| {
///         tracing::info_span!("first").in_scope(|| {});
///         tracing::info_span!("second").in_scope(|| {});
///     });
/// });
/// xray.flush(Duration::from_secs(1)).unwrap();
/// let kinds: Vec<DocumentKind> = exporter.documents().iter().map(|doc| doc.kind()).collect();
/// assert!(kinds.contains(&DocumentKind::Segment));
/// assert!(kinds.contains(&DocumentKind::Subsegment));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DocumentKind {
    /// A complete segment, possibly with embedded subsegments.
    Segment,
    /// An independent subsegment (`"type": "subsegment"`), sent on its own
    /// because its trace was too large for one document, or because the
    /// segment belongs to someone else (Lambda).
    Subsegment,
}

/// One serialized X-Ray segment document, ready to send.
///
/// Documents are produced by the worker; exporters only read them.
///
/// ```
/// # use tracing_xray::export::{Document, DocumentKind};
/// fn send(doc: &Document) {
///     assert!(doc.len() <= tracing_xray::export::MAX_DOCUMENT_BYTES);
///     println!("{} {} {}", doc.trace_id(), doc.id(), doc.as_str());
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    json: String,
    kind: DocumentKind,
    trace_id: TraceId,
    id: SegmentId,
}

impl Document {
    /// The bytes its text holds on the heap (a worker's buffer may be larger
    /// than the document written into it).
    #[cfg(feature = "http")]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.json.capacity()
    }

    /// Gives back the heap its text does not use.
    #[cfg(feature = "http")]
    pub(crate) fn shrink_to_fit(&mut self) {
        self.json.shrink_to_fit();
    }

    pub(crate) fn new(json: String, kind: DocumentKind, trace_id: TraceId, id: SegmentId) -> Self {
        Document {
            json,
            kind,
            trace_id,
            id,
        }
    }

    /// The JSON text of the document.
    ///
    /// ```
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let doc = &exporter.documents()[0];
    /// let json: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
    /// assert_eq!(json["name"], "shop");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// The JSON text, by value.
    ///
    /// ```
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let doc = exporter.documents().remove(0);
    /// let json: String = doc.into_string();
    /// assert!(json.starts_with('{') && json.ends_with('}'));
    /// ```
    pub fn into_string(self) -> String {
        self.json
    }

    /// The size of the JSON text in bytes.
    ///
    /// ```
    /// use tracing_xray::export::MAX_DOCUMENT_BYTES;
    ///
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let doc = &exporter.documents()[0];
    /// assert_eq!(doc.len(), doc.as_str().len());
    /// assert!(doc.len() <= MAX_DOCUMENT_BYTES);
    /// ```
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// Always `false`: a document is never empty. Present for clippy's sake.
    ///
    /// ```
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// assert!(!exporter.documents()[0].is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// Whether this is a segment or an independent subsegment.
    ///
    /// ```
    /// use tracing_xray::export::DocumentKind;
    ///
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// // A small trace is sent whole, as one segment document.
    /// assert_eq!(exporter.documents()[0].kind(), DocumentKind::Segment);
    /// ```
    pub fn kind(&self) -> DocumentKind {
        self.kind
    }

    /// The trace this document belongs to.
    ///
    /// ```
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let doc = &exporter.documents()[0];
    /// let json: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
    /// assert_eq!(json["trace_id"], doc.trace_id().to_string());
    /// ```
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of the (sub)segment at the top of this document.
    ///
    /// ```
    /// # use tracing_subscriber::prelude::*;
    /// # let exporter = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let doc = &exporter.documents()[0];
    /// let json: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
    /// assert_eq!(json["id"], doc.id().to_string());
    /// ```
    pub fn id(&self) -> SegmentId {
        self.id
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("kind", &self.kind)
            .field("trace_id", &self.trace_id)
            .field("id", &self.id)
            .field("len", &self.json.len())
            .finish()
    }
}

/// Why an exporter could not deliver a document.
///
/// ```
/// use tracing_xray::export::ExportError;
///
/// let err = ExportError::TooLarge { size: 70_000, limit: 65_507 };
/// assert_eq!(err.to_string(), "document of 70000 bytes exceeds the 65507-byte limit");
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(matches!(ExportError::from(refused), ExportError::Io(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ExportError {
    /// A socket or file operation failed.
    Io(std::io::Error),
    /// The document is larger than the destination accepts.
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The largest size accepted.
        limit: usize,
    },
    /// The destination rejected the document (for example an
    /// `UnprocessedTraceSegments` entry), with its reason.
    Rejected(String),
    /// The destination refused our credentials.
    Unauthorized(String),
    /// The destination did not answer in time.
    Timeout(Duration),
    /// Given up when the time of a flush or a shutdown (the `Duration`) ran
    /// out before the document could be delivered (`HttpExporter` at
    /// shutdown, its API unavailable): one reported so from
    /// [`Exporter::flush`] or [`Exporter::shutdown`] makes
    /// [`XrayHandle::flush`](crate::XrayHandle::flush) or
    /// [`XrayHandle::shutdown`](crate::XrayHandle::shutdown) return
    /// [`FlushError::Timeout`](crate::FlushError::Timeout).
    OutOfTime(Duration),
    /// The exporter was already shut down.
    AlreadyShutdown,
    /// Anything else.
    Other(Box<dyn StdError + Send + Sync + 'static>),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Io(e) => write!(f, "I/O error: {e}"),
            ExportError::TooLarge { size, limit } => {
                write!(f, "document of {size} bytes exceeds the {limit}-byte limit")
            }
            ExportError::Rejected(why) => write!(f, "document rejected: {why}"),
            ExportError::Unauthorized(why) => write!(f, "not authorized: {why}"),
            ExportError::Timeout(t) => write!(f, "timed out after {t:?}"),
            ExportError::OutOfTime(t) => {
                write!(f, "given up: not delivered within the {t:?} given")
            }
            ExportError::AlreadyShutdown => f.write_str("exporter already shut down"),
            ExportError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// The message of `Io` and `Other` already is their error's (C-GOOD-ERR:
/// never both in the message and as the source), so their source is that
/// error's own source: a reporter walking the chain (anyhow's `{:#}`) shows
/// each message once.
impl StdError for ExportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ExportError::Io(e) => e.source(),
            ExportError::Other(e) => e.source(),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// A document that could not be delivered, and why.
///
/// ```
/// use tracing_xray::export::{ExportError, ExportFailure, ExportOutcome};
///
/// # use tracing_subscriber::prelude::*;
/// # let exporter = tracing_xray::export::InMemoryExporter::new();
/// # let layer = tracing_xray::builder()
/// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
/// #     .with_exporter(exporter.clone())
/// #     .build();
/// # let xray = layer.handle();
/// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
/// #     tracing::info_span!("checkout").in_scope(|| {});
/// # });
/// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
/// let doc = exporter.documents().remove(0);
/// let id = doc.id();
/// let mut outcome = ExportOutcome::default();
/// outcome.fail(doc, ExportError::Rejected("InvalidTraceId".into()));
///
/// let ExportFailure { document, error } = outcome.failures.remove(0);
/// assert_eq!(document.id(), id); // handed back, to retry or log
/// assert_eq!(error.to_string(), "document rejected: InvalidTraceId");
/// ```
#[derive(Debug)]
pub struct ExportFailure {
    /// The document, handed back so that nothing is lost silently.
    pub document: Document,
    /// Why it failed.
    pub error: ExportError,
}

/// The per-document result of an [`Exporter`] call.
///
/// Documents an exporter keeps for later (a batching exporter waiting to fill
/// a batch) are neither delivered nor failed yet: they are reported by a later
/// call (`export`, [`Exporter::poll`], `flush` or `shutdown`).
///
/// ```
/// use tracing_xray::export::ExportOutcome;
/// let mut outcome = ExportOutcome::delivered(3);
/// outcome.merge(ExportOutcome::delivered(2));
/// assert_eq!(outcome.delivered, 5);
/// assert!(outcome.failures.is_empty());
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExportOutcome {
    /// How many documents reached their destination.
    pub delivered: usize,
    /// The documents that will not be delivered.
    pub failures: Vec<ExportFailure>,
}

impl ExportOutcome {
    /// An outcome with `n` documents delivered and no failure.
    ///
    /// ```
    /// use tracing_xray::export::ExportOutcome;
    ///
    /// let outcome = ExportOutcome::delivered(2);
    /// assert_eq!(outcome.delivered, 2);
    /// assert!(outcome.failures.is_empty());
    /// ```
    pub fn delivered(n: usize) -> Self {
        ExportOutcome {
            delivered: n,
            failures: Vec::new(),
        }
    }

    /// Records one failed document.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::{Document, ExportError, ExportOutcome, Exporter};
    ///
    /// /// A destination that is always down.
    /// struct Down;
    ///
    /// impl Exporter for Down {
    ///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
    ///         let mut outcome = ExportOutcome::default();
    ///         for doc in batch {
    ///             outcome.fail(doc, ExportError::Rejected("service unavailable".into()));
    ///         }
    ///         outcome
    ///     }
    /// }
    ///
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(Down)
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("request").in_scope(|| {});
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // With `Down` as the layer's exporter, failures are counted:
    /// assert_eq!(xray.stats().documents_failed, 1);
    /// ```
    pub fn fail(&mut self, document: Document, error: ExportError) {
        self.failures.push(ExportFailure { document, error });
    }

    /// Adds another outcome's counts and failures to this one.
    ///
    /// ```
    /// use tracing_xray::export::ExportOutcome;
    ///
    /// let mut total = ExportOutcome::default();
    /// for sent in [3, 2] {
    ///     total.merge(ExportOutcome::delivered(sent));
    /// }
    /// assert_eq!(total.delivered, 5);
    /// ```
    pub fn merge(&mut self, other: ExportOutcome) {
        self.delivered += other.delivered;
        self.failures.extend(other.failures);
    }
}

/// A destination for X-Ray documents, owned and driven by the worker thread.
///
/// The contract:
/// - methods are never called concurrently and never from an application
///   thread, so an exporter can block on I/O, but every call must finish
///   within a bounded time (use timeouts on every network call);
/// - retries, batching and backoff are the exporter's own business;
/// - `tracing` spans and events on the worker thread, so in these methods,
///   are not traced by the layer, so exporters may log freely. Threads an
///   exporter starts are application threads to the layer: run their body
///   in [`untraced`], or each span opened there would be exported, and each
///   export would make the next one.
///
/// # Examples
///
/// An exporter that writes each document to standard error:
///
/// ```
/// use tracing_xray::export::{Document, ExportOutcome, Exporter};
///
/// #[derive(Debug)]
/// struct Stderr;
///
/// impl Exporter for Stderr {
///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
///         for doc in &batch {
///             eprintln!("{}", doc.as_str());
///         }
///         ExportOutcome::delivered(batch.len())
///     }
/// }
///
/// let layer = tracing_xray::builder().with_exporter(Stderr).build();
/// # drop(layer);
/// ```
pub trait Exporter: Send + 'static {
    /// Sends (or queues) a batch of documents.
    ///
    /// The worker calls it with each batch; here it is called by hand.
    ///
    /// ```
    /// use tracing_xray::export::{Exporter, InMemoryExporter};
    ///
    /// # use tracing_subscriber::prelude::*;
    /// # let source = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(source.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let batch = source.documents();
    /// let mut exporter = InMemoryExporter::new();
    /// let outcome = exporter.export(batch);
    /// assert_eq!(outcome.delivered, 1);
    /// assert!(outcome.failures.is_empty());
    /// assert_eq!(exporter.len(), 1);
    /// ```
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome;

    /// Delivers everything queued, giving up after `timeout`. The default does
    /// nothing: an exporter that sends in `export` has nothing to flush.
    ///
    /// Documents it still holds when it returns (handed to `export`, not yet
    /// reported delivered or failed) make
    /// [`XrayHandle::flush`](crate::XrayHandle::flush) return
    /// [`FlushError::Timeout`](crate::FlushError::Timeout): they were not
    /// dealt with in time. So do documents it reports failed with
    /// [`ExportError::OutOfTime`] (given up on for lack of time).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::{Document, ExportOutcome, Exporter};
    ///
    /// /// Holds documents until the worker flushes.
    /// #[derive(Default)]
    /// struct Held(Vec<Document>);
    ///
    /// impl Exporter for Held {
    ///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
    ///         self.0.extend(batch);
    ///         ExportOutcome::default() // reported by `flush`
    ///     }
    ///     fn flush(&mut self, _timeout: Duration) -> ExportOutcome {
    ///         let sent = std::mem::take(&mut self.0); // send them here
    ///         ExportOutcome::delivered(sent.len())
    ///     }
    /// }
    ///
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(Held::default())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("request").in_scope(|| {});
    /// # });
    /// // With `Held` as the layer's exporter, `XrayHandle::flush` calls `Held::flush`:
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(xray.stats().documents_exported, 1);
    /// ```
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        let _ = timeout;
        ExportOutcome::default()
    }

    /// Flushes and releases resources; called once, when the layer shuts down.
    /// The default calls [`Exporter::flush`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tracing_xray::export::{Document, ExportOutcome, Exporter};
    ///
    /// struct Connection {
    ///     open: Arc<AtomicBool>,
    /// }
    ///
    /// impl Exporter for Connection {
    ///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
    ///         ExportOutcome::delivered(batch.len())
    ///     }
    ///     fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
    ///         let outcome = self.flush(timeout);
    ///         self.open.store(false, Ordering::SeqCst); // close it
    ///         outcome
    ///     }
    /// }
    ///
    /// let open = Arc::new(AtomicBool::new(true));
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(Connection { open: open.clone() })
    ///     .build();
    /// layer.handle().shutdown(Duration::from_secs(1)).unwrap();
    /// assert!(!open.load(Ordering::SeqCst));
    /// ```
    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        self.flush(timeout)
    }

    /// When the worker should next call [`Exporter::poll`] even if no new
    /// document arrives (a batching exporter's send deadline). The default,
    /// `None`, means never.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tracing_xray::export::{Document, ExportOutcome, Exporter};
    ///
    /// /// Sends a batch 100 ms after its first document arrived.
    /// #[derive(Default)]
    /// struct Batching {
    ///     held: Vec<Document>,
    ///     send_at: Option<Instant>,
    /// }
    ///
    /// impl Exporter for Batching {
    ///     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
    ///         self.send_at.get_or_insert(Instant::now() + Duration::from_millis(100));
    ///         self.held.extend(batch);
    ///         ExportOutcome::default() // reported by `poll`
    ///     }
    ///     fn next_poll(&self) -> Option<Instant> {
    ///         self.send_at
    ///     }
    ///     fn poll(&mut self, now: Instant) -> ExportOutcome {
    ///         if self.send_at.is_none_or(|at| now < at) {
    ///             return ExportOutcome::default();
    ///         }
    ///         self.send_at = None;
    ///         let sent = std::mem::take(&mut self.held); // send them here
    ///         ExportOutcome::delivered(sent.len())
    ///     }
    /// }
    ///
    /// # use tracing_subscriber::prelude::*;
    /// # let source = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(source.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let mut exporter = Batching::default();
    /// assert_eq!(exporter.next_poll(), None); // nothing held, no timer
    /// exporter.export(source.documents());
    /// assert!(exporter.next_poll().is_some());
    /// ```
    fn next_poll(&self) -> Option<Instant> {
        None
    }

    /// Timer work (send a batch whose delay has passed, retry after backoff).
    ///
    /// With the `Batching` exporter of [`Exporter::next_poll`]'s example:
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # use tracing_xray::export::{Document, ExportOutcome, Exporter};
    /// #
    /// # /// Sends a batch 100 ms after its first document arrived.
    /// # #[derive(Default)]
    /// # struct Batching {
    /// #     held: Vec<Document>,
    /// #     send_at: Option<Instant>,
    /// # }
    /// #
    /// # impl Exporter for Batching {
    /// #     fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
    /// #         self.send_at.get_or_insert(Instant::now() + Duration::from_millis(100));
    /// #         self.held.extend(batch);
    /// #         ExportOutcome::default() // reported by `poll`
    /// #     }
    /// #     fn next_poll(&self) -> Option<Instant> {
    /// #         self.send_at
    /// #     }
    /// #     fn poll(&mut self, now: Instant) -> ExportOutcome {
    /// #         if self.send_at.is_none_or(|at| now < at) {
    /// #             return ExportOutcome::default();
    /// #         }
    /// #         self.send_at = None;
    /// #         let sent = std::mem::take(&mut self.held); // send them here
    /// #         ExportOutcome::delivered(sent.len())
    /// #     }
    /// # }
    /// # use tracing_subscriber::prelude::*;
    /// # let source = tracing_xray::export::InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(source.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(std::time::Duration::from_secs(1)).unwrap();
    /// let mut exporter = Batching::default();
    /// exporter.export(source.documents());
    /// let at = exporter.next_poll().unwrap();
    /// assert_eq!(exporter.poll(at - Duration::from_millis(1)).delivered, 0); // too early
    /// assert_eq!(exporter.poll(at).delivered, 1);
    /// ```
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        let _ = now;
        ExportOutcome::default()
    }
}

impl<E: Exporter + ?Sized> Exporter for Box<E> {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        (**self).export(batch)
    }
    fn flush(&mut self, timeout: Duration) -> ExportOutcome {
        (**self).flush(timeout)
    }
    fn shutdown(&mut self, timeout: Duration) -> ExportOutcome {
        (**self).shutdown(timeout)
    }
    fn next_poll(&self) -> Option<Instant> {
        (**self).next_poll()
    }
    fn poll(&mut self, now: Instant) -> ExportOutcome {
        (**self).poll(now)
    }
}

/// An exporter that discards every document (benchmarks, or a layer kept only
/// for header propagation).
///
/// ```
/// let layer = tracing_xray::builder()
///     .with_exporter(tracing_xray::export::NoopExporter)
///     .build();
/// # drop(layer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExporter;

impl Exporter for NoopExporter {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        ExportOutcome::delivered(batch.len())
    }
}
