//! A trace sent in parts (a long-lived root streaming what it holds, a
//! segment sent with its response while work it spawned goes on, a Lambda
//! invocation's subtrees) keeps what its later parts need with it: one
//! budget of 50 annotations (SPEC §1.3), the user a part names for the
//! segment, the exceptions waiting for their parent to name them as
//! causes. Nothing of it stays on the worker once the trace ends, however
//! many traces are in parts at once, and nothing takes a trace's room in
//! the queue. Found by audits of the README's and the rustdoc's claims and
//! a review of a first fix, which kept these in bounded maps on the worker.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::{Document, ExportOutcome, Exporter};

const WAIT: Duration = Duration::from_secs(30);

/// Annotations on every (sub)segment of a trace.
fn annotations_in(trace: &Value) -> usize {
    common::walk(trace)
        .iter()
        .map(|(_, n)| n["annotations"].as_object().map_or(0, |a| a.len()))
        .sum()
}

/// A layer streaming a long-lived root's finished children as soon as it
/// holds two, every trace sampled, into memory.
fn streaming_layer(exporter: &tracing_xray::export::InMemoryExporter) -> tracing_xray::XrayLayer {
    tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_max_held_subsegments(1)
        .with_queue_capacity(1 << 16)
        .with_exporter(exporter.clone())
        .build()
}

/// The same limit (SPEC §1.3) with no stale count at all: a server holding
/// more than 1,024 long-lived roots open at once (a WebSocket or streaming
/// server with a root per connection) whose finished children stream in
/// parts. The worker kept the counts in a map it cleared whole at 1,024
/// traces, so every open trace's next part started from zero again: each
/// of the 1,100 traces indexed 80 annotations. The count now lives with
/// its trace.
#[test]
fn any_number_of_open_traces_in_parts_each_index_at_most_50_annotations() {
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let layer = streaming_layer(&exporter);
    let xray = layer.handle();
    const CONNECTIONS: usize = 1100;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let roots: Vec<_> = (0..CONNECTIONS)
            .map(|_| tracing::info_span!("connection"))
            .collect();
        for _ in 0..2 {
            for root in &roots {
                root.in_scope(|| {
                    common::step_with_twenty_annotations();
                    common::step_with_twenty_annotations();
                });
            }
            xray.flush(WAIT).unwrap();
        }
    });
    xray.flush(WAIT).unwrap();
    let traces = exporter.traces();
    assert_eq!(traces.len(), CONNECTIONS);
    let over = traces.iter().filter(|t| annotations_in(t) > 50).count();
    let stats = xray.stats();
    assert_eq!(
        over, 0,
        "{over} of {CONNECTIONS} traces index more than 50 annotations; {stats:?}"
    );
    assert_eq!(stats.annotations_demoted, 30 * CONNECTIONS as u64);
}

/// A long-lived root that declares a key of no usable character
/// (`annotation.-`, metadata) keeps no place for it among the trace's 50:
/// its parts, streamed before it ends, leave room for the annotations its
/// callsite declares. A review found the key still counted there once it
/// was metadata: the trace indexed 49 annotations and demoted one that had
/// room.
#[test]
fn an_unusable_annotation_key_on_a_long_lived_root_takes_no_place_among_the_50() {
    let job = job_of_sixty_annotations(
        |b| b,
        || info_span!("job", "annotation.-" = 1, annotation.tenant = "acme"),
    );
    assert_eq!(job["metadata"]["default"]["-"], 1, "{job:#}");
}

/// A long-lived root made by `root` (with one usable annotation and one
/// field of no usable key character) whose three steps of 20 annotations
/// stream before it ends: the trace indexes 50 of the 61, and counts 11
/// demoted (none of the places kept for the root stays empty). The root's
/// document.
fn job_of_sixty_annotations(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    root: impl FnOnce() -> tracing::Span,
) -> Value {
    let c = common::capture_documents(
        |b| configure(b.with_max_held_subsegments(1)),
        || {
            let job = root();
            job.in_scope(|| {
                common::step_with_twenty_annotations();
                common::step_with_twenty_annotations();
                common::step_with_twenty_annotations();
                // Two plain steps: the third annotated one streams too.
                info_span!("plain").in_scope(|| {});
                info_span!("plain").in_scope(|| {});
            });
            drop(job);
        },
    );
    let stats = c.xray.stats();
    assert!(
        stats.subsegments_streamed > 0,
        "the steps streamed: {stats:?}"
    );
    assert_eq!(
        common::annotations_in_docs(&c.docs),
        50,
        "the trace indexes fewer than 50 annotations though 61 were asked: {stats:?}"
    );
    assert_eq!(stats.annotations_demoted, 11, "{stats:?}");
    common::node(&c.docs, "job").clone()
}

