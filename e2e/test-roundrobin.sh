#!/usr/bin/env bash
# roundRobin: every region answers both regions' addresses; each region's
# localtargets- name holds only its own; an app scaled to 0 leaves the answers
# everywhere and comes back. Also checks the delegation at the edge.
# Needs the demo (just demo-kind-up or demo-k3d-up, demo-install, demo-app).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

eu="$(node_ip eu)"
us="$(node_ip us)"
host="roundrobin.$ZONE"

log "delegation: the edge lists both clusters' NS names and glue"
deadline=$((SECONDS + TIMEOUT))
until ns="$(dig @127.0.0.1 -p "$EDGE_PORT" +short "$ZONE" NS | sort | xargs)" &&
  [[ "$ns" == "gslb-ns-eu-$ZONE. gslb-ns-us-$ZONE." ]]; do
  ((SECONDS < deadline)) || fail "edge NS of $ZONE: got [$ns]"
  sleep 1
done
[[ "$(dig @127.0.0.1 -p "$EDGE_PORT" +short "gslb-ns-eu-$ZONE" A)" == "$eu" ]] || fail "eu glue is not $eu"
[[ "$(dig @127.0.0.1 -p "$EDGE_PORT" +short "gslb-ns-us-$ZONE" A)" == "$us" ]] || fail "us glue is not $us"

expect_everywhere "$host" "$eu" "$us"
expect_answer eu "localtargets-$host" "$eu"
expect_answer us "localtargets-$host" "$us"

scale_app us roundrobin 0
expect_everywhere "$host" "$eu"
expect_answer us "localtargets-$host"
scale_app us roundrobin 1
expect_everywhere "$host" "$eu" "$us"

log "PASS roundRobin"
