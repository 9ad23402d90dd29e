package provider

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

// token is the token endpoint.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	w = basicChallenge{w, "token"}
	_ = r.ParseForm()
	gt := r.PostForm.Get("grant_type")
	ctx := withGrantType(r.Context(), gt)
	label := gt
	switch gt {
	case "authorization_code", "refresh_token", "client_credentials":
	default:
		label = "other" // bounded label set whatever clients send
	}
	ar, resp, err := p.grant(ctx, r)
	if gt == "client_credentials" && errors.Is(err, store.ErrUnavailable) {
		// The database went away (a failover); the store has dropped its
		// dead connections, so once more, on the new primary if it is up.
		// A client-credentials grant is one write that issues a new token,
		// so a second run is safe even if the first committed unanswered:
		// that token was never delivered and only expires. Not so the
		// code and refresh grants: fosite runs them as several steps, and
		// a step failing after the one that spent the code or rotated the
		// token committed would make a second run a replay (and revoke the
		// grant). The store already ran again what provably did not
		// happen; the rest is the client's to retry (503, Retry-After;
		// a rotated refresh token is honoured once more in its grace
		// period).
		ar, resp, err = p.grant(ctx, r)
	}
	if err != nil {
		p.grants.WithLabelValues(label, "error").Inc()
		p.accessError(w, r, ar, err)
		return
	}
	p.grants.WithLabelValues(label, "ok").Inc()
	// RFC 9396 §7: the token response names the authorization details the
	// token carries.
	if s, ok := ar.GetSession().(*openid.DefaultSession); ok && s.Claims != nil {
		if d, ok := s.Claims.Extra[claimStepUp]; ok {
			resp.SetExtra("authorization_details", d)
		}
	}
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// grant runs one attempt at the token request.
func (p *Provider) grant(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error) {
	ar, err := p.oauth.NewAccessRequest(ctx, r, newSession())
	if err != nil {
		return ar, nil, err
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// A machine client gets what it asked for within its registered
		// scopes (fosite checked them); there is no user to consent.
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		for _, a := range ar.GetRequestedAudience() {
			ar.GrantAudience(a)
		}
	}
	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	return ar, resp, err
}

func (p *Provider) accessError(w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		httpx.WriteUnavailable(w, r, p.o.Logger, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		p.o.Logger.ErrorContext(r.Context(), "token request failed", "err", err, "debug", rfc.DebugField)
	}
	p.oauth.WriteAccessError(r.Context(), w, ar, err)
}

func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	w = basicChallenge{w, "revocation"}
	err := p.oauth.NewRevocationRequest(r.Context(), r)
	p.oauth.WriteRevocationResponse(r.Context(), w, err)
}

// introspect is RFC 7662 for confidential clients. fosite would also let
// any holder of a valid access token introspect other tokens (a bearer
// Authorization header); that would let every user's app probe tokens, so
// only HTTP Basic client authentication is accepted.
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	w = basicChallenge{w, "introspection"}
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "bearer ") {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
		httpx.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client",
			"error_description": "Introspection requires client authentication with HTTP Basic."})
		return
	}
	ir, err := p.oauth.NewIntrospectionRequest(r.Context(), r, newSession())
	if errors.Is(err, store.ErrUnavailable) {
		// Never "active": false for a token we could not look up.
		httpx.WriteUnavailable(w, r, p.o.Logger, err)
		return
	}
	if err != nil {
		p.oauth.WriteIntrospectionError(r.Context(), w, err)
		return
	}
	p.oauth.WriteIntrospectionResponse(r.Context(), w, ir)
}

// userinfo returns the claims of the access token's user, per its scopes.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tok := fosite.AccessTokenFromRequest(r)
	deny := func(code, desc string) {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
		httpx.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "error_description": desc})
	}
	if tok == "" {
		deny("invalid_token", "An access token is required.")
		return
	}
	_, ar, err := p.oauth.IntrospectToken(ctx, tok, fosite.AccessToken, newSession())
	if errors.Is(err, store.ErrUnavailable) {
		httpx.WriteUnavailable(w, r, p.o.Logger, err)
		return
	}
	if err != nil {
		deny("invalid_token", "The access token is invalid, expired or revoked.")
		return
	}
	if !slices.Contains(ar.GetGrantedScopes(), "openid") {
		httpx.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The openid scope is required."})
		return
	}
	sub := ar.GetSession().GetSubject()
	u, err := p.o.Store.GetUser(ctx, sub)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
		deny("invalid_token", "The user no longer exists.")
		return
	}
	if err != nil {
		httpx.WriteError(w, r, p.o.Logger, err)
		return
	}
	claims := p.userClaims(u, ar.GetGrantedScopes())
	// Userinfo answers from the database now, so it reflects a policy
	// changed since sign-in; the ID token carries the policy at sign-in.
	pc, err := p.policyClaims(r, u.ID, ar.GetGrantedScopes())
	if err != nil {
		httpx.WriteError(w, r, p.o.Logger, err)
		return
	}
	maps.Copy(claims, pc)
	httpx.WriteJSON(w, http.StatusOK, claims)
}

