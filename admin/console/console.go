package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/internal/rp"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/ui"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Options configures the console.
type Options struct {
	Admin      *admin.Handler // the admin service methods the console calls
	Store      store.Store
	Ledger     *audit.Checkpointer // verifies the audit log's checkpoints
	Keys       admin.Keys
	Issuer     string
	ClientID   string
	HTTPClient *http.Client
	CSRF       *httpx.CSRF
	Keyring    *seal.Keyring
	Secure     bool
	Logger     *slog.Logger
	Now        func() time.Time
}

// Paths.
const (
	Path          = "/console"
	Callback      = "/console/callback"
	consoleCookie = "latchkey_console"
)

//go:embed templates/*.html
var consoleTemplates embed.FS

type console struct {
	h      *admin.Handler
	router http.Handler // for completing a change after its step-up
	o      Options
	rp     *rp.RP
	pages  *ui.Pages
}

// Mount adds the console's pages to r.
func Mount(r chi.Router, o Options) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	page := func(title string, data any) map[string]any { return map[string]any{"Title": title, "Data": data} }
	tmpl, err := template.New("").Funcs(template.FuncMap{"join": strings.Join, "page": page}).ParseFS(consoleTemplates, "templates/*.html")
	if err != nil {
		return err
	}
	c := &console{h: o.Admin, o: o, router: r, pages: &ui.Pages{T: tmpl, CSRF: o.CSRF, Logger: o.Logger},
		rp: rp.New(rp.Options{Issuer: o.Issuer, ClientID: o.ClientID, Path: Path, Callback: Callback, Cookie: consoleCookie,
			HTTPClient: o.HTTPClient, Store: o.Store, Keyring: o.Keyring, Secure: o.Secure, Now: o.Now})}
	c.rp.SetOnStepUp(c.recordStepUp)
	c.pages.Data = c.navigation
	r.Group(func(r chi.Router) {
		r.Use(httpx.NoStore)
		r.Get(Path, func(w http.ResponseWriter, r *http.Request) {
			a, _, ok := c.admin(w, r)
			if !ok {
				return
			}
			if !a.Global {
				http.Redirect(w, r, Path+"/resets", http.StatusSeeOther)
				return
			}
			http.Redirect(w, r, Path+"/policies", http.StatusSeeOther)
		})
		r.Get(Path+"/login", func(w http.ResponseWriter, r *http.Request) { c.rp.Start(w, r, "", r.URL.Query().Get("return"), 0) })
		r.Get(Callback, c.callback)
		r.Get(Path+"/resume/{id}", c.resume)
		r.Post(Path+"/logout", c.logout)
		r.Get(Path+"/policies", c.policies)
		r.Post(Path+"/policies", c.createPolicy)
		r.Get(Path+"/policies/{id}", c.policy)
		r.Post(Path+"/policies/{id}", c.savePolicy)
		r.Post(Path+"/policies/{id}/assign", c.assign)
		r.Get(Path+"/users", c.users)
		r.Get(Path+"/users/{id}", c.user)
		r.Post(Path+"/users/{id}/remove-mfa", c.removeMFA)
		r.Post(Path+"/users/{id}/methods/{method}/remove", c.removeMethod)
		r.Get(Path+"/resets", c.resets)
		r.Post(Path+"/resets/{id}/{decision}", c.decide)
		r.Get(Path+"/audit", c.audit)
		r.Get(Path+"/audit/export", c.export)
		c.mountGroups(r)
		c.mountMore(r)
	})
	return nil
}

func (c *console) callback(w http.ResponseWriter, r *http.Request) {
	res, fail := c.rp.Callback(w, r)
	if fail != nil {
		c.pages.Error(w, r, fail.Status, fail.Code, fail.Message)
		return
	}
	http.Redirect(w, r, res.Return, http.StatusSeeOther)
}

