#!/usr/bin/env bash
# make stop: every service process, Kafka and PostgreSQL that this folder started; nothing left behind.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for pidfile in "$TOUCHLINE_RUN_DIR"/services/*.pid; do
  [[ -e "$pidfile" ]] && stop_pidfile "$pidfile" "$(basename "$pidfile" .pid)"
done
bash "$TOUCHLINE_ROOT/deploy/local/kafka.sh" stop
bash "$TOUCHLINE_ROOT/deploy/local/postgres.sh" stop
