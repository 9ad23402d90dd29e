package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/store"
)

// Issue 11: the lost-authenticator journey starts on the sign-in page.

// toSecondFactor signs in with the password only and returns the 2SV page.
func toSecondFactor(t *testing.T, b *browser, srv *testServer, u user) page {
	t.Helper()
	r := newRP(t, srv, srv.createClient(t, "app-"+u.Username, false, true))
	p := toLogin(t, b, r)
	p = b.submit(p, map[string]string{"username": u.Username, "password": u.Password})
	if !strings.HasSuffix(p.URL.Path, "/login/2sv") {
		t.Fatalf("want the 2SV page, got %s (%d)", p.URL, p.Status)
	}
	return p
}

func lostLink(t *testing.T, p page) string {
	t.Helper()
	i := strings.Index(p.Body, `href="/login/lost?flow=`)
	if i < 0 {
		t.Fatalf("no \"Lost your authenticator?\" link on %s", p.URL)
	}
	rest := p.Body[i+len(`href="`):]
	return strings.ReplaceAll(rest[:strings.IndexByte(rest, '"')], "&amp;", "&")
}

// TestLostAuthenticatorRequest: after the password, the user sees their
// group's admins, asks for a reset once, and is not signed in.
func TestLostAuthenticatorRequest(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ctx := context.Background()
		lea := srv.createUser(t, "lea", true)
		adm := srv.createUser(t, "fin-admin", true)
		g, _ := srv.policyGroup(t, "Finance", false, lea)
		if err := st.AddGroupAdmin(ctx, g.ID, adm.ID); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, srv.URL)
		p := b.get(srv.URL + lostLink(t, toSecondFactor(t, b, srv, lea)))
		if p.Status != 200 || !strings.Contains(p.Body, "Fin-admin") || !strings.Contains(p.Body, "fin-admin@example.com") {
			t.Fatalf("the page must name the group's admin: %d\n%s", p.Status, p.Body)
		}
		if strings.Contains(p.Body, "You can fix this yourself") {
			t.Fatal("an admin-only policy must not suggest self-service removal")
		}
		if bad := b.submit(p, map[string]string{"message": "new phone\x00"}); bad.Status != http.StatusUnprocessableEntity {
			t.Fatalf("NUL in the message: %d", bad.Status)
		}
		sent := b.submit(p, map[string]string{"message": "New phone, the app did not move over."})
		if sent.Status != 200 || !strings.Contains(sent.Body, "Your request was sent to Fin-admin") || !strings.Contains(sent.Body, "What happens next") {
			t.Fatalf("request: %d\n%s", sent.Status, sent.Body)
		}
		rr, err := st.OpenResetRequest(ctx, lea.ID)
		if err != nil || rr.Message != "New phone, the app did not move over." {
			t.Fatalf("open request: %+v %v", rr, err)
		}
		if d := lastEvent(t, st, "mfa.reset.requested", lea.ID); d["via"] != "sign_in" {
			t.Fatalf("the request is tied to the password sign-in: %v", d)
		}
		// Nothing else is unlocked: no session, no code, no token.
		u, _ := url.Parse(srv.URL + "/")
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "latchkey_session" {
				t.Fatal("asking for a reset signed the user in")
			}
		}
		if n := auditCount(t, srv, "auth.login.succeeded", lea.ID); n != 0 {
			t.Fatal("a sign-in was recorded")
		}
		again := b.submit(p, map[string]string{"message": "again"})
		if again.Status != http.StatusConflict || !strings.Contains(again.Body, "already asked") {
			t.Fatalf("a second open request: %d", again.Status)
		}
		if n := auditCount(t, srv, "mfa.reset.requested", lea.ID); n != 1 {
			t.Fatalf("requests recorded: %d", n)
		}
	})
}

// TestLostAuthenticatorRevealsNothing: without a correct password in this
// browser there is no page; wrong passwords count towards the lockout.
func TestLostAuthenticatorRevealsNothing(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	ctx := context.Background()
	lea := srv.createUser(t, "lea", true)
	adm := srv.createUser(t, "secret-admin", true)
	g, _ := srv.policyGroup(t, "Finance", false, lea)
	if err := srv.app.store.AddGroupAdmin(ctx, g.ID, adm.ID); err != nil {
		t.Fatal(err)
	}
	// A real flow, opened in another browser: not usable here.
	other := newBrowser(t, srv.URL)
	link := lostLink(t, toSecondFactor(t, other, srv, lea))
	b := newBrowser(t, srv.URL)
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	before := toLogin(t, b, r) // a flow of this browser, before any password
	flowID := formValue(t, before, "flow")
	for _, path := range []string{"/login/lost", "/login/lost?flow=nope", link, "/login/lost?flow=" + flowID} {
		p := b.get(srv.URL + path)
		if p.Status != http.StatusBadRequest || strings.Contains(p.Body, "secret-admin") || strings.Contains(p.Body, "Finance") {
			t.Errorf("%s: %d, must reveal nothing", path, p.Status)
		}
	}
	if p := b.post(srv.URL+"/login/lost", url.Values{"csrf_token": {formValue(t, before, "csrf_token")}, "flow": {flowID}}); p.Status != http.StatusBadRequest {
		t.Fatalf("posting before the password: %d", p.Status)
	}
	// Wrong passwords lock the account; the page then cannot be reached.
	for i := 0; i < 5; i++ {
		b.submit(before, map[string]string{"username": "lea", "password": "wrong-password"})
	}
	p := b.submit(before, map[string]string{"username": "lea", "password": lea.Password})
	if p.Status != http.StatusTooManyRequests || strings.HasSuffix(p.URL.Path, "/login/2sv") {
		t.Fatalf("after 5 wrong passwords the right one must be refused: %d %s", p.Status, p.URL)
	}
	if _, err := srv.app.store.OpenResetRequest(ctx, lea.ID); err == nil {
		t.Fatal("a request was created")
	}
}

// TestLostAuthenticatorFloodAndFallback: requests from one network are
// limited; users whose groups name no admin see the organisation's
// support contacts; self-service users are told to use a recovery code.
func TestLostAuthenticatorFloodAndFallback(t *testing.T) {
	srv := startServer(t, testdbSQLite(t), func(c *config.Config) {
		c.Support.Contacts = []string{"IT Service Desk <it@example.com>", "Help portal <https://help.example.com/2sv>"}
	})
	var users []user
	for _, n := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
		users = append(users, srv.createUser(t, n, true))
	}
	srv.policyGroup(t, "Low", true, users[5])
	for i, u := range users {
		b := newBrowser(t, srv.URL)
		p := b.get(srv.URL + lostLink(t, toSecondFactor(t, b, srv, u)))
		if !strings.Contains(p.Body, "IT Service Desk") || !strings.Contains(p.Body, "https://help.example.com/2sv") {
			t.Fatalf("fallback contacts missing:\n%s", p.Body)
		}
		if i == 5 {
			if !strings.Contains(p.Body, "You can fix this yourself") || !strings.Contains(p.Body, "recovery codes") {
				t.Fatalf("a user allowed to remove 2SV is told how:\n%s", p.Body)
			}
		}
		got := b.submit(p, map[string]string{"message": ""})
		want := http.StatusOK
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if got.Status != want {
			t.Fatalf("request %d from one network: %d, want %d", i+1, got.Status, want)
		}
	}
	if _, err := srv.app.store.OpenResetRequest(context.Background(), users[5].ID); err == nil {
		t.Fatal("the limited request was stored")
	}
}
