package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Messages shown on the sign-in pages. One message covers every reason a
// password sign-in fails, so the page does not reveal which accounts exist.
const (
	msgBadCredentials = "Incorrect username or password."
	msgBadCode        = "That code did not work. Enter the current code from your authenticator app, or one of your recovery codes."
	msgLocked         = "Too many failed attempts. Wait a few minutes, then try again."
	msgExpired        = "This sign-in page has expired or was opened in another browser. Go back to the application and start again."
)

func (p *Provider) clientName(r *http.Request, f store.LoginFlow) string {
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	c, err := p.fstore.cachedClient(r.Context(), q.Get("client_id")) // shown on every sign-in page
	if err != nil {
		return ""
	}
	return displayName(c)
}

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	f, ok := p.loadFlow(r, r.URL.Query().Get("flow"), loginFlowPrefix)
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	p.render(w, r, http.StatusOK, "login.html", map[string]any{"Flow": f.ID, "Client": p.clientName(r, f), "Actions": flowActions(f)})
}

func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return
	}
	f, ok := p.loadFlow(r, r.PostFormValue("flow"), loginFlowPrefix)
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	username := r.PostFormValue("username")
	data := map[string]any{"Flow": f.ID, "Client": p.clientName(r, f), "Username": username, "Actions": flowActions(f)}
	if username == "" || len(username) > 256 || len(r.PostFormValue("password")) > 1024 {
		data["Error"] = msgBadCredentials
		p.render(w, r, http.StatusUnauthorized, "login.html", data)
		return
	}
	user, err := p.o.Authn.CheckPassword(r.Context(), username, r.PostFormValue("password"), httpx.ClientIP(r))
	if errors.Is(err, authn.ErrInvalidCredentials) || errors.Is(err, authn.ErrLocked) {
		p.recordFailure(r, f, "", map[string]any{"step": "password", "username": username, "reason": reason(err)})
	}
	if p.refused(w, r, "login.html", data, err) {
		return
	}
	// A step-up pinned to a user (id_token_hint) cannot finish as another:
	// nothing changes, this browser's session included.
	if sub := p.hintSubject(r, f); sub != "" && sub != user.ID {
		p.recordFailure(r, f, user.ID, map[string]any{"step": "password", "reason": "other_user"})
		data["Error"] = "This sign-in confirms an action for another account. Sign in as that account, or go back to the application."
		p.render(w, r, http.StatusForbidden, "login.html", data)
		return
	}
	hasTOTP, err := p.o.Authn.HasTOTP(r.Context(), user.ID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	hasPasskeys, err := p.o.Authn.HasPasskeys(r.Context(), user.ID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if err := p.o.Store.SetFlowUser(r.Context(), f.ID, user.ID, p.o.Now()); err != nil {
		p.serverError(w, r, err)
		return
	}
	f.UserID, f.PasswordAt = user.ID, p.o.Now()
	next := PathLogin2SV
	if !hasTOTP && !hasPasskeys {
		if p.setupExpired(w, r, f) {
			return
		}
		enroll, err := p.mustEnroll(r, user.ID)
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		// A request for aal2 is never downgraded to a password-only
		// sign-in, grace period or not: it leads to setup.
		if !enroll && wantsAAL2(f) {
			enroll = true
		}
		if !enroll {
			p.completeLogin(w, r, f, user.ID, []string{"pwd"}, ACRPassword)
			return
		}
		next = PathLoginSetup
	}
	http.Redirect(w, r, next+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
}

// postedFlow checks a sign-in form post's CSRF token and returns its flow
// if the password step is done; otherwise it answers.
func (p *Provider) postedFlow(w http.ResponseWriter, r *http.Request) (store.LoginFlow, bool) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return store.LoginFlow{}, false
	}
	f, ok := p.passwordDone(r, r.PostFormValue("flow"))
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
	}
	return f, ok
}