// recordStepUp appends an admin's step-up event in the transaction that
// stores the session it created.
func (c *console) recordStepUp(ctx context.Context, q store.Queries, r *http.Request, s store.PortalSession) error {
	_, err := audit.Append(ctx, q, audit.Event{Type: audit.StepUpSucceeded, ActorType: audit.ActorAdmin, ActorID: s.UserID, SubjectID: s.UserID,
		ClientID: c.o.ClientID, Time: c.o.Now().UTC(), Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())},
		Details: map[string]any{"action": s.StepUp, "amr": s.AMR, "auth_time": s.AuthTime.UTC().Format(time.RFC3339)}})
	return err
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	if !c.o.CSRF.Valid(r) {
		c.pages.CSRFFailed(w, r)
		return
	}
	http.Redirect(w, r, c.rp.End(w, r), http.StatusSeeOther)
}

// admin returns the signed-in admin, or answers: sign in, or 403 for
// people who are not admins.
func (c *console) admin(w http.ResponseWriter, r *http.Request) (admin.Actor, store.PortalSession, bool) {
	s, ok := c.rp.Current(r)
	if !ok {
		ret := r.URL.Path
		if r.Method != http.MethodGet {
			ret = Path
		}
		http.Redirect(w, r, Path+"/login?return="+url.QueryEscape(ret), http.StatusSeeOther)
		return admin.Actor{}, s, false
	}
	global, groupAdmin, err := c.h.Roles(r.Context(), s.UserID)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return admin.Actor{}, s, false
	}
	if !global && !groupAdmin {
		c.pages.Error(w, r, http.StatusForbidden, "not_admin", "Only admins may use the admin console.")
		return admin.Actor{}, s, false
	}
	if !global && !delegated[chi.RouteContext(r.Context()).RoutePattern()] {
		c.pages.Error(w, r, http.StatusForbidden, "global_admin_only", "Only global admins may use this page. As a group admin you handle your members' reset requests and two-step verification.")
		return admin.Actor{}, s, false
	}
	return admin.Actor{Global: global, Token: admin.Token{UserID: s.UserID, ClientID: c.o.ClientID, AuthTime: s.AuthTime, AMR: s.AMR},
		Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())},
		Proof:   mfa.Proof{Via: mfa.ViaSession, ID: s.IDHash, AuthTime: s.AuthTime, AMR: s.AMR}}, s, true
}

// navigation tells the pages whether the signed-in admin is a group admin,
// who sees only what concerns their members.
func (c *console) navigation(r *http.Request, data map[string]any) {
	s, ok := c.rp.Current(r)
	if !ok {
		return
	}
	global, groupAdmin, err := c.h.Roles(r.Context(), s.UserID)
	data["GroupAdmin"] = err == nil && !global && groupAdmin
}

// delegated are the console pages a group admin (not a global admin) may
// use: their members' reset requests, pages and 2SV removal. Each checks
// the member through the admin service.
var delegated = map[string]bool{
	Path: true, Path + "/resume/{id}": true, Path + "/users/{id}": true, Path + "/users/{id}/remove-mfa": true, Path + "/resets": true, Path + "/resets/{id}/{decision}": true,
}

// post checks a form's CSRF token, then the admin.
func (c *console) post(w http.ResponseWriter, r *http.Request) (admin.Actor, store.PortalSession, bool) {
	if !c.o.CSRF.Valid(r) {
		c.pages.CSRFFailed(w, r)
		return admin.Actor{}, store.PortalSession{}, false
	}
	return c.admin(w, r)
}

// stepUp keeps the change that needed a step-up (server side, bound to the
// admin, expiring with the step-up window) and sends the admin through a
// new sign-in with the second factor; resume completes the change.
func (c *console) stepUp(w http.ResponseWriter, r *http.Request) {
	s, ok := c.rp.Current(r)
	if !ok {
		http.Redirect(w, r, Path+"/login", http.StatusSeeOther)
		return
	}
	now := c.o.Now().UTC()
	pa := store.PendingAction{ID: "pending_" + authn.RandomToken(16), UserID: s.UserID, Method: r.Method, Path: r.URL.Path,
		Form: r.PostForm.Encode(), CreatedAt: now, ExpiresAt: now.Add(mfa.AdminStepUpMaxAge)}
	if err := c.o.Store.CreatePendingAction(r.Context(), pa); err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	c.rp.Start(w, r, mfa.ActionAdmin, Path+"/resume/"+pa.ID, mfa.AdminStepUpMaxAge)
}

