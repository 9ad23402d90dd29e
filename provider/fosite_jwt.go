package provider

// This is the one file that touches fosite's JWT types, which are built on
// go-jose/v3. Tokens are signed here with go-jose/v4 through the KeyManager;
// fosite's own parser is used only to hand it back the *jwt.Token it expects
// when it decodes an id_token_hint.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	fjwt "github.com/ory/fosite/token/jwt"
)

// jwtSigner implements fosite's jwt.Signer with the key manager.
type jwtSigner struct {
	keys *KeyManager
}

var _ fjwt.Signer = (*jwtSigner)(nil)

// Generate signs claims with the current key; the kid header always names
// the key that signed, whatever the caller put in header.
func (s *jwtSigner) Generate(ctx context.Context, claims fjwt.MapClaims, _ fjwt.Mapper) (string, string, error) {
	k := s.keys.current(ctx)
	if k == nil {
		return "", "", errors.New("provider: no signing key")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", "", fmt.Errorf("provider: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", "", err
	}
	return tok, tok[strings.LastIndexByte(tok, '.')+1:], nil
}

// Decode parses and verifies a token signed by one of the published keys.
// Expiry errors come back as fosite's ValidationError so its id_token_hint
// check can accept expired hints, as OIDC allows.
func (s *jwtSigner) Decode(ctx context.Context, token string) (*fjwt.Token, error) {
	return fjwt.ParseWithClaims(token, fjwt.MapClaims{}, func(t *fjwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := s.keys.PublicKey(ctx, kid)
		if !ok {
			return nil, fmt.Errorf("provider: unknown key id %q", kid)
		}
		return key, nil
	})
}

// Validate verifies token and returns its signature.
func (s *jwtSigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

// GetSignature returns the signature part of a compact JWS.
func (s *jwtSigner) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("provider: malformed jwt")
	}
	return parts[2], nil
}

// Hash is used for at_hash and c_hash: SHA-256 for both RS256 and ES256.
func (s *jwtSigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

// GetSigningMethodLength is the hash size for at_hash and c_hash.
func (s *jwtSigner) GetSigningMethodLength(context.Context) int { return sha256.Size }
