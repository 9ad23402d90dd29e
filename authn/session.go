package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/latchkey/latchkey/store"
)

// SessionOptions configures browser sessions.
type SessionOptions struct {
	CookieName      string
	Secure          bool // false only in dev mode on plain HTTP
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	Now             func() time.Time
}

// Sessions manages server-side browser sessions. The cookie holds a random
// 256-bit value; the database holds only its SHA-256.
type Sessions struct {
	st store.Store
	o  SessionOptions
}

// NewSessions returns a session manager.
func NewSessions(st store.Store, o SessionOptions) *Sessions {
	if o.CookieName == "" {
		o.CookieName = "latchkey_session"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sessions{st: st, o: o}
}

func hashID(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// Start creates a session for a completed sign-in and sets its cookie. Any
// session the browser already had is deleted first: the id rotates at every
// sign-in, so a session id planted before login is worthless after it.
//
// It writes on q, so a caller can record the sign-in in the same
// transaction.
func (m *Sessions) Start(ctx context.Context, q store.Queries, w http.ResponseWriter, r *http.Request, userID string, authTime time.Time, amr []string, acr string) (store.BrowserSession, error) {
	if c, err := r.Cookie(m.o.CookieName); err == nil {
		if err := q.DeleteSession(ctx, hashID(c.Value)); err != nil {
			return store.BrowserSession{}, err
		}
	}
	raw := RandomToken(32)
	now := m.o.Now().UTC()
	s := store.BrowserSession{IDHash: hashID(raw), SID: RandomToken(16), UserID: userID, AuthTime: authTime.UTC(),
		AMR: amr, ACR: acr, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(m.o.AbsoluteTimeout)}
	if err := q.CreateSession(ctx, s); err != nil {
		return store.BrowserSession{}, err
	}
	http.SetCookie(w, &http.Cookie{Name: m.o.CookieName, Value: raw, Path: "/", HttpOnly: true, Secure: m.o.Secure,
		SameSite: http.SameSiteLaxMode, Expires: s.ExpiresAt})
	return s, nil
}

// Current returns the browser's live session, or store.ErrNotFound. Expired
// sessions (idle or absolute) are deleted on sight.
func (m *Sessions) Current(r *http.Request) (store.BrowserSession, error) {
	c, err := r.Cookie(m.o.CookieName)
	if err != nil || len(c.Value) != 64 {
		return store.BrowserSession{}, store.ErrNotFound
	}
	ctx := r.Context()
	s, err := m.st.GetSession(ctx, hashID(c.Value))
	if err != nil {
		return store.BrowserSession{}, err
	}
	now := m.o.Now()
	if now.After(s.ExpiresAt) || now.Sub(s.LastSeenAt) > m.o.IdleTimeout {
		_ = m.st.DeleteSession(ctx, s.IDHash)
		return store.BrowserSession{}, store.ErrNotFound
	}
	// Writing on every request would make each page view a database write;
	// a minute's resolution is plenty for an idle timeout.
	if now.Sub(s.LastSeenAt) > time.Minute {
		if err := m.st.TouchSession(ctx, s.IDHash, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.BrowserSession{}, err
		}
	}
	return s, nil
}

// End deletes the browser's session and clears its cookie.
func (m *Sessions) End(w http.ResponseWriter, r *http.Request) error {
	c, err := r.Cookie(m.o.CookieName)
	http.SetCookie(w, &http.Cookie{Name: m.o.CookieName, Value: "", Path: "/", HttpOnly: true, Secure: m.o.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
	if err != nil {
		return nil
	}
	return m.st.DeleteSession(r.Context(), hashID(c.Value))
}
