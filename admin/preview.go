package admin

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// members loads every user a policy applies to, with all their
// assignments, for a preview. The default policy applies to users whose
// groups carry none. One query per user: fine for previews on thousands
// of users; a bulk query is the next step for more.
func (h *Handler) members(ctx context.Context, q store.Queries, p store.Policy) ([]policy.Member, error) {
	var ids []string
	seen := map[string]bool{}
	if p.IsDefault {
		after := ""
		for {
			us, err := q.ListUsers(ctx, after, 500)
			if err != nil {
				return nil, err
			}
			for _, u := range us {
				ids = append(ids, u.ID)
			}
			if len(us) < 500 {
				break
			}
			after = us[len(us)-1].Username
		}
	} else {
		gs, err := q.PolicyGroups(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			ms, err := q.GroupMembers(ctx, g.ID)
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				if !seen[m.ID] {
					seen[m.ID] = true
					ids = append(ids, m.ID)
				}
			}
		}
	}
	out := make([]policy.Member, 0, len(ids))
	for _, id := range ids {
		gps, err := q.UserGroupPolicies(ctx, id)
		if err != nil {
			return nil, err
		}
		m := policy.Member{UserID: id}
		for _, gp := range gps {
			m.Assignments = append(m.Assignments, policy.Assignment{Policy: authn.PolicyFromStore(gp.Policy), GroupID: gp.GroupID, GroupName: gp.GroupName})
		}
		if len(m.Assignments) == 0 {
			if !p.IsDefault {
				continue
			}
			m.Assignments = []policy.Assignment{{Policy: authn.PolicyFromStore(p)}}
		}
		out = append(out, m)
	}
	return out, nil
}

// PreviewResult is the answer to a policy preview.
type PreviewResult struct {
	Users                  int            `json:"users"`
	RemovalAllowed         int            `json:"removal_allowed"`
	RemovalRevoked         int            `json:"removal_revoked"`
	MFANowRequired         int            `json:"mfa_now_required"`
	MFANoLongerRequired    int            `json:"mfa_no_longer_required"`
	StepUpChanged          int            `json:"step_up_changed"`
	StayAdminOnlyBecauseOf map[string]int `json:"stay_admin_only_because_of"`
	Summary                string         `json:"summary"`
}

// PreviewPolicy computes, without saving, how applying b to the policy
// would change its members' effective policies.
func (h *Handler) PreviewPolicy(ctx context.Context, policyID string, b PolicyInput) (PreviewResult, error) {
	cur, err := h.o.Store.GetPolicy(ctx, policyID)
	if err != nil {
		return PreviewResult{}, err
	}
	proposed := authn.PolicyFromStore(cur)
	b.apply(&proposed)
	if err := proposed.Validate(); err != nil {
		return PreviewResult{}, validationError(err)
	}
	ms, err := h.members(ctx, h.o.Store, cur)
	if err != nil {
		return PreviewResult{}, err
	}
	p := policy.PreviewChange(ms, proposed)
	return PreviewResult{Users: p.Users, RemovalAllowed: p.RemovalAllowed, RemovalRevoked: p.RemovalRevoked, MFANowRequired: p.MFANowRequired,
		MFANoLongerRequired: p.MFANoLongerReqd, StepUpChanged: p.StepUpChanged, StayAdminOnlyBecauseOf: p.BlockedBy, Summary: p.Summary()}, nil
}

func (h *Handler) previewPolicy(w http.ResponseWriter, r *http.Request) {
	var b PolicyInput
	if err := decode(r, &b); err != nil {
		h.fail(w, r, err)
		return
	}
	if b.Version != nil {
		h.fail(w, r, invalid(map[string]string{"version": "not used by a preview"}))
		return
	}
	res, err := h.PreviewPolicy(r.Context(), chi.URLParam(r, "id"), b)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
