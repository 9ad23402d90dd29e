-- +goose Up
-- +goose StatementBegin
-- Authentication policies (SPEC §4). Durations in milliseconds.
CREATE TABLE policies (
    id                  text PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    description         text NOT NULL DEFAULT '',
    require_mfa         boolean NOT NULL,
    allow_self_removal  boolean NOT NULL,
    step_up_max_age_ms  bigint NOT NULL,
    reenroll            text NOT NULL,
    grace_period_ms     bigint NOT NULL,
    version             integer NOT NULL,
    is_default          boolean NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX policies_one_default ON policies(is_default) WHERE is_default = TRUE;

-- Every version of every policy, so the audit log's policy id + version can
-- always be read back.
CREATE TABLE policy_versions (
    policy_id  text NOT NULL,
    version    integer NOT NULL,
    settings   text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (policy_id, version)
);

CREATE TABLE group_policies (
    group_id  text PRIMARY KEY REFERENCES user_groups(id) ON DELETE CASCADE,
    policy_id text NOT NULL REFERENCES policies(id)
);
CREATE INDEX group_policies_policy ON group_policies(policy_id);

CREATE TABLE group_admins (
    group_id text NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE reset_requests (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status      text NOT NULL,
    message     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    decided_at  timestamptz,
    decided_by  text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX reset_requests_one_open ON reset_requests(user_id) WHERE status = 'open';

-- Set when 2SV is removed; read by the login flow to enforce re-enrollment.
CREATE TABLE mfa_removals (
    user_id    text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    removed_at timestamptz NOT NULL
);

-- A new authenticator secret waiting for its first code (setup, replace).
CREATE TABLE pending_totp (
    user_id    text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    id         text NOT NULL,
    secret     bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The confirmation step of an unlink: created by POST, consumed once by PUT.
CREATE TABLE unlink_intents (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The account portal's own sessions (it is an OIDC client of the provider).
CREATE TABLE portal_sessions (
    id_hash      text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sid          text NOT NULL,
    auth_time    timestamptz NOT NULL,
    amr          text NOT NULL,
    acr          text NOT NULL,
    id_token     text NOT NULL,
    step_up      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions(user_id);

CREATE TABLE audit_events (
    id             bigserial PRIMARY KEY,
    time           timestamptz NOT NULL,
    type           text NOT NULL,
    outcome        text NOT NULL,
    actor_type     text NOT NULL,
    actor_id       text NOT NULL,
    subject_id     text NOT NULL,
    client_id      text NOT NULL,
    policy_id      text NOT NULL,
    policy_version integer NOT NULL,
    ip             text NOT NULL,
    user_agent     text NOT NULL,
    request_id     text NOT NULL,
    details        text NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events(subject_id, id);
CREATE INDEX audit_events_time ON audit_events(time);

-- Every deployment starts with a default policy at SPEC §4's defaults:
-- 2SV required, removal admin-only, five-minute step-up.
INSERT INTO policies (id, name, description, require_mfa, allow_self_removal, step_up_max_age_ms, reenroll, grace_period_ms, version, is_default, updated_at)
VALUES ('policy_default', 'Default', 'Applies to users whose groups carry no policy.', TRUE, FALSE, 300000, 'immediate', 0, 1, TRUE, now());
INSERT INTO policy_versions (policy_id, version, settings, created_at)
VALUES ('policy_default', 1, '{"ID":"policy_default","Name":"Default","RequireMFA":true,"AllowSelfServiceRemoval":false,"StepUpMaxAge":300000000000,"Reenroll":"immediate","GracePeriod":0,"Version":1,"IsDefault":true}', now());
-- +goose StatementEnd
