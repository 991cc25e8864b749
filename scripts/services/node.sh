# A real single-node Kubernetes for the tests, added to the control plane of kube.sh: kube-scheduler
# on the host, and containerd (Debian's, with runc), kubelet, kube-proxy and CoreDNS inside one
# network namespace of their own. Pods run there on a bridge (CNI bridge/host-local/loopback/portmap)
# and only see that namespace: it has no default route and no NAT to the outside; a veth pair joins
# it to the host, where a forwarder on the host end passes the API server's port to 127.0.0.1.
# Every image is built here and imported into containerd, never pulled: a pause image from
# Kubernetes' pause.c, Sluice's image (scripts/image), a NATS image around the nats-server of
# nats.sh, and a busybox image for test clients. Sourced by scripts/services.sh. Defines start_node,
# stop_node, env_node.
#
# The kubelet is the API server's release (1.37) with failCgroupV1: false: this machine mounts the
# cgroup v1 controllers (cgroup2 only at /sys/fs/cgroup/unified, without them), and Debian's
# containerd 1.6 is still accepted (the kubelet falls back to its own cgroupDriver setting).
#
# Builds (kubelet, kube-proxy and kube-scheduler from integration-tests/kube, the CNI plugins and a
# trimmed CoreDNS from integration-tests/node) are cached under $CACHE like kube.sh's.
# ---- node -------------------------------------------------------------------------------------
NODE_NAME=sluice-node
NODE_NETNS="${SLUICE_NODE_NETNS:-sluice-node}"
# The veth pair: the host end has KUBE_NODE_ACCESS_IP (kube.sh), the namespace end NODE_IP, a /30.
NODE_VETH_HOST=sluice-node0
NODE_IP=10.250.250.2
NODE_POD_CIDR=10.244.0.0/24
# CoreDNS listens on the node's own address; pods reach it through the bridge's gateway.
NODE_DNS_IP="$NODE_IP"
NODE_SCHEDULER_PORT="${SLUICE_KUBE_SCHEDULER_PORT:-20259}"
NODE_CNI_VERSION=v1.10.0
NODE_COREDNS_VERSION=v1.15.0
NODE_PAUSE_IMAGE="localhost/sluice/pause:v$KUBE_VERSION"
NODE_NATS_IMAGE="docker.io/library/nats:$NATS_VERSION"
# For tests that need a client inside a pod: Debian's static busybox (sh, wget, nslookup, nc, …).
NODE_TOOLS_IMAGE=localhost/sluice/busybox:debian12
# `dev` packs the debug binary the test suite builds anyway; `release` costs a release build.
NODE_SLUICE_PROFILE="${SLUICE_NODE_IMAGE_PROFILE:-dev}"
# Or pack this binary as is (another checkout's build, a release binary) and build nothing.
NODE_SLUICE_BINARY="${SLUICE_NODE_BINARY:-}"

node_dir() {
  echo "$STATE/node"
}

# Debian packages the node runs (containerd 1.6 and runc 1.1 start pods here), kube-proxy's and the
# CNI plugins' iptables and conntrack, the forwarder, gcc and a static libc for pause, and a static
# busybox for the tools image (and ip, curl, nsenter). Installed only when one is missing.
node_packages() {
  local p missing=()
  for p in containerd runc socat iptables conntrack iproute2 curl gcc libc6-dev busybox-static util-linux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ "$(id -u)" == 0 ]] || { log "node: needs root (network namespace, mounts, cgroups)"; exit 1; }
  log "node: installing ${missing[*]} (apt)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

node_kube_bin_dir() {
  echo "$CACHE/kube-v$KUBE_VERSION/node-bin"
}

node_tools_dir() {
  echo "$CACHE/node-tools/cni-$NODE_CNI_VERSION-coredns-$NODE_COREDNS_VERSION"
}

# Runs a command in the node's network namespace but in the host's mount namespace (unlike
# `ip netns exec`, which gives each command a mount namespace of its own): containerd must see the
# volumes the kubelet mounts, and stop_node must see containerd's mounts to undo them.
node_exec() {
  nsenter --net="/var/run/netns/$NODE_NETNS" -- "$@"
}

