package mfa

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// unlinkLifetime bounds the confirmation step of an unlink.
const unlinkLifetime = 5 * time.Minute

// Options configures the Service.
type Options struct {
	Store store.Store
	Authn *authn.Service // secrets, codes and their verification
	// Passkeys runs WebAuthn ceremonies; nil turns passkeys off.
	Passkeys *authn.Passkeys
	// Support are the organisation's fallback contacts, for users whose
	// groups name no admin.
	Support []Contact
	// SetupWindow bounds how long after removing their own 2SV a user may
	// reach the setup screen with a password alone, for policies that set
	// no window of their own (default 24h);
	// ApprovalWindow does the same after an admin's removal or approval
	// (default 72h). Afterwards a new request is needed.
	SetupWindow    time.Duration
	ApprovalWindow time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Service is the 2SV lifecycle.
type Service struct{ o Options }

// New returns a Service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SetupWindow == 0 {
		o.SetupWindow = 24 * time.Hour
	}
	if o.ApprovalWindow == 0 {
		o.ApprovalWindow = 72 * time.Hour
	}
	return &Service{o: o}
}

// Decision is why removing a user's 2SV is admin-only, and whom to ask.
type Decision struct {
	Policy   policy.Effective
	Contacts []Contact
}

func notActive() *Refusal {
	return &Refusal{Code: CodeMFANotActive, Message: "Two-step verification is not active on this account."}
}

func unlinkExpired() *Refusal {
	return &Refusal{Code: CodeUnlinkExpired, Message: "This unlink request has expired or was already answered. Start again."}
}

func firstSource(s []policy.Source) policy.Source {
	if len(s) == 0 {
		return policy.Source{}
	}
	return s[0]
}

// event builds an audit event with the fields every path records.
func event(typ audit.Type, a Actor, p Proof, subject string, src policy.Source, details map[string]any) audit.Event {
	d := evidence(p)
	maps.Copy(d, details)
	return audit.Event{Type: typ, ActorType: a.Type, ActorID: a.id(), SubjectID: subject, ClientID: a.ClientID,
		PolicyID: src.PolicyID, PolicyVersion: src.PolicyVersion, Request: a.Request, Details: d}
}

// append writes e on q with the service's clock.
func (s *Service) append(ctx context.Context, q store.Queries, e audit.Event) error {
	e.Time = s.o.Now().UTC()
	_, err := audit.Append(ctx, q, e)
	return err
}

// refused records a refused self-service call that the user could not
// make for lack of a step-up or of policy, in its own transaction: nothing
// else changed, but admins see the attempt.
func (s *Service) refused(ctx context.Context, a Actor, p Proof, action string, eff policy.Effective, err error) {
	r, ok := AsRefusal(err)
	if !ok || (r.Code != CodeAdminOnly && r.Code != CodeStepUpRequired && r.Code != CodeMethodNotAllowed) {
		return
	}
	// Repeated refusals of one kind are aggregated (1st, 2nd, 4th, 8th…
	// within 15 minutes, with the count), so a client hammering the API
	// cannot grow the log without bound.
	n, cerr := s.o.Authn.Count(ctx, "audit-refused:"+a.UserID+":"+action+":"+r.Code, 15*time.Minute)
	if cerr == nil && n&(n-1) != 0 {
		return
	}
	typ, src, why := audit.StepUpRefused, firstSource(eff.AllowSelfServiceRemovalBy), eff.RemovalReason()
	switch r.Code {
	case CodeAdminOnly:
		typ = audit.MFARemovalDenied
	case CodeMethodNotAllowed:
		typ, src, why = audit.MFAMethodDenied, firstSource(eff.AllowedMethodsBy), eff.MethodsReason()
	}
	e := event(typ, a, p, a.UserID, src, map[string]any{"action": action, "reason": r.Code, "policy_reason": why, "refusals_in_window": n})
	e.Outcome = audit.Denied
	if err := s.o.Store.InTx(ctx, func(q store.Queries) error { return s.append(ctx, q, e) }); err != nil {
		s.o.Logger.ErrorContext(ctx, "audit of a refused 2SV call failed", "err", err)
	}
}

