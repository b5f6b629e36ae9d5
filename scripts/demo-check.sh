#!/usr/bin/env bash
# Runs the demo for 10 seconds on spare loopback ports and checks that it exits 0 after a
# graceful shutdown, and that its /metrics (scraped near the end) is valid Prometheus text with
# non-zero ends for every cause and every outcome the fleet produces, and server handshakes with
# every handshake outcome (accepted, rejected, failed, timeout); that its logs carry no
# colour codes when stderr is a file; and that a port already in use (the WebSocket one, then the
# metrics one) is reported in one line naming the address, with a non-zero exit.
#
#   scripts/demo-check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

listen=127.0.0.1:19001
metrics=127.0.0.1:19898
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet -p wsclose-examples --bin demo
bin="${CARGO_TARGET_DIR:-target}/debug/demo"

RUST_LOG=info,wsclose=debug "$bin" --duration 10 --listen "$listen" --metrics "$metrics" \
  >"$work/out" 2>"$work/err" &
pid=$!

scrape() {
  python3 - "$metrics" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=2).read().decode())
EOF
}

# Scrape at about 8.5 s, before the shutdown at 10 s.
sleep 8.5
scrape >"$work/metrics"
status=0
wait "$pid" || status=$?
pid=

fail=0
check() { # NAME CONDITION...
  local name=$1
  shift
  if "$@"; then echo "ok    $name"; else echo "FAIL  $name"; fail=1; fi
}
check "demo exits 0 (status $status)" test "$status" -eq 0
check "demo prints the shutdown report" grep -q '^shutdown report: [0-9]* connections\? in' "$work/out"
check "demo prints the summary table" grep -q 'close latency p50' "$work/out"
# The demo ran with RUST_LOG=info,wsclose=debug: one log line per end, so there are logs.
check "the demo logs to stderr" test -s "$work/err"
no_colour() { ! grep -q "$(printf '\033')\[" "$work/err"; }
check "no colour codes in the logs when stderr is a file" no_colour
if command -v promtool >/dev/null 2>&1; then
  check "promtool check metrics" sh -c "promtool check metrics <'$work/metrics'"
fi
nonzero() { # LABEL=VALUE: a websocket_closes_total series with it and a non-zero value
  grep -E "^websocket_closes_total\{[^}]*$1\"[^}]*\} [1-9]" "$work/metrics" >/dev/null
}
for cause in app peer transport keepalive lifetime; do
  check "server ends with cause=$cause" nonzero "role=\"server\",cause=\"$cause"
done
for outcome in clean peer_gone timeout protocol_error; do
  check "ends with outcome=$outcome" nonzero "outcome=\"$outcome"
done
check "client-role ends are measured too" nonzero 'role="client'
handshakes() { # ROLE OUTCOME: websocket_handshakes_total{role, outcome} is non-zero
  grep -E "^websocket_handshakes_total\{([^}]*,)?role=\"$1\"(,[^}]*)?\} [1-9]" "$work/metrics" |
    grep -q "outcome=\"$2\""
}
for outcome in accepted rejected failed timeout; do
  check "server handshakes with outcome=$outcome" handshakes server "$outcome"
done
for outcome in accepted rejected; do
  check "client handshakes with outcome=$outcome (the fleet's wsclose clients)" handshakes client "$outcome"
done
check "the table shows handshakes by outcome" \
  grep -Eq '^  handshakes \(server\): accepted [1-9][0-9]*, rejected [1-9][0-9]*, failed [1-9][0-9]*, timeout [1-9][0-9]*$' "$work/out"
check "sends after close are counted" \
  grep -Eq '^websocket_send_after_close_total\{role="server"\} [1-9]' "$work/metrics"
check "redundant closes are counted" \
  grep -Eq '^websocket_close_redundant_total\{role="server"\} [1-9]' "$work/metrics"
check "the shutdown closed connections with cause=shutdown" \
  grep -Eq '^ +shutdown +clean +[1-9]' "$work/out"

# A port already in use: one line naming it, exit 1. A Python process holds the port (by PID).
port_in_use() { # FLAG: the demo's listener that is occupied
  local flag=$1 held holder status=0
  python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$work/held" &
  holder=$!
  for _ in $(seq 100); do [ -s "$work/held" ] && break; sleep 0.1; done
  held="127.0.0.1:$(cat "$work/held")"
  if [ "$flag" = --listen ]; then
    "$bin" --duration 5 --listen "$held" --metrics 127.0.0.1:0 >/dev/null 2>"$work/inuse" || status=$?
  else
    "$bin" --duration 5 --listen 127.0.0.1:0 --metrics "$held" >/dev/null 2>"$work/inuse" || status=$?
  fi
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  echo "exit $status: $(cat "$work/inuse")"
  [ "$status" -eq 1 ] && [ "$(wc -l <"$work/inuse")" -eq 1 ] &&
    grep -q "cannot listen on $held .*already in use.* $flag ADDR" "$work/inuse"
}
for flag in --listen --metrics; do
  check "a port in use ($flag) is named in one line, exit 1" port_in_use "$flag"
done

if [ "$fail" -ne 0 ]; then
  echo "--- demo stdout"; cat "$work/out"
  echo "--- demo stderr (tail)"; tail -20 "$work/err"
  echo "--- metrics"; grep -E '^websocket_(closes|handshakes)_total' "$work/metrics" || true
  exit 1
fi
echo "demo: all checks passed"
