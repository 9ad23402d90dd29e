#!/usr/bin/env bash
# Legitimate sign-ins under a flood of wrong passwords, with the production
# limits (per-address rate limits, bounded hash queue, lockout) in force.
#
#   scripts/bench-flood.sh [RUNS] [DURATION]     (defaults: 3 runs of 10s)
#
# Three cases, interleaved per run: no flood; 32 attackers from one address;
# 64 attackers from 64 addresses (each under its own rate limit). Legitimate
# users (2 workers, password + TOTP, each sign-in from the next of 250
# addresses) are measured in each.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
runs=${1:-3}
dur=${2:-10s}
. scripts/bench/env.sh
unset LATCHKEY_RATE_LIMITS_SIGN_IN_PER_MINUTE LATCHKEY_RATE_LIMITS_TOKEN_PER_MINUTE LATCHKEY_PASSWORDS_HASH_QUEUE

results="$out/flood.jsonl"
: > "$results"
run_one() { # case attackers attack-ips
  start_server
  local lines
  lines=$("$out/latchkey-load" -issuer "$LATCHKEY_ISSUER" -state "$out/state.json" -scenario flood -c 2 -d "$dur" -attackers "$2" -attack-ips "$3")
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  stop_server
  python3 -c 'import json,sys; rows=[json.loads(l) for l in sys.argv[2].splitlines()]; r=rows[0]; r["case"]=sys.argv[1]; r["peak_rss_mb"]=int(sys.argv[3])//1024; r.update(rows[1] if len(rows)>1 else {}); print(json.dumps(r))' "$1" "$lines" "$rss" | tee -a "$results"
}
for _ in $(seq 1 "$runs"); do
  run_one "no flood" 0 0
  run_one "32 attackers, 1 address" 32 1
  run_one "64 attackers, 64 addresses" 64 64
done

python3 - "$results" <<'PY'
import json, sys, statistics, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
g = collections.defaultdict(list)
for r in rows: g[r["case"]].append(r)
print("\n| case | legitimate sign-ins/s | p50 ms | p99 ms | legitimate errors | flood answers (all runs) | peak RSS MB |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for c, rs in g.items():
    med = lambda k: statistics.median(r.get(k, 0) for r in rs)
    ans = collections.Counter()
    for r in rs: ans.update(r.get("flood_answers", {}))
    print(f"| {c} | {med('per_second'):.1f} | {med('p50_ms'):.0f} | {med('p99_ms'):.0f} | {sum(r['errors'] for r in rs)} | {dict(ans) or '-'} | {med('peak_rss_mb'):.0f} |")
PY
