#!/usr/bin/env bash
# Project-local Prometheus from Debian's package, on 127.0.0.1, scraping every process of
# deploy/processes.txt (the configuration is generated from it) with deploy/prometheus/alerts.yml loaded.
#   prometheus.sh provision   install the package (prometheus and promtool) if absent
#   prometheus.sh start       provision, write the configuration, start, wait until ready
#   prometheus.sh stop        stop this folder's Prometheus
#   prometheus.sh status      exit 0 when it runs
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROM_DIR="$TOUCHLINE_RUN_DIR/prometheus"
PIDFILE="$PROM_DIR/prometheus.pid"

provision() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  command -v apt-get >/dev/null || die "prometheus and promtool not found and apt-get is unavailable; install Debian's 'prometheus' package"
  mkdir -p "$TOUCHLINE_RUN_DIR"
  log "installing Prometheus from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; } >"$TOUCHLINE_RUN_DIR/apt-prometheus.log" 2>&1 \
    || die "apt-get install prometheus failed; see $TOUCHLINE_RUN_DIR/apt-prometheus.log"
}

start() {
  provision
  mkdir -p "$PROM_DIR"
  (cd "$TOUCHLINE_ROOT" && "$PYTHON" deploy/prometheus/scrape_config.py) >"$PROM_DIR/prometheus.yml"
  promtool check config "$PROM_DIR/prometheus.yml" >"$PROM_DIR/check.log" 2>&1 \
    || die "the generated configuration does not check; see $PROM_DIR/check.log"
  if pid_alive "$PIDFILE"; then
    kill -HUP "$(cat "$PIDFILE")"  # reload: deploy/processes.txt or the rules may have changed
    log "Prometheus already running on 127.0.0.1:$TOUCHLINE_PROMETHEUS_PORT; configuration reloaded"
    return 0
  fi
  # The package's own service is not started (no systemd here): this one has its own folder and port.
  nohup prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --storage.tsdb.retention.time=7d --web.listen-address="127.0.0.1:$TOUCHLINE_PROMETHEUS_PORT" \
    --web.enable-lifecycle >"$PROM_DIR/prometheus.log" 2>&1 &
  echo $! >"$PIDFILE"
  wait_for_port "$TOUCHLINE_PROMETHEUS_PORT" 30 || die "Prometheus did not start; see $PROM_DIR/prometheus.log"
  log "Prometheus up on http://127.0.0.1:$TOUCHLINE_PROMETHEUS_PORT"
}

case "${1:-}" in
  provision) provision ;;
  start) start ;;
  stop) stop_pidfile "$PIDFILE" Prometheus ;;
  status) pid_alive "$PIDFILE" ;;
  *) die "usage: prometheus.sh provision|start|stop|status" ;;
esac
