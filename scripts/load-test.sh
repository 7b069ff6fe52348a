#!/usr/bin/env bash
# Load test of `hookguard serve` over TLS, on loopback only.
#
# Builds the release binary, starts it with a generated self-signed certificate on free loopback
# ports, and drives it with oha (HTTP/1.1 keep-alive unless said otherwise):
#   mutate_max      POST /mutate, typical hook Job review, as fast as possible    (budget >= 15,000/s)
#   mutate_h2_max   the same over HTTP/2 (few connections, many streams: how kube-apiserver connects)
#   no_parse_415    the same body with Content-Type text/plain: TLS + HTTP + body read, no JSON
#                   parse (hookguard answers 415): the ceiling of this stack without the engine
#   livez_plain     GET /livez on the plain-HTTP admin port: no TLS, no body
#   mutate_rate     POST /mutate at a fixed rate (default 2,000/s), latency corrected  (p99 < 2 ms)
# and with --baseline the same load against scripts/bench-fixtures/baseline-server (hookguard's
# axum + axum-server + rustls stack without the engine, same certificate):
#   base_empty      GET /empty over TLS: no body to read
#   base_read       POST /read: reads the body, answers a fixed review
#   base_parse      POST /parse: parses the body into serde_json::Value, answers a review
#   base_parse_rate the same at the fixed rate: the tail latency of the bare stack on this machine
# and reads VmRSS/VmHWM of the server from /proc during and after the load      (RSS < 40 MiB).
# With --soak N it then runs N more seconds at the fixed rate and samples RSS every 10 s.
#
# Results (oha JSON per phase, summary.txt, server.log) go to --out (default
# target/load-test/<timestamp>). oha is installed with `cargo install oha --locked` when missing
# (once; it compiles for 10-30 minutes on 2 cores); curl and jq with apt-get when missing.
#
# Numbers are only meaningful on an otherwise idle machine: the load generator shares the cores
# with the server, and the 1-minute load average before each phase is recorded next to it.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/load-test.sh [options]
  --duration S          seconds of each max-throughput phase (default 20)
  --connections N       connections of the max-throughput phases (default 48)
  --rate R              requests/s of the fixed-rate phase and the soak (default 2000)
  --rate-duration S     seconds of the fixed-rate phase (default 20)
  --rate-repeat N       run the fixed-rate phase N times (default 1), to show how much its tail varies
  --rate-connections N  connections of the fixed-rate phase and the soak (default 16)
  --soak S              after the phases, S seconds at --rate sampling RSS every 10 s (default 0: no soak)
  --only-soak           skip the throughput and latency phases (use with --soak)
  --wait-idle S         before each phase wait up to S s for the other processes to leave the cores idle
  --baseline            also measure the bare-stack comparison server (built on first use)
  --perf                record a perf profile of the server during mutate_max (needs perf)
  --no-build            do not run cargo build --release
  --out DIR             where results go (default target/load-test/<timestamp>)
  --check               exit 1 when a budget is missed
EOF
}

DURATION=20
CONNECTIONS=48
RATE=2000
RATE_DURATION=20
RATE_CONNECTIONS=16
RATE_REPEAT=1
SOAK=0
ONLY_SOAK=0
PERF=0
BASELINE=0
WAIT_IDLE=0
BUILD=1
CHECK=0
OUT=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --rate-duration) RATE_DURATION="$2"; shift 2 ;;
    --rate-connections) RATE_CONNECTIONS="$2"; shift 2 ;;
    --rate-repeat) RATE_REPEAT="$2"; shift 2 ;;
    --soak) SOAK="$2"; shift 2 ;;
    --only-soak) ONLY_SOAK=1; shift ;;
    --perf) PERF=1; shift ;;
    --baseline) BASELINE=1; shift ;;
    --wait-idle) WAIT_IDLE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "load-test: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

