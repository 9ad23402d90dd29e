package authn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/store"
)

// TestHashQueueIsBounded: beyond the running and waiting places a sign-in
// is refused at once, before anything is counted.
func TestHashQueueIsBounded(t *testing.T) {
	h := authn.NewPasswordHasherQueue(cheap, 1, 2)
	var release []func()
	for i := range 3 {
		r, err := h.Admit(false)
		if err != nil {
			t.Fatalf("place %d of 3 refused: %v", i+1, err)
		}
		release = append(release, r)
	}
	if _, err := h.Admit(false); !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("a fourth place in a queue of 1 running + 2 waiting: %v", err)
	}
	release[0]()
	if _, err := h.Admit(false); err != nil {
		t.Fatalf("a freed place was not given again: %v", err)
	}

	// Addresses with recent failures share half the places; the rest
	// stays open to everyone else.
	fair := authn.NewPasswordHasherQueue(cheap, 1, 7) // 8 places, 4 for suspects
	for i := range 4 {
		if _, err := fair.Admit(true); err != nil {
			t.Fatalf("suspect place %d of 4: %v", i+1, err)
		}
	}
	if _, err := fair.Admit(true); !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("a fifth suspect: %v", err)
	}
	for i := range 4 {
		if _, err := fair.Admit(false); err != nil {
			t.Fatalf("a clean address shut out by suspects (place %d): %v", i+1, err)
		}
	}

	// Through the service: a full queue is ErrBusy and counts nothing.
	f := newFixture(t, 5)
	full := authn.NewService(authn.Options{Store: f.st, Hasher: h, Now: func() time.Time { return f.now }})
	ctx := context.Background()
	if _, err := full.CheckPassword(ctx, "ivy", "wrong", "10.0.0.9"); !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("full queue: %v", err)
	}
	for _, key := range []string{"acct:ivy", "ip:10.0.0.9"} {
		if a, err := f.st.GetAttempt(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused sign-in counted against %s: %+v %v", key, a, err)
		}
	}

	// An address refused a place is suspect for a while: with the suspect
	// half full it is refused again, while a fresh address still gets in.
	busy := authn.NewPasswordHasherQueue(cheap, 1, 3) // 4 places, 2 for suspects
	svc := authn.NewService(authn.Options{Store: f.st, Hasher: busy, Now: func() time.Time { return f.now }})
	r1, _ := busy.Admit(true)
	r2, _ := busy.Admit(true)
	r3, _ := busy.Admit(false)
	r4, _ := busy.Admit(false)
	if _, err := svc.CheckPassword(ctx, "nobody", "guess", "10.0.0.7"); !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("full queue: %v", err)
	}
	r3()
	r4()
	if _, err := svc.CheckPassword(ctx, "nobody", "guess", "10.0.0.7"); !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("an address refused a moment ago took a place meant for fresh ones: %v", err)
	}
	if _, err := svc.CheckPassword(ctx, "ivy", "pw-ivy", "10.0.0.8"); err != nil {
		t.Fatalf("a fresh address was shut out: %v", err)
	}
	r1()
	r2()
}

// TestLockedSignInCostsNoHash: a locked account (known or not) is refused
// before hashing, in about the time a hash takes.
func TestLockedSignInCostsNoHash(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	for _, name := range []string{"ivy", "nobody"} {
		for range 2 {
			if _, err := f.svc.CheckPassword(ctx, name, "wrong", "10.0.0.1"); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("%s: %v", name, err)
			}
		}
		before := f.svc.Hasher().Hashes()
		for range 5 {
			if _, err := f.svc.CheckPassword(ctx, name, "pw-ivy", "10.0.0.1"); !errors.Is(err, authn.ErrLocked) {
				t.Fatalf("%s while locked: %v", name, err)
			}
		}
		if n := f.svc.Hasher().Hashes() - before; n != 0 {
			t.Errorf("%s: %d hashes while locked", name, n)
		}
	}
}

// TestCancelledSignInCostsNoHash: a caller that goes away while waiting for
// its turn gets no hash, and the attempt still counts (cancelling a wrong
// guess does not take it back).
func TestCancelledSignInCostsNoHash(t *testing.T) {
	f := newFixture(t, 5)
	slow := authn.NewPasswordHasherQueue(authn.Argon2Params{MemoryKiB: 64 * 1024, Time: 16, Threads: 1}, 1, 4)
	svc := authn.NewService(authn.Options{Store: f.st, Hasher: slow, Now: func() time.Time { return f.now }})
	enc := slow.Hash("x")
	before := slow.Hashes()
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		_, _ = slow.Verify(context.Background(), enc, "x") // holds the only turn for a while
	}()
	// Only once the other caller holds the turn (it counts its hash as it
	// starts) does the sign-in begin, so it must wait.
	for deadline := time.Now().Add(5 * time.Second); slow.Hashes() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the other caller never started hashing")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := svc.CheckPassword(ctx, "ivy", "wrong", "10.0.0.1")
		done <- err
	}()
	// Cancel once the attempt is counted, while it waits for its turn.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if a, err := f.st.GetAttempt(context.Background(), "acct:ivy"); err == nil && a.Failures == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attempt was never counted")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned sign-in: %v", err)
	}
	<-busy
	if n := slow.Hashes() - before; n != 1 { // the other caller's only
		t.Errorf("%d hashes ran; the abandoned sign-in must not hash", n-1)
	}
	if a, err := f.st.GetAttempt(context.Background(), "acct:ivy"); err != nil || a.Failures != 1 {
		t.Errorf("the abandoned attempt must count: %+v %v", a, err)
	}
	if a, err := f.st.GetAttempt(context.Background(), "ip:10.0.0.1"); err != nil || a.Failures != 1 {
		t.Errorf("the abandoned attempt must count against the address too: %+v %v", a, err)
	}
}
