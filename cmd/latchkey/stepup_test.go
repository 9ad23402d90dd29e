package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// Issue 10: the guarantees of a 2SV removal (a fresh step-up made for that
// action, by that user, spent on use; policy; audit) hold on every path.

// accountClient registers an application allowed the account scope.
func (s *testServer) accountClient(t testing.TB, id string, firstParty bool) client {
	t.Helper()
	c := client{ID: id, Redirect: "http://127.0.0.1:9/" + id + "/callback"}
	var hash []byte
	c.Secret, hash = authn.NewClientSecret()
	err := s.app.store.CreateClient(context.Background(), store.Client{ID: id, Name: "App " + id, SecretHash: hash, FirstParty: firstParty,
		RedirectURIs: []string{c.Redirect}, GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scopes: []string{"openid", "profile", "account", "offline_access"}, CreatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signInTo runs an authorization through the sign-in pages, allowing the
// consent page when it comes, and returns the tokens.
func signInTo(t *testing.T, b *browser, r *rp, u user, opts ...oauth2.AuthCodeOption) (*oauth2.Token, page) {
	t.Helper()
	authURL, res := r.authURL(opts...)
	first := b.get(authURL)
	p := first
	if strings.HasSuffix(p.URL.Path, "/login") {
		p = b.submit(p, map[string]string{"username": u.Username, "password": u.Password})
		r.srv.nextTOTPStep()
		p = b.submitForm(p, "/login/2sv", map[string]string{"code": mustCode(u.Secret, r.srv)})
	}
	if strings.Contains(p.Body, `name="decision"`) {
		first = p // the consent page
		p = b.submit(p, map[string]string{"decision": "allow"})
	}
	tok, _ := r.exchange(r.callback(p, res))
	return tok, first
}

func stepUpOpts(idToken string, actions ...string) []oauth2.AuthCodeOption {
	details, _ := json.Marshal([]map[string]any{{"type": "latchkey_mfa", "actions": actions}})
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "300"),
		oauth2.SetAuthURLParam("acr_values", "aal2"), oauth2.SetAuthURLParam("authorization_details", string(details))}
	if idToken != "" {
		opts = append(opts, oauth2.SetAuthURLParam("id_token_hint", idToken))
	}
	return opts
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// wantStepUpChallenge checks an RFC 9470 answer.
func wantStepUpChallenge(t *testing.T, what string, r apiResp) {
	t.Helper()
	h := r.Header.Get("WWW-Authenticate")
	if r.Status != http.StatusUnauthorized || r.state() != "step_up_required" || !strings.Contains(h, `error="insufficient_user_authentication"`) ||
		!strings.Contains(h, `acr_values="aal2"`) || !strings.Contains(h, "max_age=") {
		t.Errorf("%s: want the RFC 9470 challenge, got %d %q %v", what, r.Status, h, r.Body)
	}
}

// TestBearerTokenWithoutStepUpIsRefused: a third-party client with the
// account scope, from an ordinary sign-in and from prompt=none, cannot
// remove, replace or renew anything; each refusal is audited.
func TestBearerTokenWithoutStepUpIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ctx := context.Background()
		uma := srv.createUser(t, "uma", true)
		srv.policyGroup(t, "Staff", true, uma)
		r := newRP(t, srv, srv.accountClient(t, "thirdparty", false))
		r.conf.Scopes = []string{"openid", "account"}
		b := newBrowser(t, srv.URL)
		ordinary, _ := signInTo(t, b, r, uma)
		// Consent remembered: prompt=none mints a token with a fresh
		// auth_time and no interaction at all.
		silent, p := signInTo(t, b, r, uma, oauth2.SetAuthURLParam("prompt", "none"))
		if strings.Contains(p.URL.Path, "login") {
			t.Fatal("prompt=none must not show a page")
		}
		codes, _ := st.CountRecoveryCodes(ctx, uma.ID)
		calls := []struct {
			method, path string
			body         any
		}{
			{"POST", "/account/mfa/disable", nil},
			{"PUT", "/account/mfa/disable", map[string]any{"unlink_id": "unlink_x", "choice": "yes"}},
			{"POST", "/account/mfa/setup", nil},
			{"POST", "/account/mfa/recovery-codes", nil},
		}
		for name, tok := range map[string]string{"ordinary": ordinary.AccessToken, "prompt=none": silent.AccessToken} {
			for _, c := range calls {
				wantStepUpChallenge(t, name+" "+c.method+" "+c.path, b.api(t, c.method, srv.URL+c.path, c.body, bearer(tok)))
			}
		}
		if !hasTOTP(t, srv, uma) {
			t.Fatal("a refused call removed 2SV")
		}
		if n, _ := st.CountRecoveryCodes(ctx, uma.ID); n != codes {
			t.Fatalf("recovery codes changed: %d -> %d", codes, n)
		}
		if _, err := st.GetPendingTOTP(ctx, uma.ID); err == nil {
			t.Fatal("a refused replace started a new secret")
		}
		// Every kind of refusal is audited; repeats are aggregated (remove:
		// 4 refusals → events at the 1st, 2nd, 4th; replace and recovery
		// codes: 2 each).
		if n := auditCount(t, srv, "auth.step_up.refused", uma.ID); n != 7 {
			t.Fatalf("want the refusals audited, aggregated, got %d", n)
		}
	})
}

