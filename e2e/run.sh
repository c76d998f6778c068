#!/usr/bin/env bash
# Runs every e2e test (test-*.sh) against the running demo; stops at the
# first failure. Usage: e2e/run.sh [test-name...]
set -euo pipefail
cd "$(dirname "$0")"
tests=("$@")
if ((${#tests[@]} == 0)); then
  tests=(test-*.sh)
fi
passed=0
for t in "${tests[@]}"; do
  echo "--- ${t%.sh}"
  bash "./${t%.sh}.sh"
  passed=$((passed + 1))
done
echo "e2e: $passed passed, 0 failed"
