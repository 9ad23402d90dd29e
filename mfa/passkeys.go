package mfa

import (
	"context"
	"errors"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Method is one way a user confirms it's them: their TOTP app or one of
// their passkeys and security keys.
type Method struct {
	ID         string    `json:"id"`   // "totp", or the passkey's id
	Kind       string    `json:"kind"` // "totp" or "passkey"
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Allowed: the user's policy allows this kind (see policy.Methods);
	// filled in by Methods.
	Allowed bool `json:"allowed"`
}

// methods lists the user's second factors on q, TOTP first.
func methods(ctx context.Context, q store.Queries, userID string) ([]Method, error) {
	var out []Method
	cred, err := q.GetTOTP(ctx, userID)
	switch {
	case err == nil:
		m := Method{ID: "totp", Kind: policy.MethodTOTP, Name: "Authenticator app", CreatedAt: cred.VerifiedAt}
		if cred.LastStep > 0 {
			m.LastUsedAt = time.Unix(cred.LastStep*30, 0).UTC()
		}
		out = append(out, m)
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	pks, err := q.ListWebAuthnCredentials(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, c := range pks {
		out = append(out, Method{ID: c.ID, Kind: policy.MethodPasskey, Name: c.Name, CreatedAt: c.CreatedAt, LastUsedAt: c.LastUsedAt})
	}
	return out, nil
}

// PasskeysOn reports whether passkeys can be used on this server.
func (s *Service) PasskeysOn() bool { return s.o.Passkeys != nil }

// Methods lists the user's second factors, each marked with whether their
// policy allows it.
func (s *Service) Methods(ctx context.Context, userID string) ([]Method, error) {
	ms, _, err := s.MethodsAndPolicy(ctx, userID)
	return ms, err
}

// MethodsAndPolicy is Methods with the effective policy that marked them,
// for callers that need both (one policy read, not two).
func (s *Service) MethodsAndPolicy(ctx context.Context, userID string) ([]Method, policy.Effective, error) {
	ms, err := methods(ctx, s.o.Store, userID)
	if err != nil {
		return nil, policy.Effective{}, err
	}
	eff, err := authn.EffectivePolicy(ctx, s.o.Store, userID)
	for i := range ms {
		ms[i].Allowed = eff.Allows(ms[i].Kind)
	}
	return ms, eff, err
}

// has2SV reports whether two-step verification is active: any method.
func has2SV(ctx context.Context, q store.Queries, userID string) (bool, error) {
	ms, err := methods(ctx, q, userID)
	return len(ms) > 0, err
}

// authnPolicy is the user's effective policy for an audit record of a
// refusal (zero if it cannot be read).
func authnPolicy(ctx context.Context, q store.Queries, userID string) policy.Effective {
	eff, _ := authn.EffectivePolicy(ctx, q, userID)
	return eff
}

func passkeysOff() *Refusal {
	return &Refusal{Code: CodeNotFound, Message: "Passkeys are not enabled on this server."}
}

func (s *Service) passkeyUser(ctx context.Context, q store.Queries, userID string) (store.User, error) {
	u, err := q.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return u, &Refusal{Code: CodeNotFound, Message: "No such user."}
	}
	return u, err
}

// BeginAddPasskey starts adding a passkey or security key: a first
// method, or one beside the user's others after a step-up made for it
// (checkAdd has the rules). It returns the ceremony id and the options for
// navigator.credentials.create; the challenge is bound to the caller's
// session, grant or sign-in.
func (s *Service) BeginAddPasskey(ctx context.Context, a Actor, p Proof) (string, []byte, error) {
	if s.o.Passkeys == nil {
		return "", nil, passkeysOff()
	}
	var id string
	var options []byte
	var mode addMode
	var eff policy.Effective
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		var err error
		if mode, eff, _, err = s.checkAdd(ctx, q, a.UserID, p, policy.MethodPasskey); err != nil {
			return err
		}
		u, err := s.passkeyUser(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		id, options, err = s.o.Passkeys.BeginRegistration(ctx, q, u, p.key())
		return err
	})
	if err != nil {
		s.refused(ctx, a, p, mode.action(), eff, err)
	}
	return id, options, err
}

// FinishAddPasskey verifies the authenticator's answer and, in one
// transaction, stores the new passkey named name, spends the step-up,
// removes methods the user's policy no longer allows and records the audit
// events. A first method also gets a new set of recovery codes, returned.
func (s *Service) FinishAddPasskey(ctx context.Context, a Actor, p Proof, ceremonyID, name string, response []byte) (Method, []string, error) {
	if s.o.Passkeys == nil {
		return Method{}, nil, passkeysOff()
	}
	name, err := passkeyName(name)
	if err != nil {
		return Method{}, nil, err
	}
	var m Method
	var codes []string
	var mode addMode
	var eff policy.Effective
	err = s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		var ms []Method
		var err error
		if mode, eff, ms, err = s.checkAdd(ctx, q, a.UserID, p, policy.MethodPasskey); err != nil {
			return err
		}
		u, err := s.passkeyUser(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		c, err := s.o.Passkeys.FinishRegistration(ctx, q, u, ceremonyID, p.key(), name, response)
		if errors.Is(err, authn.ErrPasskey) {
			s.o.Logger.InfoContext(ctx, "passkey registration refused", "user", a.UserID, "err", err)
			return &Refusal{Code: CodePasskeyFailed, Message: "That security key or passkey could not be verified. Try again."}
		}
		if err != nil {
			return err
		}
		if err := q.CreateWebAuthnCredential(ctx, c); errors.Is(err, store.ErrAlreadyExists) {
			return &Refusal{Code: CodePasskeyFailed, Message: "That security key or passkey is already registered."}
		} else if err != nil {
			return err
		}
		if mode == addFirst {
			var digests []string
			codes, digests = s.o.Authn.NewRecoveryCodeSet()
			if err := q.ReplaceRecoveryCodes(ctx, a.UserID, digests, s.o.Now()); err != nil {
				return err
			}
		}
		m = Method{ID: c.ID, Kind: policy.MethodPasskey, Name: c.Name, CreatedAt: c.CreatedAt, Allowed: true}
		if err := s.append(ctx, q, event(audit.PasskeyRegistered, a, p, a.UserID, firstSource(eff.Applied),
			map[string]any{"method": policy.MethodPasskey, "passkey_id": c.ID, "name": c.Name, "first": mode == addFirst})); err != nil {
			return err
		}
		return s.afterAdd(ctx, q, a, p, a.UserID, mode, eff, ms)
	})
	if err != nil {
		s.refused(ctx, a, p, mode.action(), eff, err)
		return Method{}, nil, err
	}
	return m, codes, nil
}

