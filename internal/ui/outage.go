package ui

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

// Outage makes "the database is unavailable" the answer wherever it is
// the cause, in one place for every route. A handler whose lookup failed
// tends to answer as if the thing looked up were missing: a sign-in
// "expired" (400), a token "invalid" (401), "not signed in" (a redirect
// that also clears the cookie). That is wrong during a failover: nothing
// expired, and the client should simply try again. So when a store call
// of the request returned store.ErrUnavailable (store.SawUnavailable),
// any answer but a success is replaced by 503 with Retry-After, with the
// handler's headers dropped (no redirect, no cookie change, no
// WWW-Authenticate).
func Outage(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = r.WithContext(store.WatchUnavailable(r.Context()))
			next.ServeHTTP(&outageWriter{ResponseWriter: w, r: r, log: log}, r)
		})
	}
}

type outageWriter struct {
	http.ResponseWriter
	r        *http.Request
	log      *slog.Logger
	wrote    bool
	replaced bool
}

func (o *outageWriter) WriteHeader(status int) {
	if o.wrote {
		return
	}
	o.wrote = true
	if status < 300 || status == http.StatusServiceUnavailable || !store.SawUnavailable(o.r.Context()) {
		o.ResponseWriter.WriteHeader(status)
		return
	}
	o.replaced = true
	o.log.WarnContext(o.r.Context(), "answer replaced by 503: the database was unavailable to this request", "status", status,
		"path", o.r.URL.Path, "request_id", httpx.RequestID(o.r.Context()))
	h := o.ResponseWriter.Header()
	// A page or a redirect was meant for a browser; anything else for an
	// API client.
	html := strings.HasPrefix(h.Get("Content-Type"), "text/html") || status < 400 || strings.Contains(o.r.Header.Get("Accept"), "text/html")
	for _, k := range []string{"Location", "Set-Cookie", "WWW-Authenticate", "Content-Length", "Content-Type"} {
		h.Del(k)
	}
	h.Set("Retry-After", httpx.RetryAfter)
	if html {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		o.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
		_, _ = o.ResponseWriter.Write([]byte(outagePage))
		return
	}
	httpx.WriteJSON(o.ResponseWriter, http.StatusServiceUnavailable, &httpx.Error{Status: http.StatusServiceUnavailable,
		Code: "temporarily_unavailable", Message: "The service is temporarily unavailable; retry shortly."})
}

func (o *outageWriter) Write(b []byte) (int, error) {
	if !o.wrote {
		o.WriteHeader(http.StatusOK)
	}
	if o.replaced {
		return len(b), nil
	}
	return o.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (o *outageWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

const outagePage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Briefly unavailable · Latchkey</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="card">
<header class="brand"><span class="logo" aria-hidden="true">◆</span> Latchkey</header>
<h1>Briefly unavailable</h1>
<p class="banner error" role="alert">Latchkey is briefly unavailable. Try again in a few seconds.</p>
<p class="hint">Error code: <code>temporarily_unavailable</code></p>
</main>
</body>
</html>
`
