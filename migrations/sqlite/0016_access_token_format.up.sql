-- +goose Up
-- +goose StatementBegin
-- How a client's access tokens are issued: "opaque" (HMAC, looked up in
-- the database) or "jwt" (RFC 9068, verifiable with the JWKS).
ALTER TABLE clients ADD COLUMN access_token_format text NOT NULL DEFAULT 'opaque';
-- +goose StatementEnd
