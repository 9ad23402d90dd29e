package httpx

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
)

// CSRF protects state-changing requests with a signed double-submit token:
// the browser holds a random HttpOnly cookie, and every form carries
// HMAC(key, cookie). A cross-site attacker can neither read the cookie nor
// compute the HMAC, so cannot forge the field.
type CSRF struct {
	Key        []byte
	CookieName string
	Secure     bool
}

type csrfCtxKey struct{}

// FieldName is the form field carrying the token.
const FieldName = "csrf_token"

// HeaderName is the header carrying the token for JSON calls.
const HeaderName = "X-CSRF-Token"

func (c *CSRF) cookieName() string {
	if c.CookieName == "" {
		return "latchkey_csrf"
	}
	return c.CookieName
}

// Ensure makes sure the browser has a CSRF cookie, setting one on w if
// needed, and returns a request carrying it for Token and Binding.
func (c *CSRF) Ensure(w http.ResponseWriter, r *http.Request) *http.Request {
	if v := c.cookieValue(r); v != "" {
		return r
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Value: v, Path: "/", HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode})
	return r.WithContext(context.WithValue(r.Context(), csrfCtxKey{}, v))
}

func (c *CSRF) cookieValue(r *http.Request) string {
	if v, ok := r.Context().Value(csrfCtxKey{}).(string); ok {
		return v
	}
	if ck, err := r.Cookie(c.cookieName()); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	return ""
}

// Token returns the value forms must echo in csrf_token ("" without cookie).
func (c *CSRF) Token(r *http.Request) string {
	v := c.cookieValue(r)
	if v == "" {
		return ""
	}
	m := hmac.New(sha256.New, c.Key)
	m.Write([]byte("csrf\x00" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Valid reports whether r carries the token for its cookie, in the form
// field or the X-CSRF-Token header.
func (c *CSRF) Valid(r *http.Request) bool {
	want := c.Token(r)
	if want == "" {
		return false
	}
	got := r.Header.Get(HeaderName)
	if got == "" {
		got = r.PostFormValue(FieldName)
	}
	return hmac.Equal([]byte(got), []byte(want))
}

// Binding identifies the browser (a hash of its CSRF cookie), so server-side
// state such as a login flow can be tied to the browser that started it.
func (c *CSRF) Binding(r *http.Request) string {
	v := c.cookieValue(r)
	if v == "" {
		return ""
	}
	s := sha256.Sum256([]byte("binding\x00" + v))
	return hex.EncodeToString(s[:])
}
