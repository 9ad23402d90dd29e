package selfservice

import (
	"net/http"
	"net/url"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/internal/rp"
	"github.com/latchkey/latchkey/store"
)

const sessionCookie = "latchkey_account"

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	h.rp.Start(w, r, "", r.URL.Query().Get("return"), 0)
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
	h.rp.Start(w, r, action, r.PostFormValue("return"), eff.StepUpMaxAge)
}

// callback completes a sign-in or step-up and records a step-up.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	res, fail := h.rp.Callback(w, r)
	if fail != nil {
		if fail.Err != nil {
			h.o.Logger.WarnContext(r.Context(), "portal sign-in failed", "code", fail.Code, "err", fail.Err)
		}
		h.errorPage(w, r, fail.Status, fail.Code, fail.Message)
		return
	}
	if res.StepUp != "" {
		ctx := r.Context()
		s := res.Session
		err := h.o.Store.InTx(ctx, func(q store.Queries) error {
			_, err := audit.Append(ctx, q, audit.Event{Type: audit.StepUpSucceeded, ActorType: audit.ActorUser, ActorID: s.UserID,
				SubjectID: s.UserID, ClientID: h.o.ClientID, Request: requestFacts(r), Details: map[string]any{"action": res.StepUp, "amr": s.AMR}})
			return err
		})
		if err != nil {
			// The action itself is audited when it happens; this record of
			// the step-up is what is missing.
			h.o.Logger.ErrorContext(ctx, "audit of step-up failed", "err", err)
		}
	}
	http.Redirect(w, r, res.Return, http.StatusSeeOther)
}

// logout ends the portal session and the provider session behind it.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.o.CSRF.Valid(r) {
		h.csrfFailed(w, r)
		return
	}
	http.Redirect(w, r, h.rp.End(w, r), http.StatusSeeOther)
}

func (h *Handler) currentSession(r *http.Request) (store.PortalSession, bool) { return h.rp.Current(r) }

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
	if now.Sub(c.AuthTime) > maxAge || !rp.HasSecondFactor(c.AMR) {
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
