package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchkey/latchkey/store"
)

// --- policies --------------------------------------------------------------

const policyCols = `id, name, description, require_mfa, allow_self_removal, step_up_max_age_ms, reenroll, grace_period_ms, version, is_default, updated_at, setup_window_ms, allowed_methods`

func scanPolicy(r Row) (store.Policy, error) {
	var pr policyRow
	err := r.Scan(pr.dest()...)
	return pr.policy(), err
}

// policyRow scans policyCols, some of which need converting.
type policyRow struct {
	p                     store.Policy
	stepUp, grace, window int64
	methods               string
}

func (r *policyRow) dest() []any {
	p := &r.p
	return []any{&p.ID, &p.Name, &p.Description, &p.RequireMFA, &p.AllowSelfServiceRemoval, &r.stepUp, &p.Reenroll, &r.grace,
		&p.Version, &p.IsDefault, &p.UpdatedAt, &r.window, &r.methods}
}

func (r *policyRow) policy() store.Policy {
	p := r.p
	p.StepUpMaxAge, p.GracePeriod, p.SetupWindow = time.Duration(r.stepUp)*time.Millisecond, time.Duration(r.grace)*time.Millisecond, time.Duration(r.window)*time.Millisecond
	p.AllowedMethods = strings.Fields(r.methods)
	utc(&p.UpdatedAt)
	return p
}

func policyArgs(p store.Policy) []any {
	return []any{p.ID, p.Name, p.Description, p.RequireMFA, p.AllowSelfServiceRemoval, p.StepUpMaxAge.Milliseconds(), p.Reenroll,
		p.GracePeriod.Milliseconds(), p.Version, p.IsDefault, p.UpdatedAt.UTC(), p.SetupWindow.Milliseconds(), strings.Join(p.AllowedMethods, " ")}
}

func (q queries) recordPolicyVersion(ctx context.Context, p store.Policy) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = q.c.Exec(ctx, `INSERT INTO policy_versions (policy_id, version, settings, created_at) VALUES ($1, $2, $3, $4)`,
		p.ID, p.Version, string(b), p.UpdatedAt.UTC())
	return err
}

func (q queries) CreatePolicy(ctx context.Context, p store.Policy) error {
	if _, err := q.c.Exec(ctx, `INSERT INTO policies (`+policyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, policyArgs(p)...); err != nil {
		return fmt.Errorf("create policy %s: %w", p.Name, err)
	}
	return q.recordPolicyVersion(ctx, p)
}

// UpdatePolicy is an optimistic update: it applies only on top of the
// version the caller read, so two admins editing at once cannot silently
// overwrite each other.
func (q queries) UpdatePolicy(ctx context.Context, p store.Policy) error {
	n, err := q.c.Exec(ctx, `UPDATE policies SET name = $2, description = $3, require_mfa = $4, allow_self_removal = $5, step_up_max_age_ms = $6,
		reenroll = $7, grace_period_ms = $8, version = $9, is_default = $10, updated_at = $11, setup_window_ms = $12, allowed_methods = $13 WHERE id = $1 AND version = $9 - 1`, policyArgs(p)...)
	if err := affected(n, err); err != nil {
		return fmt.Errorf("update policy %s: %w", p.ID, err)
	}
	return q.recordPolicyVersion(ctx, p)
}

func (q queries) GetPolicy(ctx context.Context, id string) (store.Policy, error) {
	return scanPolicy(q.c.QueryRow(ctx, `SELECT `+policyCols+` FROM policies WHERE id = $1`, id))
}

func (q queries) GetPolicyVersion(ctx context.Context, id string, version int) (store.Policy, error) {
	var raw string
	if err := q.c.QueryRow(ctx, `SELECT settings FROM policy_versions WHERE policy_id = $1 AND version = $2`, id, version).Scan(&raw); err != nil {
		return store.Policy{}, err
	}
	var p store.Policy
	err := json.Unmarshal([]byte(raw), &p)
	return p, err
}

