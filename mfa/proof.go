package mfa

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/store"
)

// Actions a step-up can be made for. A step-up counts only for its action
// (RFC 9396 authorization_details of type AuthorizationDetailsType name
// them for bearer callers).
const (
	ActionRemove        = "remove"
	ActionReplace       = "replace"
	ActionRecoveryCodes = "recovery_codes"
	// ActionAdmin is the admins' step-up: a window, not single-use.
	ActionAdmin = "admin"
	// ActionEnroll is a first authenticator set up over a bearer token: a
	// recent sign-in is enough (there is no second factor to show yet).
	ActionEnroll = "enroll"
	// ActionAddMethod adds a passkey or security key beside the methods
	// the user has; ActionRemoveMethod removes one of several.
	ActionAddMethod    = "add_method"
	ActionRemoveMethod = "remove_method"
)

// AuthorizationDetailsType is the RFC 9396 type a client names an action
// with when it asks for a step-up token.
const AuthorizationDetailsType = "latchkey_mfa"

// Actions lists the actions a bearer step-up may name.
var Actions = []string{ActionRemove, ActionReplace, ActionRecoveryCodes, ActionAddMethod, ActionRemoveMethod}

// ScopeAdminSensitive lets a client-credentials client perform the
// sensitive admin actions; people need a fresh aal2 sign-in instead.
const ScopeAdminSensitive = "admin:sensitive"

// AdminStepUpMaxAge is how recent an admin's sign-in with the second
// factor must be for a sensitive admin action.
const AdminStepUpMaxAge = 5 * time.Minute

// Via is how an actor authenticated.
type Via string

// The ways to authenticate.
const (
	// ViaSession: a first-party browser session (portal or console).
	ViaSession Via = "session"
	// ViaBearer: an access token issued to a person.
	ViaBearer Via = "bearer"
	// ViaClient: a client-credentials token (automation, no person).
	ViaClient Via = "client"
	// ViaSignIn: a password sign-in enrolling a first authenticator.
	ViaSignIn Via = "sign_in"
	// ViaOperator: the CLI, run by whoever holds the database and secrets.
	ViaOperator Via = "cli"
)

// Actor is who acts.
type Actor struct {
	Type     string // audit.ActorUser, audit.ActorAdmin or audit.ActorSystem
	UserID   string // the person acting; "" for clients and the operator
	ClientID string
	Request  audit.Request
}

func (a Actor) id() string {
	switch {
	case a.UserID != "":
		return a.UserID
	case a.ClientID != "":
		return "client:" + a.ClientID
	}
	return "cli"
}

// Proof is how the actor authenticated for this call.
type Proof struct {
	Via Via
	// ID names this authentication: the session's id (sessions rotate at
	// every sign-in and step-up), the token's grant, or the sign-in flow.
	// A single-use step-up is spent under it.
	ID       string
	AuthTime time.Time
	AMR      []string
	// Actions this authentication was an interactive re-authentication
	// for: a portal step-up's action, or a token's authorization_details.
	Actions []string
	// Scopes of a client token.
	Scopes []string
	// FirstParty: the token was issued to one of the organisation's own
	// applications (bearer callers).
	FirstParty bool
}

// key is the proof's identity for spending and for binding secrets.
func (p Proof) key() string { return string(p.Via) + ":" + p.ID }

// Refusal is an operation refused, with a stable machine-readable code.
type Refusal struct {
	Code    string
	Message string
	// Action and MaxAge say what step-up would be accepted
	// (CodeStepUpRequired).
	Action string
	MaxAge time.Duration
	// Decision explains an admin-only removal (CodeAdminOnly).
	Decision *Decision
	// Allowed lists the kinds of method the user may use
	// (CodeMethodNotAllowed).
	Allowed []string
}

func (r *Refusal) Error() string { return "mfa: " + r.Code + ": " + r.Message }

// Refusal codes.
const (
	CodeMFANotActive      = "mfa_not_active"
	CodeMFAActive         = "mfa_active"
	CodeAdminOnly         = "admin_only"
	CodeStepUpRequired    = "step_up_required"
	CodeUnlinkExpired     = "unlink_expired"
	CodeSelfAction        = "self_action"
	CodeResetRequested    = "reset_already_requested"
	CodeAlreadyDecided    = "already_decided"
	CodeNotFound          = "not_found"
	CodeInvalidCode       = "invalid_code"
	CodeSetupExpired      = "setup_expired"
	CodeInsufficientScope = "insufficient_scope"
	CodeFirstPartyOnly    = "first_party_only"
	CodeInvalidReason     = "invalid_reason"
	CodeLastMethod        = "last_method"
	CodeInvalidName       = "invalid_name"
	CodePasskeyFailed     = "passkey_failed"
	CodeMethodNotAllowed  = "method_not_allowed"
)

