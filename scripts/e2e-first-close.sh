#!/usr/bin/env bash
# The first unexpected close after a start, seen by a real Prometheus (tests/first_close.rs).
#
#   scripts/e2e-first-close.sh
#
# Runs the ignored test `tests/first_close.rs`: a fresh test process serves wsclose's Prometheus
# exporter and a wsclose server on 127.0.0.1 (ephemeral ports), starts Debian's `prometheus`
# on 127.0.0.1 (1 s scrape, a copy of dashboards/rules.yaml with shortened windows, storage in
# a temp dir), waits until the zero series of the first connection are scraped, causes exactly
# one unexpected close, and checks that `increase()` and the WebSocketUnexpectedCloseErrors
# alert expression see it. The test stops the Prometheus it started by its PID.
#
# Needs: Debian's `prometheus` (installed with apt-get when missing, as root or through sudo),
# cargo. PROMETHEUS=/path/to/prometheus overrides the binary. Takes about 10 s after the build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [ -z "${PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus"
  apt_install prometheus
fi
"${PROMETHEUS:-prometheus}" --version 2>&1 | head -n1
exec cargo test --quiet --features prometheus --test first_close -- --ignored