func (q queries) ListPolicies(ctx context.Context) ([]store.Policy, error) {
	rows, err := q.c.Query(ctx, `SELECT `+policyCols+` FROM policies ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPolicy)
}

func (q queries) DefaultPolicy(ctx context.Context) (store.Policy, error) {
	return scanPolicy(q.c.QueryRow(ctx, `SELECT `+policyCols+` FROM policies WHERE is_default = TRUE`))
}

func (q queries) AssignPolicy(ctx context.Context, groupID, policyID string) error {
	_, err := q.c.Exec(ctx, `INSERT INTO group_policies (group_id, policy_id) VALUES ($1, $2)
		ON CONFLICT (group_id) DO UPDATE SET policy_id = excluded.policy_id`, groupID, policyID)
	return err
}

func (q queries) UnassignPolicy(ctx context.Context, groupID string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM group_policies WHERE group_id = $1`, groupID)
	return affected(n, err)
}

func (q queries) UserGroupPolicies(ctx context.Context, userID string) ([]store.GroupPolicy, error) {
	cols := strings.ReplaceAll("p."+policyCols, ", ", ", p.")
	rows, err := q.c.Query(ctx, `SELECT g.id, g.name, `+cols+` FROM group_members m
		JOIN user_groups g ON g.id = m.group_id
		JOIN group_policies gp ON gp.group_id = g.id
		JOIN policies p ON p.id = gp.policy_id
		WHERE m.user_id = $1 ORDER BY g.name`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r Row) (store.GroupPolicy, error) {
		var gp store.GroupPolicy
		var pr policyRow
		err := r.Scan(append([]any{&gp.GroupID, &gp.GroupName}, pr.dest()...)...)
		gp.Policy = pr.policy()
		return gp, err
	})
}

func (q queries) AddGroupAdmin(ctx context.Context, groupID, userID string) error {
	_, err := q.c.Exec(ctx, `INSERT INTO group_admins (group_id, user_id) VALUES ($1, $2)`, groupID, userID)
	return err
}

func (q queries) UserAdminContacts(ctx context.Context, userID string) ([]store.User, error) {
	cols := strings.ReplaceAll("u."+userCols, ", ", ", u.")
	rows, err := q.c.Query(ctx, `SELECT DISTINCT `+cols+` FROM group_members m
		JOIN group_admins a ON a.group_id = m.group_id
		JOIN users u ON u.id = a.user_id
		WHERE m.user_id = $1 AND u.id <> $1 AND u.disabled = FALSE ORDER BY u.username`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanUser)
}

// --- self-service state ----------------------------------------------------

const resetCols = `id, user_id, status, message, created_at, decided_at, decided_by`

func scanReset(r Row) (store.ResetRequest, error) {
	var rr store.ResetRequest
	var decided *time.Time
	err := r.Scan(&rr.ID, &rr.UserID, &rr.Status, &rr.Message, &rr.CreatedAt, &decided, &rr.DecidedBy)
	rr.DecidedAt = fromNull(decided)
	utc(&rr.CreatedAt)
	return rr, err
}

func (q queries) CreateResetRequest(ctx context.Context, r store.ResetRequest) error {
	_, err := q.c.Exec(ctx, `INSERT INTO reset_requests (`+resetCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, r.UserID, r.Status, r.Message, r.CreatedAt.UTC(), nullTime(r.DecidedAt), r.DecidedBy)
	return err
}

func (q queries) OpenResetRequest(ctx context.Context, userID string) (store.ResetRequest, error) {
	return scanReset(q.c.QueryRow(ctx, `SELECT `+resetCols+` FROM reset_requests WHERE user_id = $1 AND status = 'open'`, userID))
}

func (q queries) ListResetRequests(ctx context.Context, status string) ([]store.ResetRequest, error) {
	rows, err := q.c.Query(ctx, `SELECT `+resetCols+` FROM reset_requests WHERE status = $1 ORDER BY created_at, id`, status)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReset)
}

