package selfservice

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Problem is a refusal with a stable machine-readable state (SPEC §6).
type Problem struct {
	Status  int
	State   string
	Message string
	Extra   map[string]any
}

func (p *Problem) Error() string { return "selfservice: " + p.State + ": " + p.Message }

// unlinkLifetime bounds the confirmation step of an unlink.
const unlinkLifetime = 5 * time.Minute

// Banner is shown after 2SV was disabled.
const disabledBanner = "Two-step verification was disabled. Set up a new authenticator app now to keep your account protected."

// Contact is an admin a user can ask for a reset.
type Contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// PolicyView is the effective policy as the portal explains it.
type PolicyView struct {
	RequireMFA         bool            `json:"require_mfa"`
	SelfServiceRemoval bool            `json:"self_service_removal"`
	StepUpMaxAge       int             `json:"step_up_max_age"` // seconds
	Reenroll           string          `json:"reenroll"`
	GracePeriod        int             `json:"grace_period,omitempty"` // seconds
	Reason             string          `json:"reason"`
	DecidedBy          []policy.Source `json:"decided_by"`
}

// MFAState is GET /account/mfa.
type MFAState struct {
	State             string            `json:"state"`
	Active            bool              `json:"active"`
	Method            string            `json:"method,omitempty"`
	EnrolledAt        *time.Time        `json:"enrolled_at,omitempty"`
	RecoveryCodesLeft int               `json:"recovery_codes_left"`
	Policy            PolicyView        `json:"policy"`
	AdminContacts     []Contact         `json:"admin_contacts,omitempty"`
	ResetRequested    *time.Time        `json:"reset_requested_at,omitempty"`
	ResetRequestURL   string            `json:"reset_request_url,omitempty"`
	SetupRequired     bool              `json:"setup_required"`
	Links             map[string]string `json:"links"`
}

func viewPolicy(e policy.Effective) PolicyView {
	return PolicyView{RequireMFA: e.RequireMFA, SelfServiceRemoval: e.AllowSelfServiceRemoval, StepUpMaxAge: int(e.StepUpMaxAge.Seconds()),
		Reenroll: e.Reenroll, GracePeriod: int(e.GracePeriod.Seconds()), Reason: e.RemovalReason(), DecidedBy: e.AllowSelfServiceRemovalBy}
}

func (h *Handler) contacts(ctx context.Context, q store.Queries, userID string) ([]Contact, error) {
	us, err := q.UserAdminContacts(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Contact, 0, len(us))
	for _, u := range us {
		name := u.DisplayName
		if name == "" {
			name = u.Username
		}
		out = append(out, Contact{Name: name, Email: u.Email})
	}
	return out, nil
}

// state reads the user's 2SV state and effective policy.
func (h *Handler) state(ctx context.Context, userID string) (MFAState, policy.Effective, error) {
	q := h.o.Store
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return MFAState{}, eff, err
	}
	st := MFAState{State: "mfa_active", Policy: viewPolicy(eff), Links: map[string]string{"security": h.o.Issuer + PathSecurity}}
	cred, err := q.GetTOTP(ctx, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		st.State = "mfa_not_active"
		st.SetupRequired = eff.RequireMFA
		st.Links["setup"] = h.o.Issuer + PathMFASetup
	case err != nil:
		return st, eff, err
	default:
		st.Active, st.Method = true, "totp"
		t := cred.VerifiedAt
		st.EnrolledAt = &t
		if st.RecoveryCodesLeft, err = q.CountRecoveryCodes(ctx, userID); err != nil {
			return st, eff, err
		}
		if eff.AllowSelfServiceRemoval {
			st.Links["disable"] = h.o.Issuer + PathMFADisable
		}
	}
	if !eff.AllowSelfServiceRemoval {
		if st.AdminContacts, err = h.contacts(ctx, q, userID); err != nil {
			return st, eff, err
		}
		st.ResetRequestURL = h.o.Issuer + PathMFAReset
		if rr, err := q.OpenResetRequest(ctx, userID); err == nil {
			t := rr.CreatedAt
			st.ResetRequested = &t
		} else if !errors.Is(err, store.ErrNotFound) {
			return st, eff, err
		}
	}
	return st, eff, nil
}