// checkOwnRemoval applies SPEC §6's checks in order: 2SV active, policy
// allows self-service removal, a fresh unspent step-up made for removal.
// q is the transaction that will act on the answer.
func (s *Service) checkOwnRemoval(ctx context.Context, q store.Queries, userID string, p Proof) (policy.Effective, error) {
	if ok, err := has2SV(ctx, q, userID); err != nil {
		return policy.Effective{}, err
	} else if !ok {
		return policy.Effective{}, notActive()
	}
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return eff, err
	}
	if !eff.AllowSelfServiceRemoval {
		cs, err := s.contacts(ctx, q, userID)
		if err != nil {
			return eff, err
		}
		return eff, &Refusal{Code: CodeAdminOnly, Message: eff.RemovalReason() + " Ask an admin to reset it.", Decision: &Decision{Policy: eff, Contacts: cs}}
	}
	if err := s.checkStepUp(ctx, q, p, ActionRemove, eff.StepUpMaxAge); err != nil {
		// A concurrent removal may have spent the step-up and removed 2SV
		// between the reads above: answer what is true now, in SPEC order.
		if ok, gerr := has2SV(ctx, q, userID); gerr == nil && !ok {
			return eff, notActive()
		}
		return eff, err
	}
	return eff, nil
}

// CheckRemoval runs the checks of a self-service removal without changing
// anything (refusals are audited), so a caller can answer them before it
// reads the rest of a request.
func (s *Service) CheckRemoval(ctx context.Context, a Actor, p Proof) error {
	eff, err := s.checkOwnRemoval(ctx, s.o.Store, a.UserID, p)
	if err != nil {
		s.refused(ctx, a, p, ActionRemove, eff, err)
	}
	return err
}

// PeekRemoval is CheckRemoval without the audit event, for callers that
// answer a refusal before validating the request: they audit it (with
// CheckRemoval) only once the request is well-formed, so malformed floods
// do not write to the log.
func (s *Service) PeekRemoval(ctx context.Context, a Actor, p Proof) error {
	_, err := s.checkOwnRemoval(ctx, s.o.Store, a.UserID, p)
	return err
}

// Initiate runs the checks and opens the short-lived confirmation step of
// a self-service removal (seed 003's POST).
func (s *Service) Initiate(ctx context.Context, a Actor, p Proof) (store.UnlinkIntent, error) {
	if err := s.CheckRemoval(ctx, a, p); err != nil {
		return store.UnlinkIntent{}, err
	}
	now := s.o.Now().UTC()
	in := store.UnlinkIntent{ID: "unlink_" + authn.RandomToken(16), UserID: a.UserID, CreatedAt: now, ExpiresAt: now.Add(unlinkLifetime)}
	return in, s.o.Store.CreateUnlinkIntent(ctx, in)
}

// Cancel answers "no": the confirmation step ends and nothing changes.
func (s *Service) Cancel(ctx context.Context, a Actor, unlinkID string) error {
	in, err := s.o.Store.GetUnlinkIntent(ctx, unlinkID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (in.UserID != a.UserID || s.o.Now().After(in.ExpiresAt))) {
		return unlinkExpired()
	}
	if err != nil {
		return err
	}
	if _, err := s.o.Store.ConsumeUnlinkIntent(ctx, unlinkID); errors.Is(err, store.ErrNotFound) {
		return unlinkExpired()
	} else if err != nil {
		return err
	}
	return nil
}

