package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/store"
)

func (c *console) mountMore(r chi.Router) {
	r.Get(Path+"/clients", c.clients)
	r.Post(Path+"/clients", c.createClient)
	r.Post(Path+"/clients/{id}/delete", c.deleteClient)
	r.Get(Path+"/clients/{id}", c.client)
	r.Post(Path+"/clients/{id}", c.saveClient)
	r.Post(Path+"/users/{id}/disable", c.disable)
	r.Get(Path+"/audit/{eventID}", c.event)
	r.Post(Path+"/users/{id}/reset-link", c.resetLink)
}

type clientForm struct{ Name, Redirect string }

func (c *console) renderClients(w http.ResponseWriter, r *http.Request, status int, data map[string]any) {
	cs, err := c.o.Store.ListClients(r.Context())
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	views := make([]admin.Client, 0, len(cs))
	for _, cl := range cs {
		views = append(views, admin.ViewClient(cl))
	}
	data["Clients"] = views
	if _, ok := data["Form"]; !ok {
		data["Form"] = clientForm{}
	}
	c.pages.Render(w, r, status, "clients.html", data)
}

func (c *console) clients(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderClients(w, r, http.StatusOK, map[string]any{"Notice": map[string]string{"deleted": "Application deleted."}[r.URL.Query().Get("notice")]})
}

// createClient shows the new secret once, on the page that answers the
// post (never in a URL or a redirect).
func (c *console) createClient(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	f := clientForm{Name: r.PostFormValue("name"), Redirect: strings.TrimSpace(r.PostFormValue("redirect_uri"))}
	b := admin.ClientInput{Name: f.Name, Public: r.PostFormValue("public") == "on", FirstParty: r.PostFormValue("first_party") == "on",
		PKCEOptional: r.PostFormValue("pkce_optional") == "on"}
	if r.PostFormValue("jwt_access_tokens") == "on" {
		b.AccessTokenFormat = store.AccessTokensJWT
	}
	if f.Redirect != "" {
		b.RedirectURIs = []string{f.Redirect}
	}
	v, err := c.h.CreateClient(r.Context(), a, b)
	if fields, isField := fieldErrors(err); isField {
		c.renderClients(w, r, http.StatusUnprocessableEntity, map[string]any{"Form": f, "Errors": fields, "Error": "Fix the highlighted fields."})
		return
	}
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	c.renderClients(w, r, http.StatusCreated, map[string]any{"Secret": v.Secret, "Created": v.ID, "Notice": "Application " + v.ID + " created."})
}

func (c *console) deleteClient(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if r.PostFormValue("confirm") != "yes" {
		c.pages.Render(w, r, http.StatusOK, "confirm_delete_client.html", map[string]any{"ID": id})
		return
	}
	if err := c.h.DeleteClient(r.Context(), a, id); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/clients?notice=deleted", http.StatusSeeOther)
}

func (c *console) disable(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if r.PostFormValue("confirm") != "yes" {
		c.renderUser(w, r, "confirm_disable.html", "")
		return
	}
	yes := true
	if _, err := c.h.UpdateUser(r.Context(), a, id, admin.UserUpdate{Disabled: &yes}); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/users/"+id+"?notice=disabled", http.StatusSeeOther)
}

func (c *console) event(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	id, err := strconv.ParseInt(chi.URLParam(r, "eventID"), 10, 64)
	if err != nil || id < 1 {
		c.pages.Error(w, r, http.StatusNotFound, "not_found", "No such event.")
		return
	}
	evs, err := c.o.Store.ListAuditEvents(r.Context(), store.AuditFilter{AfterID: id - 1, Limit: 1})
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	if len(evs) == 0 || evs[0].ID != id {
		c.failPage(w, r, store.ErrNotFound)
		return
	}
	c.pages.Render(w, r, http.StatusOK, "event.html", map[string]any{"Event": evs[0]})
}

func (c *console) renderClient(w http.ResponseWriter, r *http.Request, status int, redirects string, errMsg string) {
	cl, err := c.o.Store.GetClient(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	v := admin.ViewClient(cl)
	if redirects == "" && errMsg == "" {
		redirects = strings.Join(v.RedirectURIs, "\n")
	}
	notice := map[string]string{"saved": "Saved."}[r.URL.Query().Get("notice")]
	c.pages.Render(w, r, status, "client.html", map[string]any{"Client": v, "Redirects": redirects, "Error": errMsg, "Notice": notice})
}

func (c *console) client(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderClient(w, r, http.StatusOK, "", "")
}

func (c *console) saveClient(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	text := r.PostFormValue("redirect_uris")
	var uris []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			uris = append(uris, l)
		}
	}
	_, err := c.h.UpdateClient(r.Context(), a, chi.URLParam(r, "id"), admin.ClientRedirects{RedirectURIs: &uris})
	if fields, isField := fieldErrors(err); isField {
		c.renderClient(w, r, http.StatusUnprocessableEntity, text, fields["redirect_uris"])
		return
	}
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/clients/"+chi.URLParam(r, "id")+"?notice=saved", http.StatusSeeOther)
}

// resetLink creates a single-use password reset link, after a step-up, and
// shows it once on the answering page.
func (c *console) resetLink(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	link, err := c.h.CreateResetLink(r.Context(), a, id)
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	c.renderUserWith(w, r, "user.html", map[string]any{"ResetLink": link,
		"Notice": "Password reset link created. Send it to the user over a channel you trust; it works once, for 24 hours."})
}
