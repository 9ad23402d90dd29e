package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// PolicyFromStore converts a stored policy; a policy stored without
// allowed methods allows all of them.
func PolicyFromStore(p store.Policy) policy.Policy {
	return policy.Policy{ID: p.ID, Name: p.Name, Description: p.Description, RequireMFA: p.RequireMFA,
		AllowSelfServiceRemoval: p.AllowSelfServiceRemoval, StepUpMaxAge: p.StepUpMaxAge, Reenroll: p.Reenroll,
		GracePeriod: p.GracePeriod, SetupWindow: p.SetupWindow, AllowedMethods: policy.Policy{AllowedMethods: p.AllowedMethods}.Methods(), Version: p.Version, IsDefault: p.IsDefault, UpdatedAt: p.UpdatedAt}
}

// PolicyToStore converts a policy for storage.
func PolicyToStore(p policy.Policy) store.Policy {
	return store.Policy{ID: p.ID, Name: p.Name, Description: p.Description, RequireMFA: p.RequireMFA,
		AllowSelfServiceRemoval: p.AllowSelfServiceRemoval, StepUpMaxAge: p.StepUpMaxAge, Reenroll: p.Reenroll,
		GracePeriod: p.GracePeriod, SetupWindow: p.SetupWindow, AllowedMethods: p.AllowedMethods, Version: p.Version, IsDefault: p.IsDefault, UpdatedAt: p.UpdatedAt}
}

// EffectivePolicy evaluates the user's policy from the database, on q: pass
// the transaction that acts on the result, so the decision and the change
// see the same data.
func EffectivePolicy(ctx context.Context, q store.Queries, userID string) (policy.Effective, error) {
	gps, err := q.UserGroupPolicies(ctx, userID)
	if err != nil {
		return policy.Effective{}, fmt.Errorf("policies of %s: %w", userID, err)
	}
	as := make([]policy.Assignment, 0, len(gps))
	for _, gp := range gps {
		as = append(as, policy.Assignment{Policy: PolicyFromStore(gp.Policy), GroupID: gp.GroupID, GroupName: gp.GroupName})
	}
	if len(as) == 0 {
		d, err := q.DefaultPolicy(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// No default row: Evaluate falls back to the built-in defaults.
		case err != nil:
			return policy.Effective{}, err
		default:
			as = append(as, policy.Assignment{Policy: PolicyFromStore(d)})
		}
	}
	return policy.Evaluate(as), nil
}
