#!/usr/bin/env bash
# failover (primary eu), as upstream's chainsaw failover tests: both regions
# answer eu; with eu's app at 0 replicas both answer us; with it back, eu.
# Needs the demo (just demo-kind-up or demo-k3d-up, demo-install, demo-app).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

eu="$(node_ip eu)"
us="$(node_ip us)"
host="failover.$ZONE"

expect_everywhere "$host" "$eu"
scale_app eu failover 0
expect_everywhere "$host" "$us"
scale_app eu failover 1
expect_everywhere "$host" "$eu"

# the secondary going down changes nothing while the primary is healthy
scale_app us failover 0
expect_everywhere "$host" "$eu"
scale_app us failover 1

# both down: no answer anywhere; the first one back answers
scale_app eu failover 0
scale_app us failover 0
expect_everywhere "$host"
scale_app us failover 1
expect_everywhere "$host" "$us"
scale_app eu failover 1
expect_everywhere "$host" "$eu"

log "PASS failover"
