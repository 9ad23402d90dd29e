package provider

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// The lost-authenticator page (issue 11): after a correct password, a user
// who cannot produce a second factor sees who their admins are, whether
// they could remove 2SV themselves with a recovery code, and can ask for a
// reset. The page belongs to the password step of one sign-in flow in this
// browser: without a correct password there is no such flow, and the page
// reveals nothing. Asking issues no session and no token.

// PathLoginLost is the lost-authenticator page.
const PathLoginLost = "/login/lost"

// Limits on reset requests from the sign-in page, per network.
const (
	lostRequestsPerIP = 5
	lostRequestWindow = time.Hour
)

func (p *Provider) lostPage(w http.ResponseWriter, r *http.Request) {
	f, ok := p.passwordDone(r, r.URL.Query().Get("flow"))
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	p.renderLost(w, r, f, http.StatusOK, map[string]any{})
}

func (p *Provider) renderLost(w http.ResponseWriter, r *http.Request, f store.LoginFlow, status int, data map[string]any) {
	ctx := r.Context()
	contacts, err := p.o.MFA.Contacts(ctx, f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	eff, err := authn.EffectivePolicy(ctx, p.o.Store, f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	left, err := p.o.Store.CountRecoveryCodes(ctx, f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	data["Flow"], data["Contacts"], data["SelfRemoval"], data["CodesLeft"] = f.ID, contacts, eff.AllowSelfServiceRemoval, left
	if _, sent := data["Sent"]; !sent {
		if rr, err := p.o.Store.OpenResetRequest(ctx, f.UserID); err == nil {
			data["Requested"] = rr.CreatedAt.UTC().Format("2 Jan 2006 15:04")
		}
	}
	p.render(w, r, status, "login_lost.html", data)
}

func (p *Provider) lostSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := p.postedFlow(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	msg := strings.TrimSpace(r.PostFormValue("message"))
	if !mfa.PlainText(msg, 500) {
		p.renderLost(w, r, f, http.StatusUnprocessableEntity, map[string]any{"Error": "The message can be at most 500 characters of plain text.", "Message": msg})
		return
	}
	allowed, err := p.o.Authn.Allow(ctx, "reset-ip:"+httpx.ClientIP(r), lostRequestsPerIP, lostRequestWindow)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if !allowed {
		p.renderLost(w, r, f, http.StatusTooManyRequests, map[string]any{"Error": "Too many requests from this network. Wait an hour, or contact your admins directly.", "Message": msg})
		return
	}
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	a := mfa.Actor{Type: audit.ActorUser, UserID: f.UserID, ClientID: q.Get("client_id"),
		Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(ctx)}}
	_, err = p.o.MFA.RequestReset(ctx, a, mfa.Proof{Via: mfa.ViaSignIn, ID: f.ID, AMR: []string{"pwd"}}, msg)
	if ref, ok := mfa.AsRefusal(err); ok {
		status := http.StatusConflict
		p.renderLost(w, r, f, status, map[string]any{"Error": ref.Message})
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	p.renderLost(w, r, f, http.StatusOK, map[string]any{"Sent": true})
}
