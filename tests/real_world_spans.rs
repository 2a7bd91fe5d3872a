//! Spans and events exactly as popular crates emit them (same names,
//! targets, levels, fields, fields recorded later), and what an X-Ray user
//! expects from them. Each test quotes the source it reproduces.

mod common;

use serde_json::Value;
use tracing::field::Empty;
use tracing::{Level, info_span};

fn run(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> Vec<Value> {
    common::run_in_memory(
        |b| configure(b.with_sampler(tracing_xray::sampling::AlwaysSample)),
        f,
    )
    .0
}

/// The one subsegment under a root `request` span.
fn only_child(f: impl FnOnce()) -> Value {
    let traces = run(|b| b, || info_span!("request").in_scope(f));
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let subs = traces[0]["subsegments"].as_array().expect("a subsegment");
    assert_eq!(subs.len(), 1, "{traces:#?}");
    subs[0].clone()
}

/// `opentelemetry::trace::SpanKind`, as its `Debug` prints it (the
/// instrumentation crates write `otel.kind = ?SpanKind::Client`).
#[allow(dead_code)]
#[derive(Debug)]
enum SpanKind {
    Client,
    Server,
}

/// reqwest-tracing 0.5's client span (`DefaultSpanBackend`, see the first
/// test below for the source) for a GET to `host`.
fn reqwest_tracing_span(host: &str) -> tracing::Span {
    tracing::span!(
        target: "reqwest_tracing::reqwest_otel_span_builder",
        Level::INFO,
        "HTTP request",
        http.request.method = %"GET",
        url.scheme = %"https",
        server.address = %host,
        server.port = %443_i64,
        user_agent.original = %"",
        otel.kind = "client",
        otel.name = %"GET",
        otel.status_code = Empty,
        http.response.status_code = Empty,
        error.message = Empty,
        error.cause_chain = Empty,
    )
}

/// tonic-tracing-opentelemetry's client span (`make_span_from_request`, see
/// the tests below for the source) for `service`/`method` at `host`.
fn tonic_client_span(service: &str, method: &str, host: &str) -> tracing::Span {
    tracing::span!(
        target: "otel::tracing",
        Level::TRACE,
        "GRPC request",
        http.user_agent = %"tonic/0.12.3",
        otel.name = %format!("{service}/{method}"),
        otel.kind = ?SpanKind::Client,
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        server.address = %host,
        exception.message = Empty,
        exception.details = Empty,
    )
}

/// reqwest-tracing 0.5 (TrueLayer/reqwest-middleware,
/// `reqwest-tracing/src/reqwest_otel_span_macro.rs` and
/// `reqwest_otel_span_builder.rs`): `DefaultSpanBackend` opens
/// `span!(INFO, "HTTP request", http.request.method, url.scheme,
/// server.address, server.port = %host_port, user_agent.original,
/// otel.kind = "client", otel.name, otel.status_code = Empty,
/// http.response.status_code = Empty, error.message = Empty,
/// error.cause_chain = Empty)`, and on a failed call
/// `default_on_request_failure` records `otel.status_code = "ERROR"`,
/// `error.message = e.to_string()`, `error.cause_chain = format!("{e:?}")`
/// (no status: the connection failed).
///
/// The subsegment is a remote fault, and `error.message` (OpenTelemetry's
/// attribute for the error's description, beside `error.type`) is its
/// exception's message. It was only `metadata.tracing."error.message"`, so
/// the X-Ray console's Exceptions tab showed nothing for the failed call.
#[test]
fn reqwest_tracing_connect_failure_gives_an_exception_with_its_message() {
    let sub = only_child(|| {
        let span = reqwest_tracing_span("payments.example.com");
        span.record("otel.status_code", "ERROR");
        span.record(
            "error.message",
            "error sending request for url (https://payments.example.com/v1/charges)",
        );
        span.record(
            "error.cause_chain",
            "Reqwest(reqwest::Error { kind: Request, url: \"https://payments.example.com/v1/charges\", source: ConnectError(\"tcp connect error\", Os { code: 111, kind: ConnectionRefused }) })",
        );
    });
    assert_eq!(sub["namespace"], "remote", "{sub:#}");
    assert_eq!(sub["fault"], true, "{sub:#}");
    let message = sub["cause"]["exceptions"][0]["message"].as_str();
    assert!(
        message.is_some_and(|m| m.contains("error sending request")),
        "the failed call's error.message is its exception: {sub:#}"
    );
}

/// The same reqwest-tracing span and failure: reqwest's `Error` displays
/// the request's URL with its query (`error sending request for url
/// (https://host/path?api_key=…)`), and reqwest-tracing records it in
/// `error.message` and `error.cause_chain`. The `DefaultSpanBackend`
/// leaves the URL out of the span on purpose (its docs: "to avoid leaking
/// sensitive information, the macro doesn't include `http.url`"), and the
/// README says of URLs "user info, query and fragment are never sent";
/// tracing-xray's own `XrayClientLayer` strips them from error text
/// (`without_url_secrets`). The query, key and all, was sent verbatim in
/// `metadata.tracing."error.message"` and `"error.cause_chain"`.
#[test]
fn reqwest_tracing_error_text_does_not_send_the_query_string() {
    let traces = run(
        |b| b,
        || {
            let _root = info_span!("request").entered();
            let span = reqwest_tracing_span("api.example.com");
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.message",
                "error sending request for url (https://api.example.com/v1/rates?api_key=SECRET123)",
            );
            span.record(
                "error.cause_chain",
                "Reqwest(reqwest::Error { kind: Request, url: \"https://api.example.com/v1/rates?api_key=SECRET123\" })",
            );
        },
    );
    let text = serde_json::to_string(&traces).unwrap();
    assert!(
        !text.contains("SECRET123"),
        "the URL's query (an API key) is sent: {text}"
    );
}

