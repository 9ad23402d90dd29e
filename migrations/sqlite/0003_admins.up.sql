-- +goose Up
-- +goose StatementBegin
-- Users who may use the admin API and console.
CREATE TABLE admins (
    user_id    text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
-- +goose StatementEnd
