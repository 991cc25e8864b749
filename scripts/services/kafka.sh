# Apache Kafka, single node in KRaft mode (one process is broker and controller), from Maven Central
# through the pom in integration-tests/kafka/ (jars cached under $CACHE/kafka-<version>/libs, so a warm
# start only formats storage and starts the JVM). No Docker. Sourced by scripts/services.sh.
# Defines start_kafka, stop_kafka, env_kafka. Listens on 127.0.0.1 on free ports (chosen at start,
# remembered in $STATE/kafka/ports); stop kills it and removes its data.
# ---- kafka ------------------------------------------------------------------------------------
KAFKA_VERSION=4.1.1

kafka_libs() {
  local libs="$CACHE/kafka-$KAFKA_VERSION/libs"
  if [[ ! -f "$libs/.complete" ]]; then
    command -v mvn >/dev/null || { log "kafka: Maven (mvn) and a JDK are needed (scripts/setup)"; exit 1; }
    mkdir -p "$CACHE/kafka-$KAFKA_VERSION"
    # Two runs starting at once must not both download into the same directory.
    exec 8>"$CACHE/kafka-$KAFKA_VERSION/.lock"
    flock 8
    if [[ ! -f "$libs/.complete" ]]; then
      log "downloading Apache Kafka $KAFKA_VERSION jars from Maven Central"
      rm -rf "$libs"
      (cd "$ROOT/integration-tests/kafka" &&
        mvn -q -B dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
          -DincludeScope=runtime -DoutputDirectory="$libs" >&2)
      touch "$libs/.complete"
    fi
    exec 8>&-
  fi
  echo "$libs"
}

kafka_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

env_kafka() {
  local dir="$STATE/kafka"
  [[ -f "$dir/ports" ]] || { log "kafka is not running"; return 1; }
  local port; port="$(cut -d' ' -f1 "$dir/ports")"
  echo "KAFKA_BROKERS=127.0.0.1:$port"
}

start_kafka() {
  local dir="$STATE/kafka" libs
  libs="$(kafka_libs)"
  mkdir -p "$dir"
  if running "$dir/pid" && [[ -f "$dir/ports" ]]; then
    log "kafka already running (pid $(cat "$dir/pid"))"
    env_kafka
    return 0
  fi
  rm -rf "$dir/data" "$dir/pid" "$dir/ports"
  local port cport
  port="$(kafka_free_port)"
  cport="$(kafka_free_port)"
  while [[ "$cport" == "$port" ]]; do cport="$(kafka_free_port)"; done
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.segment.bytes=67108864
PROPS
  local java_opts=(-Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.showDateTime=true
    -cp "$libs/*")
  java "${java_opts[@]}" kafka.tools.StorageTool format -t "sluice-test-cluster" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
    { log "kafka storage format failed; its log:"; tail -20 "$dir/format.log" >&2; exit 1; }
  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$port (controller $cport)"
  nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  echo "$port $cport" >"$dir/ports"
  if ! wait_port 127.0.0.1 "$port" 90; then
    log "kafka did not start; its log:"; tail -30 "$dir/server.log" >&2
    stop_kafka; exit 1
  fi
  env_kafka
}

stop_kafka() {
  local dir="$STATE/kafka"
  if running "$dir/pid"; then
    local pid; pid="$(cat "$dir/pid")"
    kill "$pid" 2>/dev/null || true
    # A controlled shutdown takes a few seconds; do not leave a JVM behind.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped kafka"
  fi
  rm -rf "$dir/pid" "$dir/ports" "$dir/data"
}
