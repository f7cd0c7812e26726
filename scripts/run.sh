#!/usr/bin/env bash
# make run: set up and start PsicoGest on the embedded default — SQLite, the embedded
# Celery broker (or Redis when REDIS_URL is set), a local SMTP test server — with demo data.
# Ctrl-C stops every process started here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh base
export PATH="$PWD/.venv/bin:$PATH"
export DJANGO_ENV="${DJANGO_ENV:-development}"
if [ "$DJANGO_ENV" = production ]; then
  echo "make run is the development setup; see README for production" >&2
  exit 1
fi
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
SMTP_PORT="${LOCAL_SMTP_PORT:-1025}"
VAR="${PSICOGEST_VAR_DIR:-$PWD/var}"
mkdir -p "$VAR/logs"

python manage.py migrate --noinput -v 0
python manage.py seed_demo

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A worker finishes the message in hand first; give up waiting after 15 seconds.
  for _ in $(seq 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do pkill -KILL -P "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

python manage.py run_smtp_test_server --host 127.0.0.1 --port "$SMTP_PORT" \
  >"$VAR/logs/smtp.log" 2>&1 &
pids+=($!)
celery -A psicogest worker --beat --loglevel=INFO --concurrency=2 \
  --schedule="$VAR/celerybeat-schedule" --without-gossip --without-mingle \
  >"$VAR/logs/worker.log" 2>&1 &
pids+=($!)
python manage.py runserver --noreload "$HOST:$PORT" >"$VAR/logs/web.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  if python - "$HOST" "$PORT" <<'PY' 2>/dev/null
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()
PY
  then break; fi
  sleep 0.2
done

cat <<MSG

  PsicoGest è pronto:  http://$HOST:$PORT/
  Accesso demo:        demo@psicogest.test  /  demo

  Server SMTP di test: 127.0.0.1:$SMTP_PORT (STARTTLS, qualsiasi utente e password)
                       posta ricevuta in $VAR/devsmtp/mailbox/
  Smart Mail (locale): file .eml in $VAR/smartmail/
  Log:                 $VAR/logs/ (web.log, worker.log, smtp.log)

  Ctrl-C per fermare tutto.
MSG
wait -n "${pids[@]}" || true
echo "a process stopped; see $VAR/logs/" >&2
