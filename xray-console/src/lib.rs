//! A local AWS X-Ray console.
//!
//! Listens where the X-Ray daemon listens (UDP `127.0.0.1:2000` for segment documents,
//! TCP `127.0.0.1:2000` for the SDKs' sampling calls) and serves, on the same TCP address,
//! a service map, a filterable trace list and per-trace timelines with the critical path.
//!
//! Std threads only, no async runtime: the UDP intake threads, an HTTP accept thread and
//! one short-lived thread per HTTP connection (a small server of the console's own, with
//! bounded reads and writes) share one store behind a mutex. The library is what the
//! `xray-console` binary runs, and what tests use to start a console of their own:
//! [`Console`], its [`Config`], [`Limits`] and [`HttpDeadlines`], and its [`Stats`].
//!
//! ```no_run
//! let console = xray_console::Console::start(xray_console::Config::default()).unwrap();
//! println!("http://{}", console.http_addr());
//! console.wait();
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod filter;
mod http;
mod intake;
mod map;
mod model;
mod pages;
mod server;
mod store;
mod timeline;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

pub use http::HttpDeadlines;
pub use store::Limits;

/// Where to listen and how much to keep.
///
/// ```
/// use xray_console::{Config, Limits};
///
/// // Any free ports on the loopback interface, and a small store.
/// let config = Config {
///     udp_addr: "127.0.0.1:0".into(),
///     http_addr: "127.0.0.1:0".into(),
///     limits: Limits { max_traces: 100, ..Limits::default() },
///     ..Config::default()
/// };
/// assert_eq!(Config::default().udp_addr, "127.0.0.1:2000");
/// # drop(config);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address for segment datagrams (default `127.0.0.1:2000`).
    pub udp_addr: String,
    /// TCP address for the pages, the JSON API and the sampling calls (default
    /// `127.0.0.1:2000`).
    pub http_addr: String,
    /// Store bounds.
    pub limits: Limits,
    /// HTTP connections served at once (default 64), each on a thread of its own. A
    /// connection past the limit is answered `503 Service Unavailable` with
    /// `Retry-After: 1` at once, and closed.
    pub max_http_connections: usize,
    /// How long reading a request and writing its response may take, on one connection.
    pub http_deadlines: HttpDeadlines,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp_addr: "127.0.0.1:2000".into(),
            http_addr: "127.0.0.1:2000".into(),
            limits: Limits::default(),
            max_http_connections: 64,
            http_deadlines: HttpDeadlines::default(),
        }
    }
}

/// Everything behind the state mutex.
#[derive(Debug)]
pub(crate) struct Inner {
    /// The traces.
    pub(crate) store: store::Store,
    /// Intake counters.
    pub(crate) intake: intake::IntakeStats,
}

/// State shared by the intake and the HTTP threads.
#[derive(Debug)]
pub(crate) struct State {
    inner: Mutex<Inner>,
    /// Set to stop the threads.
    pub(crate) stop: AtomicBool,
    /// Datagrams dropped because the processing queue was full.
    pub(crate) queue_dropped: AtomicU64,
    /// When the console started (epoch seconds).
    pub(crate) started: f64,
}

impl State {
    /// A fresh state.
    pub(crate) fn new(limits: Limits) -> State {
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
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a console has received and holds: the numbers `GET /api/stats` reports first.
///
/// ```
/// # let console = xray_console::Console::start(xray_console::Config {
/// #     udp_addr: "127.0.0.1:0".into(),
/// #     http_addr: "127.0.0.1:0".into(),
/// #     ..Default::default()
/// # }).unwrap();
/// let stats = console.stats();
/// assert_eq!(stats.datagrams, 0);
/// assert_eq!(stats.traces, 0);
/// # console.shutdown();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received on the UDP port.
    pub datagrams: u64,
    /// Documents accepted into the store from datagrams.
    pub accepted: u64,
    /// Documents imported over HTTP (`POST /api/import`).
    pub imported: u64,
    /// Datagrams rejected (not a daemon datagram, not a segment document, or one the
    /// console failed on: a panic while reading or storing it, a bug).
    pub rejected: u64,
    /// Traces held.
    pub traces: usize,
    /// Bytes charged for what is held: documents, their summaries and their bookkeeping,
    /// at most [`Limits::max_bytes`].
    pub bytes: usize,
    /// Traces ever created.
    pub traces_created: u64,
    /// Traces evicted, oldest first, to stay within the [`Limits`].
    pub traces_evicted: u64,
}

/// A running console.
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::{Duration, Instant};
/// use xray_console::{Config, Console};
///
/// let console = Console::start(Config {
///     udp_addr: "127.0.0.1:0".into(),
///     http_addr: "127.0.0.1:0".into(),
///     ..Config::default()
/// })
/// .unwrap();
/// // What an X-Ray SDK sends to the daemon:
/// let datagram = "{\"format\":\"json\",\"version\":1}\n\
///     {\"trace_id\":\"1-6b06f324-0123456789abcdef01234567\",\"id\":\"53995c3f42cd8ad8\",\
///     \"name\":\"shop\",\"start_time\":1795617572.1,\"end_time\":1795617572.2}";
/// UdpSocket::bind("127.0.0.1:0")
///     .unwrap()
///     .send_to(datagram.as_bytes(), console.udp_addr())
///     .unwrap();
/// let deadline = Instant::now() + Duration::from_secs(10);
/// while console.stats().accepted == 0 && Instant::now() < deadline {
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// assert_eq!(console.stats().traces, 1);
/// println!("see it at http://{}", console.http_addr());
/// console.shutdown();
/// ```
pub struct Console {
    udp_addr: SocketAddr,
    http_addr: SocketAddr,
    state: Arc<State>,
    http: http::Server,
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
    ///
    /// ```
    /// use xray_console::{Config, Console};
    ///
    /// let console = Console::start(Config {
    ///     udp_addr: "127.0.0.1:0".into(),
    ///     http_addr: "127.0.0.1:0".into(),
    ///     ..Config::default()
    /// })
    /// .unwrap();
    /// // A port already taken is an error, not a panic.
    /// let taken = Console::start(Config {
    ///     udp_addr: console.udp_addr().to_string(),
    ///     http_addr: "127.0.0.1:0".into(),
    ///     ..Config::default()
    /// });
    /// assert!(taken.is_err());
    /// console.shutdown();
    /// ```
    ///
    /// # Errors
    ///
    /// A socket cannot be bound (an address in use, or not this machine's).
    pub fn start(config: Config) -> std::io::Result<Console> {
        let socket = UdpSocket::bind(&config.udp_addr)?;
        let udp_addr = socket.local_addr()?;
        let state = Arc::new(State::new(config.limits));
        let http = {
            let state = state.clone();
            http::Server::start(
                &config.http_addr,
                config.max_http_connections,
                config.http_deadlines,
                Arc::new(move |req: &mut http::Request<'_>| server::handle(&state, req)),
            )?
        };
        let http_addr = http.addr();
        let udp = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("xray-udp".into())
                .spawn(move || intake::run(socket, state))
        };
        let udp = match udp {
            Ok(t) => t,
            Err(e) => {
                http.shutdown();
                return Err(e);
            }
        };
        Ok(Console {
            udp_addr,
            http_addr,
            state,
            http,
            threads: vec![udp],
        })
    }

