package main

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// consoleLogin signs in to the admin console through the provider.
func consoleLogin(t *testing.T, b *browser, srv *testServer, u user) page {
	t.Helper()
	p := b.get(srv.URL + "/console")
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("want the provider's login page, got %s", p.URL)
	}
	return finishConsoleLogin(t, b, srv, p, u)
}

func finishConsoleLogin(t *testing.T, b *browser, srv *testServer, p page, u user) page {
	t.Helper()
	p = b.submit(p, map[string]string{"username": u.Username, "password": u.Password})
	srv.nextTOTPStep()
	return b.submit(p, map[string]string{"code": mustCode(u.Secret, srv)})
}

func TestConsoleAdminsOnly(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	bob := srv.createUser(t, "bob", true)
	b := newBrowser(t, srv.URL)
	p := consoleLogin(t, b, srv, bob)
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Only admins") {
		t.Fatalf("non-admin: %d %s", p.Status, p.URL)
	}
	if p := newBrowser(t, srv.URL).get(srv.URL + "/console/users"); !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("no session: %s", p.URL)
	}
}

// TestConsolePolicies: bad input re-renders with the error and changes
// nothing; preview saves nothing; saving and assigning need a fresh step-up.
func TestConsolePolicies(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		srv := startServer(t, st)
		ada := srv.createUser(t, "ada", true)
		if err := st.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		staff := srv.createUser(t, "sue", true)
		g, _ := srv.policyGroup(t, "Staff", false, staff)
		b := newBrowser(t, srv.URL)
		p := consoleLogin(t, b, srv, ada)
		if !strings.Contains(p.Body, "Authentication policies") {
			t.Fatalf("policies page: %d %s", p.Status, p.URL)
		}
		before, _ := st.ListPolicies(ctx)
		bad := b.submitForm(p, "/console/policies", map[string]string{"name": "", "step_up_max_age": "5", "grace_period": "0"})
		if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Body, "Fix the highlighted fields") {
			t.Fatalf("bad input: %d", bad.Status)
		}
		if after, _ := st.ListPolicies(ctx); len(after) != len(before) {
			t.Fatal("bad input created a policy")
		}
		p = b.submitForm(bad, "/console/policies", map[string]string{"name": "Low risk", "step_up_max_age": "300", "grace_period": "0",
			"allow_self_service_mfa_removal": "on", "require_mfa": "on"})
		if !strings.Contains(p.Body, "Policy created") || !strings.Contains(p.Body, "Policy: Low risk") {
			t.Fatalf("create: %d %s", p.Status, p.URL)
		}
		pid := strings.TrimPrefix(p.URL.Path, "/console/policies/")
		// Preview the Staff policy going permissive: nothing is saved.
		sp := b.get(srv.URL + "/console/policies/policy_Staff")
		pv := b.submitForm(sp, "/console/policies/policy_Staff", map[string]string{"allow_self_service_mfa_removal": "on", "action": "preview"})
		if !strings.Contains(pv.Body, "1 user would be allowed to remove their own 2SV") {
			t.Fatalf("preview: %d\n%s", pv.Status, between(pv.Body, "<main", "</form>"))
		}
		if cur, _ := st.GetPolicy(ctx, "policy_Staff"); cur.AllowSelfServiceRemoval || cur.Version != 1 {
			t.Fatal("a preview changed the policy")
		}
		// Saving needs a step-up once the sign-in is over 5 minutes old:
		// the browser is sent to sign in again.
		srv.ageSession(t, b, "latchkey_console", 6*time.Minute)
		save := b.submitForm(sp, "/console/policies/policy_Staff", map[string]string{"allow_self_service_mfa_removal": "on", "action": "save"})
		if !strings.HasSuffix(save.URL.Path, "/login") {
			t.Fatalf("save without step-up: %s", save.URL)
		}
		if cur, _ := st.GetPolicy(ctx, "policy_Staff"); cur.Version != 1 {
			t.Fatal("saved without a step-up")
		}
		// The change made before the step-up is kept and completed after it.
		p = finishConsoleLogin(t, b, srv, save, ada)
		if !strings.Contains(p.Body, "Policy saved") {
			t.Fatalf("save after step-up: %d %s", p.Status, p.URL)
		}
		if cur, _ := st.GetPolicy(ctx, "policy_Staff"); !cur.AllowSelfServiceRemoval || cur.Version != 2 {
			t.Fatalf("saved policy: %+v", cur)
		}
		// Assign the new policy to Staff (the step-up is still fresh).
		lp := b.get(srv.URL + "/console/policies/" + pid)
		p = b.submitForm(lp, "/console/policies/"+pid+"/assign", map[string]string{"group_id": g.ID})
		if !strings.Contains(p.Body, "Policy assigned") || !strings.Contains(p.Body, "Assigned to: Staff") {
			t.Fatalf("assign: %d %s", p.Status, p.URL)
		}
		evs, _ := st.ListAuditEvents(ctx, store.AuditFilter{ActorID: ada.ID, TypePrefix: "policy."})
		if len(evs) != 3 {
			t.Fatalf("console changes audited with the admin as actor: %d", len(evs))
		}
		// CSRF: a forged post changes nothing.
		if r := b.post(srv.URL+"/console/policies", url.Values{"name": {"Forged"}, "step_up_max_age": {"300"}, "grace_period": {"0"}}); r.Status != http.StatusForbidden {
			t.Fatalf("forged post: %d", r.Status)
		}
	})
}

