package mfa_test

import (
	"context"
	"testing"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/mfa"
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
			if _, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "bad\u202ename", answer); code(t, err) != mfa.CodeInvalidName {
				t.Fatalf("a name with a bidi control: %v", err)
			}
			id, opts, _ = svc.BeginAddPasskey(ctx, f.self(), add)
			answer, _ = key.Create(opts)
			m, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "Desk key", answer)
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
	if _, err := svc.FinishAddPasskey(ctx, f.self(), add, id, "Key", answer); err != nil {
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
