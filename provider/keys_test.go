package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

func newKeys(t testing.TB, alg string) *KeyManager {
	km, _ := newKeysAt(t, alg, testdb.SQLite(t), time.Now)
	return km
}

// newKeysAt is newKeys on st with the clock now.
func newKeysAt(t testing.TB, alg string, st store.Store, now func() time.Time) (*KeyManager, error) {
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{1}, 32)})
	km, err := NewKeyManager(context.Background(), KeyOptions{Store: st, Keyring: ring, Algorithm: alg, Overlap: time.Hour, Refresh: 30 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return km, err
}

func TestSignerKidAndRotation(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			ctx := context.Background()
			clock := time.Now().Truncate(time.Second)
			km, _ := newKeysAt(t, alg, testdb.SQLite(t), func() time.Time { return clock })
			s := &jwtSigner{keys: km}
			tok, sig, err := s.Generate(ctx, fjwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix()}, &fjwt.Headers{})
			if err != nil || !strings.HasSuffix(tok, "."+sig) {
				t.Fatalf("generate: %v", err)
			}
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			kid := jws.Signatures[0].Header.KeyID
			var set jose.JSONWebKeySet
			if err := jsonUnmarshal(km.JWKS(ctx), &set); err != nil || len(set.Key(kid)) != 1 {
				t.Fatalf("kid %q not in JWKS: %v", kid, err)
			}
			if _, err := jws.Verify(set.Key(kid)[0].Key); err != nil {
				t.Fatalf("verify with published key: %v", err)
			}
			if bytes.Contains(km.JWKS(ctx), []byte(`"d":`)) {
				t.Fatal("JWKS leaks private key material")
			}
			newKid, err := km.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Decode(ctx, tok); err != nil {
				t.Fatalf("token signed before rotation must still decode: %v", err)
			}
			signedBy := func() string {
				tok, _, _ := s.Generate(ctx, fjwt.MapClaims{"sub": "u1"}, &fjwt.Headers{})
				jws, _ := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				return jws.Signatures[0].Header.KeyID
			}
			// The new key is published at once, as the next key, and
			// signs only after PromoteAfter (two refresh periods).
			if !bytes.Contains(km.JWKS(ctx), []byte(`"kid":"`+newKid+`"`)) {
				t.Fatal("the next key is not published at once")
			}
			if got := signedBy(); got != kid {
				t.Fatalf("before its start the next key must not sign: got %s", got)
			}
			ks, _ := km.List(ctx)
			for _, k := range ks {
				if want := map[bool]string{true: "next", false: "signing"}[k.ID == newKid]; k.State != want {
					t.Fatalf("key %s: state %q, want %q", k.ID, k.State, want)
				}
				if k.ID == newKid && !k.NotBefore.Equal(clock.UTC().Add(time.Minute)) {
					t.Fatalf("next key signs from %v", k.NotBefore)
				}
			}
			clock = clock.Add(time.Minute)
			if got := signedBy(); got != newKid {
				t.Fatalf("after its start sign with %s, got %s", newKid, got)
			}
			if _, err := s.Decode(ctx, tok); err != nil {
				t.Fatalf("token signed by the retiring key must still decode: %v", err)
			}
			// Tampering is detected.
			bad := tok[:len(tok)-2] + "AA"
			if _, err := s.Decode(ctx, bad); err == nil {
				t.Fatal("tampered token decoded")
			}
		})
	}
}

// BenchmarkSignIDToken measures ID token signing, the part of the token
// endpoint that is pure CPU.
func BenchmarkSignIDToken(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			km := newKeys(b, alg)
			s := &jwtSigner{keys: km}
			claims := fjwt.MapClaims{"iss": "https://id.example.com", "sub": "user_0123456789", "aud": []string{"app"}, "exp": time.Now().Add(time.Hour).Unix(),
				"iat": time.Now().Unix(), "auth_time": time.Now().Unix(), "nonce": "n-0123456789", "acr": "aal2", "amr": []string{"pwd", "otp", "mfa"}, "sid": "abcdef"}
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.Generate(ctx, claims, &fjwt.Headers{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestAlgorithmChangeGoesThroughNextKey: changing keys.algorithm on an
// existing store publishes a key of the new algorithm as the next key; the
// old one signs until then, discovery names both, and RS256 always.
func TestAlgorithmChangeGoesThroughNextKey(t *testing.T) {
	ctx := context.Background()
	st := testdb.SQLite(t)
	clock := time.Now().Truncate(time.Second)
	now := func() time.Time { return clock }
	rs, _ := newKeysAt(t, "RS256", st, now)
	es, _ := newKeysAt(t, "ES256", st, now) // a restart with the new setting
	clock = clock.Add(31 * time.Second)     // one refresh period: every replica has re-read
	for _, km := range []*KeyManager{rs, es} {
		if got := km.Algorithms(ctx); !slices.Equal(got, []string{"RS256", "ES256"}) {
			t.Fatalf("before the start of the ES256 key: algorithms %v", got)
		}
		if got := km.current(ctx).alg; got != jose.RS256 {
			t.Fatalf("the ES256 key signed before its start: %s", got)
		}
	}
	again, _ := newKeysAt(t, "ES256", st, now) // another replica, same setting
	if ks, _ := again.List(ctx); len(ks) != 2 {
		t.Fatalf("a second start with the same setting rotated again: %d keys", len(ks))
	}
	if evs, err := st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "key.rotated"}); err != nil || len(evs) != 1 || evs[0].ActorID != "config" {
		t.Fatalf("the rotation by configuration must be audited once: %v %+v", err, evs)
	}
	clock = clock.Add(30 * time.Second)
	for _, km := range []*KeyManager{rs, es, again} {
		if got := km.current(ctx).alg; got != jose.ES256 {
			t.Fatalf("after its start the ES256 key must sign on every replica, got %s", got)
		}
		if got := km.Algorithms(ctx); !slices.Equal(got, []string{"ES256", "RS256"}) {
			t.Fatalf("algorithms %v", got)
		}
	}
	clock = clock.Add(2 * time.Hour) // the RS256 key has left the JWKS
	if got := signingAlgs(es.Algorithms(ctx)); !slices.Equal(got, []string{"ES256", "RS256"}) {
		t.Fatalf("discovery must keep RS256: %v", got)
	}
	if bytes.Contains(es.JWKS(ctx), []byte(`"RS256"`)) {
		t.Fatal("the retired RS256 key is still published")
	}
}

// TestDefaultAlgorithm: with keys.algorithm unset, a new deployment signs
// with ES256 and an existing one keeps the algorithm it signs with (no
// rotation, nothing audited).
func TestDefaultAlgorithm(t *testing.T) {
	ctx := context.Background()
	if km, _ := newKeysAt(t, "", testdb.SQLite(t), time.Now); km.current(ctx).alg != jose.ES256 {
		t.Fatalf("a new deployment signs with %s", km.current(ctx).alg)
	}
	st := testdb.SQLite(t)
	newKeysAt(t, "RS256", st, time.Now)
	km, _ := newKeysAt(t, "", st, time.Now)
	if km.current(ctx).alg != jose.RS256 {
		t.Fatalf("an RS256 deployment switched to %s", km.current(ctx).alg)
	}
	if keys, _ := st.ListKeys(ctx); len(keys) != 1 {
		t.Fatalf("an unset algorithm rotated the key: %d keys", len(keys))
	}
}
