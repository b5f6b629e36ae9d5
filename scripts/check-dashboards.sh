#!/usr/bin/env bash
# Checks the monitoring artifacts in dashboards/ and docs/runbook.md.
#
#   scripts/check-dashboards.sh
#
# Run from anywhere inside the repository; paths are resolved from the repository root.
# Needs Node 20 + npm (and the npm registry) for the dashboard type check. Installs promtool and
# amtool from Debian's `prometheus` / `prometheus-alertmanager` packages when they are missing
# (as root, or through sudo). Prints one line per check, then `dashboards: N passed, M failed`,
# and exits non-zero if any check failed. See docs/operations.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DASH=dashboards
TYPECHECK=$DASH/typecheck
RUNBOOK=docs/runbook.md

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Every check runs, whatever the one before did; the summary at the end decides.
check() { run_check "$@" || true; }

# --- tools ---------------------------------------------------------------------------------

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (for promtool / amtool)"
  apt_install "${missing[@]}" >"$work/apt.log" 2>&1 || {
    cat "$work/apt.log" >&2
    echo "dashboards: 0 passed, 1 failed"
    exit 1
  }
fi
for tool in promtool amtool node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found" >&2
    echo "dashboards: 0 passed, 1 failed"
    exit 1
  fi
done
echo "promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), amtool $(amtool --version 2>&1 | head -n1 | awk '{print $3}'), node $(node --version), npm $(npm --version)"

# --- Prometheus rules and config -----------------------------------------------------------
check "promtool check rules $DASH/rules.yaml" promtool check rules "$DASH/rules.yaml"
# check config resolves rule_files relative to prometheus.yml, so this loads rules.yaml too.
check "promtool check config $DASH/prometheus.yml" promtool check config "$DASH/prometheus.yml"
check "promtool test rules $DASH/rules_test.yaml" promtool test rules "$DASH/rules_test.yaml"

# The unit tests must notice when a rule changes: each edit below must make them fail.
rule_edits=(
  's/ratio_rate5m > 0.05$/ratio_rate5m > 0.5/'                        # unexpected-ratio threshold
  's/job_role:websocket_closes:rate5m > 0.1$/job_role:websocket_closes:rate5m > 0.01/' # traffic guard
  's/for: 10m$/for: 5m/'                                              # a `for`
  's/ratio_rate5m > 0.10$/ratio_rate5m > 0.3/'                        # timeout threshold
  's/ratio_rate5m > 0.20$/ratio_rate5m > 0.4/'                        # slow-close threshold
  's/le=~"1(\\\\.0)?"/le="1"/'                                        # Prometheus 3 le form
  's/:rate5m > 1$/:rate5m > 5/'                                       # send-after-close rate
  's/offset 10m/offset 1m/'                                           # new-series branch
  's/severity: critical/severity: warning/'                           # a label
  's/failed:ratio_rate5m{role="server"} > 0.05$/failed:ratio_rate5m{role="server"} > 0.2/' # handshake failure threshold
  's/handshakes:rate5m > 0.1$/handshakes:rate5m > 0.01/'              # handshake traffic guard
  's/outcome=~"failed|timeout"/outcome=~"failed|timeout|rejected"/'   # refusals are no failures
  's/failed:ratio_rate5m{role="server"}/failed:ratio_rate5m/'         # server handshakes only
  's/timeout:rate5m{role="server"} > 1$/timeout:rate5m{role="server"} > 0.25/' # timeout surge rate
  's/timeout:ratio_rate5m > 0.25$/timeout:ratio_rate5m > 0.05/'       # timeout surge share
  # fleet alerts
  's/) > 10$/) > 50/'                                                 # targets-down share
  's/(job, instance) job_instance:websocket_connections_active:seen)$/(job, instance) up)/' # wsclose targets only
  '/alert: WebSocketTargetsDown/,/for:/s/for: 5m$/for: 1m/'           # targets-down `for`
  's/ or job_instance:websocket_connections_active:seen)$/)/'         # a target down > 1 h still counts
  's/^\( *\)up$/\1present_over_time(up[1h])/'                          # a target that left discovery stops counting
  '/alert: WebSocketJobAbsent/,/for:/s/for: 5m$/for: 1m/'             # job-absent `for` (a recreate deploy)
  's/(up == 1)$/(up)/'                                                # down targets are not there
  's/:seen\[1h\]/:seen[10m]/'                                         # job-absent memory
  's/process_start_time_seconds\[15m\]) >= 3$/process_start_time_seconds[15m]) >= 4/' # restarts threshold
  's/process_start_time_seconds\[15m\]/process_start_time_seconds[30m]/' # restarts window
  's/keep_firing_for: 15m$/keep_firing_for: 1m/'                      # no flapping in a crash loop
  's/^\( *\)job_instance:websocket_connections_active:seen$/\1up/'     # restarts of wsclose targets only
)
# Recorded ratios divide by `(traffic > 0)`: absent, not NaN, for an idle job.
for r in closes_unexpected:ratio_rate5m closes_unexpected:ratio_rate1h closes_timeout:ratio_rate5m \
  close_duration_seconds_above_1s:ratio_rate5m handshakes_failed:ratio_rate5m handshakes_timeout:ratio_rate5m; do
  rule_edits+=("/record: job_role:websocket_$r\$/,/^\$/s/(\\(.*\\) > 0)\$/\\1/")
