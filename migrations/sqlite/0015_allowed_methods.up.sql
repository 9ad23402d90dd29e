-- +goose Up
-- +goose StatementBegin
-- The kinds of second factor a policy allows ("totp", "passkey"),
-- separated by spaces; existing policies allow every kind.
ALTER TABLE policies ADD COLUMN allowed_methods text NOT NULL DEFAULT 'totp passkey';

-- A sign-in whose user confirmed it's them with a method their policy no
-- longer allows goes on to set up an allowed one: the flow remembers that
-- second factor (its RFC 8176 amr value) and when.
ALTER TABLE login_flows ADD COLUMN second_factor text NOT NULL DEFAULT '';
ALTER TABLE login_flows ADD COLUMN second_factor_at INTEGER;
-- +goose StatementEnd
