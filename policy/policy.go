// Package policy holds authentication policies and decides a user's
// effective policy from the policies of their groups.
//
// It is pure logic: no I/O, no HTTP. Callers load the user's groups and the
// policies assigned to them (see Assignment) and call Evaluate. The rule is
// "most restrictive wins", and every setting of the result says which
// policies and groups decided it, so the portal and the admin console can
// explain a decision.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reenroll modes.
const (
	ReenrollImmediate = "immediate" // no token until a new authenticator is verified
	ReenrollGrace     = "grace"     // tokens for up to GracePeriod after removal
)

// Defaults of a new policy (SPEC §4).
const (
	DefaultStepUpMaxAge = 5 * time.Minute
	MaxStepUpMaxAge     = 24 * time.Hour
	MaxGracePeriod      = 30 * 24 * time.Hour
	DefaultSetupWindow  = 24 * time.Hour
	MaxSetupWindow      = 30 * 24 * time.Hour
)

// Policy is one authentication policy at one version.
type Policy struct {
	ID          string
	Name        string
	Description string
	// RequireMFA: members must have two-step verification.
	RequireMFA bool
	// AllowSelfServiceRemoval: members may remove their own 2SV (after a
	// fresh step-up). Off by default: removal stays with admins.
	AllowSelfServiceRemoval bool
	// StepUpMaxAge: how recent the sign-in (with second factor) must be
	// to remove 2SV.
	StepUpMaxAge time.Duration
	// Reenroll: ReenrollImmediate, or ReenrollGrace with GracePeriod.
	Reenroll    string
	GracePeriod time.Duration
	// SetupWindow: how long after removing their own 2SV a member may
	// reach the setup screen with a password alone.
	SetupWindow time.Duration
	// AllowedMethods: the kinds of second factor members may use (see
	// Methods); all of them unless the policy narrows it.
	AllowedMethods []string
	// Version increases on every change.
	Version   int
	IsDefault bool
	UpdatedAt time.Time
}

// Kinds of second factor a policy may allow.
const (
	MethodTOTP    = "totp"    // an authenticator app (RFC 6238)
	MethodPasskey = "passkey" // a passkey or security key (WebAuthn): phishing-resistant
)

// Methods lists every kind of second factor, in display order.
var Methods = []string{MethodTOTP, MethodPasskey}

// PhishingResistant lists the kinds that cannot be relayed by a look-alike
// site: the authenticator signs the origin.
var PhishingResistant = []string{MethodPasskey}

// New returns a policy with SPEC §4's defaults: 2SV required, removal
// admin-only, five-minute step-up, immediate re-enrollment, every method.
func New(id, name string) Policy {
	return Policy{ID: id, Name: name, RequireMFA: true, StepUpMaxAge: DefaultStepUpMaxAge, Reenroll: ReenrollImmediate,
		SetupWindow: DefaultSetupWindow, AllowedMethods: slices.Clone(Methods), Version: 1}
}

// ParseMethods reads a list of method kinds separated by commas or spaces
// ("totp,passkey"); it does not validate them (Validate does).
func ParseMethods(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// FieldError is a validation problem with one field.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every invalid field.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "policy: invalid: " + strings.Join(parts, "; ")
}

// Validate checks the settings and returns a *ValidationError.
func (p Policy) Validate() error {
	var fs []FieldError
	if strings.TrimSpace(p.Name) == "" || len(p.Name) > 100 {
		fs = append(fs, FieldError{"name", "required, at most 100 characters"})
	}
	if len(p.Description) > 1000 {
		fs = append(fs, FieldError{"description", "at most 1000 characters"})
	}
	if p.StepUpMaxAge < 30*time.Second || p.StepUpMaxAge > MaxStepUpMaxAge {
		fs = append(fs, FieldError{"step_up_max_age", "between 30s and 24h"})
	}
	if p.SetupWindow < time.Hour || p.SetupWindow > MaxSetupWindow {
		fs = append(fs, FieldError{"setup_window", "between 1h and 30 days"})
	}
	if !validMethods(p.AllowedMethods) {
		fs = append(fs, FieldError{"allowed_methods", `one or more of "totp" and "passkey", each once`})
	}
	switch p.Reenroll {
	case ReenrollImmediate:
		if p.GracePeriod != 0 {
			fs = append(fs, FieldError{"grace_period", "only with reenroll \"grace\""})
		}
	case ReenrollGrace:
		if p.GracePeriod <= 0 || p.GracePeriod > MaxGracePeriod {
			fs = append(fs, FieldError{"grace_period", "between 1s and 30 days"})
		}
	default:
		fs = append(fs, FieldError{"reenroll", `must be "immediate" or "grace"`})
	}
	if len(fs) > 0 {
		return &ValidationError{Fields: fs}
	}
	return nil
}

