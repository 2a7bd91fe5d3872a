#!/usr/bin/env bash
# Browser test of xray-console in headless Chromium (Debian's chromium, never a
# downloaded browser). Installs what it needs (Debian's chromium, nodejs and npm,
# then playwright-core from npm), builds the console, runs test.js and writes its
# screenshots under the cargo target directory (xray-console-screenshots/), never
# over the tracked images in xray-console/docs/.
#
# Usage (from anywhere): bash xray-console/browser-test/run.sh
# To refresh the README's images: XRAY_CONSOLE_SHOTS=xray-console/docs bash xray-console/browser-test/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian chromium" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing Debian nodejs and npm" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y nodejs npm
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "node >= 18 is required (found $(node --version))" >&2
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
# Where that build went: CARGO_TARGET_DIR, a config file's, or target/.
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
export XRAY_CONSOLE_BIN="${XRAY_CONSOLE_BIN:-$target_dir/debug/xray-console}"
shots="${XRAY_CONSOLE_SHOTS:-$target_dir/xray-console-screenshots}"
mkdir -p "$shots"
XRAY_CONSOLE_SHOTS="$(cd "$shots" && pwd)"
export XRAY_CONSOLE_SHOTS
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
node test.js
