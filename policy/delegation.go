package policy

// Delegation: a group's admin contacts administer its members' 2SV, but a
// member who is also in a stricter group is not theirs to act on alone
// (most restrictive wins here too). Stricter means: it requires 2SV where
// theirs does not, keeps removal admin-only where theirs allows it, or
// narrows the methods members may use.

// strictness ranks a policy for delegation: higher is stricter.
func strictness(requireMFA, allowRemoval bool, methods []string) int {
	n := 0
	if requireMFA {
		n += 4
	}
	if !allowRemoval {
		n += 2
	}
	if len(methods) > 0 && len(methods) < len(Methods) {
		n++
	}
	return n
}

// StricterElsewhere returns the first of others whose policy is stricter
// than the combination of mine (the policies of the groups the admin
// administers, or the default policy when those groups carry none).
func StricterElsewhere(mine, others []Assignment) (Source, bool) {
	e := Evaluate(mine)
	base := strictness(e.RequireMFA, e.AllowSelfServiceRemoval, e.AllowedMethods)
	for _, a := range others {
		if strictness(a.Policy.RequireMFA, a.Policy.AllowSelfServiceRemoval, a.Policy.AllowedMethods) > base {
			return Source{PolicyID: a.Policy.ID, PolicyName: a.Policy.Name, PolicyVersion: a.Policy.Version, GroupID: a.GroupID, GroupName: a.GroupName}, true
		}
	}
	return Source{}, false
}
