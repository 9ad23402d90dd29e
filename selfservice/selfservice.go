// Package selfservice is the account portal: where people see and manage
// their own two-step verification — enroll, replace, unlink after a fresh
// step-up where their policy allows it, or ask their admins for a reset —
// as HTML pages and as a JSON API.
//
// It is a plugin: it signs people in as an ordinary first-party OIDC client
// of the provider (authorization code + PKCE over HTTP) and depends only on
// small interfaces and on authn, policy, audit and store. It must never
// import provider; cmd/latchkey mounts it on the router.
package selfservice

import (
	"context"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/internal/rp"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/ui"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// Principal is who an access token was issued to, and how they signed in.
type Principal struct {
	UserID   string
	ClientID string
	Scopes   []string
	AuthTime time.Time
	AMR      []string
	// GrantID is the authorization grant behind the token.
	GrantID string
	// StepUp lists the actions of the token's interactive
	// re-authentication (RFC 9396 authorization_details), if any.
	StepUp []string
	// FirstParty: the token's client is one of the organisation's own.
	FirstParty bool
}

// TokenVerifier checks a bearer access token (the provider implements it).
type TokenVerifier interface {
	VerifyAccessToken(ctx context.Context, token string) (Principal, error)
}

// Options configures the portal.
type Options struct {
	Issuer   string // the provider's issuer
	ClientID string // the portal's first-party public client
	// HTTPClient reaches the provider's token and JWKS endpoints.
	HTTPClient *http.Client
	Store      store.Store
	Authn      *authn.Service
	MFA        *mfa.Service
	Tokens     TokenVerifier
	CSRF       *httpx.CSRF
	Keyring    *seal.Keyring // seals the sign-in state cookie
	Secure     bool          // Secure cookies (HTTPS)
	// SessionLifetime bounds a portal session; the provider's own session
	// timeouts apply to sign-ins behind it.
	SessionLifetime time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
}

// Handler serves the portal.
type Handler struct {
	o     Options
	rp    *rp.RP
	pages *ui.Pages
}

// Paths.
const (
	PathAccount      = "/account"
	PathLogin        = "/account/login"
	PathCallback     = "/account/callback"
	PathStepUp       = "/account/step-up"
	PathLogout       = "/account/logout"
	PathSecurity     = "/account/security"
	PathSetup        = "/account/security/setup"
	PathUnlink       = "/account/security/unlink"
	PathUnlinkDecide = "/account/security/unlink/decide"
	PathResetRequest = "/account/security/reset-request"
	PathReplace      = "/account/security/replace"
	PathNewCodes     = "/account/security/recovery-codes"
	PathPasskeyAdd   = "/account/security/passkeys/add"
	PathPasskeyBegin = "/account/security/passkeys/begin"
	PathPasskeyDone  = "/account/security/passkeys/finish"
	PathMethod       = "/account/security/methods/{id}"
	PathMFA          = "/account/mfa"
	PathMFADisable   = "/account/mfa/disable"
	PathMFADisabled  = "/account/mfa/disable/successful"
	PathMFASetup     = "/account/mfa/setup"
	PathMFAReset     = "/account/mfa/reset-request"
	PathMFACodes     = "/account/mfa/recovery-codes"
)

// Actions a step-up can be made for. A step-up counts only for its action.
const (
	ActionUnlink  = mfa.ActionRemove
	ActionReplace = mfa.ActionReplace
	ActionCodes   = mfa.ActionRecoveryCodes
)

//go:embed templates/*.html
var templates embed.FS

// New builds the portal handler.
func New(o Options) (*Handler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.SessionLifetime == 0 {
		o.SessionLifetime = 8 * time.Hour
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{"join": strings.Join}).ParseFS(templates, "templates/*.html")
	if err != nil {
		return nil, err
	}
	h := &Handler{
		o: o,
		rp: rp.New(rp.Options{Issuer: o.Issuer, ClientID: o.ClientID, Path: PathAccount, Callback: PathCallback, Cookie: sessionCookie,
			HTTPClient: o.HTTPClient, Store: o.Store, Keyring: o.Keyring, Secure: o.Secure, Lifetime: o.SessionLifetime, Now: o.Now}),
		pages: &ui.Pages{T: tmpl, CSRF: o.CSRF, Logger: o.Logger},
	}
	h.rp.SetOnStepUp(h.recordStepUp)
	return h, nil
}

// Mount adds the portal's routes.
func (h *Handler) Mount(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(httpx.NoStore)
		// Pages.
		r.Get(PathAccount, h.accountPage)
		r.Get(PathLogin, h.login)
		r.Get(PathCallback, h.callback)
		r.Post(PathStepUp, h.stepUp)
		r.Post(PathLogout, h.logout)
		r.Get(PathSecurity, h.securityPage)
		r.Get(PathSetup, h.setupPage)
		r.Post(PathSetup, h.setupSubmit)
		r.Post(PathUnlink, h.unlinkPage)
		r.Post(PathUnlinkDecide, h.unlinkDecide)
		r.Post(PathResetRequest, h.resetRequestSubmit)
		r.Post(PathReplace, h.replaceStart)
		r.Post(PathNewCodes, h.newCodesSubmit)
		r.Post(PathPasskeyAdd, h.passkeyAdd)
		r.Post(PathPasskeyBegin, h.passkeyBegin)
		r.Post(PathPasskeyDone, h.passkeyFinish)
		r.Post(PathMethod+"/remove", h.methodRemove)
		r.Post(PathMethod+"/rename", h.methodRename)
		// JSON API (SPEC §6).
		r.Get(PathMFA, h.apiState)
		r.Post(PathMFADisable, h.apiInitiate)
		r.Put(PathMFADisable, h.apiDecide)
		r.Put(PathMFADisabled, h.apiConfirm)
		r.Post(PathMFASetup, h.apiSetupStart)
		r.Put(PathMFASetup, h.apiSetupVerify)
		r.Post(PathMFAReset, h.apiResetRequest)
		r.Post(PathMFACodes, h.apiNewCodes)
		r.Post(PathMFAPasskeys, h.apiPasskeyBegin)
		r.Put(PathMFAPasskey, h.apiPasskeyFinish)
		r.Patch(PathMFAMethod, h.apiMethodRename)
		r.Delete(PathMFAMethod, h.apiMethodRemove)
	})
}
