#!/usr/bin/env bash
# Weighted roundRobin (eu 80, us 20): every answer holds both addresses, and
# eu comes first in about 4 answers out of 5.
# Needs the demo (just demo-kind-up or demo-k3d-up, demo-install, demo-app).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

eu="$(node_ip eu)"
us="$(node_ip us)"
host="weighted.$ZONE"
rounds=200

expect_everywhere "$host" "$eu" "$us"
for region in "${REGIONS[@]}"; do
  first_eu=0
  for ((i = 0; i < rounds; i++)); do
    first="$(answer_unsorted "$region" "$host" | head -n1)"
    [[ "$first" == "$eu" ]] && first_eu=$((first_eu + 1))
  done
  log "$region: eu first in $first_eu of $rounds answers"
  # 80% expected; binomial sd is about 6, so 130..185 is far outside chance
  ((first_eu >= 130 && first_eu <= 185)) || fail "$region: eu first in $first_eu of $rounds, expected about 160"
done

log "PASS weighted roundRobin"