// RemoveOwn answers "yes". In one transaction it locks the user's 2SV,
// re-checks 2SV, policy and step-up from the database (a stale claim or a
// policy changed since sign-in removes nothing), consumes the confirmation
// step, spends the step-up, removes the authenticator and its recovery
// codes, revokes the user's other tokens and sessions, starts the new
// authenticator's setup bound to this caller, and appends the audit event.
// It returns the new secret.
func (s *Service) RemoveOwn(ctx context.Context, a Actor, p Proof, unlinkID string) (string, error) {
	var secret string
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		// Two concurrent "yes" for one user queue here; the second then
		// finds the authenticator gone or the confirmation used.
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		eff, err := s.checkOwnRemoval(ctx, q, a.UserID, p)
		if err != nil {
			return err
		}
		in, err := q.ConsumeUnlinkIntent(ctx, unlinkID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (in.UserID != a.UserID || s.o.Now().After(in.ExpiresAt))) {
			return unlinkExpired()
		}
		if err != nil {
			return err
		}
		if err := s.spend(ctx, q, p, a.UserID, ActionRemove, eff.StepUpMaxAge); err != nil {
			return err
		}
		window := eff.SetupWindow // the policy's, most restrictive
		if window <= 0 {
			window = s.o.SetupWindow
		}
		revoked, err := s.remove(ctx, q, a.UserID, p, window)
		if err != nil {
			return err
		}
		if secret, err = s.startSetup(ctx, q, a.UserID, p); err != nil {
			return err
		}
		src := firstSource(eff.AllowSelfServiceRemovalBy)
		return s.append(ctx, q, event(audit.MFARemoved, a, p, a.UserID, src, map[string]any{"by": "self", "basis": "self",
			"setup_until":    s.o.Now().UTC().Add(window).Format(time.RFC3339),
			"tokens_revoked": revoked, "reenroll": eff.Reenroll, "reason": ""}))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// remove deletes the authenticator and recovery codes on q, records when
// (so sign-in enforces re-enrollment), and revokes everything issued on the
// strength of the removed factor: tokens and sessions. The caller's own
// session or access token survives when the caller is the user, so they
// can set up the new authenticator; their step-up was already spent.
func (s *Service) remove(ctx context.Context, q store.Queries, userID string, p Proof, window time.Duration) (int, error) {
	// Every method goes: turning 2SV off removes the TOTP app and every
	// passkey and security key.
	removed, err := q.DeleteTOTP(ctx, userID)
	if err != nil {
		return 0, err
	}
	pks, err := q.ListWebAuthnCredentials(ctx, userID)
	if err != nil {
		return 0, err
	}
	for _, c := range pks {
		if _, err := q.DeleteWebAuthnCredential(ctx, userID, c.ID); err != nil {
			return 0, err
		}
	}
	if !removed && len(pks) == 0 {
		return 0, notActive()
	}
	// The recovery codes go with the last method.
	if err := q.ReplaceRecoveryCodes(ctx, userID, nil, s.o.Now()); err != nil {
		return 0, err
	}
	now := s.o.Now().UTC()
	if err := q.SetMFARemoved(ctx, userID, now, now.Add(window)); err != nil {
		return 0, err
	}
	keepGrant := ""
	if p.Via == ViaBearer {
		keepGrant = p.ID
	}
	revoked, err := q.DeactivateUserTokens(ctx, userID, keepGrant)
	if err != nil {
		return 0, err
	}
	if err := q.DeleteUserSessions(ctx, userID); err != nil {
		return 0, err
	}
	var keep *store.PortalSession
	if p.Via == ViaSession {
		if ps, err := q.GetPortalSession(ctx, p.ID); err == nil && ps.UserID == userID {
			keep = &ps
		}
	}
	if err := q.DeleteUserPortalSessions(ctx, userID); err != nil {
		return 0, err
	}
	if keep != nil {
		keep.StepUp = ""
		if err := q.CreatePortalSession(ctx, *keep); err != nil {
			return 0, err
		}
	}
	return revoked, nil
}

// setupExpired reports whether the user's 2SV was removed and the window
// to set up a new authenticator with a password alone has ended.
func (s *Service) setupExpired(ctx context.Context, q store.Queries, userID string) (bool, error) {
	until, err := q.MFASetupUntil(ctx, userID)
	return !until.IsZero() && s.o.Now().After(until), err
}

// SetupExpired reports whether the user's setup window after a removal
// has ended (see Options.SetupWindow): a password alone no longer reaches
// the setup screen.
func (s *Service) SetupExpired(ctx context.Context, userID string) (bool, error) {
	return s.setupExpired(ctx, s.o.Store, userID)
}

// RemoveByAdmin removes a user's 2SV as an admin (reason is recorded).
// The admin's proof must be fresh (RequireAdminFresh), and nobody removes
// their own 2SV this way: another admin must.
func (s *Service) RemoveByAdmin(ctx context.Context, a Actor, p Proof, userID, reason string) error {
	if err := s.RequireAdminFresh(p); err != nil {
		return err
	}
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		return s.removeByAdmin(ctx, q, a, p, userID, audit.MFARemoved, map[string]any{"reason": reason})
	})
	s.adminRefused(ctx, a, p, userID, "remove", err)
	return err
}

func (s *Service) removeByAdmin(ctx context.Context, q store.Queries, a Actor, p Proof, userID string, typ audit.Type, details map[string]any) error {
	if _, err := q.GetUser(ctx, userID); errors.Is(err, store.ErrNotFound) {
		return &Refusal{Code: CodeNotFound, Message: "No such user."}
	} else if err != nil {
		return err
	}
	if err := q.Lock(ctx, "mfa:"+userID); err != nil {
		return err
	}
	basis, err := s.mayAdminister(ctx, q, a, userID)
	if err != nil {
		return err
	}
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return err
	}
	revoked, err := s.remove(ctx, q, userID, Proof{Via: p.Via}, s.o.ApprovalWindow)
	if r, ok := AsRefusal(err); ok && r.Code == CodeMFANotActive {
		// The setup window of an earlier removal ran out: approving a new
		// request opens a new one. Anything else without 2SV stays refused.
		if expired, xerr := s.setupExpired(ctx, q, userID); xerr != nil || !expired {
			return errors.Join(err, xerr)
		}
		now := s.o.Now().UTC()
		if err := q.SetMFARemoved(ctx, userID, now, now.Add(s.o.ApprovalWindow)); err != nil {
			return err
		}
		err = nil
	}
	if err != nil {
		return err
	}
	d := map[string]any{"by": "admin", "basis": basis, "tokens_revoked": revoked, "reenroll": eff.Reenroll,
		"setup_until": s.o.Now().UTC().Add(s.o.ApprovalWindow).Format(time.RFC3339)}
	maps.Copy(d, details)
	return s.append(ctx, q, event(typ, a, p, userID, firstSource(eff.Applied), d))
}