// TestConsoleRemoveMFA: a confirmation, then a step-up, then the removal,
// audited with the admin as actor; the audit page shows it.
func TestConsoleRemoveMFA(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	ctx := context.Background()
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	tom := srv.createUser(t, "tom", true)
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, ada)
	srv.ageSession(t, b, "latchkey_console", 6*time.Minute) // the console sign-in no longer counts as a step-up
	p := b.get(srv.URL + "/console/users?q=tom")
	if !strings.Contains(p.Body, "/console/users/"+tom.ID) {
		t.Fatalf("search: %s", p.Body)
	}
	p = b.get(srv.URL + "/console/users/" + tom.ID)
	p = b.submitForm(p, "/console/users/"+tom.ID+"/remove-mfa", nil)
	if !strings.Contains(p.Body, "Remove tom's two-step verification?") || !hasTOTP(t, srv, tom) {
		t.Fatalf("want a confirmation first: %d", p.Status)
	}
	p = b.submitForm(p, "/console/users/"+tom.ID+"/remove-mfa", map[string]string{"confirm": "yes"})
	if !strings.HasSuffix(p.URL.Path, "/login") || !hasTOTP(t, srv, tom) {
		t.Fatalf("want a step-up before removal: %s", p.URL)
	}
	p = finishConsoleLogin(t, b, srv, p, ada)
	if n := auditCount(t, srv, "auth.step_up.succeeded", ada.ID); n != 1 {
		t.Fatalf("the admin's step-up is audited: %d", n)
	}
	if !strings.Contains(p.Body, "Two-step verification removed") || hasTOTP(t, srv, tom) {
		t.Fatalf("removal after step-up: %d %s", p.Status, p.URL)
	}
	a := b.get(srv.URL + "/console/audit?type=mfa.totp.removed")
	if !strings.Contains(a.Body, "Hash chain intact") || !strings.Contains(a.Body, "admin Ada (ada)") || !strings.Contains(a.Body, "Tom (tom)") || !strings.Contains(a.Body, tom.ID) {
		t.Fatalf("audit page: %s", between(a.Body, "<main", "</table>"))
	}
}

