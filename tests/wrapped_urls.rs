//! URLs recorded with `?` (`"https://…"`, `Some("https://…")`, a tuple of
//! them, `None`), and URLs in a value's `Debug` that is no URL (a tuple
//! after a method, a struct, a list): found by the second, third and fourth
//! reviews of this stop's fixes (the first review's are in
//! `tests/secrets_in_documents.rs`). Each test failed before its fix.

mod common;

use std::sync::{Arc, Mutex};

use common::capture_documents;
use serde_json::Value;
use tracing::info_span;
use tracing_xray::sampling::{Sampler, SamplingDecision, SamplingRequest};

/// The `http.request.url` a client call made by `record` (one span under a
/// root) gets, and its subsegment's name.
fn call_url(record: impl FnOnce()) -> (Value, Value) {
    let c = capture_documents(|b| b, || info_span!("request").in_scope(record));
    let root = &c.docs[0];
    let call = &root["subsegments"][0];
    (call["http"]["request"]["url"].clone(), call["name"].clone())
}

// ---------------------------------------------------------------------------
// Found by the review, 1 (fb71911, `url_start` / `plain_url`). A quoted or
// `Some(..)`
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
// Found by the review, 2 (fb71911, `plain_url`'s wrapped case). A quoted
// `url.full` whose
// path holds a `)` or a `'` (both legal in a path, RFC 3986 sub-delims:
// Wikipedia's `/wiki/Rust_(programming_language)`, `/authors/o'brien`) is
// cut there.
//
// A user records `url.full = ?url` (a `String`). README as above: the URL's
// "scheme, host, port and path", quoted too. The wrapped case ends the URL
// at the first blank, `"`, `'` or `)` after the authority, whatever the
// wrapping opened with:
// `"https://en.wikipedia.org/wiki/Rust_(programming_language)"`
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
// Found by the review, 3 (checked for fb71911's "host/port the sampler gets
// from a
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
// Found by a third review (`url.full = ?None`). An `Option` URL recorded with
// `?` that is `None`
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
// Found by a third review (`url.full = ?None` and the sampler). A root whose
// `url.full` is
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
// Found by a third review (`url_start` / `unwrapped_url`: quoted AND after
// blanks). A URL read
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
// Found by a third review (`without_password`, same cause as 4). A connection
// string read from a
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

// ===========================================================================
// The fourth review

const SECRET: &str = "S3CR3T-xyz";

/// The raw documents `record` (run under a root span `request`) sends.
fn documents(record: impl FnOnce()) -> (Vec<String>, Vec<Value>) {
    let c = capture_documents(|b| b, || info_span!("request").in_scope(record));
    // A check for a secret's absence means nothing without a document.
    assert!(!c.raw.is_empty(), "no document was sent");
    (c.raw, c.docs)
}