node_build_kube() {
  local bin; bin="$(node_kube_bin_dir)"
  [[ -x "$bin/kubelet" && -x "$bin/kube-proxy" && -x "$bin/kube-scheduler" ]] && return 0
  command -v go >/dev/null || { log "node: the Go toolchain is needed (scripts/setup)"; exit 1; }
  mkdir -p "$CACHE/go"
  exec 9>"$CACHE/go/kube-build.lock"
  flock 9
  if [[ ! -x "$bin/kubelet" || ! -x "$bin/kube-proxy" || ! -x "$bin/kube-scheduler" ]]; then
    log "building kubelet, kube-proxy and kube-scheduler v$KUBE_VERSION from a copy of integration-tests/kube (cold: several minutes)"
    local tmp started=$SECONDS v=k8s.io/component-base/version
    tmp="$(mktemp -d "$CACHE/go/node-bin.XXXXXX")"
    # A copy, as helm.sh does for kubectl: these commands need a few go.sum lines more than the
    # server binaries; -mod=mod adds them to the copy, never to the checked-in module.
    cp "$ROOT/integration-tests/kube/go.mod" "$ROOT/integration-tests/kube/go.sum" "$tmp/"
    (
      cd "$tmp"
      export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOPROXY=https://proxy.golang.org GOFLAGS=-mod=mod
      nice go build -trimpath \
        -ldflags "-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=${KUBE_VERSION%%.*} -X $v.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $v.gitTreeState=clean" \
        -o "$tmp/out/" \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler
    ) >&2 || { rm -rf "$tmp"; log "node: building the Kubernetes node binaries failed"; exit 1; }
    chmod 755 "$tmp/out"
    rm -rf "$bin"
    mv "$tmp/out" "$bin"
    rm -rf "$tmp"
    log "built kubelet, kube-proxy and kube-scheduler in $((SECONDS - started))s"
  fi
  exec 9>&-
}

node_build_tools() {
  local dir; dir="$(node_tools_dir)"
  [[ -x "$dir/cni/bridge" && -x "$dir/coredns" && -x "$dir/pause" ]] && return 0
  mkdir -p "$CACHE/go"
  exec 9>"$CACHE/go/node-tools.lock"
  flock 9
  if [[ ! -x "$dir/cni/bridge" || ! -x "$dir/coredns" || ! -x "$dir/pause" ]]; then
    log "building the CNI plugins $NODE_CNI_VERSION and CoreDNS $NODE_COREDNS_VERSION from integration-tests/node (cold: a few minutes)"
    local tmp started=$SECONDS
    tmp="$(mktemp -d "$CACHE/go/node-tools.XXXXXX")"
    (
      cd "$ROOT/integration-tests/node"
      export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOPROXY=https://proxy.golang.org GOFLAGS=-mod=readonly
      # CGO off: the plugins run in pods' namespaces and must not depend on this system's libc.
      CGO_ENABLED=0 nice go build -trimpath -ldflags "-s -w" -o "$tmp/cni/" \
        github.com/containernetworking/plugins/plugins/main/bridge \
        github.com/containernetworking/plugins/plugins/ipam/host-local \
        github.com/containernetworking/plugins/plugins/main/loopback \
        github.com/containernetworking/plugins/plugins/meta/portmap
      CGO_ENABLED=0 nice go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" ./coredns
      # The sandbox ("pause") container's process, from the Kubernetes module's own source; static,
      # so its image needs no libraries.
      gcc -static -O2 -Wall -DVERSION="v$KUBE_VERSION-sluice" -o "$tmp/pause" \
        "$CACHE/go/mod/k8s.io/kubernetes@v$KUBE_VERSION/build/pause/linux/pause.c"
      strip "$tmp/pause"
    ) >&2 || { rm -rf "$tmp"; log "node: building the CNI plugins, CoreDNS or pause failed"; exit 1; }
    chmod 755 "$tmp"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "built the CNI plugins, CoreDNS and pause in $((SECONDS - started))s"
  fi
  exec 9>&-
}

