package provider

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
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
	writeCeremony(w, id, options)
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
	p.secondFactorDone(w, r, f, policy.MethodPasskey, amr)
}

// secondFactorData is what the second-factor page shows for flow f: which
// second factors its user can use (their TOTP app, their passkeys;
// recovery codes always). Handlers build it only when they render the
// page, so a successful sign-in costs no extra reads.
//
// A method the user's policy does not allow is offered only while they
// have no allowed one, with a notice: it then leads to setting one up.
func (p *Provider) secondFactorData(r *http.Request, f store.LoginFlow) map[string]any {
	ms, eff, _ := p.o.MFA.MethodsAndPolicy(r.Context(), f.UserID)
	var totp, passkeys, allowed bool
	for _, m := range ms {
		allowed = allowed || m.Allowed
	}
	for _, m := range ms {
		if m.Allowed || !allowed {
			totp = totp || m.Kind == policy.MethodTOTP
			passkeys = passkeys || m.Kind == policy.MethodPasskey
		}
	}
	data := map[string]any{"Flow": f.ID, "Client": p.clientName(r, f), "TOTP": totp, "Passkeys": passkeys}
	if len(ms) > 0 && !allowed {
		data["Switch"] = eff.MethodsReason()
	}
	return data
}

// A passkey or security key set up at sign-in: as a first method, or by a
// user whose policy no longer allows the methods they have (setupFlow
// decides who may; the lifecycle service checks again).
const (
	PathLoginSetupPasskeyBegin = "/login/setup/passkey/begin"
	PathLoginSetupPasskey      = "/login/setup/passkey"
)

func (p *Provider) setupPasskeyBegin(w http.ResponseWriter, r *http.Request) {
	f, v, ok := p.postedSetupFlow(w, r)
	if !ok {
		return
	}
	if !v.Passkey {
		httpx.WriteJSON(w, http.StatusForbidden, &httpx.Error{Status: http.StatusForbidden, Code: mfa.CodeMethodNotAllowed, Message: v.Reason})
		return
	}
	id, options, err := p.o.MFA.BeginAddPasskey(r.Context(), p.setupActor(r, f), setupProof(f))
	if ref, ok := mfa.AsRefusal(err); ok {
		httpx.WriteJSON(w, http.StatusForbidden, &httpx.Error{Status: http.StatusForbidden, Code: ref.Code, Message: ref.Message})
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	writeCeremony(w, id, options)
}

func (p *Provider) setupPasskeySubmit(w http.ResponseWriter, r *http.Request) {
	f, v, ok := p.postedSetupFlow(w, r)
	if !ok {
		return
	}
	answer, ceremony := r.PostFormValue("credential"), r.PostFormValue("ceremony")
	if !authn.PasskeyAnswerFits(ceremony, answer) {
		p.renderLoginSetup(w, r, f, v, http.StatusBadRequest, msgBadPasskey)
		return
	}
	_, codes, err := p.o.MFA.FinishAddPasskey(r.Context(), p.setupActor(r, f), setupProof(f), ceremony, r.PostFormValue("name"), []byte(answer))
	if ref, ok := mfa.AsRefusal(err); ok {
		status := http.StatusForbidden
		if ref.Code == mfa.CodePasskeyFailed || ref.Code == mfa.CodeInvalidName {
			status = http.StatusUnprocessableEntity
		}
		p.renderLoginSetup(w, r, f, v, status, ref.Message)
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	p.setupDone(w, r, f, codes)
}

// writeCeremony answers a page script's request for a WebAuthn challenge.
func writeCeremony(w http.ResponseWriter, id string, options []byte) {
	httpx.WriteJSON(w, http.StatusOK, struct {
		Ceremony string          `json:"ceremony"`
		Options  json.RawMessage `json:"options"`
	}{id, options})
}
