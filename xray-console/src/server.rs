//! The HTTP side: pages, the JSON API, import/export and the daemon's sampling calls.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | service map (`?filter=`, `?node=NAME&type=TYPE` selects a node) |
//! | `GET /traces` | trace list (`?filter=`) |
//! | `GET /trace/{id}` | timeline of one trace |
//! | `GET /import` | import form |
//! | `GET /api/servicegraph` | map as a `GetServiceGraph` response (`?filter=`) |
//! | `GET /api/traces` | trace summaries (`?filter=`) |
//! | `GET /api/traces/{id}` | export: a `BatchGetTraces`-shaped document (`?download=1`) |
//! | `GET /api/timeline/{id}` | the timeline, critical path and bottleneck |
//! | `GET /api/stats` | intake and store counters |
//! | `POST /api/import` | import an export, a `BatchGetTraces` response, documents or datagrams |
//! | `POST /GetSamplingRules` | one sample-everything rule |
//! | `POST /SamplingTargets` | targets that keep sampling everything |

use serde_json::{json, Value};

use crate::filter::{self, Expr, TraceSummary};
use crate::http::{Request, Response};
use crate::intake::{self, Reject};
use crate::map::{trace_graph, ServiceMap, TraceGraph};
use crate::pages;
use crate::store::Assembled;
use crate::{now, State};

/// Largest request body read (imports).
pub const MAX_BODY: u64 = 32 * 1024 * 1024;

/// A response about to be sent.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }
    /// An HTML page.
    pub fn html(body: String) -> Reply {
        Reply::new(200, "text/html; charset=utf-8", body)
    }
    /// A JSON document.
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::new(
            status,
            "application/json",
            serde_json::to_vec_pretty(v).unwrap_or_default(),
        )
    }
    fn not_found(what: &str) -> Reply {
        Reply::new(
            404,
            "text/plain; charset=utf-8",
            format!("not found: {what}\n"),
        )
    }
}

/// Answers one request (the HTTP server calls this on the connection's thread).
pub fn handle(state: &State, req: &mut Request<'_>) -> Response {
    let reply = guarded(|| respond(state, req));
    let mut headers = vec![("Content-Type", reply.content_type.to_owned())];
    headers.extend(reply.headers);
    Response {
        status: reply.status,
        headers,
        body: reply.body,
    }
}

/// `f`'s reply, or a 500 if it panics: a bug in one page costs that request, and
/// nothing else. (The state's lock shrugs off poisoning.)
fn guarded(f: impl FnOnce() -> Reply) -> Reply {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| Reply {
        status: 500,
        content_type: "text/plain; charset=utf-8",
        body: b"internal error: see the console's standard error".to_vec(),
        headers: Vec::new(),
    })
}