// AsRefusal returns err's refusal, if it is one.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

func stepUpRequired(action string, maxAge time.Duration) *Refusal {
	msg := fmt.Sprintf("Sign in again with your second factor (within the last %s) to continue.", maxAge)
	return &Refusal{Code: CodeStepUpRequired, Message: msg, Action: action, MaxAge: maxAge}
}

// freshFor reports whether p is a re-authentication for action with the
// second factor within maxAge. It does not look at whether it was spent.
func (p Proof) freshFor(action string, maxAge time.Duration, now time.Time) bool {
	return (p.Via == ViaSession || p.Via == ViaBearer) && p.ID != "" && slices.Contains(p.Actions, action) &&
		now.Sub(p.AuthTime) <= maxAge && authn.HasSecondFactor(p.AMR)
}

// StepUpFresh reports whether p would pass a step-up check for action now
// (unspent, fresh, with the second factor), for pages that decide what to
// show.
func (s *Service) StepUpFresh(ctx context.Context, p Proof, action string, maxAge time.Duration) (bool, error) {
	if !p.freshFor(action, maxAge, s.o.Now()) {
		return false, nil
	}
	spent, err := s.o.Store.StepUpSpent(ctx, p.key())
	return !spent, err
}

// checkStepUp refuses unless p is an unspent step-up for action within
// maxAge. Every destructive self-service operation goes through here.
func (s *Service) checkStepUp(ctx context.Context, q store.Queries, p Proof, action string, maxAge time.Duration) error {
	if !p.freshFor(action, maxAge, s.o.Now()) {
		return stepUpRequired(action, maxAge)
	}
	spent, err := q.StepUpSpent(ctx, p.key())
	if err != nil {
		return err
	}
	if spent {
		return stepUpRequired(action, maxAge)
	}
	return nil
}

// spend uses the step-up up inside the change's transaction: of two calls
// with one proof, the second finds it spent and its transaction fails.
func (s *Service) spend(ctx context.Context, q store.Queries, p Proof, userID, action string, maxAge time.Duration) error {
	err := q.SpendStepUp(ctx, p.key(), userID, action, s.o.Now())
	if errors.Is(err, store.ErrAlreadyExists) {
		return stepUpRequired(action, maxAge)
	}
	if err != nil {
		return err
	}
	if p.Via == ViaSession {
		// The session's page state follows: it no longer shows as fresh.
		if err := q.SetPortalStepUp(ctx, p.ID, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// RequireAdminFresh refuses a sensitive admin action unless p is a sign-in
// with the second factor within AdminStepUpMaxAge (people), a client token
// registered for ScopeAdminSensitive (automation), or the operator. The
// admin API, the console and this package's admin operations all ask it.
func (s *Service) RequireAdminFresh(p Proof) error {
	switch p.Via {
	case ViaOperator:
		return nil
	case ViaClient:
		if slices.Contains(p.Scopes, ScopeAdminSensitive) {
			return nil
		}
		return &Refusal{Code: CodeInsufficientScope, Message: "This client is not registered for sensitive admin actions (scope " + ScopeAdminSensitive + ")."}
	case ViaSession, ViaBearer:
		if s.o.Now().Sub(p.AuthTime) <= AdminStepUpMaxAge && authn.HasSecondFactor(p.AMR) {
			return nil
		}
	}
	r := stepUpRequired(ActionAdmin, AdminStepUpMaxAge)
	r.Message = "This action needs a sign-in with your second factor within the last 5 minutes."
	return r
}

// evidence is the step-up evidence every audit event of this package
// carries, whichever path the call came from.
func evidence(p Proof) map[string]any {
	d := map[string]any{"via": string(p.Via), "amr": p.AMR, "step_up": p.Actions}
	if !p.AuthTime.IsZero() {
		d["auth_time"] = p.AuthTime.UTC().Format(time.RFC3339)
	} else {
		d["auth_time"] = ""
	}
	if d["amr"] == nil {
		d["amr"] = []string{}
	}
	if p.Actions == nil {
		d["step_up"] = []string{}
	}
	return d
}