# The OCI archives of the pause and NATS images (cached; rebuilt only when missing), and Sluice's
# image from scripts/image (cargo decides whether anything needs rebuilding).
node_images() {
  local dir="$1" tools images
  tools="$(node_tools_dir)"
  images="$CACHE/node-tools/images"
  mkdir -p "$images"
  if [[ ! -f "$images/pause-v$KUBE_VERSION.oci.tar" ]]; then
    rm -rf "$dir/rootfs" && mkdir -p "$dir/rootfs"
    cp "$tools/pause" "$dir/rootfs/pause"
    python3 "$ROOT/scripts/oci-archive" --rootfs "$dir/rootfs" --ref "$NODE_PAUSE_IMAGE" \
      --entrypoint '["/pause"]' --user 65535:65535 --output "$images/pause-v$KUBE_VERSION.oci.tar" >/dev/null
  fi
  if [[ ! -f "$images/nats-$NATS_VERSION.oci.tar" ]]; then
    # Like the official image: the server at /nats-server as the entrypoint, so the controller's
    # `args: [--config, /etc/nats-config/nats-js.conf]` are its arguments; runs as root, as there.
    rm -rf "$dir/rootfs" && mkdir -p "$dir/rootfs/tmp" && chmod 1777 "$dir/rootfs/tmp"
    cp "$(nats_bin)" "$dir/rootfs/nats-server"
    python3 "$ROOT/scripts/oci-archive" --rootfs "$dir/rootfs" --ref "$NODE_NATS_IMAGE" \
      --entrypoint '["/nats-server"]' --cmd '["--config","nats-server.conf"]' \
      --output "$images/nats-$NATS_VERSION.oci.tar" >/dev/null
  fi
  if [[ ! -f "$images/busybox-debian12.oci.tar" ]]; then
    rm -rf "$dir/rootfs" && mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp" && chmod 1777 "$dir/rootfs/tmp"
    cp /bin/busybox "$dir/rootfs/bin/busybox"
    local applet
    for applet in sh ls cat echo env sleep wget nslookup nc ping; do ln -s busybox "$dir/rootfs/bin/$applet"; done
    python3 "$ROOT/scripts/oci-archive" --rootfs "$dir/rootfs" --ref "$NODE_TOOLS_IMAGE" \
      --entrypoint '["/bin/sh"]' --output "$images/busybox-debian12.oci.tar" >/dev/null
  fi
  rm -rf "$dir/rootfs"
  local from=(--profile "$NODE_SLUICE_PROFILE")
  [[ -z "$NODE_SLUICE_BINARY" ]] || from=(--binary "$NODE_SLUICE_BINARY")
  "$ROOT/scripts/image" "${from[@]}" --output "$dir/sluice.oci.tar" >"$dir/sluice-image.env"
  local archive
  for archive in "$images/pause-v$KUBE_VERSION.oci.tar" "$images/nats-$NATS_VERSION.oci.tar" \
    "$images/busybox-debian12.oci.tar" "$dir/sluice.oci.tar"; do
    ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$archive" >/dev/null ||
      { log "node: importing $archive into containerd failed"; exit 1; }
  done
}

node_sluice_image() {
  sed -n 's/^REFERENCE=//p' "$(node_dir)/sluice-image.env" 2>/dev/null
}

# The API server as seen from the node (through the veth), with the admin token.
node_kubeconfig() {
  kube_write_kubeconfig "$1/kubeconfig" "https://$KUBE_NODE_ACCESS_IP:$KUBE_API_PORT" "$(kube_dir)/pki/ca.crt"
}

# curl against the API server on 127.0.0.1 as the administrator: METHOD PATH [curl args…]
node_api() {
  local method="$1" path="$2"; shift 2
  curl -sS --fail-with-body --cacert "$(kube_dir)/pki/ca.crt" -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" \
    -X "$method" "https://127.0.0.1:$KUBE_API_PORT$path" "$@"
}

# kube.sh runs the API server without an endpoint reconciler, so the `kubernetes` Service has no
# endpoints; pods (in-cluster clients) need them: the host end of the veth, where the forwarder is.
node_kubernetes_endpoints() {
  local apply=(-H "Content-Type: application/apply-patch+yaml" --data-binary @-)
  node_api PATCH "/api/v1/namespaces/default/endpoints/kubernetes?fieldManager=sluice-node&force=true" "${apply[@]}" >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {endpointslice.kubernetes.io/skip-mirror: "true"}
subsets:
- addresses: [{ip: $KUBE_NODE_ACCESS_IP}]
  ports: [{name: https, port: $KUBE_API_PORT, protocol: TCP}]
EOF
  node_api PATCH "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes?fieldManager=sluice-node&force=true" "${apply[@]}" >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: sluice-node}
