package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/store"
)

// keysOnly puts users in a group whose policy allows only passkeys and
// security keys.
func (s *testServer) keysOnly(t *testing.T, users ...user) {
	t.Helper()
	_, p := s.policyGroup(t, "Privileged", false, users...)
	p.AllowedMethods, p.Version = []string{"passkey"}, 2
	if err := s.app.store.UpdatePolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// setupPasskey answers the sign-in setup screen's key form with key.
func setupPasskey(t *testing.T, b *browser, p page, key *webauthntest.Key) page {
	t.Helper()
	_, fields, _, err := parseFormFull(p.Body, "/login/setup/passkey")
	if err != nil {
		t.Fatalf("no key form on the setup screen: %v\n%s", err, p.Body)
	}
	begin := beginCeremony(t, b, "/login/setup/passkey/begin", url.Values{"flow": fields["flow"], "csrf_token": fields["csrf_token"]})
	answer, err := key.Create(begin.Options)
	if err != nil {
		t.Fatal(err)
	}
	return b.submitForm(p, "/login/setup/passkey", map[string]string{"ceremony": begin.Ceremony, "credential": string(answer), "name": "Keyring"})
}

// TestPolicyRequiresKeys: a user whose policy allows only phishing-resistant
// methods cannot add or keep a TOTP app, and sign-in tells them what to do.
// Ivy has only an app: after her password the second step says her
// organisation now wants a key; her app's code leads to the setup screen,
// which offers a key and no app (a posted app setup is refused); adding the
// key finishes the sign-in and removes the app, audited. Kim has an app and
// a key: his app's code is refused at sign-in (audited), his key works and
// the app is removed. In the portal neither can set up an app. Both stores.
func TestPolicyRequiresKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st, onLocalhost)
		ivy, kim := srv.createUser(t, "ivy", true), srv.createUser(t, "kim", true)
		kimKey := srv.addPasskey(t, kim)
		srv.keysOnly(t, ivy, kim)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))

		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		p := b.submit(b.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		if !strings.HasSuffix(p.URL.Path, "/login/2sv") || !strings.Contains(p.Body, "Only passkeys and security keys may be used") ||
			!strings.Contains(p.Body, "you will then add one") {
			t.Fatalf("the second step does not say what to do: %s\n%s", p.URL, p.Body)
		}
		// The setup screen is not reachable before the app's code.
		_, fields, _, _ := parseFormFull(p.Body, "/login/2sv")
		if early := b.get(srv.URL + "/login/setup?flow=" + url.QueryEscape(fields.Get("flow"))); !strings.HasSuffix(early.URL.Path, "/login/2sv") {
			t.Fatalf("setup before the second factor: %s", early.URL)
		}
		srv.nextTOTPStep()
		code, _ := authn.TOTPCode(ivy.Secret, srv.totpNow())
		p = b.submitForm(p, "/login/2sv", map[string]string{"code": code})
		if !strings.HasSuffix(p.URL.Path, "/login/setup") || !strings.Contains(p.Body, "Add one now") || strings.Contains(p.Body, `class="secret"`) || p.Location != "" {
			t.Fatalf("want the key setup screen and no app: %d %s %q\n%s", p.Status, p.URL, p.Location, p.Body)
		}
		// An app set up by posting the form anyway is refused.
		_, fields, _, _ = parseFormFull(p.Body, "/login/setup/passkey")
		posted := url.Values{"flow": fields["flow"], "csrf_token": fields["csrf_token"], "code": {"123456"}}
		if got := b.post(srv.URL+"/login/setup", posted); got.Status != http.StatusForbidden || !strings.Contains(got.Body, "does not allow") {
			t.Fatalf("posted app setup: %d\n%s", got.Status, got.Body)
		}
		host, _ := url.Parse(srv.URL)
		ivyKey := webauthntest.New(host.Hostname(), srv.URL)
		ivyKey.Handle = []byte(ivy.ID)
		p = setupPasskey(t, b, p, ivyKey)
		tok, idt := r.exchange(r.callback(p, res))
		if c := claimsOf(t, idt); c.ACR != "aal2" || !slices.Equal(c.AMR, []string{"pwd", "otp", "swk", "mfa"}) || tok.AccessToken == "" {
			t.Fatalf("claims after moving to a key: %+v", c)
		}
		if hasTOTP(t, srv, ivy) || auditCount(t, srv, "mfa.totp.method_removed", ivy.ID) != 1 || auditCount(t, srv, "mfa.webauthn.registered", ivy.ID) != 1 {
			t.Fatal("the app must be removed, and the key registered, audited")
		}
		// Her next sign-in takes the key, and offers no app.
		b2 := newBrowser(t, srv.URL)
		authURL, res = r.authURL()
		p = b2.submit(b2.get(authURL), map[string]string{"username": ivy.Username, "password": ivy.Password})
		if strings.Contains(p.Body, "authenticator app") {
			t.Fatalf("the second step offers an app:\n%s", p.Body)
		}
		r.exchange(r.callback(passkeyStep(t, b2, p, ivyKey), res))

		// Kim: his app's code is refused, his key is not, and the app goes.
		b3 := newBrowser(t, srv.URL)
		authURL, res = r.authURL()
		p = b3.submit(b3.get(authURL), map[string]string{"username": kim.Username, "password": kim.Password})
		srv.nextTOTPStep()
		code, _ = authn.TOTPCode(kim.Secret, srv.totpNow())
		if got := b3.submitForm(p, "/login/2sv", map[string]string{"code": code}); got.Status != http.StatusForbidden || !strings.Contains(got.Body, "does not allow") {
			t.Fatalf("an app code beside a key: %d\n%s", got.Status, got.Body)
		}
		if auditCount(t, srv, "mfa.method.denied", kim.ID) != 1 || !hasTOTP(t, srv, kim) {
			t.Fatal("the refused app code must be audited, and change nothing")
		}
		r.exchange(r.callback(passkeyStep(t, b3, p, kimKey), res))
		if hasTOTP(t, srv, kim) || auditCount(t, srv, "mfa.totp.method_removed", kim.ID) != 1 {
			t.Fatal("kim kept an app his policy forbids")
		}

		// The portal offers no app, and refuses one.
		pb := newBrowser(t, srv.URL)
		p = pb.get(srv.URL + "/account")
		p = pb.submit(p, map[string]string{"username": kim.Username, "password": kim.Password})
		p = passkeyStep(t, pb, p, kimKey)
		sec := pb.get(srv.URL + "/account/security")
		if strings.Contains(sec.Body, "Replace authenticator app") || strings.Contains(sec.Body, "/account/security/setup") {
			t.Fatalf("the security page offers an app:\n%s", sec.Body)
		}
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, pb, srv)}
		if got := pb.api(t, "POST", srv.URL+"/account/mfa/setup", nil, csrf); got.Status != http.StatusForbidden || got.state() != "method_not_allowed" {
			t.Fatalf("API app setup: %d %v", got.Status, got.Body)
		}
		if got := pb.api(t, "GET", srv.URL+"/account/mfa", nil, nil); !slices.Equal(anyStrings(got.Body["policy"].(map[string]any)["allowed_methods"]), []string{"passkey"}) {
			t.Fatalf("GET /account/mfa: %v", got.Body)
		}
		if hasTOTP(t, srv, kim) {
			t.Fatal("an app was added")
		}
	})
}
