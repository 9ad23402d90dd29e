package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/store"
)

// softKey wraps the shared software authenticator for these tests.
type softKey struct{ *webauthntest.Key }

func newSoftKey(t *testing.T, rpID, origin string) *softKey {
	return &softKey{webauthntest.New(rpID, origin)}
}

func (k *softKey) create(t *testing.T, options []byte) []byte {
	t.Helper()
	out, err := k.Create(options)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (k *softKey) get(t *testing.T, options []byte) []byte {
	t.Helper()
	out, err := k.Get(options)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var b64 = base64.RawURLEncoding

type passkeyFixture struct {
	st     store.Store
	pk     *authn.Passkeys
	now    time.Time
	u, v   store.User
	key    *softKey
	stored store.WebAuthnCredential
}

const issuer = "https://id.example.com"

func newPasskeyFixture(t *testing.T) *passkeyFixture {
	ctx := context.Background()
	f := &passkeyFixture{st: testdb.SQLite(t), now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	var err error
	if f.pk, err = authn.NewPasskeys(issuer, "Latchkey", func() time.Time { return f.now }); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"wanda", "victor"} {
		u := store.User{ID: authn.NewID("user"), Username: name, CreatedAt: f.now, UpdatedAt: f.now}
		if err := f.st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			f.u = u
		} else {
			f.v = u
		}
	}
	f.key = newSoftKey(t, "id.example.com", issuer)
	id, opts, err := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
	if err != nil {
		t.Fatal(err)
	}
	if f.stored, err = f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-1", "YubiKey", f.key.create(t, opts)); err != nil {
		t.Fatalf("registration: %v", err)
	}
	if err := f.st.CreateWebAuthnCredential(ctx, f.stored); err != nil {
		t.Fatal(err)
	}
	f.key.Handle = []byte(f.u.ID)
	return f
}

// TestPasskeySecondFactor: a registered security key signs in; the
// counter moves forward; user verification and hardware are reported.
func TestPasskeySecondFactor(t *testing.T) {
	ctx := context.Background()
	f := newPasskeyFixture(t)
	if f.stored.UserID != f.u.ID || f.stored.Name != "YubiKey" || len(f.stored.CredentialID) != len(f.key.ID) {
		t.Fatalf("registered: %+v", f.stored)
	}
	for i := range 2 {
		id, opts, err := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
		if err != nil {
			t.Fatal(err)
		}
		use, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
		if err != nil {
			t.Fatalf("sign-in %d: %v", i+1, err)
		}
		if use.Credential.ID != f.stored.ID || !use.UserVerified || !use.Hardware || use.Credential.SignCount != f.key.Count {
			t.Fatalf("use: %+v", use)
		}
	}
	cs, _ := f.st.ListWebAuthnCredentials(ctx, f.u.ID)
	if cs[0].SignCount != 2 || !cs[0].LastUsedAt.Equal(f.now) {
		t.Fatalf("stored after use: %+v", cs[0])
	}
	// Registering the same authenticator again is refused up front: it is
	// in the exclusion list.
	_, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
	if !strings.Contains(string(opts), b64.EncodeToString(f.key.ID)) {
		t.Fatalf("existing credential not excluded: %s", opts)
	}
}

