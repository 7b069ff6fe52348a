#!/usr/bin/env bash
# Captures the AdmissionReview requests a real kube-apiserver (v1.36, the version pinned in
# tests/e2e/tools/versions.env) sends an admission webhook for Helm hook objects, and stores them in
# tests/fixtures/captured/ (read by tests/captured_fixtures.rs).
#
# MAINTAINER TOOL: it is not part of `make test` (nor of `make e2e`); run it by hand when the
# pinned Kubernetes or Helm versions change, or to capture a new kind of hook object, review the
# diff of tests/fixtures/captured/ and commit it. Rerunning is safe: every run starts a fresh
# throwaway control plane and replaces the captured *.json files as a whole.
#
# What it does, all on 127.0.0.1 (nothing is fetched from anywhere):
#   * starts etcd, kube-apiserver (--allow-privileged=true) and kube-controller-manager (for the
#     namespaces' "default" ServiceAccounts) from the tools tests/e2e/tools/build.sh builds, with
#     certificates made with openssl for this run only;
#   * starts scripts/capture-webhook.py (HTTPS, a certificate for IP:127.0.0.1), which allows
#     every request and writes it to a file named <kind>-<namespace>-<name>-<operation>.json;
#   * registers it with the webhook configurations the hookguard chart renders
#     (charts/hookguard, templates/webhooks.yaml, with webhook.url and webhook.caBundle set):
#     mutate.hookguard.io (CREATE/UPDATE, failurePolicy set to Ignore) and
#     count-deletes.hookguard.io (DELETE, always Ignore), both with the matchConditions that
#     select objects with a helm.sh/hook annotation; validate.hookguard.io is left out (it would
#     see every CREATE and UPDATE a second time);
#   * creates, updates and deletes hook objects with `kubectl apply` (client-side apply, field
#     manager kubectl-client-side-apply), `kubectl apply --dry-run=server`, `kubectl delete`,
#     and installs small charts with Helm 3 (`helm`) and Helm 4 (`helm4`). The manifests are in
#     scripts/capture-fixtures/ (objects/*.yaml, chart/hooks/; its README.md maps them to the
#     captures), except the shop-db-migrate Job, whose variants migrate_job below writes;
#   * copies the captures into tests/fixtures/captured/ and stops everything (also on error).
#
# Usage: scripts/capture-fixtures.sh [BIN_DIR]
#   BIN_DIR defaults to the last line printed by tests/e2e/tools/build.sh (which builds what is
#   missing; seconds when everything is built).
# Environment:
#   CAPTURE_KEEP=1   keep the work directory (certificates, kubeconfig, logs, raw captures)
#   CAPTURE_OUT=DIR  write the fixtures to DIR instead of tests/fixtures/captured
#
# Needs: bash, openssl, python3 (standard library only).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
tools=$repo/tests/e2e/tools
out_dir=${CAPTURE_OUT:-$repo/tests/fixtures/captured}
# Helm's release records (for the release decoder's tests), next to the captures.
records_dir=${CAPTURE_RECORDS_OUT:-$repo/tests/fixtures/helm-release}
fixtures=$here/capture-fixtures
objects=$fixtures/objects

BIN=${1:-}
if [[ -z "$BIN" ]]; then
	BIN=$("$tools/build.sh" | tail -n1)
fi
BIN=$(cd "$BIN" && pwd)
for n in etcd kube-apiserver kube-controller-manager kubectl helm helm4; do
	[[ -x "$BIN/$n" ]] || {
		echo "capture: $BIN/$n not found; run tests/e2e/tools/build.sh" >&2
		exit 1
	}
