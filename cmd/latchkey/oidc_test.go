package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// rp is a relying party built from the real client libraries.
type rp struct {
	t        testing.TB
	srv      *testServer
	client   client
	provider *oidc.Provider
	conf     *oauth2.Config
}

func newRP(t testing.TB, srv *testServer, c client) *rp {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), srv.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &rp{t: t, srv: srv, client: c, provider: p, conf: &oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.Redirect,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}}}
}

// authResult is where the browser was sent back to the application.
type authResult struct {
	Code, State, Error, Iss string
	verifier, nonce         string
}

func (r *rp) authURL(extra ...oauth2.AuthCodeOption) (string, *authResult) {
	res := &authResult{verifier: oauth2.GenerateVerifier(), nonce: authn.RandomToken(8)}
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(res.nonce), oauth2.S256ChallengeOption(res.verifier)}, extra...)
	res.State = authn.RandomToken(8)
	return r.conf.AuthCodeURL(res.State, opts...), res
}

// callback parses the redirect back to the application.
func (r *rp) callback(p page, res *authResult) *authResult {
	r.t.Helper()
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, r.client.Redirect) {
		r.t.Fatalf("want a 303 to the application, got %d to %q (page %s)\n%s", p.Status, p.Location, p.URL, p.Body)
	}
	u, _ := url.Parse(p.Location)
	q := u.Query()
	if q.Get("state") != res.State {
		r.t.Fatalf("state not echoed: %q", q.Get("state"))
	}
	res.Code, res.Error, res.Iss = q.Get("code"), q.Get("error"), q.Get("iss")
	return res
}

// login drives the sign-in pages from an authorization URL to the redirect
// back to the application.
func login(t testing.TB, b *browser, r *rp, authURL string, res *authResult, u user) *authResult {
	t.Helper()
	p := b.get(authURL)
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("want the login page, got %s (%d)\n%s", p.URL, p.Status, p.Body)
	}
	p = b.submit(p, map[string]string{"username": u.Username, "password": u.Password})
	if u.Secret != "" {
		if !strings.HasSuffix(p.URL.Path, "/login/2sv") {
			t.Fatalf("want the 2SV page, got %s (%d)\n%s", p.URL, p.Status, p.Body)
		}
		code, _ := authn.TOTPCode(u.Secret, r.srv.totpNow())
		p = b.submit(p, map[string]string{"code": code})
	}
	return r.callback(p, res)
}

func (r *rp) exchange(res *authResult) (*oauth2.Token, *oidc.IDToken) {
	r.t.Helper()
	ctx := context.Background()
	tok, err := r.conf.Exchange(ctx, res.Code, oauth2.VerifierOption(res.verifier))
	if err != nil {
		r.t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.client.ID}).Verify(ctx, raw)
	if err != nil {
		r.t.Fatalf("verify id token: %v", err)
	}
	if idt.Nonce != res.nonce {
		r.t.Fatalf("nonce: got %q want %q", idt.Nonce, res.nonce)
	}
	return tok, idt
}

