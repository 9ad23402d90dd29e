-- +goose Up
-- +goose StatementBegin
-- JWT access tokens issued by client credentials are not stored (nothing
-- to look up): revoking one records its jti here until it expires, and
-- introspection and Latchkey's own APIs refuse it.
CREATE TABLE revoked_jwts (
    jti        text PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_jwts_expires ON revoked_jwts(expires_at);
-- +goose StatementEnd
