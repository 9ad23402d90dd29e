package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// policyGroup creates a group with a policy and puts the users in it.
func (s *testServer) policyGroup(t testing.TB, name string, allowRemoval bool, users ...user) (store.Group, store.Policy) {
	t.Helper()
	ctx := context.Background()
	p := store.Policy{ID: "policy_" + name, Name: name, RequireMFA: true, AllowSelfServiceRemoval: allowRemoval, StepUpMaxAge: 5 * time.Minute,
		Reenroll: "immediate", SetupWindow: 24 * time.Hour, Version: 1, UpdatedAt: time.Now()}
	g := store.Group{ID: "group_" + name, Name: name, CreatedAt: time.Now()}
	err := s.app.store.InTx(ctx, func(q store.Queries) error {
		if err := q.CreatePolicy(ctx, p); err != nil {
			return err
		}
		if err := q.CreateGroup(ctx, g); err != nil {
			return err
		}
		if err := q.AssignPolicy(ctx, g.ID, p.ID); err != nil {
			return err
		}
		for _, u := range users {
			if err := q.AddMember(ctx, g.ID, u.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, p
}

// portalLogin signs in to the account portal through the provider.
func portalLogin(t testing.TB, b *browser, srv *testServer, u user) page {
	t.Helper()
	p := b.get(srv.URL + "/account")
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("want the provider's login page, got %s (%d)", p.URL, p.Status)
	}
	return finishLogin(t, b, srv, p, u)
}

func finishLogin(t testing.TB, b *browser, srv *testServer, p page, u user) page {
	t.Helper()
	p = b.submit(p, map[string]string{"username": u.Username, "password": u.Password})
	if u.Secret != "" {
		srv.nextTOTPStep() // each sign-in needs a fresh code
		code, _ := authn.TOTPCode(u.Secret, srv.totpNow())
		p = b.submitForm(p, "/login/2sv", map[string]string{"code": code})
	}
	if p.Status != http.StatusOK || !strings.HasPrefix(p.URL.Path, "/account") {
		t.Fatalf("sign-in did not land in the portal: %d %s\n%s", p.Status, p.URL, p.Body)
	}
	return p
}

// stepUp performs the step-up sign-in for action from the portal.
func stepUp(t testing.TB, b *browser, srv *testServer, u user, action string) page {
	t.Helper()
	p := b.post(srv.URL+"/account/step-up", url.Values{"csrf_token": {csrfToken(t, b, srv)}, "action": {action}, "return": {"/account/security"}})
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("step-up must force a new sign-in, got %s", p.URL)
	}
	return finishLogin(t, b, srv, p, u)
}

func csrfToken(t testing.TB, b *browser, srv *testServer) string {
	t.Helper()
	_, f, err := parseForm(b.get(srv.URL + "/account").Body)
	if err != nil {
		t.Fatalf("no form on /account: %v", err)
	}
	return f.Get("csrf_token")
}

type apiResp struct {
	Status int
	Body   map[string]any
	Header http.Header
}

func (b *browser) api(t testing.TB, method, u string, body any, headers map[string]string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := apiResp{Status: resp.StatusCode, Body: map[string]any{}, Header: resp.Header}
	_ = json.NewDecoder(resp.Body).Decode(&out.Body)
	return out
}

func (out apiResp) state() string { s, _ := out.Body["state"].(string); return s }

func hasTOTP(t testing.TB, srv *testServer, u user) bool {
	t.Helper()
	_, err := srv.app.store.GetTOTP(context.Background(), u.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func auditCount(t testing.TB, srv *testServer, typ, subject string) int {
	t.Helper()
	evs, err := srv.app.store.ListAuditEvents(context.Background(), store.AuditFilter{TypePrefix: typ, SubjectID: subject})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestSeed003Validations: every row of seed 003's Validations table, in
// JSON and in HTML.
func TestSeed003Validations(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ivan := srv.createUser(t, "ivan", true)
		srv.policyGroup(t, "Staff", true, ivan)
		anon := newBrowser(t, srv.URL)

		// Session is not authenticated.
		for _, call := range []struct{ method, path string }{{"GET", "/account/mfa"}, {"POST", "/account/mfa/disable"},
			{"PUT", "/account/mfa/disable"}, {"PUT", "/account/mfa/disable/successful"}} {
			r := anon.api(t, call.method, srv.URL+call.path, map[string]string{"choice": "yes"}, nil)
			if r.Status != http.StatusUnauthorized || r.state() != "unauthenticated" || r.Body["login_url"] == nil {
				t.Errorf("%s %s unauthenticated: %d %v", call.method, call.path, r.Status, r.Body)
			}
		}
		if p := anon.get(srv.URL + "/account/security"); !strings.HasSuffix(p.URL.Path, "/login") {
			t.Errorf("HTML without a session must show the login screen, got %s", p.URL)
		}

		// MFA not active: a user without 2SV (policy optional).
		jane := srv.createUser(t, "jane", false)
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, jane)
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		if r := b.api(t, "GET", srv.URL+"/account/mfa", nil, nil); r.Status != 200 || r.state() != "mfa_not_active" || r.Body["active"] != false {
			t.Errorf("GET mfa without 2SV: %d %v", r.Status, r.Body)
		}
		if r := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf); r.Status != http.StatusConflict || r.state() != "mfa_not_active" {
			t.Errorf("POST disable without 2SV: %d %v", r.Status, r.Body)
		}
		p := b.post(srv.URL+"/account/security/unlink", url.Values{"csrf_token": {csrf["X-CSRF-Token"]}})
		if p.URL.Path != "/account" || !strings.Contains(p.Body, "not active") {
			t.Errorf("HTML unlink without 2SV must show the Account screen, got %s", p.URL)
		}

		// User does not select Yes or No.
		b = newBrowser(t, srv.URL)
		portalLogin(t, b, srv, ivan)
		stepUp(t, b, srv, ivan, "remove")
		csrf = map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		if in.Status != 200 || in.state() != "choice_required" || in.Body["unlink_id"] == "" {
			t.Fatalf("initiate: %d %v", in.Status, in.Body)
		}
		for _, body := range []any{map[string]any{"unlink_id": in.Body["unlink_id"]}, map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "maybe"}} {
			r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", body, csrf)
			fields, _ := r.Body["fields"].(map[string]any)
			if r.Status != http.StatusUnprocessableEntity || r.state() != "choice_required" || fields["choice"] == nil {
				t.Errorf("no choice: want 422 choice_required with field metadata, got %d %v", r.Status, r.Body)
			}
		}
		if r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": "unlink_nope", "choice": "yes"}, csrf); r.Status != http.StatusConflict || r.state() != "unlink_expired" {
			t.Errorf("unknown unlink_id: %d %v", r.Status, r.Body)
		}
		if r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes", "extra": 1}, csrf); r.Status != http.StatusUnprocessableEntity {
			t.Errorf("unknown field: want 422, got %d %v", r.Status, r.Body)
		}
		// CSRF: the session cookie alone does not authorise a change.
		if r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, nil); r.Status != http.StatusForbidden || r.state() != "csrf_failed" {
			t.Errorf("without CSRF header: %d %v", r.Status, r.Body)
		}
		// HTML: the dialog stays visible.
		p = b.post(srv.URL+"/account/security/unlink", url.Values{"csrf_token": {csrf["X-CSRF-Token"]}})
		_, f, _ := parseForm(p.Body)
		p = b.post(srv.URL+"/account/security/unlink/decide", url.Values{"csrf_token": {f.Get("csrf_token")}, "unlink_id": {f.Get("unlink_id")}})
		if p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Body, "2-step verification will be disabled") || !strings.Contains(p.Body, "Choose Yes") {
			t.Errorf("HTML without a choice: want the dialog again with an error, got %d", p.Status)
		}
		if !hasTOTP(t, srv, ivan) || auditCount(t, srv, "mfa.totp.removed", ivan.ID) != 0 {
			t.Fatal("validation failures must change nothing")
		}
	})
}

