package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func pol(id string, mut func(*Policy)) Policy {
	p := New(id, id)
	if mut != nil {
		mut(&p)
	}
	return p
}

var (
	lowRisk = pol("LowRisk", func(p *Policy) {
		p.AllowSelfServiceRemoval = true
		p.StepUpMaxAge = 10 * time.Minute
		p.Reenroll, p.GracePeriod = ReenrollGrace, 24*time.Hour
	})
	privileged = pol("Privileged", func(p *Policy) { p.StepUpMaxAge = 2 * time.Minute })
	relaxed    = pol("Relaxed", func(p *Policy) {
		p.RequireMFA = false
		p.AllowSelfServiceRemoval = true
		p.Reenroll, p.GracePeriod = ReenrollGrace, time.Hour
	})
	dflt = pol("Default", func(p *Policy) { p.IsDefault = true })
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name        string
		in          []Assignment
		mfa, remove bool
		stepUp      time.Duration
		reenroll    string
		grace       time.Duration
		removeBy    []string // "policy/group" of AllowSelfServiceRemovalBy
	}{
		{"nothing applies: safe built-in defaults", nil, true, false, 5 * time.Minute, ReenrollImmediate, 0, []string{"built-in default/"}},
		{"default policy only", []Assignment{{Policy: dflt}}, true, false, 5 * time.Minute, ReenrollImmediate, 0, []string{"Default/"}},
		{"one low-risk group", []Assignment{{Policy: lowRisk, GroupName: "Staff"}}, true, true, 10 * time.Minute, ReenrollGrace, 24 * time.Hour, []string{"LowRisk/Staff"}},
		{"low-risk and privileged: admin-only", []Assignment{{Policy: lowRisk, GroupName: "Staff"}, {Policy: privileged, GroupName: "Finance admins"}},
			true, false, 2 * time.Minute, ReenrollImmediate, 0, []string{"Privileged/Finance admins"}},
		{"two permissive groups: allowed by both", []Assignment{{Policy: lowRisk, GroupName: "Staff"}, {Policy: relaxed, GroupName: "Interns"}},
			true, true, 5 * time.Minute, ReenrollGrace, time.Hour, []string{"LowRisk/Staff", "Relaxed/Interns"}},
		{"mfa not required only when no policy requires it", []Assignment{{Policy: relaxed, GroupName: "Interns"}},
			false, true, 5 * time.Minute, ReenrollGrace, time.Hour, []string{"Relaxed/Interns"}},
		{"same policy through two groups", []Assignment{{Policy: privileged, GroupName: "A"}, {Policy: privileged, GroupName: "B"}},
			true, false, 2 * time.Minute, ReenrollImmediate, 0, []string{"Privileged/A", "Privileged/B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Evaluate(tc.in)
			if e.RequireMFA != tc.mfa || e.AllowSelfServiceRemoval != tc.remove || e.StepUpMaxAge != tc.stepUp || e.Reenroll != tc.reenroll || e.GracePeriod != tc.grace {
				t.Fatalf("got mfa=%v remove=%v stepup=%v reenroll=%s grace=%v", e.RequireMFA, e.AllowSelfServiceRemoval, e.StepUpMaxAge, e.Reenroll, e.GracePeriod)
			}
			var by []string
			for _, s := range e.AllowSelfServiceRemovalBy {
				by = append(by, s.PolicyName+"/"+s.GroupName)
			}
			if strings.Join(by, ",") != strings.Join(tc.removeBy, ",") {
				t.Fatalf("removal decided by %v, want %v", by, tc.removeBy)
			}
			if len(e.Applied) != max(1, len(tc.in)) {
				t.Fatalf("applied %d", len(e.Applied))
			}
		})
	}
}

