#!/usr/bin/env bash
# make stop: every service process, Prometheus, Kafka and PostgreSQL that this folder started; nothing left behind.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$TOUCHLINE_ROOT/deploy/local/supervise.sh" stop
bash "$TOUCHLINE_ROOT/deploy/local/prometheus.sh" stop
bash "$TOUCHLINE_ROOT/deploy/local/kafka.sh" stop
bash "$TOUCHLINE_ROOT/deploy/local/postgres.sh" stop
