// Package ui renders Latchkey's server-side HTML pages the same way
// everywhere: every page gets the CSRF token, a failed render never sends
// half a page, error pages show fixed, safe text (details go to the log),
// and one stylesheet gives the provider's pages and the account portal
// the same look. It knows nothing of identity.
package ui

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

//go:embed static/*
var static embed.FS

// Static serves /static/ (the shared stylesheet).
func Static() http.Handler { return http.StripPrefix("/", http.FileServerFS(static)) }

// Pages renders one package's templates. The template set must define
// "error.html" with .Code and .Message.
type Pages struct {
	T      *template.Template
	CSRF   *httpx.CSRF
	Logger *slog.Logger
	// Data, when set, adds what every page of the package needs (the
	// console's navigation depends on who is signed in).
	Data func(r *http.Request, data map[string]any)
}

// Render writes the named page with status; data gets "CSRF".
func (p *Pages) Render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	r = p.CSRF.Ensure(w, r)
	data["CSRF"] = p.CSRF.Token(r)
	if p.Data != nil {
		p.Data(r, data)
	}
	var buf bytes.Buffer
	if err := p.T.ExecuteTemplate(&buf, name, data); err != nil {
		p.Logger.ErrorContext(r.Context(), "render failed", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Error shows an error page with a stable code and a safe message.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	p.Render(w, r, status, "error.html", map[string]any{"Code": code, "Message": msg})
}

// CSRFFailed answers a form post without a valid CSRF token.
func (p *Pages) CSRFFailed(w http.ResponseWriter, r *http.Request) {
	p.Error(w, r, http.StatusForbidden, "csrf_failed", "This form expired or did not come from this site. Go back, reload the page and try again.")
}

// ServerError logs err and shows a fixed message with the request id.
func (p *Pages) ServerError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		p.Logger.WarnContext(r.Context(), "storage unavailable", "err", err, "request_id", httpx.RequestID(r.Context()))
		w.Header().Set("Retry-After", httpx.RetryAfter)
		p.Error(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "Latchkey is briefly unavailable. Try again in a few seconds.")
		return
	}
	p.Logger.ErrorContext(r.Context(), "request failed", "err", err, "request_id", httpx.RequestID(r.Context()))
	p.Error(w, r, http.StatusInternalServerError, "server_error", "Something went wrong on our side. Request id: "+httpx.RequestID(r.Context()))
}