// TestConsoleGroupsAndKeys: groups, members and admin contacts; the
// policy of a group and key rotation need a step-up.
func TestConsoleGroupsAndKeys(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	ctx := context.Background()
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	vic := srv.createUser(t, "vic", true)
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, ada)
	p := b.get(srv.URL + "/console/groups")
	if bad := b.submitForm(p, "/console/groups", map[string]string{"name": " "}); bad.Status != http.StatusUnprocessableEntity {
		t.Fatalf("empty group name: %d", bad.Status)
	}
	p = b.submitForm(p, "/console/groups", map[string]string{"name": "Ops"})
	if !strings.Contains(p.Body, "Group: Ops") {
		t.Fatalf("create group: %d %s", p.Status, p.URL)
	}
	gid := strings.TrimPrefix(p.URL.Path, "/console/groups/")
	p = b.submitForm(p, "/console/groups/"+gid+"/members", map[string]string{"username": "vic"})
	p = b.submitForm(p, "/console/groups/"+gid+"/admins", map[string]string{"username": "ada"})
	if bad := b.submitForm(p, "/console/groups/"+gid+"/members", map[string]string{"username": "nobody"}); bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Body, "No user with that username") {
		t.Fatalf("unknown member: %d", bad.Status)
	}
	if gs, _ := srv.app.store.UserGroups(ctx, vic.ID); len(gs) != 1 {
		t.Fatal("member not added")
	}
	if cs, _ := srv.app.store.UserAdminContacts(ctx, vic.ID); len(cs) != 1 || cs[0].ID != ada.ID {
		t.Fatal("admin contact not added")
	}
	if s := b.get(srv.URL + "/console/users?group=Ops&q=VI"); !strings.Contains(s.Body, "/console/users/"+vic.ID) || strings.Contains(s.Body, "/console/users/"+ada.ID+`"`) {
		t.Fatal("search by group")
	}
	// Choosing the group's policy needs a step-up once the sign-in is old.
	srv.ageSession(t, b, "latchkey_console", 6*time.Minute)
	form := map[string]string{"policy_id": "policy_default"}
	got := b.submitForm(p, "/console/groups/"+gid+"/policy", form)
	if !strings.HasSuffix(got.URL.Path, "/login") {
		t.Fatalf("policy change without step-up: %s", got.URL)
	}
	p = finishConsoleLogin(t, b, srv, got, ada)
	if pid, _ := srv.app.store.GroupPolicyID(ctx, gid); pid != "policy_default" || !strings.Contains(p.Body, "Saved") {
		t.Fatalf("policy assignment: %q", pid)
	}
	p = b.submitForm(p, "/console/groups/"+gid+"/members/"+vic.ID+"/remove", nil)
	if gs, _ := srv.app.store.UserGroups(ctx, vic.ID); len(gs) != 0 {
		t.Fatal("member not removed")
	}
	k := b.get(srv.URL + "/console/keys")
	before, _ := srv.app.keys.List(ctx)
	k = b.submitForm(k, "/console/keys/rotate", nil) // the step-up above is fresh
	after, _ := srv.app.keys.List(ctx)
	if !strings.Contains(k.Body, "A new signing key is published") || len(after) != len(before)+1 {
		t.Fatalf("rotate: %d keys before, %d after", len(before), len(after))
	}
	for _, typ := range []string{"group.created", "group.member.added", "group.admin.added", "policy.assigned", "group.member.removed", "key.rotated"} {
		if auditCount(t, srv, typ, "") != 1 {
			t.Errorf("want one %s event", typ)
		}
	}
}

