//! A ledger of field values: every value a span (or, with
//! `with_events(true)`, an event) records must reach the documents sent
//! (an annotation, metadata, the `http`/`sql`/`aws`/`cause` blocks, the
//! name, `user`, `namespace`, the flags), or be dropped for a reason the
//! README documents. Each test writes values with unique markers
//! (`zq...`) and looks for every marker in the documents.
//!
//! Most tests were findings of a black-box hunt, each a silent loss: what
//! the user writes, what the README promises, what happened before its fix
//! ("It was:") and where it was. The others guard neighbouring cases.

mod common;

use serde_json::Value;
use tracing::{Level, info_span};

/// [`common::capture_documents`]: the documents as sent and parsed.
fn run(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> (Vec<String>, Vec<Value>) {
    let got = common::capture_documents(configure, f);
    (got.raw, got.docs)
}

fn docs_of(f: impl FnOnce()) -> Vec<Value> {
    run(|b| b, f).1
}

/// Whether some string anywhere in `docs` (a value, not a key) contains
/// `marker`.
fn found(docs: &[Value], marker: &str) -> bool {
    fn walk(v: &Value, marker: &str) -> bool {
        match v {
            Value::String(s) => s.contains(marker),
            Value::Array(a) => a.iter().any(|v| walk(v, marker)),
            Value::Object(o) => o.values().any(|v| walk(v, marker)),
            _ => false,
        }
    }
    docs.iter().any(|d| walk(d, marker))
}

/// Whether the integer `n` is a value anywhere in `docs`, or the text of
/// one (a port built into a URL: `:9123`).
fn found_int(docs: &[Value], n: i64) -> bool {
    fn walk(v: &Value, n: i64) -> bool {
        match v {
            Value::Number(x) => x.as_i64() == Some(n),
            Value::String(s) => *s == n.to_string() || s.contains(&format!(":{n}")),
            Value::Array(a) => a.iter().any(|v| walk(v, n)),
            Value::Object(o) => o.values().any(|v| walk(v, n)),
            _ => false,
        }
    }
    docs.iter().any(|d| walk(d, n))
}

fn all(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts every marker is found; the message lists the lost ones.
fn assert_all_found(docs: &[Value], markers: &[&str]) {
    let lost: Vec<&str> = markers
        .iter()
        .copied()
        .filter(|m| !found(docs, m))
        .collect();
    assert!(lost.is_empty(), "values lost: {lost:?} in\n{}", all(docs));
}

// ---------------------------------------------------------------------------
// Two field names of one convention slot.
// ---------------------------------------------------------------------------

/// Two names the README gives for one X-Ray field, both
/// recorded with different values on a span that uses neither (a plain
/// internal span: `info_span!("s", "server.address" = "a", "http.host" =
/// "b")`): README, "any other field → `metadata.tracing.FIELD`", and of
/// the conventions "a field that turns out to be unusable ... is kept as
/// metadata like any other". It was: only the last one is in the
/// document; the first is gone, unmarked and uncounted. The same holds
/// where the slot is used (one value in the block, the other nowhere):
/// see `alias_pairs_where_the_slot_is_used_keep_the_other_value`.
/// Cause: `Conventions::take` (src/fields/conventions.rs) keeps one
/// `(key, value)` per slot, and a second name of the slot overwrites it.
#[test]
fn alias_pairs_on_a_plain_span_keep_both_values() {
    macro_rules! pair {
        ($a:literal, $b:literal) => {
            (
                $a,
                $b,
                docs_of(|| {
                    info_span!("root").in_scope(|| {
                        info_span!("plain", $a = concat!("zq1_", $a), $b = concat!("zq2_", $b))
                            .in_scope(|| {});
                    })
                }),
            )
        };
    }
    let cases = [
        pair!("server.address", "http.host"),
        pair!("http.host", "net.host.name"),
        pair!("url.scheme", "http.scheme"),
        pair!("db.name", "db.namespace"),
        pair!("aws.request_id", "aws.requestId"),
        pair!("aws.request_id", "aws.request.id"),
        pair!("aws.region", "cloud.region"),
        pair!("aws.account_id", "cloud.account.id"),
        pair!("aws.sqs.queue_url", "aws.sqs.queue.url"),
        pair!("aws.table_name", "aws.dynamodb.table_name"),
        pair!("otel.status_message", "otel.status_description"),
    ];
    let mut lost = Vec::new();
    for (a, b, docs) in &cases {
        for (name, marker) in [(a, format!("zq1_{a}")), (b, format!("zq2_{b}"))] {
            if !found(docs, &marker) {
                lost.push(format!("{name} (beside {})", if name == a { b } else { a }));
            }
        }
    }
    assert!(lost.is_empty(), "values lost: {lost:#?}");
}

/// Same cause as above, where the slot is used: one of
/// the two values fills the block, the other is in no part of the
/// document. E.g. `http.method = "GET"` from one instrumentation and
/// `http.request.method = "POST"` from another; `url.full` beside
/// `http.url`; `exception.message` beside `error.message`; `error.type`
/// beside `exception.type`; `enduser.id` beside `xray.user` (the root's
/// `user` is the last one's, the first is nowhere).
#[test]
fn alias_pairs_where_the_slot_is_used_keep_the_other_value() {
    macro_rules! pair {
        ($a:literal, $b:literal $(, $k:literal = $v:expr)*) => {
            (
                $a,
                $b,
                docs_of(|| {
                    info_span!("root").in_scope(|| {
                        info_span!(
                            "used",
                            $($k = $v,)*
                            $a = concat!("zq1_", $a),
                            $b = concat!("zq2_", $b)
                        )
                        .in_scope(|| {});
                    })
                }),
            )
        };
    }
    let cases = [
        pair!("http.method", "http.request.method"),
        pair!("url.full", "http.url", "http.method" = "GET"),
        pair!("url.path", "http.target", "http.method" = "GET"),
        pair!("user_agent.original", "http.user_agent"),
        pair!("client.address", "http.client_ip"),
        pair!("db.system", "db.system.name"),
        pair!("db.name", "db.namespace", "db.system" = "postgresql"),
        pair!("error.type", "exception.type"),
        pair!("exception.message", "error.message"),
    ];
    let mut lost = Vec::new();
    for (a, b, docs) in &cases {
        if !found(docs, &format!("zq1_{a}")) {
            lost.push(format!("{a} (beside {b})"));
        }
        if !found(docs, &format!("zq2_{b}")) {
            lost.push(format!("{b} (beside {a})"));
        }
    }
    // The root's user.
    let docs = docs_of(|| {
        info_span!(
            "root",
            "enduser.id" = "zq1_enduser",
            "xray.user" = "zq2_xray_user"
        )
        .in_scope(|| {})
    });
    for (name, marker) in [
        ("enduser.id", "zq1_enduser"),
        ("xray.user", "zq2_xray_user"),
    ] {
        if !found(&docs, marker) {
            lost.push(format!("{name} (on a root, beside the other user field)"));
        }
    }
    assert!(lost.is_empty(), "values lost: {lost:#?}");
}

/// `http.status_code = 200` and
/// `http.response.status_code = 503` on one span (tower-http's `status`
/// beside an OpenTelemetry layer's): one is the status, the other is lost;
/// and the three content-length names keep one value of three.
#[test]
fn numeric_alias_pairs_keep_the_other_value() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "call",
                "http.method" = "GET",
                "http.status_code" = 201_u64,
                "http.response.status_code" = 202_u64,
                "http.response.content_length" = 70_001_u64,
                "http.response_content_length" = 70_002_u64,
                "http.response.body.size" = 70_003_u64,
                "server.port" = 40_001_u64,
                "net.host.port" = 40_002_u64,
            )
            .in_scope(|| {});
        })
    });
    let lost: Vec<i64> = [201, 202, 70_001, 70_002, 70_003, 40_001, 40_002]
        .into_iter()
        .filter(|n| !found_int(&docs, *n))
        .collect();
    assert!(lost.is_empty(), "values lost: {lost:?} in\n{}", all(&docs));
}

