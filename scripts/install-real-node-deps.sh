#!/usr/bin/env bash
# Installs what the real-node suite (`make e2e-real-node`) needs besides the tools build.sh
# builds, from Debian's packages: containerd (the CRI runtime the kubelet talks to), runc,
# containernetworking-plugins (bridge, host-local, loopback, portmap in /usr/lib/cni),
# busybox-static (the test hooks' and the pod sandbox's image), iptables and conntrack (for
# kube-proxy's Service routing). Idempotent; needs root (or sudo).
set -euo pipefail

packages=(containerd runc containernetworking-plugins busybox-static iptables conntrack)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

echo "install-real-node-deps: installing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "install-real-node-deps: need root to run: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
# The package starts containerd as a system service where systemd runs; the suite starts its
# own with its own socket and state, so the system one is neither needed nor touched.
for c in containerd runc ctr iptables conntrack; do
	command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$c" >/dev/null 2>&1 || {
		echo "install-real-node-deps: $c still missing after installing ${missing[*]}" >&2
		exit 1
	}
done
[[ -x /bin/busybox && -x /usr/lib/cni/bridge ]] || {
	echo "install-real-node-deps: /bin/busybox or /usr/lib/cni/bridge missing" >&2
	exit 1
}
