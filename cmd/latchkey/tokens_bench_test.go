package main

import (
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
			body := url.Values{"grant_type": {"client_credentials"}}.Encode()
			b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 in flight
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/token", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(c.ID, c.Secret)
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
