-- PostgreSQL ceiling for an audited 2SV removal (see BENCHMARKS.md). Tables:
-- CREATE TABLE pb_totp (user_id text primary key, secret text); CREATE TABLE pb_codes (user_id text, digest text);
-- CREATE TABLE pb_removals (user_id text primary key, removed_at timestamptz, setup_until timestamptz);
-- CREATE TABLE pb_audit (id bigserial primary key, time timestamptz, type text, details text, hash text, leaf_index bigint);
\set u random(1, 10000000)
BEGIN;
SELECT pg_advisory_xact_lock(:u);
DELETE FROM pb_totp WHERE user_id = 'u' || :u;
DELETE FROM pb_codes WHERE user_id = 'u' || :u;
INSERT INTO pb_removals (user_id, removed_at, setup_until) VALUES ('u' || :u, now(), now()) ON CONFLICT (user_id) DO UPDATE SET removed_at = excluded.removed_at;
INSERT INTO pb_audit (time, type, details, hash) VALUES (now(), 'mfa.totp.removed', '{"a":1}', md5(:u::text));
COMMIT;
