package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchkey/latchkey/store"
)

// NormalizeUsername is the form usernames are compared in.
func NormalizeUsername(u string) string { return strings.ToLower(strings.TrimSpace(u)) }

// --- users -----------------------------------------------------------------

const userCols = `id, username, email, display_name, password_hash, disabled, created_at, updated_at`

func scanUser(r Row) (store.User, error) {
	var u store.User
	err := r.Scan(&u.ID, &u.Username, &u.Email, &u.DisplayName, &u.PasswordHash, &u.Disabled, &u.CreatedAt, &u.UpdatedAt)
	utc(&u.CreatedAt, &u.UpdatedAt)
	return u, err
}

func (q queries) CreateUser(ctx context.Context, u store.User) error {
	_, err := q.c.Exec(ctx, `INSERT INTO users (id, username, username_norm, email, display_name, password_hash, disabled, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		u.ID, u.Username, NormalizeUsername(u.Username), u.Email, u.DisplayName, u.PasswordHash, u.Disabled, u.CreatedAt.UTC(), u.UpdatedAt.UTC())
	if err != nil {
		return fmt.Errorf("create user %s: %w", u.Username, err)
	}
	return nil
}

func (q queries) GetUser(ctx context.Context, id string) (store.User, error) {
	return scanUser(q.c.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

func (q queries) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	return scanUser(q.c.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE username_norm = $1`, NormalizeUsername(username)))
}

func (q queries) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	rows, err := q.c.Query(ctx, `SELECT `+userCols+` FROM users WHERE username_norm > $1 ORDER BY username_norm LIMIT $2`, NormalizeUsername(after), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanUser)
}

func (q queries) SetPassword(ctx context.Context, userID, hash string, at time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`, userID, hash, at.UTC())
	return affected(n, err)
}

// --- groups ----------------------------------------------------------------

func scanGroup(r Row) (store.Group, error) {
	var g store.Group
	err := r.Scan(&g.ID, &g.Name, &g.Description, &g.CreatedAt)
	utc(&g.CreatedAt)
	return g, err
}

func (q queries) CreateGroup(ctx context.Context, g store.Group) error {
	_, err := q.c.Exec(ctx, `INSERT INTO user_groups (id, name, description, created_at) VALUES ($1, $2, $3, $4)`,
		g.ID, g.Name, g.Description, g.CreatedAt.UTC())
	if err != nil {
		return fmt.Errorf("create group %s: %w", g.Name, err)
	}
	return nil
}

func (q queries) GetGroupByName(ctx context.Context, name string) (store.Group, error) {
	return scanGroup(q.c.QueryRow(ctx, `SELECT id, name, description, created_at FROM user_groups WHERE name = $1`, name))
}

func (q queries) ListGroups(ctx context.Context) ([]store.Group, error) {
	rows, err := q.c.Query(ctx, `SELECT id, name, description, created_at FROM user_groups ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanGroup)
}

func (q queries) AddMember(ctx context.Context, groupID, userID string) error {
	_, err := q.c.Exec(ctx, `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)`, groupID, userID)
	return err
}

func (q queries) UserGroups(ctx context.Context, userID string) ([]store.Group, error) {
	rows, err := q.c.Query(ctx, `SELECT g.id, g.name, g.description, g.created_at FROM user_groups g
		JOIN group_members m ON m.group_id = g.id WHERE m.user_id = $1 ORDER BY g.name`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanGroup)
}

// --- clients ---------------------------------------------------------------

const clientCols = `id, name, secret_hash, public, first_party, redirect_uris, post_logout_redirect_uris, grant_types, response_types, scopes, created_at, pkce_optional, access_token_format`

