-- +goose Up
-- +goose StatementBegin
-- A rotated refresh token may be presented once more until grace_until, so
-- a client whose rotation response was lost keeps its grant. NULL: no grace
-- (never rotated, grace used, or revoked).
ALTER TABLE oauth2_tokens ADD COLUMN grace_until timestamptz;

-- A new signing key is published before it signs: it becomes the signing
-- key at not_before, once every replica serves it. NULL: signs at once
-- (keys from before).
ALTER TABLE signing_keys ADD COLUMN not_before timestamptz;

-- PKCE is required of every client using the authorization code; a legacy
-- confidential client can be allowed to go without.
ALTER TABLE clients ADD COLUMN pkce_optional boolean NOT NULL DEFAULT FALSE;
-- +goose StatementEnd
