package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/latchkey/latchkey/store"
)

// Stateless JWT access tokens. A JWT issued by client credentials (no
// user, so no auth_time) is not stored: nothing needs to look it up but
// Latchkey's own resource endpoints, and the token carries everything
// they need. Fosite still passes through the storage interface, so the
// "signature" of such a token carries the token (lookups) or its jti and
// expiry (creation and revocation), marked with statelessPrefix:
//
//   - issuance writes nothing in the request path; the token log gets the
//     grant through tokenLog, a batch committed within batchDelay (a crash
//     in that window loses those log rows, not the tokens);
//   - introspection and the account/admin APIs verify the signature,
//     expiry and typ, then the deny list;
//   - revocation puts the jti on the deny list (revoked_jwts) until the
//     token expires. A resource server that only checks signatures does
//     not see revocations: it relies on the short lifetime.
const statelessPrefix = "jwt:"

// isStateless reports whether token is a JWT access token without a user
// (client credentials). It does not verify: lookups do.
func isStateless(token string) bool {
	if !isJWT(token) {
		return false
	}
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		AuthTime *int64 `json:"auth_time"`
	}
	return json.Unmarshal(raw, &c) == nil && c.AuthTime == nil
}

// statelessID is the request id of a stateless token: its jti and expiry,
// which revocation needs for the deny list.
func statelessID(jti string, exp time.Time) string {
	return statelessPrefix + jti + ":" + strconv.FormatInt(exp.Unix(), 10)
}

func parseStatelessID(id string) (jti string, exp time.Time, ok bool) {
	rest, ok := strings.CutPrefix(id, statelessPrefix)
	if !ok {
		return "", time.Time{}, false
	}
	jti, sec, ok := strings.Cut(rest, ":")
	n, err := strconv.ParseInt(sec, 10, 64)
	return jti, time.Unix(n, 0), ok && err == nil && jti != ""
}

// statelessSession rebuilds the request of a stateless token from its
// verified claims, unless its jti is denied.
func (s *fositeStore) statelessSession(ctx context.Context, token string, session fosite.Session) (fosite.Requester, error) {
	c, err := s.verifyJWT(ctx, token)
	if err != nil {
		return nil, fosite.ErrNotFound
	}
	if revoked, err := s.q(ctx).JWTRevoked(ctx, c.Jti); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrInactiveToken
	}
	cl, err := s.GetClient(ctx, c.ClientID)
	if err != nil {
		return nil, err
	}
	exp := time.Unix(c.Exp, 0)
	if ds, ok := session.(*openid.DefaultSession); ok {
		ds.SetExpiresAt(fosite.AccessToken, exp)
	}
	scopes := strings.Fields(c.Scope)
	return &fosite.Request{ID: statelessID(c.Jti, exp), RequestedAt: time.Unix(c.Iat, 0), Client: cl, RequestedScope: scopes,
		GrantedScope: scopes, GrantedAudience: c.Aud, Form: url.Values{}, Session: session}, nil
}

// FlushTokenLog writes the token-log rows of stateless grants still
// pending; serve calls it at shutdown.
func (p *Provider) FlushTokenLog() { p.fstore.tokenLog.Flush() }

// tokenLog batches the token-log rows of stateless grants: one
// transaction per batch instead of one write per token.
type tokenLog struct {
	st    store.Store
	log   *slog.Logger
	delay time.Duration

	mu      sync.Mutex
	pending []store.TokenEvent
	timer   *time.Timer
}

const (
	batchDelay = 200 * time.Millisecond
	batchMax   = 512
	// While the database is unavailable (a failover), rows wait and are
	// tried again every retryDelay; beyond maxPending (about 8 MB) the
	// oldest are given up, with an error in the log.
	retryDelay = time.Second
	maxPending = 50000
)

func (l *tokenLog) add(e store.TokenEvent) {
	l.mu.Lock()
	l.pending = append(l.pending, e)
	if l.timer == nil {
		l.timer = time.AfterFunc(l.delay, l.Flush)
	}
	full := len(l.pending) >= batchMax
	l.mu.Unlock()
	if full {
		go l.Flush()
	}
}

// Flush writes what is pending (also called at shutdown).
func (l *tokenLog) Flush() {
	l.mu.Lock()
	evs := l.pending
	l.pending = nil
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	ctx := context.Background()
	var err error
	for len(evs) > 0 {
		n := min(len(evs), batchMax)
		if err = l.st.AppendTokenEvents(ctx, evs[:n]); err != nil {
			break
		}
		evs = evs[n:]
	}
	if err == nil {
		return
	}
	if !errors.Is(err, store.ErrUnavailable) {
		l.log.Error("token log batch lost", "events", len(evs), "err", fmt.Sprint(err))
		return
	}
	// The tokens were delivered: their rows must follow once a primary
	// answers again. At least once: a batch whose COMMIT lost its answer
	// (store.ErrCommitUnknown) may have been written, and is written
	// again — a repeated "issued" row, where the other way would lose it.
	l.mu.Lock()
	l.pending = append(evs, l.pending...)
	if over := len(l.pending) - maxPending; over > 0 {
		l.pending = l.pending[over:]
		l.log.Error("token log rows lost: the database was unavailable too long", "events", over)
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(retryDelay, l.Flush)
	}
	l.mu.Unlock()
	l.log.Warn("token log batch deferred: database unavailable", "events", len(evs), "err", fmt.Sprint(err))
}
