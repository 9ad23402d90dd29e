package selfservice

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

const (
	sessionCookie = "latchkey_account"
	flowCookie    = "latchkey_account_flow"
)

// signInFlow is the relying-party state of one authorization request, kept
// sealed (AES-GCM) in a short-lived cookie: the PKCE verifier must stay
// secret, and the state must come back to the browser that started it.
type signInFlow struct {
	State    string    `json:"s"`
	Verifier string    `json:"v"`
	Nonce    string    `json:"n"`
	Action   string    `json:"a,omitempty"` // step-up action, "" for a sign-in
	Return   string    `json:"r"`
	Started  time.Time `json:"t"`
}

// localPath accepts only same-site absolute paths, so return targets cannot
// send the browser elsewhere (no open redirect).
func localPath(p string) string {
	if !strings.HasPrefix(p, "/account") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return PathAccount
	}
	if u, err := url.Parse(p); err != nil || u.IsAbs() || u.Host != "" {
		return PathAccount
	}
	return p
}

// startSignIn redirects to the provider. For a step-up it forces a new
// sign-in (prompt=login) no older than maxAge, with the second factor.
func (h *Handler) startSignIn(w http.ResponseWriter, r *http.Request, action, ret string, maxAge time.Duration) {
	f := signInFlow{State: authn.RandomToken(16), Verifier: oauth2.GenerateVerifier(), Nonce: authn.RandomToken(16),
		Action: action, Return: localPath(ret), Started: h.o.Now().UTC()}
	raw, _ := json.Marshal(f)
	sealed := h.o.Keyring.Seal(raw, []byte(flowCookie))
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: base64.RawURLEncoding.EncodeToString(sealed), Path: "/account",
		HttpOnly: true, Secure: h.o.Secure, SameSite: http.SameSiteLaxMode, MaxAge: 900})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)}
	if action != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("acr_values", "aal2"),
			oauth2.SetAuthURLParam("max_age", strconv.Itoa(int(maxAge.Seconds()))))
	}
	http.Redirect(w, r, h.oauth.AuthCodeURL(f.State, opts...), http.StatusSeeOther)
}

func (h *Handler) readFlow(r *http.Request) (signInFlow, bool) {
	var f signInFlow
	c, err := r.Cookie(flowCookie)
	if err != nil {
		return f, false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return f, false
	}
	raw, err := h.o.Keyring.Open(sealed, []byte(flowCookie))
	if err != nil || json.Unmarshal(raw, &f) != nil || h.o.Now().Sub(f.Started) > 15*time.Minute {
		return f, false
	}
	return f, true
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	h.startSignIn(w, r, "", r.URL.Query().Get("return"), 0)
}

// stepUp starts a fresh sign-in for one action.
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request) {
	c, ok := h.formCaller(w, r)
	if !ok {
		return
	}
	action := r.PostFormValue("action")
	if action != ActionUnlink && action != ActionReplace && action != ActionCodes {
		h.errorPage(w, r, http.StatusBadRequest, "invalid_action", "Unknown action.")
		return
	}
	eff, err := authn.EffectivePolicy(r.Context(), h.o.Store, c.UserID)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	h.startSignIn(w, r, action, r.PostFormValue("return"), eff.StepUpMaxAge)
}

// callback completes a sign-in or step-up: exchange the code (PKCE),
// verify the ID token (signature, issuer, audience, nonce), and start a
// fresh portal session.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := oidc.ClientContext(r.Context(), h.o.HTTPClient)
	f, ok := h.readFlow(r)
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/account", MaxAge: -1, HttpOnly: true, Secure: h.o.Secure})
	if !ok || q.Get("state") != f.State {
		h.errorPage(w, r, http.StatusBadRequest, "invalid_state", "This sign-in response does not belong to a sign-in started in this browser. Start again.")
		return
	}
	if iss := q.Get("iss"); iss != "" && iss != h.o.Issuer {
		h.errorPage(w, r, http.StatusBadRequest, "invalid_issuer", "The sign-in response came from an unexpected issuer.")
		return
	}
	if e := q.Get("error"); e != "" {
		h.errorPage(w, r, http.StatusUnauthorized, "sign_in_failed", "Sign-in did not complete ("+e+"). Start again.")
		return
	}
	tok, err := h.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		h.o.Logger.WarnContext(ctx, "portal code exchange failed", "err", err)
		h.errorPage(w, r, http.StatusUnauthorized, "sign_in_failed", "Sign-in did not complete. Start again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := h.verifier.Verify(ctx, raw)
	if err != nil || idt.Nonce != f.Nonce {
		h.o.Logger.WarnContext(ctx, "portal id token rejected", "err", err)
		h.errorPage(w, r, http.StatusUnauthorized, "sign_in_failed", "Sign-in did not complete. Start again.")
		return
	}
	var claims struct {
		AuthTime int64    `json:"auth_time"`
		AMR      []string `json:"amr"`
		ACR      string   `json:"acr"`
		SID      string   `json:"sid"`
	}
	if err := idt.Claims(&claims); err != nil {
		h.serverError(w, r, err)
		return
	}
	authTime := time.Unix(claims.AuthTime, 0).UTC()
	stepUp := ""
	// The step-up counts only if this sign-in happened after it was
	// requested and included the second factor; it is bound to its action.
	if f.Action != "" && !authTime.Before(f.Started.Truncate(time.Second)) && hasSecondFactor(claims.AMR) {
		stepUp = f.Action
	}
	if err := h.startSession(ctx, w, r, idt.Subject, authTime, claims.AMR, claims.ACR, claims.SID, raw, stepUp); err != nil {
		h.serverError(w, r, err)
		return
	}
	if stepUp != "" {
		_ = h.o.Store.InTx(ctx, func(q store.Queries) error {
			_, err := audit.Append(ctx, q, audit.Event{Type: audit.StepUpSucceeded, ActorType: audit.ActorUser, ActorID: idt.Subject,
				SubjectID: idt.Subject, ClientID: h.o.ClientID, Request: requestFacts(r), Details: map[string]any{"action": stepUp, "amr": claims.AMR}})
			return err
		})
	}
	http.Redirect(w, r, f.Return, http.StatusSeeOther)
}