// TestSeed003Actions: Yes, No and the confirmation, in JSON and HTML.
func TestSeed003Actions(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		kim := srv.createUser(t, "kim", true)
		leo := srv.createUser(t, "leo", true)
		srv.policyGroup(t, "Staff", true, kim, leo)

		// JSON: No changes nothing and returns the session context.
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, kim)
		stepUp(t, b, srv, kim, "remove")
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		if r := b.api(t, "PUT", srv.URL+"/account/mfa/disable/successful", nil, csrf); r.Status != http.StatusConflict {
			t.Errorf("confirm while 2SV active: want 409, got %d %v", r.Status, r.Body)
		}
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "no"}, csrf)
		if r.Status != 200 || r.state() != "cancelled" || r.Body["session"] == nil || !hasTOTP(t, srv, kim) {
			t.Fatalf("no: %d %v", r.Status, r.Body)
		}
		// JSON: Yes disables and returns registration data.
		in = b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		r = b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf)
		reg, _ := r.Body["registration"].(map[string]any)
		mfa, _ := r.Body["mfa"].(map[string]any)
		if r.Status != 200 || r.state() != "mfa_disabled" || mfa["active"] != false || reg["secret"] == "" ||
			!strings.HasPrefix(reg["otpauth_uri"].(string), "otpauth://totp/") || !strings.HasPrefix(reg["qr_png"].(string), "data:image/png;base64,") {
			t.Fatalf("yes: %d %v", r.Status, r.Body)
		}
		if hasTOTP(t, srv, kim) || auditCount(t, srv, "mfa.totp.removed", kim.ID) != 1 {
			t.Fatal("yes must remove the credential and write one audit event")
		}
		evs, _ := srv.app.store.ListAuditEvents(context.Background(), store.AuditFilter{TypePrefix: "mfa.totp.removed", SubjectID: kim.ID})
		if ev := evs[0]; ev.PolicyID != "policy_Staff" || ev.PolicyVersion != 1 || !strings.Contains(ev.Details, `"auth_time"`) || !strings.Contains(ev.Details, `"otp"`) {
			t.Errorf("audit event must carry the policy that allowed it and the step-up evidence: %+v", ev)
		}
		c := b.api(t, "PUT", srv.URL+"/account/mfa/disable/successful", nil, csrf)
		if c.Status != 200 || c.state() != "mfa_disabled" || !strings.Contains(c.Body["banner"].(string), "disabled") {
			t.Errorf("confirm: %d %v", c.Status, c.Body)
		}
		// The returned secret is the one setup verifies.
		code, _ := authn.TOTPCode(reg["secret"].(string), srv.totpNow())
		if v := b.api(t, "PUT", srv.URL+"/account/mfa/setup", map[string]string{"code": code}, csrf); v.Status != 200 || v.state() != "mfa_active" {
			t.Fatalf("re-enroll with the returned secret: %d %v", v.Status, v.Body)
		}

		// HTML: No returns to Edit Account; Yes goes to MFA setup with the banner.
		hb := newBrowser(t, srv.URL)
		portalLogin(t, hb, srv, leo)
		p := hb.post(srv.URL+"/account/security/unlink", url.Values{"csrf_token": {csrfToken(t, hb, srv)}})
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("unlink without step-up must send the browser to sign in again, got %s", p.URL)
		}
		p = finishLogin(t, hb, srv, p, leo)
		if !strings.Contains(p.Body, "Continue: unlink authenticator app") {
			t.Fatalf("after step-up the security page offers to continue:\n%s", p.Body)
		}
		p = hb.submitForm(p, "/account/security/unlink", nil)
		if !strings.Contains(p.Body, "2-step verification will be disabled") {
			t.Fatalf("want the confirmation dialog, got %d\n%s", p.Status, p.Body)
		}
		_, f, _ := parseForm(p.Body)
		f.Set("choice", "no")
		p = hb.post(srv.URL+"/account/security/unlink/decide", f)
		if p.URL.Path != "/account" || !strings.Contains(p.Body, "Edit account") || !hasTOTP(t, srv, leo) {
			t.Fatalf("no: want Edit Account and 2SV kept, got %s", p.URL)
		}
		p = hb.post(srv.URL+"/account/security/unlink", url.Values{"csrf_token": {csrfToken(t, hb, srv)}})
		_, f, _ = parseForm(p.Body)
		f.Set("choice", "yes")
		p = hb.post(srv.URL+"/account/security/unlink/decide", f)
		if p.URL.Path != "/account/security/setup" || !strings.Contains(p.Body, "Two-step verification was disabled") || !strings.Contains(p.Body, "data:image/png;base64,") {
			t.Fatalf("yes: want MFA setup with the banner, got %s %d", p.URL, p.Status)
		}
		if hasTOTP(t, srv, leo) {
			t.Fatal("yes did not remove the authenticator")
		}
	})
}

