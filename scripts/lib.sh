# Shared by the check scripts (sourced, not run): the check runner and the package installer.
#
# A script that sources this file sets `work` (a temporary directory) first, and may set
# CHECK_TAIL to show only the last N lines of a failed check's output. Counts go to `passed`,
# `failed` and `failed_names`.

passed=0
failed=0
failed_names=()

# run_check NAME COMMAND...: runs COMMAND with its output captured, prints `ok    NAME` or
# `FAIL  NAME` followed by the output; returns COMMAND's status.
run_check() {
  local name=$1 status=0
  shift
  "$@" >"$work/check.out" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$work/check.out" | tail -n "${CHECK_TAIL:-+1}"
  fi
  return "$status"
}

# apt_install PACKAGE...: apt-get install as root or through sudo, updating the lists once.
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "need root (or sudo) to apt-get install $*" >&2
      return 1
    fi
  fi
  if [ -z "${apt_updated:-}" ]; then
    "${sudo[@]}" apt-get update -qq || return
    apt_updated=1
  fi
  # policy-rc.d in containers keeps the packaged services from starting; elsewhere they may.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