func (q queries) DecideResetRequest(ctx context.Context, id, status, by string, at time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE reset_requests SET status = $2, decided_by = $3, decided_at = $4 WHERE id = $1 AND status = 'open'`,
		id, status, by, at.UTC())
	return affected(n, err)
}

func (q queries) SetMFARemoved(ctx context.Context, userID string, at, setupUntil time.Time) error {
	_, err := q.c.Exec(ctx, `INSERT INTO mfa_removals (user_id, removed_at, setup_until) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET removed_at = excluded.removed_at, setup_until = excluded.setup_until`, userID, at.UTC(), setupUntil.UTC())
	return err
}

// noLimit stands for the missing window of removals recorded before
// setup windows existed.
var noLimit = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func (q queries) MFASetupUntil(ctx context.Context, userID string) (time.Time, error) {
	var t time.Time
	err := q.c.QueryRow(ctx, `SELECT COALESCE(setup_until, $2) FROM mfa_removals WHERE user_id = $1`, userID, noLimit).Scan(&t)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	return t.UTC(), err
}

func (q queries) MFARemovedAt(ctx context.Context, userID string) (time.Time, error) {
	var t time.Time
	err := q.c.QueryRow(ctx, `SELECT removed_at FROM mfa_removals WHERE user_id = $1`, userID).Scan(&t)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	return t.UTC(), err
}

func (q queries) ClearMFARemoved(ctx context.Context, userID string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM mfa_removals WHERE user_id = $1`, userID)
	return err
}

func (q queries) PutPendingTOTP(ctx context.Context, p store.PendingTOTP) error {
	_, err := q.c.Exec(ctx, `INSERT INTO pending_totp (user_id, id, secret, binding, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, secret = excluded.secret, binding = excluded.binding,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		p.UserID, p.ID, p.Secret, p.Binding, p.CreatedAt.UTC(), p.ExpiresAt.UTC())
	return err
}

func (q queries) GetPendingTOTP(ctx context.Context, userID string) (store.PendingTOTP, error) {
	var p store.PendingTOTP
	err := q.c.QueryRow(ctx, `SELECT user_id, id, secret, binding, created_at, expires_at FROM pending_totp WHERE user_id = $1`, userID).
		Scan(&p.UserID, &p.ID, &p.Secret, &p.Binding, &p.CreatedAt, &p.ExpiresAt)
	utc(&p.CreatedAt, &p.ExpiresAt)
	return p, err
}

func (q queries) DeletePendingTOTP(ctx context.Context, userID string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM pending_totp WHERE user_id = $1`, userID)
	return err
}

func (q queries) CreateUnlinkIntent(ctx context.Context, u store.UnlinkIntent) error {
	_, err := q.c.Exec(ctx, `INSERT INTO unlink_intents (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		u.ID, u.UserID, u.CreatedAt.UTC(), u.ExpiresAt.UTC())
	return err
}

func scanIntent(r Row) (store.UnlinkIntent, error) {
	var u store.UnlinkIntent
	err := r.Scan(&u.ID, &u.UserID, &u.CreatedAt, &u.ExpiresAt)
	utc(&u.CreatedAt, &u.ExpiresAt)
	return u, err
}

func (q queries) ConsumeUnlinkIntent(ctx context.Context, id string) (store.UnlinkIntent, error) {
	return scanIntent(q.c.QueryRow(ctx, `DELETE FROM unlink_intents WHERE id = $1 RETURNING id, user_id, created_at, expires_at`, id))
}

func (q queries) GetUnlinkIntent(ctx context.Context, id string) (store.UnlinkIntent, error) {
	return scanIntent(q.c.QueryRow(ctx, `SELECT id, user_id, created_at, expires_at FROM unlink_intents WHERE id = $1`, id))
}

func (q queries) CreatePortalSession(ctx context.Context, s store.PortalSession) error {
	_, err := q.c.Exec(ctx, `INSERT INTO portal_sessions (id_hash, user_id, sid, auth_time, amr, acr, id_token, step_up, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, s.IDHash, s.UserID, s.SID, s.AuthTime.UTC(), list(s.AMR), s.ACR, s.IDToken, s.StepUp,
		s.CreatedAt.UTC(), s.ExpiresAt.UTC())
	return err
}

func (q queries) GetPortalSession(ctx context.Context, idHash string) (store.PortalSession, error) {
	var s store.PortalSession
	err := q.c.QueryRow(ctx, `SELECT id_hash, user_id, sid, auth_time, amr, acr, id_token, step_up, created_at, expires_at
		FROM portal_sessions WHERE id_hash = $1`, idHash).
		Scan(&s.IDHash, &s.UserID, &s.SID, &s.AuthTime, listDest{&s.AMR}, &s.ACR, &s.IDToken, &s.StepUp, &s.CreatedAt, &s.ExpiresAt)
	utc(&s.AuthTime, &s.CreatedAt, &s.ExpiresAt)
	return s, err
}

func (q queries) SetPortalStepUp(ctx context.Context, idHash, action string) error {
	n, err := q.c.Exec(ctx, `UPDATE portal_sessions SET step_up = $2 WHERE id_hash = $1`, idHash, action)
	return affected(n, err)
}

func (q queries) DeletePortalSession(ctx context.Context, idHash string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM portal_sessions WHERE id_hash = $1`, idHash)
	return err
}

func (q queries) DeleteUserPortalSessions(ctx context.Context, userID string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM portal_sessions WHERE user_id = $1`, userID)
	return err
}

