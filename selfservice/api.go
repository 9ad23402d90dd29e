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
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
)

// maxBody bounds JSON request bodies.
const maxBody = 16 << 10

// writeProblem answers a refusal with its state, message and extra fields.
func writeProblem(w http.ResponseWriter, p *Problem) {
	body := map[string]any{"state": p.State, "message": p.Message}
	for k, v := range p.Extra {
		body[k] = v
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="account", error="`+p.State+`"`)
	}
	httpx.WriteJSON(w, p.Status, body)
}

func (h *Handler) apiError(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, h.o.Logger, err)
}

// answer writes a service call's outcome: an error, a refusal, or v.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, status int, v any, p *Problem, err error) {
	switch {
	case err != nil:
		h.apiError(w, r, err)
	case p != nil:
		writeProblem(w, p)
	default:
		httpx.WriteJSON(w, status, v)
	}
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
		if err != nil {
			writeProblem(w, unauth)
			return caller{}, false
		}
		if !slices.Contains(p.Scopes, "account") {
			writeProblem(w, &Problem{Status: http.StatusForbidden, State: "insufficient_scope", Message: `The access token needs the "account" scope.`})
			return caller{}, false
		}
		return caller{UserID: p.UserID, AuthTime: p.AuthTime, AMR: p.AMR, Bearer: true, ClientID: p.ClientID, Request: requestFacts(r)}, true
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
	return caller{UserID: s.UserID, AuthTime: s.AuthTime, AMR: s.AMR, StepUp: s.StepUp, Session: &s, ClientID: h.o.ClientID, Request: requestFacts(r)}, true
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
	in, p, err := h.initiate(r.Context(), c)
	h.answer(w, r, http.StatusOK, in, p, err)
}

type decideBody struct {
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
	// confirmation step.
	eff, p, err := h.checkRemoval(ctx, h.o.Store, c)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	if p != nil {
		h.auditDenied(ctx, c, eff, p)
		writeProblem(w, p)
		return
	}
	var b decideBody
	if p := decodeJSON(r, &b); p != nil {
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
		if p, err := h.cancel(ctx, c, *b.UnlinkID); err != nil {
			h.apiError(w, r, err)
		} else if p != nil {
			writeProblem(w, p)
		} else {
			st, _, err := h.state(ctx, c.UserID)
			if err != nil {
				h.apiError(w, r, err)
				return
			}
			httpx.WriteJSON(w, http.StatusOK, map[string]any{"state": "cancelled", "mfa": st,
				"session": map[string]any{"user_id": c.UserID, "auth_time": c.AuthTime.Unix(), "amr": c.AMR}})
		}
		return
	}
	reg, p, err := h.remove(ctx, c, *b.UnlinkID)
	switch {
	case err != nil:
		h.apiError(w, r, err)
	case p != nil:
		writeProblem(w, p)
	default:
		st, _, err := h.state(ctx, c.UserID)
		if err != nil {
			h.apiError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, Removed{State: "mfa_disabled", MFA: st, Registration: reg, Next: h.o.Issuer + PathMFASetup})
	}
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
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"state": "mfa_disabled", "mfa": st, "banner": disabledBanner})
}

// POST /account/mfa/setup starts (or restarts) enrollment when the user has
// no authenticator; replacing one goes through the portal's step-up.
func (h *Handler) apiSetupStart(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	if has, err := h.o.Authn.HasTOTP(ctx, c.UserID); err != nil {
		h.apiError(w, r, err)
		return
	} else if has {
		writeProblem(w, &Problem{Status: http.StatusConflict, State: "mfa_active", Message: "An authenticator is already active; replace it from the Security page."})
		return
	}
	secret, err := h.o.Authn.StartEnrollment(ctx, h.o.Store, c.UserID)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	reg, err := h.registration(ctx, c.UserID, secret)
	if err != nil {
		h.apiError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"state": "setup_pending", "registration": reg})
}

// PUT /account/mfa/setup {"code": "123456"} activates the pending secret.
func (h *Handler) apiSetupVerify(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b struct {
		Code *string `json:"code"`
	}
	if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return
	}
	if b.Code == nil || len(*b.Code) != 6 {
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_code", Message: "Enter the 6-digit code from your authenticator app.",
			Extra: map[string]any{"fields": map[string]string{"code": "required: 6 digits"}}})
		return
	}
	codes, p, err := h.completeSetup(r, c, *b.Code)
	h.answer(w, r, http.StatusOK, map[string]any{"state": "mfa_active", "recovery_codes": codes}, p, err)
}

func (h *Handler) completeSetup(r *http.Request, c caller, code string) ([]string, *Problem, error) {
	ctx := r.Context()
	has, err := h.o.Authn.HasTOTP(ctx, c.UserID)
	if err != nil {
		return nil, nil, err
	}
	// Replacing a working authenticator needs a step-up for that action.
	if has {
		eff, err := authn.EffectivePolicy(ctx, h.o.Store, c.UserID)
		if err != nil {
			return nil, nil, err
		}
		if !c.fresh(ActionReplace, eff.StepUpMaxAge, h.o.Now()) {
			return nil, &Problem{Status: http.StatusUnauthorized, State: "step_up_required", Message: "Sign in again with your current authenticator to replace it.",
				Extra: map[string]any{"step_up_url": h.o.Issuer + PathStepUp, "action": ActionReplace, "max_age": int(eff.StepUpMaxAge.Seconds())}}, nil
		}
	}
	codes, _, err := h.o.Authn.CompleteEnrollment(ctx, c.UserID, code, audit.Event{ActorType: audit.ActorUser, ActorID: c.UserID,
		ClientID: c.ClientID, Request: c.Request})
	switch {
	case errors.Is(err, authn.ErrInvalidCode):
		return nil, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_code", Message: "That code did not match. Check the time on your phone and enter the current code.",
			Extra: map[string]any{"fields": map[string]string{"code": "does not match the new secret"}}}, nil
	case errors.Is(err, authn.ErrNoPendingSetup):
		return nil, &Problem{Status: http.StatusConflict, State: "setup_expired", Message: "The setup has expired. Start again."}, nil
	case err != nil:
		return nil, nil, err
	}
	if c.Session != nil && c.Session.StepUp != "" {
		_ = h.o.Store.SetPortalStepUp(ctx, c.Session.IDHash, "")
	}
	return codes, nil, nil
}

// POST /account/mfa/reset-request
func (h *Handler) apiResetRequest(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b struct {
		Message string `json:"message"`
	}
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
	p, err := h.requestReset(r.Context(), c, b.Message)
	h.answer(w, r, http.StatusCreated, map[string]any{"state": "reset_requested"}, p, err)
}

// POST /account/mfa/recovery-codes
func (h *Handler) apiNewCodes(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	codes, p, err := h.newCodes(r.Context(), c)
	h.answer(w, r, http.StatusOK, map[string]any{"state": "recovery_codes_replaced", "recovery_codes": codes}, p, err)
}
