package provider

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Re-enrollment enforcement (SPEC §5): when the user's effective policy
// requires 2SV and they have no authenticator, sign-in continues to this
// setup screen and no code or token is issued until a code from the new
// authenticator is verified. After a self-service removal under a policy
// with a grace period, sign-in may continue without 2SV until it ends.

const PathLoginSetup = "/login/setup"

// mustEnroll reports whether a user without an authenticator must set one
// up before this sign-in can finish. The caller checks setupExpired first.
func (p *Provider) mustEnroll(r *http.Request, userID string) (bool, error) {
	ctx := r.Context()
	eff, err := authn.EffectivePolicy(ctx, p.o.Store, userID)
	if err != nil || !eff.RequireMFA {
		return false, err
	}
	if eff.Reenroll == policy.ReenrollGrace {
		removed, err := p.o.Store.MFARemovedAt(ctx, userID)
		if err != nil {
			return false, err
		}
		if !removed.IsZero() && p.o.Now().Before(removed.Add(eff.GracePeriod)) {
			return false, nil
		}
	}
	return true, nil
}

// wantsAAL2 reports whether the flow's authorization request asked for a
// sign-in with a second factor (acr_values=aal2).
func wantsAAL2(f store.LoginFlow) bool {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	return slices.Contains(strings.Fields(q.Get("acr_values")), ACRMFA)
}

// setupFlow returns the flow if its password step is done and its user
// still has no authenticator, or has only methods their policy no longer
// allows and this sign-in verified one of them (f.SecondFactor). The
// lifecycle service checks the same again when the method is added.
func (p *Provider) setupFlow(w http.ResponseWriter, r *http.Request, id string) (store.LoginFlow, setupView, bool) {
	f, ok := p.passwordDone(r, id)
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return f, setupView{}, false
	}
	ms, eff, err := p.o.MFA.MethodsAndPolicy(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return f, setupView{}, false
	}
	v := setupView{Switch: len(ms) > 0}
	for _, m := range ms {
		// Any allowed method counts: a user with only a passkey must not
		// get a TOTP app set up here with a password alone.
		if m.Allowed || f.SecondFactor == "" {
			// Setup here only ever adds a first authenticator; replacing
			// one goes through the account portal with a step-up.
			http.Redirect(w, r, PathLogin2SV+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
			return f, v, false
		}
	}
	if !v.Switch && p.setupExpired(w, r, f) {
		return f, v, false
	}
	v.TOTP, v.Passkey = eff.Allows(policy.MethodTOTP), eff.Allows(policy.MethodPasskey) && p.o.MFA.PasskeysOn()
	v.Reason = eff.MethodsReason()
	return f, v, true
}

// postedSetupFlow checks a setup form post's CSRF token and returns its
// flow, as setupFlow does.
func (p *Provider) postedSetupFlow(w http.ResponseWriter, r *http.Request) (store.LoginFlow, setupView, bool) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return store.LoginFlow{}, setupView{}, false
	}
	return p.setupFlow(w, r, r.PostFormValue("flow"))
}

// setupView is what the sign-in's setup screen offers.
type setupView struct {
	TOTP, Passkey bool
	// Switch: the user's methods are all ones their policy no longer
	// allows; Reason says which it allows.
	Switch bool
	Reason string
}

func (p *Provider) loginSetupPage(w http.ResponseWriter, r *http.Request) {
	f, v, ok := p.setupFlow(w, r, r.URL.Query().Get("flow"))
	if !ok {
		return
	}
	p.renderLoginSetup(w, r, f, v, http.StatusOK, "")
}

func (p *Provider) renderLoginSetup(w http.ResponseWriter, r *http.Request, f store.LoginFlow, v setupView, status int, errMsg string) {
	ctx := r.Context()
	removed, _ := p.o.Store.MFARemovedAt(ctx, f.UserID)
	data := map[string]any{"Flow": f.ID, "Error": errMsg, "Client": p.clientName(r, f), "Reenroll": !removed.IsZero(), "View": v}
	if v.TOTP {
		secret, err := p.o.MFA.SetupSecret(ctx, p.setupActor(r, f), setupProof(f))
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		u, err := p.o.Store.GetUser(ctx, f.UserID)
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		en, err := authn.NewEnrollment("Latchkey", u.Username, secret)
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		// The data: URI is generated here, not taken from input.
		data["QR"], data["Secret"] = template.URL(en.QR), spaced(secret) //nolint:gosec
	}
	p.render(w, r, status, "login_setup.html", data)
}