// checkRemoval applies SPEC §6's checks after authentication, in order:
// 2SV active, policy allows removal, fresh step-up. q is the transaction
// that will act on the answer, so the policy is read where it is used.
func (h *Handler) checkRemoval(ctx context.Context, q store.Queries, c caller) (policy.Effective, *Problem, error) {
	if _, err := q.GetTOTP(ctx, c.UserID); errors.Is(err, store.ErrNotFound) {
		return policy.Effective{}, &Problem{Status: http.StatusConflict, State: "mfa_not_active", Message: "Two-step verification is not active on this account."}, nil
	} else if err != nil {
		return policy.Effective{}, nil, err
	}
	eff, err := authn.EffectivePolicy(ctx, q, c.UserID)
	if err != nil {
		return eff, nil, err
	}
	if !eff.AllowSelfServiceRemoval {
		contacts, err := h.contacts(ctx, q, c.UserID)
		if err != nil {
			return eff, nil, err
		}
		return eff, &Problem{Status: http.StatusForbidden, State: "admin_only", Message: eff.RemovalReason() + " Ask an admin to reset it.",
			Extra: map[string]any{"admin_contacts": contacts, "reset_request_url": h.o.Issuer + PathMFAReset, "policy": viewPolicy(eff)}}, nil
	}
	if !c.fresh(ActionUnlink, eff.StepUpMaxAge, h.o.Now()) {
		return eff, &Problem{Status: http.StatusUnauthorized, State: "step_up_required",
			Message: fmt.Sprintf("Sign in again with your authenticator (within the last %s) to continue.", eff.StepUpMaxAge),
			Extra:   map[string]any{"step_up_url": h.o.Issuer + PathStepUp, "action": ActionUnlink, "max_age": int(eff.StepUpMaxAge.Seconds())}}, nil
	}
	return eff, nil, nil
}

// auditDenied records a refused removal in its own transaction.
func (h *Handler) auditDenied(ctx context.Context, c caller, eff policy.Effective, p *Problem) {
	if p.State != "admin_only" {
		return
	}
	src := firstSource(eff.AllowSelfServiceRemovalBy)
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		_, err := audit.Append(ctx, q, audit.Event{Type: audit.MFARemovalDenied, Outcome: audit.Denied, ActorType: audit.ActorUser, ActorID: c.UserID,
			SubjectID: c.UserID, ClientID: c.ClientID, PolicyID: src.PolicyID, PolicyVersion: src.PolicyVersion, Request: c.Request,
			Details: map[string]any{"reason": eff.RemovalReason()}})
		return err
	})
	if err != nil {
		h.o.Logger.ErrorContext(ctx, "audit of denied removal failed", "err", err)
	}
}

func firstSource(s []policy.Source) policy.Source {
	if len(s) == 0 {
		return policy.Source{}
	}
	return s[0]
}

// Intent is the answer to POST /account/mfa/disable.
type Intent struct {
	State     string    `json:"state"`
	UnlinkID  string    `json:"unlink_id"`
	Choices   []string  `json:"choices"`
	ExpiresAt time.Time `json:"expires_at"`
}

// initiate runs the checks and opens a short-lived confirmation step.
func (h *Handler) initiate(ctx context.Context, c caller) (Intent, *Problem, error) {
	eff, p, err := h.checkRemoval(ctx, h.o.Store, c)
	if err != nil || p != nil {
		if p != nil {
			h.auditDenied(ctx, c, eff, p)
		}
		return Intent{}, p, err
	}
	now := h.o.Now().UTC()
	in := store.UnlinkIntent{ID: "unlink_" + authn.RandomToken(16), UserID: c.UserID, CreatedAt: now, ExpiresAt: now.Add(unlinkLifetime)}
	if err := h.o.Store.CreateUnlinkIntent(ctx, in); err != nil {
		return Intent{}, nil, err
	}
	return Intent{State: "choice_required", UnlinkID: in.ID, Choices: []string{"yes", "no"}, ExpiresAt: in.ExpiresAt}, nil, nil
}

