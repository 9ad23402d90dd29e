// Package rp signs people in to Latchkey's own first-party applications
// (the account portal, the admin console) as an ordinary OpenID Connect
// relying party of the provider: authorization code with PKCE over HTTP,
// state and nonce in a sealed short-lived cookie, the ID token verified
// against the JWKS, and a server-side session afterwards.
//
// A step-up is a sign-in forced with prompt=login and max_age for one named
// action; the session records that action only if the new sign-in happened
// after the request and used a second factor. It depends on store and the
// OIDC client libraries, never on the provider.
package rp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/store"
)

// Options configures one application's sign-in.
type Options struct {
	Issuer     string
	ClientID   string
	Path       string // the application's path prefix, e.g. /account; cookies are scoped to it
	Callback   string // its redirect path, e.g. /account/callback
	Cookie     string // session cookie name; the flow cookie adds "_flow"
	Scopes     []string
	HTTPClient *http.Client
	Store      store.Store
	Keyring    *seal.Keyring
	Secure     bool
	Lifetime   time.Duration // session lifetime
	// OnStepUp, when set, records a completed step-up (the audit event)
	// in the transaction that stores the new session: both or neither.
	OnStepUp func(ctx context.Context, q store.Queries, r *http.Request, s store.PortalSession) error
	Now      func() time.Time
}

// RP is one application's relying-party side.
type RP struct {
	o        Options
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// New prepares the client; the JWKS is fetched on first use.
func New(o Options) *RP {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Lifetime == 0 {
		o.Lifetime = 8 * time.Hour
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	ctx := oidc.ClientContext(context.Background(), o.HTTPClient)
	keys := oidc.NewRemoteKeySet(ctx, o.Issuer+"/.well-known/jwks.json")
	return &RP{
		o: o,
		oauth: &oauth2.Config{ClientID: o.ClientID, RedirectURL: o.Issuer + o.Callback, Scopes: o.Scopes,
			Endpoint: oauth2.Endpoint{AuthURL: o.Issuer + "/oauth2/auth", TokenURL: o.Issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}},
		verifier: oidc.NewVerifier(o.Issuer, keys, &oidc.Config{ClientID: o.ClientID, SupportedSigningAlgs: []string{"RS256", "ES256"}}),
	}
}

// flow is the state of one authorization request, sealed in a cookie: the
// PKCE verifier must stay secret, and the state must come back to the
// browser that started it.
type flow struct {
	State    string    `json:"s"`
	Verifier string    `json:"v"`
	Nonce    string    `json:"n"`
	Action   string    `json:"a,omitempty"`
	Subject  string    `json:"u,omitempty"` // a step-up's user: the sign-in must come back as them
	Return   string    `json:"r"`
	Started  time.Time `json:"t"`
}

func (p *RP) flowCookie() string { return p.o.Cookie + "_flow" }

// local accepts only paths inside the application, so return targets
// cannot send the browser elsewhere (no open redirect).
func (p *RP) local(ret string) string {
	if !strings.HasPrefix(ret, p.o.Path) || strings.HasPrefix(ret, "//") || strings.ContainsAny(ret, "\\\r\n") {
		return p.o.Path
	}
	if u, err := url.Parse(ret); err != nil || u.IsAbs() || u.Host != "" {
		return p.o.Path
	}
	return ret
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("rp: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Start redirects to the provider. With an action it is a step-up: a new
// sign-in (prompt=login) no older than maxAge, with the second factor.
func (p *RP) Start(w http.ResponseWriter, r *http.Request, action, ret string, maxAge time.Duration) {
	f := flow{State: randomHex(16), Verifier: oauth2.GenerateVerifier(), Nonce: randomHex(16), Action: action, Return: p.local(ret), Started: p.o.Now().UTC()}
	var hint string
	if action != "" {
		// A step-up pins its user: the provider refuses a sign-in as anyone
		// else (id_token_hint), and Callback checks the subject again.
		if cur, ok := p.Current(r); ok {
			f.Subject, hint = cur.UserID, cur.IDToken
		}
	}
	raw, _ := json.Marshal(f)
	http.SetCookie(w, &http.Cookie{Name: p.flowCookie(), Value: base64.RawURLEncoding.EncodeToString(p.o.Keyring.Seal(raw, []byte(p.flowCookie()))),
		Path: p.o.Path, HttpOnly: true, Secure: p.o.Secure, SameSite: http.SameSiteLaxMode, MaxAge: 900})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)}
	if action != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("acr_values", "aal2"),
			oauth2.SetAuthURLParam("max_age", strconv.Itoa(int(maxAge.Seconds()))))
		if hint != "" {
			opts = append(opts, oauth2.SetAuthURLParam("id_token_hint", hint))
		}
	}
	http.Redirect(w, r, p.oauth.AuthCodeURL(f.State, opts...), http.StatusSeeOther)
}

