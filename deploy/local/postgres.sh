#!/usr/bin/env bash
# Project-local PostgreSQL cluster from Debian's packages, on 127.0.0.1.
#   postgres.sh start    install the packages if absent, initdb on first start, start, wait until ready
#   postgres.sh stop     fast shutdown of this folder's cluster
#   postgres.sh status   exit 0 when it runs
#   postgres.sh createdb NAME   create a database if it does not exist
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pg_dir() {
  # The cluster belongs to the unprivileged 'postgres' user, which must reach its folder. A checkout
  # under a private home (/root) is not reachable: then the cluster lives in /var/tmp, named after it.
  mkdir -p "$TOUCHLINE_RUN_DIR"
  if [[ $(id -u) -ne 0 ]] || runuser -u postgres -- test -x "$TOUCHLINE_RUN_DIR" 2>/dev/null; then
    echo "$TOUCHLINE_RUN_DIR/postgres"
  else
    echo "/var/tmp/touchline-$(printf '%s' "$TOUCHLINE_ROOT" | cksum | cut -d' ' -f1)/postgres"
  fi
}
PG_DIR="${TOUCHLINE_PG_DIR:-$(pg_dir)}"
DATA="$PG_DIR/data"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

provision() {
  pg_bin >/dev/null && return 0
  command -v apt-get >/dev/null || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin and apt-get is unavailable; install the 'postgresql' package"
  log "installing PostgreSQL from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >"$TOUCHLINE_RUN_DIR/apt.log" 2>&1 \
    || die "apt-get install postgresql failed; see $TOUCHLINE_RUN_DIR/apt.log"
  pg_bin >/dev/null || die "PostgreSQL installed but initdb not found under /usr/lib/postgresql/*/bin"
}

as_postgres() {
  # From /: the checkout itself may be a folder the postgres user cannot enter.
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

init_cluster() {
  [[ -f "$DATA/PG_VERSION" ]] && return 0
  mkdir -p "$PG_DIR"
  if [[ $(id -u) -eq 0 ]]; then
    # initdb refuses to run as root: the cluster belongs to the package's unprivileged 'postgres' user.
    chown postgres "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" \
      || die "user 'postgres' cannot reach $PG_DIR; set TOUCHLINE_PG_DIR to a folder it can reach"
  fi
  log "initialising a PostgreSQL cluster in $DATA"
  as_postgres "$(pg_bin)/initdb" -D "$DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || die "initdb failed; see $PG_DIR/initdb.log"
}

start() {
  mkdir -p "$TOUCHLINE_RUN_DIR"
  provision
  init_cluster
  if as_postgres "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running"
    return 0
  fi
  log "starting PostgreSQL on 127.0.0.1:$TOUCHLINE_PG_PORT"
  as_postgres "$(pg_bin)/pg_ctl" -D "$DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-p $TOUCHLINE_PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null \
    || die "PostgreSQL did not start; see $PG_DIR/postgres.log"
  log "PostgreSQL ready (logs: $PG_DIR/postgres.log)"
}

stop() {
  [[ -f "$DATA/PG_VERSION" ]] || return 0
  pg_bin >/dev/null || return 0
  if as_postgres "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    log "PostgreSQL stopped"
  fi
}

createdb() {
  local name=$1 exists
  exists=$(psql -h 127.0.0.1 -p "$TOUCHLINE_PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$name'")
  [[ "$exists" == 1 ]] || psql -h 127.0.0.1 -p "$TOUCHLINE_PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE \"$name\""
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) [[ -f "$DATA/PG_VERSION" ]] && pg_bin >/dev/null && as_postgres "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1 ;;
  createdb) createdb "${2:?database name}" ;;
  *) die "usage: $0 start|stop|status|createdb NAME" ;;
esac
