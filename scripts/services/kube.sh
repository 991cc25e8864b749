# A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager
# (garbage collection, Deployment/ReplicaSet, namespace and service-account controllers), built
# from the Go module proxy through the wrapper module integration-tests/kube/ (see its README.md).
# No kubelet and no scheduler: pods are stored but stay Pending. Sourced by scripts/services.sh.
# Defines start_kube, stop_kube, env_kube.
#
# Authentication is a static token file: KUBE_TOKEN is an administrator (group system:masters),
# KUBE_DENIED_TOKEN a user with no RBAC rights at all (every request but discovery is forbidden).
# ---- kube -------------------------------------------------------------------------------------
KUBE_VERSION=1.37.2
KUBE_API_PORT="${SLUICE_KUBE_API_PORT:-16443}"
KUBE_ETCD_PORT="${SLUICE_KUBE_ETCD_PORT:-12379}"
KUBE_ETCD_PEER_PORT="${SLUICE_KUBE_ETCD_PEER_PORT:-12380}"
KUBE_CM_PORT="${SLUICE_KUBE_CM_PORT:-20257}"
# Fixed test tokens: the server only listens on loopback and lives as long as the test run.
KUBE_ADMIN_TOKEN="${SLUICE_KUBE_TOKEN:-sluice-admin-token}"
KUBE_NOBODY_TOKEN="${SLUICE_KUBE_DENIED_TOKEN:-sluice-nobody-token}"
# The node of scripts/services/node.sh reaches the API server at this address (the host end of its
# veth, forwarded to 127.0.0.1), and its pods through the `kubernetes` Service's cluster IP: both are
# in the serving certificate.
KUBE_NODE_ACCESS_IP=10.250.250.1
KUBE_SERVICE_CIDR=10.96.0.0/16
KUBE_SERVICE_IP=10.96.0.1

kube_bin_dir() {
  echo "$CACHE/kube-v$KUBE_VERSION/bin"
}

# Builds the three binaries once per version into the cache (minutes on 2 cores; modules and the
# Go build cache also live under $CACHE so a rebuild after a version bump reuses most of the work).
kube_build() {
  local bin; bin="$(kube_bin_dir)"
  if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/etcd" ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "kube: the Go toolchain is needed to build kube-apiserver (scripts/setup)"; exit 1; }
  mkdir -p "$CACHE/go"
  # Two test runs starting at once must not both build: the second waits for the first.
  exec 9>"$CACHE/go/kube-build.lock"
  flock 9
  if [[ ! -x "$bin/kube-apiserver" || ! -x "$bin/kube-controller-manager" || ! -x "$bin/etcd" ]]; then
    log "building kube-apiserver, kube-controller-manager and etcd v$KUBE_VERSION from the Go module proxy (cold: several minutes)"
    local tmp started=$SECONDS v=k8s.io/component-base/version
    tmp="$(mktemp -d "$CACHE/go/kube-bin.XXXXXX")"
    (
      cd "$ROOT/integration-tests/kube" || exit 1
      export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=readonly
      # Version stamps as the release build sets them, so clients see v1.X.Y, not v0.0.0-master.
      nice go build -trimpath \
        -ldflags "-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=${KUBE_VERSION%%.*} -X $v.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $v.gitTreeState=clean" \
        -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager go.etcd.io/etcd/server/v3
    ) >&2
    # go build names the binary of a .../server/v3 main package after `server`.
    mv "$tmp/server" "$tmp/etcd"
    chmod 755 "$tmp"
    mkdir -p "$(dirname "$bin")"
    rm -rf "$bin"
    mv "$tmp" "$bin"
    log "built kube v$KUBE_VERSION in $((SECONDS - started))s"
  fi
  exec 9>&-
}

kube_dir() {
  echo "$STATE/kube"
}

