//! The X-Ray daemon address (`AWS_XRAY_DAEMON_ADDRESS`).

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::str::FromStr;

/// Where the X-Ray daemon listens: a UDP endpoint for segment documents and a
/// TCP endpoint for the sampling proxy.
///
/// Parsed from the `AWS_XRAY_DAEMON_ADDRESS` syntax:
///
/// - `host:port`: the same endpoint for UDP and TCP;
/// - `tcp:host:port udp:host:port` (either order, separated by whitespace):
///   both parts are required, each protocol at most once.
///
/// `host` is an IPv4 address, a bracketed IPv6 address (`[::1]`) or a host name
/// (resolved when parsing, preferring IPv4; [`FromStr`] may therefore block on
/// DNS, see [`DaemonAddress::parse_with_resolver`]). `port` is a decimal number
/// from 1 to 65535. The default is `127.0.0.1:2000` for both.
///
/// # Examples
///
/// ```
/// use tracing_xray::DaemonAddress;
///
/// let both: DaemonAddress = "192.168.0.1:3000".parse().unwrap();
/// assert_eq!(both.udp(), "192.168.0.1:3000".parse().unwrap());
/// assert_eq!(both.tcp(), both.udp());
///
/// let split: DaemonAddress = "udp:127.0.0.2:2001 tcp:127.0.0.1:2000".parse().unwrap();
/// assert_eq!(split.udp(), "127.0.0.2:2001".parse().unwrap());
/// assert_eq!(split.tcp(), "127.0.0.1:2000".parse().unwrap());
/// assert_eq!(split.to_string(), "tcp:127.0.0.1:2000 udp:127.0.0.2:2001");
///
/// assert!("udp:127.0.0.1:2000".parse::<DaemonAddress>().is_err()); // tcp part missing
/// assert_eq!(DaemonAddress::default().to_string(), "127.0.0.1:2000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DaemonAddress {
    udp: SocketAddr,
    tcp: SocketAddr,
}

/// The error returned for an unusable daemon address; its message names the
/// problem and the offending value.
///
/// ```
/// use tracing_xray::{DaemonAddress, DaemonAddressError};
///
/// let err = "udp:1.2.3.4:2a tcp:127.0.0.1:2000".parse::<DaemonAddress>().unwrap_err();
/// assert!(matches!(err, DaemonAddressError::InvalidPort { ref port, .. } if port == "2a"));
/// assert_eq!(
///     err.to_string(),
///     "invalid X-Ray daemon address: port `2a` in `1.2.3.4:2a` is not a number from 1 to 65535"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonAddressError {
    /// The value is empty or only whitespace.
    Empty,
    /// The value is neither `host:port` nor `tcp:host:port udp:host:port`.
    Malformed {
        /// The whole value.
        value: String,
    },
    /// The two-part form lacks one protocol (for example `udp:…` alone).
    MissingProtocol {
        /// `"tcp"` or `"udp"`.
        protocol: &'static str,
        /// The whole value.
        value: String,
    },
    /// The same protocol is given twice.
    DuplicateProtocol {
        /// `"tcp"` or `"udp"`.
        protocol: &'static str,
        /// The whole value.
        value: String,
    },
    /// An endpoint has no `:port`.
    MissingPort {
        /// The endpoint (`host:port` part).
        endpoint: String,
    },
    /// The port is not a decimal number from 1 to 65535.
    InvalidPort {
        /// The port text.
        port: String,
        /// The endpoint (`host:port` part).
        endpoint: String,
    },
    /// The host is empty, or neither an IP address nor a syntactically valid
    /// host name.
    InvalidHost {
        /// The host text.
        host: String,
        /// The endpoint (`host:port` part).
        endpoint: String,
    },
    /// Resolving the host name failed or gave no address.
    Resolve {
        /// The host name.
        host: String,
        /// Why resolution failed.
        reason: String,
    },
    /// The environment variable is not valid Unicode.
    NotUnicode,
}

