//! Centralized sampling (SPEC §4.3) against a local stand-in for the daemon's
//! sampling proxy that serves the bodies of
//! `tests/fixtures/sampling/sampling-rules/api-*.json`. Time is a manual
//! clock and polling is driven with `poll_once`, so nothing sleeps.

mod sampling_common;

use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sampling_common::{ManualClock, ProxyServer, Recorded, Reply, fixture_json};
use serde_json::{Value, json};
use tracing_xray::sampling::{CentralizedSampler, Clock, LocalRules, Sampler, SamplingRequest};

/// An arbitrary "now" (2023-11-14).
const T0: u64 = 1_700_000_000;

fn rules_body() -> Value {
    fixture_json("sampling-rules/api-GetSamplingRules-response.json")
}

/// The fixture's rule with this name.
fn fixture_rule(name: &str) -> Value {
    rules_body()["SamplingRuleRecords"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["SamplingRule"].clone())
        .find(|r| r["RuleName"] == name)
        .expect("rule in fixture")
}

/// The fixture's rules with `test-rule-1`'s FixedRate set, so that counts
/// are deterministic.
fn rules_with_rate(fixed_rate: f64) -> Value {
    let mut body = rules_body();
    for record in body["SamplingRuleRecords"].as_array_mut().expect("records") {
        if record["SamplingRule"]["RuleName"] == "test-rule-1" {
            record["SamplingRule"]["FixedRate"] = fixed_rate.into();
        }
    }
    body
}

fn rules_of(rules: &[Value]) -> Value {
    let records: Vec<Value> = rules.iter().map(|r| json!({"SamplingRule": r})).collect();
    json!({"NextToken": null, "SamplingRuleRecords": records})
}

/// The fixture's GetSamplingTargets body, retargeted at `rule`.
fn targets_body(rule: &str, fixed_rate: f64, quota: u64, ttl: u64, interval: u64) -> Value {
    let mut body = fixture_json("sampling-rules/api-GetSamplingTargets-response.json");
    let doc = &mut body["SamplingTargetDocuments"][0];
    doc["RuleName"] = rule.into();
    doc["FixedRate"] = fixed_rate.into();
    doc["ReservoirQuota"] = quota.into();
    doc["ReservoirQuotaTTL"] = ttl.into();
    doc["Interval"] = interval.into();
    body["UnprocessedStatistics"][0]["RuleName"] = rule.into();
    body
}

/// Local rules with no reservoir and this rate: 0.0 never samples, 1.0
/// always does, so fallback decisions are recognisable.
fn fallback(rate: f64) -> LocalRules {
    let doc = json!({"version": 2, "default": {"fixed_target": 0, "rate": rate}});
    LocalRules::from_json(&doc.to_string()).expect("valid")
}

fn sampler_for(
    addr: std::net::SocketAddr,
    clock: &ManualClock,
    fallback_rate: f64,
) -> CentralizedSampler {
    CentralizedSampler::builder()
        .with_proxy_address(addr)
        .with_clock(clock.clone())
        .with_fallback(fallback(fallback_rate))
        .with_request_timeout(Duration::from_secs(5))
        .build_manual()
}

/// Matches only `test-rule-1` (priority 100, all `*`) of the fixture.
fn any_request() -> SamplingRequest<'static> {
    SamplingRequest::new()
        .with_http_method("POST")
        .with_url_path("/orders")
        .with_service_name("orders")
}

/// Matches `test-rule` (priority 1) of the fixture.
fn test_rule_request() -> SamplingRequest<'static> {
    SamplingRequest::new()
        .with_http_method("GET")
        .with_url_path("/aws-sdk-call")
        .with_service_name("test-rule")
        .with_service_type("local")
}

