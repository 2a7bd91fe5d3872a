//! A subsegment sent twice (in progress, then complete; streamed, and embedded in its
//! parent's document; in either order): one copy counts, the complete one, in the
//! timeline's rows, their details and the export. Documents go as real UDP datagrams to
//! a console on 127.0.0.1, read back through its JSON API. (Found by a hunt: each test
//! says what was seen before its fix.)

mod common;

use serde_json::{json, Value};

use common::*;
use xray_console::{Console, Limits};

const HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";
const TRACE: &str = "1-6b06f324-0123456789abcdef01234567";

/// Sends documents as daemon datagrams, one at a time and in order.
fn send(console: &Console, docs: &[Value]) {
    let udp = sender();
    let before = console.stats().datagrams;
    for (i, d) in docs.iter().enumerate() {
        let dg = format!("{HEADER}{d}");
        udp.send_to(dg.as_bytes(), console.udp_addr()).unwrap();
        wait_datagrams(console, before + 1 + i as u64);
    }
}

fn rows(tl: &Value) -> Vec<Value> {
    tl["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rows"].as_array().unwrap().clone())
        .collect()
}

fn timeline(console: &Console, trace: &str) -> Value {
    get_json(console.http_addr(), &format!("/api/timeline/{trace}"))
}

/// An SDK sends a long request's segment in progress (as the X-Ray API
/// documentation recommends for requests that take long), with its open
/// call embedded, also in progress. The call then finishes and is streamed on
/// its own, complete (`type: subsegment`, same id). The console now draws the
/// call twice under the segment: once in progress with no end, once complete,
/// and says "2 segment(s) still in progress" though the call has finished.
/// X-Ray keeps one document per id, the last received: the call should be one
/// row, complete, and only the segment counted as in progress.
#[test]
fn a_call_embedded_in_progress_then_streamed_complete_is_drawn_once_complete() {
    let console = start(Limits::default());
    let seg_in_progress = json!({"trace_id":TRACE,"id":"1000000000000001","name":"api",
        "start_time":100.0,"in_progress":true,"subsegments":[{"id":"5000000000000001",
        "name":"slow-call","start_time":100.1,"in_progress":true}]});
    let call_done = json!({"type":"subsegment","trace_id":TRACE,"id":"5000000000000001",
        "parent_id":"1000000000000001","name":"slow-call","start_time":100.1,"end_time":100.9});
    send(&console, &[seg_in_progress, call_done]);
    let tl = timeline(&console, TRACE);
    let calls: Vec<Value> = rows(&tl)
        .into_iter()
        .filter(|r| r["id"] == "5000000000000001")
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "the call is drawn {} times: {calls:#?}\npartial: {}",
        calls.len(),
        tl["partial"]
    );
    console.shutdown();
}

/// A segment arrives complete, with a finished call embedded in it (with the
/// annotation `final: true`); then, reordered on the way (UDP), the call's
/// earlier in-progress copy streamed on its own. The README promises "a late
/// in-progress copy is ignored, also when the complete one comes embedded in
/// its parent's document", and the row is indeed drawn complete, but the
/// row's detail (the raw JSON panel, annotations, `/api/timeline`'s
/// `detail`) is the stale in-progress copy: `in_progress: true`, no
/// `end_time`, no annotation. The JSON export (BatchGetTraces shape) carries
/// the stale copy as a document of its own too, so re-importing the export
/// or reading it elsewhere shows a call that never ended.
#[test]
fn a_late_in_progress_copy_is_ignored_in_the_row_its_detail_and_the_export() {
    let console = start(Limits::default());
    let seg = json!({"trace_id":TRACE,"id":"1000000000000001","name":"api","start_time":100.0,
        "end_time":101.0,"subsegments":[{"id":"5000000000000001","name":"slow-call",
        "start_time":100.1,"end_time":100.9,"annotations":{"final":true}}]});
    let late = json!({"type":"subsegment","trace_id":TRACE,"id":"5000000000000001",
        "parent_id":"1000000000000001","name":"slow-call","start_time":100.1,"in_progress":true});
    send(&console, &[seg, late]);
    let tl = timeline(&console, TRACE);
    let call = rows(&tl)
        .into_iter()
        .find(|r| r["id"] == "5000000000000001")
        .unwrap();
    assert_eq!(call["in_progress"], false, "{call:#}");
    let export = get_json(console.http_addr(), &format!("/api/traces/{TRACE}"));
    let exported = export["Traces"][0]["Segments"].as_array().unwrap().len();
    assert!(
        call["detail"]["end_time"] == json!(100.9)
            && call["detail"]["annotations"]["final"] == true
            && exported == 1,
        "the row is complete but its detail is the stale copy: {}\nexported documents: {exported}",
        call["detail"]
    );
    console.shutdown();
}