// TestConsoleClientsUsersResetsAudit: applications (secret shown once,
// confirmed deletion), disabling a user (confirmed), the reset queue with
// the requester's policy, and audit event detail and time filters.
func TestConsoleClientsUsersResetsAudit(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	ctx := context.Background()
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	una := srv.createUser(t, "una", true)
	if err := srv.app.store.CreateResetRequest(ctx, store.ResetRequest{ID: "rr-una", UserID: una.ID, Status: store.ResetOpen, Message: "new phone", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, ada)

	p := b.get(srv.URL + "/console/clients")
	bad := b.submitForm(p, "/console/clients", map[string]string{"name": "Wiki", "redirect_uri": "http://evil.example.com/cb"})
	if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Body, "must use https") {
		t.Fatalf("bad redirect: %d", bad.Status)
	}
	p = b.submitForm(p, "/console/clients", map[string]string{"name": "Wiki", "redirect_uri": "https://wiki.example.com/cb"})
	secret := strings.TrimSpace(between(p.Body, `<code class="secret">`, "</code>"))
	if p.Status != http.StatusCreated || len(secret) != 64 {
		t.Fatalf("create: %d %q", p.Status, secret)
	}
	if list := b.get(srv.URL + "/console/clients"); strings.Contains(list.Body, secret) {
		t.Fatal("the secret must be shown only once")
	}
	cs, _ := srv.app.store.ListClients(ctx)
	var wiki string
	for _, c := range cs {
		if c.Name == "Wiki" {
			wiki = c.ID
		}
	}
	list := b.get(srv.URL + "/console/clients")
	confirm := b.submitForm(list, "/console/clients/"+wiki+"/delete", nil)
	if !strings.Contains(confirm.Body, "Delete "+wiki+"?") {
		t.Fatalf("delete needs confirmation: %d", confirm.Status)
	}
	if _, err := srv.app.store.GetClient(ctx, wiki); err != nil {
		t.Fatal("deleted before confirmation")
	}
	b.submitForm(confirm, "/console/clients/"+wiki+"/delete", map[string]string{"confirm": "yes"})
	if _, err := srv.app.store.GetClient(ctx, wiki); err == nil {
		t.Fatal("not deleted after confirmation")
	}

	u := b.get(srv.URL + "/console/users/" + una.ID)
	if !strings.Contains(u.Body, "last used") && !strings.Contains(u.Body, "recovery codes left") {
		t.Fatalf("user page 2SV: %s", between(u.Body, "<main", "</table>"))
	}
	c := b.submitForm(u, "/console/users/"+una.ID+"/disable", nil)
	if !strings.Contains(c.Body, "Disable una?") {
		t.Fatalf("disable needs confirmation: %d", c.Status)
	}
	c = b.submitForm(c, "/console/users/"+una.ID+"/disable", map[string]string{"confirm": "yes"})
	if got, _ := srv.app.store.GetUser(ctx, una.ID); !got.Disabled || !strings.Contains(c.Body, "User disabled") {
		t.Fatalf("disable: %+v", got)
	}

	q := b.get(srv.URL + "/console/resets")
	if !strings.Contains(q.Body, "una") || !strings.Contains(q.Body, "new phone") || !strings.Contains(q.Body, "Removal is admin-only because of policy Default") {
		t.Fatalf("reset queue: %s", between(q.Body, "<main", "</table>"))
	}
	d := b.submitForm(q, "/console/resets/rr-una/deny", nil)
	if rr, _ := srv.app.store.GetResetRequest(ctx, "rr-una"); rr.Status != store.ResetDenied || !strings.Contains(d.Body, "Denied") {
		t.Fatalf("deny: %+v", rr)
	}

	evs, _ := srv.app.store.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "client.created"})
	ev := b.get(srv.URL + "/console/audit/" + strconv.FormatInt(evs[0].ID, 10))
	if !strings.Contains(ev.Body, "client.created") || !strings.Contains(ev.Body, evs[0].Hash) {
		t.Fatalf("event detail: %d", ev.Status)
	}
	future := b.get(srv.URL + "/console/audit?since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)))
	if strings.Contains(future.Body, "/console/audit/"+strconv.FormatInt(evs[0].ID, 10)+`"`) {
		t.Fatal("time filter ignored")
	}
	if bad := b.get(srv.URL + "/console/audit?since=yesterday"); bad.Status != http.StatusUnprocessableEntity {
		t.Fatalf("bad time filter: %d", bad.Status)
	}
	if nf := b.get(srv.URL + "/console/audit/999999"); nf.Status != http.StatusNotFound {
		t.Fatalf("unknown event: %d", nf.Status)
	}
}

// TestConsoleRefusesNonAdminEverywhere: every console route, taken from
// the router, refuses a signed-in non-admin and changes nothing.
func TestConsoleRefusesNonAdminEverywhere(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	bob := srv.createUser(t, "bob", true)
	srv.createUser(t, "carl", true)
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, bob)
	before := auditCount(t, srv, "", "")
	n := 0
	err := chi.Walk(srv.app.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/console/") || strings.HasPrefix(route, "/console/login") || route == "/console/callback" || route == "/console/logout" {
			return nil
		}
		n++
		path := strings.NewReplacer("{id}", "x", "{userID}", "y", "{decision}", "approve", "{eventID}", "1").Replace(route)
		var p page
		if method == http.MethodGet {
			p = b.get(srv.URL + path)
		} else {
			p = b.post(srv.URL+path, url.Values{"name": {"x"}, "confirm": {"yes"}, "username": {"carl"}})
		}
		if p.Status != http.StatusForbidden {
			t.Errorf("%s %s as a non-admin: %d", method, route, p.Status)
		}
		return nil
	})
	if err != nil || n < 20 {
		t.Fatalf("walked %d console routes: %v", n, err)
	}
	if auditCount(t, srv, "", "") != before {
		t.Fatal("a refused console call changed something")
	}
	if p := b.get(srv.URL + "/console/users?group=nobody"); p.Status != http.StatusForbidden {
		t.Fatalf("search as non-admin: %d", p.Status)
	}
}

