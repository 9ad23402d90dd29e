package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/apidoc"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/selfservice"
	"github.com/latchkey/latchkey/store"
)

// adminFixture is a server with an admin, a non-admin, and a console client
// allowed the admin scope.
type adminFixture struct {
	srv        *testServer
	admin      user
	adminToken string
	userToken  string // a non-admin's token that carries the admin scope
	bob        user
	console    client // a first-party client allowed the admin scope
}

func newAdminFixture(t *testing.T, st store.Store, mutate ...func(*config.Config)) *adminFixture {
	srv := startServer(t, st, mutate...)
	f := &adminFixture{srv: srv, admin: srv.createUser(t, "ada", true), bob: srv.createUser(t, "bob", true)}
	if err := st.AddAdmin(context.Background(), f.admin.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	console := srv.createClient(t, "console", false, true)
	c, _ := st.GetClient(context.Background(), console.ID)
	if err := st.DeleteClient(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	c.Scopes = append(c.Scopes, "admin")
	if err := st.CreateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	f.console = console
	r := newRP(t, srv, console)
	r.conf.Scopes = []string{"openid", "admin"}
	for _, u := range []struct {
		u   user
		dst *string
	}{{f.admin, &f.adminToken}, {f.bob, &f.userToken}} {
		b := newBrowser(t, srv.URL)
		authURL, res := r.authURL()
		srv.nextTOTPStep()
		tok, _ := r.exchange(login(t, b, r, authURL, res, u.u))
		*u.dst = tok.AccessToken
	}
	return f
}

func (f *adminFixture) call(t *testing.T, token, method, path string, body any) apiResp {
	t.Helper()
	h := map[string]string{}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return newBrowser(t, f.srv.URL).api(t, method, f.srv.URL+path, body, h)
}

func errCode(r apiResp) string { s, _ := r.Body["error"].(string); return s }

// adminRoutes lists the mounted /admin routes from the real router.
func adminRoutes(t *testing.T, srv *testServer) []apidoc.Route {
	var out []apidoc.Route
	err := chi.Walk(srv.app.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/admin/") || strings.HasPrefix(route, "/account/mfa") {
			out = append(out, apidoc.Route{Method: method, Path: strings.TrimSuffix(route, "/")})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAdminAuthorization: without a token 401; a non-admin's token (even
// with the admin scope) 403 on every /admin route, generated from the
// router's route list.
func TestAdminAuthorization(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	routes := adminRoutes(t, f.srv)
	if len(routes) < 25 {
		t.Fatalf("only %d routes found", len(routes))
	}
	before := auditCount(t, f.srv, "", "")
	for _, rt := range routes {
		if !strings.HasPrefix(rt.Path, "/admin/") || rt.Path == "/admin/openapi.json" {
			continue
		}
		path := strings.NewReplacer("{id}", "x", "{userID}", "y").Replace(rt.Path)
		if r := f.call(t, "", rt.Method, path, map[string]any{}); r.Status != http.StatusUnauthorized || errCode(r) != "unauthenticated" {
			t.Errorf("%s %s without token: %d %v", rt.Method, rt.Path, r.Status, r.Body)
		}
		if r := f.call(t, f.userToken, rt.Method, path, map[string]any{}); r.Status != http.StatusForbidden || errCode(r) != "not_admin" {
			t.Errorf("%s %s as non-admin: %d %v", rt.Method, rt.Path, r.Status, r.Body)
		}
		if r := f.call(t, "garbage", rt.Method, path, map[string]any{}); r.Status != http.StatusUnauthorized {
			t.Errorf("%s %s with a bad token: %d", rt.Method, rt.Path, r.Status)
		}
	}
	if auditCount(t, f.srv, "", "") != before {
		t.Fatal("refused calls changed the audit log")
	}
	if r := f.call(t, f.adminToken, "GET", "/admin/users", nil); r.Status != 200 {
		t.Fatalf("admin: %d %v", r.Status, r.Body)
	}
}

// TestAdminRemovalAndResetApproval: both write an audit event naming the
// admin; approval closes the request.
func TestAdminRemovalAndResetApproval(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newAdminFixture(t, st)
		ctx := context.Background()
		r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa", nil)
		if r.Status != http.StatusNoContent || hasTOTP(t, f.srv, f.bob) {
			t.Fatalf("admin removal: %d %v", r.Status, r.Body)
		}
		evs, _ := st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "mfa.totp.removed", SubjectID: f.bob.ID})
		if len(evs) != 1 || evs[0].ActorType != "admin" || evs[0].ActorID != f.admin.ID || !strings.Contains(evs[0].Details, `"by":"admin"`) {
			t.Fatalf("audit of admin removal: %+v", evs)
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa", nil); r.Status != http.StatusConflict {
			t.Fatalf("second removal: %d", r.Status)
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/nobody/mfa", nil); r.Status != http.StatusNotFound {
			t.Fatalf("unknown user: %d", r.Status)
		}

		carl := f.srv.createUser(t, "carl", true)
		if err := st.CreateResetRequest(ctx, store.ResetRequest{ID: "rr-1", UserID: carl.ID, Status: store.ResetOpen, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		list := f.call(t, f.adminToken, "GET", "/admin/reset-requests", nil)
		if rs, _ := list.Body["reset_requests"].([]any); len(rs) != 1 {
			t.Fatalf("open requests: %v", list.Body)
		}
		if r := f.call(t, f.adminToken, "POST", "/admin/reset-requests/rr-1/approve", nil); r.Status != http.StatusNoContent {
			t.Fatalf("approve: %d %v", r.Status, r.Body)
		}
		if hasTOTP(t, f.srv, carl) {
			t.Fatal("approval must remove the 2SV")
		}
		rr, _ := st.GetResetRequest(ctx, "rr-1")
		evs, _ = st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "mfa.reset.approved", SubjectID: carl.ID})
		if rr.Status != store.ResetApproved || rr.DecidedBy != f.admin.ID || len(evs) != 1 || evs[0].ActorID != f.admin.ID {
			t.Fatalf("request closed and audited: %+v %+v", rr, evs)
		}
		if r := f.call(t, f.adminToken, "POST", "/admin/reset-requests/rr-1/deny", nil); r.Status != http.StatusConflict {
			t.Fatalf("deciding twice: %d", r.Status)
		}
	})
}

