package mfa_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// fixture is a user with an authenticator in a group whose policy allows
// self-service removal, on a real store.
type fixture struct {
	st     store.Store
	an     *authn.Service
	svc    *mfa.Service
	user   store.User
	secret string
	now    time.Time
}

func newFixture(t *testing.T, st store.Store, allowRemoval bool) *fixture {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{3}, 32)})
	an := authn.NewService(authn.Options{Store: st, Keyring: ring, Pepper: []byte("p")})
	f := &fixture{st: st, an: an, svc: mfa.New(mfa.Options{Store: st, Authn: an}), now: now,
		user: store.User{ID: "u1", Username: "vera", CreatedAt: now, UpdatedAt: now}, secret: authn.NewTOTPSecret()}
	p := store.Policy{ID: "p1", Name: "Staff", RequireMFA: true, AllowSelfServiceRemoval: allowRemoval, StepUpMaxAge: 5 * time.Minute,
		Reenroll: "immediate", Version: 1, UpdatedAt: now}
	err := st.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateUser(ctx, f.user); err != nil {
			return err
		}
		if _, err := an.EnrollTOTP(ctx, q, f.user.ID, f.secret, 0); err != nil {
			return err
		}
		if err := q.CreatePolicy(ctx, p); err != nil {
			return err
		}
		if err := q.CreateGroup(ctx, store.Group{ID: "g1", Name: "staff", CreatedAt: now}); err != nil {
			return err
		}
		if err := q.AddMember(ctx, "g1", f.user.ID); err != nil {
			return err
		}
		return q.AssignPolicy(ctx, "g1", p.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) self() mfa.Actor { return mfa.Actor{Type: audit.ActorUser, UserID: f.user.ID} }

// stepUp is a fresh step-up proof for action, as a first-party app's
// bearer token would carry.
func (f *fixture) stepUp(id string, actions ...string) mfa.Proof {
	return mfa.Proof{Via: mfa.ViaBearer, ID: id, AuthTime: f.now.Add(-time.Minute), AMR: []string{"pwd", "otp", "mfa"}, Actions: actions, FirstParty: true}
}

func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	r, ok := mfa.AsRefusal(err)
	if !ok {
		t.Fatalf("unexpected error: %v", err)
	}
	return r.Code
}

// TestStepUpRule: a destructive call passes only with an unspent step-up
// made for that action, recent, with the second factor.
func TestStepUpRule(t *testing.T) {
	f := newFixture(t, testdb.SQLite(t), true)
	ctx := context.Background()
	mfaAMR := []string{"pwd", "otp", "mfa"}
	tests := []struct {
		name string
		p    mfa.Proof
		want string
	}{
		{"bearer step-up for remove, 1 min ago", f.stepUp("g1", mfa.ActionRemove), ""},
		{"session step-up for remove", mfa.Proof{Via: mfa.ViaSession, ID: "s1", AuthTime: f.now.Add(-time.Minute), AMR: mfaAMR, Actions: []string{mfa.ActionRemove}}, ""},
		{"older than max age", mfa.Proof{Via: mfa.ViaBearer, ID: "g2", AuthTime: f.now.Add(-6 * time.Minute), AMR: mfaAMR, Actions: []string{mfa.ActionRemove}}, mfa.CodeStepUpRequired},
		{"password only", mfa.Proof{Via: mfa.ViaBearer, ID: "g3", AuthTime: f.now, AMR: []string{"pwd"}, Actions: []string{mfa.ActionRemove}}, mfa.CodeStepUpRequired},
		{"step-up for another action", f.stepUp("g4", mfa.ActionReplace), mfa.CodeStepUpRequired},
		{"ordinary token: fresh, with otp, no action", f.stepUp("g5"), mfa.CodeStepUpRequired},
		{"no proof id", f.stepUp("", mfa.ActionRemove), mfa.CodeStepUpRequired},
		{"client credentials", mfa.Proof{Via: mfa.ViaClient, ID: "c", Actions: []string{mfa.ActionRemove}}, mfa.CodeStepUpRequired},
	}
	for _, tc := range tests {
		if got := code(t, f.svc.CheckRemoval(ctx, f.self(), tc.p)); got != tc.want {
			t.Errorf("%s: got %q want %q", tc.name, got, tc.want)
		}
	}
	// Six refusals of one kind: audited at the 1st, 2nd and 4th (aggregated).
	if n, _ := f.st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: string(audit.StepUpRefused)}); len(n) != 3 || !strings.Contains(n[2].Details, `"refusals_in_window":4`) {
		t.Errorf("refusals audited, aggregated: %d events %v", len(n), n)
	}
}

