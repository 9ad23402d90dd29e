package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadNothingIsDevMode(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeDev || c.Database.Driver != "sqlite" || c.Issuer != "http://127.0.0.1:8080" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestLoadFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "latchkey.yaml")
	body := "issuer: https://id.example.com\nsecrets:\n  system: " + strings.Repeat("QUFB", 11) + "\n  encryption_keys: [\"k1:" + strings.Repeat("QUFB", 10) + "QUE=\"]\ntokens:\n  access_token_lifespan: 15m\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"LATCHKEY_DATABASE_DSN=postgres://x@127.0.0.1/test", "LATCHKEY_LOCKOUT_ACCOUNT_THRESHOLD=7", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeProduction || c.Database.Driver != "postgres" || c.Lockout.AccountThreshold != 7 || c.Tokens.AccessTokenLifespan.D() != 15*time.Minute {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("isuer: https://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), "isuer") {
		t.Fatalf("want error naming the unknown key, got %v", err)
	}
	_, err := Load("", []string{"LATCHKEY_ISUER=https://x"})
	if err == nil || !strings.Contains(err.Error(), "LATCHKEY_ISUER") {
		t.Fatalf("want error naming the unknown variable, got %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Load("", []string{
		"LATCHKEY_MODE=production",
		"LATCHKEY_ISSUER=http://id.example.com",
		"LATCHKEY_KEYS_ALGORITHM=HS256",
		"LATCHKEY_TOKENS_AUTHORIZE_CODE_LIFESPAN=1h",
		"LATCHKEY_LOCKOUT_IP_THRESHOLD=500",
		"LATCHKEY_HTTP_TRUSTED_PROXIES=10.0.0.0/8,0.0.0.0/0,proxy.internal",
	})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *config.Error, got %v", err)
	}
	for _, field := range []string{"issuer", "secrets.system", "secrets.encryption_keys", "keys.algorithm", "tokens.authorize_code_lifespan", "lockout.ip_threshold", "http.trusted_proxies"} {
		found := false
		for _, p := range ce.Problems {
			if strings.HasPrefix(p, field+":") {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem reported for %s in %q", field, ce.Problems)
		}
	}
}

func TestTrustedProxiesParse(t *testing.T) {
	c, err := Load("", []string{"LATCHKEY_HTTP_TRUSTED_PROXIES=10.0.0.0/8, 192.0.2.7 ,2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	got := c.HTTP.TrustedPrefixes()
	if len(got) != 3 || got[1].String() != "192.0.2.7/32" || got[2].Bits() != 32 {
		t.Fatalf("prefixes: %v", got)
	}
}