func scanClient(r Row) (store.Client, error) {
	var c store.Client
	err := r.Scan(&c.ID, &c.Name, &c.SecretHash, &c.Public, &c.FirstParty,
		listDest{&c.RedirectURIs}, listDest{&c.PostLogoutRedirectURIs}, listDest{&c.GrantTypes},
		listDest{&c.ResponseTypes}, listDest{&c.Scopes}, &c.CreatedAt, &c.PKCEOptional, &c.AccessTokenFormat)
	utc(&c.CreatedAt)
	if len(c.SecretHash) == 0 {
		c.SecretHash = nil
	}
	return c, err
}

func (q queries) CreateClient(ctx context.Context, c store.Client) error {
	if err := c.Validate(); err != nil {
		return err
	}
	_, err := q.c.Exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		c.ID, c.Name, c.SecretHash, c.Public, c.FirstParty, list(c.RedirectURIs), list(c.PostLogoutRedirectURIs),
		list(c.GrantTypes), list(c.ResponseTypes), list(c.Scopes), c.CreatedAt.UTC(), c.PKCEOptional, cmp.Or(c.AccessTokenFormat, store.AccessTokensOpaque))
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	return nil
}

func (q queries) GetClient(ctx context.Context, id string) (store.Client, error) {
	return scanClient(q.c.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
}

func (q queries) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := q.c.Query(ctx, `SELECT `+clientCols+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanClient)
}

func (q queries) DeleteClient(ctx context.Context, id string) error {
	n, err := q.c.Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
	return affected(n, err)
}

// --- mfa -------------------------------------------------------------------

func (q queries) CreateTOTP(ctx context.Context, c store.TOTPCredential) error {
	_, err := q.c.Exec(ctx, `INSERT INTO totp_credentials (id, user_id, secret, created_at, verified_at, last_step)
		VALUES ($1, $2, $3, $4, $5, $6)`, c.ID, c.UserID, c.Secret, c.CreatedAt.UTC(), c.VerifiedAt.UTC(), c.LastStep)
	if err != nil {
		return fmt.Errorf("create totp for %s: %w", c.UserID, err)
	}
	return nil
}

func (q queries) GetTOTP(ctx context.Context, userID string) (store.TOTPCredential, error) {
	var c store.TOTPCredential
	err := q.c.QueryRow(ctx, `SELECT id, user_id, secret, created_at, verified_at, last_step FROM totp_credentials WHERE user_id = $1`, userID).
		Scan(&c.ID, &c.UserID, &c.Secret, &c.CreatedAt, &c.VerifiedAt, &c.LastStep)
	utc(&c.CreatedAt, &c.VerifiedAt)
	return c, err
}

// AdvanceTOTPStep is a conditional update: the WHERE clause re-checks the
// counter inside the write, so two requests carrying one code cannot both
// pass even without a transaction.
func (q queries) AdvanceTOTPStep(ctx context.Context, credentialID string, step int64) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE totp_credentials SET last_step = $2 WHERE id = $1 AND last_step < $2`, credentialID, step)
	return n == 1, err
}

func (q queries) DeleteTOTP(ctx context.Context, userID string) (bool, error) {
	n, err := q.c.Exec(ctx, `DELETE FROM totp_credentials WHERE user_id = $1`, userID)
	return n > 0, err
}

func (q queries) ReplaceRecoveryCodes(ctx context.Context, userID string, digests []string, at time.Time) error {
	if _, err := q.c.Exec(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, d := range digests {
		if _, err := q.c.Exec(ctx, `INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)`, userID, d, at.UTC()); err != nil {
			return err
		}
	}
	return nil
}

func (q queries) UseRecoveryCode(ctx context.Context, userID, digest string, at time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND digest = $2 AND used_at IS NULL`, userID, digest, at.UTC())
	return n == 1, err
}

