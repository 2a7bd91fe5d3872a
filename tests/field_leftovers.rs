//! What the field conventions leave over and keep as metadata (see
//! `tests/field_ledger.rs`): kept once, not beside the field that already
//! says it, and without the secrets the README promises never leave (an
//! ERROR event's text listed with events on, as its exception has it).
//! Each test was a finding of a review of the change that made leftovers
//! metadata: what the user writes, what is promised, what happened.

mod common;

use serde_json::Value;
use tracing::info_span;

/// [`common::capture_documents`]: the parsed documents.
fn run(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> Vec<Value> {
    common::capture_documents(configure, f).docs
}

fn docs_of(f: impl FnOnce()) -> Vec<Value> {
    run(|b| b, f)
}

/// The document of the root span named `name`.
fn segment_named<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["metadata"]["tracing"]["span_name"] == name)
        .unwrap_or_else(|| panic!("no {name} in\n{}", all(docs)))
}

fn all(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every string value (not key) anywhere in `docs` containing `marker`.
fn strings_with(docs: &[Value], marker: &str) -> Vec<String> {
    fn walk(v: &Value, marker: &str, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.contains(marker) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, marker, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, marker, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    docs.iter().for_each(|d| walk(d, marker, &mut out));
    out
}

fn found(docs: &[Value], marker: &str) -> bool {
    !strings_with(docs, marker).is_empty()
}

/// The (first) subsegment named `name`, at any depth.
fn sub<'d>(docs: &'d [Value], name: &str) -> &'d Value {
    fn walk<'d>(v: &'d Value, name: &str) -> Option<&'d Value> {
        v["subsegments"].as_array().and_then(|subs| {
            subs.iter()
                .find_map(|s| (s["name"] == name).then_some(s).or_else(|| walk(s, name)))
        })
    }
    docs.iter()
        .find_map(|d| walk(d, name))
        .unwrap_or_else(|| panic!("no subsegment {name} in\n{}", all(docs)))
}

fn tracing_metadata(entity: &Value) -> &serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    entity["metadata"]["tracing"]
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

// ---------------------------------------------------------------------------
// Secrets.

/// A host given with user info (`server.address = "app:s3cr3t@db.internal"`)
/// names a call, makes a URL and `sql.url`, and stays metadata where
/// unused, never with the user info. It went out whole in all three (a
/// review found it).
#[test]
fn a_hosts_user_info_never_leaves() {
    let docs = docs_of(|| {
        info_span!("req").in_scope(|| {
            info_span!(
                "call",
                "otel.kind" = "client",
                "server.address" = "app:s3cr3t@api.internal"
            )
            .in_scope(|| {});
            info_span!(
                "served",
                "http.request.method" = "GET",
                "url.path" = "/x",
                "http.host" = "app:s3cr3t@web.internal",
            )
            .in_scope(|| {});
            info_span!(
                "query",
                "db.system" = "postgresql",
                "db.name" = "orders",
                "server.address" = "app:s3cr3t@db.internal",
            )
            .in_scope(|| {});
            info_span!("plain", "net.peer.name" = "app:s3cr3t@peer.internal").in_scope(|| {});
        })
    });
    assert!(!found(&docs, "s3cr3t"), "{}", all(&docs));
    assert_eq!(sub(&docs, "api.internal")["namespace"], "remote");
    assert_eq!(
        sub(&docs, "served")["http"]["request"]["url"],
        "http://web.internal/x"
    );
    assert_eq!(
        sub(&docs, "orders@db.internal")["sql"]["url"],
        "db.internal/orders"
    );
}

/// Fields indexed by name are annotations of what may leave of them: a URL
/// without its query, never a URL's query or a query's text (they were
/// indexed whole).
#[test]
fn indexed_fields_keep_no_secrets() {
    let docs = run(
        |b| {
            b.with_indexed_fields([
                "url.full",
                "url.query",
                "db.statement",
                "db.connection_string",
            ])
        },
        || {
            info_span!(
                "req",
                "url.full" = "https://app:pw1@shop.example/cart?token=tok1",
                "url.query" = "token=tok2",
                "db.system" = "postgresql",
                "db.statement" = "SELECT 'lit3'",
                "db.connection_string" = "postgres://app:pw4@db/orders",
            )
            .in_scope(|| {});
        },
    );
    for secret in ["pw1", "tok1", "tok2", "lit3", "pw4"] {
        assert!(!found(&docs, secret), "{secret}: {}", all(&docs));
    }
    // A database call with no traced parent: the segment around it.
    let call = &docs[0]["subsegments"][0];
    assert_eq!(
        call["annotations"]["url_full"], "https://shop.example/cart",
        "{call:#}"
    );
    assert_eq!(
        call["annotations"]["db_connection_string"],
        "postgres://app@db/orders"
    );
}

