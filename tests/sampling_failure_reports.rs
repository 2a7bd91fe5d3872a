//! How centralized sampling reports a failed fetch: one the sampler's
//! thread meets before the application has set its subscriber (it fetches
//! the rules at once) still reaches the user, on standard error; and a
//! failure of another kind than the one reported (the daemon not ready at
//! start, then a 403 for the role) is reported too.
//!
//! Cases that need a global subscriber run in a child process of their own
//! (an `#[ignore]`d test of this binary, run by `common::run_child`), with
//! the variables a host could set cleared first. Each test failed on a773d3f,
//! or on an earlier fix of this file's; the comment above it tells the defect
//! as it was found.

mod common;
mod sampling_common;

use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sampling_common::{ManualClock, ProxyServer, Reply};
use tracing_xray::sampling::{CentralizedSampler, Clock, LocalRules, SystemClock};

/// The system clock, telling each time the sampler's own polling thread
/// reads it (once at the start of every poll).
#[derive(Clone)]
struct PollWatch {
    reads: Arc<Mutex<Sender<()>>>,
}

impl Clock for PollWatch {
    fn now(&self) -> SystemTime {
        if std::thread::current().name() == Some("tracing-xray-sampling") {
            let _ = self.reads.lock().unwrap().send(());
        }
        SystemClock.now()
    }
}

fn poll_watch() -> (PollWatch, Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (
        PollWatch {
            reads: Arc::new(Mutex::new(tx)),
        },
        rx,
    )
}

// ---------------------------------------------------------------------------
// 1. A sampling proxy that cannot be reached at start-up is reported.
//
// What the user does: what the README shows, in its order. "Centralized
// sampling": `CentralizedSampler::builder().with_fallback(..).start()?`, then
// `tracing_xray::builder().with_sampler(sampler).build()`, then (README
// "Setup") `registry().with(fmt::layer()).with(layer).init()`; the daemon's
// TCP proxy is not reachable (a wrong `tcp:` port, the daemon not started,
// nothing listening).
//
// What they should get: the crate's report of it. README: "What the crate
// reports, here and elsewhere, it reports as `tracing` events of target
// `tracing_xray`, which reach the subscriber's other layers, a `fmt` layer
// for one"; centralized.rs has a warning for exactly this ("cannot fetch
// X-Ray sampling rules; using the cached or fallback rules"). The same
// file already knows the trap: an invalid `AWS_XRAY_DAEMON_ADDRESS` is
// "reported on standard error: the sampler is usually built before any
// subscriber that could show a `tracing` event".
//
// What happened before the fix: `start()` fetches the rules at once, on its thread;
// the refused connection fails within a millisecond, before the
// application has installed its subscriber, so the warning goes to no
// subscriber. It is latched (`rules_failing`, warned once until a fetch
// succeeds), and the next fetch is 5 minutes away: nothing is ever shown,
// on the `fmt` layer or on standard error, and every trace is silently
// sampled by the fallback rules instead of the console's. (The child waits
// for the first poll to finish before installing the subscriber, so that
// the race the README order nearly always loses is lost every time.)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "run in a child process by its test"]
fn unreachable_proxy_child() {
    use tracing_subscriber::prelude::*;
    // A port nothing listens on: the connection is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (clock, polls) = poll_watch();
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(closed)
        .with_fallback(LocalRules::default())
        .with_clock(clock)
        .start()
        .expect("thread spawned");
    // The poller's second look at the clock comes after its first poll
    // (the rules fetch at start) has returned.
    for _ in 0..2 {
        polls
            .recv_timeout(Duration::from_secs(10))
            .expect("the sampler polls");
    }
    let layer = tracing_xray::builder()
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(tracing_xray::export::NoopExporter)
        .with_sampler(sampler)
        .build();
    let warnings = Warnings::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .with(warnings.clone())
        .with(layer)
        .init();
    tracing::info!("subscriber installed");
    // Room for a report held back until a subscriber exists: up to 1 s.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if warnings
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.contains("sampling rules"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_sampling_proxy_at_start_up_is_reported() {
    let (ok, text) = common::run_child("unreachable_proxy_child", &[]);
    assert!(ok, "the child failed:\n{text}");
    assert!(
        text.contains("subscriber installed"),
        "the fmt layer shows nothing at all:\n{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("sampling rules"),
        "the sampling proxy could not be reached, and nothing says so \
         (neither the fmt layer nor standard error):\n{text}"
    );
}

// ---------------------------------------------------------------------------
// 2. Once a rules fetch has failed, a failure of another kind is reported.
//
// What the user does: runs the README's centralized set-up, with a `fmt`
// layer installed first, in an ECS task or a pod whose X-Ray daemon sidecar
// starts after the application (no `dependsOn`): the first fetch finds the
// daemon not ready (here: its proxy hangs up without an answer). Five
// minutes later the daemon is up, but the task role lacks
// `xray:GetSamplingRules`, and the proxy answers every fetch with X-Ray's
// 403 AccessDeniedException.
//
// What they should get: the 403 reported, as the crate's reports go
// (README: "What the crate reports, here and elsewhere, it reports as
// `tracing` events of target `tracing_xray`"): it is the one failure that
// will not go away by itself, and until it is fixed every trace is sampled
// by the fallback rules instead of the console's.
//
// What happened before the fix: `refresh_rules` (src/sampling/centralized.rs,
// `rules_failing`) warns only on the first failure of a streak, and the
// streak lasts until a fetch succeeds, which never happens: the only line
// the user ever sees blames the start-up race ("hang up", "connection
// refused"), and the permission error stays silent for the life of the
// process.
// ---------------------------------------------------------------------------

/// The WARN events a subscriber saw: their message and fields, as text.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", f.name(), v));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
}

impl Warnings {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[test]
fn a_later_different_rules_failure_is_reported() {
    use tracing_subscriber::prelude::*;
    const T0: u64 = 1_700_000_000;
    let proxy = ProxyServer::start();
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(clock.clone())
        .with_request_timeout(Duration::from_secs(5))
        .build_manual();
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        // The daemon is not ready: its proxy hangs up without an answer.
        let (gate, hang_up) = mpsc::channel::<()>();
        drop(gate);
        proxy.reply(
            "/GetSamplingRules",
            Reply::Hang(Arc::new(Mutex::new(hang_up))),
        );
        sampler.poll_once();
        let first = warnings.take();
        assert_eq!(
            first.len(),
            1,
            "control: the first failure is reported: {first:?}"
        );

        // Five minutes later the daemon answers: X-Ray refuses the role.
        proxy.reply(
            "/GetSamplingRules",
            Reply::Status(
                403,
                r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::123456789012:assumed-role/orders-task/1 is not authorized to perform: xray:GetSamplingRules"}"#
                    .into(),
            ),
        );
        clock.set_epoch_seconds(T0 + 306);
        sampler.poll_once();
        let requests: Vec<String> = proxy.drain().into_iter().map(|r| r.path).collect();
        assert_eq!(
            requests,
            ["/GetSamplingRules", "/GetSamplingRules"],
            "the rules were fetched again"
        );
        let later = warnings.take();
        assert!(
            later
                .iter()
                .any(|w| w.contains("403") || w.contains("not authorized")),
            "the proxy now refuses every rules fetch with 403 AccessDenied, and nothing \
             says so (the only warning was the first one: {first:?}); warnings since: {later:?}"
        );
    });
}

