#!/usr/bin/env bash
# Checks the tungstenite versions in the build (all features, normal dependencies):
#
# 1. The tungstenite that axum uses (through its tokio-tungstenite) must be the one wsclose's
#    `tungstenite_axum` dependency names: src/axum.rs classifies axum's errors by that type (a
#    mismatch sends them to the by-name fallback, which WARNs). tests/axum_serve.rs checks
#    the same at run time.
# 2. When axum's tokio-tungstenite and wsclose's are the same version, one tungstenite must be
#    built: `cargo tree -d -e normal --all-features` lists no duplicate tungstenite.
#    While they differ (axum 0.8.9 uses 0.29, wsclose 0.30), two are built; this is printed,
#    not failed.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r axum_tung alias_tung axum_tt ours_tt < <(
  cargo metadata --format-version 1 --all-features --locked 2>/dev/null | python3 -c '
import json, sys
meta = json.load(sys.stdin)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
def normal_deps(pid):
    for d in nodes[pid]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]):
            yield d["name"], pkgs[d["pkg"]]
def dep(pid, name):
    return next(p for n, p in normal_deps(pid) if n == name)
root = meta["resolve"]["root"]
axum = dep(root, "axum")
axum_tt = dep(axum["id"], "tokio_tungstenite")
axum_tung = dep(axum_tt["id"], "tungstenite")
alias = dep(root, "tungstenite_axum")
ours_tt = dep(root, "tokio_tungstenite")
print(axum_tung["version"], alias["version"], axum_tt["version"], ours_tt["version"])
'
) || true

if [ -z "${ours_tt:-}" ]; then
  echo "FAIL: could not read the dependency graph (cargo metadata --locked: is Cargo.lock current?)" >&2
  exit 1
fi
echo "axum: tokio-tungstenite $axum_tt (tungstenite $axum_tung); wsclose: tokio-tungstenite $ours_tt, tungstenite_axum $alias_tung"

if [ "$axum_tung" != "$alias_tung" ]; then
  echo "FAIL: axum uses tungstenite $axum_tung but tungstenite_axum is $alias_tung:" \
    "move tungstenite_axum in Cargo.toml to axum's version" >&2
  exit 1
fi

# `cargo tree -d` also prints tungstenite as a dependent of other duplicated crates (sha1,
# rand…): what counts is how many versions of it appear.
dups=$(cargo tree -d -e normal --all-features --prefix none 2>/dev/null |
  sed -n 's/^\(tokio-tungstenite\|tungstenite\) v\([^ ]*\).*/\1 \2/p' | sort -u)
versions=$(echo "$dups" | awk '$1 == "tungstenite"' | wc -l)
if [ "$axum_tt" = "$ours_tt" ]; then
  if [ "$versions" -gt 1 ]; then
    echo "FAIL: axum and wsclose agree on tokio-tungstenite $ours_tt, yet tungstenite is built" \
      "in $versions versions:" >&2
    echo "$dups" >&2
    exit 1
  fi
  echo "ok: one tungstenite is built"
else
  echo "note: two tungstenite versions are built (axum's tokio-tungstenite $axum_tt, wsclose's" \
    "$ours_tt) until they agree; not a failure:"
  echo "$dups" | sed 's/^/  /'
fi
