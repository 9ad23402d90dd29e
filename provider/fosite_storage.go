package provider

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	fstorage "github.com/ory/fosite/storage"

	"github.com/latchkey/latchkey/store"
)

// fositeStore adapts the store to fosite's storage interfaces. fosite hands
// it token signatures, never tokens. Token rows and their token-log events
// are written in one transaction: fosite's own (carried in the context,
// the only place Latchkey uses that style) or one opened here.
type fositeStore struct {
	st    store.Store
	now   func() time.Time
	grace time.Duration // refresh-token rotation grace

	// Clients are read on every token request; a short cache saves a
	// round trip each time. A change made on another replica (deletion,
	// new redirect URIs) takes effect within clientTTL.
	clientMu    sync.Mutex
	clientCache map[string]cachedClient

	// Stateless JWT access tokens (stateless.go).
	verifyJWT func(ctx context.Context, token string) (atClaims, error)
	tokenLog  *tokenLog
}

type cachedClient struct {
	c       store.Client
	expires time.Time
}

const clientTTL = 5 * time.Second

// Compile-time checks: fosite's compose wiring asserts these at run time and
// would panic at start if one were missing.
var (
	_ fosite.ClientManager               = (*fositeStore)(nil)
	_ oauth2.CoreStorage                 = (*fositeStore)(nil)
	_ oauth2.TokenRevocationStorage      = (*fositeStore)(nil)
	_ openid.OpenIDConnectRequestStorage = (*fositeStore)(nil)
	_ pkce.PKCERequestStorage            = (*fositeStore)(nil)
	_ fstorage.Transactional             = (*fositeStore)(nil)
)

type txKey struct{}
type grantTypeKey struct{}

// withGrantType records the grant type of a token request for the token log
// (fosite strips the form before storing refresh requests).
func withGrantType(ctx context.Context, gt string) context.Context {
	return context.WithValue(ctx, grantTypeKey{}, gt)
}

func grantType(ctx context.Context) string {
	gt, _ := ctx.Value(grantTypeKey{}).(string)
	return gt
}

func (s *fositeStore) BeginTX(ctx context.Context) (context.Context, error) {
	tx, err := s.st.Begin(ctx)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, txKey{}, tx), nil
}

func (s *fositeStore) Commit(ctx context.Context) error {
	if tx, ok := ctx.Value(txKey{}).(store.Tx); ok {
		return tx.Commit(ctx)
	}
	return nil
}

func (s *fositeStore) Rollback(ctx context.Context) error {
	if tx, ok := ctx.Value(txKey{}).(store.Tx); ok {
		return tx.Rollback(ctx)
	}
	return nil
}

// q returns fosite's transaction if one is open, else the store.
func (s *fositeStore) q(ctx context.Context) store.Queries {
	if tx, ok := ctx.Value(txKey{}).(store.Tx); ok {
		return tx
	}
	return s.st
}

// write runs fn in fosite's transaction, or in a new one.
func (s *fositeStore) write(ctx context.Context, fn func(store.Queries) error) error {
	if tx, ok := ctx.Value(txKey{}).(store.Tx); ok {
		return fn(tx)
	}
	return s.st.InTx(ctx, fn)
}

// --- clients ---------------------------------------------------------------

// client is a fosite client with Latchkey's extra attributes.
type client struct {
	*fosite.DefaultClient
	FirstParty             bool
	PKCEOptional           bool
	JWTAccessTokens        bool // RFC 9068 access tokens instead of opaque ones
	PostLogoutRedirectURIs []string
}

func toFositeClient(c store.Client) *client {
	return &client{
		DefaultClient: &fosite.DefaultClient{ID: c.ID, Secret: c.SecretHash, RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes,
			ResponseTypes: c.ResponseTypes, Scopes: c.Scopes, Public: c.Public, Audience: []string{}},
		FirstParty: c.FirstParty, PKCEOptional: c.PKCEOptional, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		JWTAccessTokens: c.AccessTokenFormat == store.AccessTokensJWT,
	}
}

