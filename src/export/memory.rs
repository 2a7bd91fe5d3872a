//! [`InMemoryExporter`]: keeps documents for assertions in tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::{Document, DocumentKind, ExportOutcome, Exporter};

/// Keeps every document in memory, for tests (yours and ours).
///
/// Clones share the same storage: give one clone to the builder and keep one
/// to inspect. Documents are available once [`crate::XrayHandle::flush`]
/// returns.
///
/// The inspection methods return [`serde_json::Value`]s, the natural shape
/// for asserting on JSON documents.
///
/// With a scoped subscriber (`with_default`, `set_default`), let spans close
/// on threads where that subscriber is the default: the registry closes a
/// span's parent through the default subscriber of the thread where the
/// child closes (tokio-rs/tracing#1656), so a child dropped on another
/// thread leaves its parent, and its whole trace, open and unsent. A global
/// subscriber (`init()`) has no such trap.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
/// use tracing_xray::export::InMemoryExporter;
///
/// let exporter = InMemoryExporter::new();
/// let layer = tracing_xray::builder()
///     .with_sampler(tracing_xray::sampling::AlwaysSample)
///     .with_service_name("shop")
///     .with_exporter(exporter.clone())
///     .build();
/// let xray = layer.handle();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info_span!("checkout", annotation.customer = "c-42").in_scope(|| {
///         tracing::info_span!("charge_card").in_scope(|| {});
///     });
/// });
/// xray.flush(Duration::from_secs(1)).unwrap();
///
/// let traces = exporter.traces();
/// assert_eq!(traces.len(), 1);
/// assert_eq!(traces[0]["name"], "shop");
/// assert_eq!(traces[0]["annotations"]["customer"], "c-42");
/// assert_eq!(traces[0]["subsegments"][0]["name"], "charge_card");
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryExporter {
    documents: Arc<Mutex<Vec<Document>>>,
}

impl InMemoryExporter {
    /// An empty exporter.
    ///
    /// ```
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// assert!(exporter.is_empty());
    /// let layer = tracing_xray::builder().with_exporter(exporter.clone()).build();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Document>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every document received, in order.
    ///
    /// ```
    /// use tracing_xray::export::DocumentKind;
    ///
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # use tracing_xray::export::InMemoryExporter;
    /// # let exporter = InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // After one small trace:
    /// let documents = exporter.documents();
    /// assert_eq!(documents.len(), 1);
    /// assert_eq!(documents[0].kind(), DocumentKind::Segment);
    /// ```
    pub fn documents(&self) -> Vec<Document> {
        self.lock().clone()
    }

    /// Every document received, parsed.
    ///
    /// A trace split to keep documents small stays split here (see
    /// [`InMemoryExporter::traces`]):
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # use tracing_xray::export::InMemoryExporter;
    /// # let exporter = InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_streaming_threshold(1)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {
    /// #         tracing::info_span!("reserve_stock").in_scope(|| {});
    /// #         tracing::info_span!("charge_card").in_scope(|| {});
    /// #     });
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// let documents = exporter.json_documents();
    /// assert!(documents.iter().any(|doc| doc["name"] == "shop")); // the segment
    /// assert!(documents.iter().any(|doc| doc["type"] == "subsegment")); // sent on its own
    /// ```
    pub fn json_documents(&self) -> Vec<Value> {
        self.lock()
            .iter()
            .filter_map(|d| serde_json::from_str(d.as_str()).ok())
            .collect()
    }

