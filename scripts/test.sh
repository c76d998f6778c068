#!/usr/bin/env bash
# The README's test command: installs what the test suite needs when it is
# missing (Debian and PyPI packages), then runs the whole suite.
# Usage: bash scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run (command → package).
declare -A APT=([dig]=bind9-dnsutils [kdig]=knot-dnsutils [named]=bind9
  [named-checkconf]=bind9-utils [shellcheck]=shellcheck)
# PyPI packages the tests import or run (module → package); the chart tests
# (tests/chart.rs) render with helm-python-sdk, validate with
# kubernetes-validate and scan with checkov; the controller and delegation
# tests run against the kmock API emulator.
declare -A PIP=( [mmdb_writer]=mmdb-writer [helm_python]=helm-python-sdk
  [kubernetes_validate]=kubernetes-validate [checkov]=checkov [kmock]=kmock )

missing_apt=()
for cmd in "${!APT[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing_apt+=("${APT[$cmd]}")
done
if ((${#missing_apt[@]})); then
  echo "test.sh: installing Debian packages: ${missing_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_apt[@]}"
fi

missing_pip=()
for mod in "${!PIP[@]}"; do
  python3 -c "import $mod" >/dev/null 2>&1 || missing_pip+=("${PIP[$mod]}")
done
if ((${#missing_pip[@]})); then
  echo "test.sh: installing PyPI packages: ${missing_pip[*]}"
  python3 -m pip install -q "${missing_pip[@]}"
fi

cargo test --all-targets "$@"
