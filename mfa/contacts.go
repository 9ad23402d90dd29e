package mfa

import (
	"context"
	"unicode"
	"unicode/utf8"

	"github.com/latchkey/latchkey/store"
)

// Contact is someone a user can ask for a reset: one of their groups'
// admins, or one of the organisation's fallback contacts.
type Contact struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
	// Fallback marks the organisation's contacts (support.contacts), shown
	// when none of the user's groups names an admin.
	Fallback bool `json:"fallback,omitempty"`
}

// contacts returns whom the user can ask: the admins of their groups, or
// the organisation's fallback contacts when their groups name none.
func (s *Service) contacts(ctx context.Context, q store.Queries, userID string) ([]Contact, error) {
	us, err := q.UserAdminContacts(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Contact, 0, len(us))
	for _, u := range us {
		name := u.DisplayName
		if name == "" {
			name = u.Username
		}
		out = append(out, Contact{Name: name, Email: u.Email})
	}
	if len(out) == 0 {
		for _, c := range s.o.Support {
			c.Fallback = true
			out = append(out, c)
		}
	}
	return out, nil
}

// Contacts returns whom the user can ask for a reset (see contacts).
func (s *Service) Contacts(ctx context.Context, userID string) ([]Contact, error) {
	return s.contacts(ctx, s.o.Store, userID)
}

// PlainText accepts a short free-text note (a reset request's message, a
// decision's reason): valid UTF-8 of at most max bytes, no control or
// invisible format characters except line breaks.
func PlainText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c != '\n' && c != '\r' && (unicode.IsControl(c) || unicode.Is(unicode.Cf, c)) {
			return false
		}
	}
	return true
}
