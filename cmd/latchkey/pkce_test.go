package main

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// TestPKCERequiredOfEveryClient: a confidential client without PKCE is
// refused before anyone signs in (OAuth 2.1, RFC 9700 §2.1.1); a legacy
// confidential client registered with the opt-out may go without, and its
// settings say so; a public client cannot opt out.
func TestPKCERequiredOfEveryClient(t *testing.T) {
	ctx := context.Background()
	st := testdb.SQLite(t)
	srv := startServer(t, st)
	ivy := srv.createUser(t, "ivy", false)
	app := srv.createClient(t, "webapp", false, true)
	legacy := client{ID: "legacy", Redirect: "http://127.0.0.1:9/legacy/callback"}
	lc := store.Client{ID: legacy.ID, Name: "Legacy", FirstParty: true, PKCEOptional: true, RedirectURIs: []string{legacy.Redirect},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid"}, CreatedAt: time.Now().UTC()}
	legacy.Secret, lc.SecretHash = authn.NewClientSecret()
	if err := st.CreateClient(ctx, lc); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateClient(ctx, store.Client{ID: "spa", Public: true, PKCEOptional: true, RedirectURIs: []string{"http://127.0.0.1:9/spa"},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid"}, CreatedAt: time.Now().UTC()}); err == nil {
		t.Fatal("a public client was stored without PKCE")
	}

	noPKCE := func(r *rp) string {
		return r.conf.AuthCodeURL(authn.RandomToken(8), oauth2.SetAuthURLParam("nonce", authn.RandomToken(8)))
	}
	r := newRP(t, srv, app)
	b := newBrowser(t, srv.URL)
	p := b.get(noPKCE(r))
	loc, _ := url.Parse(p.Location)
	if p.Status != 303 || !strings.HasPrefix(p.Location, app.Redirect) || loc.Query().Get("error") != "invalid_request" {
		t.Fatalf("confidential client without PKCE: %d %s", p.Status, p.Location)
	}

	lr := newRP(t, srv, legacy)
	lr.conf.Scopes = []string{"openid"}
	res := &authResult{}
	authURL := noPKCE(lr)
	u, _ := url.Parse(authURL)
	res.State, res.nonce = u.Query().Get("state"), u.Query().Get("nonce")
	res = login(t, newBrowser(t, srv.URL), lr, authURL, res, ivy)
	if res.Code == "" {
		t.Fatalf("legacy client without PKCE: %+v", res)
	}
	if _, err := lr.conf.Exchange(ctx, res.Code); err != nil {
		t.Fatalf("legacy exchange without a verifier: %v", err)
	}
}

// TestCLIPKCEOptOut: the CLI registers the opt-out for confidential clients
// only and shows it in the client list.
func TestCLIPKCEOptOut(t *testing.T) {
	_, _, cli := cliHarness(t)
	if out, err := cli("migrate"); err != nil {
		t.Fatal(err, out)
	}
	if out, err := cli("clients", "create", "--name", "Legacy", "--redirect-uri", "https://legacy.example.com/cb", "--allow-no-pkce"); err != nil {
		t.Fatal(err, out)
	}
	if _, err := cli("clients", "create", "--name", "SPA", "--public", "--redirect-uri", "https://spa.example.com/cb", "--allow-no-pkce"); err == nil {
		t.Fatal("a public client was registered without PKCE")
	}
	out, err := cli("clients", "list")
	if err != nil || !strings.Contains(out, "PKCE") || !strings.Contains(out, "optional") {
		t.Fatalf("clients list does not show the PKCE opt-out: %v\n%s", err, out)
	}
}
