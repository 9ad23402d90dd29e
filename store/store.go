// Package store is Latchkey's persistence contract: plain record types, the
// per-aggregate interfaces every backend implements, transactions, and the
// sentinel errors callers branch on.
//
// Backends live in store/postgres and store/sqlite and share their SQL through
// store/sqlstore; store/storetest is the conformance suite both run. This
// package imports only the standard library: no driver, no fosite.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Sentinel errors. Backends map driver errors onto these.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrInvalidInput: a text value the store does not keep (a NUL byte or
	// invalid UTF-8), refused the same way by every backend.
	ErrInvalidInput = errors.New("store: text with a NUL byte or invalid UTF-8")
	// ErrUnavailable: the database cannot be reached right now (a restart,
	// a failover). Answer 503 with Retry-After, never as an authentication
	// failure.
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrCommitUnknown comes with ErrUnavailable when the connection was
	// lost after COMMIT was sent: the transaction may have taken effect,
	// so it must not be run again (see Retryable).
	ErrCommitUnknown = errors.New("store: connection lost during commit; outcome unknown")
)

type outageKey struct{}

// WatchUnavailable returns a context in which the backends note that the
// database was unavailable to a call (see SawUnavailable). The HTTP layer
// gives every request one, so an answer built on a failed lookup is
// recognised for what it is.
func WatchUnavailable(ctx context.Context) context.Context {
	return context.WithValue(ctx, outageKey{}, new(atomic.Bool))
}

// NoteUnavailable is called by backends when they return ErrUnavailable.
func NoteUnavailable(ctx context.Context) {
	if b, ok := ctx.Value(outageKey{}).(*atomic.Bool); ok {
		b.Store(true)
	}
}

// SawUnavailable reports whether a call made with ctx (or a context
// derived from it) returned ErrUnavailable.
func SawUnavailable(ctx context.Context) bool {
	b, ok := ctx.Value(outageKey{}).(*atomic.Bool)
	return ok && b.Load()
}

// Retryable reports whether the work that returned err provably did not
// take effect because the database went away (a failover, a restart), so
// running it once more is safe: the error is ErrUnavailable and, for a
// transaction, came before its COMMIT was sent.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrCommitUnknown)
}

