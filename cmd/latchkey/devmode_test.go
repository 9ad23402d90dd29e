package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
)

// TestDevModeDemo is the README's first command: dev mode creates a demo
// user and application and prints how to sign in; following the printed
// instructions signs in to the demo application with password and code.
func TestDevModeDemo(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewUnstartedServer(nil)
	cfg := config.Defaults()
	cfg.Issuer = "http://" + srv.Listener.Addr().String()
	cfg.Database.Path = filepath.Join(dir, "dev.db")
	cfg.Secrets.File = filepath.Join(dir, "dev.secrets")
	st, err := openStore(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := build(context.Background(), &cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), buildOptions{Hasher: testHasher})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := a.devBootstrap(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = a.router
	srv.Start()
	defer srv.Close()

	printed := out.String()
	field := func(name string) string {
		m := regexp.MustCompile(name + `:\s+(\S+)`).FindStringSubmatch(printed)
		if m == nil {
			t.Fatalf("dev mode did not print %s:\n%s", name, printed)
		}
		return m[1]
	}
	password, secret := field("password"), field("TOTP secret")
	if !strings.Contains(printed, "DEV MODE") || !strings.Contains(printed, cfg.Issuer+"/demo") {
		t.Fatalf("instructions: %s", printed)
	}

	b := newBrowser(t, cfg.Issuer)
	p := b.get(cfg.Issuer + "/demo/login")
	p = b.submit(p, map[string]string{"username": "demo", "password": password})
	code, _ := authn.TOTPCode(secret, time.Now())
	p = b.submit(p, map[string]string{"code": code})
	if !strings.Contains(p.Body, "Signed in") || !strings.Contains(p.Body, "amr") || !strings.Contains(p.Body, "aal2") || !strings.Contains(p.Body, "mfa_policy") {
		t.Fatalf("demo application after sign-in: %d %s\n%s", p.Status, p.URL, p.Body)
	}

	// A second start (go run again) keeps the demo user and shows how to
	// sign in again: a new password, the same TOTP secret; the old
	// password stops working.
	out.Reset()
	if err := a.devBootstrap(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	printed = out.String()
	password2, secret2 := field("password"), field("TOTP secret")
	if password2 == password || secret2 != secret || !strings.Contains(printed, "existing user") {
		t.Fatalf("second start: %s", printed)
	}
	b2 := newBrowser(t, cfg.Issuer)
	if p := b2.submit(b2.get(cfg.Issuer+"/demo/login"), map[string]string{"username": "demo", "password": password}); p.Status != http.StatusUnauthorized {
		t.Fatalf("the first start's password still works: %d", p.Status)
	}
	p = b2.submit(b2.get(cfg.Issuer+"/demo/login"), map[string]string{"username": "demo", "password": password2})
	code, _ = authn.TOTPCode(secret2, time.Now().Add(30*time.Second))
	if p = b2.submitForm(p, "/login/2sv", map[string]string{"code": code}); !strings.Contains(p.Body, "Signed in") {
		t.Fatalf("sign-in with the second start's banner: %d %s\n%s", p.Status, p.URL, p.Body)
	}
}
