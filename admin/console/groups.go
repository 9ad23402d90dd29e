package console

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/store"
)

func (c *console) mountGroups(r chi.Router) {
	r.Get(Path+"/groups", c.groups)
	r.Post(Path+"/groups", c.createGroup)
	r.Get(Path+"/groups/{id}", c.group)
	r.Post(Path+"/groups/{id}/policy", c.groupPolicy)
	r.Post(Path+"/groups/{id}/members", c.addMembership(audit.GroupMemberAdded))
	r.Post(Path+"/groups/{id}/admins", c.addMembership(audit.GroupAdminAdded))
	r.Post(Path+"/groups/{id}/members/{userID}/remove", c.removeMembership(audit.GroupMemberRemoved))
	r.Post(Path+"/groups/{id}/admins/{userID}/remove", c.removeMembership(audit.GroupAdminRemoved))
	r.Get(Path+"/keys", c.keys)
	r.Post(Path+"/keys/rotate", c.rotate)
}

func (c *console) renderGroups(w http.ResponseWriter, r *http.Request, status int, name, errMsg string) {
	ctx := r.Context()
	gs, err := c.o.Store.ListGroups(ctx)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	ps, err := c.o.Store.ListPolicies(ctx)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	names := map[string]string{"": "(default)"}
	for _, p := range ps {
		names[p.ID] = p.Name
	}
	views := make([]admin.Group, 0, len(gs))
	for _, g := range gs {
		pid, err := c.o.Store.GroupPolicyID(ctx, g.ID)
		if err != nil {
			c.pages.ServerError(w, r, err)
			return
		}
		views = append(views, admin.Group{ID: g.ID, Name: g.Name, Description: g.Description, PolicyID: pid})
	}
	c.pages.Render(w, r, status, "groups.html", map[string]any{"Groups": views, "PolicyNames": names, "Name": name, "Error": errMsg})
}

func (c *console) groups(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderGroups(w, r, http.StatusOK, "", "")
}

func (c *console) createGroup(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	g, err := c.h.CreateGroup(r.Context(), a, r.PostFormValue("name"), r.PostFormValue("description"))
	if err != nil {
		var he *httpErr
		switch {
		case errors.As(err, &he) && he.Fields != nil:
			c.renderGroups(w, r, he.Status, r.PostFormValue("name"), "Name: "+he.Fields["name"])
		case errors.As(err, &he) && he.Status < 500:
			c.renderGroups(w, r, he.Status, r.PostFormValue("name"), he.Message)
		default:
			c.pages.ServerError(w, r, err)
		}
		return
	}
	http.Redirect(w, r, Path+"/groups/"+g.ID+"?notice=created", http.StatusSeeOther)
}

func (c *console) renderGroup(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	g, err := c.o.Store.GetGroup(ctx, id)
	if err != nil {
		c.failPage(w, r, err)
		return
	}
	v := admin.Group{ID: g.ID, Name: g.Name, Description: g.Description}
	if v.PolicyID, err = c.o.Store.GroupPolicyID(ctx, g.ID); err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	for _, load := range []struct {
		dst *[]admin.User
		get func() ([]store.User, error)
	}{{&v.Members, func() ([]store.User, error) { return c.o.Store.GroupMembers(ctx, g.ID) }},
		{&v.Admins, func() ([]store.User, error) { return c.o.Store.GroupAdmins(ctx, g.ID) }}} {
		us, err := load.get()
		if err != nil {
			c.pages.ServerError(w, r, err)
			return
		}
		for _, u := range us {
			*load.dst = append(*load.dst, admin.ViewUser(u))
		}
	}
	ps, err := c.o.Store.ListPolicies(ctx)
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	notice := map[string]string{"created": "Group created.", "changed": "Saved."}[r.URL.Query().Get("notice")]
	c.pages.Render(w, r, status, "group.html", map[string]any{"Group": v, "Policies": ps, "Notice": notice, "Error": errMsg})
}

func (c *console) group(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	c.renderGroup(w, r, http.StatusOK, "")
}

// groupPolicy assigns or unassigns the group's policy, after a step-up.
func (c *console) groupPolicy(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	var err error
	if pid := r.PostFormValue("policy_id"); pid == "" {
		err = c.h.UnassignPolicy(r.Context(), a, id)
	} else {
		err = c.h.AssignPolicy(r.Context(), a, id, pid)
	}
	c.afterGroupChange(w, r, err)
}

func (c *console) afterGroupChange(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpErr
	switch {
	case err == nil:
		http.Redirect(w, r, Path+"/groups/"+chi.URLParam(r, "id")+"?notice=changed", http.StatusSeeOther)
	case errors.As(err, &he) && he.Status < 500:
		c.renderGroup(w, r, he.Status, he.Message)
	default:
		c.failPage(w, r, err)
	}
}

func (c *console) addMembership(typ audit.Type) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, _, ok := c.post(w, r)
		if !ok {
			return
		}
		u, err := c.o.Store.GetUserByUsername(r.Context(), r.PostFormValue("username"))
		if errors.Is(err, store.ErrNotFound) {
			c.renderGroup(w, r, http.StatusUnprocessableEntity, "No user with that username.")
			return
		} else if err != nil {
			c.pages.ServerError(w, r, err)
			return
		}
		c.afterGroupChange(w, r, c.h.ChangeMembership(r.Context(), a, chi.URLParam(r, "id"), u.ID, typ))
	}
}

func (c *console) removeMembership(typ audit.Type) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, _, ok := c.post(w, r)
		if !ok {
			return
		}
		c.afterGroupChange(w, r, c.h.ChangeMembership(r.Context(), a, chi.URLParam(r, "id"), chi.URLParam(r, "userID"), typ))
	}
}

func (c *console) keys(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.admin(w, r); !ok {
		return
	}
	ks, err := c.o.Keys.ListKeys(r.Context())
	if err != nil {
		c.pages.ServerError(w, r, err)
		return
	}
	c.pages.Render(w, r, http.StatusOK, "keys.html", map[string]any{"Keys": ks,
		"Notice": map[string]string{"rotated": "A new signing key is published; it starts signing once every replica serves it."}[r.URL.Query().Get("notice")]})
}

// rotate rotates signing keys after a step-up.
func (c *console) rotate(w http.ResponseWriter, r *http.Request) {
	a, _, ok := c.post(w, r)
	if !ok {
		return
	}
	if _, err := c.h.RotateKey(r.Context(), a); err != nil {
		c.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"/keys?notice=rotated", http.StatusSeeOther)
}