// passwordDone returns the flow if its password step is complete.
func (p *Provider) passwordDone(r *http.Request, id string) (store.LoginFlow, bool) {
	f, ok := p.loadFlow(r, id, loginFlowPrefix)
	if !ok || f.UserID == "" || f.PasswordAt.IsZero() {
		return store.LoginFlow{}, false
	}
	return f, true
}

func (p *Provider) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	f, ok := p.passwordDone(r, r.URL.Query().Get("flow"))
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "expired", msgExpired)
		return
	}
	left, err := p.o.Store.CountRecoveryCodes(r.Context(), f.UserID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	data := p.secondFactorData(r, f)
	data["NoCodes"] = left == 0
	p.render(w, r, http.StatusOK, "second_factor.html", data)
}

func (p *Provider) secondFactorSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := p.postedFlow(w, r)
	if !ok {
		return
	}
	code := r.PostFormValue("code")
	if code == "" || len(code) > 64 {
		data := p.secondFactorData(r, f)
		data["Error"] = msgBadCode
		p.render(w, r, http.StatusUnauthorized, "second_factor.html", data)
		return
	}
	method, err := p.o.Authn.CheckSecondFactor(r.Context(), f.UserID, code, httpx.ClientIP(r))
	if errors.Is(err, authn.ErrInvalidCode) || errors.Is(err, authn.ErrLocked) {
		p.recordFailure(r, f, f.UserID, map[string]any{"step": "second_factor", "reason": reason(err)})
	}
	if err == nil && method == "recovery_code" {
		left, _ := p.o.Store.CountRecoveryCodes(r.Context(), f.UserID)
		p.record(r, p.event(r, audit.RecoveryCodeUsed, f.UserID, "", map[string]any{"remaining": left}))
	}
	if err != nil {
		p.refused(w, r, "second_factor.html", p.secondFactorData(r, f), err)
		return
	}
	kind := policy.MethodTOTP
	if method == "recovery_code" {
		kind = mfa.MethodRecoveryCode
	}
	// RFC 8176: a password plus a one-time code is multi-factor.
	p.secondFactorDone(w, r, f, kind, []string{"pwd", "otp", "mfa"})
}

// secondFactorDone goes on from a verified second factor of kind: the
// lifecycle service says whether the user's policy accepts it, or whether
// they must first set up a method it allows (the sign-in continues to the
// setup screen, remembering the factor it verified).
func (p *Provider) secondFactorDone(w http.ResponseWriter, r *http.Request, f store.LoginFlow, kind string, amr []string) {
	switchNeeded, err := p.o.MFA.SignInMethod(r.Context(), p.setupActor(r, f), setupProof(f), kind)
	if ref, ok := mfa.AsRefusal(err); ok {
		p.recordFailure(r, f, f.UserID, map[string]any{"step": "second_factor", "method": kind, "reason": ref.Code})
		data := p.secondFactorData(r, f)
		data["Error"] = ref.Message
		p.render(w, r, http.StatusForbidden, "second_factor.html", data)
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if !switchNeeded {
		p.completeLogin(w, r, f, f.UserID, amr, ACRMFA)
		return
	}
	if err := p.o.Store.SetFlowSecondFactor(r.Context(), f.ID, amr[1], p.o.Now()); err != nil {
		p.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, PathLoginSetup+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
}

// completeLogin starts a fresh browser session (rotating any old one) and
// resumes the authorization request.
func (p *Provider) completeLogin(w http.ResponseWriter, r *http.Request, f store.LoginFlow, userID string, amr []string, acr string) {
	if f.UserID == "" {
		if err := p.o.Store.SetFlowUser(r.Context(), f.ID, userID, p.o.Now()); err != nil {
			p.serverError(w, r, err)
			return
		}
	}
	ctx := r.Context()
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	err := p.o.Store.InTx(ctx, func(tx store.Queries) error {
		bs, err := p.o.Sessions.Start(ctx, tx, w, r, userID, p.o.Now(), amr, acr)
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, p.event(r, audit.LoginSucceeded, userID, q.Get("client_id"), map[string]any{"amr": amr, "acr": acr, "sid": bs.SID}))
		return err
	})
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, PathResume+"?flow="+url.QueryEscape(f.ID), http.StatusSeeOther)
}