impl fmt::Display for DaemonAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid X-Ray daemon address: ")?;
        match self {
            Self::Empty => f.write_str("the value is empty"),
            Self::Malformed { value } => write!(
                f,
                "`{value}` is neither `host:port` nor `tcp:host:port udp:host:port`"
            ),
            Self::MissingProtocol { protocol, value } => write!(
                f,
                "`{value}` has no `{protocol}:` part (both `tcp:` and `udp:` are required)"
            ),
            Self::DuplicateProtocol { protocol, value } => {
                write!(f, "`{value}` gives `{protocol}:` twice")
            }
            Self::MissingPort { endpoint } => write!(f, "`{endpoint}` has no `:port`"),
            Self::InvalidPort { port, endpoint } => write!(
                f,
                "port `{port}` in `{endpoint}` is not a number from 1 to 65535"
            ),
            Self::InvalidHost { host, endpoint } => {
                write!(
                    f,
                    "host `{host}` in `{endpoint}` is not a valid address or host name"
                )
            }
            Self::Resolve { host, reason } => write!(f, "cannot resolve `{host}`: {reason}"),
            Self::NotUnicode => write!(f, "{} is not valid Unicode", DaemonAddress::ENV_VAR),
        }
    }
}

impl Error for DaemonAddressError {}

impl DaemonAddress {
    /// The environment variable read by [`DaemonAddress::from_env`].
    ///
    /// ```
    /// assert_eq!(tracing_xray::DaemonAddress::ENV_VAR, "AWS_XRAY_DAEMON_ADDRESS");
    /// ```
    pub const ENV_VAR: &'static str = "AWS_XRAY_DAEMON_ADDRESS";

    /// An address with separate UDP and TCP endpoints.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tracing_xray::DaemonAddress;
    ///
    /// let udp: SocketAddr = "10.0.0.1:2000".parse().unwrap();
    /// let tcp: SocketAddr = "10.0.0.1:2001".parse().unwrap();
    /// let addr = DaemonAddress::new(udp, tcp);
    /// assert_eq!(addr.to_string(), "tcp:10.0.0.1:2001 udp:10.0.0.1:2000");
    /// ```
    pub fn new(udp: SocketAddr, tcp: SocketAddr) -> Self {
        DaemonAddress { udp, tcp }
    }

    /// The UDP endpoint, where segment documents are sent.
    ///
    /// ```
    /// use tracing_xray::DaemonAddress;
    /// assert_eq!(DaemonAddress::default().udp(), "127.0.0.1:2000".parse().unwrap());
    /// ```
    pub fn udp(&self) -> SocketAddr {
        self.udp
    }

    /// The TCP endpoint of the daemon's sampling proxy.
    ///
    /// ```
    /// use tracing_xray::DaemonAddress;
    /// assert_eq!(DaemonAddress::default().tcp(), "127.0.0.1:2000".parse().unwrap());
    /// ```
    pub fn tcp(&self) -> SocketAddr {
        self.tcp
    }

    /// Reads `AWS_XRAY_DAEMON_ADDRESS`: `Ok(None)` when it is unset, empty or
    /// only whitespace (use [`DaemonAddress::default`] then), an error when it is
    /// set but unusable.
    ///
    /// ```
    /// use tracing_xray::DaemonAddress;
    ///
    /// let addr = match DaemonAddress::from_env() {
    ///     Ok(addr) => addr.unwrap_or_default(),
    ///     Err(err) => {
    ///         eprintln!("{err}; using the default");
    ///         DaemonAddress::default()
    ///     }
    /// };
    /// println!("sending segments to udp://{}", addr.udp());
    /// ```
    ///
    /// # Errors
    ///
    /// The variable is set but is not a valid address (or a host name in it
    /// does not resolve): the error names the value and what is wrong.
    pub fn from_env() -> Result<Option<Self>, DaemonAddressError> {
        from_env_value(std::env::var_os(Self::ENV_VAR))
    }