// Registration is what an authenticator app needs to enroll.
type Registration struct {
	Secret     string       `json:"secret"`
	OTPAuthURI string       `json:"otpauth_uri"`
	QRPNG      template.URL `json:"qr_png"` // data: URI, generated locally
}

// Removed is the answer to a confirmed unlink.
type Removed struct {
	State        string       `json:"state"`
	MFA          MFAState     `json:"mfa"`
	Registration Registration `json:"registration"`
	Next         string       `json:"next"`
}

func expired() *Problem {
	return &Problem{Status: http.StatusConflict, State: "unlink_expired", Message: "This unlink request has expired or was already answered. Start again."}
}

// cancel answers "no": the confirmation step ends and nothing changes.
func (h *Handler) cancel(ctx context.Context, c caller, unlinkID string) (*Problem, error) {
	in, err := h.o.Store.GetUnlinkIntent(ctx, unlinkID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (in.UserID != c.UserID || h.o.Now().After(in.ExpiresAt))) {
		return expired(), nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := h.o.Store.ConsumeUnlinkIntent(ctx, unlinkID); errors.Is(err, store.ErrNotFound) {
		return expired(), nil
	} else if err != nil {
		return nil, err
	}
	return nil, nil
}

// remove answers "yes". In one transaction it consumes the confirmation
// step, re-checks 2SV and the policy from the database (a stale claim or a
// policy changed since sign-in removes nothing), deletes the authenticator
// and its recovery codes, records the re-enrollment requirement, revokes
// the user's tokens and other sessions, starts the new authenticator's
// setup, and appends the audit event. If any step fails, nothing changes.
func (h *Handler) remove(ctx context.Context, c caller, unlinkID string) (Registration, *Problem, error) {
	var secret string
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		// Two concurrent "yes" for one user queue here; the second then
		// finds the authenticator gone or the confirmation used.
		if err := q.Lock(ctx, "mfa:"+c.UserID); err != nil {
			return err
		}
		eff, p, err := h.checkRemoval(ctx, q, c)
		if err != nil {
			return err
		}
		if p != nil {
			return p
		}
		in, err := q.ConsumeUnlinkIntent(ctx, unlinkID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (in.UserID != c.UserID || h.o.Now().After(in.ExpiresAt))) {
			return expired()
		}
		if err != nil {
			return err
		}
		removed, revoked, err := h.o.Authn.RemoveMFA(ctx, q, c.UserID)
		if err != nil {
			return err
		}
		if !removed {
			return &Problem{Status: http.StatusConflict, State: "mfa_not_active", Message: "Two-step verification is not active on this account."}
		}
		now := h.o.Now().UTC()
		if c.Session != nil {
			// This browser keeps its portal session, to set up the new
			// authenticator, but its step-up is spent.
			s := *c.Session
			s.StepUp = ""
			if err := q.CreatePortalSession(ctx, s); err != nil {
				return err
			}
		}
		if secret, err = h.o.Authn.StartEnrollment(ctx, q, c.UserID); err != nil {
			return err
		}
		src := firstSource(eff.AllowSelfServiceRemovalBy)
		_, err = audit.Append(ctx, q, audit.Event{Type: audit.MFARemoved, ActorType: audit.ActorUser, ActorID: c.UserID, SubjectID: c.UserID,
			ClientID: c.ClientID, PolicyID: src.PolicyID, PolicyVersion: src.PolicyVersion, Request: c.Request, Time: now,
			Details: map[string]any{"by": "self", "auth_time": c.AuthTime.UTC().Format(time.RFC3339), "amr": c.AMR, "step_up": c.StepUp,
				"allowed_by": eff.AllowSelfServiceRemovalBy, "tokens_revoked": revoked, "reenroll": eff.Reenroll}})
		return err
	})
	var p *Problem
	if errors.As(err, &p) {
		return Registration{}, p, nil
	}
	if err != nil {
		return Registration{}, nil, err
	}
	reg, err := h.registration(ctx, c.UserID, secret)
	return reg, nil, err
}