addressType: IPv4
endpoints:
- addresses: [$KUBE_NODE_ACCESS_IP]
  conditions: {ready: true}
ports:
- {name: https, port: $KUBE_API_PORT, protocol: TCP}
EOF
}

node_network() {
  local dir="$1"
  if [[ ! -e "/var/run/netns/$NODE_NETNS" ]]; then
    log "creating network namespace $NODE_NETNS ($KUBE_NODE_ACCESS_IP <-> $NODE_IP)"
    ip netns add "$NODE_NETNS"
  fi
  if ! ip link show "$NODE_VETH_HOST" >/dev/null 2>&1; then
    ip link add "$NODE_VETH_HOST" type veth peer name eth0 netns "$NODE_NETNS"
    ip addr add "$KUBE_NODE_ACCESS_IP/30" dev "$NODE_VETH_HOST"
    ip link set "$NODE_VETH_HOST" up
    node_exec ip addr add "$NODE_IP/30" dev eth0
    node_exec ip link set eth0 up
  fi
  node_exec ip link set lo up
  # Routing between the pods' bridge, eth0 and the namespace's own addresses; bridged pod-to-pod
  # traffic through iptables so Service addresses work between pods on the same bridge. Both are
  # settings of this namespace only; the host's stay as they are. No default route is ever added,
  # so a pod's packet to any other address has nowhere to go.
  node_exec sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # Service addresses from the namespace itself (`ip netns exec … curl http://svc.ns.svc…`): without
  # a route the connect fails before kube-proxy's rules get to rewrite the destination. A Service
  # address nobody rewrote goes to the host end of the veth, which does not forward it.
  node_exec ip route replace "$KUBE_SERVICE_CIDR" dev eth0 src "$NODE_IP"
  # The resolver of `ip netns exec $NODE_NETNS …` commands: the cluster DNS.
  mkdir -p "/etc/netns/$NODE_NETNS"
  printf 'nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
    "$NODE_DNS_IP" >"/etc/netns/$NODE_NETNS/resolv.conf"

  if running "$dir/forwarder.pid"; then
    log "API forwarder already running (pid $(cat "$dir/forwarder.pid"))"
  else
    # kube-apiserver binds 127.0.0.1 only (other tests rely on that); this passes the veth's host
    # address on to it, so the API server listens on no other interface of the host.
    nohup socat "TCP-LISTEN:$KUBE_API_PORT,bind=$KUBE_NODE_ACCESS_IP,reuseaddr,fork" "TCP:127.0.0.1:$KUBE_API_PORT" \
      >"$dir/forwarder.log" 2>&1 &
    echo $! >"$dir/forwarder.pid"
    wait_port "$KUBE_NODE_ACCESS_IP" "$KUBE_API_PORT" 10 || node_fail "API forwarder" "$dir/forwarder.log"
  fi
}

node_cni_config() {
  local dir="$1"
  mkdir -p "$dir/cni/net.d"
  # hairpinMode: a pod reaching itself through a Service. ipMasq: pods' traffic to the host end of
  # the veth (the API server) leaves with the node's address, which the host can answer; it never
  # goes further (no default route).
  cat >"$dir/cni/net.d/10-sluice.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sluice",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

node_containerd_config() {
  local dir="$1" tools; tools="$(node_tools_dir)"
  mkdir -p "$dir/containerd"
  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$dir/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # Pods' network namespaces under the state directory, not /var/run/netns: stop_node finds them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj; the
  # kubelet asks for negative ones (-998 for every sandbox) and runc would fail. Clamp them at
  # containerd's own (0) instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's container state with the rest of the node's (default: /run/containerd/runc).
        Root = "$dir/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$tools/cni"
    conf_dir = "$dir/cni/net.d"
EOF
}

node_kubelet_config() {
  local dir="$1"
  mkdir -p "$dir/kubelet" "$dir/pod-logs"
  # failCgroupV1: this machine mounts the cgroup v1 controllers (cgroup2 has none of them).
  # No webhook authentication: the API server calls the kubelet without a client certificate (logs,
  # exec); it is reachable only from the host and the node's namespace. resolvConf "": pods get
  # the cluster DNS and nothing of the host's resolver. Image GC off: images cannot be pulled again.
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [$NODE_DNS_IP]
resolvConf: ""
podLogsDir: $dir/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
registerNode: true
EOF
}

node_fail() { # what logfile
  log "node: $1 did not start; its log:"; tail -30 "$2" >&2
  stop_node
  exit 1
}

node_wait_socket() { # path seconds
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ -S "$1" ]] && return 0
    sleep 0.2
  done
  return 1
}

