//! Local sampling rules against the fields real instrumentation gives a
//! root: the rule that matches decides which traces are sent. (Through
//! tower's `Service`, with the `tower` feature.)
#![cfg(feature = "tower")]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower_http::trace::TraceLayer;
use tower_service::Service;
use tracing_subscriber::prelude::*;
use tracing_xray::Detectors;
use tracing_xray::export::InMemoryExporter;
use tracing_xray::sampling::LocalRules;

/// Only `/orders/42` is traced; the default rule traces nothing.
fn rules() -> LocalRules {
    LocalRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
            "rules": [{"host": "*", "http_method": "get", "url_path": "/orders/42",
                       "fixed_target": 0, "rate": 1.0}]}"#,
    )
    .unwrap()
}

/// Sends each request to `app` under the rules above; the paths of the
/// traces sent.
fn traced(app: Router, requests: Vec<Request<Body>>) -> Vec<String> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(Detectors::none())
        .with_sampler(rules())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    let _default = tracing_subscriber::registry().with(layer).set_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for request in requests {
            let mut app = app.clone();
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await
                .unwrap();
            app.call(request).await.unwrap();
        }
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let mut urls: Vec<String> = exporter
        .traces()
        .iter()
        .map(|t| {
            t["http"]["request"]["url"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    urls.sort();
    urls
}

fn orders() -> Router {
    Router::new().route(
        "/orders/{id}",
        get(|| async {
            tracing::info_span!("load_order").in_scope(|| {});
            "ok"
        }),
    )
}

/// HTTP/2 requests reach a tower service with an absolute URI, which
/// tower-http's `TraceLayer` records as `uri`: the rule sees its path.
#[test]
fn tower_http_absolute_uri_is_matched_by_its_path() {
    let requests = [
        "/orders/42?x=1",
        "https://api.example.com:8443/orders/42?x=1",
    ]
    .into_iter()
    .chain(["https://api.example.com:8443/orders/7"])
    .map(|uri| Request::get(uri).body(Body::empty()).unwrap())
    .collect();
    let urls = traced(orders().layer(TraceLayer::new_for_http()), requests);
    assert_eq!(
        urls,
        ["/orders/42", "https://api.example.com:8443/orders/42"],
        "only the two requests for /orders/42 are traced"
    );
}

/// A span recording both the request's `uri` and axum's matched route as
/// `http.route`: the rule sees the request's path, not the route template.
#[test]
fn the_request_path_wins_over_the_route_template() {
    // What `MatchedPath` gives (axum's `matched-path` feature).
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
        tracing::info_span!(
            "request",
            method = %req.method(),
            uri = %req.uri(),
            "http.route" = "/orders/{id}",
        )
    });
    let app = orders().route_layer(trace);
    let requests = ["/orders/42", "/orders/7"]
        .into_iter()
        .map(|uri| Request::get(uri).body(Body::empty()).unwrap())
        .collect();
    assert_eq!(traced(app, requests), ["/orders/42"]);
}

/// Runs `f` under a layer sampling with the local `rules`; the traces sent.
fn traced_under(rules: &str, f: impl FnOnce()) -> Vec<serde_json::Value> {
    let exporter = InMemoryExporter::new();
    let layer = tracing_xray::builder()
        .with_service_name("web")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(tracing_xray::sampling::LocalRules::from_json(rules).unwrap())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    xray.flush(Duration::from_secs(10)).unwrap();
    exporter.traces()
}

/// Traces every request to `api.example.com`, nothing else.
const HOST_RULE: &str = r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
    "rules": [{"host": "api.example.com", "http_method": "*", "url_path": "*",
               "fixed_target": 0, "rate": 1.0}]}"#;