func (q queries) DeactivateUserTokens(ctx context.Context, userID, keepRequestID string) (int, error) {
	n, err := q.c.Exec(ctx, `UPDATE oauth2_tokens SET active = FALSE WHERE subject = $1 AND active = TRUE
		AND NOT (request_id = $2 AND kind = $3)`, userID, keepRequestID, string(store.KindAccessToken))
	return int(n), err
}

func (q queries) SpendStepUp(ctx context.Context, id, userID, action string, at time.Time) error {
	_, err := q.c.Exec(ctx, `INSERT INTO spent_step_ups (id, user_id, action, spent_at) VALUES ($1, $2, $3, $4)`, id, userID, action, at.UTC())
	return err
}

func (q queries) StepUpSpent(ctx context.Context, id string) (bool, error) {
	var n int
	err := q.c.QueryRow(ctx, `SELECT count(*) FROM spent_step_ups WHERE id = $1`, id).Scan(&n)
	return n > 0, err
}

func (q queries) CreatePendingAction(ctx context.Context, a store.PendingAction) error {
	_, err := q.c.Exec(ctx, `INSERT INTO pending_actions (id, user_id, method, path, form, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		a.ID, a.UserID, a.Method, a.Path, a.Form, a.CreatedAt.UTC(), a.ExpiresAt.UTC())
	return err
}

func (q queries) ConsumePendingAction(ctx context.Context, id string) (store.PendingAction, error) {
	var a store.PendingAction
	err := q.c.QueryRow(ctx, `DELETE FROM pending_actions WHERE id = $1 RETURNING id, user_id, method, path, form, created_at, expires_at`, id).
		Scan(&a.ID, &a.UserID, &a.Method, &a.Path, &a.Form, &a.CreatedAt, &a.ExpiresAt)
	utc(&a.CreatedAt, &a.ExpiresAt)
	return a, err
}

// --- audit -----------------------------------------------------------------

const auditCols = `time, type, outcome, actor_type, actor_id, subject_id, client_id, policy_id, policy_version, ip, user_agent, request_id, details, prev_hash, hash`

func (q queries) LastAuditHash(ctx context.Context) (string, error) {
	var h string
	err := q.c.QueryRow(ctx, `SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&h)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return h, err
}

func (q queries) LastAuditID(ctx context.Context) (int64, error) {
	var id int64
	err := q.c.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM audit_events`).Scan(&id)
	return id, err
}

func (q queries) InsertAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	var id int64
	err := q.c.QueryRow(ctx, `INSERT INTO audit_events (`+auditCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id`,
		e.Time.UTC(), e.Type, e.Outcome, e.ActorType, e.ActorID, e.SubjectID, e.ClientID, e.PolicyID, e.PolicyVersion, e.IP, e.UserAgent,
		e.RequestID, e.Details, e.PrevHash, e.Hash).Scan(&id)
	return id, err
}

func (q queries) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var w where
	w.add("id > $%d", f.AfterID)
	if f.ActorID != "" {
		w.add("actor_id = $%d", f.ActorID)
	}
	if f.SubjectID != "" {
		w.add("subject_id = $%d", f.SubjectID)
	}
	if f.TypePrefix != "" {
		// Prefix match without LIKE, so user input has no wildcards.
		w.add("substr(type, 1, length(CAST($%[1]d AS text))) = CAST($%[1]d AS text)", f.TypePrefix)
	}
	if f.Outcome != "" {
		w.add("outcome = $%d", f.Outcome)
	}
	if !f.Since.IsZero() {
		w.add("time >= $%d", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		w.add("time < $%d", f.Until.UTC())
	}
	tail := w.tail(f.Limit)
	rows, err := q.c.Query(ctx, `SELECT id, `+auditCols+` FROM audit_events`+tail, w.args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAuditEvent)
}