/// Requests served through `XrayServerLayer` (feature `tower`).
#[cfg(feature = "tower")]
mod served {
    use super::*;
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use tower_layer::Layer;
    use tower_service::Service;

    /// One caller's trace: two requests to this service in it (a client
    /// fanning out, or retrying) carry the same `Root`.
    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    /// What the handler does inside the request's span.
    #[derive(Clone, Copy)]
    enum Work {
        /// Nothing.
        Plain,
        /// One step with one annotation, as a request with an indexed
        /// tenant has.
        Tenant,
        /// A step with 50 annotations, then work (`background`) that
        /// outlives the response.
        Annotated,
        /// Work (`refresh`) that outlives the response.
        Spawns,
    }

    #[derive(Clone)]
    struct Handler {
        work: Work,
        kept: Arc<Mutex<Option<tracing::Span>>>,
    }

    impl tower_service::Service<http::Request<String>> for Handler {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            match self.work {
                Work::Plain => {}
                Work::Tenant => info_span!("handler", annotation.tenant = "acme").in_scope(|| {}),
                Work::Annotated => {
                    crate::fifty_annotations_root!().in_scope(|| {});
                    *self.kept.lock().unwrap() = Some(info_span!("background"));
                }
                Work::Spawns => {
                    *self.kept.lock().unwrap() =
                        Some(info_span!("refresh", error = tracing::field::Empty));
                }
            }
            std::future::ready(Ok(http::Response::new("ok".to_owned())))
        }
    }

    /// Serves one request through `XrayServerLayer` (of `header`'s trace,
    /// or a trace of its own), body and all: its segment is sent, and its
    /// span closes unless the handler kept work going in it.
    fn serve(
        rt: &tokio::runtime::Runtime,
        work: Work,
        header: Option<&str>,
    ) -> Option<tracing::Span> {
        let kept = Arc::new(Mutex::new(None));
        let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Handler {
            work,
            kept: kept.clone(),
        });
        let mut request = http::Request::get("http://example.com/orders");
        if let Some(header) = header {
            request = request.header("X-Amzn-Trace-Id", header);
        }
        let request = request.body(String::new()).unwrap();
        rt.block_on(async {
            let response = service.call(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        });

        kept.lock().unwrap().take()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// README, the `annotation.KEY` row: "past 50 per trace they move to
    /// metadata"; SPEC §1.3: X-Ray indexes at most 50 annotations per
    /// trace. A long-lived root (a nightly job) streams its finished
    /// children in parts, which share the trace's count. Every request
    /// served through `XrayServerLayer` is sent when its response body ends,
    /// a part after which its budget goes on: each left its count on the
    /// worker, and after 1,024 of them the worker's counts were cleared
    /// whole, the job's still open trace's with them: its next part indexed
    /// 40 annotations again, 80 in all, none demoted.
    #[test]
    fn served_requests_leave_an_open_traces_annotation_count_alone() {
        let exporter = tracing_xray::export::InMemoryExporter::new();
        let layer = streaming_layer(&exporter);
        let xray = layer.handle();
        let rt = runtime();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let job = tracing::info_span!("nightly_job");
            // First part: 40 annotations.
            job.in_scope(|| {
                common::step_with_twenty_annotations();
                common::step_with_twenty_annotations();
            });
            xray.flush(WAIT).unwrap();
            // Ordinary traffic meanwhile, each request with one annotation.
            for _ in 0..1100 {
                assert!(serve(&rt, Work::Tenant, None).is_none());
            }
            xray.flush(WAIT).unwrap();
            // Second part: 40 more, of which only 10 fit the trace's 50.
            job.in_scope(|| {
                common::step_with_twenty_annotations();
                common::step_with_twenty_annotations();
            });
            drop(job);
        });
        xray.flush(WAIT).unwrap();
        let traces = exporter.traces();
        let job = traces
            .iter()
            .find(|t| t["metadata"]["tracing"]["span_name"] == "nightly_job")
            .expect("the job's trace");
        let stats = xray.stats();
        assert!(
            annotations_in(job) <= 50,
            "the job's trace indexes {} annotations (X-Ray indexes 50 per trace); \
             annotations_demoted = {}",
            annotations_in(job),
            stats.annotations_demoted
        );
        assert_eq!(stats.annotations_demoted, 30, "{stats:?}");
    }

    /// Two requests carry the same `Root` (a caller fanning out, or
    /// retrying). Request B indexes 50 annotations and leaves `background`
    /// work running after its response (its segment is sent, parts
    /// follow). Request A, of the same trace, ends meanwhile. A first fix
    /// (the worker forgetting a trace's count when a root of it closed)
    /// made B forget its count there: its later steps indexed 20 more than
    /// 50. Each root's parts keep their own count.
    #[test]
    fn another_request_of_the_trace_ending_leaves_an_open_requests_annotation_count() {
        let c = common::capture_documents_with(
            |b| b,
            |xray| {
                let rt = runtime();
                // The worker takes each part before the next step.
                let settle = || xray.flush(WAIT).unwrap();
                let background =
                    serve(&rt, Work::Annotated, Some(HEADER)).expect("B's background work");
                background.in_scope(common::step_with_twenty_annotations);
                settle();
                // Request A of the same trace, served meanwhile.
                assert!(serve(&rt, Work::Plain, Some(HEADER)).is_none());
                settle();
                background.in_scope(common::step_with_twenty_annotations);
                drop(background);
            },
        );
        let stats = c.xray.stats();
        assert_eq!(
            common::annotations_in_docs(&c.docs),
            50,
            "the trace indexes more than 50 annotations: {stats:?}\n{:#?}",
            c.docs
        );
        assert_eq!(stats.annotations_demoted, 40, "{stats:?}");
    }

    #[tracing::instrument(err)]
    fn fetch_prices() -> Result<(), crate::common::Failure> {
        Err(crate::common::Failure("price feed timed out"))
    }

    /// The same two requests: B's `refresh` work outlives its response; its
    /// `fetch_prices` step fails and leaves (a part), its exception waiting
    /// for `refresh` to name it as its cause (README, the `&dyn Error` row:
    /// "in another document too"). The first fix dropped it when request A
    /// ended, every waiting exception of the trace with it.
    #[test]
    fn another_request_of_the_trace_ending_leaves_an_open_requests_waiting_exceptions() {
        let run = |other_request: bool| {
            common::capture_documents_with(
                |b| b,
                |xray| {
                    let rt = runtime();
                    let refresh = serve(&rt, Work::Spawns, Some(HEADER)).expect("B's refresh work");
                    let _ = refresh.in_scope(fetch_prices);
                    // The worker takes each part before the next step.
                    xray.flush(WAIT).unwrap();
                    if other_request {
                        assert!(serve(&rt, Work::Plain, Some(HEADER)).is_none());
                        xray.flush(WAIT).unwrap();
                    }
                    refresh.record(
                        "error",
                        &crate::common::Failure("price feed timed out")
                            as &(dyn std::error::Error + 'static),
                    );
                    drop(refresh);
                },
            )
        };
        let cause_of = |c: &common::Captured| {
            let fetch = common::node(&c.docs, "fetch_prices");
            let refresh = common::node(&c.docs, "refresh");
            let (f, r) = (common::exceptions(fetch), common::exceptions(refresh));
            assert_eq!(f.len(), 1, "{fetch:#}");
            assert_eq!(r.len(), 1, "{refresh:#}");
            (r[0]["cause"].clone(), f[0]["id"].clone())
        };
        let alone = run(false);
        let (cause, id) = cause_of(&alone);
        assert_eq!(cause, id, "without another request: {:#?}", alone.docs);
        let beside = run(true);
        let (cause, id) = cause_of(&beside);
        assert_eq!(
            cause, id,
            "another request of the trace ending lost refresh's cause: {:#?}",
            beside.docs
        );
    }

    /// Blocks in its first `export` until the test releases it.
    struct Gated {
        inner: tracing_xray::export::InMemoryExporter,
        gate: Option<Arc<std::sync::Barrier>>,
    }

    impl tracing_xray::export::Exporter for Gated {
        fn export(
            &mut self,
            batch: Vec<tracing_xray::export::Document>,
        ) -> tracing_xray::export::ExportOutcome {
            if let Some(gate) = self.gate.take() {
                gate.wait(); // the worker is now busy
                gate.wait(); // until the burst is over
            }
            self.inner.export(batch)
        }
    }

    /// `Builder::with_queue_capacity`: "How many finished traces may wait
    /// for the worker". A first fix sent, besides each served request's
    /// segment, a notice when its span closed (`Ended`), into the same
    /// queue: a queue of 4 traces dropped 2 of 4 requests' segments while
    /// the worker was busy.
    #[test]
    fn a_served_request_takes_one_place_in_the_queue() {
        let inner = tracing_xray::export::InMemoryExporter::new();
        let gate = Arc::new(std::sync::Barrier::new(2));
        let layer = tracing_xray::builder()
            .with_service_name("svc")
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_detectors(tracing_xray::Detectors::none())
            .with_queue_capacity(4)
            .with_exporter(Gated {
                inner: inner.clone(),
                gate: Some(gate.clone()),
            })
            .build();
        let xray = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            info_span!("first").in_scope(|| {});
            gate.wait(); // the worker holds the first trace in `export`
            let rt = runtime();
            for _ in 0..4 {
                assert!(serve(&rt, Work::Plain, Some(HEADER)).is_none());
            }
            gate.wait();
        });
        xray.flush(WAIT).unwrap();
        let stats = xray.stats();
        assert_eq!(
            stats.traces_dropped, 0,
            "4 requests into a queue of 4 traces: {stats:?}"
        );
        assert_eq!(inner.len(), 5, "{stats:?}");
    }
}

