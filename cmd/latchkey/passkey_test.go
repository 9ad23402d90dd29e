package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/store"
)

// addPasskey registers a software security key for u (test setup, as the
// portal's add flow would).
func (s *testServer) addPasskey(t *testing.T, u user) *webauthntest.Key {
	t.Helper()
	ctx := context.Background()
	host, _ := url.Parse(s.URL)
	key := webauthntest.New(host.Hostname(), s.URL)
	key.Handle = []byte(u.ID)
	pk := s.app.authn.Passkeys()
	if pk == nil {
		t.Fatal("passkeys are off on the test server")
	}
	id, opts, err := pk.BeginRegistration(ctx, s.app.store, u.User, "test")
	if err != nil {
		t.Fatal(err)
	}
	answer, err := key.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pk.FinishRegistration(ctx, s.app.store, u.User, id, "test", "Test key", answer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.app.store.CreateWebAuthnCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	return key
}

// beginCeremony asks path for a WebAuthn challenge, as the pages' script
// does.
func beginCeremony(t *testing.T, b *browser, path string, form url.Values) (begin struct {
	Ceremony string          `json:"ceremony"`
	Options  json.RawMessage `json:"options"`
}) {
	t.Helper()
	resp, err := b.c.PostForm(b.issuer+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&begin); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("begin %s: %d %v", path, resp.StatusCode, err)
	}
	return begin
}

// passkeyStep answers the second-factor page p with key, as the page's
// script does: ask for a challenge, let the authenticator sign, post the
// form.
func passkeyStep(t *testing.T, b *browser, p page, key *webauthntest.Key) page {
	t.Helper()
	if !strings.Contains(p.Body, `id="passkey-form"`) {
		t.Fatalf("no passkey option on the second-factor page:\n%s", p.Body)
	}
	_, fields, _, err := parseFormFull(p.Body, "/login/2sv/passkey")
	if err != nil {
		t.Fatal(err)
	}
	begin := beginCeremony(t, b, "/login/2sv/passkey/begin", url.Values{"flow": fields["flow"], "csrf_token": fields["csrf_token"]})
	answer, err := key.Get(begin.Options)
	if err != nil {
		t.Fatal(err)
	}
	return b.submitForm(p, "/login/2sv/passkey", map[string]string{"ceremony": begin.Ceremony, "credential": string(answer)})
}

// TestPasskeySignIn: after the password, a registered security key is the
// second factor; amr says how (RFC 8176) and acr is aal2. A replayed
// answer, a cloned key and a key of another account are refused, and the
// TOTP code still works beside it. Both stores.
func TestPasskeySignIn(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st, onLocalhost)
		ivy := srv.createUser(t, "ivy", true)
		key := srv.addPasskey(t, ivy)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))

		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		p := b.submit(b.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		if !strings.HasSuffix(p.URL.Path, "/login/2sv") || !strings.Contains(p.Body, "authenticator app") {
			t.Fatalf("second step: %s\n%s", p.URL, p.Body)
		}
		tok, idt := r.exchange(r.callback(passkeyStep(t, b, p, key), res))
		c := claimsOf(t, idt)
		if c.ACR != "aal2" || !slices.Equal(c.AMR, []string{"pwd", "hwk", "user", "mfa"}) || tok.AccessToken == "" {
			t.Fatalf("claims after a security key: %+v", c)
		}

		// A clone of the key (its counter behind) is refused.
		b2 := newBrowser(t, srv.URL)
		authURL, _ = r.authURL()
		p = b2.submit(b2.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		key.Count = 0
		if got := passkeyStep(t, b2, p, key); got.Status != http.StatusUnauthorized || !strings.Contains(got.Body, "could not be verified") {
			t.Fatalf("cloned key: %d\n%s", got.Status, got.Body)
		}
		// Another account's key is refused at ivy's sign-in.
		eve := srv.createUser(t, "eve", true)
		eveKey := srv.addPasskey(t, eve)
		eveKey.Handle = []byte(ivy.ID)
		p = b2.submit(b2.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		if got := passkeyStep(t, b2, p, eveKey); got.Status != http.StatusUnauthorized {
			t.Fatalf("another account's key: %d", got.Status)
		}
		// A challenge cannot be answered from another sign-in flow: the
		// begin endpoint refuses without this flow's password step.
		resp, err := http.PostForm(srv.URL+"/login/2sv/passkey/begin", url.Values{"flow": {"login_nope"}})
		if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("begin without a flow: %v %d", err, resp.StatusCode)
		}
		resp.Body.Close()
	})
}