/// Decodes `%XX` and `+` in a query component.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query component.
pub fn url_encode(s: &str) -> String {
    if s == "." || s == ".." {
        // A path segment the browser would resolve away (`/trace/..` is `/`).
        return s.replace('.', "%2E");
    }
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a request URL into the path and decoded query parameters.
pub fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    (url_decode(path), params)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every trace, assembled, with its summary and graph; filtered.
pub fn snapshot(state: &State, filter: &Expr) -> Vec<(Assembled, TraceSummary, TraceGraph)> {
    let assembled: Vec<Assembled> = {
        let inner = state.lock();
        inner.store.traces().map(|t| t.assemble()).collect()
    };
    assembled
        .into_iter()
        .filter_map(|a| {
            let g = trace_graph(&a);
            let s = TraceSummary::with_graph(&a, &g);
            filter.matches(&s).then_some((a, s, g))
        })
        .collect()
}

/// The service map of the traces matching a filter.
pub fn service_map(rows: &[(Assembled, TraceSummary, TraceGraph)]) -> ServiceMap {
    ServiceMap::build(rows.iter().map(|(a, _, g)| (a.id.as_str(), g.clone())))
}

/// Intake and store counters as JSON.
pub fn stats_json(state: &State) -> Value {
    let inner = state.lock();
    let limits = inner.store.limits();
    json!({
        "intake": inner.intake,
        "queue_dropped": state.queue_dropped.load(std::sync::atomic::Ordering::Relaxed),
        "store": inner.store.stats(),
        "traces": inner.store.len(),
        "bytes": inner.store.bytes(),
        "max_traces": limits.max_traces,
        "max_bytes": limits.max_bytes,
    })
}

/// The request's body, at most [`MAX_BODY`] bytes (a longer one is refused unread).
fn read_body(req: &mut Request<'_>) -> Result<Vec<u8>, Reply> {
    req.body(MAX_BODY).map_err(|r| {
        Reply::new(
            r.status,
            "text/plain; charset=utf-8",
            format!("{}\n", r.reason),
        )
    })
}

/// Handles one request.
pub fn respond(state: &State, req: &mut Request<'_>) -> Reply {
    let (path, params) = split_url(req.url());
    let method = req.method().to_owned();
    let filter_text = param(&params, "filter").unwrap_or("").to_owned();
    let parsed = filter::parse(&filter_text);
    // Split before decoding: an id in the path (a trace id is whatever a sender chose) may
    // hold a `/`, encoded as `%2F`.
    let raw_path = req.url().split('?').next().unwrap_or("");
    let decoded: Vec<String> = raw_path
        .trim_matches('/')
        .split('/')
        .map(url_decode)
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["GetSamplingRules"]) => sampling_rules(state),
        ("POST", ["SamplingTargets"]) => match read_body(req) {
            Ok(b) => sampling_targets(&b),
            Err(r) => r,
        },
        ("POST", ["api", "import"]) => match read_body(req) {
            Ok(b) => import(state, &b),
            Err(r) => r,
        },
        ("GET" | "HEAD", _) => {
            let expr = match (&parsed, segs.first()) {
                (Ok(e), _) => e.clone(),
                (Err(e), Some(&"api")) => {
                    return Reply::json(400, &json!({"error": format!("filter: {e}")}))
                }
                (Err(_), _) => Expr::All,
            };
            let filter_error = parsed.as_ref().err().cloned();
            match segs.as_slice() {
                [""] => {
                    let rows = snapshot(state, &expr);
                    let m = service_map(&rows);
                    let node = param(&params, "node").map(|n| {
                        (
                            n.to_owned(),
                            param(&params, "type").unwrap_or("").to_owned(),
                        )
                    });
                    Reply::html(pages::map_page(
                        &m,
                        &filter_text,
                        filter_error.as_deref(),
                        node.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                        &stats_json(state),
                    ))
                }
                ["traces"] => {
                    let rows = snapshot(state, &expr);
                    let list: Vec<&TraceSummary> = rows.iter().rev().map(|(_, s, _)| s).collect();
                    Reply::html(pages::traces_page(
                        &list,
                        &filter_text,
                        filter_error.as_deref(),
                        &stats_json(state),
                    ))
                }
                ["trace", id] => {
                    let tl = state.lock().store.get(id).map(crate::timeline::build);
                    match tl {
                        Some(tl) => Reply::html(pages::trace_page(&tl, &stats_json(state))),
                        None => Reply::not_found(id),
                    }
                }
                ["import"] => Reply::html(pages::import_page(&stats_json(state))),
                ["map.svg"] => {
                    let m = service_map(&snapshot(state, &expr));
                    Reply::new(200, "image/svg+xml", pages::map_svg(&m, &filter_text, None))
                }
                ["api", "servicegraph"] => Reply::json(
                    200,
                    &service_map(&snapshot(state, &expr)).to_service_graph(),
                ),
                ["api", "traces"] => {
                    let rows = snapshot(state, &expr);
                    let list: Vec<&TraceSummary> = rows.iter().rev().map(|(_, s, _)| s).collect();
                    Reply::json(200, &json!({"TraceSummaries": list}))
                }
                ["api", "traces", id] => {
                    let inner = state.lock();
                    let Some(t) = inner.store.get(id) else {
                        return Reply::not_found(id);
                    };
                    let v = export(t);
                    drop(inner);
                    let mut r = Reply::json(200, &v);
                    if param(&params, "download").is_some() {
                        // The id is whatever a sender put in `trace_id`: keep only characters
                        // that cannot end the quoted name or the header line.
                        let name: String = id
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        r.headers.push((
                            "Content-Disposition",
                            format!("attachment; filename=\"trace-{name}.json\""),
                        ));
                    }
                    r
                }
                ["api", "timeline", id] => {
                    let tl = state.lock().store.get(id).map(crate::timeline::build);
                    match tl {
                        Some(tl) => Reply::json(200, &json!(tl)),
                        None => Reply::not_found(id),
                    }
                }
                ["api", "stats"] => Reply::json(200, &stats_json(state)),
                _ => Reply::not_found(&path),
            }
        }
        _ => {
            // RFC 9110 §15.5.6: a 405 says which methods the resource takes.
            let allow = match segs.as_slice() {
                ["GetSamplingRules"] | ["SamplingTargets"] | ["api", "import"] => "POST",
                _ => "GET, HEAD",
            };
            let mut r = Reply::new(405, "text/plain", "method not allowed\n");
            r.headers.push(("Allow", allow.to_owned()));
            r
        }
    }
}