func (p *RP) readFlow(r *http.Request) (flow, bool) {
	var f flow
	c, err := r.Cookie(p.flowCookie())
	if err != nil {
		return f, false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return f, false
	}
	raw, err := p.o.Keyring.Open(sealed, []byte(p.flowCookie()))
	if err != nil || json.Unmarshal(raw, &f) != nil || p.o.Now().Sub(f.Started) > 15*time.Minute {
		return f, false
	}
	return f, true
}

// Failure is a sign-in that did not complete, with a stable code and a
// message safe to show.
type Failure struct {
	Status  int
	Code    string
	Message string
	Err     error // for the log only
}

// Result is a completed sign-in.
type Result struct {
	Session store.PortalSession
	StepUp  string // the action a valid step-up was made for, or ""
	Return  string
}

// Callback completes a sign-in or step-up: check state and issuer,
// exchange the code with the PKCE verifier, verify the ID token (signature,
// issuer, audience, nonce), and start a fresh session.
func (p *RP) Callback(w http.ResponseWriter, r *http.Request) (Result, *Failure) {
	ctx := oidc.ClientContext(r.Context(), p.o.HTTPClient)
	f, ok := p.readFlow(r)
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: p.flowCookie(), Value: "", Path: p.o.Path, MaxAge: -1, HttpOnly: true, Secure: p.o.Secure})
	if !ok || q.Get("state") != f.State {
		return Result{}, &Failure{Status: http.StatusBadRequest, Code: "invalid_state", Message: "This sign-in response does not belong to a sign-in started in this browser. Start again."}
	}
	if iss := q.Get("iss"); iss != "" && iss != p.o.Issuer {
		return Result{}, &Failure{Status: http.StatusBadRequest, Code: "invalid_issuer", Message: "The sign-in response came from an unexpected issuer."}
	}
	if e := q.Get("error"); e != "" {
		return Result{}, &Failure{Status: http.StatusUnauthorized, Code: "sign_in_failed", Message: "Sign-in did not complete (" + e + "). Start again."}
	}
	failed := func(err error) *Failure {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusServiceUnavailable {
			// The provider's database was unavailable (a failover): this
			// request's answer is 503 too (ui.Outage), not a failed
			// sign-in.
			store.NoteUnavailable(r.Context())
		}
		return &Failure{Status: http.StatusUnauthorized, Code: "sign_in_failed", Message: "Sign-in did not complete. Start again.", Err: err}
	}
	tok, err := p.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Result{}, failed(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Result{}, failed(err)
	}
	if idt.Nonce != f.Nonce {
		return Result{}, failed(nil)
	}
	var claims struct {
		AuthTime int64    `json:"auth_time"`
		AMR      []string `json:"amr"`
		ACR      string   `json:"acr"`
		SID      string   `json:"sid"`
	}
	if err := idt.Claims(&claims); err != nil {
		return Result{}, failed(err)
	}
	if f.Subject != "" && idt.Subject != f.Subject {
		// The session stays whose it was; nothing is recorded as a step-up.
		return Result{}, &Failure{Status: http.StatusForbidden, Code: "step_up_other_user",
			Message: "You confirmed as a different account than the one signed in here. Nothing changed; sign in again as yourself to continue."}
	}
	authTime := time.Unix(claims.AuthTime, 0).UTC()
	res := Result{Return: f.Return}
	// The step-up counts only if this sign-in happened after it was
	// requested and included the second factor; it is bound to its action.
	if f.Action != "" && !authTime.Before(f.Started.Truncate(time.Second)) && authn.HasSecondFactor(claims.AMR) {
		res.StepUp = f.Action
	}
	s, err := p.startSession(r.Context(), w, r, store.PortalSession{UserID: idt.Subject, SID: claims.SID, AuthTime: authTime, AMR: claims.AMR,
		ACR: claims.ACR, IDToken: raw, StepUp: res.StepUp})
	if err != nil {
		return Result{}, &Failure{Status: http.StatusInternalServerError, Code: "server_error", Message: "Something went wrong on our side.", Err: err}
	}
	res.Session = s
	return res, nil
}

