#!/usr/bin/env bash
# Client credentials with opaque and with JWT access tokens, side by side:
# each run starts a fresh server and alternates the two clients (A, B, A,
# B…) at each concurrency, so both see the same machine state.
#
#   scripts/bench-jwt.sh [RUNS] [DURATION]     (defaults: 3 runs of 6s)
#
# Prints one JSON line per run (req/s, p50/p99 ms, server CPU ms per
# grant, peak RSS) and the medians; BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
runs=${1:-3}
dur=${2:-6s}
. scripts/bench/env.sh

basic_of() { printf '%s' "$1:$2" | base64 -w0; }
opaque=$(python3 -c "import json,base64,sys; s=json.load(open(sys.argv[1])); print(base64.b64encode((s['client_id']+':'+s['client_secret']).encode()).decode())" "$out/state.json")
created=$("$out/latchkey" clients create --name "Bench JWT" --first-party --grant-type client_credentials --scope profile --jwt-access-tokens)
jwt=$(basic_of "$(echo "$created" | awk '/client_id:/ {print $2}')" "$(echo "$created" | awk '/client_secret:/ {print $2}')")

results="$out/results-jwt.jsonl"
: > "$results"
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
run_one() { # label basic concurrency
  "$out/latchkey" serve >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "$LATCHKEY_ISSUER/health/ready" >/dev/null && break; sleep 0.1; done
  local threads=$(( $3 < 2 ? 1 : 2 ))
  SCENARIO=$1 BASIC=$2 CONC=$3 wrk -t"$threads" -c"$3" -d2s -s scripts/bench/client_credentials.lua "$LATCHKEY_ISSUER/oauth2/token" >/dev/null
  local before line after rss
  before=$(cpu_ms "$pid")
  line=$(SCENARIO=$1 BASIC=$2 CONC=$3 wrk -t"$threads" -c"$3" -d"$dur" -s scripts/bench/client_credentials.lua "$LATCHKEY_ISSUER/oauth2/token" | tail -n1)
  after=$(cpu_ms "$pid")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  pid=
  python3 - "$line" "$before" "$after" "$rss" <<'PY' | tee -a "$results"
import json, sys
r = json.loads(sys.argv[1]); cpu = float(sys.argv[3]) - float(sys.argv[2])
r["server_cpu_ms_per_grant"] = round(cpu / max(r["ok"], 1), 4); r["peak_rss_mb"] = int(sys.argv[4]) // 1024
print(json.dumps(r))
PY
}
for c in 1 16 64; do
  for _ in $(seq 1 "$runs"); do
    run_one opaque "$opaque" "$c"
    run_one jwt "$jwt" "$c"
  done
done

python3 scripts/bench/summary.py "$results"
