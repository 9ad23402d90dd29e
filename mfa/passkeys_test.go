package mfa_test

import (
	"context"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// TestPasskeyLifecycle: adding a passkey beside a TOTP app takes a step-up
// made for it (spent once); removing one of several methods takes its own
// step-up and is always allowed, even where self-service removal of 2SV is
// admin-only; the last method cannot be removed that way; turning 2SV off
// removes every method. Both stores.
func TestPasskeyLifecycle(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st := b.Open(t)
			f := newFixture(t, st, false) // removal of 2SV is admin-only
			pk, err := authn.NewPasskeys("https://id.example.com", "Latchkey", nil)
			if err != nil {
				t.Fatal(err)
			}
			svc := mfa.New(mfa.Options{Store: st, Authn: f.an, Passkeys: pk})
			key := webauthntest.New("id.example.com", "https://id.example.com")

			if _, _, err := svc.BeginAddPasskey(ctx, f.self(), f.stepUp("g0", mfa.ActionRemove)); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("a step-up for another action added a passkey: %v", err)
			}
			add := f.stepUp("g1", mfa.ActionAddMethod)
			id, opts, err := svc.BeginAddPasskey(ctx, f.self(), add)
			if err != nil {
				t.Fatal(err)
			}
			answer, err := key.Create(opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "bad\u202ename", answer); code(t, err) != mfa.CodeInvalidName {
				t.Fatalf("a name with a bidi control: %v", err)
			}
			id, opts, _ = svc.BeginAddPasskey(ctx, f.self(), add)
			answer, _ = key.Create(opts)
			m, _, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "Desk key", answer)
			if err != nil || m.Kind != "passkey" || m.Name != "Desk key" {
				t.Fatalf("add: %+v %v", m, err)
			}
			// The step-up was spent: a second key needs a new one.
			if _, _, err := svc.BeginAddPasskey(ctx, f.self(), add); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("a spent step-up added another passkey: %v", err)
			}
			ms, _ := svc.Methods(ctx, f.user.ID)
			if len(ms) != 2 || ms[0].Kind != "totp" || ms[1].ID != m.ID {
				t.Fatalf("methods: %+v", ms)
			}
			if err := svc.RenamePasskey(ctx, f.self(), mfa.Proof{}, m.ID, "YubiKey 5"); err != nil {
				t.Fatal(err)
			}

			// One of several: the TOTP app goes, the passkey stays,
			// although this user's policy keeps 2SV removal admin-only.
			if err := svc.RemoveMethod(ctx, f.self(), f.stepUp("g2", mfa.ActionRemove), "totp"); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("removal with another action's step-up: %v", err)
			}
			if err := svc.RemoveMethod(ctx, f.self(), f.stepUp("g3", mfa.ActionRemoveMethod), "totp"); err != nil {
				t.Fatalf("remove one of two methods: %v", err)
			}
			if _, err := st.GetTOTP(ctx, f.user.ID); err == nil {
				t.Fatal("the TOTP app is still there")
			}
			if n, _ := st.CountRecoveryCodes(ctx, f.user.ID); n == 0 {
				t.Fatal("removing the TOTP app took the recovery codes, though a passkey remains")
			}
			// The last one is turning 2SV off: not through this call.
			if err := svc.RemoveMethod(ctx, f.self(), f.stepUp("g4", mfa.ActionRemoveMethod), m.ID); code(t, err) != mfa.CodeLastMethod {
				t.Fatalf("removing the last method: %v", err)
			}
			if err := svc.RemoveMethod(ctx, f.self(), f.stepUp("g5", mfa.ActionRemoveMethod), "nope"); code(t, err) != mfa.CodeNotFound {
				t.Fatalf("removing an unknown method: %v", err)
			}
			// 2SV is still active (a passkey), so the removal flow applies
			// and is admin-only here.
			if err := svc.CheckRemoval(ctx, f.self(), f.stepUp("g6", mfa.ActionRemove)); code(t, err) != mfa.CodeAdminOnly {
				t.Fatalf("a passkey-only account: %v", err)
			}
			// An admin's removal takes every method.
			admin := mfa.Actor{Type: audit.ActorSystem}
			if err := svc.RemoveByAdmin(ctx, admin, mfa.Proof{Via: mfa.ViaOperator}, f.user.ID, "lost keys"); err != nil {
				t.Fatal(err)
			}
			if ms, _ := svc.Methods(ctx, f.user.ID); len(ms) != 0 {
				t.Fatalf("after removal: %+v", ms)
			}
			if n, _ := st.CountRecoveryCodes(ctx, f.user.ID); n != 0 {
				t.Fatalf("%d recovery codes survived turning 2SV off", n)
			}
			evs, _ := st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "mfa.webauthn."})
			types := map[string]int{}
			for _, e := range evs {
				types[e.Type]++
			}
			if types[string(audit.PasskeyRegistered)] != 1 || types[string(audit.PasskeyRenamed)] != 1 {
				t.Fatalf("passkey events: %v", types)
			}
			if removed, _ := st.ListAuditEvents(ctx, store.AuditFilter{TypePrefix: "mfa.totp."}); len(removed) != 2 || removed[0].Type != string(audit.TOTPMethodRemoved) || removed[1].Type != string(audit.MFARemoved) {
				t.Fatalf("want the TOTP removal and the admin's removal audited: %d", len(removed))
			}
		})
	}
}

