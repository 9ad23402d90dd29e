package httpx

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Behind a reverse proxy the TCP peer is the proxy. TrustedProxies lets
// the configured proxies (http.trusted_proxies) say who the client is;
// nobody else can: a forged X-Forwarded-For from any other peer is
// ignored, so lockout, rate limits and audit records keep the real peer.

type clientIPKey struct{}

// TrustedProxies returns middleware that, for a request whose TCP peer is
// in one of trusted, takes the client address from the Forwarded header
// (RFC 7239) or, without one, X-Forwarded-For: walking the hops from the
// right, the first address that is not itself a trusted proxy. A hop that
// does not parse ends the walk at the last trusted address. Requests from
// other peers keep the peer address whatever they send.
func TrustedProxies(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(trusted) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, ok := parseHop(r.RemoteAddr)
			if ok && isTrusted(trusted, peer) {
				if ip := forwardedClient(r.Header, trusted, peer); ip != peer {
					r = r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip.String()))
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func isTrusted(trusted []netip.Prefix, ip netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedClient walks the forwarded hops right to left from peer.
func forwardedClient(h http.Header, trusted []netip.Prefix, peer netip.Addr) netip.Addr {
	hops := forwardedFor(h.Values("Forwarded"))
	if len(hops) == 0 {
		for _, v := range h.Values("X-Forwarded-For") {
			for _, hop := range strings.Split(v, ",") {
				hops = append(hops, strings.TrimSpace(hop))
			}
		}
	}
	best := peer
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := parseHop(hops[i])
		if !ok {
			return best
		}
		best = ip
		if !isTrusted(trusted, ip) {
			return ip
		}
	}
	return best
}

// forwardedFor returns the for= values of Forwarded headers, in order.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					out = append(out, strings.Trim(val, `"`))
				}
			}
		}
	}
	return out
}

// parseHop reads an address with or without port ("192.0.2.1",
// "192.0.2.1:443", "[2001:db8::1]:443", "2001:db8::1").
func parseHop(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
