package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/store"
)

func (h *Handler) getUserMFA(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := h.o.Store.GetUser(ctx, chi.URLParam(r, "id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	m, err := h.mfaOf(ctx, h.o.Store, u.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// removeAs removes a user's 2SV as an admin, with the policy in force and
// the reason recorded, in one transaction with the audit event.
func (h *Handler) removeAs(ctx context.Context, q store.Queries, a actor, userID string, typ audit.Type, details map[string]any) error {
	if _, err := q.GetUser(ctx, userID); err != nil {
		return err
	}
	if err := q.Lock(ctx, "mfa:"+userID); err != nil {
		return err
	}
	eff, err := authn.EffectivePolicy(ctx, q, userID)
	if err != nil {
		return err
	}
	removed, revoked, err := h.o.Authn.RemoveMFA(ctx, q, userID)
	if err != nil {
		return err
	}
	if !removed {
		return conflict("mfa_not_active", "The user has no active authenticator.")
	}
	e := a.event(typ, userID, details)
	e.Details["by"] = "admin"
	e.Details["tokens_revoked"] = revoked
	if len(eff.Applied) > 0 {
		e.PolicyID, e.PolicyVersion = eff.Applied[0].PolicyID, eff.Applied[0].PolicyVersion
	}
	return h.appendAudit(ctx, q, e)
}

func (h *Handler) removeUserMFA(w http.ResponseWriter, r *http.Request) {
	if err := h.RemoveUserMFA(r.Context(), actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RemoveUserMFA removes a user's 2SV as an admin.
func (h *Handler) RemoveUserMFA(ctx context.Context, a actor, userID string) error {
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		return h.removeAs(ctx, q, a, userID, audit.MFARemoved, map[string]any{})
	})
}

// ResetRequest is the admin view of a reset request.
type ResetRequest struct {
	ID        string     `json:"id"`
	User      User       `json:"user"`
	Status    string     `json:"status"`
	Message   string     `json:"message"`
	CreatedAt time.Time  `json:"created_at"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	DecidedBy string     `json:"decided_by,omitempty"`
}

func (h *Handler) listResetRequests(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if status == "" {
		status = store.ResetOpen
	}
	if status != store.ResetOpen && status != store.ResetApproved && status != store.ResetDenied {
		h.fail(w, r, invalid(map[string]string{"status": "open, approved or denied"}))
		return
	}
	rs, err := h.o.Store.ListResetRequests(r.Context(), status)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]ResetRequest, 0, len(rs))
	for _, rr := range rs {
		u, err := h.o.Store.GetUser(r.Context(), rr.UserID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		v := ResetRequest{ID: rr.ID, User: viewUser(u), Status: rr.Status, Message: rr.Message, CreatedAt: rr.CreatedAt, DecidedBy: rr.DecidedBy}
		if !rr.DecidedAt.IsZero() {
			t := rr.DecidedAt
			v.DecidedAt = &t
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"reset_requests": out})
}

func (h *Handler) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	if err := h.DecideReset(r.Context(), actorOf(r), chi.URLParam(r, "id"), approve); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DecideReset closes an open request; approving removes the user's 2SV in
// the same transaction.
func (h *Handler) DecideReset(ctx context.Context, a actor, id string, approve bool) error {
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		rr, err := q.GetResetRequest(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("reset request")
		} else if err != nil {
			return err
		}
		status, typ := store.ResetDenied, audit.MFAResetDenied
		if approve {
			status, typ = store.ResetApproved, audit.MFAResetApproved
		}
		if err := q.DecideResetRequest(ctx, id, status, a.id(), h.o.Now()); errors.Is(err, store.ErrNotFound) {
			return conflict("already_decided", "The request was already decided.")
		} else if err != nil {
			return err
		}
		if approve {
			return h.removeAs(ctx, q, a, rr.UserID, typ, map[string]any{"reset_request": rr.ID})
		}
		return h.appendAudit(ctx, q, a.event(typ, rr.UserID, map[string]any{"reset_request": rr.ID}))
	})
}

func (h *Handler) approveReset(w http.ResponseWriter, r *http.Request) { h.decide(w, r, true) }
func (h *Handler) denyReset(w http.ResponseWriter, r *http.Request)    { h.decide(w, r, false) }