func (h *Handler) registration(ctx context.Context, userID, secret string) (Registration, error) {
	u, err := h.o.Store.GetUser(ctx, userID)
	if err != nil {
		return Registration{}, err
	}
	en, err := authn.NewEnrollment(issuerLabel(h.o.Issuer), u.Username, secret)
	if err != nil {
		return Registration{}, err
	}
	// The data: URI is generated here, never taken from input.
	return Registration{Secret: en.Secret, OTPAuthURI: en.URI, QRPNG: template.URL(en.QR)}, nil
}

// requestReset records one open reset request for the user's admins.
func (h *Handler) requestReset(ctx context.Context, c caller, message string) (*Problem, error) {
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetTOTP(ctx, c.UserID); errors.Is(err, store.ErrNotFound) {
			return &Problem{Status: http.StatusConflict, State: "mfa_not_active", Message: "Two-step verification is not active on this account."}
		} else if err != nil {
			return err
		}
		eff, err := authn.EffectivePolicy(ctx, q, c.UserID)
		if err != nil {
			return err
		}
		contacts, err := h.contacts(ctx, q, c.UserID)
		if err != nil {
			return err
		}
		now := h.o.Now().UTC()
		rr := store.ResetRequest{ID: authn.NewID("reset"), UserID: c.UserID, Status: store.ResetOpen, Message: message, CreatedAt: now}
		if err := q.CreateResetRequest(ctx, rr); errors.Is(err, store.ErrAlreadyExists) {
			return &Problem{Status: http.StatusConflict, State: "reset_already_requested", Message: "You already asked your admins for a reset; they have been notified."}
		} else if err != nil {
			return err
		}
		src := firstSource(eff.AllowSelfServiceRemovalBy)
		_, err = audit.Append(ctx, q, audit.Event{Type: audit.MFAResetRequested, ActorType: audit.ActorUser, ActorID: c.UserID, SubjectID: c.UserID,
			ClientID: c.ClientID, PolicyID: src.PolicyID, PolicyVersion: src.PolicyVersion, Request: c.Request, Time: now,
			Details: map[string]any{"request_id": rr.ID, "admin_contacts": contacts}})
		return err
	})
	var p *Problem
	if errors.As(err, &p) {
		return p, nil
	}
	return nil, err
}

// newCodes issues a new set of recovery codes after a step-up for this
// action; the old set stops working, and the step-up is spent.
func (h *Handler) newCodes(ctx context.Context, c caller) ([]string, *Problem, error) {
	eff, err := authn.EffectivePolicy(ctx, h.o.Store, c.UserID)
	if err != nil {
		return nil, nil, err
	}
	if has, err := h.o.Authn.HasTOTP(ctx, c.UserID); err != nil {
		return nil, nil, err
	} else if !has {
		return nil, &Problem{Status: http.StatusConflict, State: "mfa_not_active", Message: "Two-step verification is not active on this account."}, nil
	}
	if !c.fresh(ActionCodes, eff.StepUpMaxAge, h.o.Now()) {
		return nil, &Problem{Status: http.StatusUnauthorized, State: "step_up_required", Message: "Sign in again with your authenticator to get new recovery codes.",
			Extra: map[string]any{"step_up_url": h.o.Issuer + PathStepUp, "action": ActionCodes, "max_age": int(eff.StepUpMaxAge.Seconds())}}, nil
	}
	codes, err := h.o.Authn.RegenerateRecoveryCodes(ctx, c.UserID, audit.Event{ActorType: audit.ActorUser, ActorID: c.UserID, ClientID: c.ClientID, Request: c.Request})
	if err != nil {
		return nil, nil, err
	}
	if c.Session != nil {
		_ = h.o.Store.SetPortalStepUp(ctx, c.Session.IDHash, "")
	}
	return codes, nil, nil
}
