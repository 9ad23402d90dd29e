-- +goose Up
-- +goose StatementBegin
-- The audit log as a verifiable log (RFC 6962): a sealer gives each event
-- its position in a Merkle tree, keeps every complete subtree's hash (for
-- inclusion and consistency proofs), and signs a checkpoint per batch.
ALTER TABLE audit_events ADD COLUMN leaf_index bigint;
CREATE UNIQUE INDEX audit_events_leaf ON audit_events(leaf_index);
CREATE INDEX audit_events_unsealed ON audit_events(id) WHERE leaf_index IS NULL;

CREATE TABLE audit_tree_nodes (
    level integer NOT NULL,
    idx   bigint NOT NULL,
    hash  bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint in a signed note), one per seal.
CREATE TABLE audit_heads (
    size       bigint PRIMARY KEY,
    root       bytea NOT NULL,
    note       text NOT NULL,
    created_at timestamptz NOT NULL
);
-- +goose StatementEnd