// ---------------------------------------------------------------------------

/// What `#[instrument(err)]` logs on failure.
#[tracing::instrument(err)]
fn fetch_items() -> Result<(), String> {
    Err("error sending request for url (https://api.example.com/items?token=zqSECRET_ERR)".into())
}

/// FINDING (secret leak, high). The user turns on `with_events(true)` and
/// has the everyday `#[instrument(err)]` (which logs `error = %e` at ERROR)
/// or an `error!` whose text quotes the URL it failed on, as HTTP clients'
/// errors do. README: ERROR event → "`cause.exceptions` ... (every message
/// without a URL's user info, query or fragment, which an error's text
/// often quotes ...)"; "error texts without URL secrets". The exception is
/// scrubbed, but the same text now also leaves raw in
/// `metadata.tracing.events` (`error` and `message` of the ERROR event:
/// the token, the password). Before this change ERROR events were not
/// listed, so this text never left unscrubbed.
/// Cause: src/layer.rs `record_event` now pushes every ERROR event's
/// fields into the events list and scrubs only error *values*
/// (`without_url_secrets` on `errors`), not the message or a `%e` text.
#[test]
fn error_event_text_listed_with_events_on_keeps_no_url_secrets() {
    let docs = run(
        |b| b.with_events(true),
        || {
            info_span!("job").in_scope(|| {
                let _ = fetch_items();
                tracing::error!("GET https://user:zqSECRET_PW@h.example/x?sig=zqSECRET_SIG failed");
            });
        },
    );
    let leaked: Vec<String> = strings_with(&docs, "zqSECRET");
    assert!(
        leaked.is_empty(),
        "secrets sent: {leaked:#?}\nin\n{}",
        all(&docs)
    );
}

// ---------------------------------------------------------------------------
// Exceptions: `type_used` in src/assemble.rs.
// ---------------------------------------------------------------------------

/// FINDING (noise / sent twice, low). A span records its failure as
/// `exception.message` (tracing-actix-web's root span, a client span) and
/// an ERROR event with the same text is logged inside it (a retry, a
/// handler's log). src/assemble.rs promises "not lost, nor repeated": the
/// exception is there once, but the reviewed commit now also copies the
/// same message into `metadata.tracing["exception.message"]` (it did not
/// before).
/// Cause: src/assemble.rs `entity()`: on a repeated message, an exception
/// recorded from an event or value always has a type (`error`, the
/// field's name, `source`), so `same.kind.as_deref() != applied.error_type`
/// holds (even with no `error.type` at all, `Some("error") != None`),
/// `type_used` becomes false, and `unused_message` is put as metadata
/// although the exception carries it.
#[test]
fn a_repeated_exception_message_is_not_sent_again_as_metadata() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!("call", "exception.message" = "zq_boom_once")
                .in_scope(|| tracing::error!("zq_boom_once"));
        })
    });
    let copies = strings_with(&docs, "zq_boom_once");
    assert_eq!(
        copies.len(),
        1,
        "the message is sent {} times:\n{}",
        copies.len(),
        all(&docs)
    );
}

/// FINDING (wrong place, low). The same span with an `exception.type` too
/// (`exception.type = "Timeout"`, `exception.message = msg`, and the same
/// `msg` logged at ERROR). The commit says "a repeated exception message
/// gets the type", and the code says "The type names the exception already
/// there"; README: "the type and the status message stay metadata unless
/// the exception's own text (`exception.message`) takes them". What
/// happens: the exception keeps the type `error`, and `Timeout` goes to
/// metadata (with the message copied there too, see above).
/// Cause: the `same.kind.is_none()` branch in src/assemble.rs can never
/// run: every recorded exception is built with `kind: Some(..)`.
#[test]
fn a_repeated_exception_message_takes_its_type() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "call",
                "exception.type" = "zqTimeout",
                "exception.message" = "attempt timed out"
            )
            .in_scope(|| tracing::error!("attempt timed out"));
        })
    });
    let call = sub(&docs, "call");
    let exceptions = call["cause"]["exceptions"].as_array().unwrap();
    let typed = exceptions
        .iter()
        .any(|e| e["message"] == "attempt timed out" && e["type"] == "zqTimeout");
    assert!(typed, "the exception has no type zqTimeout:\n{call:#}");
}

// ---------------------------------------------------------------------------
// put_own (src/fields/mod.rs).
// ---------------------------------------------------------------------------

