package main

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/authn"
)

// The demo application is a minimal relying party served by the dev server
// itself at /demo, so a newcomer can watch a full sign-in (password, then
// authenticator code) without writing a client. It is mounted in dev mode
// only and is an ordinary OIDC client: public, PKCE, state and nonce.

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo application · Latchkey dev mode</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="card wide"><header class="brand"><span class="logo">◆</span> Demo application (dev mode only)</header>
{{if .Claims}}<h1>Signed in</h1><p class="banner ok">Latchkey signed you in. These are the verified ID token claims:</p>
<pre>{{.Claims}}</pre><a class="button secondary" href="{{.Logout}}">Sign out</a>
{{else}}<h1>Demo application</h1><p class="lead">An example application that signs its users in through Latchkey.</p>
{{if .Error}}<p class="banner error">{{.Error}}</p>{{end}}
<a class="button" href="/demo/login">Sign in with Latchkey</a>{{end}}
</main></body></html>`))

func (a *app) demoOAuth() *oauth2.Config {
	iss := a.cfg.Issuer
	return &oauth2.Config{ClientID: demoClientID, RedirectURL: iss + "/demo/callback",
		Endpoint: oauth2.Endpoint{AuthURL: iss + "/oauth2/auth", TokenURL: iss + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{oidc.ScopeOpenID, "profile", "email"}}
}

func (a *app) mountDemo() {
	cookie := func(w http.ResponseWriter, name, value string) {
		http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/demo", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	}
	a.router.Get("/demo", func(w http.ResponseWriter, r *http.Request) {
		_ = demoPage.Execute(w, map[string]any{"Error": r.URL.Query().Get("error_description")})
	})
	a.router.Get("/demo/login", func(w http.ResponseWriter, r *http.Request) {
		state, nonce, verifier := authn.RandomToken(16), authn.RandomToken(16), oauth2.GenerateVerifier()
		cookie(w, "demo_state", state)
		cookie(w, "demo_nonce", nonce)
		cookie(w, "demo_verifier", verifier)
		http.Redirect(w, r, a.demoOAuth().AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
	})
	a.router.Get("/demo/callback", func(w http.ResponseWriter, r *http.Request) {
		fail := func(msg string) { _ = demoPage.Execute(w, map[string]any{"Error": msg}) }
		state, err1 := r.Cookie("demo_state")
		nonce, err2 := r.Cookie("demo_nonce")
		verifier, err3 := r.Cookie("demo_verifier")
		if err1 != nil || err2 != nil || err3 != nil || r.URL.Query().Get("state") != state.Value {
			fail("The sign-in response did not match a request from this browser.")
			return
		}
		if e := r.URL.Query().Get("error"); e != "" {
			fail("Sign-in failed: " + e)
			return
		}
		ctx := r.Context()
		tok, err := a.demoOAuth().Exchange(ctx, r.URL.Query().Get("code"), oauth2.VerifierOption(verifier.Value))
		if err != nil {
			fail("Code exchange failed.")
			return
		}
		prov, err := oidc.NewProvider(ctx, a.cfg.Issuer)
		if err != nil {
			fail("Discovery failed.")
			return
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := prov.Verifier(&oidc.Config{ClientID: demoClientID}).Verify(ctx, raw)
		if err != nil || idt.Nonce != nonce.Value {
			fail("The ID token did not verify.")
			return
		}
		var claims map[string]any
		_ = idt.Claims(&claims)
		pretty, _ := json.MarshalIndent(claims, "", "  ")
		_ = demoPage.Execute(w, map[string]any{"Claims": string(pretty),
			"Logout": a.cfg.Issuer + "/oauth2/logout?id_token_hint=" + url.QueryEscape(raw) + "&post_logout_redirect_uri=" + url.QueryEscape(a.cfg.Issuer+"/demo")})
	})
}