// ---------------------------------------------------------------------------
// One value consumed, or overruled by another field, and sent nowhere.
// ---------------------------------------------------------------------------

/// `otel.kind` (or `span.kind`) with a value other than
/// `client`/`producer`: `otel.kind = "consumer"` (a queue consumer),
/// `"server"`, `"internal"`, or any text. README: "`otel.kind =
/// "client"`/`"producer"` → `namespace: remote`", and "any other field →
/// `metadata.tracing.FIELD`"; `span.kind` is not in the README at all. It was: the value is in no part of the document. Cause:
/// `Conventions::apply` reads the kind with `let _ = text(&mut
/// self.kind)` ("Read: never sent as metadata") whatever it says.
#[test]
fn a_span_kind_that_makes_no_namespace_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root", "otel.kind" = "server").in_scope(|| {
            info_span!("consume", "otel.kind" = "consumer").in_scope(|| {});
            info_span!("internal", "span.kind" = "zq_kind_text").in_scope(|| {});
        })
    });
    let sub = &docs[0]["subsegments"];
    let lost: Vec<&str> = [
        ("server", &docs[0]["metadata"]),
        ("consumer", &sub[0]["metadata"]),
        ("zq_kind_text", &sub[1]["metadata"]),
    ]
    .into_iter()
    .filter(|(v, md)| !found(std::slice::from_ref(md), v))
    .map(|(v, _)| v)
    .collect();
    assert!(lost.is_empty(), "kinds lost: {lost:?} in\n{}", all(&docs));
}