/// Found by a review of this stop's fixes. The user records the Host header with `?` from an `Option`
/// (`http.host = ?headers.get("host")`, absent on an HTTP/1.0 request) and
/// samples with a rule on the host. README (Sampling, 2.): "a value
/// recorded with `?` is its text alone; an absent or empty value matches
/// any pattern". Expected: the request without a host matches the host
/// rule, and an absent `http.host` hides no `server.address`. Instead the
/// sampler is shown the text `None` as the host (src/layer.rs:696 skips an
/// absent value for the path keys only; :705 offers it for the host), which
/// matches no host pattern but `*`, and outranks the `server.address` that
/// names the host: neither request is traced.
#[test]
fn an_absent_host_recorded_with_debug_is_no_host_for_the_sampler() {
    let none: Option<&str> = None;
    let traces = traced_under(HOST_RULE, || {
        tracing::info_span!(
            "no_host",
            http.request.method = "GET",
            url.path = "/orders",
            http.host = ?none
        )
        .in_scope(|| {});
    });
    assert_eq!(
        traces.len(),
        1,
        "a request with an absent host did not match the host rule"
    );
    let traces = traced_under(HOST_RULE, || {
        tracing::info_span!(
            "named_host",
            http.request.method = "GET",
            url.path = "/orders",
            http.host = ?none,
            server.address = "api.example.com"
        )
        .in_scope(|| {});
    });
    assert_eq!(
        traces.len(),
        1,
        "an absent http.host hid server.address = api.example.com from the sampler"
    );
}

/// The tower server layer's request, as the sampler sees it.
#[cfg(feature = "tower")]
mod tower_server {
    use std::time::Duration;

    use tracing_subscriber::prelude::*;
    use tracing_xray::export::InMemoryExporter;
    use tracing_xray::sampling::{LocalRules, Sampler};

    /// A service that answers 200 at once.
    #[derive(Clone)]
    struct Ok200;

    impl tower_service::Service<http::Request<String>> for Ok200 {
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
            std::future::ready(Ok(http::Response::new(String::new())))
        }
    }

    /// Serves `requests` through `XrayServerLayer` under a layer deciding with
    /// `sampler`; returns the segments sent.
    fn serve(
        sampler: impl Sampler,
        requests: Vec<http::Request<String>>,
    ) -> Vec<serde_json::Value> {
        use tower_layer::Layer;
        use tower_service::Service;
        let exporter = InMemoryExporter::new();
        let layer = tracing_xray::builder()
            .with_service_name("web")
            .with_detectors(tracing_xray::Detectors::none())
            .with_sampler(sampler)
            .with_exporter(exporter.clone())
            .build();
        let xray = layer.handle();
        let _default = tracing_subscriber::registry().with(layer).set_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Ok200);
            for request in requests {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .unwrap();
                drop(service.call(request).await.unwrap());
            }
        });
        xray.flush(Duration::from_secs(5)).unwrap();
        exporter.traces()
    }

    /// Found by a hunt of sampling semantics. The user serves HTTP through `XrayServerLayer` on a port other than 80/443
    /// (clients send `Host: api.example.com:8080`) and samples with a rule on the
    /// host, written as for every X-Ray SDK. SPEC §4.2: "Request attributes:
    /// `host` (HTTP Host header)"; Go passes `r.Host`, Java/Node the `Host`
    /// header, Python `request.headers["host"]` / Flask `request.host`, all
    /// with the port. The rule should match.
    /// Instead the sampler is shown `server.address`, the host with the port cut
    /// off (src/tower/server.rs:266 `a.host()`, recorded as `server.address` at
    /// :290; read by the sampler at src/layer.rs:701), so a rule on `host:port`
    /// never matches and the request falls to the default rule (here: not
    /// traced). tracing-actix-web's `http.host` keeps the port: the same request
    /// is sampled differently behind the two middlewares.
    #[test]
    fn a_host_rule_with_the_port_of_the_host_header_matches() {
        let rules = LocalRules::from_json(
            r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
                "rules": [{"host": "api.example.com:8080", "http_method": "*", "url_path": "*",
                           "fixed_target": 0, "rate": 1.0}]}"#,
        )
        .unwrap();
        let request = http::Request::builder()
            .uri("/orders")
            .header("Host", "api.example.com:8080")
            .body(String::new())
            .unwrap();
        let traces = serve(rules, vec![request]);
        assert_eq!(
            traces.len(),
            1,
            "the request matching the `host` rule by its Host header was not traced"
        );
    }
}

/// What the sampler was given for the last root.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Option<HostAndPath>>>);

/// The host and the path a sampler was given.
type HostAndPath = (Option<String>, Option<String>);
impl tracing_xray::sampling::Sampler for Seen {
    fn sample(
        &self,
        r: &tracing_xray::sampling::SamplingRequest<'_>,
    ) -> tracing_xray::sampling::SamplingDecision {
        *self.0.lock().unwrap() = Some((r.host.map(str::to_owned), r.url_path.map(str::to_owned)));
        tracing_xray::sampling::SamplingDecision::new(true)
    }
}

