//! A local AWS X-Ray console.
//!
//! Listens where the X-Ray daemon listens (UDP `127.0.0.1:2000` for segment documents,
//! TCP `127.0.0.1:2000` for the SDKs' sampling calls) and serves, on the same TCP address,
//! a service map, a filterable trace list and per-trace timelines with the critical path.
//!
//! Std threads only: one UDP intake thread and a few HTTP worker threads share one
//! [`State`] behind a mutex.
//!
//! ```no_run
//! let console = xray_console::Console::start(xray_console::Config::default()).unwrap();
//! println!("http://{}", console.http_addr());
//! console.wait();
//! ```
#![warn(missing_docs, missing_debug_implementations)]

pub mod filter;
pub mod intake;
pub mod map;
pub mod model;
pub mod pages;
pub mod server;
pub mod store;
pub mod timeline;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

pub use store::Limits;

/// Where to listen and how much to keep.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address for segment datagrams (default `127.0.0.1:2000`).
    pub udp_addr: String,
    /// TCP address for the pages, the JSON API and the sampling calls (default
    /// `127.0.0.1:2000`).
    pub http_addr: String,
    /// Store bounds.
    pub limits: Limits,
    /// HTTP worker threads (default 4).
    pub http_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp_addr: "127.0.0.1:2000".into(),
            http_addr: "127.0.0.1:2000".into(),
            limits: Limits::default(),
            http_threads: 4,
        }
    }
}

/// Everything behind the state mutex.
#[derive(Debug)]
pub struct Inner {
    /// The traces.
    pub store: store::Store,
    /// Intake counters.
    pub intake: intake::IntakeStats,
}

/// State shared by the intake and the HTTP threads.
#[derive(Debug)]
pub struct State {
    inner: Mutex<Inner>,
    /// Set to stop the threads.
    pub stop: AtomicBool,
    /// Datagrams dropped because the processing queue was full.
    pub queue_dropped: AtomicU64,
    /// When the console started (epoch seconds).
    pub started: f64,
}

impl State {
    /// A fresh state.
    pub fn new(limits: Limits) -> State {
        State {
            inner: Mutex::new(Inner {
                store: store::Store::new(limits),
                intake: intake::IntakeStats::default(),
            }),
            stop: AtomicBool::new(false),
            queue_dropped: AtomicU64::new(0),
            started: now(),
        }
    }

    /// Locks the state; a panic in another thread does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A running console.
pub struct Console {
    udp_addr: SocketAddr,
    http_addr: SocketAddr,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("udp_addr", &self.udp_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Binds both sockets and starts the threads.
    pub fn start(config: Config) -> std::io::Result<Console> {
        let socket = UdpSocket::bind(&config.udp_addr)?;
        let udp_addr = socket.local_addr()?;
        let server = tiny_http::Server::http(&config.http_addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::AddrInUse, e.to_string()))?;
        let http_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let server = Arc::new(server);
        let state = Arc::new(State::new(config.limits));
        let mut threads = Vec::new();
        {
            let state = state.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("xray-udp".into())
                    .spawn(move || intake::run(socket, state))?,
            );
        }
        for i in 0..config.http_threads.max(1) {
            let state = state.clone();
            let server = server.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("xray-http-{i}"))
                    .spawn(move || server::run(&server, &state))?,
            );
        }
        Ok(Console {
            udp_addr,
            http_addr,
            state,
            server,
            threads,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Blocks until the threads end (they end only after [`Console::shutdown`] from
    /// another handle, or on process exit).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops the threads and waits for them.
    pub fn shutdown(self) {
        self.state.stop.store(true, Ordering::Relaxed);
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