// TestStepUpIsRequiredAndBound: the sign-in behind the portal session is
// not a step-up; a step-up for another action does not count.
func TestStepUpIsRequiredAndBound(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	mia := srv.createUser(t, "mia", true)
	srv.policyGroup(t, "Staff", true, mia)
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, mia)
	csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	r := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
	if r.Status != http.StatusUnauthorized || r.state() != "step_up_required" || r.Body["step_up_url"] == nil || r.Body["max_age"] != float64(300) {
		t.Fatalf("plain sign-in: want step_up_required, got %d %v", r.Status, r.Body)
	}
	stepUp(t, b, srv, mia, "replace")
	csrf = map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	if r := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf); r.state() != "step_up_required" {
		t.Fatalf("a step-up for replace must not unlink: %d %v", r.Status, r.Body)
	}
	stepUp(t, b, srv, mia, "remove")
	csrf = map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	if r := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf); r.Status != 200 || r.state() != "choice_required" {
		t.Fatalf("after step-up for unlink: %d %v", r.Status, r.Body)
	}
	if n := auditCount(t, srv, "auth.step_up.succeeded", mia.ID); n != 2 {
		t.Errorf("want 2 step-up audit events, got %d", n)
	}
}

// TestStalePolicyDoesNotRemove: the policy changes to admin-only after the
// user's sign-in and initiate; the removal re-reads it and refuses.
func TestStalePolicyDoesNotRemove(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ned := srv.createUser(t, "ned", true)
		srv.policyGroup(t, "Staff", true, ned)
		admin := srv.createUser(t, "olga", true)
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, ned)
		stepUp(t, b, srv, ned, "remove")
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		if in.state() != "choice_required" {
			t.Fatalf("initiate: %v", in.Body)
		}
		// An admin puts Ned in a privileged group meanwhile.
		g, _ := srv.policyGroup(t, "Privileged", false, ned)
		if err := srv.app.store.AddGroupAdmin(context.Background(), g.ID, admin.ID); err != nil {
			t.Fatal(err)
		}
		r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf)
		contacts, _ := r.Body["admin_contacts"].([]any)
		if r.Status != http.StatusForbidden || r.state() != "admin_only" || len(contacts) != 1 || !strings.Contains(r.Body["message"].(string), "Privileged") {
			t.Fatalf("want 403 admin_only naming the policy, with contacts: %d %v", r.Status, r.Body)
		}
		if !hasTOTP(t, srv, ned) || auditCount(t, srv, "mfa.totp.removed", ned.ID) != 0 || auditCount(t, srv, "mfa.removal.denied", ned.ID) != 1 {
			t.Fatal("a stale permission removed the credential, or the denial was not audited")
		}
	})
}

