#!/usr/bin/env bash
# with-infra.sh COMMAND...: runs COMMAND with Kafka and PostgreSQL up; stops afterwards whichever
# of them it had to start, so `make test` leaves a running `make run` stack alone.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

started=()
bash "$TOUCHLINE_ROOT/deploy/local/kafka.sh" status || started+=(kafka)
bash "$TOUCHLINE_ROOT/deploy/local/postgres.sh" status || started+=(postgres)
cleanup() {
  for part in "${started[@]}"; do bash "$TOUCHLINE_ROOT/deploy/local/$part.sh" stop; done
}
trap cleanup EXIT
infra_start
"$@"
