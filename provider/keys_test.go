package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
)

func newKeys(t testing.TB, alg string) *KeyManager {
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{1}, 32)})
	km, err := NewKeyManager(context.Background(), KeyOptions{Store: testdb.SQLite(t), Keyring: ring, Algorithm: alg, Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return km
}

func TestSignerKidAndRotation(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			ctx := context.Background()
			km := newKeys(t, alg)
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
			tok2, _, _ := s.Generate(ctx, fjwt.MapClaims{"sub": "u1"}, &fjwt.Headers{})
			jws2, _ := jose.ParseSigned(tok2, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if jws2.Signatures[0].Header.KeyID != newKid {
				t.Fatalf("after rotation sign with %s, got %s", newKid, jws2.Signatures[0].Header.KeyID)
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
