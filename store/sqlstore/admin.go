package sqlstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/latchkey/latchkey/store"
)

func (q queries) AddAdmin(ctx context.Context, userID string, at time.Time) error {
	_, err := q.c.Exec(ctx, `INSERT INTO admins (user_id, created_at) VALUES ($1, $2)`, userID, at.UTC())
	return err
}

func (q queries) RemoveAdmin(ctx context.Context, userID string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM admins WHERE user_id = $1`, userID)
	return affected(n, err)
}

func (q queries) IsAdmin(ctx context.Context, userID string) (bool, error) {
	var n int
	err := q.c.QueryRow(ctx, `SELECT count(*) FROM admins a JOIN users u ON u.id = a.user_id WHERE a.user_id = $1 AND u.disabled = FALSE`, userID).Scan(&n)
	return n > 0, err
}

func (q queries) UpdateUser(ctx context.Context, u store.User) error {
	n, err := q.c.Exec(ctx, `UPDATE users SET email = $2, display_name = $3, disabled = $4, updated_at = $5 WHERE id = $1`,
		u.ID, u.Email, u.DisplayName, u.Disabled, u.UpdatedAt.UTC())
	return affected(n, err)
}

// likePattern escapes LIKE wildcards so a search matches the text as typed.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

func (q queries) SearchUsers(ctx context.Context, query, after string, limit int) ([]store.User, error) {
	rows, err := q.c.Query(ctx, `SELECT `+userCols+` FROM users WHERE username_norm > $1
		AND (username_norm LIKE $2 ESCAPE '\' OR lower(email) LIKE $2 ESCAPE '\' OR lower(display_name) LIKE $2 ESCAPE '\')
		ORDER BY username_norm LIMIT $3`, NormalizeUsername(after), likePattern(query), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanUser)
}

func (q queries) GetGroup(ctx context.Context, id string) (store.Group, error) {
	return scanGroup(q.c.QueryRow(ctx, `SELECT id, name, description, created_at FROM user_groups WHERE id = $1`, id))
}

func (q queries) RemoveMember(ctx context.Context, groupID, userID string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, groupID, userID)
	return affected(n, err)
}

func (q queries) usersIn(ctx context.Context, table, groupID string) ([]store.User, error) {
	cols := strings.ReplaceAll("u."+userCols, ", ", ", u.")
	rows, err := q.c.Query(ctx, `SELECT `+cols+` FROM `+table+` m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.username_norm`, groupID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanUser)
}

func (q queries) GroupMembers(ctx context.Context, groupID string) ([]store.User, error) {
	return q.usersIn(ctx, "group_members", groupID)
}

func (q queries) GroupAdmins(ctx context.Context, groupID string) ([]store.User, error) {
	return q.usersIn(ctx, "group_admins", groupID)
}

func (q queries) AdministeredGroups(ctx context.Context, userID string) ([]store.Group, error) {
	rows, err := q.c.Query(ctx, `SELECT g.id, g.name, g.description, g.created_at FROM group_admins a
		JOIN user_groups g ON g.id = a.group_id JOIN users u ON u.id = a.user_id
		WHERE a.user_id = $1 AND u.disabled = FALSE ORDER BY g.name`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanGroup)
}

func (q queries) RemoveGroupAdmin(ctx context.Context, groupID, userID string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM group_admins WHERE group_id = $1 AND user_id = $2`, groupID, userID)
	return affected(n, err)
}

func (q queries) GroupPolicyID(ctx context.Context, groupID string) (string, error) {
	var id string
	err := q.c.QueryRow(ctx, `SELECT policy_id FROM group_policies WHERE group_id = $1`, groupID).Scan(&id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return id, err
}

func (q queries) PolicyGroups(ctx context.Context, policyID string) ([]store.Group, error) {
	rows, err := q.c.Query(ctx, `SELECT g.id, g.name, g.description, g.created_at FROM group_policies gp
		JOIN user_groups g ON g.id = gp.group_id WHERE gp.policy_id = $1 ORDER BY g.name`, policyID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanGroup)
}

func (q queries) DeletePolicy(ctx context.Context, id string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM policies WHERE id = $1 AND is_default = FALSE`, id)
	return affected(n, err)
}

func (q queries) GetResetRequest(ctx context.Context, id string) (store.ResetRequest, error) {
	return scanReset(q.c.QueryRow(ctx, `SELECT `+resetCols+` FROM reset_requests WHERE id = $1`, id))
}

func (q queries) UpdateClientRedirects(ctx context.Context, id string, redirects, postLogout []string) error {
	n, err := q.c.Exec(ctx, `UPDATE clients SET redirect_uris = $2, post_logout_redirect_uris = $3 WHERE id = $1`, id, list(redirects), list(postLogout))
	return affected(n, err)
}

func (q queries) CreatePasswordReset(ctx context.Context, r store.PasswordReset) error {
	if _, err := q.c.Exec(ctx, `DELETE FROM password_resets WHERE user_id = $1 AND used_at IS NULL`, r.UserID); err != nil {
		return err
	}
	_, err := q.c.Exec(ctx, `INSERT INTO password_resets (id_hash, user_id, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		r.IDHash, r.UserID, r.CreatedBy, r.CreatedAt.UTC(), r.ExpiresAt.UTC())
	return err
}

func (q queries) GetPasswordReset(ctx context.Context, idHash string) (store.PasswordReset, error) {
	var r store.PasswordReset
	var used *time.Time
	err := q.c.QueryRow(ctx, `SELECT id_hash, user_id, created_by, created_at, expires_at, used_at FROM password_resets WHERE id_hash = $1`, idHash).
		Scan(&r.IDHash, &r.UserID, &r.CreatedBy, &r.CreatedAt, &r.ExpiresAt, &used)
	r.UsedAt = fromNull(used)
	utc(&r.CreatedAt, &r.ExpiresAt)
	return r, err
}

func (q queries) UsePasswordReset(ctx context.Context, idHash string, at time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE password_resets SET used_at = $2 WHERE id_hash = $1 AND used_at IS NULL`, idHash, at.UTC())
	return n == 1, err
}
