package provider

import (
	"strings"
	"testing"
	"time"
)

// FuzzStatelessToken: the unverified peek at a token and the request-id
// codec of stateless tokens never panic on any input, and the codec
// round-trips.
func FuzzStatelessToken(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "jti", int64(1767225600))
	f.Add("a.b.c", "", int64(0))
	f.Add("jwt:x:12", "x:y", int64(-1))
	f.Fuzz(func(t *testing.T, token, jti string, exp int64) {
		_ = isStateless(token)
		_, _, _ = parseStatelessID(token)
		if jti == "" || strings.Contains(jti, ":") {
			return
		}
		got, at, ok := parseStatelessID(statelessID(jti, time.Unix(exp, 0)))
		if !ok || got != jti || at.Unix() != exp {
			t.Fatalf("round trip of %q %d: %q %d %v", jti, exp, got, at.Unix(), ok)
		}
	})
}