func (s *fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.cachedClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return toFositeClient(c), nil
}

// cachedClient is the store's client, read at most once per clientTTL.
func (s *fositeStore) cachedClient(ctx context.Context, id string) (store.Client, error) {
	now := s.now()
	s.clientMu.Lock()
	e, ok := s.clientCache[id]
	s.clientMu.Unlock()
	if ok && now.Before(e.expires) {
		return e.c, nil
	}
	c, err := s.q(ctx).GetClient(ctx, id)
	if err != nil {
		return c, err
	}
	s.clientMu.Lock()
	if s.clientCache == nil || len(s.clientCache) > 10000 {
		s.clientCache = map[string]cachedClient{} // bounded: unknown ids are never cached
	}
	s.clientCache[id] = cachedClient{c: c, expires: now.Add(clientTTL)}
	s.clientMu.Unlock()
	return c, nil
}

// Latchkey does not accept JWT client assertions, so there are no JTIs to track.
func (s *fositeStore) ClientAssertionJWTValid(context.Context, string) error { return nil }
func (s *fositeStore) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return nil
}

// secretHasher compares client secrets by SHA-256 digest in constant time.
// Secrets are server-generated with 256 bits of entropy, so a slow hash
// would only cap token throughput (SPEC §3).
type secretHasher struct{}

func (secretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return h[:], nil
}

func (secretHasher) Compare(_ context.Context, hash, data []byte) error {
	h := sha256.Sum256(data)
	if len(hash) != len(h) || subtle.ConstantTimeCompare(hash, h[:]) != 1 {
		return fosite.ErrInvalidClient
	}
	return nil
}

// --- request rows ----------------------------------------------------------

func (s *fositeStore) toRecord(kind store.TokenKind, sig string, r fosite.Requester) (store.TokenRecord, error) {
	sess, err := encodeSession(r.GetSession())
	if err != nil {
		return store.TokenRecord{}, err
	}
	rec := store.TokenRecord{Kind: kind, Signature: sig, RequestID: r.GetID(), ClientID: r.GetClient().GetID(), Active: true,
		RequestedAt: r.GetRequestedAt(), Scopes: r.GetRequestedScopes(), GrantedScopes: r.GetGrantedScopes(),
		Audience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(), Form: r.GetRequestForm().Encode(), Session: sess}
	if ss := r.GetSession(); ss != nil {
		rec.Subject = ss.GetSubject()
		rec.ExpiresAt = ss.GetExpiresAt(tokenTypeOf(kind))
		if ds, ok := ss.(*openid.DefaultSession); ok && ds.Claims != nil {
			rec.SessionID, _ = ds.Claims.Extra["sid"].(string)
		}
	}
	if rec.ExpiresAt.IsZero() {
		// Rows without their own expiry (OIDC and PKCE rows ride on the
		// code) are kept as long as a code lives, with a margin.
		rec.ExpiresAt = s.now().Add(time.Hour)
	}
	return rec, nil
}

func tokenTypeOf(k store.TokenKind) fosite.TokenType {
	switch k {
	case store.KindAccessToken:
		return fosite.AccessToken
	case store.KindRefreshToken:
		return fosite.RefreshToken
	default:
		return fosite.AuthorizeCode
	}
}

func (s *fositeStore) fromRecord(ctx context.Context, rec store.TokenRecord, session fosite.Session) (fosite.Requester, error) {
	c, err := s.GetClient(ctx, rec.ClientID)
	if err != nil {
		return nil, err
	}
	if session != nil {
		if err := json.Unmarshal(rec.Session, session); err != nil {
			return nil, fmt.Errorf("provider: decode stored session: %w", err)
		}
	}
	form, err := url.ParseQuery(rec.Form)
	if err != nil {
		return nil, err
	}
	return &fosite.Request{ID: rec.RequestID, RequestedAt: rec.RequestedAt, Client: c, RequestedScope: rec.Scopes,
		GrantedScope: rec.GrantedScopes, Form: form, Session: session, RequestedAudience: rec.Audience,
		GrantedAudience: rec.GrantedAudience}, nil
}