/// `n` decisions: (how many sampled, the rule names seen).
fn decide(
    sampler: &CentralizedSampler,
    request: &SamplingRequest<'_>,
    n: usize,
) -> (usize, Vec<Option<String>>) {
    let mut names = Vec::new();
    let mut sampled = 0;
    for _ in 0..n {
        let d = sampler.sample(request);
        sampled += usize::from(d.is_sampled());
        let name = d.rule_name().map(str::to_owned);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    (sampled, names)
}

fn rule_name(sampler: &CentralizedSampler, request: &SamplingRequest<'_>) -> Option<String> {
    sampler.sample(request).rule_name().map(str::to_owned)
}

fn paths(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(|r| r.path.as_str()).collect()
}

/// The single statistics document of a SamplingTargets request.
fn only_statistics(request: &Recorded) -> Value {
    let body = request.json();
    let docs = body["SamplingStatisticsDocuments"]
        .as_array()
        .expect("documents");
    assert_eq!(docs.len(), 1, "{body}");
    docs[0].clone()
}

#[test]
fn rules_are_fetched_filtered_and_ordered() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 0.0);

    // Nothing fetched yet: the fallback decides, without a rule name.
    assert_eq!(decide(&sampler, &any_request(), 20), (0, vec![None]));

    sampler.poll_once();
    let requests = proxy.drain();
    assert_eq!(paths(&requests), ["/GetSamplingRules"]);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(requests[0].json(), json!({"NextToken": null}));

    // `Default` comes first in the file but applies last.
    assert_eq!(
        rule_name(&sampler, &test_rule_request()).as_deref(),
        Some("test-rule")
    );
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
    let mut other_type = test_rule_request();
    other_type.service_type = Some("AWS::EC2::Instance");
    assert_eq!(
        rule_name(&sampler, &other_type).as_deref(),
        Some("test-rule-1")
    );

    // New rules: ties on priority go by name; rules of another version, or
    // bound to a resource ARN the request does not carry, never match.
    let mut b = fixture_rule("test-rule-1");
    b["RuleName"] = "b-rule".into();
    b["Priority"] = 50.into();
    let mut a = b.clone();
    a["RuleName"] = "a-rule".into();
    let mut v2 = b.clone();
    v2["RuleName"] = "version-2".into();
    v2["Priority"] = 0.into();
    v2["Version"] = 2.into();
    let mut arn = v2.clone();
    arn["RuleName"] = "arn-bound".into();
    arn["Version"] = 1.into();
    arn["ResourceARN"] = "arn:aws:ecs:*".into();
    let mut unnamed = v2.clone();
    unnamed["Version"] = 1.into();
    unnamed.as_object_mut().expect("object").remove("RuleName");
    proxy.reply_json(
        "/GetSamplingRules",
        &rules_of(&[fixture_rule("Default"), v2, arn, unnamed, b, a]),
    );
    clock.set_epoch_seconds(T0 + 306); // the 300 s (+ up to 5 s) rule interval
    sampler.poll_once();
    assert!(paths(&proxy.drain()).contains(&"/GetSamplingRules"));
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("a-rule")
    );
    let with_arn = any_request().with_resource_arn("arn:aws:ecs:us-east-1:1:container/x");
    assert_eq!(rule_name(&sampler, &with_arn).as_deref(), Some("arn-bound"));

    // Only the Default rule left: it catches everything.
    proxy.reply_json("/GetSamplingRules", &rules_of(&[fixture_rule("Default")]));
    clock.set_epoch_seconds(T0 + 612);
    sampler.poll_once();
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("Default")
    );
}

#[test]
fn targets_quota_ttl_borrowing_fixed_rate_and_statistics() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 0.0);
    sampler.poll_once();
    proxy.drain();

    // No quota yet: one borrowed request a second, then FixedRate 0.09.
    let (sampled, names) = decide(&sampler, &any_request(), 5);
    assert_eq!(names, [Some("test-rule-1".to_owned())]);
    assert!(sampled >= 1);

    // Targets are due 10 s (+ up to 100 ms) later.
    proxy.reply_json(
        "/SamplingTargets",
        &targets_body("test-rule-1", 0.0, 3, T0 + 100, 25),
    );
    clock.set_epoch_seconds(T0 + 11);
    sampler.poll_once();
    let requests = proxy.drain();
    assert_eq!(
        paths(&requests),
        ["/SamplingTargets"],
        "no rules refresh: LastRuleModification is old"
    );
    assert_eq!(
        requests[0].content_type.as_deref(),
        Some("application/json")
    );
    let stats = only_statistics(&requests[0]);
    assert_eq!(
        stats,
        json!({"RuleName": "test-rule-1", "ClientID": sampler.client_id(), "Timestamp": T0 + 11,
               "RequestCount": 5, "SampledCount": sampled - 1, "BorrowCount": 1})
    );

    // Quota 3 a second while the TTL lasts, FixedRate 0 beyond it.
    clock.set_epoch_seconds(T0 + 12);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 3);
    clock.set_epoch_seconds(T0 + 13);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 3);
    clock.set_epoch_seconds(T0 + 100);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 3);

    // The rule's reporting interval (25 s) has not passed: nothing is sent.
    clock.set_epoch_seconds(T0 + 22);
    sampler.poll_once();
    assert!(proxy.drain().is_empty());

    // TTL expired: borrowing again (1 a second).
    clock.set_epoch_seconds(T0 + 101);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 1);
    clock.set_epoch_seconds(T0 + 102);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 1);

    // Statistics since the last report, then reset; a target with a fixed
    // rate of 1 and no quota samples everything.
    proxy.reply_json(
        "/SamplingTargets",
        &targets_body("test-rule-1", 1.0, 0, T0 + 1000, 10),
    );
    sampler.poll_once();
    let requests = proxy.drain();
    assert_eq!(paths(&requests), ["/SamplingTargets"]);
    assert_eq!(
        only_statistics(&requests[0]),
        json!({"RuleName": "test-rule-1", "ClientID": sampler.client_id(), "Timestamp": T0 + 102,
               "RequestCount": 50, "SampledCount": 9, "BorrowCount": 2})
    );
    assert_eq!(decide(&sampler, &any_request(), 20).0, 20);

    // Only rules that matched are reported.
    let _ = sampler.sample(&test_rule_request());
    clock.set_epoch_seconds(T0 + 113);
    sampler.poll_once();
    let requests = proxy.drain();
    let body = requests[0].json();
    let mut reported: Vec<&str> = body["SamplingStatisticsDocuments"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["RuleName"].as_str().expect("name"))
        .collect();
    reported.sort_unstable();
    assert_eq!(reported, ["test-rule", "test-rule-1"]);
    let counts: Vec<u64> = body["SamplingStatisticsDocuments"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["RequestCount"].as_u64().expect("count"))
        .collect();
    assert!(counts.contains(&20) && counts.contains(&1), "{body}");
}

