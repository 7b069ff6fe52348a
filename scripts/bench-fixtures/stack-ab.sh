#!/usr/bin/env bash
# Interleaved A/B of hookguard against its bare HTTP+TLS stack, at max throughput (48 connections,
# HTTP/1.1 keep-alive, the Job review as body), ROUNDS rounds, each target SECONDS long:
#   bare-read / hg-415     body read, no parse: scripts/bench-fixtures/baseline-server POST /read
#                          vs hookguard POST /mutate with Content-Type text/plain (415)
#   bare-parse / hg-mutate parse into serde_json::Value vs hookguard's whole /mutate
#   all-settings-read      the bare stack plus every hookguard server setting (body limit, timeout
#                          layer, HTTP/1 header-read timer, HTTP/2 keep-alive timer): /read
#   *-h2                   over HTTP/2, 4 connections x 12 streams (kube-apiserver speaks HTTP/2 to
#                          webhooks): bare /parse with and without TCP_NODELAY, hookguard /mutate
# Prints req/s and the server's CPU microseconds per request (from /proc/<pid>/stat).
# Needs scripts/load-test.sh --baseline to have run once (builds both servers, installs oha).
# usage: scripts/bench-fixtures/stack-ab.sh [SECONDS (default 10)] [ROUNDS (default 2)]
set -euo pipefail
SECS="${1:-10}"; ROUNDS="${2:-2}"
(( SECS >= 1 && SECS <= 120 && ROUNDS >= 1 && ROUNDS <= 10 )) || { echo "bounds: SECONDS 1..120, ROUNDS 1..10" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_BIN="$ROOT/target/baseline-server/release/hookguard-baseline-server"
HG="$ROOT/target/release/hookguard"
BODY="$ROOT/scripts/bench-fixtures/job-review.json"
PATH="$HOME/.cargo/bin:$PATH"
[[ -x "$BASE_BIN" && -x "$HG" ]] || { echo "run scripts/load-test.sh --baseline first" >&2; exit 1; }
TMP="$(mktemp -d)"; PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
"$HG" certs generate --out "$TMP/certs" --dns localhost --ip 127.0.0.1 >/dev/null
TICK="$(getconf CLK_TCK)"
port() { echo $((20000 + RANDOM % 40000)); }
printf '%-32s %9s %11s %8s %8s\n' target "req/s" "srv_us/req" p50_ms p99_ms
for round in $(seq "$ROUNDS"); do
  for target in bare-read hg-415 all-settings-read bare-parse hg-mutate bare-parse-h2 bare-parse-h2-nodelay hg-mutate-h2; do
    p="$(port)"; ct="application/json"; conns=(-c 48)
    case "$target" in
      bare-read) "$BASE_BIN" "127.0.0.1:$p" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" & path=/read ;;
      all-settings-read) "$BASE_BIN" "127.0.0.1:$p" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" limit,timeout,h1timer,h2ka & path=/read ;;
      bare-parse) "$BASE_BIN" "127.0.0.1:$p" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" & path=/parse ;;
      bare-parse-h2) "$BASE_BIN" "127.0.0.1:$p" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" & path=/parse ;;
      bare-parse-h2-nodelay) "$BASE_BIN" "127.0.0.1:$p" "$TMP/certs/tls.crt" "$TMP/certs/tls.key" nodelay & path=/parse ;;
      hg-415|hg-mutate|hg-mutate-h2)
        "$HG" serve --addr "127.0.0.1:$p" --admin-addr "127.0.0.1:$(port)" --tls-cert "$TMP/certs/tls.crt" \
          --tls-key "$TMP/certs/tls.key" --log warn >/dev/null &
        path=/mutate; [[ "$target" == hg-415 ]] && ct="text/plain" ;;
    esac
    PID=$!
    [[ "$target" == *-h2* ]] && conns=(--http2 -c 4 -p 12)
    for _ in $(seq 50); do curl -fsS --cacert "$TMP/certs/ca.crt" -o /dev/null -H "Content-Type: $ct" --data-binary "@$BODY" "https://127.0.0.1:$p$path" 2>/dev/null && break; [[ "$ct" == text/plain ]] && break; sleep 0.1; done
    sleep 0.3
    load=("${conns[@]}" -m POST -H "Content-Type: $ct" -D "$BODY" --cacert "$TMP/certs/ca.crt" "https://127.0.0.1:$p$path")
    oha --no-tui --output-format quiet -z 2s "${load[@]}" >/dev/null
    s0="$(awk '{print $14 + $15}' "/proc/$PID/stat")"
    oha --no-tui --output-format json -o "$TMP/o.json" -z "${SECS}s" "${load[@]}" >/dev/null
    s1="$(awk '{print $14 + $15}' "/proc/$PID/stat")"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    n="$(jq '[.statusCodeDistribution[]] | add // 0' "$TMP/o.json")"
    rps="$(jq -r '.summary.requestsPerSec | round' "$TMP/o.json")"
    awk -v t="$target (round $round)" -v n="$n" -v rps="$rps" -v st="$((s1 - s0))" -v tick="$TICK" \
      -v p50="$(jq '.latencyPercentiles.p50 * 1000' "$TMP/o.json")" -v p99="$(jq '.latencyPercentiles.p99 * 1000' "$TMP/o.json")" \
      'BEGIN {printf "%-32s %9s %11.1f %8.2f %8.2f\n", t, rps, 1e6 * st / tick / n, p50, p99}'
  done
done
