#!/usr/bin/env bash
# The README's test command: installs what the test suite needs when it is
# missing (Debian packages, PyPI packages into a virtualenv, the real
# Kubernetes control plane built with `go`), then runs the whole suite.
# Usage: bash scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run (command → package).
declare -A APT=([dig]=bind9-dnsutils [kdig]=knot-dnsutils [named]=bind9
  [named-checkconf]=bind9-utils [shellcheck]=shellcheck [openssl]=openssl)
# PyPI packages the tests import or run (module → package); the chart tests
# (tests/chart.rs) render with helm-python-sdk, validate with
# kubernetes-validate and scan with checkov; the controller and delegation
# tests run against the kmock API emulator.
declare -A PIP=( [mmdb_writer]=mmdb-writer [helm_python]=helm-python-sdk
  [kubernetes_validate]=kubernetes-validate [checkov]=checkov [kmock]=kmock )

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {
  echo "test.sh: installing Debian packages: $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
missing_apt=()
for cmd in "${!APT[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing_apt+=("${APT[$cmd]}")
done
python3 -m venv --help >/dev/null 2>&1 || missing_apt+=(python3-venv)
if ((${#missing_apt[@]})); then apt_install "${missing_apt[@]}"; fi

# Python tools live in a virtualenv outside the repository (a system-wide
# pip install is refused under PEP 668 on Debian 12 and Ubuntu 24.04); the
# tests find them through PATH.
VENV="${K8GB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/k8gb/venv}"
[ -x "$VENV/bin/python3" ] || { echo "test.sh: creating the virtualenv $VENV"; python3 -m venv "$VENV"; }
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
missing_pip=()
for mod in "${!PIP[@]}"; do
  python3 -c "import $mod" >/dev/null 2>&1 || missing_pip+=("${PIP[$mod]}")
done
if ((${#missing_pip[@]})); then
  echo "test.sh: installing PyPI packages into $VENV: ${missing_pip[*]}"
  python3 -m pip install -q --disable-pip-version-check "${missing_pip[@]}"
fi

# The real control plane (kube-apiserver, controller-manager, scheduler,
# kubectl, etcd, kwok, helm) at the versions of scripts/k8s-versions.env,
# built once per machine into a cache outside the repository.
K8GB_K8S_BIN="$(bash scripts/build-k8s.sh | tail -n 1)"
export K8GB_K8S_BIN

cargo test --all-targets "$@"