    /// Parses like [`FromStr`] but resolves host names with `resolve` instead
    /// of the system resolver, for example to avoid blocking or to use a custom
    /// DNS client. `resolve` receives the host name (never an IP literal) and the
    /// port, and is only called once the whole value is syntactically valid. An
    /// IPv4 result is preferred over IPv6.
    ///
    /// ```
    /// use std::io;
    /// use std::net::SocketAddr;
    /// use tracing_xray::DaemonAddress;
    ///
    /// let resolve = |host: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
    ///     match host {
    ///         "xray-daemon" => Ok(vec![SocketAddr::from(([10, 0, 0, 7], port))]),
    ///         _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
    ///     }
    /// };
    /// let addr = DaemonAddress::parse_with_resolver("xray-daemon:2000", resolve).unwrap();
    /// assert_eq!(addr.udp(), "10.0.0.7:2000".parse().unwrap());
    /// assert!(DaemonAddress::parse_with_resolver("other:2000", resolve).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// `value` is not an address of either form, or `resolve` fails or finds
    /// no address for a host name in it.
    pub fn parse_with_resolver<R>(value: &str, mut resolve: R) -> Result<Self, DaemonAddressError>
    where
        R: FnMut(&str, u16) -> io::Result<Vec<SocketAddr>>,
    {
        let parts: Vec<&str> = value.split_whitespace().take(3).collect();
        match parts[..] {
            [] => Err(DaemonAddressError::Empty),
            [single] => {
                if let Some(protocol) = protocol_of(single) {
                    return Err(DaemonAddressError::MissingProtocol {
                        protocol: other(protocol),
                        value: value.to_owned(),
                    });
                }
                let addr = Endpoint::parse(single)?.resolve(&mut resolve)?;
                Ok(DaemonAddress {
                    udp: addr,
                    tcp: addr,
                })
            }
            [a, b] => {
                let malformed = || DaemonAddressError::Malformed {
                    value: value.to_owned(),
                };
                let pa = protocol_of(a).ok_or_else(malformed)?;
                let pb = protocol_of(b).ok_or_else(malformed)?;
                if pa == pb {
                    return Err(DaemonAddressError::DuplicateProtocol {
                        protocol: pa,
                        value: value.to_owned(),
                    });
                }
                // Both prefixes are 4 ASCII bytes (`tcp:` / `udp:`).
                let (ea, eb) = (Endpoint::parse(&a[4..])?, Endpoint::parse(&b[4..])?);
                let (udp, tcp) = if pa == "udp" { (ea, eb) } else { (eb, ea) };
                Ok(DaemonAddress {
                    udp: udp.resolve(&mut resolve)?,
                    tcp: tcp.resolve(&mut resolve)?,
                })
            }
            _ => Err(DaemonAddressError::Malformed {
                value: value.to_owned(),
            }),
        }
    }
}

impl Default for DaemonAddress {
    /// `127.0.0.1:2000` for both UDP and TCP, as the daemon's default bind
    /// address.
    fn default() -> Self {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 2000));
        DaemonAddress {
            udp: addr,
            tcp: addr,
        }
    }
}

impl FromStr for DaemonAddress {
    type Err = DaemonAddressError;

    /// Parses `host:port` or `tcp:host:port udp:host:port`, resolving host
    /// names with the system resolver (which may block).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_with_resolver(s, system_resolve)
    }
}

impl fmt::Display for DaemonAddress {
    /// `host:port` when both endpoints are equal, else `tcp:… udp:…`; the
    /// output parses back to the same address (an IPv6 zone included, as
    /// `[fe80::1%2]:2000`; an IPv6 flow label, which has no text form and
    /// which no daemon address carries, aside).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp == self.tcp {
            write!(f, "{}", self.udp)
        } else {
            write!(f, "tcp:{} udp:{}", self.tcp, self.udp)
        }
    }
}

fn from_env_value(
    value: Option<std::ffi::OsString>,
) -> Result<Option<DaemonAddress>, DaemonAddressError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.to_str().ok_or(DaemonAddressError::NotUnicode)?;
    if value.trim().is_empty() {
        return Ok(None);
    }
    value.parse().map(Some)
}

fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

fn protocol_of(part: &str) -> Option<&'static str> {
    if part.starts_with("tcp:") {
        Some("tcp")
    } else if part.starts_with("udp:") {
        Some("udp")
    } else {
        None
    }
}

