#!/usr/bin/env bash
# Latency of filtered audit queries over 1,000,000 events on PostgreSQL, as
# the admin API runs them (the SQL of store.ListAuditEvents), with the plan.
#   scripts/bench-audit-query.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
scripts/ensure-postgres.sh
db=latchkey_audit_bench
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
dsn="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
LATCHKEY_DATABASE_DSN="$dsn" LATCHKEY_MODE=dev go run ./cmd/latchkey migrate >/dev/null
psql -q -h 127.0.0.1 -U postgres -d $db <<'SQL'
INSERT INTO audit_events (time, type, outcome, actor_type, actor_id, subject_id, client_id, policy_id, policy_version, ip, user_agent, request_id, details, prev_hash, hash)
SELECT now() - (1000000 - g) * interval '1 second',
       (ARRAY['auth.login.succeeded','auth.login.failed','mfa.totp.removed','policy.updated','mfa.reset.requested'])[1 + g % 5],
       'success', 'user', 'user_' || (g % 5000), 'user_' || (g % 5000), 'app', 'policy_default', 1, '10.0.0.1', 'bench', 'r' || g, '{}',
       md5(g::text), md5((g + 1)::text)
FROM generate_series(1, 1000000) AS g;
ANALYZE audit_events;
SQL
q() { # name, where clause (the filters ListAuditEvents builds)
  for i in 1 2 3 4 5; do
    psql -h 127.0.0.1 -U postgres -d $db -Atc "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id, time, type FROM audit_events WHERE $2 ORDER BY id LIMIT 100" \
      | python3 -c "import json,sys; p=json.load(sys.stdin)[0]; print(p['Execution Time'])"
  done | sort -n | sed -n 3p | xargs printf "%s: median %s ms over 5 runs\n" "$1"
  psql -h 127.0.0.1 -U postgres -d $db -Atc "EXPLAIN SELECT id FROM audit_events WHERE $2 ORDER BY id LIMIT 100" | head -3 | sed 's/^/    /'
}
q "subject" "id > 0 AND subject_id = 'user_4242'"
q "actor + type prefix" "id > 0 AND actor_id = 'user_4242' AND substr(type, 1, length(CAST('mfa.' AS text))) = CAST('mfa.' AS text)"
q "subject + time range" "id > 0 AND subject_id = 'user_4242' AND time >= now() - interval '3 days' AND time < now()"
q "type prefix only" "id > 0 AND substr(type, 1, length(CAST('mfa.totp' AS text))) = CAST('mfa.totp' AS text)"
q "subject, page 2 (cursor)" "id > 500000 AND subject_id = 'user_4242'"
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
