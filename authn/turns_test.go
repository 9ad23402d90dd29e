package authn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTurnsServeCleanFirst: with the only turn taken, a clean waiter that
// arrives after suspect ones is served first; suspects then in order; a
// waiter that gives up leaves the line without losing a turn for others.
func TestTurnsServeCleanFirst(t *testing.T) {
	tr := newTurns(1)
	ctx := context.Background()
	if err := tr.acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	wait := func(name string, suspect bool) {
		defer wg.Done()
		if err := tr.acquire(ctx, suspect); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		tr.release()
	}
	queued := func(n int) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			tr.mu.Lock()
			k := len(tr.clean) + len(tr.suspect)
			tr.mu.Unlock()
			if k == n {
				return
			}
		}
		t.Fatalf("waiters never queued")
	}
	for i, name := range []string{"s1", "s2"} {
		wg.Add(1)
		go wait(name, true)
		queued(i + 1)
	}
	gone, cancel := context.WithCancel(ctx)
	quitter := make(chan error, 1)
	go func() { quitter <- tr.acquire(gone, true) }()
	queued(3)
	cancel()
	if err := <-quitter; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter that gave up: %v", err)
	}
	wg.Add(1)
	go wait("c1", false)
	queued(3)
	tr.release()
	wg.Wait()
	if want := []string{"c1", "s1", "s2"}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("served %v, want %v", order, want)
	}
	if tr.free != 1 {
		t.Fatalf("%d free turns at the end, want 1", tr.free)
	}
}
