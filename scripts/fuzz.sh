#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time each (default 20 s).
#
#   scripts/fuzz.sh [SECONDS]          # e.g. scripts/fuzz.sh 600 for a longer session
#
# Needs a nightly toolchain and cargo-fuzz; installs both when missing (rustup, cargo install).
# Corpora are kept in fuzz/corpus/<target> (not committed) so later runs start where earlier ones
# stopped; a crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH=${1:-20}
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing a nightly toolchain (rustup toolchain install nightly --profile minimal)"
  rustup toolchain install nightly --profile minimal || {
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
    exit 2
  }
fi

cd fuzz
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build
for t in $targets; do
  echo "fuzz.sh: $t for ${SECONDS_EACH} s"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 \
    -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|Done|==[0-9]+==|SUMMARY|thread .* panicked|INFO: Running)' || true
  # cargo fuzz exits non-zero on a crash, but grep above hides it: check the artifacts.
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz.sh: $t found a crash: $(ls artifacts/"$t")" >&2
    exit 1
  fi
done
echo "fuzz.sh: all targets ran ${SECONDS_EACH} s each without a crash"
