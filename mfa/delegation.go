package mfa

import (
	"context"
	"errors"
	"strings"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Refusal codes of delegated administration.
const (
	CodeNotYourMember = "not_your_member"
	CodeTargetIsAdmin = "target_is_admin"
	CodeStricterGroup = "stricter_group"
)

// MayAdminister reports on what basis a may act on target's 2SV ("global
// admin", "admin of Finance", "cli", "client robot"), or refuses: nobody
// acts on themselves; a group's admin contacts act only on members of
// their groups who are not admins themselves and not also in a stricter
// group they do not administer (most restrictive wins here too). Global
// admins, admin clients and the operator act on anyone else. Every admin
// path asks this, reads included.
func (s *Service) MayAdminister(ctx context.Context, a Actor, target string) (string, error) {
	return s.mayAdminister(ctx, s.o.Store, a, target)
}

func (s *Service) mayAdminister(ctx context.Context, q store.Queries, a Actor, target string) (string, error) {
	if a.UserID != "" && a.UserID == target {
		return "", &Refusal{Code: CodeSelfAction, Message: "You cannot act on your own two-step verification as an admin; another admin must."}
	}
	if a.UserID == "" {
		if a.Type == audit.ActorSystem {
			return "cli", nil
		}
		return "client " + a.ClientID, nil
	}
	if global, err := q.IsAdmin(ctx, a.UserID); err != nil || global {
		return "global admin", err
	}
	mine, err := q.AdministeredGroups(ctx, a.UserID)
	if err != nil {
		return "", err
	}
	isMine := map[string]string{}
	for _, g := range mine {
		isMine[g.ID] = g.Name
	}
	groups, err := q.UserGroups(ctx, target)
	if err != nil {
		return "", err
	}
	var names []string
	for _, g := range groups {
		if _, ok := isMine[g.ID]; ok {
			names = append(names, g.Name)
		}
	}
	if len(names) == 0 {
		return "", &Refusal{Code: CodeNotYourMember, Message: "This user is not a member of a group you administer."}
	}
	if admin, err := s.isAnyAdmin(ctx, q, target); err != nil || admin {
		if err == nil {
			err = &Refusal{Code: CodeTargetIsAdmin, Message: "This user is an admin; only a global admin can act on their two-step verification."}
		}
		return "", err
	}
	gps, err := q.UserGroupPolicies(ctx, target)
	if err != nil {
		return "", err
	}
	var own, others []policy.Assignment
	for _, gp := range gps {
		as := policy.Assignment{Policy: authn.PolicyFromStore(gp.Policy), GroupID: gp.GroupID, GroupName: gp.GroupName}
		if _, ok := isMine[gp.GroupID]; ok {
			own = append(own, as)
		} else {
			others = append(others, as)
		}
	}
	if len(own) == 0 {
		if d, err := q.DefaultPolicy(ctx); err == nil {
			own = append(own, policy.Assignment{Policy: authn.PolicyFromStore(d)})
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	if src, blocked := policy.StricterElsewhere(own, others); blocked {
		return "", &Refusal{Code: CodeStricterGroup, Message: "This user is also in group " + src.GroupName + ", whose policy " + src.PolicyName +
			" is stricter than yours; ask its admins or a global admin."}
	}
	return "admin of " + strings.Join(names, ", "), nil
}

func (s *Service) isAnyAdmin(ctx context.Context, q store.Queries, userID string) (bool, error) {
	if global, err := q.IsAdmin(ctx, userID); err != nil || global {
		return global, err
	}
	gs, err := q.AdministeredGroups(ctx, userID)
	return len(gs) > 0, err
}

// IsAnyAdmin reports whether the user is a global admin or administers a
// group.
func (s *Service) IsAnyAdmin(ctx context.Context, userID string) (bool, error) {
	return s.isAnyAdmin(ctx, s.o.Store, userID)
}

// adminRefused records an admin call refused by delegation rules, in its
// own transaction (nothing else changed).
func (s *Service) adminRefused(ctx context.Context, a Actor, p Proof, target, action string, err error) {
	r, ok := AsRefusal(err)
	if !ok {
		return
	}
	switch r.Code {
	case CodeSelfAction, CodeNotYourMember, CodeTargetIsAdmin, CodeStricterGroup:
	default:
		return
	}
	e := event(audit.AdminActionDenied, a, p, target, policy.Source{}, map[string]any{"action": action, "reason": r.Code})
	e.Outcome = audit.Denied
	if err := s.o.Store.InTx(ctx, func(q store.Queries) error { return s.append(ctx, q, e) }); err != nil {
		s.o.Logger.ErrorContext(ctx, "audit of a refused admin call failed", "err", err)
	}
}
