-- +goose Up
-- +goose StatementBegin
-- Step-ups are single-use: a proof (a portal session's step-up, or the
-- grant behind a bearer token minted by an interactive re-authentication
-- for an action) is recorded here in the transaction of the change it
-- allowed, so replaying it finds the row and changes nothing.
CREATE TABLE spent_step_ups (
    id       text PRIMARY KEY,
    user_id  text NOT NULL,
    action   text NOT NULL,
    spent_at timestamptz NOT NULL
);
CREATE INDEX spent_step_ups_time ON spent_step_ups(spent_at);

-- A pending authenticator secret belongs to the session, token or sign-in
-- that asked for it; another caller never sees it.
ALTER TABLE pending_totp ADD COLUMN binding text NOT NULL DEFAULT '';

-- A console change that needed a step-up, kept until the step-up returns.
CREATE TABLE pending_actions (
    id         text PRIMARY KEY,
    user_id    text NOT NULL,
    method     text NOT NULL,
    path       text NOT NULL,
    form       text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_actions_expires ON pending_actions(expires_at);
-- +goose StatementEnd