fn other(protocol: &'static str) -> &'static str {
    if protocol == "tcp" { "udp" } else { "tcp" }
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    /// An IPv6 address with a zone (`[fe80::1%2]`): a link-local address
    /// is reached through that interface only.
    ScopedV6(Ipv6Addr, u32),
    Name(String),
}

/// One syntactically valid `host:port`, not resolved yet.
#[derive(Debug)]
struct Endpoint {
    host: Host,
    port: u16,
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Self, DaemonAddressError> {
        let missing_port = || DaemonAddressError::MissingPort {
            endpoint: endpoint.to_owned(),
        };
        // `[v6]:port`: the address's own colons are inside the brackets.
        let split = match endpoint.strip_prefix('[') {
            Some(rest) => match rest.find(']') {
                Some(end) => {
                    let (host, after) = endpoint.split_at(end + 2);
                    match after.strip_prefix(':') {
                        Some(port) => Some((host, port)),
                        None if after.is_empty() => return Err(missing_port()),
                        None => {
                            return Err(DaemonAddressError::InvalidHost {
                                host: endpoint.to_owned(),
                                endpoint: endpoint.to_owned(),
                            });
                        }
                    }
                }
                None => endpoint.rsplit_once(':'),
            },
            None => endpoint.rsplit_once(':'),
        };
        let Some((host, port)) = split else {
            return Err(missing_port());
        };
        let invalid_host = || DaemonAddressError::InvalidHost {
            host: host.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        if host.is_empty() {
            return Err(invalid_host());
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                return Err(DaemonAddressError::InvalidPort {
                    port: port.to_owned(),
                    endpoint: endpoint.to_owned(),
                });
            }
        };
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // A zone is a number, as the standard library writes and reads
            // it (`[fe80::1%2]:2000`); an interface's name has no such form.
            let (ip, zone) = match v6.split_once('%') {
                Some((ip, zone))
                    if !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    (ip, Some(zone.parse::<u32>().map_err(|_| invalid_host())?))
                }
                Some(_) => return Err(invalid_host()),
                None => (v6, None),
            };
            let ip = ip.parse::<Ipv6Addr>().map_err(|_| invalid_host())?;
            match zone {
                Some(zone) => Host::ScopedV6(ip, zone),
                None => Host::Ip(IpAddr::V6(ip)),
            }
        } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(v4))
        } else if is_host_name(host) {
            Host::Name(host.to_owned())
        } else {
            return Err(invalid_host());
        };
        Ok(Endpoint { host, port })
    }

    fn resolve<R>(&self, resolve: &mut R) -> Result<SocketAddr, DaemonAddressError>
    where
        R: FnMut(&str, u16) -> io::Result<Vec<SocketAddr>>,
    {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(SocketAddr::new(*ip, self.port)),
            Host::ScopedV6(ip, zone) => {
                return Ok(SocketAddr::V6(SocketAddrV6::new(*ip, self.port, 0, *zone)));
            }
            Host::Name(name) => name,
        };
        let failed = |reason: String| DaemonAddressError::Resolve {
            host: name.clone(),
            reason,
        };
        let addrs = resolve(name, self.port).map_err(|e| failed(e.to_string()))?;
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .map(|a| {
                // The resolver's address as it gave it (a link-local one
                // keeps its zone), on the port asked for.
                let mut a = *a;
                a.set_port(self.port);
                a
            })
            .ok_or_else(|| failed("no addresses found".to_owned()))
    }
}

