#!/usr/bin/env bash
# Apache Kafka in KRaft mode, assembled from Maven Central and run with java on 127.0.0.1: one node for
# `make run` and `make test`, or TOUCHLINE_KAFKA_NODES (3 for `make cluster`) combined broker-controllers.
#   kafka.sh provision      resolve the broker's jars once into the cache (a second run downloads nothing)
#   kafka.sh start          provision, format storage on first start, start every node, wait until ready
#   kafka.sh stop           stop every node this folder started
#   kafka.sh status         exit 0 when every node runs
#   kafka.sh start-node N   start node N (1-based) alone; stop-node N: stop it (fault tests)
# Node N listens on TOUCHLINE_KAFKA_PORT + N - 1, its controller on TOUCHLINE_KAFKA_CONTROLLER_PORT + N - 1.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LIBS="$TOUCHLINE_CACHE_DIR/kafka-$TOUCHLINE_KAFKA_VERSION/libs"
KAFKA_DIR="$TOUCHLINE_RUN_DIR/kafka"
NODES="${TOUCHLINE_KAFKA_NODES:-1}"
# Internal topics get as many replicas as the cluster can hold (at most 3), and survive one node down.
INTERNAL_REPLICAS=$((NODES < 3 ? NODES : 3))
INTERNAL_MIN_ISR=$((INTERNAL_REPLICAS > 1 ? 2 : 1))

node_dir() { if ((NODES == 1)); then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR/node-$1"; fi; }
node_port() { echo $((TOUCHLINE_KAFKA_PORT + $1 - 1)); }
controller_port() { echo $((TOUCHLINE_KAFKA_CONTROLLER_PORT + $1 - 1)); }
voters() {
  local node list=""
  for node in $(seq 1 "$NODES"); do list+="${list:+,}$node@127.0.0.1:$(controller_port "$node")"; done
  echo "$list"
}

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

write_config() {  # write_config NODE
  local dir port controller
  dir=$(node_dir "$1") port=$(node_port "$1") controller=$(controller_port "$1")
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# Internal topics cannot have more replicas than nodes, or groups and transactions never start.
offsets.topic.replication.factor=$INTERNAL_REPLICAS
transaction.state.log.replication.factor=$INTERNAL_REPLICAS
transaction.state.log.min.isr=$INTERNAL_MIN_ISR
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

format_storage() {  # format_storage NODE CLUSTER_ID
  local dir
  dir=$(node_dir "$1")
  [[ -f "$dir/data/meta.properties" ]] && return 0
  log "formatting KRaft storage in $dir/data"
  java -cp "$LIBS/*" -Dlog4j2.configurationFile="$TOUCHLINE_ROOT/deploy/local/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$dir" \
    kafka.tools.StorageTool format -t "$2" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || die "formatting Kafka storage failed; see $dir/format.log"
}

cluster_id() {  # one id for every node, kept beside them
  local file="$KAFKA_DIR/cluster.id"
  mkdir -p "$KAFKA_DIR"
  [[ -f "$file" ]] || java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid >"$file"
  cat "$file"
}

launch() {  # launch NODE: start its JVM unless it runs
  local dir pidfile port
  dir=$(node_dir "$1") pidfile="$(node_dir "$1")/kafka.pid" port=$(node_port "$1")
  if pid_alive "$pidfile"; then log "Kafka node $1 already running (pid $(cat "$pidfile"))"; return 0; fi
  if wait_for_port "$port" 0; then
    die "port $port is taken by another process; set TOUCHLINE_KAFKA_PORT"
  fi
  write_config "$1"
  format_storage "$1" "$(cluster_id)"
  log "starting Kafka $TOUCHLINE_KAFKA_VERSION node $1 on 127.0.0.1:$port"
  : >"$dir/server.log"
  setsid java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOUCHLINE_ROOT/deploy/local/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$dir" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

wait_started() {  # wait_started NODE
  local dir pidfile deadline=$((SECONDS + ${TOUCHLINE_KAFKA_START_TIMEOUT:-120}))
  dir=$(node_dir "$1") pidfile="$(node_dir "$1")/kafka.pid"
  until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
    pid_alive "$pidfile" || die "Kafka node $1 exited during start; see $dir/server.log"
    ((SECONDS < deadline)) || die "Kafka node $1 not ready after ${TOUCHLINE_KAFKA_START_TIMEOUT:-120} s; see $dir/server.log"
    sleep 0.5
  done
  log "Kafka node $1 ready (logs: $dir/server.log)"
}

start() {
  provision
  local node
  # Every node first, then wait: a node of a cluster starts only once a quorum of controllers is up.
  for node in $(seq 1 "$NODES"); do launch "$node"; done
  for node in $(seq 1 "$NODES"); do wait_started "$node"; done
}

stop() {
  local node
  for node in $(seq 1 "$NODES"); do stop_pidfile "$(node_dir "$node")/kafka.pid" "Kafka node $node"; done
}

status() {
  local node
  for node in $(seq 1 "$NODES"); do pid_alive "$(node_dir "$node")/kafka.pid" || return 1; done
}

case "${1:-}" in
  provision) provision ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  start-node) provision && launch "${2:?node number}" && wait_started "$2" ;;
  stop-node) stop_pidfile "$(node_dir "${2:?node number}")/kafka.pid" "Kafka node $2" ;;
  *) die "usage: $0 provision|start|stop|status|start-node N|stop-node N" ;;
esac