// TestConcurrentYesRemovesOnce: twenty concurrent "yes" remove the
// credential once and write one audit event.
func TestConcurrentYesRemovesOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		pia := srv.createUser(t, "pia", true)
		srv.policyGroup(t, "Staff", true, pia)
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, pia)
		stepUp(t, b, srv, pia, "remove")
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		var ok, conflict atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf)
				switch r.Status {
				case 200:
					ok.Add(1)
				case http.StatusConflict:
					conflict.Add(1)
				default:
					t.Errorf("unexpected answer %d %v", r.Status, r.Body)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || conflict.Load() != 19 {
			t.Fatalf("want 1 success and 19 conflicts, got %d and %d", ok.Load(), conflict.Load())
		}
		if hasTOTP(t, srv, pia) || auditCount(t, srv, "mfa.totp.removed", pia.ID) != 1 {
			t.Fatal("want the credential removed and exactly one audit event")
		}
	})
}

// TestReenrollmentEnforced: after removal under a policy that requires
// 2SV, the authorization endpoint routes the user to setup and issues no
// code until setup completes.
func TestReenrollmentEnforced(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		quinn := srv.createUser(t, "quinn", true)
		srv.policyGroup(t, "Staff", true, quinn)
		app := srv.createClient(t, "wiki", false, true)
		r := newRP(t, srv, app)

		// A token issued before the removal.
		appBrowser := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		srv.nextTOTPStep()
		tok, _ := r.exchange(login(t, appBrowser, r, authURL, res, quinn))

		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, quinn)
		stepUp(t, b, srv, quinn, "remove")
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf)
		if rr := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf); rr.Status != 200 {
			t.Fatalf("remove: %d %v", rr.Status, rr.Body)
		}
		// Tokens issued with the removed factor are revoked; the browser
		// session at the provider is gone.
		if got := srv.introspect(t, app, tok.AccessToken); got["active"] != false {
			t.Errorf("access token survived the removal: %v", got)
		}
		authURL, res = r.authURL()
		p := appBrowser.get(authURL)
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("the provider session must be gone, got %s", p.URL)
		}
		p = appBrowser.submit(p, map[string]string{"username": quinn.Username, "password": quinn.Password})
		if !strings.HasSuffix(p.URL.Path, "/login/setup") || p.Location != "" {
			t.Fatalf("want the setup screen and no code, got %d %s %q", p.Status, p.URL, p.Location)
		}
		// A wrong code: still no code for the application.
		bad := appBrowser.submit(p, map[string]string{"code": "000000"})
		if bad.Status != http.StatusUnprocessableEntity || bad.Location != "" {
			t.Fatalf("wrong setup code: %d %q", bad.Status, bad.Location)
		}
		// Skipping setup by posting the continue step is refused.
		_, f, _ := parseForm(p.Body)
		if skip := appBrowser.post(srv.URL+"/login/setup/continue", url.Values{"csrf_token": {f.Get("csrf_token")}, "flow": {f.Get("flow")}}); skip.Location != "" || skip.Status != http.StatusBadRequest {
			t.Fatalf("continue before setup: %d %q", skip.Status, skip.Location)
		}
		secret := strings.ReplaceAll(between(p.Body, `<code class="secret">`, "</code>"), " ", "")
		code, _ := authn.TOTPCode(secret, srv.totpNow())
		p = appBrowser.submit(p, map[string]string{"code": code})
		if !strings.Contains(p.Body, "Save your recovery codes") {
			t.Fatalf("want recovery codes, got %d\n%s", p.Status, p.Body)
		}
		res = r.callback(appBrowser.submit(p, nil), res)
		_, idt := r.exchange(res)
		if c := claimsOf(t, idt); c.ACR != "aal2" {
			t.Errorf("sign-in with the new authenticator: %+v", c)
		}
		if !hasTOTP(t, srv, quinn) || auditCount(t, srv, "mfa.totp.enrolled", quinn.ID) != 1 {
			t.Fatal("want the new authenticator active and its enrollment audited")
		}
	})
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	return s[:strings.Index(s, b)]
}