// ---------------------------------------------------------------------------
// Once four kinds of failure were reported, a later 403 is still reported
// (a cap on the kinds reported once hid it).
//
// What the user does: the README's centralized set-up, a `fmt` layer
// installed. Rules fetches fail in turn for passing reasons (the daemon not
// ready at start: no answer; X-Ray throttling the fleet's GetSamplingRules:
// 429; an X-Ray incident: 500, then 503), one fetch every five minutes,
// without a success in between. Then the task role loses
// `xray:GetSamplingRules`: every fetch is a 403, for good.
//
// What they should get (README, "Centralized sampling"): "A failed fetch is
// a warning (target `tracing_xray::sampling`), once per kind of failure (no
// answer, an HTTP status, a malformed answer) until a fetch succeeds: the
// daemon not ready at start, then a 403 for the role, are two."
//
// What happens instead: `report_failure` (src/sampling/centralized.rs,
// `MAX_FAILURE_KINDS_REPORTED` = 4) stops reporting anything once four kinds
// were reported since the last success: the 403, the one failure that never
// goes away by itself, is never reported, and every trace is sampled by the
// fallback rules for the life of the process without a word.
// ---------------------------------------------------------------------------
#[test]
fn a_403_after_four_passing_kinds_of_failure_is_still_reported() {
    const T0: u64 = 1_700_000_000;
    let proxy = ProxyServer::start();
    let clock = ManualClock::at_epoch_seconds(T0);
    let sampler = CentralizedSampler::builder()
        .with_proxy_address(proxy.addr)
        .with_clock(clock.clone())
        .with_request_timeout(Duration::from_secs(5))
        .build_manual();
    let warnings = Warnings::default();
    use tracing_subscriber::prelude::*;
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        let (gate, hang_up) = mpsc::channel::<()>();
        drop(gate);
        let passing = [
            Reply::Hang(Arc::new(Mutex::new(hang_up))),
            Reply::Status(
                429,
                r#"{"__type":"ThrottledException","Message":"Rate exceeded"}"#.into(),
            ),
            Reply::Status(500, r#"{"__type":"InternalFailure"}"#.into()),
            Reply::Status(503, r#"{"__type":"ServiceUnavailableException"}"#.into()),
        ];
        let mut t = T0;
        for reply in passing {
            proxy.reply("/GetSamplingRules", reply);
            sampler.poll_once();
            t += 306;
            clock.set_epoch_seconds(t);
        }
        let first = warnings.take();
        assert_eq!(
            first.len(),
            4,
            "control: each passing kind reported: {first:?}"
        );

        proxy.reply(
            "/GetSamplingRules",
            Reply::Status(
                403,
                r#"{"__type":"AccessDeniedException","Message":"not authorized to perform: xray:GetSamplingRules"}"#
                    .into(),
            ),
        );
        sampler.poll_once();
        let requests = proxy.drain().len();
        assert_eq!(requests, 5, "five rules fetches");
        let later = warnings.take();
        assert!(
            later.iter().any(|w| w.contains("403")),
            "every rules fetch is now refused with 403 AccessDenied, and nothing says so \
             (reported before: {first:?}; since: {later:?})"
        );
    });
}
