#!/usr/bin/env bash
# The project's local X-Ray API server for the `http` feature's tests: moto
# (a fake of the AWS APIs) in a virtualenv of its own under target/.
#
# Usage:
#   scripts/moto-server.sh setup           create/update the venv; print its python
#   scripts/moto-server.sh start [PORT]    setup, then start moto_server on 127.0.0.1
#                                          (default port 5055) with SigV4 checking
#                                          on; print its pid, and write the access
#                                          key it accepts to target/moto-logs/moto-PORT.env
#   scripts/moto-server.sh stop PID        stop a server started by `start`
#
# The tests (tests/http_moto.rs) start and stop their own moto processes; all
# they need is the venv's python:
#
#   export TRACING_XRAY_MOTO_PYTHON="$(scripts/moto-server.sh setup)"
#   cargo test --features http
#
# To try the example against a local server:
#
#   PID=$(scripts/moto-server.sh start 5055)
#   env $(cat target/moto-logs/moto-5055.env) XRAY_ENDPOINT=http://127.0.0.1:5055 \
#       cargo run --example http_exporter --features http
#   scripts/moto-server.sh stop "$PID"
#
# Environment:
#   MOTO_VENV   the virtualenv    (default: target/moto-venv in the repository)
#   PYTHON      the python used to create it (default: python3)
#
# Signature checking: moto checks SigV4 signatures against its own IAM users
# once INITIAL_NO_AUTH_ACTION_COUNT is finite. The server starts with it unset
# (no checks), gets an IAM user with an access key allowed xray:*, then
# POST /moto-api/reset-auth with 0 switches checking on for every later
# request. Seeding moto's random generator first (/moto-api/seed) makes the
# key the same on every start, so a restarted server accepts the same
# credentials. The tests do the same from Rust (tests/support/moto.rs).
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
    if ! "$PY" -m venv "$VENV" >&2; then
      rm -rf "$VENV"
      log "error: '$PY -m venv' failed (on Debian/Ubuntu: 'apt-get install python3-venv')"
      exit 1
    fi
  fi
  if ! "$VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('moto')!='$MOTO_VERSION')" 2>/dev/null; then
    log "installing ${PINS[*]}"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2; then
      log "error: could not install ${PINS[*]} from PyPI into $VENV"
      exit 1
    fi
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
    LOG="$ROOT/target/moto-logs/moto-$PORT.log"
    ENVFILE="$ROOT/target/moto-logs/moto-$PORT.env"
    env -u INITIAL_NO_AUTH_ACTION_COUNT nohup "$PYBIN" -m moto.server -H 127.0.0.1 -p "$PORT" \
      >"$LOG" 2>&1 </dev/null &
    PID=$!
    if ! "$PYBIN" - "$PORT" "$PID" "$ENVFILE" <<'PYEOF'
import json, os, sys, time, urllib.request
port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 60
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto_server exited")
    try:
        urllib.request.urlopen(base + "/moto-api/", timeout=1)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("moto_server not ready after 60 s")
        time.sleep(0.1)
post = lambda path, body=b"": urllib.request.urlopen(urllib.request.Request(
    base + path, data=body, method="POST", headers={"Content-Type": "text/plain"}))
post("/moto-api/seed?a=20250101")
import boto3
iam = boto3.client("iam", endpoint_url=base, region_name="us-east-1",
                   aws_access_key_id="AKIAPROVISIONING000", aws_secret_access_key="unused")
iam.create_user(UserName="xray-tester")
key = iam.create_access_key(UserName="xray-tester")["AccessKey"]
iam.put_user_policy(UserName="xray-tester", PolicyName="xray-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "xray:*", "Resource": "*"}]}))
post("/moto-api/reset-auth", b"0")
with open(out, "w") as f:
    f.write(f"AWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID={key['AccessKeyId']}\n"
            f"AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
PYEOF
    then
      log "moto_server failed to start; last log lines:"; tail -n 20 "$LOG" >&2 || true
      kill "$PID" 2>/dev/null || true
      exit 1
    fi
    log "ready: http://127.0.0.1:$PORT (pid $PID, SigV4 checked, credentials in $ENVFILE, log $LOG)"
    echo "$PID"
    ;;
  stop)
    kill "${2:?usage: moto-server.sh stop PID}"
    ;;
  *)
    sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