// TestReplaceKeepsOldUntilVerified: replacing needs a step-up, and a wrong
// code from the new authenticator leaves the old one active.
func TestReplaceKeepsOldUntilVerified(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	rita := srv.createUser(t, "rita", true)
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, rita)
	p := b.post(srv.URL+"/account/security/replace", url.Values{"csrf_token": {csrfToken(t, b, srv)}})
	if !strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatalf("replace must require a step-up, got %s", p.URL)
	}
	p = finishLogin(t, b, srv, p, rita)
	p = b.post(srv.URL+"/account/security/replace", url.Values{"csrf_token": {csrfToken(t, b, srv)}})
	if p.URL.Path != "/account/security/setup" || !strings.Contains(p.Body, "Replace your authenticator app") {
		t.Fatalf("want the replace setup screen, got %s\n%s", p.URL, p.Body)
	}
	before, _ := srv.app.store.GetTOTP(context.Background(), rita.ID)
	bad := b.submit(p, map[string]string{"code": wrongCode(mustCode(rita.Secret, srv))})
	after, err := srv.app.store.GetTOTP(context.Background(), rita.ID)
	if bad.Status != http.StatusUnprocessableEntity || err != nil || after.ID != before.ID {
		t.Fatalf("a wrong code must leave the old authenticator: %d %v", bad.Status, err)
	}
	secret := strings.ReplaceAll(between(p.Body, `<code class="secret">`, "</code>"), " ", "")
	good := b.submit(p, map[string]string{"code": mustCode(secret, srv)})
	after, _ = srv.app.store.GetTOTP(context.Background(), rita.ID)
	if !strings.Contains(good.Body, "Save your recovery codes") || after.ID == before.ID || auditCount(t, srv, "mfa.totp.replaced", rita.ID) != 1 {
		t.Fatalf("replace with the right code: %d", good.Status)
	}
}