fn assert_no_secret(what: &str, raw: &[String]) {
    let leaked: Vec<&String> = raw.iter().filter(|d| d.contains(SECRET)).collect();
    assert!(
        leaked.is_empty(),
        "{what}: the secret {SECRET:?} reached an exported document:\n{}",
        leaked
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 1. A URL in a tuple whose first element is not a
// URL is sent whole,
// user info and all, as `http.request.url`.
//
// A user records the request line as a tuple: `url.full = ?(method, url)`
// (`("GET", "https://svc:S3CR3T-xyz@api.example.com/v1/items")`). README,
// `url.full` row: "`http.request.url`: scheme, host, port and path only
// (user info, query and fragment are never sent; a URL recorded with `?`,
// quoted, as `Some("…")` or in a tuple, or after blanks, is the URL alone
// (the first, of several) ...". `url_start` takes only blanks, a quote and
// `Name(` as a wrapping: `("GET", "` is refused, so `unwrapped_url` returns
// the text, `url_authority` finds no URL, and `plain_url` falls back to
// "the text up to its first `?` or `#`", verbatim: the document has
// `"url":"(\"GET\", \"https://svc:S3CR3T-xyz@api.example.com/v1/items\")"`.
// ---------------------------------------------------------------------------
#[test]
fn a_url_in_a_tuple_after_its_method_loses_its_user_info() {
    let url = format!("https://svc:{SECRET}@api.example.com/v1/items");
    let (raw, docs) = documents(|| {
        info_span!("call", otel.kind = "client", url.full = ?("GET", url.as_str())).in_scope(|| {});
    });
    assert_no_secret("url.full = ?(\"GET\", url)", &raw);
    assert_eq!(
        docs[0]["subsegments"][0]["http"]["request"]["url"],
        "https://api.example.com/v1/items"
    );
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 2. Any other wrapping `url_start` refuses sends the
// URL verbatim,
// password included, in `http.request.url` and in `sql.url` /
// `messaging.url`: a `#[derive(Debug)]` struct (`Endpoint { url: "…" }`),
// an `Option<Option<String>>` (`Some(Some("…"))`), a `Vec<String>`
// (`["…"]`).
//
// A user records a config value with `?`: `url.full = ?endpoint`,
// `db.connection_string = ?db_config`. README, `url.full` row: "user info,
// query and fragment are never sent"; `db.connection_string` row:
// "passwords removed: URL user info, ... a URL after blanks or quoted, as
// `?conn` records it, too". `plain_url` and `without_password` only scrub
// a URL that starts the text or follows a wrapping `url_start` accepts
// (blanks, a quote, `Name(`); anything else (`Endpoint { url: "`,
// `Some(Some("`, `["`, or `GET ` before the URL) makes the text "no URL",
// and it leaves as it is: `"url":"Endpoint { url: \"https://svc:S3CR3T-xyz@…\"
// }"`,
// `"sql":{"url":"Some(Some(\"postgres://app:S3CR3T-xyz@…\"))"}`. (Error
// texts, through `without_url_secrets`, scrub all of these: the fallback
// could be the same.)
// ---------------------------------------------------------------------------
#[derive(Debug)]
#[allow(dead_code)] // read through Debug only
struct Endpoint {
    url: String,
}

#[test]
fn a_url_in_a_wrapping_url_start_refuses_loses_its_secrets() {
    let url = format!("https://svc:{SECRET}@api.example.com/v1/items");
    let conn = format!("postgres://app:{SECRET}@db.internal:5432/orders");
    let mut failures = Vec::new();
    let mut check = |what: &str, record: &dyn Fn()| {
        let (raw, _) = documents(record);
        if raw.iter().any(|d| d.contains(SECRET)) {
            failures.push(format!("{what}: {}", raw.join("\n")));
        }
    };
    check("url.full = ?Endpoint { url }", &|| {
        let e = Endpoint { url: url.clone() };
        info_span!("call", otel.kind = "client", url.full = ?e).in_scope(|| {});
    });
    check("url.full = ?Some(Some(url))", &|| {
        let u = Some(Some(url.clone()));
        info_span!("call", otel.kind = "client", url.full = ?u).in_scope(|| {});
    });
    check("url.full = ?vec![url]", &|| {
        let u = vec![url.clone()];
        info_span!("call", otel.kind = "client", url.full = ?u).in_scope(|| {});
    });
    check("url.full = %format!(\"GET {url}\")", &|| {
        let line = format!("GET {url}");
        info_span!("call", otel.kind = "client", url.full = %line).in_scope(|| {});
    });
    check("db.connection_string = ?Endpoint { url }", &|| {
        let e = Endpoint { url: conn.clone() };
        info_span!("q", db.system = "postgresql", db.connection_string = ?e).in_scope(|| {});
    });
    check("db.connection_string = ?Some(Some(conn))", &|| {
        let c = Some(Some(conn.clone()));
        info_span!("q", db.system = "postgresql", db.connection_string = ?c).in_scope(|| {});
    });
    check("messaging.url = ?vec![conn]", &|| {
        let c = vec![conn.replace("postgres", "amqp")];
        info_span!("publish", otel.kind = "producer", messaging.url = ?c).in_scope(|| {});
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 3. Two connection strings recorded as a tuple: the
// second one's
// password is sent, in `sql.url` and in `messaging.url`'s metadata.
//
// A user records a primary and its replica: `db.connection_string =
// ?(primary, replica)`, `("postgres://app@primary/orders",
// "postgres://app:S3CR3T-xyz@replica/orders")`. 834864f fixed exactly this
// for `url.full` ("a tuple of two URLs recorded with ? sent the second
// one's user info"), but `without_password` does not unwrap: it runs
// `url_authority` over the whole text (the first URL's authority) and
// sends the rest as it is. README, `db.connection_string` row: "passwords
// removed: URL user info, ... a URL after blanks or quoted, as `?conn`
// records it, too".
// ---------------------------------------------------------------------------
#[test]
fn the_second_connection_string_of_a_tuple_loses_its_password() {
    let primary = String::from("postgres://app@primary.internal:5432/orders");
    let replica = format!("postgres://app:{SECRET}@replica.internal:5432/orders");
    let (raw, _) = documents(|| {
        let pair = (primary.clone(), replica.clone());
        info_span!("q", db.system = "postgresql", db.connection_string = ?pair).in_scope(|| {});
    });
    assert_no_secret("db.connection_string = ?(primary, replica)", &raw);
    let (raw, _) = documents(|| {
        let pair = (
            primary.replace("postgres", "amqp"),
            replica.replace("postgres", "amqp"),
        );
        info_span!("publish", otel.kind = "producer", messaging.url = ?pair).in_scope(|| {});
    });
    assert_no_secret("messaging.url = ?(primary, replica)", &raw);
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 4. `url.full = ?Some(uri)` with an `http::Uri`
// whose password
// holds a `)` sends the user name and the password's start as the URL, and
// names the subsegment after the user.
//
// A user records an `Option<http::Uri>` (hyper's / axum's `Uri`) with `?`.
// `Uri`'s `Debug` is its text, unquoted:
// `Some(https://svc:S3CR3T-xyz)x@api.example.com/v1/items)`.
// A `)` is legal, raw, in user info (RFC 3986 sub-delims; `Uri` parses it,
// and `url::Url` leaves it unescaped too). README, `url.full` row:
// "user info ... never sent; a URL recorded with `?`, ... as `Some("…")`
// ... is the URL alone". `unwrapped_url` ends a `(`-wrapped URL at the
// first `)` it does not open, inside the password: `https://svc:S3CR3T-xyz`,
// whose "authority" `svc:S3CR3T-xyz` has no `@` left, so the document has
// `"url":"https://svc:S3CR3T-xyz"` and `"name":"svc"`. (Error texts handle
// this: "a password's own `(`, `)` and `'` are the URL's (it runs at least
// to the last `@` of its authority)", rustdoc of `without_url_secrets`.)
// The same with `'` in the password of a `'…'`-quoted URL.
// ---------------------------------------------------------------------------
#[test]
fn an_optional_uri_with_a_paren_in_its_password_loses_its_user_info() {
    let uri: hyper::Uri = format!("https://svc:{SECRET})x@api.example.com/v1/items")
        .parse()
        .expect("http::Uri takes a `)` in user info");
    assert_eq!(uri.host(), Some("api.example.com"), "control");
    let (raw, docs) = documents(|| {
        let uri = Some(uri.clone());
        info_span!("call", otel.kind = "client", url.full = ?uri).in_scope(|| {});
    });
    let call = &docs[0]["subsegments"][0];
    assert_eq!(
        (&call["http"]["request"]["url"], &call["name"]),
        (
            &Value::from("https://api.example.com/v1/items"),
            &Value::from("api.example.com")
        ),
        "url.full = ?Some(http::Uri): {call}"
    );
    assert_no_secret("url.full = ?Some(http::Uri)", &raw);
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 5. The sampler sees a piece of the password as the
// path of a
// `url.full` whose password holds a raw `/`, `?` or `#`.
//
// A user's root span has `url.full =
// "https://svc:pa/ss@api.example.com/v1/items"`
// (a password written raw: the crate takes it, `url_authority`'s comment:
// "A password written with a raw `/`, `?` or `#` in it (`u:pa/ss@h`: an
// invalid URL, but one people write)"), and a sampling rule on
// `url_path: "/v1/items"`. The document's `http.request.url` is right
// (`https://api.example.com/v1/items`), but `path_of_url` (src/layer.rs)
// cuts at the first `/` after `://` and hands the sampler
// `url_path = "/ss@api.example.com/v1/items"` (with `pa?ss`: `"/"`): the
// rule does not match, and a custom sampler gets part of the password.
// `SamplingRequest::url_path`: "The URL path, without the query string";
// `RequestFields`' rustdoc: "the path of `url.full`".
// ---------------------------------------------------------------------------
struct SeenPaths(Arc<Mutex<Vec<Option<String>>>>);

impl Sampler for SeenPaths {
    fn sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        self.0
            .lock()
            .unwrap()
            .push(request.url_path.map(str::to_owned));
        SamplingDecision::new(true)
    }
}

fn path_the_sampler_sees(url: &str) -> Option<String> {
    use tracing_subscriber::prelude::*;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(SeenPaths(seen.clone()))
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(tracing_xray::export::InMemoryExporter::new())
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info_span!("request", http.request.method = "GET", url.full = url).in_scope(|| {});
    });
    let seen = seen.lock().unwrap();
    seen.first().cloned().flatten()
}

#[test]
fn the_sampler_sees_the_path_of_a_url_whose_password_holds_a_slash() {
    assert_eq!(
        path_the_sampler_sees("https://svc:pass@api.example.com/v1/items").as_deref(),
        Some("/v1/items"),
        "control"
    );
    let (_, docs) = documents(|| {
        info_span!(
            "call",
            otel.kind = "client",
            url.full = "https://svc:pa/ss@api.example.com/v1/items"
        )
        .in_scope(|| {});
    });
    assert_eq!(
        docs[0]["subsegments"][0]["http"]["request"]["url"], "https://api.example.com/v1/items",
        "control: the document's URL"
    );
    for url in [
        "https://svc:pa/ss@api.example.com/v1/items",
        "https://svc:pa?ss@api.example.com/v1/items",
    ] {
        assert_eq!(
            path_the_sampler_sees(url).as_deref(),
            Some("/v1/items"),
            "url.full = {url:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Found by a fourth review, 6. `db.connection_string = ?conn` gives a `sql.url`
// with the
// `Debug` wrapping still around it:
// `"\"postgres://app@db.internal:5432/orders\""`,
// `"Some(\"postgres://…\")"`, and for a JDBC URL whose password is a query
// parameter, half of it: `"\"jdbc:postgresql://h:5432/orders?user=app"`
// (the closing quote went with the password's value).
//
// A user records a connection string with `?`, which README's
// `db.connection_string` row names as handled ("a URL after blanks or
// quoted, as `?conn` records it, too"). For `url.full` the same wrapping
// gives "the URL alone" (README); `without_password` removes the password
// but keeps the quotes and `Some(…)`, so X-Ray's `sql.url` is not a URL and
// differs by recording style from the same database's `sql.url` recorded
// with `%`. (Pinned: the passwords themselves are gone.)
// ---------------------------------------------------------------------------
#[test]
fn sql_url_of_a_connection_string_recorded_with_debug_is_the_url_alone() {
    let sql_url = |record: &dyn Fn()| {
        let (raw, docs) = documents(record);
        assert_no_secret("db.connection_string", &raw);
        docs[0]["subsegments"][0]["sql"]["url"].clone()
    };
    let plain = sql_url(&|| {
        let conn = format!("postgres://app:{SECRET}@db.internal:5432/orders");
        info_span!("q", db.system = "postgresql", db.connection_string = %conn).in_scope(|| {});
    });
    assert_eq!(plain, "postgres://app@db.internal:5432/orders", "control");
    let quoted = sql_url(&|| {
        let conn = format!("postgres://app:{SECRET}@db.internal:5432/orders");
        info_span!("q", db.system = "postgresql", db.connection_string = ?conn).in_scope(|| {});
    });
    let optional = sql_url(&|| {
        let conn = Some(format!("postgres://app:{SECRET}@db.internal:5432/orders"));
        info_span!("q", db.system = "postgresql", db.connection_string = ?conn).in_scope(|| {});
    });
    assert_eq!(
        (&quoted, &optional),
        (&plain, &plain),
        "sql.url of ?String, ?Some(String)"
    );
    let jdbc = sql_url(&|| {
        let conn = format!("jdbc:postgresql://h:5432/orders?user=app&password={SECRET}");
        info_span!("q", db.system = "postgresql", db.connection_string = ?conn).in_scope(|| {});
    });
    assert!(
        !jdbc.as_str().unwrap_or("").contains('"'),
        "sql.url of a quoted JDBC URL: {jdbc}"
    );
}
