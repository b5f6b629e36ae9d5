#!/usr/bin/env bash
# Autobahn|Testsuite conformance, both roles, wsclose side by side with each library used raw.
#
#   scripts/autobahn.sh
#
# - server role: `wstest -m fuzzingclient` against the wsclose echo server
#   (examples/echo_server.rs) and against a plain tokio-tungstenite echo server
#   (tests/autobahn/raw.rs); and, for the libraries behind features, against an echo server of
#   each wrapped by wsclose and used raw (tests/autobahn/{tokio_websockets,fastwebsockets}.rs,
#   `--raw`), in a wstest process per library next to the first;
# - client role: `wstest -m fuzzingserver` against tests/autobahn/client.rs, once wrapped by
#   wsclose and once with `--raw`.
# All cases except compression (12.*, 13.*). wstest exits 0 even when cases fail, so this script
# reads every index.json itself and fails when a case behaves worse than
# autobahn/expected-results.json allows, or is worse than the same library used raw, or when
# fewer cases ran than expected. While wstest runs, a line of progress every 20 s.
#
# Needs pyenv's Python 2.7.18 (or PYTHON2=/path/to/python2.7). The virtualenv with upstream's pins
# (autobahn/requirements.txt) lives in $CARGO_TARGET_DIR/autobahn-venv and is reused.
# Reports: $CARGO_TARGET_DIR/autobahn/{server,client}/index.html.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$CARGO_TARGET_DIR/autobahn"
VENV="$CARGO_TARGET_DIR/autobahn-venv"
TOOLS="$CARGO_TARGET_DIR/autobahn-tools"
PY3="${PYTHON3:-python3}"
started=$SECONDS
# Python 2.7's end-of-life banners (pip's, cryptography's) say nothing about the run.
export PYTHONWARNINGS=ignore PIP_NO_PYTHON_VERSION_WARNING=1 VIRTUALENV_NO_PERIODIC_UPDATE=1

# ---------------------------------------------------------------- Python 2.7 + autobahntestsuite
PY2="${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}"
if ! [ -x "$PY2" ] || ! "$PY2" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
  PY2=$(command -v python2.7 || true)
fi
if [ -z "$PY2" ] || ! "$PY2" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
  echo "autobahn.sh: Autobahn|Testsuite needs Python 2.7 and none was found." >&2
  echo "  install it with: pyenv install 2.7.18   (or set PYTHON2=/path/to/python2.7)" >&2
  exit 2
