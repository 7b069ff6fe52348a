#!/usr/bin/env bash
# Builds hookguard's container image as an OCI archive without Docker or a registry, plus the
# two small images the real-node tests use, all from what this machine has:
#
#   target/images/hookguard.oci.tar  ghcr.io/hookguard/hookguard:<appVersion> (the chart's image):
#       a statically linked release binary (-C target-feature=+crt-static on the gnu target) at
#       /usr/local/bin/hookguard as entrypoint, `serve` as command, user 65532:65532 (passwd and
#       group entries `nonroot`), the CA certificates, /tmp; laid out like the Dockerfile's image.
#   target/images/busybox.oci.tar    hookguard.test/busybox:1.35, Debian's busybox-static binary
#       and its applet links: the image of test hooks.
#   target/images/pause.oci.tar      hookguard.test/pause:1.35, the same layer sleeping forever:
#       the pod sandbox image (containerd's sandbox_image).
#
# Import with `ctr -n k8s.io images import <archive>` (or `docker load -i <archive>`). The last
# line printed is the hookguard archive's path. Needs cargo, python3, and busybox-static
# (scripts/install-test-deps.sh --real-node installs it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=$repo/target/images
mkdir -p "$out"
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/hookguard/Chart.yaml)
repository=$(sed -n '/^image:/,/^[a-z]/s/^  repository: *//p' charts/hookguard/values.yaml)
[[ -n $version && -n $repository ]] || {
	echo "image-offline: cannot read the image name from charts/hookguard" >&2
	exit 1
}
# Debian's busybox-static puts a statically linked busybox at /bin/busybox.
busybox=/bin/busybox
# ldd says "not a dynamic executable" (static) or "statically linked" (static-pie).
is_static() {
	local out
	out=$(ldd "$1" 2>&1 || true)
	grep -Eq 'not a dynamic executable|statically linked' <<<"$out"
}
if [[ ! -x $busybox ]] || ! is_static "$busybox"; then
	echo "image-offline: no static $busybox: apt-get install busybox-static (scripts/install-test-deps.sh --real-node)" >&2
	exit 1
fi

echo "image-offline: building a static release binary" >&2
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
	--target x86_64-unknown-linux-gnu --bin hookguard >&2
bin=target/x86_64-unknown-linux-gnu/release/hookguard
if ! is_static "$bin"; then
	echo "image-offline: $bin is not statically linked" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$work/group"

python3 scripts/oci-image.py --name "$repository:$version" --out "$out/hookguard.oci.tar" \
	--file "$bin:/usr/local/bin/hookguard:0755" \
	--file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 \
	--file "$work/passwd:/etc/passwd:0644" --file "$work/group:/etc/group:0644" \
	--dir /tmp:1777:0:0 --dir /home/nonroot:0700:65532:65532 \
	--user 65532:65532 --entrypoint /usr/local/bin/hookguard --cmd serve

applets=(sh ash cat date echo env false grep head hostname httpd id ls mkdir nc nslookup printf ps seq sleep
	tail tee touch true uname wc wget)
links=()
for a in "${applets[@]}"; do links+=(--symlink "/bin/$a:busybox"); done
common=(--file "$busybox:/bin/busybox:0755" "${links[@]}" --dir /tmp:1777:0:0 --env PATH=/bin)
python3 scripts/oci-image.py --name hookguard.test/busybox:1.35 --out "$out/busybox.oci.tar" \
	"${common[@]}" --cmd /bin/sh
python3 scripts/oci-image.py --name hookguard.test/pause:1.35 --out "$out/pause.oci.tar" \
	"${common[@]}" --entrypoint /bin/sh --entrypoint=-c \
	--entrypoint='trap "exit 0" TERM INT; while true; do sleep 3600 & wait $!; done'
echo "$out/hookguard.oci.tar"
