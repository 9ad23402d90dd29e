package ui_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/internal/ui"
	"github.com/latchkey/latchkey/store"
)

// TestOutage: once a store call of the request noted the database
// unavailable, every answer but a success becomes 503 with Retry-After,
// without the handler's redirect, cookie or challenge; without the note,
// and for successes, answers pass through untouched.
func TestOutage(t *testing.T) {
	handler := func(status int, note bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if note {
				store.NoteUnavailable(r.Context())
			}
			w.Header().Set("Location", "/account/login")
			w.Header().Set("Set-Cookie", "latchkey_account=; Max-Age=0")
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error":"handler"}`)
		})
	}
	outage := ui.Outage(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range []struct {
		status   int
		note     bool
		accept   string
		want     int
		wantBody string
	}{
		{http.StatusOK, true, "", http.StatusOK, `"handler"`},
		{http.StatusUnauthorized, false, "", http.StatusUnauthorized, `"handler"`},
		{http.StatusSeeOther, false, "", http.StatusSeeOther, `"handler"`},
		{http.StatusUnauthorized, true, "", http.StatusServiceUnavailable, `"temporarily_unavailable"`},
		{http.StatusBadRequest, true, "text/html", http.StatusServiceUnavailable, "briefly unavailable"},
		{http.StatusSeeOther, true, "", http.StatusServiceUnavailable, "briefly unavailable"},
		{http.StatusInternalServerError, true, "", http.StatusServiceUnavailable, `"temporarily_unavailable"`},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/account/security", nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		outage(handler(c.status, c.note)).ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != c.want || !strings.Contains(body, c.wantBody) {
			t.Errorf("%d (noted %v, Accept %q): got %d %q, want %d with %q", c.status, c.note, c.accept, rec.Code, body, c.want, c.wantBody)
			continue
		}
		replaced := c.want == http.StatusServiceUnavailable
		if got := rec.Header().Get("Retry-After") != ""; got != replaced {
			t.Errorf("%d (noted %v): Retry-After present %v", c.status, c.note, got)
		}
		for _, h := range []string{"Location", "Set-Cookie", "WWW-Authenticate"} {
			if got := rec.Header().Get(h) != ""; got == replaced {
				t.Errorf("%d (noted %v): %s present %v", c.status, c.note, h, got)
			}
		}
		if replaced && strings.Contains(body, "handler") {
			t.Errorf("%d: the handler's body leaked into the 503: %q", c.status, body)
		}
	}
}