// User is a person who signs in.
type User struct {
	ID           string
	Username     string // unique, compared case-insensitively
	Email        string
	DisplayName  string
	PasswordHash string // argon2id, PHC string format
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Group is a named set of users.
type Group struct {
	ID          string
	Name        string
	Description string
	CreatedAt   time.Time
}

// Client is a registered OAuth2 client. SecretHash is the SHA-256 digest of
// a server-generated secret; public clients have none.
type Client struct {
	ID         string
	Name       string
	SecretHash []byte
	Public     bool
	FirstParty bool
	// PKCEOptional lets a legacy confidential client use the
	// authorization code without PKCE; every other client must use it.
	PKCEOptional bool
	// AccessTokenFormat is AccessTokensOpaque (the default when empty)
	// or AccessTokensJWT (RFC 9068).
	AccessTokenFormat      string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string
	ResponseTypes          []string
	Scopes                 []string
	CreatedAt              time.Time
}

// Access token formats.
const (
	AccessTokensOpaque = "opaque"
	AccessTokensJWT    = "jwt"
)

// ErrInvalidClient is returned for a client registration that breaks a
// rule every client must keep (Client.Validate).
var ErrInvalidClient = errors.New("store: invalid client registration")

// AdminScope reports whether scope opens the admin API.
func AdminScope(scope string) bool { return scope == "admin" || scope == "admin:sensitive" }

// Validate checks the rules every stored client keeps, whichever path
// registers it (CLI, admin API, console): the admin scopes belong to
// first-party clients only, admin:sensitive goes with admin, and only a
// confidential client may go without PKCE.
func (c Client) Validate() error {
	switch c.AccessTokenFormat {
	case "", AccessTokensOpaque, AccessTokensJWT:
	default:
		return fmt.Errorf("%w: access token format must be %q or %q", ErrInvalidClient, AccessTokensOpaque, AccessTokensJWT)
	}
	for _, s := range c.Scopes {
		if AdminScope(s) && !c.FirstParty {
			return fmt.Errorf("%w: scope %q is for first-party clients only", ErrInvalidClient, s)
		}
	}
	if slices.Contains(c.Scopes, "admin:sensitive") && !slices.Contains(c.Scopes, "admin") {
		return fmt.Errorf("%w: scope admin:sensitive needs scope admin", ErrInvalidClient)
	}
	if c.PKCEOptional && c.Public {
		return fmt.Errorf("%w: a public client cannot go without PKCE", ErrInvalidClient)
	}
	return nil
}

// TOTPCredential is a user's authenticator. Secret is sealed (AES-256-GCM,
// bound to the credential id) and never stored in clear. LastStep is the
// highest TOTP time step accepted so far: a code is single-use because the
// step only moves forward.
type TOTPCredential struct {
	ID         string
	UserID     string
	Secret     []byte
	CreatedAt  time.Time
	VerifiedAt time.Time
	LastStep   int64
}

// BrowserSession is a signed-in browser. The cookie carries a random value;
// only its SHA-256 (IDHash) is stored, so a database reader cannot hijack it.
// SID is the public session id put in ID tokens.
type BrowserSession struct {
	IDHash     string
	SID        string
	UserID     string
	AuthTime   time.Time
	AMR        []string
	ACR        string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute timeout
}

// LoginFlow is one pending sign-in: the authorization request it will resume,
// the browser it is bound to, and how far the user got.
type LoginFlow struct {
	ID             string
	Binding        string // hash of the browser's CSRF cookie
	AuthorizeQuery string
	UserID         string // set once the password was verified
	PasswordAt     time.Time
	// SecondFactor (an RFC 8176 amr value) was verified at SecondFactorAt
	// with a method the user's policy no longer allows: the flow may only
	// go on to set up an allowed one.
	SecondFactor   string
	SecondFactorAt time.Time
	CreatedAt      time.Time
	ExpiresAt      time.Time
}

// SigningKey is a token-signing key. Private is the sealed private JWK;
// Public is the public JWK as JSON. A key is published until NotAfter and
// signs from NotBefore while it is the newest such key.
type SigningKey struct {
	ID        string
	Algorithm string
	Private   []byte
	Public    []byte
	CreatedAt time.Time
	NotBefore time.Time // zero: signs at once
	NotAfter  time.Time // zero: no end yet
}

// TokenKind names the kinds of fosite request rows.
type TokenKind string

// Token kinds.
const (
	KindAuthorizeCode TokenKind = "code"
	KindAccessToken   TokenKind = "access"
	KindRefreshToken  TokenKind = "refresh"
	KindOIDC          TokenKind = "oidc"
	KindPKCE          TokenKind = "pkce"
)

// TokenRecord is one stored OAuth2 request, keyed by the token's signature,
// never the token itself.
type TokenRecord struct {
	Kind            TokenKind
	Signature       string
	RequestID       string
	ClientID        string
	Subject         string
	SessionID       string // the browser session's SID, for logout
	Active          bool
	RequestedAt     time.Time
	ExpiresAt       time.Time
	Scopes          []string
	GrantedScopes   []string
	Audience        []string
	GrantedAudience []string
	Form            string // url-encoded request form
	Session         []byte // JSON of the fosite session
	// GraceUntil is set on a rotated refresh token that may still be
	// presented once (a retry after a lost response); zero otherwise.
	GraceUntil time.Time
}

// TokenEventType names what happened to a token.
type TokenEventType string

// Token event types.
const (
	TokenIssued    TokenEventType = "issued"
	TokenRefreshed TokenEventType = "refreshed"
	// TokenRefreshedInGrace: a rotated refresh token presented again
	// within the grace period (a retry), served once.
	TokenRefreshedInGrace TokenEventType = "refreshed_in_grace"
	TokenRevoked          TokenEventType = "revoked"
	TokenReuseDetected    TokenEventType = "reuse_detected"
)

// TokenEvent is one row of the token log, written in the same transaction as
// the token rows it describes.
type TokenEvent struct {
	ID        int64
	Time      time.Time
	Type      TokenEventType
	TokenType TokenKind
	RequestID string
	ClientID  string
	Subject   string
	GrantType string
}

// TokenEventFilter selects token events; zero fields match everything.
type TokenEventFilter struct {
	ClientID  string
	Subject   string
	RequestID string
	Type      TokenEventType
	Since     time.Time
	AfterID   int64
	Limit     int
}

// Attempt counts consecutive failed sign-ins for one key (an account or an
// IP address).
type Attempt struct {
	Key         string
	Failures    int
	LastFailure time.Time
	LockedUntil time.Time
}

// Consent records the scopes a user granted a third-party client.
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	GrantedAt time.Time
}

