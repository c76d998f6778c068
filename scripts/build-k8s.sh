#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against, with `go`
# from published modules at the versions of scripts/k8s-versions.env:
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# (k8s.io/kubernetes through a generated wrapper module), etcd (wrapper
# module), kwok (fake kubelet) and helm. Binaries go to a cache outside the
# repository ($K8GB_K8S_CACHE, default /var/cache/k8gb-k8s); nothing here is
# committed. Each tool is skipped when its binary is already in the cache.
# Prints the bin directory on the last line of stdout.
# Usage: bash scripts/build-k8s.sh [--print-bin]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC1091  # KEY=value lines, read from beside this script
. "$here/k8s-versions.env"
CACHE="${K8GB_K8S_CACHE:-/var/cache/k8gb-k8s}"
BIN="$CACHE/bin-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
SRC="$CACHE/src"
if [ "${1:-}" = "--print-bin" ]; then echo "$BIN"; exit 0; fi

export CGO_ENABLED=0      # upstream builds these static, without cgo
export GOTOOLCHAIN=local  # a module needing a newer Go fails loudly
export GOFLAGS=-mod=mod
mkdir -p "$BIN" "$SRC"
# one build at a time per cache (two test runs may start together)
exec 9>"$CACHE/.lock"
flock 9
log() { echo "build-k8s: $*" >&2; }
command -v go >/dev/null || { log "go is not installed; the control-plane tests need Go (see README)"; exit 1; }

have() { for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }

build_kubernetes() {
  have kube-apiserver kube-controller-manager kube-scheduler kubectl && return 0
  local minor_patch="${K8S_VERSION#v1.}" minor staging w kmod pkgs ld
  minor="${minor_patch%%.*}"; staging="v0.${minor_patch}"
  w="$SRC/k8s-$K8S_VERSION"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  log "kubernetes $K8S_VERSION: wrapper module in $w"
  go mod init example.local/k8s-bins >/dev/null 2>&1
  kmod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
  # with ./staging; those replaces do not apply to a dependency, so the
  # wrapper replaces each with its published v0.M.P.
  while read -r m; do
    go mod edit -replace="$m=$m@$staging"
  done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod")
  while read -r gd; do
    go mod edit -godebug="$gd"
  done < <(sed -n 's/^godebug[[:space:]]\{1,\}\([^ ()]\{1,\}\)$/\1/p' "$kmod")
  pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  # shellcheck disable=SC2046
  go get -tool $(for p in $pkgs; do printf '%s@%s ' "$p" "$K8S_VERSION"; done)
  ld="-s -w -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld="$ld -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
  ld="$ld -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  log "kubernetes $K8S_VERSION: go build (cold: about 20 minutes on 2 cores)"
  # shellcheck disable=SC2086
  go build -trimpath -ldflags="$ld" -o "$BIN/" $pkgs
  "$BIN/kube-apiserver" --version >&2
}

build_etcd() {
  have etcd && return 0
  local w="$SRC/etcd-$ETCD_VERSION"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  log "etcd $ETCD_VERSION"
  go mod init example.local/etcd-bins >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags="-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  "$BIN/etcd" --version >&2
}

build_kwok() {
  have kwok && return 0
  log "kwok $KWOK_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
  have helm && return 0
  local major="${HELM_VERSION%%.*}"
  log "helm $HELM_VERSION"
  GOBIN="$BIN" go install -trimpath \
    -ldflags="-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

# The Gateway API and Istio CRDs (YAML, no build) from their modules.
fetch_crds() {
  [ -s "$BIN/crds/istio.yaml" ] && [ -s "$BIN/crds/gateway-api.yaml" ] && return 0
  log "CRDs: gateway-api $GATEWAY_API_VERSION, istio api $ISTIO_API_VERSION"
  mkdir -p "$BIN/crds"
  local d
  d="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  for f in "$d"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    cat "$f"; echo "---"
  done > "$BIN/crds/gateway-api.yaml.tmp"
  mv "$BIN/crds/gateway-api.yaml.tmp" "$BIN/crds/gateway-api.yaml"
  d="$(go mod download -json "istio.io/api@$ISTIO_API_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cat "$d/kubernetes/customresourcedefinitions.gen.yaml" > "$BIN/crds/istio.yaml.tmp"
  mv "$BIN/crds/istio.yaml.tmp" "$BIN/crds/istio.yaml"
}

fetch_crds
build_etcd
build_kwok
build_helm
build_kubernetes
echo "$BIN"