// TestAdminPoliciesAndGroups: default off; assignment changes effective
// policy; conflicts and optimistic versions.
func TestAdminPoliciesAndGroups(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	tok := f.adminToken
	// A fresh deployment allows no self-removal.
	if r := f.call(t, tok, "GET", "/admin/users/"+f.bob.ID, nil); r.Body["effective_policy"].(map[string]any)["self_service_removal"] != false {
		t.Fatalf("fresh deployment: %v", r.Body)
	}
	p := f.call(t, tok, "POST", "/admin/policies", map[string]any{"name": "Low risk"})
	if p.Status != http.StatusCreated || p.Body["allow_self_service_mfa_removal"] != false || p.Body["require_mfa"] != true || p.Body["step_up_max_age"] != float64(300) ||
		!slices.Equal(anyStrings(p.Body["allowed_methods"]), []string{"totp", "passkey"}) {
		t.Fatalf("new policy defaults: %d %v", p.Status, p.Body)
	}
	pid := p.Body["id"].(string)
	g := f.call(t, tok, "POST", "/admin/groups", map[string]any{"name": "Staff"})
	gid := g.Body["id"].(string)
	if r := f.call(t, tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"user_id": f.bob.ID}); r.Status != http.StatusNoContent {
		t.Fatalf("add member: %d %v", r.Status, r.Body)
	}
	if r := f.call(t, tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"user_id": f.bob.ID}); r.Status != http.StatusConflict {
		t.Fatalf("add member twice: %d", r.Status)
	}
	if r := f.call(t, tok, "PUT", "/admin/groups/"+gid+"/policy", map[string]any{"policy_id": pid}); r.Status != http.StatusNoContent {
		t.Fatalf("assign: %d %v", r.Status, r.Body)
	}
	up := f.call(t, tok, "PUT", "/admin/policies/"+pid, map[string]any{"version": 1, "allow_self_service_mfa_removal": true})
	if up.Status != 200 || up.Body["version"] != float64(2) || up.Body["allow_self_service_mfa_removal"] != true {
		t.Fatalf("update: %d %v", up.Status, up.Body)
	}
	if r := f.call(t, tok, "PUT", "/admin/policies/"+pid, map[string]any{"version": 1, "name": "Stale"}); r.Status != http.StatusConflict || errCode(r) != "version_conflict" {
		t.Fatalf("stale update: %d %v", r.Status, r.Body)
	}
	eff := f.call(t, tok, "GET", "/admin/users/"+f.bob.ID, nil).Body["effective_policy"].(map[string]any)
	if eff["self_service_removal"] != true || !strings.Contains(eff["reason"].(string), "Low risk, through group Staff") {
		t.Fatalf("effective policy after assignment: %v", eff)
	}
	if r := f.call(t, tok, "DELETE", "/admin/policies/"+pid, nil); r.Status != http.StatusConflict || errCode(r) != "policy_assigned" {
		t.Fatalf("delete assigned: %d %v", r.Status, r.Body)
	}
	if r := f.call(t, tok, "DELETE", "/admin/policies/policy_default", nil); r.Status != http.StatusConflict {
		t.Fatalf("delete default: %d", r.Status)
	}
	if r := f.call(t, tok, "DELETE", "/admin/groups/"+gid+"/policy", nil); r.Status != http.StatusNoContent {
		t.Fatalf("unassign: %d", r.Status)
	}
	if r := f.call(t, tok, "DELETE", "/admin/policies/"+pid, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %v", r.Status, r.Body)
	}
	if keys := f.call(t, tok, "PUT", "/admin/policies/policy_default", map[string]any{"version": 1, "allowed_methods": []string{"passkey"}}); keys.Status != http.StatusOK ||
		!slices.Equal(anyStrings(keys.Body["allowed_methods"]), []string{"passkey"}) {
		t.Fatalf("a keys-only policy: %d %v", keys.Status, keys.Body)
	}
	for _, typ := range []string{"policy.created", "policy.assigned", "policy.unassigned", "policy.deleted", "group.created", "group.member.added"} {
		if auditCount(t, f.srv, typ, "") != 1 {
			t.Errorf("want one %s audit event", typ)
		}
	}
	if n := auditCount(t, f.srv, "policy.updated", ""); n != 2 {
		t.Errorf("want two policy.updated events, got %d", n)
	}
}