/// A trace in the shape of X-Ray's `BatchGetTraces` response.
pub fn export(t: &crate::store::Trace) -> Value {
    let (start, end) = t.assemble().span();
    json!({
        "Traces": [{
            "Id": t.id,
            "Duration": end - start,
            "LimitExceeded": false,
            // A late in-progress copy of a subsegment is not exported, as it is not drawn.
            "Segments": t.counted_docs().map(|d| json!({"Id": d.entity.id, "Document": d.raw})).collect::<Vec<_>>(),
        }],
        "UnprocessedTraceIds": [],
    })
}

/// How many rejected documents an import's answer names (the rest are counted).
const MAX_IMPORT_ERRORS: usize = 100;

/// Imports documents from an export, a `BatchGetTraces` response, a `{"Id","Segments"}`
/// trace, one document, an array of documents, or daemon datagrams (one per line pair).
pub fn import(state: &State, body: &[u8]) -> Reply {
    let mut docs: Vec<Vec<u8>> = Vec::new();
    // Values that cannot be documents (not objects), counted, not each reported.
    let mut not_documents = 0_usize;
    // A header is an object with a `format` and no `id`; a document may well have a
    // `format` somewhere inside (metadata, annotations).
    let is_header = |v: &Value| v.get("format").is_some() && v.get("id").is_none();
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            fn collect(v: &Value, docs: &mut Vec<Vec<u8>>, not_documents: &mut usize) {
                if let Some(ts) = v.get("Traces").and_then(Value::as_array) {
                    ts.iter().for_each(|t| collect(t, docs, not_documents));
                } else if let Some(segs) = v.get("Segments").and_then(Value::as_array) {
                    for s in segs {
                        match s.get("Document") {
                            Some(Value::String(d)) => docs.push(d.as_bytes().to_vec()),
                            Some(d) => docs.push(d.to_string().into_bytes()),
                            None => {}
                        }
                    }
                } else if let Some(a) = v.as_array() {
                    a.iter().for_each(|d| collect(d, docs, not_documents));
                } else if v.is_object() {
                    docs.push(v.to_string().into_bytes());
                } else {
                    *not_documents += 1;
                }
            }
            collect(&v, &mut docs, &mut not_documents);
        }
        Err(_) => {
            // Datagrams: a header, then a document, repeated; a document may span lines
            // (the Go SDK's examples are indented). Read as a stream of JSON values, the
            // bytes of each document kept as sent.
            let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
            let mut start = 0;
            let mut whole = true;
            while let Some(next) = stream.next() {
                let end = stream.byte_offset();
                match next {
                    Ok(v) if is_header(&v) => {}
                    Ok(_) => docs.push(body[start..end].to_vec()),
                    Err(_) => {
                        whole = false;
                        break;
                    }
                }
                start = end;
            }
            if !whole {
                // Not a stream of JSON values: line by line, each line reported.
                docs.clear();
                let text = String::from_utf8_lossy(body);
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if !serde_json::from_str::<Value>(line).is_ok_and(|v| is_header(&v)) {
                        docs.push(line.as_bytes().to_vec());
                    }
                }
            }
        }
    }
    let mut imported = 0;
    let mut rejected = not_documents;
    let mut errors = Vec::new();
    if not_documents > 0 {
        errors.push(format!(
            "{not_documents} value(s) that are not documents (objects)"
        ));
    }
    let mut traces = std::collections::BTreeSet::new();
    let mut inner = state.lock();
    for d in docs {
        // A panic on one document (a bug) costs that document, as on the UDP intake,
        // not the rest of the import with the store left half updated.
        let parsed = std::panic::catch_unwind(|| intake::parse_document(&d))
            .unwrap_or_else(|panic| Err((Reject::Failed, intake::panicked(&*panic))));
        let stored = parsed.and_then(|(raw, e)| {
            let trace = e.trace_id.clone().unwrap_or_default();
            intake::insert_guarded(&mut inner.store, raw, e)
                .map(|()| trace)
                .map_err(|e| (Reject::Failed, e))
        });
        match stored {
            Ok(trace) => {
                traces.insert(trace);
                imported += 1;
            }
            Err((r, detail)) => {
                rejected += 1;
                // The first few say why; an import of a million bad documents must not
                // answer with a million reasons.
                if errors.len() < MAX_IMPORT_ERRORS {
                    errors.push(format!("{}: {detail}", r.as_str()));
                }
            }
        }
    }
    // Those named (the values that are not documents, on one line of their own).
    let named = not_documents + errors.len() - usize::from(not_documents > 0);
    if rejected > named {
        errors.push(format!("… and {} more", rejected - named));
    }
    inner.intake.imported += imported;
    let status = if imported == 0 { 400 } else { 200 };
    Reply::json(
        status,
        &json!({"imported": imported, "rejected": rejected, "errors": errors, "traces": traces}),
    )
}

