#!/usr/bin/env bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Shared helpers of the local demo (demo.sh) and the end-to-end tests
# (test-*.sh). Sourced, not run. Needs Docker, kubectl and dig; the demo
# also needs kind or k3d, and helm.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/.." && pwd)"
# State of the running demo (platform, TSIG secret); not committed.
DEMO_DIR="$ROOT/.demo"
REGIONS=(eu us)
NETWORK=k8gb-demo
EDGE=k8gb-edge
EDGE_PORT=1053
NAMESPACE=k8gb
APP_NAMESPACE=demo
IMAGE=k8gb-local:dev
ZONE=cloud.example.com
# Longest wait for an answer to change (the answers move within a few
# seconds; this bounds a broken setup).
TIMEOUT="${E2E_TIMEOUT:-90}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is not installed (see docs/install.md, \"Local demo\")"
  done
}

# The platform of the running demo: kind or k3d.
platform() {
  if [[ -n "${K8GB_DEMO_PLATFORM:-}" ]]; then
    echo "$K8GB_DEMO_PLATFORM"
  elif [[ -f "$DEMO_DIR/platform" ]]; then
    cat "$DEMO_DIR/platform"
  else
    fail "no demo is running: start one with 'just demo-kind-up' or 'just demo-k3d-up'"
  fi
}

# kubectl context of a region.
ctx() { echo "$(platform)-k8gb-$1"; }

kc() {
  local region=$1
  shift
  kubectl --context "$(ctx "$region")" "$@"
}

# The Docker container of a region's (only) node.
node_container() {
  case "$(platform)" in
    kind) echo "k8gb-$1-control-plane" ;;
    k3d) echo "k3d-k8gb-$1-server-0" ;;
    *) fail "unknown platform $(platform)" ;;
  esac
}

container_ip() {
  local ip
  ip="$(docker inspect -f "{{with index .NetworkSettings.Networks \"$NETWORK\"}}{{.IPAddress}}{{end}}" "$1")"
  [[ -n "$ip" ]] || fail "container $1 has no address on network $NETWORK"
  echo "$ip"
}

node_ip() { container_ip "$(node_container "$1")"; }
edge_ip() { container_ip "$EDGE"; }

# Where the host reaches a region's DNS: kind-configs/*-<region>.yaml map
# 127.0.0.1:5053 (eu) and :5054 (us). tests/chart.rs points these at a local
# k8gb to test the helpers below.
DNS_HOST="${E2E_DNS_HOST:-127.0.0.1}"
dns_port() {
  case "$1" in
    eu) echo "${E2E_DNS_PORT_EU:-5053}" ;;
    us) echo "${E2E_DNS_PORT_US:-5054}" ;;
    *) fail "unknown region $1" ;;
  esac
}

# The sorted A records a region's k8gb answers for a name (one per line);
# dig's own complaints (a timeout) are an answer too, never an exit.
answer() {
  { dig "@$DNS_HOST" -p "$(dns_port "$1")" +short +tries=1 +time=2 "$2" A || true; } | sort
}

# The A records in the order the server sent them.
answer_unsorted() {
  dig "@$DNS_HOST" -p "$(dns_port "$1")" +short +tries=1 +time=2 "$2" A || true
}

# Waits until a region answers exactly the given addresses (none: NXDOMAIN or
# no answer), or fails after $TIMEOUT seconds showing the last answer.
expect_answer() {
  local region=$1 name=$2
  shift 2
  local want got deadline=$((SECONDS + TIMEOUT))
  want="$(printf '%s\n' "$@" | sed '/^$/d' | sort)"
  while :; do
    got="$(answer "$region" "$name")"
    if [[ "$got" == "$want" ]]; then
      log "$region: $name -> ${got//$'\n'/ }"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      fail "$region: $name: expected [${want//$'\n'/ }], got [${got//$'\n'/ }] after ${TIMEOUT}s"
    fi
    sleep 1
  done
}

# Every region answers the same addresses for a name.
expect_everywhere() {
  local name=$1 region
  shift
  for region in "${REGIONS[@]}"; do
    expect_answer "$region" "$name" "$@"
  done
}

# Scales a demo app (one Deployment per strategy) in a region and waits.
scale_app() {
  local region=$1 app=$2 replicas=$3
  log "$region: scale $app to $replicas"
  kc "$region" -n "$APP_NAMESPACE" scale deployment "$app" --replicas "$replicas" >/dev/null
  if ((replicas > 0)); then
    kc "$region" -n "$APP_NAMESPACE" rollout status deployment "$app" --timeout "${TIMEOUT}s" >/dev/null
  else
    kc "$region" -n "$APP_NAMESPACE" wait --for=delete pod -l "app=$app" --timeout "${TIMEOUT}s" >/dev/null 2>&1 || true
  fi
}
