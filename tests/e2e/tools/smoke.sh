#!/usr/bin/env bash
# Smoke test of the e2e tooling: a real control plane on loopback (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler) with one kwok fake
# node, checked with real Jobs, Pods, kubectl, helm and helm4.
#
# Usage: tests/e2e/tools/smoke.sh [BIN_DIR]
#   BIN_DIR defaults to the output of build.sh (which builds what is missing).
# Environment:
#   HOOKGUARD_SMOKE_KEEP=1  keep the work directory (certs, kubeconfig, logs)
#
# Everything listens on 127.0.0.1 only; nothing is fetched from anywhere.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:-}
if [[ -z "$BIN" ]]; then
	BIN=$("$here/build.sh" | tail -n1)
fi
BIN=$(cd "$BIN" && pwd)
for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm helm4 kwok; do
	[[ -x "$BIN/$n" ]] || {
		echo "smoke: $BIN/$n not found; run build.sh" >&2
		exit 1
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/hookguard-smoke.XXXXXX")
# log, fail, start, free_port, wait_for and the control plane (cp_*).
# shellcheck source-path=SCRIPTDIR source=control-plane.sh
. "$here/control-plane.sh" smoke

# Keep the original stderr: the EXIT trap may fire while a shell function runs
# with its output redirected to /dev/null (wait_for), and cleanup must not
# inherit that.
exec 4>&2
cleanup() {
	local i
	exec 2>&4
	# Stop one by one in reverse start order (etcd last).
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
		local waited=0
		while kill -0 "${pids[$i]}" 2>/dev/null && ((waited < 100)); do
			sleep 0.1
			waited=$((waited + 1))
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			log "${names[$i]} still running 10s after SIGTERM: SIGKILL"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	log "stopped all components"
	cp_finish 60 "${HOOKGUARD_SMOKE_KEEP:-0}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp_client_env
export KWOK_WORKDIR=$work/kwok
export PATH="$BIN:$PATH"

# --- certificates (apiserver.crt also serves kwok's kubelet API) -------------------------
cp_pki hookguard-e2e-ca /O=system:masters/CN=hookguard-e2e-admin

# --- etcd, kube-apiserver -----------------------------------------------------------------
cp_start_etcd e2e
cp_start_apiserver e2e admin

# --- kube-controller-manager, kube-scheduler --------------------------------------------
cp_start_controller_manager
start kube-scheduler "$BIN/kube-scheduler" \
	--kubeconfig="$KUBECONFIG" \
	--authentication-kubeconfig="$KUBECONFIG" \
	--authorization-kubeconfig="$KUBECONFIG" \
	--bind-address=127.0.0.1 \
	--secure-port="$(free_port)" \
	--leader-elect=false

# --- kwok --------------------------------------------------------------------------------------
kwok_port=$(free_port)
start kwok "$BIN/kwok" \
	--kubeconfig="$KUBECONFIG" \
	--config="$here/kwok-stages.yaml" \
	--manage-all-nodes=false \
	--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
	--node-ip=127.0.0.1 \
	--node-port="$kwok_port" \
	--server-address="127.0.0.1:$kwok_port" \
	--tls-cert-file="$pki/apiserver.crt" \
	--tls-private-key-file="$pki/apiserver.key"

# Pods need the "default" ServiceAccount (serviceaccount controller) and the
# kube-root-ca.crt ConfigMap (root-ca-cert-publisher) in their namespace.
wait_for "default ServiceAccount" 60 kubectl get serviceaccount default
wait_for "kube-root-ca.crt ConfigMap" 60 kubectl get configmap kube-root-ca.crt

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
EOF
wait_for "kwok node Ready" 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=1s

# --- versions -------------------------------------------------------------------------------
log "kubectl version:"
kubectl version >&2
server_version=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)
[[ "$server_version" == v1.36.3 ]] || fail "server gitVersion is '$server_version'"
log "helm version: $("$BIN/helm" version --short)"
log "helm4 version: $("$BIN/helm4" version --short)"
"$BIN/helm" version --short | grep -q '^v3\.' || fail "helm is not Helm 3"
"$BIN/helm4" version --short | grep -q '^v4\.' || fail "helm4 is not Helm 4"
log "etcd: $("$BIN/etcd" --version | head -n1); kwok: $("$BIN/kwok" --version)"

# --- Jobs and Pods on the fake node -------------------------------------------------------
# job_yaml NAME RESTART_POLICY BACKOFF_LIMIT [ANNOTATION...] [ttl=N]
job_yaml() {
	local name=$1 policy=$2 backoff=$3 ttl="" ann=""
	shift 3
	local a
	for a in "$@"; do
		case "$a" in
		ttl=*) ttl="  ttlSecondsAfterFinished: ${a#ttl=}" ;;
		*) ann+="        ${a%%=*}: \"${a#*=}\""$'\n' ;;
		esac
	done
	cat <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $name
spec:
  backoffLimit: $backoff
$ttl
  template:
    metadata:
      annotations:
        smoke: "1"
$ann    spec:
      restartPolicy: $policy
      containers:
      - name: main
        image: registry.invalid/never-pulled:1
        command: ["true"]
EOF
}