// RemoveMethod removes one of the user's several second factors (a
// passkey, or the TOTP app while a passkey remains): a change of method,
// always allowed after a step-up made for it. Removing the last one is
// turning 2SV off, which goes through the removal flow and its policy
// (CodeLastMethod).
func (s *Service) RemoveMethod(ctx context.Context, a Actor, p Proof, methodID string) error {
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		ms, target, err := findMethod(ctx, q, a.UserID, methodID)
		if err != nil {
			return err
		}
		if len(ms) == 1 {
			return &Refusal{Code: CodeLastMethod, Message: "This is your only way to confirm it's you. Removing it turns two-step verification off: use \"Turn off two-step verification\" instead."}
		}
		eff, err := authn.EffectivePolicy(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		if err := s.checkStepUp(ctx, q, p, ActionRemoveMethod, eff.StepUpMaxAge); err != nil {
			return err
		}
		typ, err := deleteMethod(ctx, q, a.UserID, target)
		if err != nil {
			return err
		}
		if err := s.spend(ctx, q, p, a.UserID, ActionRemoveMethod, eff.StepUpMaxAge); err != nil {
			return err
		}
		return s.append(ctx, q, event(typ, a, p, a.UserID, firstSource(eff.AllowSelfServiceRemovalBy),
			map[string]any{"by": "self", "method": target.Kind, "method_id": target.ID, "name": target.Name, "methods_left": len(ms) - 1}))
	})
	if err != nil {
		s.refused(ctx, a, p, ActionRemoveMethod, authnPolicy(ctx, s.o.Store, a.UserID), err)
	}
	return err
}