// TestBearerStepUpNamesTheAction: the same third-party client asks for an
// interactive re-authentication naming the action; the sign-in and consent
// pages say it in words; the token works once for that action.
func TestBearerStepUpNamesTheAction(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	uma := srv.createUser(t, "uma", true)
	srv.policyGroup(t, "Staff", true, uma)
	r := newRP(t, srv, srv.accountClient(t, "thirdparty", false))
	r.conf.Scopes = []string{"openid", "account"}
	b := newBrowser(t, srv.URL)
	first, _ := signInTo(t, b, r, uma)
	idt, _ := first.Extra("id_token").(string)

	tok, consent := signInTo(t, b, r, uma, stepUpOpts(idt, "recovery_codes")...)
	if !strings.Contains(consent.Body, "Replace your recovery codes with a new set") {
		t.Fatalf("the consent page must name the action:\n%s", consent.Body)
	}
	if got := b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, bearer(tok.AccessToken)); got.Status != 200 {
		t.Fatalf("recovery codes after the step-up: %d %v", got.Status, got.Body)
	}
	wantStepUpChallenge(t, "replayed proof", b.api(t, "POST", srv.URL+"/account/mfa/recovery-codes", nil, bearer(tok.AccessToken)))
	// A step-up for recovery codes does not remove anything.
	wantStepUpChallenge(t, "other action", b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, bearer(tok.AccessToken)))

	// prompt=login is what makes it a step-up: without it, refused up front.
	authURL, _ := r.authURL(stepUpOpts(idt, "remove")[1:]...)
	if p := b.get(authURL); !strings.Contains(p.Location, "error=invalid_authorization_details") {
		t.Fatalf("authorization_details without prompt=login: %d %s", p.Status, p.Location)
	}
	for _, bad := range []string{`[{"type":"payment","actions":["remove"]}]`, `[{"type":"latchkey_mfa","actions":["delete_everything"]}]`,
		`{"type":"latchkey_mfa"}`, "[" + strings.Repeat(`{"type":"latchkey_mfa","actions":["remove"]},`, 100) + "{}]", `[{"type":"latchkey_mfa","actions":["remove\u0000"]}]`} {
		authURL, _ := r.authURL(oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("authorization_details", bad))
		if p := b.get(authURL); !strings.Contains(p.Location, "error=invalid_authorization_details") {
			t.Errorf("bad authorization_details %.40q: %d %s", bad, p.Status, p.Location)
		}
	}
	// A raw NUL never gets past the edge: 400 invalid_input.
	authURL, _ = r.authURL(oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("authorization_details", "\x00"))
	if p := b.get(authURL); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "invalid_input") {
		t.Errorf("NUL in authorization_details: %d %s", p.Status, p.Body)
	}
	if !hasTOTP(t, srv, uma) {
		t.Fatal("2SV removed")
	}

	// With a step-up naming "remove", the removal works once.
	tok, consent = signInTo(t, b, r, uma, stepUpOpts(idt, "remove")...)
	if !strings.Contains(consent.Body, "Remove your authenticator app") {
		t.Fatalf("the consent page must name the removal:\n%s", consent.Body)
	}
	h := bearer(tok.AccessToken)
	in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, h)
	yes := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, h)
	if yes.Status != 200 || hasTOTP(t, srv, uma) {
		t.Fatalf("removal after the step-up: %d %v", yes.Status, yes.Body)
	}
	// A third-party application cannot enroll a secret it would know: the
	// user re-enrolls at the portal or at their next sign-in.
	secret := yes.Body["registration"].(map[string]any)["secret"].(string)
	srv.nextTOTPStep()
	if got := b.api(t, "PUT", srv.URL+"/account/mfa/setup", map[string]any{"code": mustCode(secret, srv)}, h); got.Status != http.StatusForbidden || got.state() != "first_party_only" {
		t.Fatalf("third-party enrollment: %d %v", got.Status, got.Body)
	}
	if _, err := srv.app.mfa.EnrollVerified(context.Background(), mfa.Actor{Type: audit.ActorSystem}, uma.ID, authn.NewTOTPSecret()); err != nil {
		t.Fatal(err)
	}
	wantStepUpChallenge(t, "the removal's proof replayed", b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, h))
}

