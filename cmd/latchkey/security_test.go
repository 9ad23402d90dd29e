package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
)

// toLogin starts an authorization request and returns the login page.
func toLogin(t testing.TB, b *browser, r *rp) page {
	t.Helper()
	authURL, _ := r.authURL()
	p := b.get(authURL)
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("want login page, got %s", p.URL)
	}
	return p
}

func TestSecondFactorWrongAndReplayedCodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		dave := srv.createUser(t, "dave", true)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))

		// First sign-in uses the current code.
		b1 := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		if res = login(t, b1, r, authURL, res, dave); res.Code == "" {
			t.Fatalf("first sign-in failed: %+v", res)
		}
		used, _ := authn.TOTPCode(dave.Secret, srv.totpNow())

		b2 := newBrowser(t, srv.URL)
		p := b2.submit(toLogin(t, b2, r), map[string]string{"username": dave.Username, "password": dave.Password})
		for name, code := range map[string]string{"wrong": wrongCode(used), "replayed": used, "malformed": "12ab56"} {
			got := b2.submit(p, map[string]string{"code": code})
			if got.Status != http.StatusUnauthorized || !strings.HasSuffix(got.URL.Path, "/login/2sv") || got.Location != "" {
				t.Fatalf("%s code: want 401 on the 2SV page, got %d %s -> %q", name, got.Status, got.URL, got.Location)
			}
			if !strings.Contains(bannerText(got.Body), "code did not work") {
				t.Fatalf("%s code: no clear error: %q", name, bannerText(got.Body))
			}
		}
		// A recovery code works once.
		got := b2.submit(p, map[string]string{"code": dave.Recovery[0]})
		if got.Status != http.StatusSeeOther || got.Location == "" {
			t.Fatalf("recovery code refused: %d %s", got.Status, got.URL)
		}
		b3 := newBrowser(t, srv.URL)
		p = b3.submit(toLogin(t, b3, r), map[string]string{"username": dave.Username, "password": dave.Password})
		if got := b3.submit(p, map[string]string{"code": dave.Recovery[0]}); got.Status != http.StatusUnauthorized {
			t.Fatalf("used recovery code accepted again: %d", got.Status)
		}
	})
}

func wrongCode(c string) string {
	b := []byte(c)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// TestLockoutSharedAcrossInstances: failures counted by one server lock the
// account on another server using the same PostgreSQL database.
// openPool opens a pool of its own on the PostgreSQL database dsn: one
// replica's view of a shared database.
func openPool(t testing.TB, dsn string) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestLockoutSharedAcrossInstances(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	a := startServer(t, openPool(t, dsn))
	b := startServer(t, openPool(t, dsn))
	erin := a.createUser(t, "erin", false)
	a.createClient(t, "app", false, true)
	rpA := newRP(t, a, client{ID: "app", Redirect: "http://127.0.0.1:9/app/callback"})
	rpB := newRP(t, b, client{ID: "app", Redirect: "http://127.0.0.1:9/app/callback"})

	threshold := config.Defaults().Lockout.AccountThreshold
	for i := 0; i < threshold; i++ {
		br := newBrowser(t, a.URL)
		got := br.submit(toLogin(t, br, rpA), map[string]string{"username": "ERIN", "password": "wrong password"})
		if got.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: want 401, got %d", i, got.Status)
		}
	}
	br := newBrowser(t, b.URL)
	got := br.submit(toLogin(t, br, rpB), map[string]string{"username": erin.Username, "password": erin.Password})
	if got.Status != http.StatusTooManyRequests || !strings.Contains(bannerText(got.Body), "Too many failed attempts") {
		t.Fatalf("correct password on the other instance during lockout: want 429, got %d %q", got.Status, bannerText(got.Body))
	}
	// An unknown username locks the same way, so lockout does not reveal
	// which accounts exist.
	for i := 0; i <= threshold; i++ {
		br := newBrowser(t, a.URL)
		got = br.submit(toLogin(t, br, rpA), map[string]string{"username": "nobody", "password": "x"})
	}
	if got.Status != http.StatusTooManyRequests {
		t.Fatalf("unknown user: want the same lockout, got %d", got.Status)
	}
}

