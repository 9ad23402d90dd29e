package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/store"
)

// ResetLinkLifetime is how long a password reset link works.
const ResetLinkLifetime = 24 * time.Hour

// ErrResetLinkInvalid means the link is unknown, used or expired.
var ErrResetLinkInvalid = errors.New("authn: password reset link is invalid, used or expired")

// ErrWeakPassword means the new password breaks the rules.
var ErrWeakPassword = errors.New("authn: passwords must be 8 to 1024 characters")

func resetHash(token string) string {
	s := sha256.Sum256([]byte("password-reset\x00" + token))
	return hex.EncodeToString(s[:])
}

// NewResetLink creates a single-use reset token for userID on q, replacing
// earlier unused ones; only its hash is stored.
func (s *Service) NewResetLink(ctx context.Context, q store.Queries, userID, createdBy string) (string, error) {
	token := RandomToken(32)
	now := s.o.Now().UTC()
	err := q.CreatePasswordReset(ctx, store.PasswordReset{IDHash: resetHash(token), UserID: userID, CreatedBy: createdBy,
		CreatedAt: now, ExpiresAt: now.Add(ResetLinkLifetime)})
	return token, err
}

// CheckResetLink returns the user a usable link belongs to.
func (s *Service) CheckResetLink(ctx context.Context, token string) (store.User, error) {
	r, err := s.o.Store.GetPasswordReset(ctx, resetHash(token))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!r.UsedAt.IsZero() || s.o.Now().After(r.ExpiresAt))) {
		return store.User{}, ErrResetLinkInvalid
	}
	if err != nil {
		return store.User{}, err
	}
	return s.o.Store.GetUser(ctx, r.UserID)
}

// ResetPassword sets a new password through a link, once: in one
// transaction it spends the link, stores the new hash, revokes every
// session and token, and records the event.
func (s *Service) ResetPassword(ctx context.Context, token, password string, ev audit.Event) error {
	if len(password) < 8 || len(password) > 1024 {
		return ErrWeakPassword
	}
	u, err := s.CheckResetLink(ctx, token)
	if err != nil {
		return err
	}
	hash := s.o.Hasher.Hash(password) // outside the transaction: it is slow
	return s.o.Store.InTx(ctx, func(q store.Queries) error {
		ok, err := q.UsePasswordReset(ctx, resetHash(token), s.o.Now())
		if err != nil {
			return err
		}
		if !ok {
			return ErrResetLinkInvalid // spent by a concurrent request
		}
		if err := q.SetPassword(ctx, u.ID, hash, s.o.Now()); err != nil {
			return err
		}
		if err := q.DeleteUserSessions(ctx, u.ID); err != nil {
			return err
		}
		if err := q.DeleteUserPortalSessions(ctx, u.ID); err != nil {
			return err
		}
		if _, err := q.DeactivateUserTokens(ctx, u.ID, ""); err != nil {
			return err
		}
		ev.Type, ev.SubjectID, ev.ActorType, ev.ActorID = audit.PasswordChanged, u.ID, audit.ActorUser, u.ID
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["via"] = "reset link"
		_, err = audit.Append(ctx, q, ev)
		return err
	})
}
