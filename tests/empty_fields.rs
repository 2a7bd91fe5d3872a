//! A field with a convention given an empty string is left out, as X-Ray
//! leaves out empty fields (README, "How spans map to X-Ray"): no empty URL,
//! user or error text is sent, not even as metadata, and an empty value
//! hides no other name from the sampler. Found by an audit of the README's
//! claims: what the user writes, what the README promises, what was sent.

mod common;

use common::capture_documents;
use serde_json::Value;
use tracing::info_span;

fn docs(
    configure: impl FnOnce(tracing_xray::Builder) -> tracing_xray::Builder,
    f: impl FnOnce(),
) -> Vec<Value> {
    capture_documents(configure, f).docs
}

/// Every `(node name, namespace, key)` of `docs` whose metadata value is the
/// empty string.
fn empty_metadata(docs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for n in common::nodes(docs) {
        if let Some(meta) = n["metadata"].as_object() {
            for (ns, entries) in meta {
                for (k, v) in entries.as_object().into_iter().flatten() {
                    if v == "" {
                        out.push(format!("{}: metadata.{ns}[{k:?}] = \"\"", n["name"]));
                    }
                }
            }
        }
    }
    out
}

/// An empty path makes no URL. README: "A field below given an empty
/// string is left out, as X-Ray leaves out empty fields"; SPEC §1.2: every
/// SDK omits empty optional fields. A span with `http.request.method =
/// "GET"`, `url.path = ""` (or `http.target = ""`) and no host sent
/// `"http":{"request":{"method":"GET","url":""}}`; on a plain child span,
/// `url.path = ""` alone added an `http` block holding only `"url":""`
/// (an empty path was read as a path, a path without a host as the URL).
#[test]
fn an_empty_url_path_sends_no_empty_url() {
    let d = docs(
        |b| b,
        || {
            info_span!("req", "http.request.method" = "GET", "url.path" = "").in_scope(|| {
                info_span!("child", "http.target" = "").in_scope(|| {});
            });
        },
    );
    let seg = &d[0];
    assert!(
        seg["http"]["request"].get("url").is_none(),
        "url.path = \"\" sent as an empty URL:\n{seg:#}"
    );
    let child = common::node(&d, "child");
    assert!(
        child.get("http").is_none(),
        "http.target = \"\" sent as an http block with an empty URL:\n{child:#}"
    );
}

/// An empty user is none. README: "A field below given an empty string is
/// left out, as X-Ray leaves out empty fields (`enduser.id = \"\"` sends no
/// user)". An anonymous request recorded as `enduser.id = ""` (or
/// `xray.user = ""`) sent no `user`, but `metadata.tracing["enduser.id"] =
/// ""` instead, on the segment and on any subsegment (a user that was none
/// went where values no field takes go).
#[test]
fn an_empty_user_is_left_out_not_sent_as_metadata() {
    let d = docs(
        |b| b,
        || {
            info_span!("req", "enduser.id" = "").in_scope(|| {
                info_span!("auth", "xray.user" = "").in_scope(|| {});
            });
        },
    );
    assert!(d[0].get("user").is_none(), "{:#}", d[0]);
    let empty = empty_metadata(&d);
    assert!(
        empty.is_empty(),
        "empty user fields sent: {empty:#?}\n{:#}",
        d[0]
    );
}

/// Empty error texts are left out. The README's mapping table names
/// `error.cause_chain`, `exception.details` and `exception.stacktrace`
/// ("stay metadata, without a URL's secrets either"), and says a field of
/// that table given an empty string is left out. A span whose
/// instrumentation recorded them empty (no cause chain, no stack trace
/// captured) sent `metadata.tracing["exception.stacktrace"] = ""` and so
/// on.
#[test]
fn empty_error_texts_are_left_out() {
    let d = docs(
        |b| b,
        || {
            info_span!("req").in_scope(|| {
                info_span!(
                    "call",
                    "error.type" = "Timeout",
                    "error.cause_chain" = "",
                    "exception.details" = "",
                    "exception.stacktrace" = ""
                )
                .in_scope(|| {});
            });
        },
    );
    let empty = empty_metadata(&d);
    assert!(
        empty.is_empty(),
        "empty error texts sent: {empty:#?}\n{:#}",
        d[0]
    );
}

/// An empty host hides no other from the sampler. README, "Sampling": the
/// sampler sees the request's host from "`http.host`/`server.address`/
/// `host`; an absent or empty value matches any pattern", and a field
/// given an empty string is left out. A root with `http.host = ""` (a
/// request without a Host header, recorded as `unwrap_or_default()`) and
/// `server.address = "internal.example.com"` was matched as if it had no
/// host: the rule for `public.example.com` (every request traced) took it,
/// where the default (none traced) should. The document itself uses
/// `server.address` as the host. (An empty `http.host` outranked
/// `server.address`, as an empty `url.path` did `http.route`.)
#[test]
fn an_empty_http_host_does_not_hide_the_server_address_from_the_sampler() {
    let rules = tracing_xray::sampling::LocalRules::from_json(
        r#"{
  "version": 2,
  "default": { "fixed_target": 0, "rate": 0.0 },
  "rules": [
    { "description": "public site", "host": "public.example.com", "http_method": "*",
      "url_path": "*", "fixed_target": 0, "rate": 1.0 }
  ]
}"#,
    )
    .unwrap();
    let d = docs(
        |b| b.with_sampler(rules),
        || {
            info_span!(
                "request",
                "http.host" = "",
                "server.address" = "internal.example.com",
                "http.request.method" = "GET",
                "url.path" = "/orders"
            )
            .in_scope(|| {});
        },
    );
    assert!(
        d.is_empty(),
        "a request to internal.example.com was sampled by the public.example.com rule:\n{d:#?}"
    );
}

/// An empty value hides no other name from the document either (a review
/// of the first fix, which made it hide none from the sampler only). A
/// request span records both names for its path (an instrumentation moving
/// from the old to the new semantic conventions, writing `url.path = ""`
/// when it has none yet): the empty `url.path` took the path's place,
/// `http.target = "/orders"` went to metadata, and the URL was
/// `http://example.com/`.
#[test]
fn an_empty_url_path_hides_no_other_path_from_the_document() {
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!(
                "request",
                "http.request.method" = "GET",
                "server.address" = "example.com",
                "http.target" = "/orders",
                "url.path" = ""
            )
            .in_scope(|| {});
        },
    );
    let seg = &c.docs[0];
    assert_eq!(
        seg["http"]["request"]["url"], "http://example.com/orders",
        "the empty url.path hid http.target: {seg:#}"
    );
}

/// The same with the host: an empty `http.host` recorded after
/// `server.address` took the host's place, and the URL was built without
/// a host.
#[test]
fn an_empty_http_host_hides_no_other_host_from_the_document() {
    let c = common::capture_documents(
        |b| b,
        || {
            info_span!(
                "request",
                "server.address" = "internal.example.com",
                "http.host" = "",
                "http.request.method" = "GET",
                "url.path" = "/orders"
            )
            .in_scope(|| {});
        },
    );
    let seg = &c.docs[0];
    assert_eq!(
        seg["http"]["request"]["url"], "http://internal.example.com/orders",
        "the empty http.host hid server.address: {seg:#}"
    );
}