for v in DURATION CONNECTIONS RATE RATE_DURATION RATE_CONNECTIONS RATE_REPEAT SOAK WAIT_IDLE; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "load-test: $v must be a whole number" >&2; exit 2; }
done
# Bounded: no phase runs longer than an hour.
(( DURATION >= 1 && DURATION <= 3600 && RATE_DURATION >= 1 && RATE_DURATION <= 3600 && SOAK <= 3600 && WAIT_IDLE <= 3600 )) \
  || { echo "load-test: durations must be 1..3600 s (soak and wait-idle 0..3600 s)" >&2; exit 2; }
(( RATE >= 1 && CONNECTIONS >= 1 && RATE_CONNECTIONS >= 1 && RATE_REPEAT >= 1 && RATE_REPEAT <= 20 )) || { echo "load-test: rate and connections must be >= 1" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BODY="$ROOT/scripts/bench-fixtures/job-review.json"
OUT="${OUT:-$ROOT/target/load-test/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }

# --- tools -------------------------------------------------------------------------------------
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "load-test: $* missing and cannot be installed here (needs root and apt-get)" >&2
    exit 1
  fi
  echo "load-test: installing $* with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v curl >/dev/null || apt_install curl
command -v jq >/dev/null || apt_install jq
if ! command -v oha >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/oha" ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "load-test: oha not found: installing it with 'cargo install oha --locked' (one time; 10-30 min on 2 cores)" >&2
    cargo install oha --locked
    PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if (( PERF )) && ! command -v perf >/dev/null; then
  echo "load-test: --perf needs perf (Debian: linux-perf)" >&2
  exit 1
fi

if (( BUILD )); then
  echo "load-test: cargo build --release" >&2
  cargo build --release --quiet
fi
BIN="$ROOT/target/release/hookguard"
[[ -x "$BIN" ]] || { echo "load-test: $BIN not built (drop --no-build)" >&2; exit 1; }
BASE_BIN="$ROOT/target/baseline-server/release/hookguard-baseline-server"
if (( BASELINE )) && { (( BUILD )) || [[ ! -x "$BASE_BIN" ]]; }; then
  echo "load-test: building scripts/bench-fixtures/baseline-server" >&2
  CARGO_TARGET_DIR="$ROOT/target/baseline-server" cargo build --release --quiet \
    --manifest-path "$ROOT/scripts/bench-fixtures/baseline-server/Cargo.toml"
fi

# --- server ------------------------------------------------------------------------------------
port_in_use() {
  if command -v ss >/dev/null; then
    ss -Hltn "sport = :$1" | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! port_in_use "$p" && [[ "$p" != "${1:-}" ]]; then echo "$p"; return 0; fi
  done
  echo "load-test: no free loopback port found" >&2
  return 1
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hookguard-load.XXXXXX")"
SERVER_PID=""
BASE_PID=""
SKIP_WAIT=0
BG_PIDS=()
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local rc=$?
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$BASE_PID" ]]; then
    kill -TERM "$BASE_PID" 2>/dev/null || true
    wait "$BASE_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(free_port)"
ADMIN="$(free_port "$PORT")"
"$BIN" serve --addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN" --cert-dir "$TMP/certs" --log warn \
  >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
TARGET_PID=$SERVER_PID  # the process whose RSS and CPU time run_phase reads
CA="$TMP/certs/ca.crt"
URL="https://127.0.0.1:$PORT"

for i in $(seq 100); do
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "load-test: server exited:" >&2; cat "$OUT/server.log" >&2; exit 1; }
  curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
  (( i == 100 )) && { echo "load-test: server not ready after 10 s" >&2; exit 1; }
  sleep 0.1
done

# The body must be answered with a patch, and the certificate must verify against the CA.
curl -fsS --cacert "$CA" -H 'Content-Type: application/json' --data-binary "@$BODY" "$URL/mutate" \
  | jq -e '.response.allowed == true and (.response.patch | length > 0)' >/dev/null \
  || { echo "load-test: POST /mutate did not return a patch" >&2; exit 1; }

# --- measuring ---------------------------------------------------------------------------------
kib() { awk "/^$1:/ {print \$2}" "/proc/${2:-$SERVER_PID}/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# Samples VmRSS (KiB) every $1 seconds into $2 as "seconds rss_kib" until killed.
sampler() {
  local every="$1" file="$2" start=$SECONDS
  while kill -0 "$TARGET_PID" 2>/dev/null; do
    echo "$((SECONDS - start)) $(kib VmRSS "$TARGET_PID")" >>"$file"
    sleep "$every"
  done
}

ms() { jq -r "$1 // empty | . * 1000 | (. * 1000 | round) / 1000" "$2"; }

# CPU accounting, so that a number taken on a busy machine can be recognized as such.
NCPU="$(nproc)"
TICK="$(getconf CLK_TCK)"
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6}' /proc/stat; }
srv_ticks() { awk '{print $14 + $15}' "/proc/$TARGET_PID/stat"; }
# Percentage of all cores busy over the next $1 seconds.
busy_pct() {
  local a b
  read -r -a a < <(cpu_ticks); sleep "$1"; read -r -a b < <(cpu_ticks)
  awk -v t="$(( b[0] - a[0] ))" -v i="$(( b[1] - a[1] ))" 'BEGIN {printf "%.0f", t ? 100 * (t - i) / t : 0}'
}
# --wait-idle: before each phase, wait (bounded) until other work leaves the cores alone.
wait_idle() {
  (( WAIT_IDLE > 0 )) || return 0
  local start=$SECONDS b
  while true; do
    b="$(busy_pct 3)"
    (( b <= 10 )) && return 0
    if (( SECONDS - start >= WAIT_IDLE )); then
      echo "load-test: machine still ${b}% busy after waiting ${WAIT_IDLE} s; measuring anyway" >&2
      return 0
    fi
  done
}

# run_phase NAME LOAD_ARGS...: runs oha with JSON output into $OUT/NAME.json and prints one line:
# busy% = all cores busy during the phase, srv% and gen% = the server's and oha's share of all
# cores, other% = what the rest of the machine took (should be ~0 for a clean number),
# srv_us/req = server CPU time per answered request.
run_phase() {
  local name="$1"; shift
  local json="$OUT/$name.json" rss="$OUT/$name.rss" c0 c1 s0 s1 t0 t1 gen
  (( SKIP_WAIT )) || wait_idle
  : >"$rss"
  sampler 1 "$rss" & local sp=$!
  BG_PIDS+=("$sp")
  read -r -a c0 < <(cpu_ticks); s0="$(srv_ticks)"; t0="$(date +%s.%N)"
  local TIMEFORMAT='%U %S'
  gen="$( { time oha --no-tui --output-format json -o "$json" "$@" >/dev/null; } 2>&1 | tail -n 1)"
  read -r -a c1 < <(cpu_ticks); s1="$(srv_ticks)"; t1="$(date +%s.%N)"
  kill "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  local n rps codes errors rssmax acct
  n="$(jq '[.statusCodeDistribution[]] | add // 0' "$json")"
  rps="$(jq -r '.summary.requestsPerSec | round' "$json")"
  codes="$(jq -c '.statusCodeDistribution' "$json")"
  errors="$(jq -c '.errorDistribution' "$json")"
  rssmax="$(awk 'max < $2 {max = $2} END {printf "%.1f", max / 1024}' "$rss")"
  acct="$(awk -v tt="$(( c1[0] - c0[0] ))" -v ti="$(( c1[1] - c0[1] ))" -v st="$(( s1 - s0 ))" \
      -v tick="$TICK" -v ncpu="$NCPU" -v w0="$t0" -v w1="$t1" -v gen="$gen" -v n="$n" 'BEGIN {
        split(gen, g, " "); wall = w1 - w0; cap = wall * ncpu
        busy = tt ? 100 * (tt - ti) / tt : 0; srv = 100 * st / tick / cap; gp = 100 * (g[1] + g[2]) / cap
        other = busy - srv - gp; if (other < 0) other = 0
        printf "%5.0f %5.0f %5.0f %6.0f %10.1f", busy, srv, gp, other, n ? 1e6 * st / tick / n : 0 }')"
  LAST_SRV_US="$(awk '{print $5}' <<<"$acct")"
  printf '%-14s %9s %8s %8s %8s %8s %8s %8s %8s %s %s %s\n' "$name" "$n" "$rps" \
    "$(ms '.latencyPercentiles.p50' "$json")" "$(ms '.latencyPercentiles.p90' "$json")" \
    "$(ms '.latencyPercentiles.p99' "$json")" "$(ms '.latencyPercentiles["p99.9"]' "$json")" \
    "$(ms '.summary.slowest' "$json")" "$rssmax" "$acct" "$codes" "$errors" | tee -a "$SUMMARY"
}