#[test]
fn rule_modification_triggers_a_refresh_that_keeps_quotas() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 0.0);
    sampler.poll_once();
    proxy.drain();

    // A quota of 2 with FixedRate 0.
    let _ = sampler.sample(&any_request());
    proxy.reply_json(
        "/SamplingTargets",
        &targets_body("test-rule-1", 0.0, 2, T0 + 1000, 10),
    );
    clock.set_epoch_seconds(T0 + 11);
    sampler.poll_once();
    assert_eq!(paths(&proxy.drain()), ["/SamplingTargets"]);
    assert_eq!(decide(&sampler, &any_request(), 10).0, 2);

    // The rules changed after our fetch: fetched again in the same poll. The
    // same-named rule keeps its quota (and reservoir use in this second).
    let mut first = fixture_rule("test-rule-1");
    first["RuleName"] = "first".into();
    first["Priority"] = 0.into();
    first["HTTPMethod"] = "DELETE".into();
    // (A fetch resets a rule's rate to its FixedRate until the next target.)
    let mut changed = rules_with_rate(0.0);
    changed["SamplingRuleRecords"]
        .as_array_mut()
        .expect("records")
        .push(json!({"SamplingRule": first}));
    proxy.reply_json("/GetSamplingRules", &changed);
    let mut targets = targets_body("test-rule-1", 0.0, 2, T0 + 1000, 10);
    targets["SamplingTargetDocuments"] = json!([]);
    targets["LastRuleModification"] = (T0 + 5).into();
    proxy.reply_json("/SamplingTargets", &targets);
    clock.set_epoch_seconds(T0 + 22);
    sampler.poll_once();
    assert_eq!(
        paths(&proxy.drain()),
        ["/SamplingTargets", "/GetSamplingRules"]
    );
    let delete = SamplingRequest::new().with_http_method("delete");
    assert_eq!(rule_name(&sampler, &delete).as_deref(), Some("first"));
    assert_eq!(decide(&sampler, &any_request(), 10).0, 2);

    // Statistics rejected with a 4xx code also trigger a refresh.
    let mut rejected = targets_body("test-rule-1", 0.0, 2, T0 + 1000, 10);
    rejected["UnprocessedStatistics"][0]["ErrorCode"] = "400".into();
    proxy.reply_json("/SamplingTargets", &rejected);
    clock.set_epoch_seconds(T0 + 33);
    sampler.poll_once();
    assert_eq!(
        paths(&proxy.drain()),
        ["/SamplingTargets", "/GetSamplingRules"]
    );

    // An old LastRuleModification (the fixture's 123456) does not.
    proxy.reply_json(
        "/SamplingTargets",
        &targets_body("test-rule-1", 0.0, 2, T0 + 1000, 10),
    );
    let _ = sampler.sample(&any_request());
    clock.set_epoch_seconds(T0 + 44);
    sampler.poll_once();
    assert_eq!(paths(&proxy.drain()), ["/SamplingTargets"]);
}

