package mfa

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// A new authenticator's secret is bound to the caller it was shown to
// (the proof's session, token or sign-in flow): nobody else sees it again
// or completes the setup with it, so a secret created through one path is
// never planted on another (a bearer caller's secret on the user's sign-in
// setup screen, say).

func setupExpired() *Refusal {
	return &Refusal{Code: CodeSetupExpired, Message: "The setup has expired. Start again."}
}

// startSetup creates (or replaces) the user's pending secret, bound to p.
func (s *Service) startSetup(ctx context.Context, q store.Queries, userID string, p Proof) (string, error) {
	secret, pending := s.o.Authn.NewPendingTOTP(userID, p.key())
	if err := q.PutPendingTOTP(ctx, pending); err != nil {
		return "", fmt.Errorf("start enrollment for %s: %w", userID, err)
	}
	return secret, nil
}

// pending returns the pending secret if it is bound to p and unexpired.
func (s *Service) pending(ctx context.Context, q store.Queries, userID string, p Proof) (string, error) {
	pt, err := q.GetPendingTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (pt.Binding != p.key() || s.o.Now().After(pt.ExpiresAt))) {
		return "", setupExpired()
	}
	if err != nil {
		return "", err
	}
	return s.o.Authn.OpenPendingTOTP(pt)
}

// StartSetup shows a new secret to the caller: a first authenticator, or
// (after a step-up for ActionReplace) a replacement; the active one keeps
// working until a code from the new one is verified.
func (s *Service) StartSetup(ctx context.Context, a Actor, p Proof) (string, error) {
	var secret string
	var eff policy.Effective
	var mode addMode
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		var err error
		if mode, eff, _, err = s.checkAdd(ctx, q, a.UserID, p, policy.MethodTOTP); err != nil {
			return err
		}
		secret, err = s.startSetup(ctx, q, a.UserID, p)
		return err
	})
	if err != nil {
		s.refused(ctx, a, p, mode.action(), eff, err)
	}
	return secret, err
}

// SetupSecret returns the secret pending for this caller, starting one
// when none is, for setup screens shown again. A user with a method their
// policy allows only gets one started by StartSetup.
func (s *Service) SetupSecret(ctx context.Context, a Actor, p Proof) (string, error) {
	secret, err := s.pending(ctx, s.o.Store, a.UserID, p)
	if r, ok := AsRefusal(err); ok && r.Code == CodeSetupExpired {
		if allowed, err := s.hasAllowedMethod(ctx, s.o.Store, a.UserID); err != nil || allowed {
			return "", errors.Join(err, r)
		}
		return s.StartSetup(ctx, a, p)
	}
	return secret, err
}

// CompleteSetup verifies code against the caller's pending secret and, in
// one transaction, makes it the user's authenticator (replacing the active
// one after a step-up for that action, which it spends), issues new
// recovery codes, clears the re-enrollment requirement and records the
// audit event. A wrong code changes nothing.
func (s *Service) CompleteSetup(ctx context.Context, a Actor, p Proof, code string) (codes []string, replaced bool, err error) {
	var eff policy.Effective
	var mode addMode
	err = s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		var ms []Method
		if mode, eff, ms, err = s.checkAdd(ctx, q, a.UserID, p, policy.MethodTOTP); err != nil {
			return err
		}
		replaced = mode == addReplace
		secret, err := s.pending(ctx, q, a.UserID, p)
		if err != nil {
			return err
		}
		step, ok := s.o.Authn.MatchTOTP(secret, code)
		if !ok {
			return &Refusal{Code: CodeInvalidCode, Message: "That code did not match. Check the time on your phone and enter the current code."}
		}
		if replaced {
			if _, err := q.DeleteTOTP(ctx, a.UserID); err != nil {
				return err
			}
		}
		if codes, err = s.o.Authn.EnrollTOTP(ctx, q, a.UserID, secret, step); err != nil {
			return err
		}
		if err := q.DeletePendingTOTP(ctx, a.UserID); err != nil {
			return err
		}
		if err := s.afterAdd(ctx, q, a, p, a.UserID, mode, eff, ms); err != nil {
			return err
		}
		typ := audit.MFAEnrolled
		if replaced {
			typ = audit.MFAReplaced
		}
		return s.append(ctx, q, event(typ, a, p, a.UserID, firstSource(eff.Applied), nil))
	})
	if err != nil {
		s.refused(ctx, a, p, mode.action(), eff, err)
		return nil, false, err
	}
	return codes, replaced, nil
}

// EnrollVerified gives a user without an authenticator one whose secret
// the operator already holds (the CLI, the dev-mode demo user), audited.
func (s *Service) EnrollVerified(ctx context.Context, a Actor, userID, secret string) ([]string, error) {
	if a.Type != audit.ActorSystem {
		return nil, errors.New("mfa: only the operator enrolls a known secret")
	}
	var codes []string
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+userID); err != nil {
			return err
		}
		if has, err := has2SV(ctx, q, userID); err != nil {
			return err
		} else if has {
			return &Refusal{Code: CodeMFAActive, Message: "The user already has an authenticator."}
		}
		if eff, err := authn.EffectivePolicy(ctx, q, userID); err != nil {
			return err
		} else if !eff.Allows(policy.MethodTOTP) {
			return methodNotAllowed(eff)
		}
		var err error
		if codes, err = s.o.Authn.EnrollTOTP(ctx, q, userID, secret, 0); err != nil {
			return err
		}
		if err := q.ClearMFARemoved(ctx, userID); err != nil {
			return err
		}
		return s.append(ctx, q, event(audit.MFAEnrolled, a, Proof{Via: ViaOperator}, userID, policy.Source{}, nil))
	})
	return codes, err
}

// HasTOTP reports whether the user has a TOTP app (not whether 2SV is on:
// a key counts too, see Methods).
func (s *Service) HasTOTP(ctx context.Context, userID string) (bool, error) {
	_, err := s.o.Store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
