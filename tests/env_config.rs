//! `AWS_XRAY_DAEMON_ADDRESS` and `AWS_XRAY_TRACING_NAME` win over code, as in
//! every official SDK. One test per binary: the environment is process-wide.

mod common;

use std::time::Duration;

use tracing_subscriber::prelude::*;

/// Set in the child process the test starts to read what it prints.
const CHILD: &str = "TRACING_XRAY_ENV_CONFIG_CHILD";

#[test]
fn environment_configures_the_default_layer() {
    if std::env::var_os(CHILD).is_some() {
        // The child: `AWS_XRAY_DAEMON_ADDRESS` is invalid; the code's
        // address is used, and the parent reads the message about it.
        let code: std::net::SocketAddr = "127.0.0.1:2999".parse().unwrap();
        assert_eq!(tracing_xray::export::UdpExporter::new(code).address(), code);
        // The same for the sampling proxy, reported on standard error too:
        // the sampler is built before any subscriber could show an event.
        let proxy: std::net::SocketAddr = "127.0.0.1:2998".parse().unwrap();
        let sampler = tracing_xray::sampling::CentralizedSampler::builder()
            .with_proxy_address(proxy)
            .build_manual();
        assert_eq!(sampler.proxy_address(), proxy);
        return;
    }
    let daemon = common::Daemon::start();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe {
        std::env::set_var(
            "AWS_XRAY_DAEMON_ADDRESS",
            format!("tcp:127.0.0.1:2000 udp:{}", daemon.addr),
        )
    };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_XRAY_TRACING_NAME", "from-env") };
    let layer = tracing_xray::builder()
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_service_name("from-code")
        .build();
    let xray = layer.handle();
    assert!(xray.is_enabled());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("request").in_scope(|| {});
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    let docs = daemon.documents(1, Duration::from_secs(5));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["name"], "from-env");
    // The sampling proxy is the variable's `tcp` part, whatever the code
    // says: rules come from the daemon the segments go to.
    let sampler = tracing_xray::sampling::CentralizedSampler::builder()
        .with_proxy_address("127.0.0.1:2999".parse().unwrap())
        .build_manual();
    assert_eq!(sampler.proxy_address().to_string(), "127.0.0.1:2000");

    // An invalid address is a clear error, and the default layer still builds.
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", "udp:127.0.0.1:not-a-port") };
    let err = tracing_xray::export::UdpExporter::from_env().unwrap_err();
    assert!(err.to_string().contains("not-a-port"), "{err}");
    let layer = tracing_xray::layer();
    assert!(layer.is_enabled());

    // Whitespace around the name (an env file, a ConfigMap value ending in a
    // newline) is not part of it; a value with no character X-Ray allows in
    // a name gives way to the code's name.
    for (env, expected) in [(" from-env \n", "from-env"), ("???", "from-code")] {
        // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
        unsafe { std::env::set_var("AWS_XRAY_TRACING_NAME", env) };
        let exporter = tracing_xray::export::InMemoryExporter::new();
        let layer = tracing_xray::builder()
            .with_sampler(tracing_xray::sampling::AlwaysSample)
            .with_detectors(tracing_xray::Detectors::none())
            .with_service_name("from-code")
            .with_exporter(exporter.clone())
            .build();
        let xray = layer.handle();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info_span!("request").in_scope(|| {});
        });
        xray.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(exporter.traces()[0]["name"], expected, "{env:?}");
    }

    // `UdpExporter::new` with an invalid environment value keeps the code's
    // address, and says why: a typo in the variable is never silent.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "environment_configures_the_default_layer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:20o0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("invalid X-Ray daemon address") && stderr.contains("`20o0`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fetching sampling rules from 127.0.0.1:2998"),
        "{stderr}"
    );
}
