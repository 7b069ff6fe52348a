# shellcheck shell=bash disable=SC2154  # work and BIN come from the caller
# A throwaway Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver,
# kube-controller-manager) with its own openssl PKI, shared by smoke.sh and
# scripts/capture-fixtures.sh so that both start it the same way. README.md
# ("Running the control plane on loopback") explains the flags.
#
# Source it, with the log tag as argument:
#   . tests/e2e/tools/control-plane.sh smoke
# The caller sets `set -euo pipefail`, `work` (an existing directory: logs,
# pki/, kubeconfig) and `BIN` (the tools' bin directory) before calling the
# functions, installs its own EXIT trap (stopping is not the same in both
# scripts) and sets ok=1 once everything passed.
#
# Variables:  pids names (components started, in order), ok (0 until the caller
#             says otherwise), t_start, pki, etcd_port, etcd_peer_port, api_port
# Functions:  log fail start free_port wait_for cp_client_env cp_pki cp_sign
#             cp_start_etcd cp_start_apiserver cp_start_controller_manager
#             cp_finish

[[ "${BASH_SOURCE[0]}" != "$0" ]] || {
	echo "control-plane.sh: source it, do not run it" >&2
	exit 1
}

cp_tag=${1:?control-plane.sh: give the log tag as argument}
pids=()
names=()
ok=0
t_start=$SECONDS

log() { printf '[%s %3ds] %s\n' "$cp_tag" "$((SECONDS - t_start))" "$*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}

# start NAME CMD...: run in the background, log to $work/NAME.log
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=("$!")
	names+=("$name")
}

# A free TCP port on 127.0.0.1 (nothing accepts a connection to it), taken
# OUTSIDE the kernel's ephemeral range: a port inside it may be the local end of
# some client connection, which makes bind() fail although nothing listens.
used_ports=" "
port_lo=15000 port_hi=32000
if read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
	if ((eph_lo > 11000)); then
		port_lo=10000 port_hi=$((eph_lo - 1))
	else
		port_lo=$((eph_hi + 1)) port_hi=65000
	fi
fi
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((port_lo + (RANDOM * 32768 + RANDOM) % (port_hi - port_lo + 1)))
		[[ "$used_ports" == *" $p "* ]] && continue
		if ! (exec 7<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			printf '%s\n' "$p"
			return
		fi
	done
	fail "no free port found"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
	local what=$1 timeout=$2 t0=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - t0 >= timeout)); then
			fail "timed out after ${timeout}s waiting for $what"
		fi
		local i
		for i in "${pids[@]}"; do
			kill -0 "$i" 2>/dev/null || fail "a component exited while waiting for $what"
		done
		sleep 0.2
	done
	log "$what: ready after $((SECONDS - t0))s"
}

# cp_client_env: kubectl and helm read and write only below $work, never $HOME
# (KUBERC=off: kubectl 1.36 would read ~/.kube/kuberc).
cp_client_env() {
	export KUBECONFIG=$work/admin.kubeconfig
	export KUBECACHEDIR=$work/kube-cache
	export KUBERC=off
	export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data
}

# cp_pki CA_CN ADMIN_SUBJECT: sets pki=$work/pki and makes in it ca.crt/key,
# apiserver.crt/key, admin.crt/key and sa.key/pub, valid for two days.
cp_pki() {
	local ca_cn=$1 admin_subject=$2
	log "work dir: $work; generating certificates"
	pki=$work/pki
	mkdir -p "$pki"
	(
		cd "$pki" || exit
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout ca.key -out ca.crt -days 2 -subj "/CN=$ca_cn" 2>/dev/null
		# kube-apiserver serving certificate; the caller may reuse it for other
		# servers on 127.0.0.1 (kwok's kubelet server).
		cat >serving.ext <<-EOF
			basicConstraints=CA:FALSE
			keyUsage=critical,digitalSignature,keyEncipherment
			extendedKeyUsage=serverAuth
			subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1
		EOF
		cp_sign apiserver "/CN=kube-apiserver" serving.ext
		# Admin client certificate: give it O=system:masters, which bypasses RBAC.
		cat >client.ext <<-EOF
			basicConstraints=CA:FALSE
			keyUsage=critical,digitalSignature,keyEncipherment
			extendedKeyUsage=clientAuth
		EOF
		cp_sign admin "$admin_subject" client.ext
		# service-account token signing key pair
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
		openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
	)
}