    /// The bound UDP address (where to point `AWS_XRAY_DAEMON_ADDRESS`).
    ///
    /// ```
    /// # let console = xray_console::Console::start(xray_console::Config {
    /// #     udp_addr: "127.0.0.1:0".into(),
    /// #     http_addr: "127.0.0.1:0".into(),
    /// #     ..Default::default()
    /// # }).unwrap();
    /// let addr = console.udp_addr();
    /// assert!(addr.ip().is_loopback() && addr.port() != 0);
    /// # console.shutdown();
    /// ```
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound HTTP address: the pages, the JSON API and the sampling calls.
    ///
    /// ```
    /// # let console = xray_console::Console::start(xray_console::Config {
    /// #     udp_addr: "127.0.0.1:0".into(),
    /// #     http_addr: "127.0.0.1:0".into(),
    /// #     ..Default::default()
    /// # }).unwrap();
    /// let url = format!("http://{}/traces", console.http_addr());
    /// assert!(url.starts_with("http://127.0.0.1:"));
    /// # console.shutdown();
    /// ```
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// What the console has received and holds, now.
    ///
    /// ```
    /// # let console = xray_console::Console::start(xray_console::Config {
    /// #     udp_addr: "127.0.0.1:0".into(),
    /// #     http_addr: "127.0.0.1:0".into(),
    /// #     ..Default::default()
    /// # }).unwrap();
    /// let before = console.stats();
    /// std::net::UdpSocket::bind("127.0.0.1:0")
    ///     .unwrap()
    ///     .send_to(b"not a datagram", console.udp_addr())
    ///     .unwrap();
    /// for _ in 0..2_000 {
    ///     if console.stats().datagrams > before.datagrams {
    ///         break;
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// assert_eq!(console.stats().rejected, 1);
    /// # console.shutdown();
    /// ```
    pub fn stats(&self) -> Stats {
        let inner = self.state.lock();
        let store = inner.store.stats();
        Stats {
            datagrams: inner.intake.datagrams,
            accepted: inner.intake.accepted,
            imported: inner.intake.imported,
            rejected: inner.intake.rejected,
            traces: inner.store.len(),
            bytes: inner.store.bytes(),
            traces_created: store.traces_created,
            traces_evicted: store.traces_evicted,
        }
    }

    /// Blocks for as long as the console runs: its threads end only with the process.
    ///
    /// ```no_run
    /// let console = xray_console::Console::start(Default::default()).unwrap();
    /// eprintln!("X-Ray console on http://{}", console.http_addr());
    /// console.wait(); // until Ctrl-C
    /// ```
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
        self.http.wait();
    }

    /// Stops the threads and waits for them, closing the HTTP connections still open;
    /// both ports are free again after.
    ///
    /// ```
    /// # let console = xray_console::Console::start(xray_console::Config {
    /// #     udp_addr: "127.0.0.1:0".into(),
    /// #     http_addr: "127.0.0.1:0".into(),
    /// #     ..Default::default()
    /// # }).unwrap();
    /// let (udp, tcp) = (console.udp_addr(), console.http_addr());
    /// console.shutdown();
    /// assert!(std::net::UdpSocket::bind(udp).is_ok());
    /// assert!(std::net::TcpListener::bind(tcp).is_ok());
    /// ```
    pub fn shutdown(self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.http.shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }
}
