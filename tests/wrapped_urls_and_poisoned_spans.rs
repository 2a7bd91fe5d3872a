//! URLs recorded with `?` (`"https://…"`, `Some("https://…")`) and spans
//! whose lock a panic in other code poisoned, after the application caught
//! it: found by a second and a third review of this stop's fixes (the
//! first is in `tests/poisoned_locks.rs`). Each test but the one marked
//! "pinned, passes" failed before its fix.

mod common;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "tower")]
use std::time::Duration;

use common::capture_documents;
use serde_json::Value;
use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::AlwaysSample;

fn builder(out: &InMemoryExporter) -> tracing_xray::Builder {
    tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(AlwaysSample)
        .with_exporter(out.clone())
}

/// A value whose `Debug` panics: the `fmt` layer formats a value given to
/// `span.record` while it holds the span's extensions lock, so this panic
/// poisons that lock.
struct PanickyDebug;

impl fmt::Debug for PanickyDebug {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Debug of a recorded value")
    }
}

/// Every (sub)segment of every document.
#[cfg(feature = "tower")]
fn names(docs: &[Value]) -> Vec<String> {
    common::nodes(docs)
        .into_iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

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
// Found by the review, 4 (fb71911, the README's fifth case under "When a trace never
// arrives"). After the application caught the panic that poisoned a span's
// lock, making a child of that span panics inside the xray layer, into the
// application.
//
// A job runner: `let job = info_span!("job", detail = Empty);` then
// `catch_unwind(|| { let _e = job.enter(); job.record("detail",
// debug(value)) })` with a value whose `Debug` panics under `fmt` (the
// README's set-up, `fmt` beside the layer), then, the error handled, it goes
// on in the job's span: `job.in_scope(|| info_span!("cleanup"))`. README,
// fifth case: "The span's X-Ray data is then lost as it closes ... The
// application's catching of the panic goes on."; fb71911 made `on_close`
// safe here, but `on_new_span` reads the parent's extensions (`inherit`) on
// the poisoned lock and panics ("Mutex poisoned"), out of `info_span!` in
// application code outside any `catch_unwind`. With `fmt` alone (checked
// first) the same child is made without a panic: it is the xray layer that
// panics.
// ---------------------------------------------------------------------------
#[test]
fn a_child_of_a_span_poisoned_in_a_catch_unwind_is_made_without_a_panic() {
    common::run_alone("child_a_child_of_a_poisoned_span");
}

#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_a_child_of_a_poisoned_span() {
    /// Poisons `job` inside a `catch_unwind`, then makes a child of it
    /// after: whether making (and closing) that child panicked.
    fn child_panics_after_poisoning() -> bool {
        let job = info_span!("job", detail = tracing::field::Empty);
        let caught = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _entered = job.enter();
                job.record("detail", tracing::field::debug(PanickyDebug));
            }))
        });
        assert!(caught.is_err(), "the Debug panic is caught");
        let child = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                drop(info_span!(parent: &job, "cleanup"));
            }))
        });
        common::quietly(|| catch_unwind(AssertUnwindSafe(|| drop(job)))).ok();
        child.is_err()
    }

    let fmt_only = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
    let without = tracing::subscriber::with_default(fmt_only, child_panics_after_poisoning);
    assert!(!without, "control: the fmt layer alone panics");

    let out = InMemoryExporter::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(builder(&out).build());
    let with = tracing::subscriber::with_default(subscriber, child_panics_after_poisoning);
    assert!(
        !with,
        "making a child of the poisoned span after the catch_unwind panicked inside the xray layer"
    );
}

// ---------------------------------------------------------------------------
// Found by the review, 5 (961daf5 with fb71911). After a request's response, the finished
// spans under a span of the request's work stay in the trace's buffer when
// that span's data is lost (its lock poisoned): never sent, nor counted.
//
// A handler behind `XrayServerLayer` answers and leaves work running in a
// span of the request (`background`, made in the request's span before the
// response: `tokio::spawn(work.in_current_span())`). The work finishes a
// step (`step`), then records a value whose `Debug` panics under `fmt`
// inside a `catch_unwind` (a job runner), which poisons `background`'s lock;
// `background` then ends. README, "When a trace never arrives", fifth case:
// "The span's X-Ray data is then lost as it closes ... counted in
// `stats().spans_lost` ... The rest of its trace is sent, but for a root,
// whose trace goes with it." Before 961daf5 `step` streamed as it ended;
// now it waits for its top span, `background`, whose close is lost, so
// `step` stays in the sealed trace's buffer: never sent (no document but the
// segment), and no counter says so (`spans_lost` is 1: `background`).
// ---------------------------------------------------------------------------
#[cfg(feature = "tower")]
#[test]
fn after_the_response_a_step_under_a_poisoned_span_is_still_sent() {
    common::run_alone("child_a_step_under_a_poisoned_span");
}

#[cfg(feature = "tower")]
#[test]
#[ignore = "run in a process of its own by the test above"]
fn child_a_step_under_a_poisoned_span() {
    let out = InMemoryExporter::new();
    let layer = builder(&out).build();
    let xray = layer.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let work = served::serve_and_keep_work(&rt);
        work.in_scope(|| info_span!("step").in_scope(|| {}));
        let caught = common::quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _entered = work.enter();
                work.record("detail", tracing::field::debug(PanickyDebug));
            }))
        });
        assert!(caught.is_err(), "the Debug panic is caught");
        drop(work);
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = out.json_documents();
    assert_eq!(xray.stats().spans_lost, 1, "{:?}", xray.stats());
    assert!(
        names(&docs).iter().any(|n| n == "step"),
        "the finished step of the poisoned span's work was never sent: {docs:#?}\n{:?}",
        xray.stats()
    );
}

