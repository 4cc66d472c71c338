#!/usr/bin/env bash
# supervise.sh start|stop|status: every process of deploy/processes.txt under supervisord.
#
# supervisord (a well-kept process manager, from PyPI) restarts a crashed process: at once after it had
# run for START_SECONDS, and after 1, 2, 3 ... s while it keeps failing sooner, up to START_RETRIES; each
# exit and start is logged in supervisord.log, from which `status` counts restarts. The processes get this
# script's environment plus their own settings column, so tests can run a second stack beside `make run`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SERVICES_DIR="${TOUCHLINE_SERVICES_DIR:-$TOUCHLINE_RUN_DIR/services}"
CONF="$SERVICES_DIR/supervisord.conf"
START_SECONDS="${TOUCHLINE_SUPERVISOR_START_SECONDS:-10}"
START_RETRIES="${TOUCHLINE_SUPERVISOR_START_RETRIES:-10}"
SUPERVISORD="$TOUCHLINE_ROOT/.venv/bin/supervisord"
SUPERVISORCTL=("$TOUCHLINE_ROOT/.venv/bin/supervisorctl" -c "$CONF")

write_conf() {
  mkdir -p "$SERVICES_DIR"
  cat >"$CONF.new" <<CONF
[unix_http_server]
file=$SERVICES_DIR/supervisor.sock
chmod=0700

[supervisord]
logfile=$SERVICES_DIR/supervisord.log
pidfile=$SERVICES_DIR/supervisord.pid
childlogdir=$SERVICES_DIR
nodaemon=false

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$SERVICES_DIR/supervisor.sock
CONF
  local name module command url settings
  while read -r name module command url settings; do
    local environment=""
    # shellcheck disable=SC2086  # the settings column is a space-separated list of VAR=value words
    for setting in $settings; do environment+="${environment:+,}${setting%%=*}=\"${setting#*=}\""; done
    cat >>"$CONF.new" <<CONF

[program:$name]
command=$PYTHON -m $module $command
directory=$TOUCHLINE_ROOT
autorestart=true
startsecs=$START_SECONDS
startretries=$START_RETRIES
stopsignal=TERM
stopwaitsecs=30
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$SERVICES_DIR/$name.log
stdout_logfile_maxbytes=50MB
stdout_logfile_backups=2
${environment:+environment=$environment}
CONF
  done < <(processes)
  mv "$CONF.new" "$CONF"
}

running() { "${SUPERVISORCTL[@]}" pid >/dev/null 2>&1; }

wait_ready() {  # every API answers its readiness URL, or the process's log is named
  local name module command url settings
  while read -r name module command url settings; do
    [[ "$url" == "-" ]] && continue
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
      ((SECONDS < deadline)) || die "$name not ready after 60 s at $url; see $SERVICES_DIR/$name.log"
      sleep 0.5
    done
  done < <(processes)
}

start() {
  write_conf
  if running; then
    log "supervisord already running; applying deploy/processes.txt"
    "${SUPERVISORCTL[@]}" update >/dev/null
    "${SUPERVISORCTL[@]}" start all >/dev/null || true
  else
    log "starting every process under supervisord (logs: $SERVICES_DIR)"
    "$SUPERVISORD" -c "$CONF"
  fi
  wait_ready
}

stop() {
  running || return 0
  "${SUPERVISORCTL[@]}" shutdown >/dev/null
  local pidfile="$SERVICES_DIR/supervisord.pid"
  for _ in $(seq 1 80); do pid_alive "$pidfile" || break; sleep 0.5; done
  log "every process stopped"
}

status() {  # NAME STATE PID UPTIME RESTARTS, one line a process
  running || { log "nothing is running under supervisord ($SERVICES_DIR)"; return 3; }
  printf '%-22s %-9s %8s %-16s %s\n' PROCESS STATE PID UPTIME RESTARTS
  local name state rest restarts
  while read -r name state rest; do
    # Every exit supervisord did not ask for was followed by a restart (or, after too many, FATAL).
    restarts=$(grep -c "exited: $name (.*not expected)" "$SERVICES_DIR/supervisord.log" || true)
    local pid="-" uptime="-"
    [[ "$rest" =~ pid\ ([0-9]+),\ uptime\ ([0-9:]+) ]] && pid=${BASH_REMATCH[1]} uptime=${BASH_REMATCH[2]}
    printf '%-22s %-9s %8s %-16s %s\n' "$name" "$state" "$pid" "$uptime" "$restarts"
  done < <("${SUPERVISORCTL[@]}" status || true)
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