func scanAuditEvent(r Row) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := r.Scan(&e.ID, &e.Time, &e.Type, &e.Outcome, &e.ActorType, &e.ActorID, &e.SubjectID, &e.ClientID, &e.PolicyID, &e.PolicyVersion,
		&e.IP, &e.UserAgent, &e.RequestID, &e.Details, &e.PrevHash, &e.Hash)
	utc(&e.Time)
	return e, err
}

func (q queries) PruneAuditEvents(ctx context.Context, below uint64, throughID int64, hash, note string, at time.Time) (int, error) {
	if _, err := q.c.Exec(ctx, `INSERT INTO audit_checkpoints (through_id, hash, note, created_at) VALUES ($1, $2, $3, $4)`, throughID, hash, note, at.UTC()); err != nil {
		return 0, err
	}
	n, err := q.c.Exec(ctx, `DELETE FROM audit_events WHERE leaf_index < $1`, int64(below))
	return int(n), err
}

func (q queries) LastAuditCheckpoint(ctx context.Context) (int64, string, error) {
	var id int64
	var h string
	err := q.c.QueryRow(ctx, `SELECT through_id, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&id, &h)
	if errors.Is(err, store.ErrNotFound) {
		return 0, "", nil
	}
	return id, h, err
}

func (q queries) GetDispatchCursor(ctx context.Context, name string, startID int64) (store.DispatchCursor, error) {
	if _, err := q.c.Exec(ctx, `INSERT INTO dispatch_cursors (name, last_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, startID); err != nil {
		return store.DispatchCursor{}, err
	}
	var c store.DispatchCursor
	var next *time.Time
	err := q.c.QueryRow(ctx, `SELECT name, last_id, attempts, next_at, last_error FROM dispatch_cursors WHERE name = $1`, name).
		Scan(&c.Name, &c.LastID, &c.Attempts, &next, &c.LastError)
	c.NextAt = fromNull(next)
	return c, err
}

func (q queries) LeaseDispatch(ctx context.Context, name string, now, until time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE dispatch_cursors SET lease_until = $3 WHERE name = $1 AND (lease_until IS NULL OR lease_until < $2)`,
		name, now.UTC(), until.UTC())
	return n == 1, err
}

func (q queries) AdvanceDispatch(ctx context.Context, c store.DispatchCursor, held, until time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE dispatch_cursors SET last_id = $2, attempts = $3, next_at = $4, last_error = $5, lease_until = $7
		WHERE name = $1 AND lease_until = $6`,
		c.Name, c.LastID, c.Attempts, nullTime(c.NextAt), c.LastError, held.UTC(), nullTime(until))
	return n == 1, err
}

func (q queries) SaveDispatchCursor(ctx context.Context, c store.DispatchCursor) error {
	// Saving also releases the lease.
	n, err := q.c.Exec(ctx, `UPDATE dispatch_cursors SET last_id = $2, attempts = $3, next_at = $4, last_error = $5, lease_until = NULL WHERE name = $1`,
		c.Name, c.LastID, c.Attempts, nullTime(c.NextAt), c.LastError)
	return affected(n, err)
}

func (q queries) GroupAdminEvents(ctx context.Context, adminID string, types []string, limit int) ([]store.AuditEvent, error) {
	if len(types) == 0 || len(types) > 16 {
		return nil, fmt.Errorf("group admin events: 1 to 16 types, got %d", len(types))
	}
	args := []any{adminID}
	ph := make([]string, len(types))
	for i, t := range types {
		args = append(args, t)
		ph[i] = fmt.Sprintf("$%d", len(args))
	}
	args = append(args, limit)
	rows, err := q.c.Query(ctx, `SELECT id, `+auditCols+` FROM audit_events WHERE type IN (`+strings.Join(ph, ", ")+`)
		AND subject_id IN (SELECT m.user_id FROM group_members m JOIN group_admins a ON a.group_id = m.group_id WHERE a.user_id = $1)
		ORDER BY id DESC LIMIT $`+fmt.Sprint(len(args)), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAuditEvent)
}