/// A subsegment given both `xray.name` and `otel.name`
/// (tracing-opentelemetry users set `otel.name`; a team adds `xray.name`).
/// README: "`xray.name` / `otel.name` → the subsegment's name" and, for a
/// root, "the span's name (its `xray.name` / `otel.name` when it has one) in
/// `metadata.tracing.span_name`". It was: the name is `xray.name`'s,
/// and `otel.name`'s value is nowhere, on a subsegment and on a root.
/// Cause: `route` keeps `otel.name` only in `conv.name`, which
/// `Conventions::apply` uses only when nothing ranks above it.
#[test]
fn otel_name_beside_xray_name_is_not_lost() {
    let docs = docs_of(|| {
        info_span!(
            "root",
            "xray.name" = "zq_root_xray",
            "otel.name" = "zq_root_otel"
        )
        .in_scope(|| {
            info_span!(
                "child",
                "xray.name" = "zq_child_xray",
                "otel.name" = "zq_child_otel"
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(
        &docs,
        &[
            "zq_root_xray",
            "zq_root_otel",
            "zq_child_xray",
            "zq_child_otel",
        ],
    );
}

/// An HTTP client span as reqwest-tracing and
/// OpenTelemetry-style instrumentation make it: `otel.kind = "client"`,
/// `otel.name = "GET /orders"`, `url.full`. README: "`otel.kind =
/// "client"` ... → `namespace: remote`, named after `peer.service` or the
/// host"; "`xray.name` / `otel.name` → the subsegment's name". The host
/// wins the name, fine, but the `otel.name` value is then in no part of the
/// document. Likewise a database call (named `db@host`) and an AWS call
/// (named after its service) drop their `otel.name`.
#[test]
fn otel_name_of_a_call_named_after_its_host_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "request",
                "otel.kind" = "client",
                "otel.name" = "zq_http_otel_name",
                "http.request.method" = "GET",
                "url.full" = "https://orders.example/orders",
            )
            .in_scope(|| {});
            info_span!(
                "query",
                "otel.name" = "zq_db_otel_name",
                "db.system" = "postgresql",
                "db.name" = "orders",
                "server.address" = "db.example",
            )
            .in_scope(|| {});
            info_span!(
                "DynamoDB.GetItem",
                "otel.name" = "zq_aws_otel_name",
                "rpc.system" = "aws-api",
                "rpc.service" = "DynamoDB",
                "rpc.method" = "GetItem",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(
        &docs,
        &["zq_http_otel_name", "zq_db_otel_name", "zq_aws_otel_name"],
    );
}

/// A client call with `peer.service = "billing"` that is
/// also given `xray.name` (or is an AWS call, named after its service).
/// README: "`namespace: remote`, named after `peer.service` or the host".
/// It was: the name is `xray.name`'s, and `peer.service` is in no
/// part of the document. Cause: `Conventions::apply` takes
/// `peer.service` (`text(&mut self.peer_service)`) on every call, before
/// it knows the name is another's.
#[test]
fn peer_service_beside_xray_name_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "call",
                "otel.kind" = "client",
                "peer.service" = "zq_peer_named",
                "xray.name" = "zq_xray_named",
            )
            .in_scope(|| {});
            info_span!(
                "DynamoDB.GetItem",
                "peer.service" = "zq_peer_aws",
                "rpc.system" = "aws-api",
                "rpc.service" = "DynamoDB",
                "rpc.method" = "GetItem",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(&docs, &["zq_peer_named", "zq_xray_named", "zq_peer_aws"]);
}

/// A span with `error.type = "Timeout"` (tonic's or
/// reqwest-tracing's OpenTelemetry fields) in which an ERROR event is also
/// logged (or which records a `&dyn Error` field). README: "`error.type` /
/// `exception.type` ... → on a span without an error value, one exception
/// with that type and message", and no rule says where the type goes on a
/// span with one. It was: the exceptions are the event's (type
/// `error`), and `Timeout` is in no part of the document. Cause:
/// src/assemble.rs `entity()`: with errors recorded, `applied.error_type`
/// is used only beside an `exception.message`.
#[test]
fn error_type_beside_an_error_event_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!("call", "error.type" = "zq_ErrorType").in_scope(|| {
                tracing::error!("the call failed");
            });
            let e = common::Failure("boom");
            info_span!(
                "call2",
                "exception.type" = "zq_ExceptionType",
                failure = &e as &(dyn std::error::Error + 'static)
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(&docs, &["zq_ErrorType", "zq_ExceptionType"]);
}

/// `otel.status_message` on a span that failed by an error
/// value, an ERROR event or an `exception.message`. README:
/// "`otel.status_message` → ... one exception with that type and message
/// (on a span without an error value)"; "`otel.status_message` alone does
/// not [make the span a failure], and stays metadata". It was: on a
/// failed span with an error value, or with an `exception.message`, the
/// status message is neither an exception nor metadata. Cause:
/// `Conventions::apply` keeps the status message only in
/// `applied.error_message`, which `entity()` uses when no error was
/// recorded, and `exception.message` takes its place.
#[test]
fn status_message_beside_an_error_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            let e = common::Failure("boom");
            info_span!(
                "with_error_value",
                "otel.status_message" = "zq_status_beside_error_value",
                failure = &e as &(dyn std::error::Error + 'static)
            )
            .in_scope(|| {});
            info_span!(
                "with_error_event",
                "otel.status_message" = "zq_status_beside_error_event",
            )
            .in_scope(|| tracing::error!("failed"));
            info_span!(
                "with_exception_message",
                "otel.status_message" = "zq_status_beside_exception_message",
                "exception.message" = "zq_exception_message",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(
        &docs,
        &[
            "zq_status_beside_error_value",
            "zq_status_beside_error_event",
            "zq_status_beside_exception_message",
            "zq_exception_message",
        ],
    );
}

/// An HTTP span with `url.full` and a `server.address`
/// that is not the URL's host (a server span behind a proxy: the URL the
/// client asked for, the address of this server), not a call. README:
/// "`url.full` / `http.url`, or `url.scheme` + `server.address` ... →
/// `http.request.url`". It was: the URL is `url.full`'s and
/// `server.address` is in no part of the document (on a call it names the
/// subsegment; elsewhere it is simply gone). Likewise `url.path` when
/// it is itself an absolute URL. Cause: `Conventions::apply` clears
/// `self.host` whenever there is one (`if host.is_some() { self.host =
/// None }`), used or not.
#[test]
fn server_address_beside_url_full_is_not_lost() {
    let docs = docs_of(|| {
        info_span!(
            "request",
            "http.request.method" = "GET",
            "url.full" = "https://public.example/orders",
            "server.address" = "zq-root-server-address",
        )
        .in_scope(|| {
            info_span!(
                "inner",
                "http.request.method" = "GET",
                "url.path" = "https://other.example/x",
                "server.address" = "zq-sub-server-address",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(&docs, &["zq-root-server-address", "zq-sub-server-address"]);
}

/// `server.port` beside a `server.address` that already
/// holds a port (`http.host` is a `Host` header: `api.example:8080`), on an
/// HTTP span and on a database span. README: "`url.scheme` +
/// `server.address`/`http.host` + `server.port` + `url.path`" and "`db.system`,
/// ..., `server.address`, `server.port` → `sql.url`". It was: the
/// URL keeps the host's port and `server.port` is in no part of the
/// document. Cause: `build_origin` and the SQL branch of
/// `Conventions::apply` take the port (`int(&mut self.port)`) before
/// deciding not to use it.
#[test]
fn server_port_beside_a_host_with_a_port_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "http",
                "http.request.method" = "GET",
                "http.host" = "api.example:8080",
                "url.path" = "/x",
                "server.port" = 39_123_u64,
            )
            .in_scope(|| {});
            info_span!(
                "db",
                "db.system" = "postgresql",
                "server.address" = "db.example:5432",
                "server.port" = 39_124_u64,
            )
            .in_scope(|| {});
        })
    });
    let lost: Vec<i64> = [39_123, 39_124]
        .into_iter()
        .filter(|n| !found_int(&docs, *n))
        .collect();
    assert!(lost.is_empty(), "ports lost: {lost:?} in\n{}", all(&docs));
}

/// An HTTP status outside 100..=999 (`http.status_code =
/// 0`, as some clients record a request that got no response, or a typo's
/// `2000`), and a negative `aws.retries`. README: "a field that turns out to
/// be unusable ... is kept as metadata like any other" (the conventions'
/// module doc), and "any other field → `metadata.tracing.FIELD`". It was: the value is parsed, found unusable, and dropped: no status,
/// no metadata. Cause: `status_code(&mut self.status)` / `int(&mut
/// self.retries)` take the slot before the range check in
/// `Conventions::apply`.
#[test]
fn unusable_status_and_retries_are_kept_as_metadata() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "s0",
                "http.request.method" = "GET",
                "http.status_code" = 0_u64
            )
            .in_scope(|| {});
            info_span!(
                "s2000",
                "http.request.method" = "GET",
                "http.status_code" = 2000_u64
            )
            .in_scope(|| {});
            info_span!("r", "aws.retries" = -3_i64).in_scope(|| {});
        })
    });
    let sub = docs[0]["subsegments"].as_array().unwrap();
    let shown = |i: usize, n: i64| found_int(std::slice::from_ref(&sub[i]), n);
    let lost: Vec<&str> = [
        ("http.status_code = 0", shown(0, 0)),
        ("http.status_code = 2000", shown(1, 2000)),
        ("aws.retries = -3", shown(2, -3)),
    ]
    .into_iter()
    .filter(|(_, shown)| !shown)
    .map(|(n, _)| n)
    .collect();
    assert!(lost.is_empty(), "lost: {lost:?} in\n{}", all(&docs));
}

