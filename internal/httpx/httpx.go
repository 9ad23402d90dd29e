// Package httpx holds HTTP plumbing shared by the provider, the account
// portal and the admin API: the JSON error type and its one writer,
// middleware (request ids, panic recovery, security headers, access logs and
// metrics) and CSRF protection. It knows nothing of identity.
package httpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/latchkey/latchkey/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Error is an HTTP error with a stable machine-readable code. Message is
// safe to show; Err is logged, never sent.
type Error struct {
	Status  int               `json:"-"`
	Code    string            `json:"error"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
	Err     error             `json:"-"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// WriteError answers with err as JSON. Errors that are not *Error become a
// 500 with a fixed message and the request id; details go only to the log.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var he *Error
	if errors.Is(err, store.ErrInvalidInput) && !errors.As(err, &he) {
		he = &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "Text must be valid UTF-8 without NUL bytes."}
	}
	if errors.Is(err, store.ErrUnavailable) {
		WriteUnavailable(w, r, log, err)
		return
	}
	if he == nil && !errors.As(err, &he) {
		log.ErrorContext(r.Context(), "request failed", "err", err, "request_id", RequestID(r.Context()))
		he = &Error{Status: http.StatusInternalServerError, Code: "server_error", Message: "internal error; request id " + RequestID(r.Context())}
	} else if he.Err != nil {
		log.WarnContext(r.Context(), "request refused", "code", he.Code, "err", he.Err, "request_id", RequestID(r.Context()))
	}
	WriteJSON(w, he.Status, he)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request's id.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithRequestID assigns each request a random id, echoed in X-Request-Id.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// Recover turns a panic into a logged 500.
func Recover(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.ErrorContext(r.Context(), "panic", "panic", p, "request_id", RequestID(r.Context()))
					WriteError(w, r, log, &Error{Status: 500, Code: "server_error", Message: "internal error; request id " + RequestID(r.Context())})
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// SecurityHeaders sets headers every response carries: no framing, no
// sniffing, a strict CSP (no inline script: the one script, for passkeys,
// is a file of this origin), no referrer leaks.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// HSTS tells browsers to use HTTPS only, for a deployment served over it.
func HSTS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// NoStore marks responses as not cacheable (auth pages, tokens).
func NoStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// Metrics are the per-route HTTP metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers HTTP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "latchkey_http_requests_total", Help: "HTTP requests by route, method and status."},
			[]string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "latchkey_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Observe logs each request and records its metrics under the chi route
// pattern (never the raw path, which would explode label cardinality).
func Observe(log *slog.Logger, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			d := time.Since(start)
			if m != nil {
				m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
				m.latency.WithLabelValues(route, r.Method).Observe(d.Seconds())
			}
			log.LogAttrs(r.Context(), slog.LevelDebug, "http request", slog.String("method", r.Method), slog.String("route", route),
				slog.Int("status", sw.status), slog.Duration("duration", d), slog.String("request_id", RequestID(r.Context())))
		})
	}
}

// ClientIP is the client's address without port: the TCP peer, or what a
// trusted proxy said (TrustedProxies). Lockout, rate limits and audit
// records all take it from here.
func ClientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// validText reports whether s is valid UTF-8 without NUL bytes.
func validText(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }

// RejectBadText refuses, at the edge and before anything is read or
// counted, requests whose path, query or form carries a NUL byte or
// invalid UTF-8: 400 invalid_input. (JSON bodies are checked by their
// decoders, store arguments by the store.)
func RejectBadText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := !validText(r.URL.Path)
		for _, vs := range r.URL.Query() {
			for _, v := range vs {
				bad = bad || !validText(v)
			}
		}
		if !bad && r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err == nil {
				for _, vs := range r.PostForm {
					for _, v := range vs {
						bad = bad || !validText(v)
					}
				}
			}
		}
		if bad {
			WriteJSON(w, http.StatusBadRequest, &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "Text must be valid UTF-8 without NUL bytes."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BadJSONText reports whether a JSON body carries a NUL (escaped or raw)
// or invalid UTF-8, for decoders to refuse it whole.
func BadJSONText(body []byte) bool {
	return !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 || bytes.Contains(bytes.ToLower(body), []byte(`\u0000`))
}

// RetryAfter is the Retry-After answered while the database is unavailable.
const RetryAfter = "5"

// WriteUnavailable answers 503 with Retry-After: the database is
// unavailable (restart, failover), which is neither the caller's fault nor
// a verdict on their credentials.
func WriteUnavailable(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.WarnContext(r.Context(), "storage unavailable", "err", err, "request_id", RequestID(r.Context()))
	w.Header().Set("Retry-After", RetryAfter)
	WriteJSON(w, http.StatusServiceUnavailable, &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
		Message: "The service is temporarily unavailable; retry shortly."})
}