// TestAdminBadInput: every write endpoint refuses malformed input with 4xx
// and field details, and changes nothing.
func TestAdminBadInput(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	tok := f.adminToken
	g := f.call(t, tok, "POST", "/admin/groups", map[string]any{"name": "G"})
	gid := g.Body["id"].(string)
	pid := f.call(t, tok, "POST", "/admin/policies", map[string]any{"name": "P"}).Body["id"].(string)
	cid := f.call(t, tok, "POST", "/admin/clients", map[string]any{"name": "C", "redirect_uris": []string{"https://c.example.com/cb"}}).Body["client_id"].(string)
	huge := strings.Repeat("x", 70<<10)
	cases := []struct {
		method, path string
		body         any
		status       int
		field        string
	}{
		{"POST", "/admin/users", map[string]any{}, 422, "username"},
		{"POST", "/admin/users", map[string]any{"username": "x", "password": "short"}, 422, "password"},
		{"POST", "/admin/users", map[string]any{"username": 5, "password": "longenough"}, 422, "username"},
		{"POST", "/admin/users", map[string]any{"username": "x", "password": "longenough", "role": "root"}, 422, "role"},
		{"POST", "/admin/users", map[string]any{"username": "x", "password": "longenough", "email": "not-an-email"}, 422, "email"},
		{"POST", "/admin/users", map[string]any{"username": huge, "password": "longenough"}, 413, ""},
		{"PATCH", "/admin/users/" + f.bob.ID, map[string]any{"disabled": "yes"}, 422, "disabled"},
		{"POST", "/admin/groups", map[string]any{"name": ""}, 422, "name"},
		{"POST", "/admin/groups/" + gid + "/members", map[string]any{}, 422, "user_id"},
		{"POST", "/admin/groups/" + gid + "/members", map[string]any{"user_id": "nobody"}, 404, ""},
		{"PUT", "/admin/groups/" + gid + "/policy", map[string]any{"policy_id": "nope"}, 422, "policy_id"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "step_up_max_age": 1}, 422, "step_up_max_age"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "reenroll": "later"}, 422, "reenroll"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "require_mfa": "true"}, 422, "require_mfa"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "allowed_methods": []string{}}, 422, "allowed_methods"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "allowed_methods": []string{"sms"}}, 422, "allowed_methods"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "allowed_methods": []string{"passkey", "passkey"}}, 422, "allowed_methods"},
		{"POST", "/admin/policies", map[string]any{"name": "Q", "allowed_methods": []string{"pаsskey"}}, 422, "allowed_methods"}, // Cyrillic а
		{"POST", "/admin/policies", map[string]any{"name": "Q", "allowed_methods": "passkey"}, 422, "allowed_methods"},
		{"PUT", "/admin/policies/" + pid, map[string]any{"name": "Q"}, 422, "version"},
		{"PUT", "/admin/policies/nope", map[string]any{"version": 1}, 404, ""},
		{"POST", "/admin/clients", map[string]any{"name": "D", "redirect_uris": []string{"http://evil.example.com/cb"}}, 422, "redirect_uris"},
		{"POST", "/admin/clients", map[string]any{"name": "D", "grant_types": []string{"password"}, "redirect_uris": []string{"https://d/cb"}}, 422, "grant_types"},
		{"POST", "/admin/clients", map[string]any{"name": "D", "redirect_uris": []string{"https://d/cb"}, "scopes": []string{"superuser"}}, 422, "scopes"},
		{"POST", "/admin/clients", map[string]any{"name": "D", "redirect_uris": []string{"https://d/cb"}, "public": true, "pkce_optional": true}, 422, "pkce_optional"},
		{"POST", "/admin/clients", map[string]any{"name": "D", "redirect_uris": []string{"https://d/cb"}, "access_token_format": "JWT"}, 422, "access_token_format"},
		{"POST", "/admin/clients", map[string]any{"name": "D", "redirect_uris": []string{"https://d/cb"}, "access_token_format": "jwt\u0000"}, 400, ""},
		{"PATCH", "/admin/clients/" + cid, map[string]any{"redirect_uris": []string{"https://ok/cb#frag"}}, 422, "redirect_uris"},
		{"PATCH", "/admin/clients/" + cid, map[string]any{"redirect_uris": []string{}}, 422, "redirect_uris"},
	}
	before := auditCount(t, f.srv, "", "")
	for _, tc := range cases {
		r := f.call(t, tok, tc.method, tc.path, tc.body)
		fields, _ := r.Body["fields"].(map[string]any)
		if r.Status != tc.status || (tc.field != "" && fields[tc.field] == nil) {
			t.Errorf("%s %s %v: want %d with field %q, got %d %v", tc.method, tc.path, tc.body, tc.status, tc.field, r.Status, r.Body)
		}
	}
	// Malformed JSON and the wrong content type.
	req, _ := http.NewRequest("POST", f.srv.URL+"/admin/groups", strings.NewReader(`{"name": "x"`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", f.srv.URL+"/admin/groups", strings.NewReader(`name=x`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form body: %d", resp.StatusCode)
	}
	if auditCount(t, f.srv, "", "") != before {
		t.Fatal("bad input changed something")
	}
	if gs := f.call(t, tok, "GET", "/admin/groups", nil).Body["groups"].([]any); len(gs) != 1 { // only G
		t.Fatalf("groups: %v", gs)
	}
}

