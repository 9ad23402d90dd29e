package provider

import (
	"errors"
	"net/http"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
)

// PathPasswordReset is where admin-issued reset links point.
const PathPasswordReset = "/password-reset"

const msgResetInvalid = "This password reset link is invalid, was already used, or has expired. Ask your administrator for a new one."

func (p *Provider) resetPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	u, err := p.o.Authn.CheckResetLink(r.Context(), token)
	if errors.Is(err, authn.ErrResetLinkInvalid) {
		p.errorPage(w, r, http.StatusBadRequest, "reset_link_invalid", msgResetInvalid)
		return
	} else if err != nil {
		p.serverError(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "password_reset.html", map[string]any{"Token": token, "Username": u.Username})
}

func (p *Provider) resetSubmit(w http.ResponseWriter, r *http.Request) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return
	}
	token := r.PostFormValue("token")
	data := map[string]any{"Token": token}
	if r.PostFormValue("password") != r.PostFormValue("password_confirm") {
		data["Error"] = "The two passwords differ."
		p.render(w, r, http.StatusUnprocessableEntity, "password_reset.html", data)
		return
	}
	err := p.o.Authn.ResetPassword(r.Context(), token, r.PostFormValue("password"),
		audit.Event{Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())}})
	switch {
	case errors.Is(err, authn.ErrWeakPassword):
		data["Error"] = "Choose a password of 8 to 1024 characters."
		p.render(w, r, http.StatusUnprocessableEntity, "password_reset.html", data)
	case errors.Is(err, authn.ErrResetLinkInvalid):
		p.errorPage(w, r, http.StatusBadRequest, "reset_link_invalid", msgResetInvalid)
	case err != nil:
		p.serverError(w, r, err)
	default:
		p.render(w, r, http.StatusOK, "password_reset_done.html", nil)
	}
}
