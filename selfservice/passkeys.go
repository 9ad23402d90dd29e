package selfservice

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
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
	fresh, err := h.o.MFA.StepUpFresh(r.Context(), c.Proof, mfa.ActionAddMethod, eff.StepUpMaxAge)
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
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ceremony": id, "options": json.RawMessage(options)})
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
	if _, err := h.o.MFA.FinishAddPasskey(r.Context(), c.Actor, c.Proof, ceremony, r.PostFormValue("name"), []byte(answer)); err != nil {
		h.pageProblem(w, r, c, err)
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

// securityExtras adds what the methods part of the security page needs.
func (h *Handler) securityExtras(r *http.Request, c caller, maxAge time.Duration, data map[string]any) error {
	addFresh, err := h.o.MFA.StepUpFresh(r.Context(), c.Proof, mfa.ActionAddMethod, maxAge)
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
	data["PasskeysOn"] = h.o.MFA.PasskeysOn()
	data["Notice"] = map[string]string{"passkey_added": "Your security key or passkey was added.", "method_removed": "It was removed.",
		"renamed": "Renamed."}[r.URL.Query().Get("notice")]
	return nil
}