// The secret shown during a sign-in belongs to that sign-in's flow: a
// secret started elsewhere (by a bearer caller, say) is never shown here.
// A flow that verified a method the user's policy no longer allows carries
// that factor: the proof for moving to an allowed one.
func setupProof(f store.LoginFlow) mfa.Proof {
	p := mfa.Proof{Via: mfa.ViaSignIn, ID: f.ID}
	if f.SecondFactor != "" {
		p.AMR, p.AuthTime = []string{"pwd", f.SecondFactor}, f.SecondFactorAt
	}
	return p
}

func (p *Provider) setupActor(r *http.Request, f store.LoginFlow) mfa.Actor {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	return mfa.Actor{Type: audit.ActorUser, UserID: f.UserID, ClientID: q.Get("client_id"),
		Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())}}
}

// setupExpired answers, and reports true, when the window to set up a
// new authenticator with a password alone has ended since 2SV was removed:
// the user needs a new reset, which the page offers.
func (p *Provider) setupExpired(w http.ResponseWriter, r *http.Request, f store.LoginFlow) bool {
	expired, err := p.o.MFA.SetupExpired(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return true
	}
	if !expired {
		return false
	}
	p.recordFailure(r, f, f.UserID, map[string]any{"step": "setup", "reason": "setup_window_expired"})
	p.render(w, r, http.StatusForbidden, "login_setup_expired.html", map[string]any{"Flow": f.ID, "Client": p.clientName(r, f)})
	return true
}

func spaced(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (p *Provider) loginSetupSubmit(w http.ResponseWriter, r *http.Request) {
	f, v, ok := p.postedSetupFlow(w, r)
	if !ok {
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	codes, _, err := p.o.MFA.CompleteSetup(r.Context(), p.setupActor(r, f), setupProof(f), code)
	refusal, _ := mfa.AsRefusal(err)
	switch {
	case refusal != nil && refusal.Code == mfa.CodeInvalidCode:
		p.renderLoginSetup(w, r, f, v, http.StatusUnprocessableEntity, refusal.Message)
		return
	case refusal != nil && refusal.Code == mfa.CodeSetupExpired:
		p.renderLoginSetup(w, r, f, v, http.StatusConflict, "The setup expired; scan this new code.")
		return
	case refusal != nil:
		p.renderLoginSetup(w, r, f, v, http.StatusForbidden, refusal.Message)
		return
	case err != nil:
		p.serverError(w, r, err)
		return
	}
	p.setupDone(w, r, f, codes)
}

// setupDone shows a first method's recovery codes, or finishes the
// sign-in of a user who moved to a method their policy allows (they keep
// their codes).
func (p *Provider) setupDone(w http.ResponseWriter, r *http.Request, f store.LoginFlow, codes []string) {
	if codes == nil {
		p.loginSetupFinish(w, r, f)
		return
	}
	p.render(w, r, http.StatusOK, "login_codes.html", map[string]any{"Flow": f.ID, "Codes": codes})
}

// loginSetupContinue finishes the sign-in after the recovery codes were
// shown. It only does so if an authenticator was enrolled after this flow's
// password step, so it cannot be used to skip the second factor.
func (p *Provider) loginSetupContinue(w http.ResponseWriter, r *http.Request) {
	f, ok := p.postedFlow(w, r)
	if !ok {
		return
	}
	p.loginSetupFinish(w, r, f)
}

// loginSetupFinish completes a sign-in whose user added a method after its
// password step; RFC 8176 amr names the new method (a key's registration
// proves possession; "swk" claims no more than that) and the factor the
// flow verified before, if any.
func (p *Provider) loginSetupFinish(w http.ResponseWriter, r *http.Request, f store.LoginFlow) {
	ms, err := p.o.MFA.Methods(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	amr := []string{"pwd"}
	if f.SecondFactor != "" {
		amr = append(amr, f.SecondFactor)
	}
	added := false
	for _, m := range ms {
		if !m.Allowed || m.CreatedAt.Before(f.PasswordAt) {
			continue
		}
		added = true
		v := "otp"
		if m.Kind == policy.MethodPasskey {
			v = "swk"
		}
		if !slices.Contains(amr, v) {
			amr = append(amr, v)
		}
	}
	if !added {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	p.completeLogin(w, r, f, f.UserID, append(amr, "mfa"), ACRMFA)
}