// TestProofIsSingleUse: a step-up is spent by the change it allowed; the
// same proof then allows nothing, whichever operation it is shown to.
func TestProofIsSingleUse(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.Open(t), true)
			ctx := context.Background()
			p := f.stepUp("grant-1", mfa.ActionRecoveryCodes, mfa.ActionRemove)
			if _, err := f.svc.NewRecoveryCodes(ctx, f.self(), p); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.NewRecoveryCodes(ctx, f.self(), p); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("replayed proof: %v", err)
			}
			if _, err := f.svc.Initiate(ctx, f.self(), p); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("a spent proof must not start a removal either: %v", err)
			}
			fresh := f.stepUp("grant-2", mfa.ActionRemove)
			in, err := f.svc.Initiate(ctx, f.self(), fresh)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.RemoveOwn(ctx, f.self(), fresh, in.ID); err != nil {
				t.Fatal(err)
			}
			if has, _ := f.svc.HasTOTP(ctx, f.user.ID); has {
				t.Fatal("not removed")
			}
			// A self-service removal opens a 24-hour setup window.
			if until, _ := f.st.MFASetupUntil(ctx, f.user.ID); until.Sub(time.Now()) < 23*time.Hour || until.Sub(time.Now()) > 25*time.Hour {
				t.Fatalf("setup window: %v", until)
			}
		})
	}
}

