# redis: redis-server from Debian (apt package redis-server), in memory only (no RDB, no AOF), bound to
# loopback. Sourced by scripts/services.sh; defines start_redis, stop_redis, env_redis. A second port
# speaks TLS with the certificates of scripts/services/tls.sh (REDISS_URL); client certificates are
# checked when given, not required.
# ---- redis ------------------------------------------------------------------------------------
REDIS_PORT="${SLUICE_REDIS_PORT:-16379}"
REDIS_TLS_PORT="${SLUICE_REDIS_TLS_PORT:-16380}"

redis_bin() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >&2
  fi
  command -v redis-server
}

env_redis() {
  echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  # Tests that stop and restart a server start a private one of their own with this binary.
  echo "REDIS_SERVER_BIN=$(redis_bin)"
  echo "REDISS_URL=rediss://127.0.0.1:$REDIS_TLS_PORT"
  env_tls
}

start_redis() {
  local dir="$STATE/redis" bin
  bin="$(redis_bin)"
  mkdir -p "$dir"
  if running "$dir/pid"; then
    log "redis already running (pid $(cat "$dir/pid"))"
  else
    tls_files
    log "starting redis-server on 127.0.0.1:$REDIS_PORT (TLS on $REDIS_TLS_PORT)"
    nohup "$bin" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$dir" \
      --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.pem" \
      --tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.pem" \
      --tls-auth-clients optional --daemonize no >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! wait_port 127.0.0.1 "$REDIS_PORT" 30 || ! wait_port 127.0.0.1 "$REDIS_TLS_PORT" 10; then
      log "redis-server did not start; its log:"; tail -20 "$dir/server.log" >&2; exit 1
    fi
  fi
  env_redis
}

stop_redis() {
  local dir="$STATE/redis"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped redis"
  fi
  rm -f "$dir/pid"
}