#[test]
fn rules_older_than_an_hour_give_way_to_the_fallback() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 1.0);
    sampler.poll_once();

    // The proxy starts failing; the cached rules stay for 3600 s.
    proxy.reply("/GetSamplingRules", Reply::Status(500, "{}".into()));
    proxy.reply("/SamplingTargets", Reply::Status(500, "{}".into()));
    clock.set_epoch_seconds(T0 + 1800);
    sampler.poll_once();
    clock.set_epoch_seconds(T0 + 3600);
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
    clock.set_epoch_seconds(T0 + 3601);
    assert_eq!(decide(&sampler, &any_request(), 10), (10, vec![None]));
    sampler.poll_once();
    assert_eq!(decide(&sampler, &any_request(), 10), (10, vec![None]));
    // Expired rules are not reported.
    assert!(!paths(&proxy.drain()).contains(&"/SamplingTargets"));

    // The proxy is back: rules again at the next rules poll.
    proxy.reply_json("/GetSamplingRules", &rules_body());
    clock.set_epoch_seconds(T0 + 3601 + 306);
    sampler.poll_once();
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
}

#[test]
fn unreachable_proxy_uses_the_fallback() {
    // A port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(addr, &clock, 1.0);
    let next = sampler.poll_once();
    assert!(next <= Duration::from_secs(11), "next poll in {next:?}");
    assert_eq!(decide(&sampler, &any_request(), 10), (10, vec![None]));
}

#[test]
fn malformed_answers_use_the_fallback_and_keep_state() {
    let proxy = ProxyServer::start();
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 1.0);
    let mut now = T0;
    let nonsense = [
        Reply::Ok("not json".into()),
        Reply::Ok("<html>proxy error</html>".into()),
        Reply::Ok("{}".into()),
        Reply::Ok(r#"{"SamplingRuleRecords": 5}"#.into()),
        Reply::Ok(r#"{"SamplingRuleRecords": [{"SamplingRule": {"RuleName": 7}}]}"#.into()),
        Reply::Ok(String::new()),
        Reply::Status(500, rules_body().to_string()),
        Reply::Status(403, r#"{"message":"denied"}"#.into()),
    ];
    for reply in nonsense {
        proxy.reply("/GetSamplingRules", reply);
        sampler.poll_once();
        assert_eq!(proxy.drain().len(), 1);
        assert_eq!(decide(&sampler, &any_request(), 5), (5, vec![None]));
        now += 306;
        clock.set_epoch_seconds(now);
    }

    // Rules loaded; then a malformed targets answer changes nothing: no
    // quota, so borrowing (1/s) and FixedRate 0.
    proxy.reply_json("/GetSamplingRules", &rules_with_rate(0.0));
    sampler.poll_once();
    assert_eq!(paths(&proxy.drain()), ["/GetSamplingRules"]);
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
    for body in [
        "[]",
        "{\"SamplingTargetDocuments\": {}}",
        "null",
        "{\"LastRuleModification\": 1}",
    ] {
        proxy.reply("/SamplingTargets", Reply::Ok(body.into()));
        now += 11;
        clock.set_epoch_seconds(now);
        let _ = sampler.sample(&any_request());
        sampler.poll_once();
        assert_eq!(paths(&proxy.drain()), ["/SamplingTargets"], "{body}");
        now += 1;
        clock.set_epoch_seconds(now);
        assert_eq!(decide(&sampler, &any_request(), 10).0, 1, "{body}");
    }
}

/// A clock that reports, from the sampler's own thread, each time it is read.
#[derive(Clone)]
struct ProbeClock {
    inner: ManualClock,
    reads: Arc<Mutex<Sender<String>>>,
}

impl Clock for ProbeClock {
    fn now(&self) -> SystemTime {
        let name = thread::current().name().unwrap_or_default().to_owned();
        if name == "tracing-xray-sampling" {
            let _ = self.reads.lock().unwrap().send(name);
        }
        self.inner.now()
    }
}

fn probe_clock() -> (ProbeClock, Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let clock = ProbeClock {
        inner: ManualClock::at_epoch_seconds(T0),
        reads: Arc::new(Mutex::new(tx)),
    };
    (clock, rx)
}

fn hanging_proxy(timeout: Duration) -> (ProxyServer, Sender<()>, Arc<CentralizedSampler>) {
    let proxy = ProxyServer::start();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    proxy.reply(
        "/GetSamplingRules",
        Reply::Hang(Arc::new(Mutex::new(gate_rx))),
    );
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(ManualClock::at_epoch_seconds(T0))
        .with_fallback(fallback(1.0))
        .with_request_timeout(timeout)
        .build_manual();
    (proxy, gate_tx, Arc::new(sampler))
}

#[test]
fn sampling_never_waits_for_the_poller() {
    let (proxy, gate, sampler) = hanging_proxy(Duration::from_secs(60));
    let poller = {
        let sampler = Arc::clone(&sampler);
        thread::spawn(move || sampler.poll_once())
    };
    // The poller is stuck on the proxy (for up to a minute)...
    let request = proxy
        .requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the poller reached the proxy");
    assert_eq!(request.path, "/GetSamplingRules");
    // ...and sampling goes on meanwhile, from the fallback.
    assert_eq!(decide(&sampler, &any_request(), 100), (100, vec![None]));
    assert!(!poller.is_finished());

    // The proxy hangs up without an answer: no rules, no panic.
    drop(gate);
    poller.join().expect("poll_once does not panic");
    assert_eq!(decide(&sampler, &any_request(), 10), (10, vec![None]));
}

#[test]
fn slow_proxy_times_out() {
    let (_proxy, _gate, sampler) = hanging_proxy(Duration::from_millis(300));
    let started = Instant::now();
    sampler.poll_once();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(decide(&sampler, &any_request(), 10), (10, vec![None]));
}

#[test]
fn background_thread_polls_and_stops() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let (clock, reads) = probe_clock();
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(clock)
        .with_fallback(fallback(0.0))
        .start()
        .expect("thread spawned");
    assert!(format!("{sampler:?}").contains("running: true"));

    // The named thread fetches the rules at once...
    let request = proxy
        .requests
        .recv_timeout(Duration::from_secs(10))
        .expect("rules fetched at start");
    assert_eq!(request.path, "/GetSamplingRules");
    // ...and its next read of the clock comes after the first poll is done.
    for _ in 0..2 {
        assert_eq!(
            reads.recv_timeout(Duration::from_secs(10)).as_deref(),
            Ok("tracing-xray-sampling")
        );
    }
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );

    let started = Instant::now();
    sampler.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(format!("{sampler:?}").contains("running: false"));
    sampler.shutdown(); // idempotent
    assert!(proxy.drain().iter().all(|r| r.path == "/GetSamplingRules"));
    // Rules loaded stay in use after shutdown.
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
}

