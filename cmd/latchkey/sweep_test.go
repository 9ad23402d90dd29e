package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// TestMalformedInputOnEveryRoute sends malformed, NUL-laden, invalid UTF-8,
// huge and deeply nested bodies and paths to every route of the real
// router (its own route list), as an admin and as nobody. No answer may be
// a 5xx, and nothing may change but the audit trail of refusals.
func TestMalformedInputOnEveryRoute(t *testing.T) {
	ctx := context.Background()
	st := testdb.SQLite(t)
	f := newAdminFixture(t, st)
	var routes [][2]string
	if err := chi.Walk(f.srv.app.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, [2]string{method, route})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(routes) < 50 {
		t.Fatalf("only %d routes walked", len(routes))
	}
	before := fingerprint(t, st)
	firstEvent, _ := st.LastAuditID(ctx)

	nested := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	bodies := []struct {
		name, ctype string
		body        []byte
	}{
		{"truncated JSON", "application/json", []byte(`{"name": "x`)},
		{"JSON with NUL", "application/json", []byte(`{"name": "a\u0000b", "username": "a\u0000b", "code": "1\u0000"}`)},
		{"JSON raw NUL", "application/json", []byte("{\"name\": \"a\x00b\"}")},
		{"invalid UTF-8", "application/json", []byte("{\"name\": \"\xff\xfe\"}")},
		{"wrong types", "application/json", []byte(`{"name": 5, "members": "x", "settings": [], "code": {}}`)},
		{"deeply nested", "application/json", []byte(nested)},
		{"huge JSON", "application/json", append(append([]byte(`{"name": "`), bytes.Repeat([]byte("a"), 2<<20)...), '"', '}')},
		{"form with NUL", "application/x-www-form-urlencoded", []byte("username=a%00b&password=x%00&code=%00&name=%00&csrf_token=%00&flow=%00")},
		{"form invalid UTF-8", "application/x-www-form-urlencoded", []byte("username=%ff%fe&name=%c0%af")},
		{"huge form", "application/x-www-form-urlencoded", append([]byte("username="), bytes.Repeat([]byte("a"), 2<<20)...)},
		{"text", "text/plain", []byte("hello")},
	}
	params := []string{"x", "%00", "%ff", strings.Repeat("a", 5000)}
	sent := 0
	for _, rt := range routes {
		for i, p := range params {
			path := fillParams(rt[1], p)
			for j, b := range bodies {
				if i > 0 && j > 1 { // every body on plain parameters; two on odd ones
					break
				}
				for _, token := range []string{"", f.adminToken} {
					req, _ := http.NewRequest(rt[0], f.srv.URL+path, bytes.NewReader(b.body))
					req.Header.Set("Content-Type", b.ctype)
					if token != "" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatalf("%s %s (%s): %v", rt[0], path, b.name, err)
					}
					resp.Body.Close()
					sent++
					if resp.StatusCode >= 500 {
						t.Errorf("%s %s with %s (token %v): %d", rt[0], path, b.name, token != "", resp.StatusCode)
					}
				}
			}
		}
	}
	if after := fingerprint(t, st); after != before {
		t.Errorf("malformed requests changed state:\nbefore %s\nafter  %s", before, after)
	}
	evs, err := st.ListAuditEvents(ctx, store.AuditFilter{AfterID: firstEvent, Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Outcome == "success" {
			t.Errorf("a malformed request was recorded as a change: %+v", e)
		}
	}
	t.Logf("%d requests over %d routes", sent, len(routes))
}

// fillParams replaces every {param} of a chi route pattern with p.
func fillParams(route, p string) string {
	var out strings.Builder
	for {
		i := strings.IndexByte(route, '{')
		if i < 0 {
			out.WriteString(route)
			return strings.TrimSuffix(out.String(), "/*")
		}
		j := strings.IndexByte(route[i:], '}')
		out.WriteString(route[:i] + p)
		route = route[i+j+1:]
	}
}

// fingerprint is what an administrator could see changed: users, groups,
// clients, policies, admins and authenticators.
func fingerprint(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	users, err1 := st.ListUsers(ctx, "", 1000)
	groups, err2 := st.ListGroups(ctx)
	clients, err3 := st.ListClients(ctx)
	policies, err4 := st.ListPolicies(ctx)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	var totp []string
	for _, u := range users {
		c, _ := st.GetTOTP(ctx, u.ID)
		admin, _ := st.IsAdmin(ctx, u.ID)
		totp = append(totp, fmt.Sprintf("%s:%s:%v", u.ID, c.ID, admin))
	}
	b, _ := json.Marshal([]any{users, groups, clients, policies, totp})
	return string(b)
}