func (q queries) CountRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	err := q.c.QueryRow(ctx, `SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	return n, err
}

// --- sessions, flows, consents ---------------------------------------------

func (q queries) CreateSession(ctx context.Context, s store.BrowserSession) error {
	_, err := q.c.Exec(ctx, `INSERT INTO browser_sessions (id_hash, sid, user_id, auth_time, amr, acr, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, s.IDHash, s.SID, s.UserID, s.AuthTime.UTC(), list(s.AMR), s.ACR,
		s.CreatedAt.UTC(), s.LastSeenAt.UTC(), s.ExpiresAt.UTC())
	return err
}

func (q queries) GetSession(ctx context.Context, idHash string) (store.BrowserSession, error) {
	var s store.BrowserSession
	err := q.c.QueryRow(ctx, `SELECT id_hash, sid, user_id, auth_time, amr, acr, created_at, last_seen_at, expires_at
		FROM browser_sessions WHERE id_hash = $1`, idHash).
		Scan(&s.IDHash, &s.SID, &s.UserID, &s.AuthTime, listDest{&s.AMR}, &s.ACR, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt)
	utc(&s.AuthTime, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt)
	return s, err
}

func (q queries) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE browser_sessions SET last_seen_at = $2 WHERE id_hash = $1`, idHash, at.UTC())
	return affected(n, err)
}

func (q queries) DeleteSession(ctx context.Context, idHash string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM browser_sessions WHERE id_hash = $1`, idHash)
	return err
}

func (q queries) DeleteUserSessions(ctx context.Context, userID string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM browser_sessions WHERE user_id = $1`, userID)
	return err
}

func (q queries) CreateFlow(ctx context.Context, f store.LoginFlow) error {
	_, err := q.c.Exec(ctx, `INSERT INTO login_flows (id, binding, authorize_query, user_id, password_at, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, f.ID, f.Binding, f.AuthorizeQuery, f.UserID, nullTime(f.PasswordAt), f.CreatedAt.UTC(), f.ExpiresAt.UTC())
	return err
}

func (q queries) GetFlow(ctx context.Context, id string) (store.LoginFlow, error) {
	var f store.LoginFlow
	var pw *time.Time
	var second *time.Time
	err := q.c.QueryRow(ctx, `SELECT id, binding, authorize_query, user_id, password_at, second_factor, second_factor_at, created_at, expires_at
		FROM login_flows WHERE id = $1`, id).
		Scan(&f.ID, &f.Binding, &f.AuthorizeQuery, &f.UserID, &pw, &f.SecondFactor, &second, &f.CreatedAt, &f.ExpiresAt)
	f.PasswordAt, f.SecondFactorAt = fromNull(pw), fromNull(second)
	utc(&f.CreatedAt, &f.ExpiresAt)
	return f, err
}

func (q queries) SetFlowUser(ctx context.Context, id, userID string, at time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE login_flows SET user_id = $2, password_at = $3 WHERE id = $1`, id, userID, at.UTC())
	return affected(n, err)
}

func (q queries) SetFlowSecondFactor(ctx context.Context, id, amr string, at time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE login_flows SET second_factor = $2, second_factor_at = $3 WHERE id = $1 AND user_id <> ''`, id, amr, at.UTC())
	return affected(n, err)
}

func (q queries) ConsumeFlow(ctx context.Context, id string) (bool, error) {
	n, err := q.c.Exec(ctx, `DELETE FROM login_flows WHERE id = $1`, id)
	return n == 1, err
}

func (q queries) GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error) {
	var c store.Consent
	err := q.c.QueryRow(ctx, `SELECT user_id, client_id, scopes, granted_at FROM consents WHERE user_id = $1 AND client_id = $2`, userID, clientID).
		Scan(&c.UserID, &c.ClientID, listDest{&c.Scopes}, &c.GrantedAt)
	utc(&c.GrantedAt)
	return c, err
}

func (q queries) SaveConsent(ctx context.Context, c store.Consent) error {
	_, err := q.c.Exec(ctx, `INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at`,
		c.UserID, c.ClientID, list(c.Scopes), c.GrantedAt.UTC())
	return err
}

// --- keys ------------------------------------------------------------------