    /// The segments received, each with its independent subsegments put back
    /// in place (under the (sub)segment named by their `parent_id`), so a
    /// test sees each segment as one tree however it was split. Their
    /// `type`, `trace_id` and `parent_id` fields are kept. A span's
    /// children come in the order they started (then ended), as the X-Ray
    /// console shows them: the same order whether or not the trace was
    /// split, and whichever documents its parts arrived in.
    ///
    /// After the segments come the independent subsegments whose parent was
    /// not received, each a tree with its own parts put back: in Lambda,
    /// where the function segment is Lambda's, each top-level span of an
    /// invocation (`parent_id`: the invocation's facade).
    ///
    /// A trace continued by another service (another layer, with its own
    /// service name) stays one segment per service, as X-Ray stores it: the
    /// callee's segment is not put under the caller's subsegment, whose id
    /// its `parent_id` holds.
    ///
    /// A tree is as deep as the spans were nested, and `serde_json` drops a
    /// [`Value`] one call per level: a trace nested more than about a
    /// thousand deep (a recursive function instrumented at each level)
    /// overflows a test thread's 2 MiB stack when the result is dropped,
    /// which aborts the process. For such traces read
    /// [`json_documents`](Self::json_documents) (each document as sent,
    /// split), or drop the trees on a thread with a larger stack.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # use tracing_xray::export::InMemoryExporter;
    /// # let exporter = InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_streaming_threshold(1)
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {
    /// #         tracing::info_span!("reserve_stock").in_scope(|| {});
    /// #         tracing::info_span!("charge_card").in_scope(|| {});
    /// #     });
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // The trace was sent as several documents...
    /// assert!(exporter.len() > 1);
    /// // ...and is seen whole here.
    /// let traces = exporter.traces();
    /// assert_eq!(traces.len(), 1);
    /// assert_eq!(traces[0]["subsegments"].as_array().unwrap().len(), 2);
    /// ```
    pub fn traces(&self) -> Vec<Value> {
        let docs = self.lock().clone();
        let mut orphans: HashMap<String, Vec<Value>> = HashMap::new();
        let mut segments = Vec::new();
        // The parents named by independent subsegments, in arrival order.
        let mut parents = Vec::new();
        for doc in &docs {
            let Ok(value) = serde_json::from_str::<Value>(doc.as_str()) else {
                continue;
            };
            match doc.kind() {
                DocumentKind::Segment => segments.push(value),
                DocumentKind::Subsegment => {
                    let parent = value["parent_id"].as_str().unwrap_or_default().to_owned();
                    parents.push(parent.clone());
                    orphans.entry(parent).or_default().push(value);
                }
            }
        }
        for segment in &mut segments {
            adopt(segment, &mut orphans);
        }
        // Independent subsegments whose parent was never received (Lambda's
        // function segment): trees of their own, after the segments.
        let mut ids = HashSet::new();
        for part in orphans.values().flatten() {
            collect_ids(part, &mut ids);
        }
        let mut tops = Vec::new();
        for parent in parents {
            if !ids.contains(parent.as_str()) {
                tops.extend(orphans.remove(&parent).unwrap_or_default());
            }
        }
        for top in &mut tops {
            adopt(top, &mut orphans);
        }
        segments.extend(tops);
        for tree in &mut segments {
            children_in_start_order(tree);
        }
        segments
    }

    /// Forgets every document received so far.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # use tracing_xray::export::InMemoryExporter;
    /// # let exporter = InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("checkout").in_scope(|| {});
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(exporter.len(), 1);
    /// exporter.reset(); // between two parts of a test
    /// assert!(exporter.is_empty());
    /// ```
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// How many documents were received.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # use tracing_xray::export::InMemoryExporter;
    /// # let exporter = InMemoryExporter::new();
    /// # let layer = tracing_xray::builder()
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_service_name("shop")
    /// #     .with_exporter(exporter.clone())
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("first").in_scope(|| {});
    /// #     tracing::info_span!("second").in_scope(|| {});
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// assert_eq!(exporter.len(), 2); // two small traces, one document each
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no document was received.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::InMemoryExporter;
    ///
    /// let exporter = InMemoryExporter::new();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::NeverSample)
    ///     .with_exporter(exporter.clone())
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    /// assert!(exporter.is_empty()); // not sampled: nothing sent
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The ids of `node` and of every subsegment embedded in it.
fn collect_ids(node: &Value, ids: &mut HashSet<String>) {
    let mut work = vec![node];
    while let Some(n) = work.pop() {
        if let Some(id) = n["id"].as_str() {
            ids.insert(id.to_owned());
        }
        if let Some(arr) = n["subsegments"].as_array() {
            work.extend(arr);
        }
    }
}

/// Sorts every `subsegments` list of the tree `node` by start time, then
/// end time (a stable sort: spans of the same times keep their order).
fn children_in_start_order(node: &mut Value) {
    let time = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::INFINITY);
    let mut work: Vec<&mut Value> = vec![node];
    while let Some(n) = work.pop() {
        if let Some(arr) = n.get_mut("subsegments").and_then(Value::as_array_mut) {
            arr.sort_by(|a, b| {
                time(a, "start_time")
                    .total_cmp(&time(b, "start_time"))
                    .then(time(a, "end_time").total_cmp(&time(b, "end_time")))
            });
            work.extend(arr.iter_mut());
        }
    }
}

fn adopt(node: &mut Value, orphans: &mut HashMap<String, Vec<Value>>) {
    // Iterative, so deep trees are fine.
    let mut work: Vec<&mut Value> = vec![node];
    while let Some(n) = work.pop() {
        if let Some(id) = n["id"].as_str().map(str::to_owned) {
            if let Some(kids) = orphans.remove(&id) {
                if let Some(obj) = n.as_object_mut() {
                    let subs = obj
                        .entry("subsegments")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Some(arr) = subs.as_array_mut() {
                        arr.extend(kids);
                    }
                }
            }
        }
        if let Some(arr) = n.get_mut("subsegments").and_then(Value::as_array_mut) {
            work.extend(arr.iter_mut());
        }
    }
}

impl Exporter for InMemoryExporter {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let n = batch.len();
        self.lock().extend(batch);
        ExportOutcome::delivered(n)
    }
}
