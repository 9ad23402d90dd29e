package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
)

// TestVerifiedTokensCache: a token verified once is served from memory,
// a forged copy never is, and nothing outlives its expiry or the minute.
func TestVerifiedTokensCache(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	ats := &accessTokens{keys: newKeys(t, "ES256"), issuer: "https://id.example", now: clock}
	sess := newSession()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(10*time.Minute))
	req := &fosite.Request{ID: "r", Client: &client{DefaultClient: &fosite.DefaultClient{ID: "svc"}, JWTAccessTokens: true}, Session: sess,
		GrantedScope: fosite.Arguments{"profile"}}
	tok, _, err := ats.GenerateAccessToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ats.verify(ctx, tok)
	if err != nil || c.ClientID != "svc" {
		t.Fatalf("first verification: %+v %v", c, err)
	}
	if len(ats.verified.m) != 1 {
		t.Fatalf("%d cached entries after one verification, want 1", len(ats.verified.m))
	}
	c.Aud[0] = "changed by a caller"
	if again, err := ats.verify(ctx, tok); err != nil || again.Aud[0] != "svc" {
		t.Fatalf("cached verification: %+v %v (a caller's change leaked into the cache?)", again, err)
	}

	// A forged token (payload swapped, signature kept) is checked, not
	// matched against the cache, and fails.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	if _, err := ats.verify(ctx, forged); err == nil {
		t.Fatal("a forged token verified")
	}
	if _, err := ats.verify(ctx, parts[0]+"."+parts[1]+"."+parts[2][:len(parts[2])-2]+"AA"); err == nil {
		t.Fatal("a token with another signature verified")
	}

	// After the minute the entry is gone and the signature is checked
	// again (still valid: the token lives 10 minutes).
	now = now.Add(verifiedTTL + time.Second)
	if _, ok := ats.verified.get(tokenKey(tok), now); ok {
		t.Fatal("an entry outlived its minute")
	}
	if _, err := ats.verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// Past the token's expiry, no entry is served and verifyLive refuses.
	now = now.Add(10 * time.Minute)
	if _, ok := ats.verified.get(tokenKey(tok), now); ok {
		t.Fatal("an entry outlived its token")
	}
	if _, err := ats.verifyLive(ctx, tok); err == nil {
		t.Fatal("an expired token verified as live")
	}
}
