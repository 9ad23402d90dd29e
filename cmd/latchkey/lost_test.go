package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/mfa"
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
		if bad := b.submit(p, map[string]string{"message": "new phone\x00"}); bad.Status != http.StatusBadRequest {
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

// TestSetupWindows: after a removal, a password alone reaches the setup
// screen only for a while; afterwards (an expired approval included) the
// user is refused and asks again, and a new approval opens a new window.
func TestSetupWindows(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	ctx, st := context.Background(), srv.app.store
	lea := srv.createUser(t, "lea", true)
	srv.policyGroup(t, "Finance", false, lea)
	operator, cli := mfa.Actor{Type: audit.ActorSystem}, mfa.Proof{Via: mfa.ViaOperator}
	if err := srv.app.mfa.RemoveByAdmin(ctx, operator, cli, lea.ID, "lost phone"); err != nil {
		t.Fatal(err)
	}
	if until, _ := st.MFASetupUntil(ctx, lea.ID); until.Sub(time.Now()) < 71*time.Hour || until.Sub(time.Now()) > 73*time.Hour {
		t.Fatalf("an admin's removal opens the approval window (72h): %v", until)
	}
	signIn := func() page {
		b := newBrowser(t, srv.URL)
		r := newRP(t, srv, srv.createClient(t, "app-"+time.Now().Format("150405.000000000"), false, true))
		return b.submit(toLogin(t, b, r), map[string]string{"username": lea.Username, "password": lea.Password})
	}
	if p := signIn(); !strings.HasSuffix(p.URL.Path, "/login/setup") {
		t.Fatalf("within the window the password reaches setup: %s", p.URL)
	}
	// Within the window there is nothing to reset.
	if _, err := srv.app.mfa.RequestReset(ctx, mfa.Actor{Type: audit.ActorUser, UserID: lea.ID}, mfa.Proof{Via: mfa.ViaSignIn, ID: "f"}, ""); err == nil {
		t.Fatal("a reset request while the window is open")
	}
	// The window (here: the approval) expires.
	if err := st.SetMFARemoved(ctx, lea.ID, time.Now().Add(-73*time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	p := signIn()
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Ask for a new reset") {
		t.Fatalf("after the window: %d %s", p.Status, p.URL)
	}
	if strings.Contains(p.Body, `class="secret"`) {
		t.Fatal("a secret was shown")
	}
	// The setup page itself refuses too (same browser, same flow).
	b := newBrowser(t, srv.URL)
	r := newRP(t, srv, srv.createClient(t, "app-direct", false, true))
	p = b.submit(toLogin(t, b, r), map[string]string{"username": lea.Username, "password": lea.Password})
	flow := between(p.Body, "/login/lost?flow=", `"`)
	if s := b.get(srv.URL + "/login/setup?flow=" + flow); s.Status != http.StatusForbidden {
		t.Fatalf("the setup page after the window: %d", s.Status)
	}
	// Asking again from the sign-in page works, and approval reopens.
	lost := b.get(srv.URL + "/login/lost?flow=" + flow)
	if sent := b.submit(lost, map[string]string{"message": "still no phone"}); sent.Status != 200 {
		t.Fatalf("a new request after the window: %d\n%s", sent.Status, sent.Body)
	}
	rr, err := st.OpenResetRequest(ctx, lea.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.app.mfa.DecideReset(ctx, operator, cli, rr.ID, true, ""); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if p := signIn(); !strings.HasSuffix(p.URL.Path, "/login/setup") {
		t.Fatalf("after the new approval: %s", p.URL)
	}
}