# Where the server's CPU time goes, by component: self time of perf samples grouped by symbol,
# as a share and as server CPU microseconds per request ($2).
perf_categories() {
  perf report -i "$1" --no-children --sort dso,symbol --stdio -g none --percent-limit 0 2>/dev/null \
    | awk '/^ +[0-9.]+%/ {
        p = $1 + 0; dso = $2; $1 = ""; $2 = ""; $3 = ""; s = $0
        if (dso ~ /kernel/) c = "kernel (syscalls, loopback TCP, scheduling)"
        else if (dso ~ /libc/ && s ~ /malloc|free|_int_|consolidate|realloc|calloc|unlink_chunk|tcache/) c = "malloc/free"
        else if (dso ~ /libc/ && s ~ /mem(move|cpy|set|cmp)/) c = "memcpy/memmove"
        else if (s ~ /serde_json::de|serde_json::read|[Dd]eserializ|Visitor|opt_cow|from_utf8/) c = "JSON parse (serde_json de)"
        else if (s ~ /serde_json::ser|[Ss]erializ|itoa|ryu/) c = "JSON serialize (serde_json ser)"
        else if (s ~ /ring_core|aes|gcm|ghash|chacha|poly1305/) c = "TLS record crypto (ring)"
        else if (s ~ /rustls/) c = "rustls"
        else if (s ~ /hyper/) c = "hyper (HTTP)"
        else if (s ~ /tokio|mio::/) c = "tokio/mio"
        else if (s ~ /axum|tower/) c = "axum/tower"
        else if (s ~ /json_patch|jsonptr/) c = "json_patch"
        else if (s ~ /base64/) c = "base64"
        else if (s ~ /prometheus|sip::Hasher/) c = "metrics (prometheus)"
        else if (s ~ /tracing/) c = "tracing"
        else if (s ~ /hookguard::/) c = "hookguard (engine, routes)"
        else if (s ~ /fmt/) c = "core::fmt"
        else c = "other"
        sum[c] += p }
      END { for (c in sum) printf "%6.2f%% %7.1f us/req  %s\n", sum[c], sum[c] * us / 100, c }' us="$2" | sort -rn
}

