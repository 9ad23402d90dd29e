-- +goose Up
-- +goose StatementBegin
-- When old audit events are pruned, the hash of the last pruned event is
-- kept here, so the remaining chain still verifies from that point.
CREATE TABLE audit_checkpoints (
    id         bigserial PRIMARY KEY,
    through_id bigint NOT NULL,
    hash       text NOT NULL,
    created_at timestamptz NOT NULL
);
-- +goose StatementEnd
