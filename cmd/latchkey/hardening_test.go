package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
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

// TestDatabaseOutageIs503: connections dropped under a running server
// (a restart, a failover) are replaced without an error; while PostgreSQL
// cannot be reached, API clients get 503 with Retry-After — never 401,
// never "active": false — and everything recovers without a restart when
// it is back.
func TestDatabaseOutageIs503(t *testing.T) {
	proxy, st := testdb.PostgresBehindProxy(t, 8, nil)
	srv := startServer(t, st)
	uma := srv.createUser(t, "uma", true)
	app := srv.accountClient(t, "mobile", true)
	r := newRP(t, srv, app)
	r.conf.Scopes = []string{"openid", "account"}
	tok, _ := signInTo(t, newBrowser(t, srv.URL), r, uma)
	robot := srv.createClient(t, "robot", false, true, "client_credentials")
	b := newBrowser(t, srv.URL)
	introspect := func() (*http.Response, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/oauth2/introspect", strings.NewReader("token="+url.QueryEscape(tok.AccessToken)))
		req.SetBasicAuth(app.ID, app.Secret)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	if resp, body := introspect(); resp.StatusCode != 200 || !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspection while up: %d %s", resp.StatusCode, body)
	}
	if got := b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(tok.AccessToken)); got.Status != 200 {
		t.Fatalf("account API while up: %d", got.Status)
	}

	// The server restarts, or a failover moves the primary to the same
	// address: every pooled connection is dead, and nobody notices —
	// reads and grants run once more on new connections.
	cc := clientcredentials.Config{ClientID: robot.ID, ClientSecret: robot.Secret, TokenURL: srv.URL + "/oauth2/token"}
	for _, call := range []func() (string, bool){
		func() (string, bool) { _, err := cc.Token(context.Background()); return fmt.Sprint(err), err == nil },
		func() (string, bool) {
			got := b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(tok.AccessToken))
			return fmt.Sprint(got.Status), got.Status == 200
		},
		func() (string, bool) {
			resp, body := introspect()
			return body, resp.StatusCode == 200 && strings.Contains(body, `"active":true`)
		},
	} {
		proxy.Drop()
		if got, ok := call(); !ok {
			t.Fatalf("after the connections were dropped: %s", got)
		}
	}

	// A sign-in in progress and a portal session, both begun before the
	// outage.
	midway := newBrowser(t, srv.URL)
	loginPage := toLogin(t, midway, r)
	portal := newBrowser(t, srv.URL)
	portalLogin(t, portal, srv, uma)
	// An admin in the console.
	ada := srv.createUser(t, "ada", true)
	if err := st.AddAdmin(context.Background(), ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	console := newBrowser(t, srv.URL)
	if p := consoleLogin(t, console, srv, ada); p.Status != 200 {
		t.Fatalf("console sign-in: %d", p.Status)
	}
	// A portal sign-in whose browser is on its way back to the portal
	// with a code when the database goes.
	returning := newBrowser(t, srv.URL)
	returning.c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/account/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	p := returning.submit(returning.get(srv.URL+"/account"), map[string]string{"username": uma.Username, "password": uma.Password})
	srv.nextTOTPStep()
	p = returning.submitForm(p, "/login/2sv", map[string]string{"code": mustCode(uma.Secret, srv)})
	callback := p.Location
	if !strings.Contains(callback, "/account/callback?") {
		t.Fatalf("want a redirect to the portal's callback, got %d %q", p.Status, callback)
	}

	proxy.Cut()
	time.Sleep(6 * time.Second) // past the client cache
	unavailable := func(what string, status int, h http.Header) {
		t.Helper()
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("%s during the outage: %d (Retry-After %q)", what, status, h.Get("Retry-After"))
		}
	}
	got := b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(tok.AccessToken))
	unavailable("account API", got.Status, got.Header)
	got = b.api(t, "GET", srv.URL+"/userinfo", nil, bearer(tok.AccessToken))
	unavailable("userinfo", got.Status, got.Header)
	got = b.api(t, "GET", srv.URL+"/admin/users", nil, bearer(tok.AccessToken))
	unavailable("admin API", got.Status, got.Header)
	resp, body := introspect()
	unavailable("introspection", resp.StatusCode, resp.Header)
	if strings.Contains(body, `"active":false`) {
		t.Error("introspection said inactive for a token it could not look up")
	}
	if _, err := cc.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "temporarily_unavailable") {
		t.Errorf("token endpoint during the outage: %v", err)
	}
	p = newBrowser(t, srv.URL).get(srv.URL + "/account/security")
	unavailable("portal (through its sign-in)", p.Status, p.Header)

	// Handlers whose lookups failed would answer "expired" or "not signed
	// in" (and clear the cookie): the answer is 503, nothing else.
	p = midway.submit(loginPage, map[string]string{"username": uma.Username, "password": uma.Password})
	unavailable("password step of a sign-in begun before", p.Status, p.Header)
	if !strings.Contains(p.Body, "briefly unavailable") {
		t.Errorf("the page says what happened: %s", p.Body)
	}
	// The portal's code exchange meets the outage at the provider: 503,
	// not "sign-in failed".
	p = returning.get(callback)
	unavailable("portal callback (its code exchange)", p.Status, p.Header)
	for _, c := range []struct {
		what string
		b    *browser
		url  string
	}{
		{"portal session", portal, srv.URL + "/account/security"},
		{"console session", console, srv.URL + "/console/policies"},
		// A silent re-authentication (prompt=none) by an application whose
		// user has a session: not "login_required" back to the app.
		{"prompt=none authorization", portal, func() string { u, _ := r.authURL(oauth2.SetAuthURLParam("prompt", "none")); return u }()},
	} {
		c.b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		p = c.b.get(c.url)
		unavailable(c.what, p.Status, p.Header)
		if p.Header.Get("Set-Cookie") != "" || p.Location != "" {
			t.Errorf("%s: an outage must not sign anyone out or redirect: Set-Cookie %q, Location %q", c.what, p.Header.Get("Set-Cookie"), p.Location)
		}
	}

	proxy.Resume()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = b.api(t, "GET", srv.URL+"/account/mfa", nil, bearer(tok.AccessToken))
		if got.Status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.Status != 200 {
		t.Fatalf("after the outage the same token works again without a restart: %d", got.Status)
	}
	if resp, body := introspect(); resp.StatusCode != 200 || !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspection after the outage: %d %s", resp.StatusCode, body)
	}
	if p := portal.get(srv.URL + "/account/security"); p.Status != 200 {
		t.Fatalf("the portal session outlived the outage: %d %s", p.Status, p.Location)
	}
	if p := console.get(srv.URL + "/console/policies"); p.Status != 200 {
		t.Fatalf("the console session outlived the outage: %d %s", p.Status, p.Location)
	}
	authURL, _ := r.authURL(oauth2.SetAuthURLParam("prompt", "none"))
	if p := portal.get(authURL); p.Status != http.StatusSeeOther || !strings.Contains(p.Location, "code=") {
		t.Fatalf("prompt=none after the outage signs in silently: %d %s", p.Status, p.Location)
	}
	if p := midway.submit(loginPage, map[string]string{"username": uma.Username, "password": uma.Password}); !strings.HasSuffix(p.URL.Path, "/login/2sv") {
		t.Fatalf("the sign-in begun before the outage goes on after it: %d %s", p.Status, p.URL)
	}
}

