#!/usr/bin/env bash
# Runs the demo for 10 seconds on spare loopback ports and checks that it exits 0 after a
# graceful shutdown, and that its /metrics (scraped near the end) is valid Prometheus text with
# non-zero ends for every cause and every outcome the fleet produces.
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

cargo build --quiet --example demo
bin="${CARGO_TARGET_DIR:-target}/debug/examples/demo"

"$bin" --duration 10 --listen "$listen" --metrics "$metrics" >"$work/out" 2>"$work/err" &
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
check "demo prints the shutdown report" grep -q '^shutdown report: .* connections' "$work/out"
check "demo prints the summary table" grep -q 'close latency p50' "$work/out"
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
check "sends after close are counted" \
  grep -Eq '^websocket_send_after_close_total\{role="server"\} [1-9]' "$work/metrics"
check "redundant closes are counted" \
  grep -Eq '^websocket_close_redundant_total\{role="server"\} [1-9]' "$work/metrics"
check "the shutdown closed connections with cause=shutdown" \
  grep -Eq '^ +shutdown +clean +[1-9]' "$work/out"

if [ "$fail" -ne 0 ]; then
  echo "--- demo stdout"; cat "$work/out"
  echo "--- demo stderr (tail)"; tail -20 "$work/err"
  echo "--- metrics"; grep '^websocket_closes_total' "$work/metrics" || true
  exit 1
fi
echo "demo: all checks passed"