/// `POST /GetSamplingRules`: one rule that samples everything.
pub fn sampling_rules(state: &State) -> Reply {
    let t = state.started.floor();
    Reply::json(
        200,
        &json!({
            "NextToken": null,
            "SamplingRuleRecords": [{
                "CreatedAt": t,
                "ModifiedAt": t,
                "SamplingRule": {
                    "Attributes": {},
                    "FixedRate": 1.0,
                    "HTTPMethod": "*",
                    "Host": "*",
                    "Priority": 10000,
                    "ReservoirSize": 1,
                    "ResourceARN": "*",
                    "RuleARN": "arn:aws:xray:local:000000000000:sampling-rule/Default",
                    "RuleName": "Default",
                    "ServiceName": "*",
                    "ServiceType": "*",
                    "URLPath": "*",
                    "Version": 1
                }
            }]
        }),
    )
}

/// `POST /SamplingTargets`: every reported rule keeps sampling everything.
pub fn sampling_targets(body: &[u8]) -> Reply {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut names: Vec<String> = req
        .get("SamplingStatisticsDocuments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.get("RuleName").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    let ttl = (now() + 3600.0).floor();
    let docs: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"RuleName": n, "FixedRate": 1.0, "ReservoirQuota": 1000,
                   "ReservoirQuotaTTL": ttl, "Interval": 10})
        })
        .collect();
    Reply::json(
        200,
        &json!({"LastRuleModification": 0.0, "SamplingTargetDocuments": docs, "UnprocessedStatistics": []}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_page_is_a_500_not_a_dead_worker() {
        let reply = guarded(|| panic!("a bug"));
        assert_eq!(reply.status, 500);
        assert_eq!(guarded(|| Reply::not_found("x")).status, 404);
    }

    #[test]
    fn urls() {
        assert_eq!(url_decode("a+b%20c%22%zz%"), "a b c\"%zz%");
        let (p, q) = split_url("/traces?filter=service(%22x%22)&node=a+b");
        assert_eq!(p, "/traces");
        assert_eq!(param(&q, "filter"), Some("service(\"x\")"));
        assert_eq!(param(&q, "node"), Some("a b"));
        assert_eq!(
            url_decode(&url_encode("service(\"a b\") AND x")),
            "service(\"a b\") AND x"
        );
        // A trace id `..` stays a path segment of its own (`/trace/..` is `/`).
        assert_eq!(url_encode(".."), "%2E%2E");
        assert_eq!(url_encode("."), "%2E");
        assert_eq!(url_encode("a.b"), "a.b");
        assert_eq!(url_decode(&url_encode("..")), "..");
    }

    #[test]
    fn datagram_import_keeps_documents_that_mention_format() {
        let state = State::new(crate::store::Limits::default());
        let h = r#"{"format":"json","version":1}"#;
        let a = r#"{"trace_id":"1-a-1","id":"a","name":"n","start_time":1,"end_time":2,"metadata":{"default":{"format":"png"}}}"#;
        let b = r#"{"trace_id":"1-a-2","id":"b","name":"n","start_time":1,"end_time":2}"#;
        let r = import(&state, format!("{h}\n{a}\n{h}\n{b}\n").as_bytes());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["imported"], 2, "{v}");
        assert_eq!(v["rejected"], 0, "{v}");
        assert_eq!(state.lock().store.len(), 2);
    }

    #[test]
    fn a_panic_on_one_imported_document_costs_that_document() {
        let state = State::new(crate::store::Limits::default());
        let doc = |trace: u32, name: &str| json!({"trace_id":format!("1-a-{trace}"),"id":"a","name":name,"start_time":1,"end_time":2});
        let body = json!([doc(1, crate::store::tests::PANIC_MARKER), doc(2, "ok")]);
        let r = import(&state, body.to_string().as_bytes());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["imported"], 1, "{v}");
        assert_eq!(v["rejected"], 1, "{v}");
        let error = v["errors"][0].as_str().unwrap();
        assert!(
            error.ends_with("a bug: see its standard error): panicked: injected by a test"),
            "{error}"
        );
        let inner = state.lock();
        inner.store.check().unwrap();
        assert!(inner.store.get("1-a-2").is_some());
    }

    #[test]
    fn sampling_targets_echo_rules() {
        let r = sampling_targets(
            br#"{"SamplingStatisticsDocuments":[{"RuleName":"Default","ClientID":"x"}]}"#,
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["SamplingTargetDocuments"][0]["RuleName"], "Default");
        assert_eq!(v["SamplingTargetDocuments"][0]["FixedRate"], 1.0);
    }
}
