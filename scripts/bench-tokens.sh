#!/usr/bin/env bash
# Client credentials with opaque and with JWT access tokens, and
# PostgreSQL's own ceiling for the opaque token's INSERT, side by side: at
# each concurrency each run starts a fresh server and alternates opaque,
# JWT and pgbench (A, B, C, A, B, C…), so all three see the same machine
# state. Then introspection of each kind of token.
#
#   scripts/bench-tokens.sh [RUNS] [DURATION]     (defaults: 3 runs of 6s)
#   STORE=sqlite scripts/bench-tokens.sh …        (the embedded store; no pgbench rows)
#   FILL_TOKENS=2000000 scripts/bench-tokens.sh … (start from 2 million stored tokens)
#   CONCS="16" scripts/bench-tokens.sh …          (only these concurrencies)
#
# Prints one JSON line per run (req/s, p50/p99 ms, server and PostgreSQL
# CPU ms per request, peak RSS) and the medians; BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
runs=${1:-3}
dur=${2:-6s}
. scripts/bench/env.sh

basic_of() { printf '%s' "$1:$2" | base64 -w0; }
opaque=$basic
created=$("$out/latchkey" clients create --name "Bench JWT" --first-party --grant-type client_credentials --scope profile --jwt-access-tokens)
jwt=$(basic_of "$(echo "$created" | awk '/client_id:/ {print $2}')" "$(echo "$created" | awk '/client_secret:/ {print $2}')")
pg_pid=
if [ "${STORE:-postgres}" = postgres ]; then
  pg_pid=$(head -1 "$(psql -Atq -h 127.0.0.1 -U postgres -d test -c 'SHOW data_directory')/postmaster.pid")
fi

results="$out/results-tokens.jsonl"
: > "$results"
# measure LABEL CONC SCRIPT ENDPOINT: a 2 s warm-up, then DURATION measured,
# with the server's and PostgreSQL's CPU read around it.
measure() {
  local threads=$(( $2 < 2 ? 1 : 2 ))
  SCENARIO=$1 CONC=$2 wrk -t"$threads" -c"$2" -d2s -s "$3" "$LATCHKEY_ISSUER$4" >/dev/null
  local sb pb line sa pa rss
  sb=$(python3 scripts/bench/cpu.py "$pid"); pb=0; [ -z "$pg_pid" ] || pb=$(python3 scripts/bench/cpu.py --cluster "$pg_pid")
  line=$(SCENARIO=$1 CONC=$2 wrk -t"$threads" -c"$2" -d"$dur" -s "$3" "$LATCHKEY_ISSUER$4" | tail -n1)
  sa=$(python3 scripts/bench/cpu.py "$pid"); pa=0; [ -z "$pg_pid" ] || pa=$(python3 scripts/bench/cpu.py --cluster "$pg_pid")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  python3 - "$line" "$sb" "$sa" "$pb" "$pa" "$rss" "${pg_pid:+pg}" <<'PY' | tee -a "$results"
import json, sys
r = json.loads(sys.argv[1]); n = max(r["ok"], 1)
r["server_cpu_ms_per_request"] = round((float(sys.argv[3]) - float(sys.argv[2])) / n, 4)
if sys.argv[7]:
    r["pg_cpu_ms_per_request"] = round((float(sys.argv[5]) - float(sys.argv[4])) / n, 4)
r["peak_rss_mb"] = int(sys.argv[6]) // 1024
print(json.dumps(r))
PY
}
grant() { # label basic concurrency
  start_server
  BASIC=$2 measure "client_credentials_$1" "$3" scripts/bench/client_credentials.lua /oauth2/token
  stop_server
}
# pgbench runs the opaque grant's statement (prepared, as pgx runs it) on
# the same tables; its rows are what PostgreSQL alone allows here.
pgbench_row() { # concurrency
  local c=$1 log
  log=$(mktemp -d)
  local before after
  before=$(python3 scripts/bench/cpu.py --cluster "$pg_pid")
  pgbench -h 127.0.0.1 -U postgres -n -M prepared -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "${dur%s}" -l --log-prefix="$log/tx" \
    -f scripts/bench/token-insert.pgbench.sql "$db" >/dev/null 2>&1
  after=$(python3 scripts/bench/cpu.py --cluster "$pg_pid")
  cat "$log"/tx* | python3 -c '
import json, sys
c, dur, cpu = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
lat = sorted(int(l.split()[2]) for l in sys.stdin if l.strip())
n = len(lat)
print(json.dumps({"scenario": "pgbench_token_insert", "concurrency": c, "ok": n, "errors": 0, "per_second": round(n / dur, 1),
  "p50_ms": lat[n // 2] / 1000, "p99_ms": lat[int(n * 0.99)] / 1000, "pg_cpu_ms_per_request": round(cpu / max(n, 1), 4), "tool": "pgbench"}))
' "$c" "${dur%s}" "$(python3 -c "print($after - $before)")" | tee -a "$results"
  rm -rf "$log"
}
for c in ${CONCS:-1 16 64}; do
  for _ in $(seq 1 "$runs"); do
    grant opaque "$opaque" "$c"
    grant jwt "$jwt" "$c"
    [ -z "$pg_pid" ] || pgbench_row "$c"
  done
done
# Introspection of one opaque and one JWT access token, by the client that
# holds them, at 16 concurrent.
for _ in $(seq 1 "$runs"); do
  start_server
  for kind in opaque jwt; do
    b=$opaque; [ "$kind" = jwt ] && b=$jwt
    token=$(curl -sf -u "$(echo "$b" | base64 -d)" -d grant_type=client_credentials -d scope=profile "$LATCHKEY_ISSUER/oauth2/token" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    BODY="token=$token" BASIC=$b measure "introspect_$kind" 16 scripts/bench/client_credentials.lua /oauth2/introspect
  done
  stop_server
done

python3 scripts/bench/summary.py "$results"
