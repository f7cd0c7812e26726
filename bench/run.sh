#!/usr/bin/env bash
# Run a benchmark (default bench/report.py) against a throw-away PostgreSQL and Redis,
# started like `make test` does (scripts/services.sh), then stop them. The SMTP sinks of
# bench/sinks.py (Postfix's smtp-sink, stunnel) are installed the same way when missing.
# Usage: bench/run.sh [bench/report.py
#                     | bench/send_batch.py [--invoices N --concurrency 1,2 --sink aiosmtpd]
#                     | bench/fairness.py [--big N --small N --each N --slots 1,2]
#                     | bench/wire.py [--messages N --latency-messages N]
#                     | bench/smartmail.py [--invoices N --in-flight 1,8 --concurrency N --delay S]
#                     | bench/peer.py [--messages N --rounds N --synchronous-commit on|off|both
#                                      --peer-venv DIR]
#                     | bench/monthend.py [--practitioners N --invoices N --probes N
#                                          --probe-every S --scenarios off,on]]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
case "${1:-}" in bench/wire.py | bench/send_batch.py | bench/fairness.py | bench/peer.py)
  [ -x /usr/sbin/smtp-sink ] || need_packages+=(postfix)
  [ -x /usr/bin/stunnel4 ] || need_packages+=(stunnel4)
  ;;
esac
start_services bench
export DJANGO_DEBUG=false
"$VENV_PY" "${1:-bench/report.py}" "${@:2}"
