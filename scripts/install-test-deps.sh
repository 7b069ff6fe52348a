#!/usr/bin/env bash
# Installs what the test suite needs besides Rust and Go, from Debian's packages:
#   prometheus and promtool (package `prometheus`, 2.42 on bookworm): promtool checks and unit-tests
#   the chart's alert rules; the e2e suite runs prometheus to evaluate the dashboard's queries.
# Idempotent: does nothing when everything is there. Needs root (or sudo) to install.
set -euo pipefail

missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
	missing+=(prometheus)
fi

if ((${#missing[@]} == 0)); then
	exit 0
fi

echo "install-test-deps: installing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "install-test-deps: need root to run: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || {
	echo "install-test-deps: promtool or prometheus still missing after installing prometheus" >&2
	exit 1
}