// TestTOTPBesideAKeyNeedsAStepUp: for a user whose only method is a key,
// a TOTP app is an added method: setting it up (portal, API or the sign-in
// setup screen) needs a step-up made for adding one, never a first-time
// enrollment with a password alone.
func TestTOTPBesideAKeyNeedsAStepUp(t *testing.T) {
	ctx := context.Background()
	st := testdb.SQLite(t)
	f := newFixture(t, st, true)
	pk, _ := authn.NewPasskeys("https://id.example.com", "Latchkey", nil)
	svc := mfa.New(mfa.Options{Store: st, Authn: f.an, Passkeys: pk})
	key := webauthntest.New("id.example.com", "https://id.example.com")
	add := f.stepUp("g1", mfa.ActionAddMethod)
	id, opts, _ := svc.BeginAddPasskey(ctx, f.self(), add)
	answer, _ := key.Create(opts)
	if _, _, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "Key", answer); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveMethod(ctx, f.self(), f.stepUp("g2", mfa.ActionRemoveMethod), "totp"); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]mfa.Proof{"sign-in with a password": {Via: mfa.ViaSignIn, ID: "flow"},
		"fresh first-party sign-in": f.stepUp("g3"), "step-up for replace": f.stepUp("g4", mfa.ActionReplace)} {
		if _, err := svc.StartSetup(ctx, f.self(), p); code(t, err) != mfa.CodeStepUpRequired {
			t.Fatalf("%s started a TOTP setup beside a key: %v", name, err)
		}
	}
	p := f.stepUp("g5", mfa.ActionAddMethod)
	secret, err := svc.StartSetup(ctx, f.self(), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, replaced, err := svc.CompleteSetup(ctx, f.self(), p, mustCode(t, secret)); err != nil || replaced {
		t.Fatalf("adding the app: replaced=%v %v", replaced, err)
	}
	if ms, _ := svc.Methods(ctx, f.user.ID); len(ms) != 2 {
		t.Fatalf("methods: %+v", ms)
	}
}

