package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

func (h *Handler) getUserMFA(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := h.Member(ctx, actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
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

func (h *Handler) removeUserMFA(w http.ResponseWriter, r *http.Request) {
	if err := h.RemoveUserMFA(r.Context(), actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RemoveUserMFA removes a user's 2SV as an admin, through the lifecycle
// service (fresh step-up, never one's own, audited with the others).
func (h *Handler) RemoveUserMFA(ctx context.Context, a Actor, userID string) error {
	return h.o.MFA.RemoveByAdmin(ctx, a.mfaActor(), a.Proof, userID, "")
}

func (h *Handler) removeUserMethod(w http.ResponseWriter, r *http.Request) {
	if err := noBody(r); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.RemoveUserMethod(r.Context(), actorOf(r), chi.URLParam(r, "id"), chi.URLParam(r, "method")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RemoveUserMethod removes one of a user's methods ("totp" or a passkey
// id) as an admin; the last one removes the user's 2SV.
func (h *Handler) RemoveUserMethod(ctx context.Context, a Actor, userID, methodID string) error {
	return h.o.MFA.RemoveMethodByAdmin(ctx, a.mfaActor(), a.Proof, userID, methodID, "")
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
	a := actorOf(r)
	for _, rr := range rs {
		if err := h.Member(r.Context(), a, rr.UserID); err != nil {
			if _, refused := mfa.AsRefusal(err); refused {
				continue // a group admin sees their members' requests only
			}
			h.fail(w, r, err)
			return
		}
		u, err := h.o.Store.GetUser(r.Context(), rr.UserID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		v := ResetRequest{ID: rr.ID, User: ViewUser(u), Status: rr.Status, Message: rr.Message, CreatedAt: rr.CreatedAt, DecidedBy: rr.DecidedBy}
		if !rr.DecidedAt.IsZero() {
			t := rr.DecidedAt
			v.DecidedAt = &t
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, ResetRequestList{ResetRequests: out})
}

func (h *Handler) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	var b DecisionInput
	if r.ContentLength != 0 {
		if err := decode(r, &b); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if err := h.DecideReset(r.Context(), actorOf(r), chi.URLParam(r, "id"), approve, b.Reason); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DecideReset closes an open request; approving removes the user's 2SV
// in the same transaction (the lifecycle service's admin rules apply).
func (h *Handler) DecideReset(ctx context.Context, a Actor, id string, approve bool, reason string) error {
	return h.o.MFA.DecideReset(ctx, a.mfaActor(), a.Proof, id, approve, reason)
}

func (h *Handler) approveReset(w http.ResponseWriter, r *http.Request) { h.decide(w, r, true) }
func (h *Handler) denyReset(w http.ResponseWriter, r *http.Request)    { h.decide(w, r, false) }
