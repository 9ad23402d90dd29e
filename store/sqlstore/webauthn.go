package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/latchkey/latchkey/store"
)

const webauthnCols = `id, user_id, name, credential_id, data, sign_count, created_at, last_used_at`

func (q queries) CreateWebAuthnCredential(ctx context.Context, c store.WebAuthnCredential) error {
	_, err := q.c.Exec(ctx, `INSERT INTO webauthn_credentials (`+webauthnCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.ID, c.UserID, c.Name, c.CredentialID, c.Data, int64(c.SignCount), c.CreatedAt.UTC(), nullTime(c.LastUsedAt))
	if err != nil {
		return fmt.Errorf("create passkey for %s: %w", c.UserID, err)
	}
	return nil
}

func (q queries) ListWebAuthnCredentials(ctx context.Context, userID string) ([]store.WebAuthnCredential, error) {
	rows, err := q.c.Query(ctx, `SELECT `+webauthnCols+` FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r Row) (store.WebAuthnCredential, error) {
		var c store.WebAuthnCredential
		var count int64
		var used *time.Time
		err := r.Scan(&c.ID, &c.UserID, &c.Name, &c.CredentialID, &c.Data, &count, &c.CreatedAt, &used)
		c.SignCount, c.LastUsedAt = uint32(count), fromNull(used)
		utc(&c.CreatedAt)
		return c, err
	})
}

func (q queries) UseWebAuthnCredential(ctx context.Context, id string, signCount uint32, at time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE webauthn_credentials SET sign_count = $2, last_used_at = $3
		WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))`, id, int64(signCount), at.UTC())
	return n == 1, err
}

func (q queries) RenameWebAuthnCredential(ctx context.Context, userID, id, name string) error {
	n, err := q.c.Exec(ctx, `UPDATE webauthn_credentials SET name = $3 WHERE user_id = $1 AND id = $2`, userID, id, name)
	return affected(n, err)
}

func (q queries) DeleteWebAuthnCredential(ctx context.Context, userID, id string) (bool, error) {
	n, err := q.c.Exec(ctx, `DELETE FROM webauthn_credentials WHERE user_id = $1 AND id = $2`, userID, id)
	return n == 1, err
}

func (q queries) PutWebAuthnCeremony(ctx context.Context, c store.WebAuthnCeremony) error {
	_, err := q.c.Exec(ctx, `INSERT INTO webauthn_ceremonies (id, kind, user_id, binding, data, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.ID, c.Kind, c.UserID, c.Binding, c.Data, c.ExpiresAt.UTC())
	return err
}

func (q queries) TakeWebAuthnCeremony(ctx context.Context, id string) (store.WebAuthnCeremony, error) {
	var c store.WebAuthnCeremony
	err := q.c.QueryRow(ctx, `DELETE FROM webauthn_ceremonies WHERE id = $1 RETURNING id, kind, user_id, binding, data, expires_at`, id).
		Scan(&c.ID, &c.Kind, &c.UserID, &c.Binding, &c.Data, &c.ExpiresAt)
	utc(&c.ExpiresAt)
	return c, err
}