/// `aws.table_name = "orders"` beside
/// `aws.dynamodb.table_names = ["customers"]` (one name). README:
/// "`aws.dynamodb.table_names` → `table_name` (`table_names` if several)".
/// It was: `table_name` is `customers`; `orders` is in no part of the
/// document. With two names in the list both fields are sent. Cause:
/// `Conventions::apply` writes the single name over `entity.aws.table_name`.
#[test]
fn table_name_beside_a_one_name_table_list_is_not_lost() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "DynamoDB.BatchGetItem",
                "rpc.system" = "aws-api",
                "rpc.service" = "DynamoDB",
                "rpc.method" = "BatchGetItem",
                "aws.table_name" = "zq_table_single",
                "aws.dynamodb.table_names" = "[\"zq_table_listed\"]",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(&docs, &["zq_table_single", "zq_table_listed"]);
}

// ---------------------------------------------------------------------------
// Spans folded into an AWS SDK call.
// ---------------------------------------------------------------------------

/// Spans inside an AWS SDK operation span: the SDK's own (`try_attempt`
/// with its `attempt` field) and any of the application's there (a custom
/// connector's, with an annotation, and an event in it). Folded into the
/// call's subsegment by default, as the README says ("everything that runs
/// inside an AWS SDK call is folded into its subsegment: its errors are
/// kept, its fields and events are not"); with
/// `with_aws_sdk_internal_spans(true)` each stays a subsegment, every value
/// sent. (A hunt found the default drop undocumented.)
#[test]
fn spans_inside_an_aws_call_are_folded_or_kept_whole() {
    const ORCH: &str = common::SDK_ORCHESTRATOR;
    let call = || {
        info_span!("root").in_scope(|| {
            tracing::span!(
                target: "aws_sdk_dynamodb::operation::get_item",
                Level::DEBUG,
                "DynamoDB.GetItem",
                "rpc.service" = "DynamoDB",
                "rpc.method" = "GetItem",
                "rpc.system" = "aws-api",
            )
            .in_scope(|| {
                tracing::span!(target: ORCH, Level::DEBUG, "try_attempt", attempt = 31_337_u64)
                    .in_scope(|| {
                        info_span!(
                            "my_connector",
                            "annotation.pool" = "zq_pool_annotation",
                            endpoint = "zq_connector_field",
                        )
                        .in_scope(|| tracing::info!(note = "zq_connector_event", "sent"));
                    });
            });
        })
    };
    let markers = [
        "zq_pool_annotation",
        "zq_connector_field",
        "zq_connector_event",
    ];
    let (_raw, folded) = run(|b| b.with_events(true), call);
    let aws = &folded[0]["subsegments"][0];
    assert_eq!(aws["name"], "DynamoDB", "{aws:#}");
    assert!(aws.get("subsegments").is_none(), "folded: {aws:#}");
    assert!(
        markers.iter().all(|m| !found(&folded, m)),
        "{}",
        all(&folded)
    );
    let (_raw, kept) = run(
        |b| b.with_events(true).with_aws_sdk_internal_spans(true),
        call,
    );
    assert_all_found(&kept, &markers);
    assert!(found_int(&kept, 31_337), "{}", all(&kept));
}

// ---------------------------------------------------------------------------
// Metadata keys that meet.
// ---------------------------------------------------------------------------

/// An event (with `with_events(true)`) with a field `time`
/// and a field `field.time` (`info!(time = %t, "field.time" = x, ..)`; the
/// same for `level` and `target`). README: "a field of the same name as one
/// of these is kept as `field.time`, `field.level`, `field.target`". It was: `time` is renamed onto `field.time`, and one of the two
/// values replaces the other, unmarked. (The previous hunt fixed the same
/// collision for a span's `events` and a root's `span_name`, whose crate
/// entries now move the user's to `field.NAME`.) Cause: `events::render`
/// keeps "one key once ... keeps its last value".
#[test]
fn event_fields_time_and_field_time_both_survive() {
    let (_raw, docs) = run(
        |b| b.with_events(true),
        || {
            info_span!("root").in_scope(|| {
                tracing::info!(
                    time = "zq_time",
                    "field.time" = "zq_field_time",
                    level = "zq_level",
                    "field.level" = "zq_field_level",
                    "hello"
                );
            })
        },
    );
    assert_all_found(
        &docs,
        &["zq_time", "zq_field_time", "zq_level", "zq_field_level"],
    );
}

/// A span with a field `x` and a field
/// `metadata.tracing.x` (say `#[instrument]`'s argument `region` and an
/// explicit `metadata.tracing.region`), or `metadata.note` beside
/// `metadata.default.note`. README: "any other field →
/// `metadata.tracing.FIELD`"; "`metadata.KEY` / `metadata.NS.KEY` →
/// `metadata.default.KEY` / `metadata.NS.KEY`". Two fields of different
/// names, one slot: the later one's value replaces the earlier's,
/// unmarked, where the fix for a demoted `annotation.KEY` beside
/// `metadata.KEY` keeps both. (One may judge `metadata.note` +
/// `metadata.default.note` the user's own duplicate; the plain field
/// beside its `metadata.tracing.` twin is less obviously so.) Cause:
/// `put_metadata` in src/fields/mod.rs inserts over an existing key.
#[test]
fn a_plain_field_and_its_metadata_tracing_twin_both_survive() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "s",
                region = "zq_plain_region",
                "metadata.tracing.region" = "zq_md_region"
            )
            .in_scope(|| {});
            info_span!(
                "t",
                "metadata.tracing.zone" = "zq_md_zone",
                zone = "zq_plain_zone"
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(
        &docs,
        &[
            "zq_plain_region",
            "zq_md_region",
            "zq_md_zone",
            "zq_plain_zone",
        ],
    );
}

