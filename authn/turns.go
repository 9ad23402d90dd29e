package authn

import (
	"context"
	"slices"
	"sync"
)

// turns hands out a fixed number of hash turns, first to waiters from
// clean addresses, then to suspect ones (each group in arrival order), so
// people arriving during a flood wait behind each other, not behind it.
type turns struct {
	mu      sync.Mutex
	free    int
	clean   []chan struct{}
	suspect []chan struct{}
}

func newTurns(n int) *turns { return &turns{free: n} }

// acquire waits for a turn, or returns the context's error once the caller
// gave up (its place in line is dropped, or a turn just given is passed on).
func (t *turns) acquire(ctx context.Context, suspect bool) error {
	t.mu.Lock()
	if t.free > 0 && len(t.clean) == 0 && (!suspect || len(t.suspect) == 0) {
		t.free--
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if suspect {
		t.suspect = append(t.suspect, ch)
	} else {
		t.clean = append(t.clean, ch)
	}
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		waiting := slices.Contains(t.clean, ch) || slices.Contains(t.suspect, ch)
		t.clean = slices.DeleteFunc(t.clean, func(c chan struct{}) bool { return c == ch })
		t.suspect = slices.DeleteFunc(t.suspect, func(c chan struct{}) bool { return c == ch })
		t.mu.Unlock()
		if !waiting { // the turn was given as we left: pass it on
			t.release()
		}
		return ctx.Err()
	}
}

func (t *turns) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(t.clean) > 0:
		close(t.clean[0])
		t.clean = t.clean[1:]
	case len(t.suspect) > 0:
		close(t.suspect[0])
		t.suspect = t.suspect[1:]
	default:
		t.free++
	}
}

type suspectKey struct{}

// asSuspect marks ctx as a sign-in from a suspect address, for its turn.
func asSuspect(ctx context.Context, suspect bool) context.Context {
	if !suspect {
		return ctx
	}
	return context.WithValue(ctx, suspectKey{}, true)
}

func isSuspect(ctx context.Context) bool { v, _ := ctx.Value(suspectKey{}).(bool); return v }