// TestAdminAutomationAndClients: a client-credentials client with the admin
// scope uses the API; created secrets are shown once and work.
func TestAdminAutomationAndClients(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	ctx := context.Background()
	c := f.call(t, f.adminToken, "POST", "/admin/clients", map[string]any{"name": "Automation", "first_party": true, "grant_types": []string{"client_credentials"}, "scopes": []string{"admin"}})
	secret, _ := c.Body["client_secret"].(string)
	if c.Status != http.StatusCreated || len(secret) < 43 {
		t.Fatalf("create client: %d %v", c.Status, c.Body)
	}
	if list := f.call(t, f.adminToken, "GET", "/admin/clients", nil); strings.Contains(mustJSON(list.Body), secret) {
		t.Fatal("the secret must be shown only once")
	}
	cc := clientcredentials.Config{ClientID: c.Body["client_id"].(string), ClientSecret: secret, TokenURL: f.srv.URL + "/oauth2/token", Scopes: []string{"admin"}}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := f.call(t, tok.AccessToken, "POST", "/admin/users", map[string]any{"username": "robot-made", "password": "a-long-password"})
	if u.Status != http.StatusCreated {
		t.Fatalf("automation: %d %v", u.Status, u.Body)
	}
	evs, _ := f.srv.app.store.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "user.created"})
	if len(evs) != 1 || evs[0].ActorID != "client:"+cc.ClientID {
		t.Fatalf("audit actor for automation: %+v", evs)
	}
	keys := f.call(t, f.adminToken, "POST", "/admin/keys/rotate", nil)
	if keys.Status != 200 || auditCount(t, f.srv, "key.rotated", "") != 1 {
		t.Fatalf("rotate: %d %v", keys.Status, keys.Body)
	}
	list := f.call(t, f.adminToken, "GET", "/admin/keys", nil).Body["keys"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["kid"] != keys.Body["kid"] {
		t.Fatalf("keys: %v", list)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestOpenAPIMatchesRouter: every documented route is mounted and every
// mounted admin or account API route is documented.
func TestOpenAPIMatchesRouter(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t))
	mounted := adminRoutes(t, srv)
	key := func(r apidoc.Route) string { return r.Method + " " + r.Path }
	var have, doc []string
	for _, r := range mounted {
		have = append(have, key(r))
	}
	for _, r := range slices.Concat(admin.Routes, selfservice.Routes) {
		doc = append(doc, key(r))
	}
	for _, d := range doc {
		if !slices.Contains(have, d) {
			t.Errorf("documented but not mounted: %s", d)
		}
	}
	for _, h := range have {
		if !slices.Contains(doc, h) {
			t.Errorf("mounted but not documented: %s", h)
		}
	}
	var spec struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	p := newBrowser(t, srv.URL).get(srv.URL + "/admin/openapi.json")
	if err := json.Unmarshal([]byte(p.Body), &spec); err != nil || spec.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json: %v %v", err, spec.OpenAPI)
	}
	// Every documented operation is in the document; schemas come from
	// the handlers' types (a field renamed in Go is renamed here).
	n := 0
	for _, ops := range spec.Paths {
		n += len(ops)
	}
	if n != len(doc) {
		t.Errorf("the document has %d operations, the tables %d", n, len(doc))
	}
	put := spec.Paths["/account/mfa/disable"]["put"]
	if put["x-step-up"] != "remove" || put["requestBody"] == nil {
		t.Fatalf("PUT /account/mfa/disable: %v", put)
	}
	policyProps, _ := spec.Components.Schemas["Policy"]["properties"].(map[string]any)
	if policyProps["allowed_methods"] == nil || policyProps["allow_self_service_mfa_removal"] == nil {
		t.Fatalf("the Policy schema is not the handler's type: %v", spec.Components.Schemas["Policy"])
	}
	lintOpenAPI(t, []byte(p.Body))
}

// lintOpenAPI runs Redocly's linter (npm @redocly/cli, installed by
// scripts/test.sh into .tools/) over the document: zero errors. Outside
// CI a missing linter skips this step; under CI=true it fails.
func lintOpenAPI(t *testing.T, doc []byte) {
	t.Helper()
	bin, err := filepath.Abs("../../.tools/node_modules/.bin/redocly")
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the OpenAPI linter is required under CI=true (scripts/test.sh installs it): %v", err)
		}
		t.Log("OpenAPI lint skipped: run scripts/test.sh to install @redocly/cli")
		return
	}
	file := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "lint", "--format", "stylish", file)
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redocly lint found errors:\n%s", out)
	}
	t.Logf("redocly lint:\n%s", out)
}

