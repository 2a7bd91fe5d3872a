//! `xray-console`: a local X-Ray daemon stand-in with a service map and trace timelines.

use xray_console::{Config, Console};

const USAGE: &str = "\
xray-console: a local AWS X-Ray console

USAGE: xray-console [OPTIONS]

  -a, --address ADDR   UDP and TCP address (default 127.0.0.1:2000, where the daemon listens)
      --udp ADDR       UDP address for segment datagrams (overrides --address)
      --http ADDR      TCP address for the pages and sampling calls (overrides --address)
      --max-traces N   traces kept before the oldest is evicted (default 1000)
      --max-mib N      MiB kept before the oldest trace is evicted (default 64)
      --max-connections N
                       HTTP connections served at once, each on a thread of its own;
                       past it a connection is answered 503 (default 64)
  -h, --help           this text

The address may also come from AWS_XRAY_DAEMON_ADDRESS (host:port, or
\"tcp:host:port udp:host:port\"), the variable the SDKs read.
";

fn parse_daemon_address(v: &str, cfg: &mut Config) -> Result<(), String> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    match parts.as_slice() {
        [one] => {
            cfg.udp_addr = (*one).to_owned();
            cfg.http_addr = (*one).to_owned();
        }
        [_, _] => {
            for p in parts {
                if let Some(a) = p.strip_prefix("tcp:") {
                    cfg.http_addr = a.to_owned();
                } else if let Some(a) = p.strip_prefix("udp:") {
                    cfg.udp_addr = a.to_owned();
                } else {
                    return Err(format!("bad address part `{p}`"));
                }
            }
        }
        _ => return Err(format!("bad address `{v}`")),
    }
    Ok(())
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config::default();
    if let Ok(v) = std::env::var("AWS_XRAY_DAEMON_ADDRESS") {
        parse_daemon_address(&v, &mut cfg).map_err(|e| format!("AWS_XRAY_DAEMON_ADDRESS: {e}"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-a" | "--address" => parse_daemon_address(&value()?, &mut cfg)?,
            "--udp" => cfg.udp_addr = value()?,
            "--http" => cfg.http_addr = value()?,
            "--max-traces" => {
                cfg.limits.max_traces = value()?.parse().map_err(|e| format!("{a}: {e}"))?
            }
            "--max-mib" => {
                let mib: usize = value()?.parse().map_err(|e| format!("{a}: {e}"))?;
                cfg.limits.max_bytes = mib.checked_mul(1024 * 1024).ok_or_else(|| {
                    format!("{a}: {mib} MiB is more than this machine can address")
                })?;
            }
            "--max-connections" => {
                cfg.max_http_connections = value()?.parse().map_err(|e| format!("{a}: {e}"))?
            }
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(cfg)
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xray-console: {e}");
            std::process::exit(2);
        }
    };
    match Console::start(cfg.clone()) {
        Ok(c) => {
            eprintln!(
                "xray-console: receiving segments on udp://{} · open http://{}/",
                c.udp_addr(),
                c.http_addr()
            );
            c.wait();
        }
        Err(e) => {
            eprintln!(
                "xray-console: cannot listen on udp {} / tcp {}: {e}\n(is an X-Ray daemon already running? try --address 127.0.0.1:2001)",
                cfg.udp_addr, cfg.http_addr
            );
            std::process::exit(1);
        }
    }
}
