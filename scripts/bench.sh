#!/usr/bin/env bash
# Benchmarks the token endpoint and the full login flow against PostgreSQL,
# with the server in its own process so its peak RSS can be read.
#
#   scripts/bench.sh [RUNS] [DURATION]     (defaults: 3 runs of 8s each)
#   scripts/bench.sh --peer 'COMMAND' [RUNS] [DURATION]
#   SCENARIOS="authcode" scripts/bench.sh …   (only these of client_credentials, refresh, authcode)
#
# Prints one JSON line per run and a median summary; BENCHMARKS.md quotes it.
#
# With --peer, only the client-credentials rows run, and after each
# Latchkey run COMMAND runs once with CONC (connections) and DUR (duration)
# in its environment: Latchkey, peer, Latchkey, peer… so both are measured
# on the same machine state. COMMAND prints one JSON line like ours
# ({"scenario": "…", "concurrency": N, "per_second": …, "p50_ms": …,
# "p99_ms": …, "errors": N}), e.g. wrk against a Hydra started beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
peer=
if [ "${1:-}" = --peer ]; then
  peer=$2
  shift 2
fi
runs=${1:-3}
dur=${2:-8s}
. scripts/bench/env.sh

results="$out/results.jsonl"
: > "$results"
run_one() { # scenario concurrency
  start_server
  local line
  if [ "$1" = client_credentials ]; then
    # wrk (C, event loop) leaves more of the two cores to the server than a
    # Go client would; the first seconds warm the pool and are discarded.
    local threads=$(( $2 < 2 ? 1 : 2 ))
    BASIC=$basic CONC=$2 wrk -t"$threads" -c"$2" -d2s -s scripts/bench/client_credentials.lua "$LATCHKEY_ISSUER/oauth2/token" >/dev/null
    line=$(BASIC=$basic CONC=$2 wrk -t"$threads" -c"$2" -d"$dur" -s scripts/bench/client_credentials.lua "$LATCHKEY_ISSUER/oauth2/token" | tail -n1)
  else
    line=$("$out/latchkey-load" -issuer "$LATCHKEY_ISSUER" -state "$out/state.json" -scenario "$1" -c "$2" -d "$dur" -warmup 2s)
  fi
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  stop_server
  echo "${line%\}},\"peak_rss_mb\":$((rss / 1024))}" | tee -a "$results"
}
if [ -n "$peer" ]; then
  for c in 1 16 64; do
    for _ in $(seq 1 "$runs"); do
      run_one client_credentials "$c"
      CONC=$c DUR=$dur bash -c "$peer" | tail -n1 | tee -a "$results"
    done
  done
else
  scenarios=" ${SCENARIOS:-client_credentials refresh authcode} "
  for scenario in client_credentials refresh; do
    [[ $scenarios == *" $scenario "* ]] || continue
    for c in 1 16 32; do
      for _ in $(seq 1 "$runs"); do run_one "$scenario" "$c"; done
    done
  done
  # Sign-ins, each run followed by the ceiling for sign-ins: argon2id
  # alone, at the server's default hash concurrency (half the CPUs: 1
  # here), so the ratio compares runs taken side by side.
  for c in 1 16 32; do
    [[ $scenarios == *" authcode "* ]] || break
    for _ in $(seq 1 "$runs"); do
      run_one authcode "$c"
      "$out/latchkey-load" -scenario argon2 -c 1 -d "$dur" -warmup 1s | tee -a "$results"
    done
  done
fi

python3 scripts/bench/summary.py "$results"