// TestAuditQueryExportVerify: sign-in events are on record; admins query
// with filters and a cursor, export JSON Lines, and verification finds a
// forged event.
func TestAuditQueryExportVerify(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newAdminFixture(t, st) // two successful sign-ins (ada, bob)
		ctx := context.Background()
		tok := f.adminToken
		// A failed password and a used recovery code, from a browser.
		r := newRP(t, f.srv, f.srv.createClient(t, "aud", false, true))
		b := newBrowser(t, f.srv.URL)
		b.submit(toLogin(t, b, r), map[string]string{"username": "bob", "password": "wrong"})
		p := b.submit(toLogin(t, b, r), map[string]string{"username": "bob", "password": f.bob.Password})
		b.submit(p, map[string]string{"code": f.bob.Recovery[0]})

		q := f.call(t, tok, "GET", "/admin/audit?type=auth.login.&subject="+f.bob.ID, nil)
		evs, _ := q.Body["events"].([]any)
		outcomes := map[string]int{}
		for _, e := range evs {
			outcomes[e.(map[string]any)["type"].(string)]++
		}
		if outcomes["auth.login.succeeded"] != 2 {
			t.Fatalf("bob's sign-ins on record: %v", outcomes)
		}
		if n := auditCount(t, f.srv, "auth.login.failed", ""); n != 1 {
			t.Fatalf("failed sign-in on record: %d", n)
		}
		if n := auditCount(t, f.srv, "mfa.recovery_code.used", f.bob.ID); n != 1 {
			t.Fatalf("recovery code use on record: %d", n)
		}
		// Cursor pagination walks everything exactly once.
		var seen []float64
		next := ""
		for i := 0; i < 20; i++ {
			page := f.call(t, tok, "GET", "/admin/audit?limit=2&after="+next, nil)
			for _, e := range page.Body["events"].([]any) {
				seen = append(seen, e.(map[string]any)["id"].(float64))
			}
			n, ok := page.Body["next"].(string)
			if !ok {
				break
			}
			next = n
		}
		all, _ := st.ListAuditEvents(ctx, store.AuditFilter{})
		if len(seen) != len(all) || !slices.IsSorted(seen) {
			t.Fatalf("cursor walk saw %d of %d events", len(seen), len(all))
		}
		if bad := f.call(t, tok, "GET", "/admin/audit?since=yesterday&limit=0", nil); bad.Status != http.StatusUnprocessableEntity || len(bad.Body["fields"].(map[string]any)) != 2 {
			t.Fatalf("bad filters: %d %v", bad.Status, bad.Body)
		}
		exp := newBrowser(t, f.srv.URL)
		req, _ := http.NewRequest("GET", f.srv.URL+"/admin/audit/export", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := exp.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		lines := 0
		for dec.More() {
			var e map[string]any
			if err := dec.Decode(&e); err != nil {
				t.Fatal(err)
			}
			lines++
		}
		if resp.Header.Get("Content-Type") != "application/x-ndjson" || lines != len(all) {
			t.Fatalf("export: %s, %d lines for %d events", resp.Header.Get("Content-Type"), lines, len(all))
		}
		if v := f.call(t, tok, "GET", "/admin/audit/verify", nil); v.Body["ok"] != true || v.Body["checked"] != float64(len(all)) {
			t.Fatalf("verify intact: %v", v.Body)
		}
		forged := store.AuditEvent{Time: time.Now(), Type: "mfa.totp.removed", Outcome: "success", SubjectID: "x", Details: "{}", PrevHash: "deadbeef"}
		id, err := st.InsertAuditEvent(ctx, forged)
		if err != nil {
			t.Fatal(err)
		}
		v := f.call(t, tok, "GET", "/admin/audit/verify", nil)
		if broken, _ := v.Body["broken"].(map[string]any); v.Body["ok"] != false || broken["event_id"] != float64(id) {
			t.Fatalf("verify must name the forged event %d: %v", id, v.Body)
		}
		te := f.call(t, tok, "GET", "/admin/token-events?client=console", nil)
		if evs, _ := te.Body["events"].([]any); len(evs) < 2 {
			t.Fatalf("token events for the console client: %v", te.Body)
		}
	})
}