// Users stores users.
type Users interface {
	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByUsername(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context, afterUsername string, limit int) ([]User, error)
	SetPassword(ctx context.Context, userID, hash string, at time.Time) error
}

// Groups stores groups and memberships.
type Groups interface {
	CreateGroup(ctx context.Context, g Group) error
	GetGroupByName(ctx context.Context, name string) (Group, error)
	ListGroups(ctx context.Context) ([]Group, error)
	AddMember(ctx context.Context, groupID, userID string) error
	UserGroups(ctx context.Context, userID string) ([]Group, error)
}

// Clients stores OAuth2 clients.
type Clients interface {
	CreateClient(ctx context.Context, c Client) error
	GetClient(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	DeleteClient(ctx context.Context, id string) error
}

// MFA stores TOTP credentials and recovery codes.
type MFA interface {
	// CreateTOTP stores a verified credential; ErrAlreadyExists if the user
	// has one.
	CreateTOTP(ctx context.Context, c TOTPCredential) error
	GetTOTP(ctx context.Context, userID string) (TOTPCredential, error)
	// AdvanceTOTPStep moves the credential's last step to step only if step
	// is newer; false means the code's step was already used.
	AdvanceTOTPStep(ctx context.Context, credentialID string, step int64) (bool, error)
	// DeleteTOTP removes the user's TOTP app (not their recovery codes:
	// they stay while another method remains); false if there was none.
	DeleteTOTP(ctx context.Context, userID string) (bool, error)
	// ReplaceRecoveryCodes drops the user's codes and stores these digests.
	ReplaceRecoveryCodes(ctx context.Context, userID string, digests []string, at time.Time) error
	// UseRecoveryCode marks one unused code as used; false if there was none.
	UseRecoveryCode(ctx context.Context, userID, digest string, at time.Time) (bool, error)
	CountRecoveryCodes(ctx context.Context, userID string) (int, error)
}

// Sessions stores browser sessions and login flows.
type Sessions interface {
	CreateSession(ctx context.Context, s BrowserSession) error
	GetSession(ctx context.Context, idHash string) (BrowserSession, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	DeleteSession(ctx context.Context, idHash string) error
	DeleteUserSessions(ctx context.Context, userID string) error

	CreateFlow(ctx context.Context, f LoginFlow) error
	GetFlow(ctx context.Context, id string) (LoginFlow, error)
	SetFlowUser(ctx context.Context, id, userID string, at time.Time) error
	// SetFlowSecondFactor records a second factor verified in a flow whose
	// password step is done.
	SetFlowSecondFactor(ctx context.Context, id, amr string, at time.Time) error
	// ConsumeFlow deletes the flow; false if it was already gone, so a flow
	// completes at most once.
	ConsumeFlow(ctx context.Context, id string) (bool, error)

	GetConsent(ctx context.Context, userID, clientID string) (Consent, error)
	SaveConsent(ctx context.Context, c Consent) error
}

// Keys stores signing keys.
type Keys interface {
	CreateKey(ctx context.Context, k SigningKey) error
	ListKeys(ctx context.Context) ([]SigningKey, error)
	SetKeyNotAfter(ctx context.Context, id string, notAfter time.Time) error
}

// Tokens stores fosite's request rows and the token log.
type Tokens interface {
	CreateToken(ctx context.Context, r TokenRecord) error
	// CreateTokenWithEvent writes a token row and its token-log event
	// atomically, even outside a transaction (one statement where the
	// backend allows it: the token endpoint's hot path).
	CreateTokenWithEvent(ctx context.Context, r TokenRecord, e TokenEvent) error
	GetToken(ctx context.Context, kind TokenKind, signature string) (TokenRecord, error)
	DeleteToken(ctx context.Context, kind TokenKind, signature string) error
	// DeactivateToken marks the row inactive; false if it was already inactive
	// or missing, which makes concurrent use of one code or refresh token
	// detectable.
	DeactivateToken(ctx context.Context, kind TokenKind, signature string) (bool, error)
	// DeactivateRequest marks every row of kind issued for requestID
	// inactive and returns how many were active.
	DeactivateRequest(ctx context.Context, kind TokenKind, requestID string) (int, error)
	// RetireRefreshToken deactivates a refresh token on rotation, leaving it
	// presentable once more until graceUntil (zero: no grace); false if it
	// was already inactive.
	RetireRefreshToken(ctx context.Context, signature string, graceUntil time.Time) (bool, error)
	// ClaimRefreshGrace spends the grace of a retired refresh token: true
	// once, while the grace lasts (at now) and its grant still holds an
	// active refresh token (a revoked grant has no grace).
	ClaimRefreshGrace(ctx context.Context, signature string, now time.Time) (bool, error)
	// GrantActive reports whether the grant holds an active token of kind.
	GrantActive(ctx context.Context, kind TokenKind, requestID string) (bool, error)
	AppendTokenEvent(ctx context.Context, e TokenEvent) error
	// AppendTokenEvents writes a batch in one statement (at most a few
	// hundred: each event takes seven parameters).
	AppendTokenEvents(ctx context.Context, es []TokenEvent) error
	// RevokeJWT denies a stateless JWT access token (by jti) until it
	// expires; JWTRevoked reports whether one is denied.
	RevokeJWT(ctx context.Context, jti string, expiresAt time.Time) error
	JWTRevoked(ctx context.Context, jti string) (bool, error)
	ListTokenEvents(ctx context.Context, f TokenEventFilter) ([]TokenEvent, error)
	// DeleteExpiredTokens removes token rows that expired before t (and
	// returns how many), with expired sessions, flows, unlink
	// confirmations, pending secrets and reset links.
	DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error)
	DeleteTokenEvents(ctx context.Context, before time.Time) (int, error)
}

// Attempts stores failed sign-in counters.
type Attempts interface {
	// RecordFailure adds one failure to key and returns the new count.
	RecordFailure(ctx context.Context, key string, at time.Time) (int, error)
	// ClaimAttempt counts an attempt before it is evaluated, in one
	// statement, and returns the new count; 0 means key is locked at now
	// and nothing was counted. A count older than forgetBefore (and not
	// locked) starts again at 1. The claim that reaches threshold also
	// locks key until holdUntil, so no concurrent attempt gets past the
	// threshold while the ones in flight are judged. The caller resets the
	// key on success and sets the real lock on failure.
	ClaimAttempt(ctx context.Context, key string, threshold int, now, forgetBefore, holdUntil time.Time) (int, error)
	SetLockedUntil(ctx context.Context, key string, until time.Time) error
	GetAttempt(ctx context.Context, key string) (Attempt, error)
	// GetAttempts returns the counters that exist among keys, in one read.
	GetAttempts(ctx context.Context, keys ...string) ([]Attempt, error)
	ResetAttempts(ctx context.Context, key string) error
}

// Queries is everything a backend can do, inside or outside a transaction.
type Queries interface {
	Users
	Groups
	Clients
	MFA
	Sessions
	Keys
	Tokens
	Attempts
	Policies
	Account
	Audit
	Admins
	Dispatch
	PasswordResets
	WebAuthn
	// Lock serializes transactions that take the same named lock until the
	// transaction ends; outside a transaction it is a no-op.
	Lock(ctx context.Context, name string) error
}

// Store is an open backend.
type Store interface {
	Queries
	// InTx runs fn in one transaction, committing if fn returns nil. A
	// serialization failure is retried a bounded number of times, so fn must
	// be safe to run again.
	InTx(ctx context.Context, fn func(q Queries) error) error
	// Begin starts a transaction for callers that cannot use a closure (the
	// fosite adapter). Prefer InTx.
	Begin(ctx context.Context) (Tx, error)
	Ping(ctx context.Context) error
	Close()
	// Backend names the backend: "postgres" or "sqlite".
	Backend() string
}

// Tx is an open transaction.
type Tx interface {
	Queries
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}
