package provider

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	fjwt "github.com/ory/fosite/token/jwt"
)

// TestSessionMirrorsFosite: the compact encoding carries every field of
// fosite's session types, under the same JSON keys.
func TestSessionMirrorsFosite(t *testing.T) {
	for _, pair := range [][2]reflect.Type{
		{reflect.TypeFor[openid.DefaultSession](), reflect.TypeFor[storedSession]()},
		{reflect.TypeFor[fjwt.IDTokenClaims](), reflect.TypeFor[storedClaims]()},
		{reflect.TypeFor[fjwt.Headers](), reflect.TypeFor[storedHeaders]()},
	} {
		theirs, ours := pair[0], pair[1]
		if theirs.NumField() != ours.NumField() {
			t.Fatalf("%s has %d fields, %s %d: carry the new ones", theirs, theirs.NumField(), ours, ours.NumField())
		}
		for i := range theirs.NumField() {
			a, b := theirs.Field(i), ours.Field(i)
			key := func(f reflect.StructField) string { k, _, _ := strings.Cut(f.Tag.Get("json"), ","); return k }
			if a.Name != b.Name || key(a) != key(b) {
				t.Errorf("%s.%s (json %q) is mirrored as %s (json %q)", theirs, a.Name, key(a), b.Name, key(b))
			}
		}
	}
}

// TestSessionRoundTrip: what is stored reads back equal, in the compact
// form and in fosite's full form (rows written before the compact one).
func TestSessionRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	bare := newSession()
	bare.SetExpiresAt(fosite.AccessToken, at)
	user := newSession()
	user.Subject, user.Username = "u1", "ada"
	user.SetExpiresAt(fosite.AccessToken, at)
	user.SetExpiresAt(fosite.RefreshToken, at.Add(time.Hour))
	user.Claims.Subject, user.Claims.Issuer, user.Claims.AuthTime, user.Claims.RequestedAt = "u1", "https://id.example", at, at
	user.Claims.AuthenticationContextClassReference, user.Claims.AuthenticationMethodsReferences = "aal2", []string{"pwd", "otp"}
	user.Claims.Audience, user.Claims.Nonce = []string{"app"}, "n"
	user.Claims.Extra = map[string]any{"sid": "s1", "email_verified": false, "empty": ""}
	user.Headers.Extra = map[string]any{"kid": "k1"}
	for name, s := range map[string]*openid.DefaultSession{"without a user": bare, "with a user": user} {
		compact, err := encodeSession(s)
		if err != nil {
			t.Fatal(err)
		}
		full, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		for form, b := range map[string][]byte{"compact": compact, "fosite's": full} {
			got := newSession()
			if err := json.Unmarshal(b, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, s) {
				t.Errorf("%s, %s form: read back\n%+v\nwant\n%+v", name, form, got, s)
			}
		}
		if name == "without a user" && len(compact) > 80 {
			t.Errorf("a grant without a user stores %d bytes: %s", len(compact), compact)
		}
		t.Logf("%s: %d bytes compact, %d in fosite's form", name, len(compact), len(full))
	}
}
