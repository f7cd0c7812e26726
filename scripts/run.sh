#!/usr/bin/env bash
# make run: set up and start PsicoGest on the embedded default — SQLite, the embedded
# Celery broker (or Redis when REDIS_URL is set), a local SMTP test server — with demo data.
# Ctrl-C, SIGTERM or SIGHUP stop every process started here (also when a supervisor signals
# make alone, or repeats the signal), within a few seconds when idle.
set -euo pipefail
# A non-interactive shell starts `make run &` with SIGINT and SIGQUIT ignored, and a shell
# cannot trap a signal ignored at its start: start again with the default dispositions.
if [ -z "${PSICOGEST_RUN_SIGNALS_RESET:-}" ]; then
  PSICOGEST_RUN_SIGNALS_RESET=1 exec env --default-signal=INT,QUIT,TERM,HUP "$0" "$@"
fi
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
export LOCAL_IMAP_PORT="${LOCAL_IMAP_PORT:-1993}"
# Bounces and PEC receipts of the local test server show in the report within a minute or two.
export EMAILSETTINGS_MAILBOX_READ_INTERVAL_SECONDS="${EMAILSETTINGS_MAILBOX_READ_INTERVAL_SECONDS:-60}"
# The "provider di prova" behind "Accedi con il provider di prova" (local preset).
export LOCAL_OAUTH_PORT="${LOCAL_OAUTH_PORT:-8765}"
export EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL="${EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL:-http://$HOST:$PORT}"
VAR="${PSICOGEST_VAR_DIR:-$PWD/var}"
mkdir -p "$VAR/logs"

python manage.py migrate --noinput -v 0
python manage.py seed_demo

# Each service runs in a session (and process group) of its own, so that stopping reaches
# everything it started (Celery's pool, runserver's children) and nothing else.
pids=()
names=()
stopping=""
STOP_WAIT="${PSICOGEST_STOP_WAIT_SECONDS:-5}"

start_service() {  # start_service NAME COMMAND...
  local name="$1" log="$VAR/logs/$1.log"
  shift
  # Logs are kept across starts: each start appends under a header; a log over 10 MB is
  # moved to NAME.log.1 first.
  if [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt 10485760 ]; then mv -f "$log" "$log.1"; fi
  printf '\n===== %s: avvio (make run) =====\n' "$(date '+%d/%m/%Y %H:%M:%S %Z')" >>"$log"
  setsid "$@" >>"$log" 2>&1 &
  pids+=($!)
  # Watched through its pid, not as a job: no "Quit"/"Killed" notices from the shell.
  disown "$!"
  names+=("$name")
}

# Whether any process of any service's group is still there (Celery's pool and beat, not
# only the worker's main process).
alive() {
  local pid
  for pid in "${pids[@]}"; do
    ps -o stat= --sid "$pid" 2>/dev/null | grep -qv "^Z" && return 0
  done
  return 1
}

stop_services() {
  local pid
  [ -n "$stopping" ] && return
  stopping=1
  # Another signal while stopping (a supervisor repeating it to the group, GNU make passing its
  # own SIGTERM on to this script) must not cut the stop short and leave services running:
  # ignored from here on, by this script and by the helpers it runs (sleep, ps), which would
  # otherwise die of it mid-wait.
  trap '' INT TERM HUP
  echo
  echo "==> Arresto di PsicoGest…"
  # Each service's main process only: Celery's main stops its pool and beat in order (a pool
  # process signalled directly counts as lost and makes the main wait for it).
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A worker finishes the message in hand first; an idle one stops at once. After
  # $STOP_WAIT seconds the worker is told to stop without waiting (cold shutdown), then
  # whatever is left is killed.
  for _ in $(seq $((STOP_WAIT * 5))); do
    alive || break
    sleep 0.2 || true
  done
  if alive; then
    for pid in "${pids[@]}"; do kill -QUIT "$pid" 2>/dev/null || true; done
    for _ in $(seq 10); do
      alive || break
      sleep 0.2 || true
    done
  fi
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}

# Ctrl-C (or a TERM/HUP from a supervisor) is the normal way to stop: say so, calmly.
on_signal() {
  stop_services
  echo "==> PsicoGest fermato."
  exit 0
}
trap on_signal INT TERM HUP
trap stop_services EXIT

# A supervisor may send SIGINT to make alone rather than to its process group: make then waits
# for this script forever and the script is never told. While make handles that signal it
# keeps it blocked (SigBlk in /proc), which is how the signal is noticed here.
parent_is_make=""
if [ "$(cat "/proc/$PPID/comm" 2>/dev/null)" = make ]; then parent_is_make=1; fi
make_was_signalled() {
  local mask
  [ -n "$parent_is_make" ] || return 1
  mask="$(awk '/^SigBlk:/ {print $2}' "/proc/$PPID/status" 2>/dev/null)" || return 1
  [ -n "$mask" ] || return 1
  (( (16#$mask & 0x7) != 0 ))  # SIGHUP, SIGINT or SIGQUIT
}

start_service oauth python manage.py run_oauth_test_server --host 127.0.0.1 --port "$LOCAL_OAUTH_PORT"
start_service smtp python manage.py run_smtp_test_server --host 127.0.0.1 --port "$SMTP_PORT" \
  --imap-port "$LOCAL_IMAP_PORT"
start_service worker celery -A psicogest worker --beat --loglevel=INFO --concurrency=2 -Q celery,mailbox \
  --schedule="$VAR/celerybeat-schedule" --without-gossip --without-mingle
start_service web python manage.py runserver --noreload "$HOST:$PORT"

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

  Server SMTP di test: 127.0.0.1:$SMTP_PORT (STARTTLS, qualsiasi utente e password,
                       o "Accedi con il provider di prova" su 127.0.0.1:$LOCAL_OAUTH_PORT)
                       posta ricevuta in $VAR/devsmtp/mailbox/
  IMAP di test:        127.0.0.1:$LOCAL_IMAP_PORT (SSL, stesse credenziali): rimbalzi da
                       @rimbalza.test, ricevute PEC, posta inviata; in $VAR/devsmtp/caselle/
  Smart Mail (locale): file .eml in $VAR/smartmail/
  Log:                 $VAR/logs/ (web.log, worker.log, smtp.log, oauth.log)

  Ctrl-C per fermare tutto.
MSG

while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      name="${names[$i]}"
      log="$VAR/logs/$name.log"
      {
        echo
        echo "==> Il processo «$name» si è fermato da solo: gli altri vengono fermati."
        echo "    Le ultime righe di $log:"
        tail -n 15 "$log" | sed 's/^/    /'
        # A full disk is where a service's own error cannot be written: say it here.
        free_kb="$(df -Pk "$VAR/logs" 2>/dev/null | awk 'NR == 2 {print $4}')"
        if [ -n "$free_kb" ] && [ "$free_kb" -lt 1024 ]; then
          echo "==> Il disco di $VAR è pieno (${free_kb} KB liberi): «$name» non ha potuto"
          echo "    scrivere il suo log. Libera spazio e riavvia con make run."
        fi
      } >&2
      stop_services
      exit 1
    fi
  done
  if make_was_signalled; then on_signal; fi
  # In the background, so that a signal is handled at once rather than after the sleep.
  sleep 1 &
  wait $! 2>/dev/null || true
done
