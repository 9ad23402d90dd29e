package authn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/store"
)

// pendingLifetime is how long a shown-but-unverified secret stays usable.
const pendingLifetime = 15 * time.Minute

// ErrNoPendingSetup means there is no unexpired secret awaiting its first code.
var ErrNoPendingSetup = errors.New("authn: no authenticator setup in progress")

// StartEnrollment creates (or replaces) the user's pending authenticator
// secret on q and returns it for display. Nothing changes for the user's
// active authenticator until a code from the new secret is verified.
func (s *Service) StartEnrollment(ctx context.Context, q store.Queries, userID string) (string, error) {
	secret := NewTOTPSecret()
	id := NewID("totp")
	now := s.o.Now().UTC()
	p := store.PendingTOTP{UserID: userID, ID: id, Secret: s.o.Keyring.Seal([]byte(secret), []byte(id)), CreatedAt: now, ExpiresAt: now.Add(pendingLifetime)}
	if err := q.PutPendingTOTP(ctx, p); err != nil {
		return "", fmt.Errorf("start enrollment for %s: %w", userID, err)
	}
	return secret, nil
}

// PendingSecret returns the pending secret, for showing the setup screen again.
func (s *Service) PendingSecret(ctx context.Context, q store.Queries, userID string) (string, error) {
	p, err := q.GetPendingTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && s.o.Now().After(p.ExpiresAt)) {
		return "", ErrNoPendingSetup
	}
	if err != nil {
		return "", err
	}
	secret, err := s.o.Keyring.Open(p.Secret, []byte(p.ID))
	return string(secret), err
}

// SetupSecret returns the pending secret, starting a new one if none is
// pending, for the setup screens.
func (s *Service) SetupSecret(ctx context.Context, q store.Queries, userID string) (string, error) {
	secret, err := s.PendingSecret(ctx, q, userID)
	if errors.Is(err, ErrNoPendingSetup) {
		return s.StartEnrollment(ctx, q, userID)
	}
	return secret, err
}

// CompleteEnrollment verifies code against the pending secret and, in one
// transaction, makes it the user's authenticator (replacing the old one, if
// any), issues new recovery codes, clears the re-enrollment requirement and
// records the audit event. A wrong code changes nothing.
func (s *Service) CompleteEnrollment(ctx context.Context, userID, code string, ev audit.Event) (codes []string, replaced bool, err error) {
	err = s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+userID); err != nil {
			return err
		}
		secret, err := s.PendingSecret(ctx, q, userID)
		if err != nil {
			return err
		}
		step, ok := matchTOTP(secret, code, s.o.Now())
		if !ok {
			return ErrInvalidCode
		}
		replaced, err = q.DeleteTOTP(ctx, userID)
		if err != nil {
			return err
		}
		if codes, err = s.EnrollTOTP(ctx, q, userID, secret); err != nil {
			return err
		}
		// The verifying code is spent: it cannot also sign in.
		cred, err := q.GetTOTP(ctx, userID)
		if err != nil {
			return err
		}
		if _, err := q.AdvanceTOTPStep(ctx, cred.ID, step); err != nil {
			return err
		}
		if err := q.DeletePendingTOTP(ctx, userID); err != nil {
			return err
		}
		if err := q.ClearMFARemoved(ctx, userID); err != nil {
			return err
		}
		ev.Type = audit.MFAEnrolled
		if replaced {
			ev.Type = audit.MFAReplaced
		}
		ev.SubjectID = userID
		_, err = audit.Append(ctx, q, ev)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return codes, replaced, nil
}

// RemoveMFA removes the user's authenticator and recovery codes on q (the
// caller's transaction, which also writes the audit event), records when,
// so sign-in enforces re-enrollment, and revokes everything issued on the
// strength of the removed factor: tokens, provider sessions and portal
// sessions. removed is false if there was nothing to remove.
func (s *Service) RemoveMFA(ctx context.Context, q store.Queries, userID string) (removed bool, tokensRevoked int, err error) {
	if removed, err = q.DeleteTOTP(ctx, userID); err != nil || !removed {
		return removed, 0, err
	}
	if err = q.SetMFARemoved(ctx, userID, s.o.Now().UTC()); err != nil {
		return false, 0, err
	}
	if tokensRevoked, err = q.DeactivateUserTokens(ctx, userID); err != nil {
		return false, 0, err
	}
	if err = q.DeleteUserSessions(ctx, userID); err != nil {
		return false, 0, err
	}
	if err = q.DeleteUserPortalSessions(ctx, userID); err != nil {
		return false, 0, err
	}
	return true, tokensRevoked, nil
}

// RegenerateRecoveryCodes replaces the user's recovery codes with a new set
// (the old ones stop working at once) and records the audit event, in one
// transaction. The caller enforces the step-up.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, userID string, ev audit.Event) ([]string, error) {
	codes, digests := s.newRecoveryCodes()
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetTOTP(ctx, userID); err != nil {
			return err
		}
		if err := q.ReplaceRecoveryCodes(ctx, userID, digests, s.o.Now()); err != nil {
			return err
		}
		ev.Type, ev.SubjectID = audit.RecoveryCodesRenewed, userID
		_, err := audit.Append(ctx, q, ev)
		return err
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}
