#!/usr/bin/env bash
# Mutation testing of the close path with cargo-mutants: every mutant (a function body replaced,
# an operator flipped, a match arm deleted) must make some test fail. The counts and the reasons
# the remaining missed mutants are harmless are in docs/testing.md.
#
#   ./scripts/mutants.sh                 # the close path: conn, deadline, gate, classify, registry
#   ./scripts/mutants.sh src/gate.rs     # one file
#   CARGO_MUTANTS_JOBS=2 ./scripts/mutants.sh   # two mutants at a time (the suite is built to
#                                               # pass under load; a build and a test overlap)
#
# Too slow for CI (an incremental build and a test run per mutant: about an hour per hundred
# mutants on two cores), so it is run by hand. It works on a copy of the tree, so the checkout
# can be edited meanwhile. Results land in mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt). Installs cargo-mutants from crates.io when it is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never

command -v cargo-mutants >/dev/null 2>&1 || cargo install cargo-mutants --locked
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=('src/conn/*.rs' 'src/handshake/*.rs' src/deadline.rs src/gate.rs src/classify.rs src/registry.rs)
fi
globs=()
for f in "${files[@]}"; do
  globs+=(--file "$f")
done

# The real-peer tests (Python, Node) and the exporters' rendering and wire tests exercise the same close path
# through slower processes; the in-process tests see every behaviour they check.
filter='not binary(peers) and not binary(otel_wire) and not binary(support_selftest) and not binary(prometheus)'

exec cargo mutants \
  --all-features \
  --profile mutants \
  --cargo-arg=--lib --cargo-arg=--tests \
  --test-tool nextest \
  --timeout-multiplier 3 \
  --minimum-test-timeout 60 \
  "${globs[@]}" \
  -- --profile mutants -E "$filter"
