#!/usr/bin/env bash
# The local two-region demo (eu, us) on kind or k3d with a BIND edge; the
# Justfile's demo-* recipes call it.
# Usage: e2e/demo.sh kind-up|k3d-up|load-image|install|app|failover|down
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

BIND_IMAGE="${BIND_IMAGE:-internetsystemsconsortium/bind9:9.20}"

network_up() {
  need docker
  if ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
    log "docker network $NETWORK"
    docker network create "$NETWORK" >/dev/null
  fi
}

# Fresh random TSIG secrets (never committed): tsig.secret for the edge and
# the clusters, peer-tsig.secret for the clusters among themselves.
tsig_secret() {
  mkdir -p "$DEMO_DIR"
  local f
  for f in tsig.secret peer-tsig.secret; do
    if [[ ! -s "$DEMO_DIR/$f" ]]; then
      head -c 32 /dev/urandom | base64 >"$DEMO_DIR/$f"
      chmod 600 "$DEMO_DIR/$f"
    fi
  done
  printf 'key "k8gb-edge" {\n    algorithm hmac-sha256;\n    secret "%s";\n};\n' \
    "$(cat "$DEMO_DIR/tsig.secret")" >"$DEMO_DIR/tsig.key"
  chmod 644 "$DEMO_DIR/tsig.key" # read by named in the edge container
}

edge_up() {
  tsig_secret
  if docker inspect "$EDGE" >/dev/null 2>&1; then
    log "edge DNS $EDGE is running"
    return
  fi
  log "edge DNS: $BIND_IMAGE as $EDGE, example.com on 127.0.0.1:$EDGE_PORT"
  docker run -d --name "$EDGE" --network "$NETWORK" \
    -p "127.0.0.1:$EDGE_PORT:53/udp" -p "127.0.0.1:$EDGE_PORT:53/tcp" \
    -v "$ROOT/kind-configs/edge:/etc/bind/k8gb:ro" \
    -v "$DEMO_DIR:/etc/bind/demo:ro" \
    --entrypoint sh "$BIND_IMAGE" -c \
    'cp /etc/bind/k8gb/example.com.zone /var/lib/bind/ && chown -R bind:bind /var/lib/bind && exec named -g -u bind -c /etc/bind/k8gb/named.conf' \
    >/dev/null
  local deadline=$((SECONDS + 30))
  until dig @127.0.0.1 -p "$EDGE_PORT" +short +tries=1 +time=1 example.com SOA | grep -q .; do
    ((SECONDS < deadline)) || { docker logs "$EDGE" >&2; fail "the edge DNS did not start"; }
    sleep 1
  done
}

kind_up() {
  need kind kubectl dig
  network_up
  edge_up
  mkdir -p "$DEMO_DIR"
  echo kind >"$DEMO_DIR/platform"
  local region
  for region in "${REGIONS[@]}"; do
    if kind get clusters 2>/dev/null | grep -qx "k8gb-$region"; then
      log "kind cluster k8gb-$region exists"
    else
      log "kind cluster k8gb-$region"
      KIND_EXPERIMENTAL_DOCKER_NETWORK="$NETWORK" kind create cluster \
        --config "$ROOT/kind-configs/kind-$region.yaml" --wait 120s
    fi
  done
}

k3d_up() {
  need k3d kubectl dig
  network_up
  edge_up
  mkdir -p "$DEMO_DIR"
  echo k3d >"$DEMO_DIR/platform"
  local region
  for region in "${REGIONS[@]}"; do
    if k3d cluster get "k8gb-$region" >/dev/null 2>&1; then
      log "k3d cluster k8gb-$region exists"
    else
      log "k3d cluster k8gb-$region"
      k3d cluster create --config "$ROOT/kind-configs/k3d-$region.yaml" --wait
    fi
  done
}