func mustCode(secret string, srv *testServer) string {
	c, _ := authn.TOTPCode(secret, srv.totpNow())
	return c
}

// TestAdminOnlyPath: the page names the deciding policy and group, lists
// the admins, and records one open reset request.
func TestAdminOnlyPath(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		sam := srv.createUser(t, "sam", true)
		tess := srv.createUser(t, "tess", true)
		g, _ := srv.policyGroup(t, "FinanceAdmins", false, sam)
		if err := srv.app.store.AddGroupAdmin(context.Background(), g.ID, tess.ID); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, srv.URL)
		portalLogin(t, b, srv, sam)
		p := b.get(srv.URL + "/account/security")
		for _, want := range []string{"Removal is admin-only because of policy FinanceAdmins, through group FinanceAdmins", "Tess", "tess@example.com", "Ask an admin to reset"} {
			if !strings.Contains(p.Body, want) {
				t.Errorf("security page lacks %q", want)
			}
		}
		if strings.Contains(p.Body, "Unlink authenticator app") {
			t.Error("admin-only page must not offer unlink")
		}
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
		if r := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, csrf); r.Status != http.StatusForbidden || r.state() != "admin_only" || r.Body["reset_request_url"] == nil {
			t.Fatalf("admin-only initiate: %d %v", r.Status, r.Body)
		}
		p = b.submitForm(p, "/account/security/reset-request", map[string]string{"message": "new phone"})
		if !strings.Contains(p.Body, "Your admins have been asked") {
			t.Fatalf("reset request: %d %s", p.Status, p.URL)
		}
		if r := b.api(t, "POST", srv.URL+"/account/mfa/reset-request", nil, csrf); r.Status != http.StatusConflict || r.state() != "reset_already_requested" {
			t.Fatalf("second request: %d %v", r.Status, r.Body)
		}
		rs, _ := srv.app.store.ListResetRequests(context.Background(), store.ResetOpen)
		if len(rs) != 1 || rs[0].UserID != sam.ID || rs[0].Message != "new phone" || auditCount(t, srv, "mfa.reset.requested", sam.ID) != 1 {
			t.Fatalf("want one open, audited request: %+v", rs)
		}
	})
}

