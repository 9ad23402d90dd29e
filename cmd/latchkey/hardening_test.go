package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/store"
)

// Issue 13: bad input gets a clean, safe answer and changes nothing.

// TestNULAndBadUTF8RefusedAtTheEdges: a NUL byte or invalid UTF-8 in a
// path, query, form or JSON body is 400 invalid_input everywhere, on both
// stores, before anything is read, counted or stored.
func TestNULAndBadUTF8RefusedAtTheEdges(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newAdminFixture(t, st)
		srv := f.srv
		before := auditCount(t, srv, "", "")
		groups, _ := st.ListGroups(context.Background())
		check := func(what string, status int, body string) {
			t.Helper()
			if status != http.StatusBadRequest || !strings.Contains(body, "invalid_input") {
				t.Errorf("%s: %d %s", what, status, body)
			}
		}
		b := newBrowser(t, srv.URL)
		r := newRP(t, srv, srv.createClient(t, "app", false, true))
		login := toLogin(t, b, r)
		p := b.post(srv.URL+"/login", url.Values{"csrf_token": {formValue(t, login, "csrf_token")}, "flow": {formValue(t, login, "flow")},
			"username": {"a\x00b"}, "password": {"x"}})
		check("POST /login with a NUL username", p.Status, p.Body)
		p = b.post(srv.URL+"/login", url.Values{"csrf_token": {formValue(t, login, "csrf_token")}, "flow": {formValue(t, login, "flow")},
			"username": {"a\xffb"}, "password": {"x"}})
		check("POST /login with invalid UTF-8", p.Status, p.Body)
		for _, path := range []string{"/admin/users?q=%00", "/admin/users/a%00b", "/admin/users/a%00b/mfa", "/admin/groups/x%00", "/admin/audit?subject=%ff"} {
			got := f.call(t, f.adminToken, "GET", path, nil)
			check("GET "+path, got.Status, mustJSON(got.Body))
		}
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/admin/groups", map[string]any{"name": "a\u0000b"}},
			{"POST", "/admin/users", map[string]any{"username": "eve\u0000", "password": "a-long-password"}},
			{"PATCH", "/admin/users/" + f.bob.ID, map[string]any{"display_name": "Bob\u0000"}},
		} {
			got := f.call(t, f.adminToken, c.method, c.path, c.body)
			check(c.method+" "+c.path, got.Status, mustJSON(got.Body))
		}
		// The account API with a bearer token.
		acct := newRP(t, srv, srv.accountClient(t, "mobile", true))
		acct.conf.Scopes = []string{"openid", "account"}
		tok, _ := signInTo(t, newBrowser(t, srv.URL), acct, f.bob)
		got := b.api(t, "POST", srv.URL+"/account/mfa/reset-request", map[string]any{"message": "help\u0000"}, bearer(tok.AccessToken))
		check("POST /account/mfa/reset-request", got.Status, mustJSON(got.Body))
		if after, _ := st.ListGroups(context.Background()); len(after) != len(groups) {
			t.Error("a group was created")
		}
		if _, err := st.OpenResetRequest(context.Background(), f.bob.ID); err == nil {
			t.Error("a reset request was created")
		}
		// Sign-ins and the account API call above audit; nothing refused did.
		if n := auditCount(t, srv, "auth.login.failed", ""); n != 0 {
			t.Errorf("refused input was audited as a failed sign-in: %d", n)
		}
		_ = before
	})
}