// --- audit tree -------------------------------------------------------------

func (q queries) UnsealedAuditEvents(ctx context.Context, limit int) ([]store.AuditEvent, error) {
	rows, err := q.c.Query(ctx, `SELECT id, `+auditCols+` FROM audit_events WHERE leaf_index IS NULL ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAuditEvent)
}

func (q queries) SealAuditEvent(ctx context.Context, id int64, leafIndex uint64) error {
	n, err := q.c.Exec(ctx, `UPDATE audit_events SET leaf_index = $2 WHERE id = $1 AND leaf_index IS NULL`, id, int64(leafIndex))
	return affected(n, err)
}

func (q queries) SealedAuditEvents(ctx context.Context, from uint64, limit int) ([]store.SealedEvent, error) {
	rows, err := q.c.Query(ctx, `SELECT id, `+auditCols+`, leaf_index FROM audit_events WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2`, int64(from), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r Row) (store.SealedEvent, error) {
		var e store.SealedEvent
		var idx int64
		err := r.Scan(&e.ID, &e.Time, &e.Type, &e.Outcome, &e.ActorType, &e.ActorID, &e.SubjectID, &e.ClientID, &e.PolicyID, &e.PolicyVersion,
			&e.IP, &e.UserAgent, &e.RequestID, &e.Details, &e.PrevHash, &e.Hash, &idx)
		utc(&e.Time)
		e.LeafIndex = uint64(idx)
		return e, err
	})
}

func (q queries) AuditLeafIndex(ctx context.Context, id int64) (uint64, error) {
	var idx *int64
	if err := q.c.QueryRow(ctx, `SELECT leaf_index FROM audit_events WHERE id = $1`, id).Scan(&idx); err != nil {
		return 0, err
	}
	if idx == nil {
		return 0, store.ErrNotFound
	}
	return uint64(*idx), nil
}

func (q queries) PutAuditNodes(ctx context.Context, nodes []store.AuditNode) error {
	for _, n := range nodes {
		if _, err := q.c.Exec(ctx, `INSERT INTO audit_tree_nodes (level, idx, hash) VALUES ($1, $2, $3)`, int(n.Level), int64(n.Index), n.Hash); err != nil {
			return err
		}
	}
	return nil
}

func (q queries) AuditNodes(ctx context.Context, ids []store.AuditNode) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, n := range ids {
		if err := q.c.QueryRow(ctx, `SELECT hash FROM audit_tree_nodes WHERE level = $1 AND idx = $2`, int(n.Level), int64(n.Index)).Scan(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (q queries) PutAuditHead(ctx context.Context, h store.AuditHead) error {
	_, err := q.c.Exec(ctx, `INSERT INTO audit_heads (size, root, note, created_at) VALUES ($1, $2, $3, $4)`, int64(h.Size), h.Root, h.Note, h.CreatedAt.UTC())
	return err
}

func (q queries) LatestAuditHead(ctx context.Context) (store.AuditHead, error) {
	var h store.AuditHead
	var size int64
	err := q.c.QueryRow(ctx, `SELECT size, root, note, created_at FROM audit_heads ORDER BY size DESC LIMIT 1`).Scan(&size, &h.Root, &h.Note, &h.CreatedAt)
	h.Size = uint64(size)
	utc(&h.CreatedAt)
	return h, err
}

func (q queries) CountUnsealedAuditEvents(ctx context.Context) (int, error) {
	var n int
	err := q.c.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE leaf_index IS NULL`).Scan(&n)
	return n, err
}

func (q queries) AuditPositionAfter(ctx context.Context, id int64) (uint64, int, error) {
	var last *int64
	var unsealed int
	err := q.c.QueryRow(ctx, `SELECT max(leaf_index), count(*) - count(leaf_index) FROM audit_events WHERE id <= $1`, id).Scan(&last, &unsealed)
	if err != nil || last == nil {
		return 0, unsealed, err
	}
	return uint64(*last) + 1, unsealed, nil
}

func (q queries) LastAuditPruneNote(ctx context.Context) (string, error) {
	var note string
	err := q.c.QueryRow(ctx, `SELECT note FROM audit_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return note, err
}