// Methods returns the kinds the policy allows (all when it has none set).
func (p Policy) Methods() []string {
	if len(p.AllowedMethods) == 0 {
		return slices.Clone(Methods)
	}
	return slices.Clone(p.AllowedMethods)
}

func validMethods(ms []string) bool {
	if len(ms) == 0 || len(ms) > len(Methods) {
		return false
	}
	for i, m := range ms {
		if !slices.Contains(Methods, m) || slices.Contains(ms[:i], m) {
			return false
		}
	}
	return true
}

// Assignment is one applicable policy and the group that brought it (empty
// GroupName for the default policy).
type Assignment struct {
	Policy    Policy
	GroupID   string
	GroupName string
}

// Source names a policy and group behind a setting.
type Source struct {
	PolicyID      string `json:"policy_id"`
	PolicyName    string `json:"policy_name"`
	PolicyVersion int    `json:"policy_version"`
	GroupID       string `json:"group_id,omitempty"`
	GroupName     string `json:"group_name,omitempty"`
}

func (s Source) String() string {
	if s.GroupName == "" {
		return fmt.Sprintf("policy %s (default)", s.PolicyName)
	}
	return fmt.Sprintf("policy %s, through group %s", s.PolicyName, s.GroupName)
}

// Effective is a user's combined policy. Each *By field lists the sources
// that decided the setting: for a restriction, the policies that impose it;
// for a permission, every policy (all had to agree).
type Effective struct {
	RequireMFA   bool
	RequireMFABy []Source

	AllowSelfServiceRemoval   bool
	AllowSelfServiceRemovalBy []Source

	StepUpMaxAge   time.Duration
	StepUpMaxAgeBy []Source

	Reenroll    string
	GracePeriod time.Duration
	ReenrollBy  []Source

	SetupWindow   time.Duration
	SetupWindowBy []Source

	// AllowedMethods are the kinds every policy allows, in Methods order;
	// AllowedMethodsBy names the policies that narrowed them (empty when
	// none did). When the policies allow no kind in common,
	// MethodsConflict is set and only the phishing-resistant kinds are
	// allowed: the stricter reading of requirements that cannot both hold.
	AllowedMethods   []string
	AllowedMethodsBy []Source
	MethodsConflict  bool

	// Applied lists every policy that was combined.
	Applied []Source
}