// TestConsoleEditClient: redirect URIs are edited with field errors for bad
// ones, and nothing changes then.
func TestConsoleEditClient(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	ctx := context.Background()
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	app := srv.createClient(t, "wiki", false, false)
	b := newBrowser(t, srv.URL)
	consoleLogin(t, b, srv, ada)
	p := b.get(srv.URL + "/console/clients/wiki")
	if !strings.Contains(p.Body, app.Redirect) {
		t.Fatalf("client page: %d", p.Status)
	}
	bad := b.post(srv.URL+"/console/clients/wiki", url.Values{"csrf_token": {formValue(t, p, "csrf_token")}, "redirect_uris": {"https://ok.example.com/cb\nftp://bad/cb"}})
	if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Body, "ftp://bad/cb") {
		t.Fatalf("bad URI: %d", bad.Status)
	}
	if c, _ := srv.app.store.GetClient(ctx, "wiki"); c.RedirectURIs[0] != app.Redirect {
		t.Fatal("bad input changed the client")
	}
	ok := b.post(srv.URL+"/console/clients/wiki", url.Values{"csrf_token": {formValue(t, p, "csrf_token")}, "redirect_uris": {"https://a.example.com/cb\n\nhttps://b.example.com/cb"}})
	if c, _ := srv.app.store.GetClient(ctx, "wiki"); len(c.RedirectURIs) != 2 || !strings.Contains(ok.Body, "Saved") {
		t.Fatalf("save: %+v", c.RedirectURIs)
	}
}

func formValue(t *testing.T, p page, name string) string {
	t.Helper()
	_, f, err := parseForm(p.Body)
	if err != nil {
		t.Fatal(err)
	}
	return f.Get(name)
}

// TestConsolePasswordResetLink: an admin (after a step-up) creates a
// single-use link; the user sets a new password with it, is signed out
// everywhere, and signs in with the new password; the link then fails.
func TestConsolePasswordResetLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ctx := context.Background()
		ada := srv.createUser(t, "ada", true)
		if err := st.AddAdmin(ctx, ada.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		wes := srv.createUser(t, "wes", true)
		b := newBrowser(t, srv.URL)
		consoleLogin(t, b, srv, ada)
		srv.ageSession(t, b, "latchkey_console", 6*time.Minute)
		p := b.get(srv.URL + "/console/users/" + wes.ID)
		p = b.submitForm(p, "/console/users/"+wes.ID+"/reset-link", nil)
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("reset link without step-up: %s", p.URL)
		}
		p = finishConsoleLogin(t, b, srv, p, ada)
		link := strings.TrimSpace(between(p.Body, `<code class="secret">`, "</code>"))
		if !strings.HasPrefix(link, srv.URL+"/password-reset?token=") {
			t.Fatalf("no link shown: %q", link)
		}
		if evs, _ := st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "user.password_reset_link.created"}); len(evs) != 1 || strings.Contains(evs[0].Details, "token") {
			t.Fatalf("link creation audited, without the link: %+v", evs)
		}
		link = strings.ReplaceAll(link, "&amp;", "&")
		ub := newBrowser(t, srv.URL)
		form := ub.get(link)
		if !strings.Contains(form.Body, "Choose a new password") {
			t.Fatalf("reset page: %d", form.Status)
		}
		if got := ub.submit(form, map[string]string{"password": "new-password-1", "password_confirm": "different-2"}); got.Status != http.StatusUnprocessableEntity {
			t.Fatalf("mismatch: %d", got.Status)
		}
		if got := ub.submit(form, map[string]string{"password": "short", "password_confirm": "short"}); got.Status != http.StatusUnprocessableEntity {
			t.Fatalf("weak: %d", got.Status)
		}
		if got := ub.submit(form, map[string]string{"password": "new-password-1", "password_confirm": "new-password-1"}); !strings.Contains(got.Body, "Password changed") {
			t.Fatalf("reset: %d", got.Status)
		}
		if again := ub.submit(form, map[string]string{"password": "other-password-2", "password_confirm": "other-password-2"}); again.Status != http.StatusBadRequest {
			t.Fatalf("the link must work once: %d", again.Status)
		}
		wes.Password = "new-password-1"
		r := newRP(t, srv, srv.createClient(t, "app", false, true))
		authURL, res := r.authURL()
		srv.nextTOTPStep()
		if res = login(t, newBrowser(t, srv.URL), r, authURL, res, wes); res.Code == "" {
			t.Fatal("sign-in with the new password failed")
		}
		if n := auditCount(t, srv, "user.password.changed", wes.ID); n != 1 {
			t.Fatalf("password change audited: %d", n)
		}
		if bad := newBrowser(t, srv.URL).get(srv.URL + "/password-reset?token=nope"); bad.Status != http.StatusBadRequest {
			t.Fatalf("unknown token: %d", bad.Status)
		}
	})
}
