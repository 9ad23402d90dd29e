package provider

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// Step-up for bearer callers (RFC 9396 + RFC 9470). An application that
// wants to remove, replace or renew a user's 2SV through the account API
// asks for a token with
//
//	prompt=login&max_age=N&acr_values=aal2&scope=openid account
//	&authorization_details=[{"type":"latchkey_mfa","actions":["remove"]}]
//
// (and id_token_hint, to pin the user). The sign-in page and the consent
// page say in words what the user is confirming. Only when the user then
// signs in again, with the second factor, after the request arrived, does
// the resulting token carry the actions; the account API spends them once.
// A token from an ordinary or prompt=none authorization never carries them.

// claimStepUp is the session claim holding the granted details.
const claimStepUp = "authorization_details"

// maxAuthorizationDetails bounds the parameter's size.
const maxAuthorizationDetails = 2048

// AuthorizationDetail is one RFC 9396 entry Latchkey understands.
type AuthorizationDetail struct {
	Type    string   `json:"type"`
	Actions []string `json:"actions"`
}

var errInvalidDetails = &fosite.RFC6749Error{ErrorField: "invalid_authorization_details", CodeField: http.StatusBadRequest,
	DescriptionField: "The authorization_details parameter is not acceptable."}

// ParseAuthorizationDetails decodes and validates authorization_details:
// a JSON array of objects of type latchkey_mfa naming known actions, no
// unknown fields, at most 2 KiB. It returns the requested actions.
func ParseAuthorizationDetails(raw string) ([]string, error) {
	if len(raw) > maxAuthorizationDetails {
		return nil, errors.New("provider: authorization_details too large")
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var ds []AuthorizationDetail
	if err := dec.Decode(&ds); err != nil {
		return nil, errors.New("provider: authorization_details is not a JSON array of objects")
	}
	if dec.More() {
		return nil, errors.New("provider: trailing data after authorization_details")
	}
	if len(ds) == 0 || len(ds) > 4 {
		return nil, errors.New("provider: authorization_details needs one to four entries")
	}
	var actions []string
	for _, d := range ds {
		if d.Type != mfa.AuthorizationDetailsType {
			return nil, errors.New("provider: unknown authorization_details type")
		}
		if len(d.Actions) == 0 {
			return nil, errors.New("provider: authorization_details entry without actions")
		}
		for _, a := range d.Actions {
			if !slices.Contains(mfa.Actions, a) {
				return nil, errors.New("provider: unknown authorization_details action")
			}
			if !slices.Contains(actions, a) {
				actions = append(actions, a)
			}
		}
	}
	slices.Sort(actions)
	return actions, nil
}

// stepUpActions validates a request's authorization_details: only with
// the account scope and prompt=login, since the point is a new sign-in.
func stepUpActions(ar fosite.AuthorizeRequester) ([]string, error) {
	form := ar.GetRequestForm()
	raw := form.Get("authorization_details")
	if raw == "" {
		return nil, nil
	}
	actions, err := ParseAuthorizationDetails(raw)
	if err != nil {
		return nil, errInvalidDetails.WithWrap(err).WithDebug(err.Error())
	}
	if !slices.Contains(ar.GetRequestedScopes(), "account") {
		return nil, errInvalidDetails.WithHint("authorization_details of type latchkey_mfa need the account scope.")
	}
	if !slices.Contains(strings.Fields(form.Get("prompt")), "login") {
		return nil, errInvalidDetails.WithHint("authorization_details of type latchkey_mfa need prompt=login: they are granted only to a new sign-in.")
	}
	return actions, nil
}

// grantedStepUp returns the actions to put in the token: only when this
// browser session's sign-in happened after the request arrived and used
// the second factor.
func grantedStepUp(ar fosite.AuthorizeRequester, bs store.BrowserSession, requestedAt time.Time) []string {
	actions, err := stepUpActions(ar)
	if err != nil || len(actions) == 0 {
		return nil
	}
	if bs.AuthTime.Before(requestedAt.Truncate(time.Second)) || bs.ACR != ACRMFA {
		return nil
	}
	return actions
}

// stepUpFromClaims reads the actions back from a stored session.
func stepUpFromClaims(extra map[string]any) []string {
	v, ok := extra[claimStepUp]
	if !ok {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	actions, err := ParseAuthorizationDetails(string(raw))
	if err != nil {
		return nil
	}
	return actions
}

// actionWords says what each action does, for the sign-in and consent pages.
var actionWords = map[string]string{
	mfa.ActionRemove:        "Remove your authenticator app (turn off two-step verification)",
	mfa.ActionReplace:       "Replace your authenticator app with a new one",
	mfa.ActionRecoveryCodes: "Replace your recovery codes with a new set",
	mfa.ActionAddMethod:     "Add a way to confirm it's you (a security key, passkey or authenticator app)",
	mfa.ActionRemoveMethod:  "Remove one of your ways to confirm it's you",
}

// scopeWords says what each scope allows, for the consent page.
var scopeWords = map[string]string{
	"openid":         "Confirm who you are",
	"profile":        "See your name and username",
	"email":          "See your email address",
	"groups":         "See the groups you belong to",
	"offline_access": "Stay signed in on your behalf",
	"account":        "See your two-step verification settings and ask your admins for a reset",
}

func describeActions(actions []string) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		out = append(out, actionWords[a])
	}
	return out
}

// flowActions returns the described actions a stored flow asks for.
func flowActions(f store.LoginFlow) []string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	raw := q.Get("authorization_details")
	if raw == "" {
		return nil
	}
	actions, err := ParseAuthorizationDetails(raw)
	if err != nil {
		return nil
	}
	return describeActions(actions)
}

// hintSubject returns the subject of the flow's id_token_hint ("" if none
// or not ours), so a sign-in meant for one user cannot finish as another.
func (p *Provider) hintSubject(r *http.Request, f store.LoginFlow) string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	hint := q.Get("id_token_hint")
	if hint == "" {
		return ""
	}
	c := p.decodeHint(r, hint)
	if c == nil {
		// An unverifiable hint pins to nobody: refuse every sign-in.
		return "invalid"
	}
	sub, _ := c["sub"].(string)
	return sub
}
