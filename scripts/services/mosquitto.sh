# mosquitto: the MQTT broker from Debian (apt package mosquitto), anonymous, bound to loopback, with
# persistence on so QoS 1 sessions (clean_session false) keep their queued messages. Sourced by
# scripts/services.sh; defines start_mosquitto, stop_mosquitto, env_mosquitto. Two more listeners
# speak MQTT over TLS with the certificates of scripts/services/tls.sh: MQTTS_URL (server
# authentication only) and MQTTS_MTLS_URL (a client certificate signed by the test CA required).
# ---- mosquitto --------------------------------------------------------------------------------
MOSQUITTO_PORT="${SLUICE_MOSQUITTO_PORT:-11883}"
MOSQUITTO_TLS_PORT="${SLUICE_MOSQUITTO_TLS_PORT:-18883}"
MOSQUITTO_MTLS_PORT="${SLUICE_MOSQUITTO_MTLS_PORT:-18884}"

mosquitto_bin() {
  if [[ ! -x /usr/sbin/mosquitto ]] && ! command -v mosquitto >/dev/null 2>&1; then
    log "installing mosquitto (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto >&2
  fi
  if [[ -x /usr/sbin/mosquitto ]]; then echo /usr/sbin/mosquitto; else command -v mosquitto; fi
}

env_mosquitto() {
  echo "MQTT_URL=tcp://127.0.0.1:$MOSQUITTO_PORT"
  # Tests that stop and restart a broker start a private one of their own with this binary.
  echo "MOSQUITTO_BIN=$(mosquitto_bin)"
  echo "MQTTS_URL=ssl://127.0.0.1:$MOSQUITTO_TLS_PORT"
  echo "MQTTS_MTLS_URL=ssl://127.0.0.1:$MOSQUITTO_MTLS_PORT"
  env_tls
}

start_mosquitto() {
  local dir="$STATE/mosquitto" bin
  bin="$(mosquitto_bin)"
  mkdir -p "$dir/data"
  if running "$dir/pid"; then
    log "mosquitto already running (pid $(cat "$dir/pid"))"
  else
    tls_files
    cat >"$dir/mosquitto.conf" <<CONF
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/data/
autosave_interval 1

listener $MOSQUITTO_TLS_PORT 127.0.0.1
cafile $TLS_DIR/ca.pem
certfile $TLS_DIR/server.pem
keyfile $TLS_DIR/server.key
require_certificate false

listener $MOSQUITTO_MTLS_PORT 127.0.0.1
cafile $TLS_DIR/ca.pem
certfile $TLS_DIR/server.pem
keyfile $TLS_DIR/server.key
require_certificate true
CONF
    # The Debian package runs as the mosquitto user when started as root; let it write its data.
    if id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$dir/data"; fi
    log "starting mosquitto on 127.0.0.1:$MOSQUITTO_PORT"
    nohup "$bin" -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! wait_port 127.0.0.1 "$MOSQUITTO_PORT" 30 || ! wait_port 127.0.0.1 "$MOSQUITTO_TLS_PORT" 10 \
      || ! wait_port 127.0.0.1 "$MOSQUITTO_MTLS_PORT" 10; then
      log "mosquitto did not start; its log:"; tail -20 "$dir/server.log" >&2; exit 1
    fi
  fi
  env_mosquitto
}

stop_mosquitto() {
  local dir="$STATE/mosquitto"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped mosquitto"
  fi
  rm -f "$dir/pid"
}