// resume completes a change kept by stepUp: once, by the admin who made
// it, while fresh, replayed through the router as the original form post
// (its CSRF token included), so it passes every check it would have.
func (c *console) resume(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.admin(w, r)
	if !ok {
		return
	}
	pa, err := c.o.Store.ConsumePendingAction(r.Context(), chi.URLParam(r, "id"))
	if err != nil || pa.UserID != a.UserID || c.o.Now().After(pa.ExpiresAt) || pa.Method != http.MethodPost || !strings.HasPrefix(pa.Path, Path+"/") {
		c.pages.Error(w, r, http.StatusConflict, "change_expired", "The change you started has expired or was already made. Nothing was saved; make it again.")
		return
	}
	if err := c.h.Fresh(a); err != nil {
		// Without a fresh second factor the replay would only ask again.
		c.pages.Error(w, r, http.StatusForbidden, mfa.CodeStepUpRequired, "This change needs a sign-in with your second factor. Nothing was saved.")
		return
	}
	req, err := http.NewRequestWithContext(context.WithValue(r.Context(), chi.RouteCtxKey, (*chi.Context)(nil)), http.MethodPost, pa.Path, strings.NewReader(pa.Form))
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range r.Cookies() {
		req.AddCookie(ck)
	}
	req.RemoteAddr, req.Header["User-Agent"] = r.RemoteAddr, r.Header["User-Agent"]
	c.router.ServeHTTP(w, req)
}

type httpErr = httpx.Error

// failPage shows a service error on a page: validation and conflicts as
// the message, unknown errors as a server error.
func (c *console) failPage(w http.ResponseWriter, r *http.Request, err error) {
	if ref, ok := mfa.AsRefusal(err); ok && ref.Code == mfa.CodeStepUpRequired && r.Method == http.MethodPost {
		c.stepUp(w, r)
		return
	}
	err = admin.HTTPError(err)
	var he *httpx.Error
	switch {
	case errors.As(err, &he):
		c.pages.Error(w, r, he.Status, he.Code, he.Message)
	case errors.Is(err, store.ErrNotFound):
		c.pages.Error(w, r, http.StatusNotFound, "not_found", "No such item.")
	default:
		c.pages.ServerError(w, r, err)
	}
}

// policyForm is the policy form's values and field errors.
type policyForm struct {
	Name, Description         string
	RequireMFA, AllowRemoval  bool
	StepUpMaxAge, GracePeriod int
	SetupWindowHours          int
	AllowTOTP, AllowPasskey   bool
	Errors                    map[string]string
}

func formOf(p admin.Policy) policyForm {
	return policyForm{Name: p.Name, Description: p.Description, RequireMFA: p.RequireMFA, AllowRemoval: p.AllowSelfServiceRemoval,
		StepUpMaxAge: p.StepUpMaxAge, GracePeriod: p.GracePeriod, SetupWindowHours: p.SetupWindow / 3600,
		AllowTOTP: slices.Contains(p.AllowedMethods, policy.MethodTOTP), AllowPasskey: slices.Contains(p.AllowedMethods, policy.MethodPasskey)}
}

// readPolicyForm turns the form into an API body; numbers that do not
// parse are field errors.
func readPolicyForm(r *http.Request) (admin.PolicyInput, policyForm) {
	f := policyForm{Name: strings.TrimSpace(r.PostFormValue("name")), Description: r.PostFormValue("description"),
		RequireMFA: r.PostFormValue("require_mfa") == "on", AllowRemoval: r.PostFormValue("allow_self_service_mfa_removal") == "on", Errors: map[string]string{}}
	num := func(field string, dst *int) {
		v, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue(field)))
		if err != nil {
			f.Errors[field] = "must be a whole number of seconds"
			return
		}
		*dst = v
	}
	num("step_up_max_age", &f.StepUpMaxAge)
	num("grace_period", &f.GracePeriod)
	f.SetupWindowHours = 24
	if v := strings.TrimSpace(r.PostFormValue("setup_window_hours")); v != "" {
		if n, err := strconv.Atoi(v); err != nil {
			f.Errors["setup_window"] = "must be a whole number of hours"
		} else {
			f.SetupWindowHours = n
		}
	}
	window := f.SetupWindowHours * 3600
	reenroll := "immediate"
	if f.GracePeriod > 0 {
		reenroll = "grace"
	}
	methods := []string{}
	for _, m := range r.PostForm["allowed_methods"] {
		switch m {
		case policy.MethodTOTP:
			f.AllowTOTP = true
		case policy.MethodPasskey:
			f.AllowPasskey = true
		}
		methods = append(methods, m) // the API refuses what is not a method
	}
	b := admin.PolicyInput{Name: &f.Name, Description: &f.Description, RequireMFA: &f.RequireMFA, AllowSelfServiceRemoval: &f.AllowRemoval,
		StepUpMaxAge: &f.StepUpMaxAge, Reenroll: &reenroll, GracePeriod: &f.GracePeriod, SetupWindow: &window, AllowedMethods: &methods}
	return b, f
}