fi
stamp="$VENV/.requirements.sha"
want=$(sha256sum autobahn/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! [ -x "$VENV/bin/wstest" ]; then
  echo "autobahn.sh: creating $VENV with $PY2"
  rm -rf "$VENV"
  if ! "$PY2" -m virtualenv --version >/dev/null 2>&1; then
    # virtualenv 20.21 is the last release that runs on and creates Python 2.7 environments;
    # kept out of the interpreter's own site-packages.
    PYTHONPATH="$TOOLS" "$PY2" -m virtualenv --version >/dev/null 2>&1 ||
      "$PY2" -m pip install --disable-pip-version-check -q --target "$TOOLS" 'virtualenv<20.22'
  fi
  PYTHONPATH="$TOOLS" "$PY2" -m virtualenv -q "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r autobahn/requirements.txt
  echo "$want" >"$stamp"
fi

# ---------------------------------------------------------------- build the testees once
cargo build --release --quiet --features tokio-websockets,fastwebsockets \
  --example autobahn_client --example autobahn_raw \
  --example autobahn_tokio_websockets --example autobahn_fastwebsockets
cargo build --release --quiet -p wsclose-examples --bin echo_server
BIN="$CARGO_TARGET_DIR/release/examples"

# ---------------------------------------------------------------- ports and processes
free_port() {
  "$PY3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_port() { # bounded: 60 s (wstest imports slowly on a busy machine)
  for _ in $(seq 600); do
    [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null && return 1
    "$PY3" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0
    sleep 0.1
  done
  echo "autobahn.sh: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

rm -rf "$WORK"
mkdir -p "$WORK/server" "$WORK/client" "$WORK/tokio-websockets" "$WORK/fastwebsockets"
# A port picked by free_port can be taken by someone else before we bind it: retry (bounded).
start_testee() { # NAME PORT_VAR CMD...: starts CMD in the background, sets PORT_VAR, waits for it
  local name=$1 var=$2
  shift 2
  for _ in 1 2 3 4 5; do
    local port
    port=$(free_port)
    local extra=()
    [ "$name" = echo_server ] && extra=(--metrics "127.0.0.1:$METRICS_PORT")
    "$@" --listen "127.0.0.1:$port" "${extra[@]}" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    pids+=($pid)
    if wait_port "$port" && kill -0 "$pid" 2>/dev/null; then
      printf -v "$var" '%s' "$port"
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    METRICS_PORT=$(free_port)
  done
  echo "autobahn.sh: could not start $name; see $WORK/$name.log" >&2
  return 1
}
METRICS_PORT=$(free_port)
RUST_LOG=warn start_testee echo_server WS_PORT "$CARGO_TARGET_DIR/release/echo_server"
start_testee autobahn_raw RAW_PORT "$BIN/autobahn_raw"
start_testee tws TWS_PORT "$BIN/autobahn_tokio_websockets"
start_testee tws_raw TWS_RAW_PORT "$BIN/autobahn_tokio_websockets" --raw
start_testee fws FWS_PORT "$BIN/autobahn_fastwebsockets"
start_testee fws_raw FWS_RAW_PORT "$BIN/autobahn_fastwebsockets" --raw
FUZZ_PORT=$(free_port)

cat >"$WORK/fuzzingclient.json" <<JSON
{
  "outdir": "$WORK/server",
  "servers": [
    {"agent": "wsclose", "url": "ws://127.0.0.1:$WS_PORT"},
    {"agent": "tokio-tungstenite", "url": "ws://127.0.0.1:$RAW_PORT"}
  ],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
# The libraries behind features: one wstest each, so that the four wstest processes keep both
# cores busy to the end (the 9.* cases, large messages, take most of the time).
library_config() { # LIBRARY PORT RAW_PORT
  cat >"$WORK/fuzzing-$1.json" <<JSON
{
  "outdir": "$WORK/$1",
  "servers": [
    {"agent": "wsclose-$1", "url": "ws://127.0.0.1:$2"},
    {"agent": "$1", "url": "ws://127.0.0.1:$3"}
  ],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
}
library_config tokio-websockets "$TWS_PORT" "$TWS_RAW_PORT"
library_config fastwebsockets "$FWS_PORT" "$FWS_RAW_PORT"
cat >"$WORK/fuzzingserver.json" <<JSON
{
  "url": "ws://127.0.0.1:$FUZZ_PORT",
  "outdir": "$WORK/client",
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON

# Both roles at once: each wstest is one single-threaded Python process, so on two cores the
# two roles together take about as long as one.
(cd "$WORK" && exec "$VENV/bin/wstest" -m fuzzingserver -u 0 -s "$WORK/fuzzingserver.json" \
  >"$WORK/fuzzingserver.log" 2>&1) &
fuzz_server=$!
pids+=($fuzz_server)
wait_port "$FUZZ_PORT"

wstest_started=$SECONDS
echo "autobahn.sh: server role (wstest fuzzingclient: wsclose on tokio-tungstenite, on" \
  "tokio-websockets and on fastwebsockets, each next to the library used raw) and client role" \
  "(wstest fuzzingserver)"
(cd "$WORK" && exec "$VENV/bin/wstest" -m fuzzingclient -s "$WORK/fuzzingclient.json" \
  >"$WORK/fuzzingclient.log" 2>&1) &
fuzz_client=$!
pids+=($fuzz_client)
fuzz_libraries=()
for library in tokio-websockets fastwebsockets; do
  (cd "$WORK" && exec "$VENV/bin/wstest" -m fuzzingclient -s "$WORK/fuzzing-$library.json" \
    >"$WORK/fuzzing-$library.log" 2>&1) &
  fuzz_libraries+=($!)
  pids+=($!)
done

# Progress: the cases each wstest has begun (it logs one line per case and agent).
progress() {
  local total=$1
  while sleep 20; do
    local line="autobahn.sh: $((SECONDS - started)) s:" name log
    for name in server:fuzzingclient client:fuzzingserver tokio-websockets:fuzzing-tokio-websockets \
      fastwebsockets:fuzzing-fastwebsockets; do
      log="$WORK/${name#*:}.log"
      line+=" ${name%%:*} $(grep -c 'Running test case' "$log" 2>/dev/null || true)/$((2 * total))"
    done
    echo "$line cases"
  done
}
progress 301 &
progress_pid=$!
pids+=($progress_pid)

client_rc=0
"$BIN/autobahn_client" --server "ws://127.0.0.1:$FUZZ_PORT" 2>"$WORK/client-wsclose.log" || client_rc=$?
"$BIN/autobahn_client" --server "ws://127.0.0.1:$FUZZ_PORT" --raw 2>"$WORK/client-raw.log" || client_rc=$?
kill "$fuzz_server" 2>/dev/null || true
server_rc=0
wait "$fuzz_client" || server_rc=$?
for pid in "${fuzz_libraries[@]}"; do wait "$pid" || server_rc=$?; done
kill "$progress_pid" 2>/dev/null || true
echo "autobahn.sh: wstest ran for $((SECONDS - wstest_started)) s"
if [ "$client_rc" != 0 ] || [ "$server_rc" != 0 ]; then
  echo "autobahn.sh: a testee or wstest failed (client $client_rc, wstest $server_rc); see $WORK/*.log" >&2
fi

# What the wsclose echo server recorded, for the log.
"$PY3" - "$METRICS_PORT" <<'PYEOF' || true
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith("websocket_closes_total"):
        print("  echo_server " + line)
PYEOF

rc=0
"$PY3" scripts/autobahn_check.py autobahn/expected-results.json \
  "server=$WORK/server/index.json" "client=$WORK/client/index.json" \
  "server-tokio-websockets=$WORK/tokio-websockets/index.json" \
  "server-fastwebsockets=$WORK/fastwebsockets/index.json" || rc=$?
echo "autobahn.sh: done in $((SECONDS - started)) s; reports in" \
  "$WORK/{server,client,tokio-websockets,fastwebsockets}/index.html"
[ "$client_rc" = 0 ] && [ "$server_rc" = 0 ] && exit $rc
exit 1
