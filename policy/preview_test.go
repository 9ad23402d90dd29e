package policy

import (
	"strings"
	"testing"
)

func TestPreviewChange(t *testing.T) {
	staffPol := New("staff", "Staff policy") // admin-only today
	privileged := New("priv", "Privileged")
	staff := func(u string) Member {
		return Member{UserID: u, Assignments: []Assignment{{Policy: staffPol, GroupName: "Engineering"}}}
	}
	both := func(u string) Member {
		return Member{UserID: u, Assignments: []Assignment{{Policy: staffPol, GroupName: "Engineering"}, {Policy: privileged, GroupName: "Finance admins"}}}
	}
	other := Member{UserID: "x", Assignments: []Assignment{{Policy: privileged, GroupName: "Finance admins"}}}
	members := []Member{staff("a"), staff("b"), staff("c"), both("d"), other}

	proposed := staffPol
	proposed.AllowSelfServiceRemoval = true
	proposed.Version++
	p := PreviewChange(members, proposed)
	if p.Users != 4 || p.RemovalAllowed != 3 || p.BlockedBy["policy Privileged, through group Finance admins"] != 1 {
		t.Fatalf("preview: %+v", p)
	}
	// The numbers match what Evaluate says user by user.
	allowed := 0
	for _, m := range members[:4] {
		as := append([]Assignment{}, m.Assignments...)
		for i := range as {
			if as[i].Policy.ID == proposed.ID {
				as[i].Policy = proposed
			}
		}
		if Evaluate(as).AllowSelfServiceRemoval {
			allowed++
		}
	}
	if allowed != p.RemovalAllowed {
		t.Fatalf("preview says %d, Evaluate says %d", p.RemovalAllowed, allowed)
	}
	want := "3 users would be allowed to remove their own 2SV; 1 stay admin-only through policy Privileged, through group Finance admins."
	if got := p.Summary(); got != want {
		t.Fatalf("summary:\n got %q\nwant %q", got, want)
	}
	if s := PreviewChange(members, staffPol).Summary(); !strings.HasPrefix(s, "No effective policy changes for the 4 users") {
		t.Fatalf("no-op preview: %q", s)
	}
	if s := PreviewChange([]Member{other}, proposed).Summary(); !strings.HasPrefix(s, "No user is affected") {
		t.Fatalf("unassigned: %q", s)
	}
}
