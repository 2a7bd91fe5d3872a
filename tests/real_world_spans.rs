//! Spans and events exactly as popular crates emit them (same names,
//! targets, levels, fields, fields recorded later), and what an X-Ray user
//! expects from them. Each test quotes the source it reproduces.

mod common;

use serde_json::Value;
use tracing::field::Empty;
use tracing::{info_span, Level};

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
        let span = tracing::span!(
            target: "reqwest_tracing::reqwest_otel_span_builder",
            Level::INFO,
            "HTTP request",
            http.request.method = %"GET",
            url.scheme = %"https",
            server.address = %"payments.example.com",
            server.port = %443_i64,
            user_agent.original = %"",
            otel.kind = "client",
            otel.name = %"GET",
            otel.status_code = Empty,
            http.response.status_code = Empty,
            error.message = Empty,
            error.cause_chain = Empty,
        );
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
            let span = tracing::span!(
                target: "reqwest_tracing::reqwest_otel_span_builder",
                Level::INFO,
                "HTTP request",
                http.request.method = %"GET",
                url.scheme = %"https",
                server.address = %"api.example.com",
                server.port = %443_i64,
                user_agent.original = %"",
                otel.kind = "client",
                otel.name = %"GET",
                otel.status_code = Empty,
                http.response.status_code = Empty,
                error.message = Empty,
                error.cause_chain = Empty,
            );
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
        let span = tracing::span!(
            target: "otel::tracing",
            Level::TRACE,
            "GRPC request",
            http.user_agent = %"tonic/0.12.3",
            otel.name = "helloworld.Greeter/SayHello",
            otel.kind = ?SpanKind::Client,
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %"helloworld.Greeter",
            rpc.method = %"SayHello",
            rpc.grpc.status_code = Empty,
            server.address = %"greeter.internal",
            exception.message = Empty,
            exception.details = Empty,
        );
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
