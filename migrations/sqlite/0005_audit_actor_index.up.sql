-- +goose Up
-- +goose StatementBegin
-- Audit queries filter by actor as often as by subject.
CREATE INDEX audit_events_actor ON audit_events(actor_id, id);
-- +goose StatementEnd
