package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
)

// BenchmarkClientCredentials issues client-credentials tokens through the
// real router and HTTP on PostgreSQL, 16 requests in flight, for an
// opaque client and a JWT client alternately (same server, same run):
//
//	go test -run '^$' -bench BenchmarkClientCredentials -benchtime 3000x -count 3 ./cmd/latchkey/
func BenchmarkClientCredentials(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) { benchClientCredentials(b, alg) })
	}
}

func benchClientCredentials(b *testing.B, alg string) {
	srv := startServer(b, testdb.Postgres(b), func(c *config.Config) {
		c.Keys.Algorithm = alg
		c.RateLimits.TokenPerMinute = 0 // one address sends everything here
	})
	opaque := srv.createClient(b, "opaque", false, true, "client_credentials")
	jwtc := srv.createClient(b, "jwt", false, true, "client_credentials")
	srv.jwtClient(b, "jwt")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	for _, c := range []client{opaque, jwtc} {
		b.Run(c.ID, func(b *testing.B) {
			parallelPosts(b, hc, srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}.Encode(), c, nil)
		})
	}
}

// BenchmarkIntrospection introspects one opaque and one stateless JWT
// client-credentials token through the real router on PostgreSQL, 16 in
// flight, alternately in one run (ES256 key):
//
//	go test -run '^$' -bench BenchmarkIntrospection -benchtime 3000x -count 1 ./cmd/latchkey/
func BenchmarkIntrospection(b *testing.B) {
	srv := startServer(b, testdb.Postgres(b), func(c *config.Config) {
		c.Keys.Algorithm = "ES256"
		c.RateLimits.TokenPerMinute = 0
	})
	opaque := srv.createClient(b, "opaque", false, true, "client_credentials")
	jwtc := srv.createClient(b, "jwt", false, true, "client_credentials")
	srv.jwtClient(b, "jwt")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, c := range []client{opaque, jwtc} {
		tok := issue(b, hc, srv, c)
		b.Run(c.ID, func(b *testing.B) {
			parallelPosts(b, hc, srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}.Encode(), c, func(out []byte) bool {
				return strings.Contains(string(out), `"active":true`)
			})
		})
	}
}

func issue(b *testing.B, hc *http.Client, srv *testServer, c client) string {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.AccessToken == "" {
		b.Fatalf("token: %v", err)
	}
	return t.AccessToken
}

// parallelPosts posts body to u as client c, 16 requests in flight
// (parallelism 8 × GOMAXPROCS 2), and fails on any answer but 200 (and,
// when ok is set, one ok refuses).
func parallelPosts(b *testing.B, hc *http.Client, u, body string, c client, ok func([]byte) bool) {
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, c.Secret)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || (ok != nil && !ok(out)) {
				b.Errorf("%s: %d %s", u, resp.StatusCode, out)
				return
			}
		}
	})
}
