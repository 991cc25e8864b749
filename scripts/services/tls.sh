# tls: the test certificates every TLS listener of the services uses, made once per state directory
# with openssl: one throwaway CA, a server certificate for localhost/127.0.0.1 signed by it, a client
# certificate signed by it (for mutual TLS), and an unrelated CA (for "wrong CA" tests). Sourced by
# scripts/services.sh; defines tls_files (called by the nats, mosquitto, redis and rabbitmq services)
# and start_tls, stop_tls, env_tls.
# ---- tls --------------------------------------------------------------------------------------
TLS_DIR="$STATE/tls"

# Makes the files under $TLS_DIR when missing; prints nothing.
tls_files() {
  local d="$TLS_DIR"
  [[ -f "$d/client.pem" && -f "$d/other-ca.pem" ]] && return 0
  command -v openssl >/dev/null 2>&1 || {
    log "installing openssl (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >&2
  }
  mkdir -p "$d"
  chmod 755 "$d"
  local ca
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice test $ca" \
      -keyout "$d/$ca.key" -out "$d/$ca.pem" >/dev/null 2>&1
  done
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$d/server.ext"
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$d/client.ext"
  local who
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=sluice-$who" \
      -keyout "$d/$who.key" -out "$d/$who.csr" >/dev/null 2>&1
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 3650 -extfile "$d/$who.ext" -out "$d/$who.pem" >/dev/null 2>&1
  done
  # Servers that drop root (mosquitto) read their key as another user; test material only.
  chmod 644 "$d"/*.pem "$d"/*.key
}

env_tls() {
  echo "TLS_CA_FILE=$TLS_DIR/ca.pem"
  echo "TLS_OTHER_CA_FILE=$TLS_DIR/other-ca.pem"
  echo "TLS_CLIENT_CERT_FILE=$TLS_DIR/client.pem"
  echo "TLS_CLIENT_KEY_FILE=$TLS_DIR/client.key"
}

start_tls() {
  tls_files
  env_tls
}

stop_tls() { :; }
