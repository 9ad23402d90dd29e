package selfservice

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkey/latchkey/mfa"
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
	fresh, err := h.o.MFA.StepUpFresh(r.Context(), c.Proof, ActionUnlink, eff.StepUpMaxAge)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	data := map[string]any{"MFA": st, "Reason": eff.RemovalReason(), "Error": errMsg, "Confirm": r.URL.Query().Get("confirm"), "Fresh": fresh}
	if err := h.securityExtras(r, c, eff, data); err != nil {
		h.serverError(w, r, err)
		return
	}
	h.render(w, r, status, "security.html", data)
}

// unlinkPage runs the checks and shows the "2-step verification will be
// disabled" confirmation.
func (h *Handler) unlinkPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	in, err := h.o.MFA.Initiate(r.Context(), c.Actor, c.Proof)
	if err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm.html", map[string]any{"UnlinkID": in.ID})
}

// pageProblem turns a refusal into the screen seed 003 describes.
func (h *Handler) pageProblem(w http.ResponseWriter, r *http.Request, c caller, err error) {
	p, err := h.problem(err)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	switch p.State {
	case mfa.CodeMFANotActive:
		http.Redirect(w, r, PathAccount+"?notice=not_active", http.StatusSeeOther)
	case mfa.CodeStepUpRequired:
		action, _ := p.Extra["action"].(string)
		maxAge, _ := p.Extra["max_age"].(int)
		h.rp.Start(w, r, action, PathSecurity+"?confirm="+action, time.Duration(maxAge)*time.Second)
	case mfa.CodeUnlinkExpired, mfa.CodeAdminOnly, mfa.CodeResetRequested, mfa.CodeInvalidCode, mfa.CodeSetupExpired,
		mfa.CodeLastMethod, mfa.CodeInvalidName, mfa.CodePasskeyFailed, mfa.CodeNotFound:
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
	if err := h.o.MFA.CheckRemoval(ctx, c.Actor, c.Proof); err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	switch choice {
	case "no":
		if err := h.o.MFA.Cancel(ctx, c.Actor, id); err != nil {
			h.pageProblem(w, r, c, err)
			return
		}
		http.Redirect(w, r, PathAccount+"?notice=cancelled", http.StatusSeeOther)
	case "yes":
		if _, err := h.o.MFA.RemoveOwn(ctx, c.Actor, c.Proof, id); err != nil {
			h.pageProblem(w, r, c, err)
			return
		}
		http.Redirect(w, r, PathSetup+"?disabled=1", http.StatusSeeOther)
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
	ms, err := h.o.MFA.Methods(ctx, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	has := len(ms) > 0
	// A replacement's secret exists only after replaceStart (with its
	// step-up) made one for this session.
	secret, err := h.o.MFA.SetupSecret(ctx, c.Actor, c.Proof)
	if _, refused := mfa.AsRefusal(err); refused && has {
		http.Redirect(w, r, PathSecurity, http.StatusSeeOther)
		return
	}
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
	codes, _, err := h.o.MFA.CompleteSetup(r.Context(), c.Actor, c.Proof, code)
	if ref, ok := mfa.AsRefusal(err); ok && ref.Code == mfa.CodeInvalidCode {
		h.renderSetup(w, r, c, http.StatusUnprocessableEntity, ref.Message)
		return
	}
	if err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	h.render(w, r, http.StatusOK, "codes.html", map[string]any{"Codes": codes})
}

// replaceStart begins replacing the authenticator (new phone, old one in
// hand): after a step-up for this action, a new secret is shown; the old
// authenticator keeps working until a code from the new one is verified.
func (h *Handler) replaceStart(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	if _, err := h.o.MFA.StartSetup(r.Context(), c.Actor, c.Proof); err != nil {
		h.pageProblem(w, r, c, err)
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
	if _, err := h.o.MFA.RequestReset(r.Context(), c.Actor, c.Proof, msg); err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	http.Redirect(w, r, PathAccount+"?notice=reset_requested", http.StatusSeeOther)
}

func (h *Handler) newCodesSubmit(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	codes, err := h.o.MFA.NewRecoveryCodes(r.Context(), c.Actor, c.Proof)
	if err != nil {
		h.pageProblem(w, r, c, err)
		return
	}
	h.render(w, r, http.StatusOK, "codes.html", map[string]any{"Codes": codes})
}
