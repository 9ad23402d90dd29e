package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	lkrp "github.com/latchkey/latchkey/internal/rp"
	"github.com/latchkey/latchkey/store"
)

// testServer is a real Latchkey server on a loopback port: the same build()
// and router as `latchkey serve`, over a real store.
type testServer struct {
	URL string
	app *app
	srv *httptest.Server
	// totpSkew shifts the clock that verifies codes, so a test can move to
	// the next TOTP step without sleeping 30 seconds.
	totpSkew atomic.Int64
}

// ageSession makes the browser's portal or console session (cookie name)
// look signed in d earlier, so a test can let a sign-in grow stale without
// waiting (fosite reads the real clock, so the server's cannot move).
func (s *testServer) ageSession(t testing.TB, b *browser, cookie string, d time.Duration) {
	t.Helper()
	u, _ := url.Parse(s.URL + "/console")
	if cookie == "latchkey_account" {
		u, _ = url.Parse(s.URL + "/account")
	}
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == cookie {
			s.ageSessionValue(t, c.Value, d)
			return
		}
	}
	t.Fatalf("no %s cookie", cookie)
}

// ageSessionValue ages the session whose cookie value is v.
func (s *testServer) ageSessionValue(t testing.TB, v string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	err := s.app.store.InTx(ctx, func(q store.Queries) error {
		ps, err := q.GetPortalSession(ctx, lkrp.HashID(v))
		if err != nil {
			return err
		}
		if err := q.DeletePortalSession(ctx, ps.IDHash); err != nil {
			return err
		}
		ps.AuthTime = ps.AuthTime.Add(-d)
		return q.CreatePortalSession(ctx, ps)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *testServer) totpNow() time.Time { return time.Now().Add(time.Duration(s.totpSkew.Load())) }

// nextTOTPStep moves the code clock to the next 30-second step.
func (s *testServer) nextTOTPStep() { s.totpSkew.Add(int64(30 * time.Second)) }

// testHasher keeps argon2id real but cheap, so login-heavy tests stay fast.
// Its queue is long: tests sign in concurrently and share it.
var testHasher = authn.NewPasswordHasherQueue(authn.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}, 0, 10000)

func testConfig(issuer string) *config.Config {
	c := config.Defaults()
	c.Mode = config.ModeProduction
	c.Issuer = issuer
	c.Secrets.System = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
	c.Secrets.EncryptionKeys = []string{"k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
	return &c
}

// onLocalhost names the test server http://localhost:PORT instead of its
// IP address: WebAuthn relying parties are domains.
func onLocalhost(c *config.Config) { c.Issuer = strings.Replace(c.Issuer, "127.0.0.1", "localhost", 1) }

func startServer(t testing.TB, st store.Store, mutate ...func(*config.Config)) *testServer {
	t.Helper()
	return startServerHasher(t, st, testHasher, mutate...)
}

// startServerHasher is startServer with its own password hasher.
func startServerHasher(t testing.TB, st store.Store, h *authn.PasswordHasher, mutate ...func(*config.Config)) *testServer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	cfg := testConfig(issuer)
	for _, m := range mutate {
		m(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&tlog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ts := &testServer{URL: cfg.Issuer, srv: srv}
	a, err := build(context.Background(), cfg, st, log, buildOptions{Hasher: h, AuthnNow: ts.totpNow})
	if err != nil {
		t.Fatal(err)
	}
	ts.app = a
	srv.Config.Handler = a.router
	srv.Start()
	t.Cleanup(srv.Close)
	return ts
}

type tlog struct{ t testing.TB }

func (l *tlog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// fixture identities.
type user struct {
	store.User
	Password string
	Secret   string // TOTP secret, empty without 2SV
	Recovery []string
}

func (s *testServer) createUser(t testing.TB, name string, withTOTP bool) user {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	u := user{User: store.User{ID: authn.NewID("user"), Username: name, Email: name + "@example.com", DisplayName: strings.ToUpper(name[:1]) + name[1:],
		CreatedAt: now, UpdatedAt: now}, Password: "pw-" + name + "-correct horse"}
	u.PasswordHash = s.app.authn.Hasher().Hash(u.Password)
	if err := s.app.store.CreateUser(ctx, u.User); err != nil {
		t.Fatal(err)
	}
	if !withTOTP {
		// The default policy requires 2SV; users without it are in a group
		// whose policy does not, so their sign-in is password-only.
		s.optional2SV(t, u.ID)
	}
	if withTOTP {
		u.Secret = authn.NewTOTPSecret()
		codes, err := s.app.authn.EnrollTOTP(ctx, s.app.store, u.ID, u.Secret, 0)
		if err != nil {
			t.Fatal(err)
		}
		u.Recovery = codes
	}
	return u
}

func (s *testServer) optional2SV(t testing.TB, userID string) {
	t.Helper()
	ctx := context.Background()
	g, err := s.app.store.GetGroupByName(ctx, "optional-2sv")
	if errors.Is(err, store.ErrNotFound) {
		p := store.Policy{ID: "policy_optional", Name: "Optional 2SV", StepUpMaxAge: 5 * time.Minute, Reenroll: "immediate", Version: 1, UpdatedAt: time.Now()}
		g = store.Group{ID: "group_optional", Name: "optional-2sv", CreatedAt: time.Now()}
		err = s.app.store.InTx(ctx, func(q store.Queries) error {
			if err := q.CreatePolicy(ctx, p); err != nil {
				return err
			}
			if err := q.CreateGroup(ctx, g); err != nil {
				return err
			}
			return q.AssignPolicy(ctx, g.ID, p.ID)
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.app.store.AddMember(ctx, g.ID, userID); err != nil {
		t.Fatal(err)
	}
}

type client struct {
	ID, Secret, Redirect string
}

func (s *testServer) createClient(t testing.TB, id string, public, firstParty bool, grants ...string) client {
	t.Helper()
	if len(grants) == 0 {
		grants = []string{"authorization_code", "refresh_token"}
	}
	c := client{ID: id, Redirect: "http://127.0.0.1:9/" + id + "/callback"}
	sc := store.Client{ID: id, Name: "App " + id, Public: public, FirstParty: firstParty, RedirectURIs: []string{c.Redirect},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:9/" + id + "/bye"}, GrantTypes: grants, ResponseTypes: []string{"code"},
		Scopes: []string{"openid", "profile", "email", "offline_access", "groups"}, CreatedAt: time.Now().UTC()}
	if !public {
		c.Secret, sc.SecretHash = authn.NewClientSecret()
	}
	if err := s.app.store.CreateClient(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	return c
}

// browser is an HTTP client with cookies that follows redirects within the
// issuer and stops at the first redirect that leaves it (to an application).
type browser struct {
	t      testing.TB
	c      *http.Client
	issuer string
}

func newBrowser(t testing.TB, issuer string) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, issuer: issuer}
	b.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), issuer) {
			return http.ErrUseLastResponse
		}
		if via[len(via)-1].Response != nil && via[len(via)-1].Response.StatusCode != http.StatusSeeOther && via[len(via)-1].Method == http.MethodPost {
			return fmt.Errorf("redirect after POST must be 303, got %d", via[len(via)-1].Response.StatusCode)
		}
		return nil
	}}
	return b
}

type page struct {
	Status   int
	URL      *url.URL
	Location string // set when the browser stopped at a redirect out of the issuer
	Body     string
	Header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{Status: resp.StatusCode, URL: resp.Request.URL, Location: resp.Header.Get("Location"), Body: string(body), Header: resp.Header}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// submit fills the page's first form the way a browser would: hidden and
// pre-filled fields as they are, then the given values, posted to the form's
// action (resolved against the page URL).
func (b *browser) submit(p page, values map[string]string) page {
	b.t.Helper()
	return b.submitForm(p, "", values)
}

// submitForm is submit for the form whose action is action ("" for the
// first form).
func (b *browser) submitForm(p page, action string, values map[string]string) page {
	b.t.Helper()
	action, fields, buttons, err := parseFormFull(p.Body, action)
	if err != nil {
		b.t.Fatalf("no form on %s (status %d): %v\n%s", p.URL, p.Status, err, p.Body)
	}
	for k, v := range values {
		// A browser sends a button's name and value when it is clicked.
		if _, ok := fields[k]; !ok && !buttons[k] {
			b.t.Fatalf("form on %s has no field %q (has %v)", p.URL, k, fields)
		}
		fields.Set(k, v)
	}
	target, _ := p.URL.Parse(action)
	return b.post(target.String(), fields)
}

func parseForm(body string) (string, url.Values, error) { return parseFormAction(body, "") }

func parseFormAction(body, want string) (string, url.Values, error) {
	action, fields, _, err := parseFormFull(body, want)
	return action, fields, err
}

// parseFormFull also returns the names of the form's buttons.
func parseFormFull(body, want string) (string, url.Values, map[string]bool, error) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return "", nil, nil, err
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form == nil && n.Type == html.ElementNode && n.Data == "form" {
			for _, a := range n.Attr {
				if a.Key == "action" && (want == "" || a.Val == want) {
					form = n
					return
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return "", nil, nil, errors.New("no form")
	}
	attr := func(n *html.Node, k string) (string, bool) {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val, true
			}
		}
		return "", false
	}
	fields := url.Values{}
	buttons := map[string]bool{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			if name, ok := attr(n, "name"); ok {
				typ, _ := attr(n, "type")
				v, _ := attr(n, "value")
				_, checked := attr(n, "checked")
				// Unchecked boxes are not sent; a test may still tick one.
				if typ == "checkbox" && !checked {
					buttons[name] = true
				} else {
					fields.Set(name, v)
				}
			}
		}
		if n.Type == html.ElementNode && n.Data == "select" {
			if name, ok := attr(n, "name"); ok {
				fields.Set(name, "")
				for o := n.FirstChild; o != nil; o = o.NextSibling {
					if o.Type == html.ElementNode && o.Data == "option" {
						v, _ := attr(o, "value")
						fields.Set(name, v) // the first option is selected by default
						break
					}
				}
			}
		}
		if n.Type == html.ElementNode && n.Data == "textarea" {
			if name, ok := attr(n, "name"); ok {
				v := ""
				if n.FirstChild != nil && n.FirstChild.Type == html.TextNode {
					v = n.FirstChild.Data
				}
				fields.Set(name, v)
			}
		}
		if n.Type == html.ElementNode && n.Data == "button" {
			if name, ok := attr(n, "name"); ok {
				buttons[name] = true
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(form)
	action, _ := attr(form, "action")
	return action, fields, buttons, nil
}

// bannerText returns the text of the page's alert banner.
func bannerText(body string) string {
	i := strings.Index(body, `role="alert">`)
	if i < 0 {
		return ""
	}
	rest := body[i+len(`role="alert">`):]
	return rest[:strings.Index(rest, "<")]
}
