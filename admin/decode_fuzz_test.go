package admin

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/latchkey/latchkey/internal/httpx"
)

// FuzzDecode: the admin API's one JSON decoder, into every body type it
// reads, never panics; it accepts only one well-formed JSON object of at
// most 64 KiB, valid UTF-8 without NUL, sent as application/json, and
// refuses everything else with a 4xx and a stable code. Seeds: the calls
// below and testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name": "Ops", "description": "x"}`, `{"user_id": "user_1"}`, `{"policy_id": "p"}`,
		`{"name": "C", "redirect_uris": ["https://c/cb"], "public": true, "pkce_optional": true}`, `{"reason": "ok"}`,
		`{"username": "ivy", "email": "ivy@example.com", "password": "a-good-password"}`, `{"settings": {"require_mfa": true}}`,
		`{"name": "a\u0000"}`, "{\"name\": \"\xff\"}", `{"name": 5}`, `{"x": 1}`, `{} {}`, `[]`, `null`, `{"name": "` + strings.Repeat("a", 70000) + `"}`} {
		f.Add("application/json", []byte(s))
	}
	f.Add("text/plain", []byte(`{}`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		targets := []any{&ClientInput{}, &PolicyInput{}, &UserInput{}, &UserRef{}, &struct{}{},
			&struct {
				Name        string `json:"name"`
				Description string `json:"description"`
			}{}, &struct {
				Reason string `json:"reason"`
			}{}}
		for _, v := range targets {
			r := httptest.NewRequest("POST", "/admin/x", bytes.NewReader(body))
			r.Header.Set("Content-Type", ctype)
			err := decode(r, v)
			if err == nil {
				if !strings.HasPrefix(ctype, "application/json") || len(body) > maxBody || !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 {
					t.Fatalf("accepted %q body of %d bytes (%T)", ctype, len(body), v)
				}
				continue
			}
			var he *httpx.Error
			if !errors.As(err, &he) || he.Status < 400 || he.Status > 499 || he.Code == "" {
				t.Fatalf("refusal is not a 4xx with a code: %#v", err)
			}
			if he.Status == 422 && len(he.Fields) == 0 {
				t.Fatalf("422 without the fields at fault: %#v", he)
			}
		}
	})
}