// ---------------------------------------------------------------------------
// Found by the review, 6 (fb71911, `endpoint_shown`). An HTTP exporter endpoint written
// without its scheme, whose password holds a `#` or a `?`, shows the
// password up to that character in `InvalidEndpoint` and in the builder's
// `Debug`.
//
// A user forgets the scheme of an endpoint holding credentials:
// `with_endpoint("AKIDEXAMPLE:S3CR3T#xyz@xray-proxy.internal:2000")` (a `#`
// or `?` is common in a password). README, "Sending": "Secrets never appear
// in `Debug` output, errors or `tracing` logs"; fb71911's `endpoint_shown`:
// "without its user info, query and fragment ... even when it has no scheme
// (`key:secret@host`): a secret written there must never reach a log".
// `plain_url` finds no `scheme://`, so it cuts the text at the first `?` or
// `#` as if a query or fragment began there, and `endpoint_shown` then finds
// no `@` left to hide what comes before it: the error reads `invalid X-Ray
// endpoint "AKIDEXAMPLE:S3CR3T": ...`, the password's first part quoted.
// ---------------------------------------------------------------------------
#[cfg(feature = "http")]
#[test]
fn an_endpoint_without_a_scheme_keeps_a_password_with_a_hash_out_of_errors() {
    for endpoint in [
        "AKIDEXAMPLE:S3CR3T#xyz@xray-proxy.internal:2000",
        "AKIDEXAMPLE:S3CR3T?xyz@xray-proxy.internal:2000",
    ] {
        let builder = tracing_xray::export::HttpExporter::builder()
            .with_region("us-east-1")
            .with_endpoint(endpoint)
            .with_static_credentials(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
            );
        let mut texts = vec![format!("{builder:?}")];
        let err = builder
            .build()
            .expect_err("an endpoint without a scheme is refused");
        texts.push(format!("{err}"));
        texts.push(format!("{err:?}"));
        let leaked: Vec<&String> = texts.iter().filter(|t| t.contains("S3CR3T")).collect();
        assert!(
            leaked.is_empty(),
            "the endpoint's password is in Debug / error text: {leaked:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Pinned, passes (961daf5). After the response, an error passed up from a
// step of the request's work to the work's span names the step's as its
// `cause`, whether the work's subtree leaves whole (as its top ends) or the
// step streams first (past `with_max_held_subsegments`): README, the `&dyn
// Error` row, "names the one below as its `cause` (in another document
// too ...)".
// ---------------------------------------------------------------------------
#[cfg(feature = "tower")]
#[test]
fn pinned_after_the_response_an_error_passed_up_names_its_cause() {
    #[derive(Debug)]
    struct Boom;
    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("prices unavailable")
        }
    }
    impl std::error::Error for Boom {}
    #[tracing::instrument(err)]
    fn fetch_prices() -> Result<(), Boom> {
        Err(Boom)
    }
    for max_held in [1000, 1] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c = common::capture_documents_with(
            |b| b.with_max_held_subsegments(max_held),
            |xray| {
                let work = served::serve_and_keep_work(&rt);
                xray.flush(Duration::from_secs(5)).unwrap();
                let r = work.in_scope(|| {
                    info_span!("filler").in_scope(|| {});
                    fetch_prices()
                });
                if let Err(e) = &r {
                    work.record("error", e as &dyn std::error::Error);
                }
                xray.flush(Duration::from_secs(5)).unwrap();
                drop(work);
            },
        );
        assert!(
            max_held == 1000 || c.docs.len() >= 3,
            "past the limit the step streams before its top: {:#?}",
            c.docs
        );
        let traces = c.exporter.traces();
        let fetch = common::node(&traces, "fetch_prices");
        let work = common::node(&traces, "background");
        assert_eq!(common::exceptions(work).len(), 1, "{work:#}");
        assert_eq!(
            common::exceptions(work)[0]["cause"],
            common::exceptions(fetch)[0]["id"],
            "max_held {max_held}: {:#?}",
            c.docs
        );
        assert_eq!(traces.len(), 1, "one trace, assembled: {traces:#?}");
    }
}

/// Requests served through `XrayServerLayer` (feature `tower`).
#[cfg(feature = "tower")]
mod served {
    use std::sync::{Arc, Mutex};

    use tracing::{info_span, Span};

    /// Keeps a span of work made in the request's span, outliving the
    /// response.
    #[derive(Clone)]
    struct Handler {
        kept: Arc<Mutex<Option<Span>>>,
    }

    impl tower_service::Service<http::Request<String>> for Handler {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            *self.kept.lock().unwrap() = Some(info_span!(
                "background",
                detail = tracing::field::Empty,
                error = tracing::field::Empty
            ));
            std::future::ready(Ok(http::Response::new("ok".to_owned())))
        }
    }

    /// Serves one request through `XrayServerLayer`, body and all (its
    /// segment is sent), and returns the span of the work it left running.
    pub(super) fn serve_and_keep_work(rt: &tokio::runtime::Runtime) -> Span {
        use http_body_util::BodyExt;
        use tower_layer::Layer;
        use tower_service::Service;
        let kept = Arc::new(Mutex::new(None));
        let mut service =
            tracing_xray::tower::XrayServerLayer::new().layer(Handler { kept: kept.clone() });
        let request = http::Request::get("http://example.com/orders")
            .body(String::new())
            .unwrap();
        rt.block_on(async {
            let response = service.call(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        });
        let work = kept.lock().unwrap().take();
        work.expect("work kept")
    }
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
