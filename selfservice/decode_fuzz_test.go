package selfservice

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeJSON: the account API's JSON decoder never panics, accepts only
// one well-formed object of at most its limit in valid UTF-8 without NUL,
// and refuses everything else with a 4xx and a stable state. Seeds: below
// and testdata/fuzz/FuzzDecodeJSON.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"unlink_id": "u", "choice": "yes"}`, `{"choice": "no"}`, `{"code": "123456"}`, `{"message": "new phone"}`,
		`{}`, `{"choice": 1}`, `{"x": 1}`, `{"code": "1\u0000"}`, "{\"code\": \"\xff\"}", `{} []`, `[[[[`, `null`} {
		f.Add("application/json", []byte(s))
	}
	f.Add("", []byte(`{"code": "123456"}`))
	f.Add("text/plain", []byte("hello"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		targets := []any{&DecideInput{}, &struct {
			Code string `json:"code"`
		}{}, &struct {
			Message string `json:"message"`
		}{}, &struct{}{}}
		for _, v := range targets {
			r := httptest.NewRequest("PUT", "/account/mfa/disable", bytes.NewReader(body))
			if ctype != "" {
				r.Header.Set("Content-Type", ctype)
			}
			p := decodeJSON(r, v)
			if p == nil {
				if (ctype != "" && !strings.HasPrefix(ctype, "application/json")) || len(body) > maxBody || !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 {
					t.Fatalf("accepted %q body of %d bytes (%T)", ctype, len(body), v)
				}
				continue
			}
			if p.Status < 400 || p.Status > 499 || p.State == "" || p.Message == "" {
				t.Fatalf("refusal is not a 4xx with a state: %#v", p)
			}
		}
	})
}
