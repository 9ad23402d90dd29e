package selfservice

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
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

// callback completes a sign-in or step-up; a step-up's audit event was
// written with the new session (recordStepUp).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	res, fail := h.rp.Callback(w, r)
	if fail != nil {
		if fail.Err != nil {
			h.o.Logger.WarnContext(r.Context(), "portal sign-in failed", "code", fail.Code, "err", fail.Err)
		}
		h.errorPage(w, r, fail.Status, fail.Code, fail.Message)
		return
	}
	http.Redirect(w, r, res.Return, http.StatusSeeOther)
}

// recordStepUp appends the step-up's audit event in the transaction that
// stores the session it created.
func (h *Handler) recordStepUp(ctx context.Context, q store.Queries, r *http.Request, s store.PortalSession) error {
	_, err := audit.Append(ctx, q, audit.Event{Type: audit.StepUpSucceeded, ActorType: audit.ActorUser, ActorID: s.UserID,
		SubjectID: s.UserID, ClientID: h.o.ClientID, Request: requestFacts(r), Time: h.o.Now().UTC(),
		Details: map[string]any{"action": s.StepUp, "amr": s.AMR, "auth_time": s.AuthTime.UTC().Format(time.RFC3339)}})
	return err
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

// caller is who is acting and how they authenticated.
type caller struct {
	UserID  string
	Session *store.PortalSession // nil for bearer callers
	Actor   mfa.Actor
	Proof   mfa.Proof
}

func requestFacts(r *http.Request) audit.Request {
	return audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())}
}

// sessionCaller is a portal session's user; its proof is the session,
// with the action of its step-up if it made one.
func (h *Handler) sessionCaller(r *http.Request, s store.PortalSession) caller {
	p := mfa.Proof{Via: mfa.ViaSession, ID: s.IDHash, AuthTime: s.AuthTime, AMR: s.AMR}
	if s.StepUp != "" {
		p.Actions = []string{s.StepUp}
	}
	return caller{UserID: s.UserID, Session: &s, Proof: p,
		Actor: mfa.Actor{Type: audit.ActorUser, UserID: s.UserID, ClientID: h.o.ClientID, Request: requestFacts(r)}}
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
	return h.sessionCaller(r, s), true
}
