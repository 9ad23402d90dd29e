# Shared by the benchmark scripts: builds the server and the load
# generator, creates a fresh PostgreSQL database (or SQLite file) with the benchmark client
# and users, and exports the server's configuration. Sourced, not run.
out=bench-out
mkdir -p "$out"
scripts/ensure-postgres.sh

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -n "${NOBUILD:-}" ] || go build -o "$out/latchkey" ./cmd/latchkey
[ -n "${NOBUILD:-}" ] || go build -o "$out/latchkey-load" ./cmd/latchkey-load

# STORE=sqlite benchmarks the embedded store (a fresh file) instead.
db=latchkey_bench
if [ "${STORE:-postgres}" = sqlite ]; then
  rm -f "$out"/bench.db*
  export LATCHKEY_DATABASE_DRIVER=sqlite LATCHKEY_DATABASE_PATH="$PWD/$out/bench.db"
  unset LATCHKEY_DATABASE_DSN
  setup_target=(-sqlite "$LATCHKEY_DATABASE_PATH")
else
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  export LATCHKEY_DATABASE_DSN="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
  setup_target=(-dsn "$LATCHKEY_DATABASE_DSN")
fi
export LATCHKEY_MODE=production
export LATCHKEY_ISSUER=http://127.0.0.1:8090
export LATCHKEY_LISTEN=127.0.0.1:8090
export LATCHKEY_DATABASE_MAX_CONNS=${LATCHKEY_DATABASE_MAX_CONNS:-16}
export LATCHKEY_SECRETS_SYSTEM=$(head -c 32 /dev/urandom | base64)
export LATCHKEY_SECRETS_ENCRYPTION_KEYS="b1:$(head -c 32 /dev/urandom | base64)"
export LATCHKEY_LOG_LEVEL=warn
export LATCHKEY_KEYS_ALGORITHM=${LATCHKEY_KEYS_ALGORITHM:-ES256}
# Every request comes from 127.0.0.1: keep the per-address limiters in the
# path but far above the load, and let every load-generator sign-in queue.
export LATCHKEY_RATE_LIMITS_SIGN_IN_PER_MINUTE=100000000
export LATCHKEY_RATE_LIMITS_TOKEN_PER_MINUTE=100000000
export LATCHKEY_PASSWORDS_HASH_QUEUE=256

"$out/latchkey" migrate >/dev/null
# FILL_TOKENS=N: start from a store that already holds N live access
# tokens and N token-log rows (what a busy deployment carries), to compare
# with an empty one.
if [ -n "${FILL_TOKENS:-}" ] && [ "${STORE:-postgres}" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d "$db" <<SQL
INSERT INTO oauth2_tokens (kind, signature, request_id, client_id, subject, session_id, active, requested_at, expires_at,
  scopes, granted_scopes, audience, granted_audience, form, session)
SELECT 'access', md5(i::text) || md5((i * 7)::text), md5((i * 13)::text), 'filler', '', '', TRUE, now(), now() + interval '1 hour',
  'profile', 'profile', '', '', 'grant_type=client_credentials', convert_to(repeat('x', 359), 'UTF8')
FROM generate_series(1, $FILL_TOKENS) AS i;
INSERT INTO token_events (time, type, token_type, request_id, client_id, subject, grant_type)
SELECT now(), 'issued', 'access', md5((i * 13)::text), 'filler', '', 'client_credentials' FROM generate_series(1, $FILL_TOKENS) AS i;
ANALYZE oauth2_tokens; ANALYZE token_events;
SQL
fi
"$out/latchkey-load" -setup "${setup_target[@]}" -users 4000 -state "$out/state.json"


# basic is the benchmark client's HTTP Basic credentials (base64).
basic=$(python3 -c "import json,base64,sys; s=json.load(open(sys.argv[1])); print(base64.b64encode((s['client_id']+':'+s['client_secret']).encode()).decode())" "$out/state.json")

# start_server starts the server in the background (its PID in $pid) and
# waits until it is ready; stop_server stops it; a server still running
# when the script exits is stopped.
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
start_server() {
  "$out/latchkey" serve >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "$LATCHKEY_ISSUER/health/ready" >/dev/null && break; sleep 0.1; done
}
stop_server() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