// portalPasskeyForm answers the security page's key form (data-mode
// "create") with key, as the page's script does.
func portalPasskeyForm(t *testing.T, b *browser, p page, key *webauthntest.Key, name string) page {
	t.Helper()
	_, fields, _, err := parseFormFull(p.Body, "/account/security/passkeys/finish")
	if err != nil || !strings.Contains(p.Body, `data-mode="create"`) {
		t.Fatalf("no key form on the security page: %v\n%s", err, p.Body)
	}
	begin := beginCeremony(t, b, "/account/security/passkeys/begin", url.Values{"csrf_token": fields["csrf_token"]})
	answer, err := key.Create(begin.Options)
	if err != nil {
		t.Fatal(err)
	}
	return b.submitForm(p, "/account/security/passkeys/finish", map[string]string{"ceremony": begin.Ceremony, "credential": string(answer), "name": name})
}

// TestPortalPasskeys: in the account portal a user adds a security key
// after a step-up made for it, sees both methods, removes the TOTP app
// (a change of method: allowed after its own step-up even though removing
// 2SV is admin-only for them), and cannot remove the last method that way.
func TestPortalPasskeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st, onLocalhost)
		ivy := srv.createUser(t, "ivy", true)
		srv.policyGroup(t, "Staff", false, ivy) // removal of 2SV is admin-only
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, ivy)

		p := b.post(srv.URL+"/account/security/passkeys/add", url.Values{"csrf_token": {csrfToken(t, b, srv)}})
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("adding a key must ask for a new sign-in first, got %s", p.URL)
		}
		p = finishLogin(t, b, srv, p, ivy)
		host, _ := url.Parse(srv.URL)
		key := webauthntest.New(host.Hostname(), srv.URL)
		key.Handle = []byte(ivy.ID)
		p = portalPasskeyForm(t, b, p, key, "Desk key")
		if !strings.Contains(p.Body, "was added") || !strings.Contains(p.Body, "Desk key") || !strings.Contains(p.Body, "Authenticator app") {
			t.Fatalf("after adding: %d %s\n%s", p.Status, p.URL, p.Body)
		}
		if n := auditCount(t, srv, "mfa.webauthn.registered", ivy.ID); n != 1 {
			t.Fatalf("registered events: %d", n)
		}
		// The step-up was spent: the key form is gone until a new one.
		if p := b.get(srv.URL + "/account/security?confirm=add_method"); strings.Contains(p.Body, `data-mode="create"`) {
			t.Fatal("a spent step-up still shows the key form")
		}

		// The TOTP app goes; the key stays and signs in.
		csrf := csrfToken(t, b, srv)
		p = b.post(srv.URL+"/account/security/methods/totp/remove", url.Values{"csrf_token": {csrf}})
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("removing a method must ask for a new sign-in first, got %s", p.URL)
		}
		p = finishLogin(t, b, srv, p, ivy)
		if !strings.Contains(p.Body, "Continue: remove Authenticator app") {
			t.Fatalf("no continue button after the step-up:\n%s", p.Body)
		}
		p = b.submitForm(p, "/account/security/methods/totp/remove", nil)
		if !strings.Contains(p.Body, "It was removed") || hasTOTP(t, srv, ivy) {
			t.Fatalf("TOTP not removed: %d\n%s", p.Status, p.Body)
		}
		// The last method: refused, pointing to the removal flow.
		cs, _ := st.ListWebAuthnCredentials(context.Background(), ivy.ID)
		p = b.post(srv.URL+"/account/security/methods/"+cs[0].ID+"/remove", url.Values{"csrf_token": {csrfToken(t, b, srv)}})
		if p.Status != http.StatusConflict || !strings.Contains(p.Body, "only way to confirm") {
			t.Fatalf("removing the last method: %d\n%s", p.Status, p.Body)
		}
		// The JSON API lists the methods.
		api := b.api(t, "GET", srv.URL+"/account/mfa", nil, nil)
		ms, _ := api.Body["methods"].([]any)
		if api.state() != "mfa_active" || len(ms) != 1 || ms[0].(map[string]any)["kind"] != "passkey" {
			t.Fatalf("GET /account/mfa: %+v", api.Body)
		}
		// And the key is the second factor at the next sign-in.
		b2 := newBrowser(t, srv.URL)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))
		authURL, res := r.authURL()
		p = b2.submit(b2.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		if strings.Contains(p.Body, "authenticator app, or a recovery code") {
			t.Fatal("the second-factor page offers a TOTP app the user no longer has")
		}
		if _, idt := r.exchange(r.callback(passkeyStep(t, b2, p, key), res)); !slices.Contains(claimsOf(t, idt).AMR, "hwk") {
			t.Fatal("amr does not name the key")
		}
	})
}