// ---------------------------------------------------------------------------
// Demoted annotations.
// ---------------------------------------------------------------------------

/// `with_indexed_fields(["region"])`, a trace past
/// its 50 annotations, and a span with `region = "a"` beside
/// `metadata.tracing.region = "b"`. README: "past 50 per trace they move to
/// metadata (counted in `annotations_demoted` ...) ... to `metadata.default`,
/// under the field's own key, or its full name ... when the span's own
/// `metadata.a-b` holds that slot". The previous hunt's fix keeps both for
/// `annotation.KEY` beside `metadata.KEY`; for an indexed field (demoted to
/// `metadata.tracing`), `put_demoted` skips the renaming on purpose (`ns !=
/// TRACING_NAMESPACE`) and the demoted value replaces the span's own
/// `metadata.tracing.region`.
#[test]
fn a_demoted_indexed_field_and_its_metadata_tracing_twin_both_survive() {
    let (_raw, docs) = run(
        |b| b.with_indexed_fields(["region"]),
        || {
            fifty_annotations_root!().in_scope(|| {
                info_span!(
                    "child",
                    "metadata.tracing.region" = "zq_md_region",
                    region = "zq_indexed_region",
                )
                .in_scope(|| {});
            });
        },
    );
    assert_all_found(&docs, &["zq_md_region", "zq_indexed_region"]);
}

// ---------------------------------------------------------------------------
// Builder options and conventions.
// ---------------------------------------------------------------------------

/// `with_indexed_fields(["enduser.id", "otel.name"])`:
/// the user wants the user id indexed as well. Builder docs
/// (`with_indexed_fields`): "Records these fields as annotations ...
/// wherever they appear, besides any block they fill"; README:
/// "`enduser.id`, `xray.user` → the segment's `user`"; "`xray.name` /
/// `otel.name` → the subsegment's name"; "`error = true` → `fault`". It was: the annotation is there, but the root has no `user`, the
/// subsegment keeps its span name, and an indexed `error = true` sets no
/// flag. Cause: `route` (src/fields/mod.rs) `continue`s after the
/// annotation unless `conv.take` knows the name; `enduser.id`,
/// `xray.user`, `otel.name`, `error`, `otel.status_code` are handled in
/// `route`'s own match, which is skipped.
#[test]
fn indexed_convention_fields_still_fill_their_block() {
    let (_raw, docs) = run(
        |b| b.with_indexed_fields(["enduser.id", "otel.name", "error"]),
        || {
            info_span!("root", "enduser.id" = "zq_user").in_scope(|| {
                info_span!("child", "otel.name" = "zq_renamed").in_scope(|| {});
                info_span!("failing", error = true).in_scope(|| {});
            })
        },
    );
    let root = &docs[0];
    let subs = root["subsegments"].as_array().unwrap();
    let mut broken = Vec::new();
    if root["user"] != "zq_user" {
        broken.push("enduser.id is no user");
    }
    if !subs.iter().any(|s| s["name"] == "zq_renamed") {
        broken.push("otel.name names nothing");
    }
    if !subs
        .iter()
        .any(|s| s["name"] == "failing" && s["fault"] == true)
    {
        broken.push("error = true sets no fault");
    }
    assert!(broken.is_empty(), "{broken:?} in\n{}", all(&docs));
}

/// A field named `annotation.` (an empty key: a
/// string-literal field name built from a prefix, `"annotation."`).
/// README: "`annotation.KEY = v` → `annotations.KEY` ... Key made
/// `[A-Za-z0-9_]`". It was: no annotation, no metadata, no count:
/// the value is gone. Cause: `sanitize_annotation_key` returns `None` for
/// an empty key and `annotate_as` returns without a trace.
#[test]
fn an_annotation_with_an_empty_key_is_not_lost() {
    let docs =
        docs_of(|| info_span!("root", "annotation." = "zq_empty_key_annotation").in_scope(|| {}));
    assert_all_found(&docs, &["zq_empty_key_annotation"]);
}

/// `otel.name` given a number or a flag
/// (`otel.name = 404`, `otel.name = true`: a `#[instrument(fields(otel.name
/// = code))]`). The conventions' module doc: "a field that turns out to be
/// unusable (a method that is a number, ...) is kept as metadata like any
/// other". It was: no name, no metadata: the value is gone (an
/// `xray.name = 404` is kept as metadata). Cause: `route`'s `"otel.name"`
/// arm ignores any value that is not a string.
#[test]
fn a_non_text_otel_name_is_kept_as_metadata() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!("numbered", "otel.name" = 36_404_u64).in_scope(|| {});
            info_span!("x_numbered", "xray.name" = 36_405_u64).in_scope(|| {});
        })
    });
    let lost: Vec<i64> = [36_404, 36_405]
        .into_iter()
        .filter(|n| !found_int(&docs, *n))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?} in\n{}", all(&docs));
}

/// `xray.fault = "yes"`, `xray.throttle = "1"`,
/// `xray.error = "no"`: a flag field whose text is not `true`. README:
/// "`xray.fault = true` → `fault`"; and of the conventions "a field that
/// turns out to be unusable ... is kept as metadata like any other". It was: no flag, and the value is in no part of the document (a number
/// `xray.fault = 1` is kept as metadata). Cause: `flag()` in
/// src/fields/conventions.rs clears the slot for any string.
#[test]
fn a_flag_field_with_other_text_is_kept_as_metadata() {
    let docs = docs_of(|| {
        info_span!("root").in_scope(|| {
            info_span!(
                "s",
                "xray.fault" = "zq_fault_yes",
                "xray.throttle" = "zq_throttle_1",
                "xray.error" = "zq_error_no",
            )
            .in_scope(|| {});
        })
    });
    assert_all_found(&docs, &["zq_fault_yes", "zq_throttle_1", "zq_error_no"]);
}

