package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// forwarding adds an X-Forwarded-For header to every request, as a proxy
// (or someone forging one) would.
type forwarding struct {
	next http.RoundTripper
	xff  string
}

func (f forwarding) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.xff)
	return f.next.RoundTrip(r)
}

func (b *browser) forwardedFor(xff string) *browser {
	b.c.Transport = forwarding{next: b.c.Transport, xff: xff}
	return b
}

// TestTrustedProxies: with http.trusted_proxies naming 127.0.0.2, a
// client behind that proxy is locked out by its own forwarded address (and
// audited under it), while another client behind the same proxy is not; a
// peer that is not a trusted proxy cannot pick an address with a forged
// X-Forwarded-For — it is neither locked out by the forged address nor
// able to escape its own lockout, and is audited as itself.
func TestTrustedProxies(t *testing.T) {
	srv := startServer(t, testdb.SQLite(t), func(c *config.Config) {
		c.HTTP.TrustedProxies = []string{"127.0.0.2"}
		c.Lockout.IPThreshold, c.Lockout.AccountThreshold = 3, 20
	})
	ivy := srv.createUser(t, "ivy", false)
	r := newRP(t, srv, srv.createClient(t, "app", false, true))
	attempt := func(b *browser, u user, password string) int {
		t.Helper()
		return b.submit(toLogin(t, b, r), map[string]string{"username": u.Username, "password": password}).Status
	}
	behind := func(xff string) *browser { return newBrowser(t, srv.URL).from("127.0.0.2").forwardedFor(xff) }

	mallory := behind("203.0.113.9")
	for i := range 3 {
		if got := attempt(mallory, ivy, "wrong"); got != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, got)
		}
	}
	if got := attempt(mallory, ivy, ivy.Password); got != http.StatusTooManyRequests {
		t.Fatalf("the forwarded address must be locked: %d", got)
	}
	// Another client behind the same proxy is not held back.
	if got := attempt(behind("198.51.100.7"), ivy, ivy.Password); got >= 400 {
		t.Fatalf("another client behind the proxy: %d", got)
	}
	if ip := lastIP(t, srv.app.store, "auth.login.succeeded", ivy.ID); ip != "198.51.100.7" {
		t.Fatalf("audited under %q, want the forwarded address", ip)
	}
	// A direct peer forging the locked address is judged as itself.
	direct := newBrowser(t, srv.URL).from("127.0.0.1").forwardedFor("203.0.113.9")
	if got := attempt(direct, ivy, ivy.Password); got >= 400 {
		t.Fatalf("a forged header locked out a direct peer: %d", got)
	}
	if ip := lastIP(t, srv.app.store, "auth.login.succeeded", ivy.ID); ip != "127.0.0.1" {
		t.Fatalf("a forged header changed the audited address to %q", ip)
	}
	// ... and cannot escape its own lockout with a new forged address.
	for range 3 {
		attempt(newBrowser(t, srv.URL).from("127.0.0.1").forwardedFor("192.0.2.55"), ivy, "wrong")
	}
	if got := attempt(newBrowser(t, srv.URL).from("127.0.0.1").forwardedFor("192.0.2.56"), ivy, ivy.Password); got != http.StatusTooManyRequests {
		t.Fatalf("a forged header escaped the peer's lockout: %d", got)
	}
}

func lastIP(t *testing.T, st store.Store, typ, subject string) string {
	t.Helper()
	evs, err := st.ListAuditEvents(context.Background(), store.AuditFilter{TypePrefix: typ, SubjectID: subject})
	if err != nil || len(evs) == 0 {
		t.Fatalf("no %s event: %v", typ, err)
	}
	return evs[len(evs)-1].IP
}
