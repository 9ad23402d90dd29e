package selfservice

import (
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
)

// Adding a passkey or security key: the security page's button asks for a
// step-up made for it; once fresh, the page shows the key form, whose
// script (static/passkey.js) asks PathPasskeyBegin for a challenge bound
// to this session and posts the authenticator's answer to PathPasskeyDone.
// Every check is the lifecycle service's.

func (h *Handler) passkeyAdd(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	eff, err := authn.EffectivePolicy(r.Context(), h.o.Store, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	fresh, err := h.addFresh(r, c, eff.StepUpMaxAge)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	if !fresh {
		h.rp.Start(w, r, mfa.ActionAddMethod, PathSecurity+"?confirm="+mfa.ActionAddMethod, eff.StepUpMaxAge)
		return
	}
	http.Redirect(w, r, PathSecurity+"?confirm="+mfa.ActionAddMethod, http.StatusSeeOther)
}

func (h *Handler) passkeyBegin(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	id, options, err := h.o.MFA.BeginAddPasskey(r.Context(), c.Actor, c.Proof)
	if err != nil {
		p, err := h.problem(err)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		writeProblem(w, p)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, PasskeyChallenge{State: "passkey_challenge", Ceremony: id, Options: options})
}

func (h *Handler) passkeyFinish(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	answer, ceremony := r.PostFormValue("credential"), r.PostFormValue("ceremony")
	if !authn.PasskeyAnswerFits(ceremony, answer) {
		h.renderSecurity(w, r, c, http.StatusBadRequest, "The key's answer was missing or too large. Try again.")
		return
	}
	_, codes, err := h.o.MFA.FinishAddPasskey(r.Context(), c.Actor, c.Proof, ceremony, r.PostFormValue("name"), []byte(answer))
	if err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	if codes != nil { // a first method: 2SV is on, with recovery codes
		h.render(w, r, http.StatusOK, "codes.html", map[string]any{"Codes": codes})
		return
	}
	http.Redirect(w, r, PathSecurity+"?notice=passkey_added", http.StatusSeeOther)
}

// methodRemove removes one of several methods; without a fresh step-up
// made for it, it asks for one and comes back to a "Continue" button.
func (h *Handler) methodRemove(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	err := h.o.MFA.RemoveMethod(r.Context(), c.Actor, c.Proof, id)
	if ref, ok := mfa.AsRefusal(err); ok && ref.Code == mfa.CodeStepUpRequired {
		h.rp.Start(w, r, mfa.ActionRemoveMethod, PathSecurity+"?confirm="+mfa.ActionRemoveMethod+"&method="+url.QueryEscape(id), ref.MaxAge)
		return
	}
	if err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	http.Redirect(w, r, PathSecurity+"?notice=method_removed", http.StatusSeeOther)
}

func (h *Handler) methodRename(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	if err := h.o.MFA.RenamePasskey(r.Context(), c.Actor, c.Proof, chi.URLParam(r, "id"), r.PostFormValue("name")); err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	http.Redirect(w, r, PathSecurity+"?notice=renamed", http.StatusSeeOther)
}

// addFresh reports whether the caller may go on to add a key: with a
// fresh step-up for it, or at once for a first method (the service
// decides in the end; this only picks the page).
func (h *Handler) addFresh(r *http.Request, c caller, maxAge time.Duration) (bool, error) {
	ms, err := h.o.MFA.Methods(r.Context(), c.UserID)
	if err != nil || len(ms) == 0 {
		return err == nil, err
	}
	return h.o.MFA.StepUpFresh(r.Context(), c.Proof, mfa.ActionAddMethod, maxAge)
}

// securityExtras adds what the methods part of the security page needs.
func (h *Handler) securityExtras(r *http.Request, c caller, eff policy.Effective, data map[string]any) error {
	maxAge := eff.StepUpMaxAge
	addFresh, err := h.addFresh(r, c, maxAge)
	if err != nil {
		return err
	}
	removeFresh, err := h.o.MFA.StepUpFresh(r.Context(), c.Proof, mfa.ActionRemoveMethod, maxAge)
	if err != nil {
		return err
	}
	data["AddingPasskey"] = addFresh && r.URL.Query().Get("confirm") == mfa.ActionAddMethod
	data["RemovingMethod"] = ""
	if removeFresh && r.URL.Query().Get("confirm") == mfa.ActionRemoveMethod {
		data["RemovingMethod"] = r.URL.Query().Get("method")
	}
	data["PasskeysOn"] = h.o.MFA.PasskeysOn() && eff.Allows(policy.MethodPasskey)
	data["TOTPAllowed"] = eff.Allows(policy.MethodTOTP)
	data["MethodsReason"] = eff.MethodsReason()
	data["Notice"] = map[string]string{"passkey_added": "Your security key or passkey was added.", "method_removed": "It was removed.",
		"renamed": "Renamed."}[r.URL.Query().Get("notice")]
	return nil
}

// The account JSON API for methods, for the organisation's own apps
// (bearer tokens) and the portal's scripts (session + X-CSRF-Token):
//
//	POST   /account/mfa/passkeys              → {"ceremony", "options"}
//	PUT    /account/mfa/passkeys/{ceremony}   {"credential": {…}, "name"} → 201 {"method", "recovery_codes"?}
//	PATCH  /account/mfa/methods/{id}          {"name"}
//	DELETE /account/mfa/methods/{id}
//
// The rules are the lifecycle service's, as for the pages: adding needs a
// step-up for add_method (none for a first method), removing one of
// several a step-up for remove_method. A key's answer is only valid for
// the issuer's origin (WebAuthn binds it), so an app served elsewhere
// cannot register one for the user even with a valid token.
const (
	PathMFAPasskeys = "/account/mfa/passkeys"
	PathMFAPasskey  = "/account/mfa/passkeys/{ceremony}"
	PathMFAMethod   = "/account/mfa/methods/{id}"
)

func (h *Handler) apiPasskeyBegin(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCallerNoBody(w, r)
	if !ok {
		return
	}
	id, options, err := h.o.MFA.BeginAddPasskey(r.Context(), c.Actor, c.Proof)
	h.answer(w, r, http.StatusOK, PasskeyChallenge{State: "passkey_challenge", Ceremony: id, Options: options}, err)
}

func (h *Handler) apiPasskeyFinish(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b PasskeyAnswer
	if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return
	}
	ceremony := chi.URLParam(r, "ceremony")
	if len(b.Credential) == 0 || b.Credential[0] != '{' || !authn.PasskeyAnswerFits(ceremony, string(b.Credential)) {
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_request", Message: "Send the authenticator's answer as a JSON object.",
			Extra: map[string]any{"fields": map[string]string{"credential": "required: the PublicKeyCredential as JSON"}}})
		return
	}
	m, codes, err := h.o.MFA.FinishAddPasskey(r.Context(), c.Actor, c.Proof, ceremony, b.Name, b.Credential)
	h.answer(w, r, http.StatusCreated, PasskeyAdded{State: "mfa_active", Method: m, RecoveryCodes: codes}, err)
}

func (h *Handler) apiMethodRename(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	var b RenameInput
	if p := decodeJSON(r, &b); p != nil {
		writeProblem(w, p)
		return
	}
	if b.Name == nil {
		writeProblem(w, &Problem{Status: http.StatusUnprocessableEntity, State: "invalid_request", Message: "Send the new name.",
			Extra: map[string]any{"fields": map[string]string{"name": "required"}}})
		return
	}
	err := h.o.MFA.RenamePasskey(r.Context(), c.Actor, c.Proof, chi.URLParam(r, "id"), *b.Name)
	h.answer(w, r, http.StatusOK, StateOnly{State: "renamed"}, err)
}

func (h *Handler) apiMethodRemove(w http.ResponseWriter, r *http.Request) {
	c, ok := h.apiCaller(w, r, true)
	if !ok {
		return
	}
	err := h.o.MFA.RemoveMethod(r.Context(), c.Actor, c.Proof, chi.URLParam(r, "id"))
	h.answer(w, r, http.StatusOK, StateOnly{State: "method_removed"}, err)
}