# profiled_phase NAME LOAD_ARGS...: run_phase, with --perf a CPU profile of the server during it.
profiled_phase() {
  local name="$1" pp=""
  if (( PERF )); then
    wait_idle
    SKIP_WAIT=1
    perf record -q -F 999 -p "$TARGET_PID" -o "$OUT/$name.perf.data" -- sleep "$(( DURATION > 4 ? DURATION - 2 : DURATION ))" \
      >/dev/null 2>&1 & pp=$!
    BG_PIDS+=("$pp")
  fi
  run_phase "$@"
  SKIP_WAIT=0
  if [[ -n "$pp" ]]; then
    wait "$pp" 2>/dev/null || true
    perf_categories "$OUT/$name.perf.data" "$LAST_SRV_US" >"$OUT/$name.perf-categories.txt"
    perf report -i "$OUT/$name.perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.5 2>/dev/null \
      | grep -E '^ +[0-9]' | sed 's/ *$//' >"$OUT/$name.perf-top.txt" || true
  fi
}

JSON_POST=(-m POST -H 'Content-Type: application/json' -D "$BODY" --cacert "$CA")
{
  echo "# hookguard load test, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f MiB", $2/1024}' /proc/meminfo)"
  echo "# $(rustc --version), $(oha --version), hookguard $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "# body: $BODY ($(wc -c <"$BODY") bytes); server: $BIN serve --log warn (pid $SERVER_PID)"
  echo "# RSS at start: $(mib "$(kib VmRSS)") MiB"
} | tee -a "$SUMMARY" >&2

