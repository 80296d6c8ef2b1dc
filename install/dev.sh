#!/usr/bin/env bash
# Developer entry point: sets up .venv (and, as root, the system packages) and runs the appliance.
#   ./install/dev.sh demo [ARGS]   install if needed, then run the simulated shop demo
#   ./install/dev.sh test [ARGS]   install everything the tests need, then lint, type-check and test
#   ./install/dev.sh setup         install only
#   ./install/dev.sh run ARGS      run `appliance ARGS` in the venv
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
mode="${1:-}"
[ $# -gt 0 ] && shift

say() { printf '[dev.sh] %s\n' "$*" >&2; }

pick_python() {
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$cand"; return 0
    fi
  done
  say "Python 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1
}

system_packages() {
  # Debian packages the tests use: a real MQTT broker and a real browser.
  local need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})"
    return 0
  fi
  say "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian enables and starts the broker service on install; the appliance and the tests run their own.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
}

python_packages() {
  local py stamp want
  py=$(pick_python)
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$py" -m venv "$venv"
  fi
  stamp="$venv/.installed"
  want=$(cat pyproject.toml install/dev.sh | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages into $venv"
    "$venv/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$venv/bin/pip" install --quiet -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

models() {
  if [ -x install/models.sh ]; then install/models.sh; fi
}

case "$mode" in
  setup)
    system_packages; python_packages; models ;;
  demo)
    python_packages; models
    exec "$venv/bin/appliance" demo "$@" ;;
  test)
    system_packages; python_packages; models
    say "ruff"; "$venv/bin/ruff" check appliance tests
    say "mypy"; "$venv/bin/mypy"
    say "pytest"; exec "$venv/bin/python" -m pytest "$@" ;;
  run)
    python_packages
    exec "$venv/bin/appliance" "$@" ;;
  *)
    sed -n '2,7p' "$0"; exit 2 ;;
esac