func (q queries) CreateKey(ctx context.Context, k store.SigningKey) error {
	_, err := q.c.Exec(ctx, `INSERT INTO signing_keys (id, algorithm, private_key, public_key, created_at, not_before, not_after) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Algorithm, k.Private, k.Public, k.CreatedAt.UTC(), nullTime(k.NotBefore), nullTime(k.NotAfter))
	return err
}

func (q queries) ListKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := q.c.Query(ctx, `SELECT id, algorithm, private_key, public_key, created_at, not_before, not_after FROM signing_keys ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r Row) (store.SigningKey, error) {
		var k store.SigningKey
		var nb, na *time.Time
		err := r.Scan(&k.ID, &k.Algorithm, &k.Private, &k.Public, &k.CreatedAt, &nb, &na)
		k.NotBefore, k.NotAfter = fromNull(nb), fromNull(na)
		utc(&k.CreatedAt, &k.NotBefore, &k.NotAfter)
		return k, err
	})
}

func (q queries) SetKeyNotAfter(ctx context.Context, id string, notAfter time.Time) error {
	n, err := q.c.Exec(ctx, `UPDATE signing_keys SET not_after = $2 WHERE id = $1`, id, nullTime(notAfter))
	return affected(n, err)
}

// --- tokens ----------------------------------------------------------------

const tokenCols = `kind, signature, request_id, client_id, subject, session_id, active, requested_at, expires_at, scopes, granted_scopes, audience, granted_audience, form, session`

const (
	insertTokenSQL = `INSERT INTO oauth2_tokens (` + tokenCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`
	insertEventSQL = `INSERT INTO token_events (` + eventCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`
)

func tokenArgs(r store.TokenRecord) []any {
	return []any{string(r.Kind), r.Signature, r.RequestID, r.ClientID, r.Subject, r.SessionID, r.Active, r.RequestedAt.UTC(), r.ExpiresAt.UTC(),
		list(r.Scopes), list(r.GrantedScopes), list(r.Audience), list(r.GrantedAudience), r.Form, r.Session}
}

func eventArgs(e store.TokenEvent) []any {
	return []any{e.Time.UTC(), string(e.Type), string(e.TokenType), e.RequestID, e.ClientID, e.Subject, e.GrantType}
}

func (q queries) CreateToken(ctx context.Context, r store.TokenRecord) error {
	_, err := q.c.Exec(ctx, insertTokenSQL, tokenArgs(r)...)
	return err
}

const eventCols = `time, type, token_type, request_id, client_id, subject, grant_type`

// CreateTokenWithEvent writes a token and its log row atomically: in the
// caller's transaction; else on PostgreSQL as one statement, shared with
// concurrent grants (tokenbatch.go); else as one job of a backend that
// runs statements atomically (the embedded store's writer).
func (q queries) CreateTokenWithEvent(ctx context.Context, r store.TokenRecord, e store.TokenEvent) error {
	if q.inTx {
		if err := q.CreateToken(ctx, r); err != nil {
			return err
		}
		return q.AppendTokenEvent(ctx, e)
	}
	args := append(tokenArgs(r), eventArgs(e)...)
	if q.d.DataModifyingCTE {
		if badText(args) {
			return store.ErrInvalidInput
		}
		if q.tokens != nil {
			return q.tokens.write(ctx, args)
		}
		_, err := q.c.Exec(ctx, singleTokenSQL, args...)
		return err
	}
	if g, ok := q.c.(textGuard); ok {
		if done, err := g.execAll(ctx, Stmt{insertTokenSQL, args[:15]}, Stmt{insertEventSQL, args[15:]}); done {
			return err
		}
	}
	return errors.New("sqlstore: this backend can write a token and its event atomically only in a transaction")
}

func (q queries) GetToken(ctx context.Context, kind store.TokenKind, signature string) (store.TokenRecord, error) {
	var r store.TokenRecord
	var k string
	var grace *time.Time
	err := q.c.QueryRow(ctx, `SELECT `+tokenCols+`, grace_until FROM oauth2_tokens WHERE kind = $1 AND signature = $2`, string(kind), signature).
		Scan(&k, &r.Signature, &r.RequestID, &r.ClientID, &r.Subject, &r.SessionID, &r.Active, &r.RequestedAt, &r.ExpiresAt,
			listDest{&r.Scopes}, listDest{&r.GrantedScopes}, listDest{&r.Audience}, listDest{&r.GrantedAudience}, &r.Form, &r.Session, &grace)
	r.Kind = store.TokenKind(k)
	r.GraceUntil = fromNull(grace)
	utc(&r.RequestedAt, &r.ExpiresAt, &r.GraceUntil)
	return r, err
}

func (q queries) DeleteToken(ctx context.Context, kind store.TokenKind, signature string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM oauth2_tokens WHERE kind = $1 AND signature = $2`, string(kind), signature)
	return err
}

func (q queries) DeactivateToken(ctx context.Context, kind store.TokenKind, signature string) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE oauth2_tokens SET active = FALSE WHERE kind = $1 AND signature = $2 AND active = TRUE`, string(kind), signature)
	return n == 1, err
}

