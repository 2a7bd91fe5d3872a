//! Helpers shared by the integration tests: a console on 127.0.0.1:0 ports, a UDP
//! sender and a minimal HTTP/1.0 client (no extra dependencies).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use xray_console::{Config, Console, Limits};

/// The default configuration, on free loopback ports.
pub fn loopback() -> Config {
    Config {
        udp_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        ..Config::default()
    }
}

pub fn start(limits: Limits) -> Console {
    Console::start(Config {
        limits,
        ..loopback()
    })
    .expect("console starts on loopback")
}

pub fn sender() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// Sends one request and returns the status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, b"");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (bounded) until the console has received `n` datagrams.
pub fn wait_datagrams(console: &Console, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = console.stats().datagrams;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} datagrams arrived"
        );
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// Percent-encodes a query value (every byte: valid, if not the shortest form).
pub fn enc(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
