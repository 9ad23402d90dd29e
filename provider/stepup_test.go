package provider

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

func TestParseAuthorizationDetails(t *testing.T) {
	good := map[string][]string{
		`[{"type":"latchkey_mfa","actions":["remove"]}]`:                                                      {"remove"},
		`[{"type":"latchkey_mfa","actions":["replace","remove","replace"]}]`:                                  {"remove", "replace"},
		`[{"type":"latchkey_mfa","actions":["recovery_codes"]},{"type":"latchkey_mfa","actions":["remove"]}]`: {"recovery_codes", "remove"},
	}
	for in, want := range good {
		got, err := ParseAuthorizationDetails(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: got %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "null", "[]", "{}", `[{}]`, `[{"type":"latchkey_mfa"}]`, `[{"type":"latchkey_mfa","actions":[]}]`,
		`[{"type":"payment_initiation","actions":["remove"]}]`, `[{"type":"latchkey_mfa","actions":["remove"],"locations":["x"]}]`,
		`[{"type":"latchkey_mfa","actions":["remove\u0000"]}]`, `[{"type":"latchkey_mfa","actions":["rеmove"]}]`, // Cyrillic е
		`[{"type":"latchkey_mfa","actions":["remove"]}] trailing`, strings.Repeat("[", 5000),
		"[" + strings.Repeat(`{"type":"latchkey_mfa","actions":["remove"]},`, 4) + `{"type":"latchkey_mfa","actions":["remove"]}]`} {
		if got, err := ParseAuthorizationDetails(in); err == nil {
			t.Errorf("%.60q accepted: %v", in, got)
		}
	}
}

// FuzzParseAuthorizationDetails: any input is either refused or yields
// known actions, sorted and unique, from at most 2 KiB.
func FuzzParseAuthorizationDetails(f *testing.F) {
	f.Add(`[{"type":"latchkey_mfa","actions":["remove"]}]`)
	f.Add(`[{"type":"latchkey_mfa","actions":["replace","recovery_codes"]}]`)
	f.Add(`{"type":"latchkey_mfa"}`)
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseAuthorizationDetails(in)
		if err != nil {
			return
		}
		if len(in) > maxAuthorizationDetails || len(got) == 0 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%q gave %v", in, got)
		}
		for _, a := range got {
			if !slices.Contains(mfa.Actions, a) {
				t.Fatalf("%q gave unknown action %q", in, a)
			}
		}
		// What is stored in a token reads back the same.
		raw, _ := json.Marshal([]AuthorizationDetail{{Type: mfa.AuthorizationDetailsType, Actions: got}})
		var v any
		_ = json.Unmarshal(raw, &v)
		if back := stepUpFromClaims(map[string]any{claimStepUp: v}); !slices.Equal(back, got) {
			t.Fatalf("round trip: %v -> %v", got, back)
		}
	})
}

func request(c *client, scopes []string, form url.Values) *fosite.AuthorizeRequest {
	ar := fosite.NewAuthorizeRequest()
	ar.Client = c
	ar.RequestedScope = scopes
	ar.Form = form
	return ar
}

// TestAuthorizationChecks: the admin scopes only for first-party clients,
// even one registered around the store's rule; authorization_details only
// with the account scope and prompt=login.
func TestAuthorizationChecks(t *testing.T) {
	third := &client{DefaultClient: &fosite.DefaultClient{ID: "third", Scopes: []string{"openid", "admin", "account"}}}
	first := &client{DefaultClient: &fosite.DefaultClient{ID: "first", Scopes: []string{"openid", "admin", "account"}}, FirstParty: true}
	details := `[{"type":"latchkey_mfa","actions":["remove"]}]`
	tests := []struct {
		name string
		ar   *fosite.AuthorizeRequest
		ok   bool
	}{
		{"third-party asks for admin", request(third, []string{"openid", "admin"}, url.Values{}), false},
		{"third-party asks for admin:sensitive", request(third, []string{"admin:sensitive"}, url.Values{}), false},
		{"first-party asks for admin", request(first, []string{"openid", "admin"}, url.Values{}), true},
		{"step-up with prompt=login", request(third, []string{"openid", "account"}, url.Values{"prompt": {"login"}, "authorization_details": {details}}), true},
		{"step-up without prompt=login", request(third, []string{"openid", "account"}, url.Values{"authorization_details": {details}}), false},
		{"step-up with prompt=none", request(third, []string{"openid", "account"}, url.Values{"prompt": {"none"}, "authorization_details": {details}}), false},
		{"step-up without the account scope", request(first, []string{"openid"}, url.Values{"prompt": {"login"}, "authorization_details": {details}}), false},
	}
	for _, tc := range tests {
		if err := checkScopesAndDetails(tc.ar); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestGrantedStepUp: the token carries the actions only after a sign-in
// made after the request arrived, with the second factor.
func TestGrantedStepUp(t *testing.T) {
	requested := time.Now()
	ar := request(&client{DefaultClient: &fosite.DefaultClient{ID: "a"}}, []string{"openid", "account"},
		url.Values{"prompt": {"login"}, "authorization_details": {`[{"type":"latchkey_mfa","actions":["remove"]}]`}})
	for name, tc := range map[string]struct {
		bs   store.BrowserSession
		want bool
	}{
		"new sign-in with 2SV":         {store.BrowserSession{AuthTime: requested.Add(time.Second), ACR: ACRMFA}, true},
		"new sign-in, password only":   {store.BrowserSession{AuthTime: requested.Add(time.Second), ACR: ACRPassword}, false},
		"earlier sign-in (no re-auth)": {store.BrowserSession{AuthTime: requested.Add(-time.Minute), ACR: ACRMFA}, false},
	} {
		if got := grantedStepUp(ar, tc.bs, requested); (len(got) > 0) != tc.want {
			t.Errorf("%s: %v", name, got)
		}
	}
}
