package provider

import (
	"encoding/json"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
)

// Every token row stores its fosite session as JSON. fosite's own encoding
// writes every field, so a client-credentials grant stored 358 bytes of
// which 300 said "empty" (zero times, empty strings, nulls). These mirror
// types carry the same JSON keys with empty values left out: a row is
// ~60 bytes for a grant without a user, and json.Unmarshal into fosite's
// types reads both forms (a missing key is the zero value), so rows
// written before this change still load. TestSessionMirrorsFosite fails
// if fosite's types gain a field these do not carry.
type storedSession struct {
	Claims    *storedClaims                  `json:"id_token_claims,omitempty"`
	Headers   *storedHeaders                 `json:"headers,omitempty"`
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	Username  string                         `json:"username,omitempty"`
	Subject   string                         `json:"subject,omitempty"`
}

type storedClaims struct {
	JTI                                 string         `json:"jti,omitempty"`
	Issuer                              string         `json:"iss,omitempty"`
	Subject                             string         `json:"sub,omitempty"`
	Audience                            []string       `json:"aud,omitempty"`
	Nonce                               string         `json:"nonce,omitempty"`
	ExpiresAt                           time.Time      `json:"exp,omitzero"`
	IssuedAt                            time.Time      `json:"iat,omitzero"`
	RequestedAt                         time.Time      `json:"rat,omitzero"`
	AuthTime                            time.Time      `json:"auth_time,omitzero"`
	AccessTokenHash                     string         `json:"at_hash,omitempty"`
	AuthenticationContextClassReference string         `json:"acr,omitempty"`
	AuthenticationMethodsReferences     []string       `json:"amr,omitempty"`
	CodeHash                            string         `json:"c_hash,omitempty"`
	Extra                               map[string]any `json:"ext,omitempty"`
}

type storedHeaders struct {
	Extra map[string]any `json:"extra,omitempty"`
}

// encodeSession is json.Marshal of the session, compact for fosite's
// OpenID session (the only kind Latchkey creates).
func encodeSession(s fosite.Session) ([]byte, error) {
	ds, ok := s.(*openid.DefaultSession)
	if !ok {
		return json.Marshal(s)
	}
	out := storedSession{ExpiresAt: ds.ExpiresAt, Username: ds.Username, Subject: ds.Subject}
	if c := ds.Claims; c != nil {
		if sc := storedClaims(*c); !sc.empty() {
			out.Claims = &sc
		}
	}
	if h := ds.Headers; h != nil && len(h.Extra) > 0 {
		out.Headers = &storedHeaders{Extra: h.Extra}
	}
	return json.Marshal(out)
}

func (c *storedClaims) empty() bool {
	return c.JTI == "" && c.Issuer == "" && c.Subject == "" && len(c.Audience) == 0 && c.Nonce == "" && c.ExpiresAt.IsZero() &&
		c.IssuedAt.IsZero() && c.RequestedAt.IsZero() && c.AuthTime.IsZero() && c.AccessTokenHash == "" &&
		c.AuthenticationContextClassReference == "" && len(c.AuthenticationMethodsReferences) == 0 && c.CodeHash == "" && len(c.Extra) == 0
}