/// A root (server) span with `xray.traced = true` or
/// `http.request.traced = true` beside its HTTP fields. README: "`xray.traced
/// = true` / `http.request.traced = true` → `http.request.traced` (the
/// callee is instrumented)". On a segment X-Ray has no such flag, fair, but
/// the README does not say the field is dropped there; it is in no part of
/// the document. Cause: `Conventions::apply`, "`else if is_segment { ...
/// not kept as metadata either }`".
#[test]
fn traced_flag_on_a_segment_is_kept_as_metadata() {
    let docs = docs_of(|| {
        info_span!(
            "request",
            "http.request.method" = "GET",
            "url.path" = "/x",
            "xray.traced" = true
        )
        .in_scope(|| {})
    });
    let seg = &docs[0];
    assert!(
        seg["metadata"]["tracing"].get("xray.traced").is_some()
            || seg["http"]["request"].get("traced").is_some(),
        "xray.traced lost:\n{}",
        all(&docs)
    );
}

/// `url.full` and a different `url.path` (an
/// OpenTelemetry layer records the route's path, tower-http's `uri` the
/// request's). README: "`url.full` / `http.url`, or `url.scheme` + ... +
/// `url.path`/`http.target` → `http.request.url`". It was: the URL is
/// `url.full`'s and the path is in no part of the document ("The path is
/// in the full URL: not kept again as metadata" assumes they agree).
#[test]
fn a_path_other_than_the_full_urls_is_not_lost() {
    let docs = docs_of(|| {
        info_span!(
            "request",
            "http.request.method" = "GET",
            "url.full" = "https://a.example/orders/7",
            "url.path" = "/zq_other_path",
        )
        .in_scope(|| {})
    });
    assert_all_found(&docs, &["/orders/7", "zq_other_path"]);
}

// ---------------------------------------------------------------------------
// Generative: random spans of random README field names.
// ---------------------------------------------------------------------------

/// How a pool name is given a value, and how the value is looked for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gen {
    /// A marker string `zq{n}x`, found as a substring of some string.
    Str,
    /// `https://zq{n}x.example/p`: found by its host.
    Url,
    /// `postgres://zq{n}x.example/db`.
    Conn,
    /// A 3-digit HTTP status, found as that number.
    Status,
    /// A unique integer from this base, found as that number.
    Int(i64),
    /// A fixed value that gives the span a meaning; not looked for.
    Fixed(&'static str),
}

/// The README's field names (and the conventions' aliases), with a few
/// plain, prefixed and crate-key names. Left out on purpose: the flags
/// (booleans carry no marker), `xray.trace_header` (consumed), the
/// documented drops `url.query` and `db.statement`/`db.query.text`
/// (queries are off here), and tracing-log's four `log.*` names.
const POOL: &[(&str, Gen)] = &[
    ("annotation.k1", Gen::Str),
    ("annotation.k-2", Gen::Str),
    ("annotation.k_2", Gen::Str),
    ("metadata.note", Gen::Str),
    ("metadata.default.other", Gen::Str),
    ("metadata.ns.k", Gen::Str),
    ("metadata.AWS.k", Gen::Str),
    ("metadata.tracing_xray.trimmed", Gen::Str),
    ("alpha", Gen::Str),
    ("beta", Gen::Int(1_000_000)),
    ("span_name", Gen::Str),
    ("events", Gen::Str),
    ("message", Gen::Str),
    ("log.group", Gen::Str),
    ("xray.name", Gen::Str),
    ("otel.name", Gen::Str),
    ("enduser.id", Gen::Str),
    ("xray.user", Gen::Str),
    ("otel.kind", Gen::Fixed("client")),
    ("xray.namespace", Gen::Fixed("remote")),
    ("peer.service", Gen::Str),
    ("error.type", Gen::Str),
    ("exception.type", Gen::Str),
    ("exception.message", Gen::Str),
    ("error.message", Gen::Str),
    ("otel.status_message", Gen::Str),
    ("otel.status_description", Gen::Str),
    ("error.cause_chain", Gen::Str),
    ("exception.stacktrace", Gen::Str),
    ("http.request.method", Gen::Str),
    ("http.method", Gen::Str),
    ("method", Gen::Str),
    ("uri", Gen::Str),
    ("status", Gen::Status),
    ("url.full", Gen::Url),
    ("http.url", Gen::Url),
    ("url.path", Gen::Str),
    ("http.target", Gen::Str),
    ("url.scheme", Gen::Str),
    ("http.scheme", Gen::Str),
    ("server.address", Gen::Str),
    ("http.host", Gen::Str),
    ("net.host.name", Gen::Str),
    ("server.port", Gen::Int(30_000)),
    ("net.host.port", Gen::Int(31_000)),
    ("net.peer.name", Gen::Str),
    ("net.peer.port", Gen::Int(32_000)),
    ("net.peer.ip", Gen::Str),
    ("user_agent.original", Gen::Str),
    ("http.user_agent", Gen::Str),
    ("client.address", Gen::Str),
    ("http.client_ip", Gen::Str),
    ("http.response.status_code", Gen::Status),
    ("http.status_code", Gen::Status),
    ("http.response.content_length", Gen::Int(60_000)),
    ("http.response.body.size", Gen::Int(61_000)),
    ("rpc.grpc.status_code", Gen::Int(20_000)),
    ("db.system", Gen::Str),
    ("db.system.name", Gen::Str),
    ("db.name", Gen::Str),
    ("db.namespace", Gen::Str),
    ("db.user", Gen::Str),
    ("db.connection_string", Gen::Conn),
    ("rpc.system", Gen::Fixed("aws-api")),
    ("rpc.service", Gen::Str),
    ("rpc.method", Gen::Str),
    ("aws.operation", Gen::Str),
    ("aws.request_id", Gen::Str),
    ("aws.region", Gen::Str),
    ("cloud.region", Gen::Str),
    ("aws.account_id", Gen::Str),
    ("cloud.account.id", Gen::Str),
    ("aws.dynamodb.table_names", Gen::Str),
    ("aws.table_name", Gen::Str),
    ("aws.sqs.queue_url", Gen::Str),
    ("messaging.system", Gen::Fixed("aws_sqs")),
    ("messaging.url", Gen::Url),
    ("messaging.destination.name", Gen::Str),
    ("aws.s3.bucket", Gen::Str),
    ("aws.sns.topic.arn", Gen::Str),
    ("faas.invoked_name", Gen::Str),
    ("faas.invoked_provider", Gen::Str),
    ("aws.lambda.invocation_type", Gen::Str),
    ("aws.retries", Gen::Int(40_000)),
];

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A callsite made at run time, with the given field names (leaked: a test
/// makes a few hundred).
struct DynCallsite(std::sync::OnceLock<&'static tracing::Metadata<'static>>);
impl tracing::callsite::Callsite for DynCallsite {
    fn set_interest(&self, _: tracing::subscriber::Interest) {}
    fn metadata(&self) -> &tracing::Metadata<'_> {
        self.0.get().unwrap()
    }
}

