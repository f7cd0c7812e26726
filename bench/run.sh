#!/usr/bin/env bash
# Run a benchmark (default bench/report.py) against a throw-away PostgreSQL and Redis,
# started like `make test` does (scripts/services.sh), then stop them.
# Usage: bench/run.sh [bench/report.py | bench/send_batch.py [--invoices N --concurrency N]]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
start_services bench
export DJANGO_DEBUG=false
"$VENV_PY" "${1:-bench/report.py}" "${@:2}"
