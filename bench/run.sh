#!/usr/bin/env bash
# Run a benchmark (default bench/report.py) against a throw-away PostgreSQL and Redis started like `make test` does
# (scripts/services.sh), then stop it.
# Usage: bench/run.sh [bench/report.py | bench/send_batch.py [--invoices N --concurrency N]]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
VENV_PY="$PWD/.venv/bin/python"
source scripts/services.sh
ensure_packages

SERVICES_DIR="$(mktemp -d /tmp/psicogest-bench.XXXXXX)"
trap stop_services EXIT INT TERM
start_postgres
start_redis  # the settings expect a broker URL; nothing is enqueued
export PSICOGEST_VAR_DIR="$SERVICES_DIR/var"
export DJANGO_ENV=development
export DJANGO_DEBUG=false
"$VENV_PY" "${1:-bench/report.py}" "${@:2}"