// TestSecretBoundToCaller: a secret started for one caller is never shown
// to another, and cannot be completed by the first once another started.
func TestSecretBoundToCaller(t *testing.T) {
	f := newFixture(t, testdb.SQLite(t), true)
	ctx := context.Background()
	attacker := f.stepUp("grant-a", mfa.ActionRemove)
	in, err := f.svc.Initiate(ctx, f.self(), attacker)
	if err != nil {
		t.Fatal(err)
	}
	planted, err := f.svc.RemoveOwn(ctx, f.self(), attacker, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	signIn := mfa.Proof{Via: mfa.ViaSignIn, ID: "login_flow"}
	shown, err := f.svc.SetupSecret(ctx, f.self(), signIn)
	if err != nil {
		t.Fatal(err)
	}
	if shown == planted {
		t.Fatal("the sign-in setup screen showed the secret another caller holds")
	}
	thirdParty := attacker
	thirdParty.FirstParty = false
	if _, err := f.svc.StartSetup(ctx, f.self(), thirdParty); code(t, err) != mfa.CodeFirstPartyOnly {
		t.Fatalf("a third-party token must not enroll a secret it knows: %v", err)
	}
	stale := attacker
	stale.AuthTime = f.now.Add(-time.Hour)
	if _, err := f.svc.StartSetup(ctx, f.self(), stale); code(t, err) != mfa.CodeStepUpRequired {
		t.Fatalf("an old token must not enroll either: %v", err)
	}
	if _, _, err := f.svc.CompleteSetup(ctx, f.self(), attacker, mustCode(t, planted)); code(t, err) != mfa.CodeSetupExpired {
		t.Fatalf("the superseded secret must not complete: %v", err)
	}
	if _, _, err := f.svc.CompleteSetup(ctx, f.self(), signIn, mustCode(t, shown)); err != nil {
		t.Fatalf("the sign-in's own secret completes: %v", err)
	}
}

func mustCode(t *testing.T, secret string) string {
	t.Helper()
	c, err := authn.TOTPCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAdminRules: admins act only with a fresh proof, never on themselves.
func TestAdminRules(t *testing.T) {
	f := newFixture(t, testdb.SQLite(t), false)
	ctx := context.Background()
	admin := mfa.Actor{Type: audit.ActorAdmin, UserID: "admin-1"}
	stale := mfa.Proof{Via: mfa.ViaBearer, AuthTime: f.now.Add(-10 * time.Minute), AMR: []string{"pwd", "otp", "mfa"}}
	pwdOnly := mfa.Proof{Via: mfa.ViaSession, ID: "s", AuthTime: f.now, AMR: []string{"pwd"}}
	fresh := mfa.Proof{Via: mfa.ViaBearer, AuthTime: f.now.Add(-time.Minute), AMR: []string{"pwd", "otp", "mfa"}}
	for name, p := range map[string]mfa.Proof{"stale": stale, "password only": pwdOnly,
		"client without admin:sensitive": {Via: mfa.ViaClient, Scopes: []string{"admin"}}} {
		if err := f.svc.RemoveByAdmin(ctx, admin, p, f.user.ID, ""); err == nil {
			t.Errorf("%s proof removed 2SV", name)
		}
	}
	if err := f.svc.RemoveByAdmin(ctx, f.self(), fresh, f.user.ID, ""); code(t, err) != mfa.CodeSelfAction {
		t.Fatalf("an admin removing their own 2SV: %v", err)
	}
	if has, _ := f.svc.HasTOTP(ctx, f.user.ID); !has {
		t.Fatal("a refused call changed 2SV")
	}
	if err := f.svc.RemoveByAdmin(ctx, mfa.Actor{Type: audit.ActorAdmin, ClientID: "robot"},
		mfa.Proof{Via: mfa.ViaClient, Scopes: []string{"admin", mfa.ScopeAdminSensitive}}, f.user.ID, "lost phone"); err != nil {
		t.Fatalf("registered automation: %v", err)
	}
	// Own reset request: never approved by oneself.
	rr, err := f.svc.RequestReset(ctx, f.self(), mfa.Proof{Via: mfa.ViaSession}, "")
	if code(t, err) != mfa.CodeMFANotActive {
		t.Fatalf("reset request without 2SV: %v %v", rr, err)
	}
}

// failingAudit is the real store, except that writing an audit event
// fails, as when the audit table is unavailable.
type failingAudit struct{ store.Store }

func (f failingAudit) InTx(ctx context.Context, fn func(store.Queries) error) error {
	return f.Store.InTx(ctx, func(q store.Queries) error { return fn(failingQueries{q}) })
}

type failingQueries struct{ store.Queries }

func (failingQueries) InsertAuditEvent(context.Context, store.AuditEvent) (int64, error) {
	return 0, errors.New("forced: audit log unavailable")
}

// TestRemovalWithoutAuditChangesNothing: if the audit event cannot be
// written, the credential, its recovery codes, the confirmation step and
// the step-up all stay.
func TestRemovalWithoutAuditChangesNothing(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			real := b.Open(t)
			f := newFixture(t, real, true)
			ctx := context.Background()
			broken := mfa.New(mfa.Options{Store: failingAudit{real}, Authn: f.an})
			p := f.stepUp("grant-x", mfa.ActionRemove)
			in, err := f.svc.Initiate(ctx, f.self(), p)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := real.CountRecoveryCodes(ctx, f.user.ID)
			if _, err := broken.RemoveOwn(ctx, f.self(), p, in.ID); err == nil {
				t.Fatal("removal must fail when the audit event cannot be written")
			}
			if _, err := real.GetTOTP(ctx, f.user.ID); err != nil {
				t.Fatalf("credential removed without its audit event: %v", err)
			}
			if after, _ := real.CountRecoveryCodes(ctx, f.user.ID); after != before || before != authn.RecoveryCodeCount {
				t.Fatalf("recovery codes changed: %d -> %d", before, after)
			}
			if _, err := real.GetUnlinkIntent(ctx, in.ID); err != nil {
				t.Fatalf("the confirmation step must survive the failed attempt: %v", err)
			}
			if spent, _ := real.StepUpSpent(ctx, "bearer:grant-x"); spent {
				t.Fatal("the step-up was spent by a removal that did not happen")
			}
			if at, _ := real.MFARemovedAt(ctx, f.user.ID); !at.IsZero() {
				t.Fatal("re-enrollment requirement recorded for a removal that did not happen")
			}
			// With the audit log back, the same confirmation completes.
			if _, err := f.svc.RemoveOwn(ctx, f.self(), p, in.ID); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if _, err := real.GetTOTP(ctx, f.user.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatal("retry did not remove the credential")
			}
		})
	}
}

// TestSetupWindowFromPolicy: a self-service removal opens the setup window
// of the member's policy.
func TestSetupWindowFromPolicy(t *testing.T) {
	st := testdb.SQLite(t)
	f := newFixture(t, st, true)
	ctx := context.Background()
	p, err := st.GetPolicy(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p.SetupWindow, p.Version = 2*time.Hour, p.Version+1
	if err := st.UpdatePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	pr := f.stepUp("grant-w", mfa.ActionRemove)
	in, err := f.svc.Initiate(ctx, f.self(), pr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RemoveOwn(ctx, f.self(), pr, in.ID); err != nil {
		t.Fatal(err)
	}
	if until, _ := st.MFASetupUntil(ctx, f.user.ID); until.Sub(time.Now()) < 110*time.Minute || until.Sub(time.Now()) > 2*time.Hour {
		t.Fatalf("the policy's window applies: %v", until)
	}
}