// TestAccountAPIWithBearerToken: apps call the JSON API with an access
// token carrying the "account" scope.
func TestAccountAPIWithBearerToken(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	uma := srv.createUser(t, "uma", true)
	app := srv.createClient(t, "mobile", false, true)
	if err := srv.app.store.DeleteClient(context.Background(), app.ID); err != nil {
		t.Fatal(err)
	}
	c := store.Client{ID: app.ID, SecretHash: mustDigest(app.Secret), FirstParty: true, RedirectURIs: []string{app.Redirect},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid", "account", "profile"}, CreatedAt: time.Now()}
	if err := srv.app.store.CreateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	r := newRP(t, srv, app)
	for _, tc := range []struct {
		scopes []string
		status int
	}{{[]string{"openid", "account"}, 200}, {[]string{"openid", "profile"}, http.StatusForbidden}} {
		r.conf.Scopes = tc.scopes
		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		srv.nextTOTPStep()
		tok, _ := r.exchange(login(t, b, r, authURL, res, uma))
		got := newBrowser(t, srv.URL).api(t, "GET", srv.URL+"/account/mfa", nil, map[string]string{"Authorization": "Bearer " + tok.AccessToken})
		if got.Status != tc.status {
			t.Errorf("scopes %v: want %d, got %d %v", tc.scopes, tc.status, got.Status, got.Body)
		}
	}
	bad := newBrowser(t, srv.URL).api(t, "GET", srv.URL+"/account/mfa", nil, map[string]string{"Authorization": "Bearer nope"})
	if bad.Status != http.StatusUnauthorized || bad.state() != "unauthenticated" {
		t.Errorf("bad token: %d %v", bad.Status, bad.Body)
	}
}

func mustDigest(secret string) []byte {
	d := sha256Sum([]byte(secret))
	return d[:]
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func testdbSQLite(t *testing.T) store.Store { return testdb.SQLite(t) }

// TestPolicyClaims: ID tokens and userinfo carry groups and mfa_policy; a
// policy change shows at the next sign-in (ID token) and at once in
// userinfo.
func TestPolicyClaims(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		srv := startServer(t, st)
		xena := srv.createUser(t, "xena", true)
		_, pol := srv.policyGroup(t, "Staff", true, xena)
		r := newRP(t, srv, srv.createClient(t, "claims", false, true))
		r.conf.Scopes = append(r.conf.Scopes, "groups")
		type policyClaims struct {
			Groups    []string `json:"groups"`
			MFAPolicy struct {
				RequireMFA         bool `json:"require_mfa"`
				SelfServiceRemoval bool `json:"self_service_removal"`
				StepUpMaxAge       int  `json:"step_up_max_age"`
			} `json:"mfa_policy"`
		}
		signIn := func() (policyClaims, *oauth2Token) {
			b := newBrowser(t, srv.URL)
			authURL, res := r.authURL()
			srv.nextTOTPStep()
			tok, idt := r.exchange(login(t, b, r, authURL, res, xena))
			var c policyClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			return c, tok
		}
		var disc struct {
			Claims []string `json:"claims_supported"`
			Scopes []string `json:"scopes_supported"`
		}
		if err := r.provider.Claims(&disc); err != nil || !slices.Contains(disc.Claims, "mfa_policy") || !slices.Contains(disc.Claims, "groups") || !slices.Contains(disc.Scopes, "groups") {
			t.Fatalf("discovery must publish the policy claims: %v %+v", err, disc)
		}
		c, tok := signIn()
		if len(c.Groups) != 1 || c.Groups[0] != "Staff" || !c.MFAPolicy.SelfServiceRemoval || !c.MFAPolicy.RequireMFA || c.MFAPolicy.StepUpMaxAge != 300 {
			t.Fatalf("ID token policy claims: %+v", c)
		}
		pol.AllowSelfServiceRemoval, pol.Version = false, 2
		if err := st.UpdatePolicy(ctx, pol); err != nil {
			t.Fatal(err)
		}
		var info policyClaims
		ui, err := r.provider.UserInfo(ctx, oauth2StaticSource(tok))
		if err != nil || ui.Claims(&info) != nil || info.MFAPolicy.SelfServiceRemoval || len(info.Groups) != 1 {
			t.Fatalf("userinfo after the change: %v %+v", err, info)
		}
		if c, _ := signIn(); c.MFAPolicy.SelfServiceRemoval {
			t.Fatalf("next sign-in must carry the changed policy: %+v", c)
		}
	})
}

type oauth2Token = oauth2.Token

func oauth2StaticSource(t *oauth2.Token) oauth2.TokenSource { return oauth2.StaticTokenSource(t) }