// TestLookAlikeNamesRefused: usernames are PRECIS-normalised (RFC 8265)
// and look-alikes are refused; group and display names carry no invisible
// or direction-changing characters; a user can sign in with the name typed
// in another width or case.
func TestLookAlikeNamesRefused(t *testing.T) {
	f := newAdminFixture(t, testdbSQLite(t))
	create := func(username string) apiResp {
		return f.call(t, f.adminToken, "POST", "/admin/users", map[string]any{"username": username, "password": "a-long-password", "email": "x@example.com"})
	}
	if got := create("Alice"); got.Status != http.StatusCreated || got.Body["username"] != "alice" {
		t.Fatalf("alice: %d %v", got.Status, got.Body)
	}
	if got := create("aoe"); got.Status != http.StatusCreated {
		t.Fatalf("aoe: %d", got.Status)
	}
	for name, want := range map[string]string{
		"аlice":       "invalid_request", // Cyrillic а + Latin
		"alice\u200b": "invalid_request", // zero-width space
		"ali\u202ece": "invalid_request", // right-to-left override
		"al ice":      "invalid_request",
		"ａｌｉｃｅ":       "username_taken", // full-width: the same name
		"аое":         "username_confusable",
	} {
		got := create(name)
		if errCode(got) != want || got.Status < 400 || got.Status >= 500 {
			t.Errorf("%q: %d %v, want %s", name, got.Status, got.Body, want)
		}
	}
	if got := f.call(t, f.adminToken, "POST", "/admin/groups", map[string]any{"name": "Fin\u202eance"}); got.Status != http.StatusUnprocessableEntity {
		t.Errorf("group name with a bidi override: %d", got.Status)
	}
	if got := f.call(t, f.adminToken, "PATCH", "/admin/users/"+f.bob.ID, map[string]any{"display_name": "Bob\u200b"}); got.Status != http.StatusUnprocessableEntity {
		t.Errorf("display name with a zero-width space: %d", got.Status)
	}
	// Bob signs in typing his name in full-width capitals.
	r := newRP(t, f.srv, f.srv.createClient(t, "app", false, true))
	b := newBrowser(t, f.srv.URL)
	p := b.submit(toLogin(t, b, r), map[string]string{"username": "ＢＯＢ", "password": f.bob.Password})
	if !strings.HasSuffix(p.URL.Path, "/login/2sv") {
		t.Fatalf("full-width username: %d %s", p.Status, p.URL)
	}
}