func TestPrecedenceStory(t *testing.T) {
	staff := Assignment{Policy: lowRisk, GroupID: "g1", GroupName: "Staff"}
	finance := Assignment{Policy: privileged, GroupID: "g2", GroupName: "Finance admins"}
	e := Evaluate([]Assignment{staff, finance})
	if e.AllowSelfServiceRemoval {
		t.Fatal("a privileged person in a low-risk group must stay admin-only")
	}
	if got := e.RemovalReason(); !strings.Contains(got, "policy Privileged, through group Finance admins") || strings.Contains(got, "Staff") {
		t.Fatalf("reason must name the deciding policy and group only: %q", got)
	}
	// Leaving the privileged group makes removal allowed on the next evaluation.
	if e := Evaluate([]Assignment{staff}); !e.AllowSelfServiceRemoval || !strings.Contains(e.RemovalReason(), "LowRisk") {
		t.Fatalf("after leaving Finance admins: %+v", e)
	}
	// Step-up age reasons name the strictest.
	if e.StepUpMaxAgeBy[0].PolicyName != "Privileged" {
		t.Fatalf("step-up decided by %+v", e.StepUpMaxAgeBy)
	}
}

func TestDefaultIsAdminOnly(t *testing.T) {
	p := New("p", "Fresh")
	if p.AllowSelfServiceRemoval || !p.RequireMFA || p.StepUpMaxAge != 5*time.Minute || p.Reenroll != ReenrollImmediate {
		t.Fatalf("defaults: %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	p := New("p", "")
	p.StepUpMaxAge = time.Second
	p.Reenroll = "later"
	err := p.Validate()
	ve, ok := err.(*ValidationError)
	if !ok || len(ve.Fields) != 3 {
		t.Fatalf("want 3 field errors, got %v", err)
	}
	g := New("g", "Grace")
	g.Reenroll = ReenrollGrace
	if err := g.Validate(); err == nil {
		t.Fatal("grace without a period must fail")
	}
	g.GracePeriod = time.Hour
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestStricterElsewhere(t *testing.T) {
	low := Policy{ID: "low", Name: "Low risk", RequireMFA: true, AllowSelfServiceRemoval: true, StepUpMaxAge: DefaultStepUpMaxAge, Reenroll: ReenrollImmediate}
	strict := Policy{ID: "priv", Name: "Privileged", RequireMFA: true, StepUpMaxAge: DefaultStepUpMaxAge, Reenroll: ReenrollImmediate}
	optional := Policy{ID: "opt", Name: "Optional", StepUpMaxAge: DefaultStepUpMaxAge, Reenroll: ReenrollImmediate}
	tests := []struct {
		name          string
		mine, others  []Assignment
		blocked       bool
		blockingGroup string
	}{
		{"no other groups", []Assignment{{Policy: low, GroupName: "Staff"}}, nil, false, ""},
		{"other group stricter", []Assignment{{Policy: low, GroupName: "Staff"}}, []Assignment{{Policy: strict, GroupName: "Finance"}}, true, "Finance"},
		{"other group as strict", []Assignment{{Policy: strict, GroupName: "Ops"}}, []Assignment{{Policy: strict, GroupName: "Finance"}}, false, ""},
		{"other group laxer", []Assignment{{Policy: low, GroupName: "Staff"}}, []Assignment{{Policy: optional, GroupName: "Guests"}}, false, ""},
		{"mine combine most-restrictively", []Assignment{{Policy: low, GroupName: "Staff"}, {Policy: strict, GroupName: "Ops"}},
			[]Assignment{{Policy: strict, GroupName: "Finance"}}, false, ""},
	}
	for _, tc := range tests {
		src, blocked := StricterElsewhere(tc.mine, tc.others)
		if blocked != tc.blocked || src.GroupName != tc.blockingGroup {
			t.Errorf("%s: got %v %+v", tc.name, blocked, src)
		}
	}
}

// TestSetupWindowMostRestrictive: the shortest setup window applies, and
// names the policy that set it.
func TestSetupWindowMostRestrictive(t *testing.T) {
	a, b := New("a", "Staff"), New("b", "Finance")
	a.SetupWindow, b.SetupWindow = 48*time.Hour, 4*time.Hour
	e := Evaluate([]Assignment{{Policy: a, GroupName: "Staff"}, {Policy: b, GroupName: "Finance"}})
	if e.SetupWindow != 4*time.Hour || len(e.SetupWindowBy) != 1 || e.SetupWindowBy[0].PolicyName != "Finance" {
		t.Fatalf("setup window: %v by %+v", e.SetupWindow, e.SetupWindowBy)
	}
	bad := New("c", "Bad")
	bad.SetupWindow = time.Minute
	if err := bad.Validate(); err == nil {
		t.Fatal("a one-minute setup window must be refused")
	}
}

// TestAllowedMethodsMostRestrictive: members may use the kinds every
// policy allows; policies with nothing in common leave the
// phishing-resistant kinds, and say so.
func TestAllowedMethodsMostRestrictive(t *testing.T) {
	all := New("all", "Staff")
	keys := New("keys", "Privileged")
	keys.AllowedMethods = []string{MethodPasskey}
	apps := New("apps", "Kiosk")
	apps.AllowedMethods = []string{MethodTOTP}
	legacy := New("old", "Legacy")
	legacy.AllowedMethods = nil // a version stored before the setting existed

	tests := []struct {
		name     string
		in       []Policy
		want     []string
		by       []string
		conflict bool
	}{
		{"default allows all", []Policy{all}, []string{MethodTOTP, MethodPasskey}, nil, false},
		{"unset reads as all", []Policy{legacy}, []string{MethodTOTP, MethodPasskey}, nil, false},
		{"one narrows", []Policy{all, keys}, []string{MethodPasskey}, []string{"Privileged"}, false},
		{"two narrow alike", []Policy{keys, keys}, []string{MethodPasskey}, []string{"Privileged", "Privileged"}, false},
		{"nothing in common", []Policy{apps, keys}, []string{MethodPasskey}, []string{"Kiosk", "Privileged"}, true},
		{"apps only", []Policy{apps, legacy}, []string{MethodTOTP}, []string{"Kiosk"}, false},
	}
	for _, tc := range tests {
		var as []Assignment
		for i, p := range tc.in {
			as = append(as, Assignment{Policy: p, GroupName: fmt.Sprint("g", i)})
		}
		e := Evaluate(as)
		var by []string
		for _, s := range e.AllowedMethodsBy {
			by = append(by, s.PolicyName)
		}
		if !slices.Equal(e.AllowedMethods, tc.want) || !slices.Equal(by, tc.by) || e.MethodsConflict != tc.conflict {
			t.Errorf("%s: got %v by %v conflict %v", tc.name, e.AllowedMethods, by, e.MethodsConflict)
		}
		if e.Allows(MethodTOTP) != slices.Contains(tc.want, MethodTOTP) {
			t.Errorf("%s: Allows(totp) disagrees with %v", tc.name, e.AllowedMethods)
		}
		if tc.conflict && !strings.Contains(e.MethodsReason(), "no method in common") {
			t.Errorf("%s: reason %q", tc.name, e.MethodsReason())
		}
	}

	for _, bad := range [][]string{{}, {"sms"}, {MethodTOTP, MethodTOTP}, {"Passkey"}, {"passkey\x00"}, {MethodTOTP, MethodPasskey, MethodTOTP}} {
		p := New("p", "P")
		p.AllowedMethods = bad
		var ve *ValidationError
		if err := p.Validate(); !errors.As(err, &ve) || ve.Fields[0].Field != "allowed_methods" {
			t.Errorf("allowed_methods %q: got %v", bad, err)
		}
	}

	// Narrowing the methods is stricter for delegation too.
	src, blocked := StricterElsewhere([]Assignment{{Policy: all, GroupName: "Staff"}}, []Assignment{{Policy: keys, GroupName: "Admins"}})
	if !blocked || src.GroupName != "Admins" {
		t.Errorf("a passkeys-only group is stricter: %v %+v", blocked, src)
	}
}
