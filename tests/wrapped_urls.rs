//! URLs recorded with `?` (`"https://…"`, `Some("https://…")`, a tuple of
//! them, `None`): found by a second and a third review of this stop's fixes
//! (the first review's are in `tests/secrets_in_documents.rs`). Each test
//! failed before its fix.

mod common;

use common::capture_documents;
use serde_json::Value;
use tracing::info_span;

/// The `http.request.url` a client call made by `record` (one span under a
/// root) gets, and its subsegment's name.
fn call_url(record: impl FnOnce()) -> (Value, Value) {
    let c = capture_documents(|b| b, || info_span!("request").in_scope(record));
    let root = &c.docs[0];
    let call = &root["subsegments"][0];
    (call["http"]["request"]["url"].clone(), call["name"].clone())
}

// ---------------------------------------------------------------------------
// Found by the review, 1 (fb71911, `url_start` / `plain_url`). A quoted or `Some(..)`
// `url.full` with no path keeps the wrapping's closing quote (and
// parenthesis) in `http.request.url`.
//
// A user records a base URL with `?` (`url.full = ?endpoint` with
// `endpoint: String`, or `?Option<String>`), a URL with no path:
// `"https://api.example.com"`. README, the `url.full` row: "`http.request.url`:
// scheme, host, port and path only (user info, query and fragment are never
// sent, after blanks, quoted, or as a `url::Url`'s `Debug` too ...)", and
// fb71911's rustdoc of `plain_url`'s wrapped case: "the URL alone, to the
// quote, blank or parenthesis after it". `url_authority` runs the authority
// to the first `/`, `?` or `#`, so with no path it takes the closing `"`
// (and `)`) in; `plain_url` then looks for the closing quote only after the
// authority, finds none, and sends `https://api.example.com"` (and
// `https://api.example.com:8443")` for `?Some(..)`: the console shows,
// groups and filters on a URL no other call of the service has). The
// subsegment's name is right; with a path (`/v1`) the URL is too.
// ---------------------------------------------------------------------------
#[test]
fn a_quoted_url_full_without_a_path_has_no_quote_in_its_url() {
    let (plain_url, plain_name) = call_url(|| {
        info_span!(
            "call",
            otel.kind = "client",
            url.full = "https://api.example.com"
        )
        .in_scope(|| {});
    });
    assert_eq!(plain_name, "api.example.com", "control");
    let (url, name) = call_url(|| {
        let url = String::from("https://api.example.com");
        info_span!("call", otel.kind = "client", url.full = ?url).in_scope(|| {});
    });
    assert_eq!(
        (&url, &name),
        (&plain_url, &plain_name),
        "url.full = ?String without a path"
    );
}

#[test]
fn an_optional_url_full_with_a_port_and_no_path_has_no_wrapping_in_its_url() {
    let (url, name) = call_url(|| {
        let url = Some(String::from("https://svc:pw@api.example.com:8443"));
        info_span!("call", otel.kind = "client", url.full = ?url).in_scope(|| {});
    });
    assert_eq!(
        (url.as_str(), name.as_str()),
        (
            Some("https://api.example.com:8443"),
            Some("api.example.com")
        ),
        "url.full = ?Some(String) without a path"
    );
}

// ---------------------------------------------------------------------------
// Found by the review, 2 (fb71911, `plain_url`'s wrapped case). A quoted `url.full` whose
// path holds a `)` or a `'` (both legal in a path, RFC 3986 sub-delims:
// Wikipedia's `/wiki/Rust_(programming_language)`, `/authors/o'brien`) is
// cut there.
//
// A user records `url.full = ?url` (a `String`). README as above: the URL's
// "scheme, host, port and path", quoted too. The wrapped case ends the URL
// at the first blank, `"`, `'` or `)` after the authority, whatever the
// wrapping opened with: `"https://en.wikipedia.org/wiki/Rust_(programming_language)"`
// goes out as `https://en.wikipedia.org/wiki/Rust_(programming_language`
// and `"https://h/authors/o'brien/books"` as `https://h/authors/o`. The same
// value recorded with `%` (no quotes) keeps its path whole.
// ---------------------------------------------------------------------------
#[test]
fn a_quoted_url_full_keeps_a_path_with_a_parenthesis_or_an_apostrophe() {
    for path in [
        "/wiki/Rust_(programming_language)",
        "/authors/o'brien/books",
    ] {
        let full = format!("https://en.wikipedia.org{path}");
        let (plain, _) = call_url(|| {
            info_span!("call", otel.kind = "client", url.full = %full).in_scope(|| {});
        });
        assert_eq!(plain.as_str(), Some(full.as_str()), "control");
        let (quoted, _) = call_url(|| {
            info_span!("call", otel.kind = "client", url.full = ?full).in_scope(|| {});
        });
        assert_eq!(quoted, plain, "url.full = ?String with the path {path}");
    }
}