fn dyn_metadata(
    name: &'static str,
    fields: &[&'static str],
) -> &'static tracing::Metadata<'static> {
    let callsite: &'static DynCallsite =
        Box::leak(Box::new(DynCallsite(std::sync::OnceLock::new())));
    let names: &'static [&'static str] = Box::leak(fields.to_vec().into_boxed_slice());
    let meta: &'static tracing::Metadata<'static> = Box::leak(Box::new(tracing::Metadata::new(
        name,
        "hunt",
        Level::INFO,
        Some(file!()),
        Some(line!()),
        Some(module_path!()),
        tracing::field::FieldSet::new(names, tracing::callsite::Identifier(callsite)),
        tracing::metadata::Kind::SPAN,
    )));
    callsite.0.set(meta).ok();
    meta
}

/// One field's value as generated.
#[derive(Debug, Clone)]
enum Val {
    S(String),
    I(i64),
}

/// The values a random span records that no document holds, as
/// `name (with: the span's other names)`.
fn ledger_trial(rng: &mut Rng, trial: usize) -> Vec<String> {
    let n = 1 + rng.below(6);
    let mut picked: Vec<(&'static str, Gen)> = Vec::new();
    while picked.len() < n {
        let p = POOL[rng.below(POOL.len())];
        if !picked.iter().any(|q| q.0 == p.0) {
            picked.push(p);
        }
    }
    let is_root = rng.below(4) == 0;
    let at_creation = rng.below(2) == 0;
    let mut counter = 0_i64;
    let values: Vec<Val> = picked
        .iter()
        .map(|(_, g)| {
            counter += 1;
            let id = trial as i64 * 10 + counter;
            match g {
                Gen::Str => Val::S(format!("zq{id}x")),
                Gen::Url => Val::S(format!("https://zq{id}x.example/p")),
                Gen::Conn => Val::S(format!("postgres://zq{id}x.example/db")),
                Gen::Fixed(v) => Val::S((*v).to_owned()),
                Gen::Status => Val::I(200 + (id % 8) * 7 + counter),
                Gen::Int(base) => Val::I(base + id),
            }
        })
        .collect();
    let names: Vec<&'static str> = picked.iter().map(|p| p.0).collect();
    let meta = dyn_metadata(if is_root { "trial_root" } else { "trial" }, &names);
    let fields: Vec<tracing::field::Field> = names
        .iter()
        .map(|n| meta.fields().field(n).unwrap())
        .collect();
    let body = || {
        let make = || {
            if at_creation {
                let vals: Vec<Box<dyn tracing::Value>> = values
                    .iter()
                    .map(|v| -> Box<dyn tracing::Value> {
                        match v {
                            Val::S(s) => Box::new(s.clone()),
                            Val::I(i) => Box::new(*i),
                        }
                    })
                    .collect();
                let pairs: Vec<(&tracing::field::Field, Option<&dyn tracing::Value>)> = fields
                    .iter()
                    .zip(&vals)
                    .map(|(f, v)| (f, Some(&**v as &dyn tracing::Value)))
                    .collect();
                macro_rules! span_of {
                    ($($n:literal)*) => {
                        match pairs.len() {
                            $($n => {
                                let arr: [(&tracing::field::Field, Option<&dyn tracing::Value>); $n] =
                                    pairs.clone().try_into().unwrap();
                                tracing::Span::new(meta, &meta.fields().value_set(&arr))
                            })*
                            _ => unreachable!(),
                        }
                    };
                }
                span_of!(1 2 3 4 5 6)
            } else {
                let span = tracing::Span::new(meta, &meta.fields().value_set(&[]));
                for (name, v) in names.iter().zip(&values) {
                    match v {
                        Val::S(s) => span.record(*name, s.as_str()),
                        Val::I(i) => span.record(*name, *i),
                    };
                }
                span
            }
        };
        if is_root {
            // A root of its own (`parent: None` as `Span::new` makes it
            // under no current span).
            make().in_scope(|| {});
        } else {
            info_span!("root").in_scope(|| make().in_scope(|| {}));
        }
    };
    let docs = docs_of(body);
    let mut lost = Vec::new();
    for ((name, g), v) in picked.iter().zip(&values) {
        let ok = match (g, v) {
            (Gen::Fixed(_), _) => true,
            (Gen::Url | Gen::Conn, Val::S(s)) => {
                let host = s.split("://").nth(1).unwrap().split('.').next().unwrap();
                found(&docs, host)
            }
            (_, Val::S(s)) => found(&docs, s),
            (_, Val::I(i)) => found_int(&docs, *i),
        };
        if !ok {
            let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
            lost.push(format!(
                "trial {trial} ({}, {}): {name} = {v:?} with {others:?}",
                if is_root { "root" } else { "child" },
                if at_creation {
                    "at creation"
                } else {
                    "recorded"
                }
            ));
        }
    }
    lost
}

/// The generative ledger (the standalone tests above are its findings, one by one).
/// 400 random spans (a fixed seed) of 1 to 6 field names drawn from the
/// README's table, each value a unique marker; every value must be found
/// in the documents. The names whose drop is documented are not drawn.
#[test]
fn generated_spans_lose_no_field_value() {
    let mut rng = Rng(std::env::var("HUNT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15));
    let mut lost = Vec::new();
    for trial in 0..std::env::var("HUNT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
    {
        lost.extend(ledger_trial(&mut rng, trial));
    }
    assert!(
        lost.is_empty(),
        "{} values lost:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------

/// With `with_events(true)`, an ERROR event's fields
/// besides its message and error: `error!(order_id = %id, amount = 42,
/// "payment failed")`. README: "other events → not sent, unless
/// `with_events(true)`: `metadata.tracing.events` ... with their time,
/// level and target"; "an ERROR event inside the span → ... a
/// `cause.exceptions` entry with the message". It was: the message
/// is an exception, and `order_id`, `amount` are in no part of the
/// document, with events on. (An INFO event's same fields are kept.)
/// Cause: `record_event` (src/layer.rs) reads an ERROR event with
/// `EventVisitor`, which keeps `message`, `error` and `log.*` only, and
/// never pushes it to the span's events.
#[test]
fn error_event_fields_are_kept_with_events_on() {
    let (_raw, docs) = run(
        |b| b.with_events(true),
        || {
            info_span!("root").in_scope(|| {
                tracing::error!(
                    order_id = "zq_error_event_order",
                    amount = 4242_u64,
                    "payment failed"
                );
                tracing::info!(order_id = "zq_info_event_order", amount = 4343_u64, "noted");
            })
        },
    );
    let mut lost: Vec<String> = ["zq_error_event_order", "zq_info_event_order"]
        .into_iter()
        .filter(|m| !found(&docs, m))
        .map(String::from)
        .collect();
    for n in [4242, 4343] {
        if !found_int(&docs, n) {
            lost.push(format!("amount = {n}"));
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?} in\n{}", all(&docs));
}

/// An ERROR event carrying two errors: a `&dyn Error`
/// value and an `error = %text` (or two `&dyn Error` fields). README: "an
/// ERROR event → ... a `cause.exceptions` entry with the message (without
/// one, the text of its `error` field ...)". It was: the first error
/// value is the exception (the message before it), the other error is in no
/// part of the document, with or without `with_events(true)`. Cause:
/// `EventVisitor::record_error` keeps the first error only, and
/// `record_event` drops `error_text` when an error value is there.
#[test]
fn second_error_of_an_error_event_is_not_lost() {
    let (_raw, docs) = run(
        |b| b.with_events(true),
        || {
            info_span!("root").in_scope(|| {
                let a = common::Failure("zq_first_error_value");
                let b = common::Failure("zq_second_error_value");
                tracing::error!(
                    first = &a as &(dyn std::error::Error + 'static),
                    second = &b as &(dyn std::error::Error + 'static),
                    "two failures"
                );
                let c = common::Failure("zq_error_value_beside_text");
                tracing::error!(
                    cause = &c as &(dyn std::error::Error + 'static),
                    error = "zq_error_text_beside_value",
                    "failed again"
                );
            })
        },
    );
    assert_all_found(
        &docs,
        &[
            "zq_first_error_value",
            "zq_second_error_value",
            "zq_error_value_beside_text",
            "zq_error_text_beside_value",
        ],
    );
}

// ---------------------------------------------------------------------------
// Passing checks: neighbouring cases found fine.
// ---------------------------------------------------------------------------

/// PASSES. Fields recorded late (`Empty` at creation, recorded after the
/// children closed, recorded twice: the last value), on a root and a
/// child; leftovers of conventions on spans that do not use them (a host,
/// port and scheme on a plain span; `peer.service` on a non-call; a
/// messaging destination on a Kafka span; another provider's function; a
/// connection string without `db.system`; an `otel.status_code = "OK"`; an
/// `error = false`) are metadata.
#[test]
fn late_and_leftover_fields_are_kept() {
    let docs = docs_of(|| {
        let root = info_span!("root", late = tracing::field::Empty);
        root.in_scope(|| {
            let child = info_span!("child", later = tracing::field::Empty);
            child.in_scope(|| {
                info_span!("grandchild").in_scope(|| {});
            });
            child.record("later", "zq_first_value");
            child.record("later", "zq_child_late");
            drop(child);
            info_span!(
                "plain",
                "server.address" = "zq_host_plain",
                "server.port" = 38_001_u64,
                "url.scheme" = "zq_scheme_plain",
                "peer.service" = "zq_peer_plain",
                "messaging.system" = "kafka",
                "messaging.destination.name" = "zq_kafka_topic",
                "faas.invoked_name" = "zq_gcp_function",
                "faas.invoked_provider" = "gcp",
                "db.connection_string" = "postgres://zq_conn_host/db",
                "otel.status_code" = "zq_OK",
                error = false,
                "rpc.grpc.status_code" = 38_002_u64,
            )
            .in_scope(|| {});
        });
        root.record("late", "zq_root_late");
    });
    assert_all_found(
        &docs,
        &[
            "zq_child_late",
            "zq_root_late",
            "zq_host_plain",
            "zq_scheme_plain",
            "zq_peer_plain",
            "zq_kafka_topic",
            "zq_gcp_function",
            "gcp",
            "zq_conn_host",
            "zq_OK",
        ],
    );
    assert!(
        !found(&docs, "zq_first_value"),
        "a field recorded twice keeps its last value"
    );
    assert!(
        found_int(&docs, 38_001) && found_int(&docs, 38_002),
        "{}",
        all(&docs)
    );
}

/// PASSES. Builder options: with `with_all_fields_indexed(true)` every
/// plain field is an annotation and the conventions' leftovers stay
/// metadata; past 50 annotations they move to metadata and are counted; a
/// root client call (a segment around the call's subsegment) keeps its
/// user on the segment and its other fields on the call.
#[test]
fn indexed_fields_and_root_calls_keep_their_values() {
    let (_raw, docs) = run(
        |b| b.with_all_fields_indexed(true),
        || {
            info_span!(
                "root",
                plain = "zq_plain_indexed",
                "server.address" = "zq_left_host"
            )
            .in_scope(|| {});
            info_span!(
                "call",
                "otel.kind" = "client",
                "http.request.method" = "GET",
                "url.full" = "https://zq-root-call.example/x",
                "enduser.id" = "zq_call_user",
                "annotation.k" = "zq_call_annotation",
                note = "zq_call_note",
            )
            .in_scope(|| {});
        },
    );
    assert_eq!(
        docs[0]["annotations"]["plain"],
        "zq_plain_indexed",
        "{}",
        all(&docs)
    );
    assert_all_found(
        &docs,
        &[
            "zq_left_host",
            "zq-root-call",
            "zq_call_user",
            "zq_call_annotation",
            "zq_call_note",
        ],
    );
}