func hasSecondFactor(amr []string) bool {
	return slices.Contains(amr, "otp") || slices.Contains(amr, "mfa")
}

func hashID(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// startSession replaces any portal session of this browser with a new one
// (new id: the session rotates at every sign-in and step-up).
func (h *Handler) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, authTime time.Time, amr []string, acr, sid, idToken, stepUp string) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := h.o.Store.DeletePortalSession(ctx, hashID(c.Value)); err != nil {
			return err
		}
	}
	raw := authn.RandomToken(32)
	now := h.o.Now().UTC()
	s := store.PortalSession{IDHash: hashID(raw), UserID: userID, SID: sid, AuthTime: authTime, AMR: amr, ACR: acr, IDToken: idToken,
		StepUp: stepUp, CreatedAt: now, ExpiresAt: now.Add(h.o.SessionLifetime)}
	if err := h.o.Store.CreatePortalSession(ctx, s); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: raw, Path: "/account", HttpOnly: true, Secure: h.o.Secure,
		SameSite: http.SameSiteLaxMode, Expires: s.ExpiresAt})
	return nil
}

func (h *Handler) currentSession(r *http.Request) (store.PortalSession, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) != 64 {
		return store.PortalSession{}, false
	}
	s, err := h.o.Store.GetPortalSession(r.Context(), hashID(c.Value))
	if err != nil || h.o.Now().After(s.ExpiresAt) {
		return store.PortalSession{}, false
	}
	return s, true
}

// logout ends the portal session and the provider session behind it.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.o.CSRF.Valid(r) {
		h.csrfFailed(w, r)
		return
	}
	s, ok := h.currentSession(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/account", MaxAge: -1, HttpOnly: true, Secure: h.o.Secure})
	if !ok {
		http.Redirect(w, r, PathAccount, http.StatusSeeOther)
		return
	}
	_ = h.o.Store.DeletePortalSession(r.Context(), s.IDHash)
	v := url.Values{"id_token_hint": {s.IDToken}, "client_id": {h.o.ClientID}}
	http.Redirect(w, r, h.o.Issuer+"/oauth2/logout?"+v.Encode(), http.StatusSeeOther)
}

// caller is who is acting and how fresh their authentication is.
type caller struct {
	UserID   string
	AuthTime time.Time
	AMR      []string
	StepUp   string // action of the session's step-up ("" for bearer callers)
	Session  *store.PortalSession
	Bearer   bool
	ClientID string
	Request  audit.Request
}

func requestFacts(r *http.Request) audit.Request {
	return audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())}
}

// fresh reports whether c may perform action now: signed in with the
// second factor within maxAge and, for portal sessions, through a step-up
// made for this action (a step-up for one action is not valid for another).
func (c caller) fresh(action string, maxAge time.Duration, now time.Time) bool {
	if now.Sub(c.AuthTime) > maxAge || !hasSecondFactor(c.AMR) {
		return false
	}
	return c.Bearer || c.StepUp == action
}

// pageCaller returns the signed-in user for an HTML page, or redirects to
// sign in.
func (h *Handler) pageCaller(w http.ResponseWriter, r *http.Request) (caller, bool) {
	s, ok := h.currentSession(r)
	if !ok {
		ret := r.URL.Path
		if r.Method != http.MethodGet {
			ret = PathSecurity
		}
		http.Redirect(w, r, PathLogin+"?return="+url.QueryEscape(ret), http.StatusSeeOther)
		return caller{}, false
	}
	return caller{UserID: s.UserID, AuthTime: s.AuthTime, AMR: s.AMR, StepUp: s.StepUp, Session: &s, ClientID: h.o.ClientID, Request: requestFacts(r)}, true
}

// errUnauthenticated marks API requests without valid credentials.
var errUnauthenticated = errors.New("selfservice: unauthenticated")