#[test]
fn dropping_the_sampler_stops_its_thread() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let (clock, reads) = probe_clock();
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(clock)
        .start()
        .expect("thread spawned");
    assert!(reads.recv_timeout(Duration::from_secs(10)).is_ok());
    drop(sampler);
    // The thread owned the last reference to the clock: once it has exited,
    // the probe's sender is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reads.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(_) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the polling thread did not stop"),
        }
    }
}

/// `with_request_timeout(Duration::MAX)` ("no limit") must not overflow the
/// HTTP client's clock and panic in the poller.
#[test]
fn a_request_timeout_of_duration_max_does_not_panic() {
    let proxy = ProxyServer::start();
    proxy.reply_json("/GetSamplingRules", &rules_body());
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(ManualClock::at_epoch_seconds(T0))
        .with_fallback(fallback(0.0))
        .with_request_timeout(Duration::MAX)
        .build_manual();
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sampler.poll_once()));
    assert!(polled.is_ok(), "poll_once panicked");
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
}

/// The wall clock set back (an NTP step, a VM restored from a snapshot)
/// must not stop the statistics and targets exchange: a rule matched after
/// the set-back is reported at the next target poll, as the poller's own
/// schedule already recovers (it used to wait until the clock caught up
/// with the last report, an hour here).
#[test]
fn rules_keep_being_reported_after_the_clock_is_set_back() {
    let proxy = ProxyServer::start();
    proxy.reply_json(
        "/GetSamplingRules",
        &rules_of(&[fixture_rule("test-rule-1")]),
    );
    proxy.reply_json(
        "/SamplingTargets",
        &targets_body("test-rule-1", 0.0, 2, T0 + 1000, 10),
    );
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = sampler_for(proxy.addr, &clock, 1.0);
    sampler.poll_once();
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
    clock.set_epoch_seconds(T0 + 11);
    sampler.poll_once();
    assert_eq!(
        paths(&proxy.drain()),
        ["/GetSamplingRules", "/SamplingTargets"]
    );

    let back = T0 + 11 - 3600;
    clock.set_epoch_seconds(back);
    assert_eq!(
        rule_name(&sampler, &any_request()).as_deref(),
        Some("test-rule-1")
    );
    sampler.poll_once();
    let sent = proxy.drain();
    let reports: Vec<_> = sent
        .iter()
        .filter(|r| r.path == "/SamplingTargets")
        .collect();
    assert_eq!(reports.len(), 1, "{:?}", paths(&sent));
    assert_eq!(only_statistics(reports[0])["RequestCount"], 1);
}