load_image() {
  need docker
  log "build $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
  local region
  for region in "${REGIONS[@]}"; do
    log "$region: load $IMAGE"
    case "$(platform)" in
      kind) kind load docker-image "$IMAGE" --name "k8gb-$region" ;;
      k3d) k3d image import "$IMAGE" --cluster "k8gb-$region" ;;
    esac
  done
}

install() {
  need helm kubectl
  local edge region node
  edge="$(edge_ip)"
  for region in "${REGIONS[@]}"; do
    node="$(node_ip "$region")"
    log "$region: install the chart (node $node, edge $edge)"
    kc "$region" create namespace "$NAMESPACE" --dry-run=client -o yaml | kc "$region" apply -f - >/dev/null
    kc "$region" -n "$NAMESPACE" create secret generic k8gb-edge-tsig \
      --from-file=secret="$DEMO_DIR/tsig.secret" --dry-run=client -o yaml | kc "$region" apply -f - >/dev/null
    kc "$region" -n "$NAMESPACE" create secret generic k8gb-peer-tsig \
      --from-file=secret="$DEMO_DIR/peer-tsig.secret" --dry-run=client -o yaml | kc "$region" apply -f - >/dev/null
    helm upgrade --install k8gb "$ROOT/chart/k8gb" \
      --kube-context "$(ctx "$region")" --namespace "$NAMESPACE" \
      -f "$ROOT/kind-configs/values-demo.yaml" \
      -f "$ROOT/kind-configs/values-$(platform).yaml" \
      -f "$ROOT/kind-configs/values-$region.yaml" \
      --set "k8gb.edgeDNSServers[0]=$edge:53" \
      --set "k8gb.clusterExposedIPs[0]=$node" \
      --wait --timeout 3m
  done
  log "delegation at the edge:"
  dig @127.0.0.1 -p "$EDGE_PORT" +noall +answer +authority "$ZONE" NS || true
}

app() {
  local region
  for region in "${REGIONS[@]}"; do
    log "$region: demo app and one Gslb per strategy"
    kc "$region" apply -f "$E2E_DIR/manifests/app.yaml" >/dev/null
    kc "$region" apply -f "$E2E_DIR/manifests/gslbs.yaml" >/dev/null
    kc "$region" -n "$APP_NAMESPACE" rollout status deployment --timeout 3m >/dev/null
    kc "$region" -n "$APP_NAMESPACE" get gslbs
  done
  show
}

show() {
  local region name
  for name in roundrobin failover weighted geoip; do
    for region in "${REGIONS[@]}"; do
      printf '%-3s %-28s %s\n' "$region" "$name.$ZONE" "$(answer "$region" "$name.$ZONE" | xargs)"
    done
  done
}

failover() {
  local eu us
  eu="$(node_ip eu)"
  us="$(node_ip us)"
  log "failover.$ZONE: primary eu ($eu), secondary us ($us)"
  expect_everywhere "failover.$ZONE" "$eu"
  scale_app eu failover 0
  expect_everywhere "failover.$ZONE" "$us"
  scale_app eu failover 1
  expect_everywhere "failover.$ZONE" "$eu"
}

down() {
  local region p
  p="$(cat "$DEMO_DIR/platform" 2>/dev/null || true)"
  for region in "${REGIONS[@]}"; do
    case "$p" in
      kind) kind delete cluster --name "k8gb-$region" || true ;;
      k3d) k3d cluster delete "k8gb-$region" || true ;;
    esac
  done
  docker rm -f "$EDGE" >/dev/null 2>&1 || true
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
  rm -rf "$DEMO_DIR"
  log "demo removed"
}

case "${1:-}" in
  kind-up) kind_up ;;
  k3d-up) k3d_up ;;
  load-image) load_image ;;
  install) install ;;
  app) app ;;
  show) show ;;
  failover) failover ;;
  down) down ;;
  *)
    echo "usage: $0 kind-up|k3d-up|load-image|install|app|show|failover|down" >&2
    exit 2
    ;;
esac