func TestNoUserEnumeration(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	srv.createUser(t, "frank", true)
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	attempt := func(username, password string) page {
		b := newBrowser(t, srv.URL)
		return b.submit(toLogin(t, b, r), map[string]string{"username": username, "password": password})
	}
	unknown, wrong := attempt("nosuchuser", "guess-1"), attempt("frank", "guess-1")
	if unknown.Status != wrong.Status || bannerText(unknown.Body) != bannerText(wrong.Body) || unknown.URL.Path != wrong.URL.Path {
		t.Fatalf("responses differ: %d %q vs %d %q", unknown.Status, bannerText(unknown.Body), wrong.Status, bannerText(wrong.Body))
	}
	normalize := func(p page, user string) string {
		_, fields, _ := parseForm(p.Body)
		s := strings.ReplaceAll(p.Body, user, "USER")
		for _, k := range []string{"csrf_token", "flow"} {
			s = strings.ReplaceAll(s, fields.Get(k), k)
		}
		return s
	}
	if normalize(unknown, "nosuchuser") != normalize(wrong, "frank") {
		t.Fatal("unknown-user and wrong-password pages differ beyond the echoed username")
	}
}

func TestAuthorizeRequestValidation(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	app := srv.createClient(t, "app", false, true)
	spa := srv.createClient(t, "spa", true, true)
	b := newBrowser(t, srv.URL)

	base := url.Values{"response_type": {"code"}, "scope": {"openid"}, "state": {"state-123456"}, "client_id": {app.ID}}
	with := func(kv ...string) string {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return srv.URL + "/oauth2/auth?" + q.Encode()
	}
	for name, u := range map[string]string{
		"unregistered redirect":  with("redirect_uri", "http://127.0.0.1:9/evil/callback"),
		"redirect prefix match":  with("redirect_uri", app.Redirect+"/extra"),
		"redirect with query":    with("redirect_uri", app.Redirect+"?x=1"),
		"unknown client":         with("client_id", "nope", "redirect_uri", app.Redirect),
		"implicit response type": with("response_type", "token", "redirect_uri", "http://127.0.0.1:9/evil/callback"),
	} {
		p := b.get(u)
		if p.Status < 400 || p.Location != "" || !strings.Contains(p.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: want an error page and no redirect, got %d Location=%q", name, p.Status, p.Location)
		}
	}
	// A public client must use PKCE (S256); the error goes back to the
	// registered redirect URI, before any password is asked for.
	for name, u := range map[string]string{
		"no pkce":    with("client_id", spa.ID, "redirect_uri", spa.Redirect),
		"plain pkce": with("client_id", spa.ID, "redirect_uri", spa.Redirect, "code_challenge", strings.Repeat("a", 43), "code_challenge_method", "plain"),
	} {
		p := b.get(u)
		loc, _ := url.Parse(p.Location)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, spa.Redirect) || loc.Query().Get("error") != "invalid_request" {
			t.Errorf("%s: want invalid_request at the redirect URI, got %d %q", name, p.Status, p.Location)
		}
	}
	// The implicit flow is refused for a registered redirect too.
	p := b.get(with("response_type", "id_token token", "redirect_uri", app.Redirect, "nonce", "nonce-123456"))
	if loc, _ := url.Parse(p.Location); p.Status != http.StatusSeeOther || loc.Query().Get("error") == "" && !strings.Contains(loc.Fragment, "error=") {
		t.Errorf("implicit flow: want an error, got %d %q", p.Status, p.Location)
	}
	// The password grant does not exist.
	resp, err := http.PostForm(srv.URL+"/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {"y"},
		"client_id": {app.ID}, "client_secret": {app.Secret}})
	if err != nil || resp.StatusCode < 400 {
		t.Errorf("password grant: want an error, got %v %v", err, resp.Status)
	}
}

func TestCSRFProtectsLoginForm(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		gina := srv.createUser(t, "gina", false)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))
		b := newBrowser(t, srv.URL)
		p := toLogin(t, b, r)
		_, fields, _ := parseForm(p.Body)
		fields.Set("username", gina.Username)
		fields.Set("password", gina.Password)
		for name, token := range map[string]string{"missing": "", "forged": strings.Repeat("A", 43)} {
			f := url.Values{}
			for k, v := range fields {
				f[k] = v
			}
			f.Set("csrf_token", token)
			got := b.post(srv.URL+"/login", f)
			if got.Status != http.StatusForbidden || got.Location != "" {
				t.Fatalf("%s CSRF token: want 403, got %d", name, got.Status)
			}
		}
		// Nothing changed: no session was created, so the next authorization
		// request still asks for a password.
		u, _ := url.Parse(srv.URL)
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "latchkey_session" {
				t.Fatal("a session cookie was set by a request without a valid CSRF token")
			}
		}
		toLogin(t, b, r)

		// A flow started in one browser cannot be completed from another
		// (login CSRF with the attacker's own flow).
		attacker := newBrowser(t, srv.URL)
		ap := toLogin(t, attacker, r)
		_, af, _ := parseForm(ap.Body)
		victim := newBrowser(t, srv.URL)
		vp := toLogin(t, victim, r)
		_, vf, _ := parseForm(vp.Body)
		vf.Set("flow", af.Get("flow"))
		vf.Set("username", gina.Username)
		vf.Set("password", gina.Password)
		if got := victim.post(srv.URL+"/login", vf); got.Status != http.StatusBadRequest {
			t.Fatalf("foreign flow: want 400, got %d", got.Status)
		}
	})
}

