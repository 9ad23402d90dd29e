-- +goose Up
-- +goose StatementBegin
-- Retention leaves a signed record of how far it pruned the tree, so
-- deleting the oldest events is told apart from pruning.
ALTER TABLE audit_checkpoints ADD COLUMN note text NOT NULL DEFAULT '';
-- +goose StatementEnd