/// tracing-actix-web 0.7 (actix/actix-extras,
/// `tracing-actix-web/src/root_span_macro.rs`): the root span
/// `span!(INFO, "HTTP request", http.method, http.route, http.flavor,
/// http.scheme, http.host, http.client_ip, http.user_agent, http.target,
/// http.status_code = Empty, otel.name, otel.kind = "server",
/// otel.status_code = Empty, trace_id = Empty, request_id,
/// exception.message = Empty, exception.details = Empty)`; on an error
/// response `root_span_builder.rs` `record_error` records
/// `exception.message` (the error's `Display`), `exception.details` (its
/// `Debug`), `http.status_code` and, for a 5xx, `otel.status_code =
/// "ERROR"`.
///
/// The segment gets its `http` block and `fault` from the 500, and
/// `exception.message` (OpenTelemetry's attribute for exactly that) is the
/// message of its exception. It was only metadata: X-Ray showed a fault with
/// no exception.
#[test]
fn tracing_actix_web_error_response_gives_an_exception_with_its_message() {
    let traces = run(
        |b| b,
        || {
            let span = tracing::span!(
                target: "tracing_actix_web::root_span_builder",
                Level::INFO,
                "HTTP request",
                http.method = %"GET",
                http.route = %"/orders/{id}",
                http.flavor = %"1.1",
                http.scheme = %"http",
                http.host = %"localhost:8080",
                http.client_ip = %"127.0.0.1",
                http.user_agent = %"curl/8.5.0",
                http.target = %"/orders/7",
                http.status_code = Empty,
                otel.name = %"GET /orders/{id}",
                otel.kind = "server",
                otel.status_code = Empty,
                trace_id = Empty,
                request_id = %"0b1f6a9e-2c5d-4d1c-9a55-0f3c2b8c1e11",
                exception.message = Empty,
                exception.details = Empty,
            );
            span.record(
                "exception.message",
                tracing::field::display("database connection pool timed out"),
            );
            span.record("exception.details", tracing::field::display("PoolTimedOut"));
            span.record("http.status_code", 500_i32);
            span.record("otel.status_code", "ERROR");
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    assert_eq!(doc["http"]["response"]["status"], 500, "{doc:#}");
    assert_eq!(doc["fault"], true, "{doc:#}");
    assert_eq!(
        doc["cause"]["exceptions"][0]["message"], "database connection pool timed out",
        "exception.message is the exception of the fault: {doc:#}"
    );
}

/// tonic-tracing-opentelemetry (davidB/tracing-opentelemetry-instrumentation-sdk,
/// `tracing-opentelemetry-instrumentation-sdk/src/http/grpc_client.rs`
/// `make_span_from_request`): `trace_span!(target: "otel::tracing",
/// "GRPC request", http.user_agent, otel.name = "{service}/{method}",
/// otel.kind = ?SpanKind::Client, otel.status_code = Empty, rpc.system =
/// "grpc", rpc.service, rpc.method, rpc.grpc.status_code = Empty,
/// server.address, exception.message = Empty, exception.details = Empty)`;
/// on a transport error `update_span_from_error` records
/// `otel.status_code = "ERROR"`, `rpc.grpc.status_code = 2` and
/// `exception.message = error.to_string()`.
///
/// The subsegment is a remote fault named after the host, with the error as
/// its exception (it was only `metadata.tracing."exception.message"`).
#[test]
fn grpc_client_transport_error_gives_an_exception_with_its_message() {
    let sub = only_child(|| {
        let span = tonic_client_span("helloworld.Greeter", "SayHello", "greeter.internal");
        span.record("otel.status_code", "ERROR");
        span.record("rpc.grpc.status_code", 2_u16);
        span.record("exception.message", "transport error");
    });
    assert_eq!(sub["namespace"], "remote", "{sub:#}");
    assert_eq!(sub["fault"], true, "{sub:#}");
    assert_eq!(
        sub["cause"]["exceptions"][0]["message"], "transport error",
        "exception.message is the exception of the fault: {sub:#}"
    );
}

/// sqlx 0.7/0.8 (launchbadge/sqlx, `sqlx-core/src/logger.rs`
/// `QueryLogger::finish`): every query ends with
/// `private_tracing_dynamic_event!(target: "sqlx::query", level, summary,
/// db.statement = sql, rows_affected, rows_returned, ?elapsed,
/// elapsed_secs)` (INFO/DEBUG by `LogSettings`), an event inside the
/// caller's span; `db.statement` is the full query text (literals
/// included).
///
/// README: query text goes to `sql.sanitized_query` "only with
/// `with_sql_queries(true)`", and on spans without it the text is dropped
/// ("Opted out: the text is dropped, not kept as metadata",
/// `Conventions::apply`). With `with_events(true)` and no
/// `with_sql_queries`, sqlx's event carried the whole statement, the
/// customer's e-mail literal included, into `metadata.tracing.events`.
#[test]
fn sqlx_query_event_does_not_send_the_statement_without_sql_queries() {
    let traces = run(
        |b| b.with_events(true),
        || {
            let _root = info_span!("request").entered();
            tracing::event!(
                target: "sqlx::query",
                Level::INFO,
                summary = "select id, name from …",
                db.statement = "\n\nSELECT id, name FROM users WHERE email = 'alice@example.com'\n",
                rows_affected = 0_u64,
                rows_returned = 1_u64,
                elapsed = ?std::time::Duration::from_micros(1200),
                elapsed_secs = 0.0012_f64,
            );
        },
    );
    let text = serde_json::to_string(&traces).unwrap();
    assert!(
        text.contains("rows_returned"),
        "the event is kept (with_events): {text}"
    );
    assert!(
        !text.contains("alice@example.com"),
        "the query text is sent without with_sql_queries: {text}"
    );
}

fn flags(d: &Value) -> (bool, bool, bool) {
    (
        d.get("fault") == Some(&Value::Bool(true)),
        d.get("error") == Some(&Value::Bool(true)),
        d.get("throttle") == Some(&Value::Bool(true)),
    )
}

/// tonic-tracing-opentelemetry's server layer
/// (davidB/tracing-opentelemetry-instrumentation-sdk,
/// `tracing-opentelemetry-instrumentation-sdk/src/http/grpc.rs`,
/// `make_span_from_request(req, SpanKind::Server)` via `otel_trace_span!`:
/// TRACE span `"GRPC request"`, target `otel::tracing`, fields
/// `http.user_agent`, `otel.name = "{service}/{method}"`, `otel.kind =
/// ?kind`, `otel.status_code = Empty`, `rpc.system = "grpc"`,
/// `rpc.service`, `rpc.method`, `rpc.grpc.status_code = Empty`,
/// `server.address`, `exception.message = Empty`, `exception.details =
/// Empty`). `update_span_from_response` records `rpc.grpc.status_code`
/// (from the `grpc-status` header) and, on a server, `otel.status_code =
/// "OK"` for every code but 2, 4, 12, 13, 14, 15 (`status_is_error`,
/// following OpenTelemetry's gRPC conventions, where a server's span is
/// not in error for the caller's mistakes).
///
/// A server answering RESOURCE_EXHAUSTED (8) is rate limiting its caller:
/// google.rpc.Code maps it to HTTP 429 (googleapis
/// `google/rpc/code.proto`: "RESOURCE_EXHAUSTED = 8; HTTP Mapping: 429 Too
/// Many Requests"), which tracing-xray turns into `throttle` + `error`
/// for HTTP. X-Ray's `throttle` flag exists for exactly this; the segment
/// got no flag at all (`rpc.grpc.status_code` was read by nothing), so
/// the X-Ray console counted the throttled requests as successes.
#[test]
fn grpc_server_resource_exhausted_is_a_throttle() {
    let traces = run(
        |b| b,
        || {
            let span = tracing::span!(
                target: "otel::tracing",
                Level::TRACE,
                "GRPC request",
                http.user_agent = %"grpc-go/1.64.0",
                otel.name = "helloworld.Greeter/SayHello",
                otel.kind = ?SpanKind::Server,
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %"helloworld.Greeter",
                rpc.method = %"SayHello",
                rpc.grpc.status_code = Empty,
                server.address = %"greeter.internal:50051",
                exception.message = Empty,
                exception.details = Empty,
            );
            span.record("rpc.grpc.status_code", 8_u16);
            span.record("otel.status_code", "OK");
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    assert_eq!(
        flags(doc),
        (false, true, true),
        "RESOURCE_EXHAUSTED is a throttle (and an error): {doc:#}"
    );
    // X-Ray has no field for the code itself: it stays visible.
    assert_eq!(
        doc["metadata"]["tracing"]["rpc.grpc.status_code"], 8,
        "{doc:#}"
    );
}

/// tonic-tracing-opentelemetry's client layer (same file, `grpc.rs`,
/// `make_span_from_request(req, SpanKind::Client)`; the client's
/// `update_span_from_response(span, res, false)` records
/// `rpc.grpc.status_code` and `otel.status_code = "ERROR"` for any code
/// but 0, as OpenTelemetry's gRPC conventions say for clients).
///
/// The callee answered NOT_FOUND (5): the caller asked for something that
/// does not exist (google.rpc.Code: "NOT_FOUND = 5; HTTP Mapping: 404 Not
/// Found"). For an HTTP call answered 404, tracing-xray marks the
/// subsegment `error` (a client error), not `fault`; for the same answer
/// over gRPC it marked a `fault`, so the service map shows the callee
/// failing (red, "5xx") when the caller's request was at fault.
#[test]
fn grpc_client_not_found_is_an_error_not_a_fault() {
    let sub = only_child(|| {
        let span = tonic_client_span("inventory.Stock", "Get", "inventory.internal");
        span.record("rpc.grpc.status_code", 5_u16);
        span.record("otel.status_code", "ERROR");
    });
    assert_eq!(sub["namespace"], "remote", "{sub:#}");
    assert_eq!(
        flags(&sub),
        (false, true, false),
        "NOT_FOUND is the caller's error, not the callee's fault: {sub:#}"
    );
}

/// A tower-http gRPC server's request answered with `code`, as tower-http
/// logs it (see the test below for the source): its trace.
fn tower_http_grpc_response(code: i32) -> Vec<Value> {
    let traces = run(
        |b| b,
        || {
            let span = tracing::span!(
                target: "tower_http::trace::make_span",
                Level::DEBUG,
                "request",
                method = %"POST",
                uri = %"/helloworld.Greeter/SayHello",
                version = ?"HTTP/2.0",
            );
            let _e = span.enter();
            tracing::event!(
                target: "tower_http::trace::on_response",
                Level::DEBUG,
                latency = %"3 ms",
                status = code,
                "finished processing request"
            );
            tracing::event!(
                target: "tower_http::trace::on_failure",
                Level::ERROR,
                classification = %format!("Code: {code}"),
                latency = %"3 ms",
                "response failed"
            );
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    traces
}

/// tower-http 0.5/0.6 `TraceLayer::new_for_grpc()` (tower-rs/tower-http,
/// `tower-http/src/trace/make_span.rs`: DEBUG span `"request"`, target
/// `tower_http::trace::make_span`, fields `method`, `uri`, `version`;
/// `trace/on_response.rs` `DefaultOnResponse`: DEBUG event `"finished
/// processing request"`, target `tower_http::trace::on_response`, with
/// `latency` and `status = status(res)`, which for an `application/grpc`
/// response is the `grpc-status` code, here 8; `trace/on_failure.rs`
/// `DefaultOnFailure`: ERROR event `"response failed"`, target
/// `tower_http::trace::on_failure`, `classification = %failure_class`,
/// `latency`; `classify/grpc_errors_as_failures.rs`: `GrpcFailureClass`
/// displays as `"Code: 8"`, and by default every code but OK is a
/// failure).
///
/// The server answered RESOURCE_EXHAUSTED: a rate limit (HTTP 429 in
/// google.rpc.Code's mapping), which X-Ray records as `throttle` +
/// `error`. tracing-xray made the classified failure a `fault` whatever
/// its code, so a rate-limited caller shows as the server failing.
#[test]
fn tower_http_grpc_resource_exhausted_is_a_throttle() {
    let traces = tower_http_grpc_response(8);
    let doc = &traces[0];
    assert_eq!(
        flags(doc),
        (false, true, true),
        "RESOURCE_EXHAUSTED is a throttle (and an error): {doc:#}"
    );
}

/// The same tower-http gRPC server, answering INVALID_ARGUMENT (3):
/// `classification = "Code: 3"`. The caller sent a bad request
/// (google.rpc.Code: "HTTP Mapping: 400 Bad Request"; OpenTelemetry's gRPC
/// conventions leave a server span's status unset for it, as for an HTTP
/// 4xx). X-Ray's `error` is "a client error (4xx)", `fault` "a server
/// error (5xx)"; tracing-xray sent a `fault`.
#[test]
fn tower_http_grpc_invalid_argument_is_an_error_not_a_fault() {
    let traces = tower_http_grpc_response(3);
    let doc = &traces[0];
    assert_eq!(
        flags(doc),
        (false, true, false),
        "INVALID_ARGUMENT is the caller's error, not a fault: {doc:#}"
    );
}

/// The MongoDB Rust driver 2.x/3.x (mongodb/mongo-rust-driver,
/// `src/trace/command.rs` `CommandTracingEventEmitter`): every command logs
/// `tracing::debug!(target: "mongodb::command", topology_id, command =
/// <the command as extended JSON, up to 1000 bytes>, databaseName,
/// commandName, requestId, driverConnectionId, serverConnectionId,
/// serverHost, serverPort, serviceId, "Command started")`. The `command`
/// is the query itself, filter values and all.
///
/// README: other events' fields go to `metadata.tracing.events` with
/// `with_events(true)`, but "a query's text ... only with
/// `with_sql_queries(true)`" (queries may hold personal data; sqlx's
/// `db.statement` is held back). MongoDB's query text went out whole, the
/// customer's e-mail in its filter, without `with_sql_queries`.
#[test]
fn mongodb_command_event_does_not_send_the_query_without_sql_queries() {
    let traces = run(
        |b| b.with_events(true),
        || {
            let _root = info_span!("request").entered();
            tracing::event!(
                target: "mongodb::command",
                Level::DEBUG,
                topology_id = "665f1c2e9b1d4a0c8e7f3a21",
                command = "{\"find\":\"users\",\"filter\":{\"email\":\"alice@example.com\"},\"limit\":1,\"$db\":\"app\",\"lsid\":{\"id\":{\"$binary\":{\"base64\":\"AAAA\",\"subType\":\"04\"}}}}",
                databaseName = "app",
                commandName = "find",
                requestId = 7_i32,
                driverConnectionId = 1_u32,
                serverConnectionId = 42_i64,
                serverHost = "127.0.0.1",
                serverPort = 27017_u16,
                "Command started"
            );
        },
    );
    let text = serde_json::to_string(&traces).unwrap();
    assert!(
        text.contains("commandName"),
        "the event is kept (with_events): {text}"
    );
    assert!(
        !text.contains("alice@example.com"),
        "the query text is sent without with_sql_queries: {text}"
    );
}

/// axum-tracing-opentelemetry's server layer
/// (davidB/tracing-opentelemetry-instrumentation-sdk,
/// `tracing-opentelemetry-instrumentation-sdk/src/http/http_server.rs`
/// `make_span_from_request`: TRACE span `"HTTP request"`, target
/// `otel::tracing`, `http.request.method`, `http.route = Empty`,
/// `network.protocol.version`, `server.address = http_host(req)` (the
/// `Host` header), `user_agent.original`, `http.response.status_code =
/// Empty`, `url.path`, `url.query`, `url.scheme = url_scheme(req.uri())`,
/// `otel.name`, `otel.kind = ?SpanKind::Server`, ...). `http/tools.rs`:
/// `url_scheme` is `uri.scheme_str().unwrap_or_default()`, and a server
/// receives an origin-form URI (`/orders/7`, no scheme) for every HTTP/1.1
/// request: `url.scheme` is `""`.
///
/// An empty scheme is no scheme: the segment's `http.request.url` must
/// be `http://localhost:3000/orders/7`, as tracing-xray builds it when
/// `url.scheme` is absent. It was `://localhost:3000/orders/7`, not a URL
/// (X-Ray's console and URL filters, `http.url CONTAINS`, group by it).
#[test]
fn axum_otel_server_span_empty_scheme_gives_a_valid_url() {
    let traces = run(
        |b| b,
        || {
            let span = tracing::span!(
                target: "otel::tracing",
                Level::TRACE,
                "HTTP request",
                http.request.method = %"GET",
                http.route = Empty,
                network.protocol.version = %"1.1",
                server.address = "localhost:3000",
                http.client.address = Empty,
                user_agent.original = "curl/8.5.0",
                http.response.status_code = Empty,
                url.path = "/orders/7",
                url.query = "page=2",
                url.scheme = "",
                otel.name = %"GET",
                otel.kind = ?SpanKind::Server,
                otel.status_code = Empty,
                trace_id = Empty,
                request_id = Empty,
                exception.message = Empty,
                "span.type" = "web",
            );
            span.record("http.route", "/orders/{id}");
            span.record("otel.name", "GET /orders/{id}");
            span.record(
                "http.response.status_code",
                tracing::field::display(200_u16),
            );
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    assert_eq!(doc["http"]["response"]["status"], 200, "{doc:#}");
    assert_eq!(
        doc["http"]["request"]["url"], "http://localhost:3000/orders/7",
        "an empty url.scheme is no scheme: {doc:#}"
    );
}

/// A web framework's root span records `exception.message` when the handler
/// fails (tracing-actix-web), and a handler that also logs at ERROR level
/// gives the span an ERROR event: both texts are the span's exceptions (the
/// field's was lost when the span had an error of its own).
#[test]
fn exception_message_is_kept_beside_an_error_event() {
    let traces = run(
        |b| b,
        || {
            let span = info_span!(
                "HTTP request",
                http.method = "GET",
                http.target = "/orders/7",
                http.status_code = Empty,
                exception.message = Empty,
            );
            span.in_scope(|| {
                tracing::error!("database unavailable, retrying");
            });
            span.record("http.status_code", 500_u64);
            span.record("exception.message", "order 7 could not be loaded");
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let messages = common::exception_messages(&traces[0]);
    assert_eq!(
        messages,
        [
            "database unavailable, retrying",
            "order 7 could not be loaded"
        ],
        "{:#}",
        traces[0]
    );
}

/// With every field indexed, an error's longer text is an annotation like
/// any field, without the URL's secrets, whether or not it names a URL.
#[test]
fn error_text_indexed_as_an_annotation_has_no_url_secrets() {
    let traces = run(
        |b| b.with_all_fields_indexed(true),
        || {
            info_span!(
                "HTTP request",
                error.cause_chain =
                    "connect to https://api.example.com/v1/rates?api_key=SECRET123 failed",
                exception.details = "PoolTimedOut",
            )
            .in_scope(|| {});
        },
    );
    let doc = &traces[0];
    let annotations = &doc["annotations"];
    assert_eq!(
        annotations["error_cause_chain"], "connect to https://api.example.com/v1/rates failed",
        "{doc:#}"
    );
    assert_eq!(annotations["exception_details"], "PoolTimedOut", "{doc:#}");
    assert!(!doc.to_string().contains("SECRET123"), "{doc:#}");
}

/// An error's text indexed by name (`with_indexed_fields`) loses its URL
/// secrets too, as with every field indexed: it was annotated raw, query and
/// API key and all.
#[test]
fn explicitly_indexed_error_text_annotation_has_no_url_secrets() {
    let traces = run(
        |b| b.with_indexed_fields(&["error.cause_chain", "exception.message"]),
        || {
            info_span!(
                "HTTP request",
                error.cause_chain =
                    "connect to https://api.example.com/v1/rates?api_key=SECRET123 failed",
                exception.message =
                    "error sending request for url (https://api.example.com/v1/rates?api_key=SECRET123)",
            )
            .in_scope(|| {});
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let doc = &traces[0];
    assert!(
        !doc.to_string().contains("SECRET123"),
        "an indexed error text keeps the URL's query: {doc:#}"
    );
}

/// `exception.message` kept beside the span's ERROR events is not repeated:
/// a handler that logs the very error the framework records (an HTTP
/// client's error, which names the URL with its query) gets it once, and
/// every exception message loses the URL's secrets (the field's copy was
/// compared scrubbed, the event's as logged: it came twice).
#[test]
fn exception_message_naming_a_url_beside_the_same_error_event_is_one_exception() {
    const TEXT: &str =
        "error sending request for url (https://api.example.com/v1/rates?api_key=k1)";
    let traces = run(
        |b| b,
        || {
            let span = info_span!(
                "HTTP request",
                http.method = "GET",
                http.target = "/rates",
                http.status_code = Empty,
                exception.message = Empty,
            );
            span.in_scope(|| tracing::error!("{TEXT}"));
            span.record("http.status_code", 502_u64);
            span.record("exception.message", TEXT);
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let exceptions = traces[0]["cause"]["exceptions"]
        .as_array()
        .expect("exceptions");
    assert_eq!(
        exceptions.len(),
        1,
        "the same error is repeated: {:#}",
        traces[0]
    );
}

/// README: a span's errors give "8 per span, the rest counted in
/// `stats()` and the span's `metadata.tracing_xray.exceptions_dropped`".
/// The `exception.message` kept beside them counts against that bound (it
/// was added past it, uncounted).
#[test]
fn exception_message_beside_eight_errors_keeps_the_per_span_bound() {
    let traces = run(
        |b| b,
        || {
            let span = info_span!("req", exception.message = Empty);
            span.in_scope(|| {
                for i in 0..11 {
                    tracing::error!(attempt = i, "attempt failed");
                }
            });
            span.record("exception.message", "the request failed");
        },
    );
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let exceptions = traces[0]["cause"]["exceptions"]
        .as_array()
        .expect("exceptions");
    assert!(
        exceptions.len() <= 8,
        "{} exceptions on one span: {:#}",
        exceptions.len(),
        traces[0]
    );
}

/// sqlx 0.7/0.8 (`sqlx-core/src/logger.rs` `QueryLogger::finish`): the
/// event's `summary` is `parse_query_summary(sql)`, the query's first four
/// words (`sql.split_whitespace().take(4)`) plus " …" (and the whole query
/// when it has four words or fewer, `db.statement` then being empty).
/// Without `with_sql_queries`, `summary` is held back with `db.statement`
/// (the literal in the first four words went out).
#[test]
fn sqlx_event_summary_does_not_send_query_literals_without_sql_queries() {
    let traces = run(
        |b| b.with_events(true),
        || {
            let _root = info_span!("request").entered();
            tracing::event!(
                target: "sqlx::query",
                Level::INFO,
                summary = "UPDATE users SET email='alice@example.com' …",
                db.statement = "\n\nUPDATE\n  users\nSET\n  email = 'alice@example.com'\nWHERE\n  id = 7\n",
                rows_affected = 1_u64,
                rows_returned = 0_u64,
                elapsed = ?std::time::Duration::from_micros(900),
                elapsed_secs = 0.0009_f64,
            );
        },
    );
    let text = serde_json::to_string(&traces).unwrap();
    assert!(
        text.contains("rows_affected"),
        "the event is kept (with_events): {text}"
    );
    assert!(
        !text.contains("alice@example.com"),
        "the query's literal is sent without with_sql_queries: {text}"
    );
}