// HashID is the stored form of a session cookie value.
func HashID(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// startSession replaces this browser's session with a new one: the id
// rotates at every sign-in and step-up. A step-up's audit event is written
// in the same transaction.
func (p *RP) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, s store.PortalSession) (store.PortalSession, error) {
	raw := randomHex(32)
	now := p.o.Now().UTC()
	s.IDHash, s.CreatedAt, s.ExpiresAt = HashID(raw), now, now.Add(p.o.Lifetime)
	err := p.o.Store.InTx(ctx, func(q store.Queries) error {
		if c, err := r.Cookie(p.o.Cookie); err == nil {
			if err := q.DeletePortalSession(ctx, HashID(c.Value)); err != nil {
				return err
			}
		}
		if err := q.CreatePortalSession(ctx, s); err != nil {
			return err
		}
		if s.StepUp != "" && p.o.OnStepUp != nil {
			return p.o.OnStepUp(ctx, q, r, s)
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	http.SetCookie(w, &http.Cookie{Name: p.o.Cookie, Value: raw, Path: p.o.Path, HttpOnly: true, Secure: p.o.Secure,
		SameSite: http.SameSiteLaxMode, Expires: s.ExpiresAt})
	return s, nil
}

// Current returns the browser's live session.
func (p *RP) Current(r *http.Request) (store.PortalSession, bool) {
	c, err := r.Cookie(p.o.Cookie)
	if err != nil || len(c.Value) != 64 {
		return store.PortalSession{}, false
	}
	s, err := p.o.Store.GetPortalSession(r.Context(), HashID(c.Value))
	if err != nil || p.o.Now().After(s.ExpiresAt) {
		return store.PortalSession{}, false
	}
	return s, true
}

// End deletes the browser's session and clears its cookie, and returns the
// provider logout URL (with the ID token as hint) to send the browser to.
func (p *RP) End(w http.ResponseWriter, r *http.Request) string {
	s, ok := p.Current(r)
	http.SetCookie(w, &http.Cookie{Name: p.o.Cookie, Value: "", Path: p.o.Path, MaxAge: -1, HttpOnly: true, Secure: p.o.Secure})
	if !ok {
		return p.o.Path
	}
	_ = p.o.Store.DeletePortalSession(r.Context(), s.IDHash)
	v := url.Values{"id_token_hint": {s.IDToken}, "client_id": {p.o.ClientID}}
	return p.o.Issuer + "/oauth2/logout?" + v.Encode()
}

// SetOnStepUp sets Options.OnStepUp, for applications whose recorder is a
// method of the handler that owns the RP.
func (p *RP) SetOnStepUp(fn func(ctx context.Context, q store.Queries, r *http.Request, s store.PortalSession) error) {
	p.o.OnStepUp = fn
}
