# rabbitmq: RabbitMQ from Debian (apt package rabbitmq-server), one node rabbit@localhost bound to
# loopback (AMQP, Erlang distribution and its own epmd), state under $STATE. Sourced by
# scripts/services.sh; defines start_rabbitmq, stop_rabbitmq, env_rabbitmq.
# ---- rabbitmq ---------------------------------------------------------------------------------
RABBITMQ_PORT="${SLUICE_RABBITMQ_PORT:-15673}"
RABBITMQ_DIST_PORT_SLUICE="${SLUICE_RABBITMQ_DIST_PORT:-25673}"
RABBITMQ_EPMD_PORT="${SLUICE_RABBITMQ_EPMD_PORT:-14369}"
# A second listener speaking AMQP over TLS, with the certificates of scripts/services/tls.sh (for
# the amqp source's `tls` block).
RABBITMQ_TLS_PORT="${SLUICE_RABBITMQ_TLS_PORT:-15674}"

rabbitmq_bin_dir() {
  if [[ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    log "installing rabbitmq-server (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server >&2
  fi
  echo /usr/lib/rabbitmq/bin
}

# The environment every rabbitmq command of this node runs with. HOME holds the Erlang cookie, so
# rabbitmqctl finds the node the server started.
rabbitmq_env() {
  local dir="$STATE/rabbitmq"
  export HOME="$dir/home"
  export RABBITMQ_NODENAME=rabbit@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
  export RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT_SLUICE"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT"
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbit.pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
}

# Writes $STATE/rabbitmq/rabbitmqctl: rabbitmqctl with this node's environment (cookie, node name,
# epmd port), so tests can manage the node (vhosts, closing connections) without knowing it.
rabbitmqctl_wrapper() {
  local dir="$STATE/rabbitmq" bin v
  bin="$(rabbitmq_bin_dir)"
  mkdir -p "$dir"
  {
    echo '#!/usr/bin/env bash'
    echo '# Written by scripts/services/rabbitmq.sh: rabbitmqctl for the node it started.'
    (
      rabbitmq_env
      for v in HOME RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT \
        ERL_EPMD_ADDRESS ERL_EPMD_PORT RABBITMQ_MNESIA_BASE RABBITMQ_LOG_BASE RABBITMQ_PID_FILE \
        RABBITMQ_ENABLED_PLUGINS_FILE RABBITMQ_CONFIG_FILE RABBITMQ_ADVANCED_CONFIG_FILE \
        RABBITMQ_CONF_ENV_FILE; do
        printf 'export %s=%q\n' "$v" "${!v}"
      done
    )
    printf 'exec %q "$@"\n' "$bin/rabbitmqctl"
  } >"$dir/rabbitmqctl"
  chmod +x "$dir/rabbitmqctl"
  echo "$dir/rabbitmqctl"
}

env_rabbitmq() {
  echo "AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f"
  echo "AMQPS_URL=amqps://guest:guest@127.0.0.1:$RABBITMQ_TLS_PORT/%2f"
  echo "AMQPS_CA_FILE=$TLS_DIR/ca.pem"
  echo "RABBITMQCTL=$(rabbitmqctl_wrapper)"
}

start_rabbitmq() {
  local dir="$STATE/rabbitmq" bin
  bin="$(rabbitmq_bin_dir)"
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  if running "$dir/pid"; then
    log "rabbitmq already running (pid $(cat "$dir/pid"))"
  else
    : >"$dir/rabbitmq-env.conf"
    echo "[]." >"$dir/enabled_plugins"
    # The Erlang distribution port listens on loopback too (it defaults to every interface).
    echo "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}]." >"$dir/advanced.config"
    # guest may log in from loopback only (RabbitMQ's default), which is all the tests need.
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$RABBITMQ_PORT" \
      >"$dir/rabbitmq.conf"
    # TLS listener: server authentication only (clients are not asked for a certificate).
    tls_files
    printf 'listeners.ssl.default = 127.0.0.1:%s\nssl_options.cacertfile = %s\nssl_options.certfile = %s\nssl_options.keyfile = %s\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n' \
      "$RABBITMQ_TLS_PORT" "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" >>"$dir/rabbitmq.conf"
    log "starting rabbitmq on 127.0.0.1:$RABBITMQ_PORT"
    (rabbitmq_env; nohup "$bin/rabbitmq-server" >"$dir/server.log" 2>&1 & echo $! >"$dir/pid")
    if ! wait_port 127.0.0.1 "$RABBITMQ_PORT" 90 || ! wait_port 127.0.0.1 "$RABBITMQ_TLS_PORT" 30; then
      log "rabbitmq did not start; its log:"; tail -30 "$dir/server.log" >&2; exit 1
    fi
  fi
  env_rabbitmq
}

stop_rabbitmq() {
  local dir="$STATE/rabbitmq"
  if running "$dir/pid"; then
    (rabbitmq_env; "$(rabbitmq_bin_dir)/rabbitmqctl" stop >/dev/null 2>&1) || kill "$(cat "$dir/pid")"
    log "stopped rabbitmq"
  fi
  # The node's own epmd outlives it; stop it too (it serves only this node's port).
  (rabbitmq_env; epmd -port "$RABBITMQ_EPMD_PORT" -kill >/dev/null 2>&1) || true
  rm -f "$dir/pid"
}
