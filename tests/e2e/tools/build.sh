#!/usr/bin/env bash
# Build the end-to-end test tooling (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, helm (v3), helm4, kwok) from published Go
# modules through the Go module proxy, into a cache directory outside the repo.
#
# Usage: tests/e2e/tools/build.sh
#   Progress goes to stderr; the LAST line of stdout is the absolute bin
#   directory, e.g.  BIN=$(tests/e2e/tools/build.sh | tail -1)
#
# Environment:
#   HOOKGUARD_TOOLS_DIR  cache directory (binaries go to $HOOKGUARD_TOOLS_DIR/bin).
#                        Default: $HOME/.cache/hookguard/tools/<versions-key>,
#                        where <versions-key> names every pinned version plus a
#                        short hash of the files in this directory that affect
#                        the build, so any change builds into a fresh directory.
#   GOMODCACHE, GOCACHE, GOFLAGS, GOPROXY  honoured as usual by go.
#
# Versions are pinned once, in versions.env beside this script.
# A binary that is present and executable is not rebuilt; each binary is
# written to a temporary file in the cache directory and renamed into place,
# so an interrupted build never leaves a partial binary behind.
set -euo pipefail

# Everything we print goes to stderr except the final bin directory.
exec 3>&1 1>&2

# Bump to force a rebuild into a new cache directory after changing how the
# binaries are built (e.g. ldflags below) without changing any version.
BUILD_REV=1

log() { printf '[e2e-tools] %s\n' "$*"; }
die() {
	printf '[e2e-tools] ERROR: %s\n' "$*"
	exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- versions ------------------------------------------------------------------
# Plain KEY=value file; read it without executing anything else.
while IFS='=' read -r key value; do
	case "$key" in
	'' | \#*) continue ;;
	KUBE_VERSION | ETCD_VERSION | HELM3_VERSION | HELM4_VERSION | KWOK_VERSION | GO_MIN_VERSION)
		printf -v "$key" '%s' "$value"
		;;
	*) die "unknown key '$key' in $here/versions.env" ;;
	esac
done <"$here/versions.env"
for v in KUBE_VERSION ETCD_VERSION HELM3_VERSION HELM4_VERSION KWOK_VERSION GO_MIN_VERSION; do
	[[ -n "${!v:-}" ]] || die "$v is not set in $here/versions.env"
done

