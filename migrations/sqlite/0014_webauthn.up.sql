-- +goose Up
-- +goose StatementBegin
-- Passkeys and security keys (WebAuthn). A user may hold several, besides a
-- TOTP app. data is the WebAuthn library's credential record (public key,
-- flags, transports, attestation): nothing in it is secret.
CREATE TABLE webauthn_credentials (
    id            text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    credential_id BLOB NOT NULL UNIQUE,
    data          BLOB NOT NULL,
    sign_count    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials(user_id);

-- Registrations and sign-ins in progress: each challenge answers once.
CREATE TABLE webauthn_ceremonies (
    id         text PRIMARY KEY,
    kind       text NOT NULL,
    user_id    text NOT NULL,
    binding    text NOT NULL,
    data       BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies(expires_at);
-- +goose StatementEnd
