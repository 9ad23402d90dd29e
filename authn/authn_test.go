package authn_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

var cheap = authn.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}

func TestPasswordHasher(t *testing.T) {
	hh := authn.NewPasswordHasher(cheap, 0)
	h := verifier{hh}
	enc := hh.Hash("correct horse")
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("PHC format: %s", enc)
	}
	if enc == hh.Hash("correct horse") {
		t.Fatal("hashes of one password must differ (random salt)")
	}
	if !h.Verify(enc, "correct horse") {
		t.Fatal("right password rejected")
	}
	for _, bad := range []string{"correct horsE", "", "correct horse "} {
		if h.Verify(enc, bad) {
			t.Fatalf("wrong password %q accepted", bad)
		}
	}
	for _, malformed := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if h.Verify(malformed, "anything") {
			t.Fatalf("malformed hash %q matched", malformed)
		}
	}
	// Parameters travel with the hash: a hash made with other costs verifies.
	other := authn.NewPasswordHasher(authn.Argon2Params{MemoryKiB: 128, Time: 2, Threads: 1}, 0).Hash("pw")
	if !h.Verify(other, "pw") {
		t.Fatal("hash with other parameters must verify")
	}
}

// verifier is the hasher's Verify with a background context, for tables.
type verifier struct{ h *authn.PasswordHasher }

func (v verifier) Verify(enc, pw string) bool {
	ok, err := v.h.Verify(context.Background(), enc, pw)
	if err != nil {
		panic(err)
	}
	return ok
}

type fixture struct {
	st     store.Store
	svc    *authn.Service
	now    time.Time
	user   store.User
	secret string
	codes  []string
}

func newFixture(t *testing.T, threshold int) *fixture {
	return newFixtureOn(t, testdb.SQLite(t), threshold)
}