/// The document reads `url.full = "//user:pw@api.example.com/orders"`
/// as host `api.example.com` and path `/orders` (`"url":"//api.example.com/orders"`),
/// but the sampler's inputs (which looked for `://`) took the whole text as
/// the path (found by the review of the fix for URLs without a scheme): a rule for
/// host `api.example.com` or path `/orders` never matches, and a sampler
/// (which may log or match on `url_path`) is handed the password.
/// Expected `host = Some("api.example.com")`, `url_path = Some("/orders")`;
/// it got no host and `url_path = Some("//user:S3CR3T-xyz@api.example.com/orders")`.
#[test]
fn the_sampler_reads_a_scheme_relative_url_as_the_document_does() {
    let seen = Seen::default();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_detectors(tracing_xray::Detectors::none())
        .with_sampler(seen.clone())
        .with_exporter(tracing_xray::export::InMemoryExporter::new())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!(
            "call",
            url.full = "//user:S3CR3T-xyz@api.example.com/orders"
        )
        .in_scope(|| {});
    });
    xray.flush(Duration::from_secs(10)).unwrap();
    let (host, path) = seen
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("the sampler was asked");
    assert_eq!(
        (host.as_deref(), path.as_deref()),
        (Some("api.example.com"), Some("/orders"))
    );
}

/// Found by a hunt of sampling. OpenTelemetry's HTTP server conventions
/// split the `Host` header into `server.address` and `server.port` (before
/// v1.21: `net.host.name`, `net.host.port`), and the document's URL joins
/// them again (`http://api.example.com:8080/orders`). README (Sampling,
/// 2.): the sampler's host is "the `Host` header as the client wrote it,
/// `api.example.com:8080` off the default port, as in every X-Ray SDK".
/// Before the fix the sampler saw `api.example.com` without the port (a
/// rule for `api.example.com:8080` never matched), and no host at all from
/// `net.host.name` (any host rule matched it).
#[test]
fn opentelemetry_host_and_port_reach_the_sampler_as_the_host_header() {
    const PORT_RULE: &str = r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
        "rules": [{"host": "api.example.com:8080", "http_method": "*", "url_path": "*",
                   "fixed_target": 0, "rate": 1.0}]}"#;
    let otel = |scheme: &'static str, port: u16| {
        move || {
            tracing::info_span!(
                "GET /orders",
                otel.kind = "server",
                http.request.method = "GET",
                url.scheme = scheme,
                server.address = "api.example.com",
                server.port = port,
                url.path = "/orders",
            )
            .in_scope(|| tracing::info_span!("handler").in_scope(|| {}));
        }
    };
    let traces = traced_under(PORT_RULE, otel("http", 8080));
    assert_eq!(traces.len(), 1, "the Host header's rule did not match");
    assert_eq!(
        traces[0]["http"]["request"]["url"],
        "http://api.example.com:8080/orders"
    );
    assert!(traced_under(HOST_RULE, otel("http", 8080)).is_empty());
    // On the scheme's default port, the Host header has no port.
    assert_eq!(traced_under(HOST_RULE, otel("https", 443)).len(), 1);
    assert_eq!(traced_under(HOST_RULE, otel("http", 80)).len(), 1);
    assert!(traced_under(PORT_RULE, otel("https", 80)).is_empty());

    // The names before v1.21.
    let old = |port: Option<i64>| {
        move || {
            let root = tracing::info_span!(
                "GET /orders",
                otel.kind = "server",
                http.method = "GET",
                http.scheme = "http",
                net.host.name = "api.example.com",
                net.host.port = tracing::field::Empty,
                http.target = "/orders",
            );
            if let Some(port) = port {
                root.record("net.host.port", port);
            }
            root.in_scope(|| tracing::info_span!("handler").in_scope(|| {}));
        }
    };
    assert_eq!(traced_under(HOST_RULE, old(None)).len(), 1);
    assert_eq!(traced_under(PORT_RULE, old(Some(8080))).len(), 1);
    // A host that names another host is not matched by the rule: no host
    // would match every pattern.
    const OTHER_HOST: &str = r#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0},
        "rules": [{"host": "admin.example.com", "http_method": "*", "url_path": "*",
                   "fixed_target": 0, "rate": 0.0}]}"#;
    assert_eq!(traced_under(OTHER_HOST, old(None)).len(), 1);
}
