#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, docs, the test suite (both feature
# sets), the loom model of the close gate, and the monitoring artifacts (promtool rules tests,
# dashboard type check). Installs what it needs on a fresh Debian machine.
#
#   ./scripts/test.sh
#
# Prints one line per step and ends with `test.sh: N passed, M failed`; exits non-zero if any
# step failed. One cargo target directory is shared by every step.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The real-peer tests fail (rather than skip) when Python or Node peers are missing.
export WSCLOSE_REQUIRE_PEERS=1

passed=0
failed=0
failed_steps=()

step() {
  local name=$1
  shift
  echo "==> $name"
  local started=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "<== ok: $name ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    failed_steps+=("$name")
    echo "<== FAILED: $name ($((SECONDS - started)) s)"
  fi
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
}

step "tools" ensure_nextest
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (all features)" cargo clippy --all-targets --all-features -- -D warnings
step "cargo clippy (no default features)" cargo clippy --lib --tests --no-default-features -- -D warnings
step "cargo check (each optional feature alone)" sh -c \
  'for f in axum otel; do cargo check --quiet --lib --no-default-features --features $f || exit 1; done'
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
step "real peers: python websockets, node ws" scripts/peers-setup.sh
step "tests (all features)" cargo nextest run --all-features --no-fail-fast
step "tests (default features)" cargo nextest run --no-fail-fast
step "doc tests" cargo test --doc --all-features
step "loom model of the close gate" \
  env LOOM_MAX_PREEMPTIONS=3 cargo test --release --manifest-path loom/Cargo.toml
step "autobahn (both roles, vs raw tokio-tungstenite)" scripts/autobahn.sh
step "fuzz (20 s per target)" scripts/fuzz.sh 20
step "dashboards, rules and runbook" scripts/check-dashboards.sh
step "the demo (10 s run, /metrics, graceful shutdown)" scripts/demo-check.sh
step "alerting end to end (Prometheus, Alertmanager, webhook, demo)" scripts/e2e-alerts.sh
step "benchmark smoke run (every compare line)" scripts/bench-smoke.sh

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed steps:\n'
  printf '  - %s\n' "${failed_steps[@]}"
fi
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
