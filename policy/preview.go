package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Member is one user and every assignment that applies to them.
type Member struct {
	UserID      string
	Assignments []Assignment
}

// Preview says how a proposed change to one policy would change the
// effective policy of the users it applies to, before it is saved.
type Preview struct {
	Users int // users the policy applies to (through any group)

	RemovalAllowed  int // self-removal becomes allowed
	RemovalRevoked  int // self-removal stops being allowed
	MFANowRequired  int
	MFANoLongerReqd int
	StepUpChanged   int
	MethodsChanged  int // the methods members may use would change
	MethodsConflict int // policies would allow no method in common
	// BlockedBy counts users for whom the proposed policy allows removal
	// but another policy keeps it admin-only, by "policy P through group G".
	BlockedBy map[string]int
}

// PreviewChange evaluates members before and after replacing the policy
// with proposed (same ID). Members whose assignments do not include the
// policy are ignored.
func PreviewChange(members []Member, proposed Policy) Preview {
	p := Preview{BlockedBy: map[string]int{}}
	for _, m := range members {
		after := make([]Assignment, len(m.Assignments))
		applies := false
		for i, a := range m.Assignments {
			after[i] = a
			if a.Policy.ID == proposed.ID {
				after[i].Policy = proposed
				applies = true
			}
		}
		if !applies {
			continue
		}
		p.Users++
		b, e := Evaluate(m.Assignments), Evaluate(after)
		switch {
		case !b.AllowSelfServiceRemoval && e.AllowSelfServiceRemoval:
			p.RemovalAllowed++
		case b.AllowSelfServiceRemoval && !e.AllowSelfServiceRemoval:
			p.RemovalRevoked++
		}
		if proposed.AllowSelfServiceRemoval && !e.AllowSelfServiceRemoval {
			for _, s := range e.AllowSelfServiceRemovalBy {
				if s.PolicyID != proposed.ID {
					p.BlockedBy[s.String()]++
				}
			}
		}
		switch {
		case !b.RequireMFA && e.RequireMFA:
			p.MFANowRequired++
		case b.RequireMFA && !e.RequireMFA:
			p.MFANoLongerReqd++
		}
		if b.StepUpMaxAge != e.StepUpMaxAge {
			p.StepUpChanged++
		}
		if !slices.Equal(b.AllowedMethods, e.AllowedMethods) {
			p.MethodsChanged++
		}
		if e.MethodsConflict {
			p.MethodsConflict++
		}
	}
	return p
}

// Summary is the preview in one or two sentences, e.g. "42 users would be
// allowed to remove their own 2SV; 3 of them stay admin-only through
// policy Privileged, through group Finance admins."
func (p Preview) Summary() string {
	if p.Users == 0 {
		return "No user is affected: the policy is not assigned to a group with members."
	}
	var parts []string
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	if p.RemovalAllowed > 0 {
		parts = append(parts, plural(p.RemovalAllowed, "user", "users")+" would be allowed to remove their own 2SV")
	}
	if p.RemovalRevoked > 0 {
		parts = append(parts, plural(p.RemovalRevoked, "user", "users")+" would no longer be allowed to remove their own 2SV")
	}
	if p.MFANowRequired > 0 {
		parts = append(parts, plural(p.MFANowRequired, "user", "users")+" would be required to use 2SV")
	}
	if p.MFANoLongerReqd > 0 {
		parts = append(parts, plural(p.MFANoLongerReqd, "user", "users")+" would no longer be required to use 2SV")
	}
	if p.StepUpChanged > 0 {
		parts = append(parts, plural(p.StepUpChanged, "user's", "users'")+" step-up age would change")
	}
	if p.MethodsChanged > 0 {
		parts = append(parts, plural(p.MethodsChanged, "user's", "users'")+" allowed sign-in methods would change")
	}
	if p.MethodsConflict > 0 {
		parts = append(parts, plural(p.MethodsConflict, "user has", "users have")+" policies allowing no method in common (only passkeys and security keys would apply)")
	}
	if len(p.BlockedBy) > 0 {
		keys := make([]string, 0, len(p.BlockedBy))
		for k := range p.BlockedBy {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var bs []string
		for _, k := range keys {
			bs = append(bs, fmt.Sprintf("%d stay admin-only through %s", p.BlockedBy[k], k))
		}
		parts = append(parts, strings.Join(bs, "; "))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("No effective policy changes for the %s this policy applies to.", plural(p.Users, "user", "users"))
	}
	return strings.Join(parts, "; ") + "."
}