// TestBearerSeed003Sequence: a first-party app runs the whole seed-003
// sequence over the API, from its step-up to the new authenticator
// verified; the user's other tokens end revoked; the secret it received
// never reaches the user's sign-in setup screen.
func TestBearerSeed003Sequence(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		srv := startServer(t, st)
		ctx := context.Background()
		kai := srv.createUser(t, "kai", true)
		srv.policyGroup(t, "Staff", true, kai)
		mobile := srv.accountClient(t, "mobile", true)
		r := newRP(t, srv, mobile)
		r.conf.Scopes = []string{"openid", "account"}
		b := newBrowser(t, srv.URL)
		other, _ := signInTo(t, b, r, kai)
		idt, _ := other.Extra("id_token").(string)

		tok, login := signInTo(t, b, r, kai, stepUpOpts(idt, "remove")...)
		if !strings.Contains(login.Body, "Remove your authenticator app") {
			t.Fatalf("the sign-in page must say what is being confirmed:\n%s", login.Body)
		}
		// RFC 9396 §7: the token response names what the token carries.
		var details []struct {
			Type    string   `json:"type"`
			Actions []string `json:"actions"`
		}
		raw, _ := json.Marshal(tok.Extra("authorization_details"))
		if err := json.Unmarshal(raw, &details); err != nil || len(details) != 1 || details[0].Type != "latchkey_mfa" || !slices.Equal(details[0].Actions, []string{"remove"}) {
			t.Fatalf("token response authorization_details: %s", raw)
		}
		h := bearer(tok.AccessToken)
		in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, h)
		if in.Status != 200 || in.state() != "choice_required" {
			t.Fatalf("initiate: %d %v", in.Status, in.Body)
		}
		yes := b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, h)
		if yes.Status != 200 || yes.state() != "mfa_disabled" {
			t.Fatalf("yes: %d %v", yes.Status, yes.Body)
		}
		secret := yes.Body["registration"].(map[string]any)["secret"].(string)
		if got := b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(other.AccessToken)); got.Status != http.StatusUnauthorized {
			t.Fatalf("the user's other tokens must be revoked: %d", got.Status)
		}
		done := b.api(t, "PUT", srv.URL+"/account/mfa/disable/successful", nil, h)
		if done.Status != 200 || done.state() != "mfa_disabled" || done.Body["banner"] == "" {
			t.Fatalf("confirmation over the same token: %d %v", done.Status, done.Body)
		}
		srv.nextTOTPStep()
		set := b.api(t, "PUT", srv.URL+"/account/mfa/setup", map[string]any{"code": mustCode(secret, srv)}, h)
		if set.Status != 200 || set.state() != "mfa_active" || len(set.Body["recovery_codes"].([]any)) != authn.RecoveryCodeCount {
			t.Fatalf("new authenticator: %d %v", set.Status, set.Body)
		}
		if n := auditCount(t, srv, "mfa.totp.removed", kai.ID); n != 1 {
			t.Fatalf("removal events: %d", n)
		}
		ev := lastEvent(t, st, "mfa.totp.removed", kai.ID)
		if ev["via"] != "bearer" || !slices.Contains(anyStrings(ev["step_up"]), "remove") || ev["by"] != "self" {
			t.Fatalf("removal event details: %v", ev)
		}
		// The proof was spent: the same token cannot remove again.
		wantStepUpChallenge(t, "spent proof", b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, h))

		// The planted secret: the app removes again with a new step-up and
		// keeps the secret it gets; the user's own next sign-in shows a
		// different one, and the app's can no longer be completed.
		kai.Secret = secret
		tok2, _ := signInTo(t, newBrowser(t, srv.URL), r, kai, stepUpOpts("", "remove")...)
		h2 := bearer(tok2.AccessToken)
		in = b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, h2)
		yes = b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, h2)
		if yes.Status != 200 {
			t.Fatalf("second removal: %d %v", yes.Status, yes.Body)
		}
		planted := yes.Body["registration"].(map[string]any)["secret"].(string)
		vb := newBrowser(t, srv.URL)
		authURL, _ := newRP(t, srv, srv.createClient(t, "web", false, true)).authURL()
		p := vb.submit(vb.get(authURL), map[string]string{"username": kai.Username, "password": kai.Password})
		if !strings.HasSuffix(p.URL.Path, "/login/setup") {
			t.Fatalf("want the setup screen, got %s", p.URL)
		}
		if strings.Contains(strings.ReplaceAll(p.Body, " ", ""), planted) {
			t.Fatal("the sign-in setup screen shows the secret the app holds")
		}
		srv.nextTOTPStep()
		if got := b.api(t, "PUT", srv.URL+"/account/mfa/setup", map[string]any{"code": mustCode(planted, srv)}, h2); got.Status != http.StatusConflict {
			t.Fatalf("the superseded secret must not enroll: %d %v", got.Status, got.Body)
		}
		if hasTOTP(t, srv, kai) {
			t.Fatal("enrolled with the planted secret")
		}
		_ = ctx
	})
}