// ---------------------------------------------------------------------------
// Found by the review, 3 (checked for fb71911's "host/port the sampler gets from a
// wrapped url.full"; the sampler's side predates it). A root whose
// `url.full` is quoted (`?String`) is sampled with a path that ends in the
// quote, so a rule on the path does not match it.
//
// A user's root span records `url.full = ?url` and the rules sample
// nothing on `/health` (README, "Sampling", the rules example:
// `"url_path": "/health", "fixed_target": 0, "rate": 0.0`). README,
// "Sampling", 2: "the sampler decides, seeing the request's host, method and
// URL path (from the root span's fields: ... `url.full` ...)"; the `url.full`
// row says a quoted value is understood (`http.request.url` is
// `https://h/health`). The sampler is given `path_of_url` of the raw value:
// `/health"` (`/health")` for `?Some(..)`), which `/health` does not match,
// so every health check is traced by the default rule.
// ---------------------------------------------------------------------------
#[test]
fn a_quoted_url_full_on_a_root_is_sampled_by_its_path() {
    let rules = || {
        tracing_xray::sampling::LocalRules::from_json(
            r#"{
  "version": 2,
  "default": { "fixed_target": 0, "rate": 1.0 },
  "rules": [
    { "description": "health checks", "host": "*", "http_method": "*",
      "url_path": "/health", "fixed_target": 0, "rate": 0.0 }
  ]
}"#,
        )
        .unwrap()
    };
    let plain = capture_documents(
        |b| b.with_sampler(rules()),
        || {
            info_span!("request", url.full = "https://h/health").in_scope(|| {});
        },
    );
    assert!(plain.docs.is_empty(), "control: {:#?}", plain.docs);
    let quoted = capture_documents(
        |b| b.with_sampler(rules()),
        || {
            let url = String::from("https://h/health");
            info_span!("request", url.full = ?url).in_scope(|| {});
        },
    );
    assert!(
        quoted.docs.is_empty(),
        "a health check recorded with url.full = ?String was sampled: {:#?}",
        quoted.docs
    );
}

// ---------------------------------------------------------------------------
// Found by a third review (38604b5, `unwrapped_url`'s "to the LAST
// quote" rule: a regression). A
// wrapped `url.full` whose `Debug` holds a second URL after the first sends
// that second URL's user info.
//
// A user records a value with two URLs with `?`, a tuple (`url.full =
// ?(primary, fallback)`) or a tuple variant (`Mirrored("…", "…")`: the
// wrapping `url_start` accepts is any name and a parenthesis). README, the
// `url.full` row: "`http.request.url`: scheme, host, port and path only
// (user info, query and fragment are never sent; a URL recorded with `?`,
// quoted or as `Some("…")`, or after blanks, is the URL alone ...)". Before
// 38604b5 the wrapped URL ended at the first quote after its authority
// (`https://api.example.com/v1`); now it runs to the LAST `"` of the text,
// so the URL is `https://api.example.com/v1", "https://svc:pw@backup/v1`:
// `plain_url` takes the first authority (no `@` in it) and the query off,
// and `svc:pw` goes out in `http.request.url`.
// ---------------------------------------------------------------------------
#[test]
fn a_wrapped_url_full_followed_by_a_second_url_sends_no_user_info() {
    let (url, _) = call_url(|| {
        let urls = (
            "https://api.example.com/v1",
            "https://svc:pw@backup.example.com/v1?token=t0k",
        );
        info_span!("call", otel.kind = "client", url.full = ?urls).in_scope(|| {});
    });
    let url = url.as_str().unwrap_or_default();
    assert!(
        !url.contains("svc:pw") && !url.contains('"'),
        "url.full = ?(String, String): http.request.url is {url:?}"
    );
}

