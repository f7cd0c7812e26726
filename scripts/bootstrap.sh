#!/usr/bin/env bash
# Create .venv and install the locked dependencies: bootstrap.sh base|test
# Re-installs only when the lock file changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
which_lock="${1:-base}"
lock="requirements/${which_lock}.lock"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv
      "$python" -m venv .venv
    else
      echo "error: '$python -m venv' failed; install the python3-venv package" >&2
      exit 1
    fi
  fi
fi

stamp=".venv/.installed-${which_lock}"
digest="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "==> installing $lock into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r "$lock"
  echo "$digest" > "$stamp"
fi