done
for n in openssl python3; do
	command -v "$n" >/dev/null 2>&1 || {
		echo "capture: '$n' not found in PATH" >&2
		exit 1
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/hookguard-capture.XXXXXX")
raw=$work/raw
mkdir -p "$raw"
# log, fail, start, free_port, wait_for and the control plane (cp_*).
# shellcheck source-path=SCRIPTDIR source=../tests/e2e/tools/control-plane.sh
. "$tools/control-plane.sh" capture

cleanup() {
	local i
	# Stop in reverse start order (etcd last): only the processes this script started.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		local waited=0
		while kill -0 "${pids[$i]}" 2>/dev/null && ((waited < 50)); do
			sleep 0.2
			waited=$((waited + 1))
		done
		kill -KILL "${pids[$i]}" 2>/dev/null || true
		wait "${pids[$i]}" 2>/dev/null || true
	done
	cp_finish 40 "${CAPTURE_KEEP:-0}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp_client_env
kubectl() { "$BIN/kubectl" "$@"; }

# --- certificates ------------------------------------------------------------------------------
# The admin user is named like kubeadm's admin.conf user: it shows up as request.userInfo in
# every capture.
cp_pki hookguard-capture-ca /O=system:masters/CN=kubernetes-admin
# Serving certificate of the capture webhook (on 127.0.0.1, like kube-apiserver).
cat >"$pki/webhook.ext" <<-EOF
	basicConstraints=CA:FALSE
	keyUsage=critical,digitalSignature,keyEncipherment
	extendedKeyUsage=serverAuth
	subjectAltName=IP:127.0.0.1
EOF
cp_sign webhook /CN=capture-webhook webhook.ext

# --- etcd, kube-apiserver, kube-controller-manager ---------------------------------------------
cp_start_etcd capture
cp_start_apiserver capture kubernetes-admin --allow-privileged=true
cp_start_controller_manager

namespaces=(shop kyverno gatekeeper-system cert-manager ingress-nginx)
for ns in "${namespaces[@]}"; do
	kubectl create namespace "$ns" >/dev/null
done
# Pods need the "default" ServiceAccount in their namespace (ServiceAccount admission plugin).
for ns in "${namespaces[@]}"; do
	wait_for "ServiceAccount $ns/default" 60 kubectl -n "$ns" get serviceaccount default
done

server_version=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)
log "kube-apiserver $server_version; helm $("$BIN/helm" version --short); helm4 $("$BIN/helm4" version --short)"

# --- the capture webhook -----------------------------------------------------------------------
hook_port=$(free_port)
start capture-webhook python3 "$here/capture-webhook.py" \
	--address 127.0.0.1 --port "$hook_port" \
	--cert "$pki/webhook.crt" --key "$pki/webhook.key" --out "$raw"
hook_healthy() { python3 - "$hook_port" "$pki/ca.crt" <<-'EOF'; }
	import ssl, sys, urllib.request
	ctx = ssl.create_default_context(cafile=sys.argv[2])
	urllib.request.urlopen(f"https://127.0.0.1:{sys.argv[1]}/healthz", context=ctx, timeout=2).read()
EOF
wait_for "capture webhook" 30 hook_healthy

# The webhook configurations exactly as the hookguard chart renders them
# (templates/webhooks.yaml), pointing at the capture webhook.
ca_bundle=$(base64 -w0 <"$pki/ca.crt")
"$BIN/helm" template hookguard "$repo/charts/hookguard" --namespace hookguard-system \
	--show-only templates/webhooks.yaml \
	--set "webhook.url=https://127.0.0.1:$hook_port" \
	--set "webhook.caBundle=$ca_bundle" \
	--set webhook.mutating.failurePolicy=Ignore >"$work/webhooks.yaml"
# Of the ValidatingWebhookConfiguration only count-deletes.hookguard.io (DELETE only, always
# Ignore) is kept: validate.hookguard.io would record every CREATE and UPDATE a second time.
python3 - "$work/webhooks.yaml" >"$work/capture-webhooks.yaml" <<-'EOF'
	import re, sys
	docs = re.split(r"(?m)^---\s*$", open(sys.argv[1]).read())
	def only(kind):
	    found = [d.strip() for d in docs if re.search(rf"(?m)^kind: {kind}\s*$", d)]
	    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
	    return found[0]
	mutating = only("MutatingWebhookConfiguration")
	head, *hooks = re.split(r"(?m)^(?=  - name: )", only("ValidatingWebhookConfiguration"))
	deletes = [h for h in hooks if h.startswith("  - name: count-deletes.hookguard.io\n")]
	assert len(deletes) == 1, "expected the count-deletes.hookguard.io webhook"
	sys.stdout.write(mutating + "\n---\n" + head + deletes[0].rstrip() + "\n")
EOF
[[ $(grep -c 'failurePolicy: Ignore' "$work/capture-webhooks.yaml") == 2 ]] ||
	fail "rendered capture webhooks are not all failurePolicy Ignore"
kubectl apply -f "$work/capture-webhooks.yaml" >/dev/null
# Webhook configurations take effect asynchronously: probe with a throwaway hook ConfigMap until
# a request for it arrives (server-side dry-run: nothing is stored).
probe() {
	kubectl apply --dry-run=server -f - >/dev/null 2>&1 <<-EOF || true
		apiVersion: v1
		kind: ConfigMap
		metadata:
		  name: capture-probe
		  namespace: shop
		  annotations:
		    helm.sh/hook: pre-install
	EOF
	compgen -G "$raw/configmap-shop-capture-probe-*" >/dev/null
}
wait_for "webhook registration" 60 probe
rm -f "$raw"/configmap-shop-capture-probe-*
log "capture webhook registered on https://127.0.0.1:$hook_port/mutate and /validate (DELETE)"

# --- helpers -----------------------------------------------------------------------------------
# expect FILE: fail unless the webhook wrote $raw/FILE.
expect() {
	[[ -f "$raw/$1" ]] || {
		ls -1 "$raw" >&2
		fail "no capture $1"
	}
	log "captured $1"
}
# rename FROM TO: rename a capture (for variants of one object).
rename() {
	expect "$1"
	mv "$raw/$1" "$raw/$2"
	log "  -> $2"
}

# --- 1. the shop chart's DB migration Job ------------------------------------------------------
# migrate_job RESTART_POLICY|"" REVISION
migrate_job() {
	local restart="" rev=$2
	[[ -z "$1" ]] || restart="      restartPolicy: $1"
	cat <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: shop-db-migrate
  namespace: shop
  labels:
    app.kubernetes.io/instance: shop
    app.kubernetes.io/name: shop
    app.kubernetes.io/version: "2.3.1"
    app.kubernetes.io/managed-by: Helm
    helm.sh/chart: shop-1.4.0
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-5"
    shop.example.com/revision: "$rev"
spec:
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: shop
        app.kubernetes.io/name: shop
    spec:
$restart
      containers:
        - name: migrate
          image: ghcr.io/example/shop-migrations:2.3.1
          command: ["/bin/migrate", "up"]
          env:
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: shop-db
                  key: url
EOF
}

# Server-side dry-run create (dryRun: true) of the valid Job, before it exists.
migrate_job Never 1 | kubectl apply --dry-run=server -f - >/dev/null
expect job-shop-shop-db-migrate-create-dry-run.json

# No restartPolicy in the template: the webhook sees it, then validation rejects it
# (a Job's template must say Never or OnFailure; v1.36 does not default it).
if migrate_job "" 1 | kubectl apply -f - >"$work/no-restart.out" 2>&1; then
	fail "a Job without restartPolicy was accepted: $(cat "$work/no-restart.out")"
fi
log "Job without restartPolicy rejected as expected: $(tr '\n' ' ' <"$work/no-restart.out" | cut -c1-200)"
rename job-shop-shop-db-migrate-create.json job-shop-shop-db-migrate-create-no-restart-policy.json

migrate_job Never 1 | kubectl apply -f - >/dev/null
expect job-shop-shop-db-migrate-create.json
migrate_job Never 2 | kubectl apply -f - >/dev/null
expect job-shop-shop-db-migrate-update.json
kubectl -n shop delete job shop-db-migrate --wait=true --timeout=60s >/dev/null
expect job-shop-shop-db-migrate-delete.json

# --- 2. a test Pod without restartPolicy (helm create's test-connection, no restartPolicy) -------
kubectl apply -f "$objects/pod-shop-shop-test-connection.yaml" >/dev/null
expect pod-shop-shop-test-connection-create.json

# --- 3. a post-install notification Job with curlimages/curl:latest ------------------------------
kubectl apply -f "$objects/job-shop-shop-notify.yaml" >/dev/null
expect job-shop-shop-notify-create.json

# --- 4. a hook ConfigMap without labels, a hook Secret -----------------------------------------
kubectl apply -f "$objects/configmap-shop-shop-migrate-sql.yaml" >/dev/null
expect configmap-shop-shop-migrate-sql-create.json
kubectl apply -f "$objects/secret-shop-shop-db.yaml" >/dev/null
expect secret-shop-shop-db-create.json

# --- 5. hook Jobs of popular charts, as their templates render with default values --------------
# Kyverno chart (kyverno/kyverno charts/kyverno): templates/hooks/post-upgrade-migrate-resources.yaml
# and pre-delete-scale-to-zero.yaml with the defaults the chart README documents for
# crds.migration.* and webhooksCleanup.* (image bitnami/kubectl:1.32.3, resources,
# securityContext); chart version/appVersion in names and labels: 3.5.2 / v1.15.2.
kubectl apply -f "$objects/job-kyverno-kyverno-migrate-resources.yaml" >/dev/null
expect job-kyverno-kyverno-migrate-resources-create.json
kubectl apply -f "$objects/job-kyverno-kyverno-scale-to-zero.yaml" >/dev/null
expect job-kyverno-kyverno-scale-to-zero-create.json

# Gatekeeper chart (open-policy-agent/gatekeeper charts/gatekeeper, values.yaml of main at
# release v3.22.0-rc.0):
# templates/namespace-post-install.yaml (Job gatekeeper-update-namespace-label, with the default
# postInstall.probeWebhook init container) and templates/upgrade-crds-hook.yaml.
# This template has no metadata.namespace: -n sets it.
kubectl apply -n gatekeeper-system \
	-f "$objects/job-gatekeeper-system-gatekeeper-update-namespace-label.yaml" >/dev/null
expect job-gatekeeper-system-gatekeeper-update-namespace-label-create.json
kubectl apply -f "$objects/job-gatekeeper-system-gatekeeper-update-crds-hook.yaml" >/dev/null
expect job-gatekeeper-system-gatekeeper-update-crds-hook-create.json

# cert-manager chart (cert-manager/cert-manager deploy/charts/cert-manager v1.19.1):
# templates/startupapicheck-job.yaml with the default startupapicheck values.
kubectl apply -f "$objects/job-cert-manager-cert-manager-startupapicheck.yaml" >/dev/null
expect job-cert-manager-cert-manager-startupapicheck-create.json

# ingress-nginx chart (kubernetes/ingress-nginx charts/ingress-nginx 4.8.x, controller v1.9.x):
# templates/admission-webhooks/job-patch/job-createSecret.yaml. ttlSecondsAfterFinished: 0 is
# what the template renders where `.Capabilities.APIVersions.Has "batch/v1alpha1"` (older
# clusters, or `helm template --api-versions batch/v1alpha1`); the image is digest-pinned.
kubectl apply -f "$objects/job-ingress-nginx-ingress-nginx-admission-create.yaml" >/dev/null
expect job-ingress-nginx-ingress-nginx-admission-create-create.json

# --- 6. Helm 3 and Helm 4 installing a chart with a pre-install Job hook -------------------------
# No scheduler or kubelet runs, so the hook Job never completes: each install creates the hook
# (which is what we capture), waits --timeout and fails.
# Installed from a copy in the work directory, like the `helm create` chart below.
chart=$work/charts/hooks
mkdir -p "$work/charts"
cp -R "$fixtures/chart/hooks" "$chart"
for h in helm helm4; do
	release=hooks-$h
	[[ $h == helm4 ]] || release=hooks-helm3
	if "$BIN/$h" install "$release" "$chart" --namespace shop --timeout 5s >"$work/$release.out" 2>&1; then
		fail "$h install $release succeeded although its hook cannot complete"
	fi
	log "$h install: $(tr '\n' ' ' <"$work/$release.out" | cut -c1-160)"
	expect "job-shop-$release-pre-install-create.json"
	# The release record Helm wrote for it (a Secret: base64 of gzip of the release JSON, with
	# the hook's manifest), as the API server returns it.
	kubectl get secret --namespace shop "sh.helm.release.v1.$release.v1" -o json \
		>"$work/record-$release.json"
done

# helm test of the `helm create` scaffold (its test-connection Pod, restartPolicy Never),
# created by Helm 3 as `helm test` does.
"$BIN/helm" create "$work/charts/mychart" >/dev/null
"$BIN/helm" install mychart "$work/charts/mychart" --namespace shop >/dev/null
if "$BIN/helm" test mychart --namespace shop --timeout 5s >"$work/helm-test.out" 2>&1; then
	fail "helm test succeeded although its Pod cannot run"
fi
expect pod-shop-mychart-test-connection-create.json

# --- result ------------------------------------------------------------------------------------
# Anything captured that no step expected (e.g. updates by controllers) is kept as well, so that
# it shows up in the diff; list it here.
log "captured $(find "$raw" -name '*.json' | wc -l) requests"
if grep -rlF -e "$work" -e "${HOME:-/nonexistent}/" "$raw" >/dev/null 2>&1; then
	fail "a capture contains a path of this machine: $(grep -rlF -e "$work" -e "${HOME:-/nonexistent}/" "$raw")"
fi
if grep -lF -e "$work" -e "${HOME:-/nonexistent}/" "$work"/record-*.json >/dev/null 2>&1; then
	fail "a release record contains a path of this machine"
fi
mkdir -p "$out_dir" "$records_dir"
rm -f "$out_dir"/*.json
cp "$raw"/*.json "$out_dir"/
for r in "$work"/record-*.json; do
	cp "$r" "$records_dir/secret-${r##*/record-}"
done
log "wrote $(find "$out_dir" -maxdepth 1 -name '*.json' | wc -l) fixtures to $out_dir:"
(cd "$out_dir" && ls -1 ./*.json) >&2

ok=1
log "OK"