// fieldErrors returns a validation error's fields.
func fieldErrors(err error) (map[string]string, bool) {
	var he *httpx.Error
	if errors.As(err, &he) && he.Fields != nil {
		return he.Fields, true
	}
	return nil, false
}

func (c *console) policyList(r *http.Request) ([]admin.Policy, error) {
	ps, err := c.o.Store.ListPolicies(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]admin.Policy, 0, len(ps))
	for _, p := range ps {
		v, err := c.h.ViewPolicy(r.Context(), c.o.Store, p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (c *console) renderPolicies(w http.ResponseWriter, r *http.Request, status int, form policyForm, errMsg string) {
	ps, err := c.policyList(r)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	c.pages.Render(w, r, status, "policies.html", map[string]any{"Policies": ps, "Form": form, "Error": errMsg, "Notice": r.URL.Query().Get("notice")})
}

func (c *console) policies(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderPolicies(w, r, http.StatusOK, policyForm{RequireMFA: true, StepUpMaxAge: 300, AllowTOTP: true, AllowPasskey: true}, "")
}

func (c *console) createPolicy(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	b, form := readPolicyForm(r)
	if len(form.Errors) > 0 {
		c.renderPolicies(w, r, http.StatusUnprocessableEntity, form, "Fix the highlighted fields.")
		return
	}
	p, err := c.h.CreatePolicy(r.Context(), a, b)
	if fields, isField := fieldErrors(err); isField {
		form.Errors = fields
		c.renderPolicies(w, r, http.StatusUnprocessableEntity, form, "Fix the highlighted fields.")
		return
	}
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) && he.Status == http.StatusConflict {
			c.renderPolicies(w, r, http.StatusConflict, form, he.Message)
			return
		}
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/policies/"+p.ID+"?notice=created", http.StatusSeeOther)
}

func (c *console) renderPolicy(w http.ResponseWriter, r *http.Request, status int, id string, form *policyForm, preview, errMsg string) {
	ctx := r.Context()
	sp, err := c.o.Store.GetPolicy(ctx, id)
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	p, err := c.h.ViewPolicy(ctx, c.o.Store, sp)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	gs, err := c.o.Store.ListGroups(ctx)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	f := formOf(p)
	if form != nil {
		f = *form
	}
	notice := map[string]string{"created": "Policy created.", "saved": "Policy saved.", "assigned": "Policy assigned."}[r.URL.Query().Get("notice")]
	c.pages.Render(w, r, status, "policy.html", map[string]any{"Policy": p, "Form": f, "Groups": gs, "Preview": preview, "Error": errMsg, "Notice": notice})
}

func (c *console) policy(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderPolicy(w, r, http.StatusOK, chi.URLParam(r, "id"), nil, "", "")
}

// savePolicy previews (nothing saved) or saves, after a step-up.
func (c *console) savePolicy(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	b, form := readPolicyForm(r)
	if len(form.Errors) > 0 {
		c.renderPolicy(w, r, http.StatusUnprocessableEntity, id, &form, "", "Fix the highlighted fields.")
		return
	}
	if r.PostFormValue("action") == "preview" {
		pv, err := c.h.PreviewPolicy(r.Context(), id, b)
		if fields, isField := fieldErrors(err); isField {
			form.Errors = fields
			c.renderPolicy(w, r, http.StatusUnprocessableEntity, id, &form, "", "Fix the highlighted fields.")
			return
		}
		if err != nil {
			c.failPage(w, r, err)
			return
		}
		c.renderPolicy(w, r, http.StatusOK, id, &form, pv.Summary, "")
		return
	}
	v, err := strconv.Atoi(r.PostFormValue("version"))
	if err != nil {
		c.renderPolicy(w, r, http.StatusUnprocessableEntity, id, &form, "", "The form is missing the policy version; reload the page.")
		return
	}
	b.Version = &v
	_, err = c.h.UpdatePolicy(r.Context(), a, id, b)
	if fields, isField := fieldErrors(err); isField {
		form.Errors = fields
		c.renderPolicy(w, r, http.StatusUnprocessableEntity, id, &form, "", "Fix the highlighted fields.")
		return
	}
	var he *httpx.Error
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		c.renderPolicy(w, r, http.StatusConflict, id, &form, "", he.Message)
		return
	}
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/policies/"+id+"?notice=saved", http.StatusSeeOther)
}