// TestSmallerEdges: issue 13's smaller items — RFC 6749 §5.2 challenges on
// client-authenticated endpoints, discovery that matches what the
// introspection endpoint accepts, bounded authorization requests, and no
// unread bodies on the account API.
func TestSmallerEdges(t *testing.T) {
	srv := startServer(t, testdbSQLite(t))
	app := srv.createClient(t, "app", false, true)
	for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader("grant_type=client_credentials&token=x"))
		req.SetBasicAuth(app.ID, "wrong secret")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: 401 without a Basic challenge", path)
		}
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusOK {
			t.Errorf("%s with a wrong secret: %d", path, resp.StatusCode)
		}
	}
	disc := newBrowser(t, srv.URL).api(t, "GET", srv.URL+"/.well-known/openid-configuration", nil, nil)
	if m := mustJSON(disc.Body["introspection_endpoint_auth_methods_supported"]); m != `["client_secret_basic"]` {
		t.Errorf("introspection auth methods advertised: %s", m)
	}
	huge := srv.URL + "/oauth2/auth?client_id=app&response_type=code&scope=" + strings.Repeat("x", 70<<10)
	if p := newBrowser(t, srv.URL).get(huge); p.Status != http.StatusRequestEntityTooLarge || len(p.Header.Get("Location")) > 0 {
		t.Errorf("a 70 KB authorization request: %d %q", p.Status, p.Header.Get("Location"))
	}
	// RFC 8252's any-port loopback rule is for native (public) apps only; a
	// confidential client gets exactly the URI it registered.
	srv.createClient(t, "native", true, false)
	for _, tc := range []struct {
		client string
		want   int
	}{{"app", http.StatusBadRequest}, {"native", http.StatusOK}} {
		q := url.Values{"client_id": {tc.client}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s-state-1234"},
			"redirect_uri":   {"http://127.0.0.1:8888/" + tc.client + "/callback"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		p := newBrowser(t, srv.URL).get(srv.URL + "/oauth2/auth?" + q.Encode())
		if p.Status != tc.want || strings.Contains(p.Header.Get("Location"), "8888") {
			t.Errorf("%s with its loopback redirect on another port: %d %q", tc.client, p.Status, p.Header.Get("Location"))
		}
	}
	// The account API refuses a body it does not use when it is not JSON.
	uma := srv.createUser(t, "uma", true)
	acct := newRP(t, srv, srv.accountClient(t, "mobile", true))
	acct.conf.Scopes = []string{"openid", "account"}
	tok, _ := signInTo(t, newBrowser(t, srv.URL), acct, uma)
	req, _ := http.NewRequest("POST", srv.URL+"/account/mfa/recovery-codes", strings.NewReader(strings.Repeat("x", 2<<20)))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("2 MB of text/plain to the recovery-codes call: %d", resp.StatusCode)
	}
}

// TestJWTLogRowsOutliveOutage: a JWT grant needs no database while its
// client is cached, so it is answered during an outage; its token-log
// row, written in a batch after the answer, waits for the database
// instead of being dropped.
func TestJWTLogRowsOutliveOutage(t *testing.T) {
	proxy, st := testdb.PostgresBehindProxy(t, 4, nil)
	srv := startServer(t, st)
	robot := srv.createClient(t, "robot", false, true, "client_credentials")
	srv.jwtClient(t, robot.ID)
	cc := clientcredentials.Config{ClientID: robot.ID, ClientSecret: robot.Secret, TokenURL: srv.URL + "/oauth2/token"}
	if _, err := cc.Token(context.Background()); err != nil { // the client is cached now
		t.Fatal(err)
	}
	proxy.Cut()
	var jtis []string
	for range 3 {
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("a JWT grant with its client cached during the outage: %v", err)
		}
		jtis = append(jtis, jwtPart(t, tok.AccessToken, 1)["jti"].(string))
	}
	time.Sleep(1500 * time.Millisecond) // the batch met the outage
	proxy.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := st.ListTokenEvents(context.Background(), store.TokenEventFilter{ClientID: robot.ID})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			if e.Type == store.TokenIssued && slices.Contains(jtis, e.RequestID) {
				n++
			}
		}
		if n == len(jtis) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d JWTs issued during the outage have their log row", n, len(jtis))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
