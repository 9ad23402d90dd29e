-- PostgreSQL ceiling for an opaque access token (see BENCHMARKS.md): the
-- statement Latchkey runs per client-credentials grant, against the same
-- tables and indexes (a migrated database), with values of the same sizes.
\set r random(1, 2000000000)
WITH t AS (INSERT INTO oauth2_tokens (kind, signature, request_id, client_id, subject, session_id, active, requested_at, expires_at,
    scopes, granted_scopes, audience, granted_audience, form, session)
  VALUES ('access', encode(sha256((:r || ':' || random())::bytea), 'base64'), md5(:r || 'q' || random()),
    '5f0d3c4e-2b9a-4c1e-9a57-0c4b8e6f1d23', '', '', TRUE, now(), now() + interval '1 hour', 'profile', 'profile', '', '',
    'grant_type=client_credentials&scope=profile', convert_to(repeat('x', 359), 'UTF8')))
INSERT INTO token_events (time, type, token_type, request_id, client_id, subject, grant_type)
  VALUES (now(), 'issued', 'access', md5(:r || 'q'), '5f0d3c4e-2b9a-4c1e-9a57-0c4b8e6f1d23', '', 'client_credentials');