func (c *console) assign(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if err := c.h.AssignPolicy(r.Context(), a, r.PostFormValue("group_id"), id); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/policies/"+id+"?notice=assigned", http.StatusSeeOther)
}

func (c *console) users(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	q := r.URL.Query()
	var us []store.User
	var err error
	next := ""
	if group := q.Get("group"); group != "" {
		// Members of one group, filtered by the search text.
		g, gerr := c.o.Store.GetGroupByName(r.Context(), group)
		if gerr == nil {
			var ms []store.User
			ms, err = c.o.Store.GroupMembers(r.Context(), g.ID)
			needle := strings.ToLower(q.Get("q"))
			for _, m := range ms {
				if strings.Contains(strings.ToLower(m.Username+" "+m.Email+" "+m.DisplayName), needle) {
					us = append(us, m)
				}
			}
		} else if !errors.Is(gerr, store.ErrNotFound) {
			err = gerr
		}
	} else {
		us, err = c.o.Store.SearchUsers(r.Context(), q.Get("q"), q.Get("after"), 51)
		if len(us) == 51 {
			us, next = us[:50], us[49].Username
		}
	}
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	views := make([]admin.User, len(us))
	for i, u := range us {
		views[i] = admin.ViewUser(u)
	}
	c.pages.Render(w, r, http.StatusOK, "users.html", map[string]any{"Users": views, "Query": q.Get("q"), "Group": q.Get("group"), "Next": next})
}

func (c *console) renderUser(w http.ResponseWriter, r *http.Request, page, notice string) {
	c.renderUserWith(w, r, page, map[string]any{"Notice": notice})
}

func (c *console) renderUserWith(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	ctx := r.Context()
	d, err := c.h.UserDetail(ctx, chi.URLParam(r, "id"))
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	evs, err := c.o.Store.ListAuditEvents(ctx, store.AuditFilter{SubjectID: d.ID, Limit: 1000})
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	if len(evs) > 20 {
		evs = evs[len(evs)-20:]
	}
	data["User"], data["Events"] = d, evs
	c.pages.Render(w, r, http.StatusOK, page, data)
}

func (c *console) user(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.admin(w, r)
	if !ok {
		return
	}
	if err := c.h.Member(r.Context(), a, chi.URLParam(r, "id")); err != nil {
		c.failPage(w, r, err)
		return
	}
	c.renderUser(w, r, "user.html", map[string]string{"removed": "Two-step verification removed.", "disabled": "User disabled; their sessions and tokens were revoked."}[r.URL.Query().Get("notice")])
}

// removeMFA asks for confirmation, then a step-up, then removes.
func (c *console) removeMFA(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if r.PostFormValue("confirm") != "yes" {
		c.renderUser(w, r, "confirm_remove.html", "")
		return
	}
	if err := c.h.RemoveUserMFA(r.Context(), a, id); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/users/"+id+"?notice=removed", http.StatusSeeOther)
}

// removeMethod removes one of a user's methods after a confirmation and a
// step-up (the last one removes their 2SV, and the dialog says so).
func (c *console) removeMethod(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id, method := chi.URLParam(r, "id"), chi.URLParam(r, "method")
	if r.PostFormValue("confirm") != "yes" {
		c.renderUserWith(w, r, "confirm_remove_method.html", map[string]any{"Method": method})
		return
	}
	if err := c.h.RemoveUserMethod(r.Context(), a, id, method); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/users/"+id+"?notice=removed", http.StatusSeeOther)
}