func (p *Provider) render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	p.pages.Render(w, r, status, name, data)
}

func (p *Provider) errorPage(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	p.pages.Error(w, r, status, code, msg)
}

func (p *Provider) csrfFailed(w http.ResponseWriter, r *http.Request) { p.pages.CSRFFailed(w, r) }

func (p *Provider) serverError(w http.ResponseWriter, r *http.Request, err error) {
	p.pages.ServerError(w, r, err)
}

// refused answers a failed sign-in step on its own page, with one message
// per kind of failure, and reports whether it did.
func (p *Provider) refused(w http.ResponseWriter, r *http.Request, page string, data map[string]any, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, authn.ErrInvalidCredentials):
		data["Error"] = msgBadCredentials
		p.render(w, r, http.StatusUnauthorized, page, data)
	case errors.Is(err, authn.ErrInvalidCode):
		data["Error"] = msgBadCode
		p.render(w, r, http.StatusUnauthorized, page, data)
	case errors.Is(err, authn.ErrLocked):
		data["Error"] = msgLocked
		p.render(w, r, http.StatusTooManyRequests, page, data)
	case errors.Is(err, authn.ErrBusy), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Nothing was judged: the same form, to send again shortly.
		w.Header().Set("Retry-After", "2")
		data["Error"] = msgBusy
		p.render(w, r, http.StatusServiceUnavailable, page, data)
	default:
		p.serverError(w, r, err)
	}
	return true
}

func reason(err error) string {
	if errors.Is(err, authn.ErrLocked) {
		return "locked"
	}
	return "invalid"
}

// event builds an audit event about a sign-in by this browser.
func (p *Provider) event(r *http.Request, typ audit.Type, userID, clientID string, details map[string]any) audit.Event {
	return audit.Event{Type: typ, ActorType: audit.ActorUser, ActorID: userID, SubjectID: userID, ClientID: clientID, Time: p.o.Now(),
		Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())}, Details: details}
}

// record appends an event that stands alone (a refusal changes nothing
// else); a failure to record is logged, never shown.
func (p *Provider) record(r *http.Request, e audit.Event) {
	ctx := r.Context()
	if err := p.o.Store.InTx(ctx, func(q store.Queries) error {
		_, err := audit.Append(ctx, q, e)
		return err
	}); err != nil {
		p.o.Logger.ErrorContext(ctx, "audit append failed", "type", e.Type, "err", err)
	}
}

// failureWindow is the window over which repeated failed sign-ins of one
// kind are aggregated in the audit log.
const failureWindow = 15 * time.Minute

// recordFailure audits a failed sign-in step. Anonymous traffic must not
// grow the log without bound: repeated failures of one kind (step, account
// or user, reason) within failureWindow are aggregated, with an event at
// the 1st, 2nd, 4th, 8th… failure carrying the count so far.
func (p *Provider) recordFailure(r *http.Request, f store.LoginFlow, userID string, details map[string]any) {
	who := userID
	if who == "" {
		who, _ = details["username"].(string)
		who = "name:" + strings.ToLower(strings.TrimSpace(who))
	}
	n, err := p.o.Authn.Count(r.Context(), fmt.Sprintf("audit:%v:%s:%v", details["step"], who, details["reason"]), failureWindow)
	if err != nil {
		p.o.Logger.ErrorContext(r.Context(), "counting a failed sign-in failed", "err", err)
	} else if n&(n-1) != 0 {
		return // not the 1st, 2nd, 4th, 8th… of this window: counted, not logged
	}
	details["failures_in_window"] = n
	q, _ := url.ParseQuery(f.AuthorizeQuery)
	e := p.event(r, audit.LoginFailed, userID, q.Get("client_id"), details)
	e.Outcome = audit.Failure
	p.record(r, e)
}
