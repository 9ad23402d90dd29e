package authn

import (
	"errors"
	"strings"
	"unicode"

	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Names people see and type are checked here, whichever path creates them
// (admin API, console, CLI) and wherever a user is looked up by name
// (sign-in), so look-alike names cannot impersonate each other.

// ErrBadName explains why a name was refused; the message is safe to show.
type ErrBadName struct{ Reason string }

func (e *ErrBadName) Error() string { return "authn: " + e.Reason }

// Username normalises a username with the PRECIS UsernameCaseMapped
// profile (RFC 8265: width-mapped, case-folded, NFC; no spaces, controls,
// invisible or bidi characters) and refuses names that mix scripts (the
// Cyrillic "а" in "аlice"). Skeleton is the name's look-alike form, for
// refusing a new name confusable with an existing one.
func Username(s string) (string, error) {
	u, err := precis.UsernameCaseMapped.String(strings.TrimSpace(s))
	if err != nil || u == "" {
		return "", &ErrBadName{"a username is letters, digits and punctuation, without spaces, invisible or direction-changing characters"}
	}
	if len(u) > 256 {
		return "", &ErrBadName{"a username has at most 256 characters"}
	}
	if mixedScripts(u) {
		return "", &ErrBadName{"a username must not mix alphabets (such as Latin and Cyrillic letters)"}
	}
	return u, nil
}

// mixedScripts reports letters from more than one of the scripts whose
// letters look alike (Latin, Cyrillic, Greek).
func mixedScripts(s string) bool {
	seen := 0
	for _, tab := range []*unicode.RangeTable{unicode.Latin, unicode.Cyrillic, unicode.Greek} {
		for _, r := range s {
			if unicode.Is(tab, r) {
				seen++
				break
			}
		}
	}
	return seen > 1
}

// confusables maps Cyrillic and Greek letters to the Latin letters they
// look like (the common subset of Unicode's confusables.txt).
var confusables = map[rune]rune{
	'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'у': 'y', 'х': 'x',
	'і': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l',
	'α': 'a', 'β': 'b', 'ε': 'e', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y',
}

// Skeleton is a normalised username's look-alike form: two names with the
// same skeleton are confusable.
func Skeleton(normalised string) string {
	return strings.Map(func(r rune) rune {
		if l, ok := confusables[r]; ok {
			return l
		}
		return r
	}, normalised)
}

// DisplayText normalises a name shown to people (display names, group
// names): NFC, trimmed, at most max characters, no control, invisible or
// bidi characters.
func DisplayText(s string, max int) (string, error) {
	s = norm.NFC.String(strings.TrimSpace(s))
	if len([]rune(s)) > max {
		return "", &ErrBadName{"too long"}
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", &ErrBadName{"no control, invisible or direction-changing characters"}
		}
	}
	return s, nil
}

// AsBadName returns err's reason, if it is a refused name.
func AsBadName(err error) (string, bool) {
	var e *ErrBadName
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}
