#!/usr/bin/env bash
# Keeps benches/compare/ from rotting: builds it and runs it in its reduced mode
# (WSCLOSE_BENCH_SMOKE=1: a few hundred connections, tiny iteration counts, no criterion
# section), then checks that every expected `compare` line is printed exactly once and is
# well-formed. It checks the harness, not the speed: smoke numbers are meaningless. It builds
# with the `otel` feature, so the OpenTelemetry rows are checked too, and expects the
# multi-thread (`_mt`) repeats of the echo, send, close-latency and handshake rows.
#
#   ./scripts/bench-smoke.sh
#
# Exits non-zero on a build failure, a bench failure, or a missing/malformed line.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never

# The bench needs `cargo bench`'s release build; build it first so the timing below is the run.
if ! cargo bench --bench compare --features otel --no-run; then
  echo "bench-smoke: build failed"
  exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$SECONDS
if ! WSCLOSE_BENCH_SMOKE=1 timeout 120 cargo bench --bench compare --features otel >"$out" 2>&1; then
  cat "$out"
  echo "bench-smoke: the bench failed"
  exit 1
fi
elapsed=$((SECONDS - started))

num='-?[0-9]+(\.[0-9]+)?'
base="raw=${num}[A-Za-z/]+ wsclose=${num}[A-Za-z/]+ cost_ratio=[0-9]+\.[0-9]{3}"
declare -A extra=(
  [close_storm]=" conns=[0-9]+ left_open=0"
  [memory_idle_conn]=" extra_bytes_per_conn=-?[0-9]+ conns=[0-9]+"
  [instr_prometheus_per_close]=" per_close_ns=-?[0-9]+"
  [instr_prometheus_per_message]=" per_message_ns=-?[0-9]+"
  [instr_otel_per_close]=" per_close_ns=-?[0-9]+"
  [instr_otel_per_message]=" per_message_ns=-?[0-9]+"
)
names=(
  echo_16B_1conn echo_4KiB_1conn echo_16B_64conn echo_4KiB_64conn
  send_16B_server_to_client send_16B_client_to_server
  send_64KiB_server_to_client send_64KiB_client_to_server
  close_latency_server_init_p50 close_latency_server_init_p99
  close_latency_client_init_p50 close_latency_client_init_p99
  echo_16B_1conn_mt echo_4KiB_1conn_mt echo_16B_64conn_mt echo_4KiB_64conn_mt
  send_16B_server_to_client_mt send_16B_client_to_server_mt
  send_64KiB_server_to_client_mt send_64KiB_client_to_server_mt
  close_latency_server_init_p50_mt close_latency_server_init_p99_mt
  close_latency_client_init_p50_mt close_latency_client_init_p99_mt
  handshake_p50 handshake_p99 handshake_p50_mt handshake_p99_mt
  close_storm memory_idle_conn
  instr_prometheus_per_close instr_prometheus_per_message
  instr_otel_per_close instr_otel_per_message
)

bad=0
for name in "${names[@]}"; do
  re="^compare ${name} ${base}${extra[$name]:-}\$"
  n=$(grep -cE "$re" "$out")
  if [ "$n" -ne 1 ]; then
    echo "bench-smoke: expected one well-formed line for ${name}, found ${n}:"
    grep -E "^compare ${name} " "$out" || echo "  (no line)"
    bad=$((bad + 1))
  fi
done
total=$(grep -c '^compare ' "$out")
if [ "$total" -ne "${#names[@]}" ]; then
  echo "bench-smoke: expected ${#names[@]} compare lines, found ${total}"
  bad=$((bad + 1))
fi

grep '^compare ' "$out"
if [ "$bad" -gt 0 ]; then
  echo "bench-smoke: FAILED (${bad} problems)"
  exit 1
fi
echo "bench-smoke: ok, ${#names[@]} compare lines in ${elapsed} s"
