#!/usr/bin/env bash
# Helpers for make test: make sure PostgreSQL, Redis and Chromium exist; start PostgreSQL
# and Redis on free loopback ports in a temporary directory. Sourced by scripts/test.sh.

need_packages=()
pg_bin_dir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  done
  return 1
}

ensure_packages() {
  pg_bin_dir >/dev/null || need_packages+=(postgresql)
  command -v redis-server >/dev/null || need_packages+=(redis-server)
  [ -x /usr/bin/chromium ] || need_packages+=(chromium)
  # A private Postfix + Dovecot for the MTA tests (tests/mta_fixtures.py), never a system MTA.
  [ -x /usr/sbin/postfix ] || need_packages+=(postfix)
  [ -x /usr/sbin/dovecot ] || need_packages+=(dovecot-core)
  # PEC receipts' signatures are verified with openssl cms (backchannel/pecsignature.py).
  command -v openssl >/dev/null || need_packages+=(openssl)
  [ -x /usr/lib/dovecot/imap ] || need_packages+=(dovecot-imapd)
  if [ ${#need_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing ${need_packages[*]}"
      echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
      # apt may start the packages' system services: the tests run their own instances.
      for svc in postfix dovecot; do
        if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
      done
    else
      echo "error: the tests need ${need_packages[*]}; install them (Debian: apt-get install ${need_packages[*]})" >&2
      exit 1
    fi
  fi
}

free_port() {
  "${VENV_PY:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_postgres() {
  local bin; bin="$(pg_bin_dir)"
  PG_DIR="$SERVICES_DIR/pg"
  PG_PORT="$(free_port)"
  mkdir -p "$PG_DIR"
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$PG_DIR"
    chmod 711 "$SERVICES_DIR"
    run_as=(runuser -u postgres --)
  fi
  "${run_as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$SERVICES_DIR/initdb.log" 2>&1 \
    || { cat "$SERVICES_DIR/initdb.log" >&2; exit 1; }
  "${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
  PG_CTL=("${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data")
  # The database fault tests restart this server (tests/fault/test_database_blips.py).
  export PSICOGEST_TEST_PG_CTL="${PG_CTL[*]} -l $PG_DIR/server.log"
  "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres psicogest
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/psicogest"
}

start_redis() {
  REDIS_PORT="$(free_port)"
  mkdir -p "$SERVICES_DIR/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SERVICES_DIR/redis" \
    --save "" --appendonly no --daemonize yes --pidfile "$SERVICES_DIR/redis/redis.pid" \
    --logfile "$SERVICES_DIR/redis/redis.log" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export REDIS_SERVER_BIN="$(command -v redis-server)"
}

stop_services() {
  if [ -n "${REDIS_PORT:-}" ]; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
  if [ -n "${PG_CTL:-}" ]; then "${PG_CTL[@]}" -m immediate stop >/dev/null 2>&1 || true; fi
  if [ -n "${SERVICES_DIR:-}" ]; then rm -rf "$SERVICES_DIR"; fi
}

# Everything a test or benchmark run needs, in one call from a script run at the project
# root: the venv with the test lock, the OS packages, PostgreSQL and Redis in a temporary
# directory (stopped on exit), and the environment pointing at them.
start_services() {
  local name="$1"
  scripts/bootstrap.sh test
  VENV_PY="$PWD/.venv/bin/python"
  ensure_packages
  SERVICES_DIR="$(mktemp -d "/tmp/psicogest-$name.XXXXXX")"
  trap stop_services EXIT INT TERM
  start_postgres
  start_redis
  export PSICOGEST_VAR_DIR="$SERVICES_DIR/var"
  export DJANGO_ENV=development
  export PATH="$PWD/.venv/bin:$PATH"
}
