#!/usr/bin/env bash
# End-to-end check of the monitoring artifacts against a real Prometheus and Alertmanager.
#
#   scripts/e2e-alerts.sh
#
# Starts, on 127.0.0.1 only: the demo (examples/demo.rs) in --healthy mode, a Prometheus that
# scrapes it every second and loads a CI copy of dashboards/rules.yaml, an Alertmanager loaded
# with a CI copy of dashboards/alertmanager.yml, and a webhook receiver (scripts/e2e_alerts.py).
# Then:
#   1. healthy phase: no alert fires or is pending, the webhook receives nothing, and the
#      alerts' minimum-traffic guard is passed (so the silence means something);
#   2. every query of every panel of dashboards/wsclose.json, variables substituted, returns
#      data (with job/instance/role selected, and with every variable at All);
#   3. unhealthy phase: the demo is restarted without --healthy (its fleet sends invalid close
#      codes: protocol_error ends, expected="false"; and malformed and stalled upgrades: failed
#      and timeout handshakes); WebSocketUnexpectedCloseErrors and WebSocketHandshakeFailures
#      must each fire in Prometheus and arrive at the webhook through Alertmanager with its
#      labels and annotations.
#
# The CI copy of the rules differs from the shipped file only in durations: range windows and
# offsets 15 times shorter ([5m] -> [20s]) and every `for:` 5s; e2e_alerts.py proves that and
# prints the list. Alertmanager's copy only gets group_wait 1s, group_interval 2s and the
# webhook URL.
#
# Needs: Debian's `prometheus` and `prometheus-alertmanager` (installed with apt-get when
# missing, as root or through sudo), python3, cargo. Ports: E2E_PORT_BASE (default 19090) + 0
# (Prometheus), +3 (Alertmanager), +4 (webhook), +11 / +12 (demo WebSocket / metrics). Packaged
# services on 9090/9093 are neither used nor touched. Every process started here is stopped by
# its PID on exit. Prints one line per check, then `e2e-alerts: N passed, M failed`; exits
# non-zero if any check failed. Takes about 70 s (about 2.5 min when the alert never fires).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

base=${E2E_PORT_BASE:-19090}
host=127.0.0.1
prom_addr=$host:$base
am_addr=$host:$((base + 3))
hook_addr=$host:$((base + 4))
demo_listen=$host:$((base + 11))
demo_metrics=$host:$((base + 12))
prom=http://$prom_addr
job=wsclose-demo
healthy_secs=${E2E_HEALTHY_SECS:-40}
alert_timeout=90
helper=scripts/e2e_alerts.py

started=$SECONDS
work=$(mktemp -d)
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
CHECK_TAIL=30
demo_pid=
prom_pid=
am_pid=
hook_pid=

# stop PID: SIGTERM, up to 5 s, then SIGKILL; always reaps it.
stop() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  stop "$demo_pid"
  stop "$prom_pid"
  stop "$am_pid"
  stop "$hook_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# count OUTPUT_FILE STATUS NAME: counts the `ok`/`FAIL` lines a helper printed; a helper that
# failed without a FAIL line counts as one failure under NAME.
count() {
  local out=$1 status=$2 name=$3 n_ok n_fail
  n_ok=$(grep -c '^ok    ' "$out" || true)
  n_fail=$(grep -c '^FAIL  ' "$out" || true)
  passed=$((passed + n_ok))
  failed=$((failed + n_fail))
  while IFS= read -r line; do failed_names+=("${line#FAIL  }"); done < <(grep '^FAIL  ' "$out" || true)
  if [ "$status" -ne 0 ] && [ "$n_fail" -eq 0 ]; then
    failed=$((failed + 1))
    failed_names+=("$name (exit $status)")
    printf 'FAIL  %s (exit %s)\n' "$name" "$status"
  fi
  return "$status"
}

# helper NAME ARGS...: runs the Python helper, shows its output, counts its checks.
helper() {
  local name=$1 status=0
  shift
  python3 "$helper" "$@" >"$work/helper.out" 2>&1 || status=$?
  cat "$work/helper.out"
  grep '^      summary: ' "$work/helper.out" | sed 's/^      summary: //' >>"$work/summary" || true
  count "$work/helper.out" "$status" "$name"
}

logs() {
  local f
  for f in demo.err demo.out prometheus.log alertmanager.log webhook.log; do
    [ -s "$work/$f" ] || continue
    echo "--- $f (last 30 lines)"
    tail -n 30 "$work/$f"
  done
}

finish() {
  echo
  echo "summary:"
  if [ -s "$work/summary" ]; then sed "s/^/  /" "$work/summary"; fi
  echo "  runtime $((SECONDS - started)) s"
  if [ "$failed" -gt 0 ]; then
    logs
    printf 'failed: %s\n' "${failed_names[@]}"
  fi
  echo "e2e-alerts: $passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; fi
  exit 1
}

