package authn_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/webauthntest"
	"github.com/latchkey/latchkey/store"
)

// BenchmarkSecondFactor is the server's side of a sign-in's second step on
// PostgreSQL, one user, one at a time: a TOTP code (read, conditional step
// update, attempt counters) against a passkey (challenge stored; then
// taken, signature and counter checked, counter moved, attempt counters).
// The passkey rows include the software authenticator's P-256 signature
// (tens of microseconds), which a real browser would make on the client.
//
//	go test -run '^$' -bench BenchmarkSecondFactor -benchtime 2000x -count 3 ./authn/
func BenchmarkSecondFactor(b *testing.B) {
	ctx := context.Background()
	st := testdb.Postgres(b)
	now := time.Now().UTC()
	clock := now
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{3}, 32)})
	pk, err := authn.NewPasskeys(issuer, "Latchkey", nil)
	if err != nil {
		b.Fatal(err)
	}
	an := authn.NewService(authn.Options{Store: st, Keyring: ring, Pepper: []byte("p"), Passkeys: pk, Now: func() time.Time { return clock }})
	u := store.User{ID: authn.NewID("user"), Username: "bench", CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	secret := authn.NewTOTPSecret()
	if _, err := an.EnrollTOTP(ctx, st, u.ID, secret, 0); err != nil {
		b.Fatal(err)
	}
	key := webauthntest.New("id.example.com", issuer)
	key.Handle = []byte(u.ID)
	id, opts, err := pk.BeginRegistration(ctx, st, u, "reg")
	if err != nil {
		b.Fatal(err)
	}
	answer, err := key.Create(opts)
	if err != nil {
		b.Fatal(err)
	}
	c, err := pk.FinishRegistration(ctx, st, u, id, "reg", "Key", answer)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.CreateWebAuthnCredential(ctx, c); err != nil {
		b.Fatal(err)
	}

	b.Run("totp", func(b *testing.B) {
		for b.Loop() {
			clock = clock.Add(30 * time.Second) // each sign-in a new time step
			code, _ := authn.TOTPCode(secret, clock)
			if _, err := an.CheckSecondFactor(ctx, u.ID, code, "192.0.2.1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("passkey", func(b *testing.B) {
		for b.Loop() {
			id, opts, err := an.BeginPasskey(ctx, u, "flow")
			if err != nil {
				b.Fatal(err)
			}
			answer, err := key.Get(opts)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := an.CheckPasskey(ctx, u, id, "flow", answer, "192.0.2.1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