// lastEvent returns the details of the newest event of type for subject.
func lastEvent(t *testing.T, st store.Store, typ, subject string) map[string]any {
	t.Helper()
	evs, err := st.ListAuditEvents(context.Background(), store.AuditFilter{TypePrefix: typ, SubjectID: subject, Limit: 1000})
	if err != nil || len(evs) == 0 {
		t.Fatalf("no %s event for %s: %v", typ, subject, err)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(evs[len(evs)-1].Details), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestStepUpAsAnotherUserIsRefused: in alice's portal session, signing in
// as nina at the step-up changes nothing, nina's session included.
func TestStepUpAsAnotherUserIsRefused(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	alice := srv.createUser(t, "alice", true)
	nina := srv.createUser(t, "nina", true)
	srv.policyGroup(t, "Staff", true, alice, nina)
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, alice)
	p := b.post(srv.URL+"/account/step-up", url.Values{"csrf_token": {csrfToken(t, b, srv)}, "action": {"remove"}, "return": {"/account/security"}})
	if !strings.Contains(p.URL.RawQuery, "flow=") {
		t.Fatalf("want the sign-in page: %s", p.URL)
	}
	p = b.submit(p, map[string]string{"username": nina.Username, "password": nina.Password})
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "another account") {
		t.Fatalf("signing in as someone else at a step-up: %d %s", p.Status, p.URL)
	}
	if n := auditCount(t, srv, "auth.login.succeeded", nina.ID); n != 0 {
		t.Fatal("nina was signed in")
	}
	acc := b.get(srv.URL + "/account")
	if !strings.Contains(acc.Body, alice.Username) || strings.Contains(acc.Body, nina.Username) {
		t.Fatalf("the portal session must stay alice's:\n%s", acc.Body)
	}
	in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)})
	if in.state() != "step_up_required" || !hasTOTP(t, srv, nina) || !hasTOTP(t, srv, alice) {
		t.Fatalf("nothing may be removed: %d %v", in.Status, in.Body)
	}
}

