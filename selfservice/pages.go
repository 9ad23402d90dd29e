package selfservice

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchkey/latchkey/authn"
)

func issuerLabel(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Hostname() != "" {
		return "Latchkey (" + u.Hostname() + ")"
	}
	return "Latchkey"
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	h.pages.Render(w, r, status, name, data)
}

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h.pages.Error(w, r, status, code, msg)
}

func (h *Handler) csrfFailed(w http.ResponseWriter, r *http.Request) { h.pages.CSRFFailed(w, r) }

func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	h.pages.ServerError(w, r, err)
}

// formCaller checks a form post's CSRF token, then its session.
func (h *Handler) formCaller(w http.ResponseWriter, r *http.Request) (caller, bool) {
	if !h.o.CSRF.Valid(r) {
		h.csrfFailed(w, r)
		return caller{}, false
	}
	return h.pageCaller(w, r)
}

// accountPage is Account → Edit Account.
func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.pageCaller(w, r)
	if !ok {
		return
	}
	u, err := h.o.Store.GetUser(r.Context(), c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	st, _, err := h.state(r.Context(), c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "account.html", map[string]any{"User": u, "MFA": st, "Notice": notice(r)})
}

func notice(r *http.Request) string {
	switch r.URL.Query().Get("notice") {
	case "cancelled":
		return "Nothing changed: two-step verification is still on."
	case "not_active":
		return "Two-step verification is not active on your account."
	case "reset_requested":
		return "Your admins have been asked to reset your two-step verification."
	case "enrolled":
		return "Your authenticator app is set up."
	}
	return ""
}

// securityPage is Edit Account → Security: 2-Step Verification.
func (h *Handler) securityPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.pageCaller(w, r)
	if !ok {
		return
	}
	h.renderSecurity(w, r, c, http.StatusOK, "")
}

func (h *Handler) renderSecurity(w http.ResponseWriter, r *http.Request, c caller, status int, errMsg string) {
	st, eff, err := h.state(r.Context(), c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	h.render(w, r, status, "security.html", map[string]any{"MFA": st, "Reason": eff.RemovalReason(), "Error": errMsg,
		"Confirm": r.URL.Query().Get("confirm"), "Fresh": c.fresh(ActionUnlink, eff.StepUpMaxAge, h.o.Now())})
}

// unlinkPage runs the checks and shows the "2-step verification will be
// disabled" confirmation.
func (h *Handler) unlinkPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	in, p, err := h.initiate(r.Context(), c)
	switch {
	case err != nil:
		h.serverError(w, r, err)
	case p != nil:
		h.pageProblem(w, r, c, p, ActionUnlink)
	default:
		h.render(w, r, http.StatusOK, "confirm.html", map[string]any{"UnlinkID": in.UnlinkID})
	}
}

// pageProblem turns a refusal into the screen seed 003 describes.
func (h *Handler) pageProblem(w http.ResponseWriter, r *http.Request, c caller, p *Problem, action string) {
	switch p.State {
	case "mfa_not_active":
		http.Redirect(w, r, PathAccount+"?notice=not_active", http.StatusSeeOther)
	case "step_up_required":
		eff, err := authn.EffectivePolicy(r.Context(), h.o.Store, c.UserID)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		h.rp.Start(w, r, action, PathSecurity+"?confirm="+action, eff.StepUpMaxAge)
	case "unlink_expired", "admin_only", "reset_already_requested", "invalid_code", "setup_expired":
		h.renderSecurity(w, r, c, p.Status, p.Message)
	default:
		h.errorPage(w, r, p.Status, p.State, p.Message)
	}
}