func (q queries) DeactivateRequest(ctx context.Context, kind store.TokenKind, requestID string) (int, error) {
	// The literal TRUE matches the partial index on active rows.
	n, err := q.c.Exec(ctx, `UPDATE oauth2_tokens SET active = FALSE WHERE kind = $1 AND request_id = $2 AND active = TRUE`, string(kind), requestID)
	return int(n), err
}

func (q queries) RetireRefreshToken(ctx context.Context, signature string, graceUntil time.Time) (bool, error) {
	n, err := q.c.Exec(ctx, `UPDATE oauth2_tokens SET active = FALSE, grace_until = $2 WHERE kind = 'refresh' AND signature = $1 AND active = TRUE`,
		signature, nullTime(graceUntil))
	return n == 1, err
}

func (q queries) ClaimRefreshGrace(ctx context.Context, signature string, now time.Time) (bool, error) {
	// One statement: two retries racing for one grace cannot both win.
	n, err := q.c.Exec(ctx, `UPDATE oauth2_tokens SET grace_until = NULL
		WHERE kind = 'refresh' AND signature = $1 AND active = FALSE AND grace_until >= $2
		AND EXISTS (SELECT 1 FROM oauth2_tokens s WHERE s.request_id = oauth2_tokens.request_id AND s.kind = 'refresh' AND s.active = TRUE)`,
		signature, now.UTC())
	return n == 1, err
}