// staleAdminToken is an admin API token whose sign-in is ten minutes old
// (the provider session is aged, then a silent authorization mints it).
func staleAdminToken(t *testing.T, f *adminFixture) string {
	t.Helper()
	ctx := context.Background()
	r := newRP(t, f.srv, f.console)
	r.conf.Scopes = []string{"openid", "admin"}
	b := newBrowser(t, f.srv.URL)
	signInTo(t, b, r, f.admin)
	u, _ := url.Parse(f.srv.URL + "/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name != "latchkey_session" {
			continue
		}
		sum := sha256.Sum256([]byte(c.Value))
		id := hex.EncodeToString(sum[:])
		bs, err := f.srv.app.store.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.srv.app.store.DeleteSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		bs.AuthTime = bs.AuthTime.Add(-10 * time.Minute)
		if err := f.srv.app.store.CreateSession(ctx, bs); err != nil {
			t.Fatal(err)
		}
	}
	tok, p := signInTo(t, b, r, f.admin)
	if strings.HasSuffix(p.URL.Path, "/login") {
		t.Fatal("the silent authorization asked for a sign-in")
	}
	return tok.AccessToken
}

// TestAdminSensitiveRoutesNeedFreshSignIn: each sensitive admin route
// refuses a stale admin token with the RFC 9470 challenge and changes
// nothing; a fresh aal2 sign-in passes; nobody removes their own 2SV or
// approves their own reset.
func TestAdminSensitiveRoutesNeedFreshSignIn(t *testing.T) {
	f := newAdminFixture(t, testdbSQLite(t))
	ctx := context.Background()
	stale := staleAdminToken(t, f)
	gid := mkGroup(t, f)
	rid := mkReset(t, f)
	robot := f.call(t, f.adminToken, "POST", "/admin/clients", map[string]any{"name": "Robot", "first_party": true,
		"grant_types": []string{"client_credentials"}, "scopes": []string{"admin"}})
	if robot.Status != http.StatusCreated {
		t.Fatalf("client: %d %v", robot.Status, robot.Body)
	}
	cid := robot.Body["client_id"].(string)
	routes := []struct {
		method, path string
		body         any
	}{
		{"DELETE", "/admin/users/" + f.bob.ID + "/mfa", nil},
		{"POST", "/admin/reset-requests/" + rid + "/approve", nil},
		{"POST", "/admin/policies", map[string]any{"name": "New", "require_mfa": true, "step_up_max_age": 300}},
		{"PUT", "/admin/policies/policy_default", map[string]any{"name": "Default", "version": 1, "allow_self_service_mfa_removal": true}},
		{"DELETE", "/admin/policies/policy_default", nil},
		{"PUT", "/admin/groups/" + gid + "/policy", map[string]any{"policy_id": "policy_default"}},
		{"DELETE", "/admin/groups/" + gid + "/policy", nil},
		{"POST", "/admin/groups/" + gid + "/admins", map[string]any{"user_id": f.bob.ID}},
		{"POST", "/admin/keys/rotate", nil},
		{"PATCH", "/admin/users/" + f.bob.ID, map[string]any{"disabled": true}},
		{"POST", "/admin/clients", map[string]any{"name": "X", "grant_types": []string{"client_credentials"}}},
		{"PATCH", "/admin/clients/" + cid, map[string]any{"redirect_uris": []string{"https://evil.example/cb"}}},
		{"DELETE", "/admin/clients/" + cid, nil},
		{"POST", "/admin/users/" + f.bob.ID + "/reset-link", nil},
		{"DELETE", "/admin/users/" + f.bob.ID + "/mfa/methods/totp", nil},
	}
	// The OpenAPI document marks exactly these routes.
	var documented []string
	for k, kind := range admin.StepUps {
		if kind == "admin" {
			documented = append(documented, k)
		}
	}
	var tested []string
	for _, rt := range routes {
		tested = append(tested, rt.method+" "+strings.NewReplacer(f.bob.ID, "{id}", rid, "{id}", gid, "{id}", cid, "{id}", "policy_default", "{id}", "/totp", "/{method}").Replace(rt.path))
	}
	slices.Sort(documented)
	slices.Sort(tested)
	if !slices.Equal(slices.Compact(tested), documented) {
		t.Errorf("OpenAPI step-up routes %v, tested %v", documented, tested)
	}
	before := auditCount(t, f.srv, "", "")
	for _, rt := range routes {
		got := f.call(t, stale, rt.method, rt.path, rt.body)
		h := got.Header.Get("WWW-Authenticate")
		if got.Status != http.StatusUnauthorized || errCode(got) != "step_up_required" || !strings.Contains(h, `error="insufficient_user_authentication"`) ||
			!strings.Contains(h, "max_age=300") {
			t.Errorf("%s %s with a stale token: %d %q %v", rt.method, rt.path, got.Status, h, got.Body)
		}
	}
	if n := auditCount(t, f.srv, "", ""); n != before || !hasTOTP(t, f.srv, f.bob) {
		t.Fatalf("refused calls changed something: %d -> %d events", before, n)
	}
	// Reading stays open to a stale token.
	if got := f.call(t, stale, "GET", "/admin/users", nil); got.Status != 200 {
		t.Fatalf("read with a stale token: %d", got.Status)
	}
	// The fresh token passes the same check (each route then does its work).
	for _, rt := range routes[:2] {
		if got := f.call(t, f.adminToken, rt.method, rt.path, rt.body); got.Status >= 300 {
			t.Errorf("%s %s with a fresh token: %d %v", rt.method, rt.path, got.Status, got.Body)
		}
	}
	// Nobody removes their own 2SV or approves their own reset request.
	if got := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.admin.ID+"/mfa", nil); got.Status != http.StatusForbidden || errCode(got) != "self_action" {
		t.Fatalf("admin removing their own 2SV: %d %v", got.Status, got.Body)
	}
	own := store.ResetRequest{ID: "reset_own", UserID: f.admin.ID, Status: store.ResetOpen, CreatedAt: time.Now()}
	if err := f.srv.app.store.CreateResetRequest(ctx, own); err != nil {
		t.Fatal(err)
	}
	if got := f.call(t, f.adminToken, "POST", "/admin/reset-requests/reset_own/approve", nil); got.Status != http.StatusForbidden || errCode(got) != "self_action" {
		t.Fatalf("admin approving their own reset: %d %v", got.Status, got.Body)
	}
	if !hasTOTP(t, f.srv, f.admin) {
		t.Fatal("the admin's own 2SV was removed")
	}
	// Automation: admin alone does not open sensitive routes; admin:sensitive does.
	if got := f.call(t, clientToken(t, f, robot, "admin"), "POST", "/admin/keys/rotate", nil); got.Status != http.StatusForbidden || errCode(got) != "insufficient_scope" {
		t.Fatalf("client without admin:sensitive: %d %v", got.Status, got.Body)
	}
}