func (c *console) resets(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.admin(w, r)
	if !ok {
		return
	}
	rs, err := c.o.Store.ListResetRequests(r.Context(), store.ResetOpen)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	out := make([]admin.ResetRequest, 0, len(rs))
	reasons, groups := map[string]string{}, map[string]string{}
	for _, rr := range rs {
		if err := c.h.Member(r.Context(), a, rr.UserID); err != nil {
			if _, refused := mfa.AsRefusal(err); refused {
				continue // a group admin sees their members' requests only
			}
			c.pages.ServerError(w, r, err)
			return
		}
		d, err := c.h.UserDetail(r.Context(), rr.UserID)
		if err != nil {
			c.pages.ServerError(w, r, err)
			return
		}
		out = append(out, admin.ResetRequest{ID: rr.ID, User: d.User, Status: rr.Status, Message: rr.Message, CreatedAt: rr.CreatedAt})
		reasons[rr.ID], groups[rr.ID] = d.Effective.Reason, strings.Join(d.Groups, ", ")
	}
	notice := map[string]string{"approve": "Approved: the user's 2SV was removed.", "deny": "Denied."}[r.URL.Query().Get("notice")]
	c.pages.Render(w, r, http.StatusOK, "resets.html", map[string]any{"Requests": out, "Reasons": reasons, "Groups": groups, "Notice": notice})
}

func (c *console) decide(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	decision := chi.URLParam(r, "decision")
	if decision != "approve" && decision != "deny" {
		c.pages.Error(w, r, http.StatusNotFound, "not_found", "No such action.")
		return
	}
	if err := c.h.DecideReset(r.Context(), a, chi.URLParam(r, "id"), decision == "approve", strings.TrimSpace(r.PostFormValue("reason"))); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/resets?notice="+decision, http.StatusSeeOther)
}

type verifyView struct {
	OK       bool
	Checked  int
	BrokenID int64
	Reason   string
}

func (c *console) audit(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	f, err := admin.AuditFilter(r)
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	f.Limit = 1000
	evs, err := c.o.Store.ListAuditEvents(r.Context(), f)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	// Newest first on screen.
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	if len(evs) > 100 {
		evs = evs[:100]
	}
	n, broken, err := audit.Verify(r.Context(), c.o.Store)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	v := verifyView{OK: broken == nil, Checked: n}
	if broken != nil {
		v.BrokenID, v.Reason = broken.EventID, broken.Reason
	}
	tree, err := audit.VerifyTree(r.Context(), c.o.Store, c.o.Ledger, nil)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	c.pages.Render(w, r, http.StatusOK, "audit.html", map[string]any{"Events": evs, "Filter": f, "Verify": v, "Tree": tree, "Names": c.names(r, evs),
		"Since": r.URL.Query().Get("since"), "Until": r.URL.Query().Get("until")})
}

// names maps the user ids of events' actors and subjects to "Display
// name (username)", so people read names, not ids.
func (c *console) names(r *http.Request, evs []store.AuditEvent) map[string]string {
	out := map[string]string{}
	for _, e := range evs {
		for _, id := range []string{e.ActorID, e.SubjectID} {
			if _, done := out[id]; done || id == "" {
				continue
			}
			out[id] = ""
			if u, err := c.o.Store.GetUser(r.Context(), id); err == nil {
				out[id] = u.Username
				if u.DisplayName != "" {
					out[id] = u.DisplayName + " (" + u.Username + ")"
				}
			}
		}
	}
	return out
}

// export streams the whole log as JSON Lines, as GET /admin/audit/export.
func (c *console) export(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="latchkey-audit.jsonl"`)
	enc := json.NewEncoder(w)
	f := store.AuditFilter{Limit: 1000}
	for {
		evs, err := c.o.Store.ListAuditEvents(r.Context(), f)
		if err != nil {
			return
		}
		for _, e := range evs {
			_ = enc.Encode(admin.ViewEvent(e))
		}
		if len(evs) < f.Limit {
			return
		}
		f.AfterID = evs[len(evs)-1].ID
	}
}
