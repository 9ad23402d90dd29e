package provider

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

const (
	loginFlowPrefix   = "login_"
	consentFlowPrefix = "consent_"
)

// authorize is the authorization endpoint. It validates the request with
// fosite, then either finishes it with the browser's session or parks it in
// a login flow and sends the browser to sign in.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// No authorization request needs more; nothing larger is parsed or
	// echoed back.
	if len(r.URL.RawQuery) > maxAuthorizeRequest || r.ContentLength > maxAuthorizeRequest {
		p.errorPage(w, r, http.StatusRequestEntityTooLarge, "request_too_large", "The application sent an authorization request that is too large.")
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxAuthorizeRequest)
	}
	r = p.o.CSRF.Ensure(w, r)
	ar, err := p.newAuthorizeRequest(ctx, r)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	// fosite checks PKCE only after sign-in; refuse before asking for a
	// password, so nobody types credentials into a request that must fail.
	if err := checkPKCE(ar); err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	if err := checkScopesAndDetails(ar); err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	now := p.o.Now()
	bs, err := p.o.Sessions.Current(r)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.serverError(w, r, err)
		return
	}
	hasSession := err == nil
	if !hasSession || loginRequired(ar, bs, now) {
		if ar.GetRequestForm().Get("prompt") == "none" {
			p.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The user is not signed in, or must sign in again."))
			return
		}
		p.startLogin(w, r, ar, now)
		return
	}
	p.finish(w, r, ar, bs, now, false)
}

// maxAuthorizeRequest bounds an authorization request's query or form.
const maxAuthorizeRequest = 16 << 10

func checkPKCE(ar fosite.AuthorizeRequester) error {
	form := ar.GetRequestForm()
	challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method")
	// PKCE for every client (OAuth 2.1, RFC 9700 §2.1.1), unless a legacy
	// confidential client was registered to go without.
	if cl, _ := ar.GetClient().(*client); challenge == "" && (cl == nil || !cl.PKCEOptional || cl.IsPublic()) {
		return fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method=S256.")
	}
	if challenge != "" && method != "S256" {
		return fosite.ErrInvalidRequest.WithHint("Only code_challenge_method=S256 is supported.")
	}
	return nil
}

// checkScopesAndDetails refuses the admin scopes to third-party clients
// (even one whose registration was edited in the database) and
// authorization_details Latchkey cannot honour, before anyone signs in.
func checkScopesAndDetails(ar fosite.AuthorizeRequester) error {
	if cl, _ := ar.GetClient().(*client); cl == nil || !cl.FirstParty {
		for _, s := range ar.GetRequestedScopes() {
			if store.AdminScope(s) {
				return fosite.ErrInvalidScope.WithHint("The admin scopes are for first-party clients only.")
			}
		}
	}
	_, err := stepUpActions(ar)
	return err
}

// loginRequired applies prompt=login, max_age (where 0 means "sign in
// again", OIDC Core §3.1.2.1, which fosite alone ignores) and acr_values.
func loginRequired(ar fosite.AuthorizeRequester, bs store.BrowserSession, now time.Time) bool {
	form := ar.GetRequestForm()
	if slices.Contains(strings.Fields(form.Get("prompt")), "login") {
		return true
	}
	if v := form.Get("max_age"); v != "" {
		maxAge, err := strconv.ParseInt(v, 10, 64)
		if err == nil && (maxAge <= 0 || now.Sub(bs.AuthTime) > time.Duration(maxAge)*time.Second) {
			return true
		}
	}
	if slices.Contains(strings.Fields(form.Get("acr_values")), ACRMFA) && bs.ACR != ACRMFA {
		return true
	}
	return false
}

