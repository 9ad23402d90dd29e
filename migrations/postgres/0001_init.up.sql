-- +goose Up
-- +goose StatementBegin
CREATE TABLE users (
    id            text PRIMARY KEY,
    username      text NOT NULL,
    username_norm text NOT NULL UNIQUE,
    email         text NOT NULL DEFAULT '',
    display_name  text NOT NULL DEFAULT '',
    password_hash text NOT NULL DEFAULT '',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE user_groups (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL
);

CREATE TABLE group_members (
    group_id text NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE clients (
    id                        text PRIMARY KEY,
    name                      text NOT NULL DEFAULT '',
    secret_hash               bytea,
    public                    boolean NOT NULL,
    first_party               boolean NOT NULL,
    redirect_uris             text NOT NULL,
    post_logout_redirect_uris text NOT NULL,
    grant_types               text NOT NULL,
    response_types            text NOT NULL,
    scopes                    text NOT NULL,
    created_at                timestamptz NOT NULL
);

CREATE TABLE totp_credentials (
    id          text PRIMARY KEY,
    user_id     text NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    verified_at timestamptz NOT NULL,
    last_step   bigint NOT NULL DEFAULT 0
);

CREATE TABLE recovery_codes (
    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest  text NOT NULL,
    created_at timestamptz NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (user_id, digest)
);

CREATE TABLE browser_sessions (
    id_hash      text PRIMARY KEY,
    sid          text NOT NULL UNIQUE,
    user_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    auth_time    timestamptz NOT NULL,
    amr          text NOT NULL,
    acr          text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions(expires_at);

CREATE TABLE login_flows (
    id              text PRIMARY KEY,
    binding         text NOT NULL,
    authorize_query text NOT NULL,
    user_id         text NOT NULL DEFAULT '',
    password_at     timestamptz,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX login_flows_expires ON login_flows(expires_at);

CREATE TABLE consents (
    user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    scopes     text NOT NULL,
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE signing_keys (
    id          text PRIMARY KEY,
    algorithm   text NOT NULL,
    private_key bytea NOT NULL,
    public_key  bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    not_after   timestamptz
);

-- fosite request rows, keyed by token signature (never the token).
CREATE TABLE oauth2_tokens (
    kind             text NOT NULL,
    signature        text NOT NULL,
    request_id       text NOT NULL,
    client_id        text NOT NULL,
    subject          text NOT NULL,
    session_id       text NOT NULL,
    active           boolean NOT NULL,
    requested_at     timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    scopes           text NOT NULL,
    granted_scopes   text NOT NULL,
    audience         text NOT NULL,
    granted_audience text NOT NULL,
    form             text NOT NULL,
    session          bytea NOT NULL,
    PRIMARY KEY (kind, signature)
);
-- Only active rows are ever looked up by grant (rotation, revocation), so a
-- long-lived grant with many rotated tokens stays cheap to revoke.
CREATE INDEX oauth2_tokens_request_active ON oauth2_tokens(request_id, kind) WHERE active = TRUE;
CREATE INDEX oauth2_tokens_expires ON oauth2_tokens(expires_at);

CREATE TABLE token_events (
    id         bigserial PRIMARY KEY,
    time       timestamptz NOT NULL,
    type       text NOT NULL,
    token_type text NOT NULL,
    request_id text NOT NULL,
    client_id  text NOT NULL,
    subject    text NOT NULL,
    grant_type text NOT NULL
);
CREATE INDEX token_events_time ON token_events(time);

CREATE TABLE login_attempts (
    key          text PRIMARY KEY,
    failures     integer NOT NULL,
    last_failure timestamptz NOT NULL,
    locked_until timestamptz
);
-- +goose StatementEnd