/// Holds the worker in its first `export` until released.
struct Gate {
    entered: std::sync::mpsc::Sender<()>,
    release: Arc<(Mutex<bool>, std::sync::Condvar)>,
    first: bool,
}

impl Exporter for Gate {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        if std::mem::take(&mut self.first) {
            let _ = self.entered.send(());
            let (lock, cv) = &*self.release;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
        ExportOutcome::delivered(batch.len())
    }
}

/// One Lambda invocation as `lambda_runtime` traces it: the invoke span
/// and the handler's span inside it.
fn invocation(n: u32) {
    let header = format!(
        "Root=1-5759e988-bd862e3fe1be46a9942727{n:02x};Parent=53995c3f42cd8a{n:02x};Sampled=1"
    );
    let invoke = tracing::info_span!("Lambda runtime invoke", xrayTraceId = header.as_str());
    invoke.in_scope(|| tracing::info_span!("handler").in_scope(|| {}));
}

/// The same for Lambda: each invocation's notice took a place in the
/// queue, and with a capacity of 2 and the worker busy, the next
/// invocation's part was dropped though only one trace waited.
#[test]
fn a_lambda_invocation_takes_one_place_in_the_queue() {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let layer = tracing_xray::builder()
        .with_service_name("fn")
        .with_detectors(tracing_xray::Detectors::none())
        .with_lambda(true)
        .with_queue_capacity(2)
        .with_exporter(Gate {
            entered: entered_tx,
            release: release.clone(),
            first: true,
        })
        .build();
    let xray = layer.handle();
    let _d = tracing_subscriber::registry().with(layer).set_default();
    invocation(0);
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The worker is busy exporting invocation 0. Two invocations finish.
    invocation(1);
    invocation(2);
    let waiting = xray.stats();
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    xray.flush(Duration::from_secs(10)).unwrap();
    let stats = xray.stats();
    assert_eq!(
        (stats.traces_dropped, stats.documents_exported),
        (0, 3),
        "two parts for a queue of 2: while the worker was busy {waiting:?}; then {stats:?}"
    );
}

/// The same with `with_all_fields_indexed(true)`: a root's plain field of
/// no usable character (`"-"`) was still counted among the places kept for
/// the root, while it is sent as metadata (a review found it).
#[test]
fn an_indexed_field_of_no_usable_character_on_a_long_lived_root_takes_no_place() {
    let job = job_of_sixty_annotations(
        |b| b.with_all_fields_indexed(true),
        || info_span!("job", "-" = 1, annotation.tenant = "acme"),
    );
    assert_eq!(job["metadata"]["tracing"]["-"], 1, "{job:#}");
}