node_ready() { # seconds
  local deadline=$((SECONDS + $1)) dir; dir="$(node_dir)"
  while ((SECONDS < deadline)); do
    running "$dir/kubelet.pid" || return 1
    if node_api GET "/api/v1/nodes/$NODE_NAME" 2>/dev/null | python3 -c '
import json, sys
node = json.load(sys.stdin)
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])) else 1)
' 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  return 1
}

# start DAEMON-NAME LOGFILE COMMAND…: in the node's namespace, unless DAEMON-NAME is already running.
node_daemon() {
  local name="$1" logfile="$2" dir; dir="$(node_dir)"; shift 2
  if running "$dir/$name.pid"; then
    log "$name already running (pid $(cat "$dir/$name.pid"))"
    return 0
  fi
  log "starting $name"
  nohup "$@" >"$logfile" 2>&1 &
  echo $! >"$dir/$name.pid"
}

env_node() {
  echo "KUBECONFIG=$(kube_dir)/kubeconfig"
  echo "NODE_NETNS=$NODE_NETNS"
  echo "NODE_HOST_IP=$NODE_IP"
  echo "NODE_NAME=$NODE_NAME"
  echo "SLUICE_IMAGE=$(node_sluice_image)"
  echo "NATS_IMAGE=$NODE_NATS_IMAGE"
  echo "NODE_TOOLS_IMAGE=$NODE_TOOLS_IMAGE"
}

