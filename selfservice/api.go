package selfservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// maxBody bounds JSON request bodies.
const maxBody = 16 << 10

// writeProblem answers a refusal with its state, message and extra fields.
// A missing step-up is also announced the RFC 9470 way, so a bearer
// client knows to request a new token with prompt=login, max_age and the
// action in authorization_details.
func writeProblem(w http.ResponseWriter, p *Problem) {
	body := map[string]any{"state": p.State, "message": p.Message}
	for k, v := range p.Extra {
		body[k] = v
	}
	switch {
	case p.State == mfa.CodeStepUpRequired:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="account", error="insufficient_user_authentication", error_description=%q, acr_values="aal2", max_age=%v`,
			"A new sign-in with the second factor, made for this action, is required", p.Extra["max_age"]))
	case p.Status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="account", error="invalid_token"`)
	}
	httpx.WriteJSON(w, p.Status, body)
}

func (h *Handler) apiError(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, h.o.Logger, err)
}

// answer writes a service call's outcome: a refusal, an error, or v.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err == nil {
		httpx.WriteJSON(w, status, v)
		return
	}
	p, err := h.problem(err)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	writeProblem(w, p)
}

// apiCaller authenticates a JSON call: a bearer access token with scope
// "account", or the portal session cookie plus the CSRF header on calls
// that change something.
func (h *Handler) apiCaller(w http.ResponseWriter, r *http.Request, mutating bool) (caller, bool) {
	unauth := &Problem{Status: http.StatusUnauthorized, State: "unauthenticated", Message: "Sign in to manage your account.",
		Extra: map[string]any{"login_url": h.o.Issuer + PathLogin}}
	if authz := r.Header.Get("Authorization"); authz != "" {
		tok, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || h.o.Tokens == nil {
			writeProblem(w, unauth)
			return caller{}, false
		}
		p, err := h.o.Tokens.VerifyAccessToken(r.Context(), strings.TrimSpace(tok))
		if errors.Is(err, store.ErrUnavailable) {
			httpx.WriteUnavailable(w, r, h.o.Logger, err)
			return caller{}, false
		}
		if err != nil {
			writeProblem(w, unauth)
			return caller{}, false
		}
		if !slices.Contains(p.Scopes, "account") {
			writeProblem(w, &Problem{Status: http.StatusForbidden, State: "insufficient_scope", Message: `The access token needs the "account" scope.`})
			return caller{}, false
		}
		// The token's step-up (authorization_details) is spent under its
		// grant; a token without one proves only that the user signed in.
		return caller{UserID: p.UserID,
			Actor: mfa.Actor{Type: audit.ActorUser, UserID: p.UserID, ClientID: p.ClientID, Request: requestFacts(r)},
			Proof: mfa.Proof{Via: mfa.ViaBearer, ID: p.GrantID, AuthTime: p.AuthTime, AMR: p.AMR, Actions: p.StepUp, FirstParty: p.FirstParty}}, true
	}
	s, ok := h.currentSession(r)
	if !ok {
		writeProblem(w, unauth)
		return caller{}, false
	}
	if mutating && !h.o.CSRF.Valid(r) {
		writeProblem(w, &Problem{Status: http.StatusForbidden, State: "csrf_failed", Message: "Missing or invalid X-CSRF-Token header."})
		return caller{}, false
	}
	return h.sessionCaller(r, s), true
}

// apiCallerNoBody is apiCaller for a change that takes no body: one that is
// sent anyway must be a small, empty JSON object.
func (h *Handler) apiCallerNoBody(w http.ResponseWriter, r *http.Request) (caller, bool) {
	c, ok := h.apiCaller(w, r, true)
	if !ok || r.ContentLength == 0 {
		return c, ok
	}
	var b struct{}
	if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return caller{}, false
	}
	return c, true
}

// decodeJSON reads a small JSON object, refusing unknown fields, trailing
// data and oversize bodies, and reports problems per field.
func decodeJSON(r *http.Request, v any) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &Problem{Status: http.StatusUnsupportedMediaType, State: "invalid_request", Message: "Send application/json."}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return &Problem{Status: http.StatusBadRequest, State: "invalid_request", Message: "Could not read the request body."}
	}
	if len(body) > maxBody {
		return &Problem{Status: http.StatusRequestEntityTooLarge, State: "invalid_request", Message: "The request body is too large."}
	}
	if httpx.BadJSONText(body) {
		return &Problem{Status: http.StatusBadRequest, State: "invalid_input", Message: "Text must be valid UTF-8 without NUL bytes."}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		fields := map[string]string{}
		switch {
		case errors.As(err, &te):
			fields[te.Field] = "must be a " + te.Type.String()
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			fields[strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)] = "unknown field"
		default:
			return &Problem{Status: http.StatusBadRequest, State: "invalid_request", Message: "The body must be one JSON object."}
		}
		return &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_request", Message: "Some fields are invalid.", Extra: map[string]any{"fields": fields}}
	}
	if dec.More() {
		return &Problem{Status: http.StatusBadRequest, State: "invalid_request", Message: "The body must be one JSON object."}
	}
	return nil
}

// GET /account/mfa
func (h *Handler) apiState(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, false)
	if !ok {
		return
	}
	st, _, err := h.state(r.Context(), c.UserID)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

