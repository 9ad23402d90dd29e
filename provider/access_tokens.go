package provider

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/latchkey/latchkey/authn"
)

// Access tokens are opaque (fosite's HMAC tokens) unless the client is
// registered for JWT access tokens (RFC 9068): then they are signed with
// the current signing key, typ "at+jwt", and a resource server can check
// them against the JWKS without asking Latchkey. Either way the grant is
// recorded by fosite's storage as before, so introspection, userinfo, the
// account and admin APIs and revocation treat both alike: a revoked JWT
// is inactive at introspection (a resource server that only checks the
// signature relies on the token's short lifetime).

// accessTokens dispatches on the client's format; everything else
// (refresh tokens, codes) stays HMAC.
type accessTokens struct {
	oauth2.CoreStrategy
	keys     *KeyManager
	issuer   string
	now      func() time.Time
	verified verifiedTokens
}

// verifiedTokens remembers, for a minute at most and never past their
// expiry, the claims of JWTs whose signature checked out. A lookup checks
// the signature and then fosite validates the token, so without it every
// introspection paid for two ECDSA verifications (0.2 ms each under load,
// two thirds of the request's CPU); resource servers also introspect one
// token many times. Revocation is not cached: the deny list is read on
// every lookup. A key withdrawn from the key set stops a cached token
// within the minute.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[32]byte]verifiedToken
}

type verifiedToken struct {
	c     atClaims
	until time.Time
}

const (
	verifiedTTL = time.Minute
	verifiedMax = 4096 // ~1 MB
)

func (v *verifiedTokens) get(k [32]byte, now time.Time) (atClaims, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[k]
	if !ok || !now.Before(e.until) {
		return atClaims{}, false
	}
	c := e.c
	c.Aud = slices.Clone(c.Aud) // callers own what they get
	return c, true
}

func (v *verifiedTokens) put(k [32]byte, c atClaims, now time.Time) {
	until := now.Add(verifiedTTL)
	if exp := time.Unix(c.Exp, 0); exp.Before(until) {
		until = exp
	}
	if !now.Before(until) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= verifiedMax {
		v.m = make(map[[32]byte]verifiedToken) // a new generation: cheaper than tracking use
	}
	c.Aud = slices.Clone(c.Aud) // the caller keeps its own
	v.m[k] = verifiedToken{c: c, until: until}
}

// isJWT tells a compact JWS (three parts) from fosite's HMAC tokens
// ("ory_at_…", two parts).
func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

func (s *accessTokens) AccessTokenSignature(ctx context.Context, token string) string {
	if isStateless(token) {
		return statelessPrefix + token // the storage reads the token itself
	}
	if isJWT(token) {
		return token[strings.LastIndexByte(token, '.')+1:]
	}
	return s.CoreStrategy.AccessTokenSignature(ctx, token)
}

func (s *accessTokens) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	if c, ok := r.GetClient().(*client); !ok || !c.JWTAccessTokens {
		return s.CoreStrategy.GenerateAccessToken(ctx, r)
	}
	k := s.keys.current(ctx)
	if k == nil {
		return "", "", errors.New("provider: no signing key")
	}
	now := s.now().UTC()
	exp := r.GetSession().GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		return "", "", errors.New("provider: access token without expiry")
	}
	clientID := r.GetClient().GetID()
	claims := map[string]any{
		"iss": s.issuer, "sub": r.GetSession().GetSubject(), "aud": audience(r), "client_id": clientID,
		"iat": now.Unix(), "exp": exp.Unix(), "jti": authn.RandomToken(16), "scope": strings.Join(r.GetGrantedScopes(), " "),
	}
	if claims["sub"] == "" {
		claims["sub"] = clientID // client credentials: the client acts for itself (RFC 9068 §2.2)
	}
	if ds, ok := r.GetSession().(*openid.DefaultSession); ok && ds.Claims != nil && ds.Claims.Subject != "" {
		if !ds.Claims.AuthTime.IsZero() {
			claims["auth_time"] = ds.Claims.AuthTime.Unix()
		}
		if acr := ds.Claims.AuthenticationContextClassReference; acr != "" {
			claims["acr"] = acr
		}
		if amr := ds.Claims.AuthenticationMethodsReferences; len(amr) > 0 {
			claims["amr"] = amr
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	jws, err := k.atSigner.Sign(payload)
	if err != nil {
		return "", "", fmt.Errorf("provider: sign access token: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", "", err
	}
	if _, user := claims["auth_time"]; !user {
		// Client credentials: nothing is stored (stateless.go).
		return tok, statelessID(claims["jti"].(string), exp), nil
	}
	return tok, tok[strings.LastIndexByte(tok, '.')+1:], nil
}

// audience is the requested audience, or the client itself.
func audience(r fosite.Requester) []string {
	if a := r.GetGrantedAudience(); len(a) > 0 {
		return a
	}
	return []string{r.GetClient().GetID()}
}

// ValidateAccessToken checks a JWT's signature, type and expiry; fosite
// has already found its grant by signature (so it is not revoked).
func (s *accessTokens) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if !isJWT(token) {
		return s.CoreStrategy.ValidateAccessToken(ctx, r, token)
	}
	claims, err := s.verify(ctx, token)
	if err != nil {
		return fosite.ErrInvalidTokenFormat.WithWrap(err).WithDebug(err.Error())
	}
	if time.Unix(claims.Exp, 0).Before(s.now()) {
		return fosite.ErrTokenExpired.WithHint("The access token expired.")
	}
	return nil
}

type atClaims struct {
	Jti      string   `json:"jti"`
	Iat      int64    `json:"iat"`
	Exp      int64    `json:"exp"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Aud      []string `json:"aud"`
}

// verify checks the JWS against the published keys and its typ header.
func (s *accessTokens) verify(ctx context.Context, token string) (atClaims, error) {
	k := tokenKey(token)
	now := s.now()
	if c, ok := s.verified.get(k, now); ok {
		return c, nil
	}
	c, err := s.verifySignature(ctx, token)
	if err == nil {
		s.verified.put(k, c, now)
	}
	return c, err
}

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func (s *accessTokens) verifySignature(ctx context.Context, token string) (atClaims, error) {
	var c atClaims
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return c, fmt.Errorf("not a JWS: %w", err)
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
		return c, fmt.Errorf("typ %q is not at+jwt", typ)
	}
	key, ok := s.keys.PublicKey(ctx, h.KeyID)
	if !ok {
		return c, fmt.Errorf("unknown key id %q", h.KeyID)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(payload, &c)
}

// verifyLive is verify plus expiry: what a stateless token's lookup needs.
func (s *accessTokens) verifyLive(ctx context.Context, token string) (atClaims, error) {
	c, err := s.verify(ctx, token)
	if err == nil && !time.Unix(c.Exp, 0).After(s.now()) {
		err = errors.New("expired")
	}
	return c, err
}
