#!/usr/bin/env bash
# Installs the real WebSocket peers that tests/peers.rs drives: Python `websockets` in a venv
# ($CARGO_TARGET_DIR/py-venv, default target/py-venv) and Node `ws` (tests/peers/node, from the
# committed package-lock.json). Idempotent and fast when already done.
#
#   scripts/peers-setup.sh
#
# Then run the tests with WSCLOSE_REQUIRE_PEERS=1 so a missing runtime fails instead of skipping.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/py-venv"
REQ=tests/peers/python/requirements.txt

PY3="${PYTHON3:-}"
if [ -z "$PY3" ]; then
  for cand in "$HOME/.pyenv/versions/3.11.7/bin/python" python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
      "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      PY3=$cand
      break
    fi
  done
fi
if [ -z "$PY3" ]; then
  echo "peers-setup.sh: needs Python >= 3.9 (set PYTHON3=...)" >&2
  exit 2
fi
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha" 2>/dev/null)" != "$want" ]; then
  rm -rf "$VENV"
  "$PY3" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQ"
  echo "$want" >"$VENV/.requirements.sha"
fi
"$VENV/bin/python" -c 'import websockets' 

command -v node >/dev/null 2>&1 || { echo "peers-setup.sh: needs Node.js >= 18" >&2; exit 2; }
cd tests/peers/node
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.lock.sha 2>/dev/null)" != "$lock" ]; then
  npm ci --no-audit --no-fund --silent
  echo "$lock" >node_modules/.lock.sha
fi
node -e 'require("ws")'
echo "peers-setup.sh: python $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)') at $VENV, node ws $(node -p 'require("ws/package.json").version')"
