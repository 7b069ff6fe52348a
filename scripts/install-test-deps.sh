#!/usr/bin/env bash
# Installs what the test suites need besides Rust and Go, from Debian's packages:
#   prometheus and promtool (package `prometheus`, 2.42 on bookworm): promtool checks and unit-tests
#   the chart's alert rules; the e2e suite runs prometheus to evaluate the dashboard's queries.
# With --real-node, also what the real-node suite (`make e2e-real-node`) and `make image-offline`
# need: containerd (the CRI runtime the kubelet talks to), runc, containernetworking-plugins
# (bridge, host-local, loopback, portmap in /usr/lib/cni), busybox-static (the test hooks' and the
# pod sandbox's image), iptables and conntrack (kube-proxy's Service routing). The suite starts
# its own containerd with its own socket and state; a system one the package starts is not used.
# Idempotent: does nothing when everything is there. Needs root (or sudo) to install.
set -euo pipefail

packages=(prometheus)
if [[ ${1:-} == --real-node ]]; then
	packages+=(containerd runc containernetworking-plugins busybox-static iptables conntrack)
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
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
for p in "${missing[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
		echo "install-test-deps: $p still not installed after apt-get install" >&2
		exit 1
	}
done
