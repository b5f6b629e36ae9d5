#!/usr/bin/env bash
# Fleet test of the operations kit: replicas of examples/echo_server.rs behind a simulated
# service discovery, a client fleet, and a real Prometheus and Alertmanager.
#
#   scripts/e2e-fleet.sh
#
# On 127.0.0.1 only: three echo_server replicas (job wsclose-fleet) that Prometheus (scrape and
# evaluation every 1 s, the CI copy of dashboards/rules.yaml) discovers through file_sd_configs,
# as a Kubernetes endpoints discovery would (one target group per replica, ready or not; the
# file is rewritten atomically); an Alertmanager (CI copy of dashboards/alertmanager.yml) that
# posts to a webhook receiver; and a fleet of Python `websockets` clients (one asyncio process,
# scripts/e2e_fleet.py) spread round-robin over the ready replicas, each sending a message every
# 0.5-1 s, closing after 10-30 s and reconnecting elsewhere. Phases:
#   1. baseline (20 s): no alert firing or pending, nothing at the webhook;
#   2. graceful rolling deploy: for each replica its replacement joins, the old one is marked
#      not ready, gets SIGTERM, drains with 1001 (the second one paced over 2 s), lets the last
#      scrape in, exits 0 and leaves the file. No alert fires; each drain's shutdown ends and
#      1001 frames are in Prometheus for its instance, equal to its report and to the 1001s the
#      clients got; the dashboard's opened-per-second panel has no spike; the paced drain's
#      survivors see a lower peak accept rate than an unpaced one's (printed as a table);
#   3. one replica SIGKILLed and left down (still listed): WebSocketTargetsDown reaches the
#      webhook;
#   4. crash loop: one replica SIGKILLed and restarted on the same ports every 6 s, 5 times:
#      WebSocketInstanceRestarting reaches the webhook. Through 3 and 4 the traffic-guarded
#      ratio alerts stay quiet, and opened_total over every instance and lifetime matches the
#      clients' connects.
# Ends with a table: scenario | expected | seen.
#
# Needs: Debian's `prometheus` and `prometheus-alertmanager` (installed with apt-get when
# missing), Python `websockets` in ${CARGO_TARGET_DIR:-target}/py-venv (scripts/peers-setup.sh,
# run when it is missing), cargo. Ports: E2E_FLEET_PORT_BASE (default 19200) + 0 (Prometheus),
# +3 (Alertmanager), +4 (webhook), +20..+29 (replicas' WebSocket), +40..+49 (their /metrics).
# E2E_FLEET_KEEP=1 keeps the work directory (logs, Prometheus data, the fleet's summary).
# Every process started here is stopped by its PID on exit (e2e_fleet.py lists those it starts
# in the work directory's `pids`). Prints one line per check, then
# `e2e-fleet: N passed, M failed`; exits non-zero if any check failed. Takes about 2.5 minutes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

base=${E2E_FLEET_PORT_BASE:-19200}
host=127.0.0.1
am_addr=$host:$((base + 3))
hook_addr=$host:$((base + 4))
job=wsclose-fleet
helper=scripts/e2e_alerts.py
target_dir=${CARGO_TARGET_DIR:-target}
venv_py=$target_dir/py-venv/bin/python

started=$SECONDS
work=$(mktemp -d)
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
CHECK_TAIL=30
am_pid=
hook_pid=
run_pid=
tail_pid=

