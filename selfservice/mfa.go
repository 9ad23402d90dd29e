package selfservice

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/mfa"
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

// Banner is shown after 2SV was disabled.
const disabledBanner = "Two-step verification was disabled. Set up a new authenticator app now to keep your account protected."

// Contact is someone a user can ask for a reset.
type Contact = mfa.Contact

// PolicyView is the effective policy as the portal explains it.
type PolicyView struct {
	RequireMFA         bool            `json:"require_mfa"`
	SelfServiceRemoval bool            `json:"self_service_removal"`
	StepUpMaxAge       int             `json:"step_up_max_age"` // seconds
	Reenroll           string          `json:"reenroll"`
	GracePeriod        int             `json:"grace_period,omitempty"` // seconds
	Reason             string          `json:"reason"`
	DecidedBy          []policy.Source `json:"decided_by"`
	// AllowedMethods are the kinds of second factor the user may use;
	// a method of another kind must be replaced (see methods[].allowed).
	AllowedMethods []string `json:"allowed_methods"`
	MethodsReason  string   `json:"methods_reason"`
}

// MFAState is GET /account/mfa.
type MFAState struct {
	State             string            `json:"state"`
	Active            bool              `json:"active"`
	Method            string            `json:"method,omitempty"` // the first method's kind
	Methods           []mfa.Method      `json:"methods"`
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
		Reenroll: e.Reenroll, GracePeriod: int(e.GracePeriod.Seconds()), Reason: e.RemovalReason(), DecidedBy: e.AllowSelfServiceRemovalBy,
		AllowedMethods: e.AllowedMethods, MethodsReason: e.MethodsReason()}
}

// state reads the user's 2SV state and effective policy.
func (h *Handler) state(ctx context.Context, userID string) (MFAState, policy.Effective, error) {
	q := h.o.Store
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return MFAState{}, eff, err
	}
	st := MFAState{State: "mfa_active", Policy: viewPolicy(eff), Links: map[string]string{"security": h.o.Issuer + PathSecurity}}
	ms, err := h.o.MFA.Methods(ctx, userID)
	if err != nil {
		return st, eff, err
	}
	st.Methods = ms
	switch {
	case len(ms) == 0:
		st.State = "mfa_not_active"
		st.Methods = []mfa.Method{}
		st.SetupRequired = eff.RequireMFA
		st.Links["setup"] = h.o.Issuer + PathMFASetup
	default:
		st.Active, st.Method = true, ms[0].Kind
		t := ms[0].CreatedAt
		st.EnrolledAt = &t
		if st.RecoveryCodesLeft, err = q.CountRecoveryCodes(ctx, userID); err != nil {
			return st, eff, err
		}
		if eff.AllowSelfServiceRemoval {
			st.Links["disable"] = h.o.Issuer + PathMFADisable
		}
	}
	if !eff.AllowSelfServiceRemoval {
		if st.AdminContacts, err = h.o.MFA.Contacts(ctx, userID); err != nil {
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

// problem maps a lifecycle refusal to the seed-003 answer: a stable state,
// its HTTP status and what the caller needs next. Unknown errors pass
// through as server errors.
func (h *Handler) problem(err error) (*Problem, error) {
	r, ok := mfa.AsRefusal(err)
	if !ok {
		return nil, err
	}
	p := &Problem{State: r.Code, Message: r.Message}
	switch r.Code {
	case mfa.CodeStepUpRequired:
		p.Status = http.StatusUnauthorized
		p.Extra = map[string]any{"step_up_url": h.o.Issuer + PathStepUp, "action": r.Action, "max_age": int(r.MaxAge.Seconds()), "acr_values": "aal2"}
		if slices.Contains(mfa.Actions, r.Action) {
			p.Extra["authorization_details"] = []map[string]any{{"type": mfa.AuthorizationDetailsType, "actions": []string{r.Action}}}
		}
	case mfa.CodeAdminOnly:
		p.Status = http.StatusForbidden
		p.Extra = map[string]any{"admin_contacts": r.Decision.Contacts, "reset_request_url": h.o.Issuer + PathMFAReset,
			"policy": viewPolicy(r.Decision.Policy)}
	case mfa.CodeInvalidName:
		p.Status = http.StatusUnprocessableEntity
		p.Extra = map[string]any{"fields": map[string]string{"name": "up to 64 visible characters"}}
	case mfa.CodePasskeyFailed:
		p.Status = http.StatusBadRequest
	case mfa.CodeInvalidCode:
		p.Status = http.StatusUnprocessableEntity
		p.Extra = map[string]any{"fields": map[string]string{"code": "does not match the new secret"}}
	case mfa.CodeNotFound:
		p.Status = http.StatusNotFound
	case mfa.CodeSelfAction, mfa.CodeInsufficientScope, mfa.CodeFirstPartyOnly:
		p.Status = http.StatusForbidden
	case mfa.CodeMethodNotAllowed:
		p.Status = http.StatusForbidden
		p.Extra = map[string]any{"allowed_methods": r.Allowed}
	default: // not active, active, expired, already requested, already decided
		p.Status = http.StatusConflict
	}
	return p, nil
}

// Intent is the answer to POST /account/mfa/disable.
type Intent struct {
	State     string    `json:"state"`
	UnlinkID  string    `json:"unlink_id"`
	Choices   []string  `json:"choices"`
	ExpiresAt time.Time `json:"expires_at"`
}

func intentOf(in store.UnlinkIntent) Intent {
	return Intent{State: "choice_required", UnlinkID: in.ID, Choices: []string{"yes", "no"}, ExpiresAt: in.ExpiresAt}
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
	return &Problem{Status: http.StatusConflict, State: mfa.CodeUnlinkExpired, Message: "This unlink request has expired or was already answered. Start again."}
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