/// FINDING (value lost, low). A span with its own fields `events` and
/// `field.events` (with events on), a root with `span_name` and
/// `field.span_name`. README: "a span's own field named `events` is kept
/// beside them as `field.events`", "a root's own field named `span_name`
/// is kept beside it as `field.span_name`"; and "Any other value you
/// record is sent somewhere". It was: the user's `field.events` /
/// `field.span_name` value is overwritten by the moved `events` /
/// `span_name` value, silently.
/// Cause: `put_own` inserts `field.{key}` without checking that key is
/// free (events.rs renames again on collision; `put_own` does not).
#[test]
fn own_keys_moved_aside_do_not_overwrite_a_field_of_that_name() {
    let docs = run(
        |b| b.with_events(true),
        || {
            info_span!("root", span_name = "zqA", "field.span_name" = "zqB").in_scope(|| {
                info_span!("child", events = "zqC", "field.events" = "zqD")
                    .in_scope(|| tracing::info!("hi"));
            })
        },
    );
    let lost: Vec<&str> = ["zqA", "zqB", "zqC", "zqD"]
        .into_iter()
        .filter(|m| !found(&docs, m))
        .collect();
    assert!(lost.is_empty(), "values lost: {lost:?} in\n{}", all(&docs));
}

// ---------------------------------------------------------------------------
// same_path / displaced values: sent twice.
// ---------------------------------------------------------------------------

/// FINDING (noise, low). An HTTP span whose `http.url` is the request
/// target itself (origin-form, as some old OpenTelemetry instrumentations
/// and proxies record it) and whose `http.target` is the same path.
/// README: "a ... `url.path` that the URL does not already hold" stays
/// metadata: this one is the URL. It was: `http.target` is sent
/// again as metadata (before the change it was not).
/// Cause: `same_path(url, path)` compares the path with what follows the
/// URL's authority; a relative URL has no authority, so its "own path"
/// is taken as `/` and `same_path("/x/y", "/x/y")` is false.
#[test]
fn a_relative_url_and_its_own_path_are_not_sent_twice() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "req",
                "http.method" = "GET",
                "http.url" = "/zq/orders",
                "http.target" = "/zq/orders"
            )
            .in_scope(|| {});
        })
    });
    let req = sub(&docs, "req");
    assert_eq!(req["http"]["request"]["url"], "/zq/orders", "{req:#}");
    assert_eq!(
        strings_with(&docs, "/zq/orders").len(),
        1,
        "the path is sent twice:\n{req:#}"
    );
}

/// FINDING (noise, low). Two names for one X-Ray field holding the same
/// value in two integer types: `http.status_code = 200` (an `i32` literal,
/// recorded as i64) beside `http.response.status_code = status.as_u16()`
/// (recorded as u64), as code emitting both the old and new semantic
/// conventions does. README: "the other value of two names for one X-Ray
/// field ... stays metadata": there is no other value here. It was:
/// `metadata.tracing["http.status_code"] = 200` beside
/// `http.response.status = 200`.
/// Cause: `Conventions::take` compares the displaced value with
/// `FieldValue`'s `PartialEq`, for which `I64(200) != U64(200)` (and
/// `"client" != "CLIENT"` for `otel.kind`/`span.kind`).
#[test]
fn the_same_status_under_two_names_is_not_sent_twice() {
    let status: u16 = 200;
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "call",
                "otel.kind" = "client",
                "url.full" = "https://h.example/x",
                "http.status_code" = 200,
                "http.response.status_code" = status
            )
            .in_scope(|| {});
        })
    });
    let call = sub(&docs, "h.example");
    assert_eq!(call["http"]["response"]["status"], 200, "{call:#}");
    let meta = tracing_metadata(call);
    assert!(
        !meta.contains_key("http.status_code") && !meta.contains_key("http.response.status_code"),
        "the status is sent twice:\n{call:#}"
    );
}

/// FINDING (noise / sent twice, low). A client call made outside any
/// traced work (a background job's reqwest-tracing span: `otel.kind =
/// client`, `otel.name = "GET"`, `url.full`). The segment around it takes
/// the span's name (`metadata.tracing.span_name = "GET"`), the call is
/// named after its host. It was: the subsegment now also carries
/// `metadata.tracing["otel.name"] = "GET"` (it did not before): the same
/// name in both documents.
/// Cause: `Conventions::take_otel_name` keeps `otel.name` as metadata
/// whenever the host outranks it, without knowing that
/// `caller_segment` (src/assemble.rs) already gave it to the segment.
#[test]
fn a_root_calls_otel_name_is_not_sent_twice() {
    let docs = docs_of(|| {
        info_span!(
            "HTTP",
            "otel.kind" = "client",
            "otel.name" = "zqGET",
            "url.full" = "https://h.example/x",
            "http.request.method" = "GET",
            "http.response.status_code" = 200
        )
        .in_scope(|| {});
    });
    assert_eq!(
        strings_with(&docs, "zqGET").len(),
        1,
        "otel.name sent twice:\n{}",
        all(&docs)
    );
}