// TestAdminScopeIsFirstPartyOnly: a third-party client cannot be
// registered with an admin scope, by the admin API or the store.
func TestAdminScopeIsFirstPartyOnly(t *testing.T) {
	f := newAdminFixture(t, testdbSQLite(t))
	for _, scopes := range [][]string{{"admin"}, {"openid", "admin:sensitive"}} {
		got := f.call(t, f.adminToken, "POST", "/admin/clients", map[string]any{"name": "Third", "grant_types": []string{"client_credentials"}, "scopes": scopes})
		if got.Status != http.StatusUnprocessableEntity {
			t.Errorf("third-party client with %v: %d %v", scopes, got.Status, got.Body)
		}
	}
	err := f.srv.app.store.CreateClient(context.Background(), store.Client{ID: "direct", Scopes: []string{"openid", "admin"}, CreatedAt: time.Now()})
	if err == nil {
		t.Fatal("the store accepted a third-party client with the admin scope")
	}
}

// clientToken is a client-credentials token of a client created through
// the admin API.
func clientToken(t *testing.T, f *adminFixture, created apiResp, scopes ...string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: created.Body["client_id"].(string), ClientSecret: created.Body["client_secret"].(string),
		TokenURL: f.srv.URL + "/oauth2/token", Scopes: scopes}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// TestEveryPathAuditsRemovalAlike: the same removal through the portal,
