-- +goose Up
-- +goose StatementBegin
-- When old audit events are pruned, the hash of the last pruned event is
-- kept here, so the remaining chain still verifies from that point.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    through_id INTEGER NOT NULL,
    hash       text NOT NULL,
    created_at INTEGER NOT NULL
);
-- +goose StatementEnd