// startLogin stores the request in a login flow bound to this browser and
// redirects to the sign-in page.
func (p *Provider) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, now time.Time) {
	f := store.LoginFlow{ID: loginFlowPrefix + authn.RandomToken(16), Binding: p.o.CSRF.Binding(r),
		AuthorizeQuery: ar.GetRequestForm().Encode(), CreatedAt: now.UTC(), ExpiresAt: now.Add(p.o.LoginFlowLifespan).UTC()}
	if err := p.o.Store.CreateFlow(r.Context(), f); err != nil {
		p.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, PathLogin+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
}

// loadFlow returns the flow named in the request if it belongs to this
// browser and is still valid.
func (p *Provider) loadFlow(r *http.Request, id, prefix string) (store.LoginFlow, bool) {
	if !strings.HasPrefix(id, prefix) {
		return store.LoginFlow{}, false
	}
	f, err := p.o.Store.GetFlow(r.Context(), id)
	if err != nil || p.o.Now().After(f.ExpiresAt) {
		return store.LoginFlow{}, false
	}
	// A flow started in another browser is useless here: this stops login
	// CSRF and the replay of a leaked flow link.
	b := p.o.CSRF.Binding(r)
	if b == "" || b != f.Binding {
		return store.LoginFlow{}, false
	}
	return f, true
}

// rebuild re-parses a stored authorization request as if it had just
// arrived, keeping the time it first arrived: prompt=login and max_age are
// judged against that time.
func (p *Provider) rebuild(r *http.Request, f store.LoginFlow) (fosite.AuthorizeRequester, error) {
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	r2.URL.RawQuery = f.AuthorizeQuery
	r2.Form, r2.PostForm, r2.Body = nil, nil, http.NoBody
	ar, err := p.newAuthorizeRequest(r.Context(), r2)
	if err != nil {
		return ar, err
	}
	ar.(*fosite.AuthorizeRequest).RequestedAt = f.CreatedAt
	return ar, nil
}

// newAuthorizeRequest is fosite's parser plus the redirect rule SPEC asks
// for: fosite lets any client's loopback redirect URI take any port (RFC
// 8252 §7.3), which only native apps need and they are public clients. For a
// confidential client, another port on 127.0.0.1 is another program, so the
// URI must match a registered one exactly. On mismatch the request is
// returned as nil: the URI is unverified and must never be redirected to.
func (p *Provider) newAuthorizeRequest(ctx context.Context, r *http.Request) (fosite.AuthorizeRequester, error) {
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil || ar.GetClient().IsPublic() {
		return ar, err
	}
	if raw := ar.GetRequestForm().Get("redirect_uri"); raw != "" && !slices.Contains(ar.GetClient().GetRedirectURIs(), raw) {
		return nil, fosite.ErrInvalidRequest.WithHint("The 'redirect_uri' parameter does not match any of the OAuth 2.0 Client's pre-registered redirect urls.")
	}
	return ar, nil
}

// resume continues an authorization request once its login flow finished.
func (p *Provider) resume(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := p.loadFlow(r, r.URL.Query().Get("flow"), loginFlowPrefix)
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", "This sign-in link has expired or was opened in another browser. Go back to the application and start again.")
		return
	}
	bs, err := p.o.Sessions.Current(r)
	// The session must be the one this flow produced: same user, signed in
	// after the flow began.
	if err != nil || f.UserID == "" || bs.UserID != f.UserID || bs.AuthTime.Before(f.CreatedAt) {
		p.errorPage(w, r, http.StatusBadRequest, "expired", "This sign-in did not complete. Go back to the application and start again.")
		return
	}
	if consumed, err := p.o.Store.ConsumeFlow(ctx, f.ID); err != nil || !consumed {
		p.errorPage(w, r, http.StatusBadRequest, "expired", "This sign-in was already used. Go back to the application and start again.")
		return
	}
	ar, err := p.rebuild(r, f)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	p.finish(w, r, ar, bs, f.CreatedAt, false)
}