# stop PID: SIGTERM, up to 10 s, then SIGKILL. Reaps it when it is a child of this shell.
stop() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  # The fleet test stops what it started (fleet, replicas, Prometheus); what is still listed
  # in its pid file (it was killed itself, or a child outlived it) is stopped here.
  stop "$run_pid"
  if [ -s "$work/pids" ]; then
    while read -r pid _; do stop "$pid"; done <"$work/pids"
  fi
  stop "$tail_pid"
  stop "$am_pid"
  stop "$hook_pid"
  if [ -n "${E2E_FLEET_KEEP:-}" ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
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

helper() {
  local name=$1 status=0
  shift
  python3 "$helper" "$@" >"$work/helper.out" 2>&1 || status=$?
  cat "$work/helper.out"
  count "$work/helper.out" "$status" "$name"
}

logs() {
  local f
  for f in "$work"/r*.log "$work/fleet.log" "$work/prometheus.log" "$work/alertmanager.log" \
    "$work/webhook.log"; do
    [ -s "$f" ] || continue
    echo "--- $(basename "$f") (last 20 lines)"
    grep -v ' DEBUG ' "$f" | tail -n 20
  done
}

finish() {
  echo
  echo "runtime $((SECONDS - started)) s"
  if [ "$failed" -gt 0 ]; then
    logs
    printf 'failed: %s\n' "${failed_names[@]}"
  fi
  echo "e2e-fleet: $passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; fi
  exit 1
}

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
  need run_check "apt-get install ${missing[*]}" apt_install "${missing[@]}"
fi
alertmanager_bin=$(command -v prometheus-alertmanager || command -v alertmanager)
echo "$(prometheus --version 2>&1 | head -n1)"
echo "$("$alertmanager_bin" --version 2>&1 | head -n1)"
if ! "$venv_py" -c 'import websockets' 2>/dev/null; then
  echo "no Python websockets at $venv_py: running scripts/peers-setup.sh"
  scripts/peers-setup.sh >"$work/peers-setup.out" 2>&1 || true
fi
need run_check "Python websockets in $target_dir/py-venv" "$venv_py" -c 'import websockets'

ports=($base $((base + 3)) $((base + 4)))
for i in $(seq 0 9); do ports+=($((base + 20 + i)) $((base + 40 + i))); done
need run_check "ports $base, +3, +4, +20..+29, +40..+49 free on $host (E2E_FLEET_PORT_BASE moves them)" \
  python3 scripts/e2e_fleet.py ports "$host" "${ports[@]}"

need run_check "cargo build -p wsclose-examples --bin echo_server" \
  cargo build --quiet -p wsclose-examples --bin echo_server
# A copy: the crash loop starts the binary again and again, and another build in the same
# target directory must not swap it in the middle of the run.
need run_check "echo_server copied to the work directory" \
  cp "$target_dir/debug/echo_server" "$work/echo_server"
echo_bin="$work/echo_server"

# --- configuration -------------------------------------------------------------------------
mkdir -p "$work/prom-data" "$work/am-data" "$work/sd"
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
    file_sd_configs:
      - files: ["$work/sd/targets.json"]
        refresh_interval: 5s
EOF
echo '[]' >"$work/sd/targets.json"
need run_check "promtool check config (CI prometheus.yml, file_sd)" \
  promtool check config "$work/prometheus.yml"

# --- Alertmanager and the webhook (Prometheus is started by the fleet test, once the
# replicas are listed, so that no rule ever sees the job absent or its targets down) --------
python3 "$helper" webhook "$host" $((base + 4)) "$work/webhook.jsonl" >"$work/webhook.log" 2>&1 &
hook_pid=$!
need run_check "webhook receiver ready on $hook_addr" \
  python3 "$helper" wait-http "http://$hook_addr/" 10
"$alertmanager_bin" --config.file="$work/alertmanager.yml" --storage.path="$work/am-data" \
  --web.listen-address="$am_addr" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
am_pid=$!
need run_check "Alertmanager ready on $am_addr" python3 "$helper" wait-http "http://$am_addr/-/ready" 30

# --- the fleet test ------------------------------------------------------------------------
status=0
: >"$work/run.out"
"$venv_py" -u scripts/e2e_fleet.py run --host "$host" --base "$base" --work "$work" --job "$job" \
  --echo-server "$echo_bin" --prometheus prometheus --prometheus-yml "$work/prometheus.yml" \
  --webhook-out "$work/webhook.jsonl" --dashboard dashboards/wsclose.json \
  >"$work/run.out" 2>&1 &
run_pid=$!
tail -n +1 -f --pid="$run_pid" "$work/run.out" &
tail_pid=$!
wait "$run_pid" || status=$?
run_pid=
wait "$tail_pid" 2>/dev/null || true
tail_pid=
count "$work/run.out" "$status" "fleet test" || true

finish
