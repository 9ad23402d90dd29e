package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

func appendOne(t testing.TB, s store.Store, subject string) store.AuditEvent {
	t.Helper()
	var rec store.AuditEvent
	err := s.InTx(context.Background(), func(q store.Queries) error {
		var err error
		rec, err = audit.Append(context.Background(), q, audit.Event{Type: audit.MFARemoved, ActorType: audit.ActorUser, ActorID: subject,
			SubjectID: subject, PolicyID: "p1", PolicyVersion: 3, Request: audit.Request{IP: "10.0.0.1", UserAgent: "ua", RequestID: "rq"},
			Details: map[string]any{"b": 2, "a": 1}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestChainAppendVerify(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s := b.Open(t)
			ctx := context.Background()
			first := appendOne(t, s, "u1")
			second := appendOne(t, s, "u2")
			// Appends take no lock and carry no link: the sealer orders them.
			if first.PrevHash != "" || second.PrevHash != "" || first.Details != `{"a":1,"b":2}` || first.Hash != audit.Hash(first) {
				t.Fatalf("appended events: %+v %+v", first, second)
			}
			evs, _ := s.ListAuditEvents(ctx, store.AuditFilter{SubjectID: "u2"})
			if len(evs) != 1 || evs[0].Hash != second.Hash || audit.Hash(evs[0]) != evs[0].Hash {
				t.Fatalf("stored event must hash to its stored hash (times round-trip): %+v", evs)
			}
			n, broken, err := audit.Verify(ctx, s)
			if err != nil || broken != nil || n != 2 {
				t.Fatalf("verify intact chain: %d %+v %v", n, broken, err)
			}
			// A rolled-back transaction leaves no event and no gap.
			boom := errors.New("boom")
			_ = s.InTx(ctx, func(q store.Queries) error {
				if _, err := audit.Append(ctx, q, audit.Event{Type: audit.MFAEnrolled, SubjectID: "u3"}); err != nil {
					return err
				}
				return boom
			})
			if _, broken, _ := audit.Verify(ctx, s); broken != nil {
				t.Fatalf("rollback broke the chain: %+v", broken)
			}
		})
	}
}

// TestTamperDetected: editing an event's content, or appending an event
// that skips its predecessor, is found at that event.
func TestTamperDetected(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	appendOne(t, s, "u1")
	mid := appendOne(t, s, "u2")
	// A forged event inserted directly, claiming a wrong predecessor.
	forged := store.AuditEvent{Time: time.Now(), Type: "mfa.totp.removed", Outcome: "success", SubjectID: "u9", Details: "{}", PrevHash: "0000"}
	forged.Hash = audit.Hash(forged)
	id, err := s.InsertAuditEvent(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	_, broken, _ := audit.Verify(ctx, s)
	if broken == nil || broken.EventID != id {
		t.Fatalf("forged link not found: %+v (want event %d)", broken, id)
	}
	// Content altered but hash kept: found by the hash check.
	altered := mid
	altered.SubjectID = "someone-else"
	if audit.Hash(altered) == mid.Hash {
		t.Fatal("hash ignores the subject")
	}
}

// TestConcurrentAppendsKeepOneChain: many writers at once still produce a
// single valid chain.
func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s := b.Open(t)
			var wg sync.WaitGroup
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 5; j++ {
						appendOne(t, s, "u")
					}
				}()
			}
			wg.Wait()
			n, broken, err := audit.Verify(context.Background(), s)
			if err != nil || broken != nil || n != 80 {
				t.Fatalf("after concurrent appends: %d %+v %v", n, broken, err)
			}
		})
	}
}

// BenchmarkAuditedRemoval measures a 2SV removal with its audit event in
// one transaction (the disable flow's write path), one at a time and 32 at
// once, on PostgreSQL and on the embedded store (whose every commit is an
// fsync: synchronous=FULL).
func BenchmarkAuditedRemoval(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Store
	}{{"postgres", testdb.Postgres}, {"sqlite", testdb.SQLite}}
	for _, be := range backends {
		for _, conc := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", be.name, conc), func(b *testing.B) { benchRemoval(b, be.open(b), conc) })
		}
	}
}

func benchRemoval(b *testing.B, s store.Store, conc int) {
	ctx := context.Background()
	now := time.Now().UTC()
	users := make([]string, b.N)
	for i := range users {
		users[i] = fmt.Sprintf("bench-user-%d", i)
		if err := s.CreateUser(ctx, store.User{ID: users[i], Username: users[i], CreatedAt: now, UpdatedAt: now}); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateTOTP(ctx, store.TOTPCredential{ID: "c-" + users[i], UserID: users[i], Secret: []byte("x"), CreatedAt: now, VerifiedAt: now}); err != nil {
			b.Fatal(err)
		}
	}
	remove := func(u string) {
		err := s.InTx(ctx, func(q store.Queries) error {
			if err := q.Lock(ctx, "mfa:"+u); err != nil {
				return err
			}
			if _, err := q.DeleteTOTP(ctx, u); err != nil {
				return err
			}
			if err := q.SetMFARemoved(ctx, u, now, now.Add(24*time.Hour)); err != nil {
				return err
			}
			_, err := audit.Append(ctx, q, audit.Event{Type: audit.MFARemoved, ActorType: audit.ActorUser, ActorID: u, SubjectID: u})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	next := make(chan string, len(users))
	for _, u := range users {
		next <- u
	}
	close(next)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				remove(u)
			}
		}()
	}
	wg.Wait()
}
