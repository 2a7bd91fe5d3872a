#!/usr/bin/env bash
# Browser test of xray-console in headless Chromium (Debian's chromium, never a
# downloaded browser). Installs what it needs, builds the console, runs test.js and
# writes screenshots to xray-console/docs/.
#
# Usage (from anywhere): bash xray-console/browser-test/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian chromium" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
if ! command -v node >/dev/null 2>&1; then
  echo "node (>= 18) and npm are required" >&2
  exit 1
fi

cd "$here"
# playwright-core ships no browser and downloads none.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

(cd "$root" && cargo build -p xray-console --bin xray-console)
export XRAY_CONSOLE_BIN="${XRAY_CONSOLE_BIN:-$root/target/debug/xray-console}"
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
node test.js