// TestRecoveryCodeRegeneration needs a step-up for that action and
// invalidates the old set.
func TestRecoveryCodeRegeneration(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	yan := srv.createUser(t, "yan", true)
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, yan)
	csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	if r := b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, csrf); r.Status != http.StatusUnauthorized || r.state() != "step_up_required" || r.Body["action"] != "recovery_codes" {
		t.Fatalf("without step-up: %d %v", r.Status, r.Body)
	}
	stepUp(t, b, srv, yan, "remove") // a step-up for another action does not count
	csrf = map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	if r := b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, csrf); r.state() != "step_up_required" {
		t.Fatalf("step-up for unlink reused: %v", r.Body)
	}
	stepUp(t, b, srv, yan, "recovery_codes")
	csrf = map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)}
	r := b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, csrf)
	codes, _ := r.Body["recovery_codes"].([]any)
	if r.Status != 200 || len(codes) != 10 || auditCount(t, srv, "mfa.recovery_codes.regenerated", yan.ID) != 1 {
		t.Fatalf("regenerate: %d %v", r.Status, r.Body)
	}
	if again := b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, csrf); again.state() != "step_up_required" {
		t.Fatalf("the step-up is spent: %v", again.Body)
	}
	// An old code no longer signs in; a new one does.
	app := newRP(t, srv, srv.createClient(t, "codes", false, true))
	ob := newBrowser(t, srv.URL)
	p := ob.submit(toLogin(t, ob, app), map[string]string{"username": yan.Username, "password": yan.Password})
	if got := ob.submit(p, map[string]string{"code": yan.Recovery[1]}); got.Status != http.StatusUnauthorized {
		t.Fatalf("old recovery code accepted: %d", got.Status)
	}
	if got := ob.submit(p, map[string]string{"code": codes[0].(string)}); got.Status != http.StatusSeeOther {
		t.Fatalf("new recovery code refused: %d", got.Status)
	}
}

// TestReenrollmentGrace: with reenroll=grace a user whose 2SV was removed
// may sign in without it until the grace period ends, not after.
func TestReenrollmentGrace(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	ctx := context.Background()
	zoe := srv.createUser(t, "zoe", true)
	_, pol := srv.policyGroup(t, "Graceful", true, zoe)
	pol.Reenroll, pol.GracePeriod, pol.Version = "grace", time.Hour, 2
	if err := srv.app.store.UpdatePolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if err := srv.app.mfa.RemoveByAdmin(ctx, mfa.Actor{Type: audit.ActorSystem}, mfa.Proof{Via: mfa.ViaOperator}, zoe.ID, "test"); err != nil {
		t.Fatal(err)
	}
	app := newRP(t, srv, srv.createClient(t, "grace", false, true))
	pw := zoe
	pw.Secret = ""
	b := newBrowser(t, srv.URL)
	authURL, res := app.authURL()
	if res = login(t, b, app, authURL, res, pw); res.Code == "" {
		t.Fatalf("within the grace period sign-in continues: %+v", res)
	}
	// Within the grace period, a request for aal2 is never downgraded: it
	// leads to setup.
	b = newBrowser(t, srv.URL)
	authURL, _ = app.authURL(oauth2.SetAuthURLParam("acr_values", "aal2"))
	p := b.submit(b.get(authURL), map[string]string{"username": zoe.Username, "password": zoe.Password})
	if !strings.HasSuffix(p.URL.Path, "/login/setup") || p.Location != "" {
		t.Fatalf("acr_values=aal2 during the grace period: want setup, got %s %q", p.URL, p.Location)
	}
	// Move the removal two hours back: the grace period is over.
	if err := srv.app.store.SetMFARemoved(ctx, zoe.ID, time.Now().Add(-2*time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b = newBrowser(t, srv.URL)
	p = b.submit(toLogin(t, b, app), map[string]string{"username": zoe.Username, "password": zoe.Password})
	if !strings.HasSuffix(p.URL.Path, "/login/setup") || p.Location != "" {
		t.Fatalf("after the grace period: want setup, got %s %q", p.URL, p.Location)
	}
}