# A CA, a serving certificate for 127.0.0.1/localhost signed by it (rustls refuses a self-signed CA
# as a server certificate), the service-account signing key pair, the token file and a kubeconfig.
kube_credentials() {
  local dir="$1" pki="$1/pki"
  mkdir -p "$pki"
  if [[ ! -f "$pki/ca.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice-test-ca" \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  fi
  local ext
  ext="$(printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$KUBE_NODE_ACCESS_IP" "$KUBE_SERVICE_IP")"
  # A certificate made with other names (an older version of this script) or by another CA is made
  # again; a running kube-apiserver picks the new files up by itself.
  if [[ ! -f "$pki/apiserver.crt" || "$pki/ca.crt" -nt "$pki/apiserver.crt" ||
    "$(cat "$pki/apiserver.ext" 2>/dev/null)" != "$ext" ]]; then
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$pki/apiserver.ext"
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  fi
  if [[ ! -f "$pki/sa.key" ]]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
  # token,user,uid,"group1,group2"
  printf '%s,sluice-admin,sluice-admin,"system:masters"\n%s,sluice-nobody,sluice-nobody\n' \
    "$KUBE_ADMIN_TOKEN" "$KUBE_NOBODY_TOKEN" >"$pki/tokens.csv"
  kube_write_kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$KUBE_API_PORT" "$pki/ca.crt"
}

# A kubeconfig for the administrator at SERVER (the API server's URL as the client reaches it),
# trusting the CA certificate CA.
kube_write_kubeconfig() { # file server ca
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-test
  cluster:
    server: $2
    certificate-authority: $3
users:
- name: sluice-admin
  user:
    token: $KUBE_ADMIN_TOKEN
contexts:
- name: sluice-test
  context: {cluster: sluice-test, user: sluice-admin, namespace: default}
current-context: sluice-test
EOF
}

kube_ready() { # seconds
  local deadline=$((SECONDS + $1)) dir; dir="$(kube_dir)"
  while ((SECONDS < deadline)); do
    running "$dir/apiserver.pid" || return 1
    if [[ "$(curl -sS --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" \
      "https://127.0.0.1:$KUBE_API_PORT/readyz" 2>/dev/null)" == ok ]]; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

kube_fail() { # what logfile
  log "kube: $1 did not start; its log:"; tail -30 "$2" >&2
  stop_kube
  exit 1
}

env_kube() {
  local dir; dir="$(kube_dir)"
  echo "KUBECONFIG=$dir/kubeconfig"
  echo "KUBE_API_URL=https://127.0.0.1:$KUBE_API_PORT"
  echo "KUBE_TOKEN=$KUBE_ADMIN_TOKEN"
  echo "KUBE_DENIED_TOKEN=$KUBE_NOBODY_TOKEN"
  echo "KUBE_CA_FILE=$dir/pki/ca.crt"
}

start_kube() {
  local dir bin started=$SECONDS
  dir="$(kube_dir)"
  kube_build
  bin="$(kube_bin_dir)"
  mkdir -p "$dir"
  kube_credentials "$dir"

  if running "$dir/etcd.pid"; then
    log "etcd already running (pid $(cat "$dir/etcd.pid"))"
  else
    log "starting etcd on 127.0.0.1:$KUBE_ETCD_PORT"
    # --unsafe-no-fsync: test data only; a crash loses nothing the tests need.
    nohup "$bin/etcd" --name sluice-test --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$KUBE_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$KUBE_ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$KUBE_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
      --initial-cluster "sluice-test=http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
      --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    wait_port 127.0.0.1 "$KUBE_ETCD_PORT" 30 || kube_fail etcd "$dir/etcd.log"
  fi

  if running "$dir/apiserver.pid"; then
    log "kube-apiserver already running (pid $(cat "$dir/apiserver.pid"))"
  else
    log "starting kube-apiserver on 127.0.0.1:$KUBE_API_PORT"
    # The service CIDR is bookkeeping only unless scripts/services/node.sh runs a node. No endpoint
    # reconciler: it refuses a loopback advertise address; node.sh writes the `kubernetes` Service's
    # endpoints itself. Kubelets are reached at their InternalIP (a node name does not resolve here).
    nohup "$bin/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$KUBE_ETCD_PORT" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_API_PORT" \
      --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
      --cert-dir "$dir/pki" \
      --token-auth-file "$dir/pki/tokens.csv" --anonymous-auth=false --client-ca-file "$dir/pki/ca.crt" \
      --authorization-mode RBAC \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
      --service-cluster-ip-range "$KUBE_SERVICE_CIDR" \
      --allow-privileged=true \
      --endpoint-reconciler-type none \
      --kubelet-preferred-address-types InternalIP \
      >"$dir/apiserver.log" 2>&1 &
    echo $! >"$dir/apiserver.pid"
  fi
  kube_ready 120 || kube_fail kube-apiserver "$dir/apiserver.log"

  if running "$dir/controller-manager.pid"; then
    log "kube-controller-manager already running (pid $(cat "$dir/controller-manager.pid"))"
  else
    log "starting kube-controller-manager"
    nohup "$bin/kube-controller-manager" \
      --kubeconfig "$dir/kubeconfig" \
      --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$KUBE_CM_PORT" --cert-dir "$dir/pki/cm" \
      --leader-elect=false \
      --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
      --use-service-account-credentials=false \
      --service-cluster-ip-range "$KUBE_SERVICE_CIDR" \
      >"$dir/controller-manager.log" 2>&1 &
    echo $! >"$dir/controller-manager.pid"
    wait_port 127.0.0.1 "$KUBE_CM_PORT" 60 || kube_fail kube-controller-manager "$dir/controller-manager.log"
  fi
  log "kube ready in $((SECONDS - started))s"
  env_kube
}

stop_kube() {
  local dir name; dir="$(kube_dir)"
  # Reverse order: the clients of the API server first, etcd last.
  for name in controller-manager apiserver etcd; do
    if running "$dir/$name.pid"; then
      local pid; pid="$(cat "$dir/$name.pid")"
      kill "$pid" 2>/dev/null || true
      # Wait a little so a following start does not find the port still taken.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "stopped kube $name"
    fi
    rm -f "$dir/$name.pid"
  done
}