done
rule_mutants() {
  local dir=$work/mutants m n=0 escaped=()
  mkdir -p "$dir"
  cp "$DASH/rules_test.yaml" "$dir/"
  for m in "${rule_edits[@]}"; do
    n=$((n + 1))
    sed "$m" "$DASH/rules.yaml" >"$dir/rules.yaml"
    if cmp -s "$DASH/rules.yaml" "$dir/rules.yaml"; then
      echo "edit $n ($m) changed nothing: update this list"
      return 1
    fi
    if promtool test rules "$dir/rules_test.yaml" >"$dir/out" 2>&1; then
      escaped+=("$m")
    fi
  done
  if [ ${#escaped[@]} -gt 0 ]; then
    printf 'rules_test.yaml still passes after: %s\n' "${escaped[@]}"
    return 1
  fi
  echo "all $n edits caught"
}
check "rules tests fail when rules.yaml changes (${#rule_edits[@]} edits)" rule_mutants

check "amtool check-config $DASH/alertmanager.yml" amtool check-config "$DASH/alertmanager.yml"

# --- runbook links -------------------------------------------------------------------------
# GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
runbook_anchors() {
  sed -n 's/^#\{1,6\}[[:space:]]\{1,\}//p' "$1" |
    tr '[:upper:]' '[:lower:]' |
    sed -e 's/[^a-z0-9 _-]//g' -e 's/ /-/g'
}

# check_runbook_links RULES RUNBOOK
check_runbook_links() {
  local rules=$1 runbook=$2 bad=0 alert url anchor
  runbook_anchors "$runbook" >"$work/anchors"
  # Pair every alert with the runbook_url that follows it.
  awk '
    /^[[:space:]]*- alert:/ { if (alert != "") print alert, "-"; alert = $3; next }
    /^[[:space:]]*runbook_url:/ { u = $2; gsub(/"/, "", u); print alert, u; alert = ""; next }
    END { if (alert != "") print alert, "-" }
  ' "$rules" >"$work/links"
  if [ ! -s "$work/links" ]; then
    echo "no alerts found in $rules"
    return 1
  fi
  while read -r alert url; do
    if [ "$url" = "-" ]; then
      echo "$alert: no runbook_url"
      bad=1
      continue
    fi
    case $url in
      https://github.com/wsclose/wsclose/blob/main/docs/runbook.md\#*) ;;
      *)
        echo "$alert: runbook_url $url does not point into docs/runbook.md"
        bad=1
        continue
        ;;
    esac
    anchor=${url##*#}
    if ! grep -qxF -- "$anchor" "$work/anchors"; then
      echo "$alert: #$anchor is not a heading of $runbook"
      bad=1
    fi
    if [ "$anchor" != "$(printf '%s' "$alert" | tr '[:upper:]' '[:lower:]')" ]; then
      echo "$alert: anchor #$anchor should be the alert name in lower case"
      bad=1
    fi
  done <"$work/links"
  [ "$bad" -eq 0 ] && echo "$(wc -l <"$work/links") alerts link to their runbook section"
}
check "every runbook_url anchor is a heading of $RUNBOOK" check_runbook_links "$DASH/rules.yaml" "$RUNBOOK"

runbook_link_mutant() {
  sed 's/#websocketslowcloses"/#websocket-slow-closes"/' "$DASH/rules.yaml" >"$work/rules-broken-link.yaml"
  if check_runbook_links "$work/rules-broken-link.yaml" "$RUNBOOK" >"$work/link-out" 2>&1; then
    echo "a broken runbook anchor was not noticed"
    return 1
  fi
  cat "$work/link-out"
}
check "the runbook link check catches a broken anchor" runbook_link_mutant

# --- Grafana dashboard ---------------------------------------------------------------------
npm_ci() { (cd "$TYPECHECK" && npm ci --no-audit --no-fund); }
check "npm ci in $TYPECHECK" npm_ci

# wsclose.json is generated from dashboard.ts: the committed file must be what it generates.
# dashboard_generated FILE: regenerates the dashboard into a temporary file and compares.
dashboard_generated() {
  local committed=$1 generated=$work/wsclose.generated.json
  node "$TYPECHECK/generate.mjs" "$generated" >/dev/null || return 1
  if cmp -s "$committed" "$generated"; then
    echo "$committed is what $TYPECHECK/dashboard.ts generates"
    return 0
  fi
  diff -u --label "$committed" --label "generated" "$committed" "$generated" | head -n 30 || true
  # Says where the two differ and how to regenerate (node dashboards/typecheck/generate.mjs).
  node "$TYPECHECK/generate.mjs" --check "$committed"
  return 1
}
check "$DASH/wsclose.json is generated from $TYPECHECK/dashboard.ts" dashboard_generated "$DASH/wsclose.json"

# A hand edit of the JSON, in content or only in form, must fail the check above.
hand_edit_caught() {
  local what edit edited=$work/wsclose-hand-edited.json
  for what in "a changed panel title" "the same content re-indented"; do
    case $what in
      a*) edit='d.panels[1].title += " (edited)"; return JSON.stringify(d, null, 2) + "\n";' ;;
      *) edit='return JSON.stringify(d, null, 4) + "\n";' ;;
    esac
    node -e '
      const fs = require("fs");
      const [src, dst, edit] = process.argv.slice(1);
      const d = JSON.parse(fs.readFileSync(src, "utf8"));
      fs.writeFileSync(dst, new Function("d", edit)(d));
    ' "$DASH/wsclose.json" "$edited" "$edit" || return 1
    if dashboard_generated "$edited" >"$work/hand-edit.out" 2>&1; then
      echo "the generated-dashboard check accepted $what"
      return 1
    fi
    echo "caught ($what): $(grep -m1 'differs\|same content' "$work/hand-edit.out")"
  done
}
check "the generated-dashboard check catches hand edits of $DASH/wsclose.json" hand_edit_caught

tsc_bin=$TYPECHECK/node_modules/.bin/tsc
typecheck() {
  node "$TYPECHECK/gen.mjs" "$DASH/wsclose.json" "$TYPECHECK/generated/wsclose.ts" || return 1
  "$tsc_bin" --noEmit -p "$TYPECHECK"
}
check "tsc: $TYPECHECK/dashboard.ts and $DASH/wsclose.json against @grafana/schema types" typecheck

# Copies the type-check project next to a malformed dashboard and expects tsc to reject it.
# $1: what is wrong, $2: JavaScript that breaks `d` (the parsed dashboard)
reject_malformed() {
  local what=$1 breakit=$2 dir
  dir=$(mktemp -d "$work/malformed.XXXXXX")
  mkdir "$dir/typecheck"
  cp "$TYPECHECK/check.ts" "$TYPECHECK/gen.mjs" "$TYPECHECK/tsconfig.json" "$dir/typecheck/"
  ln -s "$PWD/$TYPECHECK/node_modules" "$dir/typecheck/node_modules"
  node -e '
    const fs = require("fs");
    const [src, dst, breakit] = process.argv.slice(1);
    const d = JSON.parse(fs.readFileSync(src, "utf8"));
    new Function("d", breakit)(d);
    fs.writeFileSync(dst, JSON.stringify(d, null, 2));
  ' "$DASH/wsclose.json" "$dir/wsclose.json" "$breakit" || return 1
  node "$dir/typecheck/gen.mjs" || return 1
  if "$tsc_bin" --noEmit -p "$dir/typecheck" >"$dir/tsc.out" 2>&1; then
    echo "tsc accepted a dashboard with $what"
    return 1
  fi
  if ! grep -q 'error TS' "$dir/tsc.out"; then
    cat "$dir/tsc.out"
    return 1
  fi
  echo "rejected ($what): $(grep -m1 -o 'error TS[0-9]*' "$dir/tsc.out")"
}
first_panel='const p = d.panels.find((p) => p.type !== "row");'
check "tsc rejects a panel whose gridPos is a string" \
  reject_malformed "gridPos a string" "$first_panel p.gridPos = \"full width\";"
check "tsc rejects a panel whose targets is a number" \
  reject_malformed "targets a number" "$first_panel p.targets = 3;"
check "tsc rejects an unknown colour mode" \
  reject_malformed "color mode palete-classic" "$first_panel p.fieldConfig.defaults.color.mode = \"palete-classic\";"
check "tsc rejects a misspelt panel key" \
  reject_malformed "key descripton" "$first_panel p.descripton = p.description; delete p.description;"

check "dashboard lint (filters, sum by, metric names, labels, layout)" \
  node "$TYPECHECK/lint.mjs" "$DASH/wsclose.json" "$DASH/rules.yaml"

# break_dashboard OUT JS: writes a copy of the dashboard to OUT with JS applied to `d` (the parsed
# dashboard; `panel(title)` finds a panel).
break_dashboard() {
  node -e '
    const fs = require("fs");
    const [src, dst, breakit] = process.argv.slice(1);
    const d = JSON.parse(fs.readFileSync(src, "utf8"));
    const panel = (title) => d.panels.find((p) => p.title === title);
    new Function("d", "panel", breakit)(d, panel);
    fs.writeFileSync(dst, JSON.stringify(d, null, 2));
  ' "$DASH/wsclose.json" "$1" "$2"
}

# lint_rejects WHAT JS: the lint must reject the dashboard broken by JS.
lint_rejects() {
  local what=$1 out=$work/lint-broken.json
  break_dashboard "$out" "$2" || return 1
  if node "$TYPECHECK/lint.mjs" "$out" "$DASH/rules.yaml" >"$work/lint-out" 2>&1; then
    echo "the lint accepted $what"
    return 1
  fi
  cat "$work/lint-out"
}
check "dashboard lint catches a query without the instance filter" \
  lint_rejects "a query without the instance filter" \
  'const t = d.panels.find((p) => p.type !== "row").targets[0]; t.expr = t.expr.replace(/, instance=~"\$instance"/, "");'
unguarded_ratio='const t = panel("Unexpected-end ratio").targets[0]; t.expr = t.expr.replace(/\((sum by \(role\) .*) > 0\)$/, "$1");'
unguarded_quantile='const t = panel("Handshake duration p99 by outcome").targets[0]; t.expr = t.expr.split("\n")[0];'
check "dashboard lint catches a ratio not guarded against 0/0" \
  lint_rejects "a ratio divided by an unguarded sum" "$unguarded_ratio"
check "dashboard lint catches a quantile not guarded against an idle histogram" \
  lint_rejects "a histogram_quantile without its _count guard" "$unguarded_quantile"

# Every panel query, evaluated by promtool on an idle instance and on one with a single active
# outcome (lint.mjs --idle-test), gives no NaN. idle_test DASHBOARD
idle_test() {
  node "$TYPECHECK/lint.mjs" --idle-test "$work/idle_test.yaml" "$1" || return 1
  promtool test rules "$work/idle_test.yaml"
}
check "no panel query is NaN on an idle instance (promtool)" idle_test "$DASH/wsclose.json"

idle_test_catches() {
  local what js out
  for what in ratio quantile; do
    out=$work/idle-broken-$what.json
    if [ "$what" = ratio ]; then js=$unguarded_ratio; else js=$unguarded_quantile; fi
    break_dashboard "$out" "$js" || return 1
    if idle_test "$out" >"$work/idle-out" 2>&1; then
      echo "the idle test accepted an unguarded $what"
      return 1
    fi
    echo "caught (unguarded $what): $(grep -c 'got:.*NaN' "$work/idle-out") NaN result(s)"
  done
}
check "the idle test catches an unguarded ratio and quantile" idle_test_catches

# --- summary -------------------------------------------------------------------------------
if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failed_names[@]}"
fi
echo "dashboards: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