// policyClaims are the effective-policy claims (SPEC §4): mfa_policy
// always, groups with scope "groups". Apps use them to show or hide
// actions; the server never trusts them, and re-evaluates at removal.
func (p *Provider) policyClaims(r *http.Request, userID string, scopes []string) (map[string]any, error) {
	ctx := r.Context()
	eff, err := authn.EffectivePolicy(ctx, p.o.Store, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"mfa_policy": map[string]any{"require_mfa": eff.RequireMFA, "self_service_removal": eff.AllowSelfServiceRemoval,
		"step_up_max_age": int(eff.StepUpMaxAge.Seconds())}}
	if slices.Contains(scopes, "groups") {
		gs, err := p.o.Store.UserGroups(ctx, userID)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(gs))
		for i, g := range gs {
			names[i] = g.Name
		}
		out["groups"] = names
	}
	return out, nil
}

func (p *Provider) userClaims(u store.User, scopes []string) map[string]any {
	c := map[string]any{"sub": u.ID}
	if slices.Contains(scopes, "profile") {
		c["preferred_username"] = u.Username
		if u.DisplayName != "" {
			c["name"] = u.DisplayName
		}
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		c["email"] = u.Email
		// Latchkey does not verify addresses itself; admins enter them.
		c["email_verified"] = false
	}
	return c
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	iss := p.o.Issuer
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + PathAuthorize,
		"token_endpoint":                                 iss + PathToken,
		"userinfo_endpoint":                              iss + PathUserinfo,
		"jwks_uri":                                       iss + PathJWKS,
		"revocation_endpoint":                            iss + PathRevoke,
		"introspection_endpoint":                         iss + PathIntrospect,
		"end_session_endpoint":                           iss + PathLogout,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          signingAlgs(p.o.Keys.Algorithms(r.Context())),
		"scopes_supported":                               []string{"openid", "profile", "email", "offline_access", "groups", "account", "admin"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported":     []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic"},
		"code_challenge_methods_supported":               []string{"S256"},
		"claims_supported":                               []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash", "preferred_username", "name", "email", "email_verified", "groups", "mfa_policy"},
		"acr_values_supported":                           []string{ACRPassword, ACRMFA},
		"prompt_values_supported":                        []string{"none", "login", "consent"},
		"claims_parameter_supported":                     false,
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"authorization_response_iss_parameter_supported": true,
		"frontchannel_logout_supported":                  false,
		"backchannel_logout_supported":                   false,
	})
}

// signingAlgs is what discovery advertises: the algorithms of the keys in
// use, and RS256, which OpenID Connect Discovery requires to be listed.
func signingAlgs(inUse []string) []string {
	if !slices.Contains(inUse, "RS256") {
		inUse = append(inUse, "RS256")
	}
	return inUse
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short cache: a rotation must reach clients well inside the overlap.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(p.o.Keys.JWKS(r.Context()))
}

// TokenInfo describes a valid access token.
type TokenInfo struct {
	Subject  string
	ClientID string
	Scopes   []string
	AuthTime time.Time
	AMR      []string
	// GrantID is the authorization grant behind the token (stable across
	// refreshes): what a step-up carried by the token is spent as.
	GrantID string
	// StepUp lists the actions the token's interactive re-authentication
	// was made for (RFC 9396 authorization_details); empty otherwise.
	StepUp []string
	// FirstParty: the client is one of the organisation's own.
	FirstParty bool
}

// AccessTokenInfo validates an access token (active, unexpired, not
// revoked) and returns whom it was issued to, for resource servers in the
// same process such as the account and admin APIs. Subject is empty for
// client-credentials tokens.
func (p *Provider) AccessTokenInfo(ctx context.Context, token string) (TokenInfo, error) {
	sess := newSession()
	_, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, sess)
	if err != nil {
		return TokenInfo{}, err
	}
	info := TokenInfo{Subject: ar.GetSession().GetSubject(), ClientID: ar.GetClient().GetID(), Scopes: ar.GetGrantedScopes(), GrantID: ar.GetID()}
	if c, ok := ar.GetClient().(*client); ok {
		info.FirstParty = c.FirstParty
	}
	if s, ok := ar.GetSession().(*openid.DefaultSession); ok && s.Claims != nil {
		info.AuthTime, info.AMR = s.Claims.AuthTime, s.Claims.AuthenticationMethodsReferences
		info.StepUp = stepUpFromClaims(s.Claims.Extra)
	}
	return info, nil
}

// basicChallenge adds RFC 6749 §5.2's WWW-Authenticate to a 401 from an
// endpoint that authenticates clients, where fosite leaves it out.
type basicChallenge struct {
	http.ResponseWriter
	realm string
}

func (w basicChallenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+w.realm+`"`)
	}
	w.ResponseWriter.WriteHeader(code)
}
