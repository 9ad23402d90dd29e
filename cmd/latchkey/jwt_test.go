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
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// jwtClient switches a registered client to RFC 9068 access tokens.
func (s *testServer) jwtClient(t testing.TB, id string) {
	t.Helper()
	ctx := context.Background()
	c, err := s.app.store.GetClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	c.AccessTokenFormat = store.AccessTokensJWT
	err = s.app.store.InTx(ctx, func(q store.Queries) error {
		if err := q.DeleteClient(ctx, id); err != nil {
			return err
		}
		return q.CreateClient(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func jwtPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJWTAccessTokens: a client registered for JWT access tokens gets
// RFC 9068 tokens (typ at+jwt, verifiable with the published JWKS by any
// resource server, the claims of the profile); Latchkey's own endpoints
// (introspection, userinfo, the account API) accept them; revocation makes
// one inactive; a forged one, one signed by another key and an ID token
// presented as an access token are refused. Opaque clients are unchanged.
func TestJWTAccessTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ctx := context.Background()
		robot := srv.createClient(t, "robot", false, true, "client_credentials")
		srv.jwtClient(t, "robot")
		cc := clientcredentials.Config{ClientID: robot.ID, ClientSecret: robot.Secret, TokenURL: srv.URL + "/oauth2/token", Scopes: []string{"openid"}}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		keys := oidc.NewRemoteKeySet(ctx, srv.URL+"/.well-known/jwks.json")
		payload, err := keys.VerifySignature(ctx, tok.AccessToken)
		if err != nil {
			t.Fatalf("a resource server cannot verify the token with the JWKS: %v", err)
		}
		var c struct {
			Iss, Sub, ClientID, Scope, Jti string
			Aud                            []string
			Iat, Exp                       int64
		}
		_ = json.Unmarshal(payload, &c)
		var raw map[string]any
		_ = json.Unmarshal(payload, &raw)
		c.ClientID, _ = raw["client_id"].(string)
		if h := jwtPart(t, tok.AccessToken, 0); h["typ"] != "at+jwt" || h["kid"] == nil {
			t.Errorf("header: %v", h)
		}
		if c.Iss != srv.URL || c.Sub != robot.ID || c.ClientID != robot.ID || !slices.Equal(c.Aud, []string{robot.ID}) || c.Scope != "openid" ||
			len(c.Jti) < 16 || c.Exp-c.Iat != int64(time.Hour/time.Second) {
			t.Errorf("claims: %s", payload)
		}
		if got := srv.introspect(t, robot, tok.AccessToken); got["active"] != true || got["client_id"] != robot.ID {
			t.Fatalf("introspection of a JWT access token: %v", got)
		}
		// A second token is another JWT (jti differs).
		tok2, _ := cc.Token(ctx)
		if tok2.AccessToken == tok.AccessToken || jwtPart(t, tok2.AccessToken, 1)["jti"] == c.Jti {
			t.Fatal("two grants share a token or jti")
		}
		// Revoked: inactive at introspection, also once its signature
		// check is remembered (verified-token cache): revocation is read
		// every time.
		if got := srv.introspect(t, robot, tok2.AccessToken); got["active"] != true {
			t.Fatalf("introspection of the second JWT: %v", got)
		}
		form := url.Values{"token": {tok2.AccessToken}}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/revoke", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(robot.ID, robot.Secret)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %v %v", err, resp)
		}
		if got := srv.introspect(t, robot, tok2.AccessToken); got["active"] != false {
			t.Fatalf("a revoked JWT is still active: %v", got)
		}
		// Client-credentials JWTs are not stored; the token log has each
		// grant once its batch is written.
		srv.app.provider.FlushTokenLog()
		evs, err := st.ListTokenEvents(ctx, store.TokenEventFilter{ClientID: robot.ID, Limit: 10})
		if err != nil || len(evs) != 2 || evs[0].Type != store.TokenIssued || evs[0].GrantType != "client_credentials" ||
			evs[1].RequestID != jwtPart(t, tok2.AccessToken, 1)["jti"] {
			t.Fatalf("token log of stateless grants: %v %+v", err, evs)
		}
		revoked, _ := st.ListTokenEvents(ctx, store.TokenEventFilter{Type: store.TokenRevoked, Limit: 10})
		if len(revoked) != 1 || revoked[0].RequestID != evs[1].RequestID {
			t.Fatalf("the revocation is logged under the token's jti: %+v", revoked)
		}
		// Another client cannot revoke it; a revocation outlives nothing
		// but the token (the deny list entry expires with it).
		other := srv.createClient(t, "other", false, true, "client_credentials")
		req, _ = http.NewRequest(http.MethodPost, srv.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(other.ID, other.Secret)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		if got := srv.introspect(t, robot, tok.AccessToken); got["active"] != true {
			t.Fatalf("another client revoked the token: %v", got)
		}
		// Forged: the payload changed (sub), the signature kept.
		parts := strings.Split(tok.AccessToken, ".")
		forged := jwtPart(t, tok.AccessToken, 1)
		forged["scope"] = "openid admin"
		fp, _ := json.Marshal(forged)
		bad := parts[0] + "." + base64.RawURLEncoding.EncodeToString(fp) + "." + parts[2]
		if got := srv.introspect(t, robot, bad); got["active"] != false {
			t.Fatalf("a forged JWT is active: %v", got)
		}

		// A user's token: sub, auth_time, acr, amr; accepted by userinfo.
		ivy := srv.createUser(t, "ivy", true)
		app := srv.createClient(t, "app", false, true)
		srv.jwtClient(t, "app")
		r := newRP(t, srv, app)
		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		utok, _ := r.exchange(login(t, b, r, authURL, res, ivy))
		uc := jwtPart(t, utok.AccessToken, 1)
		if uc["sub"] != ivy.ID || uc["client_id"] != "app" || uc["acr"] != "aal2" || uc["auth_time"] == nil || uc["amr"] == nil {
			t.Errorf("user token claims: %v", uc)
		}
		if _, err := r.provider.UserInfo(ctx, oauth2StaticSource(utok)); err != nil {
			t.Fatalf("userinfo with a JWT access token: %v", err)
		}
		// The account API takes one too.
		mobile := srv.accountClient(t, "mobile", true)
		srv.jwtClient(t, "mobile")
		mr := newRP(t, srv, mobile)
		mr.conf.Scopes = []string{"openid", "account"}
		mtok, _ := signInTo(t, newBrowser(t, srv.URL), mr, ivy)
		if strings.Count(mtok.AccessToken, ".") != 2 {
			t.Fatalf("not a JWT: %q", mtok.AccessToken)
		}
		if got := b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(mtok.AccessToken)); got.Status != http.StatusOK || got.state() != "mfa_active" {
			t.Fatalf("account API with a JWT access token: %d %v", got.Status, got.Body)
		}
		// An ID token is not an access token.
		rawID, _ := utok.Extra("id_token").(string)
		if got := srv.introspect(t, app, rawID); got["active"] != false {
			t.Fatalf("an ID token introspects as an access token: %v", got)
		}
		// Opaque clients are unchanged.
		plain := srv.createClient(t, "plain", false, true, "client_credentials")
		ptok, err := (&clientcredentials.Config{ClientID: plain.ID, ClientSecret: plain.Secret, TokenURL: srv.URL + "/oauth2/token"}).Token(ctx)
		if err != nil || strings.Count(ptok.AccessToken, ".") != 1 {
			t.Fatalf("opaque token: %v %q", err, ptok.AccessToken)
		}
	})
}

// TestJWTAdminAutomation: an automation client registered through the
// admin API for JWT access tokens calls the admin API with a stateless
// token; once revoked, the token is refused there too.
func TestJWTAdminAutomation(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	created := f.call(t, f.adminToken, "POST", "/admin/clients", map[string]any{"name": "Robot", "first_party": true,
		"grant_types": []string{"client_credentials"}, "scopes": []string{"admin"}, "access_token_format": "jwt"})
	if created.Status != http.StatusCreated || created.Body["access_token_format"] != "jwt" {
		t.Fatalf("create: %d %v", created.Status, created.Body)
	}
	tok := clientToken(t, f, created, "admin")
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("not a JWT: %q", tok)
	}
	if r := f.call(t, tok, "GET", "/admin/users", nil); r.Status != http.StatusOK {
		t.Fatalf("admin API with a stateless JWT: %d %v", r.Status, r.Body)
	}
	id, secret := created.Body["client_id"].(string), created.Body["client_secret"].(string)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %v", err)
	}
	if r := f.call(t, tok, "GET", "/admin/users", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("a revoked JWT on the admin API: %d", r.Status)
	}
}