func (q queries) GrantActive(ctx context.Context, kind store.TokenKind, requestID string) (bool, error) {
	var one int
	err := q.c.QueryRow(ctx, `SELECT 1 FROM oauth2_tokens WHERE request_id = $1 AND kind = $2 AND active = TRUE LIMIT 1`, requestID, string(kind)).Scan(&one)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (q queries) AppendTokenEvent(ctx context.Context, e store.TokenEvent) error {
	_, err := q.c.Exec(ctx, insertEventSQL, eventArgs(e)...)
	return err
}

// AppendTokenEvents writes a batch of events in one statement.
func (q queries) AppendTokenEvents(ctx context.Context, es []store.TokenEvent) error {
	if len(es) == 0 {
		return nil
	}
	var b strings.Builder
	args := make([]any, 0, 7*len(es))
	b.WriteString(`INSERT INTO token_events (` + eventCols + `) VALUES `)
	for i, e := range es {
		if i > 0 {
			b.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7)
		args = append(args, eventArgs(e)...)
	}
	_, err := q.c.Exec(ctx, b.String(), args...)
	return err
}

// where collects AND-ed conditions with numbered placeholders, for the
// filtered, id-ordered, cursor-paged list queries.
type where struct {
	conds []string
	args  []any
}

// add appends cond, whose %[1]d stands for the new value's placeholder.
func (w *where) add(cond string, v any) {
	w.args = append(w.args, v)
	w.conds = append(w.conds, fmt.Sprintf(cond, len(w.args)))
}

// tail closes the query: the conditions, id order and a limit of 1–1000.
func (w *where) tail(limit int) string {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	w.args = append(w.args, limit)
	return " WHERE " + strings.Join(w.conds, " AND ") + fmt.Sprintf(" ORDER BY id LIMIT $%d", len(w.args))
}

func (q queries) ListTokenEvents(ctx context.Context, f store.TokenEventFilter) ([]store.TokenEvent, error) {
	var w where
	w.add("id > $%d", f.AfterID)
	if f.ClientID != "" {
		w.add("client_id = $%d", f.ClientID)
	}
	if f.Subject != "" {
		w.add("subject = $%d", f.Subject)
	}
	if f.RequestID != "" {
		w.add("request_id = $%d", f.RequestID)
	}
	if f.Type != "" {
		w.add("type = $%d", string(f.Type))
	}
	if !f.Since.IsZero() {
		w.add("time >= $%d", f.Since.UTC())
	}
	tail := w.tail(f.Limit)
	rows, err := q.c.Query(ctx, `SELECT id, time, type, token_type, request_id, client_id, subject, grant_type FROM token_events`+tail, w.args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r Row) (store.TokenEvent, error) {
		var e store.TokenEvent
		var typ, tt string
		err := r.Scan(&e.ID, &e.Time, &typ, &tt, &e.RequestID, &e.ClientID, &e.Subject, &e.GrantType)
		e.Type, e.TokenType = store.TokenEventType(typ), store.TokenKind(tt)
		utc(&e.Time)
		return e, err
	})
}

func (q queries) RevokeJWT(ctx context.Context, jti string, expiresAt time.Time) error {
	_, err := q.c.Exec(ctx, `INSERT INTO revoked_jwts (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING`, jti, expiresAt.UTC())
	return err
}

func (q queries) JWTRevoked(ctx context.Context, jti string) (bool, error) {
	var n int
	err := q.c.QueryRow(ctx, `SELECT count(*) FROM revoked_jwts WHERE jti = $1`, jti).Scan(&n)
	return n > 0, err
}

func (q queries) DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error) {
	n, err := q.c.Exec(ctx, `DELETE FROM oauth2_tokens WHERE expires_at < $1`, before.UTC())
	if err != nil {
		return 0, err
	}
	// Everything else that expires goes with the tokens.
	for _, stmt := range []string{
		`DELETE FROM browser_sessions WHERE expires_at < $1`,
		`DELETE FROM login_flows WHERE expires_at < $1`,
		`DELETE FROM portal_sessions WHERE expires_at < $1`,
		`DELETE FROM unlink_intents WHERE expires_at < $1`,
		`DELETE FROM pending_totp WHERE expires_at < $1`,
		`DELETE FROM password_resets WHERE expires_at < $1`,
		`DELETE FROM pending_actions WHERE expires_at < $1`,
		`DELETE FROM webauthn_ceremonies WHERE expires_at < $1`,
		`DELETE FROM revoked_jwts WHERE expires_at < $1`,
		// Failure counters idle for an hour are past every window.
		`DELETE FROM login_attempts WHERE last_failure < $1 AND (locked_until IS NULL OR locked_until < $1)`,
	} {
		if _, err := q.c.Exec(ctx, stmt, before.UTC()); err != nil {
			return int(n), err
		}
	}
	// A spent step-up only matters while it is fresh enough to be used,
	// and no policy lets a step-up count for longer than a day.
	if _, err := q.c.Exec(ctx, `DELETE FROM spent_step_ups WHERE spent_at < $1`, before.Add(-store.MaxStepUpAge).UTC()); err != nil {
		return int(n), err
	}
	return int(n), nil
}