func newFixtureOn(t *testing.T, st store.Store, threshold int) *fixture {
	f := &fixture{st: st, now: time.Date(2026, 5, 1, 12, 0, 10, 0, time.UTC)}
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{7}, 32)})
	f.svc = authn.NewService(authn.Options{Store: f.st, Keyring: ring, Pepper: []byte("pepper"), Hasher: authn.NewPasswordHasher(cheap, 0),
		Lockout: authn.Lockout{AccountThreshold: threshold, IPThreshold: 10, BaseDelay: time.Second, MaxDelay: time.Minute, Window: 15 * time.Minute},
		Now:     func() time.Time { return f.now }})
	f.user = store.User{ID: "u1", Username: "Ivy", PasswordHash: f.svc.Hasher().Hash("pw-ivy"), CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.st.CreateUser(context.Background(), f.user); err != nil {
		t.Fatal(err)
	}
	f.secret = authn.NewTOTPSecret()
	codes, err := f.svc.EnrollTOTP(context.Background(), f.st, f.user.ID, f.secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.codes = codes
	return f
}

func TestTOTPSkewAndSingleUse(t *testing.T) {
	f := newFixture(t, 20)
	ctx := context.Background()
	cred, _ := f.st.GetTOTP(ctx, f.user.ID)
	if bytes.Contains(cred.Secret, []byte(f.secret)) {
		t.Fatal("TOTP secret stored in clear")
	}
	code := func(d time.Duration) string { c, _ := authn.TOTPCode(f.secret, f.now.Add(d)); return c }
	tests := []struct {
		name string
		code string
		want error
	}{
		{"two steps old", code(-60 * time.Second), authn.ErrInvalidCode},
		{"two steps ahead", code(60 * time.Second), authn.ErrInvalidCode},
		{"previous step (skew)", code(-30 * time.Second), nil},
		{"same step again", code(-30 * time.Second), authn.ErrInvalidCode},
		{"current step", code(0), nil},
		{"current step replayed", code(0), authn.ErrInvalidCode},
		{"older step after newer", code(-30 * time.Second), authn.ErrInvalidCode},
		{"next step (skew)", code(30 * time.Second), nil},
		{"letters", "abcdef", authn.ErrInvalidCode},
	}
	for _, tc := range tests {
		_, err := f.svc.CheckSecondFactor(ctx, f.user.ID, tc.code, "10.0.0.1")
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// Recovery codes: single use, any case and surrounding space.
	if m, err := f.svc.CheckSecondFactor(ctx, f.user.ID, "  "+strings.ToUpper(f.codes[3])+" ", "10.0.0.1"); err != nil || m != "recovery_code" {
		t.Fatalf("recovery code: %v %q", err, m)
	}
	if _, err := f.svc.CheckSecondFactor(ctx, f.user.ID, f.codes[3], "10.0.0.1"); !errors.Is(err, authn.ErrInvalidCode) {
		t.Fatalf("reused recovery code: %v", err)
	}
}

// TestConcurrentWrongCodesStopAtThreshold: 24 wrong codes at once against
// a threshold of 5 on both stores; exactly 5 are judged, the rest are
// refused as locked (PostgreSQL judged 7 when the check and the count were
// separate statements).
func TestConcurrentWrongCodesStopAtThreshold(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{"postgres": testdb.Postgres, "sqlite": testdb.SQLite} {
		t.Run(name, func(t *testing.T) {
			f := newFixtureOn(t, open(t), 5)
			wrong := "000000"
			for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
				if c, _ := authn.TOTPCode(f.secret, f.now.Add(d)); c == wrong {
					wrong = "000001" // both valid in a window of three steps: ~1e-11
				}
			}
			var judged, locked atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 24; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := f.svc.CheckSecondFactor(context.Background(), f.user.ID, wrong, "10.0.0.9")
					switch {
					case errors.Is(err, authn.ErrInvalidCode):
						judged.Add(1)
					case errors.Is(err, authn.ErrLocked):
						locked.Add(1)
					default:
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if judged.Load() != 5 || locked.Load() != 19 {
				t.Fatalf("judged %d codes and refused %d for a threshold of 5", judged.Load(), locked.Load())
			}
		})
	}
}

func TestLockoutBackoff(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := f.svc.CheckPassword(ctx, "ivy", "wrong", "10.0.0.2"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := f.svc.CheckPassword(ctx, "IVY", "pw-ivy", "10.0.0.2"); !errors.Is(err, authn.ErrLocked) {
		t.Fatalf("right password while locked: want ErrLocked, got %v", err)
	}
	f.now = f.now.Add(1100 * time.Millisecond) // first lock: 1 s
	if _, err := f.svc.CheckPassword(ctx, "ivy", "wrong", "10.0.0.2"); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("after the lock: %v", err)
	}
	// The fourth failure doubles the lock to 2 s.
	f.now = f.now.Add(1500 * time.Millisecond)
	if _, err := f.svc.CheckPassword(ctx, "ivy", "pw-ivy", "10.0.0.2"); !errors.Is(err, authn.ErrLocked) {
		t.Fatalf("backoff must double: %v", err)
	}
	f.now = f.now.Add(time.Second)
	if u, err := f.svc.CheckPassword(ctx, "ivy", "pw-ivy", "10.0.0.2"); err != nil || u.ID != f.user.ID {
		t.Fatalf("after backoff: %v", err)
	}
	// Success resets the account counter.
	if a, err := f.st.GetAttempt(ctx, "acct:ivy"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("counter not reset: %+v %v", a, err)
	}
	// Disabled users fail like wrong passwords.
	if err := f.st.CreateUser(ctx, store.User{ID: "u2", Username: "off", PasswordHash: f.svc.Hasher().Hash("pw"), Disabled: true, CreatedAt: f.now, UpdatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CheckPassword(ctx, "off", "pw", "10.0.0.3"); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("disabled user: %v", err)
	}
}

func TestSessionsTimeoutsAndRotation(t *testing.T) {
	st := testdb.SQLite(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := st.CreateUser(context.Background(), store.User{ID: "u1", Username: "jo", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	m := authn.NewSessions(st, authn.SessionOptions{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 2 * time.Hour, Now: func() time.Time { return now }})
	start := func(cookies ...*http.Cookie) *http.Cookie {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		if _, err := m.Start(context.Background(), st, w, r, "u1", now, []string{"pwd"}, "aal1"); err != nil {
			t.Fatal(err)
		}
		c := w.Result().Cookies()[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie flags: %+v", c)
		}
		return c
	}
	current := func(c *http.Cookie) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(c)
		_, err := m.Current(r)
		return err
	}
	c1 := start()
	c2 := start(c1)
	if c1.Value == c2.Value {
		t.Fatal("session id must rotate at sign-in")
	}
	if err := current(c1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old session must be gone after rotation: %v", err)
	}
	if err := current(c2); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSession(context.Background(), c2.Value); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the raw cookie value must not be the stored key")
	}
	for i := 0; i < 3; i++ { // stay active: 3 × 25 min > idle timeout
		now = now.Add(25 * time.Minute)
		if err := current(c2); err != nil {
			t.Fatalf("active session expired at step %d: %v", i, err)
		}
	}
	now = now.Add(31 * time.Minute)
	if err := current(c2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idle timeout: %v", err)
	}
	c3 := start()
	for i := 0; i < 4; i++ { // 100 minutes of activity
		now = now.Add(25 * time.Minute)
		if err := current(c3); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	now = now.Add(25 * time.Minute) // 125 minutes: past the 2-hour limit although active
	if err := current(c3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absolute timeout: %v", err)
	}
}