printf '%-14s %9s %8s %8s %8s %8s %8s %8s %8s %5s %5s %5s %6s %10s %s\n' phase requests "req/s" \
  p50_ms p90_ms p99_ms p99.9_ms max_ms rss_mib busy% srv% gen% other% srv_us/req "status codes / errors" \
  | tee -a "$SUMMARY" >&2

# Warm up (connections, allocator, page cache); not recorded.
oha --no-tui --output-format quiet -z 3s -c "$CONNECTIONS" "${JSON_POST[@]}" "$URL/mutate" >/dev/null

if (( ! ONLY_SOAK )); then
  profiled_phase mutate_max -c "$CONNECTIONS" -z "${DURATION}s" "${JSON_POST[@]}" "$URL/mutate"
  H2_CONNS=4
  run_phase mutate_h2_max --http2 -c "$H2_CONNS" -p "$(( (CONNECTIONS + H2_CONNS - 1) / H2_CONNS ))" -z "${DURATION}s" \
    "${JSON_POST[@]}" "$URL/mutate"
  profiled_phase no_parse_415 -c "$CONNECTIONS" -z "${DURATION}s" -m POST -H 'Content-Type: text/plain' -D "$BODY" \
    --cacert "$CA" "$URL/mutate"
  run_phase livez_plain -c "$CONNECTIONS" -z "${DURATION}s" "http://127.0.0.1:$ADMIN/livez"
  for r in $(seq "$RATE_REPEAT"); do
    RATE_PHASE="mutate_rate$( (( RATE_REPEAT > 1 )) && echo "_$r" || true)"
    run_phase "$RATE_PHASE" -q "$RATE" --latency-correction -c "$RATE_CONNECTIONS" -z "${RATE_DURATION}s" \
      "${JSON_POST[@]}" "$URL/mutate"
  done
  if (( BASELINE )); then
    BPORT="$(free_port "$PORT")"
    "$BASE_BIN" "127.0.0.1:$BPORT" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" >"$OUT/baseline-server.log" 2>&1 &
    BASE_PID=$!
    for i in $(seq 100); do
      kill -0 "$BASE_PID" 2>/dev/null || { echo "load-test: baseline server exited:" >&2; cat "$OUT/baseline-server.log" >&2; exit 1; }
      curl -fsS --cacert "$CA" "https://127.0.0.1:$BPORT/empty" >/dev/null 2>&1 && break
      (( i == 100 )) && { echo "load-test: baseline server not up after 10 s" >&2; exit 1; }
      sleep 0.1
    done
    TARGET_PID=$BASE_PID
    oha --no-tui --output-format quiet -z 3s -c "$CONNECTIONS" "${JSON_POST[@]}" "https://127.0.0.1:$BPORT/parse" >/dev/null
    profiled_phase base_empty -c "$CONNECTIONS" -z "${DURATION}s" --cacert "$CA" "https://127.0.0.1:$BPORT/empty"
    profiled_phase base_read -c "$CONNECTIONS" -z "${DURATION}s" "${JSON_POST[@]}" "https://127.0.0.1:$BPORT/read"
    profiled_phase base_parse -c "$CONNECTIONS" -z "${DURATION}s" "${JSON_POST[@]}" "https://127.0.0.1:$BPORT/parse"
    for r in $(seq "$RATE_REPEAT"); do
      run_phase "base_parse_rate$( (( RATE_REPEAT > 1 )) && echo "_$r")" -q "$RATE" --latency-correction \
        -c "$RATE_CONNECTIONS" -z "${RATE_DURATION}s" "${JSON_POST[@]}" "https://127.0.0.1:$BPORT/parse"
    done
    TARGET_PID=$SERVER_PID
    kill -TERM "$BASE_PID" 2>/dev/null || true
    wait "$BASE_PID" 2>/dev/null || true
    BASE_PID=""
  fi
  sleep 5
  say "RSS 5 s after the load: VmRSS $(mib "$(kib VmRSS)") MiB, VmHWM (peak since start) $(mib "$(kib VmHWM)") MiB"
