package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/store"
)

// Group is the admin view of a group.
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PolicyID    string    `json:"policy_id,omitempty"`
	Members     []User    `json:"members,omitempty"`
	Admins      []User    `json:"admin_contacts,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) {
	gs, err := h.o.Store.ListGroups(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]Group, 0, len(gs))
	for _, g := range gs {
		pid, err := h.o.Store.GroupPolicyID(r.Context(), g.ID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out = append(out, Group{ID: g.ID, Name: g.Name, Description: g.Description, PolicyID: pid, CreatedAt: g.CreatedAt})
	}
	writeJSON(w, http.StatusOK, GroupList{Groups: out})
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) {
	var b GroupInput
	if err := decode(r, &b); err != nil {
		h.fail(w, r, err)
		return
	}
	g, err := h.CreateGroup(r.Context(), actorOf(r), b.Name, b.Description)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

// CreateGroup creates a group, with its audit event.
func (h *Handler) CreateGroup(ctx context.Context, a Actor, name, description string) (Group, error) {
	fields := map[string]string{}
	if n, err := authn.DisplayText(name, 100); err != nil || n == "" {
		fields["name"] = "required, at most 100 characters, no control, invisible or direction-changing characters"
	} else {
		name = n
	}
	if len(description) > 1000 {
		fields["description"] = "at most 1000 characters"
	}
	if len(fields) > 0 {
		return Group{}, invalid(fields)
	}
	g := store.Group{ID: authn.NewID("group"), Name: name, Description: description, CreatedAt: h.o.Now().UTC()}
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateGroup(ctx, g); errors.Is(err, store.ErrAlreadyExists) {
			return conflict("name_taken", "A group with that name exists.")
		} else if err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(audit.GroupCreated, "", map[string]any{"group_id": g.ID, "name": g.Name}))
	})
	return Group{ID: g.ID, Name: g.Name, Description: g.Description, CreatedAt: g.CreatedAt}, err
}

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g, err := h.o.Store.GetGroup(ctx, chi.URLParam(r, "id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v := Group{ID: g.ID, Name: g.Name, Description: g.Description, CreatedAt: g.CreatedAt, Members: []User{}, Admins: []User{}}
	if v.PolicyID, err = h.o.Store.GroupPolicyID(ctx, g.ID); err != nil {
		h.fail(w, r, err)
		return
	}
	ms, err := h.o.Store.GroupMembers(ctx, g.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, m := range ms {
		v.Members = append(v.Members, ViewUser(m))
	}
	as, err := h.o.Store.GroupAdmins(ctx, g.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, m := range as {
		v.Admins = append(v.Admins, ViewUser(m))
	}
	writeJSON(w, http.StatusOK, v)
}

// UserRef names a user to add to a group, as a member or an admin contact.
type UserRef struct {
	UserID string `json:"user_id"`
}

// membership runs one group/user change with its audit event.
func (h *Handler) membership(w http.ResponseWriter, r *http.Request, userID string, typ audit.Type) {
	if err := h.ChangeMembership(r.Context(), actorOf(r), chi.URLParam(r, "id"), userID, typ); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// membershipChange applies the change a membership event records.
func membershipChange(ctx context.Context, q store.Queries, typ audit.Type, g, u string) error {
	switch typ {
	case audit.GroupMemberAdded:
		return q.AddMember(ctx, g, u)
	case audit.GroupMemberRemoved:
		return q.RemoveMember(ctx, g, u)
	case audit.GroupAdminAdded:
		return q.AddGroupAdmin(ctx, g, u)
	case audit.GroupAdminRemoved:
		return q.RemoveGroupAdmin(ctx, g, u)
	}
	return fmt.Errorf("admin: no membership change %s", typ)
}

// ChangeMembership applies one member or admin-contact change (typ names
// it) with its audit event.
func (h *Handler) ChangeMembership(ctx context.Context, a Actor, groupID, userID string, typ audit.Type) error {
	if typ == audit.GroupAdminAdded {
		// Making someone an admin of a group is a grant of power.
		if err := h.Fresh(a); err != nil {
			return err
		}
	}
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetGroup(ctx, groupID); errors.Is(err, store.ErrNotFound) {
			return notFound("group")
		} else if err != nil {
			return err
		}
		if _, err := q.GetUser(ctx, userID); errors.Is(err, store.ErrNotFound) {
			return notFound("user")
		} else if err != nil {
			return err
		}
		if err := membershipChange(ctx, q, typ, groupID, userID); errors.Is(err, store.ErrAlreadyExists) {
			return conflict("already_member", "The user is already in that role for this group.")
		} else if errors.Is(err, store.ErrNotFound) {
			return notFound("membership")
		} else if err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(typ, userID, map[string]any{"group_id": groupID}))
	})
}

func (h *Handler) readUserRef(w http.ResponseWriter, r *http.Request) (string, bool) {
	var b UserRef
	if err := decode(r, &b); err != nil {
		h.fail(w, r, err)
		return "", false
	}
	if b.UserID == "" {
		h.fail(w, r, invalid(map[string]string{"user_id": "required"}))
		return "", false
	}
	return b.UserID, true
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request) {
	if id, ok := h.readUserRef(w, r); ok {
		h.membership(w, r, id, audit.GroupMemberAdded)
	}
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request) {
	h.membership(w, r, chi.URLParam(r, "userID"), audit.GroupMemberRemoved)
}

func (h *Handler) addGroupAdmin(w http.ResponseWriter, r *http.Request) {
	if id, ok := h.readUserRef(w, r); ok {
		h.membership(w, r, id, audit.GroupAdminAdded)
	}
}

func (h *Handler) removeGroupAdmin(w http.ResponseWriter, r *http.Request) {
	h.membership(w, r, chi.URLParam(r, "userID"), audit.GroupAdminRemoved)
}

func (h *Handler) assignPolicy(w http.ResponseWriter, r *http.Request) {
	var b PolicyRef
	if err := decode(r, &b); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.AssignPolicy(r.Context(), actorOf(r), chi.URLParam(r, "id"), b.PolicyID); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// AssignPolicy makes policyID the group's policy, with its audit event.
func (h *Handler) AssignPolicy(ctx context.Context, a Actor, groupID, policyID string) error {
	if err := h.Fresh(a); err != nil {
		return err
	}
	if policyID == "" {
		return invalid(map[string]string{"policy_id": "required"})
	}
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetGroup(ctx, groupID); errors.Is(err, store.ErrNotFound) {
			return notFound("group")
		} else if err != nil {
			return err
		}
		p, err := q.GetPolicy(ctx, policyID)
		if errors.Is(err, store.ErrNotFound) {
			return invalid(map[string]string{"policy_id": "no such policy"})
		} else if err != nil {
			return err
		}
		if err := q.AssignPolicy(ctx, groupID, p.ID); err != nil {
			return err
		}
		e := a.event(audit.PolicyAssigned, "", map[string]any{"group_id": groupID})
		e.PolicyID, e.PolicyVersion = p.ID, p.Version
		return h.appendAudit(ctx, q, e)
	})
}

func (h *Handler) unassignPolicy(w http.ResponseWriter, r *http.Request) {
	if err := h.UnassignPolicy(r.Context(), actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UnassignPolicy removes the group's policy, with its audit event.
func (h *Handler) UnassignPolicy(ctx context.Context, a Actor, groupID string) error {
	if err := h.Fresh(a); err != nil {
		return err
	}
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		pid, err := q.GroupPolicyID(ctx, groupID)
		if err != nil {
			return err
		}
		if pid == "" {
			return notFound("policy assignment")
		}
		if err := q.UnassignPolicy(ctx, groupID); err != nil {
			return err
		}
		e := a.event(audit.PolicyUnassigned, "", map[string]any{"group_id": groupID})
		e.PolicyID = pid
		return h.appendAudit(ctx, q, e)
	})
}
