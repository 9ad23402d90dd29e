package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
)

// syncBuffer is a bytes.Buffer safe to read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestAdminListener: with http.admin_listen, serve prints where each part
// listens; the admin API, /metrics and the profiler answer only there, and
// the public listener answers 404 for them.
func TestAdminListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("http://" + ln.Addr().String())
	cfg.Database.Driver, cfg.Database.DSN = "postgres", testdb.PostgresDSN(t)
	cfg.HTTP.AdminListen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- serveOn(ctx, ln, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &out, buildOptions{Hasher: testHasher})
	}()
	var adminURL string
	for deadline := time.Now().Add(20 * time.Second); adminURL == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := regexp.MustCompile(`admin API, /metrics, /debug/pprof:\s+(http://\S+)`).FindStringSubmatch(out.String()); m != nil {
			adminURL = m[1]
		}
	}
	if adminURL == "" || !strings.Contains(out.String(), "public (sign-in, OIDC, /account, /console): http://"+ln.Addr().String()) {
		t.Fatalf("serve did not say where it listens:\n%s", out.String())
	}
	status := func(u string) int {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	public := cfg.Issuer
	for path, want := range map[string][2]int{
		"/admin/users":                      {404, 401},
		"/admin/openapi.json":               {404, 200},
		"/metrics":                          {404, 200},
		"/debug/pprof/":                     {404, 200},
		"/health/ready":                     {200, 200},
		"/.well-known/openid-configuration": {200, 404},
	} {
		if got := status(public + path); got != want[0] {
			t.Errorf("public %s: %d, want %d", path, got, want[0])
		}
		if got := status(adminURL + path); got != want[1] {
			t.Errorf("admin %s: %d, want %d", path, got, want[1])
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestInternalURL: behind a proxy this process cannot reach (here, an
// issuer on a port nothing listens on, which only the browser can reach),
// the account portal's sign-in fails at its back channel — unless
// http.internal_url points the portal at the provider directly.
func TestInternalURL(t *testing.T) {
	park, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := park.Addr().(*net.TCPAddr).Port
	park.Close()
	for _, internal := range []bool{false, true} {
		srv := startServer(t, testdb.SQLite(t), func(c *config.Config) {
			if internal {
				c.HTTP.InternalURL = c.Issuer
			}
			c.Issuer = "http://localhost:" + strconv.Itoa(unreachable)
		})
		real := strings.TrimPrefix(srv.srv.URL, "http://")
		ivy := srv.createUser(t, "ivy", true)
		b := newBrowser(t, srv.URL)
		d := &net.Dialer{}
		b.c.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "localhost:"+strconv.Itoa(unreachable) {
				addr = real // the browser's way to the issuer, as a proxy would be
			}
			return d.DialContext(ctx, network, addr)
		}}
		p := b.get(srv.URL + "/account")
		if !strings.HasSuffix(p.URL.Path, "/login") {
			t.Fatalf("internal=%v: want the login page, got %s", internal, p.URL)
		}
		p = b.submit(p, map[string]string{"username": ivy.Username, "password": ivy.Password})
		srv.nextTOTPStep()
		p = b.submitForm(p, "/login/2sv", map[string]string{"code": mustCode(ivy.Secret, srv)})
		inPortal := p.Status == http.StatusOK && strings.HasPrefix(p.URL.Path, "/account") && !strings.HasPrefix(p.URL.Path, "/account/callback")
		if inPortal != internal {
			t.Fatalf("internal=%v: landed at %d %s\n%.500s", internal, p.Status, p.URL, p.Body)
		}
	}
}
