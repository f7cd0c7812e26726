#!/usr/bin/env bash
# make test: install the test dependencies, start PostgreSQL and Redis on free loopback
# ports, run the linters and the whole suite against them, stop everything (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
start_services test

if [ -z "${QUICK:-}" ]; then  # QUICK=1 skips the linters while iterating on one test
  echo "==> ruff"
  ruff format --check --quiet .
  ruff check --quiet .
  echo "==> import layers (import-linter, pyproject.toml)"
  lint-imports --no-cache
  echo "==> mypy"
  mypy psicogest emailsettings devtools
  echo "==> migrations are up to date"
  python manage.py makemigrations --check --dry-run >/dev/null
fi
echo "==> pytest (PostgreSQL on $PG_PORT, Redis on $REDIS_PORT)"
python -m pytest "$@"