// ---------------------------------------------------------------------------
// Found by a third review (`url.full = ?None`). An `Option` URL recorded with `?` that is `None`
// is sent as the URL `None`, and hides the URL the other fields make.
//
// A client wrapper records `url.full = ?self.endpoint` (an
// `Option<String>`, the README's own `Some("…")` case) along with
// `url.scheme`, `server.address` and `url.path`. README, the `url.full` row:
// "`url.full` / `http.url`, or `url.scheme` + `server.address`/`http.host`
// + `server.port` + `url.path`/`http.target` | `http.request.url`: scheme,
// host, port and path only (... a URL recorded with `?`, quoted or as
// `Some("…")` ... is the URL alone ...)"; and "A field below given an empty
// string is left out". With `None`, `http.request.url` is the text `None`
// (no scheme, no host: the console shows and groups a URL "None"), where the
// same span without `url.full` gets `https://api.example.com/orders`.
// ---------------------------------------------------------------------------
#[test]
fn an_absent_optional_url_full_is_no_url() {
    let (control, _) = call_url(|| {
        info_span!(
            "call",
            otel.kind = "client",
            url.scheme = "https",
            server.address = "api.example.com",
            url.path = "/orders"
        )
        .in_scope(|| {});
    });
    assert_eq!(
        control.as_str(),
        Some("https://api.example.com/orders"),
        "control"
    );
    let (url, _) = call_url(|| {
        let endpoint: Option<String> = None;
        info_span!(
            "call",
            otel.kind = "client",
            url.full = ?endpoint,
            url.scheme = "https",
            server.address = "api.example.com",
            url.path = "/orders"
        )
        .in_scope(|| {});
    });
    assert_eq!(url, control, "url.full = ?None");
}

// ---------------------------------------------------------------------------
// Found by a third review (`url.full = ?None` and the sampler). A root whose `url.full` is
// `?None` is sampled with the path `/`, which outranks its route: a rule on
// the route does not match it.
//
// A service's root span records `url.full = ?full_url` (an
// `Option<String>`, `None` until known) and `http.route = "/health"`; the
// rules sample nothing on `/health`. README, "Sampling", 2: "the sampler
// decides, seeing the request's host, method and URL path (from the root
// span's fields: ..., `url.path`/`http.target`/`uri`/`url.full`/`http.url`,
// then the route `http.route`, ...; an absent or empty value matches any
// pattern)". `path_of_url("None")` (no `://`) is `/`, a path, so `/` is
// offered above the route and the health check is traced by the default
// rule. The same root without `url.full` is not sampled.
// ---------------------------------------------------------------------------
#[test]
fn an_absent_optional_url_full_leaves_the_route_to_the_sampler() {
    let rules = || {
        tracing_xray::sampling::LocalRules::from_json(
            r#"{
  "version": 2,
  "default": { "fixed_target": 0, "rate": 1.0 },
  "rules": [
    { "description": "health checks", "host": "*", "http_method": "*",
      "url_path": "/health", "fixed_target": 0, "rate": 0.0 }
  ]
}"#,
        )
        .unwrap()
    };
    let control = capture_documents(
        |b| b.with_sampler(rules()),
        || {
            info_span!("request", http.route = "/health").in_scope(|| {});
        },
    );
    assert!(control.docs.is_empty(), "control: {:#?}", control.docs);
    let with_none = capture_documents(
        |b| b.with_sampler(rules()),
        || {
            let full: Option<String> = None;
            info_span!("request", url.full = ?full, http.route = "/health").in_scope(|| {});
        },
    );
    assert!(
        with_none.docs.is_empty(),
        "a health check with url.full = ?None was sampled: {:#?}",
        with_none.docs
    );
}

