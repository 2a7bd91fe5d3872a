//! [`UdpExporter`]: the X-Ray daemon's UDP protocol (SPEC §2.1).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use super::{Document, ExportError, ExportOutcome, Exporter};

/// The datagram header every official SDK sends before the document.
pub(crate) const DATAGRAM_HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";
/// The largest UDP payload IPv4 can carry.
const MAX_DATAGRAM_BYTES: usize = 65_507;
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends each document as one datagram to the X-Ray daemon (or the CloudWatch
/// agent, or the OpenTelemetry collector's `awsxray` receiver):
/// `{"format":"json","version":1}` + `\n` + the document.
///
/// A daemon that is down costs the application nothing: sends happen on the
/// worker thread, and the failures the kernel reports are counted in
/// [`crate::Stats::documents_failed`]. The kernel reports a refused
/// datagram (ICMP port unreachable) on the *next* send, which it then does
/// not make: that document is counted as failed and sent once more, so
/// that a daemon that has just (re)started gets it.
///
/// UDP gives no receipt: [`crate::Stats::documents_exported`] counts the
/// datagrams the kernel accepted, and a receiver whose socket buffer is full
/// drops the rest of a burst unseen (the X-Ray daemon and the CloudWatch
/// agent read theirs quickly; a test's plain `UdpSocket` with the default
/// buffer may not). Sends are not paced.
///
/// ```no_run
/// use tracing_xray::export::UdpExporter;
///
/// // AWS_XRAY_DAEMON_ADDRESS, else 127.0.0.1:2000:
/// let exporter = UdpExporter::from_env()?;
/// let layer = tracing_xray::builder().with_exporter(exporter).build();
/// # Ok::<(), tracing_xray::DaemonAddressError>(())
/// ```
#[derive(Debug)]
pub struct UdpExporter {
    address: SocketAddr,
    socket: Option<UdpSocket>,
    buffer: Vec<u8>,
}

impl Default for UdpExporter {
    /// Sends to `127.0.0.1:2000`.
    fn default() -> Self {
        UdpExporter::to_address(SocketAddr::from((Ipv4Addr::LOCALHOST, 2000)))
    }
}

impl UdpExporter {
    /// Sends to `address`, unless `AWS_XRAY_DAEMON_ADDRESS` holds a valid
    /// address: like every official SDK, the environment wins over code. An
    /// invalid value is reported on standard error (naming the problem) and
    /// `address` is used.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tracing_xray::export::UdpExporter;
    ///
    /// let sidecar: SocketAddr = "127.0.0.1:2001".parse().unwrap();
    /// # unsafe { std::env::remove_var("AWS_XRAY_DAEMON_ADDRESS") };
    /// assert_eq!(UdpExporter::new(sidecar).address(), sidecar);
    ///
    /// // SAFETY: no other thread of this program reads the environment yet.
    /// unsafe { std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:3000") };
    /// assert_eq!(UdpExporter::new(sidecar).address().port(), 3000);
    /// ```
    pub fn new(address: SocketAddr) -> Self {
        match crate::DaemonAddress::from_env() {
            Ok(Some(env)) => UdpExporter::to_address(env.udp()),
            Ok(None) => UdpExporter::to_address(address),
            Err(err) => {
                crate::stderr_line(format_args!("tracing-xray: {err}; sending to {address}"));
                UdpExporter::to_address(address)
            }
        }
    }

    /// Sends to the UDP address in `AWS_XRAY_DAEMON_ADDRESS` (either form:
    /// `host:port`, or `tcp:host:port udp:host:port`), else to
    /// `127.0.0.1:2000`. An invalid value is an error naming the problem.
    ///
    /// ```
    /// use tracing_xray::export::UdpExporter;
    ///
    /// // SAFETY: no other thread of this program reads the environment yet.
    /// unsafe { std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", "tcp:127.0.0.1:2000 udp:127.0.0.1:2001") };
    /// assert_eq!(UdpExporter::from_env()?.address().port(), 2001);
    ///
    /// // SAFETY: as above.
    /// unsafe { std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:20o0") };
    /// assert!(UdpExporter::from_env().is_err());
    /// # Ok::<(), tracing_xray::DaemonAddressError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `AWS_XRAY_DAEMON_ADDRESS` is set but invalid (see
    /// [`DaemonAddress::from_env`](crate::DaemonAddress::from_env)).
    pub fn from_env() -> Result<Self, crate::DaemonAddressError> {
        Ok(match crate::DaemonAddress::from_env()? {
            Some(a) => UdpExporter::to_address(a.udp()),
            None => UdpExporter::default(),
        })
    }

    /// Sends to exactly `address`, ignoring the environment (tests, sidecars
    /// at fixed addresses).
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::UdpExporter;
    ///
    /// // A stand-in for the daemon, on a free local port:
    /// let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// # daemon.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(UdpExporter::to_address(daemon.local_addr().unwrap()))
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {});
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    ///
    /// let mut datagram = [0; 65_536];
    /// let n = daemon.recv(&mut datagram).unwrap();
    /// assert!(datagram[..n].starts_with(b"{\"format\":\"json\",\"version\":1}\n{"));
    /// ```
    pub fn to_address(address: SocketAddr) -> Self {
        UdpExporter {
            address,
            socket: None,
            buffer: Vec::with_capacity(8 * 1024),
        }
    }

    /// Where datagrams go.
    ///
    /// ```
    /// use tracing_xray::export::UdpExporter;
    ///
    /// assert_eq!(UdpExporter::default().address().to_string(), "127.0.0.1:2000");
    /// ```
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn socket(&mut self) -> io::Result<&UdpSocket> {
        if self.socket.is_none() {
            let bind: SocketAddr = if self.address.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(bind)?;
            // Connected, so that the kernel reports an unreachable daemon
            // (ICMP port unreachable) as an error on a later send.
            socket.connect(self.address)?;
            socket.set_write_timeout(Some(SEND_TIMEOUT))?;
            self.socket = Some(socket);
        }
        self.socket
            .as_ref()
            .ok_or_else(|| io::Error::other("no socket"))
    }

    fn send(&mut self, doc: &Document) -> Result<(), ExportError> {
        let size = DATAGRAM_HEADER.len() + doc.len();
        if size > MAX_DATAGRAM_BYTES {
            return Err(ExportError::TooLarge {
                size,
                limit: MAX_DATAGRAM_BYTES,
            });
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        buffer.extend_from_slice(DATAGRAM_HEADER.as_bytes());
        buffer.extend_from_slice(doc.as_str().as_bytes());
        let result = self.socket().and_then(|s| s.send(&buffer));
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                // The refusal was an earlier datagram's, and this one was not
                // sent: send it now (the daemon may be back), but report the
                // failure the kernel reported.
                let _ = self.socket().and_then(|s| s.send(&buffer));
            }
        }
        self.buffer = buffer;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
                ) {
                    // Start afresh next time (network changes, closed fds).
                    self.socket = None;
                }
                Err(ExportError::Io(e))
            }
        }
    }
}

impl Exporter for UdpExporter {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        for doc in batch {
            match self.send(&doc) {
                Ok(()) => outcome.delivered += 1,
                Err(e) => outcome.fail(doc, e),
            }
        }
        outcome
    }
}
