#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, docs, the test suite (every
# feature set, and the examples' package), the loom model of the close gate, the monitoring
# artifacts (promtool rules tests, dashboard type check), the demo, conformance, fuzzing and
# benchmark smoke runs.
#
#   ./scripts/test.sh
#
# First installs what the package registries provide when it is missing (cargo-nextest,
# cargo-fuzz, a nightly toolchain; Debian's prometheus, prometheus-alertmanager, python3-venv,
# nodejs and npm) and names what it cannot install (Python 2.7 for Autobahn|Testsuite, which
# needs python.org). Prints one
# line per step and ends with `test.sh: N passed, M failed`; exits non-zero if any step failed.
# One cargo target directory is shared by every step.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# apt_install (sourced first: it defines counters that this script then resets).
source scripts/lib.sh
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

# Installs what the registries provide; checks the rest. Prints what is missing, then fails the
# step (the steps that need a missing tool fail too, later).
prerequisites() {
  local missing=()
  if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "installing cargo-nextest (cargo install)"
    cargo install cargo-nextest --locked || missing+=("cargo-nextest: cargo install cargo-nextest --locked")
  fi
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "installing a nightly toolchain for cargo-fuzz (rustup)"
    rustup toolchain install nightly --profile minimal ||
      missing+=("a nightly toolchain: rustup toolchain install nightly --profile minimal")
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install)"
    cargo install cargo-fuzz --locked || missing+=("cargo-fuzz: cargo install cargo-fuzz --locked")
  fi
  local apt=()
  py_ok() {
    local cand
    for cand in "${PYTHON3:-}" "$HOME/.pyenv/versions/3.11.7/bin/python" python3.11 python3; do
      [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 &&
        "$cand" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 9))' 2>/dev/null &&
        return 0
    done
    return 1
  }
  node_ok() {
    command -v npm >/dev/null 2>&1 &&
      node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null
  }
  # One apt-get call per need, so that one that cannot be installed does not hold back the rest.
  py_ok || apt+=("python3 python3-venv")
  node_ok || apt+=("nodejs npm")
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || apt+=(prometheus)
  { command -v amtool >/dev/null 2>&1 &&
    { command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; }; } ||
    apt+=(prometheus-alertmanager)
  local pkgs
  for pkgs in "${apt[@]}"; do
    echo "installing $pkgs (apt-get)"
    # shellcheck disable=SC2086 # a list of package names
    apt_install $pkgs >/dev/null || missing+=("$pkgs: apt-get install $pkgs (as root)")
  done
  py_ok || missing+=("Python >= 3.9 with venv (peers, e2e alerts): apt-get install python3 python3-venv")
  node_ok || missing+=("Node.js >= 18 with npm (peers; the dashboard type check is kept on Node 20): apt-get install nodejs npm, or NodeSource")
  # Not from the registries: named, not installed.
  local py2="${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}"
  if ! "$py2" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null &&
    ! python2.7 -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
    missing+=("Python 2.7 for Autobahn|Testsuite (downloads from python.org): curl https://pyenv.run | bash && pyenv install 2.7.18, or set PYTHON2=/path/to/python2.7")
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "missing (the steps that need them will fail):"
    printf '  - %s\n' "${missing[@]}"
    return 1
  fi
  echo "all prerequisites found"
}

# `cargo check --quiet` per feature: one line per feature, so a minute of building is not silent.
check_each_feature() {
  local f
  for f in prometheus axum otel tokio-websockets fastwebsockets; do
    echo "    cargo check --lib --no-default-features --features $f"
    cargo check --quiet -p wsclose --lib --no-default-features --features "$f" || return 1
  done
}

step "prerequisites (install what the registries provide, name the rest)" prerequisites
step "cargo fmt --check" cargo fmt --all -- --check
# --workspace: the library and the examples' package (examples/).
step "cargo clippy (all features, library and examples)" \
  cargo clippy --workspace --all-targets --all-features -- -D warnings
# -p wsclose alone: the examples' package turns `prometheus` on.
step "cargo clippy (default features: the metrics facade and tracing only)" \
  cargo clippy -p wsclose --lib --tests -- -D warnings
step "cargo check (each optional feature alone)" check_each_feature
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
# Without features too: links to the optional modules must still resolve (to docs.rs).
step "cargo doc (default features)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p wsclose
step "real peers: python websockets, node ws" scripts/peers-setup.sh
step "tests (all features, library and examples)" \
  cargo nextest run --workspace --all-features --no-fail-fast
step "tests (default features: the metrics facade and tracing only)" \
  cargo nextest run -p wsclose --no-fail-fast
step "doc tests (all features)" cargo test -p wsclose --doc --all-features
step "doc tests (default features)" cargo test -p wsclose --doc
step "loom model of the close gate" \
  env LOOM_MAX_PREEMPTIONS=3 cargo test --release --manifest-path loom/Cargo.toml
step "tungstenite versions (axum's and ours)" scripts/check-tungstenite.sh
step "autobahn (both roles vs raw tokio-tungstenite; server role on tokio-websockets and fastwebsockets vs each raw)" scripts/autobahn.sh
step "fuzz (20 s per target)" scripts/fuzz.sh 20
step "dashboards, rules and runbook" scripts/check-dashboards.sh
step "first unexpected close seen by a real Prometheus (series from the start)" scripts/e2e-first-close.sh
step "the demo (10 s run, /metrics, graceful shutdown)" scripts/demo-check.sh
step "alerting end to end (Prometheus, Alertmanager, webhook, demo)" scripts/e2e-alerts.sh
step "fleet: rolling deploy, killed replica, crash loop (Prometheus, Alertmanager)" scripts/e2e-fleet.sh
step "benchmark smoke run (every compare line)" scripts/bench-smoke.sh

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed steps:\n'
  printf '  - %s\n' "${failed_steps[@]}"
fi
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