// TestAdminRemovesOneMethod: the admin API shows a user's methods and
// removes one of several (the user keeps 2SV), or the last one (which is
// removing their 2SV), with the admin rules: never one's own.
func TestAdminRemovesOneMethod(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newAdminFixture(t, st, onLocalhost)
		f.srv.addPasskey(t, f.bob)
		got := f.call(t, f.adminToken, "GET", "/admin/users/"+f.bob.ID+"/mfa", nil)
		ms, _ := got.Body["methods"].([]any)
		if got.Status != 200 || len(ms) != 2 {
			t.Fatalf("methods: %d %v", got.Status, got.Body)
		}
		pid := ms[1].(map[string]any)["id"].(string)
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa/methods/nope", nil); r.Status != 404 {
			t.Fatalf("unknown method: %d", r.Status)
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.admin.ID+"/mfa/methods/totp", nil); r.Status != 403 || errCode(r) != "self_action" {
			t.Fatalf("an admin removing their own method: %d %v", r.Status, r.Body)
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa/methods/"+pid, nil); r.Status != 204 {
			t.Fatalf("remove the key: %d %v", r.Status, r.Body)
		}
		if !hasTOTP(t, f.srv, f.bob) || auditCount(t, f.srv, "mfa.webauthn.removed", f.bob.ID) != 1 || auditCount(t, f.srv, "mfa.totp.removed", f.bob.ID) != 0 {
			t.Fatal("removing one of two methods must leave 2SV on, audited as the key's removal")
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa/methods/totp", nil); r.Status != 204 {
			t.Fatalf("remove the last method: %d %v", r.Status, r.Body)
		}
		if hasTOTP(t, f.srv, f.bob) || auditCount(t, f.srv, "mfa.totp.removed", f.bob.ID) != 1 {
			t.Fatal("removing the last method must remove 2SV, audited as such")
		}
	})
}