// TestPasskeyCeremonyChecks: what the library leaves to its caller —
// challenge bound to its session and user, single use, expiry; origin and
// RP id; the user handle; a counter that goes backwards. Each is refused
// with ErrPasskey, and a refusal spends the challenge.
func TestPasskeyCeremonyChecks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, f *passkeyFixture) error
	}{
		{"answer replayed", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			answer := f.key.get(t, opts)
			if _, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer); err != nil {
				t.Fatal(err)
			}
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer)
			return err
		}},
		{"challenge of another session", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-2", f.key.get(t, opts))
			return err
		}},
		{"challenge of another user", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.v, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"registration challenge answered as a sign-in", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"expired challenge", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.now = f.now.Add(5*time.Minute + time.Second)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another origin", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.Origin = "https://id.example.com.evil.test"
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another RP id", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.RPID = "example.com"
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"user handle of another account", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.Handle = []byte(f.v.ID)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another user's credential", func(t *testing.T, f *passkeyFixture) error {
			// Victor registers the same kind of key; Wanda's sign-in
			// answered with it must not pass.
			other := newSoftKey(t, "id.example.com", issuer)
			rid, ropts, _ := f.pk.BeginRegistration(ctx, f.st, f.v, "s-v")
			c, err := f.pk.FinishRegistration(ctx, f.st, f.v, rid, "s-v", "V", other.create(t, ropts))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.st.CreateWebAuthnCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err = f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", other.get(t, opts))
			return err
		}},
		{"cloned authenticator (counter goes backwards)", func(t *testing.T, f *passkeyFixture) error {
			for range 3 {
				id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
				if _, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts)); err != nil {
					t.Fatal(err)
				}
			}
			f.key.Count = 1 // the clone's counter
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"tampered signature", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			var a map[string]any
			_ = json.Unmarshal(f.key.get(t, opts), &a)
			resp := a["response"].(map[string]any)
			sig, _ := b64.DecodeString(resp["signature"].(string))
			sig[len(sig)-1] ^= 1
			resp["signature"] = b64.EncodeToString(sig)
			answer, _ := json.Marshal(a)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer)
			return err
		}},
		{"garbage answer", func(t *testing.T, f *passkeyFixture) error {
			id, _, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", []byte(`{"id":"x","response":{}}`))
			return err
		}},
		{"registration for another session", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
			_, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-2", "X", newSoftKey(t, "id.example.com", issuer).create(t, opts))
			return err
		}},
		{"registration from another origin", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
			_, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-1", "X", newSoftKey(t, "id.example.com", "https://evil.test").create(t, opts))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPasskeyFixture(t)
			err := tc.run(t, f)
			t.Log(err)
			if !errors.Is(err, authn.ErrPasskey) {
				t.Fatalf("want ErrPasskey, got %v", err)
			}
		})
	}
}

// TestPasskeyWithoutCounter: authenticators that always send 0 (many
// synced passkeys) keep working; they report as not hardware-bound.
func TestPasskeyWithoutCounter(t *testing.T) {
	ctx := context.Background()
	f := &passkeyFixture{}
	*f = *newPasskeyFixture(t)
	k := newSoftKey(t, "id.example.com", issuer)
	k.Synced, k.NoCount, k.Handle = true, true, []byte(f.u.ID)
	id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "s")
	c, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "s", "Phone", k.create(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateWebAuthnCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow")
		use, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow", k.get(t, opts))
		if err != nil || use.Hardware || use.Credential.ID != c.ID {
			t.Fatalf("synced passkey without a counter: %+v %v", use, err)
		}
	}
}

// TestCheckPasskeySpendsOnRefusal: through the service, a refused answer
// (another origin) still spends its challenge, although taking it and
// moving the counter share a transaction: the right answer to the same
// challenge is refused afterwards, and a new challenge works.
func TestCheckPasskeySpendsOnRefusal(t *testing.T) {
	ctx := context.Background()
	f := newPasskeyFixture(t)
	svc := authn.NewService(authn.Options{Store: f.st, Passkeys: f.pk, Now: func() time.Time { return f.now }})
	id, opts, err := svc.BeginPasskey(ctx, f.u, "flow-1")
	if err != nil {
		t.Fatal(err)
	}
	good := f.key.get(t, opts)
	f.key.Origin = "https://id.example.com.evil.test"
	if _, err := svc.CheckPasskey(ctx, f.u, id, "flow-1", f.key.get(t, opts), "192.0.2.1"); !errors.Is(err, authn.ErrPasskey) {
		t.Fatalf("another origin: %v", err)
	}
	f.key.Origin = issuer
	if _, err := svc.CheckPasskey(ctx, f.u, id, "flow-1", good, "192.0.2.1"); !errors.Is(err, authn.ErrPasskey) {
		t.Fatalf("a spent challenge answered: %v", err)
	}
	id, opts, _ = svc.BeginPasskey(ctx, f.u, "flow-1")
	if _, err := svc.CheckPasskey(ctx, f.u, id, "flow-1", f.key.get(t, opts), "192.0.2.1"); err != nil {
		t.Fatalf("a new challenge: %v", err)
	}
}