# cp_sign NAME SUBJECT EXT_FILE: $pki/NAME.key (EC P-256) and $pki/NAME.crt,
# signed by the CA of cp_pki with the extensions in $pki/EXT_FILE.
cp_sign() (
	cd "$pki" || exit
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
		-days 2 -extfile "$3" -out "$1.crt" 2>/dev/null
)

# cp_start_etcd NAME: etcd member NAME on two free ports (sets etcd_port,
# etcd_peer_port) and waits until it is healthy. Both listen URLs are given,
# else etcd also binds 2379/2380; no fsync, the data is thrown away.
cp_start_etcd() {
	local name=$1
	etcd_port=$(free_port)
	etcd_peer_port=$(free_port)
	start etcd "$BIN/etcd" \
		--name="$name" \
		--data-dir="$work/etcd" \
		--listen-client-urls="http://127.0.0.1:$etcd_port" \
		--advertise-client-urls="http://127.0.0.1:$etcd_port" \
		--listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster="$name=http://127.0.0.1:$etcd_peer_port" \
		--unsafe-no-fsync \
		--log-level=warn
	wait_for "etcd" 30 cp_etcd_healthy
}
cp_etcd_healthy() { [[ "$(exec 8<>"/dev/tcp/127.0.0.1/$etcd_port" && printf 'GET /health HTTP/1.0\r\n\r\n' >&8 && cat <&8)" == *'"health":"true"'* ]]; }

# cp_start_apiserver CLUSTER USER [FLAG...]: kube-apiserver on a free port
# (sets api_port) with the extra FLAGs, writes $KUBECONFIG (cluster and context
# CLUSTER, user USER with the admin certificate) and waits for /readyz.
# Loopback is not a valid Endpoints address, hence no endpoint reconciler.
cp_start_apiserver() {
	local cluster=$1 user=$2
	shift 2
	api_port=$(free_port)
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 \
		--secure-port="$api_port" \
		--tls-cert-file="$pki/apiserver.crt" \
		--tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16 \
		--authorization-mode=Node,RBAC \
		"$@" \
		--endpoint-reconciler-type=none

	cat >"$KUBECONFIG" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: $cluster
		  cluster:
		    server: https://127.0.0.1:$api_port
		    certificate-authority: $pki/ca.crt
		users:
		- name: $user
		  user:
		    client-certificate: $pki/admin.crt
		    client-key: $pki/admin.key
		contexts:
		- name: $cluster
		  context:
		    cluster: $cluster
		    user: $user
		    namespace: default
		current-context: $cluster
	EOF
	chmod 600 "$KUBECONFIG"
	wait_for "kube-apiserver /readyz" 120 kubectl get --raw /readyz
}

# cp_start_controller_manager: all controllers (serviceaccount, job, ...), each
# with its own ServiceAccount credentials as in a real cluster; no leader
# election for a single instance.
cp_start_controller_manager() {
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$KUBECONFIG" \
		--authentication-kubeconfig="$KUBECONFIG" \
		--authorization-kubeconfig="$KUBECONFIG" \
		--bind-address=127.0.0.1 \
		--secure-port="$(free_port)" \
		--leader-elect=false \
		--controllers='*' \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$pki/sa.key" \
		--root-ca-file="$pki/ca.crt"
}

# cp_finish LOG_LINES KEEP: for the EXIT trap, after the components are
# stopped. On failure (ok=0) shows the end of every component's log and keeps
# $work for a look; on success removes $work unless KEEP is 1.
cp_finish() {
	local lines=$1 keep=$2 name
	if ((ok == 0)); then
		for name in "${names[@]+"${names[@]}"}"; do
			echo "===== last $lines lines of $name log ($work/$name.log) =====" >&2
			tail -n "$lines" "$work/$name.log" >&2 || true
		done
	fi
	if [[ "$keep" == 1 || $ok == 0 ]]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