func (q queries) DeleteTokenEvents(ctx context.Context, before time.Time) (int, error) {
	n, err := q.c.Exec(ctx, `DELETE FROM token_events WHERE time < $1`, before.UTC())
	return int(n), err
}

// --- attempts --------------------------------------------------------------

func (q queries) RecordFailure(ctx context.Context, key string, at time.Time) (int, error) {
	var n int
	err := q.c.QueryRow(ctx, `INSERT INTO login_attempts (key, failures, last_failure) VALUES ($1, 1, $2)
		ON CONFLICT (key) DO UPDATE SET failures = login_attempts.failures + 1, last_failure = excluded.last_failure
		RETURNING failures`, key, at.UTC()).Scan(&n)
	return n, err
}

func (q queries) ClaimAttempt(ctx context.Context, key string, threshold int, now, forgetBefore, holdUntil time.Time) (int, error) {
	// The conditional upsert is the whole check: PostgreSQL and SQLite
	// both take the row lock for ON CONFLICT DO UPDATE, so concurrent
	// claims are judged one after another against the committed count.
	var n int
	err := q.c.QueryRow(ctx, `INSERT INTO login_attempts (key, failures, last_failure, locked_until)
		VALUES ($1, 1, $2, CASE WHEN 1 >= $4 THEN CAST($5 AS timestamptz) END)
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN login_attempts.last_failure < $3 THEN 1 ELSE login_attempts.failures + 1 END,
			last_failure = excluded.last_failure,
			locked_until = CASE WHEN (CASE WHEN login_attempts.last_failure < $3 THEN 1 ELSE login_attempts.failures + 1 END) >= $4
				THEN CAST($5 AS timestamptz) ELSE login_attempts.locked_until END
		WHERE login_attempts.locked_until IS NULL OR login_attempts.locked_until <= $2
		RETURNING failures`, key, now.UTC(), forgetBefore.UTC(), threshold, holdUntil.UTC()).Scan(&n)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil // locked: the WHERE refused the update
	}
	return n, err
}

func (q queries) SetLockedUntil(ctx context.Context, key string, until time.Time) error {
	_, err := q.c.Exec(ctx, `UPDATE login_attempts SET locked_until = $2 WHERE key = $1`, key, nullTime(until))
	return err
}

func scanAttempt(r Row) (store.Attempt, error) {
	var a store.Attempt
	var lu *time.Time
	err := r.Scan(&a.Key, &a.Failures, &a.LastFailure, &lu)
	a.LockedUntil = fromNull(lu)
	utc(&a.LastFailure)
	return a, err
}

func (q queries) GetAttempt(ctx context.Context, key string) (store.Attempt, error) {
	return scanAttempt(q.c.QueryRow(ctx, `SELECT key, failures, last_failure, locked_until FROM login_attempts WHERE key = $1`, key))
}

func (q queries) GetAttempts(ctx context.Context, keys ...string) ([]store.Attempt, error) {
	if len(keys) == 0 || len(keys) > 8 {
		return nil, fmt.Errorf("get attempts: between 1 and 8 keys, got %d", len(keys))
	}
	ph := make([]string, len(keys))
	args := make([]any, len(keys))
	for i, k := range keys {
		ph[i], args[i] = fmt.Sprintf("$%d", i+1), k
	}
	rows, err := q.c.Query(ctx, `SELECT key, failures, last_failure, locked_until FROM login_attempts WHERE key IN (`+strings.Join(ph, ", ")+`)`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAttempt)
}

func (q queries) ResetAttempts(ctx context.Context, key string) error {
	_, err := q.c.Exec(ctx, `DELETE FROM login_attempts WHERE key = $1`, key)
	return err
}

// --- helpers ---------------------------------------------------------------

func affected(n int64, err error) error {
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func collect[T any](rows Rows, scan func(Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