// the account API, the admin API, the console and the CLI writes events
// with the same fields, because one service writes them all.
func TestEveryPathAuditsRemovalAlike(t *testing.T) {
	f := newAdminFixture(t, testdbSQLite(t))
	srv, st, ctx := f.srv, f.srv.app.store, context.Background()
	users := map[string]user{}
	for _, path := range []string{"portal", "api", "admin", "console", "cli"} {
		users[path] = srv.createUser(t, "u-"+path, true)
	}
	srv.policyGroup(t, "Staff", true, users["portal"], users["api"], users["admin"], users["console"], users["cli"])

	// Portal pages: step-up, Unlink, Yes.
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, users["portal"])
	stepUp(t, b, srv, users["portal"], "remove")
	confirm := b.post(srv.URL+"/account/security/unlink", url.Values{"csrf_token": {csrfToken(t, b, srv)}})
	b.submit(confirm, map[string]string{"choice": "yes"})

	// Account API with a first-party app's step-up token.
	r := newRP(t, srv, srv.accountClient(t, "mobile", true))
	r.conf.Scopes = []string{"openid", "account"}
	tok, _ := signInTo(t, newBrowser(t, srv.URL), r, users["api"], stepUpOpts("", "remove")...)
	in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, bearer(tok.AccessToken))
	b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, bearer(tok.AccessToken))

	// Admin API.
	f.call(t, f.adminToken, "DELETE", "/admin/users/"+users["admin"].ID+"/mfa", nil)

	// Console (its sign-in is fresh, so it is the step-up).
	cb := newBrowser(t, srv.URL)
	consoleLogin(t, cb, srv, f.admin)
	p := cb.get(srv.URL + "/console/users/" + users["console"].ID)
	p = cb.submitForm(p, "/console/users/"+users["console"].ID+"/remove-mfa", nil)
	cb.submitForm(p, "/console/users/"+users["console"].ID+"/remove-mfa", map[string]string{"confirm": "yes"})

	// CLI.
	var out bytes.Buffer
	c := &cli{cfg: srv.app.cfg, st: st, log: srv.app.log, out: &out, errOut: &out}
	if err := c.usersRemove2SV(ctx, users["cli"].Username, "lost phone"); err != nil {
		t.Fatalf("cli: %v %s", err, out.String())
	}

	var want []string
	for path, u := range users {
		if hasTOTP(t, srv, u) {
			t.Fatalf("%s: not removed", path)
		}
		d := lastEvent(t, st, "mfa.totp.removed", u.ID)
		keys := slices.Sorted(maps.Keys(d))
		if want == nil {
			want = keys
		}
		if !slices.Equal(keys, want) {
			t.Errorf("%s: event fields %v, want %v", path, keys, want)
		}
		if d["via"] == "" || d["by"] == "" {
			t.Errorf("%s: event without via/by: %v", path, d)
		}
	}
	for _, k := range []string{"via", "by", "auth_time", "amr", "step_up", "tokens_revoked", "reenroll", "reason"} {
		if !slices.Contains(want, k) {
			t.Errorf("removal events lack %q: %v", k, want)
		}
	}
}

