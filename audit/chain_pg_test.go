package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
)

// TestTwoInstancesOneChain: two independent pools (two server instances)
// on one PostgreSQL append 1,000 events concurrently; the chain verifies,
// with no gaps and no duplicates.
func TestTwoInstancesOneChain(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx := context.Background()
	var instances []store.Store
	for i := 0; i < 2; i++ {
		s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, MaxConns: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		instances = append(instances, s)
	}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(s store.Store) {
			defer wg.Done()
			for j := 0; j < 1000/32+1; j++ {
				appendOne(t, s, "u")
			}
		}(instances[w%2])
	}
	wg.Wait()
	n, broken, err := audit.Verify(ctx, instances[0])
	if err != nil || broken != nil {
		t.Fatalf("content hashes: %+v %v", broken, err)
	}
	want := 32 * (1000/32 + 1)
	if n != want {
		t.Fatalf("want %d events, verified %d", want, n)
	}
	// Both instances seal: one tree holds every event once.
	c := checkpointer(t)
	var seals sync.WaitGroup
	for _, s := range instances {
		seals.Add(1)
		go func(s store.Store) {
			defer seals.Done()
			for {
				_, n, err := audit.Seal(ctx, s, c, 100, time.Now())
				if err != nil {
					t.Error(err)
				}
				if err != nil || n == 0 {
					return
				}
			}
		}(s)
	}
	seals.Wait()
	rep, err := audit.VerifyTree(ctx, instances[1], c, nil)
	if err != nil || rep.Problem != nil || rep.Sealed != uint64(want) || rep.Pending != 0 {
		t.Fatalf("one tree: %+v %+v %v", rep, rep.Problem, err)
	}
}

// TestTamperingDetectedInPlace: editing one row's details, or deleting one
// row, is found at the right event id.
func TestTamperingDetectedInPlace(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, appendOne(t, s, "u").ID)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	if _, err := conn.Exec(ctx, `UPDATE audit_events SET details = '{"a":9}' WHERE id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}
	if _, broken, _ := audit.Verify(ctx, s); broken == nil || broken.EventID != ids[2] {
		t.Fatalf("edited details: want event %d, got %+v", ids[2], broken)
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_events SET details = '{"a":1,"b":2}' WHERE id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}
	if _, broken, _ := audit.Verify(ctx, s); broken != nil {
		t.Fatalf("restored: %+v", broken)
	}
	// Deleting a sealed event is found by the tree, at its position.
	c := checkpointer(t)
	if _, _, err := audit.Seal(ctx, s, c, 100, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM audit_events WHERE id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.VerifyTree(ctx, s, c, nil); err != nil || rep.Problem == nil || rep.Problem.Position != 1 {
		t.Fatalf("deleted event %d: want the problem at position 1, got %+v %v", ids[1], rep.Problem, err)
	}
}

// TestCursorStableWhileAppending: paging by id sees every event that
// existed when paging began exactly once, while others are appended.
func TestCursorStableWhileAppending(t *testing.T) {
	s := testdb.Postgres(t)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		appendOne(t, s, "before")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			appendOne(t, s, "during")
		}
	}()
	seen := map[int64]bool{}
	var after int64
	for {
		page, err := s.ListAuditEvents(ctx, store.AuditFilter{SubjectID: "before", AfterID: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if seen[e.ID] || e.SubjectID != "before" {
				t.Fatalf("event %d seen twice or outside the filter", e.ID)
			}
			seen[e.ID] = true
			after = e.ID
		}
		if len(page) < 7 {
			break
		}
	}
	<-done
	if len(seen) != 50 {
		t.Fatalf("want 50 events, saw %d", len(seen))
	}
}
