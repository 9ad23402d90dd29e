-- +goose Up
-- +goose StatementBegin
-- How far each background dispatcher (webhook, email) has read the audit
-- log. Delivery reads events after last_id, in order, and advances the
-- cursor only after the receiver accepted them: nothing is lost while a
-- receiver is down, and the audit log itself is the durable outbox.
CREATE TABLE dispatch_cursors (
    name       text PRIMARY KEY,
    last_id    INTEGER NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    next_at    INTEGER,
    last_error text NOT NULL DEFAULT '',
    -- A replica delivers only while it holds the lease, so replicas do
    -- not deliver the same events at once; no lock is held during delivery.
    lease_until INTEGER
);
-- +goose StatementEnd