// failStepUpAudit is the real store, except that appending a step-up's
// audit event fails.
type failStepUpAudit struct{ store.Store }

func (f failStepUpAudit) InTx(ctx context.Context, fn func(store.Queries) error) error {
	return f.Store.InTx(ctx, func(q store.Queries) error { return fn(failStepUpQueries{q}) })
}

type failStepUpQueries struct{ store.Queries }

func (q failStepUpQueries) InsertAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	if e.Type == "auth.step_up.succeeded" {
		return 0, errors.New("forced: audit log unavailable")
	}
	return q.Queries.InsertAuditEvent(ctx, e)
}

// TestStepUpAuditedWithItsSession: a step-up whose audit event cannot be
// written does not count; the browser keeps its previous session.
func TestStepUpAuditedWithItsSession(t *testing.T) {
	srv := startServer(t, failStepUpAudit{testdbSQLite(t)})
	ivy := srv.createUser(t, "ivy", true)
	srv.policyGroup(t, "Staff", true, ivy)
	b := newBrowser(t, srv.URL)
	portalLogin(t, b, srv, ivy)
	p := b.post(srv.URL+"/account/step-up", url.Values{"csrf_token": {csrfToken(t, b, srv)}, "action": {"remove"}, "return": {"/account/security"}})
	p = b.submit(p, map[string]string{"username": ivy.Username, "password": ivy.Password})
	srv.nextTOTPStep()
	p = b.submit(p, map[string]string{"code": mustCode(ivy.Secret, srv)})
	if p.Status != http.StatusInternalServerError {
		t.Fatalf("step-up without its audit event: %d %s", p.Status, p.URL)
	}
	in := b.api(t, "POST", srv.URL+"/account/mfa/disable", nil, map[string]string{"X-CSRF-Token": csrfToken(t, b, srv)})
	if in.state() != "step_up_required" {
		t.Fatalf("an unaudited step-up must not count, and the old session stays: %d %v", in.Status, in.Body)
	}
}

// TestMalformedRefusalsNotAudited: a refused removal is answered before its
// body is read (SPEC order) but audited only when the request is
// well-formed, so garbage floods do not write to the log.
func TestMalformedRefusalsNotAudited(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	uma := srv.createUser(t, "uma", true)
	srv.policyGroup(t, "Staff", true, uma)
	r := newRP(t, srv, srv.accountClient(t, "mobile", true))
	r.conf.Scopes = []string{"openid", "account"}
	b := newBrowser(t, srv.URL)
	tok, _ := signInTo(t, b, r, uma)
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("PUT", srv.URL+"/account/mfa/disable", strings.NewReader("{not json\x00"))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("malformed refused call: %d", resp.StatusCode)
		}
	}
	if n := auditCount(t, srv, "auth.step_up.refused", uma.ID); n != 0 {
		t.Fatalf("malformed requests wrote %d events", n)
	}
	wantStepUpChallenge(t, "well-formed", b.api(t, "PUT", srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": "x", "choice": "yes"}, bearer(tok.AccessToken)))
	if n := auditCount(t, srv, "auth.step_up.refused", uma.ID); n != 1 {
		t.Fatalf("a well-formed refused call is audited: %d", n)
	}
}