fi

if (( SOAK > 0 )); then
  say ""
  say "soak: POST /mutate at $RATE/s for $SOAK s, $RATE_CONNECTIONS connections; VmRSS every 10 s:"
  wait_idle
  SOAK_RSS="$OUT/soak.rss"
  : >"$SOAK_RSS"
  oha --no-tui --output-format json -o "$OUT/soak.json" -q "$RATE" --latency-correction -c "$RATE_CONNECTIONS" \
    -z "${SOAK}s" "${JSON_POST[@]}" "$URL/mutate" & SOAK_PID=$!
  BG_PIDS+=("$SOAK_PID")
  sampler 10 "$SOAK_RSS" & SP=$!
  BG_PIDS+=("$SP")
  wait "$SOAK_PID" || true
  kill "$SP" 2>/dev/null || true
  wait "$SP" 2>/dev/null || true
  awk '{printf "  t=%4ss  VmRSS %.1f MiB\n", $1, $2 / 1024}' "$SOAK_RSS" | tee -a "$SUMMARY"
  awk 'NR == 1 {first = $2} {last = $2; if ($2 > max) max = $2; if (min == "" || $2 < min) min = $2}
       END {printf "soak RSS: first %.1f MiB, last %.1f MiB, min %.1f, max %.1f, last-first %+.1f MiB\n",
            first/1024, last/1024, min/1024, max/1024, (last-first)/1024}' "$SOAK_RSS" | tee -a "$SUMMARY"
  say "soak: $(jq '[.statusCodeDistribution[]] | add // 0' "$OUT/soak.json") requests, $(jq -r '.summary.requestsPerSec | round' "$OUT/soak.json") req/s, p50 $(ms '.latencyPercentiles.p50' "$OUT/soak.json") ms, p99 $(ms '.latencyPercentiles.p99' "$OUT/soak.json") ms, p99.9 $(ms '.latencyPercentiles["p99.9"]' "$OUT/soak.json") ms, codes $(jq -c .statusCodeDistribution "$OUT/soak.json"), errors $(jq -c .errorDistribution "$OUT/soak.json")"
  say "VmHWM (peak since start) $(mib "$(kib VmHWM)") MiB"
fi

# --- budgets -----------------------------------------------------------------------------------
MISSED=0
budget() { # name measured op limit unit
  local verdict
  if awk -v m="$2" -v l="$4" -v op="$3" 'BEGIN {exit !((op == ">=" && m >= l) || (op == "<" && m < l))}'; then
    verdict="met"
  else
    verdict="MISSED"; MISSED=1
  fi
  say "$(printf 'budget %-34s %10s %s %s %s: %s' "$1" "$2" "$3" "$4" "$5" "$verdict")"
}
say ""
if (( ! ONLY_SOAK )); then
  budget "throughput (mutate_max, HTTP/1.1)" "$(jq -r '.summary.requestsPerSec | round' "$OUT/mutate_max.json")" ">=" 15000 "req/s"
  for f in "$OUT"/mutate_rate*.json; do
    [[ -e "$f" ]] || continue
    budget "p99 at $RATE/s ($(basename "$f" .json))" "$(ms '.latencyPercentiles.p99' "$f")" "<" 2 "ms"
  done
fi
budget "RSS peak (VmHWM)" "$(mib "$(kib VmHWM)")" "<" 40 "MiB"
say "results: $OUT"
if (( CHECK && MISSED )); then exit 1; fi
exit 0