start_node() {
  local dir kbin tools started=$SECONDS
  dir="$(node_dir)"
  node_packages
  start_kube >/dev/null
  node_build_kube
  node_build_tools
  kbin="$(node_kube_bin_dir)" tools="$(node_tools_dir)"
  mkdir -p "$dir"

  node_network "$dir"
  node_kubernetes_endpoints
  node_kubeconfig "$dir"
  node_cni_config "$dir"
  node_containerd_config "$dir"
  node_kubelet_config "$dir"

  # containerd finds the runc shim and runc on PATH; CNI plugins need iptables. A socket left by a
  # containerd that died would pass for a live one below.
  running "$dir/containerd.pid" || rm -f "$dir/containerd/containerd.sock"
  node_daemon containerd "$dir/containerd.log" \
    nsenter --net="/var/run/netns/$NODE_NETNS" -- containerd --config "$dir/containerd/config.toml"
  node_wait_socket "$dir/containerd/containerd.sock" 30 || node_fail containerd "$dir/containerd.log"
  node_images "$dir"

  node_daemon kube-scheduler "$dir/kube-scheduler.log" \
    "$kbin/kube-scheduler" --kubeconfig "$(kube_dir)/kubeconfig" \
    --authentication-kubeconfig "$(kube_dir)/kubeconfig" --authorization-kubeconfig "$(kube_dir)/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$NODE_SCHEDULER_PORT" --leader-elect=false
  node_daemon kubelet "$dir/kubelet.log" \
    nsenter --net="/var/run/netns/$NODE_NETNS" -- "$kbin/kubelet" \
    --config "$dir/kubelet/config.yaml" --kubeconfig "$dir/kubeconfig" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  # conntrack-max-per-core 0: leave the table size alone (the sysctl is not writable in a namespace).
  node_daemon kube-proxy "$dir/kube-proxy.log" \
    nsenter --net="/var/run/netns/$NODE_NETNS" -- "$kbin/kube-proxy" \
    --kubeconfig "$dir/kubeconfig" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$NODE_POD_CIDR" --conntrack-max-per-core 0 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  cat >"$dir/Corefile" <<EOF
.:53 {
    bind $NODE_DNS_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
  node_daemon coredns "$dir/coredns.log" \
    nsenter --net="/var/run/netns/$NODE_NETNS" -- "$tools/coredns" -conf "$dir/Corefile"

  node_ready 120 || node_fail kubelet "$dir/kubelet.log"
  log "node ready in $((SECONDS - started))s"
  env_node
}

# Kills the processes whose pids are in the given pidfiles (if running) and waits for them.
node_kill() { # signal pid…
  local sig="$1" pid; shift
  (($#)) || return 0
  kill "-$sig" "$@" 2>/dev/null || true
  for pid in "$@"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}

stop_node() {
  local dir name pid; dir="$(node_dir)"
  # The kubelet first, so it restarts nothing, then the pods' processes (every process in the
  # kubepods cgroups the kubelet made), then whatever else runs in the namespace (containerd, its
  # shims, kube-proxy, CoreDNS), then the host-side helpers.
  if running "$dir/kubelet.pid"; then
    node_kill TERM "$(cat "$dir/kubelet.pid")"
    log "stopped kubelet"
  fi
  local pods=() cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] || continue
    while read -r pid; do pods+=("$pid"); done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  if ((${#pods[@]})); then
    mapfile -t pods < <(printf '%s\n' "${pods[@]}" | sort -un)
    node_kill KILL "${pods[@]}"
    log "killed ${#pods[@]} pod processes"
  fi
  if [[ -e "/var/run/netns/$NODE_NETNS" ]]; then
    local inside=()
    mapfile -t inside < <(ip netns pids "$NODE_NETNS" 2>/dev/null)
    if ((${#inside[@]})); then
      node_kill TERM "${inside[@]}"
      mapfile -t inside < <(ip netns pids "$NODE_NETNS" 2>/dev/null)
      node_kill KILL "${inside[@]}"
      log "stopped the node's processes (containerd, shims, kube-proxy, CoreDNS)"
    fi
  fi
  for name in kube-scheduler forwarder; do
    if running "$dir/$name.pid"; then
      pid="$(cat "$dir/$name.pid")"
      # socat forks a child per connection; those children go with it.
      local children=()
      mapfile -t children < <(pgrep -P "$pid" 2>/dev/null)
      node_kill TERM "$pid" "${children[@]}"
      log "stopped $name"
    fi
  done
  rm -f "$dir"/*.pid
  # Mounts the kubelet (volumes) and containerd (container root filesystems, sandbox /dev/shm, pods'
  # network namespaces) left under the state directory, deepest first.
  if [[ -d "$dir" ]]; then
    local mounts=() m
    mapfile -t mounts < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    for m in "${mounts[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    ((${#mounts[@]} == 0)) || log "unmounted ${#mounts[@]} mounts under $dir"
  fi
  # The kubelet's cgroups, children before parents (empty now that their processes are gone).
  for cg in /sys/fs/cgroup/*/kubepods; do
    if [[ -d "$cg" ]]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  # Deleting the namespace deletes its end of the veth, hence the pair, and every iptables rule
  # kube-proxy and the CNI plugins wrote (they all live in the namespace).
  if [[ -e "/var/run/netns/$NODE_NETNS" ]]; then
    ip netns del "$NODE_NETNS"
    log "deleted network namespace $NODE_NETNS"
  fi
  ip link del "$NODE_VETH_HOST" 2>/dev/null || true
  rm -rf "/etc/netns/$NODE_NETNS"
  # Directories made on the way that are left empty: /etc/netns, and containerd 1.6's fixed place for
  # its shims' sockets (not configurable; the sockets go with the shims). rmdir keeps anything in use.
  rmdir /etc/netns /run/containerd/s /run/containerd 2>/dev/null || true
  # The Node object goes too, so the pods bound to it are garbage-collected if the control plane
  # keeps running; a later start registers the node afresh.
  if [[ -f "$(kube_dir)/pki/ca.crt" ]] && running "$(kube_dir)/apiserver.pid"; then
    node_api DELETE "/api/v1/nodes/$NODE_NAME" >/dev/null 2>&1 || true
  fi
  # Runtime state only; the builds and image archives stay in $CACHE. Never delete through a mount
  # that is still there (it could be a volume's files).
  if awk -v d="$dir/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    log "node: mounts remain under $dir; left it in place"
  else
    rm -rf "$dir"
  fi
}
