-- +goose Up
-- +goose StatementBegin
-- Single-use password reset links created by admins. Only the SHA-256 of
-- the link's token is stored.
CREATE TABLE password_resets (
    id_hash    text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_by text NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_resets_user ON password_resets(user_id);
-- +goose StatementEnd
