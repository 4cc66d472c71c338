# Shared defaults for the local (no Docker) stack. Sourced, never run.
# Every value can be overridden from the environment; README.md lists them.
set -euo pipefail

TOUCHLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export TOUCHLINE_ROOT
export TOUCHLINE_RUN_DIR="${TOUCHLINE_RUN_DIR:-$TOUCHLINE_ROOT/.run}"
export TOUCHLINE_CACHE_DIR="${TOUCHLINE_CACHE_DIR:-$TOUCHLINE_ROOT/.cache}"
export TOUCHLINE_KAFKA_PORT="${TOUCHLINE_KAFKA_PORT:-19092}"
export TOUCHLINE_KAFKA_CONTROLLER_PORT="${TOUCHLINE_KAFKA_CONTROLLER_PORT:-19093}"
export TOUCHLINE_PG_PORT="${TOUCHLINE_PG_PORT:-55432}"
export TOUCHLINE_KAFKA_VERSION="${TOUCHLINE_KAFKA_VERSION:-4.4.0}"

log() { printf '[touchline] %s\n' "$*" >&2; }
die() { printf '[touchline] error: %s\n' "$*" >&2; exit 1; }

need() {  # need COMMAND "what to install"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

pid_alive() {  # pid_alive PIDFILE
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for_port() {  # wait_for_port PORT SECONDS
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: TERM, wait, then KILL so nothing is left behind
  local pidfile=$1 name=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}

export TOUCHLINE_INGEST_PORT="${TOUCHLINE_INGEST_PORT:-8001}"
export TOUCHLINE_TIMELINE_PORT="${TOUCHLINE_TIMELINE_PORT:-8002}"
export TOUCHLINE_SEGMENTS_PORT="${TOUCHLINE_SEGMENTS_PORT:-8003}"
export TOUCHLINE_CONSENT_PORT="${TOUCHLINE_CONSENT_PORT:-8004}"
export TOUCHLINE_IDENTITY_PORT="${TOUCHLINE_IDENTITY_PORT:-8005}"
export TOUCHLINE_CONSOLE_PORT="${TOUCHLINE_CONSOLE_PORT:-8000}"
# The console is a client of the APIs, wherever this stack serves them.
export TOUCHLINE_CONSOLE_TIMELINE_URL="${TOUCHLINE_CONSOLE_TIMELINE_URL:-http://127.0.0.1:$TOUCHLINE_TIMELINE_PORT}"
export TOUCHLINE_CONSOLE_SEGMENTS_URL="${TOUCHLINE_CONSOLE_SEGMENTS_URL:-http://127.0.0.1:$TOUCHLINE_SEGMENTS_PORT}"
export TOUCHLINE_CONSOLE_CONSENT_URL="${TOUCHLINE_CONSOLE_CONSENT_URL:-http://127.0.0.1:$TOUCHLINE_CONSENT_PORT}"
export TOUCHLINE_CONSOLE_IDENTITY_URL="${TOUCHLINE_CONSOLE_IDENTITY_URL:-http://127.0.0.1:$TOUCHLINE_IDENTITY_PORT}"
export TOUCHLINE_PROMETHEUS_PORT="${TOUCHLINE_PROMETHEUS_PORT:-9090}"
# What the Python services read; derived from the ports above unless set explicitly.
export TOUCHLINE_KAFKA_BOOTSTRAP="${TOUCHLINE_KAFKA_BOOTSTRAP:-127.0.0.1:$TOUCHLINE_KAFKA_PORT}"
export TOUCHLINE_PG_DSN="${TOUCHLINE_PG_DSN:-postgresql://postgres@127.0.0.1:$TOUCHLINE_PG_PORT/touchline}"
PYTHON="$TOUCHLINE_ROOT/.venv/bin/python"

infra_start() {
  bash "$TOUCHLINE_ROOT/deploy/local/kafka.sh" start
  bash "$TOUCHLINE_ROOT/deploy/local/postgres.sh" start
  # promtool checks the alert rules in make test; make run starts Prometheus itself.
  bash "$TOUCHLINE_ROOT/deploy/local/prometheus.sh" provision
}

processes() {  # the lines of deploy/processes.txt (or $TOUCHLINE_PROCESSES), ${VARS} expanded, no comments
  local name module command url settings
  while read -r name module command url settings; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    printf '%s %s %s %s %s\n' "$name" "$module" "$command" "$(eval "echo \"$url\"")" "$settings"
  done <"${TOUCHLINE_PROCESSES:-$TOUCHLINE_ROOT/deploy/processes.txt}"
}