// Evaluate combines the applicable policies by the most restrictive rule:
// 2SV is required if any policy requires it; self-service removal is
// allowed only if every policy allows it; the shortest step-up age and the
// strictest re-enrollment apply. When no group carries a policy, pass the
// default policy's assignment alone.
func Evaluate(as []Assignment) Effective {
	if len(as) == 0 {
		// Nothing applies: fall back to SPEC §4's defaults, the safe side.
		d := New("", "built-in default")
		as = []Assignment{{Policy: d}}
	}
	// Stable order: by policy name, then group name, so reasons read the
	// same every time.
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b Assignment) int {
		if c := strings.Compare(a.Policy.Name, b.Policy.Name); c != 0 {
			return c
		}
		return strings.Compare(a.GroupName, b.GroupName)
	})
	src := func(a Assignment) Source {
		return Source{PolicyID: a.Policy.ID, PolicyName: a.Policy.Name, PolicyVersion: a.Policy.Version, GroupID: a.GroupID, GroupName: a.GroupName}
	}
	e := Effective{AllowSelfServiceRemoval: true, Reenroll: ReenrollGrace, AllowedMethods: slices.Clone(Methods)}
	first := true
	for _, a := range as {
		p, s := a.Policy, src(a)
		e.Applied = append(e.Applied, s)

		if p.RequireMFA {
			e.RequireMFA = true
			e.RequireMFABy = append(e.RequireMFABy, s)
		}

		if !p.AllowSelfServiceRemoval {
			if e.AllowSelfServiceRemoval {
				e.AllowSelfServiceRemovalBy = nil // a denial replaces the list of those who allowed
			}
			e.AllowSelfServiceRemoval = false
			e.AllowSelfServiceRemovalBy = append(e.AllowSelfServiceRemovalBy, s)
		} else if e.AllowSelfServiceRemoval {
			e.AllowSelfServiceRemovalBy = append(e.AllowSelfServiceRemovalBy, s)
		}

		switch {
		case first || p.SetupWindow < e.SetupWindow:
			e.SetupWindow, e.SetupWindowBy = p.SetupWindow, []Source{s}
		case p.SetupWindow == e.SetupWindow:
			e.SetupWindowBy = append(e.SetupWindowBy, s)
		}

		switch {
		case first || p.StepUpMaxAge < e.StepUpMaxAge:
			e.StepUpMaxAge, e.StepUpMaxAgeBy = p.StepUpMaxAge, []Source{s}
		case p.StepUpMaxAge == e.StepUpMaxAge:
			e.StepUpMaxAgeBy = append(e.StepUpMaxAgeBy, s)
		}

		// An empty list is every kind: versions stored before the setting
		// existed read that way.
		if ms := p.AllowedMethods; len(ms) > 0 && len(ms) < len(Methods) {
			e.AllowedMethods = slices.DeleteFunc(e.AllowedMethods, func(m string) bool { return !slices.Contains(ms, m) })
			e.AllowedMethodsBy = append(e.AllowedMethodsBy, s)
		}

		// immediate is stricter than any grace; among graces, shorter wins.
		switch {
		case first || stricter(p, e):
			e.Reenroll, e.GracePeriod, e.ReenrollBy = p.Reenroll, p.GracePeriod, []Source{s}
		case p.Reenroll == e.Reenroll && p.GracePeriod == e.GracePeriod:
			e.ReenrollBy = append(e.ReenrollBy, s)
		}
		first = false
	}
	if len(e.AllowedMethods) == 0 {
		e.AllowedMethods, e.MethodsConflict = slices.Clone(PhishingResistant), true
	}
	return e
}

// Allows reports whether members may use a second factor of this kind.
func (e Effective) Allows(kind string) bool { return slices.Contains(e.AllowedMethods, kind) }

// MethodsReason explains in one sentence which second factors are allowed.
func (e Effective) MethodsReason() string {
	if len(e.AllowedMethodsBy) == 0 {
		return "Any authenticator app, passkey or security key may be used."
	}
	names := make([]string, len(e.AllowedMethodsBy))
	for i, s := range e.AllowedMethodsBy {
		names[i] = s.String()
	}
	what := "Only passkeys and security keys may be used"
	if !e.Allows(MethodPasskey) {
		what = "Only authenticator apps may be used"
	}
	if e.MethodsConflict {
		return what + ": " + strings.Join(names, " and ") + " allow no method in common, so the phishing-resistant ones apply."
	}
	return what + ", because of " + strings.Join(names, " and ") + "."
}

func stricter(p Policy, e Effective) bool {
	if p.Reenroll == ReenrollImmediate {
		return e.Reenroll != ReenrollImmediate
	}
	return e.Reenroll == ReenrollGrace && p.GracePeriod < e.GracePeriod
}

// RemovalReason explains in one sentence why self-service removal is or is
// not allowed.
func (e Effective) RemovalReason() string {
	names := make([]string, len(e.AllowSelfServiceRemovalBy))
	for i, s := range e.AllowSelfServiceRemovalBy {
		names[i] = s.String()
	}
	if e.AllowSelfServiceRemoval {
		return "You may remove your own two-step verification: allowed by " + strings.Join(names, " and ") + "."
	}
	return "Removal is admin-only because of " + strings.Join(names, " and ") + "."
}
