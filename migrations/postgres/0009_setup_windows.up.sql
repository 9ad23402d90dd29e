-- +goose Up
-- +goose StatementBegin
-- After 2SV is removed (by the user, or by an admin approving a reset), a
-- password alone reaches the setup screen only until setup_until; then a
-- new request is needed. NULL (rows from before) means no limit.
ALTER TABLE mfa_removals ADD COLUMN setup_until timestamptz;
-- +goose StatementEnd
