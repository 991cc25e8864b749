#!/usr/bin/env bash
# Installs (when missing), starts, stops the real servers the integration tests talk to, on loopback.
#
#   scripts/services.sh start NAME…   start each; print its connection settings as KEY=VALUE lines
#   scripts/services.sh stop NAME…    stop each
#   scripts/services.sh env NAME…     print the settings of running servers again
#
# NAME: one of scripts/services/*.sh (nats: nats-server with JetStream; …).
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
  [[ -f "$1" ]] || return 1
  local pid state; pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed server whose parent has not reaped it yet still answers kill -0: not running.
  state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)"
  [[ "$state" != Z ]]
}

# ---- dispatch ---------------------------------------------------------------------------------
# One file per service under scripts/services/NAME.sh, defining start_NAME, stop_NAME and env_NAME.
SERVICES=()
for f in "$ROOT"/scripts/services/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
  SERVICES+=("$(basename "$f" .sh)")
done
cmd="${1:-}"; shift || true
if [[ -z "$cmd" || $# -eq 0 ]]; then
  echo "usage: $0 start|stop|env NAME…   (NAME: ${SERVICES[*]})" >&2; exit 2
fi
for name in "$@"; do
  case "$cmd" in
    start|stop|env) ;;
    *) echo "services: unknown command: $cmd" >&2; exit 2 ;;
  esac
  if ! declare -F "${cmd}_${name}" >/dev/null; then
    echo "services: unknown service: $name (known: ${SERVICES[*]})" >&2; exit 2
  fi
  "${cmd}_${name}"
done