# Kubernetes v1.X.Y <-> staging modules v0.X.Y
kube_minor_patch=${KUBE_VERSION#v1.}
kube_staging_version=v0.${kube_minor_patch}
kube_minor=${kube_minor_patch%%.*}

# The wrapper go.mod files must pin the same versions as versions.env.
grep -Eq "^[[:space:]]*(require[[:space:]]+)?k8s\.io/kubernetes ${KUBE_VERSION}([[:space:]]|$)" "$here/kube/go.mod" ||
	die "kube/go.mod does not require k8s.io/kubernetes ${KUBE_VERSION} (versions.env says so); update kube/go.mod"
staging_versions=$(awk '$2 == "=>" {print $4}' "$here/kube/go.mod" | sort -u)
[[ "$staging_versions" == "$kube_staging_version" ]] ||
	die "kube/go.mod must replace every k8s.io staging module with ${kube_staging_version}, found: $(echo "$staging_versions" | tr '\n' ' ')"
grep -Eq "^[[:space:]]*(require[[:space:]]+)?go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION}([[:space:]]|$)" "$here/etcd/go.mod" ||
	die "etcd/go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION} (versions.env says so); update etcd/go.mod"

# --- Go toolchain ----------------------------------------------------------------
command -v go >/dev/null 2>&1 ||
	die "'go' not found in PATH. Install the Go toolchain >= ${GO_MIN_VERSION} (the official release; Debian's golang-go package is too old: bookworm has 1.19, trixie 1.24) and put its bin directory in PATH."
# Never let go download another toolchain: use the one installed, or fail.
export GOTOOLCHAIN=local
go_version=$(go env GOVERSION 2>/dev/null || true)
go_version=${go_version#go}
go_version=${go_version%%[!0-9.]*}
[[ -n "$go_version" ]] || die "could not determine the Go version ('go env GOVERSION' failed)"
if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$go_version" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
	die "Go ${go_version} is too old: Kubernetes ${KUBE_VERSION}, Helm and kwok need Go >= ${GO_MIN_VERSION} (go directive of their go.mod). Install a newer Go toolchain (Debian's golang-go is too old)."
fi
# Static binaries, as upstream releases are built.
export CGO_ENABLED=0

# --- cache directory ---------------------------------------------------------------
inputs=(
	versions.env
	kube/go.mod kube/go.sum
	kube/cmd/kube-apiserver/main.go kube/cmd/kube-controller-manager/main.go
	kube/cmd/kube-scheduler/main.go kube/cmd/kubectl/main.go
	kube/cmd/kubelet/main.go kube/cmd/kube-proxy/main.go
	etcd/go.mod etcd/go.sum etcd/main.go
)
inputs_hash=$(
	cd "$here"
	{
		sha256sum "${inputs[@]}"
		echo "BUILD_REV=${BUILD_REV}"
	} | sha256sum | cut -c1-10
)
versions_key="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM3_VERSION}_helm4-${HELM4_VERSION}_kwok-${KWOK_VERSION}_${inputs_hash}"
if [[ -n "${HOOKGUARD_TOOLS_DIR:-}" ]]; then
	tools_dir=$HOOKGUARD_TOOLS_DIR
else
	[[ -n "${HOME:-}" ]] || die "HOME is not set; set HOOKGUARD_TOOLS_DIR"
	tools_dir=$HOME/.cache/hookguard/tools/$versions_key
fi
mkdir -p "$tools_dir/bin"
tools_dir=$(cd "$tools_dir" && pwd)
bin=$tools_dir/bin

# One build at a time per cache directory.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$tools_dir/.lock"
	flock -n 9 || {
		log "waiting for another build.sh using $tools_dir ..."
		flock 9
	}
fi

tmp_dirs=()
cleanup() {
	local d
	for d in "${tmp_dirs[@]+"${tmp_dirs[@]}"}"; do
		rm -rf "$d"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Leftovers of a build that was SIGKILLed (we hold the lock, so none is in use).
rm -rf "$tools_dir"/.tmp.*
# new_tmp: a fresh temporary directory in the cache dir, in $out (not via
# $(...), which would record it in a subshell and never clean it up).
new_tmp() {
	out=$(mktemp -d "$tools_dir/.tmp.XXXXXX")
	tmp_dirs+=("$out")
}

built() { [[ -f "$bin/$1" && -x "$bin/$1" ]]; }

started=$SECONDS
log "tools: ${versions_key}"
log "bin:   ${bin}"
log "go:    ${go_version} ($(command -v go)), GOFLAGS='${GOFLAGS:-}'"

# Commit time of a module version, from the proxy's .info (for build dates).
module_time() {
	go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p' | head -n1
}

# --- Kubernetes ------------------------------------------------------------------------
# kubelet and kube-proxy are for the real-node suite only (make e2e-real-node).
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
kube_missing=()
for n in "${kube_bins[@]}"; do
	built "$n" || kube_missing+=("$n")
done
if ((${#kube_missing[@]})); then
	t0=$SECONDS
	log "building ${kube_missing[*]} ${KUBE_VERSION} (this is the slow part: ~20 min on 2 cores with cold Go caches) ..."
	(cd "$here/kube" && go mod download)
	kube_date=$(cd "$here/kube" && module_time k8s.io/kubernetes "$KUBE_VERSION")
	kube_ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		kube_ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
		kube_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${kube_minor}"
		kube_ldflags+=" -X ${pkg}.gitTreeState=archive"
		[[ -z "$kube_date" ]] || kube_ldflags+=" -X ${pkg}.buildDate=${kube_date}"
	done
	new_tmp
	pkgs=()
	for n in "${kube_missing[@]}"; do pkgs+=("./cmd/$n"); done
	(cd "$here/kube" && go build -mod=readonly -trimpath -ldflags "$kube_ldflags" -o "$out/" "${pkgs[@]}")
	for n in "${kube_missing[@]}"; do
		mv -f "$out/$n" "$bin/$n"
	done
	log "built ${kube_missing[*]} in $((SECONDS - t0))s"
else
	log "kube binaries ${KUBE_VERSION}: already built"
fi

# --- yamljson (test tooling of hookguard's own) ----------------------------------------------
# Kubernetes' YAML reader (k8s.io/apimachinery at the version above) as a filter, so the suite can
# check that hookguard reads YAML as Kubernetes does. Small and quick to build once the Kubernetes
# modules are downloaded; rebuilt whenever its source changes (a stamp holds the source hash).
yamljson_hash=$(cd "$here/kube" && cat cmd/yamljson/main.go go.mod go.sum | sha256sum | cut -c1-16)
if ! built yamljson || [[ "$(cat "$bin/.yamljson.stamp" 2>/dev/null)" != "$yamljson_hash" ]]; then
	t0=$SECONDS
	log "building yamljson (k8s.io/apimachinery's YAML decoder) ..."
	new_tmp
	(cd "$here/kube" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/yamljson" ./cmd/yamljson)
	mv -f "$out/yamljson" "$bin/yamljson"
	printf '%s\n' "$yamljson_hash" >"$bin/.yamljson.stamp"
	log "built yamljson in $((SECONDS - t0))s"
else
	log "yamljson: already built"
fi

# --- etcd ----------------------------------------------------------------------------------
if ! built etcd; then
	t0=$SECONDS
	log "building etcd ${ETCD_VERSION} ..."
	new_tmp
	(cd "$here/etcd" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/etcd" .)
	mv -f "$out/etcd" "$bin/etcd"
	log "built etcd in $((SECONDS - t0))s"
else
	log "etcd ${ETCD_VERSION}: already built"
fi

# --- go install <pkg>@<version> into bin/<name> ---------------------------------------------
# Used for modules without replace directives: upstream's own go.mod/go.sum
# decide every dependency version, checked against the checksum database.
go_install_as() {
	local name=$1 pkg=$2 version=$3 ldflags=$4 out t0=$SECONDS
	if built "$name"; then
		log "$name ${version}: already built"
		return
	fi
	log "building $name (${pkg}@${version}) ..."
	new_tmp
	GOBIN=$out go install -trimpath -ldflags "$ldflags" "${pkg}@${version}"
	mv -f "$out/$(basename "$pkg")" "$bin/$name"
	log "built $name in $((SECONDS - t0))s"
}

# Helm 3 bakes in the Kubernetes version it assumes without a cluster
# (helm template, lint) from its client-go version, as its Makefile does.
helm3_ldflags() {
	local gomod client_go minor
	gomod=$(go mod download -json "helm.sh/helm/v3@${HELM3_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
	minor=$(echo "$client_go" | cut -d. -f2)
	local v=helm.sh/helm/v3
	printf '%s' "-s -w -X ${v}/internal/version.version=${HELM3_VERSION} -X ${v}/internal/version.gitTreeState=clean"
	if [[ -n "$minor" ]]; then
		printf '%s' " -X ${v}/pkg/lint/rules.k8sVersionMajor=1 -X ${v}/pkg/lint/rules.k8sVersionMinor=${minor}"
		printf '%s' " -X ${v}/pkg/chartutil.k8sVersionMajor=1 -X ${v}/pkg/chartutil.k8sVersionMinor=${minor}"
	fi
}

if ! built helm; then
	go_install_as helm helm.sh/helm/v3/cmd/helm "$HELM3_VERSION" "$(helm3_ldflags)"
else
	log "helm ${HELM3_VERSION}: already built"
fi
# Helm 4 derives the Kubernetes version from the embedded build info itself.
go_install_as helm4 helm.sh/helm/v4/cmd/helm "$HELM4_VERSION" \
	"-s -w -X helm.sh/helm/v4/internal/version.version=${HELM4_VERSION} -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
go_install_as kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" "-s -w"

# --- summary ------------------------------------------------------------------------------------
for n in "${kube_bins[@]}" yamljson etcd helm helm4 kwok; do
	built "$n" || die "$bin/$n is missing after the build"
done
log "done in $((SECONDS - started))s"
for n in "${kube_bins[@]}" yamljson etcd helm helm4 kwok; do
	log "  $(du -h "$bin/$n" | cut -f1)	$n"
done
printf '%s\n' "$bin" >&3