/// A DNS host name: dot-separated labels of ASCII letters, digits, `-` and `_`
/// (1 to 63 bytes each, 253 in total), whose last label is not all digits (so a
/// mistyped IPv4 address such as `127.0.a.1` or `1.2.1` is rejected without a
/// DNS query: no top-level domain is numeric). One trailing dot (an absolute
/// name, as Kubernetes users write to skip the search domains) is allowed.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dns(host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        panic!("unexpected DNS lookup of {host:?}")
    }

    fn parse(s: &str) -> Result<DaemonAddress, DaemonAddressError> {
        DaemonAddress::parse_with_resolver(s, no_dns)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn single_and_double_forms() {
        let a = parse("  10.1.2.3:2000\t").unwrap();
        assert_eq!(
            (a.udp(), a.tcp()),
            (sa("10.1.2.3:2000"), sa("10.1.2.3:2000"))
        );
        let a = parse("tcp:10.0.0.1:5000\n\tudp:[::1]:4000").unwrap();
        assert_eq!((a.udp(), a.tcp()), (sa("[::1]:4000"), sa("10.0.0.1:5000")));
        let a = parse("[fe80::1]:65535").unwrap();
        assert_eq!(a.udp(), sa("[fe80::1]:65535"));
    }

    #[test]
    fn errors_name_the_problem() {
        use DaemonAddressError::*;
        let cases: &[(&str, DaemonAddressError)] = &[
            ("", Empty),
            (" \t", Empty),
            (
                "a:1 b:2 c:3",
                Malformed {
                    value: "a:1 b:2 c:3".into(),
                },
            ),
            (
                "127.0.0.1:1 tcp:127.0.0.1:2",
                Malformed {
                    value: "127.0.0.1:1 tcp:127.0.0.1:2".into(),
                },
            ),
            (
                "udp:127.0.0.1:2000",
                MissingProtocol {
                    protocol: "tcp",
                    value: "udp:127.0.0.1:2000".into(),
                },
            ),
            (
                "tcp:1.1.1.1:1",
                MissingProtocol {
                    protocol: "udp",
                    value: "tcp:1.1.1.1:1".into(),
                },
            ),
            (
                "tcp:1.1.1.1:1 tcp:1.1.1.1:2",
                DuplicateProtocol {
                    protocol: "tcp",
                    value: "tcp:1.1.1.1:1 tcp:1.1.1.1:2".into(),
                },
            ),
            (
                "8000",
                MissingPort {
                    endpoint: "8000".into(),
                },
            ),
            (
                "localhost:",
                InvalidPort {
                    port: "".into(),
                    endpoint: "localhost:".into(),
                },
            ),
            (
                "h:+80",
                InvalidPort {
                    port: "+80".into(),
                    endpoint: "h:+80".into(),
                },
            ),
            (
                "h:0",
                InvalidPort {
                    port: "0".into(),
                    endpoint: "h:0".into(),
                },
            ),
            (
                "h:65536",
                InvalidPort {
                    port: "65536".into(),
                    endpoint: "h:65536".into(),
                },
            ),
            (
                ":8000",
                InvalidHost {
                    host: "".into(),
                    endpoint: ":8000".into(),
                },
            ),
            (
                "::1:2000",
                InvalidHost {
                    host: "::1".into(),
                    endpoint: "::1:2000".into(),
                },
            ),
            (
                "[1.2.3.4]:2000",
                InvalidHost {
                    host: "[1.2.3.4]".into(),
                    endpoint: "[1.2.3.4]:2000".into(),
                },
            ),
            (
                "127.0.a.1:2000",
                InvalidHost {
                    host: "127.0.a.1".into(),
                    endpoint: "127.0.a.1:2000".into(),
                },
            ),
            (
                "1.2.1:2000",
                InvalidHost {
                    host: "1.2.1".into(),
                    endpoint: "1.2.1:2000".into(),
                },
            ),
            (
                "a..b:2000",
                InvalidHost {
                    host: "a..b".into(),
                    endpoint: "a..b:2000".into(),
                },
            ),
            (
                "a/b:2000",
                InvalidHost {
                    host: "a/b".into(),
                    endpoint: "a/b:2000".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(&err, expected, "{input:?}");
            let msg = err.to_string();
            assert!(msg.starts_with("invalid X-Ray daemon address: "), "{msg}");
        }
        let msg = parse("h:2a").unwrap_err().to_string();
        assert!(msg.contains("`2a`") && msg.contains("`h:2a`"), "{msg}");
    }

    #[test]
    fn resolver_is_used_for_names_only_and_prefers_ipv4() {
        let mut calls = Vec::new();
        let a =
            DaemonAddress::parse_with_resolver("tcp:daemon:2001 udp:daemon:2000", |h: &str, p| {
                calls.push((h.to_owned(), p));
                Ok(vec![sa("[::1]:9"), sa("10.0.0.9:9")])
            })
            .unwrap();
        assert_eq!(a.udp(), sa("10.0.0.9:2000"));
        assert_eq!(a.tcp(), sa("10.0.0.9:2001"));
        assert_eq!(
            calls,
            [("daemon".to_owned(), 2000), ("daemon".to_owned(), 2001)]
        );

        // Same name and port in the single form: one lookup.
        let mut n = 0;
        DaemonAddress::parse_with_resolver("daemon:2000", |_: &str, p| {
            n += 1;
            Ok(vec![SocketAddr::from(([10, 0, 0, 1], p))])
        })
        .unwrap();
        assert_eq!(n, 1);

        let v6 = DaemonAddress::parse_with_resolver("d6:7", |_: &str, _| Ok(vec![sa("[::2]:1")]))
            .unwrap();
        assert_eq!(v6.udp(), sa("[::2]:7"));

        let err =
            DaemonAddress::parse_with_resolver("nowhere:1", |_: &str, _| Ok(vec![])).unwrap_err();
        assert_eq!(
            err,
            DaemonAddressError::Resolve {
                host: "nowhere".into(),
                reason: "no addresses found".into()
            }
        );
        // Syntax errors win over resolution: no lookup for a broken value.
        assert!(parse("tcp:a:1 tcp:b:2").is_err());
        assert!(parse("tcp:a:1 udp:b:x").is_err());
    }

    #[test]
    fn an_absolute_host_name_is_a_host_name() {
        // Kubernetes users end names with a dot to skip the search domains
        // (`ndots`); the system resolver takes them as they are.
        let mut asked = Vec::new();
        let a = DaemonAddress::parse_with_resolver(
            "xray-daemon.observability.svc.cluster.local.:2000",
            |h: &str, p| {
                asked.push(h.to_owned());
                Ok(vec![SocketAddr::from(([10, 0, 0, 7], p))])
            },
        )
        .unwrap();
        assert_eq!(a.udp(), sa("10.0.0.7:2000"));
        assert_eq!(asked, ["xray-daemon.observability.svc.cluster.local."]);
        for bad in [".:2000", "a..:2000", "1.2.3.:2000", "a.b..:2000"] {
            assert!(
                matches!(parse(bad), Err(DaemonAddressError::InvalidHost { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_round_trips_and_default() {
        for s in ["127.0.0.1:2000", "tcp:10.0.0.1:1 udp:[::1]:2", "[::1]:2000"] {
            let a = parse(s).unwrap();
            assert_eq!(parse(&a.to_string()).unwrap(), a, "{s}");
        }
        assert_eq!(parse("127.0.0.1:2000").unwrap(), DaemonAddress::default());
    }

    #[test]
    fn env_value() {
        assert_eq!(from_env_value(None), Ok(None));
        assert_eq!(from_env_value(Some("".into())), Ok(None));
        assert_eq!(from_env_value(Some("  ".into())), Ok(None));
        assert_eq!(
            from_env_value(Some("169.254.79.2:2000".into())),
            Ok(Some(DaemonAddress::new(
                sa("169.254.79.2:2000"),
                sa("169.254.79.2:2000")
            )))
        );
        assert!(matches!(
            from_env_value(Some("127.0.0.1".into())),
            Err(DaemonAddressError::MissingPort { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            assert_eq!(
                from_env_value(Some(std::ffi::OsString::from_vec(vec![0xff]))),
                Err(DaemonAddressError::NotUnicode)
            );
        }
    }

    #[test]
    fn localhost_resolves_to_ipv4_loopback() {
        // Local lookup only (hosts file); no network.
        let a: DaemonAddress = "localhost:2000".parse().unwrap();
        assert_eq!(a, DaemonAddress::default());
    }
}