// ---------------------------------------------------------------------------
// Found by a third review (`url_start` / `unwrapped_url`: quoted AND after blanks). A URL read
// from a configuration file with a blank before it, recorded with `?`,
// sends its user info.
//
// A user records `url.full = ?endpoint` with `endpoint: String` read from a
// configuration file: `" https://svc:pw@api.example.com/v1"` (a blank kept
// before the URL). README, the `url.full` row: "(user info, query and
// fragment are never sent; a URL recorded with `?`, quoted or as
// `Some("…")`, or after blanks, is the URL alone ...)"; `url_start`'s
// rustdoc: "blanks (a value read from a configuration file: URL parsers
// skip them too), a quote (a `String` recorded with `?`, its `Debug`)".
// Each wrapping is understood alone, not both: the wrapping `" ` ends with
// a blank, not a quote, so the value is no URL, and `http.request.url` is
// the raw text up to the `?`: `" https://svc:pw@api.example.com/v1`, the
// password and the quote in it (and the call is named `call`, not after its
// host). The same text recorded with `%` sends `https://api.example.com/v1`.
// ---------------------------------------------------------------------------
#[test]
fn a_quoted_url_full_after_a_blank_sends_no_user_info() {
    let configured = " https://svc:pw@api.example.com/v1?token=t0k";
    let (plain, plain_name) = call_url(|| {
        info_span!("call", otel.kind = "client", url.full = %configured).in_scope(|| {});
    });
    assert_eq!(
        (plain.as_str(), plain_name.as_str()),
        (Some("https://api.example.com/v1"), Some("api.example.com")),
        "control: recorded with %"
    );
    for quoted in [
        format!("{:?}", configured),
        format!("{:?}", Some(configured)),
    ] {
        let (url, name) = call_url(|| {
            info_span!("call", otel.kind = "client", url.full = %quoted).in_scope(|| {});
        });
        assert_eq!(
            (&url, &name),
            (&plain, &plain_name),
            "url.full = {quoted} (what ? records)"
        );
    }
}

// ---------------------------------------------------------------------------
// Found by a third review (`without_password`, same cause as 4). A connection string read from a
// configuration file with a blank before it, recorded with `?`, sends its
// password in `sql.url` and in `messaging.url`'s metadata.
//
// A user records `db.connection_string = ?conn` (`conn: String` from a
// configuration file: `" postgres://app:pw@db.internal/orders"`). README, the
// `db.connection_string` row: "`sql.database_type`/`url`/`user`/
// `connection_string` (passwords removed: URL user info, ...; a URL after
// blanks or quoted, as `?conn` records it, too; ...)"; and for other fields
// kept as metadata, "`metadata.tracing.FIELD`, without a URL's or
// connection string's secrets" (`messaging.url` is treated as a connection
// string). Quoted alone, or after blanks alone, the password goes; quoted
// after a blank, `url_authority` finds no URL (the wrapping `" ` is not
// one `url_start` knows) and `sql.url` is
// `" postgres://app:pw@db.internal/orders"`, password and all; so is
// `metadata.tracing["messaging.url"]`.
// ---------------------------------------------------------------------------
#[test]
fn a_quoted_connection_string_after_a_blank_sends_no_password() {
    let sent = |conn: &str| {
        let c = capture_documents(
            |b| b,
            || {
                info_span!("request").in_scope(|| {
                    info_span!("q", db.system = "postgresql", db.connection_string = ?conn)
                        .in_scope(|| {});
                    info_span!("m", messaging.url = ?conn).in_scope(|| {});
                })
            },
        );
        c.raw.join("\n")
    };
    let control = sent("postgres://app:pw@db.internal/orders");
    assert!(
        !control.contains(":pw@") && control.contains("db.internal"),
        "control: quoted alone: {control}"
    );
    let raw = sent(" postgres://app:pw@db.internal/orders");
    assert!(
        !raw.contains(":pw@"),
        "db.connection_string / messaging.url = ?\" postgres://app:pw@…\": the password was sent: {raw}"
    );
}
