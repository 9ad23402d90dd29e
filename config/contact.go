package config

import (
	"errors"
	"net/mail"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Contact is one parsed support.contacts entry.
type Contact struct {
	Name  string
	Email string // one of Email and URL is set
	URL   string
}

// ParseContact reads "Name <someone@example.com>" or
// "Name <https://help.example.com/…>". Names are at most 100 characters
// without control or invisible format characters (no bidi overrides), so
// what a user reads on the page is what the operator wrote.
func ParseContact(s string) (Contact, error) {
	if len(s) > 500 || !utf8.ValidString(s) {
		return Contact{}, errors.New("must be valid UTF-8, at most 500 bytes")
	}
	open, close := strings.LastIndexByte(s, '<'), strings.LastIndexByte(s, '>')
	if open < 0 || close != len(s)-1 || close < open {
		return Contact{}, errors.New(`must look like "Name <email>" or "Name <https://…>"`)
	}
	name, target := strings.TrimSpace(s[:open]), strings.TrimSpace(s[open+1:close])
	if name == "" || utf8.RuneCountInString(name) > 100 {
		return Contact{}, errors.New("needs a name of at most 100 characters")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return Contact{}, errors.New("must not contain control or invisible characters")
		}
	}
	if strings.ContainsAny(name, "<>") {
		return Contact{}, errors.New("the name must not contain < or >")
	}
	if strings.HasPrefix(target, "https://") {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" || u.User != nil {
			return Contact{}, errors.New("the link must be an https URL")
		}
		return Contact{Name: name, URL: u.String()}, nil
	}
	a, err := mail.ParseAddress(target)
	if err != nil || a.Address != target || a.Name != "" {
		return Contact{}, errors.New("must be an email address or an https URL")
	}
	return Contact{Name: name, Email: a.Address}, nil
}