// TestPhishingResistantOnly: under a policy that allows only passkeys and
// security keys, no path adds a TOTP app (portal session, bearer token,
// sign-in, operator), a TOTP app is refused as a sign-in's second factor
// once the user has a key, and the app the user had is removed (audited)
// when they add a key — after a sign-in that verified it, with nothing
// more. Both stores.
func TestPhishingResistantOnly(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st := b.Open(t)
			f := newFixture(t, st, false)
			p, _ := st.GetPolicy(ctx, "p1")
			p.AllowedMethods, p.Version = []string{policy.MethodPasskey}, 2
			if err := st.UpdatePolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
			pk, _ := authn.NewPasskeys("https://id.example.com", "Latchkey", nil)
			svc := mfa.New(mfa.Options{Store: st, Authn: f.an, Passkeys: pk})
			key := webauthntest.New("id.example.com", "https://id.example.com")

			// The app is listed as not allowed.
			if ms, _ := svc.Methods(ctx, f.user.ID); len(ms) != 1 || ms[0].Allowed {
				t.Fatalf("methods: %+v", ms)
			}
			// No path sets up a TOTP app, however fresh its proof.
			for name, proof := range map[string]mfa.Proof{
				"step-up for replace":   f.stepUp("r1", mfa.ActionReplace),
				"step-up for add":       f.stepUp("r2", mfa.ActionAddMethod),
				"sign-in that verified": {Via: mfa.ViaSignIn, ID: "flow0", AMR: []string{"pwd", "otp"}, AuthTime: time.Now()},
				"portal session":        {Via: mfa.ViaSession, ID: "s1", AuthTime: time.Now(), AMR: []string{"pwd", "otp", "mfa"}, Actions: []string{mfa.ActionReplace}},
			} {
				if _, err := svc.StartSetup(ctx, f.self(), proof); code(t, err) != mfa.CodeMethodNotAllowed {
					t.Errorf("%s started a TOTP setup: %v", name, err)
				}
			}
			if _, err := svc.EnrollVerified(ctx, mfa.Actor{Type: audit.ActorSystem}, f.user.ID, authn.NewTOTPSecret()); code(t, err) != mfa.CodeMFAActive {
				t.Errorf("operator enrollment over an active app: %v", err)
			}
			if n := auditCount(t, st, string(audit.MFAMethodDenied)); n == 0 {
				t.Error("refusals of a forbidden method are not audited")
			}

			// At sign-in, the app verified: the user must move to a key.
			signIn := mfa.Proof{Via: mfa.ViaSignIn, ID: "flow1", AMR: []string{"pwd", "otp"}, AuthTime: time.Now()}
			if sw, err := svc.SignInMethod(ctx, f.self(), signIn, policy.MethodTOTP); err != nil || !sw {
				t.Fatalf("a user with only a forbidden app must switch: %v %v", sw, err)
			}
			// A password alone is not enough to add the key.
			if _, _, err := svc.BeginAddPasskey(ctx, f.self(), mfa.Proof{Via: mfa.ViaSignIn, ID: "flow2"}); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("a password-only sign-in began adding a key: %v", err)
			}
			id, opts, err := svc.BeginAddPasskey(ctx, f.self(), signIn)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := key.Create(opts)
			m, codes, err := svc.FinishAddPasskey(ctx, f.self(), signIn, id, "Key", answer)
			if err != nil || codes != nil || !m.Allowed {
				t.Fatalf("moving to a key: %+v %v %v", m, codes, err)
			}
			if _, err := st.GetTOTP(ctx, f.user.ID); err == nil {
				t.Fatal("the forbidden app was kept")
			}
			if n, _ := st.CountRecoveryCodes(ctx, f.user.ID); n == 0 {
				t.Fatal("moving to a key took the recovery codes")
			}
			if n := auditCount(t, st, string(audit.TOTPMethodRemoved)); n != 1 {
				t.Fatalf("the app's removal by policy: %d events", n)
			}
			// The sign-in's proof is spent.
			if _, _, err := svc.BeginAddPasskey(ctx, f.self(), signIn); code(t, err) != mfa.CodeStepUpRequired {
				t.Fatalf("a spent sign-in added another key: %v", err)
			}
			// With a key, an app code is refused at sign-in; recovery
			// codes and the key are accepted.
			if _, err := svc.SignInMethod(ctx, f.self(), signIn, policy.MethodTOTP); code(t, err) != mfa.CodeMethodNotAllowed {
				t.Fatalf("an app code beside a key: %v", err)
			}
			for _, kind := range []string{policy.MethodPasskey, mfa.MethodRecoveryCode} {
				if sw, err := svc.SignInMethod(ctx, f.self(), signIn, kind); err != nil || sw {
					t.Fatalf("%s: %v %v", kind, sw, err)
				}
			}
		})
	}
}

func auditCount(t *testing.T, st store.Store, typ string) int {
	t.Helper()
	evs, err := st.ListAuditEvents(context.Background(), store.AuditFilter{TypePrefix: typ})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}
