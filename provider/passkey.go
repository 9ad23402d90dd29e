package provider

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

// Sign-in with a passkey or security key as the second factor. The page's
// script (static/passkey.js) asks PathLoginPasskeyBegin for a challenge
// bound to this sign-in flow, lets the browser talk to the authenticator,
// and posts the answer to PathLoginPasskey as an ordinary form.
const (
	PathLoginPasskeyBegin = "/login/2sv/passkey/begin"
	PathLoginPasskey      = "/login/2sv/passkey"
)

const msgBadPasskey = "That security key or passkey could not be verified. Try again, or use another way to confirm it's you."

func (p *Provider) passkeyBegin(w http.ResponseWriter, r *http.Request) {
	f, ok := p.postedFlow(w, r)
	if !ok {
		return
	}
	u, err := p.o.Store.GetUser(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	id, options, err := p.o.Authn.BeginPasskey(r.Context(), u, f.ID)
	if errors.Is(err, authn.ErrPasskey) {
		httpx.WriteJSON(w, http.StatusConflict, &httpx.Error{Status: http.StatusConflict, Code: "no_passkey", Message: "No passkey or security key is registered."})
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ceremony": id, "options": json.RawMessage(options)})
}

func (p *Provider) passkeySubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := p.postedFlow(w, r)
	if !ok {
		return
	}
	answer, ceremony := r.PostFormValue("credential"), r.PostFormValue("ceremony")
	if !authn.PasskeyAnswerFits(ceremony, answer) {
		data := p.secondFactorData(r, f)
		data["Error"] = msgBadPasskey
		p.render(w, r, http.StatusBadRequest, "second_factor.html", data)
		return
	}
	u, err := p.o.Store.GetUser(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	use, err := p.o.Authn.CheckPasskey(r.Context(), u, ceremony, f.ID, []byte(answer), httpx.ClientIP(r))
	if errors.Is(err, authn.ErrPasskey) || errors.Is(err, authn.ErrLocked) {
		p.recordFailure(r, f, f.UserID, map[string]any{"step": "second_factor", "method": "passkey", "reason": reason(err)})
	}
	if errors.Is(err, authn.ErrPasskey) {
		p.o.Logger.InfoContext(r.Context(), "passkey sign-in refused", "user", f.UserID, "err", err)
		data := p.secondFactorData(r, f)
		data["Error"] = msgBadPasskey
		p.render(w, r, http.StatusUnauthorized, "second_factor.html", data)
		return
	}
	if err != nil {
		p.refused(w, r, "second_factor.html", p.secondFactorData(r, f), err)
		return
	}
	// RFC 8176: a password plus a key is multi-factor.
	amr := append(append([]string{"pwd"}, use.AMR()...), "mfa")
	p.completeLogin(w, r, f, f.UserID, amr, ACRMFA)
}

// secondFactorData is what the second-factor page shows for flow f: which
// second factors its user can use (their TOTP app, their passkeys;
// recovery codes always). Handlers build it only when they render the
// page, so a successful sign-in costs no extra reads.
func (p *Provider) secondFactorData(r *http.Request, f store.LoginFlow) map[string]any {
	hasTOTP, _ := p.o.Authn.HasTOTP(r.Context(), f.UserID)
	hasPasskeys, _ := p.o.Authn.HasPasskeys(r.Context(), f.UserID)
	return map[string]any{"Flow": f.ID, "Client": p.clientName(r, f), "TOTP": hasTOTP, "Passkeys": hasPasskeys}
}