// RequestReset records one open reset request for the user's admins.
func (s *Service) RequestReset(ctx context.Context, a Actor, p Proof, message string) (store.ResetRequest, error) {
	var rr store.ResetRequest
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if ok, err := has2SV(ctx, q, a.UserID); err == nil && !ok {
			// Without 2SV there is nothing to reset, unless the setup
			// window after a removal ran out.
			if expired, err := s.setupExpired(ctx, q, a.UserID); err != nil || !expired {
				return errors.Join(notActive(), err)
			}
		} else if err != nil {
			return err
		}
		eff, err := authn.EffectivePolicy(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		cs, err := s.contacts(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		rr = store.ResetRequest{ID: authn.NewID("reset"), UserID: a.UserID, Status: store.ResetOpen, Message: message, CreatedAt: s.o.Now().UTC()}
		if err := q.CreateResetRequest(ctx, rr); errors.Is(err, store.ErrAlreadyExists) {
			return &Refusal{Code: CodeResetRequested, Message: "You already asked your admins for a reset; they have been notified."}
		} else if err != nil {
			return err
		}
		return s.append(ctx, q, event(audit.MFAResetRequested, a, p, a.UserID, firstSource(eff.AllowSelfServiceRemovalBy),
			map[string]any{"request_id": rr.ID, "admin_contacts": cs}))
	})
	return rr, err
}

// DecideReset closes an open reset request; approving removes the user's
// 2SV in the same transaction, with the admin rules of RemoveByAdmin. The
// reason (plain text, optional) is recorded and sent to the user.
func (s *Service) DecideReset(ctx context.Context, a Actor, p Proof, id string, approve bool, reason string) error {
	if !PlainText(reason, 500) {
		return &Refusal{Code: CodeInvalidReason, Message: "The reason can be at most 500 characters of plain text."}
	}
	if approve {
		if err := s.RequireAdminFresh(p); err != nil {
			return err
		}
	}
	target := ""
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		rr, err := q.GetResetRequest(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return &Refusal{Code: CodeNotFound, Message: "No such reset request."}
		} else if err != nil {
			return err
		}
		target = rr.UserID
		basis, err := s.mayAdminister(ctx, q, a, rr.UserID)
		if err != nil {
			return err
		}
		status, typ := store.ResetDenied, audit.MFAResetDenied
		if approve {
			status, typ = store.ResetApproved, audit.MFAResetApproved
		}
		if err := q.DecideResetRequest(ctx, id, status, a.id(), s.o.Now()); errors.Is(err, store.ErrNotFound) {
			return &Refusal{Code: CodeAlreadyDecided, Message: "The request was already decided."}
		} else if err != nil {
			return err
		}
		details := map[string]any{"reset_request": rr.ID, "basis": basis, "reason": reason}
		if approve {
			return s.removeByAdmin(ctx, q, a, p, rr.UserID, typ, details)
		}
		return s.append(ctx, q, event(typ, a, p, rr.UserID, policy.Source{}, details))
	})
	action := "deny"
	if approve {
		action = "approve"
	}
	s.adminRefused(ctx, a, p, target, action, err)
	return err
}

// NewRecoveryCodes replaces the user's recovery codes with a new set after
// a step-up made for this action, which it spends; the old set stops
// working at once.
func (s *Service) NewRecoveryCodes(ctx context.Context, a Actor, p Proof) ([]string, error) {
	codes, digests := s.o.Authn.NewRecoveryCodeSet()
	var eff policy.Effective
	err := s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		if ok, err := has2SV(ctx, q, a.UserID); err != nil {
			return err
		} else if !ok {
			return notActive()
		}
		var err error
		if eff, err = authn.EffectivePolicy(ctx, q, a.UserID); err != nil {
			return err
		}
		if err := s.checkStepUp(ctx, q, p, ActionRecoveryCodes, eff.StepUpMaxAge); err != nil {
			return err
		}
		if err := s.spend(ctx, q, p, a.UserID, ActionRecoveryCodes, eff.StepUpMaxAge); err != nil {
			return err
		}
		if err := q.ReplaceRecoveryCodes(ctx, a.UserID, digests, s.o.Now()); err != nil {
			return err
		}
		return s.append(ctx, q, event(audit.RecoveryCodesRenewed, a, p, a.UserID, firstSource(eff.Applied), nil))
	})
	if err != nil {
		s.refused(ctx, a, p, ActionRecoveryCodes, eff, err)
		return nil, err
	}
	return codes, nil
}
