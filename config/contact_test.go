package config

import (
	"strings"
	"testing"
	"unicode"
)

func TestParseContact(t *testing.T) {
	good := map[string]Contact{
		"IT Service Desk <it@example.com>":           {Name: "IT Service Desk", Email: "it@example.com"},
		"Help portal <https://help.example.com/2sv>": {Name: "Help portal", URL: "https://help.example.com/2sv"},
		"Zoë Ångström, Security <zoe@example.org>":   {Name: "Zoë Ångström, Security", Email: "zoe@example.org"},
	}
	for in, want := range good {
		if got, err := ParseContact(in); err != nil || got != want {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "it@example.com", "<it@example.com>", "IT <not-an-address>", "IT <http://help.example.com>",
		"IT <javascript:alert(1)>", "IT <https://user:pw@help.example.com>", "IT\x00 <it@example.com>", "IT\u202e <it@example.com>",
		"IT\u200b <it@example.com>", "IT <it@example.com> trailing", "IT <Bob <bob@example.com>>", strings.Repeat("a", 600) + " <it@example.com>",
		"IT <it@example.com\r\nBcc: x@evil.example>", "\xff <it@example.com>"} {
		if got, err := ParseContact(in); err == nil {
			t.Errorf("%.60q accepted: %+v", in, got)
		}
	}
}

// FuzzParseContact: an accepted entry has a clean name and exactly one
// safe target.
func FuzzParseContact(f *testing.F) {
	f.Add("IT Service Desk <it@example.com>")
	f.Add("Help <https://help.example.com>")
	f.Add("x <y>")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseContact(in)
		if err != nil {
			return
		}
		if c.Name == "" || (c.Email == "") == (c.URL == "") {
			t.Fatalf("%q: %+v", in, c)
		}
		if c.URL != "" && !strings.HasPrefix(c.URL, "https://") {
			t.Fatalf("%q: unsafe link %q", in, c.URL)
		}
		for _, r := range c.Name + c.Email + c.URL {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("%q: control character survived: %+v", in, c)
			}
		}
	})
}
