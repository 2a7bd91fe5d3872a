//! Runs every vector of `fixtures/daemon-address/daemon-address-vectors.json`
//! (see the README next to it for attribution).
//!
//! No network: each vector is parsed with a stub resolver that knows only
//! `localhost` (→ 127.0.0.1 and ::1) and fails any other name. Vectors whose
//! outcome depends on DNS of another name (the Go SDK's "DNS resolution
//! failure" cases `XYZ:2000` and `tcp:ABC:2000 udp:XYZ:2000`) are therefore
//! checked against the stub only, and listed in the output. Every other vector
//! is also parsed with the real `FromStr` (IP literals, and `localhost` from
//! the hosts file).

use std::io;
use std::net::SocketAddr;

use serde_json::Value;
use tracing_xray::{DaemonAddress, DaemonAddressError};

const FIXTURE: &str = include_str!("fixtures/daemon-address/daemon-address-vectors.json");

/// Parses with the stub resolver; also returns the non-local names it was
/// asked to resolve.
fn parse_offline(input: &str) -> (Result<DaemonAddress, DaemonAddressError>, Vec<String>) {
    let mut asked = Vec::new();
    let result = DaemonAddress::parse_with_resolver(input, |host: &str, port| {
        if host == "localhost" {
            Ok(vec![
                SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ])
        } else {
            asked.push(host.to_owned());
            Err(io::Error::new(io::ErrorKind::NotFound, "no DNS in tests"))
        }
    });
    (result, asked)
}

#[test]
fn daemon_address_vectors() {
    let doc: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    let vectors = doc["vectors"].as_array().expect("vectors array");
    assert!(!vectors.is_empty(), "fixture has no vectors");

    let (mut ran, mut valid, mut invalid, mut real) = (0, 0, 0, 0);
    let mut needs_dns = Vec::new();
    for v in vectors {
        ran += 1;
        let expected = &v["expected"];
        let Some(input) = v["input"].as_str() else {
            // Unset variable: the default address.
            assert!(v["input"].is_null());
            let d = DaemonAddress::default();
            assert_eq!(d.udp().to_string(), expected["udp"].as_str().unwrap());
            assert_eq!(d.tcp().to_string(), expected["tcp"].as_str().unwrap());
            valid += 1;
            continue;
        };

        let (offline, asked) = parse_offline(input);
        match expected {
            Value::Object(e) => {
                let addr = offline.unwrap_or_else(|err| panic!("{input:?}: {err}"));
                let want = |k: &str| e[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
                assert_eq!(addr.udp(), want("udp"), "udp of {input:?}");
                assert_eq!(addr.tcp(), want("tcp"), "tcp of {input:?}");
                // What we print parses back to the same address.
                assert_eq!(
                    DaemonAddress::parse_with_resolver(&addr.to_string(), |_: &str, _| {
                        unreachable!("Display writes IP literals")
                    }),
                    Ok(addr)
                );
                valid += 1;
            }
            Value::String(s) if s.starts_with("invalid") => {
                let err = offline.expect_err(input);
                let msg = err.to_string();
                assert!(msg.starts_with("invalid X-Ray daemon address: "), "{msg}");
                invalid += 1;
            }
            other => panic!("unexpected expectation {other}"),
        }

        if asked.is_empty() {
            // Only IP literals and localhost: the real parser must agree.
            assert_eq!(
                input.parse::<DaemonAddress>(),
                parse_offline(input).0,
                "{input:?}"
            );
            real += 1;
        } else {
            needs_dns.push(format!("{input:?} (asked for {asked:?})"));
        }
    }

    assert_eq!(ran, vectors.len());
    println!("daemon address vectors run: {ran} ({valid} valid, {invalid} invalid)");
    println!("  also checked with the real resolver (IP literals / localhost only): {real}");
    println!("  DNS of non-local names needed, checked with the stub resolver only:");
    for line in &needs_dns {
        println!("    {line}");
    }
}

/// Found by a hunt of the public API: `Display` promises text that "parses
/// back to the same address", but a link-local IPv6 endpoint, written with
/// its zone as the standard library writes it (`[fe80::1%2]:2000`), was
/// refused as an invalid host; and a host name resolved to such an address
/// lost its zone, without which a link-local address cannot be reached.
#[test]
fn a_zoned_ipv6_endpoint_parses_back_from_its_display() {
    use std::net::{SocketAddr, SocketAddrV6};
    let link_local: SocketAddr = "[fe80::1%2]:2000".parse().unwrap();
    let addr = DaemonAddress::new(link_local, link_local);
    let text = addr.to_string();
    assert_eq!(text, "[fe80::1%2]:2000");
    assert_eq!(text.parse::<DaemonAddress>(), Ok(addr));
    // A split address holding one.
    let tcp: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let split = DaemonAddress::new(link_local, tcp);
    assert_eq!(split.to_string().parse::<DaemonAddress>(), Ok(split));
    // A zone that is not a number (an interface's name) has no such form.
    assert!(matches!(
        "[fe80::1%eth0]:2000".parse::<DaemonAddress>(),
        Err(DaemonAddressError::InvalidHost { .. })
    ));
    // A host name resolved to a zoned address keeps its zone.
    let resolved = DaemonAddress::parse_with_resolver("xray-daemon:2000", |_: &str, port| {
        Ok(vec![SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            port,
            0,
            2,
        ))])
    })
    .unwrap();
    assert_eq!(resolved.udp(), link_local);
}

/// `AWS_XRAY_DAEMON_ADDRESS=[::1]` (the port forgotten) said "port `1]` in
/// `[::1]` is not a number from 1 to 65535", a port the user never wrote:
/// the value was split at its last `:`, inside the brackets. It is
/// `MissingPort`, as `127.0.0.1` is.
#[test]
fn a_bracketed_ipv6_endpoint_without_a_port_says_the_port_is_missing() {
    assert!(matches!(
        "127.0.0.1".parse::<DaemonAddress>(),
        Err(DaemonAddressError::MissingPort { .. })
    ));
    for value in ["[::1]", "udp:[::1] tcp:127.0.0.1:2000"] {
        let err = value.parse::<DaemonAddress>().unwrap_err();
        assert!(
            matches!(err, DaemonAddressError::MissingPort { ref endpoint } if endpoint == "[::1]"),
            "{value}: {err:?} ({err})"
        );
    }
    // Text after the brackets that is not `:port`.
    assert!(matches!(
        "[::1]2000".parse::<DaemonAddress>(),
        Err(DaemonAddressError::InvalidHost { .. })
    ));
}