// TestEveryAdminMutationIsAudited enumerates the mutating /admin routes
// from the router; each must have a valid call here (so a new route cannot
// be forgotten) and that call must add an audit event.
func TestEveryAdminMutationIsAudited(t *testing.T) {
	type call struct {
		path string
		body any
	}
	// Each builds a valid call on a fresh fixture.
	calls := map[string]func(t *testing.T, f *adminFixture) call{
		"POST /admin/users": func(*testing.T, *adminFixture) call {
			return call{"/admin/users", map[string]any{"username": "new-user", "password": "a-long-password"}}
		},
		"PATCH /admin/users/{id}": func(_ *testing.T, f *adminFixture) call {
			return call{"/admin/users/" + f.bob.ID, map[string]any{"display_name": "Robert"}}
		},
		"DELETE /admin/users/{id}/mfa": func(_ *testing.T, f *adminFixture) call { return call{"/admin/users/" + f.bob.ID + "/mfa", nil} },
		"DELETE /admin/users/{id}/mfa/methods/{method}": func(t *testing.T, f *adminFixture) call {
			if _, err := f.srv.app.store.GetTOTP(context.Background(), f.bob.ID); err != nil { // an earlier call removed it
				if _, err := f.srv.app.authn.EnrollTOTP(context.Background(), f.srv.app.store, f.bob.ID, authn.NewTOTPSecret(), 0); err != nil {
					t.Fatal(err)
				}
			}
			return call{"/admin/users/" + f.bob.ID + "/mfa/methods/totp", nil}
		},
		"POST /admin/groups": func(*testing.T, *adminFixture) call { return call{"/admin/groups", map[string]any{"name": "Ops"}} },
		"POST /admin/groups/{id}/members": func(t *testing.T, f *adminFixture) call {
			return call{"/admin/groups/" + mkGroup(t, f) + "/members", map[string]any{"user_id": f.bob.ID}}
		},
		"DELETE /admin/groups/{id}/members/{userID}": func(t *testing.T, f *adminFixture) call {
			g := mkGroup(t, f)
			f.call(t, f.adminToken, "POST", "/admin/groups/"+g+"/members", map[string]any{"user_id": f.bob.ID})
			return call{"/admin/groups/" + g + "/members/" + f.bob.ID, nil}
		},
		"POST /admin/groups/{id}/admins": func(t *testing.T, f *adminFixture) call {
			return call{"/admin/groups/" + mkGroup(t, f) + "/admins", map[string]any{"user_id": f.admin.ID}}
		},
		"DELETE /admin/groups/{id}/admins/{userID}": func(t *testing.T, f *adminFixture) call {
			g := mkGroup(t, f)
			f.call(t, f.adminToken, "POST", "/admin/groups/"+g+"/admins", map[string]any{"user_id": f.admin.ID})
			return call{"/admin/groups/" + g + "/admins/" + f.admin.ID, nil}
		},
		"PUT /admin/groups/{id}/policy": func(t *testing.T, f *adminFixture) call {
			return call{"/admin/groups/" + mkGroup(t, f) + "/policy", map[string]any{"policy_id": "policy_default"}}
		},
		"DELETE /admin/groups/{id}/policy": func(t *testing.T, f *adminFixture) call {
			g := mkGroup(t, f)
			f.call(t, f.adminToken, "PUT", "/admin/groups/"+g+"/policy", map[string]any{"policy_id": "policy_default"})
			return call{"/admin/groups/" + g + "/policy", nil}
		},
		"POST /admin/policies": func(*testing.T, *adminFixture) call { return call{"/admin/policies", map[string]any{"name": "P"}} },
		"PUT /admin/policies/{id}": func(*testing.T, *adminFixture) call {
			return call{"/admin/policies/policy_default", map[string]any{"version": 1, "step_up_max_age": 120}}
		},
		"DELETE /admin/policies/{id}": func(t *testing.T, f *adminFixture) call {
			p := f.call(t, f.adminToken, "POST", "/admin/policies", map[string]any{"name": "Doomed"})
			return call{"/admin/policies/" + p.Body["id"].(string), nil}
		},
		"POST /admin/reset-requests/{id}/approve": func(t *testing.T, f *adminFixture) call {
			return call{"/admin/reset-requests/" + mkReset(t, f) + "/approve", nil}
		},
		"POST /admin/reset-requests/{id}/deny": func(t *testing.T, f *adminFixture) call {
			return call{"/admin/reset-requests/" + mkReset(t, f) + "/deny", nil}
		},
		"POST /admin/clients": func(*testing.T, *adminFixture) call {
			return call{"/admin/clients", map[string]any{"name": "X", "redirect_uris": []string{"https://x.example.com/cb"}}}
		},
		"PATCH /admin/clients/{id}": func(*testing.T, *adminFixture) call {
			return call{"/admin/clients/console", map[string]any{"redirect_uris": []string{"https://console.example.com/cb"}}}
		},
		"DELETE /admin/clients/{id}": func(*testing.T, *adminFixture) call { return call{"/admin/clients/claims-free", nil} },
		// A preview changes nothing, so it is checked for that instead.
		"POST /admin/keys/rotate": func(*testing.T, *adminFixture) call { return call{"/admin/keys/rotate", nil} },
		"POST /admin/users/{id}/reset-link": func(_ *testing.T, f *adminFixture) call {
			return call{"/admin/users/" + f.bob.ID + "/reset-link", nil}
		},
	}
	st := testdb.SQLite(t)
	f := newAdminFixture(t, st)
	f.srv.createClient(t, "claims-free", false, true)
	for _, rt := range adminRoutes(t, f.srv) {
		if rt.Method == "GET" || !strings.HasPrefix(rt.Path, "/admin/") {
			continue
		}
		key := rt.Method + " " + rt.Path
		if key == "POST /admin/policies/{id}/preview" {
			before := auditCount(t, f.srv, "", "")
			if r := f.call(t, f.adminToken, "POST", "/admin/policies/policy_default/preview", map[string]any{"allow_self_service_mfa_removal": true}); r.Status != 200 || auditCount(t, f.srv, "", "") != before {
				t.Errorf("preview must answer and change nothing: %d", r.Status)
			}
			continue
		}
		mk, ok := calls[key]
		if !ok {
			t.Errorf("mutating route %s has no audit check: add one", key)
			continue
		}
		c := mk(t, f)
		before := auditCount(t, f.srv, "", "")
		r := f.call(t, f.adminToken, rt.Method, c.path, c.body)
		if r.Status >= 300 {
			t.Errorf("%s: %d %v", key, r.Status, r.Body)
			continue
		}
		if after := auditCount(t, f.srv, "", ""); after <= before {
			t.Errorf("%s changed state without an audit event", key)
		}
	}
}

func mkGroup(t *testing.T, f *adminFixture) string {
	t.Helper()
	g := f.call(t, f.adminToken, "POST", "/admin/groups", map[string]any{"name": "g-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")})
	id, ok := g.Body["id"].(string)
	if !ok {
		t.Fatalf("create group: %v", g.Body)
	}
	return id
}