// POST /account/mfa/disable
func (h *Handler) apiInitiate(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	in, err := h.o.MFA.Initiate(r.Context(), c.Actor, c.Proof)
	h.answer(w, r, http.StatusOK, intentOf(in), err)
}

// DecideInput is PUT /account/mfa/disable.
type DecideInput struct {
	UnlinkID *string `json:"unlink_id"`
	Choice   *string `json:"choice"`
}

// PUT /account/mfa/disable
func (h *Handler) apiDecide(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	// SPEC §6 order: 2SV active, policy, step-up; then the choice, then the
	// confirmation step. A refusal is answered first but audited only for
	// a well-formed request.
	var b DecideInput
	if err := h.o.MFA.PeekRemoval(ctx, c.Actor, c.Proof); err != nil {
		if decodeJSON(r, &b) != nil {
			h.answer(w, r, 0, nil, err)
			return
		}
		if err := h.o.MFA.CheckRemoval(ctx, c.Actor, c.Proof); err != nil {
			h.answer(w, r, 0, nil, err)
			return
		}
		// The state changed in between: carry on with the decoded body.
	} else if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return
	}
	if b.Choice == nil || (*b.Choice != "yes" && *b.Choice != "no") {
		msg := "required: choose yes or no"
		if b.Choice != nil {
			msg = fmt.Sprintf("must be yes or no, got %q", *b.Choice)
		}
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "choice_required", Message: "Choose yes to disable two-step verification, or no to keep it.",
			Extra: map[string]any{"fields": map[string]string{"choice": msg}, "choices": []string{"yes", "no"}}})
		return
	}
	if b.UnlinkID == nil || *b.UnlinkID == "" {
		writeProblem(w, expired())
		return
	}
	if *b.Choice == "no" {
		if err := h.o.MFA.Cancel(ctx, c.Actor, *b.UnlinkID); err != nil {
			h.answer(w, r, 0, nil, err)
			return
		}
		st, _, err := h.state(ctx, c.UserID)
		h.answer(w, r, http.StatusOK, Cancelled{State: "cancelled", MFA: st,
			Session: SessionView{UserID: c.UserID, AuthTime: c.Proof.AuthTime.Unix(), AMR: c.Proof.AMR}}, err)
		return
	}
	secret, err := h.o.MFA.RemoveOwn(ctx, c.Actor, c.Proof, *b.UnlinkID)
	if err != nil {
		h.answer(w, r, 0, nil, err)
		return
	}
	reg, err := h.registration(ctx, c.UserID, secret)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	st, _, err := h.state(ctx, c.UserID)
	h.answer(w, r, http.StatusOK, Removed{State: "mfa_disabled", MFA: st, Registration: reg, Next: h.o.Issuer + PathMFASetup}, err)
}

// PUT /account/mfa/disable/successful
func (h *Handler) apiConfirm(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	st, _, err := h.state(r.Context(), c.UserID)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	if st.Active {
		writeProblem(w, &Problem{Status: http.StatusConflict, State: "mfa_active", Message: "Two-step verification is still active."})
		return
	}
	st.State = "mfa_disabled"
	httpx.WriteJSON(w, http.StatusOK, Disabled{State: "mfa_disabled", MFA: st, Banner: disabledBanner})
}

// POST /account/mfa/setup starts (or restarts) the setup of a new
// authenticator: a first one, or a replacement after a step-up for
// "replace". The secret is bound to this caller.
func (h *Handler) apiSetupStart(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	secret, err := h.o.MFA.StartSetup(ctx, c.Actor, c.Proof)
	if err != nil {
		h.answer(w, r, 0, nil, err)
		return
	}
	reg, err := h.registration(ctx, c.UserID, secret)
	h.answer(w, r, http.StatusOK, SetupPending{State: "setup_pending", Registration: reg}, err)
}

// PUT /account/mfa/setup {"code": "123456"} activates the pending secret.
func (h *Handler) apiSetupVerify(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b CodeInput
	if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return
	}
	if b.Code == nil || len(*b.Code) != 6 {
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_code", Message: "Enter the 6-digit code from your authenticator app.",
			Extra: map[string]any{"fields": map[string]string{"code": "required: 6 digits"}}})
		return
	}
	codes, _, err := h.o.MFA.CompleteSetup(r.Context(), c.Actor, c.Proof, *b.Code)
	h.answer(w, r, http.StatusOK, WithCodes{State: "mfa_active", RecoveryCodes: codes}, err)
}

// POST /account/mfa/reset-request
func (h *Handler) apiResetRequest(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b ResetRequestInput
	if r.ContentLength != 0 {
		if p := decodeJSON(r, &b); p != nil {
			writeProblem(w, p)
			return
		}
	}
	if len(b.Message) > 500 {
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_request", Message: "The message is too long.",
			Extra: map[string]any{"fields": map[string]string{"message": "at most 500 characters"}}})
		return
	}
	_, err := h.o.MFA.RequestReset(r.Context(), c.Actor, c.Proof, b.Message)
	h.answer(w, r, http.StatusCreated, StateOnly{State: "reset_requested"}, err)
}

// POST /account/mfa/recovery-codes
func (h *Handler) apiNewCodes(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCallerNoBody(w, r)
	if !ok {
		return
	}
	codes, err := h.o.MFA.NewRecoveryCodes(r.Context(), c.Actor, c.Proof)
	h.answer(w, r, http.StatusOK, WithCodes{State: "recovery_codes_replaced", RecoveryCodes: codes}, err)
}
