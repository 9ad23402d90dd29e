package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
)

// from makes b's requests come from the loopback address ip, so a test can
// be two networks at once.
func (b *browser) from(ip string) *browser {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	b.c.Transport = &http.Transport{DialContext: d.DialContext}
	return b
}

// TestRateLimitsPerAddress: past its budget an address gets 429 with
// Retry-After — no hash, nothing counted — while another address still
// signs in; the token endpoint has its own budget.
func TestRateLimitsPerAddress(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t), func(c *config.Config) {
		c.RateLimits.SignInPerMinute, c.RateLimits.TokenPerMinute = 4, 3
	})
	ivy := srv.createUser(t, "ivy", false)
	app := srv.createClient(t, "app", false, true)
	r := newRP(t, srv, app)
	flooder := newBrowser(t, srv.URL).from("127.0.0.1")
	for i := range 4 {
		if p := flooder.submit(toLogin(t, flooder, r), map[string]string{"username": "nobody", "password": "guess"}); p.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d within the budget: %d", i+1, p.Status)
		}
	}
	hashes := srv.app.authn.Hasher().Hashes()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login", strings.NewReader("username=nobody&password=guess"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := flooder.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := srv.app.authn.Hasher().Hashes() - hashes; n != 0 {
		t.Errorf("a refused request cost %d hashes", n)
	}
	// Another network is not held back by the flood.
	other := newBrowser(t, srv.URL).from("127.0.0.2")
	authURL, res := r.authURL()
	if got := login(t, other, r, authURL, res, ivy); got.Code == "" {
		t.Fatalf("sign-in from another address: %+v", got)
	}

	svc := srv.createClient(t, "svc", false, true, "client_credentials")
	cc := clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: srv.URL + "/oauth2/token"}
	for i := range 3 {
		if _, err := cc.Token(context.Background()); err != nil {
			t.Fatalf("token %d within the budget: %v", i+1, err)
		}
	}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(svc.ID, svc.Secret)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"error":"rate_limited"`) {
		t.Fatalf("token over the budget: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestSignInFloodGets503: when more sign-ins arrive at once than the hash
// queue holds, the extra ones get 503 with Retry-After and are not counted;
// none is a 500.
func TestSignInFloodGets503(t *testing.T) {
	slow := authn.NewPasswordHasherQueue(authn.Argon2Params{MemoryKiB: 16 * 1024, Time: 2, Threads: 1}, 1, 1)
	srv := startServerHasher(t, testdb.SQLite(t), slow, func(c *config.Config) { c.Lockout.AccountThreshold = 20 })
	srv.createUser(t, "ivy", false)
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	const n = 12
	pages := make([]page, n)
	browsers := make([]*browser, n)
	for i := range n {
		browsers[i] = newBrowser(t, srv.URL)
		pages[i] = toLogin(t, browsers[i], r)
	}
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := browsers[i].submit(pages[i], map[string]string{"username": "ivy", "password": "wrong"})
			statuses[i], retry[i] = p.Status, p.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	judged, busy := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusUnauthorized:
			judged++
		case http.StatusServiceUnavailable:
			busy++
			if retry[i] == "" {
				t.Errorf("503 without Retry-After")
			}
		default:
			t.Errorf("status %d in a flood", s)
		}
	}
	if busy == 0 {
		t.Fatalf("%d concurrent sign-ins in a queue of 2: none refused (%v)", n, statuses)
	}
	a, err := srv.app.store.GetAttempt(context.Background(), "acct:ivy")
	if err != nil || a.Failures != judged {
		t.Errorf("%d judged, %d counted (%v): a refused sign-in must not count", judged, a.Failures, err)
	}
}
