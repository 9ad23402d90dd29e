package httpx

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var proxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}

func clientOf(remote string, h http.Header) string {
	var got string
	TrustedProxies(proxies)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = ClientIP(r) })).
		ServeHTTP(httptest.NewRecorder(), &http.Request{RemoteAddr: remote, Header: h})
	return got
}

func TestTrustedProxiesChooseTheClient(t *testing.T) {
	tests := []struct {
		name, remote string
		header       http.Header
		want         string
	}{
		{"untrusted peer, forged header", "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "198.51.100.1"},
		{"untrusted peer, forged Forwarded", "198.51.100.1:5000", http.Header{"Forwarded": {"for=203.0.113.9"}}, "198.51.100.1"},
		{"trusted peer", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"client-supplied hop left of the real one", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.9"}}, "203.0.113.9"},
		{"chain of trusted proxies", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, 10.1.1.1", "10.2.2.2"}}, "203.0.113.9"},
		{"all hops trusted", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"10.1.1.1"}}, "10.1.1.1"},
		{"garbage hop stops the walk", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, not-an-ip"}}, "10.0.0.2"},
		{"no header", "10.0.0.2:5000", nil, "10.0.0.2"},
		{"RFC 7239 with port and IPv6", "10.0.0.2:5000", http.Header{"Forwarded": {`for="[2001:db8::7]:4711";proto=https, for=10.3.3.3`}}, "2001:db8::7"},
		{"Forwarded wins over X-Forwarded-For", "10.0.0.2:5000", http.Header{"Forwarded": {"for=203.0.113.1"}, "X-Forwarded-For": {"203.0.113.2"}}, "203.0.113.1"},
		{"IPv6 trusted peer", "[2001:db8:1::5]:443", http.Header{"X-Forwarded-For": {"192.0.2.8"}}, "192.0.2.8"},
		{"zone in a hop", "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"fe80::1%eth0"}}, "10.0.0.2"},
	}
	for _, tc := range tests {
		if got := clientOf(tc.remote, tc.header); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// FuzzForwardedHeaders: whatever the headers, the client address is the
// peer or an address written in them, and an untrusted peer is always
// itself.
func FuzzForwardedHeaders(f *testing.F) {
	f.Add("10.0.0.2:1", "203.0.113.9, 10.1.1.1", `for="[2001:db8::7]:4711";proto=https`)
	f.Add("198.51.100.1:1", "1.1.1.1", "for=unknown")
	f.Add("10.0.0.2:1", ",,,", `for=";for=`)
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		got := clientOf(remote, http.Header{"X-Forwarded-For": {xff}, "Forwarded": {fwd}})
		peer, ok := parseHop(remote)
		if _, _, err := net.SplitHostPort(remote); !ok || err != nil {
			return // not a TCP peer net/http would give (it always has a port)
		}
		if !isTrusted(proxies, peer) {
			if g, err := netip.ParseAddr(got); err != nil || g.Unmap() != peer {
				t.Fatalf("untrusted peer %q became %q", remote, got)
			}
			return
		}
		written := map[string]bool{peer.String(): true}
		for _, hop := range append(strings.Split(xff, ","), forwardedFor([]string{fwd})...) {
			if ip, ok := parseHop(strings.TrimSpace(hop)); ok {
				written[ip.String()] = true
			}
		}
		if !written[got] {
			t.Fatalf("client %q is neither the peer nor written in the headers", got)
		}
	})
}
