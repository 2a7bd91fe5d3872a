#!/usr/bin/env bash
# The project's local X-Ray API server for the `http` feature's tests: moto
# (a fake of the AWS APIs) in a virtualenv of its own under target/.
#
# Usage:
#   scripts/moto-server.sh setup           create/update the venv; print its python
#   scripts/moto-server.sh start [PORT]    setup, then start moto_server on 127.0.0.1
#                                          (default port 5055) with SigV4 checking
#                                          on; print its pid
#   scripts/moto-server.sh stop PID        stop a server started by `start`
#
# The tests (tests/http_moto.rs) start and stop their own moto processes; all
# they need is the venv's python:
#
#   export TRACING_XRAY_MOTO_PYTHON="$(scripts/moto-server.sh setup)"
#   cargo test --features http
#
# Environment:
#   MOTO_VENV   the virtualenv    (default: target/moto-venv in the repository)
#   PYTHON      the python used to create it (default: python3)
#
# Signature checking: moto authenticates requests against its own IAM users
# once INITIAL_NO_AUTH_ACTION_COUNT is set; the first N calls go
# unauthenticated, so that a client can create the user and its access key.
# `start` leaves those N=3 calls to its caller (the tests make them: CreateUser,
# CreateAccessKey, PutUserPolicy).
set -euo pipefail

MOTO_VERSION=5.2.5
# moto[server] with the versions this project tested.
PINS=(
  "moto[server]==$MOTO_VERSION"
  "boto3==1.44.8"
  "botocore==1.44.8"
  "flask==3.1.3"
  "werkzeug==3.1.9"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MOTO_VENV:-$ROOT/target/moto-venv}"
PY="${PYTHON:-python3}"

log() { echo "moto-server: $*" >&2; }

setup() {
  if ! command -v "$PY" >/dev/null 2>&1; then
    log "error: '$PY' not found. The http feature's tests need Python 3 (with the venv module)"
    log "to run moto, a local fake of the X-Ray API. Install it (Debian/Ubuntu:"
    log "'apt-get install python3 python3-venv') or point PYTHON at one."
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PY" -m venv "$VENV" >&2
  fi
  if ! "$VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('moto')!='$MOTO_VERSION')" 2>/dev/null; then
    log "installing ${PINS[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2
  fi
  echo "$VENV/bin/python"
}

case "${1:-}" in
  setup)
    setup
    ;;
  start)
    PORT="${2:-5055}"
    PYBIN="$(setup)"
    mkdir -p "$ROOT/target/moto-logs"
    LOG="${MOTO_LOG:-$ROOT/target/moto-logs/moto-$PORT.log}"
    INITIAL_NO_AUTH_ACTION_COUNT=3 nohup "$PYBIN" -m moto.server -H 127.0.0.1 -p "$PORT" \
      >"$LOG" 2>&1 </dev/null &
    PID=$!
    for _ in $(seq 1 600); do
      if ! kill -0 "$PID" 2>/dev/null; then
        log "moto_server exited; last log lines:"; tail -n 20 "$LOG" >&2; exit 1
      fi
      if "$PYBIN" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/', timeout=1)" 2>/dev/null; then
        log "ready: http://127.0.0.1:$PORT (pid $PID, log $LOG)"
        echo "$PID"
        exit 0
      fi
      sleep 0.1
    done
    log "moto_server not ready after 60 s"; kill "$PID" 2>/dev/null || true; exit 1
    ;;
  stop)
    kill "${2:?usage: moto-server.sh stop PID}"
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