t0=$SECONDS
job_yaml job-ok Never 0 | kubectl apply -f - >/dev/null
job_yaml job-fail Never 0 hookguard.test/simulate=fail | kubectl apply -f - >/dev/null
job_yaml job-onfailure-fail OnFailure 2 hookguard.test/simulate=fail | kubectl apply -f - >/dev/null
job_yaml job-ttl Never 0 ttl=5 | kubectl apply -f - >/dev/null
job_yaml job-slow Never 0 hookguard.test/run-duration=8s | kubectl apply -f - >/dev/null
kubectl wait --for=jsonpath='{.status.active}'=1 job/job-slow --timeout=30s >/dev/null ||
	fail "job-slow has no active pod"
kubectl wait --for=jsonpath='{.status.phase}'=Running pod -l job-name=job-slow --timeout=30s >/dev/null ||
	fail "job-slow's pod is not Running"
log "job-slow (run-duration 8s): pod Running after $((SECONDS - t0))s"

kubectl wait --for=condition=Complete job/job-ok --timeout=60s >/dev/null ||
	fail "job-ok did not complete"
log "job-ok (Never): Complete after $((SECONDS - t0))s"
kubectl wait --for=condition=Failed job/job-fail --timeout=60s >/dev/null ||
	fail "job-fail did not fail"
log "job-fail (Never, simulate=fail): Failed ($(kubectl get job job-fail -o jsonpath='{.status.conditions[?(@.type=="Failed")].reason}')) after $((SECONDS - t0))s"
kubectl wait --for=condition=Failed job/job-onfailure-fail --timeout=60s >/dev/null ||
	fail "job-onfailure-fail did not fail"
log "job-onfailure-fail (OnFailure, simulate=fail, backoffLimit 2): Failed ($(kubectl get job job-onfailure-fail -o jsonpath='{.status.conditions[?(@.type=="Failed")].reason}')) after $((SECONDS - t0))s"
kubectl wait --for=condition=Complete job/job-ttl --timeout=60s >/dev/null ||
	fail "job-ttl did not complete"
ttl_completed=$(date -d "$(kubectl get job job-ttl -o jsonpath='{.status.completionTime}')" +%s)
kubectl wait --for=delete job/job-ttl --timeout=60s >/dev/null ||
	fail "job-ttl was not deleted by the TTL-after-finished controller"
log "job-ttl (ttlSecondsAfterFinished 5): deleted $(($(date +%s) - ttl_completed))s after its completionTime"
kubectl wait --for=condition=Complete job/job-slow --timeout=60s >/dev/null ||
	fail "job-slow did not complete"
log "job-slow (run-duration 8s): Complete after $((SECONDS - t0))s"

# Bare pods: Never finishes, Always runs forever (with or without simulated failure).
pod_yaml() {
	cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  annotations:
    hookguard.test/simulate: "$3"
spec:
  restartPolicy: $2
  containers:
  - name: main
    image: registry.invalid/never-pulled:1
EOF
}
pod_yaml pod-never Never ok | kubectl apply -f - >/dev/null
pod_yaml pod-never-fail Never fail | kubectl apply -f - >/dev/null
pod_yaml pod-always Always ok | kubectl apply -f - >/dev/null
pod_yaml pod-always-fail Always fail | kubectl apply -f - >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/pod-never --timeout=60s >/dev/null ||
	fail "pod-never did not succeed"
kubectl wait --for=jsonpath='{.status.phase}'=Failed pod/pod-never-fail --timeout=60s >/dev/null ||
	fail "pod-never-fail did not fail"
sleep 5
for p in pod-always pod-always-fail; do
	phase=$(kubectl get pod "$p" -o jsonpath='{.status.phase}')
	restarts=$(kubectl get pod "$p" -o jsonpath='{.status.containerStatuses[0].restartCount}')
	log "$p: phase=$phase restartCount=$restarts"
	[[ "$phase" == Running ]] || fail "$p (restartPolicy Always) left Running: $phase"
done
[[ "$(kubectl get pod pod-always -o jsonpath='{.status.containerStatuses[0].restartCount}')" == 0 ]] ||
	fail "pod-always restarted"
(($(kubectl get pod pod-always-fail -o jsonpath='{.status.containerStatuses[0].restartCount}') >= 2)) ||
	fail "pod-always-fail is not crash-looping"
kubectl delete pod pod-always pod-always-fail --wait=true --timeout=60s >/dev/null ||
	fail "deleting running pods did not finish"
log "deleted running pods (kwok: terminate -> delete)"

# --- helm --------------------------------------------------------------------------------------
mkdir -p "$work/chart"
chart=$work/chart/smoke
"$BIN/helm" create "$chart" >/dev/null
# A pre-install hook Job: helm waits for it to complete.
cat >"$chart/templates/pre-install-job.yaml" <<'EOF'
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "smoke.fullname" . }}-pre-install
  annotations:
    "helm.sh/hook": pre-install
    "helm.sh/hook-delete-policy": before-hook-creation,hook-succeeded
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: hook
        image: registry.invalid/never-pulled:1
EOF
t0=$SECONDS
"$BIN/helm" install smoke3 "$chart" --namespace helm3 --create-namespace --wait --timeout 120s >&2 ||
	fail "helm install (Helm 3) failed"
log "helm (v3) install with a pre-install hook Job and --wait: $((SECONDS - t0))s"
t0=$SECONDS
"$BIN/helm4" install smoke4 "$chart" --namespace helm4 --create-namespace --wait=watcher --timeout 120s >&2 ||
	fail "helm install (Helm 4) failed"
log "helm4 install with a pre-install hook Job and --wait=watcher: $((SECONDS - t0))s"
"$BIN/helm" list -A >&2
kubectl get jobs -A >&2
kubectl get pods -A -o wide >&2

ok=1
log "OK: smoke test passed"