/// FINDING (noise, low). A named remote call whose instrumentation
/// declares `peer.service` but records it empty (`xray.name = "n"`,
/// `peer.service = ""`). README: "A field below given an empty string is
/// left out, as X-Ray leaves out empty fields". It was:
/// `metadata.tracing["peer.service"] = ""` (new: before, the empty value
/// was taken and dropped).
/// Cause: `Conventions::apply` now takes `peer.service` only when it
/// names the call; outranked, an empty one stays in its slot and
/// `leftovers` sends it.
#[test]
fn an_outranked_empty_peer_service_is_left_out() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "call",
                "otel.kind" = "client",
                "xray.name" = "n",
                "peer.service" = ""
            )
            .in_scope(|| {});
        })
    });
    let call = sub(&docs, "n");
    assert!(
        !tracing_metadata(call).contains_key("peer.service"),
        "empty peer.service sent:\n{call:#}"
    );
}

/// FINDING (README contradicted, low; the behaviour predates the change,
/// the promise is new). A reqwest-tracing client span: `url.full =
/// "https://api.example.com/v1/x"`, `server.address = "api.example.com"`,
/// `server.port = 443`, `url.scheme = "https"`. The new README text: "a
/// `server.address`, `server.port` or `url.path` that the URL does not
/// already hold" stays metadata (so one the URL holds does not). What
/// happens: `server.port` (and `url.scheme`) are sent as metadata beside
/// the URL that holds them, on every such call.
/// Cause: in `Conventions::apply`'s `url.full` branch, `server.address`
/// and the path are compared with the URL (`same_host`, `same_path`), but
/// the port and scheme slots are never read.
#[test]
fn a_server_port_the_full_url_holds_is_not_sent_again() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "HTTP",
                "otel.kind" = "client",
                "url.full" = "http://api.example.com:8080/v1/x",
                "server.address" = "api.example.com",
                "server.port" = 8080,
                "http.request.method" = "GET"
            )
            .in_scope(|| {});
        })
    });
    let call = sub(&docs, "api.example.com");
    assert!(
        !tracing_metadata(call).contains_key("server.port"),
        "server.port 8080 sent beside http://api.example.com:8080/v1/x:\n{call:#}"
    );
}

/// README, the `annotation.KEY` row, `annotation.KEY` row: "... or a key of no usable
/// character (`annotation.-`): to `metadata.default`, under the field's own
/// key". What happens: `annotation.- = 7` is sent as the indexed annotation
/// `annotations._ = 7`, and a real `annotation._ = 8` on the same span is
/// then the one moved to `metadata.default` (it lost its own key to a
/// field that has none).
/// (`sanitize_annotation_key` gave `_` for `-`: only an empty key had none.)
#[test]
fn an_annotation_key_of_no_usable_character_goes_to_metadata_default() {
    let d = docs_of(|| {
        info_span!("r", "annotation.-" = 7_i64, "annotation._" = 8_i64).in_scope(|| {});
    });
    let seg = &d[0];
    assert_eq!(
        seg["metadata"]["default"]["-"], 7,
        "`annotation.-` not in metadata.default under `-`:\n{seg:#}"
    );
    assert_eq!(
        seg["annotations"]["_"], 8,
        "`annotation._` lost its key to `annotation.-`:\n{seg:#}"
    );
}

