#!/usr/bin/env bash
# make test: install the test dependencies, start PostgreSQL and Redis on free loopback
# ports, run the linters and the whole suite against them, stop everything (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
VENV_PY="$PWD/.venv/bin/python"
source scripts/services.sh
ensure_packages

SERVICES_DIR="$(mktemp -d /tmp/psicogest-test.XXXXXX)"
trap stop_services EXIT INT TERM
start_postgres
start_redis
export PSICOGEST_VAR_DIR="$SERVICES_DIR/var"
export DJANGO_ENV=development
export PATH="$PWD/.venv/bin:$PATH"

if [ -z "${QUICK:-}" ]; then  # QUICK=1 skips the linters while iterating on one test
  echo "==> ruff"
  ruff format --check --quiet .
  ruff check --quiet .
  echo "==> mypy"
  mypy psicogest emailsettings
  echo "==> migrations are up to date"
  python manage.py makemigrations --check --dry-run >/dev/null
fi
echo "==> pytest (PostgreSQL on $PG_PORT, Redis on $REDIS_PORT)"
python -m pytest "$@"