func (s *fositeStore) create(ctx context.Context, kind store.TokenKind, sig string, r fosite.Requester, event bool) error {
	rec, err := s.toRecord(kind, sig, r)
	if err != nil {
		return err
	}
	if !event {
		return s.q(ctx).CreateToken(ctx, rec)
	}
	return s.q(ctx).CreateTokenWithEvent(ctx, rec, store.TokenEvent{Time: s.now(), Type: store.TokenIssued, TokenType: kind,
		RequestID: rec.RequestID, ClientID: rec.ClientID, Subject: rec.Subject, GrantType: grantType(ctx)})
}

// get loads a row; an inactive row returns the request together with
// inactiveErr, as fosite requires for code and refresh-token reuse handling.
func (s *fositeStore) get(ctx context.Context, kind store.TokenKind, sig string, session fosite.Session, inactiveErr error) (fosite.Requester, error) {
	rec, err := s.q(ctx).GetToken(ctx, kind, sig)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	req, err := s.fromRecord(ctx, rec, session)
	if err != nil {
		return nil, err
	}
	if !rec.Active {
		return req, inactiveErr
	}
	return req, nil
}

func (s *fositeStore) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, store.KindAuthorizeCode, code, r, false)
}

func (s *fositeStore) GetAuthorizeCodeSession(ctx context.Context, code string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindAuthorizeCode, code, session, fosite.ErrInvalidatedAuthorizeCode)
}

// InvalidateAuthorizeCodeSession fails if the code was already used: two
// concurrent exchanges of one code cannot both succeed.
func (s *fositeStore) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	ok, err := s.q(ctx).DeactivateToken(ctx, store.KindAuthorizeCode, code)
	if err != nil {
		return err
	}
	if !ok {
		return fosite.ErrInvalidatedAuthorizeCode
	}
	return nil
}

func (s *fositeStore) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	if jti, _, ok := parseStatelessID(sig); ok {
		// The token's jti stands for the request in the log, so its
		// revocation (below) is found beside its issuance.
		s.tokenLog.add(store.TokenEvent{Time: s.now(), Type: store.TokenIssued, TokenType: store.KindAccessToken,
			RequestID: jti, ClientID: r.GetClient().GetID(), GrantType: grantType(ctx)})
		return nil
	}
	return s.create(ctx, store.KindAccessToken, sig, r, true)
}

func (s *fositeStore) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	if token, ok := strings.CutPrefix(sig, statelessPrefix); ok {
		return s.statelessSession(ctx, token, session)
	}
	return s.get(ctx, store.KindAccessToken, sig, session, fosite.ErrInactiveToken)
}

func (s *fositeStore) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	if strings.HasPrefix(sig, statelessPrefix) {
		return nil // never stored
	}
	return s.q(ctx).DeleteToken(ctx, store.KindAccessToken, sig)
}

func (s *fositeStore) CreateRefreshTokenSession(ctx context.Context, sig, _ string, r fosite.Requester) error {
	return s.create(ctx, store.KindRefreshToken, sig, r, true)
}

// GetRefreshTokenSession returns ErrInactiveToken for a rotated token; at the
// token endpoint that is a replay, so it is logged as reuse before fosite
// revokes the whole family. The exception is a token rotated less than the
// grace period ago whose grant is still alive: that is a client retrying
// after the response of its rotation was lost (a crash, a cut connection),
// so it is served once more (RotateRefreshToken spends the grace).
func (s *fositeStore) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	rec, err := s.q(ctx).GetToken(ctx, store.KindRefreshToken, sig)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	req, err := s.fromRecord(ctx, rec, session)
	if err != nil || rec.Active {
		return req, err
	}
	if grantType(ctx) != "refresh_token" {
		return req, fosite.ErrInactiveToken
	}
	if !rec.GraceUntil.IsZero() && !s.now().After(rec.GraceUntil) {
		live, err := s.q(ctx).GrantActive(ctx, store.KindRefreshToken, rec.RequestID)
		if err != nil {
			return nil, err
		}
		if live {
			return req, nil
		}
	}
	e := store.TokenEvent{Time: s.now(), Type: store.TokenReuseDetected, TokenType: store.KindRefreshToken, RequestID: req.GetID(),
		ClientID: req.GetClient().GetID(), Subject: req.GetSession().GetSubject(), GrantType: "refresh_token"}
	if err := s.q(ctx).AppendTokenEvent(ctx, e); err != nil {
		return nil, err
	}
	return req, fosite.ErrInactiveToken
}

