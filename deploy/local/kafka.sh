#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode, assembled from Maven Central and run with java on 127.0.0.1.
#   kafka.sh provision   resolve the broker's jars once into the cache (a second run downloads nothing)
#   kafka.sh start       provision, format storage on first start, start, wait until ready
#   kafka.sh stop        stop the broker this folder started
#   kafka.sh status      exit 0 when it runs
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LIBS="$TOUCHLINE_CACHE_DIR/kafka-$TOUCHLINE_KAFKA_VERSION/libs"
KAFKA_DIR="$TOUCHLINE_RUN_DIR/kafka"
PIDFILE="$KAFKA_DIR/kafka.pid"
PROPS="$KAFKA_DIR/server.properties"

provision() {
  [[ -f "$LIBS/.complete" ]] && return 0
  need java "Install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)."
  need mvn "Install Apache Maven (Debian: apt-get install -y maven)."
  log "resolving Kafka $TOUCHLINE_KAFKA_VERSION from Maven Central into $LIBS"
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -f "$TOUCHLINE_ROOT/deploy/local/kafka-pom.xml" \
    -Dkafka.version="$TOUCHLINE_KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" \
    || die "mvn could not resolve org.apache.kafka:kafka_2.13:$TOUCHLINE_KAFKA_VERSION"
  touch "$LIBS/.complete"
}

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$PROPS" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$TOUCHLINE_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$TOUCHLINE_KAFKA_PORT,CONTROLLER://127.0.0.1:$TOUCHLINE_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$TOUCHLINE_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
# One broker: internal topics cannot have more than one replica, or groups and transactions never start.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
offsets.topic.num.partitions=6
transaction.state.log.num.partitions=6
# Tests create many short-lived groups; waiting 3 s for more members only slows them down.
group.initial.rebalance.delay.ms=0
# Leave CPU to the Python workers on a 2-core machine.
num.network.threads=2
num.io.threads=4
# Topics are created by code from shared/topics.py; a typo must not silently create a topic.
auto.create.topics.enable=false
PROPS
}

format_storage() {
  [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return 0
  log "formatting KRaft storage in $KAFKA_DIR/data"
  local cluster_id
  cluster_id=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
  java -cp "$LIBS/*" -Dlog4j2.configurationFile="$TOUCHLINE_ROOT/deploy/local/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >"$KAFKA_DIR/format.log" 2>&1 \
    || die "formatting Kafka storage failed; see $KAFKA_DIR/format.log"
}

start() {
  provision
  if pid_alive "$PIDFILE"; then log "Kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if wait_for_port "$TOUCHLINE_KAFKA_PORT" 0; then
    die "port $TOUCHLINE_KAFKA_PORT is taken by another process; set TOUCHLINE_KAFKA_PORT"
  fi
  write_config
  format_storage
  log "starting Kafka $TOUCHLINE_KAFKA_VERSION on 127.0.0.1:$TOUCHLINE_KAFKA_PORT"
  : >"$KAFKA_DIR/server.log"
  setsid java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOUCHLINE_ROOT/deploy/local/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$KAFKA_DIR/server.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + ${TOUCHLINE_KAFKA_START_TIMEOUT:-120}))
  until grep -q "Kafka Server started" "$KAFKA_DIR/server.log" 2>/dev/null; do
    pid_alive "$PIDFILE" || die "Kafka exited during start; see $KAFKA_DIR/server.log"
    ((SECONDS < deadline)) || die "Kafka not ready after ${TOUCHLINE_KAFKA_START_TIMEOUT:-120} s; see $KAFKA_DIR/server.log"
    sleep 0.5
  done
  log "Kafka ready (logs: $KAFKA_DIR/server.log)"
}

case "${1:-}" in
  provision) provision ;;
  start) start ;;
  stop) stop_pidfile "$PIDFILE" Kafka ;;
  status) pid_alive "$PIDFILE" ;;
  *) die "usage: $0 provision|start|stop|status" ;;
esac
