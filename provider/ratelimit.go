package provider

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/httprate"

	"github.com/latchkey/latchkey/internal/httpx"
)

// RateLimits caps requests per client address and minute; 0 turns a limit
// off. The counters are in memory, per replica: a flood spread over n
// replicas gets n times the limit. What must be shared across replicas —
// failed-attempt counting and lockout — lives in the database.
type RateLimits struct {
	// SignInPerMinute bounds the credential forms (password, code,
	// setup, lost authenticator, password reset) per address.
	SignInPerMinute int
	// TokenPerMinute bounds the token, revocation and introspection
	// endpoints per address.
	TokenPerMinute int
}

// limiter returns middleware allowing perMinute requests per client
// address (IPv6 by /64) and a sliding minute; over it, answer is called.
func limiter(perMinute int, answer func(w http.ResponseWriter, r *http.Request)) func(http.Handler) http.Handler {
	if perMinute <= 0 {
		return func(h http.Handler) http.Handler { return h }
	}
	return httprate.LimitBy(perMinute, time.Minute,
		func(r *http.Request) (string, error) { return httprate.CanonicalizeIP(httpx.ClientIP(r)), nil },
		httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
			if w.Header().Get("Retry-After") == "" {
				w.Header().Set("Retry-After", strconv.Itoa(int(time.Minute.Seconds())))
			}
			answer(w, r)
		}))
}

// msgSlowDown is shown when an address sends too many sign-in forms.
const msgSlowDown = "Too many sign-in attempts from your network. Wait a minute and try again."

// msgBusy is shown when too many sign-ins wait for their password check.
const msgBusy = "Too many people are signing in right now. Try again in a few seconds."

func (p *Provider) signInLimited(w http.ResponseWriter, r *http.Request) {
	p.errorPage(w, r, http.StatusTooManyRequests, "rate_limited", msgSlowDown)
}

func (p *Provider) tokenLimited(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate_limited",
		"error_description": "Too many requests from this address; retry after the time in Retry-After."})
}
