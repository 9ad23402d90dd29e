package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

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
	form := url.Values{"flow": fields["flow"], "csrf_token": fields["csrf_token"]}
	resp, err := b.c.PostForm(b.issuer+"/login/2sv/passkey/begin", form)
	if err != nil {
		t.Fatal(err)
	}
	var begin struct {
		Ceremony string          `json:"ceremony"`
		Options  json.RawMessage `json:"options"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&begin); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("begin: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
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