// TestPasswordAloneCannotAddTOTPBesideAKey: a user whose only method is a
// security key; someone with their password reaches the second step but
// cannot set up a TOTP app of their own at the sign-in setup screen (it is
// not a first authenticator), so never gets a session. Her recovery codes
// still work.
func TestPasswordAloneCannotAddTOTPBesideAKey(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t), onLocalhost)
	ivy := srv.createUser(t, "ivy", true)
	srv.addPasskey(t, ivy)
	if _, err := srv.app.store.DeleteTOTP(context.Background(), ivy.ID); err != nil {
		t.Fatal(err)
	}
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	b := newBrowser(t, srv.URL)
	authURL, _ := r.authURL()
	p := b.submit(b.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
	if !strings.HasSuffix(p.URL.Path, "/login/2sv") {
		t.Fatalf("a key-only user must get the second step: %s", p.URL)
	}
	_, fields, _, _ := parseFormFull(p.Body, "/login/2sv")
	flow := fields.Get("flow")
	setup := b.get(srv.URL + "/login/setup?flow=" + url.QueryEscape(flow))
	if !strings.HasSuffix(setup.URL.Path, "/login/2sv") || strings.Contains(setup.Body, "otpauth://") {
		t.Fatalf("the setup screen offered a secret to a password alone: %s\n%s", setup.URL, setup.Body)
	}
	resp, err := b.c.PostForm(srv.URL+"/login/setup", url.Values{"flow": {flow}, "csrf_token": fields["csrf_token"], "code": {"123456"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hasTOTP(t, srv, ivy) {
		t.Fatal("a TOTP app was added with a password alone")
	}
	for _, c := range b.c.Jar.Cookies(mustURL(t, srv.URL)) {
		if c.Name == "latchkey_session" {
			t.Fatal("a session was started")
		}
	}
	// Her recovery codes work although she has no app: a lost key is
	// what they are for.
	b2 := newBrowser(t, srv.URL)
	authURL, res := r.authURL()
	p = b2.submit(b2.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
	if _, idt := r.exchange(r.callback(b2.submitForm(p, "/login/2sv", map[string]string{"code": ivy.Recovery[0]}), res)); claimsOf(t, idt).ACR != "aal2" {
		t.Fatal("a recovery code of a key-only user")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestConsoleRemovesOneMethod: the console lists a user's methods and
// removes one after a confirmation (which says the user keeps 2SV) and a
// step-up; their other method stays.
func TestConsoleRemovesOneMethod(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t), onLocalhost)
	ctx := context.Background()
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	tom := srv.createUser(t, "tom", true)
	srv.addPasskey(t, tom)
	cs, _ := srv.app.store.ListWebAuthnCredentials(ctx, tom.ID)
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, ada)
	srv.ageSession(t, b, "latchkey_console", 6*time.Minute)
	action := "/console/users/" + tom.ID + "/methods/" + cs[0].ID + "/remove"
	p := b.get(srv.URL + "/console/users/" + tom.ID)
	if !strings.Contains(p.Body, "Test key") || !strings.Contains(p.Body, "Authenticator app") {
		t.Fatalf("the user page does not list the methods:\n%s", p.Body)
	}
	p = b.submitForm(p, action, nil)
	if !strings.Contains(p.Body, "They keep two-step verification") {
		t.Fatalf("want a confirmation first: %d\n%s", p.Status, p.Body)
	}
	p = b.submitForm(p, action, map[string]string{"confirm": "yes"})
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("want a step-up before removal: %s", p.URL)
	}
	finishConsoleLogin(t, b, srv, p, ada)
	if left, _ := srv.app.store.ListWebAuthnCredentials(ctx, tom.ID); len(left) != 0 || !hasTOTP(t, srv, tom) {
		t.Fatalf("after removal: keys %d, TOTP %v", len(left), hasTOTP(t, srv, tom))
	}
	if n := auditCount(t, srv, "mfa.webauthn.removed", tom.ID); n != 1 {
		t.Fatalf("removal events: %d", n)
	}
}

// TestAccountAPIMethods: over the account JSON API with a bearer token, a
// first-party app adds a key after a step-up made for it (spent once) and
// removes one of several methods after another; a third-party app's
// ordinary token gets the RFC 9470 challenge; an answer made for another
// origin, bad bodies and the last method change nothing.
func TestAccountAPIMethods(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t), onLocalhost)
	kai := srv.createUser(t, "kai", true)
	srv.policyGroup(t, "Staff", false, kai) // removing 2SV is admin-only
	b := newBrowser(t, srv.URL)

	third := newRP(t, srv, srv.accountClient(t, "widget", false))
	third.conf.Scopes = []string{"openid", "account"}
	plain, _ := signInTo(t, b, third, kai)
	wantStepUpChallenge(t, "third-party begin", b.api(t, "POST", srv.URL+"/account/mfa/passkeys", nil, bearer(plain.AccessToken)))

	mobile := newRP(t, srv, srv.accountClient(t, "mobile", true))
	mobile.conf.Scopes = []string{"openid", "account"}
	first, _ := signInTo(t, b, mobile, kai)
	idt, _ := first.Extra("id_token").(string)
	host, _ := url.Parse(srv.URL)

	// An answer made on another origin is refused; the step-up stays.
	tok, _ := signInTo(t, b, mobile, kai, stepUpOpts(idt, "add_method")...)
	h := bearer(tok.AccessToken)
	begin := b.api(t, "POST", srv.URL+"/account/mfa/passkeys", nil, h)
	if begin.Status != 200 || begin.Body["ceremony"] == nil {
		t.Fatalf("begin: %d %v", begin.Status, begin.Body)
	}
	options, _ := json.Marshal(begin.Body["options"])
	evil := webauthntest.New(host.Hostname(), "https://login.example.net")
	answer, _ := evil.Create(options)
	finish := srv.URL + "/account/mfa/passkeys/" + begin.Body["ceremony"].(string)
	if got := b.api(t, "PUT", finish, map[string]any{"credential": json.RawMessage(answer)}, h); got.Status != http.StatusBadRequest || got.state() != "passkey_failed" {
		t.Fatalf("another origin's answer: %d %v", got.Status, got.Body)
	}
	for name, body := range map[string]any{
		"credential as a string": map[string]any{"credential": "abc"},
		"no credential":          map[string]any{"name": "x"},
		"unknown field":          map[string]any{"credential": map[string]any{}, "admin": true},
		"oversize":               map[string]any{"credential": map[string]any{"id": strings.Repeat("A", 20<<10)}},
	} {
		if got := b.api(t, "PUT", finish, body, h); got.Status < 400 || got.Status >= 500 {
			t.Errorf("%s: %d %v", name, got.Status, got.Body)
		}
	}
	if ms, _ := srv.app.store.ListWebAuthnCredentials(context.Background(), kai.ID); len(ms) != 0 {
		t.Fatalf("a refused answer stored a key: %+v", ms)
	}
	key := webauthntest.New(host.Hostname(), srv.URL)
	key.Handle = []byte(kai.ID)
	begin = b.api(t, "POST", srv.URL+"/account/mfa/passkeys", nil, h)
	options, _ = json.Marshal(begin.Body["options"])
	answer, _ = key.Create(options)
	added := b.api(t, "PUT", srv.URL+"/account/mfa/passkeys/"+begin.Body["ceremony"].(string), map[string]any{"credential": json.RawMessage(answer), "name": "Phone"}, h)
	if added.Status != http.StatusCreated || added.Body["method"].(map[string]any)["name"] != "Phone" || added.Body["recovery_codes"] != nil {
		t.Fatalf("add: %d %v", added.Status, added.Body)
	}
	wantStepUpChallenge(t, "a spent step-up", b.api(t, "POST", srv.URL+"/account/mfa/passkeys", nil, h))
	pid := added.Body["method"].(map[string]any)["id"].(string)
	if got := b.api(t, "PATCH", srv.URL+"/account/mfa/methods/"+pid, map[string]any{"name": "evil\u202e"}, h); got.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a name with a bidi control: %d %v", got.Status, got.Body)
	}

	// Removing one of two needs its own step-up; the last one is refused.
	wantStepUpChallenge(t, "third-party remove", b.api(t, "DELETE", srv.URL+"/account/mfa/methods/totp", nil, bearer(plain.AccessToken)))
	wantStepUpChallenge(t, "remove with add's token", b.api(t, "DELETE", srv.URL+"/account/mfa/methods/totp", nil, h))
	tok, _ = signInTo(t, b, mobile, kai, stepUpOpts(idt, "remove_method")...)
	h = bearer(tok.AccessToken)
	if got := b.api(t, "DELETE", srv.URL+"/account/mfa/methods/totp", nil, h); got.Status != 200 || hasTOTP(t, srv, kai) {
		t.Fatalf("remove the app: %d %v", got.Status, got.Body)
	}
	if auditCount(t, srv, "mfa.totp.method_removed", kai.ID) != 1 || auditCount(t, srv, "mfa.webauthn.registered", kai.ID) != 1 {
		t.Fatal("the API's changes must be audited")
	}
	if got := b.api(t, "DELETE", srv.URL+"/account/mfa/methods/"+pid, nil, h); got.Status != http.StatusConflict || got.state() != "last_method" {
		t.Fatalf("the last method: %d %v", got.Status, got.Body)
	}
}