// findMethod returns the user's methods and the one named methodID.
func findMethod(ctx context.Context, q store.Queries, userID, methodID string) ([]Method, Method, error) {
	ms, err := methods(ctx, q, userID)
	if err != nil {
		return nil, Method{}, err
	}
	for _, m := range ms {
		if m.ID == methodID {
			return ms, m, nil
		}
	}
	return ms, Method{}, &Refusal{Code: CodeNotFound, Message: "No such method on the account."}
}

// deleteMethod removes one method (not the last: callers check) and
// returns the audit event type that records it.
func deleteMethod(ctx context.Context, q store.Queries, userID string, m Method) (audit.Type, error) {
	if m.Kind == policy.MethodTOTP {
		_, err := q.DeleteTOTP(ctx, userID)
		return audit.TOTPMethodRemoved, err
	}
	_, err := q.DeleteWebAuthnCredential(ctx, userID, m.ID)
	return audit.PasskeyRemoved, err
}

// RenamePasskey names one of the user's passkeys (audited; no step-up:
// nothing about the account's protection changes).
func (s *Service) RenamePasskey(ctx context.Context, a Actor, p Proof, id, name string) error {
	name, err := passkeyName(name)
	if err != nil {
		return err
	}
	return s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.RenameWebAuthnCredential(ctx, a.UserID, id, name); errors.Is(err, store.ErrNotFound) {
			return &Refusal{Code: CodeNotFound, Message: "No such passkey on your account."}
		} else if err != nil {
			return err
		}
		return s.append(ctx, q, event(audit.PasskeyRenamed, a, p, a.UserID, firstSource(nil), map[string]any{"passkey_id": id, "name": name}))
	})
}

// passkeyName checks a passkey's name: shown to people, 1–64 characters,
// nothing invisible. Empty names become "Security key".
func passkeyName(name string) (string, error) {
	n, err := authn.DisplayText(name, 64)
	if err != nil {
		return "", &Refusal{Code: CodeInvalidName, Message: "Name the key with up to 64 visible characters."}
	}
	if n == "" {
		n = "Security key"
	}
	return n, nil
}

// RemoveMethodByAdmin removes one of a user's methods as an admin, with the
// admin rules of RemoveByAdmin (fresh proof, may administer the user, never
// oneself). Removing the last one is removing the user's 2SV: it takes that
// path (setup window, revocation, re-enrollment).
func (s *Service) RemoveMethodByAdmin(ctx context.Context, a Actor, p Proof, userID, methodID, reason string) error {
	if err := s.RequireAdminFresh(p); err != nil {
		return err
	}
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetUser(ctx, userID); errors.Is(err, store.ErrNotFound) {
			return &Refusal{Code: CodeNotFound, Message: "No such user."}
		} else if err != nil {
			return err
		}
		basis, err := s.mayAdminister(ctx, q, a, userID)
		if err != nil {
			return err
		}
		ms, target, err := findMethod(ctx, q, userID, methodID)
		if err != nil {
			return err
		}
		if len(ms) == 1 {
			return s.removeByAdmin(ctx, q, a, p, userID, audit.MFARemoved, map[string]any{"reason": reason, "method": target.Kind, "method_id": target.ID})
		}
		if err := q.Lock(ctx, "mfa:"+userID); err != nil {
			return err
		}
		typ, err := deleteMethod(ctx, q, userID, target)
		if err != nil {
			return err
		}
		return s.append(ctx, q, event(typ, a, p, userID, policy.Source{}, map[string]any{"by": "admin", "basis": basis, "reason": reason,
			"method": target.Kind, "method_id": target.ID, "name": target.Name, "methods_left": len(ms) - 1}))
	})
	s.adminRefused(ctx, a, p, userID, "remove_method", err)
	return err
}
