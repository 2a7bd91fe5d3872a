//! A call chain deeper than JSON parsers nest: every document stays readable
//! (serde_json stops at 128 levels, about 63 levels of subsegments), and the
//! trace arrives whole, its deep parts as independent subsegments.

mod common;

use tracing::info_span;
use tracing_xray::sampling::AlwaysSample;

/// Opens `levels` nested spans, each inside the previous one.
fn chain(levels: usize) {
    if levels == 0 {
        return;
    }
    info_span!("level", n = levels).in_scope(|| chain(levels - 1));
}

/// Levels of subsegments embedded in one document (1: none).
fn span_depth(doc: &serde_json::Value) -> usize {
    1 + doc["subsegments"]
        .as_array()
        .map_or(0, |subs| subs.iter().map(span_depth).max().unwrap_or(0))
}

#[test]
fn a_chain_of_300_spans_arrives_whole_in_readable_documents() {
    const LEVELS: usize = 300;
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let (_, xray) = common::run_in_memory(
        |b| {
            b.with_sampler(AlwaysSample)
                .with_exporter(exporter.clone())
                // Not the count threshold: only depth splits this trace.
                .with_streaming_threshold(100_000)
        },
        // A thread of its own, with room for the recursion in debug builds.
        || {
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || tracing::dispatcher::with_default(&dispatch, || chain(LEVELS)))
                .unwrap()
                .join()
                .unwrap();
        },
    );
    let documents = exporter.documents();
    assert!(documents.len() > 1, "split by depth");
    let validator = common::schema();
    for doc in &documents {
        // Parses with serde_json's default recursion limit.
        let value: serde_json::Value = serde_json::from_str(doc.as_str()).unwrap();
        assert!(span_depth(&value) <= 32, "{}", span_depth(&value));
        common::assert_schema_valid(&validator, &value);
    }
    assert_eq!(
        xray.stats().subsegments_streamed as usize,
        documents.len() - 1
    );
    // Put back together: one chain of all 300 levels.
    let traces = exporter.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(span_depth(&traces[0]), LEVELS);
}

/// What the timeline wrote, shared with the test.
#[derive(Clone, Default)]
struct Drawn(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Drawn {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The timeline puts a trace's parts back together before drawing it: a
/// chain of 10,000 levels (a recursive function with `#[instrument]`) is one
/// tree that deep, and dropping it must not overflow the worker's stack
/// (which aborts the whole process, here this test binary).
#[test]
fn the_timeline_draws_a_chain_of_10_000_spans() {
    const LEVELS: usize = 10_000;
    let drawn = Drawn::default();
    let timeline = tracing_xray::export::TimelineExporter::to_writer(drawn.clone()).ascii();
    common::run_in_memory(
        |b| b.with_sampler(AlwaysSample).with_exporter(timeline),
        || {
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            std::thread::Builder::new()
                .stack_size(1 << 30)
                .spawn(move || tracing::dispatcher::with_default(&dispatch, || chain(LEVELS)))
                .unwrap()
                .join()
                .unwrap();
        },
    );
    let text = String::from_utf8(drawn.0.lock().unwrap().clone()).unwrap();
    // The title, one row per span, the bottleneck and the critical path.
    assert_eq!(text.lines().count(), 1 + LEVELS + 2, "{}", &text[..300]);
    let deepest = text.lines().nth(LEVELS).unwrap();
    // Too deep to indent: the row names its depth, and keeps its name.
    assert!(deepest.contains("[9999] level"), "{deepest}");
}