# A setup step that failed makes the rest meaningless: report and stop.
need() {
  "$@" || finish
}

# --- tools ---------------------------------------------------------------------------------

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 ||
  missing+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  # Installing may start the packaged services on :9090 / :9093; this test uses other ports.
  need run_check "apt-get install ${missing[*]}" apt_install "${missing[@]}"
fi
alertmanager_bin=$(command -v prometheus-alertmanager || command -v alertmanager)
echo "$(prometheus --version 2>&1 | head -n1)"
echo "$("$alertmanager_bin" --version 2>&1 | head -n1)"

need run_check "ports $base, +3, +4, +11, +12 free on $host" \
  python3 "$helper" ports "$host" "$base" $((base + 3)) $((base + 4)) $((base + 11)) $((base + 12))

need run_check "cargo build -p wsclose-examples --bin demo" \
  cargo build --quiet -p wsclose-examples --bin demo
demo_bin="${CARGO_TARGET_DIR:-target}/debug/demo"

# start_demo [--healthy]: the demo in the background; sets demo_pid.
start_demo() {
  echo "--- demo $* (ws://$demo_listen, metrics http://$demo_metrics/metrics)" >>"$work/demo.err"
  "$demo_bin" "$@" --duration 150 --listen "$demo_listen" --metrics "$demo_metrics" \
    >>"$work/demo.out" 2>>"$work/demo.err" &
  demo_pid=$!
  python3 "$helper" wait-http "http://$demo_metrics/metrics" 15
}

# --- configuration -------------------------------------------------------------------------
mkdir -p "$work/prom-data" "$work/am-data"
need helper "rewrite rules" rewrite-rules dashboards/rules.yaml "$work/rules.yaml"
need run_check "promtool check rules (CI copy)" promtool check rules "$work/rules.yaml"
need helper "rewrite alertmanager.yml" \
  rewrite-alertmanager dashboards/alertmanager.yml "$work/alertmanager.yml" "http://$hook_addr/alerts"
need run_check "amtool check-config (CI copy)" amtool check-config "$work/alertmanager.yml"

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
  external_labels:
    environment: e2e
rule_files:
  - rules.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["$am_addr"]
scrape_configs:
  - job_name: $job
    metrics_path: /metrics
    static_configs:
      - targets: ["$demo_metrics"]
EOF
need run_check "promtool check config (CI prometheus.yml)" promtool check config "$work/prometheus.yml"

# --- processes -----------------------------------------------------------------------------
python3 "$helper" webhook "$host" $((base + 4)) "$work/webhook.jsonl" >"$work/webhook.log" 2>&1 &
hook_pid=$!
need run_check "webhook receiver ready on $hook_addr" \
  python3 "$helper" wait-http "http://$hook_addr/" 10

need run_check "demo (--healthy) serves /metrics" start_demo --healthy

"$alertmanager_bin" --config.file="$work/alertmanager.yml" --storage.path="$work/am-data" \
  --web.listen-address="$am_addr" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
am_pid=$!
need run_check "Alertmanager ready on $am_addr" python3 "$helper" wait-http "http://$am_addr/-/ready" 30

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
  --web.listen-address="$prom_addr" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
need run_check "Prometheus ready on $prom_addr" python3 "$helper" wait-http "$prom/-/ready" 30
need helper "first scrape" wait-up "$prom" "$job" 30
need helper "rules and Alertmanager" check-setup "$prom" "$am_addr"

# --- healthy phase -------------------------------------------------------------------------
echo "--- healthy phase (${healthy_secs} s; CI windows 20 s, every for: 5 s)"
helper "healthy phase" healthy "$prom" "$job" "$healthy_secs" "$work/webhook.jsonl" || true

echo "--- dashboard queries (healthy traffic)"
helper "dashboard" dashboard "$prom" dashboards/wsclose.json "$job" "$demo_metrics" selected || true
helper "dashboard (All)" dashboard "$prom" dashboards/wsclose.json "$job" "$demo_metrics" all || true

# --- unhealthy phase -----------------------------------------------------------------------
echo "--- unhealthy phase: the demo without --healthy (invalid close codes -> protocol_error, malformed and stalled upgrades -> failed and timeout handshakes)"
stop "$demo_pid"
demo_pid=
errors_since=$(date +%s.%N)
need run_check "demo (unhealthy) serves /metrics on the same ports" start_demo
helper "unhealthy phase" unhealthy "$prom" "$job" WebSocketUnexpectedCloseErrors \
  "$alert_timeout" "$work/webhook.jsonl" "$errors_since" || true
# Both alerts become active from the same traffic: by now this one has usually fired too.
helper "unhealthy phase (handshakes)" unhealthy "$prom" "$job" WebSocketHandshakeFailures \
  "$alert_timeout" "$work/webhook.jsonl" "$errors_since" || true
helper "dashboard (after errors)" \
  dashboard "$prom" dashboards/wsclose.json "$job" "$demo_metrics" after-errors || true

finish