func (s *fositeStore) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.q(ctx).DeleteToken(ctx, store.KindRefreshToken, sig)
}

// RotateRefreshToken retires the presented refresh token and the access
// tokens of its grant. The row is kept, inactive, so a later replay of it is
// recognised as reuse; until the grace period ends it may be presented once
// more, which issues a new pair in the same grant (the successor issued
// before stays valid: it may be in use by a concurrent request).
func (s *fositeStore) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	return s.write(ctx, func(q store.Queries) error {
		var until time.Time
		if s.grace > 0 {
			until = s.now().Add(s.grace)
		}
		typ := store.TokenRefreshed
		ok, err := q.RetireRefreshToken(ctx, sig, until)
		if err == nil && !ok {
			typ = store.TokenRefreshedInGrace
			ok, err = q.ClaimRefreshGrace(ctx, sig, s.now())
		}
		if err != nil {
			return err
		}
		if !ok {
			// Lost a race with another use of the same token, or its
			// grace was spent meanwhile.
			return fosite.ErrInactiveToken
		}
		if _, err := q.DeactivateRequest(ctx, store.KindAccessToken, requestID); err != nil {
			return err
		}
		return s.event(ctx, q, typ, store.KindRefreshToken, requestID)
	})
}

func (s *fositeStore) event(ctx context.Context, q store.Queries, typ store.TokenEventType, kind store.TokenKind, requestID string) error {
	return q.AppendTokenEvent(ctx, store.TokenEvent{Time: s.now(), Type: typ, TokenType: kind, RequestID: requestID, GrantType: grantType(ctx)})
}

// RevokeRefreshToken deactivates every refresh token of the grant: on
// reuse detection this is what revokes the whole family.
func (s *fositeStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.revoke(ctx, store.KindRefreshToken, requestID)
}

// RevokeAccessToken deactivates every access token of the grant.
func (s *fositeStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	if jti, exp, ok := parseStatelessID(requestID); ok {
		return s.write(ctx, func(q store.Queries) error {
			if err := q.RevokeJWT(ctx, jti, exp); err != nil {
				return err
			}
			return s.event(ctx, q, store.TokenRevoked, store.KindAccessToken, jti)
		})
	}
	return s.revoke(ctx, store.KindAccessToken, requestID)
}

func (s *fositeStore) revoke(ctx context.Context, kind store.TokenKind, requestID string) error {
	return s.write(ctx, func(q store.Queries) error {
		n, err := q.DeactivateRequest(ctx, kind, requestID)
		if err != nil || n == 0 {
			return err
		}
		return s.event(ctx, q, store.TokenRevoked, kind, requestID)
	})
}

func (s *fositeStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, store.KindOIDC, code, r, false)
}

func (s *fositeStore) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return s.get(ctx, store.KindOIDC, code, r.GetSession(), fosite.ErrNotFound)
}

func (s *fositeStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.q(ctx).DeleteToken(ctx, store.KindOIDC, code)
}

func (s *fositeStore) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, store.KindPKCE, sig, r, false)
}

func (s *fositeStore) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindPKCE, sig, session, fosite.ErrNotFound)
}

func (s *fositeStore) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.q(ctx).DeleteToken(ctx, store.KindPKCE, sig)
}