// unlinkDecide handles Yes / No on the confirmation.
func (h *Handler) unlinkDecide(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	id, choice := r.PostFormValue("unlink_id"), r.PostFormValue("choice")
	eff, p, err := h.checkRemoval(ctx, h.o.Store, c)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	if p != nil {
		h.auditDenied(ctx, c, eff, p)
		h.pageProblem(w, r, c, p, ActionUnlink)
		return
	}
	switch choice {
	case "no":
		if p, err := h.cancel(ctx, c, id); err != nil {
			h.serverError(w, r, err)
		} else if p != nil {
			h.pageProblem(w, r, c, p, ActionUnlink)
		} else {
			http.Redirect(w, r, PathAccount+"?notice=cancelled", http.StatusSeeOther)
		}
	case "yes":
		if _, p, err := h.remove(ctx, c, id); err != nil {
			h.serverError(w, r, err)
		} else if p != nil {
			h.pageProblem(w, r, c, p, ActionUnlink)
		} else {
			http.Redirect(w, r, PathSetup+"?disabled=1", http.StatusSeeOther)
		}
	default:
		// No choice made: the dialog stays, with a clear message.
		h.render(w, r, http.StatusUnprocessableEntity, "confirm.html", map[string]any{"UnlinkID": id, "Error": "Choose Yes to disable two-step verification, or No to keep it."})
	}
}

// setupPage is the MFA Setup screen: QR code, secret, and the code field.
func (h *Handler) setupPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.pageCaller(w, r)
	if !ok {
		return
	}
	h.renderSetup(w, r, c, http.StatusOK, "")
}

func (h *Handler) renderSetup(w http.ResponseWriter, r *http.Request, c caller, status int, errMsg string) {
	ctx := r.Context()
	has, err := h.o.Authn.HasTOTP(ctx, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	if has { // replacing: only after replaceStart (with its step-up) made a secret
		if _, err := h.o.Authn.PendingSecret(ctx, h.o.Store, c.UserID); errors.Is(err, authn.ErrNoPendingSetup) {
			http.Redirect(w, r, PathSecurity, http.StatusSeeOther)
			return
		}
	}
	secret, err := h.o.Authn.SetupSecret(ctx, h.o.Store, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	reg, err := h.registration(ctx, c.UserID, secret)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	h.render(w, r, status, "setup.html", map[string]any{"Reg": reg, "Replacing": has, "Error": errMsg,
		"Disabled": r.URL.Query().Get("disabled") == "1", "Banner": disabledBanner, "SecretGroups": groups(reg.Secret)})
}

func groups(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (h *Handler) setupSubmit(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	if len(code) != 6 {
		h.renderSetup(w, r, c, http.StatusUnprocessableEntity, "Enter the 6-digit code from your authenticator app.")
		return
	}
	codes, p, err := h.completeSetup(r, c, code)
	switch {
	case err != nil:
		h.serverError(w, r, err)
	case p != nil && p.State == "invalid_code":
		h.renderSetup(w, r, c, p.Status, p.Message)
	case p != nil:
		h.pageProblem(w, r, c, p, ActionReplace)
	default:
		h.render(w, r, http.StatusOK, "codes.html", map[string]any{"Codes": codes})
	}
}

// replaceStart begins replacing the authenticator (new phone, old one in
// hand): after a step-up for this action, a new secret is shown; the old
// authenticator keeps working until a code from the new one is verified.
func (h *Handler) replaceStart(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	eff, err := authn.EffectivePolicy(ctx, h.o.Store, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	if !c.fresh(ActionReplace, eff.StepUpMaxAge, h.o.Now()) {
		h.rp.Start(w, r, ActionReplace, PathSecurity+"?confirm="+ActionReplace, eff.StepUpMaxAge)
		return
	}
	if _, err := h.o.Authn.StartEnrollment(ctx, h.o.Store, c.UserID); err != nil {
		h.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, PathSetup, http.StatusSeeOther)
}

func (h *Handler) resetRequestSubmit(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	msg := r.PostFormValue("message")
	if len(msg) > 500 {
		h.renderSecurity(w, r, c, http.StatusUnprocessableEntity, "The message can be at most 500 characters.")
		return
	}
	p, err := h.requestReset(r.Context(), c, msg)
	switch {
	case err != nil:
		h.serverError(w, r, err)
	case p != nil:
		h.pageProblem(w, r, c, p, "")
	default:
		http.Redirect(w, r, PathAccount+"?notice=reset_requested", http.StatusSeeOther)
	}
}

func (h *Handler) newCodesSubmit(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	codes, p, err := h.newCodes(r.Context(), c)
	switch {
	case err != nil:
		h.serverError(w, r, err)
	case p != nil:
		h.pageProblem(w, r, c, p, ActionCodes)
	default:
		h.render(w, r, http.StatusOK, "codes.html", map[string]any{"Codes": codes})
	}
}