func mkReset(t *testing.T, f *adminFixture) string {
	t.Helper()
	u := f.srv.createUser(t, "r"+strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""), true)
	id := "rr-" + u.ID
	if err := f.srv.app.store.CreateResetRequest(context.Background(), store.ResetRequest{ID: id, UserID: u.ID, Status: store.ResetOpen, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAdminBadInputEveryWriteRoute: every route that reads a JSON body,
// taken from the router, refuses unknown fields (422 naming the field),
// oversize bodies (413) and non-JSON (415), and changes nothing.
func TestAdminBadInputEveryWriteRoute(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	g := f.call(t, f.adminToken, "POST", "/admin/groups", map[string]any{"name": "G"}).Body["id"].(string)
	bodyless := map[string]bool{"POST /admin/reset-requests/{id}/approve": true, "POST /admin/reset-requests/{id}/deny": true, "POST /admin/keys/rotate": true, "POST /admin/users/{id}/reset-link": true}
	before := auditCount(t, f.srv, "", "")
	n := 0
	for _, rt := range adminRoutes(t, f.srv) {
		if rt.Method == "GET" || rt.Method == "DELETE" || !strings.HasPrefix(rt.Path, "/admin/") || bodyless[rt.Method+" "+rt.Path] {
			continue
		}
		n++
		path := strings.NewReplacer("{id}", g, "{userID}", f.bob.ID).Replace(rt.Path)
		if strings.HasPrefix(rt.Path, "/admin/users/{id}") {
			path = strings.Replace(rt.Path, "{id}", f.bob.ID, 1)
		}
		if strings.HasPrefix(rt.Path, "/admin/policies/{id}") {
			path = strings.Replace(rt.Path, "{id}", "policy_default", 1)
		}
		if strings.HasPrefix(rt.Path, "/admin/clients/{id}") {
			path = strings.Replace(rt.Path, "{id}", "console", 1)
		}
		r := f.call(t, f.adminToken, rt.Method, path, map[string]any{"bogus_field": 1})
		if fields, _ := r.Body["fields"].(map[string]any); r.Status != http.StatusUnprocessableEntity || fields["bogus_field"] == nil {
			t.Errorf("%s %s unknown field: %d %v", rt.Method, rt.Path, r.Status, r.Body)
		}
		if r := f.call(t, f.adminToken, rt.Method, path, map[string]any{"name": strings.Repeat("x", 70<<10)}); r.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s oversize: %d", rt.Method, rt.Path, r.Status)
		}
		req, _ := http.NewRequest(rt.Method, f.srv.URL+path, strings.NewReader("a=b"))
		req.Header.Set("Authorization", "Bearer "+f.adminToken)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s %s form body: %v %v", rt.Method, rt.Path, err, resp.Status)
		}
	}
	if n < 10 {
		t.Fatalf("only %d body-taking routes found", n)
	}
	if auditCount(t, f.srv, "", "") != before {
		t.Fatal("bad input changed something")
	}
}

// flakyAudit is the real store whose audit inserts fail while fail is set,
// as when the audit table is unavailable.
type flakyAudit struct {
	store.Store
	fail *atomic.Bool
}

func (f flakyAudit) InTx(ctx context.Context, fn func(store.Queries) error) error {
	return f.Store.InTx(ctx, func(q store.Queries) error { return fn(flakyQueries{q, f.fail}) })
}

type flakyQueries struct {
	store.Queries
	fail *atomic.Bool
}

func (q flakyQueries) InsertAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	if q.fail.Load() {
		return 0, errors.New("forced: audit log unavailable")
	}
	return q.Queries.InsertAuditEvent(ctx, e)
}

// TestAuditFailureRollsBackChanges: when the audit insert fails, a policy
// update, an admin removal and a self-service removal all leave no trace.
func TestAuditFailureRollsBackChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, real store.Store) {
		fail := &atomic.Bool{}
		f := newAdminFixture(t, flakyAudit{real, fail})
		ctx := context.Background()
		eve := f.srv.createUser(t, "eve", true)
		f.srv.policyGroup(t, "Staff", true, eve)
		b := newBrowser(t, f.srv.URL)
		portalLogin(t, b, f.srv, eve)
		stepUp(t, b, f.srv, eve, "remove")
		csrf := map[string]string{"X-CSRF-Token": csrfToken(t, b, f.srv)}
		in := b.api(t, "POST", f.srv.URL+"/account/mfa/disable", nil, csrf)

		fail.Store(true)
		if r := f.call(t, f.adminToken, "PUT", "/admin/policies/policy_default", map[string]any{"version": 1, "allow_self_service_mfa_removal": true}); r.Status != 500 {
			t.Errorf("policy update without audit: %d %v", r.Status, r.Body)
		}
		if p, _ := real.GetPolicy(ctx, "policy_default"); p.Version != 1 || p.AllowSelfServiceRemoval {
			t.Errorf("policy changed without its audit event: %+v", p)
		}
		if r := f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa", nil); r.Status != 500 || !hasTOTP(t, f.srv, f.bob) {
			t.Errorf("admin removal without audit: %d, 2SV kept=%v", r.Status, hasTOTP(t, f.srv, f.bob))
		}
		r := b.api(t, "PUT", f.srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf)
		if r.Status != 500 || !hasTOTP(t, f.srv, eve) {
			t.Errorf("self-service removal without audit: %d, 2SV kept=%v", r.Status, hasTOTP(t, f.srv, eve))
		}
		fail.Store(false)
		if r := b.api(t, "PUT", f.srv.URL+"/account/mfa/disable", map[string]any{"unlink_id": in.Body["unlink_id"], "choice": "yes"}, csrf); r.Status != 200 || hasTOTP(t, f.srv, eve) {
			t.Errorf("with the audit log back the same confirmation completes: %d %v", r.Status, r.Body)
		}
	})
}

