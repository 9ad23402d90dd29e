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
// still has no authenticator.
func (p *Provider) setupFlow(w http.ResponseWriter, r *http.Request, id string) (store.LoginFlow, bool) {
	f, ok := p.passwordDone(r, id)
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return f, false
	}
	has, err := p.o.Authn.HasTOTP(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return f, false
	}
	// Any method counts: a user with only a passkey must not get a TOTP
	// app set up here with a password alone.
	if keys, err := p.o.Authn.HasPasskeys(r.Context(), f.UserID); err != nil {
		p.serverError(w, r, err)
		return f, false
	} else if keys {
		has = true
	}
	if !has && p.setupExpired(w, r, f) {
		return f, false
	}
	if has {
		// Setup here only ever adds a first authenticator; replacing one
		// goes through the account portal with a step-up.
		http.Redirect(w, r, PathLogin2SV+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
		return f, false
	}
	return f, true
}

func (p *Provider) loginSetupPage(w http.ResponseWriter, r *http.Request) {
	f, ok := p.setupFlow(w, r, r.URL.Query().Get("flow"))
	if !ok {
		return
	}
	p.renderLoginSetup(w, r, f, http.StatusOK, "")
}

func (p *Provider) renderLoginSetup(w http.ResponseWriter, r *http.Request, f store.LoginFlow, status int, errMsg string) {
	ctx := r.Context()
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
	removed, _ := p.o.Store.MFARemovedAt(ctx, f.UserID)
	// The data: URI is generated here, not taken from input.
	p.render(w, r, status, "login_setup.html", map[string]any{"Flow": f.ID, "QR": template.URL(en.QR), //nolint:gosec
		"Secret": spaced(secret), "Error": errMsg,
		"Client": p.clientName(r, f), "Reenroll": !removed.IsZero()})
}

// The secret shown during a sign-in belongs to that sign-in's flow: a
// secret started elsewhere (by a bearer caller, say) is never shown here.
func setupProof(f store.LoginFlow) mfa.Proof { return mfa.Proof{Via: mfa.ViaSignIn, ID: f.ID} }

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
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return
	}
	f, ok := p.setupFlow(w, r, r.PostFormValue("flow"))
	if !ok {
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	codes, _, err := p.o.MFA.CompleteSetup(r.Context(), p.setupActor(r, f), setupProof(f), code)
	refusal, _ := mfa.AsRefusal(err)
	switch {
	case refusal != nil && refusal.Code == mfa.CodeInvalidCode:
		p.renderLoginSetup(w, r, f, http.StatusUnprocessableEntity, refusal.Message)
		return
	case refusal != nil && refusal.Code == mfa.CodeSetupExpired:
		p.renderLoginSetup(w, r, f, http.StatusConflict, "The setup expired; scan this new code.")
		return
	case err != nil:
		p.serverError(w, r, err)
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
	cred, err := p.o.Store.GetTOTP(r.Context(), f.UserID)
	if err != nil || cred.VerifiedAt.Before(f.PasswordAt) {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	p.completeLogin(w, r, f, f.UserID, []string{"pwd", "otp", "mfa"}, ACRMFA)
}