/// README, "Limits": "a field recorded again (`span.record` in a loop)
/// replaces its value instead of adding one, and an error field its
/// exception". That held only while the field kept its kind: an `error`
/// field recorded first as a `&dyn Error` and then as text (a retry loop
/// recording the last attempt's failure with `display(..)`), or the
/// reverse, kept both values. The segment reported as its exception (and
/// `fault`) an error the span no longer held, beside the field's current
/// text; or the superseded text stayed as `metadata.tracing.error` beside
/// the new exception. Found by an audit of the README's claims.
#[test]
fn an_error_field_recorded_again_as_another_kind_replaces_its_old_value() {
    let c = common::capture_documents(
        |b| b,
        || {
            let span = tracing::info_span!("error_then_text", error = tracing::field::Empty);
            let first = common::Failure("attempt 1 failed");
            span.record("error", &first as &(dyn std::error::Error + 'static));
            span.record("error", tracing::field::display("attempt 2 failed"));
            drop(span);

            let span = tracing::info_span!("text_then_error", error = tracing::field::Empty);
            span.record("error", tracing::field::display("attempt 1 failed"));
            let second = common::Failure("attempt 2 failed");
            span.record("error", &second as &(dyn std::error::Error + 'static));
            drop(span);
        },
    );
    let mut problems = Vec::new();
    for name in ["error_then_text", "text_then_error"] {
        let segment = common::node(&c.docs, name);
        let text = segment.to_string();
        if text.contains("attempt 1 failed") {
            problems.push(format!(
                "{name}: the replaced value is still sent: {segment}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// README, "How spans map to X-Ray": only "a `server.address`,
/// `server.port` or `url.path` that the URL does not already hold" stays
/// metadata. A database span as sqlx-style instrumentation records it
/// (`db.system`, `db.name`, `server.address`, `server.port` and a
/// connection URL naming that very host and port) sent the address and the
/// port again as metadata beside the `sql.url` holding them, where an HTTP
/// call whose `url.full` holds them sends neither. Found by a user's hunt.
#[test]
fn a_db_connection_url_holding_the_host_and_port_leaves_none_of_them_as_metadata() {
    let c = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("root").in_scope(|| {
                tracing::info_span!(
                    "http",
                    url.full = "https://api.example.com:8443/v1/x",
                    server.address = "api.example.com",
                    server.port = 8443,
                    otel.kind = "client"
                )
                .in_scope(|| {});
                tracing::info_span!(
                    "db",
                    db.system = "postgresql",
                    db.connection_string = "postgres://app@db.internal:5432/orders",
                    db.name = "orders",
                    server.address = "db.internal",
                    server.port = 5432
                )
                .in_scope(|| {});
            });
        },
    );
    let http = common::node(&c.docs, "api.example.com");
    // The HTTP call: the URL holds host and port, neither is sent again.
    assert!(http["metadata"].is_null(), "{http:#}");

    let db = common::node(&c.docs, "orders@db.internal");
    assert_eq!(db["sql"]["url"], "postgres://app@db.internal:5432/orders");
    assert!(
        db["metadata"]["tracing"]["server.address"].is_null()
            && db["metadata"]["tracing"]["server.port"].is_null(),
        "host and port the sql.url already holds were sent again as metadata: {db:#}"
    );
}

/// A database reached over HTTP (Elasticsearch, OpenSearch, ClickHouse,
/// CouchDB: `db.system` plus `http.request.method` and `url.path`) whose
/// connection URL names its host and port: a first version of the change
/// above took them for the database before the HTTP request's URL was
/// built of them, and the URL sent was the bare path (found by a review).
#[test]
fn a_db_connection_url_does_not_take_the_host_from_the_http_request_url() {
    let c = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("root").in_scope(|| {
                tracing::info_span!(
                    "search",
                    db.system = "elasticsearch",
                    db.connection_string = "http://es.internal:9200",
                    server.address = "es.internal",
                    server.port = 9200,
                    http.request.method = "GET",
                    url.path = "/orders/_search"
                )
                .in_scope(|| {});
            });
        },
    );
    let search = common::nodes(&c.docs)
        .into_iter()
        .find(|n| n["metadata"]["tracing"]["db.system"] == "elasticsearch")
        .expect("the search");
    assert_eq!(
        search["http"]["request"]["url"], "http://es.internal:9200/orders/_search",
        "the request's URL lost its host and port: {search:#}"
    );
}

/// The span of a database reached over HTTP (Elasticsearch, OpenSearch),
/// as its client instruments it: `db.system`, the connection URL, the
/// request's method and path, and whatever of `server.*` `fields` adds.
fn search_node(emit: impl FnOnce()) -> Value {
    let c = common::capture_documents(
        |b| b,
        || {
            tracing::info_span!("root").in_scope(emit);
        },
    );
    common::nodes(&c.docs)
        .into_iter()
        .find(|n| n["metadata"]["tracing"]["db.system"] == "elasticsearch")
        .expect("the search")
        .clone()
}

/// A database reached over HTTPS (Elastic Cloud listens on 9243, with TLS)
/// whose connection URL says `https://…:9243`: the request URL was built
/// from `server.address` and `server.port` with a guessed scheme, `http`
/// (any port but 443), a URL the span contradicts. The connection URL
/// names the origin (found by a review).
#[test]
fn db_over_https_request_url_keeps_the_connection_urls_scheme() {
    let search = search_node(|| {
        tracing::info_span!(
            "search",
            db.system = "elasticsearch",
            db.connection_string = "https://es.example.com:9243",
            server.address = "es.example.com",
            server.port = 9243,
            http.request.method = "GET",
            url.path = "/orders/_search"
        )
        .in_scope(|| {});
    });
    assert_eq!(
        search["http"]["request"]["url"], "https://es.example.com:9243/orders/_search",
        "the request URL contradicts the database's https connection URL: {search:#}"
    );
}

/// The same span without `server.port` (the port is only in the
/// connection URL, `http://es.internal:9200`): the request URL was built
/// from `server.address` alone, `http://es.internal/orders/_search`, port
/// 80, while the span says 9200.
#[test]
fn db_over_http_request_url_keeps_the_connection_urls_port() {
    let search = search_node(|| {
        tracing::info_span!(
            "search",
            db.system = "elasticsearch",
            db.connection_string = "http://es.internal:9200",
            server.address = "es.internal",
            http.request.method = "GET",
            url.path = "/orders/_search"
        )
        .in_scope(|| {});
    });
    assert_eq!(
        search["http"]["request"]["url"], "http://es.internal:9200/orders/_search",
        "the request URL names port 80, the connection URL 9200: {search:#}"
    );
}

/// Found by a hunt of the field conventions: with `with_sql_queries(true)`,
/// a query's text on a span without `db.system` (a hand-written span), or
/// the other of `db.statement` and `db.query.text` on a database span, was
/// sent nowhere: the leftovers treated a query's text as never sent,
/// whatever the option. Only "a query's text without
/// `with_sql_queries(true)`" is never sent.
#[test]
fn with_sql_queries_a_query_text_is_never_dropped_without_a_word() {
    let docs = run(
        |b| b.with_sql_queries(true),
        || {
            info_span!("request").in_scope(|| {
                info_span!("load_orders", db.statement = "SELECT id FROM orders_1").in_scope(|| {});
                info_span!(
                    "query",
                    db.system = "postgresql",
                    db.statement = "SELECT id FROM orders_2",
                    db.query.text = "SELECT id FROM orders_3",
                )
                .in_scope(|| {});
            });
        },
    );
    for text in [
        "SELECT id FROM orders_1",
        "SELECT id FROM orders_2",
        "SELECT id FROM orders_3",
    ] {
        assert!(
            found(&docs, text),
            "{text:?} was sent nowhere:\n{}",
            all(&docs)
        );
    }
    // Without the option, none of them leaves.
    let docs = run(
        |b| b.with_sql_queries(false),
        || {
            info_span!("request").in_scope(|| {
                info_span!("load_orders", db.statement = "SELECT id FROM orders_1").in_scope(|| {});
            });
        },
    );
    assert!(!found(&docs, "SELECT"), "{}", all(&docs));
}

/// Found by a hunt of the field conventions: `xray.traced = true` on a call
/// without an HTTP field (a gRPC call named by its host) stayed metadata
/// instead of being `http.request.traced`, which the README gives
/// subsegments: the flag was only read with an HTTP field beside it.
#[test]
fn xray_traced_on_a_call_without_http_fields_is_http_request_traced() {
    let docs = docs_of(|| {
        info_span!("request").in_scope(|| {
            info_span!(
                "call",
                otel.kind = "client",
                server.address = "inventory",
                xray.traced = true
            )
            .in_scope(|| {});
        });
    });
    let call = common::node(&docs, "inventory");
    assert_eq!(call["namespace"], "remote", "{call}");
    assert_eq!(call["http"]["request"]["traced"], true, "{call}");
    assert!(
        !tracing_metadata(call).contains_key("xray.traced"),
        "{call}"
    );
}

/// Found by a hunt of the field conventions: every `i128`/`u128` field was
/// written as a JSON string (`"elapsed_ms":"42"` for
/// `Duration::as_millis()`), although only numbers beyond 64 bits, which
/// most JSON readers cannot hold exactly, are meant to be. "Any other field
/// | `metadata.tracing.FIELD`, with the type `tracing` gave it."
#[test]
fn a_128_bit_integer_that_fits_64_bits_is_a_number() {
    let elapsed = std::time::Duration::from_millis(42);
    let docs = docs_of(|| {
        info_span!("request", total_ms = elapsed.as_millis()).in_scope(|| {
            info_span!(
                "load",
                elapsed_ms = elapsed.as_millis(),
                delta = -7_i128,
                huge = u128::MAX
            )
            .in_scope(|| {});
        });
    });
    assert_eq!(
        tracing_metadata(&docs[0])["total_ms"],
        serde_json::json!(42),
        "{}",
        docs[0]
    );
    let load = common::node(&docs, "load");
    let meta = tracing_metadata(load);
    assert_eq!(meta["elapsed_ms"], serde_json::json!(42), "{load}");
    assert_eq!(meta["delta"], serde_json::json!(-7), "{load}");
    // Beyond 64 bits: exact, as a string.
    assert_eq!(
        meta["huge"],
        serde_json::json!(u128::MAX.to_string()),
        "{load}"
    );
}

/// Found by a hunt of the field conventions: a path recorded with `?` from
/// an `Option` made `http.request.url` `http://orders.example.com/None`
/// (for `None`) or `Some("/orders/7` (for `Some("/orders/7?page=2")`); the
/// README promises the unwrapping, and that `None` is no URL, for URL
/// fields. The sampler's path is the path alone too.
#[test]
fn an_option_path_recorded_with_debug_is_the_path_alone() {
    let none: Option<String> = None;
    let some: Option<String> = Some("/orders/7?page=2".to_owned());
    let docs = docs_of(|| {
        info_span!(
            "with_host",
            http.request.method = "GET",
            server.address = "orders.example.com",
            url.path = ?none
        )
        .in_scope(|| {});
        info_span!("without_host", http.request.method = "GET", http.target = ?some)
            .in_scope(|| {});
    });
    let url_of = |name: &str| {
        segment_named(&docs, name)["http"]["request"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(url_of("with_host"), "http://orders.example.com/");
    assert_eq!(url_of("without_host"), "/orders/7");
    assert!(!found(&docs, "None"), "{}", all(&docs));
}

/// Found by a hunt of the field conventions: a call naming its server under
/// the old and the new names (`net.peer.name`/`net.peer.port` and
/// `server.address`/`server.port`, as OpenTelemetry's `http/dup` mode
/// records it) sent `server.address` and `server.port` again as metadata,
/// although the URL (or `sql.url`) holds them.
#[test]
fn a_server_named_under_old_and_new_names_is_not_sent_again_as_metadata() {
    let docs = docs_of(|| {
        info_span!("request").in_scope(|| {
            info_span!(
                "stock",
                otel.kind = "client",
                http.request.method = "GET",
                url.full = "http://inventory.internal:8080/stock/7",
                server.address = "inventory.internal",
                server.port = 8080,
                net.peer.name = "inventory.internal",
                net.peer.port = 8080,
            )
            .in_scope(|| {});
            info_span!(
                "orders",
                db.system = "postgresql",
                db.name = "orders",
                server.address = "db.internal",
                server.port = 5432,
                net.peer.name = "db.internal",
                net.peer.port = 5432,
            )
            .in_scope(|| {});
        });
    });
    let http = common::node(&docs, "inventory.internal");
    assert_eq!(
        http["http"]["request"]["url"],
        "http://inventory.internal:8080/stock/7"
    );
    let db = common::node(&docs, "orders@db.internal");
    assert_eq!(db["sql"]["url"], "db.internal:5432/orders");
    for call in [http, db] {
        let meta = tracing_metadata(call);
        for key in [
            "server.address",
            "server.port",
            "net.peer.name",
            "net.peer.port",
        ] {
            assert!(!meta.contains_key(key), "{key} sent again: {call}");
        }
    }
    // Different values under the two names: the other stays visible.
    let docs = docs_of(|| {
        info_span!("request").in_scope(|| {
            info_span!(
                "stock",
                otel.kind = "client",
                http.request.method = "GET",
                url.path = "/stock/7",
                server.address = "inventory.internal",
                net.peer.name = "10.0.0.7",
            )
            .in_scope(|| {});
        });
    });
    assert!(
        found(&docs, "inventory.internal") && found(&docs, "10.0.0.7"),
        "{}",
        all(&docs)
    );
}

/// Raised by a hunt of the field conventions: a connection string recorded
/// with `?` from an `Option` that holds none (`db.connection_string =
/// ?conn`) was sent as the text `None`, a URL no database has.
#[test]
fn an_absent_optional_connection_string_is_none() {
    let none: Option<String> = None;
    let docs = docs_of(|| {
        info_span!("request").in_scope(|| {
            info_span!("query", db.system = "postgresql", db.name = "orders", db.connection_string = ?none)
                .in_scope(|| {});
        });
    });
    assert!(!found(&docs, "None"), "{}", all(&docs));
    assert_eq!(common::node(&docs, "orders")["sql"]["url"], "orders");
}

/// Found by a review of this stop's fixes. The user records the request's path with `?` from an `Option<String>`
/// (`url.path = ?path`, `http.target = ?target`) beside `url.full`, as
/// 38211be's own test does without `url.full`. README: "`None` is no URL (a
/// path too: `url.path = ?path` gives the path alone, or none)", and "a
/// `server.address`, `server.port` or `url.path` that the URL does not
/// already hold" stays metadata (only such a one). Expected: the path the
/// URL holds is not sent again; another path is metadata as the path alone
/// (`/orders/{id}`). Instead 38211be unwraps the `?` text only where the
/// path makes the URL (src/fields/conventions.rs:2226): `same_path`
/// (conventions.rs:464, called at :2218) compares the wrapped text, so the
/// URL's own path is sent again as `Some("/orders/7")`, and the leftover
/// goes through `sendable_text` -> `plain_url` (conventions.rs:403), which
/// cuts the wrapped text at its `?`: `Some("/orders/{id}` (the very
/// garbling the commit says it fixed).
#[test]
fn an_option_path_recorded_with_debug_beside_a_full_url_is_the_path_alone() {
    let same: Option<String> = Some("/orders/7".to_owned());
    let other: Option<String> = Some("/orders/{id}?page=2".to_owned());
    let docs = docs_of(|| {
        info_span!(
            "same",
            http.request.method = "GET",
            url.full = "https://h.example/orders/7",
            url.path = ?same
        )
        .in_scope(|| {});
        info_span!(
            "other",
            http.request.method = "GET",
            url.full = "https://h.example/orders/7",
            http.target = ?other
        )
        .in_scope(|| {});
    });
    let same = segment_named(&docs, "same");
    assert_eq!(same["http"]["request"]["url"], "https://h.example/orders/7");
    assert!(
        !tracing_metadata(same).contains_key("url.path"),
        "the path the URL holds was sent again: {}",
        same["metadata"]
    );
    let other = segment_named(&docs, "other");
    assert_eq!(
        tracing_metadata(other).get("http.target"),
        Some(&Value::from("/orders/{id}")),
        "the other path is not the path alone: {}",
        other["metadata"]
    );
}

/// Found by a review of this stop's fixes. The same `?Option` host in the document: `server.address = ?host`
/// (absent) with `url.path = "/orders"`. 20c2859 and 38211be made an absent
/// `?Option` none for `url.*`, `db.connection_string` and `messaging.url`
/// ("`None` is no URL"), but not for the host names that build the URL.
/// Expected: `http.request.url` is `/orders`. Instead the text `None` is
/// taken as the host (src/fields/conventions.rs:1792-1805 lists the absent
/// keys without `server.address`/`http.host`/`net.host.name`): the segment
/// claims the URL `http://None/orders`.
#[test]
fn an_absent_host_recorded_with_debug_makes_no_url() {
    let none: Option<&str> = None;
    let docs = docs_of(|| {
        info_span!(
            "request",
            http.request.method = "GET",
            url.path = "/orders",
            server.address = ?none
        )
        .in_scope(|| {});
    });
    assert_eq!(
        docs[0]["http"]["request"]["url"],
        "/orders",
        "{}",
        all(&docs)
    );
}

/// Found by a review of this stop's fixes. The user records a 128-bit integer that 64 bits hold (`i128` 2^63, as
/// an unsigned 64-bit count converted to `i128` gives). 38211be: "every
/// i128/u128 was a JSON string: those 64 bits hold are numbers (both the
/// worker's writer and the serde path)"; README: "any other field |
/// `metadata.tracing.FIELD`, with the type `tracing` gave it". Expected:
/// the number, as the same value recorded as `u128` (or `u64`) is sent.
/// Instead an `i128` between 2^63 and 2^64-1 is tried as an `i64` only
/// (src/json.rs:172 `wide_signed`, and src/model.rs:660 alike): it is the
/// string "9223372036854775808", while the same value as a `u128` is a
/// number.
#[test]
fn an_i128_that_64_bits_hold_is_a_number_as_the_same_u128_is() {
    let big: i128 = 1 << 63;
    let docs = docs_of(|| {
        info_span!("request", signed = big, unsigned = big as u128).in_scope(|| {});
    });
    let meta = tracing_metadata(&docs[0]);
    assert_eq!(
        meta["unsigned"],
        serde_json::json!(9_223_372_036_854_775_808_u64)
    );
    assert_eq!(
        meta["signed"], meta["unsigned"],
        "the same value is a string as an i128: {}",
        docs[0]["metadata"]
    );
}

/// `xray.trace_header`, the header the layer continues a trace from, is
/// never sent, on any span, indexed or not. Before the fix, with
/// `with_indexed_fields(["xray.trace_header"])`, a child's header (another
/// trace's ids) was sent as the annotation `xray_trace_header`. (Found by
/// a hunt of paths that skip an invariant others keep.)
#[test]
fn an_indexed_trace_header_field_is_never_sent() {
    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let docs = run(
        |b| b.with_indexed_fields(["xray.trace_header"]),
        || {
            info_span!("request").in_scope(|| {
                info_span!("inner", xray.trace_header = HEADER).in_scope(|| {});
            });
        },
    );
    assert!(!found(&docs, "bd862e3fe1be46a994272793"), "{}", all(&docs));
    assert_eq!(sub(&docs, "inner")["name"], "inner");
}