// TestAdminNotifications: a group's admins see removals and reset requests
// of their members, not of others.
func TestAdminNotifications(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	ctx := context.Background()
	dan := f.srv.createUser(t, "dan", true)
	g, _ := f.srv.policyGroup(t, "Team", false, dan)
	if err := f.srv.app.store.AddGroupAdmin(ctx, g.ID, f.admin.ID); err != nil {
		t.Fatal(err)
	}
	// Dan asks for a reset from the portal; Bob (not in Team) loses 2SV.
	b := newBrowser(t, f.srv.URL)
	portalLogin(t, b, f.srv, dan)
	if r := b.api(t, "POST", f.srv.URL+"/account/mfa/reset-request", map[string]string{"message": "lost phone"}, map[string]string{"X-CSRF-Token": csrfToken(t, b, f.srv)}); r.Status != http.StatusCreated {
		t.Fatalf("reset request: %d %v", r.Status, r.Body)
	}
	f.call(t, f.adminToken, "DELETE", "/admin/users/"+f.bob.ID+"/mfa", nil)
	n := f.call(t, f.adminToken, "GET", "/admin/notifications", nil)
	items, _ := n.Body["notifications"].([]any)
	if n.Status != 200 || len(items) != 1 || items[0].(map[string]any)["subject_id"] != dan.ID || items[0].(map[string]any)["type"] != "mfa.reset.requested" {
		t.Fatalf("notifications: %d %v", n.Status, n.Body)
	}
}

// TestPolicyPreviewMatchesEvaluate: the preview's numbers are what the
// effective policies become once the change is saved.
func TestPolicyPreviewMatchesEvaluate(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	var staff []user
	for _, n := range []string{"p1", "p2", "p3", "p4"} {
		staff = append(staff, f.srv.createUser(t, n, true))
	}
	_, eng := f.srv.policyGroup(t, "Engineering", false, staff...)
	f.srv.policyGroup(t, "FinanceAdmins", false, staff[3])
	pv := f.call(t, f.adminToken, "POST", "/admin/policies/"+eng.ID+"/preview", map[string]any{"allow_self_service_mfa_removal": true})
	if pv.Status != 200 || pv.Body["users"] != float64(4) || pv.Body["removal_allowed"] != float64(3) ||
		pv.Body["summary"] != "3 users would be allowed to remove their own 2SV; 1 stay admin-only through policy FinanceAdmins, through group FinanceAdmins." {
		t.Fatalf("preview: %d %v", pv.Status, pv.Body)
	}
	if r := f.call(t, f.adminToken, "PUT", "/admin/policies/"+eng.ID, map[string]any{"version": 1, "allow_self_service_mfa_removal": true}); r.Status != 200 {
		t.Fatalf("save: %d %v", r.Status, r.Body)
	}
	allowed := 0
	for _, u := range staff {
		eff := f.call(t, f.adminToken, "GET", "/admin/users/"+u.ID, nil).Body["effective_policy"].(map[string]any)
		if eff["self_service_removal"] == true {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after saving, %d users may remove their 2SV; the preview said 3", allowed)
	}
}

// TestAdminAuditCheckpointAndProof: the newest signed checkpoint and an
// event's inclusion proof, checked with the library's verifier against
// the checkpoint's root; unsealed events are pending.
func TestAdminAuditCheckpointAndProof(t *testing.T) {
	f := newAdminFixture(t, testdb.SQLite(t))
	ctx := context.Background()
	evs, _ := f.srv.app.store.ListAuditEvents(ctx, store.AuditFilter{Limit: 1000})
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	id := fmt.Sprint(evs[len(evs)-1].ID)
	if got := f.call(t, f.adminToken, "GET", "/admin/audit/events/"+id+"/proof", nil); got.Status != http.StatusConflict || errCode(got) != "pending" {
		t.Fatalf("before sealing: %d %v", got.Status, got.Body)
	}
	if _, _, err := audit.Seal(ctx, f.srv.app.store, f.srv.app.ledger, 1000, time.Now()); err != nil {
		t.Fatal(err)
	}
	cp := f.call(t, f.adminToken, "GET", "/admin/audit/checkpoint", nil)
	note, _ := cp.Body["checkpoint"].(string)
	if cp.Status != 200 || !strings.Contains(note, "/audit\n") || cp.Body["verifier_key"] != f.srv.app.auditKey {
		t.Fatalf("checkpoint: %d %v", cp.Status, cp.Body)
	}
	pr := f.call(t, f.adminToken, "GET", "/admin/audit/events/"+id+"/proof", nil)
	if pr.Status != 200 {
		t.Fatalf("proof: %d %v", pr.Status, pr.Body)
	}
	var body struct {
		LeafIndex uint64   `json:"leaf_index"`
		TreeSize  uint64   `json:"tree_size"`
		Root      []byte   `json:"root"`
		LeafData  string   `json:"leaf_data"`
		Path      [][]byte `json:"inclusion_path"`
	}
	raw, _ := json.Marshal(pr.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, body.LeafIndex, body.TreeSize, rfc6962.DefaultHasher.HashLeaf([]byte(body.LeafData)), body.Path, body.Root); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	if c, err := f.srv.app.ledger.Open([]byte(note)); err != nil || !bytes.Equal(c.Root, body.Root) || c.Size != body.TreeSize {
		t.Fatalf("the proof's root is the signed checkpoint's: %v", err)
	}
	for _, bad := range []string{"0", "-1", "abc", "99999999"} {
		if got := f.call(t, f.adminToken, "GET", "/admin/audit/events/"+bad+"/proof", nil); got.Status != http.StatusUnprocessableEntity && got.Status != http.StatusNotFound {
			t.Errorf("proof of %q: %d", bad, got.Status)
		}
	}
	if v := f.call(t, f.adminToken, "GET", "/admin/audit/verify", nil); v.Status != 200 || v.Body["ok"] != true {
		t.Fatalf("verify: %v", v.Body)
	}
}
