//! A stand-in for the X-Ray daemon's sampling proxy (SPEC §2.4): a small
//! HTTP/1.1 server on 127.0.0.1 that records every request and answers by
//! path with a configurable reply.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_xray::sampling::Clock;

/// A request the proxy received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// How the proxy answers a path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body.
    Ok(String),
    /// This status with this body.
    Status(u16, String),
    /// Never answers until the sender side of the gate is dropped or sends;
    /// then closes the connection without a response.
    Hang(Arc<Mutex<Receiver<()>>>),
}

pub struct ProxyServer {
    pub addr: SocketAddr,
    pub requests: Receiver<Recorded>,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
}

impl ProxyServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, requests) = mpsc::channel();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let shared = Arc::clone(&replies);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (tx, replies) = (tx.clone(), Arc::clone(&shared));
                thread::spawn(move || serve(stream, &tx, &replies));
            }
        });
        ProxyServer {
            addr,
            requests,
            replies,
        }
    }

    /// Sets the reply for a path such as `/GetSamplingRules`.
    pub fn reply(&self, path: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(path.to_owned(), reply);
    }

    pub fn reply_json(&self, path: &str, body: &serde_json::Value) {
        self.reply(path, Reply::Ok(body.to_string()));
    }

    /// Everything received so far (the client has finished each request
    /// before `poll_once` returns, so this is exact after a poll).
    pub fn drain(&self) -> Vec<Recorded> {
        self.requests.try_iter().collect()
    }
}

fn serve(stream: TcpStream, tx: &Sender<Recorded>, replies: &Mutex<HashMap<String, Reply>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut length, mut content_type) = (0usize, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let reply = replies.lock().unwrap().get(&path).cloned();
    let _ = tx.send(Recorded {
        method,
        path,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, body) = match reply {
        Some(Reply::Ok(body)) => (200, body),
        Some(Reply::Status(status, body)) => (status, body),
        Some(Reply::Hang(gate)) => {
            let _ = gate.lock().unwrap().recv();
            return;
        }
        None => (404, String::from("{\"message\":\"not found\"}")),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// A clock the test sets by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    pub fn at_epoch_seconds(secs: u64) -> Self {
        ManualClock(Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(secs))))
    }

    pub fn set_epoch_seconds(&self, secs: u64) {
        *self.0.lock().unwrap() = UNIX_EPOCH + Duration::from_secs(secs);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sampling")
        .join(name)
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}
