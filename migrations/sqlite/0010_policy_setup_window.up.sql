-- +goose Up
-- +goose StatementBegin
-- How long, after removing their own 2SV, a member may reach the setup
-- screen with a password alone (most restrictive: the shortest applies).
ALTER TABLE policies ADD COLUMN setup_window_ms INTEGER NOT NULL DEFAULT 86400000;
-- +goose StatementEnd
