//! Records the rustc version the crate is built with, for the segment's
//! `service.runtime_version`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        // `rustc 1.95.0 (59807616e 2026-04-14)` → `1.95.0`
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TRACING_XRAY_RUSTC_VERSION={version}");
}
