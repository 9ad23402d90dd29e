package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
)

// fuzzServer is a server for the form fuzzers: no per-address limit, and
// every input comes from its own loopback address, so neither the limiter
// nor the address lockout turns the run into a row of 429s.
func fuzzServer(f *testing.F) *testServer {
	return startServer(f, testdb.SQLite(f), func(c *config.Config) {
		c.RateLimits.SignInPerMinute = 0
		c.Lockout.AccountThreshold = 20
	})
}

func randomLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1, rand.IntN(250)+1)
}

// FuzzLoginForm: whatever is typed as username and password, the sign-in
// form answers without a 5xx, and reaches the second step only with ivy's
// own password under a name that normalises to hers. Seeds: below and
// testdata/fuzz/FuzzLoginForm.
func FuzzLoginForm(f *testing.F) {
	srv := fuzzServer(f)
	ivy := srv.createUser(f, "ivy", true)
	r := newRP(f, srv, srv.createClient(f, "app", false, true))
	for _, s := range [][2]string{{"ivy", ivy.Password}, {"IVY", ivy.Password}, {"ｉｖｙ", ivy.Password}, {"ivy", "wrong"}, {"іvy", ivy.Password},
		{"a\x00b", "x"}, {"\xff", "\xfe"}, {strings.Repeat("a", 300), "x"}, {"ivy", strings.Repeat("p", 2000)}, {"", ""}, {"ivy\u200b", ivy.Password}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, username, password string) {
		b := newBrowser(t, srv.URL).from(randomLoopback())
		p := b.submit(toLogin(t, b, r), map[string]string{"username": username, "password": password})
		if p.Status >= 500 {
			t.Fatalf("username %q password %q: %d", username, password, p.Status)
		}
		if strings.HasSuffix(p.URL.Path, "/login/2sv") {
			if u, err := authn.Username(username); err != nil || u != "ivy" || password != ivy.Password {
				t.Fatalf("reached the second step with %q / %q", username, password)
			}
		}
	})
}

// FuzzSecondFactorForm: whatever is typed as the code, the second step
// answers without a 5xx and signs in only with a valid code.
func FuzzSecondFactorForm(f *testing.F) {
	srv := fuzzServer(f)
	r := newRP(f, srv, srv.createClient(f, "app", false, true))
	for _, s := range []string{"000000", "12345", "1234567", "abcdef", "ABCD-EFGH", "\x00", "\xff", strings.Repeat("9", 5000), " 123456 ", ""} {
		f.Add(s)
	}
	n := 0
	f.Fuzz(func(t *testing.T, code string) {
		n++
		u := srv.createUser(t, fmt.Sprintf("u%d-%d", n, rand.IntN(1<<30)), true)
		b := newBrowser(t, srv.URL).from(randomLoopback())
		p := b.submit(toLogin(t, b, r), map[string]string{"username": u.Username, "password": u.Password})
		if !strings.HasSuffix(p.URL.Path, "/login/2sv") {
			t.Fatalf("no second step: %s %d", p.URL, p.Status)
		}
		p = b.submit(p, map[string]string{"code": code})
		if p.Status >= 500 {
			t.Fatalf("code %q: %d", code, p.Status)
		}
		if p.Status == http.StatusSeeOther && strings.Contains(p.Location, "code=") {
			want, _ := authn.TOTPCode(u.Secret, srv.totpNow())
			if strings.TrimSpace(code) != want && !isRecovery(u, code) {
				t.Fatalf("signed in with %q", code)
			}
		}
	})
}

func isRecovery(u user, code string) bool {
	for _, c := range u.Recovery {
		if strings.EqualFold(strings.TrimSpace(code), c) {
			return true
		}
	}
	return false
}