type idClaims struct {
	Sub      string   `json:"sub"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
	ACR      string   `json:"acr"`
	SID      string   `json:"sid"`
}

func claimsOf(t testing.TB, idt *oidc.IDToken) idClaims {
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func jwtHeader(t testing.TB, raw string) map[string]any {
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	var m map[string]any
	if err := json.Unmarshal(h, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (s *testServer) introspect(t testing.TB, c client, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %v", resp.StatusCode, out)
	}
	return out
}

func eachBackend(t *testing.T, fn func(t *testing.T, st store.Store)) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open(t)) })
	}
}

// TestAuthorizationCodeFlowEndToEnd is the user story of the provider: a
// relying party signs a user in with password and authenticator code, then
// uses, refreshes, revokes and introspects the tokens.
func TestAuthorizationCodeFlowEndToEnd(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		// Without a grace period a replay is reuse at once (TestRefreshGrace
		// covers the grace).
		srv := startServer(t, st, func(c *config.Config) { c.Tokens.RefreshTokenGracePeriod = 0 })
		alice := srv.createUser(t, "alice", true)
		app := srv.createClient(t, "webapp", false, true)
		r := newRP(t, srv, app)
		b := newBrowser(t, srv.URL)

		authURL, res := r.authURL()
		before := time.Now().Add(-time.Second).Unix()
		res = login(t, b, r, authURL, res, alice)
		if res.Error != "" || res.Code == "" {
			t.Fatalf("no code: %+v", res)
		}
		if res.Iss != srv.URL {
			t.Errorf("RFC 9207 iss: got %q want %q", res.Iss, srv.URL)
		}
		tok, idt := r.exchange(res)
		c := claimsOf(t, idt)
		if c.Sub != alice.ID || idt.Issuer != srv.URL || !slices.Contains(idt.Audience, app.ID) {
			t.Fatalf("claims: %+v iss=%s aud=%v", c, idt.Issuer, idt.Audience)
		}
		if c.AuthTime < before || c.AuthTime > time.Now().Unix()+1 {
			t.Errorf("auth_time %d is not the time of sign-in", c.AuthTime)
		}
		if c.ACR != "aal2" || !slices.Equal(c.AMR, []string{"pwd", "otp", "mfa"}) || c.SID == "" {
			t.Errorf("acr/amr/sid: %+v", c)
		}
		raw, _ := tok.Extra("id_token").(string)
		kid, _ := jwtHeader(t, raw)["kid"].(string)
		if kid == "" || !strings.Contains(string(srv.app.keys.JWKS(ctx)), `"kid":"`+kid+`"`) {
			t.Errorf("kid %q not in JWKS", kid)
		}

		info, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil || info.Subject != alice.ID || info.Email != alice.Email {
			t.Fatalf("userinfo: %v %+v", err, info)
		}

		// Refresh rotates: a new refresh token, and the old one is dead.
		tok2, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken {
			t.Fatalf("refresh did not rotate: %+v", tok2)
		}
		if got := srv.introspect(t, app, tok.AccessToken); got["active"] != false {
			t.Errorf("access token of the rotated grant still active: %v", got)
		}
		if got := srv.introspect(t, app, tok2.AccessToken); got["active"] != true || got["sub"] != alice.ID {
			t.Errorf("new access token inactive: %v", got)
		}
		// Replaying the old refresh token is refused and revokes the family.
		if _, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
			t.Fatal("replayed refresh token was accepted")
		}
		if _, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); err == nil {
			t.Fatal("after reuse detection the newer refresh token must be revoked too")
		}
		if got := srv.introspect(t, app, tok2.AccessToken); got["active"] != false {
			t.Errorf("after reuse detection the access token must be revoked: %v", got)
		}
		evs, err := st.ListTokenEvents(ctx, store.TokenEventFilter{Type: store.TokenReuseDetected})
		// Both presentations of an inactive refresh token are logged: the
		// replay, and the use of the newer token the replay got revoked.
		if err != nil || len(evs) != 2 || evs[0].ClientID != app.ID || evs[0].RequestID != evs[1].RequestID {
			t.Errorf("want two reuse_detected token events for the grant: %v %+v", err, evs)
		}
		issued, _ := st.ListTokenEvents(ctx, store.TokenEventFilter{Type: store.TokenIssued, ClientID: app.ID})
		if len(issued) < 4 {
			t.Errorf("token log: want issued events for 2 access + 2 refresh tokens, got %d", len(issued))
		}

		// A fresh grant, then RFC 7009 revocation and RFC 7662 introspection.
		authURL, res = r.authURL()
		res = r.callback(b.get(authURL), res) // the session signs in silently
		tok3, _ := r.exchange(res)
		if got := srv.introspect(t, app, tok3.AccessToken); got["active"] != true {
			t.Fatalf("fresh token inactive: %v", got)
		}
		form := url.Values{"token": {tok3.AccessToken}, "client_id": {app.ID}, "client_secret": {app.Secret}} // client_secret_post
		resp, err := http.PostForm(srv.URL+"/oauth2/revoke", form)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %v %v", err, resp.Status)
		}
		resp.Body.Close()
		if got := srv.introspect(t, app, tok3.AccessToken); got["active"] != false {
			t.Errorf("revoked token still active: %v", got)
		}
		if _, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok3)); err == nil {
			t.Error("userinfo accepted a revoked token")
		}
		// A user's access token cannot be used to introspect other tokens.
		authURL, res = r.authURL()
		tok4, _ := r.exchange(r.callback(b.get(authURL), res))
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok3.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+tok4.AccessToken)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("introspection with a bearer token: %v %v", err, resp.Status)
		}
	})
}

// TestReauthentication: max_age=0 and prompt=login each force a new
// password and TOTP sign-in, and auth_time moves forward; prompt=none without
// a session answers login_required.
func TestReauthentication(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		bob := srv.createUser(t, "bob", true)
		app := srv.createClient(t, "portal", true, true)
		r := newRP(t, srv, app)

		// prompt=none without a session.
		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL(oauth2.SetAuthURLParam("prompt", "none"))
		res = r.callback(b.get(authURL), res)
		if res.Error != "login_required" || res.Code != "" {
			t.Fatalf("prompt=none without session: %+v", res)
		}

		authURL, res = r.authURL()
		_, idt := r.exchange(login(t, b, r, authURL, res, bob))
		first := claimsOf(t, idt).AuthTime

		for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "0"), oauth2.SetAuthURLParam("prompt", "login")} {
			// auth_time has one-second resolution; the TOTP step must also
			// change, since a code is single-use.
			time.Sleep(1100 * time.Millisecond)
			srv.nextTOTPStep()
			authURL, res := r.authURL(opt)
			_, idt := r.exchange(login(t, b, r, authURL, res, bob))
			c := claimsOf(t, idt)
			if c.AuthTime <= first {
				t.Fatalf("auth_time did not move forward: %d <= %d", c.AuthTime, first)
			}
			if c.ACR != "aal2" {
				t.Fatalf("re-authentication must include the second factor: %+v", c)
			}
			first = c.AuthTime
		}

		// With a fresh session and max_age large enough, no login page.
		authURL, res = r.authURL(oauth2.SetAuthURLParam("max_age", "3600"))
		res = r.callback(b.get(authURL), res)
		if res.Code == "" {
			t.Fatalf("max_age satisfied, want a code: %+v", res)
		}
	})
}

func TestClientCredentialsAndKeyRotation(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		// Keys re-read every second: a new key signs two seconds after
		// its rotation.
		srv := startServer(t, st, func(c *config.Config) { c.Keys.RefreshInterval = config.Duration(time.Second) })
		svc := srv.createClient(t, "svc", false, true, "client_credentials")
		cc := clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: srv.URL + "/oauth2/token", Scopes: []string{"profile"}}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client credentials: %v", err)
		}
		if got := srv.introspect(t, svc, tok.AccessToken); got["active"] != true || got["client_id"] != svc.ID {
			t.Fatalf("introspect: %v", got)
		}
		bad := cc
		bad.ClientSecret = svc.Secret[:len(svc.Secret)-1] + "x"
		if _, err := bad.Token(ctx); err == nil {
			t.Fatal("wrong client secret accepted")
		}
		// Operations: metrics count grants by type and outcome; readiness
		// checks the database.
		metrics := newBrowser(t, srv.URL).get(srv.URL + "/metrics").Body
		for _, want := range []string{`latchkey_token_grants_total{grant_type="client_credentials",outcome="ok"} 1`,
			`latchkey_token_grants_total{grant_type="client_credentials",outcome="error"} 1`, `latchkey_http_requests_total{method="POST",route="/oauth2/token",status="200"} 1`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if p := newBrowser(t, srv.URL).get(srv.URL + "/health/ready"); p.Status != http.StatusOK {
			t.Errorf("ready: %d", p.Status)
		}
		// Cleanup removes rows that expired over an hour ago, and nothing else.
		old := store.TokenRecord{Kind: store.KindAccessToken, Signature: "expired-sig", RequestID: "r", ClientID: svc.ID, Active: true,
			RequestedAt: time.Now().Add(-3 * time.Hour), ExpiresAt: time.Now().Add(-2 * time.Hour), Session: []byte("{}")}
		if err := st.CreateToken(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := srv.app.provider.Cleanup(ctx, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetToken(ctx, store.KindAccessToken, "expired-sig"); err == nil {
			t.Error("expired token survived cleanup")
		}
		if got := srv.introspect(t, svc, tok.AccessToken); got["active"] != true {
			t.Error("cleanup removed a live token")
		}

		// Key rotation: an ID token signed before rotation still verifies.
		carol := srv.createUser(t, "carol", false)
		app := srv.createClient(t, "rot", false, true)
		r := newRP(t, srv, app)
		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		tok1, _ := r.exchange(login(t, b, r, authURL, res, carol))
		raw1, _ := tok1.Extra("id_token").(string)
		kid1 := jwtHeader(t, raw1)["kid"]
		if _, err := srv.app.keys.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		r2 := newRP(t, srv, app) // a relying party that fetches the JWKS after rotation
		if _, err := r2.provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, raw1); err != nil {
			t.Fatalf("token signed before rotation no longer verifies: %v", err)
		}
		signedBy := func() any {
			authURL, res := r2.authURL()
			tok, _ := r2.exchange(r2.callback(b.get(authURL), res))
			raw, _ := tok.Extra("id_token").(string)
			return jwtHeader(t, raw)["kid"]
		}
		if kid := signedBy(); kid != kid1 {
			t.Fatalf("right after rotation the new key is only published; it signed (kid %v)", kid)
		}
		time.Sleep(2100 * time.Millisecond)
		if kid2 := signedBy(); kid2 == kid1 {
			t.Fatalf("after its start tokens must be signed with the new key (kid %v)", kid2)
		}
	})
}
