package mfa

import (
	"context"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Every way of adding a second factor — a TOTP app or a passkey, first or
// beside others, in the portal, over the account API, at sign-in or from
// the CLI — asks checkAdd whether it may and finishes with afterAdd, so
// the policy's allowed methods and the step-up rules hold on every path.

// addMode is what adding a method means for the user.
type addMode int

const (
	addFirst   addMode = iota // no method yet: the setup rules
	addSwitch                 // only methods their policy no longer allows
	addBeside                 // beside methods their policy allows
	addReplace                // a TOTP app replacing their (allowed) one
)

// action is the step-up action the mode needs.
func (m addMode) action() string {
	switch m {
	case addFirst:
		return ActionEnroll
	case addReplace:
		return ActionReplace
	}
	return ActionAddMethod
}

func methodNotAllowed(eff policy.Effective) *Refusal {
	return &Refusal{Code: CodeMethodNotAllowed, Message: "Your organisation does not allow this kind of authenticator. " + eff.MethodsReason(), Allowed: eff.AllowedMethods}
}

// checkAdd decides, on q, whether p may add a method of kind for userID
// and what that means:
//   - a kind the user's policy does not allow: refused;
//   - a first method: allowed, but over a bearer token only for a
//     first-party application with a fresh sign-in (a stolen or
//     third-party token must not plant a method on an account waiting to
//     re-enroll);
//   - the user holds only methods their policy no longer allows: allowed
//     for a sign-in that has just verified one of them (it is how such a
//     user moves to an allowed method), or with a step-up;
//   - otherwise a step-up made for the action (ActionAddMethod, or
//     ActionReplace for a TOTP app replacing the user's own).
func (s *Service) checkAdd(ctx context.Context, q store.Queries, userID string, p Proof, kind string) (addMode, policy.Effective, []Method, error) {
	ms, err := methods(ctx, q, userID)
	if err != nil {
		return addFirst, policy.Effective{}, nil, err
	}
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return addFirst, eff, ms, err
	}
	if !eff.Allows(kind) {
		return addFirst, eff, ms, methodNotAllowed(eff)
	}
	mode := addFirst
	if len(ms) > 0 {
		mode = addSwitch
	}
	for _, m := range ms {
		if !eff.Allows(m.Kind) {
			continue
		}
		mode = addBeside
		if kind == policy.MethodTOTP && m.Kind == policy.MethodTOTP {
			mode = addReplace
			break
		}
	}
	switch mode {
	case addFirst:
		if p.Via == ViaBearer {
			if !p.FirstParty {
				return mode, eff, ms, &Refusal{Code: CodeFirstPartyOnly, Message: "Only the organisation's own applications may set up an authenticator for you; use the account portal."}
			}
			if s.o.Now().Sub(p.AuthTime) > eff.StepUpMaxAge {
				return mode, eff, ms, stepUpRequired(ActionEnroll, eff.StepUpMaxAge)
			}
		}
		return mode, eff, ms, nil
	case addSwitch:
		if p.Via == ViaSignIn && authn.HasSecondFactor(p.AMR) && s.o.Now().Sub(p.AuthTime) <= eff.StepUpMaxAge {
			spent, err := q.StepUpSpent(ctx, p.key())
			if err != nil || !spent {
				return mode, eff, ms, err
			}
		}
	}
	return mode, eff, ms, s.checkStepUp(ctx, q, p, mode.action(), eff.StepUpMaxAge)
}

// afterAdd finishes adding a method, in the change's transaction: it
// spends the step-up (or the sign-in's proof), removes the methods the
// user's policy no longer allows (audited), and ends any re-enrollment.
// ms are the methods checkAdd saw.
func (s *Service) afterAdd(ctx context.Context, q store.Queries, a Actor, p Proof, userID string, mode addMode, eff policy.Effective, ms []Method) error {
	if mode != addFirst {
		if err := s.spend(ctx, q, p, userID, mode.action(), eff.StepUpMaxAge); err != nil {
			return err
		}
	}
	if err := s.pruneDisallowed(ctx, q, a, p, userID, eff, ms); err != nil {
		return err
	}
	return q.ClearMFARemoved(ctx, userID)
}

// hasAllowedMethod reports whether the user holds a method their policy
// allows.
func (s *Service) hasAllowedMethod(ctx context.Context, q store.Queries, userID string) (bool, error) {
	ms, err := methods(ctx, q, userID)
	if err != nil || len(ms) == 0 {
		return false, err
	}
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if eff.Allows(m.Kind) {
			return true, nil
		}
	}
	return false, nil
}

// pruneDisallowed removes, on q, the methods of ms the user's policy does
// not allow, each with its audit event (by "policy"). Callers hold the
// user's lock and keep at least one allowed method.
func (s *Service) pruneDisallowed(ctx context.Context, q store.Queries, a Actor, p Proof, userID string, eff policy.Effective, ms []Method) error {
	for _, m := range ms {
		if eff.Allows(m.Kind) {
			continue
		}
		typ, err := deleteMethod(ctx, q, userID, m)
		if err != nil {
			return err
		}
		now, err := methods(ctx, q, userID)
		if err != nil {
			return err
		}
		if err := s.append(ctx, q, event(typ, a, p, userID, firstSource(eff.AllowedMethodsBy),
			map[string]any{"by": "policy", "reason": CodeMethodNotAllowed, "method": m.Kind, "method_id": m.ID, "name": m.Name, "methods_left": len(now)})); err != nil {
			return err
		}
	}
	return nil
}

// MethodRecoveryCode names a recovery code to SignInMethod: the fallback
// for a lost authenticator, accepted whatever the policy allows.
const MethodRecoveryCode = "recovery_code"

// SignInMethod decides what a sign-in does after it verified a second
// factor of kind (policy.MethodTOTP, policy.MethodPasskey or
// MethodRecoveryCode) for a.UserID:
//   - the user holds no method their policy allows: switchNeeded, the
//     sign-in must set one up before it finishes (checkAdd accepts the
//     sign-in as the proof for that);
//   - the kind is not allowed but the user holds an allowed method:
//     refused (CodeMethodNotAllowed, audited), they use that method;
//   - otherwise the sign-in finishes, and methods the policy no longer
//     allows are removed now that the user has shown they use one it does
//     (nobody keeps a TOTP app their policy forbids).
func (s *Service) SignInMethod(ctx context.Context, a Actor, p Proof, kind string) (switchNeeded bool, err error) {
	eff, err := authn.EffectivePolicy(ctx, s.o.Store, a.UserID)
	if err != nil {
		return false, err
	}
	if len(eff.AllowedMethods) == len(policy.Methods) {
		return false, nil // every kind allowed: nothing to refuse, switch or prune
	}
	ms, err := methods(ctx, s.o.Store, a.UserID)
	if err != nil {
		return false, err
	}
	allowed := 0
	for _, m := range ms {
		if eff.Allows(m.Kind) {
			allowed++
		}
	}
	switch {
	case allowed == 0 && len(ms) > 0:
		return true, nil
	case kind != MethodRecoveryCode && !eff.Allows(kind):
		err := methodNotAllowed(eff)
		s.refused(ctx, a, p, "sign_in", eff, err)
		return false, err
	case allowed == len(ms):
		return false, nil
	}
	return false, s.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "mfa:"+a.UserID); err != nil {
			return err
		}
		// Read again under the lock: a concurrent change may have run.
		ms, err := methods(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		eff, err := authn.EffectivePolicy(ctx, q, a.UserID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if eff.Allows(m.Kind) {
				return s.pruneDisallowed(ctx, q, a, p, a.UserID, eff, ms)
			}
		}
		return nil
	})
}