// finish issues the authorization response for a signed-in user, asking for
// consent first where the client is not first-party.
func (p *Provider) finish(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, bs store.BrowserSession, requestedAt time.Time, consented bool) {
	ctx := r.Context()
	user, err := p.o.Store.GetUser(ctx, bs.UserID)
	if err != nil || user.Disabled {
		_ = p.o.Sessions.End(w, r)
		p.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The account is not available."))
		return
	}
	cl, _ := ar.GetClient().(*client)
	if cl == nil {
		p.serverError(w, r, errors.New("provider: unexpected client type"))
		return
	}
	stepUp := grantedStepUp(ar, bs, requestedAt)
	if !cl.FirstParty && !consented {
		need, err := p.needsConsent(r, ar, user.ID)
		// A step-up for a destructive action is confirmed every time.
		need = need || ar.GetRequestForm().Get("authorization_details") != ""
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		if need {
			if ar.GetRequestForm().Get("prompt") == "none" {
				p.authorizeError(w, r, ar, fosite.ErrConsentRequired)
				return
			}
			p.askConsent(w, r, ar, user, requestedAt)
			return
		}
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	ar.(*fosite.AuthorizeRequest).RequestedAt = requestedAt
	sess := newSession()
	sess.Subject, sess.Username = user.ID, user.Username
	sess.Claims.Subject = user.ID
	sess.Claims.AuthTime = bs.AuthTime
	sess.Claims.RequestedAt = requestedAt
	sess.Claims.AuthenticationContextClassReference = bs.ACR
	sess.Claims.AuthenticationMethodsReferences = bs.AMR
	sess.Claims.Extra["sid"] = bs.SID
	if len(stepUp) > 0 {
		sess.Claims.Extra[claimStepUp] = []AuthorizationDetail{{Type: mfa.AuthorizationDetailsType, Actions: stepUp}}
	}
	claims, err := p.policyClaims(r, user.ID, ar.GetGrantedScopes())
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	maps.Copy(sess.Claims.Extra, claims)
	// The code, its PKCE and OIDC rows are written in one transaction: one
	// commit instead of three, and no half-stored code if one write fails.
	txCtx, err := p.fstore.BeginTX(ctx)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	resp, err := p.oauth.NewAuthorizeResponse(txCtx, ar, sess)
	if err != nil {
		_ = p.fstore.Rollback(txCtx)
		p.authorizeError(w, r, ar, err)
		return
	}
	if err := p.fstore.Commit(txCtx); err != nil {
		p.serverError(w, r, err)
		return
	}
	p.oauth.WriteAuthorizeResponse(ctx, &issWriter{ResponseWriter: w, iss: p.o.Issuer}, ar, resp)
}

func (p *Provider) needsConsent(r *http.Request, ar fosite.AuthorizeRequester, userID string) (bool, error) {
	if slices.Contains(strings.Fields(ar.GetRequestForm().Get("prompt")), "consent") {
		return true, nil
	}
	c, err := p.o.Store.GetConsent(r.Context(), userID, ar.GetClient().GetID())
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, s := range ar.GetRequestedScopes() {
		if !slices.Contains(c.Scopes, s) {
			return true, nil
		}
	}
	return false, nil
}

func (p *Provider) askConsent(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, user store.User, requestedAt time.Time) {
	f := store.LoginFlow{ID: consentFlowPrefix + authn.RandomToken(16), Binding: p.o.CSRF.Binding(r), AuthorizeQuery: ar.GetRequestForm().Encode(),
		UserID: user.ID, CreatedAt: requestedAt.UTC(), ExpiresAt: p.o.Now().Add(p.o.LoginFlowLifespan).UTC()}
	if err := p.o.Store.CreateFlow(r.Context(), f); err != nil {
		p.serverError(w, r, err)
		return
	}
	c, _ := p.fstore.cachedClient(r.Context(), ar.GetClient().GetID())
	type scope struct{ Name, Words string }
	var scopes []scope
	for _, s := range ar.GetRequestedScopes() {
		scopes = append(scopes, scope{s, scopeWords[s]})
	}
	p.render(w, r, http.StatusOK, "consent.html", map[string]any{
		"Flow": f.ID, "Client": displayName(c), "Scopes": scopes, "User": user.Username, "Actions": flowActions(f),
	})
}

// consentSubmit records the user's decision on a consent flow.
func (p *Provider) consentSubmit(w http.ResponseWriter, r *http.Request) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return
	}
	f, ok := p.loadFlow(r, r.PostFormValue("flow"), consentFlowPrefix)
	bs, err := p.o.Sessions.Current(r)
	if !ok || err != nil || bs.UserID != f.UserID {
		p.errorPage(w, r, http.StatusBadRequest, "expired", "This consent request has expired. Go back to the application and start again.")
		return
	}
	if consumed, err := p.o.Store.ConsumeFlow(r.Context(), f.ID); err != nil || !consumed {
		p.errorPage(w, r, http.StatusBadRequest, "expired", "This consent request was already answered.")
		return
	}
	ar, err := p.rebuild(r, f)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	if r.PostFormValue("decision") != "allow" {
		p.authorizeError(w, r, ar, fosite.ErrAccessDenied.WithHint("The user declined the request."))
		return
	}
	if err := p.o.Store.SaveConsent(r.Context(), store.Consent{UserID: f.UserID, ClientID: ar.GetClient().GetID(),
		Scopes: ar.GetRequestedScopes(), GrantedAt: p.o.Now().UTC()}); err != nil {
		p.serverError(w, r, err)
		return
	}
	p.finish(w, r, ar, bs, f.CreatedAt, true)
}

// authorizeError redirects errors to the client only when the redirect URI
// was verified; otherwise it shows an error page and never redirects, so
// the endpoint cannot be used as an open redirector.
func (p *Provider) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		p.serverError(w, r, err) // 503 with Retry-After, not an OAuth error
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	p.o.Logger.InfoContext(r.Context(), "authorization request refused", "error", rfc.ErrorField, "hint", rfc.HintField, "debug", rfc.DebugField)
	if ar == nil || !ar.IsRedirectURIValid() {
		status := rfc.CodeField
		if status < 400 {
			status = http.StatusBadRequest
		}
		msg := "The application sent a sign-in request that Latchkey cannot accept."
		if rfc.HintField != "" {
			msg += " " + rfc.HintField
		}
		p.errorPage(w, r, status, rfc.ErrorField, msg)
		return
	}
	p.oauth.WriteAuthorizeError(r.Context(), &issWriter{ResponseWriter: w, iss: p.o.Issuer}, ar, err)
}

// issWriter adds the iss parameter (RFC 9207) to authorization responses
// and errors, so clients can tell which issuer answered (mix-up defence).
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w *issWriter) WriteHeader(code int) {
	if code == http.StatusSeeOther || code == http.StatusFound {
		if loc := w.Header().Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil && u.Fragment == "" {
				q := u.Query()
				q.Set("iss", w.iss)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func displayName(c store.Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}