func TestConsentAndLogout(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	hank := srv.createUser(t, "hank", false)
	third := srv.createClient(t, "thirdparty", false, false)
	r := newRP(t, srv, third)
	b := newBrowser(t, srv.URL)

	authURL, res := r.authURL()
	p := b.get(authURL)
	p = b.submit(p, map[string]string{"username": hank.Username, "password": hank.Password})
	if !strings.Contains(p.Body, "Allow App thirdparty?") {
		t.Fatalf("want the consent page, got %d %s\n%s", p.Status, p.URL, p.Body)
	}
	_, f, _ := parseForm(p.Body)
	f.Set("decision", "deny")
	res = r.callback(b.post(srv.URL+"/oauth2/consent", f), res)
	if res.Error != "access_denied" {
		t.Fatalf("deny: want access_denied, got %+v", res)
	}
	authURL, res = r.authURL()
	p = b.get(authURL)
	_, f, _ = parseForm(p.Body)
	f.Set("decision", "allow")
	res = r.callback(b.post(srv.URL+"/oauth2/consent", f), res)
	tok, _ := r.exchange(res)
	// Consent is remembered for the same scopes.
	authURL, res = r.authURL()
	if res = r.callback(b.get(authURL), res); res.Code == "" {
		t.Fatalf("remembered consent: %+v", res)
	}

	// RP-initiated logout with the ID token of this session: immediate, and
	// only to a registered post-logout URI.
	raw, _ := tok.Extra("id_token").(string)
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {"http://127.0.0.1:9/evil"}, "state": {"s1"}}
	if got := b.get(srv.URL + "/oauth2/logout?" + q.Encode()); got.Status != http.StatusBadRequest || got.Location != "" {
		t.Fatalf("unregistered post-logout URI: want 400, got %d %q", got.Status, got.Location)
	}
	q.Set("post_logout_redirect_uri", "http://127.0.0.1:9/thirdparty/bye")
	got := b.get(srv.URL + "/oauth2/logout?" + q.Encode())
	if got.Status != http.StatusSeeOther || got.Location != "http://127.0.0.1:9/thirdparty/bye?state=s1" {
		t.Fatalf("logout: got %d %q", got.Status, got.Location)
	}
	// Signed out: the next request asks for a password again.
	toLogin(t, b, r)
	// Without a hint, logout asks for confirmation (a link alone cannot
	// sign anyone out) and the confirmation is CSRF-protected.
	got = b.get(srv.URL + "/oauth2/logout")
	if got.Status != http.StatusOK || !strings.Contains(got.Body, "Sign out?") {
		t.Fatalf("logout without hint: %d", got.Status)
	}
	if got := b.post(srv.URL+"/oauth2/logout", url.Values{}); got.Status != http.StatusForbidden {
		t.Fatalf("logout POST without CSRF: want 403, got %d", got.Status)
	}
}

// TestFailedSignInsAggregated: a flood of failed sign-ins for one name
// (locked or not) adds a logarithmic number of audit events, each with the
// count so far, instead of one per attempt; the cleanup job forgets the
// counters once idle.
func TestFailedSignInsAggregated(t *testing.T) {
	srv := startServer(t, testdbSQLite(t), func(c *config.Config) { c.Lockout.IPThreshold = 99 })
	ctx := context.Background()
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	b := newBrowser(t, srv.URL)
	page := toLogin(t, b, r)
	for i := 0; i < 40; i++ {
		b.submit(page, map[string]string{"username": "nobody", "password": "wrong password"})
	}
	evs, err := srv.app.store.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "auth.login.failed", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || len(evs) > 12 {
		t.Fatalf("40 failures gave %d events; want a handful", len(evs))
	}
	last := map[string]any{}
	if err := json.Unmarshal([]byte(evs[len(evs)-1].Details), &last); err != nil {
		t.Fatal(err)
	}
	if n, _ := last["failures_in_window"].(float64); n < 16 {
		t.Fatalf("the newest event carries the count so far: %v", last)
	}
	if _, err := srv.app.store.DeleteExpiredTokens(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, err := srv.app.store.GetAttempt(ctx, "audit:password:name:nobody:locked"); err == nil {
		t.Fatalf("idle counters are pruned: %+v", a)
	}
}
